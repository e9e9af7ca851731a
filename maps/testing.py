"""Synthetic alerts shaped like the checks' own output, and in-page probes, for map tests.

:func:`synthetic_alerts` writes ``n`` alerts of the registered rules of the three checks
(``geosup rules`` lists them) in one made-up county around Hefei, in the geometry and
with the evidence keys each check writes (compare a demo store's ``alerts`` layer):

- **fuel** (``trajectories/rules.py``, ``trajectories/audit.py``): a transaction alert
  is a ``GeometryCollection`` of the station point and the vehicle's track within ±10 min
  of the fill (15–40 fixes); its evidence holds the ids (``tx_id``, ``card_id``,
  ``vehicle_id``, ``station_id``), the measured values of its rule (for the motion rules
  ``nearest_m``, ``nearest_at``, ``nearest_fix_id`` and, for ``fuel.away_from_station``,
  ``nearest_lon``/``nearest_lat`` on the track) and the ``thresholds``. A fill with
  fewer than two fixes in its window (one in ten of the rules that do not need them, and
  every ``fuel.no_gps_coverage``) is the station point alone; ``fuel.inactive_vehicle``
  (subject: the vehicle) is the MultiPoint of the stations of its fills.
- **farmland** (``geosup/farmland/rules.py``): a declaration alert is its polygon,
  an applicant alert the MultiPolygon of the applicant's declarations; parcels have
  10–60 vertices (median about 26, like the Dutch reference parcels in
  ``../shared/data``). Areas in the evidence (``*_m2`` and ``*_area`` in mu) are
  measured on the drawn geometry. ``farmland.double_claim``, ``farmland.over_declared``
  and ``farmland.outside_reference`` also carry ``overlap_wkt`` (the other declaration,
  or the reference parcel, intersected with the declaration), as the farmland rules are
  to write it.
- **requisition** (``imagery/rules.py``): claim rectangles; the rules that compare images
  name before/after chips (``chip_before``/``chip_after`` relative paths under
  ``requisition/chips/`` with ``chip_bounds``). No chip file exists: a map of these
  alerts inlines no image.

The mix follows the demo city (``geosup demo``): its 110 alerts per rule, 24 fuel,
61 farmland and 25 requisition (:data:`DEMO_COUNTS`); ``mix`` reweights the domains.
The same ``n``, ``mix`` and ``seed`` give the same table.

The ``*_js``/probe functions below measure a map page in a playwright ``page`` the same
way for every page (``bench/maps.py`` and the 100,000-alert browser test use them).

Examples
--------
>>> alerts = synthetic_alerts(1_000)
>>> len(alerts), alerts["domain"].value_counts().to_dict()
(1000, {'farmland': 556, 'requisition': 227, 'fuel': 217})
>>> alerts.groupby("domain").geometry.apply(lambda g: sorted(g.geom_type.unique())).to_dict()
... # doctest: +NORMALIZE_WHITESPACE
{'farmland': ['MultiPolygon', 'Polygon'],
 'fuel': ['GeometryCollection', 'MultiPoint', 'Point'],
 'requisition': ['Polygon']}
>>> import json
>>> fuel = alerts[alerts["rule"] == "fuel.away_from_station"].iloc[0]
>>> sorted(json.loads(fuel["evidence"]))[:6]
['card_id', 'fix_distance_m', 'n_fixes', 'nearest_at', 'nearest_fix_id', 'nearest_lat']
>>> [g.geom_type for g in fuel.geometry.geoms]
['Point', 'LineString']
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosup.alerts import make_alerts

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "DEMO_COUNTS",
    "click_cluster",
    "headless_chromium",
    "js_heap_mb",
    "map_view",
    "probe_init_js",
    "set_view",
    "synthetic_alerts",
    "wait_interactive",
    "zoom_step",
]

#: Alerts per rule in the demo city (``geosup demo``, 110 alerts): the default mix.
DEMO_COUNTS: dict[str, int] = {
    "fuel.away_from_station": 3, "fuel.consumption_mismatch": 7,
    "fuel.inactive_vehicle": 2, "fuel.no_gps_coverage": 3, "fuel.no_stop_at_station": 1,
    "fuel.odometer_anomaly": 1, "fuel.off_hours": 3, "fuel.over_tank_capacity": 1,
    "fuel.product_mismatch": 2, "fuel.rapid_refill": 1,
    "farmland.big_recipient": 3, "farmland.claim_frequency": 4,
    "farmland.deceased_applicant": 5, "farmland.double_claim": 6,
    "farmland.non_farmland": 9, "farmland.official_applicant": 3,
    "farmland.outside_reference": 6, "farmland.over_declared": 19,
    "farmland.year_change": 6,
    "requisition.built_after_notice": 7, "requisition.claimed_not_seen": 10,
    "requisition.deceased_claimant": 2, "requisition.moved_in_after_notice": 2,
    "requisition.planted_after_notice": 4,
}

LON0, LAT0 = 117.23, 31.82  # a county of about 60 x 60 km around Hefei
_KX = 111_320.0 * math.cos(math.radians(LAT0))  # metres per degree of longitude
_KY = 110_574.0  # metres per degree of latitude
_MU = 2000.0 / 3.0  # m² per mu
_NOW = pd.Timestamp("2026-01-05 08:00", tz="UTC")
_ISO = "%Y-%m-%dT%H:%M:%SZ"

_BUREAUS = ["公安局", "水务局", "城市管理局", "交通运输局", "自然资源局", "卫生健康委员会",
            "农业农村局", "生态环境局", "应急管理局", "市场监督管理局"]
_DISTRICTS = ["合肥市", "蜀山区", "包河区", "庐阳区", "瑶海区", "肥西县", "肥东县", "长丰县"]
_SYLLABLES = list("高王李张刘陈杨黄赵周吴徐孙马朱胡林郭何罗梁宋郑谢韩唐冯于董萧程曹袁邓许")
_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国文海燕")
_BRANDS = ["Sinopec", "PetroChina", "CNOOC", "Shell"]


def _allocate(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """``n`` split by ``weights`` (largest remainder: the counts add up to ``n``)."""
    codes = list(weights)
    w = np.array([float(weights[c]) for c in codes])
    raw = n * w / w.sum()
    base = np.floor(raw).astype(np.int64)
    rest = n - int(base.sum())
    order = np.argsort(-(raw - base), kind="stable")
    base[order[:rest]] += 1
    return dict(zip(codes, base.tolist(), strict=True))


def _r(x: Any, digits: int = 0) -> float:
    return round(float(x), digits)


def _to_lonlat(geoms: np.ndarray) -> np.ndarray:
    """Local metres (east, north of LON0, LAT0) to degrees, rounded to 7 decimals."""
    return shapely.transform(
        geoms, lambda c: np.round(c / np.array([_KX, _KY]) + np.array([LON0, LAT0]), 7))


def _iso(seconds: np.ndarray) -> list[str]:
    return pd.to_datetime(np.asarray(seconds, dtype=np.int64), unit="s",
                          utc=True).strftime(_ISO).tolist()


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    s = rng.integers(0, len(_SYLLABLES), n)
    g1 = rng.integers(0, len(_GIVEN), n)
    g2 = rng.integers(0, len(_GIVEN), n)
    two = rng.random(n) < 0.6
    return np.array([_SYLLABLES[a] + _GIVEN[b] + (_GIVEN[c] if t else "")
                     for a, b, c, t in zip(s, g1, g2, two, strict=True)], dtype=object)


def _fields(rng: np.random.Generator, centre: np.ndarray, w: np.ndarray, h: np.ndarray,
            angle: np.ndarray, k: np.ndarray, jitter: float = 0.8) -> np.ndarray:
    """Polygons (metres) of ``k`` coordinates (closing one included): a rotated ``w`` x ``h``
    rectangle whose edges carry ``k - 5`` extra vertices, each moved across its edge by
    about ``jitter`` m (never along it, nor within 3 m of a corner: the ring stays simple)."""
    m = len(centre)
    kmax = int(k.max())
    per = 2 * (w + h)
    t = rng.random((m, kmax - 1))
    t[:, 0] = 0.0
    t[:, 1] = w / per
    t[:, 2] = (w + h) / per
    t[:, 3] = (2 * w + h) / per
    t[np.arange(kmax - 1)[None, :] >= (k - 1)[:, None]] = np.inf
    t = np.sort(t, axis=1)
    used = np.isfinite(t)
    s = np.where(used, t, 0.0) * per[:, None]
    wc, hc = w[:, None], h[:, None]
    x = np.select([s < wc, s < wc + hc, s < 2 * wc + hc], [s, wc, 2 * wc + hc - s], 0.0)
    y = np.select([s < wc, s < wc + hc, s < 2 * wc + hc], [0.0, s - wc, hc], per[:, None] - s)
    vertical = ((s >= wc) & (s < wc + hc)) | (s >= 2 * wc + hc)
    along = np.where(vertical, y, x)
    inner = (along > 3.0) & (along < np.where(vertical, hc, wc) - 3.0)
    shake = np.clip(rng.normal(0, jitter, x.shape), -2 * jitter, 2 * jitter) * inner
    x = x - wc / 2 + np.where(vertical, shake, 0.0)
    y = y - hc / 2 + np.where(vertical, 0.0, shake)
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    xr = centre[:, 0:1] + x * ca - y * sa
    yr = centre[:, 1:2] + x * sa + y * ca
    coords = np.stack([xr[used], yr[used]], axis=1)
    rings = shapely.linearrings(coords, indices=np.repeat(np.arange(m), (k - 1)))
    return shapely.polygons(rings)


def _parcel_vertices(rng: np.random.Generator, n: int, high: int = 60) -> np.ndarray:
    return np.clip(np.round(rng.lognormal(math.log(26.0), 0.5, n)), 10, high).astype(np.int64)


def _frame(rows: dict[str, Any], geoms: np.ndarray) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(pd.DataFrame(rows), geometry=gpd.GeoSeries(geoms), crs=4326)


# ------------------------------------------------------------------------------------------
# fuel
# ------------------------------------------------------------------------------------------

_TRACK_OPTIONAL = ("fuel.consumption_mismatch", "fuel.odometer_anomaly", "fuel.off_hours",
                   "fuel.over_tank_capacity", "fuel.product_mismatch", "fuel.rapid_refill")
_STOPPED = _TRACK_OPTIONAL  # the vehicle stood at the station: the track dwells there


def _tracks(rng: np.random.Generator, station: np.ndarray, dist: np.ndarray,
            stopped: np.ndarray, away: np.ndarray) -> dict[str, np.ndarray]:
    """Tracks (metres) of 15-40 fixes over the 20-minute window around each fill.

    The fix nearest to the station is ``dist`` m from it (recomputed on the track);
    ``stopped`` tracks dwell a few fixes there, ``away`` ones keep at least 320 m off.
    """
    t = len(station)
    kmax = 40
    k = rng.integers(15, kmax + 1, t)
    idx = np.arange(kmax)
    j0 = (rng.random(t) * k).astype(np.int64)
    dt = 1200.0 / (k - 1)
    speed = rng.uniform(3.0, 14.0, t)
    heading = rng.uniform(0, 2 * np.pi, t)[:, None] + rng.normal(0, 0.35, (t, kmax)).cumsum(1)
    step = speed[:, None] * dt[:, None] * rng.uniform(0.5, 1.3, (t, kmax))
    dwell = rng.integers(2, 6, t)
    near = stopped[:, None] & (np.abs(idx[None, :] - j0[:, None]) <= dwell[:, None])
    step = np.where(near, rng.uniform(0.0, 3.0, (t, kmax)), step)
    step[:, 0] = 0.0
    pos = np.stack([step * np.cos(heading), step * np.sin(heading)], axis=2).cumsum(axis=1)
    pos -= pos[np.arange(t), j0][:, None, :]
    phi = rng.uniform(0, 2 * np.pi, t)
    pos += (station + dist[:, None] * np.c_[np.cos(phi), np.sin(phi)])[:, None, :]
    valid = idx[None, :] < k[:, None]

    def distances() -> np.ndarray:
        return np.where(valid, np.hypot(*(pos - station[:, None, :]).transpose(2, 0, 1)),
                        np.nan)

    d = distances()
    j = np.nanargmin(d, axis=1)
    # keep the "away" tracks outside the radius: move a track that comes closer than 320 m
    # away from the station by 320 m plus its farthest fix's distance
    push = away & (d[np.arange(t), j] < 320.0)
    u = pos[np.arange(t), j] - station
    u /= np.maximum(np.hypot(u[:, 0], u[:, 1]), 1e-9)[:, None]
    pos += np.where(push, 320.0 + np.nanmax(d, axis=1), 0.0)[:, None, None] * u[:, None, :]
    d = distances()
    j = np.nanargmin(d, axis=1)
    nearest = d[np.arange(t), j]
    lines = shapely.linestrings(pos[valid], indices=np.repeat(np.arange(t), k))
    return {"line": lines, "k": k, "j": j, "nearest_m": nearest,
            "nearest_xy": pos[np.arange(t), j], "dt": dt}


def _fuel(rng: np.random.Generator, counts: Mapping[str, int], reg: Any,
          tx0: int) -> gpd.GeoDataFrame:
    rules = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    m = len(rules)
    if m == 0:
        return _frame({}, np.zeros(0, dtype=object))
    n_st = 400
    st_xy = np.clip(rng.normal(0, 9_000, (n_st, 2)), -29_000, 29_000)
    st_id = np.array([f"3401{i:04d}" for i in range(n_st)], dtype=object)
    st_name = np.array([f"{_BRANDS[i % 4]} Hefei No. {i + 1}" for i in range(n_st)],
                       dtype=object)
    units = np.array([d + b for d in _DISTRICTS for b in _BUREAUS], dtype=object)
    s = rng.integers(0, n_st, m)
    veh = rng.integers(1, 6_000, m)
    veh[rules == "fuel.inactive_vehicle"] = 6_000 + np.arange(
        int((rules == "fuel.inactive_vehicle").sum()))  # one alert per vehicle and month
    vehicle = np.array([f"HF-V{v:04d}" for v in veh], dtype=object)
    card = np.array([f"71{v:06d}" for v in veh], dtype=object)
    tx = np.array([f"87{tx0 + i:08d}" for i in range(m)], dtype=object)
    t0 = int(pd.Timestamp("2024-09-01", tz="UTC").timestamp())
    day = rng.integers(0, 30, m)
    local_h = np.where(rules == "fuel.off_hours",
                       rng.choice([6.5, 7.2, 19.0, 21.5, 10.3], m), rng.uniform(8.0, 17.9, m))
    time = t0 + day * 86_400 + (local_h * 3600 - 8 * 3600).astype(np.int64) \
        + rng.integers(0, 600, m)
    litres = np.round(rng.uniform(18, 150, m), 2)
    price = np.round(rng.uniform(7.4, 8.2, m), 2)
    amount = np.round(litres * price, 2)
    tank = rng.choice([45.0, 55.0, 60.0, 70.0, 80.0, 120.0], m)

    # geometry
    geoms = np.empty(m, dtype=object)
    station = shapely.points(st_xy[s])
    is_tx = rules != "fuel.inactive_vehicle"
    track = is_tx & (rules != "fuel.no_gps_coverage")
    track &= ~(np.isin(rules, _TRACK_OPTIONAL) & (rng.random(m) < 0.1))
    away = rules == "fuel.away_from_station"
    nostop = rules == "fuel.no_stop_at_station"
    dist = np.where(away, 300.0 + rng.gamma(1.5, 2_500.0, m),
                    np.where(nostop, rng.uniform(5.0, 280.0, m), rng.uniform(2.0, 40.0, m)))
    ti = np.flatnonzero(track)
    tr = _tracks(rng, st_xy[s[ti]], dist[ti], np.isin(rules[ti], _STOPPED), away[ti])
    parts = np.empty(2 * len(ti), dtype=object)
    parts[0::2] = station[ti]
    parts[1::2] = tr["line"]
    geoms[ti] = shapely.geometrycollections(parts, indices=np.repeat(np.arange(len(ti)), 2))
    pi = np.flatnonzero(is_tx & ~track)
    geoms[pi] = station[pi]
    vi = np.flatnonzero(~is_tx)
    n_tx_v = rng.integers(2, 6, len(vi))
    other = rng.integers(0, n_st, (len(vi), 5))
    other[:, 0] = s[vi]
    mp = shapely.points(st_xy[other[np.arange(5)[None, :] < n_tx_v[:, None]]])
    geoms[vi] = shapely.multipoints(mp, indices=np.repeat(np.arange(len(vi)), n_tx_v))
    geoms = _to_lonlat(geoms)

    k = np.zeros(m, dtype=np.int64)
    k[ti] = tr["k"]
    near_m = np.full(m, np.nan)
    near_m[ti] = np.round(tr["nearest_m"], 1)
    near_ll = np.full((m, 2), np.nan)
    near_ll[ti] = np.round(tr["nearest_xy"] / [_KX, _KY] + [LON0, LAT0], 7)
    near_t = time.copy()
    near_t[ti] = time[ti] - 600 + (tr["j"] * tr["dt"]).astype(np.int64)
    fix0 = rng.integers(1_000, 9_000_000, m)
    near_fix = np.zeros(m, dtype=np.int64)
    near_fix[ti] = fix0[ti] + tr["j"]
    iso_t, iso_near = _iso(time), _iso(near_t)
    local = (pd.to_datetime(time, unit="s", utc=True).tz_convert("Asia/Shanghai")
             .strftime("%Y-%m-%d %H:%M").tolist())
    local_near = (pd.to_datetime(near_t, unit="s", utc=True).tz_convert("Asia/Shanghai")
                  .strftime("%Y-%m-%d %H:%M").tolist())
    prev_s = rng.integers(600, 4 * 86_400, m)
    iso_prev = _iso(time - prev_s)
    local_prev = (pd.to_datetime(time - prev_s, unit="s", utc=True).tz_convert("Asia/Shanghai")
                  .strftime("%Y-%m-%d %H:%M").tolist())
    prev_tx = np.array([f"87{tx0 + m + i:08d}" for i in range(m)], dtype=object)
    rated = rng.choice([8.8, 9.5, 11.0, 12.5, 16.0], m)
    gps_km = np.round(rng.gamma(2.0, 40.0, m), 2)
    score = np.round(rng.uniform(0.05, 1.0, m), 4)

    title, detail, evidence, severity = [], [], [], []
    for i in range(m):
        r = rules[i]
        rule = reg.get(r)
        thr = rule.defaults()
        sta = f"{st_name[s[i]]} ({st_id[s[i]]})"
        ev: dict[str, Any] = {"tx_id": tx[i], "card_id": card[i], "vehicle_id": vehicle[i],
                              "station_id": st_id[s[i]], "time": iso_t[i]}
        if r == "fuel.away_from_station":
            stop = rng.random() < 0.5
            stop_m = _r(near_m[i] + rng.uniform(0, 3000), 1) if stop else None
            ev |= {"nearest_m": near_m[i], "nearest_at": iso_near[i],
                   "nearest_lon": near_ll[i, 0], "nearest_lat": near_ll[i, 1],
                   "nearest_fix_id": int(near_fix[i]),
                   "fix_distance_m": _r(near_m[i] + rng.uniform(0, 40), 1),
                   "n_fixes": int(k[i]),
                   "stop_id": f"{vehicle[i]}@{iso_prev[i]}" if stop else "", "stop_m": stop_m}
            d = (f"Closest approach of vehicle {vehicle[i]} to station {sta} within ±"
                 f"{thr['window_min']:g} min of {local[i]}: {near_m[i]:.0f} m at "
                 f"{local_near[i]} (radius {thr['radius_m']:g} m); no stop within the radius.")
        elif r == "fuel.no_stop_at_station":
            dur = _r(rng.uniform(0, 110), 1)
            ev |= {"nearest_m": near_m[i], "nearest_at": iso_near[i],
                   "nearest_fix_id": int(near_fix[i]), "stop_id": "", "stop_start": None,
                   "stop_end": None, "stop_duration_s": dur, "stop_m": None}
            thr["window_min"] = 10.0
            d = (f"Vehicle {vehicle[i]} came within {near_m[i]:.0f} m of station {sta} at "
                 f"{local_near[i]} but no stop nearby (minimum dwell {thr['min_dwell_min']:g} "
                 f"min, stop diameter {thr['stop_diameter_m']:g} m, radius "
                 f"{thr['radius_m']:g} m, window ±10 min).")
        elif r == "fuel.no_gps_coverage":
            ev |= {"n_fixes": 0, "reason": "no fix in the window", "in_gap": False,
                   "gap_start": None, "gap_end": None}
            thr = {"window_min": 10.0, **thr}
            d = (f"Within ±10 min of the fill at {local[i]} on vehicle {vehicle[i]}: no fix "
                 "of the vehicle; the purchase cannot be checked against the track.")
        elif r == "fuel.over_tank_capacity":
            lim = tank[i] * (1 + thr["tolerance"])
            lit = _r(lim + rng.uniform(1, 60), 2)
            ev |= {"litres": lit, "tank_l": tank[i], "limit_l": round(lim, 3),
                   "excess_l": round(lit - lim, 3)}
            d = (f"Fill of {lit:.2f} on vehicle {vehicle[i]} at {local[i]}; tank capacity "
                 f"{tank[i]:.1f}, limit with tolerance {thr['tolerance']:g}: {lim:.2f}.")
        elif r == "fuel.consumption_mismatch":
            km = gps_km[i] / 10
            exp = round(km * rated[i] / 100, 3)
            ev |= {"allowed_l": round(exp * thr["factor"], 3), "expected_l": exp,
                   "gap_km": 0.0, "gps_km": km, "litres": litres[i],
                   "previous_time": iso_prev[i], "previous_tx_id": prev_tx[i],
                   "rated_l_per_100km": rated[i]}
            d = (f"Fill of {litres[i]:.1f} on vehicle {vehicle[i]} at {local[i]}: GPS distance "
                 f"since the previous fill ({prev_tx[i]}) {km:.1f} km × rated {rated[i]:g} "
                 f"l/100 km = {exp:.2f}; allowed × {thr['factor']:g} = "
                 f"{exp * thr['factor']:.2f}.")
        elif r == "fuel.off_hours":
            weekend = rng.random() < 0.4
            ev |= {"calendar_country": "CN", "local_time": local[i],
                   "reason": "weekend" if weekend else "outside working hours",
                   "tz": "Asia/Shanghai"}
            d = (f"Fill at {local[i]} (Asia/Shanghai) on card {card[i]}: "
                 f"{'weekend' if weekend else 'outside working hours'} (working hours "
                 f"{thr['work_start']}–{thr['work_end']}, public holidays and weekends of the "
                 "calendar).")
        elif r == "fuel.rapid_refill":
            mins = _r(rng.uniform(5, 230), 1)
            prev_l = _r(rng.uniform(20, 80), 2)
            ev |= {"interval_min": mins, "litres": litres[i], "previous_litres": prev_l,
                   "previous_time": iso_prev[i], "previous_tx_id": prev_tx[i], "same": "card"}
            d = (f"Fill at {local[i]} on card {card[i]} / vehicle {vehicle[i]} {mins:.0f} min "
                 f"after fill {prev_tx[i]} on the same card ({prev_l:g} then {litres[i]:g}); "
                 f"interval threshold {thr['interval_h']:g} h.")
        elif r == "fuel.product_mismatch":
            ev |= {"fuel_type": "petrol", "fuel_type_class": "petrol", "non_fuel": False,
                   "product": "Diesel", "product_class": "diesel"}
            d = (f"Product 'Diesel' (diesel) bought for vehicle {vehicle[i]} whose fuel type "
                 "is 'petrol' (petrol).")
        elif r == "fuel.odometer_anomaly":
            odo = _r(rng.uniform(5_000, 90_000), 0)
            delta = _r(-rng.uniform(50, 900), 0)
            ev |= {"delta_km": delta, "gps_km": gps_km[i], "kind": "backwards",
                   "odometer_km": odo + delta, "previous_odometer_km": odo,
                   "previous_time": iso_prev[i], "previous_tx_id": prev_tx[i]}
            d = (f"Odometer of vehicle {vehicle[i]} at {local[i]}: {odo + delta:.1f} km after "
                 f"{odo:.1f} km at {local_prev[i]} ({prev_tx[i]}): change {delta:.1f} km, went "
                 "backwards.")
        else:  # fuel.inactive_vehicle: one alert per vehicle and month
            ev = {"active_from": "2017-02-14T16:00:00Z", "active_to": None,
                  "card_ids": [card[i]], "gps_km": 0.0, "n_fixes": int(rng.integers(0, 4000)),
                  "reasons": ["moved 0.0 km by GPS in the month"], "status": "active",
                  "tx_ids": [tx[i], prev_tx[i]], "vehicle_id": vehicle[i]}
            d = (f"Vehicle {vehicle[i]} in 2024-09: 2 transaction(s) while moved 0.0 km by GPS "
                 f"in the month (minimum movement {thr['min_distance_km']:g} km per month).")
        ev["thresholds"] = thr
        title.append(rule.title)
        detail.append(d)
        evidence.append(ev)
        severity.append(rule.severity)
    vehicle_subject = rules == "fuel.inactive_vehicle"
    rows = {
        "rule": rules, "severity": severity,
        "subject_type": np.where(vehicle_subject, "vehicle", "transaction"),
        "subject_id": np.where(vehicle_subject, vehicle, tx),
        "unit": units[veh % len(units)], "period": "2024-09",
        "observed_at": pd.to_datetime(time, unit="s", utc=True),
        "amount_at_risk": amount, "score": score, "title": title, "detail": detail,
        "evidence": evidence,
    }
    return _frame(rows, geoms)


# ------------------------------------------------------------------------------------------
# farmland
# ------------------------------------------------------------------------------------------

_APPLICANT_RULES = ("farmland.big_recipient", "farmland.claim_frequency",
                    "farmland.deceased_applicant", "farmland.official_applicant")
_OVERLAP_RULES = ("farmland.double_claim", "farmland.over_declared", "farmland.outside_reference")


def _farmland(rng: np.random.Generator, counts: Mapping[str, int], reg: Any,
              id0: int) -> gpd.GeoDataFrame:
    rules = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    m = len(rules)
    if m == 0:
        return _frame({}, np.zeros(0, dtype=object))
    n_vil = 800
    vil_xy = rng.uniform(-28_000, 28_000, (n_vil, 2))
    vil_name = np.array([_SYLLABLES[i % len(_SYLLABLES)] + _GIVEN[(i // len(_SYLLABLES))
                         % len(_GIVEN)] + "村" for i in range(n_vil)], dtype=object)
    v = rng.integers(0, n_vil, m)
    applicant = np.array([f"A{id0 + i:06d}" for i in range(m)], dtype=object)
    decl = np.array([f"2025-{a}-01" for a in applicant], dtype=object)
    parcel = np.array([f"340123{v[i]:04d}{rng.integers(1, 10):02d}{i:07d}" for i in range(m)],
                      dtype=object)
    # one part per declaration alert, 2-5 for applicant alerts and for some others
    multi = np.isin(rules, _APPLICANT_RULES)
    multi |= np.isin(rules, ("farmland.over_declared", "farmland.year_change")) \
        & (rng.random(m) < 0.45)
    n_parts = np.where(multi, rng.integers(2, 6, m), 1)
    owner = np.repeat(np.arange(m), n_parts)
    q = len(owner)
    # an applicant's parcels lie 160 m apart in a row (more than any parcel's diagonal)
    rank = np.arange(q) - np.repeat(np.r_[0, np.cumsum(n_parts)[:-1]], n_parts)
    beta = rng.uniform(0, 2 * np.pi, m)[owner]
    centre = (vil_xy[v[owner]] + rng.normal(0, 500, (m, 2))[owner]
              + (160.0 * rank)[:, None] * np.c_[np.cos(beta), np.sin(beta)])
    w = rng.uniform(30, 120, q)
    h = rng.uniform(20, 80, q)
    angle = rng.uniform(0, np.pi, q)
    k = _parcel_vertices(rng, q)
    k = np.where(multi[owner], np.minimum(k, 35), k)  # applicants: up to 5 parts of <= 35
    part = _fields(rng, centre, w, h, angle, k)
    first = np.r_[0, np.cumsum(n_parts)[:-1]]
    geoms = np.empty(m, dtype=object)
    single = np.flatnonzero(~multi)
    geoms[single] = part[first[single]]
    mi = np.flatnonzero(multi)
    sel = np.isin(owner, mi)
    geoms[mi] = shapely.multipolygons(part[sel], indices=np.searchsorted(mi, owner[sel]))
    area = shapely.area(geoms)
    # the other polygon of an overlap: another declaration or the reference parcel
    ov = np.isin(rules, _OVERLAP_RULES)
    fc, fw, fh, fa = centre[first], w[first], h[first], angle[first]
    shift = np.where(rules == "farmland.double_claim", rng.uniform(0.2, 0.7, m),
                     np.where(rules == "farmland.outside_reference", rng.uniform(0.6, 0.9, m),
                              rng.uniform(0.0, 0.1, m)))
    scale = np.where(rules == "farmland.over_declared", rng.uniform(0.6, 0.95, m), 1.0)
    oc = fc + (shift * fw)[:, None] * np.c_[np.cos(fa), np.sin(fa)]
    oi = np.flatnonzero(ov)
    other = _fields(rng, oc[oi], fw[oi] * scale[oi], fh[oi] * scale[oi], fa[oi],
                    _parcel_vertices(rng, len(oi)))
    overlap = np.full(m, None, dtype=object)
    overlap[oi] = shapely.intersection(geoms[oi], other)
    ov_m2 = np.zeros(m)
    ov_m2[oi] = shapely.area(overlap[oi])
    geoms = _to_lonlat(geoms)
    ov_wkt = np.full(m, None, dtype=object)
    ov_wkt[oi] = shapely.to_wkt(_to_lonlat(overlap[oi]), rounding_precision=7, trim=True)

    persons = _names(rng, m)
    subsidy_per_mu = 120.0
    title, detail, evidence, severity, amount, score = [], [], [], [], [], []
    for i in range(m):
        r = rules[i]
        rule = reg.get(r)
        thr = rule.defaults()
        a_m2 = _r(area[i], 2)
        a_mu = round(a_m2 / _MU, 2)
        decl_ids = ([f"2025-{applicant[i]}-{p + 1:02d}" for p in range(n_parts[i])]
                    if n_parts[i] > 1 else [decl[i]])
        parcels = [parcel[i][:-2] + f"{p:02d}" for p in range(n_parts[i])]
        ev: dict[str, Any] = {"applicant_id": applicant[i], "applicant_ids": [applicant[i]],
                              "area_unit": "mu", "declaration_ids": decl_ids,
                              "declared_area": a_mu, "declared_m2": a_m2,
                              "parcel_ids": parcels}
        sev = rule.severity
        subsidy = round(a_mu * subsidy_per_mu, 2)
        risk = subsidy
        sc = _r(rng.uniform(0.05, 1.0), 4)
        o_m2 = _r(ov_m2[i], 2)
        o_mu = round(o_m2 / _MU, 4)
        if r in _APPLICANT_RULES:
            ev["subsidy_amount"] = subsidy
            if r == "farmland.big_recipient":
                med = round(a_mu / rng.uniform(3, 6), 2)
                ev |= {"mad_area": round(med / 2, 3), "median_area": med,
                       "median_m2": round(med * _MU, 2), "method": "robust_z",
                       "robust_z": round(float(rng.uniform(3.6, 9)), 4),
                       "village_applicants": int(rng.integers(20, 300))}
                d = (f"Applicant {applicant[i]}, 2025: declared {a_mu:.2f} mu in total against "
                     f"a median of {med:.2f} mu among the {ev['village_applicants']} applicants "
                     f"of {vil_name[v[i]]}; robust z-score {ev['robust_z']:.1f} (threshold "
                     f"{thr['z']:g})")
            elif r == "farmland.claim_frequency":
                nd = int(rng.integers(21, 40))
                ev |= {"n_declarations": nd, "n_parcels": int(n_parts[i])}
                d = (f"Applicant {applicant[i]}, 2025: {nd} declaration(s) on {n_parts[i]} "
                     f"reference parcel(s), {a_mu:.2f} mu (limits: {thr['max_declarations']} "
                     f"declarations, {thr['max_parcels']} parcels)")
            elif r == "farmland.deceased_applicant":
                days = int(rng.integers(1, 900))
                died = (pd.Timestamp("2025-01-01") - pd.Timedelta(days=days)).date().isoformat()
                ev |= {"days_before_year": days, "died_on": died, "person_name": persons[i]}
                d = (f"Applicant {applicant[i]}: the persons registry records a death on {died}, "
                     f"{days} day(s) before the declaration year 2025 began; {n_parts[i]} "
                     f"declaration(s), {a_mu:.2f} mu (threshold: {thr['min_days']} day(s))")
            else:
                office = _DISTRICTS[i % len(_DISTRICTS)] + _BUREAUS[6]
                ev |= {"official_unit": office, "person_name": persons[i]}
                d = (f"Applicant {applicant[i]} is marked as a public official ({office}) in the "
                     f"persons registry; {n_parts[i]} declaration(s) of 2025, {a_mu:.2f} mu")
        else:
            ev |= {"declaration_id": decl[i], "subsidy_amount": subsidy}
            if r == "farmland.double_claim":
                other_app = f"A{id0 + m + i:06d}"
                ev["declaration_ids"] = [decl[i], f"2025-{other_app}-01"]
                ev["applicant_ids"] = [applicant[i], other_app]
                share = round(o_m2 / a_m2, 6) if a_m2 else 0.0
                ev |= {"overlap_area": o_mu, "overlap_m2": o_m2, "share_a": share,
                       "share_b": share, "villages": [vil_name[v[i]]] * 2}
                risk = round(o_mu * subsidy_per_mu, 2)
                d = (f"Declarations {decl[i]} (applicant {applicant[i]}) and 2025-{other_app}-01"
                     f" (applicant {other_app}) of 2025 overlap by {o_mu:.2f} mu ({share:.1%} of "
                     f"the declaration) (threshold: {thr['min_overlap_m2']:g} m² or "
                     f"{thr['share']:.0%})")
            elif r == "farmland.over_declared":
                excess = max(a_m2 - o_m2, 0.0)
                share = round(excess / o_m2, 6) if o_m2 else 1.0
                band = 3 if share > 0.5 else 2 if share > 0.2 else 1
                sev = "high" if band >= 2 else "medium"
                ev |= {"band": band, "determined_m2": o_m2, "determined_area": o_mu,
                       "eligible_found_m2": o_m2, "eligible_found_area": o_mu,
                       "excess_m2": round(excess, 2), "excess_area": round(excess / _MU, 4),
                       "excess_share": share, "level": "declaration", "overlap_area": o_mu,
                       "overlap_m2": o_m2}
                risk = round(excess / _MU * subsidy_per_mu, 2)
                d = (f"Declaration {decl[i]}: declared {a_mu:.2f} mu on reference parcel(s) "
                     f"{', '.join(parcels)}; eligible area found {o_mu:.2f} mu; excess "
                     f"{excess / _MU:.2f} mu ({share:.1%} of the area determined)")
            elif r == "farmland.outside_reference":
                out = max(a_m2 - o_m2, 0.0)
                ev |= {"drawn_area": a_mu, "drawn_m2": a_m2, "outside_area": round(out / _MU, 4),
                       "outside_m2": round(out, 2), "outside_share": round(out / a_m2, 6),
                       "overlap_area": o_mu, "overlap_m2": o_m2}
                risk = round(out / _MU * subsidy_per_mu, 2)
                d = (f"Declaration {decl[i]}: {out / _MU:.2f} mu ({out / a_m2:.1%}) of the drawn "
                     f"{a_mu:.2f} mu lie outside every reference parcel (threshold: "
                     f"{thr['share']:.0%} or {thr['min_m2']:g} m²)")
            elif r == "farmland.non_farmland":
                share = _r(rng.uniform(0.06, 1.0), 6)
                cls = ("forest", "built-up", "water", "road")[i % 4]
                nf = round(a_m2 * share, 2)
                ev |= {"base_area": a_mu, "base_m2": a_m2, "nonfarm_area": round(nf / _MU, 4),
                       "nonfarm_m2": nf, "nonfarm_m2_by_class": {cls: nf},
                       "nonfarm_share": share, "nonfarm_source": "land_use layer"}
                risk = round(nf / _MU * subsidy_per_mu, 2)
                d = (f"Declaration {decl[i]}: {nf / _MU:.2f} mu ({share:.1%}) of the declared "
                     f"land {a_mu:.2f} mu lie on land use {cls} (threshold: {thr['min_m2']:g} m²"
                     f" or {thr['share']:.0%})")
            else:  # farmland.year_change
                prev_mu = round(a_mu / rng.uniform(1.35, 3.0), 2)
                change = round((a_mu - prev_mu) / prev_mu, 6)
                ev |= {"area_change": change, "geometry_change": None,
                       "previous_area": prev_mu, "previous_id": f"2024-{applicant[i]}-01",
                       "previous_m2": round(prev_mu * _MU, 2), "sym_diff_area": None,
                       "sym_diff_m2": None, "union_area": None, "union_m2": None}
                ev["declaration_ids"] = [decl[i], f"2024-{applicant[i]}-01"]
                d = (f"Declaration {decl[i]} against 2024-{applicant[i]}-01 of the year before: "
                     f"declared area {prev_mu:.2f} mu → {a_mu:.2f} mu (change {change:.1%}); "
                     f"drawing changed by n/a % of the union (thresholds: "
                     f"{thr['area_change']:.0%} area, {thr['geometry_change']:.0%} drawing)")
        if ov_wkt[i] is not None:
            ev["overlap_wkt"] = ov_wkt[i]
        ev["thresholds"] = thr
        title.append(rule.title)
        detail.append(d)
        evidence.append(ev)
        severity.append(sev)
        amount.append(risk)
        score.append(sc)
    rows = {
        "rule": rules, "severity": severity,
        "subject_type": np.where(np.isin(rules, _APPLICANT_RULES), "applicant", "declaration"),
        "subject_id": np.where(np.isin(rules, _APPLICANT_RULES), applicant, decl),
        "unit": vil_name[v], "period": "2025",
        "observed_at": pd.Timestamp("2025-01-01", tz="UTC"),
        "amount_at_risk": amount, "score": score, "title": title, "detail": detail,
        "evidence": evidence,
    }
    return _frame(rows, geoms)


# ------------------------------------------------------------------------------------------
# requisition
# ------------------------------------------------------------------------------------------

_IMAGE_RULES = ("requisition.built_after_notice", "requisition.claimed_not_seen",
                "requisition.planted_after_notice")


def _requisition(rng: np.random.Generator, counts: Mapping[str, int], reg: Any,
                 id0: int) -> gpd.GeoDataFrame:
    rules = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
    m = len(rules)
    if m == 0:
        return _frame({}, np.zeros(0, dtype=object))
    n_proj = 60
    proj_xy = rng.uniform(-25_000, 25_000, (n_proj, 2))
    proj_id = np.array([f"P-2024-{i + 1:02d}" for i in range(n_proj)], dtype=object)
    p = rng.integers(0, n_proj, m)
    planted = rules == "requisition.planted_after_notice"
    built = np.isin(rules, ("requisition.built_after_notice", "requisition.claimed_not_seen"))
    item = np.where(planted, rng.choice(["trees", "crops"], m),
                    np.where(built, rng.choice(["building", "greenhouse"], m),
                             rng.choice(["building", "greenhouse", "trees", "crops"], m)))
    small = np.isin(item, ("building",))
    w = np.where(small, rng.uniform(8, 30, m), rng.uniform(20, 80, m))
    h = np.where(small, rng.uniform(6, 20, m), rng.uniform(10, 50, m))
    geoms = _fields(rng, proj_xy[p] + rng.normal(0, 400, (m, 2)), w, h,
                    rng.uniform(0, np.pi, m), np.full(m, 5), jitter=0.0)
    claim_m2 = np.round(shapely.area(geoms), 1)
    geoms = _to_lonlat(geoms)
    bounds = shapely.bounds(geoms)
    claim = np.array([f"Q{id0 + i:06d}" for i in range(m)], dtype=object)
    claimant = np.array([f"R{id0 + i:06d}" for i in range(m)], dtype=object)
    persons = _names(rng, m)
    tags = rng.integers(0, 16**8, m)
    title, detail, evidence, severity, amount, score = [], [], [], [], [], []
    for i in range(m):
        r = rules[i]
        rule = reg.get(r)
        thr = rule.defaults()
        sev = rule.severity
        claimed = _r(claim_m2[i] * rng.uniform(0.3, 1.0), 1)
        ev: dict[str, Any] = {"claim_id": claim[i], "claimant_id": claimant[i],
                              "claimed_area_m2": claimed, "item": item[i],
                              "notice_date": "2024-03-15", "project_id": proj_id[p[i]]}
        if r in _IMAGE_RULES:
            chip = (f"requisition/chips/ortho_winter__ortho_summer/{claim[i]}-{tags[i]:08x}")
            wst, sth, est, nth = bounds[i]
            share = _r(rng.uniform(0.05, 0.9), 4)
            ev |= {"after_date": "2024-06-08", "after_image": "ortho_summer",
                   "before_date": "2024-02-20", "before_image": "ortho_winter",
                   "builtup_index": "dbright",
                   "builtup_mean": _r(rng.normal(0, 5), 4),
                   "builtup_share": share,
                   "change_mean": _r(rng.uniform(0, 10), 3),
                   "change_q90": _r(rng.uniform(3, 30), 3),
                   "change_share": share, "change_threshold": 3.771,
                   "chip_after": chip + "_after.png", "chip_before": chip + "_before.png",
                   "chip_bounds": [[round(sth - 2e-5, 7), round(wst - 2e-5, 7)],
                                   [round(nth + 2e-5, 7), round(est + 2e-5, 7)]],
                   "claim_area_m2": float(claim_m2[i]),
                   "effective_pixels": _r(claim_m2[i] * 4),
                   "seen_builtup_m2": _r(claimed * rng.uniform(0, 0.5), 1),
                   "valid_coverage": 1.0,
                   "veg_gain_mean": _r(rng.normal(0.1, 0.15), 4),
                   "veg_gain_q90": _r(rng.uniform(0, 0.6), 4),
                   "veg_gain_share": share if r == "requisition.planted_after_notice" else 0.0,
                   "veg_gain_threshold": 0.2127}
            if r == "requisition.claimed_not_seen":
                seen = ev["seen_builtup_m2"]
                ratio = round(claimed / seen, 3) if seen else None
                ev |= {"excess_m2": round(claimed - seen, 1), "ratio": ratio}
                sev = "high" if ratio is None or ratio >= thr["high_ratio"] else "medium"
                d = (f"Claim {claim[i]} ({item[i]}): {claimed:.1f} m² claimed, {seen:.1f} m² "
                     "built-up seen in the image of 2024-02-20 (notice date 2024-03-15), "
                     f"{claimed - seen:.1f} m² more (thresholds: claimed > {thr['max_ratio']:g}"
                     f" × seen and ≥ {thr['min_excess_m2']:g} m² more)")
            elif r == "requisition.built_after_notice":
                d = (f"Claim {claim[i]} ({item[i]}): {share:.1%} of its area changed between "
                     "2024-02-20 and 2024-06-08 (notice date 2024-03-15); change magnitude p90 "
                     f"{ev['change_q90']:.2f} vs scene threshold 3.77 (thresholds: changed share "
                     f"≥ {thr['min_changed_share']:g}, ΔNDVI < {thr['max_ndvi_gain']:g})")
            else:
                d = (f"Claim {claim[i]} ({item[i]}): {share:.1%} of its area gained vegetation "
                     "between 2024-02-20 and 2024-06-08 (notice date 2024-03-15); mean ΔNDVI "
                     f"{ev['veg_gain_mean']:.3f} (thresholds: gain share ≥ "
                     f"{thr['min_gain_share']:g}, mean ΔNDVI ≥ {thr['min_ndvi_gain']:g})")
        elif r == "requisition.deceased_claimant":
            days = int(rng.integers(1, 2000))
            died = (pd.Timestamp("2024-03-15") - pd.Timedelta(days=days)).date().isoformat()
            ev |= {"days": days, "died_on": died, "person_name": persons[i]}
            d = (f"Claim {claim[i]}: the persons registry records claimant {claimant[i]} as "
                 f"deceased on {died}, {days} day(s) from the notice date 2024-03-15 "
                 f"(threshold: {thr['min_days']} day(s))")
        else:
            days = int(rng.integers(1, 300))
            moved = (pd.Timestamp("2024-03-15") + pd.Timedelta(days=days)).date().isoformat()
            ev |= {"days": days, "moved_in_on": moved, "person_name": persons[i]}
            d = (f"Claim {claim[i]}: the persons registry records claimant {claimant[i]} moving "
                 f"in on {moved}, {days} day(s) from the notice date 2024-03-15 (threshold: "
                 f"{thr['min_days']} day(s))")
        ev["thresholds"] = thr
        title.append(rule.title)
        detail.append(d)
        evidence.append(ev)
        severity.append(sev)
        amount.append(round(claimed * float(rng.uniform(150, 1500)), 2))
        score.append(_r(rng.uniform(0.05, 1.0), 4))
    rows = {
        "rule": rules, "severity": severity, "subject_type": "claim", "subject_id": claim,
        "unit": proj_id[p], "period": "2024-03-15",
        "observed_at": pd.Timestamp("2024-06-08", tz="UTC"),
        "amount_at_risk": amount, "score": score, "title": title, "detail": detail,
        "evidence": evidence,
    }
    return _frame(rows, geoms)


def synthetic_alerts(n: int, *, mix: Mapping[str, float] | None = None,
                     seed: int = 1) -> gpd.GeoDataFrame:
    """``n`` alerts shaped like those the fuel, farmland and requisition checks write.

    Parameters
    ----------
    n : int
        Number of alerts.
    mix : mapping of domain to weight, optional
        Share of each domain (``fuel``, ``farmland``, ``requisition``; missing ones get
        none); inside a domain the rules keep the demo's proportions. Default: the demo
        city's mix (:data:`DEMO_COUNTS`: 24, 61 and 25 of 110).
    seed : int
        Seed of the random generator: the same arguments give the same table.

    Returns
    -------
    GeoDataFrame
        An alert table (:func:`geosup.alerts.make_alerts`), EPSG:4326, every alert with a
        geometry, rows grouped by domain and rule.

    Examples
    --------
    >>> alerts = synthetic_alerts(200, mix={"fuel": 1}, seed=3)
    >>> bool(alerts["rule"].str.startswith("fuel.").all()), alerts.crs.to_epsg()
    (True, 4326)
    >>> tracks = [g.geoms[1] for g in alerts.geometry if g.geom_type == "GeometryCollection"]
    >>> 15 <= min(len(t.coords) for t in tracks) <= max(len(t.coords) for t in tracks) <= 40
    True
    """
    from geosup.rules import load_builtin_rules

    if n < 0:
        msg = f"n must be >= 0, not {n}"
        raise ValueError(msg)
    reg = load_builtin_rules()
    for code in DEMO_COUNTS:
        reg.get(code)  # every code must be a registered rule
    domain_total: dict[str, int] = {}
    for code, c in DEMO_COUNTS.items():
        domain_total[code.split(".")[0]] = domain_total.get(code.split(".")[0], 0) + c
    mix = dict(mix) if mix is not None else {d: float(c) for d, c in domain_total.items()}
    unknown = set(mix) - set(domain_total)
    if unknown:
        msg = f"unknown domain(s) in mix: {sorted(unknown)}; use {sorted(domain_total)}"
        raise ValueError(msg)
    weights = {code: mix.get(code.split(".")[0], 0.0) * c / domain_total[code.split(".")[0]]
               for code, c in DEMO_COUNTS.items()}
    counts = _allocate(n, weights)
    rng = np.random.default_rng(seed)

    def of(domain: str) -> dict[str, int]:
        return {c: k for c, k in counts.items() if c.startswith(domain + ".")}

    parts = [_fuel(rng, of("fuel"), reg, tx0=10_000_000),
             _farmland(rng, of("farmland"), reg, id0=100_000),
             _requisition(rng, of("requisition"), reg, id0=1)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return make_alerts(gpd.GeoDataFrame({"rule": [], "subject_type": [], "subject_id": []},
                                            geometry=[], crs=4326), now=_NOW)
    table = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs=4326)
    return make_alerts(table, now=_NOW)


# ------------------------------------------------------------------------------------------
# In-page probes (playwright ``page`` objects; nothing here imports playwright)
# ------------------------------------------------------------------------------------------

#: Debian's Chromium, driven by playwright without ``playwright install`` (DESIGN §8).
CHROMIUM = "/usr/bin/chromium"

#: Headless, no sandbox (CI runs as root), no background traffic, exact JS heap sizes.
CHROMIUM_ARGS = ("--no-sandbox", "--headless", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--enable-precise-memory-info")


@contextlib.contextmanager
def headless_chromium(*, executable: str = CHROMIUM) -> Iterator[Any]:
    """A playwright Browser on Debian's headless Chromium, closed when the block ends.

    Raises
    ------
    FileNotFoundError
        Chromium is not installed (``make test`` installs Debian's ``chromium``).

    Examples
    --------
    >>> with headless_chromium() as browser:               # doctest: +SKIP
    ...     page = browser.new_page()
    """
    from playwright import sync_api

    if not Path(executable).exists():
        msg = f"{executable} not found; run `make test` (it installs Debian's chromium)"
        raise FileNotFoundError(msg)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser
        finally:
            browser.close()


def probe_init_js() -> str:
    """Script to install with ``page.add_init_script`` before the page is opened.

    It records every long task (a ``PerformanceObserver`` of type ``longtask``, which
    sees tasks of 50 ms or more, buffered from navigation start) and samples the used
    JS heap (``performance.memory``; exact with Chromium's ``--enable-precise-memory-info``)
    every 100 ms and at each long-task report, in ``window.__gsProbe``; ``__gsProbe.map()``
    finds the page's Leaflet map (the review map's, else the first ``L.Map`` in ``window``).
    """
    return """(() => {
  const st = window.__gsProbe = {longTasks: [], heapMax: 0, supported: false};
  const heap = () => { const m = performance.memory;
    if (m && m.usedJSHeapSize > st.heapMax) { st.heapMax = m.usedJSHeapSize; } };
  st.take = (list) => { for (const e of list) { st.longTasks.push([e.startTime, e.duration]); } };
  st.map = () => {
    const r = window.geosupReview;
    if (r && r.maps && r.maps[0] && r.maps[0].map) { return r.maps[0].map; }
    for (const k of Object.keys(window)) {
      try { if (window.L && window[k] instanceof L.Map) { return window[k]; } } catch (e) { }
    }
    return null;
  };
  try {
    st.observer = new PerformanceObserver(l => { st.take(l.getEntries()); heap(); });
    st.observer.observe({type: 'longtask', buffered: true});
    st.supported = true;
  } catch (e) { st.error = String(e); }
  setInterval(heap, 100);
})();"""


_QUIET = """(quiet) => new Promise(resolve => {
  const st = window.__gsProbe, nav = performance.getEntriesByType('navigation')[0];
  const check = () => {
    if (st.observer) { st.take(st.observer.takeRecords()); }
    const lastLong = st.longTasks.reduce((m, t) => Math.max(m, t[0] + t[1]), 0);
    let ready = 0;
    try { ready = Number(READY_MS) || 0; } catch (e) { ready = 0; }
    const last = Math.max(lastLong, nav.loadEventEnd, ready);
    if (performance.now() - last >= quiet) {
      resolve({tti: last, lastLong: lastLong, load: nav.loadEventEnd, ready: ready,
               longTasks: st.longTasks.length, supported: st.supported,
               longest: st.longTasks.reduce((m, t) => Math.max(m, t[1]), 0)});
    } else { setTimeout(check, 50); }
  };
  check();
})"""


def wait_interactive(page: Any, *, ready_ms_js: str | None = None,
                     quiet_ms: float = 500) -> dict[str, Any]:
    """Wait until the page's main thread has been free for ``quiet_ms`` after load.

    Call after ``page.goto(..., wait_until="load")`` on a page opened with
    :func:`probe_init_js` installed. Returns milliseconds since navigation start:
    ``tti`` (time to interactive: the latest of the load event's end, the end of the
    last long task and ``ready_ms_js``), ``load``, ``lastLong`` and ``ready``, plus
    ``longTasks`` (how many) and ``longest`` (ms). Long tasks are only seen when
    ``supported`` is true. ``ready_ms_js`` is a JS expression giving the page's own
    "ready" time in ms since navigation start (0 while it cannot be evaluated).
    """
    return page.evaluate(_QUIET.replace("READY_MS", ready_ms_js or "0"), quiet_ms)


_PICK = """(sel) => {
  const map = window.__gsProbe.map(); if (!map) { return null; }
  const box = map.getContainer().getBoundingClientRect();
  const cx = box.left + box.width / 2, cy = box.top + box.height / 2;
  let best = null;
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect(), x = r.left + r.width / 2, y = r.top + r.height / 2;
    if (r.width === 0 || x < box.left || x > box.right || y < box.top || y > box.bottom) continue;
    const top = document.elementFromPoint(x, y);
    if (!top || !(el === top || el.contains(top))) continue;
    const d = Math.hypot(x - cx, y - cy);
    if (!best || d < best.d) { best = {x: x, y: y, d: d, label: el.textContent.trim()}; }
  }
  if (best) { best.zoom = map.getZoom(); }
  return best;
}"""

_ARM = """(timeout) => {
  const st = window.__gsProbe, map = st.map(), t = {};
  document.addEventListener('mousedown', e => { if (t.down === undefined) t.down = e.timeStamp; },
                            {capture: true, once: true});
  st.click = new Promise(resolve => {
    let done = false;
    const finish = what => { if (done) return; done = true;
      requestAnimationFrame(() => requestAnimationFrame(() => resolve(
        {what: what, ms: performance.now() - t.down, zoom: map.getZoom()}))); };
    map.once('zoomend', () => finish('zoom'));
    map.once('popupopen', () => finish('popup'));
    setTimeout(() => { if (!done) { done = true; resolve({what: 'nothing', ms: null,
                                                          zoom: map.getZoom()}); } }, timeout);
  });
}"""


def click_cluster(page: Any, selector: str, *, timeout_s: float = 120) -> dict[str, Any] | None:
    """Click the cluster (``selector``) nearest the map's centre; time until it responds.

    The clicked element must be the topmost one at its centre (not under a panel).
    Returns ``None`` when no such element is on screen, else ``label`` (its text, the
    cluster's count), ``zoom_before``, ``zoom`` (after), ``what`` (``"zoom"`` or
    ``"popup"``: which came first; ``"nothing"`` after ``timeout_s``) and ``ms``: from the
    mouse-down event's timestamp (input delay included) until the frame after Leaflet's
    ``zoomend`` (the zoom animation included) or ``popupopen``.
    """
    target = page.evaluate(_PICK, selector)
    if target is None:
        return None
    page.evaluate(_ARM, int(timeout_s * 1000))
    page.mouse.click(target["x"], target["y"])
    result = page.evaluate("() => window.__gsProbe.click")
    return {"label": target["label"], "zoom_before": target["zoom"], **result}


def zoom_step(page: Any) -> float:
    """Milliseconds for one zoom-in step without animation, until the frame after ``zoomend``."""
    return page.evaluate(
        """() => new Promise(resolve => {
          const map = window.__gsProbe.map(), t0 = performance.now();
          map.once('zoomend', () => requestAnimationFrame(() => requestAnimationFrame(
            () => resolve(performance.now() - t0))));
          map.zoomIn(1, {animate: false}); })""")


def map_view(page: Any) -> tuple[list[float], float]:
    """The map's centre ([lat, lon]) and zoom."""
    center, zoom = page.evaluate(
        "() => { const m = window.__gsProbe.map(), c = m.getCenter(); "
        "return [[c.lat, c.lng], m.getZoom()]; }")
    return center, zoom


def set_view(page: Any, center: list[float], zoom: float) -> None:
    """Move the map to ``center`` ([lat, lon]) at ``zoom``, without animation."""
    page.evaluate("([c, z]) => { window.__gsProbe.map().setView(c, z, {animate: false}); }",
                  [center, zoom])


def js_heap_mb(page: Any) -> float | None:
    """Largest used JS heap sampled by :func:`probe_init_js` (MB), or None if unavailable."""
    value = page.evaluate("() => window.__gsProbe ? window.__gsProbe.heapMax : 0")
    return value / 1e6 if value else None
