"""``read_table(units=…)`` and the source rows that later rejects are recorded with."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geosup.crs import M2_PER_MU
from geosup.errors import ConfigError, GeosupError, SchemaError
from geosup.io import (
    UNIT_COLUMNS,
    RejectsLedger,
    SourceRows,
    convert_units,
    normalize_unit,
    read_table,
    restore_raw,
)
from trajectories.fixes import clean_fixes

URBANA = "trajectories/urbana_fleet_fuel_card_transactions_2017.csv"
GEOLIFE = "trajectories/geolife_small.csv"
TX = {"tx_id": "Transaction Id", "litres": "Units", "odometer_km": "Current Odometer",
      "tank_l": "Tank Capacity"}


def test_urbana_gallons_and_miles_are_converted(shared_data: Path, caplog) -> None:
    source = shared_data / URBANA
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    caplog.set_level(logging.INFO, logger="geosup.io")
    result = read_table(source, name="transactions", columns=TX, geometry="none",
                        numeric_columns=("litres",),
                        units={"litres": "US gallons", "odometer_km": "miles", "tank_l": "gal"})
    assert result.units == {"litres": "gal", "odometer_km": "mi", "tank_l": "gal"}
    assert "column 'litres' converted from gal to l" in caplog.text
    frame = result.frame
    assert result.rows_used == len(raw) == 6570
    gallons = pd.to_numeric(raw["Units"]).to_numpy()
    np.testing.assert_allclose(frame["litres"], gallons * 3.785411784, rtol=1e-12)
    np.testing.assert_allclose(frame["odometer_km"],
                               pd.to_numeric(raw["Current Odometer"]) * 1.609344, rtol=1e-12)
    # The export's largest fill, 79.02 gal (README), is 299.1 litres.
    assert frame["litres"].max() == pytest.approx(79.02 * 3.785411784)
    assert sorted(set(frame["tank_l"].round(3))) == sorted(
        {round(v * 3.785411784, 3) for v in (0, 30, 50, 100, 300, 500)})
    # The source rows stay as the export wrote them (gallons, miles, its own names).
    first = json.loads(result.source_rows.raw([1])[0])
    assert first == raw.iloc[0].to_dict() and first["Units"] == raw["Units"].iloc[0]


@pytest.mark.parametrize(("units", "error", "words"), [
    ({"litres": "mi"}, ConfigError, ["'mi' is a distance, not a volume", "gal (US gallon)"]),
    ({"litres": "hogshead"}, ConfigError, ["unknown unit 'hogshead'", "imp_gal"]),
    ({"card_id": "gal"}, ConfigError, ["no unit can be declared for column 'card_id'"]),
    ({"speed_kmh": "mph"}, SchemaError, ["'speed_kmh'", "does not have"]),
    ({"declared_area": "ha"}, ConfigError, ["area-unit", "target_units"]),
])
def test_units_that_cannot_apply_are_refused(shared_data: Path, units, error, words) -> None:
    ledger = RejectsLedger()
    with pytest.raises(error) as info:
        read_table(shared_data / URBANA, columns=TX, geometry="none", units=units,
                   ledger=ledger)
    assert isinstance(info.value, GeosupError)
    for word in words:
        assert word in str(info.value)
    assert len(ledger) == 0  # refused before any row was looked at


def test_unit_spellings_and_conversions() -> None:
    assert normalize_unit("litres", "Liters") == "l"
    assert normalize_unit("tank_l", "imperial gallons") == "imp_gal"
    assert normalize_unit("speed_kmh", "knots") == "kn"
    assert normalize_unit("rated_l_per_100km", "MPG") == "mpg"
    assert normalize_unit("claimed_area_m2", "亩") == "mu"
    assert normalize_unit("eligible_area", "hectares") == "ha"
    assert set(UNIT_COLUMNS) >= {"litres", "odometer_km", "speed_kmh", "claimed_area_m2"}
    speed = convert_units(np.array([60.0, 10.0]), "mph", "km/h", quantity="speed")
    np.testing.assert_allclose(speed, [96.56064, 16.09344])
    np.testing.assert_allclose(convert_units(np.array([10.0]), "m/s", "km/h", quantity="speed"),
                               [36.0])
    # Miles per gallon is the inverse of litres per 100 km; 0 mpg has no equivalent.
    per_100 = convert_units(np.array([25.0, 0.0, np.nan]), "mpg", "l/100km",
                            quantity="fuel consumption")
    np.testing.assert_allclose(per_100, [9.40858333, np.nan, np.nan])
    back = convert_units(per_100[:1], "l/100km", "mpg", quantity="fuel consumption")
    np.testing.assert_allclose(back, [25.0])
    np.testing.assert_allclose(convert_units(np.array([1.5]), "ha", "mu", quantity="area"),
                               [22.5])


def test_area_columns_convert_to_the_run_unit(tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text("id;area\nD1;1.5\nD2;x\nD3;\n", encoding="utf-8")
    result = read_table(path, columns={"declared_area": "area"}, id_column="id",
                        units={"declared_area": "ha"}, target_units={"declared_area": "mu"})
    assert result.frame["declared_area"].iloc[0] == pytest.approx(22.5)
    assert np.isnan(result.frame["declared_area"].iloc[1])  # missing stays missing
    assert result.ledger.frame()["reason"].tolist() == ["not a number in column 'declared_area'"]
    area = read_table(path, columns={"claimed_area_m2": "area"}, id_column="id",
                      units={"claimed_area_m2": "mu"}).frame["claimed_area_m2"]
    assert area.iloc[0] == pytest.approx(1.5 * M2_PER_MU)


def test_clean_fixes_rejects_carry_the_source_rows(shared_data: Path, tmp_path: Path) -> None:
    """Real GeoLife fixes with one line repeated: the duplicate is rejected by the cleaning,
    after mapping and parsing, and recorded with the file's own names and text."""
    lines = (shared_data / GEOLIFE).read_text(encoding="utf-8").splitlines()
    path = tmp_path / "geolife.csv"
    written = [*lines[:11], lines[10], *lines[11:]]  # the header, then row 10 twice
    path.write_text("\n".join(written) + "\n", encoding="utf-8")
    read = read_table(path, name="fixes", geometry="none",
                      columns={"vehicle_id": "tracker", "time": "t", "lon": "X", "lat": "Y"},
                      required=("vehicle_id", "time"), time_columns=("time",))
    assert read.rows_used == len(lines)
    plain = clean_fixes(read.frame)
    cleaned = clean_fixes(read.frame, source_rows=read.source_rows)
    duplicate = cleaned.rejects[cleaned.rejects["reason"].str.startswith("exact duplicate")]
    assert duplicate["row"].tolist() == [11]
    header = lines[0].split(";")
    values = json.loads(duplicate["raw"].iloc[0])
    assert values == dict(zip(header, lines[10].split(";"), strict=True))
    # the file's own jumps and out-of-order fixes too: every reject is the file's line
    assert len(cleaned.rejects) > 100
    for record in cleaned.rejects.itertuples():
        line = written[record.row].split(";")
        assert json.loads(record.raw) == dict(zip(header, line, strict=True))
    # without the source rows the ledger shows the mapped, parsed view
    mapped = json.loads(plain.rejects.set_index("row").loc[11, "raw"])
    assert {"vehicle_id", "time", "lon", "lat"} <= set(mapped)
    assert mapped["time"].endswith("+00:00")
    assert cleaned.rejects["reason"].tolist() == plain.rejects["reason"].tolist()


def test_restore_raw_leaves_unknown_rows_alone() -> None:
    source = SourceRows(pd.DataFrame({"_row": [3, 1, 2], "Menge": ["3", "1", "2"]}), name="a")
    ledger = RejectsLedger()
    ledger.add("a", pd.DataFrame({"_row": [2, 9], "litres": [7.5, 1.0]}), "why")
    ledger.add("b", pd.DataFrame({"_row": [2], "litres": [7.5]}), "why")
    out = restore_raw(ledger.frame(), {"a": source})
    assert out["raw"].tolist() == ['{"Menge":"2"}', '{"litres":"1.0"}', '{"litres":"7.5"}']
    assert ledger.frame()["raw"].iloc[0] == '{"litres":"7.5"}'  # a copy; the ledger as it was
    assert restore_raw(ledger.frame(), None).equals(ledger.frame())
