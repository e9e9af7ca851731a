"""Where inputs, alerts, runs, rejects and review history live.

Two backends share one API (:class:`~geosup.store.base.Store`): a GeoPackage file,
the embedded default, and PostgreSQL + PostGIS. This package is the only code in
geosup that opens a database connection.

Examples
--------
>>> import tempfile, pathlib
>>> from geosup.store import open_store
>>> path = pathlib.Path(tempfile.mkdtemp()) / "geosup.gpkg"
>>> with open_store(path) as store:
...     with store.run("io") as run:
...         run.record_input("persons", rows_in=2, rows_used=2, rows_rejected=0)
...     len(store.alerts()), store.runs()["command"].tolist()
(0, ['io'])
>>> store = open_store("postgresql://inspector@db.example/audit")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from geosup.errors import ConfigError
from geosup.store.base import (
    REJECT_COLUMNS,
    RUN_COLUMNS,
    Run,
    Store,
    UpsertCounts,
    describe_input,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_STORE",
    "REJECT_COLUMNS",
    "RUN_COLUMNS",
    "Run",
    "Store",
    "UpsertCounts",
    "describe_input",
    "is_database_url",
    "open_store",
    "read_database_table",
    "write_database_table",
]

#: The store used when none is given.
DEFAULT_STORE = "geosup.gpkg"

_PG = re.compile(r"^postgres(ql)?://", re.IGNORECASE)


def is_database_url(url: str | Path | None) -> bool:
    """True when ``url`` names a PostgreSQL database rather than a file."""
    return url is not None and bool(_PG.match(str(url)))


def open_store(url: str | Path | None = None, *, create: bool = True) -> Store:
    """Open the store at ``url``.

    Parameters
    ----------
    url : str or Path, optional
        A ``.gpkg`` path (default ``./geosup.gpkg``) or a ``postgresql://`` URL.
        Credentials come from the URL or libpq's environment (PGHOST, PGPASSWORD …).
    create : bool, default True
        Create the schema when it is missing (a GeoPackage file is created too).

    Raises
    ------
    StoreConnectionError
        The database cannot be reached or the file cannot be opened.
    ConfigError
        The URL is neither a GeoPackage path nor a PostgreSQL URL.
    """
    target = DEFAULT_STORE if url is None or str(url) == "" else url
    if is_database_url(target):
        from geosup.store.postgis import PostGISStore

        return PostGISStore(str(target), create=create)
    path = Path(target)
    if path.suffix.lower() != ".gpkg":
        msg = (f"store {str(target)!r} is neither a GeoPackage file (*.gpkg) "
               "nor a postgresql:// URL")
        raise ConfigError(msg)
    from geosup.store.gpkg import GeoPackageStore

    return GeoPackageStore(path, create=create)


def read_database_table(url: str, *, table: str, schema: str | None = None) -> pd.DataFrame:
    """Read one table of a PostgreSQL database as a (Geo)DataFrame.

    ``io`` uses this for ``postgresql://…#schema.table`` inputs.
    """
    from geosup.store.postgis import read_table

    return read_table(url, table=table, schema=schema)


def write_database_table(url: str, frame: pd.DataFrame, *, table: str,
                         schema: str | None = None, overwrite: bool = False) -> int:
    """Write a (Geo)DataFrame as a table of a PostgreSQL database (bulk COPY).

    ``export`` uses this for ``--format postgis``. Returns the number of rows.
    Raises :class:`~geosup.errors.ExportError` if the table exists and not ``overwrite``.
    """
    from geosup.store.postgis import write_table

    return write_table(url, frame, table=table, schema=schema, overwrite=overwrite)
