"""The in-process farmland overlay engine: shapely 2 arrays, STRtree, both cores.

:func:`overlay_inprocess` turns a :class:`~geosup.farmland.prepare.Prepared` bundle into
the :class:`~geosup.farmland.tables.Overlay` tables the rules read. Every step works on
arrays: ``STRtree.query(geoms, predicate="intersects")`` gives candidate pairs, and
``shapely.intersection`` / ``shapely.area`` run on the pair arrays. Declarations are cut
into chunks processed by a thread pool (shapely 2 releases the GIL inside GEOS), so both
cores work.

Which geometry a declaration stands for
    A declaration with a drawing stands for its drawing. A declaration by parcel id only
    stands for the whole reference parcel: it is linked ``by="id"`` with the parcel's area,
    and the parcel's geometry is what it claims when looking for double claims (``pairs``)
    and land-use overlaps (``land_use``). ``outside`` and ``changes`` measure drawings only.

Tables (see :mod:`geosup.farmland.tables` for the contract)
    - ``links``: drawn ∩ parcel above ``min_overlap_m2`` (``by="geometry"``), and the
      declared parcel for declarations without a drawing (``by="id"``).
    - ``pairs``: declarations of the same year whose land overlaps by more than
      ``min_overlap_m2``; the overlap geometry is the polygonal part of the intersection.
    - ``land_use``: per declaration and land-use class, the area of the declaration ∩ the
      union of that class's polygons (overlapping polygons of one class are not counted
      twice), above ``min_overlap_m2``.
    - ``outside``: one row per drawn declaration: drawn area − area of drawing ∩ union of
      the intersecting parcels (overlapping parcels are not counted twice), never below 0.
    - ``changes``: per declaration, the same applicant's declaration of the year before
      with the largest overlap of drawings (above ``min_overlap_m2``; ties: the smaller
      declaration id); for a declaration without a drawing, the one with the same declared
      ``parcel_id`` (``sym_diff_m2`` and ``union_m2`` are then NaN).

Examples
--------
>>> import geopandas as gpd
>>> from shapely import box
>>> from geosup.farmland.prepare import prepare
>>> parcels = gpd.GeoDataFrame(
...     {"parcel_id": ["P1", "P2"], "eligible_area": [10000.0, 10000.0]},
...     geometry=[box(500000, 0, 500100, 100), box(500100, 0, 500200, 100)], crs=32650)
>>> declarations = gpd.GeoDataFrame(
...     {"declaration_id": ["D1", "D2"], "applicant_id": ["A", "B"], "year": [2025, 2025],
...      "declared_area": [12000.0, 5000.0]},
...     geometry=[box(500000, 0, 500120, 100), box(500110, 0, 500210, 50)], crs=32650)
>>> overlay = overlay_inprocess(prepare(declarations, parcels, area_unit="m2", crs=32650))
>>> overlay.links[["declaration_id", "parcel_id", "overlap_m2"]].values.tolist()
[['D1', 'P1', 10000.0], ['D1', 'P2', 2000.0], ['D2', 'P2', 4500.0]]
>>> overlay.outside[["declaration_id", "outside_m2", "outside_share"]].values.tolist()
[['D1', 0.0, 0.0], ['D2', 500.0, 0.1]]
>>> overlay.pairs[["declaration_a", "declaration_b", "overlap_m2", "share_b"]].values.tolist()
[['D1', 'D2', 500.0, 0.1]]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from shapely.errors import GEOSException

from geosup.farmland.prepare import Prepared
from geosup.farmland.tables import TABLE_COLUMNS, Overlay

__all__ = ["SUBDIVIDE_VERTICES", "overlay_inprocess", "subdivide", "union_by_group"]

logger = logging.getLogger(__name__)

# Declarations per chunk handed to a worker thread: a few thousand keep the pair arrays
# large enough for vectorised GEOS calls and give the threads enough chunks to balance the
# load (timings in overlay_inprocess).
_CHUNK = 2000
#: Most vertices per piece when large land-use polygons are cut (as the PostGIS engine's
#: ``ST_Subdivide``).
SUBDIVIDE_VERTICES = 256
_FALLBACK_GRID_M = 0.01
_ID_COLUMNS = frozenset({"declaration_id", "parcel_id", "declaration_a", "declaration_b",
                         "applicant_a", "applicant_b", "previous_id", "land_use"})


# ---------------------------------------------------------------------------------------------
# Robust vectorised geometry operations
# ---------------------------------------------------------------------------------------------


class _Retries:
    """Pairs that needed a retry after a GEOS error, and pairs that failed even then (one
    counter per chunk, so no sharing between threads)."""

    def __init__(self) -> None:
        self.count = 0
        self.failed = 0


_BISECT_MIN = 16


def _intersection(a: np.ndarray, b: np.ndarray, retries: _Retries, grid: float) -> np.ndarray:
    """``shapely.intersection(a, b)`` pairwise, never raising a GEOS error.

    On an error (a non-noded intersection, a topology exception), the arrays are halved
    until the failing pairs are isolated, so only those pairs are redone: with snap-rounding
    on the precision grid (``grid_size``), then on inputs repaired with ``make_valid`` and
    snapped with ``set_precision``; a pair that still fails counts as empty (and is
    counted in ``retries.failed``).
    """
    try:
        return shapely.intersection(a, b)
    except GEOSException:
        if len(a) > _BISECT_MIN:
            half = len(a) // 2
            return np.concatenate([_intersection(a[:half], b[:half], retries, grid),
                                   _intersection(a[half:], b[half:], retries, grid)])
    out = np.empty(len(a), dtype=object)
    for i in range(len(a)):  # at most _BISECT_MIN pairs around a failing one
        try:
            out[i] = shapely.intersection(a[i], b[i])
            continue
        except GEOSException:
            retries.count += 1
        try:
            out[i] = shapely.intersection(a[i], b[i], grid_size=grid)
            continue
        except GEOSException:
            pass
        try:
            fixed = shapely.set_precision(shapely.make_valid(np.array([a[i], b[i]])), grid)
            out[i] = shapely.intersection(fixed[0], fixed[1], grid_size=grid)
        except GEOSException:
            out[i] = shapely.Polygon()
            retries.failed += 1
            logger.warning("intersection failed even after repair; counted as empty")
    return out


def _query(tree: shapely.STRtree, geoms: np.ndarray) -> np.ndarray:
    """Pairs (input index, tree index) whose geometries intersect; on a GEOS error in the
    predicate, the bounding-box pairs (the overlay then measures them)."""
    try:
        return tree.query(geoms, predicate="intersects")
    except GEOSException:
        return tree.query(geoms)


def _clip(a: np.ndarray, b: np.ndarray, retries: _Retries, grid: float) -> np.ndarray:
    """``a ∩ b`` pairwise; a geometry inside the other is taken as is (no overlay needed)."""
    out = np.empty(len(a), dtype=object)
    try:
        a_in_b = shapely.contains(b, a)
        b_in_a = ~a_in_b & shapely.contains(a, b)
    except GEOSException:  # let the overlay (and its retries) decide
        a_in_b = b_in_a = np.zeros(len(a), dtype=bool)
    out[a_in_b] = a[a_in_b]
    out[b_in_a] = b[b_in_a]
    rest = ~(a_in_b | b_in_a)
    if rest.any():
        out[rest] = _intersection(a[rest], b[rest], retries, grid)
    return out


def _overlapping(
    geoms: np.ndarray,
    tree: shapely.STRtree,
    groups: np.ndarray | None = None,
    *,
    pool: ThreadPoolExecutor | None = None,
) -> np.ndarray:
    """Which geometries share interior with another one (of the same group, if given)."""
    q = _query(tree, geoms)
    q = q[:, q[0] < q[1]]
    if groups is not None:
        q = q[:, groups[q[0]] == groups[q[1]]]

    def relate(sel: np.ndarray) -> np.ndarray:
        try:
            return shapely.relate_pattern(geoms[q[0][sel]], geoms[q[1][sel]], "T********")
        except GEOSException:  # assume they overlap: the areas are then unioned, not added
            return np.ones(len(sel), dtype=bool)

    chunks = np.array_split(np.arange(q.shape[1]), 8 if pool is not None else 1)
    results = pool.map(relate, chunks) if pool is not None else map(relate, chunks)
    hit = np.concatenate(list(results))
    flag = np.zeros(len(geoms), dtype=bool)
    flag[q[0][hit]] = True
    flag[q[1][hit]] = True
    return flag


def _area_of_union(
    pieces: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    flagged: np.ndarray,
    retries: _Retries,
    grid: float,
) -> np.ndarray:
    """Area of the union of each group's pieces; a union is computed only for groups with
    two or more pieces cut from geometries that overlap others (``flagged``), the other
    groups' pieces are disjoint and their areas add up."""
    piece_m2 = shapely.area(pieces)
    total = np.bincount(groups, weights=piece_m2, minlength=n_groups)
    need = np.bincount(groups, weights=flagged.astype(np.float64), minlength=n_groups) >= 2
    if need.any():
        sel = need[groups]
        uniq, dense = np.unique(groups[sel], return_inverse=True)
        merged = union_by_group(pieces[sel], dense, len(uniq), grid=grid, _retries=retries)
        total[uniq] = shapely.area(merged)
    return total


def _union(rows: np.ndarray, retries: _Retries, grid: float) -> np.ndarray:
    """Union of each row of a 2-D array padded with None."""
    try:
        return shapely.union_all(rows, axis=1)
    except GEOSException:
        if len(rows) > 1:
            half = len(rows) // 2
            return np.concatenate([_union(rows[:half], retries, grid),
                                   _union(rows[half:], retries, grid)])
    retries.count += 1
    try:
        return shapely.union_all(rows, grid_size=grid, axis=1)
    except GEOSException:
        pass
    try:
        return shapely.union_all(shapely.set_precision(shapely.make_valid(rows), grid),
                                 grid_size=grid, axis=1)
    except GEOSException:
        retries.failed += 1
        logger.warning("union failed even after repair; the largest piece stands for it")
        areas = np.nan_to_num(shapely.area(rows[0]))
        return np.array([rows[0][int(np.argmax(areas))]], dtype=object)


def union_by_group(
    geoms: np.ndarray,
    groups: np.ndarray,
    n_groups: int,
    *,
    grid: float = _FALLBACK_GRID_M,
    _retries: _Retries | None = None,
) -> np.ndarray:
    """Union the geometries of each group, vectorised.

    Groups of one geometry are passed through; larger groups are unioned with
    ``shapely.union_all(..., axis=1)`` on None-padded 2-D arrays, bucketed by size so that
    one large group does not pad every other one.

    Parameters
    ----------
    geoms : numpy.ndarray of shapely geometries
        The geometries.
    groups : numpy.ndarray of int
        Group of each geometry, in ``range(n_groups)``.
    n_groups : int
        Number of groups.
    grid : float
        Precision grid used only when GEOS fails on the plain union.

    Returns
    -------
    numpy.ndarray
        One geometry per group (None for a group without geometries).

    Examples
    --------
    >>> import numpy as np, shapely
    >>> g = np.array([shapely.box(0, 0, 2, 1), shapely.box(1, 0, 3, 1), shapely.box(5, 5, 6, 6)])
    >>> shapely.area(union_by_group(g, np.array([0, 0, 2]), 3)).tolist()
    [3.0, nan, 1.0]
    """
    retries = _retries if _retries is not None else _Retries()
    out = np.full(n_groups, None, dtype=object)
    if len(geoms) == 0:
        return out
    order = np.argsort(groups, kind="stable")
    g_sorted = groups[order]
    geoms_sorted = np.asarray(geoms, dtype=object)[order]
    uniq, start, size = np.unique(g_sorted, return_index=True, return_counts=True)
    single = size == 1
    out[uniq[single]] = geoms_sorted[start[single]]
    many = np.flatnonzero(~single)
    if not len(many):
        return out
    # Buckets of sizes (2], (2, 4], (4, 8] ... keep the padding below half.
    bucket = np.ceil(np.log2(size[many])).astype(np.int64)
    for b in np.unique(bucket):
        sel = many[bucket == b]
        width = int(size[sel].max())
        rows = np.full((len(sel), width), None, dtype=object)
        counts = size[sel]
        row_of = np.repeat(np.arange(len(sel)), counts)
        col_of = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        rows[row_of, col_of] = geoms_sorted[np.repeat(start[sel], counts) + col_of]
        out[uniq[sel]] = _union(rows, retries, grid)
    return out


def subdivide(
    geoms: np.ndarray, *, max_vertices: int = SUBDIVIDE_VERTICES
) -> tuple[np.ndarray, np.ndarray]:
    """Cut polygons with many vertices into pieces, like PostGIS ``ST_Subdivide``.

    A polygon with more than ``max_vertices`` vertices is cut in two across the middle of
    the longer side of its bounding box, and the halves again, level by level (all
    polygons of a level in one vectorised call), until every piece is small enough. The
    pieces of one polygon do not overlap and their areas add up to its area.

    Parameters
    ----------
    geoms : numpy.ndarray of shapely geometries
        Polygons or MultiPolygons (None and empty geometries give no pieces).
    max_vertices : int, default 256
        Most vertices per piece (pieces of a polygon this cut cannot simplify, e.g. a
        dense cluster of vertices, stop after 32 levels).

    Returns
    -------
    pieces : numpy.ndarray
        Polygons.
    owner : numpy.ndarray of int
        Index into ``geoms`` of each piece.

    Examples
    --------
    >>> import shapely
    >>> disc = shapely.Point(0, 0).buffer(100, quad_segs=256)  # 1,025 vertices
    >>> pieces, owner = subdivide(np.array([disc, shapely.box(0, 0, 1, 1)]), max_vertices=256)
    >>> int(shapely.get_num_coordinates(pieces).max()) <= 256, sorted(set(owner.tolist()))
    (True, [0, 1])
    >>> bool(abs(shapely.area(pieces[owner == 0]).sum() - disc.area) < 1e-6)
    True
    """
    geoms = np.asarray(geoms, dtype=object)
    pieces, owner = shapely.get_parts(geoms, return_index=True)
    keep = ~shapely.is_empty(pieces)
    pieces, owner = pieces[keep], owner[keep]
    done_pieces, done_owner = [], []
    retries = _Retries()
    for _ in range(32):
        big = shapely.get_num_coordinates(pieces) > max_vertices
        done_pieces.append(pieces[~big])
        done_owner.append(owner[~big])
        pieces, owner = pieces[big], owner[big]
        if not len(pieces):
            break
        x0, y0, x1, y1 = shapely.bounds(pieces).T
        wide = (x1 - x0) >= (y1 - y0)
        xm, ym = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        first = np.where(wide, shapely.box(x0, y0, xm, y1), shapely.box(x0, y0, x1, ym))
        second = np.where(wide, shapely.box(xm, y0, x1, y1), shapely.box(x0, ym, x1, y1))
        halves = _polygonal(_intersection(np.concatenate([pieces, pieces]),
                                          np.concatenate([first, second]), retries,
                                          _FALLBACK_GRID_M))
        parts, index = shapely.get_parts(halves, return_index=True)
        keep = ~shapely.is_empty(parts) & (shapely.area(parts) > 0)
        pieces, owner = parts[keep], np.concatenate([owner, owner])[index][keep]
    done_pieces.append(pieces)
    done_owner.append(owner)
    return np.concatenate(done_pieces), np.concatenate(done_owner).astype(np.int64)


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """The polygonal part of each geometry (intersections may add touching lines/points)."""
    geoms = np.asarray(geoms, dtype=object)
    type_id = shapely.get_type_id(geoms)
    mixed = type_id == shapely.GeometryType.GEOMETRYCOLLECTION
    if not mixed.any():
        return geoms
    out = geoms.copy()
    idx = np.flatnonzero(mixed)
    parts, owner = shapely.get_parts(geoms[idx], return_index=True)
    keep = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    parts, sub = shapely.get_parts(parts[keep], return_index=True)  # flatten MultiPolygons
    owner = owner[keep][sub]
    rebuilt = np.full(len(idx), None, dtype=object)
    if len(parts):
        groups, dense = np.unique(owner, return_inverse=True)
        rebuilt[groups] = shapely.multipolygons(parts, indices=dense)
    rebuilt[shapely.is_missing(rebuilt)] = shapely.Polygon()
    out[idx] = rebuilt
    return out


# ---------------------------------------------------------------------------------------------
# The work of one chunk of declarations
# ---------------------------------------------------------------------------------------------


@dataclass
class _Inputs:
    ids: np.ndarray  # declaration ids (object)
    applicant_ids: np.ndarray
    effective: np.ndarray  # drawing, else the declared parcel's geometry, else None
    drawn: np.ndarray  # bool
    drawn_geoms: np.ndarray  # drawing or None
    by_id: np.ndarray  # bool: no drawing, declared parcel found
    effective_m2: np.ndarray
    drawn_m2: np.ndarray  # NaN without a drawing
    year: np.ndarray
    applicant: np.ndarray  # factorised codes
    declared_pid: np.ndarray
    parcel_code: np.ndarray  # position of the declared parcel (-1 for none)
    declared_m2: np.ndarray
    parcel_ids: np.ndarray
    parcel_geoms: np.ndarray
    parcel_m2: np.ndarray
    parcel_tree: shapely.STRtree
    parcel_overlaps: np.ndarray  # bool: shares interior with another parcel
    decl_tree: shapely.STRtree
    lu_geoms: np.ndarray | None
    lu_class: np.ndarray | None
    lu_classes: np.ndarray
    lu_tree: shapely.STRtree | None
    lu_overlaps: np.ndarray | None  # bool: shares interior with a polygon of its class
    min_overlap_m2: float
    grid: float


@dataclass
class _Part:
    links: tuple[np.ndarray, np.ndarray, np.ndarray]  # decl, parcel, overlap
    covered: tuple[np.ndarray, np.ndarray]  # decl, covered m² (drawn ∩ ∪ parcels)
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # a, b, overlap, geometry
    prev: tuple[np.ndarray, np.ndarray, np.ndarray]  # later decl, earlier decl, overlap
    land_use: tuple[np.ndarray, np.ndarray, np.ndarray]  # decl, class, overlap
    retries: int
    failed: int


def _chunk(inp: _Inputs, idx: np.ndarray) -> _Part:
    retries = _Retries()
    mins = inp.min_overlap_m2

    # Drawn declarations against reference parcels: links and covered area.
    drawn_idx = idx[inp.drawn[idx]]
    q = _query(inp.parcel_tree, inp.effective[drawn_idx])
    d_of, p_of = drawn_idx[q[0]], q[1]
    pieces = _clip(inp.effective[d_of], inp.parcel_geoms[p_of], retries, inp.grid)
    piece_m2 = shapely.area(pieces)
    linked = piece_m2 > mins
    links = (d_of[linked], p_of[linked], piece_m2[linked])
    # Covered area: drawn ∩ union of the parcels (parcels may overlap each other).
    local, dense = np.unique(d_of, return_inverse=True)
    covered = (local, _area_of_union(pieces, dense, len(local), inp.parcel_overlaps[p_of],
                                     retries, inp.grid))

    # Declarations against declarations: pairs (same year) and previous-year matches.
    q = _query(inp.decl_tree, inp.effective[idx])
    a, b = idx[q[0]], q[1]
    keep = a < b
    a, b = a[keep], b[keep]
    same_year = inp.year[a] == inp.year[b]
    consecutive = (
        (np.abs(inp.year[a] - inp.year[b]) == 1)
        & (inp.applicant[a] == inp.applicant[b])
        & inp.drawn[a] & inp.drawn[b]
    )
    sel = same_year | consecutive
    a, b, same_year = a[sel], b[sel], same_year[sel]
    inter = _clip(inp.effective[a], inp.effective[b], retries, inp.grid)
    over = shapely.area(inter)
    is_pair = same_year & (over > mins)
    pairs = (a[is_pair], b[is_pair], over[is_pair], _polygonal(inter[is_pair]))
    is_prev = ~same_year & (over > mins)
    later = np.where(inp.year[a] > inp.year[b], a, b)
    earlier = np.where(inp.year[a] > inp.year[b], b, a)
    prev = (later[is_prev], earlier[is_prev], over[is_prev])

    # Land use: declaration ∩ union of each class's polygons it touches.
    if inp.lu_tree is not None and inp.lu_overlaps is not None:
        q = _query(inp.lu_tree, inp.effective[idx])
        d_of, l_of = idx[q[0]], q[1]
        lu_pieces = _clip(inp.effective[d_of], inp.lu_geoms[l_of], retries, inp.grid)
        cls = inp.lu_class[l_of]
        n_cls = max(len(inp.lu_classes), 1)
        key = d_of.astype(np.int64) * n_cls + cls
        uniq, dense = np.unique(key, return_inverse=True)
        area = _area_of_union(lu_pieces, dense, len(uniq), inp.lu_overlaps[l_of], retries,
                              inp.grid)
        hit = area > mins
        land_use = (uniq[hit] // n_cls, uniq[hit] % n_cls, area[hit])
    else:
        empty = np.empty(0, dtype=np.int64)
        land_use = (empty, empty, np.empty(0))
    return _Part(links, covered, pairs, prev, land_use, retries.count, retries.failed)


# ---------------------------------------------------------------------------------------------
# overlay_inprocess
# ---------------------------------------------------------------------------------------------


def overlay_inprocess(
    prepared: Prepared,
    *,
    min_overlap_m2: float = 0.01,
    workers: int = 2,
    progress: Callable[[int], None] | None = None,
) -> Overlay:
    """Measure declarations against parcels, land use, each other and the year before.

    Parameters
    ----------
    prepared : Prepared
        The output of :func:`geosup.farmland.prepare.prepare`.
    min_overlap_m2 : float, default 0.01
        Overlaps of this area or less are not links, pairs, land-use rows or year matches
        (edges that merely touch, floating-point crumbs).
    workers : int, default 2
        Threads working on chunks of declarations (1: no thread pool).
    progress : callable, optional
        Called with the number of declarations finished, once per chunk, from the calling
        thread.

    Returns
    -------
    Overlay
        Every table of :mod:`geosup.farmland.tables`; ``notes`` holds the engine name, the
        years under review, the user's area unit, ``min_overlap_m2``, ``geos_retries``
        (pairs redone after a GEOS error) and ``geos_failed`` (pairs counted as empty).
    """
    # Threads: shapely releases the GIL inside GEOS, so chunks of declarations run in
    # parallel. Measured with bench/farmland_overlay.py on a shared 2-core machine (shapely
    # 2.2, GEOS 3.14): 20,000 parcels / 17,972 declarations: 1 thread 1.61 s, 2 threads
    # 1.02 s (geopandas overlay + sjoin 1.41 s); 100,000 / 90,086: 1 thread 10.3 s,
    # 2 threads 5.6-6.5 s (geopandas 7.8-8.4 s). The pool is kept.
    n = len(prepared.declarations)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        inp = _setup(prepared, float(min_overlap_m2), pool)
        n_chunks = max(1, -(-n // _CHUNK), min(4 * max(workers, 1), n))
        chunks = [c for c in np.array_split(np.arange(n), n_chunks) if len(c)]
        results = (pool.map(lambda c: _chunk(inp, c), chunks) if pool is not None
                   else (_chunk(inp, c) for c in chunks))
        parts: list[_Part] = []
        for c, part in zip(chunks, results, strict=True):
            parts.append(part)
            if progress is not None:
                progress(len(c))
    finally:
        if pool is not None:
            pool.shutdown()
    retries = sum(p.retries for p in parts)
    failed = sum(p.failed for p in parts)
    if retries:
        logger.warning("%d geometry pairs needed a retry after a GEOS error (%d failed)",
                       retries, failed)
    tables = _tables(inp, parts)
    return Overlay(
        crs=prepared.crs,
        declarations=_declarations_table(prepared, inp),
        parcels=pd.DataFrame({
            "parcel_id": prepared.parcels["parcel_id"].to_numpy(),
            "eligible_m2": prepared.parcels["eligible_m2"].to_numpy(dtype=np.float64),
            "area_m2": inp.parcel_m2,
            "perimeter_m": shapely.length(inp.parcel_geoms),
            "land_use": prepared.parcels["land_use"].to_numpy(),
            "geometry": inp.parcel_geoms,
        }).astype({"parcel_id": prepared.parcels["parcel_id"].dtype,
                   "land_use": prepared.parcels["land_use"].dtype}),
        notes={
            "engine": "inprocess",
            "years": tuple(prepared.years),
            "area_unit": prepared.area_unit,
            "min_overlap_m2": float(min_overlap_m2),
            "geos_retries": int(retries),
            "geos_failed": int(failed),
        },
        **tables,
    )


def _unprepare(geoms: np.ndarray) -> None:
    """Drop GEOS prepared geometries: they build their indexes lazily and are not safe to
    share between threads (libgeos/geos#825; a prepared parcel used by two chunks at once
    crashed the test run). Unprepared, predicates are plain GEOS calls on immutable
    geometries, and ``STRtree.query`` prepares each query geometry temporarily inside its
    own call. Measured: ``contains`` on the pair arrays costs about the same either way."""
    present = ~shapely.is_missing(geoms)
    if present.any():
        shapely.destroy_prepared(geoms[present])


def _setup(prepared: Prepared, min_overlap_m2: float, pool: ThreadPoolExecutor | None) -> _Inputs:
    """Arrays, trees and flags shared by every chunk."""
    decl, parcels = prepared.declarations, prepared.parcels
    grid = float(getattr(prepared, "precision_m", 0.0) or _FALLBACK_GRID_M)
    parcel_geoms = np.asarray(parcels.geometry.array, dtype=object)
    parcel_ids = parcels["parcel_id"].astype(object).to_numpy()
    position = pd.Series(np.arange(len(parcels)), index=parcel_ids)
    position = position[~position.index.duplicated()]

    geoms = np.asarray(decl.geometry.array, dtype=object)
    drawn = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    drawn_geoms = np.where(drawn, geoms, None)
    declared_pid = decl["parcel_id"].astype(object).to_numpy()
    pcode = position.reindex(declared_pid).to_numpy()
    pcode = np.where(pd.isna(pcode), -1, pcode).astype(np.int64)
    by_id = ~drawn & (pcode >= 0)
    effective = drawn_geoms.copy()
    effective[by_id] = parcel_geoms[pcode[by_id]]

    lu = prepared.land_use
    lu_geoms = lu_class = lu_tree = lu_overlaps = None
    classes = np.empty(0, dtype=object)
    if lu is not None and len(lu):
        whole = np.asarray(lu.geometry.array, dtype=object)
        _unprepare(whole)
        codes, classes = pd.factorize(lu["land_use"].astype(object))
        flagged = _overlapping(whole, shapely.STRtree(whole), codes, pool=pool)
        # Large polygons (a forest, a river) are cut into pieces so that each declaration is
        # intersected with the few pieces near it, not with the whole polygon.
        lu_geoms, owner = subdivide(whole)
        lu_class, lu_overlaps = codes[owner], flagged[owner]
        lu_tree = shapely.STRtree(lu_geoms)
    parcel_tree = shapely.STRtree(parcel_geoms)
    _unprepare(parcel_geoms)
    _unprepare(effective)
    return _Inputs(
        ids=decl["declaration_id"].astype(object).to_numpy(),
        applicant_ids=decl["applicant_id"].astype(object).to_numpy(),
        effective=effective, drawn=drawn, drawn_geoms=drawn_geoms, by_id=by_id,
        effective_m2=shapely.area(effective), drawn_m2=shapely.area(drawn_geoms),
        year=decl["year"].to_numpy(dtype=np.int64),
        applicant=pd.factorize(decl["applicant_id"].astype(object))[0],
        declared_pid=declared_pid, parcel_code=pcode,
        declared_m2=decl["declared_m2"].to_numpy(dtype=np.float64),
        parcel_ids=parcel_ids, parcel_geoms=parcel_geoms,
        parcel_m2=shapely.area(parcel_geoms), parcel_tree=parcel_tree,
        parcel_overlaps=_overlapping(parcel_geoms, parcel_tree, pool=pool),
        decl_tree=shapely.STRtree(effective), lu_geoms=lu_geoms, lu_class=lu_class,
        lu_classes=np.asarray(classes, dtype=object), lu_tree=lu_tree, lu_overlaps=lu_overlaps,
        min_overlap_m2=min_overlap_m2, grid=grid,
    )


def _declarations_table(prepared: Prepared, inp: _Inputs) -> pd.DataFrame:
    decl = prepared.declarations
    perimeter = shapely.length(inp.drawn_geoms)
    perimeter[inp.by_id] = shapely.length(inp.parcel_geoms[inp.parcel_code[inp.by_id]])
    out = pd.DataFrame({
        "declaration_id": decl["declaration_id"].to_numpy(),
        "applicant_id": decl["applicant_id"].to_numpy(),
        "year": inp.year,
        "village": decl["village"].to_numpy(),
        "parcel_id": decl["parcel_id"].to_numpy(),
        "crop": decl["crop"].to_numpy(),
        "subsidy_amount": decl["subsidy_amount"].to_numpy(dtype=np.float64),
        "declared_m2": inp.declared_m2,
        "drawn_m2": inp.drawn_m2,
        "perimeter_m": perimeter,
        "geometry": inp.drawn_geoms,
        "is_previous": decl["is_previous"].to_numpy(dtype=bool),
    })
    return out.astype({c: decl[c].dtype for c in
                       ("declaration_id", "applicant_id", "village", "parcel_id", "crop")})


def _gather(parts: list[_Part], name: str, i: int, dtype: type = np.int64) -> np.ndarray:
    arrays = [getattr(p, name)[i] for p in parts]
    return np.concatenate(arrays).astype(dtype) if arrays else np.empty(0, dtype=dtype)


def _tables(inp: _Inputs, parts: list[_Part]) -> dict[str, pd.DataFrame]:
    """links, pairs, land_use, outside and changes from the chunks' results."""
    ids = inp.ids
    # links: by geometry from the chunks, by id for declarations without a drawing
    l_decl, l_parcel = _gather(parts, "links", 0), _gather(parts, "links", 1)
    id_decl = np.flatnonzero(inp.by_id)
    id_parcel = inp.parcel_code[id_decl]
    links = pd.DataFrame({
        "declaration_id": np.concatenate([ids[l_decl], ids[id_decl]]),
        "parcel_id": np.concatenate([inp.parcel_ids[l_parcel], inp.parcel_ids[id_parcel]]),
        "overlap_m2": np.concatenate([_gather(parts, "links", 2, np.float64),
                                      inp.parcel_m2[id_parcel]]),
        "by": np.concatenate([np.full(len(l_decl), "geometry", dtype=object),
                              np.full(len(id_decl), "id", dtype=object)]),
    })

    # outside: one row per drawn declaration
    covered = np.zeros(len(ids))
    covered[_gather(parts, "covered", 0)] = _gather(parts, "covered", 1, np.float64)
    which = np.flatnonzero(inp.drawn)
    outside_m2 = np.clip(inp.drawn_m2[which] - covered[which], 0.0, None)
    outside = pd.DataFrame({
        "declaration_id": ids[which],
        "outside_m2": outside_m2,
        "outside_share": outside_m2 / inp.drawn_m2[which],
    })

    # pairs, ordered so that declaration_a < declaration_b
    pa, pb = _gather(parts, "pairs", 0), _gather(parts, "pairs", 1)
    over = _gather(parts, "pairs", 2, np.float64)
    swap = ids[pa].astype(str) > ids[pb].astype(str)
    first, second = np.where(swap, pb, pa), np.where(swap, pa, pb)
    pairs = pd.DataFrame({
        "declaration_a": ids[first],
        "declaration_b": ids[second],
        "applicant_a": inp.applicant_ids[first],
        "applicant_b": inp.applicant_ids[second],
        "year": inp.year[first],
        "overlap_m2": over,
        "share_a": over / inp.effective_m2[first],
        "share_b": over / inp.effective_m2[second],
        "geometry": _gather(parts, "pairs", 3, object),
    })

    u_decl, u_cls = _gather(parts, "land_use", 0), _gather(parts, "land_use", 1)
    land_use = pd.DataFrame({
        "declaration_id": ids[u_decl],
        "land_use": inp.lu_classes[u_cls],
        "overlap_m2": _gather(parts, "land_use", 2, np.float64),
    })

    tables = {
        "links": links.sort_values(["declaration_id", "parcel_id", "by"]),
        "pairs": pairs.sort_values(["declaration_a", "declaration_b"]),
        "land_use": land_use.sort_values(["declaration_id", "land_use"]),
        "outside": outside.sort_values("declaration_id"),
        "changes": _changes(inp, parts).sort_values("declaration_id"),
    }
    for name, frame in tables.items():
        frame = frame.reset_index(drop=True)
        for col in _ID_COLUMNS.intersection(frame.columns):
            frame[col] = frame[col].astype(object).astype(pd.StringDtype())
        tables[name] = frame.loc[:, [*TABLE_COLUMNS[name]]]
    return tables


def _changes(inp: _Inputs, parts: list[_Part]) -> pd.DataFrame:
    """Each declaration against the same applicant's declaration of the year before."""
    ids = inp.ids
    # Largest overlap of drawings per later declaration (ties: smaller declaration id).
    geo = pd.DataFrame({"cur": _gather(parts, "prev", 0), "prev": _gather(parts, "prev", 1),
                        "over": _gather(parts, "prev", 2, np.float64)})
    geo["pid"] = ids[geo["prev"].to_numpy()]
    geo = geo.sort_values(["cur", "over", "pid"], ascending=[True, False, True])
    geo = geo.drop_duplicates("cur")

    # Without a drawing: the same declared parcel id, the year before, same applicant.
    frame = pd.DataFrame({"i": np.arange(len(ids)), "year": inp.year,
                          "applicant": inp.applicant, "pid": inp.declared_pid, "id": ids})
    frame = frame[pd.notna(frame["pid"])]
    current = frame[~inp.drawn[frame["i"].to_numpy(dtype=np.int64)]]
    before = frame.assign(year=frame["year"] + 1).sort_values("id")
    by_pid = current.merge(before, on=["year", "applicant", "pid"], suffixes=("", "_prev"))
    by_pid = by_pid.drop_duplicates("i")

    cur = np.concatenate([geo["cur"].to_numpy(np.int64), by_pid["i"].to_numpy(np.int64)])
    prev = np.concatenate([geo["prev"].to_numpy(np.int64), by_pid["i_prev"].to_numpy(np.int64)])
    inter = np.concatenate([geo["over"].to_numpy(np.float64), np.full(len(by_pid), np.nan)])
    a, b = inp.drawn_m2[cur], inp.drawn_m2[prev]
    return pd.DataFrame({
        "declaration_id": ids[cur],
        "previous_id": ids[prev],
        "declared_m2": inp.declared_m2[cur],
        "previous_m2": inp.declared_m2[prev],
        "sym_diff_m2": np.clip(a + b - 2.0 * inter, 0.0, None),
        "union_m2": a + b - inter,
    })
