"""The farmland demo: a realistic landscape, misuse for every rule, known truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import shapely

from geosup.config import Settings
from geosup.demo import SCENARIOS, precision_recall
from geosup.farmland.demo import COLUMNS, build_demo, farmland_scenario
from geosup.farmland.rules import FARMLAND_RULES
from geosup.store import open_store


@pytest.fixture(scope="module")
def demo():
    return build_demo()


def test_landscape_is_a_village_landscape_near_hefei(demo):
    parcels = demo.parcels
    assert parcels.crs.to_epsg() == 4548
    assert 450 <= len(parcels) <= 650
    assert parcels["parcel_id"].str.fullmatch(r"340123101\d{10}").all()
    assert parcels.is_valid.all() and parcels["parcel_id"].is_unique
    lon, lat = parcels.to_crs(4490).union_all().centroid.coords[0]
    assert 116.9 < lon < 117.3 and 31.6 < lat < 31.9  # Feixi county, west of Hefei
    geoms = parcels.geometry.to_numpy()
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    mask = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[mask]], geoms[right[mask]]))
    assert overlap.max(initial=0.0) < 0.5  # fields tile the land, they do not overlap
    # irregular fields of a few mu, not a grid of equal squares
    mu = parcels.area / (10000 / 15)
    assert 1.0 < mu.median() < 8.0 and mu.std() > 0.5
    assert len(np.unique(shapely.get_num_coordinates(geoms))) > 5
    # eligible (contract) area at or a little below the drawn area
    ratio = parcels["eligible_area"] / mu
    assert (ratio <= 1.0 + 1e-9).all() and (ratio < 0.99).mean() > 0.2
    classes = set(demo.land_use["land_use"])
    assert {"建设用地", "坑塘水面", "林地", "农村道路", "公路用地", "耕地"} <= classes
    assert demo.declarations["applicant_id"].nunique() == 120
    assert set(demo.declarations["year"]) == {2025}
    assert set(demo.previous["year"]) == {2023, 2024}
    by_id = demo.declarations.geometry.isna().mean()
    assert 0.4 < by_id < 0.9  # most by parcel code, some drawn


def test_truth_covers_every_rule(demo):
    counts = demo.truth.groupby("rule").size()
    assert set(counts.index) == set(FARMLAND_RULES)
    assert (counts >= 3).all()
    assert demo.truth[["rule", "subject_id"]].duplicated().sum() == 0


def test_demo_is_deterministic(demo):
    again = build_demo()
    pd.testing.assert_frame_equal(again.truth, demo.truth)
    assert shapely.equals_exact(again.parcels.geometry.to_numpy(),
                                demo.parcels.geometry.to_numpy(), 0.0).all()
    pd.testing.assert_frame_equal(again.declarations.drop(columns="geometry"),
                                  demo.declarations.drop(columns="geometry"))
    other = build_demo(seed=1)
    assert not other.truth["subject_id"].equals(demo.truth["subject_id"])


@pytest.mark.parametrize("seed", [20250, 3])
def test_demo_precision_and_recall_are_one_for_every_rule(tmp_path, seed, monkeypatch):
    import geosup.farmland.demo as module

    if seed != 20250:
        original = module.build_demo
        monkeypatch.setattr(module, "build_demo", lambda: original(seed=seed))
    with open_store(tmp_path / "geosup.gpkg") as store:
        result = farmland_scenario(store, tmp_path, Settings())
        alerts = store.alerts()
        runs = store.runs()
        rejects = store.rejects()
        layers = set(store.layers()["name"])
    scores = precision_recall(alerts, result.truth)
    assert set(scores["rule"]) == set(FARMLAND_RULES)
    assert (scores["precision"] == 1.0).all(), scores
    assert (scores["recall"] == 1.0).all(), scores
    assert result.alerts == len(alerts) == len(result.truth)
    # inputs: rows in = used + rejected, and the unusable rows are in the ledger
    for name, c in result.inputs.items():
        assert c["rows_in"] == c["rows_used"] + c["rows_rejected"], name
    assert result.inputs["declarations"]["rows_rejected"] == 3
    assert result.inputs["persons"]["rows_rejected"] == 1
    assert len(rejects) == 4
    counts = json.loads(runs["counts"].iloc[-1])
    assert counts["inputs"]["declarations"] == result.inputs["declarations"]
    assert {"declarations", "previous", "parcels", "land_use", "persons"} <= layers
    # the files use the source column names and the mapping is written beside them
    folder = tmp_path / "farmland"
    assert (folder / "geosup.toml").read_text(encoding="utf-8").count("申报编号") == 2
    header = (folder / "persons.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.split(",")[0] == COLUMNS["persons"]["person_id"]


def test_scenario_is_registered():
    assert SCENARIOS.get("farmland") is farmland_scenario
