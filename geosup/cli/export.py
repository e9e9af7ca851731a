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
    GeoJSON (RFC 7946), zipped Shapefile or PostGIS.

    Every format takes a layer that mixes geometry types. A zipped Shapefile
    (-o alerts.shp.zip) holds one Shapefile per kind of geometry (alerts_point.shp,
    alerts_line.shp, alerts_polygon.shp) and alerts_nogeom.dbf for rows without
    geometry; a GeometryCollection is split by kind, one row per file with the
    same id. Its README.txt says which file holds what; fields.csv maps the
    shortened field names.
    """
    from geosup.export import export_layer, infer_format
    from geosup.store import open_store

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
    target = export_layer(frame, output, format=fmt, overwrite=overwrite, id_column=id_column)
    if not state().quiet:
        click.echo(f"{len(frame):,} rows of {layer} written to {target}", err=True)
        if infer_format(output, fmt) == "shp":
            for name, rows in _shapefile_parts(target):
                click.echo(f"  {name}: {rows:,} row{'s' if rows != 1 else ''}", err=True)
    click.echo(str(target))


def _shapefile_parts(path: object) -> list[tuple[str, int]]:
    """The Shapefiles (and the .dbf-only table) inside a zip, with their row counts."""
    import zipfile
    from pathlib import Path

    import pyogrio

    path = Path(str(path)).resolve()
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.lower().endswith((".shp", "_nogeom.dbf"))]
    return [(n, int(pyogrio.read_info(f"/vsizip/{path}/{n}")["features"])) for n in names]
