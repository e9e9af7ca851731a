"""``geosup demo [DIR]``."""

from __future__ import annotations

import click
import pandas as pd

from geosup.cli.options import report_inputs, state

__all__ = ["demo"]


@click.command()
@click.argument("folder", default="geosup-demo", type=click.Path(file_okay=False))
@click.option("--lang", type=click.Choice(["en", "zh"]), default="en", show_default=True)
def demo(folder: str, lang: str) -> None:
    """Build the demo city in FOLDER, run every check, write FOLDER/alerts.html.

    Prints rows in/used/rejected per input and precision and recall per rule
    against the misuse injected into the demo city.
    """
    from geosup.demo import run_demo

    result = run_demo(folder, settings=state().settings, lang=lang)
    for sc in result.scenarios:
        report_inputs({f"{sc.name}/{k}": v for k, v in sc.inputs.items()})
    if len(result.scores):
        with pd.option_context("display.width", 200, "display.max_rows", None):
            click.echo(result.scores.to_string(index=False, float_format="{:.2f}".format))
    click.echo(f"store: {result.store}")
    click.echo(f"map:   {result.map_path}")
