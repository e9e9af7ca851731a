"""The alert table shared by every check.

An alert says what was measured and which threshold fired; it never accuses
anyone. Every check builds its alerts with :func:`make_alerts`, which fills the
deterministic ``alert_id`` (a hash of rule, subject and period, so that a re-run
updates instead of duplicating), validates the values and moves the geometry
to EPSG:4326.

Review workflow::

    open -> investigating -> confirmed -> rectified
         \\-> dismissed <-/
    dismissed -> open (reopened)

Examples
--------
>>> import pandas as pd
>>> alerts = make_alerts(pd.DataFrame({
...     "rule": ["fuel.over_tank_capacity"], "subject_type": ["card"],
...     "subject_id": ["C-17"], "period": ["2026-03"], "severity": ["high"],
...     "title": ["Fill above tank capacity"]}))
>>> alerts.loc[0, "status"], len(alerts.loc[0, "alert_id"])
('open', 20)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from geosup.errors import SchemaError, TransitionError, ValidationError

__all__ = [
    "ALERT_COLUMNS",
    "DOMAINS",
    "EVENT_COLUMNS",
    "MEASURED_COLUMNS",
    "REVIEW_COLUMNS",
    "SEVERITIES",
    "STATUSES",
    "TRANSITIONS",
    "alert_id",
    "alert_ids",
    "check_transition",
    "empty_alerts",
    "evidence_json",
    "make_alerts",
    "severity_rank",
]

#: Domains of the three checks.
DOMAINS: tuple[str, ...] = ("fuel", "farmland", "requisition")

#: Severities, lowest first.
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")

#: Review statuses.
STATUSES: tuple[str, ...] = ("open", "investigating", "confirmed", "dismissed", "rectified")

#: Allowed review transitions: status -> statuses it may move to.
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"investigating", "dismissed"}),
    "investigating": frozenset({"confirmed", "dismissed", "open"}),
    "confirmed": frozenset({"rectified", "investigating"}),
    "dismissed": frozenset({"open"}),
    "rectified": frozenset(),
}

#: Columns a check measures; a re-run overwrites these.
MEASURED_COLUMNS: tuple[str, ...] = (
    "rule",
    "domain",
    "severity",
    "score",
    "subject_type",
    "subject_id",
    "unit",
    "observed_at",
    "period",
    "amount_at_risk",
    "title",
    "detail",
    "evidence",
)

#: Columns owned by reviewers; a re-run never touches these.
REVIEW_COLUMNS: tuple[str, ...] = ("status", "status_by", "status_at", "status_note")

#: Every column of the alert table, in order (``geometry`` last).
ALERT_COLUMNS: tuple[str, ...] = (
    "alert_id",
    *MEASURED_COLUMNS,
    *REVIEW_COLUMNS,
    "first_seen",
    "last_seen",
    "run_id",
    "geometry",
)

#: Columns of the append-only review history.
EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "alert_id",
    "at",
    "by",
    "from_status",
    "to_status",
    "note",
)

_TEXT = ("rule", "domain", "severity", "subject_type", "subject_id", "unit", "period",
         "title", "detail", "evidence", "status", "status_by", "status_note", "run_id")
_TIME = ("observed_at", "status_at", "first_seen", "last_seen")
_FLOAT = ("score", "amount_at_risk")


def alert_id(rule: str, subject_type: str, subject_id: str, period: str = "") -> str:
    """Return the deterministic id of one alert.

    Parameters
    ----------
    rule, subject_type, subject_id, period : str
        What identifies an alert: the same four values give the same id on every run.

    Returns
    -------
    str
        20 hexadecimal characters (80 bits of SHA-256).

    Examples
    --------
    >>> alert_id("farmland.double_claim", "declaration", "D1|D2", "2025")
    'f1bd0f824e39e5fe165a'
    >>> alert_id("farmland.double_claim", "declaration", "D1|D2", "2026") != _
    True
    """
    key = "\x1f".join((str(rule), str(subject_type), str(subject_id), str(period or "")))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def alert_ids(
    rule: Iterable[str],
    subject_type: Iterable[str],
    subject_id: Iterable[str],
    period: Iterable[str],
) -> np.ndarray:
    """Vector form of :func:`alert_id` (one hash per alert, no other per-row work)."""
    keys = (
        pd.Series(list(rule), dtype="string").fillna("")
        + "\x1f" + pd.Series(list(subject_type), dtype="string").fillna("")
        + "\x1f" + pd.Series(list(subject_id), dtype="string").fillna("")
        + "\x1f" + pd.Series(list(period), dtype="string").fillna("")
    )
    return np.array(
        [hashlib.sha256(k.encode("utf-8")).hexdigest()[:20] for k in keys], dtype=object
    )


def severity_rank(severity: Iterable[str]) -> np.ndarray:
    """Return 0 (low) … 3 (critical) for each severity, -1 when unknown."""
    order = {s: i for i, s in enumerate(SEVERITIES)}
    return np.array([order.get(s, -1) for s in severity], dtype=np.int8)


def check_transition(current: str, new: str) -> None:
    """Raise :class:`TransitionError` unless a review may move ``current`` to ``new``.

    Examples
    --------
    >>> check_transition("open", "investigating")
    >>> check_transition("open", "rectified")
    Traceback (most recent call last):
    ...
    geosup.errors.TransitionError: an alert in status 'open' cannot move to 'rectified'; ...
    """
    if new not in STATUSES:
        msg = f"unknown status {new!r}; use one of: {', '.join(STATUSES)}"
        raise TransitionError(msg)
    if current == new:
        msg = f"the alert is already {current!r}"
        raise TransitionError(msg)
    allowed = TRANSITIONS.get(current, frozenset())
    if new not in allowed:
        nxt = ", ".join(sorted(allowed)) or "none (final status)"
        msg = f"an alert in status {current!r} cannot move to {new!r}; allowed next: {nxt}"
        raise TransitionError(msg)


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    if isinstance(value, (pd.Timedelta,)):
        return value.total_seconds()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def evidence_json(evidence: Mapping[str, Any] | str | None) -> str:
    """Serialise evidence to canonical JSON text (sorted keys, NaN as null)."""
    if evidence is None:
        return "{}"
    if isinstance(evidence, str):
        try:
            json.loads(evidence)
        except json.JSONDecodeError as err:
            msg = f"evidence is not valid JSON: {err}"
            raise ValidationError(msg) from err
        return evidence
    cleaned = {
        k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in evidence.items()
    }
    return json.dumps(cleaned, sort_keys=True, default=_json_default, ensure_ascii=False,
                      allow_nan=False)


def empty_alerts() -> gpd.GeoDataFrame:
    """An alert table with every column and no rows."""
    return make_alerts(pd.DataFrame({"rule": pd.Series([], dtype="string")}))


def make_alerts(
    hits: pd.DataFrame,
    *,
    run_id: str | None = None,
    now: pd.Timestamp | None = None,
) -> gpd.GeoDataFrame:
    """Turn a check's hits into a validated alert table.

    Parameters
    ----------
    hits : DataFrame or GeoDataFrame
        At least ``rule``, ``subject_type`` and ``subject_id``. Missing optional
        columns are filled; ``domain`` defaults to the part of ``rule`` before the
        dot; ``evidence`` may hold dicts (serialised to JSON). A GeoDataFrame must
        carry a CRS; its geometry is moved to EPSG:4326.
    run_id : str, optional
        The run that produced the hits.
    now : Timestamp, optional
        ``first_seen``/``last_seen`` (UTC); defaults to the current time.

    Returns
    -------
    GeoDataFrame
        Columns :data:`ALERT_COLUMNS`, EPSG:4326, status ``open``.

    Raises
    ------
    SchemaError
        A required column is missing.
    ValidationError
        Unknown severity, score outside 0–1, or a rule without a domain.

    Examples
    --------
    >>> import geopandas as gpd, shapely
    >>> hits = gpd.GeoDataFrame(
    ...     {"rule": ["farmland.over_declared"], "subject_type": ["declaration"],
    ...      "subject_id": ["D-17"], "unit": ["Village A"], "period": ["2025"],
    ...      "severity": ["high"], "score": [0.8], "amount_at_risk": [1250.0],
    ...      "title": ["Declared area 18% above the eligible area"],
    ...      "evidence": [{"declared_mu": 11.8, "eligible_mu": 10.0, "tolerance": 0.05}]},
    ...     geometry=[shapely.box(500000, 3500000, 500100, 3500100)], crs=32650)
    >>> alerts = make_alerts(hits, now=pd.Timestamp("2026-01-05", tz="UTC"))
    >>> alerts.loc[0, ["domain", "status", "first_seen"]].tolist()
    ['farmland', 'open', Timestamp('2026-01-05 00:00:00+0000', tz='UTC')]
    >>> alerts.crs.to_epsg(), alerts.loc[0, "evidence"]
    (4326, '{"declared_mu": 11.8, "eligible_mu": 10.0, "tolerance": 0.05}')
    """
    required = ("rule", "subject_type", "subject_id")
    missing = [c for c in required if c not in hits.columns]
    if missing and len(hits):
        msg = f"alerts need the column(s) {', '.join(missing)}"
        raise SchemaError(msg)
    n = len(hits)
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    out = pd.DataFrame(index=pd.RangeIndex(n))

    def col(name: str, default: Any = pd.NA) -> pd.Series:
        if name in hits.columns:
            return pd.Series(hits[name].to_numpy(), index=out.index)
        return pd.Series([default] * n, index=out.index, dtype=object)

    for name in ("rule", "subject_type", "subject_id", "unit", "period", "title", "detail"):
        out[name] = col(name, "").astype("string").fillna("")
    dom = col("domain", pd.NA).astype("string")
    out["domain"] = dom.fillna(out["rule"].str.split(".").str[0]).astype("string")
    if n and (out["domain"] == "").any():
        msg = "every alert needs a domain (or a dotted rule such as 'fuel.off_hours')"
        raise ValidationError(msg)
    out["severity"] = col("severity", "medium").astype("string").fillna("medium")
    bad = ~out["severity"].isin(SEVERITIES)
    if bad.any():
        msg = (f"unknown severity {out.loc[bad, 'severity'].iloc[0]!r}; "
               f"use one of: {', '.join(SEVERITIES)}")
        raise ValidationError(msg)
    out["score"] = pd.to_numeric(col("score", np.nan), errors="coerce").astype("float64")
    if ((out["score"] < 0) | (out["score"] > 1)).any():
        msg = "alert scores rank alerts inside a rule and must lie in 0–1"
        raise ValidationError(msg)
    out["amount_at_risk"] = pd.to_numeric(col("amount_at_risk", np.nan),
                                          errors="coerce").astype("float64")
    out["observed_at"] = pd.to_datetime(col("observed_at", pd.NaT), utc=True)
    if "evidence" in hits.columns:
        out["evidence"] = pd.Series([evidence_json(e) for e in hits["evidence"]],
                                    index=out.index, dtype="string")
    else:
        out["evidence"] = pd.Series(["{}"] * n, index=out.index, dtype="string")
    out["alert_id"] = pd.Series(
        alert_ids(out["rule"], out["subject_type"], out["subject_id"], out["period"]),
        index=out.index, dtype="string")
    dup = out["alert_id"].duplicated(keep=False)
    if dup.any():
        first = out.loc[dup].iloc[0]
        msg = (f"two hits share rule {first['rule']!r}, subject {first['subject_id']!r} "
               f"and period {first['period']!r}; a rule must report a subject once per period")
        raise ValidationError(msg)
    out["status"] = pd.Series(["open"] * n, index=out.index, dtype="string")
    out["status_by"] = pd.Series([pd.NA] * n, index=out.index, dtype="string")
    out["status_at"] = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    out["status_note"] = pd.Series([pd.NA] * n, index=out.index, dtype="string")
    out["first_seen"] = pd.Series([now] * n, index=out.index, dtype="datetime64[us, UTC]")
    out["last_seen"] = out["first_seen"].copy()
    out["run_id"] = pd.Series([run_id] * n, index=out.index, dtype="string")
    if isinstance(hits, gpd.GeoDataFrame) and hits.geometry.name in hits.columns:
        if hits.crs is None:
            msg = "alert geometry has no coordinate reference system"
            raise ValidationError(msg)
        geom = gpd.GeoSeries(hits.geometry.to_numpy(), crs=hits.crs).to_crs(4326)
        geometry = geom.to_numpy()
    else:
        geometry = np.full(n, None, dtype=object)
    out["observed_at"] = out["observed_at"].astype("datetime64[us, UTC]")
    gdf = gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(geometry, crs=4326, index=out.index))
    return gdf[list(ALERT_COLUMNS)]


def normalize_alert_frame(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """Coerce a table read back from a store or a file to the alert dtypes."""
    gdf = frame.copy()
    for name in ALERT_COLUMNS:
        if name not in gdf.columns and name != "geometry":
            gdf[name] = pd.NA
    for name in (*_TEXT, "alert_id"):
        gdf[name] = gdf[name].astype("string")
    for name in _FLOAT:
        gdf[name] = pd.to_numeric(gdf[name], errors="coerce").astype("float64")
    for name in _TIME:
        gdf[name] = pd.to_datetime(gdf[name], utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]")
    if not isinstance(gdf, gpd.GeoDataFrame) or "geometry" not in gdf.columns:
        geometry = gdf["geometry"] if "geometry" in gdf.columns else None
        gdf = gpd.GeoDataFrame(gdf.drop(columns=["geometry"], errors="ignore"),
                               geometry=gpd.GeoSeries(geometry, crs=4326, index=gdf.index))
    elif gdf.crs is None:
        gdf = gdf.set_crs(4326)
    return gdf[list(ALERT_COLUMNS)].reset_index(drop=True)
