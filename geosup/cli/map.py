"""``geosup map``: the review map, one self-contained HTML file, offline by default."""

from __future__ import annotations

import re
from pathlib import Path

import click

from geosup.cli.options import alert_filter_options, overwrite_option, state, store_option

__all__ = ["map_"]


@click.command("map")
@store_option
@alert_filter_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              metavar="HTML", help="The HTML file to write, e.g. alerts.html.")
@click.option("--lang", type=click.Choice(["en", "zh"]), default=None,
              help="Language of labels, rule titles, legend and popups (default: the "
                   "'lang' setting, en).")
@click.option("--online", is_flag=True, default=False,
              help="Load Leaflet & co. from CDNs and show an OpenStreetMap base map "
                   "(default: everything inlined, no network request at all).")
@click.option("--title", default=None, help="Title of the page and of the summary.")
@click.option("--layer", "layers", multiple=True, metavar="NAME",
              help="A stored input layer (e.g. parcels) whose features the evidence "
                   "refers to by id, drawn in the evidence layers. Repeat for several. "
                   "Default: every stored layer the evidence refers to.")
@click.option("--no-layers", is_flag=True, default=False,
              help="Draw no stored input layer (only the alerts and their own evidence).")
@click.option("--chips", "chip_root", type=click.Path(file_okay=False), default=None,
              help="Folder the image chips are read from; relative paths start there and "
                   "no chip outside it is read (default: the store's folder for a .gpkg "
                   "store, else the working directory).")
@click.option("--max-mb", type=click.FloatRange(min=1), default=30.0, show_default=True,
              help="Size budget of the page: above it the evidence of the least important "
                   "alerts, then image chips, are left out (with a warning).")
@overwrite_option
def map_(store: str, rule: tuple[str, ...], domain: tuple[str, ...],
         status: tuple[str, ...], severity: tuple[str, ...], unit: tuple[str, ...],
         period: tuple[str, ...], output: str, lang: str | None, online: bool,
         title: str | None, layers: tuple[str, ...], no_layers: bool, chip_root: str | None,
         max_mb: float, overwrite: bool) -> None:
    """Write the review map of the stored alerts (filtered) to one HTML file.

    Alerts are drawn per rule as toggleable layers coloured by severity, with a
    legend, a summary (counts and amount at risk per rule and unit) and popups
    with the measured numbers, thresholds, status and evidence. The file works
    from disk with no network: Leaflet and the other scripts are inlined.
    """
    from geosup.errors import ExportError
    from geosup.store import open_store
    from maps.evidence import referenced_layers
    from maps.review_map import summarize, write_review_map

    target = Path(output)
    if target.exists() and not overwrite:
        msg = f"{target} already exists; pass --overwrite to replace it"
        raise ExportError(msg)
    filters = {k: list(v) for k, v in dict(rule=rule, domain=domain, status=status,
                                           severity=severity, unit=unit,
                                           period=period).items() if v}
    evidence_layers = {}
    with open_store(store, create=False) as st:
        alerts = st.alerts(**filters)
        if not no_layers and len(alerts):
            evidence_layers = referenced_layers(st, alerts, names=list(layers) or None)
    if chip_root is None and not re.match(r"^postgres(ql)?://", store):
        chip_root = str(Path(store).resolve().parent)
    settings = state().settings
    lang = lang or str(settings.get("lang") or "en")
    currency = settings.get("currency")
    path = write_review_map(alerts, target, lang=lang, online=online, overwrite=True,
                            title=title, evidence_layers=evidence_layers or None,
                            chip_root=chip_root, currency=str(currency) if currency else None,
                            max_page_bytes=int(max_mb * 1_000_000))
    if not state().quiet:
        counts = summarize(alerts, lang=lang)
        undrawn = []
        if counts["not_drawn"] - counts["out_of_range"]:
            undrawn.append(f"{counts['not_drawn'] - counts['out_of_range']:,} without geometry")
        if counts["out_of_range"]:
            undrawn.append(f"{counts['out_of_range']:,} outside the lon/lat range")
        click.echo(f"{counts['total']:,} alerts, {counts['drawn']:,} drawn"
                   + (f" ({', '.join(undrawn)}: counted, not drawn)" if undrawn else "")
                   + f" on {path}" + (" (offline: no network needed)" if not online else ""),
                   err=True)
    click.echo(str(path))
