"""Fuel-card vs GPS-track audit: joins, per-transaction motion evidence, rules, alerts, summaries.

:func:`audit` takes the five inputs as :func:`geosup.io.read_table` returns them (frames with
the canonical columns of DESIGN.md section 3 and a ``_row`` column, or the
:class:`~geosup.io.ReadResult` objects themselves, whose ledgers and counts are carried over)
and:

1. joins transactions ⨝ cards ⨝ vehicles ⨝ stations on the read side. Rows that cannot be
   used go to the rejects ledger with a reason, never silently: transactions for unknown
   cards or stations, at stations without coordinates, of cards bound to unknown vehicles,
   duplicate ids; cards for unknown vehicles; stations without coordinates; fixes of vehicles
   missing from the vehicle table. For every input ``rows_in == rows_used + rows_rejected``
   (:attr:`AuditResult.counts`);
2. measures each transaction against the GPS track with the motion operators of
   :mod:`trajectories.motion`: the nearest approach of the card's vehicle to the station within
   ± the window, GPS coverage and gaps, the vehicle's position at the transaction time, the
   stops (:func:`~trajectories.motion.detect_stops`) near the station overlapping the window
   and the cumulative distance driven (:func:`~trajectories.motion.distance_between`), which
   gives the distance between consecutive fills; and the GPS distance per vehicle and month;
3. checks the stations' coordinate system: when most *near-misses* (nearest approach between
   200 and 800 m) have the vector from the vehicle's position at the transaction time to the
   station at the GCJ-02 shift of that place, the stations are probably GCJ-02 declared as
   WGS-84: a :class:`StationOffsetWarning` is raised (and recorded in the result);
4. runs the fuel rules of :mod:`trajectories.rules` with thresholds from
   :func:`geosup.rules.resolve_thresholds` and builds the alerts with
   :func:`geosup.alerts.make_alerts` (geometry: the station and the track around the
   transaction time, EPSG:4326);
5. summarises per card and per unit.

Streaming: ``fixes`` may be an iterable of partitions (one DataFrame per vehicle × month, for
example from :func:`read_fixes_partitions`). Each partition is processed as it comes, together
with a short *tail* of the previous fixes of the same vehicles (what the pending transactions
need), so memory stays bounded by a partition, and the results equal those of the
all-at-once path. Each vehicle's partitions must come in time order. The partitions are pulled
in the calling thread; each is cleaned and projected in a worker thread while the previous one
is measured (a two-stage pipeline: the numba kernels of both stages release the GIL). For a
transverse Mercator metric CRS (UTM, CGCS2000 Gauss-Krüger: what
:func:`geosup.crs.metric_crs_for` picks) the projection is a numba port of PROJ's
``+approx`` series (:func:`_tmerc_kernel`, checked against PROJ when first used); other CRSs
go through PROJ.

Examples
--------
>>> import pandas as pd
>>> t = pd.to_datetime(["2024-10-08 09:00", "2024-10-08 09:30"], utc=True)
>>> fixes = pd.DataFrame({"vehicle_id": "V1", "time": pd.date_range(
...     "2024-10-08 08:30", periods=121, freq="30s", tz="UTC"), "lon": 116.4, "lat": 39.9})
>>> result = audit(
...     fixes,
...     pd.DataFrame({"tx_id": ["T1", "T2"], "card_id": "C1", "time": t, "station_id": "S1",
...                   "litres": [40.0, 90.0], "amount": [300.0, 700.0], "product": "92#"}),
...     pd.DataFrame({"station_id": ["S1"], "name": ["East"], "lon": [116.43], "lat": [39.9]}),
...     pd.DataFrame({"vehicle_id": ["V1"], "unit": ["Roads"], "fuel_type": ["petrol"],
...                   "tank_l": [60.0]}),
...     pd.DataFrame({"card_id": ["C1"], "vehicle_id": ["V1"], "unit": ["Roads"]}),
...     tz="UTC")
>>> sorted(result.alerts["rule"])  # the vehicle stood 2.6 km from the station all along
['fuel.away_from_station', 'fuel.away_from_station', 'fuel.inactive_vehicle', \
'fuel.over_tank_capacity', 'fuel.rapid_refill']
>>> result.counts["transactions"]
{'rows_in': 2, 'rows_used': 2, 'rows_rejected': 0}
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosup.alerts import empty_alerts, make_alerts
from geosup.config import Settings
from geosup.crs import (
    metric_crs_for,
    normalize_coord_system,
    out_of_china,
    to_wgs84,
    wgs84_to_gcj02,
)
from geosup.errors import DataSourceError, GeosupWarning, SchemaError, ValidationError
from geosup.io import ReadResult, RejectsLedger, SourceRows, restore_raw
from geosup.rules import REGISTRY, Rule, resolve_thresholds
from trajectories import motion
from trajectories.calendar import WorkCalendar
from trajectories.fixes import _clean_partition, _FixArrays, _kept_frame
from trajectories.rules import (
    FUEL_RULES,
    HIT_COLUMNS,
    TRACK_RULES,
    FuelContext,
    prepare_evidence,
)

__all__ = [
    "CARD_COLUMNS",
    "NEAR_MISS_M",
    "STOP_CONTEXT",
    "UNIT_COLUMNS",
    "AuditResult",
    "StationOffsetWarning",
    "audit",
    "read_fixes_partitions",
]

logger = logging.getLogger(__name__)

#: Nearest approaches (m) that count as near-misses for the GCJ-02 check.
NEAR_MISS_M: tuple[float, float] = (200.0, 800.0)
#: Fewest near-misses before the GCJ-02 check may warn.
MIN_NEAR_MISSES = 3
#: Fixes this long before and after the window are used to find stops around a transaction.
STOP_CONTEXT = pd.Timedelta("30min")
#: Columns of :attr:`AuditResult.cards`.
CARD_COLUMNS = ("card_id", "vehicle_id", "unit", "transactions", "flagged", "amount_at_risk")
#: Columns of :attr:`AuditResult.units`.
UNIT_COLUMNS = ("unit", "cards_checked", "cards_with_alerts", "transactions", "flagged",
                "share_flagged", "amount_at_risk")

_WGS84 = pyproj.CRS.from_epsg(4326)
_NAT = np.iinfo(np.int64).min
_INPUTS = ("fixes", "transactions", "stations", "vehicles", "cards")


class StationOffsetWarning(GeosupWarning):
    """Most near-misses sit at the GCJ-02 offset: the stations are likely GCJ-02, not WGS-84."""


@dataclass
class AuditResult:
    """What :func:`audit` returns.

    Attributes
    ----------
    alerts : GeoDataFrame
        The alert table (:data:`geosup.alerts.ALERT_COLUMNS`, EPSG:4326).
    rejects : DataFrame
        ``source, row, key, reason, raw``: rows of any input that could not be used (read,
        cleaning and join rejects).
    counts : dict
        Per input (``fixes, transactions, stations, vehicles, cards``): ``rows_in``,
        ``rows_used``, ``rows_rejected`` (``rows_in == rows_used + rows_rejected``).
    cards, units : DataFrame
        Summaries (:data:`CARD_COLUMNS`, :data:`UNIT_COLUMNS`).
    track : Track or None
        The track (all-at-once path only; ``None`` when streaming or without fixes).
    stops : DataFrame
        The stops found around the transactions (``tx_id`` plus the columns of
        :func:`~trajectories.motion.detect_stops`), clipped to ± (window + 30 min).
    evidence : DataFrame
        The per-transaction evidence table the rules ran on
        (:data:`trajectories.rules.EVIDENCE_COLUMNS` plus ``pos_lon, pos_lat``).
    checks : DataFrame
        Per rule: ``rule, ran, checked, not_checkable, alerts``.
    thresholds : dict
        The thresholds each rule ran with.
    warnings : list of str
        Warnings about the data as a whole (the GCJ-02 check, missing inputs).
    """

    alerts: gpd.GeoDataFrame
    rejects: pd.DataFrame
    counts: dict[str, dict[str, int]]
    cards: pd.DataFrame
    units: pd.DataFrame
    track: Any = None
    stops: pd.DataFrame = field(default_factory=pd.DataFrame)
    evidence: pd.DataFrame = field(default_factory=pd.DataFrame)
    checks: pd.DataFrame = field(default_factory=pd.DataFrame)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the CLI: counts per input and alerts per rule."""
        lines = [f"{name}: {c['rows_in']} rows in = {c['rows_used']} used + "
                 f"{c['rows_rejected']} rejected" for name, c in self.counts.items()]
        if len(self.alerts):
            per_rule = self.alerts["rule"].value_counts().sort_index()
            lines += [f"{rule}: {n} alert(s)" for rule, n in per_rule.items()]
        else:
            lines.append("no alerts")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Inputs and the rejects ledger
# ---------------------------------------------------------------------------------------------


@dataclass
class _Input:
    name: str
    source: str
    frame: pd.DataFrame | None
    rows_in: int = 0
    rejected: int = 0


class _Books:
    """The shared rejects ledger and per-input counts."""

    def __init__(self) -> None:
        self.ledger = RejectsLedger()
        self.rows_in = dict.fromkeys(_INPUTS, 0)
        self.rejected = dict.fromkeys(_INPUTS, 0)
        self._seen: set[int] = set()
        #: The inputs' rows as their sources hold them, by ledger source name.
        self.originals: dict[str, SourceRows] = {}

    def take(self, obj: Any, name: str) -> _Input:
        if obj is None:
            return _Input(name, name, None)
        if isinstance(obj, ReadResult):
            if id(obj.ledger) not in self._seen:
                self._seen.add(id(obj.ledger))
                self.ledger.extend(obj.ledger)
            if obj.source_rows is not None:
                self.originals[obj.source] = obj.source_rows
            self.rows_in[name] += obj.rows_in
            self.rejected[name] += obj.rows_rejected
            return _Input(name, obj.source, obj.frame.reset_index(drop=True), obj.rows_in,
                          obj.rows_rejected)
        if isinstance(obj, pd.DataFrame):
            self.rows_in[name] += len(obj)
            return _Input(name, name, obj.reset_index(drop=True), len(obj))
        msg = (f"{name} must be a DataFrame or a geosup.io.ReadResult, not "
               f"{type(obj).__name__}")
        raise ValidationError(msg)

    def reject(self, inp: _Input | str, frame: pd.DataFrame, mask: np.ndarray,
               reason: str | np.ndarray, key: str | None) -> int:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return 0
        name = inp if isinstance(inp, str) else inp.name
        source = inp if isinstance(inp, str) else inp.source
        reasons = reason if isinstance(reason, str) else np.asarray(reason, dtype=object)[mask]
        block = frame.loc[mask]
        if "_row" not in block.columns:
            block = block.assign(_row=np.flatnonzero(mask) + 1)
        n = self.ledger.add(source, block, reasons, key_column=key)
        self.rejected[name] += n
        return n

    def rejects(self) -> pd.DataFrame:
        """The ledger; a row rejected from a read input shows the source's own values."""
        return restore_raw(self.ledger.frame(), self.originals)

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {"rows_in": self.rows_in[name],
                       "rows_used": self.rows_in[name] - self.rejected[name],
                       "rows_rejected": self.rejected[name]} for name in _INPUTS}


def _ids(values: pd.Series) -> pd.Series:
    """Ids as text: integral floats lose their ``.0``; missing stays missing (one call per
    distinct value)."""
    series = pd.Series(values).reset_index(drop=True)
    if not len(series):
        return series.astype(object)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = []
    for value in uniques:  # distinct ids only
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            labels.append(str(int(value)))
        else:
            text = str(value).strip()
            labels.append(text if text else None)
    table = np.array([*labels, None], dtype=object)
    return pd.Series(table[np.where(codes < 0, len(labels), codes)], dtype=object)


def _num(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype="float64")


def _text(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series([""] * len(frame), dtype=object)
    s = frame[col].reset_index(drop=True)
    return s.astype(object).where(s.notna(), "").astype(str).astype(object)


def _times(frame: pd.DataFrame, col: str) -> pd.Series:
    if col not in frame.columns:
        return pd.Series(pd.NaT, index=range(len(frame)), dtype="datetime64[ns, UTC]")
    out = pd.to_datetime(frame[col].reset_index(drop=True), utc=True, errors="coerce")
    return out.dt.as_unit("ns")


def _require(inp: _Input, cols: Sequence[str]) -> None:
    assert inp.frame is not None
    missing = [c for c in cols if c not in inp.frame.columns]
    if missing:
        msg = (f"the {inp.name} input lacks the column(s) {', '.join(missing)}; it has: "
               f"{', '.join(map(str, inp.frame.columns))} (map them with --map/[columns])")
        raise SchemaError(msg)


def _dedupe(books: _Books, inp: _Input, frame: pd.DataFrame, ids: pd.Series,
            what: str, key: str) -> np.ndarray:
    """Reject rows with a missing id or repeating an earlier id; returns the kept mask."""
    missing = ids.isna().to_numpy()
    books.reject(inp, frame, missing, f"missing {what}", None)
    dup = ids.duplicated(keep="first").to_numpy() & ~missing
    if dup.any():
        first_row = pd.Series(frame["_row"].to_numpy() if "_row" in frame.columns
                              else np.arange(1, len(frame) + 1)).groupby(ids.to_numpy()).first()
        firsts = ids.map(first_row).astype("Int64").astype(str).to_numpy(dtype=object)
        reason = ("duplicate " + what + " '" + ids.astype(str).to_numpy(dtype=object)
                  + "' (first on row " + firsts + ")")
        books.reject(inp, frame, dup, reason, key)
    return ~missing & ~dup


# ---------------------------------------------------------------------------------------------
# Reading partitioned GeoParquet fixes
# ---------------------------------------------------------------------------------------------


def read_fixes_partitions(
    path: str | os.PathLike[str],
    *,
    max_fixes: int = 4_000_000,
    columns: Mapping[str, str] | None = None,
    prefetch: bool = True,
) -> Iterator[pd.DataFrame]:
    """Stream fixes from a (GeoParquet) dataset partitioned by vehicle and month.

    Partition files are read in path order (``month=…/vehicle_id=…`` or
    ``vehicle_id=…/month=…`` directories sort each vehicle's months in time order; two files
    are decoded at a time, a few dozen at most ahead, and handed over in that order) and
    yielded in batches of whole files holding at most about ``max_fixes`` fixes, so memory is
    bounded by a batch. Vehicle ids come as a categorical column (codes, no per-fix
    strings). Point geometry stored as GeoArrow (``geometry_encoding="geoarrow"``) or WKB is
    read as ``lon, lat``; plain ``lon``/``lat`` columns are used as they are.

    Parameters
    ----------
    path : path-like
        A directory of ``.parquet`` files (searched recursively) or one file.
    max_fixes : int
        Rough upper bound of the fixes per yielded frame.
    columns : mapping, optional
        Canonical name -> column name in the files (``vehicle_id``, ``time``, ``lon``,
        ``lat``); hive partition keys (``vehicle_id=V1``) fill a missing column.
    prefetch : bool, default True
        Read the next batch in a background thread while the current one is audited (one
        more batch in memory).

    Yields
    ------
    pandas.DataFrame
        ``vehicle_id, time (UTC), lon, lat, _row`` (the files' ``_row`` when they have one,
        else a running fix number over the dataset).
    """
    batches = _read_batches(Path(path), max_fixes=max_fixes, columns=columns)
    if not prefetch:
        yield from batches
        return
    yield from _prefetched(batches)


def _prefetched(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """Produce the next item of ``batches`` in a thread while the consumer works."""
    box: queue.Queue[Any] = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in batches:
                while not stop.is_set():
                    try:
                        box.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(done)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            box.put(err)

    worker = threading.Thread(target=produce, name="read_fixes_partitions", daemon=True)
    worker.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                box.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


def _read_batches(root: Path, *, max_fixes: int, columns: Mapping[str, str] | None
                  ) -> Iterator[pd.DataFrame]:
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    else:
        msg = f"fixes dataset {root} does not exist"
        raise DataSourceError(msg)
    if not files:
        msg = f"no .parquet files under {root}"
        raise DataSourceError(msg)
    mapping = {"vehicle_id": "vehicle_id", "time": "time", "lon": "lon", "lat": "lat"}
    mapping.update(columns or {})
    row = 0
    batch: list[dict[str, Any]] = []
    size = 0
    for data in _read_files(files, mapping):
        n = data["n"]
        if data["_row"] is None:
            data["_row"] = np.arange(row + 1, row + n + 1, dtype=np.int64)
        row += n
        batch.append(data)
        size += n
        if size >= max_fixes:
            yield _batch_frame(batch)
            batch, size = [], 0
    if batch:
        yield _batch_frame(batch)


_READ_THREADS = 2
_READ_AHEAD = 32  # files in flight at most


def _read_files(files: Sequence[Path], mapping: Mapping[str, str]
                ) -> Iterator[dict[str, Any]]:
    """:func:`_read_file` of every file, in order, ``_READ_THREADS`` files at a time (Parquet
    decoding releases the GIL) with at most ``_READ_AHEAD`` files read ahead."""
    if len(files) < 2:
        for file in files:
            yield _read_file(file, mapping)
        return
    with ThreadPoolExecutor(max_workers=_READ_THREADS,
                            thread_name_prefix="read_fixes_file") as pool:
        pending: collections.deque[Future[dict[str, Any]]] = collections.deque()
        todo = iter(files)
        try:
            for file in itertools.islice(todo, _READ_AHEAD):
                pending.append(pool.submit(_read_file, file, mapping))
            while pending:
                data = pending.popleft().result()
                for file in itertools.islice(todo, 1):
                    pending.append(pool.submit(_read_file, file, mapping))
                yield data
        finally:
            for future in pending:
                future.cancel()


def _read_file(file: Path, mapping: Mapping[str, str]) -> dict[str, Any]:
    """The columns of one Parquet file as arrays (``_row`` None when the file has none)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(file)
    names = pf.schema_arrow.names
    wanted = [c for c in (mapping["vehicle_id"], mapping["time"], mapping["lon"],
                          mapping["lat"], "geometry", "_row") if c in names]
    table = pf.read(columns=wanted, use_threads=False)  # files are read in parallel instead
    n = table.num_rows
    data: dict[str, Any] = {}
    if mapping["vehicle_id"] in names:
        data["vehicle_id"] = np.asarray(table.column(mapping["vehicle_id"]).to_numpy(
            zero_copy_only=False), dtype=object)
    else:
        hive = {k: v for part in file.absolute().parent.parts
                for k, _, v in [part.partition("=")] if "=" in part}
        if "vehicle_id" not in hive:
            msg = f"{file}: no vehicle_id column and no vehicle_id=… partition directory"
            raise SchemaError(msg)
        data["vehicle_id"] = hive["vehicle_id"]  # one id for the file
    if mapping["time"] not in names:
        msg = f"{file}: no {mapping['time']!r} column"
        raise SchemaError(msg)
    tcol = table.column(mapping["time"])
    ttype = tcol.type
    if pa.types.is_timestamp(ttype):
        unit_ns = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}[ttype.unit]
        ns = tcol.cast(pa.int64()).to_numpy(zero_copy_only=False)
        if unit_ns != 1:
            ns = ns * unit_ns
        if ttype.tz is None:
            logger.debug("%s: naive times read as UTC", file)
        data["time"] = ns
    else:
        data["time"] = pd.DatetimeIndex(pd.to_datetime(tcol.to_pandas(), utc=True)).as_unit(
            "ns").asi8
    if mapping["lon"] in names and mapping["lat"] in names:
        data["lon"] = table.column(mapping["lon"]).to_numpy(zero_copy_only=False)
        data["lat"] = table.column(mapping["lat"]).to_numpy(zero_copy_only=False)
    elif "geometry" in names:
        geom = table.column("geometry").combine_chunks()
        if pa.types.is_struct(geom.type):  # GeoArrow point
            data["lon"] = geom.field(0).to_numpy(zero_copy_only=False)
            data["lat"] = geom.field(1).to_numpy(zero_copy_only=False)
        else:
            pts = shapely.from_wkb(geom.to_numpy(zero_copy_only=False))
            data["lon"] = shapely.get_x(pts)
            data["lat"] = shapely.get_y(pts)
    else:
        msg = f"{file}: no lon/lat columns and no geometry column"
        raise SchemaError(msg)
    data["_row"] = (table.column("_row").to_numpy(zero_copy_only=False) if "_row" in names
                    else None)
    data["n"] = n
    return data


def _batch_frame(batch: list[dict[str, Any]]) -> pd.DataFrame:
    """One fixes frame from the columns of several files (vehicle ids as categories)."""
    constant = all(isinstance(part["vehicle_id"], str) for part in batch)
    if constant:  # one id per file: codes without hashing every fix
        labels, inverse = np.unique(np.array([p["vehicle_id"] for p in batch], dtype=object),
                                    return_inverse=True)
        codes = np.repeat(inverse, [p["n"] for p in batch])
        vehicle = pd.Categorical.from_codes(codes, categories=labels.astype(str))
    else:
        vehicle = pd.Categorical(np.concatenate([
            np.full(p["n"], p["vehicle_id"], dtype=object) if isinstance(p["vehicle_id"], str)
            else p["vehicle_id"] for p in batch]))
    ns = np.concatenate([p["time"] for p in batch]).astype(np.int64, copy=False)
    time_index = pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame({
        "vehicle_id": vehicle,
        "time": time_index,
        "lon": np.concatenate([p["lon"] for p in batch]).astype(np.float64, copy=False),
        "lat": np.concatenate([p["lat"] for p in batch]).astype(np.float64, copy=False),
        "_row": np.concatenate([p["_row"] for p in batch]).astype(np.int64, copy=False),
    }, copy=False)


# ---------------------------------------------------------------------------------------------
# Motion evidence, partition by partition
# ---------------------------------------------------------------------------------------------


def _ns(times: Any) -> np.ndarray:
    """tz-aware (or naive = UTC) times as int64 ns since the epoch; NaT -> int64 minimum."""
    idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(times).reset_index(drop=True), utc=True))
    return idx.as_unit("ns").asi8.copy()


def _block_search(t: np.ndarray, lo: np.ndarray, hi: np.ndarray, q: np.ndarray,
                  side: str) -> np.ndarray:
    """Vectorised ``searchsorted`` of ``q[i]`` inside ``t[lo[i]:hi[i]]`` (absolute index)."""
    lo = np.ascontiguousarray(lo, dtype=np.int64)
    hi = np.maximum(np.ascontiguousarray(hi, dtype=np.int64), lo)
    q = np.ascontiguousarray(np.broadcast_to(np.asarray(q, dtype=np.int64), lo.shape))
    return motion._search_kernel(t, lo, hi, q, side == "right")


def _gather(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``lo[i]..hi[i]-1`` for every i, concatenated, and the owner i of each."""
    lengths = np.maximum(hi - lo, 0)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(lo.shape[0]), lengths)
    starts = np.repeat(lo - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return starts + np.arange(total), owner


@dataclass
class _Params:
    window_ns: int
    context_ns: int
    max_gap: pd.Timedelta
    stop_diameter_m: float
    min_dwell: pd.Timedelta
    crs: pyproj.CRS | None
    month_edges: np.ndarray  # UTC ns of local month starts, sorted
    month_labels: np.ndarray  # "YYYY-MM" for each edge


def _no_fixes() -> dict[str, np.ndarray]:
    """The carried fixes of :class:`_Motion` when there are none."""
    return {"vid": np.empty(0, dtype=object), "t": np.empty(0, dtype=np.int64),
            "lon": np.empty(0), "lat": np.empty(0), "fix_id": np.empty(0, dtype=np.int64),
            "x": np.empty(0), "y": np.empty(0)}


class _Motion:
    """Accumulates motion evidence over partitions (see the module docstring)."""

    def __init__(self, tx: pd.DataFrame, params: _Params, *, keep_track: bool) -> None:
        self.p = params
        self.keep_track = keep_track
        n = len(tx)
        self.tx_vid = tx["vehicle_id"].to_numpy(dtype=object)
        self.tx_t = _ns(tx["time"])
        self.sx = tx["_sx"].to_numpy(dtype="float64")
        self.sy = tx["_sy"].to_numpy(dtype="float64")
        self.done = np.zeros(n, dtype=bool)
        self.cols: dict[str, np.ndarray] = {
            "nearest_m": np.full(n, np.nan), "nearest_at": np.full(n, _NAT, dtype=np.int64),
            "nearest_lon": np.full(n, np.nan), "nearest_lat": np.full(n, np.nan),
            "nearest_fix_id": np.full(n, -1, dtype=np.int64),
            "fix_distance_m": np.full(n, np.nan), "n_fixes": np.zeros(n, dtype=np.int64),
            "covered": np.zeros(n, dtype=bool), "coverage_reason": np.full(n, "", dtype=object),
            "in_gap": np.zeros(n, dtype=bool), "gap_start": np.full(n, _NAT, dtype=np.int64),
            "gap_end": np.full(n, _NAT, dtype=np.int64),
            "stop_id": np.full(n, "", dtype=object),
            "stop_start": np.full(n, _NAT, dtype=np.int64),
            "stop_end": np.full(n, _NAT, dtype=np.int64),
            "stop_duration_s": np.full(n, np.nan), "stop_m": np.full(n, np.nan),
            "cum_m": np.full(n, np.nan), "cum_gap_m": np.full(n, np.nan),
            "in_range": np.zeros(n, dtype=bool), "pos_lon": np.full(n, np.nan),
            "pos_lat": np.full(n, np.nan),
        }
        # transactions by vehicle, for the tails
        order = np.lexsort((self.tx_t, pd.factorize(pd.Series(self.tx_vid, dtype=object))[0]))
        self.tx_order = order
        # the transactions' vehicles as codes (len(tx_names): none), for _tx_vehicle_index
        code, names = pd.factorize(pd.Series(motion._id_strings(self.tx_vid), dtype=object),
                                   use_na_sentinel=True)
        self.tx_names = np.asarray(names, dtype=object)
        self.tx_code = np.where(code < 0, len(self.tx_names), code).astype(np.int64)
        self.tx_slot = {str(name): i for i, name in enumerate(self.tx_names)}
        # carried state per vehicle
        self.carry: dict[str, np.ndarray] = _no_fixes()
        self.offset_m: dict[str, float] = {}
        self.offset_gap_m: dict[str, float] = {}
        self.first_t: dict[str, int] = {}
        self.segments: list[pd.DataFrame] = []
        self.stops: list[pd.DataFrame] = []
        self.months: list[pd.DataFrame] = []
        self.track: motion.Track | None = None
        self.fixes_used = 0

    # -- one partition ---------------------------------------------------------------------
    def feed(self, fixes: pd.DataFrame) -> None:
        """Add a partition of clean fixes (vehicle_id, t int64 ns, lon, lat, fix_id; and x, y
        when already projected to the metric CRS)."""
        if not len(fixes):
            return
        codes, labels = _vehicle_codes(fixes["vehicle_id"])
        xy = ((fixes["x"].to_numpy(dtype="float64"), fixes["y"].to_numpy(dtype="float64"))
              if "x" in fixes.columns and "y" in fixes.columns else None)
        self.feed_arrays(codes, np.asarray(labels, dtype=object),
                         fixes["t"].to_numpy(dtype=np.int64),
                         fixes["lon"].to_numpy(dtype="float64"),
                         fixes["lat"].to_numpy(dtype="float64"),
                         fixes["fix_id"].to_numpy(dtype=np.int64), xy)

    def feed_arrays(self, codes: np.ndarray, labels: np.ndarray, t: np.ndarray, lon: np.ndarray,
                    lat: np.ndarray, fix_id: np.ndarray,
                    xy: tuple[np.ndarray, np.ndarray] | None) -> None:
        """:meth:`feed` from arrays: ``codes`` into ``labels`` (distinct text vehicle ids),
        ``xy`` the fixes projected to the metric CRS, or None."""
        if not t.shape[0]:
            return
        self.fixes_used += t.shape[0]
        if codes.min() < 0:
            msg = "fixes without a vehicle id reached the track; clean them first"
            raise ValidationError(msg)
        count, first, _ = _span_per_code(codes, t, len(labels))
        present = np.flatnonzero(count)
        names = np.asarray(labels, dtype=object)[present]
        for name, t0 in zip(names, first[present], strict=True):  # one per vehicle
            self.first_t.setdefault(str(name), int(t0))
        projected = True
        if xy is not None:
            x, y = xy
        elif self.p.crs is not None:
            x, y = _project(self.p.crs, lon, lat)
        else:  # the first fixes choose the CRS (nothing carried yet)
            x = y = np.full(t.shape[0], np.nan)
            projected = False
        new = {"t": t, "lon": lon, "lat": lat, "fix_id": fix_id, "x": x, "y": y}
        # the carried fixes of the vehicles in this partition come first (they are earlier)
        carry = self.carry
        in_batch = pd.Series(carry["vid"], dtype=object).isin(set(names)).to_numpy()
        if in_batch.any():
            slot = {str(name): i for i, name in enumerate(labels)}
            tail_codes = np.array([slot[str(v)] for v in carry["vid"][in_batch]],
                                  dtype=np.int64)  # carried fixes only (a few per vehicle)
            combined = {key: np.concatenate([carry[key][in_batch], new[key]]) for key in new}
            combined["codes"] = np.concatenate([tail_codes, codes])
            combined["n_tail"] = np.int64(in_batch.sum())
            self.carry = {key: values[~in_batch] for key, values in carry.items()}
        else:
            combined = {**new, "codes": codes, "n_tail": np.int64(0)}
        combined["labels"] = labels
        self._process(combined, final=False, projected=projected)

    def finish(self) -> None:
        """Evaluate the transactions still pending with the fixes carried so far."""
        carry = self.carry
        self.carry = _no_fixes()
        codes, labels = pd.factorize(pd.Series(carry["vid"], dtype=object))
        combined = {key: carry[key] for key in ("t", "lon", "lat", "fix_id", "x", "y")}
        combined.update(codes=np.asarray(codes, dtype=np.int64),
                        labels=np.asarray(labels, dtype=object),
                        n_tail=np.int64(len(carry["t"])))
        self._process(combined, final=True)

    def _build(self, combined: dict[str, Any], *, projected: bool) -> motion.Track:
        return _fast_track(combined["codes"], pd.Index(combined["labels"]), combined["t"],
                           combined["lon"], combined["lat"], combined["fix_id"],
                           crs=self.p.crs, max_gap=self.p.max_gap,
                           x=combined["x"] if projected else None,
                           y=combined["y"] if projected else None)

    def _process(self, combined: dict[str, Any], *, final: bool, projected: bool = True
                 ) -> None:
        p = self.p
        trk = self._build(combined, projected=projected and p.crs is not None)
        if self.p.crs is None and trk.n_fixes:
            self.p.crs = trk.crs
        if self.keep_track and not final:
            self.track = trk
        if trk.n_fixes and not final:
            # new fixes: after the last carried (tail) fix of their vehicle
            n_tail = int(combined["n_tail"])
            if n_tail:
                tail_last = np.full(trk.n_vehicles, np.iinfo(np.int64).min, dtype=np.int64)
                names = combined["labels"][combined["codes"][:n_tail]]
                k_tail = motion.vehicle_index(trk, names)
                np.maximum.at(tail_last, k_tail, combined["t"][:n_tail])
                new_sorted: np.ndarray | None = trk.t > tail_last[trk.vehicle_of_fix()]
            else:
                new_sorted = None  # every fix is new
            self._months(trk, new_sorted)
        # transactions to evaluate now
        pending = ~self.done
        k_all = self._tx_vehicle_index(trk)
        if final:
            ready = pending
        else:
            known = k_all >= 0
            last_t = np.full(len(self.tx_t), _NAT, dtype=np.int64)
            last_t[known] = trk.t[trk.offsets[k_all[known] + 1] - 1]
            ready = pending & known & (self.tx_t + p.window_ns + p.context_ns < last_t)
        rows = np.flatnonzero(ready)
        if rows.size:
            self._evaluate(trk, rows, k_all[rows], final=final)
            self.done[rows] = True
        if not final and trk.n_fixes:
            self._cut_tail(trk, k_all)

    def _months(self, trk: motion.Track, new_sorted: np.ndarray | None) -> None:
        """GPS distance and fixes per vehicle and local month (new fixes only; ``None``:
        all)."""
        seg_in = np.zeros(trk.n_fixes, dtype=np.float64)
        if trk.n_fixes > 1:
            seg_in[1:] = trk.segment_length[:-1]  # the segment ending at each fix
            seg_in[trk.offsets[:-1]] = 0.0
        edges = self.p.month_edges
        t_min = trk.t[trk.offsets[:-1]].min()  # each vehicle's fixes in time order
        t_max = trk.t[trk.offsets[1:] - 1].max()
        first_m, last_m = np.searchsorted(edges, [t_min, t_max], side="right") - 1
        if first_m == last_m and first_m >= 0:  # the usual partition: one month
            starts = trk.offsets[:-1]
            if new_sorted is None:
                dist = np.add.reduceat(seg_in, starts)
                cnt = np.diff(trk.offsets)
            else:
                dist = np.add.reduceat(np.where(new_sorted, seg_in, 0.0), starts)
                cnt = np.add.reduceat(new_sorted.astype(np.int64), starts)
            present = np.flatnonzero(cnt)
            frame = pd.DataFrame({"vehicle_id": trk.vehicle_ids[present],
                                  "period": self.p.month_labels[first_m],
                                  "gps_m": dist[present], "n_fixes": cnt[present]})
        else:
            veh = trk.vehicle_of_fix()
            month = np.searchsorted(edges, trk.t, side="right") - 1
            keep = (month >= 0) if new_sorted is None else new_sorted & (month >= 0)
            if not keep.any():
                return
            nm = len(edges)
            key = veh[keep] * nm + month[keep]
            dist = np.bincount(key, weights=seg_in[keep])
            cnt = np.bincount(key)
            present = np.flatnonzero(cnt)
            frame = pd.DataFrame({
                "vehicle_id": trk.vehicle_ids[present // nm],
                "period": self.p.month_labels[present % nm],
                "gps_m": dist[present], "n_fixes": cnt[present].astype(np.int64)})
        if len(frame):
            self.months.append(frame)

    def _tx_vehicle_index(self, trk: motion.Track) -> np.ndarray:
        """:func:`motion.vehicle_index` of every transaction's vehicle in ``trk`` (one lookup
        per vehicle of the track, none per transaction)."""
        if not trk.n_vehicles:
            return np.full(len(self.tx_vid), -1, dtype=np.int64)
        slot = np.array([self.tx_slot.get(str(v), -1) for v in trk.vehicle_ids], dtype=np.int64)
        to_k = np.full(len(self.tx_names) + 1, -1, dtype=np.int64)  # the last: no vehicle
        has = slot >= 0
        to_k[slot[has]] = np.flatnonzero(has)
        return to_k[self.tx_code]

    def _cut_tail(self, trk: motion.Track, k_all: np.ndarray) -> None:
        """Keep, per vehicle, the fixes the pending transactions still need."""
        p = self.p
        pending = ~self.done
        nveh = trk.n_vehicles
        earliest = np.full(nveh, np.iinfo(np.int64).max, dtype=np.int64)
        k = k_all[pending]
        ok = k >= 0
        np.minimum.at(earliest, k[ok], self.tx_t[pending][ok])
        lo = trk.offsets[:-1]
        hi = trk.offsets[1:]
        last_t = trk.t[hi - 1]
        keep_from = np.minimum(
            np.where(earliest == np.iinfo(np.int64).max, last_t,
                     earliest - p.window_ns - p.context_ns), last_t)
        j = _block_search(trk.t, lo, hi, keep_from, "left")
        j = np.maximum(j - 1, lo)  # one fix before: brackets the window start
        # carry the cumulative distance to the tail's first fix
        # (the cumulative sums distance_between uses, computed once per track)
        gap_ns = int(trk.max_gap.value)
        cum = trk._cumulative(gap_ns, zero_gaps=False)
        cum_move = trk._cumulative(gap_ns, zero_gaps=True)
        d_all = cum[j] - cum[lo]
        d_gap = d_all - (cum_move[j] - cum_move[lo])
        idx, owner = _gather(j, hi)
        vids = trk.vehicle_ids
        for v in range(nveh):  # one entry per vehicle (not per fix or transaction)
            name = str(vids[v])
            self.offset_m[name] = self.offset_m.get(name, 0.0) + float(d_all[v])
            self.offset_gap_m[name] = self.offset_gap_m.get(name, 0.0) + float(d_gap[v])
        tail = {"vid": vids[owner], "t": trk.t[idx], "lon": trk.lon[idx],
                "lat": trk.lat[idx], "fix_id": trk.fix_id[idx], "x": trk.x[idx],
                "y": trk.y[idx]}
        self.carry = {key: np.concatenate([self.carry[key], tail[key]]) for key in tail}

    def _evaluate(self, trk: motion.Track, rows: np.ndarray, k: np.ndarray, *,
                  final: bool) -> None:
        p = self.p
        c = self.cols
        vid = self.tx_vid[rows]
        t = self.tx_t[rows]
        sx = self.sx[rows]
        sy = self.sy[rows]
        has_station = np.isfinite(sx) & np.isfinite(sy)
        window = pd.Timedelta(p.window_ns, unit="ns")
        near = motion.nearest_approach(trk, vid, t, np.where(has_station, sx, 0.0),
                                       np.where(has_station, sy, 0.0), window=window,
                                       max_gap=p.max_gap)
        dist = near["distance_m"].to_numpy(dtype="float64")
        dist = np.where(has_station, dist, np.nan)
        c["nearest_m"][rows] = dist
        at = near["at"]
        at_ns = _ns(at) if len(at) else np.zeros(0, np.int64)
        c["nearest_at"][rows] = np.where(has_station, at_ns, _NAT)
        nx = near["x"].to_numpy(dtype="float64")
        ny = near["y"].to_numpy(dtype="float64")
        if trk.n_fixes and np.isfinite(nx).any():
            fin = np.isfinite(nx) & has_station
            lon, lat = _to_lonlat(trk.crs, nx[fin], ny[fin])
            tmp_lon = np.full(rows.size, np.nan)
            tmp_lat = np.full(rows.size, np.nan)
            tmp_lon[fin] = lon
            tmp_lat[fin] = lat
            c["nearest_lon"][rows] = tmp_lon
            c["nearest_lat"][rows] = tmp_lat
        c["nearest_fix_id"][rows] = np.where(has_station, near["fix_id"].to_numpy(), -1)
        c["fix_distance_m"][rows] = np.where(has_station,
                                             near["fix_distance_m"].to_numpy(dtype="float64"),
                                             np.nan)
        c["n_fixes"][rows] = near["n_fixes"].to_numpy(dtype=np.int64)
        c["covered"][rows] = near["covered"].to_numpy(dtype=bool)
        pos = motion.positions_at(trk, vid, t, max_gap=p.max_gap)
        reason = near["reason"].to_numpy(dtype=object).copy()
        in_gap = (pos["reason"] == "in a gap").to_numpy()
        reason = np.where((reason == "") & ~near["covered"].to_numpy(dtype=bool),
                          np.where(in_gap, "in a gap", "fixes on one side only"), reason)
        c["coverage_reason"][rows] = reason
        c["in_gap"][rows] = in_gap
        c["pos_lon"][rows] = pos["lon"].to_numpy(dtype="float64")
        c["pos_lat"][rows] = pos["lat"].to_numpy(dtype="float64")
        if not trk.n_fixes:
            return
        known = k >= 0
        kk = np.where(known, k, 0)
        lo = np.where(known, trk.offsets[kk], 0)
        hi = np.where(known, trk.offsets[kk + 1], 0)
        # the gap around t
        if in_gap.any():
            g = np.flatnonzero(in_gap)
            j = _block_search(trk.t, lo[g], hi[g], t[g], "right") - 1
            c["gap_start"][rows[g]] = trk.t[j]
            c["gap_end"][rows[g]] = trk.t[j + 1]
        # cumulative distance at t (straight lines across gaps, and their part)
        kn = np.flatnonzero(known)
        first_t = trk.t[lo[kn]]
        d_all = motion.distance_between(trk, vid[kn], first_t, t[kn], across_gaps="straight",
                                        max_gap=p.max_gap)
        d_move = motion.distance_between(trk, vid[kn], first_t, t[kn], across_gaps="zero",
                                         max_gap=p.max_gap)
        d_all = np.where(t[kn] < first_t, 0.0, d_all)
        d_move = np.where(t[kn] < first_t, 0.0, d_move)
        off = np.array([self.offset_m.get(str(v), 0.0) for v in trk.vehicle_ids])
        off_gap = np.array([self.offset_gap_m.get(str(v), 0.0) for v in trk.vehicle_ids])
        c["cum_m"][rows[kn]] = off[k[kn]] + d_all
        c["cum_gap_m"][rows[kn]] = off_gap[k[kn]] + (d_all - d_move)
        first_ever = np.array([self.first_t.get(str(v), int(trk.t[trk.offsets[i]]))
                               for i, v in enumerate(trk.vehicle_ids)], dtype=np.int64)
        last = trk.t[hi[kn] - 1]
        c["in_range"][rows[kn]] = (t[kn] >= first_ever[k[kn]]) & (t[kn] <= last)
        # the track around t (for the alert geometry)
        a = _block_search(trk.t, lo, hi, t - p.window_ns, "left")
        b = _block_search(trk.t, lo, hi, t + p.window_ns, "right")
        idx, owner = _gather(a, b)
        if idx.size:
            self.segments.append(pd.DataFrame({"row": rows[owner], "lon": trk.lon[idx],
                                               "lat": trk.lat[idx]}))
        # stops around t: each transaction's own clip of the track, so that the stops do not
        # depend on where partitions start
        a2 = _block_search(trk.t, lo, hi, t - p.window_ns - p.context_ns, "left")
        b2 = _block_search(trk.t, lo, hi, t + p.window_ns + p.context_ns, "right")
        sel = np.flatnonzero((b2 - a2 >= 2) & has_station)
        if sel.size:
            self._stops(trk, rows[sel], vid[sel], t[sel], sx[sel], sy[sel], a2[sel], b2[sel])

    def _stops(self, trk: motion.Track, rows: np.ndarray, vid: np.ndarray, t: np.ndarray,
               sx: np.ndarray, sy: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        p = self.p
        idx, _ = _gather(a, b)
        lengths = b - a
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
        width = len(str(rows.size))
        labels = np.char.zfill(np.arange(rows.size).astype(str), width).astype(object)
        sub = motion.Track(
            vehicle_ids=labels, offsets=offsets, t=trk.t[idx], x=trk.x[idx], y=trk.y[idx],
            lon=trk.lon[idx], lat=trk.lat[idx], fix_id=trk.fix_id[idx], crs=trk.crs,
            gaps=trk.gaps.iloc[0:0], max_gap=trk.max_gap)
        stops = motion.detect_stops(sub, max_diameter=p.stop_diameter_m,
                                    min_duration=p.min_dwell)
        if not len(stops):
            return
        q = pd.Index(labels).get_indexer(stops["vehicle_id"].to_numpy(dtype=object))
        s_ns = _ns(stops["start"])
        e_ns = _ns(stops["end"])
        overlap = (s_ns <= t[q] + p.window_ns) & (e_ns >= t[q] - p.window_ns)
        if not overlap.any():
            return
        st = stops.loc[overlap].copy()
        q = q[overlap]
        st["stop_m"] = np.hypot(st["x"].to_numpy() - sx[q], st["y"].to_numpy() - sy[q])
        st["_q"] = q
        st["vehicle_id"] = vid[q]
        start_iso = st["start"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(str)
        st["stop_id"] = st["vehicle_id"].astype(str) + "@" + start_iso
        st["_row"] = rows[q]
        best = st.sort_values(["_q", "stop_m", "duration_s"], ascending=[True, True, False]) \
            .drop_duplicates("_q")
        r = best["_row"].to_numpy()
        c = self.cols
        c["stop_id"][r] = best["stop_id"].to_numpy(dtype=object)
        c["stop_start"][r] = _ns(best["start"])
        c["stop_end"][r] = _ns(best["end"])
        c["stop_duration_s"][r] = best["duration_s"].to_numpy(dtype="float64")
        c["stop_m"][r] = best["stop_m"].to_numpy(dtype="float64")
        self.stops.append(st.drop(columns=["_q"]).rename(columns={"_row": "row"}))

    # -- results -----------------------------------------------------------------------------
    def evidence_columns(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, values in self.cols.items():
            if name in ("nearest_at", "gap_start", "gap_end", "stop_start", "stop_end"):
                out[name] = pd.to_datetime(np.where(values == _NAT, np.datetime64("NaT"),
                                                    values.astype("datetime64[ns]")), utc=True)
            else:
                out[name] = values
        return out

    def vehicle_months(self) -> pd.DataFrame:
        if not self.months:
            return pd.DataFrame({"vehicle_id": pd.Series([], dtype=object),
                                 "period": pd.Series([], dtype=object),
                                 "gps_km": pd.Series([], dtype="float64"),
                                 "n_fixes": pd.Series([], dtype=np.int64)})
        allm = pd.concat(self.months, ignore_index=True)
        agg = allm.groupby(["vehicle_id", "period"], sort=True).agg(
            gps_m=("gps_m", "sum"), n_fixes=("n_fixes", "sum")).reset_index()
        agg["gps_km"] = agg.pop("gps_m") / 1000.0
        return agg


def _fast_track(codes: np.ndarray, labels: pd.Index, t: np.ndarray, lon: np.ndarray,
                lat: np.ndarray, fix_id: np.ndarray, *, crs: pyproj.CRS | None,
                max_gap: pd.Timedelta, x: np.ndarray | None = None,
                y: np.ndarray | None = None) -> motion.Track:
    """A :class:`~trajectories.motion.Track` from clean fixes given as arrays.

    The same Track :func:`trajectories.motion.track_from_fixes` builds (vehicle ids sorted as
    text, fixes by vehicle and time, gaps), without the round trip through a DataFrame of
    text ids: the vehicle ids arrive as integer codes, and fixes already in order (as
    :func:`trajectories.fixes.clean_fixes` returns them) are not sorted again. ``x, y``:
    the fixes already projected to ``crs`` (else projected here).
    """
    n = t.shape[0]
    names = np.asarray(labels, dtype=object)
    if n and codes.min() < 0:
        msg = "fixes without a vehicle id reached the track; clean them first"
        raise ValidationError(msg)
    # the codes present, ascending (a count per label: O(n), no hashing)
    used = (np.flatnonzero(np.bincount(codes, minlength=len(names))) if n
            else np.empty(0, dtype=np.int64))
    rank = np.argsort(names[used].astype(str), kind="stable")
    vehicle_ids = names[used][rank].astype(str).astype(object)
    remap = np.full(len(names), -1, dtype=np.int64)
    remap[used[rank]] = np.arange(used.shape[0])
    k = remap[codes] if n else codes
    in_order = n < 2 or bool(_in_order(k, t))
    if not in_order:
        order = np.lexsort((t, k))
        k, t, lon, lat, fix_id = k[order], t[order], lon[order], lat[order], fix_id[order]
        if x is not None and y is not None:
            x, y = x[order], y[order]
        same = (k[1:] == k[:-1]) & (t[1:] == t[:-1])
        if same.any():
            msg = (f"{int(same.sum())} fixes share a time with another fix of the same vehicle;"
                   " clean the fixes with trajectories.fixes.clean_fixes first")
            raise ValidationError(msg)
    if crs is None:
        crs = (metric_crs_for((float(lon.min()), float(lat.min()), float(lon.max()),
                               float(lat.max()))) if n else pyproj.CRS.from_epsg(3857))
    if x is None or y is None:
        x, y = _project(crs, lon, lat) if n else (np.empty(0), np.empty(0))
    counts = np.bincount(k, minlength=vehicle_ids.shape[0]) if n else np.zeros(0, np.int64)
    offsets = np.zeros(vehicle_ids.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    gap_ns = int(pd.Timedelta(max_gap).value)
    t = np.ascontiguousarray(t)
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    # segment lengths, gap flags and cumulative distances in one pass (Track._derived)
    derived = (np.zeros(n), np.zeros(n, dtype=np.bool_), np.zeros(n), np.zeros(n))
    if n:
        motion._derive_kernel(t, x, y, offsets, np.int64(gap_ns), *derived)
    for arr in derived:
        arr.flags.writeable = False
    where = np.flatnonzero(derived[1])
    gaps = pd.DataFrame({
        "vehicle_id": pd.Series(vehicle_ids[k[where]], dtype=object),
        "start": pd.DatetimeIndex(t[where].view("datetime64[ns]")).tz_localize("UTC"),
        "end": pd.DatetimeIndex(t[where + 1].view("datetime64[ns]")).tz_localize("UTC"),
        "duration_s": (t[where + 1] - t[where]) / 1e9,
    })
    track = motion.Track(vehicle_ids=vehicle_ids, offsets=offsets, t=t, x=x, y=y,
                         lon=np.ascontiguousarray(lon), lat=np.ascontiguousarray(lat),
                         fix_id=np.ascontiguousarray(fix_id), crs=crs, gaps=gaps,
                         max_gap=pd.Timedelta(gap_ns, unit="ns"))
    track._cache[gap_ns] = derived
    return track


@numba.njit(cache=True, nogil=True)
def _span_per_code(codes, t, n):  # pragma: no cover - jit
    """Per code ``0..n-1``: the number of fixes, the earliest and the latest time (codes
    below 0 are skipped; int64 max / min where a code has no fix)."""
    count = np.zeros(n, dtype=np.int64)
    first = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    for i in range(codes.shape[0]):
        c = codes[i]
        if c < 0:
            continue
        count[c] += 1
        first[c] = min(first[c], t[i])
        last[c] = max(last[c], t[i])
    return count, first, last


@numba.njit(cache=True, nogil=True)
def _in_order(k, t):  # pragma: no cover - jit
    """True when the fixes are sorted by vehicle then strictly rising time."""
    for i in range(1, t.shape[0]):
        if k[i] < k[i - 1] or (k[i] == k[i - 1] and t[i] <= t[i - 1]):
            return False
    return True


@functools.lru_cache(maxsize=16)
def _transformer(source: pyproj.CRS, target: pyproj.CRS) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(source, target, always_xy=True)


_LOCAL = threading.local()


@functools.lru_cache(maxsize=16)
def _fast_crs(crs: pyproj.CRS) -> pyproj.CRS:
    """The same CRS with PROJ's faster transverse Mercator (``+approx``, Evenden/Snyder) for a
    UTM or Gauss-Krüger zone: within 3° of the central meridian it agrees with the exact
    algorithm to a few micrometres at half the cost. Other CRSs are returned unchanged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        text = crs.to_proj4() or ""
    if "+proj=tmerc" not in text and "+proj=utm" not in text:
        return crs
    try:
        return pyproj.CRS.from_proj4(text.replace(" +type=crs", "") + " +approx")
    except pyproj.exceptions.CRSError:  # pragma: no cover - defensive
        return crs


_D2R = 0.017453292519943296  # PROJ's DEG_TO_RAD


# the series constants of PROJ's tmerc.cpp (FC1 … FC8)
_FC1, _FC2, _FC3, _FC4 = 1.0, 0.5, 0.16666666666666666666, 0.08333333333333333333
_FC5, _FC6, _FC7, _FC8 = (0.05, 0.03333333333333333333, 0.02380952380952380952,
                          0.01785714285714285714)


@numba.njit(cache=True, nogil=True)
def _tmerc_kernel(lon, lat, x, y, p):  # pragma: no cover - jit
    """PROJ's approximate ellipsoidal transverse Mercator forward (``+proj=tmerc +approx``,
    Evenden/Snyder series), with the meridian arc from the 6th-order series in the third
    flattening (nanometre-exact); ``p`` holds the constants of :func:`_tmerc_params`."""
    lam0, k0, a, x0, y0, es, esp, ml0 = p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    c0, b1, b2, b3, b4, b5, b6 = p[8], p[9], p[10], p[11], p[12], p[13], p[14]
    for i in range(lon.shape[0]):
        phi = lat[i] * _D2R
        lam = lon[i] * _D2R - lam0
        if abs(lam) > np.pi:  # adjlon
            lam = lam - 2.0 * np.pi * np.floor((lam + np.pi) / (2.0 * np.pi))
        if not (abs(lam) <= 0.5 * np.pi and abs(phi) <= 0.5 * np.pi):
            x[i] = np.inf
            y[i] = np.inf
            continue
        sinphi = np.sin(phi)
        cosphi = np.cos(phi)
        t = sinphi / cosphi if abs(cosphi) > 1e-10 else 0.0
        t *= t
        al = cosphi * lam
        als = al * al
        al /= np.sqrt(1.0 - es * sinphi * sinphi)
        n = esp * cosphi * cosphi
        xx = k0 * al * (_FC1 + _FC3 * als * (
            1.0 - t + n + _FC5 * als * (
                5.0 + t * (t - 18.0) + n * (14.0 - 58.0 * t)
                + _FC7 * als * (61.0 + t * (t * (179.0 - t) - 479.0)))))
        # meridian arc / a: c0 (phi + sum b_k sin 2k phi), Clenshaw summation (as PROJ)
        xc = 2.0 * (cosphi - sinphi) * (cosphi + sinphi)
        u0 = 0.0
        u1 = 0.0
        for b in (b6, b5, b4, b3, b2, b1):
            u0, u1 = xc * u0 - u1 + b, u0
        ml = c0 * (phi + 2.0 * sinphi * cosphi * u0)
        yy = k0 * (ml - ml0 + sinphi * al * lam * _FC2 * (1.0 + _FC4 * als * (
            5.0 - t + n * (9.0 + 4.0 * n) + _FC6 * als * (
                61.0 + t * (t - 58.0) + n * (270.0 - 330.0 * t)
                + _FC8 * als * (1385.0 + t * (t * (543.0 - t) - 3111.0))))))
        x[i] = a * xx + x0
        y[i] = a * yy + y0


@functools.lru_cache(maxsize=16)
def _tmerc_params(crs: pyproj.CRS) -> np.ndarray | None:
    """The constants of :func:`_tmerc_kernel` for a transverse Mercator (UTM, Gauss-Krüger)
    ``crs`` reached from WGS-84 without a datum shift, or None (then PROJ projects).

    The kernel is checked against PROJ (``+approx``) on a grid of ±10° around the central
    meridian and refused unless it agrees to 1 µm.
    """
    try:  # a transformer of its own (this may run in the audit's worker thread)
        tr = pyproj.Transformer.from_crs(_WGS84, _fast_crs(crs), always_xy=True)
        steps = [s.strip() for s in tr.definition.split("step")[1:]]
        if (len(steps) != 2 or steps[0] != "proj=unitconvert xy_in=deg xy_out=rad"
                or not steps[1].startswith(("proj=tmerc ", "proj=utm "))
                or " approx" not in f" {steps[1]}"):
            return None
        op = crs.coordinate_operation
        if op is None or op.method_name != "Transverse Mercator":
            return None
        params = {p.name: p for p in op.params}
        lat0 = params["Latitude of natural origin"]
        lon0 = params["Longitude of natural origin"]
        k0 = params["Scale factor at natural origin"]
        fe = params["False easting"]
        fn = params["False northing"]
        if any(p.unit_name != "degree" for p in (lat0, lon0)) or any(
                p.unit_name != "metre" for p in (fe, fn)):
            return None
        if any(ax.unit_name != "metre" for ax in crs.axis_info):
            return None
        ell = crs.ellipsoid
        a = float(ell.semi_major_metre)
        b = float(ell.semi_minor_metre)
    except (KeyError, AttributeError, pyproj.exceptions.ProjError):
        return None
    es = 1.0 - (b / a) ** 2
    f = (a - b) / a
    n = f / (2.0 - f)
    n2 = n * n
    # the series of PROJ's pj_enfn (rectifying radius, geographic -> rectifying latitude),
    # evaluated in the same order
    c0 = (((1.0 / 256.0 * n2 + 1.0 / 64.0) * n2 + 1.0 / 4.0) * n2 + 1.0) / (1.0 + n)
    poly = ((-3.0 / 2.0, 9.0 / 16.0, -3.0 / 32.0), (15.0 / 16.0, -15.0 / 32.0, 135.0 / 2048.0),
            (-35.0 / 48.0, 105.0 / 256.0), (315.0 / 512.0, -189.0 / 512.0),
            (-693.0 / 1280.0,), (1001.0 / 2048.0,))
    bk = []
    d = n
    for coeffs in poly:
        v = coeffs[-1]
        for c in coeffs[-2::-1]:
            v = v * n2 + c
        bk.append(d * v)
        d *= n
    phi0 = float(lat0.value) * _D2R
    ml0 = c0 * (phi0 + sum(c * np.sin(2 * (k + 1) * phi0) for k, c in enumerate(bk)))  # 0 at 0
    p = np.array([float(lon0.value) * _D2R, float(k0.value), a, float(fe.value),
                  float(fn.value), es, es / (1.0 - es), ml0, c0, *bk], dtype=np.float64)
    # check against PROJ
    glon, glat = np.meshgrid(float(lon0.value) + np.linspace(-10.0, 10.0, 41),
                             np.linspace(-80.0, 84.0, 83))
    glon, glat = glon.ravel(), glat.ravel()
    ex, ey = tr.transform(glon, glat)
    ox, oy = np.empty(glon.shape[0]), np.empty(glon.shape[0])
    _tmerc_kernel(glon, glat, ox, oy, p)
    if not (np.abs(ox - ex).max() < 1e-6 and np.abs(oy - ey).max() < 1e-6):
        logger.debug("%s: the transverse Mercator kernel disagrees with PROJ; PROJ used",
                     crs.name)
        return None
    return p


def _project(crs: pyproj.CRS, lon: np.ndarray, lat: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """WGS-84 to ``crs`` for many points: :func:`_tmerc_kernel` for a transverse Mercator
    zone (UTM, Gauss-Krüger), else PROJ; big arrays in two threads (both release the GIL;
    each thread has its own transformer)."""
    n = lon.shape[0]
    params = _tmerc_params(crs) if n else None
    lon = np.ascontiguousarray(lon, dtype=np.float64)
    lat = np.ascontiguousarray(lat, dtype=np.float64)
    x = np.empty(n)
    y = np.empty(n)

    def work(bounds: tuple[int, int]) -> None:
        a, b = bounds
        if params is not None:
            _tmerc_kernel(lon[a:b], lat[a:b], x[a:b], y[a:b], params)
            return
        cache = getattr(_LOCAL, "transformers", None)
        if cache is None:
            cache = _LOCAL.transformers = {}
        key = crs.to_wkt()
        if key not in cache:
            cache[key] = pyproj.Transformer.from_crs(_WGS84, _fast_crs(crs), always_xy=True)
        xa, ya = cache[key].transform(lon[a:b], lat[a:b])
        x[a:b] = xa
        y[a:b] = ya

    if n < 1_000_000 or threading.current_thread() is not threading.main_thread():
        work((0, n))  # small, or already off the main thread (the audit's pipeline)
        return x, y
    half = n // 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(work, [(0, half), (half, n)]))
    return x, y


def _to_lonlat(crs: pyproj.CRS, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tr = _transformer(crs, _WGS84)
    lon, lat = tr.transform(np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
    return np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64")


def _from_lonlat(crs: pyproj.CRS, lon: np.ndarray, lat: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    tr = _transformer(_WGS84, crs)
    x, y = tr.transform(np.asarray(lon, dtype="float64"), np.asarray(lat, dtype="float64"))
    return np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64")


def _month_edges(times: pd.Series, extra: Sequence[pd.Timestamp], tz: str
                 ) -> tuple[np.ndarray, np.ndarray]:
    """UTC ns of the local month starts covering ``times`` (± a year of margin) and labels."""
    values = [v for v in [*pd.Series(times).dropna().tolist(), *extra] if not pd.isna(v)]
    if values:
        lo, hi = min(values), max(values)
    else:
        lo = hi = pd.Timestamp("2000-01-01", tz="UTC")
    start = (pd.Timestamp(lo).tz_convert(tz).tz_localize(None).to_period("M").start_time
             - pd.DateOffset(years=2))
    end = (pd.Timestamp(hi).tz_convert(tz).tz_localize(None).to_period("M").start_time
           + pd.DateOffset(years=2))
    local = pd.date_range(start, end, freq="MS")
    utc = local.tz_localize(tz, ambiguous=False, nonexistent="shift_forward").tz_convert("UTC")
    return utc.as_unit("ns").asi8, np.asarray(local.strftime("%Y-%m"), dtype=object)


# ---------------------------------------------------------------------------------------------
# Cleaning one partition of fixes
# ---------------------------------------------------------------------------------------------


def _kept_fixes(raw: pd.DataFrame, arrays: _FixArrays, perm: np.ndarray, *,
                identity: bool = False) -> pd.DataFrame:
    """The kept fixes of ``raw`` (``vehicle_id, t, lon, lat, fix_id, _row``) for
    :meth:`_Motion.feed`, straight from the cleaning arrays (no frame of kept rows, no per-fix
    id strings): the ids as a categorical whose labels are the text ids (stripped; blank =
    missing, as :func:`_vehicle_codes`), ``fix_id`` from a ``fix_id`` column, else ``_row``."""
    n = arrays.t.shape[0]
    # strictly rising and n long: the identity (nothing dropped, already in order), no copies
    identity = identity or (perm.shape[0] == n and bool((perm[1:] > perm[:-1]).all()))

    def take(values: np.ndarray) -> np.ndarray:
        return values if identity else values[perm]

    text = _ids(pd.Series(arrays.labels, dtype=object))
    lcodes, labels = pd.factorize(text.to_numpy(dtype=object), use_na_sentinel=True)
    kept_codes = take(arrays.codes)
    lcodes = np.asarray(lcodes, dtype=np.int64)
    if not len(labels) or np.array_equal(lcodes, np.arange(lcodes.shape[0])):
        codes = kept_codes  # every label stands as it is: the codes too
    else:
        codes = np.where(kept_codes >= 0, lcodes[np.maximum(kept_codes, 0)], -1)
    rows = take(arrays.rows)
    if "fix_id" in raw.columns:
        fix_id = take(pd.to_numeric(raw["fix_id"], errors="coerce").fillna(-1).to_numpy(
            np.int64))
    else:
        fix_id = rows
    names = pd.Index(pd.Series(np.asarray(labels, dtype=object)).astype(str).to_numpy(
        dtype=object))
    return pd.DataFrame({"vehicle_id": pd.Categorical.from_codes(codes, categories=names),
                         "t": take(arrays.t), "lon": take(arrays.lon),
                         "lat": take(arrays.lat), "fix_id": fix_id, "_row": rows}, copy=False)


def _vehicle_codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    """Codes (-1 missing) and text labels of vehicle ids; one hash pass at most."""
    series = pd.Series(values).reset_index(drop=True)
    if isinstance(series.dtype, pd.CategoricalDtype):  # the codes as they are (no hashing)
        codes = np.asarray(series.array.codes, dtype=np.int64)
        uniques = np.asarray(series.array.categories, dtype=object)
    else:
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = _ids(pd.Series(np.asarray(uniques, dtype=object)))
    if labels.isna().any() or labels.duplicated().any():  # "7" and 7.0, or blank ids
        codes2, labels2 = pd.factorize(labels.to_numpy(dtype=object), use_na_sentinel=True)
        codes = np.where(codes >= 0, codes2[np.maximum(codes, 0)], -1)
        labels = pd.Series(labels2)
    return codes.astype(np.int64), pd.Index(labels.astype(str).to_numpy(dtype=object))


def _reject_fixes(books: _Books, inp: _Input, kept_of: Callable[[], pd.DataFrame],
                  part: pd.DataFrame, vehicles: set[str] | None,
                  last_t: dict[str, int]) -> np.ndarray:
    """Join rejects of clean fixes: unknown vehicles, fixes before a previous partition's.

    ``kept_of`` builds the kept fixes as :func:`~trajectories.fixes.clean_fixes` returns them
    (the rows the ledger records), only when a fix is rejected here.
    """
    kept: pd.DataFrame | None = None
    cat = part["vehicle_id"].array
    codes = np.asarray(cat.codes, dtype=np.int64)
    labels = np.asarray(cat.categories, dtype=object)
    t = part["t"].to_numpy()
    bad = np.zeros(len(part), dtype=bool)
    if vehicles is not None and len(labels):
        known = np.array([lab in vehicles for lab in labels], dtype=bool)  # per vehicle
        unknown = ((codes >= 0) & ~known[np.maximum(codes, 0)] if not known.all()
                   else np.zeros(len(part), dtype=bool))
        if unknown.any():
            why = np.full(len(part), None, dtype=object)
            why[unknown] = ("vehicle '" + labels[codes[unknown]].astype(str)
                            + "' is not in the vehicle table")
            kept = kept_of()
            books.reject(inp, kept, unknown, why, "vehicle_id")
            bad |= unknown
    if last_t and len(labels):
        prev_l = np.array([last_t.get(str(lab), _NAT) for lab in labels], dtype=np.int64)
        if (prev_l == _NAT).all():  # no vehicle seen in an earlier partition
            return ~bad
        prev = prev_l[np.maximum(codes, 0)]
        early = ~bad & (codes >= 0) & (prev != _NAT) & (t <= prev)
        if early.any():
            books.reject(inp, kept if kept is not None else kept_of(), early,
                         "out of order: earlier than this vehicle's fixes in a previous "
                         "partition (each vehicle's partitions must come in time order)",
                         "vehicle_id")
        bad |= early
    return ~bad


# ---------------------------------------------------------------------------------------------
# The audit
# ---------------------------------------------------------------------------------------------


def _is_partitions(obj: Any) -> bool:
    return (obj is not None and not isinstance(obj, (pd.DataFrame, ReadResult, motion.Track,
                                                     str, bytes, os.PathLike))
            and isinstance(obj, Iterable))


def _select_rules(rules: Sequence[str] | None) -> list[Rule]:
    if rules is None:
        return [REGISTRY.get(code) for code in FUEL_RULES]
    chosen = REGISTRY.select(domain="fuel", codes=list(rules))
    return sorted(chosen, key=lambda r: FUEL_RULES.index(r.code) if r.code in FUEL_RULES
                  else len(FUEL_RULES))


def audit(
    fixes: Any,
    transactions: Any,
    stations: Any,
    vehicles: Any,
    cards: Any,
    *,
    settings: Settings | None = None,
    calendar: WorkCalendar | None = None,
    rules: Sequence[str] | None = None,
    period: tuple[Any, Any] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    thresholds: Mapping[str, Mapping[str, Any]] | None = None,
    tz: str | None = None,
    station_coord_system: str = "wgs84",
    crs: Any = None,
    max_speed_kmh: float = 250.0,
    fixes_order: Literal["file", "time"] = "file",
    run_id: str | None = None,
) -> AuditResult:
    """Audit fuel-card transactions against GPS fixes.

    Parameters
    ----------
    fixes : DataFrame, ReadResult, Track, iterable of DataFrames, or None
        ``vehicle_id, time, lon, lat`` (or point geometry) with ``_row``. An iterable is
        streamed partition by partition (each vehicle's partitions in time order). A
        :class:`~trajectories.motion.Track` is used as it is (already clean). ``None``: no GPS
        input; the rules that need a track are not run (their transactions count as not
        checkable). An empty frame or iterable: a period without fixes, every transaction
        gets ``fuel.no_gps_coverage``.
    transactions, stations, vehicles, cards : DataFrame or ReadResult
        As :func:`geosup.io.read_table` returns them. ``stations`` may be ``None`` (no
        coordinates: the station rules are not checkable); ``cards`` may be ``None`` when the
        transactions carry ``vehicle_id``; ``vehicles`` may be ``None`` (no vehicle
        attributes, no check of unknown vehicles).
    settings : Settings, optional
        Thresholds (``[rules."fuel.…"]``), ``timezone`` and ``[calendar]``.
    calendar : WorkCalendar, optional
        Default ``WorkCalendar.from_settings(settings)`` (China's holidays).
    rules : sequence of str, optional
        Rule codes to run (``"fuel.*"`` patterns allowed); default all fuel rules.
    period : (start, end), optional
        Only transactions in ``[start, end)`` are audited; the others are rejected with the
        reason "outside the audit period".
    progress : callable, optional
        Called as ``progress(partitions_done, total_or_None)``.
    thresholds : mapping, optional
        ``{rule code: {threshold: value}}`` on top of ``settings``.
    tz : str, optional
        Local zone for periods, working hours and texts; default ``settings.timezone``.
    station_coord_system : str, default "wgs84"
        The system of the stations' ``lon``/``lat`` when they were not converted by io.
    crs : CRS-like, optional
        The metric CRS of the motion work; default the one fitting the stations (else the
        first partition of fixes).
    max_speed_kmh : float, default 250
        Impossible jumps: a fix reached faster than this is rejected
        (:func:`trajectories.fixes.clean_fixes`).
    fixes_order : {"file", "time"}
        Whether the row order of each fixes frame is the reporting order (out-of-order rows
        are rejected) or carries no meaning (rows are sorted by time).
    run_id : str, optional
        Recorded in the alerts.

    Returns
    -------
    AuditResult

    Warns
    -----
    StationOffsetWarning
        Most near-misses sit at the local GCJ-02 shift: stations declared as WGS-84 are
        probably GCJ-02.
    """
    settings = settings or Settings()
    tz = tz or str(settings.get("timezone", "Asia/Shanghai"))
    calendar = calendar or WorkCalendar.from_settings(settings)
    selected = _select_rules(rules)
    thr: dict[str, dict[str, Any]] = {}
    for item in [REGISTRY.get(code) for code in FUEL_RULES]:
        thr[item.code] = resolve_thresholds(item, settings, (thresholds or {}).get(item.code))
    books = _Books()
    result_warnings: list[str] = []

    # ---- vehicles -------------------------------------------------------------------------
    v_in = books.take(vehicles, "vehicles")
    vehicle_table: pd.DataFrame | None = None
    if v_in.frame is not None:
        _require(v_in, ["vehicle_id"])
        vf = v_in.frame
        vid = _ids(vf["vehicle_id"])
        keep = _dedupe(books, v_in, vf, vid, "vehicle id", "vehicle_id")
        vehicle_table = pd.DataFrame({
            "vehicle_id": vid[keep].to_numpy(dtype=object),
            "v_unit": _text(vf, "unit")[keep].to_numpy(dtype=object),
            "fuel_type": _text(vf, "fuel_type")[keep].to_numpy(dtype=object),
            "tank_l": _num(vf, "tank_l")[keep],
            "rated_l_per_100km": _num(vf, "rated_l_per_100km")[keep],
            "status": _text(vf, "status")[keep].to_numpy(dtype=object),
            "active_from": _times(vf, "active_from")[keep].to_numpy(),
            "active_to": _times(vf, "active_to")[keep].to_numpy(),
            "plate": _text(vf, "plate")[keep].to_numpy(dtype=object),
        })
    known_vehicles = set(vehicle_table["vehicle_id"]) if vehicle_table is not None else None

    # ---- cards ----------------------------------------------------------------------------
    c_in = books.take(cards, "cards")
    card_table: pd.DataFrame | None = None
    bad_cards: dict[str, str] = {}
    if c_in.frame is not None:
        _require(c_in, ["card_id", "vehicle_id"])
        cf = c_in.frame
        cid = _ids(cf["card_id"])
        keep = _dedupe(books, c_in, cf, cid, "card id", "card_id")
        cvid = _ids(cf["vehicle_id"])
        unbound = keep & cvid.isna().to_numpy()
        books.reject(c_in, cf, unbound, "card not bound to a vehicle (no vehicle_id)", "card_id")
        unknown = keep & ~unbound
        if known_vehicles is not None:
            unknown &= ~cvid.isin(known_vehicles).to_numpy()
        else:
            unknown &= False
        books.reject(c_in, cf, unknown, "card bound to vehicle " + (
            "'" + cvid.astype(str) + "'").to_numpy(dtype=object)
            + " which is not in the vehicle table", "card_id")
        for mask, why in ((unbound, "is not bound to a vehicle"),
                          (unknown, "is bound to a vehicle not in the vehicle table")):
            for c in cid[mask].tolist():  # rejected cards only
                bad_cards[c] = why
        ok = keep & ~unbound & ~unknown
        card_table = pd.DataFrame({
            "card_id": cid[ok].to_numpy(dtype=object),
            "c_vehicle_id": cvid[ok].to_numpy(dtype=object),
            "c_unit": _text(cf, "unit")[ok].to_numpy(dtype=object),
            "holder": _text(cf, "holder")[ok].to_numpy(dtype=object),
        })

    # ---- stations -------------------------------------------------------------------------
    s_in = books.take(stations, "stations")
    station_table: pd.DataFrame | None = None
    no_coords: set[str] = set()
    if s_in.frame is not None:
        _require(s_in, ["station_id"])
        sf = s_in.frame
        sid = _ids(sf["station_id"])
        keep = _dedupe(books, s_in, sf, sid, "station id", "station_id")
        if "lon" in sf.columns and "lat" in sf.columns:
            slon, slat = _num(sf, "lon"), _num(sf, "lat")
        elif isinstance(sf, gpd.GeoDataFrame) and sf.geometry.name in sf.columns:
            geo = sf.geometry
            if geo.crs is None:
                msg = "the stations have geometry but no CRS; declare one (e.g. EPSG:4326)"
                raise SchemaError(msg)
            geo = geo.to_crs(_WGS84)
            arr = geo.to_numpy()
            is_pt = shapely.get_type_id(arr) == 0
            slon = np.where(is_pt, shapely.get_x(arr), np.nan)
            slat = np.where(is_pt, shapely.get_y(arr), np.nan)
        else:
            slon = slat = np.full(len(sf), np.nan)
        system = normalize_coord_system(station_coord_system)
        if system in ("gcj02", "bd09"):
            slon, slat = to_wgs84(slon, slat, system=system)
        nocoord = keep & ~(np.isfinite(slon) & np.isfinite(slat))
        books.reject(s_in, sf, nocoord, "station has no coordinates", "station_id")
        no_coords = set(sid[nocoord].tolist())
        ok = keep & ~nocoord
        station_table = pd.DataFrame({
            "station_id": sid[ok].to_numpy(dtype=object),
            "station_name": _text(sf, "name")[ok].to_numpy(dtype=object),
            "station_lon": slon[ok], "station_lat": slat[ok]})

    # ---- transactions ---------------------------------------------------------------------
    t_in = books.take(transactions, "transactions")
    if t_in.frame is None:
        msg = "the transactions input is required"
        raise ValidationError(msg)
    _require(t_in, ["tx_id", "time"] + (["card_id"] if card_table is not None
                                        else ["vehicle_id"]))
    tf = t_in.frame
    txid = _ids(tf["tx_id"])
    keep = _dedupe(books, t_in, tf, txid, "transaction id", "tx_id")
    ttime = _times(tf, "time")
    notime = keep & ttime.isna().to_numpy()
    books.reject(t_in, tf, notime, "missing or unparseable time", "tx_id")
    keep &= ~notime
    if period is not None:
        p0 = pd.Timestamp(period[0])
        p1 = pd.Timestamp(period[1])
        p0 = p0.tz_localize(tz) if p0.tzinfo is None else p0
        p1 = p1.tz_localize(tz) if p1.tzinfo is None else p1
        outside = keep & ~((ttime >= p0) & (ttime < p1)).to_numpy()
        books.reject(t_in, tf, outside, f"outside the audit period {p0} – {p1}", "tx_id")
        keep &= ~outside
    tcard = _ids(tf["card_id"]) if "card_id" in tf.columns else pd.Series(
        [None] * len(tf), dtype=object)
    if card_table is not None:
        known_card = tcard.isin(set(card_table["card_id"])).to_numpy()
        bad_card = tcard.map(bad_cards)
        why = np.where(bad_card.notna().to_numpy(),
                       ("card '" + tcard.astype(str) + "' " + bad_card.astype(str)).to_numpy(
                           dtype=object),
                       np.where(tcard.isna().to_numpy(), "missing card id",
                                ("unknown card '" + tcard.astype(str) + "'").to_numpy(
                                    dtype=object)))
        m = keep & ~known_card
        books.reject(t_in, tf, m, why, "tx_id")
        keep &= ~m
        tvid = tcard.map(card_table.set_index("card_id")["c_vehicle_id"])
    else:
        tvid = _ids(tf["vehicle_id"])
        m = keep & tvid.isna().to_numpy()
        books.reject(t_in, tf, m, "missing vehicle id (and no cards input)", "tx_id")
        keep &= ~m
        if known_vehicles is not None:
            m = keep & ~tvid.isin(known_vehicles).to_numpy()
            books.reject(t_in, tf, m, ("vehicle '" + tvid.astype(str)
                                       + "' is not in the vehicle table").to_numpy(dtype=object),
                         "tx_id")
            keep &= ~m
    tsid = _ids(tf["station_id"]) if "station_id" in tf.columns else pd.Series(
        [None] * len(tf), dtype=object)
    if station_table is not None:
        known_st = tsid.isin(set(station_table["station_id"])).to_numpy()
        nc = tsid.isin(no_coords).to_numpy()
        why = np.where(nc, ("station '" + tsid.astype(str) + "' has no coordinates").to_numpy(
            dtype=object), np.where(tsid.isna().to_numpy(), "missing station id",
                                    ("unknown station '" + tsid.astype(str) + "'").to_numpy(
                                        dtype=object)))
        m = keep & ~known_st
        books.reject(t_in, tf, m, why, "tx_id")
        keep &= ~m
    ev = pd.DataFrame({
        "tx_id": txid[keep].to_numpy(dtype=object),
        "card_id": (tcard[keep].astype(object).where(tcard[keep].notna(), "")
                    .to_numpy(dtype=object)),
        "vehicle_id": tvid[keep].to_numpy(dtype=object),
        "time": ttime[keep].reset_index(drop=True),
        "station_id": tsid[keep].astype(object).where(tsid[keep].notna(), "").to_numpy(
            dtype=object),
        "litres": _num(tf, "litres")[keep], "amount": _num(tf, "amount")[keep],
        "product": _text(tf, "product")[keep].to_numpy(dtype=object),
        "odometer_km": _num(tf, "odometer_km")[keep],
        "tx_unit": _text(tf, "unit")[keep].to_numpy(dtype=object),
    })
    if card_table is not None:
        ev = ev.merge(card_table[["card_id", "c_unit"]], on="card_id", how="left")
    else:
        ev["c_unit"] = ""
    if vehicle_table is not None:
        ev = ev.merge(vehicle_table, on="vehicle_id", how="left")
    else:
        ev["v_unit"] = ""
    if station_table is not None:
        ev = ev.merge(station_table, on="station_id", how="left")
    unit = ev["c_unit"].fillna("").astype(str)
    unit = unit.where(unit != "", ev["v_unit"].fillna("").astype(str))
    unit = unit.where(unit != "", ev["tx_unit"].fillna("").astype(str))
    ev["unit"] = unit.to_numpy(dtype=object)
    ev = ev.drop(columns=["c_unit", "v_unit", "tx_unit"])

    # ---- motion evidence ------------------------------------------------------------------
    away = thr["fuel.away_from_station"]
    nostop = thr["fuel.no_stop_at_station"]
    window = pd.Timedelta(minutes=float(away["window_min"]))
    max_gap = pd.Timedelta(minutes=float(thr["fuel.no_gps_coverage"]["max_gap_min"]))
    has_stations = "station_lon" in ev.columns
    if crs is not None:
        metric = pyproj.CRS.from_user_input(crs)
    elif station_table is not None and len(station_table):
        metric = metric_crs_for((float(station_table["station_lon"].min()),
                                 float(station_table["station_lat"].min()),
                                 float(station_table["station_lon"].max()),
                                 float(station_table["station_lat"].max())))
    else:
        metric = None
    gps = fixes is not None
    f_in_track: motion.Track | None = None
    stops = pd.DataFrame()
    vehicle_months = None
    if gps:
        if metric is None and isinstance(fixes, motion.Track):
            metric = fixes.crs
        if has_stations and metric is not None:
            sx, sy = _from_lonlat(metric, ev["station_lon"].to_numpy(),
                                  ev["station_lat"].to_numpy())
        else:
            sx = sy = np.full(len(ev), np.nan)
        edges, labels = _month_edges(ev["time"], [], tz)
        params = _Params(window_ns=int(window.value), context_ns=int(STOP_CONTEXT.value),
                         max_gap=max_gap, stop_diameter_m=float(nostop["stop_diameter_m"]),
                         min_dwell=pd.Timedelta(minutes=float(nostop["min_dwell_min"])),
                         crs=metric, month_edges=edges, month_labels=labels)
        streaming = _is_partitions(fixes)
        mo = _Motion(ev.assign(_sx=sx, _sy=sy), params, keep_track=not streaming)
        if isinstance(fixes, motion.Track):
            f_in_track = fixes
            books.rows_in["fixes"] += fixes.n_fixes
            frame = pd.DataFrame({"vehicle_id": fixes.vehicle_of_fix(), "t": fixes.t,
                                  "lon": fixes.lon, "lat": fixes.lat, "fix_id": fixes.fix_id})
            frame["vehicle_id"] = fixes.vehicle_ids[frame["vehicle_id"].to_numpy()]
            if known_vehicles is not None:
                unknown = ~frame["vehicle_id"].isin(known_vehicles).to_numpy()
                books.reject("fixes", frame.assign(_row=frame["fix_id"]), unknown,
                             "vehicle " + ("'" + frame["vehicle_id"].astype(str)).to_numpy(
                                 dtype=object) + "' is not in the vehicle table", "vehicle_id")
                frame = frame.loc[~unknown]
            mo.feed(frame)
            if progress is not None:
                progress(1, 1)
        else:
            parts = fixes if streaming else [fixes]
            total = len(parts) if hasattr(parts, "__len__") else None
            running = 0
            last_seen: dict[str, int] = {}

            def prepare(part: Any) -> dict[str, Any]:
                """Clean one partition, reject the fixes of unknown vehicles and project the
                rest (in the pipeline's thread, one partition after the other: the ledger and
                the counts of the fixes are only written here, in partition order)."""
                nonlocal running
                inp = books.take(part, "fixes")
                assert inp.frame is not None
                raw = inp.frame
                if "_row" not in raw.columns:
                    raw = raw.assign(_row=np.arange(running + 1, running + len(raw) + 1))
                running += len(raw)
                arrays, cleaned = _clean_partition(raw, max_speed_kmh=max_speed_kmh,
                                                   max_gap=max_gap, source=inp.source,
                                                   order=fixes_order, ledger=books.ledger)
                books.rejected["fixes"] += cleaned.counts["rows_rejected"]
                frame = _kept_fixes(raw, arrays, cleaned.perm, identity=cleaned.identity)
                ok = _reject_fixes(books, inp,
                                   functools.partial(_kept_frame, raw, arrays, cleaned.perm),
                                   frame, known_vehicles, last_seen if streaming else {})
                if not ok.all():
                    frame = frame.loc[ok].reset_index(drop=True)
                if len(frame):
                    codes = np.asarray(frame["vehicle_id"].array.codes, dtype=np.int64)
                    names = np.asarray(frame["vehicle_id"].array.categories, dtype=object)
                    count, _, latest = _span_per_code(
                        codes, frame["t"].to_numpy(dtype=np.int64), len(names))
                    seen = np.flatnonzero(count)  # one entry per vehicle
                    last_seen.update({str(names[j]): int(latest[j]) for j in seen})
                cat = frame["vehicle_id"].array  # text ids, distinct (see _kept_fixes)
                lon = frame["lon"].to_numpy(dtype="float64")
                lat = frame["lat"].to_numpy(dtype="float64")
                return {"codes": np.asarray(cat.codes, dtype=np.int64),
                        "labels": np.asarray(cat.categories, dtype=object),
                        "t": frame["t"].to_numpy(dtype=np.int64), "lon": lon, "lat": lat,
                        "fix_id": frame["fix_id"].to_numpy(dtype=np.int64),
                        "xy": (_project(metric, lon, lat) if metric is not None and len(frame)
                               else None)}

            # a two-stage pipeline: partition i + 1 is cleaned and projected in a thread
            # while partition i is measured here (the parts are pulled in this thread)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit_fixes") as pool:
                todo = iter(parts)
                end = object()
                nxt = next(todo, end)
                pending = pool.submit(prepare, nxt) if nxt is not end else None
                i = 0
                while pending is not None:
                    nxt = next(todo, end)
                    arrays = pending.result()
                    pending = pool.submit(prepare, nxt) if nxt is not end else None
                    mo.feed_arrays(**arrays)
                    i += 1
                    if progress is not None:
                        progress(i, total)
                    del arrays
        mo.finish()
        for name, values in mo.evidence_columns().items():
            ev[name] = values
        ev["gps"] = True
        vehicle_months = mo.vehicle_months()
        if mo.stops:
            stops = pd.concat(mo.stops, ignore_index=True)
            stops.insert(0, "tx_id", ev["tx_id"].to_numpy(dtype=object)[stops["row"]])
            stops = stops.drop(columns=["row"])
        if mo.track is not None:  # the returned track keeps its segment lengths, not the
            mo.track._cache.clear()  # cumulative sums the measurements needed
        track_out = mo.track if f_in_track is None else f_in_track
        segments = pd.concat(mo.segments, ignore_index=True) if mo.segments else None
    else:
        track_out = None
        segments = None
        result_warnings.append("no GPS fixes given: the rules that need a track were not run")
    ev = prepare_evidence(ev, tz=tz)

    # ---- GCJ-02 declared as WGS-84? --------------------------------------------------------
    gcj = False
    if gps and has_stations:
        gcj, text = _gcj_check(ev, metric or (track_out.crs if track_out is not None else None),
                               float(away["radius_m"]))
        if gcj:
            warnings.warn(text, StationOffsetWarning, stacklevel=2)
            result_warnings.append(text)
            logger.warning(text)

    # ---- rules ----------------------------------------------------------------------------
    context = FuelContext(tz=tz, calendar=calendar, vehicle_months=vehicle_months,
                          window_min=float(away["window_min"]),
                          radius_m=float(away["radius_m"]), gcj_suspected=gcj)
    hits: list[gpd.GeoDataFrame] = []
    checks = []
    for item in selected:
        if item.code in TRACK_RULES and not gps:
            checks.append({"rule": item.code, "ran": False, "checked": 0,
                           "not_checkable": len(ev), "alerts": 0})
            continue
        h = item(ev, context=context, **thr[item.code])
        c = h.attrs.get("checks", {"checked": 0, "not_checkable": 0})
        checks.append({"rule": item.code, "ran": True, "checked": c["checked"],
                       "not_checkable": c["not_checkable"], "alerts": len(h)})
        if len(h):
            hits.append(h)
    if hits:
        allhits = gpd.GeoDataFrame(pd.concat(hits, ignore_index=True), geometry="geometry",
                                   crs=4326)
        if segments is not None:
            allhits = _with_segments(allhits, ev, segments)
        alerts = make_alerts(allhits[[*HIT_COLUMNS]], run_id=run_id)
    else:
        allhits = None
        alerts = empty_alerts()
    cards_summary, units_summary = _summaries(ev, allhits, card_table)
    counts = books.counts()
    for name, cnt in counts.items():
        if cnt["rows_in"] != cnt["rows_used"] + cnt["rows_rejected"]:  # pragma: no cover
            msg = f"{name}: rows in != used + rejected"
            raise AssertionError(msg)
    return AuditResult(
        alerts=alerts, rejects=books.rejects(), counts=counts, cards=cards_summary,
        units=units_summary, track=track_out, stops=stops, evidence=ev,
        checks=pd.DataFrame(checks, columns=["rule", "ran", "checked", "not_checkable",
                                             "alerts"]),
        thresholds={r.code: thr[r.code] for r in selected}, warnings=result_warnings)


def _gcj_check(ev: pd.DataFrame, crs: pyproj.CRS | None, radius_m: float) -> tuple[bool, str]:
    """Do most near-misses sit at the local GCJ-02 shift? (see the module docstring)"""
    d = ev["nearest_m"].to_numpy(dtype="float64")
    lon = ev["station_lon"].to_numpy(dtype="float64")
    lat = ev["station_lat"].to_numpy(dtype="float64")
    plon = ev["pos_lon"].to_numpy(dtype="float64")
    plat = ev["pos_lat"].to_numpy(dtype="float64")
    near = (ev["covered"].to_numpy(dtype=bool) & (d >= NEAR_MISS_M[0]) & (d <= NEAR_MISS_M[1])
            & np.isfinite(plon) & np.isfinite(lon))
    n_near = int(near.sum())
    if n_near < MIN_NEAR_MISSES or crs is None:
        return False, ""
    inside = near & ~out_of_china(lon, lat)
    if not inside.any():
        return False, ""
    glon, glat = wgs84_to_gcj02(lon[inside], lat[inside])
    sx, sy = _from_lonlat(crs, lon[inside], lat[inside])
    gx, gy = _from_lonlat(crs, glon, glat)
    px, py = _from_lonlat(crs, plon[inside], plat[inside])
    shift_x, shift_y = gx - sx, gy - sy
    off_x, off_y = sx - px, sy - py
    shift = np.hypot(shift_x, shift_y)
    miss = np.hypot(off_x - shift_x, off_y - shift_y)
    at_shift = miss <= np.maximum(100.0, 0.5 * shift)
    share = float(at_shift.sum()) / n_near
    if share <= 0.5:
        return False, ""
    text = (f"{int(at_shift.sum())} of {n_near} near-misses (nearest approach "
            f"{NEAR_MISS_M[0]:g}–{NEAR_MISS_M[1]:g} m) sit at the local GCJ-02 offset "
            f"(median {float(np.median(shift[at_shift])):.0f} m): the station coordinates look "
            "like GCJ-02 declared as WGS-84; declare their coordinate system (e.g. "
            "coord_system='gcj02') and re-run")
    return True, text


def _with_segments(hits: gpd.GeoDataFrame, ev: pd.DataFrame, segments: pd.DataFrame
                   ) -> gpd.GeoDataFrame:
    """Geometry of transaction hits: the station and the track around the transaction time."""
    tx = hits["subject_type"].to_numpy() == "transaction"
    if not tx.any() or not len(segments):
        return hits
    row_of = pd.Series(np.arange(len(ev)), index=ev["tx_id"].to_numpy(dtype=object))
    rows = row_of.reindex(hits.loc[tx, "subject_id"].to_numpy(dtype=object)).to_numpy()
    need = np.unique(rows[~np.isnan(rows)].astype(np.int64))
    seg = segments.loc[segments["row"].isin(need)]
    counts = seg.groupby("row").size()
    seg = seg.loc[seg["row"].isin(counts.index[counts >= 2])].sort_values("row", kind="stable")
    if not len(seg):
        return hits
    seg_rows = np.unique(seg["row"].to_numpy())
    lines = shapely.linestrings(seg["lon"].to_numpy(), seg["lat"].to_numpy(),
                                indices=pd.factorize(seg["row"], sort=True)[0])
    line_of = pd.Series(lines, index=seg_rows)
    hit_idx = np.flatnonzero(tx)
    line = line_of.reindex(rows).to_numpy(dtype=object)
    has = np.array([g is not None and not (isinstance(g, float)) for g in line], dtype=bool)
    points = hits.geometry.to_numpy()[hit_idx]
    has &= ~shapely.is_missing(points)
    if not has.any():
        return hits
    sel = np.flatnonzero(has)
    parts = np.empty(2 * sel.size, dtype=object)
    parts[0::2] = points[sel]
    parts[1::2] = line[sel]
    collections = shapely.geometrycollections(parts, indices=np.repeat(np.arange(sel.size), 2))
    geom = hits.geometry.to_numpy().copy()
    geom[hit_idx[sel]] = collections
    out = hits.copy()
    out["geometry"] = gpd.GeoSeries(geom, crs=4326, index=hits.index)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=4326)


def _summaries(ev: pd.DataFrame, hits: gpd.GeoDataFrame | None,
               card_table: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Card- and unit-level summaries."""
    amount = ev["amount"].to_numpy(dtype="float64")
    risk = np.zeros(len(ev))
    flagged = np.zeros(len(ev), dtype=bool)
    if hits is not None and len(hits):
        ex = pd.DataFrame({"tx_ids": hits["tx_ids"].to_numpy(dtype=object),
                           "amount": hits["amount_at_risk"].to_numpy(dtype="float64"),
                           "h": np.arange(len(hits))}).explode("tx_ids").dropna(
                               subset=["tx_ids"])
        row_of = pd.Series(np.arange(len(ev)), index=ev["tx_id"].to_numpy(dtype=object))
        ex["row"] = row_of.reindex(ex["tx_ids"].to_numpy(dtype=object)).to_numpy()
        ex = ex.dropna(subset=["row"])
        ex["row"] = ex["row"].astype(np.int64)
        # share of a hit's amount at risk per transaction, in proportion to the amounts paid
        ex["paid"] = np.nan_to_num(amount[ex["row"].to_numpy()])
        tot = ex.groupby("h")["paid"].transform("sum")
        size = ex.groupby("h")["paid"].transform("size")
        ex["share"] = np.where(tot > 0, ex["amount"] * ex["paid"] / tot.where(tot > 0, 1.0),
                               ex["amount"] / size)
        per_tx = ex.groupby("row")["share"].max()
        flagged[per_tx.index.to_numpy()] = True
        risk[per_tx.index.to_numpy()] = np.nan_to_num(per_tx.to_numpy())
    tx = pd.DataFrame({"card_id": ev["card_id"].to_numpy(dtype=object),
                       "vehicle_id": ev["vehicle_id"].to_numpy(dtype=object),
                       "unit": ev["unit"].to_numpy(dtype=object), "flagged": flagged,
                       "risk": risk})
    per_card = tx.groupby(["card_id"], sort=True).agg(
        vehicle_id=("vehicle_id", "first"), unit=("unit", "first"),
        transactions=("flagged", "size"), flagged=("flagged", "sum"),
        amount_at_risk=("risk", "sum")).reset_index()
    if card_table is not None and len(card_table):
        base = pd.DataFrame({"card_id": card_table["card_id"].to_numpy(dtype=object),
                             "vehicle_id0": card_table["c_vehicle_id"].to_numpy(dtype=object),
                             "unit0": card_table["c_unit"].to_numpy(dtype=object)})
        per_card = base.merge(per_card, on="card_id", how="outer")
        per_card["vehicle_id"] = per_card["vehicle_id"].fillna(per_card["vehicle_id0"])
        per_card["unit"] = per_card["unit"].fillna(per_card["unit0"])
        per_card = per_card.drop(columns=["vehicle_id0", "unit0"])
    per_card["transactions"] = per_card["transactions"].fillna(0).astype(np.int64)
    per_card["flagged"] = per_card["flagged"].fillna(0).astype(np.int64)
    per_card["amount_at_risk"] = per_card["amount_at_risk"].fillna(0.0).astype("float64")
    per_card["unit"] = per_card["unit"].fillna("").astype(str)
    per_card = per_card[list(CARD_COLUMNS)].sort_values("card_id").reset_index(drop=True)
    per_unit = per_card.assign(alerted=per_card["flagged"] > 0).groupby(
        "unit", sort=True).agg(cards_checked=("card_id", "size"),
                               cards_with_alerts=("alerted", "sum"),
                               transactions=("transactions", "sum"),
                               flagged=("flagged", "sum"),
                               amount_at_risk=("amount_at_risk", "sum")).reset_index()
    per_unit["share_flagged"] = np.where(per_unit["transactions"] > 0,
                                         per_unit["flagged"] / per_unit["transactions"]
                                         .where(per_unit["transactions"] > 0, 1), 0.0)
    per_unit["cards_with_alerts"] = per_unit["cards_with_alerts"].astype(np.int64)
    return per_card, per_unit[list(UNIT_COLUMNS)]
