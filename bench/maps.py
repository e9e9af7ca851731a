"""Benchmark: the review map against a naive folium map, on 100,000 synthetic alerts.

Builds one synthetic city's alerts (by default 80,000 point alerts of six fuel rules and
20,000 small parcel polygons of three farmland rules, with realistic titles, details and
evidence), then in one run:

- ours: :func:`maps.review_map.write_review_map` (offline: vendored assets inlined);
- the peer: the usual folium recipe, one ``folium.Marker`` with a ``Popup`` and a
  ``Tooltip`` per alert (polygons at their centroid) in a ``MarkerCluster``, made
  offline with the same vendored assets (:func:`maps.offline.make_offline`) so that both
  pages load without network.

Both pages are opened in headless Chromium (Debian's ``/usr/bin/chromium`` driven by
playwright, every non-file request aborted and counted). "Interactive" means: the load
event has fired and the map's layers are built (ours: ``geosupReview.ready``, after
which nothing heavy runs; the peer: folium adds every marker in the page's main
script, so at its load event), read on the page's own clock from navigation start;
the time until playwright also sees a cluster element is printed too. Printed: build
time, HTML size, load event, time to interactive, one zoom step, and the ratios.

The naive map takes minutes to build and open at 100,000 markers: by default it is
built for ``--naive-n`` alerts (10,000) and its size and times are scaled linearly to
the full count (the "naive x10" column; the zoom step is not scaled);
``--naive-n 0`` builds it for all alerts.

Usage::

    python bench/maps.py [--n 100000] [--naive-n 10000] [--out DIR] [--seed 1]
"""

from __future__ import annotations

import argparse
import html
import sys
import tempfile
import time
from pathlib import Path

import folium
import geopandas as gpd
import shapely
from folium.plugins import MarkerCluster

# Run as ``python bench/maps.py`` this file's folder comes first on sys.path, where this
# very file would shadow the ``maps`` package: drop it before ``maps`` is imported.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
def naive_map(alerts: gpd.GeoDataFrame) -> folium.Map:
    """One folium.Marker (popup + tooltip) per alert in a MarkerCluster: the usual recipe."""
    from maps.offline import make_offline

    m = folium.Map(tiles=None)
    m.options["maxZoom"] = 22
    cluster = MarkerCluster().add_to(m)
    points = shapely.point_on_surface(alerts.geometry.to_numpy())
    for row, pt in zip(alerts.itertuples(), points, strict=True):
        body = (f"<b>{html.escape(row.title)}</b><br>{html.escape(row.rule)} · "
                f"{html.escape(row.severity)}<br>{html.escape(row.detail)}<br>"
                f"<pre>{html.escape(row.evidence)}</pre>")
        folium.Marker([pt.y, pt.x], popup=folium.Popup(body, max_width=400),
                      tooltip=html.escape(row.title)).add_to(cluster)
    bounds = shapely.total_bounds(points)
    m.fit_bounds([[bounds[1], bounds[0]], [bounds[3], bounds[2]]])
    return make_offline(m)


def open_in_chromium(path: Path, *, ready_js: str, ready_ms_js: str,
                     timeout_s: float = 900) -> dict[str, float]:
    """Open ``path`` in headless Chromium, every non-file request aborted and counted.

    Returns seconds: ``wall`` (from navigation until ``ready_js`` holds and a cluster or
    marker element is in the page, seen from playwright), ``load`` (the load event,
    in-page clock), ``ready`` (in-page clock when the map was built: ``ready_ms_js``),
    ``zoom`` (one zoom-in until the next frame) and ``requests``.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800},
                                          bypass_csp=True)
            attempted: list[str] = []

            def guard(route):  # every request that is not file: or data: is aborted
                if not route.request.url.startswith(("file:", "data:")):
                    attempted.append(route.request.url)
                    route.abort()
                else:
                    route.continue_()

            context.route("**/*", guard)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            page.goto(path.resolve().as_uri(), wait_until="load", timeout=timeout_s * 1000)
            page.wait_for_function(ready_js, timeout=timeout_s * 1000, polling=20)
            page.wait_for_selector(".gs-cluster, .marker-cluster, .leaflet-marker-icon",
                                   timeout=timeout_s * 1000)
            wall = time.perf_counter() - t0
            load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
            ready = page.evaluate(ready_ms_js)
            t1 = time.perf_counter()
            page.evaluate("() => new Promise(r => { const m = Object.values(window).find("
                          "v => v instanceof L.Map); m.once('zoomend', () => "
                          "requestAnimationFrame(() => requestAnimationFrame(() => r()))); "
                          "m.zoomIn(1, {animate: false}); })")
            zoom = time.perf_counter() - t1
            if errors:
                print(f"  page errors in {path.name}: {errors[:3]}")
            return {"wall": wall, "load": load / 1000, "ready": max(load, ready) / 1000,
                    "zoom": zoom, "requests": float(len(attempted))}
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-n", type=int, default=10_000,
                        help="alerts for the naive map (0: all); its numbers are scaled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from maps.review_map import write_review_map
    from maps.testing import synthetic_alerts

    out = args.out or Path(tempfile.mkdtemp(prefix="geosup-bench-maps-"))
    out.mkdir(parents=True, exist_ok=True)

    t = time.perf_counter()
    alerts = synthetic_alerts(args.n, seed=args.seed)
    print(f"{len(alerts):,} synthetic alerts ({(alerts.geom_type == 'Point').sum():,} points, "
          f"{(alerts.geom_type == 'Polygon').sum():,} polygons) in "
          f"{time.perf_counter() - t:.1f} s; pages in {out}")

    t = time.perf_counter()
    ours = write_review_map(alerts, out / "ours.html", overwrite=True, title="bench")
    ours_build = time.perf_counter() - t
    ours_t = open_in_chromium(
        ours, ready_js="window.geosupReview && window.geosupReview.ready",
        ready_ms_js="window.geosupReview.maps[0].timings.ready")

    naive_n = args.naive_n if 0 < args.naive_n < len(alerts) else len(alerts)
    sample = alerts.sample(naive_n, random_state=args.seed) if naive_n < len(alerts) else alerts
    t = time.perf_counter()
    naive_path = out / "naive.html"
    naive_map(sample).save(str(naive_path))
    naive_build = time.perf_counter() - t
    # folium adds every marker in the page's main script: built when the load event fires.
    naive_t = open_in_chromium(
        naive_path, ready_js="document.readyState === 'complete'",
        ready_ms_js="performance.getEntriesByType('navigation')[0].loadEventEnd")
    scale = len(alerts) / naive_n

    rows = [("build HTML (s)", ours_build, naive_build, True),
            ("HTML size (MB)", ours.stat().st_size / 1e6, naive_path.stat().st_size / 1e6, True),
            ("load event (s, in page)", ours_t["load"], naive_t["load"], True),
            ("interactive (s, in page)", ours_t["ready"], naive_t["ready"], True),
            ("interactive (s, playwright)", ours_t["wall"], naive_t["wall"], True),
            ("zoom in one level (s)", ours_t["zoom"], naive_t["zoom"], False)]
    head = f"naive x{scale:g}" if scale != 1 else "naive"
    print(f"\n{'':30}{'ours':>12}{f'naive @{naive_n:,}':>16}{head:>14}{'naive/ours':>12}")
    print(f"{'alerts':30}{len(alerts):>12,}{naive_n:>16,}{len(alerts):>14,}")
    for name, a, b, linear in rows:
        full = b * scale if linear else float("nan")
        ratio = (full if linear else b) / a if a else float("nan")
        shown = f"{full:,.2f}" if linear else "-"
        print(f"{name:30}{a:>12,.2f}{b:>16,.2f}{shown:>14}{ratio:>11,.1f}x")
    print(f"network requests attempted: ours {ours_t['requests']:.0f}, "
          f"naive {naive_t['requests']:.0f}")
    if scale != 1:
        print(f"the naive map is measured at {naive_n:,} alerts and scaled linearly to "
              f"{len(alerts):,} (x{scale:g}); zoom is not scaled (ratio at {naive_n:,})")
    ok = ours.stat().st_size < 30e6 and ours_t["ready"] < 3.0
    print(f"target for ours (< 30 MB, interactive < 3 s): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
