"""Change indices on real pairs: normalisation, indices, masks, thresholds, band errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from geosup.errors import SchemaError, ValidationError
from imagery.align import Grid, align
from imagery.catalog import BandError, Catalog, ImageEntry
from imagery.change import (
    ChangeResult,
    compute_change,
    fit_normalisation,
    ndvi,
    otsu_threshold,
)


@pytest.fixture(scope="module")
def rennes_change(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> ChangeResult:
    cat = Catalog.from_oscd(shared_data / "imagery" / "oscd" / "rennes")
    with align(cat) as stack:
        return compute_change(stack, tmp_path_factory.mktemp("rennes"))


@pytest.fixture(scope="module")
def rgb_path(shared_data: Path) -> Path:
    return shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"


def _rgb_pair(rgb_path: Path, tmp: Path, *, dtype: str = "uint8", factor: float = 1.0,
              hole: bool = True) -> list[ImageEntry]:
    """RGB.byte as "before"; a brighter copy with a new bright block and a nodata hole."""
    with rasterio.open(rgb_path) as src:
        data = src.read()
        prof = src.profile
    after = data.astype(np.float64) * 1.15 + 5
    after[:, 300:340, 300:340] = 250  # a new bright roof
    after[data == 0] = 0  # same footprint
    if hole:
        after[:, 100:120, 400:440] = 0  # nodata on the second date only
    after = np.clip(after * factor, 0, np.iinfo(dtype).max).astype(dtype)
    prof.update(dtype=dtype, tiled=True, blockxsize=256, blockysize=256)
    p = tmp / f"after_{dtype}.tif"
    with rasterio.open(p, "w", **prof) as dst:
        dst.write(after)
    return [ImageEntry.from_path(rgb_path, acquired_on="2013-05-01", image_id="before"),
            ImageEntry.from_path(p, acquired_on="2014-05-01", image_id="after")]


def test_oscd_indices_on_the_reference_grid(rennes_change: ChangeResult) -> None:
    ch = rennes_change
    assert ch.indices == ["magnitude", "dndvi", "dndbi"]
    assert ch.builtup_index == "dndbi" and ch.vegetation_index == "dndvi"
    assert (ch.before, ch.after) == ("rennes-1", "rennes-2")
    assert str(ch.before_date) == "2015-08-21"
    for name, path in ch.paths.items():
        with rasterio.open(path) as ds:
            assert Grid.of(ds).same_as(ch.grid, tolerance=0)
            assert ds.profile["tiled"] and ds.dtypes[0] == "float32"
            assert np.isnan(ds.nodata)
            assert ds.descriptions[0] == name
            v = ds.read(1)
        assert np.isfinite(v).mean() > 0.999  # OSCD has no nodata
        assert np.isfinite(ch.thresholds[name])
    # the normalisation is a mild per-band correction, not a rescale
    # the atmospheric bands stay out of the magnitude (and so out of the fit)
    assert not {"B01", "B09", "B10"} & set(ch.normalisation.bands)
    assert len(ch.normalisation.bands) == 10
    assert np.all((ch.normalisation.gain > 0.6) & (ch.normalisation.gain < 1.6))
    assert ch.valid_share == pytest.approx(1.0)


def test_oscd_magnitude_is_higher_on_labelled_change(rennes_change: ChangeResult,
                                                     shared_data: Path) -> None:
    label_path = next((shared_data / "imagery" / "oscd" / "rennes" / "cm").glob("*-cm.tif"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # the label has no transform
        with rasterio.open(label_path) as ds:
            changed = ds.read(1) == 2
    mag = rennes_change.read("magnitude")
    assert changed.shape == mag.shape
    assert np.median(mag[changed]) > 2 * np.median(mag[~changed])
    above = mag > rennes_change.thresholds["magnitude"]
    # the scene threshold flags changed pixels far more often than unchanged ones
    assert above[changed].mean() > 5 * above[~changed].mean()


def test_nodata_on_either_date_is_excluded(rgb_path: Path, tmp_path: Path) -> None:
    images = _rgb_pair(rgb_path, tmp_path)
    with align(images) as stack:
        ch = compute_change(stack, tmp_path / "out")
    assert ch.indices == ["magnitude", "dbright"]  # RGB: no NIR, no SWIR
    assert ch.builtup_index == "dbright" and ch.vegetation_index is None
    with rasterio.open(rgb_path) as src:
        nodata0 = (src.read() == 0).any(axis=0)
    mag = ch.read("magnitude")
    assert np.isnan(mag[nodata0]).all()
    assert np.isnan(mag[100:120, 400:440]).all()  # the hole of the second date
    assert np.isfinite(mag[~nodata0][:1000]).all()
    bright = ch.read("dbright")
    roof = bright[305:335, 305:335]
    above = bright > ch.thresholds["dbright"]
    assert np.nanmedian(roof) > ch.thresholds["dbright"]
    assert above[305:335, 305:335].mean() > 10 * above.mean()
    # the global 1.15 gain is normalised away: unchanged pixels barely move
    assert np.nanmedian(mag) < 1.5
    assert ch.normalisation.gain == pytest.approx([1 / 1.15] * 3, rel=0.03)


def test_eight_bit_beside_sixteen_bit(rgb_path: Path, tmp_path: Path) -> None:
    images = _rgb_pair(rgb_path, tmp_path, dtype="uint16", factor=257.0, hole=False)
    with align(images) as stack:
        ch = compute_change(stack, tmp_path / "out")
    assert ch.normalisation.gain == pytest.approx([1 / (1.15 * 257)] * 3, rel=0.03)
    mag = ch.read("magnitude")
    assert np.nanmedian(mag) < 1.5
    assert np.nanmedian(mag[305:335, 305:335]) > ch.thresholds["magnitude"]


def test_single_band_image_names_the_missing_band(shared_data: Path, tmp_path: Path) -> None:
    oscd = shared_data / "imagery" / "oscd" / "bordeaux"
    b1 = ImageEntry.from_path(next((oscd / "imgs_1").glob("*_B02.tif")), acquired_on="2016-05-04",
                              bands=["B02"], image_id="t1")
    b2 = ImageEntry.from_path(next((oscd / "imgs_2").glob("*_B02.tif")), acquired_on="2017-10-26",
                              bands=["B02"], image_id="t2")
    with align([b1, b2]) as stack:
        with pytest.raises(BandError, match=r"NDVI needs band 'nir' \(B08\); image has: B02"):
            compute_change(stack, tmp_path, indices=["magnitude", "dndvi"])
        with pytest.raises(BandError, match=r"NDBI needs band 'nir' \(B08\)"):
            compute_change(stack, tmp_path, indices=["dndbi"])
        ch = compute_change(stack, tmp_path)  # auto: what one blue band allows
        assert ch.indices == ["magnitude", "dbright"]
    assert issubclass(BandError, SchemaError)


def test_fit_normalisation_ignores_changed_pixels() -> None:
    rng = np.random.default_rng(3)
    before = rng.gamma(4.0, 300.0, (4, 40_000))
    after = 0.8 * before + 120 + rng.normal(0, 10, before.shape)
    after[:, :8_000] = rng.uniform(3000, 5000, (4, 8_000))  # 20 % new roofs
    n = fit_normalisation(before, after, bands=["b", "g", "r", "n"])
    assert n.gain == pytest.approx([1.25] * 4, rel=0.02)
    assert n.offset == pytest.approx([-150] * 4, abs=15)
    assert n.scale == pytest.approx([12.5] * 4, rel=0.2)
    plain = fit_normalisation(before, after, bands=["b", "g", "r", "n"], method="none")
    assert plain.gain.tolist() == [1.0] * 4
    with pytest.raises(ValidationError):
        fit_normalisation(before[:, :5], after[:, :5], bands=["b", "g", "r", "n"])


def test_index_helpers() -> None:
    assert ndvi(np.array([0.1]), np.array([0.5]))[0] == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(1, 0.3, 50_000), rng.normal(6, 0.5, 2_000)])
    assert 2 < otsu_threshold(values) < 5
    assert np.isnan(otsu_threshold(np.array([np.nan])))


def test_no_pixel_valid_on_both_dates(rgb_path: Path, tmp_path: Path) -> None:
    with rasterio.open(rgb_path) as src:
        prof = src.profile
        shape = (src.count, src.height, src.width)
    p = tmp_path / "empty.tif"
    with rasterio.open(p, "w", **prof) as dst:
        dst.write(np.zeros(shape, "uint8"))
    images = [ImageEntry.from_path(rgb_path, acquired_on="2013-05-01", image_id="a"),
              ImageEntry.from_path(p, acquired_on="2014-05-01", image_id="b")]
    with align(images) as stack, pytest.raises(ValidationError, match="valid on both dates"):
        compute_change(stack, tmp_path / "out")


def test_extra_outputs_of_the_change_pass_equal_a_separate_pass(shared_data: Path,
                                                               tmp_path: Path) -> None:
    """The built-up mask computed inside the change pass (per-band NaN, uint8) equals the
    standalone float32 mask, on the full OSCD band set (20 m SWIR warped, nodata edges)."""
    from imagery.compare import _builtup_spec, builtup_mask

    cat = Catalog.from_oscd(shared_data / "imagery" / "oscd" / "rennes")
    with align(cat) as stack:
        spec = _builtup_spec(stack.bands(0), ndvi_max=0.2, water_ndvi=-0.1, ndbi_min=0.0)
        assert "B11" in spec[0]  # the SWIR band (NDBI) is part of the classification
        # both ways: the extra's bands among the index bands, or read for it alone
        change = compute_change(stack, tmp_path / "change", extra={"built": spec},
                                indices=["magnitude"])
        alone = compute_change(stack, tmp_path / "alone", extra={"built": spec},
                               indices=["magnitude"], magnitude_bands=["B02", "B03"])
        ref = builtup_mask(stack, tmp_path / "ref.tif")
    with rasterio.open(ref) as ds:
        want = ds.read(1)
    for result in (change, alone):
        with rasterio.open(result.extra_paths["built"]) as ds:
            assert ds.dtypes[0] == "uint8" and ds.nodata == 255
            got = ds.read(1).astype("float32")
        got[got == 255] = np.nan
        np.testing.assert_array_equal(got, want)
    assert (want == 1).any() and (want == 0).any()
    assert list(change.paths) == ["magnitude"]
