"""Prepare farmland inputs for the overlay: units, one metric CRS, and geometry hygiene.

:func:`prepare` takes declarations, reference parcels, an optional land-use layer and
optional previous years' declarations (as :func:`geosup.io.read_table` returns them, with
canonical column names and a ``_row`` column) and returns a :class:`Prepared` bundle that
both overlay engines (in process and PostGIS) consume:

- areas declared in the user's unit (mu, ha, m²) are converted to m²;
- every layer is reprojected to one metric CRS (given, or chosen for the union of the
  extents with :func:`geosup.crs.metric_crs_for`);
- geometry hygiene, all vectorised: missing and empty geometry, invalid geometry repaired
  with ``shapely.make_valid`` (only the polygonal part is kept), a fixed precision grid
  (coordinates rounded to ``precision_m``; ``shapely.set_precision`` where rounding alone
  would leave a geometry invalid) so that overlays do not fail on non-noded intersections,
  sliver parts removed, duplicate ids and duplicate geometries;
- attribute checks: declared area > 0, eligible area >= 0, a declaration needs a geometry
  or a parcel id that exists among the reference parcels, previous declarations must be
  older than the years under review.

A row that cannot be used is a rejects-ledger row (``source, row, key, reason, raw``); a
geometry that was changed is a repairs row (``source, row, key, reason``) and the row stays
used. Nothing is dropped or changed silently: per source, ``rows_in == rows_used +
rows_rejected``.

Examples
--------
>>> import geopandas as gpd
>>> import pandas as pd
>>> from shapely import Polygon, box
>>> parcels = gpd.GeoDataFrame(
...     {"parcel_id": ["P1", "P1"], "eligible_area": [1.0, 2.0]},
...     geometry=[box(500000, 0, 500100, 100), box(500200, 0, 500300, 100)], crs=32650)
>>> declarations = gpd.GeoDataFrame(
...     {"declaration_id": ["D1", "D2"], "applicant_id": ["A", "B"], "year": [2025, 2025],
...      "parcel_id": [None, "P1"], "declared_area": [1.5, 0.0]},
...     geometry=[Polygon([(500000, 0), (500100, 100), (500100, 0), (500000, 100)]), None],
...     crs=32650)
>>> import warnings
>>> with warnings.catch_warnings(record=True) as seen:
...     warnings.simplefilter("always")
...     prep = prepare(declarations, parcels, area_unit="ha", crs=32650)
>>> [str(w.message) for w in seen]
['1 farmland geometries were repaired; Prepared.repairs lists which and how']
>>> prep.declarations[["declaration_id", "declared_m2"]].values.tolist()
[['D1', 15000.0]]
>>> prep.rejects[["source", "row", "reason"]].values.tolist()
[['declarations', 2, 'declared_area must be > 0 (got 0)'], \
['parcels', 2, "duplicate parcel_id 'P1' (first on row 1)"]]
>>> prep.repairs["reason"].tolist()
['repaired: Self-intersection[500050 50]; make_valid gave MultiPolygon, 0 m² -> 5000 m²']
>>> prep.counts["declarations"]
{'rows_in': 2, 'rows_used': 1, 'rows_rejected': 1}
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosup.crs import AREA_UNITS, metric_crs_for, normalize_area_unit
from geosup.errors import (
    AreaUnitError,
    ConfigError,
    CRSError,
    GeometryRepairWarning,
    SchemaError,
)
from geosup.io import LEDGER_COLUMNS, REPAIR_COLUMNS, ROW_COLUMN, RejectsLedger

__all__ = ["DECLARATION_COLUMNS", "LAND_USE_COLUMNS", "PARCEL_COLUMNS", "Prepared", "prepare"]

logger = logging.getLogger(__name__)

#: Columns of :attr:`Prepared.declarations`, in order.
DECLARATION_COLUMNS: tuple[str, ...] = (
    "declaration_id", "applicant_id", "year", "village", "parcel_id", "crop", "subsidy_amount",
    "declared_m2", "is_previous", "geometry",
)
#: Columns of :attr:`Prepared.parcels`, in order.
PARCEL_COLUMNS: tuple[str, ...] = ("parcel_id", "eligible_m2", "land_use", "geometry")
#: A layer's areas over its polygons' areas: a median outside [1/x, x] means a wrong unit.
_LAYER_RATIO = 5.0
#: Columns of :attr:`Prepared.land_use`, in order.
LAND_USE_COLUMNS: tuple[str, ...] = ("land_use", "geometry")

_STRING = pd.StringDtype()
_WGS84 = pyproj.CRS.from_epsg(4326)
_POLYGONAL = (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON)
_TYPE_NAMES = np.array(
    ["Point", "LineString", "LinearRing", "Polygon", "MultiPoint", "MultiLineString",
     "MultiPolygon", "GeometryCollection"],
    dtype=object,
)


@dataclass
class Prepared:
    """Inputs ready for an overlay engine: metric CRS, m², clean polygons.

    Attributes
    ----------
    crs : pyproj.CRS
        The metric CRS of every geometry below.
    area_unit : str
        The user's unit, normalised (``"mu"``, ``"ha"``, ``"m2"``, ``"km2"``).
    declarations : GeoDataFrame
        Current and previous declarations: ``declaration_id`` (string), ``applicant_id``
        (string), ``year`` (int64), ``village`` (string or <NA>), ``parcel_id`` (string or
        <NA>, as declared), ``crop`` (string or <NA>), ``subsidy_amount`` (float, NaN when
        missing), ``declared_m2`` (float), ``is_previous`` (bool), ``geometry`` (metric;
        None for a declaration by parcel id only).
    parcels : GeoDataFrame
        Reference parcels: ``parcel_id`` (string), ``eligible_m2`` (float), ``land_use``
        (string or <NA>), ``geometry`` (metric).
    land_use : GeoDataFrame or None
        ``land_use`` (string), ``geometry`` (metric). Every class is kept; the rules
        decide which classes are non-farm. Polygons may overlap each other.
    years : tuple of int
        The years under review: the years of the current (not previous) declarations.
    rejects : DataFrame
        Rejects-ledger rows added by :func:`prepare`: ``source, row, key, reason, raw``.
    repairs : DataFrame
        Geometries changed by :func:`prepare` (the rows stay used):
        ``source, row, key, reason``.
    counts : dict
        Per source name: ``{"rows_in", "rows_used", "rows_rejected"}`` with
        ``rows_in == rows_used + rows_rejected``.
    precision_m : float
        The precision grid the coordinates were snapped to (the geometries carry floating
        precision afterwards; an engine may redo an overlay on this grid after a GEOS
        error).
    """

    crs: pyproj.CRS
    area_unit: str
    declarations: gpd.GeoDataFrame
    parcels: gpd.GeoDataFrame
    land_use: gpd.GeoDataFrame | None
    years: tuple[int, ...]
    rejects: pd.DataFrame
    repairs: pd.DataFrame
    counts: dict[str, dict[str, int]]
    precision_m: float = 0.01


# ---------------------------------------------------------------------------------------------
# Book-keeping of one input (or of several inputs handled as one table)
# ---------------------------------------------------------------------------------------------


class _Table:
    """Rows of one or more sources: which are still usable, why the others are not."""

    def __init__(self, parts: list[tuple[str, pd.DataFrame]], *, key: str | None) -> None:
        self.parts = parts
        self.key = key
        self.sources = np.concatenate(
            [np.full(len(frame), name, dtype=object) for name, frame in parts]
        ) if parts else np.empty(0, dtype=object)
        rows = []
        for _, frame in parts:
            if ROW_COLUMN in frame.columns:
                rows.append(pd.to_numeric(frame[ROW_COLUMN]).to_numpy(dtype=np.int64))
            else:
                rows.append(np.arange(1, len(frame) + 1, dtype=np.int64))
        self.rows = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        self.offsets = np.cumsum([0] + [len(frame) for _, frame in parts])
        self.alive = np.ones(len(self.rows), dtype=bool)
        self.ledger = RejectsLedger()
        self.repair_blocks: list[pd.DataFrame] = []
        self.keys = np.full(len(self.rows), "", dtype=object)

    def __len__(self) -> int:
        return len(self.rows)

    def reject(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        """Send the still-usable rows of ``mask`` to the ledger (one reason or one per row)."""
        hit = np.asarray(mask, dtype=bool) & self.alive
        if not hit.any():
            return
        for (name, frame), start, stop in zip(
            self.parts, self.offsets[:-1], self.offsets[1:], strict=True
        ):
            sub = hit[start:stop]
            if not sub.any():
                continue
            why = reason if isinstance(reason, str) else np.asarray(reason)[start:stop][sub]
            block = frame.iloc[np.flatnonzero(sub)]
            if ROW_COLUMN not in block.columns:
                block = block.assign(**{ROW_COLUMN: self.rows[start:stop][sub]})
            self.ledger.add(name, block, why, key_column=self.key)
        self.alive &= ~hit

    def repair(self, mask: np.ndarray, reason: str | np.ndarray) -> None:
        """Record that the geometries of ``mask`` were changed (the rows stay used)."""
        hit = np.asarray(mask, dtype=bool) & self.alive
        if not hit.any():
            return
        why = reason if isinstance(reason, str) else np.asarray(reason, dtype=object)[hit]
        self.repair_blocks.append(pd.DataFrame({
            "source": self.sources[hit],
            "row": self.rows[hit],
            "key": self.keys[hit],
            "reason": np.broadcast_to(np.asarray(why, dtype=object), (int(hit.sum()),)).copy(),
        }))

    def repairs(self) -> pd.DataFrame:
        if not self.repair_blocks:
            return _empty(REPAIR_COLUMNS)
        return pd.concat(self.repair_blocks, ignore_index=True).loc[:, list(REPAIR_COLUMNS)]

    def counts(self) -> dict[str, dict[str, int]]:
        rejected = self.ledger.counts()
        out: dict[str, dict[str, int]] = {}
        for (name, frame), start, stop in zip(
            self.parts, self.offsets[:-1], self.offsets[1:], strict=True
        ):
            used = int(self.alive[start:stop].sum())
            out[name] = {"rows_in": len(frame), "rows_used": used,
                         "rows_rejected": rejected.get(name, 0)}
        return out

    def first_row_text(self, index: np.ndarray) -> pd.Series:
        """``row N`` (or ``<source> row N`` across several sources) of rows ``index``."""
        rows = pd.Series(self.rows[index]).astype(str)
        if len(self.parts) > 1:
            return pd.Series(self.sources[index], dtype=object) + " row " + rows
        return "row " + rows


def _empty(columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series([], dtype="int64" if c == "row" else object) for c in columns}
    )


# ---------------------------------------------------------------------------------------------
# Column helpers
# ---------------------------------------------------------------------------------------------


def _text(values: pd.Series | None, n: int) -> pd.Series:
    """Text with blank → <NA>, integral floats without ``.0`` (ids read as numbers)."""
    if values is None:
        return pd.Series(pd.NA, index=range(n), dtype=_STRING)
    series = values.reset_index(drop=True)
    if pd.api.types.is_float_dtype(series.dtype):
        finite = series.dropna()
        if len(finite) and bool((finite == np.floor(finite)).all()):
            series = series.astype("Int64")
    out = series.astype(_STRING).str.strip()
    return out.mask(out == "")


def _number(values: pd.Series | None, n: int) -> pd.Series:
    if values is None:
        return pd.Series(np.nan, index=range(n), dtype=np.float64)
    return pd.to_numeric(values.reset_index(drop=True), errors="coerce").astype(np.float64)


def _geometry_of(frame: pd.DataFrame) -> np.ndarray:
    """The frame's geometry as a shapely array (all missing when it has none)."""
    if isinstance(frame, gpd.GeoDataFrame) and frame.active_geometry_name is not None:
        return np.asarray(frame.geometry.array, dtype=object)
    if "geometry" in frame.columns:
        return np.asarray(frame["geometry"].to_numpy(), dtype=object)
    return np.full(len(frame), None, dtype=object)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        msg = (
            f"{what} lack required column(s) {', '.join(missing)}; map them with --map "
            f"(have: {', '.join(str(c) for c in frame.columns if c != ROW_COLUMN)})"
        )
        raise SchemaError(msg)


def _fmt(values: np.ndarray) -> pd.Series:
    """Numbers as short text for reasons (``12.5``, ``-3``, ``nan``)."""
    return pd.Series([f"{v:g}" for v in np.asarray(values, dtype=np.float64)], dtype=object)


# ---------------------------------------------------------------------------------------------
# CRS
# ---------------------------------------------------------------------------------------------


def _layer_crs(frame: pd.DataFrame | None, geoms: np.ndarray, what: str) -> pyproj.CRS | None:
    """The layer's CRS; CRSError for geometry without one; None for a layer without geometry."""
    if frame is None:
        return None
    has_geometry = bool((~shapely.is_missing(geoms)).any())
    crs = frame.crs if isinstance(frame, gpd.GeoDataFrame) else None
    if has_geometry and crs is None:
        msg = (f"{what} has no coordinate reference system; set the CRS its coordinates are "
               "in (GeoDataFrame.set_crs, or crs= of read_table); the crs argument here is "
               "the metric CRS to measure in, not the input's")
        raise CRSError(msg)
    return crs


def _choose_crs(layers: list[tuple[np.ndarray, pyproj.CRS | None]], crs: object) -> pyproj.CRS:
    if crs is not None:
        try:
            target = pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as err:
            msg = f"crs={crs!r} is not a coordinate reference system: {err}"
            raise CRSError(msg) from err
        units = {axis.unit_name for axis in target.axis_info}
        if not target.is_projected or units != {"metre"}:
            msg = (f"{target.name} is not a metric projected CRS; choose one in metres or "
                   "omit crs")
            raise CRSError(msg)
        return target
    boxes = []
    for geoms, layer_crs in layers:
        if layer_crs is None:
            continue
        present = geoms[~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)]
        if not len(present):
            continue
        bounds = shapely.total_bounds(present)
        if layer_crs.equals(_WGS84, ignore_axis_order=True):
            boxes.append(bounds)
        else:
            transformer = pyproj.Transformer.from_crs(layer_crs, _WGS84, always_xy=True)
            boxes.append(np.asarray(transformer.transform_bounds(*bounds), dtype=np.float64))
    if not boxes:
        msg = "no layer has any geometry; cannot choose a metric CRS (pass crs=...)"
        raise CRSError(msg)
    stack = np.vstack(boxes)
    extent = (float(stack[:, 0].min()), float(stack[:, 1].min()),
              float(stack[:, 2].max()), float(stack[:, 3].max()))
    return metric_crs_for(extent)


def _reproject(geoms: np.ndarray, source: pyproj.CRS | None, target: pyproj.CRS) -> np.ndarray:
    if source is None or source.equals(target):
        return shapely.force_2d(geoms)
    series = gpd.GeoSeries(geoms, crs=source).to_crs(target)
    return shapely.force_2d(np.asarray(series.array, dtype=object))


# ---------------------------------------------------------------------------------------------
# Geometry hygiene
# ---------------------------------------------------------------------------------------------


def _polygonal_parts(geoms: np.ndarray) -> np.ndarray:
    """Keep only the non-empty polygons of each geometry (Polygon, MultiPolygon or empty)."""
    out = np.asarray(geoms, dtype=object).copy()
    parts, owner = shapely.get_parts(out, return_index=True)
    parts, sub = shapely.get_parts(parts, return_index=True)  # collections inside collections
    owner = owner[sub]
    keep = (shapely.get_type_id(parts) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(parts)
    rebuilt = np.full(len(out), None, dtype=object)
    if keep.any():
        groups, dense = np.unique(owner[keep], return_inverse=True)
        rebuilt[groups] = shapely.multipolygons(parts[keep], indices=dense)
    nothing = shapely.is_missing(rebuilt)
    rebuilt[nothing] = shapely.from_wkt("POLYGON EMPTY")
    single = ~nothing & (shapely.get_num_geometries(rebuilt) == 1)
    rebuilt[single] = shapely.get_geometry(rebuilt[single], 0)
    return rebuilt


def _snap(geoms: np.ndarray, grid: float) -> np.ndarray:
    """Coordinates rounded to the grid; what rounding leaves invalid goes through
    ``shapely.set_precision`` (valid output).

    Rounding is the same snap ``set_precision`` applies, about 15 times faster on the
    benchmark city; only geometries it breaks need GEOS's precision reducer (whose output
    may be a collection: its polygonal part is kept). Rounding alone keeps each geometry's
    type and parts. The result
    carries floating precision, not GEOS's stored fixed grid: with the grid stored, every
    later overlay runs snap-rounding, measured 4 times slower and not sped up by threads.
    """
    coords = shapely.get_coordinates(geoms)
    out = shapely.set_coordinates(geoms.copy(), np.round(coords / grid) * grid)
    broken = ~_is_valid(out)
    if broken.any():
        out[broken] = _polygonal_parts(shapely.set_precision(
            shapely.set_precision(geoms[broken], grid), 0.0
        ))
    return out


def _is_valid(geoms: np.ndarray) -> np.ndarray:
    """``shapely.is_valid`` on two threads (GEOS releases the GIL; large layers only)."""
    if len(geoms) < 20_000:
        return shapely.is_valid(geoms)
    half = len(geoms) // 2
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(shapely.is_valid, (geoms[:half], geoms[half:])))
    return np.concatenate(parts)


def _clean_geometries(
    table: _Table,
    geoms: np.ndarray,
    *,
    precision_m: float,
    sliver_m2: float,
    optional: np.ndarray | None,
) -> np.ndarray:
    """Validate, repair, snap to the grid and remove slivers of the live geometries.

    ``optional`` marks rows whose geometry may be missing (declarations with a parcel id);
    their empty geometry becomes None with a repairs entry.
    """
    geoms = np.asarray(geoms, dtype=object).copy()
    may_lack = np.zeros(len(geoms), dtype=bool) if optional is None else optional
    missing = shapely.is_missing(geoms)
    empty = ~missing & shapely.is_empty(geoms)
    table.reject(missing & ~may_lack, "missing geometry")
    table.reject(empty & ~may_lack, "empty geometry")
    table.repair(empty & may_lack, "empty geometry dropped; the declaration is kept by its "
                                   "parcel_id")
    geoms[empty] = None
    present = table.alive & ~shapely.is_missing(geoms)

    # Geometry types: polygons only; the polygonal part of a collection.
    type_id = shapely.get_type_id(geoms)
    collection = present & (type_id == shapely.GeometryType.GEOMETRYCOLLECTION)
    other = present & ~np.isin(type_id, _POLYGONAL) & ~collection
    reasons = np.full(len(geoms), "", dtype=object)
    reasons[other] = ("geometry is a " + pd.Series(_TYPE_NAMES[type_id[other]], dtype=object)
                      + ", not a polygon").to_numpy(dtype=object)
    table.reject(other, reasons)
    if collection.any():
        geoms[collection] = _polygonal_parts(geoms[collection])
        nothing = collection & shapely.is_empty(geoms)
        table.reject(nothing, "geometry collection without any polygon")
        table.repair(collection & ~nothing,
                     "kept the polygonal part of a GeometryCollection (other parts dropped)")

    # Validity: make_valid, keep the polygonal part, record what was wrong.
    live = np.flatnonzero(table.alive & ~shapely.is_missing(geoms))
    invalid = live[~_is_valid(geoms[live])]
    if len(invalid):
        before = geoms[invalid]
        why = pd.Series(shapely.is_valid_reason(before), dtype=object)
        made = shapely.make_valid(before)
        fixed = _polygonal_parts(made)
        lost = shapely.is_empty(fixed)
        mask = np.zeros(len(geoms), dtype=bool)
        mask[invalid[lost]] = True
        reasons = np.full(len(geoms), "", dtype=object)
        reasons[invalid] = ("invalid geometry (" + why
                            + ") has no polygonal part after make_valid").to_numpy(dtype=object)
        table.reject(mask, reasons)
        made_type = pd.Series(_TYPE_NAMES[shapely.get_type_id(made)], dtype=object)
        note = np.where(
            shapely.get_type_id(made) == shapely.GeometryType.GEOMETRYCOLLECTION,
            " (kept its " + pd.Series(shapely.get_num_geometries(fixed)).astype(str)
            + " polygon(s))",
            "",
        )
        text = (
            "repaired: " + why + "; make_valid gave " + made_type + note
            + ", " + _fmt(shapely.area(before)) + " m² -> " + _fmt(shapely.area(fixed)) + " m²"
        )
        reasons = np.full(len(geoms), "", dtype=object)
        reasons[invalid] = text.to_numpy(dtype=object)
        mask = np.zeros(len(geoms), dtype=bool)
        mask[invalid[~lost]] = True
        geoms[invalid[~lost]] = fixed[~lost]
        table.repair(mask, reasons)

    # Fixed precision grid (valid output); only a collapse or a split is worth a record.
    live = np.flatnonzero(table.alive & ~shapely.is_missing(geoms))
    if precision_m and precision_m > 0 and len(live):
        before_parts = shapely.get_num_geometries(geoms[live])
        snapped = _snap(geoms[live], precision_m)
        gone = shapely.is_empty(snapped)
        mask = np.zeros(len(geoms), dtype=bool)
        mask[live[gone]] = True
        table.reject(mask, f"geometry collapses to nothing on the {precision_m:g} m precision "
                           "grid")
        after_parts = shapely.get_num_geometries(snapped)
        split = ~gone & (after_parts != before_parts)
        mask = np.zeros(len(geoms), dtype=bool)
        mask[live[split]] = True
        reasons = np.full(len(geoms), "", dtype=object)
        reasons[live[split]] = (
            f"the {precision_m:g} m precision grid changed the number of polygon parts from "
            + pd.Series(before_parts[split]).astype(str) + " to "
            + pd.Series(after_parts[split]).astype(str)
        ).to_numpy(dtype=object)
        table.repair(mask, reasons)
        geoms[live[~gone]] = snapped[~gone]

    # A MultiPolygon of one part is that Polygon (the engines' fast paths want Polygons).
    live = np.flatnonzero(table.alive & ~shapely.is_missing(geoms))
    one = live[(shapely.get_type_id(geoms[live]) == shapely.GeometryType.MULTIPOLYGON)
               & (shapely.get_num_geometries(geoms[live]) == 1)]
    geoms[one] = shapely.get_geometry(geoms[one], 0)

    # Slivers: whole geometries below the threshold are rejected, small parts removed.
    live = np.flatnonzero(table.alive & ~shapely.is_missing(geoms))
    if sliver_m2 > 0 and len(live):
        total = shapely.area(geoms[live])
        small = total < sliver_m2
        mask = np.zeros(len(geoms), dtype=bool)
        mask[live[small]] = True
        reasons = np.full(len(geoms), "", dtype=object)
        reasons[live[small]] = (
            "area " + _fmt(total[small]) + f" m² is below the sliver threshold ({sliver_m2:g} m²)"
        ).to_numpy(dtype=object)
        table.reject(mask, reasons)
        live = live[~small]
        parts, owner = shapely.get_parts(geoms[live], return_index=True)
        part_area = shapely.area(parts)
        tiny = part_area < sliver_m2
        if tiny.any():
            n_tiny = np.bincount(owner[tiny], minlength=len(live))
            a_tiny = np.bincount(owner[tiny], weights=part_area[tiny], minlength=len(live))
            touched = np.flatnonzero(n_tiny > 0)
            keep = ~tiny & np.isin(owner, touched)
            rebuilt = np.full(len(live), None, dtype=object)
            groups, dense = np.unique(owner[keep], return_inverse=True)
            rebuilt[groups] = shapely.multipolygons(parts[keep], indices=dense)
            single = ~shapely.is_missing(rebuilt) & (shapely.get_num_geometries(rebuilt) == 1)
            rebuilt[single] = shapely.get_geometry(rebuilt[single], 0)
            all_gone = np.zeros(len(live), dtype=bool)
            all_gone[touched] = shapely.is_missing(rebuilt[touched])
            mask = np.zeros(len(geoms), dtype=bool)
            mask[live[all_gone]] = True
            table.reject(mask, f"every part is a sliver below {sliver_m2:g} m²")
            fixed = np.setdiff1d(touched, np.flatnonzero(all_gone))
            reasons = np.full(len(geoms), "", dtype=object)
            reasons[live[fixed]] = (
                "removed " + pd.Series(n_tiny[fixed]).astype(str)
                + f" sliver part(s) below {sliver_m2:g} m² (" + _fmt(a_tiny[fixed]) + " m² in all)"
            ).to_numpy(dtype=object)
            mask = np.zeros(len(geoms), dtype=bool)
            mask[live[fixed]] = True
            table.repair(mask, reasons)
            geoms[live[fixed]] = rebuilt[fixed]
    geoms[~table.alive] = None
    return geoms


def _geometry_keys(geoms: np.ndarray) -> np.ndarray:
    """Hashable keys equal for geometries with the same normalised coordinates."""
    keys = np.full(len(geoms), None, dtype=object)
    present = ~shapely.is_missing(geoms)
    keys[present] = shapely.to_wkb(shapely.normalize(geoms[present]))
    return keys


def _reject_duplicates(
    table: _Table, keys: pd.Series | pd.DataFrame, *, label: pd.Series, reason: str
) -> None:
    """Reject later live rows repeating a key (a value, or a row of values without missing
    ones); ``reason`` is formatted with the kept row's label (``{first}``) and its row
    (``{row}``). The text is built only for the duplicates."""
    present = keys.notna() if isinstance(keys, pd.Series) else keys.notna().all(axis=1)
    live = np.flatnonzero(table.alive & present.to_numpy(dtype=bool))
    if not len(live):
        return
    sub = keys.iloc[live].reset_index(drop=True)
    if isinstance(sub, pd.DataFrame):
        codes = sub.groupby(list(sub.columns), sort=False).ngroup().to_numpy()
    else:
        codes = pd.factorize(sub)[0]
    dup = pd.Series(codes).duplicated(keep="first").to_numpy(dtype=bool)
    if not dup.any():
        return
    firsts = pd.Series(live[~dup], index=codes[~dup])
    first_of = firsts.reindex(codes[dup]).to_numpy(dtype=np.int64)
    first_label = label.iloc[first_of].astype(object).to_numpy(dtype=object)
    first_row = table.first_row_text(first_of).to_numpy(dtype=object)
    text = [reason.format(first=f, row=r) for f, r in zip(first_label, first_row, strict=True)]
    reasons = np.full(len(table), "", dtype=object)
    reasons[live[dup]] = text
    mask = np.zeros(len(table), dtype=bool)
    mask[live[dup]] = True
    table.reject(mask, reasons)


# ---------------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------------


def _unit_check(ratio: np.ndarray, unit: str, what: str) -> None:
    """Refuse a layer whose areas are, as a rule, far from its polygons' areas (the median
    of area in the declared unit, in m², over the polygon's area outside [1/5, 5]): the
    unit is wrong for the whole layer, and every row would otherwise raise an alert. The
    message names the unit that fits."""
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if len(ratio) < 3:
        return
    median = float(np.median(ratio))
    if 1.0 / _LAYER_RATIO <= median <= _LAYER_RATIO:
        return
    factor = AREA_UNITS[unit]
    fits = min(AREA_UNITS, key=lambda u: abs(np.log(median * AREA_UNITS[u] / factor)))
    fitted = median * AREA_UNITS[fits] / factor
    hint = (f"they look like {fits!r} (--area-unit {fits})"
            if fits != unit and 1.0 / _LAYER_RATIO <= fitted <= _LAYER_RATIO
            else "no area unit makes them fit")
    msg = (f"the {what} are a median {median:,.4g} times their polygons' areas with "
           f"area_unit={unit!r}; {hint}. Check the area columns and their unit.")
    raise AreaUnitError(msg)


def prepare(
    declarations: pd.DataFrame,
    parcels: gpd.GeoDataFrame,
    *,
    land_use: gpd.GeoDataFrame | None = None,
    previous: pd.DataFrame | None = None,
    area_unit: str | None,
    crs: object = None,
    precision_m: float = 0.01,
    sliver_m2: float = 1.0,
    unit_slip_ratio: float = 100.0,
    source_names: Mapping[str, str] | None = None,
    ledger: RejectsLedger | None = None,
) -> Prepared:
    """Convert units, reproject to one metric CRS and clean the geometry of every input.

    Parameters
    ----------
    declarations : DataFrame or GeoDataFrame
        ``declaration_id, applicant_id, year, declared_area`` (in ``area_unit``), optional
        ``parcel_id, village, crop, subsidy_amount`` and geometry. A row needs a geometry or
        a ``parcel_id``. A ``_row`` column (1-based row in the original file) names rows in
        the ledger; without it the position + 1 is used.
    parcels : GeoDataFrame
        ``parcel_id, eligible_area`` (in ``area_unit``), geometry, optional ``land_use``.
    land_use : GeoDataFrame, optional
        ``land_use`` (class) and geometry.
    previous : DataFrame or GeoDataFrame, optional
        Declarations of earlier years (same columns as ``declarations``).
    area_unit : str
        The unit of ``declared_area`` and ``eligible_area`` (``"mu"``, ``"ha"``, ``"m2"``
        and aliases, see :func:`geosup.crs.normalize_area_unit`). Required.
    crs : CRS-like, optional
        The metric CRS to work in; default :func:`geosup.crs.metric_crs_for` of the union
        of the layers' extents.
    precision_m : float, default 0.01
        Grid size of ``shapely.set_precision`` in metres (0 disables the grid).
    sliver_m2 : float, default 1.0
        Polygon parts below this area are removed; geometries below it are rejected.
    unit_slip_ratio : float, default 100
        A drawn declaration whose declared area is this many times its drawing's area or
        more is rejected (a value typed in another unit), not reconciled.
    source_names : mapping, optional
        Names of the inputs in the ledger and in ``counts``, keyed by ``"declarations"``,
        ``"parcels"``, ``"land_use"``, ``"previous"`` (default: those words).
    ledger : RejectsLedger, optional
        A ledger that also receives the rejected rows (e.g. the one ``read_table`` used).

    Returns
    -------
    Prepared
        The cleaned tables, the CRS, the years under review, the rejects, the repairs and
        the counts per source.

    Raises
    ------
    ConfigError
        ``area_unit`` is missing or unknown (raised before any other work).
    AreaUnitError
        The declared or the eligible areas are, as a rule (median), more than 5 times off
        their polygons' areas: the layer's unit is not ``area_unit``.
    SchemaError
        A required column is missing.
    CRSError
        A layer with geometry has no CRS, or ``crs`` is not a metric projected CRS.
    """
    if area_unit is None or (isinstance(area_unit, str) and not area_unit.strip()):
        msg = ("the area unit of declared_area and eligible_area is not declared; give one of "
               "mu, ha, m2 (e.g. --area-unit mu)")
        raise ConfigError(msg)
    unit = normalize_area_unit(area_unit)
    factor = AREA_UNITS[unit]
    names = {"declarations": "declarations", "parcels": "parcels", "land_use": "land_use",
             "previous": "previous"}
    names.update(source_names or {})

    _require(declarations, ("declaration_id", "applicant_id", "year", "declared_area"),
             "the declarations")
    if previous is not None:
        _require(previous, ("declaration_id", "applicant_id", "year", "declared_area"),
                 "the previous declarations")
    _require(parcels, ("parcel_id", "eligible_area"), "the reference parcels")
    if land_use is not None:
        _require(land_use, ("land_use",), "the land-use layer")

    # CRS: refuse geometry without one, then one metric CRS for all.
    decl_parts = [(names["declarations"], declarations)]
    if previous is not None:
        decl_parts.append((names["previous"], previous))
    decl_geoms_in = [_geometry_of(frame) for _, frame in decl_parts]
    parcel_geoms = _geometry_of(parcels)
    lu_geoms = _geometry_of(land_use) if land_use is not None else None
    if not isinstance(parcels, gpd.GeoDataFrame):
        msg = "the reference parcels have no geometry column; parcels need polygons"
        raise SchemaError(msg)
    if land_use is not None and not isinstance(land_use, gpd.GeoDataFrame):
        msg = "the land-use layer has no geometry column"
        raise SchemaError(msg)
    layers: list[tuple[np.ndarray, pyproj.CRS | None]] = []
    for (name, frame), geoms in zip(decl_parts, decl_geoms_in, strict=True):
        layers.append((geoms, _layer_crs(frame, geoms, f"the {name} layer")))
    layers.append((parcel_geoms, _layer_crs(parcels, parcel_geoms, f"the {names['parcels']} "
                                                                    "layer")))
    if land_use is not None:
        layers.append((lu_geoms, _layer_crs(land_use, lu_geoms,
                                            f"the {names['land_use']} layer")))
    target = _choose_crs(layers, crs)
    logger.info("farmland: working CRS %s", target.name)

    # ---- reference parcels -----------------------------------------------------------------
    ptab = _Table([(names["parcels"], parcels)], key="parcel_id")
    n = len(ptab)
    pid = _text(parcels["parcel_id"], n)
    ptab.keys = np.asarray(pid.fillna("").astype(object), dtype=object)
    ptab.reject(pid.isna().to_numpy(dtype=bool), "missing parcel_id")
    eligible = _number(parcels["eligible_area"], n)
    bad = eligible.isna().to_numpy() | ~np.isfinite(eligible.to_numpy())
    ptab.reject(bad, "eligible_area is missing or not a number")
    negative = eligible.to_numpy() < 0
    reasons = ("eligible_area must be >= 0 (got " + _fmt(eligible.to_numpy()) + ")").to_numpy(
        dtype=object)
    ptab.reject(negative, reasons)
    geoms = _reproject(parcel_geoms, layers[len(decl_parts)][1], target)
    geoms = _clean_geometries(ptab, geoms, precision_m=precision_m, sliver_m2=sliver_m2,
                              optional=None)
    _reject_duplicates(ptab, pid, label=pid,
                       reason="duplicate parcel_id '{first}' (first on {row})")
    _reject_duplicates(ptab, pd.Series(_geometry_keys(geoms)), label=pid,
                       reason="same geometry as parcel '{first}' ({row}), which is kept")
    keep = ptab.alive
    with np.errstate(divide="ignore", invalid="ignore"):
        _unit_check(eligible.to_numpy()[keep] * factor / shapely.area(geoms[keep]), unit,
                    "eligible areas of the reference parcels")
    parcel_lu = _text(parcels["land_use"] if "land_use" in parcels.columns else None, n)
    parcels_out = gpd.GeoDataFrame(
        {
            "parcel_id": pid[keep].reset_index(drop=True),
            "eligible_m2": (eligible[keep] * factor).reset_index(drop=True),
            "land_use": parcel_lu[keep].reset_index(drop=True),
        },
        geometry=gpd.GeoSeries(geoms[keep], crs=target),
        crs=target,
    )

    # ---- land use --------------------------------------------------------------------------
    land_use_out = None
    ltab = None
    if land_use is not None:
        ltab = _Table([(names["land_use"], land_use)], key=None)
        m = len(ltab)
        cls = _text(land_use["land_use"], m)
        ltab.reject(cls.isna().to_numpy(dtype=bool), "missing land_use class")
        lgeoms = _reproject(lu_geoms, layers[-1][1], target)
        lgeoms = _clean_geometries(ltab, lgeoms, precision_m=precision_m, sliver_m2=sliver_m2,
                                   optional=None)
        keep = ltab.alive
        land_use_out = gpd.GeoDataFrame(
            {"land_use": cls[keep].reset_index(drop=True)},
            geometry=gpd.GeoSeries(lgeoms[keep], crs=target),
            crs=target,
        )

    # ---- declarations (current and previous, as one table) ---------------------------------
    dtab = _Table(decl_parts, key="declaration_id")
    total = len(dtab)

    def column(name: str, convert: Callable[[pd.Series | None, int], pd.Series]) -> pd.Series:
        pieces = [convert(frame[name] if name in frame.columns else None, len(frame))
                  for _, frame in decl_parts]
        return pd.concat(pieces, ignore_index=True)

    did = column("declaration_id", _text)
    dtab.keys = np.asarray(did.fillna("").astype(object), dtype=object)
    applicant = column("applicant_id", _text)
    year_f = column("year", _number)
    declared = column("declared_area", _number)
    parcel_ref = column("parcel_id", _text)
    is_previous = np.concatenate(
        [np.full(len(frame), i > 0, dtype=bool) for i, (_, frame) in enumerate(decl_parts)]
    )
    dtab.reject(did.isna().to_numpy(dtype=bool), "missing declaration_id")
    dtab.reject(applicant.isna().to_numpy(dtype=bool), "missing applicant_id")
    yv = year_f.to_numpy()
    with np.errstate(invalid="ignore"):
        bad_year = ~np.isfinite(yv) | (yv != np.floor(yv))
    dtab.reject(bad_year, "year is missing or not a whole number")
    dv = declared.to_numpy()
    dtab.reject(~np.isfinite(dv), "declared_area is missing or not a number")
    with np.errstate(invalid="ignore"):
        not_positive = dv <= 0
    dtab.reject(not_positive,
                ("declared_area must be > 0 (got " + _fmt(dv) + ")").to_numpy(dtype=object))

    reprojected = [
        _reproject(g, layer_crs, target)
        for g, (_, layer_crs) in zip(decl_geoms_in, layers[: len(decl_parts)], strict=True)
    ]
    dgeoms = np.concatenate(reprojected) if reprojected else np.empty(0, dtype=object)
    has_ref = parcel_ref.notna().to_numpy(dtype=bool)
    no_geometry = shapely.is_missing(dgeoms) | shapely.is_empty(dgeoms)
    dtab.reject(no_geometry & ~has_ref,
                "declaration has neither a geometry nor a parcel_id")
    dgeoms = _clean_geometries(dtab, dgeoms, precision_m=precision_m, sliver_m2=sliver_m2,
                               optional=has_ref)
    drawn = ~shapely.is_missing(dgeoms)
    known = parcel_ref.isin(set(parcels_out["parcel_id"].astype(object))).to_numpy(dtype=bool)
    unknown = has_ref & ~known & ~drawn
    reasons = np.full(total, "", dtype=object)
    reasons[unknown] = ("declares parcel " + pd.Series(parcel_ref[unknown].astype(object))
                        + ", which is not in the reference parcels").to_numpy(dtype=object)
    dtab.reject(unknown, reasons)

    # Units: the whole layer in the wrong unit is an error; one area far above its own
    # drawing (a value typed in another unit) is a rejected row, not an alert.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(drawn, dv * factor / shapely.area(dgeoms), np.nan)
    _unit_check(ratio[dtab.alive & drawn], unit, "declared areas")
    slip = dtab.alive & drawn & (ratio >= unit_slip_ratio)
    reasons = np.full(total, "", dtype=object)
    reasons[slip] = ("declared_area is " + _fmt(ratio[slip]).to_numpy(dtype=object)
                     + f" times the drawn area (limit {unit_slip_ratio:g}x): a value in "
                     "another unit?")
    dtab.reject(slip, reasons)

    # Previous rows must be older than every year under review.
    current = dtab.alive & ~is_previous
    review = np.unique(yv[current]).astype(np.int64) if current.any() else np.empty(0, np.int64)
    if len(review):
        first_year = int(review.min())
        span = f"{first_year}" + (f"-{int(review.max())}" if len(review) > 1 else "")
        too_new = is_previous & ~bad_year & (np.nan_to_num(yv, nan=0) >= first_year)
        reasons = (
            "previous declaration of year "
            + pd.Series(np.nan_to_num(yv).astype(np.int64)).astype(str)
            + f" is not before the years under review ({span})"
        ).to_numpy(dtype=object)
        dtab.reject(too_new, reasons)

    _reject_duplicates(dtab, did, label=did,
                       reason="duplicate declaration_id '{first}' (first on {row})")
    same_claim = pd.DataFrame({"geometry": _geometry_keys(dgeoms),
                               "applicant": applicant.astype(object).to_numpy(),
                               "year": np.nan_to_num(yv).astype(np.int64)})
    _reject_duplicates(dtab, same_claim, label=did,
                       reason="same geometry, applicant and year as declaration '{first}' "
                              "({row}), which is kept")
    current = dtab.alive & ~is_previous
    years = tuple(int(y) for y in np.unique(yv[current]).astype(np.int64))

    keep = dtab.alive
    declarations_out = gpd.GeoDataFrame(
        {
            "declaration_id": did[keep].reset_index(drop=True),
            "applicant_id": applicant[keep].reset_index(drop=True),
            "year": pd.Series(yv[keep], dtype=np.float64).astype(np.int64),
            "village": column("village", _text)[keep].reset_index(drop=True),
            "parcel_id": parcel_ref[keep].reset_index(drop=True),
            "crop": column("crop", _text)[keep].reset_index(drop=True),
            "subsidy_amount": column("subsidy_amount", _number)[keep].reset_index(drop=True),
            "declared_m2": pd.Series(dv[keep] * factor, dtype=np.float64),
            "is_previous": pd.Series(is_previous[keep], dtype=bool),
        },
        geometry=gpd.GeoSeries(dgeoms[keep], crs=target),
        crs=target,
    )

    # ---- ledger, repairs, counts -----------------------------------------------------------
    tables = [dtab, ptab] + ([ltab] if ltab is not None else [])
    own = RejectsLedger()
    for table in tables:
        own.extend(table.ledger)
    if ledger is not None:
        ledger.extend(own)
    rejects = own.frame().loc[:, list(LEDGER_COLUMNS)]
    repairs = pd.concat([t.repairs() for t in tables], ignore_index=True)
    repairs = repairs if len(repairs) else _empty(REPAIR_COLUMNS)
    counts: dict[str, dict[str, int]] = {}
    for table in tables:
        counts.update(table.counts())
    for name, c in counts.items():
        if c["rows_in"] != c["rows_used"] + c["rows_rejected"]:  # pragma: no cover - defensive
            msg = f"internal error: {name} rows in != used + rejected ({c})"
            raise AssertionError(msg)
        logger.info("%s: %d rows in = %d used + %d rejected", name, c["rows_in"],
                    c["rows_used"], c["rows_rejected"])
    if len(repairs):
        warnings.warn(
            f"{len(repairs)} farmland geometries were repaired; Prepared.repairs lists which "
            "and how",
            GeometryRepairWarning,
            stacklevel=2,
        )
    return Prepared(
        crs=target,
        area_unit=unit,
        declarations=declarations_out,
        parcels=parcels_out,
        land_use=land_use_out,
        years=years,
        rejects=rejects,
        repairs=repairs,
        counts=counts,
        precision_m=float(precision_m),
    )
