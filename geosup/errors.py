"""Errors and warnings raised by geosup.

Every error subclasses :class:`GeosupError` and a builtin, so callers can catch
either (``except GeosupError`` or ``except OSError``), as rasterio does.
"""

from __future__ import annotations

__all__ = [
    "AlertNotFoundError",
    "AreaUnitError",
    "CRSError",
    "ConfigError",
    "ConfigWarning",
    "DataSourceError",
    "ExportError",
    "GeometryRepairWarning",
    "GeosupError",
    "GeosupWarning",
    "RuleError",
    "SchemaError",
    "StoreConnectionError",
    "StoreError",
    "TransitionError",
    "ValidationError",
]


class GeosupError(Exception):
    """Base class of every error geosup raises on purpose."""


class ConfigError(GeosupError, ValueError):
    """A setting is unknown, malformed or contradicts another one."""


class DataSourceError(GeosupError, OSError):
    """A file, layer or table cannot be opened or read at all."""


class SchemaError(GeosupError, ValueError):
    """An input lacks a required column or has the wrong layout."""


class ValidationError(GeosupError, ValueError):
    """Values are unusable as a whole (not just some rows)."""


class AreaUnitError(GeosupError, ValueError):
    """Areas that do not fit their polygons in the declared unit (a wrong unit)."""


class CRSError(GeosupError, ValueError):
    """A coordinate reference system is missing, unknown or not allowed."""


class StoreError(GeosupError, RuntimeError):
    """The alert store failed to read or write."""


class StoreConnectionError(StoreError, ConnectionError):
    """The store cannot be reached (bad URL, server down, wrong credentials)."""


class AlertNotFoundError(GeosupError, KeyError):
    """No alert with the requested id is in the store."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0]) if self.args else ""


class TransitionError(GeosupError, ValueError):
    """A review status change that the workflow does not allow."""


class RuleError(GeosupError, KeyError):
    """A rule or threshold name is unknown."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ExportError(GeosupError, ValueError):
    """A layer cannot be written in the requested format."""


class GeosupWarning(UserWarning):
    """Base class of geosup's warnings."""


class ConfigWarning(GeosupWarning):
    """A ``GEOSUP_*`` environment variable names no setting (likely a typo)."""


class GeometryRepairWarning(GeosupWarning):
    """Geometries were repaired; the rejects ledger lists which and how."""
