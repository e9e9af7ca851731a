"""The embedded store: one GeoPackage file.

The file is a standard GeoPackage 1.3: ``alerts`` and every input layer are feature
tables that QGIS or ``ogrinfo`` open directly; ``alert_events``, ``runs``,
``rejects`` and ``layers`` are attribute tables. geosup writes it through SQLite
itself (not through GDAL) so that everything a run writes sits in one SQLite
transaction and a failed run rolls back completely.

Every feature table carries the GeoPackage R-tree spatial index extension
(``gpkg_rtree_index``), so QGIS and GDAL read a district out of a city-wide layer
without a full scan. The index triggers call ``ST_IsEmpty`` and ``ST_MinX`` …
``ST_MaxY``; GDAL and QGIS provide those functions and so does this store's own
connection (:func:`register_geometry_functions`). A plain ``sqlite3`` shell lacks
them, so writes to a feature table's geometry from such a shell fail, as they do for
any GeoPackage with a spatial index. A bulk layer write fills the index in one pass
and adds the triggers afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosup.alerts import ALERT_COLUMNS, MEASURED_COLUMNS
from geosup.errors import StoreConnectionError, StoreError, ValidationError
from geosup.store.base import Store, UpsertCounts, check_layer_name

__all__ = [
    "GeoPackageStore",
    "decode_geometries",
    "encode_geometries",
    "register_geometry_functions",
]

_APPLICATION_ID = 0x47504B47  # "GPKG"
_USER_VERSION = 10300
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}
_CUSTOM_SRS = 100_000

_ALERT_TYPES = {
    "score": "DOUBLE", "amount_at_risk": "DOUBLE", "observed_at": "DATETIME",
    "status_at": "DATETIME", "first_seen": "DATETIME", "last_seen": "DATETIME",
}

_CORE = """
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '', last_change DATETIME NOT NULL DEFAULT
  (strftime('%Y-%m-%dT%H:%M:%fZ','now')), min_x DOUBLE, min_y DOUBLE, max_x DOUBLE,
  max_y DOUBLE, srs_id INTEGER, CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id)
  REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
CREATE TABLE IF NOT EXISTS gpkg_extensions (
  table_name TEXT, column_name TEXT, extension_name TEXT NOT NULL, definition TEXT NOT NULL,
  scope TEXT NOT NULL, CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name));
CREATE TABLE IF NOT EXISTS alert_events (
  event_id INTEGER PRIMARY KEY AUTOINCREMENT, alert_id TEXT NOT NULL, at DATETIME NOT NULL,
  "by" TEXT NOT NULL, from_status TEXT, to_status TEXT NOT NULL, note TEXT);
CREATE INDEX IF NOT EXISTS alert_events_alert_id ON alert_events(alert_id);
CREATE TRIGGER IF NOT EXISTS alert_events_no_update BEFORE UPDATE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS alert_events_no_delete BEFORE DELETE ON alert_events
BEGIN SELECT RAISE(ABORT, 'alert_events is append-only'); END;
CREATE TABLE IF NOT EXISTS runs (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, command TEXT NOT NULL,
  params TEXT, inputs TEXT, started_at DATETIME NOT NULL, ended_at DATETIME, counts TEXT);
CREATE TABLE IF NOT EXISTS rejects (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, source TEXT, "row" INTEGER,
  "key" TEXT, reason TEXT NOT NULL, raw TEXT);
CREATE INDEX IF NOT EXISTS rejects_run ON rejects(run_id);
CREATE TABLE IF NOT EXISTS layers (
  fid INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, table_name TEXT NOT NULL,
  "rows" INTEGER NOT NULL, crs TEXT, geometry_type TEXT, id_column TEXT, run_id TEXT,
  written_at DATETIME NOT NULL);
"""


def _iso(values: pd.Series) -> list[str | None]:
    """UTC timestamps as GeoPackage DATETIME text: ``YYYY-MM-DDTHH:MM:SS.SSSZ``.

    The standard's format holds milliseconds, and GDAL (so QGIS) warns on every value
    that carries more digits, so times are rounded to the millisecond here. GPS fixes
    and fuel-card times come in whole seconds; the PostGIS store keeps microseconds.
    """
    ts = pd.to_datetime(values, utc=True).dt.round("ms")
    text = ts.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3] + "Z"
    return text.astype(object).where(ts.notna(), None).tolist()


def encode_geometries(geoms: Sequence[Any] | np.ndarray, srs_id: int) -> list[bytes | None]:
    """Encode shapely geometries as GeoPackage geometry blobs (little endian, XY envelope).

    Missing geometries become ``None`` (SQL NULL); empty ones carry the empty flag.
    """
    arr = np.asarray(geoms, dtype=object)
    n = len(arr)
    if n == 0:
        return []
    missing = shapely.is_missing(arr)
    empty = ~missing & shapely.is_empty(arr)
    header = np.zeros(n, dtype=[("magic", "S2"), ("version", "u1"), ("flags", "u1"),
                                ("srs", "<i4"), ("env", "<f8", (4,))])
    header["magic"] = b"GP"
    header["flags"] = np.where(empty, 0x11, 0x03)
    header["srs"] = srs_id
    bounds = shapely.bounds(arr)  # minx, miny, maxx, maxy
    header["env"] = bounds[:, [0, 2, 1, 3]]  # GeoPackage order: minx, maxx, miny, maxy
    full = header.view(np.uint8).reshape(n, -1)
    wkb = shapely.to_wkb(np.where(missing, None, arr), byte_order=1, flavor="iso")
    out: list[bytes | None] = []
    for i in range(n):  # joins bytes only; the encoding above is vectorised
        if missing[i]:
            out.append(None)
        elif empty[i]:
            out.append(full[i, :8].tobytes() + wkb[i])
        else:
            out.append(full[i].tobytes() + wkb[i])
    return out


def decode_geometries(blobs: Iterable[bytes | None]) -> np.ndarray:
    """Decode GeoPackage geometry blobs into a shapely geometry array."""
    wkb = [None if b is None else b[8 + _ENVELOPE_BYTES[(b[3] >> 1) & 7]:] for b in blobs]
    return shapely.from_wkb(np.asarray(wkb, dtype=object), on_invalid="warn")


def _envelope(blob: bytes | None) -> tuple[float, float, float, float] | None:
    """(minx, maxx, miny, maxy) of a GeoPackage geometry blob; None when null or empty."""
    if blob is None or len(blob) < 8 or blob[3] & 0x10:
        return None
    if (blob[3] >> 1) & 7:
        return struct.unpack_from("<4d" if blob[3] & 1 else ">4d", blob, 8)
    bounds = shapely.bounds(decode_geometries([blob])[0])  # no envelope in the header
    return None if np.isnan(bounds).any() else (bounds[0], bounds[2], bounds[1], bounds[3])


def _st(index: int | None) -> Any:
    def function(blob: bytes | None) -> float | int | None:
        env = _envelope(blob)
        if index is None:  # ST_IsEmpty
            return None if blob is None else int(env is None)
        return None if env is None else env[index]
    return function


def register_geometry_functions(conn: sqlite3.Connection) -> None:
    """Give an SQLite connection the functions the GeoPackage R-tree triggers call.

    ``ST_IsEmpty``, ``ST_MinX``, ``ST_MaxX``, ``ST_MinY`` and ``ST_MaxY`` on GeoPackage
    geometry blobs, read from the blob's envelope.

    Examples
    --------
    >>> import shapely, sqlite3
    >>> conn = sqlite3.connect(":memory:")
    >>> register_geometry_functions(conn)
    >>> blob = encode_geometries([shapely.box(1, 2, 3, 4)], 4326)[0]
    >>> conn.execute("SELECT ST_MinX(?), ST_MaxY(?), ST_IsEmpty(?)", (blob, blob, blob)).fetchone()
    (1.0, 4.0, 0)
    """
    for name, index in (("ST_IsEmpty", None), ("ST_MinX", 0), ("ST_MaxX", 1),
                        ("ST_MinY", 2), ("ST_MaxY", 3)):
        conn.create_function(name, 1, _st(index), deterministic=True)


_RTREE_VALUES = ('NEW.fid, ST_MinX(NEW."{c}"), ST_MaxX(NEW."{c}"), ST_MinY(NEW."{c}"), '
                 'ST_MaxY(NEW."{c}")')
_DRAWN = ' NOTNULL AND NOT ST_IsEmpty({})'
_NOT_DRAWN = ' IS NULL OR ST_IsEmpty({})'
#: The GeoPackage 1.4 R-tree triggers ({r}: index, {t}: table, {c}: geometry column). 1.4
#: updates the index row in place where 1.3 used INSERT OR REPLACE, which an outer UPSERT's
#: conflict policy overrides.
_RTREE_TRIGGERS = (
    'CREATE TRIGGER "{r}_insert" AFTER INSERT ON "{t}" '
    'WHEN (new."{c}"' + _DRAWN.format('NEW."{c}"') + ') '
    'BEGIN INSERT OR REPLACE INTO "{r}" VALUES (' + _RTREE_VALUES + '); END',
    'CREATE TRIGGER "{r}_update6" AFTER UPDATE OF "{c}" ON "{t}" '
    'WHEN OLD.fid = NEW.fid AND (NEW."{c}"' + _DRAWN.format('NEW."{c}"') + ') '
    'AND (OLD."{c}"' + _DRAWN.format('OLD."{c}"') + ') '
    'BEGIN UPDATE "{r}" SET minx = ST_MinX(NEW."{c}"), maxx = ST_MaxX(NEW."{c}"), '
    'miny = ST_MinY(NEW."{c}"), maxy = ST_MaxY(NEW."{c}") WHERE id = NEW.fid; END',
    'CREATE TRIGGER "{r}_update7" AFTER UPDATE OF "{c}" ON "{t}" '
    'WHEN OLD.fid = NEW.fid AND (NEW."{c}"' + _DRAWN.format('NEW."{c}"') + ') '
    'AND (OLD."{c}"' + _NOT_DRAWN.format('OLD."{c}"') + ') '
    'BEGIN INSERT INTO "{r}" VALUES (' + _RTREE_VALUES + '); END',
    'CREATE TRIGGER "{r}_update2" AFTER UPDATE OF "{c}" ON "{t}" '
    'WHEN OLD.fid = NEW.fid AND (NEW."{c}"' + _NOT_DRAWN.format('NEW."{c}"') + ') '
    'BEGIN DELETE FROM "{r}" WHERE id = OLD.fid; END',
    'CREATE TRIGGER "{r}_update5" AFTER UPDATE ON "{t}" '
    'WHEN OLD.fid != NEW.fid AND (NEW."{c}"' + _DRAWN.format('NEW."{c}"') + ') '
    'BEGIN DELETE FROM "{r}" WHERE id = OLD.fid; '
    'INSERT INTO "{r}" VALUES (' + _RTREE_VALUES + '); END',
    'CREATE TRIGGER "{r}_update4" AFTER UPDATE ON "{t}" '
    'WHEN OLD.fid != NEW.fid AND (NEW."{c}"' + _NOT_DRAWN.format('NEW."{c}"') + ') '
    'BEGIN DELETE FROM "{r}" WHERE id IN (OLD.fid, NEW.fid); END',
    'CREATE TRIGGER "{r}_delete" AFTER DELETE ON "{t}" WHEN old."{c}" NOT NULL '
    'BEGIN DELETE FROM "{r}" WHERE id = OLD.fid; END',
)


def _rtree_name(table: str, column: str) -> str:
    return f"rtree_{table}_{column}"


def _geometry_type(geoms: np.ndarray) -> str:
    names = pd.unique(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]))
    lookup = {0: "POINT", 1: "LINESTRING", 3: "POLYGON", 4: "MULTIPOINT",
              5: "MULTILINESTRING", 6: "MULTIPOLYGON", 7: "GEOMETRYCOLLECTION"}
    if len(names) == 1 and int(names[0]) in lookup:
        return lookup[int(names[0])]
    return "GEOMETRY"


def _sql_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "BOOLEAN"
    if pd.api.types.is_integer_dtype(series):
        return "INTEGER"
    if pd.api.types.is_float_dtype(series):
        return "DOUBLE"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "DATETIME"
    return "TEXT"


def _quote(name: str) -> str:
    """Quote an SQLite identifier (names are checked before they get here)."""
    return '"' + name.replace('"', '""') + '"'


def _python_values(series: pd.Series) -> list[Any]:
    kind = _sql_type(series)
    if kind == "DATETIME":
        if series.dt.tz is None:
            series = series.dt.tz_localize("UTC")
        return _iso(series)
    if kind in ("INTEGER", "BOOLEAN"):
        return [None if pd.isna(v) else int(v) for v in series.astype(object)]
    if kind == "DOUBLE":
        vals = series.astype("float64").to_numpy()
        return np.where(np.isnan(vals), None, vals).tolist()
    obj = series.astype(object)
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA
            else (json.dumps(v, default=str) if isinstance(v, (dict, list)) else str(v))
            for v in obj]


class GeoPackageStore(Store):
    """Alerts, history, runs, rejects and layers in one GeoPackage file.

    Parameters
    ----------
    path : str or Path
        The ``.gpkg`` file; created when missing and ``create`` is true.
    create : bool, default True
        Create the file and the schema when they are missing.
    """

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        if not self.path.exists() and not create:
            msg = f"store {self.url} does not exist; run a check or `geosup db init` first"
            raise StoreConnectionError(msg)
        if self.path.is_dir():
            msg = f"store {self.url} is a directory, not a GeoPackage file"
            raise StoreConnectionError(msg)
        if not self.path.parent.exists():
            msg = f"cannot create store {self.url}: folder {self.path.parent} does not exist"
            raise StoreConnectionError(msg)
        try:  # SQLite reports a file it may not read as "unable to open database file"
            if self.path.exists():
                self.path.open("rb").close()
        except PermissionError:
            msg = f"cannot open store {self.url}: permission denied"
            raise StoreConnectionError(msg) from None
        try:
            self._conn = sqlite3.connect(self.path, isolation_level=None)
            register_geometry_functions(self._conn)
            self._conn.execute("PRAGMA foreign_keys = ON")
            app = self._conn.execute("PRAGMA application_id").fetchone()[0]
            tables = self._conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except sqlite3.DatabaseError as err:
            msg = f"cannot open store {self.url}: {err} (is it a GeoPackage file?)"
            raise StoreConnectionError(msg) from err
        if tables and app not in (_APPLICATION_ID, 0x47503130):
            msg = f"{self.url} is an SQLite file but not a GeoPackage; refusing to use it"
            raise StoreConnectionError(msg)
        if not create and not self._table_exists("runs"):
            msg = (f"{self.url} is a GeoPackage but not a geosup store (no alerts, runs or "
                   "rejects tables); run a check into it or `geosup db init --store "
                   f"{self.url}` first")
            raise StoreConnectionError(msg)
        if create:
            self.init()

    # -- lifecycle -------------------------------------------------------------------
    def init(self) -> None:
        """Create the GeoPackage tables when missing (idempotent)."""
        try:
            self._conn.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            self._conn.execute(f"PRAGMA user_version = {_USER_VERSION}")
            self._conn.execute("BEGIN IMMEDIATE")
            for statement in _CORE.split(";\n"):
                if statement.strip():
                    self._conn.execute(statement)
            for srs in (4326, -1, 0):
                self._ensure_srs(srs)
            self._register_attributes("alert_events", "runs", "rejects", "layers")
            self._ensure_alerts_table()
            self._conn.execute("COMMIT")
        except sqlite3.Error as err:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            msg = f"cannot initialise store {self.url}: {err}"
            raise StoreError(msg) from err

    def close(self) -> None:
        """Close the SQLite connection."""
        self._conn.close()

    # -- helpers ---------------------------------------------------------------------
    def _ensure_srs(self, srs: int | pyproj.CRS) -> int:
        cur = self._conn
        if isinstance(srs, int) and srs in (-1, 0):
            name = "Undefined cartesian SRS" if srs == -1 else "Undefined geographic SRS"
            cur.execute("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                        (name, srs, "NONE", srs, "undefined", None))
            return srs
        crs = pyproj.CRS.from_user_input(srs)
        auth = crs.to_authority()
        wkt = crs.to_wkt("WKT1_GDAL") or crs.to_wkt()
        if auth and auth[0] == "EPSG":
            srs_id = int(auth[1])
            cur.execute("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                        (crs.name, srs_id, "EPSG", srs_id, wkt, None))
            return srs_id
        row = cur.execute("SELECT srs_id FROM gpkg_spatial_ref_sys WHERE definition = ?",
                          (wkt,)).fetchone()
        if row:
            return int(row[0])
        top = cur.execute("SELECT max(srs_id) FROM gpkg_spatial_ref_sys").fetchone()[0] or 0
        srs_id = max(_CUSTOM_SRS, int(top) + 1)
        cur.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                    (crs.name or "custom", srs_id, "NONE", srs_id, wkt, None))
        return srs_id

    def _register_attributes(self, *tables: str) -> None:
        for t in tables:
            self._conn.execute(
                "INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier) "
                "VALUES (?, 'attributes', ?)", (t, t))

    def _register_features(self, table: str, geometry_column: str, geometry_type: str,
                           srs_id: int, bounds: np.ndarray | None) -> None:
        b = [None] * 4 if bounds is None or np.isnan(bounds).any() else [float(v) for v in bounds]
        self._conn.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = ?", (table,))
        self._conn.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (table,))
        self._conn.execute(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, min_x, min_y, max_x,"
            " max_y, srs_id) VALUES (?, 'features', ?, ?, ?, ?, ?, ?)", (table, table, *b, srs_id))
        self._conn.execute("INSERT INTO gpkg_geometry_columns VALUES (?, ?, ?, ?, 0, 0)",
                           (table, geometry_column, geometry_type, srs_id))

    def _ensure_alerts_table(self) -> None:
        if self._table_exists("alerts"):
            if not self._table_exists(_rtree_name("alerts", "geometry")):
                self._add_rtree("alerts", "geometry")  # a store written before the index
            return
        cols = ", ".join(
            f"{_quote(c)} {_ALERT_TYPES.get(c, 'TEXT')}" for c in ALERT_COLUMNS
            if c not in ("alert_id", "geometry"))
        self._conn.execute(
            "CREATE TABLE alerts (fid INTEGER PRIMARY KEY AUTOINCREMENT, "
            f"alert_id TEXT NOT NULL UNIQUE, {cols}, geometry GEOMETRY)")
        for c in ("rule", "status", "unit", "period", "domain"):
            self._conn.execute(f"CREATE INDEX alerts_{c} ON alerts({_quote(c)})")
        self._register_features("alerts", "geometry", "GEOMETRY", 4326, None)
        self._add_rtree("alerts", "geometry")

    def _add_rtree(self, table: str, column: str, *,
                   envelopes: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Add the GeoPackage R-tree index of ``table.column`` with its triggers.

        ``envelopes`` (fids, (n, 4) minx/maxx/miny/maxy) fills the index in one pass;
        without it the index is filled from the table.
        """
        rtree = _rtree_name(table, column)
        conn = self._conn
        conn.execute(f"CREATE VIRTUAL TABLE {_quote(rtree)} "
                     "USING rtree(id, minx, maxx, miny, maxy)")
        if envelopes is None:
            conn.execute(
                f"INSERT INTO {_quote(rtree)} SELECT fid, ST_MinX({_quote(column)}), "
                f"ST_MaxX({_quote(column)}), ST_MinY({_quote(column)}), ST_MaxY({_quote(column)})"
                f" FROM {_quote(table)} WHERE {_quote(column)} NOT NULL "
                f"AND NOT ST_IsEmpty({_quote(column)})")
        else:
            fids, env = envelopes
            conn.executemany(f"INSERT INTO {_quote(rtree)} VALUES (?,?,?,?,?)",
                             zip(fids.tolist(), *env.T.tolist(), strict=True))
        names = {k: v.replace('"', '""') for k, v in (("r", rtree), ("t", table), ("c", column))}
        for statement in _RTREE_TRIGGERS:
            conn.execute(statement.format(**names))
        conn.execute(
            "INSERT OR REPLACE INTO gpkg_extensions VALUES (?, ?, 'gpkg_rtree_index', "
            "'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')",
            (table, column))

    def _drop_rtree(self, table: str, column: str) -> None:
        """Drop the R-tree index of a feature table (its triggers go with the table)."""
        self._conn.execute(f"DROP TABLE IF EXISTS {_quote(_rtree_name(table, column))}")
        self._conn.execute("DELETE FROM gpkg_extensions WHERE table_name = ? AND "
                           "extension_name = 'gpkg_rtree_index'", (table,))

    def _table_exists(self, name: str) -> bool:
        return self._conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                  (name,)).fetchone() is not None

    def _frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        cur = self._conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return pd.DataFrame.from_records(cur.fetchall(), columns=names)

    # -- transactions ----------------------------------------------------------------
    def _begin(self) -> None:
        if self._conn.in_transaction:
            msg = "the store is already inside a run; runs cannot be nested"
            raise StoreError(msg)
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- writing ---------------------------------------------------------------------
    def _insert_run(self, row: dict[str, Any]) -> None:
        started, ended = _iso(pd.Series([row["started_at"], row["ended_at"]]))
        self._conn.execute(
            "INSERT INTO runs (run_id, command, params, inputs, started_at, ended_at, counts) "
            "VALUES (?,?,?,?,?,?,?)",
            (row["run_id"], row["command"], row["params"], row["inputs"], started, ended,
             row["counts"]))

    def _upsert_alerts(self, alerts: gpd.GeoDataFrame, *, run_id: str,
                       at: pd.Timestamp) -> UpsertCounts:
        if not len(alerts):
            return UpsertCounts(0, 0)
        cols = [c for c in ALERT_COLUMNS if c != "geometry"]
        values = {c: _python_values(alerts[c]) for c in cols}
        values["geometry"] = encode_geometries(alerts.geometry.to_numpy(), 4326)
        names = [*cols, "geometry"]
        conn = self._conn
        conn.execute("DROP TABLE IF EXISTS temp.incoming")
        conn.execute("CREATE TEMP TABLE incoming (" + ", ".join(_quote(c) for c in names) + ")")
        conn.executemany(
            f"INSERT INTO temp.incoming VALUES ({', '.join('?' * len(names))})",
            zip(*(values[c] for c in names), strict=True))
        updated = conn.execute(
            "SELECT count(*) FROM temp.incoming i JOIN main.alerts a USING (alert_id)"
        ).fetchone()[0]
        at_text = _iso(pd.Series([at]))[0]
        conn.execute(
            'INSERT INTO alert_events (alert_id, at, "by", from_status, to_status, note) '
            "SELECT alert_id, ?, 'geosup', NULL, 'open', ? FROM temp.incoming "
            "WHERE alert_id NOT IN (SELECT alert_id FROM main.alerts)",
            (at_text, f"raised by run {run_id}"))
        keep = set(MEASURED_COLUMNS) | {"geometry", "last_seen", "run_id"}
        sets = ", ".join(f"{_quote(c)} = excluded.{_quote(c)}" for c in names if c in keep)
        collist = ", ".join(_quote(c) for c in names)
        conn.execute(
            f"INSERT INTO main.alerts ({collist}) SELECT {collist} FROM temp.incoming WHERE true "
            f"ON CONFLICT (alert_id) DO UPDATE SET {sets}")
        conn.execute("DROP TABLE temp.incoming")
        self._register_features("alerts", "geometry", "GEOMETRY", 4326,
                                self._grown_bounds(alerts.geometry.to_numpy()))
        return UpsertCounts(inserted=len(alerts) - int(updated), updated=int(updated))

    def _grown_bounds(self, geoms: np.ndarray) -> np.ndarray | None:
        """The alerts' extent grown by new geometries (alerts are never deleted)."""
        row = self._conn.execute("SELECT min_x, min_y, max_x, max_y FROM gpkg_contents "
                                 "WHERE table_name = 'alerts'").fetchone()
        new = shapely.total_bounds(geoms)
        if row is None or row[0] is None:
            return None if np.isnan(new).any() else new
        old = np.asarray(row, dtype=float)
        if np.isnan(new).any():
            return old
        return np.array([min(old[0], new[0]), min(old[1], new[1]),
                         max(old[2], new[2]), max(old[3], new[3])])

    def _insert_rejects(self, rejects: pd.DataFrame) -> None:
        rows = rejects["row"].astype(object).where(rejects["row"].notna(), None)
        self._conn.executemany(
            'INSERT INTO rejects (run_id, source, "row", "key", reason, raw) VALUES (?,?,?,?,?,?)',
            zip(rejects["run_id"], rejects["source"].astype(object),
                [None if v is None else int(v) for v in rows],
                rejects["key"].astype(object), rejects["reason"].astype(object),
                rejects["raw"].astype(object), strict=True))

    def _write_layer(self, name: str, frame: pd.DataFrame, *, run_id: str,
                     id_column: str | None) -> None:
        check_layer_name(name)
        conn = self._conn
        is_geo = isinstance(frame, gpd.GeoDataFrame) and frame.geometry.name in frame.columns
        geom_col = frame.geometry.name if is_geo else None
        attrs = [c for c in frame.columns if c != geom_col]
        bad = [c for c in attrs if not isinstance(c, str) or c.lower() == "fid"]
        if bad:
            msg = f"layer {name!r}: column names must be text and not 'fid': {bad}"
            raise ValidationError(msg)
        if id_column is not None and id_column not in frame.columns:
            msg = f"layer {name!r} has no id column {id_column!r}"
            raise ValidationError(msg)
        if self._table_exists(name):
            for (old_geom,) in conn.execute("SELECT column_name FROM gpkg_geometry_columns "
                                            "WHERE table_name = ?", (name,)).fetchall():
                self._drop_rtree(name, old_geom)
            conn.execute("DELETE FROM gpkg_geometry_columns WHERE table_name = ?", (name,))
            conn.execute("DELETE FROM gpkg_contents WHERE table_name = ?", (name,))
            conn.execute(f"DROP TABLE {_quote(name)}")
        defs = [f"{_quote(c)} {_sql_type(frame[c])}" for c in attrs]
        if geom_col:
            defs.append(f"{_quote(geom_col)} GEOMETRY")
        conn.execute(f"CREATE TABLE {_quote(name)} (fid INTEGER PRIMARY KEY AUTOINCREMENT"
                     + "".join(", " + d for d in defs) + ")")
        fids = np.arange(1, len(frame) + 1)
        columns = {"fid": fids.tolist()} | {c: _python_values(frame[c]) for c in attrs}
        crs_text = None
        geometry_type = None
        if geom_col:
            srs_id = self._ensure_srs(frame.crs)
            geoms = frame.geometry.to_numpy()
            columns[geom_col] = encode_geometries(geoms, srs_id)
            geometry_type = _geometry_type(geoms)
            bounds = frame.geometry.total_bounds if len(frame) else None
            self._register_features(name, geom_col, geometry_type, srs_id, bounds)
            crs_text = frame.crs.to_string()
        else:
            self._register_attributes(name)
        names = list(columns)
        if len(frame):
            conn.executemany(
                f"INSERT INTO {_quote(name)} ({', '.join(_quote(c) for c in names)}) "
                f"VALUES ({', '.join('?' * len(names))})",
                zip(*(columns[c] for c in names), strict=True))
        if geom_col:
            geoms = frame.geometry.to_numpy()
            drawn = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
            envelopes = shapely.bounds(geoms[drawn])[:, [0, 2, 1, 3]]
            self._add_rtree(name, geom_col, envelopes=(fids[drawn], envelopes))
        conn.execute("DELETE FROM layers WHERE name = ?", (name,))
        conn.execute(
            'INSERT INTO layers (name, table_name, "rows", crs, geometry_type, id_column, run_id,'
            " written_at) VALUES (?,?,?,?,?,?,?,?)",
            (name, name, len(frame), crs_text, geometry_type, id_column, run_id,
             _iso(pd.Series([pd.Timestamp.now(tz="UTC")]))[0]))

    # -- reading ---------------------------------------------------------------------
    def _select_alerts(self, filters: Mapping[str, list[str]]) -> pd.DataFrame:
        where, params = [], []
        for key, values in filters.items():
            where.append(f"{_quote(key)} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        cols = ", ".join(_quote(c) for c in ALERT_COLUMNS)
        sql = f"SELECT {cols} FROM alerts" + (" WHERE " + " AND ".join(where) if where else "")
        frame = self._frame(sql + " ORDER BY fid", params)
        geometry = decode_geometries(frame["geometry"]) if len(frame) else []
        frame = frame.drop(columns=["geometry"])
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, crs=4326,
                                                              index=frame.index))

    def _current_status(self, alert_id: str) -> str | None:
        row = self._conn.execute("SELECT status FROM alerts WHERE alert_id = ?",
                                 (alert_id,)).fetchone()
        return None if row is None else str(row[0])

    def _apply_review(self, event: Mapping[str, Any]) -> None:
        at = _iso(pd.Series([event["at"]]))[0]
        self._conn.execute(
            "UPDATE alerts SET status = ?, status_by = ?, status_at = ?, status_note = ? "
            "WHERE alert_id = ?",
            (event["to_status"], event["by"], at, event["note"], event["alert_id"]))
        self._conn.execute(
            'INSERT INTO alert_events (alert_id, at, "by", from_status, to_status, note) '
            "VALUES (?,?,?,?,?,?)",
            (event["alert_id"], at, event["by"], event["from_status"], event["to_status"],
             event["note"]))

    def events(self, alert_id: str | None = None) -> pd.DataFrame:
        """The review history, oldest first."""
        sql = 'SELECT event_id, alert_id, at, "by", from_status, to_status, note FROM alert_events'
        params: tuple[Any, ...] = ()
        if alert_id is not None:
            sql += " WHERE alert_id = ?"
            params = (alert_id,)
        frame = self._frame(sql + " ORDER BY event_id", params)
        frame["at"] = pd.to_datetime(frame["at"], utc=True, format="ISO8601")
        return frame

    def runs(self) -> pd.DataFrame:
        """Every completed run, oldest first."""
        frame = self._frame("SELECT run_id, command, params, inputs, started_at, ended_at, "
                            "counts FROM runs ORDER BY fid")
        for c in ("started_at", "ended_at"):
            frame[c] = pd.to_datetime(frame[c], utc=True, format="ISO8601")
        return frame

    def rejects(self, *, run_id: str | None = None) -> pd.DataFrame:
        """The rejects ledger."""
        sql = 'SELECT run_id, source, "row", "key", reason, raw FROM rejects'
        params: tuple[Any, ...] = ()
        if run_id is not None:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        frame = self._frame(sql + " ORDER BY fid", params)
        frame["row"] = frame["row"].astype("Int64")
        return frame

    def layers(self) -> pd.DataFrame:
        """The registry of stored input layers."""
        frame = self._frame('SELECT name, "rows", crs, geometry_type, id_column, run_id, '
                            "written_at FROM layers ORDER BY name")
        frame["written_at"] = pd.to_datetime(frame["written_at"], utc=True, format="ISO8601")
        return frame

    def read_layer(self, name: str) -> gpd.GeoDataFrame | pd.DataFrame:
        """Read a stored input layer back with its CRS and column types."""
        check_layer_name(name)
        reg = self._conn.execute("SELECT name FROM layers WHERE name = ?", (name,)).fetchone()
        if reg is None:
            msg = f"no layer named {name!r} in {self.url}"
            raise ValidationError(msg)
        info = self._conn.execute(f"PRAGMA table_info({_quote(name)})").fetchall()
        types = {r[1]: str(r[2]).upper() for r in info if r[1] != "fid"}
        geo = self._conn.execute(
            "SELECT g.column_name, s.organization, s.organization_coordsys_id, s.definition "
            "FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s USING (srs_id) "
            "WHERE g.table_name = ?", (name,)).fetchone()
        frame = self._frame(
            f"SELECT {', '.join(_quote(c) for c in types)} FROM {_quote(name)} ORDER BY fid")
        for c, t in types.items():
            if geo and c == geo[0]:
                continue
            if t == "DATETIME":
                frame[c] = pd.to_datetime(frame[c], utc=True, format="ISO8601")
            elif t == "BOOLEAN":
                frame[c] = frame[c].astype("boolean")
            elif t == "INTEGER":
                frame[c] = frame[c].astype("Int64") if frame[c].isna().any() else \
                    frame[c].astype("int64")
            elif t == "DOUBLE":
                frame[c] = frame[c].astype("float64")
        if not geo:
            return frame
        col, org, code, wkt = geo
        crs = pyproj.CRS.from_epsg(int(code)) if org == "EPSG" else pyproj.CRS.from_wkt(wkt)
        geoms = decode_geometries(frame[col]) if len(frame) else []
        frame[col] = gpd.GeoSeries(geoms, index=frame.index, crs=crs)
        return gpd.GeoDataFrame(frame, geometry=col, crs=crs)
