"""The review map without a browser: escaping, summary, geometry handling, assets, CLI."""

from __future__ import annotations

import base64
import gzip
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
from maps.evidence import MapWarning, evidence_features, image_chips
from maps.offline import OfflineAssetError, make_offline, remote_references
from maps.review_map import (
    display_geometries,
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
)

pytestmark = pytest.mark.filterwarnings("ignore:image chip:maps.evidence.MapWarning")

#: URL-looking strings allowed in an offline page: inside vendored Leaflet, never loaded.
ALLOWED_URLS = {"http://www.w3.org/2000/svg", "https://leafletjs.com"}


def _blocks(page: str) -> dict[str, object]:
    """The JSON data blocks of a page, decoded (gzip+base64 or plain)."""
    out = {}
    for m in re.finditer(r'<script type="application/(json|octet-stream)" id="gs-([a-z0-9]+)-'
                         r'[0-9a-f]+"(?: data-encoding="gzip\+base64")?>(.*?)</script>', page,
                         re.DOTALL):
        kind, name, body = m.groups()
        text = (gzip.decompress(base64.b64decode(body)).decode("utf-8")
                if kind == "octet-stream" else body)
        out[name] = json.loads(text)
    return out


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
    text = blocks["t0"]["cols"]
    evidence = [json.loads(e) for e in text["evidence"] if e]
    assert any(ev.get(IMG) == TEMPLATE for ev in evidence)
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
    points = [layer for layer in core["layers"] if layer["kind"] == "points"]
    shapes = [layer for layer in core["layers"] if layer["kind"] == "shapes"]
    # 30 bus points + the two parts of the multipoint
    assert sum(len(layer["i"]) for layer in points) == 32
    kinds = {g["type"] for layer in shapes for g in layer["geo"]}
    assert {"Polygon", "MultiPolygon", "LineString", "GeometryCollection"} <= kinds
    assert m.geosup_counts["shapes"] == 20 + 1 + 2 + 1  # parcels, collection, claims, line


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
    shown = shapely.from_geojson(json.dumps(core["layers"][0]["geo"][0]))
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
    core = _blocks(out.read_text(encoding="utf-8"))["core"]
    roles = core["roles"]
    assert "parcels" in roles and "overlap" in roles


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
