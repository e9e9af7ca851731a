"""``geosup farmland reconcile``: declared farmland against reference parcels."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
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
from geosup.errors import ConfigError, GeometryRepairWarning

__all__ = ["farmland", "parse_mappings", "parse_thresholds"]


def parse_mappings(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--map input.canonical=Source column`` flags as ``{input: {canonical: column}}``.

    Examples
    --------
    >>> parse_mappings(["declarations.declared_area=面积(亩)", "parcels.parcel_id=DKBM"])
    {'declarations': {'declared_area': '面积(亩)'}, 'parcels': {'parcel_id': 'DKBM'}}
    """
    from geosup.farmland.reconcile import INPUTS

    flags = parse_column_flags(items, inputs=INPUTS,
                               example="declarations.declared_area=Area (mu)")
    return {name: {c: cols[-1] for c, cols in m.items()} for name, m in flags.items()}


def parse_thresholds(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``-t rule.name=value`` flags as ``{rule code: {threshold: value}}``.

    The rule may be given without its ``farmland.`` prefix. Values take the type of
    the threshold's default (a list threshold takes comma-separated values).

    Examples
    --------
    >>> parse_thresholds(["over_declared.buffer_m=2", "farmland.non_farmland.classes=water,林地"])
    {'farmland.over_declared': {'buffer_m': 2.0}, 'farmland.non_farmland': {'classes': \
('water', '林地')}}
    """
    return parse_threshold_flags(items, domain="farmland")


@click.group()
def farmland() -> None:
    """Declared farmland against reference parcels, land use and the persons registry."""


@farmland.command("reconcile")
@click.option("--declarations", required=True, metavar="PATH",
              help="Declarations (by parcel id and/or drawn): GPKG, CSV, … or postgresql://.")
@click.option("--parcels", required=True, metavar="PATH",
              help="Reference parcels with their eligible area.")
@click.option("--land-use", "land_use", metavar="PATH", default=None,
              help="Land-use layer (classes; built-up, water, forest, road are non-farm).")
@click.option("--persons", metavar="PATH", default=None,
              help="Persons registry (person_id = applicant_id, died_on, is_official …).")
@click.option("--previous", metavar="PATH", default=None,
              help="Declarations of earlier years.")
@store_option
@click.option("--engine", type=click.Choice(["inprocess", "postgis"]), default="inprocess",
              show_default=True, help="Where the overlay runs (postgis needs a "
                                      "postgresql:// store).")
@click.option("--area-unit", "area_unit", metavar="UNIT", default=None,
              help="Unit of declared_area and eligible_area, and of the areas the alerts "
                   "report: mu, ha or m2 (required here or as area_unit in geosup.toml). An "
                   "input in another unit: --unit declarations.declared_area=ha.")
@click.option("--crs", "crs", metavar="EPSG", default=None,
              help="Metric CRS to measure in (default: CGCS2000 Gauss-Krüger zone in China, "
                   "UTM elsewhere, chosen for the extent).")
@input_crs_option
@unit_option("declarations.declared_area=ha")
@click.option("--map", "mappings", multiple=True, metavar="INPUT.CANONICAL=COLUMN",
              help="Column mapping, e.g. --map declarations.declared_area=\"面积(亩)\" "
                   "(adds to [columns.<input>] of geosup.toml). Repeatable.")
@click.option("--year", "years", multiple=True, type=int,
              help="Year under review (default: the years of the declarations). Repeatable.")
@threshold_option("farmland")
@click.option("--rule", "rules", multiple=True, metavar="CODE",
              help="Run only these rules (e.g. farmland.double_claim). Repeatable.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Threads of the in-process engine.")
def reconcile(declarations: str, parcels: str, land_use: str | None, persons: str | None,
              previous: str | None, store: str, engine: str, area_unit: str | None,
              crs: str | None, input_crs: tuple[str, ...], units: tuple[str, ...],
              mappings: tuple[str, ...],
              years: tuple[int, ...], thresholds: tuple[str, ...], rules: tuple[str, ...],
              workers: int) -> None:
    """Reconcile declarations against reference parcels; write alerts to the store.

    Prints rows in / used / rejected per input (stderr) and the alerts per rule
    (stdout). Everything lands in the store in one run: alerts (a re-run updates
    them and keeps their review status), rejects, the input counts and the input
    layers as used.
    """
    from geosup.crs import normalize_area_unit
    from geosup.farmland.reconcile import (
        INPUTS,
        combined_counts,
        read_inputs,
        reconcile_in_database,
        write_run,
    )
    from geosup.farmland.reconcile import reconcile as run_reconcile
    from geosup.store import describe_input, is_database_url

    settings = state().settings
    st = RunStore(store)
    if area_unit is None and settings.source("area_unit") != "default":
        area_unit = str(settings.get("area_unit"))
    if area_unit is None:
        msg = ("the area unit of declared_area and eligible_area is not declared; give "
               "--area-unit mu|ha|m2 (or area_unit in geosup.toml)")
        raise ConfigError(msg)
    area_unit = normalize_area_unit(area_unit)
    overrides = parse_thresholds(thresholds)
    cli_map = parse_mappings(mappings)
    if engine == "postgis" and not is_database_url(store):
        msg = (f"--engine postgis runs the overlay in the store's database; {store!r} is not "
               "a postgresql:// store (use --store postgresql://… or --engine inprocess)")
        raise ConfigError(msg)
    paths = {"declarations": declarations, "parcels": parcels, "land_use": land_use,
             "persons": persons, "previous": previous}
    columns = {name: {**settings.columns(name), **cli_map.get(name, {})} for name in INPUTS}
    declared_units = units_of(settings, units, inputs=INPUTS)
    declared_crs = parse_input_crs_flags(input_crs, inputs=INPUTS)
    tables = _tables_in_store(paths, store) if engine == "postgis" else None
    srid = None
    if tables is not None:
        srid = _metric_srid(crs)
        inside = sorted(set(declared_units) & set(tables))
        if inside:
            msg = (f"--unit for {', '.join(inside)}: inputs reconciled inside PostGIS are "
                   "read in --area-unit; convert them there, or read them as files")
            raise ConfigError(msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeometryRepairWarning)  # counted below
        to_read = paths if tables is None else {"persons": persons}
        inputs = read_inputs(to_read, columns=columns, crs=declared_crs,
                             timezone=str(settings.get("timezone") or "Asia/Shanghai"),
                             need=("declarations", "parcels") if tables is None else (),
                             units=declared_units, area_unit=area_unit,
                             crs_hint=INPUT_CRS_HINT)
    merged = _with_overrides(settings, overrides)
    params = {"engine": engine, "area_unit": area_unit, "crs": crs,
              "input_crs": declared_crs, "units": declared_units,
              "years": list(years) or None, "rules": list(rules) or None,
              "thresholds": overrides, "columns": {k: v for k, v in columns.items() if v}}
    described = [describe_input(path, name=name) for name, path in paths.items() if path]
    n_decl = sum(len(inputs.frames[n]) for n in ("declarations", "previous")
                 if n in inputs.frames)
    params["in_database"] = tables is not None
    connection = getattr(st.store, "connection", None) if engine == "postgis" else None
    with st.run("farmland reconcile", inputs=described, params=params) as run:
        with progress(max(n_decl, 1), label="farmland overlay") as bar, \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", GeometryRepairWarning)  # counted below
            if tables is not None:
                result = reconcile_in_database(
                    connection, **tables, persons=inputs.get("persons"),
                    area_unit=area_unit, srid=srid, settings=merged, columns=columns,
                    rules=list(rules) or None, progress=bar,
                    years=list(years) or None, run_id=run.run_id)
            else:
                result = run_reconcile(
                    inputs.get("declarations"), inputs.get("parcels"),
                    land_use=inputs.get("land_use"), persons=inputs.get("persons"),
                    previous=inputs.get("previous"), area_unit=area_unit,
                    settings=merged, engine=engine, connection=connection,
                    rules=list(rules) or None, progress=bar, crs=crs,
                    years=list(years) or None, workers=workers, run_id=run.run_id,
                    source_rows=inputs.source_rows)
        written = write_run(run, inputs, result)
        run_id = run.run_id
    url = st.store.url
    report_inputs(combined_counts(inputs, result))
    if not state().quiet and written["repairs"]:
        click.echo(f"{written['repairs']:,} geometries repaired (stored as the layer "
                   "'repairs': source, row, key, reason)", err=True)
    summary = result.summary()
    if len(summary):
        with pd.option_context("display.width", 200, "display.max_rows", None):
            click.echo(summary.to_string(index=False))
    counts = written["alerts"]
    click.echo(f"{len(result.alerts):,} alert(s): {counts['inserted']:,} new, "
               f"{counts['updated']:,} updated; {written['rejects']:,} rejected row(s); "
               f"years {', '.join(map(str, result.context.years)) or '-'}; "
               f"run {run_id} in {url}")


def _tables_in_store(paths: dict[str, str | None], store: str) -> dict[str, str] | None:
    """The tables to reconcile in the database, when every layer lives in the store's one.

    ``postgresql://…/db#schema.table`` inputs in the same database as a ``postgresql://``
    store are cleaned and overlaid there (no round trip through Python); otherwise the
    inputs are read (a database table too) and None is returned.
    """
    from urllib.parse import unquote

    from geosup.store import is_database_url
    from geosup.store.postgis import safe_url

    def base(url: str) -> str:
        return safe_url(str(url).partition("#")[0]).rstrip("/")

    if not is_database_url(store):
        return None
    layers = {k: v for k, v in paths.items() if v and k != "persons"}
    if not all(is_database_url(v) and "#" in str(v) and base(v) == base(store)
               for v in layers.values()):
        return None
    return {name: unquote(str(url).partition("#")[2]) for name, url in layers.items()}


def _metric_srid(crs: str | None) -> int:
    import pyproj

    if crs is None:
        msg = ("inputs that live in PostGIS are measured in the CRS given with --crs (a "
               "projected CRS in metres, e.g. --crs EPSG:4548 for CGCS2000 zone CM 117E)")
        raise ConfigError(msg)
    try:
        code = pyproj.CRS.from_user_input(crs).to_epsg()
    except pyproj.exceptions.CRSError as err:
        msg = f"--crs {crs!r} is not a coordinate reference system: {err}"
        raise ConfigError(msg) from err
    if code is None:
        msg = f"--crs {crs!r} has no EPSG code; PostGIS needs one (e.g. EPSG:4548)"
        raise ConfigError(msg)
    return int(code)


def _with_overrides(settings: Any, overrides: dict[str, dict[str, Any]]) -> Any:
    """Settings with ``-o`` threshold overrides on top (as command-line values)."""
    if not overrides:
        return settings
    from geosup.config import Settings

    flat = {f"rules.{code}.{name}": value for code, values in overrides.items()
            for name, value in values.items()}
    merged = Settings(values={**settings.values}, sources=dict(settings.sources),
                      env_rules=dict(settings.env_rules))
    rules = {code: dict(values) for code, values in
             (settings.values.get("rules") or {}).items()}
    for code, values in overrides.items():
        rules.setdefault(code, {}).update(values)
    merged.values["rules"] = rules
    for key in flat:  # a command-line value wins over the environment
        merged.sources[key] = "command line"
    return merged
