"""The farmland rules on hand-built overlays: each fires at its threshold, not just below."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely
from shapely import box

from geosup.alerts import make_alerts
from geosup.errors import ConfigError
from geosup.farmland import rules as farm_rules
from geosup.farmland.tables import TABLE_COLUMNS, Overlay
from geosup.rules import REGISTRY

CRS = pyproj.CRS.from_epsg(4548)
X0, Y0 = 500000.0, 3500000.0
FORBIDDEN = ("fraud", "cheat", "illegal", "steal", "crime", "abuse", "fake", "suspicious",
             "骗", "违法", "违规", "犯罪", "虚假", "套取")


def sq(x: float, y: float, w: float, h: float | None = None) -> shapely.Polygon:
    return box(X0 + x, Y0 + y, X0 + x + w, Y0 + y + (w if h is None else h))


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    cols = TABLE_COLUMNS[name]
    if not rows:
        return Overlay.empty(name)
    frame = pd.DataFrame(rows)
    for c in cols:
        if c not in frame.columns:
            frame[c] = None
    return frame.loc[:, list(cols)]


def parcel(pid: str, geom: shapely.Polygon, eligible: float | None = None,
           land_use: str | None = None) -> dict:
    area = float(shapely.area(geom))
    return {"parcel_id": pid, "eligible_m2": area if eligible is None else eligible,
            "area_m2": area, "perimeter_m": float(shapely.length(geom)), "land_use": land_use,
            "geometry": geom}


def decl(did: str, declared: float, *, applicant: str = "A1", year: int = 2025,
         village: str = "V1", parcel_id: str | None = None, geom=None,
         perimeter: float | None = None, subsidy: float = 1000.0) -> dict:
    drawn = float(shapely.area(geom)) if geom is not None else np.nan
    per = float(shapely.length(geom)) if geom is not None else (
        np.nan if perimeter is None else perimeter)
    return {"declaration_id": did, "applicant_id": applicant, "year": year, "village": village,
            "parcel_id": parcel_id, "crop": "wheat", "subsidy_amount": subsidy,
            "declared_m2": declared, "drawn_m2": drawn,
            "perimeter_m": per if perimeter is None else perimeter, "geometry": geom}


def overlay(declarations, parcels=(), links=(), pairs=(), land_use=(), outside=(),
            changes=()) -> Overlay:
    return Overlay(crs=CRS, declarations=_frame("declarations", list(declarations)),
                   parcels=_frame("parcels", list(parcels)), links=_frame("links", list(links)),
                   pairs=_frame("pairs", list(pairs)), land_use=_frame("land_use", list(land_use)),
                   outside=_frame("outside", list(outside)),
                   changes=_frame("changes", list(changes)))


def ctx(persons: pd.DataFrame | None = None, years=(2025,),
        unit: str = "mu") -> farm_rules.RuleContext:
    return farm_rules.RuleContext(area_unit=unit, years=years, persons=persons, crs=CRS)


def run(code: str, ov: Overlay, context: farm_rules.RuleContext | None = None, **overrides):
    item = REGISTRY.get(code)
    values = {**item.defaults(), **overrides}
    hits = item(ov, context or ctx(), **values)
    assert list(hits.columns) == list(farm_rules.HIT_COLUMNS)
    if len(hits):
        assert hits.crs.equals(CRS)
        assert (hits["rule"] == code).all()
        assert hits["score"].between(0, 1).all()
        assert hits["period"].map(type).eq(str).all()
        assert (hits["observed_at"].dt.strftime("%m-%d") == "01-01").all()
        make_alerts(hits)  # valid alerts, one per subject and period
    return hits


def ev(hits: pd.DataFrame, i: int = 0) -> dict:
    return hits["evidence"].iloc[i]


def one_parcel_geometry_overlay(declared: float, *, eligible: float = 10000.0,
                                applicant: str = "A1") -> Overlay:
    p = sq(0, 0, 100)
    return overlay([decl("D1", declared, geom=p, applicant=applicant)],
                   [parcel("P1", p, eligible)],
                   links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 10000.0,
                           "by": "geometry"}])


# --------------------------------------------------------------------------------------------
# registry and metadata
# --------------------------------------------------------------------------------------------


def test_every_rule_of_the_issue_is_registered_with_neutral_titles():
    codes = {r.code for r in REGISTRY.select(domain="farmland")}
    assert codes == set(farm_rules.FARMLAND_RULES)
    for item in REGISTRY.select(domain="farmland"):
        assert item.title and item.title_zh
        assert item.severity in ("low", "medium", "high", "critical")
        text = (item.title + item.title_zh).lower()
        assert not any(w in text for w in FORBIDDEN), item.code
        for t in item.thresholds:
            assert t.description, (item.code, t.name)


def test_default_thresholds_follow_the_issue():
    d = {r.code: r.defaults() for r in REGISTRY.select(domain="farmland")}
    assert d["farmland.over_declared"] == {
        "buffer_m": 1.25, "cap_m2": 10000.0, "band_low_share": 0.03, "band_low_m2": 20000.0,
        "band_mid_share": 0.20, "band_high_share": 0.50}
    assert d["farmland.double_claim"] == {"min_overlap_m2": 10.0, "share": 0.05}
    assert d["farmland.non_farmland"]["min_m2"] == 1000.0
    assert set(d["farmland.non_farmland"]["classes"]) == {"built-up", "water", "forest", "road"}
    assert d["farmland.outside_reference"]["share"] == 0.10
    assert d["farmland.big_recipient"]["z"] == 3.5
    assert d["farmland.year_change"] == {"area_change": 0.30, "geometry_change": 0.30}


def test_land_use_aliases():
    got = farm_rules.land_use_class(["Built-up", " built up ", "建设用地", "坑塘水面", "River",
                                     "林地", "农村道路", "orchard", "耕地"]).tolist()
    assert got == ["built-up", "built-up", "built-up", "water", "water", "forest", "road",
                   "orchard", "耕地"]


# --------------------------------------------------------------------------------------------
# over_declared
# --------------------------------------------------------------------------------------------


def test_over_declared_fires_above_tolerance_only():
    tolerance = 1.25 * 400.0  # buffer × perimeter of a 100 m square, below the 1 ha cap
    hits = run("farmland.over_declared", one_parcel_geometry_overlay(10000 + tolerance + 0.01))
    decl_hits = hits.loc[hits["subject_type"] == "declaration"]
    assert decl_hits["subject_id"].tolist() == ["D1"]
    e = ev(decl_hits)
    assert e["tolerance_m2"] == pytest.approx(500.0)
    assert e["eligible_found_m2"] == pytest.approx(10000.0)
    assert e["declared_area"] == pytest.approx((10500.01) / (10000 / 15), abs=1e-4)
    assert e["area_unit"] == "mu" and e["band"] == 0 and decl_hits["severity"].iloc[0] == "low"
    for key in ("declaration_ids", "applicant_ids", "parcel_ids", "thresholds", "excess_m2",
                "excess_area", "subsidy_amount"):
        assert key in e
    assert e["parcel_ids"] == ["P1"]
    assert not len(run("farmland.over_declared",
                       one_parcel_geometry_overlay(10000 + tolerance - 0.01)))


def test_over_declared_tolerance_is_capped():
    p = sq(0, 0, 5000, 2)  # perimeter 10 004 m: 1.25 × perimeter > 1 ha
    area = 10000.0
    ov = overlay([decl("D1", area + 10000 + 0.5, geom=p)], [parcel("P1", p)],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": area,
                         "by": "geometry"}])
    hits = run("farmland.over_declared", ov)
    assert ev(hits)["tolerance_m2"] == pytest.approx(10000.0)
    assert not len(run("farmland.over_declared", ov, cap_m2=10001.0))


@pytest.mark.parametrize(("declared", "band", "severity"), [
    (10000 * 1.03 + 1.0, 1, "medium"), (10000 * 1.20 + 1.0, 2, "high"),
    (10000 * 1.50 + 1.0, 3, "critical")])
def test_over_declared_bands_at_applicant_level(declared, band, severity):
    hits = run("farmland.over_declared", one_parcel_geometry_overlay(declared), buffer_m=0.0)
    app = hits.loc[hits["subject_type"] == "applicant"]
    assert app["subject_id"].tolist() == ["A1"]
    assert ev(app)["band"] == band and app["severity"].iloc[0] == severity
    assert ev(app)["declaration_ids"] == ["D1"] and ev(app)["parcel_ids"] == ["P1"]
    assert "band" in app["detail"].iloc[0]


def test_over_declared_applicant_level_needs_the_first_band():
    hits = run("farmland.over_declared", one_parcel_geometry_overlay(10000 * 1.03 - 1.0),
               buffer_m=0.0)
    assert hits["subject_type"].tolist() == ["declaration"]  # above tolerance, within 3 %
    big = sq(0, 0, 1000)  # 100 ha: 2 ha is 2 %
    ov = overlay([decl("D1", 1_000_000 + 20_000 + 1.0, geom=big)], [parcel("P1", big)],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 1_000_000.0,
                         "by": "geometry"}])
    hits = run("farmland.over_declared", ov, buffer_m=0.0)
    assert ev(hits.loc[hits["subject_type"] == "applicant"])["band"] == 1
    ov.declarations.loc[0, "declared_m2"] = 1_000_000 + 20_000 - 1.0
    assert run("farmland.over_declared", ov, buffer_m=0.0)["subject_type"].tolist() == [
        "declaration"]


def test_over_declared_score_and_amount_grow_with_the_excess():
    small = run("farmland.over_declared", one_parcel_geometry_overlay(12000), buffer_m=0.0)
    large = run("farmland.over_declared", one_parcel_geometry_overlay(16000), buffer_m=0.0)
    s, lg = small.iloc[0], large.iloc[0]
    assert s["score"] < lg["score"]
    assert s["amount_at_risk"] == pytest.approx(1000.0 * 2000 / 12000)
    assert lg["amount_at_risk"] > s["amount_at_risk"]


def test_over_declared_shares_a_parcel_declared_twice_by_id():
    p = sq(0, 0, 100)

    def split(second_applicant: str) -> Overlay:
        return overlay(
            [decl("D1", 6000.0, parcel_id="P1", perimeter=400.0),
             decl("D2", 6000.0, parcel_id="P1", perimeter=400.0, applicant=second_applicant)],
            [parcel("P1", p, 10000.0)],
            links=[{"declaration_id": d, "parcel_id": "P1", "overlap_m2": 10000.0, "by": "id"}
                   for d in ("D1", "D2")])

    hits = run("farmland.over_declared", split("A1"))
    d = hits.loc[hits["subject_type"] == "declaration"]
    assert d["subject_id"].tolist() == ["D1", "D2"]
    assert ev(d)["eligible_found_m2"] == pytest.approx(5000.0)
    assert hits.loc[hits["subject_type"] == "applicant", "subject_id"].tolist() == ["A1"]
    # two applicants on one parcel: a double claim, not an over-declaration
    assert not len(run("farmland.over_declared", split("A2")))
    # one declaration by id at the eligible area: nothing
    ov1 = overlay([decl("D1", 10000.0, parcel_id="P1", perimeter=400.0)],
                  [parcel("P1", p, 10000.0)],
                  links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 10000.0,
                          "by": "id"}])
    assert not len(run("farmland.over_declared", ov1))


def test_over_declared_uses_the_eligible_share_of_a_parcel():
    p = sq(0, 0, 100)
    ov = overlay([decl("D1", 9000.0, geom=sq(0, 0, 100, 50))], [parcel("P1", p, 8000.0)],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 5000.0,
                         "by": "geometry"}])
    hits = run("farmland.over_declared", ov, buffer_m=0.0)
    assert ev(hits)["eligible_found_m2"] == pytest.approx(4000.0)


def test_over_declared_ignores_previous_years():
    ov = one_parcel_geometry_overlay(20000.0)
    assert not len(run("farmland.over_declared", ov, ctx(years=(2026,))))


def test_over_declared_leaves_unlinked_declarations_to_outside_reference():
    ov = overlay([decl("D1", 5000.0, geom=sq(900, 900, 50))], [parcel("P1", sq(0, 0, 100))])
    hits = run("farmland.over_declared", ov)
    assert hits["subject_type"].tolist() == ["applicant"]


# --------------------------------------------------------------------------------------------
# outside_reference
# --------------------------------------------------------------------------------------------


def _outside(share: float, drawn: float = 10000.0) -> Overlay:
    g = sq(0, 0, 100, drawn / 100)
    inside = sq(0, 0, 100, drawn * (1 - share) / 100)
    return overlay([decl("D1", drawn, geom=g)], [parcel("P1", inside)],
                   links=[{"declaration_id": "D1", "parcel_id": "P1",
                           "overlap_m2": drawn * (1 - share), "by": "geometry"}],
                   outside=[{"declaration_id": "D1", "outside_m2": drawn * share,
                             "outside_share": share}])


def test_outside_reference_at_the_share():
    hits = run("farmland.outside_reference", _outside(0.10))
    assert hits["subject_id"].tolist() == ["D1"]
    e = ev(hits)
    assert e["outside_m2"] == pytest.approx(1000.0) and e["outside_share"] == pytest.approx(0.1)
    assert e["parcel_ids"] == ["P1"] and e["outside_area"] == pytest.approx(1.5)
    assert hits.geometry.iloc[0].area == pytest.approx(1000.0)  # the outside part
    assert not len(run("farmland.outside_reference", _outside(0.0999)))


def test_outside_reference_large_outside_part_fires_whatever_its_share():
    hits = run("farmland.outside_reference", _outside(0.05, drawn=200_000.0))
    assert len(hits) == 1
    assert not len(run("farmland.outside_reference", _outside(0.05, drawn=199_000.0)))


# --------------------------------------------------------------------------------------------
# double_claim
# --------------------------------------------------------------------------------------------


def _pair(overlap: float, *, area: float = 10000.0, same: bool = False, year: int = 2025):
    a, b = sq(0, 0, 100, area / 100), sq(0, 0, 100, area / 100)
    inter = sq(0, 0, 100, overlap / 100)
    return overlay(
        [decl("D1", area, geom=a, year=year), decl("D2", area, geom=b, year=year,
                                                  applicant="A1" if same else "A2")],
        [parcel("P1", a)],
        links=[{"declaration_id": d, "parcel_id": "P1", "overlap_m2": area, "by": "geometry"}
               for d in ("D1", "D2")],
        pairs=[{"declaration_a": "D1", "declaration_b": "D2", "applicant_a": "A1",
                "applicant_b": "A1" if same else "A2", "year": year, "overlap_m2": overlap,
                "share_a": overlap / area, "share_b": overlap / area, "geometry": inter}])


def test_double_claim_at_the_minimum_overlap():
    hits = run("farmland.double_claim", _pair(10.0, area=1_000_000.0))
    assert hits["subject_id"].tolist() == ["D1|D2"]
    e = ev(hits)
    assert e["declaration_ids"] == ["D1", "D2"] and e["applicant_ids"] == ["A1", "A2"]
    assert e["overlap_m2"] == pytest.approx(10.0) and "overlap_area" in e
    assert e["parcel_ids"] == ["P1"]
    assert hits.geometry.iloc[0].area == pytest.approx(10.0)
    assert not len(run("farmland.double_claim", _pair(9.99, area=1_000_000.0)))


def test_double_claim_small_declarations_by_share():
    assert len(run("farmland.double_claim", _pair(5.0, area=100.0)))  # 5 %
    assert not len(run("farmland.double_claim", _pair(4.99, area=100.0)))


def test_double_claim_not_for_one_applicant_or_other_years():
    assert not len(run("farmland.double_claim", _pair(500.0, same=True)))
    assert not len(run("farmland.double_claim", _pair(500.0, year=2024)))


def test_double_claim_amount_is_the_smaller_payment_for_the_overlap():
    hits = run("farmland.double_claim", _pair(2500.0))
    assert hits["amount_at_risk"].iloc[0] == pytest.approx(250.0)
    assert hits["score"].iloc[0] == pytest.approx(0.25)


# --------------------------------------------------------------------------------------------
# non_farmland
# --------------------------------------------------------------------------------------------


def _landuse(m2: float, label: str = "建设用地", area: float = 100_000.0) -> Overlay:
    g = sq(0, 0, 100, area / 100)
    return overlay([decl("D1", area, geom=g)], [parcel("P1", g)],
                   links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": area,
                           "by": "geometry"}],
                   land_use=[{"declaration_id": "D1", "land_use": label, "overlap_m2": m2},
                             {"declaration_id": "D1", "land_use": "耕地",
                              "overlap_m2": area - m2}])


def test_non_farmland_at_the_minimum_area():
    hits = run("farmland.non_farmland", _landuse(1000.0))
    assert hits["subject_id"].tolist() == ["D1"]
    e = ev(hits)
    assert e["nonfarm_m2"] == pytest.approx(1000.0) and e["nonfarm_area"] == pytest.approx(1.5)
    assert e["nonfarm_m2_by_class"] == {"built-up": 1000.0}
    assert not len(run("farmland.non_farmland", _landuse(999.0)))


def test_non_farmland_share_and_classes():
    assert len(run("farmland.non_farmland", _landuse(500.0, "Pond", area=10_000.0)))  # 5 %
    assert not len(run("farmland.non_farmland", _landuse(499.0, "Pond", area=10_000.0)))
    assert not len(run("farmland.non_farmland", _landuse(5000.0, "orchard")))
    assert len(run("farmland.non_farmland", _landuse(5000.0, "orchard"),
                   classes=("orchard",)))
    assert not len(run("farmland.non_farmland", _landuse(5000.0, "林地"), classes=("water",)))
    # a comma-separated value (environment variable) is a list of classes
    assert len(run("farmland.non_farmland", _landuse(5000.0, "林地"),
                   classes=("water,forest",)))


def test_non_farmland_from_the_reference_parcels_land_use():
    g = sq(0, 0, 100)
    ov = overlay([decl("D1", 10000.0, parcel_id="P1", perimeter=400.0)],
                 [parcel("P1", g, land_use="forest")],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 10000.0,
                         "by": "id"}])
    hits = run("farmland.non_farmland", ov)
    assert ev(hits)["nonfarm_source"] == "reference parcel land_use"
    assert hits.geometry.iloc[0].equals(g)  # the declared parcel


# --------------------------------------------------------------------------------------------
# persons: deceased and official applicants
# --------------------------------------------------------------------------------------------


def _persons_overlay() -> Overlay:
    return overlay([decl("D1", 1000.0, geom=sq(0, 0, 10, 100), applicant="A1"),
                    decl("D2", 1000.0, geom=sq(20, 0, 10, 100), applicant="A1"),
                    decl("D3", 1000.0, geom=sq(40, 0, 10, 100), applicant="A2")])


@pytest.mark.parametrize(("died_on", "fires"), [
    ("2024-12-31", True), ("2025-01-01", False), ("2020-06-01", True), (None, False)])
def test_deceased_applicant_before_the_year_start(died_on, fires):
    persons = pd.DataFrame({"person_id": ["A1", "A2"], "name": ["张三", "李四"],
                            "died_on": [died_on, None]})
    hits = run("farmland.deceased_applicant", _persons_overlay(), ctx(persons))
    assert hits["subject_id"].tolist() == (["A1"] if fires else [])
    if fires:
        e = ev(hits)
        assert e["declaration_ids"] == ["D1", "D2"] and e["died_on"] == died_on
        assert hits["amount_at_risk"].iloc[0] == pytest.approx(2000.0)
        assert hits.geometry.iloc[0].area == pytest.approx(2000.0)


def test_deceased_applicant_with_utc_times_as_read():
    # read_table reads a naive date in Asia/Shanghai and stores UTC
    died = pd.Series(pd.to_datetime(["2024-12-31", "2025-01-01"]).tz_localize(
        "Asia/Shanghai").tz_convert("UTC"))
    persons = pd.DataFrame({"person_id": ["A1", "A2"], "died_on": died})
    hits = run("farmland.deceased_applicant", _persons_overlay(), ctx(persons))
    assert hits["subject_id"].tolist() == ["A1"]


def test_official_applicant():
    persons = pd.DataFrame({"person_id": ["A1", "A2"], "is_official": ["是", "否"],
                            "unit": ["V2", "V1"]})
    hits = run("farmland.official_applicant", _persons_overlay(), ctx(persons))
    assert hits["subject_id"].tolist() == ["A1"] and ev(hits)["official_unit"] == "V2"
    assert not len(run("farmland.official_applicant", _persons_overlay(), ctx(persons),
                       same_unit_only=True))
    persons["is_official"] = [True, True]
    hits = run("farmland.official_applicant", _persons_overlay(), ctx(persons),
               same_unit_only=True)
    assert hits["subject_id"].tolist() == ["A2"]
    assert not len(run("farmland.official_applicant", _persons_overlay(), ctx(None)))


# --------------------------------------------------------------------------------------------
# big_recipient
# --------------------------------------------------------------------------------------------


def _village(top: float, n: int = 10) -> Overlay:
    sizes = [1000.0 + 100 * i for i in range(n - 1)] + [top]
    return overlay([decl(f"D{i}", s, applicant=f"A{i:02d}", geom=sq(i * 200, 0, 10, 10))
                    for i, s in enumerate(sizes)])


def test_big_recipient_at_the_robust_z():
    # 9 peers 1000…1800 m² and one top: median 1450, MAD 250
    threshold = 1450.0 + 3.5 * 250.0 / 0.6745
    hits = run("farmland.big_recipient", _village(threshold + 0.01))
    assert hits["subject_id"].tolist() == ["A09"]
    e = ev(hits)
    assert e["robust_z"] >= 3.5 and e["median_m2"] == pytest.approx(1450.0)
    assert e["mad_m2"] == pytest.approx(250.0) and e["village_applicants"] == 10
    assert not len(run("farmland.big_recipient", _village(threshold - 0.01)))


def test_big_recipient_small_villages_and_percentile():
    assert not len(run("farmland.big_recipient", _village(50_000.0, n=7)))
    assert len(run("farmland.big_recipient", _village(50_000.0, n=7), min_village_size=7))
    hits = run("farmland.big_recipient", _village(2000.0), method="percentile",
               percentile=90.0)
    assert hits["subject_id"].tolist() == ["A09"]
    with pytest.raises(ConfigError):
        run("farmland.big_recipient", _village(2000.0), method="mean")


# --------------------------------------------------------------------------------------------
# claim_frequency
# --------------------------------------------------------------------------------------------


def _many(n: int) -> Overlay:
    parcels = [parcel(f"P{i}", sq(i * 20, 0, 10)) for i in range(n)]
    decls = [decl(f"D{i}", 100.0, parcel_id=f"P{i}", perimeter=40.0) for i in range(n)]
    links = [{"declaration_id": f"D{i}", "parcel_id": f"P{i}", "overlap_m2": 100.0, "by": "id"}
             for i in range(n)]
    return overlay(decls, parcels, links=links)


def test_claim_frequency_declarations_per_applicant():
    hits = run("farmland.claim_frequency", _many(21))
    assert hits["subject_type"].tolist() == ["applicant"]
    e = ev(hits)
    assert e["n_declarations"] == 21 and e["n_parcels"] == 21 and len(e["parcel_ids"]) == 21
    assert not len(run("farmland.claim_frequency", _many(20)))


def test_claim_frequency_parcels_per_applicant_from_drawings():
    parcels = [parcel(f"P{i}", sq(i * 10, 0, 10)) for i in range(6)]
    big = sq(0, 0, 60, 10)
    links = [{"declaration_id": "D1", "parcel_id": f"P{i}", "overlap_m2": 100.0,
              "by": "geometry"} for i in range(6)]
    links.append({"declaration_id": "D1", "parcel_id": "P9", "overlap_m2": 9.0,
                  "by": "geometry"})  # under 10 % of P9: not a use
    parcels.append(parcel("P9", sq(60, 0, 10)))
    ov = overlay([decl("D1", 6000.0, geom=big)], parcels, links=links)
    assert len(run("farmland.claim_frequency", ov, max_parcels=5))
    assert not len(run("farmland.claim_frequency", ov, max_parcels=6))


def _parcel_history(years_applicants) -> Overlay:
    g = sq(0, 0, 100)
    decls = [decl(f"D{y}{a}", 10000.0, applicant=a, year=y, parcel_id="P1", perimeter=400.0)
             for y, a in years_applicants]
    links = [{"declaration_id": d["declaration_id"], "parcel_id": "P1", "overlap_m2": 10000.0,
              "by": "id"} for d in decls]
    return overlay(decls, [parcel("P1", g)], links=links)


def test_claim_frequency_applicants_per_parcel_across_years():
    ov = _parcel_history([(2023, "A1"), (2024, "A2"), (2025, "A3")])
    hits = run("farmland.claim_frequency", ov)
    assert hits["subject_type"].tolist() == ["parcel"] and hits["subject_id"].tolist() == ["P1"]
    e = ev(hits)
    assert e["applicant_ids"] == ["A1", "A2", "A3"] and e["years"] == ["2023", "2024", "2025"]
    assert hits["period"].tolist() == ["2025"]
    # outside the window of three years
    assert not len(run("farmland.claim_frequency",
                       _parcel_history([(2022, "A1"), (2024, "A2"), (2025, "A3")])))
    assert not len(run("farmland.claim_frequency", _parcel_history([(2024, "A2"), (2025, "A3")])))
    # the parcel must be declared in the year under review
    assert not len(run("farmland.claim_frequency",
                       _parcel_history([(2022, "A1"), (2023, "A2"), (2024, "A3")])))


# --------------------------------------------------------------------------------------------
# year_change
# --------------------------------------------------------------------------------------------


def _change(declared: float, previous: float, sym: float = float("nan"),
            union: float = float("nan"), drawn: bool = False) -> Overlay:
    now = sq(0, 0, 100, declared / 100) if drawn else None
    before = sq(0, 0, 100, previous / 100) if drawn else None
    decls = [decl("D25", declared, geom=now, parcel_id="P1", perimeter=400.0),
             decl("D24", previous, geom=before, parcel_id="P1", perimeter=400.0, year=2024)]
    return overlay(decls, [parcel("P1", sq(0, 0, 100))], changes=[{
        "declaration_id": "D25", "previous_id": "D24", "declared_m2": declared,
        "previous_m2": previous, "sym_diff_m2": sym, "union_m2": union}])


def test_year_change_area():
    hits = run("farmland.year_change", _change(13000.0, 10000.0))
    assert hits["subject_id"].tolist() == ["D25"]
    e = ev(hits)
    assert e["previous_id"] == "D24" and e["area_change"] == pytest.approx(0.3)
    assert e["previous_area"] == pytest.approx(15.0)
    assert not len(run("farmland.year_change", _change(12999.0, 10000.0)))
    assert len(run("farmland.year_change", _change(7000.0, 10000.0)))  # a drop counts too


def test_year_change_geometry():
    hits = run("farmland.year_change", _change(10000.0, 10000.0, 3000.0, 10000.0, drawn=True))
    assert ev(hits)["geometry_change"] == pytest.approx(0.3)
    assert not len(run("farmland.year_change",
                       _change(10000.0, 10000.0, 2999.0, 10000.0, drawn=True)))
    hits = run("farmland.year_change", _change(13000.0, 10000.0, 3000.0, 13000.0, drawn=True))
    assert hits.geometry.iloc[0].area == pytest.approx(3000.0)  # the symmetric difference


# --------------------------------------------------------------------------------------------
# every rule
# --------------------------------------------------------------------------------------------


def test_details_are_neutral_and_name_what_was_measured():
    cases = [
        ("farmland.over_declared", one_parcel_geometry_overlay(14000.0), ctx()),
        ("farmland.outside_reference", _outside(0.5), ctx()),
        ("farmland.double_claim", _pair(500.0), ctx()),
        ("farmland.non_farmland", _landuse(5000.0), ctx()),
        ("farmland.deceased_applicant", _persons_overlay(),
         ctx(pd.DataFrame({"person_id": ["A1"], "died_on": ["2020-01-01"]}))),
        ("farmland.official_applicant", _persons_overlay(),
         ctx(pd.DataFrame({"person_id": ["A1"], "is_official": [True]}))),
        ("farmland.big_recipient", _village(50_000.0), ctx()),
        ("farmland.claim_frequency", _many(21), ctx()),
        ("farmland.year_change", _change(20000.0, 10000.0), ctx()),
    ]
    assert {c[0] for c in cases} == set(farm_rules.FARMLAND_RULES)
    for code, ov, context in cases:
        hits = run(code, ov, context)
        assert len(hits), code
        for text in (*hits["title"], *hits["detail"]):
            assert not any(w in text.lower() for w in FORBIDDEN), (code, text)
        for e in hits["evidence"]:
            json.dumps(e, allow_nan=False)
            assert "area_unit" in e and "thresholds" in e, code
            assert "applicant_ids" in e and "parcel_ids" in e, code
            assert any(k.endswith("_m2") for k in e) and any(k.endswith("_area") for k in e)
            assert "declaration_ids" in e or "declaration_id" in e, code


def test_rules_return_empty_tables_on_an_empty_overlay():
    empty = overlay([])
    for item in REGISTRY.select(domain="farmland"):
        hits = item(empty, ctx(pd.DataFrame({"person_id": ["A"], "died_on": ["2020-01-01"],
                                             "is_official": [True]})), **item.defaults())
        assert list(hits.columns) == list(farm_rules.HIT_COLUMNS) and not len(hits)


def test_bad_threshold_values_are_config_errors():
    with pytest.raises(ConfigError):
        run("farmland.outside_reference", _outside(0.5), share=1.5)
    with pytest.raises(ConfigError):
        run("farmland.over_declared", one_parcel_geometry_overlay(14000.0), buffer_m=-1)


# --------------------------------------------------------------------------------------------
# evidence geometry for the review map (WKT in EPSG:4326, only what no stored layer holds)
# --------------------------------------------------------------------------------------------

#: The area each evidence WKT is measured as, by rule and key.
STATED = {("farmland.over_declared", "overlap_wkt"): "overlap_m2",
          ("farmland.outside_reference", "inside_wkt"): "inside_m2",
          ("farmland.non_farmland", "overlap_wkt"): "nonfarm_m2"}


def lonlat(text: str) -> shapely.Geometry:
    """Parse evidence WKT and check that it is polygonal lon/lat with at most 7 decimals."""
    assert isinstance(text, str) and not text.startswith("SRID")
    geom = shapely.from_wkt(text)
    assert geom.geom_type in ("Polygon", "MultiPolygon") and not geom.is_empty, text[:60]
    west, south, east, north = geom.bounds
    assert -180 <= west <= east <= 180 and -90 <= south <= north <= 90
    assert max(len(d) for d in re.findall(r"\.(\d+)", text)) <= farm_rules.WKT_DECIMALS
    return geom


def wkt_in(e: dict, key: str, crs: pyproj.CRS = CRS) -> shapely.Geometry:
    """The evidence WKT ``key`` (checked: lon/lat near Hefei) back in the metric ``crs``."""
    geom = lonlat(e[key])
    x, y = geom.centroid.coords[0]
    if crs == CRS:
        assert 116.5 < x < 117.5 and 31.0 < y < 32.0  # EPSG:4548 near X0, Y0
    return gpd.GeoSeries([geom], crs=4326).to_crs(crs).iloc[0]


def test_over_declared_evidence_draws_the_eligible_overlap():
    p1, p2, p3 = sq(0, 0, 100), sq(100, 0, 100), sq(300, 0, 100)
    drawn = sq(50, -20, 100, 120)  # half on P1, half on P2, 20 m outside both
    ov = overlay(
        [decl("D1", 14000.0, geom=drawn),
         decl("D2", 15000.0, applicant="A2", parcel_id="P3", perimeter=400.0)],
        [parcel("P1", p1), parcel("P2", p2), parcel("P3", p3)],
        links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 5000.0,
                "by": "geometry"},
               {"declaration_id": "D1", "parcel_id": "P2", "overlap_m2": 5000.0,
                "by": "geometry"},
               {"declaration_id": "D2", "parcel_id": "P3", "overlap_m2": 10000.0, "by": "id"}])
    hits = run("farmland.over_declared", ov)
    at = {(t, s): i for i, (t, s) in enumerate(zip(hits["subject_type"], hits["subject_id"],
                                                   strict=True))}
    e1 = ev(hits, at[("declaration", "D1")])
    found = wkt_in(e1, "overlap_wkt")
    assert e1["overlap_m2"] == 10000.0 and found.area == pytest.approx(10000.0, rel=1e-3)
    assert found.symmetric_difference(shapely.intersection(drawn, p1 | p2)).area < 1.0
    assert e1["parcel_ids"] == ["P1", "P2"]  # the reference parcels, from the stored layer
    # a declaration by parcel id: the eligible land found is the parcel, vertex for vertex
    e2 = ev(hits, at[("declaration", "D2")])
    parcel_drawn = wkt_in(e2, "overlap_wkt")
    assert parcel_drawn.symmetric_difference(p3).area < 1.0
    assert shapely.get_num_coordinates(lonlat(e2["overlap_wkt"])) == 5
    assert parcel_drawn.area == pytest.approx(e2["overlap_m2"], rel=1e-3)


def test_outside_reference_evidence_draws_the_inside_part():
    ov = overlay([decl("D1", 10000.0, geom=sq(50, 0, 100)),
                  decl("D2", 2500.0, geom=sq(500, 500, 50), applicant="A2")],
                 [parcel("P1", sq(0, 0, 100))],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 5000.0,
                         "by": "geometry"}],
                 outside=[{"declaration_id": "D1", "outside_m2": 5000.0, "outside_share": 0.5},
                          {"declaration_id": "D2", "outside_m2": 2500.0,
                           "outside_share": 1.0}])
    hits = run("farmland.outside_reference", ov)
    assert hits["subject_id"].tolist() == ["D1", "D2"]
    e1, e2 = ev(hits, 0), ev(hits, 1)
    inside = wkt_in(e1, "inside_wkt")
    assert e1["inside_m2"] == 5000.0 and inside.area == pytest.approx(5000.0, rel=1e-3)
    assert inside.symmetric_difference(sq(50, 0, 50, 100)).area < 1.0
    assert hits.geometry.iloc[0].symmetric_difference(sq(100, 0, 50, 100)).area < 1e-6
    assert e1["parcel_ids"] == ["P1"]
    # nothing inside any reference parcel: the key is left out, not an empty geometry
    assert "inside_wkt" not in e2 and e2["inside_m2"] == 0.0 and e2["parcel_ids"] == []


def test_double_claim_evidence_names_both_declarations_of_the_stored_layer():
    hits = run("farmland.double_claim", _pair(2500.0))
    e = ev(hits)
    # the map resolves "declaration_ids" against the stored layer "declarations"
    # (id column declaration_id, see reconcile.write_run); the overlap is the geometry
    assert e["declaration_ids"] == ["D1", "D2"]
    assert not [k for k in e if k.endswith("_wkt")]
    assert hits.geometry.iloc[0].area == pytest.approx(e["overlap_m2"])


def test_non_farmland_evidence_draws_the_nonfarm_land():
    g = sq(0, 0, 100)
    layer = gpd.GeoDataFrame({"land_use": ["建设用地", "耕地", "water"]},
                             geometry=[sq(80, 0, 50, 100), sq(0, 0, 80, 100), sq(-300, 0, 50)],
                             crs=CRS)
    ov = overlay([decl("D1", 10000.0, geom=g)], [parcel("P1", g)],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 10000.0,
                         "by": "geometry"}],
                 land_use=[{"declaration_id": "D1", "land_use": "建设用地", "overlap_m2": 2000.0},
                           {"declaration_id": "D1", "land_use": "耕地", "overlap_m2": 8000.0}])
    with_layer = farm_rules.RuleContext(area_unit="mu", years=(2025,), crs=CRS, land_use=layer)
    e = ev(run("farmland.non_farmland", ov, with_layer))
    built = wkt_in(e, "overlap_wkt")
    assert e["nonfarm_m2"] == 2000.0 and built.area == pytest.approx(2000.0, rel=1e-3)
    assert built.symmetric_difference(sq(80, 0, 20, 100)).area < 1.0  # farmland not drawn
    # a land-use layer in another CRS is brought to the overlay's
    other = farm_rules.RuleContext(area_unit="mu", years=(2025,), crs=CRS,
                                   land_use=layer.to_crs(4326))
    assert wkt_in(ev(run("farmland.non_farmland", ov, other)), "overlap_wkt").area == \
        pytest.approx(2000.0, rel=1e-3)
    # without the polygons (inputs reconciled in PostGIS) only that key is left out
    bare = ev(run("farmland.non_farmland", ov, ctx()))
    assert bare == {k: v for k, v in e.items() if k != "overlap_wkt"}


def test_non_farmland_evidence_from_the_reference_parcels_land_use():
    g = sq(0, 0, 100)
    ov = overlay([decl("D1", 10000.0, parcel_id="P1", perimeter=400.0)],
                 [parcel("P1", g, land_use="forest")],
                 links=[{"declaration_id": "D1", "parcel_id": "P1", "overlap_m2": 10000.0,
                         "by": "id"}])
    e = ev(run("farmland.non_farmland", ov))  # no land-use polygons needed
    assert e["nonfarm_source"] == "reference parcel land_use"
    forest = wkt_in(e, "overlap_wkt")
    assert forest.symmetric_difference(g).area < 1.0
    assert forest.area == pytest.approx(e["nonfarm_m2"], rel=1e-3)


def test_year_change_evidence_draws_last_years_drawing_when_it_changed():
    hits = run("farmland.year_change", _change(13000.0, 10000.0, 3000.0, 13000.0, drawn=True))
    before = wkt_in(ev(hits), "previous_wkt")
    assert before.symmetric_difference(sq(0, 0, 100)).area < 1.0
    assert ev(hits)["previous_id"] == "D24"
    # no drawing last year: nothing to draw
    assert "previous_wkt" not in ev(run("farmland.year_change", _change(13000.0, 10000.0)))
    # the same drawing, only the declared area changed: the current drawing says it all
    same = sq(0, 0, 100)
    ov = overlay([decl("D25", 13000.0, geom=same), decl("D24", 10000.0, geom=same, year=2024)],
                 changes=[{"declaration_id": "D25", "previous_id": "D24", "declared_m2": 13000.0,
                           "previous_m2": 10000.0, "sym_diff_m2": 0.0, "union_m2": 10000.0}])
    e = ev(run("farmland.year_change", ov))
    assert e["area_change"] == pytest.approx(0.3) and "previous_wkt" not in e


def _check_evidence_shapes(alerts: pd.DataFrame, crs: pyproj.CRS,
                           previous_m2: pd.Series) -> pd.DataFrame:
    """Every ``*_wkt`` of ``alerts``: lon/lat, and its area back in ``crs`` vs the evidence's."""
    rows = []
    for code, text in zip(alerts["rule"], alerts["evidence"], strict=True):
        e = json.loads(text)
        for key, value in e.items():
            if not key.endswith("_wkt"):
                continue
            back = gpd.GeoSeries([lonlat(value)], crs=4326).to_crs(crs).iloc[0]
            stated = (previous_m2[e["previous_id"]] if key == "previous_wkt"
                      else e[STATED[(code, key)]])
            rows.append({"rule": code, "key": key, "area": back.area, "stated": stated,
                         "perimeter": back.length})
    shapes = pd.DataFrame(rows)
    diff = (shapes["area"] - shapes["stated"]).abs()
    # rounding to 1e-7° (≤ 0.56 cm) moves the area by at most ~ perimeter × 0.56 cm; that is
    # below 0.1 % for all but the smallest pieces, which must stay within the rounding
    small = diff > 1e-3 * shapes["stated"]
    assert (diff[small] <= shapes.loc[small, "perimeter"] * 0.0056).all(), shapes[small]
    assert (~small[shapes["stated"] >= 1000.0]).all(), shapes[small]
    return shapes


def test_evidence_geometry_on_the_demo_village(tmp_path):
    from geosup.config import Settings
    from geosup.farmland.demo import farmland_scenario
    from geosup.store import open_store

    with open_store(tmp_path / "geosup.gpkg") as store:
        farmland_scenario(store, tmp_path, Settings())
        alerts = store.alerts()
        layers = store.layers().set_index("name")
        declarations = store.read_layer("declarations")
        previous = store.read_layer("previous")
    crs = declarations.crs
    assert crs.is_projected  # the layers as used, in the metric CRS
    shapes = _check_evidence_shapes(alerts, crs, previous.set_index(
        previous["declaration_id"].astype(str)).area)
    assert (shapes["area"] - shapes["stated"]).abs().max() <= 1e-3 * shapes["stated"].max()
    evidence = [json.loads(t) for t in alerts["evidence"]]
    rules = alerts["rule"].to_numpy()
    for code, key in (*STATED, ("farmland.year_change", "previous_wkt")):
        assert any(key in e for e, r in zip(evidence, rules, strict=True) if r == code), code
    for e, code in zip(evidence, rules, strict=True):
        if code == "farmland.over_declared" and e["level"] == "declaration":
            assert "overlap_wkt" in e
        if code == "farmland.non_farmland":
            assert "overlap_wkt" in e
        if code == "farmland.year_change" and e["geometry_change"]:
            assert "previous_wkt" in e
    # double claims: both declarations are features of the stored layer the map reads
    assert layers.loc["declarations", "id_column"] == "declaration_id"
    stored = set(declarations["declaration_id"].astype(str))
    pairs = [e["declaration_ids"] for e, r in zip(evidence, rules, strict=True)
             if r == "farmland.double_claim"]
    assert pairs and all(len(p) == 2 and set(p) <= stored for p in pairs)


def test_evidence_geometry_on_real_parcels(shared_data):
    # Danish declared fields (fiboa test data, EPSG:25832) as reference parcels; this
    # year's declarations drawn 15 m/10 m off, a tenth claimed again by someone else 10 m
    # the other way; last year's drawings the fields themselves; some fields woodland.
    from geosup.farmland.reconcile import reconcile

    fields = gpd.read_file(shared_data / "parcels/declared/dk/Marker_2026.zip")
    n = len(fields)
    geoms = fields.geometry.to_numpy()
    pid = [f"P{i:03d}" for i in range(n)]
    area = fields.area.to_numpy()
    applicant = ("CVR" + fields["CVR"].astype(str)).to_numpy()
    parcels = gpd.GeoDataFrame({"parcel_id": pid, "eligible_area": area * 0.95 / 1e4},
                               geometry=geoms, crs=fields.crs)

    def declarations(prefix, drawings, who, year, factor):
        return gpd.GeoDataFrame({
            "declaration_id": [f"{prefix}{i:03d}" for i in range(len(drawings))],
            "applicant_id": who, "year": year, "declared_area": area[:len(drawings)] * factor
            / 1e4, "village": "V", "subsidy_amount": 1000.0}, geometry=drawings, crs=fields.crs)

    def moved(drawings, dx, dy):
        return shapely.transform(drawings, lambda c: c + np.array([dx, dy]))

    now = declarations("D", moved(geoms, 15.0, 10.0), applicant, 2025, 1.1)
    again = declarations("X", moved(geoms[::10], -10.0, 0.0), "OTHER", 2025, 1.0)
    again["declared_area"] = area[::10] / 1e4
    before = declarations("B", geoms, applicant, 2024, 1.0)
    land_use = gpd.GeoDataFrame({"land_use": ["林地", "耕地"] * 10},
                                geometry=shapely.buffer(geoms[5:25], -3.0), crs=fields.crs)
    result = reconcile(pd.concat([now, again], ignore_index=True), parcels, land_use=land_use,
                       previous=before, area_unit="ha")
    crs = result.overlay.crs
    drawn = result.overlay.declarations.set_index(
        result.overlay.declarations["declaration_id"].astype(str))["drawn_m2"]
    shapes = _check_evidence_shapes(result.alerts, crs, drawn)
    counts = shapes.groupby(["rule", "key"]).size()
    assert set(counts.index) == {*STATED, ("farmland.year_change", "previous_wkt")}
    assert (counts >= 10).all(), counts
    lon, lat = (gpd.GeoSeries([lonlat(t) for t in result.alerts["evidence"].map(
        lambda x: json.loads(x).get("overlap_wkt")).dropna()], crs=4326).union_all()
        .centroid.coords[0])
    assert 8.0 < lon < 15.5 and 54.5 < lat < 58.0  # Denmark
