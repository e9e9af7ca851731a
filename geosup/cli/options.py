"""Options and helpers shared by every ``geosup`` command."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from geosup.config import Settings

__all__ = [
    "CliState",
    "alert_filter_options",
    "overwrite_option",
    "progress",
    "report_inputs",
    "state",
    "store_option",
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
