"""Benchmark: the in-process farmland overlay beside geopandas and PostGIS, one run, one input.

Builds a city of reference parcels (Voronoi cells of random points, clipped to a box,
~2,500 m² each; with ``--shape irregular``, the default, every shared edge is densified and
its inserted vertices displaced by a hash of the edge's sorted endpoints, so the cells turn
non-convex with ~21 vertices yet still tile the box exactly — see :func:`_wiggle`; with
``--shape convex`` the plain cells, ~6 vertices) and as many declarations as parcels:
jittered copies (shifted up to 4 m, scaled by 0.97-1.06, so they overlap neighbours and each
other) of 90 % of the parcels, and second declarations by other applicants of randomly drawn
parcels for the rest (double claims). The same prepared layers then go to three engines:

- ours: :func:`geosup.farmland.engine.overlay_inprocess` with 2 threads — the time of the
  ``links`` table alone (declaration ∩ parcel areas) and of the full ``Overlay`` (links,
  pairs, outside, land use, changes);
- geopandas: ``geopandas.overlay(declarations, parcels, how="intersection",
  keep_geom_type=True)`` (links only). At large n it is run on a random subset of the
  declarations (``--geopandas-n``) against all parcels and its time is extrapolated
  linearly to all declarations (the output says so);
- PostGIS: both layers COPYed into a throwaway server (initdb/pg_ctl in a temporary
  directory, a free port, trust authentication; stopped at the end), GiST indexes,
  ANALYZE (load time printed separately), then one timed query
  ``SELECT sum(ST_Area(ST_Intersection(d.geom, p.geom))) FROM d JOIN p ON
  ST_Intersects(d.geom, p.geom)`` (server defaults: parallel query with up to 2 workers).

Printed: times, ratios, peak memory (ours: the VmHWM of the spawned process that loads
the prepared inputs and runs the engine; the benchmark's own process: ``getrusage`` maxrss;
the PostGIS server's memory is not included) and the total overlap area of each engine with
the relative differences.

Usage::

    python bench/farmland_overlay.py [--n 1000000] [--seed 1] [--shape irregular|convex]
                                     [--check] [--geopandas-n 200000]
                                     [--skip-geopandas] [--skip-postgis] [--repeat 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import multiprocessing as mp
import os
import pickle
import resource
import tempfile
import time
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosup.farmland.engine import link_areas, overlay_inprocess
from geosup.farmland.prepare import prepare
from geosup.testing import postgis_server

CRS = "EPSG:32650"
X0, Y0 = 400_000.0, 3_400_000.0


_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    h = h ^ (h >> np.uint64(30))
    h = h * np.uint64(0xBF58476D1CE4E5B9)
    h = h ^ (h >> np.uint64(27))
    h = h * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _unit(h: np.ndarray) -> np.ndarray:
    """uint64 hashes -> floats uniform in [-1, 1)."""
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53) * 2.0 - 1.0


def _wiggle(cells: np.ndarray, seed: int, spacing: float = 11.0, bulge: float = 0.14,
            jitter: float = 0.3, rounds: int = 4) -> np.ndarray:
    """Voronoi cells made non-convex and vertex-rich, still tiling the plane exactly.

    Every edge gets ``floor(length / spacing)`` (at most 8) inserted vertices: points of the
    straight edge displaced sideways by a bulge (``bulge`` x length x sin(pi t), one per edge)
    plus a jitter (``jitter`` x the sub-segment length, one per vertex). Both are a hash of the
    edge's sorted endpoint pair (rounded to the millimetre) and the vertex's position along
    the edge, computed in the canonical (sorted) direction, so the two neighbours of an edge
    get bitwise the same wiggly edge. Edges on the frame (both ends on one side of the box)
    stay straight. Cells that come out invalid have the amplitude of all their edges halved
    (for their neighbours too, since it is per edge), up to ``rounds`` times, then zeroed.
    """
    coords, idx = shapely.get_coordinates(cells, return_index=True)
    a, b = coords[:-1], coords[1:]
    edge = idx[:-1] == idx[1:]                      # row r is the start of an edge of its cell
    ka = np.round(a * 1000.0).astype(np.int64)
    kb = np.round(b * 1000.0).astype(np.int64)
    fwd = (ka[:, 0] < kb[:, 0]) | ((ka[:, 0] == kb[:, 0]) & (ka[:, 1] < kb[:, 1]))
    klo = np.where(fwd[:, None], ka, kb)
    khi = np.where(fwd[:, None], kb, ka)
    h = np.full(len(a), np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) & _M64, np.uint64)
    for col in (klo[:, 0], klo[:, 1], khi[:, 0], khi[:, 1]):
        h = _mix(h ^ col.view(np.uint64))
    lo = klo / 1000.0
    d = (khi - klo) / 1000.0
    length = np.hypot(d[:, 0], d[:, 1])
    on_frame = np.zeros(len(a), bool)
    for j, (mn, mx) in enumerate(((coords[:, 0].min(), coords[:, 0].max()),
                                  (coords[:, 1].min(), coords[:, 1].max()))):
        for v in (mn, mx):
            on_frame |= (np.abs(a[:, j] - v) < 1e-6) & (np.abs(b[:, j] - v) < 1e-6)
    k = np.where(edge & ~on_frame & (length > 0),
                 np.minimum(np.floor(length / spacing), 8), 0).astype(np.int64)
    k = np.append(k, 0)                             # the last row closes the last ring
    with np.errstate(invalid="ignore", divide="ignore"):
        nrm = np.c_[-d[:, 1], d[:, 0]] / length[:, None]
    # output rows: every input vertex, followed by its edge's inserted vertices
    start = np.concatenate([[0], np.cumsum(1 + k)[:-1]])
    total = int((1 + k).sum())
    out_idx = np.repeat(idx, 1 + k)
    dest = np.ones(total, bool)                     # output rows of the inserted vertices
    dest[start] = False
    r_ins = np.repeat(np.arange(len(k)), k)         # the edge of each inserted vertex
    j_ins = np.flatnonzero(dest) - start[r_ins]     # 1..k along the cell's ring
    kk = k[r_ins]
    jc = np.where(fwd[r_ins], j_ins, kk + 1 - j_ins)  # index in the canonical direction
    t = jc / (kk + 1.0)
    hb = h[r_ins]
    u_bulge = _unit(_mix(hb ^ np.uint64(0x5851F42D4C957F2D)))
    u_jit = _unit(_mix(hb + jc.astype(np.uint64)))
    ln = length[r_ins]
    offset_unit = bulge * ln * np.sin(np.pi * t) * u_bulge + jitter * ln / (kk + 1.0) * u_jit
    base = lo[r_ins] + t[:, None] * d[r_ins]
    key_ins = h[r_ins]
    out = np.empty((total, 2))
    out[start] = coords
    amp = np.ones(len(h))                           # per-edge factor, by hash
    bad_keys = np.empty(0, np.uint64)
    for rnd in range(rounds + 1):
        if len(bad_keys):
            amp[np.isin(h, bad_keys)] *= 0.5 if rnd < rounds else 0.0
        f = amp[r_ins]
        out[dest] = base + (offset_unit * f)[:, None] * nrm[r_ins]
        rings = shapely.linearrings(out, indices=out_idx)
        result = shapely.polygons(rings)
        invalid = np.flatnonzero(~shapely.is_valid(result))
        if len(invalid) == 0:
            break
        bad_keys = np.unique(key_ins[np.isin(out_idx[dest], invalid)])
    return result


def city(n: int, seed: int,
         shape: str = "irregular") -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """``n`` reference parcels (Voronoi cells, wiggled unless ``shape == "convex"``) and
    ``n`` jittered declarations."""
    rng = np.random.default_rng(seed)
    side = float(np.sqrt(n * 2500.0))
    frame = shapely.box(X0, Y0, X0 + side, Y0 + side)
    pts = shapely.multipoints(rng.uniform([X0, Y0], [X0 + side, Y0 + side], size=(n, 2)))
    cells = shapely.get_parts(shapely.voronoi_polygons(pts, extend_to=frame))
    cells = shapely.intersection(cells, frame)
    cells = cells[shapely.area(cells) > 1.0]
    if shape == "irregular":
        cells = _wiggle(cells, seed)
    parcels = gpd.GeoDataFrame(
        {"parcel_id": [f"P{i:07d}" for i in range(len(cells))],
         "eligible_area": shapely.area(cells) * 0.97},
        geometry=cells, crs=CRS,
    )
    # 90 % of the parcels declared once, the rest of the declarations: second claims.
    first = np.flatnonzero(rng.random(len(cells)) < 0.9)
    take = np.concatenate([first, rng.integers(0, len(cells), max(0, n - len(first)))])
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


def _maxrss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def _peak_rss_gib() -> float:
    """Peak resident memory of this process's own address space (VmHWM). Unlike
    ``getrusage``'s maxrss, it is not inherited: a spawned child starts from its own exec,
    while maxrss carries the parent's peak at fork time."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    return _maxrss_gib()


def _current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def _run_ours(path: str, workers: int, repeat: int) -> tuple:
    """Our engine in a fresh process: load the prepared inputs, then ``repeat`` times the
    link table alone and the full Overlay."""
    with open(path, "rb") as f:
        prepared = pickle.load(f)
    gc.collect()
    rss_loaded = _current_rss_gib()
    # numba warm-up, not timed: the kernels compile (or load from numba's cache) on first use
    small = dataclasses.replace(prepared, declarations=prepared.declarations.iloc[:500],
                                parcels=prepared.parcels.iloc[:500])
    link_areas(small, workers=workers)
    overlay_inprocess(small, workers=workers)
    del small
    t_links, t_full = [], []
    for _ in range(repeat):
        decl_of = over = overlay = None  # one result alive at a time
        gc.collect()
        t0 = time.perf_counter()
        decl_of, _parcel_of, over = link_areas(prepared, workers=workers)
        t_links.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        overlay = overlay_inprocess(prepared, workers=workers)
        t_full.append(time.perf_counter() - t0)
        area = float(overlay.links["overlap_m2"].sum())
        counts = (len(overlay.links), len(overlay.pairs), len(overlay.outside))
    assert abs(float(over.sum()) - area) <= 1e-9 * area
    return t_links, t_full, decl_of, over, area, counts, _peak_rss_gib(), rss_loaded


# ---------------------------------------------------------------------------------------------
# PostGIS: a throwaway server
# ---------------------------------------------------------------------------------------------


#: Server settings for a bulk overlay (the test server's defaults are for small tests).
_PG_SETTINGS = {"shared_buffers": "1GB", "work_mem": "256MB", "maintenance_work_mem": "1GB",
                "max_wal_size": "8GB"}


def _copy(conn: object, table: str, ids: np.ndarray, geoms: np.ndarray) -> None:
    hexes = shapely.to_wkb(geoms, hex=True)
    buf = io.StringIO()
    pd.DataFrame({"id": ids, "g": hexes}).to_csv(buf, sep="\t", header=False, index=False)
    with conn.cursor() as cur, cur.copy(f"COPY {table} (id, geom) FROM STDIN") as copy:
        copy.write(buf.getvalue())


def run_postgis(d_ids: np.ndarray, d_geoms: np.ndarray, p_ids: np.ndarray,
                p_geoms: np.ndarray) -> tuple[float, float, float, str]:
    """(load seconds, query seconds, total overlap m², settings)."""
    import psycopg

    with postgis_server(settings=_PG_SETTINGS) as base:
        conn = psycopg.connect(f"{base}/geosup_template", autocommit=True)
        with conn:
            t0 = time.perf_counter()
            for name in ("d", "p"):
                conn.execute(f"CREATE UNLOGGED TABLE {name} (id text, geom geometry)")
            _copy(conn, "d", d_ids, d_geoms)
            _copy(conn, "p", p_ids, p_geoms)
            conn.execute("CREATE INDEX ON d USING gist (geom)")
            conn.execute("CREATE INDEX ON p USING gist (geom)")
            conn.execute("ANALYZE d")
            conn.execute("ANALYZE p")
            t_load = time.perf_counter() - t0
            workers = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]
            version = conn.execute("SELECT postgis_lib_version()").fetchone()[0]
            t0 = time.perf_counter()
            total = conn.execute(
                "SELECT sum(ST_Area(ST_Intersection(d.geom, p.geom))) "
                "FROM d JOIN p ON ST_Intersects(d.geom, p.geom)").fetchone()[0]
            t_query = time.perf_counter() - t0
        return t_load, t_query, float(total), f"PostGIS {version}, parallel workers {workers}"


# ---------------------------------------------------------------------------------------------


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000,
                        help="reference parcels, and declarations (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--shape", choices=("convex", "irregular"), default="irregular",
                        help="parcels: plain Voronoi cells (convex, ~6 vertices) or the cells "
                             "with wiggly shared edges (non-convex, ~21 vertices; default)")
    parser.add_argument("--check", action="store_true",
                        help="check the parcels: all valid, union area = box area (1e-9)")
    parser.add_argument("--workers", type=int, default=2, help="threads of our engine")
    parser.add_argument("--repeat", type=int, default=1, help="runs of our engine (best shown)")
    parser.add_argument("--geopandas-n", type=int, default=None,
                        help="declarations given to geopandas.overlay (a random subset; the "
                             "time is extrapolated linearly to all); default: all")
    parser.add_argument("--skip-geopandas", action="store_true")
    parser.add_argument("--skip-postgis", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    t0 = time.perf_counter()
    declarations, parcels = city(args.n, args.seed, args.shape)
    t1 = time.perf_counter()
    g = parcels.geometry.array
    nv = shapely.get_num_coordinates(g) - 1
    convex = shapely.area(g) >= shapely.area(shapely.convex_hull(g)) * (1 - 1e-12)
    print(f"city ({args.shape}): {len(parcels):,} parcels, {len(declarations):,} declarations, "
          f"{nv.mean():.1f} vertices per parcel on average (5-95 %: "
          f"{np.percentile(nv, 5):.0f}-{np.percentile(nv, 95):.0f}), {convex.mean():.1%} convex "
          f"({t1 - t0:.1f} s to build)", flush=True)
    if args.check:
        t0 = time.perf_counter()
        side = float(np.sqrt(args.n * 2500.0))
        box = side * side
        union = shapely.union_all(g)
        print(f"check: parcels valid {bool(shapely.is_valid(g).all())}, declarations valid "
              f"{bool(shapely.is_valid(declarations.geometry.array).all())}; sum of parcel "
              f"areas vs box {_rel(float(shapely.area(g).sum()), box):.1e}, union area vs box "
              f"{_rel(union.area, box):.1e} ({time.perf_counter() - t0:.1f} s)", flush=True)
        del union
    del g

    t0 = time.perf_counter()
    prepared = prepare(declarations, parcels, area_unit="m2", crs=CRS)
    t_prep = time.perf_counter() - t0
    del declarations, parcels
    print(f"prepare (hygiene, precision grid; not timed below): {t_prep:.2f} s", flush=True)
    d_ids = prepared.declarations["declaration_id"].astype(object).to_numpy()
    d_geoms = np.asarray(prepared.declarations.geometry.array, dtype=object)
    p_ids = prepared.parcels["parcel_id"].astype(object).to_numpy()
    p_geoms = np.asarray(prepared.parcels.geometry.array, dtype=object)

    # ours, in a fresh (spawned) process that loads the prepared inputs from a pickle: its
    # peak memory (VmHWM) is the engine's with those inputs, nothing of this process's.
    with tempfile.TemporaryDirectory(prefix="geosup-bench-") as tmp:
        path = str(Path(tmp) / "prepared.pkl")
        with open(path, "wb") as f:
            pickle.dump(prepared, f, protocol=5)
        with mp.get_context("spawn").Pool(1) as pool:
            res = pool.apply(_run_ours, (path, args.workers, args.repeat))
    t_links, t_full, decl_of, over, ours_area, counts, rss_ours, rss_start = res
    ours_links, ours_full = min(t_links), min(t_full)
    rep = f" (best of {args.repeat}: {', '.join(f'{t:.2f}' for t in t_full)})" \
        if args.repeat > 1 else ""
    print(f"ours ({args.workers} threads): links table {ours_links:.2f} s; full Overlay "
          f"{ours_full:.2f} s{rep} ({counts[0]:,} links, {counts[1]:,} pairs, "
          f"{counts[2]:,} outside rows); peak memory of the engine's process {rss_ours:.2f} GiB "
          f"(of which {rss_start:.2f} GiB the interpreter and the prepared inputs loaded)",
          flush=True)

    # geopandas
    gp_time = gp_area = None
    if not args.skip_geopandas:
        n_decl = len(d_ids)
        k = min(args.geopandas_n or n_decl, n_decl)
        rng = np.random.default_rng(args.seed + 1)
        sub = np.sort(rng.choice(n_decl, k, replace=False)) if k < n_decl else np.arange(n_decl)
        d = gpd.GeoDataFrame({"declaration_id": d_ids[sub]}, geometry=d_geoms[sub], crs=CRS)
        p = gpd.GeoDataFrame({"parcel_id": p_ids}, geometry=p_geoms, crs=CRS)
        t0 = time.perf_counter()
        res = gpd.overlay(d, p, how="intersection", keep_geom_type=True)
        measured = time.perf_counter() - t0
        gp_area_sub = float(res.area.sum())
        gp_time = measured * n_decl / k
        # our area over the same declarations (links above 0.01 m²; geopandas keeps crumbs)
        mine = np.isin(decl_of, sub)
        ours_sub = float(over[mine].sum())
        if k < n_decl:
            print(f"geopandas.overlay: {measured:.2f} s for {k:,} of {n_decl:,} declarations "
                  f"against all parcels -> EXTRAPOLATED LINEARLY to {gp_time:.1f} s for all "
                  f"({len(res):,} pieces); peak memory so far {_maxrss_gib():.2f} GiB",
                  flush=True)
            print(f"  area over that subset: geopandas {gp_area_sub:,.2f} m², ours "
                  f"{ours_sub:,.2f} m² (relative difference {_rel(ours_sub, gp_area_sub):.1e})")
        else:
            gp_area = gp_area_sub
            print(f"geopandas.overlay: {gp_time:.2f} s ({len(res):,} pieces); peak memory so "
                  f"far {_maxrss_gib():.2f} GiB", flush=True)
        del res, d, p

    # PostGIS
    pg_time = pg_area = None
    if not args.skip_postgis:
        t_load, pg_time, pg_area, settings = run_postgis(d_ids, d_geoms, p_ids, p_geoms)
        print(f"PostGIS ({settings}): load (COPY, GiST, ANALYZE; not in the ratio) "
              f"{t_load:.1f} s; query {pg_time:.2f} s", flush=True)

    print()
    print(f"ours full Overlay {ours_full:.2f} s, links alone {ours_links:.2f} s "
          f"(target: 1M x 1M in <= 30 s)")
    if gp_time is not None:
        ex = " (extrapolated)" if gp_area is None else ""
        print(f"geopandas / ours: {gp_time / ours_full:.1f}x against the full Overlay, "
              f"{gp_time / ours_links:.1f}x against the links table{ex} (target >= 3x)")
    if pg_time is not None:
        print(f"PostGIS / ours: {pg_time / ours_full:.1f}x against the full Overlay, "
              f"{pg_time / ours_links:.1f}x against the links table (target >= 1.5x)")
    print(f"peak memory: ours (VmHWM) {rss_ours:.2f} GiB (the engine's process, prepared "
          f"inputs included; target <= 6 GiB); the benchmark's main process (city, prepare, "
          f"geopandas) {_maxrss_gib():.2f} GiB; the PostGIS server is not counted")
    print(f"total overlap area: ours {ours_area:,.2f} m²", end="")
    if gp_area is not None:
        print(f", geopandas {gp_area:,.2f} m² (rel. diff {_rel(ours_area, gp_area):.1e})", end="")
    if pg_area is not None:
        print(f", PostGIS {pg_area:,.2f} m² (rel. diff {_rel(ours_area, pg_area):.1e})", end="")
    if gp_area is not None and pg_area is not None:
        print(f"; geopandas vs PostGIS {_rel(gp_area, pg_area):.1e}", end="")
    print(" (target <= 1e-6)")


if __name__ == "__main__":
    main()
