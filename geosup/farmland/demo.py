"""The farmland demo scenario: three villages near Hefei with known misuse injected.

:func:`build_demo` draws a realistic landscape in Feixi county (肥西县), west of
Hefei, Anhui, in CGCS2000 / 3-degree Gauss-Krüger CM 117E (EPSG:4548): three
villages with irregular outlines, a county road and field roads, a built-up
settlement, a fish pond and a wood in each, and about 500 reference parcels drawn
as Voronoi cells of jittered seed points (elongated like the strip fields of the
region), cut by the roads and the non-farm land. Contract areas (the eligible
area, in mu) are the drawn area, a few percent less for a third of the parcels
(ditches, graves, field ridges). About 120 households in the three villages
declare their parcels for 2025, mostly by parcel code and some by a drawing, with
the same declarations in 2023 and 2024; a persons registry lists them.

Misuse is injected for every farmland rule, and the truth table lists, per rule,
the alerts it must produce (``rule, subject_id`` exactly as the alerts' subject):

- ``over_declared``: declared area above the contract area beyond the tolerance (by
  parcel code, by drawing, and one parcel split into two declarations) — the
  declaration and its applicant (whose excess is well inside an IACS band);
- ``outside_reference``: drawings that reach beyond the village's registered land;
- ``double_claim``: a drawing that takes a strip of the neighbour's parcel, and a
  parcel code declared by a second household;
- ``non_farmland``: new buildings, a dug fish pond and a tree nursery on registered
  parcels (the land-use layer shows them; a greenhouse labelled 设施农用地 is a
  distractor that must not fire);
- ``deceased_applicant``: households whose registered head died before 2025 (one who
  died in February 2025 must not fire);
- ``official_applicant``: households headed by public officials;
- ``big_recipient``: one large grain grower (种粮大户) per village;
- ``claim_frequency``: a household with 22 declarations, and parcels declared by a
  different household in each of 2023, 2024 and 2025;
- ``year_change``: a declared area up from 60 % of the parcel, and a drawing moved to
  the other end of the parcel.

Each injection is built so that it triggers its own rule only (for instance, the
years before an injected drawing are declared by parcel code, so no year-on-year
change appears), which is why the demo reaches precision and recall of 1.0 on every
rule with the default thresholds. Three unusable rows (an unknown parcel code, an
area of 0, a repeated declaration number) and a persons row without an id exercise
the rejects ledger.

The inputs are written to ``DIR/farmland/`` with the column names of a Chinese
land-contract export (地块编码, 合同面积 …) and read back through a column mapping
(also written as ``DIR/farmland/geosup.toml``, so that ``geosup farmland reconcile``
runs on the same files).

Examples
--------
>>> demo = build_demo()
>>> sorted(demo.truth["rule"].unique())[:2]
['farmland.big_recipient', 'farmland.claim_frequency']
>>> demo.parcels.crs.to_epsg(), len(demo.parcels) > 100
(4548, True)
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon

from geosup.config import Settings
from geosup.crs import M2_PER_MU
from geosup.demo import ScenarioResult, scenario
from geosup.errors import GeometryRepairWarning
from geosup.farmland.reconcile import (
    combined_counts,
    read_inputs,
    reconcile,
    write_run,
)
from geosup.store import Store, describe_input

__all__ = ["COLUMNS", "FarmlandDemo", "build_demo", "farmland_scenario", "write_demo_inputs"]

log = logging.getLogger(__name__)

#: The metric CRS of the demo (CGCS2000 / 3-degree Gauss-Kruger CM 117E).
CRS = pyproj.CRS.from_epsg(4548)
#: Where the first village lies (Feixi county, west of Hefei), lon/lat CGCS2000.
ORIGIN_LONLAT = (117.05, 31.70)
#: The year under review and the years before it.
YEAR = 2025
PREVIOUS_YEARS = (2023, 2024)
#: Subsidy per mu (耕地地力保护补贴, CNY) by year.
RATE = {2023: 115.0, 2024: 118.0, 2025: 120.0}

#: The column names of the demo files -> geosup's names (the mapping read_table applies).
COLUMNS: dict[str, dict[str, str]] = {
    "declarations": {"declaration_id": "申报编号", "applicant_id": "申报户编号",
                     "year": "年度", "parcel_id": "地块编码", "declared_area": "申报面积",
                     "crop": "作物", "village": "村", "subsidy_amount": "补贴金额"},
    "parcels": {"parcel_id": "DKBM", "eligible_area": "HTMJ", "land_use": "TDYT"},
    "land_use": {"land_use": "DLMC"},
    "persons": {"person_id": "人员编号", "name": "姓名", "died_on": "死亡日期",
                "is_official": "是否公职人员", "unit": "工作单位", "moved_in_on": "迁入日期",
                "moved_out_on": "迁出日期"},
}
COLUMNS["previous"] = dict(COLUMNS["declarations"])

_VILLAGES = ("高店村", "柏堰村", "长岗村")
_SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭")
_GIVEN = ("建国", "秀英", "志强", "桂兰", "德胜", "玉梅", "小平", "春华", "国庆", "丽娟",
          "长林", "凤英", "家宝", "文明", "海燕", "立新", "永福", "淑珍", "明亮", "金花",
          "守义", "翠兰", "友才", "红梅", "传德", "桂芳", "学文", "素琴", "成龙", "美玲")
_CROPS = ("小麦", "水稻", "油菜", "玉米", "大豆")

@dataclass
class FarmlandDemo:
    """The demo's inputs (canonical column names) and the alerts they must produce."""

    parcels: gpd.GeoDataFrame
    land_use: gpd.GeoDataFrame
    declarations: gpd.GeoDataFrame
    previous: gpd.GeoDataFrame
    persons: pd.DataFrame
    truth: pd.DataFrame
    villages: gpd.GeoDataFrame
    notes: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Landscape
# ---------------------------------------------------------------------------------------------


def _outline(rng: np.random.Generator, cx: float, cy: float, w: float, h: float) -> Polygon:
    """An irregular, roughly rectangular village outline (a jittered super-ellipse)."""
    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    r = 1.0 / (np.abs(c) ** 4 + np.abs(s) ** 4) ** 0.25
    noise = rng.normal(0.0, 0.035, t.size)
    kernel = np.ones(5) / 5.0
    noise = np.convolve(np.r_[noise[-2:], noise, noise[:2]], kernel, mode="valid")
    x = cx + w / 2.0 * r * c * (1.0 + noise)
    y = cy + h / 2.0 * r * s * (1.0 + noise)
    return shapely.make_valid(Polygon(np.column_stack([x, y])))


def _blob(rng: np.random.Generator, x: float, y: float, radius: float, n: int = 5) -> Any:
    """An irregular patch: the union of a few circles around (x, y)."""
    dx = rng.normal(0.0, radius * 0.45, n)
    dy = rng.normal(0.0, radius * 0.45, n)
    radii = rng.uniform(0.5, 0.9, n) * radius
    return shapely.union_all(shapely.buffer(shapely.points(x + dx, y + dy), radii,
                                            quad_segs=6))


def _wiggly(rng: np.random.Generator, xs: np.ndarray, ys: np.ndarray, amp: float,
            vertical: bool) -> LineString:
    if vertical:
        xs = xs + rng.normal(0.0, amp, xs.size)
    else:
        ys = ys + rng.normal(0.0, amp, ys.size)
    return LineString(np.column_stack([xs, ys]))


def _landscape(rng: np.random.Generator, index: int, x0: float, y0: float,
               w: float, h: float) -> dict[str, Any]:
    cx, cy = x0 + w / 2.0, y0 + h / 2.0
    boundary = _outline(rng, cx, cy, w, h)
    county_road = _wiggly(rng, np.linspace(x0 - 50, x0 + w + 50, 8),
                          np.full(8, cy + 0.12 * h), 6.0, vertical=False).buffer(4.0, cap_style=2)
    field_roads = [
        _wiggly(rng, np.full(5, x0 + f * w), np.linspace(y0 - 20, y0 + h + 20, 5), 5.0,
                vertical=True).buffer(1.5, cap_style=2) for f in (0.34, 0.68)
    ]
    field_roads.append(_wiggly(rng, np.linspace(x0 - 20, x0 + w + 20, 6),
                               np.full(6, cy - 0.28 * h), 4.0, vertical=False)
                       .buffer(1.5, cap_style=2))
    built = _blob(rng, cx - 0.22 * w, cy + 0.26 * h, 55.0, n=6)
    pond = shapely.affinity.scale(Point(cx + 0.22 * w, cy - 0.10 * h).buffer(30.0), 1.4, 0.9)
    wood = _blob(rng, cx + 0.40 * w, cy + 0.33 * h, 55.0, n=4)
    roads = shapely.union_all([county_road, *field_roads])
    nonfarm = {"公路用地": county_road, "农村道路": shapely.union_all(field_roads),
               "建设用地": built, "坑塘水面": pond, "林地": wood}
    clipped = {k: shapely.intersection(v, boundary) for k, v in nonfarm.items()}
    # Later classes do not overlap earlier ones (a land-use map is a partition).
    taken = None
    for key in ("公路用地", "农村道路", "建设用地", "坑塘水面", "林地"):
        geom = clipped[key] if taken is None else shapely.difference(clipped[key], taken)
        clipped[key] = geom
        taken = geom if taken is None else shapely.union(taken, geom)
    farmland = shapely.difference(boundary, taken)

    # Seed points on an elongated jittered grid (strip-like fields), Voronoi cells.
    sx, sy = 45.0, 75.0
    gx, gy = np.meshgrid(np.arange(x0 - sx, x0 + w + sx, sx), np.arange(y0 - sy, y0 + h + sy, sy))
    px = gx.ravel() + rng.uniform(-0.32, 0.32, gx.size) * sx
    py = gy.ravel() + rng.uniform(-0.32, 0.32, gy.size) * sy
    cells = shapely.get_parts(shapely.voronoi_polygons(MultiPoint(np.column_stack([px, py])),
                                                       extend_to=boundary.buffer(200)))
    pieces = shapely.get_parts(shapely.intersection(cells, farmland))
    pieces = pieces[shapely.get_type_id(pieces) == shapely.GeometryType.POLYGON]
    pieces = shapely.set_precision(pieces[shapely.area(pieces) >= 300.0], 0.01)
    pieces = pieces[shapely.is_valid(pieces) & (shapely.area(pieces) >= 300.0)]
    centroids = shapely.centroid(pieces)
    order = np.lexsort((shapely.get_x(centroids), -np.round(shapely.get_y(centroids), -1)))
    return {"index": index, "boundary": boundary, "nonfarm": clipped, "farmland": farmland,
            "roads": roads, "parcels": pieces[order], "centre": (cx, cy), "size": (w, h)}


# ---------------------------------------------------------------------------------------------
# Households, declarations and the injected misuse
# ---------------------------------------------------------------------------------------------


def _mu(m2: float | np.ndarray) -> float | np.ndarray:
    return np.asarray(m2, dtype="float64") / M2_PER_MU


def _ceil2(value: float) -> float:
    return math.ceil(value * 100.0 - 1e-9) / 100.0


def _floor2(value: float) -> float:
    return math.floor(value * 100.0 + 1e-9) / 100.0


class _Builder:
    """Collects declarations, persons and truth while the scenario is assembled."""

    def __init__(self, rng: np.random.Generator, parcels: gpd.GeoDataFrame) -> None:
        self.rng = rng
        self.parcels = parcels.set_index("parcel_id", drop=False)
        self.rows: list[dict[str, Any]] = []
        self.truth: list[dict[str, str]] = []
        self.counter: dict[tuple[int, str], int] = {}

    def geometry(self, pid: str) -> Any:
        return self.parcels.at[pid, "geometry"]

    def eligible_m2(self, pid: str) -> float:
        return float(self.parcels.at[pid, "eligible_area"]) * M2_PER_MU

    def declare(self, applicant: str, village: str, year: int, *, pid: str | None,
                area_mu: float, geom: Any = None, crop: str | None = None) -> str:
        n = self.counter.get((year, applicant), 0) + 1
        self.counter[(year, applicant)] = n
        did = f"{year}-{applicant}-{n:02d}"
        self.rows.append({
            "declaration_id": did, "applicant_id": applicant, "year": year,
            "parcel_id": pid, "declared_area": round(float(area_mu), 2),
            "crop": crop or str(self.rng.choice(_CROPS)), "village": village,
            "subsidy_amount": round(float(area_mu) * RATE[year], 2), "geometry": geom,
        })
        return did

    def expect(self, rule: str, subject: str, note: str) -> None:
        self.truth.append({"rule": f"farmland.{rule}", "subject_id": subject, "note": note})


def _shrunk(geom: Any) -> Any:
    """A household's drawing of its parcel: the parcel 0.3 m inside its edges."""
    return shapely.buffer(geom, -0.3, join_style="mitre")


def build_demo(*, seed: int = 20250, villages: int = 3, households: int = 40) -> FarmlandDemo:
    """Build the demo landscape, households, declarations, persons and truth table.

    Parameters
    ----------
    seed : int
        Seed of the random generator: the same seed gives the same demo.
    villages : int, default 3
        Number of villages (at most 3).
    households : int, default 40
        Declaring households per village.

    Returns
    -------
    FarmlandDemo
    """
    rng = np.random.default_rng(seed)
    to_metric = pyproj.Transformer.from_crs(4490, CRS, always_xy=True)
    ox, oy = to_metric.transform(*ORIGIN_LONLAT)
    w, h, gap = 760.0, 640.0, 200.0
    lands = [_landscape(rng, v, ox + v * (w + gap), oy, w, h)
             for v in range(min(villages, len(_VILLAGES)))]

    # Reference parcels: 19-digit contract codes (county 340123, town 101, village, group, no.)
    frames = []
    for land in lands:
        v = land["index"]
        geoms = land["parcels"]
        n = len(geoms)
        area_mu = _mu(shapely.area(geoms))
        factor = np.where(rng.random(n) < 0.33, rng.uniform(0.90, 0.98, n), 1.0)
        eligible = np.floor(area_mu * factor * 100.0) / 100.0
        group = 1 + np.arange(n) // 40
        codes = [f"340123101{v + 1:03d}{g:02d}{k + 1:05d}" for k, g in enumerate(group)]
        frames.append(gpd.GeoDataFrame({
            "parcel_id": codes, "eligible_area": eligible, "land_use": "耕地",
            "village": _VILLAGES[v]}, geometry=gpd.GeoSeries(geoms, crs=CRS), crs=CRS))
    parcels = pd.concat(frames, ignore_index=True)
    parcels = gpd.GeoDataFrame(parcels, geometry="geometry", crs=CRS)
    b = _Builder(rng, parcels)

    persons: list[dict[str, Any]] = []
    patches: list[tuple[str, Any]] = []
    notes: dict[str, Any] = {}
    eligible_mu = parcels.set_index("parcel_id")["eligible_area"]

    def name() -> str:
        return str(rng.choice(_SURNAMES)) + str(rng.choice(_GIVEN))

    def note(role: str, *values: Any) -> None:
        notes.setdefault(role, []).append(values)

    for land in lands:
        _households(b, land, parcels, eligible_mu, households, rng, persons, patches, note,
                    name)

    # Unusable rows for the rejects ledger (2025), and a persons row without an id.
    b.declare("A1002", _VILLAGES[0], YEAR, pid="3401231019990199999", area_mu=2.5)
    b.declare("A1002", _VILLAGES[0], YEAR, pid=str(parcels["parcel_id"].iloc[5]), area_mu=0.0)
    repeated = next(r for r in b.rows if r["year"] == YEAR)
    b.rows.append(dict(repeated))
    persons.append({"person_id": None, "name": "无编号", "died_on": None, "is_official": "否",
                    "unit": None, "moved_in_on": None, "moved_out_on": None})
    persons.append({"person_id": "R9001", "name": "退休干部", "died_on": None,
                    "is_official": "是", "unit": "肥西县人民政府", "moved_in_on": "2019-05-01",
                    "moved_out_on": None})
    persons.append({"person_id": "R9002", "name": "已故村民", "died_on": "2021-04-02",
                    "is_official": "否", "unit": _VILLAGES[0], "moved_in_on": None,
                    "moved_out_on": None})

    declarations = gpd.GeoDataFrame(pd.DataFrame(b.rows), geometry="geometry", crs=CRS)
    current = declarations.loc[declarations["year"] == YEAR].reset_index(drop=True)
    previous = declarations.loc[declarations["year"] != YEAR].reset_index(drop=True)
    villages_gdf = gpd.GeoDataFrame({"village": [_VILLAGES[x["index"]] for x in lands]},
                                    geometry=[x["boundary"] for x in lands], crs=CRS)
    truth = pd.DataFrame(b.truth, columns=["rule", "subject_id", "note"])
    truth = truth.drop_duplicates(["rule", "subject_id"]).reset_index(drop=True)
    return FarmlandDemo(parcels=parcels.drop(columns="village"),
                        land_use=_land_use(lands, patches), declarations=current,
                        previous=previous, persons=pd.DataFrame(persons), truth=truth,
                        villages=villages_gdf, notes=notes)


def _households(b: _Builder, land: dict[str, Any], parcels: gpd.GeoDataFrame,
                eligible_mu: pd.Series, households: int, rng: np.random.Generator,
                persons: list[dict[str, Any]], patches: list[tuple[str, Any]],
                note: Any, name: Any) -> None:
    """One village's households, their declarations of every year, and the injections."""
    v = land["index"]
    village = _VILLAGES[v]
    codes = list(parcels.loc[parcels["village"] == village, "parcel_id"])
    order = [codes[i] for i in rng.permutation(len(codes))]
    hh = [f"A{v + 1}{k:03d}" for k in range(1, households + 1)]
    grower = hh[0]  # the large grain grower (种粮大户) of the village
    holdings: dict[str, list[str]] = {}
    pos = 0
    for a in hh:
        count = 15 if a == grower else int(rng.integers(2, 5))
        holdings[a] = order[pos:pos + count]
        pos += count
    reserve = order[pos:]
    owner = {pid: a for a, pids in holdings.items() for pid in pids}
    drawn_mode = {a: bool(rng.random() < 0.35) for a in hh}
    people = {}
    for a in hh:
        people[a] = {"person_id": a, "name": name(), "died_on": None, "is_official": "否",
                     "unit": village, "moved_in_on": None, "moved_out_on": None}
        persons.append(people[a])

    # Households for the injected misuse: plain ones, each used once.
    free = [hh[1:][i] for i in rng.permutation(len(hh) - 1)]

    def pick(want: Any = None) -> str:
        for cand in free:
            if want is None or want(cand):
                free.remove(cand)
                return cand
        msg = "demo: not enough households for the injected misuse"
        raise RuntimeError(msg)

    def items_of(a: str, *, drawn: bool | None = None) -> list[dict[str, Any]]:
        mode = drawn_mode[a] if drawn is None else drawn
        return [{"pid": pid, "area": float(eligible_mu[pid]),
                 "geom": _shrunk(b.geometry(pid)) if mode else None}
                for pid in holdings[a]]

    plan: dict[tuple[str, int], list[dict[str, Any]]] = {}

    def every_year(a: str, items: list[dict[str, Any]],
                   years: tuple[int, ...] = (*PREVIOUS_YEARS, YEAR)) -> None:
        for y in years:
            plan[(a, y)] = [dict(it) for it in items]

    # over_declared: by code, a parcel split into two declarations (first village) or by
    # code, by drawing; the same in the years before, so no year-on-year change appears.
    for case in ("code", "split" if v == 0 else "code", "drawn"):
        a = pick(lambda c: len(holdings[c]) <= 3)
        total = sum(b.eligible_m2(p) for p in holdings[a])
        items = items_of(a, drawn=case == "drawn")
        target = max(holdings[a], key=b.eligible_m2)
        i = holdings[a].index(target)
        geom = b.geometry(target)
        excess = max(0.15 * total, 400.0)  # the applicant's excess well above 3 %
        if case == "drawn":
            drawing = _shrunk(geom)
            found = shapely.area(drawing) * b.eligible_m2(target) / shapely.area(geom)
            tol = min(1.25 * shapely.length(drawing), 10000.0)
            items[i] = {"pid": target, "geom": drawing,
                        "area": _ceil2(_mu(found + tol + excess)), "expect": ["over_declared"]}
        elif case == "split":
            tol = min(1.25 * shapely.length(geom), 10000.0)
            each = _ceil2(_mu(b.eligible_m2(target) / 2 + tol + excess / 2))
            items[i] = {"pid": target, "geom": None, "area": each, "expect": ["over_declared"]}
            items.insert(i + 1, dict(items[i]))
        else:
            tol = min(1.25 * shapely.length(geom), 10000.0)
            items[i] = {"pid": target, "geom": None,
                        "area": _ceil2(_mu(b.eligible_m2(target) + tol + excess)),
                        "expect": ["over_declared"]}
        every_year(a, items)
        b.expect("over_declared", a, f"applicant: {case} over-declaration")
        note("over_declared", a, case, target)

    # outside_reference: a 2025 drawing reaching beyond the village's registered land,
    # declared at the contract area; the years before declared by code.
    edge = {pid for pid in codes
            if shapely.distance(b.geometry(pid), land["boundary"].exterior) < 0.05
            and shapely.get_y(shapely.centroid(b.geometry(pid)))
            > land["centre"][1] + 0.30 * land["size"][1]}
    chosen: list[Any] = []
    for _ in range(2):
        def apart(c: str) -> bool:  # drawings beyond the edge must not meet each other
            return any(p in edge and all(shapely.distance(b.geometry(p), g) > 100.0
                                         for g in chosen) for p in holdings[c])

        a = pick(apart)
        target = next(p for p in holdings[a] if p in edge and all(
            shapely.distance(b.geometry(p), g) > 100.0 for g in chosen))
        chosen.append(b.geometry(target))
        geom = b.geometry(target)
        outside = shapely.difference(shapely.buffer(geom, 30.0),
                                     shapely.buffer(land["boundary"], 0.5))
        drawing = shapely.union(_shrunk(geom), outside)
        every_year(a, items_of(a, drawn=False), PREVIOUS_YEARS)
        items = items_of(a, drawn=False)
        i = holdings[a].index(target)
        items[i] = {**items[i], "geom": drawing, "expect": ["outside_reference"]}
        plan[(a, YEAR)] = items
        note("outside_reference", a, target,
             round(float(shapely.area(outside) / shapely.area(drawing)), 3))

    # double_claim (1): a 2025 drawing that takes a strip of the neighbour's parcel.
    def neighbour_of(c: str) -> tuple[str, str, str] | None:
        for pid in holdings[c]:
            for other in codes:
                o = owner.get(other)
                if o is None or o == c or o not in free:
                    continue
                shared = shapely.intersection(shapely.buffer(b.geometry(pid), 0.05),
                                              b.geometry(other).boundary)
                if shapely.length(shared) > 20.0:
                    return pid, other, o
        return None

    a = pick(lambda c: neighbour_of(c) is not None)
    mine, other, victim = neighbour_of(a)
    free.remove(victim)
    strip = shapely.intersection(b.geometry(other), shapely.buffer(b.geometry(mine), 20.0))
    every_year(a, items_of(a, drawn=False), PREVIOUS_YEARS)
    items = items_of(a, drawn=False)
    i = holdings[a].index(mine)
    items[i] = {"pid": mine, "geom": shapely.union(_shrunk(b.geometry(mine)), strip),
                "area": _floor2(_mu(b.eligible_m2(mine) + shapely.area(strip))),
                "pair_with": (victim, other)}
    plan[(a, YEAR)] = items
    note("double_claim", a, "strip", mine, victim, other)

    # double_claim (2): a second household declares another household's parcel code in 2025
    # (a small holder, so that the extra parcel does not make a big recipient).
    a = pick(lambda c: len(holdings[c]) <= 2)
    victim = pick()
    other = holdings[victim][0]
    every_year(a, items_of(a), PREVIOUS_YEARS)
    plan[(a, YEAR)] = [*items_of(a), {"pid": other, "geom": None,
                                      "area": float(eligible_mu[other]),
                                      "pair_with": (victim, other)}]
    note("double_claim", a, "code", other, victim)

    # non_farmland: new buildings, a dug fish pond, a tree nursery on registered parcels;
    # a greenhouse (设施农用地 is farm use) is a distractor.
    for label, share in (("建设用地", 0.35), ("坑塘水面", 0.5), ("林地", 0.6), ("设施农用地", 0.4)):
        a = pick()
        target = max(holdings[a], key=b.eligible_m2)
        patches.append((label, _patch(b.geometry(target), share)))
        if label != "设施农用地":
            items = items_of(a)
            items[holdings[a].index(target)]["expect"] = ["non_farmland"]
            plan[(a, YEAR)] = items
        note("non_farmland", a, target, label)

    # deceased_applicant: registered deaths before 2025; one in February 2025 (no alert).
    for died in ("2023-08-14", "2024-12-31") if v != 1 else ("2022-11-30",):
        a = pick()
        people[a]["died_on"] = died
        b.expect("deceased_applicant", a, f"died on {died}")
    people[pick()]["died_on"] = "2025-02-10"

    # official_applicant
    a = pick()
    people[a].update(is_official="是", unit=("肥西县农业农村局", "柏堰村村委会", "长岗村村委会")[v])
    b.expect("official_applicant", a, str(people[a]["unit"]))

    # claim_frequency (1): one household's parcels declared as 22 strips in 2025.
    if v == 0:
        a = pick(lambda c: len(holdings[c]) >= 3)
        every_year(a, items_of(a, drawn=False), PREVIOUS_YEARS)
        plan[(a, YEAR)] = _strips(b, holdings[a], 22)
        b.expect("claim_frequency", a, "22 declarations")
        note("claim_frequency", a, "22 strips")

    # claim_frequency (2): a spare parcel declared by another household every year.
    if reserve:
        spare = reserve[0]
        trio = [pick(lambda c: len(holdings[c]) <= 2) for _ in range(3)]
        for year, a in zip((*PREVIOUS_YEARS, YEAR), trio, strict=True):
            every_year(a, items_of(a))
            plan[(a, year)] = [*items_of(a), {"pid": spare, "geom": None,
                                              "area": float(eligible_mu[spare])}]
        b.expect("claim_frequency", spare, f"declared by {', '.join(trio)}")
        note("claim_frequency", spare, *trio)

    # year_change: the declared area up from 60 % (by code); a drawing moved within the
    # parcel (same area).
    for kind in ("area", "drawing"):
        a = pick()
        target = max(holdings[a], key=b.eligible_m2)
        i = holdings[a].index(target)
        elig = float(eligible_mu[target])
        before = items_of(a, drawn=kind == "drawing")
        after = items_of(a, drawn=kind == "drawing")
        if kind == "area":
            before[i] = {"pid": target, "geom": None, "area": _floor2(0.6 * elig)}
            after[i] = {"pid": target, "geom": None, "area": elig, "expect": ["year_change"]}
        else:
            drawing = _shrunk(b.geometry(target))
            west, east = _ends(drawing, 0.65)
            area = _floor2(_mu(0.65 * shapely.area(drawing) * b.eligible_m2(target)
                               / shapely.area(b.geometry(target))))
            before[i] = {"pid": target, "geom": west, "area": area}
            after[i] = {"pid": target, "geom": east, "area": area, "expect": ["year_change"]}
        every_year(a, before, PREVIOUS_YEARS)
        plan[(a, YEAR)] = after
        note("year_change", a, kind, target)

    b.expect("big_recipient", grower, f"{len(holdings[grower])} parcels")
    note("big_recipient", grower)

    # Every household's declarations, every year; then the truth of the 2025 ones.
    written: dict[tuple[str, int], list[tuple[str, dict[str, Any]]]] = {}
    for year in (*PREVIOUS_YEARS, YEAR):
        for a in hh:
            items = plan.get((a, year)) or items_of(a)
            written[(a, year)] = [
                (b.declare(a, village, year, pid=it["pid"], area_mu=it["area"],
                           geom=it["geom"]), it) for it in items]
    for a in hh:
        for did, it in written[(a, YEAR)]:
            for rule in it.get("expect", ()):
                b.expect(rule, did, f"{rule} on parcel {it['pid']}")
            if "pair_with" in it:
                victim, pid = it["pair_with"]
                other = next(d for d, x in written[(victim, YEAR)] if x["pid"] == pid)
                b.expect("double_claim", "|".join(sorted((did, other))),
                         f"{a} and {victim} on parcel {pid}")


def _patch(geom: Any, share: float) -> Any:
    """A compact part of ``geom`` of about ``share`` of its area (around one end)."""
    minx, miny, maxx, maxy = shapely.bounds(geom)
    lo, hi = miny, maxy
    target = share * shapely.area(geom)
    for _ in range(40):  # bisection on the cut line (a handful of scalar steps)
        mid = (lo + hi) / 2.0
        part = shapely.intersection(geom, shapely.box(minx - 1, miny - 1, maxx + 1, mid))
        if shapely.area(part) < target:
            lo = mid
        else:
            hi = mid
    return shapely.intersection(geom, shapely.box(minx - 1, miny - 1, maxx + 1, hi))


def _ends(geom: Any, share: float) -> tuple[Any, Any]:
    """The west and the east part of ``geom``, each about ``share`` of its area."""
    rotated = shapely.affinity.rotate(geom, 90.0, origin="centroid")
    south = shapely.affinity.rotate(_patch(rotated, share), -90.0, origin=shapely.centroid(
        rotated))
    mirrored = shapely.affinity.rotate(geom, -90.0, origin="centroid")
    north = shapely.affinity.rotate(_patch(mirrored, share), 90.0, origin=shapely.centroid(
        mirrored))
    return (_polygons(shapely.intersection(geom, south.buffer(0.001))),
            _polygons(shapely.intersection(geom, north.buffer(0.001))))


def _polygons(geom: Any) -> Any:
    """The polygonal part of an intersection (touching lines and points dropped)."""
    parts = shapely.get_parts(geom)
    polys = parts[np.isin(shapely.get_type_id(parts), (3, 6))]
    return shapely.union_all(polys) if len(polys) != 1 else polys[0]


def _strips(b: _Builder, pids: list[str], total: int) -> list[dict[str, Any]]:
    """Cut a household's parcels into ``total`` drawn strips (declared at their share)."""
    areas = np.array([b.eligible_m2(p) for p in pids])
    counts = np.maximum(1, np.round(areas / areas.sum() * total).astype(int))
    counts[np.argmax(counts)] += total - counts.sum()
    items = []
    for pid, n in zip(pids, counts, strict=True):
        geom = _shrunk(b.geometry(pid))
        minx, miny, maxx, maxy = shapely.bounds(geom)
        edges = np.linspace(minx, maxx, n + 1)
        boxes = shapely.box(edges[:-1], miny - 1, edges[1:], maxy + 1)
        parts = shapely.intersection(geom, boxes)
        density = b.eligible_m2(pid) / shapely.area(b.geometry(pid))
        for part in parts:
            items.append({"pid": pid, "geom": part,
                          "area": _floor2(_mu(shapely.area(part) * density))})
    return items


def _land_use(lands: list[dict[str, Any]], patches: list[tuple[str, Any]]) -> gpd.GeoDataFrame:
    labels: list[str] = []
    geoms: list[Any] = []
    patch_union = shapely.union_all([g for _, g in patches]) if patches else None
    for land in lands:
        for label, geom in land["nonfarm"].items():
            if not shapely.is_empty(geom):
                labels.append(label)
                geoms.append(geom)
        farmland = land["farmland"]
        if patch_union is not None:
            farmland = shapely.difference(farmland, patch_union)
        labels.append("耕地")
        geoms.append(farmland)
    for label, geom in patches:
        labels.append(label)
        geoms.append(geom)
    return gpd.GeoDataFrame({"land_use": labels}, geometry=gpd.GeoSeries(geoms, crs=CRS),
                            crs=CRS)


# ---------------------------------------------------------------------------------------------
# Files and the scenario
# ---------------------------------------------------------------------------------------------


def write_demo_inputs(demo: FarmlandDemo, folder: str | Path) -> dict[str, str]:
    """Write the demo inputs with their source column names; returns input -> path.

    Parcels, declarations and previous declarations as GeoPackage in EPSG:4548, the
    land-use layer as GeoPackage in CGCS2000 longitude/latitude (EPSG:4490), the
    persons registry as CSV, and a ``geosup.toml`` with the column mapping.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def renamed(frame: pd.DataFrame, name: str) -> pd.DataFrame:
        mapping = {canonical: source for canonical, source in COLUMNS[name].items()
                   if canonical in frame.columns}
        return frame.rename(columns=mapping)

    paths = {
        "declarations": folder / "declarations_2025.gpkg",
        "previous": folder / "declarations_2023_2024.gpkg",
        "parcels": folder / "contract_parcels.gpkg",
        "land_use": folder / "land_use_2024.gpkg",
        "persons": folder / "persons.csv",
    }
    for path in paths.values():
        path.unlink(missing_ok=True)
    renamed(demo.declarations, "declarations").to_file(paths["declarations"],
                                                        layer="declarations", engine="pyogrio")
    renamed(demo.previous, "previous").to_file(paths["previous"], layer="declarations",
                                                engine="pyogrio")
    renamed(demo.parcels, "parcels").to_file(paths["parcels"], layer="parcels",
                                              engine="pyogrio")
    renamed(demo.land_use.to_crs(4490), "land_use").to_file(paths["land_use"],
                                                            layer="land_use", engine="pyogrio")
    renamed(demo.persons, "persons").to_csv(paths["persons"], index=False, encoding="utf-8")
    lines = ['area_unit = "mu"', ""]
    for name, mapping in COLUMNS.items():
        lines.append(f"[columns.{name}]")
        lines.extend(f'{canonical} = "{source}"' for canonical, source in mapping.items())
        lines.append("")
    (folder / "geosup.toml").write_text("\n".join(lines), encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}


@scenario("farmland")
def farmland_scenario(store: Store, folder: Path, settings: Settings) -> ScenarioResult:
    """Build the farmland demo in ``folder/farmland``, reconcile it into ``store``."""
    demo = build_demo()
    paths = write_demo_inputs(demo, Path(folder) / "farmland")
    timezone = str(settings.get("timezone") or "Asia/Shanghai")
    described = [describe_input(p, name=n) for n, p in paths.items()]
    with warnings.catch_warnings():
        # The demo's repairs (precision grid, polygonal parts) go to the 'repairs' layer.
        warnings.simplefilter("ignore", GeometryRepairWarning)
        inputs = read_inputs(paths, columns=COLUMNS, timezone=timezone)
        with store.run("demo farmland", inputs=described,
                       params={"area_unit": "mu", "engine": "inprocess", "seed": 20250}) as run:
            result = reconcile(inputs.get("declarations"), inputs.get("parcels"),
                               land_use=inputs.get("land_use"), persons=inputs.get("persons"),
                               previous=inputs.get("previous"), area_unit="mu",
                               settings=settings, run_id=run.run_id)
            write_run(run, inputs, result)
    log.info("farmland demo: %d alerts", len(result.alerts))
    return ScenarioResult(name="farmland", inputs=combined_counts(inputs, result),
                          truth=demo.truth.loc[:, ["rule", "subject_id"]],
                          alerts=len(result.alerts))
