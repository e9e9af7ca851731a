"""The rule registry.

A rule is a small pure function from prepared tables to hits, registered with its
metadata: a dotted code, a neutral title (English and Chinese), the default
severity, the inputs it needs and its thresholds with their defaults and units.
A threshold is configuration: :func:`resolve_thresholds` reads it from the
settings (``geosup.toml``, ``GEOSUP_RULES__…``, flags) and never from a literal
in the rule's code.

Examples
--------
>>> reg = Registry()
>>> @reg.rule("fuel.over_tank_capacity", title="Fill above tank capacity",
...           severity="high", inputs=("transactions", "vehicles"),
...           thresholds=[Threshold("tolerance", 0.05, "share", "allowed excess")])
... def over_tank_capacity(tx, *, tolerance):
...     return tx[tx["litres"] > tx["tank_l"] * (1 + tolerance)]
>>> reg.get("fuel.over_tank_capacity").defaults()
{'tolerance': 0.05}
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from geosup.alerts import DOMAINS, SEVERITIES
from geosup.config import Settings
from geosup.errors import ConfigError, RuleError

__all__ = [
    "BUILTIN_RULE_MODULES",
    "REGISTRY",
    "Registry",
    "Rule",
    "Threshold",
    "load_builtin_rules",
    "resolve_thresholds",
    "rule",
    "rules_table",
]

log = logging.getLogger(__name__)

#: Modules whose import registers the built-in rules (each check's issue adds one).
BUILTIN_RULE_MODULES: tuple[str, ...] = (
    "trajectories.rules",
    "geosup.farmland.rules",
    "imagery.rules",
)


@dataclass(frozen=True)
class Threshold:
    """One configurable threshold of a rule."""

    name: str
    default: Any
    unit: str = ""
    description: str = ""


@dataclass(frozen=True)
class Rule:
    """A registered rule: the function and its metadata."""

    code: str
    func: Callable[..., Any]
    title: str
    severity: str
    inputs: tuple[str, ...] = ()
    thresholds: tuple[Threshold, ...] = ()
    title_zh: str = ""
    description: str = ""

    @property
    def domain(self) -> str:
        """The check the rule belongs to (the code before the first dot)."""
        return self.code.split(".", 1)[0]

    def defaults(self) -> dict[str, Any]:
        """Threshold names and their default values."""
        return {t.name: t.default for t in self.thresholds}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)


@dataclass
class Registry:
    """A set of rules by code."""

    rules: dict[str, Rule] = field(default_factory=dict)

    def rule(
        self,
        code: str,
        *,
        title: str,
        severity: str = "medium",
        inputs: Sequence[str] = (),
        thresholds: Sequence[Threshold] = (),
        title_zh: str = "",
        description: str = "",
    ) -> Callable[[Callable[..., Any]], Rule]:
        """Register the decorated function as rule ``code``."""
        domain = code.split(".", 1)[0]
        if "." not in code or domain not in DOMAINS:
            msg = f"rule code {code!r} must be '<domain>.<name>' with domain in {DOMAINS}"
            raise RuleError(msg)
        if severity not in SEVERITIES:
            msg = f"rule {code}: unknown severity {severity!r}"
            raise RuleError(msg)
        names = [t.name for t in thresholds]
        if len(set(names)) != len(names):
            msg = f"rule {code}: duplicate threshold names {names}"
            raise RuleError(msg)

        def decorate(func: Callable[..., Any]) -> Rule:
            if code in self.rules and self.rules[code].func is not func:
                msg = f"rule {code!r} is registered twice"
                raise RuleError(msg)
            item = Rule(code=code, func=func, title=title, severity=severity,
                        inputs=tuple(inputs), thresholds=tuple(thresholds),
                        title_zh=title_zh, description=description or (func.__doc__ or "")
                        .strip().split("\n")[0])
            self.rules[code] = item
            return item

        return decorate

    def get(self, code: str) -> Rule:
        """The rule with this code; :class:`RuleError` listing the known codes if none."""
        try:
            return self.rules[code]
        except KeyError:
            known = ", ".join(sorted(self.rules)) or "none registered"
            msg = f"unknown rule {code!r}; known rules: {known}"
            raise RuleError(msg) from None

    def select(self, *, domain: str | None = None,
               codes: Iterable[str] | None = None) -> list[Rule]:
        """Rules of a domain and/or with given codes (a code may end with ``*``)."""
        out = sorted(self.rules.values(), key=lambda r: r.code)
        if domain is not None:
            out = [r for r in out if r.domain == domain]
        if codes:
            pats = list(codes)
            for p in pats:
                if not p.endswith("*"):
                    self.get(p)
            out = [r for r in out if any(
                r.code == p or (p.endswith("*") and r.code.startswith(p[:-1])) for p in pats)]
        return out

    def __iter__(self):
        return iter(sorted(self.rules.values(), key=lambda r: r.code))

    def __len__(self) -> int:
        return len(self.rules)


#: The registry of built-in rules.
REGISTRY = Registry()

#: Decorator registering a rule in :data:`REGISTRY`.
rule = REGISTRY.rule


def load_builtin_rules() -> Registry:
    """Import the modules that register built-in rules; returns :data:`REGISTRY`."""
    for name in BUILTIN_RULE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name is None or not name.startswith(err.name):
                raise
            log.debug("rule module %s is not present", name)
    return REGISTRY


def resolve_thresholds(
    item: Rule,
    settings: Settings | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The thresholds a rule runs with: defaults < settings < ``overrides``.

    Raises
    ------
    ConfigError
        An override names a threshold the rule does not have.
    """
    settings = settings or Settings()
    values = {t.name: settings.threshold(item.code, t.name, t.default)[0]
              for t in item.thresholds}
    for name, value in (overrides or {}).items():
        if name not in values:
            msg = (f"rule {item.code} has no threshold {name!r}; "
                   f"its thresholds: {', '.join(values) or 'none'}")
            raise ConfigError(msg)
        values[name] = value
    return values


def rules_table(registry: Registry | None = None, *,
                settings: Settings | None = None) -> pd.DataFrame:
    """One row per rule threshold (or per rule without one), with the value in force."""
    registry = registry or REGISTRY
    settings = settings or Settings()
    rows = []
    for item in registry:
        if not item.thresholds:
            rows.append({"rule": item.code, "domain": item.domain, "severity": item.severity,
                         "title": item.title, "threshold": "", "value": "", "default": "",
                         "unit": "", "source": "", "inputs": ", ".join(item.inputs)})
        for t in item.thresholds:
            value, source = settings.threshold(item.code, t.name, t.default)
            rows.append({"rule": item.code, "domain": item.domain, "severity": item.severity,
                         "title": item.title, "threshold": t.name, "value": value,
                         "default": t.default, "unit": t.unit, "source": source,
                         "inputs": ", ".join(item.inputs)})
    columns = ["rule", "domain", "severity", "title", "threshold", "value", "default", "unit",
               "source", "inputs"]
    return pd.DataFrame(rows, columns=columns)
