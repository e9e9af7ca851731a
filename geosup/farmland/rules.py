"""The farmland rules: pure functions of an :class:`~geosup.farmland.tables.Overlay`.

Each rule is registered in :data:`geosup.rules.REGISTRY` with its code, a neutral
title (English and Chinese), its default severity, the inputs it needs and its
thresholds. A rule takes the overlay, a :class:`RuleContext` (the user's area
unit, the years under review, the persons registry, the metric CRS) and its
thresholds as keyword arguments, and returns a table of *hits* (a GeoDataFrame in
the metric CRS with the columns :data:`HIT_COLUMNS`) that
:func:`geosup.alerts.make_alerts` turns into alerts.

Alerts are raised only for declarations of the years under review; declarations
of earlier years ("previous") only inform ``year_change`` and ``claim_frequency``.
An alert states what was measured and which threshold fired; it never says
anyone cheated. Every alert names the declaration(s), the applicant(s) and the
reference parcel(s), and carries the areas in m² and in the user's unit
(``<name>_m2`` and ``<name>_area`` with ``area_unit``), the thresholds in force
and the subsidy at risk.

The review map draws only what an alert carries (it never recomputes a check): the
alert geometry, the features of the stored input layers named by id
(``declaration_id(s)`` → ``declarations``, ``parcel_ids`` → ``parcels``), and the
geometry that no stored layer holds, which the rules put into the evidence as WKT in
EPSG:4326 (lon/lat, :data:`WKT_DECIMALS` = 7 decimals ≈ 1 cm; nothing simplified;
only for the hits): ``over_declared`` (declared parcel) ``overlap_wkt``, the declared
land on the reference parcels (area ``overlap_m2``); ``outside_reference``
``inside_wkt``, the drawing on the reference parcels (``inside_m2``; the alert
geometry is the outside part); ``non_farmland`` ``overlap_wkt``, the declared land on
the non-farm land (``nonfarm_m2``); ``year_change`` ``previous_wkt``, last year's
drawing when the drawing changed. An empty geometry leaves its key out. The rounding
to 1 cm moves a shape's area by at most about its perimeter × 0.5 cm (below 0.1 % for
pieces of a few hundred m² and more). ``double_claim``'s alert geometry is the overlap
and its ``declaration_ids`` name both declarations of the stored layer.

The rules (defaults from EU IACS practice where no local rule is given):

``farmland.over_declared``
    Declared area above the eligible area found plus a measurement tolerance of
    ``min(buffer_m × perimeter, cap_m2)`` per declaration (IACS: 1.25 m, 1 ha).
    The *eligible area found* of a declaration is the sum over the reference
    parcels it covers of: overlap × the parcel's eligible share (eligible area /
    drawn area) for a drawn declaration; for a declaration by parcel id, the
    parcel's eligible area, shared in proportion to the declared areas when one
    applicant's declarations by id of one parcel and year add up to more than its
    eligible area (so splitting a parcel into several declarations does not
    multiply its eligible area; the same parcel declared by two applicants is a
    ``double_claim``, not an over-declaration). Two levels: each declaration (the
    *declared parcel*, subject ``declaration``) whose excess is above zero, and each
    applicant and year (subject ``applicant``) whose summed excess is in an IACS
    band: over 3 % of the area determined or over 2 ha, over 20 %, over 50 % (the
    band and its severity, medium / high / critical, are in the alert; a declared
    parcel above its tolerance but below the first band is ``low``). The area determined is
    the declared area minus the excess; a parcel's slack never offsets another
    parcel's excess. A declaration that covers no reference parcel at all is left
    to ``outside_reference`` at the declaration level but counts (with nothing
    found) at the applicant level.
``farmland.outside_reference``
    Drawn declared land outside every reference parcel: a share of at least
    ``share`` of the drawing, or at least ``min_m2`` whatever its share.
``farmland.double_claim``
    The same land declared by two different applicants in the same year: overlap
    of at least ``min_overlap_m2`` or of at least ``share`` of either declaration.
    One alert per pair (subject ``"<declaration_a>|<declaration_b>"``), with the
    overlap geometry.
``farmland.non_farmland``
    Declared land on non-farm land-use classes (``classes``; common aliases in
    English and Chinese are recognised, see :data:`LAND_USE_ALIASES`) of at least
    ``min_m2`` or ``share`` of the declared land.
``farmland.deceased_applicant``
    The persons registry records the applicant's death at least ``min_days``
    before 1 January of the declaration year (local time). A declaration year
    that starts before the death is not flagged: the declaration may have been
    made in life.
``farmland.official_applicant``
    The persons registry marks the applicant as a public official
    (``is_official``), optionally only when the official's unit is the
    declaration's village.
``farmland.big_recipient``
    Total declared area of an applicant far above its village's peers of the same
    year: robust z-score ``0.6745 (x − median) / MAD`` of at least ``z`` (the
    Iglewicz–Hoaglin outlier rule; with MAD = 0 the mean absolute deviation × 1.2533
    replaces it), or, with ``method = "percentile"``, at or above the village's
    ``percentile``; only in villages with at least ``min_village_size`` applicants.
``farmland.claim_frequency``
    More than ``max_declarations`` declarations or ``max_parcels`` reference
    parcels per applicant and year (subject ``applicant``), or one reference parcel
    used by more than ``max_applicants`` applicants within ``window_years`` years
    (subject ``parcel``). A drawn declaration *uses* a parcel when it covers at
    least ``min_share`` of it.
``farmland.year_change``
    A declaration against the same applicant's declaration of the year before on
    the same land: the declared area changed by at least ``area_change`` (share of
    the previous area), or the drawing changed by at least ``geometry_change``
    (area of the symmetric difference / area of the union).

Examples
--------
>>> from geosup.rules import REGISTRY
>>> REGISTRY.get("farmland.over_declared").defaults()["buffer_m"]
1.25
>>> sorted(r.code for r in REGISTRY.select(domain="farmland"))[:3]
['farmland.big_recipient', 'farmland.claim_frequency', 'farmland.deceased_applicant']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.errors import GEOSException

from geosup.crs import m2_to, normalize_area_unit
from geosup.errors import ConfigError
from geosup.farmland.tables import Overlay
from geosup.rules import Threshold, rule

__all__ = [
    "FARMLAND_RULES",
    "HIT_COLUMNS",
    "LAND_USE_ALIASES",
    "NON_FARM_CLASSES",
    "WKT_DECIMALS",
    "RuleContext",
    "big_recipient",
    "claim_frequency",
    "deceased_applicant",
    "double_claim",
    "land_use_class",
    "non_farmland",
    "official_applicant",
    "outside_reference",
    "over_declared",
    "year_change",
]

#: Columns of the table every rule returns (``geometry`` in the metric CRS).
HIT_COLUMNS: tuple[str, ...] = (
    "rule", "subject_type", "subject_id", "unit", "period", "severity", "score",
    "amount_at_risk", "observed_at", "title", "detail", "evidence", "geometry",
)

#: The default non-farm land-use classes (canonical names).
NON_FARM_CLASSES: tuple[str, ...] = ("built-up", "water", "forest", "road")

#: Land-use labels recognised as one of the canonical classes (compared lower-case,
#: without spaces, hyphens and underscores). A label not listed is its own class.
LAND_USE_ALIASES: dict[str, str] = {
    **dict.fromkeys(
        ("built-up", "builtup", "built", "urban", "settlement", "residential", "building",
         "buildings", "construction", "industrial", "commercial", "artificial surface",
         "建设用地", "建筑", "建筑用地", "住宅", "住宅用地", "宅基地", "城镇", "村庄",
         "城镇村及工矿用地", "工矿用地", "居民点"), "built-up"),
    **dict.fromkeys(
        ("water", "waterbody", "water body", "river", "lake", "pond", "reservoir", "canal",
         "wetland", "水域", "水体", "河流", "湖泊", "水库", "坑塘", "坑塘水面", "沟渠",
         "水域及水利设施用地", "河流水面", "湖泊水面"), "water"),
    **dict.fromkeys(
        ("forest", "woodland", "wood", "woods", "trees", "tree cover", "林地", "森林",
         "有林地", "乔木林地", "灌木林地", "林"), "forest"),
    **dict.fromkeys(
        ("road", "roads", "street", "highway", "railway", "transport", "交通用地",
         "交通运输用地", "道路", "公路", "公路用地", "农村道路", "铁路", "道路用地"), "road"),
}

#: Codes of the farmland rules, in the order reconcile runs them.
FARMLAND_RULES: tuple[str, ...] = (
    "farmland.over_declared",
    "farmland.outside_reference",
    "farmland.double_claim",
    "farmland.non_farmland",
    "farmland.deceased_applicant",
    "farmland.official_applicant",
    "farmland.big_recipient",
    "farmland.claim_frequency",
    "farmland.year_change",
)

#: Decimals of the lon/lat coordinates of the WKT geometries in evidence (1e-7° ≈ 1 cm).
WKT_DECIMALS = 7

_GRID_M = 0.01  # the engines' default precision grid, for a GEOS topology error
_UNIT_LABEL = {"m2": "m²", "mu": "mu", "ha": "ha", "km2": "km²"}
_TRUE_TEXT = frozenset({"true", "t", "yes", "y", "1", "x", "是", "真", "√"})


@dataclass(frozen=True)
class RuleContext:
    """What every farmland rule needs besides the overlay.

    Attributes
    ----------
    area_unit : str
        The user's area unit (``mu``, ``ha``, ``m2``) for the ``*_area`` values and
        the alert text; areas are measured in m².
    years : tuple of int
        The years under review; alerts are raised only for declarations of these.
    persons : DataFrame, optional
        The persons registry (``person_id, name, died_on, is_official, unit, …``);
        ``person_id`` matches the declarations' ``applicant_id``.
    crs : pyproj.CRS, optional
        The metric CRS of the overlay's geometries (default: the overlay's).
    timezone : str, default "Asia/Shanghai"
        The zone in which a year starts (for ``deceased_applicant``).
    land_use : GeoDataFrame, optional
        The land-use polygons the overlay was measured on (``land_use`` class and
        geometry, in the metric CRS): ``non_farmland`` draws the declared land on the
        non-farm ones into its evidence (``overlap_wkt``). Without them (inputs that
        stay in PostGIS) that key is left out when the non-farm land comes from the
        land-use layer.
    """

    area_unit: str
    years: tuple[int, ...]
    persons: pd.DataFrame | None = None
    crs: pyproj.CRS | None = None
    timezone: str = "Asia/Shanghai"
    land_use: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "area_unit", normalize_area_unit(self.area_unit))
        object.__setattr__(self, "years", tuple(int(y) for y in self.years))


# ---------------------------------------------------------------------------------------------
# Helpers (all vectorised over hits; none loops per declaration)
# ---------------------------------------------------------------------------------------------


def _crs(overlay: Overlay, context: RuleContext) -> pyproj.CRS:
    return context.crs if context.crs is not None else overlay.crs


def _empty_hits(crs: pyproj.CRS | None) -> gpd.GeoDataFrame:
    data = {c: pd.Series([], dtype=object) for c in HIT_COLUMNS if c != "geometry"}
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries([], crs=crs), crs=crs)


def _year_int(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").astype("Int64")


def _review(decl: pd.DataFrame, context: RuleContext) -> pd.DataFrame:
    """Declarations of the years under review."""
    years = _year_int(decl["year"])
    return decl.loc[years.isin(list(context.years)).fillna(False).to_numpy(dtype=bool)]


def _num(values: Any) -> pd.Series:
    return pd.to_numeric(pd.Series(values), errors="coerce").astype("float64")


def _in_unit(m2: pd.Series | np.ndarray, unit: str) -> np.ndarray:
    return np.round(np.asarray(m2_to(np.asarray(m2, dtype="float64"), unit)), 4)


def _fmt(values: pd.Series | np.ndarray, digits: int = 2) -> pd.Series:
    series = pd.Series(np.asarray(values, dtype="float64"))
    text = series.map(lambda v: "n/a" if np.isnan(v) else f"{v:,.{digits}f}")
    return text.astype(object)


def _fmt_area(m2: pd.Series | np.ndarray, unit: str) -> pd.Series:
    values = np.asarray(m2_to(np.asarray(m2, dtype="float64"), unit))
    digits = 0 if unit == "m2" else 2
    return _fmt(values, digits) + " " + _UNIT_LABEL[unit]


def _pct(share: pd.Series | np.ndarray) -> pd.Series:
    return _fmt(np.asarray(share, dtype="float64") * 100.0, 1) + " %"


def _text(values: Any) -> pd.Series:
    series = pd.Series(values).reset_index(drop=True)
    return series.astype(object).where(series.notna(), "").astype(str)


def _observed(years: pd.Series) -> pd.Series:
    text = _year_int(years).astype("string").fillna("1970") + "-01-01"
    return pd.Series(pd.to_datetime(text.to_numpy(), utc=True))


def _none_if_nan(values: pd.Series | np.ndarray) -> list[Any]:
    arr = np.asarray(values, dtype="float64")
    return [None if np.isnan(v) else float(v) for v in arr]


def _areas(evidence: dict[str, Any], name: str, m2: pd.Series | np.ndarray, unit: str) -> None:
    """Add ``<name>_m2`` and ``<name>_area`` (in the user's unit) to an evidence table."""
    arr = np.asarray(m2, dtype="float64")
    evidence[f"{name}_m2"] = _none_if_nan(np.round(arr, 2))
    evidence[f"{name}_area"] = _none_if_nan(_in_unit(arr, unit))


def _records(evidence: Mapping[str, Sequence[Any]], n: int) -> list[dict[str, Any]]:
    """Column-wise evidence to one dict per hit (scalars are broadcast)."""
    columns: dict[str, list[Any]] = {}
    for key, values in evidence.items():
        if isinstance(values, (str, bytes, dict)) or not isinstance(
                values, (list, tuple, np.ndarray, pd.Series)):
            columns[key] = [values] * n
        else:
            seq = list(values.tolist() if isinstance(values, (np.ndarray, pd.Series))
                       else values)
            if len(seq) != n:  # pragma: no cover - internal consistency
                msg = f"evidence {key!r} has {len(seq)} values for {n} hits"
                raise AssertionError(msg)
            columns[key] = seq
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)] \
        if keys else [{} for _ in range(n)]


def _id_lists(frame: pd.DataFrame, key: str, value: str, keys: pd.Series) -> list[list[str]]:
    """For each key in ``keys``: the sorted distinct ``value`` strings of its rows.

    Only the rows of the wanted keys are grouped (numpy split of the sorted rows), so
    the cost follows the hits, not the size of ``frame``.
    """
    wanted = pd.Series(keys, dtype=object).astype(str).reset_index(drop=True)
    if not len(frame) or not len(wanted):
        return [[] for _ in range(len(wanted))]
    part = frame.loc[frame[value].notna(), [key, value]]
    part = part.loc[part[key].astype(str).isin(pd.unique(wanted)).to_numpy(dtype=bool)]
    part = pd.DataFrame({"k": part[key].astype(str).to_numpy(dtype=object),
                         "v": part[value].astype(str).to_numpy(dtype=object)})
    part = part.drop_duplicates().sort_values(["k", "v"], kind="stable")
    groups = _split_sorted(part["k"].to_numpy(dtype=object), part["v"].to_numpy(dtype=object))
    return [groups.get(k, []) for k in wanted]


def _among(values: Any, wanted: Any) -> np.ndarray:
    """Boolean mask: which of ``values`` are in ``wanted`` (compared as Python objects)."""
    left = pd.Series(np.asarray(values, dtype=object))
    return left.isin(np.asarray(pd.unique(np.asarray(wanted, dtype=object)))).to_numpy(
        dtype=bool)


def _split_sorted(keys: np.ndarray, values: np.ndarray) -> dict[str, list[Any]]:
    """Group ``values`` by ``keys`` (sorted by key) into lists, without a per-row loop."""
    if not len(keys):
        return {}
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    chunks = np.split(values, starts[1:])
    return {str(k): c.tolist() for k, c in zip(keys[starts], chunks, strict=True)}


def _thresholds(**values: Any) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


def _declaration_geometry(overlay: Overlay, only: Any = None) -> pd.Series:
    """Each declaration's geometry: its drawing, else the declared reference parcel.

    ``only``: just these declaration ids (the hits), not every declaration.
    """
    decl = overlay.declarations
    if only is not None:
        decl = decl.loc[_among(decl["declaration_id"].astype(str), pd.Series(only).astype(str))]
    drawn = pd.Series(np.asarray(decl["geometry"], dtype=object), index=decl.index)
    parcel_geom = pd.Series(np.asarray(overlay.parcels["geometry"], dtype=object),
                            index=overlay.parcels["parcel_id"].astype(str).to_numpy())
    parcel_geom = parcel_geom[~parcel_geom.index.duplicated()]
    by_id = decl["parcel_id"].astype("string").map(parcel_geom)
    missing = shapely.is_missing(drawn.to_numpy()) | shapely.is_empty(drawn.to_numpy())
    geoms = np.where(missing, by_id.to_numpy(dtype=object), drawn.to_numpy())
    return pd.Series(geoms, index=decl["declaration_id"].astype(str).to_numpy(), dtype=object)


def _union_per_key(keys: pd.Series, geoms: np.ndarray, wanted: pd.Series) -> np.ndarray:
    """Union of ``geoms`` per key (hits only), aligned to ``wanted`` (None: nothing).

    Vectorised: one ``shapely.union_all(axis=1)`` per distinct number of geometries in
    a group, not a loop per key; a group of one is taken as it is.
    """
    wanted = pd.Series(wanted, dtype=object).astype(str).reset_index(drop=True)
    out = np.full(len(wanted), None, dtype=object)
    geoms = _geoms(geoms)
    keys = pd.Series(keys, dtype=object).astype(str).to_numpy(dtype=object)
    ok = ~shapely.is_missing(geoms) & _among(keys, wanted)
    if not ok.any():
        return out
    codes, uniques = pd.factorize(keys[ok])
    order = np.argsort(codes, kind="stable")
    codes, geoms = codes[order], geoms[ok][order]
    counts = np.bincount(codes, minlength=len(uniques))
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    merged = np.empty(len(uniques), dtype=object)
    for size in np.unique(counts):  # a few sizes, each one vectorised call
        groups = np.flatnonzero(counts == size)
        table = geoms[starts[groups][:, None] + np.arange(size)]
        if size == 1:
            merged[groups] = table[:, 0]
            continue
        try:
            merged[groups] = shapely.union_all(table, axis=1)
        except GEOSException:
            merged[groups] = shapely.union_all(table, axis=1, grid_size=_GRID_M)
    pos = pd.Index(uniques).get_indexer(wanted.to_numpy())
    out[pos >= 0] = merged[pos[pos >= 0]]
    return out


def _geoms(values: Any) -> np.ndarray:
    """A 1-D object array of geometries with every missing value (None, NaN, NA) as None."""
    arr = np.array(values, dtype=object).reshape(-1)
    arr[pd.isna(arr)] = None
    return arr


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a ∩ b`` element-wise; on a GEOS topology error, on the engine's 1 cm grid."""
    try:
        return shapely.intersection(a, b)
    except GEOSException:
        return shapely.intersection(a, b, grid_size=_GRID_M)


def _polygonal(geoms: Any) -> np.ndarray:
    """The polygonal part of each geometry (the lines and points where shapes only touch
    dropped); None where nothing polygonal is left. Vectorised over the geometries."""
    arr = _geoms(geoms)
    out = np.full(len(arr), None, dtype=object)
    pos = np.flatnonzero(~shapely.is_missing(arr))
    if not len(pos):
        return out
    parts, owner = shapely.get_parts(arr[pos], return_index=True)
    parts, sub = shapely.get_parts(parts, return_index=True)  # a collection's multipolygons
    owner = owner[sub]
    keep = (shapely.get_type_id(parts) == 3) & ~shapely.is_empty(parts)
    if not keep.any():
        return out
    where, dense = np.unique(pos[owner[keep]], return_inverse=True)
    merged = shapely.multipolygons(parts[keep], indices=dense)
    single = shapely.get_num_geometries(merged) == 1
    merged[single] = shapely.get_geometry(merged[single], 0)
    out[where] = merged
    return out


def _wkt(geoms: Any, crs: pyproj.CRS | None) -> list[str | None]:
    """Each geometry as WKT in EPSG:4326 (lon/lat, :data:`WKT_DECIMALS` decimals).

    None where the geometry is missing or empty (the evidence key is then left out) or
    the CRS unknown. Only the given (hit) geometries are transformed.
    """
    arr = _geoms(geoms)
    out = np.full(len(arr), None, dtype=object)
    ok = ~(shapely.is_missing(arr) | shapely.is_empty(arr))
    if crs is None or not ok.any():
        return out.tolist()
    lonlat = gpd.GeoSeries(arr[ok], crs=crs).to_crs(4326)
    out[ok] = shapely.to_wkt(np.asarray(lonlat.array, dtype=object),
                             rounding_precision=WKT_DECIMALS, trim=True)
    return out.tolist()


def _with(records: list[dict[str, Any]], key: str, values: Sequence[Any]) -> list[dict[str, Any]]:
    """Add ``key`` to each evidence record whose value is not None (else leave it out)."""
    for record, value in zip(records, values, strict=True):
        if value is not None:
            record[key] = value
    return records


def _parcel_geometry(overlay: Overlay) -> pd.Series:
    """Reference parcel geometries by parcel id (text)."""
    geoms = pd.Series(np.asarray(overlay.parcels["geometry"], dtype=object),
                      index=overlay.parcels["parcel_id"].astype(str).to_numpy())
    return geoms[~geoms.index.duplicated()]


def _on_parcels(overlay: Overlay, links: pd.DataFrame) -> np.ndarray:
    """Declared land ∩ reference parcel for each row of ``links`` (hits only).

    The parcel itself for a link ``by`` parcel id; the drawing ∩ the parcel for a drawn
    declaration. Polygonal parts only.
    """
    if not len(links):
        return np.array([], dtype=object)
    parcels = _geoms(_parcel_geometry(overlay).reindex(
        links["parcel_id"].astype(str).to_numpy()).to_numpy(dtype=object))
    wanted = links["declaration_id"].astype(str).to_numpy()
    declared = _geoms(_declaration_geometry(overlay, wanted).reindex(wanted).to_numpy(
        dtype=object))
    by_id = (links["by"].astype(str) == "id").to_numpy()
    pieces = np.full(len(links), None, dtype=object)
    cut = ~by_id & ~shapely.is_missing(parcels) & ~shapely.is_missing(declared)
    if cut.any():
        pieces[cut] = _intersection(declared[cut], parcels[cut])
    pieces[by_id] = parcels[by_id]
    return _polygonal(pieces)


def _union_on_parcels(overlay: Overlay, links: pd.DataFrame, key: str,
                      wanted: pd.Series) -> np.ndarray:
    """Per ``wanted`` key: the union of its links' declared land ∩ reference parcels."""
    links = links.loc[_among(links[key].astype(str), wanted.astype(str))]
    if not len(links):
        return np.full(len(wanted), None, dtype=object)
    union = _union_per_key(links[key], _on_parcels(overlay, links), wanted)
    return _polygonal(union)


def _finish(data: dict[str, Any], geoms: Any, crs: pyproj.CRS | None) -> gpd.GeoDataFrame:
    n = len(data["subject_id"])
    columns: dict[str, Any] = {}
    for c in HIT_COLUMNS:
        if c == "geometry":
            continue
        value = data[c]
        if np.isscalar(value):
            columns[c] = [value] * n
        elif isinstance(value, (pd.Series, pd.Index)):
            columns[c] = value.to_numpy()
        else:
            columns[c] = value
    frame = pd.DataFrame(columns, index=pd.RangeIndex(n))
    frame["score"] = np.clip(frame["score"].astype("float64"), 0.0, 1.0)
    frame["amount_at_risk"] = frame["amount_at_risk"].astype("float64")
    geometry = gpd.GeoSeries(np.asarray(geoms, dtype=object), crs=crs)
    out = gpd.GeoDataFrame(frame, geometry=geometry, crs=crs)
    return out.sort_values(["period", "subject_id"], kind="stable").reset_index(drop=True)


def _persons(context: RuleContext) -> pd.DataFrame | None:
    persons = context.persons
    if persons is None or not len(persons) or "person_id" not in persons.columns:
        return None
    out = pd.DataFrame(persons).copy()
    out["person_id"] = out["person_id"].astype(str).str.strip()
    return out.drop_duplicates("person_id")


@dataclass
class _PerApplicant:
    """Declarations of the years under review summed per applicant and year."""

    table: pd.DataFrame  # applicant_id, year, key, declared_m2, subsidy, n, village
    keyed: pd.DataFrame  # one row per declaration: key, declaration_id, geometry
    links: pd.DataFrame

    def keep(self, table: pd.DataFrame) -> pd.DataFrame:
        """Keep the hits ``table`` and add their ``declaration_ids`` and ``parcel_ids``."""
        table = table.reset_index(drop=True)
        table["declaration_ids"] = _id_lists(self.keyed, "key", "declaration_id",
                                             table["key"])
        keyed = self.keyed.loc[_among(self.keyed["key"], table["key"]),
                               ["key", "declaration_id"]]
        links = self.links.loc[:, ["declaration_id", "parcel_id"]].astype(
            {"declaration_id": str}).merge(keyed, on="declaration_id")
        table["parcel_ids"] = _id_lists(links, "key", "parcel_id", table["key"])
        self.table = table
        return table

    def geometries(self) -> np.ndarray:
        """The union of each applicant-year's declaration geometries."""
        return _union_per_key(self.keyed["key"], self.keyed["geometry"].to_numpy(),
                              self.table["key"])


def _per_applicant(review: pd.DataFrame, overlay: Overlay) -> _PerApplicant:
    applicant = review["applicant_id"].astype(str).to_numpy()
    year = _year_int(review["year"]).to_numpy()
    keyed = pd.DataFrame({
        "applicant_id": applicant, "year": year,
        "key": pd.Series(applicant, dtype=object) + "\x1f" + pd.Series(year).astype(str),
        "declaration_id": review["declaration_id"].astype(str).to_numpy(),
        "declared_m2": _num(review["declared_m2"]).to_numpy(),
        "subsidy": _num(review["subsidy_amount"]).to_numpy(),
        "village": review["village"].to_numpy(),
    })
    keyed["geometry"] = _declaration_geometry(overlay).reindex(
        keyed["declaration_id"].to_numpy()).to_numpy(dtype=object)
    table = keyed.groupby("key", sort=True).agg(
        applicant_id=("applicant_id", "first"), year=("year", "first"),
        declared_m2=("declared_m2", "sum"), subsidy=("subsidy", "sum"),
        n=("declaration_id", "size"), village=("village", "first")).reset_index()
    return _PerApplicant(table=table, keyed=keyed, links=overlay.links)


def _flag(value: Any) -> pd.Series:
    series = pd.Series(value)
    if series.dtype == bool:
        return series.fillna(False)
    numeric = pd.to_numeric(series, errors="coerce")
    text = series.astype("string").str.strip().str.lower()
    return (numeric.fillna(0) != 0) | text.isin(_TRUE_TEXT).fillna(False)


def _squash(text: pd.Series | Iterable[str]) -> pd.Series:
    series = pd.Series(list(text) if not isinstance(text, pd.Series) else text)
    return series.astype("string").str.strip().str.lower().str.replace(r"[\s_\-]+", "",
                                                                        regex=True)


_SQUASHED_ALIASES: dict[str, str] = {
    "".join(ch for ch in k.lower() if ch not in " _-"): v for k, v in LAND_USE_ALIASES.items()
}


def land_use_class(labels: pd.Series | Iterable[str]) -> pd.Series:
    """The canonical land-use class of each label (aliases resolved).

    Examples
    --------
    >>> land_use_class(["Built-up", "坑塘水面", "orchard"]).tolist()
    ['built-up', 'water', 'orchard']
    """
    squashed = _squash(labels)
    return squashed.map(lambda s: _SQUASHED_ALIASES.get(s, s) if isinstance(s, str) else s)


def _check_range(name: str, value: float, *, low: float = 0.0,
                 high: float | None = None) -> float:
    value = float(value)
    if not np.isfinite(value) or value < low or (high is not None and value > high):
        span = f"{low} … {high}" if high is not None else f"≥ {low}"
        msg = f"threshold {name} = {value!r} must be a number in {span}"
        raise ConfigError(msg)
    return value


# ---------------------------------------------------------------------------------------------
# farmland.over_declared
# ---------------------------------------------------------------------------------------------

_BAND_LABELS = ("above tolerance, within 3 % and 2 ha", "over 3 % or 2 ha", "over 20 %",
                "over 50 %")
_BAND_SEVERITY = np.array(["low", "medium", "high", "critical"], dtype=object)


def _eligible_found(overlay: Overlay) -> pd.DataFrame:
    """Eligible area found per declaration (see the module docstring)."""
    decl = overlay.declarations
    links = overlay.links.loc[:, ["declaration_id", "parcel_id", "overlap_m2", "by"]].copy()
    links["declaration_id"] = links["declaration_id"].astype(str)
    links["parcel_id"] = links["parcel_id"].astype(str)
    parcels = pd.DataFrame({
        "parcel_id": overlay.parcels["parcel_id"].astype(str).to_numpy(),
        "eligible_m2": _num(overlay.parcels["eligible_m2"]).to_numpy(),
        "area_m2": _num(overlay.parcels["area_m2"]).to_numpy(),
    }).drop_duplicates("parcel_id")
    info = pd.DataFrame({
        "declaration_id": decl["declaration_id"].astype(str).to_numpy(),
        "year": _year_int(decl["year"]).to_numpy(),
        "declared_m2": _num(decl["declared_m2"]).to_numpy(),
        "applicant_id": decl["applicant_id"].astype(str).to_numpy(),
    })
    links = links.merge(parcels, on="parcel_id", how="left").merge(info, on="declaration_id",
                                                                   how="left")
    overlap = _num(links["overlap_m2"]).to_numpy()
    eligible = links["eligible_m2"].to_numpy(dtype="float64")
    area = links["area_m2"].to_numpy(dtype="float64")
    density = np.divide(eligible, area, out=np.ones_like(eligible),
                        where=np.isfinite(area) & (area > 0))
    by_id = (links["by"].astype(str) == "id").to_numpy()
    total_id = links["declared_m2"].where(by_id).groupby(
        [links["parcel_id"], links["year"], links["applicant_id"]],
        dropna=False).transform("sum").to_numpy()
    denom = np.fmax(total_id, eligible)
    share = np.divide(links["declared_m2"].to_numpy(dtype="float64"), denom,
                      out=np.zeros_like(eligible), where=denom > 0)
    attributed = np.where(by_id, eligible * share, overlap * density)
    links["eligible_found_m2"] = np.nan_to_num(attributed)
    links["overlap_m2"] = np.nan_to_num(overlap)
    found = links.groupby("declaration_id").agg(
        eligible_found_m2=("eligible_found_m2", "sum"), overlap_m2=("overlap_m2", "sum"),
        n_links=("parcel_id", "size"))
    found.attrs["links"] = links
    return found


@rule(
    "farmland.over_declared",
    title="Declared area above the eligible area found",
    title_zh="申报面积超过核实的可补贴面积",
    severity="high",
    inputs=("declarations", "parcels"),
    thresholds=[
        Threshold("buffer_m", 1.25, "m",
                  "measurement tolerance per metre of the declared parcel's perimeter"),
        Threshold("cap_m2", 10000.0, "m²", "upper limit of the tolerance per declared parcel"),
        Threshold("band_low_share", 0.03, "share",
                  "first band: excess over this share of the area determined …"),
        Threshold("band_low_m2", 20000.0, "m²", "… or over this area (IACS 3 % or 2 ha)"),
        Threshold("band_mid_share", 0.20, "share", "second band: excess over this share"),
        Threshold("band_high_share", 0.50, "share", "third band: excess over this share"),
    ],
)
def over_declared(overlay: Overlay, context: RuleContext, *, buffer_m: float = 1.25,
                  cap_m2: float = 10000.0, band_low_share: float = 0.03,
                  band_low_m2: float = 20000.0, band_mid_share: float = 0.20,
                  band_high_share: float = 0.50) -> gpd.GeoDataFrame:
    """Declared area above the eligible area found plus tolerance, per declaration and applicant.

    Parameters
    ----------
    overlay : Overlay
        The engine's tables.
    context : RuleContext
        Unit, years under review, CRS.
    buffer_m, cap_m2 : float
        Tolerance ``min(buffer_m × perimeter, cap_m2)`` per declaration.
    band_low_share, band_low_m2, band_mid_share, band_high_share : float
        The IACS bands of the excess relative to the area determined.

    Returns
    -------
    GeoDataFrame
        Hits (:data:`HIT_COLUMNS`): subject ``declaration`` (any excess above the
        tolerance) and ``applicant`` (summed excess in a band).
    """
    code = "farmland.over_declared"
    crs = _crs(overlay, context)
    unit = context.area_unit
    buffer_m = _check_range("buffer_m", buffer_m)
    cap_m2 = _check_range("cap_m2", cap_m2)
    review = _review(overlay.declarations, context)
    if not len(review):
        return _empty_hits(crs)
    found = _eligible_found(overlay)
    links = found.attrs["links"]
    work = pd.DataFrame({
        "declaration_id": review["declaration_id"].astype(str).to_numpy(),
        "applicant_id": review["applicant_id"].astype(str).to_numpy(),
        "year": _year_int(review["year"]).to_numpy(),
        "village": review["village"].to_numpy(),
        "declared_m2": _num(review["declared_m2"]).to_numpy(),
        "perimeter_m": _num(review["perimeter_m"]).to_numpy(),
        "subsidy": _num(review["subsidy_amount"]).to_numpy(),
    })
    work = work.join(found.drop(columns=[]), on="declaration_id")
    work["n_links"] = work["n_links"].fillna(0).astype(int)
    work["eligible_found_m2"] = work["eligible_found_m2"].fillna(0.0)
    work["overlap_m2"] = work["overlap_m2"].fillna(0.0)
    tolerance = np.fmin(buffer_m * work["perimeter_m"].fillna(0.0), cap_m2)
    work["tolerance_m2"] = tolerance
    raw = work["declared_m2"] - work["eligible_found_m2"] - work["tolerance_m2"]
    work["excess_m2"] = raw.clip(lower=0.0).fillna(0.0)
    work["determined_m2"] = work["declared_m2"] - work["excess_m2"]

    def band(excess: np.ndarray, determined: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(determined > 0, excess / determined, np.inf)
        share = np.where(excess > 0, share, 0.0)
        level = np.zeros(len(excess), dtype=int)
        level[(share > band_low_share) | (excess > band_low_m2)] = 1
        level[share > band_mid_share] = 2
        level[share > band_high_share] = 3
        return level, share

    thresholds = _thresholds(buffer_m=buffer_m, cap_m2=cap_m2, band_low_share=band_low_share,
                             band_low_m2=band_low_m2, band_mid_share=band_mid_share,
                             band_high_share=band_high_share)
    parts: list[gpd.GeoDataFrame] = []

    # Level 1: the declared parcel (declaration).
    hit = work.loc[(work["excess_m2"] > 0) & (work["n_links"] > 0)].reset_index(drop=True)
    if len(hit):
        level, share = band(hit["excess_m2"].to_numpy(), hit["determined_m2"].to_numpy())
        ids = hit["declaration_id"]
        parcel_ids = _id_lists(links, "declaration_id", "parcel_id", ids)
        geoms = _declaration_geometry(overlay).reindex(ids.to_numpy()).to_numpy(dtype=object)
        labels = np.asarray(_BAND_LABELS, dtype=object)[level]
        evidence: dict[str, Any] = {
            "level": "declaration", "declaration_id": ids.tolist(),
            "declaration_ids": [[d] for d in ids], "applicant_id": hit["applicant_id"].tolist(),
            "applicant_ids": [[a] for a in hit["applicant_id"]], "parcel_ids": parcel_ids,
            "area_unit": unit, "perimeter_m": _none_if_nan(hit["perimeter_m"].round(2)),
            "excess_share": _none_if_nan(np.round(np.where(np.isinf(share), np.nan, share), 6)),
            "band": level.tolist(), "band_label": labels.tolist(),
            "subsidy_amount": _none_if_nan(hit["subsidy"]), "thresholds": thresholds,
        }
        for name in ("declared", "eligible_found", "overlap", "tolerance", "excess",
                     "determined"):
            _areas(evidence, name, hit[f"{name}_m2"], unit)
        detail = ("declared " + _fmt_area(hit["declared_m2"], unit)
                  + " on reference parcel(s) " + pd.Series([", ".join(p) for p in parcel_ids])
                  + "; eligible area found " + _fmt_area(hit["eligible_found_m2"], unit)
                  + "; tolerance " + _fmt_area(hit["tolerance_m2"], unit)
                  + f" (min({buffer_m:g} m × perimeter, {cap_m2:g} m²))"
                  + "; excess beyond tolerance " + _fmt_area(hit["excess_m2"], unit)
                  + " (" + _pct(np.where(np.isinf(share), np.nan, share))
                  + " of the area determined); band: " + pd.Series(labels))
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(hit["declared_m2"] > 0, hit["excess_m2"] / hit["declared_m2"], 1.0)
        found_geom = _union_on_parcels(overlay, links, "declaration_id", ids)
        records = _with(_records(evidence, len(hit)), "overlap_wkt", _wkt(found_geom, crs))
        parts.append(_finish({
            "rule": code, "subject_type": "declaration", "subject_id": ids.to_numpy(),
            "unit": _text(hit["village"]), "period": hit["year"].astype(str).to_numpy(),
            "severity": _BAND_SEVERITY[level], "score": score,
            "amount_at_risk": hit["subsidy"] * np.clip(score, 0, 1),
            "observed_at": _observed(hit["year"]),
            "title": "Declared area above the eligible area found (declared parcel)",
            "detail": ("Declaration " + ids + ": " + detail).to_numpy(),
            "evidence": records,
        }, geoms, crs))

    # Level 2: the applicant and year.
    work["_risk"] = work["subsidy"].fillna(0.0) * np.divide(
        work["excess_m2"], work["declared_m2"], out=np.zeros(len(work)),
        where=work["declared_m2"].to_numpy() > 0)
    per = work.groupby(["applicant_id", "year"], sort=True).agg(
        declared_m2=("declared_m2", "sum"), eligible_found_m2=("eligible_found_m2", "sum"),
        tolerance_m2=("tolerance_m2", "sum"), excess_m2=("excess_m2", "sum"),
        determined_m2=("determined_m2", "sum"), amount=("_risk", "sum"),
        village=("village", "first"), n=("declaration_id", "size")).reset_index()
    level, share = band(per["excess_m2"].to_numpy(), per["determined_m2"].to_numpy())
    keep = level >= 1
    per = per.loc[keep].reset_index(drop=True)
    if len(per):
        level, share = level[keep], share[keep]
        per["key"] = per["applicant_id"] + "\x1f" + per["year"].astype(str)
        work["key"] = work["applicant_id"] + "\x1f" + work["year"].astype(str)
        decl_ids = _id_lists(work, "key", "declaration_id", per["key"])
        over_ids = _id_lists(work.loc[work["excess_m2"] > 0], "key", "declaration_id",
                             per["key"])
        keyed_links = links.merge(work[["declaration_id", "key"]], on="declaration_id")
        parcel_ids = _id_lists(keyed_links, "key", "parcel_id", per["key"])
        geoms = _declaration_geometry(overlay).reindex(work["declaration_id"].to_numpy())
        union = _union_per_key(work["key"], geoms.to_numpy(dtype=object), per["key"])
        labels = np.asarray(_BAND_LABELS, dtype=object)[level]
        evidence = {
            "level": "applicant", "applicant_id": per["applicant_id"].tolist(),
            "applicant_ids": [[a] for a in per["applicant_id"]], "declaration_ids": decl_ids,
            "declarations_over": over_ids, "parcel_ids": parcel_ids, "area_unit": unit,
            "excess_share": _none_if_nan(np.round(np.where(np.isinf(share), np.nan, share), 6)),
            "band": level.tolist(), "band_label": labels.tolist(), "thresholds": thresholds,
        }
        for name in ("declared", "eligible_found", "tolerance", "excess", "determined"):
            _areas(evidence, name, per[f"{name}_m2"], unit)
        detail = ("Applicant " + per["applicant_id"] + ", " + per["year"].astype(str)
                  + ": declared " + _fmt_area(per["declared_m2"], unit) + " in "
                  + per["n"].astype(str) + " declaration(s); eligible area found "
                  + _fmt_area(per["eligible_found_m2"], unit) + "; excess beyond tolerance "
                  + _fmt_area(per["excess_m2"], unit) + " ("
                  + _pct(np.where(np.isinf(share), np.nan, share))
                  + " of the area determined " + _fmt_area(per["determined_m2"], unit)
                  + "); band: " + pd.Series(labels)
                  + f" (bands: over {band_low_share:.0%} or {band_low_m2:g} m², over "
                  f"{band_mid_share:.0%}, over {band_high_share:.0%})")
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(per["declared_m2"] > 0, per["excess_m2"] / per["declared_m2"], 1.0)
        parts.append(_finish({
            "rule": code, "subject_type": "applicant", "subject_id": per["applicant_id"],
            "unit": _text(per["village"]), "period": per["year"].astype(str).to_numpy(),
            "severity": _BAND_SEVERITY[level], "score": score,
            "amount_at_risk": per["amount"].to_numpy(), "observed_at": _observed(per["year"]),
            "title": "Declared area above the eligible area found (applicant)",
            "detail": detail.to_numpy(), "evidence": _records(evidence, len(per)),
        }, union, crs))
    if not parts:
        return _empty_hits(crs)
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# farmland.outside_reference
# ---------------------------------------------------------------------------------------------


def _outside_geometry(overlay: Overlay, ids: pd.Series) -> np.ndarray:
    """The part of each drawn declaration outside the reference parcels it touches."""
    if "geometry" in overlay.outside.columns:
        table = overlay.outside.assign(declaration_id=overlay.outside["declaration_id"]
                                       .astype(str)).drop_duplicates("declaration_id")
        geoms = pd.Series(np.asarray(table["geometry"], dtype=object),
                          index=table["declaration_id"].to_numpy())
        out = geoms.reindex(ids.to_numpy()).to_numpy(dtype=object)
        if not shapely.is_missing(out).any():
            return out
    drawn = _declaration_geometry(overlay).reindex(ids.to_numpy()).to_numpy(dtype=object)
    links = overlay.links.loc[:, ["declaration_id", "parcel_id"]].astype(str)
    links = links.loc[_among(links["declaration_id"], ids)]
    parcel_geom = pd.Series(np.asarray(overlay.parcels["geometry"], dtype=object),
                            index=overlay.parcels["parcel_id"].astype(str).to_numpy())
    parcel_geom = parcel_geom[~parcel_geom.index.duplicated()]
    touched = _union_per_key(links["declaration_id"],
                             parcel_geom.reindex(links["parcel_id"].to_numpy()).to_numpy(),
                             ids)
    none = shapely.is_missing(touched)
    diff = shapely.difference(drawn, np.where(none, shapely.Polygon(), touched))
    return np.where(shapely.is_missing(diff), drawn, diff)


@rule(
    "farmland.outside_reference",
    title="Declared land outside the reference parcels",
    title_zh="申报地块超出参考地块范围",
    severity="medium",
    inputs=("declarations", "parcels"),
    thresholds=[
        Threshold("share", 0.10, "share",
                  "share of the drawn declaration outside every reference parcel"),
        Threshold("min_m2", 10000.0, "m²",
                  "outside area that is reported whatever its share"),
    ],
)
def outside_reference(overlay: Overlay, context: RuleContext, *, share: float = 0.10,
                      min_m2: float = 10000.0) -> gpd.GeoDataFrame:
    """Drawn declared land outside every reference parcel.

    Fires when the outside share is at least ``share`` or the outside area at least
    ``min_m2``. The hit's geometry is the outside part.
    """
    code = "farmland.outside_reference"
    crs = _crs(overlay, context)
    unit = context.area_unit
    share = _check_range("share", share, high=1.0)
    min_m2 = _check_range("min_m2", min_m2)
    review = _review(overlay.declarations, context)
    outside = overlay.outside
    if not len(review) or not len(outside):
        return _empty_hits(crs)
    table = pd.DataFrame({
        "declaration_id": outside["declaration_id"].astype(str).to_numpy(),
        "outside_m2": _num(outside["outside_m2"]).to_numpy(),
        "outside_share": _num(outside["outside_share"]).to_numpy(),
    })
    info = pd.DataFrame({
        "declaration_id": review["declaration_id"].astype(str).to_numpy(),
        "applicant_id": review["applicant_id"].astype(str).to_numpy(),
        "year": _year_int(review["year"]).to_numpy(), "village": review["village"].to_numpy(),
        "declared_m2": _num(review["declared_m2"]).to_numpy(),
        "drawn_m2": _num(review["drawn_m2"]).to_numpy(),
        "subsidy": _num(review["subsidy_amount"]).to_numpy(),
    })
    hit = table.merge(info, on="declaration_id")
    fire = ((hit["outside_share"] >= share) | (hit["outside_m2"] >= min_m2)) & (
        hit["outside_m2"] > 0)
    hit = hit.loc[fire].sort_values("declaration_id").reset_index(drop=True)
    if not len(hit):
        return _empty_hits(crs)
    ids = hit["declaration_id"]
    links = overlay.links.loc[:, ["declaration_id", "parcel_id"]].astype(str)
    parcel_ids = _id_lists(links, "declaration_id", "parcel_id", ids)
    outside_share = hit["outside_share"].clip(0.0, 1.0)
    evidence: dict[str, Any] = {
        "declaration_id": ids.tolist(), "declaration_ids": [[d] for d in ids],
        "applicant_id": hit["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in hit["applicant_id"]], "parcel_ids": parcel_ids,
        "area_unit": unit, "outside_share": _none_if_nan(outside_share.round(6)),
        "subsidy_amount": _none_if_nan(hit["subsidy"]),
        "thresholds": _thresholds(share=share, min_m2=min_m2),
    }
    hit["inside_m2"] = (hit["drawn_m2"] - hit["outside_m2"]).clip(lower=0.0)
    for name in ("declared", "drawn", "outside", "inside"):
        _areas(evidence, name, hit[f"{name}_m2"], unit)
    links = overlay.links.loc[:, ["declaration_id", "parcel_id", "by"]].astype(str)
    inside = _union_on_parcels(overlay, links, "declaration_id", ids)
    detail = ("Declaration " + ids + ": " + _fmt_area(hit["outside_m2"], unit) + " ("
              + _pct(outside_share) + ") of the drawn " + _fmt_area(hit["drawn_m2"], unit)
              + " lie outside every reference parcel"
              + f" (threshold: {share:.0%} or {min_m2:g} m²)")
    return _finish({
        "rule": code, "subject_type": "declaration", "subject_id": ids.to_numpy(),
        "unit": _text(hit["village"]), "period": hit["year"].astype(str).to_numpy(),
        "severity": "medium", "score": outside_share.fillna(0.0).to_numpy(),
        "amount_at_risk": (hit["subsidy"] * outside_share).to_numpy(),
        "observed_at": _observed(hit["year"]),
        "title": "Declared land outside the reference parcels",
        "detail": detail.to_numpy(),
        "evidence": _with(_records(evidence, len(hit)), "inside_wkt", _wkt(inside, crs)),
    }, _outside_geometry(overlay, ids), crs)


# ---------------------------------------------------------------------------------------------
# farmland.double_claim
# ---------------------------------------------------------------------------------------------


@rule(
    "farmland.double_claim",
    title="Same land declared by two applicants in the same year",
    title_zh="同一土地同年被两个申报人申报",
    severity="high",
    inputs=("declarations",),
    thresholds=[
        Threshold("min_overlap_m2", 10.0, "m²", "overlap area that is reported"),
        Threshold("share", 0.05, "share",
                  "overlap share of either declaration that is reported (for small ones)"),
    ],
)
def double_claim(overlay: Overlay, context: RuleContext, *, min_overlap_m2: float = 10.0,
                 share: float = 0.05) -> gpd.GeoDataFrame:
    """The same land declared by two different applicants in one year under review.

    One hit per overlapping pair of declarations whose overlap is at least
    ``min_overlap_m2`` or at least ``share`` of either declaration; the subject is
    ``"<declaration_a>|<declaration_b>"`` and the geometry the overlap. The amount
    at risk is the smaller of the two subsidies paid for the overlap (the land is
    paid twice).
    """
    code = "farmland.double_claim"
    crs = _crs(overlay, context)
    unit = context.area_unit
    min_overlap_m2 = _check_range("min_overlap_m2", min_overlap_m2)
    share = _check_range("share", share, high=1.0)
    pairs = overlay.pairs
    if not len(pairs):
        return _empty_hits(crs)
    work = pd.DataFrame({
        "a": pairs["declaration_a"].astype(str).to_numpy(),
        "b": pairs["declaration_b"].astype(str).to_numpy(),
        "applicant_a": pairs["applicant_a"].astype(str).to_numpy(),
        "applicant_b": pairs["applicant_b"].astype(str).to_numpy(),
        "year": _year_int(pairs["year"]).to_numpy(),
        "overlap_m2": _num(pairs["overlap_m2"]).to_numpy(),
        "share_a": _num(pairs["share_a"]).to_numpy(),
        "share_b": _num(pairs["share_b"]).to_numpy(),
        "geometry": np.asarray(pairs["geometry"], dtype=object),
    })
    swap = work["a"] > work["b"]  # the contract orders pairs; be safe
    if swap.any():
        for x, y in (("a", "b"), ("applicant_a", "applicant_b"), ("share_a", "share_b")):
            work.loc[swap, [x, y]] = work.loc[swap, [y, x]].to_numpy()
    biggest = np.fmax(work["share_a"], work["share_b"])
    fire = (work["year"].isin(list(context.years)).fillna(False)
            & (work["applicant_a"] != work["applicant_b"])
            & ((work["overlap_m2"] >= min_overlap_m2) | (biggest >= share)))
    hit = work.loc[fire.to_numpy(dtype=bool)].sort_values(["a", "b"]).reset_index(drop=True)
    if not len(hit):
        return _empty_hits(crs)
    decl = overlay.declarations
    info = pd.DataFrame({
        "declaration_id": decl["declaration_id"].astype(str).to_numpy(),
        "village": decl["village"].to_numpy(),
        "declared_m2": _num(decl["declared_m2"]).to_numpy(),
        "subsidy": _num(decl["subsidy_amount"]).to_numpy(),
    }).drop_duplicates("declaration_id").set_index("declaration_id")
    ia, ib = info.reindex(hit["a"].to_numpy()), info.reindex(hit["b"].to_numpy())
    risk = np.fmin(ia["subsidy"].to_numpy() * hit["share_a"].clip(0, 1).to_numpy(),
                   ib["subsidy"].to_numpy() * hit["share_b"].clip(0, 1).to_numpy())
    links = overlay.links.loc[:, ["declaration_id", "parcel_id"]].astype(str)
    both = pd.concat([
        pd.DataFrame({"pair": hit.index.to_numpy(), "declaration_id": hit["a"].to_numpy()}),
        pd.DataFrame({"pair": hit.index.to_numpy(), "declaration_id": hit["b"].to_numpy()}),
    ]).merge(links, on="declaration_id")
    parcel_ids = _id_lists(both, "pair", "parcel_id", pd.Series(hit.index))
    subject = hit["a"] + "|" + hit["b"]
    biggest = np.fmax(hit["share_a"], hit["share_b"]).clip(0, 1)
    evidence: dict[str, Any] = {
        "declaration_ids": [[a, b] for a, b in zip(hit["a"], hit["b"], strict=True)],
        "applicant_ids": [[a, b] for a, b in zip(hit["applicant_a"], hit["applicant_b"],
                                                strict=True)],
        "villages": [[str(a), str(b)] for a, b in zip(ia["village"], ib["village"],
                                                     strict=True)],
        "parcel_ids": parcel_ids, "area_unit": unit,
        "share_a": _none_if_nan(hit["share_a"].round(6)),
        "share_b": _none_if_nan(hit["share_b"].round(6)),
        "subsidy_amounts": [[x, y] for x, y in zip(_none_if_nan(ia["subsidy"]),
                                                   _none_if_nan(ib["subsidy"]), strict=True)],
        "thresholds": _thresholds(min_overlap_m2=min_overlap_m2, share=share),
    }
    _areas(evidence, "overlap", hit["overlap_m2"], unit)
    _areas(evidence, "declared_a", ia["declared_m2"], unit)
    _areas(evidence, "declared_b", ib["declared_m2"], unit)
    detail = ("Declarations " + hit["a"] + " (applicant " + hit["applicant_a"] + ") and "
              + hit["b"] + " (applicant " + hit["applicant_b"] + ") of "
              + hit["year"].astype(str) + " overlap by " + _fmt_area(hit["overlap_m2"], unit)
              + " (" + _pct(hit["share_a"]) + " and " + _pct(hit["share_b"])
              + " of the two declarations)"
              + f" (threshold: {min_overlap_m2:g} m² or {share:.0%})")
    return _finish({
        "rule": code, "subject_type": "declaration", "subject_id": subject.to_numpy(),
        "unit": _text(ia["village"]), "period": hit["year"].astype(str).to_numpy(),
        "severity": "high", "score": biggest.fillna(0.0).to_numpy(),
        "amount_at_risk": risk, "observed_at": _observed(hit["year"]),
        "title": "Same land declared by two applicants in the same year",
        "detail": detail.to_numpy(), "evidence": _records(evidence, len(hit)),
    }, hit["geometry"].to_numpy(), crs)


# ---------------------------------------------------------------------------------------------
# farmland.non_farmland
# ---------------------------------------------------------------------------------------------


def _nonfarm_geometry(overlay: Overlay, context: RuleContext, ids: pd.Series,
                      from_parcels: np.ndarray, wanted: set[str]) -> np.ndarray:
    """Per hit declaration: its declared land on the non-farm classes ``wanted``.

    From the reference parcels of those classes where the rule measured them there
    (``from_parcels``), else from the land-use polygons of :attr:`RuleContext.land_use`
    (None without them). Only the hits' declarations are cut.
    """
    out = np.full(len(ids), None, dtype=object)
    ids = ids.astype(str).reset_index(drop=True)
    if from_parcels.any():
        parcel_class = pd.Series(
            land_use_class(overlay.parcels["land_use"].astype("string")).to_numpy(),
            index=overlay.parcels["parcel_id"].astype(str).to_numpy())
        parcel_class = parcel_class[~parcel_class.index.duplicated()]
        links = overlay.links.loc[:, ["declaration_id", "parcel_id", "by"]].astype(str)
        links = links.loc[links["parcel_id"].map(parcel_class).isin(wanted).to_numpy(dtype=bool)]
        out[from_parcels] = _union_on_parcels(overlay, links, "declaration_id",
                                              ids[from_parcels])
    lu = context.land_use
    rest = ~from_parcels
    if lu is None or not len(lu) or not rest.any() or "land_use" not in lu.columns:
        return out
    lu = lu if not isinstance(lu, gpd.GeoDataFrame) or lu.crs is None or overlay.crs is None \
        else lu.to_crs(overlay.crs)
    column = lu.geometry.name if isinstance(lu, gpd.GeoDataFrame) else "geometry"
    polys = _geoms(np.asarray(lu[column], dtype=object))
    polys = polys[land_use_class(lu["land_use"].astype("string")).isin(wanted).to_numpy(
        dtype=bool) & ~shapely.is_missing(polys)]
    declared = _geoms(_declaration_geometry(overlay, ids[rest]).reindex(
        ids[rest].to_numpy()).to_numpy(dtype=object))
    if not len(polys) or shapely.is_missing(declared).all():
        return out
    d_of, l_of = shapely.STRtree(polys).query(declared, predicate="intersects")
    if not len(d_of):
        return out
    pieces = _polygonal(_intersection(declared[d_of], polys[l_of]))
    keys = pd.Series(ids[rest].to_numpy()[d_of])
    out[rest] = _polygonal(_union_per_key(keys, pieces, ids[rest]))
    return out


@rule(
    "farmland.non_farmland",
    title="Declared land on non-farm land use",
    title_zh="申报土地位于非农用地上",
    severity="medium",
    inputs=("declarations", "land_use"),
    thresholds=[
        Threshold("min_m2", 1000.0, "m²", "non-farm area that is reported (0.1 ha)"),
        Threshold("share", 0.05, "share", "non-farm share of the declared land that is reported"),
        Threshold("classes", NON_FARM_CLASSES, "classes",
                  "land-use classes that are not farmland (aliases in English and Chinese "
                  "are recognised: 建设用地, 水域, 林地, 道路 …)"),
    ],
)
def non_farmland(overlay: Overlay, context: RuleContext, *, min_m2: float = 1000.0,
                 share: float = 0.05,
                 classes: Sequence[str] = NON_FARM_CLASSES) -> gpd.GeoDataFrame:
    """Declared land overlapping non-farm land-use classes.

    The declared land is the drawing, or the declared reference parcel for a
    declaration by id; the share is the non-farm overlap over that area. Fires when
    the non-farm overlap is at least ``min_m2`` or at least ``share``.
    """
    code = "farmland.non_farmland"
    crs = _crs(overlay, context)
    unit = context.area_unit
    min_m2 = _check_range("min_m2", min_m2)
    share = _check_range("share", share, high=1.0)
    if isinstance(classes, str):
        classes = [classes]
    # "water,forest" from an environment variable arrives as one entry: split it
    names = [c.strip() for entry in classes for c in str(entry).split(",") if c.strip()]
    wanted = set(land_use_class(names).dropna())
    review = _review(overlay.declarations, context)
    lu = overlay.land_use
    if not len(review) or not wanted:
        return _empty_hits(crs)
    table = pd.DataFrame({
        "declaration_id": lu["declaration_id"].astype(str).to_numpy(),
        "land_use": lu["land_use"].astype("string").to_numpy(),
        "overlap_m2": _num(lu["overlap_m2"]).to_numpy(),
    })
    table["class"] = land_use_class(table["land_use"]).to_numpy()
    table = table.loc[table["class"].isin(wanted).to_numpy(dtype=bool)]
    # Reference parcels whose own land_use is a non-farm class count as well; per
    # declaration the larger of the two measures is used (they may describe the same land).
    parcel_class = pd.Series(
        land_use_class(overlay.parcels["land_use"].astype("string")).to_numpy(),
        index=overlay.parcels["parcel_id"].astype(str).to_numpy())
    parcel_class = parcel_class[~parcel_class.index.duplicated()]
    links = pd.DataFrame({
        "declaration_id": overlay.links["declaration_id"].astype(str).to_numpy(),
        "overlap_m2": _num(overlay.links["overlap_m2"]).to_numpy(),
        "class": overlay.links["parcel_id"].astype(str).map(parcel_class).to_numpy(),
    })
    links = links.loc[links["class"].isin(wanted).to_numpy(dtype=bool)]
    layer_class = table.groupby(["declaration_id", "class"], sort=True)["overlap_m2"].sum()
    parcel_side = links.groupby(["declaration_id", "class"], sort=True)["overlap_m2"].sum()
    layer_total = layer_class.groupby(level=0).sum()
    parcel_total = parcel_side.groupby(level=0).sum()
    use_parcel = parcel_total.reindex(layer_total.index.union(parcel_total.index)).fillna(0) > \
        layer_total.reindex(layer_total.index.union(parcel_total.index)).fillna(0)
    chosen = set(use_parcel.index[use_parcel.to_numpy()])
    per_class = pd.concat([
        layer_class.loc[~layer_class.index.get_level_values(0).isin(chosen)],
        parcel_side.loc[parcel_side.index.get_level_values(0).isin(chosen)],
    ]).sort_index()
    source = pd.Series("land_use layer", index=use_parcel.index, dtype=object)
    source[use_parcel.to_numpy()] = "reference parcel land_use"
    per = per_class.groupby(level=0).sum().rename("nonfarm_m2").to_frame()
    info = pd.DataFrame({
        "declaration_id": review["declaration_id"].astype(str).to_numpy(),
        "applicant_id": review["applicant_id"].astype(str).to_numpy(),
        "year": _year_int(review["year"]).to_numpy(), "village": review["village"].to_numpy(),
        "declared_m2": _num(review["declared_m2"]).to_numpy(),
        "drawn_m2": _num(review["drawn_m2"]).to_numpy(),
        "subsidy": _num(review["subsidy_amount"]).to_numpy(),
    })
    linked = overlay.links.assign(declaration_id=overlay.links["declaration_id"].astype(str),
                                  overlap_m2=_num(overlay.links["overlap_m2"]).to_numpy())
    linked_m2 = linked.groupby("declaration_id")["overlap_m2"].sum()
    hit = info.join(per, on="declaration_id", how="inner")
    base = hit["drawn_m2"].fillna(hit["declaration_id"].map(linked_m2))
    hit["base_m2"] = base.fillna(hit["declared_m2"])
    hit["share"] = np.divide(hit["nonfarm_m2"], hit["base_m2"], out=np.ones(len(hit)),
                             where=hit["base_m2"].to_numpy() > 0).clip(0, 1)
    fire = (hit["nonfarm_m2"] >= min_m2) | (hit["share"] >= share)
    hit = hit.loc[fire].sort_values("declaration_id").reset_index(drop=True)
    if not len(hit):
        return _empty_hits(crs)
    ids = hit["declaration_id"]
    breakdown = per_class.loc[_among(per_class.index.get_level_values(0), ids)]
    names = _split_sorted(breakdown.index.get_level_values(0).to_numpy(dtype=object),
                          breakdown.index.get_level_values(1).to_numpy(dtype=object))
    values = _split_sorted(breakdown.index.get_level_values(0).to_numpy(dtype=object),
                           np.round(breakdown.to_numpy(dtype="float64"), 2))
    by_class = {d: dict(zip(map(str, names[d]), values[d], strict=True)) for d in names}
    links = overlay.links.loc[:, ["declaration_id", "parcel_id"]].astype(str)
    evidence: dict[str, Any] = {
        "declaration_id": ids.tolist(), "declaration_ids": [[d] for d in ids],
        "applicant_id": hit["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in hit["applicant_id"]],
        "parcel_ids": _id_lists(links, "declaration_id", "parcel_id", ids),
        "area_unit": unit, "nonfarm_share": _none_if_nan(hit["share"].round(6)),
        "nonfarm_m2_by_class": [by_class.get(d, {}) for d in ids],
        "nonfarm_source": source.reindex(ids.to_numpy()).fillna("land_use layer").tolist(),
        "subsidy_amount": _none_if_nan(hit["subsidy"]),
        "thresholds": _thresholds(min_m2=min_m2, share=share, classes=sorted(wanted)),
    }
    for name in ("declared", "base", "nonfarm"):
        _areas(evidence, name, hit[f"{name}_m2"], unit)
    classes_text = pd.Series([", ".join(sorted(by_class.get(d, {}))) for d in ids])
    detail = ("Declaration " + ids + ": " + _fmt_area(hit["nonfarm_m2"], unit) + " ("
              + _pct(hit["share"]) + ") of the declared land " + _fmt_area(hit["base_m2"], unit)
              + " lie on land use " + classes_text
              + f" (threshold: {min_m2:g} m² or {share:.0%})")
    geoms = _declaration_geometry(overlay).reindex(ids.to_numpy()).to_numpy(dtype=object)
    from_parcels = _among(ids, list(chosen))
    nonfarm = _nonfarm_geometry(overlay, context, ids, from_parcels, wanted)
    return _finish({
        "rule": code, "subject_type": "declaration", "subject_id": ids.to_numpy(),
        "unit": _text(hit["village"]), "period": hit["year"].astype(str).to_numpy(),
        "severity": "medium", "score": hit["share"].to_numpy(),
        "amount_at_risk": (hit["subsidy"] * hit["share"]).to_numpy(),
        "observed_at": _observed(hit["year"]),
        "title": "Declared land on non-farm land use",
        "detail": detail.to_numpy(),
        "evidence": _with(_records(evidence, len(hit)), "overlap_wkt", _wkt(nonfarm, crs)),
    }, geoms, crs)


# ---------------------------------------------------------------------------------------------
# farmland.deceased_applicant, farmland.official_applicant
# ---------------------------------------------------------------------------------------------


@rule(
    "farmland.deceased_applicant",
    title="Applicant recorded as deceased before the declaration year",
    title_zh="申报人在申报年度前已登记死亡",
    severity="high",
    inputs=("declarations", "persons"),
    thresholds=[
        Threshold("min_days", 1, "days",
                  "days between the recorded death and 1 January of the declaration year"),
    ],
)
def deceased_applicant(overlay: Overlay, context: RuleContext, *,
                       min_days: int = 1) -> gpd.GeoDataFrame:
    """Declarations of a year that began at least ``min_days`` after the applicant's death.

    The year starts on 1 January, 00:00 in ``context.timezone``; a death during the
    declaration year is not flagged (the declaration may predate it). One hit per
    applicant and year.
    """
    code = "farmland.deceased_applicant"
    crs = _crs(overlay, context)
    persons = _persons(context)
    review = _review(overlay.declarations, context)
    if persons is None or "died_on" not in persons.columns or not len(review):
        return _empty_hits(crs)
    died = pd.to_datetime(persons["died_on"], errors="coerce", utc=False, format="mixed")
    if getattr(died.dt, "tz", None) is None:
        died = died.dt.tz_localize(context.timezone)
    died = died.dt.tz_convert(context.timezone)
    dead = pd.DataFrame({"applicant_id": persons["person_id"].to_numpy(), "died_on": died,
                         "name": persons["name"].to_numpy() if "name" in persons.columns
                         else None}).dropna(subset=["died_on"])
    if not len(dead):
        return _empty_hits(crs)
    per = _per_applicant(review, overlay)
    table = per.table.merge(dead, on="applicant_id")
    starts = pd.to_datetime(table["year"].astype(str) + "-01-01").dt.tz_localize(
        context.timezone)
    days = (starts - table["died_on"]).dt.total_seconds() / 86400.0
    table["days"] = days.to_numpy()
    table = table.loc[table["days"] >= float(min_days)].sort_values("key")
    if not len(table):
        return _empty_hits(crs)
    table = per.keep(table)
    unit = context.area_unit
    died_text = table["died_on"].dt.strftime("%Y-%m-%d")
    evidence: dict[str, Any] = {
        "applicant_id": table["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in table["applicant_id"]],
        "person_name": _text(table["name"]).tolist(), "died_on": died_text.tolist(),
        "days_before_year": np.floor(table["days"]).astype(int).tolist(),
        "declaration_ids": table["declaration_ids"].tolist(),
        "parcel_ids": table["parcel_ids"].tolist(), "area_unit": unit,
        "subsidy_amount": _none_if_nan(table["subsidy"]),
        "thresholds": _thresholds(min_days=min_days),
    }
    _areas(evidence, "declared", table["declared_m2"], unit)
    detail = ("Applicant " + table["applicant_id"] + ": the persons registry records a death on "
              + died_text + ", " + np.floor(table["days"]).astype(int).astype(str)
              + " day(s) before the declaration year " + table["year"].astype(str) + " began; "
              + table["n"].astype(str) + " declaration(s), "
              + _fmt_area(table["declared_m2"], unit)
              + f" (threshold: {min_days} day(s))")
    return _finish({
        "rule": code, "subject_type": "applicant", "subject_id": table["applicant_id"],
        "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
        "severity": "high", "score": (table["days"] / (table["days"] + 365.0)).to_numpy(),
        "amount_at_risk": table["subsidy"].to_numpy(), "observed_at": _observed(table["year"]),
        "title": "Applicant recorded as deceased before the declaration year",
        "detail": detail.to_numpy(), "evidence": _records(evidence, len(table)),
    }, per.geometries(), crs)


@rule(
    "farmland.official_applicant",
    title="Applicant recorded as a public official",
    title_zh="申报人登记为公职人员",
    severity="medium",
    inputs=("declarations", "persons"),
    thresholds=[
        Threshold("same_unit_only", False, "flag",
                  "report only officials whose unit is the declaration's village"),
    ],
)
def official_applicant(overlay: Overlay, context: RuleContext, *,
                       same_unit_only: bool = False) -> gpd.GeoDataFrame:
    """Declarations by applicants the persons registry marks as public officials.

    One hit per applicant and year. Being an official is not a fault: the alert asks
    a reviewer to look at the declarations.
    """
    code = "farmland.official_applicant"
    crs = _crs(overlay, context)
    persons = _persons(context)
    review = _review(overlay.declarations, context)
    if persons is None or "is_official" not in persons.columns or not len(review):
        return _empty_hits(crs)
    official = persons.loc[_flag(persons["is_official"]).to_numpy(dtype=bool)]
    if not len(official):
        return _empty_hits(crs)
    people = pd.DataFrame({
        "applicant_id": official["person_id"].to_numpy(),
        "name": official["name"].to_numpy() if "name" in official.columns else None,
        "official_unit": official["unit"].to_numpy() if "unit" in official.columns else None,
    })
    per = _per_applicant(review, overlay)
    table = per.table.merge(people, on="applicant_id")
    if same_unit_only:
        same = _squash(table["official_unit"]).to_numpy() == _squash(table["village"]).to_numpy()
        table = table.loc[pd.Series(same).fillna(False).to_numpy(dtype=bool)]
    table = table.sort_values("key")
    if not len(table):
        return _empty_hits(crs)
    table = per.keep(table)
    unit = context.area_unit
    top = table["subsidy"].max()
    score = table["subsidy"] / top if top and np.isfinite(top) and top > 0 else 0.5
    evidence: dict[str, Any] = {
        "applicant_id": table["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in table["applicant_id"]],
        "person_name": _text(table["name"]).tolist(),
        "official_unit": _text(table["official_unit"]).tolist(),
        "declaration_ids": table["declaration_ids"].tolist(),
        "parcel_ids": table["parcel_ids"].tolist(), "area_unit": unit,
        "subsidy_amount": _none_if_nan(table["subsidy"]),
        "thresholds": _thresholds(same_unit_only=bool(same_unit_only)),
    }
    _areas(evidence, "declared", table["declared_m2"], unit)
    detail = ("Applicant " + table["applicant_id"] + " is marked as a public official ("
              + _text(table["official_unit"]) + ") in the persons registry; "
              + table["n"].astype(str) + " declaration(s) of " + table["year"].astype(str)
              + ", " + _fmt_area(table["declared_m2"], unit))
    return _finish({
        "rule": code, "subject_type": "applicant", "subject_id": table["applicant_id"],
        "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
        "severity": "medium", "score": score,
        "amount_at_risk": table["subsidy"].to_numpy(), "observed_at": _observed(table["year"]),
        "title": "Applicant recorded as a public official",
        "detail": detail.to_numpy(), "evidence": _records(evidence, len(table)),
    }, per.geometries(), crs)


# ---------------------------------------------------------------------------------------------
# farmland.big_recipient
# ---------------------------------------------------------------------------------------------


@rule(
    "farmland.big_recipient",
    title="Total declared area far above the village's distribution",
    title_zh="申报总面积远高于本村分布",
    severity="low",
    inputs=("declarations",),
    thresholds=[
        Threshold("method", "robust_z", "", "robust_z (median/MAD) or percentile"),
        Threshold("z", 3.5, "z", "robust z-score 0.6745 (x − median) / MAD that is reported"),
        Threshold("percentile", 99.0, "%",
                  "with method = percentile: the village percentile that is reported"),
        Threshold("min_village_size", 8, "applicants",
                  "villages with fewer applicants in the year are not compared"),
    ],
)
def big_recipient(overlay: Overlay, context: RuleContext, *, method: str = "robust_z",
                  z: float = 3.5, percentile: float = 99.0,
                  min_village_size: int = 8) -> gpd.GeoDataFrame:
    """Applicants whose total declared area is far above their village's peers.

    Per village and year: the robust z-score of each applicant's total declared area
    (median and median absolute deviation; when the MAD is 0, 1.2533 × the mean
    absolute deviation), or its rank against the village's ``percentile``.
    """
    code = "farmland.big_recipient"
    crs = _crs(overlay, context)
    if method not in ("robust_z", "percentile"):
        msg = f"farmland.big_recipient method {method!r} is unknown; use robust_z or percentile"
        raise ConfigError(msg)
    z = _check_range("z", z)
    percentile = _check_range("percentile", percentile, high=100.0)
    review = _review(overlay.declarations, context)
    if not len(review):
        return _empty_hits(crs)
    per = _per_applicant(review, overlay)
    table = per.table.copy()
    table["village_key"] = _text(table["village"]).to_numpy()
    group = table.groupby(["village_key", "year"], sort=False)["declared_m2"]
    table["n_village"] = group.transform("size")
    table["median_m2"] = group.transform("median")
    table["_absdev"] = (table["declared_m2"] - table["median_m2"]).abs()
    group_dev = table.groupby(["village_key", "year"], sort=False)["_absdev"]
    table["mad_m2"] = group_dev.transform("median")
    table["meanad_m2"] = group_dev.transform("mean")
    diff = (table["declared_m2"] - table["median_m2"]).to_numpy()
    mad, meanad = table["mad_m2"].to_numpy(), table["meanad_m2"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        robust = np.where(mad > 0, 0.6745 * diff / mad,
                          np.where(meanad > 0, diff / (1.253314 * meanad), 0.0))
    table["robust_z"] = robust
    table["percentile_m2"] = group.transform(lambda s: s.quantile(percentile / 100.0))
    table["rank_pct"] = group.rank(pct=True).to_numpy() * 100.0
    big = table["n_village"] >= int(min_village_size)
    if method == "robust_z":
        fire = big & (table["robust_z"] >= z)
        score = table["robust_z"] / (table["robust_z"] + z)
    else:
        fire = big & (table["declared_m2"] >= table["percentile_m2"]) & (diff > 0)
        score = table["rank_pct"] / 100.0
    table["score"] = score
    table = table.loc[fire.to_numpy(dtype=bool)].sort_values("key")
    if not len(table):
        return _empty_hits(crs)
    table = per.keep(table)
    unit = context.area_unit
    evidence: dict[str, Any] = {
        "applicant_id": table["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in table["applicant_id"]],
        "declaration_ids": table["declaration_ids"].tolist(),
        "parcel_ids": table["parcel_ids"].tolist(), "area_unit": unit, "method": method,
        "robust_z": _none_if_nan(table["robust_z"].round(4)),
        "rank_percent": _none_if_nan(table["rank_pct"].round(2)),
        "village_applicants": table["n_village"].astype(int).tolist(),
        "subsidy_amount": _none_if_nan(table["subsidy"]),
        "thresholds": _thresholds(method=method, z=z, percentile=percentile,
                                  min_village_size=int(min_village_size)),
    }
    for name in ("declared", "median", "mad", "percentile"):
        _areas(evidence, name, table[f"{name}_m2"], unit)
    measure = ("robust z-score " + _fmt(table["robust_z"], 1) + f" (threshold {z:g})"
               if method == "robust_z" else
               "at the village's " + _fmt(table["rank_pct"], 1)
               + f" % rank (threshold: percentile {percentile:g})")
    detail = ("Applicant " + table["applicant_id"] + ", " + table["year"].astype(str)
              + ": declared " + _fmt_area(table["declared_m2"], unit) + " in total against a "
              + "median of " + _fmt_area(table["median_m2"], unit) + " among the "
              + table["n_village"].astype(int).astype(str) + " applicants of "
              + _text(table["village"]) + "; " + measure)
    return _finish({
        "rule": code, "subject_type": "applicant", "subject_id": table["applicant_id"],
        "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
        "severity": "low", "score": table["score"].to_numpy(),
        "amount_at_risk": table["subsidy"].to_numpy(), "observed_at": _observed(table["year"]),
        "title": "Total declared area far above the village's distribution",
        "detail": detail.to_numpy(), "evidence": _records(evidence, len(table)),
    }, per.geometries(), crs)


# ---------------------------------------------------------------------------------------------
# farmland.claim_frequency
# ---------------------------------------------------------------------------------------------


def _uses(overlay: Overlay, min_share: float) -> pd.DataFrame:
    """Which declaration uses which reference parcel (by id, or covering min_share of it)."""
    links = overlay.links
    area = pd.Series(_num(overlay.parcels["area_m2"]).to_numpy(),
                     index=overlay.parcels["parcel_id"].astype(str).to_numpy())
    area = area[~area.index.duplicated()]
    table = pd.DataFrame({
        "declaration_id": links["declaration_id"].astype(str).to_numpy(),
        "parcel_id": links["parcel_id"].astype(str).to_numpy(),
        "overlap_m2": _num(links["overlap_m2"]).to_numpy(),
        "by": links["by"].astype(str).to_numpy(),
    })
    parcel_area = table["parcel_id"].map(area).to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        covered = table["overlap_m2"].to_numpy() / parcel_area
    used = (table["by"] == "id").to_numpy() | (np.nan_to_num(covered) >= min_share)
    table = table.loc[used]
    decl = overlay.declarations
    info = pd.DataFrame({
        "declaration_id": decl["declaration_id"].astype(str).to_numpy(),
        "applicant_id": decl["applicant_id"].astype(str).to_numpy(),
        "year": _year_int(decl["year"]).to_numpy(), "village": decl["village"].to_numpy(),
        "subsidy": _num(decl["subsidy_amount"]).to_numpy(),
    })
    return table.merge(info, on="declaration_id")


@rule(
    "farmland.claim_frequency",
    title="Many declarations or parcels per applicant, or many applicants per parcel",
    title_zh="申报次数或地块数偏多，或同一地块申报人偏多",
    severity="low",
    inputs=("declarations", "parcels"),
    thresholds=[
        Threshold("max_declarations", 20, "declarations",
                  "declarations per applicant and year that are still not reported"),
        Threshold("max_parcels", 20, "parcels",
                  "reference parcels per applicant and year that are still not reported"),
        Threshold("max_applicants", 2, "applicants",
                  "applicants per reference parcel within window_years still not reported"),
        Threshold("window_years", 3, "years",
                  "years (the year under review and the ones before) counted per parcel"),
        Threshold("min_share", 0.10, "share",
                  "share of a reference parcel a drawn declaration must cover to use it"),
    ],
)
def claim_frequency(overlay: Overlay, context: RuleContext, *, max_declarations: int = 20,
                    max_parcels: int = 20, max_applicants: int = 2, window_years: int = 3,
                    min_share: float = 0.10) -> gpd.GeoDataFrame:
    """More declarations or parcels per applicant than allowed, or a parcel used by many.

    Applicant hits (subject ``applicant``) fire when the declarations or the
    reference parcels used in a year exceed ``max_declarations`` / ``max_parcels``;
    parcel hits (subject ``parcel``) when a reference parcel declared in a year
    under review was used by more than ``max_applicants`` distinct applicants in
    that year and the ``window_years − 1`` years before.
    """
    code = "farmland.claim_frequency"
    crs = _crs(overlay, context)
    unit = context.area_unit
    min_share = _check_range("min_share", min_share, high=1.0)
    window_years = max(int(window_years), 1)
    review = _review(overlay.declarations, context)
    if not len(review):
        return _empty_hits(crs)
    thresholds = _thresholds(max_declarations=int(max_declarations),
                             max_parcels=int(max_parcels), max_applicants=int(max_applicants),
                             window_years=window_years, min_share=min_share)
    uses = _uses(overlay, min_share)
    parts: list[gpd.GeoDataFrame] = []

    per = _per_applicant(review, overlay)
    table = per.table.copy()
    used = uses.assign(key=uses["applicant_id"] + "\x1f" + uses["year"].astype(str))
    n_parcels = used.groupby("key")["parcel_id"].nunique()
    table["n_parcels"] = table["key"].map(n_parcels).fillna(0).astype(int)
    fire = (table["n"] > int(max_declarations)) | (table["n_parcels"] > int(max_parcels))
    table = table.loc[fire.to_numpy(dtype=bool)].sort_values("key")
    if len(table):
        table = per.keep(table)
        used_ids = _id_lists(used, "key", "parcel_id", table["key"])
        evidence: dict[str, Any] = {
            "applicant_id": table["applicant_id"].tolist(),
            "applicant_ids": [[a] for a in table["applicant_id"]],
            "declaration_ids": table["declaration_ids"].tolist(), "parcel_ids": used_ids,
            "n_declarations": table["n"].astype(int).tolist(),
            "n_parcels": table["n_parcels"].tolist(), "area_unit": unit,
            "subsidy_amount": _none_if_nan(table["subsidy"]), "thresholds": thresholds,
        }
        _areas(evidence, "declared", table["declared_m2"], unit)
        detail = ("Applicant " + table["applicant_id"] + ", " + table["year"].astype(str)
                  + ": " + table["n"].astype(str) + " declaration(s) on "
                  + table["n_parcels"].astype(str) + " reference parcel(s), "
                  + _fmt_area(table["declared_m2"], unit)
                  + f" (limits: {int(max_declarations)} declarations, "
                  f"{int(max_parcels)} parcels)")
        excess = np.fmax(table["n"] / max(int(max_declarations), 1),
                         table["n_parcels"] / max(int(max_parcels), 1))
        parts.append(_finish({
            "rule": code, "subject_type": "applicant", "subject_id": table["applicant_id"],
            "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
            "severity": "low", "score": (1.0 - 1.0 / excess).to_numpy(),
            "amount_at_risk": table["subsidy"].to_numpy(),
            "observed_at": _observed(table["year"]),
            "title": "Many declarations or reference parcels for one applicant",
            "detail": detail.to_numpy(), "evidence": _records(evidence, len(table)),
        }, per.geometries(), crs))

    rows = []
    for year in sorted(set(context.years)):  # one pass per year under review, not per parcel
        now = uses.loc[uses["year"] == year]
        if not len(now):
            continue
        window = uses.loc[(uses["year"] <= year) & (uses["year"] > year - window_years)
                          & _among(uses["parcel_id"], now["parcel_id"])]
        counts = window.groupby("parcel_id")["applicant_id"].nunique()
        crowded = counts[counts > int(max_applicants)]
        if not len(crowded):
            continue
        part = window.loc[_among(window["parcel_id"], crowded.index)].assign(review_year=year)
        rows.append(part)
    if rows:
        window = pd.concat(rows, ignore_index=True)
        window["key"] = window["parcel_id"] + "\x1f" + window["review_year"].astype(str)
        current = window.loc[window["year"] == window["review_year"]]
        table = current.groupby("key", sort=True).agg(
            parcel_id=("parcel_id", "first"), year=("review_year", "first"),
            village=("village", "first"), subsidy=("subsidy", "sum")).reset_index()
        table["applicant_ids"] = _id_lists(window, "key", "applicant_id", table["key"])
        table["declaration_ids"] = _id_lists(window, "key", "declaration_id", table["key"])
        window["year_text"] = window["year"].astype(str)
        table["years"] = _id_lists(window, "key", "year_text", table["key"])
        table["n_applicants"] = [len(a) for a in table["applicant_ids"]]
        parcels = overlay.parcels.assign(parcel_id=overlay.parcels["parcel_id"].astype(str))
        parcels = parcels.drop_duplicates("parcel_id").set_index("parcel_id")
        p = parcels.reindex(table["parcel_id"].to_numpy())
        evidence = {
            "parcel_id": table["parcel_id"].tolist(),
            "parcel_ids": [[x] for x in table["parcel_id"]],
            "applicant_ids": table["applicant_ids"].tolist(),
            "declaration_ids": table["declaration_ids"].tolist(),
            "years": table["years"].tolist(), "n_applicants": table["n_applicants"],
            "area_unit": unit, "subsidy_amount": _none_if_nan(table["subsidy"]),
            "thresholds": thresholds,
        }
        _areas(evidence, "eligible", _num(p["eligible_m2"]).to_numpy(), unit)
        detail = ("Reference parcel " + table["parcel_id"] + ": declared by "
                  + table["n_applicants"].astype(str) + " applicants ("
                  + pd.Series([", ".join(a) for a in table["applicant_ids"]]) + ") in "
                  + pd.Series([", ".join(y) for y in table["years"]])
                  + f" (limit: {int(max_applicants)} applicants in {window_years} years)")
        n = table["n_applicants"].to_numpy(dtype="float64")
        parts.append(_finish({
            "rule": code, "subject_type": "parcel", "subject_id": table["parcel_id"],
            "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
            "severity": "low", "score": 1.0 - max(int(max_applicants), 1) / n,
            "amount_at_risk": table["subsidy"].to_numpy(),
            "observed_at": _observed(table["year"]),
            "title": "One reference parcel declared by several applicants over the years",
            "detail": detail.to_numpy(), "evidence": _records(evidence, len(table)),
        }, p["geometry"].to_numpy(dtype=object), crs))
    if not parts:
        return _empty_hits(crs)
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# farmland.year_change
# ---------------------------------------------------------------------------------------------


@rule(
    "farmland.year_change",
    title="Declared area or shape changed sharply from the previous year",
    title_zh="申报面积或范围较上年变化较大",
    severity="low",
    inputs=("declarations", "previous"),
    thresholds=[
        Threshold("area_change", 0.30, "share",
                  "change of the declared area relative to the previous year's"),
        Threshold("geometry_change", 0.30, "share",
                  "area of the symmetric difference of the drawings / area of their union"),
    ],
)
def year_change(overlay: Overlay, context: RuleContext, *, area_change: float = 0.30,
                geometry_change: float = 0.30) -> gpd.GeoDataFrame:
    """Declarations whose area or drawing changed sharply against the year before.

    Fires when ``|declared − previous| / previous`` is at least ``area_change`` or
    the symmetric difference over the union of the two drawings is at least
    ``geometry_change``. The hit's geometry is the symmetric difference when both
    years were drawn, else the declaration.
    """
    code = "farmland.year_change"
    crs = _crs(overlay, context)
    unit = context.area_unit
    area_change = _check_range("area_change", area_change)
    geometry_change = _check_range("geometry_change", geometry_change, high=1.0)
    review = _review(overlay.declarations, context)
    changes = overlay.changes
    if not len(review) or not len(changes):
        return _empty_hits(crs)
    table = pd.DataFrame({
        "declaration_id": changes["declaration_id"].astype(str).to_numpy(),
        "previous_id": changes["previous_id"].astype(str).to_numpy(),
        "declared_m2": _num(changes["declared_m2"]).to_numpy(),
        "previous_m2": _num(changes["previous_m2"]).to_numpy(),
        "sym_diff_m2": _num(changes["sym_diff_m2"]).to_numpy(),
        "union_m2": _num(changes["union_m2"]).to_numpy(),
    })
    info = pd.DataFrame({
        "declaration_id": review["declaration_id"].astype(str).to_numpy(),
        "applicant_id": review["applicant_id"].astype(str).to_numpy(),
        "year": _year_int(review["year"]).to_numpy(), "village": review["village"].to_numpy(),
        "subsidy": _num(review["subsidy_amount"]).to_numpy(),
    })
    table = table.merge(info, on="declaration_id")
    prev = table["previous_m2"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        table["area_change"] = np.where(prev > 0, np.abs(table["declared_m2"] - prev) / prev,
                                        np.inf)
        table["geometry_change"] = np.where(table["union_m2"] > 0,
                                            table["sym_diff_m2"] / table["union_m2"], np.nan)
    fire = (table["area_change"] >= area_change) | (table["geometry_change"] >= geometry_change)
    table = table.loc[fire].sort_values("declaration_id").reset_index(drop=True)
    if not len(table):
        return _empty_hits(crs)
    ids = table["declaration_id"]
    geoms = _declaration_geometry(overlay)
    drawn = overlay.declarations.assign(declaration_id=overlay.declarations["declaration_id"]
                                        .astype(str)).drop_duplicates("declaration_id")
    drawn = pd.Series(np.asarray(drawn["geometry"], dtype=object),
                      index=drawn["declaration_id"].to_numpy())
    now = drawn.reindex(ids.to_numpy()).to_numpy(dtype=object)
    before = drawn.reindex(table["previous_id"].to_numpy()).to_numpy(dtype=object)
    both = ~(shapely.is_missing(now) | shapely.is_missing(before))
    sym = np.full(len(table), None, dtype=object)
    if both.any():
        sym[both] = shapely.symmetric_difference(now[both], before[both])
    fallback = geoms.reindex(ids.to_numpy()).to_numpy(dtype=object)
    geometry = np.where(shapely.is_missing(sym) | shapely.is_empty(sym), fallback, sym)
    increase = np.clip((table["declared_m2"] - table["previous_m2"]) / table["declared_m2"], 0, 1)
    share = np.fmax(increase.fillna(0.0), table["geometry_change"].fillna(0.0)).clip(0, 1)
    links = overlay.links.loc[:, ["declaration_id", "parcel_id"]].astype(str)
    area_ratio = table["area_change"].where(np.isfinite(table["area_change"]))
    evidence: dict[str, Any] = {
        "declaration_id": ids.tolist(), "previous_id": table["previous_id"].tolist(),
        "declaration_ids": [[a, b] for a, b in zip(ids, table["previous_id"], strict=True)],
        "applicant_id": table["applicant_id"].tolist(),
        "applicant_ids": [[a] for a in table["applicant_id"]],
        "parcel_ids": _id_lists(links, "declaration_id", "parcel_id", ids), "area_unit": unit,
        "area_change": _none_if_nan(area_ratio.round(6)),
        "geometry_change": _none_if_nan(table["geometry_change"].round(6)),
        "subsidy_amount": _none_if_nan(table["subsidy"]),
        "thresholds": _thresholds(area_change=area_change, geometry_change=geometry_change),
    }
    for name in ("declared", "previous", "sym_diff", "union"):
        _areas(evidence, name, table[f"{name}_m2"], unit)
    detail = ("Declaration " + ids + " against " + table["previous_id"] + " of the year "
              + "before: declared area " + _fmt_area(table["previous_m2"], unit) + " → "
              + _fmt_area(table["declared_m2"], unit) + " (change " + _pct(area_ratio)
              + "); drawing changed by " + _pct(table["geometry_change"])
              + " of the union" + f" (thresholds: {area_change:.0%} area, "
              f"{geometry_change:.0%} drawing)")
    score = np.fmax(np.nan_to_num(area_ratio.to_numpy(), nan=0.0) / (1.0 + np.nan_to_num(
        area_ratio.to_numpy(), nan=0.0)), table["geometry_change"].fillna(0.0).to_numpy())
    score = np.where(np.isinf(table["area_change"]), 1.0, score)
    # last year's drawing, when the drawing changed (not when only the declared area did)
    before = _geoms(before)
    same = (table["sym_diff_m2"] == 0).to_numpy(dtype=bool) & ~shapely.is_missing(_geoms(now))
    previous = np.where(shapely.is_missing(before) | same, None, before)
    return _finish({
        "rule": code, "subject_type": "declaration", "subject_id": ids.to_numpy(),
        "unit": _text(table["village"]), "period": table["year"].astype(str).to_numpy(),
        "severity": "low", "score": score,
        "amount_at_risk": (table["subsidy"] * share).to_numpy(),
        "observed_at": _observed(table["year"]),
        "title": "Declared area or shape changed sharply from the previous year",
        "detail": detail.to_numpy(),
        "evidence": _with(_records(evidence, len(table)), "previous_wkt", _wkt(previous, crs)),
    }, geometry, crs)
