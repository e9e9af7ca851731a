"""Compare imagery across a requisition notice date and score every claim.

:func:`compare` is the whole requisition check on inputs already read:

1. **Claims, projects, persons** are validated; a row that cannot be used goes to the
   rejects ledger with the reason (no id, no or invalid geometry, unknown item, unknown
   project, no notice date, a claim outside every image …), so that for every input
   ``rows in = rows used + rows rejected``.
2. **Pairs of dates.** For each claim, the project's notice (freeze) date picks the last
   image *before* it and the first image *after* it among the images covering the claim
   (an image acquired on the notice date itself is used for neither), unless a
   ``before``/``after`` pair is given explicitly (then used for every claim, and checked
   against each notice date).
3. **Per pair**: the two dates are aligned on the before image's grid
   (:func:`imagery.align.align`), change indices computed (:func:`imagery.change.compute_change`:
   change magnitude, ΔNDVI, built-up/brightness change) and, in the same pass over the
   windows, the before image classified into a built-up mask (as :func:`builtup_mask`
   does), then every claim summarised with exactextract
   (:func:`imagery.stats.parcel_stats`, coverage-weighted). Claims with too few valid pixels
   are *inconclusive*: kept, counted, never scored by the image rules.
4. **Rules** (:mod:`imagery.rules`) run on the per-claim table with the thresholds in force
   (:func:`geosup.rules.resolve_thresholds`); hits become alerts
   (:func:`geosup.alerts.make_alerts`, subject ``claim``) with before/after PNG chips of the
   claim (:func:`imagery.chips.write_chips`, same stretch on both dates) referenced in their
   evidence. The ``score`` (higher = more likely changed) orders the review queue;
   :attr:`CompareResult.ranking` holds it for every claim used.

:func:`read_inputs` reads the claim, project and persons files with
:func:`geosup.io.read_table`, and :func:`write_run` writes a comparison into one store run;
the ``geosup imagery compare`` command and the demo share both.

Examples
--------
>>> import datetime, tempfile, pathlib
>>> import numpy as np, rasterio, geopandas as gpd, shapely
>>> from imagery.catalog import ImageEntry
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> rng = np.random.default_rng(0)
>>> base = rng.normal([[[60]], [[80]], [[50]], [[160]]], 4, (4, 128, 128))
>>> after = base + rng.normal(0, 4, base.shape)
>>> after[:, 20:40, 20:40] = [[[200]], [[200]], [[195]], [[190]]]      # a new roof
>>> for name, data, day in (("t0", base, "2024-01-10"), ("t1", after, "2024-06-10")):
...     with rasterio.open(tmp / f"{name}.tif", "w", driver="GTiff", width=128, height=128,
...                        count=4, dtype="uint8", crs="EPSG:32650", tiled=True,
...                        blockxsize=64, blockysize=64, photometric="RGB",
...                        transform=rasterio.Affine(0.5, 0, 500000, 0, -0.5, 3500064)) as d:
...         d.update_tags(TIFFTAG_DATETIME=day)
...         d.write(np.clip(data, 1, 255).astype("uint8"))
>>> images = [ImageEntry.from_path(tmp / f"{n}.tif") for n in ("t0", "t1")]
>>> x0, y0 = 500000, 3500064
>>> claims = gpd.GeoDataFrame({
...     "claim_id": ["new", "old"], "project_id": ["P1", "P1"], "claimant_id": ["A", "B"],
...     "item": ["building", "building"], "claimed_area_m2": [100.0, 0.0],
...     "amount": [9e4, 0.0]}, crs="EPSG:32650", geometry=[
...     shapely.box(x0 + 9, y0 - 21, x0 + 21, y0 - 9),
...     shapely.box(x0 + 40, y0 - 52, x0 + 52, y0 - 40)])
>>> result = compare(images, claims, notice_date="2024-03-15", workdir=tmp / "work")
>>> sorted(zip(result.alerts["rule"], result.alerts["subject_id"]))
[('requisition.built_after_notice', 'new'), ('requisition.claimed_not_seen', 'new')]
>>> result.counts["claims"]
{'rows_in': 2, 'rows_used': 2, 'rows_rejected': 0}
>>> sorted(json.loads(result.alerts["evidence"][0]))[:3]
['after_date', 'after_image', 'before_date']
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from rasterio.warp import transform_bounds

from geosup.alerts import empty_alerts, make_alerts
from geosup.config import Settings
from geosup.crs import metric_crs_for
from geosup.errors import ConfigError, CRSError, SchemaError, ValidationError
from geosup.io import (
    LEDGER_COLUMNS,
    PERSONS_READ,
    ROW_COLUMN,
    SourceRows,
    read_table,
    restore_raw,
)
from geosup.rules import REGISTRY, Rule, load_builtin_rules, resolve_thresholds
from imagery.align import AlignedStack, ExtentError, ProgressFn, align, gdal_env
from imagery.catalog import BandError, Catalog, ImageEntry, band_role, require_bands
from imagery.change import ChangeResult, compute_change, ndbi, ndvi
from imagery.chips import write_chips
from imagery.rules import (
    IMAGE_RULES,
    ITEMS,
    REQUISITION_RULES,
    TABLE_COLUMNS,
    RuleContext,
    normalize_items,
)
from imagery.stats import parcel_stats

__all__ = [
    "INPUTS",
    "CompareResult",
    "RequisitionInputs",
    "builtup_mask",
    "combined_counts",
    "compare",
    "read_inputs",
    "select_rules",
    "write_run",
]

log = logging.getLogger(__name__)

#: The table inputs of the check, in the order they are read and reported.
INPUTS: tuple[str, ...] = ("claims", "projects", "persons")

#: Rules that need the red and NIR bands (ΔNDVI, the built-up mask of the before image).
_NEEDS_NDVI: dict[str, str] = {
    "requisition.planted_after_notice": "ΔNDVI",
    "requisition.claimed_not_seen": "the built-up mask",
}

_READ_OPTIONS: dict[str, dict[str, Any]] = {
    "claims": {
        "required": ("claim_id", "item", "geometry"),
        "id_column": "claim_id",
        "numeric_columns": ("claimed_area_m2", "amount"),
    },
    "projects": {
        "required": ("project_id", "notice_date"),
        "id_column": "project_id",
        "time_columns": ("notice_date",),
        "geometry_optional": True,
    },
    "persons": dict(PERSONS_READ),
}


# ---------------------------------------------------------------------------------------------
# Result
# ---------------------------------------------------------------------------------------------


@dataclass
class CompareResult:
    """What :func:`compare` returns.

    Attributes
    ----------
    alerts : GeoDataFrame
        The alert table (:data:`geosup.alerts.ALERT_COLUMNS`, EPSG:4326), subject ``claim``.
    rejects : DataFrame
        Rows that could not be used (``source, row, key, reason, raw``).
    counts : dict
        Rows in / used / rejected per input (``claims``, ``projects``, ``persons``).
    stats : DataFrame
        The per-claim table the rules read (:data:`imagery.rules.TABLE_COLUMNS` plus the raw
        per-index statistics), indexed by ``claim_id``, one row per claim used.
    ranking : DataFrame
        The review queue, one row per claim used, best first: ``rank, claim_id, project_id,
        item, alert_score`` (highest alert score of the claim, 0 without alert),
        ``change_score`` (the change evidence of every conclusive claim, 0–1, NaN when
        inconclusive), ``rules``, ``alerts``, ``inconclusive``, ``reason``.
    claims : GeoDataFrame
        The claims used (metric CRS) with their stats, for the store's ``claims`` layer.
    pairs : list of dict
        Per pair of dates compared: images, dates, claims, change summary.
    thresholds : dict
        Per rule code, the thresholds it ran with.
    inconclusive : int
        Claims used but not scored by the image rules (too few valid pixels).
    """

    alerts: gpd.GeoDataFrame
    rejects: pd.DataFrame
    counts: dict[str, dict[str, int]]
    stats: pd.DataFrame
    ranking: pd.DataFrame
    claims: gpd.GeoDataFrame | None = None
    pairs: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    inconclusive: int = 0

    def summary(self) -> pd.DataFrame:
        """Alerts per rule (``rule, alerts``)."""
        if not len(self.alerts):
            return pd.DataFrame({"rule": pd.Series([], dtype=object),
                                 "alerts": pd.Series([], dtype="int64")})
        return self.alerts.groupby("rule").size().rename("alerts").reset_index()


@dataclass
class RequisitionInputs:
    """Inputs read by :func:`read_inputs`: frames, counts, rejects ledger rows."""

    frames: dict[str, pd.DataFrame]
    counts: dict[str, dict[str, int]]
    rejects: pd.DataFrame
    sources: dict[str, str] = field(default_factory=dict)
    #: Each input's rows as its source holds them (for the raw values of later rejects).
    source_rows: dict[str, SourceRows] = field(default_factory=dict)

    def get(self, name: str) -> pd.DataFrame | None:
        """The frame of an input, or None when it was not given."""
        return self.frames.get(name)


# ---------------------------------------------------------------------------------------------
# Rejects
# ---------------------------------------------------------------------------------------------


class _Ledger:
    """Rejected rows of in-memory inputs, with their reasons (blocks, not per-row calls)."""

    def __init__(self) -> None:
        self.blocks: list[pd.DataFrame] = []

    def add(self, source: str, frame: pd.DataFrame, mask: np.ndarray,
            reason: str | Sequence[str] | np.ndarray, *, key: str | None) -> None:
        mask = np.asarray(mask, bool)
        if not mask.any():
            return
        rows = frame.loc[mask]
        if ROW_COLUMN in rows.columns:
            numbers = pd.to_numeric(rows[ROW_COLUMN], errors="coerce").to_numpy()
        else:
            numbers = np.flatnonzero(mask) + 1
        keys = (rows[key].astype("string").fillna("").to_numpy() if key and key in rows.columns
                else np.full(len(rows), ""))
        attrs = rows.drop(columns=[c for c in rows.columns
                                   if c == ROW_COLUMN or c == getattr(rows, "_geometry_column_name",
                                                                      None)],
                          errors="ignore")
        attrs = pd.DataFrame(attrs).astype("string")
        raw = [json.dumps({k: v for k, v in rec.items() if v is not None and v is not pd.NA},
                          ensure_ascii=False, default=str)
               for rec in attrs.astype(object).where(attrs.notna(), None).to_dict("records")]
        reasons = ([reason] * len(rows) if isinstance(reason, str) else list(reason))
        self.blocks.append(pd.DataFrame({"source": source, "row": numbers, "key": keys,
                                         "reason": reasons, "raw": raw}))

    def frame(self) -> pd.DataFrame:
        if not self.blocks:
            return pd.DataFrame({c: pd.Series([], dtype=object) for c in LEDGER_COLUMNS})
        out = pd.concat(self.blocks, ignore_index=True)
        out["row"] = pd.to_numeric(out["row"], errors="coerce").astype("Int64")
        return out.loc[:, list(LEDGER_COLUMNS)]


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _local_date(values: Any, timezone: str) -> pd.Series:
    """Naive midnight timestamps of the local calendar dates (tz-aware values converted)."""
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(s):
        out = s
    else:
        out = pd.to_datetime(s.astype("string"), errors="coerce", format="mixed")
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_convert(timezone).dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[ns]")


def _missing_text(values: pd.Series) -> np.ndarray:
    text = values.astype("string").str.strip()
    return (text.isna() | (text == "")).to_numpy(dtype=bool)


def _prepare_projects(projects: pd.DataFrame | None, ledger: _Ledger,
                      timezone: str) -> tuple[pd.DataFrame | None, dict[str, int]]:
    if projects is None:
        return None, {}
    n = len(projects)
    for col in ("project_id", "notice_date"):
        if col not in projects.columns:
            msg = (f"projects have no {col!r} column (columns: "
                   f"{', '.join(map(str, projects.columns))})")
            raise SchemaError(msg)
    frame = pd.DataFrame(projects).copy()
    frame["project_id"] = frame["project_id"].astype("string").str.strip()
    bad = _missing_text(frame["project_id"])
    ledger.add("projects", frame, bad, "no project_id", key=None)
    keep = ~bad
    notice = _local_date(frame["notice_date"], timezone)
    bad = keep & notice.isna().to_numpy()
    ledger.add("projects", frame, bad, "no usable notice_date", key="project_id")
    keep &= ~bad
    dup = keep & frame["project_id"].where(keep).duplicated(keep="first").to_numpy()
    ledger.add("projects", frame, dup, "duplicate project_id", key="project_id")
    keep &= ~dup
    out = pd.DataFrame({"project_id": frame.loc[keep, "project_id"].to_numpy(),
                        "notice_date": notice[keep].to_numpy()})
    if isinstance(projects, gpd.GeoDataFrame) and projects.geometry.name in projects.columns:
        out = gpd.GeoDataFrame(out, geometry=projects.geometry.to_numpy()[keep],
                               crs=projects.crs)
    return out, {"rows_in": n, "rows_used": int(keep.sum()), "rows_rejected": n - int(keep.sum())}


def _prepare_persons(persons: pd.DataFrame | None, ledger: _Ledger,
                     timezone: str) -> tuple[pd.DataFrame | None, dict[str, int]]:
    if persons is None:
        return None, {}
    n = len(persons)
    if "person_id" not in persons.columns:
        msg = ("persons have no 'person_id' column (columns: "
               f"{', '.join(map(str, persons.columns))})")
        raise SchemaError(msg)
    frame = pd.DataFrame(persons).copy()
    frame["person_id"] = frame["person_id"].astype("string").str.strip()
    bad = _missing_text(frame["person_id"])
    ledger.add("persons", frame, bad, "no person_id", key=None)
    keep = ~bad
    for col in ("died_on", "moved_in_on", "moved_out_on"):
        if col not in frame.columns:
            continue
        parsed = _local_date(frame[col], timezone)
        given = ~_missing_text(frame[col]) if not pd.api.types.is_datetime64_any_dtype(
            frame[col]) else frame[col].notna().to_numpy()
        bad = keep & given & parsed.isna().to_numpy()
        ledger.add("persons", frame, bad, f"unparseable date in column {col!r}",
                   key="person_id")
        keep &= ~bad
        frame[col] = parsed
    dup = keep & frame["person_id"].where(keep).duplicated(keep="first").to_numpy()
    ledger.add("persons", frame, dup, "duplicate person_id", key="person_id")
    keep &= ~dup
    out = frame.loc[keep].drop(columns=[ROW_COLUMN], errors="ignore").reset_index(drop=True)
    return out, {"rows_in": n, "rows_used": int(keep.sum()), "rows_rejected": n - int(keep.sum())}


def _prepare_claims(claims: gpd.GeoDataFrame, ledger: _Ledger, *,
                    projects: pd.DataFrame | None) -> tuple[gpd.GeoDataFrame, np.ndarray]:
    """Validated claims (all rows) and the mask of rows still usable."""
    if not isinstance(claims, gpd.GeoDataFrame):
        msg = "claims must be a GeoDataFrame (with claim polygons)"
        raise SchemaError(msg)
    if claims.crs is None:
        msg = ("claims have no coordinate reference system; set the CRS their coordinates "
               "are in (GeoDataFrame.set_crs, or crs= of read_table) before comparing")
        raise CRSError(msg)
    for col in ("claim_id", "item"):
        if col not in claims.columns:
            msg = (f"claims have no {col!r} column (columns: "
                   f"{', '.join(map(str, claims.columns))}); map it with --map claims.{col}=…")
            raise SchemaError(msg)
    frame = claims.copy()
    frame["claim_id"] = frame["claim_id"].astype("string").str.strip()
    for col in ("project_id", "claimant_id"):
        if col in frame.columns:
            frame[col] = frame[col].astype("string").str.strip()
        else:
            frame[col] = pd.Series(pd.NA, index=frame.index, dtype="string")
    for col in ("claimed_area_m2", "amount"):
        frame[col] = (pd.to_numeric(frame[col], errors="coerce").astype("float64")
                      if col in frame.columns else np.nan)
    keep = np.ones(len(frame), bool)

    bad = _missing_text(frame["claim_id"])
    ledger.add("claims", frame, bad, "no claim_id", key=None)
    keep &= ~bad
    dup = keep & frame["claim_id"].where(keep).duplicated(keep="first").to_numpy()
    ledger.add("claims", frame, dup, "duplicate claim_id", key="claim_id")
    keep &= ~dup

    geoms = frame.geometry.to_numpy()
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    bad = keep & empty
    ledger.add("claims", frame, bad, "no geometry", key="claim_id")
    keep &= ~bad
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6))
    bad = keep & ~polygonal
    ledger.add("claims", frame, bad, "geometry is not a polygon", key="claim_id")
    keep &= ~bad
    invalid = keep & ~shapely.is_valid(geoms)
    if invalid.any():
        reasons = [f"invalid geometry: {r}" for r in shapely.is_valid_reason(geoms[invalid])]
        ledger.add("claims", frame, invalid, reasons, key="claim_id")
        keep &= ~invalid

    items = normalize_items(frame["item"])
    bad = keep & items.isna().to_numpy()
    if bad.any():
        reasons = [f"unknown item {v!r}; use one of: {', '.join(ITEMS)}"
                   for v in frame.loc[bad, "item"].astype("string").fillna("")]
        ledger.add("claims", frame, bad, reasons, key="claim_id")
        keep &= ~bad
    frame["item"] = items

    bad = keep & (frame["claimed_area_m2"] < 0).to_numpy()
    ledger.add("claims", frame, bad, "claimed_area_m2 is negative", key="claim_id")
    keep &= ~bad

    if projects is not None:
        known = set(projects["project_id"].astype(str))
        pid = frame["project_id"]
        unknown = keep & ~pid.isin(list(known)).fillna(False).to_numpy(dtype=bool)
        if unknown.any():
            reasons = [f"unknown project {v!r} (not in the projects)" if v else "no project_id"
                       for v in pid[unknown].fillna("")]
            ledger.add("claims", frame, unknown, reasons, key="claim_id")
            keep &= ~unknown
    return frame, keep


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def _entries(images: Catalog | Sequence[ImageEntry] | ImageEntry) -> Catalog:
    if isinstance(images, ImageEntry):
        images = [images]
    cat = images if isinstance(images, Catalog) else Catalog(list(images))
    if not len(cat):
        msg = "compare needs at least two images (before and after the notice date)"
        raise ValidationError(msg)
    return cat


def _footprint(entry: ImageEntry, crs: Any) -> Any:
    """The image's bounds as a polygon in ``crs`` (densified)."""
    path = entry.paths[0]
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                msg = (f"raster {path} has no coordinate reference system; assign one "
                       "(e.g. gdal_edit.py -a_srs EPSG:xxxx)")
                raise CRSError(msg)
            left, bottom, right, top = transform_bounds(ds.crs, crs, *ds.bounds,
                                                        densify_pts=21)
    except rasterio.errors.RasterioIOError as exc:
        from geosup.errors import DataSourceError

        msg = f"cannot open raster {path}: {exc}"
        raise DataSourceError(msg) from None
    return shapely.box(left, bottom, right, top)


def _resolve_image(cat: Catalog, image: ImageEntry | str | None) -> ImageEntry | None:
    if image is None:
        return None
    if isinstance(image, ImageEntry):
        return image
    try:
        return cat[image]
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def _check_overlap(entries: Sequence[ImageEntry], crs: Any) -> None:
    """Raise ExtentError when no two of the images overlap (nothing can be compared)."""
    if len(entries) < 2:
        msg = "compare needs at least two images (before and after the notice date)"
        raise ValidationError(msg)
    feet = [_footprint(e, crs) for e in entries]
    for i in range(len(feet)):
        for j in range(i + 1, len(feet)):
            if shapely.intersects(feet[i], feet[j]) and not shapely.touches(feet[i], feet[j]):
                return
    desc = "; ".join(f"{e.image_id} {tuple(round(v, 6) for v in shapely.bounds(f))}"
                     for e, f in zip(entries, feet, strict=True))
    msg = (f"the images do not overlap, so no date can be compared with another "
           f"(bounds in {_crs_name(crs)}: {desc})")
    raise ExtentError(msg)


def _crs_name(crs: Any) -> str:
    """A short name of a CRS for messages."""
    try:
        import pyproj

        c = pyproj.CRS.from_user_input(crs)
        epsg = c.to_epsg()
        return f"EPSG:{epsg}" if epsg else c.name
    except Exception:  # noqa: BLE001 - only for a message
        return str(crs)


def _assign_pairs(cat: Catalog, geoms: np.ndarray, crs: Any, notice: pd.Series,
                  explicit: tuple[ImageEntry, ImageEntry] | None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per claim: the before and after image positions in ``cat`` (-1: none) and a reason."""
    n = len(geoms)
    entries = list(cat)
    if explicit is not None:
        entries = [explicit[0], explicit[1]]
    cover = np.zeros((n, len(entries)), bool)
    for j, e in enumerate(entries):
        cover[:, j] = shapely.intersects(geoms, _footprint(e, crs))
    dates = np.array([np.datetime64(e.acquired_on, "ns") for e in entries])
    nd = notice.to_numpy(dtype="datetime64[ns]")
    before = np.full(n, -1)
    after = np.full(n, -1)
    reason = np.full(n, "", dtype=object)
    anywhere = cover.any(axis=1)
    if explicit is not None:
        has = ~np.isnat(nd)
        b_ok = ~has | (dates[0] < nd)
        a_ok = ~has | (dates[1] > nd)
        before[:] = 0
        after[:] = 1
        txt = pd.Series(nd).dt.strftime("%Y-%m-%d").to_numpy()
        reason[~a_ok] = [f"the after image ({explicit[1].acquired_on}) is not after the notice "
                         f"date {t}" for t in txt[~a_ok]]
        reason[~b_ok] = [f"the before image ({explicit[0].acquired_on}) is not before the "
                         f"notice date {t}" for t in txt[~b_ok]]
        reason[(reason == "") & ~(cover[:, 0] & cover[:, 1]) & anywhere] = (
            "outside the images compared")
        reason[~anywhere] = "outside every image"
        before[reason != ""] = -1
        after[reason != ""] = -1
        return before, after, reason
    # Latest covering image before the notice date; earliest covering image after it.
    is_before = cover & (dates[None, :] < nd[:, None])
    is_after = cover & (dates[None, :] > nd[:, None])
    idx = np.arange(len(entries))
    before = np.where(is_before.any(axis=1), np.max(np.where(is_before, idx, -1), axis=1), -1)
    after = np.where(is_after.any(axis=1),
                     np.min(np.where(is_after, idx, len(entries)), axis=1), -1)
    txt = pd.Series(nd).dt.strftime("%Y-%m-%d").fillna("").to_numpy()
    reason[after < 0] = [f"no image after the notice date {t} covers the claim"
                         for t in txt[after < 0]]
    reason[before < 0] = [f"no image before the notice date {t} covers the claim"
                          for t in txt[before < 0]]
    reason[np.isnat(nd)] = ("no notice date (give projects with notice_date, or the before "
                            "and after images explicitly)")
    reason[~anywhere] = "outside every image"
    before[reason != ""] = -1
    after[reason != ""] = -1
    return before, after, reason


def builtup_mask(stack: AlignedStack, dst: str | os.PathLike[str], *, image: int | str = 0,
                 ndvi_max: float = 0.2, water_ndvi: float = -0.1, ndbi_min: float = 0.0,
                 blocksize: int | None = None) -> Path:
    """Classify one image into built-up (1.0) / not (0.0) / invalid (NaN), window by window.

    A pixel is built-up when its NDVI is below ``ndvi_max`` (not vegetated) and at or above
    ``water_ndvi`` (not water), and, when the image has a SWIR band (Sentinel-2 B11), its
    NDBI is above ``ndbi_min``. Written as a float32 GeoTIFF on the stack's grid, so that the
    coverage-weighted mean over a claim is its built-up share.

    Raises
    ------
    BandError
        The image lacks the red or NIR band.
    """
    i = stack.index(image)
    bands, classify, _ = _builtup_spec(stack.bands(i), ndvi_max=ndvi_max,
                                       water_ndvi=water_ndvi, ndbi_min=ndbi_min)
    grid = stack.grid
    bs = blocksize or stack.blocksize
    prof = grid.profile(count=1, dtype="float32", nodata=float("nan"), blockxsize=bs,
                        blockysize=bs, compress="zstd", zstd_level=1, predictor=3)
    dst = Path(dst)
    with gdal_env(), rasterio.open(dst, "w", **prof) as out:
        for w in grid.windows(bs):
            res = classify(stack.read(w, image=i, bands=bands, per_band=True)).astype(
                np.float32)
            res[res == 255] = np.nan
            out.write(res, 1, window=w)
    return dst


def _builtup_spec(names: Sequence[str], *, ndvi_max: float, water_ndvi: float,
                  ndbi_min: float) -> tuple[list[str], Any, str]:
    """The bands the built-up classification reads, its per-block function and dtype.

    The function takes a ``(bands, h, w)`` block whose bands are NaN where each is invalid
    and returns uint8 1 (built-up) / 0 / 255 (any of its bands invalid): a quarter of the
    bytes of float32 to write and read back, the same coverage-weighted means.
    """
    red, nir = require_bands(names, ["red", "nir"], what="the built-up mask")
    swir = band_role(names, "swir1")
    bands = [red, nir] + ([swir] if swir else [])

    def classify(data: np.ndarray) -> np.ndarray:
        v = ndvi(data[0], data[1])
        built = (v < ndvi_max) & (v >= water_ndvi)
        invalid = ~np.isfinite(v)
        if swir:
            built &= ndbi(data[2], data[1]) > ndbi_min
            invalid |= np.isnan(data[2])
        res = built.astype(np.uint8)
        res[invalid] = 255
        return res

    return bands, classify, "uint8"


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def select_rules(rules: Sequence[str] | None = None) -> list[Rule]:
    """The requisition rules to run: all, or those matching codes (``requisition.built_*``)."""
    load_builtin_rules()
    codes = None
    if rules:
        codes = [c if c.startswith("requisition.") else f"requisition.{c}" for c in rules]
    selected = REGISTRY.select(domain="requisition", codes=codes)
    if rules and not selected:
        msg = f"no requisition rule matches {', '.join(rules)}"
        raise ConfigError(msg)
    return [r for r in selected if r.code in REQUISITION_RULES] + [
        r for r in selected if r.code not in REQUISITION_RULES]


def _pair_dir(before: ImageEntry, after: ImageEntry) -> str:
    import re

    text = f"{before.image_id}__{after.image_id}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120]


def _change_indices(stack: AlignedStack, rules: Sequence[Rule]) -> list[str]:
    """Indices compare needs; raises BandError naming the band a selected rule lacks."""
    codes = {r.code for r in rules}
    bands = [b for b in stack.bands(0) if b in set(stack.bands(1))]
    wanted = ["magnitude"]
    needers = [c for c in _NEEDS_NDVI if c in codes]
    has_ndvi = bool(band_role(bands, "red") and band_role(bands, "nir"))
    if needers and not has_ndvi:
        try:
            require_bands(bands, ["red", "nir"], what="NDVI")
        except BandError as exc:
            msg = (f"images {stack.ids[0]!r} and {stack.ids[1]!r}: {exc} (needed by "
                   f"{', '.join(needers)}; run only other rules with --rule)")
            raise BandError(msg) from None
    if has_ndvi:
        wanted.append("dndvi")
    if band_role(bands, "swir1") and band_role(bands, "nir"):
        wanted.append("dndbi")
    elif any(band_role(bands, r) for r in ("red", "green", "blue")):
        wanted.append("dbright")
    return wanted


def _table(stats: pd.DataFrame, change: ChangeResult, quantile_suffix: str) -> pd.DataFrame:
    """Generic rule columns from one pair's parcel_stats."""
    out = pd.DataFrame(index=stats.index)
    th = change.thresholds

    def pick(col: str) -> pd.Series:
        return stats[col] if col in stats.columns else pd.Series(np.nan, index=stats.index)

    out["change_share"] = pick("magnitude_above")
    out["change_mean"] = pick("magnitude_mean")
    out["change_q90"] = pick(f"magnitude_{quantile_suffix}")
    out["change_threshold"] = th.get("magnitude", np.nan)
    b = change.builtup_index
    out["builtup_index"] = b or ""
    out["builtup_share"] = pick(f"{b}_above") if b else np.nan
    out["builtup_mean"] = pick(f"{b}_mean") if b else np.nan
    out["builtup_threshold"] = th.get(b, np.nan) if b else np.nan
    v = change.vegetation_index
    out["veg_gain_share"] = pick(f"{v}_above") if v else np.nan
    out["veg_gain_mean"] = pick(f"{v}_mean") if v else np.nan
    out["veg_gain_q90"] = pick(f"{v}_{quantile_suffix}") if v else np.nan
    out["veg_gain_threshold"] = th.get(v, np.nan) if v else np.nan
    out["seen_builtup_share"] = pick("seen_builtup_mean")
    return out


# ---------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------


def compare(
    images: Catalog | Sequence[ImageEntry],
    claims: gpd.GeoDataFrame,
    *,
    projects: pd.DataFrame | None = None,
    persons: pd.DataFrame | None = None,
    settings: Settings | None = None,
    workdir: str | os.PathLike[str],
    chips_dir: str | os.PathLike[str] | None = None,
    before: ImageEntry | str | None = None,
    after: ImageEntry | str | None = None,
    notice_date: dt.date | str | None = None,
    rules: Sequence[str] | None = None,
    min_pixels: float | None = None,
    min_valid_coverage: float | None = None,
    max_chips: int | None = None,
    blocksize: int = 512,
    chip_relative_to: str | os.PathLike[str] | None = None,
    run_id: str | None = None,
    progress: ProgressFn | None = None,
    source_rows: Mapping[str, SourceRows] | None = None,
) -> CompareResult:
    """Compare the images before and after each notice date and score every claim.

    Parameters
    ----------
    images : Catalog or sequence of ImageEntry
        The images, with their acquisition dates.
    claims : GeoDataFrame
        ``claim_id, item`` and polygons (any CRS), optionally ``project_id, claimant_id,
        claimed_area_m2, amount`` and ``notice_date``. ``item`` is one of
        :data:`imagery.rules.ITEMS` (English or Chinese labels, see
        :data:`~imagery.rules.ITEM_ALIASES`).
    projects : DataFrame, optional
        ``project_id, notice_date`` (geometry optional): the notice date of each claim's
        project. Without it, a ``notice_date`` column of the claims or the ``notice_date``
        argument is used.
    persons : DataFrame, optional
        The persons registry (``person_id`` = ``claimant_id``, ``died_on``,
        ``moved_in_on`` …).
    settings : Settings, optional
        Thresholds (``rules.<code>.<name>``), ``timezone`` and ``imagery.min_pixels``,
        ``imagery.min_valid_coverage``, ``imagery.max_chips``.
    workdir : path-like
        Folder of the aligned rasters, change indices and (by default) chips, one sub-folder
        per pair of dates.
    chips_dir : path-like, optional
        Folder of the PNG chips (default ``workdir/chips``).
    before, after : ImageEntry or str, optional
        An explicit pair (entries or image ids) used for every claim instead of picking
        images by notice date; a claim whose notice date they do not straddle is rejected.
    notice_date : date or str, optional
        The notice date of claims that have none from their project.
    rules : sequence of str, optional
        Codes of the rules to run (``requisition.`` may be left out); default all.
    min_pixels, min_valid_coverage : float, optional
        Below these a claim is inconclusive (default 4 pixels and 0.5).
    max_chips : int, optional
        At most this many claims get image chips, highest scores first (default 2000).
    blocksize : int
        Window size of the raster work.
    chip_relative_to : path-like, optional
        Write chip paths in the evidence relative to this folder (default absolute).
    run_id : str, optional
        The store run, recorded in the alerts.
    progress : callable, optional
        ``progress(fraction, message)``.
    source_rows : mapping of str to SourceRows, optional
        The inputs' rows as their sources hold them (:attr:`RequisitionInputs.source_rows`):
        the rows compare rejects are recorded with the source's own column names and values
        (:func:`geosup.io.restore_raw`).

    Returns
    -------
    CompareResult

    Raises
    ------
    CRSError
        The claims or a raster have no CRS.
    ExtentError
        The before and after images of a pair do not overlap.
    BandError
        A selected rule needs a band the images lack (the message names it).
    SchemaError
        An input lacks a required column.
    """
    settings = settings or Settings()
    timezone = str(settings.get("timezone") or "Asia/Shanghai")
    min_pixels = float(settings.get("imagery.min_pixels", 4.0) if min_pixels is None
                       else min_pixels)
    min_valid_coverage = float(settings.get("imagery.min_valid_coverage", 0.5)
                               if min_valid_coverage is None else min_valid_coverage)
    max_chips = int(settings.get("imagery.max_chips", 2000) if max_chips is None else max_chips)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    chips_root = Path(chips_dir) if chips_dir is not None else workdir / "chips"
    selected = select_rules(rules)
    thresholds = {r.code: resolve_thresholds(r, settings) for r in selected}
    cat = _entries(images)
    explicit = None
    b_entry, a_entry = _resolve_image(cat, before), _resolve_image(cat, after)
    if (b_entry is None) != (a_entry is None):
        msg = "give both the before and the after image, or neither"
        raise ConfigError(msg)
    if b_entry is not None and a_entry is not None:
        if not b_entry.acquired_on < a_entry.acquired_on:
            msg = (f"the before image {b_entry.image_id!r} ({b_entry.acquired_on}) is not older "
                   f"than the after image {a_entry.image_id!r} ({a_entry.acquired_on})")
            raise ValidationError(msg)
        explicit = (b_entry, a_entry)

    def report(fraction: float, message: str) -> None:
        if progress is not None:
            progress(min(1.0, max(0.0, fraction)), message)

    ledger = _Ledger()
    proj, proj_counts = _prepare_projects(projects, ledger, timezone)
    pers, pers_counts = _prepare_persons(persons, ledger, timezone)
    frame, keep = _prepare_claims(claims, ledger, projects=proj)

    # Notice date of each claim: its project's, its own column, or the argument.
    notice = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns]")
    if proj is not None:
        lookup = dict(zip(proj["project_id"].astype(str), proj["notice_date"], strict=True))
        notice = pd.Series(frame["project_id"].astype(str).map(lookup).to_numpy(),
                           index=frame.index).astype("datetime64[ns]")
    if "notice_date" in frame.columns:
        own = _local_date(frame["notice_date"], timezone)
        notice = notice.fillna(own) if notice.isna().any() else notice
    if notice_date is not None:
        notice = notice.fillna(pd.Timestamp(str(notice_date)).normalize())
    frame["notice_date"] = notice.astype("datetime64[ns]")

    # Pairs of images per claim.
    geoms = frame.geometry.to_numpy()
    _check_overlap(list(explicit) if explicit is not None else list(cat), frame.crs)
    bpos = np.full(len(frame), -1)
    apos = np.full(len(frame), -1)
    if keep.any():
        b, a, why = _assign_pairs(cat, geoms[keep], frame.crs, frame["notice_date"][keep],
                                  explicit)
        pos = np.flatnonzero(keep)
        bad = np.zeros(len(frame), bool)
        bad[pos[why != ""]] = True
        reasons = np.full(len(frame), "", dtype=object)
        reasons[pos] = why
        ledger.add("claims", frame, bad, reasons[bad], key="claim_id")
        keep &= ~bad
        bpos[pos], apos[pos] = b, a
    entries = list(explicit) if explicit is not None else list(cat)
    used = frame.loc[keep].copy()
    used["_b"], used["_a"] = bpos[keep], apos[keep]
    metric = metric_crs_for(used if len(used) else frame) if len(frame) else None
    used_m = used.to_crs(metric) if len(used) else used
    used["area_m2"] = shapely.area(used_m.geometry.to_numpy()) if len(used) else np.nan

    # Per pair: align, change, built-up mask, stats.
    pair_keys = sorted({(int(x), int(y)) for x, y in zip(used["_b"], used["_a"], strict=True)},
                       key=lambda p: (entries[p[0]].acquired_on, entries[p[1]].acquired_on, p))
    tables: list[pd.DataFrame] = []
    pairs: list[dict[str, Any]] = []
    stacks: list[tuple[AlignedStack, ChangeResult, pd.Index]] = []
    cns = thresholds.get("requisition.claimed_not_seen")
    q = 0.9
    qsuffix = f"q{round(q * 100):d}"
    n_pairs = max(len(pair_keys), 1)
    try:
        for k, (ib, ia) in enumerate(pair_keys):
            e_b, e_a = entries[ib], entries[ia]
            sub = used.loc[(used["_b"] == ib) & (used["_a"] == ia)]
            root = workdir / _pair_dir(e_b, e_a)
            base = k / n_pairs

            def part(lo: float, hi: float, base: float = base) -> ProgressFn:
                return lambda f, m: report(base + (lo + (hi - lo) * f) / n_pairs, m)

            log.info("comparing %s (%s) with %s (%s): %d claims", e_b.image_id,
                     e_b.acquired_on, e_a.image_id, e_a.acquired_on, len(sub))
            stack = align([e_b, e_a], workdir=root / "aligned", blocksize=blocksize,
                          progress=part(0.0, 0.3))
            stacks.append((stack, None, sub.index))  # type: ignore[arg-type]
            indices = _change_indices(stack, selected)
            # The built-up mask of the before image is computed in the change pass, from
            # the same windows (read and decoded once).
            extra = None
            if cns is not None:
                extra = {"seen_builtup": _builtup_spec(
                    stack.bands(0), ndvi_max=float(cns["ndvi_max"]),
                    water_ndvi=float(cns["water_ndvi"]), ndbi_min=float(cns["ndbi_min"]))}
            report(base + 0.3 / n_pairs, "change indices")
            change = compute_change(stack, root / "change", indices=indices, extra=extra,
                                    progress=part(0.3, 0.75))
            paths = dict(change.paths)
            paths.update(change.extra_paths)
            report(base + 0.8 / n_pairs, "per-claim statistics")
            st = parcel_stats(sub[["claim_id", "geometry"]], dataclasses.replace(change,
                              paths=paths), id_column="claim_id", quantile=q,
                              min_pixels=min_pixels, min_valid_coverage=min_valid_coverage)
            stacks[-1] = (stack, change, sub.index)
            gen = _table(st, change, qsuffix)
            gen["before_id"], gen["after_id"] = e_b.image_id, e_a.image_id
            gen["before_date"] = pd.Timestamp(e_b.acquired_on)
            gen["after_date"] = pd.Timestamp(e_a.acquired_on)
            raw = st.drop(columns=[c for c in st.columns if c in gen.columns])
            tables.append(pd.concat([gen, raw], axis=1))
            pairs.append({"before": e_b.image_id, "after": e_a.image_id,
                          "before_date": str(e_b.acquired_on), "after_date": str(e_a.acquired_on),
                          "claims": len(sub), "inconclusive": int(st["inconclusive"].sum()),
                          "change": change.as_dict()})
            report((k + 0.9) / n_pairs, "per-claim statistics")

        # The claims table.
        attrs = used[["claim_id", "project_id", "claimant_id", "item", "claimed_area_m2",
                      "amount", "notice_date", "area_m2"]].set_index("claim_id", drop=False)
        if tables:
            per = pd.concat(tables)
            table = attrs.join(per, how="left")
        else:
            table = attrs.copy()
        for col in TABLE_COLUMNS:
            if col not in table.columns:
                table[col] = np.nan
        table["inconclusive"] = table["inconclusive"].fillna(True).astype(bool)
        table["reason"] = table["reason"].astype("string").fillna("")
        table["seen_builtup_m2"] = table["seen_builtup_share"] * table["area_m2"]
        for col in ("before_date", "after_date", "notice_date"):
            table[col] = pd.to_datetime(table[col]).astype("datetime64[ns]")
        table.index.name = "claim_id"
        table = table.loc[:, list(TABLE_COLUMNS) + [c for c in table.columns
                                                     if c not in TABLE_COLUMNS]]

        # Rules.
        report(0.92, "rules")
        context = RuleContext(persons=pers, timezone=timezone)
        hits_list = []
        rule_input = table.reset_index(drop=True)
        for r in selected:
            hits = r(rule_input, context, **thresholds[r.code])
            log.info("%s: %d hit(s)", r.code, len(hits))
            if len(hits):
                hits_list.append(hits)
        hits = (pd.concat(hits_list, ignore_index=True) if hits_list else
                pd.DataFrame(columns=["rule", "subject_id", "score", "evidence"]))

        # Chips for the claims with image alerts, best first.
        report(0.94, "image chips")
        if len(hits):
            img = hits.loc[hits["rule"].isin(IMAGE_RULES)]
            best = (img.groupby("subject_id")["score"].max().sort_values(ascending=False)
                    .head(max_chips))
            chips_frames = []
            chosen = set(best.index)
            if len(best) < img["subject_id"].nunique():
                log.warning("image chips for the %d highest-scored of %d claims with image "
                            "alerts (imagery.max_chips)", len(best), img["subject_id"].nunique())
            for stack, change, idx in stacks:
                sub = used.loc[idx]
                sub = sub.loc[sub["claim_id"].isin(list(chosen))]
                if not len(sub):
                    continue
                folder = chips_root / _pair_dir(*stack.entries)
                chips_frames.append(write_chips(
                    stack, sub[["claim_id", "geometry"]], folder,
                    normalisation=change.normalisation if change is not None else None,
                    relative_to=chip_relative_to))
            if chips_frames:
                chips = pd.concat(chips_frames)
                has = hits["subject_id"].isin(list(chips.index)) & hits["rule"].isin(
                    IMAGE_RULES)
                new_ev = []
                for ev, cid, flag in zip(hits["evidence"], hits["subject_id"], has,
                                         strict=True):
                    if flag:
                        ev = {**ev, **chips.loc[cid].to_dict()}
                    new_ev.append(ev)
                hits["evidence"] = new_ev
    finally:
        for stack, _, _ in stacks:
            stack.close()
    report(0.97, "alerts")

    # Alerts.
    if len(hits):
        geom_by_id = gpd.GeoSeries(used.geometry.to_numpy(), index=used["claim_id"].to_numpy(),
                                   crs=used.crs)
        hg = gpd.GeoDataFrame(hits, geometry=geom_by_id.loc[hits["subject_id"]].to_numpy(),
                              crs=used.crs)
        alerts = make_alerts(hg, run_id=run_id)
    else:
        alerts = empty_alerts()

    # Ranking.
    ranking = _ranking(table, alerts)

    rejects = restore_raw(ledger.frame(), source_rows)
    n_claims = len(frame)
    counts = {"claims": {"rows_in": n_claims, "rows_used": int(keep.sum()),
                         "rows_rejected": n_claims - int(keep.sum())}}
    if proj_counts:
        counts["projects"] = proj_counts
    if pers_counts:
        counts["persons"] = pers_counts
    for name, c in counts.items():
        got = int((rejects["source"] == name).sum())
        if c["rows_rejected"] != got or c["rows_in"] != c["rows_used"] + c["rows_rejected"]:
            msg = f"{name}: {c} does not match the {got} rejected row(s) in the ledger"
            raise AssertionError(msg)
    stats_cols = [c for c in table.columns if c not in ("claim_id",)]
    layer = gpd.GeoDataFrame(
        used[["claim_id", "project_id", "claimant_id", "item", "claimed_area_m2", "amount"]]
        .reset_index(drop=True),
        geometry=used_m.geometry.to_numpy() if len(used) else [], crs=metric)
    if len(used):
        extra = table.loc[layer["claim_id"], ["notice_date", "before_id", "after_id",
                                             "inconclusive", "reason", "valid_coverage",
                                             "change_share", "veg_gain_mean",
                                             "seen_builtup_m2"]].reset_index(drop=True)
        layer = pd.concat([layer, extra], axis=1)
        layer = gpd.GeoDataFrame(layer, geometry="geometry", crs=metric)
    n_inc = int(table["inconclusive"].sum())
    report(1.0, "done")
    log.info("compare: %d claims used (%d inconclusive), %d rejected, %d alerts",
             int(keep.sum()), n_inc, n_claims - int(keep.sum()), len(alerts))
    return CompareResult(alerts=alerts, rejects=rejects, counts=counts,
                         stats=table.loc[:, stats_cols], ranking=ranking, claims=layer,
                         pairs=pairs, thresholds=thresholds, inconclusive=n_inc)


def _ranking(table: pd.DataFrame, alerts: gpd.GeoDataFrame) -> pd.DataFrame:
    q90 = pd.to_numeric(table["change_q90"], errors="coerce")
    th = pd.to_numeric(table["change_threshold"], errors="coerce")
    x = (q90 / th).clip(lower=0)
    change_score = (x / (1 + x)).where(~table["inconclusive"].to_numpy(dtype=bool))
    out = pd.DataFrame({"claim_id": table.index.astype(str),
                        "project_id": table["project_id"].to_numpy(),
                        "item": table["item"].to_numpy(),
                        "change_score": change_score.to_numpy(dtype="float64"),
                        "inconclusive": table["inconclusive"].to_numpy(dtype=bool),
                        "reason": table["reason"].to_numpy()})
    if len(alerts):
        per = alerts.groupby("subject_id").agg(
            alert_score=("score", "max"), alerts=("rule", "size"),
            rules=("rule", lambda s: ", ".join(sorted(s))))
        out = out.merge(per, left_on="claim_id", right_index=True, how="left")
    else:
        out["alert_score"], out["alerts"], out["rules"] = np.nan, 0, ""
    out["alert_score"] = out["alert_score"].fillna(0.0).astype("float64")
    out["alerts"] = out["alerts"].fillna(0).astype("int64")
    out["rules"] = out["rules"].fillna("").astype(str)
    out = out.sort_values(["alert_score", "change_score", "claim_id"],
                          ascending=[False, False, True], na_position="last")
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out.reset_index(drop=True)[["rank", "claim_id", "project_id", "item", "alert_score",
                                       "change_score", "rules", "alerts", "inconclusive",
                                       "reason"]]


# ---------------------------------------------------------------------------------------------
# Files in, store out
# ---------------------------------------------------------------------------------------------


def read_inputs(
    paths: Mapping[str, str | os.PathLike[str] | None],
    *,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    crs: Any = None,
    timezone: str = "Asia/Shanghai",
    units: Mapping[str, Mapping[str, str]] | None = None,
    crs_hint: str | None = None,
) -> RequisitionInputs:
    """Read the claims, projects and persons files with :func:`geosup.io.read_table`.

    Parameters
    ----------
    paths : mapping
        Input name (:data:`INPUTS`) -> file or ``postgresql://`` URL; ``claims`` is required.
    columns : mapping, optional
        Per input, the column mapping canonical name -> source column.
    crs : CRS-like or mapping, optional
        The CRS of layers that carry none (a Shapefile without ``.prj``, a CSV with WKT
        geometry); a layer with its own CRS keeps it. A mapping gives it per input, with
        ``"*"`` for every other input.
    timezone : str
        The zone of naive dates.
    units : mapping, optional
        Per input, canonical column -> the unit the source uses
        (``{"claims": {"claimed_area_m2": "mu"}}``), converted on reading.
    crs_hint : str, optional
        How the user declares a missing CRS, with ``{input}`` for the input's name (e.g.
        ``"--input-crs {input}=EPSG:<code>"``), named in the error.

    Raises
    ------
    DataSourceError, SchemaError, CRSError
        An input cannot be used at all.
    """
    unknown = sorted(set(paths) - set(INPUTS))
    if unknown:
        msg = f"unknown requisition input(s) {', '.join(unknown)}; use: {', '.join(INPUTS)}"
        raise ConfigError(msg)
    if not paths.get("claims"):
        msg = "the requisition check needs --claims"
        raise ConfigError(msg)
    columns = columns or {}
    units = units or {}
    frames: dict[str, pd.DataFrame] = {}
    counts: dict[str, dict[str, int]] = {}
    rejects: list[pd.DataFrame] = []
    sources: dict[str, str] = {}
    originals: dict[str, SourceRows] = {}
    for name in INPUTS:
        source = paths.get(name)
        if not source:
            continue
        options = dict(_READ_OPTIONS[name])
        options.update(columns=dict(columns.get(name, {})) or None, tz=timezone,
                       units=dict(units.get(name, {})) or None,
                       crs_hint=crs_hint.format(input=name) if crs_hint else None)
        declared = crs.get(name, crs.get("*")) if isinstance(crs, Mapping) else crs
        result = read_table(source, name=name, default_crs=declared, **options)
        frames[name] = result.frame
        sources[name] = str(source)
        if result.source_rows is not None:
            originals[name] = result.source_rows
        counts[name] = {"rows_in": result.rows_in, "rows_used": result.rows_used,
                        "rows_rejected": result.rows_rejected}
        rejects.append(result.ledger.frame())
    ledger = (pd.concat(rejects, ignore_index=True) if rejects
              else pd.DataFrame(columns=list(LEDGER_COLUMNS)))
    return RequisitionInputs(frames=frames, counts=counts,
                             rejects=ledger.loc[:, list(LEDGER_COLUMNS)], sources=sources,
                             source_rows=originals)


def combined_counts(inputs: RequisitionInputs | None,
                    result: CompareResult) -> dict[str, dict[str, int]]:
    """Rows in / used / rejected per input, from reading and from compare's validation."""
    out: dict[str, dict[str, int]] = {}
    names = list(inputs.counts) if inputs is not None else list(result.counts)
    for name in names:
        c = inputs.counts[name] if inputs is not None else result.counts[name]
        dropped = int(result.counts.get(name, {}).get("rows_rejected", 0))
        if inputs is None:
            out[name] = dict(c)
            continue
        out[name] = {"rows_in": int(c["rows_in"]), "rows_used": int(c["rows_used"]) - dropped,
                     "rows_rejected": int(c["rows_rejected"]) + dropped}
    return out


def _layer_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as ISO text and flags as integers, so that every store backend takes them."""
    out = frame.drop(columns=[ROW_COLUMN], errors="ignore").copy()
    for col in out.columns:
        if col == getattr(out, "_geometry_column_name", None):
            continue
        s = out[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            text = s.dt.strftime("%Y-%m-%d").astype(object)
            out[col] = text.where(s.notna(), None)
        elif pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("int64")
    return out


def write_run(run: Any, result: CompareResult, *, inputs: RequisitionInputs | None = None,
              images: Catalog | Sequence[ImageEntry] | None = None) -> dict[str, Any]:
    """Write one comparison into an open store run.

    Writes the alerts (a re-run updates them and keeps their review status), the rejects
    (reading and compare), rows in / used / rejected per input, and the layers ``claims``
    (the claims used with their statistics, metric CRS), ``projects``, ``persons`` and
    ``images`` (the catalog) when given.

    Returns
    -------
    dict
        ``alerts`` (inserted/updated), ``rejects`` (rows written), ``inputs`` (counts).
    """
    upsert = run.write_alerts(result.alerts)
    parts = [result.rejects]
    if inputs is not None and len(inputs.rejects):
        parts.insert(0, inputs.rejects)
    rejects = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(
        len(p) for p in parts) else result.rejects
    if inputs is not None:  # every reject with the source's own names and values
        rejects = restore_raw(rejects, inputs.source_rows)
    n_rejects = run.add_rejects(rejects.loc[:, list(LEDGER_COLUMNS)])
    counts = combined_counts(inputs, result)
    for name, c in counts.items():
        run.record_input(name, rows_in=c["rows_in"], rows_used=c["rows_used"],
                         rows_rejected=c["rows_rejected"])
    run.counts["inconclusive"] = int(result.inconclusive)
    if result.claims is not None and len(result.claims):
        run.write_layer("claims", _layer_frame(result.claims), id_column="claim_id")
    if inputs is not None:
        projects = inputs.get("projects")
        if projects is not None and len(projects):
            frame = _layer_frame(projects)
            if isinstance(frame, gpd.GeoDataFrame) and frame.crs is None:
                frame = pd.DataFrame(frame.drop(columns=frame.geometry.name))
            run.write_layer("projects", frame.reset_index(drop=True), id_column="project_id")
        persons = inputs.get("persons")
        if persons is not None and len(persons):
            run.write_layer("persons", _layer_frame(persons).reset_index(drop=True),
                            id_column="person_id")
    if images is not None:
        cat = images if isinstance(images, Catalog) else Catalog(list(images))
        run.write_layer("images", cat.frame().astype({"alpha_band": "object"}),
                        id_column="image_id")
    return {"alerts": {"inserted": upsert.inserted, "updated": upsert.updated},
            "rejects": n_rejects, "inputs": counts}

