"""Alignment on real rasters: CRSs, resolutions, means kept, whole pixels, masks kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosup.errors import CRSError
from imagery.align import ExtentError, Grid, align, reference_grid, same_crs
from imagery.catalog import Catalog, ImageEntry


@pytest.fixture(scope="module")
def rgb_path(shared_data: Path) -> Path:
    return shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"


@pytest.fixture(scope="module")
def rgb(rgb_path: Path) -> ImageEntry:
    return ImageEntry.from_path(rgb_path, acquired_on="2013-05-01", image_id="rgb")


@pytest.fixture(scope="module")
def rennes(shared_data: Path) -> Catalog:
    return Catalog.from_oscd(shared_data / "imagery" / "oscd" / "rennes")


def cgcs2000_tm(lon0: float) -> CRS:
    """A CGCS2000 Gauss-Krüger (transverse Mercator) zone with central meridian *lon0*.

    EPSG:4547 (CGCS2000 / 3-degree GK CM 114E) with its meridian moved, so that rasterio's
    test image (in the Bahamas) can be put in a CGCS2000 projected system.
    """
    j = pyproj.CRS.from_epsg(4547).to_json_dict()
    for p in j["conversion"]["parameters"]:
        if p["name"] == "Longitude of natural origin":
            p["value"] = lon0
    j["name"] = f"CGCS2000 / GK CM {lon0}"
    j.pop("id", None)
    return CRS.from_wkt(pyproj.CRS.from_json_dict(j).to_wkt())


def _valid_means(data: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(data).any(axis=0)
    return np.array([b[ok].mean() for b in data])


def _source_means(path: Path, nodata: float | None = 0) -> np.ndarray:
    with rasterio.open(path) as ds:
        a = ds.read().astype(np.float64)
    ok = np.ones(a.shape[1:], bool) if nodata is None else ~(a == nodata).any(axis=0)
    return np.array([b[ok].mean() for b in a])


def _to_grid(entry: ImageEntry, crs: CRS, res: float) -> Grid:
    with rasterio.open(entry.paths[0]) as ds:
        bounds = transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21)
    return Grid.from_bounds(bounds, crs=crs, resolution=res)


def test_grid_from_bounds_snaps_to_whole_pixels() -> None:
    g = Grid.from_bounds((-78.123, 23.01, -76.5, 25.2), crs="EPSG:4326", resolution=0.0025)
    assert g.transform.c / 0.0025 == pytest.approx(round(g.transform.c / 0.0025), abs=1e-6)
    assert g.transform.f / 0.0025 == pytest.approx(round(g.transform.f / 0.0025), abs=1e-6)
    left, bottom, right, top = g.bounds
    assert left <= -78.123 and right >= -76.5 and bottom <= 23.01 and top >= 25.2
    assert sum(int(w.width) * int(w.height) for w in g.windows(100)) == g.width * g.height


def test_sentinel2_bands_on_the_10m_grid_keep_their_means(rennes: Catalog) -> None:
    first = rennes["rennes-1"]
    grid = reference_grid(first)
    with rasterio.open(first.paths[first.bands.index("B02")]) as b02:
        assert grid.same_as(Grid.of(b02))
        assert (grid.width, grid.height) == (563, 339)
        assert b02.crs.to_epsg() == 4326
    with align(rennes) as stack:
        assert stack.grid.same_as(grid)
        # 10 m bands are read in place; the 20 m and 60 m bands are warped once
        with rasterio.open(stack.warped_path(0)) as w:
            assert w.count == 9
            assert Grid.of(w).same_as(grid, tolerance=0)
            assert w.profile["tiled"]
        data = stack.read(image="rennes-1")
        assert data.shape == (13, 339, 563) and data.dtype == np.float32
        assert not np.isnan(data).any()
        for k, band in enumerate(first.bands):
            with rasterio.open(first.paths[k]) as src:
                native = src.read(1).astype(np.float64).mean()
                res_m = round(abs(src.transform.a) * 111_320 * np.cos(np.radians(48.1)) / 10) * 10
            # rasterio issue 2104: a warp once rescaled values; means must survive.
            assert data[k].mean() == pytest.approx(native, rel=0.01), (band, res_m)


def test_windowed_warp_has_no_seams(rennes: Catalog) -> None:
    with align(rennes, blocksize=64) as small, align(rennes, blocksize=512) as big:
        a = small.read(image=1, bands=["B11", "B01", "B8A"])
        b = big.read(image=1, bands=["B11", "B01", "B8A"])
        assert len(list(small.windows())) > 1
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-3)


def test_read_window_and_band_roles(rennes: Catalog) -> None:
    with align(rennes) as stack:
        w = Window(100, 50, 32, 16)
        nir_red = stack.read(w, image=0, bands=["nir", "red"])
        full = stack.read(image=0)
        names = stack.bands(0)
        np.testing.assert_array_equal(nir_red[0], full[names.index("B08"), 50:66, 100:132])
        np.testing.assert_array_equal(nir_red[1], full[names.index("B04"), 50:66, 100:132])
        assert stack.valid(w, image=1).all()


@pytest.mark.parametrize("target", ["EPSG:4326", "cgcs2000"])
def test_rgb_byte_reprojected_and_back_keeps_nodata_and_means(
        rgb: ImageEntry, rgb_path: Path, tmp_path: Path, target: str) -> None:
    crs = cgcs2000_tm(-77.0) if target == "cgcs2000" else CRS.from_epsg(4326)
    res = 300.0 if target == "cgcs2000" else 0.0027
    grid = _to_grid(rgb, crs, res)
    with align([rgb], reference=grid, workdir=tmp_path / "out") as there:
        fwd = there.warped_path(0)
        assert fwd is not None
        with rasterio.open(fwd) as ds:
            assert same_crs(ds.crs, crs)
            assert Grid.of(ds).same_as(grid, tolerance=0)
        moved = there.read()
    # means survive the warp (rasterio issue 2104)
    np.testing.assert_allclose(_valid_means(moved), _source_means(rgb_path), rtol=0.01)

    away = ImageEntry.from_path(fwd, acquired_on="2014-05-01", bands="rgb", image_id="away")
    assert away.nodata is not None and np.isnan(away.nodata)
    with align([rgb, away]) as back:
        orig = back.read(image="rgb")
        ret = back.read(image="away")
    v0 = ~np.isnan(orig).any(axis=0)
    v1 = ~np.isnan(ret).any(axis=0)
    with rasterio.open(rgb_path) as ds:
        assert np.array_equal(v0, ~(ds.read() == 0).any(axis=0))  # nodata 0 -> NaN
    iou = (v0 & v1).sum() / (v0 | v1).sum()
    assert iou > 0.98, iou
    both = v0 & v1
    for k in range(3):
        assert ret[k][both].mean() == pytest.approx(orig[k][both].mean(), rel=0.01)


def test_eight_bit_beside_sixteen_bit(rgb: ImageEntry, rgb_path: Path, tmp_path: Path) -> None:
    p16 = tmp_path / "rgb16.tif"
    with rasterio.open(rgb_path) as src:
        prof = src.profile
        prof.update(dtype="uint16", tiled=True, blockxsize=256, blockysize=256)
        with rasterio.open(p16, "w", **prof) as dst:
            dst.write(src.read().astype("uint16") * 257)
    e16 = ImageEntry.from_path(p16, acquired_on="2014-05-01", image_id="rgb16")
    with align([rgb, e16]) as stack:
        w = Window(200, 200, 256, 256)
        a, b = stack.read(w, image=0), stack.read(w, image=1)
    assert a.dtype == b.dtype == np.float32
    ok = ~np.isnan(a)
    assert ok.any()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(b[ok], a[ok] * 257)


def test_cloud_mask_on_another_grid_and_alpha(rgb_path: Path, tmp_path: Path) -> None:
    with rasterio.open(rgb_path) as src:
        west_lon, b, east_lon, t = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        data = src.read()
        prof = src.profile
    cloud = tmp_path / "cloud.tif"
    # a coarse EPSG:4326 mask: the western half is cloud
    cw, ch = 40, 40
    mask = np.zeros((1, ch, cw), np.uint8)
    mask[:, :, : cw // 2] = 1
    tf = rasterio.Affine((east_lon - west_lon) / cw, 0, west_lon, 0, -(t - b) / ch, t)
    with rasterio.open(cloud, "w", driver="GTiff", width=cw, height=ch, count=1,
                       dtype="uint8", crs="EPSG:4326", transform=tf) as d:
        d.write(mask)
    rgba = tmp_path / "rgba.tif"
    prof.update(count=4, nodata=None, tiled=True, blockxsize=256, blockysize=256)
    alpha = np.full(data.shape[1:], 255, np.uint8)
    alpha[600:, :] = 0
    with rasterio.open(rgba, "w", **prof) as d:
        d.write(np.concatenate([data, alpha[None]]))
        d.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                         ColorInterp.alpha]
    e = ImageEntry.from_path(rgba, acquired_on="2013-05-01", cloud_mask=cloud)
    assert e.alpha_band == 4
    with align([e]) as stack:
        got = stack.read()
    invalid = np.isnan(got).any(axis=0)
    assert invalid[600:, :].all()  # alpha 0
    lon_mid = (west_lon + east_lon) / 2
    with rasterio.open(rgba) as ds:
        cols = np.arange(ds.width)
        xs, ys = rasterio.transform.xy(ds.transform, np.full(ds.width, 300), cols)
        lons, _ = rasterio.warp.transform(ds.crs, "EPSG:4326", xs, ys)
    west = np.asarray(lons) < lon_mid - 0.05
    east = np.asarray(lons) > lon_mid + 0.05
    row = invalid[300]
    assert row[west].all()
    assert not row[east & (data[:, 300, :] > 0).all(axis=0)].any()


def test_extents_that_do_not_overlap(rgb: ImageEntry, tmp_path: Path) -> None:
    far = tmp_path / "far.tif"
    with rasterio.open(far, "w", driver="GTiff", width=10, height=10, count=3, dtype="uint8",
                       crs="EPSG:32650", transform=rasterio.Affine(30, 0, 400000, 0, -30, 2.5e6)
                       ) as d:
        d.write(np.ones((3, 10, 10), "uint8"))
    other = ImageEntry.from_path(far, acquired_on="2020-01-01")
    with pytest.raises(ExtentError, match="does not overlap"):
        align([rgb, other])


def test_raster_without_crs_in_align(tmp_path: Path) -> None:
    p = tmp_path / "nocrs.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="uint8",
                       transform=rasterio.Affine(1, 0, 0, 0, -1, 4)) as d:
        d.write(np.ones((1, 4, 4), "uint8"))
    entry = ImageEntry(paths=(p,), acquired_on="2020-01-01", bands=("red",))
    with pytest.raises(CRSError):
        align([entry])
