"""The PostgreSQL + PostGIS store, through psycopg 3.

Everything lives in one schema (``geosup`` unless the URL fragment or the ``schema``
argument names another): ``alerts`` (geometry in EPSG:4326 with a GiST index),
``alert_events`` (append-only: a trigger refuses UPDATE, DELETE and TRUNCATE),
``runs``, ``rejects``, the ``layers`` registry and one ``layer_<name>`` table per
stored input layer. A run is one database transaction: bulk writes go through
``COPY`` into a temporary table and a single ``INSERT … ON CONFLICT``, and nothing a
failed run wrote survives its rollback.

Every value reaches the server as a query parameter or through ``COPY``; table and
column names are composed with :mod:`psycopg.sql`. Passwords never appear in
:attr:`PostGISStore.url`, in log records or in error messages.

Examples
--------
>>> from geosup.store.postgis import PostGISStore
>>> store = PostGISStore("postgresql://inspector@db.example/audit#geosup")  # doctest: +SKIP
>>> store.url                                                  # doctest: +SKIP
'postgresql://inspector@db.example/audit#geosup'
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyproj
import shapely
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from geosup.alerts import ALERT_COLUMNS, EVENT_COLUMNS, MEASURED_COLUMNS
from geosup.errors import (
    DataSourceError,
    ExportError,
    GeosupError,
    StoreConnectionError,
    StoreError,
    ValidationError,
)
from geosup.store.base import (
    REJECT_COLUMNS,
    RUN_COLUMNS,
    Store,
    UpsertCounts,
    check_layer_name,
    safe_url,
)

__all__ = [
    "DEFAULT_SCHEMA",
    "LAYER_PREFIX",
    "PostGISStore",
    "connect",
    "read_table",
    "safe_url",
    "server_versions",
    "write_table",
]

log = logging.getLogger(__name__)

#: Schema of the store when neither the URL fragment nor ``schema=`` names one.
DEFAULT_SCHEMA = "geosup"

#: Prefix of the tables that hold stored input layers.
LAYER_PREFIX = "layer_"

_MAX_IDENTIFIER = 63  # bytes; PostgreSQL silently truncates longer names
_CUSTOM_SRID = 900_000  # first SRID for CRSs without an EPSG code (PostGIS allows ≤ 998999)
_MAX_SRID = 998_999
_LOCK_INIT = 0x6765_6F73_7570_0001  # pg_advisory_xact_lock keys ("geosup" + n)
_LOCK_SRS = 0x6765_6F73_7570_0002
_CONNECT_TIMEOUT = 10
_TEMP_ALERTS = "geosup_incoming_alerts"
_STORE_TABLES = ("alerts", "alert_events", "runs", "rejects", "layers")
_TRIGGERS = ("alert_events_append_only", "alert_events_no_truncate")
_LAYER_COLUMNS = ("name", "rows", "crs", "geometry_type", "id_column", "run_id", "written_at")

_ALERT_TYPES: dict[str, str] = {
    "score": "double precision",
    "amount_at_risk": "double precision",
    "observed_at": "timestamptz",
    "status_at": "timestamptz",
    "first_seen": "timestamptz",
    "last_seen": "timestamptz",
    "evidence": "jsonb",
    "geometry": "geometry(Geometry, 4326)",
}
_ALERT_NOT_NULL = frozenset({"rule", "domain", "status", "first_seen", "last_seen"})
_ALERT_INDEXED = ("rule", "status", "unit", "period", "domain")
_TIME_COLUMNS = frozenset({"observed_at", "status_at", "first_seen", "last_seen"})
_FLOAT_COLUMNS = frozenset({"score", "amount_at_risk"})
_GEOMETRY_NAMES = {0: "POINT", 1: "LINESTRING", 2: "LINESTRING", 3: "POLYGON",
                   4: "MULTIPOINT", 5: "MULTILINESTRING", 6: "MULTIPOLYGON",
                   7: "GEOMETRYCOLLECTION"}

# Static DDL: only identifiers vary, and those are composed with sql.Identifier.
_DDL_RUNS = """
CREATE TABLE IF NOT EXISTS {runs} (
  run_id text PRIMARY KEY,
  command text NOT NULL,
  params jsonb NOT NULL DEFAULT '{{}}'::jsonb,
  inputs jsonb NOT NULL DEFAULT '[]'::jsonb,
  started_at timestamptz NOT NULL,
  ended_at timestamptz,
  counts jsonb NOT NULL DEFAULT '{{}}'::jsonb)
"""
_DDL_EVENTS = """
CREATE TABLE IF NOT EXISTS {events} (
  event_id bigserial PRIMARY KEY,
  alert_id text NOT NULL REFERENCES {alerts} (alert_id),
  at timestamptz NOT NULL,
  "by" text NOT NULL,
  from_status text,
  to_status text NOT NULL,
  note text)
"""
_DDL_REJECTS = """
CREATE TABLE IF NOT EXISTS {rejects} (
  reject_id bigserial PRIMARY KEY,
  run_id text NOT NULL REFERENCES {runs} (run_id) DEFERRABLE INITIALLY DEFERRED,
  source text,
  "row" bigint,
  "key" text,
  reason text,
  raw text)
"""
_DDL_LAYERS = """
CREATE TABLE IF NOT EXISTS {layers} (
  name text PRIMARY KEY,
  table_name text NOT NULL,
  "rows" bigint NOT NULL,
  crs text,
  geometry_type text,
  id_column text,
  run_id text REFERENCES {runs} (run_id) DEFERRABLE INITIALLY DEFERRED,
  written_at timestamptz NOT NULL)
"""
_DDL_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $geosup$
BEGIN
  RAISE EXCEPTION USING
    MESSAGE = 'alert_events is append-only: ' || TG_OP || ' refused',
    ERRCODE = 'integrity_constraint_violation';
END
$geosup$
"""


# -- URLs and connections --------------------------------------------------------------
def _split_fragment(url: str) -> tuple[str, str]:
    """Return ``url`` without its ``#fragment``, and the (unquoted) fragment."""
    base, _, fragment = str(url).partition("#")
    return base, unquote(fragment)


def _secrets(url: str) -> list[str]:
    """Every spelling of the URL's password, to scrub from messages."""
    found: set[str] = set()
    try:
        parts = urlsplit(str(url))
    except ValueError:  # malformed: scrub whatever sits between '//' and '@'
        userinfo = str(url).partition("//")[2].partition("@")
        return [userinfo[0]] if userinfo[1] and userinfo[0] else []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            raw = userinfo.split(":", 1)[1]
            found.update({raw, unquote(raw)})
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "password":
            found.add(value)
    return sorted((s for s in found if s), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _one_line(err: BaseException) -> str:
    """A psycopg error as one line: libpq's lines joined, whitespace squeezed."""
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(err)
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    if primary and detail:
        text = f"{primary} ({detail})"
    return " ".join(text.split()) or type(err).__name__


def _where(params: Mapping[str, Any]) -> str:
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or \
        "the local socket"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER")
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user or "(default)"
    return f"host {host} port {port} database {dbname}"


def _connect(conninfo: str) -> psycopg.Connection:
    """Open a psycopg connection (autocommit off, session time zone UTC).

    Raises
    ------
    StoreConnectionError
        The URL is malformed or the server cannot be reached; the message names host,
        port and database and never the password.
    """
    secrets = _secrets(conninfo)
    safe = safe_url(conninfo)
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as err:
        msg = f"invalid PostgreSQL URL {safe}: {_scrub(_one_line(err), secrets)}"
        raise StoreConnectionError(msg) from None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in params and "PGCONNECT_TIMEOUT" not in os.environ:
        extra["connect_timeout"] = _CONNECT_TIMEOUT
    if "application_name" not in params and "PGAPPNAME" not in os.environ:
        extra["application_name"] = "geosup"
    try:
        conn = psycopg.connect(conninfo, autocommit=False, **extra)
    except psycopg.Error as err:
        reason = _scrub(_one_line(err), secrets)
        msg = f"cannot connect to PostgreSQL at {_where(params)}: {reason}"
        raise StoreConnectionError(msg) from None
    try:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
    except psycopg.Error as err:
        conn.close()
        msg = f"cannot set up the session at {_where(params)}: {_one_line(err)}"
        raise StoreConnectionError(msg) from None
    log.debug("connected to %s", safe)
    return conn


@contextmanager
def _sql_errors(conn: psycopg.Connection, action: str, where: str,
                error: type[GeosupError] = StoreError) -> Iterator[None]:
    """Turn psycopg errors into geosup errors (a lost connection into a connection error)."""
    try:
        yield
    except psycopg.Error as err:
        if conn.closed or conn.broken:
            msg = f"lost the connection to {where} while {action}: {_one_line(err)}"
            raise StoreConnectionError(msg) from None
        msg = f"{action} failed in {where}: {_one_line(err)}"
        raise error(msg) from err


def _check_identifier(name: object, what: str, error: type[GeosupError]) -> str:
    """Refuse names PostgreSQL would truncate or cannot hold; quoting does the rest."""
    if not isinstance(name, str) or not name or "\x00" in name:
        msg = f"{what} {name!r} is not a usable name (text, not empty, no NUL character)"
        raise error(msg)
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER:
        msg = (f"{what} {name!r} is longer than PostgreSQL's {_MAX_IDENTIFIER}-byte limit "
               "for names")
        raise error(msg)
    return name


def _default_schema(fragment: str) -> str:
    """The schema a bare URL fragment names (``#schema``); ``public`` otherwise."""
    return fragment if fragment and "." not in fragment else "public"


# -- values in (COPY) ------------------------------------------------------------------
def _text_values(series: pd.Series) -> list[Any]:
    if series.dtype == object:
        out: list[Any] = []
        for v in series.tolist():  # arbitrary objects: only str() can say what they are
            if isinstance(v, (dict, list)):
                out.append(json.dumps(v, default=str, ensure_ascii=False))
            elif v is None or (pd.api.types.is_scalar(v) and not isinstance(v, (str, bytes))
                               and pd.isna(v)):
                out.append(None)
            else:
                out.append(str(v))
        return out
    return series.astype("string").to_numpy(dtype=object, na_value=None).tolist()


def _scalar_values(series: pd.Series) -> list[Any]:
    """Integers, floats and booleans as Python scalars, missing values as None."""
    return series.to_numpy(dtype=object, na_value=None).tolist()


def _time_values(series: pd.Series) -> list[Any]:
    """Timestamps as ISO 8601 text (UTC with 'Z' when time-zone aware), NaT as None."""
    values = pd.to_datetime(series)
    aware = getattr(values.dt, "tz", None) is not None
    if aware:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    arr = values.to_numpy(dtype="datetime64[us]")
    text = np.datetime_as_string(arr, unit="us")
    if aware:
        text = np.char.add(text, "Z")
    out = text.astype(object)
    out[np.isnat(arr)] = None
    return out.tolist()


def _ewkb_values(geoms: Any, srid: int, *, force_2d: bool = False) -> list[Any]:
    """Geometries as hex EWKB carrying ``srid``; missing geometries as None."""
    arr = np.asarray(geoms, dtype=object)
    if force_2d:
        arr = shapely.force_2d(arr)
    arr = shapely.set_srid(arr, srid)
    return shapely.to_wkb(arr, hex=True, include_srid=True).tolist()


def _copy_rows(cur: psycopg.Cursor, table: sql.Composable, names: Sequence[str],
               columns: Sequence[list[Any]]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(sql.Identifier(n) for n in names))
    with cur.copy(statement) as copy:
        for row in zip(*columns, strict=True):
            copy.write_row(row)


# -- values out ------------------------------------------------------------------------
def _fetch(cur: psycopg.Cursor) -> dict[str, list[Any]]:
    """All rows of the last query, by column."""
    names = [d.name for d in cur.description or ()]
    rows = cur.fetchall()
    if not rows:
        return {n: [] for n in names}
    return dict(zip(names, (list(c) for c in zip(*rows, strict=True)), strict=True))


def _utc(values: Sequence[Any]) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), utc=True)).astype("datetime64[us, UTC]")


def _json_text(values: Sequence[Any]) -> list[Any]:
    """jsonb values (already parsed by psycopg) as canonical JSON text (sorted keys)."""
    return [None if v is None else json.dumps(v, sort_keys=True, ensure_ascii=False)
            for v in values]


def _decode_wkb(values: Sequence[Any]) -> np.ndarray:
    return shapely.from_wkb(np.asarray(list(values), dtype=object), on_invalid="warn")


def _column_series(values: list[Any], typname: str) -> pd.Series:
    """A column read from PostgreSQL as a pandas Series of the matching dtype."""
    if typname in ("int2", "int4", "int8"):
        return pd.Series(values, dtype="Int64" if None in values else "int64")
    if typname in ("float4", "float8", "numeric"):
        return pd.Series(pd.to_numeric(pd.Series(values, dtype=object), errors="coerce"),
                         dtype="float64")
    if typname == "bool":
        return pd.Series(values, dtype="boolean" if None in values else "bool")
    if typname == "timestamptz":
        return _utc(values)
    if typname == "timestamp":
        return pd.Series(pd.to_datetime(list(values))).astype("datetime64[us]")
    if typname in ("date", "time", "timetz", "interval", "bytea"):
        return pd.Series(values, dtype=object)
    return pd.Series(values, dtype="str")


# -- CRS <-> SRID ----------------------------------------------------------------------
def _srid_for_crs(cur: psycopg.Cursor, crs: pyproj.CRS | None) -> int:
    """The SRID of ``crs`` in ``spatial_ref_sys``, adding a custom row (≥ 900000) when the
    CRS has no EPSG code there."""
    if crs is None:
        return 0
    crs = pyproj.CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    if epsg is not None:
        cur.execute("SELECT 1 FROM spatial_ref_sys WHERE srid = %s", (epsg,))
        if cur.fetchone() is not None:
            return int(epsg)
    srtext = crs.to_wkt("WKT1_GDAL") or crs.to_wkt()
    if len(srtext) > 2048:  # spatial_ref_sys.srtext is varchar(2048)
        srtext = crs.to_wkt()
        if len(srtext) > 2048:
            srtext = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # proj4 is a lossy fallback only
        proj4 = crs.to_proj4() or None
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_SRS,))
    cur.execute(
        "SELECT srid FROM spatial_ref_sys WHERE srid >= %s AND srtext IS NOT DISTINCT FROM %s "
        "AND proj4text IS NOT DISTINCT FROM %s ORDER BY srid LIMIT 1",
        (_CUSTOM_SRID, srtext, proj4))
    row = cur.fetchone()
    if row is not None:
        return int(row[0])
    cur.execute("SELECT greatest(%s, coalesce(max(srid), 0) + 1) FROM spatial_ref_sys "
                "WHERE srid >= %s", (_CUSTOM_SRID, _CUSTOM_SRID))
    srid = int(cur.fetchone()[0])
    if srid > _MAX_SRID:
        msg = "no free SRID left for a custom coordinate reference system in spatial_ref_sys"
        raise StoreError(msg)
    cur.execute("INSERT INTO spatial_ref_sys (srid, auth_name, auth_srid, srtext, proj4text) "
                "VALUES (%s, NULL, NULL, %s, %s)", (srid, srtext, proj4))
    log.info("added custom SRID %d for CRS %s", srid, crs.name)
    return srid


def _crs_for_srid(cur: psycopg.Cursor, srid: int) -> pyproj.CRS | None:
    if not srid:
        return None
    cur.execute("SELECT auth_name, auth_srid, srtext, proj4text FROM spatial_ref_sys "
                "WHERE srid = %s", (srid,))
    row = cur.fetchone()
    if row is None:
        return pyproj.CRS.from_epsg(srid) if srid < _CUSTOM_SRID else None
    auth_name, auth_srid, srtext, proj4 = row
    candidates = []
    if auth_name and auth_srid:
        candidates.append(f"{auth_name}:{auth_srid}")
    candidates.extend(c for c in (srtext, proj4) if c)
    for candidate in candidates:
        try:
            return pyproj.CRS.from_user_input(candidate)
        except pyproj.exceptions.CRSError:
            continue
    return None


# -- tables from frames ----------------------------------------------------------------
@dataclass(frozen=True)
class _Column:
    name: str
    kind: str  # geometry, int, float, bool, tstz, ts, numeric, text
    ddl: sql.Composable


def _active_geometry(frame: pd.DataFrame) -> str | None:
    """The name of the frame's active geometry column, if it has one."""
    if not isinstance(frame, gpd.GeoDataFrame):
        return None
    try:
        name = frame.geometry.name
    except AttributeError:  # a GeoDataFrame whose active geometry column is not set
        return None
    return name if name in frame.columns else None


def _geometry_frame_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if isinstance(frame[c].dtype, gpd.array.GeometryDtype)]


def _kind(series: pd.Series) -> str:
    dtype = series.dtype
    if isinstance(dtype, gpd.array.GeometryDtype):
        return "geometry"
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        big_unsigned = pd.api.types.is_unsigned_integer_dtype(dtype) and \
            np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize >= 8
        return "numeric" if big_unsigned else "int"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "tstz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "ts"
    return "text"


_PG_TYPES = {"int": "bigint", "float": "double precision", "bool": "boolean",
             "tstz": "timestamptz", "ts": "timestamp", "numeric": "numeric", "text": "text"}


def _geometry_typmod(geoms: np.ndarray) -> tuple[str, str]:
    """(registry name such as ``MULTIPOLYGON``, PostGIS typmod type such as ``MultiPolygon``;
    '' when 2D and 3D geometries are mixed)."""
    present = geoms[~shapely.is_missing(geoms)]
    ids = pd.unique(shapely.get_type_id(present)) if len(present) else []
    name = _GEOMETRY_NAMES.get(int(ids[0]), "GEOMETRY") if len(ids) == 1 else "GEOMETRY"
    has_z = shapely.has_z(present[~shapely.is_empty(present)]) if len(present) else \
        np.array([], dtype=bool)
    typmod = {"POINT": "Point", "LINESTRING": "LineString", "POLYGON": "Polygon",
              "MULTIPOINT": "MultiPoint", "MULTILINESTRING": "MultiLineString",
              "MULTIPOLYGON": "MultiPolygon", "GEOMETRYCOLLECTION": "GeometryCollection",
              "GEOMETRY": "Geometry"}[name]
    if has_z.all() and len(has_z):
        typmod += "Z"
    elif has_z.any():
        typmod = ""
    return name, typmod


def _create_from_frame(cur: psycopg.Cursor, schema: str, table: str, frame: pd.DataFrame, *,
                       error: type[GeosupError], index_columns: Sequence[str] = ()) -> dict:
    """Create ``schema.table`` shaped like ``frame``, COPY its rows, index its geometry.

    Returns the active geometry's registry name and CRS text (``None`` without one).
    """
    names = list(frame.columns)
    for name in names:
        _check_identifier(name, "column name", error)
    if len(set(names)) != len(names):
        msg = f"duplicate column names in the table for {table!r}"
        raise error(msg)
    active = _active_geometry(frame)
    target = sql.Identifier(schema, table)
    columns: list[_Column] = []
    values: list[list[Any]] = []
    info: dict[str, Any] = {"geometry_type": None, "crs": None}
    for name in names:
        series = frame[name]
        kind = _kind(series)
        if kind == "geometry":
            geoms = np.asarray(series.array, dtype=object)
            crs = series.crs
            srid = _srid_for_crs(cur, crs)
            registry_name, typmod = _geometry_typmod(geoms)
            if typmod:
                ddl = sql.SQL("geometry({}, {})").format(sql.SQL(typmod), sql.Literal(srid))
            else:  # 2D and 3D mixed: no dimension constraint, SRID checked explicitly
                ddl = sql.SQL("geometry CHECK (ST_SRID({}) = {})").format(
                    sql.Identifier(name), sql.Literal(srid))
            values.append(_ewkb_values(geoms, srid))
            if name == active:
                info["geometry_type"] = registry_name
                info["crs"] = None if crs is None else crs.to_string()
        else:
            ddl = sql.SQL(_PG_TYPES[kind])
            if kind in ("tstz", "ts"):
                values.append(_time_values(series))
            elif kind == "text":
                values.append(_text_values(series))
            else:
                values.append(_scalar_values(series))
        columns.append(_Column(name, kind, ddl))
    cur.execute(sql.SQL("CREATE TABLE {} ({})").format(
        target, sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(c.name), c.ddl)
                                   for c in columns)))
    if columns and len(frame):
        _copy_rows(cur, target, [c.name for c in columns], values)
    for c in columns:
        if c.kind == "geometry":
            cur.execute(sql.SQL("CREATE INDEX ON {} USING gist ({})").format(
                target, sql.Identifier(c.name)))
    for name in index_columns:
        cur.execute(sql.SQL("CREATE INDEX ON {} ({})").format(target, sql.Identifier(name)))
    cur.execute(sql.SQL("ANALYZE {}").format(target))
    return info


def _relation_exists(cur: psycopg.Cursor, schema: str, table: str) -> bool:
    cur.execute("SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN "
                "('r', 'p', 'v', 'm', 'f')", (schema, table))
    return cur.fetchone() is not None


def _ensure_schema(cur: psycopg.Cursor, schema: str) -> None:
    """Create ``schema`` unless it exists (CREATE SCHEMA IF NOT EXISTS would still demand
    the CREATE privilege on the database)."""
    cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
    if cur.fetchone() is None:
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _ensure_postgis(cur: psycopg.Cursor, where: str, error: type[GeosupError]) -> None:
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
    if cur.fetchone() is not None:
        return
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'")
    if cur.fetchone() is None:
        msg = (f"PostGIS is not installed on the database server ({where}); install it "
               "(Debian: postgresql-15-postgis-3) and retry")
        raise error(msg)
    try:
        cur.execute("SAVEPOINT geosup_postgis")
        cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        cur.execute("RELEASE SAVEPOINT geosup_postgis")
    except psycopg.Error as err:
        cur.execute("ROLLBACK TO SAVEPOINT geosup_postgis")
        msg = (f"PostGIS is available but not enabled in {where} and enabling it failed "
               f"({_one_line(err)}); ask the database owner to run CREATE EXTENSION postgis")
        raise error(msg) from None


def _read_relation(cur: psycopg.Cursor, schema: str, table: str, *,
                   crs: pyproj.CRS | None = None) -> pd.DataFrame | gpd.GeoDataFrame:
    """Read a table or view; geometry/geography columns decoded with their CRS.

    ``crs`` overrides the CRS of every geometry column (the layers registry knows it).
    """
    cur.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum", (schema, table))
    types = dict(cur.fetchall())
    cur.execute("SELECT f_geometry_column, srid FROM geometry_columns "
                "WHERE f_table_schema = %s AND f_table_name = %s "
                "UNION ALL SELECT f_geography_column, srid FROM geography_columns "
                "WHERE f_table_schema = %s AND f_table_name = %s", (schema, table) * 2)
    srids = {name: int(srid or 0) for name, srid in cur.fetchall()}
    target = sql.Identifier(schema, table)
    select = []
    for name, typname in types.items():
        ident = sql.Identifier(name)
        if typname in ("geometry", "geography"):
            select.append(sql.SQL("ST_AsBinary({}) AS {}").format(ident, ident))
        elif typname in ("int2", "int4", "int8", "float4", "float8", "numeric", "bool",
                         "timestamptz", "timestamp", "date", "time", "timetz", "interval",
                         "bytea", "jsonb", "json"):
            select.append(ident)
        else:
            select.append(sql.SQL("{}::text AS {}").format(ident, ident))
    if not select:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
        return pd.DataFrame(index=pd.RangeIndex(int(cur.fetchone()[0])))
    cur.execute(sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(select), target))
    raw = _fetch(cur)
    data: dict[str, Any] = {}
    geometry: list[str] = []
    for name, typname in types.items():
        if typname in ("geometry", "geography"):
            geometry.append(name)
            srid = srids.get(name, 0)
            if not srid:
                cur.execute(sql.SQL("SELECT ST_SRID({}) FROM {} WHERE {} IS NOT NULL LIMIT 1")
                            .format(sql.Identifier(name), target, sql.Identifier(name)))
                row = cur.fetchone()
                srid = int(row[0]) if row else 0
            column_crs = crs if crs is not None else _crs_for_srid(cur, srid)
            data[name] = gpd.GeoSeries(_decode_wkb(raw[name]), crs=column_crs)
        elif typname in ("json", "jsonb"):
            data[name] = pd.Series(_json_text(raw[name]), dtype="str")
        else:
            data[name] = _column_series(raw[name], typname)
    frame = pd.DataFrame(data, columns=list(types))
    if not geometry:
        return frame
    active = geometry[0]
    return gpd.GeoDataFrame(frame, geometry=active, crs=data[active].crs)


# -- the store -------------------------------------------------------------------------
class PostGISStore(Store):
    """Alerts, review history, runs, rejects and input layers in PostgreSQL + PostGIS.

    Parameters
    ----------
    url : str
        ``postgresql://user[:password]@host[:port]/database[?…][#schema]``. Credentials may
        also come from libpq's environment (PGHOST, PGPASSWORD, ``~/.pgpass`` …).
    create : bool, default True
        Create the schema and its tables when missing (:meth:`init`); otherwise an
        uninitialised database raises :class:`~geosup.errors.StoreError`. Opening a
        complete store runs no DDL, so an account with only SELECT/INSERT/UPDATE grants
        (a reviewer) can use a store that ``geosup db init`` created.
    schema : str, optional
        The schema that holds the store; overrides the URL fragment. Default ``geosup``.

    Raises
    ------
    StoreConnectionError
        The server cannot be reached or refuses the login.
    StoreError
        PostGIS is unavailable, or the store is missing and ``create`` is false.

    Examples
    --------
    >>> from geosup.store import open_store
    >>> with open_store("postgresql://inspector@db.example/audit") as store:  # doctest: +SKIP
    ...     store.alerts(status="open", domain="fuel")
    """

    def __init__(self, url: str, *, create: bool = True, schema: str | None = None) -> None:
        conninfo, fragment = _split_fragment(str(url))
        self.schema = _check_identifier(schema or fragment or DEFAULT_SCHEMA, "schema",
                                        ValidationError)
        self.url = safe_url(str(url))
        self._in_tx = False
        self._conn = _connect(conninfo)
        try:
            if not self._is_complete():
                if not create:
                    msg = (f"no geosup store in schema {self.schema!r} of {self.url}; create "
                           "it with `geosup db init --store URL`")
                    raise StoreError(msg)
                self.init()
        except BaseException:
            self._conn.close()
            raise

    def __repr__(self) -> str:
        return f"PostGISStore({self.url!r}, schema={self.schema!r})"

    @property
    def connection(self) -> psycopg.Connection:
        """The psycopg connection (for engines that push work into PostGIS)."""
        return self._conn

    # -- helpers ---------------------------------------------------------------------
    def _t(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    def _errors(self, action: str,
                error: type[GeosupError] = StoreError) -> AbstractContextManager[None]:
        return _sql_errors(self._conn, action, self.url, error)

    @contextmanager
    def _reading(self, action: str) -> Iterator[psycopg.Cursor]:
        """A cursor for a read; outside a run the read's transaction ends with it."""
        try:
            with self._errors(action), self._conn.cursor() as cur:
                yield cur
        finally:
            if not self._in_tx:
                self._end_transaction()

    @contextmanager
    def _writing(self, action: str) -> Iterator[psycopg.Cursor]:
        """A cursor inside the open run or review transaction."""
        with self._errors(action), self._conn.cursor() as cur:
            yield cur

    def _end_transaction(self) -> None:
        if self._conn.closed or self._conn.broken:
            return
        if self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                self._conn.rollback()
            except psycopg.Error as err:  # cleanup only; the caller's error matters more
                log.warning("rollback failed on %s: %s", self.url, _one_line(err))

    def _is_complete(self) -> bool:
        """True when every table and trigger of the store exists (opening a complete store
        needs no DDL, so accounts without CREATE or ownership rights can use it)."""
        with self._reading("opening the store") as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind IN ('r', 'p') "
                "AND c.relname = ANY(%s)), (SELECT count(*) FROM pg_trigger t "
                "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = 'alert_events' "
                "AND t.tgname = ANY(%s))",
                (self.schema, list(_STORE_TABLES), self.schema, list(_TRIGGERS)))
            tables, triggers = cur.fetchone()
        return tables == len(_STORE_TABLES) and triggers == len(_TRIGGERS)

    # -- lifecycle -------------------------------------------------------------------
    def init(self) -> None:
        """Create the PostGIS extension, the schema, its tables, indexes and triggers.

        Safe to call again: every statement is ``IF NOT EXISTS`` or ``OR REPLACE``.
        """
        if self._in_tx:
            msg = "cannot initialise the store inside a run"
            raise StoreError(msg)
        ident = {"runs": self._t("runs"),
                 "alerts": self._t("alerts"), "events": self._t("alert_events"),
                 "rejects": self._t("rejects"), "layers": self._t("layers"),
                 "function": self._t("alert_events_append_only")}
        alert_columns = []
        for name in ALERT_COLUMNS:
            ddl = sql.SQL(_ALERT_TYPES.get(name, "text"))
            if name == "alert_id":
                ddl = sql.SQL("text PRIMARY KEY")
            elif name == "run_id":
                ddl = sql.SQL("text REFERENCES {} (run_id) DEFERRABLE INITIALLY DEFERRED"
                              ).format(ident["runs"])
            elif name in _ALERT_NOT_NULL:
                ddl = sql.SQL("{} NOT NULL").format(ddl)
            alert_columns.append(sql.SQL("{} {}").format(sql.Identifier(name), ddl))
        statements = [
            sql.SQL(_DDL_RUNS).format(**ident),
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                ident["alerts"], sql.SQL(", ").join(alert_columns)),
            sql.SQL("CREATE INDEX IF NOT EXISTS alerts_geometry_gist ON {} USING gist "
                    "(geometry)").format(ident["alerts"]),
            *(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"alerts_{c}_idx"), ident["alerts"], sql.Identifier(c))
              for c in _ALERT_INDEXED),
            sql.SQL(_DDL_EVENTS).format(**ident),
            sql.SQL("CREATE INDEX IF NOT EXISTS alert_events_alert_id_idx ON {} "
                    "(alert_id, event_id)").format(ident["events"]),
            sql.SQL(_DDL_REJECTS).format(**ident),
            sql.SQL("CREATE INDEX IF NOT EXISTS rejects_run_id_idx ON {} (run_id)").format(
                ident["rejects"]),
            sql.SQL(_DDL_LAYERS).format(**ident),
            sql.SQL(_DDL_APPEND_ONLY).format(**ident),
        ]
        triggers = {
            "alert_events_append_only": sql.SQL(
                "CREATE TRIGGER alert_events_append_only BEFORE UPDATE OR DELETE ON {events} "
                "FOR EACH ROW EXECUTE FUNCTION {function}()").format(**ident),
            "alert_events_no_truncate": sql.SQL(
                "CREATE TRIGGER alert_events_no_truncate BEFORE TRUNCATE ON {events} "
                "FOR EACH STATEMENT EXECUTE FUNCTION {function}()").format(**ident),
        }
        try:
            with self._errors("creating the store"), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_INIT,))
                _ensure_postgis(cur, self.url, StoreError)
                _ensure_schema(cur, self.schema)
                for statement in statements:
                    cur.execute(statement)
                cur.execute(
                    "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = 'alert_events'", (self.schema,))
                present = {r[0] for r in cur.fetchall()}
                for name, statement in triggers.items():
                    if name not in present:
                        cur.execute(statement)
                self._conn.commit()
        finally:
            self._end_transaction()
        log.debug("store schema %s ready in %s", self.schema, self.url)

    def close(self) -> None:
        """Close the connection (an unfinished run is rolled back by the server)."""
        if not self._conn.closed:
            self._conn.close()
        self._in_tx = False

    # -- transactions ----------------------------------------------------------------
    def _begin(self) -> None:
        if self._in_tx:
            msg = "the store is already inside a run or review; runs cannot be nested"
            raise StoreError(msg)
        self._end_transaction()
        self._in_tx = True

    def _commit(self) -> None:
        try:
            with self._errors("committing"):
                self._conn.commit()
        finally:
            self._in_tx = False
            self._end_transaction()

    def _rollback(self) -> None:
        try:
            if not (self._conn.closed or self._conn.broken):
                self._conn.rollback()
        except psycopg.Error as err:  # cleanup path: keep the run's own error visible
            log.warning("rollback failed on %s: %s", self.url, _one_line(err))
        finally:
            self._in_tx = False

    # -- writing ---------------------------------------------------------------------
    def _insert_run(self, row: dict[str, Any]) -> None:
        with self._writing("recording the run") as cur:
            cur.execute(
                sql.SQL("INSERT INTO {} (run_id, command, params, inputs, started_at, "
                        "ended_at, counts) VALUES (%s, %s, %s::jsonb, %s::jsonb, %s, %s, "
                        "%s::jsonb)").format(self._t("runs")),
                (row["run_id"], row["command"], row["params"], row["inputs"],
                 row["started_at"], row["ended_at"], row["counts"]))

    def _upsert_alerts(self, alerts: gpd.GeoDataFrame, *, run_id: str,
                       at: pd.Timestamp) -> UpsertCounts:
        """COPY the alerts into a temporary table, then one INSERT … ON CONFLICT.

        Measured columns, geometry, ``last_seen`` and ``run_id`` of known alerts are
        refreshed; their review columns and ``first_seen`` are kept. A new alert gets a
        ``raised`` event in the history. Geometries are stored 2D.
        """
        if not len(alerts):
            return UpsertCounts(0, 0)
        ids = alerts["alert_id"]
        if ids.isna().any():
            msg = "every alert needs an alert_id"
            raise ValidationError(msg)
        if ids.duplicated().any():
            msg = (f"alert {ids[ids.duplicated()].iloc[0]!r} appears twice in one write; "
                   "a rule must report a subject once per period")
            raise ValidationError(msg)
        geometry = alerts.geometry
        if geometry.crs is not None and geometry.crs.to_epsg() != 4326:
            geometry = geometry.to_crs(4326)
        names = list(ALERT_COLUMNS)
        values: list[list[Any]] = []
        for name in names:
            if name == "geometry":
                values.append(_ewkb_values(geometry.array, 4326, force_2d=True))
            elif name in _TIME_COLUMNS:
                values.append(_time_values(alerts[name]))
            elif name in _FLOAT_COLUMNS:
                values.append(_scalar_values(alerts[name].astype("float64")))
            else:
                values.append(_text_values(alerts[name]))
        tmp = sql.Identifier(_TEMP_ALERTS)
        target = self._t("alerts")
        columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        select = sql.SQL(", ").join(
            sql.SQL("coalesce(status, 'open')") if n == "status" else sql.Identifier(n)
            for n in names)
        refresh = sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n))
            for n in (*MEASURED_COLUMNS, "geometry", "last_seen", "run_id"))
        upsert = sql.SQL("""
            WITH up AS (
              INSERT INTO {target} AS a ({columns}) SELECT {select} FROM {tmp}
              ON CONFLICT (alert_id) DO UPDATE SET {refresh}
              RETURNING a.alert_id, a.status, (a.xmax = 0) AS inserted
            ), raised AS (
              INSERT INTO {events} (alert_id, at, "by", from_status, to_status, note)
              SELECT alert_id, %(at)s, %(by)s, NULL, status, %(note)s FROM up
              WHERE inserted ORDER BY alert_id
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
            FROM up""").format(target=target, columns=columns, select=select, tmp=tmp,
                               refresh=refresh, events=self._t("alert_events"))
        with self._writing("writing alerts") as cur:
            cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) "
                                "ON COMMIT DROP").format(tmp, target))
            _copy_rows(cur, tmp, names, values)
            cur.execute(upsert, {"at": pd.Timestamp(at).to_pydatetime(), "by": "geosup",
                                 "note": f"raised by run {run_id}"})
            inserted, updated = cur.fetchone()
            cur.execute(sql.SQL("DROP TABLE {}").format(tmp))
        return UpsertCounts(inserted=int(inserted), updated=int(updated))

    def _insert_rejects(self, rejects: pd.DataFrame) -> None:
        names = list(REJECT_COLUMNS)
        values = [_scalar_values(rejects[n]) if n == "row" else _text_values(rejects[n])
                  for n in names]
        with self._writing("writing rejects") as cur:
            _copy_rows(cur, self._t("rejects"), names, values)

    def _write_layer(self, name: str, frame: pd.DataFrame, *, run_id: str,
                     id_column: str | None) -> None:
        check_layer_name(name)
        table = _check_identifier(LAYER_PREFIX + name, "layer table", ValidationError)
        if id_column is not None and id_column not in frame.columns:
            msg = f"layer {name!r} has no id column {id_column!r}"
            raise ValidationError(msg)
        with self._writing(f"writing layer {name!r}") as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._t(table)))
            info = _create_from_frame(cur, self.schema, table, frame, error=ValidationError,
                                      index_columns=[id_column] if id_column else ())
            cur.execute(
                sql.SQL('INSERT INTO {} (name, table_name, "rows", crs, geometry_type, '
                        "id_column, run_id, written_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                        'ON CONFLICT (name) DO UPDATE SET table_name = EXCLUDED.table_name, '
                        '"rows" = EXCLUDED."rows", crs = EXCLUDED.crs, '
                        "geometry_type = EXCLUDED.geometry_type, id_column = EXCLUDED.id_column,"
                        " run_id = EXCLUDED.run_id, written_at = EXCLUDED.written_at"
                        ).format(self._t("layers")),
                (name, table, len(frame), info["crs"], info["geometry_type"], id_column,
                 run_id, pd.Timestamp.now(tz="UTC").to_pydatetime()))

    def _apply_review(self, event: Mapping[str, Any]) -> None:
        at = pd.Timestamp(event["at"]).to_pydatetime()
        with self._writing("recording the review") as cur:
            cur.execute(
                sql.SQL("UPDATE {} SET status = %s, status_by = %s, status_at = %s, "
                        "status_note = %s WHERE alert_id = %s").format(self._t("alerts")),
                (event["to_status"], event["by"], at, event["note"], event["alert_id"]))
            cur.execute(
                sql.SQL('INSERT INTO {} (alert_id, at, "by", from_status, to_status, note) '
                        "VALUES (%s, %s, %s, %s, %s, %s)").format(self._t("alert_events")),
                (event["alert_id"], at, event["by"], event["from_status"],
                 event["to_status"], event["note"]))

    # -- reading ---------------------------------------------------------------------
    def _select_alerts(self, filters: Mapping[str, list[str]]) -> pd.DataFrame:
        select = sql.SQL(", ").join(
            sql.SQL("ST_AsBinary(geometry) AS geometry") if n == "geometry"
            else sql.Identifier(n) for n in ALERT_COLUMNS)
        query = sql.SQL("SELECT {} FROM {}").format(select, self._t("alerts"))
        params: list[list[str]] = []
        if filters:
            query = sql.SQL("{} WHERE {}").format(query, sql.SQL(" AND ").join(
                sql.SQL("{} = ANY(%s)").format(sql.Identifier(k)) for k in filters))
            params = [list(v) for v in filters.values()]
        query = sql.SQL("{} ORDER BY alert_id").format(query)
        with self._reading("reading alerts") as cur:
            cur.execute(query, params)
            raw = _fetch(cur)
        data: dict[str, Any] = {}
        for name in ALERT_COLUMNS:
            if name == "geometry":
                continue
            if name in _TIME_COLUMNS:
                data[name] = _utc(raw[name])
            elif name in _FLOAT_COLUMNS:
                data[name] = pd.Series(raw[name], dtype="float64")
            elif name == "evidence":
                data[name] = pd.Series(_json_text(raw[name]), dtype="string")
            else:
                data[name] = pd.Series(raw[name], dtype="string")
        frame = pd.DataFrame(data)
        geoms = gpd.GeoSeries(_decode_wkb(raw["geometry"]), crs=4326, index=frame.index)
        return gpd.GeoDataFrame(frame, geometry=geoms)

    def _current_status(self, alert_id: str) -> str | None:
        with self._writing("reading the alert's status") as cur:
            cur.execute(sql.SQL("SELECT status FROM {} WHERE alert_id = %s FOR UPDATE").format(
                self._t("alerts")), (alert_id,))
            row = cur.fetchone()
        return None if row is None else str(row[0])

    def events(self, alert_id: str | None = None) -> pd.DataFrame:
        """The append-only review history, oldest first (of one alert or of all).

        Returns
        -------
        DataFrame
            Columns :data:`~geosup.alerts.EVENT_COLUMNS`; ``at`` in UTC.
        """
        query = sql.SQL('SELECT event_id, alert_id, at, "by", from_status, to_status, note '
                        "FROM {}").format(self._t("alert_events"))
        params: tuple[Any, ...] = ()
        if alert_id is not None:
            query = sql.SQL("{} WHERE alert_id = %s").format(query)
            params = (alert_id,)
        with self._reading("reading the review history") as cur:
            cur.execute(sql.SQL("{} ORDER BY event_id").format(query), params)
            raw = _fetch(cur)
        frame = pd.DataFrame({
            "event_id": pd.Series(raw["event_id"], dtype="int64"),
            "alert_id": pd.Series(raw["alert_id"], dtype="str"),
            "at": _utc(raw["at"]),
            **{c: pd.Series(raw[c], dtype="str")
               for c in ("by", "from_status", "to_status", "note")},
        })
        return frame[list(EVENT_COLUMNS)]

    def runs(self) -> pd.DataFrame:
        """Every completed run, oldest first; ``params``, ``inputs`` and ``counts`` as JSON
        text (sorted keys)."""
        with self._reading("reading runs") as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY started_at, run_id").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in RUN_COLUMNS), self._t("runs")))
            raw = _fetch(cur)
        frame = pd.DataFrame({
            "run_id": pd.Series(raw["run_id"], dtype="str"),
            "command": pd.Series(raw["command"], dtype="str"),
            **{c: pd.Series(_json_text(raw[c]), dtype="str")
               for c in ("params", "inputs")},
            "started_at": _utc(raw["started_at"]),
            "ended_at": _utc(raw["ended_at"]),
            "counts": pd.Series(_json_text(raw["counts"]), dtype="str"),
        })
        return frame[list(RUN_COLUMNS)]

    def rejects(self, *, run_id: str | None = None) -> pd.DataFrame:
        """The rejects ledger in the order it was written (of one run or of all)."""
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in REJECT_COLUMNS), self._t("rejects"))
        params: tuple[Any, ...] = ()
        if run_id is not None:
            query = sql.SQL("{} WHERE run_id = %s").format(query)
            params = (run_id,)
        with self._reading("reading the rejects ledger") as cur:
            cur.execute(sql.SQL("{} ORDER BY reject_id").format(query), params)
            raw = _fetch(cur)
        frame = pd.DataFrame({c: pd.Series(raw[c], dtype="Int64" if c == "row" else "str")
                              for c in REJECT_COLUMNS})
        return frame[list(REJECT_COLUMNS)]

    def layers(self) -> pd.DataFrame:
        """The registry of stored input layers (name, rows, crs, geometry_type, id_column,
        run_id, written_at), by name."""
        with self._reading("reading the layer registry") as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY name").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in _LAYER_COLUMNS),
                self._t("layers")))
            raw = _fetch(cur)
        frame = pd.DataFrame({
            **{c: pd.Series(raw[c], dtype="str")
               for c in ("name", "crs", "geometry_type", "id_column", "run_id")},
            "rows": pd.Series(raw["rows"], dtype="int64"),
            "written_at": _utc(raw["written_at"]),
        })
        return frame[list(_LAYER_COLUMNS)]

    def read_layer(self, name: str) -> gpd.GeoDataFrame | pd.DataFrame:
        """A stored input layer with its CRS and column types.

        Raises
        ------
        ValidationError
            ``name`` cannot name a layer, or no layer of that name is stored.
        """
        check_layer_name(name)
        with self._reading(f"reading layer {name!r}") as cur:
            cur.execute(sql.SQL("SELECT table_name, crs FROM {} WHERE name = %s").format(
                self._t("layers")), (name,))
            row = cur.fetchone()
            if row is None:
                msg = f"no layer named {name!r} in {self.url}"
                raise ValidationError(msg)
            table, crs_text = row
            crs = pyproj.CRS.from_user_input(crs_text) if crs_text else None
            return _read_relation(cur, self.schema, table, crs=crs)


# -- any table -------------------------------------------------------------------------
def read_table(url: str, *, table: str, schema: str | None = None
               ) -> pd.DataFrame | gpd.GeoDataFrame:
    """Read one table (or view) of a PostgreSQL database.

    Parameters
    ----------
    url : str
        ``postgresql://…``; a bare fragment (``#schema``) names the default schema.
    table : str
        The table's name, as stored (no quoting needed: names are quoted for you).
    schema : str, optional
        Its schema; default the URL fragment, else ``public``.

    Returns
    -------
    DataFrame or GeoDataFrame
        Geometry (and geography) columns, found in ``geometry_columns``, decoded with the
        CRS of their SRID; the first one is the active geometry.

    Raises
    ------
    StoreConnectionError
        The server cannot be reached.
    DataSourceError
        No such table, or it cannot be read.

    Examples
    --------
    >>> parcels = read_table("postgresql://inspector@db.example/audit",
    ...                      table="parcels", schema="reference")   # doctest: +SKIP
    """
    conninfo, fragment = _split_fragment(url)
    schema = schema or _default_schema(fragment)
    where = safe_url(conninfo)
    _check_identifier(table, "table", DataSourceError)
    _check_identifier(schema, "schema", DataSourceError)
    with _connect(conninfo) as conn:
        with _sql_errors(conn, f"reading table {schema}.{table}", where, DataSourceError), \
                conn.cursor() as cur:
            if not _relation_exists(cur, schema, table):
                msg = f"no table {table!r} in schema {schema!r} of {where}"
                raise DataSourceError(msg)
            frame = _read_relation(cur, schema, table)
        conn.rollback()
    return frame


def write_table(url: str, frame: pd.DataFrame, *, table: str, schema: str | None = None,
                overwrite: bool = False) -> int:
    """Write a (Geo)DataFrame as a new table of a PostgreSQL database (bulk COPY).

    Geometry columns become ``geometry(<type>, <srid>)`` with a GiST index; the SRID is the
    CRS's EPSG code, or a custom ``spatial_ref_sys`` row (≥ 900000) for a CRS without one.
    Integers become ``bigint``, floats ``double precision``, booleans ``boolean``,
    time-zone-aware times ``timestamptz``, naive times ``timestamp``, the rest ``text``.
    The frame's index is not written.

    Parameters
    ----------
    url : str
        ``postgresql://…``; a bare fragment (``#schema``) names the default schema.
    frame : DataFrame or GeoDataFrame
        The rows to write.
    table : str
        The new table's name (quoted as given).
    schema : str, optional
        Its schema (created when missing); default the URL fragment, else ``public``.
    overwrite : bool, default False
        Replace an existing table of that name.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    ExportError
        The table exists and ``overwrite`` is false, or the table cannot be written.
    StoreConnectionError
        The server cannot be reached.

    Examples
    --------
    >>> write_table("postgresql://inspector@db.example/audit", alerts,
    ...             table="alerts_2026_03", schema="export")        # doctest: +SKIP
    """
    conninfo, fragment = _split_fragment(url)
    schema = schema or _default_schema(fragment)
    where = safe_url(conninfo)
    _check_identifier(table, "table", ExportError)
    _check_identifier(schema, "schema", ExportError)
    active = _active_geometry(frame)
    if active is not None and frame[active].crs is None:
        msg = f"cannot write table {table!r}: its geometry has no coordinate reference system"
        raise ExportError(msg)
    with _connect(conninfo) as conn:
        try:
            with _sql_errors(conn, f"writing table {schema}.{table}", where, ExportError), \
                    conn.cursor() as cur:
                if _geometry_frame_columns(frame):
                    _ensure_postgis(cur, where, ExportError)
                _ensure_schema(cur, schema)
                if _relation_exists(cur, schema, table):
                    if not overwrite:
                        msg = (f"table {table!r} already exists in schema {schema!r} of "
                               f"{where}; use --overwrite to replace it")
                        raise ExportError(msg)
                    cur.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, table)))
                _create_from_frame(cur, schema, table, frame, error=ExportError)
            with _sql_errors(conn, f"committing table {schema}.{table}", where, ExportError):
                conn.commit()
        except BaseException:
            if not (conn.closed or conn.broken):
                conn.rollback()
            raise
    return len(frame)


def server_versions(url: str) -> dict[str, str]:
    """The PostgreSQL and PostGIS versions of the server at ``url``.

    Raises
    ------
    StoreConnectionError
        The server cannot be reached.
    """
    conninfo, _ = _split_fragment(url)
    with _connect(conninfo) as conn:
        server = conn.execute("SHOW server_version").fetchone()[0]
        row = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'postgis'").fetchone()
        conn.rollback()
    return {"PostgreSQL": str(server),
            "PostGIS": str(row[0]) if row else "not installed in this database"}


def connect(url: str) -> psycopg.Connection:
    """Open a connection for a check that pushes its work into PostGIS.

    Autocommit is off and the session runs in UTC; the caller commits or rolls back.
    The URL's ``#schema`` fragment is ignored here.

    Raises
    ------
    StoreConnectionError
        The server cannot be reached; the message never contains the password.
    """
    conninfo, _ = _split_fragment(url)
    return _connect(conninfo)
