"""The review map of 100,000 alerts shaped like the checks' output, in headless Chromium.

The alerts come from :func:`maps.testing.synthetic_alerts` (fuel alerts as the fuel
check writes them: station point + track segment collections; farmland polygons and
multipolygons; requisition claim polygons; the demo's mix of rules). No timing is
asserted (DESIGN §8); the timings are printed (``pytest -s``) and ``bench/maps.py``
compares them with a naive folium map.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import shapely

from maps.testing import headless_chromium

pytestmark = pytest.mark.browser

REVIEW = "window.geosupReview.maps[0]"
N = 100_000


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        with headless_chromium() as browser:
            yield browser
    except FileNotFoundError as err:
        pytest.fail(str(err))


def test_hundred_thousand_alerts(chromium, tmp_path):
    from geosup.rules import load_builtin_rules
    from maps.review_map import write_review_map
    from maps.testing import (
        click_cluster,
        js_heap_mb,
        probe_init_js,
        synthetic_alerts,
        wait_interactive,
    )

    alerts = synthetic_alerts(N)
    per_rule = alerts["rule"].value_counts().to_dict()
    polygonal = shapely.get_type_id(alerts.geometry.to_numpy()).astype(int)
    n_polygons = int(((polygonal == 3) | (polygonal == 6)).sum())
    n_others = N - n_polygons  # points, multipoints, station + track collections
    assert n_others > 20_000 and (alerts.geom_type == "GeometryCollection").sum() > 15_000

    path = write_review_map(alerts, tmp_path / "big.html")
    size = path.stat().st_size
    assert size < 30_000_000, f"{size / 1e6:.1f} MB"

    context = chromium.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    try:
        requests: list[str] = []
        errors: list[str] = []

        def guard(route: Any) -> None:  # every request that is not a local file is aborted
            if route.request.url.startswith(("file:", "data:", "blob:")):
                route.continue_()
            else:
                requests.append(route.request.url)
                route.abort()

        context.route("**/*", guard)
        page = context.new_page()
        page.set_default_timeout(600_000)  # a busy shared machine: no timing is asserted
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(probe_init_js())
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("window.geosupReview && window.geosupReview.ready", polling=50)
        times = wait_interactive(page, ready_ms_js=f"{REVIEW}.timings.ready")
        page.screenshot(path=str(tmp_path / "big.png"))
        assert errors == [] and requests == []

        # every alert in its rule's layer: the layer control shows the count per rule
        labels = page.locator(".leaflet-control-layers-overlays label").all_text_contents()
        registry = load_builtin_rules()
        for rule, count in per_rule.items():
            title = registry.get(rule).title
            mine = [t for t in labels if title in t]
            assert len(mine) == 1, (rule, labels)
            shown = re.findall(r"\(([\d,]+)\)", mine[0])
            assert shown and int(shown[-1].replace(",", "")) == count, (rule, mine[0], count)

        # every alert that is not a polygon is one point of the clustered layer: at the
        # fitted view the numbers on the clusters plus the single points add up to them
        on_screen = page.evaluate("""() => {
            let sum = 0, clusters = 0, singles = 0;
            for (const el of document.querySelectorAll('.gs-cluster')) {
              sum += parseInt(el.textContent.replace(/\\D/g, ''), 10); clusters++; }
            for (const el of document.querySelectorAll('.gs-pt')) { sum += 1; singles++; }
            return {sum: sum, clusters: clusters, singles: singles}; }""")
        assert on_screen["clusters"] > 0
        assert on_screen["sum"] == n_others, on_screen
        assert page.evaluate(f"{REVIEW}.counts.shapes") == n_polygons

        # a click on a cluster zooms in (or lists its alerts when they share one place)
        click = click_cluster(page, ".gs-cluster")
        assert click is not None, "no cluster on screen to click"
        assert click["what"] in ("zoom", "popup"), click
        if click["what"] == "zoom":
            assert click["zoom"] > click["zoom_before"]
        page.screenshot(path=str(tmp_path / "big_after_click.png"))
        assert errors == [] and requests == []
        print(f"\n{N:,} alerts: {size / 1e6:.1f} MB; load {times['load'] / 1000:.2f} s, "
              f"interactive {times['tti'] / 1000:.2f} s ({times['longTasks']} long tasks, "
              f"longest {times['longest'] / 1000:.2f} s); first click on a cluster "
              f"({click['label']}) -> {click['what']} in {click['ms'] / 1000:.2f} s; "
              f"JS heap {js_heap_mb(page) or float('nan'):.0f} MB")
    finally:
        context.close()
