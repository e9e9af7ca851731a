"""The demo city: realistic inputs with known misuse injected, for ``geosup demo``.

Each check contributes a scenario: a function that writes its inputs into the demo
folder, runs the check into the store inside one run, and returns the injected
truth so the demo can print precision and recall per rule. Scenarios register
themselves in :data:`SCENARIOS` when their module is imported (see
:data:`SCENARIO_MODULES`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from geosup.config import Settings
from geosup.store import Store, open_store

__all__ = [
    "SCENARIOS",
    "SCENARIO_MODULES",
    "DemoResult",
    "ScenarioResult",
    "precision_recall",
    "run_demo",
    "scenario",
]

log = logging.getLogger(__name__)

#: Modules whose import registers a demo scenario (each check's issue adds one).
SCENARIO_MODULES: tuple[str, ...] = (
    "trajectories.demo",
    "geosup.farmland.demo",
    "imagery.demo",
)


@dataclass
class ScenarioResult:
    """What one scenario did: input counts and, per rule, injected vs flagged subjects."""

    name: str
    inputs: dict[str, dict[str, int]] = field(default_factory=dict)
    truth: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["rule", "subject_id"]))
    alerts: int = 0


ScenarioFunc = Callable[[Store, Path, Settings], ScenarioResult]

#: Registered scenarios by name.
SCENARIOS: dict[str, ScenarioFunc] = {}


def scenario(name: str) -> Callable[[ScenarioFunc], ScenarioFunc]:
    """Register a demo scenario."""

    def decorate(func: ScenarioFunc) -> ScenarioFunc:
        SCENARIOS[name] = func
        return func

    return decorate


@dataclass
class DemoResult:
    """The demo's outcome."""

    folder: Path
    store: str
    map_path: Path
    scenarios: list[ScenarioResult]
    scores: pd.DataFrame


def precision_recall(alerts: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Precision and recall per rule of ``alerts`` against injected ``truth``.

    Both tables have ``rule`` and ``subject_id``. A rule with no injected case and no
    alert is left out.

    Examples
    --------
    >>> a = pd.DataFrame({"rule": ["r.x", "r.x"], "subject_id": ["1", "2"]})
    >>> t = pd.DataFrame({"rule": ["r.x", "r.x"], "subject_id": ["1", "3"]})
    >>> precision_recall(a, t)[["rule", "tp", "fp", "fn", "precision", "recall"]]
      rule  tp  fp  fn  precision  recall
    0  r.x   1   1   1        0.5     0.5
    """
    got = alerts.loc[:, ["rule", "subject_id"]].astype(str).drop_duplicates()
    want = truth.loc[:, ["rule", "subject_id"]].astype(str).drop_duplicates()
    both = got.merge(want, how="outer", indicator=True)
    rows = []
    for rule_code, part in both.groupby("rule", sort=True):
        tp = int((part["_merge"] == "both").sum())
        fp = int((part["_merge"] == "left_only").sum())
        fn = int((part["_merge"] == "right_only").sum())
        rows.append({"rule": rule_code, "tp": tp, "fp": fp, "fn": fn,
                     "precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "recall": tp / (tp + fn) if tp + fn else float("nan")})
    return pd.DataFrame(rows, columns=["rule", "tp", "fp", "fn", "precision", "recall"])


def _load_scenarios() -> None:
    for name in SCENARIO_MODULES:
        importlib.import_module(name)


def run_demo(folder: str | Path, *, settings: Settings | None = None,
             store: str | None = None, lang: str = "en") -> DemoResult:
    """Build the demo city in ``folder``, run every check, write ``alerts.html``.

    Parameters
    ----------
    folder : path
        Created when missing; receives the inputs, ``geosup.gpkg`` and ``alerts.html``.
    settings : Settings, optional
        Thresholds and other settings.
    store : str, optional
        Store URL; default ``folder/geosup.gpkg``.
    lang : {"en", "zh"}
        Language of the review map.
    """
    from maps.evidence import referenced_layers
    from maps.review_map import write_review_map

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = settings or Settings()
    url = store or str(folder / "geosup.gpkg")
    _load_scenarios()
    results: list[ScenarioResult] = []
    with open_store(url) as st:
        for name, func in sorted(SCENARIOS.items()):
            log.info("demo scenario %s", name)
            results.append(func(st, folder, settings))
        alerts = st.alerts()
        layers = referenced_layers(st, alerts)  # parcels, declarations, stations in evidence
    truth = pd.concat([r.truth for r in results], ignore_index=True) if results else \
        pd.DataFrame(columns=["rule", "subject_id"])
    scores = precision_recall(alerts, truth)
    map_path = write_review_map(alerts, folder / "alerts.html", lang=lang,
                                title="geosup demo city", overwrite=True, chip_root=folder,
                                evidence_layers=layers)
    return DemoResult(folder=folder, store=url, map_path=map_path, scenarios=results,
                      scores=scores)
