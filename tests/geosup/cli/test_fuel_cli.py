"""``geosup fuel audit`` end to end: the demo city's files, the real Urbana export, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from geosup.cli import main
from geosup.demo import precision_recall
from geosup.store import open_store
from geosup.testing import cli_error_line
from trajectories.demo import (
    TRANSACTION_COLUMNS,
    TRANSACTION_TIME_COLUMNS,
    FuelInputs,
    make_fuel_inputs,
)
from trajectories.rules import FUEL_RULES

URBANA = "trajectories/urbana_fleet_fuel_card_transactions_2017.csv"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def demo_inputs(tmp_path_factory: pytest.TempPathFactory) -> FuelInputs:
    return make_fuel_inputs(tmp_path_factory.mktemp("fuel"))


def _maps() -> list[str]:
    items = [f"transactions.{k}={v}" for k, v in TRANSACTION_COLUMNS.items()]
    items += [f"transactions.time={c}" for c in TRANSACTION_TIME_COLUMNS]
    return [arg for item in items for arg in ("--map", item)]


def _demo_args(inputs: FuelInputs, store: str, **replace: str) -> list[str]:
    paths = {name: str(inputs.paths[name]) for name in
             ("fixes", "transactions", "stations", "vehicles", "cards")}
    paths.update(replace)
    args = ["fuel", "audit", "--store", store, "--stations-crs", "gcj02"]
    for name, path in paths.items():
        args += [f"--{name}", path]
    return args + _maps()


def _stdout_table(text: str) -> pd.DataFrame:
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("fuel.")]
    return pd.DataFrame([r[:5] for r in rows],
                        columns=["rule", "alerts", "ran", "checked", "not_checkable"]).astype(
        {"alerts": int, "checked": int, "not_checkable": int}).set_index("rule")


def test_audit_the_demo_files(runner, store_url, demo_inputs):
    res = runner.invoke(main, _demo_args(demo_inputs, store_url))
    assert res.exit_code == 0, res.output
    table = _stdout_table(res.stdout)
    assert list(table.index) == list(FUEL_RULES)
    want = demo_inputs.truth.groupby("rule").size()
    assert table["alerts"].to_dict() == want.to_dict()
    for unit in pd.read_csv(demo_inputs.paths["vehicles"])["unit"].unique():
        assert unit in res.stdout  # the unit-level summary
    assert "transactions: 60 rows in, 57 used, 3 rejected" in res.stderr
    assert "cards: 41 rows in, 40 used, 1 rejected" in res.stderr
    assert "stations: 10 rows in, 10 used, 0 rejected" in res.stderr
    with open_store(store_url) as st:
        alerts = st.alerts(domain="fuel")
        rejects = st.rejects()
        runs = st.runs()
        layers = st.layers().set_index("name")
    scores = precision_recall(alerts, demo_inputs.truth)
    assert (scores["precision"] == 1.0).all() and (scores["recall"] == 1.0).all()
    assert len(runs) == 1 and runs["command"].iloc[0] == "fuel audit"
    assert layers.loc["fuel_stations", "rows"] == 10
    # the run spans the command: it starts before the inputs are read, not when it writes
    inputs = {i["name"]: i for i in json.loads(runs["inputs"].iloc[0])}
    assert inputs["fixes"]["size"] > 0 and len(inputs["fixes"]["sha256"]) == 64
    assert (runs["ended_at"] - runs["started_at"]).iloc[0] > pd.Timedelta(0)
    assert rejects.groupby("source").size().to_dict() == {
        "cards": 1, "fixes": 4, "transactions": 3}
    # Every alert names the transaction or vehicle and carries a geometry for the map.
    assert alerts["geometry"].notna().all()
    assert alerts["evidence"].str.contains("threshold").all()
    # A second run updates the same alerts.
    res = runner.invoke(main, _demo_args(demo_inputs, store_url))
    assert res.exit_code == 0, res.output
    assert f"{len(alerts)} alerts (0 new, {len(alerts)} updated)" in res.stderr
    with open_store(store_url) as st:
        assert len(st.alerts(domain="fuel")) == len(alerts)


def test_run_starts_with_the_command_and_a_bad_store_fails_first(runner, tmp_path,
                                                                 demo_inputs):
    store = str(tmp_path / "s.gpkg")
    before = pd.Timestamp.now(tz="UTC")
    clock = time.perf_counter()
    res = runner.invoke(main, _demo_args(demo_inputs, store))
    took = pd.Timedelta(seconds=time.perf_counter() - clock)
    assert res.exit_code == 0, res.output
    with open_store(store) as st:
        run = st.runs().iloc[0]
    assert before.floor("ms") <= run["started_at"]
    # the reading and the audit happen inside the run (most of the command's time)
    assert run["ended_at"] - run["started_at"] >= took / 2
    # an unreachable store is reported before the inputs are even read
    bad = "postgresql://auditor:s3cret@127.0.0.1:1/audit"
    res = runner.invoke(main, _demo_args(demo_inputs, bad, fixes=str(tmp_path / "none.csv")))
    assert res.exit_code == 1
    assert "cannot connect to PostgreSQL" in res.output and "none.csv" not in res.output
    assert "s3cret" not in res.output


def test_unknown_cards_and_stations_are_counted_rejects(runner, tmp_path, demo_inputs):
    store = str(tmp_path / "s.gpkg")
    res = runner.invoke(main, _demo_args(demo_inputs, store))
    assert res.exit_code == 0, res.output
    with open_store(store) as st:
        rejects = st.rejects()
        run = st.runs().iloc[0]
    tx = rejects[rejects["source"] == "transactions"].set_index("key")["reason"]
    bad = demo_inputs.transactions.set_index("case")["tx_id"]
    assert tx[bad["bad:card"]] == "unknown card '71009999'"
    assert tx[bad["bad:station"]] == "unknown station '34019999'"
    assert "not in the vehicle table" in tx[bad["bad:vehicle"]]
    assert '"transactions": {"rows_in": 60, "rows_rejected": 3, "rows_used": 57}' in run["counts"]


def test_rule_selection_and_thresholds(runner, tmp_path, demo_inputs):
    store = str(tmp_path / "s.gpkg")
    args = [*_demo_args(demo_inputs, store),
            "--rule", "fuel.over_tank_capacity", "--rule", "fuel.off_hours",
            "--threshold", "fuel.over_tank_capacity.tolerance=0.5",
            "--threshold", "fuel.off_hours.work_end=23:30"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    table = _stdout_table(res.stdout)
    assert list(table.index) == ["fuel.over_tank_capacity", "fuel.off_hours"]
    assert table.loc["fuel.over_tank_capacity", "alerts"] == 0  # 1.3 × the tank < +50 %
    assert table.loc["fuel.off_hours", "alerts"] == 2  # 23:00 is now working time
    with open_store(store) as st:
        assert set(st.alerts()["rule"]) == {"fuel.off_hours"}


def test_gcj02_stations_declared_as_wgs84_are_warned_about(runner, tmp_path, demo_inputs):
    args = [a for a in _demo_args(demo_inputs, str(tmp_path / "s.gpkg")) if a != "gcj02"]
    args.remove("--stations-crs")
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "GCJ-02" in res.stderr


def test_a_period_without_fixes(runner, tmp_path, demo_inputs):
    """Fixes end on 2024-09-26; the audit of 27 September - 2 October has no track at all."""
    fixes = gpd.read_parquet(demo_inputs.paths["fixes"])
    cut = pd.Timestamp("2024-09-26", tz="Asia/Shanghai")
    short = tmp_path / "fixes_short.parquet"
    fixes[fixes["time"] < cut].to_parquet(short)
    store = str(tmp_path / "s.gpkg")
    args = [*_demo_args(demo_inputs, store, fixes=str(short)),
            "--period", "2024-09-27", "2024-10-02"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    tx = demo_inputs.transactions
    local = pd.to_datetime(np.floor(tx["t"]).astype("int64"), unit="s", utc=True).dt.tz_convert(
        "Asia/Shanghai")
    inside = tx[(local >= pd.Timestamp("2024-09-27", tz="Asia/Shanghai"))
                & ~tx["case"].str.startswith("bad:")]
    with open_store(store) as st:
        alerts = st.alerts()
        rejects = st.rejects()
    gps = alerts[alerts["rule"] == "fuel.no_gps_coverage"]
    assert set(gps["subject_id"]) == set(inside["tx_id"])
    assert not {"fuel.away_from_station", "fuel.no_stop_at_station"} & set(alerts["rule"])
    outside = rejects[rejects["reason"].str.startswith("outside the audit period")]
    assert len(outside) == (local < pd.Timestamp("2024-09-27", tz="Asia/Shanghai")).sum()


@pytest.mark.parametrize("problem", ["mapped column missing", "required column missing",
                                     "bad threshold", "bad map", "bad period", "bad zone"])
def test_bad_input_is_one_line_and_exit_1(runner, tmp_path, demo_inputs, problem):
    store = str(tmp_path / "s.gpkg")
    args = _demo_args(demo_inputs, store)
    if problem == "mapped column missing":
        args += ["--map", "transactions.card_id=Card Number"]
    elif problem == "required column missing":
        frame = pd.read_csv(demo_inputs.paths["vehicles"], dtype=str)
        path = tmp_path / "vehicles.csv"
        frame.rename(columns={"vehicle_id": "id"}).to_csv(path, index=False)
        args = _demo_args(demo_inputs, store, vehicles=str(path))
    elif problem == "bad threshold":
        args += ["--threshold", "fuel.away_from_station.radius=500"]
    elif problem == "bad map":
        args += ["--map", "card_id=Card Number ID"]
    elif problem == "bad period":
        args += ["--period", "2024-10-02", "2024-09-01"]
    else:
        args += ["--tz", "Mars/Olympus_Mons"]
    cli_error_line(runner.invoke(main, args))
    assert not Path(store).exists()  # nothing was written


# ---------------------------------------------------------------------------------------------
# The real Urbana (IL) fleet fuel-card export: no coordinates, read from ../shared in place
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def urbana(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The export and a vehicle register derived from it (kept in a temporary folder)."""
    source = shared_data / URBANA
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    folder = tmp_path_factory.mktemp("urbana")
    vehicles = raw.groupby("Vehicle ID", sort=True).agg(**{
        "Department": ("Department", "first"),
        "Vehicle Fuel Type": ("Vehicle Fuel Type",
                              lambda s: next((x for x in s if x.strip()), "")),
        "Tank Capacity": ("Tank Capacity", lambda s: max(float(x or 0) for x in s)),
    }).reset_index()
    vehicles.to_csv(folder / "vehicles.csv", index=False)
    return source, folder / "vehicles.csv", raw


def _urbana_args(source: Path, vehicles: Path, store: str) -> list[str]:
    maps = {
        "transactions.tx_id": ["Transaction Id", "Transaction Item Sequence Number"],
        "transactions.card_id": ["Card Number ID"], "transactions.vehicle_id": ["Vehicle ID"],
        "transactions.station_id": ["Merchant Site ID"], "transactions.litres": ["Units"],
        "transactions.amount": ["Net Cost"], "transactions.product": ["Product Class"],
        "transactions.odometer_km": ["Current Odometer"],
        "transactions.time": ["Transaction Date", "Transaction Time"],
        "vehicles.vehicle_id": ["Vehicle ID"], "vehicles.unit": ["Department"],
        "vehicles.fuel_type": ["Vehicle Fuel Type"], "vehicles.tank_l": ["Tank Capacity"],
    }
    args = ["fuel", "audit", "--transactions", str(source), "--vehicles", str(vehicles),
            "--store", store, "--tz", "America/Chicago"]
    for key, columns in maps.items():
        for column in columns:
            args += ["--map", f"{key}={column}"]
    # A US fleet: fills ("Units", "Unit of Measure" GA) and tank sizes in US gallons,
    # odometers in miles.
    for key, unit in URBANA_UNITS.items():
        args += ["--unit", f"{key}={unit}"]
    return args


URBANA_UNITS = {"transactions.litres": "gal", "transactions.odometer_km": "mi",
                "vehicles.tank_l": "gal"}
L_PER_GAL, KM_PER_MI = 3.785411784, 1.609344


def _urbana_expected(raw: pd.DataFrame) -> dict[str, int]:
    """What the rules must find, computed here with pandas from the raw export."""
    raw = raw.assign(_row=np.arange(1, len(raw) + 1))
    wall = pd.to_datetime(raw["Transaction Date"] + " " + raw["Transaction Time"],
                          format="%m/%d/%Y %H:%M:%S")
    ok = wall.dt.tz_localize("America/Chicago", nonexistent="NaT", ambiguous="NaT").notna()
    r = raw[ok].assign(t=wall[ok])
    off = (r["t"].dt.day_of_week >= 5) | (r["t"].dt.hour < 8) | (r["t"].dt.hour >= 18)
    product = r["Product Class"].str.lower()
    pcls = np.where(product.isin(["non-fuel", "service"]), "non-fuel",
                    np.where(product.str.contains("diesel"), "diesel", "petrol"))
    vtype = r.groupby("Vehicle ID")["Vehicle Fuel Type"].transform(
        lambda s: next((x for x in s if x.strip()), "")).str.lower()
    vcls = np.where(vtype == "diesel", "diesel", np.where(vtype == "unleaded", "petrol", ""))
    mismatch = (pcls == "non-fuel") | ((vcls != "") & (pcls != vcls))
    odo = pd.to_numeric(r["Current Odometer"], errors="coerce") * KM_PER_MI
    valid = r[odo > 0].assign(odo=odo[odo > 0]).sort_values(["t", "_row"], kind="stable")
    prev = pd.merge_asof(valid, valid[["t", "Vehicle ID", "odo"]].rename(columns={"odo": "prev"}),
                         on="t", by="Vehicle ID", allow_exact_matches=False)
    delta = prev["odo"] - prev["prev"]
    return {"dst": int((~ok).sum()), "off_hours": int(off.sum()),
            "product_mismatch": int(mismatch.sum()), "backwards": int((delta < 0).sum()),
            "unchanged": int((delta == 0).sum()),
            "jump": int((delta > 1000).sum())}  # max_delta_km


def test_audit_the_real_urbana_export(runner, store_url, urbana):
    source, vehicles, raw = urbana
    res = runner.invoke(main, _urbana_args(source, vehicles, store_url),
                        env={"GEOSUP_CALENDAR__COUNTRY": "none"})
    assert res.exit_code == 0, res.output
    want = _urbana_expected(raw)
    assert want["dst"] == 3  # wall times that do not exist or repeat on the DST change days
    assert (f"transactions: 6,570 rows in, {6570 - want['dst']:,} used, "
            f"{want['dst']} rejected") in res.stderr
    assert "vehicles: 153 rows in, 153 used, 0 rejected" in res.stderr
    table = _stdout_table(res.stdout)
    for code in ("fuel.away_from_station", "fuel.no_gps_coverage", "fuel.consumption_mismatch"):
        assert table.loc[code, "ran"] == "no" and table.loc[code, "alerts"] == 0
    # Tank capacity is known (non-zero) on 489 rows only; the others are not checkable.
    assert table.loc["fuel.over_tank_capacity", "checked"] == 489
    assert table.loc["fuel.off_hours", "alerts"] == want["off_hours"]
    assert table.loc["fuel.product_mismatch", "alerts"] == want["product_mismatch"]
    with open_store(store_url) as st:
        odometer = st.alerts(rule="fuel.odometer_anomaly")
        refills = st.alerts(rule="fuel.rapid_refill")
        rejects = st.rejects()
        params = json.loads(st.runs()["params"].iloc[0])
    titles = odometer["title"].value_counts()
    assert titles["Odometer reading went backwards"] == want["backwards"]
    assert titles["Odometer reading did not advance"] == want["unchanged"]
    assert titles["Odometer reading jumped implausibly"] == want["jump"]
    assert want["backwards"] > 100  # the export's odometer typos
    assert len(rejects) == want["dst"]
    assert rejects["reason"].str.contains("does not exist or is ambiguous").all()
    # The measured values are litres and kilometres: the raw gallons and miles converted.
    by_tx = raw.set_index(raw["Transaction Id"] + " " + raw["Transaction Item Sequence Number"])
    evidence = pd.DataFrame([json.loads(e) for e in odometer["evidence"]])
    miles = pd.to_numeric(by_tx.loc[evidence["tx_id"], "Current Odometer"]).to_numpy()
    assert len(evidence) > 700
    np.testing.assert_allclose(evidence["odometer_km"], miles * KM_PER_MI, rtol=1e-12)
    evidence = pd.DataFrame([json.loads(e) for e in refills["evidence"]])
    gallons = pd.to_numeric(by_tx.loc[evidence["tx_id"], "Units"]).to_numpy()
    assert len(evidence) > 10
    np.testing.assert_allclose(evidence["litres"], gallons * L_PER_GAL, rtol=1e-12)
    assert evidence["litres"].max() > 30 * L_PER_GAL  # the export's > 30 gal fills
    assert params["units"] == {"transactions": {"litres": "gal", "odometer_km": "mi"},
                               "vehicles": {"tank_l": "gal"}}


def test_partitioned_fixes_are_streamed_with_the_same_result(runner, tmp_path, demo_inputs):
    """A directory of GeoParquet partitions (vehicle × month) gives the same alerts."""
    fixes = gpd.read_parquet(demo_inputs.paths["fixes"])
    month = fixes["time"].dt.tz_convert("Asia/Shanghai").dt.strftime("%Y-%m")
    for (vehicle, m), part in fixes.groupby([fixes["vehicle_id"], month]):
        folder = tmp_path / "fixes" / f"vehicle_id={vehicle}" / f"month={m}"
        folder.mkdir(parents=True)
        part.drop(columns=["vehicle_id"]).to_parquet(folder / "part.parquet")
    whole, parts = str(tmp_path / "whole.gpkg"), str(tmp_path / "parts.gpkg")
    res = runner.invoke(main, _demo_args(demo_inputs, whole))
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, _demo_args(demo_inputs, parts, fixes=str(tmp_path / "fixes")))
    assert res.exit_code == 0, res.output
    assert f"fixes: {len(fixes):,} rows in" in res.stderr
    with open_store(whole) as a, open_store(parts) as b:
        one, two = a.alerts(), b.alerts()
    assert sorted(one["alert_id"]) == sorted(two["alert_id"])
    assert len(two) == len(demo_inputs.truth)


def test_mapping_and_calendar_from_files(runner, tmp_path, demo_inputs):
    """``[columns.transactions]`` in geosup.toml instead of --map; a user calendar file."""
    lines = ["[columns.transactions]"]
    lines += [f'{k} = "{v}"' for k, v in TRANSACTION_COLUMNS.items()]
    lines += ['time = ["{}", "{}"]'.format(*TRANSACTION_TIME_COLUMNS)]
    config = tmp_path / "geosup.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    calendar = tmp_path / "calendar.csv"
    calendar.write_text("date,kind,name\n2024-09-22,workday,inspection Sunday\n")
    store = str(tmp_path / "s.gpkg")
    args = [a for a in _demo_args(demo_inputs, store) if a not in _maps()]
    res = runner.invoke(main, ["--config", str(config), *args, "--calendar", str(calendar),
                               "--rule", "fuel.off_hours"])
    assert res.exit_code == 0, res.output
    assert "transactions: 60 rows in, 57 used, 3 rejected" in res.stderr
    with open_store(store) as st:
        off = st.alerts(rule="fuel.off_hours")
    sunday = demo_inputs.transactions.set_index("case").loc["sunday", "tx_id"]
    want = set(demo_inputs.truth.query("rule == 'fuel.off_hours'")["subject_id"]) - {sunday}
    assert set(off["subject_id"]) == want
