"""Before/after chips: one stretch for both dates, the claim outline, bounds in EPSG:4326."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from imagery.align import align
from imagery.catalog import ImageEntry
from imagery.chips import (
    apply_stretch,
    percentile_stretch,
    read_png,
    write_chips,
    write_png,
)


def _value_maps(raw: np.ndarray, png: np.ndarray, keep: np.ndarray) -> dict[int, dict]:
    """Per band: raw value -> set of PNG values seen for it (outline pixels excluded)."""
    out = {}
    for k in range(raw.shape[0]):
        pairs = np.unique(np.stack([raw[k][keep], png[..., k][keep]]), axis=1)
        m: dict[float, set] = {}
        for v, p in pairs.T:
            m.setdefault(float(v), set()).add(int(p))
        out[k] = m
    return out


@pytest.fixture(scope="module")
def rgb_pair(shared_data: Path, tmp_path_factory) -> tuple[list[ImageEntry], Path]:
    """rasterio's RGB.byte.tif as 'before' and a changed copy as 'after' (real pixels)."""
    tmp = tmp_path_factory.mktemp("chips")
    src = shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"
    with rasterio.open(src) as ds:
        data = ds.read()
        prof = ds.profile
    after = data.copy()
    after[:, 300:340, 300:360] = np.clip(after[:, 300:340, 300:360].astype(int) + 60, 1, 255)
    prof.update(tiled=True, blockxsize=256, blockysize=256)
    paths = []
    for name, arr, day in (("before", data, "2020-01-01"), ("after", after, "2021-01-01")):
        p = tmp / f"{name}.tif"
        with rasterio.open(p, "w", **prof) as dst:
            dst.write(arr)
        paths.append(ImageEntry.from_path(p, acquired_on=day))
    return paths, tmp


def test_same_input_value_same_png_value_on_both_dates(rgb_pair):
    entries, tmp = rgb_pair
    with rasterio.open(entries[0].paths[0]) as ds:
        t = ds.transform
        crs = ds.crs
    # a claim around the changed block (pixel 300..340 x 300..360)
    x0, y0 = t @ (300, 340)
    x1, y1 = t @ (360, 300)
    claims = gpd.GeoDataFrame({"claim_id": ["c/1 ä"]}, geometry=[shapely.box(x0, y0, x1, y1)],
                              crs=crs)
    with align(entries) as stack:
        chips = write_chips(stack, claims, tmp / "out", max_pixels=4096)
        row = chips.loc["c/1 ä"]
        img_b, img_a = read_png(row["chip_before"]), read_png(row["chip_after"])
        assert img_b.shape == img_a.shape and img_b.shape[2] == 3
        assert Path(row["chip_before"]).name.endswith("_before.png")
        # the raw windows, to compare value by value
        from imagery.chips import chip_window

        win = chip_window(stack.grid, tuple(shapely.bounds(claims.geometry[0])))
        raw_b = stack.read(win, image=0)
        raw_a = stack.read(win, image=1)
    yellow = (img_b == [255, 255, 0]).all(axis=2)
    assert yellow.sum() > 100 and (yellow == (img_a == [255, 255, 0]).all(axis=2)).all()
    ok_b = ~yellow & np.isfinite(raw_b).all(axis=0)
    ok_a = ~yellow & np.isfinite(raw_a).all(axis=0)
    mb, ma = _value_maps(raw_b, img_b, ok_b), _value_maps(raw_a, img_a, ok_a)
    shared = 0
    for k in range(3):
        for v in set(mb[k]) & set(ma[k]):
            assert mb[k][v] == ma[k][v], (k, v)  # one input value, one PNG value
            shared += 1
        assert all(len(s) == 1 for s in mb[k].values())
    assert shared > 100
    # the changed block is brighter in the after chip, the unchanged frame identical
    assert img_a[~yellow].astype(int).sum() > img_b[~yellow].astype(int).sum()
    # bounds: [[south, west], [north, east]] in degrees, around the claim
    (s, w), (n, e) = row["chip_bounds"]
    cx, cy = claims.to_crs(4326).geometry[0].centroid.coords[0]
    assert s < cy < n and w < cx < e and -90 < s < n < 90


def test_normalisation_maps_the_after_date_before_stretching(rgb_pair):
    from imagery.change import Normalisation

    entries, tmp = rgb_pair
    with rasterio.open(entries[0].paths[0]) as ds:
        t, crs = ds.transform, ds.crs
    x0, y0 = t @ (100, 200)
    x1, y1 = t @ (160, 140)
    claims = gpd.GeoDataFrame({"claim_id": ["n"]}, geometry=[shapely.box(x0, y0, x1, y1)],
                              crs=crs)
    # the identity mapping, on an area that did not change: both chips are equal
    norm = Normalisation(("red", "green", "blue"), np.full(3, 1.0), np.zeros(3), np.ones(3),
                         "none", 0, 0)
    with align(entries) as stack:
        a = write_chips(stack, claims, tmp / "n1", normalisation=norm).loc["n"]
    assert (read_png(a["chip_before"]) == read_png(a["chip_after"])).all()


def test_percentile_stretch_over_both_windows():
    before = np.full((1, 4, 4), 10.0)
    after = np.full((1, 4, 4), 110.0)
    after[0, 0, 0] = np.nan
    lo, hi = percentile_stretch(before, after, percentiles=(0, 100))
    assert (lo[0], hi[0]) == (10.0, 110.0)
    assert apply_stretch(before, lo, hi).max() == 0
    assert apply_stretch(after, lo, hi)[0, 0, 0] == 0  # NaN drawn black
    assert apply_stretch(after, lo, hi)[1, 1, 0] == 255
    flat_lo, flat_hi = percentile_stretch(before, before)
    assert flat_hi[0] > flat_lo[0]


def test_png_files_are_real_pngs(tmp_path):
    img = (np.arange(30 * 20 * 3) % 251).astype("uint8").reshape(30, 20, 3)
    p = write_png(tmp_path / "a.png", img)
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (read_png(p) == img).all()
    grey = write_png(tmp_path / "g.png", img[..., 0])
    assert read_png(grey).shape == (30, 20, 1)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning), rasterio.open(p) as ds:
        # GDAL's PNG driver reads it too
        assert ds.count == 3 and (np.moveaxis(ds.read(), 0, -1) == img).all()
    with pytest.raises(ValueError, match="8-bit"):
        write_png(tmp_path / "b.png", img.astype("uint16"))


def test_claims_off_the_grid_get_no_chip(rgb_pair, tmp_path):
    entries, _ = rgb_pair
    far = gpd.GeoDataFrame({"claim_id": ["far"]}, crs=32618,
                           geometry=[shapely.box(0, 0, 100, 100)])
    with align(entries) as stack:
        assert write_chips(stack, far, tmp_path).empty


def test_chip_dates_are_the_stack_order(tmp_path):
    """A 16-bit after date beside an 8-bit before date: one stretch still (after normalised)."""
    prof = {"driver": "GTiff", "width": 64, "height": 64, "count": 3, "crs": "EPSG:32650",
            "transform": rasterio.Affine(1, 0, 0, 0, -1, 64), "photometric": "RGB"}
    rng = np.random.default_rng(3)
    base = rng.integers(20, 200, (3, 64, 64)).astype("uint8")
    with rasterio.open(tmp_path / "b.tif", "w", dtype="uint8", **prof) as d:
        d.write(base)
    with rasterio.open(tmp_path / "a.tif", "w", dtype="uint16", **prof) as d:
        d.write(base.astype("uint16") * 4 + 100)
    from imagery.change import Normalisation

    e = [ImageEntry.from_path(tmp_path / "b.tif", acquired_on=dt.date(2024, 1, 1)),
         ImageEntry.from_path(tmp_path / "a.tif", acquired_on=dt.date(2024, 6, 1))]
    norm = Normalisation(("red", "green", "blue"), np.full(3, 0.25), np.full(3, -25.0),
                         np.ones(3), "meanstd", 1, 1)
    claims = gpd.GeoDataFrame({"claim_id": ["x"]}, crs="EPSG:32650",
                              geometry=[shapely.box(20.5, 20.5, 40.5, 40.5)])
    with align(e) as stack:
        row = write_chips(stack, claims, tmp_path / "c", normalisation=norm).loc["x"]
    assert (read_png(row["chip_before"]) == read_png(row["chip_after"])).all()


def test_chips_do_not_depend_on_the_worker_threads(rgb_pair, tmp_path):
    """Chips are visited tile by tile in worker threads; files and rows stay the same."""
    entries, _ = rgb_pair
    with rasterio.open(entries[0].paths[0]) as ds:
        left, bottom, right, top = ds.bounds
    rng = np.random.default_rng(7)
    x = rng.uniform(left + 500, right - 2000, 40)
    y = rng.uniform(bottom + 500, top - 2000, 40)
    claims = gpd.GeoDataFrame({"claim_id": [f"c{i:02d}" for i in range(40)]}, crs=32618,
                              geometry=shapely.box(x, y, x + rng.uniform(100, 1500, 40),
                                                   y + rng.uniform(100, 1500, 40)))
    with align(entries, blocksize=256) as stack:
        one = write_chips(stack, claims, tmp_path / "one", workers=1)
        two = write_chips(stack, claims, tmp_path / "two", workers=2)
    assert list(one.index) == list(two.index) == list(claims["claim_id"])
    assert one["chip_bounds"].tolist() == two["chip_bounds"].tolist()
    for a, b in zip(one["chip_after"], two["chip_after"], strict=True):
        assert Path(a).name == Path(b).name
        assert Path(a).read_bytes() == Path(b).read_bytes()
