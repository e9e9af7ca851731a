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
