"""Tests of trajectories.motion: movingpandas parity on real tracks, README facts, properties."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import movingpandas as mpd
import numpy as np
import pandas as pd
import pyproj
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosup.errors import ConfigError, CRSError, SchemaError, ValidationError
from geosup.io import read_table
from trajectories.fixes import clean_fixes
from trajectories.motion import (
    Track,
    detect_stops,
    distance_between,
    nearest_approach,
    positions_at,
    track_from_fixes,
    trips,
    vehicle_index,
)
from trajectories.mpd import to_trajectory_collection

TRAJ = "trajectories"
UTC = "UTC"


# ---------------------------------------------------------------------------------------------
# Real tracks
# ---------------------------------------------------------------------------------------------


def load_geolife(data: Path) -> Track:
    """GeoLife small: 5 trajectories (one vehicle per trajectory_id), EPSG:4326 GeoPackage."""
    result = read_table(data / TRAJ / "geolife_small.gpkg", time_columns=["t"], tz=UTC)
    frame = result.frame.rename(columns={"t": "time"})
    frame["vehicle_id"] = frame["trajectory_id"]
    clean = clean_fixes(frame)
    # four real GPS glitches (274-393 km/h after a reacquisition) are the only rejects
    assert clean.reasons["jump"] == clean.counts["rows_rejected"] == 4
    return track_from_fixes(clean.frame)


def load_limerick(data: Path) -> Track:
    """The Limerick bus 304 GPX (one vehicle, ~2 s fixes)."""
    result = read_table(data / TRAJ / "bus304_limerick_2019-02-18_0745.gpx",
                        layer="track_points", time_columns=["time"])
    frame = result.frame[["_row", "time", "geometry"]].assign(vehicle_id="304")
    clean = clean_fixes(frame)
    assert clean.counts == {"rows_in": 2144, "rows_used": 2144, "rows_rejected": 0}
    return track_from_fixes(clean.frame)


def load_liverpool(data: Path) -> Track:
    """The Liverpool route-14 buses (8 vehicles; the file is not sorted by time overall)."""
    result = read_table(data / TRAJ / "liverpool_bus_route14_outbound_2026-01-26.csv",
                        columns={"time": "timestamp", "lat": "latitude", "lon": "longitude"},
                        time_columns=["time"], tz=UTC)
    clean = clean_fixes(result.frame)
    assert clean.counts == {"rows_in": 1533, "rows_used": 1533, "rows_rejected": 0}
    return track_from_fixes(clean.frame)


LOADERS = {"geolife": load_geolife, "limerick": load_limerick, "liverpool": load_liverpool}


@pytest.fixture(scope="module")
def tracks(shared_data: Path) -> dict[str, Track]:
    return {name: load(shared_data) for name, load in LOADERS.items()}


@pytest.fixture(scope="module")
def collections(tracks: dict[str, Track]) -> dict[str, object]:
    # the SAME projected data for movingpandas: Euclidean distances in the track's metric CRS
    return {name: to_trajectory_collection(track) for name, track in tracks.items()}


def mpd_stops(tc: object, max_diameter: float, min_duration: pd.Timedelta) -> list[tuple]:
    ranges = mpd.TrajectoryStopDetector(tc).get_stop_time_ranges(
        max_diameter=max_diameter, min_duration=min_duration)
    return sorted((str(r.traj_id), pd.Timestamp(r.t_0), pd.Timestamp(r.t_n)) for r in ranges)


def our_stops(track: Track, max_diameter: float, min_duration: pd.Timedelta) -> list[tuple]:
    stops = detect_stops(track, max_diameter=max_diameter, min_duration=min_duration)
    return sorted(zip(stops["vehicle_id"], stops["start"].dt.tz_convert(None),
                      stops["end"].dt.tz_convert(None), strict=True))


STOP_SETTINGS = {
    "geolife": [(100.0, "5min"), (50.0, "2min"), (30.0, "60s"), (200.0, "10min"), (20.0, "30s")],
    "limerick": [(10.0, "10s"), (15.0, "15s"), (30.0, "30s"), (50.0, "60s"), (5.0, "4s")],
    "liverpool": [(30.0, "30s"), (50.0, "60s"), (100.0, "2min"), (20.0, "20s"), (300.0, "10min")],
}
STOP_CASES = [(name, d, m) for name, cases in STOP_SETTINGS.items() for d, m in cases]


@pytest.mark.parametrize(("name", "max_diameter", "min_duration"), STOP_CASES)
def test_stops_equal_movingpandas(tracks, collections, name, max_diameter, min_duration):
    track = tracks[name]
    duration = pd.Timedelta(min_duration)
    ours = our_stops(track, max_diameter, duration)
    theirs = mpd_stops(collections[name], max_diameter, duration)
    assert len(theirs) > 0, "the setting should find some stops on real data"
    assert len(ours) == len(theirs)
    assert ours == theirs


def test_stop_points_match_movingpandas(tracks, collections):
    """Median position and duration of each stop, as movingpandas' get_stop_points."""
    track = tracks["geolife"]
    ours = detect_stops(track, max_diameter=30.0, min_duration=pd.Timedelta("60s"))
    points = mpd.TrajectoryStopDetector(collections["geolife"]).get_stop_points(
        max_diameter=30.0, min_duration=pd.Timedelta("60s"))
    points = points.sort_values(["traj_id", "start_time"])
    ours = ours.sort_values(["vehicle_id", "start"])
    np.testing.assert_allclose(ours["x"], points.geometry.x, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["y"], points.geometry.y, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours["duration_s"], points["duration_s"].astype(float))
    # lon/lat is that point in WGS-84, and the fix ids bound the stop
    lon, lat = pyproj.Transformer.from_crs(track.crs, 4326, always_xy=True).transform(
        ours["x"].to_numpy(), ours["y"].to_numpy())
    np.testing.assert_allclose(ours["lon"], lon)
    np.testing.assert_allclose(ours["lat"], lat)
    assert (ours["last_fix_id"] >= ours["first_fix_id"]).all()
    assert (ours["n_fixes"] >= 2).all()
    assert ours["stop_id"].is_unique


def sample_times(track: Track, k: int, per_vehicle: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = track.offsets[k], track.offsets[k + 1] - 1
    times = rng.integers(track.t[lo], track.t[hi], size=per_vehicle, endpoint=True)
    return np.r_[track.t[lo], track.t[hi], track.t[lo:hi + 1:max(1, (hi - lo) // 10)], times]


@pytest.mark.parametrize("name", list(LOADERS))
def test_positions_match_movingpandas(tracks, collections, name):
    track = tracks[name]
    rng = np.random.default_rng(7)
    trajs = {str(tr.id): tr for tr in collections[name].trajectories}
    checked = refused = 0
    for k, vid in enumerate(track.vehicle_ids):
        times = sample_times(track, k, 40, rng)
        pos = positions_at(track, np.full(times.size, vid, dtype=object), times)
        traj = trajs[vid]
        for i, t in enumerate(pd.to_datetime(times, unit="ns")):
            p = traj.get_position_at(t, method="interpolated")
            if pos["ok"].iloc[i]:
                assert abs(pos["x"].iloc[i] - p.x) <= 1e-6
                assert abs(pos["y"].iloc[i] - p.y) <= 1e-6
                checked += 1
            else:  # we refuse only inside gaps; movingpandas interpolates across them
                assert pos["reason"].iloc[i] == "in a gap"
                refused += 1
    assert checked > 50
    if len(track.gaps):
        gap_pos = positions_at(track, track.gaps["vehicle_id"],
                               track.gaps["start"] + track.gaps["end"].sub(track.gaps["start"]) / 2)
        assert (gap_pos["reason"] == "in a gap").all()


@pytest.mark.parametrize("name", list(LOADERS))
def test_distance_between_matches_movingpandas_length(tracks, collections, name):
    track = tracks[name]
    rng = np.random.default_rng(11)
    trajs = {str(tr.id): tr for tr in collections[name].trajectories}
    for k, vid in enumerate(track.vehicle_ids):
        lo, hi = track.offsets[k], track.offsets[k + 1]
        if hi - lo < 5:
            continue
        traj = trajs[vid]
        for _ in range(5):
            # clipped at fix times: the segment's length
            i, j = np.sort(rng.choice(np.arange(lo, hi), size=2, replace=False))
            seg = traj.get_segment_between(pd.Timestamp(track.t[i]), pd.Timestamp(track.t[j]))
            ours = distance_between(track, vid, track.t[i], track.t[j], across_gaps="straight")
            assert ours[0] == pytest.approx(seg.get_length(), rel=1e-12, abs=1e-6)
            # clipped at arbitrary times (interpolated ends), where positions are known
            t0, t1 = np.sort(rng.integers(track.t[lo], track.t[hi - 1], size=2))
            if not positions_at(track, vid, [t0, t1])["ok"].all() or t1 - t0 < 10**9:
                continue
            line = traj.get_linestring_between(pd.Timestamp(t0), pd.Timestamp(t1))
            ours = distance_between(track, vid, t0, t1, across_gaps="straight")
            assert ours[0] == pytest.approx(line.length, rel=1e-9, abs=1e-6)
    # the whole track, per vehicle
    whole = distance_between(track, track.vehicle_ids, track.t[track.offsets[:-1]],
                             track.t[track.offsets[1:] - 1])
    np.testing.assert_allclose(whole, [trajs[v].get_length() for v in track.vehicle_ids],
                               rtol=1e-12)


def test_limerick_bus_dwells_at_its_stops(tracks, shared_data):
    """The bus really stops at its bus stops: small stops fall within 30 m of them."""
    track = tracks["limerick"]
    stops = detect_stops(track, max_diameter=15.0, min_duration=pd.Timedelta("15s"))
    bus_stops = read_table(shared_data / TRAJ / "bus304_limerick_stops.gpkg").frame
    bx, by = pyproj.Transformer.from_crs(4326, track.crs, always_xy=True).transform(
        bus_stops.geometry.x.to_numpy(), bus_stops.geometry.y.to_numpy())
    d = np.hypot(stops["x"].to_numpy()[:, None] - bx, stops["y"].to_numpy()[:, None] - by)
    near = d.min(axis=1) <= 30.0
    visited = set(d.argmin(axis=1)[near])
    assert 25 <= len(stops) <= 60
    assert near.sum() >= 0.6 * len(stops)  # most dwells are at bus stops (others: lights)
    assert len(visited) >= 20  # of the 36 stops on the route
    # trips run between the stops and add up with them to the whole journey
    legs = trips(track, stops)
    assert len(legs) >= len(stops) - 1
    total = distance_between(track, "304", track.t[0], track.t[-1])[0]
    in_stops = distance_between(track, np.full(len(stops), "304", dtype=object),
                                stops["start"], stops["end"]).sum()
    assert legs["distance_m"].sum() + in_stops == pytest.approx(total, rel=1e-9)


def test_liverpool_nearest_approach_reproduces_readme(tracks, shared_data):
    """Closest approaches of the 8 buses to the 81 forecourts over the whole afternoon.

    The README measured fix-to-station distances: RONTEC ISLINGTON at 137 m (vehicle 4722,
    16:50:08), 0 stations within 100 m, 3 within 400 m, 5 within 805 m. ``fix_distance_m``
    reproduces them. ``distance_m`` also measures the straight segments between fixes (24 s
    apart), so it can only be smaller: the segment past RONTEC ISLINGTON comes within about
    53 m (the road may curve; a fleet vendor would count it as a pass within 100 m).
    """
    track = tracks["liverpool"]
    stations = read_table(
        shared_data / TRAJ / "uk_fuel_finder_forecourts_2026-02-18_liverpool_bbox.csv",
        columns={"lat": "forecourts.location.latitude", "lon": "forecourts.location.longitude",
                 "name": "forecourts.trading_name"}).frame
    assert len(stations) == 81
    sx, sy = pyproj.Transformer.from_crs(4326, track.crs, always_xy=True).transform(
        stations["lon"].to_numpy(), stations["lat"].to_numpy())
    nv, ns = track.n_vehicles, len(stations)
    result = nearest_approach(
        track, np.repeat(track.vehicle_ids, ns), pd.Timestamp("2026-01-26 17:00", tz=UTC),
        np.tile(sx, nv), np.tile(sy, nv), window=pd.Timedelta("12h"))
    result["vehicle_id"] = np.repeat(track.vehicle_ids, ns)
    result["station"] = np.tile(stations["name"].to_numpy(), nv)
    assert (result["n_fixes"] == np.repeat(np.diff(track.offsets), ns)).all()
    assert (result["distance_m"] <= result["fix_distance_m"] + 1e-9).all()
    by_fix = result.sort_values("fix_distance_m").groupby("station").head(1)
    best = by_fix.iloc[0]
    assert best["station"] == "RONTEC ISLINGTON"
    assert best["vehicle_id"] == "4722"
    assert best["fix_distance_m"] == pytest.approx(137.0, abs=1.0)
    fixes = clean_fixes(read_table(
        shared_data / TRAJ / "liverpool_bus_route14_outbound_2026-01-26.csv",
        columns={"time": "timestamp", "lat": "latitude", "lon": "longitude"},
        time_columns=["time"], tz=UTC).frame).frame
    at = fixes.loc[fixes["_row"] == best["fix_id"], "time"].iloc[0]
    assert at == pd.Timestamp("2026-01-26 16:50:08", tz=UTC)
    counts = {r: int((by_fix["fix_distance_m"] <= r).sum()) for r in (100, 400, 805)}
    assert counts == {100: 0, 400: 3, 805: 5}
    by_path = result.sort_values("distance_m").groupby("station").head(1)
    path_counts = {r: int((by_path["distance_m"] <= r).sum()) for r in (100, 400, 805)}
    assert path_counts[100] == 1 and path_counts[400] == 3 and path_counts[805] >= 5
    islington = by_path.iloc[0]
    assert islington["station"] == "RONTEC ISLINGTON"
    assert 40.0 < islington["distance_m"] < 100.0
    assert pd.Timestamp("2026-01-26 16:49:40", tz=UTC) < islington["at"] <= at


# ---------------------------------------------------------------------------------------------
# Small hand-made tracks
# ---------------------------------------------------------------------------------------------


def line_track(times_s, xs, ys=None, *, vehicle="V1", max_gap="10min") -> Track:
    """A track in UTM 50N metres built from metric coordinates."""
    ys = np.zeros(len(xs)) if ys is None else np.asarray(ys, dtype=float)
    crs = pyproj.CRS.from_epsg(32650)
    lon, lat = pyproj.Transformer.from_crs(crs, 4326, always_xy=True).transform(
        500000.0 + np.asarray(xs, dtype=float), 4400000.0 + ys)
    fixes = pd.DataFrame({"vehicle_id": vehicle, "lon": lon, "lat": lat,
                          "time": pd.to_datetime(np.asarray(times_s), unit="s", utc=True)})
    return track_from_fixes(fixes, crs=crs, max_gap=pd.Timedelta(max_gap))


def ts(seconds) -> pd.DatetimeIndex:
    return pd.to_datetime(np.atleast_1d(seconds), unit="s", utc=True)


def test_positions_reasons_and_exact_fixes():
    track = line_track([0, 60, 120, 1800, 1860], [0, 600, 1200, 1300, 1400])
    pos = positions_at(track, ["V1"] * 7 + ["nope", "V1"],
                       ts([-1, 0, 30, 120, 900, 1860, 1861, 30, 0]).append(
                           pd.DatetimeIndex([pd.NaT], tz=UTC))[[0, 1, 2, 3, 4, 5, 6, 7, 9]])
    assert pos["reason"].tolist() == ["before first fix", "", "", "", "in a gap", "",
                                      "after last fix", "unknown vehicle", "missing time"]
    assert pos["ok"].tolist() == [False, True, True, True, False, True, False, False, False]
    assert pos["x"].iloc[1] == track.x[0] and pos["y"].iloc[3] == track.y[2]
    assert pos["x"].iloc[2] == pytest.approx(track.x[0] + 300.0, abs=1e-6)
    assert np.isnan(pos["x"].iloc[4])
    # a larger max_gap interpolates across the gap
    wide = positions_at(track, "V1", ts(960), max_gap=pd.Timedelta("1h"))
    assert wide["ok"].iloc[0] and wide["x"].iloc[0] == pytest.approx(track.x[2] + 50.0)
    # the gap is recorded
    assert track.gaps[["vehicle_id", "duration_s"]].values.tolist() == [["V1", 1680.0]]


def test_vehicle_index_normalises_ids():
    fixes = pd.DataFrame({"vehicle_id": [4716, 4716, 12], "lon": [1.0, 1.1, 1.0],
                          "lat": [1.0, 1.0, 1.0], "time": ts([0, 1, 0])})
    track = track_from_fixes(fixes)
    assert track.vehicle_ids.tolist() == ["12", "4716"]
    assert vehicle_index(track, ["4716", 4716, 4716.0, "12", "x", None]).tolist() == [
        1, 1, 1, 0, -1, -1]


def test_distance_between_options():
    track = line_track([0, 60, 120, 1800, 1860], [0, 600, 1200, 1300, 1400])
    d = lambda *a, **k: distance_between(track, "V1", ts(a[0]), ts(a[1]), **k)[0]  # noqa: E731
    assert d(30, 90) == pytest.approx(600.0)
    assert d(0, 1860) == pytest.approx(1400.0)  # the gap counts as its straight line
    assert d(0, 1860, across_gaps="zero") == pytest.approx(1300.0)
    assert np.isnan(d(0, 1860, across_gaps="nan"))
    assert d(0, 120, across_gaps="nan") == pytest.approx(1200.0)
    assert d(900, 1860, across_gaps="nan") != d(900, 1860, across_gaps="nan")  # NaN
    # ends inside a gap snap to the gap's fix on the inside of the interval
    assert d(60, 900) == pytest.approx(600.0)
    assert d(900, 1830) == pytest.approx(50.0)
    assert d(900, 1000) == 0.0
    # outside the track: clamped, or NaN on request
    assert d(-100, 30) == pytest.approx(300.0)
    assert np.isnan(d(-100, 30, outside="nan"))
    assert np.isnan(d(60, 30))  # end before start
    assert np.isnan(distance_between(track, "nope", ts(0), ts(60))[0])
    with pytest.raises(ConfigError):
        distance_between(track, "V1", ts(0), ts(60), across_gaps="maybe")


def test_nearest_approach_uses_segments_window_ends_and_skips_gaps():
    # east along y = 0 every minute, then a 30-minute gap, then further east
    track = line_track([0, 60, 120, 180, 2000, 2060], [0, 600, 1200, 1800, 5000, 5600])
    x0, y0 = track.x[0], track.y[0]
    # a point 40 m north of x = 900: closest on the segment 60-120 s, at t = 90 s
    r = nearest_approach(track, "V1", ts(90), x0 + 900.0, y0 + 40.0, window=pd.Timedelta("5min"))
    assert r["distance_m"].iloc[0] == pytest.approx(40.0, abs=1e-6)
    assert r["at"].iloc[0] == pd.Timestamp(90, unit="s", tz=UTC)
    assert r["fix_distance_m"].iloc[0] == pytest.approx(np.hypot(300.0, 40.0))
    assert r["n_fixes"].iloc[0] == 4 and bool(r["covered"].iloc[0])
    # a window of +-10 s around 90 s holds no fix: the interpolated ends make the path
    r = nearest_approach(track, "V1", ts(90), x0 + 900.0, y0 + 40.0, window=pd.Timedelta("10s"))
    assert r["n_fixes"].iloc[0] == 0 and r["fix_id"].iloc[0] == -1
    assert r["distance_m"].iloc[0] == pytest.approx(40.0, abs=1e-6)
    assert not r["covered"].iloc[0] and r["reason"].iloc[0] == ""
    # a point beside the gap's straight line: never reached by interpolation across the gap
    r = nearest_approach(track, "V1", ts(1000), x0 + 3400.0, y0, window=pd.Timedelta("1h"))
    assert r["distance_m"].iloc[0] == pytest.approx(1600.0, abs=1e-6)
    # inside the gap: no fixes in the window, not covered
    r = nearest_approach(track, ["V1", "V2", "V1"], ts([1000, 1000, 1000]), x0, y0,
                         window=pd.Timedelta("5min"))
    assert r["reason"].tolist() == ["no fixes in window", "unknown vehicle", "no fixes in window"]
    assert r["covered"].tolist() == [False, False, False]
    assert np.isnan(r["distance_m"]).all()


def test_detect_stops_and_trips_small():
    # moving, a 4-minute stop with jitter, moving again
    times = [0, 60, 120, 180, 240, 300, 360, 420, 480]
    xs = [0, 500, 1000, 1003, 998, 1001, 1000, 1500, 2000]
    track = line_track(times, xs, [0, 0, 0, 2, -1, 1, 0, 0, 0])
    stops = detect_stops(track, max_diameter=20.0, min_duration=pd.Timedelta("3min"))
    assert len(stops) == 1
    stop = stops.iloc[0]
    assert (stop["start"], stop["end"]) == (ts(120)[0], ts(360)[0])
    assert stop["n_fixes"] == 5 and stop["duration_s"] == 240.0
    assert stop["stop_id"] == "V1@1970-01-01T00:02:00Z"
    legs = trips(track, stops)
    assert legs[["start", "end", "n_fixes"]].values.tolist() == [
        [ts(0)[0], ts(120)[0], 3], [ts(360)[0], ts(480)[0], 3]]
    assert legs["distance_m"].tolist() == pytest.approx([1000.0, 1000.0], abs=0.01)
    # no stops: one trip per gap-free piece
    assert len(trips(track, stops.iloc[:0])) == 1
    empty = detect_stops(track, max_diameter=1.0, min_duration=pd.Timedelta("3min"))
    assert empty.empty and list(empty.columns) == list(stops.columns)
    with pytest.raises(ConfigError):
        detect_stops(track, max_diameter=-1.0, min_duration=pd.Timedelta("1min"))


def test_track_from_fixes_refuses_bad_input():
    good = pd.DataFrame({"vehicle_id": ["V1", "V1"], "lon": [116.0, 116.1], "lat": [40.0, 40.0],
                         "time": ts([0, 60])})
    with pytest.raises(ValidationError, match="share a time"):
        track_from_fixes(pd.concat([good, good.iloc[:1]]))
    with pytest.raises(ValidationError, match="lack"):
        track_from_fixes(good.assign(lon=[np.nan, 116.0]))
    with pytest.raises(SchemaError):
        track_from_fixes(good.drop(columns="time"))
    with pytest.raises(SchemaError):
        track_from_fixes(good.drop(columns=["lon"]))
    with pytest.raises(CRSError):
        track_from_fixes(good, crs=4326)
    # China: a CGCS2000 Gauss-Krüger zone; geometry input works too
    gdf = gpd.GeoDataFrame(good.drop(columns=["lon", "lat"]),
                           geometry=gpd.points_from_xy(good["lon"], good["lat"]), crs=4326)
    track = track_from_fixes(gdf.to_crs(3857))
    assert track.crs.to_epsg() == 4548
    np.testing.assert_allclose(track.lon, good["lon"])
    empty = track_from_fixes(good.iloc[:0])
    assert empty.n_fixes == 0 and empty.n_vehicles == 0
    assert positions_at(empty, ["V1"], ts(0))["reason"].tolist() == ["unknown vehicle"]
    assert detect_stops(empty, max_diameter=10.0, min_duration=pd.Timedelta("1min")).empty


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@st.composite
def monotone_tracks(draw):
    n = draw(st.integers(min_value=2, max_value=40))
    steps = draw(st.lists(st.integers(min_value=1, max_value=900), min_size=n - 1,
                          max_size=n - 1))
    times = np.cumsum([0, *steps])
    xs = draw(st.lists(st.floats(-5000, 5000), min_size=n, max_size=n))
    ys = draw(st.lists(st.floats(-5000, 5000), min_size=n, max_size=n))
    return times, np.asarray(xs), np.asarray(ys)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(monotone_tracks(), st.data())
def test_properties_of_random_tracks(track_data, data):
    times, xs, ys = track_data
    track = line_track(times, xs, ys, max_gap="5min")
    # positions at fix times are the fixes exactly
    pos = positions_at(track, "V1", track.t)
    assert pos["ok"].all()
    np.testing.assert_array_equal(pos["x"], track.x)
    np.testing.assert_array_equal(pos["y"], track.y)
    np.testing.assert_array_equal(pos["lon"], track.lon)
    # distances add up: exactly with gaps counted as zero, and with straight gaps when
    # the middle time is not inside a gap
    t0, t1, t2 = sorted(data.draw(st.lists(
        st.integers(int(track.t[0]) - 10**9, int(track.t[-1]) + 10**9), min_size=3,
        max_size=3)))
    for mode in ("zero", "straight"):
        d01, d12, d02 = (distance_between(track, "V1", a, b, across_gaps=mode)[0]
                         for a, b in ((t0, t1), (t1, t2), (t0, t2)))
        if mode == "straight" and positions_at(track, "V1", t1)["reason"].iloc[0] == "in a gap":
            assert d01 + d12 <= d02 + 1e-6
        else:
            assert d01 + d12 == pytest.approx(d02, rel=1e-9, abs=1e-6)
    # the closest approach to a fix is zero, at that fix
    i = data.draw(st.integers(0, track.n_fixes - 1))
    r = nearest_approach(track, "V1", track.t[i], track.x[i], track.y[i],
                         window=pd.Timedelta("1min"))
    assert r["distance_m"].iloc[0] == 0.0 and r["fix_distance_m"].iloc[0] == 0.0


@pytest.mark.parametrize("spacing_ns", [30 * 10**9, 1, 1000])
def test_block_search_equals_searchsorted_per_vehicle(spacing_ns):
    """The binary search inside vehicle blocks, against numpy per block (exact ints)."""
    from trajectories.motion import _block_search, _search

    rng = np.random.default_rng(spacing_ns)
    sizes = rng.integers(1, 50, 300)
    t = np.concatenate([10**18 + rng.integers(-10**17, 10**17)
                        + np.cumsum(rng.integers(1, 4, s)) * spacing_ns for s in sizes])
    offsets = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    track = Track(vehicle_ids=np.array([f"v{i:03d}" for i in range(sizes.size)], dtype=object),
                  offsets=offsets, t=t, x=np.zeros(t.size), y=np.zeros(t.size),
                  lon=np.zeros(t.size), lat=np.zeros(t.size), fix_id=np.arange(t.size),
                  crs=pyproj.CRS.from_epsg(32650), gaps=pd.DataFrame())
    k = rng.integers(0, sizes.size, 5000)
    lo, hi = offsets[k], offsets[k + 1]
    q = t[rng.integers(lo, hi)] + rng.integers(-3, 4, k.size) * rng.choice([1, spacing_ns],
                                                                           k.size)
    q[:50] = t[lo[:50]] - 10**15  # far before
    q[50:100] = t[hi[50:100] - 1] + 10**15  # far after
    for side in ("left", "right"):
        expected = np.array([lo[i] + np.searchsorted(t[lo[i]:hi[i]], q[i], side=side)
                             for i in range(k.size)])
        np.testing.assert_array_equal(_block_search(track, lo, hi, q, side=side), expected)
        np.testing.assert_array_equal(_search(t, lo, hi, q, side=side), expected)


@pytest.mark.parametrize("gap_min", [0, 2, 10])
def test_derived_arrays_equal_the_numpy_formulas(gap_min):
    """Segment lengths, gap flags and cumulative distances (one numba pass) are bit-identical
    to the numpy expressions they replace."""
    rng = np.random.default_rng(gap_min)
    n = 20_000
    fixes = pd.DataFrame({
        "vehicle_id": np.sort(rng.integers(0, 60, n)).astype(str),
        "time": pd.to_datetime(np.cumsum(rng.integers(1, 1200, n)) * 10**9, utc=True),
        "lon": 116.4 + rng.normal(0, 0.05, n), "lat": 39.9 + rng.normal(0, 0.05, n)})
    track = track_from_fixes(fixes)
    gap_ns = gap_min * 60 * 10**9
    seg = np.zeros(track.n_fixes)
    seg[:-1] = np.sqrt(np.diff(track.x) ** 2 + np.diff(track.y) ** 2)
    seg[track.offsets[1:] - 1] = 0.0
    gap = np.zeros(track.n_fixes, dtype=bool)
    gap[:-1] = np.diff(track.t) > gap_ns
    gap[track.offsets[1:] - 1] = False
    cum = np.zeros(track.n_fixes)
    cum[1:] = np.cumsum(seg[:-1])
    cum_move = np.zeros(track.n_fixes)
    cum_move[1:] = np.cumsum(np.where(gap, 0.0, seg)[:-1])
    assert 0 < gap.sum() < n
    np.testing.assert_array_equal(track.segment_length, seg)
    np.testing.assert_array_equal(track.is_gap(pd.Timedelta(gap_ns, unit="ns")), gap)
    np.testing.assert_array_equal(track._cumulative(gap_ns, zero_gaps=False), cum)
    np.testing.assert_array_equal(track._cumulative(gap_ns, zero_gaps=True), cum_move)
    assert not track.is_gap().flags.writeable  # cached: callers must not change it
