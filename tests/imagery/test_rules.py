"""The requisition rules at their thresholds: pure functions of the claims table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from geosup.config import Settings
from geosup.rules import REGISTRY, resolve_thresholds, rules_table
from imagery.rules import (
    ITEMS,
    REQUISITION_RULES,
    RuleContext,
    built_after_notice,
    claimed_not_seen,
    deceased_claimant,
    moved_in_after_notice,
    normalize_items,
    planted_after_notice,
)

NOTICE = pd.Timestamp("2024-03-15")


def table(**columns) -> pd.DataFrame:
    """A claims table of n rows: defaults of an unremarkable, conclusive building claim."""
    n = max(len(v) for v in columns.values() if isinstance(v, list)) if columns else 1
    base = {
        "claim_id": [f"C{i}" for i in range(n)], "project_id": "P", "claimant_id": "A",
        "item": "building", "claimed_area_m2": 100.0, "amount": 1000.0,
        "notice_date": NOTICE, "before_date": pd.Timestamp("2024-02-20"),
        "after_date": pd.Timestamp("2024-06-08"), "before_id": "b", "after_id": "a",
        "area_m2": 750.0, "inconclusive": False, "reason": "", "valid_coverage": 1.0,
        "effective_pixels": 3000.0, "change_share": 0.0, "change_mean": 1.0,
        "change_q90": 1.0, "change_threshold": 4.0, "builtup_index": "dbright",
        "builtup_share": 0.0, "builtup_mean": 0.0, "builtup_threshold": 3.0,
        "veg_gain_share": 0.0, "veg_gain_mean": 0.0, "veg_gain_q90": 0.0,
        "veg_gain_threshold": 0.1, "seen_builtup_share": 0.16, "seen_builtup_m2": 100.0,
    }
    base.update(columns)
    return pd.DataFrame({k: (v if isinstance(v, list) else [v] * n) for k, v in base.items()})


def test_every_rule_is_registered_with_its_metadata():
    for code in REQUISITION_RULES:
        rule = REGISTRY.get(code)
        assert rule.domain == "requisition"
        assert rule.title and rule.title_zh and rule.description
        assert not any(w in rule.title.lower() for w in ("fraud", "cheat", "fake"))
        for t in rule.thresholds:
            assert t.unit and t.description
    table_ = rules_table()
    assert set(REQUISITION_RULES) <= set(table_["rule"])
    assert REGISTRY.get("requisition.built_after_notice").defaults() == {
        "items": ("building", "greenhouse"), "min_changed_share": 0.05, "max_ndvi_gain": 0.5,
        "min_builtup_share": 0.0, "high_share": 0.5}


def test_items_in_english_and_chinese():
    got = normalize_items(["House", "温室大棚", "苗木", "青苗", "其他", "fish pond", None])
    assert got.tolist()[:5] == ["building", "greenhouse", "trees", "crops", "other"]
    assert got.isna().tolist()[5:] == [True, True]
    assert set(ITEMS) == {"building", "greenhouse", "trees", "crops", "other"}


def test_built_after_notice_at_its_thresholds():
    t = table(claim_id=["at", "below", "trees", "inconclusive", "greening", "high", "gh"],
              item=["building", "building", "trees", "building", "building", "building",
                    "greenhouse"],
              change_share=[0.05, 0.0499, 0.9, 0.9, 0.9, 0.5, 0.2],
              inconclusive=[False, False, False, True, False, False, False],
              veg_gain_mean=[0.0, 0.0, 0.0, 0.0, 0.5, 0.4999, -0.3],
              change_q90=[4.0, 4.0, 4.0, 4.0, 4.0, 12.0, 8.0])
    hits = built_after_notice(t, RuleContext())
    assert hits["subject_id"].tolist() == ["at", "high", "gh"]
    assert hits["subject_type"].eq("claim").all() and hits["unit"].eq("P").all()
    assert hits["severity"].tolist() == ["medium", "high", "medium"]
    assert hits["score"].tolist() == pytest.approx([0.5, 0.75, 2 / 3])
    assert hits["period"].eq("2024-03-15").all()
    ev = hits["evidence"].iloc[0]
    assert ev["change_share"] == 0.05 and ev["thresholds"]["min_changed_share"] == 0.05
    assert ev["before_date"] == "2024-02-20" and ev["after_date"] == "2024-06-08"
    json.dumps(ev)  # evidence is JSON-ready
    assert "5.0 %" in hits["detail"].iloc[0] and "threshold" in hits["detail"].iloc[0]
    # the built-up index can be required
    strict = built_after_notice(t.assign(builtup_share=[0.1, 0, 0, 0, 0, 0.0999, 0.5]),
                                RuleContext(), min_builtup_share=0.1)
    assert strict["subject_id"].tolist() == ["at", "gh"]


def test_planted_after_notice_at_its_thresholds():
    t = table(claim_id=["at", "share", "mean", "building", "inconclusive"],
              item=["trees", "crops", "trees", "building", "trees"],
              veg_gain_share=[0.2, 0.1999, 0.9, 0.9, 0.9],
              veg_gain_mean=[0.1, 0.3, 0.0999, 0.3, 0.3], veg_gain_q90=[0.3, 0.3, 0.3, 0.3, 0.3],
              inconclusive=[False, False, False, False, True])
    hits = planted_after_notice(t, RuleContext())
    assert hits["subject_id"].tolist() == ["at"]
    assert hits["score"].iloc[0] == pytest.approx(0.75)  # p90 0.3 = 3 x threshold 0.1


def test_claimed_not_seen_at_its_thresholds():
    t = table(claim_id=["ratio", "above", "small", "nothing", "no-area", "trees", "inc"],
              item=["building", "building", "greenhouse", "building", "building", "trees",
                    "building"],
              claimed_area_m2=[150.0, 150.1, 29.9, 400.0, np.nan, 900.0, 400.0],
              seen_builtup_m2=[100.0, 100.0, 10.0, 0.0, 0.0, 0.0, 0.0],
              inconclusive=[False] * 6 + [True])
    hits = claimed_not_seen(t, RuleContext())
    assert hits["subject_id"].tolist() == ["above", "nothing"]
    assert hits["severity"].tolist() == ["medium", "high"]
    assert hits["score"].tolist() == pytest.approx([50.1 / 150.1, 1.0])
    assert hits["amount_at_risk"].tolist() == pytest.approx([1000 * 50.1 / 150.1, 1000.0])
    ev = hits["evidence"].iloc[1]
    assert ev["excess_m2"] == 400.0 and ev["ratio"] is None and ev["seen_builtup_m2"] == 0.0
    # 29.9 m2 claimed against 10 seen is 19.9 m2 more: at min_excess_m2 it fires
    assert claimed_not_seen(t, RuleContext(), min_excess_m2=19.9, max_ratio=2.9)[
        "subject_id"].tolist() == ["small", "nothing"]


def test_persons_rules_at_their_thresholds():
    t = table(claim_id=["d1", "d0", "m1", "m0", "none", "nodate", "utc"],
              claimant_id=["D1", "D0", "M1", "M0", "X", "D1", "U"],
              notice_date=[NOTICE] * 5 + [pd.NaT, NOTICE])
    persons = pd.DataFrame({
        "person_id": ["D1", "D0", "M1", "M0", "U"],
        "name": ["王建国", "李秀英", "张志强", "刘桂兰", "陈德胜"],
        # U died at 16:00 UTC on 14 March, i.e. midnight of the notice date in Shanghai
        "died_on": pd.to_datetime(["2024-03-14", "2024-03-15", None, None,
                                   "2024-03-14T16:00:00Z"], utc=True, format="mixed"),
        "moved_in_on": [None, None, "2024-03-16", "2024-03-15", None],
    })
    persons["died_on"] = persons["died_on"].dt.tz_localize(None)
    persons.loc[4, "died_on"] = pd.Timestamp("2024-03-14 16:00")
    ctx = RuleContext(persons=persons)
    dead = deceased_claimant(t, ctx)
    assert dead["subject_id"].tolist() == ["d1", "utc"]
    assert dead["severity"].eq("high").all()
    assert dead["evidence"].iloc[0]["days"] == 1 and dead["evidence"].iloc[0][
        "died_on"] == "2024-03-14"
    tz = persons.assign(died_on=pd.to_datetime(["2024-03-14T00:00Z", None, None, None,
                                                "2024-03-14T16:00Z"], utc=True))
    got = deceased_claimant(t, RuleContext(persons=tz))["subject_id"].tolist()
    assert got == ["d1"]  # 16:00 UTC on the 14th is already the 15th in Shanghai
    moved = moved_in_after_notice(t, ctx)
    assert moved["subject_id"].tolist() == ["m1"]
    assert moved["evidence"].iloc[0]["moved_in_on"] == "2024-03-16"
    assert deceased_claimant(t, RuleContext())["subject_id"].tolist() == []
    assert moved_in_after_notice(t, ctx, min_days=2).empty


def test_thresholds_come_from_the_settings():
    rule = REGISTRY.get("requisition.claimed_not_seen")
    settings = Settings.load(file=None, env={
        "GEOSUP_RULES__REQUISITION_CLAIMED_NOT_SEEN__MAX_RATIO": "3"})
    th = resolve_thresholds(rule, settings)
    assert th["max_ratio"] == 3.0 and th["min_excess_m2"] == 20.0
    t = table(claimed_area_m2=[250.0, 350.0], seen_builtup_m2=[100.0, 100.0])
    assert rule(t, RuleContext(), **th)["subject_id"].tolist() == ["C1"]


def test_no_claims_no_hits():
    empty = table().iloc[:0]
    for code in REQUISITION_RULES:
        hits = REGISTRY.get(code)(empty, RuleContext(persons=pd.DataFrame(
            {"person_id": ["A"], "died_on": ["2020-01-01"], "moved_in_on": ["2025-01-01"]})))
        assert hits.empty and "subject_id" in hits.columns
