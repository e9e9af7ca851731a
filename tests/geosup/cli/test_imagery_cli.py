"""``geosup imagery compare`` and ``geosup imagery ingest`` end to end, into both stores."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from geosup.cli import main
from geosup.store import open_store
from geosup.testing import cli_error_line
from imagery.demo import build_demo, write_demo_inputs


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The requisition demo's files, on a smaller scene (0.8 x 0.6 km)."""
    root = tmp_path_factory.mktemp("requisition")
    paths = write_demo_inputs(build_demo(size_m=(800.0, 600.0)), root / "in")
    return {k: (v if k == "images" else str(v)) for k, v in paths.items()}


def _args(files: dict, store: str, tmp: Path, *extra: str) -> list[str]:
    archive, winter, summer = (str(p) for p in files["images"])
    return ["imagery", "compare", "--before", winter, "--after", summer, "--image", archive,
            "--claims", files["claims"], "--projects", files["projects"],
            "--persons", files["persons"], "--store", store, "--workdir", str(tmp / "work"),
            "--chips", str(tmp / "chips"), *extra]




def test_compare_end_to_end(runner, files, tmp_path, store_url):
    res = runner.invoke(main, _args(files, store_url, tmp_path))
    assert res.exit_code == 0, res.output
    assert "claims: 34 rows in, 30 used, 4 rejected" in res.stderr
    assert "projects: 1 rows in, 1 used, 0 rejected" in res.stderr
    assert "persons: 34 rows in, 34 used, 0 rejected" in res.stderr
    for code in ("built_after_notice", "planted_after_notice", "claimed_not_seen",
                 "deceased_claimant", "moved_in_after_notice"):
        assert f"requisition.{code}" in res.stdout
    assert "4 rejected row(s); 1 inconclusive claim(s) not scored" in res.stdout
    assert "ortho_winter (2024-02-20) -> ortho_summer (2024-06-08)" in res.stdout
    with open_store(store_url, create=False) as st:
        alerts = st.alerts()
        runs = st.runs()
        rejects = st.rejects()
        layers = set(st.layers()["name"])
        claims = st.read_layer("claims")
    assert len(alerts) == 19 and alerts["subject_type"].eq("claim").all()
    assert len(runs) == 1 and runs["command"].iloc[0] == "imagery compare"
    counts = json.loads(runs["counts"].iloc[0])
    assert counts["inputs"]["claims"] == {"rows_in": 34, "rows_used": 30, "rows_rejected": 4}
    assert counts["inconclusive"] == 1 and counts["alerts"]["inserted"] == 19
    assert sorted(rejects["reason"].str.split(" ").str[0]) == [
        "missing", "outside", "unknown", "unknown"]
    assert {"claims", "projects", "persons", "images"} <= layers
    assert len(claims) == 30 and "change_share" in claims.columns
    ev = json.loads(alerts.loc[alerts["rule"] == "requisition.built_after_notice",
                               "evidence"].iloc[0])
    assert Path(ev["chip_before"]).parent.parent == tmp_path / "chips"
    assert Path(ev["chip_after"]).is_file()


def test_rerun_updates_and_options(runner, files, tmp_path):
    store = str(tmp_path / "s.gpkg")
    assert runner.invoke(main, _args(files, store, tmp_path)).exit_code == 0
    res = runner.invoke(main, _args(files, store, tmp_path, "--rule", "built_after_notice",
                                    "-t", "built_after_notice.min_changed_share=0.9"))
    assert res.exit_code == 0, res.output
    assert "0 alert(s)" in res.stdout
    res = runner.invoke(main, ["-q", *_args(files, store, tmp_path)])
    assert res.exit_code == 0, res.output
    assert "0 new, 19 updated" in res.stdout and "rows in" not in res.stderr


def test_mapped_csv_claims_and_explicit_pair(runner, files, tmp_path):
    """A clerk's CSV: Chinese headers, WKT polygons without CRS, no projects file."""
    claims = gpd.read_file(files["claims"]).dropna(subset=["geometry"])
    frame = pd.DataFrame({"编号": claims["claim_id"], "项目": claims["project_id"],
                          "户主": claims["claimant_id"], "类别": claims["item"],
                          "面积": claims["claimed_area_m2"], "金额": claims["amount"],
                          "wkt": claims.geometry.to_wkt()})
    csv = tmp_path / "claims.csv"
    frame.to_csv(csv, index=False)
    _, winter, summer = (str(p) for p in files["images"])
    args = ["imagery", "compare", "--before", winter, "--after", summer, "--claims", str(csv),
            "--store", str(tmp_path / "s.gpkg"), "--workdir", str(tmp_path / "w"),
            "--input-crs", "EPSG:4548", "--rule", "built_after_notice",
            "--map", "claims.claim_id=编号", "--map", "claims.project_id=项目",
            "--map", "claims.claimant_id=户主", "--map", "claims.item=类别",
            "--map", "claims.claimed_area_m2=面积", "--map", "claims.amount=金额",
            "--map", "claims.geometry=wkt"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "requisition.built_after_notice" in res.stdout
    assert "claims: 33 rows in, 31 used, 2 rejected" in res.stderr  # no projects to check


def test_oscd_band_sets_with_explicit_dates(runner, shared_data, tmp_path):
    """Real Sentinel-2 band sets (13 bands, 10/20/60 m) with dates from dates.txt."""
    city = shared_data / "imagery" / "oscd" / "rennes"
    dates = dict(ln.split(": ") for ln in (city / "dates.txt").read_text().splitlines() if ln)
    with rasterio.open(next((city / "imgs_1").glob("*B02.tif"))) as ds:
        left, bottom, right, top = ds.bounds
    xs = np.linspace(left, right, 9)
    ys = np.linspace(bottom, top, 7)
    cells = [shapely.box(x0, y0, x1, y1) for x0, x1 in itertools.pairwise(xs)
             for y0, y1 in itertools.pairwise(ys)]
    claims = gpd.GeoDataFrame({"claim_id": [f"R{i}" for i in range(len(cells))],
                               "item": "building", "project_id": "rennes"},
                              geometry=cells, crs=4326)
    claims.to_file(tmp_path / "claims.geojson")
    res = runner.invoke(main, [
        "imagery", "compare", "--before", str(city / "imgs_1"), "--after", str(city / "imgs_2"),
        "--before-date", dates["date_1"], "--after-date", dates["date_2"],
        "--claims", str(tmp_path / "claims.geojson"), "--notice-date", "2016-01-01",
        "--store", str(tmp_path / "s.gpkg"), "--workdir", str(tmp_path / "w")])
    assert res.exit_code == 0, res.output
    assert "imgs_1 (2015-08-21) -> imgs_2 (2017-06-21)" in res.stdout
    assert "claims: 48 rows in, 48 used, 0 rejected" in res.stderr


def _raster(path: Path, count: int, *, crs: str | None, x0: float = 500000.0,
            day: str = "2024:01:01 10:00:00") -> str:
    prof = {"driver": "GTiff", "width": 64, "height": 64, "count": count, "dtype": "uint8",
            "transform": rasterio.Affine(1, 0, x0, 0, -1, 3500064)}
    if crs:
        prof["crs"] = crs
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.random.default_rng(0).integers(1, 255, (count, 64, 64)).astype("uint8"))
        dst.update_tags(TIFFTAG_DATETIME=day)
    return str(path)


def _claims(tmp: Path) -> str:
    gdf = gpd.GeoDataFrame({"claim_id": ["c1"], "item": ["building"], "project_id": ["P"]},
                           geometry=[shapely.box(500010, 3500010, 500030, 3500030)],
                           crs="EPSG:32650")
    gdf.to_file(tmp / "c.gpkg")
    return str(tmp / "c.gpkg")


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_bad_input_is_one_line(runner, tmp_path):
    store = str(tmp_path / "s.gpkg")
    claims = _claims(tmp_path)
    base = ["imagery", "compare", "--claims", claims, "--store", store, "--notice-date",
            "2024-03-01", "--workdir", str(tmp_path / "w")]
    nocrs = _raster(tmp_path / "nocrs.tif", 4, crs=None)
    ok = _raster(tmp_path / "ok.tif", 4, crs="EPSG:32650", day="2024:06:01 10:00:00")
    line = cli_error_line(runner.invoke(main, [*base, "--before", nocrs, "--after", ok]))
    assert "has no coordinate reference system" in line and "nocrs.tif" in line
    b1 = _raster(tmp_path / "b1.tif", 1, crs="EPSG:32650")
    a1 = _raster(tmp_path / "a1.tif", 1, crs="EPSG:32650", day="2024:06:01 10:00:00")
    line = cli_error_line(runner.invoke(main, [*base, "--before", b1, "--after", a1]))
    assert "NDVI needs band 'red' (B04); image has: band1" in line
    far = _raster(tmp_path / "far.tif", 4, crs="EPSG:32650", x0=600000.0,
                  day="2024:06:01 10:00:00")
    b4 = _raster(tmp_path / "b4.tif", 4, crs="EPSG:32650")
    line = cli_error_line(runner.invoke(main, [*base, "--before", b4, "--after", far]))
    assert "do not overlap" in line
    line = cli_error_line(runner.invoke(main, [*base, "--before", b4]))
    assert "--before and --after" in line
    gpd.read_file(claims).drop(columns="item").to_file(tmp_path / "noitem.gpkg")
    args = [*base, "--before", b4, "--after", ok]
    args[args.index(claims)] = str(tmp_path / "noitem.gpkg")
    assert "item" in cli_error_line(runner.invoke(main, args))
    line = cli_error_line(runner.invoke(main, [*base, "--before", b4, "--after", ok,
                                                "-t", "built_after_notice.nope=1"]))
    assert "no threshold 'nope'" in line
    with open_store(store) as st:  # nothing was written by the failed runs
        assert st.runs().empty and st.alerts().empty


def test_ingest_writes_a_cog_with_the_date(runner, shared_data, tmp_path):
    src = shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"
    dst = tmp_path / "rgb_cog.tif"
    res = runner.invoke(main, ["imagery", "ingest", str(src), str(dst), "--blocksize", "256",
                               "--acquired-on", "2013-04-12"])
    assert res.exit_code == 0, res.output
    assert "acquired 2013-04-12" in res.stdout
    with rasterio.open(dst) as ds:
        assert ds.block_shapes[0] == (256, 256) and ds.overviews(1)
    line = cli_error_line(runner.invoke(main, ["imagery", "ingest", str(src), str(dst)]))
    assert "exists" in line
    assert runner.invoke(main, ["imagery", "ingest", str(src), str(dst), "--overwrite"]
                         ).exit_code == 0
