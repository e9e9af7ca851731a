"""``geosup imagery compare`` and ``geosup imagery ingest``: requisition claims against imagery."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import pandas as pd

from geosup.cli.options import (
    INPUT_CRS_HINT,
    RunStore,
    input_crs_option,
    overwrite_option,
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
from geosup.errors import ConfigError

__all__ = ["imagery", "parse_mappings", "parse_thresholds"]


def parse_mappings(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """``--map input.canonical=Source column`` flags as ``{input: {canonical: column}}``.

    Examples
    --------
    >>> parse_mappings(["claims.claim_id=申报编号", "persons.died_on=死亡日期"])
    {'claims': {'claim_id': '申报编号'}, 'persons': {'died_on': '死亡日期'}}
    """
    from imagery.compare import INPUTS

    flags = parse_column_flags(items, inputs=INPUTS, example="claims.claimed_area_m2=面积")
    return {name: {c: cols[-1] for c, cols in m.items()} for name, m in flags.items()}


def parse_thresholds(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``-t rule.name=value`` flags as ``{rule code: {threshold: value}}``.

    The rule may be given without its ``requisition.`` prefix; values take the type of the
    threshold's default (a list threshold takes comma-separated values).

    Examples
    --------
    >>> parse_thresholds(["built_after_notice.min_changed_share=0.1"])
    {'requisition.built_after_notice': {'min_changed_share': 0.1}}
    """
    return parse_threshold_flags(items, domain="requisition")


def _with_overrides(settings: Any, overrides: dict[str, dict[str, Any]]) -> Any:
    """Settings with ``-o`` threshold overrides on top (as command-line values)."""
    if not overrides:
        return settings
    from geosup.config import Settings

    merged = Settings(values={**settings.values}, sources=dict(settings.sources),
                      env_rules=dict(settings.env_rules))
    rules = {code: dict(values) for code, values in (settings.values.get("rules") or {}).items()}
    for code, values in overrides.items():
        rules.setdefault(code, {}).update(values)
        for name in values:
            merged.sources[f"rules.{code}.{name}"] = "command line"
    merged.values["rules"] = rules
    return merged


def _date(value: str | None, what: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        msg = f"{what} {value!r} is not a date (YYYY-MM-DD)"
        raise ConfigError(msg) from None


@contextmanager
def _fraction_bar(label: str) -> Iterator[Callable[[float, str], None]]:
    """A progress bar fed with ``progress(fraction, message)`` callbacks."""
    steps = 1000
    with progress(steps, label=label) as bar:
        done = [0]

        def update(fraction: float, message: str = "") -> None:
            target = round(min(max(fraction, 0.0), 1.0) * steps)
            if target > done[0]:
                bar(target - done[0])
                done[0] = target

        yield update


@click.group()
def imagery() -> None:
    """Requisition imagery: compare dates around a notice date, score every claim."""


@imagery.command("compare")
@click.option("--before", metavar="PATH", default=None,
              help="Image before the notice date: a raster or a band-set folder.")
@click.option("--after", metavar="PATH", default=None,
              help="Image after the notice date.")
@click.option("--image", "more", multiple=True, metavar="PATH",
              help="More dates (repeatable); each project takes the last image before its "
                   "notice date and the first after it.")
@click.option("--catalog", metavar="FILE", default=None,
              help="Image catalog (CSV or TOML: path, acquired_on, sensor, bands …).")
@click.option("--before-date", "before_date", metavar="DATE", default=None,
              help="Acquisition date of --before when its metadata has none.")
@click.option("--after-date", "after_date", metavar="DATE", default=None,
              help="Acquisition date of --after when its metadata has none.")
@click.option("--claims", required=True, metavar="PATH",
              help="Claims: claim_id, project_id, claimant_id, item, claimed_area_m2, amount "
                   "and the claim polygons (GPKG, GeoJSON, CSV with WKT, postgresql://…).")
@click.option("--projects", metavar="PATH", default=None,
              help="Requisition projects: project_id, notice_date (geometry optional).")
@click.option("--persons", metavar="PATH", default=None,
              help="Persons registry: person_id = claimant_id, died_on, moved_in_on …")
@click.option("--notice-date", "notice_date", metavar="DATE", default=None,
              help="Notice date of claims whose project gives none.")
@store_option
@click.option("--map", "mappings", multiple=True, metavar="INPUT.CANONICAL=COLUMN",
              help="Column mapping, e.g. --map claims.claimed_area_m2=\"面积\". Repeatable.")
@input_crs_option
@unit_option("claims.claimed_area_m2=mu")
@click.option("--chips", "chips", metavar="DIR", default=None,
              type=click.Path(file_okay=False),
              help="Folder of the before/after PNG chips (default WORKDIR/chips).")
@click.option("--workdir", metavar="DIR", default="geosup-imagery", show_default=True,
              type=click.Path(file_okay=False),
              help="Folder of the aligned rasters and change indices.")
@threshold_option("requisition")
@click.option("--rule", "rules", multiple=True, metavar="CODE",
              help="Run only these rules (e.g. requisition.built_after_notice). Repeatable.")
def compare_cmd(before: str | None, after: str | None, more: tuple[str, ...],
                catalog: str | None, before_date: str | None, after_date: str | None,
                claims: str, projects: str | None, persons: str | None,
                notice_date: str | None, store: str, mappings: tuple[str, ...],
                input_crs: tuple[str, ...], units: tuple[str, ...], chips: str | None,
                workdir: str,
                thresholds: tuple[str, ...], rules: tuple[str, ...]) -> None:
    """Compare imagery before and after the notice date; write alerts to the store.

    Prints rows in / used / rejected per input (stderr) and the alerts per rule (stdout).
    Everything lands in the store in one run: alerts (a re-run updates them and keeps
    their review status), rejects, the input counts and the claims, projects, persons
    and image layers.
    """
    from geosup.store import describe_input
    from imagery.catalog import Catalog
    from imagery.compare import INPUTS, combined_counts, read_inputs, write_run
    from imagery.compare import compare as run_compare

    settings = state().settings
    st = RunStore(store)
    overrides = parse_thresholds(thresholds)
    cli_map = parse_mappings(mappings)
    if (before is None) != (after is None):
        msg = "give both --before and --after (or neither, with --image/--catalog)"
        raise ConfigError(msg)
    if before is None and not more and catalog is None:
        msg = "no images: give --before and --after, or --image (repeatable) or --catalog"
        raise ConfigError(msg)
    cat = Catalog.read(catalog) if catalog else Catalog()
    b_entry = a_entry = None
    if before is not None and after is not None:
        b_entry = cat.register(before, acquired_on=_date(before_date, "--before-date"))
        a_entry = cat.register(after, acquired_on=_date(after_date, "--after-date"))
    for path in more:
        cat.register(path)
    paths = {"claims": claims, "projects": projects, "persons": persons}
    columns = {name: {**settings.columns(name), **cli_map.get(name, {})} for name in INPUTS}
    timezone = str(settings.get("timezone") or "Asia/Shanghai")
    declared_units = units_of(settings, units, inputs=INPUTS)
    declared_crs = parse_input_crs_flags(input_crs, inputs=INPUTS)
    inputs = read_inputs(paths, columns=columns, crs=declared_crs, timezone=timezone,
                         units=declared_units, crs_hint=INPUT_CRS_HINT)
    has_notice = (inputs.get("projects") is not None or notice_date is not None
                  or "notice_date" in inputs.frames["claims"].columns)
    explicit = {}
    if not has_notice:
        if b_entry is None:
            msg = ("no notice date: give --projects (project_id, notice_date), --notice-date, "
                   "or the pair --before/--after to compare")
            raise ConfigError(msg)
        explicit = {"before": b_entry, "after": a_entry}
    merged = _with_overrides(settings, overrides)
    work = Path(workdir)
    params = {"images": cat.ids, "notice_date": notice_date, "rules": list(rules) or None,
              "thresholds": overrides, "workdir": str(work.resolve()),
              "columns": {k: v for k, v in columns.items() if v},
              "input_crs": declared_crs, "units": declared_units}
    described = [describe_input(list(e.paths), name=e.image_id)
                 for e in cat] + [describe_input(p, name=n) for n, p in paths.items() if p]
    with st.run("imagery compare", inputs=described, params=params) as run:
        with _fraction_bar("imagery compare") as bar:
            result = run_compare(
                cat, inputs.get("claims"), projects=inputs.get("projects"),
                persons=inputs.get("persons"), settings=merged, workdir=work,
                chips_dir=chips, notice_date=_date(notice_date, "--notice-date"),
                rules=list(rules) or None, run_id=run.run_id, progress=bar,
                source_rows=inputs.source_rows, **explicit)
        written = write_run(run, result, inputs=inputs, images=cat)
        run_id = run.run_id
    url = st.store.url
    report_inputs(combined_counts(inputs, result))
    summary = result.summary()
    if len(summary):
        with pd.option_context("display.width", 200, "display.max_rows", None):
            click.echo(summary.to_string(index=False))
    counts = written["alerts"]
    pairs = "; ".join(f"{p['before']} ({p['before_date']}) -> {p['after']} ({p['after_date']})"
                      for p in result.pairs) or "-"
    click.echo(f"{len(result.alerts):,} alert(s): {counts['inserted']:,} new, "
               f"{counts['updated']:,} updated; {written['rejects']:,} rejected row(s); "
               f"{result.inconclusive:,} inconclusive claim(s) not scored; images {pairs}; "
               f"run {run_id} in {url}")




@imagery.command("ingest")
@click.argument("src", type=click.Path(dir_okay=False, readable=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@click.option("--blocksize", type=click.IntRange(16, 4096), default=512, show_default=True,
              help="Tile size in pixels (multiple of 16).")
@click.option("--compress", default="deflate", show_default=True,
              help="deflate, zstd, lzw or none.")
@click.option("--acquired-on", "acquired_on", metavar="DATE", default=None,
              help="Acquisition date to record (when the metadata has none).")
@overwrite_option
def ingest(src: str, dst: str, blocksize: int, compress: str, acquired_on: str | None,
           overwrite: bool) -> None:
    """Convert archive imagery SRC to a tiled Cloud-Optimised GeoTIFF DST with overviews."""
    from imagery.catalog import ingest_cog, read_acquisition_date

    if blocksize % 16:
        msg = f"--blocksize {blocksize} is not a multiple of 16"
        raise ConfigError(msg)
    out = ingest_cog(src, dst, blocksize=blocksize, compress=compress, overwrite=overwrite,
                     acquired_on=_date(acquired_on, "--acquired-on"))
    day = read_acquisition_date(out)
    click.echo(f"{out} (COG, {blocksize} px tiles, {compress}; acquired "
               f"{day.isoformat() if day else 'unknown: give --acquired-on'})")
