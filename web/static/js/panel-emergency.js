/* Emergency panel (应急处置): ERG2024 zones, counts and ranked resources for a hazmat spill.
 *
 * Usage (wired by the page): RiskmapPanels.emergency.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>,
 *   download(path, filename, opts), box(opts), fitBeside(bounds, box, opts), fmtNum(v, digits), fmtTime(v, form),
 *   ... } from the page (onemap.js), which holds the login token.
 *   Every fit of the map keeps clear of the panel (api.fitBeside).
 * Endpoints: GET /emergency/chemicals, POST /emergency/incident (save: the duty-log checkbox), GET /emergency/nearby
 *            (per_kind=5, limit=50), GET /emergency/incidents (the 值班日志 Duty log list),
 *            GET|PATCH /emergency/incidents/{id} (a kept incident's notes; note, close or reopen it),
 *            GET /emergency/incidents/{id}/report (offline HTML, downloaded with the token).
 * By role (GET /auth/me `can`, through api.can / api.onAccess): the 应急 Emergency button shows for a role
 * that may look up resources (`emergency_read`) or run an incident (`emergency_incident`); 分析 Analyse
 * and changing a kept incident only with `emergency_incident`, 仅查资源 Resources only, the duty log and the
 * report only with `emergency_read`. Another role's login closes the panel and clears what it drew.
 * A kept incident (layer `incidents`, or one of its `incident_zones`) opened in the one-map's feature panel
 * (#om-panel-body) gets a 值班日志 Duty log section: status, hand-over notes, report, note and close/reopen.
 * Offline: no external asset; Leaflet is the vendored copy already on the page.
 */
(function () {
  'use strict';
  window.RiskmapPanels = window.RiskmapPanels || {};

  var KINDS = {
    fire_station: ['消防站', 'Fire stations', '#e60012'], rescue_team: ['救援队伍', 'Rescue teams', '#ff8c00'],
    hospital: ['医院', 'Hospitals', '#27ae60'], depot: ['物资库', 'Material depots', '#8e44ad'],
    shelter: ['避难场所', 'Shelters', '#1e64c8']
  };
  var RECEPTORS = {
    school: '学校 School', kindergarten: '幼儿园 Kindergarten', hospital: '医院 Hospital', care_home: '养老院 Care home',
    residential: '居住区 Residential', market: '商场市场 Market', office: '办公场所 Office', prison: '监所 Prison'
  };
  var ZONES = { isolation: ['初始隔离区', 'Isolation zone', '#e60012'], protective: ['防护行动区', 'Protective action zone', '#ff8c00'] };
  var IN_ZONE = { isolation: '隔离区内 In isolation zone', protective: '防护区内 In protective zone' };
  var TIMES = { day: ['白天', 'Day'], night: ['夜间', 'Night'] };
  var STATUS = { open: '处置中 Open', closed: '已结束 Closed' };
  var NAMES = 5;  // names shown of a list (receptors of a kind, domino risks) before 显示全部 Show all
  var CSS = '.em-toggle{background:#fff;padding:4px 8px;cursor:pointer;font-weight:bold;border-radius:4px}' +
    '.em-panel{position:absolute;z-index:1000;top:10px;left:120px;width:360px;max-height:calc(100% - 20px);overflow:auto;' +
    'background:#fff;border:1px solid #999;border-radius:4px;padding:8px;font:12px/1.4 sans-serif;box-shadow:0 1px 5px #0004}' +
    '.em-panel label{display:block;margin-top:4px}.em-panel input,.em-panel select{width:100%;box-sizing:border-box}' +
    '.em-panel input[type=checkbox]{width:auto}.em-badge{display:inline-block;padding:0 4px;margin-left:4px;border-radius:3px;' +
    'font-size:11px}.em-zone{background:#fff3cd;color:#a00;border:1px solid #e0a800}.em-off{background:#eee;color:#555}' +
    '.em-unusable{color:#777;text-decoration:line-through}' +
    '.em-row{display:flex;gap:4px}.em-row>*{flex:1}.em-warn{color:#a00;font-weight:bold}.em-ok{color:#1a7f37}' +
    '.em-res{cursor:pointer;padding:2px 0;border-bottom:1px dotted #ccc}.em-res:hover{background:#fff4d6}' +
    '.em-muted{color:#777}.em-panel h4{margin:8px 0 2px}.em-panel button{margin-top:6px;margin-right:4px}' +
    '.em-panel button.em-more{margin:0 0 0 4px;padding:0 4px;font-size:11px}.em-zone-name{font-weight:bold;margin-top:4px}' +
    '.em-panel details{margin-top:6px}.em-panel summary{cursor:pointer}' +
    '.em-incident{margin-top:10px;border-top:1px solid #ddd;padding-top:6px;font-size:13px}.em-incident h4{margin:0 0 4px}' +
    '.em-incident textarea{width:100%;box-sizing:border-box;margin-top:4px}.em-note{margin-left:8px}' +
    '.em-incident .om-btn{margin:4px 4px 0 0}';

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }

  function init(map, api) {
    var style = el('style'); style.textContent = CSS; document.head.appendChild(style);
    var picking = false, layer = L.featureGroup().addTo(map), markers = {}, lastId = null;

    // The page (onemap.js) passes api = {token(), request(path, opts), json(path, opts), box(opts), ...}: one fetch
    // helper and one panel box with its toggle button for all panels.
    function json(path, opts) { opts = opts || {}; opts.who = 'emergency role'; return api.json(path, opts); }

    // ---- panel and its toggle (api.box)
    var box = api.box({ className: 'em-panel', position: 'topleft', button: 'em-toggle',
      title: '应急处置 Hazmat incident', label: '应急 Emergency', toggled: function (open) {
        if (open) { loadChemicals(''); dayOrNight(); if ($('em-log').open) { loadLog(); } }
      },
      html:
      '<b>应急处置 Hazmat incident</b> <span class="em-muted">ERG2024 · 辅助决策 decision support</span>' +
      '<label>化学品 Chemical (UN/名称/CAS)<input list="em-chem-list" id="em-chem" placeholder="液氨 / 1005 / chlorine"></label>' +
      '<datalist id="em-chem-list"></datalist><div id="em-chem-msg" class="em-warn"></div>' +
      '<div class="em-row"><label>经度 Lon<input id="em-lon" type="number" step="0.000001"></label>' +
      '<label>纬度 Lat<input id="em-lat" type="number" step="0.000001"></label></div>' +
      '<button type="button" id="em-pick">在地图上点选 Click on map</button>' +
      '<div class="em-row"><label>泄漏 Spill<select id="em-spill"><option value="small">小量 Small (&lt;208 L)</option>' +
      '<option value="large" selected>大量 Large (&gt;208 L)</option></select></label>' +
      '<label>昼夜 Time <span id="em-time-note" class="em-muted"></span><select id="em-time"><option value="day">白天 Day</option>' +
      '<option value="night">夜间 Night</option></select></label></div>' +
      '<div class="em-row"><label>风向(来向°) Wind from<input id="em-wind" type="number" min="0" max="360"></label>' +
      '<label>风速 m/s Wind speed<input id="em-speed" type="number" min="0" step="0.1"></label></div>' +
      '<label>容器（表3）Container (Table 3)<select id="em-container"><option value="">未知 unknown</option></select></label>' +
      '<label id="em-save-row"><input type="checkbox" id="em-save" checked> 记入值班日志 Record in duty log</label>' +
      '<button type="button" id="em-run">分析 Analyse</button><button type="button" id="em-near">仅查资源 Resources only</button>' +
      '<button type="button" id="em-report" disabled>离线报告 Report</button><button type="button" id="em-clear">清除 Clear</button>' +
      '<details id="em-log"><summary>值班日志 Duty log</summary><div id="em-log-list"></div></details>' +
      '<div id="em-out"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;

    // 昼夜 Day/night from the hour in Beijing (day 06–19 h), the incident's zone, whatever the browser's: chosen again
    // when the panel opens and before each 分析 Analyse (a page kept open from afternoon into night), unless chosen by
    // hand since; a hand choice the clock contradicts is flagged beside the time.
    var timeByHand = false;
    function dayOrNight() {
      var now = api.fmtTime(new Date(), 'time'), hour = Number(now.slice(0, 2));
      var clock = hour >= 6 && hour < 19 ? 'day' : 'night', note = $('em-time-note');
      if (!timeByHand) { $('em-time').value = clock; }
      var off = $('em-time').value !== clock;
      note.textContent = '(北京时间 Beijing time ' + now + ')' + (off ? ' ⚠ 现为' + TIMES[clock][0] + ' Now ' + TIMES[clock][1].toLowerCase() : '');
      note.className = off ? 'em-warn' : 'em-muted';
    }
    $('em-time').addEventListener('change', function () { timeByHand = true; dayOrNight(); });

    var chemTimer = null;
    function loadChemicals(q) {
      json('/emergency/chemicals?q=' + encodeURIComponent(q)).then(function (d) {
        var list = $('em-chem-list'); list.innerHTML = '';
        d.materials.forEach(function (m) {
          var o = el('option'); o.value = m.un_number;
          o.label = m.name_zh + ' ' + m.name_en + ' (UN' + m.un_number + ', guide ' + m.guide + ')' + (m.verified ? '' : ' ⚠ 未核实 unverified');
          list.appendChild(o);
        });
        var sel = $('em-container');
        if (sel.options.length === 1) {
          d.containers.forEach(function (c) { var o = el('option', { value: c.code }, c.zh + ' ' + c.en); sel.appendChild(o); });
        }
        $('em-chem-msg').textContent = '';
      }).catch(function (e) { $('em-chem-msg').textContent = e.message; });  // (under the input: a result stays as it is)
    }
    $('em-chem').addEventListener('input', function () {
      clearTimeout(chemTimer);
      var q = this.value; chemTimer = setTimeout(function () { loadChemicals(q); }, 250);
    });
    $('em-pick').addEventListener('click', function () {
      picking = true; api.picking(true); map.getContainer().style.cursor = 'crosshair';
    });
    map.on('click', function (e) {
      if (!picking) { return; }
      picking = false; api.picking(false); map.getContainer().style.cursor = '';
      $('em-lon').value = e.latlng.lng.toFixed(6); $('em-lat').value = e.latlng.lat.toFixed(6);
    });
    function out() { return $('em-out'); }
    function num(id) { var v = $(id).value; return v === '' ? null : Number(v); }
    function point() {
      var lon = num('em-lon'), lat = num('em-lat');
      if (lon === null || lat === null) { throw new Error('请输入或点选位置 Enter or click a location'); }
      return { lon: lon, lat: lat };
    }

    var runSeq = 0;  // (bumped by every clear: a late answer to an earlier request is dropped)
    function clear() { runSeq++; layer.clearLayers(); markers = {}; out().innerHTML = ''; lastId = null; $('em-report').disabled = true; }
    $('em-clear').addEventListener('click', clear);
    function fail(e) { clear(); out().appendChild(el('div', { 'class': 'em-warn', id: 'em-error' }, e.message)); }
    // A new result: the previous one goes at once, so a failure never leaves it on the map beside the error.
    function ask(path, opts, draw) {
      clear();
      var seq = runSeq;
      out().textContent = '计算中… Computing…';
      json(path, opts).then(function (d) { if (seq === runSeq) { draw(d); } }, function (e) { if (seq === runSeq) { fail(e); } });
    }

    // ---- the tools of the role only (the server checks each request all the same)
    function allowed(key) { return !api.can || api.can(key); }
    function applyAccess() {
      var run = allowed('emergency_incident'), read = allowed('emergency_read');
      $('em-run').hidden = $('em-save-row').hidden = !run;
      $('em-near').hidden = $('em-report').hidden = $('em-log').hidden = !read;
      toggle.hidden = !(run || read);
      if (toggle.hidden) {
        panel.hidden = true;
        if (picking) { picking = false; api.picking(false); map.getContainer().style.cursor = ''; }
        clear();
      }
      Array.prototype.forEach.call(document.querySelectorAll('.em-incident'), function (n) { n.remove(); });
      incidentSection();
    }

    $('em-run').addEventListener('click', function () {
      var p;
      try { p = point(); } catch (e) { fail(e); return; }
      dayOrNight();
      var body = { lon: p.lon, lat: p.lat, chemical: $('em-chem').value, spill: $('em-spill').value, time: $('em-time').value,
                   wind_from_deg: num('em-wind'), wind_speed_ms: num('em-speed'), container: $('em-container').value || null,
                   save: $('em-save').checked };
      ask('/emergency/incident', { method: 'POST', body: JSON.stringify(body) }, show);
    });
    $('em-near').addEventListener('click', function () {
      var p;
      try { p = point(); } catch (e) { fail(e); return; }
      // (per_kind: the first 5 of each kind, so that one kind cannot crowd out the others)
      ask('/emergency/nearby?lon=' + p.lon + '&lat=' + p.lat + '&per_kind=5&limit=50', null, function (d) {
        clear(); spillMarker(p);
        var byKind = {};
        d.resources.forEach(function (r) { (byKind[r.kind] = byKind[r.kind] || []).push(r); });
        resourceList(byKind);
        api.fitBeside(layer.getBounds(), panel, { maxZoom: 16 });
      });
    });
    function report(id) {
      return api.download('/emergency/incidents/' + id + '/report', 'incident-' + id + '.html', { who: 'emergency role' });
    }
    $('em-report').addEventListener('click', function () {
      if (lastId) { report(lastId).catch(function (e) { out().appendChild(el('div', { 'class': 'em-warn' }, e.message)); }); }
    });

    function spillMarker(p) {
      return L.circleMarker([p.lat, p.lon], { radius: 7, color: '#000', fillColor: '#e60012', fillOpacity: 1 })
        .bindTooltip('泄漏点 Spill').addTo(layer);
    }

    // At most NAMES of `items` (by `name(item)`), the rest behind a 显示全部 Show all (N) / 收起 Show fewer toggle.
    function names(items, name) {
      var box = el('span', { 'class': 'em-names' }), text = box.appendChild(el('span')), all = false;
      function draw() {
        text.textContent = items.slice(0, all ? items.length : NAMES).map(name).join('、') + (all || items.length <= NAMES ? '' : ' …');
      }
      draw();
      if (items.length > NAMES) {
        var more = box.appendChild(el('button', { type: 'button', 'class': 'em-more' }, '显示全部 Show all (' + items.length + ')'));
        more.addEventListener('click', function () {
          all = !all; draw();
          more.textContent = all ? '收起 Show fewer' : '显示全部 Show all (' + items.length + ')';
        });
      }
      return box;
    }

    function show(a) {
      clear();
      lastId = a.incident_id || null; $('em-report').disabled = !lastId;
      var focus = spillMarker(a.inputs).getLatLng().toBounds(50);  // the map fits the zones and the spill point
      ['protective', 'isolation'].forEach(function (name) {
        var z = a.zones[name];
        if (!z) { return; }
        focus.extend(L.geoJSON(z.geometry, { style: { color: ZONES[name][2], weight: 2, fillOpacity: 0.2, className: 'em-zone-' + name } })
          .bindTooltip(ZONES[name][0] + ' ' + ZONES[name][1] + ' ' + Math.round(z.distance_m) + ' m').addTo(layer).getBounds());
      });
      var o = out();
      o.appendChild(el('p', { 'class': 'em-muted' }, a.decision_support));
      o.appendChild(el('div', { id: 'em-saved', 'class': lastId ? 'em-ok' : 'em-muted' }, lastId
        ? '已记入值班日志 Recorded in the duty log: #' + lastId : '试算，未记录 What-if, not recorded'));
      var erg = a.erg, c = a.chemical, time = TIMES[a.inputs.time];
      o.appendChild(el('div', null, c.name_zh + ' ' + c.name_en + (c.un_number ? ' UN' + c.un_number : '') + ' · guide ' + c.guide +
        ' · ' + erg.edition + ' ' + erg.basis + (time ? ' · ' + time.join(' ') : '')));
      o.appendChild(el('div', { 'class': erg.verified ? 'em-ok' : 'em-warn' },
        erg.verified ? '✓ ERG 数据已核实 ERG rows verified' : '⚠ 未核实的 ERG 数据，以 ERG 原书为准 UNVERIFIED ERG data — check the printed ERG'));
      (a.warnings || []).forEach(function (w) { o.appendChild(el('div', { 'class': 'em-warn' }, '! ' + w)); });
      // each zone in a few lines (a city zone holds hundreds of receptors), then the resources, then the receptors' names
      Object.keys(a.zones).forEach(function (name) {
        var z = a.zones[name], n = function (k) { return (z.receptors[k] || []).length; };
        var all = Object.keys(z.receptors).reduce(function (s, k) { return s + n(k); }, 0);
        var schools = n('school') + n('kindergarten'), hospitals = n('hospital');
        o.appendChild(el('h4', null, ZONES[name][0] + ' ' + ZONES[name][1] + ': ' + Math.round(z.distance_m) + ' m (' + z.shape + ')'));
        o.appendChild(el('div', null, '人口 People: ' + (z.population == null ? '— (无人口栅格 no grid)' : api.fmtNum(z.population, 0)) +
          ' · 面积 Area ' + api.fmtNum(z.area_km2, 2) + ' km²'));
        o.appendChild(el('div', { 'class': 'em-counts', 'data-zone': name }, '学校幼儿园 Schools ' + schools + ' · 医院 Hospitals ' + hospitals +
          ' · 其他防护目标 Other receptors ' + (all - schools - hospitals)));
        var domino = z.hazard_installations.map(function (h) { return h.name + (h.level ? ' (' + h.level + '级)' : ''); })
          .concat(z.tailings_ponds.map(function (t) { return '尾矿库 ' + t.name; }));
        if (domino.length) {
          var d = o.appendChild(el('div', { 'class': 'em-warn' }, '多米诺 Domino (' + domino.length + '): '));
          d.appendChild(names(domino, String));
        }
      });
      resourceList(a.resources);
      var head = el('h4', null, '防护目标 Receptors');
      Object.keys(a.zones).forEach(function (name) {
        var r = a.zones[name].receptors;
        if (!Object.keys(r).length) { return; }
        if (!head.parentNode) { o.appendChild(head); }
        o.appendChild(el('div', { 'class': 'em-zone-name' }, ZONES[name][0] + ' ' + ZONES[name][1]));
        Object.keys(r).forEach(function (k) {
          var row = o.appendChild(el('div', { 'class': 'em-receptors', 'data-zone': name, 'data-kind': k }, (RECEPTORS[k] || k) + ' (' + r[k].length + '): '));
          row.appendChild(names(r[k], function (x) { return x.name; }));
        });
      });
      if (lastId) { redrawIncidents(); if ($('em-log').open) { loadLog(); } }
      api.fitBeside(focus, panel, { animate: false });
    }

    function resourceList(byKind) {
      var o = out();
      Object.keys(KINDS).forEach(function (kind) {
        var items = byKind[kind] || [];
        if (!items.length) { return; }
        o.appendChild(el('h4', null, KINDS[kind][0] + ' ' + KINDS[kind][1]));
        items.forEach(function (r, i) {
          var row = el('div', { 'class': 'em-res' + (r.usable === false ? ' em-muted' : ''), 'data-kind': kind, 'data-id': String(r.id) });
          row.appendChild(el('span', { 'class': r.usable === false ? 'em-unusable' : '' }, (i + 1) + '. ' + r.name));
          row.appendChild(document.createTextNode(' — ' + (r.travel_s == null ? '不可达 Unreachable' : (r.travel_s / 60).toFixed(1) + ' min') +
            ' · 直线 Straight ' + (r.straight_m / 1000).toFixed(2) + ' km' + (r.capacity != null ? ' · 能力 Capacity ' + api.fmtNum(r.capacity) : '') +
            (r.contact_phone ? ' · ☎ ' + r.contact_phone : '')));
          if (r.usable === false) { row.appendChild(el('span', { 'class': 'em-badge em-off' }, '不可用 Not usable')); }
          if (r.in_zone) { row.appendChild(el('span', { 'class': 'em-badge em-zone', 'data-zone': r.in_zone }, '⚠ ' + (IN_ZONE[r.in_zone] || r.in_zone))); }
          if (r.reason) { row.appendChild(el('div', { 'class': 'em-muted' }, r.reason)); }
          if (r.warning) { row.appendChild(el('div', { 'class': 'em-warn em-res-warning' }, '⚠ ' + r.warning)); }
          var m = L.circleMarker([r.lat, r.lon], { radius: 6, color: KINDS[kind][2], fillOpacity: r.usable === false ? 0.2 : 0.8 })
            .bindPopup(row.cloneNode(true)).addTo(layer);
          markers[kind + r.id] = m;
          row.addEventListener('click', function () {
            api.fitBeside(L.latLng(r.lat, r.lon).toBounds(1), panel, { maxZoom: Math.max(map.getZoom(), 15) });
            m.openPopup();
          });
          o.appendChild(row);
        });
      });
    }

    // ---- the duty log: kept incidents, newest first; a click opens one in the feature panel, fitted beside this one
    function loadLog() {
      var list = $('em-log-list');
      list.textContent = '加载中… Loading…';
      json('/emergency/incidents?limit=20').then(function (d) {
        list.innerHTML = '';
        list.appendChild(el('div', { 'class': 'em-muted' }, d.incidents.length ? '最近 20 条 Latest 20 · 北京时间 Beijing time' : '无记录 None'));
        d.incidents.forEach(function (i) {
          var row = list.appendChild(el('div', { 'class': 'em-res em-log-row', 'data-id': String(i.id), 'data-status': i.status },
            '#' + i.id + ' ' + i.name + ' · ' + (STATUS[i.status] || i.status) + ' · ' + api.fmtTime(i.created_at, 'short')));
          row.addEventListener('click', function () {
            var at = L.latLng(i.lat, i.lon);
            window.onemap.showFeature('incidents', i.id, {}, at);
            api.fitBeside(at.toBounds(2 * (i.protective_m || i.isolation_m || 500)), panel, { maxZoom: 16 });
          });
        });
      }).catch(function (e) { list.innerHTML = ''; list.appendChild(el('div', { 'class': 'em-warn' }, e.message)); });
    }
    $('em-log').addEventListener('toggle', function () { if (this.open) { loadLog(); } });

    // The one-map's incident layers drawn again (the zone tiles show open incidents' zones only).
    function redrawIncidents() {
      ['incidents', 'incident_zones'].forEach(function (id) {
        var l = window.onemap && window.onemap.layers[id];
        if (l && l.grid) { l.grid.redraw(); }
      });
    }

    // ---- a kept incident in the one-map's feature panel (the incident, or one of its zones): its status and
    // hand-over notes (GET /emergency/incidents/{id}, asked once per opened feature: the page draws its panel again
    // when the details come and on a language switch), 离线报告 Report, and with `emergency_incident` a note and
    // 结束 Close / 重新开启 Reopen (PATCH); the server's answer or refusal shows under the buttons. After a change
    // the incident layers and the feature panel (its status) are drawn again.
    var fbody = document.getElementById('om-panel-body'), asked = {}, said = {};
    function incidentOf(sel) {
      if (!sel || sel.kind !== 'feature') { return null; }
      var p = (sel.detail && sel.detail.properties) || sel.properties || {};
      var id = sel.layer === 'incidents' ? sel.id : (sel.layer === 'incident_zones' ? p.incident_id : null);
      return id == null || id === '' ? null : String(id);
    }
    function incidentSection() {
      var sel = window.onemap && window.onemap.selected, id = incidentOf(sel);
      if (!fbody || id === null || !allowed('emergency_read') || fbody.querySelector('.em-incident')) { return; }
      if (asked.sel !== sel || asked.token !== api.token()) {
        asked = { sel: sel, token: api.token(), answer: json('/emergency/incidents/' + encodeURIComponent(id)) };
      }
      var sec = el('section', { 'class': 'em-incident', 'data-incident': id });
      sec.appendChild(el('h4', null, '值班日志 Duty log #' + id));
      var info = sec.appendChild(el('div', { 'class': 'em-muted' }, '加载中… Loading…')), edit = sec.appendChild(el('div'));
      var buttons = sec.appendChild(el('div'));
      var rep = buttons.appendChild(el('button', { type: 'button', 'class': 'om-btn em-inc-report' }, '离线报告 Report'));
      var msg = sec.appendChild(el('div', { 'class': 'em-incident-msg ' + (said.sel === sel ? 'em-ok' : 'em-muted') }, said.sel === sel ? said.text : ''));
      rep.addEventListener('click', function () {
        report(id).catch(function (e) { msg.className = 'em-incident-msg em-warn'; msg.textContent = e.message; });
      });
      fbody.appendChild(sec);
      asked.answer.then(function (inc) {
        info.innerHTML = '';
        info.appendChild(el('div', { 'class': 'em-inc-status', 'data-status': inc.status }, '状态 Status: ' + (STATUS[inc.status] || inc.status)));
        info.appendChild(el('div', null, '交接记录 Hand-over notes (北京时间 Beijing time)' + (inc.notes.length ? ':' : ': 无 none')));
        inc.notes.forEach(function (n) { info.appendChild(el('div', { 'class': 'em-note' }, api.fmtTime(n.at, 'short') + ' ' + n.by + ': ' + n.text)); });
        if (!allowed('emergency_incident')) { return; }
        var note = edit.appendChild(el('textarea', { 'class': 'em-note-input', rows: '2', maxlength: '2000', placeholder: '交接说明 Hand-over note' }));
        var add = buttons.insertBefore(el('button', { type: 'button', 'class': 'om-btn em-add-note' }, '记录交接 Add note'), rep);
        var reopen = inc.status === 'closed';
        var flip = buttons.insertBefore(el('button', { type: 'button', 'class': 'om-btn em-flip' }, reopen ? '重新开启 Reopen' : '结束 Close incident'), rep);
        add.addEventListener('click', function () { change(id, { note: note.value }, msg); });
        flip.addEventListener('click', function () { change(id, { status: reopen ? 'open' : 'closed', note: note.value || null }, msg); });
      }, function (e) { info.className = 'em-warn'; info.textContent = e.message; });
    }
    function change(id, body, msg) {
      msg.className = 'em-incident-msg em-muted'; msg.textContent = '保存中… Saving…';
      json('/emergency/incidents/' + encodeURIComponent(id), { method: 'PATCH', body: JSON.stringify(body) }).then(function (d) {
        redrawIncidents();
        if ($('em-log').open) { loadLog(); }
        var om = window.onemap, sel = om.selected;
        if (incidentOf(sel) !== id) { return; }
        om.showFeature(sel.layer, sel.id, sel.properties, sel.latlng);  // (its status, and this section, anew)
        said = { sel: om.selected, text: '已保存 Saved: #' + d.id + ' ' + (STATUS[d.status] || d.status) + ' · 交接记录 Notes ' + d.notes.length };
      }, function (e) { msg.className = 'em-incident-msg em-warn'; msg.textContent = e.message; });
    }
    if (fbody && window.MutationObserver) { new MutationObserver(incidentSection).observe(fbody, { childList: true }); }

    if (api.onAccess) { api.onAccess(applyAccess); }
    return { panel: panel, layer: layer, show: show };
  }

  window.RiskmapPanels.emergency = { init: init };
}());
