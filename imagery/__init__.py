"""Land-requisition imagery: compare dates, score every claimed parcel.

The raster pipeline, in the order data flows:

:mod:`imagery.catalog`
    :class:`~imagery.catalog.ImageEntry` / :class:`~imagery.catalog.Catalog`: rasters with
    their acquisition date (metadata or catalog, never a file name), sensor, band names and
    valid-data mask; :func:`~imagery.catalog.ingest_cog` converts archive imagery to COG.
:mod:`imagery.align`
    :func:`~imagery.align.align` puts every date and band on the reference ("before") grid,
    warping each off-grid band once, window by window; :class:`~imagery.align.AlignedStack`
    reads ``(bands, h, w)`` float32 windows with NaN for invalid pixels.
:mod:`imagery.change`
    :func:`~imagery.change.compute_change`: per-band radiometric normalisation, change
    magnitude, ΔNDVI, ΔNDBI or brightness change written as tiled GeoTIFFs on the reference
    grid, with scene-level thresholds (:class:`~imagery.change.ChangeResult`).
:mod:`imagery.stats`
    :func:`~imagery.stats.parcel_stats`: coverage-weighted per-parcel statistics
    (exactextract) with inconclusive parcels flagged.

Examples
--------
>>> import imagery
>>> "parcel_stats" in imagery.__all__
True
"""

from __future__ import annotations

from imagery.align import AlignedStack, ExtentError, Grid, align, reference_grid
from imagery.catalog import (
    BandError,
    Catalog,
    DateError,
    ImageEntry,
    band_role,
    ingest_cog,
    read_acquisition_date,
    require_bands,
)
from imagery.change import ChangeResult, Normalisation, compute_change, fit_normalisation
from imagery.stats import parcel_stats, zonal_stats

__all__ = [
    "AlignedStack",
    "BandError",
    "Catalog",
    "ChangeResult",
    "DateError",
    "ExtentError",
    "Grid",
    "ImageEntry",
    "Normalisation",
    "align",
    "band_role",
    "compute_change",
    "fit_normalisation",
    "ingest_cog",
    "parcel_stats",
    "read_acquisition_date",
    "reference_grid",
    "require_bands",
    "zonal_stats",
]
