"""Benchmark: the whole imagery compare (``imagery.compare.compare``) beside its peers.

A synthetic bi-temporal orthophoto pair (default 20,000 x 20,000 px x 4 bands uint16, tiled
COG, deflate) and claim parcels (default 100,000) are written to a temporary folder. Then,
in one process run:

* **ours**: :func:`imagery.compare.compare` exactly as ``geosup imagery compare`` runs it,
  with its defaults: alignment, the change indices with the built-up mask of the before
  image (one pass over both dates), the per-claim statistics (mean, q90 and share above
  threshold of every index, valid coverage), the rules, before/after PNG chips for the
  claims with image alerts (the default cap ``imagery.max_chips`` = 2000 is reached: the
  synthetic landscape is vegetated, so nearly every building claim alerts), the alert table
  and the ranking — wall and CPU time per stage, and peak memory (``ru_maxrss``). Only
  reading the claims file and writing the store are left out (not imagery work);
* **exactextract floor**: ``exact_extract`` computing plain per-band means of both dates for
  the same parcels (the I/O floor of any per-parcel raster check);
* **rasterstats**: ``zonal_stats`` means of the 8 bands on a random sample of parcels,
  extrapolated to all parcels.

Targets (issue 5): whole compare <= 90 s, peak <= 2 GiB, <= 2x the exactextract floor,
>= 10x faster than rasterstats.

Run::

    .venv/bin/python bench/imagery.py --size 8000 --parcels 16000
    .venv/bin/python bench/imagery.py            # full size: 20,000^2 px, 100,000 parcels

Peak memory is measured in a fresh child process per contender (``ru_maxrss`` of a child
is its own peak), so the generation step and the peers do not inflate ours.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import queue
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This file is named like the package it measures: keep its folder off the import path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

log = logging.getLogger("bench.imagery")

CRS = "EPSG:4547"  # CGCS2000 / 3-degree Gauss-Kruger CM 114E
RES = 0.5          # metres per pixel (an orthophoto)
X0, Y0 = 500_000.0, 2_500_000.0


def _texture(rng: np.random.Generator, h: int, w: int, row0: int, col0: int) -> np.ndarray:
    """A smooth, deterministic-by-position landscape (fields) plus sensor noise, 4 bands."""
    yy, xx = np.mgrid[row0:row0 + h, col0:col0 + w].astype(np.float32)
    field = (np.sin(xx / 97.0) * np.cos(yy / 131.0) + np.sin((xx + yy) / 53.0)) * 0.5
    base = np.stack([900 + 200 * field, 1000 + 250 * field, 800 + 150 * field,
                     2500 - 900 * field])
    return base + rng.normal(0, 25, base.shape).astype(np.float32)


def make_pair(root: Path, size: int, *, blocksize: int = 512) -> tuple[Path, Path]:
    """Write before/after tiled COGs of ``size`` x ``size`` px x 4 bands uint16."""
    import rasterio
    import rasterio.shutil
    from rasterio.transform import from_origin

    transform = from_origin(X0, Y0 + size * RES, RES, RES)
    prof = {"driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": "uint16",
            "crs": CRS, "transform": transform, "tiled": True, "blockxsize": blocksize,
            "blockysize": blocksize, "nodata": 0, "bigtiff": "YES", "compress": "deflate",
            "predictor": 2, "zlevel": 1, "num_threads": "ALL_CPUS"}
    out = []
    for name, date, gain, built in (("before", "2023-04-01", 1.0, False),
                                    ("after", "2024-04-01", 1.08, True)):
        tmp = root / f"{name}.tmp.tif"
        rng = np.random.default_rng(1 if built else 0)
        with rasterio.open(tmp, "w", **prof) as dst:
            dst.update_tags(ACQUISITIONDATE=date)
            for row in range(0, size, 2048):
                for col in range(0, size, 2048):
                    h, w = min(2048, size - row), min(2048, size - col)
                    data = _texture(rng, h, w, row, col) * gain + (30 if built else 0)
                    if built:  # new roofs: bright squares of 30-60 px on a coarse lattice
                        for r in range(row, row + h, 400):
                            for c in range(col, col + w, 400):
                                if rng.random() < 0.3:
                                    s = int(rng.integers(30, 60))
                                    rr, cc = r - row + 50, c - col + 50
                                    data[:, rr:rr + s, cc:cc + s] = np.array(
                                        [2600, 2500, 2400, 2200], np.float32)[:, None, None]
                    data[:, :, :] = np.clip(data, 1, 65535)
                    dst.write(data.astype("uint16"), window=((row, row + h), (col, col + w)))
        cog = root / f"{name}.tif"
        with rasterio.open(tmp) as src:
            rasterio.shutil.copy(src, cog, driver="COG", blocksize=blocksize, compress="DEFLATE",
                                 predictor=2, level=1, num_threads="ALL_CPUS", bigtiff="YES",
                                 overview_resampling="AVERAGE")
        tmp.unlink()
        out.append(cog)
    return out[0], out[1]


def make_parcels(path: Path, size: int, n: int, *, seed: int = 2) -> Path:
    """Random rectangular claims (10-30 m sides) over the scene, written as GeoParquet."""
    import geopandas as gpd
    import shapely

    rng = np.random.default_rng(seed)
    extent = size * RES
    w = rng.uniform(10, 30, n)
    h = rng.uniform(10, 30, n)
    x = X0 + rng.uniform(0, extent - w)
    y = Y0 + rng.uniform(0, extent - h)
    geoms = shapely.box(x, y, x + w, y + h)
    gdf = gpd.GeoDataFrame({"claim_id": [f"C{i:06d}" for i in range(n)]}, geometry=geoms,
                           crs=CRS)
    gdf.to_parquet(path)
    return path


# --------------------------------------------------------------------------- contenders
def _claims(parcels: str) -> object:
    """The bench parcels as requisition claims (items, claimed areas, amounts)."""
    import geopandas as gpd

    claims = gpd.read_parquet(parcels)
    rng = np.random.default_rng(4)
    n = len(claims)
    claims["project_id"] = "P1"
    claims["claimant_id"] = [f"A{i:06d}" for i in range(n)]
    claims["item"] = rng.choice(["building", "greenhouse", "trees", "crops"], n,
                                p=[0.6, 0.2, 0.1, 0.1])
    claims["claimed_area_m2"] = np.round(claims.area.to_numpy() * rng.uniform(0.2, 1.0, n), 1)
    claims["amount"] = np.round(claims["claimed_area_m2"] * 900.0, 2)
    return claims


NOTICE_DATE = "2023-10-01"  # between the two acquisitions


def _warm_up(work: Path) -> float:
    """Run the whole compare on a tiny pair so numba's one-time compilation is not timed.

    The kernels are cached on disk (``cache=True``), so only the very first run after an
    install or an edit compiles them; the time is reported separately.
    """
    import geopandas as gpd
    import rasterio
    import shapely

    from imagery.catalog import ImageEntry
    from imagery.compare import compare

    t0 = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(2):
        p = work / f"w{i}.tif"
        with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=4,
                           dtype="uint16", crs=CRS,
                           transform=rasterio.Affine(RES, 0, X0, 0, -RES, Y0)) as d:
            d.write(rng.integers(100, 3000, (4, 64, 64)).astype("uint16"))
        entries.append(ImageEntry.from_path(p, acquired_on=f"202{i}-01-01"))
    claims = gpd.GeoDataFrame({"claim_id": ["1", "2"], "item": ["building", "trees"],
                               "claimed_area_m2": [50.0, 50.0]}, crs=CRS, geometry=shapely.box(
        [X0, X0 + 10], [Y0 - 20, Y0 - 10], [X0 + 8.3, X0 + 20], [Y0 - 11, Y0 - 1]))
    compare(entries, claims, notice_date="2020-06-01", workdir=work / "compare")
    return time.perf_counter() - t0


#: Progress messages of :func:`imagery.compare.compare` that open each stage.
_STAGES = (("checks + align", None), ("change + built-up mask", "change indices"),
           ("per-claim stats", "per-claim statistics"), ("claims table", "table"),
           ("rules", "rules"), ("chips", "image chips"), ("alerts + ranking", "alerts"))


def run_ours(before: str, after: str, parcels: str, work: str) -> dict:
    import os

    from imagery.catalog import ImageEntry
    from imagery.compare import compare

    warm = _warm_up(Path(work) / "warm")
    claims = _claims(parcels)
    marks: list[tuple[str, float, float]] = []

    def progress(fraction: float, message: str) -> None:
        now = (time.perf_counter(), time.process_time())
        if message == "per-claim statistics" and fraction >= 0.85:  # the pair's stats done
            message = "table"
        if not any(m == message for m, _, _ in marks):
            marks.append((message, *now))

    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    images = [ImageEntry.from_path(before, image_id="before"),
              ImageEntry.from_path(after, image_id="after")]
    result = compare(images, claims, notice_date=NOTICE_DATE, workdir=Path(work) / "compare",
                     progress=progress)
    t1, c1 = time.perf_counter(), time.process_time()
    at = {m: (t, c) for m, t, c in marks}
    stages = {}
    start = (t0, c0)
    for (name, _), (_, nxt) in zip(_STAGES, [*_STAGES[1:], ("end", "end")], strict=True):
        end = at.get(nxt, (t1, c1)) if nxt != "end" else (t1, c1)
        stages[name] = {"wall_s": end[0] - start[0], "cpu_s": end[1] - start[1]}
        start = end
    n_chips = sum(1 for _ in (Path(work) / "compare" / "chips").rglob("*_after.png"))
    return {"warm_up_s": warm, "total_s": t1 - t0, "cpu_s": c1 - c0, "stages": stages,
            "indices": result.pairs[0]["change"]["rasters"] and
            list(result.pairs[0]["change"]["rasters"]),
            "n": len(result.stats), "alerts": len(result.alerts), "chips": n_chips,
            "inconclusive": int(result.inconclusive),
            "load_avg": [load0, os.getloadavg()[0]]}


def run_exactextract(before: str, after: str, parcels: str, work: str,
                     strategy: str = "feature-sequential") -> dict:
    import geopandas as gpd
    from exactextract import exact_extract

    claims = gpd.read_parquet(parcels)
    t0 = time.perf_counter()
    res = exact_extract([before, after], claims, ["mean"], include_cols=["claim_id"],
                        output="pandas", strategy=strategy)
    t1 = time.perf_counter()
    return {"total_s": t1 - t0, "n": len(res), "columns": len(res.columns) - 1,
            "strategy": strategy}


def run_rasterstats(before: str, after: str, parcels: str, work: str, sample: int) -> dict:
    import geopandas as gpd
    from rasterstats import zonal_stats

    claims = gpd.read_parquet(parcels)
    idx = np.random.default_rng(3).choice(len(claims), min(sample, len(claims)), replace=False)
    part = claims.iloc[np.sort(idx)]
    t0 = time.perf_counter()
    for path in (before, after):
        for band in (1, 2, 3, 4):
            zonal_stats(part, path, band=band, stats=["mean"])
    t1 = time.perf_counter()
    return {"sample_s": t1 - t0, "sample": len(part),
            "total_s": (t1 - t0) * len(claims) / len(part)}


def _vm_hwm_mib() -> float:
    """This process's own resident high-water mark (Linux ``VmHWM``), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _child(name: str, args: tuple, out_queue: mp.Queue) -> None:
    logging.basicConfig(level=logging.WARNING)
    fn = {"ours": run_ours, "exactextract": run_exactextract,
          "rasterstats": run_rasterstats}[name]
    out = fn(*args)
    # ru_maxrss survives fork + exec on Linux: children come from a small forkserver
    # process so it is theirs; VmHWM (reset by exec) is printed beside it as a check.
    out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["vm_hwm_mib"] = _vm_hwm_mib()
    out_queue.put(out)


def measure(name: str, *args: object) -> dict:
    """Run a contender in a fresh process; return its timings and peak memory."""
    ctx = mp.get_context("forkserver")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(name, args, q))
    p.start()
    while True:
        try:
            out = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                msg = f"{name} crashed (exit code {p.exitcode})"
                raise RuntimeError(msg) from None
    p.join()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=20_000, help="raster width = height (px)")
    ap.add_argument("--parcels", type=int, default=100_000, help="number of claim parcels")
    ap.add_argument("--rasterstats-sample", type=int, default=500,
                    help="parcels given to rasterstats (time extrapolated)")
    ap.add_argument("--dir", type=Path, default=None,
                    help="working folder (default: a temporary one, deleted after)")
    ap.add_argument("--skip", nargs="*", default=["feature-sequential"],
                    choices=["feature-sequential", "raster-sequential", "rasterstats"],
                    help="peers to leave out (exactextract strategies, rasterstats); default: "
                         "exactextract's feature-sequential strategy, which is the slower one "
                         "on this input (over 6 CPU-minutes at full size, against 47 s "
                         "raster-sequential); give --skip alone to run every peer")
    ns = ap.parse_args(argv)
    # Start the fork server while this process is still small (see _child).
    mp.get_context("forkserver")
    import multiprocessing.forkserver

    multiprocessing.forkserver.ensure_running()

    tmp = None
    if ns.dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="geosup-bench-imagery-")
        root = Path(tmp.name)
    else:
        root = ns.dir
        root.mkdir(parents=True, exist_ok=True)
    try:
        before, after = root / "before.tif", root / "after.tif"
        t = time.perf_counter()
        if not (before.exists() and after.exists()):
            before, after = make_pair(root, ns.size)
        parcels = root / f"parcels_{ns.parcels}.parquet"
        if not parcels.exists():
            make_parcels(parcels, ns.size, ns.parcels)
        print(f"input: {ns.size:,} x {ns.size:,} px x 4 bands uint16 x 2 dates (COG, "
              f"{(before.stat().st_size + after.stat().st_size) / 2**30:.2f} GiB on disk), "
              f"{ns.parcels:,} parcels; prepared in {time.perf_counter() - t:.1f} s")
        args = (str(before), str(after), str(parcels), str(root))
        ours = measure("ours", *args)
        print(f"ours (the whole compare): {ours['total_s']:.1f} s wall, {ours['cpu_s']:.1f} s "
              f"CPU (numba warm-up, not timed: {ours['warm_up_s']:.1f} s); peak "
              f"{ours['peak_mib']:.0f} MiB (VmHWM {ours['vm_hwm_mib']:.0f}); load average "
              f"{ours['load_avg'][0]:.1f} -> {ours['load_avg'][1]:.1f} on "
              f"{os.cpu_count()} cores")
        for name, st in ours["stages"].items():
            print(f"  {name:<24} {st['wall_s']:6.1f} s wall {st['cpu_s']:6.1f} s CPU")
        print(f"  indices {', '.join(ours['indices'])}; {ours['n']:,} claims, "
              f"{ours['inconclusive']} inconclusive, {ours['alerts']:,} alerts, "
              f"{ours['chips']:,} chip pairs")
        res = {"size": ns.size, "parcels": ns.parcels, "ours": ours}
        strategies = [s for s in ("feature-sequential", "raster-sequential")
                      if s not in ns.skip]
        if strategies:
            runs = [measure("exactextract", *args, strategy) for strategy in strategies]
            for run in runs:
                print(f"exactextract, 8 band means, {run['strategy']}: {run['total_s']:.1f} s; "
                      f"peak {run['peak_mib']:.0f} MiB (VmHWM {run['vm_hwm_mib']:.0f})")
            ee = min(runs, key=lambda r: r["total_s"])
            res["exactextract"] = runs
            print(f"exactextract floor (its faster strategy, {ee['strategy']}): "
                  f"{ee['total_s']:.1f} s; ours / floor = "
                  f"{ours['total_s'] / ee['total_s']:.2f}x (target <= 2x)")
        if "rasterstats" not in ns.skip:
            rs = measure("rasterstats", *args, ns.rasterstats_sample)
            res["rasterstats"] = rs
            print(f"rasterstats (8 band means, {rs['sample']} parcels in {rs['sample_s']:.1f} s, "
                  f"extrapolated): {rs['total_s']:.0f} s; rasterstats / ours = "
                  f"{rs['total_s'] / ours['total_s']:.1f}x (target >= 10x)")
        print(f"targets: total <= 90 s: {'yes' if ours['total_s'] <= 90 else 'NO'}"
              f"{'' if ns.size == 20_000 else ' (reduced size)'}; peak <= 2 GiB: "
              f"{'yes' if ours['peak_mib'] <= 2048 else 'NO'}")
        print(json.dumps(res, default=float))
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
