"""Review maps: alerts on an interactive map that works offline.

- :mod:`maps.review_map` — :func:`~maps.review_map.review_map` /
  :func:`~maps.review_map.write_review_map`, the inspectors' main screen (``geosup map``);
- :mod:`maps.evidence` — evidence layers read from the alerts (geometry parts, WKT, ids,
  image chips);
- :mod:`maps.offline` — vendored Leaflet & co. inlined into the page (``maps/assets``).
"""
