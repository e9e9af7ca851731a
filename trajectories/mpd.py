"""Adapters between a :class:`~trajectories.motion.Track` and a movingpandas TrajectoryCollection.

For users who already hold their tracks in movingpandas, and for the parity tests and
benchmarks that run movingpandas on exactly the data our operators see.

movingpandas keeps naive times (it drops a time zone, keeping the local wall time) and drops
repeated timestamps: :func:`to_trajectory_collection` hands it naive **UTC** times, and
:func:`from_trajectory_collection` reads its naive times in a declared zone (UTC by default).

Examples
--------
>>> import pandas as pd
>>> from trajectories.motion import track_from_fixes
>>> fixes = pd.DataFrame({"vehicle_id": ["V1", "V1", "V2", "V2"],
...                       "lon": [116.0, 116.001, 116.1, 116.1], "lat": [40.0, 40.0, 40.1, 40.2],
...                       "time": pd.to_datetime([0, 60, 0, 60], unit="s", utc=True)})
>>> track = track_from_fixes(fixes)
>>> tc = to_trajectory_collection(track)
>>> len(tc), tc.trajectories[0].crs == track.crs
(2, True)
>>> back = from_trajectory_collection(tc)
>>> back.vehicle_ids.tolist(), bool((back.t == track.t).all())
(['V1', 'V2'], True)
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj

from geosup.errors import ConfigError, ValidationError
from trajectories.motion import DEFAULT_MAX_GAP, Track, _utc, track_from_fixes

__all__ = ["from_trajectory_collection", "to_trajectory_collection"]

logger = logging.getLogger(__name__)


def to_trajectory_collection(
    track: Track,
    *,
    crs: Literal["metric", "wgs84"] = "metric",
) -> Any:
    """Convert a track to a movingpandas ``TrajectoryCollection`` (one trajectory per vehicle).

    Parameters
    ----------
    track : Track
    crs : {"metric", "wgs84"}
        Coordinates in ``track.crs`` (movingpandas then measures Euclidean distances in
        metres, as our operators do) or in EPSG:4326 (movingpandas measures geodesic ones).

    Returns
    -------
    movingpandas.TrajectoryCollection
        Trajectory ids are the vehicle ids; the index holds naive UTC times (column ``t``
        before indexing); columns ``vehicle_id``, ``fix_id`` and the point geometry. Vehicles
        with a single fix are left out (movingpandas needs two).
    """
    import movingpandas as mpd

    if crs == "metric":
        x, y, out_crs = track.x, track.y, track.crs
    elif crs == "wgs84":
        x, y, out_crs = track.lon, track.lat, pyproj.CRS.from_epsg(4326)
    else:
        msg = f"crs must be 'metric' or 'wgs84', not {crs!r}"
        raise ConfigError(msg)
    frame = gpd.GeoDataFrame(
        {
            "vehicle_id": track.vehicle_ids[track.vehicle_of_fix()],
            "fix_id": track.fix_id,
            "t": pd.to_datetime(track.t, unit="ns"),
        },
        geometry=gpd.points_from_xy(x, y),
        crs=out_crs,
    )
    return mpd.TrajectoryCollection(frame, traj_id_col="vehicle_id", t="t", crs=out_crs)


def from_trajectory_collection(
    tc: Any,
    *,
    tz: str = "UTC",
    crs: Any = None,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
) -> Track:
    """Build a :class:`~trajectories.motion.Track` from a movingpandas collection.

    Parameters
    ----------
    tc : movingpandas.TrajectoryCollection or Trajectory
        Each trajectory becomes one vehicle (its ``id``, as a string). Trajectories that share
        an id are merged.
    tz : str, default "UTC"
        The zone of the collection's naive times (movingpandas keeps wall time); a tz-aware
        index is converted to UTC.
    crs : CRS-like, optional
        Metric CRS of the track (default: chosen from the extent).
    max_gap : pandas.Timedelta
        See :func:`~trajectories.motion.track_from_fixes`.

    Returns
    -------
    Track
        ``fix_id`` comes from a ``fix_id`` column when every trajectory has one, else it
        numbers the points 1, 2, … in collection order.

    Raises
    ------
    ValidationError
        A trajectory has no CRS.
    """
    trajectories = getattr(tc, "trajectories", None)
    if trajectories is None:
        trajectories = [tc]
    parts = []
    for traj in trajectories:  # one step per trajectory, not per fix
        df = traj.df
        geo = df.geometry
        if geo.isna().all() and traj.x in df.columns and traj.y in df.columns:
            # built from x/y columns: movingpandas fills the geometry lazily
            geo = gpd.GeoSeries(gpd.points_from_xy(df[traj.x], df[traj.y]), index=df.index,
                                crs=traj.crs)
        if geo.crs is None:
            msg = f"trajectory {traj.id!r} has no CRS; set one before converting"
            raise ValidationError(msg)
        if not geo.crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
            geo = geo.to_crs(4326)
        index = pd.DatetimeIndex(df.index)
        times = index.tz_convert("UTC") if index.tz is not None else index.tz_localize(
            tz).tz_convert("UTC")
        part = pd.DataFrame({
            "vehicle_id": str(traj.id),
            "time": times,
            "lon": geo.x.to_numpy(dtype=np.float64),
            "lat": geo.y.to_numpy(dtype=np.float64),
        })
        if "fix_id" in df.columns:
            part["fix_id"] = df["fix_id"].to_numpy(dtype=np.int64)
        parts.append(part)
    if not parts:
        fixes = pd.DataFrame({"vehicle_id": pd.Series([], dtype=object),
                              "time": _utc(np.zeros(0, dtype=np.int64)),
                              "lon": np.zeros(0), "lat": np.zeros(0)})
    else:
        fixes = pd.concat(parts, ignore_index=True)
    if "fix_id" in fixes.columns and fixes["fix_id"].isna().any():
        fixes = fixes.drop(columns="fix_id")
    logger.debug("converted %d trajectories (%d points) to a track", len(parts), len(fixes))
    return track_from_fixes(fixes, crs=crs, max_gap=max_gap)
