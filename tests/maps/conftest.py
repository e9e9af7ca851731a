"""Alerts for the review-map tests: real geometries, hostile strings, every geometry kind.

Parcels come from the Dutch reference parcels and points from a Liverpool bus track in
``../shared/data`` (the ``shared_data`` fixture skips when that folder is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from folium.utilities import write_png

from geosup.alerts import make_alerts
from geosup.rules import Registry
from tests.maps.map_payloads import (
    CHINESE,
    IMG,
    OTHER_RULE,
    PARCEL_RULE,
    POINT_RULE,
    SCRIPT,
    TEMPLATE,
)


@pytest.fixture
def registry() -> Registry:
    """A rule registry with titles in both languages (one of them hostile)."""
    reg = Registry()
    reg.rule(POINT_RULE, title="Bus fill " + IMG, title_zh="公交加油 " + IMG)(lambda: None)
    reg.rule(PARCEL_RULE, title="Parcel over-declared", title_zh="地块超报")(lambda: None)
    return reg


@pytest.fixture(scope="session")
def parcels(shared_data: Path) -> gpd.GeoDataFrame:
    """100 real reference parcels (EPSG:4326), with a ``parcel_id``."""
    frame = gpd.read_file(shared_data / "parcels/reference/nl/referentiepercelen.gpkg")
    frame = frame.to_crs(4326).reset_index(drop=True)
    frame.insert(0, "parcel_id", [f"NL-{i:03d}" for i in range(len(frame))])
    return frame


@pytest.fixture(scope="session")
def bus_fixes(shared_data: Path) -> gpd.GeoDataFrame:
    """A real bus track (Liverpool route 14), EPSG:4326."""
    table = pd.read_csv(shared_data / "trajectories/liverpool_bus_route14_outbound_2026-01-26.csv")
    table = table.dropna(subset=["longitude", "latitude"]).reset_index(drop=True)
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["longitude"],
                                                                table["latitude"]), crs=4326)


def png_chip(path: Path, colour: tuple[int, int, int]) -> Path:
    """Write a small RGB PNG."""
    data = np.zeros((16, 16, 3), dtype=np.uint8)
    data[...] = colour
    data[4:12, 4:12] = 255
    path.write_bytes(write_png(data))
    return path


@pytest.fixture
def payload_alerts(parcels: gpd.GeoDataFrame, bus_fixes: gpd.GeoDataFrame,
                   tmp_path: Path) -> gpd.GeoDataFrame:
    """An alert table of every kind, with hostile strings everywhere a user can write.

    - 30 point alerts on the bus track (``POINT_RULE``), one isolated far away;
    - 20 parcel alerts (``PARCEL_RULE``) whose evidence names other parcels and WKT;
    - 1 fuel alert whose geometry is a station point + track line collection;
    - 1 requisition alert with before/after PNG chips, 1 with a fake chip;
    - 2 alerts without geometry (missing and empty), 1 line, 1 multipoint.
    """
    fixes = bus_fixes.iloc[np.linspace(0, len(bus_fixes) - 1, 30).astype(int)]
    pts = list(fixes.geometry)
    pts[-1] = shapely.Point(-2.60, 53.60)  # isolated: unclustered at any zoom
    n_pt = len(pts)
    rows = []
    for k, geom in enumerate(pts):
        rows.append({
            "rule": POINT_RULE, "subject_type": "card",
            "subject_id": f"C-{k}" if k else SCRIPT, "unit": IMG if k % 2 else CHINESE,
            "period": "2026-01", "severity": ["low", "medium", "high", "critical"][k % 4],
            "score": k / n_pt, "amount_at_risk": 10.0 * k,
            "observed_at": pd.Timestamp("2026-01-26 15:57:02", tz="UTC")
            + pd.Timedelta(minutes=k),
            "title": (TEMPLATE if k == n_pt - 1 else f"Fill {k} " + IMG),
            "detail": "litres 80.5 above tank 60 L (threshold 66 L) " + SCRIPT,
            "evidence": {"litres": 80.5, "tank_l": 60, "thresholds": {"max_share": 1.1},
                         IMG: TEMPLATE, "note": CHINESE},
            "geometry": geom})
    for k in range(20):
        geom = parcels.geometry.iloc[k]
        rows.append({
            "rule": PARCEL_RULE, "subject_type": "declaration",
            "subject_id": f"D-{k} " + TEMPLATE, "unit": "village " + ("A" if k % 2 else "B"),
            "period": "2025", "severity": "high", "score": 0.5, "amount_at_risk": 100.0,
            "title": "Parcel " + IMG, "detail": CHINESE,
            "evidence": {"declared_area": 12.5, "eligible_area": 10.0,
                         "parcel_ids": [parcels["parcel_id"].iloc[k + 20]],
                         "overlap_wkt": shapely.to_wkt(shapely.buffer(
                             shapely.centroid(geom), 0.0003)),
                         "thresholds": {"tolerance_m2": 50}},
            "geometry": geom})
    track = shapely.LineString(list(zip(bus_fixes["longitude"][:40], bus_fixes["latitude"][:40],
                                        strict=True)))
    station = shapely.Point(bus_fixes["longitude"].iloc[20] + 0.002,
                            bus_fixes["latitude"].iloc[20])
    rows.append({"rule": "fuel.collection", "subject_type": "transaction", "subject_id": "T-1",
                 "unit": "depot", "severity": "critical", "title": "Card away " + SCRIPT,
                 "evidence": {"nearest_lon": float(bus_fixes["longitude"].iloc[20]),
                              "nearest_lat": float(bus_fixes["latitude"].iloc[20]),
                              "distance_m": 140.2},
                 "geometry": shapely.GeometryCollection([station, track])})
    before = png_chip(tmp_path / "before.png", (200, 30, 30))
    after = png_chip(tmp_path / "after.png", (30, 30, 200))
    secret = tmp_path / "secret.png"
    secret.write_text("TOP-SECRET not an image", encoding="utf-8")
    box = shapely.box(-2.95, 53.40, -2.94, 53.41)
    rows.append({"rule": "requisition.built_after_notice", "subject_type": "claim",
                 "subject_id": "K-1", "unit": "project 7", "severity": "medium",
                 "title": "Greenhouse after the notice date",
                 "evidence": {"chip_before": str(before), "chip_after": after.name,
                              "chip_bounds": [-2.95, 53.40, -2.94, 53.41]},
                 "geometry": box})
    rows.append({"rule": "requisition.built_after_notice", "subject_type": "claim",
                 "subject_id": "K-2", "unit": "project 7", "severity": "low",
                 "title": "Fake chip", "evidence": {"chip_before": str(secret)},
                 "geometry": shapely.box(-2.93, 53.40, -2.92, 53.41)})
    rows.append({"rule": OTHER_RULE, "subject_type": "x", "subject_id": "no-geom-1",
                 "unit": "village A", "severity": "low", "amount_at_risk": 7.0,
                 "title": "No geometry", "geometry": None})
    rows.append({"rule": OTHER_RULE, "subject_type": "x", "subject_id": "no-geom-2",
                 "unit": "village A", "severity": "low", "amount_at_risk": 3.0,
                 "title": "Empty geometry", "geometry": shapely.Polygon()})
    rows.append({"rule": OTHER_RULE, "subject_type": "x", "subject_id": "line",
                 "severity": "medium", "title": "A line", "geometry": track})
    rows.append({"rule": OTHER_RULE, "subject_type": "x", "subject_id": "multi",
                 "severity": "medium", "title": "Two points",
                 "geometry": shapely.MultiPoint([(-2.96, 53.42), (-2.97, 53.43)])})
    frame = pd.DataFrame(rows)
    frame["evidence"] = [json.dumps(e, ensure_ascii=False) if isinstance(e, dict) else "{}"
                         for e in frame["evidence"]]
    hits = gpd.GeoDataFrame(frame.drop(columns="geometry"),
                            geometry=gpd.GeoSeries(frame["geometry"], crs=4326), crs=4326)
    alerts = make_alerts(hits)
    alerts.loc[1, "status"] = "dismissed"
    alerts.loc[1, "status_note"] = "reviewed: " + IMG
    alerts.loc[1, "status_by"] = SCRIPT
    alerts.loc[1, "status_at"] = pd.Timestamp("2026-02-01 09:30", tz="UTC")
    return alerts
