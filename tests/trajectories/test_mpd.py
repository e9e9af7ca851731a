"""Tests of trajectories.mpd: the movingpandas adapter, both ways, on real and hand-made data."""

from __future__ import annotations

from pathlib import Path

import movingpandas as mpd
import numpy as np
import pandas as pd
import pyproj
import pytest

from geosup.errors import ConfigError
from geosup.io import read_table
from trajectories.fixes import clean_fixes
from trajectories.motion import detect_stops, track_from_fixes
from trajectories.mpd import from_trajectory_collection, to_trajectory_collection


def small_track():
    fixes = pd.DataFrame({
        "_row": [10, 11, 12, 20, 21],
        "vehicle_id": ["A", "A", "A", "B", "B"],
        "time": pd.to_datetime(["2026-03-01 00:00:00", "2026-03-01 00:01:00",
                                "2026-03-01 00:02:00", "2026-03-01 00:00:30",
                                "2026-03-01 00:01:30"], utc=True),
        "lon": [116.30, 116.31, 116.32, 116.40, 116.40],
        "lat": [39.90, 39.90, 39.91, 39.95, 39.96],
    })
    return track_from_fixes(fixes)


def test_to_collection_metric_and_wgs84():
    track = small_track()
    tc = to_trajectory_collection(track)
    assert len(tc) == 2
    a = tc.get_trajectory("A")
    assert a.crs == track.crs and not a.is_latlon
    # naive UTC times, as movingpandas wants them
    assert a.df.index.tz is None
    assert a.get_start_time() == pd.Timestamp("2026-03-01 00:00:00")
    np.testing.assert_array_equal(a.df.geometry.x, track.x[:3])
    assert a.df["fix_id"].tolist() == [10, 11, 12]
    wgs = to_trajectory_collection(track, crs="wgs84").get_trajectory("B")
    assert wgs.is_latlon
    np.testing.assert_array_equal(wgs.df.geometry.y, track.lat[3:])
    with pytest.raises(ConfigError):
        to_trajectory_collection(track, crs="EPSG:3857")


def test_round_trip_keeps_everything():
    track = small_track()
    for crs in ("metric", "wgs84"):
        back = from_trajectory_collection(to_trajectory_collection(track, crs=crs),
                                          crs=track.crs)
        assert back.vehicle_ids.tolist() == track.vehicle_ids.tolist()
        np.testing.assert_array_equal(back.offsets, track.offsets)
        np.testing.assert_array_equal(back.t, track.t)
        np.testing.assert_array_equal(back.fix_id, track.fix_id)
        np.testing.assert_allclose(back.lon, track.lon, rtol=0, atol=1e-9)
        np.testing.assert_allclose(back.x, track.x, rtol=0, atol=1e-6)


def test_from_collection_reads_naive_times_in_the_declared_zone():
    frame = pd.DataFrame({
        "t": pd.to_datetime(["2026-03-01 08:00:00", "2026-03-01 08:01:00"]),
        "traj": [7, 7], "x": [116.3, 116.31], "y": [39.9, 39.9],
    })
    tc = mpd.TrajectoryCollection(frame, traj_id_col="traj", t="t", x="x", y="y", crs=4326)
    beijing = from_trajectory_collection(tc, tz="Asia/Shanghai")
    assert beijing.vehicle_ids.tolist() == ["7"]
    assert pd.Timestamp(beijing.t[0], tz="UTC") == pd.Timestamp("2026-03-01 00:00:00", tz="UTC")
    assert beijing.fix_id.tolist() == [1, 2]  # no fix_id column: numbered
    assert from_trajectory_collection(tc).t[0] == pd.Timestamp("2026-03-01 08:00:00",
                                                               tz="UTC").value
    # a single Trajectory works too
    assert from_trajectory_collection(tc.trajectories[0]).n_fixes == 2


def test_real_collection_round_trip_has_the_same_stops(shared_data: Path):
    """GeoLife small, read by movingpandas users as a collection, converted to a track."""
    result = read_table(shared_data / "trajectories" / "geolife_small.gpkg", time_columns=["t"],
                        tz="UTC")
    frame = result.frame.rename(columns={"t": "time"})
    frame["vehicle_id"] = frame["trajectory_id"]
    track = track_from_fixes(clean_fixes(frame).frame)
    tc = to_trajectory_collection(track, crs="wgs84")
    back = from_trajectory_collection(tc, crs=track.crs)
    np.testing.assert_array_equal(back.t, track.t)
    np.testing.assert_allclose(back.x, track.x, rtol=0, atol=1e-6)
    ours = detect_stops(track, max_diameter=50.0, min_duration=pd.Timedelta("2min"))
    again = detect_stops(back, max_diameter=50.0, min_duration=pd.Timedelta("2min"))
    assert len(ours) > 0
    pd.testing.assert_frame_equal(ours.drop(columns=["x", "y", "lon", "lat"]),
                                  again.drop(columns=["x", "y", "lon", "lat"]))
    # the metric CRS of the round trip is the one chosen for Beijing (CGCS2000 GK CM 117E)
    assert back.crs == pyproj.CRS.from_epsg(4548)
