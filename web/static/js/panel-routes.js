/* Hazmat route panel (危化品路线检查与规划): draw, upload (GPX/GeoJSON) or pick origin/destination,
 * choose the cargo, see the conflicts along the route and the compliant alternative beside it.
 *
 * Usage (wired by the page, after Leaflet and with web/static/css/panel-routes.css):
 *   RiskmapPanels.routes.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>,
 *   box(opts), placeBelow(panel, toggle), lang(), onLang(fn), ... } from the page (onemap.js), which holds the login
 *   token. The results are drawn again after a language switch (api.onLang).
 * Endpoints: GET /routes/cargo, POST /routes/check, POST /routes/plan (roles route_controller, planner,
 * emergency, admin). The 路线 Routes button shows only for a role whose `can.route_check` (GET /auth/me,
 * through api.can / api.onAccess) is not false; another role's login closes the panel and clears its drawing.
 * Starting one route input (draw, pick origin/destination, upload) drops the others and the result; a plan goes
 * between the origin and destination picked, else the first and last positions of the drawn or uploaded route,
 * and is drawn beside the checked route. Everything the panel draws is in its own pane 'om-routes' (z 460, above
 * the thematic layers); fitting leaves the open panel's part of the map free.
 * Offline: Leaflet only (vendored).
 */
(function () {
  'use strict';
  window.RiskmapPanels = window.RiskmapPanels || {};

  var COLORS = { route: '#1e64c8', compliant: '#27ae60', unrestricted: '#7f8c8d', forbidden: '#e60012', warning: '#ff8c00',
    point: '#333' };
  var VERDICT = { forbidden: '禁止通行 Forbidden', warning: '注意 Warning', allowed: '允许通行 Allowed',
    noroute: '无道路可达 No road route' };
  // The panel's own map pane: above the thematic layers' panes (om-polygons 410, om-lines 420, om-points 430,
  // om-highlight 450: onemap.js), below Leaflet's marker (600), tooltip (650) and popup (700) panes.
  var PANE = 'om-routes', PANE_Z = 460;
  var TARGET = { structure: '桥隧 Structure', water_zone: '水源保护区 Water zone', road: '道路限时 Road ban' };
  var CLASSES = ['1', '1.1', '1.2', '1.3', '1.4', '1.5', '1.6', '2.1', '2.2', '2.3', '3', '4.1', '4.2', '4.3', '5.1',
    '5.2', '6.1', '6.2', '7', '8', '9'];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }
  function km(m) { return (m / 1000).toFixed(m < 10000 ? 2 : 1) + ' km'; }
  function mins(s) { return Math.round(s / 60) + ' min'; }
  function latlngs(geom) { return (geom.coordinates || []).map(function (c) { return [c[1], c[0]]; }); }

  // The name of a conflict's rule in the page's language (api.lang(); the API gives rule.zh and rule.en).
  function ruleName(c, lang) {
    return (lang === 'en' ? c.rule.en : c.rule.zh) || c.rule.zh || c.rule.en;
  }
  function lonlat(p) { return [p.lng, p.lat]; }

  function init(map, api) {
    if (!map.getPane(PANE)) { map.createPane(PANE).style.zIndex = String(PANE_Z); }
    var drawn = L.featureGroup().addTo(map);       // every result on the map (what fit() fits)
    var checked = L.featureGroup().addTo(drawn);   // the checked route and its conflicts
    var planned = L.featureGroup().addTo(drawn);   // the plan: unrestricted and compliant routes, their conflicts
    var inputLayer = L.featureGroup().addTo(map);  // the route being drawn, the origin and destination picked
    var mode = null, vertices = [], origin = null, destination = null, uploaded = null;
    var res = {}, conflictLines = [];  // res: what #rt-out shows {busy, msg, check, plan}

    // The page (onemap.js) passes api = {token(), request(path, opts), json(path, opts), box(opts), ...}: one fetch
    // helper and one panel box with its toggle button for all panels.
    function json(path, opts) { opts = opts || {}; opts.who = 'route controller'; return api.json(path, opts); }

    // ---- panel and its toggle (api.box)
    var box = api.box({ className: 'rt-panel', position: 'topright', button: 'rt-toggle',
      title: '危化品路线 Hazmat routes', label: '路线 Routes', toggled: function (open) { if (open) { api.placeBelow(panel, toggle); loadCargo(); } },
      html:
      '<b>危化品路线 Hazmat routes</b> <span class="rt-muted">检查与合规规划 check &amp; plan</span>' +
      '<h4>货物 Cargo</h4>' +
      '<div class="rt-row"><label>UN 编号 UN number<input id="rt-un" list="rt-un-list" placeholder="1017"></label>' +
      '<label>或类别 or class<select id="rt-class"><option value="">—</option></select></label></div>' +
      '<datalist id="rt-un-list"></datalist>' +
      '<div class="rt-row"><label>数量（吨）Quantity (t)<input id="rt-qty" type="number" min="0" step="0.1"></label>' +
      '<label>出发时间（北京时间）Departure (China time, UTC+8)<input id="rt-dep" type="datetime-local"></label></div>' +
      '<h4>路线 Route</h4><div class="rt-mode">' +
      '<button type="button" id="rt-draw">绘制 Draw</button>' +
      '<button type="button" id="rt-od">起终点 Origin/destination</button>' +
      '<button type="button" id="rt-clear">清除 Clear</button></div>' +
      '<label>上传 Upload GPX / GeoJSON<input type="file" id="rt-file" accept=".gpx,.geojson,.json"></label>' +
      '<div id="rt-hint" class="rt-muted"></div>' +
      '<button type="button" id="rt-check">检查路线 Check route</button>' +
      '<button type="button" id="rt-plan">规划合规路线 Plan compliant route</button>' +
      '<div class="rt-legend rt-muted">' + [['route', '路线 route'], ['compliant', '合规 compliant'],
        ['unrestricted', '最短 unrestricted'], ['forbidden', '禁止 forbidden'], ['warning', '注意 warning']].map(function (k) {
        return '<span><i class="rt-' + k[0] + '" style="color:' + COLORS[k[0]] + '"></i>' + k[1] + '</span>';
      }).join(' ') + '</div>' +
      '<div id="rt-out"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;
    CLASSES.forEach(function (c) { $('rt-class').appendChild(el('option', { value: c }, c)); });
    // Times are China time (UTC+8), the zone of the rules' time windows, whatever the browser's zone.
    $('rt-dep').value = new Date(Date.now() + 8 * 3600000).toISOString().slice(0, 16);
    // The results follow the language switch (the rules' names).
    api.onLang(render);

    // ---- only for a role that may check and plan routes (the server checks each request all the same)
    function applyAccess() {
      var allowed = !api.can || api.can('route_check');
      toggle.hidden = !allowed;
      if (!allowed) {
        panel.setAttribute('hidden', '');
        $('rt-clear').click();  // (stops drawing or picking, removes the route and its result from the map)
      }
    }
    if (api.onAccess) { api.onAccess(applyAccess); }

    var cargoLoaded = false;
    function loadCargo() {
      if (cargoLoaded) { return; }
      json('/routes/cargo').then(function (d) {
        cargoLoaded = true;
        d.un_numbers.forEach(function (u) {
          $('rt-un-list').appendChild(el('option', { value: u.un_number },
            u.name_zh + ' ' + u.name_en + ' (' + u.hazard_class + ')'));
        });
      }).catch(failed);
    }

    // ---- drawing, picking, uploading: one route input at a time (starting one drops the others and the result)
    function hint(text) { $('rt-hint').textContent = text || ''; }
    function resetInput() {
      vertices = []; origin = destination = uploaded = null; $('rt-file').value = '';
      checked.clearLayers(); planned.clearLayers(); res = {}; render();
    }
    function setMode(m) {
      mode = mode === m ? null : m;
      if (mode) { resetInput(); }
      api.picking(!!mode);  // (while on, a click on a map feature is a vertex or end, not a feature's details)
      $('rt-draw').classList.toggle('rt-on', mode === 'draw');
      $('rt-od').classList.toggle('rt-on', mode === 'od');
      map.getContainer().style.cursor = mode ? 'crosshair' : '';
      hint(mode === 'draw' ? '单击添加折点，再次点“绘制”结束 Click to add vertices; click Draw again to finish' :
        mode === 'od' ? '单击起点，再单击终点 Click the origin, then the destination' : '');
      redrawInput();
    }
    function redrawInput() {
      inputLayer.clearLayers();
      var opts = { pane: PANE, interactive: false, color: COLORS.route };  // (clicks go on to the map)
      if (vertices.length) {
        L.polyline(vertices, L.extend({ weight: 4, dashArray: '6 4' }, opts)).addTo(inputLayer);
        vertices.forEach(function (v) { L.circleMarker(v, L.extend({ radius: 3 }, opts)).addTo(inputLayer); });
      }
      [[origin, '起 O'], [destination, '终 D']].forEach(function (p) {
        if (p[0]) {
          L.circleMarker(p[0], L.extend({}, opts, { radius: 7, color: COLORS.point, fillOpacity: 0.8 }))
            .bindTooltip(p[1], { permanent: true, direction: 'top', offset: [0, -6] }).addTo(inputLayer);
        }
      });
    }
    map.on('click', function (e) {
      if (mode === 'draw') { vertices.push(e.latlng); redrawInput(); }
      else if (mode === 'od') {
        if (!origin) { origin = e.latlng; } else { destination = e.latlng; setMode(null); }
        redrawInput();
      }
    });
    $('rt-draw').addEventListener('click', function () { setMode('draw'); });
    $('rt-od').addEventListener('click', function () { setMode('od'); });
    $('rt-clear').addEventListener('click', function () { resetInput(); setMode(null); });
    $('rt-file').addEventListener('change', function () {
      var f = this.files[0];
      if (!f) { return; }
      f.text().then(function (txt) {
        var up;
        if (/\.gpx$/i.test(f.name) || /^\s*<\?xml|<gpx/i.test(txt.slice(0, 200))) { up = { body: { gpx: txt } }; }
        else {
          try { up = { body: { route: JSON.parse(txt) } }; } catch (e) { failed(new Error('不是 GeoJSON Not GeoJSON: ' + e.message)); return; }
        }
        if (mode) { setMode(null); }
        vertices = []; origin = destination = null; redrawInput();
        uploaded = up; hint('已载入 Loaded ' + f.name); runCheck();
      });
    });

    // ---- requests
    function cargo() {
      var c = {}, un = $('rt-un').value.trim(), cls = $('rt-class').value, qty = $('rt-qty'), q = Number(qty.value);
      if (un) { c.un_number = un; }
      if (cls) { c.hazard_class = cls; }  // (with a UN number too: the server says when they do not match)
      if (qty.validity.badInput || (qty.value !== '' && !(isFinite(q) && q >= 0))) {
        throw new Error('数量须为不小于 0 的数（吨） Quantity must be a number of tonnes ≥ 0');
      }
      if (qty.value !== '') { c.quantity_t = q; }
      return c;
    }
    function departure() {
      var v = $('rt-dep').value;
      return v ? v + ':00+08:00' : null;
    }
    function routeInput() {
      if (uploaded) { return uploaded.body; }
      if (vertices.length >= 2) { return { route: { type: 'LineString', coordinates: vertices.map(lonlat) } }; }
      if (origin && destination) { return { origin: lonlat(origin), destination: lonlat(destination) }; }
      throw new Error('先绘制、上传或选择起终点 Draw, upload or pick origin/destination first');
    }
    // The plan's ends: the origin and destination picked, else the first and last positions of the drawn route or
    // of the uploaded one (as the server read it, with its check).
    function planEnds() {
      var line = origin && destination ? [lonlat(origin), lonlat(destination)] :
        vertices.length >= 2 ? vertices.map(lonlat) : uploaded && uploaded.line && uploaded.line.coordinates;
      if (!line || line.length < 2) { throw new Error('先绘制、上传路线或选择起终点 Draw or upload a route, or pick origin and destination first'); }
      return { origin: line[0].slice(0, 2), destination: line[line.length - 1].slice(0, 2) };
    }
    // POST the cargo, departure and build()'s fields; refused input (a thrown Error) is not sent.
    function send(path, build) {
      var body;
      try { body = L.extend({ cargo: cargo(), departure: departure() }, build()); } catch (e) { return Promise.reject(e); }
      if (mode) { setMode(null); }
      res.busy = true; res.msg = null; render();
      return json(path, { method: 'POST', body: JSON.stringify(body) }).then(function (r) { res.busy = false; return r; },
        function (e) { res.busy = false; throw e; });
    }
    function runCheck() {
      var up = uploaded;
      return send('/routes/check', routeInput).then(function (r) {
        checked.clearLayers(); planned.clearLayers();
        res = { check: r };
        if (up) { up.line = r.route; }
        drawRoute(checked, r.route, COLORS.route, '路线 Route');
        drawConflicts(checked, r.conflicts);
        render(); fit();
        return r;
      }).catch(function (e) { checked.clearLayers(); planned.clearLayers(); res = {}; return failed(e); });
    }
    function runPlan() {
      // an uploaded route not checked yet: check it first (the server reads the file, and the check gives its ends)
      if (uploaded && !uploaded.line) { return runCheck().then(function (r) { return r && runPlan(); }); }
      return send('/routes/plan', planEnds).then(function (r) {
        planned.clearLayers();  // (the checked route stays, beside the alternative)
        res.plan = r;
        if (r.unrestricted) {
          drawRoute(planned, r.unrestricted.geometry, COLORS.unrestricted, '最短（不考虑限制）Fastest, unrestricted', 4, '8 6');
          drawConflicts(planned, r.unrestricted.conflicts);
        }
        if (r.found) {
          drawRoute(planned, r.route.geometry, COLORS.compliant, '合规路线 Compliant route', 7);
          drawConflicts(planned, r.conflicts);
        }
        render(); fit();
        return r;
      }).catch(function (e) { planned.clearLayers(); res.plan = null; return failed(e); });
    }
    $('rt-check').addEventListener('click', runCheck);
    $('rt-plan').addEventListener('click', runPlan);

    // ---- results: #rt-out is drawn from res, again on a language switch
    function failed(e) { res.busy = false; res.msg = { kind: 'error', text: e.message }; render(); return null; }
    function render() {
      var out = $('rt-out'), r;
      out.textContent = '';
      api.placeBelow(panel, toggle);  // under the top-right controls, which may have changed with the role
      if (res.busy) { out.appendChild(el('div', { 'class': 'rt-muted' }, '计算中… Working…')); }
      if (res.msg) { out.appendChild(message(res.msg)); }
      if ((r = res.check)) {
        out.appendChild(el('h4', {}, '检查 Check'));
        out.appendChild(verdictLine(r.verdict, km(r.length_m) + ' · ' + r.rules_applied + ' 条规则 rules'));
        out.appendChild(conflictList(r.conflicts));
      }
      if ((r = res.plan)) {
        out.appendChild(el('h4', {}, '规划 Plan'));
        if (r.found) {
          out.appendChild(verdictLine(r.verdict, '合规路线 Compliant: ' + km(r.length_m) + ', ' + mins(r.time_s)));
          out.appendChild(el('div', {}, '比最短路线多 Extra vs fastest: ' + km(r.extra_length_m) + ', ' + mins(r.extra_time_s)));
          if (r.avoided.length) { out.appendChild(el('h4', {}, '已避开 Avoided')); out.appendChild(conflictList(r.avoided)); }
          if (r.conflicts.length) { out.appendChild(el('h4', {}, '注意 On the route')); out.appendChild(conflictList(r.conflicts)); }
        } else if (!r.unrestricted) {  // no path even without the rules (disconnected parts, one-way roads)
          out.appendChild(verdictLine('noroute', '不考虑限制也无法到达 Not reachable even without restrictions'));
          out.appendChild(message({ kind: 'note', text: r.reason }));
        } else {
          out.appendChild(verdictLine('forbidden', '无合规路线 No compliant route'));
          out.appendChild(message({ kind: 'note', text: r.reason }));
          if (r.blocked_by && r.blocked_by.length) {
            out.appendChild(el('h4', {}, '阻断 Blocked by'));
            out.appendChild(conflictList(r.blocked_by));
          }
        }
      }
    }
    // A message of the server (its description or reason, as it gives it) or of the panel, in a box of its own.
    function message(m) {
      var d = el('div', { 'class': 'rt-msg rt-msg-' + m.kind, role: m.kind === 'error' ? 'alert' : 'note' });
      d.appendChild(el('div', { 'class': 'rt-msg-title' }, m.kind === 'error' ? '出错 Error' : '说明 Details'));
      d.appendChild(el('div', {}, m.text));
      return d;
    }
    function drawRoute(group, geom, color, label, weight, dash) {
      if (!geom || !geom.coordinates || !geom.coordinates.length) { return; }
      L.polyline(latlngs(geom), { pane: PANE, color: color, weight: weight || 5, opacity: 0.85, dashArray: dash })
        .bindTooltip(label).addTo(group);
    }
    function drawConflicts(group, list) {
      (list || []).forEach(function (c) {
        if (!c.geometry) { return; }
        var line = L.polyline(latlngs(c.geometry), { pane: PANE, color: COLORS[c.verdict], weight: 10, opacity: 0.9 })
          .bindPopup(function () { return popupText(c); }, autoPanClear()).addTo(group);
        conflictLines.push([c, line]);
      });
    }
    function popupText(c) {
      var div = el('div');
      div.appendChild(el('b', {}, c.target_name || TARGET[c.target]));
      [TARGET[c.target] + (c.target_class ? ' · ' + c.target_class : ''), ruleName(c, api.lang()),
       '距起点 From start ' + km(c.distance_m) + (c.eta ? ' · 预计 ETA ' + c.eta.slice(11, 16) : ''),
       VERDICT[c.verdict], c.rule_source ? '依据 Source: ' + c.rule_source : ''].forEach(function (t) {
        if (t) { div.appendChild(el('div', {}, t)); }
      });
      return div;
    }
    function verdictLine(verdict, text) {
      var d = el('div');
      d.appendChild(el('span', { 'class': 'rt-verdict rt-' + verdict }, VERDICT[verdict]));
      d.appendChild(document.createTextNode(' ' + text));
      return d;
    }
    function conflictList(list) {
      var box = el('div');
      if (!list.length) { box.appendChild(el('div', { 'class': 'rt-muted' }, '无冲突 No conflicts')); }
      list.forEach(function (c) {
        var row = el('div', { 'class': 'rt-conflict' });
        row.appendChild(el('span', { 'class': 'rt-verdict rt-' + c.verdict }, c.verdict === 'forbidden' ? '禁' : '注'));
        row.appendChild(document.createTextNode(' ' + km(c.distance_m) + ' · ' + (c.target_name || TARGET[c.target]) +
          ' — ' + ruleName(c, api.lang()) + (c.unblocks === true ? ' （解除此项即可通行 lifting this alone opens a route）' : '')));
        row.addEventListener('click', function () {
          var hit = conflictLines.filter(function (p) { return p[0] === c; })[0];
          if (hit) { fit(hit[1].getBounds(), { maxZoom: 15 }); hit[1].openPopup(); }
        });
        box.appendChild(row);
      });
      return box;
    }
    // Pixels to keep clear at the map's right edge: the open panel covers them (its left edge to the map's right).
    function autoPanClear() {  // (a popup opened auto-pans clear of the panel)
      var p = api.padBeside(panel);
      return { autoPanPaddingTopLeft: p.paddingTopLeft, autoPanPaddingBottomRight: p.paddingBottomRight };
    }
    // Fit the results (or bounds) into the part of the map the panel leaves free.
    function fit(bounds, opts) {
      conflictLines = conflictLines.filter(function (p) { return map.hasLayer(p[1]); });
      bounds = bounds || drawn.getBounds();
      if (bounds.isValid()) { api.fitBeside(bounds, panel, opts); }
    }
  }

  window.RiskmapPanels.routes = { init: init };
})();
