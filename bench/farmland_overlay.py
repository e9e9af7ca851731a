"""Benchmark: the in-process farmland overlay against geopandas, on one synthetic city.

Builds a city of irregular reference parcels (Voronoi cells of random points, clipped to a
box) and declarations drawn as jittered copies of most parcels (shifted a few metres and
slightly scaled, so they overlap neighbours and each other), then times in one run:

- ours: :func:`geosup.farmland.engine.overlay_inprocess` (links, pairs, outside, land use,
  changes) with 1 thread and with 2 threads;
- the peer: ``geopandas.overlay(declarations, parcels, how="intersection")`` (links) plus a
  ``geopandas.sjoin`` of the declarations with themselves and the intersection areas of the
  joined pairs (pairs).

Usage::

    python bench/farmland_overlay.py [--n 100000] [--seed 1]
"""

from __future__ import annotations

import argparse
import time
import warnings

import geopandas as gpd
import numpy as np
import shapely

from geosup.farmland.engine import overlay_inprocess
from geosup.farmland.prepare import prepare

CRS = "EPSG:32650"
X0, Y0 = 400_000.0, 3_400_000.0


def city(n: int, seed: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Reference parcels (Voronoi cells, ~2,500 m² each) and jittered declarations."""
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n * 2500.0))
    frame = shapely.box(X0, Y0, X0 + side, Y0 + side)
    pts = shapely.multipoints(rng.uniform([X0, Y0], [X0 + side, Y0 + side], size=(n, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=frame))
    cells = shapely.intersection(cells, frame)
    cells = cells[shapely.area(cells) > 1.0]
    parcels = gpd.GeoDataFrame(
        {"parcel_id": [f"P{i:07d}" for i in range(len(cells))],
         "eligible_area": shapely.area(cells) * 0.97},
        geometry=cells, crs=CRS,
    )
    # Declarations: 90 % of the parcels, shifted up to 4 m and scaled by 0.97-1.06.
    take = np.flatnonzero(rng.random(len(cells)) < 0.9)
    src = cells[take]
    centre = shapely.centroid(src)
    cx, cy = shapely.get_x(centre), shapely.get_y(centre)
    scale = rng.uniform(0.97, 1.06, len(take))
    dx, dy = rng.uniform(-4, 4, len(take)), rng.uniform(-4, 4, len(take))
    coords, index = shapely.get_coordinates(src, return_index=True)
    coords = (coords - np.c_[cx, cy][index]) * scale[index, None] + np.c_[cx + dx, cy + dy][index]
    drawn = shapely.set_coordinates(src.copy(), coords)
    declarations = gpd.GeoDataFrame(
        {"declaration_id": [f"D{i:07d}" for i in range(len(take))],
         "applicant_id": [f"A{i:06d}" for i in rng.integers(0, max(1, n // 3), len(take))],
         "year": 2025,
         "declared_area": shapely.area(drawn) * rng.uniform(0.95, 1.1, len(take))},
        geometry=drawn, crs=CRS,
    )
    return declarations, parcels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="number of parcels")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    declarations, parcels = city(args.n, args.seed)
    t1 = time.perf_counter()
    print(f"city: {len(parcels):,} parcels, {len(declarations):,} declarations "
          f"({t1 - t0:.1f} s to build)")

    t0 = time.perf_counter()
    prepared = prepare(declarations, parcels, area_unit="m2", crs=CRS)
    t_prep = time.perf_counter() - t0
    print(f"prepare (hygiene, precision grid): {t_prep:.2f} s")

    ours = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        overlay = overlay_inprocess(prepared, workers=workers)
        ours[workers] = time.perf_counter() - t0
        print(f"ours, overlay_inprocess(workers={workers}): {ours[workers]:.2f} s "
              f"({len(overlay.links):,} links, {len(overlay.pairs):,} pairs, "
              f"{len(overlay.outside):,} outside rows)")

    d = prepared.declarations[["declaration_id", "geometry"]]
    p = prepared.parcels[["parcel_id", "geometry"]]
    t0 = time.perf_counter()
    links = gpd.overlay(d, p, how="intersection", keep_geom_type=True)
    t_links = time.perf_counter() - t0
    t0 = time.perf_counter()
    joined = gpd.sjoin(d, d, predicate="intersects")
    joined = joined[joined["declaration_id_left"] < joined["declaration_id_right"]]
    right = d.geometry.to_numpy()[joined["index_right"].to_numpy()]
    over = joined.geometry.intersection(gpd.GeoSeries(right, index=joined.index, crs=d.crs))
    n_pairs = int((over.area > 0.01).sum())
    t_pairs = time.perf_counter() - t0
    peer = t_links + t_pairs
    print(f"geopandas: overlay(intersection) {t_links:.2f} s + sjoin pairs {t_pairs:.2f} s "
          f"= {peer:.2f} s ({len(links):,} links, {n_pairs:,} pairs)")

    ours_area = float(overlay.links["overlap_m2"].sum())
    peer_area = float(links.area[links.area > 0.01].sum())
    print(f"link area: ours {ours_area:,.1f} m², geopandas {peer_area:,.1f} m² "
          f"(relative difference {abs(ours_area - peer_area) / peer_area:.1e})")
    best = min(ours.values())
    print(f"ratio geopandas / ours: {peer / best:.1f}x (ours best of workers=1,2); "
          f"threads: workers=1 / workers=2 = {ours[1] / ours[2]:.2f}x")


if __name__ == "__main__":
    main()
