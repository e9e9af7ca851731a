"""The rule registry: metadata, thresholds from settings, listing."""

from __future__ import annotations

import pandas as pd
import pytest

from geosup.config import Settings
from geosup.errors import ConfigError, RuleError
from geosup.rules import Registry, Threshold, load_builtin_rules, resolve_thresholds, rules_table


@pytest.fixture
def registry() -> Registry:
    reg = Registry()

    @reg.rule("fuel.over_tank_capacity", title="Fill above tank capacity", severity="high",
              inputs=("transactions", "vehicles"),
              thresholds=[Threshold("tolerance", 0.05, "share", "allowed excess")])
    def over_tank(tx: pd.DataFrame, *, tolerance: float) -> pd.DataFrame:
        """Litres above tank capacity times (1 + tolerance)."""
        return tx[tx["litres"] > tx["tank_l"] * (1 + tolerance)]

    @reg.rule("farmland.deceased_applicant", title="Applicant recorded as deceased")
    def deceased(decl: pd.DataFrame) -> pd.DataFrame:
        return decl

    return reg


def test_rules_run_with_thresholds_from_settings(registry):
    rule = registry.get("fuel.over_tank_capacity")
    assert rule.domain == "fuel" and rule.description.startswith("Litres above")
    tx = pd.DataFrame({"litres": [50.0, 52.0, 60.0], "tank_l": [50.0, 50.0, 50.0]})
    defaults = resolve_thresholds(rule)
    assert len(rule(tx, **defaults)) == 1
    cfg = Settings.load(file=None, env={"GEOSUP_RULES__FUEL_OVER_TANK_CAPACITY__TOLERANCE": "0"})
    assert len(rule(tx, **resolve_thresholds(rule, cfg))) == 2
    assert resolve_thresholds(rule, cfg, {"tolerance": 0.5}) == {"tolerance": 0.5}
    with pytest.raises(ConfigError, match="no threshold 'radius'"):
        resolve_thresholds(rule, cfg, {"radius": 1})


def test_table_lists_every_threshold_and_its_source(registry):
    cfg = Settings.load(file=None, env={"GEOSUP_RULES__FUEL_OVER_TANK_CAPACITY__TOLERANCE": "0.1"})
    table = rules_table(registry, settings=cfg)
    row = table.set_index("rule").loc["fuel.over_tank_capacity"]
    assert row["value"] == 0.1 and row["default"] == 0.05
    assert row["source"].startswith("environment")
    assert "farmland.deceased_applicant" in set(table["rule"])


def test_registry_refuses_bad_rules(registry):
    with pytest.raises(RuleError, match="domain"):
        registry.rule("nodomain", title="x")
    with pytest.raises(RuleError, match="severity"):
        registry.rule("fuel.y", title="x", severity="severe")
    with pytest.raises(RuleError, match=r"unknown rule 'fuel\.zzz'"):
        registry.get("fuel.zzz")
    assert [r.code for r in registry.select(codes=["fuel.*"])] == ["fuel.over_tank_capacity"]
    assert [r.code for r in registry.select(domain="farmland")] == \
        ["farmland.deceased_applicant"]


def test_builtin_rules_load():
    reg = load_builtin_rules()
    for item in reg:
        assert item.title and item.domain in ("fuel", "farmland", "requisition")
