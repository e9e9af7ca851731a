"""``geosup fuel audit``: fuel-card transactions against GPS tracks.

Reads the five inputs with :func:`geosup.io.read_table` (column mappings from ``--map`` and
the ``[columns.<input>]`` settings, times in ``--tz``), audits them with
:func:`trajectories.audit.audit` and writes alerts, rejects, the input counts and the
stations layer into the store in one run. Rows in/used/rejected per input go to stderr; the
alert counts per rule and the unit-level summary go to stdout.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pandas as pd

from geosup.cli.options import (
    INPUT_CRS_HINT,
    RunStore,
    input_crs_option,
    parse_column_flags,
    parse_input_crs_flags,
    parse_threshold_flags,
    progress,
    report_inputs,
    state,
    store_option,
    threshold_option,
    unit_option,
    units_of,
)
from geosup.config import Settings
from geosup.errors import ConfigError, GeosupWarning

__all__ = ["fuel", "parse_maps", "parse_thresholds"]

_INPUTS = ("fixes", "transactions", "stations", "vehicles", "cards")
_SYSTEMS = ("wgs84", "gcj02", "bd09", "cgcs2000")


def parse_maps(items: Sequence[str], settings: Settings | None = None
               ) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, list[str]]]]:
    """Column mappings per input from ``--map input.canonical=Source column`` items.

    The ``[columns.<input>]`` settings come first; ``--map`` overrides them per column. A
    canonical column mapped more than once joins its source columns with a space
    (``--map transactions.time="Transaction Date" --map transactions.time="Transaction Time"``;
    in ``geosup.toml``: ``time = ["Transaction Date", "Transaction Time"]``).

    Returns
    -------
    columns, combine_columns : dict
        Per input, as :func:`trajectories.demo.read_fuel_inputs` takes them.

    Examples
    --------
    >>> parse_maps(["transactions.card_id=Card Number ID", "transactions.time=Date",
    ...             "transactions.time=Time"])
    ({'transactions': {'card_id': 'Card Number ID'}}, {'transactions': {'time': ['Date', 'Time']}})
    """
    given = parse_column_flags(items, inputs=_INPUTS)
    columns: dict[str, dict[str, str]] = {}
    combine: dict[str, dict[str, list[str]]] = {}
    for name in _INPUTS:
        configured = settings.get(f"columns.{name}", {}) if settings is not None else {}
        if not isinstance(configured, Mapping):
            settings.columns(name)  # raises the ConfigError that explains the layout
        sources_of: dict[str, list[str]] = {
            str(k): [str(x) for x in v] if isinstance(v, list | tuple) else [str(v)]
            for k, v in (configured or {}).items()}
        sources_of.update(given.get(name, {}))
        for canonical, sources in sources_of.items():
            if len(sources) == 1:
                columns.setdefault(name, {})[canonical] = sources[0]
            else:
                combine.setdefault(name, {})[canonical] = sources
    return columns, combine


def parse_thresholds(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--threshold rule.name=value`` items as ``{rule: {name: value}}``, checked.

    The rule and the threshold must exist; the value is read as TOML (``500``, ``true``,
    ``"08:30"``) or text and converted to the type of the threshold's default.

    Examples
    --------
    >>> parse_thresholds(["fuel.away_from_station.radius_m=500"])
    {'fuel.away_from_station': {'radius_m': 500.0}}
    """
    return parse_threshold_flags(items, domain="fuel")


def _settings_with(settings: Settings, thresholds: Mapping[str, Mapping[str, Any]],
                   tz: str) -> Settings:
    """A copy of ``settings`` with command-line thresholds and time zone applied."""
    out = copy.deepcopy(settings)
    out.values["timezone"] = tz
    rules = out.values.setdefault("rules", {})
    for code, values in thresholds.items():
        rules.setdefault(code, {}).update(values)
        for name in values:
            out.sources[f"rules.{code}.{name}"] = "command line"
    return out


def _format_table(frame: pd.DataFrame) -> str:
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.max_columns", None, "display.max_colwidth", 60):
        return frame.to_string(index=False, float_format="{:.2f}".format)


def _rule_counts(alerts: pd.DataFrame, rules: Sequence[str], checks: pd.DataFrame) -> pd.DataFrame:
    """Alerts per rule, with what each rule could check (``ran`` no: it needs a GPS track)."""
    counts = alerts.groupby("rule").size() if len(alerts) else pd.Series(dtype="int64")
    table = pd.DataFrame({"rule": list(rules)})
    if isinstance(checks, pd.DataFrame) and len(checks) and "rule" in checks.columns:
        extra = [c for c in ("ran", "checked", "not_checkable") if c in checks.columns]
        table = table.merge(checks[["rule", *extra]].drop_duplicates("rule"), on="rule",
                            how="left")
        if "ran" in table.columns:
            table["ran"] = table["ran"].map({True: "yes", False: "no"}).fillna("no")
        for c in ("checked", "not_checkable"):
            if c in table.columns:
                table[c] = table[c].fillna(0).astype("int64")
    table.insert(1, "alerts", table["rule"].map(counts).fillna(0).astype("int64"))
    return table


@click.group()
def fuel() -> None:
    """Fuel cards against GPS tracks."""


@fuel.command("audit")
@click.option("--fixes", metavar="F", default=None,
              help="GPS fixes (CSV, Parquet/GeoParquet, GPKG, postgresql://…), or a directory "
                   "of GeoParquet partitions (vehicle × month), streamed. Without it only the "
                   "rules that need no track run.")
@click.option("--transactions", metavar="T", required=True, help="Fuel-card transactions.")
@click.option("--stations", metavar="S", default=None,
              help="Fuel stations (points). Without it (an export without coordinates) the "
                   "rules that compare the track with the station are not checkable.")
@click.option("--vehicles", metavar="V", required=True, help="The vehicle register.")
@click.option("--cards", metavar="C", default=None,
              help="Fuel cards and their vehicles. Without it the transactions must carry "
                   "vehicle_id.")
@store_option
@click.option("--map", "maps", multiple=True, metavar="INPUT.COLUMN=SOURCE",
              help="Column mapping, e.g. \"transactions.card_id=Card Number ID\"; map a "
                   "column twice to join two source columns (a date and a time). Repeatable.")
@click.option("--tz", default=None, metavar="ZONE",
              help="Zone of times without an offset (default: the timezone setting, "
                   "Asia/Shanghai).")
@click.option("--stations-crs", type=click.Choice(_SYSTEMS), default="wgs84", show_default=True,
              help="Coordinate system of the station points (GCJ-02 from Amap/Tencent, BD-09 "
                   "from Baidu); the CRS of a stations file that carries none is declared "
                   "with --input-crs stations=EPSG:<code>.")
@click.option("--fixes-crs", type=click.Choice(_SYSTEMS), default="wgs84", show_default=True,
              help="Coordinate system of the fixes.")
@input_crs_option
@unit_option("transactions.litres=gal")
@click.option("--calendar", "calendar_file", type=click.Path(dir_okay=False, readable=False),
              default=None,
              help="A calendar CSV (date, kind[, name]) overriding weekends and holidays.")
@click.option("--rule", "rules", multiple=True, metavar="CODE",
              help="Run only these rules (fuel.* patterns allowed). Repeatable.")
@threshold_option("fuel")
@click.option("--period", nargs=2, default=None, metavar="START END",
              help="Audit only transactions in this period (local dates, inclusive).")
def audit_command(fixes: str | None, transactions: str, stations: str | None, vehicles: str,
                  cards: str | None, store: str, maps: tuple[str, ...], tz: str | None,
                  stations_crs: str, fixes_crs: str, input_crs: tuple[str, ...],
                  units: tuple[str, ...], calendar_file: str | None,
                  rules: tuple[str, ...], thresholds: tuple[str, ...],
                  period: tuple[str, str] | None) -> None:
    """Match fuel-card transactions with GPS tracks and store the alerts.

    Prints rows in/used/rejected per input (stderr), then the alerts per rule and the
    budget-unit summary (stdout).
    """
    from geosup.store import describe_input
    from trajectories.audit import audit
    from trajectories.demo import read_fuel_inputs
    from trajectories.rules import FUEL_RULES

    cli = state()
    st = RunStore(store)
    zone = tz or str(cli.settings.get("timezone") or "Asia/Shanghai")
    _check_zone(zone)
    overrides = parse_thresholds(thresholds)
    settings = _settings_with(cli.settings, overrides, zone)
    columns, combine = parse_maps(maps, cli.settings)
    declared_units = units_of(cli.settings, units, inputs=_INPUTS)
    declared_crs = parse_input_crs_flags(input_crs, inputs=_INPUTS)
    window = _period(period)
    selected: list[str] | None = list(rules) or None
    calendar = None
    if calendar_file is not None:
        from trajectories.calendar import WorkCalendar

        calendar = WorkCalendar.from_settings(settings, user_days=calendar_file)
    paths = {"fixes": fixes, "transactions": transactions, "stations": stations,
             "vehicles": vehicles, "cards": cards}
    streamed = fixes is not None and Path(fixes).is_dir()
    if streamed:
        if fixes_crs != "wgs84":
            msg = "--fixes-crs applies to a fixes file; a partitioned dataset must be WGS-84"
            raise ConfigError(msg)
        if "fixes" in declared_units:
            msg = ("--unit fixes.… applies to a fixes file; a partitioned dataset is read as "
                   "vehicle_id, time and position only")
            raise ConfigError(msg)
    read = read_fuel_inputs({k: v for k, v in paths.items() if not (k == "fixes" and streamed)},
                            columns=columns, combine_columns=combine, tz=zone,
                            coord_systems={"fixes": fixes_crs, "stations": stations_crs},
                            units=declared_units, crs=declared_crs, crs_hint=INPUT_CRS_HINT)
    if streamed:
        total, parts = _partitions(Path(fixes), columns.get("fixes"))
    else:
        total, parts = 1, read.get("fixes")
    with progress(total, label="Auditing") as bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", GeosupWarning)  # result.warnings carries them
        if streamed:
            parts = _counting(parts, bar)
        result = audit(parts, read["transactions"], read.get("stations"),
                       read["vehicles"], read.get("cards"), settings=settings, calendar=calendar,
                       rules=selected, period=window,
                       progress=None if streamed else _adapter(bar),
                       thresholds=overrides or None, tz=zone)
    counts = {name: c for name, c in result.counts.items() if paths.get(name) is not None}
    report_inputs(counts)
    if not cli.quiet:
        for text in result.warnings:
            click.echo(f"warning: {text}", err=True)
    described = [describe_input(p, name=n) for n, p in paths.items() if p is not None]
    params = {"rules": selected, "thresholds": overrides, "period": list(period or ()),
              "tz": zone, "stations_crs": stations_crs, "fixes_crs": fixes_crs,
              "input_crs": declared_crs, "units": declared_units,
              "map": list(maps), "calendar": calendar_file}
    with st.run("fuel audit", inputs=described, params=params) as run:
        written = run.write_alerts(result.alerts)
        run.add_rejects(result.rejects)
        for source, c in counts.items():
            run.record_input(source, rows_in=c["rows_in"], rows_used=c["rows_used"],
                             rows_rejected=c["rows_rejected"])
        if "stations" in read:
            run.write_layer("fuel_stations", read["stations"].frame, id_column="station_id")
    ran = [r for r in FUEL_RULES if not selected or r in _expand(selected)]
    click.echo(_format_table(_rule_counts(result.alerts, ran, result.checks)))
    units = result.units
    if isinstance(units, pd.DataFrame) and len(units):
        click.echo("")
        click.echo(_format_table(units))
    if not cli.quiet:
        click.echo(f"{len(result.alerts):,} alerts ({written.inserted:,} new, "
                   f"{written.updated:,} updated) in {store}", err=True)


def _expand(patterns: Sequence[str]) -> set[str]:
    from trajectories.rules import FUEL_RULES

    out: set[str] = set()
    for p in patterns:
        out |= {r for r in FUEL_RULES if r == p or (p.endswith("*") and r.startswith(p[:-1]))}
    return out


def _partitions(root: Path, columns: Mapping[str, str] | None
                ) -> tuple[int, Iterator[pd.DataFrame]]:
    """The fixes of a dataset partitioned by vehicle and month, streamed; and how many."""
    import pyarrow.parquet as pq

    from trajectories.audit import read_fixes_partitions

    files = sorted(p for p in root.rglob("*.parquet") if p.is_file())
    total = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    return max(total, 1), read_fixes_partitions(root, columns=columns)


def _counting(parts: Iterable[pd.DataFrame], update: Any) -> Iterator[pd.DataFrame]:
    """Advance the bar by each partition's fixes once the audit asks for the next one."""
    for part in parts:
        yield part
        update(len(part))


def _adapter(update: Any) -> Any:
    """Turn the audit's ``progress(partitions_done, total)`` calls into steps of the bar."""
    last = [0]

    def callback(done: int, total: int | None = None) -> None:
        step = int(done) - last[0]
        if step > 0:
            update(step)
            last[0] = int(done)

    return callback


def _period(period: tuple[str, str] | None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """``--period START END`` as the audit's half-open ``[start, end)``.

    A date without a time of day is a whole local day: ``--period 2024-09-01 2024-09-30``
    audits September up to and including the 30th.
    """
    if not period:
        return None
    try:
        start, end = (pd.Timestamp(p) for p in period)
    except (ValueError, TypeError) as err:
        msg = f"--period {' '.join(period)}: not two dates (e.g. --period 2024-09-01 2024-09-30)"
        raise ConfigError(msg) from err
    if len(period[1].strip()) <= 10:  # a date: include the whole day
        end = end + pd.Timedelta(days=1)
    if end <= start:
        msg = f"--period {' '.join(period)}: the end is before the start"
        raise ConfigError(msg)
    return start, end


def _check_zone(zone: str) -> None:
    try:
        pd.Timestamp("2024-01-01").tz_localize(zone)
    except Exception as err:  # any failure means an unknown zone
        msg = f"--tz {zone!r} is not a time zone (e.g. Asia/Shanghai, America/Chicago, UTC)"
        raise ConfigError(msg) from err
