"""Coordinate systems and units: WGS-84, GCJ-02, BD-09, CGCS2000; metric CRS choice; area units.

Chinese map services publish point coordinates in GCJ-02 ("Mars coordinates", used by
Amap/Gaode, Tencent and Google Maps inside China) or BD-09 (Baidu). Both are obfuscated
versions of WGS-84 and sit hundreds of metres from what a GPS receiver reports. Every point
input declares its system (:func:`normalize_coord_system`), and :func:`to_wgs84` brings it to
WGS-84 before any spatial work.

The conversions are vectorised numpy versions of the published formulas (the same ones as
the ``prcoords`` and ``coordTransform`` packages, which convert one point per call). Inverse
conversions are solved by fixed-point iteration to better than 1e-9 degree (about 0.1 mm),
not by the one-step approximations (errors up to about 5e-5 degree, 5 m) those libraries
use by default.

CGCS2000 (EPSG:4490) is treated as WGS-84: the two agree within centimetres, well below the
accuracy of the data this project sees, so no shift is applied.

Metric work (areas, distances, buffers) runs in a projected CRS chosen by
:func:`metric_crs_for`: a CGCS2000 3-degree Gauss-Krüger zone inside China, a WGS 84 UTM
zone elsewhere. Areas are reported in the user's unit (:func:`m2_to`).

Examples
--------
>>> lon, lat = wgs84_to_gcj02(116.377817, 39.911954)
>>> round(float(lon), 6), round(float(lat), 6)
(116.384047, 39.913345)
>>> metric_crs_for((113.8, 22.4, 114.5, 22.8)).to_epsg()
4547
>>> round(float(area_to_m2(1.0, "mu")), 2)
666.67
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Literal, TypeVar, overload

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from numpy.typing import ArrayLike, NDArray

from geosup.errors import ConfigError, CRSError

__all__ = [
    "AREA_UNITS",
    "COORD_SYSTEMS",
    "M2_PER_HA",
    "M2_PER_KM2",
    "M2_PER_MU",
    "area_to_m2",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "convert_points_frame",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "m2_to",
    "metric_crs_for",
    "normalize_area_unit",
    "normalize_coord_system",
    "out_of_china",
    "require_crs",
    "to_metric",
    "to_wgs84",
    "to_wgs84_frame",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
CRSLike = pyproj.CRS | str | int
Frame = TypeVar("Frame", gpd.GeoDataFrame, gpd.GeoSeries)

# --------------------------------------------------------------------------------------------
# Coordinate systems of point inputs
# --------------------------------------------------------------------------------------------

COORD_SYSTEMS: tuple[str, ...] = ("wgs84", "gcj02", "bd09", "cgcs2000")
"""Canonical names of the coordinate systems a point input may declare."""

# Keys are lower-case with spaces, hyphens and underscores removed (see _squash).
_SYSTEM_ALIASES: dict[str, str] = {
    "wgs84": "wgs84",
    "wgs": "wgs84",
    "gps": "wgs84",
    "epsg:4326": "wgs84",
    "4326": "wgs84",
    "ogc:crs84": "wgs84",
    "crs84": "wgs84",
    "gcj02": "gcj02",
    "gcj": "gcj02",
    "mars": "gcj02",
    "火星": "gcj02",
    "火星坐标": "gcj02",
    "火星坐标系": "gcj02",
    "gaode": "gcj02",
    "amap": "gcj02",
    "bd09": "bd09",
    "bd09ll": "bd09",
    "bd": "bd09",
    "baidu": "bd09",
    "百度": "bd09",
    "cgcs2000": "cgcs2000",
    "cgcs": "cgcs2000",
    "epsg:4490": "cgcs2000",
    "4490": "cgcs2000",
}


def _squash(text: str) -> str:
    return "".join(ch for ch in text.strip().lower() if ch not in " -_")


def normalize_coord_system(name: str) -> str:
    """Return the canonical name of a point coordinate system.

    Parameters
    ----------
    name : str
        A system name or common alias, case-insensitive, with or without hyphens, spaces or
        underscores: ``"WGS-84"``, ``"EPSG:4326"``, ``"GCJ-02"``, ``"gcj"``, ``"mars"``,
        ``"BD-09"``, ``"baidu"``, ``"CGCS2000"``, ``"EPSG:4490"`` …

    Returns
    -------
    str
        One of :data:`COORD_SYSTEMS`: ``"wgs84"``, ``"gcj02"``, ``"bd09"``, ``"cgcs2000"``.

    Raises
    ------
    CRSError
        If the name is not recognised; the message lists the accepted names.

    Examples
    --------
    >>> normalize_coord_system("GCJ-02")
    'gcj02'
    >>> normalize_coord_system("EPSG:4326")
    'wgs84'
    """
    canonical = _SYSTEM_ALIASES.get(_squash(name)) if isinstance(name, str) else None
    if canonical is None:
        msg = (
            f"unknown coordinate system {name!r}; use one of: wgs84 (WGS-84, EPSG:4326, gps), "
            "gcj02 (GCJ-02, gcj, mars, amap/gaode), bd09 (BD-09, baidu), "
            "cgcs2000 (CGCS2000, EPSG:4490)"
        )
        raise CRSError(msg)
    return canonical


# --------------------------------------------------------------------------------------------
# Vectorised GCJ-02 / BD-09 conversions
# --------------------------------------------------------------------------------------------

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 formula.
_GCJ_A = 6378245.0
_GCJ_EE = 0.00669342162296594323
# Baidu's constants.
_BD_X_PI = math.pi * 3000.0 / 180.0
_BD_DLON = 0.0065
_BD_DLAT = 0.006
# The box outside which the GCJ-02 shift is not applied (coordTransform's rule, shared by
# wandergis/coordtransform; prcoords and eviltransform use a slightly larger box).
_CHINA_LON = (73.66, 135.05)
_CHINA_LAT = (3.86, 53.55)
# Fixed-point iteration of the inverses: each step shrinks the error about 1000-fold.
_INVERSE_MAX_ITER = 8
_INVERSE_TOL_DEG = 1e-10


def _as_lonlat(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Broadcast to two writable float64 arrays of one shape."""
    lon_b, lat_b = np.broadcast_arrays(
        np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    )
    return np.array(lon_b, dtype=np.float64), np.array(lat_b, dtype=np.float64)


def out_of_china(lon: ArrayLike, lat: ArrayLike) -> NDArray[np.bool_]:
    """Tell which points lie outside the box where the GCJ-02 shift applies.

    The rule is the bounding box used by ``coordTransform`` (and ``wandergis/coordtransform``):
    a point is inside when ``73.66 < lon < 135.05`` and ``3.86 < lat < 53.55`` (strict).
    ``prcoords`` and ``eviltransform`` use a slightly larger box (72.004–137.8347 E,
    0.8293–55.8271 N); the libraries disagree in the strip between the two boxes, which
    holds no Chinese territory except remote border areas. NaN counts as outside.

    Parameters
    ----------
    lon, lat : array_like
        Longitudes and latitudes in degrees (broadcast together).

    Returns
    -------
    numpy.ndarray of bool
        True where the point is outside the box (left unchanged by GCJ-02 conversions).

    Examples
    --------
    >>> out_of_china([116.4, -3.0], [39.9, 53.4]).tolist()
    [False, True]
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    inside = (
        (lon_a > _CHINA_LON[0])
        & (lon_a < _CHINA_LON[1])
        & (lat_a > _CHINA_LAT[0])
        & (lat_a < _CHINA_LAT[1])
    )
    return ~inside


def _gcj_offset(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 offset in degrees at WGS-84 (lon, lat), without the China box test."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat_m = (
        -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * sqrt_abs_x
        + common
        + (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
        + (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    )
    dlon_m = (
        300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * sqrt_abs_x
        + common
        + (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
        + (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    )
    rad_lat = lat / 180.0 * np.pi
    sin_lat = np.sin(rad_lat)
    magic = 1.0 - _GCJ_EE * sin_lat * sin_lat
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat_m * 180.0) / ((_GCJ_A * (1.0 - _GCJ_EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon_m * 180.0) / (_GCJ_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 coordinates to GCJ-02.

    Points outside China (see :func:`out_of_china`) and NaN are returned unchanged.

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        GCJ-02 coordinates, new arrays of the broadcast shape (0-d arrays for scalar input;
        ``float()`` unwraps them).

    Examples
    --------
    >>> lon, lat = wgs84_to_gcj02([116.377817, 0.0], [39.911954, 0.0])
    >>> lon.round(6).tolist(), lat.round(6).tolist()
    ([116.384047, 0.0], [39.913345, 0.0])
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    inside = ~out_of_china(lon_a, lat_a)
    dlon, dlat = _gcj_offset(lon_a[inside], lat_a[inside])
    lon_a[inside] += dlon
    lat_a[inside] += dlat
    return lon_a, lat_a


def gcj02_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 coordinates to WGS-84 (exact inverse of :func:`wgs84_to_gcj02`).

    Solved by fixed-point iteration, all points at once: at most eight steps, stopping when
    every residual is below 1e-10 degree (three or four steps in practice). Whether a point
    is shifted is decided on the GCJ-02 input, as the reference libraries do; points outside
    China and NaN are returned unchanged.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        WGS-84 coordinates, new arrays of the broadcast shape (0-d arrays for scalar input).

    Examples
    --------
    >>> lon, lat = gcj02_to_wgs84(116.38404722455657, 39.91334545536069)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.377817, 39.911954)
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    inside = ~out_of_china(lon_a, lat_a)
    glon = lon_a[inside]
    glat = lat_a[inside]
    dlon, dlat = _gcj_offset(glon, glat)
    wlon = glon - dlon
    wlat = glat - dlat
    for _ in range(_INVERSE_MAX_ITER):
        dlon, dlat = _gcj_offset(wlon, wlat)
        rlon = wlon + dlon - glon
        rlat = wlat + dlat - glat
        wlon -= rlon
        wlat -= rlat
        if not (np.any(np.abs(rlon) > _INVERSE_TOL_DEG) or np.any(np.abs(rlat) > _INVERSE_TOL_DEG)):
            break
    lon_a[inside] = wlon
    lat_a[inside] = wlat
    return lon_a, lat_a


def _bd_forward(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _BD_X_PI)
    return z * np.cos(theta) + _BD_DLON, z * np.sin(theta) + _BD_DLAT


def gcj02_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert GCJ-02 coordinates to BD-09 (Baidu).

    Baidu's formula is applied everywhere (no China box), as the reference libraries do.
    NaN gives NaN.

    Parameters
    ----------
    lon, lat : array_like
        GCJ-02 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        BD-09 coordinates, new arrays of the broadcast shape (0-d arrays for scalar input).

    Examples
    --------
    >>> lon, lat = gcj02_to_bd09(116.404, 39.915)
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.410369, 39.921337)
    """
    lon_a, lat_a = _as_lonlat(lon, lat)
    with np.errstate(invalid="ignore"):
        bd_lon, bd_lat = _bd_forward(lon_a, lat_a)
    # ufuncs turn 0-d arrays into numpy scalars; keep the documented array type.
    return np.asarray(bd_lon, dtype=np.float64), np.asarray(bd_lat, dtype=np.float64)


def bd09_to_gcj02(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 (Baidu) coordinates to GCJ-02 (exact inverse of :func:`gcj02_to_bd09`).

    Starts from Baidu's closed-form inverse (error up to about 2e-6 degree) and refines it by
    fixed-point iteration to below 1e-10 degree. NaN gives NaN.

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        GCJ-02 coordinates, new arrays of the broadcast shape (0-d arrays for scalar input).

    Examples
    --------
    >>> lon, lat = bd09_to_gcj02(116.404, 39.915)
    >>> round(float(lon), 5), round(float(lat), 5)
    (116.39763, 39.90866)
    """
    blon, blat = _as_lonlat(lon, lat)
    with np.errstate(invalid="ignore"):
        x = blon - _BD_DLON
        y = blat - _BD_DLAT
        z = np.hypot(x, y) - 0.00002 * np.sin(y * _BD_X_PI)
        theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_X_PI)
        glon = z * np.cos(theta)
        glat = z * np.sin(theta)
        for _ in range(_INVERSE_MAX_ITER):
            flon, flat = _bd_forward(glon, glat)
            rlon = flon - blon
            rlat = flat - blat
            glon -= rlon
            glat -= rlat
            if not (
                np.any(np.abs(rlon) > _INVERSE_TOL_DEG) or np.any(np.abs(rlat) > _INVERSE_TOL_DEG)
            ):
                break
    return np.asarray(glon, dtype=np.float64), np.asarray(glat, dtype=np.float64)


def wgs84_to_bd09(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 coordinates to BD-09 (through GCJ-02).

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        BD-09 coordinates (0-d arrays for scalar input).

    Examples
    --------
    >>> lon, lat = wgs84_to_bd09(116.404, 39.915)
    >>> round(float(lon), 4), round(float(lat), 4)
    (116.4166, 39.9227)
    """
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Convert BD-09 (Baidu) coordinates to WGS-84 (through GCJ-02, both steps exact).

    Parameters
    ----------
    lon, lat : array_like
        BD-09 longitudes and latitudes in degrees; scalars or arrays, broadcast together.

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        WGS-84 coordinates (0-d arrays for scalar input).

    Examples
    --------
    >>> lon, lat = bd09_to_wgs84(*wgs84_to_bd09(116.404, 39.915))
    >>> round(float(lon), 9), round(float(lat), 9)
    (116.404, 39.915)
    """
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def to_wgs84(lon: ArrayLike, lat: ArrayLike, *, system: str) -> tuple[FloatArray, FloatArray]:
    """Convert coordinates declared in ``system`` to WGS-84.

    Parameters
    ----------
    lon, lat : array_like
        Longitudes and latitudes in degrees; scalars or arrays, broadcast together.
    system : str
        The declared system or an alias (see :func:`normalize_coord_system`). ``wgs84`` and
        ``cgcs2000`` are returned unchanged (as new float64 arrays).

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        WGS-84 coordinates (0-d arrays for scalar input).

    Raises
    ------
    CRSError
        If ``system`` is unknown.

    Examples
    --------
    >>> lon, lat = to_wgs84([116.38404722455657], [39.91334545536069], system="GCJ-02")
    >>> lon.round(6).tolist(), lat.round(6).tolist()
    ([116.377817], [39.911954])
    """
    canonical = normalize_coord_system(system)
    if canonical == "gcj02":
        return gcj02_to_wgs84(lon, lat)
    if canonical == "bd09":
        return bd09_to_wgs84(lon, lat)
    return _as_lonlat(lon, lat)


def from_wgs84(lon: ArrayLike, lat: ArrayLike, *, system: str) -> tuple[FloatArray, FloatArray]:
    """Convert WGS-84 coordinates to ``system`` (for display on a Chinese basemap).

    Parameters
    ----------
    lon, lat : array_like
        WGS-84 longitudes and latitudes in degrees; scalars or arrays, broadcast together.
    system : str
        The target system or an alias (see :func:`normalize_coord_system`).

    Returns
    -------
    lon, lat : numpy.ndarray of float64
        Coordinates in ``system`` (0-d arrays for scalar input).

    Raises
    ------
    CRSError
        If ``system`` is unknown.

    Examples
    --------
    >>> lon, lat = from_wgs84(116.377817, 39.911954, system="gcj02")
    >>> round(float(lon), 6), round(float(lat), 6)
    (116.384047, 39.913345)
    """
    canonical = normalize_coord_system(system)
    if canonical == "gcj02":
        return wgs84_to_gcj02(lon, lat)
    if canonical == "bd09":
        return wgs84_to_bd09(lon, lat)
    return _as_lonlat(lon, lat)


# --------------------------------------------------------------------------------------------
# Metric CRS choice
# --------------------------------------------------------------------------------------------

_WGS84 = pyproj.CRS.from_epsg(4326)
_CGCS2000 = pyproj.CRS.from_epsg(4490)
# "auto" picks CGCS2000 Gauss-Krüger inside this rough box around China.
_AUTO_CHINA_LON = (73.0, 136.0)
_AUTO_CHINA_LAT = (17.0, 54.0)
# family="cgcs2000" accepts centres the 21 zones (CM 75E … 135E, ±1.5°) cover, at China's
# latitudes including the South China Sea.
_CGCS_LON = (73.5, 136.5)
_CGCS_LAT = (0.0, 56.0)
# EPSG:4534 is "CGCS2000 / 3-degree Gauss-Kruger CM 75E" … EPSG:4554 is "… CM 135E".
_CGCS_GK_CM_FIRST_EPSG = 4534
_CGCS_GK_CM_FIRST = 75
_CGCS_GK_CM_LAST = 135
_FAMILIES = ("auto", "utm", "cgcs2000")


def _extent_of(
    bounds_or_frame: gpd.GeoDataFrame | gpd.GeoSeries | Sequence[float],
    crs: CRSLike | None,
) -> tuple[np.ndarray, pyproj.CRS]:
    if isinstance(bounds_or_frame, gpd.GeoDataFrame | gpd.GeoSeries):
        frame_crs = bounds_or_frame.crs
        if frame_crs is None and crs is None:
            require_crs(bounds_or_frame, what="the extent's layer")
        given = None if crs is None else pyproj.CRS.from_user_input(crs)
        if frame_crs is not None and given is not None and not frame_crs.equals(given):
            msg = (
                f"crs={given.to_string()} contradicts the layer's own CRS "
                f"{frame_crs.to_string()}; drop the crs argument or reproject the layer"
            )
            raise CRSError(msg)
        source = frame_crs if frame_crs is not None else given
        bounds = np.asarray(bounds_or_frame.total_bounds, dtype=np.float64)
    else:
        source = _WGS84 if crs is None else pyproj.CRS.from_user_input(crs)
        try:
            bounds = np.asarray(bounds_or_frame, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as exc:
            msg = f"bounds must be (minx, miny, maxx, maxy) numbers, got {bounds_or_frame!r}"
            raise CRSError(msg) from exc
        if bounds.size != 4:
            msg = f"bounds must be (minx, miny, maxx, maxy), got {bounds.size} values"
            raise CRSError(msg)
    if not np.all(np.isfinite(bounds)):
        msg = "cannot choose a metric CRS for an empty extent (no finite bounds)"
        raise CRSError(msg)
    if bounds[0] > bounds[2] or bounds[1] > bounds[3]:
        msg = f"bounds must be (minx, miny, maxx, maxy) with min <= max, got {bounds.tolist()}"
        raise CRSError(msg)
    return bounds, source


def _utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the WGS 84 UTM zone (or UPS beyond 84N / 80S) for one point."""
    if lat > 84.0:
        return 32661  # WGS 84 / UPS North (N,E)
    if lat < -80.0:
        return 32761  # WGS 84 / UPS South (N,E)
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        zone = 32  # south-west Norway
    elif 72.0 <= lat <= 84.0 and 0.0 <= lon < 42.0:
        zone = 31 if lon < 9.0 else 33 if lon < 21.0 else 35 if lon < 33.0 else 37  # Svalbard
    return (32600 if lat >= 0.0 else 32700) + zone


def _cgcs2000_epsg(lon: float) -> int:
    """EPSG code of the CGCS2000 3-degree Gauss-Krüger CM zone nearest to ``lon``."""
    cm = math.floor(lon / 3.0 + 0.5) * 3  # a centre exactly between two meridians goes east
    cm = min(max(cm, _CGCS_GK_CM_FIRST), _CGCS_GK_CM_LAST)
    return _CGCS_GK_CM_FIRST_EPSG + (cm - _CGCS_GK_CM_FIRST) // 3


def metric_crs_for(
    bounds_or_frame: gpd.GeoDataFrame | gpd.GeoSeries | Sequence[float],
    *,
    crs: CRSLike | None = None,
    family: Literal["auto", "utm", "cgcs2000"] = "auto",
) -> pyproj.CRS:
    """Choose a metric projected CRS for an extent.

    The centre of the extent is transformed to WGS-84 longitude/latitude and the zone is
    chosen for that centre:

    - ``"cgcs2000"``: the CGCS2000 3-degree Gauss-Krüger zone whose central meridian is the
      multiple of 3 nearest to the centre longitude (EPSG:4534 = CM 75E … EPSG:4554 =
      CM 135E; false easting 500 km, no zone prefix).
    - ``"utm"``: the WGS 84 UTM zone (EPSG:326xx north, 327xx south), with the south-west
      Norway (zone 32V) and Svalbard (31X/33X/35X/37X) exceptions; beyond 84N or 80S, UPS
      North/South (EPSG:32661/32761).
    - ``"auto"``: ``"cgcs2000"`` when the centre lies in the rough box around China
      (73–136 E, 17–54 N), ``"utm"`` elsewhere.

    An extent wider than a zone still gets the centre's zone, without error or warning;
    areas and distances far from the central meridian then carry more distortion (about
    0.1 % at 3° from it, 0.4 % at 6°, growing with the square of the distance). An extent
    that crosses the antimeridian is not recognised as such (its centre falls near 0°).

    Parameters
    ----------
    bounds_or_frame : GeoDataFrame, GeoSeries or sequence of 4 floats
        A layer (its ``total_bounds`` and ``crs`` are used) or ``(minx, miny, maxx, maxy)``.
    crs : pyproj.CRS, str or int, optional
        The CRS of a bounds tuple (default EPSG:4326). For a layer, it may declare the CRS of
        a layer that has none; it must not contradict a CRS the layer has.
    family : {"auto", "utm", "cgcs2000"}
        Which family of projections to use.

    Returns
    -------
    pyproj.CRS
        A projected CRS in metres, built from the EPSG database.

    Raises
    ------
    CRSError
        If the layer has no CRS, the extent is empty or malformed, ``crs`` contradicts the
        layer's, or ``family="cgcs2000"`` is asked for a centre outside 73.5–136.5 E,
        0–56 N.
    ConfigError
        If ``family`` is unknown.

    Examples
    --------
    >>> metric_crs_for((113.8, 22.4, 114.5, 22.8)).name
    'CGCS2000 / 3-degree Gauss-Kruger CM 114E'
    >>> metric_crs_for((-3.05, 53.35, -2.85, 53.5)).to_epsg()
    32630
    >>> metric_crs_for((113.8, 22.4, 114.5, 22.8), family="utm").to_epsg()
    32650
    """
    if family not in _FAMILIES:
        msg = f"unknown metric CRS family {family!r}; use one of: {', '.join(_FAMILIES)}"
        raise ConfigError(msg)
    bounds, source = _extent_of(bounds_or_frame, crs)
    cx = (bounds[0] + bounds[2]) / 2.0
    cy = (bounds[1] + bounds[3]) / 2.0
    if source.is_geographic and source.equals(_WGS84, ignore_axis_order=True):
        lon, lat = float(cx), float(cy)
    else:
        transformer = pyproj.Transformer.from_crs(source, _WGS84, always_xy=True)
        lon, lat = (float(v) for v in transformer.transform(cx, cy))
    if not (math.isfinite(lon) and math.isfinite(lat)):
        msg = f"the extent's centre ({cx}, {cy}) cannot be placed on the globe in {source.name}"
        raise CRSError(msg)
    lon = (lon + 180.0) % 360.0 - 180.0
    in_auto_china = (
        _AUTO_CHINA_LON[0] <= lon <= _AUTO_CHINA_LON[1]
        and _AUTO_CHINA_LAT[0] <= lat <= _AUTO_CHINA_LAT[1]
    )
    if family == "cgcs2000" or (family == "auto" and in_auto_china):
        if not (_CGCS_LON[0] <= lon <= _CGCS_LON[1] and _CGCS_LAT[0] <= lat <= _CGCS_LAT[1]):
            msg = (
                f"the extent's centre ({lon:.4f} E, {lat:.4f} N) is outside the CGCS2000 "
                f"Gauss-Kruger zones ({_CGCS_LON[0]}-{_CGCS_LON[1]} E, "
                f"{_CGCS_LAT[0]}-{_CGCS_LAT[1]} N); use family='utm' or 'auto'"
            )
            raise CRSError(msg)
        code = _cgcs2000_epsg(lon)
    else:
        code = _utm_epsg(lon, lat)
    target = pyproj.CRS.from_epsg(code)
    lon_span = (bounds[2] - bounds[0]) if source.is_geographic else float("nan")
    logger.debug("metric CRS for centre (%.5f, %.5f): EPSG:%d %s", lon, lat, code, target.name)
    if lon_span > 6.0:
        logger.debug("extent spans %.1f° of longitude; distortion grows off-centre", lon_span)
    return target


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


def require_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries, *, what: str,
                hint: str | None = None) -> pyproj.CRS:
    """Return a layer's CRS, refusing a layer without one.

    Parameters
    ----------
    frame : GeoDataFrame or GeoSeries
        The layer.
    what : str
        How to name the layer in the error message (``"fixes"``, ``"the parcels layer"``).
    hint : str, optional
        How the caller's user declares the CRS, named in the message (a command names its
        flag, e.g. ``"--input-crs parcels=EPSG:<code>"``); default ``set_crs``.

    Returns
    -------
    pyproj.CRS
        ``frame.crs``.

    Raises
    ------
    CRSError
        If the layer has no CRS.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import Point
    >>> require_crs(gpd.GeoSeries([Point(0, 0)], crs=4326), what="stations").to_epsg()
    4326
    """
    crs = frame.crs
    if crs is None:
        how = hint or "GeoDataFrame.set_crs (e.g. frame.set_crs('EPSG:4326'))"
        msg = f"{what} has no coordinate reference system; declare it with {how}"
        raise CRSError(msg)
    return crs


def to_metric(frame: Frame, *, crs: CRSLike | None = None, what: str = "the layer") -> Frame:
    """Reproject a layer into a metric projected CRS.

    Parameters
    ----------
    frame : GeoDataFrame or GeoSeries
        The layer; it must have a CRS.
    crs : pyproj.CRS, str or int, optional
        The target; by default :func:`metric_crs_for` ``(frame)``. It must be projected with
        metre axes.
    what : str
        How to name the layer in error messages.

    Returns
    -------
    GeoDataFrame or GeoSeries
        A reprojected copy, of the same kind as ``frame``.

    Raises
    ------
    CRSError
        If the layer has no CRS or ``crs`` is not a metric projected CRS.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import Point
    >>> pts = gpd.GeoSeries([Point(114.06, 22.54)], crs=4326)
    >>> to_metric(pts).crs.to_epsg()
    4547
    """
    require_crs(frame, what=what)
    if crs is None:
        target = metric_crs_for(frame)
    else:
        target = pyproj.CRS.from_user_input(crs)
        units = {axis.unit_name for axis in target.axis_info}
        if not target.is_projected or units != {"metre"}:
            msg = (
                f"{target.name} is not a metric projected CRS (axis units: "
                f"{', '.join(sorted(units)) or 'none'}); choose one in metres or omit crs"
            )
            raise CRSError(msg)
    return frame.to_crs(target)


def to_wgs84_frame(frame: Frame, *, what: str = "the layer") -> Frame:
    """Reproject a layer to WGS-84 longitude/latitude (EPSG:4326).

    Parameters
    ----------
    frame : GeoDataFrame or GeoSeries
        The layer; it must have a CRS.
    what : str
        How to name the layer in error messages.

    Returns
    -------
    GeoDataFrame or GeoSeries
        A reprojected copy in EPSG:4326.

    Raises
    ------
    CRSError
        If the layer has no CRS.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import Point
    >>> pts = gpd.GeoSeries([Point(500000, 0)], crs=32650)
    >>> wgs = to_wgs84_frame(pts)
    >>> wgs.crs.to_epsg(), round(float(wgs.x.iloc[0]), 6)
    (4326, 117.0)
    """
    require_crs(frame, what=what)
    return frame.to_crs(_WGS84)


def convert_points_frame(frame: Frame, *, system: str, what: str = "the layer") -> Frame:
    """Convert Point coordinates declared in ``system`` to WGS-84 geometry in EPSG:4326.

    GCJ-02 and BD-09 data often come with no CRS or mislabelled as EPSG:4326; the
    ``system`` argument is the declaration that counts. The layer's own CRS must therefore
    be missing or geographic WGS-84/CGCS2000 (EPSG:4326, OGC:CRS84, EPSG:4490). Missing
    geometries and empty points pass through; Z values are kept.

    Parameters
    ----------
    frame : GeoDataFrame or GeoSeries
        Points with longitude/latitude coordinates in ``system``.
    system : str
        The declared system or an alias (see :func:`normalize_coord_system`).
    what : str
        How to name the layer in error messages.

    Returns
    -------
    GeoDataFrame or GeoSeries
        A copy with converted geometry and CRS EPSG:4326; other columns untouched.

    Raises
    ------
    CRSError
        If ``system`` is unknown, the layer's CRS is not geographic WGS-84/CGCS2000, or it
        holds geometry other than Points.

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely import Point
    >>> gcj = gpd.GeoDataFrame(
    ...     {"station_id": ["s1"]}, geometry=[Point(116.38404722455657, 39.91334545536069)]
    ... )
    >>> wgs = convert_points_frame(gcj, system="gcj02")
    >>> pt = wgs.geometry.iloc[0]
    >>> wgs.crs.to_epsg(), round(pt.x, 6), round(pt.y, 6)
    (4326, 116.377817, 39.911954)
    """
    canonical = normalize_coord_system(system)
    frame_crs = frame.crs
    if frame_crs is not None and not (
        frame_crs.equals(_WGS84, ignore_axis_order=True)
        or frame_crs.equals(_CGCS2000, ignore_axis_order=True)
    ):
        msg = (
            f"{what} is declared as {canonical} points but its CRS is {frame_crs.name}; "
            "point coordinates in a declared system must be longitude/latitude with no CRS "
            "or EPSG:4326/EPSG:4490"
        )
        raise CRSError(msg)
    geoms = np.array(frame.geometry.array, dtype=object)
    type_ids = shapely.get_type_id(geoms)
    bad = (type_ids != shapely.GeometryType.POINT) & (type_ids != shapely.GeometryType.MISSING)
    if bad.any():
        first = shapely.GeometryType(int(type_ids[bad][0])).name.title()
        msg = (
            f"{what} must hold Points to convert from {canonical}; {int(bad.sum())} of "
            f"{len(geoms)} geometries are not (first: {first})"
        )
        raise CRSError(msg)
    coords = shapely.get_coordinates(geoms, include_z=True)
    lon, lat = to_wgs84(coords[:, 0], coords[:, 1], system=canonical)
    coords[:, 0] = lon
    coords[:, 1] = lat
    converted = gpd.GeoSeries(shapely.set_coordinates(geoms, coords), index=frame.index, crs=_WGS84)
    if isinstance(frame, gpd.GeoSeries):
        converted.name = frame.name
        return converted
    out = frame.copy()
    out[frame.geometry.name] = converted
    return out.set_crs(_WGS84, allow_override=True)


# --------------------------------------------------------------------------------------------
# Area units
# --------------------------------------------------------------------------------------------

M2_PER_MU: float = 10000.0 / 15.0
"""Square metres in one mu (亩): 666.67 m²."""
M2_PER_HA: float = 10000.0
"""Square metres in one hectare."""
M2_PER_KM2: float = 1_000_000.0
"""Square metres in one square kilometre."""

AREA_UNITS: dict[str, float] = {"m2": 1.0, "mu": M2_PER_MU, "ha": M2_PER_HA, "km2": M2_PER_KM2}
"""Canonical area units and their size in square metres."""

_AREA_ALIASES: dict[str, str] = {
    "m2": "m2",
    "m²": "m2",
    "m^2": "m2",
    "sqm": "m2",
    "sq.m": "m2",
    "squaremetre": "m2",
    "squaremetres": "m2",
    "squaremeter": "m2",
    "squaremeters": "m2",
    "平方米": "m2",
    "mu": "mu",
    "亩": "mu",
    "ha": "ha",
    "hectare": "ha",
    "hectares": "ha",
    "公顷": "ha",
    "km2": "km2",
    "km²": "km2",
    "km^2": "km2",
    "sqkm": "km2",
    "平方公里": "km2",
    "平方千米": "km2",
}


def normalize_area_unit(unit: str) -> str:
    """Return the canonical name of an area unit.

    Parameters
    ----------
    unit : str
        ``"m2"``/``"m²"``/``"sqm"``, ``"mu"``/``"亩"``, ``"ha"``/``"hectare"``, ``"km2"``
        and a few spelled-out variants, case-insensitive.

    Returns
    -------
    str
        One of ``"m2"``, ``"mu"``, ``"ha"``, ``"km2"`` (keys of :data:`AREA_UNITS`).

    Raises
    ------
    ConfigError
        If the unit is unknown; the message lists the accepted names.

    Examples
    --------
    >>> normalize_area_unit("亩"), normalize_area_unit("Hectare"), normalize_area_unit("m²")
    ('mu', 'ha', 'm2')
    """
    canonical = _AREA_ALIASES.get(_squash(unit)) if isinstance(unit, str) else None
    if canonical is None:
        msg = f"unknown area unit {unit!r}; use one of: m2 (m², sqm), mu (亩), ha (hectare), km2"
        raise ConfigError(msg)
    return canonical


@overload
def area_to_m2(values: pd.Series, unit: str) -> pd.Series: ...
@overload
def area_to_m2(values: ArrayLike, unit: str) -> FloatArray: ...
def area_to_m2(values: ArrayLike | pd.Series, unit: str) -> FloatArray | pd.Series:
    """Convert areas from ``unit`` to square metres.

    Parameters
    ----------
    values : array_like or pandas.Series
        Areas in ``unit``.
    unit : str
        The unit (see :func:`normalize_area_unit`).

    Returns
    -------
    numpy.ndarray of float64 or pandas.Series
        Areas in m²: a Series (same index) for a Series, otherwise a float64 array
        (0-d for a scalar).

    Raises
    ------
    ConfigError
        If the unit is unknown.

    Examples
    --------
    >>> area_to_m2([1.0, 15.0], "mu").round(2).tolist()
    [666.67, 10000.0]
    """
    factor = AREA_UNITS[normalize_area_unit(unit)]
    if isinstance(values, pd.Series):
        return values.astype(np.float64) * factor
    return np.asarray(values, dtype=np.float64) * factor


@overload
def m2_to(values: pd.Series, unit: str) -> pd.Series: ...
@overload
def m2_to(values: ArrayLike, unit: str) -> FloatArray: ...
def m2_to(values: ArrayLike | pd.Series, unit: str) -> FloatArray | pd.Series:
    """Convert areas from square metres to ``unit``.

    Parameters
    ----------
    values : array_like or pandas.Series
        Areas in m².
    unit : str
        The target unit (see :func:`normalize_area_unit`).

    Returns
    -------
    numpy.ndarray of float64 or pandas.Series
        Areas in ``unit``: a Series (same index) for a Series, otherwise a float64 array
        (0-d for a scalar).

    Raises
    ------
    ConfigError
        If the unit is unknown.

    Examples
    --------
    >>> m2_to([10000.0, 666.67], "mu").round(4).tolist()
    [15.0, 1.0]
    """
    factor = AREA_UNITS[normalize_area_unit(unit)]
    if isinstance(values, pd.Series):
        return values.astype(np.float64) / factor
    return np.asarray(values, dtype=np.float64) / factor
