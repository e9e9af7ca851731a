"""Evidence layers read from the alerts themselves: geometry parts, WKT, ids, image chips.

A check never imports ``maps`` and ``maps`` never recomputes a check: everything drawn
here comes from an alert's geometry and its evidence JSON. The conventions read
(each optional; a missing or malformed key draws nothing):

- an alert geometry that is not a polygon (a ``GeometryCollection`` such as a fuel
  alert's station point and track segment, a ``MultiPoint``, a line): each part is
  evidence with a role named after its kind (fuel: ``station`` for points, ``track``
  for lines; else ``point``/``line``/``area``). The review map clusters such an alert
  at one point and draws these parts as its evidence;
- an evidence value that is WKT text (``"POLYGON ((…))"``, ``SRID=…;`` allowed) or a
  GeoJSON geometry object: drawn with the role named by its key, with a ``_wkt``,
  ``_geom``, ``_geometry`` or ``_geojson`` suffix dropped (``overlap_wkt`` → ``overlap``);
  an evidence ``crs`` (e.g. ``"EPSG:32650"``) says the coordinate system of that WKT,
  EPSG:4326 otherwise;
- ``<role>_lon`` and ``<role>_lat`` numbers: a point (``nearest_lon``/``nearest_lat``);
- ids of features of an evidence layer (``evidence_layers={"parcels": frame}``): the key
  named like the layer's id column or its plural (``parcel_id``/``parcel_ids``), or
  like the layer itself (``previous_id`` for a layer ``previous``), a value or a
  (nested) list of values; the layer's features with those ids are drawn with the
  layer's name as role. Several layers may share an id column (``declarations`` and
  ``previous`` both keyed by ``declaration_id``): an id is looked up in each of them;
- image chips: ``chip_before``/``chip_after`` (PNG or JPEG files) with ``chip_bounds``
  (``[west, south, east, north]`` or ``[[south, west], [north, east]]`` in degrees; the
  alert geometry's bounds when absent), or the same under a ``chips`` object as
  ``before``/``after``/``bounds``; a path is read only when it lies inside the chip
  folder (``root``), so that no other file on the machine can end up in a shared page.

Examples
--------
>>> import geopandas as gpd, shapely
>>> alerts = gpd.GeoDataFrame({"domain": ["farmland"], "evidence": [
...     '{"overlap_wkt": "POLYGON ((5 52, 5.001 52, 5.001 52.001, 5 52))"}']},
...     geometry=[shapely.Point(5, 52)], crs=4326)
>>> evidence_features(alerts)[["alert", "domain", "role"]].to_dict("records")
[{'alert': 0, 'domain': 'farmland', 'role': 'overlap'}]
"""

from __future__ import annotations

import base64
import json
import logging
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from geosup.errors import GeosupWarning

__all__ = [
    "Chip",
    "MapWarning",
    "alert_priority",
    "evidence_features",
    "image_chips",
    "is_geometry_value",
    "is_polygonal",
    "layer_id_keys",
    "parse_evidence",
    "referenced_layers",
]

log = logging.getLogger(__name__)

_WKT = re.compile(r"^\s*(?:SRID=\d+;\s*)?(?:POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|"
                  r"MULTIPOLYGON|GEOMETRYCOLLECTION)\s*(?:Z\s*|M\s*|ZM\s*)?(?:\(|EMPTY)",
                  re.IGNORECASE)
_SUFFIX = re.compile(r"_(?:wkt|geom|geometry|geojson)$", re.IGNORECASE)
_GEOJSON_TYPES = frozenset({"Point", "LineString", "Polygon", "MultiPoint", "MultiLineString",
                            "MultiPolygon", "GeometryCollection"})
_PART_ROLES = {"fuel": {0: "station", 1: "track", 3: "area"}}
_GENERIC_PART = {0: "point", 1: "line", 3: "area"}
_MAGIC = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_CHIP_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})

COLUMNS = ["alert", "domain", "role", "geometry"]


class MapWarning(GeosupWarning):
    """Something on the review map was left out (too many features, an unreadable chip)."""


def parse_evidence(text: Any) -> dict[str, Any] | None:
    """The evidence object of one alert, or None when it is not a JSON object."""
    if text is None or text is pd.NA or (isinstance(text, float) and np.isnan(text)):
        return None
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(str(text))
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _texts(alerts: pd.DataFrame, name: str) -> pd.Series:
    if name in alerts.columns:
        return alerts[name].astype("string").fillna("").reset_index(drop=True)
    return pd.Series([""] * len(alerts), dtype="string")


def _flat_ids(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        out: list[str] = []
        for v in value:
            out.extend(_flat_ids(v))
        return out
    if isinstance(value, dict):
        return []
    return [str(value)]


def is_geometry_value(value: Any) -> bool:
    """True for an evidence value that is a geometry (WKT text or a GeoJSON object).

    Examples
    --------
    >>> is_geometry_value("POLYGON ((0 0, 1 0, 1 1, 0 0))"), is_geometry_value("polygon 7")
    (True, False)
    """
    if isinstance(value, str):
        return bool(_WKT.match(value))
    return isinstance(value, dict) and value.get("type") in _GEOJSON_TYPES


def _geometry_value(value: Any) -> Any:
    if isinstance(value, str) and _WKT.match(value):
        text = re.sub(r"^\s*SRID=\d+;\s*", "", value)
        return shapely.from_wkt(text, on_invalid="ignore")
    if isinstance(value, dict) and value.get("type") in _GEOJSON_TYPES:
        try:
            return shapely.from_geojson(json.dumps(value), on_invalid="ignore")
        except (shapely.errors.GEOSException, ValueError, TypeError):
            return None
    return None


def _in_degrees(geoms: np.ndarray) -> np.ndarray:
    if not len(geoms):
        return np.zeros(0, dtype=bool)
    b = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(b).all(axis=1) & (b[:, 0] >= -180) & (b[:, 2] <= 180)
                & (b[:, 1] >= -90) & (b[:, 3] <= 90))


def _layer_ids(frame: gpd.GeoDataFrame, name: str) -> tuple[str, pd.Series]:
    id_column = frame.attrs.get("id_column")
    if not id_column:
        candidates = [c for c in frame.columns if c != frame.geometry.name
                      and (c == "id" or str(c).endswith("_id"))]
        id_column = candidates[0] if candidates else None
    if id_column is None or id_column not in frame.columns:
        if frame.index.name:
            return str(frame.index.name), pd.Series(frame.index.astype(str), index=frame.index)
        msg = (f"evidence layer {name!r} has no id column: name it in "
               f"frame.attrs['id_column'] or use a column ending in '_id'")
        raise ValueError(msg)
    return str(id_column), frame[id_column].astype(str)


def _type_ids(geoms: np.ndarray) -> np.ndarray:
    """shapely's geometry type ids, -1 for missing and empty geometries."""
    kind = np.full(len(geoms), -1)
    if len(geoms):
        present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
        kind[present] = shapely.get_type_id(geoms[present])
    return kind


def _has_parts(geoms: np.ndarray) -> np.ndarray:
    """True for alert geometries whose parts are evidence: not a point, not polygonal."""
    kind = _type_ids(geoms)
    out = np.isin(kind, (1, 2, 4, 5))  # lines, rings, multi-points, multi-lines
    gc = np.flatnonzero(kind == 7)
    if len(gc):
        out[gc] = ~is_polygonal(geoms[gc])
    return out


def is_polygonal(geoms: np.ndarray) -> np.ndarray:
    """True for polygons, multi-polygons and collections made only of them.

    Examples
    --------
    >>> import shapely
    >>> is_polygonal(np.array([shapely.box(0, 0, 1, 1), shapely.Point(0, 0),
    ...     shapely.GeometryCollection([shapely.box(0, 0, 1, 1)])], dtype=object)).tolist()
    [True, False, True]
    """
    geoms = np.asarray(geoms, dtype=object)
    kind = _type_ids(geoms)
    out = np.isin(kind, (3, 6))
    gc = np.flatnonzero(kind == 7)
    if len(gc):
        parts, owner = shapely.get_parts(geoms[gc], return_index=True)
        parts, sub = shapely.get_parts(parts, return_index=True)  # nested collections
        owner = owner[sub]
        bad = ~np.isin(shapely.get_type_id(parts), (3, 6)) & ~shapely.is_empty(parts)
        nonpoly = np.bincount(owner[bad], minlength=len(gc)) if len(owner) else \
            np.zeros(len(gc), dtype=int)
        counts = np.bincount(owner, minlength=len(gc)) if len(owner) else \
            np.zeros(len(gc), dtype=int)
        out[gc] = (nonpoly == 0) & (counts > 0)
    return out


def alert_priority(alerts: pd.DataFrame) -> np.ndarray:
    """Positions of ``alerts``, the most important first: severity, then score, then position.

    What is left off a map that would be too big is taken from the end of this order.
    """
    from geosup.alerts import severity_rank

    n = len(alerts)
    rank = severity_rank(_texts(alerts, "severity")).astype(int)
    score = (pd.to_numeric(alerts["score"], errors="coerce").to_numpy(dtype=float)
             if "score" in alerts.columns else np.zeros(n))
    score = np.where(np.isfinite(score), score, -1.0)
    return np.lexsort((np.arange(n), -score, -rank))


def layer_id_keys(frame: gpd.GeoDataFrame, name: str) -> list[str]:
    """The evidence keys that name features of layer ``name`` by id.

    The layer's id column and its plural, and keys named after the layer itself
    (``previous_id``/``previous_ids`` for a layer ``previous``; ``claim_id`` for
    ``claims``).

    Examples
    --------
    >>> import geopandas as gpd
    >>> frame = gpd.GeoDataFrame({"declaration_id": ["a"]}, geometry=[None], crs=4326)
    >>> layer_id_keys(frame, "previous")
    ['declaration_id', 'declaration_ids', 'previous_id', 'previous_ids']
    """
    id_column, _ = _layer_ids(frame, name)
    keys = [id_column, id_column + "s", f"{name}_id", f"{name}_ids"]
    if name.endswith("s") and not name.endswith(("ss", "us")):
        keys += [f"{name[:-1]}_id", f"{name[:-1]}_ids"]
    return list(dict.fromkeys(keys))


def evidence_features(
    alerts: gpd.GeoDataFrame,
    *,
    evidence_layers: Mapping[str, gpd.GeoDataFrame] | None = None,
    max_features: int = 100_000,
) -> gpd.GeoDataFrame:
    """Every evidence geometry of ``alerts``, one row per drawn feature.

    Parameters
    ----------
    alerts : GeoDataFrame
        Alert table (EPSG:4326); ``evidence`` holds JSON text.
    evidence_layers : mapping of name to GeoDataFrame, optional
        Layers whose features the evidence refers to by id (see the module notes).
    max_features : int
        At most this many features (the most severe alerts first); a
        :class:`MapWarning` says how many were left out.

    Returns
    -------
    GeoDataFrame
        ``alert`` (position in ``alerts``), ``domain``, ``role``, ``geometry`` (EPSG:4326).
    """
    n = len(alerts)
    rows_alert: list[int] = []
    rows_role: list[str] = []
    rows_geom: list[Any] = []
    domain = _texts(alerts, "domain")
    if n and alerts.geometry.name in alerts.columns:
        geoms = np.asarray(alerts.geometry.to_numpy(), dtype=object)
        pos = np.flatnonzero(_has_parts(geoms))
        if len(pos):
            parts, owner = shapely.get_parts(geoms[pos], return_index=True)
            # a part of a collection may itself be a multi-geometry: one row per simple part
            parts, sub = shapely.get_parts(parts, return_index=True)
            owner = owner[sub]
            kind = shapely.get_type_id(parts)
            kind = np.where(kind == 0, 0, np.where(kind == 1, 1, 3))
            keep = ~shapely.is_empty(parts)
            dom = domain.to_numpy(dtype=object)
            for p, o, k in zip(parts[keep], pos[owner[keep]].tolist(), kind[keep].tolist(),
                               strict=True):
                rows_alert.append(o)
                rows_role.append(_PART_ROLES.get(dom[o], _GENERIC_PART)[k])
                rows_geom.append(p)
    evidence = _texts(alerts, "evidence")
    layers = dict(evidence_layers or {})
    id_keys: dict[str, list[str]] = {}  # evidence key -> the layers it may refer to
    for name, frame in layers.items():
        for key in layer_id_keys(frame, name):
            id_keys.setdefault(key, [])
            if name not in id_keys[key]:
                id_keys[key].append(name)
    # Parse only the evidence that can hold something to draw (vectorised pre-filter).
    hint = evidence.str.contains(r"(?i)(?:POINT|LINESTRING|POLYGON|GEOMETRYCOLLECTION|coordinates"
                                 r"|_lon\"|_lat\")", regex=True)
    if id_keys:
        hint |= evidence.str.contains("|".join(re.escape(f'"{k}"') for k in id_keys), regex=True)
    refs: list[tuple[int, str, str]] = []
    crs_rows: list[Any] = []
    texts = evidence.to_numpy(dtype=object)
    for pos in np.flatnonzero(hint.to_numpy(dtype=bool)).tolist():
        ev = parse_evidence(texts[pos])
        if not ev:
            continue
        crs = ev.get("crs") if isinstance(ev.get("crs"), str) else None
        for key, value in ev.items():
            key = str(key)
            geom = _geometry_value(value)
            if geom is not None and not shapely.is_empty(geom):
                rows_alert.append(int(pos))
                rows_role.append(_SUFFIX.sub("", key) or key)
                rows_geom.append(geom)
                crs_rows.append((len(rows_geom) - 1, crs))
            elif key in id_keys:
                ids = _flat_ids(value)
                for layer in id_keys[key]:
                    refs.extend((int(pos), layer, i) for i in ids)
            elif key.endswith("_lon"):
                stem = key[:-4]
                lat = ev.get(stem + "_lat")
                if isinstance(value, (int, float)) and isinstance(lat, (int, float)):
                    rows_alert.append(int(pos))
                    rows_role.append(stem or "point")
                    rows_geom.append(shapely.Point(float(value), float(lat)))
    geoms_out = np.array(rows_geom, dtype=object) if rows_geom else np.zeros(0, dtype=object)
    for idx, crs in crs_rows:
        if crs:
            try:
                geoms_out[idx] = gpd.GeoSeries([geoms_out[idx]], crs=crs).to_crs(4326).iloc[0]
            except Exception as err:  # noqa: BLE001 - a bad CRS in evidence draws nothing
                log.debug("evidence crs %r not usable: %s", crs, err)
                geoms_out[idx] = None
    frame = gpd.GeoDataFrame({"alert": np.array(rows_alert, dtype=np.int64),
                              "role": pd.Series(rows_role, dtype=object)},
                             geometry=gpd.GeoSeries(geoms_out, crs=4326), crs=4326)
    if refs:
        ref = pd.DataFrame(refs, columns=["alert", "layer", "id"]).drop_duplicates()
        parts = []
        for name, frame_l in layers.items():
            want = ref.loc[ref["layer"] == name]
            if want.empty:
                continue
            _, ids = _layer_ids(frame_l, name)
            src = frame_l if frame_l.crs is None or frame_l.crs.equals("EPSG:4326") \
                else frame_l.to_crs(4326)
            lookup = pd.DataFrame({"id": ids.to_numpy(), "_g": np.arange(len(src))})
            hit = want.merge(lookup, on="id", how="inner")
            parts.append(gpd.GeoDataFrame(
                {"alert": hit["alert"].to_numpy(dtype=np.int64), "role": name},
                geometry=gpd.GeoSeries(src.geometry.to_numpy()[hit["_g"].to_numpy()],
                                       crs=4326), crs=4326))
        if parts:
            frame = pd.concat([frame, *parts], ignore_index=True)
    if len(frame):
        g = frame.geometry.to_numpy()
        ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
        ok[ok] = _in_degrees(g[ok])
        frame = frame.loc[ok].reset_index(drop=True)
    frame["domain"] = domain.to_numpy()[frame["alert"].to_numpy()] if len(frame) else \
        pd.Series([], dtype=object)
    if len(frame) > max_features:
        order = alert_priority(alerts)  # most important alert first
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        keep = np.argsort(rank[frame["alert"].to_numpy()], kind="stable")[:max_features]
        dropped_alerts = len(set(frame["alert"].tolist())
                             - set(frame["alert"].to_numpy()[keep].tolist()))
        dropped = len(frame) - max_features
        frame = frame.iloc[np.sort(keep)].reset_index(drop=True)
        warnings.warn(f"{dropped:,} evidence features of {dropped_alerts:,} alerts left off "
                      f"the map (max_features={max_features:,}; the evidence of the most "
                      "severe, highest-scored alerts is kept); filter the alerts (rule, "
                      "severity, unit, period) to draw the rest", MapWarning, stacklevel=2)
    return gpd.GeoDataFrame(frame[COLUMNS], geometry="geometry", crs=4326)


def referenced_layers(store: Any, alerts: gpd.GeoDataFrame, *,
                      names: Sequence[str] | None = None) -> dict[str, gpd.GeoDataFrame]:
    """Stored input layers whose features the evidence of ``alerts`` refers to by id.

    Parameters
    ----------
    store : geosup.store.base.Store
        An open store (this function never opens one).
    alerts : GeoDataFrame
        The alerts to be drawn.
    names : sequence of str, optional
        Layers to consider. By default every layer with geometry and an id column
        whose name says what it holds (``parcel_id`` → ``parcels``, ``station_id`` →
        ``fuel_stations``) and whose id column, or its plural, is an evidence key.

    Returns
    -------
    dict
        Layer name → GeoDataFrame with ``attrs["id_column"]`` set, ready for
        :func:`evidence_features`.
    """
    registry = store.layers()
    evidence = _texts(alerts, "evidence")
    out: dict[str, gpd.GeoDataFrame] = {}
    for row in registry.itertuples():
        name = str(row.name)
        if names is not None and name not in names:
            continue
        id_column = row.id_column if isinstance(row.id_column, str) and row.id_column else None
        has_geometry = isinstance(row.geometry_type, str) and bool(row.geometry_type)
        if id_column is None or not has_geometry:
            if names is not None:
                log.warning("layer %s has no geometry or no id column: not drawn", name)
            continue
        stem = id_column[:-3] if id_column.endswith("_id") else id_column
        own = [f"{name}_id", f"{name}_ids"]  # keys named after the layer itself
        if name.endswith("s") and not name.endswith(("ss", "us")):
            own += [f"{name[:-1]}_id", f"{name[:-1]}_ids"]
        keys = [id_column, id_column + "s", *own]
        if names is None and not name.endswith((stem, stem + "s")):
            keys = own  # e.g. "previous" (keyed by declaration_id) through "previous_id"
        pattern = "|".join(f'"{re.escape(k)}"' for k in dict.fromkeys(keys))
        if not evidence.str.contains(pattern, regex=True).any():
            continue
        frame = store.read_layer(name)
        if isinstance(frame, gpd.GeoDataFrame) and frame.crs is not None:
            frame.attrs["id_column"] = id_column
            out[name] = frame
    return out


@dataclass(frozen=True)
class Chip:
    """The before/after image chips of one alert, inlined as ``data:`` URIs."""

    alert: int
    before: str | None
    after: str | None
    bounds: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east))


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _data_uri(value: Any, root: Path, budget: list[int], max_file: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value)
    if not path.is_absolute():
        path = root / path
    if not path.exists():  # nothing to read (and nothing to resolve)
        log.debug("image chip %s not found", path)
        return None
    if not _inside(path, root):  # symbolic links resolved: no way out of the chip folder
        warnings.warn(f"image chip {value!r} is outside the chip folder {root}; left off "
                      "(pass the folder that holds the chips as chip_root / --chips)",
                      MapWarning, stacklevel=3)
        return None
    if path.suffix.lower() not in _CHIP_SUFFIXES or not path.is_file():
        log.debug("image chip %s is not a PNG/JPEG file", path)
        return None
    size = path.stat().st_size
    if size > max_file or size > budget[0]:
        warnings.warn(f"image chip {path.name} left off the map ({size:,} bytes over the "
                      "size budget)", MapWarning, stacklevel=3)
        return None
    data = path.read_bytes()
    mime = next((m for magic, m in _MAGIC.items() if data.startswith(magic)), None)
    if mime is None:  # only real images are ever inlined: never an arbitrary file
        warnings.warn(f"image chip {path.name} is not a PNG or JPEG image; left off",
                      MapWarning, stacklevel=3)
        return None
    budget[0] -= size
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _bounds(value: Any, fallback: Any) -> tuple[tuple[float, float], tuple[float, float]] | None:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = np.zeros(0)
    if arr.shape == (4,):
        west, south, east, north = arr
    elif arr.shape == (2, 2):
        (south, west), (north, east) = arr
    elif fallback is not None and not shapely.is_empty(fallback):
        west, south, east, north = shapely.bounds(fallback)
    else:
        return None
    box = np.array([west, south, east, north])
    if (not np.isfinite(box).all() or not (-180 <= west < east <= 180)
            or not (-90 <= south < north <= 90)):
        return None
    return (float(south), float(west)), (float(north), float(east))


def image_chips(
    alerts: gpd.GeoDataFrame,
    *,
    root: str | Path | None = None,
    max_bytes: int = 10_000_000,
    max_file_bytes: int = 5_000_000,
    order: Sequence[int] | None = None,
) -> list[Chip]:
    """Before/after image chips named in the evidence of ``alerts``.

    Relative paths are read from ``root`` (default: the working directory); a path
    that leads outside ``root`` (absolute, ``..``, a symbolic link) is refused with a
    :class:`MapWarning`. Only files ending in .png/.jpg/.jpeg whose first bytes are a
    PNG or JPEG signature are inlined, and at most ``max_bytes`` in all (base64 makes
    them a third larger in the page), taken in ``order`` (alert positions, most
    important first; default: :func:`alert_priority`).
    """
    root = (Path(root) if root is not None else Path.cwd()).resolve()
    evidence = _texts(alerts, "evidence")
    hint = evidence.str.contains('"chip', regex=False).to_numpy(dtype=bool)
    geoms = (np.asarray(alerts.geometry.to_numpy(), dtype=object)
             if alerts.geometry.name in alerts.columns else np.full(len(alerts), None))
    budget = [int(max_bytes)]
    out: list[Chip] = []
    ranked = np.asarray(order if order is not None else alert_priority(alerts), dtype=int)
    texts = evidence.to_numpy(dtype=object)
    for pos in ranked[hint[ranked]].tolist():
        ev = parse_evidence(texts[pos])
        if not ev:
            continue
        nested = ev.get("chips") if isinstance(ev.get("chips"), dict) else {}
        before = ev.get("chip_before", nested.get("before"))
        after = ev.get("chip_after", nested.get("after"))
        if before is None and after is None:
            continue
        geom = geoms[pos]
        bounds = _bounds(ev.get("chip_bounds", nested.get("bounds")),
                         None if geom is None else geom)
        if bounds is None:
            continue
        b = _data_uri(before, root, budget, max_file_bytes)
        a = _data_uri(after, root, budget, max_file_bytes)
        if b or a:
            out.append(Chip(alert=int(pos), before=b, after=a, bounds=bounds))
    return sorted(out, key=lambda c: c.alert)
