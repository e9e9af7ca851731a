"""Reconcile farmland declarations against reference parcels: prepare, overlay, rules, alerts.

:func:`reconcile` is the whole check on tables already read: it cleans the inputs
(:func:`geosup.farmland.prepare.prepare`), measures them with an engine (in process,
:func:`geosup.farmland.engine.overlay_inprocess`, or in PostGIS on a connection the caller
hands in), runs every registered farmland rule with the thresholds in force
(:func:`geosup.rules.resolve_thresholds`) and turns the hits into alerts
(:func:`geosup.alerts.make_alerts`, geometry moved to EPSG:4326).

:func:`read_inputs` reads the input files with :func:`geosup.io.read_table` (column
mapping, validation, rejects ledger) and :func:`write_run` writes one reconciliation into a
store run (alerts, rejects, rows in/used/rejected per input, the input layers); the
``geosup farmland reconcile`` command and the demo use both.

Examples
--------
>>> import geopandas as gpd
>>> from shapely import box
>>> parcels = gpd.GeoDataFrame(
...     {"parcel_id": ["P1", "P2"], "eligible_area": [15.0, 15.0]},
...     geometry=[box(500000, 3500000, 500100, 3500100), box(500100, 3500000, 500200, 3500100)],
...     crs=4548)
>>> declarations = gpd.GeoDataFrame(
...     {"declaration_id": ["D1", "D2"], "applicant_id": ["A1", "A2"], "year": [2025, 2025],
...      "parcel_id": ["P1", "P2"], "declared_area": [21.0, 15.0], "village": ["V", "V"],
...      "subsidy_amount": [2100.0, 1500.0]}, geometry=[None, None], crs=4548)
>>> result = reconcile(declarations, parcels, area_unit="mu")
>>> result.alerts[["rule", "subject_type", "subject_id", "severity"]].values.tolist()
[['farmland.over_declared', 'declaration', 'D1', 'high'], \
['farmland.over_declared', 'applicant', 'A1', 'high']]
>>> result.counts["declarations"]
{'rows_in': 2, 'rows_used': 2, 'rows_rejected': 0}
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pandas as pd

from geosup.alerts import empty_alerts, make_alerts
from geosup.config import Settings
from geosup.crs import normalize_area_unit
from geosup.errors import ConfigError
from geosup.farmland.rules import HIT_COLUMNS, RuleContext
from geosup.farmland.tables import Overlay
from geosup.io import (
    LEDGER_COLUMNS,
    PERSONS_READ,
    REPAIR_COLUMNS,
    ROW_COLUMN,
    ReadResult,
    SourceRows,
    read_table,
    restore_raw,
)
from geosup.rules import REGISTRY, Rule, load_builtin_rules, resolve_thresholds

__all__ = [
    "ENGINES",
    "INPUTS",
    "FarmlandInputs",
    "ReconcileResult",
    "combined_counts",
    "read_inputs",
    "reconcile",
    "reconcile_in_database",
    "select_rules",
    "write_run",
]

log = logging.getLogger(__name__)

#: The overlay engines.
ENGINES: tuple[str, ...] = ("inprocess", "postgis")

#: The inputs of the check, in the order they are read and reported.
INPUTS: tuple[str, ...] = ("declarations", "parcels", "land_use", "persons", "previous")

_READ_OPTIONS: dict[str, dict[str, Any]] = {
    # A declaration is located by its parcel id or by a drawing: geometry is optional.
    "declarations": {
        "required": ("declaration_id", "applicant_id", "year", "declared_area"),
        "id_column": "declaration_id",
        "numeric_columns": ("year", "declared_area", "subsidy_amount"),
        "geometry_optional": True,
    },
    "previous": {
        "required": ("declaration_id", "applicant_id", "year", "declared_area"),
        "id_column": "declaration_id",
        "numeric_columns": ("year", "declared_area", "subsidy_amount"),
        "geometry_optional": True,
    },
    "parcels": {
        "required": ("parcel_id", "eligible_area", "geometry"),
        "id_column": "parcel_id",
        "numeric_columns": ("eligible_area",),
    },
    "land_use": {"required": ("land_use", "geometry")},
    "persons": dict(PERSONS_READ),
}


@dataclass
class ReconcileResult:
    """What :func:`reconcile` returns.

    Attributes
    ----------
    alerts : GeoDataFrame
        The alert table (:data:`geosup.alerts.ALERT_COLUMNS`, EPSG:4326).
    hits : GeoDataFrame
        The rules' hits before :func:`~geosup.alerts.make_alerts` (metric CRS).
    rejects : DataFrame
        Rows :func:`~geosup.farmland.prepare.prepare` could not use
        (``source, row, key, reason, raw``).
    repairs : DataFrame
        Geometries prepare changed (``source, row, key, reason``).
    counts : dict
        Rows in / used / rejected per input as prepare saw them.
    overlay : Overlay
        The engine's tables.
    prepared : object
        The :class:`~geosup.farmland.prepare.Prepared` bundle.
    thresholds : dict
        Per rule code, the thresholds it ran with.
    context : RuleContext
        Unit, years under review, persons, CRS.
    """

    alerts: gpd.GeoDataFrame
    hits: gpd.GeoDataFrame
    rejects: pd.DataFrame
    repairs: pd.DataFrame
    counts: dict[str, dict[str, int]]
    overlay: Overlay
    prepared: Any
    thresholds: dict[str, dict[str, Any]]
    context: RuleContext

    def summary(self) -> pd.DataFrame:
        """Alerts per rule and subject type (``rule, subject_type, alerts``)."""
        if not len(self.alerts):
            return pd.DataFrame({"rule": pd.Series([], dtype=object),
                                 "subject_type": pd.Series([], dtype=object),
                                 "alerts": pd.Series([], dtype="int64")})
        return (self.alerts.groupby(["rule", "subject_type"]).size().rename("alerts")
                .reset_index())


def select_rules(rules: Iterable[str] | None = None) -> list[Rule]:
    """The farmland rules to run: all, or those matching codes (``farmland.over_*``)."""
    load_builtin_rules()
    selected = REGISTRY.select(domain="farmland", codes=list(rules) if rules else None)
    if rules and not selected:
        msg = f"no farmland rule matches {', '.join(rules)}"
        raise ConfigError(msg)
    return selected


def _run_engine(prepared: Any, *, engine: str, connection: Any, min_overlap_m2: float,
                workers: int, progress: Callable[[int], None] | None) -> Overlay:
    if engine == "inprocess":
        from geosup.farmland.engine import overlay_inprocess

        return overlay_inprocess(prepared, min_overlap_m2=min_overlap_m2, workers=workers,
                                 progress=progress)
    if engine == "postgis":
        if connection is None:
            msg = ("the PostGIS engine needs a database connection: use a postgresql:// "
                   "store (--store postgresql://…) or engine='inprocess'")
            raise ConfigError(msg)
        from geosup.farmland.engine_postgis import overlay_postgis

        wanted = {"min_overlap_m2": min_overlap_m2, "progress": progress}
        accepted = inspect.signature(overlay_postgis).parameters
        kwargs = {k: v for k, v in wanted.items() if k in accepted}
        return overlay_postgis(connection, prepared, **kwargs)
    msg = f"unknown farmland engine {engine!r}; use one of: {', '.join(ENGINES)}"
    raise ConfigError(msg)


def reconcile(
    declarations: pd.DataFrame,
    parcels: gpd.GeoDataFrame,
    *,
    land_use: gpd.GeoDataFrame | None = None,
    persons: pd.DataFrame | None = None,
    previous: pd.DataFrame | None = None,
    area_unit: str | None,
    settings: Settings | None = None,
    engine: str = "inprocess",
    connection: Any = None,
    rules: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    crs: Any = None,
    years: Iterable[int] | None = None,
    precision_m: float = 0.01,
    sliver_m2: float = 1.0,
    min_overlap_m2: float = 0.01,
    workers: int = 2,
    source_names: Mapping[str, str] | None = None,
    run_id: str | None = None,
    source_rows: Mapping[str, SourceRows] | None = None,
) -> ReconcileResult:
    """Reconcile declarations against reference parcels and land use; return alerts.

    Parameters
    ----------
    declarations : DataFrame or GeoDataFrame
        Canonical columns (``declaration_id, applicant_id, year, declared_area`` and
        optionally ``parcel_id, village, crop, subsidy_amount``, geometry).
    parcels : GeoDataFrame
        ``parcel_id, eligible_area``, geometry, optional ``land_use``.
    land_use : GeoDataFrame, optional
        ``land_use`` class and geometry.
    persons : DataFrame, optional
        The persons registry (``person_id, name, died_on, is_official, unit …``).
    previous : DataFrame or GeoDataFrame, optional
        Declarations of earlier years (same columns as ``declarations``).
    area_unit : str
        The unit of ``declared_area`` and ``eligible_area`` (mu, ha, m2); required.
    settings : Settings, optional
        Rule thresholds (``[rules."farmland.…"]``) and the time zone.
    engine : {"inprocess", "postgis"}
        Where the overlay runs. ``"postgis"`` needs ``connection``.
    connection : psycopg.Connection, optional
        An open connection (the store's, inside its run's transaction).
    rules : sequence of str, optional
        Rule codes to run (a code may end with ``*``); default every farmland rule.
    progress : callable, optional
        Called with the number of declarations the engine finished.
    crs : CRS-like, optional
        The metric CRS to work in (default: chosen for the extent).
    years : iterable of int, optional
        The years under review (default: the years of ``declarations``).
    precision_m, sliver_m2 : float
        Geometry hygiene (see :func:`~geosup.farmland.prepare.prepare`).
    min_overlap_m2 : float
        Overlaps of this area or less are ignored by the engine.
    workers : int
        Threads of the in-process engine.
    source_names : mapping, optional
        Names of the inputs in the rejects ledger and the counts.
    run_id : str, optional
        Stamped on the alerts.
    source_rows : mapping of str to SourceRows, optional
        The inputs' rows as their sources hold them (:attr:`FarmlandInputs.source_rows`,
        keyed by ledger source name): the rows prepare rejects are recorded with the
        source's own column names and values (:func:`geosup.io.restore_raw`).

    Returns
    -------
    ReconcileResult
    """
    from geosup.farmland.prepare import prepare

    settings = settings or Settings()
    selected = select_rules(rules)
    thresholds = {r.code: resolve_thresholds(r, settings) for r in selected}
    prepared = prepare(declarations, parcels, land_use=land_use, previous=previous,
                       area_unit=area_unit, crs=crs, precision_m=precision_m,
                       sliver_m2=sliver_m2, source_names=source_names)
    overlay = _run_engine(prepared, engine=engine, connection=connection,
                          min_overlap_m2=min_overlap_m2, workers=workers, progress=progress)
    return _apply_rules(overlay, selected=selected, thresholds=thresholds, settings=settings,
                        area_unit=prepared.area_unit, years=years, current=prepared.years,
                        persons=persons, run_id=run_id,
                        rejects=restore_raw(prepared.rejects, source_rows),
                        repairs=prepared.repairs, counts=prepared.counts, prepared=prepared)


def _apply_rules(overlay: Overlay, *, selected: list[Rule], thresholds: dict[str, Any],
                 settings: Settings, area_unit: str, years: Iterable[int] | None,
                 current: Iterable[int], persons: pd.DataFrame | None, run_id: str | None,
                 rejects: pd.DataFrame, repairs: pd.DataFrame,
                 counts: dict[str, dict[str, int]], prepared: Any) -> ReconcileResult:
    """Run the selected rules on an overlay and build the result."""
    current = tuple(int(y) for y in current)
    review = tuple(int(y) for y in years) if years is not None else current
    missing = sorted(set(review) - set(current))
    if missing:
        log.warning("no current declarations for year(s) %s", missing)
    context = RuleContext(area_unit=area_unit, years=review, persons=persons, crs=overlay.crs,
                          timezone=str(settings.get("timezone") or "Asia/Shanghai"),
                          land_use=getattr(prepared, "land_use", None))
    parts = []
    for item in selected:
        hits = item(overlay, context, **thresholds[item.code])
        log.info("%s: %d hit(s)", item.code, len(hits))
        if len(hits):
            parts.append(hits)
    if parts:
        hits = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry",
                                crs=overlay.crs)
        alerts = make_alerts(hits.loc[:, list(HIT_COLUMNS)], run_id=run_id)
    else:
        hits = gpd.GeoDataFrame({c: pd.Series([], dtype=object) for c in HIT_COLUMNS[:-1]},
                                geometry=gpd.GeoSeries([], crs=overlay.crs))
        alerts = empty_alerts()
    return ReconcileResult(alerts=alerts, hits=hits, rejects=rejects, repairs=repairs,
                           counts=counts, overlay=overlay, prepared=prepared,
                           thresholds=thresholds, context=context)


def reconcile_in_database(
    connection: Any,
    *,
    declarations: str,
    parcels: str,
    land_use: str | None = None,
    previous: str | None = None,
    persons: pd.DataFrame | None = None,
    area_unit: str | None,
    srid: int,
    settings: Settings | None = None,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    rules: Sequence[str] | None = None,
    progress: Callable[[int], None] | None = None,
    years: Iterable[int] | None = None,
    precision_m: float = 0.01,
    sliver_m2: float = 1.0,
    min_overlap_m2: float = 0.01,
    run_id: str | None = None,
) -> ReconcileResult:
    """Reconcile inputs that live in PostGIS: hygiene and overlay in SQL, then the rules.

    The same check as :func:`reconcile` with ``engine="postgis"``, without moving the
    layers through Python: :func:`geosup.farmland.engine_postgis.overlay_postgis_tables`
    cleans the tables and overlays them inside the connection's transaction.

    Parameters
    ----------
    connection : psycopg.Connection
        An open connection (autocommit off), e.g. the store's inside its run.
    declarations, parcels, land_use, previous : str
        Tables, ``"schema.table"`` or ``"table"``.
    persons : DataFrame, optional
        The persons registry (read with :func:`read_inputs`).
    area_unit : str
        Unit of ``declared_area`` and ``eligible_area``.
    srid : int
        The metric SRID to measure in (a projected CRS in metres).
    columns : mapping, optional
        Per input, canonical name -> table column.
    settings, rules, progress, years, precision_m, sliver_m2, min_overlap_m2, run_id
        As in :func:`reconcile`.

    Returns
    -------
    ReconcileResult
        ``prepared`` is None (the cleaned layers stay in the database).
    """
    from geosup.farmland.engine_postgis import overlay_postgis_tables

    if connection is None:
        msg = "reconciling tables in PostGIS needs the database connection"
        raise ConfigError(msg)
    settings = settings or Settings()
    selected = select_rules(rules)
    thresholds = {r.code: resolve_thresholds(r, settings) for r in selected}
    columns = columns or {}
    overlay, rejects, repairs, counts = overlay_postgis_tables(
        connection, declarations=declarations, parcels=parcels, land_use=land_use,
        previous=previous, area_unit=area_unit, srid=int(srid), precision_m=precision_m,
        sliver_m2=sliver_m2, min_overlap_m2=min_overlap_m2,
        declaration_columns=dict(columns.get("declarations", {})) or None,
        parcel_columns=dict(columns.get("parcels", {})) or None,
        land_use_columns=dict(columns.get("land_use", {})) or None,
        previous_columns=dict(columns.get("previous", {})) or None,
        progress=progress)
    current = tuple(overlay.notes.get("years") or sorted(set(overlay.declarations["year"])))
    return _apply_rules(overlay, selected=selected, thresholds=thresholds, settings=settings,
                        area_unit=normalize_area_unit(str(area_unit)), years=years,
                        current=current, persons=persons, run_id=run_id, rejects=rejects,
                        repairs=repairs, counts=counts, prepared=None)


# ---------------------------------------------------------------------------------------------
# Files in, store out (shared by the CLI and the demo)
# ---------------------------------------------------------------------------------------------


@dataclass
class FarmlandInputs:
    """The inputs as read: frames, where they came from, and what was rejected."""

    frames: dict[str, pd.DataFrame]
    sources: dict[str, str]
    counts: dict[str, dict[str, int]]
    rejects: pd.DataFrame
    repairs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=list(REPAIR_COLUMNS)))
    #: Each input's rows as its source holds them (for the raw values of later rejects).
    source_rows: dict[str, SourceRows] = field(default_factory=dict)

    def get(self, name: str) -> pd.DataFrame | None:
        """The frame of an input, or None when it was not given."""
        return self.frames.get(name)


def _read_one(source: str | os.PathLike[str], *, name: str,
              options: Mapping[str, Any]) -> tuple[pd.DataFrame, ReadResult, pd.DataFrame]:
    result = read_table(source, name=name, **options)
    return result.frame, result, result.ledger.frame()


def read_inputs(
    paths: Mapping[str, str | os.PathLike[str] | None],
    *,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    crs: Any = None,
    timezone: str = "Asia/Shanghai",
    need: Sequence[str] = ("declarations", "parcels"),
    units: Mapping[str, Mapping[str, str]] | None = None,
    area_unit: str | None = None,
    crs_hint: str | None = None,
) -> FarmlandInputs:
    """Read the farmland inputs with :func:`geosup.io.read_table`.

    Parameters
    ----------
    paths : mapping
        Input name (:data:`INPUTS`) -> file, ``/vsizip/`` path or ``postgresql://`` URL;
        ``declarations`` and ``parcels`` are required, the others optional (None).
    columns : mapping, optional
        Per input, the column mapping canonical name -> source column.
    crs : CRS-like or mapping, optional
        The CRS of layers that carry none (a Shapefile without ``.prj``, a CSV with WKT
        geometry); a layer with its own CRS keeps it. A mapping gives it per input, with
        ``"*"`` for every other input.
    timezone : str
        The zone of naive dates in the persons registry.
    need : sequence of str
        Inputs that must be given.
    units : mapping, optional
        Per input, canonical column -> the unit the source uses
        (``{"declarations": {"declared_area": "ha"}}``), converted on reading
        (:func:`geosup.io.read_table`); ``declared_area`` and ``eligible_area`` are
        converted to ``area_unit``.
    area_unit : str, optional
        The run's area unit (what ``declared_area`` and ``eligible_area`` are held in);
        needed when a unit is declared for one of them.
    crs_hint : str, optional
        How the user declares a missing CRS, with ``{input}`` for the input's name (e.g.
        ``"--input-crs {input}=EPSG:<code>"``), named in the error.

    Returns
    -------
    FarmlandInputs
        Frames with canonical columns, rows in/used/rejected per input, the rejects
        ledger rows and the geometry repairs.

    Raises
    ------
    DataSourceError, SchemaError, CRSError
        An input cannot be used at all (see :func:`geosup.io.read_table`).
    """
    unknown = sorted(set(paths) - set(INPUTS))
    if unknown:
        msg = f"unknown farmland input(s) {', '.join(unknown)}; use: {', '.join(INPUTS)}"
        raise ConfigError(msg)
    for name in need:
        if not paths.get(name):
            msg = f"the farmland check needs --{name}"
            raise ConfigError(msg)
    columns = columns or {}
    units = units or {}
    targets = {}
    if area_unit is not None:
        targets = {"declared_area": normalize_area_unit(area_unit),
                   "eligible_area": normalize_area_unit(area_unit)}
    frames: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    rejects: list[pd.DataFrame] = []
    repairs: list[pd.DataFrame] = []
    originals: dict[str, SourceRows] = {}
    for name in INPUTS:
        source = paths.get(name)
        if not source:
            continue
        options = dict(_READ_OPTIONS[name])
        options.update(columns=dict(columns.get(name, {})) or None, tz=timezone,
                       units=dict(units.get(name, {})) or None, target_units=targets or None,
                       crs_hint=crs_hint.format(input=name) if crs_hint else None)
        # ``crs`` is for layers that carry none (a Shapefile without .prj, a CSV with WKT);
        # a layer with its own CRS keeps it.
        declared = (crs.get(name, crs.get("*")) if isinstance(crs, Mapping) else crs)
        if options.get("geometry") != "none":
            options["default_crs"] = declared
        frame, result, ledger = _read_one(source, name=name, options=options)
        frames[name] = frame
        sources[name] = str(source)
        if result.source_rows is not None:
            originals[name] = result.source_rows
        counts[name] = {"rows_in": result.rows_in, "rows_used": len(frame),
                        "rows_rejected": result.rows_in - len(frame)}
        rejects.append(ledger)
        if len(result.repairs):
            repairs.append(result.repairs)
    ledger_rows = pd.concat(rejects, ignore_index=True) if rejects else pd.DataFrame(
        columns=list(LEDGER_COLUMNS))
    repair_rows = pd.concat(repairs, ignore_index=True) if repairs else pd.DataFrame(
        columns=list(REPAIR_COLUMNS))
    return FarmlandInputs(frames=frames, sources=sources, counts=counts,
                          rejects=ledger_rows.loc[:, list(LEDGER_COLUMNS)],
                          repairs=repair_rows, source_rows=originals)


def combined_counts(inputs: FarmlandInputs,
                    result: ReconcileResult | None = None) -> dict[str, dict[str, int]]:
    """Rows in / used / rejected per input after reading and after prepare's hygiene."""
    out: dict[str, dict[str, int]] = {}
    if result is not None and result.prepared is None:  # hygiene ran in the database
        out.update({name: {k: int(v) for k, v in c.items()} for name, c in result.counts.items()
                    if name not in inputs.counts})
    for name, c in inputs.counts.items():
        dropped = 0
        if result is not None and name in result.counts:
            dropped = int(result.counts[name]["rows_rejected"])
        out[name] = {"rows_in": int(c["rows_in"]), "rows_used": int(c["rows_used"]) - dropped,
                     "rows_rejected": int(c["rows_rejected"]) + dropped}
    return out


def write_run(run: Any, inputs: FarmlandInputs, result: ReconcileResult) -> dict[str, Any]:
    """Write one reconciliation into an open store run.

    Writes the alerts (a re-run updates them and keeps their review status), the
    rejects (read and prepare), rows in / used / rejected per input, and the input
    layers as used: ``declarations``, ``previous``, ``parcels``, ``land_use`` (metric
    CRS) and ``persons``, and the geometry repairs (read and prepare) as the table
    ``repairs`` (``source, row, key, reason``) so that no change goes unrecorded.

    Returns
    -------
    dict
        ``alerts`` (inserted/updated), ``rejects`` (rows written), ``repairs`` (rows
        written), ``inputs`` (counts).
    """
    upsert = run.write_alerts(result.alerts)
    # Every reject with the source's own names and values, whichever stage made it.
    rejects = restore_raw(pd.concat([inputs.rejects, result.rejects], ignore_index=True),
                          inputs.source_rows)
    n_rejects = run.add_rejects(rejects.loc[:, list(LEDGER_COLUMNS)])
    counts = combined_counts(inputs, result)
    for name, c in counts.items():
        run.record_input(name, rows_in=c["rows_in"], rows_used=c["rows_used"],
                         rows_rejected=c["rows_rejected"])
    prepared = result.prepared
    if prepared is not None:  # (inputs reconciled in the database stay where they are)
        decl = prepared.declarations
        previous = decl["is_previous"].to_numpy(dtype=bool)
        current = decl.loc[~previous].drop(columns="is_previous")
        run.write_layer("declarations", current.reset_index(drop=True),
                        id_column="declaration_id")
        if "previous" in inputs.frames:
            older = decl.loc[previous].drop(columns="is_previous")
            run.write_layer("previous", older.reset_index(drop=True),
                            id_column="declaration_id")
        run.write_layer("parcels", prepared.parcels, id_column="parcel_id")
        if prepared.land_use is not None:
            run.write_layer("land_use", prepared.land_use)
    persons = inputs.frames.get("persons")
    if persons is not None:
        table = pd.DataFrame(persons).drop(columns=[ROW_COLUMN], errors="ignore")
        for col in table.columns:
            if pd.api.types.is_datetime64_any_dtype(table[col]):
                table[col] = table[col].dt.strftime("%Y-%m-%d").astype(object).where(
                    table[col].notna(), None)
        run.write_layer("persons", table.reset_index(drop=True), id_column="person_id")
    repairs = pd.concat([frame for frame in (inputs.repairs, result.repairs) if len(frame)]
                        or [pd.DataFrame(columns=list(REPAIR_COLUMNS))], ignore_index=True)
    if len(repairs):
        table = repairs.loc[:, list(REPAIR_COLUMNS)].astype({"source": str, "key": str,
                                                             "reason": str})
        run.write_layer("repairs", table.reset_index(drop=True))
    return {"alerts": {"inserted": upsert.inserted, "updated": upsert.updated},
            "rejects": n_rejects, "repairs": len(repairs), "inputs": counts}
