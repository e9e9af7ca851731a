"""The fuel scenario of the demo city: Hefei's official cars, their GPS tracks and fuel cards.

:func:`make_fuel_inputs` builds a deterministic demo city (a seeded random generator, no
wall clock): a road network of arterial roads on a 1.5 km grid plus three diagonals in a
metric CRS (CGCS2000 / 3-degree Gauss-Krüger CM 117E) around Hefei (lon ≈ 117.2, lat ≈ 31.8),
ten fuel stations beside the roads, forty official vehicles of four budget units, one fuel
card per vehicle (and one card bound to a vehicle that is not in the fleet list), and
fourteen days (2024-09-19 to 2024-10-02) of GPS fixes:

- vehicles drive along the road graph (shortest paths) between errands at 25–45 km/h, with
  about 5 m of GPS noise, one fix every 30 s while the engine runs and a heartbeat fix every
  5 minutes while parked (the position held, as trackers do), and a few short signal gaps;
- each vehicle burns fuel at its rated consumption (± a few per cent); when the tank runs
  low it drives to a nearby station on a working day, stops for 3–8 minutes within about
  20 m of it and fills up: those are the legitimate transactions;
- misuse is injected for every ``fuel.*`` rule (see :data:`INJECTED`), and the truth table
  says which rule must flag which subject, named as the audit names it: the ``tx_id`` for
  transaction-level rules, the ``vehicle_id`` for ``fuel.inactive_vehicle`` and for the
  per-vehicle windows of ``fuel.consumption_mismatch`` (which also names each fill). Where a
  case really shows a second rule (a car that never moved was also far from the station),
  the truth lists both; see ``_TX_RULES`` and ``_distance_truth``.

The inputs are written the way a city hands them over: fixes as GeoParquet, transactions as
a WEX-style CSV export with its own column names (:data:`TRANSACTION_COLUMNS` maps them),
stations as GeoJSON in GCJ-02 (as a Chinese map service publishes them), vehicles and cards
as CSV, with a little bad input (an unknown card, an unknown station, a card bound to a
vehicle outside the fleet, duplicate fixes, a fix at (0, 0)). :func:`fuel_scenario` reads
them back with :func:`read_fuel_inputs` (the same reader ``geosup fuel audit`` uses, built on
:func:`geosup.io.read_table`), runs :func:`trajectories.audit.audit` and writes alerts,
rejects, input counts and the stations and roads layers into the store in one run.

Examples
--------
>>> import tempfile
>>> inputs = make_fuel_inputs(tempfile.mkdtemp())
>>> sorted(p.name for p in inputs.paths.values())
['cards.csv', 'fixes.parquet', 'roads.geojson', 'stations.geojson', 'transactions.csv', \
'vehicles.csv']
>>> inputs.truth.groupby("rule").size().to_dict()
{'fuel.away_from_station': 3, 'fuel.consumption_mismatch': 7, 'fuel.inactive_vehicle': 2, \
'fuel.no_gps_coverage': 3, 'fuel.no_stop_at_station': 1, 'fuel.odometer_anomaly': 1, \
'fuel.off_hours': 3, 'fuel.over_tank_capacity': 1, 'fuel.product_mismatch': 2, \
'fuel.rapid_refill': 1}
>>> inputs.read()["transactions"].summary()
'transactions: 60 rows in = 60 used + 0 rejected'
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from geosup.config import Settings
from geosup.crs import wgs84_to_gcj02
from geosup.demo import ScenarioResult, scenario
from geosup.io import ReadResult, read_table
from geosup.store import Store, describe_input

__all__ = [
    "CITY",
    "FIXES_COLUMNS",
    "INJECTED",
    "INPUT_NAMES",
    "INPUT_SPECS",
    "PERIOD",
    "TRANSACTION_COLUMNS",
    "TRANSACTION_TIME_COLUMNS",
    "FuelInputs",
    "fuel_scenario",
    "make_fuel_inputs",
    "read_fuel_inputs",
]

log = logging.getLogger(__name__)

#: The demo city: name, south-west corner (lon, lat) of the road grid, metric CRS.
CITY: dict[str, Any] = {"name": "Hefei", "origin": (117.20, 31.80), "crs": "EPSG:4548",
                        "tz": "Asia/Shanghai"}

#: First and last local day of the demo fixes (14 days: an ordinary weekend, the make-up
#: working Sunday 2024-09-29 and the first two days of the National Day holiday).
PERIOD: tuple[str, str] = ("2024-09-19", "2024-10-02")

#: How the WEX-style transactions export maps to geosup's transaction columns.
TRANSACTION_COLUMNS: dict[str, str] = {
    "tx_id": "Transaction Id",
    "card_id": "Card Number ID",
    "station_id": "Merchant Site ID",
    "litres": "Units",
    "amount": "Net Cost",
    "product": "Product Class",
    "odometer_km": "Current Odometer",
}
#: The export's date and time columns, joined into ``time``.
TRANSACTION_TIME_COLUMNS: tuple[str, str] = ("Transaction Date", "Transaction Time")

#: Fixes columns (the GeoParquet already uses geosup's names).
FIXES_COLUMNS: tuple[str, ...] = ("vehicle_id", "time", "speed_kmh", "ignition", "geometry")

#: The injected misuse: case -> (rule(s) it must fire, what happened).
INJECTED: dict[str, tuple[tuple[str, ...], str]] = {
    "away": (("fuel.away_from_station",),
             "card swiped at a station while the car was parked kilometres away"),
    "drive_by": (("fuel.no_stop_at_station",),
                 "card swiped while the car drove past the station without stopping"),
    "outage": (("fuel.no_gps_coverage",),
               "fill during a 30-minute GPS outage"),
    "over_tank": (("fuel.over_tank_capacity",), "litres above the tank capacity"),
    "consumption": (("fuel.consumption_mismatch",),
                    "a car filled every day that drives a few kilometres"),
    "sunday": (("fuel.off_hours",), "fill on an ordinary Sunday"),
    "holiday": (("fuel.off_hours",), "fill on National Day (2024-10-01)"),
    "night": (("fuel.off_hours",), "fill at 23:00 on a working day"),
    "rapid": (("fuel.rapid_refill",), "two fills 40 minutes apart"),
    "diesel_in_petrol": (("fuel.product_mismatch",), "diesel bought for a petrol car"),
    "non_fuel": (("fuel.product_mismatch",), "a non-fuel purchase on a fuel card"),
    "decommissioned": (("fuel.inactive_vehicle",), "fills for a decommissioned vehicle"),
    "parked": (("fuel.inactive_vehicle",), "fills for a car that never moved"),
    "odometer": (("fuel.odometer_anomaly",), "the reported odometer goes backwards"),
}

_TZ = CITY["tz"]
_GRID_N = 9
_GRID_STEP = 1500.0
_FIX_S = 30.0
_HEARTBEAT_EVERY = 10  # one fix in ten (5 minutes) while parked
_NOISE_M = 3.5  # per axis: about 5 m of horizontal error
_STATION_OFFSET_M = 20.0
_MOVING, _AT_STATION, _PARKED = 0, 1, 2
_PRICE = {"petrol": 7.62, "diesel": 7.31}
_UNITS = (
    ("合肥市公安局", 12, 0),  # (unit, vehicles, of which diesel)
    ("合肥市城市管理局", 10, 2),
    ("合肥市交通运输局", 10, 4),
    ("合肥市水务局", 8, 3),
)
_ROAD_NAMES_EW = ("Fanhua Ave", "Ziyun Rd", "Huaihe Rd", "Changjiang Rd", "Wangjiang Rd",
                  "Huangshan Rd", "Yulan Ave", "Fuyang Rd", "Beijing Rd")
_ROAD_NAMES_NS = ("Jinzhai Rd", "Huizhou Ave", "Tongcheng Rd", "Suzhou Rd", "Wuhu Rd",
                  "Shouchun Rd", "Mengcheng Rd", "Feixi Rd", "Qianshan Rd")
_BRANDS = ("Sinopec", "PetroChina", "Sinopec", "PetroChina", "Shell", "Sinopec",
           "PetroChina", "CNOOC", "Sinopec", "PetroChina")


# ---------------------------------------------------------------------------------------------
# The city: road graph, stations, depots
# ---------------------------------------------------------------------------------------------


@dataclass
class _City:
    crs: pyproj.CRS
    node_xy: np.ndarray
    dist: np.ndarray
    nxt: np.ndarray
    roads: gpd.GeoDataFrame
    stations: pd.DataFrame  # station_id, name, brand, x, y, u, v, mx, my
    depots: np.ndarray

    def path(self, a: int, b: int) -> list[int]:
        out = [a]
        while out[-1] != b:
            out.append(int(self.nxt[out[-1], b]))
        return out


def _node(i: int, j: int) -> int:
    return i * _GRID_N + j


def _build_city(rng: np.random.Generator) -> _City:
    crs = pyproj.CRS.from_user_input(CITY["crs"])
    to_metric = pyproj.Transformer.from_crs(4326, crs, always_xy=True)
    x0, y0 = to_metric.transform(*CITY["origin"])
    n = _GRID_N
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    node_xy = np.column_stack([x0 + ii.ravel() * _GRID_STEP, y0 + jj.ravel() * _GRID_STEP])
    lines: list[tuple[str, str, list[int]]] = []
    for j in range(n):
        lines.append((_ROAD_NAMES_EW[j], "arterial", [_node(i, j) for i in range(n)]))
    for i in range(n):
        lines.append((_ROAD_NAMES_NS[i], "arterial", [_node(i, j) for j in range(n)]))
    lines.append(("Hefei Diagonal Ave", "diagonal", [_node(k, k) for k in range(n)]))
    lines.append(("Chaohu Diagonal Rd", "diagonal", [_node(k, n - 1 - k) for k in range(n)]))
    lines.append(("Shushan Diagonal Rd", "diagonal", [_node(k, k + 4) for k in range(n - 4)]))
    m = n * n
    weight = np.full((m, m), np.inf)
    np.fill_diagonal(weight, 0.0)
    grid_edges: list[tuple[int, int]] = []
    for _, kind, nodes in lines:
        for a, b in itertools.pairwise(nodes):
            d = float(np.hypot(*(node_xy[a] - node_xy[b])))
            weight[a, b] = weight[b, a] = d
            if kind == "arterial":
                grid_edges.append((a, b))
    # Floyd-Warshall with next hops (81 nodes: instant).
    dist = weight.copy()
    nxt = np.where(np.isfinite(weight), np.arange(m)[None, :], -1)
    for k in range(m):
        via = dist[:, k, None] + dist[None, k, :]
        better = via < dist - 1e-9
        dist = np.where(better, via, dist)
        nxt = np.where(better, nxt[:, k, None], nxt)
    roads = gpd.GeoDataFrame(
        {"road_id": [f"R{k + 1:02d}" for k in range(len(lines))],
         "name": [name for name, _, _ in lines],
         "kind": [kind for _, kind, _ in lines]},
        geometry=[shapely.LineString(node_xy[nodes]) for _, _, nodes in lines], crs=crs)
    depots = np.array([_node(2, 2), _node(6, 2), _node(2, 6), _node(6, 6)])
    # Stations beside grid roads, away from the depots and from each other.
    order = rng.permutation(len(grid_edges))
    chosen: list[tuple[int, int]] = []
    mids: list[np.ndarray] = []
    for k in order:
        a, b = grid_edges[k]
        mid = (node_xy[a] + node_xy[b]) / 2
        if np.min(np.hypot(*(node_xy[depots] - mid).T)) < 1200:
            continue
        if mids and np.min(np.hypot(*(np.array(mids) - mid).T)) < 2000:
            continue
        chosen.append((a, b))
        mids.append(mid)
        if len(chosen) == 10:
            break
    rows = []
    for k, ((a, b), mid) in enumerate(zip(chosen, mids, strict=True)):
        direction = (node_xy[b] - node_xy[a]) / _GRID_STEP
        normal = np.array([-direction[1], direction[0]])
        x, y = mid + normal * _STATION_OFFSET_M
        rows.append({"station_id": f"34010{k + 1:03d}", "brand": _BRANDS[k],
                     "name": f"{_BRANDS[k]} Hefei No. {k + 1}", "x": x, "y": y,
                     "u": a, "v": b, "mx": mid[0], "my": mid[1]})
    return _City(crs=crs, node_xy=node_xy, dist=dist, nxt=nxt, roads=roads,
                 stations=pd.DataFrame(rows), depots=depots)


# ---------------------------------------------------------------------------------------------
# Movement: a piecewise-linear timeline per vehicle, sampled like a tracker
# ---------------------------------------------------------------------------------------------


class _Timeline:
    """Knots (time s since the epoch, x, y, metres driven) and the kind of each segment."""

    def __init__(self, t0: float, node: int, xy: np.ndarray) -> None:
        self.t = [t0]
        self.x = [float(xy[0])]
        self.y = [float(xy[1])]
        self.cum = [0.0]
        self.kind: list[int] = []
        self.node = node

    @property
    def now(self) -> float:
        return self.t[-1]

    def move(self, x: float, y: float, speed: float) -> None:
        d = float(np.hypot(x - self.x[-1], y - self.y[-1]))
        if d < 0.01:
            return
        self.t.append(self.t[-1] + d / speed)
        self.x.append(float(x))
        self.y.append(float(y))
        self.cum.append(self.cum[-1] + d)
        self.kind.append(_MOVING)

    def hold(self, until: float, kind: int = _PARKED) -> None:
        if until <= self.t[-1] + 0.5:
            return
        self.t.append(until)
        self.x.append(self.x[-1])
        self.y.append(self.y[-1])
        self.cum.append(self.cum[-1])
        self.kind.append(kind)

    def goto(self, city: _City, target: int, speed: float) -> None:
        for node in city.path(self.node, target)[1:]:
            self.move(*city.node_xy[node], speed)
        self.node = target

    def metres_at(self, t: float | np.ndarray) -> np.ndarray:
        return np.interp(t, self.t, self.cum)


@dataclass
class _Vehicle:
    index: int
    vehicle_id: str
    card_id: str
    plate: str
    unit: str
    fuel_type: str
    tank_l: float
    rated: float  # litres per 100 km
    factor: float  # real consumption / rated
    depot: int
    odometer0: float
    level_ref: float
    tl: _Timeline
    cum_ref: float = 0.0
    status: str = "active"
    active_to: str = ""
    case: str = ""
    tracker: bool = True

    def level(self) -> float:
        return self.level_at(self.tl.cum[-1])

    def level_at(self, metres: float) -> float:
        return self.level_ref - (metres - self.cum_ref) / 1000 * self.rated / 100 * self.factor

    def refuel(self, metres: float, litres: float) -> None:
        self.level_ref = min(self.tank_l, self.level_at(metres) + litres)
        self.cum_ref = metres


@dataclass
class _Sim:
    city: _City
    rng: np.random.Generator
    t0: float  # the first local midnight, seconds since the epoch (UTC)
    days: int
    transactions: list[dict[str, Any]] = field(default_factory=list)
    quiet: dict[int, list[float]] = field(default_factory=dict)  # no signal gaps near these
    outages: list[tuple[int, float, float]] = field(default_factory=list)

    def clock(self, day: int, hours: float) -> float:
        return self.t0 + day * 86400.0 + hours * 3600.0

    def speed(self) -> float:
        return float(self.rng.uniform(25.0, 45.0)) / 3.6

    def nearest_stations(self, node: int, k: int = 3) -> np.ndarray:
        st = self.city.stations
        d = np.minimum(self.city.dist[node, st["u"].to_numpy()],
                       self.city.dist[node, st["v"].to_numpy()])
        return np.argsort(d, kind="stable")[:k]

    def visit_station(self, v: _Vehicle, s: int, *, dwell_s: float | None = None,
                      drive_by: bool = False, not_before: float | None = None
                      ) -> tuple[float, float]:
        """Drive to station ``s`` and stop there (or drive past): (arrival, departure)."""
        st = self.city.stations.iloc[s]
        a, b = int(st["u"]), int(st["v"])
        if self.city.dist[v.tl.node, b] < self.city.dist[v.tl.node, a]:
            a, b = b, a
        speed = self.speed()
        v.tl.goto(self.city, a, speed)
        if not_before is not None:
            lead = _GRID_STEP / 2 / speed + 2 * _STATION_OFFSET_M / 3.0
            v.tl.hold(not_before - lead, _AT_STATION)
        v.tl.move(st["mx"], st["my"], speed)
        if drive_by:
            passing = v.tl.now
            v.tl.move(*self.city.node_xy[b], speed)
            v.tl.node = b
            return passing, passing
        v.tl.move(st["x"], st["y"], 3.0)
        arrival = v.tl.now
        dwell = dwell_s if dwell_s is not None else float(self.rng.uniform(180, 480))
        v.tl.hold(arrival + dwell, _AT_STATION)
        departure = v.tl.now
        v.tl.move(st["mx"], st["my"], 3.0)
        v.tl.move(*self.city.node_xy[b], speed)
        v.tl.node = b
        return arrival, departure

    def add_tx(self, v: _Vehicle, t: float, s: int, litres: float, *, case: str = "",
               product: str | None = None, odometer: float | None = None,
               card_id: str | None = None, station_id: str | None = None) -> dict[str, Any]:
        fuel = product or ("Diesel" if v.fuel_type == "diesel" else "Unleaded")
        price = _PRICE["diesel" if fuel == "Diesel" else "petrol"]
        metres = float(v.tl.metres_at(t))
        tx = {"vehicle": v.index, "card_id": card_id or v.card_id, "t": float(t),
              "station": s, "station_id": station_id or self.city.stations["station_id"].iloc[s],
              "litres": round(float(litres), 2), "product": fuel, "price": price,
              "odometer": odometer if odometer is not None else v.odometer0 + metres / 1000,
              "case": case, "unit": v.unit}
        self.transactions.append(tx)
        self.quiet.setdefault(v.index, []).append(float(t))
        return tx

    def fill(self, v: _Vehicle, s: int, *, case: str = "", litres: float | None = None,
             product: str | None = None, tank_litres: float | None = None,
             not_before: float | None = None) -> tuple[dict[str, Any], float, float]:
        """A real stop at station ``s`` with a fill (by default up to 90–98 % of the tank)."""
        arrival, departure = self.visit_station(v, s, not_before=not_before)
        t = arrival + (departure - arrival) * float(self.rng.uniform(0.5, 0.9))
        metres = float(v.tl.metres_at(t))
        if litres is None:
            level = max(v.level_at(metres), 0.0)
            litres = max(v.tank_l * float(self.rng.uniform(0.90, 0.98)) - level, 3.0)
        tx = self.add_tx(v, t, s, litres, case=case, product=product)
        v.refuel(metres, litres if tank_litres is None else tank_litres)
        return tx, arrival, departure


# ---------------------------------------------------------------------------------------------
# The fleet and its fourteen days
# ---------------------------------------------------------------------------------------------

# Vehicle index -> injected case (the indices respect the fuel types: 0-11 police petrol cars,
# 12-19 petrol and 20-21 diesel, 22-27 petrol and 28-31 diesel, 32-36 petrol and 37-39 diesel).
_CASES: dict[int, str] = {
    1: "parked", 4: "away", 7: "consumption", 10: "rapid", 11: "makeup_sunday",
    13: "drive_by", 16: "sunday", 19: "diesel_in_petrol", 22: "outage", 25: "holiday",
    28: "non_fuel", 29: "over_tank", 32: "odometer", 34: "night", 37: "decommissioned",
}
# Day (0 = 2024-09-19) of each injected event.
_CASE_DAYS: dict[str, tuple[int, ...]] = {
    "parked": (5, 11), "away": (5,), "consumption": (0, 1, 4, 5, 6), "rapid": (8,),
    "makeup_sunday": (10,), "drive_by": (6,), "sunday": (3,), "diesel_in_petrol": (6,),
    "outage": (7,), "holiday": (12,), "non_fuel": (7,), "over_tank": (4,),
    "odometer": (4, 8), "night": (5,), "decommissioned": (4, 8),
}


_FILL_CASES = frozenset({"rapid", "makeup_sunday", "diesel_in_petrol", "outage", "over_tank",
                         "odometer", "sunday", "holiday", "night"})


def _make_fleet(sim: _Sim) -> list[_Vehicle]:
    rng = sim.rng
    fleet: list[_Vehicle] = []
    k = 0
    for u, (unit, n, n_diesel) in enumerate(_UNITS):
        for j in range(n):
            diesel = j >= n - n_diesel
            tank = float(rng.choice([80, 90, 100, 120]) if diesel else rng.choice([50, 55, 60, 70]))
            rated = round(float(rng.uniform(12, 17) if diesel else rng.uniform(8, 12)), 1)
            depot = int(sim.city.depots[u])
            case = _CASES.get(k, "")
            v = _Vehicle(
                index=k, vehicle_id=f"HF-V{k + 1:03d}", card_id=f"7100{k + 1:04d}",
                plate=f"皖A{'PQRS'[u]}{(k * 7919) % 9000 + 1000}", unit=unit,
                fuel_type="diesel" if diesel else "petrol", tank_l=tank, rated=rated,
                factor=float(rng.uniform(0.92, 1.10)), depot=depot,
                odometer0=float(rng.integers(18_000, 160_000)),
                level_ref=tank * float(rng.uniform(0.35, 0.95)),
                tl=_Timeline(sim.t0, depot, sim.city.node_xy[depot]), case=case)
            if case in _FILL_CASES:
                v.level_ref = tank * 0.62  # the injected fill is this car's next fill
            if case == "decommissioned":
                v.status, v.active_to, v.tracker = "decommissioned", "2024-08-31", False
            fleet.append(v)
            k += 1
    return fleet


def _errand_target(sim: _Sim, v: _Vehicle, *, near: bool) -> int:
    n = _GRID_N * _GRID_N
    if near:  # a short hop around the depot
        d = np.hypot(*(sim.city.node_xy - sim.city.node_xy[v.depot]).T)
        options = np.flatnonzero((d > 0) & (d <= 1.01 * _GRID_STEP * np.sqrt(2)))
    else:
        options = np.arange(n)
    options = options[options != v.tl.node]
    return int(sim.rng.choice(options))


def _work_day(sim: _Sim, v: _Vehicle, day: int) -> None:
    tl, rng, case = v.tl, sim.rng, v.case
    injected = day in _CASE_DAYS.get(case, ())
    tl.hold(sim.clock(day, 8.0 + float(rng.uniform(0.0, 0.7))))
    short = case == "consumption"
    errands = int(rng.integers(2, 4) if short else rng.integers(4, 9))
    forced = injected and case in ("consumption", "rapid", "makeup_sunday", "diesel_in_petrol",
                                   "outage", "over_tank", "odometer")
    # A car whose injected fill is due within three days waits for it.
    soon = case in _FILL_CASES and any(0 <= d - day <= 3 for d in _CASE_DAYS[case])
    # Cars whose card is used elsewhere get no fills of their own in the fortnight, so that
    # the fake fill is not also the "previous fill" of a real one (see _expected_truth).
    never = case in ("away", "drive_by")
    need = forced or (not soon and not never and not short and v.level() < 0.4 * v.tank_l)
    for k in range(errands):
        if k == 1 and need:
            _day_fill(sim, v, day)
        if k == 1 and injected and case == "drive_by":
            s = int(sim.nearest_stations(tl.node, 1)[0])
            passing, _ = sim.visit_station(v, s, drive_by=True)
            sim.add_tx(v, passing + float(rng.uniform(-20, 20)), s, 40.0, case=case,
                       odometer=np.nan)
        if k == 1 and injected and case == "non_fuel":
            s = int(sim.nearest_stations(tl.node, 1)[0])
            arrival, _ = sim.visit_station(
                v, s, dwell_s=240.0, not_before=sim.clock(day, 10.0))
            tx = sim.add_tx(v, arrival + 150.0, s, 2.0, case=case, product="Non-Fuel")
            tx["price"] = 18.0
        if k == 2 and injected and case == "away":
            s = int(sim.nearest_stations(v.depot, 1)[0])
            st = sim.city.stations.iloc[s]
            far = np.hypot(sim.city.node_xy[:, 0] - st["x"], sim.city.node_xy[:, 1] - st["y"])
            tl.goto(sim.city, int(np.argmax(far)), sim.speed())
            arrival = tl.now
            tl.hold(arrival + 3600.0)
            sim.add_tx(v, arrival + 1500.0, s, 45.0, case=case, odometer=np.nan)
            continue
        tl.goto(sim.city, _errand_target(sim, v, near=short), sim.speed())
        tl.hold(tl.now + float(rng.uniform(10, 45)) * 60.0)
        if tl.now > sim.clock(day, 16.5):
            break
    tl.goto(sim.city, v.depot, sim.speed())
    if injected and case == "night":
        tl.hold(sim.clock(day, 22.6))
        s = int(sim.nearest_stations(tl.node, 1)[0])
        sim.fill(v, s, case=case, not_before=sim.clock(day, 22.97))
        tl.goto(sim.city, v.depot, sim.speed())


def _day_fill(sim: _Sim, v: _Vehicle, day: int) -> None:
    """The day's fill at a station near the car, in working hours (an injected one if any)."""
    rng, case = sim.rng, v.case
    injected = day in _CASE_DAYS.get(case, ())
    s = int(rng.choice(sim.nearest_stations(v.tl.node, 2)))
    not_before = sim.clock(day, 9.3 + float(rng.uniform(0.0, 1.2)))
    if not injected or case == "makeup_sunday":
        sim.fill(v, s, case=case if injected else "", not_before=not_before)
    elif case == "consumption":
        metres = float(v.tl.metres_at(v.tl.now))
        room = max(v.tank_l - v.level_at(metres), 0.0)
        sim.fill(v, s, case=case, litres=30.0, tank_litres=min(30.0, room),
                 not_before=not_before)
    elif case == "over_tank":
        sim.fill(v, s, case=case, litres=round(v.tank_l * 1.3, 2), tank_litres=v.tank_l,
                 not_before=not_before)
    elif case == "diesel_in_petrol":
        sim.fill(v, s, case=case, product="Diesel", not_before=not_before)
    elif case == "outage":
        _, arrival, departure = sim.fill(v, s, case=case, not_before=not_before)
        sim.outages.append((v.index, arrival - 720.0, departure + 720.0))
    elif case == "odometer":
        tx, _, _ = sim.fill(v, s, case=case if day == _CASE_DAYS[case][-1] else "",
                            not_before=not_before)
        if tx["case"]:  # a typo: the reading is lower than the previous one
            previous = [o for o in sim.transactions if o["vehicle"] == v.index and o is not tx]
            tx["odometer"] = float(np.round(previous[-1]["odometer"])) - 873.0
    elif case == "rapid":
        first, _, _ = sim.fill(v, s, not_before=not_before)
        others = [int(o) for o in sim.nearest_stations(v.tl.node, 3) if int(o) != s]
        t2 = first["t"] + 2400.0
        sim.visit_station(v, others[0], dwell_s=300.0, not_before=t2 - 150.0)
        sim.add_tx(v, t2, others[0], 25.0, case=case)


def _outing(sim: _Sim, v: _Vehicle, day: int) -> None:
    """A weekend or holiday trip to a station and back (injected off-hours fills)."""
    v.tl.hold(sim.clock(day, 9.6 + float(sim.rng.uniform(0.0, 0.4))))
    s = int(sim.nearest_stations(v.tl.node, 1)[0])
    sim.fill(v, s, case=v.case, not_before=sim.clock(day, 10.25))
    v.tl.goto(sim.city, v.depot, sim.speed())


def _simulate(seed: int) -> tuple[_Sim, list[_Vehicle]]:
    import chinese_calendar

    rng = np.random.default_rng(seed)
    city = _build_city(rng)
    first, last = (pd.Timestamp(d) for d in PERIOD)
    days = int((last - first).days) + 1
    sim = _Sim(city=city, rng=rng, t0=pd.Timestamp(PERIOD[0], tz=_TZ).timestamp(), days=days)
    fleet = _make_fleet(sim)
    workday = [chinese_calendar.is_workday((first + pd.Timedelta(days=d)).date())
               for d in range(days)]
    for v in fleet:
        if v.case in ("parked", "decommissioned"):
            continue
        for day in range(days):
            if workday[day]:
                _work_day(sim, v, day)
            elif day in _CASE_DAYS.get(v.case, ()):
                _outing(sim, v, day)
    for v in fleet:
        v.tl.hold(sim.clock(days, 0.0))  # parked at the depot until the end
    # Fills of cars that did not move: swiped at stations far from the parked car.
    for v in fleet:
        if v.case in ("parked", "decommissioned"):
            for day, hour, litres in zip(_CASE_DAYS[v.case], (9.7, 14.3), (38.0, 41.0),
                                         strict=False):
                s = int(rng.integers(len(city.stations)))
                sim.add_tx(v, sim.clock(day, hour), s, litres, case=v.case, odometer=np.nan)
    # Bad input: an unknown card, an unknown station, a card bound to no fleet vehicle.
    sim.add_tx(fleet[5], sim.clock(6, 11.2), 0, 30.0, case="bad:card", card_id="71009999")
    sim.add_tx(fleet[6], sim.clock(6, 11.4), 0, 30.0, case="bad:station",
               station_id="34019999")
    sim.add_tx(fleet[5], sim.clock(7, 15.1), 1, 35.0, case="bad:vehicle",
               card_id=f"7100{len(fleet) + 1:04d}")
    return sim, fleet


def _sample_fixes(sim: _Sim, v: _Vehicle) -> pd.DataFrame:
    """The tracker's fixes: 30 s while the engine runs, 5 min while parked, noise, gaps."""
    rng, tl = sim.rng, v.tl
    kt = np.asarray(tl.t)
    kind = np.asarray(tl.kind)
    cum = np.asarray(tl.cum)
    phase = float(rng.uniform(0.0, _FIX_S))
    grid = sim.t0 + phase + np.arange(int((kt[-1] - sim.t0 - phase) // _FIX_S) + 1) * _FIX_S
    seg = np.clip(np.searchsorted(kt, grid, side="right") - 1, 0, len(kind) - 1)
    k = kind[seg]
    keep = (k != _PARKED) | (np.arange(len(grid)) % _HEARTBEAT_EVERY == 0)
    for index, start, end in sim.outages:
        if index == v.index:
            keep &= ~((grid >= start) & (grid <= end))
    # Short signal gaps (1-3 minutes) while driving, away from the car's transactions.
    quiet = np.asarray(sim.quiet.get(v.index, [np.inf]))
    moving = np.flatnonzero(keep & (k == _MOVING))
    if len(moving):
        for start in rng.choice(moving, size=sim.days // 2):
            if np.min(np.abs(quiet - grid[start])) > 1800:
                keep[start:start + int(rng.integers(2, 7))] = False
    t, seg, k = grid[keep], seg[keep], k[keep]
    x = np.interp(t, kt, tl.x)
    y = np.interp(t, kt, tl.y)
    noisy = k != _PARKED
    x[noisy] += rng.normal(0.0, _NOISE_M, int(noisy.sum()))
    y[noisy] += rng.normal(0.0, _NOISE_M, int(noisy.sum()))
    speed = np.where(k == _MOVING, (cum[seg + 1] - cum[seg]) / (kt[seg + 1] - kt[seg]) * 3.6, 0.0)
    speed = np.where(k == _MOVING, np.maximum(speed + rng.normal(0, 1.5, len(t)), 0.0), 0.0)
    return pd.DataFrame({"vehicle_id": v.vehicle_id, "t": t, "x": x, "y": y,
                         "speed_kmh": np.round(speed, 1), "ignition": k != _PARKED})


# ---------------------------------------------------------------------------------------------
# The truth table
# ---------------------------------------------------------------------------------------------

# Injected case -> rules that must flag it. The subject is the transaction unless the rule is
# vehicle-level. Co-firing rules are listed where the data really show them:
# - "parked": the card was swiped at stations kilometres from the parked car, so each of
#   its transactions is also fuel.away_from_station;
# - "decommissioned": the car has no tracker any more, so its purchases cannot be verified
#   against a track (fuel.no_gps_coverage on each transaction).
# fuel.consumption_mismatch and fuel.odometer_anomaly are not listed here: they depend on
# distances, so :func:`_distance_truth` derives them from the simulated (true) distances with
# the rules' own definitions and thresholds. That is where the honest co-fires of
# "rapid" (25 litres bought 40 minutes after filling up), "parked" (41 litres after 0 km) and
# "consumption" (its very purpose) come from.
_TX_RULES: dict[str, tuple[str, ...]] = {
    "away": ("fuel.away_from_station",),
    "drive_by": ("fuel.no_stop_at_station",),
    "outage": ("fuel.no_gps_coverage",),
    "over_tank": ("fuel.over_tank_capacity",),
    "sunday": ("fuel.off_hours",),
    "holiday": ("fuel.off_hours",),
    "night": ("fuel.off_hours",),
    "rapid": ("fuel.rapid_refill",),
    "diesel_in_petrol": ("fuel.product_mismatch",),
    "non_fuel": ("fuel.product_mismatch",),
    "parked": ("fuel.away_from_station",),
    "decommissioned": ("fuel.no_gps_coverage",),
}
_VEHICLE_RULES: dict[str, tuple[str, ...]] = {
    "parked": ("fuel.inactive_vehicle",),
    "decommissioned": ("fuel.inactive_vehicle",),
}


def _thresholds(code: str, settings: Settings | None) -> dict[str, Any]:
    from geosup.rules import REGISTRY, load_builtin_rules, resolve_thresholds

    load_builtin_rules()
    return resolve_thresholds(REGISTRY.get(code), settings)


def _previous(vehicle: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Index of each row's previous valid row of the same vehicle (strictly earlier), -1."""
    prev = np.full(len(t), -1, dtype=np.int64)
    for v in np.unique(vehicle):
        rows = np.flatnonzero((vehicle == v) & valid)
        rows = rows[np.argsort(t[rows], kind="stable")]
        for a, b in itertools.pairwise(rows):
            if t[a] < t[b]:
                prev[b] = a
    return prev


def _distance_truth(tx: pd.DataFrame, settings: Settings | None, *,
                    scale: float = 1.0) -> pd.DataFrame:
    """fuel.consumption_mismatch and fuel.odometer_anomaly on the true distances.

    The same definitions as the rules (see :mod:`trajectories.rules`) applied to the distance
    each car really drove (``scale`` multiplies it, to check that no case sits on a
    threshold).
    """
    rows: list[dict[str, str]] = []
    t = tx["t"].to_numpy(dtype="float64")
    vehicle = tx["vehicle_id"].to_numpy(dtype=object)
    km = tx["metres"].to_numpy(dtype="float64") / 1000.0 * scale
    gps = tx["tracker"].to_numpy(dtype=bool)
    litres = tx["litres"].to_numpy(dtype="float64")
    rated = tx["rated"].to_numpy(dtype="float64")
    c = _thresholds("fuel.consumption_mismatch", settings)
    fuel = tx["product"].to_numpy(dtype=object) != "Non-Fuel"
    prev = _previous(vehicle, t, fuel)
    p = np.maximum(prev, 0)
    judged = fuel & (prev >= 0) & gps
    expected = np.where(judged, (km - km[p]) * rated / 100.0, np.nan)
    allowed = c["factor"] * expected
    fire = judged & (litres > allowed) & (litres - allowed >= c["min_excess_l"])
    rows += [{"rule": "fuel.consumption_mismatch", "subject_id": s} for s in tx["tx_id"][fire]]
    for v in np.unique(vehicle[judged]):  # rolling windows ending at each judged fill
        idx = np.flatnonzero(judged & (vehicle == v))
        idx = idx[np.argsort(t[idx], kind="stable")]
        for j, end in enumerate(idx):
            inside = idx[: j + 1][t[idx[: j + 1]] >= t[end] - c["window_days"] * 86400.0]
            w_lit, w_allowed = litres[inside].sum(), c["factor"] * expected[inside].sum()
            if len(inside) >= 2 and w_lit > w_allowed and w_lit - w_allowed >= c["min_excess_l"]:
                rows.append({"rule": "fuel.consumption_mismatch", "subject_id": str(v)})
                break
    o = _thresholds("fuel.odometer_anomaly", settings)
    odo = tx["odometer"].to_numpy(dtype="float64")
    valid = np.isfinite(odo) & (odo > 0)
    prev = _previous(vehicle, t, valid)
    p = np.maximum(prev, 0)
    has = valid & (prev >= 0)
    delta = np.where(has, odo - odo[p], np.nan)
    gps_km = np.where(has & gps, km - km[p], np.nan)
    diff = np.abs(delta - gps_km)
    bad = has & ((delta <= 0) | (delta > o["max_delta_km"]) | (
        np.isfinite(diff) & (diff > o["abs_tolerance_km"]) & (diff > o["rel_tolerance"] * gps_km)))
    rows += [{"rule": "fuel.odometer_anomaly", "subject_id": s} for s in tx["tx_id"][bad]]
    return pd.DataFrame(rows, columns=["rule", "subject_id"])


def _truth(tx: pd.DataFrame, settings: Settings | None) -> pd.DataFrame:
    """The (rule, subject) pairs the audit must report, with the case and why."""
    rows: list[dict[str, str]] = []
    for case, rules_ in _TX_RULES.items():
        for tx_id in tx.loc[tx["case"] == case, "tx_id"]:
            rows += [{"rule": r, "subject_id": tx_id, "subject_type": "transaction",
                      "case": case} for r in rules_]
    for case, rules_ in _VEHICLE_RULES.items():
        for vid in tx.loc[tx["case"] == case, "vehicle_id"].unique():
            rows += [{"rule": r, "subject_id": vid, "subject_type": "vehicle", "case": case}
                     for r in rules_]
    measured = _distance_truth(tx, settings)
    for scale in (0.93, 1.07):  # a case this close to a threshold would make a flaky demo
        other = _distance_truth(tx, settings, scale=scale)
        if not measured.equals(other):
            log.warning("fuel demo: a distance-based truth changes with ±7 %% of distance: "
                        "%s vs %s", measured.to_dict("records"), other.to_dict("records"))
    by_tx = tx.set_index("tx_id")["case"]
    by_vehicle = tx.drop_duplicates("vehicle_id").set_index("vehicle_id")["vehicle_case"]
    for r in measured.itertuples(index=False):
        if r.subject_id in by_tx.index:
            rows.append({"rule": r.rule, "subject_id": r.subject_id,
                         "subject_type": "transaction", "case": by_tx[r.subject_id] or "legit"})
        else:
            rows.append({"rule": r.rule, "subject_id": r.subject_id, "subject_type": "vehicle",
                         "case": by_vehicle[r.subject_id] or "legit"})
    out = pd.DataFrame(rows, columns=["rule", "subject_id", "subject_type", "case"])
    return out.drop_duplicates(["rule", "subject_id"]).sort_values(
        ["rule", "subject_id"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Files in, files out
# ---------------------------------------------------------------------------------------------

#: How each input is read: required columns, time and number columns, the id column.
INPUT_SPECS: dict[str, dict[str, Any]] = {
    "fixes": {"required": ("vehicle_id", "time"), "time_columns": ("time",),
              "numeric_columns": ("speed_kmh", "heading", "odometer_km")},
    "transactions": {"required": ("tx_id", "time"),
                     "time_columns": ("time",),
                     "numeric_columns": ("litres", "amount", "odometer_km"),
                     "id_column": "tx_id", "geometry": "none"},
    "stations": {"required": ("station_id",), "id_column": "station_id"},
    "vehicles": {"required": ("vehicle_id",), "id_column": "vehicle_id",
                 "numeric_columns": ("tank_l", "rated_l_per_100km"),
                 "time_columns": ("active_from", "active_to"), "geometry": "none"},
    "cards": {"required": ("card_id",), "id_column": "card_id",
              "geometry": "none"},
}

#: The inputs of the fuel audit, in the order they are read and reported.
INPUT_NAMES: tuple[str, ...] = tuple(INPUT_SPECS)


def read_fuel_inputs(
    paths: Mapping[str, str | Path],
    *,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    combine_columns: Mapping[str, Mapping[str, list[str] | tuple[str, ...]]] | None = None,
    coord_systems: Mapping[str, str] | None = None,
    tz: str = _TZ,
    units: Mapping[str, Mapping[str, str]] | None = None,
    crs: Mapping[str, Any] | None = None,
    crs_hint: str | None = None,
) -> dict[str, ReadResult]:
    """Read the fuel audit's inputs with :func:`geosup.io.read_table`.

    Parameters
    ----------
    paths : mapping
        Input name (``fixes``, ``transactions``, ``stations``, ``vehicles``, ``cards``) ->
        file or ``postgresql://`` URL. Absent names are not read.
    columns : mapping, optional
        Per input, canonical column -> source column.
    combine_columns : mapping, optional
        Per input, canonical column -> source columns joined with a space (a date and a time
        column into ``time``).
    coord_systems : mapping, optional
        Per point input (``fixes``, ``stations``): ``wgs84``, ``gcj02``, ``bd09`` …
    tz : str
        The zone of naive times.
    units : mapping, optional
        Per input, canonical column -> the unit the source uses
        (``{"transactions": {"litres": "gal"}}``), converted on reading.
    crs : mapping, optional
        Per input (``"*"`` for all), the CRS of a layer that carries none.
    crs_hint : str, optional
        How the user declares a missing CRS, with ``{input}`` for the input's name,
        named in the error (e.g. ``"--input-crs {input}=EPSG:<code>"``).

    Returns
    -------
    dict of str to ReadResult
        Each named after its input (the ledger's ``source``).
    """
    out: dict[str, ReadResult] = {}
    for name in INPUT_NAMES:
        if name not in paths or paths[name] is None:
            continue
        spec = dict(INPUT_SPECS[name])
        declared = (crs or {}).get(name, (crs or {}).get("*"))
        out[name] = read_table(
            paths[name], name=name, columns=dict((columns or {}).get(name, {})) or None,
            combine_columns=dict((combine_columns or {}).get(name, {})) or None,
            coord_system=(coord_systems or {}).get(name, "wgs84"), tz=tz,
            units=dict((units or {}).get(name, {})) or None,
            default_crs=None if spec.get("geometry") == "none" else declared,
            crs_hint=crs_hint.format(input=name) if crs_hint else None,
            required=spec.pop("required"), **spec)
    return out


@dataclass
class FuelInputs:
    """The demo city's fuel inputs on disk and the injected truth.

    Attributes
    ----------
    folder : Path
    paths : dict of str to Path
        ``fixes`` (GeoParquet), ``transactions`` (WEX-style CSV), ``stations`` (GeoJSON in
        GCJ-02), ``vehicles``, ``cards`` (CSV), ``roads`` (GeoJSON).
    truth : DataFrame
        ``rule, subject_id, subject_type, case``: every alert the audit must raise.
    transactions : DataFrame
        The simulated transactions with their case (``""`` for a legitimate fill).
    columns, combine_columns, coord_systems : dict
        How to read the files (arguments of :func:`read_fuel_inputs`).
    stations : GeoDataFrame
        The stations in WGS-84 (their true positions).
    roads : GeoDataFrame
        The road network in the metric CRS.
    """

    folder: Path
    paths: dict[str, Path]
    truth: pd.DataFrame
    transactions: pd.DataFrame
    stations: gpd.GeoDataFrame
    roads: gpd.GeoDataFrame
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    combine_columns: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    coord_systems: dict[str, str] = field(default_factory=dict)

    def read(self, *, tz: str = _TZ) -> dict[str, ReadResult]:
        """Read the files back (:func:`read_fuel_inputs` with this demo's mapping)."""
        return read_fuel_inputs(self.paths, columns=self.columns,
                                combine_columns=self.combine_columns,
                                coord_systems=self.coord_systems, tz=tz)


def make_fuel_inputs(folder: str | Path, *, seed: int = 20241001,
                     settings: Settings | None = None) -> FuelInputs:
    """Write the demo city's fuel inputs into ``folder`` and return them with the truth.

    Deterministic for a given ``seed``. ``settings`` only matters for the truth of the
    distance-based rules (their thresholds).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sim, fleet = _simulate(seed)
    city = sim.city
    to_wgs = pyproj.Transformer.from_crs(city.crs, 4326, always_xy=True)

    # Fixes: GeoParquet, with three exact duplicates and one fix at (0, 0) as bad input.
    parts = [_sample_fixes(sim, v) for v in fleet if v.tracker]
    fixes = pd.concat(parts, ignore_index=True)
    lon, lat = to_wgs.transform(fixes["x"].to_numpy(), fixes["y"].to_numpy())
    time = pd.to_datetime(np.round(fixes["t"].to_numpy()).astype("int64"), unit="s", utc=True)
    frame = pd.DataFrame({"vehicle_id": fixes["vehicle_id"], "time": time,
                          "speed_kmh": fixes["speed_kmh"], "ignition": fixes["ignition"],
                          "lon": lon, "lat": lat})
    bad = frame.iloc[sim.rng.choice(len(frame), 4, replace=False)].copy()
    bad.iloc[3, bad.columns.get_loc("lon")] = 0.0
    bad.iloc[3, bad.columns.get_loc("lat")] = 0.0
    bad.iloc[3, bad.columns.get_loc("time")] += pd.Timedelta(seconds=7)
    frame = pd.concat([frame, bad], ignore_index=True).sort_values(
        ["vehicle_id", "time"], kind="stable").reset_index(drop=True)
    points = gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"]),
                              geometry=gpd.points_from_xy(frame["lon"], frame["lat"]), crs=4326)
    paths = {name: folder / file for name, file in (
        ("fixes", "fixes.parquet"), ("transactions", "transactions.csv"),
        ("stations", "stations.geojson"), ("vehicles", "vehicles.csv"), ("cards", "cards.csv"),
        ("roads", "roads.geojson"))}
    points.to_parquet(paths["fixes"])

    # Stations: their true (WGS-84) positions, written in GCJ-02 as Amap publishes them.
    st = city.stations
    s_lon, s_lat = to_wgs.transform(st["x"].to_numpy(), st["y"].to_numpy())
    stations = gpd.GeoDataFrame(
        {"station_id": st["station_id"], "name": st["name"], "brand": st["brand"]},
        geometry=gpd.points_from_xy(s_lon, s_lat), crs=4326)
    g_lon, g_lat = wgs84_to_gcj02(s_lon, s_lat)
    stations.set_geometry(gpd.points_from_xy(g_lon, g_lat, crs=4326)).to_file(
        paths["stations"], driver="GeoJSON")
    city.roads.to_crs(4326).to_file(paths["roads"], driver="GeoJSON")

    # Vehicles and cards.
    vehicles = pd.DataFrame({
        "vehicle_id": [v.vehicle_id for v in fleet], "plate": [v.plate for v in fleet],
        "unit": [v.unit for v in fleet], "fuel_type": [v.fuel_type for v in fleet],
        "tank_l": [v.tank_l for v in fleet], "rated_l_per_100km": [v.rated for v in fleet],
        "status": [v.status for v in fleet],
        "active_from": [f"{2016 + v.index % 7}-0{1 + v.index % 9}-15" for v in fleet],
        "active_to": [v.active_to for v in fleet]})
    vehicles.to_csv(paths["vehicles"], index=False)
    n = len(fleet)
    cards = pd.DataFrame({
        "card_id": [v.card_id for v in fleet] + [f"7100{n + 1:04d}"],
        "vehicle_id": [v.vehicle_id for v in fleet] + [f"HF-V{n + 1:03d}"],
        "unit": [v.unit for v in fleet] + [fleet[5].unit],
        "holder": [f"Driver {v.index + 1:02d}" for v in fleet] + ["Driver 41"]})
    cards.to_csv(paths["cards"], index=False)

    # Transactions: a WEX-style export (its own column names, US dates, local wall time).
    tx = pd.DataFrame(sim.transactions).sort_values("t", kind="stable").reset_index(drop=True)
    tx["tx_id"] = [f"87{k + 1:08d}" for k in range(len(tx))]
    tx["vehicle_id"] = [fleet[i].vehicle_id for i in tx["vehicle"]]
    tx["vehicle_case"] = [fleet[i].case for i in tx["vehicle"]]
    tx["tracker"] = [fleet[i].tracker for i in tx["vehicle"]]
    tx["rated"] = [fleet[i].rated for i in tx["vehicle"]]
    tx["metres"] = [float(fleet[i].tl.metres_at(t)) for i, t in zip(tx["vehicle"], tx["t"],
                                                                     strict=True)]
    local = pd.to_datetime(np.floor(tx["t"].to_numpy()).astype("int64"), unit="s",
                           utc=True).tz_convert(_TZ)
    names = st.set_index("station_id")["name"]
    odometer = tx["odometer"].round().astype("Int64").astype("string").fillna("")
    export = pd.DataFrame({
        "Transaction Id": tx["tx_id"], "Card Number ID": tx["card_id"],
        "Department": tx["unit"], "Transaction Date": local.strftime("%m/%d/%Y"),
        "Transaction Time": local.strftime("%H:%M:%S"), "Merchant Site ID": tx["station_id"],
        "Merchant Name": tx["station_id"].map(names).fillna("Unknown merchant"),
        "Merchant City": "合肥市", "Product Class": tx["product"], "Units": tx["litres"],
        "Unit of Measure": np.where(tx["product"] == "Non-Fuel", "EA", "L"),
        "Unit Cost": tx["price"], "Net Cost": (tx["litres"] * tx["price"]).round(2),
        "Current Odometer": odometer})
    export.to_csv(paths["transactions"], index=False)
    usable = tx[~tx["case"].str.startswith("bad:")].reset_index(drop=True)
    return FuelInputs(
        folder=folder, paths=paths, truth=_truth(usable, settings), transactions=tx,
        stations=stations, roads=city.roads,
        columns={"transactions": dict(TRANSACTION_COLUMNS)},
        combine_columns={"transactions": {"time": list(TRANSACTION_TIME_COLUMNS)}},
        coord_systems={"stations": "gcj02"})


# ---------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------


@scenario("fuel")
def fuel_scenario(store: Store, folder: Path, settings: Settings) -> ScenarioResult:
    """Build the fuel inputs in ``folder/fuel``, audit them, store everything in one run."""
    from trajectories.audit import audit

    inputs = make_fuel_inputs(Path(folder) / "fuel", settings=settings)
    read = inputs.read(tz=_TZ)  # the export's wall times are Hefei's, whatever the settings
    result = audit(read["fixes"], read["transactions"], read["stations"], read["vehicles"],
                   read["cards"], settings=settings, tz=_TZ)
    described = [describe_input(inputs.paths[name], name=name) for name in INPUT_NAMES]
    with store.run("demo fuel", inputs=described, params={"seed": 20241001}) as run:
        run.write_alerts(result.alerts)
        run.add_rejects(result.rejects)
        for source, c in result.counts.items():
            run.record_input(source, rows_in=c["rows_in"], rows_used=c["rows_used"],
                             rows_rejected=c["rows_rejected"])
        run.write_layer("fuel_stations", inputs.stations, id_column="station_id")
        run.write_layer("fuel_roads", inputs.roads.to_crs(4326), id_column="road_id")
    log.info("fuel demo: %d alerts, %d injected (rule, subject) pairs", len(result.alerts),
             len(inputs.truth))
    return ScenarioResult(name="fuel", inputs=result.counts,
                          truth=inputs.truth[["rule", "subject_id"]], alerts=len(result.alerts))
