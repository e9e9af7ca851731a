/* geosup review map: builds the alert layers of a folium map from one data block.
 *
 * Safety: every user-sourced string reaches the page through textContent (never
 * innerHTML); the data block is JSON in a non-executable <script type="application/json">.
 * Speed: one cluster group (points) and one canvas GeoJSON layer (shapes) per rule;
 * popups and tooltips are built on first use, not per alert up front.
 */
(function (global) {
  "use strict";

  var SEV = ["low", "medium", "high", "critical"];
  var CLOSED = { dismissed: true, rectified: true };

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function decode(node) {
    if (!node) { return Promise.reject(new Error("geosup: data block missing")); }
    if (node.getAttribute("data-encoding") === "gzip+base64") {
      var bin = atob(node.textContent.replace(/\s+/g, ""));
      var bytes = new Uint8Array(bin.length);
      for (var k = 0; k < bin.length; k++) { bytes[k] = bin.charCodeAt(k); }
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      return new Response(stream).text().then(JSON.parse);
    }
    return Promise.resolve(JSON.parse(node.textContent));
  }

  /* Column access: plain arrays or dictionary-encoded {d: values, c: codes}. */
  function column(col) {
    if (col === null || col === undefined) { return function () { return null; }; }
    if (!Array.isArray(col) && col.d) {
      var d = col.d, c = col.c;
      return function (i) { var v = c[i]; return v < 0 ? null : d[v]; };
    }
    return function (i) { var v = col[i]; return v === undefined ? null : v; };
  }

  /* Columns only popups read: in blocks of cfg.chunk alerts, decoded on first use. */
  var LATE = ["alert_id", "detail", "status_by", "status_note", "observed_at", "status_at",
              "evidence"];

  function Alerts(data, cfg) {
    var self = this;
    this.data = data;
    this.L = data.labels || {};
    this.chunk = cfg.chunk || 1e9;
    this.textIds = cfg.text || [];
    this.chunks = {};
    this.loading = {};
    LATE.forEach(function (name) {
      self[name] = function (i) {
        var c = self.chunks[Math.floor(i / self.chunk)];
        return c ? c[name](i % self.chunk) : null;
      };
    });
    Object.keys(data.cols).forEach(function (name) { self[name] = column(data.cols[name]); });
  }
  Alerts.prototype.hasText = function (i) {
    return !this.textIds.length || !!this.chunks[Math.floor(i / this.chunk)];
  };
  Alerts.prototype.loadText = function (i) {
    var k = Math.floor(i / this.chunk), self = this;
    if (!this.loading[k]) {
      this.loading[k] = decode(document.getElementById(this.textIds[k])).then(function (t) {
        var cols = {};
        LATE.forEach(function (name) { cols[name] = column((t.cols || {})[name]); });
        self.chunks[k] = cols;
      });
    }
    return this.loading[k];
  };
  Alerts.prototype.label = function (group, key) {
    var table = this.L[group] || {};
    return Object.prototype.hasOwnProperty.call(table, key) ? table[key] : key;
  };
  Alerts.prototype.sevIndex = function (i) {
    var k = SEV.indexOf(this.severity(i));
    return k < 0 ? 1 : k;
  };
  Alerts.prototype.ruleTitle = function (i) {
    var code = this.rule(i), titles = this.data.rule_titles || {};
    return Object.prototype.hasOwnProperty.call(titles, code) ? titles[code] : code;
  };
  Alerts.prototype.titleOf = function (i) {
    return this.title(i) || this.ruleTitle(i) || this.alert_id(i) || "";
  };

  function fmtNumber(v, lang, digits) {
    if (typeof v !== "number" || !isFinite(v)) { return v === null ? "—" : String(v); }
    try {
      return v.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB",
        { maximumFractionDigits: digits === undefined ? 4 : digits });
    } catch (err) { return String(v); }
  }

  function clip(text, n) {
    text = String(text);
    return text.length > n ? text.slice(0, n) + "… (" + text.length + ")" : text;
  }

  /* Evidence: nested JSON flattened to rows, split in measured / thresholds / other. */
  function flatten(value, path, rows, depth) {
    if (value !== null && typeof value === "object" && !Array.isArray(value) && depth < 3) {
      Object.keys(value).forEach(function (key) {
        flatten(value[key], path ? path + "." + key : key, rows, depth + 1);
      });
      return;
    }
    rows.push([path, value]);
  }

  function showValue(v, lang) {
    if (typeof v === "number") { return fmtNumber(v, lang); }
    if (v === null) { return "null"; }
    if (typeof v === "boolean") { return v ? "true" : "false"; }
    if (Array.isArray(v) && v.every(function (x) { return x === null || typeof x !== "object"; })) {
      return clip(v.map(function (x) { return typeof x === "number" ? fmtNumber(x, lang) : String(x); }).join(", "), 400);
    }
    if (typeof v === "object") { return clip(JSON.stringify(v, null, 1), 600); }
    return clip(v, 400);
  }

  function rowsTable(rows, lang) {
    var table = el("table", "gs-kv");
    rows.forEach(function (r) {
      var tr = el("tr");
      tr.appendChild(el("th", null, r[0]));
      var td = el("td", null, r[2] ? r[1] : showValue(r[1], lang));
      tr.appendChild(td);
      table.appendChild(tr);
    });
    return table;
  }

  function evidenceSections(A, i, root, lang) {
    var raw = A.evidence(i), parsed = raw;
    if (raw === null || raw === undefined || raw === "" || raw === "{}") { return; }
    if (typeof raw === "string") {
      try { parsed = JSON.parse(raw); } catch (err) { parsed = undefined; }
    }
    if (parsed === undefined || parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      root.appendChild(el("div", "gs-h", A.label("ui", "evidence")));
      root.appendChild(el("pre", "gs-pre", clip(typeof raw === "string" ? raw : JSON.stringify(raw), 2000)));
      return;
    }
    var rows = [];
    flatten(parsed, "", rows, 0);
    var measured = [], thresholds = [], other = [];
    rows.forEach(function (r) {
      if (/threshold|toleran|limit/i.test(r[0])) { thresholds.push(r); }
      else if (typeof r[1] === "number") { measured.push(r); }
      else { other.push(r); }
    });
    var LIMIT = 80, shown = 0;
    [["measured", measured], ["thresholds", thresholds], ["evidence", other]].forEach(function (s) {
      if (!s[1].length || shown >= LIMIT) { return; }
      var part = s[1].slice(0, LIMIT - shown);
      shown += part.length;
      root.appendChild(el("div", "gs-h", A.label("ui", s[0])));
      root.appendChild(rowsTable(part, lang));
    });
    if (rows.length > shown) {
      root.appendChild(el("div", "gs-more", "… " + (rows.length - shown) + " " + A.label("ui", "more")));
    }
  }

  function popupContent(A, i) {
    var lang = A.data.lang, root = el("div", "gs-pop");
    root.appendChild(el("div", "gs-title", A.titleOf(i)));
    var badges = el("div", "gs-badges");
    var sev = A.severity(i);
    badges.appendChild(el("span", "gs-badge gs-s" + A.sevIndex(i), A.label("severity", sev)));
    var status = A.status(i);
    if (status) { badges.appendChild(el("span", "gs-badge gs-status", A.label("status", status))); }
    root.appendChild(badges);
    var rows = [];
    function add(key, value) {
      if (value === null || value === undefined || value === "") { return; }
      rows.push([A.label("field", key), value, true]);
    }
    add("rule", A.ruleTitle(i) === A.rule(i) ? A.rule(i) : A.ruleTitle(i) + " (" + A.rule(i) + ")");
    add("domain", A.label("domain", A.domain(i)));
    add("subject", [A.subject_type(i), A.subject_id(i)].filter(Boolean).join(" "));
    add("unit", A.unit(i));
    add("observed_at", A.observed_at(i));
    add("period", A.period(i));
    var amount = A.amount_at_risk(i);
    if (amount !== null && amount !== undefined) { add("amount_at_risk", fmtNumber(amount, lang, 2)); }
    var score = A.score(i);
    if (score !== null && score !== undefined) { add("score", fmtNumber(score, lang, 3)); }
    var by = [A.status_by(i), A.status_at(i)].filter(Boolean).join(", ");
    add("status", status ? A.label("status", status) + (by ? " (" + by + ")" : "") : null);
    add("status_note", A.status_note(i));
    root.appendChild(rowsTable(rows, lang));
    var detail = A.detail(i);
    if (detail) { root.appendChild(el("div", "gs-detail", clip(detail, 2000))); }
    if (A.hasText(i)) {
      evidenceSections(A, i, root, lang);
      root.appendChild(el("div", "gs-id", A.label("field", "alert_id") + ": " + A.alert_id(i)));
    } else {
      root.appendChild(el("div", "gs-more", "…"));
    }
    return root;
  }

  function tooltipContent(A, i, role) {
    var root = el("div", "gs-tip");
    if (role) { root.appendChild(el("div", "gs-role", A.label("role", role))); }
    root.appendChild(el("div", "gs-title", A.titleOf(i)));
    var line = [A.label("severity", A.severity(i)), [A.subject_type(i), A.subject_id(i)].filter(Boolean).join(" "), A.unit(i)];
    root.appendChild(el("div", "gs-sub", line.filter(Boolean).join(" · ")));
    return root;
  }

  function tagLayers(layer, i, role) {
    layer._gsI = i;
    layer._gsRole = role;
    if (layer.eachLayer) { layer.eachLayer(function (sub) { tagLayers(sub, i, role); }); }
  }

  function roleStyle(role, colour) {
    role = String(role || "").toLowerCase();
    if (/overlap/.test(role)) { return { color: "#c92a2a", weight: 2, fillColor: "#c92a2a", fillOpacity: 0.45 }; }
    if (/declar|drawn/.test(role)) { return { color: "#1c7ed6", weight: 2, dashArray: "6 4", fillOpacity: 0.05 }; }
    if (/reference|parcel|eligible/.test(role)) { return { color: "#2b8a3e", weight: 2, fillColor: "#2b8a3e", fillOpacity: 0.12 }; }
    if (/nearest|approach/.test(role)) { return { color: "#862e9c", weight: 3, dashArray: "4 4", fillOpacity: 0.3 }; }
    if (/track|route|segment|line/.test(role)) { return { color: "#364fc7", weight: 3, opacity: 0.85, fillOpacity: 0.2 }; }
    if (/station/.test(role)) { return { color: "#0b7285", weight: 2, fillColor: "#15aabf", fillOpacity: 0.9 }; }
    return { color: colour || "#495057", weight: 2, fillOpacity: 0.2 };
  }

  function Review(map, cfg) {
    this.map = map;
    this.cfg = cfg;
    this.ready = false;
    this.counts = { markers: 0, shapes: 0, evidence: 0, chips: 0 };
    this.layers = [];
    this.errors = [];
    this.timings = { start: performance.now() };
  }

  Review.prototype.panel = function (id, position) {
    var node = id && document.getElementById(id);
    if (!node) { return; }
    var Panel = L.Control.extend({
      onAdd: function () {
        node.style.display = "";
        L.DomEvent.disableClickPropagation(node);
        L.DomEvent.disableScrollPropagation(node);
        return node;
      }
    });
    new Panel({ position: position }).addTo(this.map);
  };

  /* One popup per map, opened at the clicked place: markers of the cluster layer are
   * rebuilt as the view changes, so a popup must not belong to one of them. */
  Review.prototype.openAlert = function (A, i, latlng) {
    var self = this;
    if (!this.popup) {
      this.popup = L.popup({ maxWidth: 440, minWidth: 260, maxHeight: 420, autoPanPadding: [20, 20] });
    }
    var popup = this.popup;
    popup._gsI = i;
    popup.setLatLng(latlng).setContent(function () { return popupContent(A, i); }).openOn(this.map);
    if (!A.hasText(i)) {
      A.loadText(i).then(function () {
        if (popup._gsI === i && popup.isOpen()) { popup.update(); }
      }).catch(function (err) { self.errors.push(String(err)); });
    }
  };

  Review.prototype.openList = function (A, items, latlng) {
    var self = this, root = el("div", "gs-pop gs-list");
    items.forEach(function (i) {
      var row = el("div", "gs-item gs-s" + A.sevIndex(i));
      row.appendChild(el("span", "gs-badge gs-s" + A.sevIndex(i), A.label("severity", A.severity(i))));
      row.appendChild(el("span", null, " " + A.titleOf(i)));
      row.addEventListener("click", function () { self.openAlert(A, i, latlng); });
      root.appendChild(row);
    });
    L.popup({ maxWidth: 440, maxHeight: 360 }).setLatLng(latlng).setContent(root).openOn(this.map);
  };

  Review.prototype.bindEvents = function (layer, A, sticky) {
    var self = this;
    layer.on("click", function (e) {
      var target = e.layer;
      if (target._gsCluster !== undefined && target._gsLayer) {
        target._gsLayer.expand(target, self);
        return;
      }
      if (target._gsI === undefined) { return; }
      self.openAlert(A, target._gsI, e.latlng || target.getLatLng());
    });
    layer.on("mouseover", function (e) {
      var target = e.layer, i = target._gsI;
      if (i === undefined || !target.bindTooltip) { return; }
      if (target.setStyle && !target._gsBase) {
        target._gsBase = L.extend({}, target.options);
      }
      if (target.setStyle) { target.setStyle({ weight: (target._gsBase.weight || 2) + 2 }); }
      if (!target.getTooltip()) {
        target.bindTooltip(function () { return tooltipContent(A, i, target._gsRole); },
          { sticky: !!sticky, direction: "top", opacity: 0.95 });
        target.openTooltip(e.latlng);
      }
    });
    layer.on("mouseout", function (e) {
      var target = e.layer;
      if (target.setStyle && target._gsBase) { target.setStyle({ weight: target._gsBase.weight }); }
    });
    self.layers.push(layer);
  };

  /* Point alerts of every rule in one supercluster index, so that clusters count every
   * visible alert once; each rule's layer in the layer control holds a proxy that adds
   * or removes its points (the index is rebuilt on a toggle, ~0.1 s per 50,000 points).
   * On the map: only the clusters and points of the current view (a few hundred). */
  var ClusterLayer = L.FeatureGroup.extend({
    initialize: function (A, maxZoom) {
      L.FeatureGroup.prototype.initialize.call(this, []);
      var icons = [];
      for (var k = 0; k < 8; k++) {
        icons.push(L.divIcon({ className: "gs-pt gs-s" + (k % 4) + (k >= 4 ? " gs-closed" : ""),
                               iconSize: [12, 12] }));
      }
      this._A = A;
      this._icons = icons;
      this._maxZoom = maxZoom;
      this._sets = [];
      this._shown = {};
      this._gsCount = 0;
    },
    addSet: function (spec) {
      var A = this._A, n = spec.i.length, features = new Array(n);
      for (var k = 0; k < n; k++) {
        var i = spec.i[k];
        features[k] = { type: "Feature", geometry: { type: "Point", coordinates: [spec.xy[2 * k], spec.xy[2 * k + 1]] },
                        properties: { i: i, s: A.sevIndex(i), c: CLOSED[A.status(i)] ? 1 : 0 } };
      }
      var set = { features: features, active: false };
      this._sets.push(set);
      return new RuleProxy(this, set, n);
    },
    toggle: function (set, active) {
      set.active = active;
      var self = this;
      if (!this._pending) {
        this._pending = true;
        setTimeout(function () { self._pending = false; self.rebuild(); }, 0);
      }
    },
    rebuild: function () {
      var all = [];
      this._sets.forEach(function (set) { if (set.active) { all = all.concat(set.features); } });
      this._index = new Supercluster({
        radius: 60, maxZoom: this._maxZoom, minPoints: 2,
        map: function (p) { return { s: p.s }; },
        reduce: function (acc, p) { if (p.s > acc.s) { acc.s = p.s; } }
      }).load(all);
      this._gsCount = all.length;
      this.clearLayers();
      this._shown = {};
      this._update();
    },
    onAdd: function (map) {
      L.FeatureGroup.prototype.onAdd.call(this, map);
      map.on("moveend", this._update, this);
      this._update();
    },
    onRemove: function (map) {
      map.off("moveend", this._update, this);
      this.clearLayers();
      this._shown = {};
      L.FeatureGroup.prototype.onRemove.call(this, map);
    },
    _update: function () {
      var map = this._map;
      if (!map || !this._index) { return; }
      var b = map.getBounds().pad(0.3), zoom = Math.min(Math.round(map.getZoom()), this._maxZoom);
      var west = b.getWest(), east = b.getEast();
      if (east - west >= 360) { west = -180; east = 180; }
      var items = this._index.getClusters([west, Math.max(b.getSouth(), -85), east,
                                           Math.min(b.getNorth(), 85)], zoom);
      var next = {}, k;
      for (k = 0; k < items.length; k++) {
        var item = items[k], p = item.properties, c = item.geometry.coordinates;
        var key = p.cluster ? "c" + p.cluster_id : "p" + p.i + "@" + c[0] + "," + c[1];
        var marker = this._shown[key];
        if (!marker) {
          if (p.cluster) {
            var count = p.point_count, size = count < 100 ? 30 : count < 1000 ? 36 : count < 10000 ? 42 : 48;
            marker = L.marker([c[1], c[0]], { keyboard: false, icon: L.divIcon({
              html: "<div><span>" + count + "</span></div>",  /* a number: no user text */
              className: "gs-cluster gs-s" + p.s, iconSize: [size, size] }) });
            marker._gsCluster = p.cluster_id;
            marker._gsLayer = this;
            marker._gsN = count;
          } else {
            marker = L.marker([c[1], c[0]], { keyboard: false, icon: this._icons[p.s + 4 * p.c] });
            marker._gsI = p.i;
          }
          this.addLayer(marker);
        }
        next[key] = marker;
      }
      for (k in this._shown) {
        if (!next[k]) { this.removeLayer(this._shown[k]); }
      }
      this._shown = next;
    },
    expand: function (marker, review) {
      var map = this._map, zoom = this._index.getClusterExpansionZoom(marker._gsCluster);
      if (zoom <= map.getMaxZoom() && zoom <= this._maxZoom) {
        map.setView(marker.getLatLng(), zoom);
      } else {  /* the same place at the deepest zoom: list the alerts */
        var leaves = this._index.getLeaves(marker._gsCluster, 200).map(function (f) { return f.properties.i; });
        review.openList(review.alerts, leaves, marker.getLatLng());
      }
    }
  });

  /* Sits in a rule's FeatureGroup: toggling the group adds or removes the rule's points. */
  var RuleProxy = L.Layer.extend({
    initialize: function (cluster, set, n) { this._cluster = cluster; this._set = set; this._gsCount = n; },
    onAdd: function () { this._cluster.toggle(this._set, true); },
    onRemove: function () { this._cluster.toggle(this._set, false); }
  });

  Review.prototype.points = function (A, spec, group) {
    if (!this.cluster) {
      this.cluster = new ClusterLayer(A, Math.round(this.map.getMaxZoom()) || 19);
      this.bindEvents(this.cluster, A, false);
      this.cluster.addTo(this.map);
    }
    var proxy = this.cluster.addSet(spec);
    proxy.addTo(group);
    this.counts.markers += spec.i.length;
    return proxy;
  };

  Review.prototype.shapes = function (A, spec, group, roles) {
    var renderer = this.renderer;
    var features = new Array(spec.i.length);
    for (var k = 0; k < spec.i.length; k++) {
      features[k] = { type: "Feature", properties: { k: k }, geometry: spec.geo[k] };
    }
    var layer = L.geoJSON({ type: "FeatureCollection", features: features }, {
      renderer: renderer,
      style: function (f) {
        var i = spec.i[f.properties.k];
        if (roles) { return roleStyle(roles[spec.r[f.properties.k]], null); }
        var s = A.sevIndex(i), closed = CLOSED[A.status(i)];
        var colour = A.data.colours[SEV[s]];
        return { color: colour, weight: 2, opacity: 0.9, fillColor: colour,
                 fillOpacity: closed ? 0.05 : 0.3, dashArray: closed ? "4 4" : null };
      },
      pointToLayer: function (f, latlng) {
        var i = spec.i[f.properties.k];
        var style = roles ? roleStyle(roles[spec.r[f.properties.k]], null)
                          : { color: "#fff", fillColor: A.data.colours[SEV[A.sevIndex(i)]], fillOpacity: 0.9 };
        return L.circleMarker(latlng, L.extend({ radius: 6, weight: 2, renderer: renderer }, style));
      },
      onEachFeature: function (f, layer) {
        var k = f.properties.k;
        tagLayers(layer, spec.i[k], roles ? roles[spec.r[k]] : null);
      }
    });
    this.bindEvents(layer, A, true);
    layer.addTo(group);
    if (roles) { this.counts.evidence += spec.i.length; } else { this.counts.shapes += spec.i.length; }
    layer._gsCount = spec.i.length;
    return layer;
  };

  Review.prototype.chips = function (spec) {
    var before = this.cfg.groups[spec.g], after = this.cfg.groups[spec.h], self = this;
    spec.items.forEach(function (item) {
      var bounds = item[3];
      if (item[1] && before) { L.imageOverlay(item[1], bounds, { opacity: 1 }).addTo(before); self.counts.chips++; }
      if (item[2] && after) { L.imageOverlay(item[2], bounds, { opacity: 1 }).addTo(after); self.counts.chips++; }
    });
  };

  Review.prototype.build = function (data) {
    var A = new Alerts(data, this.cfg), self = this, cfg = this.cfg;
    this.alerts = A;
    this.renderer = L.canvas({ padding: 0.2, tolerance: 4 });
    /* Evidence first: one canvas draws in the order paths were added, so the alerts lie
     * on top; when an evidence layer is switched on again, the alerts come back on top. */
    var evidenceGroups = [], alertShapes = [];
    (data.evidence || []).forEach(function (spec) {
      var group = cfg.groups[spec.g];
      if (group) { self.shapes(A, spec, group, data.roles || []); evidenceGroups.push(group); }
    });
    (data.layers || []).forEach(function (spec) {
      var group = cfg.groups[spec.g], t0 = performance.now();
      if (!group) { return; }
      if (spec.kind === "points") {
        self.points(A, spec, group);
      } else {
        alertShapes.push(self.shapes(A, spec, group, null));
      }
      self.timings[spec.kind + spec.g] = performance.now() - t0;
    });
    this.map.on("overlayadd", function (e) {
      if (evidenceGroups.indexOf(e.layer) >= 0) {
        alertShapes.forEach(function (layer) { if (self.map.hasLayer(layer)) { layer.bringToFront(); } });
      }
    });
    (data.chips || []).forEach(function (spec) { self.chips(spec); });
    this.fit(data.bounds);
    if (this.cluster) { this.cluster._pending = false; this.cluster.rebuild(); }
    this.timings.built = performance.now();
    this.finish();
  };

  /* Fit the data beside the summary panel rather than under it. */
  Review.prototype.fit = function (bounds) {
    if (!bounds) { return; }
    var size = this.map.getSize(), panel = this.cfg.summary && document.getElementById(this.cfg.summary);
    var left = panel && panel.offsetWidth && panel.offsetWidth < size.x * 0.45 ? panel.offsetWidth + 20 : 20;
    this.map.fitBounds(bounds, { paddingTopLeft: [left, 20], paddingBottomRight: [20, 20], animate: false });
  };

  Review.prototype.finish = function () {
    this.timings.ready = performance.now();
    this.ready = true;
    this.map.getContainer().setAttribute("data-geosup-ready", "1");
    api.ready = api.maps.every(function (r) { return r.ready; });
  };

  var api = {
    maps: [],
    ready: false,     /* every map's layers are built: the map is interactive */
    build: function (map, cfg) {
      var review = new Review(map, cfg);
      api.maps.push(review);
      api.ready = false;
      if (map.attributionControl) { map.attributionControl.setPrefix("Leaflet"); }
      review.panel(cfg.summary, "topleft");
      review.panel(cfg.legend, "bottomright");
      review.promise = decode(document.getElementById(cfg.data)).then(function (data) {
        review.timings.decoded = performance.now();
        review.build(data);
        return review;
      }).catch(function (err) {
        review.errors.push(String(err));
        review.finish();
        throw err;
      });
      return review;
    }
  };
  global.geosupReview = api;
})(window);
