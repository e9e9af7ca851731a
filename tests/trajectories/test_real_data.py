"""The fuel audit on real tracks and real places (../shared/data/trajectories).

- Liverpool buses (BODS, route 14) with the UK Fuel Finder forecourts: real vehicles, real
  stations. The closest approaches listed in the data README (RONTEC ISLINGTON 137 m, ASDA
  BRECK ROAD 271 m) are inside the 300 m radius; a forecourt 11 km away is not.
- Limerick bus 304 (GPX, 2 s fixes) with its real bus stops as stand-in stations: the bus
  really dwells at some stops and drives past others.

Every distance is checked against an independent oracle: the geodesic distance on the WGS-84
ellipsoid (``pyproj.Geod``) from the station to each fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest

from geosup.io import read_table
from trajectories.audit import audit

GEOD = pyproj.Geod(ellps="WGS84")
RULES = ["fuel.away_from_station", "fuel.no_stop_at_station", "fuel.no_gps_coverage"]
WINDOW = pd.Timedelta("10min")


def _distances(fix_lon, fix_lat, lon: float, lat: float) -> np.ndarray:
    n = len(fix_lon)
    _, _, d = GEOD.inv(np.asarray(fix_lon, dtype=float), np.asarray(fix_lat, dtype=float),
                       np.full(n, lon), np.full(n, lat))
    return d


def _oracle(fixes: pd.DataFrame, vehicle: str, time: pd.Timestamp, lon: float, lat: float,
            window: pd.Timedelta = WINDOW) -> float:
    """Closest fix of the vehicle to the point within ± window (geodesic metres)."""
    sel = fixes[(fixes["vehicle_id"] == vehicle) & (fixes["time"] >= time - window)
                & (fixes["time"] <= time + window)]
    return float(_distances(sel["lon"], sel["lat"], lon, lat).min())


def _cards(vehicles: list[str], unit: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    v = pd.DataFrame({"vehicle_id": vehicles, "unit": unit, "fuel_type": "diesel",
                      "tank_l": 300.0, "rated_l_per_100km": 40.0, "status": "active"})
    c = pd.DataFrame({"card_id": ["C-" + x for x in vehicles], "vehicle_id": vehicles,
                      "unit": unit})
    return v, c


# ---------------------------------------------------------------------------------------------
# Liverpool buses and UK forecourts
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def liverpool(shared_data: Path):
    folder = shared_data / "trajectories"
    fixes = read_table(folder / "liverpool_bus_route14_outbound_2026-01-26.csv", name="fixes",
                       columns={"lon": "longitude", "lat": "latitude", "time": "timestamp"},
                       required=["vehicle_id", "time"], time_columns=["time"], tz="UTC")
    stations = read_table(
        folder / "uk_fuel_finder_forecourts_2026-02-18_liverpool_bbox.csv", name="stations",
        columns={"station_id": "forecourts.node_id", "name": "forecourts.trading_name",
                 "lon": "forecourts.location.longitude", "lat": "forecourts.location.latitude"},
        id_column="station_id")
    return fixes, stations


def test_liverpool_buses_near_and_far_from_real_forecourts(liverpool):
    fixes, stations = liverpool
    fx, st = fixes.frame, stations.frame.set_index("name")
    assert fixes.rows_used == 1533 and stations.rows_used == 81
    # The forecourt farthest from every bus fix, found here, not typed in.
    min_dist = {name: _distances(fx["lon"], fx["lat"], row["lon"], row["lat"]).min()
                for name, row in st.iterrows()}
    farthest = max(min_dist, key=min_dist.get)
    assert min_dist[farthest] > 10_000
    b4716 = fx[fx["vehicle_id"] == "4716"]["time"]
    when_far = b4716.iloc[len(b4716) // 2]
    cases = [
        ("T-ISL", "4722", pd.Timestamp("2026-01-26 16:50:08", tz="UTC"), "RONTEC ISLINGTON"),
        ("T-ASDA", "4720", pd.Timestamp("2026-01-26 17:42:40", tz="UTC"),
         "ASDA BRECK ROAD SUPERSTORE"),
        ("T-FAR", "4716", when_far, farthest),
    ]
    tx = pd.DataFrame({"tx_id": [c[0] for c in cases], "card_id": ["C-" + c[1] for c in cases],
                       "time": [c[2] for c in cases],
                       "station_id": [st.loc[c[3], "station_id"] for c in cases],
                       "litres": 120.0, "amount": 160.0, "product": "Diesel"})
    vehicles, cards = _cards(sorted(fx["vehicle_id"].unique()), "Arriva Merseyside")
    result = audit(fixes, tx, stations, vehicles, cards, rules=RULES, tz="Europe/London")
    ev = result.evidence.set_index("tx_id")
    for tx_id, vehicle, time, name in cases:
        expected = _oracle(fx, vehicle, time, st.loc[name, "lon"], st.loc[name, "lat"])
        assert ev.loc[tx_id, "covered"], tx_id
        assert ev.loc[tx_id, "fix_distance_m"] == pytest.approx(expected, rel=1e-3, abs=0.5)
        assert ev.loc[tx_id, "nearest_m"] <= ev.loc[tx_id, "fix_distance_m"] + 1e-6
    assert ev.loc["T-ISL", "fix_distance_m"] == pytest.approx(136.9, abs=0.5)  # data README
    assert ev.loc["T-ASDA", "fix_distance_m"] == pytest.approx(271.4, abs=0.5)
    away = result.alerts[result.alerts["rule"] == "fuel.away_from_station"]
    assert away["subject_id"].tolist() == ["T-FAR"]
    assert away["detail"].iloc[0].startswith("Closest approach of vehicle 4716")
    assert ev.loc["T-FAR", "nearest_m"] > 10_000
    assert not any("GCJ" in w for w in result.warnings)  # not in China: no GCJ-02 check fires
    assert result.counts["fixes"]["rows_in"] == 1533


# ---------------------------------------------------------------------------------------------
# Limerick bus 304 and its stops
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limerick(shared_data: Path):
    folder = shared_data / "trajectories"
    gpx = read_table(folder / "bus304_limerick_2019-02-18_0745.gpx", name="fixes",
                     time_columns=["time"], tz="UTC")
    stops = read_table(folder / "bus304_limerick_stops.gpkg", name="stations",
                       columns={"station_id": "stop_id", "name": "stop_name"},
                       id_column="station_id")
    fixes = gpx.frame.assign(vehicle_id="bus304", lon=gpx.frame.geometry.x,
                             lat=gpx.frame.geometry.y)
    st = stops.frame.assign(lon=stops.frame.geometry.x, lat=stops.frame.geometry.y)
    return fixes, st


def _dwell_runs(fixes: pd.DataFrame, lon: float, lat: float, within: float
                ) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Maximal runs of consecutive fixes within ``within`` metres of a point."""
    near = _distances(fixes["lon"], fixes["lat"], lon, lat) < within
    idx = np.flatnonzero(near)
    if not len(idx):
        return []
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    t = fixes["time"].reset_index(drop=True)
    return [(t[r[0]], t[r[-1]]) for r in runs]


def test_limerick_bus_dwells_at_stops_passes_others_and_is_far_from_one(limerick):
    fixes, st = limerick
    times = fixes["time"].reset_index(drop=True)
    step = np.r_[np.diff(times.to_numpy()).astype("timedelta64[ms]").astype(float) / 1000, 0.0]
    rows, kinds = [], {}
    for stop in st.itertuples():
        d = _distances(fixes["lon"], fixes["lat"], stop.lon, stop.lat)
        runs = _dwell_runs(fixes, stop.lon, stop.lat, 40.0)
        longest = max(runs, key=lambda r: r[1] - r[0])
        if longest[1] - longest[0] >= pd.Timedelta("170s"):
            # The bus stays near the stop for ≥ 170 s: a fill there is plausible.
            kinds[f"DWELL-{stop.station_id}"] = "dwell"
            rows.append((f"DWELL-{stop.station_id}", longest[0] + (longest[1] - longest[0]) / 2,
                         stop.station_id))
        elif step[d < 400].sum() < 120 and times.iloc[int(np.argmin(d))] < times.iloc[-1]:
            # Over the whole track the bus spends under 2 minutes within 400 m of the stop, so
            # no stop of 2 minutes (diameter 100 m) can lie within 300 m of it.
            kinds[f"PASS-{stop.station_id}"] = "pass"
            rows.append((f"PASS-{stop.station_id}", times.iloc[int(np.argmin(d))],
                         stop.station_id))
    # A moment when the bus is about 2 km or more from a stop: the stop whose closest fix in
    # ± 10 min of 07:55 is nearest to (but not under) 2 km.
    t_far = pd.Timestamp("2019-02-18 07:55:00", tz="UTC")
    dist = {s.station_id: _oracle(fixes, "bus304", t_far, s.lon, s.lat) for s in st.itertuples()}
    far_id = min((k for k, v in dist.items() if v >= 2000), key=dist.get)
    rows.append(("FAR", t_far, far_id))
    kinds["FAR"] = "far"
    assert sum(k == "dwell" for k in kinds.values()) >= 3
    assert sum(k == "pass" for k in kinds.values()) >= 2
    tx = pd.DataFrame({"tx_id": [r[0] for r in rows], "card_id": "C-bus304",
                       "time": [r[1] for r in rows], "station_id": [r[2] for r in rows],
                       "litres": 50.0, "amount": 70.0, "product": "Diesel"})
    vehicles, cards = _cards(["bus304"], "Bus Éireann")
    result = audit(fixes, tx, st, vehicles, cards, rules=RULES, tz="Europe/Dublin")
    assert result.counts["fixes"] == {"rows_in": 2144, "rows_used": 2144, "rows_rejected": 0}
    flagged: dict[str, set[str]] = {}
    for alert in result.alerts.itertuples():
        flagged.setdefault(alert.subject_id, set()).add(alert.rule)
    ev = result.evidence.set_index("tx_id")
    for tx_id, kind in kinds.items():
        got = flagged.get(tx_id, set())
        assert ev.loc[tx_id, "covered"], tx_id
        if kind == "dwell":
            assert not got, (tx_id, got)
            assert ev.loc[tx_id, "stop_duration_s"] >= 120
        elif kind == "pass":
            assert got == {"fuel.no_stop_at_station"}, (tx_id, got)
            assert ev.loc[tx_id, "nearest_m"] < 20
        else:
            assert got == {"fuel.away_from_station"}, (tx_id, got)
    stop = st.set_index("station_id").loc[far_id]
    expected = _oracle(fixes, "bus304", t_far, stop["lon"], stop["lat"])
    assert ev.loc["FAR", "fix_distance_m"] == pytest.approx(expected, rel=1e-3)
    assert ev.loc["FAR", "nearest_m"] >= 1900
    alert = result.alerts[(result.alerts["subject_id"] == "FAR")].iloc[0]
    assert f"{ev.loc['FAR', 'nearest_m']:.0f} m" in alert["detail"]
