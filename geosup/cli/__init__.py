"""The ``geosup`` command line: one group, a module per command group.

Results go to stdout, messages and logs to stderr. A :class:`~geosup.errors.GeosupError`
prints one line and exits 1; ``-v`` adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from typing import Any

import click

from geosup import __version__
from geosup.cli.options import CliState
from geosup.config import CONFIG_FILE, Settings
from geosup.errors import GeosupError, GeosupWarning

__all__ = ["main"]


class GeosupGroup(click.Group):
    """A click group that turns errors into one clear line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except BrokenPipeError:
            # the reader went away (`geosup alerts list | head`): stop quietly, as cat does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(141)
        except GeosupError as err:
            _fail(ctx, err, expected=True)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # noqa: BLE001 - the CLI's last line of defence
            _fail(ctx, err, expected=False)


def _fail(ctx: click.Context, err: BaseException, *, expected: bool) -> None:
    obj = ctx.find_object(CliState)
    verbose = obj is not None and obj.verbosity > 0
    if verbose:
        traceback.print_exception(err, file=sys.stderr)
    text = str(err) or type(err).__name__
    if expected:
        click.echo(f"Error: {text}", err=True)
    else:
        hint = "" if verbose else " (run with -v for the traceback)"
        click.echo(f"Error: unexpected {type(err).__name__}: {text}{hint}", err=True)
    ctx.exit(1)


def _show_geosup_warnings(*, quiet: bool) -> None:
    """geosup's own warnings as one ``warning: …`` line each (none under -q)."""
    shown = warnings.showwarning
    if getattr(shown, "geosup", False):
        shown = shown.fallback  # type: ignore[attr-defined]

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        if issubclass(category, GeosupWarning):
            if not quiet:
                click.echo(f"warning: {message}", err=True)
            return
        shown(message, category, filename, lineno, file, line)

    show.geosup = True  # type: ignore[attr-defined]
    show.fallback = shown  # type: ignore[attr-defined]
    warnings.showwarning = show


def _show_versions(settings: Settings) -> None:
    from geosup.versions import show_versions

    click.echo(show_versions(store=settings.get("store")))


@click.group(cls=GeosupGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help=f"Settings file (default ./{CONFIG_FILE} when present).")
@click.version_option(__version__, "--version", prog_name="geosup")
@click.option("--show-versions", is_flag=True,
              help="Show Python, GEOS, GDAL, PROJ, PostGIS (of the configured store, when "
                   "reachable) and package versions.")
@click.pass_context
def main(ctx: click.Context, verbose: int, quiet: bool, config: str | None,
         show_versions: bool) -> None:
    """geosup: check public spending against geography.

    Fuel cards against GPS tracks, declared farmland against parcels, requisition
    claims against imagery; every check ends in reviewable alerts.
    """
    level = logging.ERROR if quiet else [logging.WARNING, logging.INFO,
                                         logging.DEBUG][min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    _show_geosup_warnings(quiet=quiet)
    obj = CliState(settings=Settings(), verbosity=-1 if quiet else verbose)
    ctx.obj = obj
    try:
        obj.settings = Settings.load(file=config or CONFIG_FILE, required_file=bool(config))
    except GeosupError as err:
        _fail(ctx, err, expected=True)
    if show_versions:
        _show_versions(obj.settings)
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
        ctx.exit(2)


def _register() -> None:
    from geosup.cli import alerts, db, demo, export, farmland, fuel, rules

    main.add_command(alerts.alerts)
    main.add_command(rules.rules)
    main.add_command(db.db)
    main.add_command(export.export)
    main.add_command(demo.demo)
    main.add_command(farmland.farmland)
    main.add_command(fuel.fuel)

    from geosup.cli import map as map_cmd

    main.add_command(map_cmd.map_)

    from geosup.cli import imagery as imagery_cmd
    main.add_command(imagery_cmd.imagery)


_register()
