/* geosup review map: builds the alert and evidence layers of a folium map from data blocks.
 *
 * Safety: every user-sourced string reaches the page through textContent (never
 * innerHTML); the data blocks are JSON in non-executable <script type="application/json">
 * (or gzip + base64 in <script type="application/octet-stream">).
 * Speed: the point alerts of every rule in one shared supercluster index (only the
 * clusters of the view become markers), one canvas GeoJSON layer per rule for polygon
 * alerts; popups, tooltips, details and evidence geometries are built or decoded on
 * first use, not per alert up front.
 * Evidence: drawn for the alert whose popup is open (its own track, station, nearest
 * approach, parcels…), and per domain for the rules switched on (all of it when there
 * are few features, else what lies in the view once zoomed in).
 */
(function (global) {
  "use strict";

  var SEV = ["low", "medium", "high", "critical"];
  var CLOSED = { dismissed: true, rectified: true };
  var NO_DECOMPRESS = "geosup:no-decompression-stream";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function has(obj, key) { return Object.prototype.hasOwnProperty.call(obj, key); }

  function decode(node) {
    if (!node) { return Promise.reject(new Error("geosup: data block missing")); }
    if (node.getAttribute("data-encoding") === "gzip+base64") {
      if (typeof DecompressionStream === "undefined") {
        return Promise.reject(new Error(NO_DECOMPRESS));
      }
      var bin = atob(node.textContent.replace(/\s+/g, ""));
      var bytes = new Uint8Array(bin.length);
      for (var k = 0; k < bin.length; k++) { bytes[k] = bin.charCodeAt(k); }
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      return new Response(stream).text().then(JSON.parse);
    }
    try { return Promise.resolve(JSON.parse(node.textContent)); } catch (err) { return Promise.reject(err); }
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

  /* Evidence stored column by column (see review_map._evidence_columns): an object per
   * alert again, or the raw text of evidence that is not a JSON object. */
  function evidenceColumn(spec) {
    if (!spec) { return function () { return null; }; }
    var rank = new Int32Array(spec.i.length), seen = {};
    for (var j = 0; j < spec.i.length; j++) {
      var s = spec.i[j];
      if (s >= 0) { rank[j] = seen[s] || 0; seen[s] = rank[j] + 1; }
    }
    return function (j) {
      var s = spec.i[j];
      if (s === undefined) { return null; }
      if (s < 0) { return has(spec.r || {}, String(j)) ? spec.r[String(j)] : null; }
      var keys = spec.k[s], cols = spec.c[s], obj = {};
      for (var k = 0; k < keys.length; k++) { obj[keys[k]] = cols[k][rank[j]]; }
      return obj;
    };
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
    ["key", "sub"].forEach(function (name) { self[name] = column(null); });
    Object.keys(data.cols).forEach(function (name) { self[name] = column(data.cols[name]); });
    /* Where each alert is drawn: its rule's layer group and its place (filled by build). */
    this.group = new Int32Array(data.n).fill(-1);
    this.where = new Array(data.n);
  }
  Alerts.prototype.hasText = function (i) {
    return !this.textIds.length || !!this.chunks[Math.floor(i / this.chunk)];
  };
  Alerts.prototype.loadText = function (i) {
    var k = Math.floor(i / this.chunk), self = this;
    if (!this.loading[k]) {
      this.loading[k] = decode(document.getElementById(this.textIds[k])).then(function (t) {
        var cols = {};
        LATE.forEach(function (name) {
          cols[name] = name === "evidence" ? evidenceColumn((t.cols || {}).evidence) : column((t.cols || {})[name]);
        });
        self.chunks[k] = cols;
      });
    }
    return this.loading[k];
  };
  Alerts.prototype.label = function (group, key) {
    var table = this.L[group] || {};
    return has(table, key) ? table[key] : key;
  };
  Alerts.prototype.sevIndex = function (i) {
    var k = SEV.indexOf(this.severity(i));
    return k < 0 ? 1 : k;
  };
  Alerts.prototype.ruleTitle = function (i) {
    var code = this.rule(i), titles = this.data.rule_titles || {};
    return has(titles, code) ? titles[code] : code;
  };
  /* The heading: the alert's own title; in Chinese the rule's Chinese title (the
   * stored title, English text written by the check, then follows as a subtitle). */
  Alerts.prototype.titleOf = function (i) {
    if (this.data.head === "rule" && this.ruleTitle(i) && this.ruleTitle(i) !== this.rule(i)) {
      return this.ruleTitle(i);
    }
    return this.title(i) || this.ruleTitle(i) || this.alert_id(i) || "";
  };
  Alerts.prototype.subjectOf = function (i) {
    var type = this.subject_type(i);
    return [type ? this.label("subject", type) : null, this.subject_id(i)].filter(Boolean).join(" ");
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

  /* Identifiers and codes are not measurements: no thousands separator, not "measured". */
  var ID_KEY = /(?:^|[_.])(?:id|ids|no|code|band|year|years)$/i;

  function showValue(A, v, lang, path) {
    if (typeof v === "number") { return ID_KEY.test(path) ? String(v) : fmtNumber(v, lang); }
    if (v === null) { return "—"; }
    if (typeof v === "boolean") { return A.label("ui", v ? "yes" : "no"); }
    if (Array.isArray(v) && v.every(function (x) { return x === null || typeof x !== "object"; })) {
      return clip(v.map(function (x) { return x === null ? "—" : String(x); }).join(", "), 400);
    }
    if (typeof v === "object") { return clip(JSON.stringify(v, null, 1), 600); }
    return clip(v, 400);
  }

  /* A key as the reader sees it: as stored in English, translated in Chinese. */
  function keyLabel(A, path, section) {
    if (A.data.lang !== "zh") { return path; }
    var parts = path.split(".");
    if (section === "thresholds" && parts[0] === "thresholds" && parts.length > 1) { parts.shift(); }
    return parts.map(function (p) { return A.label("key", p); }).join(" · ");
  }

  function rowsTable(rows) {
    var table = el("table", "gs-kv");
    rows.forEach(function (r) {
      var tr = el("tr"), th = el("th", null, r[0]);
      if (r[2]) { th.title = r[2]; }
      tr.appendChild(th);
      tr.appendChild(el("td", null, r[1]));
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
    var sections = { measured: [], thresholds: [], evidence: [] };
    rows.forEach(function (r) {
      var name = /(?:^|\.)thresholds?\.|toleran|limit/i.test(r[0]) ? "thresholds"
        : (typeof r[1] === "number" && !ID_KEY.test(r[0])) ? "measured" : "evidence";
      sections[name].push([keyLabel(A, r[0], name), showValue(A, r[1], lang, r[0]), r[0]]);
    });
    var LIMIT = 80, shown = 0;
    ["measured", "thresholds", "evidence"].forEach(function (name) {
      var list = sections[name];
      if (!list.length || shown >= LIMIT) { return; }
      var part = list.slice(0, LIMIT - shown);
      shown += part.length;
      root.appendChild(el("div", "gs-h", A.label("ui", name)));
      root.appendChild(rowsTable(part));
    });
    if (rows.length > shown) {
      root.appendChild(el("div", "gs-more", "… " + (rows.length - shown) + " " + A.label("ui", "more")));
    }
  }

  function badges(A, i) {
    var box = el("div", "gs-badges");
    box.appendChild(el("span", "gs-badge gs-s" + A.sevIndex(i), A.label("severity", A.severity(i))));
    var status = A.status(i);
    if (status) { box.appendChild(el("span", "gs-badge gs-status", A.label("status", status))); }
    return box;
  }

  function popupContent(A, i) {
    var lang = A.data.lang, root = el("div", "gs-pop");
    root.appendChild(el("div", "gs-title", A.titleOf(i)));
    var sub = A.sub(i);
    if (sub) { root.appendChild(el("div", "gs-subtitle", sub)); }
    root.appendChild(badges(A, i));
    var key = A.key(i);
    if (key) { root.appendChild(el("div", "gs-key", key)); }
    var rows = [];
    function add(name, value) {
      if (value === null || value === undefined || value === "") { return; }
      rows.push([A.label("field", name), value]);
    }
    add("rule", A.ruleTitle(i) === A.rule(i) ? A.rule(i) : A.ruleTitle(i) + " (" + A.rule(i) + ")");
    add("domain", A.label("domain", A.domain(i)));
    add("subject", A.subjectOf(i));
    add("unit", A.unit(i));
    add("observed_at", A.observed_at(i));
    add("period", A.period(i));
    var amount = A.amount_at_risk(i);
    if (amount !== null && amount !== undefined) {
      add("amount_at_risk", fmtNumber(amount, lang, 2) + (A.data.currency ? " " + A.data.currency : ""));
    }
    var score = A.score(i);
    if (score !== null && score !== undefined) { add("score", fmtNumber(score, lang, 3)); }
    var status = A.status(i), by = [A.status_by(i), A.status_at(i)].filter(Boolean).join(", ");
    add("status", status ? A.label("status", status) + (by ? " (" + by + ")" : "") : null);
    add("status_note", A.status_note(i));
    root.appendChild(rowsTable(rows));
    /* The detail sentence is the alert's stored text (written by the check, in the
     * check's language): shown as stored, in every page language. */
    var detail = A.detail(i);
    if (detail) { root.appendChild(el("div", "gs-detail", clip(detail, 2000))); }
    if (A.hasText(i)) {
      evidenceSections(A, i, root, lang);
      root.appendChild(el("div", "gs-id", A.label("field", "alert_id") + A.label("ui", "colon") + A.alert_id(i)));
    } else {
      root.appendChild(el("div", "gs-more", "…"));
    }
    return root;
  }

  function tooltipContent(A, i, role, others, stacked) {
    var root = el("div", "gs-tip");
    if (role) {
      root.appendChild(el("div", "gs-role", A.label("ui", "evidence_layer") + A.label("ui", "colon") + A.label("role", role)
        + (others ? " (+" + others + ")" : "")));
    }
    root.appendChild(el("div", "gs-title", A.titleOf(i)));
    var line = el("div", "gs-sub");
    line.appendChild(badges(A, i));
    root.appendChild(line);
    var who = [A.subjectOf(i), A.unit(i)].filter(Boolean).join(" · ");
    if (who) { root.appendChild(el("div", "gs-sub", who)); }
    var key = A.key(i);
    if (key) { root.appendChild(el("div", "gs-key", key)); }
    if (stacked) { root.appendChild(el("div", "gs-more", A.label("ui", "stacked").replace("{n}", String(stacked)))); }
    return root;
  }

  function tagLayers(layer, i, role) {
    layer._gsI = i;
    layer._gsRole = role;
    if (layer.eachLayer) { layer.eachLayer(function (sub) { tagLayers(sub, i, role); }); }
  }

  /* Leaflet path options of an evidence role (the legend draws the same styles). */
  /* strong: the selected alert's evidence; faint: the context of the rules shown. */
  function pathStyle(st, kind, strong, faint) {
    st = st || {};
    var fillOpacity = st.fillOpacity === undefined ? 0.2 : st.fillOpacity;
    var o = { color: st.color || "#495057", weight: (st.weight || 2) + (strong ? 1 : 0),
              opacity: (st.opacity || 0.95) * (faint ? 0.6 : 1), dashArray: st.dash || null,
              fill: kind !== 1, fillColor: st.fill || st.color || "#495057",
              fillOpacity: fillOpacity * (faint && kind !== 0 ? 0.7 : 1) };
    if (kind === 0) { o.radius = (st.radius || 5) + (strong ? 1 : 0); }
    return o;
  }

  function featureLayer(f, st, renderer, strong, faint) {
    var o = pathStyle(st, f.t, strong, faint);
    o.renderer = renderer;
    if (f.t === 0) { return L.circleMarker(f.ll, o); }
    if (f.t === 1) { return L.polyline(f.ll, o); }
    return L.polygon(f.ll, o);
  }

  /* Evidence geometries: [x, y] points, delta-coded lines, polygons as lists of rings. */
  function decodeLine(c) {
    var out = new Array(c.length / 2), x = 0, y = 0;
    for (var k = 0; k < c.length; k += 2) { x += c[k]; y += c[k + 1]; out[k / 2] = [y / 1e6, x / 1e6]; }
    return out;
  }

  function boundsOf(t, ll) {
    if (t === 0) { return [ll[0], ll[1], ll[0], ll[1]]; }
    var s = 90, w = 180, n = -90, e = -180, rings = t === 1 ? [ll] : ll;
    rings.forEach(function (ring) {
      ring.forEach(function (p) {
        if (p[0] < s) { s = p[0]; } if (p[0] > n) { n = p[0]; }
        if (p[1] < w) { w = p[1]; } if (p[1] > e) { e = p[1]; }
      });
    });
    return [s, w, n, e];
  }

  var RAD = Math.PI / 180, MAX_LAT = 85.0511287798;
  function mercX(lon) { return lon / 360 + 0.5; }
  function mercY(lat) {
    var s = Math.sin(Math.max(Math.min(lat, MAX_LAT), -MAX_LAT) * RAD);
    return 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI);
  }

  /* Every polygon alert of one rule as ONE path of the canvas renderer: coordinates
   * decoded once into typed arrays (Web Mercator), projected per view by a scale and an
   * offset, drawn as one path per style (a shape smaller than 3 px as a dot), hit-tested
   * on bounding boxes, then rings. Tens of thousands of polygons stay interactive
   * without a Leaflet layer each; a click reports every polygon under it. */
  var PolygonBatch = L.Path.extend({
    options: { interactive: true, weight: 2, fill: true },
    initialize: function (A, spec, options) {
      L.setOptions(this, options);
      var n = spec.i.length, nRings = 0, nPts = 0, k, p, r, j;
      for (k = 0; k < n; k++) {
        for (p = 0; p < spec.c[k].length; p++) {
          nRings += spec.c[k][p].length;
          for (r = 0; r < spec.c[k][p].length; r++) { nPts += spec.c[k][p][r].length / 2; }
        }
      }
      var xy = new Float64Array(2 * nPts), ringStart = new Int32Array(nRings + 1);
      var alertRing = new Int32Array(n + 1), bb = new Float64Array(4 * n);
      var ri = 0, pt = 0, all = [Infinity, Infinity, -Infinity, -Infinity];
      var byStyle = [[], [], [], [], [], [], [], []];
      for (k = 0; k < n; k++) {
        alertRing[k] = ri;
        var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
        for (p = 0; p < spec.c[k].length; p++) {
          for (r = 0; r < spec.c[k][p].length; r++) {
            var c = spec.c[k][p][r], x = 0, y = 0;
            ringStart[ri++] = pt;
            for (j = 0; j < c.length; j += 2) {
              x += c[j]; y += c[j + 1];
              var mx = mercX(x / 1e6), my = mercY(y / 1e6);
              xy[2 * pt] = mx; xy[2 * pt + 1] = my; pt++;
              if (mx < x0) { x0 = mx; } if (mx > x1) { x1 = mx; }
              if (my < y0) { y0 = my; } if (my > y1) { y1 = my; }
            }
          }
        }
        bb[4 * k] = x0; bb[4 * k + 1] = y0; bb[4 * k + 2] = x1; bb[4 * k + 3] = y1;
        if (x0 < all[0]) { all[0] = x0; } if (y0 < all[1]) { all[1] = y0; }
        if (x1 > all[2]) { all[2] = x1; } if (y1 > all[3]) { all[3] = y1; }
        var i = spec.i[k];
        byStyle[A.sevIndex(i) + (CLOSED[A.status(i)] ? 4 : 0)].push(k);
      }
      alertRing[n] = ri;
      ringStart[ri] = pt;
      this._A = A; this._ids = spec.i; this._xy = xy; this._ringStart = ringStart;
      this._alertRing = alertRing; this._bb = bb; this._all = all; this._byStyle = byStyle;
      this._gsBatch = true;
    },
    _project: function () {
      var map = this._map, scale = 256 * Math.pow(2, map.getZoom()), o = map.getPixelOrigin();
      this._scale = scale; this._ox = o.x; this._oy = o.y;
      var b = this._all;
      this._pxBounds = L.bounds([b[0] * scale - o.x, b[1] * scale - o.y], [b[2] * scale - o.x, b[3] * scale - o.y]);
    },
    _update: function () {},
    _updatePath: function () {
      var ren = this._renderer;
      if (!ren._drawing || !this._map) { return; }
      var ctx = ren._ctx, s = this._scale, ox = this._ox, oy = this._oy, xy = this._xy, bb = this._bb;
      var rs = this._ringStart, ar = this._alertRing, vb = ren._redrawBounds || ren._bounds;
      var vx0 = vb.min.x - 4, vy0 = vb.min.y - 4, vx1 = vb.max.x + 4, vy1 = vb.max.y + 4;
      var width = this._map.getZoom() >= 14 ? 2 : 1, colours = this._A.data.colours;
      var order = [4, 5, 6, 7, 0, 1, 2, 3];  /* closed first, then by severity: worst on top */
      ctx.lineJoin = "round";
      ctx.lineWidth = width;
      for (var q = 0; q < order.length; q++) {
        var g = order[q], list = this._byStyle[g];
        if (!list.length) { continue; }
        var colour = colours[SEV[g % 4]], closed = g >= 4, fillAlpha = closed ? 0.05 : 0.3;
        ctx.fillStyle = colour;
        ctx.strokeStyle = colour;
        ctx.setLineDash(closed ? [4, 4] : []);
        /* one path per polygon: a canvas fills many small paths far faster than one
         * path of many thousand rings */
        for (var m = 0; m < list.length; m++) {
          var k = list[m], X0 = bb[4 * k] * s - ox, Y0 = bb[4 * k + 1] * s - oy;
          var X1 = bb[4 * k + 2] * s - ox, Y1 = bb[4 * k + 3] * s - oy;
          if (X1 < vx0 || X0 > vx1 || Y1 < vy0 || Y0 > vy1) { continue; }
          if (X1 - X0 < 3 && Y1 - Y0 < 3) {  /* smaller than 3 px: a dot */
            ctx.globalAlpha = closed ? 0.4 : 0.9;
            ctx.fillRect((X0 + X1) / 2 - 1.5, (Y0 + Y1) / 2 - 1.5, 3, 3);
            continue;
          }
          ctx.beginPath();
          for (var ring = ar[k]; ring < ar[k + 1]; ring++) {
            var a = rs[ring], e = rs[ring + 1];
            ctx.moveTo(xy[2 * a] * s - ox, xy[2 * a + 1] * s - oy);
            for (var j = a + 1; j < e; j++) { ctx.lineTo(xy[2 * j] * s - ox, xy[2 * j + 1] * s - oy); }
            ctx.closePath();
          }
          ctx.globalAlpha = fillAlpha;
          ctx.fill("evenodd");
          ctx.globalAlpha = 0.9;
          ctx.stroke();
        }
      }
      ctx.globalAlpha = 1;
      ctx.setLineDash([]);
    },
    /* Alerts whose polygon holds a layer point (a dot, when drawn as one, within 3 px). */
    hits: function (p) {
      var s = this._scale, mx = (p.x + this._ox) / s, my = (p.y + this._oy) / s, tol = 3 / s;
      var bb = this._bb, xy = this._xy, rs = this._ringStart, ar = this._alertRing, out = [];
      for (var k = 0, n = this._ids.length; k < n; k++) {
        var x0 = bb[4 * k], y0 = bb[4 * k + 1], x1 = bb[4 * k + 2], y1 = bb[4 * k + 3];
        if (mx < x0 - tol || mx > x1 + tol || my < y0 - tol || my > y1 + tol) { continue; }
        var inside = (x1 - x0) < tol && (y1 - y0) < tol;
        for (var ring = ar[k]; !inside || ring < 0; ring++) {
          if (ring >= ar[k + 1]) { break; }
          for (var a = rs[ring], e = rs[ring + 1], j = a, i = e - 1; j < e; i = j++) {
            var xj = xy[2 * j], yj = xy[2 * j + 1], xi = xy[2 * i], yi = xy[2 * i + 1];
            if (((yj > my) !== (yi > my)) && (mx < (xi - xj) * (my - yj) / (yi - yj) + xj)) { inside = !inside; }
          }
        }
        if (inside) { out.push(this._ids[k]); }
      }
      return out;
    },
    _containsPoint: function (p) {
      var A = this._A, hits = this.hits(p);
      this._gsHits = hits;
      this._gsI = hits.length ? hits.reduce(function (best, i) { return A.sevIndex(i) > A.sevIndex(best) ? i : best; }) : undefined;
      return hits.length > 0;
    }
  });

  function Evidence(review, cfg) {
    this.review = review;
    this.ids = cfg.ev || [];
    this.chunk = cfg.chunk || 1e9;
    this.spec = cfg.evidence || { roles: [], styles: {}, groups: {}, draw_max: 5000 };
    this.loading = {};
    this.byAlert = {};
    this.loadedAll = false;
  }
  Evidence.prototype.style = function (role) {
    var s = this.spec.styles || {};
    return has(s, role) ? s[role] : null;
  };
  Evidence.prototype.load = function (k) {
    var self = this, id = this.ids[k];
    if (!id) { return Promise.resolve([]); }
    if (!this.loading[k]) {
      this.loading[k] = decode(document.getElementById(id)).then(function (d) {
        var roles = self.spec.roles || [], out = [];
        for (var j = 0; j < d.a.length; j++) {
          var t = d.t[j], c = d.c[j];
          var ll = t === 0 ? [c[1] / 1e6, c[0] / 1e6] : t === 1 ? decodeLine(c) : c.map(decodeLine);
          var f = { a: Array.isArray(d.a[j]) ? d.a[j] : [d.a[j]], r: roles[d.r[j]], t: t, ll: ll };
          f.bb = boundsOf(t, ll);
          out.push(f);
          f.a.forEach(function (i) { (self.byAlert[i] = self.byAlert[i] || []).push(f); });
        }
        return out;
      });
    }
    return this.loading[k];
  };
  Evidence.prototype.forAlert = function (i) {
    var self = this;
    return this.load(Math.floor(i / this.chunk)).then(function () { return self.byAlert[i] || []; });
  };
  /* Every feature, per domain; a point drawn for alerts of several blocks (a station)
   * becomes one feature naming all of them. */
  Evidence.prototype.all = function () {
    var self = this, A = this.review.alerts;
    if (!this.allPromise) {
      var jobs = [];
      for (var k = 0; k < this.ids.length; k++) { jobs.push(this.load(k)); }
      this.allPromise = Promise.all(jobs).then(function (blocks) {
        var perDomain = {}, points = {};
        blocks.forEach(function (list) {
          list.forEach(function (f) {
            var dom = A.domain(f.a[0]), merged = f;
            if (f.t === 0) {
              var key = dom + "|" + f.r + "|" + f.ll[0] + "," + f.ll[1];
              if (points[key]) { points[key].a = points[key].a.concat(f.a); return; }
              merged = points[key] = { a: f.a.slice(), r: f.r, t: f.t, ll: f.ll, bb: f.bb };
            }
            (perDomain[dom] = perDomain[dom] || []).push(merged);
          });
        });
        self.perDomain = perDomain;
        self.loadedAll = true;
        return perDomain;
      });
    }
    return this.allPromise;
  };

  /* The evidence of one domain for the rules switched on: all of it up to draw_max
   * features, else the features in view (none, with a note, while still too many). */
  var EvidenceLayer = L.Layer.extend({
    initialize: function (review, domain) {
      this._r = review;
      this._dom = domain;
      this._drawn = L.layerGroup();
      this._gsCount = 0;
      this._hidden = 0;
      this._large = false;
    },
    onAdd: function (map) {
      var self = this;
      this._active = true;
      this._drawn.addTo(map);
      map.on("moveend", this._moved, this);
      this._r.evidence.all().then(function () { self.redraw(); })
        .catch(function (err) { self._r.errors.push(String(err)); });
    },
    onRemove: function (map) {
      this._active = false;
      map.off("moveend", this._moved, this);
      this._drawn.clearLayers();
      map.removeLayer(this._drawn);
      this._gsCount = 0;
      this._hidden = 0;
      this._r.evidenceChanged();
    },
    _moved: function () { if (this._large) { this.redraw(); } },
    redraw: function () {
      var r = this._r, ev = r.evidence, map = this._map;
      if (!this._active || !ev.loadedAll || !map) { return; }
      var max = ev.spec.draw_max || 5000;
      var active = (ev.perDomain[this._dom] || []).filter(function (f) {
        return f.a.some(function (i) { return r.ruleOn(i); });
      });
      var show = active;
      this._large = active.length > max;
      this._hidden = 0;
      if (this._large) {
        var b = map.getBounds().pad(0.2), s = b.getSouth(), w = b.getWest(), n = b.getNorth(), e = b.getEast();
        show = active.filter(function (f) { return f.bb[0] <= n && f.bb[2] >= s && f.bb[1] <= e && f.bb[3] >= w; });
        if (show.length > max) { this._hidden = show.length; show = []; }
      }
      this._drawn.clearLayers();
      show.slice().sort(function (x, y) { return y.t - x.t; }).forEach(function (f) {
        var layer = featureLayer(f, ev.style(f.r), r.renderer, false, true);
        tagLayers(layer, f.a[0], f.r);
        layer._gsAlerts = f.a;
        this._drawn.addLayer(layer);
      }, this);
      this._gsCount = show.length;
      r.evidenceChanged();
    }
  });

  function Review(map, cfg) {
    this.map = map;
    this.cfg = cfg;
    this.ready = false;
    this.evidenceReady = false;
    this.counts = { markers: 0, shapes: 0, evidence: 0, chips: 0 };
    this.layers = [];
    this.errors = [];
    this.evidenceLayers = [];
    this.alertShapes = [];
    this.batches = [];
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

  /* A message over the map instead of a blank page (e.g. no DecompressionStream). */
  Review.prototype.fail = function (text) {
    var box = el("div", "gs-fail", text);
    box.setAttribute("role", "alert");
    this.map.getContainer().appendChild(box);
  };

  Review.prototype.ruleOn = function (i) {
    var g = this.alerts.group[i];
    return g < 0 || !this.cfg.groups[g] || this.map.hasLayer(this.cfg.groups[g]);
  };

  /* One popup per map, opened at the clicked place: markers of the cluster layer are
   * rebuilt as the view changes, so a popup must not belong to one of them. Opening an
   * alert also selects it: its own evidence is drawn above everything else. */
  Review.prototype.openAlert = function (A, i, latlng) {
    var self = this;
    if (!this.popup) {
      this.popup = L.popup({ maxWidth: 440, minWidth: 260, maxHeight: 420 });
    }
    var popup = this.popup;
    popup._gsI = i;
    this.panelPadding(popup);
    popup.setLatLng(latlng).setContent(function () {
      var root = popupContent(A, i), zoom = el("button", "gs-zoom", A.label("ui", "zoom_to"));
      zoom.type = "button";
      zoom.addEventListener("click", function () { self.zoomToSelection(); });
      root.insertBefore(zoom, root.children[1] || null);
      return root;
    }).openOn(this.map);
    if (!A.hasText(i)) {
      A.loadText(i).then(function () {
        if (popup._gsI === i && popup.isOpen()) { popup.update(); }
      }).catch(function (err) { self.errors.push(String(err)); });
    }
    this.select(i);
  };

  /* Popups pan clear of the summary (top left) and the legend (bottom right). */
  Review.prototype.panelPadding = function (popup) {
    var size = this.map.getSize(), tl = [20, 20], br = [20, 20];
    var summary = this.cfg.summary && document.getElementById(this.cfg.summary);
    var legend = this.cfg.legend && document.getElementById(this.cfg.legend);
    if (summary && summary.offsetWidth && summary.offsetWidth < size.x * 0.45) { tl[0] = summary.offsetWidth + 20; }
    if (legend && legend.offsetWidth && legend.offsetWidth < size.x * 0.45) { br[0] = legend.offsetWidth + 20; }
    popup.options.autoPanPaddingTopLeft = L.point(tl);
    popup.options.autoPanPaddingBottomRight = L.point(br);
  };

  Review.prototype.zoomToSelection = function () {
    var i = this.selected, where = i === null || i === undefined ? null : this.alerts.where[i];
    var bounds = this.selection && this.selection.getLayers().length ? this.selection.getBounds() : null;
    if (where && where.kind === "point") {
      bounds = bounds ? bounds.extend(where.latlng) : L.latLngBounds([where.latlng, where.latlng]);
    }
    if (!bounds || !bounds.isValid()) { return; }
    var size = this.map.getSize(), summary = this.cfg.summary && document.getElementById(this.cfg.summary);
    var left = summary && summary.offsetWidth < size.x * 0.45 ? summary.offsetWidth + 30 : 30;
    this.map.closePopup();
    this.map.fitBounds(bounds, { paddingTopLeft: [left, 30], paddingBottomRight: [30, 30], maxZoom: 17, animate: false });
  };

  Review.prototype.openList = function (A, items, latlng) {
    var self = this, root = el("div", "gs-pop gs-list");
    items = items.slice().sort(function (a, b) { return A.sevIndex(b) - A.sevIndex(a) || a - b; });
    root.appendChild(el("div", "gs-h", A.label("ui", "here").replace("{n}", String(items.length))));
    items.forEach(function (i) {
      var row = el("div", "gs-item gs-s" + A.sevIndex(i));
      row.setAttribute("data-alert", String(i));
      row.appendChild(el("span", "gs-badge gs-s" + A.sevIndex(i), A.label("severity", A.severity(i))));
      row.appendChild(el("span", null, " " + A.titleOf(i)));
      var who = A.subjectOf(i);
      if (who) { row.appendChild(el("span", "gs-note", " · " + who)); }
      row.addEventListener("click", function () { self.openAlert(A, i, latlng); });
      root.appendChild(row);
    });
    if (!this.listPopup) { this.listPopup = L.popup({ maxWidth: 440, maxHeight: 360 }); }
    this.panelPadding(this.listPopup);
    this.listPopup.setLatLng(latlng).setContent(root).openOn(this.map);
  };

  Review.prototype.clearSelection = function () {
    if (this.selection) { this.map.removeLayer(this.selection); }
    this.selection = null;
    this.selected = null;
    this.map.getContainer().removeAttribute("data-geosup-selected");
  };

  Review.prototype.select = function (i) {
    var self = this, A = this.alerts, where = A.where[i];
    this.clearSelection();
    var group = L.featureGroup();
    group._gsCount = 0;
    this.bindEvents(group, A, true, true);
    this.selection = group;
    this.selected = i;
    group.addTo(this.map);
    var outline = null, colour = this.cfg.selected || "#212529";
    if (where && where.kind === "point") {
      outline = L.circleMarker(where.latlng, { radius: 13, color: colour, weight: 3, fill: false,
                                               renderer: this.selRenderer, interactive: false });
    } else if (where && where.kind === "shape") {
      var ll = where.spec.c[where.k].map(function (poly) { return poly.map(decodeLine); });
      outline = L.polygon(ll.length === 1 ? ll[0] : ll, { renderer: this.selRenderer, interactive: false,
                                                          color: colour, weight: 3, opacity: 1, fill: false });
    }
    this.evidence.forAlert(i).then(function (features) {
      if (self.selection !== group) { return; }
      features.slice().sort(function (x, y) { return y.t - x.t; }).forEach(function (f) {
        var st = self.evidence.style(f.r) || {};
        if (f.t === 1) {  /* a white casing under the selected alert's lines */
          group.addLayer(L.polyline(f.ll, { color: "#ffffff", weight: (st.weight || 2) + 5, opacity: 0.9,
                                            interactive: false, renderer: self.selRenderer }));
        }
        var layer = featureLayer(f, st, self.selRenderer, true);
        tagLayers(layer, i, f.r);
        layer._gsAlerts = f.a;
        group.addLayer(layer);
        group._gsCount++;
      });
      if (outline) { group.addLayer(outline); }
      self.map.getContainer().setAttribute("data-geosup-selected", String(i));
    }).catch(function (err) {
      self.errors.push(String(err));
      if (outline && self.selection === group) { group.addLayer(outline); }
    });
  };

  /* Every alert polygon under a point (the canvas only reports the topmost one). */
  Review.prototype.shapesAt = function (latlng) {
    var p = this.map.latLngToLayerPoint(latlng), map = this.map, out = [];
    this.batches.forEach(function (batch) { if (map.hasLayer(batch)) { out = out.concat(batch.hits(p)); } });
    return out;
  };

  Review.prototype.bindEvents = function (layer, A, sticky, transient) {
    var self = this;
    layer.on("click", function (e) {
      var target = e.layer, latlng = e.latlng || (target.getLatLng && target.getLatLng());
      if (target._gsCluster !== undefined && target._gsLayer) {
        target._gsLayer.expand(target, self);
        return;
      }
      if (target._gsI === undefined) { return; }
      var list = target._gsAlerts;
      if (target._gsBatch) { list = self.shapesAt(e.latlng); }
      if (list && list.length > 1) { self.openList(A, list, latlng); }
      else { self.openAlert(A, target._gsI, latlng); }
    });
    layer.on("mouseover mousemove", function (e) {
      if (e.layer._gsBatch) { self.batchTooltip(A, e.layer, e.latlng); }
    });
    layer.on("mouseout", function (e) {
      if (e.layer._gsBatch && self.tip) { self.map.removeLayer(self.tip); self.tipI = undefined; }
    });
    layer.on("mouseover", function (e) {
      var target = e.layer, i = target._gsI;
      if (target._gsBatch) { return; }
      if (i === undefined || !target.bindTooltip) { return; }
      if (target.setStyle && !target._gsBase) {
        target._gsBase = L.extend({}, target.options);
      }
      if (target.setStyle) { target.setStyle({ weight: (target._gsBase.weight || 2) + 2 }); }
      if (!target.getTooltip() && !target._gsNoTip) {
        var others = target._gsAlerts ? target._gsAlerts.length - 1 : 0;
        target.bindTooltip(function () { return tooltipContent(A, i, target._gsRole, others); },
          { sticky: !!sticky, direction: "top", opacity: 0.95 });
        target.openTooltip(e.latlng);
      }
    });
    layer.on("mouseout", function (e) {
      var target = e.layer;
      if (target._gsBatch) { return; }
      if (target.setStyle && target._gsBase) { target.setStyle({ weight: target._gsBase.weight }); }
    });
    if (!transient) { self.layers.push(layer); }
  };

  /* The tooltip of the polygon under the mouse (one tooltip, moved along). */
  Review.prototype.batchTooltip = function (A, batch, latlng) {
    var i = batch._gsI;
    if (i === undefined) { return; }
    if (!this.tip) { this.tip = L.tooltip({ direction: "top", opacity: 0.95, offset: [0, -10] }); }
    if (this.tipI !== i) {
      this.tipI = i;
      var stacked = Math.max(this.shapesAt(latlng).length - 1, 0);
      this.tip.setContent(tooltipContent(A, i, null, 0, stacked));
    }
    this.tip.setLatLng(latlng);
    if (!this.map.hasLayer(this.tip)) { this.tip.addTo(this.map); }
  };

  /* Point alerts of every rule in one supercluster index (one point per alert, so that
   * cluster numbers count alerts); each rule's layer in the layer control holds a proxy
   * that adds or removes its points (the index is rebuilt on a toggle, ~0.1 s per
   * 50,000 points). On the map: only the clusters and points of the current view. */
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
    for (var k = 0; k < spec.i.length; k++) {
      A.group[spec.i[k]] = spec.g;
      A.where[spec.i[k]] = { kind: "point", latlng: [spec.xy[2 * k + 1], spec.xy[2 * k]] };
    }
    var proxy = this.cluster.addSet(spec);
    proxy.addTo(group);
    this.counts.markers += spec.i.length;
    return proxy;
  };

  /* Polygon alerts of one rule (see PolygonBatch); where[i] keeps what a selection needs. */
  Review.prototype.shapes = function (A, spec, group) {
    for (var k = 0; k < spec.i.length; k++) {
      A.group[spec.i[k]] = spec.g;
      A.where[spec.i[k]] = { kind: "shape", spec: spec, k: k };
    }
    var batch = new PolygonBatch(A, spec, { renderer: this.renderer });
    var layer = L.featureGroup([batch]);
    this.bindEvents(layer, A, true);
    layer.addTo(group);
    this.counts.shapes += spec.i.length;
    layer._gsCount = spec.i.length;
    this.alertShapes.push(layer);
    this.batches.push(batch);
    return layer;
  };

  Review.prototype.chips = function (items) {
    var spec = this.cfg.chips, before = this.cfg.groups[spec.g], after = this.cfg.groups[spec.h], self = this;
    items.forEach(function (item) {
      var bounds = item[3];
      if (item[1] && before) { L.imageOverlay(item[1], bounds, { opacity: 1 }).addTo(before); self.counts.chips++; }
      if (item[2] && after) { L.imageOverlay(item[2], bounds, { opacity: 1 }).addTo(after); self.counts.chips++; }
    });
  };

  /* After an evidence layer changed: alerts back on top (one canvas draws in the order
   * paths were added), counts and the "zoom in" note updated. */
  Review.prototype.evidenceChanged = function () {
    var self = this, drawn = 0, hidden = 0;
    this.evidenceLayers.forEach(function (layer) { drawn += layer._gsCount; hidden += layer._hidden; });
    this.counts.evidence = drawn;
    this.alertShapes.forEach(function (layer) { if (self.map.hasLayer(layer)) { layer.bringToFront(); } });
    var note = this.cfg.legend && document.querySelector("#" + this.cfg.legend + " [data-gs=evidence-note]");
    if (note) {
      note.textContent = hidden ? this.alerts.label("ui", "zoom_in").replace("{n}", hidden.toLocaleString()) : "";
    }
    if (!this.evidenceReady && this.evidenceLayers.every(function (l) { return !l._active || self.evidence.loadedAll; })) {
      this.evidenceReady = true;
      this.map.getContainer().setAttribute("data-geosup-evidence", "1");
    }
  };

  Review.prototype.build = function (data) {
    var A = new Alerts(data, this.cfg), self = this, cfg = this.cfg, map = this.map;
    this.alerts = A;
    this.renderer = L.canvas({ padding: 0.2, tolerance: 4 });
    /* the selected alert's evidence above the markers (600), below tooltips (650) */
    if (!map.getPane("gsSelection")) { map.createPane("gsSelection").style.zIndex = 610; }
    this.selRenderer = L.svg({ pane: "gsSelection", padding: 0.2 });
    this.evidence = new Evidence(this, cfg);
    (data.layers || []).forEach(function (spec) {
      var group = cfg.groups[spec.g], t0 = performance.now();
      if (!group) { return; }
      if (spec.kind === "points") { self.points(A, spec, group); } else { self.shapes(A, spec, group); }
      self.timings[spec.kind + spec.g] = performance.now() - t0;
    });
    var groups = (this.cfg.evidence || {}).groups || {};
    Object.keys(groups).forEach(function (dom) {
      var group = cfg.groups[groups[dom]];
      if (!group) { return; }
      var layer = new EvidenceLayer(self, dom);
      self.evidenceLayers.push(layer);
      layer.addTo(group);
    });
    var pending = null, notRules = {};
    Object.keys(groups).forEach(function (dom) { notRules[groups[dom]] = true; });
    if (cfg.chips) { notRules[cfg.chips.g] = notRules[cfg.chips.h] = true; }
    function ruleToggled(e) {
      var g = cfg.groups.indexOf(e.layer);
      if (g < 0 || notRules[g]) { return; }
      if (self.selected !== null && self.selected !== undefined && !self.ruleOn(self.selected)) { self.clearSelection(); }
      if (!pending) {
        pending = setTimeout(function () {
          pending = null;
          self.evidenceLayers.forEach(function (layer) { layer.redraw(); });
        }, 0);
      }
    }
    map.on("overlayadd overlayremove", ruleToggled);
    map.on("click", function () { self.clearSelection(); });
    if (cfg.chips && cfg.chips.block) {
      decode(document.getElementById(cfg.chips.block)).then(function (items) { self.chips(items); })
        .catch(function (err) { self.errors.push(String(err)); });
    }
    this.fit(data.bounds);
    if (this.cluster) { this.cluster._pending = false; this.cluster.rebuild(); }
    this.timings.built = performance.now();
    this.finish();
    if (!this.evidenceLayers.some(function (l) { return l._active; })) { this.evidenceChanged(); }
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
        review.fail(String(err && err.message) === NO_DECOMPRESS ? (cfg.msg || {}).decompress
                    : "geosup: " + String(err));
        review.evidenceReady = true;
        review.finish();
      });
      return review;
    }
  };
  global.geosupReview = api;
})(window);
