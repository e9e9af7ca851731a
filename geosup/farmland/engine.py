"""The in-process farmland overlay engine: shapely 2 arrays, STRtree, both cores.

:func:`overlay_inprocess` turns a :class:`~geosup.farmland.prepare.Prepared` bundle into
the :class:`~geosup.farmland.tables.Overlay` tables the rules read. Every step works on
arrays: ``STRtree.query`` gives bounding-box pairs, and numba kernels measure them, in local
coordinates (within ~1e-8 m² of GEOS; GEOS's own overlay at 10^6 m coordinates is less
exact), with no GEOS overlay:

- the convex-clip kernel where one polygon of the pair is convex and simple
  (Sutherland-Hodgman clipping of one ring by the other's half-planes);
- Green's-theorem kernel for any other Polygons and MultiPolygons: the area of a ∩ b is
  the integral of (x dy - y dx) / 2 along the parts of a's rings inside b and of b's rings
  inside a, found from the crossings of their edges (shifted by 1e-8 m into general
  position for the inside/outside decisions, measured on the unshifted coordinates);
- the fan kernel where Green's gives up (a tie or too many crossings): b as a signed sum of
  triangles fanned from one vertex, each clipped against a's rings; it takes no
  topological decision at all.

The overlap polygons of ``pairs`` come from the convex-clip kernel for two convex polygons
and from the crossing kernel (Greiner-Hormann over the same shifted crossings, the exact
input vertices kept) for other simple polygons; a result that is not valid or whose area
differs from the measured one goes to GEOS, as do polygons with holes (``intersection``
with retries on GEOS errors). Declarations are cut into chunks processed by a thread pool
(GEOS and the kernels release the GIL), so both cores work.

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

import numba
import numpy as np
import pandas as pd
import shapely
from shapely.errors import GEOSException

from geosup.farmland.prepare import Prepared
from geosup.farmland.tables import TABLE_COLUMNS, Overlay

__all__ = ["SUBDIVIDE_VERTICES", "link_areas", "overlay_inprocess", "subdivide", "union_by_group"]

logger = logging.getLogger(__name__)

# Declarations per chunk handed to a worker thread: a few thousand keep the pair arrays
# large enough for vectorised GEOS calls and give the threads enough chunks to balance the
# load (timings in overlay_inprocess).
_CHUNK = 2000
#: Most vertices per piece when large land-use polygons are cut (as the PostGIS engine's
#: ``ST_Subdivide``).
SUBDIVIDE_VERTICES = 256
_FALLBACK_GRID_M = 0.01
#: Kernel areas at or below this (m²) are rounding crumbs of pairs that touch or are apart.
_CRUMB_M2 = 1e-9
#: Overlaps of two reference parcels (or land-use polygons) at or below this (m²) are taken
#: as none when deciding whether their areas may simply be added.
_SHARED_M2 = 1e-3
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


class _Rings:
    """Rings of polygonal geometries as flat coordinate arrays, for the area kernels.

    Coordinates of simple polygons (a Polygon without holes) come first, geometry by
    geometry (``offset``: for the convex-clip kernel), then the rings of the other
    Polygons and MultiPolygons. The ring table lists every ring of geometry ``g`` at
    ``ring_start/ring_end[roff[g]:roff[g + 1]]`` with its weight ``ring_w``: +1 or -1 (the
    ring's orientation times +1 for a shell and -1 for a hole), 0 for a ring without area.
    ``simple``, ``convex`` and the orientation ``sign`` describe simple polygons; ``polygonal``
    marks non-empty Polygons and MultiPolygons (every ring kernel applies); ``box`` holds the
    bounds."""

    def __init__(self, geoms: np.ndarray) -> None:
        geoms = np.asarray(geoms, dtype=object)
        n = len(geoms)
        kind = shapely.get_type_id(geoms)
        nonempty = ~shapely.is_empty(geoms) & ~shapely.is_missing(geoms)
        polygon = kind == shapely.GeometryType.POLYGON
        self.polygonal = nonempty & (polygon | (kind == shapely.GeometryType.MULTIPOLYGON))
        simple = polygon & nonempty & (shapely.get_num_interior_rings(geoms) == 0)
        # A polygon without holes: its coordinates are those of its exterior ring.
        xy, owner = shapely.get_coordinates(np.where(simple, geoms, None), return_index=True)
        counts = np.bincount(owner, minlength=n)
        self.offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # (x and y stay strided views of GEOS's (n, 2) output: copying them costs more
        # than the kernels gain, and a vertex's x and y sit side by side)
        self.sign, convex = _ring_shape(xy[:, 0], xy[:, 1], self.offset)
        self.simple = simple & (counts >= 4) & (self.sign != 0)
        self.convex = self.simple & convex
        self.max_vertices = int(counts.max()) if len(counts) else 0
        # Ring table: one ring per simple polygon, then the rings of the others.
        s_own = np.flatnonzero(simple)
        r_own, r_start, r_end, r_w = [s_own], [self.offset[s_own]], [self.offset[s_own + 1]], \
            [self.sign[s_own].astype(np.int8)]
        other = np.flatnonzero(self.polygonal & ~simple)
        if len(other):
            parts, p_of = shapely.get_parts(geoms[other], return_index=True)
            rings, ring_part = shapely.get_rings(parts, return_index=True)
            shell = np.ones(len(rings), dtype=bool)
            shell[1:] = ring_part[1:] != ring_part[:-1]
            rxy, r_of = shapely.get_coordinates(rings, return_index=True)
            r_counts = np.bincount(r_of, minlength=len(rings))
            r_off = np.concatenate([[0], np.cumsum(r_counts)]).astype(np.int64)
            r_sign, _ = _ring_shape(rxy[:, 0], rxy[:, 1], r_off)
            base = len(xy)
            xy = np.concatenate([xy, rxy])
            r_own.append(other[p_of[ring_part]])
            r_start.append(r_off[:-1] + base)
            r_end.append(r_off[1:] + base)
            r_w.append((r_sign * np.where(shell, 1, -1)).astype(np.int8))
            self.max_vertices = max(self.max_vertices, int(r_counts.max()))
        own = np.concatenate(r_own)
        order = np.argsort(own, kind="stable")
        self.ring_start = np.concatenate(r_start).astype(np.int64)[order]
        self.ring_end = np.concatenate(r_end).astype(np.int64)[order]
        self.ring_w = np.concatenate(r_w)[order]
        self.roff = np.concatenate([[0], np.cumsum(np.bincount(own, minlength=n))]).astype(
            np.int64)
        self.x = xy[:, 0]
        self.y = xy[:, 1]
        self.box = np.ascontiguousarray(shapely.bounds(geoms))


@numba.njit(cache=True, nogil=True)
def _ring_shape(x: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orientation sign and convexity of each closed ring (collinear vertices allowed)."""
    n = len(offset) - 1
    sign = np.zeros(n, dtype=np.int8)
    convex = np.zeros(n, dtype=np.bool_)
    for g in range(n):
        s, e = offset[g], offset[g + 1] - 1  # the last vertex repeats the first
        if e - s < 3:
            continue
        area = 0.0  # shoelace in local coordinates: no cancellation at 10^6 m
        x0, y0 = x[s], y[s]
        for i in range(s, e):
            area += (x[i] - x0) * (y[i + 1] - y0) - (x[i + 1] - x0) * (y[i] - y0)
        if area == 0.0:
            continue
        sg = 1 if area > 0 else -1
        sign[g] = sg
        # Turns between consecutive edges of non-zero length (repeated vertices skipped):
        # never against the orientation, and no spike (a reversal along one line).
        ux = uy = 0.0
        for i in range(e - 1, s - 1, -1):
            ux, uy = x[i + 1] - x[i], y[i + 1] - y[i]
            if ux != 0.0 or uy != 0.0:
                break
        ok = True
        for i in range(s, e):
            vx, vy = x[i + 1] - x[i], y[i + 1] - y[i]
            if vx == 0.0 and vy == 0.0:
                continue
            cross = ux * vy - uy * vx
            if cross * sg < 0 or (cross == 0.0 and ux * vx + uy * vy < 0):
                ok = False
                break
            ux, uy = vx, vy
        convex[g] = ok
    return sign, convex


@numba.njit(cache=True, nogil=True)
def _clip_area(
    ax: np.ndarray, ay: np.ndarray, a_off: np.ndarray, a_idx: np.ndarray,
    bx: np.ndarray, by: np.ndarray, b_off: np.ndarray, b_sign: np.ndarray, b_idx: np.ndarray,
    cap: int, start: np.ndarray, out_x: np.ndarray, out_y: np.ndarray, counts: np.ndarray,
) -> np.ndarray:
    """Area of ring a ∩ convex ring b for each pair (Sutherland-Hodgman: a simple ring
    clipped by the half-planes of a convex one keeps its exact area). NaN when a buffer
    of ``cap`` vertices would overflow (the caller then uses GEOS).

    With a non-empty ``start``, the clipped ring of pair ``t`` is also written to
    ``out_x/out_y[start[t]:]`` and its vertex count (unclosed) to ``counts[t]`` (-1 if it
    does not fit before ``start[t + 1]``): for two convex rings it is their intersection."""
    n = len(a_idx)
    out = np.empty(n)
    px = np.empty(cap)
    py = np.empty(cap)
    qx = np.empty(cap)
    qy = np.empty(cap)
    for t in range(n):
        ga, gb = a_idx[t], b_idx[t]
        s, e = a_off[ga], a_off[ga + 1] - 1
        m = e - s
        sg = b_sign[gb]
        cs, ce = b_off[gb], b_off[gb + 1] - 1
        ox, oy = bx[cs], by[cs]  # local origin: no cancellation in the shoelace sums
        for i in range(m):
            px[i] = ax[s + i] - ox
            py[i] = ay[s + i] - oy
        overflow = False
        for c in range(cs, ce):
            if m == 0:
                break
            x1, y1 = bx[c] - ox, by[c] - oy
            ex, ey = bx[c + 1] - ox - x1, by[c + 1] - oy - y1
            if ex == 0.0 and ey == 0.0:
                continue
            # inside: left of b's edge when b turns counter-clockwise, right otherwise
            m = _half_plane(px, py, m, qx, qy, x1, y1, sg * ex, sg * ey)
            if m < 0:
                overflow = True
                break
            px, qx = qx, px
            py, qy = qy, py
        if overflow:
            out[t] = np.nan
            continue
        area = 0.0
        for i in range(m):
            j = i + 1 if i + 1 < m else 0
            area += px[i] * py[j] - px[j] * py[i]
        out[t] = abs(area) / 2.0
        if len(start):
            if m > start[t + 1] - start[t]:
                counts[t] = -1
            else:
                for i in range(m):
                    out_x[start[t] + i] = px[i] + ox
                    out_y[start[t] + i] = py[i] + oy
                counts[t] = m
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _half_plane(px: np.ndarray, py: np.ndarray, m: int, qx: np.ndarray, qy: np.ndarray,
                x1: float, y1: float, ex: float, ey: float) -> int:
    """Sutherland-Hodgman step: the closed polyline ``p[:m]`` clipped to the left of the
    directed line through (x1, y1) along (ex, ey), written to ``q``; its vertex count, or -1
    if ``q`` would overflow."""
    cap = len(qx)
    k = 0
    prevx, prevy = px[m - 1], py[m - 1]
    dprev = ex * (prevy - y1) - ey * (prevx - x1)
    for i in range(m):
        curx, cury = px[i], py[i]
        dcur = ex * (cury - y1) - ey * (curx - x1)
        if k + 2 > cap:
            return -1
        if dcur >= 0.0:
            if dprev < 0.0 and dcur > 0.0:  # (at dcur == 0 the crossing is cur)
                f = dprev / (dprev - dcur)
                qx[k] = prevx + f * (curx - prevx)
                qy[k] = prevy + f * (cury - prevy)
                k += 1
            qx[k] = curx
            qy[k] = cury
            k += 1
        elif dprev > 0.0:
            f = dprev / (dprev - dcur)
            qx[k] = prevx + f * (curx - prevx)
            qy[k] = prevy + f * (cury - prevy)
            k += 1
        prevx, prevy, dprev = curx, cury, dcur
    return k


@numba.njit(cache=True, nogil=True, inline="always")
def _box_outside(x1: float, y1: float, ex: float, ey: float,
                 xmin: float, ymin: float, xmax: float, ymax: float) -> bool:
    """Whether the box lies wholly to the right of the directed line through (x1, y1) along
    (ex, ey) (then nothing of it survives that half-plane)."""
    return (ex * (ymin - y1) - ey * (xmin - x1) < 0.0 and ex * (ymax - y1) - ey * (xmin - x1) < 0.0
            and ex * (ymin - y1) - ey * (xmax - x1) < 0.0
            and ex * (ymax - y1) - ey * (xmax - x1) < 0.0)


@numba.njit(cache=True, nogil=True)
def _fan_area(
    ax: np.ndarray, ay: np.ndarray, a_start: np.ndarray, a_end: np.ndarray, a_w: np.ndarray,
    a_roff: np.ndarray, a_box: np.ndarray, a_idx: np.ndarray,
    bx: np.ndarray, by: np.ndarray, b_start: np.ndarray, b_end: np.ndarray, b_w: np.ndarray,
    b_roff: np.ndarray, b_idx: np.ndarray, cap: int,
) -> np.ndarray:
    """Area of polygonal geometry a ∩ polygonal geometry b for each pair, any shapes.

    The indicator of b is a signed sum of triangles fanned from one point o over b's edges
    (+ for a counter-clockwise triangle, - for a clockwise one, times the ring's weight), so
    area(a ∩ b) = Σ ± area(a ∩ triangle), and each a ∩ triangle is a's rings clipped by the
    triangle's three half-planes (Sutherland-Hodgman keeps the signed area of a ring clipped
    by a convex region exactly). Only triangles whose bounding box meets a's are clipped. No
    topological decision is taken, so the result is continuous in the coordinates: shared or
    overlapping edges need no special case. Coordinates are local to o. NaN when a buffer of
    ``cap`` vertices would overflow (the caller then uses GEOS)."""
    n = len(a_idx)
    out = np.empty(n)
    bufs = np.empty((6, cap))
    for t in range(n):
        ga, gb = a_idx[t], b_idx[t]
        if b_roff[gb] == b_roff[gb + 1] or a_roff[ga] == a_roff[ga + 1]:
            out[t] = 0.0
            continue
        # The fan's origin: the vertex of b's first ring farthest from the centre of a's
        # bounding box, so that only the triangles of b's edges near a reach a's box.
        cx = (a_box[ga, 0] + a_box[ga, 2]) / 2.0
        cy = (a_box[ga, 1] + a_box[ga, 3]) / 2.0
        r0 = b_roff[gb]
        ox, oy, far = bx[b_start[r0]], by[b_start[r0]], -1.0
        for c in range(b_start[r0], b_end[r0] - 1):
            dd = (bx[c] - cx) ** 2 + (by[c] - cy) ** 2
            if dd > far:
                ox, oy, far = bx[c], by[c], dd
        xmin, ymin = a_box[ga, 0] - ox, a_box[ga, 1] - oy
        xmax, ymax = a_box[ga, 2] - ox, a_box[ga, 3] - oy
        total = 0.0
        overflow = False
        for ra in range(a_roff[ga], a_roff[ga + 1]):
            wa = a_w[ra]
            if wa == 0:
                continue
            s, e = a_start[ra], a_end[ra] - 1
            m0 = e - s
            if 4 * m0 + 8 > cap:
                overflow = True
                break
            base_x, base_y, px, py, qx, qy = bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5]
            for i in range(m0):
                base_x[i] = ax[s + i] - ox
                base_y[i] = ay[s + i] - oy
            for rb in range(b_roff[gb], b_roff[gb + 1]):
                wb = b_w[rb]
                if wb == 0:
                    continue
                for c in range(b_start[rb], b_end[rb] - 1):
                    x1, y1 = bx[c] - ox, by[c] - oy
                    x2, y2 = bx[c + 1] - ox, by[c + 1] - oy
                    cr = x1 * y2 - y1 * x2
                    if cr == 0.0:
                        continue
                    if (min(0.0, x1, x2) > xmax or max(0.0, x1, x2) < xmin
                            or min(0.0, y1, y2) > ymax or max(0.0, y1, y2) < ymin):
                        continue
                    if cr < 0.0:  # the counter-clockwise triangle o, (x1, y1), (x2, y2)
                        x1, y1, x2, y2 = x2, y2, x1, y1
                    if (_box_outside(0.0, 0.0, x1, y1, xmin, ymin, xmax, ymax)
                            or _box_outside(x2, y2, -x2, -y2, xmin, ymin, xmax, ymax)
                            or _box_outside(x1, y1, x2 - x1, y2 - y1, xmin, ymin, xmax, ymax)):
                        continue
                    # o -> v1, then v2 -> o, then v1 -> v2
                    m = _half_plane(base_x, base_y, m0, qx, qy, 0.0, 0.0, x1, y1)
                    if m > 0:
                        m = _half_plane(qx, qy, m, px, py, x2, y2, -x2, -y2)
                    if m > 0:
                        m = _half_plane(px, py, m, qx, qy, x1, y1, x2 - x1, y2 - y1)
                    if m < 0:
                        overflow = True
                        break
                    area = 0.0
                    for i in range(m):
                        j = i + 1 if i + 1 < m else 0
                        area += qx[i] * qy[j] - qx[j] * qy[i]
                    total += area if (cr > 0.0) == (wa * wb > 0) else -area
                if overflow:
                    break
            if overflow:
                break
        out[t] = np.nan if overflow else total / 2.0
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def _segment_crossing(
    x1: float, y1: float, x2: float, y2: float, u1: float, v1: float, u2: float, v2: float,
    f1: float, f2: float,
) -> tuple[int, float, float, float, float]:
    """How segment (x1, y1)-(x2, y2) (shifted into general position) meets segment
    (u1, v1)-(u2, v2): ``(state, a, b, cx, cy)``, state 0 (apart), 1 (a proper crossing at
    ``a`` along the first and ``b`` along the second) or -1 (a tie: an end on the other
    segment). (cx, cy) is the crossing on the unshifted first segment, which starts at
    (f1, f2), or on the second when the two are parallel."""
    d1 = (u2 - u1) * (y1 - v1) - (v2 - v1) * (x1 - u1)
    d2 = (u2 - u1) * (y2 - v1) - (v2 - v1) * (x2 - u1)
    if (d1 > 0.0 and d2 > 0.0) or (d1 < 0.0 and d2 < 0.0):
        return 0, 0.0, 0.0, 0.0, 0.0
    d3 = (x2 - x1) * (v1 - y1) - (y2 - y1) * (u1 - x1)
    d4 = (x2 - x1) * (v2 - y1) - (y2 - y1) * (u2 - x1)
    if (d3 > 0.0 and d4 > 0.0) or (d3 < 0.0 and d4 < 0.0):
        return 0, 0.0, 0.0, 0.0, 0.0
    if d1 == 0.0 or d2 == 0.0 or d3 == 0.0 or d4 == 0.0:
        return -1, 0.0, 0.0, 0.0, 0.0
    a = d1 / (d1 - d2)
    b = d3 / (d3 - d4)
    g1, g2 = x2 - x1, y2 - y1
    e1 = (u2 - u1) * (f2 - v1) - (v2 - v1) * (f1 - u1)
    e2 = (u2 - u1) * (f2 + g2 - v1) - (v2 - v1) * (f1 + g1 - u1)
    if e1 != e2:
        a0 = min(max(e1 / (e1 - e2), 0.0), 1.0)
        return 1, a, b, f1 + a0 * g1, f2 + a0 * g2
    return 1, a, b, u1 + b * (u2 - u1), v1 + b * (v2 - v1)


@numba.njit(cache=True, nogil=True)
def _inside_rings(x0: float, y0: float, x: np.ndarray, y: np.ndarray, start: np.ndarray,
                  end: np.ndarray, w: np.ndarray, r_lo: int, r_hi: int, dx: float, dy: float,
                  ox: float, oy: float) -> bool:
    """Whether (x0, y0) lies inside the rings ``r_lo:r_hi`` (even-odd rule; ring vertices
    moved by (dx - ox, dy - oy)); rings without area are ignored."""
    inside = False
    for r in range(r_lo, r_hi):
        if w[r] == 0:
            continue
        for c in range(start[r], end[r] - 1):
            y1, y2 = y[c] + dy - oy, y[c + 1] + dy - oy
            if (y1 > y0) != (y2 > y0):
                x1, x2 = x[c] + dx - ox, x[c + 1] + dx - ox
                if x1 + (y0 - y1) * (x2 - x1) / (y2 - y1) > x0:
                    inside = not inside
    return inside


@numba.njit(cache=True, nogil=True)
def _boundary_inside(x: np.ndarray, y: np.ndarray, start: np.ndarray, end: np.ndarray,
                     w: np.ndarray, r_lo: int, r_hi: int, ox: float, oy: float,
                     key: np.ndarray, px: np.ndarray, py: np.ndarray, order: np.ndarray,
                     k: int, first_inside: np.ndarray) -> float:
    """Σ over the rings ``r_lo:r_hi`` of weight × ∮ (x dy - y dx) / 2 along the parts of the
    ring inside the other geometry: each ring starts inside or not (``first_inside``) and
    toggles at each crossing; ``key`` (vertex index + position along the edge), ``px/py``
    (crossing points) and ``order`` (crossings sorted by key) describe the crossings."""
    total = 0.0
    s = 0  # position in order
    for r in range(r_lo, r_hi):
        if w[r] == 0:
            continue
        a, b = start[r], end[r] - 1
        while s < k and key[order[s]] < a:
            s += 1
        inside = first_inside[r - r_lo]
        prev_x, prev_y = x[a] - ox, y[a] - oy
        part = 0.0
        for c in range(a, b):
            while s < k and key[order[s]] < c + 1:
                cx, cy = px[order[s]], py[order[s]]
                if inside:
                    part += prev_x * cy - cx * prev_y
                prev_x, prev_y = cx, cy
                inside = not inside
                s += 1
            nx, ny = x[c + 1] - ox, y[c + 1] - oy
            if inside:
                part += prev_x * ny - nx * prev_y
            prev_x, prev_y = nx, ny
        total += w[r] * part
    return total / 2.0


@numba.njit(cache=True, nogil=True)
def _green_area(
    ax: np.ndarray, ay: np.ndarray, a_start: np.ndarray, a_end: np.ndarray, a_w: np.ndarray,
    a_roff: np.ndarray, a_box: np.ndarray, a_idx: np.ndarray,
    bx: np.ndarray, by: np.ndarray, b_start: np.ndarray, b_end: np.ndarray, b_w: np.ndarray,
    b_roff: np.ndarray, b_box: np.ndarray, b_idx: np.ndarray, cap_k: int, max_rings: int,
) -> np.ndarray:
    """Area of polygonal geometry a ∩ polygonal geometry b for each pair, by Green's
    theorem: the boundary of a ∩ b is made of the parts of a's rings inside b and of b's
    rings inside a, so its area is the sum of ∮ (x dy - y dx) / 2 along those parts (rings
    weighted +1 for shells and -1 for holes, in their own orientation times its sign). The
    parts come from the crossings of a's edges with b's (only edges reaching the common
    part of the two bounding boxes are tested) and one point-in-polygon test per ring.
    To decide inside or outside without ties, a is moved by (_SHIFT_X, _SHIFT_Y) for the
    tests, while the areas are measured on the unmoved coordinates. NaN where a test still
    ties or more than ``cap_k`` crossings or ``max_rings`` rings occur: the caller then
    uses the fan kernel, which needs no decision."""
    n = len(a_idx)
    out = np.empty(n)
    key_a, key_b = np.empty(cap_k), np.empty(cap_k)
    cx_, cy_ = np.empty(cap_k), np.empty(cap_k)
    ord_a, ord_b = np.empty(cap_k, dtype=np.int64), np.empty(cap_k, dtype=np.int64)
    first_a = np.empty(max_rings, dtype=np.bool_)
    first_b = np.empty(max_rings, dtype=np.bool_)
    near = np.empty(cap_k, dtype=np.int64)
    nu1, nv1, nu2, nv2 = np.empty(cap_k), np.empty(cap_k), np.empty(cap_k), np.empty(cap_k)
    sx, sy = _SHIFT_X, _SHIFT_Y
    for t in range(n):
        ga, gb = a_idx[t], b_idx[t]
        ox = max(a_box[ga, 0], b_box[gb, 0])
        oy = max(a_box[ga, 1], b_box[gb, 1])
        hx = min(a_box[ga, 2], b_box[gb, 2]) - ox
        hy = min(a_box[ga, 3], b_box[gb, 3]) - oy
        ra0, ra1, rb0, rb1 = a_roff[ga], a_roff[ga + 1], b_roff[gb], b_roff[gb + 1]
        if ra0 == ra1 or rb0 == rb1 or hx < 0.0 or hy < 0.0:
            out[t] = 0.0
            continue
        if ra1 - ra0 > max_rings or rb1 - rb0 > max_rings:
            out[t] = np.nan
            continue
        bad = False
        # b's edges that reach the common box (with a margin: the shift may move an edge
        # of a on the box's side just out of it), then their crossings with a's moved edges
        nb = 0
        lo, hx2, hy2 = -_SNAP_M, hx + _SNAP_M, hy + _SNAP_M
        for rb in range(rb0, rb1):
            if b_w[rb] == 0:
                continue
            for j in range(b_start[rb], b_end[rb] - 1):
                u1, v1 = bx[j] - ox, by[j] - oy
                u2, v2 = bx[j + 1] - ox, by[j + 1] - oy
                if (max(u1, u2) < lo or min(u1, u2) > hx2 or max(v1, v2) < lo
                        or min(v1, v2) > hy2):
                    continue
                if nb >= cap_k:
                    bad = True
                    break
                near[nb] = j
                nu1[nb], nv1[nb], nu2[nb], nv2[nb] = u1, v1, u2, v2
                nb += 1
        k = 0
        for ra in range(ra0, ra1):
            if a_w[ra] == 0 or bad:
                continue
            for c in range(a_start[ra], a_end[ra] - 1):
                x1, y1 = ax[c] + sx - ox, ay[c] + sy - oy
                x2, y2 = ax[c + 1] + sx - ox, ay[c + 1] + sy - oy
                lox, hix, loy, hiy = min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2)
                if hix < lo or lox > hx2 or hiy < lo or loy > hy2:
                    continue
                for jj in range(nb):
                    u1, v1, u2, v2 = nu1[jj], nv1[jj], nu2[jj], nv2[jj]
                    if (max(u1, u2) < lox or min(u1, u2) > hix or max(v1, v2) < loy
                            or min(v1, v2) > hiy):
                        continue
                    state, al, be, cx, cy = _segment_crossing(x1, y1, x2, y2, u1, v1, u2, v2,
                                                              x1 - sx, y1 - sy)
                    if state == 0:
                        continue
                    if state < 0 or k >= cap_k:
                        bad = True
                        break
                    cx_[k], cy_[k] = cx, cy
                    key_a[k] = c + al
                    key_b[k] = near[jj] + be
                    k += 1
                if bad:
                    break
        if bad:
            out[t] = np.nan
            continue
        _order(key_a, k, ord_a)
        _order(key_b, k, ord_b)
        # where each ring starts: inside the other geometry or not
        # where each ring starts: inside the other geometry or not (not when outside its
        # bounding box)
        for ra in range(ra0, ra1):
            c = a_start[ra]
            x0, y0 = ax[c] + sx, ay[c] + sy
            first_a[ra - ra0] = (
                b_box[gb, 0] <= x0 <= b_box[gb, 2] and b_box[gb, 1] <= y0 <= b_box[gb, 3]
                and _inside_rings(x0 - ox, y0 - oy, bx, by, b_start, b_end, b_w, rb0, rb1,
                                  0.0, 0.0, ox, oy))
        for rb in range(rb0, rb1):
            c = b_start[rb]
            x0, y0 = bx[c] - sx, by[c] - sy  # (a moved by the shift = b moved back)
            first_b[rb - rb0] = (
                a_box[ga, 0] <= x0 <= a_box[ga, 2] and a_box[ga, 1] <= y0 <= a_box[ga, 3]
                and _inside_rings(bx[c] - ox, by[c] - oy, ax, ay, a_start, a_end, a_w, ra0,
                                  ra1, sx, sy, ox, oy))
        out[t] = (_boundary_inside(ax, ay, a_start, a_end, a_w, ra0, ra1, ox, oy, key_a, cx_,
                                   cy_, ord_a, k, first_a)
                  + _boundary_inside(bx, by, b_start, b_end, b_w, rb0, rb1, ox, oy, key_b, cx_,
                                     cy_, ord_b, k, first_b))
    return out


_NO_START = np.empty(0, dtype=np.int64)
_NO_XY = np.empty(0)


def _ring_polygons(xs: np.ndarray, ys: np.ndarray, ring_start: np.ndarray,
                   lens: np.ndarray) -> np.ndarray:
    """One Polygon per ring ``xs/ys[ring_start[i]:ring_start[i] + lens[i]]`` (unclosed
    rings; closed here), built in one ``from_ragged_array`` call."""
    closed = lens + 1
    offsets = np.concatenate([[0], np.cumsum(closed)]).astype(np.int64)
    col = (np.arange(int(offsets[-1])) - np.repeat(offsets[:-1], closed)) % np.repeat(lens, closed)
    take = np.repeat(ring_start, closed) + col
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, np.c_[xs[take], ys[take]],
                                     (offsets, np.arange(len(lens) + 1)))


def _fast_polygons(ra: _Rings, a: np.ndarray, rb: _Rings, b: np.ndarray) -> np.ndarray:
    """Polygon ``a[i]`` ∩ ``b[i]`` where both are convex simple polygons (the clipped ring,
    clockwise like GEOS output); None elsewhere and where the ring has < 3 vertices."""
    out = np.full(len(a), None, dtype=object)
    sel = np.flatnonzero(ra.convex[a] & rb.convex[b])
    if not len(sel):
        return out
    a, b = a[sel], b[sel]
    sizes = (ra.offset[a + 1] - ra.offset[a]) + (rb.offset[b + 1] - rb.offset[b]) + 4
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    xs, ys = np.empty(int(start[-1])), np.empty(int(start[-1]))
    counts = np.zeros(len(a), dtype=np.int64)
    cap = 4 * (ra.max_vertices + rb.max_vertices) + 16
    _clip_area(ra.x, ra.y, ra.offset, a, rb.x, rb.y, rb.offset, rb.sign, b, cap, start, xs, ys,
               counts)
    ok = counts >= 3
    if not ok.any():
        return out
    polys = _ring_polygons(xs, ys, start[:-1][ok], counts[ok])
    out[sel[ok]] = shapely.orient_polygons(polys, exterior_cw=True)
    return out


# A tiny shift of ring a's coordinates (metres) that puts the two rings in general position
# for the crossing kernel (no vertex on an edge, no shared edge); the direction has an
# irrational slope, so no grid-snapped edge is parallel to it. Output vertices closer than
# _SNAP_M to an input vertex are put back on it.
_SHIFT_X, _SHIFT_Y = 0.8e-8, 0.8e-8 * 0.6180339887498949
_SNAP_M = 1e-6


@numba.njit(cache=True, nogil=True, inline="always")
def _ring_index(i: int, n: int) -> int:
    return i - n if i >= n else i


@numba.njit(cache=True, nogil=True)
def _order(key: np.ndarray, k: int, out: np.ndarray) -> None:
    """``out[:k]`` = the positions of ``key[:k]`` in increasing order (insertion sort for
    the usual few)."""
    if k > 48:
        out[:k] = np.argsort(key[:k])
        return
    for r in range(k):
        v = key[r]
        s = r
        while s > 0 and key[out[s - 1]] > v:
            out[s] = out[s - 1]
            s -= 1
        out[s] = r


@numba.njit(cache=True, nogil=True, inline="always")
def _in_ring(x0: float, y0: float, x: np.ndarray, y: np.ndarray, n: int) -> bool:
    """Whether (x0, y0) is inside the unclosed ring ``x/y[:n]`` (ray casting)."""
    inside = False
    for i in range(n):
        i2 = _ring_index(i + 1, n)
        if (y[i] > y0) != (y[i2] > y0) and \
                x[i] + (y0 - y[i]) * (x[i2] - x[i]) / (y[i2] - y[i]) > x0:
            inside = not inside
    return inside


@numba.njit(cache=True, nogil=True)
def _crossing_rings(
    px: np.ndarray, py: np.ndarray, p0x: np.ndarray, p0y: np.ndarray, n: int,
    qx: np.ndarray, qy: np.ndarray, m: int,
    out_x: np.ndarray, out_y: np.ndarray, out_len: np.ndarray,
    e_p: np.ndarray, e_q: np.ndarray, k_p: np.ndarray, k_q: np.ndarray, ix: np.ndarray,
    iy: np.ndarray, entry: np.ndarray, ord_p: np.ndarray, ord_q: np.ndarray,
    rank_p: np.ndarray, rank_q: np.ndarray, visited: np.ndarray, near_q: np.ndarray,
) -> int:
    """Intersection of two simple counter-clockwise rings p (n vertices, unclosed, already
    shifted off q) and q (m vertices), Greiner-Hormann style: the crossings of their edges
    split both rings; walking p while inside q and q while inside p from each crossing where
    p enters q traces the rings of the intersection, written one after the other to
    ``out_x/out_y`` with their lengths in ``out_len``. Returns the number of rings, -1 when
    the rings are not in general position or a buffer is too small (the caller then asks
    GEOS), -2 when p has no crossing with q and lies inside it, -3 when q lies inside p.

    ``p0x/p0y`` hold p before the shift: the vertices written out are those and q's, and a
    crossing point within _SNAP_M of an end of either edge is put on that end. The other
    arrays are workspace for up to ``len(e_p)`` crossings."""
    cap_k = len(e_p)
    # only q's edges that reach p's bounding box, and p's edges that reach q's
    pxmin, pxmax, pymin, pymax = px[:n].min(), px[:n].max(), py[:n].min(), py[:n].max()
    qxmin, qxmax, qymin, qymax = qx[:m].min(), qx[:m].max(), qy[:m].min(), qy[:m].max()
    n_near = 0
    for j in range(m):
        j2 = _ring_index(j + 1, m)
        if not (max(qx[j], qx[j2]) < pxmin or min(qx[j], qx[j2]) > pxmax
                or max(qy[j], qy[j2]) < pymin or min(qy[j], qy[j2]) > pymax):
            near_q[n_near] = j
            n_near += 1
    k = 0
    for i in range(n):
        x1, y1 = px[i], py[i]
        i2 = _ring_index(i + 1, n)
        x2, y2 = px[i2], py[i2]
        lox, hix = min(x1, x2), max(x1, x2)
        loy, hiy = min(y1, y2), max(y1, y2)
        if hix < qxmin or lox > qxmax or hiy < qymin or loy > qymax:
            continue
        for jj in range(n_near):
            j = near_q[jj]
            u1, v1 = qx[j], qy[j]
            j2 = _ring_index(j + 1, m)
            u2, v2 = qx[j2], qy[j2]
            if (max(u1, u2) < lox or min(u1, u2) > hix or max(v1, v2) < loy
                    or min(v1, v2) > hiy):
                continue
            state, a, b, cx, cy = _segment_crossing(x1, y1, x2, y2, u1, v1, u2, v2, p0x[i],
                                                    p0y[i])
            if state == 0:
                continue
            if state < 0 or k >= cap_k:
                return -1  # not in general position, or too many crossings
            e_p[k], e_q[k] = i, j
            k_p[k] = i + a
            k_q[k] = j + b
            # (a crossing within _SNAP_M of an end of either edge is put on that end)
            best = _SNAP_M * _SNAP_M
            sx, sy = cx, cy
            for ex, ey in ((p0x[i], p0y[i]), (p0x[i2], p0y[i2]), (u1, v1), (u2, v2)):
                dd = (ex - cx) ** 2 + (ey - cy) ** 2
                if dd < best:
                    best, sx, sy = dd, ex, ey
            ix[k], iy[k] = sx, sy
            # p comes from the right of q's edge (q turns counter-clockwise): it enters q
            entry[k] = (u2 - u1) * (y1 - v1) - (v2 - v1) * (x1 - u1) < 0.0
            k += 1
    if k == 0:
        # no crossing: one ring inside the other, or apart (ray casting, general position)
        if _in_ring(px[0], py[0], qx, qy, m):
            return -2
        return -3 if _in_ring(qx[0], qy[0], px, py, n) else 0
    if k % 2:
        return -1
    # order of the crossings along p and along q (insertion sorts: k is small)
    _order(k_p, k, ord_p)
    _order(k_q, k, ord_q)
    for r in range(k):
        rank_p[ord_p[r]] = r
        rank_q[ord_q[r]] = r
    for r in range(k):  # entries and exits alternate along each ring
        if entry[ord_p[r]] == entry[ord_p[_ring_index(r + 1, k)]]:
            return -1
    visited[:k] = False
    cap = len(out_x)
    w = 0
    rings = 0
    for start in range(k):
        if visited[start] or not entry[start]:
            continue
        if rings >= len(out_len):
            return -1
        begin = w
        c = start
        on_p = True
        for _ in range(k + 1):
            visited[c] = True
            if w >= cap:
                return -1
            out_x[w], out_y[w] = ix[c], iy[c]
            w += 1
            # along p (unshifted) or q to the next crossing, with the vertices between
            order, rank, edge, key, vx, vy, size = (
                (ord_p, rank_p, e_p, k_p, p0x, p0y, n) if on_p
                else (ord_q, rank_q, e_q, k_q, qx, qy, m))
            nxt = order[_ring_index(rank[c] + 1, k)]
            count = edge[nxt] - edge[c] + (0 if key[nxt] > key[c] else size)
            if w + count > cap:
                return -1
            for t in range(count):
                v = _ring_index(edge[c] + 1 + t, size)
                out_x[w], out_y[w] = vx[v], vy[v]
                w += 1
            c = nxt
            on_p = not on_p
            if c == start:
                break
        if c != start or not on_p:  # back at the start, coming along q
            return -1
        out_len[rings] = w - begin
        rings += 1
    return rings


@numba.njit(cache=True, nogil=True)
def _clean_ring(x: np.ndarray, y: np.ndarray, n: int) -> int:
    """Remove repeated vertices and spikes (a vertex where the ring turns straight back) in
    place; the remaining vertex count (below 3: no ring left)."""
    k = 0
    for i in range(n):
        x[k], y[k] = x[i], y[i]
        k += 1
        while k >= 2:
            if x[k - 1] == x[k - 2] and y[k - 1] == y[k - 2]:
                k -= 1
                continue
            if k >= 3:
                ax, ay = x[k - 2] - x[k - 3], y[k - 2] - y[k - 3]
                bx, by = x[k - 1] - x[k - 2], y[k - 1] - y[k - 2]
                if ax * by - ay * bx == 0.0 and ax * bx + ay * by < 0.0:
                    x[k - 2], y[k - 2] = x[k - 1], y[k - 1]  # drop the spike's tip
                    k -= 1
                    continue
            break
    # the same across the ring's start
    changed = True
    while changed and k >= 3:
        changed = False
        if x[k - 1] == x[0] and y[k - 1] == y[0]:
            k -= 1
            changed = True
            continue
        for s in range(2):  # tips at the last and at the first vertex
            i0, i1, i2 = (k - 2, k - 1, 0) if s == 0 else (k - 1, 0, 1)
            ax, ay = x[i1] - x[i0], y[i1] - y[i0]
            bx, by = x[i2] - x[i1], y[i2] - y[i1]
            if ax * by - ay * bx == 0.0 and ax * bx + ay * by <= 0.0:
                for t in range(i1, k - 1):
                    x[t], y[t] = x[t + 1], y[t + 1]
                k -= 1
                changed = True
                break
    return k if k >= 3 else 0


@numba.njit(cache=True, nogil=True)
def _overlap_rings(
    ax: np.ndarray, ay: np.ndarray, a_off: np.ndarray, a_sign: np.ndarray, a_idx: np.ndarray,
    bx: np.ndarray, by: np.ndarray, b_off: np.ndarray, b_sign: np.ndarray, b_idx: np.ndarray,
    start: np.ndarray, out_x: np.ndarray, out_y: np.ndarray, ring_len: np.ndarray,
    rings_of: np.ndarray, max_rings: int,
) -> None:
    """The rings of simple polygon a ∩ simple polygon b for each pair (any shapes): pair t
    writes its rings to ``out_x/out_y[start[t]:start[t + 1]]`` and their lengths to
    ``ring_len[t * max_rings:]``, and the count to ``rings_of[t]``: -1 when GEOS must do it.
    Ring a is shifted by (_SHIFT_X, _SHIFT_Y) into general position for the crossings; the
    output is made of the unshifted vertices, and the spikes and repeated vertices that a
    shared edge then leaves are removed."""
    top = 0
    for t in range(len(a_idx)):
        top = max(top, a_off[a_idx[t] + 1] - a_off[a_idx[t]], b_off[b_idx[t] + 1] - b_off[b_idx[t]])
    px, py, p0x, p0y = np.empty(top), np.empty(top), np.empty(top), np.empty(top)
    qx, qy, near_q = np.empty(top), np.empty(top), np.empty(top, dtype=np.int64)
    cap_k = 4 * top + 8
    e_p, e_q = np.empty(cap_k, dtype=np.int64), np.empty(cap_k, dtype=np.int64)
    k_p, k_q, ix, iy = np.empty(cap_k), np.empty(cap_k), np.empty(cap_k), np.empty(cap_k)
    entry, visited = np.empty(cap_k, dtype=np.bool_), np.empty(cap_k, dtype=np.bool_)
    ord_p, ord_q = np.empty(cap_k, dtype=np.int64), np.empty(cap_k, dtype=np.int64)
    rank_p, rank_q = np.empty(cap_k, dtype=np.int64), np.empty(cap_k, dtype=np.int64)
    for t in range(len(a_idx)):
        ga, gb = a_idx[t], b_idx[t]
        sa, n = a_off[ga], a_off[ga + 1] - a_off[ga] - 1
        sb, m = b_off[gb], b_off[gb + 1] - b_off[gb] - 1
        ox, oy = bx[sb], by[sb]
        for i in range(n):  # counter-clockwise, local; p shifted
            v = sa + (i if a_sign[ga] > 0 else n - 1 - i)
            p0x[i], p0y[i] = ax[v] - ox, ay[v] - oy
            px[i], py[i] = p0x[i] + _SHIFT_X, p0y[i] + _SHIFT_Y
        for j in range(m):
            v = sb + (j if b_sign[gb] > 0 else m - 1 - j)
            qx[j] = bx[v] - ox
            qy[j] = by[v] - oy
        s0, cap = start[t], start[t + 1] - start[t]
        lens = ring_len[t * max_rings:(t + 1) * max_rings]
        got = _crossing_rings(px, py, p0x, p0y, n, qx, qy, m, out_x[s0:s0 + cap],
                              out_y[s0:s0 + cap], lens, e_p, e_q, k_p, k_q, ix, iy, entry,
                              ord_p, ord_q, rank_p, rank_q, visited, near_q)
        if got == -1:
            rings_of[t] = -1
            continue
        if got in (-2, -3):  # one inside the other: that one
            src_x, src_y, cnt = (p0x, p0y, n) if got == -2 else (qx, qy, m)
            if cnt > cap:
                rings_of[t] = -1
                continue
            for i in range(cnt):  # clockwise, like GEOS output
                out_x[s0 + i] = src_x[cnt - 1 - i] + ox
                out_y[s0 + i] = src_y[cnt - 1 - i] + oy
            lens[0] = cnt
            rings_of[t] = 1
            continue
        # clean each ring (a shared edge leaves spikes and repeated vertices)
        w = s0
        r_in = s0
        kept = 0
        for r in range(got):
            cnt = lens[r]
            for i in range(cnt):
                out_x[w + i], out_y[w + i] = out_x[r_in + i], out_y[r_in + i]
            left = _clean_ring(out_x[w:w + cnt], out_y[w:w + cnt], cnt)
            r_in += cnt
            if left:
                area = 0.0
                for i in range(left):
                    j = i + 1 if i + 1 < left else 0
                    area += out_x[w + i] * out_y[w + j] - out_x[w + j] * out_y[w + i]
                if area > 0.0:  # written clockwise, like GEOS output
                    for i in range(left // 2):
                        j = left - 1 - i
                        out_x[w + i], out_x[w + j] = out_x[w + j], out_x[w + i]
                        out_y[w + i], out_y[w + j] = out_y[w + j], out_y[w + i]
                    for i in range(left):
                        out_x[w + i] += ox
                        out_y[w + i] += oy
                    lens[kept] = left
                    kept += 1
                    w += left
        rings_of[t] = kept


def _crossing_polygons(ra: _Rings, a: np.ndarray, rb: _Rings, b: np.ndarray,
                       expected_m2: np.ndarray) -> np.ndarray:
    """Polygon ``a[i]`` ∩ ``b[i]`` for simple polygons of any shape (clockwise shells like
    GEOS output) by :func:`_overlap_rings`; None where the kernel gives up, where its result
    is not valid, or where its area differs from ``expected_m2`` (the area kernels' answer)
    by more than 1e-6 m² + 1e-9 relative: GEOS then does it."""
    out = np.full(len(a), None, dtype=object)
    sel = np.flatnonzero(ra.simple[a] & rb.simple[b])
    if not len(sel):
        return out
    a, b = a[sel], b[sel]
    n_a = ra.offset[a + 1] - ra.offset[a]
    n_b = rb.offset[b + 1] - rb.offset[b]
    # room for n_a + n_b + 16 vertices and 8 rings per pair (more: GEOS does that pair)
    sizes = n_a + n_b + 16
    start = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    xs, ys = np.empty(int(start[-1])), np.empty(int(start[-1]))
    max_rings = 8
    ring_len = np.zeros(len(a) * max_rings, dtype=np.int64)
    rings_of = np.zeros(len(a), dtype=np.int64)
    _overlap_rings(ra.x, ra.y, ra.offset, ra.sign, a, rb.x, rb.y, rb.offset, rb.sign, b,
                   start, xs, ys, ring_len, rings_of, max_rings)
    done = rings_of >= 0
    if not done.any():
        return out
    n_r = np.where(done, rings_of, 0)
    pair_of_ring = np.repeat(np.arange(len(a)), n_r)
    slot = np.arange(int(n_r.sum())) - np.repeat(np.cumsum(n_r) - n_r, n_r)
    lens = ring_len[pair_of_ring * max_rings + slot]
    # the rings of one pair follow each other from start[pair]
    first = np.cumsum(lens) - lens
    ring0 = (np.cumsum(n_r) - n_r)[pair_of_ring]  # the first ring of each ring's pair
    ring_start = start[pair_of_ring] + first - first[ring0]
    polys = _ring_polygons(xs, ys, ring_start, lens)
    geoms = np.full(len(a), None, dtype=object)
    geoms[done & (n_r == 0)] = shapely.Polygon()
    one = n_r == 1
    geoms[one] = polys[np.flatnonzero(one[pair_of_ring])]
    many = n_r > 1
    if many.any():
        sel_r = many[pair_of_ring]
        owners, dense = np.unique(pair_of_ring[sel_r], return_inverse=True)
        geoms[owners] = shapely.multipolygons(polys[sel_r], indices=dense)
    present = ~shapely.is_missing(geoms)
    ok = present.copy()
    ok[present] = shapely.is_valid(geoms[present])
    got_m2 = shapely.area(geoms)
    ok &= np.abs(got_m2 - expected_m2[sel]) <= 1e-6 + 1e-9 * np.abs(expected_m2[sel])
    out[sel[ok]] = geoms[ok]
    return out


def _fast_areas(ra: _Rings, a: np.ndarray, rb: _Rings, b: np.ndarray) -> np.ndarray:
    """Area of geometry ``a[i]`` of ``ra`` ∩ geometry ``b[i]`` of ``rb``: the convex-clip
    kernel where one of the two is a convex simple polygon, the fan kernel for any other
    pair of Polygons and MultiPolygons; NaN for other geometry types and where a kernel
    buffer would overflow (the caller then uses GEOS)."""
    out = np.full(len(a), np.nan)
    ok = ra.simple[a] & rb.simple[b]
    b_clips = ok & rb.convex[b]
    a_clips = ok & ~b_clips & ra.convex[a]
    cap = 8 * (ra.max_vertices + rb.max_vertices) + 16
    if b_clips.any():
        out[b_clips] = _clip_area(ra.x, ra.y, ra.offset, a[b_clips],
                                  rb.x, rb.y, rb.offset, rb.sign, b[b_clips], cap,
                                  _NO_START, _NO_XY, _NO_XY, _NO_START)
    if a_clips.any():
        out[a_clips] = _clip_area(rb.x, rb.y, rb.offset, b[a_clips],
                                  ra.x, ra.y, ra.offset, ra.sign, a[a_clips], cap,
                                  _NO_START, _NO_XY, _NO_XY, _NO_START)
    fan = ~(b_clips | a_clips) & ra.polygonal[a] & rb.polygonal[b]
    if fan.any():
        out[fan] = _green_area(ra.x, ra.y, ra.ring_start, ra.ring_end, ra.ring_w, ra.roff,
                               ra.box, a[fan], rb.x, rb.y, rb.ring_start, rb.ring_end, rb.ring_w,
                               rb.roff, rb.box, b[fan], 4 * cap + 64, 64)
        fan[fan] = np.isnan(out[fan])
    if fan.any():
        out[fan] = _fan_area(ra.x, ra.y, ra.ring_start, ra.ring_end, ra.ring_w, ra.roff, ra.box,
                             a[fan], rb.x, rb.y, rb.ring_start, rb.ring_end, rb.ring_w, rb.roff,
                             b[fan], cap)
    return out


def _candidates(
    tree: shapely.STRtree, geoms: np.ndarray, idx: np.ndarray, rings: _Rings,
    tree_geoms: np.ndarray, tree_rings: _Rings,
    wanted: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs (``idx`` position of the geometry, tree index, area of the overlap) of
    geometries ``geoms[idx]`` and tree geometries that may share interior: bounding-box
    pairs (those ``wanted(a, b)`` says, if given) measured by the area kernels (dropped at
    an area of at most 1e-9 m², rounding crumbs of pairs that only touch or are apart);
    pairs out of the kernels' reach have a NaN area and are kept only if GEOS says they
    intersect."""
    q = tree.query(geoms[idx])
    a, b = idx[q[0]], q[1]
    if wanted is not None:
        sel = wanted(a, b)
        a, b = a[sel], b[sel]
    m2 = _fast_areas(rings, a, tree_rings, b)
    slow = np.isnan(m2)
    keep = ~(np.abs(m2) <= _CRUMB_M2)
    if slow.any():
        try:
            hit = shapely.intersects(geoms[a[slow]], tree_geoms[b[slow]])
        except GEOSException:  # let the overlay (and its retries) decide
            hit = np.ones(int(slow.sum()), dtype=bool)
        keep[np.flatnonzero(slow)[~hit]] = False
    return a[keep], b[keep], m2[keep]


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
    rings: _Rings | None = None,
) -> np.ndarray:
    """Which geometries share interior with another one (of the same group, if given).

    With ``rings``, pairs of bounding boxes are measured by the area kernels: an overlap
    above ``_SHARED_M2`` (1e-3 m², far above the kernels' rounding) is shared interior, a
    smaller one is none (rounding crumbs, or a sliver too small to matter for adding
    areas), and only the pairs out of the kernels' reach go to GEOS ``relate``."""
    q = tree.query(geoms) if rings is not None else _query(tree, geoms)
    q = q[:, q[0] < q[1]]
    if groups is not None:
        q = q[:, groups[q[0]] == groups[q[1]]]
    flag = np.zeros(len(geoms), dtype=bool)
    if rings is not None:
        parts = np.array_split(np.arange(q.shape[1]), 8 if pool is not None else 1)
        measure = lambda sel: _fast_areas(rings, q[0][sel], rings, q[1][sel])  # noqa: E731
        fa = np.concatenate(list(pool.map(measure, parts) if pool is not None
                                 else map(measure, parts)))
        sure = fa > _SHARED_M2
        flag[q[0][sure]] = True
        flag[q[1][sure]] = True
        q = q[:, np.isnan(fa)]

    def relate(sel: np.ndarray) -> np.ndarray:
        try:
            return shapely.relate_pattern(geoms[q[0][sel]], geoms[q[1][sel]], "T********")
        except GEOSException:  # assume they overlap: the areas are then unioned, not added
            return np.ones(len(sel), dtype=bool)

    chunks = np.array_split(np.arange(q.shape[1]), 8 if pool is not None else 1)
    results = pool.map(relate, chunks) if pool is not None else map(relate, chunks)
    hit = np.concatenate(list(results))
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
    piece_m2: np.ndarray | None = None,
) -> np.ndarray:
    """Area of the union of each group's pieces; a union is computed only for groups with
    two or more pieces cut from geometries that overlap others (``flagged``), the other
    groups' pieces are disjoint and their areas add up (``piece_m2``, if given, holds the
    areas; then only the pieces of groups needing a union must be geometries)."""
    if piece_m2 is None:
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
    decl_rings: _Rings
    parcel_rings: _Rings
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


def _pieces(
    tree: shapely.STRtree,
    parcel_geoms: np.ndarray,
    geoms: np.ndarray,
    drawn_idx: np.ndarray,
    retries: _Retries,
    grid: float,
    rings: tuple[_Rings, _Rings],
    flagged: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Drawn declarations ``geoms[drawn_idx]`` ∩ the parcels they intersect: declaration
    index, parcel index, piece, piece area.

    Areas come from the convex-clip kernel where it applies (the piece is then None), except
    for declarations that cut two or more ``flagged`` parcels (parcels overlapping others):
    their pieces are unioned later, so they are computed as geometries by GEOS."""
    d_of, p_of, m2 = _candidates(tree, geoms, drawn_idx, rings[0], parcel_geoms, rings[1])
    if flagged is not None:
        local, dense = np.unique(d_of, return_inverse=True)
        need = np.bincount(dense, weights=flagged[p_of].astype(np.float64),
                           minlength=len(local)) >= 2
        m2[need[dense]] = np.nan
    pieces = np.full(len(d_of), None, dtype=object)
    slow = np.isnan(m2)
    if slow.any():
        pieces[slow] = _clip(geoms[d_of[slow]], parcel_geoms[p_of[slow]], retries, grid)
        m2[slow] = shapely.area(pieces[slow])
    return d_of, p_of, pieces, m2


def _chunk(inp: _Inputs, idx: np.ndarray) -> _Part:
    retries = _Retries()
    mins = inp.min_overlap_m2

    # Drawn declarations against reference parcels: links and covered area.
    d_of, p_of, pieces, piece_m2 = _pieces(inp.parcel_tree, inp.parcel_geoms, inp.effective,
                                           idx[inp.drawn[idx]], retries, inp.grid,
                                           (inp.decl_rings, inp.parcel_rings),
                                           inp.parcel_overlaps)
    linked = piece_m2 > mins
    links = (d_of[linked], p_of[linked], piece_m2[linked])
    # Covered area: drawn ∩ union of the parcels (parcels may overlap each other).
    local, dense = np.unique(d_of, return_inverse=True)
    covered = (local, _area_of_union(pieces, dense, len(local), inp.parcel_overlaps[p_of],
                                     retries, inp.grid, piece_m2))

    # Declarations against declarations: pairs (same year) and previous-year matches.
    def wanted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Each pair once; the same year, or the same applicant's drawings a year apart."""
        consecutive = ((np.abs(inp.year[a] - inp.year[b]) == 1)
                       & (inp.applicant[a] == inp.applicant[b]) & inp.drawn[a] & inp.drawn[b])
        return (a < b) & ((inp.year[a] == inp.year[b]) | consecutive)

    a, b, over = _candidates(inp.decl_tree, inp.effective, idx, inp.decl_rings,
                             inp.effective, inp.decl_rings, wanted)
    same_year = inp.year[a] == inp.year[b]
    # Areas from the convex-clip kernel where it applies; the overlap geometry (GEOS) only
    # for the pairs found.
    inter = np.full(len(a), None, dtype=object)
    slow = np.isnan(over)
    if slow.any():
        inter[slow] = _clip(inp.effective[a[slow]], inp.effective[b[slow]], retries, inp.grid)
        over[slow] = shapely.area(inter[slow])
    is_pair = same_year & (over > mins)
    build = is_pair & ~slow
    if build.any():
        inter[build] = _fast_polygons(inp.decl_rings, a[build], inp.decl_rings, b[build])
        build &= shapely.is_missing(inter)
    if build.any():
        inter[build] = _crossing_polygons(inp.decl_rings, a[build], inp.decl_rings, b[build],
                                          over[build])
        build &= shapely.is_missing(inter)
    if build.any():
        inter[build] = _clip(inp.effective[a[build]], inp.effective[b[build]], retries,
                             inp.grid)
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
    # Threads: shapely releases the GIL inside GEOS, and the numba kernels are nogil, so
    # chunks of declarations run in parallel. Measured with bench/farmland_overlay.py on this
    # 2-core machine (shapely 2.2, GEOS 3.14), 1,000,000 x 1,000,000 irregular parcels
    # (~21 vertices, none convex), 2 threads: full Overlay 21.7-24.6 s in four runs (links
    # alone 8.0-9.2 s), peak 4.7 GiB with the inputs; with GEOS overlays for the non-convex
    # pairs it took 110 s (links 53 s). geopandas.overlay: 131 s extrapolated, one PostGIS
    # query: 80-85 s.
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
    # The tables need neither the ring arrays nor the trees: let them go first (at 1M x 1M
    # they hold about 1 GiB).
    inp.decl_rings = inp.parcel_rings = None  # type: ignore[assignment]
    inp.decl_tree = inp.parcel_tree = inp.lu_tree = None  # type: ignore[assignment]
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


def link_areas(
    prepared: Prepared, *, min_overlap_m2: float = 0.01, workers: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``by="geometry"`` links alone, as the overlay computes them (for benchmarks).

    Returns
    -------
    declaration, parcel, overlap_m2 : numpy.ndarray
        Row positions in ``prepared.declarations`` / ``prepared.parcels`` and the area of
        drawing ∩ parcel, for overlaps above ``min_overlap_m2`` (unsorted).
    """
    grid = float(getattr(prepared, "precision_m", 0.0) or _FALLBACK_GRID_M)
    parcel_geoms = np.asarray(prepared.parcels.geometry.array, dtype=object)
    geoms = np.asarray(prepared.declarations.geometry.array, dtype=object)
    drawn = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
    tree = shapely.STRtree(parcel_geoms)
    _unprepare(parcel_geoms)
    _unprepare(geoms)
    rings = (_Rings(geoms), _Rings(parcel_geoms))
    chunks = [c for c in np.array_split(np.flatnonzero(drawn), max(1, -(-len(geoms) // _CHUNK)))
              if len(c)]

    def run(c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d_of, p_of, _, m2 = _pieces(tree, parcel_geoms, geoms, c, _Retries(), grid, rings)
        keep = m2 > min_overlap_m2
        return d_of[keep], p_of[keep], m2[keep]

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, chunks))
    else:
        parts = [run(c) for c in chunks]
    if not parts:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0)
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


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
    parcel_rings = _Rings(parcel_geoms)
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
        parcel_overlaps=_overlapping(parcel_geoms, parcel_tree, pool=pool, rings=parcel_rings),
        decl_tree=shapely.STRtree(effective), decl_rings=_Rings(effective),
        parcel_rings=parcel_rings, lu_geoms=lu_geoms, lu_class=lu_class,
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
    # The large tables are sorted by integer ranks of the ids (their string order) and their
    # id columns taken from string arrays converted once.
    d_rank = pd.factorize(ids, sort=True)[0]
    d_str = pd.array(ids, dtype=pd.StringDtype())

    # links: by geometry from the chunks, by id for declarations without a drawing
    l_decl, l_parcel = _gather(parts, "links", 0), _gather(parts, "links", 1)
    id_decl = np.flatnonzero(inp.by_id)
    id_parcel = inp.parcel_code[id_decl]
    l_decl, l_parcel = np.concatenate([l_decl, id_decl]), np.concatenate([l_parcel, id_parcel])
    l_by = np.concatenate([np.zeros(len(l_decl) - len(id_decl), dtype=np.int8),
                           np.ones(len(id_decl), dtype=np.int8)])  # "geometry" < "id"
    l_m2 = np.concatenate([_gather(parts, "links", 2, np.float64), inp.parcel_m2[id_parcel]])
    p_rank = pd.factorize(inp.parcel_ids, sort=True)[0]
    order = np.lexsort((l_by, p_rank[l_parcel], d_rank[l_decl]))
    l_decl, l_parcel, l_by, l_m2 = l_decl[order], l_parcel[order], l_by[order], l_m2[order]
    links = pd.DataFrame({
        "declaration_id": d_str.take(l_decl),
        "parcel_id": pd.array(inp.parcel_ids, dtype=pd.StringDtype()).take(l_parcel),
        "overlap_m2": l_m2,
        "by": np.array(["geometry", "id"], dtype=object)[l_by],
    })

    # outside: one row per drawn declaration
    covered = np.zeros(len(ids))
    covered[_gather(parts, "covered", 0)] = _gather(parts, "covered", 1, np.float64)
    which = np.flatnonzero(inp.drawn)
    which = which[np.argsort(d_rank[which], kind="stable")]
    outside_m2 = np.clip(inp.drawn_m2[which] - covered[which], 0.0, None)
    outside = pd.DataFrame({
        "declaration_id": d_str.take(which),
        "outside_m2": outside_m2,
        "outside_share": outside_m2 / inp.drawn_m2[which],
    })

    # pairs, ordered so that declaration_a < declaration_b
    pa, pb = _gather(parts, "pairs", 0), _gather(parts, "pairs", 1)
    over = _gather(parts, "pairs", 2, np.float64)
    swap = d_rank[pa] > d_rank[pb]
    first, second = np.where(swap, pb, pa), np.where(swap, pa, pb)
    order = np.lexsort((d_rank[second], d_rank[first]))
    first, second, over = first[order], second[order], over[order]
    a_str = pd.array(inp.applicant_ids, dtype=pd.StringDtype())
    pairs = pd.DataFrame({
        "declaration_a": d_str.take(first),
        "declaration_b": d_str.take(second),
        "applicant_a": a_str.take(first),
        "applicant_b": a_str.take(second),
        "year": inp.year[first],
        "overlap_m2": over,
        "share_a": over / inp.effective_m2[first],
        "share_b": over / inp.effective_m2[second],
        "geometry": _gather(parts, "pairs", 3, object)[order],
    })

    u_decl, u_cls = _gather(parts, "land_use", 0), _gather(parts, "land_use", 1)
    land_use = pd.DataFrame({
        "declaration_id": ids[u_decl],
        "land_use": inp.lu_classes[u_cls],
        "overlap_m2": _gather(parts, "land_use", 2, np.float64),
    })

    tables = {
        "links": links,  # sorted above, as pairs and outside
        "pairs": pairs,
        "land_use": land_use.sort_values(["declaration_id", "land_use"]),
        "outside": outside,
        "changes": _changes(inp, parts).sort_values("declaration_id"),
    }
    for name, frame in tables.items():
        frame = frame.reset_index(drop=True)
        for col in _ID_COLUMNS.intersection(frame.columns):
            if frame[col].dtype != pd.StringDtype():
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
