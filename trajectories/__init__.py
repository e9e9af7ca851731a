"""GPS fixes of official vehicles, their motion, and the fuel-card audit.

Modules
-------
fixes
    :func:`~trajectories.fixes.clean_fixes`: drop unusable fixes with one rejects-ledger row
    and reason each (duplicates, the same time elsewhere, out-of-order rows, impossible jumps,
    bad coordinates), sort the rest and record gaps.
motion
    The columnar :class:`~trajectories.motion.Track` (every vehicle's fixes as numpy arrays
    sorted by vehicle and time) and operators vectorised over all vehicles at once: positions
    at many times, distance driven between times, stops (identical to movingpandas'
    TrajectoryStopDetector), trips, nearest approach to points within time windows.
mpd
    Adapters to and from a movingpandas ``TrajectoryCollection``.
calendar, rules, audit, demo
    Working hours and holidays, the registered ``fuel.*`` rules, the audit that joins
    transactions, cards, vehicles and stations with the motion evidence, and the demo city.

The names below are importable from the package itself; they are loaded on first use, so
``import trajectories`` stays cheap (numba is imported only when motion is needed).

Examples
--------
>>> import pandas as pd
>>> import trajectories
>>> fixes = pd.DataFrame({"vehicle_id": ["V1", "V1"], "lon": [116.0, 116.001],
...                       "lat": [40.0, 40.0],
...                       "time": pd.to_datetime([0, 60], unit="s", utc=True)})
>>> track = trajectories.track_from_fixes(trajectories.clean_fixes(fixes).frame)
>>> track.n_fixes
2
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CleanResult",
    "Track",
    "clean_fixes",
    "detect_stops",
    "distance_between",
    "from_trajectory_collection",
    "nearest_approach",
    "positions_at",
    "to_trajectory_collection",
    "track_from_fixes",
    "trips",
    "vehicle_index",
]

_HOMES = {
    "CleanResult": "trajectories.fixes",
    "clean_fixes": "trajectories.fixes",
    "Track": "trajectories.motion",
    "detect_stops": "trajectories.motion",
    "distance_between": "trajectories.motion",
    "nearest_approach": "trajectories.motion",
    "positions_at": "trajectories.motion",
    "track_from_fixes": "trajectories.motion",
    "trips": "trajectories.motion",
    "vehicle_index": "trajectories.motion",
    "from_trajectory_collection": "trajectories.mpd",
    "to_trajectory_collection": "trajectories.mpd",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module 'trajectories' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
