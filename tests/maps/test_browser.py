"""The review map in real headless Chromium (Debian's, driven by playwright).

Every request that is not ``file:`` or ``data:`` is aborted and counted; the pages run
with their Content-Security-Policy bypassed, so a stray CDN link would show up as a
counted request instead of being blocked silently. Screenshots are saved in each test's
temporary directory.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from geosup.alerts import make_alerts
from maps.review_map import review_map, write_review_map
from maps.testing import headless_chromium
from tests.maps.map_payloads import (
    CHINESE,
    IMG,
    PARCEL_RULE,
    POINT_RULE,
    SCRIPT,
    TEMPLATE,
    page_blocks,
    page_config,
)

pytestmark = [pytest.mark.browser,
              pytest.mark.filterwarnings("ignore:image chip:maps.evidence.MapWarning")]

REVIEW = "window.geosupReview.maps[0]"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        with headless_chromium() as b:
            yield b
    except FileNotFoundError as err:
        pytest.fail(str(err))


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

    def popup(self) -> Any:
        """The open popup (a closed one fades out for 200 ms: wait until it is gone)."""
        self.page.wait_for_function("document.querySelectorAll('.leaflet-popup').length === 1",
                                    timeout=30_000)
        return self.page.locator(".leaflet-popup-content")

    def close_popup(self) -> None:
        """Close the popup with its button and wait until it has faded out."""
        self.popup()
        self.page.locator(".leaflet-popup-close-button").click()
        self.page.wait_for_function(
            "document.querySelectorAll('.leaflet-popup').length === 0", timeout=30_000)

    def on_screen(self) -> dict[str, int]:
        """Clusters and single points on screen; their numbers add up to alerts."""
        return self.js("""() => {
            let sum = 0, clusters = 0, singles = 0;
            for (const el of document.querySelectorAll('.leaflet-marker-pane .gs-cluster')) {
              sum += parseInt(el.textContent, 10); clusters++; }
            for (const el of document.querySelectorAll('.leaflet-marker-pane .gs-pt')) {
              sum += 1; singles++; }
            return {sum: sum, clusters: clusters, singles: singles}; }""")


@pytest.fixture
def open_page(browser) -> Iterator[Any]:
    contexts = []

    def opener(path: Path, *, bypass_csp: bool = True, init_script: str | None = None,
               wait_evidence: bool = True) -> Opened:
        context = browser.new_context(viewport={"width": 1280, "height": 800},
                                      bypass_csp=bypass_csp)
        contexts.append(context)
        page = context.new_page()
        if init_script:
            page.add_init_script(init_script)
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
        if wait_evidence:
            page.wait_for_function(f"{REVIEW}.evidenceReady", timeout=30_000)
        return opened

    yield opener
    for context in contexts:
        context.close()


def _visible(name: str) -> str:
    """What the layer control shows for a layer name (its HTML rendered as text)."""
    return html.unescape(re.sub(r"<[^>]+>", "", name)).strip()


def _alerts(rows: list[dict]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(rows)
    frame["evidence"] = [json.dumps(e, ensure_ascii=False) for e in frame["evidence"]]
    return make_alerts(gpd.GeoDataFrame(frame.drop(columns="geometry"),
                                        geometry=gpd.GeoSeries(frame["geometry"], crs=4326),
                                        crs=4326))


@pytest.fixture
def payload_map(payload_alerts, registry, parcels, tmp_path) -> tuple[Path, Any]:
    path = write_review_map(payload_alerts, tmp_path / "alerts.html", registry=registry,
                            chip_root=tmp_path, evidence_layers={"parcels": parcels},
                            title="Review " + IMG)
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
        "counts: r.counts, imgs: [...document.images].map(i => i.src.slice(0, 5))}; }")
    # 30 bus fills, the fuel collection, the line and the multipoint: one point each
    assert stats["points"] == counts["points"] == 33
    assert stats["counts"]["shapes"] == counts["shapes"] == 22  # 20 parcels, 2 claims
    # the evidence of every rule shown: 20 overlaps, 20 reference parcels, the fuel
    # alert's station, track, nearest approach and the line joining them, the line
    # alert's line, the multipoint's two points
    assert stats["counts"]["evidence"] == counts["evidence"] == 47
    assert stats["counts"]["chips"] == 2  # one alert: before and after
    # at the fitted view every clustered alert is on screen once
    assert opened.on_screen()["sum"] == 33
    assert set(stats["imgs"]) <= {"data:"}  # only the inlined image chips
    summary = opened.page.locator(".gs-summary").inner_text()
    assert "Review " + IMG in summary and "2 alert(s) without geometry" in summary
    assert CHINESE in summary  # a unit name, as text
    assert opened.js("typeof window.__pwned") == "undefined"
    assert opened.js("document.documentElement.lang") == "en"
    shot = tmp_path / "map.png"
    opened.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000


def _first_parcel_id(alerts: gpd.GeoDataFrame) -> str:
    return str(alerts.loc[alerts["rule"] == PARCEL_RULE, "alert_id"].iloc[0])


def _hover_parcel(opened: Opened, alerts: gpd.GeoDataFrame) -> tuple[Any, str]:
    """Hover the first parcel alert (away from the overlap evidence drawn at its centroid);
    return the spot and the tooltip's text."""
    geom = alerts.set_index("alert_id").geometry[_first_parcel_id(alerts)]
    inner = geom.difference(geom.centroid.buffer(0.0005))
    spot = inner.representative_point() if not inner.is_empty else geom.representative_point()
    opened.view(spot.y, spot.x, 17)
    opened.move_to(spot.y, spot.x)
    tip = opened.page.locator(".leaflet-tooltip")
    tip.wait_for(timeout=30_000)
    return spot, tip.inner_text()


def test_tooltips_and_popups_show_escaped_text(open_page, payload_map, payload_alerts,
                                               parcels):
    path, _ = payload_map
    opened = open_page(path)
    # A parcel polygon (canvas): hover shows the tooltip, a click the popup.
    spot, text = _hover_parcel(opened, payload_alerts)
    # title, severity, status, subject and the measured numbers with the threshold
    for expected in ("Parcel " + IMG, "high", "open", "D-0 " + TEMPLATE):
        assert expected in text, expected
    opened.click_at(spot.y, spot.x)
    popup = opened.popup()
    popup.locator(".gs-id").wait_for(timeout=30_000)  # details and evidence decoded
    text = popup.inner_text()
    for expected in ("Parcel " + IMG, "D-0 " + TEMPLATE, CHINESE, "declared_area", "12.5",
                     "thresholds.tolerance_m2", "Parcel over-declared", "open",
                     "(a shape, drawn on the map)", _first_parcel_id(payload_alerts)):
        assert expected in text, expected
    assert "POLYGON" not in text  # the overlap is drawn, not printed
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
    assert "litres 80.5 L, tank 60 L" in tip.inner_text()  # measured numbers (guessed)
    opened.click_at(pt.y, pt.x)
    popup = opened.popup()
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
    popup = opened.popup()
    popup.locator(".gs-id").wait_for(timeout=30_000)
    text = popup.inner_text()
    assert "dismissed" in text and "reviewed: " + IMG in text and SCRIPT in text
    assert "2026-02-01 09:30:00 UTC" in text
    assert opened.js("typeof window.__pwned") == "undefined"


def test_rule_layers_toggle_and_the_evidence_follows(open_page, payload_map):
    path, counts = payload_map
    opened = open_page(path)
    control = opened.page.locator(".leaflet-control-layers-overlays label")
    bus = control.filter(has_text="Bus fill")
    bus.locator("input").uncheck()
    opened.page.wait_for_function(f"{REVIEW}.cluster._gsCount === 3")
    bus.locator("input").check()
    opened.page.wait_for_function(f"{REVIEW}.cluster._gsCount === 33")
    parcels = control.filter(has_text="Parcel over-declared")
    parcels.locator("input").uncheck()
    assert opened.js(f"{REVIEW}.map.hasLayer({REVIEW}.layers.find(l => l._gsCount === 20))"
                     ) is False
    # the evidence layers draw the evidence of the rules shown: 20 overlaps and 20
    # reference parcels go with the parcel rule
    opened.page.wait_for_function(f"{REVIEW}.counts.evidence === {counts['evidence'] - 40}")
    parcels.locator("input").check()
    opened.page.wait_for_function(f"{REVIEW}.counts.evidence === {counts['evidence']}")
    evidence = control.filter(has_text="Evidence · Farmland")
    evidence.locator("input").uncheck()
    fuel = counts["evidence_by_domain"]["fuel"]  # station, track, nearest approach, line
    assert fuel == 4
    opened.page.wait_for_function(f"{REVIEW}.counts.evidence === {fuel}")
    assert opened.errors == []


def test_fuel_alert_click_draws_its_own_evidence(open_page, tmp_path):
    """A fuel alert as the fuel check writes it, at a station shared with other alerts."""
    station = shapely.Point(117.2315, 31.8067)
    rows = []
    for k in range(3):
        track = shapely.LineString([(117.2290 + k * 0.01, 31.8040), (117.2300 + k * 0.01, 31.8050),
                                    (117.2330 + k * 0.01, 31.8090)])
        near = track.interpolate(track.project(station))
        rows.append({"rule": "fuel.away_from_station", "subject_type": "transaction",
                     "subject_id": f"87000000{k}", "severity": ["high", "medium", "low"][k],
                     "title": "Vehicle not near the station at the time of the fill",
                     "evidence": {"station_id": "34010005", "nearest_m": 100.0 + k,
                                  "nearest_fix_id": 22875 + k, "band": 2,
                                  "years": [2023, 2024], "nearest_lon": near.x,
                                  "nearest_lat": near.y, "thresholds": {"radius_m": 300.0}},
                     "geometry": shapely.GeometryCollection([station, track])})
    alerts = _alerts(rows)
    stations = gpd.GeoDataFrame({"station_id": ["34010005"]}, geometry=[station], crs=4326)
    path = write_review_map(alerts, tmp_path / "fuel.html",
                            evidence_layers={"fuel_stations": stations})
    opened = open_page(path)
    # three alerts at one station: a cluster of 3 (alerts, not points)
    assert opened.on_screen() == {"sum": 3, "clusters": 1, "singles": 0}
    # the evidence layer: one station, 3 tracks, 3 nearest approaches, 3 lines to it
    assert opened.js(f"{REVIEW}.counts.evidence") == 10
    opened.view(station.y, station.x, 19)
    opened.click_at(station.y, station.x)  # the cluster at the deepest zoom: the list
    items = opened.page.locator(".gs-list .gs-item")
    items.first.wait_for(timeout=30_000)
    assert items.count() == 3
    items.first.click()  # the most severe first
    opened.page.wait_for_function(f"{REVIEW}.selection && {REVIEW}.selection._gsCount === 4")
    selected = opened.js(f"{REVIEW}.selected")
    roles = opened.js(f"{REVIEW}.selection.getLayers().map(l => l._gsRole).filter(Boolean)")
    assert sorted(roles) == ["approach", "nearest", "station", "track"]
    assert alerts["severity"].iloc[selected] == "high"
    popup = opened.popup()
    popup.locator(".gs-id").wait_for(timeout=30_000)
    text = popup.inner_text()
    # identifiers are not measurements
    assert "22875" in text and "22,875" not in text and "2023, 2024" in text
    assert "nearest approach 100 m (threshold: radius 300 m)" in text
    opened.page.screenshot(path=str(tmp_path / "fuel_selected.png"))
    # the button fits the map to the alert's evidence; a click elsewhere clears it
    opened.page.locator(".gs-zoom").click()
    opened.page.wait_for_function(f"!{REVIEW}.map.hasLayer({REVIEW}.popup)")
    assert opened.js(f"{REVIEW}.selected") == selected
    opened.page.screenshot(path=str(tmp_path / "fuel_zoomed.png"))
    opened.page.mouse.click(700, 780)
    opened.page.wait_for_function(f"{REVIEW}.selected === null")
    assert opened.errors == [] and opened.requests == []


def test_stacked_polygons_list_every_alert(open_page, tmp_path):
    field_ = shapely.box(117.05, 31.70, 117.052, 31.702)
    inner = shapely.box(117.0505, 31.7005, 117.0515, 31.7015)
    rows = [{"rule": rule, "subject_type": "declaration", "subject_id": sid,
             "severity": sev, "title": title, "evidence": {}, "geometry": geom}
            for rule, sid, sev, title, geom in [
                ("farmland.over_declared", "D-1", "high", "Over-declared", field_),
                ("farmland.double_claim", "D-1", "critical", "Claimed twice", field_),
                ("farmland.non_farmland", "D-1", "medium", "On non-farm land", inner),
                ("farmland.non_farmland", "D-2", "low", "Elsewhere",
                 shapely.box(117.06, 31.70, 117.061, 31.701))]]
    path = write_review_map(_alerts(rows), tmp_path / "stacked.html")
    opened = open_page(path)
    opened.view(31.701, 117.051, 17)
    opened.move_to(31.701, 117.051)
    tip = opened.page.locator(".leaflet-tooltip")
    tip.wait_for(timeout=30_000)
    assert "2 more alert(s) here" in tip.inner_text()
    opened.click_at(31.701, 117.051)  # inside all three
    items = opened.page.locator(".gs-list .gs-item")
    items.first.wait_for(timeout=30_000)
    assert [t.split(" · ")[0] for t in items.all_inner_texts()] == [
        "critical Claimed twice", "high Over-declared", "medium On non-farm land"]
    items.nth(1).click()
    popup = opened.popup().locator(".gs-title")
    popup.wait_for(timeout=30_000)
    assert popup.inner_text() == "Over-declared"
    opened.page.screenshot(path=str(tmp_path / "stacked.png"))
    opened.close_popup()
    opened.click_at(31.7012, 117.0502)  # only in the two fields
    opened.page.wait_for_function("document.querySelectorAll('.gs-list .gs-item').length === 2")
    opened.close_popup()
    opened.view(31.7005, 117.0605, 17)
    opened.click_at(31.7005, 117.0605)  # a single alert: its popup directly
    opened.page.locator(".leaflet-popup-content .gs-title", has_text="Elsewhere").wait_for()
    assert opened.errors == [] and opened.requests == []


def test_chinese_labels_in_the_browser(open_page, payload_alerts, registry, parcels,
                                       tmp_path):
    path = write_review_map(payload_alerts, tmp_path / "zh.html", registry=registry,
                            chip_root=tmp_path, lang="zh", evidence_layers={"parcels": parcels})
    opened = open_page(path)
    assert opened.js("document.documentElement.lang") == "zh-CN"
    labels = " ".join(opened.page.locator(".leaflet-control-layers-overlays label")
                      .all_inner_texts())
    assert "耕地补贴 · 地块超报" in labels and "公交加油" in labels
    assert "按规则" in opened.page.locator(".gs-summary").inner_text()
    legend = opened.page.locator(".gs-legend").inner_text()
    for text in ("严重", "证据：参考地块", "证据：重叠部分", "证据：加油站", "证据：轨迹段",
                 "证据：最近点"):
        assert text in legend, text
    assert "parcels" not in legend and "overlap" not in legend
    spot, tip_text = _hover_parcel(opened, payload_alerts)
    assert tip_text.splitlines()[0] == "地块超报"  # the Chinese rule title, not "Parcel <img…"
    assert "高" in tip_text and "待核查" in tip_text and "申报 D-0" in tip_text
    opened.click_at(spot.y, spot.x)
    popup = opened.popup()
    popup.locator(".gs-id").wait_for(timeout=30_000)
    assert popup.locator(".gs-title").inner_text() == "地块超报"
    # the stored title follows as it was written; the detail sentence too
    assert popup.locator(".gs-subtitle").inner_text() == "Parcel " + IMG
    text = popup.inner_text()
    for expected in ("状态", "待核查", "测量值", "预警编号", "对象", "申报 D-0", "阈值",
                     "容差面积 (m²)", "申报面积", "地块编号", "（图形，已绘于地图）"):
        assert expected in text, expected
    assert "declared_area" not in text and "thresholds.tolerance_m2" not in text
    opened.page.screenshot(path=str(tmp_path / "zh.png"))
    # a point alert's tooltip: Chinese rule title too
    last = int((payload_alerts["subject_id"] == "C-29").to_numpy().nonzero()[0][0])
    pt = payload_alerts.geometry.iloc[last]
    opened.view(pt.y, pt.x, 15)
    opened.page.locator(".gs-pt").first.wait_for(timeout=30_000)
    opened.move_to(pt.y, pt.x)
    tip = opened.page.locator(".leaflet-tooltip", has_text="公交加油").last
    tip.wait_for(timeout=30_000)
    assert tip.inner_text().startswith("公交加油 " + IMG)
    assert "加油卡 C-29" in tip.inner_text()
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


def test_many_evidence_features_are_drawn_in_view_when_zoomed_in(open_page, tmp_path,
                                                                 monkeypatch):
    """Above the draw limit the evidence layer starts off; switched on, it draws what
    lies in the view once few enough features are there, and says so otherwise."""
    import maps.review_map as rm

    monkeypatch.setattr(rm, "_EVIDENCE_DRAW", 10)
    rng = np.random.default_rng(5)
    rows = []
    for k in range(40):
        x, y = 117.0 + 0.2 * (k % 8), 31.5 + 0.2 * (k // 8)
        track = shapely.LineString(np.c_[x + np.cumsum(rng.normal(0, 2e-4, 8)),
                                         y + np.cumsum(rng.normal(0, 2e-4, 8))])
        rows.append({"rule": "fuel.no_stop_at_station", "subject_type": "transaction",
                     "subject_id": f"T{k}", "severity": "medium", "evidence": {},
                     "geometry": shapely.GeometryCollection([shapely.Point(x, y), track])})
    alerts = _alerts(rows)
    path = write_review_map(alerts, tmp_path / "many.html")
    config = page_config(path.read_text(encoding="utf-8"))
    assert config["evidence"]["count"] == 80 and config["evidence"]["show"] is False
    opened = open_page(path)
    assert opened.js(f"{REVIEW}.counts.evidence") == 0
    opened.page.locator(".leaflet-control-layers-overlays label",
                        has_text="Evidence · Fuel").locator("input").check()
    note = opened.page.locator("[data-gs=evidence-note]")
    note.filter(has_text="zoom in").wait_for(timeout=30_000)
    assert opened.js(f"{REVIEW}.counts.evidence") == 0
    opened.view(31.5, 117.0, 14)
    opened.page.wait_for_function(f"{REVIEW}.counts.evidence === 2")  # one station, one track
    assert note.inner_text() == ""
    assert opened.errors == [] and opened.requests == []


def test_a_browser_without_decompression_gets_a_message(open_page, payload_alerts, registry,
                                                        tmp_path):
    path = write_review_map(payload_alerts, tmp_path / "old.html", registry=registry,
                            chip_root=tmp_path, compress_over=10)
    opened = open_page(path, init_script="delete window.DecompressionStream;",
                       wait_evidence=False)
    message = opened.page.locator(".gs-fail")
    message.wait_for(timeout=30_000)
    assert "DecompressionStream" in message.inner_text()
    assert "Firefox 113" in message.inner_text()
    opened.page.screenshot(path=str(tmp_path / "old_browser.png"))
    assert opened.requests == []


def test_payload_blocks_decode_like_the_browser(open_page, payload_map):
    """What Python wrote is what the page reads: one alert's evidence, column-stored."""
    path, _ = payload_map
    blocks = page_blocks(path.read_text(encoding="utf-8"))
    opened = open_page(path)
    k = 3
    mine = opened.js(f"() => {REVIEW}.alerts.loadText({k}).then(() => {REVIEW}.alerts"
                     f".evidence({k}))")
    from tests.maps.map_payloads import evidence_of

    assert mine == evidence_of(blocks)[k]
    assert mine["note"] == CHINESE and mine[IMG] == TEMPLATE
    assert opened.js(f"{REVIEW}.alerts.rule({k})") == POINT_RULE
