"""The PostGIS farmland overlay engine: the in-process reconciliation as set-based SQL.

Two entry points share one overlay in SQL:

- :func:`overlay_postgis` uploads a :class:`~geosup.farmland.prepare.Prepared` bundle
  (``COPY`` of hex EWKB into working tables), then runs the overlay;
- :func:`overlay_postgis_tables` works on inputs that already live in PostGIS: the
  geometry hygiene of :func:`~geosup.farmland.prepare.prepare` runs as SQL
  (``ST_Transform``, ``ST_MakeValid``, ``ST_CollectionExtract``, ``ST_ReducePrecision``,
  slivers, duplicates by window functions) with the same rejects and repairs, then the
  same overlay.

The overlay gives the same tables as :func:`geosup.farmland.engine.overlay_inprocess`
(see that module for which geometry a declaration stands for): GiST-indexed
``ST_Intersects`` joins, ``ST_Intersection`` areas, ``ST_Union`` per declaration for the
land covered by reference parcels and per declaration and class for land use, land-use
polygons cut with ``ST_Subdivide`` first (so one huge forest polygon is not intersected
whole with every declaration near it; the pieces are unioned again per declaration, so
nothing is counted twice), pairs only within a year. Areas and perimeters are measured by
PostGIS (``ST_Area``, ``ST_Perimeter``).

The engine never opens a connection: it is handed one (autocommit off) and works inside
the caller's transaction, in a savepoint; working tables are ``TEMP … ON COMMIT DROP``
and are dropped again when the overlay is read, so a later ``COMMIT`` leaves the
database as it was and a failure (or the caller's ``ROLLBACK``) leaves nothing either.
Every value is a query parameter or goes through ``COPY``; every name is quoted with
:mod:`psycopg.sql`.

Examples
--------
>>> import psycopg                                              # doctest: +SKIP
>>> from geosup.farmland.prepare import prepare
>>> prepared = prepare(declarations, parcels, area_unit="mu")  # doctest: +SKIP
>>> with psycopg.connect("postgresql://inspector@db.example/audit") as conn:  # doctest: +SKIP
...     overlay = overlay_postgis(conn, prepared)
...     conn.rollback()
"""

from __future__ import annotations

import csv
import io as _stdio
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyproj
import shapely
from psycopg import sql

from geosup.crs import AREA_UNITS, normalize_area_unit
from geosup.errors import (
    ConfigError,
    CRSError,
    DataSourceError,
    SchemaError,
    StoreConnectionError,
    StoreError,
    ValidationError,
)
from geosup.farmland.prepare import Prepared
from geosup.farmland.tables import TABLE_COLUMNS, Overlay

__all__ = ["SUBDIVIDE_VERTICES", "overlay_postgis", "overlay_postgis_tables"]

logger = logging.getLogger(__name__)

#: Vertices per piece when land-use polygons are cut with ST_Subdivide.
SUBDIVIDE_VERTICES = 256

_COPY_CHUNK = 50_000  # rows per COPY block (bounded memory for the CSV text)
_FALLBACK_GRID_M = 0.01
_MAX_IDENTIFIER = 63
_LEDGER_COLUMNS = ("source", "row", "key", "reason", "raw")
_REPAIR_COLUMNS = ("source", "row", "key", "reason")
_WHITESPACE = " \t\n\r\f\v"
# A finite decimal number as text (what pandas.to_numeric reads; non-finite is unusable).
_NUMBER_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
# Placeholders of numbers in reasons, formatted in Python like prepare() does ("{:g}").
_NUM_A, _NUM_B = "\x01a\x01", "\x01b\x01"
_NUMERIC_TYPES = frozenset({"float4", "float8", "numeric"})
_INTEGER_TYPES = frozenset({"int2", "int4", "int8"})

# Canonical columns read from input tables (beyond geometry); required ones first.
_DECLARATION_INPUT = ("declaration_id", "applicant_id", "year", "declared_area", "parcel_id",
                      "village", "crop", "subsidy_amount")
_DECLARATION_REQUIRED = ("declaration_id", "applicant_id", "year", "declared_area")
_PARCEL_INPUT = ("parcel_id", "eligible_area", "land_use")
_PARCEL_REQUIRED = ("parcel_id", "eligible_area")
_LAND_USE_INPUT = ("land_use",)


# ---------------------------------------------------------------------------------------------
# Connection, transaction, errors
# ---------------------------------------------------------------------------------------------


def _one_line(err: BaseException) -> str:
    """A psycopg error as one line (primary message and detail, whitespace squeezed)."""
    diag = getattr(err, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or str(err)
    detail = getattr(diag, "message_detail", None) if diag is not None else None
    if primary and detail:
        text = f"{primary} ({detail})"
    return " ".join(text.split()) or type(err).__name__


def _where(conn: psycopg.Connection) -> str:
    """Host, port and database of a connection, for messages (never the password)."""
    try:
        info = conn.info
        return f"host {info.host} port {info.port} database {info.dbname}"
    except psycopg.Error:  # pragma: no cover - a closed connection
        return "the database"


@contextmanager
def _unit_of_work(conn: psycopg.Connection, what: str) -> Iterator[psycopg.Cursor]:
    """A cursor inside a savepoint of the caller's open transaction.

    The caller's transaction is opened if it is not (psycopg opens one at the first
    statement of a connection without autocommit); nothing is committed here. On any
    error the savepoint is rolled back (the working tables are gone) and a geosup error
    is raised; the caller's transaction stays usable.
    """
    if not isinstance(conn, psycopg.Connection):
        msg = f"{what} needs a psycopg.Connection, got {type(conn).__name__}"
        raise ValidationError(msg)
    if conn.closed or conn.broken:
        msg = f"{what}: the database connection is closed"
        raise StoreConnectionError(msg)
    if conn.autocommit:
        msg = (f"{what} runs in the caller's transaction; hand it a connection with "
               "autocommit off (the caller commits or rolls back)")
        raise ValidationError(msg)
    status = conn.info.transaction_status
    if status == psycopg.pq.TransactionStatus.INERROR:
        msg = (f"{what}: the connection's transaction has already failed; roll it back "
               "before running the overlay")
        raise StoreError(msg)
    if status == psycopg.pq.TransactionStatus.ACTIVE:  # pragma: no cover - another query runs
        msg = f"{what}: the connection is busy with another query"
        raise StoreError(msg)
    try:
        if status == psycopg.pq.TransactionStatus.IDLE:
            conn.execute("SELECT 1")  # opens the caller's transaction; we never commit it
        with conn.transaction(), conn.cursor() as cur:
            yield cur
    except psycopg.Error as err:
        if conn.closed or conn.broken:
            msg = f"lost the connection to {_where(conn)} during {what}: {_one_line(err)}"
            raise StoreConnectionError(msg) from None
        msg = f"{what} failed in {_where(conn)}: {_one_line(err)}"
        raise StoreError(msg) from err


def _check_postgis(cur: psycopg.Cursor, *, need_reduce_precision: bool) -> None:
    cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
    row = cur.fetchone()
    if row is None:
        msg = ("PostGIS is not enabled in this database; ask its owner to run "
               "CREATE EXTENSION postgis")
        raise DataSourceError(msg)
    if need_reduce_precision:
        version = tuple(int(p) for p in str(row[0]).split(".")[:2] if p.isdigit())
        if version < (3, 1):
            msg = (f"PostGIS {row[0]} lacks ST_ReducePrecision (PostGIS >= 3.1 with "
                   "GEOS >= 3.9); upgrade PostGIS or use the in-process engine")
            raise DataSourceError(msg)


# ---------------------------------------------------------------------------------------------
# Working tables
# ---------------------------------------------------------------------------------------------


@dataclass
class _Workspace:
    """Names of the working tables of one run (temporary, or in ``schema``)."""

    cur: psycopg.Cursor
    schema: str | None
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    made: list[str] = field(default_factory=list)

    def t(self, name: str) -> sql.Identifier:
        full = f"geosup_fl_{self.tag}_{name}"
        return sql.Identifier(self.schema, full) if self.schema else sql.Identifier(full)

    def create(self, name: str, columns: str) -> sql.Identifier:
        """Create a working table with ``columns`` (static DDL text)."""
        ident = self.t(name)
        if self.schema:
            stmt = sql.SQL("CREATE UNLOGGED TABLE {} (" + columns + ")").format(ident)
        else:
            stmt = sql.SQL("CREATE TEMP TABLE {} (" + columns + ") ON COMMIT DROP").format(ident)
        self.cur.execute(stmt)
        self.made.append(name)
        return ident

    def index(self, name: str, column: str, *, gist: bool = False) -> None:
        method = sql.SQL("USING gist " if gist else "")
        self.cur.execute(sql.SQL("CREATE INDEX ON {} {}({})").format(
            self.t(name), method, sql.Identifier(column)))

    def analyze(self, *names: str) -> None:
        for name in names:
            self.cur.execute(sql.SQL("ANALYZE {}").format(self.t(name)))

    def drop(self) -> None:
        for name in reversed(self.made):
            self.cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self.t(name)))
        self.made.clear()


_DECL_DDL = ("did integer PRIMARY KEY, declaration_id text, applicant_id text, year bigint, "
             "village text, parcel_id text, crop text, subsidy_amount double precision, "
             "declared_m2 double precision, is_previous boolean, geom geometry")
_PARCEL_DDL = ("pid integer PRIMARY KEY, parcel_id text, eligible_m2 double precision, "
               "land_use text, geom geometry")
_LAND_USE_DDL = "lid integer PRIMARY KEY, land_use text, geom geometry"


def _index_inputs(ws: _Workspace, *, land_use: bool) -> None:
    ws.index("decl", "geom", gist=True)
    ws.index("parcel", "geom", gist=True)
    ws.index("parcel", "parcel_id")
    names = ["decl", "parcel"]
    if land_use:
        ws.index("lu", "geom", gist=True)
        names.append("lu")
    ws.analyze(*names)


def _copy_frame(cur: psycopg.Cursor, table: sql.Identifier, frame: pd.DataFrame) -> None:
    """COPY a frame of text, numbers, booleans and hex EWKB (CSV; empty = NULL)."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, columns)
    with cur.copy(statement) as copy:
        for start in range(0, len(frame), _COPY_CHUNK):
            block = frame.iloc[start:start + _COPY_CHUNK]
            buffer = _stdio.StringIO()
            block.to_csv(buffer, header=False, index=False, quoting=csv.QUOTE_MINIMAL,
                         lineterminator="\n")
            copy.write(buffer.getvalue().encode("utf-8"))


def _srid_of(cur: psycopg.Cursor, crs: pyproj.CRS) -> int:
    """The EPSG code of ``crs`` when spatial_ref_sys has it, else 0 (all layers share it)."""
    epsg = crs.to_epsg()
    if epsg is None:
        return 0
    cur.execute("SELECT 1 FROM spatial_ref_sys WHERE srid = %s", (int(epsg),))
    return int(epsg) if cur.fetchone() is not None else 0


def _ewkb(geoms: np.ndarray, srid: int) -> np.ndarray:
    """Hex EWKB with ``srid``; missing and empty geometries as None."""
    arr = np.asarray(geoms, dtype=object)
    out = np.full(len(arr), None, dtype=object)
    present = ~shapely.is_missing(arr)
    present[present] = ~shapely.is_empty(arr[present])
    if present.any():
        with_srid = shapely.set_srid(arr[present], srid)
        out[present] = shapely.to_wkb(with_srid, hex=True, include_srid=True)
    return out


def _upload_prepared(ws: _Workspace, prepared: Prepared, srid: int) -> None:
    decl = prepared.declarations
    frame = pd.DataFrame({
        "did": np.arange(len(decl), dtype=np.int64),
        "declaration_id": decl["declaration_id"].astype(object).to_numpy(),
        "applicant_id": decl["applicant_id"].astype(object).to_numpy(),
        "year": decl["year"].to_numpy(dtype=np.int64),
        "village": decl["village"].astype(object).to_numpy(),
        "parcel_id": decl["parcel_id"].astype(object).to_numpy(),
        "crop": decl["crop"].astype(object).to_numpy(),
        "subsidy_amount": decl["subsidy_amount"].to_numpy(dtype=np.float64),
        "declared_m2": decl["declared_m2"].to_numpy(dtype=np.float64),
        "is_previous": decl["is_previous"].to_numpy(dtype=bool),
        "geom": _ewkb(np.asarray(decl.geometry.array, dtype=object), srid),
    })
    _copy_frame(ws.cur, ws.create("decl", _DECL_DDL), frame)
    parcels = prepared.parcels
    frame = pd.DataFrame({
        "pid": np.arange(len(parcels), dtype=np.int64),
        "parcel_id": parcels["parcel_id"].astype(object).to_numpy(),
        "eligible_m2": parcels["eligible_m2"].to_numpy(dtype=np.float64),
        "land_use": parcels["land_use"].astype(object).to_numpy(),
        "geom": _ewkb(np.asarray(parcels.geometry.array, dtype=object), srid),
    })
    _copy_frame(ws.cur, ws.create("parcel", _PARCEL_DDL), frame)
    lu = prepared.land_use
    if lu is not None:
        frame = pd.DataFrame({
            "lid": np.arange(len(lu), dtype=np.int64),
            "land_use": lu["land_use"].astype(object).to_numpy(),
            "geom": _ewkb(np.asarray(lu.geometry.array, dtype=object), srid),
        })
        _copy_frame(ws.cur, ws.create("lu", _LAND_USE_DDL), frame)
    _index_inputs(ws, land_use=lu is not None)


# ---------------------------------------------------------------------------------------------
# The overlay (shared by both entry points)
# ---------------------------------------------------------------------------------------------


class _Progress:
    """Spreads ``total`` declarations over the overlay's steps for a progress callback."""

    def __init__(self, callback: Callable[[int], None] | None, total: int, steps: int) -> None:
        self.callback = callback
        self.marks = np.linspace(0, total, steps + 1).round().astype(np.int64)
        self.step = 0

    def __call__(self) -> None:
        if self.step >= len(self.marks) - 1:
            return
        done = int(self.marks[self.step + 1] - self.marks[self.step])
        self.step += 1
        if self.callback is not None and done:
            self.callback(done)


def _columns(cur: psycopg.Cursor) -> dict[str, list[Any]]:
    """All rows of the last query, column by column."""
    names = [d.name for d in cur.description or ()]
    rows = cur.fetchall()
    if not rows:
        return {n: [] for n in names}
    return dict(zip(names, (list(c) for c in zip(*rows, strict=True)), strict=True))


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64) \
        if len(values) else np.empty(0, dtype=np.float64)


def _ints(values: Sequence[Any]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64) if len(values) else np.empty(0, dtype=np.int64)


def _wkb(values: Sequence[Any]) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = [None if v is None else bytes(v) for v in values]
    return shapely.from_wkb(arr) if len(arr) else arr


@dataclass
class _Geos:
    """Runs a statement that intersects geometries; on a GEOS error it retries once on a
    precision grid (``ST_Intersection(a, b, grid)``), as the in-process engine does."""

    conn: psycopg.Connection
    cur: psycopg.Cursor
    grid: float
    retries: int = 0

    def run(self, build: Callable[[bool], sql.Composable], params: Mapping[str, Any]) -> None:
        try:
            with self.conn.transaction():
                self.cur.execute(build(False), {**params, "grid": self.grid})
            return
        except psycopg.errors.InternalError_ as err:
            if "GEOS" not in str(err) and "Topology" not in str(err):
                raise
            logger.warning("GEOS error in the PostGIS overlay (%s); retrying on a %g m grid",
                           _one_line(err), self.grid)
        self.retries += 1
        self.cur.execute(build(True), {**params, "grid": self.grid})


def _isect(a: str, b: str, grid: bool) -> sql.Composable:
    if grid:
        return sql.SQL("ST_Intersection(" + a + ", " + b + ", %(grid)s)")
    return sql.SQL("ST_Intersection(" + a + ", " + b + ")")


def _union(expr: str, grid: bool) -> sql.Composable:
    return sql.SQL("ST_Union(" + expr + (", %(grid)s)" if grid else ")"))


def _overlay_sql(
    ws: _Workspace,
    conn: psycopg.Connection,
    *,
    has_land_use: bool,
    min_overlap_m2: float,
    grid: float,
    progress: _Progress,
) -> dict[str, dict[str, list[Any]]]:
    """Run the overlay on the filled ``decl``, ``parcel`` (and ``lu``) working tables.

    Returns the raw columns of every result, keyed by table.
    """
    cur = ws.cur
    geos = _Geos(conn, cur, grid)
    p = {"mins": float(min_overlap_m2)}
    decl, parcel = ws.t("decl"), ws.t("parcel")

    # What each declaration stands for: its drawing, else its declared parcel.
    eff = ws.create("eff", "did integer PRIMARY KEY, year bigint, applicant_id text, "
                           "drawn boolean, geom geometry, eff_m2 double precision")
    cur.execute(sql.SQL(
        "INSERT INTO {eff} (did, year, applicant_id, drawn, geom, eff_m2) "
        "SELECT d.did, d.year, d.applicant_id, d.geom IS NOT NULL, "
        "       coalesce(d.geom, p.geom), ST_Area(coalesce(d.geom, p.geom)) "
        "FROM {decl} d LEFT JOIN LATERAL ("
        "  SELECT q.geom FROM {parcel} q WHERE d.geom IS NULL AND q.parcel_id = d.parcel_id "
        "  ORDER BY q.pid LIMIT 1) p ON true "
        "WHERE d.geom IS NOT NULL OR p.geom IS NOT NULL").format(
            eff=eff, decl=decl, parcel=parcel))
    ws.index("eff", "geom", gist=True)
    ws.analyze("eff")

    # Drawn declarations ∩ reference parcels (links; covered land for 'outside').
    piece = ws.create("piece", "did integer, pid integer, geom geometry, "
                               "area_m2 double precision")
    geos.run(lambda g: sql.SQL(
        "INSERT INTO {piece} (did, pid, geom, area_m2) "
        "SELECT e.did, q.pid, x.geom, ST_Area(x.geom) "
        "FROM {eff} e JOIN {parcel} q ON ST_Intersects(e.geom, q.geom) "
        "CROSS JOIN LATERAL (SELECT {isect} AS geom) x WHERE e.drawn").format(
            piece=piece, eff=eff, parcel=parcel, isect=_isect("e.geom", "q.geom", g)), p)
    out: dict[str, dict[str, list[Any]]] = {}
    cur.execute(sql.SQL(
        "SELECT did, pid, area_m2 FROM {piece} WHERE area_m2 > %(mins)s "
        "UNION ALL "
        "SELECT e.did, q.pid, NULL FROM {eff} e JOIN {decl} d USING (did) "
        "JOIN LATERAL (SELECT pid FROM {parcel} r WHERE r.parcel_id = d.parcel_id "
        "  ORDER BY r.pid LIMIT 1) q ON true WHERE NOT e.drawn").format(
            piece=piece, eff=eff, decl=decl, parcel=parcel), p)
    out["links"] = _columns(cur)
    covered = ws.create("covered", "did integer PRIMARY KEY, covered_m2 double precision")
    geos.run(lambda g: sql.SQL(
        "INSERT INTO {covered} (did, covered_m2) "
        "SELECT did, CASE WHEN count(*) = 1 THEN max(area_m2) ELSE ST_Area({union}) END "
        "FROM {piece} GROUP BY did").format(
            covered=covered, piece=piece, union=_union("geom", g)), p)
    cur.execute(sql.SQL(
        "SELECT e.did, e.eff_m2 AS drawn_m2, coalesce(c.covered_m2, 0) AS covered_m2 "
        "FROM {eff} e LEFT JOIN {covered} c USING (did) WHERE e.drawn ORDER BY e.did").format(
            eff=eff, covered=covered))
    out["outside"] = _columns(cur)
    progress()

    # Declarations against declarations: same-year pairs and previous-year matches.
    cross = ws.create("cross", "a integer, b integer, same_year boolean, "
                               "overlap_m2 double precision, geom geometry")
    geos.run(lambda g: sql.SQL(
        "INSERT INTO {cross} (a, b, same_year, overlap_m2, geom) "
        "SELECT a.did, b.did, a.year = b.year, ST_Area(x.geom), "
        "       CASE WHEN a.year = b.year THEN x.geom END "
        "FROM {eff} a JOIN {eff} b ON a.did < b.did AND ST_Intersects(a.geom, b.geom) "
        "CROSS JOIN LATERAL (SELECT {isect} AS geom) x "
        "WHERE a.year = b.year OR (abs(a.year - b.year) = 1 "
        "  AND a.applicant_id = b.applicant_id AND a.drawn AND b.drawn)").format(
            cross=cross, eff=eff, isect=_isect("a.geom", "b.geom", g)), p)
    cur.execute(sql.SQL(
        "SELECT c.a, c.b, c.overlap_m2, ea.eff_m2 AS a_m2, eb.eff_m2 AS b_m2, "
        "       ST_AsBinary(ST_CollectionExtract(c.geom, 3)) AS geom "
        "FROM {cross} c JOIN {eff} ea ON ea.did = c.a JOIN {eff} eb ON eb.did = c.b "
        "WHERE c.same_year AND c.overlap_m2 > %(mins)s").format(cross=cross, eff=eff), p)
    out["pairs"] = _columns(cur)
    progress()

    # The same applicant's declaration of the year before.
    cur.execute(sql.SQL(
        "WITH later AS ("
        "  SELECT CASE WHEN ea.year > eb.year THEN c.a ELSE c.b END AS cur, "
        "         CASE WHEN ea.year > eb.year THEN c.b ELSE c.a END AS prev, c.overlap_m2 "
        "  FROM {cross} c JOIN {eff} ea ON ea.did = c.a JOIN {eff} eb ON eb.did = c.b "
        "  WHERE NOT c.same_year AND c.overlap_m2 > %(mins)s), "
        "geo AS ("
        "  SELECT DISTINCT ON (l.cur) l.cur, l.prev, l.overlap_m2 "
        "  FROM later l JOIN {decl} d ON d.did = l.prev "
        "  ORDER BY l.cur, l.overlap_m2 DESC, d.declaration_id COLLATE \"C\"), "
        "by_id AS ("
        "  SELECT DISTINCT ON (c.did) c.did AS cur, q.did AS prev, "
        "         NULL::double precision AS overlap_m2 "
        "  FROM {decl} c JOIN {decl} q ON q.year = c.year - 1 "
        "    AND q.applicant_id = c.applicant_id AND q.parcel_id = c.parcel_id "
        "  WHERE c.geom IS NULL "
        "  ORDER BY c.did, q.declaration_id COLLATE \"C\") "
        "SELECT x.cur, x.prev, x.overlap_m2, "
        "       CASE WHEN x.overlap_m2 IS NOT NULL THEN ST_Area(dc.geom) END AS cur_m2, "
        "       CASE WHEN x.overlap_m2 IS NOT NULL THEN ST_Area(dp.geom) END AS prev_m2 "
        "FROM (SELECT * FROM geo UNION ALL SELECT * FROM by_id) x "
        "JOIN {decl} dc ON dc.did = x.cur JOIN {decl} dp ON dp.did = x.prev").format(
            cross=cross, eff=eff, decl=decl), p)
    out["changes"] = _columns(cur)
    progress()

    # Land use: subdivided polygons, pieces unioned per declaration and class.
    if has_land_use:
        lu, parts = ws.t("lu"), ws.create("lu_part", "land_use text, geom geometry")
        cur.execute(sql.SQL(
            "INSERT INTO {parts} (land_use, geom) "
            "SELECT land_use, ST_Subdivide(geom, %(vertices)s) FROM {lu}").format(
                parts=parts, lu=lu), {"vertices": SUBDIVIDE_VERTICES})
        ws.index("lu_part", "geom", gist=True)
        ws.analyze("lu_part")
        lu_piece = ws.create("lu_piece", "did integer, land_use text, geom geometry")
        geos.run(lambda g: sql.SQL(
            "INSERT INTO {lu_piece} (did, land_use, geom) "
            "SELECT e.did, s.land_use, x.geom "
            "FROM {eff} e JOIN {parts} s ON ST_Intersects(e.geom, s.geom) "
            "CROSS JOIN LATERAL (SELECT {isect} AS geom) x "
            "WHERE ST_Area(x.geom) > 0").format(
                lu_piece=lu_piece, eff=eff, parts=parts, isect=_isect("e.geom", "s.geom", g)),
            p)
        lu_area = ws.create("lu_area", "did integer, land_use text, area_m2 double precision")
        geos.run(lambda g: sql.SQL(
            "INSERT INTO {lu_area} (did, land_use, area_m2) "
            "SELECT did, land_use, ST_Area({union}) FROM {lu_piece} "
            "GROUP BY did, land_use").format(
                lu_area=lu_area, lu_piece=lu_piece, union=_union("geom", g)), p)
        cur.execute(sql.SQL(
            "SELECT did, land_use, area_m2 FROM {lu_area} WHERE area_m2 > %(mins)s").format(
                lu_area=lu_area), p)
        out["land_use"] = _columns(cur)
    else:
        out["land_use"] = {"did": [], "land_use": [], "area_m2": []}
    progress()

    # Declarations and parcels, measured by PostGIS.
    cur.execute(sql.SQL(
        "SELECT d.did, d.declaration_id, d.applicant_id, d.year, d.village, d.parcel_id, "
        "       d.crop, d.subsidy_amount, d.declared_m2, d.is_previous, "
        "       ST_Area(d.geom) AS drawn_m2, ST_Perimeter(e.geom) AS perimeter_m, "
        "       ST_AsBinary(d.geom) AS geom "
        "FROM {decl} d LEFT JOIN {eff} e USING (did) ORDER BY d.did").format(
            decl=decl, eff=eff))
    out["declarations"] = _columns(cur)
    cur.execute(sql.SQL(
        "SELECT pid, parcel_id, eligible_m2, ST_Area(geom) AS area_m2, "
        "       ST_Perimeter(geom) AS perimeter_m, land_use, ST_AsBinary(geom) AS geom "
        "FROM {parcel} ORDER BY pid").format(parcel=parcel))
    out["parcels"] = _columns(cur)
    out["_notes"] = {"geos_retries": [geos.retries]}
    progress()
    return out


def _strings(values: Sequence[Any], dtype: Any = None) -> pd.Series:
    series = pd.Series(np.asarray(list(values), dtype=object), dtype=object)
    return series.astype(dtype if dtype is not None else pd.StringDtype())


def _assemble(
    raw: dict[str, dict[str, list[Any]]],
    *,
    crs: pyproj.CRS,
    notes: dict[str, object],
    dtypes: Mapping[str, Any] | None = None,
) -> Overlay:
    """Build the Overlay tables from the raw SQL results (same layout as the in-process
    engine: string ids, int64 years, float64 areas, shapely geometries)."""
    dtypes = dtypes or {}
    d = raw["declarations"]
    n = len(d["did"])
    ids = np.asarray(d["declaration_id"], dtype=object)
    applicants = np.asarray(d["applicant_id"], dtype=object)
    years = _ints(d["year"])
    declared_m2 = _floats(d["declared_m2"])
    decl_geoms = _wkb(d["geom"])
    declarations = pd.DataFrame({
        "declaration_id": _strings(d["declaration_id"], dtypes.get("declaration_id")),
        "applicant_id": _strings(d["applicant_id"], dtypes.get("applicant_id")),
        "year": years,
        "village": _strings(d["village"], dtypes.get("village")),
        "parcel_id": _strings(d["parcel_id"], dtypes.get("parcel_id")),
        "crop": _strings(d["crop"], dtypes.get("crop")),
        "subsidy_amount": _floats(d["subsidy_amount"]),
        "declared_m2": declared_m2,
        "drawn_m2": _floats(d["drawn_m2"]),
        "perimeter_m": _floats(d["perimeter_m"]),
        "geometry": decl_geoms,
        "is_previous": np.asarray(d["is_previous"], dtype=bool) if n else np.empty(0, bool),
    })
    p = raw["parcels"]
    parcel_ids = np.asarray(p["parcel_id"], dtype=object)
    parcels = pd.DataFrame({
        "parcel_id": _strings(p["parcel_id"], dtypes.get("parcel_id")),
        "eligible_m2": _floats(p["eligible_m2"]),
        "area_m2": _floats(p["area_m2"]),
        "perimeter_m": _floats(p["perimeter_m"]),
        "land_use": _strings(p["land_use"], dtypes.get("land_use")),
        "geometry": _wkb(p["geom"]),
    })
    area_of_parcel = parcels["area_m2"].to_numpy()

    lk = raw["links"]
    l_decl, l_parcel = _ints(lk["did"]), _ints(lk["pid"])
    overlap = _floats(lk["area_m2"])
    by_id = np.isnan(overlap)
    overlap[by_id] = area_of_parcel[l_parcel[by_id]]
    links = pd.DataFrame({
        "declaration_id": ids[l_decl],
        "parcel_id": parcel_ids[l_parcel],
        "overlap_m2": overlap,
        "by": np.where(by_id, "id", "geometry").astype(object),
    })

    o = raw["outside"]
    drawn_m2, covered = _floats(o["drawn_m2"]), _floats(o["covered_m2"])
    outside_m2 = np.clip(drawn_m2 - covered, 0.0, None)
    outside = pd.DataFrame({
        "declaration_id": ids[_ints(o["did"])],
        "outside_m2": outside_m2,
        "outside_share": outside_m2 / drawn_m2 if len(drawn_m2) else outside_m2,
    })

    pr = raw["pairs"]
    pa, pb = _ints(pr["a"]), _ints(pr["b"])
    p_over = _floats(pr["overlap_m2"])
    a_m2, b_m2 = _floats(pr["a_m2"]), _floats(pr["b_m2"])
    swap = ids[pa].astype(str) > ids[pb].astype(str) if len(pa) else np.zeros(0, bool)
    first, second = np.where(swap, pb, pa), np.where(swap, pa, pb)
    pairs = pd.DataFrame({
        "declaration_a": ids[first],
        "declaration_b": ids[second],
        "applicant_a": applicants[first],
        "applicant_b": applicants[second],
        "year": years[first],
        "overlap_m2": p_over,
        "share_a": p_over / np.where(swap, b_m2, a_m2),
        "share_b": p_over / np.where(swap, a_m2, b_m2),
        "geometry": _wkb(pr["geom"]),
    })

    lu = raw["land_use"]
    land_use = pd.DataFrame({
        "declaration_id": ids[_ints(lu["did"])],
        "land_use": np.asarray(lu["land_use"], dtype=object),
        "overlap_m2": _floats(lu["area_m2"]),
    })

    ch = raw["changes"]
    cur_i, prev_i = _ints(ch["cur"]), _ints(ch["prev"])
    inter, ca, cb = _floats(ch["overlap_m2"]), _floats(ch["cur_m2"]), _floats(ch["prev_m2"])
    both = ~np.isnan(inter)
    sym = np.where(both, ca + cb - 2.0 * inter, np.nan)
    changes = pd.DataFrame({
        "declaration_id": ids[cur_i],
        "previous_id": ids[prev_i],
        "declared_m2": declared_m2[cur_i],
        "previous_m2": declared_m2[prev_i],
        "sym_diff_m2": np.clip(sym, 0.0, None),
        "union_m2": np.where(both, ca + cb - inter, np.nan),
    })

    tables = {
        "links": links.sort_values(["declaration_id", "parcel_id", "by"]),
        "pairs": pairs.sort_values(["declaration_a", "declaration_b"]),
        "land_use": land_use.sort_values(["declaration_id", "land_use"]),
        "outside": outside.sort_values("declaration_id"),
        "changes": changes.sort_values("declaration_id"),
    }
    for name, frame in tables.items():
        frame = frame.reset_index(drop=True)
        for col in ("declaration_id", "parcel_id", "declaration_a", "declaration_b",
                    "applicant_a", "applicant_b", "previous_id", "land_use"):
            if col in frame.columns:
                frame[col] = frame[col].astype(object).astype(pd.StringDtype())
        tables[name] = frame.loc[:, [*TABLE_COLUMNS[name]]]
    notes = {**notes, "geos_retries": int(raw["_notes"]["geos_retries"][0]), "geos_failed": 0}
    return Overlay(crs=crs, declarations=declarations, parcels=parcels, notes=notes, **tables)


def _check_options(min_overlap_m2: float, schema: str | None) -> None:
    if not np.isfinite(min_overlap_m2) or min_overlap_m2 < 0:
        msg = f"min_overlap_m2 must be a number >= 0 (got {min_overlap_m2!r})"
        raise ConfigError(msg)
    if schema is not None:
        _check_name(schema, "schema")


def _check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or "\x00" in name:
        msg = f"{what} {name!r} is not a usable name (text, not empty, no NUL character)"
        raise ValidationError(msg)
    if len(name.encode("utf-8")) > _MAX_IDENTIFIER:
        msg = f"{what} {name!r} is longer than PostgreSQL's {_MAX_IDENTIFIER}-byte limit"
        raise ValidationError(msg)
    return name


def overlay_postgis(
    conn: psycopg.Connection,
    prepared: Prepared,
    *,
    min_overlap_m2: float = 0.01,
    progress: Callable[[int], None] | None = None,
    schema: str | None = None,
) -> Overlay:
    """Measure prepared declarations against parcels, land use, each other and the year
    before, in PostGIS.

    The same reconciliation as :func:`geosup.farmland.engine.overlay_inprocess`, as SQL:
    the prepared layers are copied into working tables (hex EWKB with the metric CRS's
    EPSG code, or SRID 0 when it has none), indexed (GiST), analysed, and every table of
    the :class:`~geosup.farmland.tables.Overlay` is computed set-based.

    Parameters
    ----------
    conn : psycopg.Connection
        An open connection with autocommit off. The work runs inside its transaction (in
        a savepoint); nothing is committed: the caller commits or rolls back.
    prepared : Prepared
        The output of :func:`geosup.farmland.prepare.prepare`.
    min_overlap_m2 : float, default 0.01
        Overlaps of this area or less are not links, pairs, land-use rows or year matches.
    progress : callable, optional
        Called with a number of declarations after each step; the calls add up to the
        number of declarations.
    schema : str, optional
        Create the working tables as unlogged tables in this (existing) schema instead of
        as temporary tables (for servers where temporary tables are not allowed). They are
        dropped before the function returns, and a rollback removes them too.

    Returns
    -------
    Overlay
        Every table of :mod:`geosup.farmland.tables`; ``notes`` holds ``engine``
        (``"postgis"``), the years under review, the area unit, ``min_overlap_m2``, the
        SRID used and ``geos_retries``.

    Raises
    ------
    ValidationError
        ``conn`` is not a usable connection (autocommit on, not psycopg) or ``schema``
        is not a usable name.
    StoreError
        The SQL failed (the savepoint is rolled back; the caller's transaction stays
        usable).
    StoreConnectionError
        The connection was lost.
    """
    _check_options(min_overlap_m2, schema)
    grid = float(getattr(prepared, "precision_m", _FALLBACK_GRID_M) or _FALLBACK_GRID_M)
    n = len(prepared.declarations)
    with _unit_of_work(conn, "the PostGIS farmland overlay") as cur:
        _check_postgis(cur, need_reduce_precision=False)
        srid = _srid_of(cur, prepared.crs)
        ws = _Workspace(cur, schema)
        steps = _Progress(progress, n, 5)
        _upload_prepared(ws, prepared, srid)
        raw = _overlay_sql(ws, conn, has_land_use=prepared.land_use is not None,
                           min_overlap_m2=min_overlap_m2, grid=grid, progress=steps)
        ws.drop()
    decl = prepared.declarations
    dtypes = {c: decl[c].dtype for c in ("declaration_id", "applicant_id", "village",
                                          "parcel_id", "crop")}
    dtypes["land_use"] = prepared.parcels["land_use"].dtype
    notes: dict[str, object] = {
        "engine": "postgis",
        "years": tuple(prepared.years),
        "area_unit": prepared.area_unit,
        "min_overlap_m2": float(min_overlap_m2),
        "srid": srid,
    }
    overlay = _assemble(raw, crs=prepared.crs, notes=notes, dtypes=dtypes)
    overlay.parcels["parcel_id"] = overlay.parcels["parcel_id"].astype(
        prepared.parcels["parcel_id"].dtype)
    return overlay


# ---------------------------------------------------------------------------------------------
# Inputs that live in PostGIS: hygiene as SQL
# ---------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One input table: where it is, its columns and their types."""

    role: str  # declarations, previous, parcels, land_use
    name: str  # the ledger's source name
    schema: str
    table: str
    types: dict[str, str]  # column -> pg type name
    geometry: str | None  # geometry column
    geometry_type: str | None  # geometry or geography
    columns: dict[str, str]  # canonical -> column
    row: str | None  # row-number column

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def col(self, canonical: str) -> sql.Composable | None:
        name = self.columns.get(canonical)
        return None if name is None else sql.SQL("t.{}").format(sql.Identifier(name))


def _split_table(name: object, what: str) -> tuple[str | None, str]:
    """``"schema.table"`` (or ``"table"``, or a ``(schema, table)`` pair) as its parts."""
    if isinstance(name, tuple) and len(name) == 2:
        schema, table = name
        return _check_name(schema, f"schema of {what}"), _check_name(table, f"{what} table")
    if not isinstance(name, str):
        msg = f"{what}: {name!r} is not a table name ('schema.table' or 'table')"
        raise ValidationError(msg)
    schema, dot, table = name.partition(".")
    if not dot:
        return None, _check_name(name, f"{what} table")
    return _check_name(schema, f"schema of {what}"), _check_name(table, f"{what} table")


def _describe(
    cur: psycopg.Cursor,
    name: object,
    *,
    role: str,
    source: str,
    wanted: Sequence[str],
    required: Sequence[str],
    columns: Mapping[str, str] | None,
    row_column: str | None,
    needs_geometry: bool,
) -> _Source:
    """Find an input table (refusing names it cannot find) and map its columns."""
    schema, table = _split_table(name, f"the {role}")
    if schema is None:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') "
            "AND n.nspname = ANY (current_schemas(false)) "
            "ORDER BY array_position(current_schemas(false), n.nspname::text) LIMIT 1",
            (table,))
    else:
        cur.execute(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            (table, schema))
    found = cur.fetchone()
    if found is None:
        where = f"schema {schema!r}" if schema else "the search path"
        msg = f"no table {table!r} in {where} for the {role}"
        raise DataSourceError(msg)
    schema = str(found[0])
    cur.execute(
        "SELECT a.attname, t.typname FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_type t ON t.oid = a.atttypid WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (schema, table))
    types = {str(k): str(v) for k, v in cur.fetchall()}
    mapping = dict(columns or {})
    unknown = [k for k in mapping if k not in (*wanted, "geometry")]
    if unknown:
        msg = (f"column map of the {role} names unknown field(s) {', '.join(unknown)}; "
               f"known: {', '.join((*wanted, 'geometry'))}")
        raise ConfigError(msg)
    resolved: dict[str, str] = {}
    lower = {k.lower(): k for k in types}
    for canonical in wanted:
        column = mapping.get(canonical, canonical)
        if column in types:
            resolved[canonical] = column
        elif canonical not in mapping and column.lower() in lower:
            resolved[canonical] = lower[column.lower()]
        elif canonical in mapping:
            msg = (f"the {role} table {schema}.{table} has no column {column!r} "
                   f"(mapped to {canonical})")
            raise SchemaError(msg)
    missing = [c for c in required if c not in resolved]
    if missing:
        msg = (f"the {role} lack required column(s) {', '.join(missing)}; map them "
               f"(have: {', '.join(types)})")
        raise SchemaError(msg)
    spatial = [c for c, t in types.items() if t in ("geometry", "geography")]
    geometry = mapping.get("geometry")
    if geometry is not None and geometry not in spatial:
        msg = f"the {role} table {schema}.{table} has no geometry column {geometry!r}"
        raise SchemaError(msg)
    if geometry is None:
        geometry = "geometry" if "geometry" in spatial else (spatial[0] if spatial else None)
    if geometry is None and needs_geometry:
        msg = f"the {role} table {schema}.{table} has no geometry column; it needs polygons"
        raise SchemaError(msg)
    row = row_column if row_column in types and types[row_column] in _INTEGER_TYPES else None
    return _Source(role=role, name=source, schema=schema, table=table, types=types,
                   geometry=geometry, geometry_type=types.get(geometry) if geometry else None,
                   columns=resolved, row=row)


def _text_expr(src: _Source, canonical: str) -> sql.Composable:
    """A column as canonical text: trimmed, blank as NULL, integral numbers without '.0'."""
    col = src.col(canonical)
    if col is None:
        return sql.SQL("NULL::text")
    kind = src.types[src.columns[canonical]]
    if kind in _NUMERIC_TYPES:
        return sql.SQL(
            "CASE WHEN {c} IS NULL OR {c}::float8 = 'NaN'::float8 THEN NULL "
            "WHEN abs({c}::float8) < 1e18 AND {c}::float8 = trunc({c}::float8) "
            "THEN trunc({c}::float8)::bigint::text ELSE {c}::float8::text END").format(c=col)
    return sql.SQL("NULLIF(btrim({c}::text, %(ws)s), '')").format(c=col)


def _number_expr(src: _Source, canonical: str) -> sql.Composable:
    """A column as a finite float8, NULL when missing, not a number or not finite."""
    col = src.col(canonical)
    if col is None:
        return sql.SQL("NULL::float8")
    kind = src.types[src.columns[canonical]]
    if kind in _NUMERIC_TYPES or kind in _INTEGER_TYPES:
        value = sql.SQL("{}::float8").format(col)
    else:
        value = sql.SQL("CASE WHEN btrim({c}::text, %(ws)s) ~ %(number)s "
                        "THEN btrim({c}::text, %(ws)s)::float8 END").format(c=col)
    return sql.SQL("(SELECT CASE WHEN v <> 'NaN'::float8 AND abs(v) <> 'Infinity'::float8 "
                   "THEN v END FROM (SELECT {} AS v) s)").format(value)


def _geometry_expr(src: _Source, srid: int) -> tuple[sql.Composable, sql.Composable]:
    """(the source geometry, the same in the metric CRS, 2D)."""
    if src.geometry is None:
        return sql.SQL("NULL::geometry"), sql.SQL("NULL::geometry")
    raw = sql.SQL("t.{}").format(sql.Identifier(src.geometry))
    if src.geometry_type == "geography":
        raw = sql.SQL("{}::geometry").format(raw)
    metric = sql.SQL("ST_Force2D(ST_Transform({}, %(srid)s))").format(raw)
    return raw, metric


def _check_srids(cur: psycopg.Cursor, src: _Source) -> None:
    """Refuse geometry without a coordinate reference system (SRID 0)."""
    if src.geometry is None:
        return
    raw, _ = _geometry_expr(src, 0)
    cur.execute(sql.SQL("SELECT 1 FROM {} t WHERE {} IS NOT NULL AND ST_SRID({}) = 0 LIMIT 1")
                .format(src.ident, raw, raw))
    if cur.fetchone() is not None:
        msg = (f"the {src.role} table {src.schema}.{src.table} has geometry without a "
               "coordinate reference system (SRID 0); set one with ST_SetSRID")
        raise CRSError(msg)


def _crs_of_srid(cur: psycopg.Cursor, srid: int) -> pyproj.CRS:
    cur.execute("SELECT auth_name, auth_srid, srtext, proj4text FROM spatial_ref_sys "
                "WHERE srid = %s", (srid,))
    row = cur.fetchone()
    if row is None:
        msg = f"SRID {srid} is not in the database's spatial_ref_sys"
        raise CRSError(msg)
    auth_name, auth_srid, srtext, proj4 = row
    candidates = [f"{auth_name}:{auth_srid}"] if auth_name and auth_srid else []
    candidates.extend(c for c in (srtext, proj4) if c)
    for candidate in candidates:
        try:
            crs = pyproj.CRS.from_user_input(candidate)
        except pyproj.exceptions.CRSError:
            continue
        units = {axis.unit_name for axis in crs.axis_info}
        if not crs.is_projected or units != {"metre"}:
            msg = f"SRID {srid} ({crs.name}) is not a metric projected CRS"
            raise CRSError(msg)
        return crs
    msg = f"SRID {srid} cannot be read as a coordinate reference system"  # pragma: no cover
    raise CRSError(msg)  # pragma: no cover


# The hygiene working table: one row per input row of one kind (declarations and previous
# declarations together, as prepare() handles them).
_HYGIENE_DDL = (
    "rid bigint PRIMARY KEY, part integer, src text, src_row bigint, key text, "
    "alive boolean NOT NULL DEFAULT true, id text, applicant text, year_f double precision, "
    "area double precision, parcel_ref text, village text, crop text, "
    "subsidy double precision, land_use text, may_lack boolean NOT NULL DEFAULT false, "
    "was_collection boolean NOT NULL DEFAULT false, geom geometry, raw jsonb, raw_geom geometry"
)
_LOG_DDL = ("kind text, step integer, rid bigint, src text, src_row bigint, key text, "
            "reason text, a double precision, b double precision")


def _q(text: str | sql.Composable) -> sql.Composable:
    return sql.SQL(text) if isinstance(text, str) else text


@dataclass
class _Hygiene:
    """The hygiene of one kind of input in SQL (mirrors prepare's ``_Table``): live rows,
    rejects and repairs recorded step by step."""

    ws: _Workspace
    kind: str
    step: int = 0

    @property
    def h(self) -> sql.Identifier:
        return self.ws.t(f"h_{self.kind}")

    def reject(self, where: str | sql.Composable, reason: str | sql.Composable,
               params: Mapping[str, Any] | None = None, *, using: sql.Composable | None = None,
               a: str = "NULL", b: str = "NULL", repair: bool = False) -> None:
        """Reject the live rows matching ``where`` (an SQL condition over ``h``, and over
        ``f`` when ``using`` names a table joined on ``rid``) with ``reason`` (an SQL text
        expression); with ``repair=True`` record a repair and keep the rows. ``a`` and
        ``b`` are numbers put into the reason's placeholders (formatted like prepare)."""
        self.step += 1
        source = (sql.SQL("FROM {} f WHERE f.rid = h.rid AND").format(using)
                  if using is not None else sql.SQL("WHERE"))
        self.ws.cur.execute(sql.SQL(
            "WITH hit AS (UPDATE {h} h SET alive = {alive} {source} h.alive AND ({cond}) "
            "  RETURNING h.rid, h.src, h.src_row, h.key, ({why})::text AS reason, "
            "  ({a})::float8 AS a, ({b})::float8 AS b) "
            "INSERT INTO {log} (kind, step, rid, src, src_row, key, reason, a, b) "
            "SELECT %(kind)s, %(step)s, rid, src, src_row, key, reason, a, b FROM hit").format(
                h=self.h, alive=sql.SQL("true" if repair else "false"), source=source,
                cond=_q(where), why=_q(reason), a=sql.SQL(a), b=sql.SQL(b),
                log=self.ws.t("repairs" if repair else "rejects")),
            {**(params or {}), "kind": self.kind, "step": self.step,
             "num_a": _NUM_A, "num_b": _NUM_B})

    def update(self, assignment: str | sql.Composable, where: str | sql.Composable = "true",
               params: Mapping[str, Any] | None = None, *,
               using: sql.Composable | None = None) -> None:
        """``UPDATE h SET <assignment>`` on the live rows (joined with ``using`` as ``f``)."""
        source = (sql.SQL("FROM {} f WHERE f.rid = h.rid AND").format(using)
                  if using is not None else sql.SQL("WHERE"))
        self.ws.cur.execute(sql.SQL("UPDATE {h} h SET {set} {source} h.alive AND ({w})").format(
            h=self.h, set=_q(assignment), source=source, w=_q(where)), params or {})


# The polygonal part of a geometry, one polygon unwrapped (as prepare's _polygonal_parts).
def _polygonal(expr: str) -> str:
    return ("(SELECT CASE WHEN ST_NumGeometries(x) = 1 THEN ST_GeometryN(x, 1) ELSE x END "
            f"FROM (SELECT ST_CollectionExtract({expr}, 3) AS x) s)")


def _type_name(expr: str) -> str:
    return f"substr(ST_GeometryType({expr}), 4)"  # 'ST_MultiPolygon' -> 'MultiPolygon'


def _clean_sql(hy: _Hygiene, *, precision_m: float, sliver_m2: float) -> None:
    """prepare()'s ``_clean_geometries`` as SQL on the live rows of the hygiene table."""
    ws, cur = hy.ws, hy.ws.cur
    hy.reject("h.geom IS NULL AND NOT h.may_lack", "'missing geometry'")
    hy.reject("h.geom IS NOT NULL AND ST_IsEmpty(h.geom) AND NOT h.may_lack",
              "'empty geometry'")
    hy.reject("h.geom IS NOT NULL AND ST_IsEmpty(h.geom) AND h.may_lack",
              "'empty geometry dropped; the declaration is kept by its parcel_id'", repair=True)
    hy.update("geom = NULL", "h.geom IS NOT NULL AND ST_IsEmpty(h.geom)")

    # Geometry types: polygons only; the polygonal part of a collection.
    hy.reject("h.geom IS NOT NULL AND ST_GeometryType(h.geom) NOT IN "
              "('ST_Polygon', 'ST_MultiPolygon', 'ST_GeometryCollection')",
              f"'geometry is a ' || {_type_name('h.geom')} || ', not a polygon'")
    hy.update(f"was_collection = true, geom = {_polygonal('h.geom')}",
              "h.geom IS NOT NULL AND ST_GeometryType(h.geom) = 'ST_GeometryCollection'")
    hy.reject("h.was_collection AND ST_IsEmpty(h.geom)",
              "'geometry collection without any polygon'")
    hy.reject("h.was_collection",
              "'kept the polygonal part of a GeometryCollection (other parts dropped)'",
              repair=True)

    # Validity: ST_MakeValid, keep the polygonal part, record what was wrong.
    fix = ws.create(f"fix_{hy.kind}", "rid bigint PRIMARY KEY, why text, made_type text, "
                                      "made_collection boolean, before_m2 double precision, "
                                      "fixed geometry")
    cur.execute(sql.SQL(
        "INSERT INTO {fix} (rid, why, made_type, made_collection, before_m2, fixed) "
        f"SELECT h.rid, ST_IsValidReason(h.geom), {_type_name('m.made')}, "
        "       ST_GeometryType(m.made) = 'ST_GeometryCollection', ST_Area(h.geom), "
        f"      {_polygonal('m.made')} "
        "FROM {h} h CROSS JOIN LATERAL (SELECT ST_MakeValid(h.geom) AS made) m "
        "WHERE h.alive AND h.geom IS NOT NULL AND NOT ST_IsValid(h.geom)").format(
            fix=fix, h=hy.h))
    hy.reject("ST_IsEmpty(f.fixed)",
              "'invalid geometry (' || f.why || ') has no polygonal part after make_valid'",
              using=fix)
    hy.reject("true",
              "'repaired: ' || f.why || '; make_valid gave ' || f.made_type "
              "|| CASE WHEN f.made_collection THEN ' (kept its ' || ST_NumGeometries(f.fixed) "
              "|| ' polygon(s))' ELSE '' END || ', ' || %(num_a)s || ' m² -> ' || %(num_b)s "
              "|| ' m²'", using=fix, a="f.before_m2", b="ST_Area(f.fixed)", repair=True)
    hy.update("geom = f.fixed", using=fix)

    # The fixed precision grid: a collapse is a reject, a change of the number of parts a
    # repair.
    if precision_m and precision_m > 0:
        grid = f"{precision_m:g}"
        snap = ws.create(f"snap_{hy.kind}", "rid bigint PRIMARY KEY, before_parts integer, "
                                            "snapped geometry")
        # As prepare's _snap: coordinates rounded to the grid (rint, as numpy's round);
        # what rounding leaves invalid goes through GEOS's precision reducer instead.
        snapped = ("CASE WHEN ST_IsValid(r.rounded) THEN r.rounded "
                   "ELSE ST_ReducePrecision(h.geom, %(p)s) END")
        cur.execute(sql.SQL(
            "INSERT INTO {snap} (rid, before_parts, snapped) "
            f"SELECT h.rid, ST_NumGeometries(h.geom), {_polygonal(snapped)} "
            "FROM {h} h CROSS JOIN LATERAL (SELECT ST_SnapToGrid(h.geom, %(p)s) AS rounded) r "
            "WHERE h.alive AND h.geom IS NOT NULL").format(snap=snap, h=hy.h),
            {"p": float(precision_m)})
        hy.reject("ST_IsEmpty(f.snapped)", "%(why)s", using=snap,
                  params={"why": f"geometry collapses to nothing on the {grid} m precision grid"})
        hy.reject("ST_NumGeometries(f.snapped) <> f.before_parts",
                  "%(why)s || f.before_parts || ' to ' || ST_NumGeometries(f.snapped)",
                  {"why": f"the {grid} m precision grid changed the number of polygon parts "
                          "from "}, using=snap, repair=True)
        hy.update("geom = f.snapped", using=snap)

    # Slivers: a whole geometry below the threshold is rejected, small parts removed.
    if sliver_m2 > 0:
        s_text = f"{sliver_m2:g}"
        hy.reject("h.geom IS NOT NULL AND ST_Area(h.geom) < %(s)s",
                  "'area ' || %(num_a)s || ' m² is below the sliver threshold (' || %(s_text)s "
                  "|| ' m²)'", {"s": float(sliver_m2), "s_text": s_text}, a="ST_Area(h.geom)")
        tiny = ws.create(f"tiny_{hy.kind}", "rid bigint PRIMARY KEY, n_tiny integer, "
                                            "a_tiny double precision, kept geometry")
        cur.execute(sql.SQL(
            "INSERT INTO {tiny} (rid, n_tiny, a_tiny, kept) "
            "SELECT rid, count(*) FILTER (WHERE a < %(s)s), "
            "       coalesce(sum(a) FILTER (WHERE a < %(s)s), 0), "
            "       ST_Collect(g) FILTER (WHERE a >= %(s)s) "
            "FROM (SELECT h.rid, d.geom AS g, ST_Area(d.geom) AS a "
            "      FROM {h} h CROSS JOIN LATERAL ST_Dump(h.geom) d "
            "      WHERE h.alive AND h.geom IS NOT NULL) parts "
            "GROUP BY rid HAVING count(*) FILTER (WHERE a < %(s)s) > 0").format(
                tiny=tiny, h=hy.h), {"s": float(sliver_m2)})
        hy.reject("f.kept IS NULL", "%(why)s", {"why": f"every part is a sliver below {s_text} m²"},
                  using=tiny)
        hy.reject("true", "'removed ' || f.n_tiny || %(why)s",
                  {"why": f" sliver part(s) below {s_text} m² ({_NUM_A} m² in all)"},
                  using=tiny, a="f.a_tiny", repair=True)
        hy.update("geom = CASE WHEN ST_NumGeometries(f.kept) = 1 THEN ST_GeometryN(f.kept, 1) "
                  "ELSE f.kept END", using=tiny)
    cur.execute(sql.SQL("UPDATE {h} SET geom = NULL WHERE NOT alive").format(h=hy.h))


def _reject_duplicates(hy: _Hygiene, key: str, *, head: str, middle: str, tail: str,
                       multi_part: bool) -> None:
    """Reject later live rows repeating ``key`` (SQL over ``h``), naming the first one kept:
    ``head + its id + middle + its row + tail`` (as prepare's duplicate checks)."""
    ws = hy.ws
    dup = ws.create(f"dup{hy.step}_{hy.kind}", "rid bigint PRIMARY KEY, first_id text, "
                                               "first_src text, first_row bigint")
    ws.cur.execute(sql.SQL(
        "INSERT INTO {dup} (rid, first_id, first_src, first_row) "
        "SELECT s.rid, f.id, f.src, f.src_row FROM ("
        "  SELECT h.rid, first_value(h.rid) OVER w AS first_rid, row_number() OVER w AS rn "
        "  FROM {h} h WHERE h.alive AND ({key}) IS NOT NULL "
        "  WINDOW w AS (PARTITION BY {key} ORDER BY h.rid)) s "
        "JOIN {h} f ON f.rid = s.first_rid WHERE s.rn > 1").format(
            dup=dup, h=hy.h, key=sql.SQL(key)))
    row = ("CASE WHEN f.first_row IS NULL THEN 'another row' ELSE "
           + ("f.first_src || ' row ' || f.first_row" if multi_part else "'row ' || f.first_row")
           + " END")
    hy.reject("true", f"%(head)s || f.first_id || %(middle)s || {row} || %(tail)s",
              {"head": head, "middle": middle, "tail": tail}, using=dup)


def _has_ctid(cur: psycopg.Cursor, src: _Source) -> bool:
    cur.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", (src.schema, src.table))
    row = cur.fetchone()
    return row is not None and row[0] in ("r", "m")


_NULL_TEXT, _NULL_FLOAT = sql.SQL("NULL::text"), sql.SQL("NULL::float8")


def _key_expr(src: _Source, canonical: str) -> sql.Composable:
    """The row's id as the rejects ledger writes it: the raw value as text, as Python's
    ``str`` would print it (``107721939.0`` for a float id), '' when missing."""
    col = src.col(canonical)
    if col is None:
        return sql.SQL("''")
    if src.types[src.columns[canonical]] in _NUMERIC_TYPES:
        return sql.SQL(
            "CASE WHEN {c} IS NULL OR {c}::float8 = 'NaN'::float8 THEN '' "
            "WHEN abs({c}::float8) < 1e16 AND {c}::float8 = trunc({c}::float8) "
            "THEN trunc({c}::float8)::bigint::text || '.0' ELSE {c}::float8::text END"
        ).format(c=col)
    return sql.SQL("coalesce({}::text, '')").format(col)


def _raw_expr(src: _Source) -> sql.Composable:
    """The row's other values as jsonb (``to_jsonb`` of each column; spatial columns and
    the row number left out, the geometry is added as WKT when the row is rejected)."""
    skip = {src.row}
    names = [c for c, t in src.types.items()
             if c not in skip and t not in ("geometry", "geography")]
    if not names:
        return sql.SQL("'{}'::jsonb")
    chunks = [names[i:i + 40] for i in range(0, len(names), 40)]  # 100-argument limit
    return sql.SQL(" || ").join(
        sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
            sql.SQL("{}::text, to_jsonb(t.{})").format(sql.Literal(c), sql.Identifier(c))
            for c in chunk))
        for chunk in chunks)


def _load_hygiene(ws: _Workspace, kind: str, sources: Sequence[_Source], *,
                  srid: int) -> _Hygiene:
    """Copy the input rows into the hygiene table (metric CRS, canonical types)."""
    hy = _Hygiene(ws, kind)
    ws.create(f"h_{kind}", _HYGIENE_DDL)
    offset = 0
    for part, src in enumerate(sources):
        raw_geom, metric = _geometry_expr(src, srid)
        if src.row:
            order = row = sql.SQL("t.{}").format(sql.Identifier(src.row))
        else:
            order = sql.SQL("t.ctid" if _has_ctid(ws.cur, src) else "NULL")
            row = sql.SQL("NULL::bigint")
        key_col = {"declarations": "declaration_id", "parcels": "parcel_id"}.get(kind)
        key = _key_expr(src, key_col) if key_col else sql.SQL("''")
        raw = _raw_expr(src)
        if kind == "declarations":
            fields = [_text_expr(src, "declaration_id"), _text_expr(src, "applicant_id"),
                      _number_expr(src, "year"), _number_expr(src, "declared_area"),
                      _text_expr(src, "parcel_id"), _text_expr(src, "village"),
                      _text_expr(src, "crop"), _number_expr(src, "subsidy_amount"), _NULL_TEXT]
        elif kind == "parcels":
            fields = [_text_expr(src, "parcel_id"), _NULL_TEXT, _NULL_FLOAT,
                      _number_expr(src, "eligible_area"), _NULL_TEXT, _NULL_TEXT, _NULL_TEXT,
                      _NULL_FLOAT, _text_expr(src, "land_use")]
        else:
            fields = [_NULL_TEXT, _NULL_TEXT, _NULL_FLOAT, _NULL_FLOAT, _NULL_TEXT, _NULL_TEXT,
                      _NULL_TEXT, _NULL_FLOAT, _text_expr(src, "land_use")]
        ws.cur.execute(sql.SQL(
            "INSERT INTO {h} (rid, part, src, src_row, key, id, applicant, year_f, area, "
            "  parcel_ref, village, crop, subsidy, land_use, geom, raw, raw_geom) "
            "SELECT %(offset)s + row_number() OVER (ORDER BY {order}) - 1, %(part)s, "
            "  %(src)s, {row}, {key}, {fields}, {metric}, {raw}, {raw_geom} "
            "FROM {table} t").format(
                h=hy.h, order=order, row=row, key=key, fields=sql.SQL(", ").join(fields),
                metric=metric, raw=raw, raw_geom=raw_geom, table=src.ident),
            {"offset": offset, "part": part, "src": src.name, "srid": srid,
             "ws": _WHITESPACE, "number": _NUMBER_RE})
        offset += ws.cur.rowcount
    return hy


def _fmt(values: np.ndarray) -> list[str]:
    """Numbers as short text for reasons, as prepare() writes them (``f"{v:g}"``)."""
    return [f"{v:g}" for v in np.asarray(values, dtype=np.float64)]


def _read_log(ws: _Workspace, table: str, kinds: Sequence[str]) -> pd.DataFrame:
    """Rejects (with raw values) or repairs, by input kind and in the order recorded."""
    cur = ws.cur
    merged: dict[str, list[Any]] = {k: [] for k in ("src", "src_row", "key", "reason", "a",
                                                    "b", "raw")}
    for kind in kinds:
        raw = (sql.SQL("(h.raw || CASE WHEN h.raw_geom IS NULL THEN '{}'::jsonb ELSE "
                       "jsonb_build_object('geometry', left(ST_AsText(h.raw_geom), 2000)) "
                       "END)::text") if table == "rejects" else sql.SQL("NULL::text"))
        cur.execute(sql.SQL(
            "SELECT r.src, r.src_row, r.key, r.reason, r.a, r.b, {raw} AS raw "
            "FROM {log} r JOIN {h} h ON h.rid = r.rid WHERE r.kind = %(kind)s "
            "ORDER BY r.step, h.part, r.rid").format(
                raw=raw, log=ws.t(table), h=ws.t(f"h_{kind}")), {"kind": kind})
        for k, values in _columns(cur).items():
            merged[k].extend(values)
    reasons = np.asarray(merged["reason"], dtype=object)
    for key, token in (("a", _NUM_A), ("b", _NUM_B)):
        values = _floats(merged[key])
        has = ~np.isnan(values)
        if has.any():
            reasons[has] = [r.replace(token, s) for r, s in
                            zip(reasons[has], _fmt(values[has]), strict=True)]
    frame = pd.DataFrame({
        "source": pd.Series(merged["src"], dtype=object),
        "row": pd.Series(merged["src_row"], dtype="Int64"),
        "key": pd.Series(merged["key"], dtype=object),
        "reason": pd.Series(reasons, dtype=object),
        "raw": pd.Series(merged["raw"], dtype=object),
    })
    return frame.loc[:, list(_LEDGER_COLUMNS if table == "rejects" else _REPAIR_COLUMNS)]


def overlay_postgis_tables(
    conn: psycopg.Connection,
    *,
    declarations: str,
    parcels: str,
    land_use: str | None = None,
    previous: str | None = None,
    area_unit: str,
    srid: int,
    precision_m: float = 0.01,
    sliver_m2: float = 1.0,
    min_overlap_m2: float = 0.01,
    declaration_columns: Mapping[str, str] | None = None,
    parcel_columns: Mapping[str, str] | None = None,
    land_use_columns: Mapping[str, str] | None = None,
    previous_columns: Mapping[str, str] | None = None,
    row_column: str | None = "_row",
    source_names: Mapping[str, str] | None = None,
    progress: Callable[[int], None] | None = None,
    schema: str | None = None,
) -> tuple[Overlay, pd.DataFrame, pd.DataFrame, dict[str, dict[str, int]]]:
    """Clean and overlay inputs that already live in PostGIS, all in SQL.

    The hygiene of :func:`geosup.farmland.prepare.prepare` runs as SQL on the tables
    (reprojected with ``ST_Transform`` to ``srid``, 2D): missing, empty and non-polygonal
    geometry, ``ST_MakeValid`` keeping the polygonal part (``ST_CollectionExtract``),
    ``ST_ReducePrecision`` to the grid, slivers, duplicate ids and geometries (window
    functions), areas that are missing, 0 or negative, declarations of unknown parcel ids
    without a drawing, previous declarations not older than the years under review. It
    gives the same reasons as ``prepare`` (the row numbers come from ``row_column`` when
    the table has it, else they are NULL). Then the overlay of :func:`overlay_postgis`
    runs on the cleaned rows.

    Parameters
    ----------
    conn : psycopg.Connection
        An open connection with autocommit off; the work runs inside its transaction (in
        a savepoint) and nothing is committed.
    declarations, parcels : str
        Tables, as ``"schema.table"`` or ``"table"`` (found on the search path), or a
        ``(schema, table)`` pair. Names are looked up in the catalogue and quoted; a name
        that names no table raises :class:`~geosup.errors.DataSourceError`.
    land_use, previous : str, optional
        The land-use layer and the previous years' declarations.
    area_unit : str
        Unit of ``declared_area`` and ``eligible_area`` (mu, ha, m2 …).
    srid : int
        The metric SRID to work in (in ``spatial_ref_sys``, projected, metres).
    precision_m, sliver_m2 : float
        As in :func:`~geosup.farmland.prepare.prepare`.
    min_overlap_m2 : float
        As in :func:`overlay_postgis`.
    declaration_columns, parcel_columns, land_use_columns, previous_columns : mapping
        Canonical name → column of the table (``{"declaration_id": "AntragNr",
        "geometry": "geom"}``); unmapped names are looked up as is (case-insensitive).
    row_column : str, optional
        Integer column with each row's number in the original file (default ``_row``,
        as ``geosup.io`` writes it); tables without it give NULL row numbers.
    source_names : mapping, optional
        Names of the inputs in the rejects and counts, keyed by ``"declarations"``,
        ``"parcels"``, ``"land_use"``, ``"previous"`` (default those words).
    progress : callable, optional
        As in :func:`overlay_postgis`.
    schema : str, optional
        As in :func:`overlay_postgis`.

    Returns
    -------
    overlay : Overlay
        As :func:`overlay_postgis` gives (``notes["years"]`` are the years of the used
        current declarations).
    rejects : DataFrame
        ``source, row, key, reason, raw`` (``raw``: the row as JSON text, geometry as WKT).
    repairs : DataFrame
        ``source, row, key, reason``.
    counts : dict
        Per source: ``{"rows_in", "rows_used", "rows_rejected"}``.

    Raises
    ------
    ConfigError
        ``area_unit`` is missing or unknown, or an option is out of range.
    DataSourceError
        A table does not exist, or PostGIS is missing or too old.
    SchemaError
        A required column is missing.
    CRSError
        A geometry has no SRID, or ``srid`` is not a metric projected CRS.
    StoreError, StoreConnectionError
        As in :func:`overlay_postgis`.
    """
    if area_unit is None or (isinstance(area_unit, str) and not area_unit.strip()):
        msg = ("the area unit of declared_area and eligible_area is not declared; give one of "
               "mu, ha, m2 (e.g. --area-unit mu)")
        raise ConfigError(msg)
    unit = normalize_area_unit(area_unit)
    factor = AREA_UNITS[unit]
    _check_options(min_overlap_m2, schema)
    if not np.isfinite(precision_m) or precision_m < 0 or not np.isfinite(sliver_m2) \
            or sliver_m2 < 0:
        msg = f"precision_m and sliver_m2 must be numbers >= 0 (got {precision_m}, {sliver_m2})"
        raise ConfigError(msg)
    names = {"declarations": "declarations", "parcels": "parcels", "land_use": "land_use",
             "previous": "previous"}
    names.update(source_names or {})
    what = "the PostGIS farmland check"
    with _unit_of_work(conn, what) as cur:
        _check_postgis(cur, need_reduce_precision=bool(precision_m))
        crs = _crs_of_srid(cur, int(srid))
        d_src = _describe(cur, declarations, role="declarations", source=names["declarations"],
                          wanted=_DECLARATION_INPUT, required=_DECLARATION_REQUIRED,
                          columns=declaration_columns, row_column=row_column,
                          needs_geometry=False)
        decl_sources = [d_src]
        if previous is not None:
            decl_sources.append(_describe(
                cur, previous, role="previous declarations", source=names["previous"],
                wanted=_DECLARATION_INPUT, required=_DECLARATION_REQUIRED,
                columns=previous_columns, row_column=row_column, needs_geometry=False))
        p_src = _describe(cur, parcels, role="reference parcels", source=names["parcels"],
                          wanted=_PARCEL_INPUT, required=_PARCEL_REQUIRED,
                          columns=parcel_columns, row_column=row_column, needs_geometry=True)
        l_src = None
        if land_use is not None:
            l_src = _describe(cur, land_use, role="land-use layer", source=names["land_use"],
                              wanted=_LAND_USE_INPUT, required=_LAND_USE_INPUT,
                              columns=land_use_columns, row_column=row_column,
                              needs_geometry=True)
        for src in (*decl_sources, p_src, *([l_src] if l_src else [])):
            _check_srids(cur, src)

        ws = _Workspace(cur, schema)
        ws.create("rejects", _LOG_DDL)
        ws.create("repairs", _LOG_DDL)
        kinds = ["declarations", "parcels"] + (["land_use"] if l_src is not None else [])

        # ---- reference parcels ----
        ph = _load_hygiene(ws, "parcels", [p_src], srid=int(srid))
        ph.reject("h.id IS NULL", "'missing parcel_id'")
        ph.reject("h.area IS NULL", "'eligible_area is missing or not a number'")
        ph.reject("h.area < 0", "'eligible_area must be >= 0 (got ' || %(num_a)s || ')'",
                  a="h.area")
        _clean_sql(ph, precision_m=precision_m, sliver_m2=sliver_m2)
        _reject_duplicates(ph, "h.id", head="duplicate parcel_id '", middle="' (first on ",
                           tail=")", multi_part=False)
        _reject_duplicates(ph, "ST_AsBinary(ST_Normalize(h.geom))",
                           head="same geometry as parcel '", middle="' (",
                           tail="), which is kept", multi_part=False)

        # ---- land use ----
        if l_src is not None:
            lh = _load_hygiene(ws, "land_use", [l_src], srid=int(srid))
            lh.reject("h.land_use IS NULL", "'missing land_use class'")
            _clean_sql(lh, precision_m=precision_m, sliver_m2=sliver_m2)

        # ---- declarations (current and previous, as one table) ----
        dh = _load_hygiene(ws, "declarations", decl_sources, srid=int(srid))
        dh.reject("h.id IS NULL", "'missing declaration_id'")
        dh.reject("h.applicant IS NULL", "'missing applicant_id'")
        dh.reject("h.year_f IS NULL OR h.year_f <> trunc(h.year_f)",
                  "'year is missing or not a whole number'")
        dh.reject("h.area IS NULL", "'declared_area is missing or not a number'")
        dh.reject("h.area <= 0", "'declared_area must be > 0 (got ' || %(num_a)s || ')'",
                  a="h.area")
        dh.reject("(h.geom IS NULL OR ST_IsEmpty(h.geom)) AND h.parcel_ref IS NULL",
                  "'declaration has neither a geometry nor a parcel_id'")
        dh.update("may_lack = h.parcel_ref IS NOT NULL")
        _clean_sql(dh, precision_m=precision_m, sliver_m2=sliver_m2)
        dh.reject(sql.SQL("h.parcel_ref IS NOT NULL AND h.geom IS NULL AND NOT EXISTS "
                          "(SELECT 1 FROM {p} p WHERE p.alive AND p.id = h.parcel_ref)")
                  .format(p=ph.h),
                  "'declares parcel ' || h.parcel_ref || ', which is not in the reference "
                  "parcels'")
        cur.execute(sql.SQL("SELECT min(year_f), max(year_f) FROM {h} "
                            "WHERE alive AND part = 0").format(h=dh.h))
        lo, hi = cur.fetchone()
        if lo is not None:
            span = f"{int(lo)}" + (f"-{int(hi)}" if hi != lo else "")
            dh.reject("h.part > 0 AND h.year_f >= %(first)s",
                      "'previous declaration of year ' || h.year_f::bigint || ' is not before "
                      "the years under review (' || %(span)s || ')'",
                      {"first": float(lo), "span": span})
        multi = len(decl_sources) > 1
        _reject_duplicates(dh, "h.id", head="duplicate declaration_id '", middle="' (first on ",
                           tail=")", multi_part=multi)
        _reject_duplicates(dh, "ST_AsBinary(ST_Normalize(h.geom)), h.applicant, "
                               "h.year_f::bigint",
                           head="same geometry, applicant and year as declaration '",
                           middle="' (", tail="), which is kept", multi_part=multi)

        # ---- the cleaned layers into the overlay's working tables ----
        cur.execute(sql.SQL("SELECT DISTINCT year_f::bigint FROM {h} WHERE alive AND part = 0 "
                            "ORDER BY 1").format(h=dh.h))
        years = tuple(int(r[0]) for r in cur.fetchall())
        decl_t = ws.create("decl", _DECL_DDL)
        cur.execute(sql.SQL(
            "INSERT INTO {t} (did, declaration_id, applicant_id, year, village, parcel_id, crop, "
            "  subsidy_amount, declared_m2, is_previous, geom) "
            "SELECT row_number() OVER (ORDER BY rid) - 1, id, applicant, year_f::bigint, "
            "  village, parcel_ref, crop, subsidy, area * %(factor)s, part > 0, geom "
            "FROM {h} WHERE alive").format(t=decl_t, h=dh.h), {"factor": factor})
        n = cur.rowcount
        parcel_t = ws.create("parcel", _PARCEL_DDL)
        cur.execute(sql.SQL(
            "INSERT INTO {t} (pid, parcel_id, eligible_m2, land_use, geom) "
            "SELECT row_number() OVER (ORDER BY rid) - 1, id, area * %(factor)s, land_use, geom "
            "FROM {h} WHERE alive").format(t=parcel_t, h=ph.h), {"factor": factor})
        if l_src is not None:
            lu_t = ws.create("lu", _LAND_USE_DDL)
            cur.execute(sql.SQL(
                "INSERT INTO {t} (lid, land_use, geom) "
                "SELECT row_number() OVER (ORDER BY rid) - 1, land_use, geom "
                "FROM {h} WHERE alive").format(t=lu_t, h=ws.t("h_land_use")))
        _index_inputs(ws, land_use=l_src is not None)

        rejects = _read_log(ws, "rejects", kinds)
        repairs = _read_log(ws, "repairs", kinds)
        counts: dict[str, dict[str, int]] = {}
        for kind in kinds:
            cur.execute(sql.SQL("SELECT part, count(*), count(*) FILTER (WHERE alive) "
                                "FROM {h} GROUP BY part").format(h=ws.t(f"h_{kind}")))
            found = {int(part): (int(total), int(used)) for part, total, used in cur.fetchall()}
            sources = decl_sources if kind == "declarations" else \
                [p_src] if kind == "parcels" else [l_src]
            for part, src in enumerate(sources):
                if src is None:  # pragma: no cover - land use only when given
                    continue
                total, used = found.get(part, (0, 0))
                counts[src.name] = {"rows_in": total, "rows_used": used,
                                    "rows_rejected": total - used}

        raw = _overlay_sql(ws, conn, has_land_use=l_src is not None,
                           min_overlap_m2=min_overlap_m2,
                           grid=float(precision_m or _FALLBACK_GRID_M),
                           progress=_Progress(progress, n, 5))
        ws.drop()
    notes: dict[str, object] = {
        "engine": "postgis",
        "years": years,
        "area_unit": unit,
        "min_overlap_m2": float(min_overlap_m2),
        "srid": int(srid),
    }
    overlay = _assemble(raw, crs=crs, notes=notes)
    for name, c in counts.items():
        logger.info("%s: %d rows in = %d used + %d rejected", name, c["rows_in"],
                    c["rows_used"], c["rows_rejected"])
    return overlay, rejects, repairs, counts
