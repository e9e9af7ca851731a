"""The alert table: ids, validation, severities and the review workflow."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geosup.alerts import (
    ALERT_COLUMNS,
    STATUSES,
    TRANSITIONS,
    alert_id,
    alert_ids,
    check_transition,
    empty_alerts,
    evidence_json,
    make_alerts,
    severity_rank,
)
from geosup.errors import GeosupError, SchemaError, TransitionError, ValidationError


def _hits(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({
        "rule": ["farmland.over_declared"] * n,
        "subject_type": ["declaration"] * n,
        "subject_id": [f"D{i}" for i in range(n)],
        "period": ["2025"] * n,
        "severity": ["high", "low", "critical"][:n],
        "score": [0.9, 0.1, 1.0][:n],
        "amount_at_risk": [1200.5, np.nan, 0.0][:n],
        "evidence": [{"declared_m2": 1000.0 + i, "threshold": 0.03, "nan": np.nan}
                     for i in range(n)],
    })


def test_ids_are_deterministic_and_depend_on_every_part():
    a = alert_id("fuel.off_hours", "transaction", "T1", "2026-03")
    assert a == alert_id("fuel.off_hours", "transaction", "T1", "2026-03")
    assert len(a) == 20 and int(a, 16) >= 0
    others = {alert_id("fuel.rapid_refill", "transaction", "T1", "2026-03"),
              alert_id("fuel.off_hours", "card", "T1", "2026-03"),
              alert_id("fuel.off_hours", "transaction", "T2", "2026-03"),
              alert_id("fuel.off_hours", "transaction", "T1", "2026-04")}
    assert a not in others and len(others) == 4
    # separators cannot be forged by shifting text between the parts
    assert alert_id("a.b", "c", "d|e", "") != alert_id("a.b", "c|d", "e", "")
    vec = alert_ids(["fuel.off_hours"], ["transaction"], ["T1"], ["2026-03"])
    assert vec[0] == a


def test_make_alerts_fills_schema_and_moves_geometry_to_wgs84(shared_data):
    parcels = gpd.read_file(shared_data / "parcels/reference/nl/referentiepercelen.gpkg").head(3)
    hits = gpd.GeoDataFrame(_hits(), geometry=parcels.geometry.to_numpy(), crs=parcels.crs)
    alerts = make_alerts(hits, run_id="r1")
    assert tuple(alerts.columns) == ALERT_COLUMNS
    assert alerts.crs.to_epsg() == 4326
    assert (alerts["domain"] == "farmland").all()
    assert (alerts["status"] == "open").all()
    assert alerts["observed_at"].dt.tz is not None
    # the geometry is the same land, now in lon/lat (the Netherlands)
    back = alerts.to_crs(parcels.crs)
    assert np.allclose(back.area.to_numpy(), parcels.area.to_numpy(), rtol=1e-6)
    minx, miny, maxx, maxy = alerts.total_bounds
    assert 3 < minx < maxx < 8 and 50 < miny < maxy < 54
    ev = json.loads(alerts.loc[0, "evidence"])
    assert ev == {"declared_m2": 1000.0, "nan": None, "threshold": 0.03}


def test_make_alerts_rejects_bad_values():
    with pytest.raises(SchemaError, match="subject_id"):
        make_alerts(pd.DataFrame({"rule": ["fuel.x"], "subject_type": ["card"]}))
    bad = _hits(1)
    bad["severity"] = "urgent"
    with pytest.raises(ValidationError, match="unknown severity 'urgent'"):
        make_alerts(bad)
    bad = _hits(1)
    bad["score"] = 1.5
    with pytest.raises(ValidationError, match="0–1"):
        make_alerts(bad)
    twice = pd.concat([_hits(1), _hits(1)])
    with pytest.raises(ValidationError, match="once per period"):
        make_alerts(twice)
    nocrs = gpd.GeoDataFrame(_hits(1), geometry=[shapely.Point(1, 2)])
    with pytest.raises(ValidationError, match="coordinate reference system"):
        make_alerts(nocrs)
    with pytest.raises(ValidationError):
        evidence_json("{not json")
    assert issubclass(ValidationError, ValueError) and issubclass(ValidationError, GeosupError)


def test_empty_alerts_has_every_column():
    empty = empty_alerts()
    assert tuple(empty.columns) == ALERT_COLUMNS and len(empty) == 0
    assert empty.crs.to_epsg() == 4326


def test_severity_rank_orders_severities():
    assert severity_rank(["low", "critical", "medium", "high", "bogus"]).tolist() == \
        [0, 3, 1, 2, -1]


@pytest.mark.parametrize("current", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_every_transition_is_allowed_or_refused_with_a_reason(current, new):
    if new in TRANSITIONS[current]:
        check_transition(current, new)
    else:
        with pytest.raises(TransitionError) as err:
            check_transition(current, new)
        assert current in str(err.value)


def test_workflow_reaches_every_status_from_open():
    seen, todo = {"open"}, ["open"]
    while todo:
        for nxt in TRANSITIONS[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(STATUSES)
    with pytest.raises(TransitionError, match="unknown status"):
        check_transition("open", "closed")
