"""``geosup rules``: every rule with its thresholds."""

from __future__ import annotations

import sys

import click
import pandas as pd

from geosup.cli.options import state

__all__ = ["format_rules", "rules"]


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
    table = rules_table(registry, settings=settings)
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
        click.echo(format_rules(table))


#: Units that only repeat what the value says (a list of classes, a yes/no flag, a time).
_NO_UNIT = frozenset({"", "classes", "items", "flag", "HH:MM"})


def _text(value: object, *, width: int = 60) -> str:
    """A threshold value as a reader writes it: lists as words, long ones cut."""
    if isinstance(value, (list, tuple, set, frozenset)):
        text = ", ".join(str(v) for v in value)
    elif value is None or (isinstance(value, float) and pd.isna(value)):
        text = "-"
    else:
        text = str(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def format_rules(table: pd.DataFrame) -> str:
    """The rules table as one block per rule: its line, then one line per threshold.

    A value that differs from its default says so, with where it came from.
    """
    lines: list[str] = []
    for code, part in table.groupby("rule", sort=False):
        first = part.iloc[0]
        lines.append(f"{code}  [{first['domain']}, {first['severity']}]  {first['title']}")
        lines.append(f"    inputs: {first['inputs']}")
        named = part[part["threshold"] != ""]
        pad = max((len(t) for t in named["threshold"]), default=0)
        for row in named.itertuples(index=False):
            shown = isinstance(row.unit, str) and row.unit not in _NO_UNIT
            unit = f" {row.unit}" if shown else ""
            value = _text(row.value)
            changed = (row.source != "default" and value != _text(row.default))
            note = f"   (default {_text(row.default)}; from {row.source})" if changed else ""
            lines.append(f"    {row.threshold:<{pad}} = {value}{unit}{note}")
        lines.append("")
    return "\n".join(lines).rstrip("\n")
