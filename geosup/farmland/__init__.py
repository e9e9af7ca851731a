"""Declared farmland against reference parcels, land use and the persons registry.

The check runs in four steps, one module each:

:mod:`geosup.farmland.prepare`
    units to m², one metric CRS, geometry hygiene (repairs and rejects in the ledger);
:mod:`geosup.farmland.engine` / :mod:`geosup.farmland.engine_postgis`
    the overlay (links, pairs, land use, outside parts, year-on-year changes) in
    process or in PostGIS, as the :class:`~geosup.farmland.tables.Overlay` contract;
:mod:`geosup.farmland.rules`
    the registered rules, pure functions of the overlay;
:mod:`geosup.farmland.reconcile`
    the whole check (:func:`~geosup.farmland.reconcile.reconcile`) and the files-in /
    store-out helpers the CLI (``geosup farmland reconcile``) and the demo
    (:mod:`geosup.farmland.demo`) share.

Examples
--------
>>> from geosup.farmland import ReconcileResult, RuleContext
>>> ReconcileResult.__module__, RuleContext.__module__
('geosup.farmland.reconcile', 'geosup.farmland.rules')
>>> from geosup.farmland.reconcile import reconcile  # the check itself
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Overlay", "ReconcileResult", "RuleContext"]

_WHERE = {
    "Overlay": "geosup.farmland.tables",
    "ReconcileResult": "geosup.farmland.reconcile",
    "RuleContext": "geosup.farmland.rules",
}


def __getattr__(name: str) -> Any:
    """Import the public names lazily (importing a submodule stays light)."""
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    msg = f"module 'geosup.farmland' has no attribute {name!r}"
    raise AttributeError(msg)
