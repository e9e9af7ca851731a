"""Tests of geosup.crs: GCJ-02/BD-09 conversions, metric CRS choice, layers, area units.

The oracles are the per-point reference libraries ``prcoords`` and ``coordTransform`` and
points published in the test suites of ``googollee/eviltransform`` and
``wandergis/coordtransform``.
"""

from __future__ import annotations

import warnings

import coordTransform
import geopandas as gpd
import numpy as np
import pandas as pd
import prcoords
import pyproj
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from geosup import crs as gcrs
from geosup.errors import ConfigError, CRSError, GeosupError

GEOD = pyproj.Geod(ellps="WGS84")

# googollee/eviltransform, python/test.py: (wgs_lat, wgs_lng, gcj_lat, gcj_lng).
EVILTRANSFORM_PAIRS = [
    pytest.param(31.1774276, 121.5272106, 31.17530398364597, 121.531541859215, id="shanghai"),
    pytest.param(22.543847, 113.912316, 22.540796131694766, 113.9171764808363, id="shenzhen"),
    pytest.param(39.911954, 116.377817, 39.91334545536069, 116.38404722455657, id="beijing"),
]
# Shift between the WGS-84 and GCJ-02 points above, in metres (geodesic on WGS 84).
EVILTRANSFORM_SHIFT_M = {"shanghai": 475.3, "shenzhen": 603.4, "beijing": 554.7}

# wandergis/coordtransform, test/app.js: every conversion of (116.404, 39.915) (Tiananmen).
TIANANMEN = (116.404, 39.915)
WANDERGIS_BD09_TO_GCJ02 = (116.39762729119315, 39.90865673957631)  # closed-form inverse
WANDERGIS_GCJ02_TO_BD09 = (116.41036949371029, 39.92133699351021)
WANDERGIS_WGS84_TO_GCJ02 = (116.41024449916938, 39.91640428150164)
WANDERGIS_GCJ02_TO_WGS84 = (116.39775550083061, 39.91359571849836)  # one-step inverse


def random_china(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random points inside both libraries' China boxes, away from the box edges."""
    rng = np.random.default_rng(seed)
    return rng.uniform(74.0, 135.0, n), rng.uniform(18.0, 53.0, n)


def prcoords_apply(func, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a prcoords function (it takes and returns (lat, lon)) point by point."""
    out = np.array([func((y, x)) for x, y in zip(lon, lat, strict=True)])
    return out[:, 1], out[:, 0]


def ct_apply(func, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a coordTransform batch function to arrays."""
    out_lon, out_lat = func(np.ascontiguousarray(lon), np.ascontiguousarray(lat))
    return np.asarray(out_lon, dtype=float), np.asarray(out_lat, dtype=float)


# ---------------------------------------------------------------------------- system names


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("wgs84", "wgs84"),
        ("WGS-84", "wgs84"),
        ("WGS 84", "wgs84"),
        ("EPSG:4326", "wgs84"),
        ("epsg:4326", "wgs84"),
        ("gps", "wgs84"),
        ("GCJ-02", "gcj02"),
        ("gcj02", "gcj02"),
        ("gcj", "gcj02"),
        ("Mars", "gcj02"),
        ("火星坐标系", "gcj02"),
        ("BD-09", "bd09"),
        ("bd09", "bd09"),
        ("Baidu", "bd09"),
        ("CGCS2000", "cgcs2000"),
        ("cgcs_2000", "cgcs2000"),
        ("EPSG:4490", "cgcs2000"),
        ("  gcj_02 ", "gcj02"),
    ],
)
def test_normalize_coord_system_aliases(alias: str, expected: str) -> None:
    assert gcrs.normalize_coord_system(alias) == expected
    assert expected in gcrs.COORD_SYSTEMS


@pytest.mark.parametrize("bad", ["EPSG:3857", "bd09mc", "", "utm", 4326])
def test_normalize_coord_system_rejects_unknown(bad: object) -> None:
    with pytest.raises(CRSError, match="unknown coordinate system") as info:
        gcrs.normalize_coord_system(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, GeosupError)
    for name in gcrs.COORD_SYSTEMS:
        assert name in str(info.value)


# ---------------------------------------------------------------- conversions vs the oracles


N_RANDOM = 10_000


def test_wgs84_to_gcj02_matches_both_libraries() -> None:
    lon, lat = random_china(N_RANDOM, seed=1)
    out_lon, out_lat = gcrs.wgs84_to_gcj02(lon, lat)
    ct_lon, ct_lat = ct_apply(coordTransform.wgs84_to_gcj02, lon, lat)
    pr_lon, pr_lat = prcoords_apply(prcoords.wgs_gcj, lon, lat)
    np.testing.assert_allclose(out_lon, ct_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out_lat, ct_lat, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out_lon, pr_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out_lat, pr_lat, rtol=0, atol=1e-9)
    # The shift is real: between roughly 100 m and 1 km everywhere in China.
    assert np.all(np.hypot(out_lon - lon, out_lat - lat) > 1e-4)


def test_gcj02_to_wgs84_is_exact_inverse_of_both_libraries_forward() -> None:
    gcj_lon, gcj_lat = random_china(N_RANDOM, seed=2)
    wgs_lon, wgs_lat = gcrs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    # Pushing our inverse through each library's forward gives the input back.
    ct_lon, ct_lat = ct_apply(coordTransform.wgs84_to_gcj02, wgs_lon, wgs_lat)
    np.testing.assert_allclose(ct_lon, gcj_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ct_lat, gcj_lat, rtol=0, atol=1e-9)
    pr_lon, pr_lat = prcoords_apply(prcoords.wgs_gcj, wgs_lon, wgs_lat)
    np.testing.assert_allclose(pr_lon, gcj_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pr_lat, gcj_lat, rtol=0, atol=1e-9)
    # prcoords' iterative ("bored") inverse agrees within 1e-6 degree.
    bored_lon, bored_lat = prcoords_apply(prcoords.gcj_wgs_bored, gcj_lon, gcj_lat)
    np.testing.assert_allclose(wgs_lon, bored_lon, rtol=0, atol=1e-6)
    np.testing.assert_allclose(wgs_lat, bored_lat, rtol=0, atol=1e-6)
    # coordTransform's one-step inverse is only metre-level: close, but less exact than ours.
    rough_lon, rough_lat = ct_apply(coordTransform.gcj02_to_wgs84, gcj_lon, gcj_lat)
    np.testing.assert_allclose(wgs_lon, rough_lon, rtol=0, atol=1e-4)
    np.testing.assert_allclose(wgs_lat, rough_lat, rtol=0, atol=1e-4)
    back_lon, back_lat = ct_apply(coordTransform.wgs84_to_gcj02, rough_lon, rough_lat)
    rough_err = np.hypot(back_lon - gcj_lon, back_lat - gcj_lat)
    our_err = np.hypot(ct_lon - gcj_lon, ct_lat - gcj_lat)
    assert our_err.max() < 1e-9 < rough_err.max()


def test_gcj02_to_bd09_matches_both_libraries() -> None:
    lon, lat = random_china(N_RANDOM, seed=3)
    out_lon, out_lat = gcrs.gcj02_to_bd09(lon, lat)
    ct_lon, ct_lat = ct_apply(coordTransform.gcj02_to_bd09, lon, lat)
    pr_lon, pr_lat = prcoords_apply(prcoords.gcj_bd, lon, lat)
    for ref_lon, ref_lat in ((ct_lon, ct_lat), (pr_lon, pr_lat)):
        np.testing.assert_allclose(out_lon, ref_lon, rtol=0, atol=1e-9)
        np.testing.assert_allclose(out_lat, ref_lat, rtol=0, atol=1e-9)


def test_bd09_to_gcj02_matches_both_libraries() -> None:
    bd_lon, bd_lat = random_china(N_RANDOM, seed=4)
    out_lon, out_lat = gcrs.bd09_to_gcj02(bd_lon, bd_lat)
    # Exact inverse of the libraries' forward.
    fwd_lon, fwd_lat = ct_apply(coordTransform.gcj02_to_bd09, out_lon, out_lat)
    np.testing.assert_allclose(fwd_lon, bd_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fwd_lat, bd_lat, rtol=0, atol=1e-9)
    # prcoords' iterative inverse within 1e-6; the closed form (both libraries) within 5e-6.
    bored_lon, bored_lat = prcoords_apply(prcoords.bd_gcj_bored, bd_lon, bd_lat)
    np.testing.assert_allclose(out_lon, bored_lon, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out_lat, bored_lat, rtol=0, atol=1e-6)
    for ref_lon, ref_lat in (
        ct_apply(coordTransform.bd09_to_gcj02, bd_lon, bd_lat),
        prcoords_apply(prcoords.bd_gcj, bd_lon, bd_lat),
    ):
        np.testing.assert_allclose(out_lon, ref_lon, rtol=0, atol=5e-6)
        np.testing.assert_allclose(out_lat, ref_lat, rtol=0, atol=5e-6)


def test_wgs84_bd09_both_ways_match_libraries() -> None:
    lon, lat = random_china(N_RANDOM, seed=5)
    bd_lon, bd_lat = gcrs.wgs84_to_bd09(lon, lat)
    ct_lon, ct_lat = ct_apply(coordTransform.wgs84_to_bd09, lon, lat)
    pr_lon, pr_lat = prcoords_apply(prcoords.wgs_bd, lon, lat)
    for ref_lon, ref_lat in ((ct_lon, ct_lat), (pr_lon, pr_lat)):
        np.testing.assert_allclose(bd_lon, ref_lon, rtol=0, atol=1e-9)
        np.testing.assert_allclose(bd_lat, ref_lat, rtol=0, atol=1e-9)
    back_lon, back_lat = gcrs.bd09_to_wgs84(bd_lon, bd_lat)
    np.testing.assert_allclose(back_lon, lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back_lat, lat, rtol=0, atol=1e-9)
    bored_lon, bored_lat = prcoords_apply(prcoords.bd_wgs_bored, bd_lon, bd_lat)
    np.testing.assert_allclose(back_lon, bored_lon, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back_lat, bored_lat, rtol=0, atol=1e-6)


# The box edges are where libraries may disagree; keep properties a little inside.
china_lon = st.floats(min_value=73.8, max_value=134.9)
china_lat = st.floats(min_value=4.0, max_value=53.4)


@settings(max_examples=300, deadline=None)
@given(lon=china_lon, lat=china_lat)
def test_round_trip_wgs84_gcj02_property(lon: float, lat: float) -> None:
    gcj_lon, gcj_lat = gcrs.wgs84_to_gcj02(lon, lat)
    back_lon, back_lat = gcrs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert abs(float(back_lon) - lon) < 1e-6
    assert abs(float(back_lat) - lat) < 1e-6
    ref_lon, ref_lat = coordTransform.wgs84_to_gcj02(lon, lat)
    assert abs(float(gcj_lon) - ref_lon) < 1e-9
    assert abs(float(gcj_lat) - ref_lat) < 1e-9


@settings(max_examples=100, deadline=None)
@given(
    points=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 50), st.just(2)),
        elements=st.floats(min_value=0.0, max_value=1.0),
    )
)
def test_round_trip_wgs84_bd09_arrays_property(points: np.ndarray) -> None:
    lon = 73.8 + points[:, 0] * (134.9 - 73.8)
    lat = 4.0 + points[:, 1] * (53.4 - 4.0)
    back_lon, back_lat = gcrs.bd09_to_wgs84(*gcrs.wgs84_to_bd09(lon, lat))
    assert np.abs(back_lon - lon).max() < 1e-6
    assert np.abs(back_lat - lat).max() < 1e-6


# ------------------------------------------------------------------- published reference points


@pytest.mark.parametrize(("wgs_lat", "wgs_lon", "gcj_lat", "gcj_lon"), EVILTRANSFORM_PAIRS)
def test_eviltransform_published_pairs(
    request: pytest.FixtureRequest, wgs_lat: float, wgs_lon: float, gcj_lat: float, gcj_lon: float
) -> None:
    out_lon, out_lat = gcrs.wgs84_to_gcj02(wgs_lon, wgs_lat)
    assert float(out_lon) == pytest.approx(gcj_lon, abs=1e-9)
    assert float(out_lat) == pytest.approx(gcj_lat, abs=1e-9)
    back_lon, back_lat = gcrs.gcj02_to_wgs84(gcj_lon, gcj_lat)
    assert float(back_lon) == pytest.approx(wgs_lon, abs=1e-8)
    assert float(back_lat) == pytest.approx(wgs_lat, abs=1e-8)
    # The GCJ-02 shift here is several hundred metres.
    shift_m = GEOD.inv(wgs_lon, wgs_lat, gcj_lon, gcj_lat)[2]
    city = request.node.callspec.id
    assert shift_m == pytest.approx(EVILTRANSFORM_SHIFT_M[city], abs=0.5)
    assert 300.0 < shift_m < 700.0


def test_wandergis_published_tiananmen_conversions() -> None:
    lon, lat = TIANANMEN
    assert tuple(map(float, gcrs.gcj02_to_bd09(lon, lat))) == pytest.approx(
        WANDERGIS_GCJ02_TO_BD09, abs=1e-9
    )
    assert tuple(map(float, gcrs.wgs84_to_gcj02(lon, lat))) == pytest.approx(
        WANDERGIS_WGS84_TO_GCJ02, abs=1e-9
    )
    # Their inverses are approximations; ours are exact and within their error of them.
    gcj = gcrs.bd09_to_gcj02(lon, lat)
    assert tuple(map(float, gcj)) == pytest.approx(WANDERGIS_BD09_TO_GCJ02, abs=5e-6)
    assert tuple(map(float, gcrs.gcj02_to_bd09(*gcj))) == pytest.approx(TIANANMEN, abs=1e-10)
    wgs = gcrs.gcj02_to_wgs84(lon, lat)
    assert tuple(map(float, wgs)) == pytest.approx(WANDERGIS_GCJ02_TO_WGS84, abs=2e-5)
    assert tuple(map(float, gcrs.wgs84_to_gcj02(*wgs))) == pytest.approx(TIANANMEN, abs=1e-10)
    # Baidu's offset on top of GCJ-02 is itself about 0.9 km here.
    gcj_lon, gcj_lat = (float(v) for v in gcj)
    assert GEOD.inv(lon, lat, gcj_lon, gcj_lat)[2] == pytest.approx(890.5, abs=1.0)


# ------------------------------------------------------------------------ outside China, edges


OUTSIDE = {
    "london": (-0.1276, 51.5072),
    "new_york": (-74.006, 40.7128),
    "sydney": (151.2093, -33.8688),
    "tokyo": (139.6917, 35.6895),
    "singapore": (103.8198, 1.3521),
    "moscow": (37.6173, 55.7558),
}


def test_outside_china_is_identity_for_gcj02() -> None:
    lon = np.array([p[0] for p in OUTSIDE.values()])
    lat = np.array([p[1] for p in OUTSIDE.values()])
    assert gcrs.out_of_china(lon, lat).all()
    for func in (gcrs.wgs84_to_gcj02, gcrs.gcj02_to_wgs84):
        out_lon, out_lat = func(lon, lat)
        np.testing.assert_array_equal(out_lon, lon)
        np.testing.assert_array_equal(out_lat, lat)
    # BD-09 is applied everywhere, as both libraries do.
    bd_lon, bd_lat = gcrs.wgs84_to_bd09(lon, lat)
    ref_lon, ref_lat = ct_apply(coordTransform.wgs84_to_bd09, lon, lat)
    np.testing.assert_allclose(bd_lon, ref_lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(bd_lat, ref_lat, rtol=0, atol=1e-9)


def test_out_of_china_box_matches_coordtransform_at_edges() -> None:
    edge_lon = np.array([73.65, 73.66, 73.67, 100.0, 135.04, 135.05, 135.06])
    edge_lat = np.array([3.85, 3.86, 3.87, 30.0, 53.54, 53.55, 53.56])
    lon, lat = (a.ravel() for a in np.meshgrid(edge_lon, edge_lat))
    expected = np.array([coordTransform.out_of_china(x, y) for x, y in zip(lon, lat, strict=True)])
    np.testing.assert_array_equal(gcrs.out_of_china(lon, lat), expected)
    out_lon, out_lat = gcrs.wgs84_to_gcj02(lon, lat)
    ref = np.array(
        [coordTransform.wgs84_to_gcj02(float(x), float(y)) for x, y in zip(lon, lat, strict=True)]
    )
    np.testing.assert_allclose(out_lon, ref[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(out_lat, ref[:, 1], rtol=0, atol=1e-9)


# ----------------------------------------------------------------------------- NaN and shapes


ALL_CONVERSIONS = [
    gcrs.wgs84_to_gcj02,
    gcrs.gcj02_to_wgs84,
    gcrs.gcj02_to_bd09,
    gcrs.bd09_to_gcj02,
    gcrs.wgs84_to_bd09,
    gcrs.bd09_to_wgs84,
]


@pytest.mark.parametrize("func", ALL_CONVERSIONS, ids=lambda f: f.__name__)
def test_nan_in_nan_out_without_warnings(func) -> None:
    lon = np.array([np.nan, 116.4, 116.4, np.nan, np.inf])
    lat = np.array([39.9, np.nan, 39.9, np.nan, 39.9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_lon, out_lat = func(lon, lat)
    assert np.isnan(out_lon[[0, 3]]).all()
    assert np.isnan(out_lat[[1, 3]]).all()
    # The valid point is converted exactly as on its own.
    single_lon, single_lat = func(116.4, 39.9)
    assert out_lon[2] == single_lon
    assert out_lat[2] == single_lat


@pytest.mark.parametrize("func", ALL_CONVERSIONS, ids=lambda f: f.__name__)
def test_shapes_and_dtypes(func) -> None:
    lon, lat = func(116, 39)  # ints and scalars
    assert isinstance(lon, np.ndarray) and lon.shape == () and lon.dtype == np.float64
    assert isinstance(lat, np.ndarray) and lat.shape == () and lat.dtype == np.float64
    lon, lat = func([116.4, 121.5], [39.9, 31.2])
    assert lon.shape == (2,) and lat.dtype == np.float64
    grid_lon = np.array([[116.4, 121.5], [113.9, 114.1]])
    lon, lat = func(grid_lon, 30.0)  # broadcast
    assert lon.shape == lat.shape == (2, 2)
    flat_lon, flat_lat = func(grid_lon.ravel(), np.full(4, 30.0))
    np.testing.assert_array_equal(lon.ravel(), flat_lon)
    np.testing.assert_array_equal(lat.ravel(), flat_lat)
    empty_lon, empty_lat = func(np.array([]), np.array([]))
    assert empty_lon.shape == empty_lat.shape == (0,)


def test_inputs_are_not_modified() -> None:
    lon = np.array([116.4, 121.5])
    lat = np.array([39.9, 31.2])
    for func in ALL_CONVERSIONS:
        func(lon, lat)
    np.testing.assert_array_equal(lon, [116.4, 121.5])
    np.testing.assert_array_equal(lat, [39.9, 31.2])


@pytest.mark.parametrize(
    ("system", "forward"),
    [
        ("wgs84", None),
        ("cgcs2000", None),
        ("GCJ-02", gcrs.wgs84_to_gcj02),
        ("baidu", gcrs.wgs84_to_bd09),
    ],
)
def test_to_and_from_wgs84_dispatch(system: str, forward) -> None:
    lon, lat = random_china(100, seed=6)
    out_lon, out_lat = gcrs.from_wgs84(lon, lat, system=system)
    if forward is None:
        np.testing.assert_array_equal(out_lon, lon)
        np.testing.assert_array_equal(out_lat, lat)
        assert out_lon is not lon
    else:
        ref_lon, ref_lat = forward(lon, lat)
        np.testing.assert_array_equal(out_lon, ref_lon)
        np.testing.assert_array_equal(out_lat, ref_lat)
    back_lon, back_lat = gcrs.to_wgs84(out_lon, out_lat, system=system)
    np.testing.assert_allclose(back_lon, lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(back_lat, lat, rtol=0, atol=1e-9)


def test_dispatch_rejects_unknown_system() -> None:
    with pytest.raises(CRSError):
        gcrs.to_wgs84(116.4, 39.9, system="bd09mc")
    with pytest.raises(ValueError, match="unknown coordinate system"):
        gcrs.from_wgs84(116.4, 39.9, system="osgb")


# ------------------------------------------------------------------------------- metric CRS


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        pytest.param((113.75, 22.45, 114.62, 22.86), 4547, id="shenzhen"),
        pytest.param((113.70, 29.97, 115.08, 31.36), 4547, id="wuhan"),
        pytest.param((116.0, 39.6, 116.8, 40.2), 4548, id="beijing-cm117"),
        pytest.param((121.2, 31.0, 121.8, 31.4), 4550, id="shanghai-tie-goes-east-cm123"),
        pytest.param((121.1, 31.0, 121.5, 31.4), 4549, id="shanghai-cm120"),
        pytest.param((75.9, 39.4, 76.1, 39.5), 4534, id="kashgar-cm75"),
        pytest.param((134.2, 48.3, 134.4, 48.5), 4554, id="fuyuan-cm135"),
        pytest.param((73.5, 18.2, 134.8, 53.5), 4544, id="all-china-cm105"),
        pytest.param((-3.05, 53.33, -2.82, 53.48), 32630, id="liverpool"),
        pytest.param((150.9, -34.0, 151.3, -33.7), 32756, id="sydney"),
        pytest.param((-43.8, -23.1, -43.1, -22.7), 32723, id="rio"),
        pytest.param((5.2, 60.3, 5.4, 60.5), 32632, id="bergen-32v"),
        pytest.param((15.5, 78.1, 15.7, 78.3), 32633, id="svalbard-33x"),
        pytest.param((-10.0, 85.0, 10.0, 89.0), 32661, id="ups-north"),
        pytest.param((139.5, 35.5, 139.9, 35.8), 32654, id="tokyo-utm"),
    ],
)
def test_metric_crs_for_bounds(bounds: tuple[float, ...], expected: int) -> None:
    chosen = gcrs.metric_crs_for(bounds)
    assert chosen.to_epsg() == expected
    assert chosen.is_projected
    assert {axis.unit_name for axis in chosen.axis_info} == {"metre"}


def test_cgcs2000_zone_codes_are_the_cm_zones_in_the_epsg_database() -> None:
    for cm in range(75, 136, 3):
        code = gcrs.metric_crs_for((cm - 0.1, 35.0, cm + 0.1, 35.1), family="cgcs2000").to_epsg()
        crs = pyproj.CRS.from_epsg(code)
        assert crs.name == f"CGCS2000 / 3-degree Gauss-Kruger CM {cm}E"
        assert crs.geodetic_crs.equals(pyproj.CRS.from_epsg(4490))
        params = {p.name: p.value for p in crs.coordinate_operation.params}
        assert params["Longitude of natural origin"] == cm
        assert params["False easting"] == 500000.0


def test_metric_crs_for_frames_and_projected_input() -> None:
    shenzhen = gpd.GeoSeries.from_xy([113.9, 114.2], [22.5, 22.7], crs="EPSG:4326")
    assert gcrs.metric_crs_for(shenzhen).to_epsg() == 4547
    frame = gpd.GeoDataFrame({"id": [1, 2]}, geometry=shenzhen.to_crs(3857))
    assert gcrs.metric_crs_for(frame).to_epsg() == 4547
    # A bounds tuple in a projected CRS.
    bounds = tuple(shenzhen.to_crs(3857).total_bounds)
    assert gcrs.metric_crs_for(bounds, crs="EPSG:3857").to_epsg() == 4547
    # A CGCS2000-declared layer.
    assert gcrs.metric_crs_for(shenzhen.to_crs(4490)).to_epsg() == 4547
    # A crs that declares a layer without one is accepted; one that contradicts it is not.
    bare = gpd.GeoSeries.from_xy([114.0], [22.6])
    assert gcrs.metric_crs_for(bare, crs=4326).to_epsg() == 4547
    with pytest.raises(CRSError, match="contradicts"):
        gcrs.metric_crs_for(shenzhen, crs=3857)


def test_metric_crs_for_family_choice() -> None:
    shenzhen = (113.75, 22.45, 114.62, 22.86)
    assert gcrs.metric_crs_for(shenzhen, family="utm").to_epsg() == 32650
    assert gcrs.metric_crs_for(shenzhen, family="cgcs2000").to_epsg() == 4547
    # South China Sea: UTM under "auto" (outside the rough box), CGCS2000 when forced.
    paracels = (111.5, 16.3, 112.8, 17.1)
    assert gcrs.metric_crs_for(paracels).to_epsg() == 32649
    assert gcrs.metric_crs_for(paracels, family="cgcs2000").to_epsg() == 4546
    with pytest.raises(CRSError, match="outside the CGCS2000"):
        gcrs.metric_crs_for((-3.05, 53.33, -2.82, 53.48), family="cgcs2000")
    with pytest.raises(ConfigError, match="unknown metric CRS family") as info:
        gcrs.metric_crs_for(shenzhen, family="lambert")  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "bad",
    [
        (1.0, 2.0, 3.0),
        (114.0, 23.0, 113.0, 22.0),
        (np.nan, 22.0, 114.0, 23.0),
        ("a", "b", "c", "d"),
    ],
)
def test_metric_crs_for_rejects_bad_bounds(bad: tuple) -> None:
    with pytest.raises(CRSError) as info:
        gcrs.metric_crs_for(bad)
    assert isinstance(info.value, ValueError)


def test_metric_crs_for_rejects_empty_and_crsless_frames() -> None:
    with pytest.raises(CRSError, match="empty extent"):
        gcrs.metric_crs_for(gpd.GeoSeries([], crs=4326))
    with pytest.raises(CRSError, match="has no coordinate reference system"):
        gcrs.metric_crs_for(gpd.GeoSeries.from_xy([114.0], [22.6]))


# ------------------------------------------------------------------------------------ layers


def test_require_crs() -> None:
    frame = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.Point(114.0, 22.6)])
    with pytest.raises(CRSError) as info:
        gcrs.require_crs(frame, what="parcels")
    assert str(info.value) == (
        "parcels has no coordinate reference system; declare it with GeoDataFrame.set_crs "
        "(e.g. frame.set_crs('EPSG:4326'))"
    )
    assert isinstance(info.value, ValueError) and isinstance(info.value, GeosupError)
    # a command names its own flag (and no Python)
    with pytest.raises(CRSError) as info:
        gcrs.require_crs(frame, what="parcels.shp", hint="--input-crs parcels=EPSG:<code>")
    assert str(info.value) == ("parcels.shp has no coordinate reference system; declare it "
                               "with --input-crs parcels=EPSG:<code>")
    assert gcrs.require_crs(frame.set_crs(4490), what="parcels").to_epsg() == 4490


def test_to_metric_area_matches_geodesic_area() -> None:
    # A 0.01 x 0.01 degree cell in Shenzhen: about 1.03 km x 1.11 km.
    cell = shapely.box(114.0, 22.5, 114.01, 22.51)
    frame = gpd.GeoDataFrame({"parcel_id": ["p1"]}, geometry=[cell], crs=4326)
    metric = gcrs.to_metric(frame)
    assert isinstance(metric, gpd.GeoDataFrame)
    assert metric.crs.to_epsg() == 4547
    assert list(metric["parcel_id"]) == ["p1"]
    geodesic_m2 = abs(GEOD.geometry_area_perimeter(cell)[0])
    assert metric.area.iloc[0] == pytest.approx(geodesic_m2, rel=1e-3)
    # A given metric CRS is honoured; a GeoSeries stays a GeoSeries.
    series = gcrs.to_metric(frame.geometry, crs="EPSG:32650")
    assert isinstance(series, gpd.GeoSeries)
    assert series.crs.to_epsg() == 32650


def test_to_metric_refusals() -> None:
    frame = gpd.GeoDataFrame(geometry=[shapely.Point(114.0, 22.6)], crs=4326)
    with pytest.raises(CRSError, match="not a metric projected CRS"):
        gcrs.to_metric(frame, crs=4490)
    with pytest.raises(CRSError, match="fixes has no coordinate reference system"):
        gcrs.to_metric(frame.set_crs(None, allow_override=True), what="fixes")


def test_to_wgs84_frame() -> None:
    frame = gpd.GeoDataFrame({"id": [7]}, geometry=[shapely.Point(500000.0, 2500000.0)], crs=4547)
    wgs = gcrs.to_wgs84_frame(frame)
    assert wgs.crs.to_epsg() == 4326
    assert wgs.geometry.iloc[0].x == pytest.approx(114.0, abs=1e-9)
    assert list(wgs["id"]) == [7]
    with pytest.raises(CRSError, match="has no coordinate reference system"):
        gcrs.to_wgs84_frame(frame.set_crs(None, allow_override=True))


def _eviltransform_gcj_frame(crs: object = None) -> gpd.GeoDataFrame:
    gcj = [(p.values[3], p.values[2]) for p in EVILTRANSFORM_PAIRS]
    geometry = [shapely.Point(x, y) for x, y in gcj] + [None, shapely.Point()]
    return gpd.GeoDataFrame(
        {"station_id": ["sh", "sz", "bj", "none", "empty"]},
        geometry=geometry,
        index=[10, 20, 30, 40, 50],
        crs=crs,
    )


@pytest.mark.parametrize("frame_crs", [None, "EPSG:4326", "OGC:CRS84", "EPSG:4490"])
def test_convert_points_frame_gcj02(frame_crs: str | None) -> None:
    frame = _eviltransform_gcj_frame(frame_crs)
    before = frame.copy()
    wgs = gcrs.convert_points_frame(frame, system="GCJ-02")
    assert isinstance(wgs, gpd.GeoDataFrame)
    assert wgs.crs.equals(pyproj.CRS.from_epsg(4326))
    assert list(wgs.index) == [10, 20, 30, 40, 50]
    assert list(wgs["station_id"]) == ["sh", "sz", "bj", "none", "empty"]
    for i, p in enumerate(EVILTRANSFORM_PAIRS):
        wgs_lat, wgs_lon = p.values[0], p.values[1]
        assert wgs.geometry.iloc[i].x == pytest.approx(wgs_lon, abs=1e-8)
        assert wgs.geometry.iloc[i].y == pytest.approx(wgs_lat, abs=1e-8)
    assert wgs.geometry.iloc[3] is None
    assert wgs.geometry.iloc[4].is_empty
    # The input layer is untouched.
    pd.testing.assert_series_equal(frame.geometry.to_wkt(), before.geometry.to_wkt())


def test_convert_points_frame_bd09_keeps_z_and_geometry_name() -> None:
    lon, lat = random_china(1000, seed=7)
    bd_lon, bd_lat = gcrs.wgs84_to_bd09(lon, lat)
    z = np.arange(1000, dtype=float)
    frame = gpd.GeoDataFrame(
        {"fix_id": np.arange(1000)}, geometry=shapely.points(bd_lon, bd_lat, z)
    ).rename_geometry("geom")
    wgs = gcrs.convert_points_frame(frame, system="baidu")
    assert wgs.geometry.name == "geom"
    coords = shapely.get_coordinates(wgs.geometry.array, include_z=True)
    np.testing.assert_allclose(coords[:, 0], lon, rtol=0, atol=1e-9)
    np.testing.assert_allclose(coords[:, 1], lat, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(coords[:, 2], z)


def test_convert_points_frame_geoseries_and_identity_systems() -> None:
    series = _eviltransform_gcj_frame().geometry.rename("pts")
    out = gcrs.convert_points_frame(series, system="cgcs2000")
    assert isinstance(out, gpd.GeoSeries)
    assert out.name == "pts"
    assert out.crs.to_epsg() == 4326
    pd.testing.assert_series_equal(out.to_wkt(), series.to_wkt())


def test_convert_points_frame_refusals() -> None:
    mixed = gpd.GeoDataFrame(
        geometry=[shapely.Point(116.4, 39.9), shapely.box(116, 39, 117, 40), None], crs=4326
    )
    with pytest.raises(CRSError, match=r"must hold Points.*1 of 3.*Polygon") as info:
        gcrs.convert_points_frame(mixed, system="gcj02", what="stations")
    assert isinstance(info.value, ValueError)
    projected = _eviltransform_gcj_frame("EPSG:3857")
    with pytest.raises(CRSError, match="longitude/latitude"):
        gcrs.convert_points_frame(projected, system="gcj02")
    with pytest.raises(CRSError, match="unknown coordinate system"):
        gcrs.convert_points_frame(_eviltransform_gcj_frame(), system="sogou")


# --------------------------------------------------------------------------------- area units


def test_area_constants() -> None:
    assert round(gcrs.M2_PER_MU, 2) == 666.67
    assert gcrs.M2_PER_HA == 10000.0
    assert np.isclose(gcrs.M2_PER_HA / gcrs.M2_PER_MU, 15.0)


@pytest.mark.parametrize(
    ("unit", "m2_per_unit"),
    [
        ("m2", 1.0),
        ("m²", 1.0),
        ("sqm", 1.0),
        ("mu", 10000 / 15),
        ("亩", 10000 / 15),
        ("MU", 10000 / 15),
        ("ha", 10000.0),
        ("hectare", 10000.0),
        ("km2", 1e6),
    ],
)
def test_area_units_round_trip(unit: str, m2_per_unit: float) -> None:
    values = np.array([0.0, 1.0, 2.5, 1234.5, np.nan])
    m2 = gcrs.area_to_m2(values, unit)
    np.testing.assert_allclose(m2, values * m2_per_unit, rtol=1e-15)
    np.testing.assert_allclose(gcrs.m2_to(m2, unit), values, rtol=1e-12)
    assert m2.dtype == np.float64


def test_area_units_values() -> None:
    assert round(float(gcrs.area_to_m2(1, "mu")), 2) == 666.67
    assert float(gcrs.m2_to(10000, "mu")) == pytest.approx(15.0)
    assert float(gcrs.m2_to(1e6, "ha")) == pytest.approx(100.0)
    series = pd.Series([1.0, 2.0], index=["a", "b"], name="declared_area")
    out = gcrs.area_to_m2(series, "亩")
    assert isinstance(out, pd.Series)
    assert list(out.index) == ["a", "b"] and out.name == "declared_area"
    assert out.round(2).tolist() == [666.67, 1333.33]
    back = gcrs.m2_to(out, "mu")
    assert isinstance(back, pd.Series)
    pd.testing.assert_series_equal(back, series)


@pytest.mark.parametrize("bad", ["acre", "", "sq ft", None])
def test_area_unit_unknown(bad: object) -> None:
    with pytest.raises(ConfigError, match="unknown area unit") as info:
        gcrs.area_to_m2([1.0], bad)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, GeosupError)
    for name in ("m2", "mu", "亩", "ha", "km2"):
        assert name in str(info.value)
    with pytest.raises(ConfigError):
        gcrs.m2_to([1.0], bad)  # type: ignore[arg-type]
