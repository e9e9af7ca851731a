"""The PostGIS farmland engine against the in-process engine, on real reference parcels.

No co-located declared + reference pair exists in ``../shared/data/parcels``, so the
declarations are built here from real reference parcels (NL referentiepercelen, AT
INVEKOS Referenzen, DE-SH Feldblöcke) with known over-declarations, overlapping pairs
(between applicants, and of one applicant), double claims by parcel id, land drawn
outside the parcels, previous-year declarations (unchanged, moved, halved, by id) and a
synthetic land-use layer with overlapping polygons of one class and polygons of
thousands of vertices (cut by ``ST_Subdivide``). Both engines run on the same data and
every overlay table must agree.

The tests open their connections with psycopg directly (library code under
``geosup/farmland`` is handed one).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyproj
import pytest
import shapely
from psycopg import sql

from geosup.errors import (
    ConfigError,
    CRSError,
    DataSourceError,
    GeometryRepairWarning,
    SchemaError,
    StoreError,
    ValidationError,
)
from geosup.farmland.engine import overlay_inprocess
from geosup.farmland.engine_postgis import overlay_postgis, overlay_postgis_tables
from geosup.farmland.prepare import Prepared, prepare
from geosup.farmland.tables import TABLE_COLUMNS, Overlay
from geosup.store import write_database_table

pytestmark = pytest.mark.postgis

RTOL, ATOL = 1e-6, 1e-4
KEYS = {
    "declarations": ["declaration_id"],
    "parcels": ["parcel_id"],
    "links": ["declaration_id", "parcel_id", "by"],
    "pairs": ["declaration_a", "declaration_b"],
    "land_use": ["declaration_id", "land_use"],
    "outside": ["declaration_id"],
    "changes": ["declaration_id"],
}


# ---------------------------------------------------------------------------------------------
# Real parcels and the declarations built from them
# ---------------------------------------------------------------------------------------------


def _nl(root: Path) -> gpd.GeoDataFrame:
    raw = gpd.read_file(root / "reference/nl/referentiepercelen.gpkg")
    return gpd.GeoDataFrame({
        "parcel_id": [f"NL{i:04d}" for i in range(len(raw))],
        "eligible_area": (raw.area / 10_000.0 * 0.97).round(4),  # ha; no area attribute
        "land_use": raw["type"].astype(str),
    }, geometry=raw.geometry.values, crs=raw.crs)


def _at(root: Path) -> gpd.GeoDataFrame:
    raw = gpd.read_file("/vsizip/" + str(root / "reference/at/"
                                         "inspire_referenzen_2021_polygon.gpkg.zip"))
    return gpd.GeoDataFrame({
        "parcel_id": raw["RFL_ID"],  # float64 ids (integral): read as "107721939"
        "eligible_area": raw["BRUTTOFLAECHE_HA"],
        "land_use": raw["REF_ART_BEZEICHNUNG"],
    }, geometry=raw.geometry.values, crs=raw.crs)


def _de_sh(root: Path) -> gpd.GeoDataFrame:
    raw = gpd.read_file("/vsizip/" + str(root / "reference/de_sh/Feldbloecke_2026_GPKG.zip"))
    return gpd.GeoDataFrame({
        "parcel_id": raw["FLIK"],
        "eligible_area": raw["Flaeche"],
        "land_use": raw["HBN"],
    }, geometry=raw.geometry.values, crs=raw.crs)


LOADERS = {"nl": _nl, "at": _at, "de_sh": _de_sh}


def _pid_text(values: pd.Series) -> np.ndarray:
    """Parcel ids as prepare() will read them (integral floats without '.0')."""
    if pd.api.types.is_float_dtype(values):
        return values.astype("Int64").astype(str).to_numpy(dtype=object)
    return values.astype(str).to_numpy(dtype=object)


def build_inputs(parcels: gpd.GeoDataFrame, *, seed: int = 7
                 ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Declarations (2025), previous declarations (2024) and land use built from parcels.

    Roles of the parcels (shuffled): 0-39 drawn inside (every 4th over-declared by 30 %),
    40-49 declared by id only, 50-59 drawn and shifted partly outside, 60-69 split between
    two applicants with an overlapping strip, 70-74 declared by id by two applicants,
    75-79 two overlapping drawings of one applicant, the rest undeclared.
    """
    rng = np.random.default_rng(seed)
    n = len(parcels)
    order = rng.permutation(n)
    geoms = np.asarray(parcels.geometry.array, dtype=object)
    pids = parcels["parcel_id"].to_numpy(dtype=object)
    eligible = parcels["eligible_area"].to_numpy(dtype=np.float64)
    side = np.sqrt(shapely.area(geoms))
    rows: list[dict[str, object]] = []

    def add(i: int, applicant: str, geom: object, *, by_id: bool = False,
            factor: float = 1.0) -> None:
        rows.append({
            "applicant_id": applicant, "village": f"V{i % 4}", "crop": "wheat",
            "parcel_id": pids[i] if by_id else None,
            "declared_area": round(float(eligible[i]) * factor, 4),
            "geometry": None if by_id else geom,
        })

    for k, i in enumerate(order[:40]):
        inner = shapely.buffer(geoms[i], -0.5)
        add(i, f"A{k:03d}", inner if not inner.is_empty else geoms[i],
            factor=1.3 if k % 4 == 0 else 1.0)
    for k, i in enumerate(order[40:50]):
        add(i, f"B{k:03d}", None, by_id=True, factor=1.5 if k % 3 == 0 else 1.0)
    for k, i in enumerate(order[50:60]):
        add(i, f"C{k:03d}", shapely.affinity.translate(geoms[i], 0.35 * side[i], 0.1 * side[i]))
    for k, i in enumerate(order[60:70]):
        x0, y0, x1, y1 = geoms[i].bounds
        w = x1 - x0
        add(i, f"D{k:03d}", shapely.intersection(geoms[i], shapely.box(x0, y0, x0 + 0.6 * w, y1)),
            factor=0.6)
        add(i, f"E{k:03d}", shapely.intersection(geoms[i], shapely.box(x0 + 0.4 * w, y0, x1, y1)),
            factor=0.6)
    for k, i in enumerate(order[70:75]):
        add(i, f"F{k:03d}", None, by_id=True)
        add(i, f"G{k:03d}", None, by_id=True, factor=0.5)
    for k, i in enumerate(order[75:80]):
        add(i, f"H{k:03d}", geoms[i], factor=0.7)
        add(i, f"H{k:03d}", shapely.buffer(shapely.centroid(geoms[i]), 0.3 * side[i]),
            factor=0.3)
    current = gpd.GeoDataFrame(rows, geometry="geometry", crs=parcels.crs)
    current.insert(0, "declaration_id", [f"D25-{j:04d}" for j in range(len(current))])
    current.insert(2, "year", 2025)
    current["subsidy_amount"] = (current["declared_area"] * 250.0).round(2)
    current = current[["declaration_id", "applicant_id", "year", "village", "parcel_id", "crop",
                       "declared_area", "subsidy_amount", "geometry"]]

    # The year before: same applicants on the same land, unchanged, moved, halved, by id.
    prev_rows = []
    first = current.iloc[:40]
    for j in range(30):
        row = first.iloc[j].to_dict()
        g = row["geometry"]
        if 10 <= j < 20:
            g = shapely.affinity.translate(g, 5.0, 0.0)
        elif 20 <= j < 25:
            x0, y0, x1, y1 = g.bounds
            g = shapely.intersection(g, shapely.box(x0, y0, (x0 + x1) / 2, y1))
        if g.is_empty:
            g = row["geometry"]
        row["geometry"] = g
        prev_rows.append(row)
    for j in range(40, 45):  # by id the year before as well
        prev_rows.append(current.iloc[j].to_dict())
    previous = gpd.GeoDataFrame(prev_rows, geometry="geometry", crs=parcels.crs)
    previous["year"] = 2024
    previous["declaration_id"] = [f"D24-{j:04d}" for j in range(len(previous))]
    previous["declared_area"] = previous["declared_area"] * 0.9

    # Land use: overlapping forest squares (one class), water strips along parcel edges,
    # a built-up disc of 1024 vertices and a road of thousands of vertices (both cut by
    # ST_Subdivide).
    lu_geoms, lu_class = [], []
    for i in order[:20]:
        c = shapely.centroid(geoms[i])
        s = 0.25 * side[i]
        lu_geoms += [shapely.box(c.x - s, c.y - s, c.x + s, c.y + s),
                     shapely.box(c.x - s / 2, c.y - s / 2, c.x + 1.5 * s, c.y + 1.5 * s)]
        lu_class += ["forest", "forest"]
    for i in order[50:58]:
        lu_geoms.append(shapely.buffer(shapely.boundary(geoms[i]), 3.0))
        lu_class.append("water")
    for i in order[60:66]:
        lu_geoms.append(shapely.buffer(shapely.centroid(geoms[i]), 0.3 * side[i], quad_segs=256))
        lu_class.append("built-up")
    stops = shapely.centroid(geoms[order[:40:4]])  # a road through ten declared parcels
    stops = stops[np.argsort(shapely.get_x(stops))]
    line = shapely.linestrings(shapely.get_x(stops), shapely.get_y(stops))
    line = shapely.segmentize(line, shapely.length(line) / 2000)
    lu_geoms.append(shapely.buffer(line, 4.0, quad_segs=2))
    lu_class.append("road")
    land_use = gpd.GeoDataFrame({"land_use": lu_class}, geometry=lu_geoms, crs=parcels.crs)
    return current, previous, land_use


def _prepare(decl: gpd.GeoDataFrame, parcels: gpd.GeoDataFrame, **kw: object) -> Prepared:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryRepairWarning)
        return prepare(decl, parcels, area_unit=kw.pop("area_unit", "ha"), **kw)


# ---------------------------------------------------------------------------------------------
# Comparing overlays
# ---------------------------------------------------------------------------------------------


def assert_same_overlay(a: Overlay, b: Overlay) -> None:
    """Every table: same columns and dtypes, same key sets, equal values (areas within
    1e-6 relative or 1e-4 m² absolute), geometries equal up to the same tolerance."""
    for name in TABLE_COLUMNS:
        left = getattr(a, name).sort_values(KEYS[name]).reset_index(drop=True)
        right = getattr(b, name).sort_values(KEYS[name]).reset_index(drop=True)
        assert list(left.columns) == list(right.columns), name
        assert left.dtypes.astype(str).to_dict() == right.dtypes.astype(str).to_dict(), name
        left_keys = set(map(tuple, left[KEYS[name]].astype(str).to_numpy()))
        right_keys = set(map(tuple, right[KEYS[name]].astype(str).to_numpy()))
        assert left_keys == right_keys, (name, sorted(left_keys ^ right_keys)[:10])
        assert len(left) == len(right), name
        for col in left.columns:
            x, y = left[col], right[col]
            if col == "geometry":
                gx = np.asarray(x, dtype=object)
                gy = np.asarray(y, dtype=object)
                assert (shapely.is_missing(gx) == shapely.is_missing(gy)).all(), name
                both = ~shapely.is_missing(gx)
                if both.any():
                    ax = shapely.area(gx[both])
                    np.testing.assert_allclose(shapely.area(gy[both]), ax, rtol=RTOL,
                                               atol=ATOL, err_msg=f"{name}.geometry area")
                    diff = shapely.area(shapely.symmetric_difference(gx[both], gy[both]))
                    assert (diff <= ATOL + RTOL * ax).all(), (name, diff.max())
            elif pd.api.types.is_float_dtype(x):
                np.testing.assert_allclose(y.to_numpy(), x.to_numpy(), rtol=RTOL, atol=ATOL,
                                           err_msg=f"{name}.{col}")
            else:
                assert x.astype(object).fillna("<NA>").tolist() == \
                    y.astype(object).fillna("<NA>").tolist(), f"{name}.{col}"


def _working_relations(conn: psycopg.Connection) -> list[str]:
    """Relations this session could have left: temporary ones and geosup_fl_* anywhere."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relpersistence = 't' OR c.relname LIKE 'geosup\\_fl\\_%' ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def _user_relations(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
        "AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%' "
        "ORDER BY 1").fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def conn(postgis_url: str) -> Iterator[psycopg.Connection]:
    connection = psycopg.connect(postgis_url, autocommit=False)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="module")
def scenarios(shared_data: Path) -> dict[str, tuple]:
    root = shared_data / "parcels"
    out = {}
    for name, load in LOADERS.items():
        parcels = load(root)
        decl, prev, lu = build_inputs(parcels)
        out[name] = (parcels, decl, prev, lu)
    return out


# ---------------------------------------------------------------------------------------------
# Parity on prepared inputs
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("country", list(LOADERS))
def test_same_overlay_as_inprocess_on_real_parcels(
    scenarios: dict[str, tuple], conn: psycopg.Connection, country: str
) -> None:
    parcels, decl, prev, lu = scenarios[country]
    prepared = _prepare(decl, parcels, land_use=lu, previous=prev)
    expected = overlay_inprocess(prepared)
    before = _user_relations(conn)
    got = overlay_postgis(conn, prepared)
    assert _working_relations(conn) == []  # dropped before returning
    conn.rollback()
    assert _user_relations(conn) == before
    assert got.notes["engine"] == "postgis"
    assert got.notes["years"] == expected.notes["years"] == (2025,)
    assert got.crs == prepared.crs
    assert_same_overlay(expected, got)

    # The scenario exercises every table (so that the comparison means something).
    assert (got.links["by"] == "id").sum() >= 10
    assert len(got.pairs) >= 15
    assert (got.pairs["applicant_a"] == got.pairs["applicant_b"]).any()  # one applicant
    assert (got.outside["outside_m2"] > 1.0).sum() >= 8
    assert set(got.land_use["land_use"]) >= {"forest", "water", "built-up", "road"}
    assert got.changes["sym_diff_m2"].notna().sum() >= 20
    assert got.changes["sym_diff_m2"].isna().sum() >= 5  # by parcel id
    assert (got.changes["sym_diff_m2"] > 1.0).sum() >= 10  # moved or halved


def test_overlapping_land_use_of_one_class_is_not_counted_twice(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, _, lu = scenarios["at"]
    prepared = _prepare(decl, parcels, land_use=lu)
    got = overlay_postgis(conn, prepared)
    conn.rollback()
    # Exact expectation with shapely: drawing (or declared parcel) ∩ union of the class.
    eff = np.asarray(prepared.declarations.geometry.array, dtype=object).copy()
    by_id = shapely.is_missing(eff)
    pos = pd.Series(np.arange(len(prepared.parcels)), index=prepared.parcels["parcel_id"])
    eff[by_id] = np.asarray(prepared.parcels.geometry.array, dtype=object)[
        pos.reindex(prepared.declarations["parcel_id"][by_id]).to_numpy(dtype=np.int64)]
    forest = shapely.union_all(prepared.land_use.geometry[prepared.land_use["land_use"] ==
                                                          "forest"].to_numpy())
    want = shapely.area(shapely.intersection(eff, forest))
    got_forest = got.land_use[got.land_use["land_use"] == "forest"].set_index("declaration_id")
    ids = prepared.declarations["declaration_id"].to_numpy(dtype=object)
    hit = want > 0.01
    assert hit.sum() >= 10
    np.testing.assert_allclose(got_forest.loc[ids[hit], "overlap_m2"].to_numpy(), want[hit],
                               rtol=RTOL, atol=ATOL)
    # The summed areas of the overlapping squares would be larger: the test can fail.
    squares = prepared.land_use.geometry[prepared.land_use["land_use"] == "forest"].to_numpy()
    summed = shapely.area(shapely.intersection(eff[hit][:, None], squares[None, :])).sum(axis=1)
    assert (summed > want[hit] + 1.0).any()
    # ST_Subdivide: the road (thousands of vertices) is measured whole all the same.
    road = prepared.land_use.geometry[prepared.land_use["land_use"] == "road"].to_numpy()
    assert shapely.get_num_coordinates(road).max() > 1000


def test_crs_without_epsg_code_uses_srid_0(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, prev, lu = scenarios["de_sh"]
    lon, _ = parcels.to_crs(4326).union_all().centroid.coords[0]
    custom = pyproj.CRS.from_proj4(f"+proj=tmerc +lat_0=0 +lon_0={lon:.3f} +k=1 +x_0=500000 "
                                   "+y_0=0 +ellps=GRS80 +units=m +no_defs")
    assert custom.to_epsg() is None
    prepared = _prepare(decl, parcels, land_use=lu, previous=prev, crs=custom)
    got = overlay_postgis(conn, prepared)
    conn.rollback()
    assert got.notes["srid"] == 0
    assert_same_overlay(overlay_inprocess(prepared), got)


def test_progress_adds_up_to_the_declarations(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    prepared = _prepare(decl, parcels)
    calls: list[int] = []
    overlay_postgis(conn, prepared, progress=calls.append)
    conn.rollback()
    assert len(calls) >= 3
    assert sum(calls) == len(prepared.declarations)


def test_working_tables_in_a_schema(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, prev, lu = scenarios["nl"]
    prepared = _prepare(decl, parcels, land_use=lu, previous=prev)
    conn.execute("CREATE SCHEMA scratch")
    conn.commit()
    got = overlay_postgis(conn, prepared, schema="scratch")
    assert _working_relations(conn) == []
    conn.commit()
    assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'scratch'"
                        ).fetchone()[0] == 0
    assert_same_overlay(overlay_inprocess(prepared), got)


def test_empty_declarations_give_empty_tables(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, _, lu = scenarios["at"]
    prepared = _prepare(decl.iloc[:0], parcels, land_use=lu)
    got = overlay_postgis(conn, prepared)
    conn.rollback()
    assert len(got.declarations) == 0 and len(got.links) == 0 and len(got.pairs) == 0
    assert len(got.parcels) == len(prepared.parcels)
    assert_same_overlay(overlay_inprocess(prepared), got)


# ---------------------------------------------------------------------------------------------
# Inputs that live in PostGIS
# ---------------------------------------------------------------------------------------------


def _with_bad_rows(parcels: gpd.GeoDataFrame, decl: gpd.GeoDataFrame
                   ) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Append the bad rows the issue names to real inputs (rows numbered from 1)."""
    x0, y0, x1, y1 = parcels.total_bounds
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    pid = parcels["parcel_id"]
    bad_parcels = gpd.GeoDataFrame({
        "parcel_id": [pid.iloc[0], pid.iloc[1], None],  # 2 duplicate ids, 1 missing
        "eligible_area": [1.0, -2.0, 1.0],
        "land_use": ["x", "x", "x"],
    }, geometry=[shapely.box(cx, cy, cx + 50, cy + 50), shapely.box(cx, cy, cx + 60, cy + 60),
                 shapely.box(cx, cy, cx + 70, cy + 70)], crs=parcels.crs)
    bow_tie = shapely.Polygon([(cx, cy), (cx + 100, cy + 100), (cx + 100, cy), (cx, cy + 100)])
    collection = shapely.GeometryCollection([
        shapely.box(cx + 200, cy, cx + 260, cy + 60),
        shapely.LineString([(cx + 300, cy), (cx + 320, cy + 5)])])
    first_id = decl["declaration_id"].iloc[0]
    unknown = 999_999_999.0 if pd.api.types.is_float_dtype(pid) else "NOPE-404"
    bad_decl = gpd.GeoDataFrame({
        "declaration_id": ["BAD-1", "BAD-2", first_id, "BAD-4", "BAD-5", "BAD-6", "BAD-7",
                           "BAD-8", "BAD-9"],
        "applicant_id": ["Z1", "Z2", "Z3", "Z4", "Z5", "Z6", "Z7", None, "Z9"],
        "year": [2025] * 9,
        "village": ["V9"] * 9,
        "parcel_id": [None, None, None, None, None, unknown, None, None, None],
        "crop": ["maize"] * 9,
        "declared_area": [0.5, 0.5, 0.5, 0.0, -1.0, 0.5, 0.5, 0.5, 0.5],
        "subsidy_amount": [1.0] * 9,
    }, geometry=[bow_tie, shapely.Polygon(), shapely.box(cx, cy, cx + 10, cy + 10),
                 shapely.box(cx, cy, cx + 10, cy + 10), shapely.box(cx, cy, cx + 10, cy + 10),
                 None, collection, shapely.box(cx, cy, cx + 10, cy + 10),
                 shapely.box(cx, cy, cx + 0.5, cy + 0.5)], crs=parcels.crs)
    if pd.api.types.is_float_dtype(pid):
        bad_decl["parcel_id"] = bad_decl["parcel_id"].astype("float64")
        decl = decl.assign(parcel_id=decl["parcel_id"].astype("float64"))
    parcels = pd.concat([parcels, bad_parcels], ignore_index=True)
    decl = pd.concat([decl, bad_decl], ignore_index=True)
    parcels.insert(0, "_row", np.arange(1, len(parcels) + 1))
    decl.insert(0, "_row", np.arange(1, len(decl) + 1))
    return parcels, decl


def _numbered(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    frame = frame.reset_index(drop=True)
    frame.insert(0, "_row", np.arange(1, len(frame) + 1))
    return frame


def _ledger(frame: pd.DataFrame) -> list[tuple]:
    return sorted((str(s), int(r), str(k), str(why)) for s, r, k, why in
                  frame[["source", "row", "key", "reason"]].itertuples(index=False))


@pytest.mark.parametrize("country", ["at", "de_sh"])
def test_tables_in_postgis_same_overlay_and_rejects(
    scenarios: dict[str, tuple], postgis_url: str, conn: psycopg.Connection, country: str
) -> None:
    parcels, decl, prev, lu = scenarios[country]
    parcels, decl = _with_bad_rows(parcels, decl)
    prev, lu = _numbered(prev), _numbered(lu)
    # Parcels stay in their national CRS; declarations come in WGS 84: two CRSs.
    decl_wgs = decl.to_crs(4326)
    prev_wgs = prev.to_crs(4326)
    srid = 32632 if country == "de_sh" else 32633
    prepared = _prepare(decl_wgs, parcels, land_use=lu, previous=prev_wgs, crs=srid)
    expected = overlay_inprocess(prepared)
    for name, frame in (("decl", decl_wgs), ("prev", prev_wgs), ("parcels", parcels),
                        ("land_use", lu)):
        write_database_table(postgis_url, frame, table=name, schema="inputs")
    before = _user_relations(conn)
    got, rejects, repairs, counts = overlay_postgis_tables(
        conn, declarations="inputs.decl", parcels="inputs.parcels", land_use="inputs.land_use",
        previous="inputs.prev", area_unit="ha", srid=srid)
    assert _working_relations(conn) == []
    conn.rollback()
    assert _user_relations(conn) == before

    assert_same_overlay(expected, got)
    assert got.notes["years"] == (2025,)
    assert counts == prepared.counts
    assert _ledger(rejects) == _ledger(prepared.rejects)
    assert [tuple(r) for r in repairs[["source", "row", "key"]].astype(str).to_numpy()] == \
        [tuple(r) for r in prepared.repairs[["source", "row", "key"]].astype(str).to_numpy()]
    assert sorted(repairs["reason"].str.split(":").str[0]) == \
        sorted(prepared.repairs["reason"].str.split(":").str[0])
    assert rejects["raw"].str.startswith("{").all()

    reasons = dict(zip(rejects["key"], rejects["reason"], strict=False))
    assert reasons["BAD-2"] == "declaration has neither a geometry nor a parcel_id"
    assert reasons["BAD-4"] == "declared_area must be > 0 (got 0)"
    assert reasons["BAD-5"] == "declared_area must be > 0 (got -1)"
    assert reasons["BAD-6"].startswith("declares parcel ") and \
        reasons["BAD-6"].endswith("which is not in the reference parcels")
    assert reasons["BAD-9"].startswith("area 0.25")  # 0.5 m x 0.5 m, through WGS 84
    assert reasons["BAD-9"].endswith(" m² is below the sliver threshold (1 m²)")
    assert rejects.loc[rejects["key"] == "BAD-8", "reason"].item() == "missing applicant_id"
    dup = rejects[rejects["reason"].str.startswith("duplicate declaration_id")]
    assert len(dup) == 1 and dup["reason"].item().endswith("(first on declarations row 1)")
    parcel_reasons = rejects.loc[rejects["source"] == "parcels", "reason"].tolist()
    assert sum(r.startswith("duplicate parcel_id") for r in parcel_reasons) == 1
    assert "eligible_area must be >= 0 (got -2)" in parcel_reasons
    assert "missing parcel_id" in parcel_reasons
    bow = repairs[repairs["key"] == "BAD-1"]["reason"].item()
    assert bow.startswith("repaired: Self-intersection") and "MultiPolygon" in bow
    assert (repairs["reason"] == "kept the polygonal part of a GeometryCollection "
                                 "(other parts dropped)").sum() == 1
    assert "BAD-1" in set(got.declarations["declaration_id"])  # repaired, kept


def test_tables_without_row_numbers_and_with_a_column_map(
    scenarios: dict[str, tuple], postgis_url: str, conn: psycopg.Connection
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    decl = pd.concat([decl, decl.iloc[[0]]], ignore_index=True)  # a duplicate id, last row
    renamed = decl.rename(columns={"declaration_id": "Nr", "applicant_id": "Who",
                                   "declared_area": "ha"}).rename_geometry("shape")
    write_database_table(postgis_url, renamed, table="Declarations 2025")
    write_database_table(postgis_url, parcels, table="parcels")
    got, rejects, _, counts = overlay_postgis_tables(
        conn, declarations="Declarations 2025", parcels="public.parcels", area_unit="ha",
        srid=28992, declaration_columns={"declaration_id": "Nr", "applicant_id": "Who",
                                         "declared_area": "ha", "geometry": "shape"})
    conn.rollback()
    prepared = _prepare(decl, parcels, crs=28992)
    assert_same_overlay(overlay_inprocess(prepared), got)
    assert counts["declarations"] == prepared.counts["declarations"]
    assert rejects["row"].isna().all()
    # Without row numbers the first row is named "another row" (prepare counts positions).
    want = prepared.rejects.assign(row=0, reason=prepared.rejects["reason"].str.replace(
        "(first on row 1)", "(first on another row)", regex=False))
    assert _ledger(rejects.assign(row=0)) == _ledger(want)
    assert rejects["reason"].iloc[-1] == \
        f"duplicate declaration_id '{decl['declaration_id'].iloc[0]}' (first on another row)"


def test_missing_column_and_missing_crs_are_refused(
    scenarios: dict[str, tuple], postgis_url: str, conn: psycopg.Connection
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    write_database_table(postgis_url, decl.drop(columns="applicant_id"), table="no_applicant")
    write_database_table(postgis_url, decl, table="decl")
    write_database_table(postgis_url, parcels, table="parcels")
    with pytest.raises(SchemaError, match="applicant_id"):
        overlay_postgis_tables(conn, declarations="no_applicant", parcels="parcels",
                               area_unit="ha", srid=28992)
    with pytest.raises(DataSourceError, match="no table 'missing'"):
        overlay_postgis_tables(conn, declarations="decl", parcels="missing", area_unit="ha",
                               srid=28992)
    conn.rollback()
    conn.execute("CREATE TABLE nocrs AS SELECT parcel_id, eligible_area, "
                 "ST_SetSRID(geometry, 0) AS geometry FROM parcels")
    with pytest.raises(CRSError, match="SRID 0"):
        overlay_postgis_tables(conn, declarations="decl", parcels="nocrs", area_unit="ha",
                               srid=28992)
    with pytest.raises(CRSError, match="not a metric"):
        overlay_postgis_tables(conn, declarations="decl", parcels="parcels", area_unit="ha",
                               srid=4326)
    with pytest.raises(ConfigError, match="area unit"):
        overlay_postgis_tables(conn, declarations="decl", parcels="parcels", area_unit="",
                               srid=28992)
    conn.rollback()


# ---------------------------------------------------------------------------------------------
# One transaction: failures leave nothing, names are quoted or refused
# ---------------------------------------------------------------------------------------------


def test_failure_midway_leaves_the_database_unchanged(
    scenarios: dict[str, tuple], postgis_url: str, conn: psycopg.Connection
) -> None:
    parcels, decl, prev, lu = scenarios["at"]
    prepared = _prepare(decl, parcels, land_use=lu, previous=prev)
    write_database_table(postgis_url, parcels, table="parcels")
    write_database_table(postgis_url, decl, table="decl")
    before = _user_relations(conn)
    conn.rollback()

    # 1. An exception in the middle of the engine (raised by the progress callback).
    def boom(_: int) -> None:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        overlay_postgis(conn, prepared, progress=boom)
    assert _working_relations(conn) == []  # the savepoint is rolled back
    assert conn.execute("SELECT 1").fetchone() == (1,)  # the caller's transaction is usable
    conn.rollback()

    # 2. A bad SQL identifier midway (a schema for the working tables that does not exist).
    with pytest.raises(StoreError, match="failed"):
        overlay_postgis(conn, prepared, schema="no_such_schema")
    assert _working_relations(conn) == []
    conn.rollback()

    # 3. An exception after the engine ran, before the caller commits: the caller rolls back.
    with pytest.raises(ZeroDivisionError):
        try:
            overlay_postgis_tables(conn, declarations="decl", parcels="parcels", area_unit="ha",
                                   srid=31287)
            1 / 0  # noqa: B018
        except BaseException:
            conn.rollback()
            raise
    assert _working_relations(conn) == []
    assert _user_relations(conn) == before
    assert conn.execute("SELECT count(*) FROM decl").fetchone()[0] == len(decl)
    conn.rollback()

    # 4. A statement that fails inside SQL (an unknown SRID): nothing is left either.
    with pytest.raises(CRSError):
        overlay_postgis_tables(conn, declarations="decl", parcels="parcels", area_unit="ha",
                               srid=987_654)
    assert _working_relations(conn) == []
    conn.rollback()
    with psycopg.connect(postgis_url) as other:  # and a fresh session sees the same tables
        assert _user_relations(other) == before


def test_sql_injection_in_table_names_is_quoted_or_refused(
    scenarios: dict[str, tuple], postgis_url: str, conn: psycopg.Connection
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    write_database_table(postgis_url, parcels, table="parcels")
    write_database_table(postgis_url, decl, table='decl"; DROP TABLE parcels; --')
    nasty = ['parcels; DROP TABLE parcels; --', 'public.parcels"; DROP TABLE parcels; --',
             "x' OR '1'='1", "public.nope"]
    for name in nasty:
        with pytest.raises(DataSourceError, match="no table"):
            overlay_postgis_tables(conn, declarations=name, parcels="parcels", area_unit="ha",
                                   srid=28992)
        conn.rollback()
    with pytest.raises(ValidationError):
        overlay_postgis_tables(conn, declarations="x" * 80, parcels="parcels", area_unit="ha",
                               srid=28992)
    with pytest.raises(ValidationError):
        overlay_postgis(conn, _prepare(decl, parcels), schema='pg_temp"; DROP TABLE parcels; --'
                        + "x" * 40)
    conn.rollback()
    # A real table with such a name is simply quoted.
    got, _, _, _ = overlay_postgis_tables(
        conn, declarations='public.decl"; DROP TABLE parcels; --', parcels="parcels",
        area_unit="ha", srid=28992)
    conn.rollback()
    assert len(got.declarations) == len(_prepare(decl, parcels, crs=28992).declarations)
    assert conn.execute("SELECT count(*) FROM parcels").fetchone()[0] == len(parcels)
    conn.rollback()


def test_connection_must_not_autocommit(
    scenarios: dict[str, tuple], postgis_url: str
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    prepared = _prepare(decl, parcels)
    with psycopg.connect(postgis_url, autocommit=True) as auto, \
            pytest.raises(ValidationError, match="autocommit"):
        overlay_postgis(auto, prepared)
    with pytest.raises(ValidationError, match=r"psycopg\.Connection"):
        overlay_postgis(postgis_url, prepared)  # type: ignore[arg-type]


def test_a_failed_transaction_is_reported_not_hidden(
    scenarios: dict[str, tuple], conn: psycopg.Connection
) -> None:
    parcels, decl, _, _ = scenarios["nl"]
    prepared = _prepare(decl, parcels)
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier("nope")))
    with pytest.raises(StoreError, match="roll it back"):
        overlay_postgis(conn, prepared)
    conn.rollback()
    assert len(overlay_postgis(conn, prepared).declarations) == len(prepared.declarations)
    conn.rollback()
