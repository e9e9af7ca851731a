"""Hostile strings and rule codes shared by the review-map tests."""

from __future__ import annotations

#: Strings that must reach the reader as text and never run.
PAYLOADS = (
    '<img src=x onerror="window.__pwned=1">',
    '"><script>window.__pwned=1</script>',
    "`${window.__pwned=1}` {{ 7*7 }} {% if 1 %}x{% endif %} ' \" </script><!--",
    "申报面积超过核实面积 <b>粗体</b>",
)
IMG, SCRIPT, TEMPLATE, CHINESE = PAYLOADS

#: The rule codes of :func:`payload_alerts` and the registry titles of two of them.
POINT_RULE = "fuel.payload_point"
PARCEL_RULE = "farmland.payload_parcel"
OTHER_RULE = "farmland.unregistered_{{ 7*7 }}"


# -- reading a written page back (the data blocks the browser decodes) ----------------------

def page_blocks(page: str) -> dict[str, object]:
    """The JSON data blocks of a page by name (``core``, ``t0``, ``e0``, ``chips``), decoded."""
    import base64
    import gzip
    import json
    import re

    out = {}
    for m in re.finditer(r'<script type="application/(json|octet-stream)" id="gs-([a-z0-9]+)-'
                         r'[0-9a-f]+"(?: data-encoding="gzip\+base64")?>(.*?)</script>', page,
                         re.DOTALL):
        kind, name, body = m.groups()
        text = (gzip.decompress(base64.b64decode(body)).decode("utf-8")
                if kind == "octet-stream" else body)
        out[name] = json.loads(text)
    return out


def decode_line(coded: list[int]) -> list[tuple[float, float]]:
    """A delta-coded coordinate list (integer micro-degrees) as (lon, lat) pairs."""
    import numpy as np

    xy = np.cumsum(np.asarray(coded, dtype=np.int64).reshape(-1, 2), axis=0) / 1e6
    return [tuple(p) for p in xy.tolist()]


def decode_shape(kind: int, coded: object):
    """One evidence feature (kind 0 point, 1 line, 2 polygon) as a shapely geometry."""
    import shapely

    if kind == 0:
        return shapely.Point(coded[0] / 1e6, coded[1] / 1e6)
    if kind == 1:
        return shapely.LineString(decode_line(coded))
    rings = [decode_line(r) for r in coded]
    return shapely.Polygon(rings[0], rings[1:])


def alert_shapes(core: dict) -> dict[int, object]:
    """Alert position -> the (multi)polygon drawn for it."""
    import shapely

    out = {}
    for layer in core["layers"]:
        if layer["kind"] != "shapes":
            continue
        for i, polys in zip(layer["i"], layer["c"], strict=True):
            parts = [decode_shape(2, p) for p in polys]
            out[i] = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
    return out


def evidence_of(blocks: dict) -> list[object]:
    """Each alert's evidence as the popups read it (blocks ``t0``, ``t1`` … in order)."""
    out: list[object] = []
    for name in sorted((k for k in blocks if k[0] == "t" and k[1:].isdigit()),
                       key=lambda k: int(k[1:])):
        spec = blocks[name]["cols"]["evidence"]
        n = len(blocks[name]["cols"]["alert_id"]) if isinstance(
            blocks[name]["cols"]["alert_id"], list) else len(blocks[name]["cols"]["alert_id"]["c"])
        if spec is None:
            out.extend([None] * n)
            continue
        seen: dict[int, int] = {}
        for j, s in enumerate(spec["i"]):
            if s < 0:
                out.append(spec["r"].get(str(j)))
                continue
            rank = seen.get(s, 0)
            seen[s] = rank + 1
            out.append({k: spec["c"][s][c][rank] for c, k in enumerate(spec["k"][s])})
    return out


def evidence_features_of(blocks: dict, roles: list[str]) -> list[tuple[list[int], str, object]]:
    """Every evidence feature of a page: (alerts, role, geometry)."""
    out = []
    for name in sorted(k for k in blocks if k[0] == "e" and k[1:].isdigit()):
        b = blocks[name]
        for a, r, t, c in zip(b["a"], b["r"], b["t"], b["c"], strict=True):
            out.append((a if isinstance(a, list) else [a], roles[r], decode_shape(t, c)))
    return out


def page_config(page: str) -> dict:
    """The configuration handed to review.js (block ids, evidence roles and styles)."""
    import json
    import re

    m = re.search(r"geosupReview\.build\([^,]+, Object\.assign\((\{.*?\}), \{groups:", page,
                  re.DOTALL)
    return json.loads(m.group(1))
