"""Per-parcel statistics of change rasters, coverage-weighted with exactextract.

Each parcel (a compensation claim, a reference parcel …) gets, for every index raster:

* ``<index>_mean``: coverage-weighted mean (a pixel half inside the parcel counts half);
* ``<index>_q90``: coverage-weighted high quantile (``quantile=0.9`` → ``_q90``), with
  exactextract's definition of a weighted quantile;
* ``<index>_above``: coverage-weighted share of the parcel's valid pixels above the scene
  threshold of the :class:`~imagery.change.ChangeResult` (or the thresholds given);

and once per parcel:

* ``parcel_pixels``: the parcel's area in pixels of the grid (in the raster CRS);
* ``effective_pixels``: coverage-weighted count of valid pixels (exactextract's ``count``)
  of the change magnitude (else of the first index);
* ``valid_coverage``: ``effective_pixels / parcel_pixels``, the share of the parcel's area
  with valid data on both dates (0 for a parcel outside the image);
* ``inconclusive`` and ``reason``: parcels below ``min_pixels`` effective pixels or below
  ``min_valid_coverage`` are flagged inconclusive with the reason. Their numbers are kept
  for the record, but a rule must not score them (they are never silently scored).

The result is a pandas DataFrame indexed by the parcel id, one row per input parcel, in
input order. Parcels in another CRS are reprojected to the raster's CRS first; a parcel
layer without a CRS is refused.

How it works (and why it scales): exactextract computes, once per parcel, the grid cells
the polygon touches and the exact fraction of each cell it covers (its ``cell_id`` and
``coverage`` operations, run against a zero-cost stand-in for the grid so no pixel is read
twice). Parcels are processed in spatially sorted batches; for each batch the index
rasters are read once over the batch's window and a numba kernel reduces every index at
once: weighted count, mean, exactextract's weighted quantile, and the share above a
threshold. The numbers equal exactextract's own ``count``/``mean``/``quantile`` (tested),
but the geometry work is done once instead of once per raster and operation, and any
threshold can be asked for without another raster. ``method="centre"`` uses rasterstats'
pixel-centre rule (weight 1 for cells whose centre is inside, else 0) instead.

Examples
--------
>>> import tempfile, pathlib, numpy as np, rasterio, geopandas as gpd
>>> from shapely.geometry import box
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> data = np.zeros((1, 20, 20), "float32"); data[0, :, 10:] = 1.0
>>> with rasterio.open(tmp / "magnitude.tif", "w", driver="GTiff", width=20, height=20,
...                    count=1, dtype="float32", crs="EPSG:32650", nodata=float("nan"),
...                    transform=rasterio.Affine(1, 0, 0, 0, -1, 20)) as d:
...     d.write(data)
>>> parcels = gpd.GeoDataFrame({"claim_id": ["a", "b", "c"]}, crs="EPSG:32650",
...     geometry=[box(5, 5, 15, 15), box(0, 0, 1.5, 1.5), box(100, 100, 110, 110)])
>>> st = parcel_stats(parcels, {"magnitude": tmp / "magnitude.tif"},
...                   thresholds={"magnitude": 0.5})
>>> st[["magnitude_mean", "magnitude_above", "valid_coverage", "inconclusive"]]
          magnitude_mean  magnitude_above  valid_coverage  inconclusive
claim_id
a                    0.5              0.5             1.0         False
b                    0.0              0.0             1.0          True
c                    NaN              NaN             0.0          True
>>> st.loc["c", "reason"]
'outside the image'
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from os import PathLike
from pathlib import Path
from typing import Any

import geopandas as gpd
import numba
import numpy as np
import pandas as pd
import rasterio
import shapely
from exactextract import exact_extract
from exactextract.feature import Feature, FeatureSource
from exactextract.raster import NumPyRasterSource
from exactextract.writer import Writer
from numpy.typing import NDArray
from rasterio.windows import Window

from geosup.errors import ConfigError, CRSError, SchemaError, ValidationError
from imagery.align import Grid, ProgressFn, gdal_env
from imagery.change import ChangeResult

__all__ = [
    "STATUS_COLUMNS",
    "parcel_cells",
    "parcel_stats",
    "quantile_column",
    "zonal_stats",
]

log = logging.getLogger(__name__)

#: Columns added to every per-parcel table besides the per-index statistics.
STATUS_COLUMNS: tuple[str, ...] = (
    "parcel_pixels", "effective_pixels", "valid_coverage", "inconclusive", "reason",
)

PathArg = str | PathLike[str]

_TILE = 1024             # spatial sort key: parcels grouped by 1024 px tiles
_BATCH_CELLS = 2_000_000  # cells (parcel bbox area) per batch: bounds memory


def quantile_column(index: str, quantile: float) -> str:
    """Column name of an index's quantile: ``quantile_column("dndvi", 0.9) == "dndvi_q90"``.

    Examples
    --------
    >>> quantile_column("magnitude", 0.95)
    'magnitude_q95'
    """
    return f"{index}_q{round(quantile * 100):d}"


# --------------------------------------------------------------------------- exactextract glue
class _WkbFeature(Feature):
    """A feature handed to exactextract: WKB geometry and its position in the batch."""

    def __init__(self, i: int = -1, wkb: bytes | None = None) -> None:
        Feature.__init__(self)
        self.i = i
        self.wkb = wkb
        self.props: dict[str, Any] = {}

    def get(self, name: str) -> int:
        return self.i

    def fields(self) -> list[str]:
        return ["_i"]

    def geometry(self) -> bytes | None:
        return self.wkb

    def set(self, name: str, value: Any) -> None:
        self.props[name] = value

    def set_geometry(self, wkb: bytes) -> None:
        pass

    def set_geometry_format(self) -> str:
        return "wkb"


class _WkbSource(FeatureSource):
    def __init__(self, wkbs: NDArray[np.object_], srs_wkt: str) -> None:
        super().__init__()
        self.wkbs = wkbs
        self.wkt = srs_wkt

    def count(self) -> int:
        return len(self.wkbs)

    def __iter__(self) -> Iterator[_WkbFeature]:
        for i, w in enumerate(self.wkbs):
            yield _WkbFeature(i, w)

    def srs_wkt(self) -> str:
        return self.wkt


class _CellWriter(Writer):
    """Collects exactextract's per-feature ``cell_id`` and ``coverage`` arrays."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.cells: list[Any] = [None] * n
        self.cover: list[Any] = [None] * n

    def add_operation(self, op: Any) -> None:
        pass

    def add_column(self, col_name: str) -> None:
        pass

    def add_geometry(self) -> None:
        pass

    def write(self, feature: Any) -> None:
        f = _WkbFeature()
        feature.copy_to(f)
        i = f.props["_i"]
        self.cells[i] = f.props.get("cell_id")
        self.cover[i] = f.props.get("coverage")

    def features(self) -> None:
        return None

    def finish(self) -> None:
        pass


def _grid_source(grid: Grid) -> NumPyRasterSource:
    """The grid as an exactextract raster that costs nothing to read (broadcast zeros)."""
    zeros = np.broadcast_to(np.uint8(0), (grid.height, grid.width))
    left, bottom, right, top = grid.bounds
    return NumPyRasterSource(zeros, left, bottom, right, top, srs_wkt=grid.crs.to_wkt())


def parcel_cells(
    geoms: NDArray[np.object_], grid: Grid, *, method: str = "coverage",
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Cells of the grid under each polygon and their weights.

    Parameters
    ----------
    geoms : array of shapely geometries
        Polygons in the grid's CRS.
    grid : Grid
    method : {"coverage", "centre"}
        ``coverage``: exactextract's exact covered fraction of each cell; ``centre``:
        1 for cells whose centre is inside the polygon (rasterstats' rule), else dropped.

    Returns
    -------
    offsets, cells, weights
        ``cells[offsets[i]:offsets[i + 1]]`` are the flat cell indices
        (``row * grid.width + col``) of polygon ``i`` and ``weights`` their weights.

    Examples
    --------
    >>> from shapely.geometry import box
    >>> g = Grid("EPSG:32650", rasterio.Affine(1, 0, 0, 0, -1, 4), 4, 4)
    >>> off, cells, w = parcel_cells(np.array([box(0.5, 2, 2, 4)]), g)
    >>> off.tolist(), cells.tolist(), w.tolist()
    ([0, 4], [0, 1, 4, 5], [0.5, 1.0, 0.5, 1.0])
    """
    if method not in ("coverage", "centre"):
        msg = f"unknown weighting method {method!r}; use 'coverage' or 'centre'"
        raise ConfigError(msg)
    n = len(geoms)
    writer = _CellWriter(n)
    if n:
        src = _grid_source(grid)
        exact_extract(src, _WkbSource(shapely.to_wkb(geoms), grid.crs.to_wkt()),
                      ["cell_id", "coverage"], include_cols=["_i"], output=writer)
    lengths = np.array([0 if c is None else len(c) for c in writer.cells], np.int64)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1]:
        cells = np.concatenate([c for c in writer.cells if c is not None]).astype(np.int64)
        weights = np.concatenate([c for c in writer.cover if c is not None]).astype(np.float64)
    else:
        cells, weights = np.empty(0, np.int64), np.empty(0, np.float64)
    if method == "centre" and cells.size:
        rows, cols = np.divmod(cells, grid.width)
        t = grid.transform
        x = t.c + (cols + 0.5) * t.a
        y = t.f + (rows + 0.5) * t.e
        owner = np.repeat(np.arange(n), lengths)
        inside = shapely.contains_xy(geoms[owner], x, y)
        weights = inside.astype(np.float64)
    keep = weights > 0
    if not keep.all():
        counts = np.add.reduceat(keep.astype(np.int64), offsets[:-1]) if cells.size else lengths
        counts = np.where(lengths > 0, counts, 0)
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        cells, weights = cells[keep], weights[keep]
    return offsets, cells, weights


# --------------------------------------------------------------------------- reductions
@numba.njit(cache=True, nogil=True)
def _sorted_quantile(xs: NDArray[np.float32], ws: NDArray[np.float64], q: float, n: int,
                     rank0: int, cum0: float, total: float) -> float:
    """exactextract's weighted quantile over sorted ``xs`` that follow ``rank0`` elements
    of total weight ``cum0``; ``n`` elements and ``total`` weight overall."""
    target = q * total * (n - 1)
    m = xs.size
    cum = cum0
    s_prev = 0.0
    for i in range(m):
        r = rank0 + i
        s_i = 0.0 if r == 0 else r * ws[i] + (n - 1) * cum
        if s_i > target:
            if i == 0:  # cannot happen when the caller includes the left neighbour
                return np.nan
            return xs[i - 1] + (target - s_prev) * (xs[i] - xs[i - 1]) / (s_i - s_prev)
        s_prev = s_i
        cum += ws[i]
    return xs[m - 1]


@numba.njit(cache=True, nogil=True)
def _weighted_quantile(x: NDArray[np.float32], w: NDArray[np.float64], q: float) -> float:
    """exactextract's weighted quantile of values ``x`` with weights ``w`` (non-empty).

    exactextract sorts the values, sets ``s_0 = 0``, ``s_i = i w_i + (n - 1) W_{i-1}`` (``W``
    the cumulative weight) and interpolates linearly where ``s`` crosses ``q W_n (n - 1)``.
    Sorting every parcel's values is the cost, so this finds the crossing with a histogram
    (``s`` is monotone, and bounded per bin by the bin's rank and weight) and sorts only
    the few bins around it: O(n) instead of O(n log n), same result.
    """
    n = x.size
    if n == 1:
        return float(x[0])
    lo = x.min()
    hi = x.max()
    if not hi > lo:
        return float(lo)
    nbins = 64
    scale = nbins / (float(hi) - float(lo))
    cnt = np.zeros(nbins, np.int64)
    wsum = np.zeros(nbins)
    wmax = 0.0
    bins = np.empty(n, np.int64)
    total = 0.0
    for i in range(n):
        b = int((float(x[i]) - float(lo)) * scale)
        if b >= nbins:
            b = nbins - 1
        bins[i] = b
        cnt[b] += 1
        wsum[b] += w[i]
        total += w[i]
        if w[i] > wmax:
            wmax = w[i]
    target = q * total * (n - 1)
    # first bin whose largest possible s exceeds the target, and the first bin whose
    # smallest s (its first element's) already does
    rank = 0
    cum = 0.0
    b_start = nbins - 1
    b_end = nbins - 1
    found = False
    for b in range(nbins):
        if cnt[b] == 0:
            continue
        low_s = (n - 1) * cum
        if found and low_s > target:
            b_end = b
            break
        up_s = (rank + cnt[b] - 1) * wmax + (n - 1) * (cum + wsum[b])
        if not found and up_s > target:
            b_start = b
            found = True
        rank += cnt[b]
        cum += wsum[b]
    # include the last non-empty bin before b_start (it holds the left neighbour)
    b_lo = b_start
    for b in range(b_start - 1, -1, -1):
        if cnt[b] > 0:
            b_lo = b
            break
    rank0 = 0
    cum0 = 0.0
    for b in range(b_lo):
        rank0 += cnt[b]
        cum0 += wsum[b]
    m = 0
    for b in range(b_lo, b_end + 1):
        m += cnt[b]
    xs = np.empty(m, x.dtype)
    ws = np.empty(m)
    k = 0
    for i in range(n):
        if b_lo <= bins[i] <= b_end:
            xs[k] = x[i]
            ws[k] = w[i]
            k += 1
    order = np.argsort(xs)
    return _sorted_quantile(xs[order], ws[order], q, n, rank0, cum0, total)


@numba.njit(parallel=True, cache=True, nogil=True)
def _reduce(offsets: NDArray[np.int64], rows: NDArray[np.int64], cols: NDArray[np.int64],
            weights: NDArray[np.float64], data: NDArray[np.float32], nodata: NDArray[np.float64],
            q: float, thresholds: NDArray[np.float64],
            out: NDArray[np.float64]) -> None:
    """Per feature and band: weighted count, mean, quantile, share above threshold.

    ``out[f, k, 0..3]`` = count, mean, quantile, above share (NaN when no valid cell).
    """
    n = offsets.size - 1
    nk = data.shape[0]
    for f in numba.prange(n):
        s, e = offsets[f], offsets[f + 1]
        m = e - s
        for k in range(nk):
            vals = np.empty(m, np.float32)
            wts = np.empty(m)
            c = 0
            sw = 0.0
            swx = 0.0
            sabove = 0.0
            th = thresholds[k]
            nd = nodata[k]
            for j in range(s, e):
                v = data[k, rows[j], cols[j]]
                if np.isnan(v) or v == nd:
                    continue
                wj = weights[j]
                vals[c] = v
                wts[c] = wj
                c += 1
                sw += wj
                swx += wj * v
                if v > th:
                    sabove += wj
            out[f, k, 0] = sw
            if c == 0 or sw <= 0.0:
                out[f, k, 1] = np.nan
                out[f, k, 2] = np.nan
                out[f, k, 3] = np.nan
            else:
                out[f, k, 1] = swx / sw
                out[f, k, 2] = _weighted_quantile(vals[:c], wts[:c], q)
                out[f, k, 3] = sabove / sw if not np.isnan(th) else np.nan


def _batches(geoms: NDArray[np.object_], grid: Grid, budget: int) -> list[NDArray[np.int64]]:
    """Polygon positions in spatial batches: by strips of 1024 grid rows, then left to right
    in runs of about *budget* bbox cells, so each batch reads a compact window."""
    b = shapely.bounds(geoms)
    t = grid.transform  # north-up (exactextract refuses rotated grids)
    c0, c1 = (b[:, 0] - t.c) / t.a, (b[:, 2] - t.c) / t.a
    r0, r1 = (b[:, 3] - t.f) / t.e, (b[:, 1] - t.f) / t.e
    cmin = np.clip(np.minimum(c0, c1), 0, grid.width)
    cmax = np.clip(np.maximum(c0, c1), 0, grid.width)
    rmin = np.clip(np.minimum(r0, r1), 0, grid.height)
    rmax = np.clip(np.maximum(r0, r1), 0, grid.height)
    size = (np.ceil(cmax) - np.floor(cmin) + 1) * (np.ceil(rmax) - np.floor(rmin) + 1)
    strip = ((rmin + rmax) // 2 // _TILE).astype(np.int64)
    order = np.lexsort(((cmin + cmax) / 2, strip))
    # Cut at strip changes and where the running cell count crosses the budget.
    sz = size[order]
    st = strip[order]
    cuts = []
    acc = 0.0
    for i in range(1, order.size):  # integer bookkeeping only, no geometry work
        acc += sz[i - 1]
        if st[i] != st[i - 1] or acc >= budget:
            cuts.append(i)
            acc = 0.0
    return [part for part in np.split(order, cuts) if part.size]


def _zonal(
    geoms: NDArray[np.object_],
    rasters: Sequence[Path],
    grid: Grid,
    *,
    quantile: float,
    thresholds: Sequence[float],
    method: str,
    band: int = 1,
    progress: ProgressFn | None = None,
) -> NDArray[np.float64]:
    """``(n, k, 4)`` count, mean, quantile, share above for polygons over k rasters."""
    n, k = len(geoms), len(rasters)
    out = np.full((n, k, 4), np.nan)
    out[:, :, 0] = 0.0
    if n == 0:
        return out
    with gdal_env():
        _zonal_batches(geoms, rasters, grid, out, quantile=quantile, thresholds=thresholds,
                       method=method, band=band, progress=progress)
    return out


def _zonal_batches(
    geoms: NDArray[np.object_],
    rasters: Sequence[Path],
    grid: Grid,
    out: NDArray[np.float64],
    *,
    quantile: float,
    thresholds: Sequence[float],
    method: str,
    band: int,
    progress: ProgressFn | None,
) -> None:
    k = len(rasters)
    handles = [rasterio.open(p) for p in rasters]
    try:
        nodata = np.array([np.nan if h.nodata is None else float(h.nodata) for h in handles])
        th = np.asarray(thresholds, np.float64)
        batches = _batches(geoms, grid, _BATCH_CELLS)

        def read(cells: NDArray[np.int64]) -> tuple[Any, ...] | None:
            if cells.size == 0:
                return None
            rows, cols = np.divmod(cells, grid.width)
            r0, c0 = int(rows.min()), int(cols.min())
            w = Window(c0, r0, int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1)
            data = np.empty((k, int(w.height), int(w.width)), np.float32)
            for i, h in enumerate(handles):
                data[i] = h.read(band, window=w, out_dtype="float32")
            rows -= r0
            cols -= c0
            return rows, cols, data

        def reduce(sel: NDArray[np.int64], offsets: NDArray[np.int64],
                   weights: NDArray[np.float64], block: Future[tuple[Any, ...] | None]) -> None:
            res = np.full((sel.size, k, 4), np.nan)
            res[:, :, 0] = 0.0
            got = block.result()
            if got is None:
                out[sel] = res
                return
            rows, cols, data = got
            _reduce(offsets, rows, cols, weights, data, nodata, float(quantile), th, res)
            out[sel] = res

        # Three stages overlap: exactextract's cells (holds the GIL) here, the window read
        # (rasterio releases the GIL) in one thread, the numba reduction (nogil, parallel)
        # in another; at most three batches are in flight, which bounds memory.
        with ThreadPoolExecutor(max_workers=1) as reader, \
                ThreadPoolExecutor(max_workers=1) as reducer:
            pending: list[Future[None]] = []
            for i, sel in enumerate(batches, start=1):
                offsets, cells, weights = parcel_cells(geoms[sel], grid, method=method)
                block = reader.submit(read, cells)
                pending.append(reducer.submit(reduce, sel, offsets, weights, block))
                if len(pending) >= 3:
                    pending.pop(0).result()
                if progress is not None:
                    progress(i / len(batches), "parcel statistics")
            for f in pending:
                f.result()
    finally:
        for h in handles:
            h.close()


# --------------------------------------------------------------------------- public API
def _prepare_parcels(parcels: gpd.GeoDataFrame, id_column: str, crs: Any) -> gpd.GeoDataFrame:
    if not isinstance(parcels, gpd.GeoDataFrame):
        msg = "parcels must be a GeoDataFrame"
        raise SchemaError(msg)
    if id_column not in parcels.columns:
        msg = (f"parcels have no {id_column!r} column (columns: "
               f"{', '.join(map(str, parcels.columns))})")
        raise SchemaError(msg)
    ids = parcels[id_column]
    if ids.isna().any():
        msg = f"{int(ids.isna().sum())} parcel(s) have no {id_column}"
        raise SchemaError(msg)
    if ids.duplicated().any():
        dup = ids[ids.duplicated()].astype(str).unique()[:5]
        msg = f"duplicate {id_column} values: {', '.join(dup)}"
        raise SchemaError(msg)
    if parcels.crs is None:
        msg = "parcels have no coordinate reference system; declare it before computing stats"
        raise CRSError(msg)
    frame = gpd.GeoDataFrame({id_column: ids.to_numpy()}, geometry=parcels.geometry.values,
                             crs=parcels.crs)
    if not frame.crs.equals(crs):
        frame = frame.to_crs(crs)
    return frame


def _raster_grid(path: Path) -> Grid:
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                msg = f"raster {path} has no coordinate reference system"
                raise CRSError(msg)
            return Grid.of(ds)
    except rasterio.errors.RasterioIOError as exc:
        from geosup.errors import DataSourceError

        msg = f"cannot open raster {path}: {exc}"
        raise DataSourceError(msg) from None


def parcel_stats(
    parcels: gpd.GeoDataFrame,
    change: ChangeResult | Mapping[str, PathArg],
    *,
    id_column: str = "claim_id",
    indices: Sequence[str] | None = None,
    quantile: float = 0.9,
    thresholds: Mapping[str, float] | None = None,
    min_pixels: float = 4.0,
    min_valid_coverage: float = 0.5,
    method: str = "coverage",
    progress: ProgressFn | None = None,
) -> pd.DataFrame:
    """Coverage-weighted statistics of change rasters for every parcel (see module doc).

    Parameters
    ----------
    parcels : GeoDataFrame
        Parcels or claims with an id column; any CRS (reprojected to the rasters').
    change : ChangeResult or mapping
        The result of :func:`~imagery.change.compute_change`, or index name → raster path
        (single-band rasters on one grid; NaN or the nodata value = invalid).
    id_column : str
        Column identifying the parcels (unique); it becomes the result's index.
    indices : sequence of str, optional
        Subset of the indices; default all.
    quantile : float
        The high quantile reported per index (column ``<index>_q90`` for 0.9).
    thresholds : mapping, optional
        Index → threshold for ``<index>_above``; default the scene thresholds of *change*.
        An index without a threshold gets NaN in ``_above``.
    min_pixels : float
        Minimum coverage-weighted valid pixel count to be conclusive.
    min_valid_coverage : float
        Minimum share of the parcel's area with valid data to be conclusive.
    method : {"coverage", "centre"}
        Cell weights: exact coverage fractions (default) or rasterstats' pixel-centre rule.
    progress : callable, optional
        ``progress(fraction, message)`` after each batch of parcels.

    Returns
    -------
    pandas.DataFrame
        Indexed by *id_column*, one row per parcel, in input order.

    Raises
    ------
    SchemaError
        The id column is missing, has gaps or duplicates.
    CRSError
        The parcels or a raster have no CRS.
    ValidationError
        The index rasters are not on one grid.
    """
    if not 0 <= quantile <= 1:
        msg = f"quantile must be between 0 and 1, not {quantile}"
        raise ConfigError(msg)
    if isinstance(change, ChangeResult):
        paths = dict(change.paths)
        default_th = dict(change.thresholds)
    else:
        paths = {k: Path(v) for k, v in change.items()}
        default_th = {}
    if indices is not None:
        missing = [k for k in indices if k not in paths]
        if missing:
            msg = f"no raster for index {missing[0]!r} (have: {', '.join(paths)})"
            raise ValidationError(msg)
        paths = {k: paths[k] for k in indices}
    if not paths:
        msg = "no index raster to summarise"
        raise ValidationError(msg)
    ths = dict(default_th)
    if thresholds is not None:
        ths.update({k: float(v) for k, v in thresholds.items()})

    names = list(paths)
    grids = [_raster_grid(paths[k]) for k in names]
    grid = grids[0]
    for k, g in zip(names, grids, strict=True):
        if not g.same_as(grid):
            msg = f"index raster {paths[k]} is not on the grid of {paths[names[0]]}"
            raise ValidationError(msg)
    frame = _prepare_parcels(parcels, id_column, grid.crs)
    n = len(frame)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    empty = np.asarray(shapely.is_empty(geoms) | shapely.is_missing(geoms))
    outside = ~empty & ~np.asarray(shapely.intersects(geoms, shapely.box(*grid.bounds)))
    parcel_pixels = np.where(empty, 0.0, shapely.area(geoms) / grid.pixel_area)
    todo = np.flatnonzero(~(empty | outside))

    res = np.full((n, len(names), 4), np.nan)
    res[:, :, 0] = 0.0
    res[todo] = _zonal(geoms[todo], [paths[k] for k in names], grid, quantile=quantile,
                       thresholds=[ths.get(k, np.nan) for k in names], method=method,
                       progress=progress)

    count_k = names.index("magnitude") if "magnitude" in names else 0
    eff = res[:, count_k, 0]
    data: dict[str, Any] = {"parcel_pixels": parcel_pixels, "effective_pixels": eff}
    for j, k in enumerate(names):
        data[f"{k}_mean"] = res[:, j, 1]
        data[quantile_column(k, quantile)] = res[:, j, 2]
        data[f"{k}_above"] = res[:, j, 3]
    out = pd.DataFrame(data, index=pd.Index(frame[id_column].to_numpy(), name=id_column))
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.where(parcel_pixels > 0, np.minimum(eff / parcel_pixels, 1.0), 0.0)
    out["valid_coverage"] = cov
    reason = np.full(n, "", dtype=object)
    low_cov = cov < min_valid_coverage
    few = eff < min_pixels
    reason[few] = [f"{e:.3g} valid pixels < {min_pixels:g}" for e in eff[few]]
    reason[low_cov] = [f"valid coverage {c:.0%} < {min_valid_coverage:.0%}"
                       for c in cov[low_cov]]
    nothing = np.zeros(n, bool)
    nothing[todo] = eff[todo] <= 0
    reason[nothing] = "no valid pixels (nodata or cloud)"
    reason[outside] = "outside the image"
    reason[empty] = "no geometry"
    out["inconclusive"] = few | low_cov | empty | outside
    out["reason"] = reason
    n_inc = int(out["inconclusive"].sum())
    if n_inc:
        log.info("%d of %d parcels inconclusive (min %g valid pixels, min %.0f%% valid "
                 "coverage)", n_inc, n, min_pixels, 100 * min_valid_coverage)
    return out


def zonal_stats(
    raster: PathArg,
    zones: gpd.GeoDataFrame,
    *,
    id_column: str,
    band: int = 1,
    quantile: float = 0.9,
    threshold: float | None = None,
    method: str = "coverage",
) -> pd.DataFrame:
    """Zonal statistics of one raster band with the same engine as :func:`parcel_stats`.

    Zones are reprojected to the raster's CRS; the result is indexed by *id_column* in input
    order with columns ``count`` (weighted valid cells), ``mean``, ``q90`` (for
    ``quantile=0.9``) and ``above`` (share above *threshold*, NaN without one).
    ``method="coverage"`` weights by exact coverage (exactextract), ``"centre"`` counts the
    cells whose centre is inside (rasterstats' default rule).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, rasterio, geopandas as gpd
    >>> from shapely.geometry import box
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.tif"
    >>> with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1,
    ...                    dtype="float32", crs="EPSG:32650", nodata=-1,
    ...                    transform=rasterio.Affine(1, 0, 0, 0, -1, 4)) as d:
    ...     d.write(np.arange(16, dtype="float32").reshape(1, 4, 4))
    >>> z = gpd.GeoDataFrame({"id": [1]}, geometry=[box(0.5, 2, 2, 4)], crs="EPSG:32650")
    >>> zonal_stats(p, z, id_column="id")[["count", "mean"]]
        count      mean
    id
    1     3.0  2.666667
    >>> zonal_stats(p, z, id_column="id", method="centre")[["count", "mean"]]
        count  mean
    id
    1     2.0   3.0
    """
    path = Path(raster)
    grid = _raster_grid(path)
    frame = _prepare_parcels(zones, id_column, grid.crs)
    geoms = np.asarray(frame.geometry.values, dtype=object)
    n = len(geoms)
    ok = np.flatnonzero(~(shapely.is_empty(geoms) | shapely.is_missing(geoms)))
    res = np.full((n, 1, 4), np.nan)
    res[:, :, 0] = 0.0
    res[ok] = _zonal(geoms[ok], [path], grid, quantile=quantile,
                     thresholds=[np.nan if threshold is None else threshold],
                     method=method, band=band)
    return pd.DataFrame({"count": res[:, 0, 0], "mean": res[:, 0, 1],
                         quantile_column("", quantile)[1:]: res[:, 0, 2],
                         "above": res[:, 0, 3]},
                        index=pd.Index(frame[id_column].to_numpy(), name=id_column))
