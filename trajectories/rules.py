"""The fuel-card rules: pure functions of a per-transaction evidence table.

:func:`trajectories.audit.audit` joins transactions, cards, vehicles and stations, measures
the motion evidence of every transaction against the GPS track (nearest approach to the
station, the stop there, GPS coverage, the cumulative distance driven) and hands the table
(:data:`EVIDENCE_COLUMNS`) and a :class:`FuelContext` to each rule. A rule returns *hits*
(a GeoDataFrame in EPSG:4326 with :data:`HIT_COLUMNS`) that
:func:`geosup.alerts.make_alerts` turns into alerts. A rule never loops over transactions in
Python; an alert states what was measured and which threshold fired, never more.

The evidence is what the review map draws (it never recomputes a check): a transaction's
evidence names its station by ``station_id`` (the stored ``fuel_stations`` layer) and
places it by ``station_lon``/``station_lat`` (WGS-84, as the check used it after any
GCJ-02/BD-09 conversion; None when the station is unknown); ``fuel.away_from_station`` and
``fuel.no_stop_at_station`` give the nearest approach of the track as
``nearest_lon``/``nearest_lat`` with ``nearest_fix_id``. A vehicle-month of
``fuel.consumption_mismatch`` names the station of its last fill the same way, one of
``fuel.inactive_vehicle`` its stations as ``station_ids``.

Each hit table carries ``attrs["checks"] = {"checked": n, "not_checkable": m}``: the
transactions (or vehicle-months) the rule could judge and those it could not (for example a
fill on a vehicle whose tank capacity is unknown).

The rules (codes, thresholds and defaults; ``geosup rules`` lists them):

``fuel.away_from_station`` (``radius_m`` 300, ``window_min`` 10)
    GPS covers the transaction (fixes before and after it within the window, not in a gap)
    and neither the vehicle's path nor a stop of it came within ``radius_m`` of the station
    within ± ``window_min`` of the transaction.
``fuel.no_stop_at_station`` (``radius_m`` 300, ``min_dwell_min`` 2, ``stop_diameter_m`` 100)
    The vehicle came within ``radius_m`` but no stop of at least ``min_dwell_min`` (a stay
    within ``stop_diameter_m``) near the station overlaps the window (the window of
    ``fuel.away_from_station``).
``fuel.no_gps_coverage`` (``max_gap_min`` 10)
    No fix within the window, fixes on one side only, or the transaction time falls in a gap
    of the track (fixes more than ``max_gap_min`` apart); a GPS input was given, but it cannot
    verify this purchase.
``fuel.over_tank_capacity`` (``tolerance`` 0.05)
    Litres above tank capacity × (1 + tolerance). Unknown or zero capacity: not checkable.
``fuel.consumption_mismatch`` (``factor`` 1.5, ``window_days`` 30, ``min_excess_l`` 5,
``max_gap_km`` 2)
    Per fill: litres above ``factor`` × GPS distance since the previous fill × rated
    l/100 km (and at least ``min_excess_l`` above it). Per vehicle: the same over every
    rolling window of ``window_days`` ending at a fill, one alert per vehicle and month (its
    worst window). An interval whose track crosses gaps spanning more than ``max_gap_km`` is
    not checkable.
``fuel.off_hours`` (``work_start`` "08:00", ``work_end`` "18:00")
    Outside working hours, on a weekend or on a public holiday of the
    :class:`~trajectories.calendar.WorkCalendar` (make-up working days are working days).
``fuel.rapid_refill`` (``interval_h`` 4)
    A fuel fill less than ``interval_h`` after the previous fuel fill on the same card or the
    same vehicle.
``fuel.product_mismatch`` (``non_fuel`` true)
    The product's fuel class (:data:`PRODUCT_CLASSES`) differs from the vehicle's fuel type,
    or (with ``non_fuel``) a purchase that is not fuel at all.
``fuel.inactive_vehicle`` (``min_distance_km`` 1, ``statuses`` decommissioned …)
    Transactions for a vehicle whose status is inactive, outside its ``active_from`` …
    ``active_to``, or that moved less than ``min_distance_km`` by GPS in the month (one alert
    per vehicle and month).
``fuel.odometer_anomaly`` (``rel_tolerance`` 0.25, ``abs_tolerance_km`` 20,
``max_delta_km`` 1000, ``require_odometer`` false)
    The reported odometer went backwards or did not advance since the vehicle's previous
    reading (earlier instant; readings <= 0 count as not reported), jumped by more than
    ``max_delta_km``, or its advance differs from the GPS distance by more than both
    ``abs_tolerance_km`` and ``rel_tolerance`` × GPS distance; with ``require_odometer``, a
    fill without a reading is reported too.

Examples
--------
>>> import pandas as pd
>>> from geosup.rules import REGISTRY
>>> ev = prepare_evidence(pd.DataFrame({
...     "tx_id": ["T1", "T2"], "card_id": "C1", "vehicle_id": "V1",
...     "time": pd.to_datetime(["2024-10-08 02:00", "2024-10-08 03:00"], utc=True),
...     "litres": [60.0, 40.0], "tank_l": [50.0, 50.0]}))
>>> hits = REGISTRY.get("fuel.over_tank_capacity")(ev, context=FuelContext(), tolerance=0.05)
>>> hits["subject_id"].tolist(), hits.attrs["checks"]
(['T1'], {'checked': 2, 'not_checkable': 0})
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosup.rules import Threshold, rule
from trajectories.calendar import WorkCalendar

__all__ = [
    "EVIDENCE_COLUMNS",
    "FUEL_RULES",
    "HIT_COLUMNS",
    "INACTIVE_STATUSES",
    "PRODUCT_CLASSES",
    "TRACK_RULES",
    "FuelContext",
    "away_from_station",
    "consumption_mismatch",
    "fuel_class",
    "inactive_vehicle",
    "no_gps_coverage",
    "no_stop_at_station",
    "odometer_anomaly",
    "off_hours",
    "over_tank_capacity",
    "prepare_evidence",
    "previous_in_group",
    "product_mismatch",
    "rapid_refill",
]

#: Columns of every rule's hit table (plus ``tx_ids``, ``vehicle_id``, ``card_id`` for the
#: summaries); ``geometry`` is in EPSG:4326.
HIT_COLUMNS: tuple[str, ...] = (
    "rule", "subject_type", "subject_id", "unit", "period", "severity", "score",
    "amount_at_risk", "observed_at", "title", "detail", "evidence", "geometry",
)

#: The evidence table: column -> (kind, meaning). :func:`prepare_evidence` adds missing ones.
EVIDENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "tx_id": ("str", "transaction id"),
    "card_id": ("str", "fuel card id"),
    "vehicle_id": ("str", "the card's vehicle"),
    "unit": ("str", "budget unit responsible for the card"),
    "time": ("time", "transaction time (UTC)"),
    "period": ("str", "YYYY-MM of the local date of the transaction"),
    "station_id": ("str", "station id"),
    "station_name": ("str", "station name"),
    "station_lon": ("float", "station longitude, WGS-84"),
    "station_lat": ("float", "station latitude, WGS-84"),
    "litres": ("float", "volume bought (the data's volume unit)"),
    "amount": ("float", "money paid"),
    "product": ("str", "product as exported"),
    "odometer_km": ("float", "odometer reported at the pump (<= 0: not reported)"),
    "fuel_type": ("str", "the vehicle's fuel type"),
    "tank_l": ("float", "the vehicle's tank capacity (<= 0: unknown)"),
    "rated_l_per_100km": ("float", "the vehicle's rated consumption"),
    "status": ("str", "the vehicle's status"),
    "active_from": ("time", "the vehicle's service start"),
    "active_to": ("time", "the vehicle's service end"),
    "gps": ("bool", "GPS evidence was measured for this transaction"),
    "nearest_m": ("float", "closest approach of the vehicle's path to the station in the window"),
    "nearest_at": ("time", "time of the closest approach"),
    "nearest_lon": ("float", "closest point, WGS-84"),
    "nearest_lat": ("float", "closest point, WGS-84"),
    "nearest_fix_id": ("int", "closest fix in the window (-1: none)"),
    "fix_distance_m": ("float", "distance of that fix to the station"),
    "n_fixes": ("int", "fixes in the window"),
    "covered": ("bool", "fixes on both sides within the window and not in a gap"),
    "coverage_reason": ("str", "why not covered"),
    "in_gap": ("bool", "the transaction time lies in a gap of the track"),
    "gap_start": ("time", "start of that gap"),
    "gap_end": ("time", "end of that gap"),
    "stop_id": ("str", "the longest stop near the station overlapping the window (\"\": none)"),
    "stop_start": ("time", "its start"),
    "stop_end": ("time", "its end"),
    "stop_duration_s": ("float", "its duration"),
    "stop_m": ("float", "distance of its centre to the station"),
    "cum_m": ("float", "GPS distance driven by the vehicle up to the transaction time"),
    "cum_gap_m": ("float", "part of cum_m spanned by straight lines across gaps"),
    "in_range": ("bool", "the transaction lies within the vehicle's first..last fix"),
}

_STR = [c for c, (k, _) in EVIDENCE_COLUMNS.items() if k == "str"]
_FLOAT = [c for c, (k, _) in EVIDENCE_COLUMNS.items() if k == "float"]
_TIME = [c for c, (k, _) in EVIDENCE_COLUMNS.items() if k == "time"]
_BOOL = [c for c, (k, _) in EVIDENCE_COLUMNS.items() if k == "bool"]
_INT = [c for c, (k, _) in EVIDENCE_COLUMNS.items() if k == "int"]

#: The fuel rules in the order the audit runs them.
FUEL_RULES: tuple[str, ...] = (
    "fuel.away_from_station",
    "fuel.no_stop_at_station",
    "fuel.no_gps_coverage",
    "fuel.over_tank_capacity",
    "fuel.consumption_mismatch",
    "fuel.off_hours",
    "fuel.rapid_refill",
    "fuel.product_mismatch",
    "fuel.inactive_vehicle",
    "fuel.odometer_anomaly",
)

#: Rules that need a GPS track (the others run on transactions alone).
TRACK_RULES: frozenset[str] = frozenset({
    "fuel.away_from_station", "fuel.no_stop_at_station", "fuel.no_gps_coverage",
    "fuel.consumption_mismatch",
})

#: Vehicle statuses read as "not in service" (compared lower-case).
INACTIVE_STATUSES: tuple[str, ...] = (
    "decommissioned", "inactive", "retired", "disposed", "scrapped", "sold", "written off",
    "out of service", "报废", "停用", "已报废", "封存", "处置", "已处置", "退役",
)


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-/.()]+", "", text.strip().lower())


#: Product or fuel-type text -> fuel class (keys compared lower-case without spaces, hyphens,
#: slashes, dots and brackets). Other values are classified by :func:`fuel_class`'s patterns.
PRODUCT_CLASSES: dict[str, str] = {
    **{_squash(k): "petrol" for k in (
        "unleaded", "unl", "unleaded premium", "premium", "mid-grade", "midgrade",
        "unleaded mid-grade", "super", "sup", "super unleaded", "un+", "ful", "regular",
        "plus", "gasoline", "gas", "petrol", "e5", "e10", "e-10", "e85", "e-85", "eth",
        "unleaded ethanol (10% blend)", "super unleaded ethanol (10% blend)", "unleaded 1",
        "unleaded 2", "unleaded 3", "flex", "flex fuel", "flexfuel", "hybrid", "汽油",
        "无铅汽油", "乙醇汽油")},
    **{_squash(k): "diesel" for k in (
        "diesel", "dsl", "ds+", "biod", "biodiesel", "b2", "b5", "b7", "b7p", "b7s", "b10",
        "b20", "b2 diesel blend 2% biodiesel", "diesel 1", "diesel 2", "hvo", "gasoil",
        "gas oil", "柴油", "轻柴油")},
    **{_squash(k): "non-fuel" for k in (
        "non-fuel", "nonfuel", "non fuel", "service", "services", "car wash", "wash",
        "merchandise", "general merchandise", "oth", "other", "dis", "disc", "discount",
        "discount 1", "discount 2", "shop", "food", "oil change", "lubricant", "洗车", "非油品",
        "便利店", "商品", "服务")},
    **{_squash(k): "lpg" for k in ("lpg", "autogas", "液化石油气")},
    **{_squash(k): "cng" for k in ("cng", "lng", "natural gas", "天然气", "压缩天然气")},
    **{_squash(k): "electric" for k in ("electric", "ev", "electricity", "charging", "充电",
                                        "电")},
    **{_squash(k): "additive" for k in ("adblue", "def", "diesel exhaust fluid", "尿素")},
}

_PETROL_NUM = re.compile(r"^(8[9]|9[0-8])\s*(#|号)")
_DIESEL_NUM = re.compile(r"^-?\d{1,2}\s*(#|号)")


def fuel_class(values: Any) -> np.ndarray:
    """Fuel class of product or fuel-type texts: petrol, diesel, lpg, cng, electric,
    additive, non-fuel, or ``""`` when unknown.

    Besides :data:`PRODUCT_CLASSES`, Chinese grades are read: ``92#``, ``95号``, ``98#``
    (petrol), ``0#``, ``-10#``, ``-20号`` (diesel), and any text containing 汽油 / 柴油.
    Classified per distinct value (a handful), never per transaction.

    Examples
    --------
    >>> fuel_class(["Unleaded", "92#", "0号柴油", "Car Wash", "Diesel", "E-85", "?"]).tolist()
    ['petrol', 'petrol', 'diesel', 'non-fuel', 'diesel', 'petrol', '']
    """
    series = pd.Series(values, dtype=object).reset_index(drop=True)
    text = series.where(series.notna(), "").astype(str)
    uniques = pd.unique(text)
    mapping: dict[str, str] = {}
    for value in uniques:  # distinct product names only
        key = _squash(value)
        cls = PRODUCT_CLASSES.get(key, "")
        raw = value.strip()
        if not cls:
            if "柴油" in raw:
                cls = "diesel"
            elif "汽油" in raw or _PETROL_NUM.match(raw):
                cls = "petrol"
            elif _DIESEL_NUM.match(raw):
                cls = "diesel"
        mapping[value] = cls
    return text.map(mapping).to_numpy(dtype=object)


@dataclass(frozen=True)
class FuelContext:
    """What the fuel rules need besides the evidence table.

    Attributes
    ----------
    tz : str
        The local zone (periods, working hours, alert text).
    calendar : WorkCalendar, optional
        Working days; default ``WorkCalendar()`` (China's holidays).
    vehicle_months : DataFrame, optional
        ``vehicle_id, period, gps_km, n_fixes``: GPS distance per vehicle and month (for
        ``inactive_vehicle``); absent or empty when there is no GPS input.
    window_min, radius_m : float, optional
        The window and radius the motion evidence was measured with (recorded in evidence).
    gcj_suspected : bool
        The audit suspects GCJ-02 stations declared as WGS-84 (noted in alert details).
    """

    tz: str = "Asia/Shanghai"
    calendar: WorkCalendar | None = None
    vehicle_months: pd.DataFrame | None = None
    window_min: float | None = None
    radius_m: float | None = None
    gcj_suspected: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# The evidence table
# ---------------------------------------------------------------------------------------------


def _ns(times: Any) -> np.ndarray:
    """tz-aware (or naive = UTC) times as int64 ns since the epoch; NaT -> int64 minimum."""
    idx = pd.DatetimeIndex(pd.to_datetime(pd.Series(times).reset_index(drop=True), utc=True))
    return idx.as_unit("ns").asi8.copy()


def _utc(values: Any) -> pd.Series:
    out = pd.to_datetime(pd.Series(values), utc=True, errors="coerce")
    return out.dt.as_unit("ns")


def prepare_evidence(frame: pd.DataFrame, *, tz: str = "Asia/Shanghai") -> pd.DataFrame:
    """Complete an evidence table: add missing :data:`EVIDENCE_COLUMNS`, fix dtypes, periods.

    Missing text becomes ``""``, missing numbers NaN, missing times NaT, ``gps``/``covered``
    False, ``n_fixes`` 0, ``nearest_fix_id`` -1. ``period`` defaults to the YYYY-MM of the
    local date in ``tz``. Extra columns are kept.

    Examples
    --------
    >>> ev = prepare_evidence(pd.DataFrame({"tx_id": ["T1"],
    ...     "time": pd.to_datetime(["2024-09-30 17:00"], utc=True)}))
    >>> ev.loc[0, "period"], bool(ev.loc[0, "gps"]), float(ev.loc[0, "litres"])
    ('2024-10', False, nan)
    """
    out = frame.copy()
    out.index = pd.RangeIndex(len(out))
    n = len(out)
    for col in _STR:
        if col == "period":
            continue
        if col not in out.columns:
            out[col] = ""
        series = out[col]
        out[col] = series.astype(object).where(series.notna(), "").astype(str).astype(object)
    for col in _FLOAT:
        out[col] = (pd.to_numeric(out[col], errors="coerce").astype("float64")
                    if col in out.columns else np.full(n, np.nan))
    for col in _TIME:
        out[col] = _utc(out[col]) if col in out.columns else pd.Series(
            pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
    for col in _BOOL:
        out[col] = (out[col].fillna(False).astype(bool) if col in out.columns
                    else np.zeros(n, dtype=bool))
    for col in _INT:
        default = -1 if col == "nearest_fix_id" else 0
        out[col] = (pd.to_numeric(out[col], errors="coerce").fillna(default).astype("int64")
                    if col in out.columns else np.full(n, default, dtype=np.int64))
    if "period" not in out.columns or (out["period"].astype(str) == "").all():
        local = out["time"].dt.tz_convert(tz)
        out["period"] = local.dt.strftime("%Y-%m").astype(object).where(local.notna(), "")
    else:
        out["period"] = out["period"].astype(object).where(out["period"].notna(), "").astype(str)
    return out


def previous_in_group(keys: Sequence[np.ndarray], times: np.ndarray,
                      valid: np.ndarray | None = None, *, strict: bool = True) -> np.ndarray:
    """Position of each row's previous row of the same key (by time), -1 when none.

    Parameters
    ----------
    keys : sequence of arrays
        Group keys (e.g. ``[vehicle_id]``).
    times : array of int64
        Times (ns); rows are ordered by time, then by position.
    valid : array of bool, optional
        Only valid rows can be "previous" (each row still gets its previous valid row).
    strict : bool
        The previous row must have a strictly earlier time (rows of one instant, such as the
        items of one ticket, are not each other's previous).

    Examples
    --------
    >>> previous_in_group([np.array(["a", "a", "b", "a"])], np.array([1, 5, 2, 5])).tolist()
    [-1, 0, -1, 0]
    """
    n = len(times)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    codes = [pd.factorize(pd.Series(k).astype(str))[0] for k in keys]
    order = np.lexsort((np.arange(n), times, *codes[::-1]))
    group = np.zeros(n, dtype=np.int64)
    for c in codes:
        group = group * (int(c.max()) + 2) + c[order]
    t = times[order]
    ok = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)[order]
    pos = np.arange(n)
    # last valid position up to and including each sorted row
    last_valid = np.maximum.accumulate(np.where(ok, pos, -1))
    new_group = np.r_[True, group[1:] != group[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, pos, 0))
    if strict:
        new_instant = new_group | np.r_[True, t[1:] != t[:-1]]
        block_start = np.maximum.accumulate(np.where(new_instant, pos, 0))
        before = block_start - 1
    else:
        before = pos - 1
    prev_sorted = np.where(before >= 0, last_valid[np.maximum(before, 0)], -1)
    prev_sorted = np.where(prev_sorted >= group_start, prev_sorted, -1)
    out = np.full(n, -1, dtype=np.int64)
    out[order] = np.where(prev_sorted >= 0, order[np.maximum(prev_sorted, 0)], -1)
    return out


# ---------------------------------------------------------------------------------------------
# Helpers shared by the rules (vectorised over hits)
# ---------------------------------------------------------------------------------------------


def _fmt(values: Any, digits: int = 0) -> pd.Series:
    arr = np.round(np.asarray(values, dtype="float64"), digits)
    series = pd.Series(arr)
    text = (series.astype("Int64").astype(str) if digits == 0 and len(series)
            else series.astype(str))
    return text.where(series.notna(), "n/a").astype(object)


def _local(times: pd.Series, tz: str) -> pd.Series:
    local = pd.Series(times).dt.tz_convert(tz)
    return local.dt.strftime("%Y-%m-%d %H:%M").astype(object).where(local.notna(), "n/a")


def _iso(times: pd.Series) -> list[Any]:
    series = pd.Series(times)
    text = series.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return text.astype(object).where(series.notna(), None).tolist()


def _clean(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def _records(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Column-wise evidence to one dict per hit (scalars are broadcast)."""
    cols: dict[str, list[Any]] = {}
    for key, values in columns.items():
        if isinstance(values, (list, np.ndarray, pd.Series)):
            seq = values.tolist() if not isinstance(values, list) else values
            cols[key] = [_clean(v) for v in seq]
        else:
            cols[key] = [_clean(values)] * n
    keys = list(cols)
    return [dict(zip(keys, row, strict=True)) for row in zip(*cols.values(), strict=True)] \
        if keys else [{} for _ in range(n)]


def _station_point(rows: pd.DataFrame) -> dict[str, Any]:
    """``station_lon``/``station_lat`` (WGS-84, as the check used them; None when unknown)."""
    return {"station_lon": rows["station_lon"].to_numpy(dtype="float64"),
            "station_lat": rows["station_lat"].to_numpy(dtype="float64")}


def _points(lon: Any, lat: Any) -> np.ndarray:
    lon = np.asarray(lon, dtype="float64")
    lat = np.asarray(lat, dtype="float64")
    geoms = shapely.points(lon, lat)
    return np.where(np.isfinite(lon) & np.isfinite(lat), geoms, None)


def _checks(hits: gpd.GeoDataFrame, checked: int, not_checkable: int) -> gpd.GeoDataFrame:
    hits.attrs["checks"] = {"checked": int(checked), "not_checkable": int(not_checkable)}
    return hits


def _empty(checked: int = 0, not_checkable: int = 0) -> gpd.GeoDataFrame:
    data = {c: pd.Series([], dtype=object) for c in HIT_COLUMNS if c != "geometry"}
    data.update({"tx_ids": pd.Series([], dtype=object), "vehicle_id": pd.Series([], dtype=object),
                 "card_id": pd.Series([], dtype=object)})
    hits = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=4326), crs=4326)
    return _checks(hits, checked, not_checkable)


def _tx_hits(ev: pd.DataFrame, mask: np.ndarray, *, code: str, severity: str,
             title: Any, detail: pd.Series, score: Any, measured: dict[str, Any],
             thresholds: dict[str, Any], amount: Any = None, checked: int = 0,
             not_checkable: int = 0) -> gpd.GeoDataFrame:
    """Hits for transactions ``ev[mask]``; ``detail``/``score``/measured are for those rows."""
    sub = ev.loc[mask].reset_index(drop=True)
    n = len(sub)
    if n == 0:
        return _empty(checked, not_checkable)
    evidence = _records({
        "tx_id": sub["tx_id"], "card_id": sub["card_id"], "vehicle_id": sub["vehicle_id"],
        "station_id": sub["station_id"], **_station_point(sub), "time": _iso(sub["time"]),
        **measured, "thresholds": [thresholds] * n}, n)
    amount_at_risk = sub["amount"].to_numpy(dtype="float64") if amount is None else amount
    data = {
        "rule": [code] * n,
        "subject_type": ["transaction"] * n,
        "subject_id": sub["tx_id"].to_numpy(dtype=object),
        "unit": sub["unit"].to_numpy(dtype=object),
        "period": sub["period"].to_numpy(dtype=object),
        "severity": np.broadcast_to(np.asarray(severity, dtype=object), (n,)),
        "score": np.clip(np.broadcast_to(np.asarray(score, dtype="float64"), (n,)), 0.0, 1.0),
        "amount_at_risk": np.asarray(amount_at_risk, dtype="float64"),
        "observed_at": sub["time"].to_numpy(),
        "title": np.broadcast_to(np.asarray(title, dtype=object), (n,)),
        "detail": pd.Series(detail).to_numpy(dtype=object),
        "evidence": evidence,
        "tx_ids": [[t] for t in sub["tx_id"].tolist()],
        "vehicle_id": sub["vehicle_id"].to_numpy(dtype=object),
        "card_id": sub["card_id"].to_numpy(dtype=object),
    }
    hits = gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(
        _points(sub["station_lon"], sub["station_lat"]), crs=4326), crs=4326)
    hits = hits[[*HIT_COLUMNS[:-1], "tx_ids", "vehicle_id", "card_id", "geometry"]]
    return _checks(hits, checked, not_checkable)


def _is_fuel(ev: pd.DataFrame) -> np.ndarray:
    """Rows that are fuel purchases (not non-fuel; unknown products count as fuel)."""
    return fuel_class(ev["product"]) != "non-fuel"


def _t_ns(ev: pd.DataFrame) -> np.ndarray:
    return _ns(ev["time"])


def _prev_fill(ev: pd.DataFrame, key: str, valid: np.ndarray) -> np.ndarray:
    t = _t_ns(ev)
    ok = valid & ev["time"].notna().to_numpy() & (ev[key].astype(str) != "").to_numpy()
    prev = previous_in_group([ev[key].to_numpy()], t, ok)
    return np.where(ok, prev, -1)


def _window(context: FuelContext) -> float:
    """The window the motion evidence was measured with (that of fuel.away_from_station)."""
    return float(context.window_min) if context.window_min is not None else 10.0


def _station_text(ev: pd.DataFrame) -> pd.Series:
    name = ev["station_name"].astype(str)
    sid = ev["station_id"].astype(str)
    return pd.Series(np.where(name != "", name + " (" + sid + ")", sid), index=ev.index)


# ---------------------------------------------------------------------------------------------
# The rules
# ---------------------------------------------------------------------------------------------

_RADIUS = Threshold("radius_m", 300.0, "m", "distance from the station that counts as 'at it'")
_WINDOW = Threshold("window_min", 10.0, "min",
                    "half-width of the time window around the transaction")


@rule("fuel.away_from_station", title="Vehicle not near the station at the time of the fill",
      title_zh="加油时车辆不在加油站附近", severity="high",
      inputs=("transactions", "stations", "fixes", "cards", "vehicles"),
      thresholds=[_RADIUS, _WINDOW])
def away_from_station(evidence: pd.DataFrame, *, context: FuelContext, radius_m: float,
                      window_min: float) -> gpd.GeoDataFrame:
    """No fix, path point or stop of the vehicle within the radius of the station in the window."""
    ev = evidence
    gps = ev["gps"].to_numpy(dtype=bool)
    has_station = np.isfinite(ev["station_lon"].to_numpy(dtype="float64"))
    judged = gps & has_station & ev["covered"].to_numpy(dtype=bool)
    nearest = ev["nearest_m"].to_numpy(dtype="float64")
    stop_m = ev["stop_m"].to_numpy(dtype="float64")
    stop_near = (ev["stop_id"].astype(str) != "").to_numpy() & (stop_m <= radius_m)
    mask = judged & (nearest > radius_m) & ~stop_near
    sub = ev.loc[mask].reset_index(drop=True)
    detail = ("Closest approach of vehicle " + sub["vehicle_id"] + " to station "
              + _station_text(sub) + " within ±" + f"{window_min:g}" + " min of "
              + _local(sub["time"], context.tz) + ": " + _fmt(sub["nearest_m"]) + " m at "
              + _local(sub["nearest_at"], context.tz) + " (radius " + f"{radius_m:g}"
              + " m); no stop within the radius.")
    if context.gcj_suspected:
        detail = detail + " Note: the station coordinates may be GCJ-02 declared as WGS-84."
    d = sub["nearest_m"].to_numpy(dtype="float64")
    return _tx_hits(
        ev, mask, code="fuel.away_from_station", severity="high",
        title="Vehicle not near the station at the time of the fill", detail=detail,
        score=1.0 - radius_m / np.maximum(d, radius_m),
        measured={"nearest_m": np.round(d, 1), "nearest_at": _iso(sub["nearest_at"]),
                  "nearest_lon": sub["nearest_lon"], "nearest_lat": sub["nearest_lat"],
                  "nearest_fix_id": sub["nearest_fix_id"],
                  "fix_distance_m": np.round(sub["fix_distance_m"].to_numpy(), 1),
                  "n_fixes": sub["n_fixes"], "stop_id": sub["stop_id"],
                  "stop_m": np.round(sub["stop_m"].to_numpy(), 1)},
        thresholds={"radius_m": radius_m, "window_min": window_min},
        checked=int(judged.sum()), not_checkable=int((~judged).sum()))


@rule("fuel.no_stop_at_station", title="Vehicle passed the station without stopping",
      title_zh="车辆经过加油站但未停留", severity="medium",
      inputs=("transactions", "stations", "fixes", "cards", "vehicles"),
      thresholds=[_RADIUS,
                  Threshold("min_dwell_min", 2.0, "min", "shortest stop that allows a fill"),
                  Threshold("stop_diameter_m", 100.0, "m",
                            "a stop: the vehicle stays within this diameter")])
def no_stop_at_station(evidence: pd.DataFrame, *, context: FuelContext, radius_m: float,
                       min_dwell_min: float, stop_diameter_m: float) -> gpd.GeoDataFrame:
    """The vehicle came within the radius but did not dwell there long enough to fill."""
    ev = evidence
    window_min = _window(context)
    gps = ev["gps"].to_numpy(dtype=bool)
    has_station = np.isfinite(ev["station_lon"].to_numpy(dtype="float64"))
    judged = gps & has_station & ev["covered"].to_numpy(dtype=bool)
    nearest = ev["nearest_m"].to_numpy(dtype="float64")
    dwell = ev["stop_duration_s"].to_numpy(dtype="float64")
    stop_ok = ((ev["stop_id"].astype(str) != "").to_numpy()
               & (ev["stop_m"].to_numpy(dtype="float64") <= radius_m)
               & (dwell >= min_dwell_min * 60.0))
    mask = judged & (nearest <= radius_m) & ~stop_ok
    sub = ev.loc[mask].reset_index(drop=True)
    dwell_sub = sub["stop_duration_s"].to_numpy(dtype="float64")
    stop_text = pd.Series(np.where(
        (sub["stop_id"].astype(str) != "").to_numpy(),
        "the longest stop nearby lasted " + _fmt(dwell_sub / 60.0, 1).astype(str) + " min",
        "no stop nearby"), index=sub.index)
    detail = ("Vehicle " + sub["vehicle_id"] + " came within " + _fmt(sub["nearest_m"])
              + " m of station " + _station_text(sub) + " at "
              + _local(sub["nearest_at"], context.tz) + " but " + stop_text
              + " (minimum dwell " + f"{min_dwell_min:g}" + " min, stop diameter "
              + f"{stop_diameter_m:g}" + " m, radius " + f"{radius_m:g}" + " m, window ±"
              + f"{window_min:g}" + " min).")
    score = 1.0 - np.nan_to_num(dwell_sub, nan=0.0) / (min_dwell_min * 60.0)
    return _tx_hits(
        ev, mask, code="fuel.no_stop_at_station", severity="medium",
        title="Vehicle passed the station without stopping", detail=detail, score=score,
        measured={"nearest_m": np.round(sub["nearest_m"].to_numpy(), 1),
                  "nearest_at": _iso(sub["nearest_at"]),
                  "nearest_lon": sub["nearest_lon"], "nearest_lat": sub["nearest_lat"],
                  "nearest_fix_id": sub["nearest_fix_id"], "stop_id": sub["stop_id"],
                  "stop_start": _iso(sub["stop_start"]), "stop_end": _iso(sub["stop_end"]),
                  "stop_duration_s": dwell_sub,
                  "stop_m": np.round(sub["stop_m"].to_numpy(), 1)},
        thresholds={"radius_m": radius_m, "min_dwell_min": min_dwell_min,
                    "stop_diameter_m": stop_diameter_m, "window_min": window_min},
        checked=int(judged.sum()), not_checkable=int((~judged).sum()))


@rule("fuel.no_gps_coverage", title="No GPS fixes around the time of the fill",
      title_zh="加油时段无GPS定位数据", severity="medium",
      inputs=("transactions", "fixes", "cards", "vehicles"),
      thresholds=[Threshold("max_gap_min", 10.0, "min",
                            "fixes further apart are a gap in the track (never interpolated)")])
def no_gps_coverage(evidence: pd.DataFrame, *, context: FuelContext,
                    max_gap_min: float) -> gpd.GeoDataFrame:
    """No fixes around the transaction time (or a gap spans it): the fill cannot be verified."""
    ev = evidence
    window_min = _window(context)
    gps = ev["gps"].to_numpy(dtype=bool)
    covered = ev["covered"].to_numpy(dtype=bool)
    mask = gps & ~covered
    sub = ev.loc[mask].reset_index(drop=True)
    n_fixes = sub["n_fixes"].to_numpy(dtype="int64")
    in_gap = sub["in_gap"].to_numpy(dtype=bool)
    why = np.where(
        in_gap, "the time falls in a gap of the track from " + _local(sub["gap_start"],
                                                                      context.tz).astype(str)
        + " to " + _local(sub["gap_end"], context.tz).astype(str),
        np.where(n_fixes == 0, "no fix of the vehicle",
                 pd.Series(n_fixes).astype(str).to_numpy()
                 + " fix(es) on one side only of the time"))
    detail = ("Within ±" + f"{window_min:g}" + " min of the fill at "
              + _local(sub["time"], context.tz) + " on vehicle " + sub["vehicle_id"] + ": "
              + pd.Series(why, index=sub.index) + "; the purchase cannot be checked against "
              "the track.")
    score = np.where(n_fixes == 0, 1.0, 0.5)
    return _tx_hits(
        ev, mask, code="fuel.no_gps_coverage", severity="medium",
        title="No GPS fixes around the time of the fill", detail=detail, score=score,
        measured={"n_fixes": n_fixes, "reason": sub["coverage_reason"],
                  "in_gap": in_gap, "gap_start": _iso(sub["gap_start"]),
                  "gap_end": _iso(sub["gap_end"])},
        thresholds={"window_min": window_min, "max_gap_min": max_gap_min},
        checked=int(gps.sum()), not_checkable=int((~gps).sum()))


@rule("fuel.over_tank_capacity", title="Fill above the tank capacity",
      title_zh="加油量超过油箱容量", severity="high", inputs=("transactions", "vehicles"),
      thresholds=[Threshold("tolerance", 0.05, "share", "allowed excess over the capacity")])
def over_tank_capacity(evidence: pd.DataFrame, *, context: FuelContext,
                       tolerance: float) -> gpd.GeoDataFrame:
    """Litres above the tank capacity times (1 + tolerance)."""
    ev = evidence
    tank = ev["tank_l"].to_numpy(dtype="float64")
    litres = ev["litres"].to_numpy(dtype="float64")
    judged = np.isfinite(tank) & (tank > 0) & np.isfinite(litres)
    limit = tank * (1.0 + tolerance)
    mask = judged & (litres > np.where(judged, limit, np.inf))
    sub = ev.loc[mask].reset_index(drop=True)
    lit, cap = sub["litres"].to_numpy(dtype="float64"), sub["tank_l"].to_numpy(dtype="float64")
    lim = cap * (1.0 + tolerance)
    detail = ("Fill of " + _fmt(lit, 2) + " on vehicle " + sub["vehicle_id"] + " at "
              + _local(sub["time"], context.tz) + "; tank capacity " + _fmt(cap, 1)
              + ", limit with tolerance " + f"{tolerance:g}" + ": " + _fmt(lim, 2) + ".")
    amount = sub["amount"].to_numpy(dtype="float64")
    excess = lit - lim
    return _tx_hits(
        ev, mask, code="fuel.over_tank_capacity", severity="high",
        title="Fill above the tank capacity", detail=detail,
        score=(lit / lim - 1.0), amount=amount * excess / np.where(lit > 0, lit, np.nan),
        measured={"litres": lit, "tank_l": cap, "limit_l": np.round(lim, 3),
                  "excess_l": np.round(excess, 3)},
        thresholds={"tolerance": tolerance},
        checked=int(judged.sum()), not_checkable=int((~judged).sum()))


@rule("fuel.consumption_mismatch", title="Fuel bought above what the distance driven explains",
      title_zh="加油量与行驶里程不符", severity="medium",
      inputs=("transactions", "fixes", "vehicles", "cards"),
      thresholds=[Threshold("factor", 1.5, "×", "allowed multiple of the rated consumption"),
                  Threshold("window_days", 30.0, "d", "rolling window per vehicle"),
                  Threshold("min_excess_l", 5.0, "l", "smallest excess that is reported"),
                  Threshold("max_gap_km", 2.0, "km",
                            "largest distance across GPS gaps for a measurable interval")])
def consumption_mismatch(evidence: pd.DataFrame, *, context: FuelContext, factor: float,
                         window_days: float, min_excess_l: float,
                         max_gap_km: float) -> gpd.GeoDataFrame:
    """Litres since the previous fill far above GPS distance × rated consumption × factor."""
    ev = evidence
    fuel = _is_fuel(ev) & np.isfinite(ev["litres"].to_numpy(dtype="float64"))
    prev = _prev_fill(ev, "vehicle_id", fuel)
    has_prev = prev >= 0
    p = np.maximum(prev, 0)
    cum = ev["cum_m"].to_numpy(dtype="float64")
    cum_gap = ev["cum_gap_m"].to_numpy(dtype="float64")
    in_range = ev["in_range"].to_numpy(dtype=bool)
    gps = ev["gps"].to_numpy(dtype=bool)
    rated = ev["rated_l_per_100km"].to_numpy(dtype="float64")
    litres = ev["litres"].to_numpy(dtype="float64")
    dist_m = np.where(has_prev, cum - cum[p], np.nan)
    gap_m = np.where(has_prev, cum_gap - cum_gap[p], np.nan)
    judged = (fuel & has_prev & gps & in_range & in_range[p] & np.isfinite(dist_m)
              & (gap_m <= max_gap_km * 1000.0) & np.isfinite(rated) & (rated > 0))
    expected = np.where(judged, dist_m / 1000.0 * rated / 100.0, np.nan)
    allowed = factor * expected
    mask = judged & (litres > allowed) & (litres - allowed >= min_excess_l)
    sub = ev.loc[mask].reset_index(drop=True)
    m = np.flatnonzero(mask)
    prev_ids = ev["tx_id"].to_numpy(dtype=object)[p[m]]
    prev_times = ev["time"].iloc[p[m]].reset_index(drop=True)
    detail = ("Fill of " + _fmt(litres[m], 2) + " on vehicle " + sub["vehicle_id"] + " at "
              + _local(sub["time"], context.tz) + ": GPS distance since the previous fill ("
              + pd.Series(prev_ids, index=sub.index) + ") "
              + _fmt(dist_m[m] / 1000.0, 1) + " km × rated " + _fmt(rated[m], 1)
              + " l/100 km = " + _fmt(expected[m], 2) + "; allowed × " + f"{factor:g}"
              + " = " + _fmt(allowed[m], 2) + ".")
    per_fill = _tx_hits(
        ev, mask, code="fuel.consumption_mismatch", severity="medium",
        title="Fuel bought above what the distance driven explains", detail=detail,
        score=1.0 - allowed[m] / litres[m],
        amount=sub["amount"].to_numpy(dtype="float64") * (litres[m] - allowed[m]) / litres[m],
        measured={"litres": litres[m], "previous_tx_id": prev_ids,
                  "previous_time": _iso(prev_times), "gps_km": np.round(dist_m[m] / 1000, 3),
                  "gap_km": np.round(gap_m[m] / 1000, 3), "rated_l_per_100km": rated[m],
                  "expected_l": np.round(expected[m], 3), "allowed_l": np.round(allowed[m], 3)},
        thresholds={"factor": factor, "min_excess_l": min_excess_l, "max_gap_km": max_gap_km},
        checked=int(judged.sum()), not_checkable=int((fuel & ~judged).sum()))
    # Rolling windows per vehicle, ending at each judged fill.
    if not judged.any():
        return per_fill
    idx = np.flatnonzero(judged)
    vid = ev["vehicle_id"].to_numpy(dtype=object)[idx]
    t = _t_ns(ev)[idx]
    order = np.lexsort((t, pd.factorize(pd.Series(vid).astype(str))[0]))
    idx, vid, t = idx[order], vid[order], t[order]
    codes = pd.factorize(pd.Series(vid).astype(str))[0].astype(np.int64)
    lit_c = np.r_[0.0, np.cumsum(litres[idx])]
    exp_c = np.r_[0.0, np.cumsum(expected[idx])]
    # first fill of the window [t - window, t] of the same vehicle: one searchsorted on a
    # (vehicle, milliseconds) key, rows being sorted by vehicle then time
    t_ms = (t - t.min()) // 1_000_000
    win_ms = int(window_days * 86_400_000)
    stride = int(t_ms.max()) + win_ms + 1
    composite = codes * stride + t_ms
    starts = np.searchsorted(composite, composite - win_ms, side="left").astype(np.int64)
    ends = np.arange(len(idx)) + 1
    w_lit = lit_c[ends] - lit_c[starts]
    w_exp = exp_c[ends] - exp_c[starts]
    w_allowed = factor * w_exp
    w_fire = (w_lit > w_allowed) & (w_lit - w_allowed >= min_excess_l) & (ends - starts >= 2)
    if not w_fire.any():
        return per_fill
    sel = np.flatnonzero(w_fire)
    rows = ev.iloc[idx[sel]].reset_index(drop=True)
    win_df = pd.DataFrame({
        "vehicle_id": rows["vehicle_id"].to_numpy(dtype=object),
        "period": rows["period"].to_numpy(dtype=object),
        "ratio": w_lit[sel] / np.where(w_allowed[sel] > 0, w_allowed[sel], np.nan),
        "excess": w_lit[sel] - w_allowed[sel], "sel": sel})
    win_df["ratio"] = win_df["ratio"].fillna(np.inf)
    worst = (win_df.sort_values(["vehicle_id", "period", "excess"],
                                ascending=[True, True, False])
             .drop_duplicates(["vehicle_id", "period"]))
    s = worst["sel"].to_numpy()
    first = starts[s]
    last = ends[s] - 1
    tx_all = ev["tx_id"].to_numpy(dtype=object)[idx]
    tx_lists = [tx_all[a:b + 1].tolist() for a, b in zip(first, last, strict=True)]  # per hit
    card_all = ev["card_id"].to_numpy(dtype=object)[idx]
    card_lists = [sorted(set(card_all[a:b + 1].tolist()) - {""})
                  for a, b in zip(first, last, strict=True)]
    amounts = ev["amount"].to_numpy(dtype="float64")[idx]
    am_c = np.r_[0.0, np.cumsum(np.nan_to_num(amounts))]
    w_amount = am_c[ends[s]] - am_c[starts[s]]
    rows_end = ev.iloc[idx[s]].reset_index(drop=True)
    rows_start = ev.iloc[idx[first]].reset_index(drop=True)
    k = len(s)
    wl, we, wa = w_lit[s], w_exp[s], w_allowed[s]
    detail_v = ("Vehicle " + rows_end["vehicle_id"] + ": " + _fmt(wl, 2) + " bought in "
                + pd.Series(ends[s] - starts[s]).astype(str) + " fills from "
                + _local(rows_start["time"], context.tz) + " to "
                + _local(rows_end["time"], context.tz) + " (window " + f"{window_days:g}"
                + " d) vs " + _fmt(we, 2) + " expected from the GPS distance; allowed × "
                + f"{factor:g}" + " = " + _fmt(wa, 2) + ".")
    evidence_v = _records({
        "vehicle_id": rows_end["vehicle_id"], "tx_ids": tx_lists, "card_ids": card_lists,
        "station_id": rows_end["station_id"], **_station_point(rows_end),
        "window_start": _iso(rows_start["time"]), "window_end": _iso(rows_end["time"]),
        "litres": np.round(wl, 3), "expected_l": np.round(we, 3),
        "allowed_l": np.round(wa, 3), "fills": (ends[s] - starts[s]),
        "thresholds": [{"factor": factor, "window_days": window_days,
                        "min_excess_l": min_excess_l, "max_gap_km": max_gap_km}] * k}, k)
    veh = gpd.GeoDataFrame({
        "rule": ["fuel.consumption_mismatch"] * k, "subject_type": ["vehicle"] * k,
        "subject_id": rows_end["vehicle_id"].to_numpy(dtype=object),
        "unit": rows_end["unit"].to_numpy(dtype=object),
        "period": rows_end["period"].to_numpy(dtype=object),
        "severity": ["medium"] * k,
        "score": np.clip(1.0 - wa / np.where(wl > 0, wl, np.nan), 0.0, 1.0),
        "amount_at_risk": w_amount * np.clip((wl - wa) / np.where(wl > 0, wl, np.nan), 0, 1),
        "observed_at": rows_end["time"].to_numpy(),
        "title": ["Fuel bought in a period above what the distance driven explains"] * k,
        "detail": detail_v.to_numpy(dtype=object), "evidence": evidence_v,
        "tx_ids": tx_lists, "vehicle_id": rows_end["vehicle_id"].to_numpy(dtype=object),
        "card_id": [""] * k,
    }, geometry=gpd.GeoSeries(_points(rows_end["station_lon"], rows_end["station_lat"]),
                              crs=4326), crs=4326)
    out = pd.concat([per_fill, veh[per_fill.columns]], ignore_index=True) if len(per_fill) \
        else veh[per_fill.columns]
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=4326)
    return _checks(out, per_fill.attrs["checks"]["checked"],
                   per_fill.attrs["checks"]["not_checkable"])


@rule("fuel.off_hours", title="Fill outside working hours", title_zh="非工作时间加油",
      severity="low", inputs=("transactions",),
      thresholds=[Threshold("work_start", "08:00", "HH:MM", "working hours start (local)"),
                  Threshold("work_end", "18:00", "HH:MM", "working hours end (local)")])
def off_hours(evidence: pd.DataFrame, *, context: FuelContext, work_start: str,
              work_end: str) -> gpd.GeoDataFrame:
    """Outside working hours, on a weekend or on a public holiday (calendar and time zone)."""
    ev = evidence
    cal = context.calendar or WorkCalendar()
    has_time = ev["time"].notna().to_numpy()
    mask, reason = cal.is_off_hours(ev["time"], tz=context.tz, start=work_start, end=work_end)
    sub = ev.loc[mask].reset_index(drop=True)
    why = pd.Series(reason[mask], index=sub.index).astype(str)
    kind = np.where(why.str.startswith("holiday"), "holiday",
                    np.where(why == "weekend", "weekend", "hours"))
    detail = ("Fill at " + _local(sub["time"], context.tz) + " (" + context.tz + ") on card "
              + sub["card_id"] + ": " + why + " (working hours " + work_start + "–" + work_end
              + ", " + ("public holidays and weekends of the calendar" if cal.country
                        else "weekends of the calendar") + ").")
    title = np.where(kind == "holiday", "Fill on a public holiday",
                     np.where(kind == "weekend", "Fill on a weekend",
                              "Fill outside working hours"))
    score = np.where(kind == "holiday", 0.8, np.where(kind == "weekend", 0.6, 0.4))
    return _tx_hits(
        ev, mask, code="fuel.off_hours", severity="low", title=title, detail=detail,
        score=score,
        measured={"local_time": _local(sub["time"], context.tz), "tz": context.tz,
                  "reason": why, "calendar_country": cal.country or ""},
        thresholds={"work_start": work_start, "work_end": work_end},
        checked=int(has_time.sum()), not_checkable=int((~has_time).sum()))


@rule("fuel.rapid_refill", title="Two fills within a short interval",
      title_zh="短时间内重复加油", severity="medium",
      inputs=("transactions", "cards"),
      thresholds=[Threshold("interval_h", 4.0, "h", "shortest normal interval between fills")])
def rapid_refill(evidence: pd.DataFrame, *, context: FuelContext,
                 interval_h: float) -> gpd.GeoDataFrame:
    """A fuel fill less than ``interval_h`` after the previous fill of the same card or vehicle."""
    ev = evidence
    fuel = _is_fuel(ev) & ev["time"].notna().to_numpy()
    t = _t_ns(ev)
    limit = int(interval_h * 3600 * 1e9)
    parts = []
    for key in ("card_id", "vehicle_id"):
        prev = _prev_fill(ev, key, fuel)
        gap = np.where(prev >= 0, t - t[np.maximum(prev, 0)], np.iinfo(np.int64).max)
        prev_nonstrict = previous_in_group([ev[key].to_numpy()], t, fuel, strict=False)
        # fills at the very same instant (two fuel items of one ticket) count as 0 apart
        same = (prev_nonstrict >= 0) & (t == t[np.maximum(prev_nonstrict, 0)])
        same &= fuel & (ev[key].astype(str) != "").to_numpy()
        gap = np.where(same, 0, gap)
        prev = np.where(same, prev_nonstrict, prev)
        parts.append((prev, gap))
    (pc, gc), (pv, gv) = parts
    use_card = gc <= gv
    prev = np.where(use_card, pc, pv)
    gap = np.minimum(gc, gv)
    by = np.where(use_card, "card", "vehicle")
    mask = fuel & (prev >= 0) & (gap < limit)
    sub = ev.loc[mask].reset_index(drop=True)
    m = np.flatnonzero(mask)
    prev_rows = ev.iloc[prev[m]].reset_index(drop=True)
    gap_min = gap[m] / 60e9
    detail = ("Fill at " + _local(sub["time"], context.tz) + " on card " + sub["card_id"]
              + " / vehicle " + sub["vehicle_id"] + " " + _fmt(gap_min, 0).to_numpy()
              + " min after fill " + prev_rows["tx_id"].to_numpy(dtype=object) + " on the same "
              + by[m] + " (" + _fmt(prev_rows["litres"], 2).to_numpy() + " then "
              + _fmt(sub["litres"], 2) + "); interval threshold " + f"{interval_h:g}" + " h.")
    return _tx_hits(
        ev, mask, code="fuel.rapid_refill", severity="medium",
        title="Two fills within a short interval", detail=detail,
        score=1.0 - gap_min / (interval_h * 60.0),
        measured={"previous_tx_id": prev_rows["tx_id"], "previous_time": _iso(
            prev_rows["time"]), "previous_litres": prev_rows["litres"],
            "interval_min": np.round(gap_min, 2), "same": by[m],
            "litres": sub["litres"]},
        thresholds={"interval_h": interval_h},
        checked=int(fuel.sum()), not_checkable=int((~fuel).sum()))


@rule("fuel.product_mismatch", title="Product differs from the vehicle's fuel type",
      title_zh="加油品种与车辆燃料类型不符", severity="medium",
      inputs=("transactions", "vehicles"),
      thresholds=[Threshold("non_fuel", True, "", "also report purchases that are not fuel")])
def product_mismatch(evidence: pd.DataFrame, *, context: FuelContext,
                     non_fuel: bool) -> gpd.GeoDataFrame:
    """The product's fuel class differs from the vehicle's fuel type; non-fuel purchases."""
    ev = evidence
    pcls = fuel_class(ev["product"])
    vcls = fuel_class(ev["fuel_type"])
    known_p = pcls != ""
    is_nf = pcls == "non-fuel"
    fuels = ("petrol", "diesel", "lpg", "cng", "electric")
    vfuel = np.isin(vcls, fuels)
    compatible = (pcls == vcls) | ((pcls == "additive") & (vcls == "diesel"))
    wrong = known_p & ~is_nf & vfuel & ~compatible
    judged = (is_nf if non_fuel else np.zeros(len(ev), bool)) | (known_p & ~is_nf & vfuel)
    mask = wrong | (is_nf & bool(non_fuel))
    sub = ev.loc[mask].reset_index(drop=True)
    nf = is_nf[mask]
    detail = pd.Series(np.where(
        nf, "Purchase of " + ("'" + sub["product"] + "'").to_numpy(dtype=object)
        + " (not fuel) on fuel card " + sub["card_id"].to_numpy(dtype=object)
        + ", amount " + _fmt(sub["amount"], 2).to_numpy() + ".",
        "Product '" + sub["product"].to_numpy(dtype=object) + "' (" + pcls[mask]
        + ") bought for vehicle " + sub["vehicle_id"].to_numpy(dtype=object)
        + " whose fuel type is '" + sub["fuel_type"].to_numpy(dtype=object) + "' ("
        + vcls[mask] + ")."), index=sub.index)
    return _tx_hits(
        ev, mask, code="fuel.product_mismatch", severity="medium",
        title=np.where(nf, "Non-fuel purchase on a fuel card",
                       "Product differs from the vehicle's fuel type"),
        detail=detail, score=np.where(nf, 0.5, 1.0),
        measured={"product": sub["product"], "product_class": pcls[mask],
                  "fuel_type": sub["fuel_type"], "fuel_type_class": vcls[mask],
                  "non_fuel": nf},
        thresholds={"non_fuel": bool(non_fuel)},
        checked=int(judged.sum()), not_checkable=int((~judged).sum()))


@rule("fuel.inactive_vehicle", title="Fuel bought for a vehicle that is not in use",
      title_zh="为停用或未行驶车辆加油", severity="high",
      inputs=("transactions", "vehicles", "cards", "fixes"),
      thresholds=[Threshold("min_distance_km", 1.0, "km",
                            "GPS distance per month below which the vehicle did not move"),
                  Threshold("statuses", list(INACTIVE_STATUSES), "",
                            "vehicle statuses meaning 'not in service'")])
def inactive_vehicle(evidence: pd.DataFrame, *, context: FuelContext, min_distance_km: float,
                     statuses: Sequence[str]) -> gpd.GeoDataFrame:
    """Transactions for a decommissioned vehicle, outside its service dates, or one that did not
    move in the month."""
    ev = evidence
    n = len(ev)
    status = ev["status"].astype(str).str.strip().str.lower()
    bad_status = status.isin([str(s).strip().lower() for s in statuses]).to_numpy()
    t = ev["time"]
    before = (ev["active_from"].notna() & (t < ev["active_from"])).to_numpy()
    after = (ev["active_to"].notna() & (t > ev["active_to"])).to_numpy()
    gps_km = np.full(n, np.nan)
    n_fixes = np.zeros(n, dtype=np.int64)
    vm = context.vehicle_months
    if vm is not None and len(vm):
        key = pd.MultiIndex.from_arrays([vm["vehicle_id"].astype(str), vm["period"].astype(str)])
        look = pd.MultiIndex.from_arrays([ev["vehicle_id"].astype(str), ev["period"].astype(str)])
        pos = key.get_indexer(look)
        found = pos >= 0
        gps_km[found] = vm["gps_km"].to_numpy(dtype="float64")[pos[found]]
        n_fixes[found] = vm["n_fixes"].to_numpy(dtype="int64")[pos[found]]
    gps = ev["gps"].to_numpy(dtype=bool)
    still = gps & (n_fixes > 0) & (gps_km < min_distance_km)
    flagged = bad_status | before | after | still
    reason = np.full(n, "", dtype=object)
    reason = np.where(still, "moved " + _fmt(gps_km, 2).to_numpy(dtype=object)
                      + " km by GPS in the month", reason)
    reason = np.where(after, "after the end of service", reason)
    reason = np.where(before, "before the start of service", reason)
    reason = np.where(bad_status, "status '" + ev["status"].to_numpy(dtype=object) + "'",
                      reason)
    judged_rows = (status != "").to_numpy() | ev["active_from"].notna().to_numpy() \
        | ev["active_to"].notna().to_numpy() | (gps & (n_fixes > 0))
    frame = pd.DataFrame({
        "vehicle_id": ev["vehicle_id"].to_numpy(dtype=object),
        "period": ev["period"].to_numpy(dtype=object), "tx_id": ev["tx_id"].to_numpy(dtype=object),
        "card_id": ev["card_id"].to_numpy(dtype=object),
        "station_id": ev["station_id"].to_numpy(dtype=object),
        "unit": ev["unit"].to_numpy(dtype=object), "time": ev["time"],
        "amount": ev["amount"].to_numpy(dtype="float64"), "reason": reason,
        "status": ev["status"].to_numpy(dtype=object), "gps_km": gps_km, "n_fixes": n_fixes,
        "lon": ev["station_lon"].to_numpy(dtype="float64"),
        "lat": ev["station_lat"].to_numpy(dtype="float64"),
        "active_from": ev["active_from"], "active_to": ev["active_to"],
    })
    months = frame.assign(judged=judged_rows).groupby(["vehicle_id", "period"], sort=True)
    judged_months = int(months["judged"].any().sum())
    total_months = int(months.ngroups)
    hit = frame.loc[flagged].sort_values(["vehicle_id", "period", "time"])
    if not len(hit):
        return _empty(judged_months, total_months - judged_months)
    g = hit.groupby(["vehicle_id", "period"], sort=True)
    agg = g.agg(unit=("unit", "first"), first_time=("time", "min"), amount=("amount", "sum"),
                status=("status", "first"), gps_km=("gps_km", "first"),
                n_fixes=("n_fixes", "first"), active_from=("active_from", "first"),
                active_to=("active_to", "first"), fills=("tx_id", "size")).reset_index()
    tx_lists = g["tx_id"].agg(list).to_numpy()
    card_lists = g["card_id"].agg(lambda s: sorted(set(s) - {""})).to_numpy()
    station_lists = g["station_id"].agg(lambda s: sorted(set(s) - {""})).to_numpy()
    reasons = g["reason"].agg(lambda s: sorted(set(s))).to_numpy()
    lonlat = hit.dropna(subset=["lon", "lat"]).drop_duplicates(["vehicle_id", "period", "lon",
                                                                  "lat"])
    geoms = shapely.multipoints(shapely.points(lonlat["lon"].to_numpy(), lonlat["lat"].to_numpy()),
                                indices=pd.MultiIndex.from_frame(
                                    agg[["vehicle_id", "period"]]).get_indexer(
                                    pd.MultiIndex.from_frame(lonlat[["vehicle_id", "period"]])))
    geometry = np.full(len(agg), None, dtype=object)
    if len(lonlat):
        present = np.unique(pd.MultiIndex.from_frame(agg[["vehicle_id", "period"]]).get_indexer(
            pd.MultiIndex.from_frame(lonlat[["vehicle_id", "period"]])))
        geometry[present] = geoms
    k = len(agg)
    reason_text = pd.Series(["; ".join(r) for r in reasons])
    detail = ("Vehicle " + agg["vehicle_id"] + " in " + agg["period"] + ": "
              + agg["fills"].astype(str) + " transaction(s) while " + reason_text
              + " (inactive statuses: " + ", ".join(map(str, statuses[:4]))
              + (" …" if len(statuses) > 4 else "") + "; minimum movement "
              + f"{min_distance_km:g}" + " km per month).")
    evidence_v = _records({
        "vehicle_id": agg["vehicle_id"], "tx_ids": [list(x) for x in tx_lists],
        "card_ids": [list(x) for x in card_lists],
        "station_ids": [list(x) for x in station_lists],
        "reasons": [list(r) for r in reasons], "status": agg["status"],
        "active_from": _iso(agg["active_from"]), "active_to": _iso(agg["active_to"]),
        "gps_km": np.round(agg["gps_km"].to_numpy(dtype="float64"), 3),
        "n_fixes": agg["n_fixes"],
        "thresholds": [{"min_distance_km": min_distance_km, "statuses": list(statuses)}] * k},
        k)
    strong = np.array([any(not x.startswith("moved") for x in r) for r in reasons], dtype=bool)
    hits = gpd.GeoDataFrame({
        "rule": ["fuel.inactive_vehicle"] * k, "subject_type": ["vehicle"] * k,
        "subject_id": agg["vehicle_id"].to_numpy(dtype=object),
        "unit": agg["unit"].to_numpy(dtype=object), "period": agg["period"].to_numpy(dtype=object),
        "severity": ["high"] * k, "score": np.where(strong, 1.0, 0.7),
        "amount_at_risk": agg["amount"].to_numpy(dtype="float64"),
        "observed_at": agg["first_time"].to_numpy(),
        "title": ["Fuel bought for a vehicle that is not in use"] * k,
        "detail": detail.to_numpy(dtype=object), "evidence": evidence_v,
        "tx_ids": [list(x) for x in tx_lists],
        "vehicle_id": agg["vehicle_id"].to_numpy(dtype=object), "card_id": [""] * k,
    }, geometry=gpd.GeoSeries(geometry, crs=4326), crs=4326)
    return _checks(hits, judged_months, total_months - judged_months)


@rule("fuel.odometer_anomaly", title="Odometer reading inconsistent",
      title_zh="里程表读数异常", severity="medium",
      inputs=("transactions", "fixes", "cards"),
      thresholds=[Threshold("rel_tolerance", 0.25, "share",
                            "allowed relative difference to the GPS distance"),
                  Threshold("abs_tolerance_km", 20.0, "km",
                            "allowed absolute difference to the GPS distance"),
                  Threshold("max_delta_km", 1000.0, "km",
                            "largest plausible advance between two readings"),
                  Threshold("require_odometer", False, "",
                            "report fills without a reading (when the card prompts for one)")])
def odometer_anomaly(evidence: pd.DataFrame, *, context: FuelContext, rel_tolerance: float,
                     abs_tolerance_km: float, max_delta_km: float,
                     require_odometer: bool) -> gpd.GeoDataFrame:
    """The reported odometer goes backwards, stands still, jumps, or disagrees with GPS."""
    ev = evidence
    odo = ev["odometer_km"].to_numpy(dtype="float64")
    reported = np.isfinite(odo) & (odo > 0)
    valid = reported & ev["time"].notna().to_numpy() \
        & (ev["vehicle_id"].astype(str) != "").to_numpy()
    prev = previous_in_group([ev["vehicle_id"].to_numpy()], _t_ns(ev), valid)
    prev = np.where(valid, prev, -1)
    has = prev >= 0
    p = np.maximum(prev, 0)
    delta = np.where(has, odo - odo[p], np.nan)
    cum = ev["cum_m"].to_numpy(dtype="float64")
    gps = ev["gps"].to_numpy(dtype=bool)
    in_range = ev["in_range"].to_numpy(dtype=bool)
    gps_km = np.where(has & gps & in_range & in_range[p], (cum - cum[p]) / 1000.0, np.nan)
    diff = np.abs(delta - gps_km)
    gps_bad = np.isfinite(diff) & (diff > abs_tolerance_km) & (diff > rel_tolerance * gps_km)
    back = has & (delta < 0)
    still = has & (delta == 0)
    jump = has & (delta > max_delta_km)
    missing = ~reported & bool(require_odometer)
    kind = np.where(back, "backwards", np.where(still, "unchanged", np.where(
        jump, "jump", np.where(gps_bad, "gps", np.where(missing, "missing", "")))))
    mask = kind != ""
    sub = ev.loc[mask].reset_index(drop=True)
    m = np.flatnonzero(mask)
    k = kind[mask]
    prev_rows = ev.iloc[p[m]].reset_index(drop=True)
    what = np.where(k == "backwards", "went backwards", np.where(
        k == "unchanged", "did not advance", np.where(
            k == "jump", "advanced more than " + f"{max_delta_km:g}" + " km",
            "differs from the GPS distance of " + _fmt(gps_km[m], 1).to_numpy(dtype=object)
            + " km by more than " + f"{abs_tolerance_km:g}" + " km and "
            + f"{rel_tolerance:g}" + " of it")))
    has_prev = prev[m] >= 0
    detail = pd.Series(np.where(
        k == "missing",
        ("Fill on vehicle " + sub["vehicle_id"] + " at " + _local(sub["time"], context.tz)
         + " without an odometer reading (reported: " + _fmt(odo[m], 1)
         + "); a reading is required.").to_numpy(dtype=object),
        ("Odometer of vehicle " + sub["vehicle_id"] + " at "
         + _local(sub["time"], context.tz) + ": " + _fmt(odo[m], 1) + " km after "
         + _fmt(np.where(has_prev, prev_rows["odometer_km"], np.nan), 1).to_numpy()
         + " km at " + _local(prev_rows["time"], context.tz).to_numpy() + " ("
         + prev_rows["tx_id"].to_numpy(dtype=object) + "): change "
         + _fmt(delta[m], 1).to_numpy() + " km, " + pd.Series(what) + ".").to_numpy(
             dtype=object)))
    title = np.where(k == "backwards", "Odometer reading went backwards", np.where(
        k == "unchanged", "Odometer reading did not advance", np.where(
            k == "jump", "Odometer reading jumped implausibly", np.where(
                k == "missing", "Fill without an odometer reading",
                "Odometer advance differs from the GPS distance"))))
    score = np.where(k == "backwards", 1.0, np.where(k == "jump", 0.8, np.where(
        k == "unchanged", 0.6, np.where(k == "missing", 0.3, np.clip(
            diff[m] / np.maximum(gps_km[m], 1.0), 0, 1)))))
    judged = int(has.sum()) + int(missing.sum())
    return _tx_hits(
        ev, mask, code="fuel.odometer_anomaly", severity="medium", title=title, detail=detail,
        score=score,
        measured={"odometer_km": odo[m],
                  "previous_odometer_km": np.where(has_prev, prev_rows["odometer_km"], np.nan),
                  "previous_tx_id": np.where(has_prev, prev_rows["tx_id"], None),
                  "previous_time": np.where(has_prev, np.asarray(_iso(prev_rows["time"]),
                                                                 dtype=object), None),
                  "delta_km": np.round(delta[m], 3), "gps_km": np.round(gps_km[m], 3),
                  "kind": k},
        thresholds={"rel_tolerance": rel_tolerance, "abs_tolerance_km": abs_tolerance_km,
                    "max_delta_km": max_delta_km, "require_odometer": bool(require_odometer)},
        checked=judged, not_checkable=len(ev) - judged)
