/* Siting check panel (选址检查): draw a proposed site (a point or a polygon), pick its use, and see the
 * safety-distance conflicts it would have with the existing hazard installations or receptors.
 *
 * Usage (wired by the page, after Leaflet and with web/static/css/panel-siting.css):
 *   RiskmapPanels.siting.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts), json(path, opts), box(opts), picking(on), can(key), onAccess(fn),
 *   fmtNum(v, digits), fitBeside(bounds, box, opts) }
 *   from the page (onemap.js), which holds the login token.
 * Endpoints: POST /analysis/siting-check (planner, emergency, editor, admin), GET /analysis/siting-check/options
 * (the uses, levels and hazard kinds it takes, with their names; public), GET /api/layers (the registry's
 * labels and colours of protection classes and GB 18218 levels), GET /collections/{layer}/items/{id} (the
 * conflicting installations, outlined on the map).
 * By role (GET /auth/me `can`, through api.can / api.onAccess): the 选址 Siting button shows only with
 * `analysis_read`; another role's login closes the panel and clears what it drew, as closing it does.
 * Colours: every conflict is a violation, drawn red (the registry's red, `#e60012`, the colour of the
 * safety_violations layer); the conflicting feature's dot takes the registry colour of its protection class
 * (a receptor) or GB 18218 level (an installation). Offline: Leaflet only (vendored).
 */
(function () {
  'use strict';
  window.RiskmapPanels = window.RiskmapPanels || {};

  var RED = '#e60012', SITE = '#333', OK = '#27ae60';
  var FEATURE_LOOKUPS = 50;  // conflicting installations fetched for their outline; the lines are drawn for all

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }
  function metres(m) { return (Math.round(m * 10) / 10).toFixed(1) + ' m'; }
  function latlngs(geom) { return (geom.coordinates || []).map(function (c) { return [c[1], c[0]]; }); }
  // {code, zh, en} of a list of GET /analysis/siting-check/options, by code: "zh en"
  function named(list, code) {
    var u = list.filter(function (x) { return String(x.code) === String(code); })[0];
    return u ? u.zh + ' ' + u.en : (code == null ? '' : String(code));
  }
  function namedAll(list, codes) { return codes.map(function (k) { return named(list, k); }).join('、'); }

  function init(map, api) {
    var siteLayer = L.featureGroup().addTo(map);   // the proposed site being drawn or checked
    var layer = L.featureGroup().addTo(map);       // the result: conflict lines and conflicting features
    var mode = null, vertices = [], site = null, registry = null, seq = 0;
    // what the check takes, with the server's names (GET /analysis/siting-check/options, filled in below)
    var choices = { receptor_uses: [], installation_uses: [], levels: [], kinds: [] };
    function isInstallation(use) { return choices.installation_uses.some(function (u) { return u.code === use; }); }

    function json(path, opts) { opts = opts || {}; opts.who = 'planner, emergency, editor'; return api.json(path, opts); }

    // ---- panel and its toggle (api.box)
    var box = api.box({ className: 'st-panel', position: 'topleft', button: 'st-toggle',
      title: '选址检查 Siting check', label: '选址 Siting', toggled: function (open) { if (!open) { clearAll(); } },
      html:
      '<b>选址检查 Siting check</b> <span class="st-muted">安全防护距离 safety distances</span>' +
      '<label>拟建用途 Proposed use<select id="st-use">' +
      '<optgroup id="st-receptor-uses" label="防护目标（对照危险源）Receptor (checked against installations)"></optgroup>' +
      '<optgroup id="st-installation-uses" label="危险化学品设施（对照防护目标）Hazardous installation (checked against receptors)">' +
      '</optgroup></select></label>' +
      '<div id="st-receptor-opts"><label>人数（可选）People (optional)<input id="st-people" type="number" min="0" step="1" ' +
      'placeholder="默认按一般一类 default: general class 1"></label></div>' +
      '<div id="st-installation-opts" hidden>' +
      '<label>GB 18218 等级 Level<select id="st-level"><option value="">未定（按一级）Unknown (as level 1)</option>' +
      '</select></label>' +
      '<div class="st-kinds">危险类型 Hazard kinds: <span id="st-kinds"></span>' +
      '<div class="st-muted">不选即全部（最严）None ticked: all (the strictest)</div></div></div>' +
      '<h4>拟建场址 Proposed site</h4><div class="st-mode">' +
      '<button type="button" id="st-point">点 Point</button>' +
      '<button type="button" id="st-polygon">面 Polygon</button>' +
      '<button type="button" id="st-finish" disabled>完成 Finish</button>' +
      '<button type="button" id="st-clear">清除 Clear</button></div>' +
      '<div id="st-hint" class="st-muted"></div>' +
      '<button type="button" id="st-run">检查 Check</button>' +
      '<div id="st-out"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;

    function close() { panel.hidden = true; clearAll(); }
    function clearAll() {
      seq++;  // (an answer still on its way is dropped)
      setMode(null); vertices = []; site = null;
      siteLayer.clearLayers(); layer.clearLayers(); $('st-out').textContent = ''; $('st-out').removeAttribute('data-conflicts');
    }

    // ---- only for a role that may run the siting check (the server checks each request all the same)
    function applyAccess() {
      var allowed = !api.can || api.can('analysis_read');
      toggle.hidden = !allowed;
      if (!allowed && (!panel.hidden || siteLayer.getLayers().length || layer.getLayers().length)) { close(); }
    }
    if (api.onAccess) { api.onAccess(applyAccess); }

    // ---- use and its options
    function useChanged() {
      var inst = isInstallation($('st-use').value);
      $('st-installation-opts').hidden = !inst;
      $('st-receptor-opts').hidden = inst;
    }
    $('st-use').addEventListener('change', useChanged);
    useChanged();
    api.json('/analysis/siting-check/options').then(function (o) {
      choices = o;
      function fill(parent, list) { list.forEach(function (u) { parent.appendChild(el('option', { value: u.code }, u.zh + ' ' + u.en)); }); }
      fill($('st-receptor-uses'), o.receptor_uses);
      fill($('st-installation-uses'), o.installation_uses);
      fill($('st-level'), o.levels);
      o.kinds.forEach(function (k) {
        var box = el('input', { type: 'checkbox', 'class': 'st-kind', value: k.code });
        var lab = el('label'); lab.appendChild(box); lab.appendChild(document.createTextNode(' ' + k.zh + ' ' + k.en));
        $('st-kinds').appendChild(lab);
      });
      useChanged();
    }).catch(function (e) { $('st-hint').textContent = e.message; });

    // ---- drawing
    function hint(text) { $('st-hint').textContent = text || ''; }
    function setMode(m) {
      if (mode === 'polygon' && m !== 'polygon') { map.doubleClickZoom.enable(); }
      // (while on, a click on a map feature is a vertex of the site, not a feature's details; left alone when
      // this panel was not picking, so that clearing it never turns off another panel's picking)
      if (!!m !== !!mode) { api.picking(!!m); }
      mode = m;
      $('st-point').classList.toggle('st-on', mode === 'point');
      $('st-polygon').classList.toggle('st-on', mode === 'polygon');
      $('st-finish').disabled = mode !== 'polygon';
      map.getContainer().style.cursor = mode ? 'crosshair' : '';
      if (mode === 'polygon') {
        map.doubleClickZoom.disable();
        hint('单击添加顶点，双击或点“完成”闭合 Click to add vertices; double-click or Finish to close');
      } else if (mode === 'point') { hint('单击地图选点 Click the map to place the site'); }
      else { hint(''); }
    }
    function startDrawing(m) {
      if (mode === m) { setMode(null); return; }
      vertices = []; site = null; layer.clearLayers(); $('st-out').textContent = ''; $('st-out').removeAttribute('data-conflicts');
      setMode(m); redrawSite();
    }
    function redrawSite() {
      siteLayer.clearLayers();
      var style = { color: SITE, weight: 2, dashArray: '5 4', fillColor: SITE, fillOpacity: 0.15, className: 'st-site' };
      if (site && site.type === 'Point') {
        L.circleMarker([site.coordinates[1], site.coordinates[0]], { radius: 7, color: SITE, weight: 2, fillColor: '#fff',
          fillOpacity: 1, className: 'st-site' }).bindTooltip('拟建场址 Proposed site').addTo(siteLayer);
      } else if (site) {
        L.polygon(latlngs({ coordinates: site.coordinates[0] }), style).bindTooltip('拟建场址 Proposed site').addTo(siteLayer);
      } else if (vertices.length) {
        (vertices.length > 2 ? L.polygon(vertices, style) : L.polyline(vertices, style)).addTo(siteLayer);
        vertices.forEach(function (v) { L.circleMarker(v, { radius: 3, color: SITE, weight: 1 }).addTo(siteLayer); });
      }
    }
    function finishPolygon() {
      if (vertices.length < 3) { hint('面至少需要 3 个顶点 A polygon needs at least 3 vertices'); return false; }
      var ring = vertices.map(function (v) { return [v.lng, v.lat]; });
      ring.push(ring[0].slice());
      site = { type: 'Polygon', coordinates: [ring] };
      vertices = []; setMode(null); redrawSite();
      return true;
    }
    map.on('click', function (e) {
      if (mode === 'point') {
        site = { type: 'Point', coordinates: [e.latlng.lng, e.latlng.lat] };
        setMode(null); redrawSite();
      } else if (mode === 'polygon') {
        var last = vertices[vertices.length - 1];
        // (the two clicks of a double-click land on the last vertex: one vertex, not three)
        if (last && map.latLngToContainerPoint(last).distanceTo(e.containerPoint) < 4) { return; }
        vertices.push(e.latlng); redrawSite();
      }
    });
    map.on('dblclick', function () { if (mode === 'polygon') { finishPolygon(); } });
    $('st-point').addEventListener('click', function () { startDrawing('point'); });
    $('st-polygon').addEventListener('click', function () { startDrawing('polygon'); });
    $('st-finish').addEventListener('click', finishPolygon);
    $('st-clear').addEventListener('click', clearAll);

    // ---- the registry's labels and colours (protection classes, GB 18218 levels), from /api/layers
    function loadRegistry() {
      if (registry) { return Promise.resolve(registry); }
      return json('/api/layers').then(function (d) {
        var byId = {};
        (d.layers || []).forEach(function (l) { byId[l.id] = l; });
        function table(layerId, field) {
          var l = byId[layerId], out = {};
          if (!l) { return out; }
          var f = (l.fields || []).filter(function (x) { return x.name === field; })[0];
          var colours = (l.style && l.style.by && l.style.by.field === field && l.style.by.values) || {};
          Object.keys((f && f.codes) || {}).forEach(function (k) { out[k] = { zh: f.codes[k].zh, en: f.codes[k].en, color: colours[k] }; });
          return out;
        }
        var v = byId.safety_violations;
        registry = { classes: table('safety_violations', 'protection_class'), levels: table('hazard_installations', 'level'),
                     red: (v && v.style && v.style.color) || RED };
        return registry;
      }).catch(function () { return { classes: {}, levels: {}, red: RED }; });
    }
    function label(t, code, fallback) { var c = t[code]; return c ? c.zh + ' ' + c.en : (fallback || String(code)); }

    // ---- the check
    // The request body; throws on people that are not a whole number ≥ 0 ("1e3" is 1000, "1.5" is refused).
    function body() {
      var use = $('st-use').value, b = { geometry: site, use: use };
      if (isInstallation(use)) {
        if ($('st-level').value) { b.level = Number($('st-level').value); }
        var kinds = Array.prototype.filter.call(panel.querySelectorAll('.st-kind'), function (c) { return c.checked; })
          .map(function (c) { return c.value; });
        if (kinds.length) { b.kinds = kinds; }
      } else {
        var f = $('st-people'), people = Number(f.value.trim());
        if (f.validity.badInput || !Number.isInteger(people) || people < 0) {
          throw new Error('人数须为不小于 0 的整数 People must be a whole number, 0 or more');
        }
        if (f.value.trim() !== '') { b.people = people; }
      }
      return b;
    }
    function run() {
      if (mode === 'polygon' && vertices.length >= 3) { finishPolygon(); }
      if (!site) { showError(new Error('先在地图上画出拟建场址（点或面）Draw the proposed site first (point or polygon)')); return; }
      if (mode) { setMode(null); }
      var request;
      try { request = body(); } catch (e) { seq++; layer.clearLayers(); showError(e); return; }
      var mine = ++seq;
      layer.clearLayers();
      $('st-out').removeAttribute('data-conflicts');
      $('st-out').textContent = '检查中… Checking…';
      Promise.all([json('/analysis/siting-check', { method: 'POST', body: JSON.stringify(request) }), loadRegistry()])
        .then(function (r) { if (mine === seq) { show(r[0], r[1], request); } })
        .catch(function (e) { if (mine === seq) { showError(e); } });
    }
    $('st-run').addEventListener('click', run);

    function showError(e) {
      var out = $('st-out'); out.textContent = ''; out.removeAttribute('data-conflicts');
      out.appendChild(el('div', { 'class': 'st-error' }, '✗ ' + e.message));
    }

    // How the proposed receptor's GB 36894 class was set: by its use (high-sensitive, important: people do not
    // count) or by its people, given or the default. `by` ('kind' | 'people') and the class are the answer's
    // (assumed.protection_class_from), else the class is the conflicts' (all have the proposal's class); with
    // neither, whether people count is not known.
    function classNote(a, list, reg, given) {
      var from = a.protection_class_from, cls = from.protection_class || (list[0] && list[0].protection_class);
      var byUse = from.by ? from.by === 'kind' : (cls ? !/^general/.test(cls) : null);
      var n = from.people, what = cls ? ': ' + label(reg.classes, cls) : '';
      if (byUse) { return '按用途定类 Class set by the use' + what; }
      var note = given ? '按人数 ' + n + ' 人定类 Class from ' + n + ' people'
        : '未填人数，按默认 ' + n + ' 人定类 People not given: class from the default ' + n + ' people';
      return note + (byUse === null ? '（若该用途按人数定类 if the use\'s class depends on people）' : what);
    }

    function show(r, reg, request) {
      var out = $('st-out'), list = r.conflicts || [];
      var nearInstallation = r.direction === 'proposal_near_installation';
      out.textContent = '';
      out.setAttribute('data-conflicts', String(list.length));
      var verdict = el('div', { 'class': 'st-verdict-line' });
      verdict.appendChild(el('span', { 'class': 'st-verdict ' + (list.length ? 'st-fail' : 'st-pass') },
        list.length ? '不符合 Not compliant' : '符合 Compliant'));
      verdict.appendChild(document.createTextNode(' ' + (list.length
        ? list.length + ' 处安全防护距离不足 safety-distance conflict' + (list.length > 1 ? 's' : '')
        : '无冲突：与现有' + (nearInstallation ? '危险源' : '防护目标') + '均满足安全防护距离 No conflict: every ' +
          (nearInstallation ? 'hazard installation' : 'receptor') + ' is at or beyond its required distance')));
      out.appendChild(verdict);
      out.appendChild(el('div', { 'class': 'st-muted' }, nearInstallation
        ? '拟建防护目标对照现有危险源 Proposed receptor checked against existing installations'
        : '拟建设施对照现有防护目标 Proposed installation checked against existing receptors'));
      var a = r.assumed || {};
      if (a.protection_class_from) {
        out.appendChild(el('div', { 'class': 'st-muted st-assumed' }, classNote(a, list, reg, request.people != null)));
      } else if (a.level) {
        out.appendChild(el('div', { 'class': 'st-muted st-assumed' }, '按 Assumed: ' + label(reg.levels, a.level, a.level + '级') +
          ' · ' + namedAll(choices.kinds, a.kinds || [])));
      }
      if (r.run && r.run.stale) {
        out.appendChild(el('div', { 'class': 'st-warn' }, '⚠ 危险源分级已过期（数据已改动），请重新运行分析 ' +
          'The installations\' grading is stale (data changed): re-run the hazchem analysis'));
      } else if (!r.run && nearInstallation) {
        out.appendChild(el('div', { 'class': 'st-warn' }, '⚠ 尚未运行危险源分级，危险类型未知 ' +
          'The hazchem analysis has not run: installations\' hazard kinds are unknown'));
      }
      var lines = [];
      list.forEach(function (c, i) {
        var name = nearInstallation ? c.installation_name : c.receptor_name;
        var line = null;
        if (c.line && c.line.coordinates && c.line.coordinates.length) {
          line = L.polyline(latlngs(c.line), { color: reg.red, weight: 4, opacity: 0.9, className: 'st-line' })
            .bindTooltip((name || '') + ': ' + metres(c.distance_m) + ' < ' + metres(c.required_m)).addTo(layer);
          // the conflicting feature's end of the shortest line (installation → receptor)
          var end = nearInstallation ? c.line.coordinates[0] : c.line.coordinates[c.line.coordinates.length - 1];
          var dot = nearInstallation ? reg.levels[c.level] : reg.classes[c.protection_class];
          L.circleMarker([end[1], end[0]], { radius: 6, color: reg.red, weight: 2, fillColor: (dot && dot.color) || reg.red,
            fillOpacity: 0.9, className: 'st-end' }).addTo(layer);
        }
        lines.push(line);
        out.appendChild(row(c, i, name, nearInstallation, reg, line));
      });
      highlight(list, nearInstallation, reg);
      // the site and its conflicts in view (no animation: the map is where it ends at once)
      var all = siteLayer.getLayers().concat(layer.getLayers());
      if (list.length && all.length) {
        api.fitBeside(L.featureGroup(all).getBounds(), panel, { maxZoom: 17, animate: false });
      }
    }

    function row(c, i, name, nearInstallation, reg, line) {
      var r = el('div', { 'class': 'st-conflict', 'data-index': String(i), 'data-distance': String(c.distance_m),
                          'data-required': String(c.required_m), 'data-id': String(nearInstallation ? c.installation_id : c.receptor_id) });
      var dotCode = nearInstallation ? reg.levels[c.level] : reg.classes[c.protection_class];
      var head = el('div');
      var dot = el('span', { 'class': 'st-dot' });
      dot.style.background = (dotCode && dotCode.color) || reg.red;
      head.appendChild(dot);
      head.appendChild(el('b', null, (i + 1) + '. ' + (nearInstallation ? '危险源 Installation' : '防护目标 Receptor') + ': ' +
        (name || '—')));
      if (c.synthetic) { head.appendChild(el('span', { 'class': 'st-badge st-synthetic' }, '合成 Synthetic')); }
      r.appendChild(head);
      var what = nearInstallation
        ? (c.level ? label(reg.levels, c.level) : '未定级 not graded') +
          (c.kinds && c.kinds.length ? ' · ' + namedAll(choices.kinds, String(c.kinds).split(',')) : '')
        : named(choices.receptor_uses, c.receptor_kind) + ' · ' + label(reg.classes, c.protection_class);
      r.appendChild(el('div', null, what + (nearInstallation ? ' ↔ ' + label(reg.classes, c.protection_class) : '')));
      var d = el('div');
      d.appendChild(document.createTextNode('要求 Required ' + metres(c.required_m) + ' · 实际 Actual ' + metres(c.distance_m) + ' · '));
      d.appendChild(el('span', { 'class': 'st-short' }, '不足 Short by ' + metres(c.shortfall_m)));
      r.appendChild(d);
      r.appendChild(el('div', { 'class': 'st-muted' }, '规则 Rule #' + (c.rule_id == null ? '—' : c.rule_id) + ' · 依据 Basis: ' +
        (c.basis || '—')));
      r.addEventListener('click', function () {
        if (line) { api.fitBeside(line.getBounds(), panel, { maxZoom: 17 }); line.openTooltip(); }
      });
      return r;
    }

    // The conflicting installations outlined in red (the first FEATURE_LOOKUPS; receptors are points: their dot).
    function highlight(list, nearInstallation, reg) {
      if (!nearInstallation) { return; }
      var mine = seq;
      list.slice(0, FEATURE_LOOKUPS).forEach(function (c) {
        if (c.installation_id == null) { return; }
        json('/collections/hazard_installations/items/' + encodeURIComponent(c.installation_id)).then(function (f) {
          if (mine !== seq || !f.geometry) { return; }
          L.geoJSON(f.geometry, { style: { color: reg.red, weight: 3, fill: false, className: 'st-feature' } }).addTo(layer);
        }).catch(function () { /* (the outline is extra: the conflict itself is listed and drawn) */ });
      });
    }

    return { panel: panel, layer: layer, run: run };
  }

  window.RiskmapPanels.siting = { init: init };
})();
