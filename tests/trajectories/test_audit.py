"""The fuel audit end to end: joins and rejects, motion evidence, streaming, real data."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import pytest
import shapely

from geosup.crs import wgs84_to_gcj02
from geosup.io import read_table
from trajectories.audit import (
    AuditResult,
    StationOffsetWarning,
    audit,
    read_fixes_partitions,
)
from trajectories.calendar import WorkCalendar
from trajectories.rules import FUEL_RULES, TRACK_RULES, fuel_class

TRAJ = "trajectories"
BEIJING = pyproj.CRS.from_epsg(4548)  # CGCS2000 / 3-degree GK CM 117E
TO_BJ = pyproj.Transformer.from_crs(4326, BEIJING, always_xy=True)
FROM_BJ = pyproj.Transformer.from_crs(BEIJING, 4326, always_xy=True)
CENTRE = TO_BJ.transform(116.40, 39.90)


def invariant(result: AuditResult) -> None:
    for name, c in result.counts.items():
        assert c["rows_in"] == c["rows_used"] + c["rows_rejected"], name
    per_input = result.rejects.groupby("source").size().to_dict() if len(result.rejects) else {}
    assert sum(per_input.values()) == sum(c["rows_rejected"] for c in result.counts.values())


def evidence(result: AuditResult, rule: str) -> list[dict]:
    a = result.alerts[result.alerts["rule"] == rule].sort_values("subject_id")
    return [json.loads(e) for e in a["evidence"]]


# ---------------------------------------------------------------------------------------------
# A small synthetic fleet around Beijing (metric coordinates in EPSG:4548)
# ---------------------------------------------------------------------------------------------


def lonlat(x, y):
    lon, lat = FROM_BJ.transform(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(lon), np.asarray(lat)


def fleet(n_vehicles: int = 5, start: str = "2024-09-29", hours: int = 72, step_s: int = 60,
          period_min: float = 60.0, radius_m: float = 5000.0, dwell_min: float = 6.0,
          stop_every: int = 8):
    """Vehicles circling their own loop; each loop has a station at angle 0 where the vehicle
    dwells every ``stop_every`` laps. Returns fixes, stations, vehicles, cards, fills (the
    legitimate fill times, in the middle of the dwells)."""
    t0 = pd.Timestamp(start, tz="UTC").value
    steps = np.arange(0, hours * 3600, step_s, dtype=np.int64)
    fixes, stations, fills = [], [], []
    lap = period_min * 60.0
    dwell = dwell_min * 60.0
    for v in range(n_vehicles):
        cx = CENTRE[0] + (v % 3) * 12_000.0
        cy = CENTRE[1] + (v // 3) * 12_000.0
        offset = v * 300.0  # seconds: vehicles out of phase
        t = steps.astype(float) + offset
        n_stops_max = int(t.max() // (lap * stop_every)) + 2
        k = np.arange(n_stops_max)
        stop_start = k * stop_every * lap + k * dwell  # in the vehicle's own time
        # moving time = t minus the dwell time already spent
        spent = np.clip(t[:, None] - stop_start[None, :], 0, dwell).sum(axis=1)
        tau = t - spent
        angle = 2 * np.pi * tau / lap
        x = cx + radius_m * np.cos(angle) - radius_m
        y = cy + radius_m * np.sin(angle)
        lon, lat = lonlat(x, y)
        fixes.append(pd.DataFrame({"vehicle_id": f"V{v}", "time": pd.to_datetime(
            t0 + steps * 1_000_000_000, utc=True), "lon": lon, "lat": lat}))
        slon, slat = lonlat([cx], [cy])
        stations.append({"station_id": f"S{v}", "name": f"Loop {v}", "lon": float(slon[0]),
                         "lat": float(slat[0])})
        mid = stop_start + dwell / 2 - offset
        mid = mid[(mid > 0) & (mid < hours * 3600)]
        fills += [{"vehicle_id": f"V{v}", "station_id": f"S{v}",
                   "time": pd.Timestamp(t0 + int(m * 1e9), tz="UTC")} for m in mid]
    far_lon, far_lat = lonlat([CENTRE[0] + 40_000.0], [CENTRE[1] - 40_000.0])
    stations.append({"station_id": "FAR", "name": "Far away", "lon": float(far_lon[0]),
                     "lat": float(far_lat[0])})
    vehicles = pd.DataFrame({"vehicle_id": [f"V{v}" for v in range(n_vehicles)],
                             "unit": ["Roads", "Roads", "Parks", "Parks", "Water"][:n_vehicles]
                             + ["Water"] * max(0, n_vehicles - 5),
                             "fuel_type": "petrol", "tank_l": 60.0, "rated_l_per_100km": 10.0,
                             "status": "active"})
    cards = pd.DataFrame({"card_id": [f"C{v}" for v in range(n_vehicles)],
                          "vehicle_id": vehicles["vehicle_id"], "unit": vehicles["unit"]})
    fx = pd.concat(fixes, ignore_index=True)
    fx["_row"] = np.arange(1, len(fx) + 1)
    return fx, pd.DataFrame(stations), vehicles, cards, pd.DataFrame(fills)


def fleet_transactions(fills: pd.DataFrame) -> pd.DataFrame:
    """Legitimate fills plus injected cases."""
    tx = fills.copy()
    tx["card_id"] = "C" + tx["vehicle_id"].str[1:]
    tx["litres"] = 30.0
    tx["amount"] = 240.0
    tx["product"] = "92#"
    extra = pd.DataFrame([
        # away: the card's vehicle is on its loop, the station 40 km away
        {"vehicle_id": "V1", "card_id": "C1", "station_id": "FAR",
         "time": pd.Timestamp("2024-09-30 06:07:00", tz="UTC"), "litres": 20.0},
        # across the month boundary (UTC): the window spans the September and October
        # partitions
        {"vehicle_id": "V2", "card_id": "C2", "station_id": "FAR",
         "time": pd.Timestamp("2024-09-30 23:55:00", tz="UTC"), "litres": 20.0},
    ])
    # a legitimate fill of V3 near the month boundary, above the tank capacity
    v3 = tx.index[tx["vehicle_id"] == "V3"]
    near = (tx.loc[v3, "time"] - pd.Timestamp("2024-10-01", tz="UTC")).abs().idxmin()
    tx.loc[near, "litres"] = 95.0
    extra["amount"] = extra["litres"] * 8.0
    extra["product"] = "92#"
    tx = pd.concat([tx, extra], ignore_index=True).sort_values("time", kind="stable")
    tx["tx_id"] = [f"T{i:03d}" for i in range(len(tx))]
    tx["odometer_km"] = np.nan
    tx["_row"] = np.arange(1, len(tx) + 1)
    return tx.drop(columns=["vehicle_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def small_fleet():
    fx, st, veh, cards, fills = fleet()
    tx = fleet_transactions(fills)
    return fx, tx, st, veh, cards


def partitions(fx: pd.DataFrame, *, order: str = "vehicle") -> list[pd.DataFrame]:
    month = fx["time"].dt.strftime("%Y-%m")
    keys = ["vehicle_id", "month"] if order == "vehicle" else ["month", "vehicle_id"]
    return [g.drop(columns=["month"]) for _, g in fx.assign(month=month).groupby(keys, sort=True)]


# ---------------------------------------------------------------------------------------------
# Synthetic end to end
# ---------------------------------------------------------------------------------------------


def test_fleet_audit_legitimate_fills_are_quiet_and_injected_cases_fire(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    result = audit(fx, tx, st, veh, cards, tz="Asia/Shanghai",
                   rules=["fuel.away_from_station", "fuel.no_stop_at_station",
                          "fuel.no_gps_coverage", "fuel.over_tank_capacity"])
    invariant(result)
    by_rule = result.alerts.groupby("rule")["subject_id"].apply(sorted).to_dict()
    injected = tx.loc[tx["station_id"] == "FAR", "tx_id"].tolist()
    assert by_rule["fuel.away_from_station"] == sorted(injected)
    assert "fuel.no_stop_at_station" not in by_rule  # every legitimate fill is during a dwell
    assert "fuel.no_gps_coverage" not in by_rule
    assert by_rule["fuel.over_tank_capacity"] == tx.loc[tx["litres"] > 63, "tx_id"].tolist()
    ev = evidence(result, "fuel.away_from_station")
    assert all(e["nearest_m"] > 30_000 and e["thresholds"]["radius_m"] == 300.0 for e in ev)
    legit = result.evidence[result.evidence["station_id"] != "FAR"]
    assert (legit["nearest_m"] < 5).all() and (legit["stop_duration_s"] >= 300).all()
    assert legit["stop_id"].str.match(r"V\d@2024-").all()
    assert result.stops["tx_id"].isin(tx["tx_id"]).all()
    # the geometry shows the station and the track around the time
    away = result.alerts[result.alerts["rule"] == "fuel.away_from_station"]
    assert (away.geometry.geom_type == "GeometryCollection").all()
    parts = shapely.get_parts(away.geometry.to_numpy()[0])
    assert [p.geom_type for p in parts] == ["Point", "LineString"]
    assert 15 <= shapely.get_num_coordinates(parts[1]) <= 22  # fixes in +-10 min at 60 s
    # summaries
    cards_s = result.cards.set_index("card_id")
    assert cards_s.loc["C1", "flagged"] == 1 and cards_s.loc["C0", "flagged"] == 0
    assert cards_s.loc["C1", "amount_at_risk"] == pytest.approx(160.0)
    units = result.units.set_index("unit")
    assert units.loc["Roads", "cards_checked"] == 2 and units.loc["Roads", "cards_with_alerts"] == 1
    assert units["transactions"].sum() == len(tx)
    assert units.loc["Roads", "share_flagged"] == pytest.approx(
        1 / (tx["card_id"].isin(["C0", "C1"])).sum())


def test_streaming_equals_all_at_once(small_fleet, tmp_path):
    fx, tx, st, veh, cards = small_fleet
    # a vehicle missing from the vehicle table, and a gap around one transaction
    ghost = fx[fx["vehicle_id"] == "V4"].assign(vehicle_id="GHOST")
    ghost["_row"] = np.arange(len(fx) + 1, len(fx) + len(ghost) + 1)
    gap = (fx["vehicle_id"] == "V0") & fx["time"].between(
        pd.Timestamp("2024-09-30 10:00", tz="UTC"), pd.Timestamp("2024-09-30 12:00", tz="UTC"))
    fx2 = pd.concat([fx.loc[~gap], ghost], ignore_index=True)
    tx2 = pd.concat([tx, pd.DataFrame([{
        "card_id": "C0", "station_id": "S0", "time": pd.Timestamp("2024-09-30 11:00", tz="UTC"),
        "litres": 30.0, "amount": 240.0, "product": "92#", "tx_id": "GAP", "_row": 999}])],
        ignore_index=True)
    kw = {"tz": "Asia/Shanghai"}
    whole = audit(fx2, tx2, st, veh, cards, **kw)
    invariant(whole)
    assert whole.counts["fixes"]["rows_rejected"] == len(ghost)
    assert set(whole.rejects.loc[whole.rejects["source"] == "fixes", "reason"]) == {
        "vehicle 'GHOST' is not in the vehicle table"}
    assert "GAP" in set(whole.alerts.loc[whole.alerts["rule"] == "fuel.no_gps_coverage",
                                         "subject_id"])
    calls = []
    streamed = audit(partitions(fx2), tx2, st, veh, cards,
                     progress=lambda i, n: calls.append((i, n)), **kw)
    month_major = audit(iter(partitions(fx2, order="month")), tx2, st, veh, cards, **kw)
    # through GeoParquet partitioned by vehicle x month, read back in small batches
    root = tmp_path / "fixes"
    for part in partitions(fx2):
        v, m = part["vehicle_id"].iloc[0], part["time"].iloc[0].strftime("%Y-%m")
        d = root / f"vehicle_id={v}" / f"month={m}"
        d.mkdir(parents=True)
        gpd.GeoDataFrame(part.drop(columns=["vehicle_id"]), geometry=gpd.points_from_xy(
            part["lon"], part["lat"]), crs=4326).drop(columns=["lon", "lat"]).to_parquet(
            d / "part.parquet", geometry_encoding="geoarrow")
    batches = list(read_fixes_partitions(root, max_fixes=2000))
    assert len(batches) > 4 and sum(len(b) for b in batches) == len(fx2)
    parquet = audit(iter(batches), tx2, st, veh, cards, **kw)
    assert calls[-1] == (len(partitions(fx2)), len(partitions(fx2)))
    assert whole.track is not None and streamed.track is None
    for other in (streamed, month_major, parquet):
        invariant(other)
        assert other.counts["transactions"] == whole.counts["transactions"]
        assert other.counts["fixes"]["rows_in"] == whole.counts["fixes"]["rows_in"]
        a = whole.alerts.set_index("alert_id").sort_index()
        b = other.alerts.set_index("alert_id").sort_index()
        assert a.index.tolist() == b.index.tolist()
        assert a["detail"].tolist() == b["detail"].tolist()
        for ea, eb in zip(a["evidence"], b["evidence"], strict=True):
            ja, jb = json.loads(ea), json.loads(eb)
            assert ja.keys() == jb.keys()
            for key in ja:
                if isinstance(ja[key], float):
                    assert jb[key] == pytest.approx(ja[key], abs=1e-6), key
                else:
                    assert ja[key] == jb[key], key
        pd.testing.assert_frame_equal(whole.evidence, other.evidence, check_exact=False,
                                      atol=1e-6)
        sa = whole.stops.sort_values(["tx_id", "start"]).reset_index(drop=True)
        sb = other.stops.sort_values(["tx_id", "start"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(sa, sb, check_exact=False, atol=1e-6)
        pd.testing.assert_frame_equal(whole.cards, other.cards)
        pd.testing.assert_frame_equal(whole.units, other.units)


def test_partitions_out_of_time_order_are_rejected_not_merged(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    parts = partitions(fx)
    swapped = [parts[1], parts[0], *parts[2:]]  # V0 October before V0 September
    result = audit(swapped, tx, st, veh, cards, tz="Asia/Shanghai")
    invariant(result)
    reasons = result.rejects.loc[result.rejects["source"] == "fixes", "reason"]
    # the September partition arrives second: it is the one out of order
    assert len(reasons) == len(parts[0]) and reasons.str.contains("previous partition").all()


def test_bad_inputs_go_to_rejects_with_reasons(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    st2 = pd.concat([st, pd.DataFrame([{"station_id": "NOWHERE", "name": "No coordinates",
                                        "lon": np.nan, "lat": np.nan}])], ignore_index=True)
    cards2 = pd.concat([cards, pd.DataFrame([
        {"card_id": "C-LOST", "vehicle_id": "V-LOST", "unit": "Roads"},
        {"card_id": "C1", "vehicle_id": "V0", "unit": "Roads"}])], ignore_index=True)
    base = tx.iloc[0].to_dict()
    bad = pd.DataFrame([
        {**base, "tx_id": "B1", "card_id": "C-NONE"},
        {**base, "tx_id": "B2", "station_id": "S-NONE"},
        {**base, "tx_id": "B3", "station_id": "NOWHERE"},
        {**base, "tx_id": "B4", "card_id": "C-LOST"},
        {**base, "tx_id": "B1"},
        {**base, "tx_id": "B6", "time": pd.NaT},
    ])
    tx2 = pd.concat([tx, bad], ignore_index=True)
    tx2["_row"] = np.arange(1, len(tx2) + 1)
    result = audit(fx, tx2, st2, veh, cards2, tz="Asia/Shanghai")
    invariant(result)
    rej = result.rejects
    pairs = set(zip(rej.loc[rej["source"] == "transactions", "key"],
                    rej.loc[rej["source"] == "transactions", "reason"], strict=True))
    assert ("B1", "unknown card 'C-NONE'") in pairs
    assert any(k == "B1" and r.startswith("duplicate transaction id 'B1' (first on row")
               for k, r in pairs)
    reasons = dict(pairs)
    assert reasons["B2"] == "unknown station 'S-NONE'"
    assert reasons["B3"] == "station 'NOWHERE' has no coordinates"
    assert reasons["B4"] == "card 'C-LOST' is bound to a vehicle not in the vehicle table"
    assert reasons["B6"] == "missing or unparseable time"
    assert set(rej.loc[rej["source"] == "transactions", "key"]) >= {"B1", "B2", "B3", "B4"}
    assert result.counts["transactions"] == {"rows_in": len(tx2), "rows_used": len(tx),
                                             "rows_rejected": 6}
    assert result.counts["stations"]["rows_rejected"] == 1
    assert result.counts["cards"]["rows_rejected"] == 2  # unknown vehicle, duplicate card id
    assert set(rej.loc[rej["source"] == "cards", "reason"]) == {
        "card bound to vehicle 'V-LOST' which is not in the vehicle table",
        "duplicate card id 'C1' (first on row 2)"}


def test_a_period_without_fixes_flags_every_transaction_as_uncovered(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    empty = fx.iloc[0:0]
    for fixes in (empty, [], iter([empty, empty])):
        result = audit(fixes, tx, st, veh, cards, tz="Asia/Shanghai")
        invariant(result)
        cov = result.alerts[result.alerts["rule"] == "fuel.no_gps_coverage"]
        assert sorted(cov["subject_id"]) == sorted(tx["tx_id"])
        assert not (result.alerts["rule"] == "fuel.away_from_station").any()
        assert json.loads(cov["evidence"].iloc[0])["n_fixes"] == 0
    # fixes of another period: the same
    later = tx.assign(time=tx["time"] + pd.Timedelta(days=60))
    result = audit(fx, later, st, veh, cards, tz="Asia/Shanghai",
                   rules=["fuel.no_gps_coverage", "fuel.away_from_station"])
    assert (result.alerts["rule"] == "fuel.no_gps_coverage").sum() == len(tx)


def test_without_gps_the_track_rules_do_not_run(small_fleet):
    _, tx, st, veh, cards = small_fleet
    result = audit(None, tx, st, veh, cards, tz="Asia/Shanghai")
    checks = result.checks.set_index("rule")
    for code in TRACK_RULES:
        assert not checks.loc[code, "ran"] and checks.loc[code, "not_checkable"] == len(tx)
    assert set(result.alerts["rule"]).isdisjoint(TRACK_RULES)
    assert result.warnings and "no GPS" in result.warnings[0]


def test_period_restricts_the_transactions(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    result = audit(fx, tx, st, veh, cards, tz="UTC",
                   period=("2024-09-30 00:00", "2024-10-01 00:00"), rules=["fuel.off_hours"])
    invariant(result)
    inside = tx["time"].between(pd.Timestamp("2024-09-30", tz="UTC"),
                                pd.Timestamp("2024-10-01", tz="UTC"), inclusive="left")
    assert result.counts["transactions"]["rows_used"] == int(inside.sum())
    assert result.rejects["reason"].str.startswith("outside the audit period").sum() == int(
        (~inside).sum())


# ---------------------------------------------------------------------------------------------
# Real data: the Urbana fuel-card export (no coordinates)
# ---------------------------------------------------------------------------------------------


URBANA = "urbana_fleet_fuel_card_transactions_2017.csv"
PETROL = {"Unleaded": "petrol", "Unleaded Premium": "petrol", "Unleaded Mid-Grade": "petrol",
          "E-85": "petrol", "Diesel": "diesel", "Non-Fuel": "non-fuel", "Service": "non-fuel"}


@pytest.fixture(scope="module")
def urbana(shared_data: Path):
    path = shared_data / TRAJ / URBANA
    read = read_table(
        path, columns={"card_id": "Card Number ID", "vehicle_id": "Vehicle ID",
                       "litres": "Units", "amount": "Net Cost", "product": "Product Class",
                       "odometer_km": "Current Odometer", "unit": "Department"},
        combine_columns={"time": ["Transaction Date", "Transaction Time"],
                         "tx_id": ["Transaction Id", "Transaction Item Sequence Number"]},
        time_columns=["time"], tz="America/Chicago",
        numeric_columns=["litres", "amount", "odometer_km"], id_column="tx_id",
        geometry="none")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    # vehicles and cards as the fleet office would export them (one per id in this file)
    vehicles = raw.groupby("Vehicle ID", sort=True).agg(
        unit=("Department", "first"), tank_l=("Tank Capacity", "first"),
        fuel_type=("Vehicle Fuel Type", "max")).reset_index().rename(
        columns={"Vehicle ID": "vehicle_id"})
    vehicles["tank_l"] = pd.to_numeric(vehicles["tank_l"])
    cards = raw.groupby("Card Number ID", sort=True).agg(
        vehicle_id=("Vehicle ID", "first"), unit=("Department", "first")).reset_index().rename(
        columns={"Card Number ID": "card_id"})
    return read, raw, vehicles, cards


@pytest.fixture(scope="module")
def urbana_result(urbana):
    read, _, vehicles, cards = urbana
    # the export's cards prompt for the odometer ("Odometer & Driver ID"): require it
    return audit(None, read, None, vehicles, cards, tz="America/Chicago",
                 calendar=WorkCalendar(country="US"),
                 thresholds={"fuel.odometer_anomaly": {"require_odometer": True}})


def urbana_used(urbana) -> pd.DataFrame:
    """The rows io kept, with the raw columns (plain pandas, independent of the audit)."""
    read, raw, _, _ = urbana
    used = raw.iloc[read.frame["_row"].to_numpy() - 1].reset_index(drop=True)
    used["tx_id"] = used["Transaction Id"] + " " + used["Transaction Item Sequence Number"]
    used["local"] = pd.to_datetime(used["Transaction Date"] + " " + used["Transaction Time"],
                                   format="%m/%d/%Y %H:%M:%S")
    return used


def test_urbana_runs_every_rule_that_needs_no_track(urbana, urbana_result):
    read, raw, _, _ = urbana
    result = urbana_result
    invariant(result)
    assert len(raw) == 6570 and read.rows_rejected == 3  # ambiguous / missing DST wall times
    assert result.counts["transactions"] == {"rows_in": 6570, "rows_used": 6567,
                                             "rows_rejected": 3}
    checks = result.checks.set_index("rule")
    assert not checks.loc[list(TRACK_RULES), "ran"].any()
    assert checks.loc["fuel.odometer_anomaly", "ran"]
    # no fill of a vehicle with a known tank exceeds it: over_tank_capacity ran, found none
    assert set(result.alerts["rule"]) == {"fuel.off_hours", "fuel.rapid_refill",
                                          "fuel.product_mismatch", "fuel.odometer_anomaly"}
    assert checks.loc["fuel.over_tank_capacity", "ran"]
    assert result.cards["transactions"].sum() == 6567
    assert len(result.cards) == 163 and result.units["cards_checked"].sum() == 163
    assert (result.alerts.geometry.isna()).all()  # no coordinates in the export


def test_urbana_over_tank_capacity(urbana, urbana_result):
    used = urbana_used(urbana)
    tank = pd.to_numeric(used["Tank Capacity"])
    units = pd.to_numeric(used["Units"])
    assert (tank > 0).sum() == 489 - 0  # tank capacity is mostly 0 = unknown
    expected = used.loc[(tank > 0) & (units > tank * 1.05), "tx_id"]
    got = urbana_result.alerts.loc[urbana_result.alerts["rule"] == "fuel.over_tank_capacity"]
    assert sorted(got["subject_id"]) == sorted(expected)
    checks = urbana_result.checks.set_index("rule").loc["fuel.over_tank_capacity"]
    assert checks["checked"] == (tank > 0).sum()
    assert checks["not_checkable"] == (tank == 0).sum()


def test_urbana_off_hours_on_a_us_calendar(urbana, urbana_result):
    used = urbana_used(urbana)
    hour = used["local"].dt.hour
    weekend = used["local"].dt.dayofweek >= 5
    off = weekend | (hour < 8) | (hour >= 18)
    try:
        import holidays

        us = {pd.Timestamp(d) for d in holidays.US(years=2017)}
        off |= used["local"].dt.normalize().isin(us)
    except ImportError:
        pass
    got = urbana_result.alerts.loc[urbana_result.alerts["rule"] == "fuel.off_hours"]
    assert sorted(got["subject_id"]) == sorted(used.loc[off, "tx_id"])
    assert weekend.mean() == pytest.approx(0.171, abs=0.001)
    # 2017-10-02 (China's National Day holiday, a Monday) is an ordinary working day here
    monday = used["local"].dt.date.astype(str).eq("2017-10-02") & ~off
    assert monday.any()
    assert not got["subject_id"].isin(used.loc[monday, "tx_id"]).any()


def test_urbana_rapid_refill(urbana, urbana_result):
    used = urbana_used(urbana)
    used["t"] = urbana[0].frame["time"].to_numpy()
    fuel = used[~used["Product Class"].isin(["Non-Fuel", "Service"])].copy()
    flagged = pd.Series(False, index=fuel.index)
    for key in ("Card Number ID", "Vehicle ID"):
        s = fuel.sort_values([key, "t"], kind="stable")
        gap = s.groupby(key)["t"].diff()
        flagged |= (gap < pd.Timedelta("4h")).reindex(fuel.index, fill_value=False)
    got = urbana_result.alerts.loc[urbana_result.alerts["rule"] == "fuel.rapid_refill"]
    assert sorted(got["subject_id"]) == sorted(fuel.loc[flagged, "tx_id"])
    assert len(got) > 20


def test_urbana_product_mismatch(urbana, urbana_result):
    used = urbana_used(urbana)
    vehicles = urbana[2].set_index("vehicle_id")
    vtype = used["Vehicle ID"].map(vehicles["fuel_type"]).map(
        {"Unleaded": "petrol", "Diesel": "diesel"})
    pcls = used["Product Class"].map(PETROL)
    non_fuel = pcls == "non-fuel"
    wrong = vtype.notna() & pcls.isin(["petrol", "diesel"]) & (pcls != vtype)
    got = urbana_result.alerts.loc[urbana_result.alerts["rule"] == "fuel.product_mismatch"]
    assert non_fuel.sum() == 4
    assert sorted(got["subject_id"]) == sorted(used.loc[non_fuel | wrong, "tx_id"])
    titles = got.set_index("subject_id")["title"]
    assert (titles[used.loc[non_fuel, "tx_id"]] == "Non-fuel purchase on a fuel card").all()
    assert (fuel_class(used["Product Class"]) == pcls.to_numpy()).all()


def test_urbana_odometer_anomalies(urbana, urbana_result):
    used = urbana_used(urbana)
    used["t"] = urbana[0].frame["time"].to_numpy()
    used["odo"] = pd.to_numeric(used["Current Odometer"])
    valid = used[used["odo"] > 0].sort_values(["Vehicle ID", "t"], kind="stable")
    # the last reading of each (vehicle, instant), then the one of the instant before
    block_last = valid.groupby(["Vehicle ID", "t"], sort=True)["odo"].last()
    prev_block = block_last.groupby(level=0).shift(1)
    prev = pd.Series(prev_block.reindex(pd.MultiIndex.from_frame(valid[["Vehicle ID", "t"]]))
                     .to_numpy(), index=valid.index)
    delta = valid["odo"] - prev
    kinds = pd.Series("", index=valid.index)
    kinds[delta > 1000] = "jump"
    kinds[delta == 0] = "unchanged"
    kinds[delta < 0] = "backwards"
    expected = dict(zip(valid.loc[kinds != "", "tx_id"], kinds[kinds != ""], strict=True))
    no_reading = used.loc[~(used["odo"] > 0), "tx_id"]
    expected.update(dict.fromkeys(no_reading, "missing"))
    assert len(no_reading) == 48  # Current Odometer 0 in 48 kept rows
    got = urbana_result.alerts.loc[urbana_result.alerts["rule"] == "fuel.odometer_anomaly"]
    got_kinds = {s: json.loads(e)["kind"] for s, e in zip(got["subject_id"], got["evidence"],
                                                          strict=True)}
    assert got_kinds == expected
    # the export's own "Distance Driven" is <= 0 in 189 rows and > 1000 in 124 (typos)
    dd = pd.to_numeric(urbana[1]["Distance Driven"])
    assert (dd <= 0).sum() == 189 and (dd > 1000).sum() == 124
    # its previous reading is not always the vehicle's previous fill: most rows agree
    flagged_dd = used.loc[pd.to_numeric(used["Distance Driven"]) <= 0, "tx_id"]
    assert flagged_dd.isin(got["subject_id"]).mean() > 0.95


# ---------------------------------------------------------------------------------------------
# Real data: Liverpool buses with the UK forecourts
# ---------------------------------------------------------------------------------------------


BUS = "liverpool_bus_route14_outbound_2026-01-26.csv"
FORECOURTS = "uk_fuel_finder_forecourts_2026-02-18_liverpool_bbox.csv"


@pytest.fixture(scope="module")
def liverpool(shared_data: Path):
    fixes = read_table(shared_data / TRAJ / BUS, columns={
        "vehicle_id": "vehicle_id", "time": "timestamp", "lon": "longitude", "lat": "latitude"},
        time_columns=["time"], tz="UTC", geometry="none")
    stations = read_table(shared_data / TRAJ / FORECOURTS, columns={
        "station_id": "forecourts.node_id", "name": "forecourts.trading_name",
        "lon": "forecourts.location.longitude", "lat": "forecourts.location.latitude"},
        id_column="station_id", geometry="none")
    vids = sorted(fixes.frame["vehicle_id"].astype(str).unique())
    vehicles = pd.DataFrame({"vehicle_id": vids, "unit": "AMSY", "fuel_type": "diesel"})
    cards = pd.DataFrame({"card_id": ["K" + v for v in vids], "vehicle_id": vids,
                          "unit": "AMSY"})
    return fixes, stations, vehicles, cards


def station_id(stations, name: str) -> str:
    frame = stations.frame
    return frame.loc[frame["name"] == name, "station_id"].iloc[0]


def test_liverpool_bus_near_rontec_islington(liverpool):
    fixes, stations, vehicles, cards = liverpool
    rontec = station_id(stations, "RONTEC ISLINGTON")
    st = stations.frame.set_index("station_id")
    utm = pyproj.Transformer.from_crs(4326, 32630, always_xy=True)
    rx, ry = utm.transform(st.loc[rontec, "lon"], st.loc[rontec, "lat"])
    sx, sy = utm.transform(st["lon"].to_numpy(), st["lat"].to_numpy())
    far_d = np.hypot(sx - rx, sy - ry)
    far = st.index[np.argmin(np.abs(far_d - 5000.0))]  # the forecourt closest to 5 km away
    when = pd.Timestamp("2026-01-26 16:50:08", tz="UTC")
    tx = pd.DataFrame({"tx_id": ["AT", "FAR"], "card_id": "K4722", "time": when,
                       "station_id": [rontec, far], "litres": 80.0, "amount": 120.0,
                       "product": "Diesel", "_row": [1, 2]})
    settings_kw = {"thresholds": {"fuel.away_from_station": {"radius_m": 400.0}}, "tz": "UTC"}
    result = audit(fixes, tx, stations, vehicles, cards, **settings_kw)
    invariant(result)
    away = result.alerts[result.alerts["rule"] == "fuel.away_from_station"]
    assert away["subject_id"].tolist() == ["FAR"]
    ev = result.evidence.set_index("tx_id")
    # the closest fix is 137 m away; between two fixes the path comes closer
    assert ev.loc["AT", "fix_distance_m"] == pytest.approx(137.2, abs=0.5)
    assert ev.loc["AT", "nearest_m"] < ev.loc["AT", "fix_distance_m"]
    assert ev.loc["AT", "covered"] and ev.loc["AT", "n_fixes"] > 20
    # the measured nearest approach, bracketed independently with shapely
    bus = fixes.frame[fixes.frame["vehicle_id"].astype(str) == "4722"].sort_values("time")
    bx, by = utm.transform(bus["lon"].to_numpy(), bus["lat"].to_numpy())
    inside = bus["time"].between(when - pd.Timedelta("10min"), when + pd.Timedelta("10min"))
    fx, fy = utm.transform(st.loc[far, "lon"], st.loc[far, "lat"])
    upper = float(np.hypot(bx[inside.to_numpy()] - fx, by[inside.to_numpy()] - fy).min())
    idx = np.flatnonzero(inside.to_numpy())
    wide = slice(max(idx[0] - 1, 0), idx[-1] + 2)
    lower = shapely.distance(shapely.linestrings(np.c_[bx[wide], by[wide]]),
                             shapely.Point(fx, fy))
    measured = json.loads(away["evidence"].iloc[0])
    assert lower - 0.05 <= measured["nearest_m"] <= upper + 0.05  # evidence rounds to 0.1 m
    assert 3000 < measured["nearest_m"] < 7000
    assert measured["thresholds"]["radius_m"] == 400.0 and measured["vehicle_id"] == "4722"
    assert f"{round(measured['nearest_m'])} m at" in away["detail"].iloc[0]
    # at 300 m (the default) the pass at 137 m is still "at the station" but not a stop
    nostop = result.alerts[result.alerts["rule"] == "fuel.no_stop_at_station"]
    assert nostop["subject_id"].tolist() == ["AT"]


WUHAN = pyproj.CRS.from_epsg(4547)  # CGCS2000 / 3-degree GK CM 114E
TO_WH = pyproj.Transformer.from_crs(4326, WUHAN, always_xy=True)
FROM_WH = pyproj.Transformer.from_crs(WUHAN, 4326, always_xy=True)


def relocate(lon, lat):
    """Move Liverpool coordinates to Wuhan, keeping every distance (a metric translation).

    In Wuhan the GCJ-02 shift (about 590 m) points across route 14's road near RONTEC
    ISLINGTON; where it points along the road (Beijing, Harbin) the buses pass the shifted
    station within 200 m too and there are no near-misses to judge.
    """
    utm = pyproj.Transformer.from_crs(4326, 32630, always_xy=True)
    x, y = utm.transform(np.asarray(lon, float), np.asarray(lat, float))
    ax, ay = utm.transform(-2.94, 53.43)
    cx, cy = TO_WH.transform(114.30, 30.59)
    out = FROM_WH.transform(np.asarray(x) - ax + cx, np.asarray(y) - ay + cy)
    return np.asarray(out[0]), np.asarray(out[1])


def test_gcj02_stations_declared_as_wgs84_raise_a_station_offset_warning(liverpool):
    fixes, stations, vehicles, cards = liverpool
    fx = fixes.frame.copy()
    fx["lon"], fx["lat"] = relocate(fx["lon"], fx["lat"])
    st = stations.frame.drop(columns=["geometry"], errors="ignore").copy()
    st["lon"], st["lat"] = relocate(st["lon"], st["lat"])
    # real moments: each bus at its closest pass of RONTEC ISLINGTON, where it "fills"
    rontec = station_id(stations, "RONTEC ISLINGTON")
    s = st.set_index("station_id").loc[rontec]
    x, y = TO_WH.transform(fx["lon"].to_numpy(), fx["lat"].to_numpy())
    sx, sy = TO_WH.transform(s["lon"], s["lat"])
    d = np.hypot(x - sx, y - sy)
    closest = fx.assign(d=d).sort_values("d").groupby("vehicle_id").first()
    tx = pd.DataFrame({"tx_id": ["G" + str(v) for v in closest.index],
                       "card_id": ["K" + str(v) for v in closest.index],
                       "time": closest["time"].to_numpy(), "station_id": rontec,
                       "litres": 50.0, "amount": 80.0, "product": "Diesel"})
    tx["_row"] = np.arange(1, len(tx) + 1)
    kw = {"tz": "UTC", "rules": ["fuel.away_from_station"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", StationOffsetWarning)
        right = audit(fx, tx, st, vehicles, cards, **kw)  # true WGS-84: no warning
    assert not right.warnings and len(right.alerts) == 0
    assert (right.evidence["nearest_m"] < 200).all()
    shifted = st.copy()
    shifted["lon"], shifted["lat"] = wgs84_to_gcj02(st["lon"], st["lat"])
    with pytest.warns(StationOffsetWarning, match="GCJ-02") as record:
        wrong = audit(fx, tx, shifted, vehicles, cards, **kw)
    assert record[0].filename == __file__  # stacklevel=2: the caller's line
    assert wrong.warnings and "near-misses" in wrong.warnings[0]
    near = wrong.evidence["nearest_m"].between(200, 800)
    assert near.mean() > 0.5
    assert wrong.alerts["detail"].str.contains("GCJ-02").all()
    # declared correctly, the stations are converted back and the fills are at the station
    with warnings.catch_warnings():
        warnings.simplefilter("error", StationOffsetWarning)
        fixed = audit(fx, tx, shifted, vehicles, cards, station_coord_system="gcj02", **kw)
    assert len(fixed.alerts) == 0
    np.testing.assert_allclose(fixed.evidence["nearest_m"], right.evidence["nearest_m"],
                               atol=0.01)


def test_rules_selection_and_thresholds_reach_the_rules(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    result = audit(fx, tx, st, veh, cards, tz="Asia/Shanghai", rules=["fuel.over_*"],
                   thresholds={"fuel.over_tank_capacity": {"tolerance": 1.0}})
    assert result.checks["rule"].tolist() == ["fuel.over_tank_capacity"]
    assert len(result.alerts) == 0  # 95 l is below 60 l x 2
    assert result.thresholds == {"fuel.over_tank_capacity": {"tolerance": 1.0}}
    assert set(FUEL_RULES) >= set(result.thresholds)


def test_the_audit_track_equals_track_from_fixes(small_fleet):
    from trajectories import motion
    from trajectories.audit import _fast_track, _vehicle_codes

    fx = small_fleet[0].sample(frac=1.0, random_state=3)  # any row order
    ref = motion.track_from_fixes(fx, crs=BEIJING)
    codes, labels = _vehicle_codes(fx["vehicle_id"])
    ours = _fast_track(codes, labels, pd.DatetimeIndex(fx["time"]).as_unit("ns").asi8,
                       fx["lon"].to_numpy(), fx["lat"].to_numpy(), fx["_row"].to_numpy(),
                       crs=BEIJING, max_gap=pd.Timedelta("10min"))
    for name in ("vehicle_ids", "offsets", "t", "lon", "lat", "fix_id"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(ref, name), err_msg=name)
    for name in ("x", "y"):  # PROJ's approximate transverse Mercator: micrometres apart
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=0, atol=1e-5)
    pd.testing.assert_frame_equal(ours.gaps, ref.gaps, check_dtype=False)
    assert ours.crs == ref.crs and ours.max_gap == ref.max_gap


def test_a_track_as_input_gives_the_same_alerts(small_fleet):
    from trajectories import motion

    fx, tx, st, veh, cards = small_fleet
    a = audit(fx, tx, st, veh, cards, tz="Asia/Shanghai")
    b = audit(motion.track_from_fixes(fx), tx, st, veh, cards, tz="Asia/Shanghai")
    assert sorted(a.alerts["alert_id"]) == sorted(b.alerts["alert_id"])
    assert b.counts["fixes"] == a.counts["fixes"]


def test_read_fixes_partitions_plain_columns_and_wkb(small_fleet, tmp_path):
    fx = small_fleet[0]
    one = fx[fx["vehicle_id"] == "V1"]
    plain = tmp_path / "plain.parquet"
    one.to_parquet(plain)
    wkb = tmp_path / "wkb" / "vehicle_id=V1"
    wkb.mkdir(parents=True)
    gpd.GeoDataFrame(one[["time", "_row"]], geometry=gpd.points_from_xy(one["lon"], one["lat"]),
                     crs=4326).to_parquet(wkb / "a.parquet")
    for path in (plain, tmp_path / "wkb"):
        (frame,) = list(read_fixes_partitions(path))
        assert frame["vehicle_id"].astype(str).unique().tolist() == ["V1"]
        np.testing.assert_allclose(frame["lon"], one["lon"])
        assert (frame["time"].to_numpy() == one["time"].to_numpy()).all()
        assert frame["_row"].tolist() == one["_row"].tolist()


def test_all_at_once_keeps_the_whole_track(small_fleet):
    fx, tx, st, veh, cards = small_fleet
    result = audit(fx, tx, st, veh, cards, tz="Asia/Shanghai", rules=["fuel.off_hours"])
    assert result.track.n_fixes == len(fx) and result.track.n_vehicles == 5


# ---------------------------------------------------------------------------------------------
# The transverse Mercator kernel (the audit's projection) against PROJ on real coordinates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "columns", "sep"), [
    ("geolife_small.csv", ("X", "Y"), ";"),  # Beijing: CGCS2000 Gauss-Krüger CM 117E
    (BUS, ("longitude", "latitude"), ","),  # Liverpool: WGS 84 / UTM 30N
])
def test_tmerc_kernel_matches_proj_on_real_fixes(shared_data: Path, name, columns, sep):
    from geosup.crs import metric_crs_for
    from trajectories.audit import _fast_crs, _project, _tmerc_params

    frame = pd.read_csv(shared_data / TRAJ / name, sep=sep, usecols=list(columns))
    lon = frame[columns[0]].to_numpy(dtype=float)
    lat = frame[columns[1]].to_numpy(dtype=float)
    crs = metric_crs_for((lon.min(), lat.min(), lon.max(), lat.max()))
    assert _tmerc_params(crs) is not None  # the kernel, not the PROJ fallback
    x, y = _project(crs, lon, lat)
    approx = _fast_crs(crs)  # PROJ's own "+approx" transverse Mercator
    assert approx != crs
    for target, tol in ((approx, 1e-6), (crs, 1e-3)):  # PROJ +approx to 1 µm, exact to 1 mm
        ex, ey = pyproj.Transformer.from_crs(4326, target, always_xy=True).transform(lon, lat)
        np.testing.assert_allclose(x, ex, rtol=0, atol=tol)
        np.testing.assert_allclose(y, ey, rtol=0, atol=tol)
    # the same in two threads (big arrays) and in one
    big = np.tile(lon, 1_000_000 // lon.size + 1), np.tile(lat, 1_000_000 // lat.size + 1)
    bx, by = _project(crs, *big)
    np.testing.assert_array_equal(bx[: lon.size], x)
    np.testing.assert_array_equal(by[: lat.size], y)


def test_tmerc_kernel_refuses_other_projections_and_datum_shifts():
    from trajectories.audit import _project, _tmerc_params

    assert _tmerc_params(pyproj.CRS.from_epsg(3857)) is None  # Mercator: PROJ projects
    assert _tmerc_params(pyproj.CRS.from_epsg(2154)) is None  # Lambert-93
    assert _tmerc_params(pyproj.CRS.from_epsg(32750)) is not None  # UTM 50S, false northing
    lon = np.array([116.4, 117.9, 112.0])
    lat = np.array([-39.9, -1.0, -60.0])
    x, y = _project(pyproj.CRS.from_epsg(32750), lon, lat)
    ex, ey = pyproj.Transformer.from_crs(4326, 32750, always_xy=True).transform(lon, lat)
    np.testing.assert_allclose(x, ex, rtol=0, atol=1e-3)
    np.testing.assert_allclose(y, ey, rtol=0, atol=1e-3)
    x, y = _project(pyproj.CRS.from_epsg(3857), lon, lat)  # the fallback still projects
    ex, ey = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(lon, lat)
    np.testing.assert_allclose(x, ex, rtol=0, atol=1e-3)


def test_a_bad_partition_raises_from_the_pipeline_and_stops_reading(small_fleet):
    from geosup.errors import SchemaError

    fx, tx, st, veh, cards = small_fleet
    parts = partitions(fx)
    pulled = []

    def feed():  # the partitions are pulled one ahead of the one being measured
        for i, part in enumerate(parts):
            pulled.append(i)
            yield part.drop(columns=["time"]) if i == 2 else part

    with pytest.raises(SchemaError, match="time"):
        audit(feed(), tx, st, veh, cards, tz="Asia/Shanghai")
    assert pulled == [0, 1, 2, 3]
