"""Evidence layers read from the alerts themselves: geometry parts, WKT, ids, image chips.

A check never imports ``maps`` and ``maps`` never recomputes a check: everything drawn
here comes from an alert's geometry and its evidence JSON. The conventions read
(each optional; a missing or malformed key draws nothing):

- the alert geometry is a ``GeometryCollection`` (e.g. a fuel alert's station point
  and track segment): each part is drawn with a role named after its kind
  (fuel: ``station`` for points, ``track`` for lines; else ``point``/``line``/``area``);
- an evidence value that is WKT text (``"POLYGON ((…))"``, ``SRID=…;`` allowed) or a
  GeoJSON geometry object: drawn with the role named by its key, with a ``_wkt``,
  ``_geom``, ``_geometry`` or ``_geojson`` suffix dropped (``overlap_wkt`` → ``overlap``);
  an evidence ``crs`` (e.g. ``"EPSG:32650"``) says the coordinate system of that WKT,
  EPSG:4326 otherwise;
- ``<role>_lon`` and ``<role>_lat`` numbers: a point (``nearest_lon``/``nearest_lat``);
- ids of features of an evidence layer (``evidence_layers={"parcels": frame}``): the key
  named like the layer's id column or its plural (``parcel_id``/``parcel_ids``), a value
  or a (nested) list of values; the layer's features with those ids are drawn with the
  layer's name as role;
- image chips: ``chip_before``/``chip_after`` (PNG or JPEG files) with ``chip_bounds``
  (``[west, south, east, north]`` or ``[[south, west], [north, east]]`` in degrees; the
  alert geometry's bounds when absent), or the same under a ``chips`` object as
  ``before``/``after``/``bounds``.

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
    "evidence_features",
    "image_chips",
    "parse_evidence",
    "referenced_layers",
]

log = logging.getLogger(__name__)

_WKT = re.compile(r"^\s*(?:SRID=\d+;\s*)?(?:POINT|LINESTRING|POLYGON|MULTIPOINT|MULTILINESTRING|"
                  r"MULTIPOLYGON|GEOMETRYCOLLECTION)\b", re.IGNORECASE)
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
        is_gc = shapely.get_type_id(geoms) == 7
        if is_gc.any():
            pos = np.flatnonzero(is_gc)
            parts, owner = shapely.get_parts(geoms[pos], return_index=True)
            kind = shapely.get_type_id(parts)
            kind = np.where(np.isin(kind, (0, 4)), 0, np.where(np.isin(kind, (1, 2, 5)), 1, 3))
            keep = ~shapely.is_empty(parts)
            for p, o, k in zip(parts[keep], pos[owner[keep]], kind[keep], strict=True):
                rows_alert.append(int(o))
                rows_role.append(_PART_ROLES.get(domain.iloc[o], _GENERIC_PART)[int(k)])
                rows_geom.append(p)
    evidence = _texts(alerts, "evidence")
    layers = dict(evidence_layers or {})
    id_keys: dict[str, tuple[str, str]] = {}
    for name, frame in layers.items():
        id_column, _ = _layer_ids(frame, name)
        id_keys.setdefault(id_column, (name, id_column))  # the first layer of an id wins
        id_keys.setdefault(id_column + "s", (name, id_column))
    # Parse only the evidence that can hold something to draw (vectorised pre-filter).
    hint = evidence.str.contains(r"(?:POINT|LINESTRING|POLYGON|GEOMETRYCOLLECTION|coordinates"
                                 r"|_lon\"|_lat\")", case=False, regex=True)
    if id_keys:
        hint |= evidence.str.contains("|".join(re.escape(f'"{k}"') for k in id_keys), regex=True)
    refs: list[tuple[int, str, str]] = []
    crs_rows: list[Any] = []
    for pos in np.flatnonzero(hint.to_numpy(dtype=bool)):
        ev = parse_evidence(evidence.iloc[pos])
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
                layer, _ = id_keys[key]
                refs.extend((int(pos), layer, i) for i in _flat_ids(value))
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
        from geosup.alerts import severity_rank

        rank = severity_rank(_texts(alerts, "severity"))[frame["alert"].to_numpy()]
        order = np.lexsort((frame["alert"].to_numpy(), -rank.astype(int)))
        dropped = len(frame) - max_features
        frame = frame.iloc[np.sort(order[:max_features])].reset_index(drop=True)
        warnings.warn(f"{dropped:,} evidence features left off the map (max_features="
                      f"{max_features:,}; the most severe alerts are kept)", MapWarning,
                      stacklevel=2)
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
        if names is None and not name.endswith((stem, stem + "s")):
            continue
        keys = f'"{re.escape(id_column)}"|"{re.escape(id_column)}s"'
        if not evidence.str.contains(keys, regex=True).any():
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


def _data_uri(value: Any, root: Path, budget: list[int], max_file: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    path = Path(value)
    if not path.is_absolute():
        path = root / path
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
    max_bytes: int = 40_000_000,
    max_file_bytes: int = 5_000_000,
) -> list[Chip]:
    """Before/after image chips named in the evidence of ``alerts``.

    Relative paths are read from ``root`` (default: the working directory). Only
    files ending in .png/.jpg/.jpeg whose first bytes are a PNG or JPEG signature
    are inlined, and at most ``max_bytes`` in all.
    """
    root = Path(root) if root is not None else Path.cwd()
    evidence = _texts(alerts, "evidence")
    hint = evidence.str.contains('"chip', regex=False).to_numpy(dtype=bool)
    geoms = (np.asarray(alerts.geometry.to_numpy(), dtype=object)
             if alerts.geometry.name in alerts.columns else np.full(len(alerts), None))
    budget = [int(max_bytes)]
    out: list[Chip] = []
    for pos in np.flatnonzero(hint):
        ev = parse_evidence(evidence.iloc[pos])
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
    return out
