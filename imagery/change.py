"""Change between two dates on the aligned grid: normalisation, indices, scene thresholds.

Three steps, all window by window on an :class:`~imagery.align.AlignedStack`:

1. **Radiometric normalisation** (:func:`fit_normalisation`). Two dates differ in sun angle,
   atmosphere, sensor gain and 8/16-bit scaling, so the "after" bands are mapped onto the
   "before" bands band by band with a linear ``after' = gain * after + offset``. The fit uses
   *pseudo-invariant pixels* (``method="pif"``, the default): starting from a robust
   mean/standard-deviation match (median and MAD-based sigma) over a sample of pixels valid on
   both dates, it keeps the ``invariant_share`` of pixels with the smallest standardised
   change and refits mean/std matching on them, a few times (in the spirit of iteratively
   reweighted MAD). Changed pixels (new roofs, greenhouses) thus do not bias the fit.
   ``method="meanstd"`` does one robust match over all sampled pixels, ``"none"`` nothing.
   The fit also gives each band's *noise scale*: the robust standard deviation of the
   normalised difference over the invariant pixels.
2. **Change indices** (:func:`compute_change`), each written as a tiled float32 GeoTIFF on the
   reference grid (NaN = invalid on either date: nodata, alpha, cloud, outside):

   ``magnitude``
       change-vector magnitude: root mean square of the per-band differences divided by
       each band's noise scale (unitless; ~1 for unchanged pixels). Sentinel-2's
       atmospheric bands B01, B09, B10 are left out by default.
   ``dndvi``
       NDVI(after) − NDVI(before): vegetation gain (rush planting) is positive. Needs the
       ``red`` and ``nir`` bands.
   ``dndbi``
       NDBI(after) − NDBI(before), NDBI = (SWIR1 − NIR) / (SWIR1 + NIR): new built-up surface
       (rush building) is positive. Needs ``swir1`` (Sentinel-2 B11) and ``nir``.
   ``dbright``
       mean standardised change of the visible bands (brightness): new roofs, concrete and
       greenhouse plastic are brighter. The built-up index when no SWIR band exists.

   ``indices="auto"`` computes every index the bands allow; asking for one the bands do not
   allow raises :class:`~imagery.catalog.BandError` naming the missing band.
3. **Scene thresholds**: per index, from the same pixel sample, Otsu's threshold
   (``threshold="otsu"``; for the signed indices over the upper half of the distribution,
   so it separates the gain tail from the bulk) or a high quantile
   (``threshold="quantile"``). :func:`imagery.stats.parcel_stats` reports each parcel's
   coverage-weighted share of pixels above them.

Examples
--------
>>> import datetime, tempfile, pathlib
>>> import numpy as np, rasterio
>>> from imagery.catalog import ImageEntry
>>> from imagery.align import align
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> base = rng.integers(200, 2000, (4, 64, 64)).astype("uint16")
>>> after = (base * 1.1 + 50).astype("uint16")
>>> after[:, 10:20, 10:20] = [[[300]], [[400]], [[500]], [[3000]]]  # a new field
>>> for name, data in (("t0", base), ("t1", after)):
...     with rasterio.open(tmp / f"{name}.tif", "w", driver="GTiff", width=64, height=64,
...                        count=4, dtype="uint16", crs="EPSG:32650",
...                        transform=rasterio.Affine(2, 0, 0, 0, -2, 128)) as d:
...         d.write(data)
>>> images = [ImageEntry.from_path(tmp / f"{n}.tif", acquired_on=f"2024-0{i + 1}-01")
...           for i, n in enumerate(("t0", "t1"))]
>>> with align(images) as stack:
...     result = compute_change(stack, tmp / "change")
>>> sorted(result.paths), result.builtup_index
(['dbright', 'dndvi', 'magnitude'], 'dbright')
>>> [round(float(g), 2) for g in result.normalisation.gain]
[0.91, 0.91, 0.91, 0.91]
>>> with rasterio.open(result.paths["dndvi"]) as d:
...     v = d.read(1)
>>> bool(v[15, 15] > result.thresholds["dndvi"] > v[40, 40])
True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numba
import numpy as np
import rasterio
from numpy.typing import NDArray
from rasterio.windows import Window

from geosup.errors import ConfigError, ValidationError
from imagery.align import AlignedStack, Grid, ProgressFn, gdal_env
from imagery.catalog import band_role, require_bands

__all__ = [
    "ATMOSPHERIC_BANDS",
    "EXTRA_NODATA",
    "INDICES",
    "BlockFn",
    "ChangeResult",
    "Normalisation",
    "compute_change",
    "fit_normalisation",
    "ndbi",
    "ndvi",
    "otsu_threshold",
    "sample_pixels",
]

log = logging.getLogger(__name__)

#: Change indices :func:`compute_change` knows.
INDICES: tuple[str, ...] = ("magnitude", "dndvi", "dndbi", "dbright")

#: Sentinel-2 bands that see the atmosphere more than the ground (left out of the magnitude).
ATMOSPHERIC_BANDS: tuple[str, ...] = ("B01", "B09", "B10")

#: Indices whose sign carries meaning (positive = gain of vegetation / built-up / brightness).
SIGNED_INDICES: tuple[str, ...] = ("dndvi", "dndbi", "dbright")

_EPS = 1e-6
_SAMPLE_CAP = 250_000

#: A per-window function of extra outputs of :func:`compute_change`: it gets a
#: ``(bands, h, w)`` float32 block of the before image (each band NaN where *it* is invalid)
#: and returns an ``(h, w)`` array (float32, NaN = invalid; or uint8, 255 = invalid).
BlockFn = Callable[[NDArray[np.float32]], NDArray[Any]]

#: Nodata of each dtype an extra output of :func:`compute_change` may have.
EXTRA_NODATA: dict[str, float] = {"float32": float("nan"), "uint8": 255.0}


def ndvi(red: NDArray[np.floating], nir: NDArray[np.floating]) -> NDArray[np.float32]:
    """Normalised difference vegetation index ``(nir - red) / (nir + red)``; NaN where 0/0.

    Examples
    --------
    >>> ndvi(np.array([100.0, 0.0]), np.array([300.0, 0.0])).tolist()
    [0.5, nan]
    """
    red = np.asarray(red, np.float32)
    nir = np.asarray(nir, np.float32)
    den = nir + red
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (nir - red) / den
    out[np.abs(den) < _EPS] = np.nan
    return out


def ndbi(swir1: NDArray[np.floating], nir: NDArray[np.floating]) -> NDArray[np.float32]:
    """Normalised difference built-up index ``(swir1 - nir) / (swir1 + nir)``.

    Examples
    --------
    >>> ndbi(np.array([300.0]), np.array([100.0])).tolist()
    [0.5]
    """
    return ndvi(nir, swir1)


def otsu_threshold(values: NDArray[np.floating], *, bins: int = 512) -> float:
    """Otsu's threshold of finite *values* (maximises the between-class variance).

    Values are clipped to their 0.1–99.9 % quantiles first so one outlier does not squash
    the histogram.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> v = np.concatenate([rng.normal(0, 1, 9000), rng.normal(8, 1, 1000)])
    >>> 3 < otsu_threshold(v) < 5
    True
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    lo, hi = np.quantile(v, [0.001, 0.999])
    if not hi > lo:
        return float(hi)
    hist, edges = np.histogram(np.clip(v, lo, hi), bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m = np.cumsum(hist * centres)
    mu0 = m / np.maximum(w0, 1)
    mu1 = (m[-1] - m) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    k = int(np.argmax(between[:-1]))
    return float(edges[k + 1])


@dataclass(frozen=True)
class Normalisation:
    """Per-band linear mapping of the "after" date onto the "before" date.

    ``after_normalised = gain * after + offset``; ``scale`` is each band's noise level (robust
    standard deviation of the normalised difference over the invariant pixels), the unit of
    the change magnitude.
    """

    bands: tuple[str, ...]
    gain: NDArray[np.float64]
    offset: NDArray[np.float64]
    scale: NDArray[np.float64]
    method: str
    n_sample: int
    n_invariant: int

    def apply(self, after: NDArray[np.floating]) -> NDArray[np.float32]:
        """Normalise a ``(bands, h, w)`` block of the after date (bands in :attr:`bands` order)."""
        g = self.gain.astype(np.float32)[:, None, None]
        o = self.offset.astype(np.float32)[:, None, None]
        return np.asarray(after, np.float32) * g + o

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for evidence)."""
        return {
            "method": self.method, "n_sample": self.n_sample, "n_invariant": self.n_invariant,
            "bands": {b: {"gain": round(float(g), 6), "offset": round(float(o), 4),
                          "scale": round(float(s), 4)}
                      for b, g, o, s in zip(self.bands, self.gain, self.offset, self.scale,
                                            strict=True)},
        }


def _robust_sigma(x: NDArray[np.floating], axis: int = -1) -> NDArray[np.float64]:
    med = np.median(x, axis=axis, keepdims=True)
    return 1.4826 * np.median(np.abs(x - med), axis=axis)


_SAMPLE_WINDOWS = 64


def _sample_windows(stack: AlignedStack, max_pixels: int) -> tuple[list[Window], int]:
    """Up to 64 windows spread evenly over the scene, and the pixel stride inside them."""
    wins = list(stack.windows())
    if len(wins) > _SAMPLE_WINDOWS:
        picks = np.unique(np.linspace(0, len(wins) - 1, _SAMPLE_WINDOWS).round().astype(int))
        wins = [wins[i] for i in picks]
    area = sum(int(w.width) * int(w.height) for w in wins)
    stride = max(1, math.isqrt(max(1, area // max(1, 2 * max_pixels))))
    return wins, stride


def sample_pixels(
    stack: AlignedStack,
    *,
    images: Sequence[int | str] = (0, 1),
    bands: Sequence[Sequence[str]] | None = None,
    max_pixels: int = _SAMPLE_CAP,
    seed: int = 0,
) -> list[NDArray[np.float32]]:
    """Pixels valid on every given image, from windows spread evenly over the scene.

    Returns one ``(bands, n)`` float32 array per image (same pixels in each), at most
    *max_pixels* columns. Small scenes are read whole.
    """
    return _sample(stack, images=images, bands=bands, max_pixels=max_pixels, seed=seed)[0]


def _sample(
    stack: AlignedStack,
    *,
    images: Sequence[int | str],
    bands: Sequence[Sequence[str]] | None,
    max_pixels: int,
    seed: int,
) -> tuple[list[NDArray[np.float32]], int, int]:
    """Like :func:`sample_pixels`, plus the valid and read pixel counts."""
    rng = np.random.default_rng(seed)
    chunks: list[list[NDArray[np.float32]]] = [[] for _ in images]
    n_read = 0
    wins, stride = _sample_windows(stack, max_pixels)
    for w in wins:
        blocks = [stack.read(w, image=img, bands=None if bands is None else bands[k])
                  [:, ::stride, ::stride] for k, img in enumerate(images)]
        ok = np.ones(blocks[0].shape[1:], bool)
        for b in blocks:
            ok &= np.isfinite(b).all(axis=0)
        n_read += ok.size
        for k, b in enumerate(blocks):
            chunks[k].append(b[:, ok])
    out = [np.concatenate(c, axis=1) for c in chunks]
    n_valid = out[0].shape[1]
    if n_valid > max_pixels:
        keep = np.sort(rng.choice(n_valid, max_pixels, replace=False))
        out = [o[:, keep] for o in out]
    return out, n_valid, n_read


def fit_normalisation(
    before: NDArray[np.floating],
    after: NDArray[np.floating],
    *,
    bands: Sequence[str],
    method: str = "pif",
    invariant_share: float = 0.5,
    iterations: int = 4,
) -> Normalisation:
    """Fit the per-band mapping of *after* onto *before* from co-located pixel samples.

    Parameters
    ----------
    before, after : numpy.ndarray
        ``(bands, n)`` samples of the same valid pixels on both dates (see
        :func:`sample_pixels`).
    bands : sequence of str
        Band names, for the record.
    method : {"pif", "meanstd", "none"}
        Pseudo-invariant-pixel refit (default), one robust mean/std match, or identity.
    invariant_share : float
        Share of the sample kept as invariant at each ``pif`` iteration.
    iterations : int
        ``pif`` refits.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(1000, 200, (2, 5000))
    >>> a = 0.5 * b + 10 + rng.normal(0, 5, b.shape)
    >>> a[:, :500] += 400          # 10 % changed pixels
    >>> n = fit_normalisation(b, a, bands=["red", "nir"])
    >>> [round(float(g), 1) for g in n.gain]
    [2.0, 2.0]
    """
    b = np.asarray(before, np.float64)
    a = np.asarray(after, np.float64)
    nb = b.shape[0]
    if b.shape != a.shape or b.ndim != 2:
        msg = f"before/after samples differ in shape: {b.shape} vs {a.shape}"
        raise ValidationError(msg)
    if method not in ("pif", "meanstd", "none"):
        msg = f"unknown normalisation method {method!r}; use 'pif', 'meanstd' or 'none'"
        raise ConfigError(msg)
    n = b.shape[1]
    if n < 10:
        msg = f"only {n} pixels are valid on both dates; cannot compare the images"
        raise ValidationError(msg)

    def match(sel: NDArray[np.bool_] | None) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        bb = b if sel is None else b[:, sel]
        aa = a if sel is None else a[:, sel]
        if sel is None:  # robust: median / MAD-sigma (outliers = change)
            mb, ma = np.median(bb, axis=1), np.median(aa, axis=1)
            sb, sa = _robust_sigma(bb), _robust_sigma(aa)
        else:  # invariant pixels: plain moments
            mb, ma = bb.mean(axis=1), aa.mean(axis=1)
            sb, sa = bb.std(axis=1), aa.std(axis=1)
        gain = np.where(sa > _EPS, sb / np.maximum(sa, _EPS), 1.0)
        return gain, mb - gain * ma

    if method == "none":
        gain, offset = np.ones(nb), np.zeros(nb)
    else:
        gain, offset = match(None)
    sel = np.ones(n, bool)
    if method == "pif":
        for _ in range(iterations):
            d = gain[:, None] * a + offset[:, None] - b
            s = np.maximum(_robust_sigma(d), _EPS)
            z2 = ((d - np.median(d, axis=1, keepdims=True)) / s[:, None]) ** 2
            score = z2.mean(axis=0)
            cut = np.quantile(score, invariant_share)
            sel = score <= cut
            gain, offset = match(sel)
    d = gain[:, None] * a + offset[:, None] - b
    scale = np.maximum(_robust_sigma(d[:, sel]), _EPS)
    scale = np.where(np.isfinite(scale), scale, 1.0)
    return Normalisation(tuple(bands), gain, offset, scale, method, n, int(sel.sum()))


@dataclass
class ChangeResult:
    """Change indices of one pair of dates, written on the reference grid.

    Attributes
    ----------
    grid : Grid
        The reference grid the rasters are on.
    paths : dict
        Index name → float32 GeoTIFF (NaN = invalid).
    thresholds : dict
        Index name → scene-level threshold (from the pixel sample).
    threshold_method : str
        ``otsu`` or ``quantile``.
    normalisation : Normalisation
        The radiometric mapping of after onto before.
    before, after : str
        Image ids.
    before_date, after_date : datetime.date
    builtup_index : str or None
        ``dndbi`` when SWIR was available, else ``dbright`` (if computed).
    vegetation_index : str or None
        ``dndvi`` if computed.
    valid_share : float
        Share of the grid valid on both dates (from the sample).
    extra_paths : dict
        Name → GeoTIFF of the ``extra`` outputs asked of :func:`compute_change`.
    """

    grid: Grid
    paths: dict[str, Path]
    thresholds: dict[str, float]
    threshold_method: str
    normalisation: Normalisation
    before: str
    after: str
    before_date: Any
    after_date: Any
    builtup_index: str | None = None
    vegetation_index: str | None = None
    valid_share: float = float("nan")
    quantiles: dict[str, dict[str, float]] = field(default_factory=dict)
    extra_paths: dict[str, Path] = field(default_factory=dict)

    @property
    def indices(self) -> list[str]:
        """Names of the computed indices."""
        return list(self.paths)

    def read(self, index: str, window: Window | None = None) -> NDArray[np.float32]:
        """Read one index raster (or a window of it) as a 2-D float32 array."""
        with rasterio.open(self.paths[index]) as ds:
            return ds.read(1, window=window)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (thresholds, normalisation, files) for evidence."""
        return {
            "before": self.before, "after": self.after,
            "before_date": str(self.before_date), "after_date": str(self.after_date),
            "thresholds": {k: round(float(v), 6) for k, v in self.thresholds.items()},
            "threshold_method": self.threshold_method,
            "normalisation": self.normalisation.as_dict(),
            "rasters": {k: str(v) for k, v in self.paths.items()},
            "valid_share": round(float(self.valid_share), 4),
        }


@dataclass(frozen=True)
class _Plan:
    indices: tuple[str, ...]
    bands: tuple[str, ...]           # bands read from each date (union)
    mag: tuple[int, ...]             # positions in `bands` used by the magnitude
    red: int | None
    nir: int | None
    swir1: int | None
    visible: tuple[int, ...]


def _plan(stack: AlignedStack, before: int, after: int, indices: Sequence[str] | str,
          magnitude_bands: Sequence[str] | None) -> _Plan:
    bnames = stack.bands(before)
    anames = stack.bands(after)
    common = [b for b in bnames if b in anames]
    if not common:
        msg = (f"the two images share no band name (before: {', '.join(bnames)}; after: "
               f"{', '.join(anames)}); give both the same band names")
        raise ValidationError(msg)
    auto = indices == "auto"
    if auto:
        wanted = ["magnitude"]
        if band_role(common, "red") and band_role(common, "nir"):
            wanted.append("dndvi")
        if band_role(common, "swir1") and band_role(common, "nir"):
            wanted.append("dndbi")
        elif any(band_role(common, r) for r in ("red", "green", "blue")):
            wanted.append("dbright")
    else:
        wanted = [indices] if isinstance(indices, str) else list(indices)
        unknown = [i for i in wanted if i not in INDICES]
        if unknown:
            msg = f"unknown change index {unknown[0]!r}; use one of {', '.join(INDICES)}"
            raise ConfigError(msg)
    need: list[str] = []
    if "dndvi" in wanted:
        need += require_bands(common, ["nir", "red"], what="NDVI")
    if "dndbi" in wanted:
        need += require_bands(common, ["nir", "swir1"], what="NDBI")
    visible: list[str] = []
    if "dbright" in wanted:
        visible = [b for b in (band_role(common, r) for r in ("blue", "green", "red")) if b]
        if not visible:
            require_bands(common, ["red"], what="brightness change")
    if magnitude_bands is None:
        mag = [b for b in common if b.upper() not in ATMOSPHERIC_BANDS] or common
    else:
        mag = require_bands(common, magnitude_bands, what="change magnitude")
    ordered = [b for b in common if b in set(need) | set(visible) | set(mag)]
    pos = {b: i for i, b in enumerate(ordered)}
    return _Plan(
        indices=tuple(wanted),
        bands=tuple(ordered),
        mag=tuple(pos[b] for b in mag),
        red=pos.get(band_role(ordered, "red") or ""),
        nir=pos.get(band_role(ordered, "nir") or ""),
        swir1=pos.get(band_role(ordered, "swir1") or ""),
        visible=tuple(pos[b] for b in visible),
    )


_CODES = {"magnitude": 0, "dndvi": 1, "dndbi": 2, "dbright": 3}


@numba.njit(nogil=True, cache=True, error_model="numpy")
def _change_kernel(b: NDArray[np.float32], a: NDArray[np.float32], gain: NDArray[np.float32],
                   offset: NDArray[np.float32], scale: NDArray[np.float32],
                   mag: NDArray[np.int64], red: int, nir: int, swir: int,
                   vis: NDArray[np.int64], codes: NDArray[np.int64],
                   out: NDArray[np.float32]) -> None:
    """All indices of one ``(bands, h, w)`` block, row by row.

    Each step runs over a whole row (contiguous, branch-free: the compiler vectorises the
    float32 divisions), in the same float32 operations per pixel as a pixel-by-pixel loop;
    a pixel where any band of either date is NaN gets NaN in every index.
    """
    nb, h, w = b.shape
    nan = np.float32(np.nan)
    an = np.empty((nb, w), np.float32)
    ok = np.empty(w, np.bool_)
    acc = np.empty(w, np.float32)
    nmag = mag.size
    nvis = vis.size
    for i in range(h):
        for j in range(w):
            ok[j] = True
        for k in range(nb):
            g = gain[k]
            o = offset[k]
            for j in range(w):
                bv = b[k, i, j]
                av = a[k, i, j]
                ok[j] = ok[j] & ~(np.isnan(bv) | np.isnan(av))
                an[k, j] = av * g + o
        for c in range(codes.size):
            code = codes[c]
            if code == 0:  # magnitude: RMS of the per-band standardised differences
                for j in range(w):
                    acc[j] = np.float32(0.0)
                for m in mag:
                    s = scale[m]
                    for j in range(w):
                        z = (an[m, j] - b[m, i, j]) / s
                        acc[j] += z * z
                for j in range(w):
                    out[c, i, j] = np.sqrt(acc[j] / nmag) if ok[j] else nan
            elif code == 1 or code == 2:
                # NDVI: (nir - red) / (nir + red); NDBI: the same with swir, sign swapped
                p = red if code == 1 else swir
                for j in range(w):
                    bn = b[nir, i, j]
                    bp = b[p, i, j]
                    d0 = bn + bp
                    d1 = an[nir, j] + an[p, j]
                    i0 = (bn - bp) / d0
                    i1 = (an[nir, j] - an[p, j]) / d1
                    v = (i1 - i0) if code == 1 else (i0 - i1)
                    out[c, i, j] = v if (ok[j] and d0 != 0 and d1 != 0) else nan
            else:  # brightness: mean standardised change of the visible bands
                for j in range(w):
                    acc[j] = np.float32(0.0)
                for m in vis:
                    s = scale[m]
                    for j in range(w):
                        acc[j] += (an[m, j] - b[m, i, j]) / s
                for j in range(w):
                    out[c, i, j] = (acc[j] / nvis) if ok[j] else nan


def _indices_block(plan: _Plan, norm: Normalisation, b: NDArray[np.float32],
                   a: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
    """Index arrays of one block: ``b``, ``a`` are ``(bands, h, w)`` or ``(bands, n)``."""
    shape = b.shape[1:]
    b3 = np.ascontiguousarray(b.reshape(b.shape[0], 1, -1) if b.ndim == 2 else b, np.float32)
    a3 = np.ascontiguousarray(a.reshape(a.shape[0], 1, -1) if a.ndim == 2 else a, np.float32)
    codes = np.array([_CODES[k] for k in plan.indices], np.int64)
    out = np.empty((codes.size, *b3.shape[1:]), np.float32)
    _change_kernel(b3, a3, norm.gain.astype(np.float32), norm.offset.astype(np.float32),
                   norm.scale.astype(np.float32), np.array(plan.mag, np.int64),
                   -1 if plan.red is None else plan.red, -1 if plan.nir is None else plan.nir,
                   -1 if plan.swir1 is None else plan.swir1,
                   np.array(plan.visible, np.int64), codes, out)
    return {k: out[c].reshape(shape) for c, k in enumerate(plan.indices)}


def _thresholds(values: dict[str, NDArray[np.float32]], method: str,
                quantile: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    th: dict[str, float] = {}
    qs: dict[str, dict[str, float]] = {}
    for name, v in values.items():
        v = v[np.isfinite(v)]
        if v.size == 0:
            th[name] = float("nan")
            continue
        q = np.quantile(v, [0.5, 0.9, 0.95, 0.99])
        qs[name] = {"q50": float(q[0]), "q90": float(q[1]), "q95": float(q[2]),
                    "q99": float(q[3])}
        if method == "quantile":
            th[name] = float(np.quantile(v, quantile))
        elif name in SIGNED_INDICES:
            upper = v[v > q[0]]
            th[name] = otsu_threshold(upper) if upper.size > 10 else float(q[3])
        else:
            th[name] = otsu_threshold(v)
    return th, qs


def compute_change(
    stack: AlignedStack,
    out_dir: str | Path,
    *,
    before: int | str = 0,
    after: int | str = 1,
    indices: Sequence[str] | str = "auto",
    magnitude_bands: Sequence[str] | None = None,
    normalise: str = "pif",
    threshold: str = "otsu",
    quantile: float = 0.98,
    max_sample: int = _SAMPLE_CAP,
    compress: str | None = None,
    workers: int = 2,
    overwrite: bool = True,
    extra: Mapping[str, tuple[Any, ...]] | None = None,
    progress: ProgressFn | None = None,
) -> ChangeResult:
    """Compute change indices between two aligned dates, window by window.

    Parameters
    ----------
    stack : AlignedStack
        Both dates on one grid (:func:`~imagery.align.align`).
    out_dir : path-like
        Folder for the ``<index>.tif`` rasters (created).
    before, after : int or str
        Positions or ids of the two images in the stack.
    indices : "auto" or sequence of str
        Indices from :data:`INDICES`; ``"auto"`` = every index the bands allow.
    magnitude_bands : sequence of str, optional
        Bands (names or roles) of the change magnitude; default every shared band except
        Sentinel-2's atmospheric B01, B09, B10.
    normalise : {"pif", "meanstd", "none"}
        Radiometric normalisation (see :func:`fit_normalisation`).
    threshold : {"otsu", "quantile"}
        How the scene-level thresholds are chosen.
    quantile : float
        The quantile for ``threshold="quantile"``.
    max_sample : int
        Pixels sampled (evenly spread windows) to fit normalisation and thresholds.
    compress : str or None
        GeoTIFF compression of the index rasters (``zstd``, ``deflate`` …). Default none:
        the rasters are working files and compressing noisy float32 costs more time than
        the rest of the computation.
    workers : int
        Threads computing windows (reads and numpy release the GIL).
    overwrite : bool
        Replace existing index rasters.
    extra : mapping, optional
        More per-pixel outputs of the *before* image computed in the same pass (its
        windows are read once for everything): name → ``(bands, fn)`` or ``(bands, fn,
        dtype)``; ``fn`` gets the ``(len(bands), h, w)`` float32 block of those bands (names
        or roles), each band NaN where it is itself invalid, and returns an ``(h, w)`` array
        written to ``<out_dir>/<name>.tif`` (:attr:`ChangeResult.extra_paths`) as *dtype*:
        ``"float32"`` (default; nodata NaN) or ``"uint8"`` (nodata 255,
        :data:`EXTRA_NODATA`).
    progress : callable, optional
        ``progress(fraction, message)`` once per window.

    Returns
    -------
    ChangeResult

    Raises
    ------
    BandError
        An index was asked for that the bands do not allow; the message names the band.
    ValidationError
        No pixel is valid on both dates.
    """
    with gdal_env():
        return _compute_change(stack, out_dir, before=before, after=after, indices=indices,
                               magnitude_bands=magnitude_bands, normalise=normalise,
                               threshold=threshold, quantile=quantile, max_sample=max_sample,
                               compress=compress, workers=workers, overwrite=overwrite,
                               extra=extra, progress=progress)


def _compute_change(
    stack: AlignedStack,
    out_dir: str | Path,
    *,
    before: int | str,
    after: int | str,
    indices: Sequence[str] | str,
    magnitude_bands: Sequence[str] | None,
    normalise: str,
    threshold: str,
    quantile: float,
    max_sample: int,
    compress: str | None,
    workers: int,
    overwrite: bool,
    extra: Mapping[str, tuple[Any, ...]] | None,
    progress: ProgressFn | None,
) -> ChangeResult:
    bi, ai = stack.index(before), stack.index(after)
    plan = _plan(stack, bi, ai, indices, magnitude_bands)
    if threshold not in ("otsu", "quantile"):
        msg = f"unknown threshold method {threshold!r}; use 'otsu' or 'quantile'"
        raise ConfigError(msg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1. sample, normalisation, thresholds
    (sb, sa), n_valid, n_read = _sample(stack, images=(bi, ai),
                                        bands=(plan.bands, plan.bands),
                                        max_pixels=max_sample, seed=0)
    valid_share = n_valid / max(n_read, 1)
    if n_valid < 10:
        msg = (f"images {stack.ids[bi]!r} and {stack.ids[ai]!r} have only {n_valid} pixels "
               "valid on both dates (nodata, cloud or no overlap)")
        raise ValidationError(msg)
    norm = fit_normalisation(sb, sa, bands=plan.bands, method=normalise)
    log.info("normalisation (%s) from %d of %d sampled pixels: gains %s", normalise,
             sb.shape[1], n_read, np.round(norm.gain, 3).tolist())
    sample_idx = _indices_block(plan, norm, sb, sa)
    thresholds, qs = _thresholds(sample_idx, threshold, quantile)
    del sb, sa, sample_idx

    # 2. indices, window by window
    grid = stack.grid
    paths = {k: out_dir / f"{k}.tif" for k in plan.indices}
    # Extra outputs: their bands, taken from the index bands when all are among them.
    extras: dict[str, tuple[list[str], BlockFn, list[int] | None, str]] = {}
    for name, spec in (extra or {}).items():
        ebands, fn, dtype = (*spec, "float32") if len(spec) == 2 else spec
        if name in paths:
            msg = f"extra output {name!r} has the name of a change index"
            raise ConfigError(msg)
        if dtype not in EXTRA_NODATA:
            msg = (f"extra output {name!r}: dtype {dtype!r} is not one of "
                   f"{', '.join(EXTRA_NODATA)}")
            raise ConfigError(msg)
        names = require_bands(stack.bands(bi), list(ebands), what=f"extra output {name!r}")
        pos = [plan.bands.index(b) for b in names] if set(names) <= set(plan.bands) else None
        extras[name] = (names, fn, pos, dtype)
    extra_paths = {k: out_dir / f"{k}.tif" for k in extras}
    for p in [*paths.values(), *extra_paths.values()]:
        if p.exists() and not overwrite:
            msg = f"{p} exists; pass overwrite=True to replace it"
            raise ValidationError(msg)
    bs = stack.blocksize
    fprof = grid.profile(count=1, dtype="float32", nodata=float("nan"), blockxsize=bs,
                         blockysize=bs)
    if compress:
        fprof.update(compress=compress, predictor=3)
        if compress.lower() == "zstd":
            fprof["zstd_level"] = 1
    windows = list(stack.windows())

    def work(w: Window) -> tuple[Window, dict[str, NDArray[np.float32]]]:
        # Per-band NaN: the kernel blanks a pixel where any band of either date is NaN, as
        # the any-band rule of a plain read would, and the extras apply it to their bands.
        b = stack.read(w, image=bi, bands=plan.bands, per_band=True)
        a = stack.read(w, image=ai, bands=plan.bands, per_band=True)
        out = _indices_block(plan, norm, b, a)
        for name, (names, fn, pos, dtype) in extras.items():
            block = (b[pos] if pos is not None else
                     stack.read(w, image=bi, bands=names, per_band=True))
            out[name] = np.asarray(fn(block), dtype)
        return w, out

    outs = {k: rasterio.open(p, "w", **fprof) for k, p in paths.items()}
    for k, p in extra_paths.items():
        dtype = extras[k][3]
        outs[k] = rasterio.open(p, "w", **{**fprof, "dtype": dtype,
                                           "nodata": EXTRA_NODATA[dtype]})
    try:
        for k in outs:
            outs[k].set_band_description(1, k)
            if k in paths:
                outs[k].update_tags(threshold=str(thresholds[k]), before=stack.ids[bi],
                                    after=stack.ids[ai])
            else:
                outs[k].update_tags(image=stack.ids[bi])
        for n, (w, idx) in enumerate(_ordered_map(work, windows, workers), start=1):
            for k, v in idx.items():
                outs[k].write(v, 1, window=w)
            if progress is not None:
                progress(n / len(windows), "change indices")
    finally:
        for d in outs.values():
            d.close()

    e_b, e_a = stack.entries[bi], stack.entries[ai]
    builtup = "dndbi" if "dndbi" in plan.indices else (
        "dbright" if "dbright" in plan.indices else None)
    return ChangeResult(
        grid=grid, paths=paths, thresholds=thresholds,
        threshold_method=threshold, normalisation=norm, before=e_b.image_id,
        after=e_a.image_id, before_date=e_b.acquired_on, after_date=e_a.acquired_on,
        builtup_index=builtup, vegetation_index="dndvi" if "dndvi" in plan.indices else None,
        valid_share=valid_share, quantiles=qs, extra_paths=extra_paths,
    )


def _ordered_map(fn: Any, items: Sequence[Any], workers: int) -> Iterator[Any]:
    """``map`` in order over a thread pool with a bounded number of items in flight."""
    if workers <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[Any] = []
        it = iter(items)
        for item in it:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()
