"""Tests of geosup.io on the real data in ../shared/data and on small bad files."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geosup.errors import (
    CRSError,
    DataSourceError,
    GeometryRepairWarning,
    GeosupError,
    SchemaError,
)
from geosup.io import LEDGER_COLUMNS, REPAIR_COLUMNS, ReadResult, RejectsLedger, read_table

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"

LIVERPOOL = "trajectories/liverpool_bus_route14_outbound_2026-01-26.csv"
GEOLIFE_CSV = "trajectories/geolife_small.csv"
GEOLIFE_GPKG = "trajectories/geolife_small.gpkg"
LIMERICK_GPX = "trajectories/bus304_limerick_2019-02-18_0745.gpx"
URBANA = "trajectories/urbana_fleet_fuel_card_transactions_2017.csv"


@pytest.fixture(scope="module")
def data(shared_data: Path) -> Path:
    """``../shared/data`` beside the checkout (skips only when it is absent)."""
    return shared_data


def check_invariant(result: ReadResult) -> None:
    assert result.rows_in == result.rows_used + result.rows_rejected
    assert len(result.frame) == result.rows_used
    assert "_row" in result.frame.columns
    assert result.frame["_row"].dtype == np.int64
    ledger = result.ledger.frame()
    assert tuple(ledger.columns) == LEDGER_COLUMNS
    assert result.ledger.counts().get(result.source, 0) >= result.rows_rejected
    # Every row number is accounted for exactly once: used or rejected.
    mine = ledger[ledger["source"] == result.source]["row"].tolist()
    seen = sorted(result.frame["_row"].tolist() + mine)
    assert len(seen) == len(set(seen)) == result.rows_in


def reasons(result: ReadResult) -> list[str]:
    return result.ledger.frame()["reason"].tolist()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------------------------


def test_data_path_resolves_beside_checkout() -> None:
    # ../shared/data beside the checkout, wherever the checkout lives (CI clones elsewhere).
    checkout = Path(__file__).resolve().parents[2]
    assert (checkout / "pyproject.toml").is_file()
    assert checkout.parent / "shared" / "data" == DATA
    assert (DATA / "trajectories").is_dir(), f"real data missing at {DATA}"


def test_liverpool_bus_csv_with_mapping(data: Path) -> None:
    result = read_table(
        data / LIVERPOOL,
        columns={"time": "timestamp", "lat": "latitude", "lon": "longitude"},
        required=["vehicle_id", "time", "lon", "lat"],
        time_columns=["time"],
        numeric_columns=["bearing"],
        id_column="id",
        tz="UTC",  # the README: timestamps are in UTC
    )
    check_invariant(result)
    assert result.rows_in == 1533
    assert result.rows_used == 1533
    frame = result.frame
    assert isinstance(frame, gpd.GeoDataFrame)
    assert frame.crs.to_epsg() == 4326
    assert str(frame["time"].dtype) == "datetime64[us, UTC]"
    # First and last fix as the README lists them (the file is not sorted by time).
    assert frame["time"].iloc[0] == pd.Timestamp("2026-01-26 15:57:02", tz="UTC")
    assert frame["time"].iloc[-1] == pd.Timestamp("2026-01-26 18:18:55", tz="UTC")
    assert frame["vehicle_id"].nunique() == 8
    assert frame["vehicle_id"].value_counts()["4720"] == 278
    minx, miny, maxx, maxy = frame.total_bounds
    assert -2.9850 < minx < maxx < -2.8936
    assert 53.4066 < miny < maxy < 53.4624
    assert np.allclose(frame.geometry.x, frame["lon"])
    assert np.allclose(frame.geometry.y, frame["lat"])
    assert frame["bearing"].isna().sum() >= 1  # the first fix has no bearing: NaN, not a reject
    assert frame["_row"].tolist() == list(range(1, 1534))


def test_liverpool_naive_times_default_zone_is_logged(
    data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="geosup.io"):
        result = read_table(
            data / LIVERPOOL,
            columns={"time": "timestamp", "lat": "latitude", "lon": "longitude"},
            time_columns=["time"],
        )
    check_invariant(result)
    # Naive times are read in Asia/Shanghai (UTC+8) unless told otherwise.
    assert result.frame["time"].iloc[0] == pd.Timestamp("2026-01-26 07:57:02", tz="UTC")
    notes = [r.getMessage() for r in caplog.records if "naive times" in r.getMessage()]
    assert len(notes) == 1
    assert "'time'" in notes[0] and "Asia/Shanghai" in notes[0] and "UTC" in notes[0]


def test_geolife_semicolon_csv(data: Path) -> None:
    result = read_table(
        data / GEOLIFE_CSV,
        columns={"lon": "X", "lat": "Y", "time": "t", "vehicle_id": "tracker"},
        required=["vehicle_id", "time"],
        time_columns=["time"],
        id_column="fid",
    )
    check_invariant(result)
    assert result.rows_in == result.rows_used == 5908
    frame = result.frame
    assert list(frame.columns[:3]) == ["_row", "lon", "lat"]
    assert frame["vehicle_id"].value_counts().to_dict() == {"2": 4545, "0": 897, "19": 466}
    assert frame["trajectory_id"].nunique() == 5
    # "+00" offsets are honoured (not read as Asia/Shanghai).
    assert frame["time"].min() == pd.Timestamp("2008-12-11 04:42:14", tz="UTC")
    assert frame["time"].max() == pd.Timestamp("2009-06-29 11:13:12", tz="UTC")
    assert frame.crs.to_epsg() == 4326


def test_geolife_gpkg(data: Path) -> None:
    result = read_table(
        data / GEOLIFE_GPKG, columns={"time": "t"}, time_columns=["time"], required=["time"]
    )
    check_invariant(result)
    assert result.rows_in == result.rows_used == 5908
    frame = result.frame
    assert frame.crs.to_epsg() == 4326
    assert set(frame.geom_type) == {"Point"}
    assert {"id", "sequence", "trajectory_id", "tracker", "time"} <= set(frame.columns)
    assert frame["time"].min() == pd.Timestamp("2008-12-11 04:42:14", tz="UTC")
    csv_result = read_table(
        data / GEOLIFE_CSV, columns={"lon": "X", "lat": "Y", "time": "t"}, time_columns=["time"]
    )
    assert np.allclose(frame.geometry.x, csv_result.frame.geometry.x)
    assert (frame["time"] == csv_result.frame["time"]).all()


def test_limerick_gpx_track_points(data: Path) -> None:
    result = read_table(data / LIMERICK_GPX, time_columns=["time"], required=["time"])
    check_invariant(result)
    assert result.source.endswith(":track_points")
    assert result.rows_in == result.rows_used == 2144
    frame = result.frame
    assert frame.crs.to_epsg() == 4326
    assert frame["time"].min() == pd.Timestamp("2019-02-18 07:45:50", tz="UTC")
    assert frame["time"].max() == pd.Timestamp("2019-02-18 09:00:26", tz="UTC")
    assert frame["ele"].notna().all()
    explicit = read_table(data / LIMERICK_GPX, layer="track_points")
    assert explicit.rows_in == 2144


def test_gpx_empty_layer_and_unknown_layer(data: Path) -> None:
    with pytest.raises(DataSourceError, match="empty, no rows"):
        read_table(data / LIMERICK_GPX, layer="waypoints")
    with pytest.raises(DataSourceError, match=r"no layer 'stops'.*track_points"):
        read_table(data / LIMERICK_GPX, layer="stops")


@pytest.mark.parametrize(
    ("path", "epsg", "geom_types", "column"),
    [
        ("parcels/declared/at/inspire_schlaege_2025-1_polygon.gpkg.zip", 31287, {"Polygon"},
         "FS_KENNUNG"),
        ("parcels/declared/dk/Marker_2026.zip", 25832, {"Polygon"}, "CVR"),
        ("parcels/declared/fr/extracted/PARCELLES_GRAPHIQUES.gpkg", 2154, {"MultiPolygon"},
         "id_parcel"),
        ("parcels/declared/nl/brpgewaspercelen_definitief_2023.gpkg", 28992, {"Polygon"},
         "gewascode"),
        ("parcels/reference/de_sh/Feldbloecke_2026_GPKG.zip", 4647, {"MultiPolygon"}, "FLIK"),
    ],
)
def test_parcel_layers(
    data: Path, path: str, epsg: int, geom_types: set[str], column: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeometryRepairWarning)
        result = read_table(data / path, required=["geometry", column])
    check_invariant(result)
    assert result.rows_in == 100
    assert result.rows_used + len(result.ledger) == 100
    frame = result.frame
    assert isinstance(frame, gpd.GeoDataFrame)
    assert frame.crs.to_epsg() == epsg
    assert set(frame.geom_type) == geom_types
    assert frame.geometry.is_valid.all()
    assert (frame.area > 0).all()
    assert result.source == Path(path).name


def test_french_parcels_with_id_mapping(data: Path) -> None:
    result = read_table(
        data / "parcels/declared/fr/extracted/PARCELLES_GRAPHIQUES.gpkg",
        columns={"parcel_id": "id_parcel", "eligible_area": "surf_parc", "land_use": "code_cultu"},
        required=["parcel_id", "geometry"],
        id_column="parcel_id",
        numeric_columns=["eligible_area"],
    )
    check_invariant(result)
    assert result.rows_used == 100
    frame = result.frame
    assert frame["parcel_id"].is_unique
    assert frame["eligible_area"].dtype == np.float64
    # surf_parc is in ha with 2 decimals: it agrees with the polygon area (EPSG:2154 metres).
    assert np.allclose(frame["eligible_area"], frame.area / 10_000, atol=0.01, rtol=0.02)


def test_zip_member_chosen_by_layer(data: Path, tmp_path: Path) -> None:
    result = read_table(data / "parcels/declared/dk/Marker_2026.zip", layer="Marker_2026")
    check_invariant(result)
    assert result.rows_in == 100
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(data / GEOLIFE_GPKG, "a.gpkg")
        zf.write(data / "parcels/declared/nl/brpgewaspercelen_definitief_2023.gpkg", "b.gpkg")
    with pytest.raises(DataSourceError, match=r"2 datasets \(a.gpkg, b.gpkg\).*layer="):
        read_table(archive)
    picked = read_table(archive, layer="b")
    assert picked.rows_in == 100
    assert picked.frame.crs.to_epsg() == 28992


def test_urbana_fuel_card_transactions(data: Path) -> None:
    result = read_table(
        data / URBANA,
        columns={
            "tx_id": "Transaction Id",
            "card_id": "Card Number ID",
            "vehicle_id": "Vehicle ID",
            "station_id": "Merchant Site ID",
            "litres": "Units",  # gallons in this export; units are declared downstream
            "amount": "Net Cost",
            "product": "Product Class",
        },
        combine_columns={"time": ["Transaction Date", "Transaction Time"]},
        required=["tx_id", "card_id", "time", "litres", "amount", "product"],
        time_columns=["time"],
        numeric_columns=["litres", "amount"],
        id_column="tx_id",
        tz="America/Chicago",
    )
    check_invariant(result)
    assert result.rows_in == 6570
    assert isinstance(result.frame, pd.DataFrame)
    assert not isinstance(result.frame, gpd.GeoDataFrame)
    ledger = result.ledger.frame()
    dups = ledger[ledger["reason"].str.startswith("duplicate tx_id")]
    assert len(dups) == 3
    assert "duplicate tx_id '8629533480' (first on row 1)" in dups["reason"].tolist()
    # 01:xx on 2017-11-05 happened twice in Illinois (end of daylight saving time).
    dst = ledger[ledger["reason"].str.contains("ambiguous in America/Chicago")]
    assert len(dst) == 3
    assert all(json.loads(raw)["Transaction Date"] == "11/05/2017" for raw in dst["raw"])
    assert result.rows_used == 6570 - 6
    frame = result.frame
    assert frame["litres"].max() == pytest.approx(79.02)
    assert (frame["litres"] > 30).sum() == 345
    first = frame.loc[frame["tx_id"] == "8629533480"].iloc[0]
    # 10/26/2017 12:01:22 Central Daylight Time = 17:01:22 UTC
    assert first["time"] == pd.Timestamp("2017-10-26 17:01:22", tz="UTC")


def test_urbana_missing_station_ids_are_rejected(data: Path) -> None:
    with (data / URBANA).open(encoding="utf-8", newline="") as fh:
        blank = sum(1 for rec in csv.DictReader(fh) if not rec["Merchant Site ID"].strip())
    assert blank > 0
    result = read_table(
        data / URBANA, columns={"station_id": "Merchant Site ID"}, required=["station_id"]
    )
    check_invariant(result)
    assert result.rows_rejected == blank
    assert set(reasons(result)) == {"missing value in required column 'station_id'"}


def test_urbana_mapping_to_existing_columns(data: Path) -> None:
    result = read_table(
        data / URBANA,
        columns={"tx_id": "Transaction Id", "card_id": "Card Number ID", "time": "Posted Date"},
        time_columns=["time"],
        required=["tx_id", "card_id", "time"],
    )
    check_invariant(result)
    assert result.rows_in == 6570
    assert result.rows_used == 6570
    assert result.rows_rejected == 0
    assert "Transaction Id" not in result.frame.columns


# ---------------------------------------------------------------------------------------------
# Whole-file failures
# ---------------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "fixes.csv"
    with pytest.raises(DataSourceError, match="no such file") as info:
        read_table(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError) and isinstance(info.value, GeosupError)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="is a directory") as info:
        read_table(tmp_path)
    assert str(tmp_path) in str(info.value)


_READ_IN_CHILD = """\
import json, sys
from geosup.io import read_table
try:
    read_table(sys.argv[1])
except Exception as err:
    print(json.dumps({"raised": [c.__name__ for c in type(err).__mro__], "message": str(err)}))
else:
    print(json.dumps({"raised": [], "message": "read without error"}))
"""


def _without_permission_override() -> list[str]:
    """A command prefix under which a ``chmod 000`` file really cannot be read.

    A normal user needs none. Root (CI runs as root) would read the file anyway, so the
    read runs under ``setpriv`` without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: root then
    obeys file permissions (and still reads what it owns: the interpreter, the checkout),
    wherever the interpreter lives (a venv python under /root is out of reach for nobody).
    """
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root, and setpriv (util-linux) is missing: cannot read the "
                    "file without the right to bypass its permissions")
    return ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
            "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX file permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "locked.csv", "a,b\n1,2\n")
    path.chmod(0)
    try:
        res = subprocess.run([*_without_permission_override(), sys.executable, "-c",
                              _READ_IN_CHILD, str(path)], capture_output=True, text=True,
                             cwd=tmp_path, timeout=300, check=False)
    finally:
        path.chmod(0o644)
    assert res.returncode == 0, res.stderr
    raised = json.loads(res.stdout.strip().splitlines()[-1])
    assert "DataSourceError" in raised["raised"], raised
    assert {"GeosupError", "OSError"} <= set(raised["raised"]), raised
    assert "permission denied" in raised["message"], raised
    assert str(path) in raised["message"], raised


@pytest.mark.parametrize("suffix", [".csv", ".gpkg", ".parquet", ".geojson", ".zip"])
def test_zero_byte_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataSourceError, match="empty, no rows") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_header_only_csv(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "header.csv", "vehicle_id,time,lon,lat\n")
    with pytest.raises(DataSourceError, match="empty, no rows"):
        read_table(path)
    blank = write_csv(tmp_path / "blank.csv", "\n\n  \n")
    with pytest.raises(DataSourceError, match="empty, no rows"):
        read_table(blank)


def test_empty_layer(tmp_path: Path) -> None:
    path = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"a": pd.Series([], dtype="int64")}, geometry=[], crs=4326).to_file(path)
    with pytest.raises(DataSourceError, match="empty, no rows"):
        read_table(path)


def test_csv_named_gpkg(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "parcels.gpkg", "parcel_id,area\nP1,3\n")
    with pytest.raises(DataSourceError, match="not a valid GeoPackage") as info:
        read_table(path)
    assert str(path) in str(info.value) and "plain text" in str(info.value)


def test_random_bytes_named_parquet(tmp_path: Path) -> None:
    path = tmp_path / "fixes.parquet"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(DataSourceError, match="not a valid Parquet") as info:
        read_table(path)
    assert str(path) in str(info.value)


def test_corrupt_parquet_is_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"garbage" * 100 + b"PAR1")
    with pytest.raises(DataSourceError, match=r"cannot read .*broken\.parquet as Parquet") as info:
        read_table(path)
    assert info.value.__cause__ is not None


def test_png_named_csv(tmp_path: Path) -> None:
    path = tmp_path / "fixes.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(DataSourceError, match="PNG image"):
        read_table(path)


def test_corrupt_gpkg_is_wrapped(tmp_path: Path) -> None:
    path = tmp_path / "broken.gpkg"
    path.write_bytes(b"SQLite format 3\x00" + b"\x01" * 2000)
    with pytest.raises(DataSourceError, match=r"broken\.gpkg") as info:
        read_table(path)
    assert info.value.__cause__ is not None


def test_text_named_zip(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "parcels.zip", "not,a,zip\n")
    with pytest.raises(DataSourceError, match="not a valid zip"):
        read_table(path)


def test_zip_without_dataset(tmp_path: Path) -> None:
    path = tmp_path / "docs.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.md", "nothing here")
    with pytest.raises(DataSourceError, match=r"no readable dataset.*readme\.md"):
        read_table(path)


# ---------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------


def test_missing_required_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fixes.csv", "Vehicle,When,X,Y\nV1,2026-01-01 08:00,116.4,39.9\n")
    with pytest.raises(SchemaError) as info:
        read_table(path, columns={"time": "When"}, required=["vehicle_id", "time"])
    text = str(info.value)
    assert "'vehicle_id'" in text
    assert "Vehicle, time, X, Y" in text or "Vehicle, When, X, Y" in text
    assert "--map vehicle_id=" in text


def test_mapping_names_unknown_source_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fixes.csv", "Vehicle,When\nV1,2026-01-01 08:00\n")
    with pytest.raises(SchemaError, match=r"'Vehicle ID'.*available columns: Vehicle, When"):
        read_table(path, columns={"vehicle_id": "Vehicle ID"})


def test_mapping_is_case_insensitive_when_unambiguous(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fixes.csv", "Vehicle,When\nV1,2026-01-01 08:00\n")
    result = read_table(path, columns={"vehicle_id": "vehicle"}, required=["vehicle_id"])
    assert result.frame["vehicle_id"].tolist() == ["V1"]


def test_mapping_onto_an_existing_column_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "fixes.csv", "time,When\nx,2026-01-01 08:00\n")
    with pytest.raises(SchemaError, match="already has a column 'time'"):
        read_table(path, columns={"time": "When"})


# ---------------------------------------------------------------------------------------------
# Row validation
# ---------------------------------------------------------------------------------------------


def test_duplicate_ids(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "stations.csv",
        "station_id,name,lon,lat\nS1,A,116.40,39.90\nS2,B,116.41,39.91\nS1,C,116.42,39.92\n"
        "S1,D,116.43,39.93\n,E,116.44,39.94\n",
    )
    result = read_table(path, id_column="station_id")
    check_invariant(result)
    assert result.rows_in == 5
    assert result.frame["name"].tolist() == ["A", "B"]
    ledger = result.ledger.frame()
    assert ledger["row"].tolist() == [5, 3, 4]
    assert ledger["key"].tolist() == ["", "S1", "S1"]
    assert ledger["reason"].tolist() == [
        "missing value in id column 'station_id'",
        "duplicate station_id 'S1' (first on row 1)",
        "duplicate station_id 'S1' (first on row 1)",
    ]
    assert json.loads(ledger["raw"].iloc[1]) == {
        "station_id": "S1", "name": "C", "lon": "116.42", "lat": "39.92",
    }


def test_duplicate_of_a_rejected_row_is_kept(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", "id,lon,lat\nS1,abc,39.9\nS1,116.4,39.9\n")
    result = read_table(path, id_column="id")
    check_invariant(result)
    assert result.frame["_row"].tolist() == [2]
    assert reasons(result) == ["lon/lat is not a number"]


def test_unparseable_times_and_coordinates(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "fixes.csv",
        "vehicle_id,time,lon,lat,speed\n"
        "V1,2026-01-26 08:00:00,116.40,39.90,30\n"
        "V1,yesterday-ish,116.40,39.90,30\n"
        "V1,2026-01-26 08:01:00,east,39.90,30\n"
        "V1,2026-01-26 08:02:00,116.40,,30\n"
        "V1,2026-01-26 08:03:00,116.40,39.90,fast\n"
        "V1,2026-02-30 08:04:00,116.40,39.90,30\n"
        ",2026-01-26 08:05:00,116.40,39.90,30\n"
        "V1,2026-01-26 08:06:00,116.40,39.90,\n",
    )
    result = read_table(
        path, required=["vehicle_id", "time"], time_columns=["time"], numeric_columns=["speed"]
    )
    check_invariant(result)
    assert result.rows_in == 8
    assert result.frame["_row"].tolist() == [1, 8]
    assert np.isnan(result.frame["speed"].iloc[1])  # optional numeric: missing stays NaN
    by_row = dict(zip(result.ledger.frame()["row"], result.ledger.frame()["reason"], strict=True))
    assert by_row == {
        7: "missing value in required column 'vehicle_id'",
        2: "unparseable time in column 'time'",
        6: "unparseable time in column 'time'",
        5: "not a number in column 'speed'",
        4: "missing lon/lat value",
        3: "lon/lat is not a number",
    }
    raw = json.loads(result.ledger.frame().set_index("row").loc[2, "raw"])
    assert raw == {"vehicle_id": "V1", "time": "yesterday-ish", "lon": "116.40", "lat": "39.90",
                   "speed": "30"}


def test_time_zones(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_csv(
        tmp_path / "t.csv",
        "id,time\n1,2026-01-26T08:00:00+08:00\n2,2026-01-26 08:00:00\n3,2026-01-26T00:00:00Z\n"
        "4,26/01/2026 08:00\n5,2026-01-26 00:00:00 UTC\n6,2026-01-25T19:00:00-05:00\n",
    )
    with caplog.at_level(logging.INFO, logger="geosup.io"):
        result = read_table(path, time_columns=["time"])
    check_invariant(result)
    assert result.rows_used == 6
    assert (result.frame["time"] == pd.Timestamp("2026-01-26 00:00", tz="UTC")).all()
    notes = [r for r in caplog.records if "naive times" in r.getMessage()]
    assert len(notes) == 1 and "Asia/Shanghai" in notes[0].getMessage()


def test_nonexistent_local_time(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", "id,time\n1,2026-03-08 02:30:00\n2,2026-03-08 03:30:00\n")
    result = read_table(path, time_columns=["time"], tz="America/New_York")
    check_invariant(result)
    assert reasons(result) == [
        "time in column 'time' does not exist or is ambiguous in America/New_York"
    ]
    assert result.frame["time"].iloc[0] == pd.Timestamp("2026-03-08 07:30", tz="UTC")


def test_swapped_out_of_range_and_null_island(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "fixes.csv",
        "id,lon,lat\n"
        "ok,-2.93,53.44\n"
        "swapped,53.44,-122.93\n"
        "lat_out,120.0,95.0\n"
        "lon_out,190.0,53.44\n"
        "both_out,200.0,100.0\n"
        "zero,0,0\n"
        "zero_lon_only,0,51.48\n",
    )
    result = read_table(path, id_column="id")
    check_invariant(result)
    assert result.frame["id"].tolist() == ["ok", "zero_lon_only"]
    ledger = result.ledger.frame().set_index("key")
    assert ledger.loc["swapped", "reason"].startswith("lat/lon look swapped")
    for key in ("lat_out", "lon_out", "both_out"):
        assert ledger.loc[key, "reason"] == "lon/lat out of range (|lat| > 90 or |lon| > 180)"
    assert ledger.loc["zero", "reason"].startswith("lon/lat is exactly (0, 0)")
    # Swapped pairs are reported, never silently fixed.
    assert result.frame.geometry.y.between(-90, 90).all()


def test_gcj02_points_are_converted(tmp_path: Path) -> None:
    from geosup.crs import gcj02_to_wgs84

    path = write_csv(tmp_path / "s.csv", "id,lon,lat\nA,116.38404722455657,39.91334545536069\n")
    result = read_table(path, coord_system="GCJ-02")
    check_invariant(result)
    lon, lat = gcj02_to_wgs84(116.38404722455657, 39.91334545536069)
    point = result.frame.geometry.iloc[0]
    assert point.x == pytest.approx(float(lon), abs=1e-9)
    assert point.y == pytest.approx(float(lat), abs=1e-9)
    assert result.frame["lon"].iloc[0] == pytest.approx(116.377817, abs=1e-6)
    assert result.frame.crs.to_epsg() == 4326


def test_unknown_coord_system(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", "id,lon,lat\nA,116.4,39.9\n")
    with pytest.raises(CRSError, match="unknown coordinate system"):
        read_table(path, coord_system="mercator-ish")


def test_blank_and_malformed_csv_lines(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "fixes.csv",
        'id,name,lon,lat\n1,a,116.4,39.9\n\n2,"b, c",116.4,39.9\n3,d,116.4,39.9,extra\n'
        "4,e,116.4,39.9\n\n",
    )
    result = read_table(path, id_column="id")
    check_invariant(result)
    assert result.rows_in == 5  # the trailing blank line is not a row
    assert result.frame["name"].tolist() == ["a", "b, c", "e"]
    by_row = dict(zip(result.ledger.frame()["row"], result.ledger.frame()["reason"], strict=True))
    assert by_row[2] == "blank row"
    assert by_row[4].startswith("line has more fields than the header")
    raw = json.loads(result.ledger.frame().set_index("row").loc[4, "raw"])
    assert raw["_extra"] == "extra"


def test_gb18030_csv(tmp_path: Path) -> None:
    path = tmp_path / "cards.csv"
    path.write_bytes("卡号,单位\nC1,交通局\nC2,财政局\n".encode("gb18030"))
    result = read_table(path, columns={"card_id": "卡号", "unit": "单位"}, id_column="card_id")
    check_invariant(result)
    assert result.frame["unit"].tolist() == ["交通局", "财政局"]


def test_utf16_tab_separated_export(tmp_path: Path) -> None:
    # Excel's "Unicode text" export: UTF-16 with a BOM, tab-separated.
    path = tmp_path / "cards.txt"
    path.write_bytes("card_id\tholder\nC1\t张三\nC2\t李四\n".encode("utf-16"))
    result = read_table(path, id_column="card_id")
    check_invariant(result)
    assert result.frame["holder"].tolist() == ["张三", "李四"]


def test_failed_read_leaves_ledger_untouched(tmp_path: Path) -> None:
    ledger = RejectsLedger()
    path = write_csv(tmp_path / "p.csv", "id,geometry\n1,POINT (1 1)\n2,\n3,x,y\n")
    with pytest.raises(CRSError):
        read_table(path, ledger=ledger)
    with pytest.raises(SchemaError):
        read_table(path, ledger=ledger, required=["parcel_id"])
    assert len(ledger) == 0
    result = read_table(path, ledger=ledger, crs=4326)
    check_invariant(result)
    assert result.rows_in == 3 and result.rows_used == 1


def test_geometry_modes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", "id,x,y\nA,500000,4000000\nB,500100,4000100\n")
    plain = read_table(path, columns={"lon": "x", "lat": "y"}, geometry="none")
    assert not isinstance(plain.frame, gpd.GeoDataFrame)
    assert plain.frame["lon"].tolist() == ["500000", "500100"]  # untouched text
    projected = read_table(path, lon="x", lat="y", crs="EPSG:32650")
    check_invariant(projected)
    assert projected.frame.crs.to_epsg() == 32650
    assert projected.frame.geometry.x.tolist() == [500000.0, 500100.0]
    with pytest.raises(SchemaError, match="--map lon="):
        read_table(path, geometry="lonlat")
    with pytest.raises(CRSError, match="not a coordinate reference system"):
        read_table(path, lon="x", lat="y", crs="EPSG:nonsense")


def test_gcj02_point_layer_is_converted_and_polygons_refused(tmp_path: Path) -> None:
    from geosup.crs import gcj02_to_wgs84

    points = _geojson(tmp_path / "stations.geojson", [
        {"type": "Feature", "properties": {"station_id": "S1"},
         "geometry": {"type": "Point", "coordinates": [116.38404722455657, 39.91334545536069]}},
        {"type": "Feature", "properties": {"station_id": "S2"},
         "geometry": {"type": "Point", "coordinates": [39.9, 116.4]}},
    ])
    result = read_table(points, coord_system="gcj02", id_column="station_id")
    check_invariant(result)
    lon, lat = gcj02_to_wgs84(116.38404722455657, 39.91334545536069)
    assert result.frame.geometry.x.iloc[0] == pytest.approx(float(lon), abs=1e-9)
    assert result.frame.geometry.y.iloc[0] == pytest.approx(float(lat), abs=1e-9)
    assert reasons(result)[0].startswith("lat/lon look swapped")
    polygons = _geojson(tmp_path / "parcels.geojson", [
        {"type": "Feature", "properties": {"parcel_id": "P1"},
         "geometry": {"type": "Polygon", "coordinates": [[[116, 39], [116.1, 39], [116.1, 39.1],
                                                          [116, 39]]]}},
    ])
    with pytest.raises(CRSError, match="Points"):
        read_table(polygons, coord_system="bd09")


def test_wkt_geometry_csv(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "parcels.csv",
        "parcel_id;geometry\n"
        "P1;POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0))\n"
        "P2;POLYGON ((0 0, 2 2, 2 0, 0 2, 0 0))\n"
        "P3;not wkt at all\n"
        "P4;\n"
        "P5;POLYGON EMPTY\n",
    )
    with pytest.raises(CRSError, match="declare"):
        read_table(path)
    with pytest.warns(GeometryRepairWarning):
        result = read_table(path, crs="EPSG:32650", id_column="parcel_id")
    check_invariant(result)
    assert result.frame.crs.to_epsg() == 32650
    assert result.frame["parcel_id"].tolist() == ["P1", "P2"]
    assert result.frame.geom_type.tolist() == ["Polygon", "MultiPolygon"]
    by_key = result.ledger.frame().set_index("key")["reason"].to_dict()
    assert by_key == {
        "P3": "geometry in column 'geometry' is not valid WKT",
        "P4": "missing geometry",
        "P5": "empty geometry",
    }
    assert result.repairs["key"].tolist() == ["P2"]
    assert result.summary() == (
        "parcels.csv: 5 rows in = 2 used + 3 rejected (1 geometries repaired)"
    )


def _geojson(path: Path, features: list[dict]) -> Path:
    collection = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(collection), encoding="utf-8")
    return path


def test_invalid_and_empty_geometries_in_geojson(tmp_path: Path) -> None:
    def feature(pid: str, geometry: dict | None) -> dict:
        return {"type": "Feature", "properties": {"parcel_id": pid}, "geometry": geometry}

    square = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]
    bowtie = [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]
    path = _geojson(
        tmp_path / "parcels.geojson",
        [
            feature("ok", {"type": "Polygon", "coordinates": square}),
            feature("bowtie", {"type": "Polygon", "coordinates": bowtie}),
            feature("nogeom", None),
            feature("empty", {"type": "Polygon", "coordinates": []}),
            feature("spike", {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [2, 2],
                                                                   [0, 0]]]}),
        ],
    )
    with pytest.warns(GeometryRepairWarning, match="1 invalid geometries"):
        result = read_table(path, id_column="parcel_id")
    check_invariant(result)
    frame = result.frame
    assert frame["parcel_id"].tolist() == ["ok", "bowtie"]
    assert frame.geometry.is_valid.all()
    assert frame.geom_type.tolist() == ["Polygon", "MultiPolygon"]
    assert frame.geometry.iloc[1].area == pytest.approx(0.5)
    repairs = result.repairs
    assert tuple(repairs.columns) == REPAIR_COLUMNS
    assert repairs["key"].tolist() == ["bowtie"]
    assert repairs["row"].tolist() == [2]
    assert "Self-intersection" in repairs["reason"].iloc[0]
    assert "Polygon -> MultiPolygon" in repairs["reason"].iloc[0]
    by_key = result.ledger.frame().set_index("key")["reason"].to_dict()
    assert by_key["nogeom"] == "missing geometry"
    assert by_key["empty"] == "empty geometry"
    assert by_key["spike"].startswith("invalid geometry (")
    assert "cannot repair without changing its dimension" in by_key["spike"]
    raw = json.loads(result.ledger.frame().set_index("key").loc["spike", "raw"])
    assert raw["parcel_id"] == "spike" and raw["geometry"].startswith("POLYGON")


def _no_crs_layer() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"parcel_id": ["A", "B"]},
        geometry=[shapely.box(500000, 4000000, 500100, 4000100),
                  shapely.box(500200, 4000000, 500300, 4000100)],
    )


@pytest.mark.parametrize("driver", ["shp", "gpkg", "fgb"])
def test_layer_without_crs(tmp_path: Path, driver: str) -> None:
    path = tmp_path / f"parcels.{driver}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _no_crs_layer().to_file(path)
    if driver == "shp":
        path.with_suffix(".prj").unlink(missing_ok=True)
        assert not path.with_suffix(".prj").exists()
    with pytest.raises(CRSError, match=r"no coordinate reference system.*crs=") as info:
        read_table(path)
    assert "parcels" in str(info.value)
    result = read_table(path, crs="EPSG:32650", id_column="parcel_id")
    check_invariant(result)
    assert result.frame.crs.to_epsg() == 32650
    assert result.rows_used == 2
    # default_crs fills in a missing CRS but never replaces a layer's own
    assert read_table(path, default_crs="EPSG:32650").frame.crs.to_epsg() == 32650
    own = tmp_path / f"own.{driver}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _no_crs_layer().set_crs(32651).to_file(own)
    assert read_table(own, default_crs="EPSG:32650").frame.crs.to_epsg() == 32651
    assert read_table(own, crs="EPSG:32650").frame.crs.to_epsg() == 32650


def test_shapefile_without_prj_in_zip(tmp_path: Path) -> None:
    folder = tmp_path / "shp"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _no_crs_layer().to_file(folder / "parcels.shp")
    archive = tmp_path / "parcels.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in folder.iterdir():
            if part.suffix != ".prj":
                zf.write(part, part.name)
    with pytest.raises(CRSError):
        read_table(archive)
    assert read_table(archive, crs=32650).rows_used == 2


def test_parquet_and_geoparquet(tmp_path: Path) -> None:
    plain = tmp_path / "fixes.parquet"
    pd.DataFrame(
        {"vehicle_id": ["V1", "V1", "V2"], "lon": [116.4, 116.5, 200.0], "lat": [39.9, 39.9, 39.9],
         "time": pd.to_datetime(["2026-01-01 08:00", "2026-01-01 08:01", "2026-01-01 08:02"])}
    ).to_parquet(plain)
    result = read_table(plain, time_columns=["time"], required=["vehicle_id", "time"])
    check_invariant(result)
    assert result.rows_used == 2
    assert result.frame["time"].iloc[0] == pd.Timestamp("2026-01-01 00:00", tz="UTC")
    assert reasons(result) == ["lon/lat out of range (|lat| > 90 or |lon| > 180)"]
    assert json.loads(result.ledger.frame()["raw"].iloc[0])["lon"] == "200.0"

    indexed = tmp_path / "indexed.parquet"
    pd.DataFrame({"litres": [40.0, 52.5]}, index=pd.Index(["T1", "T2"], name="tx_id")).to_parquet(
        indexed
    )
    result = read_table(indexed, id_column="tx_id", numeric_columns=["litres"])
    assert result.frame["tx_id"].tolist() == ["T1", "T2"]

    geo = tmp_path / "parcels.parquet"
    layer = _no_crs_layer().set_crs(32650)
    layer.to_parquet(geo)
    result = read_table(geo, id_column="parcel_id")
    check_invariant(result)
    assert result.frame.crs.to_epsg() == 32650
    assert result.frame.geometry.equals(layer.geometry)


def test_flatgeobuf_and_zipped_csv(tmp_path: Path, data: Path) -> None:
    fgb = tmp_path / "parcels.fgb"
    _no_crs_layer().set_crs(32650).to_file(fgb)
    assert read_table(fgb).frame.crs.to_epsg() == 32650
    archive = tmp_path / "geolife.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.write(data / GEOLIFE_CSV, "geolife_small.csv")
    result = read_table(archive, columns={"lon": "X", "lat": "Y"})
    check_invariant(result)
    assert result.rows_used == 5908


def test_shared_ledger_across_inputs(tmp_path: Path) -> None:
    ledger = RejectsLedger()
    a = write_csv(tmp_path / "a.csv", "id,lon,lat\n1,0,0\n2,1,1\n")
    b = write_csv(tmp_path / "b.csv", "id,lon,lat\n1,x,0\n2,1,1\n3,1,y\n")
    first = read_table(a, ledger=ledger, name="stations")
    second = read_table(b, ledger=ledger)
    check_invariant(first)
    check_invariant(second)
    assert first.rows_rejected == 1 and second.rows_rejected == 2
    assert ledger.counts() == {"stations": 1, "b.csv": 2}
    assert len(ledger) == 3
    assert second.summary() == "b.csv: 3 rows in = 1 used + 2 rejected"


# ---------------------------------------------------------------------------------------------
# RejectsLedger and ReadResult
# ---------------------------------------------------------------------------------------------


def test_ledger_add_mask_extend_and_frame() -> None:
    ledger = RejectsLedger()
    assert len(ledger) == 0
    empty = ledger.frame()
    assert tuple(empty.columns) == LEDGER_COLUMNS and len(empty) == 0
    table = pd.DataFrame({"card": ["C1", None, "C3"], "litres": ["12", "x", "中/文"]})
    added = ledger.add("tx.csv", table["litres"] != "12", "bad litres", key_column="card",
                       frame=table)
    assert added == 2
    frame = ledger.frame()
    assert frame["row"].tolist() == [2, 3]  # no _row column: index + 1
    assert frame["key"].tolist() == ["", "C3"]
    assert json.loads(frame["raw"].iloc[0]) == {"card": None, "litres": "x"}
    assert frame["raw"].iloc[1] == '{"card":"C3","litres":"中/文"}'
    other = RejectsLedger()
    other.add("fixes.csv", pd.DataFrame({"_row": [7]}), ["per-row reason"])
    ledger.extend(other)
    assert len(ledger) == 3 and len(other) == 1
    assert ledger.counts() == {"tx.csv": 2, "fixes.csv": 1}
    assert ledger.frame()["reason"].tolist() == ["bad litres", "bad litres", "per-row reason"]
    with pytest.raises(TypeError, match="frame="):
        ledger.add("x", np.array([True]), "r")
    with pytest.raises(ValueError, match="reasons"):
        ledger.add("x", pd.DataFrame({"_row": [1, 2]}), ["only one"])


def test_read_result_invariant_is_enforced() -> None:
    with pytest.raises(AssertionError, match="rows in"):
        ReadResult(frame=pd.DataFrame(), source="x", rows_in=3, rows_used=1, rows_rejected=1,
                   ledger=RejectsLedger())


# ---------------------------------------------------------------------------------------------
# PostgreSQL through geosup.store
# ---------------------------------------------------------------------------------------------


@pytest.mark.postgis
def test_postgresql_table(request: pytest.FixtureRequest, data: Path) -> None:
    from geosup import store

    url = request.getfixturevalue("postgis_url")
    stops = read_table(data / "trajectories/bus304_limerick_stops.gpkg").frame
    stops = stops.drop(columns="_row")
    stops.loc[len(stops)] = {**stops.iloc[0].to_dict()}  # a duplicate stop_id
    store.write_database_table(url, stops, table="stops", schema="public")
    result = read_table(f"{url}#public.stops", id_column="stop_id")
    check_invariant(result)
    assert result.source == "public.stops"
    assert result.rows_in == 37
    assert result.rows_used == 36
    assert reasons(result)[0].startswith("duplicate stop_id")
    via_layer = read_table(url, layer="public.stops")
    assert via_layer.rows_in == 37


def test_postgresql_url_without_table() -> None:
    with pytest.raises(DataSourceError, match="name the table") as info:
        read_table("postgresql://clerk:secret@db.example/audit")
    assert "secret" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Property: garbage never crashes a read
# ---------------------------------------------------------------------------------------------

_garbage = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
            max_size=25),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.datetimes().map(str),
    st.sampled_from(["", " ", "NULL", "nan", "1e999", "-0", "0", "24:00", "2026-02-30",
                     "2026-01-01T25:00:00Z", "9999-12-31 23:59:59", "0001-01-01", "+08:00"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_garbage, _garbage, _garbage), min_size=1, max_size=20))
def test_garbage_times_and_coordinates_never_raise(rows: list[tuple[str, str, str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fixes.csv"
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["vehicle_id", "time", "lon", "lat"])
            for i, (time, lon, lat) in enumerate(rows):
                writer.writerow([f"V{i}", time, lon, lat])
        result = read_table(path, required=["vehicle_id", "time"], time_columns=["time"],
                            id_column="vehicle_id")
    check_invariant(result)
    assert result.rows_in == len(rows)
    frame = result.frame
    if len(frame):
        assert str(frame["time"].dtype).endswith("UTC]")
        assert frame["lat"].between(-90, 90).all() and frame["lon"].between(-180, 180).all()
        assert not ((frame["lon"] == 0) & (frame["lat"] == 0)).any()
    assert all(r for r in reasons(result))


def test_geometry_optional_keeps_rows_without_geometry(tmp_path):
    import geopandas as gpd
    import shapely

    from geosup.io import read_table

    frame = gpd.GeoDataFrame(
        {"declaration_id": ["D1", "D2", "D3"], "parcel_id": ["P1", "P2", None]},
        geometry=[shapely.box(0, 0, 10, 10), None, shapely.Polygon()], crs=32650)
    path = tmp_path / "decl.gpkg"
    frame.to_file(path)
    strict = read_table(path, id_column="declaration_id")
    assert strict.rows_used == 1 and strict.rows_rejected == 2
    loose = read_table(path, id_column="declaration_id", geometry_optional=True)
    assert loose.rows_used == 3 and loose.rows_rejected == 0
    assert loose.frame.geometry.isna().sum() == 2
    csv = tmp_path / "decl.csv"
    csv.write_text("declaration_id,geometry\nD1,\"POLYGON((0 0,1 0,1 1,0 0))\"\nD2,\nD3,nonsense\n",
                   encoding="utf-8")
    res = read_table(csv, crs="EPSG:32650", geometry="geometry", geometry_optional=True)
    assert res.rows_used == 2 and res.rows_rejected == 1
    assert "not valid WKT" in res.ledger.frame()["reason"].iloc[0]
