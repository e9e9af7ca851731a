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
    "INPUT_CRS_HINT",
    "CliState",
    "RunStore",
    "alert_filter_options",
    "input_crs_option",
    "overwrite_option",
    "parse_column_flags",
    "parse_input_crs_flags",
    "parse_threshold_flags",
    "parse_unit_flags",
    "progress",
    "report_inputs",
    "state",
    "store_option",
    "threshold_option",
    "threshold_value",
    "unit_option",
    "units_of",
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


def parse_unit_flags(items: Sequence[str], *, inputs: Sequence[str]
                     ) -> dict[str, dict[str, str]]:
    """``--unit INPUT.COLUMN=UNIT`` flags as ``{input: {canonical column: unit}}``, checked.

    The column must hold a quantity and the unit must measure it
    (:func:`geosup.io.normalize_unit`); the unit is kept as its canonical name.

    Examples
    --------
    >>> parse_unit_flags(["transactions.litres=gallons", "transactions.odometer_km=mi"],
    ...                  inputs=("transactions",))
    {'transactions': {'litres': 'gal', 'odometer_km': 'mi'}}
    """
    from geosup.io import normalize_unit

    out: dict[str, dict[str, str]] = {}
    for item in items:
        left, sep, unit = item.partition("=")
        name, dot, column = left.strip().partition(".")
        if not sep or not dot or not column.strip() or not unit.strip():
            msg = (f"--unit {item!r} is not INPUT.COLUMN=UNIT (e.g. --unit "
                   "transactions.litres=gal)")
            raise ConfigError(msg)
        if name not in inputs:
            msg = f"--unit {item!r}: unknown input {name!r}; use one of: {', '.join(inputs)}"
            raise ConfigError(msg)
        try:
            out.setdefault(name, {})[column.strip()] = normalize_unit(column.strip(),
                                                                      unit.strip())
        except ConfigError as err:
            msg = f"--unit {item!r}: {err}"
            raise ConfigError(msg) from err
    return out


def units_of(settings: Settings, items: Sequence[str], *, inputs: Sequence[str]
             ) -> dict[str, dict[str, str]]:
    """The declared units per input: ``[units.<input>]`` settings, then ``--unit`` flags.

    A flag overrides the setting of the same column. Only inputs with a unit appear.

    Examples
    --------
    >>> cfg = Settings.load(file=None, env={"GEOSUP_UNITS__VEHICLES__TANK_L": "gal"})
    >>> units_of(cfg, ["transactions.litres=gal"], inputs=("transactions", "vehicles"))
    {'transactions': {'litres': 'gal'}, 'vehicles': {'tank_l': 'gal'}}
    """
    from geosup.io import normalize_unit

    flags = parse_unit_flags(items, inputs=inputs)
    out: dict[str, dict[str, str]] = {}
    for name in inputs:
        configured = {}
        for column, unit in settings.units(name).items():
            try:
                configured[column] = normalize_unit(column, unit)
            except ConfigError as err:
                msg = f"[units.{name}] {column} = {unit!r}: {err}"
                raise ConfigError(msg) from err
        merged = {**configured, **flags.get(name, {})}
        if merged:
            out[name] = merged
    return out


def unit_option(example: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The ``--unit INPUT.COLUMN=UNIT`` option (repeatable) of a check command."""
    return click.option(
        "--unit", "units", multiple=True, metavar="INPUT.COLUMN=UNIT",
        help=f"The unit a source uses for a column, converted on reading, e.g. --unit "
             f"{example} (adds to [units.<input>] of geosup.toml). Repeatable.")


#: How a check command's error names the flag that declares an input's CRS.
INPUT_CRS_HINT = "--input-crs {input}=EPSG:<code>"


def parse_input_crs_flags(items: Sequence[str], *, inputs: Sequence[str]
                          ) -> dict[str, str]:
    """``--input-crs [INPUT=]CRS`` flags as ``{input: crs}``, each CRS checked.

    ``INPUT=CRS`` declares one input's CRS; a bare ``CRS`` declares it for every input
    (key ``"*"``). Either is used only for an input whose file carries no CRS (a
    Shapefile without ``.prj``, a CSV with WKT geometry).

    Examples
    --------
    >>> parse_input_crs_flags(["EPSG:4490", "stations=EPSG:32616"], inputs=("stations",))
    {'*': 'EPSG:4490', 'stations': 'EPSG:32616'}
    """
    import pyproj

    out: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            name, text = "*", item
        name, text = name.strip(), text.strip()
        if name != "*" and name not in inputs:
            msg = (f"--input-crs {item!r}: unknown input {name!r}; use one of: "
                   f"{', '.join(inputs)} (or a CRS alone for every input)")
            raise ConfigError(msg)
        try:
            pyproj.CRS.from_user_input(text)
        except pyproj.exceptions.CRSError as err:
            msg = (f"--input-crs {item!r}: {text!r} is not a coordinate reference system "
                   "(e.g. EPSG:4326)")
            raise ConfigError(msg) from err
        out[name] = text
    return out


def input_crs_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--input-crs [INPUT=]CRS`` option (repeatable) of a check command."""
    return click.option(
        "--input-crs", "input_crs", multiple=True, metavar="[INPUT=]CRS",
        help="CRS of an input file that carries none (a Shapefile without .prj, a CSV with "
             "WKT geometry), e.g. --input-crs stations=EPSG:4326; a CRS alone applies to "
             "every input. Repeatable.")(func)
