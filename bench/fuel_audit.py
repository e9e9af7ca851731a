"""Benchmark: the whole fuel audit streamed from GeoParquet, beside a movingpandas peer.

A synthetic fleet (``--vehicles`` × ``--days`` × one fix every ``--step`` seconds, default
2,706 × 1 × 30 s ≈ 7.8 million fixes) drives loops around a city; each vehicle stops at its
station once a day, and about one transaction per vehicle per day is generated (most at the
real stop, a few at a station far away, a few above the tank). The fixes are written as
GeoParquet (native GeoArrow point encoding) partitioned by vehicle × month, then:

- **ours**: :func:`trajectories.audit.audit` streams the partitions with
  :func:`trajectories.audit.read_fixes_partitions`, runs every rule and builds the alerts;
  measured in a child process (wall time from the first read to the result, fixes per
  second, peak resident memory from ``getrusage``);
- **peer**: the movingpandas equivalent of ``fuel.away_from_station`` on a sample of
  vehicles (read their fixes, build a ``TrajectoryCollection`` in the metric CRS, and per
  transaction ``get_segment_between(t - 10 min, t + 10 min)`` and its distance to the
  station), extrapolated to the whole fleet by fixes and by transactions.

Run::

    .venv/bin/python bench/fuel_audit.py                    # 2,706 vehicles x 1 day
    .venv/bin/python bench/fuel_audit.py --days 7           # ~55 M fixes
    .venv/bin/python bench/fuel_audit.py --vehicles 200 --keep /tmp/fleet
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyproj

CENTRE = (116.40, 39.90)
METRIC = pyproj.CRS.from_epsg(4548)  # CGCS2000 / 3-degree Gauss-Kruger CM 117E
LAP_S = 3600.0  # one loop per hour
RADIUS_M = 3000.0
DWELL_S = 360.0


def _geo_metadata() -> bytes:
    meta = {"version": "1.1.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "point", "geometry_types": ["Point"]}}}
    return json.dumps(meta).encode()


def make_fleet(root: Path, *, vehicles: int, days: int, step: int, start: str,
               chunk: int = 100, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame,
                                                         pd.DataFrame, pd.DataFrame, int]:
    """Write the fixes under ``root`` and return transactions, stations, vehicles, cards."""
    rng = np.random.default_rng(seed)
    to_ll = pyproj.Transformer.from_crs(METRIC, 4326, always_xy=True)
    cx0, cy0 = pyproj.Transformer.from_crs(4326, METRIC, always_xy=True).transform(*CENTRE)
    side = int(np.ceil(np.sqrt(vehicles)))
    t0 = pd.Timestamp(start, tz="UTC").value
    steps = np.arange(0, days * 86_400, step, dtype=np.int64)
    ids = np.array([f"V{v:05d}" for v in range(vehicles)], dtype=object)
    # loop centres on a grid 2 km apart; the station is on the loop at angle 0
    gx = (np.arange(vehicles) % side) * 2000.0 + cx0 - side * 1000.0
    gy = (np.arange(vehicles) // side) * 2000.0 + cy0 - side * 1000.0
    phase = rng.uniform(0, LAP_S, vehicles)
    # one dwell per day, when the vehicle reaches the station after 09:00 local (01:00 UTC)
    schema = pa.schema([("time", pa.timestamp("ns", tz="UTC")), ("_row", pa.int64()),
                        ("geometry", pa.struct([("x", pa.float64()), ("y", pa.float64())])),
                        ("vehicle_id", pa.string()), ("month", pa.string())],
                       metadata={b"geo": _geo_metadata()})
    n_total = 0
    tx_rows = []
    for a in range(0, vehicles, chunk):
        b = min(a + chunk, vehicles)
        nv = b - a
        t = steps[None, :].astype(float) + phase[a:b, None]
        day_start = np.arange(days)[None, :] * 86_400.0 + 3600.0
        # the moving time reaches k * LAP (the station) at the first lap after 01:00 UTC
        k = np.ceil((day_start + phase[a:b, None] - np.arange(days)[None, :] * DWELL_S)
                    / LAP_S)
        stop_start = k * LAP_S + np.arange(days)[None, :] * DWELL_S  # in the vehicle's time
        spent = np.zeros_like(t)
        for d in range(days):
            spent += np.clip(t - stop_start[:, d:d + 1], 0.0, DWELL_S)
        tau = t - spent
        ang = 2 * np.pi * tau / LAP_S
        x = gx[a:b, None] + RADIUS_M * (np.cos(ang) - 1.0)
        y = gy[a:b, None] + RADIUS_M * np.sin(ang)
        lon, lat = to_ll.transform(x.ravel(), y.ravel())
        time_ns = np.broadcast_to(t0 + steps[None, :] * 1_000_000_000, (nv, len(steps))).ravel()
        month = pd.DatetimeIndex(time_ns, tz="UTC").strftime("%Y-%m")
        n = nv * len(steps)
        table = pa.table({
            "time": pa.array(time_ns, type=pa.timestamp("ns", tz="UTC")),
            "_row": pa.array(np.arange(n_total + 1, n_total + n + 1, dtype=np.int64)),
            "geometry": pa.StructArray.from_arrays(
                [pa.array(np.asarray(lon)), pa.array(np.asarray(lat))], names=["x", "y"]),
            "vehicle_id": pa.array(np.repeat(ids[a:b], len(steps)).astype(str)),
            "month": pa.array(np.asarray(month, dtype=str)),
        }, schema=schema)
        ds.write_dataset(table, root, format="parquet", partitioning=["vehicle_id", "month"],
                         partitioning_flavor="hive", basename_template=f"part-{a}-{{i}}.parquet",
                         existing_data_behavior="overwrite_or_ignore",
                         max_rows_per_group=1 << 20, preserve_order=True)
        n_total += n
        # transactions: at the middle of each day's dwell (legitimate)
        mid = stop_start + DWELL_S / 2 - phase[a:b, None]
        for d in range(days):
            tx_rows.append(pd.DataFrame({
                "vehicle_id": ids[a:b], "time_ns": (t0 + mid[:, d] * 1e9).astype(np.int64)}))
    tx = pd.concat(tx_rows, ignore_index=True)
    tx = tx[(tx["time_ns"] > t0) & (tx["time_ns"] < t0 + days * 86_400 * 10**9)]
    tx["card_id"] = "C" + tx["vehicle_id"].str[1:]
    tx["station_id"] = "S" + tx["vehicle_id"].str[1:]
    tx["litres"] = rng.uniform(20, 55, len(tx)).round(2)
    away = rng.random(len(tx)) < 0.02
    tx.loc[away, "station_id"] = "FAR"
    over = rng.random(len(tx)) < 0.01
    tx.loc[over, "litres"] = 90.0
    tx["amount"] = (tx["litres"] * 7.9).round(2)
    tx["product"] = "92#"
    tx["time"] = pd.to_datetime(tx["time_ns"], utc=True)
    tx = tx.drop(columns=["time_ns", "vehicle_id"]).reset_index(drop=True)
    tx["tx_id"] = [f"T{i:07d}" for i in range(len(tx))]
    tx["_row"] = np.arange(1, len(tx) + 1)
    slon, slat = to_ll.transform(gx, gy)
    flon, flat = to_ll.transform(cx0 + 60_000.0, cy0 + 60_000.0)
    stations = pd.DataFrame({"station_id": [*("S" + pd.Series(ids).str[1:]), "FAR"],
                             "name": [*(f"Loop {i}" for i in range(vehicles)), "Far"],
                             "lon": [*np.asarray(slon), flon], "lat": [*np.asarray(slat), flat]})
    veh = pd.DataFrame({"vehicle_id": ids, "unit": [f"U{i % 40:02d}" for i in range(vehicles)],
                        "fuel_type": "petrol", "tank_l": 60.0, "rated_l_per_100km": 9.0,
                        "status": "active"})
    cards = pd.DataFrame({"card_id": "C" + pd.Series(ids).str[1:], "vehicle_id": ids,
                          "unit": veh["unit"]})
    return tx, stations, veh, cards, n_total


def _ours(root: str, inputs: str, max_fixes: int, queue: mp.Queue) -> None:
    """The audit in a fresh process: time and peak memory of that process only."""
    import pandas as pd

    from trajectories.audit import audit, read_fixes_partitions

    frames = pd.read_pickle(inputs)
    # warm the numba kernels on a tiny input so compile time is not counted
    tiny = frames["warm"]
    audit(tiny["fixes"], tiny["tx"], tiny["stations"], tiny["vehicles"], tiny["cards"],
          tz="Asia/Shanghai")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    result = audit(read_fixes_partitions(root, max_fixes=max_fixes), frames["tx"],
                   frames["stations"], frames["vehicles"], frames["cards"], tz="Asia/Shanghai")
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage0.ru_utime) + (usage.ru_stime - usage0.ru_stime)
    rss = usage.ru_maxrss
    queue.put({"seconds": elapsed, "cpu_seconds": cpu, "peak_rss_kib": rss,
               "rss_before_kib": rss0,
               "fixes": result.counts["fixes"]["rows_in"],
               "alerts": result.alerts["rule"].value_counts().to_dict(),
               "rejected": {k: v["rows_rejected"] for k, v in result.counts.items()}})


def _peer(root: Path, tx: pd.DataFrame, stations: pd.DataFrame, cards: pd.DataFrame,
          sample_vehicles: int) -> dict:
    """movingpandas away_from_station on a sample of vehicles; per-fix and per-tx costs."""
    import geopandas as gpd
    import shapely

    with warnings.catch_warnings():  # its optional smoother dependency is not installed
        warnings.simplefilter("ignore", UserWarning)
        import movingpandas as mpd

    from trajectories.audit import read_fixes_partitions

    vdirs = sorted(p for p in root.iterdir() if p.is_dir())[:sample_vehicles]
    frames = [f for d in vdirs for f in read_fixes_partitions(d)]
    for f, d in zip(frames, vdirs, strict=False):
        f["vehicle_id"] = d.name.split("=", 1)[1]
    fixes = pd.concat(frames, ignore_index=True)
    vids = set(fixes["vehicle_id"])
    card_vehicle = cards.set_index("card_id")["vehicle_id"]
    sample_tx = tx[tx["card_id"].map(card_vehicle).isin(vids)].copy()
    sample_tx["vehicle_id"] = sample_tx["card_id"].map(card_vehicle)
    st = stations.set_index("station_id")
    to_m = pyproj.Transformer.from_crs(4326, METRIC, always_xy=True)
    start = time.perf_counter()
    gdf = gpd.GeoDataFrame(
        {"vehicle_id": fixes["vehicle_id"],
         "t": fixes["time"].dt.tz_convert("UTC").dt.tz_localize(None)},
        geometry=gpd.points_from_xy(fixes["lon"], fixes["lat"]), crs=4326).to_crs(METRIC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc = mpd.TrajectoryCollection(gdf, traj_id_col="vehicle_id", t="t")
    build = time.perf_counter() - start
    trajs = {str(tr.id): tr for tr in tc.trajectories}
    start = time.perf_counter()
    hits = 0
    w = pd.Timedelta("10min")
    for row in sample_tx.itertuples():
        tr = trajs[row.vehicle_id]
        t = row.time.tz_convert("UTC").tz_localize(None)
        seg = tr.get_segment_between(t - w, t + w)
        x, y = to_m.transform(st.loc[row.station_id, "lon"], st.loc[row.station_id, "lat"])
        d = seg.distance(shapely.Point(x, y))
        hits += int(d > 300.0)
    per_tx = (time.perf_counter() - start) / max(len(sample_tx), 1)
    return {"fixes": len(fixes), "tx": len(sample_tx), "build_s": build,
            "per_fix_s": build / max(len(fixes), 1), "per_tx_s": per_tx, "away": hits}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vehicles", type=int, default=2706)
    parser.add_argument("--days", type=int, default=1)
    parser.add_argument("--step", type=int, default=30, help="seconds between fixes")
    parser.add_argument("--start", default="2024-10-08")
    parser.add_argument("--max-fixes", type=int, default=1_000_000,
                        help="fixes per streamed batch of partitions (smaller batches overlap "
                             "reading with the audit sooner and use less memory)")
    parser.add_argument("--peer-vehicles", type=int, default=20)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write (or reuse) the dataset here instead of a temp dir")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="geosup-fuel-bench-"))
    root = args.keep or (tmp / "fixes")
    inputs = tmp / "inputs.pkl"
    t_gen = time.perf_counter()
    if args.keep and (args.keep / "inputs.pkl").exists():
        frames = pd.read_pickle(args.keep / "inputs.pkl")
        tx, stations, veh, cards = (frames[k] for k in ("tx", "stations", "vehicles", "cards"))
        n_fixes = frames["n_fixes"]
        print(f"reusing {root}")
    else:
        if root.exists():
            shutil.rmtree(root)
        tx, stations, veh, cards, n_fixes = make_fleet(
            root, vehicles=args.vehicles, days=args.days, step=args.step, start=args.start)
    warm_root = tmp / "warm"
    wtx, wst, wveh, wcards, _ = make_fleet(warm_root, vehicles=3, days=1, step=60,
                                           start=args.start)
    from trajectories.audit import read_fixes_partitions

    warm = {"fixes": list(read_fixes_partitions(warm_root)), "tx": wtx, "stations": wst,
            "vehicles": wveh, "cards": wcards}
    frames = {"tx": tx, "stations": stations, "vehicles": veh, "cards": cards,
              "n_fixes": n_fixes, "warm": warm}
    pd.to_pickle(frames, inputs)
    if args.keep:
        pd.to_pickle({k: v for k, v in frames.items() if k != "warm"}, args.keep / "inputs.pkl")
    files = sum(1 for _ in root.rglob("*.parquet"))
    size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
    print(f"fleet: {args.vehicles} vehicles x {args.days} day(s) x {args.step} s = "
          f"{n_fixes:,} fixes in {files:,} GeoParquet files ({size / 2**20:,.0f} MiB), "
          f"{len(tx):,} transactions; written in {time.perf_counter() - t_gen:.1f} s")

    load0 = os.getloadavg()
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    proc = ctx.Process(target=_ours, args=(str(root), str(inputs), args.max_fixes, queue))
    proc.start()
    ours = queue.get()
    proc.join()
    rate = ours["fixes"] / ours["seconds"]
    peak_gib = ours["peak_rss_kib"] / 2**20
    print(f"ours: whole audit streamed from GeoParquet: {ours['seconds']:.2f} s, "
          f"{rate / 1e6:.2f} M fixes/s, peak RSS {peak_gib:.2f} GiB "
          f"(after imports and warm-up {ours['rss_before_kib'] / 2**20:.2f} GiB); "
          f"CPU {ours['cpu_seconds']:.2f} s (user + system, all threads: on a shared machine "
          "the wall time also counts other processes)")
    load1 = os.getloadavg()
    print(f"      machine load (1-min average) before / after: {load0[0]:.2f} / {load1[0]:.2f} "
          f"on {os.cpu_count()} CPUs (other processes slow the wall time down)")
    print(f"      alerts per rule: {ours['alerts']}")
    print(f"      rejected rows: {ours['rejected']}")

    peer = _peer(root, tx, stations, cards, args.peer_vehicles)
    peer_total = peer["per_fix_s"] * n_fixes + peer["per_tx_s"] * len(tx)
    print(f"peer: movingpandas away_from_station on {peer['fixes']:,} fixes / {peer['tx']} "
          f"transactions: build {peer['build_s']:.2f} s ({peer['per_fix_s'] * 1e6:.2f} µs/fix), "
          f"{peer['per_tx_s'] * 1e3:.1f} ms/transaction; extrapolated to the fleet: "
          f"{peer_total:.1f} s ({n_fixes / peer_total / 1e6:.3f} M fixes/s)")
    print(f"ratio: ours (every rule) is {peer_total / ours['seconds']:.1f}x faster than the "
          "peer (one rule)")
    target_ok = rate >= 5e6 and peak_gib <= 4.0
    print(f"target >= 5 M fixes/s and <= 4 GiB: {'met' if target_ok else 'NOT met'}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
