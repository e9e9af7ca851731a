"""``geosup alerts list|show|review``."""

from __future__ import annotations

import json
import sys

import click
import pandas as pd

from geosup.cli.options import alert_filter_options, state, store_option

__all__ = ["alerts"]

_LIST_COLUMNS = ("alert_id", "rule", "severity", "score", "status", "subject_type",
                 "subject_id", "unit", "period", "amount_at_risk", "title")


@click.group()
def alerts() -> None:
    """List, read and review alerts."""


def _filters(**values: tuple[str, ...]) -> dict[str, list[str]]:
    return {k: list(v) for k, v in values.items() if v}


@alerts.command("list")
@store_option
@alert_filter_options
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "geojson"]),
              default="table", show_default=True, help="Output on stdout.")
@click.option("--limit", type=int, default=None, help="At most this many alerts (table only).")
def list_alerts(store: str, rule: tuple[str, ...], domain: tuple[str, ...],
                status: tuple[str, ...], severity: tuple[str, ...], unit: tuple[str, ...],
                period: tuple[str, ...], fmt: str, limit: int | None) -> None:
    """List alerts, most severe first, filtered by rule, domain, status, severity,
    unit and period."""
    from geosup.store import open_store

    with open_store(store, create=False) as st:
        frame = st.alerts(**_filters(rule=rule, domain=domain, status=status,
                                     severity=severity, unit=unit, period=period))
    if fmt == "geojson":
        out = frame.to_crs(4326)
        for name in out.columns:
            if pd.api.types.is_datetime64_any_dtype(out[name]):
                text = out[name].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                out[name] = text.astype(object).where(out[name].notna(), None)
        click.echo(out.to_json(drop_id=True, na="null"))
        return
    if fmt == "csv":
        out = pd.DataFrame(frame.drop(columns="geometry"))
        out["geometry_wkt"] = frame.geometry.to_wkt()
        out.to_csv(sys.stdout, index=False)
        return
    if not len(frame):
        click.echo("no alerts match", err=True)
        return
    table = pd.DataFrame(frame.loc[:, list(_LIST_COLUMNS)])
    if limit is not None:
        table = table.head(limit)
    table["title"] = table["title"].str.slice(0, 60)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.max_columns", None):
        click.echo(table.to_string(index=False))
    if not state().quiet:
        click.echo(f"{len(frame):,} alert(s)", err=True)


@alerts.command("show")
@store_option
@click.argument("alert_id")
def show_alert(store: str, alert_id: str) -> None:
    """Show one alert with its evidence and review history."""
    from geosup.store import open_store

    with open_store(store, create=False) as st:
        row = st.alert(alert_id)
        history = st.events(alert_id)
    for name, value in row.items():
        if name in ("evidence", "geometry"):
            continue
        click.echo(f"{name:>15}: {'' if pd.isna(value) else value}")
    geom = row["geometry"]
    click.echo(f"{'geometry':>15}: {'none' if geom is None else geom.geom_type}")
    click.echo(f"{'evidence':>15}:")
    try:
        click.echo(json.dumps(json.loads(row["evidence"] or "{}"), indent=2,
                              ensure_ascii=False))
    except json.JSONDecodeError:
        click.echo(str(row["evidence"]))
    click.echo("history:")
    for ev in history.itertuples(index=False):
        note = f" — {ev.note}" if isinstance(ev.note, str) and ev.note else ""
        before = ev.from_status if isinstance(ev.from_status, str) and ev.from_status else "-"
        click.echo(f"  {ev.at:%Y-%m-%d %H:%M:%S}Z  {ev.by}: {before} -> "
                   f"{ev.to_status}{note}")


@alerts.command("review")
@store_option
@click.argument("alert_id")
@click.option("--status", "new_status", required=True,
              type=click.Choice(["open", "investigating", "confirmed", "dismissed",
                                 "rectified"]), help="The new status.")
@click.option("--note", default=None, help="Why (kept in the history).")
@click.option("--by", "by", required=True, help="Reviewer's name.")
def review_alert(store: str, alert_id: str, new_status: str, note: str | None,
                 by: str) -> None:
    """Set an alert's status with a note; the change is kept in the history."""
    from geosup.store import open_store

    with open_store(store, create=False) as st:
        event = st.review(alert_id, status=new_status, by=by, note=note)
    click.echo(f"{alert_id}: {event['from_status']} -> {event['to_status']} by {by}")
