"""Tests of trajectories.fixes.clean_fixes: hand-made bad inputs and real GPS files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geosup.errors import ConfigError, SchemaError, ValidationError
from geosup.io import LEDGER_COLUMNS, RejectsLedger, read_table
from trajectories.fixes import CleanResult, clean_fixes

TRAJ = "trajectories"
T0 = pd.Timestamp("2026-01-26 08:00:00", tz="UTC")


def fixes(rows: list[tuple], **extra) -> pd.DataFrame:
    """rows: (vehicle_id, seconds after T0, lon, lat); _row numbers 1, 2, …"""
    frame = pd.DataFrame(rows, columns=["vehicle_id", "s", "lon", "lat"])
    frame.insert(0, "_row", np.arange(1, len(frame) + 1))
    frame["time"] = T0 + pd.to_timedelta(frame.pop("s"), unit="s")
    for name, values in extra.items():
        frame[name] = values
    return frame


def reasons(result: CleanResult) -> dict[int, str]:
    return dict(zip(result.rejects["row"].tolist(), result.rejects["reason"].tolist(),
                    strict=True))


def check_invariants(result: CleanResult, rows_in: int) -> None:
    assert result.counts["rows_in"] == rows_in
    assert result.counts["rows_used"] == len(result.frame)
    assert result.counts["rows_rejected"] == len(result.rejects)
    assert rows_in == len(result.frame) + len(result.rejects)
    assert list(result.rejects.columns) == list(LEDGER_COLUMNS)
    assert sum(result.reasons.values()) == len(result.rejects)
    # kept rows sorted by vehicle then strictly increasing time, no row both kept and rejected
    frame = result.frame
    assert list(frame["vehicle_id"]) == sorted(frame["vehicle_id"])
    same = frame["vehicle_id"].to_numpy()[1:] == frame["vehicle_id"].to_numpy()[:-1]
    assert (np.diff(pd.DatetimeIndex(frame["time"]).asi8)[same] > 0).all()
    assert not set(frame["_row"]) & set(result.rejects["row"])


def test_exact_duplicates_and_same_time_elsewhere():
    result = clean_fixes(fixes([
        ("V1", 0, 116.40, 39.90),
        ("V1", 30, 116.401, 39.90),
        ("V1", 30, 116.401, 39.90),  # exact duplicate of row 2
        ("V1", 30, 116.402, 39.90),  # same time, elsewhere: row 2 is kept
        ("V2", 30, 116.401, 39.90),  # another vehicle at the same time and place: fine
        ("V1", 60, 116.402, 39.90),
        ("V1", 0, 116.40, 39.90),  # a late exact duplicate of row 1
    ]))
    assert reasons(result) == {
        3: "exact duplicate of row 2 (same vehicle, time and position)",
        4: "same vehicle and time as row 2 but a different position (the first row in file "
           "order is kept)",
        7: "exact duplicate of row 1 (same vehicle, time and position)",
    }
    assert result.reasons["duplicate"] == 2 and result.reasons["same_time"] == 1
    assert result.frame["_row"].tolist() == [1, 2, 6, 5]
    check_invariants(result, 7)
    raw = json.loads(result.rejects.set_index("row").loc[4, "raw"])
    assert raw["lon"] == "116.402" and raw["vehicle_id"] == "V1"
    assert result.rejects.set_index("row").loc[4, "key"] == "V1"


def test_out_of_order_rows_in_file_order():
    rows = [("V1", 0, 116.40, 39.90), ("V1", 60, 116.401, 39.90), ("V2", 0, 116.5, 39.9),
            ("V1", 30, 116.4005, 39.90),  # before row 2 of V1
            ("V1", 45, 116.4007, 39.90),  # still before row 2
            ("V2", 10, 116.5001, 39.9), ("V1", 90, 116.402, 39.90)]
    result = clean_fixes(fixes(rows))
    text = "out of order: time is before the previous fix of this vehicle in file order (row 2)"
    assert reasons(result) == {4: text, 5: text}
    assert result.frame["_row"].tolist() == [1, 2, 7, 3, 6]
    check_invariants(result, 7)
    # when the order carries no meaning, rows are sorted instead
    unordered = clean_fixes(fixes(rows), order="time")
    assert unordered.counts["rows_rejected"] == 0
    assert unordered.frame["_row"].tolist() == [1, 4, 5, 2, 7, 3, 6]


def test_impossible_jump_compares_with_the_last_kept_fix():
    rows = [("V1", 0, 116.400, 39.90),
            ("V1", 30, 116.403, 39.90),  # ~256 m in 30 s: 31 km/h
            ("V1", 60, 116.600, 39.90),  # ~17 km in 30 s: 2,000 km/h
            ("V1", 90, 116.406, 39.90),  # fine again from row 2 (not from row 3)
            ("V1", 120, 116.409, 39.90)]
    result = clean_fixes(fixes(rows))
    assert list(reasons(result)) == [3]
    assert reasons(result)[3].startswith("impossible jump: ")
    assert reasons(result)[3].endswith(" km/h from row 2 (limit 250 km/h)")
    speed = int(reasons(result)[3].split()[2])
    assert 1900 < speed < 2100
    check_invariants(result, 5)
    # a limit above the jump keeps it; dropping one fix changes the next comparison
    assert clean_fixes(fixes(rows), max_speed_kmh=3000).counts["rows_rejected"] == 0
    two = clean_fixes(fixes([*rows[:3], ("V1", 70, 116.601, 39.90), *rows[3:]]))
    assert list(reasons(two)) == [3, 4]
    assert reasons(two)[4].endswith("from row 2 (limit 250 km/h)")


def test_leading_outlier_is_dropped_not_the_whole_track():
    rows = [("V1", 0, 117.0, 39.90),  # far away: the first fix is the glitch
            ("V1", 30, 116.400, 39.90), ("V1", 60, 116.403, 39.90), ("V1", 90, 116.406, 39.90)]
    result = clean_fixes(fixes(rows))
    assert list(reasons(result)) == [1]
    assert "to row 2" in reasons(result)[1]
    check_invariants(result, 4)


def test_coordinates_and_missing_values():
    frame = fixes([("V1", 0, 116.40, 39.90), ("V1", 30, 0.0, 0.0), ("V1", 60, 200.0, 39.9),
                   ("V1", 90, 116.40, -95.0), ("V1", 120, np.nan, 39.9),
                   (None, 150, 116.40, 39.90), ("V1", 180, 116.401, 39.90)])
    frame.loc[6, "time"] = pd.NaT
    result = clean_fixes(frame, source="gps.csv")
    assert reasons(result) == {
        2: "lon/lat is exactly (0, 0), a placeholder for a missing position",
        3: "lon/lat out of range (|lat| > 90 or |lon| > 180)",
        4: "lon/lat out of range (|lat| > 90 or |lon| > 180)",
        5: "missing position",
        6: "missing vehicle_id",
        7: "missing time",
    }
    assert set(result.rejects["source"]) == {"gps.csv"}
    assert result.reasons["coordinates"] == 3 and result.reasons["missing"] == 3
    check_invariants(result, 7)


def test_gaps_are_recorded_not_filled():
    result = clean_fixes(fixes([("V1", 0, 116.40, 39.90), ("V1", 60, 116.401, 39.90),
                                ("V1", 60 + 1200, 116.402, 39.90), ("V2", 0, 116.5, 39.9),
                                ("V2", 600, 116.5, 39.9)]))
    assert result.gaps["vehicle_id"].tolist() == ["V1"]
    assert result.gaps["duration_s"].tolist() == [1200.0]
    assert result.gaps["start"].iloc[0] == T0 + pd.Timedelta("60s")
    # exactly max_gap is not a gap; a smaller threshold finds V2's too
    assert len(clean_fixes(fixes([("V2", 0, 116.5, 39.9), ("V2", 600, 116.5, 39.9)])).gaps) == 0
    assert len(clean_fixes(fixes([("V2", 0, 116.5, 39.9), ("V2", 600, 116.5, 39.9)]),
                           max_gap=pd.Timedelta("5min")).gaps) == 1
    assert len(result.frame) == 5  # nothing interpolated, nothing dropped


def test_geometry_input_ledger_and_errors():
    frame = fixes([("V1", 0, 116.40, 39.90), ("V1", 0, 116.40, 39.90), ("V1", 30, 116.401, 39.9)])
    gdf = gpd.GeoDataFrame(frame.drop(columns=["lon", "lat"]),
                           geometry=gpd.points_from_xy(frame["lon"], frame["lat"]), crs=4326)
    ledger = RejectsLedger()
    result = clean_fixes(gdf.to_crs(3857), ledger=ledger)
    assert isinstance(result.frame, gpd.GeoDataFrame)
    np.testing.assert_allclose(result.frame["lon"], [116.40, 116.401])
    assert len(ledger) == 1 and ledger.counts() == {"fixes": 1}
    assert "POINT" in result.rejects["raw"].iloc[0]
    with pytest.raises(ValidationError, match="naive"):
        clean_fixes(frame.assign(time=frame["time"].dt.tz_localize(None)))
    with pytest.raises(SchemaError):
        clean_fixes(frame.drop(columns=["vehicle_id"]))
    with pytest.raises(SchemaError):
        clean_fixes(frame.drop(columns=["lat"]))
    with pytest.raises(ConfigError):
        clean_fixes(frame, order="random")
    with pytest.raises(ConfigError):
        clean_fixes(frame, max_speed_kmh=0)
    empty = clean_fixes(frame.iloc[:0])
    assert empty.counts == {"rows_in": 0, "rows_used": 0, "rows_rejected": 0}
    assert "0 fixes in" in empty.summary()


def test_no_row_numbers_and_ids_normalised():
    frame = fixes([(4716, 0, 116.40, 39.90), (4716.0, 30, 116.401, 39.90)]).drop(columns="_row")
    frame["vehicle_id"] = frame["vehicle_id"].astype(float)
    result = clean_fixes(frame)
    assert result.frame["vehicle_id"].tolist() == ["4716", "4716"]
    assert result.frame["_row"].tolist() == [1, 2]


def test_real_files_clean(shared_data: Path):
    liverpool = read_table(shared_data / TRAJ / "liverpool_bus_route14_outbound_2026-01-26.csv",
                           columns={"time": "timestamp", "lat": "latitude", "lon": "longitude"},
                           time_columns=["time"], tz="UTC")
    result = clean_fixes(liverpool.frame)
    check_invariants(result, 1533)
    assert result.counts["rows_rejected"] == 0
    # the README's largest within-vehicle gap: 3,124 s; median 24 s, so 10 min gaps are rare
    assert result.gaps["duration_s"].max() == 3124.0
    assert result.frame.groupby("vehicle_id").size().to_dict() == {
        "4716": 136, "4720": 278, "4722": 110, "4733": 245, "4803": 183, "4836": 187,
        "4841": 159, "4842": 235}
    # the file is not sorted by time overall, but each vehicle's rows are: shuffling the rows
    # of one vehicle makes them out of order
    shuffled = liverpool.frame.sample(frac=1.0, random_state=3)
    bad = clean_fixes(shuffled)
    check_invariants(bad, 1533)
    assert bad.reasons["out_of_order"] > 500
    assert clean_fixes(shuffled, order="time").counts["rows_rejected"] == 0
    # the GPX track of the Limerick bus: clean, 2 s fixes, no gaps
    gpx = read_table(shared_data / TRAJ / "bus304_limerick_2019-02-18_0745.gpx",
                     time_columns=["time"]).frame.assign(vehicle_id="304")
    clean = clean_fixes(gpx)
    check_invariants(clean, 2144)
    assert clean.counts["rows_rejected"] == 0 and clean.gaps.empty


def test_categorical_ids_clean_like_text_ids() -> None:
    """The categorical fast path (codes, no per-fix strings) decides exactly as text ids."""
    rows = [("V2", 0, 116.40, 39.90), ("V1", 0, 116.40, 39.90), ("V2", 30, 116.401, 39.90),
            ("V2", 30, 116.401, 39.90), (None, 40, 116.40, 39.90), ("V1", 20, 116.40, 39.90),
            ("V1", 10, 116.40, 39.90), ("V2", 60, 118.0, 39.90), ("V1", 30, 0.0, 0.0)]
    text = fixes(rows)
    cat = text.assign(vehicle_id=text["vehicle_id"].astype("category"))
    a, b = clean_fixes(text), clean_fixes(cat)
    assert a.counts == b.counts and a.reasons == b.reasons
    assert reasons(a) == reasons(b)
    assert a.frame["vehicle_id"].tolist() == b.frame["vehicle_id"].tolist()
    assert a.frame["_row"].tolist() == b.frame["_row"].tolist()


def test_jump_bound_never_overrides_the_exact_speed() -> None:
    """The cheap upper bound of the jump kernel only ever accepts what haversine accepts."""
    from trajectories.fixes import _speed, _surely_within

    rng = np.random.default_rng(3)
    n = 20_000
    lat = np.radians(rng.uniform(-85, 85, n))
    lon = np.radians(rng.uniform(-180, 180, n))
    scale = rng.choice([1e-4, 1e-3, 1e-2, 1e-1], n // 2)
    lat[1::2] = lat[0::2] + np.radians(rng.normal(0, 1, n // 2) * scale)
    lon[1::2] = lon[0::2] + np.radians(rng.normal(0, 1, n // 2) * scale)
    t = np.zeros(n, dtype=np.int64)
    t[1::2] = rng.integers(0, 120, n // 2) * 10**9
    limit = 250 / 3.6
    accepted = 0
    for i in range(0, n, 2):
        if _surely_within(t, lon, lat, i, i + 1, limit):
            accepted += 1
            assert _speed(t, lon, lat, i, i + 1) <= limit
    assert accepted > 0
