"""``geosup export``: alerts or a stored layer to a GIS format."""

from __future__ import annotations

import click

from geosup.cli.options import alert_filter_options, overwrite_option, state, store_option

__all__ = ["export"]


@click.command()
@store_option
@click.option("--format", "fmt", type=click.Choice(["gpkg", "fgb", "parquet", "geojson", "shp",
                                                    "postgis"]),
              default=None, help="Output format (default: from the output's extension).")
@click.option("-o", "--output", required=True, metavar="OUT",
              help="File, or postgresql://…#schema.table for --format postgis.")
@click.option("--layer", default="alerts", show_default=True,
              help="What to export: 'alerts' or the name of a stored input layer.")
@alert_filter_options
@overwrite_option
def export(store: str, fmt: str | None, output: str, layer: str, rule: tuple[str, ...],
           domain: tuple[str, ...], status: tuple[str, ...], severity: tuple[str, ...],
           unit: tuple[str, ...], period: tuple[str, ...], overwrite: bool) -> None:
    """Export alerts (filtered) or a stored layer to GPKG, FlatGeobuf, GeoParquet,
    GeoJSON (RFC 7946), zipped Shapefile or PostGIS."""
    from geosup.export import export_layer
    from geosup.store import is_database_url, open_store
    from geosup.store.base import safe_url

    filters = {k: list(v) for k, v in dict(rule=rule, domain=domain, status=status,
                                           severity=severity, unit=unit,
                                           period=period).items() if v}
    with open_store(store, create=False) as st:
        if layer == "alerts":
            frame, id_column = st.alerts(**filters), "alert_id"
        else:
            if filters:
                raise click.UsageError("alert filters apply only to --layer alerts")
            frame = st.read_layer(layer)
            reg = st.layers().set_index("name")
            id_column = reg.loc[layer, "id_column"] if layer in reg.index else None
            if not isinstance(id_column, str) or not id_column:
                id_column = "fid"  # the layer has no id of its own: number the rows
                frame.insert(0, id_column, range(1, len(frame) + 1))
    target = str(export_layer(frame, output, format=fmt, overwrite=overwrite,
                              id_column=id_column))
    if is_database_url(target):
        target = safe_url(target)
    if not state().quiet:
        click.echo(f"{len(frame):,} rows of {layer} written to {target}", err=True)
    click.echo(str(target))
