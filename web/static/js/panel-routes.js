/* Hazmat route panel (危化品路线检查与规划): draw, upload (GPX/GeoJSON) or pick origin/destination,
 * choose the cargo, see the conflicts along the route and the compliant alternative beside it.
 *
 * Usage (wired by the page, after Leaflet and with web/static/css/panel-routes.css):
 *   RiskmapPanels.routes.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>,
 *   box(opts), placeBelow(panel, toggle), lang(), onLang(fn), ... } from the page (onemap.js), which holds the login
 *   token. The results are drawn again after a language switch (api.onLang).
 * Tabs: 检查规划 Check (GET /routes/cargo, POST /routes/check, POST /routes/plan) and 已登记路线 Stored routes
 * (GET /routes/stored/check?day=, /collections/hazmat_routes/items/{id}) for `can.route_check` (route_controller,
 * planner, emergency, admin); 规则 Rules (GET /routes/rules) for `can.route_data` (those and editors), edited with
 * `can.route_rules_edit` (editor, admin: PUT/POST/DELETE /routes/rules, POST /routes/rules/reset). The 路线 Routes
 * button shows for route_check or route_data (GET /auth/me through api.can / api.onAccess); a role with neither
 * closes the panel and clears its drawing.
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
  var TABS = { check: '检查规划 Check', rules: '规则 Rules', stored: '已登记路线 Stored routes' };
  // A plan's origin or destination moved farther than this to its road node is said, and drawn (a dashed line).
  var SNAP_NOTE_M = 50, ENDS = { origin: ['起点', 'Origin'], destination: ['终点', 'Destination'] };
  // A rule's code lists by target (the server refuses another target's lists), each with the layer field whose codes
  // (GET /api/layers) name it; ADR tunnel categories are the letters A–E.
  var LISTS = { structure: [['structure_classes', '桥隧等级 Structure classes', 'restricted_structures', 'structure_class'],
    ['adr_categories', 'ADR 隧道类别 ADR tunnel categories']],
    water_zone: [['zone_levels', '保护区级别 Zone levels', 'water_source_zones', 'zone_level']],
    road: [['road_classes', '道路等级 Road classes', 'roads', 'road_class']] };
  var WEEKDAYS = ['一 Mon', '二 Tue', '三 Wed', '四 Thu', '五 Fri', '六 Sat', '日 Sun'];
  var CLASSES = ['1', '1.1', '1.2', '1.3', '1.4', '1.5', '1.6', '2.1', '2.2', '2.3', '3', '4.1', '4.2', '4.3', '5.1',
    '5.2', '6.1', '6.2', '7', '8', '9'];

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }
  function km(m) { return (m / 1000).toFixed(m < 10000 ? 2 : 1) + ' km'; }
  function metres(m) { return m < 1000 ? Math.round(m) + ' m' : km(m); }
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
    var res = {}, conflictLines = {};  // res: what #rt-out shows {busy, msg, check, plan}; conflictLines: conflictKey → line

    // The page (onemap.js) passes api = {token(), request(path, opts), json(path, opts), box(opts), ...}: one fetch
    // helper and one panel box with its toggle button for all panels.
    function json(path, opts) { opts = opts || {}; opts.who = 'route controller'; return api.json(path, opts); }

    // ---- panel and its toggle (api.box)
    var box = api.box({ className: 'rt-panel', position: 'topright', button: 'rt-toggle',
      title: '危化品路线 Hazmat routes', label: '路线 Routes', toggled: function (open) { if (open) { showTab(tab); } },
      html:
      '<b>危化品路线 Hazmat routes</b> <span class="rt-muted">检查与合规规划 check &amp; plan</span>' +
      '<div class="rt-tabs">' + Object.keys(TABS).map(function (t) {
        return '<button type="button" data-tab="' + t + '">' + TABS[t] + '</button>';
      }).join('') + '</div>' +
      '<div id="rt-tab-check">' +
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
        ['unrestricted', '最快（不考虑限制）fastest, unrestricted'], ['forbidden', '禁止 forbidden'], ['warning', '注意 warning']].map(function (k) {
        return '<span><i class="rt-' + k[0] + '" style="color:' + COLORS[k[0]] + '"></i>' + k[1] + '</span>';
      }).join(' ') + '</div>' +
      '<div id="rt-out"></div></div>' +
      '<div id="rt-tab-rules" hidden><div id="rt-rules-tools">' +
      '<button type="button" id="rt-rule-add">新增规则 Add rule</button>' +
      '<button type="button" id="rt-rules-reset">恢复默认 Reset to defaults</button></div>' +
      '<form id="rt-rule-form" hidden></form><div id="rt-rules-msg"></div><div id="rt-rules"></div></div>' +
      '<div id="rt-tab-stored" hidden><div class="rt-row"><label>日期 Day<input type="date" id="rt-day"></label>' +
      '<label>&nbsp;<button type="button" id="rt-stored-load">检查 Check</button></label></div>' +
      '<div id="rt-stored"></div></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;
    CLASSES.forEach(function (c) { $('rt-class').appendChild(el('option', { value: c }, c)); });
    // Times are China time (UTC+8), the zone of the rules' time windows, whatever the browser's zone.
    $('rt-dep').value = localInput(Date.now());
    $('rt-day').value = $('rt-dep').value.slice(0, 10);
    // The results follow the language switch (the rules' names).
    api.onLang(function () { render(); renderRules(); renderStored(); });

    // ---- tabs: check & plan and the stored routes for route_check, the rules for route_data (edited with
    // route_rules_edit); the 路线 Routes button for either (the server checks each request all the same)
    var tab = 'check', allowed = {}, editable = false;
    function tabButton(t) { return panel.querySelector('.rt-tabs [data-tab="' + t + '"]'); }
    function showTab(t) {
      tab = t;
      Object.keys(TABS).forEach(function (k) { $('rt-tab-' + k).hidden = k !== t; tabButton(k).classList.toggle('rt-on', k === t); });
      if (panel.hidden) { return; }
      api.placeBelow(panel, toggle);
      if (t === 'check') { loadCargo(); }
      else if (t === 'rules' && !rules.list) { loadRules(); }
      else if (t === 'stored' && !stored.data && !stored.busy) { loadStored(); }
    }
    Object.keys(TABS).forEach(function (t) { tabButton(t).addEventListener('click', function () { showTab(t); }); });
    function applyAccess() {
      function can(k) { return !api.can || api.can(k); }
      allowed = { check: can('route_check'), rules: can('route_data'), stored: can('route_check') };
      editable = can('route_rules_edit');
      Object.keys(TABS).forEach(function (t) { tabButton(t).hidden = !allowed[t]; });
      toggle.hidden = !allowed.check && !allowed.rules;
      rules = {}; stored = {}; storedLayer.clearLayers(); closeForm(); renderRules(); renderStored();  // (the new role's)
      if (toggle.hidden) {
        panel.setAttribute('hidden', '');
        $('rt-clear').click();  // (stops drawing or picking, removes the route and its result from the map)
      }
      var first = Object.keys(TABS).filter(function (t) { return allowed[t]; })[0];
      showTab(allowed[tab] || !first ? tab : first);  // (the tab open stays while the role may use it)
    }

    var cargoLoaded = false;
    function loadCargo() {
      loadCodes().catch(failed);  // (the conflicts' classes by the registry's labels)
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
        var up, bad;
        if (/\.gpx$/i.test(f.name) || /^\s*<\?xml|<gpx/i.test(txt.slice(0, 200))) { up = { body: { gpx: txt } }; }
        else {
          try { up = { body: { route: JSON.parse(txt) } }; } catch (e) { bad = e; }
        }
        if (mode) { setMode(null); }
        vertices = []; origin = destination = null; redrawInput();
        if (bad) {  // nothing to send: the previous route, its hint and result go (as with a GPX the server refuses)
          resetInput(); hint('');
          failed(new Error('不是 GeoJSON Not GeoJSON (' + f.name + '): ' + bad.message));
          return;
        }
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
        drawConflicts(checked, r.conflicts, 'check');
        render(); fit();
        return r;
      }).catch(function (e) { checked.clearLayers(); planned.clearLayers(); res = {}; return failed(e); });
    }
    function runPlan() {
      // an uploaded route not checked yet: check it first (the server reads the file, and the check gives its ends)
      if (uploaded && !uploaded.line) { return runCheck().then(function (r) { return r && runPlan(); }); }
      var ends;
      return send('/routes/plan', function () { return (ends = planEnds()); }).then(function (r) {
        planned.clearLayers();  // (the checked route stays, beside the alternative)
        res.plan = r;
        if (r.unrestricted) {
          drawRoute(planned, r.unrestricted.geometry, COLORS.unrestricted, '最快（不考虑限制）Fastest, unrestricted', 4, '8 6');
          drawConflicts(planned, r.unrestricted.conflicts, 'unrestricted');
        }
        if (r.found) {
          drawRoute(planned, r.route.geometry, COLORS.compliant, '合规路线 Compliant route', 7);
          drawConflicts(planned, r.conflicts, 'plan');
        }
        // an end moved to its road node: a thin dashed line from the point sent to where the route starts or ends
        var line = (r.found ? r.route.geometry : r.unrestricted && r.unrestricted.geometry || {}).coordinates;
        Object.keys(ENDS).forEach(function (k) {
          var at = line && line[k === 'origin' ? 0 : line.length - 1];
          if (at && r[k + '_snap_m'] > SNAP_NOTE_M) {
            L.polyline([[ends[k][1], ends[k][0]], [at[1], at[0]]], { pane: PANE, interactive: false, color: COLORS.point,
              weight: 2, dashArray: '4 4', className: 'rt-snap-line' }).addTo(planned);
          }
        });
        render(); fit();
        return r;
      }).catch(function (e) { planned.clearLayers(); res.plan = null; return failed(e); });
    }
    $('rt-check').addEventListener('click', runCheck);
    $('rt-plan').addEventListener('click', runPlan);

    // ---- 规则 Rules: GET /routes/rules; editors PUT (also the 启用 Active box), POST, DELETE and POST /routes/rules/reset.
    // Code lists are typed comma-separated (the server validates them); each has a select of the known codes.
    var rules = {}, codes = null, editing = null;  // rules: {list, msg}; codes: {list field: {code: {zh, en}}}
    function loadCodes() {
      return codes ? Promise.resolve() : json('/api/layers').then(function (d) {
        codes = { adr_categories: {} };
        'ABCDE'.split('').forEach(function (c) { codes.adr_categories[c] = { zh: 'ADR ' + c, en: 'ADR ' + c }; });
        Object.keys(LISTS).forEach(function (t) {
          LISTS[t].forEach(function (f) {
            var layer = f[2] && d.layers.filter(function (l) { return l.id === f[2]; })[0];
            var field = layer && layer.fields.filter(function (x) { return x.name === f[3]; })[0];
            if (f[2]) { codes[f[0]] = (field && field.codes) || {}; }
          });
        });
      });
    }
    // A change of the rules leaves the stored routes' conflicts (route_conflicts) as last computed: said with it.
    var RECOMPUTE = '；已登记路线的冲突待重新计算（riskmap analyze roads） Stored routes\' conflicts to be recomputed (riskmap analyze roads)';
    function loadRules(msg) {
      return Promise.all([loadCodes(), json('/routes/rules')]).then(function (r) { rules = { list: r[1], msg: msg }; renderRules(); })
        .catch(rulesFailed);
    }
    function rulesFailed(e) {  // (the message box is under the form's Save button while the form is open)
      rules.msg = { kind: 'error', text: e.message }; renderRules();
      $('rt-rules-msg').scrollIntoView({ block: 'nearest' });
    }
    function pick(o) { return (api.lang() === 'en' ? o.en || o.name_en : o.zh || o.name_zh) || o.zh || o.name_zh; }
    function codeName(k, c) { return codes && codes[k] && codes[k][c] && pick(codes[k][c]); }  // the registry's label
    function codeLabel(k, c) {  // the registry's label and the code (the label alone when it holds the code)
      var t = codeName(k, c);
      return !t ? c : t.indexOf(c) >= 0 ? t : t + ' (' + c + ')';
    }
    function hm(t) { return t ? t.slice(0, 5) : ''; }
    function ruleSummary(r) {
      var on = LISTS[r.target].filter(function (f) { return r[f[0]]; }).map(function (f) {
        return r[f[0]].map(function (c) { return codeLabel(f[0], c); }).join(', ');
      }).join('; ');
      return ['货物 Cargo: ' + r.cargo_classes.join(', '), TARGET[r.target] + (on ? ': ' + on : ''),
        r.min_quantity_t != null ? '≥ ' + api.fmtNum(r.min_quantity_t, 3) + ' t' : '',
        r.ban_start || r.ban_end ? (hm(r.ban_start) || '00:00') + '–' + (hm(r.ban_end) || '24:00') : '全天 all day',
        r.weekdays ? '周 Days: ' + r.weekdays.map(function (d) { return WEEKDAYS[d - 1]; }).join(', ') : ''
      ].filter(Boolean).join(' · ');
    }
    function button(text, cls, fn) {
      var b = el('button', { type: 'button', 'class': cls }, text);
      b.addEventListener('click', fn);
      return b;
    }
    function renderRules() {
      var list = $('rt-rules');
      list.textContent = ''; $('rt-rules-msg').textContent = '';
      $('rt-rules-tools').hidden = !editable;
      if (rules.msg) { $('rt-rules-msg').appendChild(message(rules.msg)); }
      (rules.list || []).forEach(function (r) {
        var row = el('div', { 'class': 'rt-rule' + (r.active ? '' : ' rt-inactive'), 'data-id': r.id }), tools = el('div');
        row.appendChild(el('span', { 'class': 'rt-verdict rt-' + r.verdict }, VERDICT[r.verdict]));
        row.appendChild(el('b', {}, ' ' + pick(r)));
        row.appendChild(el('div', {}, ruleSummary(r)));
        if (r.source) { row.appendChild(el('div', { 'class': 'rt-muted rt-source', title: r.source }, '依据 Source: ' + r.source)); }
        if (editable) {
          var on = el('label', { 'class': 'rt-check' }), box = on.appendChild(el('input', { type: 'checkbox', 'class': 'rt-rule-active' }));
          box.checked = r.active;
          on.appendChild(document.createTextNode(' 启用 Active'));
          box.addEventListener('change', function () { saveRule(r.id, L.extend({}, r, { active: box.checked })); });
          tools.appendChild(on);
          tools.appendChild(button('编辑 Edit', 'rt-rule-edit', function () { openForm(r); }));
          tools.appendChild(button('删除 Delete', 'rt-rule-delete', function () {
            if (!window.confirm('删除规则 Delete rule: ' + pick(r) + '?')) { return; }
            json('/routes/rules/' + r.id, { method: 'DELETE' }).then(function () {
              if (editing && editing.id === r.id) { closeForm(); }
              return loadRules({ kind: 'note', text: '已删除 Deleted: ' + pick(r) + RECOMPUTE });
            }).catch(rulesFailed);
          }));
        } else {
          tools.appendChild(el('span', { 'class': 'rt-muted' }, r.active ? '启用 Active' : '停用 Inactive'));
        }
        row.appendChild(tools);
        list.appendChild(row);
      });
    }
    function saveRule(id, body) {
      return json(id ? '/routes/rules/' + id : '/routes/rules', { method: id ? 'PUT' : 'POST', body: JSON.stringify(body) })
        .then(function (r) { if (editing && editing.id === id) { closeForm(); } return loadRules({ kind: 'note', text: '已保存 Saved: ' + pick(r) + RECOMPUTE }); })
        .catch(rulesFailed);
    }
    function closeForm() { editing = null; $('rt-rule-form').hidden = true; $('rt-rule-form').textContent = ''; }
    // The form of a rule (r; none: a new rule), kept as typed while the server refuses it.
    function openForm(r) {
      var f = $('rt-rule-form');
      editing = r || { id: null, target: 'structure', cargo_classes: ['*'], verdict: 'forbidden', active: true };
      r = editing; f.textContent = ''; f.hidden = false;
      function field(name, text, input, value, parent) {
        var l = (parent || f).appendChild(el('label', {}, text));
        input.name = name;
        if (input.type === 'checkbox') { input.checked = value; l.insertBefore(input, l.firstChild); } else { input.value = value == null ? '' : value; l.appendChild(input); }
        return input;
      }
      function select(opts) {
        var s = el('select');
        Object.keys(opts).forEach(function (k) { s.appendChild(el('option', { value: k }, opts[k])); });
        return s;
      }
      f.appendChild(el('h4', {}, r.id ? '编辑规则 Edit rule #' + r.id : '新增规则 New rule'));
      field('name_zh', '名称（中文）Name (Chinese)', el('input'), r.name_zh);
      field('name_en', '名称（英文）Name (English)', el('input'), r.name_en);
      field('cargo_classes', '货物类别，逗号分隔（* 全部）Cargo classes, comma-separated (* all)', el('input'), r.cargo_classes.join(', '));
      var target = field('target', '对象 Target', select(TARGET), r.target);
      Object.keys(LISTS).forEach(function (t) {
        LISTS[t].forEach(function (l) {
          var div = f.appendChild(el('div', { 'class': 'rt-list', 'data-target': t }));
          var input = field(l[0], l[1] + '（逗号分隔 comma-separated）', el('input'), (r[l[0]] || []).join(', '), div);
          var add = select({ '': '+ 代码 code…' });
          Object.keys((codes && codes[l[0]]) || {}).forEach(function (c) { add.appendChild(el('option', { value: c }, codeLabel(l[0], c))); });
          add.addEventListener('change', function () {
            input.value = (input.value.trim() ? input.value.replace(/[\s,，]*$/, ', ') : '') + add.value; add.value = '';
          });
          div.appendChild(add);
        });
      });
      function showLists() { f.querySelectorAll('.rt-list').forEach(function (d) { d.hidden = d.getAttribute('data-target') !== target.value; }); }
      target.addEventListener('change', showLists); showLists();
      var row = f.appendChild(el('div', { 'class': 'rt-row' }));
      field('min_quantity_t', '最小数量（吨）Min. quantity (t)', el('input', { type: 'number', min: 0, step: 'any' }), r.min_quantity_t, row);
      field('ban_start', '禁行起 Ban from', el('input', { type: 'time' }), hm(r.ban_start), row);
      field('ban_end', '禁行止 Ban until', el('input', { type: 'time' }), hm(r.ban_end), row);
      var days = f.appendChild(el('div', { 'class': 'rt-days' }));
      days.appendChild(el('div', {}, '星期（不选为每天）Weekdays (none: every day)'));
      WEEKDAYS.forEach(function (d, i) {
        field('weekdays', d, el('input', { type: 'checkbox', value: i + 1 }), (r.weekdays || []).indexOf(i + 1) >= 0, days).parentNode.className = 'rt-check';
      });
      row = f.appendChild(el('div', { 'class': 'rt-row' }));
      field('verdict', '结论 Verdict', select({ forbidden: VERDICT.forbidden, warning: VERDICT.warning }), r.verdict, row);
      field('active', ' 启用 Active', el('input', { type: 'checkbox' }), r.active, row).parentNode.className = 'rt-check';
      field('source', '依据 Source', el('textarea', { rows: 2 }), r.source);
      f.appendChild(el('button', { type: 'submit', id: 'rt-rule-save' }, '保存 Save'));
      f.appendChild(button('取消 Cancel', 'rt-rule-cancel', closeForm));
      api.placeBelow(panel, toggle);
    }
    // The form's rule as the API takes it: the target's own code lists only, blanks as null.
    function formRule() {
      var f = $('rt-rule-form'), v = f.elements, t = v.namedItem('target').value, q = v.namedItem('min_quantity_t');
      function list(k) { var c = v.namedItem(k).value.split(/[\s,，;]+/).filter(Boolean); return c.length ? c : null; }
      if (q.validity.badInput || (q.value !== '' && !(Number(q.value) >= 0))) {
        throw new Error('最小数量须为不小于 0 的数（吨） Min. quantity must be a number of tonnes ≥ 0');
      }
      var body = { name_zh: v.namedItem('name_zh').value.trim(), name_en: v.namedItem('name_en').value.trim(),
        cargo_classes: list('cargo_classes'), target: t, min_quantity_t: q.value === '' ? null : Number(q.value),
        ban_start: v.namedItem('ban_start').value || null, ban_end: v.namedItem('ban_end').value || null,
        weekdays: [].map.call(f.querySelectorAll('[name=weekdays]:checked'), function (d) { return +d.value; }),
        verdict: v.namedItem('verdict').value, active: v.namedItem('active').checked,
        source: v.namedItem('source').value.trim() || null };
      if (!body.weekdays.length) { body.weekdays = null; }
      LISTS[t].forEach(function (l) { body[l[0]] = list(l[0]); });
      return body;
    }
    $('rt-rule-form').addEventListener('submit', function (e) {
      e.preventDefault();
      try { saveRule(editing.id, formRule()); } catch (err) { rulesFailed(err); }
    });
    $('rt-rule-add').addEventListener('click', function () { openForm(null); });
    $('rt-rules-reset').addEventListener('click', function () {
      if (!window.confirm('恢复默认规则？现有规则将全部被替换 Reset to the default rules? Every current rule is replaced.')) { return; }
      json('/routes/rules/reset', { method: 'POST' }).then(function (d) {
        closeForm();
        return loadRules({ kind: 'note', text: '已恢复 ' + d.rules + ' 条默认规则 ' + d.rules + ' default rules restored' + RECOMPUTE });
      }).catch(rulesFailed);
    });

    // ---- 已登记路线 Stored routes: GET /routes/stored/check?day= (each leaves at its schedule's first HH:MM, China time);
    // a route's row opens its conflicts (no geometry: listed only) and draws it from /collections/hazmat_routes/items/{id}
    var stored = {}, storedLayer = L.featureGroup().addTo(map);  // stored: {busy, msg, data, open: route_id}
    function loadStored() {
      var day = $('rt-day').value, mine = stored = { busy: true };  // (an answer for an earlier day is dropped)
      storedLayer.clearLayers(); renderStored();
      json('/routes/stored/check' + (day ? '?day=' + day : '')).then(function (d) { return { data: d }; },
        function (e) { return { msg: { kind: 'error', text: e.message } }; })
        .then(function (s) { if (stored === mine) { stored = s; renderStored(); } });
    }
    $('rt-day').addEventListener('change', loadStored);
    $('rt-stored-load').addEventListener('click', loadStored);  // (again: the rules or routes may have changed)
    function cargoText(c) {
      return (c.un_number ? 'UN' + c.un_number + ' ' + (pick(c) || '') + ' ' : '') + '(' + c.hazard_class + ')' +
        (c.quantity_t != null ? ' ' + api.fmtNum(c.quantity_t, 3) + ' t' : '');
    }
    function renderStored() {
      var out = $('rt-stored'), d = stored.data;
      out.textContent = '';
      if (stored.busy) { out.appendChild(el('div', { 'class': 'rt-muted' }, '计算中… Working…')); }
      if (stored.msg) { out.appendChild(message(stored.msg)); }
      if (!d) { return; }
      if (!d.routes.length && !d.unchecked.length) { out.appendChild(el('div', { 'class': 'rt-muted' }, '无已登记路线 No stored routes')); }
      d.routes.forEach(function (r) {
        var row = out.appendChild(el('div', { 'class': 'rt-stored-route' + (r.route_id === stored.open ? ' rt-open' : ''), 'data-id': r.route_id }));
        row.appendChild(el('span', { 'class': 'rt-verdict rt-' + r.verdict }, VERDICT[r.verdict]));
        row.appendChild(el('b', {}, ' ' + r.name));
        row.appendChild(el('div', { 'class': 'rt-muted' }, [cargoText(r.cargo),
          '出发 Departs ' + (r.departure ? r.departure.slice(0, 16).replace('T', ' ') : '—（班次无时间，限时规则全计 no time in schedule: every time ban counts）'),
          r.conflicts.length + ' 处冲突 conflicts'].join(' · ')));
        row.addEventListener('click', function () { openStored(r); });
        if (r.route_id === stored.open) { out.appendChild(conflictList(r.conflicts)); }
      });
      if (d.unchecked.length) { out.appendChild(el('h4', {}, '未检查 Unchecked')); }
      d.unchecked.forEach(function (r) {
        var row = out.appendChild(el('div', { 'class': 'rt-unchecked', 'data-id': r.route_id }));
        row.appendChild(el('b', {}, r.name));
        row.appendChild(document.createTextNode(' — ' + r.reason));
      });
      api.placeBelow(panel, toggle);
    }
    function openStored(r) {
      stored.open = stored.open === r.route_id ? null : r.route_id;
      storedLayer.clearLayers(); renderStored();
      if (!stored.open) { return; }
      json('/collections/hazmat_routes/items/' + r.route_id).then(function (f) {
        if (stored.open !== r.route_id || !f.geometry) { return; }
        var color = r.verdict === 'allowed' ? COLORS.compliant : COLORS[r.verdict];
        var line = L.geoJSON(f, { pane: PANE, style: { color: color, weight: 6, opacity: 0.85 } }).bindTooltip(r.name).addTo(storedLayer);
        fit(line.getBounds());
      }).catch(function (e) { stored.msg = { kind: 'note', text: '路线图形不可用 Route geometry unavailable: ' + e.message }; renderStored(); });
    }

    if (api.onAccess) { api.onAccess(applyAccess); } else { applyAccess(); }

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
        out.appendChild(conflictList(r.conflicts, 'check'));
      }
      if ((r = res.plan)) {
        out.appendChild(el('h4', {}, '规划 Plan'));
        out.appendChild(r.found ? verdictLine(r.verdict, '合规路线 Compliant: ' + km(r.length_m) + ', ' + mins(r.time_s)) :
          r.unrestricted ? verdictLine('forbidden', '无合规路线 No compliant route') :
          verdictLine('noroute', '不考虑限制也无法到达 Not reachable even without restrictions'));  // (disconnected, one-way)
        if (r.next_departure) { out.appendChild(nextDeparture(r.next_departure)); }  // (no route now: above the long reason)
        Object.keys(ENDS).forEach(function (k) {  // (drawn by runPlan)
          var d = r[k + '_snap_m'] > SNAP_NOTE_M && metres(r[k + '_snap_m']);
          if (d) {
            out.appendChild(el('div', { 'class': 'rt-snap' },
              ENDS[k][0] + '距最近道路节点 ' + d + ' ' + ENDS[k][1] + ' moved ' + d + ' to the nearest road'));
          }
        });
        if (r.found) {
          out.appendChild(el('div', {}, '比最快路线多 Extra vs fastest: ' + km(r.extra_length_m) + ', ' + mins(r.extra_time_s)));
          // avoided and blocked_by are conflicts of the unrestricted route
          if (r.avoided.length) { out.appendChild(el('h4', {}, '已避开 Avoided')); out.appendChild(conflictList(r.avoided, 'unrestricted')); }
          if (r.conflicts.length) { out.appendChild(el('h4', {}, '注意 On the route')); out.appendChild(conflictList(r.conflicts, 'plan')); }
        } else {
          out.appendChild(message({ kind: 'note', text: r.reason }));
          if (r.blocked_by && r.blocked_by.length) {
            out.appendChild(el('h4', {}, '阻断 Blocked by'));
            out.appendChild(conflictList(r.blocked_by, 'unrestricted'));
          }
        }
      }
    }
    // A moment as the departure input takes it: Beijing time YYYY-MM-DDTHH:MM (api.fmtTime's, with the T).
    function localInput(v) { return api.fmtTime(v).replace(' ', 'T'); }
    // The first departure within a day with a compliant route (time-window bans lift), and a button to plan with it.
    function nextDeparture(v) {
      var d = el('div', { 'class': 'rt-next' }, '最早合规出发 First compliant departure: ' + api.fmtTime(v) + '（北京时间 Beijing time）');
      d.appendChild(button('改为此时出发 Use this departure', 'rt-use-next', function () {
        $('rt-dep').value = localInput(v);
        runPlan();
      }));
      return d;
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
    // A conflict by the route it lies on ('check', 'unrestricted', 'plan') and its feature: the plan's avoided and
    // blocked_by are other objects than the unrestricted route's conflicts, for the same features.
    function conflictKey(on, c) { return on + ' ' + c.target + ' ' + c.target_id; }
    function drawConflicts(group, list, on) {
      (list || []).forEach(function (c) {
        if (!c.geometry) { return; }
        conflictLines[conflictKey(on, c)] = L.polyline(latlngs(c.geometry),
          { pane: PANE, color: COLORS[c.verdict], weight: 10, opacity: 0.9 })
          .bindPopup(function () { return popupText(c); }, autoPanClear()).addTo(group);
      });
    }
    function popupText(c) {
      var div = el('div');
      div.appendChild(el('b', {}, c.target_name || TARGET[c.target]));
      // the class by the registry's label, from the target's first code list (structure, zone or road class)
      var cls = c.target_class && (codeName(LISTS[c.target][0][0], c.target_class) || c.target_class);
      [TARGET[c.target] + (cls ? ' · ' + cls : ''), ruleName(c, api.lang()),
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
    function conflictList(list, on) {  // on: the route whose drawn conflicts a row opens (none: listed only)
      var box = el('div');
      if (!list.length) { box.appendChild(el('div', { 'class': 'rt-muted' }, '无冲突 No conflicts')); }
      list.forEach(function (c) {
        var row = el('div', { 'class': 'rt-conflict' });
        row.appendChild(el('span', { 'class': 'rt-verdict rt-' + c.verdict }, c.verdict === 'forbidden' ? '禁' : '注'));
        row.appendChild(document.createTextNode(' ' + km(c.distance_m) + ' · ' + (c.target_name || TARGET[c.target]) +
          ' — ' + ruleName(c, api.lang()) + (c.unblocks === true ? ' （解除此项即可通行 lifting this alone opens a route）' : '')));
        row.addEventListener('click', function () {
          var line = on && conflictLines[conflictKey(on, c)];
          if (line && map.hasLayer(line)) { fit(line.getBounds(), { maxZoom: 15 }); line.openPopup(); }
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
      bounds = bounds || drawn.getBounds();
      if (bounds.isValid()) { api.fitBeside(bounds, panel, opts); }
    }
  }

  window.RiskmapPanels.routes = { init: init };
})();
