"""Benchmark: the review map against a naive folium map, both holding the same alerts.

Run (from the checkout; the naive page at 100,000 alerts takes minutes to build and open)::

    .venv/bin/python bench/maps.py                   # 100,000 alerts, both pages
    .venv/bin/python bench/maps.py --n 20000 --out /tmp/bench-maps
    .venv/bin/python bench/maps.py --naive-n 10000   # naive page from a sample: no ratios

What it does, in one process and one headless Chromium (Debian's ``/usr/bin/chromium``
driven by playwright):

1. ``--n`` synthetic alerts shaped like the checks' output
   (:func:`maps.testing.synthetic_alerts`: fuel alerts as the station point + track segment
   collections the fuel check writes, farmland polygons and multipolygons with their
   evidence and ``overlap_wkt``, requisition claim rectangles with chip references; the
   demo city's mix of rules, or ``--mix``);
2. ours: :func:`maps.review_map.write_review_map` (offline: every asset inlined);
3. the peer, folium's usual recipe on the same alerts: one ``folium.Marker`` per alert
   with a ``Popup`` (title, rule, severity, status, detail, evidence, escaped) and a
   ``Tooltip``, in a ``MarkerCluster``, saved as folium writes it (CDN links); an alert
   that is not a point is marked at its station (fuel collections) or at a point on its
   surface;
4. each page is opened in a fresh browser context, the same way, ``--runs`` times
   (alternating; the median is printed).

Measured for each page (times on the page's own clock, from navigation start):

- build: seconds to write the HTML (Python), and its size in MB;
- load: the end of the load event;
- time to interactive: when the main thread is free after load. A
  ``PerformanceObserver`` of type ``longtask`` (installed with ``page.add_init_script``
  before navigation) records every task of 50 ms or more; the page counts as interactive
  at the end of the last long task once none has followed for ``--quiet-ms`` (500 ms),
  and not before the load event nor, for ours, before the page reports its layers built;
- first click: a mouse click on the cluster nearest the map's centre (not covered by a
  panel), from the mouse-down event until the frame after Leaflet's ``zoomend`` or
  ``popupopen`` (the 0.25 s zoom animation included; the same for both pages);
- one zoom step: back at the fitted view and after the main thread is free again,
  ``zoomIn(1)`` without animation until the frame after ``zoomend``;
- JS heap: the largest used JS heap sampled every 100 ms and at each long-task report
  (``performance.memory``, exact with ``--enable-precise-memory-info``); a peak reached
  and freed inside one long task is not seen;
- network: every request that is not ``file:``, ``data:`` or ``blob:`` is counted. Ours
  must make none. The naive page asks CDNs for its libraries: those with a copy in
  ``maps/assets`` (Leaflet 1.9.4 for folium's 1.9.3, jQuery 3.7.1, Leaflet.markercluster
  1.5.3 for folium's 1.1.0, Leaflet's images) are served from it, so that it works
  offline with the same libraries as ours; the others (Bootstrap, Font Awesome,
  glyphicons, awesome-markers: nothing on a page of default markers uses them) are
  aborted and listed.

The ratio naive/ours is printed only when both pages hold the same alerts: with
``--naive-n`` the naive page holds a random sample, the table says so and prints no
ratio. The targets of ours (issue 6: HTML < 30 MB, interactive < 3 s) are checked last.
Screenshots (``ours.png``, ``naive.png``, at the interactive moment) and both pages are
left in ``--out`` (default: a new temporary folder).
"""

from __future__ import annotations

import argparse
import html
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import shapely
from folium.plugins import MarkerCluster

# Run as ``python bench/maps.py`` this file's folder comes first on sys.path, where this
# very file would shadow the ``maps`` package: drop it before ``maps`` is imported.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

CLUSTERS = ".gs-cluster, .marker-cluster"
OURS_READY = "window.geosupReview && window.geosupReview.ready"
OURS_READY_MS = "window.geosupReview.maps[0].timings.ready"

#: File name at the end of a CDN URL of folium's -> the copy in maps/assets.
LOCAL_COPIES = {
    "leaflet.js": "leaflet/leaflet.js",
    "leaflet.css": "leaflet/leaflet.css",
    "jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "leaflet.markercluster.js": "leaflet.markercluster/leaflet.markercluster.js",
    "MarkerCluster.css": "leaflet.markercluster/MarkerCluster.css",
    "MarkerCluster.Default.css": "leaflet.markercluster/MarkerCluster.Default.css",
    **{name: f"leaflet/images/{name}" for name in (
        "layers.png", "layers-2x.png", "marker-icon.png", "marker-icon-2x.png",
        "marker-shadow.png")},
}


def marker_points(geoms: np.ndarray) -> np.ndarray:
    """One point per alert: itself, a fuel collection's station, else a point on it."""
    geoms = np.asarray(geoms, dtype=object)
    pts = shapely.point_on_surface(geoms)
    first = shapely.get_geometry(geoms, 0)
    station = (shapely.get_type_id(geoms) == 7) & (shapely.get_type_id(first) == 0)
    pts[station] = first[station]
    return pts


def naive_map(alerts: gpd.GeoDataFrame) -> folium.Map:
    """folium's usual recipe: one Marker (Popup + Tooltip) per alert in a MarkerCluster."""
    m = folium.Map(tiles=None)
    m.options["maxZoom"] = 19  # no tile layer: clustering needs a maxZoom (folium #1395)
    cluster = MarkerCluster().add_to(m)
    points = marker_points(alerts.geometry.to_numpy())
    for row, pt in zip(alerts.itertuples(), points, strict=True):
        body = (f"<b>{html.escape(row.title)}</b><br>{html.escape(row.rule)} · "
                f"{html.escape(row.severity)} · {html.escape(str(row.status))}<br>"
                f"{html.escape(row.detail)}<br><pre>{html.escape(row.evidence)}</pre>")
        folium.Marker([pt.y, pt.x], popup=folium.Popup(body, max_width=400),
                      tooltip=html.escape(row.title)).add_to(cluster)
    west, south, east, north = shapely.total_bounds(points)
    m.fit_bounds([[south, west], [north, east]])
    return m


class Network:
    """Route handler of a browser context: local copies served, everything else aborted."""

    def __init__(self, assets: Path) -> None:
        self.assets = assets
        self.served: list[str] = []
        self.aborted: list[str] = []

    def __call__(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
            return
        name = url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        copy = LOCAL_COPIES.get(name)
        if copy is not None and (self.assets / copy).is_file():
            self.served.append(url)
            route.fulfill(path=str(self.assets / copy))
        else:
            self.aborted.append(url)
            route.abort()


def measure(browser: Any, path: Path, *, ours: bool, quiet_ms: float, timeout_s: float,
            shot: Path | None) -> dict[str, Any]:
    """Open ``path`` in a fresh context of ``browser`` and measure it (see the docstring)."""
    from maps.offline import ASSET_DIR
    from maps.testing import (
        click_cluster,
        js_heap_mb,
        map_view,
        probe_init_js,
        set_view,
        wait_interactive,
        zoom_step,
    )

    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        net = Network(ASSET_DIR)
        context.route("**/*", net)
        page = context.new_page()
        page.set_default_timeout(timeout_s * 1000)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(probe_init_js())
        page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
        if ours:
            page.wait_for_function(OURS_READY, timeout=timeout_s * 1000, polling=50)
        tti = wait_interactive(page, ready_ms_js=OURS_READY_MS if ours else None,
                               quiet_ms=quiet_ms)
        if shot is not None:
            page.screenshot(path=str(shot))
        center, zoom = map_view(page)
        clusters = page.locator(CLUSTERS).count()
        click = click_cluster(page, CLUSTERS, timeout_s=min(timeout_s, 120))
        wait_interactive(page, quiet_ms=quiet_ms)
        set_view(page, center, zoom)
        wait_interactive(page, quiet_ms=quiet_ms)
        step = zoom_step(page)
        return {"load": tti["load"] / 1000, "tti": tti["tti"] / 1000,
                "long_tasks": tti["longTasks"], "longest": tti["longest"] / 1000,
                "longtask_supported": tti["supported"], "clusters": clusters,
                "click": (click or {}).get("ms"), "click_what": (click or {}).get("what"),
                "click_label": (click or {}).get("label"), "zoom": step / 1000,
                "heap": js_heap_mb(page), "served": net.served, "aborted": net.aborted,
                "errors": errors}
    finally:
        context.close()


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    if not values:
        return None
    return statistics.median(v / 1000 if key == "click" else v for v in values)


def _mix(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    out = {}
    for item in text.split(","):
        name, _, weight = item.partition("=")
        out[name.strip()] = float(weight)
    return out


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def _describe(alerts: gpd.GeoDataFrame) -> str:
    kinds = alerts.groupby("domain", observed=True).geometry.apply(
        lambda g: ", ".join(f"{n:,} {t}" for t, n in g.geom_type.value_counts().items()))
    return "; ".join(f"{dom} {len(alerts[alerts['domain'] == dom]):,} ({kinds[dom]})"
                     for dom in kinds.index)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="What each number means: the docstring at the top of bench/maps.py.")
    parser.add_argument("--n", type=int, default=100_000,
                        help="number of synthetic alerts on both pages (default 100,000)")
    parser.add_argument("--naive-n", type=int, default=0,
                        help="build the naive page from a random sample of this many alerts "
                             "instead of all of them (faster; then no ratio is printed). "
                             "Default 0: all alerts, the same as ours")
    parser.add_argument("--mix", default=None,
                        help="share of each domain, e.g. 'fuel=0.6,farmland=0.3,"
                             "requisition=0.1' (default: the demo city's mix)")
    parser.add_argument("--seed", type=int, default=1,
                        help="seed of the synthetic alerts and of the sample (default 1)")
    parser.add_argument("--runs", type=int, default=1,
                        help="times each page is opened, alternating; medians are printed "
                             "(default 1)")
    parser.add_argument("--quiet-ms", type=float, default=500,
                        help="the main thread counts as free after this long without a "
                             "long task (default 500)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds allowed for one page to load (default 900)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the two pages and screenshots (default: a new "
                             "temporary folder, kept)")
    args = parser.parse_args()
    from maps.review_map import write_review_map
    from maps.testing import headless_chromium, synthetic_alerts

    out = args.out or Path(tempfile.mkdtemp(prefix="geosup-bench-maps-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine at start: {_load()}")

    t = time.perf_counter()
    alerts = synthetic_alerts(args.n, mix=_mix(args.mix), seed=args.seed)
    print(f"{len(alerts):,} synthetic alerts in {time.perf_counter() - t:.1f} s: "
          f"{_describe(alerts)}")
    print(f"pages and screenshots in {out}")

    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = write_review_map(alerts, out / "ours.html", overwrite=True, title="bench")
    ours_build = time.perf_counter() - t
    for w in caught:
        print(f"  while building ours: {w.category.__name__}: {w.message}")

    sampled = 0 < args.naive_n < len(alerts)
    naive_alerts = (alerts.sample(args.naive_n, random_state=args.seed) if sampled
                    else alerts)
    if sampled:
        print(f"\n*** SAMPLE: the naive page holds {len(naive_alerts):,} of the "
              f"{len(alerts):,} alerts (--naive-n); its numbers are not comparable with "
              "ours and no ratio is printed ***\n")
    t = time.perf_counter()
    naive = out / "naive.html"
    naive_map(naive_alerts).save(str(naive))
    naive_build = time.perf_counter() - t
    print(f"built: ours {ours_build:.1f} s, naive {naive_build:.1f} s; {_load()}")

    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "naive": []}
    with headless_chromium() as browser:
        for k in range(args.runs):
            order = ["ours", "naive"] if k % 2 == 0 else ["naive", "ours"]
            for name in order:
                path = ours if name == "ours" else naive
                shot = out / f"{name}.png" if k == 0 else None
                runs[name].append(measure(browser, path, ours=name == "ours",
                                          quiet_ms=args.quiet_ms,
                                          timeout_s=args.timeout, shot=shot))

    size = {"ours": ours.stat().st_size / 1e6, "naive": naive.stat().st_size / 1e6}
    build = {"ours": ours_build, "naive": naive_build}
    rows: list[tuple[str, dict[str, float | None]]] = [
        ("build HTML (s)", build),
        ("HTML size (MB)", size),
        ("load event (s)", {k: _median(v, "load") for k, v in runs.items()}),
        ("time to interactive (s)", {k: _median(v, "tti") for k, v in runs.items()}),
        ("  long tasks (count)", {k: _median(v, "long_tasks") for k, v in runs.items()}),
        ("  longest long task (s)", {k: _median(v, "longest") for k, v in runs.items()}),
        ("first click on a cluster (s)", {k: _median(v, "click") for k, v in runs.items()}),
        ("zoom in one level (s)", {k: _median(v, "zoom") for k, v in runs.items()}),
        ("JS heap, max sampled (MB)", {k: _median(v, "heap") for k, v in runs.items()}),
    ]
    head_naive = f"naive @{len(naive_alerts):,} SAMPLE" if sampled else "naive"
    print(f"\n{'':30}{'ours':>14}{head_naive:>22}" + ("" if sampled else f"{'naive/ours':>12}"))
    print(f"{'alerts on the page':30}{len(alerts):>14,}{len(naive_alerts):>22,}")
    for name, values in rows:
        a, b = values["ours"], values["naive"]
        digits = 0 if "(count)" in name else 2
        line = f"{name:30}{_fmt(a, digits):>14}{_fmt(b, digits):>22}"
        if not sampled and a and b is not None and not name.startswith("  "):
            line += f"{b / a:>11,.1f}x"
        print(line)
    last = {k: v[-1] for k, v in runs.items()}
    print(f"{'first click showed':30}{last['ours']['click_what']!s:>14}"
          f"{last['naive']['click_what']!s:>22}")
    print(f"{'clicked cluster (count shown)':30}{last['ours']['click_label']!s:>14}"
          f"{last['naive']['click_label']!s:>22}")
    for name in ("ours", "naive"):
        r = last[name]
        served = sorted({u.rsplit('/', 1)[-1] for u in r["served"]})
        aborted = sorted({u.split('?')[0] for u in r["aborted"]})
        print(f"network requests, {name}: {len(r['served']) + len(r['aborted'])} attempted; "
              f"{len(r['served'])} served from maps/assets {served or ''}; "
              f"{len(r['aborted'])} aborted {aborted or ''}")
        if r["errors"]:
            print(f"page errors, {name}: {r['errors'][:3]}")
        if not r["longtask_supported"]:
            print(f"warning: long tasks not observable in {name}: interactive = load/ready")
    if args.runs > 1:
        print(f"medians of {args.runs} runs per page; time to interactive per run: "
              + ", ".join(f"{k} " + " ".join(f"{r['tti']:.2f}" for r in v)
                          for k, v in runs.items()))
    print(f"machine at end: {_load()}")
    tti = _median(runs["ours"], "tti")
    ok = size["ours"] < 30 and tti is not None and tti < 3.0 and not last["ours"]["served"] \
        and not last["ours"]["aborted"]
    print(f"target for ours (< 30 MB, interactive < 3 s, no request): "
          f"{'met' if ok else 'NOT met'} ({size['ours']:.1f} MB, {_fmt(tti)} s)")


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


if __name__ == "__main__":
    main()
