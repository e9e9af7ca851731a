"""``geosup farmland reconcile`` end to end, on real files, into both store backends."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from click.testing import CliRunner

from geosup.cli import main
from geosup.store import open_store
from geosup.testing import cli_error_line

AT = "parcels/reference/at/inspire_referenzen_2021_polygon.gpkg.zip"
MAP = [
    "--map", "parcels.parcel_id=RFL_ID", "--map", "parcels.eligible_area=BRUTTOFLAECHE_HA",
    "--map", "declarations.declaration_id=AntragNr",
    "--map", "declarations.applicant_id=BetriebsNr", "--map", "declarations.year=Jahr",
    "--map", "declarations.parcel_id=RFL", "--map", "declarations.declared_area=Flaeche_ha",
    "--map", "declarations.village=Gemeinde", "--map", "declarations.subsidy_amount=Betrag",
]
EXPECTED = {
    ("farmland.over_declared", "AT-OVER"), ("farmland.over_declared", "BOVER"),
    ("farmland.double_claim", "AT-DUP-1|AT-DUP-2"),
}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def _write_declarations(shared_data: Path, folder: Path, *, drop: str | None = None) -> Path:
    """A clerk's semicolon CSV of declarations on real AT reference parcels."""
    parcels = gpd.read_file(f"/vsizip/{shared_data / AT}")
    parcels = parcels.sort_values("BRUTTOFLAECHE_HA", ascending=False).reset_index(drop=True)
    rfl = parcels["RFL_ID"].astype("int64").astype(str)
    ha = parcels["BRUTTOFLAECHE_HA"]
    rows = []

    def add(nr, betrieb, *, pid="", area, wkt=""):
        rows.append({"AntragNr": nr, "BetriebsNr": betrieb, "Jahr": 2025, "RFL": pid,
                     "Flaeche_ha": area, "Gemeinde": f"G-{betrieb}", "Betrag": 100.0,
                     "wkt": wkt})

    for k in range(5, 13):
        add(f"AT-OK-{k}", f"B{k % 4}", pid=rfl[k], area=f"{ha[k]:.6f}")
    tol = 1.25 * parcels.geometry.iloc[0].length / 10000.0
    add("AT-OVER", "BOVER", pid=rfl[0], area=f"{ha[0] * 1.3 + tol:.6f}")
    add("AT-DRAWN", "BDRAWN", area=f"{ha[1]:.6f}", wkt=parcels.to_crs(4326).geometry.iloc[1].wkt)
    add("AT-DUP-1", "B-X", pid=rfl[2], area=f"{ha[2]:.6f}")
    add("AT-DUP-2", "B-Y", pid=rfl[2], area=f"{ha[2]:.6f}")
    add("AT-UNKNOWN", "B0", pid="999999999", area="0.5")
    add("AT-ZERO", "B1", pid=rfl[3], area="0")
    add("AT-NOAREA", "B2", pid=rfl[4], area="")
    frame = pd.DataFrame(rows)
    if drop:
        frame = frame.drop(columns=drop)
    path = folder / "antraege.csv"
    frame.to_csv(path, sep=";", index=False)
    return path


def _args(shared_data: Path, csv: Path, store: str, *extra: str) -> list[str]:
    return ["farmland", "reconcile", "--declarations", str(csv), "--parcels",
            str(shared_data / AT), "--store", store, "--area-unit", "ha",
            "--input-crs", "EPSG:4326", *MAP, *extra]


def _keys(alerts: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(alerts["rule"], alerts["subject_id"], strict=True))


def test_reconcile_end_to_end(runner, shared_data, tmp_path, store_url):
    csv = _write_declarations(shared_data, tmp_path)
    res = runner.invoke(main, _args(shared_data, csv, store_url))
    assert res.exit_code == 0, res.output
    # rows in / used / rejected per input on stderr (prepare's hygiene rejects included)
    assert "declarations: 15 rows in, 12 used, 3 rejected" in res.stderr
    assert "parcels: 100 rows in, 100 used, 0 rejected" in res.stderr
    # the summary on stdout
    assert "farmland.over_declared" in res.stdout and "farmland.double_claim" in res.stdout
    assert "3 alert(s): 3 new, 0 updated; 3 rejected row(s); years 2025" in res.stdout
    with open_store(store_url, create=False) as st:
        alerts = st.alerts()
        rejects = st.rejects()
        runs = st.runs()
        layers = set(st.layers()["name"])
        stored = st.read_layer("declarations")
    assert _keys(alerts) == EXPECTED
    assert alerts.crs.to_epsg() == 4326 and alerts.geometry.notna().all()
    reasons = rejects.set_index("key")["reason"]
    assert "not in the reference parcels" in reasons["AT-UNKNOWN"]
    assert "must be > 0" in reasons["AT-ZERO"]
    assert "declared_area" in reasons["AT-NOAREA"]
    assert len(runs) == 1 and runs["command"].iloc[0] == "farmland reconcile"
    counts = json.loads(runs["counts"].iloc[0]) if isinstance(runs["counts"].iloc[0], str) \
        else runs["counts"].iloc[0]
    assert counts["inputs"]["declarations"] == {"rows_in": 15, "rows_used": 12,
                                                "rows_rejected": 3}
    assert {"declarations", "parcels"} <= layers
    assert len(stored) == 12 and set(stored["declaration_id"]) >= {"AT-OVER", "AT-DRAWN"}


def test_rerun_updates_and_keeps_the_review(runner, shared_data, tmp_path):
    store = str(tmp_path / "audit.gpkg")
    csv = _write_declarations(shared_data, tmp_path)
    assert runner.invoke(main, _args(shared_data, csv, store)).exit_code == 0
    with open_store(store) as st:
        first = st.alerts()
        target = first.loc[first["subject_id"] == "AT-OVER", "alert_id"].iloc[0]
        st.review(target, status="investigating", by="inspector Li", note="field visit")
    res = runner.invoke(main, _args(shared_data, csv, store))
    assert res.exit_code == 0, res.output
    assert "3 alert(s): 0 new, 3 updated" in res.stdout
    with open_store(store) as st:
        second = st.alerts()
        assert sorted(second["alert_id"]) == sorted(first["alert_id"])
        row = st.alert(target)
        assert row["status"] == "investigating" and row["status_note"] == "field visit"
        events = st.events(target)  # raised by the first run, then the review; no more
        assert events["to_status"].tolist()[-1] == "investigating" and len(events) == 2
        assert len(st.runs()) == 2


@pytest.mark.postgis
def test_postgis_engine_inside_the_store_run(runner, shared_data, tmp_path, postgis_url):
    csv = _write_declarations(shared_data, tmp_path)
    res = runner.invoke(main, _args(shared_data, csv, postgis_url, "--engine", "postgis"))
    assert res.exit_code == 0, res.output
    gpkg = str(tmp_path / "inprocess.gpkg")
    assert runner.invoke(main, _args(shared_data, csv, gpkg)).exit_code == 0
    with open_store(postgis_url, create=False) as st:
        there = st.alerts()
        params = st.runs()["params"].iloc[0]
    with open_store(gpkg, create=False) as st:
        here = st.alerts()
    assert sorted(there["alert_id"]) == sorted(here["alert_id"])
    assert _keys(there) == EXPECTED
    params = json.loads(params) if isinstance(params, str) else params
    assert params["engine"] == "postgis"




def test_missing_column_is_one_line(runner, shared_data, tmp_path):
    csv = _write_declarations(shared_data, tmp_path, drop="Flaeche_ha")
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv,
                                                     str(tmp_path / "s.gpkg"))))
    assert "Flaeche_ha" in line
    assert not (tmp_path / "s.gpkg").exists() or not len(open_store(
        tmp_path / "s.gpkg").alerts())


def test_undeclared_unit_is_an_error(runner, shared_data, tmp_path):
    csv = _write_declarations(shared_data, tmp_path)
    args = _args(shared_data, csv, str(tmp_path / "s.gpkg"))
    i = args.index("--area-unit")
    without = args[:i] + args[i + 2:]
    line = cli_error_line(runner.invoke(main, without))
    assert "not declared" in line and "--area-unit" in line
    line = cli_error_line(runner.invoke(main, [*without, "--area-unit", "acre"]))
    assert "unknown area unit" in line
    # declared in the settings file instead
    config = tmp_path / "geosup.toml"
    config.write_text('area_unit = "ha"\n', encoding="utf-8")
    res = runner.invoke(main, ["--config", str(config), *without])
    assert res.exit_code == 0, res.output


def test_bad_options_are_one_line(runner, shared_data, tmp_path):
    csv = _write_declarations(shared_data, tmp_path)
    store = str(tmp_path / "s.gpkg")
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv, store, "-t",
                                                     "over_declared.nope=1")))
    assert "no threshold 'nope'" in line
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv, store, "-t",
                                                     "over_declared.buffer_m=wide")))
    assert "buffer_m" in line
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv, store, "-t",
                                                     "no_such_rule.x=1")))
    assert "unknown rule" in line
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv, store, "--map",
                                                     "nowhere.x=y")))
    assert "unknown input" in line
    line = cli_error_line(runner.invoke(main, _args(shared_data, csv, store, "--engine",
                                                     "postgis")))
    assert "postgresql://" in line


def test_thresholds_years_and_rules(runner, shared_data, tmp_path):
    csv = _write_declarations(shared_data, tmp_path)
    store = str(tmp_path / "s.gpkg")
    res = runner.invoke(main, _args(shared_data, csv, store, "-t",
                                    "farmland.over_declared.cap_m2=1e7", "-t",
                                    "over_declared.buffer_m=1000"))
    assert res.exit_code == 0, res.output
    with open_store(store) as st:
        assert _keys(st.alerts()) == {("farmland.double_claim", "AT-DUP-1|AT-DUP-2")}
        params = st.runs()["params"].iloc[-1]
    params = json.loads(params) if isinstance(params, str) else params
    assert params["thresholds"]["farmland.over_declared"]["buffer_m"] == 1000.0
    res = runner.invoke(main, _args(shared_data, csv, str(tmp_path / "y.gpkg"), "--year",
                                    "2026"))
    assert res.exit_code == 0 and "0 alert(s)" in res.stdout
    res = runner.invoke(main, _args(shared_data, csv, str(tmp_path / "r.gpkg"), "--rule",
                                    "farmland.double_claim"))
    assert res.exit_code == 0 and "1 alert(s)" in res.stdout


def test_demo_files_reconcile_with_their_settings_file(runner, tmp_path):
    from geosup.farmland.demo import build_demo, write_demo_inputs

    demo = build_demo()
    paths = write_demo_inputs(demo, tmp_path / "farmland")
    res = runner.invoke(main, [
        "--config", str(tmp_path / "farmland" / "geosup.toml"), "farmland", "reconcile",
        "--declarations", paths["declarations"], "--parcels", paths["parcels"],
        "--land-use", paths["land_use"], "--persons", paths["persons"],
        "--previous", paths["previous"], "--store", str(tmp_path / "demo.gpkg")])
    assert res.exit_code == 0, res.output
    assert f"{len(demo.truth)} alert(s)" in res.stdout
    with open_store(tmp_path / "demo.gpkg") as st:
        got = _keys(st.alerts())
    assert got == set(zip(demo.truth["rule"], demo.truth["subject_id"], strict=True))


@pytest.mark.postgis
def test_inputs_living_in_postgis_are_reconciled_there(runner, shared_data, tmp_path,
                                                      postgis_url):
    from geosup.store import write_database_table

    csv = _write_declarations(shared_data, tmp_path)
    table = pd.read_csv(csv, sep=";", dtype={"RFL": str})
    wkt = table.pop("wkt")
    geoms = gpd.GeoSeries.from_wkt(wkt.where(wkt.notna(), None), crs=4326)
    declarations = gpd.GeoDataFrame(table, geometry=geoms, crs=4326)
    parcels = gpd.read_file(f"/vsizip/{shared_data / AT}")
    write_database_table(postgis_url, declarations, table="antraege", schema="public")
    write_database_table(postgis_url, parcels, table="referenzen", schema="public")
    res = runner.invoke(main, [
        "farmland", "reconcile", "--declarations", f"{postgis_url}#public.antraege",
        "--parcels", f"{postgis_url}#public.referenzen", "--store", postgis_url,
        "--engine", "postgis", "--area-unit", "ha", "--crs", "EPSG:32632", *MAP])
    assert res.exit_code == 0, res.output
    assert "declarations: 15 rows in, 12 used, 3 rejected" in res.stderr
    with open_store(postgis_url, create=False) as st:
        alerts = st.alerts()
        params = st.runs()["params"].iloc[0]
        rejects = st.rejects()
    assert _keys(alerts) == EXPECTED
    params = json.loads(params) if isinstance(params, str) else params
    assert params["in_database"] is True
    assert {"AT-UNKNOWN", "AT-ZERO", "AT-NOAREA"} <= set(rejects["key"])
    # without --crs the in-database path asks for the metric CRS
    res = runner.invoke(main, [
        "farmland", "reconcile", "--declarations", f"{postgis_url}#public.antraege",
        "--parcels", f"{postgis_url}#public.referenzen", "--store", postgis_url,
        "--engine", "postgis", "--area-unit", "ha", *MAP])
    assert "--crs" in cli_error_line(res)
