"""The requisition demo: a synthetic orthophoto series with known misuse, and its scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosup.config import Settings
from geosup.demo import SCENARIOS, _load_scenarios, precision_recall
from geosup.store import open_store
from imagery.catalog import read_acquisition_date
from imagery.demo import DATES, NOTICE_DATE, build_demo, requisition_scenario
from imagery.rules import REQUISITION_RULES


@pytest.fixture(scope="module")
def demo():
    return build_demo()


def test_scene_is_a_village_orthophoto_series(demo):
    assert demo.before.dtype == np.uint8 and demo.after.dtype == np.uint16
    h, w = demo.before.shape[1:]
    assert demo.transform.a == 0.5 and 2.0e6 < h * w * 0.25 < 3.0e6  # about 2.2 km²
    assert demo.claims.crs.to_epsg() == 4548
    lon, lat = demo.claims.dropna(subset=["geometry"]).to_crs(4490).union_all().centroid.coords[0]
    assert 117.3 < lon < 117.6 and 31.7 < lat < 31.95  # east of Hefei
    # every rule has injected cases, honest claims dominate
    assert set(demo.truth["rule"]) == set(REQUISITION_RULES)
    assert demo.truth["subject_id"].nunique() < len(demo.claims) / 2
    assert demo.persons["person_id"].is_unique
    assert (demo.after[:, :, -10:] == 0).all()  # the nodata strip of the June image


def test_scenario_reaches_full_precision_and_recall(tmp_path):
    _load_scenarios()
    assert SCENARIOS["requisition"] is requisition_scenario
    with open_store(tmp_path / "geosup.gpkg") as st:
        result = requisition_scenario(st, tmp_path, Settings())
        alerts = st.alerts(domain="requisition")
        runs = st.runs()
        rejects = st.rejects()
        layers = set(st.layers()["name"])
    scores = precision_recall(alerts, result.truth)
    print(scores.to_string())
    assert set(scores["rule"]) == set(REQUISITION_RULES)
    assert (scores["precision"] == 1.0).all() and (scores["recall"] == 1.0).all()
    assert result.name == "requisition" and result.alerts == len(alerts)
    c = result.inputs["claims"]
    assert c["rows_rejected"] == 4 and c["rows_in"] == c["rows_used"] + 4
    assert len(runs) == 1 and json.loads(runs["counts"].iloc[0])["inconclusive"] == 1
    assert set(rejects["reason"]) >= {"outside every image", "unknown project 'P-1999-01' "
                                      "(not in the projects)"}
    assert {"claims", "projects", "persons", "images"} <= layers
    # files: dates in the metadata, never in the names; chips relative to the demo folder
    root = tmp_path / "requisition"
    days = sorted(read_acquisition_date(p) for p in root.glob("ortho_*.tif"))
    assert days == sorted(DATES.values()) and days[1] < NOTICE_DATE < days[2]
    with rasterio.open(root / "ortho_summer.tif") as ds:
        assert ds.block_shapes[0] == (512, 512) and ds.dtypes[0] == "uint16"
    built = alerts.loc[alerts["rule"] == "requisition.built_after_notice"]
    ev = json.loads(built["evidence"].iloc[0])
    assert not Path(ev["chip_before"]).is_absolute()
    assert (tmp_path / ev["chip_before"]).read_bytes()[:4] == b"\x89PNG"
    assert ev["before_date"] == "2024-02-20" and ev["after_date"] == "2024-06-08"
