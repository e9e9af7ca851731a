"""``geosup rules``: every rule with its thresholds."""

from __future__ import annotations

import sys

import click
import pandas as pd

from geosup.cli.options import state

__all__ = ["rules"]


@click.command()
@click.option("--domain", type=click.Choice(["fuel", "farmland", "requisition"]), default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def rules(domain: str | None, fmt: str) -> None:
    """List every rule with its thresholds: value in force, default, unit and source."""
    from geosup.rules import Registry, load_builtin_rules, rules_table

    registry = load_builtin_rules()
    if domain:
        registry = Registry({r.code: r for r in registry.select(domain=domain)})
    settings = state().settings
    table = rules_table(registry, settings)
    known = [(r.code, t.name) for r in load_builtin_rules() for t in r.thresholds]
    for name in settings.unknown_rule_settings(known):
        click.echo(f"warning: setting {name} names no rule threshold", err=True)
    if fmt == "csv":
        table.to_csv(sys.stdout, index=False)
    elif fmt == "json":
        click.echo(table.to_json(orient="records", force_ascii=False, indent=2))
    elif not len(table):
        click.echo("no rules registered yet", err=True)
    else:
        with pd.option_context("display.max_rows", None, "display.width", 200,
                               "display.max_columns", None, "display.max_colwidth", 50):
            click.echo(table.drop(columns=["inputs"]).to_string(index=False))
