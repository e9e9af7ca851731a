"""The ten fuel rules on hand-built evidence tables: each fires at its threshold, not below."""

from __future__ import annotations

import json
import re

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geosup.alerts import make_alerts
from geosup.config import Settings
from geosup.rules import REGISTRY, resolve_thresholds, rules_table
from trajectories.calendar import WorkCalendar
from trajectories.rules import (
    FUEL_RULES,
    FuelContext,
    fuel_class,
    prepare_evidence,
    previous_in_group,
)

T0 = pd.Timestamp("2024-10-08 02:00", tz="UTC")  # 10:00 in Shanghai, a Tuesday
ACCUSING = re.compile(r"fraud|cheat|steal|theft|misuse|abuse|illegal|suspect|guilty|corrupt",
                      re.IGNORECASE)


def ev(**columns) -> pd.DataFrame:
    """An evidence table: one row per value; scalars are broadcast."""
    n = max((len(v) for v in columns.values() if isinstance(v, list)), default=1)
    base = {"tx_id": [f"T{i + 1}" for i in range(n)], "card_id": "C1", "vehicle_id": "V1",
            "unit": "Roads", "time": [T0 + pd.Timedelta(hours=i * 24) for i in range(n)],
            "station_id": "S1", "station_name": "East", "station_lon": 116.4,
            "station_lat": 39.9, "litres": 40.0, "amount": 300.0, "product": "92#",
            "fuel_type": "petrol"}
    base.update(columns)
    frame = pd.DataFrame({k: (v if isinstance(v, list) else [v] * n) for k, v in base.items()})
    return prepare_evidence(frame, tz="Asia/Shanghai")


def run(code: str, evidence: pd.DataFrame, context: FuelContext | None = None,
        **overrides) -> gpd.GeoDataFrame:
    item = REGISTRY.get(code)
    hits = item(evidence, context=context or FuelContext(), **resolve_thresholds(
        item, Settings.load(file=None, env={}), overrides))
    if len(hits):
        alerts = make_alerts(hits)  # every hit table must be a valid alert table
        assert len(alerts) == len(hits)
        assert not alerts["title"].str.contains(ACCUSING).any()
        assert not alerts["detail"].str.contains(ACCUSING).any()
    return hits


def evidence_of(hits: gpd.GeoDataFrame, i: int = 0) -> dict:
    return json.loads(make_alerts(hits)["evidence"].iloc[i])


def gps(**columns) -> dict:
    """Columns of a transaction measured against a covering track."""
    base = {"gps": True, "covered": True, "n_fixes": 40, "nearest_at": T0,
            "nearest_fix_id": 17, "in_range": True}
    base.update(columns)
    return base


def test_every_fuel_rule_is_registered_with_metadata():
    codes = sorted(r.code for r in REGISTRY.select(domain="fuel"))
    assert codes == sorted(FUEL_RULES) and len(codes) == 10
    for item in REGISTRY.select(domain="fuel"):
        assert item.title and item.title_zh and item.inputs and item.description
        assert not ACCUSING.search(item.title)
        for t in item.thresholds:
            assert t.description, (item.code, t.name)
    table = rules_table(settings=Settings.load(file=None, env={}))
    row = table[(table["rule"] == "fuel.away_from_station") & (table["threshold"] == "radius_m")]
    assert row["default"].iloc[0] == 300.0 and row["unit"].iloc[0] == "m"
    defaults = {r.code: r.defaults() for r in REGISTRY.select(domain="fuel")}
    assert defaults["fuel.away_from_station"] == {"radius_m": 300.0, "window_min": 10.0}
    assert defaults["fuel.no_stop_at_station"]["min_dwell_min"] == 2.0
    assert defaults["fuel.over_tank_capacity"] == {"tolerance": 0.05}
    assert defaults["fuel.consumption_mismatch"]["factor"] == 1.5
    assert defaults["fuel.rapid_refill"] == {"interval_h": 4.0}
    assert defaults["fuel.odometer_anomaly"] == {"rel_tolerance": 0.25, "abs_tolerance_km": 20.0,
                                                 "max_delta_km": 1000.0,
                                                 "require_odometer": False}


def test_away_from_station_fires_just_beyond_the_radius():
    e = ev(**gps(nearest_m=[300.0, 300.5, 5000.0, 5000.0, 5000.0],
                 stop_id=["", "", "", "V1@x", ""], stop_m=[np.nan, np.nan, np.nan, 120.0, np.nan],
                 covered=[True, True, True, True, False]))
    hits = run("fuel.away_from_station", e)
    assert hits["subject_id"].tolist() == ["T2", "T3"]  # T4 stopped nearby, T5 not covered
    first = evidence_of(hits)
    assert first["nearest_m"] == 300.5 and first["thresholds"] == {"radius_m": 300.0,
                                                                   "window_min": 10.0}
    assert first["nearest_fix_id"] == 17 and first["tx_id"] == "T2"
    assert "300.5" not in hits["detail"].iloc[0] and "300 m" in hits["detail"].iloc[0]
    assert hits.crs.to_epsg() == 4326 and hits.geometry.iloc[0].x == pytest.approx(116.4)
    assert hits.attrs["checks"] == {"checked": 4, "not_checkable": 1}
    # the radius is a threshold
    assert len(run("fuel.away_from_station", e, radius_m=200.0)) == 3
    assert len(run("fuel.away_from_station", ev(nearest_m=9000.0))) == 0  # no GPS evidence


def test_no_stop_at_station_fires_below_the_dwell():
    e = ev(**gps(nearest_m=[20.0, 20.0, 20.0, 300.0, 301.0],
                 stop_id=["V1@a", "V1@b", "", "", ""],
                 stop_duration_s=[120.0, 119.0, np.nan, np.nan, np.nan],
                 stop_m=[30.0, 30.0, np.nan, np.nan, np.nan]))
    hits = run("fuel.no_stop_at_station", e)
    assert hits["subject_id"].tolist() == ["T2", "T3", "T4"]
    assert evidence_of(hits)["stop_duration_s"] == 119.0
    assert evidence_of(hits)["thresholds"]["min_dwell_min"] == 2.0
    assert "no stop nearby" in hits["detail"].iloc[1]


def test_no_stop_at_station_evidence_has_the_nearest_point_like_away_from_station():
    e = ev(**gps(nearest_m=[20.0, 500.0], nearest_lon=[116.4001, 116.405],
                 nearest_lat=[39.9001, 39.902], stop_id="", stop_m=np.nan))
    near = evidence_of(run("fuel.no_stop_at_station", e))
    away = evidence_of(run("fuel.away_from_station", e))
    assert (near["tx_id"], away["tx_id"]) == ("T1", "T2")
    assert (near["nearest_lon"], near["nearest_lat"]) == (116.4001, 39.9001)
    assert (away["nearest_lon"], away["nearest_lat"]) == (116.405, 39.902)
    # the same keys in both rules, so that the map draws both nearest approaches alike
    shared = {"nearest_m", "nearest_at", "nearest_lon", "nearest_lat", "nearest_fix_id",
              "station_id", "station_lon", "station_lat", "stop_id", "stop_m"}
    assert shared <= set(near) and shared <= set(away)
    assert near["nearest_fix_id"] == 17


def test_evidence_naming_a_station_locates_it():
    # every rule, on a table where each fires; a transaction without a known station
    # (T2: no coordinates) keeps its station id and gives no point
    n = 6
    t = [T0 + pd.Timedelta(minutes=30 * i) for i in range(n)]
    e = ev(**gps(nearest_m=[20.0, 20.0, 900.0, 900.0, 20.0, 20.0], stop_id="", stop_m=np.nan,
                 covered=[True, True, True, True, False, False],
                 nearest_lon=116.41, nearest_lat=39.91,
                 cum_m=[0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0], cum_gap_m=0.0),
           time=t, station_id=["S1", "S9", "S1", "S2", "S1", "S2"],
           station_lon=[116.4, np.nan, 116.4, 116.5, 116.4, 116.5],
           station_lat=[39.9, np.nan, 39.9, 39.95, 39.9, 39.95],
           litres=70.0, tank_l=50.0, rated_l_per_100km=10.0, product=["0#"] * n,
           odometer_km=[1000.0, 900.0, 900.0, 5000.0, 4000.0, 4000.0], status="scrapped")
    ctx = FuelContext(tz="Asia/Shanghai", calendar=WorkCalendar())
    seen = set()
    for code in FUEL_RULES:
        hours = {"work_start": "22:00", "work_end": "23:00"} if code == "fuel.off_hours" else {}
        hits = run(code, e, ctx, **hours)
        assert len(hits), code
        alerts = make_alerts(hits)
        for i in range(len(hits)):
            evid = json.loads(alerts["evidence"].iloc[i])
            if "station_id" in evid:
                sid = evid["station_id"]
                assert sid in {"S1", "S2", "S9"}, code
                lon, lat = evid["station_lon"], evid["station_lat"]
                if sid == "S9":
                    assert lon is None and lat is None
                else:
                    assert (lon, lat) == {"S1": (116.4, 39.9), "S2": (116.5, 39.95)}[sid]
                    # the point the alert is drawn at
                    point = hits.geometry.iloc[i]
                    assert (point.x, point.y) == (lon, lat), code
                seen.add(code)
            else:
                assert set(evid["station_ids"]) <= {"S1", "S2", "S9"}, code
                seen.add(code)
    assert seen == set(FUEL_RULES)


def test_no_gps_coverage_when_uncovered_only_with_gps_input():
    e = ev(**gps(covered=[True, False, False, False], n_fixes=[40, 0, 3, 10],
                 in_gap=[False, False, False, True],
                 gap_start=[pd.NaT, pd.NaT, pd.NaT, T0 - pd.Timedelta("1h")],
                 gap_end=[pd.NaT, pd.NaT, pd.NaT, T0 + pd.Timedelta("2h")]))
    hits = run("fuel.no_gps_coverage", e)
    assert hits["subject_id"].tolist() == ["T2", "T3", "T4"]
    assert hits["score"].tolist() == [1.0, 0.5, 0.5]
    assert "gap" in hits["detail"].iloc[2] and evidence_of(hits, 2)["in_gap"] is True
    assert evidence_of(hits)["n_fixes"] == 0
    assert len(run("fuel.no_gps_coverage", ev(covered=False))) == 0  # gps False


def test_over_tank_capacity_at_the_tolerance_and_unknown_capacity():
    e = ev(litres=[52.5, 52.51, 80.0, 80.0], tank_l=[50.0, 50.0, 0.0, np.nan],
           amount=[400.0, 420.08, 600.0, 600.0])
    hits = run("fuel.over_tank_capacity", e)
    assert hits["subject_id"].tolist() == ["T2"]
    assert hits.attrs["checks"] == {"checked": 2, "not_checkable": 2}
    evid = evidence_of(hits)
    assert evid["litres"] == 52.51 and evid["tank_l"] == 50.0
    assert evid["thresholds"] == {"tolerance": 0.05}
    # the part above the limit is at risk
    assert hits["amount_at_risk"].iloc[0] == pytest.approx(420.08 * 0.01 / 52.51)
    assert len(run("fuel.over_tank_capacity", e, tolerance=0.0)) == 2


def test_consumption_mismatch_per_fill_and_per_window():
    # 100 km between fills at 10 l/100 km: 10 l expected, 15 l allowed with factor 1.5
    e = ev(**gps(cum_m=[0.0, 100_000.0, 200_000.0, 300_000.0],
                 cum_gap_m=[0.0, 0.0, 0.0, 0.0]),
           litres=[30.0, 15.0, 20.0, 60.0], rated_l_per_100km=10.0, amount=100.0)
    hits = run("fuel.consumption_mismatch", e)
    per_fill = hits[hits["subject_type"] == "transaction"]
    assert per_fill["subject_id"].tolist() == ["T3", "T4"]  # T2 = 15 l is at the limit
    evid = evidence_of(per_fill.reset_index(drop=True))
    assert evid["gps_km"] == 100.0 and evid["allowed_l"] == 15.0 and evid["litres"] == 20.0
    assert evid["previous_tx_id"] == "T2"
    assert hits.attrs["checks"] == {"checked": 3, "not_checkable": 1}  # T1 has no previous
    veh = hits[hits["subject_type"] == "vehicle"]
    assert veh["subject_id"].tolist() == ["V1"] and veh["period"].tolist() == ["2024-10"]
    vev = json.loads(make_alerts(veh.reset_index(drop=True))["evidence"].iloc[0])
    assert vev["litres"] == 95.0 and vev["allowed_l"] == 45.0  # T2..T4 in the 30-day window
    assert vev["tx_ids"] == ["T2", "T3", "T4"] and vev["card_ids"] == ["C1"]
    # a min excess of 6 l keeps T3 (5 l above) quiet
    assert "T3" not in run("fuel.consumption_mismatch", e, min_excess_l=6.0)[
        "subject_id"].tolist()
    # an interval across a 3 km gap cannot be measured
    e2 = ev(**gps(cum_m=[0.0, 100_000.0], cum_gap_m=[0.0, 3000.0]), litres=[30.0, 60.0],
            rated_l_per_100km=10.0)
    assert len(run("fuel.consumption_mismatch", e2)) == 0


def test_off_hours_with_the_calendar():
    local = ["2024-10-08 07:59:59", "2024-10-08 08:00:00", "2024-10-08 17:59:59",
             "2024-10-08 18:00:00", "2024-10-01 10:00", "2024-09-29 10:00", "2024-10-12 10:00",
             "2024-10-13 10:00"]
    times = pd.DatetimeIndex(local).tz_localize("Asia/Shanghai").tz_convert("UTC")
    e = ev(time=list(times))
    ctx = FuelContext(tz="Asia/Shanghai", calendar=WorkCalendar())
    hits = run("fuel.off_hours", e, ctx)
    assert hits["subject_id"].tolist() == ["T1", "T4", "T5", "T8"]
    reasons = [evidence_of(hits, i)["reason"] for i in range(len(hits))]
    assert reasons == ["before 08:00", "after 18:00", "holiday National Day", "weekend"]
    assert hits["title"].tolist()[2:] == ["Fill on a public holiday", "Fill on a weekend"]
    assert evidence_of(hits)["thresholds"] == {"work_start": "08:00", "work_end": "18:00"}
    assert len(run("fuel.off_hours", e, ctx, work_start="07:00")) == 3


def test_rapid_refill_on_card_or_vehicle():
    t = [T0, T0 + pd.Timedelta("4h") - pd.Timedelta("1s"), T0 + pd.Timedelta("8h"),
         T0 + pd.Timedelta("12h") - pd.Timedelta("1s"), T0 + pd.Timedelta("12h")]
    e = ev(time=t, card_id=["C1", "C1", "C2", "C3", "C3"],
           product=["92#", "92#", "92#", "Car Wash", "92#"])
    hits = run("fuel.rapid_refill", e)
    # T2 3:59:59 after T1 (card); T3 exactly 4 h after T2 (vehicle): no; T5 after T3 (4 h,
    # vehicle) no; T4 is a car wash, not a fill
    assert hits["subject_id"].tolist() == ["T2"]
    evid = evidence_of(hits)
    assert evid["previous_tx_id"] == "T1" and evid["same"] == "card"
    assert evid["interval_min"] == pytest.approx(239.98, abs=0.01)
    e2 = ev(time=[T0, T0 + pd.Timedelta("1h")], card_id=["C1", "C2"])
    hits2 = run("fuel.rapid_refill", e2)
    assert hits2["subject_id"].tolist() == ["T2"] and evidence_of(hits2)["same"] == "vehicle"
    assert len(run("fuel.rapid_refill", e2, interval_h=0.5)) == 0


def test_product_mismatch_classes_and_non_fuel():
    e = ev(product=["92#", "0#", "Diesel", "Car Wash", "Unleaded", "AdBlue", "mystery"],
           fuel_type=["petrol", "petrol", "Diesel", "petrol", "", "diesel", "petrol"])
    hits = run("fuel.product_mismatch", e)
    assert hits["subject_id"].tolist() == ["T2", "T4"]
    assert hits["title"].tolist() == ["Product differs from the vehicle's fuel type",
                                      "Non-fuel purchase on a fuel card"]
    assert evidence_of(hits)["product_class"] == "diesel"
    assert evidence_of(hits)["fuel_type_class"] == "petrol"
    assert run("fuel.product_mismatch", e, non_fuel=False)["subject_id"].tolist() == ["T2"]


def test_fuel_class_table():
    assert fuel_class(["Unleaded", "Premium", "Mid-Grade", "E-85", "92#", "95号", "98#",
                       "汽油", "Diesel", "0#", "-10#", "柴油", "0号柴油", "Non-Fuel",
                       "Service", "car wash", "LPG", ""]).tolist() == [
        "petrol", "petrol", "petrol", "petrol", "petrol", "petrol", "petrol", "petrol",
        "diesel", "diesel", "diesel", "diesel", "diesel", "non-fuel", "non-fuel", "non-fuel",
        "lpg", ""]


def test_inactive_vehicle_per_vehicle_and_month():
    t = [T0, T0 + pd.Timedelta("1D"), pd.Timestamp("2024-11-05 02:00", tz="UTC"),
         pd.Timestamp("2024-10-08 02:00", tz="UTC"), pd.Timestamp("2024-10-09 02:00", tz="UTC"),
         pd.Timestamp("2024-10-10 02:00", tz="UTC")]
    e = ev(time=t, vehicle_id=["V1", "V1", "V1", "V2", "V3", "V4"],
           status=["Decommissioned", "Decommissioned", "Decommissioned", "active", "active",
                   "active"],
           active_to=[pd.NaT, pd.NaT, pd.NaT, pd.Timestamp("2024-10-01", tz="UTC"), pd.NaT,
                      pd.NaT], gps=True, amount=[100.0, 50.0, 20.0, 10.0, 10.0, 10.0])
    months = pd.DataFrame({"vehicle_id": ["V3", "V4"], "period": ["2024-10", "2024-10"],
                           "gps_km": [0.99, 1.0], "n_fixes": [500, 500]})
    hits = run("fuel.inactive_vehicle", e, FuelContext(vehicle_months=months))
    assert list(zip(hits["subject_id"], hits["period"], strict=True)) == [
        ("V1", "2024-10"), ("V1", "2024-11"), ("V2", "2024-10"), ("V3", "2024-10")]
    assert hits["subject_type"].unique().tolist() == ["vehicle"]
    evid = evidence_of(hits)
    assert evid["tx_ids"] == ["T1", "T2"] and evid["reasons"] == ["status 'Decommissioned'"]
    assert evid["card_ids"] == ["C1"]
    assert hits["amount_at_risk"].iloc[0] == 150.0
    assert evidence_of(hits, 2)["reasons"] == ["after the end of service"]
    assert evidence_of(hits, 3)["gps_km"] == 0.99
    assert evidence_of(hits, 3)["thresholds"]["min_distance_km"] == 1.0


def test_odometer_anomaly_kinds_and_tolerances():
    e = ev(**gps(cum_m=[0.0, 100_000.0, 200_000.0, 300_000.0, 400_000.0, 500_000.0, 600_000.0]),
           odometer_km=[1000.0, 1125.0, 1250.1, 1240.0, 1240.0, 0.0, 2240.1])
    hits = run("fuel.odometer_anomaly", e)
    kinds = {h: evidence_of(hits, i)["kind"] for i, h in enumerate(hits["subject_id"])}
    # T2: +125 vs 100 GPS km: diff 25, not above 0.25 x 100; T3: +125.1: both exceeded
    # T4 backwards, T5 unchanged, T6 not reported (0), T7 +1000.1 after T5
    assert kinds == {"T3": "gps", "T4": "backwards", "T5": "unchanged", "T7": "jump"}
    assert evidence_of(hits)["delta_km"] == pytest.approx(125.1)
    assert evidence_of(hits)["gps_km"] == 100.0
    assert evidence_of(hits)["thresholds"]["abs_tolerance_km"] == 20.0
    # without GPS only the reading itself is judged
    e2 = ev(odometer_km=[1000.0, 1500.0, 1400.0, 2400.0])
    assert run("fuel.odometer_anomaly", e2)["subject_id"].tolist() == ["T3"]
    assert run("fuel.odometer_anomaly", e2, max_delta_km=999.0)["subject_id"].tolist() == [
        "T3", "T4"]
    # a fill without a reading is reported only when readings are required
    e3 = ev(odometer_km=[1000.0, 0.0, np.nan, 1100.0])
    assert len(run("fuel.odometer_anomaly", e3)) == 0
    hits = run("fuel.odometer_anomaly", e3, require_odometer=True)
    assert hits["subject_id"].tolist() == ["T2", "T3"]
    assert hits["title"].unique().tolist() == ["Fill without an odometer reading"]
    assert evidence_of(hits)["previous_tx_id"] is None


def test_previous_in_group_skips_same_instant_and_invalid_rows():
    keys = [np.array(["a", "a", "a", "a", "b"])]
    t = np.array([1, 2, 2, 3, 2])
    assert previous_in_group(keys, t).tolist() == [-1, 0, 0, 2, -1]
    valid = np.array([True, True, False, True, True])
    assert previous_in_group(keys, t, valid).tolist() == [-1, 0, 0, 1, -1]
    assert previous_in_group(keys, t, strict=False).tolist() == [-1, 0, 1, 2, -1]


def test_rules_are_vectorised_on_a_big_table():
    n = 50_000
    rng = np.random.default_rng(1)
    e = ev(**gps(nearest_m=list(rng.uniform(0, 2000, n)), cum_m=list(np.arange(n) * 1e4)),
           litres=list(rng.uniform(10, 80, n)), tank_l=60.0, rated_l_per_100km=10.0,
           vehicle_id=list(rng.choice(["V1", "V2", "V3"], n)),
           time=list(T0 + pd.to_timedelta(np.arange(n) * 600, unit="s")),
           odometer_km=list(np.arange(n) * 10.0 + 1))
    for code in FUEL_RULES:
        hits = run(code, e, FuelContext(vehicle_months=pd.DataFrame(
            {"vehicle_id": ["V1"], "period": ["2024-10"], "gps_km": [0.1], "n_fixes": [9]})))
        assert hits.attrs["checks"]["checked"] + hits.attrs["checks"]["not_checkable"] > 0
