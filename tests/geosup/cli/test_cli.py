"""The ``geosup`` command line, run as users run it, against both store backends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from click.testing import CliRunner

from geosup.alerts import make_alerts
from geosup.cli import main
from geosup.store import open_store


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def parcels(shared_data: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(shared_data / "parcels/reference/nl/referentiepercelen.gpkg").head(12)


def _alerts(parcels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    n = len(parcels)
    hits = gpd.GeoDataFrame({
        "rule": ["farmland.over_declared"] * 6 + ["farmland.non_farmland"] * (n - 6),
        "subject_type": "declaration",
        "subject_id": [f"NL-{i}" for i in range(n)],
        "unit": ["village A", "village B"] * (n // 2),
        "period": "2025",
        "severity": (["low", "medium", "high", "critical"] * n)[:n],
        "score": [i / n for i in range(n)],
        "amount_at_risk": [100.0 * i for i in range(n)],
        "title": [f"Declared area above eligible area <b>{i}</b>" for i in range(n)],
        "evidence": [{"declared_m2": 1000 + i, "eligible_m2": 900} for i in range(n)],
    }, geometry=parcels.geometry.to_numpy(), crs=parcels.crs)
    return make_alerts(hits)


@pytest.fixture
def filled_store(store_url: str, parcels: gpd.GeoDataFrame) -> tuple[str, gpd.GeoDataFrame]:
    alerts = _alerts(parcels)
    with open_store(store_url) as st, st.run("test fill") as run:
        run.write_alerts(alerts)
    return store_url, alerts


def test_version_and_versions(runner):
    res = runner.invoke(main, ["--version"])
    assert res.exit_code == 0 and "0.1.0" in res.output
    res = runner.invoke(main, ["--show-versions"])
    assert res.exit_code == 0
    for name in ("GEOS", "GDAL", "PROJ", "shapely", "psycopg"):
        assert name in res.output


def test_show_versions_reports_postgis(runner, postgis_url, tmp_path):
    res = runner.invoke(main, ["--show-versions"], env={"GEOSUP_STORE": postgis_url})
    assert res.exit_code == 0, res.output
    assert "PostGIS" in res.output and "not reachable" not in res.output
    # the store named in a --config file counts too, whichever order the options come in
    config = tmp_path / "audit.toml"
    config.write_text(f'store = "{postgis_url}"\n')
    for args in (["--config", str(config), "--show-versions"],
                 ["--show-versions", "--config", str(config)]):
        res = runner.invoke(main, args)
        assert res.exit_code == 0, res.output
        assert "PostGIS" in res.output and "not reachable" not in res.output


def test_db_init_is_idempotent(runner, store_url):
    for _ in range(2):
        res = runner.invoke(main, ["db", "init", "--store", store_url])
        assert res.exit_code == 0, res.output
        assert "store ready" in res.output


def test_alerts_list_filters_and_formats(runner, filled_store):
    url, alerts = filled_store
    res = runner.invoke(main, ["alerts", "list", "--store", url])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == len(alerts) + 1  # header + one line per alert
    assert "critical" in lines[1]  # most severe first
    res = runner.invoke(main, ["alerts", "list", "--store", url, "--rule",
                               "farmland.non_farmland", "--unit", "village A",
                               "--format", "csv"])
    assert res.exit_code == 0, res.output
    from io import StringIO

    table = pd.read_csv(StringIO(res.stdout))
    want = alerts[(alerts.rule == "farmland.non_farmland") & (alerts.unit == "village A")]
    assert sorted(table["alert_id"]) == sorted(want["alert_id"])
    res = runner.invoke(main, ["alerts", "list", "--store", url, "--severity", "high",
                               "--format", "geojson"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["type"] == "FeatureCollection"
    assert len(doc["features"]) == int((alerts.severity == "high").sum())
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 3 < lon < 8 and 50 < lat < 54  # RFC 7946 lon/lat order
    res = runner.invoke(main, ["alerts", "list", "--store", url, "--status", "closed"])
    assert res.exit_code == 1
    assert "unknown status 'closed'" in res.output and "Traceback" not in res.output


def test_alerts_show_and_review(runner, filled_store):
    url, alerts = filled_store
    aid = alerts.alert_id.iloc[0]
    res = runner.invoke(main, ["alerts", "review", aid, "--store", url, "--status",
                               "investigating", "--by", "Inspector Li", "--note",
                               "field visit booked"])
    assert res.exit_code == 0, res.output
    assert "open -> investigating" in res.output
    res = runner.invoke(main, ["alerts", "show", aid, "--store", url])
    assert res.exit_code == 0, res.output
    assert "declared_m2" in res.stdout and "Inspector Li" in res.stdout
    assert "field visit booked" in res.stdout
    res = runner.invoke(main, ["alerts", "review", aid, "--store", url, "--status",
                               "rectified", "--by", "Inspector Li"])
    assert res.exit_code == 1
    assert "cannot move to 'rectified'" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["alerts", "review", "0000", "--store", url, "--status",
                               "dismissed", "--by", "x"])
    assert res.exit_code == 1 and "no alert with id '0000'" in res.output
    res = runner.invoke(main, ["alerts", "show", "0000", "--store", url])
    assert res.exit_code == 1 and "no alert with id" in res.output


def test_rules_lists_registry(runner):
    res = runner.invoke(main, ["rules", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert isinstance(json.loads(res.stdout), list)


def test_bad_config_is_one_line(runner, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("store = [", encoding="utf-8")
    res = runner.invoke(main, ["--config", str(bad), "rules"])
    assert res.exit_code == 1 and "not valid TOML" in res.output


def _geosup(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("geosup")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "geosup"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, cwd=cwd, timeout=120,
                          check=False)


def test_unreachable_store_is_one_clear_line(tmp_path):
    url = "postgresql://auditor:s3cret@127.0.0.1:1/audit"
    res = _geosup("alerts", "list", "--store", url, cwd=tmp_path)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.stderr
    assert "s3cret" not in res.stderr + res.stdout
    res = _geosup("-v", "alerts", "list", "--store", url, cwd=tmp_path)
    assert res.returncode == 1 and "Traceback" in res.stderr
    assert "s3cret" not in res.stderr.split("Traceback")[0]


def test_bad_store_paths(tmp_path):
    res = _geosup("alerts", "list", "--store", str(tmp_path / "missing.gpkg"), cwd=tmp_path)
    assert res.returncode == 1 and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr
    notgpkg = tmp_path / "notes.gpkg"
    notgpkg.write_text("this is not a database", encoding="utf-8")
    res = _geosup("alerts", "list", "--store", str(notgpkg), cwd=tmp_path)
    assert res.returncode == 1 and "cannot open store" in res.stderr
    res = _geosup("alerts", "list", "--store", str(tmp_path / "x.txt"), cwd=tmp_path)
    assert res.returncode == 1 and "neither a GeoPackage" in res.stderr


def test_demo_writes_store_and_page(tmp_path):
    res = _geosup("demo", str(tmp_path / "city"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "city" / "geosup.gpkg").is_file()
    page = (tmp_path / "city" / "alerts.html").read_text(encoding="utf-8")
    from maps.offline import remote_references

    assert remote_references(page) == []  # works offline: nothing loaded from the network
    assert "geosupReview" in page


@pytest.mark.parametrize("fmt,suffix", [("gpkg", ".gpkg"), ("fgb", ".fgb"),
                                        ("parquet", ".parquet"), ("geojson", ".geojson"),
                                        ("shp", ".zip")])
def test_export_alerts_every_format(runner, filled_store, tmp_path, fmt, suffix):
    from geosup.export import read_back

    url, alerts = filled_store
    out = tmp_path / f"alerts{suffix}"
    res = runner.invoke(main, ["export", "--store", url, "--format", fmt, "-o", str(out),
                               "--rule", "farmland.over_declared"])
    assert res.exit_code == 0, res.output
    back = read_back(out).set_index("alert_id")
    want = alerts[alerts.rule == "farmland.over_declared"].set_index("alert_id")
    assert sorted(back.index) == sorted(want.index)
    assert (back.loc[want.index, "subject_id"] == want["subject_id"]).all()
    res = runner.invoke(main, ["export", "--store", url, "-o", str(out)])
    assert res.exit_code == 1 and "exists" in res.output
    res = runner.invoke(main, ["export", "--store", url, "-o", str(out), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert len(read_back(out)) == len(alerts)


def _fill_mixed_store(url: str, folder: Path, parcels: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The demo city's fuel alerts (Points, MultiPoints, GeometryCollections of a station
    and a track) and farmland alerts on real NL parcels, one of them without geometry."""
    from geosup.config import Settings
    from trajectories.demo import fuel_scenario

    farmland = _alerts(parcels)
    geoms = farmland.geometry.to_numpy()
    geoms[:6] = shapely.get_geometry(geoms[:6], 0)  # Polygons beside the MultiPolygons
    geoms[-1] = None
    farmland = farmland.set_geometry(gpd.GeoSeries(geoms, index=farmland.index,
                                                   crs=farmland.crs))
    with open_store(url) as st:
        fuel_scenario(st, folder, Settings.load(file=None, env={}))
        with st.run("farmland fill") as run:
            run.write_alerts(farmland)
        alerts = st.alerts()
    kinds = set(alerts.geom_type.dropna())
    assert {"GeometryCollection", "Point", "MultiPoint", "Polygon", "MultiPolygon"} <= kinds
    assert alerts.geometry.isna().any()
    return alerts


@pytest.fixture(scope="module")
def mixed_store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[str, gpd.GeoDataFrame]:
    folder = tmp_path_factory.mktemp("mixed")
    parcels = gpd.read_file(shared_data / "parcels/reference/nl/referentiepercelen.gpkg").head(12)
    url = str(folder / "geosup.gpkg")
    return url, _fill_mixed_store(url, folder, parcels)


def _flat(geom):
    """A GeometryCollection as the collection of its single parts (shp, geojson)."""
    if geom is None or geom.geom_type != "GeometryCollection":
        return geom
    return shapely.GeometryCollection(list(shapely.get_parts(shapely.get_parts(geom))))


def _assert_exported(alerts: gpd.GeoDataFrame, back: gpd.GeoDataFrame, fmt: str) -> None:
    """Every alert once, its geometry (type included) and its values, matched by id."""
    assert back["alert_id"].is_unique
    assert sorted(back["alert_id"]) == sorted(alerts["alert_id"])
    assert back.crs.to_epsg() == 4326
    want = alerts.set_index("alert_id")
    got = back.set_index("alert_id").loc[want.index]
    a, b = want.geometry.to_numpy(), got.geometry.to_numpy()
    assert (shapely.is_missing(a) == shapely.is_missing(b)).all()
    keep = ~shapely.is_missing(a)
    a, b = a[keep], b[keep]
    if fmt in ("shp", "geojson"):  # documented: collections of single parts
        a = np.array([_flat(g) for g in a], dtype=object)
    assert (shapely.get_type_id(a) == shapely.get_type_id(b)).all()
    tol = 1e-7 if fmt == "geojson" else 0.0  # RFC 7946: 7 decimals
    same = shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=tol)
    assert same.all(), list(want.index[keep][~same])
    for name in ("rule", "subject_id", "severity", "unit", "status"):
        assert (got[name].astype(str) == want[name].astype(str)).all(), name
    np.testing.assert_allclose(got["amount_at_risk"], want["amount_at_risk"], equal_nan=True)
    diff = (got["observed_at"] - want["observed_at"]).abs().dropna()
    assert (diff <= pd.Timedelta("1ms")).all()
    assert (got["observed_at"].isna() == want["observed_at"].isna()).all()


@pytest.mark.parametrize("fmt", [pytest.param("postgis", marks=pytest.mark.postgis)
                                 if f == "postgis" else f
                                 for f in ("gpkg", "fgb", "parquet", "geojson", "shp",
                                           "postgis")])
def test_export_mixed_geometry_alerts_every_format(runner, mixed_store, tmp_path, fmt, request):
    """Real alerts mix points, tracks, polygons, GeometryCollections and no geometry:
    every format takes all of them, and they read back the same."""
    from geosup.export import read_back

    url, alerts = mixed_store
    out = (f"{request.getfixturevalue('postgis_url')}#public.alerts" if fmt == "postgis"
           else str(tmp_path / f"alerts.{'shp.zip' if fmt == 'shp' else fmt}"))
    res = runner.invoke(main, ["export", "--store", url, "--format", fmt, "-o", out])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == out
    _assert_exported(alerts, read_back(out), fmt)


def test_export_fuel_alerts_to_shapefile(runner, mixed_store, tmp_path):
    """The demo's fuel alerts (Points, MultiPoints, GeometryCollections) as a zipped
    Shapefile: one file per kind, each alert once per kind it has, README.txt says so."""
    import zipfile

    from geosup.export import read_back

    url, alerts = mixed_store
    fuel = alerts[alerts["domain"] == "fuel"]
    out = tmp_path / "out" / "alerts.shp.zip"
    out.parent.mkdir()
    res = runner.invoke(main, ["export", "--store", url, "--format", "shp", "-o", str(out),
                               "--domain", "fuel"])
    assert res.exit_code == 0, res.output
    _assert_exported(fuel, read_back(out), "shp")
    has = {kind: fuel.geometry.map(lambda g, k=kind: any(
        p.geom_type in k for p in shapely.get_parts(shapely.get_parts(g))))
        for kind in (("Point",), ("LineString",))}
    with zipfile.ZipFile(out) as zf:
        readme = zf.read("README.txt").decode()
    for name, mask in (("alerts_point", has[("Point",)]), ("alerts_line", has[("LineString",)])):
        part = read_back(out, layer=name)
        assert sorted(part["alert_id"]) == sorted(fuel.loc[mask, "alert_id"])
        assert f"{name}.shp: {len(part):,} row" in res.stderr
        assert f"{name}.shp" in readme
    assert "alerts_polygon.shp" not in readme and "nogeom" not in res.stderr


def test_export_mixed_store_both_backends(runner, store_url, tmp_path, parcels):
    """The same from a PostGIS store: zipped Shapefile and GeoPackage."""
    from geosup.export import read_back

    alerts = _fill_mixed_store(store_url, tmp_path, parcels)
    for name, fmt in (("alerts.zip", "shp"), ("alerts.gpkg", "gpkg")):
        res = runner.invoke(main, ["export", "--store", store_url, "-o",
                                   str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        _assert_exported(alerts, read_back(tmp_path / name), fmt)


def test_export_stored_layer_to_postgis(runner, tmp_path, parcels, postgis_url):
    import psycopg

    store = tmp_path / "s.gpkg"
    with open_store(store) as st, st.run("load") as run:
        run.write_layer("parcels", parcels)
    res = runner.invoke(main, ["export", "--store", str(store), "--layer", "parcels",
                               "--format", "postgis", "-o", f"{postgis_url}#public.parcels"])
    assert res.exit_code == 0, res.output
    with psycopg.connect(postgis_url) as conn:
        n, srid = conn.execute("SELECT count(*), max(ST_SRID(geometry)) FROM public.parcels"
                               ).fetchone()
    assert n == len(parcels) and srid == 28992


def test_rules_table_reads_as_blocks(runner, tmp_path):
    config = tmp_path / "audit.toml"
    config.write_text('[rules."fuel.away_from_station"]\nradius_m = 450\n', encoding="utf-8")
    res = runner.invoke(main, ["--config", str(config), "rules"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 140
    block = res.stdout.split("fuel.away_from_station  [fuel, high]")[1].split("\n\n")[0]
    assert "radius_m   = 450.0 m   (default 300.0; from file" in block
    assert "window_min = 10.0 min" in block
    assert "classes = built-up, water, forest, road\n" in res.stdout
