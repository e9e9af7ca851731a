"""A plain review page: summary, an SVG sketch of the alerts and the alert table.

This page needs no script and no network: every value is escaped and the drawing
is inline SVG. It is the fallback and the demo's page until the interactive folium
review map (offline assets, clustering, evidence layers) lands.
"""

from __future__ import annotations

import html
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["write_review_page"]

_COLOURS = {"low": "#4c9f70", "medium": "#e0a800", "high": "#e8590c", "critical": "#c92a2a"}

_LABELS = {
    "en": {"alerts": "alerts", "rule": "rule", "count": "alerts", "amount": "amount at risk",
           "unit": "unit", "severity": "severity", "status": "status", "subject": "subject",
           "title": "title", "none": "No alerts.", "undrawn": "alerts without geometry",
           "shown": "first {n} alerts shown of {total}"},
    "zh": {"alerts": "预警", "rule": "规则", "count": "预警数", "amount": "涉及金额",
           "unit": "单位", "severity": "等级", "status": "状态", "subject": "对象",
           "title": "标题", "none": "没有预警。", "undrawn": "无几何的预警",
           "shown": "显示前 {n} 条，共 {total} 条"},
}


def _e(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return ""
    return html.escape(str(value), quote=True)


def _svg(alerts: gpd.GeoDataFrame, *, width: int = 900, height: int = 520,
         max_features: int = 5000) -> str:
    geoms = alerts.geometry.to_numpy()
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not keep.any():
        return ""
    frame = alerts.loc[keep].head(max_features)
    minx, miny, maxx, maxy = frame.total_bounds
    span = max(maxx - minx, maxy - miny, 1e-6)
    scale = min(width, height) / span * 0.95
    geoms = shapely.simplify(frame.geometry.to_numpy(), span / 2000)
    parts = []
    for geom, sev in zip(geoms, frame["severity"], strict=True):
        colour = _COLOURS.get(str(sev), "#555")
        coords = shapely.get_coordinates(geom)
        if shapely.get_type_id(geom) in (0, 4):
            for x, y in coords:
                cx, cy = (x - minx) * scale + 10, (maxy - y) * scale + 10
                parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}"/>')
        else:
            pts = " ".join(f"{(x - minx) * scale + 10:.1f},{(maxy - y) * scale + 10:.1f}"
                           for x, y in coords)
            parts.append(f'<polyline points="{pts}" fill="none" stroke="{colour}"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 20}" '
            f'height="{height + 20}" style="border:1px solid #ccc">' + "".join(parts) + "</svg>")


def write_review_page(alerts: gpd.GeoDataFrame, path: str | Path, *, lang: str = "en",
                      title: str = "geosup alerts", max_rows: int = 2000) -> Path:
    """Write a self-contained review page for ``alerts`` and return its path.

    Every user-sourced string is HTML-escaped; the page loads nothing from the
    network and runs no script.
    """
    labels = _LABELS.get(lang, _LABELS["en"])
    path = Path(path)
    total = len(alerts)
    body = [f"<h1>{_e(title)}</h1>", f"<p>{total:,} {_e(labels['alerts'])}</p>"]
    if total:
        summary = (pd.DataFrame({"rule": alerts["rule"], "unit": alerts["unit"],
                                 "amount": alerts["amount_at_risk"]})
                   .groupby(["rule", "unit"], dropna=False)
                   .agg(count=("rule", "size"), amount=("amount", "sum")).reset_index())
        rows = "".join(f"<tr><td>{_e(r.rule)}</td><td>{_e(r.unit)}</td><td>{r.count:,}</td>"
                       f"<td>{r.amount:,.2f}</td></tr>" for r in summary.itertuples())
        body.append(f"<table><tr><th>{labels['rule']}</th><th>{labels['unit']}</th>"
                    f"<th>{labels['count']}</th><th>{labels['amount']}</th></tr>{rows}</table>")
        missing = int((shapely.is_missing(alerts.geometry.to_numpy())
                       | shapely.is_empty(alerts.geometry.to_numpy())).sum())
        body.append(_svg(alerts))
        if missing:
            body.append(f"<p>{missing:,} {labels['undrawn']}</p>")
        head = alerts.head(max_rows)
        rows = "".join(
            f"<tr><td>{_e(r.alert_id)}</td><td>{_e(r.rule)}</td>"
            f"<td style=\"color:{_COLOURS.get(str(r.severity), '#555')}\">{_e(r.severity)}</td>"
            f"<td>{_e(r.status)}</td><td>{_e(r.subject_type)} {_e(r.subject_id)}</td>"
            f"<td>{_e(r.unit)}</td><td>{_e(r.title)}</td></tr>" for r in head.itertuples())
        if total > max_rows:
            body.append(f"<p>{_e(labels['shown'].format(n=max_rows, total=total))}</p>")
        body.append(f"<table><tr><th>id</th><th>{labels['rule']}</th>"
                    f"<th>{labels['severity']}</th><th>{labels['status']}</th>"
                    f"<th>{labels['subject']}</th><th>{labels['unit']}</th>"
                    f"<th>{labels['title']}</th></tr>{rows}</table>")
    else:
        body.append(f"<p>{labels['none']}</p>")
    page = ("<!DOCTYPE html><html lang=\"" + _e(lang) + "\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
            "style-src 'unsafe-inline'; img-src data:\">"
            f"<title>{_e(title)}</title><style>body{{font-family:sans-serif;margin:1em}}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
            "padding:2px 6px;font-size:13px}</style></head><body>"
            + "".join(body) + "</body></html>")
    path.write_text(page, encoding="utf-8")
    return path
