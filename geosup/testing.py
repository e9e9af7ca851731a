"""Public helpers for testing code that uses geosup: a throwaway PostGIS server and
alert-table comparisons.

geosup's own test suite uses them (``tests/conftest.py``); so can a user's tests of
their column mappings, settings or rule thresholds.

Examples
--------
>>> import geopandas as gpd, shapely
>>> from geosup.alerts import make_alerts
>>> hits = gpd.GeoDataFrame({"rule": ["fuel.off_hours"], "subject_type": ["transaction"],
...                          "subject_id": ["T1"], "unit": ["Motor pool"], "period": ["2026-03"],
...                          "severity": ["low"], "score": [0.4], "title": ["Fill at 23:10"],
...                          "detail": ["Fill at 23:10, outside 08:00-18:00"],
...                          "evidence": [{"hour": 23}]},
...                         geometry=[shapely.Point(117.2, 31.8)], crs=4326)
>>> alerts = make_alerts(hits)
>>> assert_same_alerts(alerts, alerts.iloc[::-1])  # row order does not matter
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely

from geosup.errors import StoreConnectionError

__all__ = ["assert_same_alerts", "cli_error_line", "find_pg_bindir", "postgis_server"]

#: Alert columns compared as text by :func:`assert_same_alerts`.
_TEXT_COLUMNS = ("rule", "domain", "severity", "subject_type", "subject_id", "unit", "period",
                 "title", "detail")


def assert_same_alerts(left: gpd.GeoDataFrame, right: gpd.GeoDataFrame, *,
                       tolerance: float = 1e-9) -> None:
    """Assert two alert tables hold the same alerts with the same measured values.

    Rows are matched by ``alert_id`` (a store or a file format need not keep row
    order). Compared: the identifying and text columns, ``score``,
    ``amount_at_risk``, ``observed_at``, the evidence as parsed JSON, the CRS and the
    geometry (``equals_exact`` within ``tolerance`` degrees). Review columns
    (status, first and last seen) are not compared.

    Raises
    ------
    AssertionError
        With the first difference found.
    """
    a = left.sort_values("alert_id").reset_index(drop=True)
    b = right.sort_values("alert_id").reset_index(drop=True)
    assert a["alert_id"].tolist() == b["alert_id"].tolist(), "different alert ids"
    for c in _TEXT_COLUMNS:
        if c in a.columns or c in b.columns:
            pd.testing.assert_series_equal(a[c], b[c], check_dtype=False)
    for c in ("score", "amount_at_risk"):
        pd.testing.assert_series_equal(a[c].astype(float), b[c].astype(float))
    pd.testing.assert_series_equal(a["observed_at"], b["observed_at"])
    parse = [json.loads(e) if isinstance(e, str) else e for e in a["evidence"]]
    other = [json.loads(e) if isinstance(e, str) else e for e in b["evidence"]]
    assert parse == other, "different evidence"
    assert left.crs == right.crs, f"CRS {left.crs} != {right.crs}"
    ga, gb = a.geometry.to_numpy(), b.geometry.to_numpy()
    same = shapely.equals_exact(ga, gb, tolerance=tolerance) | (
        shapely.is_missing(ga) & shapely.is_missing(gb))
    assert same.all(), f"different geometry for {a.loc[~same, 'alert_id'].tolist()[:5]}"


def cli_error_line(result: Any) -> str:
    """The one error line of a failed ``geosup`` command, checked as users see it.

    ``result`` is a :class:`click.testing.Result` (or anything with ``exit_code``,
    ``stderr`` and ``output``). Asserts exit code 1, exactly one non-blank line on
    stderr, starting ``Error: ``, not an unexpected error, and no traceback.

    Examples
    --------
    >>> from click.testing import CliRunner
    >>> from geosup.cli import main
    >>> res = CliRunner().invoke(main, ["alerts", "show", "x", "--store", "/no/such/dir/s.gpkg"])
    >>> cli_error_line(res)
    'Error: store /no/such/dir/s.gpkg does not exist; run a check or `geosup db init` first'
    """
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    assert not lines[0].startswith("Error: unexpected"), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def find_pg_bindir() -> Path | None:
    """The folder of PostgreSQL's ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin``, or the one on ``PATH``; None when there is none."""
    env = os.environ.get("PG_BINDIR")
    if env:
        return Path(env)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_user(cmd: list[str], user: str | None) -> list[str]:
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


@contextmanager
def postgis_server(*, template: str = "geosup_template",
                   settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """Run a throwaway PostgreSQL + PostGIS server; yield its base URL.

    The cluster lives in a temporary folder (``initdb`` + ``pg_ctl``, trust
    authentication on 127.0.0.1, a free port, no fsync) and is stopped and deleted
    when the block ends. PostgreSQL refuses to run as root, so as root it runs as
    the ``postgres`` system user. A database ``template`` with the PostGIS
    extension is created: ``CREATE DATABASE x TEMPLATE geosup_template`` gives each
    test a fresh PostGIS database in milliseconds. ``settings`` are extra server
    settings (``{"shared_buffers": "1GB"}``).

    Raises
    ------
    StoreConnectionError
        The server binaries or the PostGIS extension are missing (``make test``
        installs ``postgresql-15-postgis-3``), or the server did not start.

    Examples
    --------
    >>> with postgis_server() as base:                      # doctest: +SKIP
    ...     store = open_store(f"{base}/geosup_template")
    """
    import psycopg
    from psycopg import sql

    bindir = find_pg_bindir()
    if bindir is None:
        msg = ("PostgreSQL server binaries not found; install postgresql-15-postgis-3 "
               "(`make test` does) or set PG_BINDIR")
        raise StoreConnectionError(msg)
    user = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="geosup-pg-"))
    data, sock = root / "data", root / "sock"
    data.mkdir()
    sock.mkdir()
    if user:
        for folder in (root, data, sock):
            shutil.chown(folder, user)
    port = _free_port()
    try:
        subprocess.run(_as_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U",
                                 "postgres", "-E", "UTF8", "--no-sync"], user),
                       check=True, capture_output=True)
        opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        opts += "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-l",
                                 str(root / "log"), "-o", opts, "-w", "start"], user),
                       check=True, capture_output=True)
    except subprocess.CalledProcessError as err:
        shutil.rmtree(root, ignore_errors=True)
        msg = f"PostgreSQL did not start: {err.stderr.decode(errors='replace').strip()}"
        raise StoreConnectionError(msg) from None
    base = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        for _ in range(50):
            try:
                with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        with psycopg.connect(f"{base}/{template}", autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION postgis")
            except psycopg.Error as err:
                msg = (f"the PostGIS extension is missing ({err}); install "
                       "postgresql-15-postgis-3 (`make test` does)")
                raise StoreConnectionError(msg) from None
        yield base
    finally:
        subprocess.run(_as_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                 "stop"], user), capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)
