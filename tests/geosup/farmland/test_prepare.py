"""Tests of geosup.farmland.prepare on real reference parcels (../shared/data/parcels)."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely import affinity

from geosup.crs import AREA_UNITS
from geosup.errors import AreaUnitError, ConfigError, CRSError, SchemaError
from geosup.farmland.prepare import DECLARATION_COLUMNS, PARCEL_COLUMNS, Prepared, prepare
from geosup.io import RejectsLedger

pytestmark = pytest.mark.filterwarnings("ignore::geosup.errors.GeometryRepairWarning")

# Reference layers: path under parcels/, id column, area column (ha) or None, EPSG.
REFERENCES = {
    "at": ("/vsizip/{root}/reference/at/inspire_referenzen_2021_polygon.gpkg.zip", "RFL_ID",
           "BRUTTOFLAECHE_HA", 31287),
    "nl": ("{root}/reference/nl/referentiepercelen.gpkg", None, None, 28992),
    "de_sh": ("/vsizip/{root}/reference/de_sh/Feldbloecke_2026_GPKG.zip", "FLIK", "Flaeche",
              4647),
    "fr": ("{root}/declared/fr/extracted/PARCELLES_GRAPHIQUES.gpkg", "id_parcel", "surf_parc",
           2154),
}


def reference_parcels(shared_data: Path, country: str) -> gpd.GeoDataFrame:
    """A country's real parcels as canonical columns (eligible_area in ha)."""
    template, id_col, area_col, epsg = REFERENCES[country]
    raw = gpd.read_file(template.format(root=shared_data / "parcels"))
    assert raw.crs.to_epsg() == epsg
    ids = (raw[id_col].astype("Int64").astype(str) if id_col and raw[id_col].dtype.kind == "f"
           else raw[id_col].astype(str) if id_col else pd.Series(
               [f"{country}-{i}" for i in range(len(raw))]))
    area = raw[area_col].astype(float) if area_col else raw.area / 1e4
    return gpd.GeoDataFrame(
        {"_row": np.arange(1, len(raw) + 1), "parcel_id": ids.to_numpy(),
         "eligible_area": area.to_numpy()},
        geometry=raw.geometry.to_numpy(), crs=raw.crs,
    )


def declarations_from(parcels: gpd.GeoDataFrame, n: int = 20, *, year: int = 2025,
                      prefix: str = "D") -> gpd.GeoDataFrame:
    """Declarations drawn as the first n parcels' geometries (declared area = drawn, ha)."""
    geoms = parcels.geometry.to_numpy()[:n]
    return gpd.GeoDataFrame(
        {"_row": np.arange(1, n + 1),
         "declaration_id": [f"{prefix}{i:03d}" for i in range(n)],
         "applicant_id": [f"A{i % 5}" for i in range(n)],
         "year": year,
         "parcel_id": parcels["parcel_id"].to_numpy()[:n],
         "declared_area": shapely.area(geoms) / 1e4},
        geometry=geoms, crs=parcels.crs,
    )


@pytest.fixture
def at(shared_data: Path) -> gpd.GeoDataFrame:
    return reference_parcels(shared_data, "at")


def ledger_reasons(prep: Prepared, source: str) -> dict[int, str]:
    rows = prep.rejects[prep.rejects["source"] == source]
    return dict(zip(rows["row"].astype(int), rows["reason"], strict=True))


def check_counts(prep: Prepared) -> None:
    for name, c in prep.counts.items():
        assert c["rows_in"] == c["rows_used"] + c["rows_rejected"], name
        assert c["rows_rejected"] == int((prep.rejects["source"] == name).sum()), name


# ---------------------------------------------------------------------------------------------
# Units, columns, CRS
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unit", [None, "", "acre", "furlong"])
def test_area_unit_missing_or_unknown_is_a_config_error_before_any_work(at, unit):
    no_crs = at.set_crs(None, allow_override=True)  # would be a CRSError if work started
    with pytest.raises(ConfigError, match="area unit"):
        prepare(declarations_from(no_crs), no_crs, area_unit=unit)


@pytest.mark.parametrize(("unit", "factor"), [("ha", 1e4), ("公顷", 1e4), ("mu", 10000 / 15),
                                              ("m²", 1.0)])
def test_areas_are_converted_from_the_declared_unit(at, unit, factor):
    # the fixtures' areas are in ha: restate them in the unit under test
    parcels = at.assign(eligible_area=at["eligible_area"] * 1e4 / factor)
    decl = declarations_from(at)
    decl["declared_area"] = decl["declared_area"] * 1e4 / factor
    prep = prepare(decl, parcels, area_unit=unit)
    assert prep.area_unit in {"ha", "mu", "m2"}
    np.testing.assert_allclose(prep.parcels["eligible_m2"], at["eligible_area"] * 1e4)
    np.testing.assert_allclose(prep.declarations["declared_m2"],
                               declarations_from(at)["declared_area"] * 1e4)


@pytest.mark.parametrize(("unit", "scale", "hint"), [
    ("ha", 1e4, "they look like 'm2'"),  # m² values declared as ha
    ("mu", 1 / 15, "they look like 'ha'"),  # ha values declared as mu
    ("m2", 1e-4, "they look like 'ha'"),
    ("ha", 1000.0, "no area unit makes them fit"),
])
def test_a_layer_in_the_wrong_unit_is_refused(at, unit, scale, hint):
    decl = declarations_from(at)
    ha = 1e4 / AREA_UNITS[unit]  # values in `unit` that are right
    good_parcels = at.assign(eligible_area=at["eligible_area"] * ha)
    good_decl = decl.assign(declared_area=decl["declared_area"] * ha)
    with pytest.raises(AreaUnitError, match=f"eligible areas.*{hint}"):
        prepare(good_decl, at.assign(eligible_area=at["eligible_area"] * ha * scale),
                area_unit=unit)
    with pytest.raises(AreaUnitError, match=f"declared areas.*{hint}"):
        prepare(decl.assign(declared_area=decl["declared_area"] * ha * scale), good_parcels,
                area_unit=unit)


def test_one_area_in_another_unit_is_a_rejected_row(at):
    """A value typed in m² in a file of ha (10,000x its drawing) is rejected with the
    ratio; an over-declaration of 3x stays (the over_declared rule judges it)."""
    decl = declarations_from(at, 6)
    decl.loc[1, "declared_area"] *= 1e4
    decl.loc[2, "declared_area"] *= 3.0
    prep = prepare(decl, at, area_unit="ha")
    reasons = ledger_reasons(prep, "declarations")
    assert list(reasons) == [2]
    ratio = float(reasons[2].split(" times the drawn area")[0].rsplit(" ", 1)[1])
    assert ratio == pytest.approx(1e4, rel=1e-3)  # the drawing was snapped to the 1 cm grid
    assert "another unit" in reasons[2]
    assert len(prep.declarations) == 5
    check_counts(prep)


@pytest.mark.parametrize("country", sorted(REFERENCES))
def test_real_parcels_survive_with_their_areas(shared_data, country):
    parcels = reference_parcels(shared_data, country)
    decl = declarations_from(parcels)
    prep = prepare(decl, parcels, area_unit="ha")
    check_counts(prep)
    assert prep.crs.is_projected
    assert {a.unit_name for a in prep.crs.axis_info} == {"metre"}
    assert list(prep.parcels.columns) == list(PARCEL_COLUMNS)
    assert list(prep.declarations.columns) == list(DECLARATION_COLUMNS)
    assert prep.parcels.crs == prep.crs and prep.declarations.crs == prep.crs
    assert prep.counts["parcels"]["rows_used"] == len(parcels) - len(
        ledger_reasons(prep, "parcels"))
    # Areas in the chosen zone agree with the national projection's (FR spans 900 km of
    # longitude in one UTM zone: up to 1 % distortion at its edges).
    kept = parcels.set_index("parcel_id").loc[prep.parcels["parcel_id"]]
    np.testing.assert_allclose(prep.parcels.area.to_numpy(), kept.area.to_numpy(), rtol=1e-2)
    # In the national CRS, hygiene and the 1 cm grid leave the areas as they were.
    # Each vertex moves by at most 0.71 cm on the 1 cm grid, so an area changes by less than
    # perimeter x 1 cm.
    national = prepare(decl, parcels, area_unit="ha", crs=parcels.crs)
    kept = parcels.set_index("parcel_id").loc[national.parcels["parcel_id"]]
    change = np.abs(national.parcels.area.to_numpy() - kept.area.to_numpy())
    assert (change <= kept.length.to_numpy() * 0.01).all()
    assert change.max() > 0  # the grid did something: real coordinates have mm digits
    assert shapely.is_valid(prep.parcels.geometry.to_numpy()).all()
    # Coordinates are on the 1 cm grid.
    xy = shapely.get_coordinates(prep.parcels.geometry.to_numpy()) / 0.01
    np.testing.assert_allclose(xy, np.round(xy), atol=1e-6)
    assert prep.years == (2025,)
    assert not prep.declarations["is_previous"].any()


def test_missing_column_is_a_schema_error(at):
    with pytest.raises(SchemaError, match="declared_area"):
        prepare(declarations_from(at).drop(columns="declared_area"), at, area_unit="ha")
    with pytest.raises(SchemaError, match="eligible_area"):
        prepare(declarations_from(at), at.drop(columns="eligible_area"), area_unit="ha")


def test_layer_without_crs_is_a_crs_error(at):
    with pytest.raises(CRSError, match="no coordinate reference system"):
        prepare(declarations_from(at), at.set_crs(None, allow_override=True), area_unit="ha")
    with pytest.raises(CRSError, match="metric"):
        prepare(declarations_from(at), at, area_unit="ha", crs=4326)


def test_declarations_by_parcel_id_only_need_no_crs(at):
    by_id = pd.DataFrame({"declaration_id": ["X1", "X2"], "applicant_id": ["A", "B"],
                          "year": [2025, 2025], "parcel_id": at["parcel_id"][:2].tolist(),
                          "declared_area": [0.1, 0.2]})
    prep = prepare(by_id, at, area_unit="ha")
    assert prep.declarations["geometry"].isna().all()
    assert prep.declarations["parcel_id"].tolist() == at["parcel_id"][:2].tolist()


def test_layers_in_two_crs_give_the_same_areas(at):
    """AT parcels reprojected to EPSG:4326 (declarations and land use stay in EPSG:31287)."""
    decl = declarations_from(at, 30)
    decl["geometry"] = decl.geometry.scale(1.1, 1.1)
    land_use = gpd.GeoDataFrame({"land_use": ["forest"] * 10},
                                geometry=at.geometry.buffer(5).to_numpy()[:10], crs=at.crs)
    same = prepare(decl, at, land_use=land_use, area_unit="ha")
    mixed = prepare(decl, at.to_crs(4326), land_use=land_use.to_crs(3857), area_unit="ha")
    assert same.crs == mixed.crs
    np.testing.assert_allclose(mixed.parcels.area, same.parcels.area, rtol=1e-5)
    np.testing.assert_allclose(mixed.land_use.area, same.land_use.area, rtol=1e-5)
    inter_same = shapely.area(shapely.intersection(same.declarations.geometry.to_numpy(),
                                                   same.parcels.geometry.to_numpy()[:30]))
    inter_mixed = shapely.area(shapely.intersection(mixed.declarations.geometry.to_numpy(),
                                                    mixed.parcels.geometry.to_numpy()[:30]))
    np.testing.assert_allclose(inter_mixed, inter_same, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Geometry hygiene
# ---------------------------------------------------------------------------------------------


def test_bow_tie_is_repaired_and_recorded(at):
    decl = declarations_from(at, 5)
    x0, y0, x1, y1 = at.geometry.iloc[0].bounds
    bow_tie = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    decl.loc[2, "geometry"] = bow_tie
    prep = prepare(decl, at, area_unit="ha")
    check_counts(prep)
    repaired = prep.repairs[prep.repairs["source"] == "declarations"]
    assert repaired["row"].tolist() == [3]
    assert repaired["key"].tolist() == ["D002"]
    assert repaired["reason"].iloc[0].startswith("repaired: Self-intersection")
    fixed = prep.declarations.set_index("declaration_id").geometry["D002"]
    assert fixed.is_valid and fixed.geom_type == "MultiPolygon"
    # The two triangles of the bow-tie: half the bounding box.
    assert fixed.area == pytest.approx((x1 - x0) * (y1 - y0) / 2, rel=5e-3)


def test_make_valid_geometry_collection_keeps_only_polygons(at):
    parcels = at.copy()
    square = at.geometry.iloc[3].envelope
    x0, y0, x1, y1 = square.bounds
    # A ring with a dangling spike: make_valid gives GEOMETRYCOLLECTION(POLYGON, LINESTRING).
    spiky = shapely.Polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0), (x0 - 30, y0 - 30),
                             (x0, y0)])
    assert shapely.make_valid(spiky).geom_type == "GeometryCollection"
    parcels.loc[3, "geometry"] = spiky
    prep = prepare(declarations_from(at, 2), parcels, area_unit="ha")
    check_counts(prep)
    row = prep.repairs[prep.repairs["key"] == at["parcel_id"][3]]
    assert len(row) == 1
    assert "GeometryCollection" in row["reason"].iloc[0]
    assert "kept its 1 polygon(s)" in row["reason"].iloc[0]
    kept = prep.parcels.set_index("parcel_id").geometry[at["parcel_id"][3]]
    assert kept.geom_type == "Polygon"
    assert kept.area == pytest.approx(square.area, rel=1e-3)


def test_nothing_polygonal_after_make_valid_is_rejected(at):
    parcels = at.copy()
    x0, y0 = at.geometry.iloc[4].bounds[:2]
    parcels.loc[4, "geometry"] = shapely.Polygon([(x0, y0), (x0 + 10, y0), (x0 + 20, y0),
                                                  (x0, y0)])  # zero-area ring
    prep = prepare(declarations_from(at, 2), parcels, area_unit="ha", crs=at.crs)
    assert "no polygonal part after make_valid" in ledger_reasons(prep, "parcels")[5]
    check_counts(prep)


def test_missing_and_empty_geometry(at):
    parcels = at.copy()
    parcels.loc[1, "geometry"] = None
    parcels.loc[2, "geometry"] = shapely.Polygon()
    decl = declarations_from(at, 8)
    decl.loc[3, "geometry"] = None  # has parcel_id: kept, declared by id
    decl.loc[4, "geometry"] = None
    decl.loc[4, "parcel_id"] = None  # nothing to go by: rejected
    decl.loc[5, "geometry"] = shapely.Polygon()  # empty with parcel id: kept, recorded
    decl.loc[6, ["geometry", "parcel_id"]] = [None, at["parcel_id"][1]]  # parcel 2 rejected
    prep = prepare(decl, parcels, area_unit="ha")
    check_counts(prep)
    assert ledger_reasons(prep, "parcels") == {2: "missing geometry", 3: "empty geometry"}
    decl_rejects = ledger_reasons(prep, "declarations")
    assert decl_rejects[5] == "declaration has neither a geometry nor a parcel_id"
    assert decl_rejects[7] == (f"declares parcel {at['parcel_id'][1]}, which is not in the "
                               "reference parcels")
    assert set(decl_rejects) == {5, 7}
    kept = prep.declarations.set_index("declaration_id")
    assert kept.geometry["D003"] is None and kept.geometry["D005"] is None
    assert prep.repairs.set_index("key")["reason"]["D005"].startswith("empty geometry dropped")


def test_non_polygons_are_rejected(at):
    parcels = at.copy()
    parcels.loc[0, "geometry"] = at.geometry.iloc[0].boundary
    parcels.loc[1, "geometry"] = at.geometry.iloc[1].centroid
    prep = prepare(declarations_from(at, 3).iloc[2:], parcels, area_unit="ha")
    reasons = ledger_reasons(prep, "parcels")
    assert reasons[1] == f"geometry is a {at.geometry.iloc[0].boundary.geom_type}, not a polygon"
    assert reasons[2] == "geometry is a Point, not a polygon"


def test_duplicate_parcel_ids_and_geometries(at):
    parcels = pd.concat([at, at.iloc[[5]].assign(_row=101, eligible_area=9.0),
                         at.iloc[[6]].assign(_row=102, parcel_id="copy-of-6")],
                        ignore_index=True)
    parcels = gpd.GeoDataFrame(parcels, geometry="geometry", crs=at.crs)
    prep = prepare(declarations_from(at, 3), parcels, area_unit="ha")
    check_counts(prep)
    reasons = ledger_reasons(prep, "parcels")
    assert reasons[101] == f"duplicate parcel_id '{at['parcel_id'][5]}' (first on row 6)"
    assert reasons[102] == (f"same geometry as parcel '{at['parcel_id'][6]}' (row 7), "
                            "which is kept")
    first = prep.parcels.set_index("parcel_id")["eligible_m2"][at["parcel_id"][5]]
    assert first == pytest.approx(at["eligible_area"][5] * 1e4)


def test_duplicate_declarations(at):
    decl = declarations_from(at, 6)
    again = decl.iloc[[1, 2, 3]].assign(_row=[7, 8, 9])
    again["declaration_id"] = ["D001", "E002", "E003"]
    again.loc[again.index[2], "applicant_id"] = "someone else"  # same land, other applicant
    decl = gpd.GeoDataFrame(pd.concat([decl, again], ignore_index=True), crs=at.crs)
    prep = prepare(decl, at, area_unit="ha")
    check_counts(prep)
    reasons = ledger_reasons(prep, "declarations")
    assert reasons == {
        7: "duplicate declaration_id 'D001' (first on row 2)",
        8: "same geometry, applicant and year as declaration 'D002' (row 3), which is kept",
    }
    assert "E003" in set(prep.declarations["declaration_id"])


def test_unknown_parcel_id_with_geometry_is_kept_as_declared(at):
    decl = declarations_from(at, 4)
    decl.loc[0, "parcel_id"] = "NOT-A-PARCEL"
    decl.loc[1, ["parcel_id", "geometry"]] = ["NOT-A-PARCEL-EITHER", None]
    prep = prepare(decl, at, area_unit="ha")
    assert ledger_reasons(prep, "declarations") == {
        2: "declares parcel NOT-A-PARCEL-EITHER, which is not in the reference parcels"}
    assert prep.declarations.set_index("declaration_id")["parcel_id"]["D000"] == "NOT-A-PARCEL"


@pytest.mark.parametrize(("value", "reason"), [
    (0.0, "declared_area must be > 0 (got 0)"),
    (-2.5, "declared_area must be > 0 (got -2.5)"),
    (np.nan, "declared_area is missing or not a number"),
    ("lots", "declared_area is missing or not a number"),
])
def test_declared_area_must_be_positive(at, value, reason):
    decl = declarations_from(at, 3).astype({"declared_area": object})
    decl.loc[1, "declared_area"] = value
    prep = prepare(decl, at, area_unit="ha")
    assert ledger_reasons(prep, "declarations") == {2: reason}
    check_counts(prep)


def test_eligible_area_may_be_zero_but_not_negative_or_missing(at):
    parcels = at.copy()
    parcels.loc[0, "eligible_area"] = 0.0
    parcels.loc[1, "eligible_area"] = -1.0
    parcels.loc[2, "eligible_area"] = np.nan
    prep = prepare(declarations_from(at, 1), parcels, area_unit="ha")
    assert ledger_reasons(prep, "parcels") == {
        2: "eligible_area must be >= 0 (got -1)",
        3: "eligible_area is missing or not a number",
    }
    assert prep.parcels.set_index("parcel_id")["eligible_m2"][at["parcel_id"][0]] == 0.0


def test_slivers(at):
    parcels = at.copy()
    big = at.geometry.iloc[7]
    x0, y0 = np.round(big.bounds[:2])
    crumb = shapely.box(x0 - 50, y0 - 50, x0 - 49.5, y0 - 49.5)  # 0.25 m²
    parcels.loc[7, "geometry"] = shapely.MultiPolygon([big, crumb])
    parcels.loc[8, "geometry"] = shapely.box(x0 - 80, y0 - 80, x0 - 79.6, y0 - 79.6)
    prep = prepare(declarations_from(at, 2), parcels, area_unit="ha", sliver_m2=1.0,
                   crs=at.crs)
    check_counts(prep)
    assert ledger_reasons(prep, "parcels") == {
        9: "area 0.16 m² is below the sliver threshold (1 m²)"}
    reason = prep.repairs.set_index("key")["reason"][at["parcel_id"][7]]
    assert reason == "removed 1 sliver part(s) below 1 m² (0.25 m² in all)"
    kept = prep.parcels.set_index("parcel_id").geometry[at["parcel_id"][7]]
    assert kept.geom_type == "Polygon"
    assert abs(kept.area - big.area) <= big.length * 0.01


def test_precision_grid_collapse_is_rejected(at):
    parcels = at.copy()
    x0, y0 = at.geometry.iloc[9].bounds[:2]
    parcels.loc[9, "geometry"] = shapely.box(x0, y0, x0 + 500, y0 + 0.004)  # 4 mm wide
    prep = prepare(declarations_from(at, 1), parcels, area_unit="ha", precision_m=0.01,
                   sliver_m2=0.0)
    assert "collapses to nothing on the 0.01 m precision grid" in ledger_reasons(
        prep, "parcels")[10]


def test_previous_declarations(at):
    decl = declarations_from(at, 10)
    decl.loc[9, "year"] = 2026
    previous = declarations_from(at, 6, year=2024, prefix="P")
    previous["geometry"] = previous.geometry.scale(0.8, 0.8)
    previous.loc[4, "year"] = 2025  # not older than the years under review
    previous.loc[5, "declaration_id"] = "D000"  # an id the current declarations use
    prep = prepare(decl, at, previous=previous, area_unit="ha",
                   source_names={"previous": "decl-2024.csv"})
    check_counts(prep)
    assert prep.years == (2025, 2026)
    assert ledger_reasons(prep, "decl-2024.csv") == {
        5: "previous declaration of year 2025 is not before the years under review (2025-2026)",
        6: "duplicate declaration_id 'D000' (first on declarations row 1)",
    }
    kept = prep.declarations
    assert kept["is_previous"].sum() == 4
    assert set(kept.loc[kept["is_previous"], "year"]) == {2024}
    assert prep.counts["decl-2024.csv"] == {"rows_in": 6, "rows_used": 4, "rows_rejected": 2}


def test_ledger_rows_carry_the_raw_values_and_go_to_a_given_ledger(at):
    decl = declarations_from(at, 3)
    decl.loc[0, "declared_area"] = -1.0
    ledger = RejectsLedger()
    prep = prepare(decl, at, area_unit="ha", ledger=ledger)
    assert len(ledger) == len(prep.rejects) == 1
    record = ledger.frame().iloc[0]
    assert record["source"] == "declarations" and record["key"] == "D000"
    assert '"declared_area":"-1.0"' in record["raw"] and "POLYGON" in record["raw"]


def test_repair_warning_is_emitted(at):
    decl = declarations_from(at, 2)
    x0, y0, x1, y1 = at.geometry.iloc[0].bounds
    decl.loc[0, "geometry"] = shapely.Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare(decl, at, area_unit="ha")
    assert any("repaired" in str(w.message) for w in caught)


def test_scaled_copy_keeps_its_area(at):
    """A declaration drawn 1.2x the parcel keeps exactly 1.44x the (snapped) parcel area."""
    decl = declarations_from(at, 1)
    geom = at.geometry.iloc[0]
    decl["geometry"] = [affinity.scale(geom, 1.2, 1.2, origin="centroid")]
    prep = prepare(decl, at, area_unit="ha", crs=at.crs)  # the national CRS is metric
    assert prep.crs.to_epsg() == 31287
    drawn = prep.declarations.geometry.iloc[0]
    assert abs(drawn.area - 1.44 * geom.area) <= 1.2 * geom.length * 0.01


def test_single_part_multipolygons_become_polygons(at):
    """Registers often store every parcel as a MultiPolygon of one part (NL, FR): prepared,
    it is that Polygon, unchanged; a real MultiPolygon stays one."""
    parcels = at.iloc[:4].copy()
    geoms = parcels.geometry.to_numpy()
    parcels["geometry"] = [shapely.MultiPolygon([geoms[0]]), geoms[1],
                           shapely.MultiPolygon([geoms[2], geoms[3]]), geoms[3]]
    parcels = parcels.set_geometry("geometry")
    prep = prepare(declarations_from(parcels, 2), parcels, area_unit="ha")
    out = prep.parcels.geometry.to_numpy()
    assert [g.geom_type for g in out] == ["Polygon", "Polygon", "MultiPolygon", "Polygon"]
    plain = parcels.copy()
    plain["geometry"] = [geoms[0], geoms[1], shapely.MultiPolygon([geoms[2], geoms[3]]),
                         geoms[3]]
    same = prepare(declarations_from(parcels, 2), plain.set_geometry("geometry"),
                   area_unit="ha")
    assert shapely.equals_exact(out[0], same.parcels.geometry.to_numpy()[0])
    check_counts(prep)
