"""The store API, one suite for both backends (GeoPackage file and PostgreSQL + PostGIS).

Every test that takes ``store_url`` runs once per backend against a real store: a fresh
GeoPackage file, or a fresh database on the session's own PostGIS server. Geometry comes
from real reference parcels (NL referentiepercelen, EPSG:28992 MultiPolygons).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import pyproj
import pytest
import shapely
from geopandas.testing import assert_geoseries_equal
from psycopg import sql

from geosup.alerts import ALERT_COLUMNS, EVENT_COLUMNS, SEVERITIES, make_alerts
from geosup.errors import (
    AlertNotFoundError,
    DataSourceError,
    ExportError,
    GeosupError,
    StoreConnectionError,
    StoreError,
    TransitionError,
    ValidationError,
)
from geosup.store import (
    REJECT_COLUMNS,
    RUN_COLUMNS,
    describe_input,
    open_store,
    read_database_table,
    write_database_table,
)
from geosup.testing import assert_same_alerts

NL_PARCELS = Path("parcels/reference/nl/referentiepercelen.gpkg")
NL_PARCELS_SHA256 = "75dd5b2610c5469af256563743a2537feae41fa7772fbdedb202760445dfa4eb"
EVIL = 'x"; drop table alerts; --'
# A CRS without an EPSG code: RD New's projection written out by hand.
CUSTOM_CRS = pyproj.CRS("+proj=tmerc +lat_0=52 +lon_0=5.3 +k=0.9999 +x_0=155000 "
                        "+y_0=463000 +ellps=bessel +units=m +no_defs")


# -- helpers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def nl_parcels(shared_data: Path) -> gpd.GeoDataFrame:
    """The 100 NL reference parcels with a stable integer id."""
    parcels = gpd.read_file(shared_data / NL_PARCELS)
    parcels.insert(0, "parcel_id", np.arange(1, len(parcels) + 1, dtype="int64"))
    return parcels


def _hits(parcels: gpd.GeoDataFrame, n: int = 8, *, shift: float = 0.0) -> gpd.GeoDataFrame:
    """Alerts on the first ``n`` parcels, with awkward text and a rich evidence dict."""
    sub = parcels.head(n).reset_index(drop=True)
    i = np.arange(n)
    rules = np.array(["farmland.over_declared", "farmland.double_claim", "fuel.off_hours"])
    observed = pd.Series(pd.Timestamp("2025-06-01 08:30:00.123", tz="Asia/Shanghai")
                         + pd.to_timedelta(i, unit="D"))
    observed.iloc[-1] = pd.NaT
    amount = (i * 100.5 + shift).astype(float)
    if n > 1:
        amount[1] = np.nan
    return gpd.GeoDataFrame({
        "rule": rules[i % 3],
        "subject_type": "parcel",
        "subject_id": [f"NL-{p}" for p in sub["parcel_id"]],
        "unit": np.where(i % 2 == 0, "Village A", "Village B"),
        "period": np.where(i % 4 < 2, "2025", "2026"),
        "severity": [SEVERITIES[k % 4] for k in i],
        "score": np.clip(i / n + shift, 0, 1),
        "amount_at_risk": amount,
        "observed_at": observed,
        "title": [f"Declared area {10 + k}% above the eligible area" for k in i],
        "detail": [f"line 1\nline 2\tcolumn \\ backslash \"quoted\" 面积 {k} mu" for k in i],
        "evidence": [{"declared_area_mu": 12.5 + k + shift, "eligible_area_mu": 10.0,
                      "threshold": 0.05, "parcels": [f"P{k}", "P99"], "note": "面积",
                      "missing": None} for k in i],
    }, geometry=sub.geometry.to_numpy(), crs=parcels.crs)


def _alerts(parcels: gpd.GeoDataFrame, n: int = 8, *, shift: float = 0.0) -> gpd.GeoDataFrame:
    return make_alerts(_hits(parcels, n, shift=shift))


def _by_id(frame: pd.DataFrame, column: str = "alert_id") -> pd.DataFrame:
    return frame.sort_values(column).reset_index(drop=True)


def _assert_same_alerts(back: gpd.GeoDataFrame, written: gpd.GeoDataFrame) -> None:
    """Measured values, evidence and geometry equal (stored alerts sorted by id)."""
    assert back.crs == "EPSG:4326"
    assert_same_alerts(back, written)


def _snapshot(store) -> dict[str, pd.DataFrame]:
    snap = {"alerts": store.alerts(), "events": store.events(), "runs": store.runs(),
            "rejects": store.rejects(), "layers": store.layers()}
    for name in snap["layers"]["name"]:
        snap[f"layer:{name}"] = store.read_layer(name)
    return snap


def _assert_same_snapshot(after: dict, before: dict) -> None:
    assert sorted(after) == sorted(before)
    for key, frame in before.items():
        if isinstance(frame, gpd.GeoDataFrame):
            gpd.testing.assert_geodataframe_equal(after[key], frame)
        else:
            pd.testing.assert_frame_equal(after[key], frame)


def _raw_execute(store_url: str, statement: str) -> None:
    """Run one statement on the store's database directly (not through geosup)."""
    if store_url.startswith("postgresql://"):
        with psycopg.connect(store_url) as conn:
            conn.execute(statement)
    else:
        with sqlite3.connect(store_url) as conn:
            conn.execute(statement)


def _is_postgis(store_url: str) -> bool:
    return store_url.startswith("postgresql://")


def _with_password(url: str, password: str = "s3cret") -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@", 1)


# -- lifecycle -------------------------------------------------------------------------
def test_init_is_idempotent(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(store_url) as store:
        store.init()
        store.init()
        with store.run("farmland reconcile") as run:
            run.write_alerts(_alerts(nl_parcels, 3))
    with open_store(store_url) as again:
        again.init()
        assert len(again.alerts()) == 3
        assert len(again.events()) == 3
        assert len(again.runs()) == 1
    with open_store(store_url, create=False) as existing:
        assert len(existing.alerts()) == 3


def test_empty_store_reads_empty_tables(store_url: str) -> None:
    with open_store(store_url) as store:
        alerts = store.alerts()
        assert list(alerts.columns) == list(ALERT_COLUMNS)
        assert len(alerts) == 0
        assert alerts.crs == "EPSG:4326"
        assert list(store.events().columns) == list(EVENT_COLUMNS)
        assert list(store.runs().columns) == list(RUN_COLUMNS)
        assert list(store.rejects().columns) == list(REJECT_COLUMNS)
        assert len(store.layers()) == 0


# -- alerts ----------------------------------------------------------------------------
def test_write_and_read_back_alerts(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    written = _alerts(nl_parcels)
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            counts = run.write_alerts(written)
        assert (counts.inserted, counts.updated) == (len(written), 0)
        back = store.alerts()
        _assert_same_alerts(back, written)
        assert (back["status"] == "open").all()
        assert back["status_by"].isna().all()
        assert (back["run_id"] == run.run_id).all()
        for c in ("observed_at", "status_at", "first_seen", "last_seen"):
            assert str(back[c].dt.tz) == "UTC"
        assert (back["first_seen"] == run.started_at).all()
        assert (back["last_seen"] == run.started_at).all()
        # highest severity first, then highest score
        ranks = back["severity"].map({s: i for i, s in enumerate(SEVERITIES)})
        assert ranks.is_monotonic_decreasing
        one = store.alert(written.loc[3, "alert_id"])
        assert one["subject_id"] == written.loc[3, "subject_id"]
        assert json.loads(one["evidence"]) == json.loads(written.loc[3, "evidence"])
        assert shapely.equals_exact(one["geometry"], written.geometry.iloc[3], tolerance=1e-9)


def test_alerts_without_geometry(store_url: str) -> None:
    plain = make_alerts(pd.DataFrame({"rule": ["fuel.over_tank_capacity"],
                                      "subject_type": ["card"], "subject_id": ["C-17"],
                                      "period": ["2026-03"], "severity": ["high"]}))
    with open_store(store_url) as store:
        with store.run("fuel audit") as run:
            assert run.write_alerts(plain).inserted == 1
            assert run.write_alerts(plain.iloc[0:0]).inserted == 0
            assert run.write_alerts(plain).updated == 1  # twice in one run
        assert run.counts["alerts"] == {"inserted": 1, "updated": 1}
        back = store.alerts()
        assert len(back) == 1
        assert back.geometry.isna().all()
        assert json.loads(back.loc[0, "evidence"]) == {}


def test_rerun_updates_instead_of_duplicating(store_url: str,
                                              nl_parcels: gpd.GeoDataFrame) -> None:
    first = _alerts(nl_parcels, 8)
    second = _alerts(nl_parcels, 10, shift=0.01)  # 8 known alerts, 2 new ones
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run1:
            run1.write_alerts(first)
        before = _by_id(store.alerts()).set_index("alert_id")
        with store.run("farmland reconcile") as run2:
            counts = run2.write_alerts(second)
        assert (counts.inserted, counts.updated) == (2, 8)
        after = store.alerts()
        assert len(after) == 10
        assert after["alert_id"].is_unique
        _assert_same_alerts(after, second)
        after = _by_id(after).set_index("alert_id")
        known = before.index
        assert (after.loc[known, "first_seen"] == before["first_seen"]).all()
        assert (after.loc[known, "last_seen"] == run2.started_at).all()
        assert (after.loc[known, "last_seen"] > before["last_seen"]).all()
        assert (after.loc[known, "run_id"] == run2.run_id).all()
        new = after.index.difference(known)
        assert (after.loc[new, "first_seen"] == run2.started_at).all()
        # one "raised" event per alert, never one per run
        events = store.events()
        assert len(events) == 10
        assert events["from_status"].isna().all()
        assert (events["to_status"] == "open").all()
        assert (events["by"] == "geosup").all()
        assert events["alert_id"].is_unique


def test_review_survives_rerun(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    alerts = _alerts(nl_parcels, 4)
    target = alerts.loc[2, "alert_id"]
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            run.write_alerts(alerts)
        at = pd.Timestamp("2026-03-02 09:15:00", tz="Asia/Shanghai")
        event = store.review(target, status="investigating", by="Li Wei",
                             note="site visit planned; 见附件", at=at)
        assert event["from_status"] == "open"
        with store.run("farmland reconcile") as run2:
            assert run2.write_alerts(_alerts(nl_parcels, 4, shift=0.02)).updated == 4
        one = store.alert(target)
        assert one["status"] == "investigating"
        assert one["status_by"] == "Li Wei"
        assert one["status_note"] == "site visit planned; 见附件"
        assert one["status_at"] == at.tz_convert("UTC")
        assert one["amount_at_risk"] == pytest.approx(2 * 100.5 + 0.02)
        history = store.events(target)
        assert history["to_status"].tolist() == ["open", "investigating"]
        assert history["by"].tolist() == ["geosup", "Li Wei"]
        others = store.alerts(status="open")
        assert target not in set(others["alert_id"])
        assert len(others) == 3


def test_disallowed_transition_leaves_store_unchanged(store_url: str,
                                                      nl_parcels: gpd.GeoDataFrame) -> None:
    alerts = _alerts(nl_parcels, 3)
    target = alerts.loc[0, "alert_id"]
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            run.write_alerts(alerts)
        before = _snapshot(store)
        with pytest.raises(TransitionError, match="cannot move"):
            store.review(target, status="rectified", by="Li Wei")
        with pytest.raises(TransitionError):
            store.review(target, status="open", by="Li Wei")
        with pytest.raises(TransitionError, match="unknown status"):
            store.review(target, status="closed", by="Li Wei")
        with pytest.raises(ValidationError):
            store.review(target, status="investigating", by=" ")
        _assert_same_snapshot(_snapshot(store), before)
        # the store is still usable after the refusals
        store.review(target, status="dismissed", by="Li Wei")
        assert store.alert(target)["status"] == "dismissed"


def test_review_of_unknown_alert(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            run.write_alerts(_alerts(nl_parcels, 2))
        with pytest.raises(AlertNotFoundError, match="no alert with id 'nope'"):
            store.review("nope", status="investigating", by="Li Wei")
        with pytest.raises(AlertNotFoundError):
            store.alert("nope")
        with pytest.raises(KeyError):  # also a builtin
            store.alert(EVIL)
        assert len(store.events()) == 2


def test_history_is_append_only(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    alerts = _alerts(nl_parcels, 2)
    target = alerts.loc[1, "alert_id"]
    steps = [("investigating", "a"), ("confirmed", "b"), ("investigating", "c"),
             ("dismissed", "d"), ("open", "e"), ("investigating", "f")]
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            run.write_alerts(alerts)
        for status, by in steps:
            store.review(target, status=status, by=by, note=f"step {by}")
        history = store.events(target)
        assert list(history.columns) == list(EVENT_COLUMNS)
        statuses = [s for s, _ in steps]
        assert history["to_status"].tolist() == ["open", *statuses]
        assert history["from_status"].tolist()[1:] == ["open", *statuses[:-1]]
        assert history["by"].tolist() == ["geosup", *[b for _, b in steps]]
        assert history["event_id"].is_monotonic_increasing
        assert history["at"].is_monotonic_increasing
        assert str(history["at"].dt.tz) == "UTC"
        assert store.alert(target)["status"] == "investigating"
        before = store.events()
    table = "geosup.alert_events" if _is_postgis(store_url) else "alert_events"
    errors = (psycopg.Error, sqlite3.DatabaseError)
    with pytest.raises(errors, match="append-only"):
        _raw_execute(store_url, f"UPDATE {table} SET note = 'rewritten'")
    with pytest.raises(errors, match="append-only"):
        _raw_execute(store_url, f"DELETE FROM {table}")
    if _is_postgis(store_url):
        with pytest.raises(psycopg.Error, match="append-only"):
            _raw_execute(store_url, f"TRUNCATE {table} CASCADE")
    with open_store(store_url) as store:
        pd.testing.assert_frame_equal(store.events(), before)


def test_failed_run_leaves_store_exactly_as_before(store_url: str,
                                                   nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(store_url) as store:
        with store.run("farmland reconcile", params={"tolerance": 0.05}) as run:
            run.write_alerts(_alerts(nl_parcels, 5))
            run.add_rejects(pd.DataFrame({"source": ["declarations.csv"], "row": [7],
                                          "key": ["D7"], "reason": ["no parcel"],
                                          "raw": ['{"parcel": null}']}))
            run.write_layer("parcels", nl_parcels.head(20), id_column="parcel_id")
        store.review(_alerts(nl_parcels, 1).loc[0, "alert_id"], status="investigating",
                     by="Li Wei", note="checking")
        before = _snapshot(store)

        with pytest.raises(RuntimeError, match="boom"), \
                store.run("farmland reconcile") as failing:
            counts = failing.write_alerts(_alerts(nl_parcels, 9, shift=0.03))
            assert (counts.inserted, counts.updated) == (4, 5)
            assert len(store.alerts()) == 9  # the run sees its own writes
            failing.add_rejects(pd.DataFrame({"source": ["x"], "row": [1], "key": ["k"],
                                              "reason": ["bad"], "raw": ["{}"]}))
            failing.write_layer("parcels", nl_parcels.tail(3), id_column="parcel_id")
            failing.write_layer("extra", nl_parcels.head(2).to_crs(CUSTOM_CRS))
            failing.record_input("declarations.csv", rows_in=3, rows_used=2, rows_rejected=1)
            raise RuntimeError("boom")

        _assert_same_snapshot(_snapshot(store), before)
        # a later run works normally on the same connection
        with store.run("farmland reconcile") as run:
            assert run.write_alerts(_alerts(nl_parcels, 6)).inserted == 1
    with open_store(store_url) as store:
        assert len(store.alerts()) == 6
        assert len(store.runs()) == 2


def test_runs_are_not_nested(store_url: str) -> None:
    with open_store(store_url) as store:
        with pytest.raises(StoreError), store.run("outer"), store.run("inner"):
            pass
        assert len(store.runs()) == 0
        with store.run("after"):
            pass
        assert store.runs()["command"].tolist() == ["after"]


# -- rejects, runs ---------------------------------------------------------------------
def test_rejects_ledger_round_trip(store_url: str) -> None:
    first = pd.DataFrame({
        "source": ["declarations.csv", "declarations.csv", "parcels.gpkg"],
        "row": [3, 17, None],
        "key": ["D3", "D17", "P-9"],
        "reason": ["declared_area is negative", "unknown unit 'acre'", "invalid geometry"],
        "raw": ['{"declared_area": -2}', '{"unit": "acre", "note": "tab\\there"}',
                "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))\n"],
    })
    second = pd.DataFrame({"source": ["fixes.csv"], "row": [0], "key": [""],
                           "reason": ["time not parseable: '2026-13-45'"], "raw": ["面积\\n"]})
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run1:
            assert run1.add_rejects(first) == 3
            assert run1.add_rejects(first.iloc[0:0]) == 0
        with store.run("fuel audit") as run2:
            run2.add_rejects(second)
        ledger = store.rejects()
        assert list(ledger.columns) == list(REJECT_COLUMNS)
        assert len(ledger) == 4
        mine = store.rejects(run_id=run1.run_id)
        assert (mine["run_id"] == run1.run_id).all()
        assert mine["row"].tolist()[:2] == [3, 17]
        assert pd.isna(mine["row"].iloc[2])
        for c in ("source", "key", "reason", "raw"):
            assert mine[c].tolist() == first[c].tolist()
        theirs = store.rejects(run_id=run2.run_id)
        assert theirs["raw"].tolist() == ["面积\\n"]
        assert theirs["key"].tolist() == [""]
        assert len(store.rejects(run_id="no-such-run")) == 0
        with pytest.raises(ValidationError, match="reason"), store.run("broken") as run3:
            run3.add_rejects(first.drop(columns=["reason"]))
        assert len(store.rejects()) == 4


def test_runs_record_command_inputs_and_counts(store_url: str, shared_data: Path,
                                              nl_parcels: gpd.GeoDataFrame) -> None:
    source = describe_input(shared_data / NL_PARCELS, name="parcels")
    assert source["sha256"] == NL_PARCELS_SHA256
    with open_store(store_url) as store:
        with store.run("farmland reconcile", inputs=[source],
                       params={"tolerance": 0.05, "unit": "mu"}) as run:
            run.write_alerts(_alerts(nl_parcels, 4))
            run.record_input("parcels", rows_in=100, rows_used=98, rows_rejected=2)
            with pytest.raises(ValidationError, match="every row must be accounted for"):
                run.record_input("declarations", rows_in=10, rows_used=8, rows_rejected=1)
        with pytest.raises(ValidationError), store.run("fuel audit") as bad:
            bad.record_input("fixes", rows_in=5, rows_used=5, rows_rejected=1)
        runs = store.runs()
        assert list(runs.columns) == list(RUN_COLUMNS)
        assert len(runs) == 1  # the failed run left no trace
        row = runs.iloc[0]
        assert row["run_id"] == run.run_id
        assert row["command"] == "farmland reconcile"
        assert json.loads(row["params"]) == {"tolerance": 0.05, "unit": "mu"}
        inputs = json.loads(row["inputs"])
        assert inputs == [json.loads(json.dumps(source, default=str))]
        assert inputs[0]["sha256"] == NL_PARCELS_SHA256
        assert inputs[0]["size"] == (shared_data / NL_PARCELS).stat().st_size
        counts = json.loads(row["counts"])
        assert counts["alerts"] == {"inserted": 4, "updated": 0}
        assert counts["inputs"] == {"parcels": {"rows_in": 100, "rows_used": 98,
                                                "rows_rejected": 2}}
        assert "declarations" not in counts["inputs"]
        assert row["started_at"] == run.started_at
        assert row["ended_at"] >= row["started_at"]
        assert str(runs["started_at"].dt.tz) == "UTC"


# -- layers ----------------------------------------------------------------------------
def test_folders_and_multi_file_inputs_are_hashed(tmp_path: Path, shared_data: Path) -> None:
    """A partitioned dataset and a one-file-per-band image get a size and a manifest hash."""
    import hashlib
    import shutil

    root = tmp_path / "fixes"
    (root / "vehicle=A" / "month=2025-01").mkdir(parents=True)
    (root / "vehicle=B").mkdir()
    shutil.copy(shared_data / NL_PARCELS, root / "vehicle=A" / "month=2025-01" / "p.gpkg")
    (root / "vehicle=B" / "part.csv").write_text("vehicle_id,time\nB,2025-01-01\n")
    files = sorted(f for f in root.rglob("*") if f.is_file())
    manifest = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  "
                       f"{f.relative_to(root).as_posix()}\n" for f in files)
    info = describe_input(root, name="fixes")
    assert info["files"] == 2
    assert info["size"] == sum(f.stat().st_size for f in files)
    assert info["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    # one changed partition changes the hash
    (root / "vehicle=B" / "part.csv").write_text("vehicle_id,time\nB,2025-01-02\n")
    assert describe_input(root)["sha256"] != info["sha256"]

    bands = [root / "vehicle=A" / "month=2025-01" / "p.gpkg", root / "vehicle=B" / "part.csv"]
    image = describe_input(bands, name="after")
    assert image["name"] == "after" and image["files"] == 2
    assert image["path"] == [str(b.resolve()) for b in bands]
    assert image["size"] == sum(b.stat().st_size for b in bands)
    assert len(image["sha256"]) == 64
    assert describe_input(bands[:1])["sha256"] == NL_PARCELS_SHA256
    assert describe_input(root, hash_limit=10)["sha256"] is None


@pytest.mark.parametrize("url", [
    "postgresql://auditor:s3cret@db.example:5433/audit#public.parcels",
    "postgresql://auditor@db.example/audit?sslmode=require&password=s3cret#public.parcels",
    "postgres://auditor:s3cret@[bad/audit#public.parcels",
    "POSTGRESQL://auditor:s3cret@db.example/audit?PASSWORD=s3cret",
])
def test_database_inputs_are_recorded_without_password(url: str) -> None:
    info = describe_input(url)
    assert "s3cret" not in json.dumps(info)
    assert info["path"].lower().startswith(("postgresql://", "postgres://"))
    assert "audit" in info["path"]
    assert info["size"] is None and info["sha256"] is None


def test_layer_round_trip_real_parcels(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(store_url) as store:
        with store.run("farmland reconcile") as run:
            assert run.write_layer("parcels", nl_parcels, id_column="parcel_id") == 100
        registry = store.layers()
        assert registry["name"].tolist() == ["parcels"]
        entry = registry.iloc[0]
        assert entry["rows"] == 100
        assert pyproj.CRS.from_user_input(entry["crs"]) == nl_parcels.crs
        assert entry["geometry_type"] == "MULTIPOLYGON"
        assert entry["id_column"] == "parcel_id"
        assert entry["run_id"] == run.run_id
        assert str(registry["written_at"].dt.tz) == "UTC"
        back = store.read_layer("parcels")
    assert isinstance(back, gpd.GeoDataFrame)
    assert back.crs == nl_parcels.crs
    assert back.crs.to_epsg() == 28992
    assert set(back.columns) == set(nl_parcels.columns)
    back = _by_id(back, "parcel_id")
    assert back["parcel_id"].tolist() == nl_parcels["parcel_id"].tolist()
    for c in ("versiebron", "type"):
        assert back[c].tolist() == nl_parcels[c].tolist()
    assert (back.geom_type == "MultiPolygon").all()
    assert_geoseries_equal(back.geometry, nl_parcels.geometry.reset_index(drop=True),
                           check_less_precise=False)


def test_layer_types_custom_crs_and_replacement(store_url: str,
                                               nl_parcels: gpd.GeoDataFrame) -> None:
    table = pd.DataFrame({
        "person_id": ["p1", "p2", "p3"],
        "age": np.array([71, 45, 30], dtype="int64"),
        "children": pd.array([2, None, 0], dtype="Int64"),
        "area_mu": [1.5, np.nan, 1e-12],
        "is_official": [True, False, True],
        "died_on": pd.to_datetime(["2024-02-29 10:00:00", None, "2026-01-01 00:00:01.5"],
                                  utc=True, format="ISO8601"),
        "note": ["tab\there", None, "面积 \\ \"q\"\nnext"],
    })
    custom = nl_parcels.head(5).to_crs(CUSTOM_CRS)
    assert custom.crs.to_epsg() is None
    with open_store(store_url) as store:
        with store.run("io") as run:
            run.write_layer("persons", table, id_column="person_id")
            run.write_layer("custom", custom)
            run.write_layer("parcels", nl_parcels)
        with store.run("io") as run:
            run.write_layer("parcels", nl_parcels.head(7))  # replaced, not appended
            with pytest.raises(ValidationError, match="no id column"):
                run.write_layer("broken", table, id_column="nope")
        registry = store.layers().set_index("name")
        assert registry.loc["parcels", "rows"] == 7
        assert registry.loc["persons", "rows"] == 3
        assert pd.isna(registry.loc["persons", "crs"])
        assert "broken" not in registry.index
        assert len(store.read_layer("parcels")) == 7

        persons = _by_id(store.read_layer("persons"), "person_id")
        assert not isinstance(persons, gpd.GeoDataFrame)
        assert persons["person_id"].tolist() == ["p1", "p2", "p3"]
        assert persons["age"].tolist() == [71, 45, 30]
        assert persons["children"].iloc[0] == 2 and pd.isna(persons["children"].iloc[1])
        np.testing.assert_array_equal(persons["area_mu"].to_numpy(dtype=float),
                                      table["area_mu"].to_numpy())
        assert persons["is_official"].astype(bool).tolist() == [True, False, True]
        pd.testing.assert_series_equal(persons["died_on"], table["died_on"],
                                       check_dtype=False)
        assert persons["note"].iloc[0] == "tab\there"
        assert pd.isna(persons["note"].iloc[1])
        assert persons["note"].iloc[2] == "面积 \\ \"q\"\nnext"

        back = _by_id(store.read_layer("custom"), "parcel_id")
    transformer_a = pyproj.Transformer.from_crs(custom.crs, 4326, always_xy=True)
    transformer_b = pyproj.Transformer.from_crs(back.crs, 4326, always_xy=True)
    x, y = 155_000.0, 463_000.0
    assert np.allclose(transformer_a.transform(x, y), transformer_b.transform(x, y),
                       atol=1e-9)
    assert shapely.equals_exact(back.geometry.to_numpy(), custom.geometry.to_numpy(),
                                tolerance=1e-6).all()


def test_layer_names_are_checked(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(store_url) as store:
        with store.run("io") as run:
            run.write_alerts(_alerts(nl_parcels, 2))
        for name in (EVIL, "alerts", "Parcels", "1parcels", "", "a" * 80):
            with pytest.raises(ValidationError), store.run("io") as run:
                run.write_layer(name, nl_parcels.head(2))
            with pytest.raises(ValidationError):
                store.read_layer(name)
        with pytest.raises(ValidationError, match="no layer"):
            store.read_layer("never_written")
        with pytest.raises(ValidationError, match="coordinate reference system"), \
                store.run("io") as run:
            run.write_layer("nocrs", nl_parcels.head(2).set_crs(None, allow_override=True))
        assert len(store.alerts()) == 2
        assert len(store.layers()) == 0
        assert len(store.runs()) == 1


# -- filters ---------------------------------------------------------------------------
def test_alert_filters(store_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    written = _alerts(nl_parcels, 12)
    with open_store(store_url) as store:
        with store.run("mixed") as run:
            run.write_alerts(written)
        target = written.loc[5, "alert_id"]
        store.review(target, status="investigating", by="Li Wei")

        def ids(**filters: object) -> set[str]:
            return set(store.alerts(**filters)["alert_id"])

        def expect(mask: pd.Series) -> set[str]:
            return set(written.loc[mask, "alert_id"])

        assert ids(rule="farmland.over_declared") == \
            expect(written["rule"] == "farmland.over_declared")
        assert ids(domain="fuel") == expect(written["domain"] == "fuel")
        assert ids(severity=["high", "critical"]) == \
            expect(written["severity"].isin(["high", "critical"]))
        assert ids(unit="Village B") == expect(written["unit"] == "Village B")
        assert ids(period="2026") == expect(written["period"] == "2026")
        assert ids(subject_id=["NL-1", "NL-2"]) == \
            expect(written["subject_id"].isin(["NL-1", "NL-2"]))
        assert ids(status="investigating") == {target}
        assert ids(status="open") == set(written["alert_id"]) - {target}
        both = (written["domain"] == "farmland") & (written["period"] == "2025")
        assert ids(domain="farmland", period="2025") == expect(both)
        assert ids(rule=[]) == set(written["alert_id"])  # an empty list does not filter
        assert ids(rule="farmland.nothing_like_this") == set()
        assert ids(unit=EVIL) == set()
        with pytest.raises(ValidationError, match="unknown status"):
            store.alerts(status="closed")
        with pytest.raises(ValidationError, match="unknown severity"):
            store.alerts(severity="urgent")
        with pytest.raises(ValidationError, match="unknown alert filter"):
            store.alerts(colour="red")


# -- scale -----------------------------------------------------------------------------
def test_upsert_fifty_thousand_alerts(store_url: str) -> None:
    n = 50_000
    i = np.arange(n)
    hits = gpd.GeoDataFrame({
        "rule": np.where(i % 2 == 0, "fuel.off_hours", "fuel.away_from_station"),
        "subject_type": "card",
        "subject_id": [f"C{k:06d}" for k in i],
        "period": "2026-03",
        "score": (i % 1000) / 1000,
        "amount_at_risk": i * 1.25,
        "evidence": [{"litres": float(k % 90), "station": f"S{k % 300}"} for k in i],
    }, geometry=shapely.points(116.3 + (i % 500) * 1e-3, 39.9 + (i // 500) * 1e-3),
        crs=4326)
    alerts = make_alerts(hits)
    with open_store(store_url) as store:
        with store.run("fuel audit") as run:
            counts = run.write_alerts(alerts)
        assert (counts.inserted, counts.updated) == (n, 0)
        alerts["score"] = alerts["score"] / 2
        with store.run("fuel audit") as run:
            counts = run.write_alerts(alerts)
        assert (counts.inserted, counts.updated) == (0, n)
        back = store.alerts()
        assert len(back) == n
        assert back["alert_id"].is_unique
        assert back["score"].max() == pytest.approx(0.999 / 2)
        assert len(store.events()) == n


# -- PostGIS only ----------------------------------------------------------------------
def _index_hits(path: Path, table: str, bbox: tuple[float, float, float, float]) -> set[int]:
    """fids whose R-tree entry meets ``bbox``, read with plain SQLite (no geometry functions)."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            f'SELECT id FROM "rtree_{table}_geometry" WHERE maxx >= ? AND minx <= ? '
            "AND maxy >= ? AND miny <= ?", (bbox[0], bbox[2], bbox[1], bbox[3])).fetchall()
    return {r[0] for r in rows}


def _fids_meeting(path: Path, table: str, bbox: tuple[float, float, float, float]) -> set[int]:
    """fids whose geometry's own bounds meet ``bbox`` (the ground truth for the index)."""
    frame = pyogrio.read_dataframe(path, layer=table, fid_as_index=True)
    b = frame.geometry.bounds
    hit = (b.maxx >= bbox[0]) & (b.minx <= bbox[2]) & (b.maxy >= bbox[1]) & (b.miny <= bbox[3])
    return set(frame.index[hit.to_numpy()].tolist())


def test_gpkg_times_are_standard_milliseconds(tmp_path: Path,
                                              nl_parcels: gpd.GeoDataFrame) -> None:
    """DATETIME as the GeoPackage standard writes it, so GDAL reads it without a warning."""
    path = tmp_path / "geosup.gpkg"
    alerts = _alerts(nl_parcels, 3)
    alerts["observed_at"] = pd.Timestamp("2025-06-01 00:30:00.123456", tz="UTC")
    layer = pd.DataFrame({"fix_id": [1, 2], "time": pd.to_datetime(
        ["2025-06-01 00:30:00.9996", "2025-06-01 00:30:01"], utc=True, format="ISO8601")})
    with open_store(str(path)) as store, store.run("fuel audit") as run:
        run.write_alerts(alerts)
        run.write_layer("fixes", layer, id_column="fix_id")
    with sqlite3.connect(path) as conn:
        texts = [r[0] for r in conn.execute("SELECT observed_at FROM alerts")]
        times = [r[0] for r in conn.execute('SELECT "time" FROM fixes ORDER BY fix_id')]
    assert set(texts) == {"2025-06-01T00:30:00.123Z"}
    assert times == ["2025-06-01T00:30:01.000Z", "2025-06-01T00:30:01.000Z"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # GDAL's "Non-conformant content" is a RuntimeWarning
        back = pyogrio.read_dataframe(path, layer="alerts")
    assert (pd.to_datetime(back["observed_at"], utc=True)
            == pd.Timestamp("2025-06-01 00:30:00.123", tz="UTC")).all()


def test_gpkg_spatial_index(tmp_path: Path, nl_parcels: gpd.GeoDataFrame) -> None:
    """Every feature table carries a GeoPackage R-tree that GDAL uses and keeps in step."""
    path = tmp_path / "geosup.gpkg"
    parcels = nl_parcels.copy()
    parcels.loc[3, "geometry"] = None
    parcels.loc[4, "geometry"] = shapely.MultiPolygon()
    first = _alerts(nl_parcels, 8)
    moved = _alerts(nl_parcels, 10, shift=0.01)
    moved["geometry"] = moved.geometry.translate(0.5, 0.25)  # a re-run moves 8 known alerts
    with open_store(str(path)) as store:
        with store.run("farmland reconcile") as run:
            run.write_layer("parcels", parcels, id_column="parcel_id")
            run.write_alerts(first)
        with store.run("farmland reconcile") as run:
            run.write_alerts(moved)
    info = pyogrio.read_info(path, layer="parcels")
    assert info["capabilities"]["fast_spatial_filter"]
    assert pyogrio.read_info(path, layer="alerts")["capabilities"]["fast_spatial_filter"]
    with sqlite3.connect(path) as conn:
        ext = conn.execute("SELECT table_name, column_name, extension_name FROM gpkg_extensions "
                           "ORDER BY table_name").fetchall()
        assert ext == [("alerts", "geometry", "gpkg_rtree_index"),
                       ("parcels", "geometry", "gpkg_rtree_index")]
        assert conn.execute('SELECT count(*) FROM "rtree_parcels_geometry"').fetchone()[0] == 98
        assert conn.execute('SELECT count(*) FROM "rtree_alerts_geometry"').fetchone()[0] == 10

    x0, y0, x1, y1 = parcels.total_bounds
    west = (x0, y0, (x0 + x1) / 2, y1)
    assert _index_hits(path, "parcels", west) == _fids_meeting(path, "parcels", west)
    assert 0 < len(_index_hits(path, "parcels", west)) < 98
    ax0, ay0, ax1, ay1 = moved.total_bounds
    for box in ((ax0, ay0, (ax0 + ax1) / 2, ay1), (ax0, ay0, ax1, (ay0 + ay1) / 2)):
        assert _index_hits(path, "alerts", box) == _fids_meeting(path, "alerts", box)
    # GDAL's bbox filter goes through the index and finds what a full scan finds
    via_gdal = pyogrio.read_dataframe(path, layer="parcels", bbox=west)
    full = parcels.dropna(subset=["geometry"])
    full = full[~full.geometry.is_empty]
    assert set(via_gdal["parcel_id"]) == set(full.cx[west[0]:west[2], west[1]:west[3]]["parcel_id"])

    # GDAL appends through the same triggers; replacing the layer rebuilds the index
    two = nl_parcels.head(2)
    dx = x1 - x0 + 10_000  # east of every parcel
    pyogrio.write_dataframe(two.set_geometry(two.geometry.translate(dx, 0)), path,
                            layer="parcels", append=True)
    east = (x1 + 5_000, y0, x1 + dx, y1)
    assert len(_index_hits(path, "parcels", east)) == 2
    with open_store(str(path)) as store, store.run("io") as run:
        run.write_layer("parcels", nl_parcels.head(7))
    assert _index_hits(path, "parcels", (x0, y0, x1 + dx, y1)) == set(range(1, 8))


@pytest.mark.postgis
def test_postgis_unreachable_server_hides_password(caplog: pytest.LogCaptureFixture) -> None:
    from geosup.store.postgis import PostGISStore

    caplog.set_level(logging.DEBUG)
    for url in ("postgresql://postgres:s3cret@127.0.0.1:1/none",
                "postgresql://postgres@127.0.0.1:1/none?password=s3cret&connect_timeout=5"):
        with pytest.raises(StoreConnectionError) as info:
            open_store(url)
        message = str(info.value)
        assert "s3cret" not in message
        assert "\n" not in message
        assert "127.0.0.1" in message and "port 1" in message and "none" in message
        assert isinstance(info.value, ConnectionError)
        assert info.value.__cause__ is None
        with pytest.raises(StoreConnectionError):
            PostGISStore(url, create=False)
    assert "s3cret" not in caplog.text


@pytest.mark.postgis
def test_postgis_wrong_database_and_password_free_url(postgis_server: str,
                                                      postgis_url: str) -> None:
    port = postgis_server.rsplit(":", 1)[1]
    with pytest.raises(StoreConnectionError) as info:
        open_store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/no_such_db")
    assert "s3cret" not in str(info.value)
    assert "no_such_db" in str(info.value)
    with open_store(_with_password(postgis_url)) as store:
        assert store.url == postgis_url
        assert "s3cret" not in repr(store)
    with pytest.raises(StoreError, match="db init"):
        open_store(f"{postgis_url}#not_initialised", create=False)


@pytest.mark.postgis
def test_postgis_schema_from_fragment(postgis_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    from geosup.store.postgis import PostGISStore

    with open_store(f"{postgis_url}#audit 2026") as store:
        assert store.schema == "audit 2026"
        assert store.url == f"{postgis_url}#audit 2026"
        with store.run("io") as run:
            run.write_alerts(_alerts(nl_parcels, 2))
    with PostGISStore(postgis_url, schema="audit 2026", create=False) as store:
        assert len(store.alerts()) == 2
    with psycopg.connect(postgis_url) as conn:
        found = conn.execute("SELECT to_regclass(%s), to_regclass(%s)",
                             ('"audit 2026".alerts', "geosup.alerts")).fetchone()
    assert found[0] is not None and found[1] is None


@pytest.mark.postgis
def test_postgis_schema_objects(postgis_url: str) -> None:
    with open_store(postgis_url):
        pass
    with psycopg.connect(postgis_url) as conn:
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'geosup' "
            "AND tablename = 'alerts'").fetchall())
        gist = [d for d in indexes.values() if "USING gist (geometry)" in d]
        assert gist, indexes
        for column in ("rule", "status", "unit", "period"):
            assert any(f"btree ({column})" in d for d in indexes.values()), column
        geometry = conn.execute(
            "SELECT type, srid FROM geometry_columns WHERE f_table_schema = 'geosup' "
            "AND f_table_name = 'alerts'").fetchone()
        assert geometry == ("GEOMETRY", 4326)
        types = dict(conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'geosup' AND table_name = 'alerts'").fetchall())
        assert types["evidence"] == "jsonb"
        assert types["score"] == "double precision"
        assert types["first_seen"] == "timestamp with time zone"
        tables = {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'geosup'")}
        assert {"alerts", "alert_events", "runs", "rejects", "layers"} <= tables


@pytest.mark.postgis
def test_postgis_layer_tables_and_custom_srid(postgis_url: str,
                                              nl_parcels: gpd.GeoDataFrame) -> None:
    with open_store(postgis_url) as store, store.run("io") as run:
        run.write_layer("parcels", nl_parcels, id_column="parcel_id")
        run.write_layer("custom", nl_parcels.head(3).to_crs(CUSTOM_CRS))
    with psycopg.connect(postgis_url) as conn:
        columns = dict(conn.execute(
            "SELECT f_table_name, srid FROM geometry_columns WHERE f_table_schema = 'geosup' "
            "AND f_table_name LIKE 'layer_%'").fetchall())
        assert columns["layer_parcels"] == 28992
        assert columns["layer_custom"] >= 900_000
        gist = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'geosup' "
                            "AND tablename = 'layer_parcels' AND indexdef LIKE '%gist%'"
                            ).fetchone()[0]
        assert gist == 1
        # PostGIS itself can use the custom SRID
        x, y = conn.execute(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_SetSRID("
            "ST_MakePoint(155000, 463000), %s), 4326) AS p) q",
            (columns["layer_custom"],)).fetchone()
    expected = pyproj.Transformer.from_crs(CUSTOM_CRS, 4326, always_xy=True).transform(
        155_000.0, 463_000.0)
    assert np.allclose((x, y), expected, atol=1e-7)


@pytest.mark.postgis
def test_postgis_read_write_table_round_trip(postgis_url: str,
                                             nl_parcels: gpd.GeoDataFrame) -> None:
    from geosup.store.postgis import read_table, write_table

    assert write_table(postgis_url, nl_parcels, table="parcels", schema="export") == 100
    back = read_table(postgis_url, table="parcels", schema="export")
    assert isinstance(back, gpd.GeoDataFrame)
    assert back.crs == nl_parcels.crs
    assert list(back.columns) == list(nl_parcels.columns)
    back = _by_id(back, "parcel_id")
    pd.testing.assert_frame_equal(pd.DataFrame(back.drop(columns="geometry")),
                                  pd.DataFrame(nl_parcels.drop(columns="geometry")))
    assert_geoseries_equal(back.geometry, nl_parcels.geometry)
    # through the package-level helpers, with the schema in the URL fragment
    with_password = _with_password(postgis_url)
    assert write_database_table(f"{with_password}#export", nl_parcels.head(3),
                                table="few") == 3
    few = read_database_table(f"{with_password}#export", table="few")
    assert len(few) == 3 and few.crs == nl_parcels.crs
    with psycopg.connect(postgis_url) as conn:
        gist = conn.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = 'export' "
                            "AND tablename = 'parcels' AND indexdef LIKE '%gist%'").fetchone()
    assert gist[0] == 1


@pytest.mark.postgis
def test_postgis_write_table_refuses_to_clobber(postgis_url: str,
                                                nl_parcels: gpd.GeoDataFrame) -> None:
    from geosup.store.postgis import read_table, write_table

    write_table(postgis_url, nl_parcels.head(4), table="parcels")
    with pytest.raises(ExportError, match="already exists") as info:
        write_table(_with_password(postgis_url), nl_parcels, table="parcels")
    assert "s3cret" not in str(info.value)
    assert isinstance(info.value, ValueError)
    assert len(read_table(postgis_url, table="parcels")) == 4
    assert write_table(postgis_url, nl_parcels, table="parcels", overwrite=True) == 100
    assert len(read_table(postgis_url, table="parcels", schema="public")) == 100
    with pytest.raises(ExportError, match="coordinate reference system"):
        write_table(postgis_url, nl_parcels.set_crs(None, allow_override=True), table="x")
    with pytest.raises(DataSourceError, match="no table"):
        read_table(postgis_url, table="missing")


@pytest.mark.postgis
def test_postgis_injection_looking_names_are_quoted(postgis_url: str,
                                                    nl_parcels: gpd.GeoDataFrame) -> None:
    from geosup.store.postgis import PostGISStore, read_table, write_table

    with open_store(postgis_url) as store, store.run("io") as run:
        run.write_alerts(_alerts(nl_parcels, 2))
    odd = nl_parcels.head(3).rename(columns={"type": 'type"); drop table geosup.runs; --'})
    assert write_table(postgis_url, odd, table=EVIL, schema=EVIL) == 3
    back = read_table(postgis_url, table=EVIL, schema=EVIL)
    assert list(back.columns) == list(odd.columns)
    with pytest.raises(GeosupError):
        PostGISStore(postgis_url, schema="s" * 70)
    with pytest.raises(GeosupError):
        write_table(postgis_url, nl_parcels.head(1), table="t" * 64)
    with psycopg.connect(postgis_url) as conn:
        found = conn.execute("SELECT to_regclass('geosup.alerts'), to_regclass('geosup.runs')"
                             ).fetchone()
    assert None not in found
    with open_store(postgis_url) as store:
        assert len(store.alerts()) == 2
        assert len(store.runs()) == 1


@pytest.mark.postgis
def test_postgis_z_geometries_are_stored_2d_in_alerts(postgis_url: str) -> None:
    hits = gpd.GeoDataFrame({"rule": ["fuel.off_hours"], "subject_type": ["card"],
                             "subject_id": ["C-1"]},
                            geometry=[shapely.Point(116.3, 39.9, 44.0)], crs=4326)
    with open_store(postgis_url) as store:
        with store.run("fuel audit") as run:
            run.write_alerts(make_alerts(hits))
        back = store.alerts()
    assert back.geometry.iloc[0].equals(shapely.Point(116.3, 39.9))


@pytest.mark.postgis
def test_postgis_store_opens_for_a_role_without_ddl_rights(
        postgis_url: str, nl_parcels: gpd.GeoDataFrame) -> None:
    from geosup.store.postgis import PostGISStore

    alerts = _alerts(nl_parcels, 2)
    with open_store(postgis_url) as store, store.run("farmland reconcile") as run:
        run.write_alerts(alerts)
    role = f"reviewer_{uuid.uuid4().hex[:8]}"
    ident = sql.Identifier(role)
    with psycopg.connect(postgis_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(ident))
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA geosup TO {}").format(ident))
        conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA geosup "
                             "TO {}").format(ident))
        conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA geosup TO {}"
                             ).format(ident))
    url = postgis_url.replace("postgresql://postgres@", f"postgresql://{role}@", 1)
    try:
        with open_store(url) as store:
            store.review(alerts.loc[0, "alert_id"], status="investigating", by="Li Wei")
            with store.run("farmland reconcile") as run:
                assert run.write_alerts(alerts).updated == 2
            assert store.alert(alerts.loc[0, "alert_id"])["status"] == "investigating"
            with pytest.raises(StoreError, match="creating the store failed"):
                store.init()  # the DDL itself needs the owner's rights
            assert len(store.alerts()) == 2
        with pytest.raises(StoreError), \
                PostGISStore(url, schema="elsewhere"):  # no right to create a schema
            pass
    finally:
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(ident))
            conn.execute(sql.SQL("DROP ROLE {}").format(ident))
