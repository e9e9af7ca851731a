"""Review maps: alerts on an interactive map that works offline.

- :mod:`maps.review_map` — :func:`~maps.review_map.review_map` /
  :func:`~maps.review_map.write_review_map`, the inspectors' main screen (``geosup map``):
  point-like alerts clustered (one point per alert), polygon alerts drawn per rule, the
  clicked alert's own evidence highlighted, labels in English or Chinese, a page budget;
- :mod:`maps.evidence` — evidence read from the alerts (geometry parts, WKT, coordinates,
  ids of stored layers, image chips from the chip folder);
- :mod:`maps.offline` — vendored Leaflet & co. inlined into the page with their licence
  notices (``maps/assets``).
"""
