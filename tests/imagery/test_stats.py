"""Per-parcel statistics: known answers, parity with exactextract, inconclusive parcels, and
ranking quality on the OSCD change labels."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from exactextract import exact_extract
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform_bounds

from geosup.errors import CRSError, SchemaError
from imagery.align import align
from imagery.catalog import Catalog
from imagery.change import compute_change
from imagery.stats import parcel_stats, zonal_stats


@pytest.fixture(scope="module")
def zonal(shared_data: Path) -> Path:
    return shared_data / "imagery" / "rasterstats_testdata"


@pytest.fixture(scope="module")
def polygons(zonal: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(zonal / "polygons.shp")


def test_coverage_weighted_known_answers(zonal: Path, polygons: gpd.GeoDataFrame) -> None:
    st = zonal_stats(zonal / "slope.tif", polygons, id_column="id")
    assert st["count"].tolist() == pytest.approx([77.115, 52.166], abs=1e-3)
    assert st["mean"].tolist() == pytest.approx([15.021, 55.614], abs=1e-3)


def test_pixel_centre_known_answers(zonal: Path, polygons: gpd.GeoDataFrame) -> None:
    st = zonal_stats(zonal / "slope.tif", polygons, id_column="id", method="centre")
    assert st["count"].tolist() == [75.0, 50.0]
    assert st["mean"].iloc[0] == pytest.approx(14.66, abs=5e-3)
    nd = zonal_stats(zonal / "slope_nodata.tif", polygons, id_column="id", method="centre")
    assert nd["count"].tolist() == [39.0, 31.0]  # rasterstats: nodata 36 / 19


@pytest.mark.parametrize("raster", ["slope.tif", "slope_nodata.tif"])
@pytest.mark.parametrize("layer", ["polygons.shp", "polygons_partial_overlap.shp"])
def test_parity_with_exactextract(zonal: Path, raster: str, layer: str) -> None:
    zones = gpd.read_file(zonal / layer)
    zones["zone"] = np.arange(len(zones))
    ours = zonal_stats(zonal / raster, zones, id_column="zone", quantile=0.9)
    with rasterio.open(zonal / raster) as ds:
        ref = exact_extract(ds, zones.to_crs(ds.crs), ["count", "mean", "quantile(q=0.9)"],
                            output="pandas")
    np.testing.assert_allclose(ours["count"], ref["count"], rtol=1e-9)
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=1e-6)
    # exactextract's weighted quantile; equal up to the order it gives tied values
    np.testing.assert_allclose(ours["q90"], ref["quantile_90"], rtol=1e-3)


def test_all_nodata_parcels_are_inconclusive(zonal: Path, polygons: gpd.GeoDataFrame) -> None:
    st = parcel_stats(polygons, {"slope": zonal / "all_nodata.tif"}, id_column="id")
    assert st["inconclusive"].all()
    assert (st["effective_pixels"] == 0).all()
    assert (st["valid_coverage"] == 0).all()
    assert st["slope_mean"].isna().all()
    assert set(st["reason"]) == {"no valid pixels (nodata or cloud)"}


def test_valid_coverage_and_thresholds(zonal: Path, polygons: gpd.GeoDataFrame) -> None:
    full = parcel_stats(polygons, {"slope": zonal / "slope.tif"}, id_column="id",
                        thresholds={"slope": 20.0})
    holes = parcel_stats(polygons, {"slope": zonal / "slope_nodata.tif"}, id_column="id",
                         thresholds={"slope": 20.0}, min_valid_coverage=0.6)
    assert full["valid_coverage"].tolist() == pytest.approx([1.0, 1.0], abs=0.01)
    assert holes["valid_coverage"].tolist() == pytest.approx(
        (holes["effective_pixels"] / full["parcel_pixels"]).tolist())
    assert holes.loc[1, "valid_coverage"] < 0.6
    assert holes.loc[1, "inconclusive"]
    assert holes.loc[1, "reason"].startswith("valid coverage 52%")
    # share above the threshold, coverage-weighted, from the same cells
    ref = exact_extract(str(zonal / "slope.tif"), polygons.to_crs(
        rasterio.open(zonal / "slope.tif").crs), ["values", "coverage"], output="pandas")
    for i, (v, c) in enumerate(zip(ref["values"], ref["coverage"], strict=True)):
        ok = v != -9999
        expect = (c[ok] * (v[ok] > 20)).sum() / c[ok].sum()
        assert full["slope_above"].iloc[i] == pytest.approx(expect)


def test_partial_overlap_and_outside_parcels(zonal: Path) -> None:
    zones = gpd.read_file(zonal / "polygons_partial_overlap.shp")
    zones["claim_id"] = [f"c{i}" for i in range(len(zones))]
    far = zones.iloc[[0]].copy()
    far["claim_id"] = "far"
    far["geometry"] = far.geometry.translate(1e5, 1e5)
    allz = pd.concat([zones, far], ignore_index=True)
    st = parcel_stats(allz, {"slope": zonal / "slope.tif"})
    assert list(st.index) == list(allz["claim_id"])  # keyed by id, input order
    assert st.loc["far", "reason"] == "outside the image"
    assert st.loc["far", "inconclusive"]
    straddling = st.drop(index="far")
    assert (straddling["valid_coverage"] < 0.999).any()  # cut by the raster edge
    assert ((straddling["valid_coverage"] > 0) & (straddling["valid_coverage"] <= 1)).all()


def test_parcels_in_another_crs_are_reprojected(zonal: Path,
                                                polygons: gpd.GeoDataFrame) -> None:
    a = parcel_stats(polygons, {"slope": zonal / "slope.tif"}, id_column="id")
    b = parcel_stats(polygons.to_crs("EPSG:4326"), {"slope": zonal / "slope.tif"},
                     id_column="id")
    np.testing.assert_allclose(b["effective_pixels"], a["effective_pixels"], rtol=2e-3)
    np.testing.assert_allclose(b["slope_mean"], a["slope_mean"], rtol=2e-3)


def test_bad_parcel_inputs(zonal: Path, polygons: gpd.GeoDataFrame) -> None:
    raster = {"slope": zonal / "slope.tif"}
    with pytest.raises(CRSError):
        parcel_stats(polygons.set_crs(None, allow_override=True), raster, id_column="id")
    with pytest.raises(SchemaError, match="duplicate"):
        parcel_stats(pd.concat([polygons, polygons]), raster, id_column="id")
    with pytest.raises(SchemaError, match="no 'claim_id' column"):
        parcel_stats(polygons, raster)


# ------------------------------------------------------------------ OSCD ranking quality
def rank_auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U), ties counted half."""
    score = np.asarray(score, float)
    label = np.asarray(label, bool)
    ranks = pd.Series(score).rank(method="average").to_numpy()
    n1, n0 = label.sum(), (~label).sum()
    return float((ranks[label].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def test_rank_auc() -> None:
    assert rank_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert rank_auc(np.array([1, 1, 1, 1]), np.array([0, 1, 0, 1])) == 0.5


#: A 60 m parcel counts as changed when at least this share of its area is labelled
#: changed (cm == 2): 25 % of 3,600 m² is ~900 m², one new building or yard. Chosen before
#: looking at scores; 10 % and 50 % rank about as well (see the issue note).
CHANGED_SHARE = 0.25


@pytest.mark.parametrize(("city", "floor"), [("rennes", 0.95), ("bordeaux", 0.85)])
def test_oscd_parcels_ranked_by_change(shared_data: Path, tmp_path: Path, city: str,
                                       floor: float) -> None:
    folder = shared_data / "imagery" / "oscd" / city
    cat = Catalog.from_oscd(folder)
    with align(cat) as stack:
        change = compute_change(stack, tmp_path / "change")
    grid = change.grid

    # the label has no georeference: give it date 1's B02 transform and CRS
    b02 = next((folder / "imgs_1").glob("*_B02.tif"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(next((folder / "cm").glob("*-cm.tif"))) as ds:
            changed = (ds.read(1) == 2).astype("float32")
    with rasterio.open(b02) as ref:
        prof = ref.profile
    prof.update(dtype="float32", count=1, nodata=None)
    label = tmp_path / "label.tif"
    with rasterio.open(label, "w", **prof) as dst:
        dst.write(changed, 1)

    # a 60 m grid of square parcels, in UTM 30N (the data are in EPSG:4326)
    utm = "EPSG:32630"
    left, bottom, right, top = transform_bounds(grid.crs, utm, *grid.bounds)
    xs, ys = np.meshgrid(np.arange(left, right - 60, 60), np.arange(bottom, top - 60, 60))
    parcels = gpd.GeoDataFrame(
        {"claim_id": np.arange(xs.size)}, crs=utm,
        geometry=shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 60, ys.ravel() + 60))

    stats = parcel_stats(parcels, change)
    truth = parcel_stats(parcels, {"label": label})
    scored = ~stats["inconclusive"].to_numpy()
    assert scored.mean() > 0.9  # only parcels cut by the scene edge are inconclusive
    y = (truth["label_mean"].to_numpy() >= CHANGED_SHARE)[scored]
    assert y.sum() > 50
    # the score: the parcel's 90th percentile of the change magnitude
    auc = rank_auc(stats["magnitude_q90"].to_numpy()[scored], y)
    print(f"{city}: AUC {auc:.3f} over {scored.sum()} parcels, {y.sum()} changed")
    assert auc >= floor
