"""What a source does not say, declared on the command line, on real data.

- ``--unit INPUT.COLUMN=UNIT`` (and ``[units.<input>]`` in geosup.toml): the source's unit,
  converted on reading; a unit that does not fit its column is one clear error line.
- ``--input-crs INPUT=CRS``: the CRS of a file that carries none (a Shapefile without
  ``.prj``); without it, each check command names that flag, and no Python.
- Rejects carry the source's own row: a row a check rejects after mapping and conversion
  shows the source's column names and text in ``raw``, like a row io rejected.
"""

from __future__ import annotations

import itertools
import json
import logging
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from click.testing import CliRunner

from geosup.cli import main
from geosup.crs import M2_PER_MU
from geosup.store import open_store
from geosup.testing import cli_error_line

URBANA = "trajectories/urbana_fleet_fuel_card_transactions_2017.csv"
STATIONS = "trajectories/uk_fuel_finder_forecourts_2026-02-18_liverpool_bbox.csv"
BUS = "trajectories/liverpool_bus_route14_outbound_2026-01-26.csv"
AT = "parcels/reference/at/inspire_referenzen_2021_polygon.gpkg.zip"
RENNES = "imagery/oscd/rennes"
L_PER_GAL, KM_PER_MI = 3.785411784, 1.609344
NO_CALENDAR = {"GEOSUP_CALENDAR__COUNTRY": "none"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()




def _no_python(line: str) -> None:
    """A command's message names its flags, not Python arguments."""
    for word in ("crs=", "read_table", "set_crs", "GeoDataFrame", "--crs "):
        assert word not in line, line


def _shapefile_without_prj(frame: gpd.GeoDataFrame, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # field names cut to 10 characters
        warnings.simplefilter("ignore", RuntimeWarning)
        frame.to_file(path)
    path.with_suffix(".prj").unlink(missing_ok=True)
    assert path.is_file() and not path.with_suffix(".prj").exists()
    return path


# ---------------------------------------------------------------------------------------------
# Fuel: the real Urbana (IL) fuel-card export (US gallons and miles)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def urbana(shared_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The export (read in place), a vehicle register derived from it, and its raw text."""
    source = shared_data / URBANA
    raw = pd.read_csv(source, dtype=str, keep_default_na=False)
    folder = tmp_path_factory.mktemp("urbana")
    vehicles = raw.groupby("Vehicle ID", sort=True).agg(**{
        "Department": ("Department", "first"),
        "Tank Capacity": ("Tank Capacity", lambda s: max(float(x or 0) for x in s)),
    }).reset_index()
    vehicles.to_csv(folder / "vehicles.csv", index=False)
    return source, folder / "vehicles.csv", raw


def _fuel_args(urbana, store: Path, *extra: str, units: bool = True) -> list[str]:
    source, vehicles, _ = urbana
    maps = {
        "transactions.tx_id": ["Transaction Id", "Transaction Item Sequence Number"],
        "transactions.card_id": ["Card Number ID"], "transactions.vehicle_id": ["Vehicle ID"],
        "transactions.litres": ["Units"], "transactions.amount": ["Net Cost"],
        "transactions.odometer_km": ["Current Odometer"],
        "transactions.time": ["Transaction Date", "Transaction Time"],
        "vehicles.vehicle_id": ["Vehicle ID"], "vehicles.unit": ["Department"],
        "vehicles.tank_l": ["Tank Capacity"],
    }
    args = ["fuel", "audit", "--transactions", str(source), "--vehicles", str(vehicles),
            "--store", str(store), "--tz", "America/Chicago"]
    for key, columns in maps.items():
        for column in columns:
            args += ["--map", f"{key}={column}"]
    if units:
        args += ["--unit", "transactions.litres=gal", "--unit", "transactions.odometer_km=mi",
                 "--unit", "vehicles.tank_l=gal"]
    return [*args, *extra]


def _tx_id(raw: pd.DataFrame) -> pd.Series:
    return raw["Transaction Id"] + " " + raw["Transaction Item Sequence Number"]


def test_fuel_units_from_flags_or_settings(runner, tmp_path, urbana, caplog):
    """``--unit`` and ``[units.<input>]`` convert the same way; the run records them."""
    _, _, raw = urbana
    rule = ["--rule", "fuel.odometer_anomaly", "--rule", "fuel.rapid_refill"]
    flags = tmp_path / "flags.gpkg"
    caplog.set_level(logging.INFO, logger="geosup.io")
    res = runner.invoke(main, _fuel_args(urbana, flags, *rule), env=NO_CALENDAR)
    assert res.exit_code == 0, res.output
    assert "column 'litres' converted from gal to l" in caplog.text
    assert "column 'odometer_km' converted from mi to km" in caplog.text
    assert "column 'tank_l' converted from gal to l" in caplog.text
    config = tmp_path / "geosup.toml"
    config.write_text('[units.transactions]\nlitres = "US gallons"\nodometer_km = "miles"\n'
                      '[units.vehicles]\ntank_l = "gallon"\n', encoding="utf-8")
    toml = tmp_path / "toml.gpkg"
    res = runner.invoke(main, ["--config", str(config),
                               *_fuel_args(urbana, toml, *rule, units=False)], env=NO_CALENDAR)
    assert res.exit_code == 0, res.output
    plain = tmp_path / "plain.gpkg"  # the old reading: gallons taken for litres
    res = runner.invoke(main, _fuel_args(urbana, plain, *rule, units=False), env=NO_CALENDAR)
    assert res.exit_code == 0, res.output
    stored = {}
    for store in (flags, toml, plain):
        with open_store(store) as st:
            alerts = st.alerts().sort_values("alert_id")
            params = json.loads(st.runs()["params"].iloc[0])
        stored[store.stem] = (alerts, params)
    want = {"transactions": {"litres": "gal", "odometer_km": "mi"}, "vehicles": {"tank_l": "gal"}}
    assert stored["flags"][1]["units"] == stored["toml"][1]["units"] == want
    assert stored["plain"][1]["units"] == {}
    a, b = stored["flags"][0], stored["toml"][0]
    assert a["alert_id"].tolist() == b["alert_id"].tolist()
    assert a["evidence"].tolist() == b["evidence"].tolist()
    # The measured litres and kilometres are the export's gallons and miles, converted.
    by_tx = raw.set_index(_tx_id(raw))
    refills = pd.DataFrame([json.loads(e) for e in a.loc[a["rule"] == "fuel.rapid_refill",
                                                           "evidence"]])
    assert len(refills) > 10
    np.testing.assert_allclose(
        refills["litres"], pd.to_numeric(by_tx.loc[refills["tx_id"], "Units"]) * L_PER_GAL,
        rtol=1e-12)
    odometer = pd.DataFrame([json.loads(e) for e in a.loc[a["rule"] == "fuel.odometer_anomaly",
                                                            "evidence"]])
    np.testing.assert_allclose(
        odometer["odometer_km"],
        pd.to_numeric(by_tx.loc[odometer["tx_id"], "Current Odometer"]) * KM_PER_MI,
        rtol=1e-12)
    # Read as miles, fewer odometer jumps pass the 1000 km limit than read as km.
    jumps = {name: int(frame["title"].eq("Odometer reading jumped implausibly").sum())
             for name, (frame, _) in stored.items()}
    assert jumps["flags"] > jumps["plain"] > 0


@pytest.mark.parametrize(("declared", "words"), [
    ("transactions.litres=mi", ["'mi' is a distance, not a volume", "gal (US gallon)",
                                "imp_gal"]),
    ("transactions.litres=furlong", ["unknown unit 'furlong'", "l, ml, m3, gal"]),
    ("transactions.odometer_km=gal", ["is a volume, not a distance", "km, m, mi"]),
    ("transactions.card_id=gal", ["no unit can be declared for column 'card_id'", "litres"]),
    ("litres=gal", ["is not INPUT.COLUMN=UNIT"]),
    ("trips.litres=gal", ["unknown input 'trips'"]),
])
def test_fuel_unit_that_does_not_fit_is_one_line(runner, tmp_path, urbana, declared, words):
    store = tmp_path / "s.gpkg"
    line = cli_error_line(runner.invoke(main, _fuel_args(urbana, store, "--unit", declared),
                                         env=NO_CALENDAR))
    assert f"--unit {declared!r}" in line
    for word in words:
        assert word in line, line
    assert not store.exists()


def test_fuel_unit_in_settings_that_does_not_fit(runner, tmp_path, urbana):
    config = tmp_path / "geosup.toml"
    config.write_text('[units.transactions]\nlitres = "km"\n', encoding="utf-8")
    line = cli_error_line(runner.invoke(main, ["--config", str(config),
                                                *_fuel_args(urbana, tmp_path / "s.gpkg")],
                                         env=NO_CALENDAR))
    assert "[units.transactions] litres = 'km'" in line and "not a volume" in line


def test_fuel_stations_shapefile_without_prj(runner, tmp_path, urbana, shared_data):
    """Real UK stations written as a Shapefile without .prj; the flag declares their CRS."""
    _, _, raw = urbana
    table = pd.read_csv(shared_data / STATIONS, dtype=str)
    lon = table["forecourts.location.longitude"].astype(float)
    lat = table["forecourts.location.latitude"].astype(float)
    stations = gpd.GeoDataFrame({"station_id": table["forecourts.node_id"],
                                 "name": table["forecourts.trading_name"]},
                                geometry=gpd.points_from_xy(lon, lat))
    shp = _shapefile_without_prj(stations, tmp_path / "stations.shp")
    store = tmp_path / "s.gpkg"
    args = _fuel_args(urbana, store, "--stations", str(shp),
                      "--map", "transactions.station_id=Merchant Site ID")
    line = cli_error_line(runner.invoke(main, args, env=NO_CALENDAR))
    assert line == (f"Error: {shp} has no coordinate reference system; declare it with "
                    "--input-crs stations=EPSG:<code>")
    _no_python(line)
    assert not store.exists()
    res = runner.invoke(main, [*args, "--input-crs", "stations=EPSG:4326"], env=NO_CALENDAR)
    assert res.exit_code == 0, res.output
    assert "stations: 81 rows in, 81 used, 0 rejected" in res.stderr
    with open_store(store) as st:
        layer = st.read_layer("fuel_stations")
        rejects = st.rejects()
        params = json.loads(st.runs()["params"].iloc[0])
    assert params["input_crs"] == {"stations": "EPSG:4326"}
    assert layer.crs.to_epsg() == 4326
    placed = layer.set_index("station_id").loc[table["forecourts.node_id"]]
    np.testing.assert_allclose(placed.geometry.x, lon, atol=1e-9)
    np.testing.assert_allclose(placed.geometry.y, lat, atol=1e-9)
    # Urbana's merchants are not Liverpool's stations: rejected by the audit, each with the
    # export's own row (its names, its gallons as written), not the mapped, converted one.
    unknown = rejects[rejects["reason"].str.startswith("unknown station")]
    assert len(unknown) > 5000
    for record in unknown.head(50).itertuples():
        assert json.loads(record.raw) == raw.iloc[record.row - 1].to_dict()


def test_fuel_check_rejects_carry_the_source_rows(runner, tmp_path, urbana, shared_data):
    """Fixes of unknown vehicles and transactions outside the period, rejected by the audit."""
    _, _, raw = urbana
    bus = pd.read_csv(shared_data / BUS, dtype=str, keep_default_na=False)
    store = tmp_path / "s.gpkg"
    args = _fuel_args(urbana, store, "--fixes", str(shared_data / BUS),
                      "--map", "fixes.time=timestamp", "--map", "fixes.lon=longitude",
                      "--map", "fixes.lat=latitude", "--period", "2017-06-01", "2017-06-30",
                      "--rule", "fuel.off_hours")
    res = runner.invoke(main, args, env=NO_CALENDAR)
    assert res.exit_code == 0, res.output
    with open_store(store) as st:
        rejects = st.rejects()
    by_reason = rejects["reason"].str.split(" ").str[0]
    fixes = rejects[rejects["source"] == "fixes"]
    assert len(fixes) == len(bus) and fixes["reason"].str.contains("not in the vehicle").all()
    outside = rejects[by_reason == "outside"]
    early = rejects[by_reason == "time"]  # rejected by io (DST), for comparison
    assert len(outside) > 5000 and len(early) == 3
    for frame, source in ((fixes, bus), (outside, raw), (early, raw)):
        for record in frame.sample(40, random_state=1, replace=len(frame) < 40).itertuples():
            values = json.loads(record.raw)
            assert values == source.iloc[record.row - 1].to_dict()
    values = json.loads(outside["raw"].iloc[0])
    assert {"Units", "Transaction Date", "Current Odometer"} <= set(values)
    assert not {"time", "litres", "tx_id", "odometer_km", "_row"} & set(values)
    assert not {"time", "lon", "lat"} & set(json.loads(fixes["raw"].iloc[0]))


# ---------------------------------------------------------------------------------------------
# Farmland: real Austrian reference parcels, a clerk's CSV of declarations
# ---------------------------------------------------------------------------------------------

FARMLAND_MAP = [
    "--map", "parcels.parcel_id=RFL_ID", "--map", "declarations.declaration_id=AntragNr",
    "--map", "declarations.applicant_id=BetriebsNr", "--map", "declarations.year=Jahr",
    "--map", "declarations.parcel_id=RFL", "--map", "declarations.declared_area=Flaeche_ha",
    "--map", "declarations.village=Gemeinde",
]


@pytest.fixture(scope="module")
def at_parcels(shared_data: Path) -> gpd.GeoDataFrame:
    parcels = gpd.read_file(f"/vsizip/{shared_data / AT}")
    return parcels.sort_values("BRUTTOFLAECHE_HA", ascending=False).reset_index(drop=True)


def _declarations(parcels: gpd.GeoDataFrame, folder: Path) -> Path:
    rfl = parcels["RFL_ID"].astype("int64").astype(str)
    ha = parcels["BRUTTOFLAECHE_HA"]
    tol = 1.25 * parcels.geometry.iloc[0].length / 10000.0
    rows = [("AT-OVER", "BOVER", rfl[0], f"{ha[0] * 1.3 + tol:.6f}"),
            ("AT-ZERO", "B1", rfl[3], "0"), ("AT-UNKNOWN", "B0", "999999999", "0,5")]
    rows += [(f"AT-OK-{k}", f"B{k % 4}", rfl[k], f"{ha[k]:.6f}") for k in range(5, 13)]
    frame = pd.DataFrame(rows, columns=["AntragNr", "BetriebsNr", "RFL", "Flaeche_ha"])
    frame.insert(2, "Jahr", "2025")
    frame["Gemeinde"] = "G-" + frame["BetriebsNr"]
    path = folder / "antraege.csv"
    frame.to_csv(path, sep=";", index=False)
    return path


def _farmland(shared_data: Path, csv: Path, parcels: Path | str, store: Path,
              *extra: str) -> list[str]:
    return ["farmland", "reconcile", "--declarations", str(csv), "--parcels", str(parcels),
            "--store", str(store), *FARMLAND_MAP, *extra]


def test_farmland_area_units_per_input(runner, tmp_path, shared_data, at_parcels):
    """Hectares declared per input and converted into the run's mu: the same findings."""
    csv = _declarations(at_parcels, tmp_path)
    parcels = shared_data / AT
    ha_store, mu_store = tmp_path / "ha.gpkg", tmp_path / "mu.gpkg"
    eligible = ["--map", "parcels.eligible_area=BRUTTOFLAECHE_HA"]
    res = runner.invoke(main, _farmland(shared_data, csv, parcels, ha_store, *eligible,
                                        "--area-unit", "ha"))
    assert res.exit_code == 0, res.output
    # The same files reported in mu: the hectares declared per column.
    res = runner.invoke(main, _farmland(shared_data, csv, parcels, mu_store, *eligible,
                                        "--area-unit", "mu",
                                        "--unit", "declarations.declared_area=ha",
                                        "--unit", "parcels.eligible_area=hectare"))
    assert res.exit_code == 0, res.output
    with open_store(ha_store) as a, open_store(mu_store) as b:
        in_ha, in_mu = a.alerts().sort_values("alert_id"), b.alerts().sort_values("alert_id")
        params = json.loads(b.runs()["params"].iloc[0])
    assert params["units"] == {"declarations": {"declared_area": "ha"},
                               "parcels": {"eligible_area": "ha"}}
    assert set(zip(in_ha["rule"], in_ha["subject_id"], strict=True)) == {
        ("farmland.over_declared", "AT-OVER"), ("farmland.over_declared", "BOVER")}
    assert in_ha["alert_id"].tolist() == in_mu["alert_id"].tolist()
    for one, two in zip(in_ha["evidence"], in_mu["evidence"], strict=True):
        one, two = json.loads(one), json.loads(two)
        assert two["declared_m2"] == pytest.approx(one["declared_m2"], rel=1e-12)
        assert one["declared_m2"] > 0
    assert in_mu["detail"].str.contains(" mu").all() and in_ha["detail"].str.contains(" ha").all()
    # Without the declaration the hectares are read as mu, 15 times too small: refused.
    res = runner.invoke(main, _farmland(shared_data, csv, parcels, tmp_path / "x.gpkg",
                                        *eligible, "--area-unit", "mu"))
    assert "look like 'ha'" in cli_error_line(res)
    res = runner.invoke(main, _farmland(shared_data, csv, parcels, tmp_path / "x.gpkg",
                                        *eligible, "--area-unit", "mu",
                                        "--unit", "declarations.declared_area=mi"))
    line = cli_error_line(res)
    assert "is a distance, not an area" in line and "m2, mu (亩), ha, km2" in line


def test_farmland_parcels_shapefile_without_prj(runner, tmp_path, shared_data, at_parcels):
    csv = _declarations(at_parcels, tmp_path)
    shp = _shapefile_without_prj(at_parcels[["RFL_ID", "BRUTTOFLAECHE_HA", "geometry"]],
                                 tmp_path / "referenzen.shp")
    store = tmp_path / "s.gpkg"
    args = _farmland(shared_data, csv, shp, store, "--area-unit", "ha",
                     "--map", "parcels.eligible_area=BRUTTOFLAE",
                     "--crs", "EPSG:31287")  # the metric CRS to measure in: not the input's
    line = cli_error_line(runner.invoke(main, args))
    assert line == (f"Error: {shp} has no coordinate reference system; declare it with "
                    "--input-crs parcels=EPSG:<code>")
    _no_python(line)
    # A CRS for another input does not apply to the parcels.
    line = cli_error_line(runner.invoke(main, [*args, "--input-crs", "persons=EPSG:31287"]))
    assert "--input-crs parcels=EPSG:<code>" in line
    line = cli_error_line(runner.invoke(main, [*args, "--input-crs", "parcels=EPSG:99999"]))
    assert "--input-crs 'parcels=EPSG:99999'" in line and "not a coordinate reference" in line
    res = runner.invoke(main, [*args, "--input-crs", "parcels=EPSG:31287"])
    assert res.exit_code == 0, res.output
    assert "parcels: 100 rows in, 100 used, 0 rejected" in res.stderr
    with open_store(store) as st:
        alerts = st.alerts()
        params = json.loads(st.runs()["params"].iloc[0])
    assert set(alerts["subject_id"]) == {"AT-OVER", "BOVER"}
    assert params["input_crs"] == {"parcels": "EPSG:31287"} and params["crs"] == "EPSG:31287"


def test_farmland_prepare_rejects_carry_the_source_rows(runner, tmp_path, shared_data,
                                                        at_parcels):
    csv = _declarations(at_parcels, tmp_path)
    source = pd.read_csv(csv, sep=";", dtype=str, keep_default_na=False)
    store = tmp_path / "s.gpkg"
    res = runner.invoke(main, _farmland(shared_data, csv, shared_data / AT, store,
                                        "--map", "parcels.eligible_area=BRUTTOFLAECHE_HA",
                                        "--area-unit", "ha"))
    assert res.exit_code == 0, res.output
    with open_store(store) as st:
        rejects = st.rejects().set_index("key")
    # "0,5" is not a number (io); "0" must be > 0 and parcel 999999999 is unknown (prepare).
    assert "not a number" in rejects.loc["AT-UNKNOWN", "reason"]
    assert "must be > 0" in rejects.loc["AT-ZERO", "reason"]
    for key in ("AT-ZERO", "AT-UNKNOWN"):
        row = int(rejects.loc[key, "row"])
        values = json.loads(rejects.loc[key, "raw"])
        assert values == source.iloc[row - 1].to_dict()
    assert json.loads(rejects.loc["AT-ZERO", "raw"])["Jahr"] == "2025"
    assert json.loads(rejects.loc["AT-ZERO", "raw"])["Flaeche_ha"] == "0"


# ---------------------------------------------------------------------------------------------
# Requisition: real Sentinel-2 band sets (OSCD, Rennes), claims drawn over them
# ---------------------------------------------------------------------------------------------


def test_imagery_claims_shapefile_units_and_rejects(runner, tmp_path, shared_data):
    city = shared_data / RENNES
    dates = dict(ln.split(": ") for ln in (city / "dates.txt").read_text().splitlines() if ln)
    with rasterio.open(next((city / "imgs_1").glob("*B02.tif"))) as ds:
        left, bottom, right, top = ds.bounds
    xs, ys = np.linspace(left, right, 5), np.linspace(bottom, top, 4)
    cells = [shapely.box(x0, y0, x1, y1) for x0, x1 in itertools.pairwise(xs)
             for y0, y1 in itertools.pairwise(ys)]
    n = len(cells)
    claims = gpd.GeoDataFrame({
        "CLAIM_NO": [f"R{i}" for i in range(n)],
        "ITEM": ["building"] * (n - 1) + ["swimming pool"],
        "PROJ": "rennes",
        "AREA_MU": np.round(np.linspace(0.5, 6.0, n), 2),
        "NOTICE": ["2016-01-01"] * (n - 2) + ["2018-03-01", "2016-01-01"],
    }, geometry=cells)
    shp = _shapefile_without_prj(claims, tmp_path / "claims.shp")
    store = tmp_path / "s.gpkg"
    args = ["imagery", "compare", "--before", str(city / "imgs_1"), "--after",
            str(city / "imgs_2"), "--before-date", dates["date_1"], "--after-date",
            dates["date_2"], "--claims", str(shp), "--store", str(store),
            "--workdir", str(tmp_path / "w"), "--rule", "built_after_notice",
            "--map", "claims.claim_id=CLAIM_NO", "--map", "claims.item=ITEM",
            "--map", "claims.project_id=PROJ", "--map", "claims.claimed_area_m2=AREA_MU",
            "--map", "claims.notice_date=NOTICE", "--unit", "claims.claimed_area_m2=mu"]
    line = cli_error_line(runner.invoke(main, args))
    assert line == (f"Error: {shp} has no coordinate reference system; declare it with "
                    "--input-crs claims=EPSG:<code>")
    _no_python(line)
    res = runner.invoke(main, [*args, "--input-crs", "claims=EPSG:4326"])
    assert res.exit_code == 0, res.output
    assert f"claims: {n} rows in, {n - 2} used, 2 rejected" in res.stderr
    with open_store(store) as st:
        layer = st.read_layer("claims").set_index("claim_id")
        rejects = st.rejects().set_index("key")
        params = json.loads(st.runs()["params"].iloc[0])
    assert params["units"] == {"claims": {"claimed_area_m2": "mu"}}
    assert params["input_crs"] == {"claims": "EPSG:4326"}
    used = claims.set_index("CLAIM_NO").loc[layer.index]
    np.testing.assert_allclose(layer["claimed_area_m2"], used["AREA_MU"] * M2_PER_MU,
                               rtol=1e-12)
    # Rejected by compare (an unknown item; a notice date no image pair straddles, after the
    # claims' notice_date was derived): the shapefile's own fields and text, nothing derived.
    assert rejects.loc[f"R{n - 1}", "reason"].startswith("unknown item 'swimming pool'")
    assert "2018-03-01" in rejects.loc[f"R{n - 2}", "reason"]
    written = gpd.read_file(shp).set_index("CLAIM_NO")  # as the file holds it (rings clockwise)
    for key in (f"R{n - 1}", f"R{n - 2}"):
        values = json.loads(rejects.loc[key, "raw"])
        assert set(values) == {"CLAIM_NO", "ITEM", "PROJ", "AREA_MU", "NOTICE", "geometry"}
        source = written.loc[key]
        assert values["CLAIM_NO"] == key and values["ITEM"] == source["ITEM"]
        assert values["NOTICE"] == source["NOTICE"] and values["PROJ"] == "rennes"
        assert float(values["AREA_MU"]) == source["AREA_MU"]  # in mu, as the file has it
        assert shapely.from_wkt(values["geometry"]).equals_exact(source.geometry, 0.0)
