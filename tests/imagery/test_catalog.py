"""Image catalog: dates from metadata or the catalog (never file names), bands, masks, COG."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from geosup.errors import CRSError, DataSourceError, GeosupError
from imagery.catalog import (
    SENTINEL2_BANDS,
    BandError,
    Catalog,
    DateError,
    ImageEntry,
    band_role,
    ingest_cog,
    read_acquisition_date,
    require_bands,
)


def _write(path: Path, *, count: int = 3, dtype: str = "uint8", crs: str | None = "EPSG:32650",
           tags: dict[str, str] | None = None, nodata: float | None = 0) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=count,
                       dtype=dtype, crs=crs, nodata=nodata,
                       transform=rasterio.Affine(10, 0, 500000, 0, -10, 3000000)) as d:
        if tags:
            d.update_tags(**tags)
        d.write(np.full((count, 16, 16), 7, dtype))
    return path


@pytest.fixture
def oscd(shared_data: Path) -> Path:
    return shared_data / "imagery" / "oscd"


def test_date_from_acquisition_tag(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.tif", tags={"ACQUISITIONDATE": "2024-05-01T02:03:04Z"})
    assert read_acquisition_date(p) == dt.date(2024, 5, 1)
    assert ImageEntry.from_path(p).acquired_on == dt.date(2024, 5, 1)


def test_date_from_tifftag_datetime(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.tif", tags={"TIFFTAG_DATETIME": "2019:11:30 08:00:00"})
    assert ImageEntry.from_path(p).acquired_on == dt.date(2019, 11, 30)


def test_explicit_date_overrides_metadata(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.tif", tags={"ACQUISITIONDATE": "2024-05-01"})
    assert ImageEntry.from_path(p, acquired_on="2023-01-02").acquired_on == dt.date(2023, 1, 2)


def test_no_date_is_an_error_never_guessed_from_the_file_name(tmp_path: Path) -> None:
    p = _write(tmp_path / "S2A_MSIL1C_20160706T155721_B02.tif", count=1)
    with pytest.raises(DateError, match="acquired_on") as err:
        ImageEntry.from_path(p)
    assert isinstance(err.value, GeosupError)
    assert isinstance(err.value, ValueError)


def test_oscd_dates_come_from_dates_txt_not_the_processing_time(oscd: Path) -> None:
    cat = Catalog.from_oscd(oscd / "rennes")
    assert [e.acquired_on for e in cat] == [dt.date(2015, 8, 21), dt.date(2017, 6, 21)]
    assert cat.ids == ["rennes-1", "rennes-2"]
    first = cat["rennes-1"]
    assert first.bands == SENTINEL2_BANDS
    assert first.sensor == "sentinel-2"
    assert first.is_band_set and len(first.paths) == 13
    assert all(p.name.endswith(f"_{b}.tif") for p, b in zip(first.paths, first.bands,
                                                           strict=True))
    # the file names carry 2016-07-06 (processing); the band set itself has no date tag
    with pytest.raises(DateError):
        ImageEntry.from_path(oscd / "rennes" / "imgs_1")


def test_band_set_from_explicit_files(oscd: Path) -> None:
    files = sorted((oscd / "bordeaux" / "imgs_2").glob("*_B0[2348].tif"))
    e = ImageEntry.from_path(files, acquired_on="2017-10-26")
    assert e.bands == ("B02", "B03", "B04", "B08")
    assert band_role(e.bands, "nir") == "B08"
    assert e.band_sources()[3] == (files[3], 1)


def test_rgb_byte_bands_and_nodata(shared_data: Path) -> None:
    p = shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"
    e = ImageEntry.from_path(p, acquired_on="2013-05-01")
    assert e.bands == ("red", "green", "blue")
    assert e.sensor == "rgb"
    assert e.nodata == 0.0
    assert e.alpha_band is None
    assert e.image_id == "RGB.byte"


def test_alpha_band_is_found_and_excluded(tmp_path: Path) -> None:
    p = tmp_path / "rgba.tif"
    with rasterio.open(p, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint8",
                       crs="EPSG:32650", transform=rasterio.Affine(1, 0, 0, 0, -1, 8)) as d:
        d.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue,
                         ColorInterp.alpha]
        d.write(np.ones((4, 8, 8), "uint8"))
    e = ImageEntry.from_path(p, acquired_on="2024-01-01")
    assert e.alpha_band == 4
    assert e.bands == ("red", "green", "blue")
    assert [b for _, b in e.band_sources()] == [1, 2, 3]


def test_raster_without_crs_is_refused(tmp_path: Path) -> None:
    p = _write(tmp_path / "nocrs.tif", crs=None, tags={"ACQUISITIONDATE": "2024-01-01"})
    with pytest.raises(CRSError, match="no coordinate reference system"):
        ImageEntry.from_path(p)
    with pytest.raises(CRSError):
        ingest_cog(p, tmp_path / "out.tif")


def test_missing_file_is_a_data_source_error(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError):
        ImageEntry.from_path(tmp_path / "nope.tif", acquired_on="2024-01-01")


def test_catalog_csv_and_toml(tmp_path: Path) -> None:
    _write(tmp_path / "t0.tif", count=4, dtype="uint16", tags={"ACQUISITIONDATE": "2024-03-01"})
    _write(tmp_path / "t1.tif", count=4, dtype="uint16")
    (tmp_path / "images.csv").write_text(
        "path,acquired_on,sensor,bands,nodata\n"
        "t1.tif,2024-06-01,ortho,\"red,green,blue,nir\",\n"
        "t0.tif,,,rgbn,65535\n", encoding="utf-8")
    cat = Catalog.read(tmp_path / "images.csv")
    assert cat.ids == ["t0", "t1"]  # date order
    assert cat["t0"].nodata == 65535.0 and cat["t0"].bands == ("red", "green", "blue", "nir")
    assert cat["t1"].sensor == "ortho"
    assert cat.last_before(dt.date(2024, 6, 1)).image_id == "t0"
    assert cat.last_before(dt.date(2024, 6, 1), inclusive=True).image_id == "t1"
    assert cat.first_after(dt.date(2024, 3, 1)).image_id == "t1"
    assert cat.last_before(dt.date(2020, 1, 1)) is None

    (tmp_path / "images.toml").write_text(
        '[[images]]\npath = "t1.tif"\nacquired_on = 2024-06-01\nimage_id = "after"\n'
        '[[images]]\npath = "t0.tif"\nimage_id = "before"\n', encoding="utf-8")
    cat2 = Catalog.read(tmp_path / "images.toml")
    assert cat2.ids == ["before", "after"]
    assert cat2["after"].acquired_on == dt.date(2024, 6, 1)

    again = Catalog.read(cat.write(tmp_path / "round.csv"))
    assert again.frame().equals(cat.frame())


def test_catalog_row_without_date_names_the_problem(tmp_path: Path) -> None:
    _write(tmp_path / "t1.tif")
    (tmp_path / "images.csv").write_text("path\nt1.tif\n", encoding="utf-8")
    with pytest.raises(DateError, match="no acquisition date"):
        Catalog.read(tmp_path / "images.csv")


def test_require_bands_names_the_missing_band() -> None:
    with pytest.raises(BandError, match=r"NDVI needs band 'nir' \(B08\); image has: B02"):
        require_bands(("B02",), ["nir", "red"], what="NDVI")
    assert require_bands(("red", "green", "blue", "nir"), ["nir", "red"], what="x") == [
        "nir", "red"]


def test_ingest_cog_keeps_pixels_nodata_and_date(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "imagery" / "rasterio_testdata" / "RGB.byte.tif"
    out = ingest_cog(src, tmp_path / "rgb_cog.tif", blocksize=256, acquired_on="2013-05-01")
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.block_shapes[0] == (256, 256)
        assert b.profile["tiled"]
        assert b.overviews(1)  # internal overviews
        assert b.nodata == a.nodata == 0
        assert b.crs == a.crs and b.transform == a.transform
        assert np.array_equal(a.read(), b.read())
        assert b.tags()["ACQUISITIONDATE"] == "2013-05-01"
    e = ImageEntry.from_path(out)
    assert e.acquired_on == dt.date(2013, 5, 1)
    with pytest.raises(DataSourceError, match="overwrite"):
        ingest_cog(src, out)
    ingest_cog(src, out, overwrite=True, compress="zstd")
