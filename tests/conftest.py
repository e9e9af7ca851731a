"""Fixtures shared by every test: real data and a real PostGIS server.

The PostGIS server is started by the test session itself (initdb + pg_ctl in a
temporary directory, a free port, trust authentication on 127.0.0.1) and stopped at
the end. PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` system user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from geosup import testing
from geosup.errors import StoreConnectionError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real third-party data)."""
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (it lives beside the checkout)")
    return DATA


@pytest.fixture(scope="session")
def postgis_server() -> Iterator[str]:
    """A fresh PostgreSQL + PostGIS server for this session; yields its base URL."""
    try:
        with testing.postgis_server() as base:
            yield base
    except StoreConnectionError as err:
        pytest.fail(str(err))


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def postgis_url(postgis_server: str) -> Iterator[str]:
    """A new empty database with PostGIS for one test."""
    import psycopg
    from psycopg import sql

    name = f"geosup_t{next(_counter)}_{os.getpid()}"
    with psycopg.connect(f"{postgis_server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE geosup_template").format(
            sql.Identifier(name)))
    yield f"{postgis_server}/{name}"
    with psycopg.connect(f"{postgis_server}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: the same test runs against both."""
    if request.param == "gpkg":
        return str(tmp_path / "geosup.gpkg")
    return request.getfixturevalue("postgis_url")
