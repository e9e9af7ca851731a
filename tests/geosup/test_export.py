"""Round trips of :mod:`geosup.export` over every format, on real geometries.

The alert table is built with :func:`geosup.alerts.make_alerts` from real NL reference
parcels (EPSG:28992 MultiPolygons) and real Liverpool bus GPS fixes (EPSG:4326
points and tracks), mixed as real alerts are: polygons, points, tracks, the
GeometryCollections of a station and a track that fuel rules write, a nested
collection, rows without geometry. Rows are always matched by id, never by position:
FlatGeobuf's spatial index reorders them and GeoPackage adds its own FIDs.
"""

from __future__ import annotations

import doctest
import io
import json
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely

from geosup import export
from geosup.alerts import ALERT_COLUMNS, make_alerts
from geosup.errors import CRSError, DataSourceError, ExportError, GeosupError
from geosup.export import (
    FORMATS,
    SHAPEFILE_FIELDS,
    SHAPEFILE_GEOMETRY_FIELD,
    SHAPEFILE_MAX_BYTES,
    SHAPEFILE_PARTS,
    export_layer,
    infer_format,
    read_back,
    shapefile_field_names,
)

PARCELS = Path("parcels") / "reference" / "nl" / "referentiepercelen.gpkg"
BUS = Path("trajectories") / "liverpool_bus_route14_outbound_2026-01-26.csv"
README = Path(__file__).resolve().parents[2] / "README.md"
FILE_FORMATS = tuple(f for f in FORMATS if f != "postgis")
#: Every format; the PostGIS case uses the session's server.
ALL_FORMATS = [pytest.param(f, marks=pytest.mark.postgis) if f == "postgis" else f
               for f in FORMATS]
SUFFIX = {"gpkg": ".gpkg", "fgb": ".fgb", "parquet": ".parquet", "geojson": ".geojson",
          "shp": ".shp.zip"}
NOW = pd.Timestamp("2026-02-03 08:15:42.654321", tz="UTC")


# --------------------------------------------------------------------------- data


@pytest.fixture(scope="module")
def parcels(shared_data: Path) -> gpd.GeoDataFrame:
    """100 real NL reference parcels with their own id column (EPSG:28992)."""
    raw = gpd.read_file(shared_data / PARCELS, engine="pyogrio", fid_as_index=True)
    fid = raw.index.to_numpy()
    raw = raw.reset_index(drop=True)
    layer = gpd.GeoDataFrame(
        {
            "parcel_id": pd.Series(fid).map("NL-{}".format).astype("string"),
            "land_use": raw["type"].astype("string"),
            "source_of_version": raw["versiebron"].astype("string"),
            "eligible_area_m2": raw.area.to_numpy(),
            "eligible_area_ha": raw.area.to_numpy() / 10_000,
            "surveyed_at": pd.date_range("2025-05-01 06:30:00.25", periods=len(raw),
                                         freq="37min", tz="Europe/Amsterdam"),
            "备注说明很长的字段名": ['地块 "甲" <b>' + "很长" * (i % 90) for i in range(len(raw))],
        },
        geometry=raw.geometry.to_numpy(),
        crs=raw.crs,
    )
    layer.loc[3, "eligible_area_m2"] = np.nan
    layer.loc[4, "surveyed_at"] = pd.NaT
    return layer


@pytest.fixture(scope="module")
def fixes(shared_data: Path) -> gpd.GeoDataFrame:
    """Real GPS fixes of Liverpool buses (UTC)."""
    raw = pd.read_csv(shared_data / BUS)
    return gpd.GeoDataFrame(
        {"fix_id": raw["id"].astype(str), "vehicle_id": raw["vehicle_id"].astype(str),
         "time": pd.to_datetime(raw["timestamp"]).dt.tz_localize("UTC")},
        geometry=gpd.points_from_xy(raw["longitude"], raw["latitude"]), crs=4326)


@pytest.fixture(scope="module")
def alerts(parcels: gpd.GeoDataFrame, fixes: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """A realistic alert table: Polygon, MultiPolygon, Point, MultiPoint, null, empty."""
    plots = parcels.to_crs(4326)
    geom = plots.geometry.to_numpy()
    polygon = shapely.get_geometry(geom, 0)  # the single part of each MultiPolygon
    water = int(np.flatnonzero(plots["land_use"].to_numpy() == "Water")[0])
    two_parts = shapely.multipolygons([polygon[2], polygon[3]])
    f = fixes.geometry.to_numpy()
    t = fixes["time"]
    long_ids = fixes["fix_id"].iloc[:60].tolist()
    hits = [
        ("farmland.over_declared", "applicant", "A-0001", "2025", polygon[0], NOW,
         1834.25, 0.91, 'Declared 12.4 mu exceeds the "eligible" 9.1 mu',
         {"declared_mu": 12.4, "eligible_mu": 9.1, "tolerance": 0.1,
          "parcels": plots["parcel_id"].iloc[:30].tolist(), "note": "申报面积超出合同面积"}),
        ("farmland.over_declared", "applicant", "A-0002", "2025", geom[1], NOW,
         np.nan, 0.42, "申报面积超出合同面积 (城关镇)",
         {"declared_mu": 3.0, "eligible_mu": 2.5}),
        ("farmland.double_claim", "parcel", "NL-1|NL-2", "2025", two_parts, NOW,
         620.0, 1.0, "Same land claimed by two applicants",
         {"html": '<script>alert("x")</script>', "applicants": ["A-7", "A-8"]}),
        ("farmland.non_farm_land", "parcel", str(plots["parcel_id"].iloc[water]), "2025",
         polygon[water], NOW, 75.5, 0.66, "Claim on land the reference layer calls 'Water'",
         {"land_use": "Water"}),
        ("fuel.away_from_station", "card", "C-17", "2026-01", f[10], t.iloc[10],
         63.2, 0.8, "Card swiped 2.3 km from the station",
         {"fix_ids": long_ids, "distance_m": 2310.4, "radius_m": 300,
          "quote": 'he said "full tank" \\ C:\\cards', "中文": "加油站"}),
        ("fuel.over_tank_capacity", "card", "C-18", "2026-01", f[200], t.iloc[200],
         np.nan, None, "<script>alert('fill')</script>", {"litres": 91.0, "tank_l": 60}),
        ("fuel.night_fill", "card", "C-19", "2026-01", shapely.multipoints([f[300], f[301]]),
         t.iloc[300], 40.0, 0.3, "Night fill: vehicle and station positions",
         {"fix_ids": long_ids[:2]}),
        ("fuel.no_movement", "vehicle", "4716", "2026-01", None, pd.NaT, np.nan, 0.5,
         "Card used for a vehicle that did not move", {"km": 0}),
        ("requisition.built_after_notice", "claim", "CL-9", "2024-Q3", shapely.Polygon(),
         NOW, 125000.0, 0.99, "Greenhouse appeared after the freeze date",
         {"notice_date": "2024-07-01", "chips": [f"chip-{i:04d}" for i in range(40)],
          "说明": "冻结日期后新建大棚" * 5}),
        # what the fuel rules write: the station and the vehicle's track around the fill
        ("fuel.consumption_mismatch", "vehicle", "4720", "2026-01",
         shapely.GeometryCollection([f[400], shapely.LineString(f[:150])]), t.iloc[400],
         88.0, 0.7, "Fuel bought that the kilometres driven cannot explain",
         {"km": 41.2, "litres": 60.0}),
        # a parked vehicle: its track is one position repeated (a degenerate line)
        ("fuel.off_hours", "card", "C-20", "2026-01",
         shapely.GeometryCollection([f[500], shapely.LineString([f[600]] * 4)]),
         t.iloc[500], 35.0, 0.4, "Fill on a Sunday night", {"weekday": 6}),
        ("fuel.no_stop_at_station", "vehicle", "4721", "2026-01", shapely.LineString(f[150:320]),
         t.iloc[150], np.nan, 0.6, "The track passed the station without stopping",
         {"closest_m": 850.0}),
        ("fuel.away_from_station", "card", "C-21", "2026-01",
         shapely.multilinestrings([shapely.LineString(f[320:400]),
                                   shapely.LineString(f[700:780])]),
         t.iloc[320], 12.5, 0.2, "Two trips, neither past the station", {"trips": 2}),
        # everything at once, nested: every kind of the Shapefile split
        ("requisition.claimed_not_seen", "claim", "CL-10", "2024-Q3",
         shapely.GeometryCollection([
             polygon[5], shapely.LineString(f[800:840]),
             shapely.GeometryCollection([shapely.multipoints([f[850], f[851]]), polygon[6],
                                         shapely.LineString()]),
             shapely.Point()]),
         NOW, 9800.0, 0.85, "Claimed greenhouse not seen on the imagery",
         {"chips": ["chip-0001"]}),
    ]
    names = ("rule", "subject_type", "subject_id", "period", "geometry", "observed_at",
             "amount_at_risk", "score", "title", "evidence")
    frame = pd.DataFrame(hits, columns=names)
    frame["unit"] = ["城关镇农业站", "Village \"North\"", "", "Dorp", "Fleet — Unit 3",
                     "Fleet", "Fleet", "Fleet", "Project <A>", "Fleet", "Fleet — 夜班", "Fleet",
                     "Fleet", "Project <A>"]
    frame["detail"] = frame["title"] + " — " + "measured values in evidence " * 12
    frame["severity"] = ["high", "medium", "critical", "high", "high", "medium", "low",
                         "medium", "critical", "high", "low", "medium", "low", "high"]
    hits_gdf = gpd.GeoDataFrame(frame.drop(columns="geometry"),
                                geometry=gpd.GeoSeries(frame["geometry"], crs=4326), crs=4326)
    table = make_alerts(hits_gdf, run_id="run-2026-02-03", now=NOW)
    table.loc[0, ["status", "status_by", "status_note"]] = [
        "investigating", "李娜 (inspector)", "called the applicant; 'no answer'"]
    table.loc[0, "status_at"] = pd.Timestamp("2026-02-04 09:00:01.5", tz="UTC")
    table.loc[4, ["status", "status_by"]] = ["dismissed", "o'brien"]
    table.loc[4, "status_at"] = pd.Timestamp("2026-02-05 17:45:00", tz="UTC")
    assert table["evidence"].str.len().max() > SHAPEFILE_MAX_BYTES
    assert set(table.geom_type.dropna()) == {
        "Polygon", "MultiPolygon", "Point", "MultiPoint", "LineString", "MultiLineString",
        "GeometryCollection"}
    assert table.geometry.isna().any() and table.geometry.is_empty.any()
    return table


# --------------------------------------------------------------------------- helpers

_KIND = {"Point": "point", "MultiPoint": "point", "LineString": "line", "LinearRing": "line",
         "MultiLineString": "line", "Polygon": "polygon", "MultiPolygon": "polygon"}
_MULTI_OF = {"point": shapely.MultiPoint, "line": shapely.MultiLineString,
             "polygon": shapely.MultiPolygon}


def _singles(geom: shapely.Geometry | None) -> list[shapely.Geometry]:
    """The non-empty single parts of ``geom``, collections and multi parts flattened."""
    if geom is None or geom.is_empty:
        return []
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _singles(g)]
    if geom.geom_type == "LinearRing":
        return [shapely.LineString(geom.coords)]
    return [geom]


def _without_empty_members(geom: shapely.Geometry | None) -> shapely.Geometry | None:
    """A GeometryCollection without its empty members, at any depth (as exported)."""
    if geom is None or geom.geom_type != "GeometryCollection":
        return geom
    return shapely.GeometryCollection([_without_empty_members(g) for g in geom.geoms
                                       if not g.is_empty])


def _flat_collection(geom: shapely.Geometry | None) -> shapely.Geometry | None:
    """A GeometryCollection as the collection of its single parts (what a zipped
    Shapefile gives back); anything else as it is."""
    if geom is not None and geom.geom_type == "GeometryCollection":
        return shapely.GeometryCollection(_singles(geom))
    return geom


def expected_shapefile_parts(frame: gpd.GeoDataFrame) -> dict[str, gpd.GeoDataFrame]:
    """The documented Shapefile split, worked out one geometry at a time.

    The reference for the vectorised split: a row goes to the file of its kind; a
    GeometryCollection gives one row to each kind it has parts of (one part as a
    single geometry, several as a multi geometry); rows without geometry (or with
    an empty one) go to the ``nogeom`` table.
    """
    rows: dict[str, list[tuple[int, shapely.Geometry | None]]] = {k: [] for k in SHAPEFILE_PARTS}
    for i, geom in enumerate(frame.geometry):
        if geom is None or geom.is_empty:
            rows["nogeom"].append((i, None))
        elif geom.geom_type == "GeometryCollection":
            singles = _singles(geom)
            for kind in ("point", "line", "polygon"):
                mine = [p for p in singles if _KIND[p.geom_type] == kind]
                if mine:
                    rows[kind].append((i, mine[0] if len(mine) == 1 else _MULTI_OF[kind](mine)))
        else:
            rows[_KIND[geom.geom_type]].append((i, geom))
    parts = {}
    for kind, found in rows.items():
        if found:
            positions = [i for i, _ in found]
            part = frame.iloc[positions].copy()
            part["geometry"] = gpd.GeoSeries([g for _, g in found], index=part.index,
                                             crs=frame.crs)
            parts[kind] = part
    return parts


def _multi(values: np.ndarray) -> np.ndarray:
    """Single geometries as one-part multi geometries (Shapefile semantics)."""
    out = np.asarray(values, dtype=object).copy()
    types = shapely.get_type_id(out)
    for single, build in ((0, shapely.multipoints), (1, shapely.multilinestrings),
                          (3, shapely.multipolygons)):
        mask = types == single
        if mask.any():
            out[mask] = build(out[mask], indices=np.arange(int(mask.sum())))
    return out


def _cut(text: pd.Series) -> pd.Series:
    encoded = text.str.encode("utf-8")
    return encoded.str[:SHAPEFILE_MAX_BYTES].str.decode("utf-8", errors="ignore").astype(
        "string")


def assert_same_layer(expected: gpd.GeoDataFrame, got: gpd.GeoDataFrame, *, fmt: str,
                      id_column: str, promoted: bool = False) -> None:
    """Rows matched by id; geometry (type included), CRS and every value compared.

    For ``fmt="shp"`` the documented Shapefile changes are expected: collections
    come back flattened, strings cut to 254 bytes, "" as missing. ``promoted``: one
    Shapefile part read alone, where single and multi geometries are not told apart.
    """
    epsg = 4326 if fmt == "geojson" else expected.crs.to_epsg()
    assert got.crs is not None and got.crs.to_epsg() == epsg
    assert got[id_column].is_unique
    assert sorted(got[id_column].astype(str)) == sorted(expected[id_column].astype(str))
    assert set(expected.columns) <= set(got.columns)
    exp = expected.to_crs(epsg).set_index(expected[id_column].astype(str))
    got = got.set_index(got[id_column].astype(str)).loc[exp.index]

    a = np.array([_without_empty_members(g) for g in exp.geometry], dtype=object)
    a[shapely.is_empty(a)] = None
    b = got.geometry.to_numpy()
    assert (shapely.is_missing(a) == shapely.is_missing(b)).all()
    keep = ~shapely.is_missing(a)
    a, b = a[keep], b[keep]
    if fmt == "geojson":  # RFC 7946 keeps 7 decimals: round so both normalise alike
        assert (shapely.hausdorff_distance(a, b) <= 1e-7).all()
        a = shapely.transform(a, lambda xy: np.round(xy, 7))
    if fmt in ("shp", "geojson"):  # documented: collections of single parts
        a = np.array([_flat_collection(g) for g in a], dtype=object)
    if promoted:
        a, b = _multi(a), _multi(b)
    types_a, types_b = shapely.get_type_id(a), shapely.get_type_id(b)
    assert (types_a == types_b).all(), list(zip(exp.index[keep][types_a != types_b],
                                                 types_a[types_a != types_b],
                                                 types_b[types_a != types_b], strict=True))
    tol = 1e-7 if fmt == "geojson" else 0.0
    same = shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), tolerance=tol)
    assert same.all(), list(exp.index[keep][~same])

    for name in expected.columns:
        if name == expected.geometry.name:
            continue
        e, g = exp[name], got[name]
        if pd.api.types.is_datetime64_any_dtype(e.dtype):
            assert pd.api.types.is_datetime64_any_dtype(g.dtype), (name, g.dtype)
            assert (e.isna().to_numpy() == g.isna().to_numpy()).all(), name
            diff = (g.dt.tz_convert("UTC") - e.dt.tz_convert("UTC")).abs().dropna()
            assert (diff <= pd.Timedelta("1ms")).all(), (name, diff.max())
        elif pd.api.types.is_float_dtype(e.dtype):
            np.testing.assert_allclose(g.astype("float64"), e.astype("float64"),
                                       rtol=1e-12, equal_nan=True, err_msg=name)
        else:
            e, g = e.astype("string"), g.astype("string")
            if fmt == "shp":  # documented: cut to 254 bytes, padding spaces lost
                e = _cut(e).str.rstrip(" ").replace("", pd.NA)
            assert (e.isna().to_numpy() == g.isna().to_numpy()).all(), name
            mismatch = e.notna() & (e != g)
            assert not mismatch.any(), (name, e[mismatch].iloc[0], g[mismatch].iloc[0])


def _target(fmt: str, tmp_path: Path, request: pytest.FixtureRequest, name: str) -> str | Path:
    if fmt == "postgis":
        return f"{request.getfixturevalue('postgis_url')}#public.{name}"
    return tmp_path / f"{name}{SUFFIX[fmt]}"


def _dbf_fields(data: bytes) -> dict[str, tuple[str, int, int]]:
    """Field name -> (type, byte offset in a record, width in bytes), from a dBase header."""
    fields, offset, pos = {}, 1, 32  # every record starts with its deletion flag
    while data[pos] != 0x0D:
        name = data[pos:pos + 11].split(b"\0")[0].decode("utf-8")
        fields[name] = (chr(data[pos + 11]), offset, data[pos + 16])
        offset += data[pos + 16]
        pos += 32
    return fields


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_alerts_round_trip(fmt: str, alerts: gpd.GeoDataFrame, tmp_path: Path,
                           request: pytest.FixtureRequest) -> None:
    """Mixed geometry types (collections and missing geometries too) in every format."""
    out = export_layer(alerts, _target(fmt, tmp_path, request, "alerts"))
    back = read_back(out)
    assert list(back.columns[: len(ALERT_COLUMNS)]) == list(ALERT_COLUMNS)
    assert SHAPEFILE_GEOMETRY_FIELD not in back.columns
    assert_same_layer(alerts, back, fmt=fmt, id_column="alert_id")
    if fmt not in ("shp", "geojson"):  # collections stay nested
        got = back.set_index("alert_id").loc[alerts["alert_id"]].geometry
        nested = alerts["rule"].eq("requisition.claimed_not_seen").to_numpy()
        assert got[nested].iloc[0].geoms[2].geom_type == "GeometryCollection"
    if fmt != "shp":  # evidence JSON survives exactly
        ev = back.set_index("alert_id").loc[alerts["alert_id"], "evidence"]
        assert [json.loads(x) for x in ev] == [json.loads(x) for x in alerts["evidence"]]


def test_shapefile_parts_round_trip(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    """Each part of the zipped Shapefile read alone equals the documented split."""
    out = export_layer(alerts, tmp_path / "alerts.shp.zip")
    expected = expected_shapefile_parts(alerts)
    assert set(expected) == set(SHAPEFILE_PARTS)  # this table has every kind
    with zipfile.ZipFile(out) as zf:
        tables = sorted(n for n in zf.namelist() if n.endswith((".shp", "_nogeom.dbf")))
        prj = {n: zf.read(n).decode() for n in zf.namelist() if n.endswith(".prj")}
    assert tables == sorted(["alerts_point.shp", "alerts_line.shp", "alerts_polygon.shp",
                             "alerts_nogeom.dbf"])
    assert len(prj) == 3 and len(set(prj.values())) == 1 and "WGS" in next(iter(prj.values()))
    counts: dict[str, int] = {}
    for kind, want in expected.items():
        got = read_back(out, layer=f"alerts_{kind}")
        assert got.crs.to_epsg() == 4326
        assert len(got) == len(want) and got["alert_id"].is_unique  # each id once per part
        if kind == "nogeom":
            assert got.geometry.isna().all()
        assert_same_layer(want, got, fmt="shp", id_column="alert_id", promoted=True)
        for alert_id in got["alert_id"]:
            counts[alert_id] = counts.get(alert_id, 0) + 1
        raw = pyogrio.read_dataframe(f"/vsizip/{out}/alerts_{kind}."
                                     f"{'dbf' if kind == 'nogeom' else 'shp'}")
        original = alerts.geom_type.where(~shapely.is_missing(alerts.geometry.to_numpy())
                                          & ~alerts.is_empty)
        original = original.set_axis(alerts["alert_id"]).reindex(raw["alert_id"])
        assert raw[SHAPEFILE_GEOMETRY_FIELD].fillna("").tolist() == \
            original.fillna("").tolist()
    # every alert in exactly one file, a collection once in each file of a kind it holds
    kinds = {row.alert_id: {_KIND[p.geom_type] for p in _singles(row.geometry)} or {"nogeom"}
             for row in alerts.itertuples()}
    assert counts == {k: len(v) for k, v in kinds.items()}
    assert max(counts.values()) == 3  # the nested collection is in all three files


def test_shapefile_odd_geometries(tmp_path: Path) -> None:
    """Rings, empty parts, collections of one kind, an empty layer."""
    geoms = [
        shapely.LinearRing([(0, 0), (3, 0), (3, 3), (0, 0)]),
        shapely.GeometryCollection([shapely.Point(1, 1)]),
        shapely.GeometryCollection([shapely.Point(), shapely.LineString([(0, 0), (1, 2)])]),
        shapely.GeometryCollection([shapely.GeometryCollection()]),
        shapely.GeometryCollection([shapely.Polygon([(0, 0), (1, 0), (1, 1)]),
                                    shapely.Polygon([(5, 5), (6, 5), (6, 6)])]),
        shapely.Point(7, 7),
    ]
    frame = gpd.GeoDataFrame({"key": list("abcdef")}, geometry=geoms, crs=3857)
    out = export_layer(frame, tmp_path / "odd.zip", id_column="key")
    back = read_back(out).set_index("key")
    assert back.crs.to_epsg() == 3857
    assert back.loc["a", "geometry"].equals(geoms[0])
    assert back.loc["a", "geometry"].geom_type == "LinearRing"
    assert back.loc["b", "geometry"].equals(geoms[1]) and back.loc["b", "geometry"].geom_type \
        == "GeometryCollection"
    assert back.loc["c", "geometry"].wkt == "GEOMETRYCOLLECTION (LINESTRING (0 0, 1 2))"
    assert back.loc["d", "geometry"] is None
    assert shapely.equals_exact(shapely.normalize(back.loc["e", "geometry"]),
                                shapely.normalize(geoms[4]))
    assert back.loc["f", "geometry"].geom_type == "Point"
    for kind, part in expected_shapefile_parts(frame).items():
        assert_same_layer(part, read_back(out, layer=f"odd_{kind}"), fmt="shp",
                          id_column="key", promoted=True)

    empty = export_layer(frame.iloc[:0], tmp_path / "empty.zip", id_column="key")
    assert [n for n in zipfile.ZipFile(empty).namelist() if n.endswith((".shp", ".dbf"))] \
        == ["empty_nogeom.dbf"]
    assert len(read_back(empty)) == 0 and list(read_back(empty).columns) == ["key", "geometry"]


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_parcel_layer_round_trip(fmt: str, parcels: gpd.GeoDataFrame, tmp_path: Path,
                                 request: pytest.FixtureRequest) -> None:
    out = export_layer(parcels, _target(fmt, tmp_path, request, "parcels"),
                       id_column="parcel_id")
    back = read_back(out)
    assert_same_layer(parcels, back, fmt=fmt, id_column="parcel_id")
    if fmt != "geojson":
        assert back.crs.to_epsg() == 28992


def test_layer_name_is_used(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    out = export_layer(alerts, tmp_path / "out.gpkg", layer="fuel_alerts")
    assert pyogrio.list_layers(out)[0, 0] == "fuel_alerts"
    assert len(read_back(out, layer="fuel_alerts")) == len(alerts)
    shp = export_layer(alerts, tmp_path / "out.zip", layer="fuel_alerts")
    assert {"fuel_alerts_point.shp", "fuel_alerts_nogeom.dbf"} <= set(
        zipfile.ZipFile(shp).namelist())
    with pytest.raises(DataSourceError, match="no Shapefile or table named 'out'"):
        read_back(shp, layer="out")


# --------------------------------------------------------------------------- per format


def test_geojson_is_rfc7946(parcels: gpd.GeoDataFrame, alerts: gpd.GeoDataFrame,
                            tmp_path: Path) -> None:
    out = export_layer(parcels, tmp_path / "parcels.json", id_column="parcel_id")
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert "crs" not in doc
    xy = shapely.get_coordinates(shapely.from_geojson(out.read_text(encoding="utf-8")))
    assert (np.abs(xy[:, 0]) <= 180).all() and (np.abs(xy[:, 1]) <= 90).all()
    assert xy[:, 0].min() > 3 and xy[:, 0].max() < 8  # lon, lat order (the Netherlands)
    props = doc["features"][0]["properties"]
    assert props["parcel_id"].startswith("NL-")
    assert props["surveyed_at"].endswith("Z")

    out = export_layer(alerts, tmp_path / "alerts.geojson")
    feats = json.loads(out.read_text(encoding="utf-8"))["features"]
    by_id = {f["properties"]["alert_id"]: f for f in feats}
    none_id = alerts.loc[alerts["rule"] == "fuel.no_movement", "alert_id"].iloc[0]
    assert by_id[none_id]["geometry"] is None
    assert by_id[alerts["alert_id"].iloc[0]]["properties"]["first_seen"] == \
        "2026-02-03T08:15:42.654321Z"


def test_geoparquet_1_1_keeps_crs(parcels: gpd.GeoDataFrame, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = export_layer(parcels, tmp_path / "parcels.geoparquet", id_column="parcel_id")
    geo = json.loads(pq.read_metadata(out).metadata[b"geo"])
    assert geo["version"] == "1.1.0"
    assert geo["columns"]["geometry"]["crs"]["id"]["code"] == 28992


def test_gpkg_keeps_mixed_types_and_utc(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    out = export_layer(alerts, tmp_path / "alerts.gpkg")
    info = pyogrio.read_info(out)
    assert info["geometry_type"] == "Unknown"
    raw = pyogrio.read_dataframe(out)
    assert str(raw["first_seen"].dt.tz) == "UTC"


def test_flatgeobuf_spatial_index(parcels: gpd.GeoDataFrame, alerts: gpd.GeoDataFrame,
                                  tmp_path: Path) -> None:
    out = export_layer(parcels, tmp_path / "parcels.fgb", id_column="parcel_id")
    assert pyogrio.read_info(out)["capabilities"]["fast_spatial_filter"]
    # rows without geometry: written without the index, still every row
    out = export_layer(alerts, tmp_path / "alerts.fgb")
    assert len(read_back(out)) == len(alerts)


def test_shapefile_zip_contents(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    out = export_layer(alerts, tmp_path / "alerts.zip")
    parts = ("alerts_point", "alerts_line", "alerts_polygon")
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {f"{p}{ext}" for p in parts for ext in (".shp", ".shx", ".dbf", ".prj", ".cpg")} \
            | {"alerts_nogeom.dbf", "alerts_nogeom.cpg", "fields.csv", "README.txt"} == names
        assert all(zf.read(f"{p}.cpg").decode().strip() == "UTF-8" for p in parts)
        readme = zf.read("README.txt").decode()
        with zf.open("fields.csv") as f:
            fields = pd.read_csv(f, keep_default_na=False)
    assert list(fields.columns) == ["name", "short_name", "dtype", "truncated_values", "role"]
    data = fields[fields["role"] != "geometry type"]
    assert dict(zip(data["name"], data["short_name"], strict=True)) == {
        c: SHAPEFILE_FIELDS[c] for c in ALERT_COLUMNS if c != "geometry"}
    assert fields.loc[fields["role"] == "id", "name"].tolist() == ["alert_id"]
    assert fields.loc[fields["role"] == "geometry type", "short_name"].tolist() == [
        SHAPEFILE_GEOMETRY_FIELD]
    truncated = dict(zip(data["name"], data["truncated_values"], strict=True))
    assert truncated["evidence"] >= 1 and truncated["alert_id"] == 0

    # README.txt says which file holds what, with the row counts
    expected = expected_shapefile_parts(alerts)
    for kind, part in expected.items():
        suffix = "dbf" if kind == "nogeom" else "shp"
        line = next(ln for ln in readme.splitlines() if f"alerts_{kind}.{suffix}" in ln)
        assert f" {len(part)} row" in line and SHAPEFILE_PARTS[kind] in line
    assert "254 bytes (not characters)" in readme and "GeometryCollection" in readme
    assert "fields.csv" in readme and "alert_id" in readme

    fields_of = {}
    for part in (*parts, "alerts_nogeom"):
        member = f"{part}.{'dbf' if part.endswith('nogeom') else 'shp'}"
        raw = pyogrio.read_dataframe(f"/vsizip/{out}/{member}")
        info = pyogrio.read_info(f"/vsizip/{out}/{member}")
        fields_of[part] = list(info["fields"])
        assert all(len(f.encode()) <= 10 for f in info["fields"])
        assert (raw["evidence"].str.encode("utf-8").str.len() <= SHAPEFILE_MAX_BYTES).all()
        original = alerts.set_index("alert_id")["evidence"]
        kept = raw.set_index("alert_id")["evidence"]
        assert all(original[k].startswith(v) for k, v in kept.items())
        assert raw["obs_at"].dropna().str.endswith("Z").all()
    # every file has the same fields: the alert fields, then geom_type
    assert all(f == [*(SHAPEFILE_FIELDS[c] for c in ALERT_COLUMNS[:-1]),
                     SHAPEFILE_GEOMETRY_FIELD] for f in fields_of.values())
    types = {p: pyogrio.read_info(f"/vsizip/{out}/{p}.shp")["geometry_type"] for p in parts}
    assert types["alerts_point"] == "MultiPoint"  # Points promoted: a MultiPoint is there
    assert types["alerts_line"] in ("LineString", "MultiLineString")
    assert types["alerts_polygon"] in ("Polygon", "MultiPolygon")


def test_shapefile_of_one_kind(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    """Only the parts that have rows are written; only Points make a Point Shapefile."""
    points = alerts[alerts.geom_type.eq("Point")]
    out = export_layer(points, tmp_path / "p.shp.zip")
    names = zipfile.ZipFile(out).namelist()
    assert [n for n in names if n.endswith((".shp", ".dbf"))] == ["p_point.shp", "p_point.dbf"]
    assert pyogrio.read_info(f"/vsizip/{out}/p_point.shp")["geometry_type"] == "Point"
    assert_same_layer(points, read_back(out), fmt="shp", id_column="alert_id")
    assert_same_layer(points, read_back(out, layer="p_point"), fmt="shp", id_column="alert_id")


def test_shapefile_strings_cut_at_254_bytes(tmp_path: Path) -> None:
    """The dBase limit is bytes: UTF-8 text is cut to <= 254 bytes, never inside a character."""
    texts = {
        "ascii-300": "a" * 300,                 # -> 254 characters
        "e-127": "é" * 127,                      # 254 bytes: kept whole
        "e-128": "é" * 128,                      # 256 bytes -> 127 characters (254 bytes)
        "zh-85": "中" * 85,                      # 255 bytes -> 84 characters (252 bytes)
        "emoji": "a" + "\N{GRINNING FACE}" * 64,  # 257 bytes -> 1 + 63 characters (253 bytes)
        "short": "地块",
    }
    frame = gpd.GeoDataFrame({"key": list(texts), "note": list(texts.values())},
                             geometry=gpd.points_from_xy(range(6), range(6)), crs=4326)
    out = export_layer(frame, tmp_path / "t.zip", id_column="key")
    want = {"ascii-300": "a" * 254, "e-127": "é" * 127, "e-128": "é" * 127, "zh-85": "中" * 84,
            "emoji": "a" + "\N{GRINNING FACE}" * 63, "short": "地块"}
    assert read_back(out).set_index("key")["note"].to_dict() == want
    with zipfile.ZipFile(out) as zf:
        fields = pd.read_csv(io.BytesIO(zf.read("fields.csv")), keep_default_na=False)
        dbf = zf.read("t_point.dbf")
    assert fields.set_index("name").loc["note", "truncated_values"] == 4
    # what the file holds: a field of at most 254 bytes, every value valid UTF-8
    kind, offset, width = _dbf_fields(dbf)["note"]
    assert kind == "C" and width <= SHAPEFILE_MAX_BYTES
    header, record = int.from_bytes(dbf[8:10], "little"), int.from_bytes(dbf[10:12], "little")
    values = [dbf[header + i * record + offset:header + i * record + offset + width]
              for i in range(len(frame))]
    assert [v.decode("utf-8").rstrip(" ") for v in values] == [want[k] for k in texts]


def test_readme_lists_the_shapefile_fields() -> None:
    """README.md's field table is SHAPEFILE_FIELDS (regenerate it from there)."""
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- SHAPEFILE_FIELDS")
    block = text[text.index("\n", start) + 1:text.index("<!-- /SHAPEFILE_FIELDS -->")]
    table = "\n".join(["| column | Shapefile field |", "|---|---|",
                       *(f"| `{k}` | `{v}` |" for k, v in SHAPEFILE_FIELDS.items())]) + "\n"
    assert block == table, f"replace README.md's table with:\n{table}"
    assert "254 **bytes**" in text and "254 characters" not in text
    assert all(f"alerts_{kind}." in text for kind in SHAPEFILE_PARTS)
    assert f"`{SHAPEFILE_GEOMETRY_FIELD}`" in text


def test_shapefile_field_mapping_is_unique_and_reversible(tmp_path: Path) -> None:
    assert all(len(v.encode()) <= 10 for v in SHAPEFILE_FIELDS.values())
    assert len({v.casefold() for v in SHAPEFILE_FIELDS.values()}) == len(SHAPEFILE_FIELDS)
    assert SHAPEFILE_FIELDS["subject_type"] == "subj_type"
    assert SHAPEFILE_FIELDS["amount_at_risk"] == "amount"
    assert SHAPEFILE_FIELDS["observed_at"] == "obs_at"
    columns = ["amount", "amount_at_risk", "Amount", "AMOUNT_1", "eligible_area_m2",
               "eligible_area_ha", "eligible_a", "中文字段名称很长", "subj_type", "subject_type",
               "x" * 30, "x" * 31]
    names = shapefile_field_names(columns)
    assert names == shapefile_field_names(columns)  # deterministic
    assert names["amount_at_risk"] == "amount" and names["subject_type"] == "subj_type"
    short = list(names.values())
    assert all(len(s.encode("utf-8")) <= 10 for s in short)
    assert len({s.casefold() for s in short}) == len(columns)

    frame = gpd.GeoDataFrame({c: [f"{c}-{i}" for i in range(3)] for c in columns},
                             geometry=gpd.points_from_xy([0, 1, 2], [0, 1, 2]), crs=4326)
    frame["row"] = ["a", "b", "c"]
    out = export_layer(frame, tmp_path / "tricky.zip", id_column="row")
    back = read_back(out)
    assert list(back.columns) == [*columns, "row", "geometry"]
    for c in columns:
        assert back.set_index("row")[c].to_dict() == frame.set_index("row")[c].to_dict()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_refuses_to_clobber(fmt: str, alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    frame = alerts
    out = tmp_path / f"alerts{SUFFIX[fmt]}"
    export_layer(frame, out)
    before = out.read_bytes()
    with pytest.raises(ExportError, match="already exists; pass overwrite=True"):
        export_layer(frame.iloc[:2], out)
    assert out.read_bytes() == before
    assert export_layer(frame.iloc[:2], out, overwrite=True) == out
    assert sorted(read_back(out)["alert_id"]) == sorted(frame["alert_id"].iloc[:2])


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_failed_overwrite_keeps_old_file(fmt: str, alerts: gpd.GeoDataFrame,
                                         tmp_path: Path) -> None:
    out = export_layer(alerts, tmp_path / f"alerts{SUFFIX[fmt]}")
    before = out.read_bytes()
    bad = alerts.assign(ratio=np.full(len(alerts), 1 + 2j))  # no format has complex numbers
    with pytest.raises(ExportError, match=f"cannot write {fmt} file"):
        export_layer(bad, out, overwrite=True)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary files left


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_crs(fmt: str, alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    frame = alerts.set_crs(None, allow_override=True)
    out = ("postgresql://127.0.0.1:1/none#alerts" if fmt == "postgis"
           else tmp_path / f"a{SUFFIX[fmt]}")
    with pytest.raises(CRSError, match="no coordinate reference system") as info:
        export_layer(frame, out)
    assert isinstance(info.value, GeosupError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("fmt", FORMATS)
def test_id_column_must_be_unique(fmt: str, alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    out = ("postgresql://127.0.0.1:1/none#alerts" if fmt == "postgis"
           else tmp_path / f"a{SUFFIX[fmt]}")
    dup = pd.concat([alerts, alerts.iloc[[1]]])
    with pytest.raises(ExportError, match="not unique"):
        export_layer(dup, out)
    with pytest.raises(ExportError, match="no id column 'parcel_id'"):
        export_layer(alerts, out, id_column="parcel_id")
    missing = alerts.copy()
    missing.loc[2, "alert_id"] = pd.NA
    with pytest.raises(ExportError, match="missing value"):
        export_layer(missing, out)


def test_unknown_format(alerts: gpd.GeoDataFrame, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'kml'") as info:
        export_layer(alerts, tmp_path / "a.kml", format="kml")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ValueError, match="cannot tell the export format"):
        export_layer(alerts, tmp_path / "alerts.txt")
    with pytest.raises(ExportError, match="zipped"):
        export_layer(alerts, tmp_path / "alerts.shp", format="shp")
    with pytest.raises(ExportError, match="needs a GeoDataFrame, not DataFrame"):
        export_layer(pd.DataFrame(alerts.drop(columns="geometry")), tmp_path / "a.gpkg")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("name", "fmt"), [
    ("a.gpkg", "gpkg"), ("a.FGB", "fgb"), ("a.parquet", "parquet"),
    ("a.geoparquet", "parquet"), ("a.geojson", "geojson"), ("a.json", "geojson"),
    ("a.zip", "shp"), ("a.shp.zip", "shp"), ("postgresql://h/db#s.t", "postgis"),
    ("postgres://h/db", "postgis"),
])
def test_infer_format(name: str, fmt: str) -> None:
    assert infer_format(name) == fmt
    assert infer_format("anything.bin", "GPKG") == "gpkg"


def test_postgis_needs_a_table(alerts: gpd.GeoDataFrame) -> None:
    # refused before any connection is attempted (port 1: nothing listens there)
    with pytest.raises(ExportError, match="name the PostGIS table"):
        export_layer(alerts, "postgresql://127.0.0.1:1/audit")
    with pytest.raises(ExportError, match="give the table once"):
        export_layer(alerts, "postgresql://127.0.0.1:1/audit#a.b", layer="c.d")


@pytest.mark.postgis
def test_postgis_schema_layer_and_overwrite(alerts: gpd.GeoDataFrame, postgis_url: str) -> None:
    target = export_layer(alerts, f"{postgis_url}#geosup_export.alerts")
    assert target == f"{postgis_url}#geosup_export.alerts"
    with pytest.raises(ExportError, match="already exists"):
        export_layer(alerts.iloc[:2], target)
    export_layer(alerts.iloc[:2], target, overwrite=True)
    assert sorted(read_back(target)["alert_id"]) == sorted(alerts["alert_id"].iloc[:2])
    other = export_layer(alerts, postgis_url, format="postgis", layer="alerts_copy")
    assert other == f"{postgis_url}#alerts_copy"
    assert_same_layer(alerts, read_back(postgis_url, format="postgis", layer="alerts_copy"),
                      fmt="postgis", id_column="alert_id")


def test_read_back_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match="does not exist"):
        read_back(tmp_path / "nothing.gpkg")


def test_docstring_examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = doctest.testmod(export, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 5 and result.failed == 0
