"""The requisition rules: pure functions of the per-claim table built by :mod:`imagery.compare`.

Each rule is registered in :data:`geosup.rules.REGISTRY` with its code, a neutral title
(English and Chinese), its default severity, the inputs it needs and its thresholds. A rule
takes the *claims table* (one row per claim used, the columns below), a
:class:`RuleContext` (the persons registry) and its thresholds as keyword arguments, and
returns a table of *hits* (:data:`HIT_COLUMNS`, no geometry) that
:func:`imagery.compare.compare` turns into alerts (claim geometry, image chips) with
:func:`geosup.alerts.make_alerts`. An alert states what was measured and which threshold
fired; it never says anyone cheated.

The claims table (:data:`TABLE_COLUMNS`; extra columns are ignored):

``claim_id, project_id, claimant_id, item, claimed_area_m2, amount``
    the claim as filed (``item`` one of :data:`ITEMS`);
``notice_date``
    the project's notice (freeze) date, a naive local date (``datetime64``), NaT if unknown;
``before_id, after_id, before_date, after_date``
    the images compared (the last before and the first after the notice date);
``area_m2``
    the claim polygon's area, measured in a metric CRS;
``inconclusive, reason``
    from :func:`imagery.stats.parcel_stats`: too few valid pixels or too little valid
    coverage. Inconclusive claims are **never scored** by the image rules;
``change_share, change_q90, change_threshold``
    share of the claim's valid area whose change magnitude is above the scene threshold,
    the magnitude's coverage-weighted 90th percentile and the scene threshold;
``builtup_index, builtup_share, builtup_mean``
    the built-up or brightness change index (``dndbi`` with SWIR, else ``dbright``);
``veg_gain_share, veg_gain_mean, veg_gain_q90, veg_gain_threshold``
    the same for ΔNDVI (vegetation gain positive);
``seen_builtup_share, seen_builtup_m2``
    share and area of the claim classified built-up (non-vegetated, not water) in the
    *before* image, i.e. at the notice date.

The rules:

``requisition.built_after_notice``
    A building or greenhouse claim (``items``) whose area changed between the last image
    before and the first image after the notice date: at least ``min_changed_share`` of the
    claim's valid area above the scene's change-magnitude threshold, and the change is not
    a vegetation gain (mean ΔNDVI below ``max_ndvi_gain``) and, if asked for, at least
    ``min_builtup_share`` above the built-up/brightness index's scene threshold. Score:
    ``x / (1 + x)`` with ``x`` the magnitude's 90th percentile over the scene threshold.
``requisition.planted_after_notice``
    A trees or crops claim whose vegetation appeared after the notice date: at least
    ``min_gain_share`` of its valid area above the scene's ΔNDVI threshold and a mean ΔNDVI
    of at least ``min_ndvi_gain``. Score as above from the ΔNDVI 90th percentile.
``requisition.claimed_not_seen``
    A building or greenhouse claim whose claimed area is more than ``max_ratio`` times the
    built-up area the before image shows inside the claim, by at least ``min_excess_m2``.
    Claimed areas are compared as footprints: where claims state floor area, raise
    ``max_ratio``. ``ndvi_max``, ``water_ndvi`` and ``ndbi_min`` say which pixels of the
    before image count as built-up (:func:`imagery.compare.builtup_mask`).
``requisition.deceased_claimant``
    The persons registry records the claimant's death at least ``min_days`` before the
    project's notice date.
``requisition.moved_in_after_notice``
    The persons registry records the claimant moving in at least ``min_days`` after the
    notice date.

Examples
--------
>>> import pandas as pd
>>> claims = pd.DataFrame({
...     "claim_id": ["C1", "C2"], "project_id": ["P"] * 2, "claimant_id": ["A", "B"],
...     "item": ["building", "building"], "claimed_area_m2": [120.0, 100.0],
...     "amount": [1e5, 8e4], "notice_date": pd.to_datetime(["2024-03-15"] * 2),
...     "after_date": pd.to_datetime(["2024-06-10"] * 2), "inconclusive": [False, False],
...     "change_share": [0.42, 0.01], "change_q90": [14.0, 2.0],
...     "change_threshold": [6.0, 6.0], "veg_gain_mean": [-0.3, 0.0]})
>>> hits = built_after_notice(claims, RuleContext())
>>> hits[["subject_id", "severity"]].values.tolist(), round(float(hits["score"][0]), 3)
([['C1', 'medium']], 0.7)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from geosup.rules import Threshold, rule

__all__ = [
    "HIT_COLUMNS",
    "IMAGE_RULES",
    "ITEMS",
    "ITEM_ALIASES",
    "PERSON_RULES",
    "REQUISITION_RULES",
    "TABLE_COLUMNS",
    "RuleContext",
    "built_after_notice",
    "claimed_not_seen",
    "deceased_claimant",
    "moved_in_after_notice",
    "normalize_items",
    "planted_after_notice",
]

#: Claim items.
ITEMS: tuple[str, ...] = ("building", "greenhouse", "trees", "crops", "other")

#: Item labels recognised (lower case, spaces, hyphens and underscores dropped).
ITEM_ALIASES: dict[str, str] = {
    **dict.fromkeys(("building", "buildings", "house", "houses", "structure", "shed", "房屋",
                     "房子", "建筑", "建筑物", "住房", "住宅", "附属房", "棚房", "简易房"),
                    "building"),
    **dict.fromkeys(("greenhouse", "greenhouses", "polytunnel", "大棚", "温室", "温室大棚",
                     "蔬菜大棚", "塑料大棚"), "greenhouse"),
    **dict.fromkeys(("trees", "tree", "orchard", "nursery", "saplings", "树木", "林木",
                     "苗木", "果树", "树", "经济林"), "trees"),
    **dict.fromkeys(("crops", "crop", "youngcrops", "青苗", "农作物", "庄稼", "作物"),
                    "crops"),
    **dict.fromkeys(("other", "others", "其他", "其它", "附着物"), "other"),
}

#: Codes of the rules that read the images, in the order compare runs them.
IMAGE_RULES: tuple[str, ...] = (
    "requisition.built_after_notice",
    "requisition.planted_after_notice",
    "requisition.claimed_not_seen",
)
#: Codes of the rules that read the persons registry.
PERSON_RULES: tuple[str, ...] = (
    "requisition.deceased_claimant",
    "requisition.moved_in_after_notice",
)
#: Every requisition rule.
REQUISITION_RULES: tuple[str, ...] = IMAGE_RULES + PERSON_RULES

#: Columns of the table every rule returns.
HIT_COLUMNS: tuple[str, ...] = (
    "rule", "subject_type", "subject_id", "unit", "period", "severity", "score",
    "amount_at_risk", "observed_at", "title", "detail", "evidence",
)

#: Columns of the claims table the rules read (see the module docstring).
TABLE_COLUMNS: tuple[str, ...] = (
    "claim_id", "project_id", "claimant_id", "item", "claimed_area_m2", "amount",
    "notice_date", "before_id", "after_id", "before_date", "after_date", "area_m2",
    "inconclusive", "reason", "valid_coverage", "effective_pixels",
    "change_share", "change_mean", "change_q90", "change_threshold",
    "builtup_index", "builtup_share", "builtup_mean", "builtup_threshold",
    "veg_gain_share", "veg_gain_mean", "veg_gain_q90", "veg_gain_threshold",
    "seen_builtup_share", "seen_builtup_m2",
)


@dataclass(frozen=True)
class RuleContext:
    """What the requisition rules need besides the claims table.

    Attributes
    ----------
    persons : DataFrame, optional
        The persons registry (``person_id, name, died_on, moved_in_on …``; ``person_id``
        matches the claims' ``claimant_id``). Dates are read as local calendar dates:
        tz-aware values are converted to ``timezone`` first.
    timezone : str, default "Asia/Shanghai"
        The zone of the registry's dates.
    """

    persons: pd.DataFrame | None = None
    timezone: str = "Asia/Shanghai"


# ---------------------------------------------------------------------------------------------
# Helpers (vectorised over claims)
# ---------------------------------------------------------------------------------------------


def normalize_items(values: pd.Series | Sequence[Any]) -> pd.Series:
    """Canonical item names (:data:`ITEMS`); ``<NA>`` for a label not recognised.

    Examples
    --------
    >>> normalize_items(["Building", "大棚", "fruit trees", "青苗"]).tolist()
    ['building', 'greenhouse', <NA>, 'crops']
    """
    text = pd.Series(values, dtype="string").str.lower().str.replace(r"[\s\-_]", "",
                                                                      regex=True)
    return text.map(ITEM_ALIASES).astype("string")


def _col(table: pd.DataFrame, name: str, default: Any = np.nan) -> pd.Series:
    if name in table.columns:
        return table[name]
    return pd.Series(default, index=table.index)


def _num(table: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(_col(table, name), errors="coerce").astype("float64")


def _local_dates(values: pd.Series, timezone: str) -> pd.Series:
    """Naive midnight timestamps of the local calendar dates of ``values``."""
    out = pd.to_datetime(values, errors="coerce", format="mixed")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(timezone).dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[ns]")


def _date_text(values: pd.Series) -> pd.Series:
    d = pd.to_datetime(values, errors="coerce")
    return d.dt.strftime("%Y-%m-%d").astype("string").fillna("")


def _period(table: pd.DataFrame) -> pd.Series:
    return _date_text(_col(table, "notice_date", pd.NaT))


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string").fillna("")


def _fmt(values: pd.Series, digits: int = 2) -> pd.Series:
    return values.round(digits).astype("string").fillna("n/a")


def _pct(values: pd.Series) -> pd.Series:
    return (values * 100).round(1).astype("string").fillna("n/a") + " %"


def _score(x: pd.Series) -> np.ndarray:
    """``x / (1 + x)`` for ``x >= 0`` (0 otherwise): 0.5 when ``x`` = 1."""
    v = np.clip(x.to_numpy(dtype="float64"), 0.0, None)
    v = np.where(np.isfinite(v), v, 0.0)
    return v / (1.0 + v)


def _observed(table: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(_col(table, column, pd.NaT), errors="coerce")


def _records(columns: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
    """Column-wise evidence (lists or scalars) as one dict per hit, NaN as None."""
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for key, values in columns.items():
        if isinstance(values, pd.Series | np.ndarray | list):
            seq = list(values.tolist() if hasattr(values, "tolist") else values)
            for rec, v in zip(out, seq, strict=True):
                if (isinstance(v, float) and not np.isfinite(v)) or v is pd.NA or v is pd.NaT:
                    v = None
                rec[key] = v
        else:
            for rec in out:
                rec[key] = values
    return out


def _empty_hits() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in HIT_COLUMNS})


def _hits(data: Mapping[str, Any], n: int) -> pd.DataFrame:
    if n == 0:
        return _empty_hits()
    frame = pd.DataFrame({c: (v.to_numpy() if isinstance(v, pd.Series) else v)
                          for c, v in data.items()}, index=pd.RangeIndex(n))
    return frame.loc[:, list(HIT_COLUMNS)]


def _items(table: pd.DataFrame, items: Sequence[str]) -> np.ndarray:
    return _text(_col(table, "item", "")).isin([str(i) for i in items]).to_numpy(dtype=bool)


def _conclusive(table: pd.DataFrame) -> np.ndarray:
    flag = _col(table, "inconclusive", True)
    return ~flag.fillna(True).to_numpy(dtype=bool)


def _image_evidence(sel: pd.DataFrame) -> dict[str, Any]:
    return {
        "claim_id": _text(sel["claim_id"]), "project_id": _text(_col(sel, "project_id", "")),
        "claimant_id": _text(_col(sel, "claimant_id", "")),
        "item": _text(_col(sel, "item", "")),
        "notice_date": _date_text(_col(sel, "notice_date", pd.NaT)),
        "before_image": _text(_col(sel, "before_id", "")),
        "after_image": _text(_col(sel, "after_id", "")),
        "before_date": _date_text(_col(sel, "before_date", pd.NaT)),
        "after_date": _date_text(_col(sel, "after_date", pd.NaT)),
        "claim_area_m2": _num(sel, "area_m2").round(1),
        "valid_coverage": _num(sel, "valid_coverage").round(4),
        "effective_pixels": _num(sel, "effective_pixels").round(1),
        "change_share": _num(sel, "change_share").round(4),
        "change_mean": _num(sel, "change_mean").round(3),
        "change_q90": _num(sel, "change_q90").round(3),
        "change_threshold": _num(sel, "change_threshold").round(3),
        "builtup_index": _text(_col(sel, "builtup_index", "")),
        "builtup_share": _num(sel, "builtup_share").round(4),
        "builtup_mean": _num(sel, "builtup_mean").round(4),
        "veg_gain_share": _num(sel, "veg_gain_share").round(4),
        "veg_gain_mean": _num(sel, "veg_gain_mean").round(4),
        "veg_gain_q90": _num(sel, "veg_gain_q90").round(4),
        "veg_gain_threshold": _num(sel, "veg_gain_threshold").round(4),
        "seen_builtup_m2": _num(sel, "seen_builtup_m2").round(1),
        "claimed_area_m2": _num(sel, "claimed_area_m2").round(1),
    }


# ---------------------------------------------------------------------------------------------
# Image rules
# ---------------------------------------------------------------------------------------------


@rule(
    "requisition.built_after_notice",
    title="Change inside a building or greenhouse claim after the notice date",
    title_zh="公告日后申报建筑物或大棚范围内影像发生变化",
    severity="medium",
    inputs=("claims", "images"),
    thresholds=[
        Threshold("items", ("building", "greenhouse"), "items", "claim items the rule reads"),
        Threshold("min_changed_share", 0.05, "share",
                  "share of the claim's valid area with change magnitude above the scene "
                  "threshold"),
        Threshold("max_ndvi_gain", 0.5, "ΔNDVI",
                  "mean ΔNDVI at or above which the change is a vegetation gain, not building"),
        Threshold("min_builtup_share", 0.0, "share",
                  "share of the claim above the built-up/brightness index's scene threshold "
                  "(0: not required)"),
        Threshold("high_share", 0.5, "share", "changed share from which severity is high"),
    ],
)
def built_after_notice(claims: pd.DataFrame, context: RuleContext, *,
                       items: Sequence[str] = ("building", "greenhouse"),
                       min_changed_share: float = 0.05, max_ndvi_gain: float = 0.5,
                       min_builtup_share: float = 0.0, high_share: float = 0.5) -> pd.DataFrame:
    """Building or greenhouse claims whose area changed after the notice date (no greening)."""
    code = "requisition.built_after_notice"
    share = _num(claims, "change_share")
    veg = _num(claims, "veg_gain_mean")
    bshare = _num(claims, "builtup_share")
    fire = (_items(claims, items) & _conclusive(claims)
            & (share >= float(min_changed_share)).to_numpy()
            & ~(veg >= float(max_ndvi_gain)).to_numpy())
    if float(min_builtup_share) > 0:
        fire &= (bshare >= float(min_builtup_share)).to_numpy()
    sel = claims.loc[fire]
    n = len(sel)
    if not n:
        return _empty_hits()
    s = _num(sel, "change_share")
    q90 = _num(sel, "change_q90")
    th = _num(sel, "change_threshold")
    score = _score(q90 / th)
    severity = np.where(s >= float(high_share), "high", "medium")
    evidence = _image_evidence(sel)
    evidence["thresholds"] = {"min_changed_share": min_changed_share,
                              "max_ndvi_gain": max_ndvi_gain,
                              "min_builtup_share": min_builtup_share, "high_share": high_share}
    detail = ("Claim " + _text(sel["claim_id"]) + " (" + _text(sel["item"]) + "): "
              + _pct(s) + " of its area changed between " + evidence["before_date"] + " and "
              + evidence["after_date"] + " (notice date " + evidence["notice_date"]
              + "); change magnitude p90 " + _fmt(q90) + " vs scene threshold " + _fmt(th)
              + ", mean ΔNDVI " + _fmt(_num(sel, "veg_gain_mean"), 3)
              + f" (thresholds: changed share ≥ {min_changed_share:g}, "
              f"ΔNDVI < {max_ndvi_gain:g})")
    return _hits({
        "rule": code, "subject_type": "claim", "subject_id": _text(sel["claim_id"]),
        "unit": _text(_col(sel, "project_id", "")), "period": _period(sel),
        "severity": severity, "score": score,
        "amount_at_risk": _num(sel, "amount"), "observed_at": _observed(sel, "after_date"),
        "title": "Change inside a building or greenhouse claim after the notice date",
        "detail": detail, "evidence": _records(evidence, n),
    }, n)


@rule(
    "requisition.planted_after_notice",
    title="Vegetation gain inside a trees or crops claim after the notice date",
    title_zh="公告日后申报林木或青苗范围内植被增加",
    severity="medium",
    inputs=("claims", "images"),
    thresholds=[
        Threshold("items", ("trees", "crops"), "items", "claim items the rule reads"),
        Threshold("min_gain_share", 0.2, "share",
                  "share of the claim's valid area with ΔNDVI above the scene threshold"),
        Threshold("min_ndvi_gain", 0.1, "ΔNDVI", "mean ΔNDVI over the claim"),
        Threshold("high_share", 0.5, "share", "gain share from which severity is high"),
    ],
)
def planted_after_notice(claims: pd.DataFrame, context: RuleContext, *,
                         items: Sequence[str] = ("trees", "crops"),
                         min_gain_share: float = 0.2, min_ndvi_gain: float = 0.1,
                         high_share: float = 0.5) -> pd.DataFrame:
    """Trees or crops claims whose vegetation appeared after the notice date."""
    code = "requisition.planted_after_notice"
    share = _num(claims, "veg_gain_share")
    mean = _num(claims, "veg_gain_mean")
    fire = (_items(claims, items) & _conclusive(claims)
            & (share >= float(min_gain_share)).to_numpy()
            & (mean >= float(min_ndvi_gain)).to_numpy())
    sel = claims.loc[fire]
    n = len(sel)
    if not n:
        return _empty_hits()
    s = _num(sel, "veg_gain_share")
    q90 = _num(sel, "veg_gain_q90")
    th = _num(sel, "veg_gain_threshold")
    score = _score(q90 / th.where(th > 0))
    severity = np.where(s >= float(high_share), "high", "medium")
    evidence = _image_evidence(sel)
    evidence["thresholds"] = {"min_gain_share": min_gain_share, "min_ndvi_gain": min_ndvi_gain,
                              "high_share": high_share}
    detail = ("Claim " + _text(sel["claim_id"]) + " (" + _text(sel["item"]) + "): "
              + _pct(s) + " of its area gained vegetation between " + evidence["before_date"]
              + " and " + evidence["after_date"] + " (notice date " + evidence["notice_date"]
              + "); mean ΔNDVI " + _fmt(_num(sel, "veg_gain_mean"), 3) + ", p90 "
              + _fmt(q90, 3) + " vs scene threshold " + _fmt(th, 3)
              + f" (thresholds: gain share ≥ {min_gain_share:g}, "
              f"mean ΔNDVI ≥ {min_ndvi_gain:g})")
    return _hits({
        "rule": code, "subject_type": "claim", "subject_id": _text(sel["claim_id"]),
        "unit": _text(_col(sel, "project_id", "")), "period": _period(sel),
        "severity": severity, "score": score,
        "amount_at_risk": _num(sel, "amount"), "observed_at": _observed(sel, "after_date"),
        "title": "Vegetation gain inside a trees or crops claim after the notice date",
        "detail": detail, "evidence": _records(evidence, n),
    }, n)


@rule(
    "requisition.claimed_not_seen",
    title="Claimed structure area above the built-up area seen at the notice date",
    title_zh="申报建筑面积超过公告日影像所见面积",
    severity="medium",
    inputs=("claims", "images"),
    thresholds=[
        Threshold("items", ("building", "greenhouse"), "items", "claim items the rule reads"),
        Threshold("max_ratio", 1.5, "ratio",
                  "claimed area over the built-up area seen in the before image"),
        Threshold("min_excess_m2", 20.0, "m²", "claimed minus seen area, at least"),
        Threshold("high_ratio", 4.0, "ratio", "ratio from which severity is high"),
        Threshold("ndvi_max", 0.2, "NDVI",
                  "before-image pixels below this NDVI are non-vegetated (built-up candidates)"),
        Threshold("water_ndvi", -0.1, "NDVI", "pixels below this NDVI are water, not built-up"),
        Threshold("ndbi_min", 0.0, "NDBI", "with a SWIR band, built-up needs NDBI above this"),
    ],
)
def claimed_not_seen(claims: pd.DataFrame, context: RuleContext, *,
                     items: Sequence[str] = ("building", "greenhouse"), max_ratio: float = 1.5,
                     min_excess_m2: float = 20.0, high_ratio: float = 4.0,
                     ndvi_max: float = 0.2, water_ndvi: float = -0.1,
                     ndbi_min: float = 0.0) -> pd.DataFrame:
    """Claimed structure area far above the built-up area the before image shows.

    ``ndvi_max``, ``water_ndvi`` and ``ndbi_min`` are read by
    :func:`imagery.compare.compare` when it classifies the before image; they are listed
    here so that ``geosup rules`` shows them with the rule they serve.
    """
    code = "requisition.claimed_not_seen"
    claimed = _num(claims, "claimed_area_m2")
    seen = _num(claims, "seen_builtup_m2")
    excess = claimed - seen.fillna(0.0)
    fire = (_items(claims, items) & _conclusive(claims)
            & seen.notna().to_numpy() & claimed.notna().to_numpy()
            & (claimed > float(max_ratio) * seen).to_numpy()
            & (excess >= float(min_excess_m2)).to_numpy())
    sel = claims.loc[fire]
    n = len(sel)
    if not n:
        return _empty_hits()
    c = _num(sel, "claimed_area_m2")
    s = _num(sel, "seen_builtup_m2")
    ex = c - s
    ratio = c / s.where(s > 0)
    score = np.clip((ex / c).to_numpy(dtype="float64"), 0.0, 1.0)
    severity = np.where(~(ratio < float(high_ratio)).to_numpy(), "high", "medium")
    amount = _num(sel, "amount") * (ex / c).clip(0.0, 1.0)
    evidence = _image_evidence(sel)
    evidence["excess_m2"] = ex.round(1)
    evidence["ratio"] = ratio.round(3)
    evidence["thresholds"] = {"max_ratio": max_ratio, "min_excess_m2": min_excess_m2,
                              "high_ratio": high_ratio, "ndvi_max": ndvi_max,
                              "water_ndvi": water_ndvi, "ndbi_min": ndbi_min}
    detail = ("Claim " + _text(sel["claim_id"]) + " (" + _text(sel["item"]) + "): "
              + _fmt(c, 1) + " m² claimed, " + _fmt(s, 1) + " m² built-up seen in the image of "
              + evidence["before_date"] + " (notice date " + evidence["notice_date"] + "), "
              + _fmt(ex, 1) + " m² more"
              + f" (thresholds: claimed > {max_ratio:g} × seen and ≥ {min_excess_m2:g} m² more)")
    return _hits({
        "rule": code, "subject_type": "claim", "subject_id": _text(sel["claim_id"]),
        "unit": _text(_col(sel, "project_id", "")), "period": _period(sel),
        "severity": severity, "score": score, "amount_at_risk": amount,
        "observed_at": _observed(sel, "before_date"),
        "title": "Claimed structure area above the built-up area seen at the notice date",
        "detail": detail, "evidence": _records(evidence, n),
    }, n)


# ---------------------------------------------------------------------------------------------
# Persons rules
# ---------------------------------------------------------------------------------------------


def _person_dates(claims: pd.DataFrame, context: RuleContext,
                  column: str) -> pd.DataFrame | None:
    """Claims (with a notice date) joined to the registry's ``column`` date."""
    persons = context.persons
    if persons is None or column not in persons.columns or "person_id" not in persons.columns:
        return None
    reg = pd.DataFrame({"claimant_id": _text(persons["person_id"]).to_numpy(),
                        "person_date": _local_dates(persons[column], context.timezone)
                        .to_numpy(),
                        "person_name": (_text(persons["name"]).to_numpy()
                                        if "name" in persons.columns else "")})
    reg = reg.dropna(subset=["person_date"]).drop_duplicates("claimant_id")
    if not len(reg):
        return None
    table = claims.assign(claimant_id=_text(_col(claims, "claimant_id", "")),
                          _pos=np.arange(len(claims)),
                          notice=_local_dates(_col(claims, "notice_date", pd.NaT),
                                              context.timezone).to_numpy())
    table = table.dropna(subset=["notice"]).merge(reg, on="claimant_id", how="inner")
    return table.sort_values("_pos")


def _person_hits(code: str, table: pd.DataFrame, days: pd.Series, *, title: str,
                 severity: str, what: str, date_key: str, min_days: int) -> pd.DataFrame:
    n = len(table)
    if not n:
        return _empty_hits()
    notice_text = _date_text(table["notice"])
    date_text = _date_text(table["person_date"])
    evidence = {
        "claim_id": _text(table["claim_id"]), "project_id": _text(_col(table, "project_id", "")),
        "claimant_id": _text(table["claimant_id"]), "person_name": _text(table["person_name"]),
        "item": _text(_col(table, "item", "")), "notice_date": notice_text,
        date_key: date_text, "days": days.astype("int64"),
        "claimed_area_m2": _num(table, "claimed_area_m2").round(1),
        "thresholds": {"min_days": min_days},
    }
    detail = ("Claim " + _text(table["claim_id"]) + ": the persons registry records claimant "
              + _text(table["claimant_id"]) + " " + what + " " + date_text + ", "
              + days.astype("int64").astype(str) + " day(s) from the notice date " + notice_text
              + f" (threshold: {min_days} day(s))")
    return _hits({
        "rule": code, "subject_type": "claim", "subject_id": _text(table["claim_id"]),
        "unit": _text(_col(table, "project_id", "")), "period": notice_text,
        "severity": severity,
        "score": (days / (days + 365.0)).clip(0.0, 1.0).to_numpy(dtype="float64"),
        "amount_at_risk": _num(table, "amount"), "observed_at": table["person_date"],
        "title": title, "detail": detail, "evidence": _records(evidence, n),
    }, n)


@rule(
    "requisition.deceased_claimant",
    title="Claimant recorded as deceased before the notice date",
    title_zh="申报人在征收公告日前已登记死亡",
    severity="high",
    inputs=("claims", "projects", "persons"),
    thresholds=[Threshold("min_days", 1, "days",
                          "days between the recorded death and the notice date, at least")],
)
def deceased_claimant(claims: pd.DataFrame, context: RuleContext, *,
                      min_days: int = 1) -> pd.DataFrame:
    """Claims whose claimant died at least ``min_days`` before the notice date."""
    code = "requisition.deceased_claimant"
    table = _person_dates(claims, context, "died_on")
    if table is None:
        return _empty_hits()
    days = (table["notice"] - table["person_date"]).dt.days
    keep = (days >= int(min_days)).to_numpy()
    return _person_hits(code, table.loc[keep], days[keep],
                        title="Claimant recorded as deceased before the notice date",
                        severity="high", what="as deceased on", date_key="died_on",
                        min_days=int(min_days))


@rule(
    "requisition.moved_in_after_notice",
    title="Claimant recorded as moving in after the notice date",
    title_zh="申报人在征收公告日后迁入",
    severity="medium",
    inputs=("claims", "projects", "persons"),
    thresholds=[Threshold("min_days", 1, "days",
                          "days between the notice date and the recorded move-in, at least")],
)
def moved_in_after_notice(claims: pd.DataFrame, context: RuleContext, *,
                          min_days: int = 1) -> pd.DataFrame:
    """Claims whose claimant moved in at least ``min_days`` after the notice date."""
    code = "requisition.moved_in_after_notice"
    table = _person_dates(claims, context, "moved_in_on")
    if table is None:
        return _empty_hits()
    days = (table["person_date"] - table["notice"]).dt.days
    keep = (days >= int(min_days)).to_numpy()
    return _person_hits(code, table.loc[keep], days[keep],
                        title="Claimant recorded as moving in after the notice date",
                        severity="medium", what="moving in on", date_key="moved_in_on",
                        min_days=int(min_days))
