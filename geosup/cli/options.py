"""Options and helpers shared by every ``geosup`` command."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from geosup.config import Settings
from geosup.errors import ConfigError

__all__ = [
    "CliState",
    "RunStore",
    "alert_filter_options",
    "overwrite_option",
    "parse_column_flags",
    "parse_threshold_flags",
    "progress",
    "report_inputs",
    "state",
    "store_option",
    "threshold_option",
    "threshold_value",
]


@dataclass
class CliState:
    """What the top-level group hands to every command."""

    settings: Settings
    verbosity: int = 0

    @property
    def quiet(self) -> bool:
        return self.verbosity < 0


def state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the current invocation."""
    ctx = ctx or click.get_current_context()
    obj = ctx.find_object(CliState)
    if obj is None:  # a command invoked without the group (tests)
        obj = CliState(settings=Settings.load())
        ctx.obj = obj
    return obj


def _store_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    settings = state(ctx).settings
    return value or str(settings.get("store") or "geosup.gpkg")


store_option = click.option(
    "--store", "store", metavar="URL", default=None, callback=_store_callback,
    help="Store: a .gpkg file (default ./geosup.gpkg) or postgresql://… "
         "(credentials from the URL or PGPASSWORD/PGHOST…).")

overwrite_option = click.option("--overwrite", is_flag=True, default=False,
                                help="Replace an existing output.")


def alert_filter_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add --rule/--domain/--status/--severity/--unit/--period (each repeatable)."""
    for name, helptext in reversed((
        ("rule", "Rule code, e.g. fuel.off_hours."),
        ("domain", "fuel, farmland or requisition."),
        ("status", "open, investigating, confirmed, dismissed, rectified."),
        ("severity", "low, medium, high, critical."),
        ("unit", "Budget unit, village or department."),
        ("period", "Period label, e.g. 2026-03 or 2025."),
    )):
        func = click.option(f"--{name}", name, multiple=True, metavar=name.upper(),
                            help=helptext + " Repeat to allow several.")(func)
    return func


class RunStore:
    """The store of a check command, checked when the command starts.

    A database store is connected to at once, and an existing GeoPackage opened, so
    an unreachable ``--store`` fails before minutes of work rather than after. A
    GeoPackage that does not exist yet is created only when the run writes, so a
    command that fails on its inputs leaves no empty store behind. The command's
    start time is the run's ``started_at``.
    """

    def __init__(self, url: str) -> None:
        from pathlib import Path

        import pandas as pd

        from geosup.errors import StoreConnectionError
        from geosup.store import is_database_url

        self.url = url
        self.started_at = pd.Timestamp.now(tz="UTC")
        self._store: Any = None
        if is_database_url(url) or Path(url).exists():
            self._store = self._open()
        elif not Path(url).parent.is_dir():
            msg = f"cannot create store {url}: folder {Path(url).parent} does not exist"
            raise StoreConnectionError(msg)

    def _open(self) -> Any:
        from geosup.store import open_store

        return click.get_current_context().with_resource(open_store(self.url))

    @property
    def store(self) -> Any:
        """The open store (opened now if it was still to be created)."""
        if self._store is None:
            self._store = self._open()
        return self._store

    def run(self, command: str, **kwargs: Any) -> Any:
        """:meth:`Store.run` with the command's start time."""
        return self.store.run(command, started_at=self.started_at, **kwargs)


def report_inputs(counts: Mapping[str, Mapping[str, int]]) -> None:
    """Print rows in / used / rejected per input to stderr (the result goes to stdout)."""
    if state().quiet:
        return
    for source, c in counts.items():
        click.echo(f"{source}: {c['rows_in']:,} rows in, {c['rows_used']:,} used, "
                   f"{c['rows_rejected']:,} rejected", err=True)


@contextmanager
def progress(length: int, *, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; nothing under ``-q`` or when stderr is not a TTY.

    Yields a callback taking the number of items just done: pass it as the
    ``progress`` argument of a library function.
    """
    if state().quiet or not sys.stderr.isatty():
        yield lambda n=1: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def parse_column_flags(items: Sequence[str], *, inputs: Sequence[str],
                       example: str = "transactions.card_id=Card Number ID"
                       ) -> dict[str, dict[str, list[str]]]:
    """``--map INPUT.CANONICAL=Source column`` flags as ``{input: {canonical: [columns]}}``.

    Mapping one canonical column twice lists both source columns (a reader may join
    them, e.g. a date and a time column).

    Examples
    --------
    >>> parse_column_flags(["fixes.vehicle_id=Vehicle ID", "fixes.time=Date", "fixes.time=Time"],
    ...                    inputs=("fixes",))
    {'fixes': {'vehicle_id': ['Vehicle ID'], 'time': ['Date', 'Time']}}
    """
    out: dict[str, dict[str, list[str]]] = {}
    for item in items:
        left, sep, column = item.partition("=")
        name, dot, canonical = left.strip().partition(".")
        if not sep or not dot or not canonical.strip() or not column.strip():
            msg = f"--map {item!r} is not INPUT.CANONICAL=COLUMN (e.g. --map \"{example}\")"
            raise ConfigError(msg)
        if name not in inputs:
            msg = f"--map {item!r}: unknown input {name!r}; use one of: {', '.join(inputs)}"
            raise ConfigError(msg)
        out.setdefault(name, {}).setdefault(canonical.strip(), []).append(column.strip())
    return out


def threshold_value(text: str, default: Any, what: str) -> Any:
    """A threshold given as text, converted to the type of its default.

    The text is read as a TOML value when it parses (``500``, ``true``, ``"08:30"``),
    else as plain text; a list threshold takes comma-separated values.

    Examples
    --------
    >>> threshold_value("500", 300.0, "r.x"), threshold_value("a, b", ("x",), "r.y")
    (500.0, ('a', 'b'))
    """
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
    elif isinstance(default, int | float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if isinstance(default, int) and float(value) != int(value):
                msg = f"--threshold {what}={text}: needs a whole number"
                raise ConfigError(msg)
            return type(default)(value)
    elif isinstance(default, list | tuple):
        items = value if isinstance(value, list | tuple) else str(value).split(",")
        return type(default)(str(v).strip() for v in items if str(v).strip())
    elif default is None or isinstance(default, str):
        return value if default is None else str(value)
    else:
        return value
    msg = f"--threshold {what}={text}: not a {type(default).__name__}"
    raise ConfigError(msg)


def parse_threshold_flags(items: Sequence[str], *, domain: str | None = None
                          ) -> dict[str, dict[str, Any]]:
    """``--threshold RULE.NAME=VALUE`` flags as ``{rule code: {threshold: value}}``, checked.

    With ``domain``, a rule may be named without its ``<domain>.`` prefix. The rule and
    the threshold must exist; the value takes the type of the threshold's default.

    Examples
    --------
    >>> parse_threshold_flags(["over_declared.buffer_m=2"], domain="farmland")
    {'farmland.over_declared': {'buffer_m': 2.0}}
    """
    from geosup.rules import REGISTRY, load_builtin_rules

    load_builtin_rules()
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        left, sep, text = item.partition("=")
        code, dot, name = left.strip().rpartition(".")
        if not sep or not dot or not code or not name:
            msg = (f"--threshold {item!r} is not RULE.NAME=VALUE "
                   "(e.g. --threshold fuel.away_from_station.radius_m=500)")
            raise ConfigError(msg)
        if domain and not code.startswith(f"{domain}."):
            code = f"{domain}.{code}"
        defaults = REGISTRY.get(code).defaults()
        if name not in defaults:
            msg = (f"rule {code} has no threshold {name!r}; its thresholds: "
                   f"{', '.join(defaults) or 'none'}")
            raise ConfigError(msg)
        out.setdefault(code, {})[name] = threshold_value(text.strip(), defaults[name],
                                                         f"{code}.{name}")
    return out


def threshold_option(domain: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``-t/--threshold RULE.NAME=VALUE`` option (repeatable) of a check command."""
    return click.option(
        "-t", "--threshold", "thresholds", multiple=True, metavar="RULE.NAME=VALUE",
        help=f"Override a threshold, e.g. {_EXAMPLES.get(domain, 'RULE.NAME=VALUE')} "
             f"(the '{domain}.' prefix may be left out). Repeatable.")


_EXAMPLES = {"fuel": "away_from_station.radius_m=500",
             "farmland": "over_declared.buffer_m=2",
             "requisition": "built_after_notice.min_changed_share=0.1"}
