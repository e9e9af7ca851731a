"""reconcile() on declarations built from real reference parcels, with known misuse."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geosup.config import Settings
from geosup.errors import ConfigError, GeometryRepairWarning
from geosup.farmland.reconcile import combined_counts, read_inputs, reconcile
from geosup.io import read_table

NL = "parcels/reference/nl/referentiepercelen.gpkg"
AT = "parcels/reference/at/inspire_referenzen_2021_polygon.gpkg.zip"


@pytest.fixture(autouse=True)
def _quiet_repairs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryRepairWarning)
        yield


# --------------------------------------------------------------------------------------------
# NL referentiepercelen (EPSG:28992, MultiPolygons, no area attribute)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nl_parcels(shared_data: Path) -> gpd.GeoDataFrame:
    frame = read_table(shared_data / NL, name="parcels").frame
    frame["parcel_id"] = "NL-" + frame["_row"].astype(str)
    frame["eligible_area"] = (frame.geometry.area / 10000.0).round(6)  # ha
    return frame.sort_values("eligible_area", ascending=False).reset_index(drop=True)


def _nl_declarations(parcels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Declarations by parcel id and by drawing, with known misuse (see the test)."""
    p = parcels.set_index("parcel_id")
    ids = list(parcels["parcel_id"])
    rows = []

    def add(did, applicant, *, pid=None, area, geom=None):
        rows.append({"declaration_id": did, "applicant_id": applicant, "year": 2025,
                     "parcel_id": pid, "declared_area": area, "village": f"V-{applicant}",
                     "crop": "gras", "subsidy_amount": round(area * 300.0, 2),
                     "geometry": geom})

    for k, pid in enumerate(ids[5:15]):  # in order
        add(f"OK-{k}", f"F{k % 5}", pid=pid, area=float(p.at[pid, "eligible_area"]))
    big = ids[0]
    tol_ha = 1.25 * p.at[big, "geometry"].length / 10000.0
    add("OVER-1", "F-OVER", pid=big, area=float(p.at[big, "eligible_area"] * 1.25 + tol_ha))
    add("DRAWN-OK", "F-DRAWN", area=float(p.at[ids[1], "eligible_area"]),
        geom=p.at[ids[1], "geometry"])
    target = p.at[ids[2], "geometry"]
    minx, miny, maxx, maxy = target.bounds
    half = shapely.intersection(target, shapely.box(minx, miny, (minx + maxx) / 2, maxy))
    add("DC-A", "F-A", pid=ids[2], area=float(p.at[ids[2], "eligible_area"]))
    add("DC-B", "F-B", area=round(half.area / 10000.0, 6), geom=half)
    x, y = p.at[ids[3], "geometry"].centroid.coords[0]
    away = shapely.box(x + 30000.0, y, x + 30050.0, y + 50.0)  # 30 km off the register
    add("OUT-1", "F-OUT", area=round(away.area / 10000.0, 6), geom=away)
    add("UNKNOWN", "F0", pid="NL-9999", area=0.1)
    add("ZERO", "F1", pid=ids[20], area=0.0)
    frame = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs=parcels.crs)
    return frame


EXPECTED_NL = {
    ("farmland.over_declared", "declaration", "OVER-1"),
    ("farmland.over_declared", "applicant", "F-OVER"),
    ("farmland.double_claim", "declaration", "DC-A|DC-B"),
    ("farmland.outside_reference", "declaration", "OUT-1"),
    # nothing of OUT-1 is found in the register: its applicant's excess is 100 %
    ("farmland.over_declared", "applicant", "F-OUT"),
}


def _keys(alerts: pd.DataFrame) -> set[tuple[str, str, str]]:
    return set(zip(alerts["rule"], alerts["subject_type"], alerts["subject_id"], strict=True))


def test_nl_known_misuse_gives_exactly_the_expected_alerts(nl_parcels):
    declarations = _nl_declarations(nl_parcels)
    # the drawings come in WGS-84, the parcels in RD New: both end in one metric CRS
    declarations = declarations.to_crs(4326)
    result = reconcile(declarations, nl_parcels.drop(columns=["type"]), area_unit="ha")
    assert _keys(result.alerts) == EXPECTED_NL
    assert result.alerts.crs.to_epsg() == 4326
    assert result.prepared.crs.to_epsg() in (32631, 32632)
    assert result.context.years == (2025,)

    # rows the check could not use are in the ledger, counted per input
    rejects = result.rejects.set_index("key")["reason"]
    assert "not in the reference parcels" in rejects["UNKNOWN"]
    assert "must be > 0" in rejects["ZERO"]
    assert result.counts["declarations"] == {"rows_in": 17, "rows_used": 15,
                                             "rows_rejected": 2}

    alerts = result.alerts.set_index("subject_id")
    p = nl_parcels.set_index("parcel_id")
    big = nl_parcels["parcel_id"].iloc[0]
    ev = json.loads(alerts.at["OVER-1", "evidence"])
    eligible_m2 = p.at[big, "eligible_area"] * 10000.0
    assert ev["eligible_found_m2"] == pytest.approx(eligible_m2, rel=1e-4)
    assert ev["declared_area"] == pytest.approx(
        p.at[big, "eligible_area"] * 1.25 + 1.25 * p.at[big, "geometry"].length / 10000.0,
        rel=1e-4)
    assert ev["tolerance_m2"] == pytest.approx(1.25 * p.at[big, "geometry"].length, rel=2e-3)
    assert ev["excess_m2"] == pytest.approx(0.25 * eligible_m2, rel=5e-3)
    assert ev["parcel_ids"] == [big] and ev["area_unit"] == "ha"
    share = ev["excess_m2"] / ev["determined_m2"]  # excess over eligible + tolerance
    assert ev["excess_share"] == pytest.approx(share, rel=1e-5)
    assert ev["band"] == (2 if share > 0.2 else 1)
    assert alerts.at["OVER-1", "severity"] == ("high" if share > 0.2 else "medium")
    assert alerts.at["OVER-1", "amount_at_risk"] == pytest.approx(
        alerts.at["OVER-1", "score"] * declarations.set_index("declaration_id").at[
            "OVER-1", "subsidy_amount"])

    ev = json.loads(alerts.at["DC-A|DC-B", "evidence"])
    half = declarations.to_crs(nl_parcels.crs).set_index("declaration_id").at["DC-B",
                                                                                "geometry"]
    assert ev["overlap_m2"] == pytest.approx(half.area, rel=2e-3)
    assert ev["declaration_ids"] == ["DC-A", "DC-B"] and ev["applicant_ids"] == ["F-A", "F-B"]
    assert ev["parcel_ids"] == [nl_parcels["parcel_id"].iloc[2]]
    overlap = alerts.loc[["DC-A|DC-B"]].to_crs(nl_parcels.crs).geometry.iloc[0]
    assert overlap.area == pytest.approx(half.area, rel=2e-3)

    ev = json.loads(alerts.at["OUT-1", "evidence"])
    assert ev["outside_share"] == pytest.approx(1.0) and ev["parcel_ids"] == []


def test_nl_settings_and_rule_selection(nl_parcels):
    declarations = _nl_declarations(nl_parcels)
    parcels = nl_parcels.drop(columns=["type"])
    settings = Settings.load(file=None, env={}, overrides={
        "rules.farmland.over_declared.buffer_m": 1000.0})  # a tolerance up to the 1 ha cap
    result = reconcile(declarations, parcels, area_unit="ha", settings=settings)
    assert ("farmland.over_declared", "declaration", "OVER-1") not in _keys(result.alerts)
    assert result.thresholds["farmland.over_declared"]["buffer_m"] == 1000.0
    only = reconcile(declarations, parcels, area_unit="ha", rules=["farmland.double_claim"])
    assert _keys(only.alerts) == {("farmland.double_claim", "declaration", "DC-A|DC-B")}
    with pytest.raises(ConfigError, match="not declared"):
        reconcile(declarations, parcels, area_unit=None)
    # declarations of another year are not under review: no alert
    later = reconcile(declarations, parcels, area_unit="ha", years=[2026])
    assert not len(later.alerts)


def test_nl_water_parcels_are_non_farmland(nl_parcels):
    """98 of the 100 NL reference parcels are of type Water; declared, they are flagged."""
    parcels = nl_parcels.rename(columns={"type": "land_use"})
    farm = parcels.loc[parcels["land_use"] == "Landbouwgrond", "parcel_id"].tolist()
    water = parcels.loc[parcels["land_use"] == "Water", "parcel_id"].tolist()[:3]
    chosen = farm + water
    eligible = parcels.set_index("parcel_id")["eligible_area"]
    declarations = pd.DataFrame({
        "declaration_id": [f"D-{pid}" for pid in chosen],
        "applicant_id": [f"F{i}" for i in range(len(chosen))], "year": 2025,
        "parcel_id": chosen, "declared_area": [eligible[p] for p in chosen]})
    result = reconcile(declarations, parcels, area_unit="ha")
    flagged = result.alerts.loc[result.alerts["rule"] == "farmland.non_farmland"]
    assert sorted(flagged["subject_id"]) == sorted(f"D-{pid}" for pid in water)
    ev = json.loads(flagged["evidence"].iloc[0])
    assert ev["nonfarm_source"] == "reference parcel land_use"
    assert ev["nonfarm_share"] == pytest.approx(1.0)


def _alert_table(alerts: pd.DataFrame) -> dict[str, dict]:
    return {row.alert_id: {"rule": row.rule, "subject": row.subject_id,
                           "evidence": json.loads(row.evidence)}
            for row in alerts.itertuples()}


def _same_evidence(a: dict, b: dict, path: str = "") -> None:
    assert set(a) == set(b), path
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            _same_evidence(x, y, f"{path}.{key}")
        elif isinstance(x, float) or isinstance(y, float):
            assert y == pytest.approx(x, rel=1e-6, abs=0.02), f"{path}.{key}"
        else:
            assert x == y, f"{path}.{key}"


@pytest.mark.postgis
def test_both_engines_give_the_same_alerts(nl_parcels, postgis_url):
    import psycopg
    declarations = _nl_declarations(nl_parcels)
    parcels = nl_parcels.drop(columns=["type"])
    here = reconcile(declarations, parcels, area_unit="ha")
    with psycopg.connect(postgis_url) as conn:
        there = reconcile(declarations, parcels, area_unit="ha", engine="postgis",
                          connection=conn)
        conn.rollback()
    assert there.overlay.notes.get("engine") == "postgis"
    a, b = _alert_table(here.alerts), _alert_table(there.alerts)
    assert set(a) == set(b) and len(a) == len(EXPECTED_NL)
    for alert_id in a:
        assert a[alert_id]["rule"] == b[alert_id]["rule"]
        _same_evidence(a[alert_id]["evidence"], b[alert_id]["evidence"], alert_id)
    assert np.allclose(here.alerts.sort_values("alert_id")["amount_at_risk"],
                       there.alerts.sort_values("alert_id")["amount_at_risk"], rtol=1e-6)


def test_postgis_engine_needs_a_connection(nl_parcels):
    with pytest.raises(ConfigError, match="connection"):
        reconcile(_nl_declarations(nl_parcels), nl_parcels, area_unit="ha", engine="postgis")
    with pytest.raises(ConfigError, match="unknown farmland engine"):
        reconcile(_nl_declarations(nl_parcels), nl_parcels, area_unit="ha", engine="spark")


# --------------------------------------------------------------------------------------------
# AT Referenzen (a .gpkg.zip in EPSG:31287) and a clerk's CSV with German headers
# --------------------------------------------------------------------------------------------

AT_COLUMNS = {
    "parcels": {"parcel_id": "RFL_ID", "eligible_area": "BRUTTOFLAECHE_HA",
                "land_use": "REF_ART_BEZEICHNUNG"},
    "declarations": {"declaration_id": "AntragNr", "applicant_id": "BetriebsNr",
                     "year": "Jahr", "parcel_id": "RFL", "declared_area": "Flaeche_ha",
                     "crop": "Kultur", "village": "Gemeinde", "subsidy_amount": "Betrag"},
}


def write_at_declarations(shared_data: Path, folder: Path) -> tuple[Path, dict]:
    """A semicolon CSV of declarations on real AT reference parcels, with known misuse."""
    parcels = gpd.read_file(f"/vsizip/{shared_data / AT}")
    parcels = parcels.sort_values("BRUTTOFLAECHE_HA", ascending=False).reset_index(drop=True)
    rfl = parcels["RFL_ID"].astype("int64").astype(str)
    ha = parcels["BRUTTOFLAECHE_HA"]
    rows = []

    def add(nr, betrieb, *, pid="", area, wkt=""):
        rows.append({"AntragNr": nr, "BetriebsNr": betrieb, "Jahr": 2025, "RFL": pid,
                     "Flaeche_ha": area, "Kultur": "Wiese", "Gemeinde": f"G-{betrieb}",
                     "Betrag": "" if area == "" else round(float(area or 0) * 250.0, 2),
                     "wkt": wkt})

    for k in range(5, 13):
        add(f"AT-OK-{k}", f"B{k % 4}", pid=rfl[k], area=f"{ha[k]:.6f}")
    tol = 1.25 * parcels.geometry.iloc[0].length / 10000.0
    add("AT-OVER", "BOVER", pid=rfl[0], area=f"{ha[0] * 1.3 + tol:.6f}")
    drawn = parcels.to_crs(4326).geometry.iloc[1]
    add("AT-DRAWN", "BDRAWN", area=f"{ha[1]:.6f}", wkt=drawn.wkt)
    add("AT-DUP-1", "B-X", pid=rfl[2], area=f"{ha[2]:.6f}")
    add("AT-DUP-2", "B-Y", pid=rfl[2], area=f"{ha[2]:.6f}")
    add("AT-UNKNOWN", "B0", pid="999999999", area="0.5")
    add("AT-ZERO", "B1", pid=rfl[3], area="0")
    add("AT-NOAREA", "B2", pid=rfl[4], area="")
    path = folder / "antraege.csv"
    pd.DataFrame(rows).to_csv(path, sep=";", index=False)
    return path, {"over": rfl[0], "dup": rfl[2]}


def test_at_through_files_and_a_column_mapping(shared_data, tmp_path):
    csv, ids = write_at_declarations(shared_data, tmp_path)
    inputs = read_inputs({"declarations": csv, "parcels": shared_data / AT},
                         columns=AT_COLUMNS, crs="EPSG:4326")
    assert inputs.counts["declarations"] == {"rows_in": 15, "rows_used": 14,
                                             "rows_rejected": 1}  # the missing area
    decl = inputs.frames["declarations"]
    assert decl.geometry.notna().sum() == 1  # the others are declared by parcel id
    result = reconcile(inputs.get("declarations"), inputs.get("parcels"), area_unit="ha")
    assert _keys(result.alerts) == {
        ("farmland.over_declared", "declaration", "AT-OVER"),
        ("farmland.over_declared", "applicant", "BOVER"),
        ("farmland.double_claim", "declaration", "AT-DUP-1|AT-DUP-2"),
    }
    assert result.prepared.crs.to_epsg() in (32632, 32633)  # a UTM zone of Austria
    counts = combined_counts(inputs, result)
    assert counts["declarations"] == {"rows_in": 15, "rows_used": 12, "rows_rejected": 3}
    assert counts["parcels"]["rows_in"] == 100
    reasons = pd.concat([inputs.rejects, result.rejects]).set_index("key")["reason"]
    assert set(reasons.index) >= {"AT-UNKNOWN", "AT-ZERO", "AT-NOAREA"}
    ev = json.loads(result.alerts.set_index("subject_id").at["AT-OVER", "evidence"])
    assert ev["parcel_ids"] == [ids["over"]]
    ev = json.loads(result.alerts.set_index("subject_id").at["AT-DUP-1|AT-DUP-2", "evidence"])
    assert ev["parcel_ids"] == [ids["dup"]] and ev["share_a"] == pytest.approx(1.0)
