"""Fixtures shared by every test: real data and a real PostGIS server.

The PostGIS server is started by the test session itself (initdb + pg_ctl in a
temporary directory, a free port, trust authentication on 127.0.0.1) and stopped at
the end. PostgreSQL refuses to run as root, so as root the cluster runs as the
``postgres`` system user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real third-party data)."""
    if not DATA.is_dir():
        pytest.skip(f"real test data not found at {DATA} (it lives beside the checkout)")
    return DATA


def _pg_bindir() -> Path | None:
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@pytest.fixture(scope="session")
def postgis_server() -> Iterator[str]:
    """A fresh PostgreSQL + PostGIS server for this session; yields its base URL."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.fail("PostgreSQL server binaries not found; run `make test` (it installs "
                    "postgresql-15-postgis-3)")
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="geosup-pg-"))
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    if user:
        shutil.chown(root, user)
        shutil.chown(data, user)
        shutil.chown(sock, user)
    port = _free_port()
    subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                             "postgres", "-E", "UTF8", "--no-sync"], user),
                   check=True, capture_output=True)
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off")
    subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                             str(root / "log"), "-o", opts, "-w", "start"], user),
                   check=True, capture_output=True)
    base = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        import psycopg

        for _ in range(50):
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                    conn.execute("CREATE DATABASE geosup_template")
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        with psycopg.connect(f"{base}/geosup_template", autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION postgis")
            except psycopg.Error as err:
                pytest.fail(f"PostGIS extension missing ({err}); run `make test`, which "
                            "installs postgresql-15-postgis-3")
        yield base
    finally:
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"], user), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


_counter = iter(range(1, 1_000_000))


@pytest.fixture
def postgis_url(postgis_server: str) -> Iterator[str]:
    """A new empty database with PostGIS for one test."""
    import psycopg

    name = f"geosup_t{next(_counter)}_{os.getpid()}"
    with psycopg.connect(f"{postgis_server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE geosup_template')
    yield f"{postgis_server}/{name}"
    with psycopg.connect(f"{postgis_server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["gpkg", "postgis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL for each backend: the same test runs against both."""
    if request.param == "gpkg":
        return str(tmp_path / "geosup.gpkg")
    return request.getfixturevalue("postgis_url")
