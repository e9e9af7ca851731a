"""Settings: defaults < ``geosup.toml`` < ``GEOSUP_*`` environment < CLI flags.

A setting has a dotted key (``store``, ``timezone``, ``lang``, ``rules.<code>.<name>``,
``columns.<input>.<canonical>``, ``units.<input>.<canonical>``). The TOML file holds the
same keys as tables::

    store = "audit.gpkg"
    timezone = "Asia/Shanghai"

    [rules."fuel.away_from_station"]
    radius_m = 500

    [columns.fixes]
    vehicle_id = "Vehicle ID"

    [units.transactions]  # the unit a source uses for a column (converted on reading)
    litres = "gal"

    [calendar]            # the fuel audit's working hours and holidays
    start = "08:00"

    [imagery]             # per-claim statistics and chips
    max_chips = 2000

An unknown key or a value of the wrong kind in the file is an error (``stroe =``
is refused with "did you mean 'store'?"); an unknown ``GEOSUP_*`` variable is
warned about (:class:`~geosup.errors.ConfigWarning`) and ignored.

Environment variables are ``GEOSUP_`` plus the key in upper case with ``__``
between levels; in a rule code the dot becomes ``_``:
``GEOSUP_STORE=postgresql://…``, ``GEOSUP_RULES__FUEL_AWAY_FROM_STATION__RADIUS_M=500``.
Their values are read as TOML values when they parse (``500``, ``true``,
``"text"``) and as plain text otherwise.

Examples
--------
>>> cfg = Settings.load(env={"GEOSUP_TIMEZONE": "UTC"}, file=None)
>>> cfg.get("timezone"), cfg.source("timezone")
('UTC', 'environment (GEOSUP_TIMEZONE)')
"""

from __future__ import annotations

import copy
import difflib
import os
import tomllib
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geosup.errors import ConfigError, ConfigWarning

__all__ = ["CONFIG_FILE", "DEFAULTS", "Settings"]

#: The settings file looked for in the working directory.
CONFIG_FILE = "geosup.toml"

#: Built-in defaults (rule thresholds come from the rule registry).
DEFAULTS: dict[str, Any] = {
    "store": "geosup.gpkg",
    "timezone": "Asia/Shanghai",
    "lang": "en",
    "currency": "CNY",
    "area_unit": "mu",
    "rules": {},
    "columns": {},
    "units": {},
}

_ENV_PREFIX = "GEOSUP_"

#: Top-level settings that are tables of their own (every other one is a text value).
_TABLES = frozenset({"rules", "columns", "units", "calendar", "imagery"})

#: Allowed values of the settings that take one of a few words.
_CHOICES = {"lang": ("en", "zh")}


def _check_keys(tree: Mapping[str, Any], source: str) -> list[str]:
    """Problems with the top-level keys and value types of a settings tree."""
    known = sorted(set(DEFAULTS) | _TABLES)
    problems = []
    for key, value in tree.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"unknown setting {key!r} in {source}{hint}; settings are "
                            + ", ".join(known))
        elif key in _TABLES:
            if not isinstance(value, Mapping):
                problems.append(f"{key} in {source} must be a table ([{key}.…])")
        elif not isinstance(value, str):
            problems.append(f"{key} = {value!r} in {source} must be text, e.g. "
                            f"{key} = \"{DEFAULTS[key]}\"")
        elif key in _CHOICES and value not in _CHOICES[key]:
            problems.append(f"{key} = {value!r} in {source} must be one of "
                            + ", ".join(_CHOICES[key]))
    return problems


def _parse_env_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value) if isinstance(value, Mapping) else value
    return base


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        full = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, full + "."))
        else:
            out[full] = value
    return out


@dataclass
class Settings:
    """Resolved settings with the source of every value.

    Use :meth:`load`; then :meth:`get`, :meth:`threshold` and :meth:`columns`.
    """

    values: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    sources: dict[str, str] = field(default_factory=dict)
    env_rules: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        *,
        file: str | Path | None = CONFIG_FILE,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        required_file: bool = False,
    ) -> Settings:
        """Resolve settings from the defaults, a TOML file, the environment and flags.

        Parameters
        ----------
        file : path, optional
            TOML file; a missing default ``geosup.toml`` is fine, a missing file named
            with ``--config`` (``required_file=True``) is an error.
        env : mapping, optional
            Environment (``os.environ`` by default).
        overrides : mapping, optional
            CLI flags as dotted keys (``{"store": "x.gpkg"}``); ``None`` values are
            ignored.
        """
        cfg = cls()
        for key in _flatten(DEFAULTS):
            cfg.sources[key] = "default"
        if file is not None:
            path = Path(file)
            if path.is_file():
                try:
                    tree = tomllib.loads(path.read_text(encoding="utf-8"))
                except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                    msg = f"settings file {path} is not valid TOML: {err}"
                    raise ConfigError(msg) from err
                problems = _check_keys(tree, f"settings file {path}")
                if problems:
                    raise ConfigError("; ".join(problems))
                cfg._apply(tree, f"file {path}")
            elif required_file:
                msg = f"settings file {path} does not exist"
                raise ConfigError(msg)
        environ = os.environ if env is None else env
        for name, text in sorted(environ.items()):
            if not name.startswith(_ENV_PREFIX):
                continue
            parts = name[len(_ENV_PREFIX):].lower().split("__")
            if parts[0] == "rules" and len(parts) == 3:
                cfg.env_rules[f"{parts[1]}|{parts[2]}"] = text
                continue
            tree: dict[str, Any] = {}
            node = tree
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            # a one-level variable is text as given (GEOSUP_TIMEZONE=UTC, GEOSUP_STORE=5.gpkg)
            node[parts[-1]] = text if len(parts) == 1 else _parse_env_value(text)
            problems = _check_keys(tree, f"environment variable {name}")
            if problems and parts[0] not in set(DEFAULTS) | _TABLES:
                warnings.warn(f"{problems[0]}; ignored", ConfigWarning, stacklevel=2)
                continue
            if problems:
                raise ConfigError("; ".join(problems))
            cfg._apply(tree, f"environment ({name})")
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            cfg._apply(_unflatten({key: value}), "command line")
        return cfg

    def _apply(self, tree: Mapping[str, Any], source: str) -> None:
        _merge(self.values, tree)
        for key in _flatten(tree):
            self.sources[key] = source

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a dotted key (``"store"``, ``"columns.fixes"``)."""
        node: Any = self.values
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def source(self, key: str) -> str:
        """Where a value came from: default, file, environment or command line."""
        return self.sources.get(key, "default")

    def threshold(self, rule: str, name: str, default: Any) -> tuple[Any, str]:
        """A rule threshold and its source, the default coerced to its type.

        Raises
        ------
        ConfigError
            The configured value cannot be read as the default's type.
        """
        value, source = default, "default"
        rules = self.values.get("rules", {})
        if isinstance(rules.get(rule), Mapping) and name in rules[rule]:
            value, source = rules[rule][name], self.source(f"rules.{rule}.{name}")
        env_key = f"{rule.replace('.', '_').lower()}|{name.lower()}"
        if env_key in self.env_rules and source != "command line":
            value = _parse_env_value(self.env_rules[env_key])
            source = f"environment (GEOSUP_RULES__{env_key.replace('|', '__').upper()})"
        return _coerce(value, default, f"{rule}.{name}"), source

    def unknown_rule_settings(self, known: Iterable[tuple[str, str]]) -> list[str]:
        """Rule settings that name no registered rule threshold (likely typos)."""
        known = set(known)
        rules = self.values.get("rules", {})
        out = [f"rules.{r}.{n}" for r, names in rules.items() if isinstance(names, Mapping)
               for n in names if (r, n) not in known]
        envs = {f"{r.replace('.', '_').lower()}|{n.lower()}" for r, n in known}
        out += [f"GEOSUP_RULES__{k.replace('|', '__').upper()}" for k in self.env_rules
                if k not in envs]
        return out

    def columns(self, source: str) -> dict[str, str]:
        """The column mapping (canonical -> file column) configured for an input."""
        mapping = self.get(f"columns.{source}", {}) or {}
        if not isinstance(mapping, Mapping):
            msg = f"[columns.{source}] must be a table of canonical = \"Source column\""
            raise ConfigError(msg)
        return {str(k): str(v) for k, v in mapping.items()}

    def units(self, source: str) -> dict[str, str]:
        """The units (canonical column -> the unit the file uses) configured for an input.

        Examples
        --------
        >>> cfg = Settings.load(file=None, env={"GEOSUP_UNITS__TRANSACTIONS__LITRES": "gal"})
        >>> cfg.units("transactions"), cfg.units("fixes")
        ({'litres': 'gal'}, {})
        """
        mapping = self.get(f"units.{source}", {}) or {}
        if not isinstance(mapping, Mapping) or any(
                isinstance(v, Mapping | list) for v in mapping.values()):
            msg = (f"[units.{source}] must be a table of canonical = \"unit\" "
                   "(e.g. litres = \"gal\")")
            raise ConfigError(msg)
        return {str(k): str(v) for k, v in mapping.items()}


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        node = tree
        parts = key.split(".")
        if parts[0] == "rules" and len(parts) > 3:  # rule codes contain dots
            parts = ["rules", ".".join(parts[1:-1]), parts[-1]]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def _coerce(value: Any, default: Any, what: str) -> Any:
    if default is None or isinstance(value, type(default)):
        return value
    try:
        if isinstance(default, bool):
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
                return value.lower() in ("true", "1")
            raise ValueError(value)
        if isinstance(default, (int, float)):
            out = type(default)(value)
            return out
        if isinstance(default, (list, tuple)):
            return type(default)(value if isinstance(value, (list, tuple)) else [value])
        return type(default)(value)
    except (TypeError, ValueError) as err:
        msg = f"setting {what} = {value!r} is not a {type(default).__name__}"
        raise ConfigError(msg) from err
