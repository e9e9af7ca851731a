"""Motion of many vehicles at once: positions at times, distances, stops, trips, nearest approach.

All vehicles' cleaned fixes live in one columnar :class:`Track` (numpy arrays sorted by vehicle
and time, no per-trajectory Python objects). Every operator is vectorised over all vehicles
and all queries at once: positions and distances by one ``np.searchsorted`` over a global
(vehicle, time) key with exact integer corrections, the inherently sequential loops (stop
detection, the scan of the fixes inside each query window) by small numba kernels (compiled
once and cached on disk beside the module: a few seconds on first use).

Contract notes (additions to the shared plan; nothing was removed or renamed):

- ``Track`` has one more field, ``max_gap`` (the gap threshold it was built with; the default
  of every operator's ``max_gap``), and the helpers ``n_fixes``, ``n_vehicles``,
  ``vehicle_of_fix()``, ``segment_length`` and ``is_gap()``.
- ``positions_at`` also reports ``"missing time"`` for NaT query times.
- ``distance_between`` takes ``across_gaps``, ``outside`` and ``max_gap`` options.
- ``nearest_approach`` returns extra columns ``x, y`` (the closest point), ``fix_distance_m``
  (distance of the closest *fix*) and ``reason``, and takes ``max_gap``.
- ``detect_stops`` returns ``stop_id`` as a readable string ``"<vehicle_id>@<start, ISO UTC>"``.
- ``trips`` returns extra columns ``first_fix_id, last_fix_id``, takes ``max_gap``; trips are
  split at gaps too.
- ``DEFAULT_MAX_GAP`` (10 min) is the shared default of every ``max_gap``.

Times given to the operators may be tz-aware (converted to UTC), naive (read as UTC) or int64
nanoseconds since the epoch (UTC). Vehicle ids are compared as strings (``4716`` and
``"4716"`` are the same vehicle; an integral float ``4716.0`` too).

Examples
--------
>>> import pandas as pd
>>> fixes = pd.DataFrame({
...     "vehicle_id": ["V1", "V1", "V1", "V2", "V2"],
...     "time": pd.to_datetime(["2026-01-26 08:00:00", "2026-01-26 08:01:00",
...                             "2026-01-26 08:30:00", "2026-01-26 08:00:00",
...                             "2026-01-26 08:02:00"], utc=True),
...     "lon": [-2.95, -2.94, -2.93, -2.90, -2.90],
...     "lat": [53.40, 53.40, 53.40, 53.41, 53.42],
... })
>>> track = track_from_fixes(fixes)
>>> track.crs.to_epsg(), track.n_vehicles, track.n_fixes, len(track.gaps)
(32630, 2, 5, 1)
>>> pos = positions_at(track, ["V1", "V1", "V9"],
...                    pd.to_datetime(["2026-01-26 08:00:30", "2026-01-26 08:10:00",
...                                    "2026-01-26 08:00:00"], utc=True))
>>> pos["ok"].tolist(), pos["reason"].tolist()
([True, False, False], ['', 'in a gap', 'unknown vehicle'])
>>> round(float(pos["lon"].iloc[0]), 3)
-2.945
>>> d = distance_between(track, ["V2"], pd.Timestamp("2026-01-26 08:00:00", tz="UTC"),
...                      pd.Timestamp("2026-01-26 08:01:00", tz="UTC"))
>>> round(float(d[0]))
556
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import pyproj
from numpy.typing import ArrayLike

from geosup.errors import ConfigError, CRSError, SchemaError, ValidationError

__all__ = [
    "DEFAULT_MAX_GAP",
    "POSITION_REASONS",
    "Track",
    "detect_stops",
    "distance_between",
    "nearest_approach",
    "positions_at",
    "track_from_fixes",
    "trips",
    "vehicle_index",
]

logger = logging.getLogger(__name__)

POSITION_REASONS: tuple[str, ...] = (
    "",
    "unknown vehicle",
    "missing time",
    "before first fix",
    "after last fix",
    "in a gap",
)
"""Values of the ``reason`` column of :func:`positions_at` (``""`` when ``ok``)."""

DEFAULT_MAX_GAP = pd.Timedelta("10min")
"""Default gap threshold: consecutive fixes further apart are a gap (no interpolation)."""

_NAT = np.iinfo(np.int64).min
_WGS84 = pyproj.CRS.from_epsg(4326)
# The CRS of a track without fixes (no extent to choose a zone from; nothing is measured).
_EMPTY_TRACK_CRS = pyproj.CRS.from_epsg(3857)
_GAP_COLUMNS = ("vehicle_id", "start", "end", "duration_s")
_STOP_COLUMNS = ("stop_id", "vehicle_id", "start", "end", "duration_s", "x", "y", "lon", "lat",
                 "n_fixes", "first_fix_id", "last_fix_id")
_TRIP_COLUMNS = ("trip_id", "vehicle_id", "start", "end", "distance_m", "n_fixes",
                 "first_fix_id", "last_fix_id")


# ---------------------------------------------------------------------------------------------
# The Track
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """All vehicles' cleaned fixes, columnar, sorted by (vehicle, time).

    Build one with :func:`track_from_fixes`.

    Attributes
    ----------
    vehicle_ids : numpy.ndarray
        ``(n_vehicles,)`` object array of vehicle id strings, sorted.
    offsets : numpy.ndarray
        ``(n_vehicles + 1,)`` int64: the fixes of vehicle ``k`` are
        ``[offsets[k], offsets[k + 1])``.
    t : numpy.ndarray
        ``(n,)`` int64 nanoseconds since the epoch, UTC; strictly increasing per vehicle.
    x, y : numpy.ndarray
        ``(n,)`` float64 metric coordinates in ``crs``.
    lon, lat : numpy.ndarray
        ``(n,)`` float64 WGS-84 longitude and latitude.
    fix_id : numpy.ndarray
        ``(n,)`` int64: the fix's row number in its source (for evidence).
    crs : pyproj.CRS
        The metric CRS of ``x`` and ``y``.
    gaps : pandas.DataFrame
        ``vehicle_id, start, end, duration_s`` (tz-aware UTC): intervals between consecutive
        fixes longer than ``max_gap``. Positions are never interpolated inside them.
    speed_kmh, odometer_km : numpy.ndarray or None
        ``(n,)`` float64 reported speed and odometer when the fixes had them.
    max_gap : pandas.Timedelta
        The gap threshold ``gaps`` was built with; the default ``max_gap`` of the operators.
    """

    vehicle_ids: np.ndarray
    offsets: np.ndarray
    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    fix_id: np.ndarray
    crs: pyproj.CRS
    gaps: pd.DataFrame
    speed_kmh: np.ndarray | None = None
    odometer_km: np.ndarray | None = None
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP

    @property
    def n_fixes(self) -> int:
        """Number of fixes of all vehicles."""
        return int(self.t.shape[0])

    @property
    def n_vehicles(self) -> int:
        """Number of vehicles."""
        return int(self.vehicle_ids.shape[0])

    def vehicle_of_fix(self) -> np.ndarray:
        """``(n,)`` int64: the index (into ``vehicle_ids``) of each fix's vehicle."""
        return np.repeat(np.arange(self.n_vehicles, dtype=np.int64), np.diff(self.offsets))

    @cached_property
    def segment_length(self) -> np.ndarray:
        """``(n,)`` float64: metres from fix ``i`` to fix ``i + 1`` (0 at a vehicle's last fix)."""
        return self._derived(_gap_ns(self, None))[0]

    def is_gap(self, max_gap: pd.Timedelta | None = None) -> np.ndarray:
        """``(n,)`` bool: the segment from fix ``i`` to fix ``i + 1`` is longer than ``max_gap``.

        False at each vehicle's last fix. ``max_gap`` defaults to ``self.max_gap``.
        """
        return self._derived(_gap_ns(self, max_gap))[1]

    @cached_property
    def _slots(self) -> dict[str, int]:
        """The index of each vehicle id in ``vehicle_ids``."""
        return {str(v): i for i, v in enumerate(self.vehicle_ids)}

    @cached_property
    def _cache(self) -> dict[Any, tuple[np.ndarray, ...]]:
        """Derived per-fix arrays, computed once per track and gap threshold."""
        return {}

    def _derived(self, gap_ns: int) -> tuple[np.ndarray, ...]:
        """Segment lengths, gap flags, and the cumulative metres along the fixes from the
        track's first fix (across vehicles too: only differences within one vehicle mean
        anything) with gaps as straight lines and as 0, in one pass
        (:func:`_derive_kernel`); read-only, cached per ``gap_ns``."""
        if gap_ns not in self._cache:
            n = self.n_fixes
            out = (np.zeros(n), np.zeros(n, dtype=np.bool_), np.zeros(n), np.zeros(n))
            if n:
                _derive_kernel(np.ascontiguousarray(self.t), np.ascontiguousarray(self.x),
                               np.ascontiguousarray(self.y),
                               np.ascontiguousarray(self.offsets, dtype=np.int64),
                               np.int64(gap_ns), *out)
            for arr in out:
                arr.flags.writeable = False
            self._cache[gap_ns] = out
        return self._cache[gap_ns]

    def _cumulative(self, gap_ns: int, *, zero_gaps: bool) -> np.ndarray:
        """``(n,)`` float64: metres from the track's first fix to each fix along the fixes,
        segments longer than ``gap_ns`` as straight lines or (``zero_gaps``) as 0."""
        return self._derived(gap_ns)[3 if zero_gaps else 2]

    def __repr__(self) -> str:
        return (f"Track({self.n_vehicles} vehicles, {self.n_fixes} fixes, {len(self.gaps)} gaps, "
                f"crs={self.crs.to_string()})")


@numba.njit(cache=True, nogil=True)
def _derive_kernel(t, x, y, offsets, gap_ns, seg, gap, cum, cum_move):  # pragma: no cover - jit
    """One pass for :meth:`Track._derived`: the same values as ``sqrt(diff(x)**2 +
    diff(y)**2)``, ``diff(t) > gap_ns`` (both 0 at each vehicle's last fix) and the running
    sums ``cum[i] = sum(seg[:i])`` (``np.cumsum`` order)."""
    n = t.shape[0]
    for v in range(offsets.shape[0] - 1):
        for i in range(offsets[v], offsets[v + 1] - 1):
            dx = x[i + 1] - x[i]
            dy = y[i + 1] - y[i]
            seg[i] = np.sqrt(dx * dx + dy * dy)
            gap[i] = t[i + 1] - t[i] > gap_ns
    total = 0.0
    total_move = 0.0
    for i in range(n - 1):
        total += seg[i]
        if not gap[i]:
            total_move += seg[i]
        cum[i + 1] = total
        cum_move[i + 1] = total_move


def _gap_ns(track: Track, max_gap: pd.Timedelta | None) -> int:
    gap = track.max_gap if max_gap is None else max_gap
    value = pd.Timedelta(gap)
    if pd.isna(value) or value < pd.Timedelta(0):
        msg = f"max_gap must be a non-negative duration, got {max_gap!r}"
        raise ConfigError(msg)
    return int(value.value)


def _id_strings(values: Any) -> np.ndarray:
    """Vehicle ids as an object array of str; integral floats lose their ``.0``; missing -> None."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values,
                                                                               dtype=object))
    if len(series) == 0:
        return np.empty(0, dtype=object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = []
    for value in uniques:  # one Python call per distinct id, never per fix
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            labels.append(str(int(value)))
        elif isinstance(value, (bytes, bytearray)):
            labels.append(value.decode())
        else:
            labels.append(str(value))
    table = np.array([*labels, None], dtype=object)
    return table[np.where(codes < 0, len(labels), codes)]


def _as_ns(times: Any, n: int | None = None) -> np.ndarray:
    """Times as int64 ns since the epoch UTC (naive read as UTC, ints as ns); NaT -> _NAT."""
    if not pd.api.types.is_list_like(times):
        times = [times]
    if isinstance(times, pd.Series | pd.Index):
        values = times
    else:
        values = pd.Series(np.asarray(times) if not isinstance(times, list) else times)
    if len(values) and pd.api.types.is_integer_dtype(values.dtype):
        out = np.asarray(values, dtype=np.int64)
    else:
        idx = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
        out = idx.as_unit("ns").asi8.copy()
    if n is not None and out.shape[0] == 1 and n != 1:
        out = np.full(n, out[0], dtype=np.int64)
    return out


def _as_float(values: Any, n: int) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.shape[0] == 1 and n != 1:
        out = np.full(n, out[0])
    return out


def _queries(track: Track, vehicle_ids: Any, *times: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    """Vehicle index and time arrays of one length (scalars broadcast)."""
    if isinstance(vehicle_ids, str) or np.isscalar(vehicle_ids):
        vehicle_ids = [vehicle_ids]
    k = vehicle_index(track, vehicle_ids)
    ts = [_as_ns(t) for t in times]
    n = max([k.shape[0], *[t.shape[0] for t in ts]])
    if k.shape[0] == 1 and n != 1:
        k = np.full(n, k[0], dtype=np.int64)
    ts = [np.full(n, t[0], dtype=np.int64) if t.shape[0] == 1 and n != 1 else t for t in ts]
    for arr in (k, *ts):
        if arr.shape[0] != n:
            msg = f"vehicle ids and times must have the same length (or one), got {arr.shape[0]}" \
                  f" and {n}"
            raise ValidationError(msg)
    return k, ts


def _search(t: np.ndarray, lo: np.ndarray, hi: np.ndarray, q: np.ndarray, *,
            side: Literal["left", "right"]) -> np.ndarray:
    """Vectorised binary search of ``q[i]`` in ``t[lo[i]:hi[i]]`` (each block sorted).

    Returns the absolute insertion index (numpy ``searchsorted`` semantics per block). All
    queries advance together: about log2(longest block) numpy passes.
    """
    lo = lo.astype(np.int64, copy=True)
    hi = hi.astype(np.int64, copy=True)
    active = np.flatnonzero(lo < hi)
    while active.size:
        mid = (lo[active] + hi[active]) >> 1
        tm = t[mid]
        qa = q[active]
        go_right = tm <= qa if side == "right" else tm < qa
        lo[active[go_right]] = mid[go_right] + 1
        hi[active[~go_right]] = mid[~go_right]
        active = active[lo[active] < hi[active]]
    return lo


@numba.njit(cache=True, nogil=True)
def _search_kernel(t, lo, hi, q, right):  # pragma: no cover - jit
    """Binary search of ``q[i]`` in ``t[lo[i]:hi[i]]`` per query (``searchsorted`` semantics,
    absolute index): O(log n) per query, no pass over the fixes."""
    out = np.empty(q.shape[0], dtype=np.int64)
    for i in range(q.shape[0]):
        a = lo[i]
        b = hi[i]
        v = q[i]
        while a < b:
            m = (a + b) >> 1
            if t[m] < v or (right and t[m] == v):
                a = m + 1
            else:
                b = m
        out[i] = a
    return out


def _block_search(track: Track, lo: np.ndarray, hi: np.ndarray, q: np.ndarray, *,
                  side: Literal["left", "right"]) -> np.ndarray:
    """``_search`` where each ``[lo, hi)`` is one vehicle's whole block of fixes (or empty):
    a binary search per query (:func:`_search_kernel`)."""
    lo = np.ascontiguousarray(lo, dtype=np.int64)
    hi = np.ascontiguousarray(hi, dtype=np.int64)
    q = np.ascontiguousarray(np.broadcast_to(np.asarray(q, dtype=np.int64), lo.shape))
    return _search_kernel(track.t, lo, np.maximum(hi, lo), q, side == "right")


def _sorted_order(codes: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Stable permutation sorting by (code, t).

    O(n) when each code is one contiguous block already sorted by time (the usual layout of
    a GPS export or a vehicle x month partition), else a lexsort.
    """
    n = codes.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.int64)
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    starts = np.r_[0, change]
    block_codes = codes[starts]
    same = codes[1:] == codes[:-1]
    if np.unique(block_codes).shape[0] == block_codes.shape[0] and not (
            same & (t[1:] < t[:-1])).any():
        ends = np.r_[change, n]
        rank = np.argsort(block_codes, kind="stable")
        lengths = (ends - starts)[rank]
        base = np.repeat(starts[rank] - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
        return base + np.arange(n, dtype=np.int64)
    return np.lexsort((np.arange(n), t, codes))


def _utc(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True))


@lru_cache(maxsize=64)
def _transformer(source: pyproj.CRS, target: pyproj.CRS) -> pyproj.Transformer:
    """A cached lon/lat-order transformer (building one costs tens of milliseconds)."""
    return pyproj.Transformer.from_crs(source, target, always_xy=True)


def _to_lonlat(crs: pyproj.CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    transformer = _transformer(crs, _WGS84)
    lon, lat = transformer.transform(np.asarray(x, dtype=np.float64),
                                     np.asarray(y, dtype=np.float64))
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Building a track
# ---------------------------------------------------------------------------------------------


def _metric_crs(crs: Any) -> pyproj.CRS:
    target = pyproj.CRS.from_user_input(crs)
    units = {axis.unit_name for axis in target.axis_info}
    if not target.is_projected or units != {"metre"}:
        msg = (f"{target.name} is not a metric projected CRS (axis units: "
               f"{', '.join(sorted(units)) or 'none'}); choose one in metres or omit crs")
        raise CRSError(msg)
    return target


def _fix_lonlat(fixes: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if "lon" in fixes.columns and "lat" in fixes.columns:
        return (pd.to_numeric(fixes["lon"]).to_numpy(dtype=np.float64),
                pd.to_numeric(fixes["lat"]).to_numpy(dtype=np.float64))
    if isinstance(fixes, gpd.GeoDataFrame) and fixes.geometry.name in fixes.columns:
        geo = fixes.geometry
        if geo.crs is None:
            msg = "the fixes have point geometry but no CRS; set one (e.g. EPSG:4326)"
            raise CRSError(msg)
        if not geo.crs.equals(_WGS84, ignore_axis_order=True):
            geo = geo.to_crs(_WGS84)
        return geo.x.to_numpy(dtype=np.float64), geo.y.to_numpy(dtype=np.float64)
    msg = (f"the fixes need lon and lat columns or point geometry; columns are: "
           f"{', '.join(map(str, fixes.columns))}")
    raise SchemaError(msg)


def track_from_fixes(
    fixes: pd.DataFrame | gpd.GeoDataFrame,
    *,
    crs: Any = None,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
) -> Track:
    """Build a :class:`Track` from cleaned fixes.

    Parameters
    ----------
    fixes : DataFrame or GeoDataFrame
        ``vehicle_id, time`` (datetimes; tz-aware are converted to UTC, naive are read as UTC)
        and ``lon, lat`` (WGS-84) or Point geometry with a CRS; optional ``speed_kmh,
        odometer_km``; ``fix_id`` or ``_row`` gives each fix's id (else 1, 2, …). Usually
        :attr:`trajectories.fixes.CleanResult.frame`. Any row order.
    crs : CRS-like, optional
        The metric CRS; default :func:`geosup.crs.metric_crs_for` on the fixes' extent (a
        CGCS2000 Gauss-Krüger zone in China, a UTM zone elsewhere).
    max_gap : pandas.Timedelta
        Consecutive fixes further apart are a gap (no interpolation inside).

    Returns
    -------
    Track

    Raises
    ------
    SchemaError
        A required column is missing.
    ValidationError
        Two fixes of a vehicle share a time, or an id, time or position is missing (clean
        the fixes with :func:`trajectories.fixes.clean_fixes` first).
    CRSError
        ``crs`` is not a metric projected CRS, or point geometry has no CRS.

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({"vehicle_id": [7, 7], "_row": [3, 4],
    ...                       "time": pd.to_datetime([60, 120], unit="s", utc=True),
    ...                       "lon": [116.39, 116.40], "lat": [39.90, 39.90]})
    >>> track = track_from_fixes(fixes)
    >>> track.vehicle_ids.tolist(), track.fix_id.tolist(), track.crs.to_epsg()
    (['7'], [3, 4], 4548)
    """
    for col in ("vehicle_id", "time"):
        if col not in fixes.columns:
            msg = f"the fixes have no column {col!r}; columns are: " \
                  f"{', '.join(map(str, fixes.columns))}"
            raise SchemaError(msg)
    gap_ns = int(pd.Timedelta(max_gap).value)
    if gap_ns < 0:
        msg = f"max_gap must be a non-negative duration, got {max_gap!r}"
        raise ConfigError(msg)
    n = len(fixes)
    lon, lat = _fix_lonlat(fixes)
    ids = _id_strings(fixes["vehicle_id"].reset_index(drop=True))
    t = _as_ns(fixes["time"].reset_index(drop=True))
    missing = pd.isna(ids) | (t == _NAT) | ~np.isfinite(lon) | ~np.isfinite(lat)
    if missing.any():
        msg = (f"{int(missing.sum())} of {n} fixes lack a vehicle id, time or position; clean "
               "the fixes with trajectories.fixes.clean_fixes first")
        raise ValidationError(msg)
    if "fix_id" in fixes.columns:
        fix_id = fixes["fix_id"].to_numpy(dtype=np.int64)
    elif "_row" in fixes.columns:
        fix_id = fixes["_row"].to_numpy(dtype=np.int64)
    else:
        fix_id = np.arange(1, n + 1, dtype=np.int64)
    codes, uniques = pd.factorize(pd.Series(ids, dtype=object), sort=True)
    order = _sorted_order(codes.astype(np.int64), t)
    codes = codes[order]
    t = t[order]
    same = (codes[1:] == codes[:-1]) & (t[1:] == t[:-1])
    if same.any():
        first = int(np.flatnonzero(same)[0])
        msg = (f"{int(same.sum())} fixes share a time with another fix of the same vehicle "
               f"(first: vehicle {uniques[codes[first]]!r} at {_utc(t[first:first + 1])[0]}); "
               "clean the fixes with trajectories.fixes.clean_fixes first")
        raise ValidationError(msg)
    lon = lon[order]
    lat = lat[order]
    if crs is not None:
        metric = _metric_crs(crs)
    elif n == 0:
        metric = _EMPTY_TRACK_CRS
    else:
        from geosup.crs import metric_crs_for

        metric = metric_crs_for((float(lon.min()), float(lat.min()), float(lon.max()),
                                 float(lat.max())))
    if n:
        x, y = _transformer(_WGS84, metric).transform(lon, lat)
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
    else:
        x = np.empty(0, dtype=np.float64)
        y = np.empty(0, dtype=np.float64)
    counts = np.bincount(codes, minlength=len(uniques)) if n else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(uniques) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    extras: dict[str, np.ndarray | None] = {}
    for col in ("speed_kmh", "odometer_km"):
        extras[col] = (pd.to_numeric(fixes[col]).to_numpy(dtype=np.float64)[order]
                       if col in fixes.columns else None)
    vehicle_ids = np.asarray(uniques, dtype=object)
    gaps = _gap_frame(vehicle_ids, codes, t, gap_ns)
    track = Track(
        vehicle_ids=vehicle_ids, offsets=offsets, t=t, x=x, y=y, lon=lon, lat=lat,
        fix_id=fix_id[order], crs=metric, gaps=gaps, speed_kmh=extras["speed_kmh"],
        odometer_km=extras["odometer_km"], max_gap=pd.Timedelta(gap_ns, unit="ns"),
    )
    logger.debug("built %r", track)
    return track


def _gap_frame(vehicle_ids: np.ndarray, codes: np.ndarray, t: np.ndarray,
               gap_ns: int) -> pd.DataFrame:
    if t.shape[0] < 2:
        where = np.zeros(0, dtype=np.int64)
    else:
        where = np.flatnonzero((codes[1:] == codes[:-1]) & (np.diff(t) > gap_ns))
    return pd.DataFrame({
        "vehicle_id": pd.Series(vehicle_ids[codes[where]], dtype=object),
        "start": _utc(t[where]),
        "end": _utc(t[where + 1]),
        "duration_s": (t[where + 1] - t[where]) / 1e9,
    })


def vehicle_index(track: Track, vehicle_ids: ArrayLike) -> np.ndarray:
    """Index of each id in ``track.vehicle_ids``, -1 when unknown (vectorised).

    Parameters
    ----------
    track : Track
    vehicle_ids : array_like
        Vehicle ids (compared as strings; an integral float ``7.0`` is ``"7"``).

    Returns
    -------
    numpy.ndarray of int64

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({"vehicle_id": ["b", "a"], "lon": [1.0, 1.0], "lat": [1.0, 1.0],
    ...                       "time": pd.to_datetime([1, 2], unit="s", utc=True)})
    >>> vehicle_index(track_from_fixes(fixes), ["a", "b", "c", None]).tolist()
    [0, 1, -1, -1]
    """
    values = pd.Series(np.asarray(vehicle_ids, dtype=object).reshape(-1), dtype=object)
    if len(values) == 0:
        return np.empty(0, dtype=np.int64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = _id_strings(pd.Series(np.asarray(uniques, dtype=object)))
    slots = track._slots
    found = np.array([*(slots.get(label, -1) if label is not None else -1 for label in labels),
                      -1], dtype=np.int64)  # one lookup per distinct id
    return found[np.where(codes < 0, len(uniques), codes)]


# ---------------------------------------------------------------------------------------------
# Positions and distances
# ---------------------------------------------------------------------------------------------


def _locate(track: Track, k: np.ndarray, tq: np.ndarray, gap_ns: int) -> dict[str, np.ndarray]:
    """Where each query time falls on its vehicle's fixes.

    Returns ``i0`` (last fix with t <= tq), ``i1 = i0 + 1``, ``frac`` (0 at i0), and masks
    ``unknown``, ``nat``, ``before``, ``after``, ``gap``, ``ok``.
    """
    n = k.shape[0]
    unknown = k < 0
    nat = (tq == _NAT) & ~unknown
    kk = np.where(unknown, 0, k)
    if track.n_vehicles == 0:
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
    else:
        lo = track.offsets[kk]
        hi = track.offsets[kk + 1]
    valid = ~unknown & ~nat
    lo_v = np.where(valid, lo, 0)
    hi_v = np.where(valid, hi, 0)
    j = _block_search(track, lo_v, hi_v, tq, side="right")
    i0 = j - 1
    last = np.maximum(hi - 1, 0)
    before = valid & (j == lo)
    i0c = np.clip(i0, 0, max(track.n_fixes - 1, 0))
    exact = valid & ~before & (track.t[i0c] == tq) if track.n_fixes else np.zeros(n, bool)
    after = valid & ~before & (j == hi) & ~exact
    inside = valid & ~before & ~after & ~exact
    i1c = np.minimum(i0c + 1, last)
    dt = track.t[i1c] - track.t[i0c] if track.n_fixes else np.zeros(n, dtype=np.int64)
    gap = inside & (dt > gap_ns)
    frac = np.zeros(n, dtype=np.float64)
    interp = inside & ~gap
    frac[interp] = (tq[interp] - track.t[i0c[interp]]) / dt[interp]
    ok = exact | interp
    return {"i0": i0c, "i1": i1c, "frac": frac, "unknown": unknown, "nat": nat,
            "before": before, "after": after, "gap": gap, "ok": ok, "lo": lo, "hi": hi}


def positions_at(
    track: Track,
    vehicle_ids: ArrayLike,
    times: ArrayLike,
    *,
    max_gap: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Positions of vehicles at many times, interpolated linearly between the bracketing fixes.

    Interpolation is linear in time, in the metric CRS (``x, y``) and, for ``lon, lat``,
    in WGS-84 degrees (the two agree within millimetres between fixes seconds apart). A time
    equal to a fix's time returns that fix exactly. Nothing is extrapolated and nothing is
    interpolated between fixes further apart than ``max_gap``.

    Parameters
    ----------
    track : Track
    vehicle_ids : array_like
        One vehicle id per query (or one for all).
    times : array_like
        One time per query (or one for all): tz-aware, naive (= UTC) or int64 ns.
    max_gap : pandas.Timedelta, optional
        Refuse to interpolate between fixes further apart; default ``track.max_gap``.

    Returns
    -------
    pandas.DataFrame
        One row per query, in query order: ``x, y`` (metric), ``lon, lat`` (WGS-84), ``ok``
        and ``reason`` (one of :data:`POSITION_REASONS`). Refused queries have NaN
        coordinates.

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({"vehicle_id": ["V1", "V1"], "lon": [116.0, 116.001],
    ...                       "lat": [40.0, 40.0],
    ...                       "time": pd.to_datetime(["2026-01-01 00:00", "2026-01-01 00:01"],
    ...                                              utc=True)})
    >>> track = track_from_fixes(fixes)
    >>> p = positions_at(track, "V1", pd.to_datetime(["2026-01-01 00:00:15",
    ...                                               "2026-01-01 00:02:00"], utc=True))
    >>> p["lon"].round(6).tolist(), p["reason"].tolist()
    ([116.00025, nan], ['', 'after last fix'])
    """
    k, (tq,) = _queries(track, vehicle_ids, times)
    loc = _locate(track, k, tq, _gap_ns(track, max_gap))
    ok = loc["ok"]
    n = k.shape[0]
    out = {}
    for name in ("x", "y", "lon", "lat"):
        values = getattr(track, name)
        col = np.full(n, np.nan)
        if track.n_fixes:
            a = values[loc["i0"][ok]]
            b = values[loc["i1"][ok]]
            col[ok] = a + loc["frac"][ok] * (b - a)
        out[name] = col
    reason = np.full(n, "", dtype=object)
    reason[loc["unknown"]] = "unknown vehicle"
    reason[loc["nat"]] = "missing time"
    reason[loc["before"]] = "before first fix"
    reason[loc["after"]] = "after last fix"
    reason[loc["gap"]] = "in a gap"
    out["ok"] = ok
    out["reason"] = pd.Series(reason, dtype=object)
    return pd.DataFrame(out)


def distance_between(
    track: Track,
    vehicle_ids: ArrayLike,
    start: ArrayLike,
    end: ArrayLike,
    *,
    across_gaps: Literal["straight", "zero", "nan"] = "straight",
    outside: Literal["clamp", "nan"] = "clamp",
    max_gap: pd.Timedelta | None = None,
) -> np.ndarray:
    """Metres driven by each vehicle between two times (interpolated at both ends).

    The distance is measured along the fixes in the metric CRS. ``start`` or ``end`` inside a
    normal segment is interpolated. An end that cannot be interpolated snaps to the fix on the
    inside of the interval: before the first fix to the first fix, after the last fix to the
    last fix (``outside="clamp"``; ``"nan"`` gives NaN), inside a gap to the gap's fix on the
    inside of ``[start, end]``. A gap lying wholly inside ``[start, end]`` counts as the
    straight line between its two fixes (``across_gaps="straight"``: a lower bound of the
    distance driven), as zero (``"zero"``: then distances add up,
    ``d(t0, t1) + d(t1, t2) == d(t0, t2)``, everywhere) or makes the result NaN when the
    interval overlaps any gap (``"nan"``).

    Parameters
    ----------
    track : Track
    vehicle_ids : array_like
        One vehicle id per query (or one for all).
    start, end : array_like
        Interval bounds per query (or one for all).
    across_gaps : {"straight", "zero", "nan"}
    outside : {"clamp", "nan"}
    max_gap : pandas.Timedelta, optional
        Default ``track.max_gap``.

    Returns
    -------
    numpy.ndarray of float64
        Metres; NaN for an unknown vehicle, a missing time, ``end < start`` and the cases
        above.

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({"vehicle_id": ["V1"] * 3, "lon": [116.0, 116.001, 116.002],
    ...                       "lat": [40.0, 40.0, 40.0],
    ...                       "time": pd.to_datetime([0, 60, 3600], unit="s", utc=True)})
    >>> track = track_from_fixes(fixes)
    >>> s, e = pd.Timestamp(30, unit="s", tz="UTC"), pd.Timestamp(7200, unit="s", tz="UTC")
    >>> distance_between(track, "V1", s, e).round().tolist()
    [128.0]
    >>> distance_between(track, "V1", s, e, across_gaps="zero").round().tolist()
    [43.0]
    >>> distance_between(track, "V1", s, e, outside="nan").tolist()
    [nan]
    """
    if across_gaps not in ("straight", "zero", "nan"):
        msg = f"across_gaps must be 'straight', 'zero' or 'nan', not {across_gaps!r}"
        raise ConfigError(msg)
    if outside not in ("clamp", "nan"):
        msg = f"outside must be 'clamp' or 'nan', not {outside!r}"
        raise ConfigError(msg)
    k, (ts, te) = _queries(track, vehicle_ids, start, end)
    n = k.shape[0]
    result = np.full(n, np.nan)
    if track.n_fixes == 0:
        return result
    gap_ns = _gap_ns(track, max_gap)
    gap = track.is_gap(max_gap)
    seg = track.segment_length
    if across_gaps == "zero":
        seg = np.where(gap, 0.0, seg)
    # across vehicles too: only differences within one are used
    cum = track._cumulative(gap_ns, zero_gaps=across_gaps == "zero")
    ls = _locate(track, k, ts, gap_ns)
    le = _locate(track, k, te, gap_ns)

    def position(loc: dict[str, np.ndarray], *, is_start: bool) -> np.ndarray:
        i0, i1 = loc["i0"], loc["i1"]
        d = cum[i0] + loc["frac"] * seg[i0]
        d = np.where(loc["before"], cum[loc["lo"].clip(0, track.n_fixes - 1)], d)
        d = np.where(loc["after"], cum[(loc["hi"] - 1).clip(0, track.n_fixes - 1)], d)
        return np.where(loc["gap"], cum[i1] if is_start else cum[i0], d)

    d = position(le, is_start=False) - position(ls, is_start=True)
    valid = (k >= 0) & (ts != _NAT) & (te != _NAT) & (te >= ts)
    result[valid] = np.maximum(d[valid], 0.0)
    if outside == "nan":
        out_of_range = ls["before"] | ls["after"] | le["before"] | le["after"]
        result[out_of_range] = np.nan
    if across_gaps == "nan":
        gcount = np.zeros(track.n_fixes + 1, dtype=np.int64)
        np.cumsum(gap, out=gcount[1:])
        lo = ls["lo"]
        # segments overlapping (start, end): from the one holding start to the one holding end
        first_seg = np.maximum(_block_search(track, lo, ls["hi"], ts, side="right") - 1, lo)
        last_seg = _block_search(track, lo, le["hi"], te, side="left") - 1
        has_gap = (last_seg >= first_seg) & (
            gcount[np.clip(last_seg + 1, 0, track.n_fixes)] - gcount[np.clip(first_seg, 0,
                                                                              track.n_fixes)] > 0)
        result[valid & has_gap] = np.nan
    return result


# ---------------------------------------------------------------------------------------------
# Nearest approach
# ---------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _nearest_kernel(t, x, y, a, b, lo, hi, tq, w, gap_ns, px, py):  # pragma: no cover - jit
    """Closest point of each query's window path (see nearest_approach)."""
    m = tq.shape[0]
    dist = np.full(m, np.nan)
    at = np.full(m, -1, dtype=np.int64)
    cx = np.full(m, np.nan)
    cy = np.full(m, np.nan)
    best_fix = np.full(m, -1, dtype=np.int64)
    best_fix_d = np.full(m, np.nan)
    for q in range(m):
        if lo[q] >= hi[q]:
            continue
        ts = tq[q] - w
        te = tq[q] + w
        aq = a[q]
        bq = b[q]
        # path: optional start point, fixes [aq, bq), optional end point
        has_s = False
        sx = 0.0
        sy = 0.0
        if aq > lo[q] and aq < hi[q]:
            dt = t[aq] - t[aq - 1]
            if dt <= gap_ns and t[aq] > ts:
                f = (ts - t[aq - 1]) / dt
                sx = x[aq - 1] + f * (x[aq] - x[aq - 1])
                sy = y[aq - 1] + f * (y[aq] - y[aq - 1])
                has_s = True
        has_e = False
        ex = 0.0
        ey = 0.0
        if bq > lo[q] and bq < hi[q]:
            dt = t[bq] - t[bq - 1]
            if dt <= gap_ns and t[bq - 1] < te:
                f = (te - t[bq - 1]) / dt
                ex = x[bq - 1] + f * (x[bq] - x[bq - 1])
                ey = y[bq - 1] + f * (y[bq] - y[bq - 1])
                has_e = True
        npath = (bq - aq) + (1 if has_s else 0) + (1 if has_e else 0)
        if npath == 0:
            continue
        bestd = np.inf
        bx = 0.0
        by = 0.0
        bt = 0
        fd = np.inf
        fi = -1
        # walk the path points in time order
        prev_ok = False
        ptx = 0.0
        pty = 0.0
        ptt = 0
        start = aq - 1 if has_s else aq
        stop = bq + 1 if has_e else bq
        for j in range(start, stop):
            if j == aq - 1:
                qx, qy, qt = sx, sy, ts
            elif j == bq:
                qx, qy, qt = ex, ey, te
            else:
                qx, qy, qt = x[j], y[j], t[j]
                d = np.sqrt((qx - px[q]) ** 2 + (qy - py[q]) ** 2)
                if d < fd:
                    fd = d
                    fi = j
            # the vertex itself
            d = np.sqrt((qx - px[q]) ** 2 + (qy - py[q]) ** 2)
            if d < bestd:
                bestd = d
                bx = qx
                by = qy
                bt = qt
            # the edge from the previous path point, unless it crosses a gap
            if prev_ok and qt - ptt <= gap_ns:
                vx = qx - ptx
                vy = qy - pty
                len2 = vx * vx + vy * vy
                if len2 > 0.0:
                    u = ((px[q] - ptx) * vx + (py[q] - pty) * vy) / len2
                    if u > 0.0 and u < 1.0:
                        ux = ptx + u * vx
                        uy = pty + u * vy
                        d = np.sqrt((ux - px[q]) ** 2 + (uy - py[q]) ** 2)
                        if d < bestd:
                            bestd = d
                            bx = ux
                            by = uy
                            bt = ptt + np.int64(round(u * (qt - ptt)))
            prev_ok = True
            ptx = qx
            pty = qy
            ptt = qt
        dist[q] = bestd
        at[q] = bt
        cx[q] = bx
        cy[q] = by
        best_fix[q] = fi
        if fi >= 0:
            best_fix_d[q] = fd
    return dist, at, cx, cy, best_fix, best_fix_d


def nearest_approach(
    track: Track,
    vehicle_ids: ArrayLike,
    times: ArrayLike,
    px: ArrayLike,
    py: ArrayLike,
    *,
    window: pd.Timedelta,
    max_gap: pd.Timedelta | None = None,
) -> pd.DataFrame:
    """Closest approach of each vehicle to a point within a time window.

    For query ``i`` the vehicle's path in ``[t - window, t + window]`` is made of its
    interpolated positions at both window ends (where interpolation is allowed), the fixes
    inside the window and the straight segments between consecutive ones; a segment across a
    gap is not part of the path (its two fixes are). The distance is the minimum over the
    whole path (vertices and closest points on the segments), so it can be smaller than the
    distance of the closest fix.

    Parameters
    ----------
    track : Track
    vehicle_ids : array_like
        One vehicle id per query (or one for all).
    times : array_like
        One time per query (or one for all).
    px, py : array_like
        The point per query (or one for all) in ``track.crs`` (metric).
    window : pandas.Timedelta
        Half-width of the time window.
    max_gap : pandas.Timedelta, optional
        Default ``track.max_gap``.

    Returns
    -------
    pandas.DataFrame
        One row per query: ``distance_m`` (NaN when the window holds no path), ``at`` (time of
        the closest point, tz-aware UTC), ``x, y`` (the closest point), ``fix_id`` and
        ``fix_distance_m`` (the closest fix in the window; -1 and NaN when none), ``n_fixes``
        (fixes in the window), ``covered`` (a fix in ``[t - window, t]``, a fix in
        ``[t, t + window]`` and the position at ``t`` known, i.e. ``t`` not in a gap) and
        ``reason`` (``""``, ``"unknown vehicle"``, ``"missing time"``,
        ``"no fixes in window"``).

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({"vehicle_id": ["V1", "V1"], "lon": [116.0, 116.002],
    ...                       "lat": [40.0, 40.0],
    ...                       "time": pd.to_datetime([0, 120], unit="s", utc=True)})
    >>> track = track_from_fixes(fixes)
    >>> mid = positions_at(track, "V1", pd.Timestamp(60, unit="s", tz="UTC"))
    >>> r = nearest_approach(track, "V1", pd.Timestamp(60, unit="s", tz="UTC"),
    ...                      mid["x"], mid["y"] + 50.0, window=pd.Timedelta("5min"))
    >>> round(float(r["distance_m"].iloc[0])), r["at"].iloc[0].round("s"), int(r["n_fixes"].iloc[0])
    (50, Timestamp('1970-01-01 00:01:00+0000', tz='UTC'), 2)
    """
    k, (tq,) = _queries(track, vehicle_ids, times)
    n = k.shape[0]
    pxa = _as_float(px, n)
    pya = _as_float(py, n)
    if pxa.shape[0] != n or pya.shape[0] != n:
        msg = f"px and py must have one value per query ({n}) or one for all"
        raise ValidationError(msg)
    w = int(pd.Timedelta(window).value)
    if w < 0:
        msg = f"window must be a non-negative duration, got {window!r}"
        raise ConfigError(msg)
    gap_ns = _gap_ns(track, max_gap)
    unknown = k < 0
    nat = (tq == _NAT) & ~unknown
    valid = ~unknown & ~nat
    kk = np.where(unknown, 0, k)
    if track.n_vehicles:
        lo = np.where(valid, track.offsets[kk], 0)
        hi = np.where(valid, track.offsets[kk + 1], 0)
    else:
        lo = np.zeros(n, dtype=np.int64)
        hi = np.zeros(n, dtype=np.int64)
    tqv = np.where(valid, tq, 0)
    a = _block_search(track, lo, hi, tqv - w, side="left")
    b = _block_search(track, lo, hi, tqv + w, side="right")
    mid = _block_search(track, lo, hi, tqv, side="right")  # first fix after t
    mid_left = _block_search(track, lo, hi, tqv, side="left")  # first fix at or after t
    dist, at, cx, cy, best, best_d = _nearest_kernel(
        track.t, track.x, track.y, a, b, lo, hi, tqv, np.int64(w), np.int64(gap_ns), pxa, pya)
    n_fixes = np.where(valid, b - a, 0)
    has_before = valid & (mid > a)  # a fix in [t - w, t]
    has_after = valid & (b > mid_left)  # a fix in [t, t + w]
    if track.n_fixes:
        loc = _locate(track, k, tq, gap_ns)
        known = loc["ok"]
    else:
        known = np.zeros(n, dtype=bool)
    covered = has_before & has_after & known
    reason = np.full(n, "", dtype=object)
    reason[valid & np.isnan(dist)] = "no fixes in window"
    reason[unknown] = "unknown vehicle"
    reason[nat] = "missing time"
    fix_id = np.full(n, -1, dtype=np.int64)
    has_fix = best >= 0
    fix_id[has_fix] = track.fix_id[best[has_fix]]
    at_idx = _utc(np.where(at >= 0, at, _NAT))
    return pd.DataFrame({
        "distance_m": dist,
        "at": at_idx,
        "x": cx,
        "y": cy,
        "fix_id": fix_id,
        "fix_distance_m": best_d,
        "n_fixes": n_fixes.astype(np.int64),
        "covered": covered,
        "reason": pd.Series(reason, dtype=object),
    })


# ---------------------------------------------------------------------------------------------
# Stops (movingpandas' TrajectoryStopDetector, exactly) and trips
# ---------------------------------------------------------------------------------------------


_SPLIT = 134217729.0  # 2**27 + 1, Dekker's split for double-double products


@numba.njit(cache=True)
def _dd_mul(ahi, alo, bhi, blo):  # pragma: no cover - jit
    """Double-double product (the DD class GEOS uses for robust predicates)."""
    c = _SPLIT * ahi
    hx = c - ahi
    cc = _SPLIT * bhi
    hx = c - hx
    tx = ahi - hx
    hy = cc - bhi
    c = ahi * bhi
    hy = cc - hy
    ty = bhi - hy
    cc = ((((hx * hy - c) + hx * ty) + tx * hy) + tx * ty) + (ahi * blo + alo * bhi)
    zhi = c + cc
    hx = c - zhi
    return zhi, cc + hx


@numba.njit(cache=True)
def _dd_add(ahi, alo, bhi, blo):  # pragma: no cover - jit
    """Double-double sum."""
    s = ahi + bhi
    t = alo + blo
    e = s - ahi
    f = t - alo
    s2 = s - e
    t2 = t - f
    s2 = (bhi - e) + (ahi - s2)
    t2 = (blo - f) + (alo - t2)
    e = s2 + t
    hh = s + e
    h = e + (s - hh)
    e = t2 + h
    zhi = hh + e
    return zhi, e + (hh - zhi)


@numba.njit(cache=True)
def _dd_div(ahi, alo, bhi, blo):  # pragma: no cover - jit
    """Double-double quotient."""
    c0 = ahi / bhi
    c = _SPLIT * c0
    hc = c - c0
    u = _SPLIT * bhi
    hc = c - hc
    tc = c0 - hc
    hy = u - bhi
    uu = c0 * bhi
    hy = u - hy
    ty = bhi - hy
    u = (((hc * hy - uu) + hc * ty) + tc * hy) + tc * ty
    c = ((((ahi - uu) - u) + alo) - c0 * blo) / bhi
    u = c0 + c
    return u, (c0 - u) + c


@numba.njit(cache=True)
def _orient(p1x, p1y, p2x, p2y, qx, qy):  # pragma: no cover - jit
    """Robust orientation index of q to the line p1 -> p2: 1 left, -1 right, 0 collinear.

    GEOS's ``Orientation::index``: a floating-point filter, then double-double arithmetic.
    """
    detleft = (p1x - qx) * (p2y - qy)
    detright = (p1y - qy) * (p2x - qx)
    det = detleft - detright
    if detleft > 0.0:
        if detright <= 0.0:
            return 1 if det > 0.0 else (-1 if det < 0.0 else 0)
        detsum = detleft + detright
    elif detleft < 0.0:
        if detright >= 0.0:
            return 1 if det > 0.0 else (-1 if det < 0.0 else 0)
        detsum = -detleft - detright
    else:
        return 1 if det > 0.0 else (-1 if det < 0.0 else 0)
    errbound = 1e-15 * detsum
    if det >= errbound or -det >= errbound:
        return 1 if det > 0.0 else (-1 if det < 0.0 else 0)
    dx1h, dx1l = _dd_add(p2x, 0.0, -p1x, 0.0)
    dy1h, dy1l = _dd_add(p2y, 0.0, -p1y, 0.0)
    dx2h, dx2l = _dd_add(qx, 0.0, -p2x, 0.0)
    dy2h, dy2l = _dd_add(qy, 0.0, -p2y, 0.0)
    ah, al = _dd_mul(dx1h, dx1l, dy2h, dy2l)
    bh, bl = _dd_mul(dy1h, dy1l, dx2h, dx2l)
    dh, dl = _dd_add(ah, al, -bh, -bl)
    if dh < 0.0 or (dh == 0.0 and dl < 0.0):
        return -1
    if dh > 0.0 or (dh == 0.0 and dl > 0.0):
        return 1
    return 0


@numba.njit(cache=True)
def _hull(sx, sy, n, hx, hy, buf_x, buf_y):  # pragma: no cover - jit
    """Strict convex hull of ``sx[:n], sy[:n]`` into ``hx, hy``; returns the vertex count.

    Vertices are clockwise starting at the lowest (then leftmost) point, as GEOS's ConvexHull
    orders them; collinear and repeated points are dropped. 1 vertex for identical points, 2
    (the extreme points) for collinear ones. ``sx, sy`` are sorted in place; ``buf_x, buf_y``
    are scratch space of at least ``2 n + 1``.
    """
    # shell sort by (x, y): small windows, and it compiles fast
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap >= 1:
        for i in range(gap, n):
            vx = sx[i]
            vy = sy[i]
            j = i
            while j >= gap and (sx[j - gap] > vx or (sx[j - gap] == vx and sy[j - gap] > vy)):
                sx[j] = sx[j - gap]
                sy[j] = sy[j - gap]
                j -= gap
            sx[j] = vx
            sy[j] = vy
        gap //= 3
    # Andrew's monotone chain, counter-clockwise, strict
    m = 0
    for i in range(n):
        while m >= 2 and _orient(buf_x[m - 2], buf_y[m - 2], buf_x[m - 1], buf_y[m - 1],
                                 sx[i], sy[i]) <= 0:
            m -= 1
        buf_x[m] = sx[i]
        buf_y[m] = sy[i]
        m += 1
    lower = m + 1
    for i in range(n - 2, -1, -1):
        while m >= lower and _orient(buf_x[m - 2], buf_y[m - 2], buf_x[m - 1], buf_y[m - 1],
                                     sx[i], sy[i]) <= 0:
            m -= 1
        buf_x[m] = sx[i]
        buf_y[m] = sy[i]
        m += 1
    h = m - 1  # the last point repeats the first
    if h < 1:
        h = 1
    if h == 2 and buf_x[0] == buf_x[1] and buf_y[0] == buf_y[1]:
        h = 1
    if h <= 2:
        for i in range(h):
            hx[i] = buf_x[i]
            hy[i] = buf_y[i]
        return h
    # clockwise from the lowest-then-leftmost vertex
    start = 0
    for i in range(1, h):
        if buf_y[i] < buf_y[start] or (buf_y[i] == buf_y[start] and buf_x[i] < buf_x[start]):
            start = i
    for i in range(h):
        j = (start - i) % h
        hx[i] = buf_x[j]
        hy[i] = buf_y[j]
    return h


@numba.njit(cache=True)
def _oriented_distance(x0, y0, x1, y1, px, py, orient):  # pragma: no cover - jit
    """GEOS LineSegment::distancePerpendicularOriented (abs for orient 0)."""
    if x0 == x1 and y0 == y1:
        return np.sqrt((px - x0) ** 2 + (py - y0) ** 2)
    dx = x1 - x0
    dy = y1 - y0
    len2 = dx * dx + dy * dy
    s = ((y0 - py) * dx - (x0 - px) * dy) / len2
    dist = abs(s) * np.sqrt(len2)
    if orient == 0:
        return dist
    if _orient(x0, y0, x1, y1, px, py) < 0:
        return -dist
    return dist


@numba.njit(cache=True)
def _furthest(hx, hy, size, x0, y0, x1, y1, start, orient):  # pragma: no cover - jit
    """GEOS MinimumAreaRectangle::findFurthestVertex on the closed ring of ``size`` coords."""
    max_d = _oriented_distance(x0, y0, x1, y1, hx[start], hy[start], orient)
    next_d = max_d
    max_i = start
    next_i = max_i
    while True:
        if orient == 0:
            further = abs(next_d) >= abs(max_d)
        elif orient == 1:
            further = next_d >= max_d
        else:
            further = next_d <= max_d
        if not further:
            break
        max_d = next_d
        max_i = next_i
        next_i = max_i + 1
        if next_i >= size - 1:
            next_i = 0
        if next_i == start:
            break
        next_d = _oriented_distance(x0, y0, x1, y1, hx[next_i], hy[next_i], orient)
    return max_i


@numba.njit(cache=True)
def _mrr_diagonal(hx, hy, h):  # pragma: no cover - jit
    """Diagonal of the minimum-area rectangle of a hull (movingpandas' ``mrr_diagonal``).

    Follows GEOS 3.12+ MinimumAreaRectangle (rotating calipers on the clockwise hull ring,
    first minimum kept); the diagonal is computed in the rectangle's own frame.
    """
    if h == 1:
        return 0.0
    if h == 2:
        return np.sqrt((hx[1] - hx[0]) ** 2 + (hy[1] - hy[0]) ** 2)
    size = h + 1  # closed ring
    hx[h] = hx[0]
    hy[h] = hy[0]
    min_area = np.inf
    best_base = 0
    best_diam = 0
    best_left = 0
    best_right = 0
    # plain int64 variables (not literals), so that each helper compiles once
    diam_i = np.int64(1)
    left_i = np.int64(1)
    right_i = np.int64(0)
    o_abs = np.int64(0)
    o_left = np.int64(1)
    o_right = np.int64(-1)
    for i in range(size - 1):
        x0 = hx[i]
        y0 = hy[i]
        x1 = hx[i + 1]
        y1 = hy[i + 1]
        diam_i = _furthest(hx, hy, size, x0, y0, x1, y1, diam_i, o_abs)
        dxp = hx[diam_i]
        dyp = hy[diam_i]
        # project the diameter point on the base line (GEOS LineSegment::project)
        if (dxp == x0 and dyp == y0) or (dxp == x1 and dyp == y1):
            bx = dxp
            by = dyp
        else:
            ddx = x1 - x0
            ddy = y1 - y0
            r = ((dxp - x0) * ddx + (dyp - y0) * ddy) / (ddx * ddx + ddy * ddy)
            bx = x0 + r * ddx
            by = y0 + r * ddy
        left_i = _furthest(hx, hy, size, bx, by, dxp, dyp, left_i, o_left)
        if i == 0:
            right_i = diam_i
        right_i = _furthest(hx, hy, size, bx, by, dxp, dyp, right_i, o_right)
        width = (_oriented_distance(bx, by, dxp, dyp, hx[left_i], hy[left_i], o_abs)
                 + _oriented_distance(bx, by, dxp, dyp, hx[right_i], hy[right_i], o_abs))
        area = np.sqrt((dxp - bx) ** 2 + (dyp - by) ** 2) * width
        if area < min_area:
            min_area = area
            best_base = i
            best_diam = diam_i
            best_left = left_i
            best_right = right_i
    # the rectangle's corners exactly as GEOS's Rectangle::createFromSidePts builds them
    brx = hx[best_base]
    bry = hy[best_base]
    blx = hx[best_base + 1]
    bly = hy[best_base + 1]
    opx = hx[best_diam]
    opy = hy[best_diam]
    lsx = hx[best_left]
    lsy = hy[best_left]
    rsx = hx[best_right]
    rsy = hy[best_right]
    dx = blx - brx
    dy = bly - bry
    base_c = dx * bry - dy * brx
    opp_c = dx * opy - dy * opx
    left_c = -dy * lsy - dx * lsx
    right_c = -dy * rsy - dx * rsx
    if rsx == brx and rsy == bry:
        p0x = brx
        p0y = bry
    else:
        p0x, p0y = _line_intersection(-dy, dx, base_c, -dx, -dy, right_c)
    if lsx == opx and lsy == opy:
        p2x = opx
        p2y = opy
    else:
        p2x, p2y = _line_intersection(-dy, dx, opp_c, -dx, -dy, left_c)
    return np.sqrt((p0x - p2x) ** 2 + (p0y - p2y) ** 2)


@numba.njit(cache=True)
def _standard_line(a, b, c):  # pragma: no cover - jit
    """Two points on the line ``a x + b y = c`` (GEOS Rectangle::createLineForStandardEquation)."""
    if abs(b) > abs(a):
        return 0.0, c / b, 1.0, c / b - a / b
    return c / a, 0.0, c / a - b / a, 1.0


@numba.njit(cache=True)
def _line_intersection(a1, b1, c1, a2, b2, c2):  # pragma: no cover - jit
    """Intersection of two lines in standard form, as GEOS computes it (CGAlgorithmsDD)."""
    p1x, p1y, p2x, p2y = _standard_line(a1, b1, c1)
    q1x, q1y, q2x, q2y = _standard_line(a2, b2, c2)
    pxh, pxl = _dd_add(p1y, 0.0, -p2y, 0.0)
    pyh, pyl = _dd_add(p2x, 0.0, -p1x, 0.0)
    t1h, t1l = _dd_mul(p1x, 0.0, p2y, 0.0)
    t2h, t2l = _dd_mul(p2x, 0.0, p1y, 0.0)
    pwh, pwl = _dd_add(t1h, t1l, -t2h, -t2l)
    qxh, qxl = _dd_add(q1y, 0.0, -q2y, 0.0)
    qyh, qyl = _dd_add(q2x, 0.0, -q1x, 0.0)
    t1h, t1l = _dd_mul(q1x, 0.0, q2y, 0.0)
    t2h, t2l = _dd_mul(q2x, 0.0, q1y, 0.0)
    qwh, qwl = _dd_add(t1h, t1l, -t2h, -t2l)
    t1h, t1l = _dd_mul(pyh, pyl, qwh, qwl)
    t2h, t2l = _dd_mul(qyh, qyl, pwh, pwl)
    xh, xl = _dd_add(t1h, t1l, -t2h, -t2l)
    t1h, t1l = _dd_mul(qxh, qxl, pwh, pwl)
    t2h, t2l = _dd_mul(pxh, pxl, qwh, qwl)
    yh, yl = _dd_add(t1h, t1l, -t2h, -t2l)
    t1h, t1l = _dd_mul(pxh, pxl, qyh, qyl)
    t2h, t2l = _dd_mul(qxh, qxl, pyh, pyl)
    wh, wl = _dd_add(t1h, t1l, -t2h, -t2l)
    rxh, rxl = _dd_div(xh, xl, wh, wl)
    ryh, ryl = _dd_div(yh, yl, wh, wl)
    return rxh + rxl, ryh + ryl


@numba.njit(cache=True)
def _inside_hull(hx, hy, h, px, py):  # pragma: no cover - jit
    """True when the point lies inside or on the clockwise hull (h >= 3)."""
    for i in range(h):
        j = i + 1 if i + 1 < h else 0
        if _orient(hx[i], hy[i], hx[j], hy[j], px, py) > 0:
            return False
    return True


@numba.njit(cache=True)
def _stops_kernel(t, x, y, offsets, max_diameter, min_duration):  # pragma: no cover - jit
    """movingpandas TrajectoryStopDetector._process_traj over every vehicle.

    Returns the first and last fix index of each stop. The window's bounding box and convex
    hull are updated incrementally while the window only grows (a point inside the hull leaves
    the minimum rectangle unchanged) and rebuilt when its start moves.
    """
    n = t.shape[0]
    out_s = np.empty(n // 2 + 1, dtype=np.int64)
    out_e = np.empty(n // 2 + 1, dtype=np.int64)
    n_out = 0
    cap = 64
    hx = np.empty(cap + 1)
    hy = np.empty(cap + 1)
    tmpx = np.empty(cap + 1)
    tmpy = np.empty(cap + 1)
    bufx = np.empty(2 * cap + 3)
    bufy = np.empty(2 * cap + 3)
    limit = max_diameter * 1.5
    for k in range(offsets.shape[0] - 1):
        lo = offsets[k]
        hi = offsets[k + 1]
        if hi - lo < 2:
            continue
        ws = lo
        is_stopped = False
        prev_stopped = False
        minx = np.inf
        miny = np.inf
        maxx = -np.inf
        maxy = -np.inf
        box_ws = -1  # the box holds [box_ws, i - 1] when box_ws == ws
        hull_ws = -1  # the hull holds [hull_ws, hull_end) with h vertices, diagonal last_diag
        hull_end = -1
        h = 0
        last_diag = 0.0
        for i in range(lo, hi):
            if not is_stopped:
                while (i - ws + 1) > 2 and t[i] - t[ws] >= min_duration:
                    ws += 1
            if box_ws != ws:
                minx = np.inf
                miny = np.inf
                maxx = -np.inf
                maxy = -np.inf
                for j in range(ws, i + 1):
                    minx = min(minx, x[j])
                    maxx = max(maxx, x[j])
                    miny = min(miny, y[j])
                    maxy = max(maxy, y[j])
                box_ws = ws
            else:
                minx = min(minx, x[i])
                maxx = max(maxx, x[i])
                miny = min(miny, y[i])
                maxy = max(maxy, y[i])
            is_stopped = False
            count = i - ws + 1
            if count > 1 and np.hypot(maxx - minx, maxy - miny) < limit:
                if count == 2:
                    diag = np.sqrt((x[i] - x[ws]) ** 2 + (y[i] - y[ws]) ** 2)
                elif hull_ws == ws and hull_end == i and h >= 3 and _inside_hull(
                        hx, hy, h, x[i], y[i]):
                    diag = last_diag
                    hull_end = i + 1
                else:
                    extend = hull_ws == ws and hull_end == i
                    m = h + 1 if extend else count
                    if m + 1 > cap:
                        while cap < m + 1:
                            cap *= 2
                        nhx = np.empty(cap + 1)
                        nhy = np.empty(cap + 1)
                        nhx[:h] = hx[:h]
                        nhy[:h] = hy[:h]
                        hx = nhx
                        hy = nhy
                        tmpx = np.empty(cap + 1)
                        tmpy = np.empty(cap + 1)
                        bufx = np.empty(2 * cap + 3)
                        bufy = np.empty(2 * cap + 3)
                    if extend:
                        tmpx[:h] = hx[:h]
                        tmpy[:h] = hy[:h]
                        tmpx[h] = x[i]
                        tmpy[h] = y[i]
                    else:
                        for j in range(m):
                            tmpx[j] = x[ws + j]
                            tmpy[j] = y[ws + j]
                    h = _hull(tmpx, tmpy, m, hx, hy, bufx, bufy)
                    diag = _mrr_diagonal(hx, hy, h)
                    hull_ws = ws
                    hull_end = i + 1
                    last_diag = diag
                if diag < max_diameter:
                    is_stopped = True
            if (not is_stopped) and prev_stopped and count > 1 and (
                    t[i - 1] - t[ws] >= min_duration):
                out_s[n_out] = ws
                out_e[n_out] = i - 1
                n_out += 1
                ws = i
            prev_stopped = is_stopped
        if is_stopped and t[hi - 1] - t[ws] >= min_duration:
            out_s[n_out] = ws
            out_e[n_out] = hi - 1
            n_out += 1
    return out_s[:n_out], out_e[:n_out]


def _stop_indices(track: Track, max_diameter: float,
                  min_duration: pd.Timedelta) -> tuple[np.ndarray, np.ndarray]:
    dur = pd.Timedelta(min_duration)
    if pd.isna(dur) or dur < pd.Timedelta(0):
        msg = f"min_duration must be a non-negative duration, got {min_duration!r}"
        raise ConfigError(msg)
    if not np.isfinite(max_diameter) or max_diameter < 0:
        msg = f"max_diameter must be a non-negative number of metres, got {max_diameter!r}"
        raise ConfigError(msg)
    if track.n_fixes == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return _stops_kernel(track.t, track.x, track.y, track.offsets, float(max_diameter),
                         np.int64(dur.value))


def _iso(ns: np.ndarray) -> np.ndarray:
    text = _utc(ns).tz_localize(None).astype(str)
    return np.asarray(text.str.replace(" ", "T", regex=False) + "Z", dtype=object)


def detect_stops(
    track: Track,
    *,
    max_diameter: float,
    min_duration: pd.Timedelta,
) -> pd.DataFrame:
    """Stops: the vehicle stays within ``max_diameter`` metres for at least ``min_duration``.

    The definition and the algorithm are those of movingpandas'
    ``TrajectoryStopDetector.get_stop_time_ranges`` on projected data (Euclidean distances in
    ``track.crs``): a sliding window of fixes, trimmed to less than ``min_duration`` while the
    vehicle moves, is a stop while the diagonal of the minimum-area rectangle around its fixes
    (GEOS's ``MinimumAreaRectangle``, as shapely's ``minimum_rotated_rectangle``; the distance
    for two fixes) stays below ``max_diameter``; a stop runs from the window's first fix to
    the last fix before the one that breaks it, and counts when it lasts at least
    ``min_duration``. The rectangle is computed as GEOS 3.12+ computes it (convex hull with
    robust orientation tests, rotating calipers, corners from double-double line
    intersections), so its diagonal is bit-for-bit the one movingpandas gets from shapely
    with GEOS 3.12 or later, and the stops are identical to movingpandas' on the same data.
    (GEOS's corners carry rounding errors of up to about a millimetre at UTM-sized
    coordinates; they are reproduced, not corrected, so that a diagonal at the threshold
    falls on the same side.)

    Gaps are not special here, as in movingpandas: a vehicle parked with its unit silent
    (ignition off) shows as one stop spanning the gap when the fixes on both sides lie within
    ``max_diameter`` of each other.

    Parameters
    ----------
    track : Track
    max_diameter : float
        Metres.
    min_duration : pandas.Timedelta

    Returns
    -------
    pandas.DataFrame
        ``stop_id`` (``"<vehicle_id>@<start ISO UTC>"``), ``vehicle_id``, ``start``, ``end``
        (tz-aware UTC times of the stop's first and last fix), ``duration_s``, ``x, y`` (median
        of the stop's fixes, as movingpandas' ``get_stop_points``), ``lon, lat`` (that point in
        WGS-84), ``n_fixes``, ``first_fix_id``, ``last_fix_id``; sorted by vehicle and start.

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({
    ...     "vehicle_id": ["V1"] * 6,
    ...     "lon": [116.0, 116.01, 116.01, 116.01, 116.01, 116.02],
    ...     "lat": [40.0, 40.0, 40.00001, 40.0, 40.00002, 40.0],
    ...     "time": pd.to_datetime([0, 60, 120, 180, 240, 300], unit="s", utc=True)})
    >>> stops = detect_stops(track_from_fixes(fixes), max_diameter=20.0,
    ...                      min_duration=pd.Timedelta("2min"))
    >>> stops[["stop_id", "duration_s", "n_fixes"]].values.tolist()
    [['V1@1970-01-01T00:01:00Z', 180.0, 4]]
    """
    s, e = _stop_indices(track, max_diameter, min_duration)
    if s.shape[0] == 0:
        frame = pd.DataFrame({col: pd.Series([], dtype=object) for col in _STOP_COLUMNS})
        for col in ("start", "end"):
            frame[col] = _utc(np.zeros(0, dtype=np.int64))
        for col in ("duration_s", "x", "y", "lon", "lat"):
            frame[col] = frame[col].astype(np.float64)
        for col in ("n_fixes", "first_fix_id", "last_fix_id"):
            frame[col] = frame[col].astype(np.int64)
        return frame
    veh = track.vehicle_of_fix()[s]
    lengths = e - s + 1
    label = np.repeat(np.arange(s.shape[0]), lengths)
    idx = np.repeat(s - np.cumsum(np.r_[0, lengths[:-1]]), lengths) + np.arange(lengths.sum())
    med = pd.DataFrame({"label": label, "x": track.x[idx], "y": track.y[idx]}).groupby(
        "label", sort=True).median()
    mx = med["x"].to_numpy()
    my = med["y"].to_numpy()
    lon, lat = _to_lonlat(track.crs, mx, my)
    vids = track.vehicle_ids[veh]
    return pd.DataFrame({
        "stop_id": vids + "@" + _iso(track.t[s]),
        "vehicle_id": vids,
        "start": _utc(track.t[s]),
        "end": _utc(track.t[e]),
        "duration_s": (track.t[e] - track.t[s]) / 1e9,
        "x": mx,
        "y": my,
        "lon": lon,
        "lat": lat,
        "n_fixes": lengths.astype(np.int64),
        "first_fix_id": track.fix_id[s],
        "last_fix_id": track.fix_id[e],
    })


def trips(track: Track, stops: pd.DataFrame, *, max_gap: pd.Timedelta | None = None
          ) -> pd.DataFrame:
    """Trips: the movement between stops (and between gaps).

    A trip is a maximal run of consecutive segments (fix to next fix of one vehicle) that lie
    in no stop and cross no gap; it runs from the last fix of a stop (or the first fix after a
    gap, or the vehicle's first fix) to the first fix of the next stop (or the last fix before
    a gap, or the vehicle's last fix).

    Parameters
    ----------
    track : Track
    stops : pandas.DataFrame
        As :func:`detect_stops` returns (``vehicle_id``, ``start``, ``end`` are used; the times
        must be fix times of the track).
    max_gap : pandas.Timedelta, optional
        Default ``track.max_gap``.

    Returns
    -------
    pandas.DataFrame
        ``trip_id`` (``"<vehicle_id>@<start ISO UTC>"``), ``vehicle_id``, ``start``, ``end``,
        ``distance_m`` (along the fixes), ``n_fixes``, ``first_fix_id``, ``last_fix_id``.

    Examples
    --------
    >>> import pandas as pd
    >>> fixes = pd.DataFrame({
    ...     "vehicle_id": ["V1"] * 6,
    ...     "lon": [116.0, 116.01, 116.01, 116.01, 116.01, 116.02],
    ...     "lat": [40.0, 40.0, 40.00001, 40.0, 40.00002, 40.0],
    ...     "time": pd.to_datetime([0, 60, 120, 180, 240, 300], unit="s", utc=True)})
    >>> track = track_from_fixes(fixes)
    >>> stops = detect_stops(track, max_diameter=20.0, min_duration=pd.Timedelta("2min"))
    >>> trips(track, stops)[["trip_id", "n_fixes"]].values.tolist()
    [['V1@1970-01-01T00:00:00Z', 2], ['V1@1970-01-01T00:04:00Z', 2]]
    """
    n = track.n_fixes
    move = ~track.is_gap(max_gap)
    if n:
        move[track.offsets[1:] - 1] = False  # no segment after a vehicle's last fix
    if len(stops) and n:
        k = vehicle_index(track, stops["vehicle_id"].to_numpy())
        known = k >= 0
        k = k[known]
        lo = track.offsets[k]
        hi = track.offsets[k + 1]
        s = _block_search(track, lo, hi, _as_ns(stops["start"])[known], side="left")
        e = _block_search(track, lo, hi, _as_ns(stops["end"])[known], side="left")
        e = np.minimum(e, hi - 1)
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, s, 1)
        np.add.at(cover, e, -1)
        move &= ~(np.cumsum(cover[:-1]) > 0)
    if not move.any():
        frame = pd.DataFrame({col: pd.Series([], dtype=object) for col in _TRIP_COLUMNS})
        for col in ("start", "end"):
            frame[col] = _utc(np.zeros(0, dtype=np.int64))
        frame["distance_m"] = frame["distance_m"].astype(np.float64)
        for col in ("n_fixes", "first_fix_id", "last_fix_id"):
            frame[col] = frame[col].astype(np.int64)
        return frame
    m = move.astype(np.int8)
    edges = np.diff(np.r_[0, m, 0])
    first = np.flatnonzero(edges == 1)  # first segment of each run
    last = np.flatnonzero(edges == -1)  # one past the last segment = the trip's last fix
    cum = np.r_[0.0, np.cumsum(track.segment_length)]
    veh = track.vehicle_of_fix()[first]
    vids = track.vehicle_ids[veh]
    return pd.DataFrame({
        "trip_id": vids + "@" + _iso(track.t[first]),
        "vehicle_id": vids,
        "start": _utc(track.t[first]),
        "end": _utc(track.t[last]),
        "distance_m": cum[last] - cum[first],
        "n_fixes": (last - first + 1).astype(np.int64),
        "first_fix_id": track.fix_id[first],
        "last_fix_id": track.fix_id[last],
    })
