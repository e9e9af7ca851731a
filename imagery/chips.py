"""Before/after PNG chips of a claim's window, with the same stretch on both dates.

A reviewer compares two small pictures of a claim: the last image before the notice date and
the first after it. The pictures are only comparable when a grey level means the same on
both, so :func:`write_chips` computes one percentile stretch per band over the *two*
windows together (:func:`percentile_stretch`) and applies it to both (the "after" window
first mapped onto the "before" radiometry when a :class:`~imagery.change.Normalisation` is
given). The claim's outline is drawn on both. PNG files are written by a small numpy/zlib
writer (:func:`write_png`; no imaging library needed) and referenced in an alert's evidence
as ``{"chip_before": path, "chip_after": path, "chip_bounds": [[south, west], [north,
east]]}`` (EPSG:4326), the layout :mod:`maps.evidence` reads.

Examples
--------
>>> import numpy as np
>>> before = np.array([[[0.0, 50.0], [100.0, np.nan]]])
>>> after = np.array([[[100.0, 150.0], [200.0, 200.0]]])
>>> lo, hi = percentile_stretch(before, after, percentiles=(0, 100))
>>> lo.tolist(), hi.tolist()
([0.0], [200.0])
>>> apply_stretch(before, lo, hi)[..., 0].tolist(), apply_stretch(after, lo, hi)[..., 0].tolist()
([[0, 64], [128, 0]], [[128, 191], [255, 255]])
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from geosup.errors import DataSourceError, ValidationError
from imagery.align import AlignedStack, Grid, gdal_env
from imagery.catalog import band_role
from imagery.change import Normalisation

__all__ = [
    "CHIP_COLUMNS",
    "apply_stretch",
    "chip_window",
    "outline_mask",
    "percentile_stretch",
    "read_png",
    "write_chips",
    "write_png",
]

log = logging.getLogger(__name__)

#: Columns of the table :func:`write_chips` returns (indexed by the claim id).
CHIP_COLUMNS: tuple[str, ...] = ("chip_before", "chip_after", "chip_bounds")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+a, RGB, RGBA)


# ---------------------------------------------------------------------------------------------
# PNG
# ---------------------------------------------------------------------------------------------


def _chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def write_png(path: str | PathLike[str], image: NDArray[Any], *, level: int = 6) -> Path:
    """Write an 8-bit image as PNG: ``(h, w)`` grey, ``(h, w, 3)`` RGB or ``(h, w, 4)`` RGBA.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.png"
    >>> img = np.arange(24, dtype="uint8").reshape(2, 4, 3)
    >>> bool((read_png(write_png(p, img)) == img).all())
    True
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        msg = f"PNG chips are 8-bit; got {a.dtype}"
        raise ValidationError(msg)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _COLOR_TYPES or a.shape[0] < 1 or a.shape[1] < 1:
        msg = f"cannot write an image of shape {np.shape(image)} as PNG"
        raise ValidationError(msg)
    h, w, c = a.shape
    raw = np.zeros((h, 1 + w * c), np.uint8)  # filter byte 0 (None) on every row
    raw[:, 1:] = a.reshape(h, w * c)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    data = (_PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))
    path = Path(path)
    path.write_bytes(data)
    return path


def read_png(path: str | PathLike[str]) -> NDArray[np.uint8]:
    """Read a PNG written by :func:`write_png` (8-bit, no interlace, filter type 0).

    Returns ``(h, w, channels)`` uint8. Other PNGs raise :class:`DataSourceError`.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        msg = f"{path} is not a PNG file"
        raise DataSourceError(msg)
    pos = len(_PNG_SIGNATURE)
    idat: list[bytes] = []
    header = None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag = data[pos + 4:pos + 8]
        payload = data[pos + 8:pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", payload)
        elif tag == b"IDAT":
            idat.append(payload)
        pos += 12 + length
    if header is None:
        msg = f"{path}: no PNG header"
        raise DataSourceError(msg)
    w, h, depth, ctype, _, _, interlace = header
    channels = {v: k for k, v in _COLOR_TYPES.items()}.get(ctype)
    if depth != 8 or channels is None or interlace:
        msg = f"{path}: only 8-bit, non-interlaced grey/RGB/RGBA PNGs are read here"
        raise DataSourceError(msg)
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * channels)
    if raw[:, 0].any():
        msg = f"{path}: PNG row filters other than 'None' are not read here"
        raise DataSourceError(msg)
    return raw[:, 1:].reshape(h, w, channels).copy()


# ---------------------------------------------------------------------------------------------
# Stretch and outline
# ---------------------------------------------------------------------------------------------


def percentile_stretch(
    before: NDArray[np.floating],
    after: NDArray[np.floating],
    *,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-band stretch limits over the finite values of *both* windows together.

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(bands, h, w)`` windows of the two dates (NaN = invalid), same band order.
    percentiles : (float, float)
        Lower and upper percentile mapped to 0 and 255.

    Returns
    -------
    (lo, hi) : numpy.ndarray
        One value per band; ``hi > lo`` always.
    """
    b = np.asarray(before, np.float64)
    a = np.asarray(after, np.float64)
    if b.shape[0] != a.shape[0]:
        msg = f"before has {b.shape[0]} bands, after {a.shape[0]}"
        raise ValidationError(msg)
    both = np.concatenate([b.reshape(b.shape[0], -1), a.reshape(a.shape[0], -1)], axis=1)
    ok = np.isfinite(both)
    lo = np.zeros(both.shape[0])
    hi = np.ones(both.shape[0])
    for k in range(both.shape[0]):  # a few bands
        v = both[k][ok[k]]
        if v.size:
            lo[k], hi[k] = np.percentile(v, percentiles)
    hi = np.where(hi > lo, hi, lo + 1.0)
    return lo, hi


def apply_stretch(block: NDArray[np.floating], lo: NDArray[np.floating],
                  hi: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map ``(bands, h, w)`` values linearly from ``[lo, hi]`` to 0–255; NaN → 0.

    Returns ``(h, w, bands)`` uint8.
    """
    x = np.asarray(block, np.float64)
    lo = np.asarray(lo, np.float64)[:, None, None]
    hi = np.asarray(hi, np.float64)[:, None, None]
    with np.errstate(invalid="ignore"):
        y = np.clip((x - lo) / (hi - lo) * 255.0, 0.0, 255.0)
    y = np.where(np.isfinite(y), np.rint(y), 0.0).astype(np.uint8)
    return np.moveaxis(y, 0, -1)


def outline_mask(geometry: Any, transform: Affine, shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Pixels of a ``shape`` grid (with ``transform``) touched by the geometry's boundary.

    Examples
    --------
    >>> m = outline_mask(shapely.box(1.5, 1.5, 4.5, 4.5), Affine(1, 0, 0, 0, -1, 6), (6, 6))
    >>> m.astype(int)[:5].tolist()
    [[0, 0, 0, 0, 0, 0], [0, 1, 1, 1, 1, 0], [0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 1, 0], \
[0, 1, 1, 1, 1, 0]]
    """
    boundary = shapely.boundary(geometry)
    if boundary is None or shapely.is_empty(boundary):
        return np.zeros(shape, bool)
    burned = rasterio.features.rasterize([(boundary, 1)], out_shape=shape, transform=transform,
                                         fill=0, all_touched=True, dtype="uint8")
    return burned.astype(bool)


def chip_window(grid: Grid, bounds: tuple[float, float, float, float], *,
                pad: float = 0.5, min_pixels: int = 48) -> Window | None:
    """The window around *bounds* (grid CRS): padded by ``pad`` × the larger side, square-ish.

    At least ``min_pixels`` on a side, clipped to the grid; ``None`` when nothing is left.
    """
    inv = ~grid.transform
    xmin, ymin, xmax, ymax = bounds
    cols, rows = inv @ (np.array([xmin, xmax, xmin, xmax]), np.array([ymax, ymax, ymin, ymin]))
    c0, c1 = float(np.min(cols)), float(np.max(cols))
    r0, r1 = float(np.min(rows)), float(np.max(rows))
    side = max(c1 - c0, r1 - r0)
    half = max(side * (0.5 + pad), min_pixels / 2.0)
    cc, rc = (c0 + c1) / 2.0, (r0 + r1) / 2.0
    col_off, row_off = math.floor(cc - half), math.floor(rc - half)
    size = math.ceil(2 * half)
    w = Window(col_off, row_off, size, size)
    try:
        w = w.intersection(Window(0, 0, grid.width, grid.height))
    except rasterio.errors.WindowError:
        return None
    if w.width < 1 or w.height < 1:
        return None
    return Window(int(w.col_off), int(w.row_off), int(w.width), int(w.height))


def _rgb_bands(bands: Sequence[str]) -> list[str]:
    names = [band_role(bands, r) for r in ("red", "green", "blue")]
    if all(names):
        return [str(n) for n in names]
    return [bands[0]] * 3  # grey from the first band


def _safe_name(claim_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", claim_id)[:40].strip("._") or "claim"
    digest = hashlib.sha256(claim_id.encode("utf-8")).hexdigest()[:8]
    return f"{stem}-{digest}"


def write_chips(
    stack: AlignedStack,
    claims: gpd.GeoDataFrame,
    out_dir: str | PathLike[str],
    *,
    before: int | str = 0,
    after: int | str = 1,
    id_column: str = "claim_id",
    normalisation: Normalisation | None = None,
    pad: float = 0.5,
    min_pixels: int = 48,
    max_pixels: int = 256,
    percentiles: tuple[float, float] = (2.0, 98.0),
    outline_color: tuple[int, int, int] = (255, 255, 0),
    relative_to: str | PathLike[str] | None = None,
    workers: int = 2,
    progress: Callable[[float, str], None] | None = None,
) -> pd.DataFrame:
    """Write before/after PNG chips for each claim; return their paths and bounds.

    Parameters
    ----------
    stack : AlignedStack
        The two dates on the reference grid.
    claims : GeoDataFrame
        Claims with *id_column*; any CRS (moved to the grid's).
    out_dir : path-like
        Folder of the PNG files (created); names are ``<claim>-<hash>_before.png`` …
    before, after : int or str
        The images in the stack.
    normalisation : Normalisation, optional
        Maps the after date onto the before date's radiometry before stretching (bands it
        does not know are left as they are).
    pad : float
        Margin around the claim, as a share of its larger side.
    min_pixels, max_pixels : int
        Smallest window side; largest chip side (larger windows are subsampled).
    percentiles : (float, float)
        The stretch, computed per band over both windows together.
    outline_color : (int, int, int)
        RGB of the claim outline.
    relative_to : path-like, optional
        Write paths relative to this folder in the result (default absolute).
    workers : int
        Threads writing chips (reads, PNG compression and numpy release the GIL).
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    pandas.DataFrame
        Indexed by claim id, columns :data:`CHIP_COLUMNS` (``chip_bounds`` as
        ``[[south, west], [north, east]]`` in EPSG:4326). Claims with no pixel on the grid
        are left out.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = stack.grid
    if claims.crs is None:
        msg = "claims have no coordinate reference system"
        raise ValidationError(msg)
    frame = claims.to_crs(grid.crs) if not claims.crs.equals(grid.crs) else claims
    bi, ai = stack.index(before), stack.index(after)
    bands_b = _rgb_bands(stack.bands(bi))
    bands_a = _rgb_bands(stack.bands(ai))
    gain = offset = None
    if normalisation is not None:
        pos = {b: i for i, b in enumerate(normalisation.bands)}
        gain = np.array([normalisation.gain[pos[b]] if b in pos else 1.0 for b in bands_a])
        offset = np.array([normalisation.offset[pos[b]] if b in pos else 0.0 for b in bands_a])
    ids = frame[id_column].astype(str).to_numpy()
    geoms = frame.geometry.to_numpy()
    color = np.asarray(outline_color, np.uint8)
    root = Path(relative_to) if relative_to is not None else None
    n = len(frame)
    todo: list[tuple[int, Window]] = []
    for k in range(n):
        geom = geoms[k]
        if geom is None or shapely.is_empty(geom):
            continue
        win = chip_window(grid, shapely.bounds(geom).tolist(), pad=pad, min_pixels=min_pixels)
        if win is not None:
            todo.append((k, win))
    # Decoding the image tiles is the cost of a chip: visit the windows in bands of two
    # tile rows, left to right, so that neighbouring chips (and those straddling the two
    # rows) reuse the decoded tiles in GDAL's block cache, and give whole bands to the
    # worker threads (each has its own file handles, hence its own cached tiles).
    bs = max(1, int(stack.blocksize))

    def band(item: tuple[int, Window]) -> int:
        return int(item[1].row_off) // (2 * bs)

    todo.sort(key=lambda kw: (band(kw), int(kw[1].col_off) // bs, int(kw[1].row_off),
                              int(kw[1].col_off)))
    groups: list[list[tuple[int, Window]]] = []
    for item in todo:
        if groups and band(groups[-1][0]) == band(item):
            groups[-1].append(item)
        else:
            groups.append([item])

    def _chip_step(win: Window) -> tuple[int, Affine]:
        step = max(1, math.ceil(max(int(win.width), int(win.height)) / max_pixels))
        wt = (grid.transform @ Affine.translation(int(win.col_off), int(win.row_off))
              @ Affine.scale(step))
        return step, wt

    # The outlines are burned here, before the threads: GDAL's in-memory rasterisation
    # is cheap and is kept out of the worker threads.
    edges: dict[int, NDArray[np.bool_]] = {}
    for k, win in todo:
        step, wt = _chip_step(win)
        shape = (math.ceil(int(win.height) / step), math.ceil(int(win.width) / step))
        edges[k] = outline_mask(geoms[k], wt, shape)

    def chip(k: int, win: Window) -> dict[str, Any]:
        b = stack.read(win, image=bi, bands=bands_b)
        a = stack.read(win, image=ai, bands=bands_a)
        if gain is not None:
            a = a * gain[:, None, None].astype(np.float32) + offset[:, None, None].astype(
                np.float32)
        step, wt = _chip_step(win)
        if step > 1:
            b, a = b[:, ::step, ::step], a[:, ::step, ::step]
        lo, hi = percentile_stretch(b, a, percentiles=percentiles)
        img_b, img_a = apply_stretch(b, lo, hi), apply_stretch(a, lo, hi)
        edge = edges[k]
        img_b[edge] = color
        img_a[edge] = color
        name = _safe_name(ids[k])
        pb = write_png(out_dir / f"{name}_before.png", img_b)
        pa = write_png(out_dir / f"{name}_after.png", img_a)
        left, top = wt @ (0, 0)
        right, bottom = wt @ (img_b.shape[1], img_b.shape[0])
        w84 = transform_bounds(grid.crs, "EPSG:4326", min(left, right), min(top, bottom),
                               max(left, right), max(top, bottom), densify_pts=5)
        if root is not None:
            pb, pa = Path(_relative(pb, root)), Path(_relative(pa, root))
        return {"chip_before": str(pb), "chip_after": str(pa),
                "chip_bounds": [[round(w84[1], 7), round(w84[0], 7)],
                                [round(w84[3], 7), round(w84[2], 7)]]}

    def run(group: list[tuple[int, Window]]) -> list[tuple[int, dict[str, Any]]]:
        with gdal_env():  # rasterio's environment is per thread
            return [(k, chip(k, win)) for k, win in group]

    done: dict[int, dict[str, Any]] = {}
    if workers > 1 and len(groups) > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results: Iterable[list[tuple[int, dict[str, Any]]]] = pool.map(run, groups)
            for part in results:
                done.update(part)
                if progress is not None:
                    progress(len(done) / max(len(todo), 1), "image chips")
    else:
        for group in groups:
            done.update(run(group))
            if progress is not None:
                progress(len(done) / max(len(todo), 1), "image chips")
    rows = {ids[k]: done[k] for k in sorted(done)}  # input order
    out = pd.DataFrame.from_dict(rows, orient="index", columns=list(CHIP_COLUMNS))
    out.index.name = id_column
    return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())
