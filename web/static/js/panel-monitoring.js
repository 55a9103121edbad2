/* Monitoring panel (在线监测预警): open alarms, acknowledgement, and each monitored asset's recent
 * readings drawn as inline SVG charts with their blue/yellow/orange/red thresholds.
 *
 * Usage (wired by the page): RiskmapPanels.monitoring.init(map, api)
 *   map: the Leaflet map; api: { token(), request(path, opts) -> Promise<Response>, json(path, opts) -> Promise<body>, itemPath(layer, id),
 *   fmtNum(v, digits) and fmtTime(v, form) (the page's number and Beijing-time formats; `chart` uses them, so call
 *   it after init), box(opts),
 *   placeBelow(panel, toggle), ... } from the page (onemap.js), which holds the login token. The panel opens under
 *   the top-right controls (api.placeBelow), clear of its 预警 Alarms button however wide its counts make it.
 * Endpoints: GET /monitoring/alarms, GET /monitoring/alarms/{id}, POST /monitoring/alarms/{id}/ack,
 *            GET /monitoring/assets/{asset_layer}/{asset_id}?hours=48, GET /monitoring/daily,
 *            GET /collections/{asset_layer}/items/{asset_id} (a clicked alarm's asset, fitted beside the panel).
 * The map colours assets through the registry layer `monitored_assets` (field alarm_level); when the
 * set of open alarms changes, this panel redraws that layer's tiles.
 * When the one-map's feature panel (#om-panel-body) shows a tailings pond, a hazard installation, a
 * monitored asset or a sensor, a "在线监测 Monitoring" section with the charts is appended to it.
 * By role (GET /auth/me `can`, through api.can / api.onAccess): the 预警 Alarms button, the polling and that
 * section only with `monitoring_read`, the 确认 Acknowledge button only with `monitoring_ack`; another
 * role's login closes the panel.
 * Offline: no external asset, no chart library. ES2017 syntax only.
 */
(function () {
  'use strict';
  window.RiskmapPanels = window.RiskmapPanels || {};

  var LEVELS = {
    normal: ['正常', 'Normal', '#2e7d32'], blue: ['蓝色预警', 'Blue', '#1e64c8'], yellow: ['黄色预警', 'Yellow', '#ffd700'],
    orange: ['橙色预警', 'Orange', '#ff8c00'], red: ['红色预警', 'Red', '#e60012']
  };
  var ORDER = ['red', 'orange', 'yellow', 'blue'];
  var ASSETS = { tailings_ponds: '尾矿库 Tailings pond', hazard_installations: '重大危险源 Hazard installation' };
  var EVENTS = { open: '开启 open', escalate: '升级 escalate', deescalate: '降级 de-escalate', close: '关闭 close', ack: '确认 ack' };
  var CSS = '.mo-toggle{background:#fff;padding:4px 8px;cursor:pointer;font-weight:bold;border-radius:4px;white-space:nowrap}' +
    '.mo-toggle .mo-n{display:inline-block;min-width:16px;padding:0 4px;margin-left:3px;border-radius:8px;color:#fff;text-align:center}' +
    // (under the top-right controls, which it must not cover: api.placeBelow sets top and max-height when it shows)
    '.mo-panel{position:absolute;z-index:1000;top:84px;right:10px;width:380px;max-height:calc(100% - 124px);overflow:auto;' +
    'background:#fff;border:1px solid #999;border-radius:4px;padding:8px;font:12px/1.4 sans-serif;box-shadow:0 1px 5px #0004}' +
    '.mo-chip{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-weight:bold}' +
    '.mo-chip.yellow{color:#333}.mo-alarm{border-bottom:1px dotted #ccc;padding:4px 0;cursor:pointer}' +
    '.mo-alarm:hover{background:#fff4d6}.mo-muted{color:#777}.mo-warn{color:#a00}.mo-panel h4,.mo-section h4{margin:8px 0 2px}' +
    '.mo-sensor{margin:6px 0;border-top:1px solid #eee;padding-top:4px}.mo-chart{display:block;width:100%;height:auto}' +
    '.mo-panel button,.mo-section button{margin:4px 4px 0 0}.mo-hist{margin:2px 0 0 8px}';

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }
  function levelName(level) { var l = LEVELS[level]; return l ? l[0] + ' ' + l[1] : String(level); }
  function chip(level) {
    return el('span', { 'class': 'mo-chip ' + level, style: 'background:' + (LEVELS[level] || [0, 0, '#777'])[2] }, levelName(level));
  }
  // Times as 'MM-DD HH:MM' in Beijing time (onemap.js fmtTime, set by init), labelled 北京时间 Beijing time where shown.
  var pageTime = null;
  function fmtTime(iso) { return pageTime(iso, 'short'); }
  var BEIJING = '北京时间 Beijing time';
  // A reading as the page shows numbers (onemap.js fmtNum, set by init), to about 3 significant digits of `scale`
  // (the value itself, or the span of a chart's axis): 55.12, 0.0123, 1,235, 1.08×10²⁵.
  var pageFmt = null;
  function fmtNum(v, scale) {
    var a = Math.abs(scale == null ? v : scale);
    return pageFmt(v, a > 0 && isFinite(a) ? Math.min(6, Math.max(0, 2 - Math.floor(Math.log10(a)))) : 2);
  }

  var SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }

  /* One sensor's readings as an SVG line chart with dashed threshold lines (and a rate note). */
  function chart(sensor) {
    var W = 360, H = 110, L = 44, R = 6, T = 8, B = 18;
    var pts = (sensor.readings || []).map(function (r) { return [new Date(r[0]).getTime(), r[1]]; });
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, 'class': 'mo-chart', role: 'img',
      'aria-label': sensor.kind_zh + ' ' + sensor.kind_en + ' ' + sensor.code });
    if (!pts.length) {
      root.appendChild(svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', fill: '#777', 'font-size': 11 },
        '无读数 No readings in the period'));
      return root;
    }
    var th = sensor.thresholds || {}, lines = [];
    ORDER.forEach(function (lv) { if (th[lv] != null) { lines.push([lv, th[lv]]); } });
    var ys = pts.map(function (p) { return p[1]; });
    var lo = Math.min.apply(null, ys), hi = Math.max.apply(null, ys);
    // keep the nearest thresholds in view so the reader sees how close the values are
    lines.forEach(function (l) {
      var span = Math.max(hi - lo, Math.abs(hi) * 0.05, 1e-6);
      if (l[1] >= lo - span && l[1] <= hi + span) { lo = Math.min(lo, l[1]); hi = Math.max(hi, l[1]); }
    });
    if (hi === lo) { hi += 1; lo -= 1; }
    var pad = (hi - lo) * 0.08; lo -= pad; hi += pad;
    var t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    if (t1 === t0) { t1 = t0 + 1; }
    var x = function (t) { return L + (W - L - R) * (t - t0) / (t1 - t0); };
    var y = function (v) { return T + (H - T - B) * (hi - v) / (hi - lo); };
    root.appendChild(svg('rect', { x: L, y: T, width: W - L - R, height: H - T - B, fill: '#fafafa', stroke: '#ddd' }));
    lines.forEach(function (l) {
      if (l[1] < lo || l[1] > hi) { return; }
      root.appendChild(svg('line', { x1: L, x2: W - R, y1: y(l[1]), y2: y(l[1]), stroke: LEVELS[l[0]][2],
        'stroke-width': 1.2, 'stroke-dasharray': '4 3' }));
      root.appendChild(svg('text', { x: W - R - 2, y: y(l[1]) - 2, 'text-anchor': 'end', 'font-size': 9,
        fill: LEVELS[l[0]][2] === '#ffd700' ? '#b59a00' : LEVELS[l[0]][2] }, fmtNum(l[1], hi - lo)));
    });
    var d = pts.map(function (p, i) { return (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1); }).join(' ');
    root.appendChild(svg('path', { d: d, fill: 'none', stroke: '#333', 'stroke-width': 1.3 }));
    var last = pts[pts.length - 1];
    root.appendChild(svg('circle', { cx: x(last[0]), cy: y(last[1]), r: 2.8,
      fill: (LEVELS[sensor.alarm_level] || LEVELS.normal)[2], stroke: '#333', 'stroke-width': 0.6 }));
    [[hi, T + 8], [lo, H - B]].forEach(function (a) {
      root.appendChild(svg('text', { x: L - 3, y: a[1], 'text-anchor': 'end', 'font-size': 9, fill: '#555', 'class': 'mo-axis' },
        fmtNum(a[0], hi - lo)));
    });
    root.appendChild(svg('text', { x: 2, y: (H - B) / 2 + 4, 'font-size': 9, fill: '#555' }, sensor.unit));
    root.appendChild(svg('text', { x: L, y: H - 5, 'font-size': 9, fill: '#555' }, fmtTime(pts[0][0])));
    root.appendChild(svg('text', { x: (L + W - R) / 2, y: H - 5, 'text-anchor': 'middle', 'font-size': 9, fill: '#777' }, BEIJING));
    root.appendChild(svg('text', { x: W - R, y: H - 5, 'text-anchor': 'end', 'font-size': 9, fill: '#555' },
      fmtTime(last[0])));
    return root;
  }

  function init(map, api) {
    pageFmt = api.fmtNum;
    pageTime = api.fmtTime;
    var style = el('style'); style.textContent = CSS; document.head.appendChild(style);
    var lastSignature = null, timer = null;

    // The page (onemap.js) passes api = {token(), request(path, opts), json(path, opts), box(opts), ...}: one fetch
    // helper and one panel box with its toggle button for all panels.
    var token = api.token;
    function json(path, opts) { opts = opts || {}; return api.json(path, opts); }

    // ---- panel and its toggle (api.box), with the count of open alarms by colour
    function allowed(key) { return !api.can || api.can(key); }
    var box = api.box({ className: 'mo-panel', position: 'topright', button: 'mo-toggle',
      title: '在线监测预警 Online monitoring alarms', label: '预警 Alarms', toggled: function (open) { if (open) { loadAlarms(); } },
      html: '<b>在线监测预警 Monitoring alarms</b> <span class="mo-muted">未关闭 open, 高等级在前 highest first · ' +
      BEIJING + '</span>' +
      '<div><label><input type="checkbox" id="mo-all"> 含已关闭 include closed</label> ' +
      '<label>级别 Level <select id="mo-level"><option value="">全部 All</option>' +
      ORDER.map(function (lv) { return '<option value="' + lv + '">' + levelName(lv) + '</option>'; }).join('') + '</select></label> ' +
      '<button type="button" id="mo-refresh">刷新 Refresh</button><button type="button" id="mo-close">关闭 Close</button></div>' +
      '<div id="mo-daily" class="mo-muted"></div><div id="mo-where" class="mo-warn"></div><div id="mo-detail"></div>' +
      '<div id="mo-list"></div>' });
    var panel = box.panel, toggle = box.toggle, $ = box.$;
    var count = el('span');
    toggle.appendChild(count);
    $('mo-refresh').addEventListener('click', function () { loadAlarms(); });
    $('mo-close').addEventListener('click', function () { panel.hidden = true; });
    $('mo-all').addEventListener('change', function () { loadAlarms(); });
    $('mo-level').addEventListener('change', function () { renderList(); });

    function renderCount(alarms) {
      count.innerHTML = '';
      var by = {};
      alarms.forEach(function (a) { by[a.level] = (by[a.level] || 0) + 1; });
      ORDER.forEach(function (lv) {
        if (by[lv]) { count.appendChild(el('span', { 'class': 'mo-n', style: 'background:' + LEVELS[lv][2] + (lv === 'yellow' ? ';color:#333' : '') }, String(by[lv]))); }
      });
    }

    function redrawAssets(alarms) {
      var sig = alarms.map(function (a) { return a.id + ':' + a.level; }).join(',');
      if (sig === lastSignature) { return; }
      lastSignature = sig;
      var om = window.onemap, layer = om && om.layers && om.layers.monitored_assets;
      if (layer && layer.grid && typeof layer.grid.redraw === 'function') { layer.grid.redraw(); }
    }

    function poll() {
      if (!token() || !allowed('monitoring_read')) { count.innerHTML = ''; return Promise.resolve(); }
      return json('/monitoring/alarms').then(function (d) { renderCount(d.alarms); redrawAssets(d.alarms); })
        .catch(function () { count.innerHTML = ''; });
    }

    function loadAlarms() {
      var list = $('mo-list');
      api.placeBelow(panel, toggle);
      list.textContent = '加载中… Loading…';
      var status = $('mo-all').checked ? 'all' : 'open';
      json('/monitoring/daily?days=1').then(function (d) {
        var t = d.totals;
        $('mo-daily').textContent = '今日 Today: 越限 raw crossings ' + t.crossings + ' → 预警 alarms ' + (t.opened + t.escalated) +
          ' (开启 opened ' + t.opened + ', 升级 escalated ' + t.escalated + ')' +
          (t.reduction != null ? ' · 压减 reduction ' + Math.round(t.reduction * 100) + '%' : '');
      }).catch(function () { $('mo-daily').textContent = ''; });
      json('/monitoring/alarms?status=' + status + '&limit=200').then(function (d) {
        if (status === 'open') { renderCount(d.alarms); redrawAssets(d.alarms); }
        alarms = d.alarms;
        renderList();
      }).catch(function (e) { list.innerHTML = ''; list.appendChild(el('div', { 'class': 'mo-warn' }, e.message)); });
    }

    // The loaded alarms (`alarms`) of the chosen level (#mo-level; all when none).
    var alarms = [];
    function renderList() {
      var list = $('mo-list'), level = $('mo-level').value;
      var shown = alarms.filter(function (a) { return !level || a.level === level; });
      list.innerHTML = '';
      if (!shown.length) { list.appendChild(el('div', { 'class': 'mo-muted' }, '无预警 No alarms')); }
      shown.forEach(function (a) {
        var row = el('div', { 'class': 'mo-alarm' });
        row.appendChild(chip(a.level));
        row.appendChild(document.createTextNode(' ' + (a.asset_name || ((ASSETS[a.asset_layer] || a.asset_layer) + ' #' + a.asset_id)) +
          ' · ' + a.item_zh + ' ' + a.item_en));
        row.appendChild(el('div', { 'class': 'mo-muted' }, (a.status === 'open' ? '自 Since ' : '已关闭 Closed ') +
          fmtTime(a.status === 'open' ? a.opened_at : a.closed_at) + ' · 最高 Highest: ' + levelName(a.max_level) +
          (a.acknowledged_by ? ' · ✓ ' + a.acknowledged_by : ' · 未确认 not acknowledged') + (a.synthetic ? ' · 合成 synthetic' : '')));
        row.addEventListener('click', function () { showAlarm(a.id); fitAsset(a.asset_layer, a.asset_id); });
        list.appendChild(row);
      });
    }

    // Fit the map to an alarm's asset (its feature) beside the panel; the last click wins.
    var fitSeq = 0;
    function fitAsset(layer, id) {
      var seq = ++fitSeq;
      $('mo-where').textContent = '';
      json(api.itemPath(layer, id)).then(function (f) {
        if (seq === fitSeq && f.geometry) { api.fitBeside(L.geoJSON(f).getBounds(), panel, { maxZoom: 16 }); }
      }).catch(function (e) { if (seq === fitSeq) { $('mo-where').textContent = '无法定位 Cannot locate: ' + e.message; } });
    }

    // One alarm's details into #mo-detail; `said`: the answer to an acknowledgement, shown beside its button.
    function showAlarm(id, said) {
      var box = $('mo-detail');
      box.textContent = '加载中… Loading…';
      panel.hidden = false;
      panel.scrollTop = 0;
      api.placeBelow(panel, toggle);
      json('/monitoring/alarms/' + id).then(function (a) {
        box.innerHTML = '';
        var hide = el('button', { type: 'button', style: 'float:right' }, '×');
        hide.addEventListener('click', function () { box.innerHTML = ''; });
        box.appendChild(hide);
        box.appendChild(el('h4', null, '预警 Alarm #' + a.id + ' · ' + a.item_zh + ' ' + a.item_en));
        box.appendChild(el('div', null, a.message || ''));
        box.appendChild(el('div', { 'class': 'mo-muted' }, '历史 History (' + BEIJING + ')'));
        var hist = el('div', { 'class': 'mo-hist' });
        a.history.forEach(function (h) {
          var line = el('div');
          line.appendChild(document.createTextNode(fmtTime(h.time) + ' ' + (EVENTS[h.event] || h.event) + ' '));
          line.appendChild(chip(h.level));
          line.appendChild(document.createTextNode((h.user_name ? ' ' + h.user_name : '') + (h.note && h.event === 'ack' ? ' — ' + h.note : '')));
          hist.appendChild(line);
        });
        box.appendChild(hist);
        if (a.acknowledged_by) {  // (acknowledged once per level: the server refuses a second one)
          box.appendChild(el('div', { id: 'mo-acked' }, '✓ 已确认 Acknowledged: ' + a.acknowledged_by + ' ' + fmtTime(a.acknowledged_at)));
        } else {
          var note = el('input', { type: 'text', 'class': 'mo-ack', placeholder: '处置说明 Note (optional)', style: 'width:100%;box-sizing:border-box' });
          var ack = el('button', { type: 'button', 'class': 'mo-ack', id: 'mo-ack' }, '确认 Acknowledge');
          note.hidden = ack.hidden = !allowed('monitoring_ack');
          ack.addEventListener('click', function () {
            // (a refusal, e.g. 409 acknowledged meanwhile by someone else, shows here and the alarm is asked again)
            json('/monitoring/alarms/' + id + '/ack', { method: 'POST', body: JSON.stringify({ note: note.value || null }) })
              .then(function () { showAlarm(id); }, function (e) { showAlarm(id, e.message); })
              .then(loadAlarms);
          });
          box.appendChild(note); box.appendChild(ack);
        }
        if (said) { box.appendChild(el('div', { id: 'mo-ack-msg', 'class': 'mo-warn' }, said)).scrollIntoView({ block: 'nearest' }); }
        var charts = el('div');
        box.appendChild(charts);
        renderAsset(charts, a.asset_layer, assetAnswer(a.asset_layer, a.asset_id));
      }).catch(function (e) { box.textContent = e.message; });
    }

    function assetAnswer(layer, id) {
      return json('/monitoring/assets/' + encodeURIComponent(layer) + '/' + encodeURIComponent(id) + '?hours=48');
    }

    /* An asset's level and its sensors' charts into `box`, from `answer` (the promise of assetAnswer). */
    function renderAsset(box, layer, answer) {
      box.appendChild(el('div', { 'class': 'mo-muted' }, '加载读数… Loading readings…'));
      return answer.then(function (d) {
        box.innerHTML = '';
        if (!d.sensors.length) { box.appendChild(el('div', { 'class': 'mo-muted mo-none' }, '无监测传感器 No monitoring sensors')); return; }
        var head = el('div');
        head.appendChild(el('b', null, (d.name || '') + ' '));
        if (d.alarm_level) { head.appendChild(chip(d.alarm_level)); }
        head.appendChild(el('span', { 'class': 'mo-muted' }, ' ' + (ASSETS[layer] || layer) + ' · 未关闭 open ' + d.open_alarms +
          (d.offline_sensors ? ' · 离线 offline ' + d.offline_sensors : '') + (d.synthetic ? ' · 合成数据 synthetic' : '')));
        box.appendChild(head);
        d.sensors.forEach(function (s) {
          var wrap = el('div', { 'class': 'mo-sensor' });
          var title = el('div');
          title.appendChild(el('b', null, s.kind_zh + ' ' + s.kind_en + ' '));
          title.appendChild(document.createTextNode(s.code + ' · ' + fmtNum(s.last_value) + ' ' + s.unit + ' '));
          title.appendChild(chip(s.alarm_level));
          if (s.offline) { title.appendChild(el('span', { 'class': 'mo-warn' }, ' 离线 offline')); }
          wrap.appendChild(title);
          wrap.appendChild(chart(s));
          var th = s.thresholds;
          if (th && th.rates_per_day) {
            wrap.appendChild(el('div', { 'class': 'mo-muted' }, '速率阈值 Rate limits (' + s.unit + '/d): ' +
              ORDER.slice().reverse().map(function (lv) { return th.rates_per_day[lv] == null ? null : LEVELS[lv][1] + ' ' + th.rates_per_day[lv]; })
                .filter(Boolean).join(', ')));
          }
          box.appendChild(wrap);
        });
      }).catch(function (e) {
        box.innerHTML = '';
        box.appendChild(el('div', { 'class': e.status === 404 ? 'mo-muted' : 'mo-warn' }, e.message));
      });
    }

    // ---- add the charts to the one-map's feature panel for monitored features: asked once per opened feature
    // (the page draws its panel again when the details come and on a language switch: drawn from the same answer)
    function assetOf(sel) {
      if (!sel || sel.id == null) { return null; }
      var p = (sel.detail && sel.detail.properties) || sel.properties || {};
      if (sel.layer === 'tailings_ponds' || sel.layer === 'hazard_installations') { return [sel.layer, sel.id]; }
      if ((sel.layer === 'monitored_assets' || sel.layer === 'monitoring_sensors') && p.asset_layer && p.asset_id != null) {
        return [p.asset_layer, p.asset_id];
      }
      return null;
    }
    var body = document.getElementById('om-panel-body'), asked = {};  // asked: {sel, key, answer} of the last one
    if (body && window.MutationObserver) {
      new MutationObserver(function () {
        var sel = window.onemap && window.onemap.selected;
        var asset = assetOf(sel);
        if (!asset || !token() || !allowed('monitoring_read') || body.querySelector('.mo-section')) { return; }
        var key = asset.join('/') + ' ' + token();
        if (asked.sel !== sel || asked.key !== key) { asked = { sel: sel, key: key, answer: assetAnswer(asset[0], asset[1]) }; }
        var section = el('div', { 'class': 'mo-section' });
        section.appendChild(el('h4', null, '在线监测 Monitoring (48 h)'));
        var inner = el('div');
        section.appendChild(inner);
        body.appendChild(section);
        renderAsset(inner, asset[0], asked.answer);
      }).observe(body, { childList: true });
    }

    // ---- the tools of the role only (the server checks each request all the same)
    var lastRole;
    function applyAccess(me) {
      var read = allowed('monitoring_read');
      toggle.hidden = !read;
      Array.prototype.forEach.call(panel.querySelectorAll('.mo-ack'), function (n) { n.hidden = !allowed('monitoring_ack'); });
      if (!read) {
        panel.hidden = true;
        $('mo-detail').innerHTML = ''; $('mo-list').innerHTML = ''; $('mo-daily').textContent = ''; $('mo-where').textContent = '';
        alarms = [];
        Array.prototype.forEach.call(document.querySelectorAll('.mo-section'), function (n) { n.remove(); });
      }
      var role = me ? me.role : null;
      if (role !== lastRole) { lastRole = role; poll(); }  // (counts for the new role now, not in 30 s)
    }
    if (api.onAccess) { api.onAccess(applyAccess); } else { poll(); }
    timer = setInterval(poll, 30000);
    return { reload: loadAlarms, poll: poll, showAlarm: showAlarm, stop: function () { clearInterval(timer); } };
  }

  window.RiskmapPanels.monitoring = { init: init, chart: chart };
})();
