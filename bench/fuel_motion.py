"""Benchmark: our motion operators beside movingpandas on the same synthetic fleet day.

    python bench/fuel_motion.py [--vehicles N] [--hours H] [--queries Q] [--sample S]

A realistic fleet day: each vehicle alternates drives along a street grid (15-60 km/h, turns at
intersections, GPS noise of a few metres) with dwells (traffic lights, short errands, long
parking with jitter; half the long parkings with the ignition off, i.e. no fixes: gaps), one
fix every 30 s (whole seconds, some jitter, 2 % drop-outs).

(a) Stop detection: ``trajectories.motion.detect_stops`` vs movingpandas
    ``TrajectoryStopDetector.get_stop_time_ranges`` on the same projected data (both Euclidean);
    the stops are asserted identical. Target: at least 50x faster.
(b) Positions at ``Q`` (default 1,000,000) random transaction times: one
    ``trajectories.motion.positions_at`` call vs movingpandas ``Trajectory.get_position_at(t,
    method="interpolated")`` per transaction, timed on a sample of ``S`` calls and extrapolated
    per call; the sampled positions are asserted equal within 1e-6 m. Target: at least 100x.

Our times exclude numba's one-off compilation (printed separately).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pyproj

warnings.filterwarnings("ignore", message="Missing optional dependencies")

from trajectories.fixes import clean_fixes  # noqa: E402
from trajectories.motion import detect_stops, positions_at, track_from_fixes  # noqa: E402
from trajectories.mpd import to_trajectory_collection  # noqa: E402

DAY0 = pd.Timestamp("2026-03-02 00:00:00", tz="UTC").value
STEP_S = 30.0
BLOCK_M = 180.0
ORIGIN = (500000.0, 4420000.0)  # UTM 50N, about Beijing
UTM50N = pyproj.CRS.from_epsg(32650)


def _drive(rng: np.random.Generator, x: float, y: float, n: int) -> tuple[np.ndarray, ...]:
    """n fixes driving along a street grid from (x, y); returns xs, ys and the end point."""
    speeds = np.clip(rng.normal(rng.uniform(15, 60), 8, n), 3, 90) / 3.6
    dist = np.cumsum(speeds * STEP_S)
    total = dist[-1] + BLOCK_M
    # a polyline of whole blocks with a random turn at each intersection
    n_legs = int(total // BLOCK_M) + 2
    heading = rng.integers(0, 4)
    turns = rng.choice([-1, 0, 0, 0, 1], size=n_legs)
    headings = (heading + np.cumsum(turns)) % 4
    dx = np.array([1.0, 0.0, -1.0, 0.0])[headings] * BLOCK_M
    dy = np.array([0.0, 1.0, 0.0, -1.0])[headings] * BLOCK_M
    vx = np.r_[x, x + np.cumsum(dx)]
    vy = np.r_[y, y + np.cumsum(dy)]
    along = np.arange(n_legs + 1) * BLOCK_M
    xs = np.interp(dist, along, vx) + rng.normal(0, 4.0, n)
    ys = np.interp(dist, along, vy) + rng.normal(0, 4.0, n)
    ex = float(np.interp(dist[-1], along, vx))
    ey = float(np.interp(dist[-1], along, vy))
    return xs, ys, ex, ey


def fleet_day(n_vehicles: int, hours: float, seed: int = 42) -> pd.DataFrame:
    """Synthetic fixes (vehicle_id, time, lon, lat, _row) of a fleet over ``hours``."""
    rng = np.random.default_rng(seed)
    n_steps = int(hours * 3600 / STEP_S)
    parts_x, parts_y, parts_v, parts_t = [], [], [], []
    for v in range(n_vehicles):  # one step per episode (a drive or a dwell), not per fix
        x = ORIGIN[0] + rng.uniform(-8000, 8000)
        y = ORIGIN[1] + rng.uniform(-8000, 8000)
        xs_v, ys_v, on_v = [], [], []
        filled = 0
        while filled < n_steps:
            kind = rng.choice(["light", "errand", "park", "drive", "drive", "drive"])
            if kind == "drive":
                n = int(rng.integers(4, 60))
                xs, ys, x, y = _drive(rng, x, y, n)
            else:
                n = {"light": int(rng.integers(1, 4)), "errand": int(rng.integers(4, 25)),
                     "park": int(rng.integers(40, 300))}[kind]
                xs = x + rng.normal(0, 3.0, n)
                ys = y + rng.normal(0, 3.0, n)
            xs_v.append(xs)
            ys_v.append(ys)
            # half the long parkings with the ignition off: the unit is silent (a gap)
            on_v.append(np.full(n, not (kind == "park" and rng.random() < 0.5)))
            filled += n
        xs = np.concatenate(xs_v)[:n_steps]
        ys = np.concatenate(ys_v)[:n_steps]
        # whole seconds, as GPS units report them
        t = DAY0 + np.round(np.arange(n_steps) * STEP_S + rng.uniform(-2, 2, n_steps)).astype(
            np.int64) * 10**9
        keep = (rng.random(n_steps) > 0.02) & np.concatenate(on_v)[:n_steps]  # drop-outs
        parts_x.append(xs[keep])
        parts_y.append(ys[keep])
        parts_t.append(t[keep])
        parts_v.append(np.full(int(keep.sum()), f"V{v:05d}", dtype=object))
    lon, lat = pyproj.Transformer.from_crs(UTM50N, 4326, always_xy=True).transform(
        np.concatenate(parts_x), np.concatenate(parts_y))
    n = len(lon)
    return pd.DataFrame({
        "_row": np.arange(1, n + 1),
        "vehicle_id": np.concatenate(parts_v),
        "time": pd.to_datetime(np.concatenate(parts_t), unit="ns", utc=True),
        "lon": lon,
        "lat": lat,
    })


def bench_stops(track, tc, max_diameter: float, min_duration: pd.Timedelta) -> float:
    import movingpandas as mpd

    start = time.perf_counter()
    ours = detect_stops(track, max_diameter=max_diameter, min_duration=min_duration)
    t_ours = time.perf_counter() - start
    start = time.perf_counter()
    ranges = mpd.TrajectoryStopDetector(tc).get_stop_time_ranges(
        max_diameter=max_diameter, min_duration=min_duration)
    t_mpd = time.perf_counter() - start
    theirs = sorted((str(r.traj_id), pd.Timestamp(r.t_0), pd.Timestamp(r.t_n)) for r in ranges)
    mine = sorted(zip(ours["vehicle_id"], ours["start"].dt.tz_convert(None),
                      ours["end"].dt.tz_convert(None), strict=True))
    if mine != theirs:
        sys.exit(f"STOPS DIFFER: ours {len(mine)}, movingpandas {len(theirs)}")
    ratio = t_mpd / t_ours
    print(f"  stops (max_diameter={max_diameter:g} m, min_duration={min_duration}): "
          f"{len(mine)} stops, identical")
    print(f"    ours {t_ours:9.3f} s   movingpandas {t_mpd:9.3f} s   ratio {ratio:8.1f}x")
    return ratio


def bench_positions(track, tc, n_queries: int, n_sample: int, seed: int = 7) -> float:
    rng = np.random.default_rng(seed)
    k = rng.integers(0, track.n_vehicles, n_queries)
    first = track.t[track.offsets[k]]
    last = track.t[track.offsets[k + 1] - 1]
    # whole seconds, as card terminals report them
    times = first + (rng.random(n_queries) * (last - first) / 1e9).astype(np.int64) * 10**9
    vids = track.vehicle_ids[k]
    when = pd.to_datetime(times, unit="ns", utc=True)
    start = time.perf_counter()
    pos = positions_at(track, vids, when)
    t_ours = time.perf_counter() - start
    trajs = {str(tr.id): tr for tr in tc.trajectories}
    naive = pd.to_datetime(times[:n_sample], unit="ns")
    start = time.perf_counter()
    points = [trajs[v].get_position_at(t, method="interpolated")
              for v, t in zip(vids[:n_sample], naive, strict=True)]
    t_sample = time.perf_counter() - start
    ok = pos["ok"].to_numpy()[:n_sample]
    px = np.array([p.x for p in points])
    py = np.array([p.y for p in points])
    err = np.maximum(np.abs(pos["x"].to_numpy()[:n_sample] - px),
                     np.abs(pos["y"].to_numpy()[:n_sample] - py))[ok]
    if err.size == 0 or err.max() > 1e-6:
        sys.exit(f"POSITIONS DIFFER: max error {err.max() if err.size else 'n/a'} m")
    per_call = t_sample / n_sample
    t_mpd = per_call * n_queries
    ratio = t_mpd / t_ours
    print(f"  positions at {n_queries:,} transaction times "
          f"({int(pos['ok'].sum()):,} interpolated, the rest refused in gaps); "
          f"{int(ok.sum())} of {n_sample} sampled equal to movingpandas within 1e-6 m")
    print(f"    ours {t_ours:9.3f} s   movingpandas {per_call * 1e6:7.1f} us/call x {n_queries:,}"
          f" = {t_mpd:9.1f} s (extrapolated from {n_sample} calls)   ratio {ratio:8.1f}x")
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vehicles", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--queries", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=3000)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    fixes = fleet_day(args.vehicles, args.hours)
    clean = clean_fixes(fixes)
    track = track_from_fixes(clean.frame)
    tc = to_trajectory_collection(track)
    print(f"fleet day: {args.vehicles} vehicles x {args.hours:g} h, {track.n_fixes:,} fixes, "
          f"{len(track.gaps)} gaps, CRS {track.crs.name} "
          f"(built in {time.perf_counter() - start:.1f} s; {clean.summary()})")

    start = time.perf_counter()
    tiny = track_from_fixes(fixes.iloc[:50])
    detect_stops(tiny, max_diameter=50.0, min_duration=pd.Timedelta("5min"))
    print(f"numba compilation (once per process): {time.perf_counter() - start:.1f} s")

    print("(a) stop detection")
    ratios = [bench_stops(track, tc, d, pd.Timedelta(m))
              for d, m in ((50.0, "5min"), (100.0, "10min"))]
    print("(b) positions")
    pos_ratio = bench_positions(track, tc, args.queries, args.sample)
    verdict = "met" if min(ratios) >= 50 and pos_ratio >= 100 else "NOT met"
    print(f"targets (stops >= 50x, positions >= 100x): {verdict}")


if __name__ == "__main__":
    main()
