/* Emergency panel (应急处置): ERG2024 zones, counts and ranked resources for a hazmat spill.
 *
 * Usage (wired by the page): RiskmapPanels.emergency.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>,
 *   download(path, filename, opts), box(opts), fitBeside(bounds, box, opts), fmtNum(v, digits), fmtTime(v, form),
 *   ... } from the page (onemap.js), which holds the login token.
 *   Every fit of the map keeps clear of the panel (api.fitBeside).
 * Endpoints: GET /emergency/chemicals, POST /emergency/incident (save: the duty-log checkbox), GET /emergency/nearby
 *            (per_kind=5, limit=50),
 *            GET /emergency/incidents/{id}/report (offline HTML, downloaded with the token).
 * By role (GET /auth/me `can`, through api.can / api.onAccess): the 应急 Emergency button shows for a role
 * that may look up resources (`emergency_read`) or run an incident (`emergency_incident`); 分析 Analyse
 * only with `emergency_incident`, 仅查资源 Resources only and the report only with `emergency_read`.
 * Another role's login closes the panel and clears what it drew.
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
  var CSS = '.em-toggle{background:#fff;padding:4px 8px;cursor:pointer;font-weight:bold;border-radius:4px}' +
    '.em-panel{position:absolute;z-index:1000;top:10px;left:120px;width:360px;max-height:calc(100% - 20px);overflow:auto;' +
    'background:#fff;border:1px solid #999;border-radius:4px;padding:8px;font:12px/1.4 sans-serif;box-shadow:0 1px 5px #0004}' +
    '.em-panel label{display:block;margin-top:4px}.em-panel input,.em-panel select{width:100%;box-sizing:border-box}' +
    '.em-panel input[type=checkbox]{width:auto}.em-badge{display:inline-block;padding:0 4px;margin-left:4px;border-radius:3px;' +
    'font-size:11px}.em-zone{background:#fff3cd;color:#a00;border:1px solid #e0a800}.em-off{background:#eee;color:#555}' +
    '.em-unusable{color:#777;text-decoration:line-through}' +
    '.em-row{display:flex;gap:4px}.em-row>*{flex:1}.em-warn{color:#a00;font-weight:bold}.em-ok{color:#1a7f37}' +
    '.em-res{cursor:pointer;padding:2px 0;border-bottom:1px dotted #ccc}.em-res:hover{background:#fff4d6}' +
    '.em-muted{color:#777}.em-panel h4{margin:8px 0 2px}.em-panel button{margin-top:6px;margin-right:4px}';

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
      title: '应急处置 Hazmat incident', label: '应急 Emergency', toggled: function (open) { if (open) { loadChemicals(''); } },
      html:
      '<b>应急处置 Hazmat incident</b> <span class="em-muted">ERG2024 · 辅助决策 decision support</span>' +
      '<label>化学品 Chemical (UN/名称/CAS)<input list="em-chem-list" id="em-chem" placeholder="液氨 / 1005 / chlorine"></label>' +
      '<datalist id="em-chem-list"></datalist>' +
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
      '<div id="em-out"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;
    // day 06–19 h in Beijing time, the incident's zone, whatever the browser's
    var now = api.fmtTime(new Date(), 'time');
    var hour = Number(now.slice(0, 2));
    $('em-time').value = hour >= 6 && hour < 19 ? 'day' : 'night';
    $('em-time-note').textContent = '(北京时间 Beijing time ' + now + ')';

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
      }).catch(function (e) { out().textContent = e.message; });
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

    function clear() { layer.clearLayers(); markers = {}; out().innerHTML = ''; lastId = null; $('em-report').disabled = true; }
    $('em-clear').addEventListener('click', clear);

    // ---- the tools of the role only (the server checks each request all the same)
    function allowed(key) { return !api.can || api.can(key); }
    function applyAccess() {
      var run = allowed('emergency_incident'), read = allowed('emergency_read');
      $('em-run').hidden = $('em-save-row').hidden = !run;
      $('em-near').hidden = !read;
      $('em-report').hidden = !read;
      toggle.hidden = !(run || read);
      if (toggle.hidden) {
        panel.hidden = true;
        if (picking) { picking = false; api.picking(false); map.getContainer().style.cursor = ''; }
        clear();
      }
    }
    if (api.onAccess) { api.onAccess(applyAccess); }

    $('em-run').addEventListener('click', function () {
      var p;
      try { p = point(); } catch (e) { out().textContent = e.message; return; }
      var body = { lon: p.lon, lat: p.lat, chemical: $('em-chem').value, spill: $('em-spill').value, time: $('em-time').value,
                   wind_from_deg: num('em-wind'), wind_speed_ms: num('em-speed'), container: $('em-container').value || null,
                   save: $('em-save').checked };
      out().textContent = '计算中… Computing…';
      json('/emergency/incident', { method: 'POST', body: JSON.stringify(body) }).then(show)
        .catch(function (e) { out().innerHTML = ''; out().appendChild(el('div', { 'class': 'em-warn' }, e.message)); });
    });
    $('em-near').addEventListener('click', function () {
      var p;
      try { p = point(); } catch (e) { out().textContent = e.message; return; }
      // (per_kind: the first 5 of each kind, so that one kind cannot crowd out the others)
      json('/emergency/nearby?lon=' + p.lon + '&lat=' + p.lat + '&per_kind=5&limit=50').then(function (d) {
        clear(); spillMarker(p);
        var byKind = {};
        d.resources.forEach(function (r) { (byKind[r.kind] = byKind[r.kind] || []).push(r); });
        resourceList(byKind);
        api.fitBeside(layer.getBounds(), panel, { maxZoom: 16 });
      }).catch(function (e) { out().textContent = e.message; });
    });
    $('em-report').addEventListener('click', function () {
      if (!lastId) { return; }
      api.download('/emergency/incidents/' + lastId + '/report', 'incident-' + lastId + '.html', { who: 'emergency role' })
        .catch(function (e) { out().appendChild(el('div', { 'class': 'em-warn' }, e.message)); });
    });

    function spillMarker(p) {
      return L.circleMarker([p.lat, p.lon], { radius: 7, color: '#000', fillColor: '#e60012', fillOpacity: 1 })
        .bindTooltip('泄漏点 Spill').addTo(layer);
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
      var erg = a.erg, c = a.chemical;
      o.appendChild(el('div', null, c.name_zh + ' ' + c.name_en + (c.un_number ? ' UN' + c.un_number : '') + ' · guide ' + c.guide +
        ' · ' + erg.edition + ' ' + erg.basis));
      o.appendChild(el('div', { 'class': erg.verified ? 'em-ok' : 'em-warn' },
        erg.verified ? '✓ ERG 数据已核实 ERG rows verified' : '⚠ 未核实的 ERG 数据，以 ERG 原书为准 UNVERIFIED ERG data — check the printed ERG'));
      (a.warnings || []).forEach(function (w) { o.appendChild(el('div', { 'class': 'em-warn' }, '! ' + w)); });
      Object.keys(a.zones).forEach(function (name) {
        var z = a.zones[name];
        o.appendChild(el('h4', null, ZONES[name][0] + ' ' + ZONES[name][1] + ': ' + Math.round(z.distance_m) + ' m (' + z.shape + ')'));
        o.appendChild(el('div', null, '人口 People: ' + (z.population == null ? '— (无人口栅格 no grid)' : api.fmtNum(z.population, 0)) +
          ' · 面积 Area ' + api.fmtNum(z.area_km2, 2) + ' km²'));
        Object.keys(z.receptors).forEach(function (k) {
          o.appendChild(el('div', null, (RECEPTORS[k] || k) + ' (' + z.receptors[k].length + '): ' +
            z.receptors[k].map(function (r) { return r.name; }).join('、')));
        });
        if (z.hazard_installations.length || z.tailings_ponds.length) {
          o.appendChild(el('div', { 'class': 'em-warn' }, '多米诺 Domino: ' + z.hazard_installations.map(function (h) {
            return h.name + (h.level ? ' (' + h.level + '级)' : ''); }).concat(z.tailings_ponds.map(function (t) {
            return '尾矿库 ' + t.name; })).join('、')));
        }
      });
      resourceList(a.resources);
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
    return { panel: panel, layer: layer, show: show };
  }

  window.RiskmapPanels.emergency = { init: init };
}());
