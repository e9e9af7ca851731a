"""Alignment: every date and band on one reference grid, read window by window.

The reference grid is the "before" image's grid (for a band set, the grid of its finest
bands: Sentinel-2's 10 m bands) or any :class:`Grid` given explicitly
(:meth:`Grid.from_bounds` snaps it to whole pixels). :func:`align` warps every band that is
not already on that grid **once**, window by window through a ``WarpedVRT`` (bilinear for
reflectance, nearest neighbour for masks), into a tiled float32 GeoTIFF with NaN for
invalid pixels; bands already on the grid are read in place. Memory is bounded by the
window, so rasters larger than memory work. Different CRSs (EPSG:4326, UTM, CGCS2000
Gauss-Krüger …) and resolutions (Sentinel-2's 10/20/60 m) are handled the same way.

:class:`AlignedStack` is the result: ``read(window, image=…)`` returns a
``(bands, h, w)`` float32 array on the reference grid with NaN wherever a pixel is invalid
(nodata, alpha = 0, cloud, outside the image), whatever the source dtype (an 8-bit date
beside a 16-bit date is fine), and :meth:`AlignedStack.windows` iterates the block grid.

Examples
--------
>>> import datetime, tempfile, pathlib
>>> import numpy as np, rasterio
>>> from imagery.catalog import ImageEntry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> def write(name, crs, transform, value, dtype):
...     with rasterio.open(tmp / name, "w", driver="GTiff", width=64, height=64, count=3,
...                        dtype=dtype, crs=crs, transform=transform, nodata=0) as d:
...         d.write(np.full((3, 64, 64), value, dtype))
...     return ImageEntry.from_path(tmp / name, acquired_on=datetime.date(2024, 1, 1),
...                                 image_id=name[:-4])
>>> before = write("before.tif", "EPSG:32650", rasterio.Affine(10, 0, 500000, 0, -10, 3e6),
...                100, "uint8")
>>> after = write("after.tif", "EPSG:32650", rasterio.Affine(20, 0, 500000, 0, -20, 3e6),
...               1000, "uint16")
>>> with align([before, after], blocksize=32) as stack:
...     block = stack.read(stack.grid.window(0, 0, 32, 32), image="after")
...     block.shape, block.dtype, float(block[0, 0, 0]), len(list(stack.windows()))
((3, 32, 32), dtype('float32'), 1000.0, 4)
"""

from __future__ import annotations

import functools
import logging
import math
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
from affine import Affine
from numpy.typing import NDArray
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosup.errors import CRSError, DataSourceError, ValidationError
from imagery.catalog import Catalog, ImageEntry, require_bands

__all__ = [
    "GDAL_CACHE_MB",
    "AlignedStack",
    "ExtentError",
    "Grid",
    "ProgressFn",
    "align",
    "gdal_env",
    "reference_grid",
    "same_crs",
]

log = logging.getLogger(__name__)

#: Progress callback: ``progress(fraction_done, message)``.
ProgressFn = Callable[[float, str], None]

_RESAMPLING = {r.name: r for r in Resampling}


#: GDAL block cache (MB) while geosup reads and writes rasters. GDAL's default (5 % of RAM)
#: fills with decoded tiles that a block-by-block pass never reads again and shows up as
#: resident memory; 128 MB is plenty for window-by-window work and keeps the decoded tiles
#: that neighbouring small windows (chips, parcel batches) share.
GDAL_CACHE_MB = 128


def gdal_env(**options: Any) -> rasterio.Env:
    """A ``rasterio.Env`` with geosup's GDAL settings (bounded block cache), plus *options*.

    ``rasterio.Env`` hands ``GDAL_CACHEMAX`` to ``GDALSetCacheMax64``, which counts bytes
    (a bare ``128`` would be a 128-byte cache: every small read decodes its tiles again).
    """
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 2**20, **options)


class ExtentError(ValidationError):
    """Images (or parcels) do not overlap the reference grid."""


@dataclass(frozen=True)
class Grid:
    """A raster grid: CRS, north-up affine transform and size in pixels.

    Examples
    --------
    >>> g = Grid.from_bounds((500003.0, 2999990.0, 500101.0, 3000061.0), crs="EPSG:32650",
    ...                      resolution=10)
    >>> g.transform.c, g.transform.f, g.width, g.height
    (500000.0, 3000070.0, 11, 8)
    >>> [tuple(w.flatten()) for w in g.windows(8)][:2]
    [(0, 0, 8, 8), (8, 0, 3, 8)]
    """

    crs: CRS
    transform: Affine
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.crs is None:
            msg = "a grid needs a coordinate reference system"
            raise CRSError(msg)
        object.__setattr__(self, "crs", CRS.from_user_input(self.crs))

    @classmethod
    def of(cls, dataset: Any) -> Grid:
        """The grid of an open rasterio dataset."""
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height)

    @classmethod
    def from_bounds(
        cls,
        bounds: tuple[float, float, float, float],
        *,
        crs: Any,
        resolution: float | tuple[float, float],
    ) -> Grid:
        """A grid covering *bounds*, snapped outwards to whole multiples of *resolution*.

        Like ``gdalwarp -tap``: the origin is a multiple of the pixel size, so two grids
        built this way in the same CRS and resolution share pixel edges exactly.
        """
        rx, ry = (resolution, resolution) if np.isscalar(resolution) else resolution
        rx, ry = float(rx), float(ry)
        left, bottom, right, top = bounds
        x0 = math.floor(left / rx + 1e-9) * rx
        y1 = math.ceil(top / ry - 1e-9) * ry
        x1 = math.ceil(right / rx - 1e-9) * rx
        y0 = math.floor(bottom / ry + 1e-9) * ry
        width = max(1, round((x1 - x0) / rx))
        height = max(1, round((y1 - y0) / ry))
        return cls(CRS.from_user_input(crs), Affine(rx, 0.0, x0, 0.0, -ry, y1), width, height)

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size ``(x, y)``, positive."""
        return (abs(self.transform.a), abs(self.transform.e))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the grid's CRS."""
        t = self.transform
        xs = (t.c, t.c + t.a * self.width)
        ys = (t.f, t.f + t.e * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def pixel_area(self) -> float:
        """Area of one pixel in CRS units squared."""
        return abs(self.transform.a * self.transform.e - self.transform.b * self.transform.d)

    def window(self, col_off: int, row_off: int, width: int, height: int) -> Window:
        """A window clipped to the grid."""
        w = Window(col_off, row_off, width, height)
        return w.intersection(Window(0, 0, self.width, self.height))

    def window_transform(self, window: Window) -> Affine:
        """Transform of a window's top-left pixel."""
        return rasterio.windows.transform(window, self.transform)

    def windows(self, blocksize: int = 512) -> Iterator[Window]:
        """Windows of *blocksize* pixels tiling the grid row by row (edge windows smaller)."""
        for row in range(0, self.height, blocksize):
            for col in range(0, self.width, blocksize):
                yield Window(col, row, min(blocksize, self.width - col),
                             min(blocksize, self.height - row))

    def same_as(self, other: Grid, *, tolerance: float = 1e-3) -> bool:
        """True when both grids share CRS, size and pixel edges (within *tolerance* pixels)."""
        if (self.width, self.height) != (other.width, other.height):
            return False
        if not same_crs(self.crs, other.crs):
            return False
        tol = tolerance * min(self.res)
        return all(abs(a - b) <= tol for a, b in zip(self.transform[:6], other.transform[:6],
                                                     strict=True))

    def profile(self, **extra: Any) -> dict[str, Any]:
        """A rasterio write profile for a tiled GeoTIFF on this grid."""
        prof: dict[str, Any] = {
            "driver": "GTiff", "crs": self.crs, "transform": self.transform,
            "width": self.width, "height": self.height, "tiled": True,
            "blockxsize": 512, "blockysize": 512, "bigtiff": "IF_SAFER",
        }
        prof.update(extra)
        return prof


@functools.lru_cache(maxsize=256)
def _same_wkt(a: str, b: str) -> bool:
    ca, cb = pyproj.CRS.from_wkt(a), pyproj.CRS.from_wkt(b)
    if ca.equals(cb, ignore_axis_order=True):
        return True
    # WKT1 round trips through GeoTIFF keys can change names and the last digits of an
    # ellipsoid's flattening: the same coordinate operation is the same grid.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pa, pb = ca.to_proj4(), cb.to_proj4()
    return bool(pa) and pa == pb


def same_crs(a: Any, b: Any) -> bool:
    """True when two CRSs describe the same coordinates (axis order and names aside).

    Examples
    --------
    >>> same_crs(CRS.from_epsg(4547), CRS.from_wkt(CRS.from_epsg(4547).to_wkt()))
    True
    """
    a, b = CRS.from_user_input(a), CRS.from_user_input(b)
    return a == b or _same_wkt(a.to_wkt(), b.to_wkt())


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        msg = f"cannot open raster {path}: {exc}"
        raise DataSourceError(msg) from None


def reference_grid(entry: ImageEntry) -> Grid:
    """The grid of an image: its file's grid, or a band set's finest band grid.

    For a Sentinel-2 band set this is the 10 m grid of B02/B03/B04/B08 (the first finest
    band in stack order).

    Raises
    ------
    CRSError
        A file has no CRS.
    """
    best: tuple[float, Grid] | None = None
    for path in dict.fromkeys(p for p, _ in entry.band_sources()):
        with _open(path) as ds:
            if ds.crs is None:
                msg = f"raster {path} has no coordinate reference system"
                raise CRSError(msg)
            g = Grid.of(ds)
        area = g.pixel_area
        # Compare pixel area in the grid's own units; band sets share one CRS in practice.
        if best is None or area < best[0] * (1 - 1e-6):
            best = (area, g)
    assert best is not None
    return best[1]


def _is_tiled_enough(ds: rasterio.DatasetReader, blocksize: int) -> bool:
    bh, bw = ds.block_shapes[0]
    return bh <= blocksize and (bw <= blocksize or (bw == ds.width and bh * bw <= 4 * blocksize**2))


@dataclass(frozen=True)
class _BandSource:
    path: Path
    bidx: int
    nodata: float | None  # raw value to turn into NaN (None: none)


@dataclass(frozen=True)
class _MaskSource:
    path: Path
    bidx: int
    kind: str  # "alpha": valid where > 0; "cloud": valid where == 0


def _warp_image(
    entry: ImageEntry,
    sources: list[tuple[int, Path, int]],
    grid: Grid,
    dst: Path,
    *,
    resampling: Resampling,
    blocksize: int,
    compress: str | None,
    progress: Callable[[int], None],
) -> None:
    """Warp bands ``(k, path, bidx)`` of *entry* onto *grid*, the i-th into band i + 1 of *dst*."""
    prof = grid.profile(count=len(sources), dtype="float32", nodata=float("nan"),
                        blockxsize=blocksize, blockysize=blocksize, interleave="band")
    if compress:
        prof.update(compress=compress, predictor=3, num_threads="ALL_CPUS")
    by_file: dict[Path, list[tuple[int, int]]] = {}
    for pos, (_, path, bidx) in enumerate(sources):
        by_file.setdefault(path, []).append((pos, bidx))
    with rasterio.open(dst, "w", **prof) as out:
        for path, items in by_file.items():
            with _open(path) as src:
                src_nodata = entry.nodata if entry.nodata is not None else src.nodata
                opts: dict[str, Any] = {
                    "crs": grid.crs, "transform": grid.transform, "width": grid.width,
                    "height": grid.height, "resampling": resampling, "dtype": "float32",
                    "nodata": float("nan"), "warp_mem_limit": 256, "NUM_THREADS": "ALL_CPUS",
                    "INIT_DEST": "NO_DATA",
                }
                if src_nodata is not None:
                    opts["src_nodata"] = src_nodata
                with WarpedVRT(src, **opts) as vrt:
                    for w in grid.windows(blocksize):
                        data = vrt.read([b for _, b in items], window=w)
                        for j, (pos, _) in enumerate(items):
                            out.write(data[j], pos + 1, window=w)
                        progress(len(items))


def _warp_mask(entry: ImageEntry, masks: list[_MaskSource], grid: Grid, dst: Path, *,
               blocksize: int) -> None:
    """Warp alpha/cloud masks with nearest neighbour into one uint8 validity band."""
    prof = grid.profile(count=1, dtype="uint8", nodata=None, blockxsize=blocksize,
                        blockysize=blocksize, compress="deflate")
    with rasterio.open(dst, "w", **prof) as out:
        handles = []
        try:
            for m in masks:
                src = _open(m.path)
                handles.append(src)
                vrt = WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                height=grid.height, resampling=Resampling.nearest,
                                nodata=0, dtype="uint8")  # outside: no alpha / no cloud
                handles.append(vrt)
            vrts = handles[1::2]
            for w in grid.windows(blocksize):
                valid = np.ones((int(w.height), int(w.width)), bool)
                for m, vrt in zip(masks, vrts, strict=True):
                    a = vrt.read(m.bidx, window=w)
                    valid &= (a > 0) if m.kind == "alpha" else (a == 0)
                out.write(valid.astype("uint8"), 1, window=w)
        finally:
            for h in reversed(handles):
                h.close()


class AlignedStack:
    """Images on one reference grid, read window by window as float32 with NaN = invalid.

    Built by :func:`align`; do not construct directly. Use it as a context manager (or call
    :meth:`close`) to release file handles and the temporary folder of warped files.

    Attributes
    ----------
    grid : Grid
        The reference grid.
    entries : tuple of ImageEntry
        The images, in the order given to :func:`align` (``before`` first).
    blocksize : int
        Default window size of :meth:`windows`.
    """

    def __init__(self, grid: Grid, entries: Sequence[ImageEntry],
                 sources: list[list[_BandSource]], masks: list[list[_MaskSource]], *,
                 blocksize: int, warped: list[Path | None],
                 tempdir: tempfile.TemporaryDirectory[str] | None) -> None:
        self.grid = grid
        self.entries = tuple(entries)
        self.blocksize = blocksize
        self._sources = sources
        self._masks = masks
        self._warped = warped
        self._tempdir = tempdir
        self._local = threading.local()
        self._all_handles: list[rasterio.DatasetReader] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ context
    def __enter__(self) -> AlignedStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close file handles and delete the temporary warped files (if align made them)."""
        with self._lock:
            for h in self._all_handles:
                h.close()
            self._all_handles.clear()
        self._local = threading.local()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __repr__(self) -> str:
        ids = ", ".join(self.ids)
        return (f"AlignedStack({ids}; {self.grid.width}x{self.grid.height} px, "
                f"{self.grid.crs.to_string()})")

    # ------------------------------------------------------------------ metadata
    @property
    def ids(self) -> list[str]:
        """Image ids in stack order."""
        return [e.image_id for e in self.entries]

    @property
    def dates(self) -> list[Any]:
        """Acquisition dates in stack order."""
        return [e.acquired_on for e in self.entries]

    def index(self, image: int | str) -> int:
        """Position of an image given by position or id."""
        if isinstance(image, int | np.integer):
            if not -len(self.entries) <= image < len(self.entries):
                msg = f"image {image} out of range (stack has {len(self.entries)})"
                raise IndexError(msg)
            return int(image) % len(self.entries)
        try:
            return self.ids.index(image)
        except ValueError:
            msg = f"no image {image!r} in the stack (have: {', '.join(self.ids)})"
            raise KeyError(msg) from None

    def bands(self, image: int | str = 0) -> tuple[str, ...]:
        """Band names of an image."""
        return self.entries[self.index(image)].bands

    def warped_path(self, image: int | str = 0) -> Path | None:
        """The warped float32 file of an image (``None`` when every band is read in place)."""
        return self._warped[self.index(image)]

    def windows(self, *, blocksize: int | None = None) -> Iterator[Window]:
        """Windows tiling the reference grid (row-major, block-aligned)."""
        return self.grid.windows(blocksize or self.blocksize)

    # ------------------------------------------------------------------ reading
    def _handle(self, path: Path) -> rasterio.DatasetReader:
        cache = getattr(self._local, "handles", None)
        if cache is None:
            cache = self._local.handles = {}
        h = cache.get(path)
        if h is None or h.closed:
            h = cache[path] = _open(path)
            with self._lock:
                self._all_handles.append(h)
        return h

    def _resolve_bands(self, i: int, bands: Sequence[str] | str | None) -> list[int]:
        names = self.entries[i].bands
        if bands is None:
            return list(range(len(names)))
        if isinstance(bands, str):
            bands = [bands]
        out = []
        for b in bands:
            name = require_bands(names, [b], what=f"image {self.entries[i].image_id!r}")[0]
            out.append(names.index(name))
        return out

    def valid(self, window: Window, *, image: int | str = 0) -> NDArray[np.bool_]:
        """Valid-data mask ``(h, w)``: every band valid, alpha > 0, no cloud, inside the image."""
        data = self.read(window, image=image)
        return ~np.isnan(data).any(axis=0)

    def read(self, window: Window | None = None, *, image: int | str = 0,
             bands: Sequence[str] | str | None = None,
             per_band: bool = False) -> NDArray[np.float32]:
        """Read a window of one image on the reference grid.

        Parameters
        ----------
        window : rasterio.windows.Window, optional
            Window of the reference grid (default: the whole grid — mind the memory).
        image : int or str
            Position or id of the image.
        bands : sequence of str, optional
            Band names or roles (``"nir"``) to read; default all bands.
        per_band : bool
            Leave each band's own nodata pixels NaN in that band only (alpha, cloud and
            outside the image still blank every band). For a caller that reads a union of
            bands once and applies the any-band rule to its own subsets.

        Returns
        -------
        numpy.ndarray
            ``(bands, h, w)`` float32. A pixel is NaN in every band when any requested band
            is nodata there (unless ``per_band``), when alpha is 0, when the cloud mask is set,
            or outside the image.

        Raises
        ------
        BandError
            A requested band or role is not in the image.
        """
        i = self.index(image)
        if window is None:
            window = Window(0, 0, self.grid.width, self.grid.height)
        h, w = int(window.height), int(window.width)
        idx = self._resolve_bands(i, bands)
        out = np.empty((len(idx), h, w), np.float32)
        # Group reads per file so a multi-band file is read in one call.
        groups: dict[Path, list[tuple[int, _BandSource]]] = {}
        for j, k in enumerate(idx):
            s = self._sources[i][k]
            groups.setdefault(s.path, []).append((j, s))
        for path, items in groups.items():
            ds = self._handle(path)
            raw = ds.read([s.bidx for _, s in items], window=window)
            for n, (j, s) in enumerate(items):
                band = raw[n]
                out[j] = band
                if s.nodata is not None:
                    if np.isnan(s.nodata):
                        continue
                    out[j][band == s.nodata] = np.nan
        invalid = (np.zeros((h, w), bool) if per_band and self._masks[i] else
                   None if per_band else np.isnan(out).any(axis=0))
        for m in self._masks[i]:
            a = self._handle(m.path).read(m.bidx, window=window)
            invalid |= (a <= 0) if m.kind == "alpha" else (a != 0)
        if invalid is not None and invalid.any():
            out[:, invalid] = np.nan
        return out


def _entries(images: Sequence[ImageEntry] | Catalog) -> list[ImageEntry]:
    entries = list(images)
    if not entries:
        msg = "align needs at least one image"
        raise ValidationError(msg)
    ids = [e.image_id for e in entries]
    if len(set(ids)) != len(ids):
        msg = f"duplicate image ids: {', '.join(ids)}"
        raise ValidationError(msg)
    return entries


def _check_overlap(entry: ImageEntry, grid: Grid) -> None:
    gl, gb, gr, gt = grid.bounds
    for path in dict.fromkeys(p for p, _ in entry.band_sources()):
        with _open(path) as ds:
            if ds.crs is None:
                msg = f"raster {path} has no coordinate reference system"
                raise CRSError(msg)
            try:
                left, bottom, right, top = transform_bounds(ds.crs, grid.crs, *ds.bounds,
                                                            densify_pts=21)
            except Exception as exc:  # noqa: BLE001 - PROJ failure means no usable overlap
                msg = f"image {entry.image_id!r} cannot be projected to the reference CRS: {exc}"
                raise ExtentError(msg) from None
        if not (left < gr and right > gl and bottom < gt and top > gb):
            msg = (f"image {entry.image_id!r} ({path.name}) does not overlap the reference grid: "
                   f"its bounds in {grid.crs.to_string()} are "
                   f"({left:.6g}, {bottom:.6g}, {right:.6g}, {top:.6g}), the grid's "
                   f"({gl:.6g}, {gb:.6g}, {gr:.6g}, {gt:.6g})")
            raise ExtentError(msg)


def align(
    images: Sequence[ImageEntry] | Catalog,
    *,
    reference: Grid | int | str = 0,
    workdir: str | Path | None = None,
    blocksize: int = 512,
    resampling: str = "bilinear",
    compress: str | None = None,
    progress: ProgressFn | None = None,
) -> AlignedStack:
    """Put every image on one reference grid, warping each off-grid band once.

    Parameters
    ----------
    images : sequence of ImageEntry or Catalog
        The images, "before" first (a :class:`~imagery.catalog.Catalog` is in date order).
    reference : Grid, int or str
        The reference grid, or the position / id of the image whose grid is used
        (default the first image; for a band set, its finest bands' grid).
    workdir : path-like, optional
        Folder for the warped files (``<image_id>.aligned.tif``); default a temporary
        folder deleted by :meth:`AlignedStack.close`.
    blocksize : int
        Window size (pixels) of warping and of :meth:`AlignedStack.windows`.
    resampling : str
        Resampling of reflectance bands (``bilinear``; ``nearest``, ``cubic``, ``average``
        …). Masks (alpha, cloud) always use nearest neighbour.
    compress : str, optional
        Compression of the warped files (default none: they are temporary).
    progress : callable, optional
        ``progress(fraction, message)`` while warping.

    Returns
    -------
    AlignedStack

    Raises
    ------
    CRSError
        A raster has no CRS.
    ExtentError
        An image does not overlap the reference grid.
    """
    with gdal_env():
        return _align(images, reference=reference, workdir=workdir, blocksize=blocksize,
                      resampling=resampling, compress=compress, progress=progress)


def _align(
    images: Sequence[ImageEntry] | Catalog,
    *,
    reference: Grid | int | str,
    workdir: str | Path | None,
    blocksize: int,
    resampling: str,
    compress: str | None,
    progress: ProgressFn | None,
) -> AlignedStack:
    entries = _entries(images)
    if isinstance(reference, Grid):
        grid = reference
    else:
        ref_i = (int(reference) if isinstance(reference, int | np.integer)
                 else [e.image_id for e in entries].index(reference))
        grid = reference_grid(entries[ref_i])
    try:
        rs = _RESAMPLING[resampling]
    except KeyError:
        msg = f"unknown resampling {resampling!r}; use one of {', '.join(_RESAMPLING)}"
        raise ValidationError(msg) from None

    tempdir = None
    if workdir is None:
        tempdir = tempfile.TemporaryDirectory(prefix="geosup-align-")
        root = Path(tempdir.name)
    else:
        root = Path(workdir)
        root.mkdir(parents=True, exist_ok=True)

    plan: list[tuple[ImageEntry, list[_BandSource | None], list[tuple[int, Path, int]],
                     list[_MaskSource], bool]] = []
    total = 0
    for e in entries:
        _check_overlap(e, grid)
        bsrc: list[_BandSource | None] = []
        to_warp: list[tuple[int, Path, int]] = []
        on_grid_all = True
        for k, (path, bidx) in enumerate(e.band_sources()):
            with _open(path) as ds:
                direct = Grid.of(ds).same_as(grid) and _is_tiled_enough(ds, blocksize)
                nd = e.nodata if e.nodata is not None else ds.nodatavals[bidx - 1]
            if direct:
                bsrc.append(_BandSource(path, bidx, None if nd is None else float(nd)))
            else:
                bsrc.append(None)
                to_warp.append((k, path, bidx))
                on_grid_all = False
        masks: list[_MaskSource] = []
        if e.alpha_band and not e.is_band_set:
            masks.append(_MaskSource(e.paths[0], e.alpha_band, "alpha"))
        if e.cloud_mask is not None:
            masks.append(_MaskSource(e.cloud_mask, 1, "cloud"))
        masks_direct = True
        for m in masks:
            with _open(m.path) as ds:
                masks_direct &= Grid.of(ds).same_as(grid) and _is_tiled_enough(ds, blocksize)
        total += len(to_warp) * math.ceil(grid.width / blocksize) * math.ceil(
            grid.height / blocksize)
        plan.append((e, bsrc, to_warp, masks, on_grid_all and masks_direct))

    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None and total:
            progress(min(1.0, done / total), "warping")

    sources: list[list[_BandSource]] = []
    mask_sources: list[list[_MaskSource]] = []
    warped: list[Path | None] = []
    try:
        for e, bsrc, to_warp, masks, _ in plan:
            dst = None
            if to_warp:
                dst = root / f"{e.image_id}.aligned.tif"
                log.info("warping %d band(s) of %s onto the reference grid (%s)",
                         len(to_warp), e.image_id, resampling)
                _warp_image(e, to_warp, grid, dst, resampling=rs, blocksize=blocksize,
                            compress=compress, progress=tick)
                for j, (k, _, _) in enumerate(to_warp):
                    bsrc[k] = _BandSource(dst, j + 1, float("nan"))
            warped.append(dst)
            sources.append([s for s in bsrc if s is not None])
            direct_masks = all(_is_on(m.path, grid, blocksize) for m in masks)
            if masks and not direct_masks:
                mdst = root / f"{e.image_id}.mask.tif"
                _warp_mask(e, masks, grid, mdst, blocksize=blocksize)
                mask_sources.append([_MaskSource(mdst, 1, "alpha")])
            else:
                mask_sources.append(masks)
    except BaseException:
        if tempdir is not None:
            tempdir.cleanup()
        raise
    return AlignedStack(grid, entries, sources, mask_sources, blocksize=blocksize,
                        warped=warped, tempdir=tempdir)


def _is_on(path: Path, grid: Grid, blocksize: int) -> bool:
    with _open(path) as ds:
        return Grid.of(ds).same_as(grid) and _is_tiled_enough(ds, blocksize)
