"""Settings precedence: defaults < geosup.toml < GEOSUP_* environment < CLI flags."""

from __future__ import annotations

import pytest

from geosup.config import Settings
from geosup.errors import ConfigError


def _toml(tmp_path, text):
    path = tmp_path / "geosup.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_each_layer_overrides_the_one_below(tmp_path):
    path = _toml(tmp_path, 'store = "file.gpkg"\ntimezone = "Europe/London"\n'
                           '[rules."fuel.away_from_station"]\nradius_m = 400\n'
                           "[columns.fixes]\nvehicle_id = \"Vehicle ID\"\n")
    only_default = Settings.load(file=None, env={})
    assert only_default.get("store") == "geosup.gpkg"
    assert only_default.source("store") == "default"
    from_file = Settings.load(file=path, env={})
    assert from_file.get("store") == "file.gpkg"
    assert from_file.threshold("fuel.away_from_station", "radius_m", 300) == \
        (400, f"file {path}")
    assert from_file.columns("fixes") == {"vehicle_id": "Vehicle ID"}
    env = {"GEOSUP_STORE": "env.gpkg",
           "GEOSUP_RULES__FUEL_AWAY_FROM_STATION__RADIUS_M": "500"}
    from_env = Settings.load(file=path, env=env)
    assert from_env.get("store") == "env.gpkg"
    assert from_env.get("timezone") == "Europe/London"
    assert from_env.threshold("fuel.away_from_station", "radius_m", 300)[0] == 500
    flags = Settings.load(file=path, env=env,
                          overrides={"store": "flag.gpkg",
                                     "rules.fuel.away_from_station.radius_m": 700})
    assert flags.get("store") == "flag.gpkg"
    assert flags.source("store") == "command line"
    assert flags.threshold("fuel.away_from_station", "radius_m", 300) == (700, "command line")


def test_env_values_are_typed(tmp_path):
    cfg = Settings.load(file=None, env={"GEOSUP_RULES__FUEL_OFF_HOURS__WEEKENDS": "false",
                                        "GEOSUP_RULES__FUEL_OFF_HOURS__START": "07:30"})
    assert cfg.threshold("fuel.off_hours", "weekends", True)[0] is False
    assert cfg.threshold("fuel.off_hours", "start", "08:00")[0] == "07:30"


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        Settings.load(file=_toml(tmp_path, "store = [unclosed"), env={})
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(file=tmp_path / "nope.toml", env={}, required_file=True)
    assert Settings.load(file=tmp_path / "nope.toml", env={}).get("store") == "geosup.gpkg"
    cfg = Settings.load(file=None, env={"GEOSUP_RULES__FUEL_X__RADIUS_M": "far"})
    with pytest.raises(ConfigError, match="is not a int"):
        cfg.threshold("fuel.x", "radius_m", 300)
    assert cfg.unknown_rule_settings([("fuel.y", "radius_m")]) == \
        ["GEOSUP_RULES__FUEL_X__RADIUS_M"]


@pytest.mark.parametrize(("text", "match"), [
    ('stroe = "audit.gpkg"\n', r"unknown setting 'stroe'.*did you mean 'store'"),
    ("timezone = 5\n", r"timezone = 5 .* must be text"),
    ('lang = "fr"\n', r"lang = 'fr' .* must be one of en, zh"),
    ('columns = "fixes"\n', r"columns .* must be a table"),
])
def test_settings_file_typos_are_refused(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        Settings.load(file=_toml(tmp_path, text), env={})


def test_every_documented_table_is_accepted(tmp_path):
    path = _toml(tmp_path, '[calendar]\nstart = "07:30"\n[imagery]\nmax_chips = 10\n'
                           '[units.transactions]\nlitres = "gal"\n')
    cfg = Settings.load(file=path, env={})
    assert cfg.get("imagery.max_chips") == 10
    assert cfg.get("calendar.start") == "07:30"


def test_unknown_environment_variable_is_warned_and_ignored():
    from geosup.errors import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"GEOSUP_STOER .*did you mean 'store'"):
        cfg = Settings.load(file=None, env={"GEOSUP_STOER": "audit.gpkg"})
    assert cfg.get("store") == "geosup.gpkg"
    # a known variable is text as given, even when it would parse as a number
    assert Settings.load(file=None, env={"GEOSUP_STORE": "2025"}).get("store") == "2025"
    with pytest.raises(ConfigError, match="must be one of en, zh"):
        Settings.load(file=None, env={"GEOSUP_LANG": "fr"})
