"""geosup: check public spending against geography.

The core every check shares: errors, settings, coordinate systems, input reading
with a rejects ledger, the alert table, the rule registry, the store and export.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
