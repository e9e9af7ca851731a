"""Synthetic alert tables for tests and benchmarks of the review map.

Examples
--------
>>> alerts = synthetic_alerts(1000)
>>> len(alerts), sorted(alerts.geom_type.unique())
(1000, ['Point', 'Polygon'])
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosup.alerts import make_alerts

__all__ = ["synthetic_alerts"]

LON0, LAT0 = 104.06, 30.66  # a city of about 60 x 60 km

FUEL = [("fuel.away_from_station", "high"), ("fuel.over_tank_capacity", "critical"),
        ("fuel.off_hours", "medium"), ("fuel.weekend_fill", "low"),
        ("fuel.excess_consumption", "high"), ("fuel.no_movement", "medium")]
FARM = [("farmland.over_declared", "high"), ("farmland.double_claim", "critical"),
        ("farmland.non_farm_land", "medium")]


def synthetic_alerts(n: int, *, share_points: float = 0.8, seed: int = 1) -> gpd.GeoDataFrame:
    """``n`` alerts: points (fuel) and small parcel polygons (farmland)."""
    rng = np.random.default_rng(seed)
    n_pt = round(n * share_points)
    n_pg = n - n_pt
    units = np.array([f"Unit {i:03d}" for i in range(300)], dtype=object)
    villages = np.array([f"Village {i:03d}" for i in range(800)], dtype=object)
    # Points: clustered around 400 "stations" plus scatter.
    centres = rng.uniform([LON0 - 0.3, LAT0 - 0.3], [LON0 + 0.3, LAT0 + 0.3], size=(400, 2))
    pick = rng.integers(0, 400, n_pt)
    xy = centres[pick] + rng.normal(0, 0.004, size=(n_pt, 2))
    rule_i = rng.integers(0, len(FUEL), n_pt)
    litres = np.round(rng.uniform(20, 140, n_pt), 1)
    tank = np.round(rng.choice([45.0, 55.0, 60.0, 70.0, 80.0], n_pt), 0)
    dist = np.round(rng.gamma(2.0, 900.0, n_pt), 1)
    card = np.array([f"C-{i:06d}" for i in rng.integers(0, 21061, n_pt)], dtype=object)
    pts = pd.DataFrame({
        "rule": np.array([FUEL[i][0] for i in rule_i], dtype=object),
        "severity": np.array([FUEL[i][1] for i in rule_i], dtype=object),
        "subject_type": "transaction",
        "subject_id": [f"T-{i:08d}" for i in range(n_pt)],
        "unit": units[rng.integers(0, len(units), n_pt)],
        "period": "2026-03",
        "observed_at": pd.Timestamp("2026-03-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 31 * 86400, n_pt), unit="s"),
        "amount_at_risk": np.round(litres * 7.9, 2),
        "score": np.round(rng.uniform(0, 1, n_pt), 3),
        "title": np.array(["Card swiped away from the vehicle's track",
                           "Fill above tank capacity", "Fill outside working hours",
                           "Weekend fill", "Fuel bought beyond what the kilometres explain",
                           "Card used for a vehicle with no movement"], dtype=object)[rule_i],
    })
    pts["detail"] = ("card " + pd.Series(card) + " filled " + pd.Series(litres).astype(str)
                     + " L; the vehicle's nearest GPS fix was " + pd.Series(dist).astype(str)
                     + " m from the station (threshold 500 m); tank " + pd.Series(tank)
                     .astype(str) + " L")
    pts["evidence"] = [
        {"card_id": c, "litres": li, "tank_l": t, "distance_m": d, "station_id": f"S{p:04d}",
         "fix_ids": [int(p) * 10 + 1, int(p) * 10 + 2],
         "thresholds": {"max_distance_m": 500, "tank_tolerance": 1.05}}
        for c, li, t, d, p in zip(card, litres, tank, dist, pick, strict=True)]
    pts_geom = shapely.points(xy)
    # Polygons: small jittered quadrilaterals (about 60 x 40 m), 5 vertices each.
    c = rng.uniform([LON0 - 0.3, LAT0 - 0.3], [LON0 + 0.3, LAT0 + 0.3], size=(n_pg, 2))
    w, h = rng.uniform(0.0004, 0.0008, n_pg), rng.uniform(0.0003, 0.0005, n_pg)
    corners = np.stack([c + np.c_[-w, -h], c + np.c_[w, -h], c + np.c_[w, h], c + np.c_[-w, h]],
                       axis=1) + rng.normal(0, 0.00003, size=(n_pg, 4, 2))
    pg_geom = shapely.polygons(corners)
    rule_j = rng.integers(0, len(FARM), n_pg)
    declared = np.round(rng.uniform(2, 30, n_pg), 2)
    eligible = np.round(declared * rng.uniform(0.5, 0.95, n_pg), 2)
    pgs = pd.DataFrame({
        "rule": np.array([FARM[i][0] for i in rule_j], dtype=object),
        "severity": np.array([FARM[i][1] for i in rule_j], dtype=object),
        "subject_type": "declaration",
        "subject_id": [f"D-{i:08d}" for i in range(n_pg)],
        "unit": villages[rng.integers(0, len(villages), n_pg)],
        "period": "2025",
        "observed_at": pd.Timestamp("2025-06-30", tz="UTC"),
        "amount_at_risk": np.round((declared - eligible) * 120.0, 2),
        "score": np.round(rng.uniform(0, 1, n_pg), 3),
        "title": np.array(["Declared area above the eligible area found",
                           "The same land claimed twice", "Claim on non-farm land"],
                          dtype=object)[rule_j],
    })
    pgs["detail"] = ("declared " + pd.Series(declared).astype(str) + " mu on reference parcel "
                     + pd.Series([f"P{i:07d}" for i in range(n_pg)]) + "; eligible area found "
                     + pd.Series(eligible).astype(str) + " mu; tolerance 0.5 mu")
    pgs["evidence"] = [
        {"declared_area": d, "eligible_found_area": e, "area_unit": "mu",
         "parcel_ids": [f"P{i:07d}"], "thresholds": {"buffer_m": 1.5, "cap_m2": 10000}}
        for i, (d, e) in enumerate(zip(declared, eligible, strict=True))]
    table = pd.concat([pts, pgs], ignore_index=True)
    geometry = np.concatenate([pts_geom, pg_geom])
    return make_alerts(gpd.GeoDataFrame(table, geometry=geometry, crs=4326))
