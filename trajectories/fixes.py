"""Clean GPS fixes: one rejects-ledger row and reason per dropped fix, gaps recorded.

:func:`clean_fixes` takes fixes as :func:`geosup.io.read_table` returns them (``vehicle_id``,
``time`` tz-aware UTC, ``lon``/``lat`` or Point geometry in EPSG:4326, optional
``speed_kmh, heading, odometer_km, ignition``, and ``_row``, the 1-based row number in the
source) and drops, with a reason each, in this order (a row gets the first reason that applies):

1. a missing vehicle id, time or position;
2. coordinates out of range (``|lat| > 90`` or ``|lon| > 180``) or exactly (0, 0), when
   :func:`~geosup.io.read_table` has not already rejected them;
3. an **exact duplicate**: the same vehicle, time and position as an earlier row (the earlier
   row is named);
4. the **same time with a different position**: the same vehicle and time as an earlier row
   but elsewhere. The first row in file order is kept and named in the reason: a GPS unit
   reports one position per instant, and without a third opinion the first report is as good
   as any, while keeping it makes the result independent of what comes later in the file;
5. an **out-of-order** row: with ``order="file"`` (the default) the file order of a vehicle's
   rows is the order the unit reported them, as in a GPS feed, and a row whose time is before
   the previous kept fix of the same vehicle (in file order) is rejected, naming that fix. A
   single row with a far-future time therefore makes the following rows out of order (they
   are before it); when a file's order carries no meaning (e.g. sorted by trip or by id),
   pass ``order="time"``: rows are sorted by time and none is rejected as out of order;
6. an **impossible jump**: the implied speed from the previous kept fix of the vehicle (in
   time order, great-circle distance) is above ``max_speed_kmh``. The comparison is always
   with the last *kept* fix (a sequential numba pass: dropping one fix changes the next
   speed). When a vehicle's very first fix is the outlier (too fast to the next fix while the
   next two agree with each other), the first fix is dropped instead of everything after it.

Intervals between consecutive kept fixes of a vehicle longer than ``max_gap`` are recorded
in :attr:`CleanResult.gaps`; nothing is interpolated across them (see
:mod:`trajectories.motion`). After every call ``rows_in == rows_used + rows_rejected``.

Examples
--------
>>> import pandas as pd
>>> fixes = pd.DataFrame({
...     "_row": [1, 2, 3, 4, 5, 6],
...     "vehicle_id": ["V1"] * 6,
...     "time": pd.to_datetime(["2026-01-26 08:00:00", "2026-01-26 08:00:30",
...                             "2026-01-26 08:00:30", "2026-01-26 08:01:00",
...                             "2026-01-26 08:00:45", "2026-01-26 08:01:30"], utc=True),
...     "lon": [116.40, 116.401, 116.401, 116.402, 116.40, 118.0],
...     "lat": [39.90, 39.90, 39.90, 39.90, 39.90, 39.90],
... })
>>> result = clean_fixes(fixes)
>>> result.counts
{'rows_in': 6, 'rows_used': 3, 'rows_rejected': 3}
>>> result.rejects[["row", "reason"]].values.tolist()  # doctest: +NORMALIZE_WHITESPACE
[[3, 'exact duplicate of row 2 (same vehicle, time and position)'],
 [5, 'out of order: time is before the previous fix of this vehicle in file order (row 4)'],
 [6, 'impossible jump: 16358 km/h from row 4 (limit 250 km/h)']]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosup.errors import ConfigError, SchemaError, ValidationError
from geosup.io import ROW_COLUMN, RejectsLedger, SourceRows, restore_raw
from trajectories.motion import DEFAULT_MAX_GAP, _id_strings, _sorted_order, _utc

__all__ = ["EARTH_RADIUS_M", "CleanResult", "clean_fixes"]

logger = logging.getLogger(__name__)

EARTH_RADIUS_M = 6_371_008.8
"""Mean Earth radius (IUGG) used for the great-circle distances of the jump check."""

_NAT = np.iinfo(np.int64).min
_GAP_COLUMNS = ("vehicle_id", "start", "end", "duration_s")


@dataclass
class CleanResult:
    """What :func:`clean_fixes` returns.

    Attributes
    ----------
    frame : DataFrame or GeoDataFrame
        The kept fixes sorted by ``vehicle_id`` then ``time``, with the input's columns
        (``vehicle_id`` as strings, ``time`` in UTC, ``lon``/``lat`` added when the input had
        only geometry) and ``_row``.
    rejects : DataFrame
        ``source, row, key, reason, raw`` (the key is the vehicle id), one row per dropped fix,
        in row order.
    gaps : DataFrame
        ``vehicle_id, start, end, duration_s``: intervals between consecutive kept fixes of a
        vehicle longer than ``max_gap``.
    counts : dict of str to int
        ``rows_in``, ``rows_used``, ``rows_rejected``.
    reasons : dict of str to int
        Rejected rows per kind: ``missing``, ``coordinates``, ``duplicate``, ``same_time``,
        ``out_of_order``, ``jump``.
    """

    frame: pd.DataFrame
    rejects: pd.DataFrame
    gaps: pd.DataFrame
    counts: dict[str, int]
    reasons: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.counts["rows_in"] != self.counts["rows_used"] + self.counts["rows_rejected"]:
            msg = f"rows in != rows used + rows rejected: {self.counts}"
            raise AssertionError(msg)

    def summary(self) -> str:
        """One line: ``N fixes in = U used + R rejected (…)``."""
        kinds = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in self.reasons.items() if v)
        return (f"{self.counts['rows_in']} fixes in = {self.counts['rows_used']} used + "
                f"{self.counts['rows_rejected']} rejected" + (f" ({kinds})" if kinds else "")
                + f"; {len(self.gaps)} gaps")


@numba.njit(cache=True, nogil=True)
def _jump_kernel(t, lon, lat, offsets, max_speed, scale=1.0):  # pragma: no cover - jit
    """Sequential impossible-jump filter over every vehicle (inputs sorted, ns; ``lon, lat``
    times ``scale`` are radians: the same values as ``np.radians`` for degrees and
    ``scale = pi / 180``).

    Returns (rejected, reference index, speed in m/s) per fix.
    """
    n = t.shape[0]
    rejected = np.zeros(n, dtype=np.bool_)
    ref = np.full(n, -1, dtype=np.int64)
    speed = np.zeros(n, dtype=np.float64)
    for k in range(offsets.shape[0] - 1):
        lo = offsets[k]
        hi = offsets[k + 1]
        if hi - lo < 2:
            continue
        anchor = lo
        # a leading outlier: too fast to the next fix, while the next two agree
        while anchor + 2 < hi:
            if _surely_within(t, lon, lat, anchor, anchor + 1, max_speed, scale):
                break  # v01 <= max_speed
            v01 = _speed(t, lon, lat, anchor, anchor + 1, scale)
            if v01 <= max_speed or _speed(t, lon, lat, anchor + 1, anchor + 2,
                                          scale) > max_speed:
                break
            rejected[anchor] = True
            ref[anchor] = anchor + 1
            speed[anchor] = v01
            anchor += 1
        for i in range(anchor + 1, hi):
            if _surely_within(t, lon, lat, anchor, i, max_speed, scale):
                anchor = i
                continue
            v = _speed(t, lon, lat, anchor, i, scale)
            if v > max_speed:
                rejected[i] = True
                ref[i] = anchor
                speed[i] = v
            else:
                anchor = i
    return rejected, ref, speed


@numba.njit(cache=True, nogil=True)
def _clean_and_ordered(codes, t, lon, lat):  # pragma: no cover - jit
    """True when no row has a reason of steps 1-2 (an id, a time, a finite in-range position
    other than (0, 0)) and the rows are sorted by vehicle code then strictly rising time, so
    steps 3-5 find nothing and the time order is the row order (one pass, no temporaries)."""
    for i in range(t.shape[0]):
        x = lon[i]
        y = lat[i]
        if codes[i] < 0 or t[i] == _NAT or not (np.isfinite(x) and np.isfinite(y)):
            return False
        if abs(y) > 90.0 or abs(x) > 180.0 or (x == 0.0 and y == 0.0):
            return False
        if i and not (codes[i] > codes[i - 1] or (codes[i] == codes[i - 1]
                                                  and t[i] > t[i - 1])):
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _surely_within(t, lon, lat, i, j, max_speed, scale=1.0):  # pragma: no cover - jit
    """True when the speed from fix i to j is certainly at most ``max_speed`` (m/s), from a
    cheap upper bound of the haversine distance; False means "compute it" (:func:`_speed`).

    With ``a = sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2) <= (Δφ² + Δλ²) / 4 = x²`` and
    ``asin(x) <= x (1 + x²/5)`` for ``x <= 0.1``, ``d <= 2 R x (1 + x²/5)``; a relative margin
    of 1e-9 covers rounding, so the decision is the one :func:`_speed` would give.
    """
    dt = abs(t[j] - t[i]) / 1e9
    if dt == 0.0:
        return False
    dlat = lat[j] * scale - lat[i] * scale
    dlon = lon[j] * scale - lon[i] * scale
    x2 = 0.25 * (dlat * dlat + dlon * dlon)
    if x2 > 0.01:
        return False
    bound = 2.0 * 6371008.8 * np.sqrt(x2) * (1.0 + x2 / 5.0) * (1.0 + 1e-9)
    return bound <= max_speed * dt * (1.0 - 1e-9)


@numba.njit(cache=True, nogil=True)
def _speed(t, lon, lat, i, j, scale=1.0):  # pragma: no cover - jit
    """Great-circle speed in m/s between fixes i and j (haversine; radians = ``scale`` times
    the values)."""
    lat_i = lat[i] * scale
    lat_j = lat[j] * scale
    s1 = np.sin((lat_j - lat_i) * 0.5)
    s2 = np.sin((lon[j] * scale - lon[i] * scale) * 0.5)
    a = s1 * s1 + np.cos(lat_i) * np.cos(lat_j) * s2 * s2
    d = 2.0 * 6371008.8 * np.arcsin(np.sqrt(min(1.0, a)))
    dt = abs(t[j] - t[i]) / 1e9
    if dt == 0.0:
        return np.inf if d > 0.0 else 0.0
    return d / dt


def _times(frame: pd.DataFrame) -> np.ndarray:
    col = frame["time"]
    dtype = col.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(col).tz_convert("UTC").as_unit("ns").asi8.copy()
    if pd.api.types.is_datetime64_dtype(dtype):
        msg = ("the fixes' times are naive (no time zone); read them with geosup.io.read_table "
               "(which reads naive times in the configured zone and stores UTC) or localize "
               "them first")
        raise ValidationError(msg)
    if len(col) == 0 or col.isna().all():
        return np.full(len(col), _NAT, dtype=np.int64)
    msg = (f"the fixes' time column must hold tz-aware datetimes, not {dtype}; read the fixes "
           "with geosup.io.read_table(..., time_columns=['time'])")
    raise SchemaError(msg)


def _positions(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if "lon" in frame.columns and "lat" in frame.columns:
        return (pd.to_numeric(frame["lon"], errors="coerce").to_numpy(dtype=np.float64),
                pd.to_numeric(frame["lat"], errors="coerce").to_numpy(dtype=np.float64))
    if isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns:
        geo = frame.geometry
        if geo.crs is None:
            msg = "the fixes have point geometry but no CRS; declare one (e.g. EPSG:4326)"
            raise SchemaError(msg)
        if not geo.crs.equals(pyproj.CRS.from_epsg(4326), ignore_axis_order=True):
            geo = geo.to_crs(4326)
        geoms = np.asarray(geo.array, dtype=object)
        points = shapely.get_type_id(geoms) == shapely.GeometryType.POINT
        lon = np.full(len(geoms), np.nan)
        lat = np.full(len(geoms), np.nan)
        ok = points & ~shapely.is_empty(geoms)
        lon[ok] = shapely.get_x(geoms[ok])
        lat[ok] = shapely.get_y(geoms[ok])
        return lon, lat
    msg = (f"the fixes need lon and lat columns or point geometry; columns are: "
           f"{', '.join(map(str, frame.columns))}")
    raise SchemaError(msg)


def _row_text(rows: np.ndarray) -> pd.Series:
    return pd.Series(np.asarray(rows, dtype=np.int64)).astype(str)


def _tidy(codes: np.ndarray, t: np.ndarray) -> bool:
    """True when each vehicle is one block of strictly increasing times (nothing to find)."""
    if codes.shape[0] < 2:
        return True
    change = np.flatnonzero(codes[1:] != codes[:-1])
    if np.unique(codes[np.r_[0, change + 1]]).shape[0] != change.shape[0] + 1:
        return False
    rising = t[1:] > t[:-1]
    rising[change] = True
    return bool(rising.all())


def clean_fixes(
    frame: pd.DataFrame | gpd.GeoDataFrame,
    *,
    max_speed_kmh: float = 250.0,
    max_gap: pd.Timedelta = DEFAULT_MAX_GAP,
    source: str = "fixes",
    order: Literal["file", "time"] = "file",
    ledger: RejectsLedger | None = None,
    source_rows: SourceRows | None = None,
) -> CleanResult:
    """Drop unusable fixes with a reason each, sort the rest, and record gaps.

    Parameters
    ----------
    frame : DataFrame or GeoDataFrame
        Fixes as :func:`geosup.io.read_table` returns them: ``vehicle_id``, ``time`` (tz-aware),
        ``lon, lat`` or Point geometry (EPSG:4326 or any CRS, converted), ``_row`` (else the
        row numbers are 1, 2, … in frame order).
    max_speed_kmh : float, default 250.0
        Implied speeds above this from the previous kept fix are impossible jumps.
    max_gap : pandas.Timedelta, default 10 min
        Consecutive kept fixes of a vehicle further apart are recorded as a gap.
    source : str, default "fixes"
        The input's name in the ledger.
    order : {"file", "time"}
        Whether the frame's row order is the reporting order (``"file"``: out-of-order rows
        are rejected) or carries no meaning (``"time"``).
    ledger : RejectsLedger, optional
        Also add the rejected rows to this ledger.
    source_rows : SourceRows, optional
        The fixes as their source holds them (:attr:`geosup.io.ReadResult.source_rows`):
        rejected fixes are recorded with the source's own column names and values.

    Returns
    -------
    CleanResult

    Raises
    ------
    SchemaError
        ``vehicle_id``, ``time`` or a position is missing from the columns.
    ValidationError
        The times are naive.
    ConfigError
        A bad option.
    """
    gap_ns = _check_options(frame, order=order, max_speed_kmh=max_speed_kmh, max_gap=max_gap)
    frame = frame.reset_index(drop=True)
    arrays = _fix_arrays(frame)
    cleaned = _clean_arrays(arrays, max_speed_kmh=max_speed_kmh, order=order)
    rej_ledger = RejectsLedger()
    _add_rejects(rej_ledger, frame, arrays, cleaned, source)
    if ledger is not None:
        ledger.extend(rej_ledger)
    kept = _kept_frame(frame, arrays, cleaned.perm)
    gaps = _gaps(arrays.labels, arrays.codes[cleaned.perm], arrays.t[cleaned.perm], gap_ns)
    rejects = rej_ledger.frame()
    if source_rows is not None:
        rejects = restore_raw(rejects, {source: source_rows})
    result = CleanResult(frame=kept, rejects=rejects, gaps=gaps,
                         counts=cleaned.counts, reasons=cleaned.reasons)
    logger.info("%s: %s", source, result.summary())
    return result


@dataclass
class _FixArrays:
    """The columns :func:`clean_fixes` works on, as numpy arrays (one entry per input row).

    ``codes`` index ``labels``, the distinct vehicle ids as text sorted as text (``-1``: no
    id), so no per-fix string is ever built.
    """

    rows: np.ndarray  # int64, the 1-based source row numbers
    t: np.ndarray  # int64 ns UTC, _NAT when missing
    lon: np.ndarray  # float64, NaN when missing
    lat: np.ndarray
    codes: np.ndarray  # int64
    labels: np.ndarray  # object array of str


@dataclass
class _Cleaned:
    """What :func:`_clean_arrays` decided: the kept rows in order and a reason per reject."""

    perm: np.ndarray  # kept row indices, sorted by vehicle then time
    rejected: np.ndarray  # rejected row indices, ascending
    reason: np.ndarray  # object array of str, aligned with ``rejected``
    counts: dict[str, int]
    reasons: dict[str, int]
    identity: bool = False  # perm is 0..n-1 (sorted input, nothing dropped)


_KINDS = ("missing", "coordinates", "duplicate", "same_time", "out_of_order", "jump")


def _vehicle_codes(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Vehicle ids as codes into their distinct text labels sorted as text (``-1``: missing).

    The same ids and order as ``pd.factorize(_id_strings(values), sort=True)`` with one
    Python call per distinct id: a categorical column (as
    :func:`trajectories.audit.read_fixes_partitions` yields) costs nothing per fix.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        raw = np.asarray(values.array.codes, dtype=np.int64)
        uniques = np.asarray(values.array.categories, dtype=object)
    else:
        raw, uniques = pd.factorize(values, use_na_sentinel=True)
        raw = np.asarray(raw, dtype=np.int64)
        uniques = np.asarray(uniques, dtype=object)
    text = _id_strings(pd.Series(uniques, dtype=object))
    lcodes, labels = pd.factorize(pd.Series(text, dtype=object), sort=True,
                                  use_na_sentinel=True)
    lcodes = np.asarray(lcodes, dtype=np.int64)
    if lcodes.shape[0] and not (np.array_equal(lcodes, np.arange(lcodes.shape[0]))):
        codes = np.where(raw >= 0, lcodes[np.maximum(raw, 0)], -1)
    else:  # labels already distinct and sorted: the codes stand
        codes = raw
    return codes, np.asarray(labels, dtype=object)


def _fix_arrays(frame: pd.DataFrame) -> _FixArrays:
    """The arrays of a fixes frame (index 0..n-1; columns checked by the caller)."""
    n = len(frame)
    rows = (frame[ROW_COLUMN].to_numpy(dtype=np.int64) if ROW_COLUMN in frame.columns
            else np.arange(1, n + 1, dtype=np.int64))
    t = _times(frame)
    lon, lat = _positions(frame)
    codes, labels = _vehicle_codes(frame["vehicle_id"])
    return _FixArrays(rows=rows, t=t, lon=lon, lat=lat, codes=codes, labels=labels)


def _clean_arrays(a: _FixArrays, *, max_speed_kmh: float,
                  order: Literal["file", "time"]) -> _Cleaned:
    """Steps 1-6 of the module docstring on arrays; every row gets kept or one reason."""
    n = a.t.shape[0]
    rows, t, lon, lat, codes = a.rows, a.t, a.lon, a.lat, a.codes
    kind = np.zeros(n, dtype=np.int8)  # 0 kept, else 1 + index in _KINDS
    texts: list[tuple[np.ndarray, np.ndarray]] = []  # (rejected rows, their reasons)

    def reject(mask: np.ndarray, text: str | np.ndarray, label: str) -> None:
        """Give ``text`` (one, or one per row of ``mask``) to the masked rows still kept."""
        if not mask.any():  # the usual case: one pass
            return
        mask = mask & (kind == 0)
        if not mask.any():
            return
        idx = np.flatnonzero(mask)
        code = _KINDS.index(label) + 1
        kind[idx] = code
        values = (np.full(idx.shape[0], text, dtype=object) if isinstance(text, str)
                  else np.asarray(text, dtype=object)[idx])
        texts.append((idx, values))

    # the usual partition: nothing for steps 1-5 to find (one fused pass tells)
    ordered = bool(_clean_and_ordered(codes, t, lon, lat)) if n else False

    # 1-2. missing values, coordinates
    if not ordered:
        reject(codes < 0, "missing vehicle_id", "missing")
        reject(t == _NAT, "missing time", "missing")
        reject(~(np.isfinite(lon) & np.isfinite(lat)), "missing position", "missing")
        with np.errstate(invalid="ignore"):
            reject((np.abs(lat) > 90) | (np.abs(lon) > 180),
                   "lon/lat out of range (|lat| > 90 or |lon| > 180)", "coordinates")
            reject((lon == 0) & (lat == 0),
                   "lon/lat is exactly (0, 0), a placeholder for a missing position",
                   "coordinates")

    def alive() -> np.ndarray | None:
        """Indices of the rows still kept, ``None`` when that is every row (no copies)."""
        return None if not kind.any() else np.flatnonzero(kind == 0)

    # 3-4. exact duplicates and the same time at another position: the first in file order wins
    live = alive()
    live_n = n if live is None else live.shape[0]
    tidy = ordered or (_tidy(codes, t) if live is None
                       else _tidy(codes[live], t[live]))  # one block per vehicle, rising times
    if live_n > 1 and not tidy:
        live = np.arange(n, dtype=np.int64) if live is None else live
        srt = live[np.lexsort((live, t[live], codes[live]))]
        head = np.r_[True, (codes[srt[1:]] != codes[srt[:-1]]) | (t[srt[1:]] != t[srt[:-1]])]
        first = srt[np.maximum.accumulate(np.where(head, np.arange(srt.size), 0))]
        later = srt[~head]
        of = first[~head]
        same_pos = (lon[later] == lon[of]) & (lat[later] == lat[of])
        text = np.full(n, None, dtype=object)
        if same_pos.any():
            text[later[same_pos]] = ("exact duplicate of row " + _row_text(rows[of[same_pos]])
                                     + " (same vehicle, time and position)").to_numpy()
            mask = np.zeros(n, dtype=bool)
            mask[later[same_pos]] = True
            reject(mask, text, "duplicate")
        if (~same_pos).any():
            sel = later[~same_pos]
            text[sel] = ("same vehicle and time as row " + _row_text(rows[of[~same_pos]])
                         + " but a different position (the first row in file order is kept)"
                         ).to_numpy()
            mask = np.zeros(n, dtype=bool)
            mask[sel] = True
            reject(mask, text, "same_time")

    # 5. out of order (file order within each vehicle)
    live = alive()
    live_n = n if live is None else live.shape[0]
    if order == "file" and live_n > 1 and not tidy:
        live = np.arange(n, dtype=np.int64) if live is None else live
        tl = pd.Series(t[live])
        group = pd.Series(codes[live])
        running = tl.groupby(group.to_numpy()).cummax().to_numpy()
        late = running > tl.to_numpy()
        if late.any():
            kept_row = pd.Series(np.where(late, np.nan, rows[live].astype(np.float64)))
            previous = kept_row.groupby(group.to_numpy()).ffill().to_numpy()
            text = np.full(n, None, dtype=object)
            sel = live[late]
            text[sel] = ("out of order: time is before the previous fix of this vehicle in file "
                         "order (row " + _row_text(previous[late]) + ")").to_numpy()
            mask = np.zeros(n, dtype=bool)
            mask[sel] = True
            reject(mask, text, "out_of_order")

    # 6. impossible jumps, in time order per vehicle
    live = alive()
    if ordered and n > 1:  # sorted, nothing dropped: the kernel reads the arrays as they are
        perm = np.arange(n, dtype=np.int64)
        offsets = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1, n].astype(np.int64)
        bad, ref, speed = _jump_kernel(t, lon, lat, offsets, max_speed_kmh / 3.6, np.pi / 180.0)
        if bad.any():
            perm = _reject_jumps(bad, ref, speed, perm, rows, max_speed_kmh, reject, n)
    elif ordered:
        perm = np.arange(n, dtype=np.int64)
    else:
        perm = (_sorted_order(codes, t) if live is None
                else live[_sorted_order(codes[live], t[live])])
    if perm.size > 1 and not ordered:
        pc = codes[perm]
        offsets = np.r_[0, np.flatnonzero(pc[1:] != pc[:-1]) + 1, perm.size]
        identity = perm.shape[0] == n and bool((perm[1:] > perm[:-1]).all())
        ts, lons, lats = (t, lon, lat) if identity else (t[perm], lon[perm], lat[perm])
        bad, ref, speed = _jump_kernel(ts, lons, lats, offsets.astype(np.int64),
                                       max_speed_kmh / 3.6, np.pi / 180.0)
        if bad.any():
            perm = _reject_jumps(bad, ref, speed, perm, rows, max_speed_kmh, reject, n)

    if texts:
        idx = np.concatenate([v[0] for v in texts])
        why = np.concatenate([v[1] for v in texts])
        rank = np.argsort(idx, kind="stable")
        rejected, reason = idx[rank], why[rank]
    else:
        rejected, reason = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    tally = (np.bincount(kind, minlength=len(_KINDS) + 1) if texts
             else np.zeros(len(_KINDS) + 1, dtype=np.int64))
    counts = {"rows_in": n, "rows_used": int(perm.size), "rows_rejected": int(rejected.size)}
    reasons = {label: int(tally[i + 1]) for i, label in enumerate(_KINDS)}
    return _Cleaned(perm=perm, rejected=rejected, reason=reason, counts=counts, reasons=reasons,
                    identity=ordered and not texts)


def _reject_jumps(bad: np.ndarray, ref: np.ndarray, speed: np.ndarray, perm: np.ndarray,
                  rows: np.ndarray, max_speed_kmh: float,
                  reject: Callable[[np.ndarray, Any, str], None], n: int) -> np.ndarray:
    """Reject the impossible jumps the kernel found (``bad`` etc. in ``perm`` order); the
    kept ``perm``."""
    sel = perm[bad]
    text = np.full(n, None, dtype=object)
    verb = np.where(ref[bad] > np.flatnonzero(bad), " to row ", " from row ")
    text[sel] = ("impossible jump: " + pd.Series(np.round(speed[bad] * 3.6)).astype(
        np.int64).astype(str) + " km/h" + pd.Series(verb) + _row_text(
        rows[perm[ref[bad]]]) + f" (limit {max_speed_kmh:g} km/h)").to_numpy()
    mask = np.zeros(n, dtype=bool)
    mask[sel] = True
    reject(mask, text, "jump")
    return perm[~bad]


def _check_options(frame: pd.DataFrame, *, order: str, max_speed_kmh: float,
                   max_gap: pd.Timedelta) -> int:
    """Validate :func:`clean_fixes`' options and columns; the gap threshold in ns."""
    if order not in ("file", "time"):
        msg = f"order must be 'file' or 'time', not {order!r}"
        raise ConfigError(msg)
    if not np.isfinite(max_speed_kmh) or max_speed_kmh <= 0:
        msg = f"max_speed_kmh must be a positive number, got {max_speed_kmh!r}"
        raise ConfigError(msg)
    gap_ns = int(pd.Timedelta(max_gap).value)
    if gap_ns < 0:
        msg = f"max_gap must be a non-negative duration, got {max_gap!r}"
        raise ConfigError(msg)
    for col in ("vehicle_id", "time"):
        if col not in frame.columns:
            msg = (f"the fixes have no column {col!r}; columns are: "
                   f"{', '.join(map(str, frame.columns))}")
            raise SchemaError(msg)
    return gap_ns


def _clean_partition(
    frame: pd.DataFrame,
    *,
    max_speed_kmh: float,
    max_gap: pd.Timedelta,
    source: str,
    order: Literal["file", "time"],
    ledger: RejectsLedger,
) -> tuple[_FixArrays, _Cleaned]:
    """:func:`clean_fixes` for the streaming audit: the same checks, decisions and ledger rows,
    but the kept fixes stay arrays (``arrays`` indexed by ``cleaned.perm``), with no frame of
    kept rows and no gaps table. ``frame`` must have a 0..n-1 index."""
    _check_options(frame, order=order, max_speed_kmh=max_speed_kmh, max_gap=max_gap)
    arrays = _fix_arrays(frame)
    cleaned = _clean_arrays(arrays, max_speed_kmh=max_speed_kmh, order=order)
    _add_rejects(ledger, frame, arrays, cleaned, source)
    kinds = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in cleaned.reasons.items() if v)
    logger.info("%s: %d fixes in = %d used + %d rejected%s", source, cleaned.counts["rows_in"],
                cleaned.counts["rows_used"], cleaned.counts["rows_rejected"],
                f" ({kinds})" if kinds else "")
    return arrays, cleaned


def _add_rejects(ledger: RejectsLedger, frame: pd.DataFrame, a: _FixArrays, c: _Cleaned,
                 source: str) -> None:
    """The rejected rows of ``frame`` with their reasons, in row order, into ``ledger``."""
    if not c.rejected.size:
        return
    block = frame.iloc[c.rejected].copy()
    if ROW_COLUMN not in block.columns:
        block.insert(0, ROW_COLUMN, a.rows[c.rejected])
    ledger.add(source, block, c.reason, key_column="vehicle_id")


def _kept_frame(frame: pd.DataFrame, a: _FixArrays, perm: np.ndarray) -> pd.DataFrame:
    """The kept rows of ``frame`` in ``perm`` order, as :attr:`CleanResult.frame`."""
    kept = frame.iloc[perm].copy()
    kept["vehicle_id"] = a.labels[a.codes[perm]]
    kept["time"] = _utc(a.t[perm])
    if "lon" not in kept.columns or "lat" not in kept.columns:
        kept["lon"] = a.lon[perm]
        kept["lat"] = a.lat[perm]
    if ROW_COLUMN not in kept.columns:
        kept.insert(0, ROW_COLUMN, a.rows[perm])
    return kept.reset_index(drop=True)


def _gaps(labels: np.ndarray, codes: np.ndarray, t: np.ndarray, gap_ns: int) -> pd.DataFrame:
    """Intervals longer than ``gap_ns`` between consecutive fixes of a vehicle (sorted)."""
    if t.shape[0] < 2:
        where = np.zeros(0, dtype=np.int64)
    else:
        where = np.flatnonzero((codes[1:] == codes[:-1]) & (np.diff(t) > gap_ns))
    return pd.DataFrame({
        "vehicle_id": pd.Series(labels[codes[where]], dtype=object),
        "start": _utc(t[where]),
        "end": _utc(t[where + 1]),
        "duration_s": (t[where + 1] - t[where]) / 1e9,
    })
