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
  written as null as well (no format keeps the difference reliably).
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
    (7 decimals, counter-clockwise exterior rings). The id stays a property;
    times are ISO-8601 strings (``...Z``), parsed back to UTC by :func:`read_back`.
``shp``
    A zip holding ``<layer>.shp/.shx/.dbf/.prj/.cpg`` (UTF-8), ``fields.csv`` and
    ``README.txt``. Field names are cut to 10 bytes by :data:`SHAPEFILE_FIELDS`
    (alert columns) and :func:`shapefile_field_names` (every other column; always
    unique); times become ISO-8601 strings; strings longer than 254 UTF-8 bytes are
    cut at a character boundary. ``fields.csv`` lists ``name, short_name, dtype,
    truncated_values`` so that :func:`read_back` restores names, times and dtypes.
    A Shapefile holds one geometry type: single and multi parts of one kind are
    promoted (Polygon + MultiPolygon -> MultiPolygon, Point + MultiPoint ->
    MultiPoint, LineString + MultiLineString -> MultiLineString); a frame that
    mixes kinds (points with polygons) or holds GeometryCollections raises
    :class:`~geosup.errors.ExportError` -- filter it by geometry type or use
    another format. Also: empty strings read back as missing, floats keep 15
    significant digits.
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
import pandas as pd
import pyogrio
import shapely

from geosup.alerts import ALERT_COLUMNS, normalize_alert_frame
from geosup.errors import CRSError, DataSourceError, ExportError

__all__ = [
    "FORMATS",
    "SHAPEFILE_FIELDS",
    "SHAPEFILE_MAX_BYTES",
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

#: Longest string a Shapefile (dBASE) field holds, in bytes.
SHAPEFILE_MAX_BYTES = 254

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
_FAMILIES = {
    "Point": "point",
    "MultiPoint": "point",
    "LineString": "line",
    "LinearRing": "line",
    "MultiLineString": "line",
    "Polygon": "polygon",
    "MultiPolygon": "polygon",
}
_FIELDS_CSV = "fields.csv"
_README = """\
Zipped Shapefile written by geosup (geosup.export).

A Shapefile cannot hold everything the alert table holds, so:
- field names are cut to 10 bytes: fields.csv maps each original column name
  (name) to its Shapefile field (short_name) and records its original dtype;
- times are ISO-8601 text (UTC, ending in Z when the source time had a zone);
- strings longer than 254 bytes (UTF-8) were cut at a character boundary;
  fields.csv counts them per column (truncated_values). Every other format
  (GeoPackage, FlatGeobuf, GeoParquet, GeoJSON, PostGIS) keeps the full text;
- empty strings read back as missing values; numbers keep 15 significant digits;
- single and multi geometries of one kind were written as multi geometries.
geosup.export.read_back() restores the original names, times and dtypes.
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
       reserved first, so alert fields never move);
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
    """
    names = [str(c) for c in columns]
    if len(set(names)) != len(names):
        msg = "the layer has duplicate column names; rename them before exporting"
        raise ExportError(msg)
    short: dict[str, str] = {}
    taken: set[str] = set()
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
    values = out.geometry.to_numpy().copy()
    values[shapely.is_empty(values)] = None
    out["geometry"] = gpd.GeoSeries(values, crs=frame.crs, index=out.index)
    for name in out.columns:
        col = out[name]
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            out[name] = col.dt.tz_convert("UTC")
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


def _write_shapefile(frame: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    types = _geometry_types(frame)
    families = {_FAMILIES.get(t, t) for t in types}
    if len(families) > 1 or not families <= {"point", "line", "polygon"}:
        found = ", ".join(sorted(types))
        msg = (f"a Shapefile holds one kind of geometry, but this layer has {found}; "
               "filter the rows by geometry type (e.g. frame[frame.geom_type.isin("
               "['Polygon', 'MultiPolygon'])]) and export each kind to its own file, or "
               "use a format that mixes them: gpkg, fgb, parquet, geojson or postgis")
        raise ExportError(msg)
    columns = [c for c in frame.columns if c != "geometry"]
    names = shapefile_field_names(columns)
    table = frame.copy()
    rows = []
    for name in columns:
        dtype = str(table[name].dtype)
        truncated = 0
        if pd.api.types.is_datetime64_any_dtype(table[name].dtype):
            table[name] = _iso_strings(table[name])
        elif _is_text(table[name]):
            table[name], truncated = _truncate(table[name])
        rows.append({"name": name, "short_name": names[name], "dtype": dtype,
                     "truncated_values": truncated})
        if truncated:
            logger.info("Shapefile %s: %d value(s) of %r cut to %d bytes", path, truncated,
                        name, SHAPEFILE_MAX_BYTES)
    table = table.rename(columns=names)
    fields = pd.DataFrame(rows, columns=["name", "short_name", "dtype", "truncated_values"])
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".shp-") as tmp:
        shp = Path(tmp) / f"{layer}.shp"
        table.to_file(shp, driver="ESRI Shapefile", engine="pyogrio", index=False,
                      encoding="UTF-8", promote_to_multi=len(types) > 1)
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg"):
                part = shp.with_suffix(ext)
                if part.exists():
                    zf.write(part, part.name)
            zf.writestr(_FIELDS_CSV, fields.to_csv(index=False, lineterminator="\n"))
            zf.writestr("README.txt", _README)


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
        Layer name (GeoPackage, FlatGeobuf, GeoJSON, the ``.shp`` inside the zip);
        defaults to the file name without its extension. For PostGIS the table
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
        ids, or a layer the format cannot hold (see the module notes).

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from shapely.geometry import Point
    >>> from geosup.alerts import make_alerts
    >>> hits = gpd.GeoDataFrame(
    ...     {"rule": ["fuel.away_from_station"], "subject_type": ["card"],
    ...      "subject_id": ["C-17"], "period": ["2026-01"], "amount_at_risk": [412.5],
    ...      "observed_at": [pd.Timestamp("2026-01-26 15:57:02", tz="UTC")]},
    ...     geometry=[Point(-2.925173, 53.44451)], crs=4326)
    >>> alerts = make_alerts(hits, now=pd.Timestamp("2026-02-01", tz="UTC"))
    >>> out = export_layer(alerts, Path(tempfile.mkdtemp()) / "alerts.shp.zip")
    >>> back = read_back(out)
    >>> back.loc[0, "subject_type"], back.loc[0, "observed_at"].isoformat()
    ('card', '2026-01-26T15:57:02+00:00')
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
                _write_shapefile(table, staged, name)
            else:
                _write_ogr(table, staged, fmt, name)
        except ExportError:
            raise
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError,
                pyogrio.errors.FieldError, pyogrio.errors.FeatureError,
                pyogrio.errors.GeometryError, OSError, ValueError, TypeError) as err:
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


def _read_zip(path: Path, layer: str | None) -> gpd.GeoDataFrame:
    with zipfile.ZipFile(path) as zf:
        members = zf.namelist()
        shps = [m for m in members if m.lower().endswith(".shp")]
        fields = None
        if _FIELDS_CSV in members:
            fields = pd.read_csv(io.BytesIO(zf.read(_FIELDS_CSV)), dtype=str,
                                 keep_default_na=False, encoding="utf-8")
    if layer is not None:
        shps = [m for m in shps if Path(m).stem == layer]
    if len(shps) != 1:
        msg = (f"{str(path)!r} holds {len(shps)} Shapefile(s) named {layer!r}"
               if layer else f"{str(path)!r} holds {len(shps)} Shapefiles; pass layer=")
        raise DataSourceError(msg)
    frame = pyogrio.read_dataframe(f"/vsizip/{path.resolve()}/{shps[0]}")
    if fields is None:
        return _parse_iso_columns(frame)
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

