"""The public test helpers in geosup.testing."""

from __future__ import annotations

import json

import geopandas as gpd
import psycopg
import pytest
import shapely

from geosup.alerts import make_alerts
from geosup.testing import assert_same_alerts


def _alerts() -> gpd.GeoDataFrame:
    hits = gpd.GeoDataFrame({
        "rule": ["fuel.off_hours", "fuel.rapid_refill"], "subject_type": "transaction",
        "subject_id": ["T1", "T2"], "unit": "Motor pool", "period": "2026-03",
        "severity": ["low", "medium"], "score": [0.4, 0.7], "title": ["a", "b"],
        "detail": ["a.", "b."], "evidence": [{"hour": 23}, {"gap_h": 1.5}]},
        geometry=[shapely.Point(117.2, 31.8), shapely.Point(117.3, 31.9)], crs=4326)
    return make_alerts(hits)


def test_same_alerts_in_any_order_pass() -> None:
    alerts = _alerts()
    assert_same_alerts(alerts, alerts.iloc[::-1])


@pytest.mark.parametrize("change", ["evidence", "geometry", "score", "missing"])
def test_a_difference_fails(change: str) -> None:
    alerts = _alerts()
    other = alerts.copy()
    if change == "evidence":
        other.loc[0, "evidence"] = json.dumps({"hour": 22})
    elif change == "geometry":
        other.loc[0, "geometry"] = shapely.Point(117.2, 31.80001)
    elif change == "score":
        other.loc[1, "score"] = 0.71
    else:
        other = other.iloc[:1]
    with pytest.raises(AssertionError):
        assert_same_alerts(alerts, other)


def test_throwaway_server_serves_postgis(postgis_server: str) -> None:
    with psycopg.connect(f"{postgis_server}/geosup_template") as conn:
        version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
    assert version.startswith("3.")
