"""The image catalog: rasters with their acquisition date, sensor, bands and valid-data mask.

An image is either one multi-band raster (an orthophoto: RGB, RGBN, …) or a *band set*: one
single-band file per band, as Sentinel-2 tiles and the OSCD dataset ship them
(``imgs_1/*_B02.tif`` …). Each image carries

* ``acquired_on``: the acquisition date, read from the raster's metadata
  (``ACQUISITIONDATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``, GDAL's ``IMAGERY`` domain,
  ``TIFFTAG_DATETIME`` …) or given explicitly in the catalog. It is **never** guessed from a
  file name: Sentinel-2 file names carry the product *processing* time, which can be a year
  after the acquisition. No date found and none given is an error.
* ``sensor`` and ``bands``: band names in stack order. Sentinel-2 bands keep their names
  (``B01`` … ``B12``, ``B8A``); orthophotos use ``red``, ``green``, ``blue``, ``nir``.
  :func:`band_role` maps a role (``red``, ``nir``, ``swir1`` …) to the band that plays it.
* the valid-data mask: the ``nodata`` value, an ``alpha_band`` and an optional ``cloud_mask``
  raster (non-zero = cloud, i.e. invalid).

A catalog file is CSV or TOML with one row / ``[[images]]`` table per image; see
:meth:`Catalog.read`. :func:`ingest_cog` converts archive imagery to a tiled Cloud-Optimised
GeoTIFF with overviews (``geosup imagery ingest``).

Examples
--------
>>> import datetime, tempfile, pathlib
>>> import numpy as np, rasterio
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> with rasterio.open(tmp / "ortho.tif", "w", driver="GTiff", width=8, height=8, count=3,
...                    dtype="uint8", crs="EPSG:32650", nodata=0,
...                    transform=rasterio.Affine(10, 0, 0, 0, -10, 80)) as dst:
...     dst.update_tags(ACQUISITIONDATE="2024-05-01")
...     dst.write(np.ones((3, 8, 8), "uint8"))
>>> cat = Catalog()
>>> entry = cat.register(tmp / "ortho.tif")
>>> entry.acquired_on, entry.bands, entry.nodata
(datetime.date(2024, 5, 1), ('red', 'green', 'blue'), 0.0)
>>> band_role(entry.bands, "red")
'red'
>>> cat.last_before(datetime.date(2024, 6, 1)).image_id
'ortho'
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import logging
import re
import tempfile
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Resampling

from geosup.errors import CRSError, DataSourceError, SchemaError, ValidationError

__all__ = [
    "BAND_PRESETS",
    "BAND_ROLES",
    "ROLE_LABELS",
    "SENTINEL2_BANDS",
    "SENTINEL2_RESOLUTION_M",
    "BandError",
    "Catalog",
    "DateError",
    "ImageEntry",
    "band_role",
    "ingest_cog",
    "read_acquisition_date",
    "require_bands",
]

log = logging.getLogger(__name__)

PathArg = str | PathLike[str]

#: Sentinel-2 MSI band names in the usual order.
SENTINEL2_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)

#: Native ground sampling distance of each Sentinel-2 band, in metres.
SENTINEL2_RESOLUTION_M: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20, "B08": 10,
    "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20,
}

#: Band names of the usual sensors, by sensor (lower case).
BAND_PRESETS: dict[str, tuple[str, ...]] = {
    "rgb": ("red", "green", "blue"),
    "rgbn": ("red", "green", "blue", "nir"),
    "sentinel-2": SENTINEL2_BANDS,
}

#: Band names that can play each spectral role, best first (case-insensitive match).
BAND_ROLES: dict[str, tuple[str, ...]] = {
    "blue": ("blue", "b", "B02"),
    "green": ("green", "g", "B03"),
    "red": ("red", "r", "B04"),
    "nir": ("nir", "n", "B08", "B8A"),
    "swir1": ("swir1", "swir16", "B11"),
    "swir2": ("swir2", "swir22", "B12"),
}

#: How a role is named in messages: the role and its Sentinel-2 band.
ROLE_LABELS: dict[str, str] = {
    "blue": "'blue' (B02)",
    "green": "'green' (B03)",
    "red": "'red' (B04)",
    "nir": "'nir' (B08)",
    "swir1": "'swir1' (B11)",
    "swir2": "'swir2' (B12)",
}

#: Metadata keys that hold an acquisition date, best first (any metadata domain).
DATE_TAGS: tuple[str, ...] = (
    "ACQUISITIONDATETIME",
    "ACQUISITIONDATE",
    "ACQUISITION_DATE",
    "DATE_ACQUIRED",
    "SENSING_TIME",
    "SENSING_DATE",
    "DATATAKE_1_DATATAKE_SENSING_START",
    "PRODUCT_START_TIME",
    "TIFFTAG_DATETIME",
)

_S2_BAND_IN_NAME = re.compile(r"(?:^|[_\-.])(B(?:0[1-9]|1[0-2]|8A))$", re.IGNORECASE)
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


class BandError(SchemaError):
    """An image lacks a band that an index or operation needs."""


class DateError(ValidationError):
    """An image has no usable acquisition date."""


def _parse_date(value: Any) -> dt.date:
    """Parse a date from metadata or a catalog cell (``2024-05-01``, ``2024:05:01 …``)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    m = re.match(r"^(\d{4})[-:/.]?(\d{2})[-:/.]?(\d{2})(?:$|[T\s_])", text)
    if not m:
        msg = f"cannot read a date from {text!r} (expected YYYY-MM-DD)"
        raise DateError(msg)
    try:
        return dt.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        msg = f"cannot read a date from {text!r}: {exc}"
        raise DateError(msg) from None


def read_acquisition_date(path: PathArg) -> dt.date | None:
    """Return the acquisition date recorded in a raster's metadata, or ``None``.

    Looks through the default and ``IMAGERY`` metadata domains for the keys in
    :data:`DATE_TAGS` (``ACQUISITIONDATE``, ``DATE_ACQUIRED``, ``SENSING_TIME``, …,
    ``TIFFTAG_DATETIME`` last). The file name is never used.

    Parameters
    ----------
    path : path-like
        A raster GDAL can open.

    Returns
    -------
    datetime.date or None

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, rasterio
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "S2_20991231T000000.tif"
    >>> with rasterio.open(p, "w", driver="GTiff", width=2, height=2, count=1, dtype="uint8",
    ...                    crs="EPSG:4326", transform=rasterio.Affine(1, 0, 0, 0, -1, 2)) as d:
    ...     d.update_tags(TIFFTAG_DATETIME="2021:07:04 10:30:00")
    ...     d.write(np.zeros((1, 2, 2), "uint8"))
    >>> read_acquisition_date(p)
    datetime.date(2021, 7, 4)
    """
    try:
        with rasterio.open(path) as src:
            tags: dict[str, str] = {}
            for domain in (None, "IMAGERY"):
                try:
                    found = src.tags(ns=domain) if domain else src.tags()
                except Exception:  # noqa: BLE001 - a missing domain is not an error
                    found = {}
                for k, v in found.items():
                    tags.setdefault(k.upper(), v)
            if src.count:
                for k, v in src.tags(1).items():
                    tags.setdefault(k.upper(), v)
    except rasterio.errors.RasterioIOError as exc:
        msg = f"cannot open raster {path}: {exc}"
        raise DataSourceError(msg) from None
    for key in DATE_TAGS:
        if tags.get(key):
            try:
                return _parse_date(tags[key])
            except DateError:
                log.warning("%s: metadata %s=%r is not a date; ignored", path, key, tags[key])
    return None


def band_role(bands: Sequence[str], role: str) -> str | None:
    """Return the name of the band in *bands* that plays *role*, or ``None``.

    Parameters
    ----------
    bands : sequence of str
        Band names of an image.
    role : str
        ``blue``, ``green``, ``red``, ``nir``, ``swir1``, ``swir2`` or a band name itself.

    Examples
    --------
    >>> band_role(("B02", "B03", "B04", "B08"), "nir")
    'B08'
    >>> band_role(("red", "green", "blue"), "nir") is None
    True
    """
    lower = {b.lower(): b for b in bands}
    for candidate in BAND_ROLES.get(role.lower(), (role,)):
        if candidate.lower() in lower:
            return lower[candidate.lower()]
    return lower.get(role.lower())


def require_bands(bands: Sequence[str], roles: Iterable[str], *, what: str) -> list[str]:
    """Return the band names playing *roles*; raise :class:`BandError` naming the first missing.

    Parameters
    ----------
    bands : sequence of str
        Band names of the image.
    roles : iterable of str
        Roles (``red``, ``nir`` …) or band names needed.
    what : str
        What needs them, for the message (``"NDVI"``).

    Examples
    --------
    >>> require_bands(("B02",), ["red", "nir"], what="NDVI")
    Traceback (most recent call last):
    ...
    imagery.catalog.BandError: NDVI needs band 'red' (B04); image has: B02
    """
    out = []
    for role in roles:
        name = band_role(bands, role)
        if name is None:
            label = ROLE_LABELS.get(role.lower(), repr(role))
            msg = f"{what} needs band {label}; image has: {', '.join(bands) or 'no bands'}"
            raise BandError(msg)
        out.append(name)
    return out


def _s2_band_from_name(path: Path) -> str | None:
    m = _S2_BAND_IN_NAME.search(path.stem)
    return m[1].upper() if m else None


def _band_files(src: PathArg | Sequence[PathArg]) -> tuple[Path, ...]:
    if isinstance(src, str | PathLike):
        p = Path(src)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in _RASTER_SUFFIXES)
            if not files:
                msg = f"no raster files in folder {p}"
                raise DataSourceError(msg)
            return tuple(files)
        return (p,)
    files = tuple(Path(s) for s in src)
    if not files:
        msg = "an image needs at least one raster file"
        raise DataSourceError(msg)
    return files


@contextlib.contextmanager
def _quiet_georef() -> Iterator[None]:
    """Silence rasterio's NotGeoreferencedWarning: :func:`_check_crs` raises the clear error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        yield


def _check_crs(path: Path, src: rasterio.DatasetReader) -> None:
    if src.crs is None:
        msg = (f"raster {path} has no coordinate reference system; assign one "
               "(e.g. gdal_edit.py -a_srs EPSG:xxxx) before registering it")
        raise CRSError(msg)


@dataclass(frozen=True)
class ImageEntry:
    """One image of the catalog: its files, acquisition date, sensor, bands and mask.

    Build it with :meth:`from_path` (reads CRS, bands, nodata and date from the files) or
    :meth:`Catalog.register`; the constructor does no I/O.

    Attributes
    ----------
    paths : tuple of Path
        One multi-band raster, or one single-band raster per band (a band set).
    acquired_on : datetime.date
        Acquisition date.
    bands : tuple of str
        Band names in stack order (``red, green, blue``; ``B02, B03 …``). For a band set,
        ``bands[i]`` is the band of ``paths[i]``; for one file, of its band ``i + 1``
        (the alpha band excluded).
    sensor : str
        ``rgb``, ``rgbn``, ``sentinel-2`` or any label.
    nodata : float or None
        Value marking invalid pixels (``None``: no nodata value; then only alpha and cloud
        mask invalidate pixels).
    alpha_band : int or None
        1-based index of the alpha band in a single-file image (0 = invalid).
    cloud_mask : Path or None
        A raster, any grid, non-zero = cloud (invalid); warped with nearest neighbour.
    image_id : str
        Identifier used in evidence and file names (defaults to the file or folder stem).
    """

    paths: tuple[Path, ...]
    acquired_on: dt.date
    bands: tuple[str, ...]
    sensor: str = "unknown"
    nodata: float | None = None
    alpha_band: int | None = None
    cloud_mask: Path | None = None
    image_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(Path(p) for p in self.paths))
        object.__setattr__(self, "bands", tuple(str(b) for b in self.bands))
        if self.cloud_mask is not None:
            object.__setattr__(self, "cloud_mask", Path(self.cloud_mask))
        if not isinstance(self.acquired_on, dt.date) or isinstance(self.acquired_on,
                                                                   dt.datetime):
            object.__setattr__(self, "acquired_on", _parse_date(self.acquired_on))
        if not self.paths:
            msg = "an image needs at least one raster file"
            raise DataSourceError(msg)
        if len(self.paths) > 1 and len(self.paths) != len(self.bands):
            msg = (f"band set of {len(self.paths)} files but {len(self.bands)} band names "
                   f"({', '.join(self.bands)})")
            raise SchemaError(msg)
        if len(set(self.bands)) != len(self.bands):
            msg = f"duplicate band names: {', '.join(self.bands)}"
            raise SchemaError(msg)
        if not self.image_id:
            stem = self.paths[0].stem if len(self.paths) == 1 else self.paths[0].parent.name
            object.__setattr__(self, "image_id", stem)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_path(
        cls,
        src: PathArg | Sequence[PathArg],
        *,
        acquired_on: dt.date | str | None = None,
        sensor: str | None = None,
        bands: Sequence[str] | str | None = None,
        nodata: float | None = None,
        alpha_band: int | None = None,
        cloud_mask: PathArg | None = None,
        image_id: str | None = None,
    ) -> ImageEntry:
        """Describe an image from its file(s), reading what the metadata says.

        Parameters
        ----------
        src : path-like or sequence of path-like
            One multi-band raster; a folder of single-band rasters (a band set) or a list
            of them. A band set's band names come from ``bands`` or from a Sentinel-2 suffix
            of each file name (``…_B8A.tif``) — a band name, never a date.
        acquired_on : date or str, optional
            Acquisition date; overrides the metadata. Required when the metadata has none.
        sensor : str, optional
            ``rgb``, ``rgbn``, ``sentinel-2`` or free text; inferred when omitted.
        bands : sequence of str or str, optional
            Band names in stack order (a string is split on commas/spaces) or a preset
            name from :data:`BAND_PRESETS`. Default: the band descriptions, the Sentinel-2
            suffixes, or RGB / RGBN by band count.
        nodata : float, optional
            Overrides the files' nodata value.
        alpha_band : int, optional
            1-based alpha band; default: the band whose colour interpretation is alpha.
        cloud_mask : path-like, optional
            Cloud mask raster (non-zero = cloud).
        image_id : str, optional
            Identifier; default the file stem (or folder name for a band set).

        Raises
        ------
        CRSError
            A file has no CRS.
        DateError
            No acquisition date in the metadata and none given.
        DataSourceError
            A file cannot be opened.
        """
        files = _band_files(src)
        infos = []
        for f in files:
            try:
                with _quiet_georef(), rasterio.open(f) as ds:
                    _check_crs(f, ds)
                    infos.append((ds.count, ds.descriptions, ds.colorinterp, ds.nodatavals,
                                  ds.dtypes))
            except rasterio.errors.RasterioIOError as exc:
                msg = f"cannot open raster {f}: {exc}"
                raise DataSourceError(msg) from None

        if isinstance(bands, str):
            bands = BAND_PRESETS.get(bands.lower()) or tuple(
                b for b in re.split(r"[,\s;]+", bands) if b)

        if len(files) > 1:
            for f, info in zip(files, infos, strict=True):
                if info[0] != 1:
                    msg = f"band set file {f} has {info[0]} bands; expected one band per file"
                    raise SchemaError(msg)
            if bands is None:
                names = [_s2_band_from_name(f) for f in files]
                if any(n is None for n in names):
                    missing = [f.name for f, n in zip(files, names, strict=True) if n is None]
                    msg = (f"cannot tell the band of {', '.join(missing)} from its name; give "
                           "bands= explicitly")
                    raise SchemaError(msg)
                # Keep the usual Sentinel-2 order.
                order = sorted(range(len(files)), key=lambda i: SENTINEL2_BANDS.index(names[i])
                               if names[i] in SENTINEL2_BANDS else 99)
                files = tuple(files[i] for i in order)
                infos = [infos[i] for i in order]
                bands = tuple(names[i] for i in order)
                sensor = sensor or "sentinel-2"
            file_nodata = infos[0][3][0]
            alpha = None
        else:
            count, descriptions, colorinterp, nodatavals, _ = infos[0]
            alpha = alpha_band
            if alpha is None:
                alphas = [i + 1 for i, ci in enumerate(colorinterp) if ci == ColorInterp.alpha]
                alpha = alphas[0] if alphas else None
            n_data = count - (1 if alpha else 0)
            if bands is None:
                desc = [d for i, d in enumerate(descriptions) if i + 1 != alpha]
                if all(desc) and len(desc) == n_data:
                    bands = tuple(desc)
                elif n_data == 3:
                    bands = BAND_PRESETS["rgb"]
                elif n_data == 4:
                    bands = BAND_PRESETS["rgbn"]
                elif n_data == 13:
                    bands = SENTINEL2_BANDS
                else:
                    bands = tuple(f"band{i + 1}" for i in range(n_data))
            if len(bands) != n_data:
                msg = (f"{files[0]} has {n_data} data bands but {len(bands)} band names were "
                       f"given ({', '.join(bands)})")
                raise SchemaError(msg)
            file_nodata = next((v for i, v in enumerate(nodatavals)
                                if i + 1 != alpha and v is not None), None)

        if sensor is None:
            low = tuple(b.lower() for b in bands)
            sensor = next((k for k, v in BAND_PRESETS.items()
                           if tuple(x.lower() for x in v) == low), "unknown")

        if acquired_on is None:
            dates = {d for d in (read_acquisition_date(f) for f in files) if d is not None}
            if len(dates) > 1:
                msg = (f"files of one image disagree on the acquisition date: "
                       f"{', '.join(sorted(map(str, dates)))}; give acquired_on explicitly")
                raise DateError(msg)
            if not dates:
                where = files[0] if len(files) == 1 else files[0].parent
                msg = (f"no acquisition date in the metadata of {where}; give acquired_on in "
                       "the catalog (dates are never taken from file names, which often carry "
                       "a processing time)")
                raise DateError(msg)
            acquired_on = dates.pop()

        nd = nodata if nodata is not None else file_nodata
        return cls(
            paths=files,
            acquired_on=_parse_date(acquired_on),
            bands=tuple(bands),
            sensor=sensor,
            nodata=None if nd is None else float(nd),
            alpha_band=alpha,
            cloud_mask=Path(cloud_mask) if cloud_mask is not None else None,
            image_id=image_id or "",
        )

    # ------------------------------------------------------------------ helpers
    @property
    def is_band_set(self) -> bool:
        """True when each band lives in its own file."""
        return len(self.paths) > 1

    def band_sources(self) -> list[tuple[Path, int]]:
        """``(file, 1-based band index)`` of each band in :attr:`bands` order."""
        if self.is_band_set:
            return [(p, 1) for p in self.paths]
        skip = self.alpha_band
        idx = [i for i in range(1, len(self.bands) + (2 if skip else 1)) if i != skip]
        return [(self.paths[0], i) for i in idx[: len(self.bands)]]

    def band(self, role: str) -> str | None:
        """Band name playing *role* (``red``, ``nir`` …) or ``None`` (see :func:`band_role`)."""
        return band_role(self.bands, role)

    def with_options(self, **changes: Any) -> ImageEntry:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def as_row(self) -> dict[str, Any]:
        """The entry as a flat catalog row (CSV-ready)."""
        return {
            "image_id": self.image_id,
            "path": ";".join(str(p) for p in self.paths),
            "acquired_on": self.acquired_on.isoformat(),
            "sensor": self.sensor,
            "bands": ",".join(self.bands),
            "nodata": self.nodata,
            "alpha_band": self.alpha_band,
            "cloud_mask": str(self.cloud_mask) if self.cloud_mask else None,
        }


@dataclass
class Catalog:
    """Images of one area, kept sorted by acquisition date.

    Examples
    --------
    >>> cat = Catalog()
    >>> len(cat)
    0
    """

    entries: list[ImageEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries = sorted(self.entries, key=lambda e: (e.acquired_on, e.image_id))
        self._check_ids()

    def _check_ids(self) -> None:
        ids = [e.image_id for e in self.entries]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            msg = f"duplicate image ids in the catalog: {', '.join(dup)}"
            raise SchemaError(msg)

    def __iter__(self) -> Iterator[ImageEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, key: int | str) -> ImageEntry:
        if isinstance(key, int):
            return self.entries[key]
        for e in self.entries:
            if e.image_id == key:
                return e
        msg = f"no image {key!r} in the catalog (have: {', '.join(self.ids) or 'none'})"
        raise KeyError(msg)

    @property
    def ids(self) -> list[str]:
        """Image ids in date order."""
        return [e.image_id for e in self.entries]

    def add(self, entry: ImageEntry) -> ImageEntry:
        """Add an :class:`ImageEntry`; returns it."""
        self.entries.append(entry)
        self.__post_init__()
        return entry

    def register(self, src: PathArg | Sequence[PathArg], **options: Any) -> ImageEntry:
        """Describe an image with :meth:`ImageEntry.from_path` and add it.

        Parameters
        ----------
        src : path-like or sequence of path-like
            The file, band-set folder or band files.
        **options
            Keyword options of :meth:`ImageEntry.from_path` (``acquired_on``, ``sensor``,
            ``bands``, ``nodata``, ``alpha_band``, ``cloud_mask``, ``image_id``).
        """
        return self.add(ImageEntry.from_path(src, **options))

    def last_before(self, day: dt.date, *, inclusive: bool = False) -> ImageEntry | None:
        """The latest image acquired before *day* (on it too with ``inclusive``), or None."""
        hits = [e for e in self.entries
                if e.acquired_on < day or (inclusive and e.acquired_on == day)]
        return hits[-1] if hits else None

    def first_after(self, day: dt.date, *, inclusive: bool = False) -> ImageEntry | None:
        """The earliest image acquired after *day* (on it too with ``inclusive``), or None."""
        hits = [e for e in self.entries
                if e.acquired_on > day or (inclusive and e.acquired_on == day)]
        return hits[0] if hits else None

    def frame(self) -> pd.DataFrame:
        """The catalog as a table, one row per image (the CSV layout of :meth:`read`)."""
        cols = ["image_id", "path", "acquired_on", "sensor", "bands", "nodata", "alpha_band",
                "cloud_mask"]
        return pd.DataFrame([e.as_row() for e in self.entries], columns=cols)

    def write(self, path: PathArg) -> Path:
        """Write the catalog as CSV (readable by :meth:`read`)."""
        path = Path(path)
        self.frame().to_csv(path, index=False)
        return path

    @classmethod
    def read(cls, path: PathArg) -> Catalog:
        """Load a catalog file (CSV or TOML).

        CSV columns (TOML: one ``[[images]]`` table per image with the same keys):
        ``path`` (required; a file, a band-set folder, or band files joined with ``;``),
        ``acquired_on`` (optional if the metadata has it), ``sensor``, ``bands``
        (comma-separated or a preset name), ``nodata``, ``alpha_band``, ``cloud_mask``,
        ``image_id``. Relative paths are resolved against the catalog file's folder.

        Raises
        ------
        DataSourceError
            The file cannot be read.
        SchemaError
            The ``path`` column is missing.
        """
        path = Path(path)
        try:
            if path.suffix.lower() == ".toml":
                rows = tomllib.loads(path.read_text(encoding="utf-8")).get("images", [])
            else:
                with path.open(newline="", encoding="utf-8-sig") as fh:
                    rows = list(csv.DictReader(fh))
        except (OSError, tomllib.TOMLDecodeError, csv.Error) as exc:
            msg = f"cannot read image catalog {path}: {exc}"
            raise DataSourceError(msg) from None
        cat = cls()
        for n, row in enumerate(rows, start=1):
            row = {k.strip().lower(): v for k, v in row.items() if k}
            if not row.get("path"):
                msg = f"image catalog {path}, row {n}: no 'path'"
                raise SchemaError(msg)
            raw = row["path"]
            parts = raw if isinstance(raw, list) else str(raw).split(";")
            files = [p if Path(p).is_absolute() else path.parent / p
                     for p in (str(x).strip() for x in parts) if p]
            opts: dict[str, Any] = {}
            for key in ("acquired_on", "sensor", "bands", "image_id"):
                if row.get(key) not in (None, ""):
                    opts[key] = row[key]
            for key, conv in (("nodata", float), ("alpha_band", int)):
                if row.get(key) not in (None, ""):
                    opts[key] = conv(row[key])
            if row.get("cloud_mask"):
                cm = Path(str(row["cloud_mask"]))
                opts["cloud_mask"] = cm if cm.is_absolute() else path.parent / cm
            cat.register(files[0] if len(files) == 1 else files, **opts)
        return cat

    @classmethod
    def from_oscd(cls, city_dir: PathArg) -> Catalog:
        """Catalog of one OSCD city folder (``imgs_1``, ``imgs_2``, dates from ``dates.txt``).

        The Onera Satellite Change Detection dataset ships each date as a Sentinel-2 band set
        whose file names carry the *processing* time; the acquisition dates are in
        ``dates.txt`` (``date_1: 20150821``). Image ids are ``<city>-1`` and ``<city>-2``.
        """
        city = Path(city_dir)
        dates: dict[str, str] = {}
        try:
            for line in (city / "dates.txt").read_text().splitlines():
                if ":" in line:
                    k, v = line.split(":", 1)
                    dates[k.strip()] = v.strip()
        except OSError as exc:
            msg = f"cannot read {city / 'dates.txt'}: {exc}"
            raise DataSourceError(msg) from None
        cat = cls()
        for i in (1, 2):
            cat.register(city / f"imgs_{i}", acquired_on=dates[f"date_{i}"],
                         sensor="sentinel-2", image_id=f"{city.name}-{i}")
        return cat


def ingest_cog(
    src: PathArg,
    dst: PathArg,
    *,
    blocksize: int = 512,
    compress: str = "deflate",
    overwrite: bool = False,
    acquired_on: dt.date | str | None = None,
) -> Path:
    """Convert an archive raster to a tiled Cloud-Optimised GeoTIFF with overviews.

    Uses GDAL's COG driver (tiles of *blocksize*, internal overviews, metadata and nodata
    kept). The acquisition date, when given or found in the metadata, is written to the
    ``ACQUISITIONDATE`` tag so the catalog reads it back.

    Parameters
    ----------
    src, dst : path-like
        Input raster and output file.
    blocksize : int
        Tile size in pixels (multiple of 16).
    compress : str
        ``deflate``, ``zstd``, ``lzw``, ``none`` …
    overwrite : bool
        Replace an existing *dst*.
    acquired_on : date or str, optional
        Acquisition date to record.

    Returns
    -------
    Path
        *dst*.

    Raises
    ------
    CRSError
        *src* has no CRS.
    DataSourceError
        *src* cannot be read, or *dst* exists and ``overwrite`` is false.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, rasterio
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> with rasterio.open(tmp / "a.tif", "w", driver="GTiff", width=600, height=600, count=1,
    ...                    dtype="uint16", crs="EPSG:32650",
    ...                    transform=rasterio.Affine(1, 0, 0, 0, -1, 600)) as d:
    ...     d.write(np.arange(360000, dtype="uint16").reshape(1, 600, 600))
    >>> out = ingest_cog(tmp / "a.tif", tmp / "a_cog.tif", blocksize=256,
    ...                  acquired_on="2023-03-01")
    >>> with rasterio.open(out) as d:
    ...     d.block_shapes[0], d.overviews(1), d.tags()["ACQUISITIONDATE"]
    ((256, 256), [2, 4], '2023-03-01')
    """
    src, dst = Path(src), Path(dst)
    if dst.exists() and not overwrite:
        msg = f"{dst} exists; pass overwrite=True (--overwrite) to replace it"
        raise DataSourceError(msg)
    try:
        with _quiet_georef(), rasterio.open(src) as ds:
            _check_crs(src, ds)
            day = _parse_date(acquired_on) if acquired_on is not None else None
            if day is None:
                day = read_acquisition_date(src)
            opts: dict[str, Any] = {
                "driver": "COG",
                "blocksize": blocksize,
                "compress": compress.upper(),
                "overview_resampling": Resampling.average.name.upper(),
                "num_threads": "ALL_CPUS",
                "bigtiff": "IF_SAFER",
            }
            if compress.lower() in ("deflate", "zstd", "lzw") and np.dtype(
                    ds.dtypes[0]).kind in "iu":
                opts["predictor"] = 2
            if day is None:
                rasterio.shutil.copy(ds, dst, **opts)
            else:
                # The COG driver copies its source's metadata and must not be updated in
                # place (that breaks the COG layout): tag a VRT of the source, copy that.
                with tempfile.TemporaryDirectory(prefix="geosup-cog-") as tmp:
                    vrt = Path(tmp) / "src.vrt"
                    rasterio.shutil.copy(ds, vrt, driver="VRT")
                    with rasterio.open(vrt, "r+") as v:
                        v.update_tags(ACQUISITIONDATE=day.isoformat())
                    with rasterio.open(vrt) as v:
                        rasterio.shutil.copy(v, dst, **opts)
    except rasterio.errors.RasterioIOError as exc:
        msg = f"cannot convert {src} to COG: {exc}"
        raise DataSourceError(msg) from None
    log.info("ingested %s -> %s (COG, %d px tiles, %s)", src, dst, blocksize, compress)
    return dst
