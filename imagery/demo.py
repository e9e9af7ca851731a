"""The requisition demo scenario: a synthetic orthophoto series around a notice date.

:func:`build_demo` draws a small farming village east of Hefei, Anhui (about 1.6 × 1.4 km,
0.5 m pixels, CGCS2000 / 3-degree Gauss-Krüger CM 117E, EPSG:4548): fields of crops, bare
soil and grass separated by field roads, a county road, a village of houses with yards, a
block of plastic greenhouses, an orchard and a fish pond. Three RGBN orthophotos are made of
it: one in October 2023 and one in February 2024 (both 8-bit, the archive), and one in June
2024 (16-bit, another camera: a different gain and offset, greener crops, some fields
harvested or sown), around a requisition notice published on 15 March 2024. The June image
misses a strip along the east edge (nodata).

Claims (compensation for what stood on the land at the notice date) are filed for the
village's plots and fields. Most are honest; misuse is injected for every rule, and the
truth table lists, per rule, the claims it must flag:

- ``built_after_notice``: houses drawn after the notice on empty plots, and greenhouses on
  crop fields, inside building/greenhouse claims (these also claim structures the February
  image does not show, so ``claimed_not_seen`` flags them too);
- ``claimed_not_seen``: honest existing houses claimed at about three times their footprint;
- ``planted_after_notice``: trees planted on bare fields after the notice inside tree claims;
- ``deceased_claimant``: claimants the registry records as dead before the notice (one who
  died after it must not fire);
- ``moved_in_after_notice``: claimants who moved in after the notice (one who moved in years
  before must not fire).

A claim half in the June image's nodata strip is inconclusive (kept, not scored). Four rows
cannot be used and go to the rejects ledger: a claim outside every image, an unknown item,
an unknown project, and a claim without geometry. The images are written as tiled
GeoTIFFs with their acquisition dates in ``TIFFTAG_DATETIME`` (file names carry none), the
claims, projects and persons registry beside them in ``DIR/requisition/``.

Examples
--------
>>> demo = build_demo(size_m=(400, 300))
>>> demo.before.shape, demo.before.dtype, demo.after.dtype
((4, 600, 800), dtype('uint8'), dtype('uint16'))
>>> sorted(demo.truth["rule"].unique())[:2]
['requisition.built_after_notice', 'requisition.claimed_not_seen']
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import rasterio
import rasterio.features
import shapely
from affine import Affine
from numpy.typing import NDArray

from geosup.config import Settings
from geosup.demo import ScenarioResult, scenario
from geosup.store import Store, describe_input
from imagery.catalog import Catalog, ImageEntry
from imagery.compare import combined_counts, compare, read_inputs, write_run

__all__ = [
    "CRS",
    "DATES",
    "NOTICE_DATE",
    "RequisitionDemo",
    "build_demo",
    "requisition_scenario",
    "write_demo_inputs",
]

log = logging.getLogger(__name__)

#: The demo's metric CRS (CGCS2000 / 3-degree Gauss-Kruger CM 117E).
CRS = pyproj.CRS.from_epsg(4548)
#: Where the scene's north-west corner lies (lon/lat, east of Hefei).
ORIGIN_LONLAT = (117.42, 31.88)
#: The requisition notice (freeze) date.
NOTICE_DATE = dt.date(2024, 3, 15)
#: Acquisition dates of the orthophotos: archive, last before the notice, first after.
DATES: dict[str, dt.date] = {"archive": dt.date(2023, 10, 12),
                             "before": dt.date(2024, 2, 20),
                             "after": dt.date(2024, 6, 8)}
PIXEL = 0.5

# Land-cover classes and their 8-bit RGBN values in winter (before) and June (after).
CROPS, BARE, GRASS, ROAD, ROOF, TILE, GREENHOUSE, TREES, WATER = range(9)
_WINTER = np.array([
    [52, 78, 44, 150],     # winter wheat
    [122, 104, 86, 146],   # bare soil
    [78, 100, 60, 138],    # grass
    [96, 96, 102, 106],    # asphalt road
    [168, 168, 162, 172],  # concrete roof
    [150, 78, 62, 150],    # tile roof
    [214, 220, 221, 210],  # greenhouse film
    [38, 62, 36, 176],     # tree crowns
    [34, 48, 54, 16],      # water
], dtype=np.float32)
# June: the same surfaces a little different (crops and grass slightly greener); the
# larger part of the difference is the other camera (_GAIN, _OFFSET).
_JUNE = _WINTER.copy()
_JUNE[CROPS] += [-1, 1, -1, 3]
_JUNE[GRASS] += [-1, 1, -1, 2]
_JUNE[TREES] += [-1, 1, -1, 3]
_JUNE[BARE] += [1, 1, 1, 1]
# The June camera: 12-bit-ish values in 16-bit files.
_GAIN = np.array([3.7, 3.9, 4.1, 3.6], np.float32)
_OFFSET = np.array([40, 35, 30, 60], np.float32)

_SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹")
_GIVEN = ("建国", "秀英", "志强", "桂兰", "德胜", "玉梅", "小平", "春华", "国庆", "丽娟",
          "长林", "凤英", "家宝", "文明", "海燕", "立新", "永福", "淑珍", "明亮", "金花")


@dataclass
class RequisitionDemo:
    """The demo's rasters, vector inputs and the alerts they must produce."""

    transform: Affine
    archive: NDArray[np.uint8]
    before: NDArray[np.uint8]
    after: NDArray[np.uint16]
    claims: gpd.GeoDataFrame
    projects: gpd.GeoDataFrame
    persons: pd.DataFrame
    truth: pd.DataFrame


class _Scene:
    """Shapes with a class, burned in order (the last one drawn wins)."""

    def __init__(self) -> None:
        self.shapes: list[tuple[Any, int]] = []

    def add(self, geoms: Any, cls: int) -> None:
        for g in np.atleast_1d(geoms):
            if g is not None and not shapely.is_empty(g):
                self.shapes.append((g, cls))


def _trees(rng: np.random.Generator, area: Any, spacing: float, radius: float) -> Any:
    """Round crowns on a jittered grid inside ``area``."""
    x0, y0, x1, y1 = shapely.bounds(area)
    xs, ys = np.meshgrid(np.arange(x0 + spacing / 2, x1, spacing),
                         np.arange(y0 + spacing / 2, y1, spacing))
    pts = shapely.points(xs.ravel() + rng.uniform(-0.6, 0.6, xs.size),
                         ys.ravel() + rng.uniform(-0.6, 0.6, xs.size))
    crowns = shapely.buffer(pts, radius * rng.uniform(0.85, 1.15, xs.size), quad_segs=4)
    return crowns[shapely.within(crowns, area)]


def _render(scene: _Scene, shape: tuple[int, int], transform: Affine, values: NDArray[Any],
            field_shift: NDArray[np.float32], field_id: NDArray[np.int32],
            rng: np.random.Generator) -> NDArray[np.float32]:
    classes = rasterio.features.rasterize(scene.shapes, out_shape=shape, transform=transform,
                                          fill=GRASS, dtype="uint8")
    img = values[classes].transpose(2, 0, 1).copy()  # (4, h, w)
    fields = classes == CROPS
    img[:, fields] += field_shift[:, field_id[fields]]
    img += rng.normal(0.0, 2.5, img.shape).astype(np.float32)
    return img


def build_demo(*, seed: int = 20240315, size_m: tuple[float, float] = (1600.0, 1400.0)
               ) -> RequisitionDemo:
    """Draw the landscape, the three orthophotos, the claims, projects and persons.

    Parameters
    ----------
    seed : int
        Seed of every random choice (the demo is reproducible).
    size_m : (float, float)
        Width and height of the scene in metres.
    """
    rng = np.random.default_rng(seed)
    width_m, height_m = size_m
    w, h = round(width_m / PIXEL), round(height_m / PIXEL)
    to_gk = pyproj.Transformer.from_crs(4490, CRS, always_xy=True)
    ox, oy = to_gk.transform(*ORIGIN_LONLAT)
    ox, oy = math.floor(ox / 10) * 10, math.floor(oy / 10) * 10
    transform = Affine(PIXEL, 0, ox, 0, -PIXEL, oy)

    def box(x0: float, y0: float, x1: float, y1: float) -> Any:
        """A box in scene metres (x east, y south from the north-west corner)."""
        return shapely.box(ox + x0, oy - y1, ox + x1, oy - y0)

    fx, fy = width_m / 1600.0, height_m / 1400.0  # layout scales with the scene
    before, after = _Scene(), _Scene()
    both = (before, after)

    # Fields of about 100 x 60 m: crops, bare or grass; some change between the dates.
    field_geoms, field_before, field_after = [], [], []
    for y in np.arange(0, height_m, 60.0):
        for x in np.arange(0, width_m, 100.0):
            field_geoms.append(box(x, y, x + 100, y + 60))
            c = rng.choice([CROPS, CROPS, CROPS, BARE, GRASS])
            field_before.append(c)
            r = rng.random()
            field_after.append(BARE if c == CROPS and r < 0.15 else
                               CROPS if c == BARE and r < 0.4 else c)
    field_id = rasterio.features.rasterize(
        [(g, i) for i, g in enumerate(field_geoms)], out_shape=(h, w), transform=transform,
        fill=0, dtype="int32")
    shift_b = rng.normal(0, 4, (4, len(field_geoms))).astype(np.float32)
    shift_a = shift_b + rng.normal(0, 2, shift_b.shape).astype(np.float32)
    for g, cb, ca in zip(field_geoms, field_before, field_after, strict=True):
        before.add(g, int(cb))
        after.add(g, int(ca))

    # Roads: a county road east-west and north-south, field roads every 120 m.
    for s in both:
        s.add(box(0, 700 * fy - 3.5, width_m, 700 * fy + 3.5), ROAD)
        s.add(box(800 * fx - 3.5, 0, 800 * fx + 3.5, height_m), ROAD)
        for y in np.arange(120.0, height_m, 120.0):
            s.add(box(0, y - 1.75, width_m, y + 1.75), ROAD)
        s.add(shapely.buffer(shapely.Point(ox + 380 * fx, oy - 300 * fy), 55 * min(fx, fy)),
              WATER)

    claims: list[dict[str, Any]] = []
    truth: list[tuple[str, str]] = []
    persons: list[dict[str, Any]] = []

    def person(**extra: Any) -> str:
        pid = f"R{len(persons) + 1:03d}"
        name = str(rng.choice(list(_SURNAMES))) + str(rng.choice(list(_GIVEN)))
        persons.append({"person_id": pid, "name": name,
                        "moved_in_on": f"{rng.integers(1975, 2015)}-0{rng.integers(1, 9)}-1"
                        f"{rng.integers(0, 9)}", **extra})
        return pid

    def claim(geom: Any, item: str, claimed: float, *, rules: tuple[str, ...] = (),
              claimant: str | None = None, project: str = "P-2024-07", rate: float) -> str:
        cid = f"Q{len(claims) + 1:04d}"
        claims.append({"claim_id": cid, "project_id": project,
                       "claimant_id": claimant or person(), "item": item,
                       "claimed_area_m2": round(claimed, 1), "amount": round(claimed * rate, 2),
                       "geometry": geom})
        truth.extend((f"requisition.{r}", cid) for r in rules)
        return cid

    # The village: plots of 25 x 30 m with a house (10 x 12 m) and a grass yard.
    vx0, vy0 = 840 * fx, 720 * fy
    plots = []
    for j in range(max(1, int(5 * fy))):
        for i in range(max(1, int(16 * fx))):
            x, y = vx0 + 30 * i, vy0 + 36 * j
            plots.append((x, y))
    order = rng.permutation(len(plots))
    kinds = (["rush_house"] * 4 + ["inflated"] * 3 + ["empty"] * 3
             + ["honest"] * (len(plots) - 10))
    rush_house = inflated = honest_n = 0
    for k, idx in enumerate(order):
        x, y = plots[idx]
        plot = box(x, y, x + 25, y + 30)
        house = box(x + 7, y + 3, x + 17 + (k % 3), y + 15)
        roof = TILE if k % 2 else ROOF
        for s in both:
            s.add(plot, GRASS)
        kind = kinds[k] if k < len(kinds) else "honest"
        foot = shapely.area(house)
        if kind == "rush_house":
            after.add(house, roof)
            claim(plot, "building", foot * rng.uniform(0.95, 1.1), rate=1500.0,
                  rules=("built_after_notice", "claimed_not_seen"))
            rush_house += 1
        elif kind == "empty":
            continue
        else:
            for s in both:
                s.add(house, roof)
            if kind == "inflated":
                claim(plot, "building", foot * rng.uniform(2.8, 3.4), rate=1500.0,
                      rules=("claimed_not_seen",))
                inflated += 1
            elif honest_n < 14:
                claim(plot, "building", foot * rng.uniform(0.92, 1.1), rate=1500.0)
                honest_n += 1

    # Greenhouses: existing rows, and new ones on crop fields after the notice.
    gx0, gy0 = 100 * fx, 760 * fy
    for i in range(max(2, int(8 * fx))):
        x = gx0 + 50 * i
        field = box(x, gy0, x + 40, gy0 + 50)
        film = box(x + 4, gy0 + 5, x + 14, gy0 + 45)
        for s in both:
            s.add(field, CROPS)
        if i % 3 == 1:
            after.add(film, GREENHOUSE)
            claim(field, "greenhouse", shapely.area(film) * rng.uniform(0.95, 1.1), rate=120.0,
                  rules=("built_after_notice", "claimed_not_seen"))
        else:
            for s in both:
                s.add(film, GREENHOUSE)
            claim(field, "greenhouse", shapely.area(film) * rng.uniform(0.95, 1.1), rate=120.0)

    # An orchard (honest tree claims) and bare fields planted after the notice.
    ox0, oy0 = 100 * fx, 1060 * fy
    for i in range(max(2, int(6 * fx))):
        x = ox0 + 45 * i
        block = box(x, oy0, x + 40, oy0 + 40)
        crowns = _trees(rng, block, 5.0, 1.8)
        for s in both:
            s.add(block, GRASS)
            s.add(crowns, TREES)
        if i % 2 == 0:
            claim(block, "trees", shapely.area(block), rate=40.0)
    tx0, ty0 = 900 * fx, 1080 * fy
    for i in range(max(2, int(8 * fx))):
        x = tx0 + 45 * i
        block = box(x, ty0, x + 40, ty0 + 40)
        for s in both:
            s.add(block, BARE)
        if i % 2 == 0:
            after.add(_trees(rng, block, 4.0, 1.6), TREES)
            claim(block, "trees", shapely.area(block), rate=40.0,
                  rules=("planted_after_notice",))
        else:
            claim(block, "crops", shapely.area(block), rate=3.0)  # still bare: honest
    # Honest crop claims on fields that stay crops.
    stay = [i for i, (cb, ca) in enumerate(zip(field_before, field_after, strict=True))
            if cb == CROPS and ca == CROPS]
    for i in rng.choice(stay, size=min(6, len(stay)), replace=False):
        g = shapely.intersection(field_geoms[i], box(0, 0, width_m, height_m))
        inner = shapely.buffer(g, -6.0)  # off the field roads
        if not shapely.is_empty(inner):
            claim(inner, "crops", shapely.area(inner), rate=3.0)

    # Claimants: two recorded dead before the notice, one after; two moved in after it.
    honest = [c for c in claims if not any(t[1] == c["claim_id"] for t in truth)]
    pick = [honest[i] for i in rng.choice(len(honest), size=5, replace=False)]
    by_id = {p["person_id"]: p for p in persons}
    for c, died in zip(pick[:3], ("2023-11-02", "2022-06-30", "2024-05-01"), strict=True):
        by_id[c["claimant_id"]]["died_on"] = died
        if died < NOTICE_DATE.isoformat():
            truth.append(("requisition.deceased_claimant", c["claim_id"]))
    for c, moved in zip(pick[3:], ("2024-04-10", "2024-05-20"), strict=True):
        by_id[c["claimant_id"]]["moved_in_on"] = moved
        truth.append(("requisition.moved_in_after_notice", c["claim_id"]))

    # The nodata strip of the June image and a claim half in it (inconclusive).
    strip = 40.0
    nx = width_m - strip - 12
    edge_plot = box(nx, 720 * fy, nx + 36, 750 * fy)
    for s in both:
        s.add(edge_plot, GRASS)
        s.add(box(nx + 5, 724 * fy, nx + 15, 736 * fy), ROOF)
    claim(edge_plot, "building", 120.0, rate=1500.0)

    # Unusable rows: outside every image, unknown item, unknown project, no geometry.
    far = shapely.box(ox + 5000, oy + 5000, ox + 5030, oy + 5030)
    claim(far, "building", 100.0, rate=1500.0)
    claim(box(10, 10, 40, 40), "鱼塘", 900.0, rate=10.0)
    claim(box(50, 10, 80, 40), "crops", 900.0, rate=3.0, project="P-1999-01")
    claim(None, "building", 100.0, rate=1500.0)

    shape = (h, w)
    img_before = _render(before, shape, transform, _WINTER, shift_b, field_id, rng)
    img_archive = _render(before, shape, transform, _WINTER * 0.97 + 4, shift_b, field_id, rng)
    img_after = _render(after, shape, transform, _JUNE, shift_a, field_id, rng)
    img_after = img_after * _GAIN[:, None, None] + _OFFSET[:, None, None]
    img_after[:, :, w - round(strip / PIXEL):] = 0
    to8 = lambda a: np.clip(np.rint(a), 1, 255).astype(np.uint8)  # noqa: E731
    after16 = np.clip(np.rint(img_after), 0, 65535).astype(np.uint16)

    claims_frame = gpd.GeoDataFrame(pd.DataFrame(claims), geometry="geometry", crs=CRS)
    project = gpd.GeoDataFrame(
        {"project_id": ["P-2024-07"], "name": ["东部新城片区征收"],
         "notice_date": [NOTICE_DATE.isoformat()]},
        geometry=[box(0, 0, width_m, height_m)], crs=CRS)
    persons_frame = pd.DataFrame(persons)
    for col in ("died_on", "moved_in_on"):
        if col not in persons_frame.columns:
            persons_frame[col] = None
    truth_frame = pd.DataFrame(truth, columns=["rule", "subject_id"])
    return RequisitionDemo(transform=transform, archive=to8(img_archive), before=to8(img_before),
                           after=after16, claims=claims_frame, projects=project,
                           persons=persons_frame.loc[:, ["person_id", "name", "died_on",
                                                         "moved_in_on"]],
                           truth=truth_frame)


def _write_image(path: Path, data: NDArray[Any], transform: Affine, day: dt.date) -> Path:
    prof = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": 4,
            "dtype": data.dtype.name, "crs": CRS, "transform": transform, "nodata": 0,
            "tiled": True, "blockxsize": 512, "blockysize": 512, "photometric": "RGB",
            "compress": "zstd", "zstd_level": 1, "predictor": 2}
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        dst.update_tags(TIFFTAG_DATETIME=f"{day:%Y:%m:%d} 10:30:00")
        for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
            dst.set_band_description(i, name)
    return path


def write_demo_inputs(demo: RequisitionDemo, folder: str | Path) -> dict[str, Any]:
    """Write the orthophotos, claims, projects and persons into ``folder``.

    Returns
    -------
    dict
        ``images`` (list of paths, date order) and ``claims``, ``projects``, ``persons``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images = [
        _write_image(folder / "ortho_archive.tif", demo.archive, demo.transform,
                     DATES["archive"]),
        _write_image(folder / "ortho_winter.tif", demo.before, demo.transform, DATES["before"]),
        _write_image(folder / "ortho_summer.tif", demo.after, demo.transform, DATES["after"]),
    ]
    claims = folder / "claims.gpkg"
    demo.claims.to_file(claims, driver="GPKG", layer="claims", engine="pyogrio")
    projects = folder / "projects.gpkg"
    demo.projects.to_file(projects, driver="GPKG", layer="projects", engine="pyogrio")
    persons = folder / "persons.csv"
    demo.persons.to_csv(persons, index=False, encoding="utf-8")
    return {"images": images, "claims": claims, "projects": projects, "persons": persons}


@scenario("requisition")
def requisition_scenario(store: Store, folder: Path, settings: Settings) -> ScenarioResult:
    """Build the requisition demo in ``folder/requisition``, compare it into ``store``."""
    root = Path(folder) / "requisition"
    demo = build_demo()
    paths = write_demo_inputs(demo, root)
    timezone = str(settings.get("timezone") or "Asia/Shanghai")
    catalog = Catalog([ImageEntry.from_path(p) for p in paths["images"]])
    files = {k: paths[k] for k in ("claims", "projects", "persons")}
    inputs = read_inputs(files, timezone=timezone)
    described = ([describe_input(p, name=p.name) for p in paths["images"]]
                 + [describe_input(p, name=n) for n, p in files.items()])
    with store.run("demo requisition", inputs=described, params={"seed": 20240315}) as run:
        result = compare(catalog, inputs.get("claims"), projects=inputs.get("projects"),
                         persons=inputs.get("persons"), settings=settings,
                         workdir=root / "work", chips_dir=root / "chips",
                         chip_relative_to=folder, run_id=run.run_id)
        write_run(run, result, inputs=inputs, images=catalog)
    log.info("requisition demo: %d alerts, %d inconclusive claims", len(result.alerts),
             result.inconclusive)
    return ScenarioResult(name="requisition", inputs=combined_counts(inputs, result),
                          truth=demo.truth, alerts=len(result.alerts))
