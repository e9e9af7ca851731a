"""Bad input at the command line, command by command.

The foundation issue: every command that reads inputs prints rows in / used / rejected per
input; a bad path, an unreadable file, a file whose content is not its extension's format, a
missing column, a missing CRS, an unreachable or malformed ``postgresql://`` URL gives exactly
one line on stderr starting ``Error:`` and exit code 1, no traceback (the traceback only with
``-v``), and never the password of a URL.

The commands run as users run them: the installed ``geosup`` script in a subprocess, so that
whatever reaches stderr (log records, warnings, click's usage text) is what a user would see.
The unreadable-file cases must really meet a permission error, also as root (CI runs as root):
there the command runs under ``setpriv`` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, so
a ``chmod 000`` file is unreadable to it while everything root owns stays readable. (Running
as ``nobody`` is not portable: the venv's interpreter may live under ``/root``, and a forked
child that calls ``setuid`` cannot import the standard library from there either.)
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

PASSWORD = "Pw-s3cret-7781"  # in every database URL below; must never be printed
ERROR_PREFIX = "Error: "
COUNTS_LINE = re.compile(r"^(?P<name>\w+): (?P<rows_in>[\d,]+) rows in, (?P<used>[\d,]+) used, "
                         r"(?P<rejected>[\d,]+) rejected$")

AT_REFERENCE = "parcels/reference/at/inspire_referenzen_2021_polygon.gpkg.zip"
DK_MARKER = "parcels/declared/dk/Marker_2026.zip"
NL_REFERENCE = "parcels/reference/nl/referentiepercelen.gpkg"
UK_STATIONS = "trajectories/uk_fuel_finder_forecourts_2026-02-18_liverpool_bbox.csv"

FUEL_MAP = [
    "transactions.tx_id=Transaction Id", "transactions.card_id=Card Number ID",
    "transactions.station_id=Merchant Site ID", "transactions.litres=Units",
    "transactions.amount=Net Cost", "transactions.product=Product Class",
    "transactions.odometer_km=Current Odometer", "transactions.time=Transaction Date",
    "transactions.time=Transaction Time",
]


# ---------------------------------------------------------------------------------------------
# Running the command
# ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"geosup {' '.join(self.args)}\nexit code {self.returncode}\n"
                f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}")


def _geosup_command() -> list[str]:
    exe = Path(sys.executable).with_name("geosup")
    return [str(exe)] if exe.exists() else [sys.executable, "-c",
                                            "from geosup.cli import main; main()"]


def _environment() -> dict[str, str]:
    """This environment without settings that would change what the command reads."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GEOSUP_", "PG")) and k != "DATABASE_URL"}
    env.pop("PYTHONWARNINGS", None)  # the warnings a user sees, no more, no less
    return env


def run(args: list[str], *, cwd: Path, unprivileged: bool = False) -> Outcome:
    prefix = unprivileged_prefix() if unprivileged else []
    res = subprocess.run([*prefix, *_geosup_command(), *args], capture_output=True, text=True,
                         cwd=cwd, env=_environment(), timeout=300, check=False)
    return Outcome(args, res.returncode, res.stdout, res.stderr)


_DROP_DAC = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
             "--bounding-set=-dac_override,-dac_read_search", "--"]


@functools.cache
def unprivileged_prefix() -> tuple[str, ...]:
    """How to run a command that must not be able to read a ``chmod 000`` file.

    A normal user needs nothing. Root (CI) runs it through ``setpriv`` without the two
    capabilities that let root ignore file permissions.
    """
    if os.name != "posix":
        pytest.skip("file permissions as tested here are POSIX")
    if os.geteuid() != 0:
        return ()
    if shutil.which("setpriv") is None:
        pytest.fail("running as root, and setpriv (util-linux) is missing: cannot run the "
                    "command without the right to read any file")
    return tuple(_DROP_DAC)


def make_unreadable(path: Path) -> Path:
    """``chmod 000`` and check that the unprivileged prefix really cannot read it."""
    path.chmod(0)
    probe = subprocess.run([*unprivileged_prefix(), sys.executable, "-c",
                            "import sys; open(sys.argv[1], 'rb').read(1)", str(path)],
                           capture_output=True, text=True, check=False)
    if probe.returncode == 0 or "PermissionError" not in probe.stderr:
        pytest.fail(f"cannot make {path} unreadable for the command under test "
                    f"(probe exit {probe.returncode}: {probe.stderr.strip()})")
    return path


def closed_port() -> int:
    """A TCP port on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png_bytes() -> bytes:
    """A real 2 x 2 grey PNG image."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + bytes([128, 200]) for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ---------------------------------------------------------------------------------------------
# Valid inputs of every command (the demo builders), and a filled store
# ---------------------------------------------------------------------------------------------


@dataclass
class Inputs:
    fuel: dict[str, str]
    farmland: dict[str, str]
    farmland_config: str
    imagery: dict[str, str]
    store: str
    shared: Path
    extra: dict[str, str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Inputs:
    from geosup.config import Settings
    from geosup.farmland.demo import build_demo as build_farmland
    from geosup.farmland.demo import farmland_scenario
    from geosup.farmland.demo import write_demo_inputs as write_farmland
    from geosup.store import open_store
    from imagery.demo import build_demo as build_requisition
    from imagery.demo import write_demo_inputs as write_requisition
    from trajectories.demo import make_fuel_inputs

    root = tmp_path_factory.mktemp("bad-input")
    fuel = make_fuel_inputs(root / "fuel")
    fuel_paths = {k: str(v) for k, v in fuel.paths.items() if k != "roads"}
    calendar = root / "fuel" / "calendar.csv"
    calendar.write_text("date,kind,name\n2024-10-01,holiday,National Day\n", encoding="utf-8")
    fuel_paths["calendar"] = str(calendar)
    farmland = write_farmland(build_farmland(), root / "farmland")
    requisition = write_requisition(build_requisition(size_m=(800.0, 600.0)), root / "imagery")
    before, after = (str(p) for p in requisition["images"][1:])
    imagery = {"before": before, "after": after, "src": str(requisition["images"][0]),
               **{k: str(requisition[k]) for k in ("claims", "projects", "persons")}}
    store = root / "store" / "geosup.gpkg"
    store.parent.mkdir()
    with open_store(store) as st:
        farmland_scenario(st, root / "store", Settings())
    return Inputs(fuel=fuel_paths, farmland=farmland,
                  farmland_config=str(root / "farmland" / "geosup.toml"), imagery=imagery,
                  store=str(store), shared=shared_data)


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------


def _fuel_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    args = ["fuel", "audit", "--store", store, "--stations-crs", "gcj02"]
    for name in ("fixes", "transactions", "stations", "vehicles", "cards", "calendar"):
        if name in paths:
            args += [f"--{name}", paths[name]]
    return args + [a for item in FUEL_MAP for a in ("--map", item)] + paths.get("_extra", [])


def _farmland_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    args = ["--config", paths["_config"], "farmland", "reconcile", "--store", store]
    for name in ("declarations", "parcels", "land_use", "persons", "previous"):
        args += [f"--{name.replace('_', '-')}", paths[name]]
    return args + paths.get("_extra", [])


def _compare_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    args = ["imagery", "compare", "--store", store, "--workdir", str(tmp / "work"),
            "--chips", str(tmp / "chips")]
    for name in ("before", "after", "claims", "projects", "persons"):
        args += [f"--{name}", paths[name]]
    return args + paths.get("_extra", [])


def _ingest_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    return ["imagery", "ingest", paths["src"], str(tmp / "out" / "cog.tif")]


def _export_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    return ["export", "--store", store, "-o", str(tmp / "out" / "alerts.gpkg")]


def _map_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    return ["map", "--store", store, "-o", str(tmp / "out" / "alerts.html")]


def _alerts_args(paths: dict[str, str], store: str, tmp: Path) -> list[str]:
    return ["alerts", "list", "--store", store]


@dataclass(frozen=True)
class Command:
    name: str
    build: Callable[[dict[str, str], str, Path], list[str]]
    #: the input files, for the default paths
    inputs: str  # "fuel", "farmland", "imagery" or "store"


COMMANDS = {
    "fuel audit": Command("fuel audit", _fuel_args, "fuel"),
    "farmland reconcile": Command("farmland reconcile", _farmland_args, "farmland"),
    "imagery compare": Command("imagery compare", _compare_args, "imagery"),
    "imagery ingest": Command("imagery ingest", _ingest_args, "imagery"),
    "export": Command("export", _export_args, "store"),
    "map": Command("map", _map_args, "store"),
    "alerts list": Command("alerts list", _alerts_args, "store"),
}


def _default_paths(command: Command, inp: Inputs) -> dict[str, str]:
    if command.inputs == "fuel":
        return {k: v for k, v in inp.fuel.items() if k != "calendar"}
    if command.inputs == "farmland":
        return {**inp.farmland, "_config": inp.farmland_config}
    if command.inputs == "imagery":
        return dict(inp.imagery)
    return {}


# ---------------------------------------------------------------------------------------------
# The failure kinds: each makes the bad value of one input (a path or a URL)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    command: str
    slot: str  # the input made bad: an input name or "store"
    kind: str
    column: str | None = None  # missing_column: the source column dropped

    @property
    def id(self) -> str:
        return f"{self.command.replace(' ', '-')}-{self.slot}-{self.kind}"


def _replace_column_free(src: Path, dst: Path, column: str) -> None:
    """Rewrite ``src`` in its own format without ``column``."""
    suffix = src.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(src, dtype=str, keep_default_na=False)
        assert column in frame.columns, (column, list(frame.columns))
        frame.drop(columns=column).to_csv(dst, index=False)
        return
    if suffix == ".parquet":
        frame = gpd.read_parquet(src)
        assert column in frame.columns, (column, list(frame.columns))
        frame.drop(columns=column).to_parquet(dst)
        return
    import pyogrio

    layer = pyogrio.list_layers(src)[0][0]
    frame = gpd.read_file(src, layer=layer)
    assert column in frame.columns, (column, list(frame.columns))
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON"}[suffix]
    frame.drop(columns=column).to_file(dst, layer=layer, driver=driver, engine="pyogrio")


def _shapefile_without_prj(frame: gpd.GeoDataFrame, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.shp"
    with warnings.catch_warnings():  # no CRS and 10-character field names: on purpose
        warnings.simplefilter("ignore")
        frame.to_file(path, driver="ESRI Shapefile", engine="pyogrio", encoding="utf-8")
    path.with_suffix(".prj").unlink(missing_ok=True)
    assert gpd.read_file(path).crs is None
    return path


def _no_crs(case: Case, inp: Inputs, tmp: Path, paths: dict[str, str]) -> str:
    """A real layer as a Shapefile without .prj, with the mapping the command needs."""
    extra: list[str] = []
    if case.slot == "stations":  # real UK forecourts (WGS-84 lon/lat) as points
        raw = pd.read_csv(inp.shared / UK_STATIONS)
        frame = gpd.GeoDataFrame(
            {"station_id": raw["forecourts.node_id"].astype(str),
             "name": raw["forecourts.trading_name"].astype(str)},
            geometry=gpd.points_from_xy(raw["forecourts.location.longitude"],
                                        raw["forecourts.location.latitude"]))
    elif case.slot == "parcels":  # real AT reference parcels (EPSG:31287 metres)
        raw = gpd.read_file(f"/vsizip/{inp.shared / AT_REFERENCE}")
        frame = gpd.GeoDataFrame({"DKBM": raw["RFL_ID"].astype("int64").astype(str),
                                  "HTMJ": raw["BRUTTOFLAECHE_HA"] * 15.0,
                                  "TDYT": raw["REF_ART_BEZEICHNUNG"].astype(str)},
                                 geometry=raw.geometry.to_numpy())
    elif case.slot == "claims":  # real DK declared fields (EPSG:25832 metres) as claims
        raw = gpd.read_file(f"/vsizip/{inp.shared / DK_MARKER}")
        frame = gpd.GeoDataFrame({
            "claim_id": raw["Marknr"].astype(str) + "-" + raw.index.astype(str),
            "project_id": "P1", "claimant_id": raw["CVR"].astype(str), "item": "crops",
            "claimed_area_m2": raw["IMK_areal"] * 10000.0, "amount": 1000.0},
            geometry=raw.geometry.to_numpy())
        extra = ["--map", "claims.claimed_area_m2=claimed_ar"]  # Shapefile: 10 characters
    else:  # pragma: no cover - a case table error
        raise AssertionError(case)
    paths["_extra"] = extra
    return str(_shapefile_without_prj(frame, tmp / "no_crs", case.slot))


def bad_value(case: Case, inp: Inputs, tmp: Path, paths: dict[str, str], store: str) -> str:
    """The bad path or URL for ``case.slot``."""
    default = store if case.slot == "store" else paths.get(case.slot) or inp.fuel[case.slot]
    name = Path(default).name
    kind = case.kind
    if kind == "missing":
        return str(tmp / "nowhere" / name)
    if kind == "unreadable":
        copy = tmp / "locked" / name
        copy.parent.mkdir()
        shutil.copyfile(default, copy)
        return str(make_unreadable(copy))
    if kind in ("png_as_csv", "csv_as_gpkg", "text_as_zip", "csv_as_tif", "png_as_tif",
                "png_as_gpkg"):
        content, ext = kind.split("_as_")
        path = tmp / f"{case.slot}.{ext}"
        if content == "png":
            path.write_bytes(png_bytes())
        elif content == "csv":
            path.write_text("id,name,area\n1,north field,2.5\n2,south field,3.0\n",
                            encoding="utf-8")
        else:
            path.write_text("Please find the parcels attached.\nRegards, the village office\n",
                            encoding="utf-8")
        return str(path)
    if kind == "missing_column":
        assert case.column is not None
        path = tmp / "dropped" / name
        path.parent.mkdir()
        _replace_column_free(Path(default), path, case.column)
        return str(path)
    if kind == "no_crs":
        return _no_crs(case, inp, tmp, paths)
    if kind == "empty_dir":
        path = tmp / "partitions"
        path.mkdir()
        return str(path)
    if kind == "foreign_gpkg":  # a real GeoPackage that is not a geosup store
        path = tmp / "referentiepercelen.gpkg"
        shutil.copyfile(inp.shared / NL_REFERENCE, path)
        return str(path)
    if kind == "pg_unreachable":
        table = "" if case.slot == "store" else f"#public.{case.slot}"
        return f"postgresql://auditor:{PASSWORD}@127.0.0.1:{closed_port()}/audit{table}"
    if kind == "pg_malformed":
        table = "" if case.slot == "store" else f"#public.{case.slot}"
        return f"postgresql://[bad{table}"
    if kind == "pg_malformed_password":
        table = "" if case.slot == "store" else f"#public.{case.slot}"
        return f"postgresql://auditor:{PASSWORD}@[bad/audit{table}"
    raise AssertionError(kind)  # pragma: no cover


def expected_mention(case: Case, value: str) -> list[tuple[str, ...]]:
    """What the error line must mention (lower case; any one of each tuple), so that a
    clerk knows what to fix: the file, the column, the cause."""
    kind = case.kind
    if kind == "unreadable":
        return [("permission denied",), (Path(value).name.lower(),)]
    if kind in ("missing", "png_as_csv", "csv_as_gpkg", "text_as_zip", "csv_as_tif",
                "png_as_tif", "png_as_gpkg", "foreign_gpkg", "empty_dir"):
        return [(Path(value).name.lower(),)]
    if kind == "missing_column":
        return [(str(case.column).lower(),)]
    if kind == "no_crs":
        return [("coordinate reference system", "crs"), (Path(value).name.lower(),)]
    if kind == "pg_unreachable":
        return [("127.0.0.1",)]
    return []


def _cases() -> list[Case]:
    out: list[Case] = []
    store_kinds = ("pg_unreachable", "pg_malformed", "pg_malformed_password")
    # fuel audit: every input path missing or unreadable; the other kinds spread over them
    for slot in ("fixes", "transactions", "stations", "vehicles", "cards", "calendar"):
        out += [Case("fuel audit", slot, "missing"), Case("fuel audit", slot, "unreadable")]
    out += [
        Case("fuel audit", "vehicles", "png_as_csv"),
        Case("fuel audit", "stations", "csv_as_gpkg"),
        Case("fuel audit", "cards", "text_as_zip"),
        Case("fuel audit", "fixes", "empty_dir"),
        Case("fuel audit", "transactions", "missing_column", "Card Number ID"),
        Case("fuel audit", "vehicles", "missing_column", "vehicle_id"),
        Case("fuel audit", "stations", "no_crs"),
        Case("fuel audit", "transactions", "pg_unreachable"),
        Case("fuel audit", "vehicles", "pg_malformed_password"),
        Case("fuel audit", "store", "unreadable"),
        *(Case("fuel audit", "store", k) for k in store_kinds),
    ]
    for slot in ("declarations", "parcels", "land_use", "persons", "previous"):
        out += [Case("farmland reconcile", slot, "missing"),
                Case("farmland reconcile", slot, "unreadable")]
    out += [
        Case("farmland reconcile", "persons", "png_as_csv"),
        Case("farmland reconcile", "parcels", "csv_as_gpkg"),
        Case("farmland reconcile", "declarations", "text_as_zip"),
        Case("farmland reconcile", "declarations", "missing_column", "申报面积"),
        Case("farmland reconcile", "parcels", "missing_column", "HTMJ"),
        Case("farmland reconcile", "parcels", "no_crs"),
        Case("farmland reconcile", "declarations", "pg_unreachable"),
        Case("farmland reconcile", "parcels", "pg_malformed_password"),
        Case("farmland reconcile", "store", "unreadable"),
        *(Case("farmland reconcile", "store", k) for k in store_kinds),
    ]
    for slot in ("before", "after", "claims", "projects", "persons"):
        out += [Case("imagery compare", slot, "missing"),
                Case("imagery compare", slot, "unreadable")]
    out += [
        Case("imagery compare", "before", "csv_as_tif"),
        Case("imagery compare", "after", "png_as_tif"),
        Case("imagery compare", "persons", "png_as_csv"),
        Case("imagery compare", "claims", "csv_as_gpkg"),
        Case("imagery compare", "projects", "text_as_zip"),
        Case("imagery compare", "claims", "missing_column", "item"),
        Case("imagery compare", "projects", "missing_column", "notice_date"),
        Case("imagery compare", "claims", "no_crs"),
        Case("imagery compare", "claims", "pg_unreachable"),
        Case("imagery compare", "projects", "pg_malformed_password"),
        Case("imagery compare", "store", "unreadable"),
        *(Case("imagery compare", "store", k) for k in store_kinds),
    ]
    out += [Case("imagery ingest", "src", k)
            for k in ("missing", "unreadable", "csv_as_tif", "png_as_tif")]
    for command in ("export", "map", "alerts list"):
        out += [Case(command, "store", k)
                for k in ("missing", "unreadable", "csv_as_gpkg", "png_as_gpkg",
                          "foreign_gpkg", *store_kinds)]
    return out


CASES = _cases()


def _invoke(case: Case, inp: Inputs, tmp: Path, *, verbose: bool) -> tuple[Outcome, str]:
    command = COMMANDS[case.command]
    paths = _default_paths(command, inp)
    store = str(tmp / "store" / "geosup.gpkg")
    (tmp / "store").mkdir()
    (tmp / "out").mkdir()
    if command.inputs == "store" or case.slot == "store":
        shutil.copyfile(inp.store, store)  # an existing store: re-runs and readers
    value = bad_value(case, inp, tmp, paths, store)
    if case.slot == "store":
        store = value
    else:
        paths[case.slot] = value
    args = command.build(paths, store, tmp)
    if verbose:
        args = ["-v", *args]
    return run(args, cwd=tmp, unprivileged=case.kind == "unreadable"), value


def _assert_no_password(res: Outcome) -> None:
    assert PASSWORD not in res.stdout + res.stderr, f"the password is printed:\n{res}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line(case: Case, inputs: Inputs, tmp_path: Path) -> None:
    res, value = _invoke(case, inputs, tmp_path, verbose=False)
    _assert_no_password(res)
    assert "Traceback" not in res.stderr, f"a traceback without -v:\n{res}"
    assert res.returncode == 1, f"exit code {res.returncode}, not 1:\n{res}"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"{len(lines)} lines on stderr, not one:\n{res}"
    line = lines[0]
    assert line.startswith(ERROR_PREFIX), f"the line does not start {ERROR_PREFIX!r}:\n{res}"
    assert not line.startswith(f"{ERROR_PREFIX}unexpected"), (
        f"an unexpected error (not a GeosupError) for bad input:\n{res}")
    for words in expected_mention(case, value):
        assert any(w in line.lower() for w in words), (
            f"the line does not mention {' or '.join(map(repr, words))}:\n{res}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_traceback_with_verbose(case: Case, inputs: Inputs, tmp_path: Path) -> None:
    res, _ = _invoke(case, inputs, tmp_path, verbose=True)
    _assert_no_password(res)
    assert res.returncode == 1, f"exit code {res.returncode}, not 1:\n{res}"
    assert "Traceback (most recent call last)" in res.stderr, f"no traceback with -v:\n{res}"
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith(ERROR_PREFIX), f"the last line is not the error line:\n{res}"


#: the real CRS of each layer the ``no_crs`` cases strip of its .prj
NO_CRS_EPSG = {"stations": 4326, "parcels": 31287, "claims": 25832}
NO_CRS_CASES = [c for c in CASES if c.kind == "no_crs"]


@pytest.mark.parametrize("case", NO_CRS_CASES, ids=[c.id for c in NO_CRS_CASES])
def test_missing_crs_advice_works(case: Case, inputs: Inputs, tmp_path: Path) -> None:
    """The missing-CRS error advises a flag; following the advice gets past the error."""
    res, _ = _invoke(case, inputs, tmp_path, verbose=False)
    assert res.returncode == 1, str(res)
    advice = re.findall(r"(--[a-z][a-z-]*)[ =](\S*<code>\S*)", res.stderr)
    assert advice, f"no flag with an EPSG:<code> to fill in is advised:\n{res}"
    flag, template = advice[0]
    fixed = template.replace("<code>", str(NO_CRS_EPSG[case.slot])).rstrip(".,;)")
    args = [*res.args, flag, fixed]
    again = run(args, cwd=tmp_path)
    assert again.returncode != 2, f"the advised flag {flag} is not accepted:\n{again}"
    assert "Traceback" not in again.stderr, str(again)
    assert "coordinate reference system" not in again.stderr, (
        f"following the advice {flag} {fixed} does not declare the CRS:\n{again}")
    assert again.returncode == 0, str(again)
    assert _counts(again.stderr).get(case.slot), (
        f"no rows in / used / rejected for {case.slot}:\n{again}")


# ---------------------------------------------------------------------------------------------
# The success path: rows in / used / rejected for every input of every check
# ---------------------------------------------------------------------------------------------


def _counts(stderr: str) -> dict[str, tuple[int, int, int]]:
    out = {}
    for line in stderr.splitlines():
        m = COUNTS_LINE.match(line.strip())
        if m:
            out[m["name"]] = tuple(int(m[k].replace(",", ""))
                                   for k in ("rows_in", "used", "rejected"))
    return out


@pytest.mark.parametrize("command", ["fuel audit", "farmland reconcile", "imagery compare"])
def test_check_prints_rows_in_used_rejected_per_input(command: str, inputs: Inputs,
                                                      tmp_path: Path) -> None:
    spec = COMMANDS[command]
    paths = _default_paths(spec, inputs)
    res = run(spec.build(paths, str(tmp_path / "geosup.gpkg"), tmp_path), cwd=tmp_path)
    assert res.returncode == 0, str(res)
    given = {k for k in paths if not k.startswith("_")} - {"before", "after", "src"}
    counts = _counts(res.stderr)
    assert set(counts) == given, f"counts for {sorted(counts)}, inputs {sorted(given)}:\n{res}"
    for name, (rows_in, used, rejected) in counts.items():
        assert rows_in == used + rejected > 0, (name, rows_in, used, rejected)
    assert sum(r for _, _, r in counts.values()) > 0  # the demos carry bad rows


def test_check_counts_for_a_database_input(inputs: Inputs, tmp_path: Path,
                                           postgis_url: str) -> None:
    """A ``postgresql://`` input is counted under its input name like a file."""
    import psycopg

    frame = pd.read_csv(inputs.fuel["vehicles"], dtype=str)
    with psycopg.connect(postgis_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.vehicles (" + ", ".join(
            f'"{c}" text' for c in frame.columns) + ")")
        with conn.cursor().copy("COPY public.vehicles FROM STDIN") as copy:
            for row in frame.itertuples(index=False):
                copy.write_row([None if pd.isna(v) else v for v in row])
    paths = _default_paths(COMMANDS["fuel audit"], inputs)
    url = postgis_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    paths["vehicles"] = f"{url}#public.vehicles"
    res = run(_fuel_args(paths, str(tmp_path / "geosup.gpkg"), tmp_path), cwd=tmp_path)
    _assert_no_password(res)
    assert res.returncode == 0, str(res)
    assert _counts(res.stderr)["vehicles"] == (len(frame), len(frame), 0), str(res)


def test_missing_table_in_a_reachable_database(inputs: Inputs, tmp_path: Path,
                                               postgis_url: str) -> None:
    """A table that is not there: one line naming it, and no password."""
    paths = _default_paths(COMMANDS["fuel audit"], inputs)
    url = postgis_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    paths["cards"] = f"{url}#public.fuel_cards_2024"
    res = run(_fuel_args(paths, str(tmp_path / "geosup.gpkg"), tmp_path), cwd=tmp_path)
    _assert_no_password(res)
    assert res.returncode == 1, str(res)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), str(res)
    assert "fuel_cards_2024" in lines[0], str(res)


@pytest.mark.parametrize("command", ["export", "map", "alerts list"])
def test_store_database_without_schema(command: str, inputs: Inputs, tmp_path: Path,
                                       postgis_url: str) -> None:
    """A reachable database that holds no geosup store: one line, no password."""
    url = postgis_url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    (tmp_path / "out").mkdir()
    res = run(COMMANDS[command].build({}, url, tmp_path), cwd=tmp_path)
    _assert_no_password(res)
    assert res.returncode == 1, str(res)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), str(res)
    assert not lines[0].startswith(f"{ERROR_PREFIX}unexpected"), str(res)

