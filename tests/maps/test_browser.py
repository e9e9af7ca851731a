"""The review map in real headless Chromium (Debian's, driven by playwright).

Every request that is not ``file:`` or ``data:`` is aborted and counted; the pages run
with their Content-Security-Policy bypassed, so a stray CDN link would show up as a
counted request instead of being blocked silently.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from maps.review_map import write_review_map
from tests.maps.map_payloads import CHINESE, IMG, PARCEL_RULE, SCRIPT, TEMPLATE

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:image chip:maps.evidence.MapWarning")]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REVIEW = "window.geosupReview.maps[0]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright import sync_api
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found; run `make test` (it installs Debian's chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@dataclass
class Opened:
    page: Any
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    failures: dict[str, str | None] = field(default_factory=dict)

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def move_to(self, lat: float, lon: float) -> None:
        x, y = self.js(f"([lat, lon]) => {{ const p = {REVIEW}.map.latLngToContainerPoint("
                       "[lat, lon]); const r = document.querySelector('.folium-map')"
                       ".getBoundingClientRect(); return [p.x + r.left, p.y + r.top]; }",
                       [lat, lon])
        self.page.mouse.move(x, y)

    def click_at(self, lat: float, lon: float) -> None:
        self.move_to(lat, lon)
        self.page.mouse.down()
        self.page.mouse.up()

    def view(self, lat: float, lon: float, zoom: int) -> None:
        self.js(f"([lat, lon, z]) => {{ {REVIEW}.map.setView([lat, lon], z, "
                "{animate: false}); }",
                [lat, lon, zoom])
        self.page.wait_for_timeout(150)


@pytest.fixture
def open_page(browser) -> Iterator[Any]:
    contexts = []

    def opener(path: Path, *, bypass_csp: bool = True) -> Opened:
        context = browser.new_context(viewport={"width": 1280, "height": 800},
                                      bypass_csp=bypass_csp)
        contexts.append(context)
        page = context.new_page()
        opened = Opened(page)

        def guard(route: Any) -> None:
            if route.request.url.startswith(("file:", "data:")):
                route.continue_()
            else:
                route.abort()

        context.route("**/*", guard)
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:"))
                else opened.requests.append(r.url))
        page.on("pageerror", lambda e: opened.errors.append(str(e)))
        page.on("requestfailed", lambda r: opened.failures.__setitem__(r.url, r.failure))
        page.goto(path.resolve().as_uri(), wait_until="load")
        page.wait_for_function("window.geosupReview && window.geosupReview.ready",
                               timeout=30_000)
        return opened

    yield opener
    for context in contexts:
        context.close()


def _visible(name: str) -> str:
    """What the layer control shows for a layer name (its HTML rendered as text)."""
    return html.unescape(re.sub(r"<[^>]+>", "", name)).strip()


@pytest.fixture
def payload_map(payload_alerts, registry, parcels, tmp_path) -> tuple[Path, Any]:
    path = write_review_map(payload_alerts, tmp_path / "alerts.html", registry=registry,
                            chip_root=tmp_path, evidence_layers={"parcels": parcels},
                            title="Review " + IMG)
    from maps.review_map import review_map

    counts = review_map(payload_alerts, registry=registry, chip_root=tmp_path,
                        evidence_layers={"parcels": parcels}).geosup_counts
    return path, counts


def test_offline_page_loads_nothing_and_shows_every_layer(open_page, payload_map, tmp_path):
    path, counts = payload_map
    opened = open_page(path)
    assert opened.requests == []  # no network request attempted
    assert opened.errors == []
    assert opened.js(f"{REVIEW}.errors") == []
    labels = [t.strip() for t in opened.page.locator(
        ".leaflet-control-layers-overlays label").all_inner_texts()]
    assert labels == [_visible(name) for name in counts["layers"]]
    assert any(label.startswith("Fuel · Bus fill " + IMG) for label in labels)  # as text
    assert any("unregistered_{{ 7*7 }}" in label for label in labels)  # not "49"
    stats = opened.js(
        "() => { const r = " + REVIEW + "; return {points: r.cluster._gsCount, "
        "counts: r.counts, clusters: document.querySelectorAll('.gs-cluster').length, "
        "markers: document.querySelectorAll('.gs-pt').length, "
        "imgs: [...document.images].map(i => i.src.slice(0, 5))}; }")
    assert stats["points"] == counts["points"] == 32
    assert stats["counts"]["shapes"] == counts["shapes"] == 24
    assert stats["counts"]["evidence"] == counts["evidence"]
    assert stats["counts"]["chips"] == 2
    assert stats["clusters"] + stats["markers"] > 0
    assert set(stats["imgs"]) <= {"data:"}  # only the inlined image chips
    summary = opened.page.locator(".gs-summary").inner_text()
    assert "Review " + IMG in summary and "2 alert(s) without geometry" in summary
    assert CHINESE in summary  # a unit name, as text
    assert opened.js("typeof window.__pwned") == "undefined"
    shot = tmp_path / "map.png"
    opened.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def test_tooltips_and_popups_show_escaped_text(open_page, payload_map, payload_alerts,
                                               parcels):
    path, _ = payload_map
    opened = open_page(path)
    # A parcel polygon (canvas): hover shows the tooltip, a click the popup.
    k = int((payload_alerts["rule"] == PARCEL_RULE).to_numpy().nonzero()[0][0])
    spot = payload_alerts.geometry.iloc[k].representative_point()
    # a spot inside the parcel, outside the evidence drawn at its centroid
    centre = payload_alerts.geometry.iloc[k].centroid
    inner = payload_alerts.geometry.iloc[k].difference(centre.buffer(0.0005))
    if not inner.is_empty:
        spot = inner.representative_point()
    opened.view(spot.y, spot.x, 17)
    opened.move_to(spot.y, spot.x)
    tip = opened.page.locator(".leaflet-tooltip")
    tip.wait_for(timeout=30_000)
    assert "Parcel " + IMG in tip.inner_text()
    opened.click_at(spot.y, spot.x)
    popup = opened.page.locator(".leaflet-popup-content")
    popup.locator(".gs-id").wait_for(timeout=30_000)  # details and evidence decoded
    text = popup.inner_text()
    for expected in ("Parcel " + IMG, "D-0 " + TEMPLATE, CHINESE, "declared_area", "12.5",
                     "thresholds.tolerance_m2", "Parcel over-declared", "open",
                     payload_alerts["alert_id"].iloc[k]):
        assert expected in text, expected
    # The isolated point: unclustered at zoom 15.
    last = int((payload_alerts["subject_id"] == "C-29").to_numpy().nonzero()[0][0])
    pt = payload_alerts.geometry.iloc[last]
    opened.view(pt.y, pt.x, 15)
    opened.page.locator(".gs-pt").first.wait_for(timeout=30_000)
    opened.move_to(pt.y, pt.x)
    # the parcel's tooltip may linger (its text has the payload too): take the newest
    tip = opened.page.locator(".leaflet-tooltip", has_text=TEMPLATE[:20]).last
    tip.wait_for(timeout=30_000)
    assert TEMPLATE in tip.inner_text()
    opened.click_at(pt.y, pt.x)
    popup = opened.page.locator(".leaflet-popup-content")
    popup.locator(".gs-id").wait_for(timeout=30_000)
    text = popup.inner_text()
    for expected in (TEMPLATE, IMG, SCRIPT, CHINESE, "litres", "80.5", "thresholds.max_share"):
        assert expected in text, expected
    assert opened.js("document.querySelectorAll('.leaflet-popup img, .leaflet-popup script, "
                     ".leaflet-tooltip img, .gs-summary img, .gs-summary script').length") == 0
    assert opened.js("typeof window.__pwned") == "undefined"
    assert opened.errors == [] and opened.requests == []


def test_review_trail_in_popup(open_page, payload_map, payload_alerts):
    path, _ = payload_map
    opened = open_page(path)
    pt = payload_alerts.geometry.iloc[1]
    opened.js(f"([lat, lon]) => {REVIEW}.openAlert({REVIEW}.alerts, 1, [lat, lon])",
              [pt.y, pt.x])
    popup = opened.page.locator(".leaflet-popup-content")
    popup.locator(".gs-id").wait_for(timeout=30_000)
    text = popup.inner_text()
    assert "dismissed" in text and "reviewed: " + IMG in text and SCRIPT in text
    assert "2026-02-01 09:30:00 UTC" in text
    assert opened.js("typeof window.__pwned") == "undefined"


def test_rule_layers_toggle(open_page, payload_map):
    path, _ = payload_map
    opened = open_page(path)
    label = opened.page.locator(".leaflet-control-layers-overlays label",
                                has_text="Bus fill")
    label.locator("input").uncheck()
    opened.page.wait_for_function(f"{REVIEW}.cluster._gsCount === 2")
    label.locator("input").check()
    opened.page.wait_for_function(f"{REVIEW}.cluster._gsCount === 32")
    parcels = opened.page.locator(".leaflet-control-layers-overlays label",
                                  has_text="Parcel over-declared")
    parcels.locator("input").uncheck()
    assert opened.js(f"{REVIEW}.map.hasLayer({REVIEW}.layers.find(l => l._gsCount === 20))"
                     ) is False
    assert opened.errors == []


def test_chinese_labels_in_the_browser(open_page, payload_alerts, registry, tmp_path):
    path = write_review_map(payload_alerts, tmp_path / "zh.html", registry=registry,
                            chip_root=tmp_path, lang="zh")
    opened = open_page(path)
    labels = " ".join(opened.page.locator(".leaflet-control-layers-overlays label")
                      .all_inner_texts())
    assert "耕地补贴 · 地块超报" in labels and "公交加油" in labels
    assert "按规则" in opened.page.locator(".gs-summary").inner_text()
    assert "严重" in opened.page.locator(".gs-legend").inner_text()
    k = int((payload_alerts["rule"] == PARCEL_RULE).to_numpy().nonzero()[0][0])
    spot = payload_alerts.geometry.iloc[k].representative_point()
    opened.js(f"([lat, lon, k]) => {REVIEW}.openAlert({REVIEW}.alerts, k, [lat, lon])",
              [spot.y, spot.x, k])
    popup = opened.page.locator(".leaflet-popup-content")
    popup.locator(".gs-id").wait_for(timeout=30_000)
    text = popup.inner_text()
    assert "状态" in text and "待核查" in text and "测量值" in text and "预警编号" in text
    shot = tmp_path / "zh.png"
    opened.page.screenshot(path=str(shot))
    assert opened.errors == [] and opened.requests == []


def test_the_page_own_policy_blocks_the_network(open_page, payload_map, tmp_path):
    """With its CSP on, even a remote image injected later is stopped by the browser."""
    path, _ = payload_map
    opened = open_page(path, bypass_csp=False)
    assert opened.requests == [] and opened.js(f"{REVIEW}.ready") is True
    opened.js("() => { const i = new Image(); i.src = 'https://example.org/x.png'; "
              "document.body.appendChild(i); }")
    opened.page.wait_for_timeout(300)
    assert opened.failures == {"https://example.org/x.png": "csp"}
