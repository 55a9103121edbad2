/* Hazmat route panel (危化品路线检查与规划): draw, upload (GPX/GeoJSON) or pick origin/destination,
 * choose the cargo, see the conflicts along the route and the compliant alternative beside it.
 *
 * Usage (wired by the page, after Leaflet and with web/static/css/panel-routes.css):
 *   RiskmapPanels.routes.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>,
 *   box(opts), ... } (onemap.js)
 *   from the page (onemap.js), which holds the login token.
 * Endpoints: GET /routes/cargo, POST /routes/check, POST /routes/plan (roles route_controller, planner,
 * emergency, admin). The 路线 Routes button shows only for a role whose `can.route_check` (GET /auth/me,
 * through api.can / api.onAccess) is not false; another role's login closes the panel and clears its drawing.
 * Offline: Leaflet only (vendored).
 */
(function () {
  'use strict';
  window.RiskmapPanels = window.RiskmapPanels || {};

  var COLORS = { route: '#1e64c8', compliant: '#27ae60', forbidden: '#e60012', warning: '#ff8c00', point: '#333' };
  var VERDICT = { forbidden: '禁止通行 Forbidden', warning: '注意 Warning', allowed: '允许通行 Allowed' };
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

  function init(map, api) {
    var layer = L.featureGroup().addTo(map);
    var mode = null, vertices = [], origin = null, destination = null, uploaded = null;

    // The page (onemap.js) passes api = {token(), request(path, opts), json(path, opts), box(opts), ...}: one fetch
    // helper and one panel box with its toggle button for all panels.
    var token = api.token, request = api.request;
    function json(path, opts) { opts = opts || {}; opts.who = 'route controller'; return api.json(path, opts); }

    // ---- panel and its toggle (api.box)
    var box = api.box({ className: 'rt-panel', position: 'topright', button: 'rt-toggle',
      title: '危化品路线 Hazmat routes', label: '路线 Routes', toggled: function (open) { if (open) { loadCargo(); } },
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
      '<div class="rt-legend rt-muted"><span style="background:' + COLORS.route + '"></span>路线 route' +
      '<span style="background:' + COLORS.compliant + '"></span>合规 compliant' +
      '<span style="background:' + COLORS.forbidden + '"></span>禁止 forbidden' +
      '<span style="background:' + COLORS.warning + '"></span>注意 warning</div>' +
      '<div id="rt-out"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;
    CLASSES.forEach(function (c) { $('rt-class').appendChild(el('option', { value: c }, c)); });
    // Times are China time (UTC+8), the zone of the rules' time windows, whatever the browser's zone.
    $('rt-dep').value = new Date(Date.now() + 8 * 3600000).toISOString().slice(0, 16);


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
      }).catch(function (e) { showError(e); });
    }

    // ---- drawing and picking
    function hint(text) { $('rt-hint').textContent = text || ''; }
    function setMode(m) {
      mode = mode === m ? null : m;
      api.picking(!!mode);  // (while on, a click on a map feature is a vertex or end, not a feature's details)
      $('rt-draw').classList.toggle('rt-on', mode === 'draw');
      $('rt-od').classList.toggle('rt-on', mode === 'od');
      map.getContainer().style.cursor = mode ? 'crosshair' : '';
      if (mode === 'draw') { vertices = []; uploaded = null; hint('单击添加折点，再次点“绘制”结束 Click to add vertices; click Draw again to finish'); }
      else if (mode === 'od') { origin = destination = null; hint('单击起点，再单击终点 Click the origin, then the destination'); }
      else { hint(''); }
      redrawInput();
    }
    var inputLayer = L.featureGroup().addTo(map);
    function redrawInput() {
      inputLayer.clearLayers();
      if (vertices.length) {
        L.polyline(vertices, { color: COLORS.route, weight: 4, dashArray: '6 4' }).addTo(inputLayer);
        vertices.forEach(function (v) { L.circleMarker(v, { radius: 3, color: COLORS.route }).addTo(inputLayer); });
      }
      [[origin, '起 O'], [destination, '终 D']].forEach(function (p) {
        if (p[0]) { L.circleMarker(p[0], { radius: 7, color: COLORS.point, fillOpacity: 0.8 }).bindTooltip(p[1], { permanent: true }).addTo(inputLayer); }
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
    $('rt-clear').addEventListener('click', function () {
      vertices = []; origin = destination = null; uploaded = null; $('rt-file').value = '';
      layer.clearLayers(); setMode(null); $('rt-out').textContent = '';
    });
    $('rt-file').addEventListener('change', function () {
      var f = this.files[0];
      if (!f) { return; }
      f.text().then(function (txt) {
        if (/\.gpx$/i.test(f.name) || /^\s*<\?xml|<gpx/i.test(txt.slice(0, 200))) { uploaded = { gpx: txt }; }
        else {
          try { uploaded = { route: JSON.parse(txt) }; } catch (e) { showError(new Error('不是 GeoJSON Not GeoJSON: ' + e.message)); return; }
        }
        vertices = []; hint('已载入 Loaded ' + f.name); runCheck();
      });
    });

    // ---- requests
    function cargo() {
      var c = {}, un = $('rt-un').value.trim(), cls = $('rt-class').value, q = $('rt-qty').value;
      if (un) { c.un_number = un; } else if (cls) { c.hazard_class = cls; }
      if (q !== '') { c.quantity_t = parseFloat(q); }
      return c;
    }
    function departure() {
      var v = $('rt-dep').value;
      return v ? v + ':00+08:00' : null;
    }
    function drawnRoute() {
      if (vertices.length < 2) { return null; }
      return { type: 'LineString', coordinates: vertices.map(function (v) { return [v.lng, v.lat]; }) };
    }
    function runCheck() {
      var body = { cargo: cargo(), departure: departure() };
      if (uploaded) { Object.assign(body, uploaded); }
      else if (drawnRoute()) { body.route = drawnRoute(); }
      else if (origin && destination) { body.origin = [origin.lng, origin.lat]; body.destination = [destination.lng, destination.lat]; }
      else { showError(new Error('先绘制、上传或选择起终点 Draw, upload or pick origin/destination first')); return; }
      if (mode) { setMode(null); }
      busy();
      json('/routes/check', { method: 'POST', body: JSON.stringify(body) }).then(function (r) {
        layer.clearLayers();
        drawRoute(r.route, COLORS.route, '路线 Route');
        drawConflicts(r.conflicts);
        var out = $('rt-out'); out.textContent = '';
        out.appendChild(verdictLine(r.verdict, km(r.length_m) + ' · ' + r.rules_applied + ' 条规则 rules'));
        out.appendChild(conflictList(r.conflicts));
        fit();
      }).catch(showError);
    }
    function runPlan() {
      var o = origin, d = destination;
      if ((!o || !d) && vertices.length >= 2) { o = vertices[0]; d = vertices[vertices.length - 1]; }
      if (!o || !d) { showError(new Error('先选择起终点 Pick origin and destination first')); return; }
      if (mode) { setMode(null); }
      busy();
      json('/routes/plan', { method: 'POST', body: JSON.stringify({
        origin: [o.lng, o.lat], destination: [d.lng, d.lat], cargo: cargo(), departure: departure() }) }).then(function (r) {
        layer.clearLayers();
        var out = $('rt-out'); out.textContent = '';
        if (r.unrestricted) {
          drawRoute(r.unrestricted.geometry, '#7f8c8d', '最短（不考虑限制）Fastest, unrestricted');
          drawConflicts(r.unrestricted.conflicts);
        }
        if (r.found) {
          drawRoute(r.route.geometry, COLORS.compliant, '合规路线 Compliant route', 7);
          drawConflicts(r.conflicts);
          out.appendChild(verdictLine(r.verdict, '合规路线 Compliant: ' + km(r.length_m) + ', ' + mins(r.time_s)));
          out.appendChild(el('div', {}, '比最短路线多 Extra vs fastest: ' + km(r.extra_length_m) + ', ' + mins(r.extra_time_s)));
          if (r.avoided.length) { out.appendChild(el('h4', {}, '已避开 Avoided')); out.appendChild(conflictList(r.avoided)); }
          if (r.conflicts.length) { out.appendChild(el('h4', {}, '注意 On the route')); out.appendChild(conflictList(r.conflicts)); }
        } else {
          out.appendChild(verdictLine('forbidden', '无合规路线 No compliant route'));
          out.appendChild(el('div', { 'class': 'rt-error' }, r.reason));
          if (r.blocked_by && r.blocked_by.length) {
            out.appendChild(el('h4', {}, '阻断 Blocked by'));
            out.appendChild(conflictList(r.blocked_by));
          }
        }
        fit();
      }).catch(showError);
    }
    $('rt-check').addEventListener('click', runCheck);
    $('rt-plan').addEventListener('click', runPlan);

    // ---- results
    function busy() { $('rt-out').textContent = '计算中… Working…'; }
    function showError(e) { var out = $('rt-out'); out.textContent = ''; out.appendChild(el('div', { 'class': 'rt-error' }, e.message)); }
    function drawRoute(geom, color, label, weight) {
      if (!geom || !geom.coordinates || !geom.coordinates.length) { return; }
      L.polyline(latlngs(geom), { color: color, weight: weight || 5, opacity: 0.85 }).bindTooltip(label).addTo(layer);
    }
    var conflictLines = [];
    function drawConflicts(list) {
      (list || []).forEach(function (c) {
        if (!c.geometry) { return; }
        var line = L.polyline(latlngs(c.geometry), { color: COLORS[c.verdict], weight: 10, opacity: 0.9 })
          .bindPopup(popupText(c)).addTo(layer);
        conflictLines.push([c, line]);
      });
    }
    function popupText(c) {
      var div = el('div');
      div.appendChild(el('b', {}, c.target_name || TARGET[c.target]));
      [TARGET[c.target] + (c.target_class ? ' · ' + c.target_class : ''), c.rule.zh, c.rule.en,
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
          ' — ' + c.rule.zh + (c.unblocks === true ? ' （解除此项即可通行 lifting this alone opens a route）' : '')));
        row.addEventListener('click', function () {
          var hit = conflictLines.filter(function (p) { return p[0] === c; })[0];
          if (hit) { map.fitBounds(hit[1].getBounds(), { maxZoom: 15 }); hit[1].openPopup(); }
        });
        box.appendChild(row);
      });
      return box;
    }
    function fit() {
      conflictLines = conflictLines.filter(function (p) { return layer.hasLayer(p[1]); });
      if (layer.getLayers().length) { map.fitBounds(layer.getBounds(), { padding: [20, 20] }); }
    }
  }

  window.RiskmapPanels.routes = { init: init };
})();
