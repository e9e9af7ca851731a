"""The tables the farmland engines hand to the rules.

Both engines (in process: shapely 2 + STRtree; in the database: PostGIS SQL) turn
prepared declarations, reference parcels and land use into one :class:`Overlay`.
The rules are pure functions of an ``Overlay`` (and the persons registry), so the
same rules run on either engine's output, and the two engines are tested to give
equal tables on the same data.

All areas are in m² and all lengths in metres, measured in one metric CRS chosen
for the extent (:func:`geosup.crs.metric_crs_for`: CGCS2000 Gauss-Krüger in
China, UTM elsewhere). The user's unit (mu, ha, m²) appears only in alerts.

Tables (pandas; geometry columns are shapely arrays in ``Overlay.crs``):

``declarations`` — one row per used declaration
    declaration_id, applicant_id, year, village, parcel_id (declared reference
    parcel id or <NA>), crop, subsidy_amount, declared_m2 (declared area converted to
    m²), drawn_m2 (area of the drawn geometry; NaN without one), perimeter_m (of the
    drawn geometry, else of the declared parcel; NaN if neither), geometry (drawn, or
    None).

``parcels`` — one row per used reference parcel
    parcel_id, eligible_m2, area_m2, perimeter_m, land_use, geometry.

``links`` — which reference parcels each declaration covers
    declaration_id, parcel_id, overlap_m2, by ("id": declared by parcel id without a
    drawing, overlap = the parcel's area; "geometry": drawn geometry ∩ parcel with an
    overlap above the engine's minimum).

``pairs`` — the same land declared twice in the same year
    declaration_a < declaration_b (string order), applicant_a, applicant_b, year,
    overlap_m2, share_a (overlap / area of a), share_b, geometry (the overlap).
    Pairs of the same applicant are included (a rule decides what to flag).

``land_use`` — declared land on land-use classes
    declaration_id, land_use, overlap_m2.

``outside`` — drawn declared land outside every reference parcel
    declaration_id, outside_m2, outside_share.

``changes`` — each declaration against the same applicant's declaration of the
year before that covers the same land (largest overlap of drawn geometries; for
declarations without a drawing, the same declared parcel_id)
    declaration_id, previous_id, declared_m2, previous_m2, sym_diff_m2 (area of the
    symmetric difference of the drawn geometries; NaN without drawings), union_m2.

Declarations of earlier years ("previous") are ordinary rows of ``declarations``
with a smaller ``year``: ``pairs`` only pairs declarations of the same year, and
the rules raise alerts only for the years under review.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pyproj

from geosup.errors import SchemaError

__all__ = ["TABLE_COLUMNS", "Overlay"]

#: Required columns of each overlay table, in order.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "declarations": ("declaration_id", "applicant_id", "year", "village", "parcel_id", "crop",
                     "subsidy_amount", "declared_m2", "drawn_m2", "perimeter_m", "geometry"),
    "parcels": ("parcel_id", "eligible_m2", "area_m2", "perimeter_m", "land_use", "geometry"),
    "links": ("declaration_id", "parcel_id", "overlap_m2", "by"),
    "pairs": ("declaration_a", "declaration_b", "applicant_a", "applicant_b", "year",
              "overlap_m2", "share_a", "share_b", "geometry"),
    "land_use": ("declaration_id", "land_use", "overlap_m2"),
    "outside": ("declaration_id", "outside_m2", "outside_share"),
    "changes": ("declaration_id", "previous_id", "declared_m2", "previous_m2", "sym_diff_m2",
                "union_m2"),
}


@dataclass
class Overlay:
    """The measured relations between declarations, parcels and land use."""

    crs: pyproj.CRS
    declarations: pd.DataFrame
    parcels: pd.DataFrame
    links: pd.DataFrame
    pairs: pd.DataFrame
    land_use: pd.DataFrame
    outside: pd.DataFrame
    changes: pd.DataFrame
    notes: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, cols in TABLE_COLUMNS.items():
            frame = getattr(self, name)
            missing = [c for c in cols if c not in frame.columns]
            if missing:
                msg = f"overlay table {name!r} lacks column(s) {', '.join(missing)}"
                raise SchemaError(msg)

    @staticmethod
    def empty(name: str) -> pd.DataFrame:
        """An empty table with the columns of ``name``."""
        return pd.DataFrame({c: pd.Series([], dtype=object) for c in TABLE_COLUMNS[name]})
