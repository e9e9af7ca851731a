"""The review map without a browser: escaping, summary, geometry handling, assets, CLI."""

from __future__ import annotations

import base64
import html as html_mod
import json
import re
import warnings
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner
from folium.plugins import MarkerCluster

from geosup.alerts import make_alerts
from geosup.cli import main
from geosup.errors import CRSError, ExportError
from geosup.store import open_store
from maps.evidence import (
    MapWarning,
    alert_priority,
    evidence_features,
    image_chips,
    referenced_layers,
)
from maps.offline import ASSET_DIR, LICENCES, OfflineAssetError, make_offline, remote_references
from maps.review_map import (
    KEY_FIGURES,
    LABELS,
    ROLE_ALIASES,
    ROLE_STYLES,
    display_geometries,
    key_figures,
    review_map,
    rule_titles,
    summarize,
    write_review_map,
)
from tests.maps.map_payloads import (
    CHINESE,
    IMG,
    OTHER_RULE,
    PARCEL_RULE,
    POINT_RULE,
    SCRIPT,
    TEMPLATE,
    alert_shapes,
    evidence_features_of,
    evidence_of,
    page_blocks,
    page_config,
)

pytestmark = pytest.mark.filterwarnings("ignore:image chip:maps.evidence.MapWarning")

#: URL-looking strings allowed in an offline page: inside vendored Leaflet, never loaded.
ALLOWED_URLS = {"http://www.w3.org/2000/svg", "https://leafletjs.com"}


def _blocks(page: str) -> dict[str, object]:
    """The JSON data blocks of a page, decoded (gzip+base64 or plain)."""
    return page_blocks(page)


def _render(alerts, **options) -> str:
    return review_map(alerts, **options).get_root().render()


def test_every_user_string_is_escaped(payload_alerts, registry, tmp_path):
    page = _render(payload_alerts, registry=registry, chip_root=tmp_path,
                   title="Review " + IMG + TEMPLATE)
    # Nothing hostile survives as markup.
    for raw in ('<img src=x onerror', "<script>window.__pwned", "<b>粗体</b>"):
        assert raw not in page
    # Every <script> is one of ours: inline code or a non-executable data block.
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert tag in ("<script>",) or tag.startswith(('<script data-asset="',
                                                       '<script type="application/json"',
                                                       '<script type="application/octet-'))
    # Python-written text (title, summary, layer names): HTML-escaped, braces as entities,
    # so Jinja never sees "{{" (folium feeds macro output through Jinja twice).
    assert html_mod.escape("Review " + IMG, quote=True) in page
    assert "&#123;&#123; 7*7 &#125;&#125;" in page
    outside = re.sub(r'<script type="application/(json|octet-stream)".*?</script>', "", page,
                     flags=re.DOTALL)
    assert "{{ 7*7 }}" not in outside and "{% if" not in outside
    assert "unregistered_49" not in page and "x{% endif %}" not in outside
    # Data blocks: the strings come back exactly, "<" written as \\u003c.
    blocks = _blocks(page)
    core = blocks["core"]
    assert "\\u003cimg src=x" in page
    subjects = core["cols"]["subject_id"]
    assert SCRIPT in (subjects if isinstance(subjects, list) else subjects["d"])
    units = core["cols"]["unit"]["d"]
    assert IMG in units and CHINESE in units
    evidence = evidence_of(blocks)
    assert len(evidence) == len(payload_alerts)
    assert any(isinstance(ev, dict) and ev.get(IMG) == TEMPLATE for ev in evidence)
    assert core["rule_titles"][POINT_RULE] == "Bus fill " + IMG  # from the registry


def test_compressed_and_plain_blocks_hold_the_same_data(payload_alerts, registry, tmp_path):
    plain = _blocks(_render(payload_alerts, registry=registry, chip_root=tmp_path,
                            compress_over=10**9))
    packed_page = _render(payload_alerts, registry=registry, chip_root=tmp_path,
                          compress_over=10)
    assert 'data-encoding="gzip+base64"' in packed_page
    packed = _blocks(packed_page)
    assert plain["core"]["cols"] == packed["core"]["cols"]
    assert plain["t0"] == packed["t0"]


def test_text_blocks_are_chunked(payload_alerts, registry, tmp_path):
    blocks = _blocks(_render(payload_alerts, registry=registry, chip_root=tmp_path,
                             text_chunk=10))
    chunks = sorted(k for k in blocks if k.startswith("t"))
    assert len(chunks) == -(-len(payload_alerts) // 10)
    ids = [i for k in sorted(chunks, key=lambda s: int(s[1:]))
           for i in blocks[k]["cols"]["alert_id"]]
    assert ids == payload_alerts["alert_id"].tolist()


def test_summary_counts_and_amounts(payload_alerts, registry):
    s = summarize(payload_alerts, registry=registry)
    assert s["total"] == len(payload_alerts)
    assert s["not_drawn"] == 2 and s["drawn"] == len(payload_alerts) - 2
    rules = s["rules"].set_index("rule")
    assert rules.loc[POINT_RULE, "count"] == 30
    assert rules.loc[POINT_RULE, "amount"] == pytest.approx(10.0 * sum(range(30)))
    assert rules.loc[PARCEL_RULE, "amount"] == pytest.approx(2000.0)
    assert rules.loc[OTHER_RULE, "count"] == 4 and rules.loc[OTHER_RULE, "not_drawn"] == 2
    assert rules.loc[POINT_RULE, "title"] == "Bus fill " + IMG
    assert rules.loc[OTHER_RULE, "title"] == OTHER_RULE  # unregistered: the code
    units = s["units"].set_index("unit")
    assert units.loc["village A", "count"] == 10 + 2
    assert units.loc["village A", "not_drawn"] == 2
    assert units.loc["village A", "amount"] == pytest.approx(1000.0 + 10.0)
    assert s["amount"] == pytest.approx(10.0 * sum(range(30)) + 2000.0 + 10.0)


def test_empty_geometry_is_counted_not_drawn(payload_alerts, registry, tmp_path):
    m = review_map(payload_alerts, registry=registry, chip_root=tmp_path)
    counts = m.geosup_counts
    assert counts["alerts"] == len(payload_alerts) and counts["drawn"] == len(payload_alerts) - 2
    page = m.get_root().render()
    assert 'data-gs="not-drawn"' in page and "2 alert(s) without geometry" in page
    core = _blocks(page)["core"]
    drawn = {i for layer in core["layers"] for i in layer["i"]}
    missing = set(np.flatnonzero(payload_alerts["subject_id"].isin(["no-geom-1", "no-geom-2"])))
    assert drawn.isdisjoint(missing)


def test_only_empty_geometry_and_no_alerts(tmp_path):
    none = make_alerts(pd.DataFrame({"rule": ["fuel.x", "fuel.y"], "subject_type": "card",
                                     "subject_id": ["a", "b"]}))
    page = write_review_map(none, tmp_path / "a.html").read_text(encoding="utf-8")
    assert "2 alert(s) without geometry" in page and not remote_references(page)
    empty = make_alerts(pd.DataFrame({"rule": pd.Series([], dtype="string")}))
    page = write_review_map(empty, tmp_path / "b.html").read_text(encoding="utf-8")
    assert "<p>No alerts.</p>" in page


def test_mixed_geometry_types(payload_alerts, registry, tmp_path):
    m = review_map(payload_alerts, registry=registry, chip_root=tmp_path)
    core = _blocks(m.get_root().render())["core"]
    points = {i for layer in core["layers"] if layer["kind"] == "points" for i in layer["i"]}
    shapes = alert_shapes(core)
    subject = payload_alerts["subject_id"].to_numpy()
    # Every alert that is not a polygon is ONE clustered point: 30 bus fills, the fuel
    # collection (at its station), the line and the multipoint (their first point).
    assert len(points) == m.geosup_counts["points"] == 33
    assert {subject[i] for i in points} >= {"T-1", "line", "multi"}
    fuel = int(np.flatnonzero(subject == "T-1")[0])
    layer = next(x for x in core["layers"] if fuel in x["i"])
    k = layer["i"].index(fuel)
    station = payload_alerts.geometry.iloc[fuel].geoms[0]
    assert layer["xy"][2 * k:2 * k + 2] == pytest.approx([station.x, station.y], abs=1e-6)
    multi = int(np.flatnonzero(subject == "multi")[0])
    layer = next(x for x in core["layers"] if multi in x["i"])
    k = layer["i"].index(multi)
    assert layer["xy"][2 * k:2 * k + 2] == pytest.approx([-2.96, 53.42])
    # Polygons are drawn as polygons: the 20 parcels and the 2 claims.
    assert len(shapes) == m.geosup_counts["shapes"] == 22
    assert {shapes[i].geom_type for i in shapes} <= {"Polygon", "MultiPolygon"}
    parcel = int(np.flatnonzero(payload_alerts["rule"] == PARCEL_RULE)[0])
    # drawn within the display tolerance (0.5 m, about 0.5e-5 degrees) of the stored shape
    assert shapes[parcel].hausdorff_distance(payload_alerts.geometry.iloc[parcel]) < 1e-5


def test_simplification_keeps_the_store_geometry(tmp_path):
    t = np.linspace(0, 2 * np.pi, 1_000_000, endpoint=False)
    jitter = 1 + 0.001 * np.sin(t * 5000)
    ring = np.c_[5.3 + 0.05 * np.cos(t) * jitter, 52.1 + 0.03 * np.sin(t) * jitter]
    big = shapely.Polygon(ring)
    hits = gpd.GeoDataFrame({"rule": ["farmland.big"], "subject_type": "parcel",
                             "subject_id": ["P-big"]}, geometry=[big], crs=4326)
    alerts = make_alerts(hits)
    url = str(tmp_path / "s.gpkg")
    with open_store(url) as st, st.run("test") as run:
        run.write_alerts(alerts)
    with open_store(url) as st:
        stored = st.alerts()
    assert shapely.get_num_coordinates(stored.geometry.iloc[0]) == 1_000_001
    path = write_review_map(stored, tmp_path / "big.html", max_vertices=5_000)
    assert path.stat().st_size < 1_000_000
    core = _blocks(path.read_text(encoding="utf-8"))["core"]
    shown = alert_shapes(core)[0]
    assert 100 < shapely.get_num_coordinates(shown) <= 5_000
    assert shapely.get_num_coordinates(stored.geometry.iloc[0]) == 1_000_001  # input untouched
    assert shapely.equals_exact(stored.geometry.iloc[0], big, tolerance=1e-9)
    with open_store(url) as st:
        assert shapely.get_num_coordinates(st.alerts().geometry.iloc[0]) == 1_000_001
    # Simplified, still the same shape: area and extent within a fraction of a percent.
    assert shown.area == pytest.approx(big.area, rel=0.005)
    assert np.allclose(shown.bounds, big.bounds, atol=0.0005)


def test_display_geometries_rounds_without_touching_input():
    g = np.array([shapely.Point(4.123456789, 52.987654321), None, shapely.Polygon()],
                 dtype=object)
    out = display_geometries(g)
    assert shapely.get_x(g[0]) == 4.123456789
    assert shapely.to_geojson(out[0]) == '{"type":"Point","coordinates":[4.123457,52.987654]}'
    assert out[1] is None and shapely.is_empty(out[2])


def test_datetimes_are_text(payload_alerts, registry, tmp_path):
    frame = payload_alerts.copy()
    frame["observed_at"] = frame["observed_at"].dt.tz_localize(None)  # naive: read as UTC
    blocks = _blocks(_render(frame, registry=registry, chip_root=tmp_path))
    observed = blocks["t0"]["cols"]["observed_at"]
    values = observed if isinstance(observed, list) else observed["d"]
    assert "2026-01-26 15:57:02 UTC" in values
    status_at = blocks["t0"]["cols"]["status_at"]
    assert "2026-02-01 09:30:00 UTC" in (status_at if isinstance(status_at, list)
                                          else status_at["d"])


def test_chinese_labels(payload_alerts, registry, tmp_path):
    page = _render(payload_alerts, registry=registry, chip_root=tmp_path, lang="zh")
    for text in ("按规则", "按单位", "涉及金额", "图例", "严重", "没有几何，只计数，不上图",
                 "耕地补贴", "地块超报"):
        assert text in page
    core = _blocks(page)["core"]
    assert core["labels"]["field"]["status"] == "状态"
    assert core["rule_titles"][PARCEL_RULE] == "地块超报"
    assert core["rule_titles"][OTHER_RULE] == OTHER_RULE
    assert "By rule" not in page
    with pytest.raises(ValueError, match="unknown language"):
        review_map(payload_alerts, lang="fr")


def test_rule_titles_fall_back_to_codes(registry):
    assert rule_titles([POINT_RULE, "x.y"], registry=registry) == {
        POINT_RULE: "Bus fill " + IMG, "x.y": "x.y"}
    assert rule_titles([PARCEL_RULE], lang="zh", registry=registry) == {PARCEL_RULE: "地块超报"}


def test_offline_page_has_no_remote_reference(payload_alerts, registry, tmp_path):
    path = write_review_map(payload_alerts, tmp_path / "m.html", registry=registry,
                            chip_root=tmp_path)
    page = path.read_text(encoding="utf-8")
    assert remote_references(page) == []
    assert set(re.findall(r"https?://[^\s\"'<>)\\]+", page)) <= ALLOWED_URLS
    for cdn in ("cdn.jsdelivr", "cdnjs", "code.jquery", "bootstrapcdn", "openstreetmap"):
        assert cdn not in page
    assert "Content-Security-Policy" in page and "connect-src 'none'" in page
    assert 'data-asset="leaflet"' in page and 'data-asset="supercluster"' in page
    assert 'data-asset="jquery"' not in page  # no folium Popup on the review map
    assert len(page) < 600_000


def test_online_keeps_cdn_links(payload_alerts, registry, tmp_path):
    page = _render(payload_alerts, registry=registry, chip_root=tmp_path, online=True)
    assert "https://cdn.jsdelivr.net/npm/leaflet@" in page
    assert "https://cdn.jsdelivr.net/npm/supercluster@9.1.0" in page
    assert "tile.openstreetmap.org" in page
    assert "Content-Security-Policy" not in page
    assert remote_references(page)


def test_folium_class_attributes_untouched(payload_alerts, registry, tmp_path):
    before_js, before_css = list(folium.Map.default_js), list(folium.Map.default_css)
    _render(payload_alerts, registry=registry, chip_root=tmp_path)
    assert folium.Map.default_js == before_js and folium.Map.default_css == before_css
    assert all(url.startswith("https://") for _, url in MarkerCluster.default_js)


def test_make_offline_on_a_plain_folium_map():
    m = folium.Map(tiles=None)
    cluster = MarkerCluster().add_to(m)
    folium.Marker([52, 5], popup=folium.Popup("a &lt;b&gt;")).add_to(cluster)
    page = make_offline(m).get_root().render()
    assert remote_references(page) == []
    for name in ("leaflet", "jquery", "markerclusterjs", "markerclustercss"):
        assert f'data-asset="{name}"' in page
    assert 'L.Icon.Default.imagePath = ""' in page  # default marker icon from data: URIs
    m2 = folium.Map(tiles=None)
    folium.Marker([52, 5], icon=folium.Icon(color="red")).add_to(m2)
    with pytest.raises(OfflineAssetError, match="awesome-markers"):
        make_offline(m2)


def test_evidence_features(payload_alerts, parcels):
    ev = evidence_features(payload_alerts, evidence_layers={"parcels": parcels})
    roles = ev.groupby("role").size().to_dict()
    assert roles["overlap"] == 20 and roles["parcels"] == 20
    assert roles["station"] == 1 and roles["track"] == 1 and roles["nearest"] == 1
    collection = int(np.flatnonzero(payload_alerts["subject_id"] == "T-1")[0])
    assert set(ev.loc[ev["alert"] == collection, "role"]) == {"station", "track", "nearest"}
    assert (ev["domain"][ev["role"] == "parcels"] == "farmland").all()
    ref = ev.loc[ev["role"] == "parcels"].iloc[0]
    assert ref.geometry.equals(parcels.geometry.iloc[20])
    assert ev.crs.equals("EPSG:4326")


def test_evidence_wkt_in_another_crs_and_bad_values():
    hits = gpd.GeoDataFrame({
        "rule": ["farmland.a", "farmland.b", "farmland.c"], "subject_type": "d",
        "subject_id": ["1", "2", "3"],
        "evidence": [{"crs": "EPSG:28992", "declared_wkt": "POINT (155000 463000)"},
                     {"overlap_wkt": "POLYGON ((not wkt", "x_lon": "a", "x_lat": 1},
                     {"area": {"type": "Point", "coordinates": [5.1, 52.1]}}]},
        geometry=[None, None, None], crs=4326)
    ev = evidence_features(make_alerts(hits))
    assert ev["role"].tolist() == ["declared", "area"]
    assert ev.geometry.iloc[0].x == pytest.approx(5.387, abs=0.01)  # Amersfoort
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evidence_features(make_alerts(hits), max_features=10)
    with pytest.warns(MapWarning, match="left off"):
        assert len(evidence_features(make_alerts(hits), max_features=1)) == 1


def test_image_chips_only_real_images(payload_alerts, tmp_path):
    with pytest.warns(MapWarning, match="not a PNG or JPEG"):
        chips = image_chips(payload_alerts, root=tmp_path)
    assert len(chips) == 1
    chip = chips[0]
    assert chip.before.startswith("data:image/png;base64,")
    assert chip.after.startswith("data:image/png;base64,")  # relative path, from root
    assert chip.bounds == ((53.40, -2.95), (53.41, -2.94))
    with pytest.warns(MapWarning):
        page = _render(payload_alerts, chip_root=tmp_path)
    assert "TOP-SECRET" not in page
    assert base64.b64encode(b"TOP-SECRET").decode() not in page


def test_crs_required_and_reprojected(payload_alerts, registry, tmp_path):
    bare = gpd.GeoDataFrame(payload_alerts.drop(columns="geometry"),
                            geometry=payload_alerts.geometry.to_numpy())
    with pytest.raises(CRSError):
        review_map(bare)
    metric = payload_alerts.to_crs(28992)
    with pytest.warns(MapWarning):
        m = review_map(metric, registry=registry, chip_root=tmp_path / "none")
    assert m.geosup_counts["drawn"] == len(payload_alerts) - 2


def test_write_refuses_to_clobber(payload_alerts, tmp_path):
    path = tmp_path / "m.html"
    path.write_text("keep me", encoding="utf-8")
    with pytest.raises(ExportError, match="already exists"):
        write_review_map(payload_alerts, path)
    assert path.read_text(encoding="utf-8") == "keep me"


@pytest.fixture
def filled_store(payload_alerts, tmp_path) -> str:
    url = str(tmp_path / "geosup.gpkg")
    with open_store(url) as st, st.run("test fill") as run:
        run.write_alerts(payload_alerts)
    return url


def test_cli_map(filled_store, tmp_path):
    runner = CliRunner()
    out = tmp_path / "alerts.html"
    res = runner.invoke(main, ["map", "--store", filled_store, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    # alerts without geometry are counted, not "drawn"
    assert "57 alerts, 55 drawn (2 without geometry: counted, not drawn)" in res.stderr
    page = out.read_text(encoding="utf-8")
    assert remote_references(page) == [] and "<p>No alerts.</p>" not in page
    # The relative chip path is read from the store's folder.
    assert "data:image/png;base64," in page
    res = runner.invoke(main, ["map", "--store", filled_store, "-o", str(out)])
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "already exists" in res.stderr
    assert "--overwrite" in res.stderr
    res = runner.invoke(main, ["map", "--store", filled_store, "-o", str(out), "--overwrite",
                               "--lang", "zh", "--rule", PARCEL_RULE, "--title", "T " + IMG])
    assert res.exit_code == 0, res.output
    page = out.read_text(encoding="utf-8")
    assert "按规则" in page and html_mod.escape("T " + IMG) in page
    core = _blocks(page)["core"]
    assert core["n"] == 20
    res = runner.invoke(main, ["map", "--store", filled_store, "-o", str(tmp_path / "o.html"),
                               "--online", "--severity", "critical"])
    assert res.exit_code == 0, res.output
    assert "tile.openstreetmap.org" in (tmp_path / "o.html").read_text(encoding="utf-8")


def test_cli_map_with_stored_layer(filled_store, parcels, tmp_path):
    with open_store(filled_store) as st, st.run("layers") as run:
        run.write_layer("parcels", parcels, id_column="parcel_id")
    out = tmp_path / "m.html"
    res = CliRunner().invoke(main, ["map", "--store", filled_store, "-o", str(out),
                                    "--layer", "parcels"])
    assert res.exit_code == 0, res.output
    roles = page_config(out.read_text(encoding="utf-8"))["evidence"]["roles"]
    assert "reference" in roles and "overlap" in roles  # the parcels layer, drawn as such


def test_cli_map_missing_store(tmp_path):
    res = CliRunner().invoke(main, ["map", "--store", str(tmp_path / "nope.gpkg"),
                                    "-o", str(tmp_path / "m.html")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert not (tmp_path / "m.html").exists()


def test_demo_style_call_writes_over(payload_alerts, tmp_path):
    path = Path(tmp_path / "alerts.html")
    write_review_map(payload_alerts, path, chip_root=tmp_path)
    write_review_map(payload_alerts, path, chip_root=tmp_path, overwrite=True, lang="zh")
    assert "按规则" in path.read_text(encoding="utf-8")


# -- what the strict review asked for ---------------------------------------------------------

def _fuel_alert(**evidence) -> dict:
    """A fuel alert as trajectories/audit.py writes it: station point + track collection."""
    station = shapely.Point(117.2315, 31.8067)
    track = shapely.LineString([(117.2290, 31.8040), (117.2300, 31.8050), (117.2310, 31.8062),
                                (117.2330, 31.8090)])
    return {"rule": "fuel.away_from_station", "domain": "fuel", "subject_type": "transaction",
            "subject_id": "8700000023", "severity": "high", "score": 0.9,
            "title": "Vehicle not near the station at the time of the fill",
            "evidence": {"station_id": "34010005", "nearest_fix_id": 22875, "nearest_m": 412.5,
                         "nearest_lon": 117.2310, "nearest_lat": 31.8062,
                         "station_lon": station.x, "station_lat": station.y,
                         "thresholds": {"radius_m": 300.0}, **evidence},
            "geometry": shapely.GeometryCollection([station, track])}


def _alerts(rows: list[dict]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame(rows)
    frame["evidence"] = [json.dumps(e, ensure_ascii=False) if isinstance(e, dict) else e
                         for e in frame.get("evidence", [None] * len(frame))]
    return make_alerts(gpd.GeoDataFrame(frame.drop(columns="geometry"),
                                        geometry=gpd.GeoSeries(frame["geometry"], crs=4326),
                                        crs=4326))


def test_fuel_evidence_is_drawn_once_and_joined(tmp_path):
    """Station from the collection, from station_lon/lat and from the stations layer: one
    circle; the nearest approach a point with a line to its station; the track evidence."""
    alerts = _alerts([_fuel_alert()])
    stations = gpd.GeoDataFrame({"station_id": ["34010005", "34010006"]},
                                geometry=[shapely.Point(117.2315, 31.8067),
                                          shapely.Point(117.30, 31.90)], crs=4326)
    m = review_map(alerts, evidence_layers={"fuel_stations": stations})
    page = m.get_root().render()
    blocks, config = page_blocks(page), page_config(page)
    features = evidence_features_of(blocks, config["evidence"]["roles"])
    roles = sorted(r for _, r, _ in features)
    assert roles == ["approach", "nearest", "station", "track"]
    by_role = {r: g for _, r, g in features}
    assert by_role["station"].equals_exact(shapely.Point(117.2315, 31.8067), 1e-6)
    assert by_role["nearest"].equals_exact(shapely.Point(117.2310, 31.8062), 1e-6)
    assert np.ravel(by_role["approach"].coords).tolist() == pytest.approx(
        [117.2310, 31.8062, 117.2315, 31.8067])
    assert by_role["track"].length == pytest.approx(
        alerts.geometry.iloc[0].geoms[1].length, rel=1e-3)
    # the alert itself: one clustered point at its station, no shape in severity colour
    core = blocks["core"]
    assert [x["kind"] for x in core["layers"]] == ["points"]
    assert core["layers"][0]["xy"] == pytest.approx([117.2315, 31.8067])
    assert m.geosup_counts["shapes"] == 0 and m.geosup_counts["evidence"] == 4
    # the legend draws what the map draws: circles, lines, in the same colours
    legend = {role: kind for role, kind in re.findall(
        r'<tr data-role="([a-z_]+)"><td><span class="gs-[a-z]+" data-kind="([a-z]+)"', page)}
    assert legend == {"approach": "line", "nearest": "point", "station": "point",
                      "track": "line"}
    for role in legend:
        assert ROLE_STYLES[role]["color"] in page.split(f'data-role="{role}"')[1][:400]
    assert config["evidence"]["styles"]["approach"] == ROLE_STYLES["approach"]
    # the tooltip line: measured number and the threshold that fired
    assert core["cols"]["key"]["d"] == ["nearest approach 412.5 m (threshold: radius 300 m)"]


def test_several_layers_share_an_id_key_and_farmland_roles():
    """declarations and previous are both keyed by declaration_id; previous_id names the
    previous layer; *_wkt keys are drawn with their role."""
    box = shapely.box(117.05, 31.70, 117.051, 31.701)
    last_year = shapely.box(117.0502, 31.70, 117.0512, 31.701)
    declarations = gpd.GeoDataFrame({"declaration_id": ["2025-A1-01"]}, geometry=[box], crs=4326)
    previous = gpd.GeoDataFrame({"declaration_id": ["2024-A1-01"]}, geometry=[last_year],
                                crs=4326)
    evidence = {"declaration_id": "2025-A1-01", "declaration_ids": ["2025-A1-01", "2024-A1-01"],
                "previous_id": "2024-A1-01", "area_change": 0.0, "geometry_change": 0.33,
                "overlap_wkt": shapely.to_wkt(box.intersection(last_year)),
                "inside_wkt": shapely.to_wkt(box.buffer(-0.0002)),
                "thresholds": {"area_change": 0.3, "geometry_change": 0.3}}
    alerts = _alerts([{"rule": "farmland.year_change", "subject_type": "declaration",
                       "subject_id": "2025-A1-01", "evidence": evidence, "geometry": box}])
    layers = {"declarations": declarations, "previous": previous}
    for frame in layers.values():
        frame.attrs["id_column"] = "declaration_id"
    ev = evidence_features(alerts, evidence_layers=layers)
    assert sorted(ev["role"]) == ["declarations", "inside", "overlap", "previous"]
    assert ev.loc[ev["role"] == "previous"].geometry.iloc[0].equals(last_year)
    page = review_map(alerts, evidence_layers=layers).get_root().render()
    config = page_config(page)
    assert config["evidence"]["roles"] == ["declared", "inside", "overlap", "previous"]
    for lang in ("en", "zh"):
        for role in ("overlap", "previous", "inside", "outside", "declared", "reference"):
            assert role in LABELS[lang]["role"] and role in ROLE_STYLES
    zh = review_map(alerts, evidence_layers=layers, lang="zh").get_root().render()
    for label in ("申报地块", "参考地块内部分", "重叠部分", "上年申报地块"):
        assert f"证据：{label}" in zh
    # the popup lists the measured numbers, not the polygons' text
    popup = evidence_of(page_blocks(page))[0]
    assert popup["overlap_wkt"] == LABELS["en"]["ui"]["shape_drawn"]
    assert popup["geometry_change"] == 0.33


def test_referenced_layers_finds_a_layer_by_its_own_key(tmp_path):
    box = shapely.box(117.05, 31.70, 117.051, 31.701)
    url = str(tmp_path / "s.gpkg")
    with open_store(url) as st, st.run("layers") as run:
        run.write_layer("declarations", gpd.GeoDataFrame(
            {"declaration_id": ["2025-A1-01"]}, geometry=[box], crs=4326),
            id_column="declaration_id")
        run.write_layer("previous", gpd.GeoDataFrame(
            {"declaration_id": ["2024-A1-01"]}, geometry=[box], crs=4326),
            id_column="declaration_id")
    alerts = _alerts([{"rule": "farmland.year_change", "subject_type": "declaration",
                       "subject_id": "x", "geometry": box,
                       "evidence": {"declaration_ids": ["2025-A1-01"],
                                    "previous_id": "2024-A1-01"}}])
    with open_store(url, create=False) as st:
        layers = referenced_layers(st, alerts)
    assert sorted(layers) == ["declarations", "previous"]


def test_every_rule_has_chinese_titles_and_key_figures():
    from geosup.rules import load_builtin_rules

    rules = load_builtin_rules().rules
    assert set(KEY_FIGURES) == set(rules)
    for code, rule in rules.items():
        assert rule.title_zh, code
        assert rule_titles([code], lang="zh")[code] == rule.title_zh
        measured, limits = KEY_FIGURES[code]
        for path in (*measured, *limits):
            assert path.rsplit(".", 1)[-1] in LABELS["zh"]["key"], (code, path)
            assert path.rsplit(".", 1)[-1] in LABELS["en"]["key"], (code, path)
        for t in rule.thresholds:
            assert t.name in LABELS["zh"]["key"], (code, t.name)
    for role in {*ROLE_STYLES, *ROLE_ALIASES.values()}:
        assert role in LABELS["zh"]["role"] and role in LABELS["en"]["role"], role


@pytest.mark.parametrize(("rule", "evidence", "en", "zh"), [
    ("farmland.over_declared",
     {"excess_area": 2.0746, "excess_share": 0.380983, "tolerance_area": 0.4635,
      "area_unit": "mu"},
     "excess 2.07 mu, excess share 38.1 % (threshold: tolerance 0.46 mu)",
     "超出面积 2.07 亩，超出比例 38.1 %（阈值：容差面积 0.46 亩）"),
    ("fuel.over_tank_capacity", {"litres": 156.0, "tank_l": 120.0,
                                 "thresholds": {"tolerance": 0.05}},
     "litres 156 L, tank 120 L (threshold: tolerance 5 %)",
     "加油量 156 L，油箱容量 120 L（阈值：容差 5 %）"),
    ("fuel.off_hours", {"local_time": "2024-10-01 10:19",
                        "thresholds": {"work_start": "08:00", "work_end": "18:00"}},
     "local time 2024-10-01 10:19 (threshold: work starts 08:00, work ends 18:00)",
     "当地时间 2024-10-01 10:19（阈值：上班时间 08:00，下班时间 18:00）"),
    ("no.such_rule", {"distance_m": 812.0, "card_id": 7, "thresholds": {"max_distance_m": 500}},
     "distance 812 m (threshold: max. distance 500 m)",
     "距离 812 m（阈值：最大距离 500 m）"),
])
def test_key_figures(rule, evidence, en, zh):
    assert key_figures(rule, evidence) == en
    assert key_figures(rule, json.dumps(evidence), lang="zh") == zh


def test_licence_notice_before_every_inlined_asset(payload_alerts, registry, tmp_path):
    page = _render(payload_alerts, registry=registry, chip_root=tmp_path)
    names = re.findall(r'<(?:script|style) data-asset="([a-z_]+)">', page)
    assert sorted(names) == ["geosup_review_css", "geosup_review_js", "leaflet", "leaflet_css",
                             "supercluster"]
    for name in names:
        before = page[:page.index(f'data-asset="{name}"')]
        comment = before[before.rindex("<!--"):]
        package, version, spdx, files, _ = LICENCES[name]
        assert comment.startswith(f"<!-- {package}") and spdx in comment
        if version:
            assert version in comment
        assert "Copyright" in comment
        for rel in files:  # the full licence text, as shipped in maps/assets
            first = (ASSET_DIR / rel).read_text(encoding="utf-8").strip().splitlines()[2]
            assert first in comment
    kdbush = page[page.index("kdbush 4.1.0"):page.index('data-asset="supercluster"')]
    assert "ISC License" in kdbush and "Vladimir Agafonkin" in kdbush
    readme = (ASSET_DIR / "README.md").read_text(encoding="utf-8")
    assert "kdbush" in readme and "kdbush/LICENSE" in readme


def test_html_lang_and_online_assets(payload_alerts, registry, tmp_path):
    assert '<html lang="en">' in _render(payload_alerts, registry=registry, chip_root=tmp_path)
    assert '<html lang="zh-CN">' in _render(payload_alerts, registry=registry,
                                            chip_root=tmp_path, lang="zh")
    online = _render(payload_alerts, registry=registry, chip_root=tmp_path, online=True)
    links = set(re.findall(r'(?:src|href)="(https://[^"]+)"', online))
    assert links == {"https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.js",
                     "https://cdn.jsdelivr.net/npm/leaflet@1.9.4/dist/leaflet.css",
                     "https://cdn.jsdelivr.net/npm/supercluster@9.1.0/dist/supercluster.min.js"}
    for unused in ("bootstrap", "fontawesome", "glyphicons", "awesome-markers",
                   "python-visualization", "jquery", "leaflet@1.9.3"):
        assert unused not in online


def test_amount_dash_currency_and_out_of_range(tmp_path):
    alerts = _alerts([
        {"rule": "fuel.off_hours", "subject_type": "card", "subject_id": "a",
         "geometry": shapely.Point(117.2, 31.8)},
        {"rule": "fuel.off_hours", "subject_type": "card", "subject_id": "b",
         "geometry": shapely.Point(512_345.0, 3_521_000.0)},  # metres called degrees
        {"rule": "fuel.off_hours", "subject_type": "card", "subject_id": "c",
         "geometry": None}])
    s = summarize(alerts)
    assert (s["total"], s["drawn"], s["not_drawn"], s["out_of_range"], s["amount"]) == \
        (3, 1, 2, 1, None)
    page = _render(alerts, currency="CNY")
    assert 'Amount at risk (CNY): <b data-gs="amount">—</b>' in page
    assert "1 alert(s) without geometry" in page
    assert 'data-gs="out-of-range"' in page and "outside the longitude/latitude range" in page
    assert page_blocks(page)["core"]["currency"] == "CNY"


def test_page_budget_leaves_out_the_least_important_evidence():
    rng = np.random.default_rng(3)
    rows = []
    for k in range(400):
        track = shapely.LineString(np.c_[117.2 + np.cumsum(rng.normal(0, 1e-3, 60)),
                                         31.8 + np.cumsum(rng.normal(0, 1e-3, 60))])
        rows.append({"rule": "fuel.no_stop_at_station", "subject_type": "transaction",
                     "subject_id": f"T{k}", "severity": ["low", "high"][k % 2],
                     "score": k / 400, "evidence": {"nearest_m": float(k)},
                     "geometry": shapely.GeometryCollection([track.interpolate(0.5), track])})
    alerts = _alerts(rows)
    full = review_map(alerts).geosup_counts
    assert full["evidence_left_out"] == 0 and full["evidence"] == 800
    budget = full["page_estimate"] - 40_000
    with pytest.warns(MapWarning, match=r"evidence geometry of [\d,]+ alerts .* filter"):
        m = review_map(alerts, max_page_bytes=budget)
    counts = m.geosup_counts
    assert 0 < counts["evidence_left_out"] < 400 and counts["page_estimate"] <= budget
    page = m.get_root().render()
    assert len(page.encode()) <= budget
    assert 'data-gs="left-out"' in page
    blocks, config = page_blocks(page), page_config(page)
    kept = {a for alerts_f, _, _ in evidence_features_of(blocks, config["evidence"]["roles"])
            for a in alerts_f}
    dropped = set(range(400)) - kept
    assert len(dropped) == counts["evidence_left_out"]
    rank = {int(i): r for r, i in enumerate(alert_priority(alerts))}
    assert max(rank[i] for i in kept) < min(rank[i] for i in dropped)  # lowest priority out
    assert {alerts["severity"].iloc[i] for i in dropped} == {"low"}


def test_default_chip_cap_fits_the_page_budget():
    import inspect

    cap = inspect.signature(review_map).parameters["max_chip_bytes"].default
    budget = inspect.signature(review_map).parameters["max_page_bytes"].default
    assert budget == 30_000_000 and cap * 4 / 3 < budget / 2  # base64: a third more
    assert inspect.signature(image_chips).parameters["max_bytes"].default == cap


def test_chip_paths_stay_in_the_chip_folder(tmp_path):
    from tests.maps.conftest import png_chip

    root = tmp_path / "chips"
    root.mkdir()
    inside = png_chip(root / "in.png", (10, 200, 10))
    outside = png_chip(tmp_path / "secret.png", (200, 10, 10))
    (root / "link.png").symlink_to(outside)
    rows = []
    for k, value in enumerate([inside.name, str(inside), str(outside), "../secret.png",
                               "link.png"]):
        rows.append({"rule": "requisition.built_after_notice", "subject_type": "claim",
                     "subject_id": f"K{k}", "evidence": {"chip_before": value},
                     "geometry": shapely.box(117.0 + k, 31.0, 117.001 + k, 31.001)})
    alerts = _alerts(rows)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chips = image_chips(alerts, root=root)
    assert [c.alert for c in chips] == [0, 1]
    refused = [str(w.message) for w in caught if issubclass(w.category, MapWarning)]
    assert len(refused) == 3 and all("outside the chip folder" in m for m in refused)


def test_chinese_labels_cover_the_evidence_the_checks_write():
    """Every evidence key and threshold the checks write (as maps.testing mirrors them)
    has a Chinese label; every subject type too."""
    from maps.testing import synthetic_alerts

    alerts = synthetic_alerts(3_000)
    keys: set[str] = set()
    for text in alerts["evidence"]:
        ev = json.loads(text)
        keys.update(ev)
        keys.update(ev.get("thresholds", {}))
    assert sorted(keys - set(LABELS["zh"]["key"])) == []
    assert sorted(set(alerts["subject_type"]) - set(LABELS["zh"]["subject"])) == []


def test_page_budget_leaves_out_chips_of_the_least_important_alert(tmp_path):
    from folium.utilities import write_png

    rng = np.random.default_rng(9)
    rows = []
    for k, severity in enumerate(["critical", "low", "high"]):
        png = tmp_path / f"c{k}.png"
        png.write_bytes(write_png(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)))
        box = shapely.box(117.0 + k / 100, 31.0, 117.001 + k / 100, 31.001)
        rows.append({"rule": "requisition.built_after_notice", "subject_type": "claim",
                     "subject_id": f"K{k}", "severity": severity,
                     "evidence": {"chip_before": png.name, "chip_after": png.name,
                                  "overlap_wkt": shapely.to_wkt(box.buffer(-0.0002))},
                     "geometry": box})
    alerts = _alerts(rows)
    full = review_map(alerts, chip_root=tmp_path).geosup_counts
    assert full["chips"] == 3
    budget = full["page_estimate"] - 50_000  # less than one alert's pair of chips
    with pytest.warns(MapWarning, match="image chips of 1 alerts"):
        m = review_map(alerts, chip_root=tmp_path, max_page_bytes=budget)
    page = m.get_root().render()
    assert len(page.encode()) <= budget
    chips = page_blocks(page)["chips"]
    assert sorted(item[0] for item in chips) == [0, 2]  # the low-severity one is left out
    assert m.geosup_counts["evidence"] == full["evidence"] == 3  # evidence kept
    assert 'data-gs="chips-out"' in page and 'data-gs="left-out"' not in page
