"""The fuel scenario of the demo city: inputs, injected truth, precision and recall."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geosup.config import Settings
from geosup.demo import SCENARIOS, precision_recall
from geosup.store import open_store
from trajectories.demo import (
    INJECTED,
    TRANSACTION_COLUMNS,
    TRANSACTION_TIME_COLUMNS,
    fuel_scenario,
    make_fuel_inputs,
)
from trajectories.fixes import clean_fixes
from trajectories.motion import nearest_approach, track_from_fixes
from trajectories.rules import FUEL_RULES


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings.load(file=None, env={})


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, settings: Settings):
    folder = tmp_path_factory.mktemp("demo")
    url = folder / "geosup.gpkg"
    with open_store(url) as st:
        result = fuel_scenario(st, folder, settings)
        alerts = st.alerts(domain="fuel")
    return folder, url, result, alerts


def test_the_scenario_is_registered():
    assert SCENARIOS["fuel"] is fuel_scenario


def test_every_rule_has_an_injected_case(demo):
    _, _, result, _ = demo
    assert set(result.truth["rule"]) == set(FUEL_RULES)
    counts = result.truth.groupby("rule").size()
    assert (counts >= 1).all()


def test_precision_and_recall_per_rule(demo):
    _, _, result, alerts = demo
    scores = precision_recall(alerts, result.truth).set_index("rule")
    assert set(scores.index) == set(FUEL_RULES)
    for code, row in scores.iterrows():
        assert row["fp"] == 0 and row["fn"] == 0, (code, row.to_dict())
        assert row["precision"] == 1.0 and row["recall"] == 1.0
    assert result.alerts == len(alerts)


def test_every_injected_case_is_in_the_truth(tmp_path, settings):
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    truth = inputs.truth
    for case, (codes, _) in INJECTED.items():
        assert set(codes) <= set(truth.loc[truth["case"] == case, "rule"]), case
    # The negative control: a fill on 2024-09-29, a Sunday that was a make-up working day.
    control = inputs.transactions.loc[inputs.transactions["case"] == "makeup_sunday"]
    local = pd.Timestamp(control["t"].iloc[0], unit="s", tz="UTC").tz_convert("Asia/Shanghai")
    assert local.date() == pd.Timestamp("2024-09-29").date() and local.dayofweek == 6
    assert not set(control["tx_id"]) & set(truth["subject_id"])


def test_inputs_are_accounted_for_and_bad_rows_rejected(demo):
    _, url, result, _ = demo
    for source, c in result.inputs.items():
        assert c["rows_in"] == c["rows_used"] + c["rows_rejected"], source
    assert result.inputs["transactions"]["rows_rejected"] == 3
    assert result.inputs["cards"]["rows_rejected"] == 1
    assert result.inputs["fixes"]["rows_rejected"] >= 4  # three duplicates and (0, 0)
    with open_store(url) as st:
        rejects = st.rejects()
        runs = st.runs()
        layers = set(st.layers()["name"])
    tx = rejects.loc[rejects["source"] == "transactions", "reason"].tolist()
    assert any("unknown card" in r for r in tx)
    assert any("unknown station" in r for r in tx)
    assert any("not in the vehicle table" in r for r in tx)
    assert any("(0, 0)" in r for r in rejects.loc[rejects["source"] == "fixes", "reason"])
    assert len(runs) == 1 and runs["command"].iloc[0] == "demo fuel"
    assert {"fuel_stations", "fuel_roads"} <= layers


def test_rerun_updates_instead_of_duplicating(demo, settings):
    folder, url, result, _ = demo
    with open_store(url) as st:
        first = st.alerts(domain="fuel")
        target = first["alert_id"].iloc[0]
        st.review(target, status="investigating", by="inspector", note="asked the unit")
        again = fuel_scenario(st, folder, settings)
        second = st.alerts(domain="fuel")
        assert len(st.runs()) == 2
    assert again.alerts == result.alerts
    assert len(second) == len(first)
    assert set(second["alert_id"]) == set(first["alert_id"])
    kept = second.set_index("alert_id").loc[target]
    assert kept["status"] == "investigating"
    assert kept["status_note"] == "asked the unit"


def test_inputs_are_deterministic(tmp_path, settings):
    a = make_fuel_inputs(tmp_path / "a", settings=settings)
    b = make_fuel_inputs(tmp_path / "b", settings=settings)
    for name in ("transactions", "vehicles", "cards", "stations"):
        assert a.paths[name].read_bytes() == b.paths[name].read_bytes(), name
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert a.paths["fixes"].read_bytes() == b.paths["fixes"].read_bytes()


def test_transactions_export_uses_its_own_column_names(tmp_path, settings):
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    header = pd.read_csv(inputs.paths["transactions"], nrows=0, dtype=str).columns
    assert set(TRANSACTION_COLUMNS.values()) <= set(header)
    assert set(TRANSACTION_TIME_COLUMNS) <= set(header)
    assert not {"tx_id", "card_id", "time", "litres"} & set(header)
    read = inputs.read()
    tx = read["transactions"].frame
    assert str(tx["time"].dt.tz) == "UTC"
    first = inputs.transactions.sort_values("t").iloc[0]
    assert tx["time"].iloc[0] == pd.Timestamp(int(np.floor(first["t"])), unit="s", tz="UTC")


def test_stations_are_published_in_gcj02(tmp_path, settings):
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    raw = gpd.read_file(inputs.paths["stations"]).to_crs(4548)
    true = inputs.stations.to_crs(4548)
    shift = raw.distance(true, align=False).to_numpy()
    assert (shift > 300).all() and (shift < 900).all()  # the GCJ-02 offset in Hefei
    back = inputs.read()["stations"].frame.to_crs(4548)
    assert back.distance(true, align=False).max() < 0.01


def test_fills_happen_at_real_stops_and_misuse_away_from_them(tmp_path, settings):
    """The generator itself: legitimate fills are dwells within about 20 m of the station."""
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    fixes = clean_fixes(inputs.read()["fixes"].frame).frame
    track = track_from_fixes(fixes)
    tx = inputs.transactions
    tx = tx[~tx["case"].str.startswith("bad:") & tx["vehicle_case"].ne("decommissioned")]
    st = inputs.stations.to_crs(track.crs).set_index("station_id")
    times = pd.to_datetime(np.floor(tx["t"].to_numpy()).astype("int64"), unit="s", utc=True)
    near = nearest_approach(track, tx["vehicle_id"].to_numpy(), times,
                            st.loc[tx["station_id"]].geometry.x.to_numpy(),
                            st.loc[tx["station_id"]].geometry.y.to_numpy(),
                            window=pd.Timedelta("2min"))
    near.index = tx.index
    stop_cases = tx["case"].isin(["", "over_tank", "consumption", "rapid", "sunday", "holiday",
                                  "night", "diesel_in_petrol", "non_fuel", "makeup_sunday",
                                  "odometer"])
    assert (near.loc[stop_cases, "distance_m"] < 25).all()
    assert (near.loc[tx["case"].isin(["away", "parked"]), "distance_m"] > 1000).all()
    assert (near.loc[tx["case"] == "drive_by", "distance_m"] < 40).all()
    assert near.loc[tx["case"] == "outage", "n_fixes"].eq(0).all()


def test_the_demo_city_is_in_hefei(tmp_path, settings):
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    roads = inputs.roads.to_crs(4326)
    minx, miny, maxx, maxy = roads.total_bounds
    assert 117.1 < minx < maxx < 117.4 and 31.7 < miny < maxy < 32.0
    assert inputs.roads.crs.to_epsg() == 4548 and len(roads) == 21
    vehicles = pd.read_csv(inputs.paths["vehicles"], dtype=str)
    assert len(vehicles) == 40 and vehicles["unit"].nunique() == 4
    assert set(vehicles["fuel_type"]) == {"petrol", "diesel"}
    assert vehicles["plate"].str.startswith("皖A").all()


def test_demo_inputs_feed_the_cli_generator(tmp_path: Path, settings):
    """The files are what the CLI reads: same columns, same counts after reading."""
    inputs = make_fuel_inputs(tmp_path, settings=settings)
    read = inputs.read()
    assert read["transactions"].rows_in == len(inputs.transactions)
    assert read["fixes"].rows_rejected == 1  # the (0, 0) fix; duplicates are the audit's
    assert read["stations"].rows_used == 10
