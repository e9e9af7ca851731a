"""Write a layer (usually the alert table) to the common GIS formats.

One call, :func:`export_layer`, writes a GeoDataFrame to a GeoPackage, a
FlatGeobuf file, GeoParquet, GeoJSON (RFC 7946), a zipped Shapefile or a PostGIS
table; :func:`read_back` reads any of them back into a GeoDataFrame with the
original column names and UTC times, for round trips and for users.

Rules that hold for every format:

- The frame must carry a CRS (:class:`~geosup.errors.CRSError` otherwise) and a
  stable id column (``alert_id`` by default) that is present, non-null and unique:
  some formats reorder rows (FlatGeobuf's spatial index), so rows are matched by
  id, never by position.
- An existing file is never clobbered unless ``overwrite=True``; a file is
  written to a temporary name beside the target and moved into place only when
  complete, so a failed export leaves the old file untouched.
- Rows without geometry are written with a null geometry. An *empty* geometry is
  written as null as well (no format keeps the difference reliably), and empty
  members of a GeometryCollection are left out (FlatGeobuf drops them).
- A layer may mix geometry types (points, lines, polygons, GeometryCollections,
  rows without geometry), as alert tables do: every format below writes it, all
  but ``shp`` as it is.
- Tz-aware times are written in UTC.

What each format does:

``gpkg``
    GeoPackage through pyogrio; tz-aware times kept (GeoPackage stores
    milliseconds). Mixed geometry types are kept as they are (layer type
    ``GEOMETRY``), never promoted. GeoPackage adds its own ``fid`` (from 1).
``fgb``
    FlatGeobuf through pyogrio with its spatial index, which reorders rows.
    FlatGeobuf's index cannot hold a feature without geometry: when any row has
    none, the file is written without the index (rows keep their order).
``parquet``
    GeoParquet 1.1 through :meth:`geopandas.GeoDataFrame.to_parquet` (pyogrio's
    wheel has no Parquet driver), geometry as WKB in the frame's CRS.
``geojson``
    RFC 7946: reprojected to EPSG:4326 and written with ``RFC7946=YES``
    (7 decimals, counter-clockwise exterior rings). A GeometryCollection is
    written as the collection of its single parts (nested collections and multi
    members flattened, as RFC 7946 asks; GDAL's writer would drop a MultiPoint
    member otherwise). The id stays a property;
    times are ISO-8601 strings (``...Z``), parsed back to UTC by :func:`read_back`.
``shp``
    A zip holding one Shapefile per kind of geometry, because a Shapefile holds
    only one: ``<layer>_point.shp``, ``<layer>_line.shp`` and
    ``<layer>_polygon.shp`` (each with ``.shx/.dbf/.prj/.cpg``, UTF-8), and
    ``<layer>_nogeom.dbf``, an attribute table for the rows without geometry
    (GIS programs open a ``.dbf`` alone as a table); only the kinds present are
    written (see :data:`SHAPEFILE_PARTS`). Every file has the same fields, plus
    ``geom_type`` (:data:`SHAPEFILE_GEOMETRY_FIELD`): the row's original
    geometry type. A row is in exactly one file, except a GeometryCollection: it
    is split by kind, its points, lines and polygons going to the point, line and
    polygon files (one row per file, same attributes and id, ``geom_type`` =
    ``GeometryCollection``; nested collections are flattened). Within a file
    single and multi geometries are promoted as Shapefile does (Point +
    MultiPoint -> MultiPoint, and so on). Field names are cut to 10 bytes by
    :data:`SHAPEFILE_FIELDS` (alert columns) and :func:`shapefile_field_names`
    (every other column; always unique); times become ISO-8601 strings; a
    dBase field holds at most 254 *bytes*, so strings longer than 254 UTF-8
    bytes are cut to at most 254 bytes at a character boundary (never inside a
    character). ``fields.csv`` lists ``name, short_name, dtype,
    truncated_values, role`` and ``README.txt`` says which file holds what, so
    that :func:`read_back` restores names, times, dtypes and geometry types and
    puts the split collections back together (one row per id). Also: dBase
    pads text with spaces, so trailing spaces are lost and empty strings read
    back as missing; floats keep 15 significant digits; a zip holding only rows
    without geometry has no CRS.
``postgis``
    ``postgresql://…#schema.table`` (or ``layer="schema.table"``), written by
    :func:`geosup.store.write_database_table`; this module opens no connection.

Examples
--------
>>> import tempfile
>>> import geopandas as gpd
>>> from shapely.geometry import Point
>>> parcels = gpd.GeoDataFrame(
...     {"parcel_id": ["P1", "P2"], "eligible_area": [1250.0, 980.5]},
...     geometry=[Point(155000, 463000), Point(155100, 463050)], crs=28992)
>>> out = export_layer(parcels, Path(tempfile.mkdtemp()) / "parcels.fgb",
...                    id_column="parcel_id")
>>> back = read_back(out)
>>> back.sort_values("parcel_id")["eligible_area"].tolist(), back.crs.to_epsg()
([1250.0, 980.5], 28992)
"""

from __future__ import annotations

import io
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely

from geosup.alerts import ALERT_COLUMNS, normalize_alert_frame
from geosup.errors import CRSError, DataSourceError, ExportError

__all__ = [
    "FORMATS",
    "SHAPEFILE_FIELDS",
    "SHAPEFILE_GEOMETRY_FIELD",
    "SHAPEFILE_MAX_BYTES",
    "SHAPEFILE_PARTS",
    "export_layer",
    "infer_format",
    "read_back",
    "shapefile_field_names",
]

logger = logging.getLogger(__name__)

#: Output formats, as named on the command line (``geosup export --format``).
FORMATS: tuple[str, ...] = ("gpkg", "fgb", "parquet", "geojson", "shp", "postgis")

#: Short Shapefile field names (at most 10 bytes) of the alert columns. Names of
#: 10 bytes or less are kept as they are; every other column is shortened by
#: :func:`shapefile_field_names`.
SHAPEFILE_FIELDS: dict[str, str] = {
    "alert_id": "alert_id",
    "rule": "rule",
    "domain": "domain",
    "severity": "severity",
    "score": "score",
    "subject_type": "subj_type",
    "subject_id": "subj_id",
    "unit": "unit",
    "observed_at": "obs_at",
    "period": "period",
    "amount_at_risk": "amount",
    "title": "title",
    "detail": "detail",
    "evidence": "evidence",
    "status": "status",
    "status_by": "status_by",
    "status_at": "status_at",
    "status_note": "stat_note",
    "first_seen": "first_seen",
    "last_seen": "last_seen",
    "run_id": "run_id",
}

#: Longest string a Shapefile (dBASE) field holds, in bytes (not characters):
#: longer UTF-8 text is cut to at most this many bytes at a character boundary.
SHAPEFILE_MAX_BYTES = 254

#: The files of a zipped Shapefile export, ``<layer>_<part>.shp`` (``.dbf`` alone
#: for ``nogeom``), in this order; only the parts that have rows are written.
SHAPEFILE_PARTS: dict[str, str] = {
    "point": "points: Point, MultiPoint, points of collections",
    "line": "lines: LineString, MultiLineString, lines of collections",
    "polygon": "polygons: Polygon, MultiPolygon, polygons of collections",
    "nogeom": "rows without geometry (a table, no .shp)",
}

#: The field every Shapefile part carries with the row's original geometry type
#: (``Point``, ``MultiPolygon``, ``GeometryCollection`` …; empty when none).
SHAPEFILE_GEOMETRY_FIELD = "geom_type"

_FIELD_BYTES = 10
_SUFFIX_FORMATS: dict[str, str] = {
    ".gpkg": "gpkg",
    ".fgb": "fgb",
    ".parquet": "parquet",
    ".geoparquet": "parquet",
    ".geojson": "geojson",
    ".json": "geojson",
    ".zip": "shp",
}
_DRIVERS = {"gpkg": "GPKG", "fgb": "FlatGeobuf", "geojson": "GeoJSON"}
_DB_URL = re.compile(r"^postgres(ql)?://", re.IGNORECASE)
_ISO_TIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
_ISO_ZONE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
# shapely type ids of the single and multi geometries of each Shapefile part
_KIND_TYPES: dict[str, tuple[int, int]] = {"point": (0, 4), "line": (1, 5), "polygon": (3, 6)}
_LINEARRING, _COLLECTION = 2, 7
_MULTI = {"point": shapely.multipoints, "line": shapely.multilinestrings,
          "polygon": shapely.multipolygons}
_SHAPE_TYPES = {"point": ("Point", "MultiPoint"), "line": ("PolyLine", "PolyLine"),
                "polygon": ("Polygon", "Polygon")}
_TYPE_IDS = {"Point": 0, "LineString": 1, "LinearRing": 2, "Polygon": 3, "MultiPoint": 4,
             "MultiLineString": 5, "MultiPolygon": 6, "GeometryCollection": 7}
_FIELDS_CSV = "fields.csv"
_FIELDS_COLUMNS = ["name", "short_name", "dtype", "truncated_values", "role"]
_ROLE_ID = "id"
_ROLE_GEOMETRY = "geometry type"
_README = """\
Zipped Shapefile written by geosup (geosup.export).

A Shapefile holds one kind of geometry, so the layer is split into one file per
kind (each .shp with its .shx, .dbf, .prj and .cpg; text is UTF-8):

{files}

Every file has the same fields. A row is in exactly one file, except a row whose
geometry is a GeometryCollection: its points, lines and polygons went to the
point, line and polygon files, one row in each with the same attributes and the
same {id_column}. The field {geom_field} holds each row's original geometry type
(Point, MultiPolygon, GeometryCollection ...): select
{geom_field} = 'GeometryCollection' to find the split rows. Rows without
geometry are in the .dbf-only table (open it as a table). In a file that mixes
single and multi geometries, the single ones were written as multi geometries
(Point -> MultiPoint, Polygon -> MultiPolygon, LineString -> MultiLineString).

A Shapefile cannot hold everything the table holds, so also:
- field names are cut to 10 bytes: fields.csv maps each original column name
  (name) to its Shapefile field (short_name), records its original dtype and
  its role (id: the stable id column; geometry type: the {geom_field} field);
- times are ISO-8601 text (UTC, ending in Z when the source time had a zone);
- a dBase field holds at most 254 bytes (not characters): longer text was cut
  to at most 254 bytes of UTF-8 at a character boundary; fields.csv counts the
  cut values per column (truncated_values). Every other format (GeoPackage,
  FlatGeobuf, GeoParquet, GeoJSON, PostGIS) keeps the full text and the
  geometries as they are;
- dBase pads text with spaces: trailing spaces are lost and empty strings read
  back as missing values; numbers keep 15 significant digits.
geosup.export.read_back() restores the original names, times, dtypes and
geometry types, and puts split GeometryCollections back together.
"""


def infer_format(out: str | os.PathLike[str], format: str | None = None) -> str:
    """Return the output format for ``out``: ``format`` if given, else from the name.

    Parameters
    ----------
    out : str or path-like
        A file name or a ``postgresql://`` URL.
    format : str, optional
        One of :data:`FORMATS` (case-insensitive); wins over the file name.

    Returns
    -------
    str
        One of :data:`FORMATS`.

    Raises
    ------
    ExportError
        ``format`` is unknown, or it is not given and the name says nothing.

    Examples
    --------
    >>> infer_format("alerts.shp.zip"), infer_format("a.geoparquet")
    ('shp', 'parquet')
    >>> infer_format("postgresql://db.example/audit#public.alerts")
    'postgis'
    """
    if format is not None:
        name = str(format).lower()
        if name not in FORMATS:
            msg = f"unknown export format {format!r}; use one of: {', '.join(FORMATS)}"
            raise ExportError(msg)
        return name
    text = str(out)
    if _DB_URL.match(text):
        return "postgis"
    suffix = Path(text).suffix.lower()
    if suffix in _SUFFIX_FORMATS:
        return _SUFFIX_FORMATS[suffix]
    known = ", ".join(sorted(_SUFFIX_FORMATS))
    msg = (f"cannot tell the export format from {text!r}; name the file with one of "
           f"{known} (.zip or .shp.zip is a zipped Shapefile), give a postgresql:// URL, "
           f"or pass format= (one of: {', '.join(FORMATS)})")
    raise ExportError(msg)


def _cut_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes at a character boundary."""
    return text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")


def shapefile_field_names(columns: Iterable[str]) -> dict[str, str]:
    """Map column names to unique Shapefile field names of at most 10 bytes.

    The mapping is deterministic and documented:

    1. an alert column takes its name from :data:`SHAPEFILE_FIELDS` (these are
       reserved first, so alert fields never move); ``geom_type``
       (:data:`SHAPEFILE_GEOMETRY_FIELD`) is reserved for the geometry type field
       that every part of a zipped Shapefile carries;
    2. any other name of at most 10 UTF-8 bytes is kept;
    3. a longer name is cut to 10 bytes at a character boundary;
    4. a name already taken (dBASE names ignore case) is cut further and given the
       first free suffix ``_1``, ``_2`` …, in column order.

    Parameters
    ----------
    columns : iterable of str
        Column names (the geometry column excluded).

    Returns
    -------
    dict
        Original name -> field name, in column order.

    Examples
    --------
    >>> names = shapefile_field_names(["subject_type", "eligible_area_m2", "eligible_area_ha"])
    >>> list(names.values())
    ['subj_type', 'eligible_a', 'eligible_1']
    >>> shapefile_field_names(["geom_type"])
    {'geom_type': 'geom_typ_1'}
    """
    names = [str(c) for c in columns]
    if len(set(names)) != len(names):
        msg = "the layer has duplicate column names; rename them before exporting"
        raise ExportError(msg)
    short: dict[str, str] = {}
    taken: set[str] = {SHAPEFILE_GEOMETRY_FIELD.casefold()}
    for name in names:
        if name in SHAPEFILE_FIELDS and SHAPEFILE_FIELDS[name].casefold() not in taken:
            short[name] = SHAPEFILE_FIELDS[name]
            taken.add(short[name].casefold())
    for name in names:
        if name in short:
            continue
        candidate = _cut_bytes(name, _FIELD_BYTES) or "field"
        k = 0
        while candidate.casefold() in taken:
            k += 1
            suffix = f"_{k}"
            candidate = _cut_bytes(name, _FIELD_BYTES - len(suffix)) + suffix
        short[name] = candidate
        taken.add(candidate.casefold())
    return {name: short[name] for name in names}


# --------------------------------------------------------------------------- checks


def _prepare(frame: gpd.GeoDataFrame, id_column: str) -> gpd.GeoDataFrame:
    """Validate ``frame`` and return a copy ready to write (see module notes)."""
    if not isinstance(frame, gpd.GeoDataFrame):
        msg = (f"export needs a GeoDataFrame, not {type(frame).__name__}; build one with "
               "geopandas.GeoDataFrame(..., geometry=..., crs=...)")
        raise ExportError(msg)
    try:
        geometry_name = frame.geometry.name
    except AttributeError as err:
        msg = "the layer has no active geometry column; call set_geometry() first"
        raise ExportError(msg) from err
    if frame.crs is None:
        msg = ("the layer has no coordinate reference system; set the CRS the "
               "coordinates are in (frame.set_crs(...)) before exporting")
        raise CRSError(msg)
    if id_column not in frame.columns:
        msg = (f"the layer has no id column {id_column!r}; every export carries a stable "
               "id (row order is not kept by every format): pass id_column= or add one")
        raise ExportError(msg)
    ids = frame[id_column]
    if ids.isna().any():
        msg = f"id column {id_column!r} has {int(ids.isna().sum())} missing value(s)"
        raise ExportError(msg)
    dup = ids.duplicated(keep=False)
    if dup.any():
        sample = ", ".join(map(repr, pd.unique(ids[dup])[:3]))
        msg = (f"id column {id_column!r} is not unique ({int(dup.sum())} rows share an id, "
               f"e.g. {sample}); export needs one row per id")
        raise ExportError(msg)
    out = frame.reset_index(drop=True)
    if geometry_name != "geometry":
        out = out.rename_geometry("geometry")
    values = _drop_empty_parts(out.geometry.to_numpy())
    values[shapely.is_empty(values)] = None
    out["geometry"] = gpd.GeoSeries(values, crs=frame.crs, index=out.index)
    for name in out.columns:
        col = out[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            out[name] = col.dt.tz_convert("UTC")
    return out


def _drop_empty_parts(geoms: np.ndarray) -> np.ndarray:
    """``geoms`` with the empty members of GeometryCollections (at any depth) left out.

    Not every format keeps an empty member (FlatGeobuf drops it), so none gets one.
    """
    out = np.asarray(geoms, dtype=object).copy()
    rows = np.flatnonzero(shapely.get_type_id(out) == _COLLECTION)
    if not len(rows):
        return out
    parts, index = shapely.get_parts(out[rows], return_index=True)
    parts = _drop_empty_parts(parts)  # one call per nesting level
    keep = ~shapely.is_empty(parts)
    joined = np.full(len(rows), None, dtype=object)
    shapely.geometrycollections(parts[keep], indices=index[keep], out=joined)
    joined[shapely.is_missing(joined)] = shapely.GeometryCollection()
    out[rows] = joined
    return out


def _iso_strings(col: pd.Series) -> pd.Series:
    """Datetimes as ISO-8601 text: UTC with ``Z`` if tz-aware, microseconds if any."""
    aware = isinstance(col.dtype, pd.DatetimeTZDtype)
    if aware:
        col = col.dt.tz_convert("UTC")
    fraction = bool((col.dt.microsecond.fillna(0) != 0).any())
    fmt = "%Y-%m-%dT%H:%M:%S" + (".%f" if fraction else "") + ("Z" if aware else "")
    text = col.dt.strftime(fmt).astype("string")
    return text.mask(col.isna())


def _times_as_text(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    out = frame.copy()
    for name in out.columns:
        if name != "geometry" and pd.api.types.is_datetime64_any_dtype(out[name].dtype):
            out[name] = _iso_strings(out[name])
    return out


def _geometry_types(frame: gpd.GeoDataFrame) -> set[str]:
    types = frame.geometry.geom_type
    return set(types[types.notna()].unique())


# --------------------------------------------------------------------------- writers


def _write_ogr(frame: gpd.GeoDataFrame, path: Path, fmt: str, layer: str) -> None:
    kwargs: dict[str, object] = {"promote_to_multi": False}
    types = _geometry_types(frame)
    if len(types) > 1:
        kwargs["geometry_type"] = "Unknown"
    if fmt == "fgb":
        nulls = bool(frame.geometry.isna().any())
        if nulls:
            logger.info("FlatGeobuf %s: rows without geometry, written without the "
                        "spatial index", path)
        kwargs["layer_options"] = {"SPATIAL_INDEX": "NO" if nulls else "YES"}
    elif fmt == "geojson":
        if frame.crs.to_epsg() != 4326:
            frame = frame.to_crs(4326)
        frame = _times_as_text(frame)
        frame["geometry"] = gpd.GeoSeries(_flat_collections(frame.geometry.to_numpy()),
                                          crs=frame.crs, index=frame.index)
        # AUTODETECT_JSON_STRINGS=NO: evidence stays the exact JSON text, not an object
        kwargs["layer_options"] = {"RFC7946": "YES", "AUTODETECT_JSON_STRINGS": "NO"}
    frame.to_file(path, driver=_DRIVERS[fmt], engine="pyogrio", layer=layer, index=False,
                  **kwargs)


def _truncate(col: pd.Series) -> tuple[pd.Series, int]:
    """Cut strings to :data:`SHAPEFILE_MAX_BYTES` UTF-8 bytes; return them and the count."""
    text = col.astype("string")
    encoded = text.str.encode("utf-8")
    long = (encoded.str.len() > SHAPEFILE_MAX_BYTES).fillna(False).astype(bool)
    count = int(long.sum())
    if count:
        cut = encoded[long].str[:SHAPEFILE_MAX_BYTES].str.decode("utf-8", errors="ignore")
        text = text.copy()
        text[long] = cut.astype("string")
    return text, count


def _is_text(col: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(col.dtype) and not pd.api.types.is_object_dtype(col.dtype):
        return True
    if pd.api.types.is_object_dtype(col.dtype):
        return pd.api.types.infer_dtype(col, skipna=True) in ("string", "empty")
    return False


def _as_lines(values: np.ndarray) -> np.ndarray:
    """LinearRings as LineStrings (a Shapefile has no rings); other geometries as they are."""
    rings = shapely.get_type_id(values) == _LINEARRING
    if not rings.any():
        return values
    out = values.copy()
    ring = values[rings]
    z = bool(shapely.has_z(ring).any())
    coords = shapely.get_coordinates(ring, include_z=z)
    owner = np.repeat(np.arange(len(ring)), shapely.get_num_coordinates(ring))
    out[rings] = shapely.linestrings(coords, indices=owner)
    return out


def _collection_parts(geoms: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-empty single parts of collections ``geoms`` and the row each belongs to.

    Nested collections and multi geometries inside a collection are flattened.
    """
    parts, index = shapely.get_parts(geoms, return_index=True)
    owner = rows[index]
    while True:  # one pass per nesting level, vectorised over all rows
        nested = shapely.get_type_id(parts) >= 4
        if not nested.any():
            break
        sub, k = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], sub])
        owner = np.concatenate([owner[~nested], owner[nested][k]])
    keep = ~shapely.is_empty(parts)
    parts, owner = parts[keep], owner[keep]
    order = np.argsort(owner, kind="stable")
    return _as_lines(parts[order]), owner[order]


def _flat_collections(geoms: np.ndarray) -> np.ndarray:
    """GeometryCollections as collections of their single parts, everything else as it is.

    For GeoJSON: RFC 7946 (3.1.8) asks to avoid nested collections, and GDAL's
    RFC 7946 writer (3.12) silently drops a MultiPoint member of a collection that
    has other members; with single members only, nothing is lost.
    """
    out = np.asarray(geoms, dtype=object).copy()
    rows = np.flatnonzero(shapely.get_type_id(out) == _COLLECTION)
    if len(rows):
        parts, owner = _collection_parts(out[rows], np.arange(len(rows)))
        joined = np.full(len(rows), None, dtype=object)
        shapely.geometrycollections(parts, indices=owner, out=joined)
        out[rows] = joined
    return out


def _split_by_kind(geoms: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Row positions and geometries of each Shapefile part (see :data:`SHAPEFILE_PARTS`).

    A GeometryCollection gives a row to every part it has geometries of: its parts
    of one kind as one geometry (single if one part, else multi).
    """
    types = shapely.get_type_id(geoms)
    collections = np.flatnonzero(types == _COLLECTION)
    parts, owner = _collection_parts(geoms[collections], collections)
    part_types = shapely.get_type_id(parts)
    split: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for kind, (single, multi) in _KIND_TYPES.items():
        ids = (single, multi, _LINEARRING) if kind == "line" else (single, multi)
        rows = np.flatnonzero(np.isin(types, ids))
        values = _as_lines(geoms[rows])
        mine = np.isin(part_types, (single,))
        if mine.any():
            owners, inverse, counts = np.unique(owner[mine], return_inverse=True,
                                                return_counts=True)
            joined = _MULTI[kind](parts[mine], indices=inverse)
            one = counts == 1
            joined[one] = shapely.get_geometry(joined[one], 0)
            rows = np.concatenate([rows, owners])
            values = np.concatenate([values, joined])
            order = np.argsort(rows, kind="stable")
            rows, values = rows[order], values[order]
        if len(rows):
            split[kind] = (rows, values)
    missing = np.flatnonzero(types < 0)
    if len(missing) or not split:  # an empty layer is written as an empty table
        split["nogeom"] = (missing, np.full(len(missing), None, dtype=object))
    return {kind: split[kind] for kind in SHAPEFILE_PARTS if kind in split}


def _write_shapefile(frame: gpd.GeoDataFrame, path: Path, layer: str,
                     id_column: str) -> None:
    columns = [c for c in frame.columns if c != "geometry"]
    names = shapefile_field_names(columns)
    table = pd.DataFrame(frame[columns])
    rows = []
    for name in columns:
        dtype = str(table[name].dtype)
        truncated = 0
        if pd.api.types.is_datetime64_any_dtype(table[name].dtype):
            table[name] = _iso_strings(table[name])
        elif _is_text(table[name]):
            table[name], truncated = _truncate(table[name])
        rows.append({"name": name, "short_name": names[name], "dtype": dtype,
                     "truncated_values": truncated,
                     "role": _ROLE_ID if name == id_column else ""})
        if truncated:
            logger.info("Shapefile %s: %d value(s) of %r cut to %d bytes", path, truncated,
                        name, SHAPEFILE_MAX_BYTES)
    rows.append({"name": "", "short_name": SHAPEFILE_GEOMETRY_FIELD, "dtype": "",
                 "truncated_values": 0, "role": _ROLE_GEOMETRY})
    table = table.rename(columns=names)
    geoms = frame.geometry.to_numpy()
    table[SHAPEFILE_GEOMETRY_FIELD] = pd.Series(frame.geometry.geom_type.to_numpy(),
                                                dtype="string")
    fields = pd.DataFrame(rows, columns=_FIELDS_COLUMNS)
    listing = []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".shp-") as tmp:
        written = []
        for kind, (positions, values) in _split_by_kind(geoms).items():
            part = table.iloc[positions].reset_index(drop=True)
            stem = Path(tmp) / f"{layer}_{kind}"
            if kind == "nogeom":
                pyogrio.write_dataframe(part, stem.with_suffix(".dbf"),
                                        driver="ESRI Shapefile", encoding="UTF-8")
                written += [stem.with_suffix(".dbf"), stem.with_suffix(".cpg")]
                listing.append((f"{stem.name}.dbf", "(no geometry)", len(part), kind))
                continue
            multi = bool((shapely.get_type_id(values) >= 4).any())
            single = bool((shapely.get_type_id(values) < 4).any())
            gdf = gpd.GeoDataFrame(part, geometry=gpd.GeoSeries(values, crs=frame.crs),
                                   crs=frame.crs)
            gdf.to_file(stem.with_suffix(".shp"), driver="ESRI Shapefile", engine="pyogrio",
                        index=False, encoding="UTF-8", promote_to_multi=multi and single)
            written += [stem.with_suffix(ext) for ext in (".shp", ".shx", ".dbf", ".prj",
                                                          ".cpg")]
            listing.append((f"{stem.name}.shp", _SHAPE_TYPES[kind][multi], len(part), kind))
        width = max(len(name) for name, *_ in listing)
        files = "\n".join(
            f"  {name:<{width}}  {shape:<13} {n:>7,} row{'s' if n != 1 else ' '}  "
            f"{SHAPEFILE_PARTS[kind]}" for name, shape, n, kind in listing)
        readme = _README.format(files=files, id_column=id_column,
                                geom_field=SHAPEFILE_GEOMETRY_FIELD)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for member in written:
                if member.exists():
                    zf.write(member, member.name)
            zf.writestr(_FIELDS_CSV, fields.to_csv(index=False, lineterminator="\n"))
            zf.writestr("README.txt", readme)


def _database_target(out: str, layer: str | None) -> tuple[str, str | None, str]:
    """Split ``postgresql://…#schema.table`` (or ``layer=``) into url, schema, table."""
    url, _, fragment = str(out).partition("#")
    if fragment and layer and fragment != layer:
        msg = (f"the URL names the table {fragment!r} but layer={layer!r}; "
               "give the table once")
        raise ExportError(msg)
    target = fragment or layer
    if not target:
        msg = ("name the PostGIS table: postgresql://host/db#schema.table "
               "or layer='schema.table'")
        raise ExportError(msg)
    schema, _, table = target.rpartition(".")
    if not table:
        msg = f"invalid PostGIS table name {target!r}; use schema.table or table"
        raise ExportError(msg)
    return url, schema or None, table


def _write_postgis(frame: gpd.GeoDataFrame, out: str, layer: str | None,
                   overwrite: bool) -> str:
    url, schema, table = _database_target(out, layer)
    from geosup.store import write_database_table  # lazy: psycopg only when needed

    try:
        write_database_table(url, frame, table=table, schema=schema, overwrite=overwrite)
    except ImportError as err:  # the PostGIS backend or psycopg is not installed
        msg = f"PostGIS export is not available: {err}"
        raise ExportError(msg) from err
    return f"{url}#{schema}.{table}" if schema else f"{url}#{table}"


def _default_layer(path: Path) -> str:
    name = path.name
    for suffix in (".shp.zip", *_SUFFIX_FORMATS):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "layer"
    return path.stem or "layer"


def export_layer(
    frame: gpd.GeoDataFrame,
    out: str | os.PathLike[str],
    *,
    format: str | None = None,
    layer: str | None = None,
    overwrite: bool = False,
    id_column: str = "alert_id",
) -> Path | str:
    """Write a layer to a GIS file or a PostGIS table.

    Parameters
    ----------
    frame : GeoDataFrame
        The layer, usually the alert table; it must have a CRS and ``id_column``.
    out : str or path-like
        Output file, or ``postgresql://…#schema.table`` for PostGIS.
    format : str, optional
        One of :data:`FORMATS`. By default taken from ``out``: ``.gpkg``, ``.fgb``,
        ``.parquet``/``.geoparquet``, ``.geojson``/``.json``, ``.zip``/``.shp.zip``
        (zipped Shapefile) or a ``postgresql://`` URL.
    layer : str, optional
        Layer name (GeoPackage, FlatGeobuf, GeoJSON; for a zipped Shapefile the
        stem of the files inside, ``<layer>_point.shp`` …); defaults to the file
        name without its extension (``alerts.shp.zip`` -> ``alerts``). For PostGIS the table
        (``schema.table`` or ``table``) when the URL has no ``#fragment``.
    overwrite : bool, default False
        Replace an existing file (or table).
    id_column : str, default "alert_id"
        The stable id carried through every round trip; must be unique.

    Returns
    -------
    Path or str
        The file written, or ``url#schema.table`` for PostGIS.

    Raises
    ------
    CRSError
        The frame has no CRS.
    ExportError
        Unknown format, existing output without ``overwrite``, missing or duplicate
        ids, or a file the format's driver cannot write.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from shapely.geometry import GeometryCollection, LineString, Point
    >>> from geosup.alerts import make_alerts
    >>> station, track = Point(-2.9252, 53.4445), LineString([(-2.95, 53.41), (-2.93, 53.43)])
    >>> hits = gpd.GeoDataFrame(
    ...     {"rule": ["fuel.away_from_station", "fuel.no_gps_coverage"],
    ...      "subject_type": ["card", "vehicle"], "subject_id": ["C-17", "V-4"],
    ...      "period": ["2026-01", "2026-01"], "amount_at_risk": [412.5, None],
    ...      "observed_at": pd.to_datetime(["2026-01-26 15:57:02", None], utc=True)},
    ...     geometry=[GeometryCollection([station, track]), None], crs=4326)
    >>> alerts = make_alerts(hits, now=pd.Timestamp("2026-02-01", tz="UTC"))
    >>> out = export_layer(alerts, Path(tempfile.mkdtemp()) / "alerts.shp.zip")
    >>> sorted(n for n in zipfile.ZipFile(out).namelist() if n.endswith((".shp", "geom.dbf")))
    ['alerts_line.shp', 'alerts_nogeom.dbf', 'alerts_point.shp']
    >>> back = read_back(out).set_index("subject_id")
    >>> back.loc["C-17", "observed_at"].isoformat(), back.loc["C-17", "geometry"].geom_type
    ('2026-01-26T15:57:02+00:00', 'GeometryCollection')
    >>> read_back(out, layer="alerts_point").loc[0, "geometry"].wkt
    'POINT (-2.9252 53.4445)'
    >>> export_layer(alerts, out)
    Traceback (most recent call last):
    ...
    geosup.errors.ExportError: ... already exists; pass overwrite=True ...
    """
    fmt = infer_format(out, format)
    table = _prepare(frame, id_column)
    if fmt == "postgis":
        if not _DB_URL.match(str(out)):
            msg = f"PostGIS export needs a postgresql:// URL, not {str(out)!r}"
            raise ExportError(msg)
        return _write_postgis(table, str(out), layer, overwrite)
    if _DB_URL.match(str(out)):
        msg = f"format {fmt!r} writes a file; for a database URL use format='postgis'"
        raise ExportError(msg)
    path = Path(out)
    if fmt == "shp" and path.suffix.lower() != ".zip":
        msg = (f"Shapefiles are written zipped; name the output {path.name}.zip "
               "(or .shp.zip)")
        raise ExportError(msg)
    if path.is_dir():
        msg = f"{str(path)!r} is a directory; give a file name"
        raise ExportError(msg)
    if path.exists() and not overwrite:
        msg = (f"{str(path)!r} already exists; pass overwrite=True (--overwrite) to "
               "replace it")
        raise ExportError(msg)
    if not path.parent.is_dir():
        msg = f"the folder {str(path.parent)!r} does not exist"
        raise ExportError(msg)
    name = layer or _default_layer(path)
    if "/" in name or "\\" in name:
        msg = f"invalid layer name {name!r}"
        raise ExportError(msg)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".geosup-export-") as tmp:
        staged = Path(tmp) / path.name
        try:
            if fmt == "parquet":
                table.to_parquet(staged, index=False, schema_version="1.1.0")
            elif fmt == "shp":
                _write_shapefile(table, staged, name, id_column)
            else:
                _write_ogr(table, staged, fmt, name)
        except ExportError:
            raise
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError,
                pyogrio.errors.FieldError, pyogrio.errors.FeatureError,
                pyogrio.errors.GeometryError, OSError, ValueError, TypeError,
                NotImplementedError) as err:  # e.g. a column type the driver lacks
            msg = f"cannot write {fmt} file {str(path)!r}: {err}"
            raise ExportError(msg) from err
        os.replace(staged, path)
    logger.info("exported %d row(s) to %s (%s)", len(table), path, fmt)
    return path


# --------------------------------------------------------------------------- reading


def _parse_iso_columns(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Turn text columns that hold only ISO-8601 date-times into datetimes (UTC if zoned)."""
    for name in frame.columns:
        col = frame[name]
        if name == "geometry" or not _is_text(col):
            continue
        text = col.dropna().astype("string")
        if text.empty or not bool(text.str.fullmatch(_ISO_TIME).all()):
            continue
        zoned = bool(text.str.contains(_ISO_ZONE, regex=True).any())
        frame[name] = pd.to_datetime(col, format="ISO8601", utc=zoned)
    return frame


def _utc(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    for name in frame.columns:
        if isinstance(frame[name].dtype, pd.DatetimeTZDtype):
            frame[name] = frame[name].dt.tz_convert("UTC")
    return frame


def _restore_fields(frame: gpd.GeoDataFrame, fields: pd.DataFrame) -> gpd.GeoDataFrame:
    """Undo the Shapefile field mapping described by ``fields.csv``."""
    frame = frame.rename(columns=dict(zip(fields["short_name"], fields["name"], strict=True)))
    for name, dtype in zip(fields["name"], fields["dtype"], strict=True):
        if name not in frame.columns:
            continue
        if dtype.startswith("datetime64"):
            aware = "," in dtype or "UTC" in dtype
            frame[name] = pd.to_datetime(frame[name], format="ISO8601", utc=aware)
        try:
            frame[name] = frame[name].astype(dtype)
        except (TypeError, ValueError):
            logger.debug("column %r kept as %s (was %s)", name, frame[name].dtype, dtype)
    return frame


def _restore_types(geoms: np.ndarray, types: pd.Series) -> np.ndarray:
    """Geometries of a Shapefile part given back their original type (see ``geom_type``)."""
    target = types.astype("object").map(_TYPE_IDS).fillna(-1).to_numpy(dtype=int)
    got = shapely.get_type_id(geoms)
    out = geoms.copy()
    for kind, (single, multi) in _KIND_TYPES.items():
        down = (target == single) & (got == multi) & (shapely.get_num_geometries(geoms) == 1)
        if down.any():
            out[down] = shapely.get_geometry(geoms[down], 0)
        up = (target == multi) & (got == single)
        if up.any():
            out[up] = _MULTI[kind](geoms[up], indices=np.arange(int(up.sum())))
    rings = (target == _LINEARRING) & (got == _KIND_TYPES["line"][0])
    if rings.any():
        line = geoms[rings]
        z = bool(shapely.has_z(line).any())
        owner = np.repeat(np.arange(len(line)), shapely.get_num_coordinates(line))
        out[rings] = shapely.linearrings(shapely.get_coordinates(line, include_z=z),
                                         indices=owner)
    return out


def _join_collections(frame: gpd.GeoDataFrame, id_field: str,
                      types: pd.Series) -> gpd.GeoDataFrame:
    """One row per split GeometryCollection again, its parts from every file joined."""
    geoms = frame.geometry.to_numpy().copy()
    split = (types == "GeometryCollection").fillna(False).to_numpy(dtype=bool)
    split &= ~shapely.is_missing(geoms)
    if not split.any():
        return frame
    rows = np.flatnonzero(split)
    codes, _ = pd.factorize(frame[id_field].to_numpy()[rows])
    parts, k = shapely.get_parts(geoms[rows], return_index=True)
    owner = codes[k]
    order = np.argsort(owner, kind="stable")
    joined = shapely.geometrycollections(parts[order], indices=owner[order])
    _, first = np.unique(codes, return_index=True)  # first row of code 0, 1, …
    geoms[rows[first]] = joined
    keep = np.ones(len(frame), dtype=bool)
    keep[rows] = False
    keep[rows[first]] = True
    out = frame.copy()
    out["geometry"] = gpd.GeoSeries(geoms, crs=frame.crs, index=frame.index)
    return out[keep].reset_index(drop=True)


def _zip_tables(members: list[str]) -> list[str]:
    """The ``.shp`` files of a zip and the ``.dbf`` files that have no ``.shp``."""
    shps = [m for m in members if m.lower().endswith(".shp")]
    stems = {m[:-4].casefold() for m in shps}
    return shps + [m for m in members
                   if m.lower().endswith(".dbf") and m[:-4].casefold() not in stems]


def _read_zip(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    with zipfile.ZipFile(path) as zf:
        members = zf.namelist()
        fields = None
        if _FIELDS_CSV in members:
            fields = pd.read_csv(io.BytesIO(zf.read(_FIELDS_CSV)), dtype=str,
                                 keep_default_na=False, encoding="utf-8")
    tables = _zip_tables(members)
    parts = fields is not None and "role" in fields.columns  # one file per kind (geosup)
    if layer is not None:
        chosen = [m for m in tables if Path(m).stem == layer]
        if len(chosen) != 1:
            names = ", ".join(Path(m).stem for m in tables) or "none"
            msg = (f"{str(path)!r} holds no Shapefile or table named {layer!r} "
                   f"(it holds: {names})")
            raise DataSourceError(msg)
    elif len(tables) == 1 or (parts and tables):
        chosen = tables
    else:
        names = ", ".join(Path(m).stem for m in tables)
        msg = (f"{str(path)!r} holds {len(tables)} Shapefiles ({names}); pass layer="
               if tables else f"{str(path)!r} holds no Shapefile")
        raise DataSourceError(msg)
    frames = [pyogrio.read_dataframe(f"/vsizip/{path.resolve()}/{m}") for m in chosen]
    crs = next((f.crs for f in frames if isinstance(f, gpd.GeoDataFrame) and f.crs), None)
    others = [m for m in tables if m.lower().endswith(".shp") and m not in chosen]
    if crs is None and others:  # a .dbf-only table read alone: the layer's CRS
        crs = pyogrio.read_info(f"/vsizip/{path.resolve()}/{others[0]}")["crs"]
    frames = [f if isinstance(f, gpd.GeoDataFrame)
              else gpd.GeoDataFrame(f, geometry=gpd.GeoSeries([None] * len(f), index=f.index),
                                    crs=crs)
              for f in frames]
    frame = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry",
                             crs=crs) if len(frames) > 1 else frames[0]
    if fields is None:
        return _parse_iso_columns(frame)
    if parts:
        geometry = fields["role"] == _ROLE_GEOMETRY
        for field in fields.loc[geometry, "short_name"]:
            if field in frame.columns:
                types = frame.pop(field).astype("string")
                frame["geometry"] = gpd.GeoSeries(
                    _restore_types(frame.geometry.to_numpy(), types), crs=crs,
                    index=frame.index)
                ids = fields.loc[fields["role"] == _ROLE_ID, "short_name"]
                if layer is None and len(ids) and ids.iloc[0] in frame.columns:
                    frame = _join_collections(frame, ids.iloc[0], types)
        fields = fields[~geometry]
    return _restore_fields(frame, fields)


def _alert_dtypes(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Give an alert table its dtypes back; other columns follow the alert columns."""
    if not set(ALERT_COLUMNS) <= set(frame.columns):
        return frame
    extra = [c for c in frame.columns if c not in ALERT_COLUMNS]
    crs = frame.crs
    alerts = normalize_alert_frame(frame[list(ALERT_COLUMNS)])
    if crs is not None and alerts.crs != crs:
        alerts = alerts.set_crs(crs, allow_override=True)
    for name in extra:
        alerts[name] = frame[name].to_numpy()
    return alerts


def read_back(
    path: str | os.PathLike[str],
    *,
    format: str | None = None,
    layer: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a layer written by :func:`export_layer` (or any such file) back.

    Parameters
    ----------
    path : str or path-like
        The file, or ``postgresql://…#schema.table``.
    format : str, optional
        One of :data:`FORMATS`; by default taken from ``path``.
    layer : str, optional
        The layer (GeoPackage) or table (PostGIS); needed when there are several.
        For a zipped Shapefile written by :func:`export_layer`, by default every
        part is read and the layer comes back whole (split GeometryCollections
        joined again, one row per id); ``layer="alerts_point"`` (a file name
        without extension) reads one part alone: its rows, a split collection
        only with its parts of that file's kind.

    Returns
    -------
    GeoDataFrame
        Original column names (Shapefile names restored from ``fields.csv``),
        ISO-8601 time text parsed back (UTC when zoned), tz-aware times in UTC, the
        geometry column named ``geometry``. An alert table gets the alert dtypes.
        Row order is whatever the format gives back: match rows by id.

    Raises
    ------
    DataSourceError
        The file does not exist or cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> from shapely.geometry import Point
    >>> layer = gpd.GeoDataFrame({"parcel_id": ["P1"], "eligible_area_m2": [1250.0]},
    ...                          geometry=[Point(155000, 463000)], crs=28992)
    >>> out = export_layer(layer, Path(tempfile.mkdtemp()) / "p.zip", id_column="parcel_id")
    >>> list(read_back(out).columns)
    ['parcel_id', 'eligible_area_m2', 'geometry']
    """
    fmt = infer_format(path, format)
    if fmt == "postgis":
        url, schema, table = _database_target(str(path), layer)
        from geosup.store import read_database_table

        frame = read_database_table(url, table=table, schema=schema)
        if isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name != "geometry":
            frame = frame.rename_geometry("geometry")
        return _alert_dtypes(_utc(frame))
    source = Path(path)
    if not source.is_file():
        msg = f"{str(source)!r} does not exist or is not a file"
        raise DataSourceError(msg)
    try:
        if fmt == "parquet":
            frame = gpd.read_parquet(source)
            if frame.geometry.name != "geometry":
                frame = frame.rename_geometry("geometry")
        elif fmt == "shp":
            frame = _read_zip(source, layer)
        else:
            if layer is None:
                layers = pyogrio.list_layers(source)
                if len(layers) > 1:
                    names = ", ".join(str(n) for n in layers[:, 0])
                    msg = f"{str(source)!r} has several layers ({names}); pass layer="
                    raise DataSourceError(msg)
            options: Mapping[str, str] = {"DATE_AS_STRING": "YES"} if fmt == "geojson" else {}
            frame = pyogrio.read_dataframe(source, layer=layer, **options)
            if fmt == "geojson":
                frame = _parse_iso_columns(frame)
    except DataSourceError:
        raise
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError,
            zipfile.BadZipFile, ValueError) as err:
        msg = f"cannot read {fmt} file {str(source)!r}: {err}"
        raise DataSourceError(msg) from err
    return _alert_dtypes(_utc(frame))

