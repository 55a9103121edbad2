/*
 * onemap.js: the hazardous-chemicals safety risk one-map page (危险化学品安全风险一张图).
 *
 * Plain browser script, no build step, no CDN: Leaflet 1.9.4 and
 * Leaflet.VectorGrid 1.3.0 are vendored under /static/vendor/, and js/compat.js
 * must be loaded after both of them (see that file).
 *
 * Endpoints used (see web/README.md for the contract):
 *   GET /api/config, GET /api/layers, GET /tiles/<id>/{z}/{x}/{y}.pbf,
 *   GET /collections/<id>/items/<fid>, GET /api/search?q=, GET /api/districts,
 *   GET /collections/admin_areas/items?limit=100, GET /auth/me (which topic-panel tools the role may use),
 *   GET /analysis/grading/{id} and GET /analysis/reports/{park|installation|district}/{id} (the feature panel's
 *   GB 18218 grading block and 报告 Report, for roles with `analysis_read`)
 *
 * Syntax is kept to ES2017 (no ?. / ??) so older Chromium-based intranet
 * browsers can run it.
 *
 * State for browser tests: window.onemap (see the bottom of this file).
 */
(function () {
  'use strict';

  // ---------------------------------------------------------------------------
  // UI strings: every label in both languages, in this one dictionary.
  // ---------------------------------------------------------------------------
  var STR = {
    title_default: { zh: '危险化学品安全风险一张图', en: 'Hazardous Chemicals Safety Risk One-Map' },
    toggle_sidebar: { zh: '显示/隐藏侧栏', en: 'Show/hide sidebar' },
    search_placeholder: { zh: '搜索企业、尾矿库、路段…', en: 'Enterprises, ponds, roads…' },
    search_title: { zh: '搜索企业、尾矿库、路段等', en: 'Search enterprises, tailings ponds, roads…' },
    search: { zh: '搜索', en: 'Search' },
    searching: { zh: '正在搜索…', en: 'Searching…' },
    search_none: { zh: '无匹配结果', en: 'No results' },
    search_failed: { zh: '搜索失败', en: 'Search failed' },
    district: { zh: '区县', en: 'District' },
    whole_city: { zh: '全市', en: 'Whole city' },
    switch_lang: { zh: 'English', en: '中文' },
    switch_lang_title: { zh: 'Switch to English', en: '切换到中文' },
    login: { zh: '登录', en: 'Log in' },
    logout: { zh: '退出登录', en: 'Log out' },
    logged_in: { zh: '已登录', en: 'Logged in' },
    role_title: { zh: '角色：{role}', en: 'Role: {role}' },
    token_label: { zh: '访问令牌', en: 'Access token' },
    token_placeholder: { zh: '粘贴访问令牌', en: 'Paste access token' },
    login_submit: { zh: '登录', en: 'Log in' },
    cancel: { zh: '取消', en: 'Cancel' },
    token_empty: { zh: '请输入访问令牌', en: 'Enter an access token' },
    token_invalid: { zh: '令牌无效或已过期，已退出登录', en: 'Token invalid or expired; logged out' },
    token_rejected: { zh: '令牌未被接受（无效或已过期）', en: 'Token not accepted (invalid or expired)' },
    token_checking: { zh: '正在验证令牌…', en: 'Checking the token…' },
    login_ok: { zh: '已登录，图层已刷新', en: 'Logged in; layers reloaded' },
    logout_ok: { zh: '已退出登录，图层已刷新', en: 'Logged out; layers reloaded' },
    login_hint: { zh: '部分图层需登录后查看', en: 'Some layers need a login' },
    layers: { zh: '图层', en: 'Layers' },
    legend: { zh: '图例', en: 'Legend' },
    district_overview: { zh: '区县概况', en: 'District overview' },
    choropleth: { zh: '分级设色', en: 'Choropleth' },
    close: { zh: '关闭', en: 'Close' },
    banner: { zh: '含合成数据 / Contains synthetic data', en: 'Contains synthetic data / 含合成数据' },
    banner_layers: { zh: '合成数据图层：', en: 'Synthetic layers: ' },
    synthetic: { zh: '合成', en: 'Synthetic' },
    synthetic_title: { zh: '该图层为合成演示数据', en: 'This layer holds synthetic demo data' },
    restricted: { zh: '内部', en: 'Restricted' },
    restricted_title: { zh: '仅登录用户可见', en: 'Visible to logged-in users only' },
    zoom_in_to_see: { zh: '放大至 {z} 级后显示', en: 'Shown from zoom {z}' },
    no_layers: { zh: '暂无可用图层', en: 'No layers available' },
    no_visible_layers: { zh: '未显示任何图层', en: 'No layers shown' },
    basemap: { zh: '基础底图', en: 'Basemap tiles' },
    theme_hazchem: { zh: '危化品', en: 'Hazardous chemicals' },
    theme_tailings: { zh: '尾矿库', en: 'Tailings ponds' },
    theme_transport: { zh: '道路运输', en: 'Road transport' },
    theme_emergency: { zh: '应急资源', en: 'Emergency resources' },
    theme_base: { zh: '底图', en: 'Base map' },
    theme_other: { zh: '其他', en: 'Other' },
    cluster_legend: { zh: '聚合点（数字为数量，点击放大）', en: 'Cluster (number = count, click to zoom in)' },
    panel_loading: { zh: '正在加载详情…', en: 'Loading details…' },
    panel_detail_ok: { zh: '已加载完整详情', en: 'Full details loaded' },
    panel_detail_404: { zh: '未找到该要素的详情，仅显示图块属性', en: 'No details found; showing tile attributes' },
    panel_detail_auth: { zh: '需登录后查看详情，仅显示图块属性', en: 'Log in to see details; showing tile attributes' },
    panel_detail_failed: { zh: '详情加载失败，仅显示图块属性', en: 'Could not load details; showing tile attributes' },
    panel_no_id: { zh: '该要素无编号，仅显示图块属性', en: 'Feature has no id; showing tile attributes' },
    all_properties: { zh: '全部属性', en: 'All properties' },
    feature_id: { zh: '要素编号', en: 'Feature ID' },
    coordinates: { zh: '坐标', en: 'Coordinates' },
    zoom_to: { zh: '缩放至', en: 'Zoom to' },
    yes: { zh: '是', en: 'Yes' },
    beijing_time: { zh: '北京时间', en: 'Beijing time' },
    no: { zh: '否', en: 'No' },
    th_name: { zh: '区县', en: 'District' },
    th_parks: { zh: '园区', en: 'Parks' },
    th_parks_title: { zh: '化工园区数量', en: 'Chemical parks' },
    th_inst: { zh: '重大危险源', en: 'Major hazard installations' },
    th_level_1: { zh: '一级', en: 'L1' },
    th_level_2: { zh: '二级', en: 'L2' },
    th_level_3: { zh: '三级', en: 'L3' },
    th_level_4: { zh: '四级', en: 'L4' },
    th_ponds: { zh: '尾矿库', en: 'Ponds' },
    th_ponds_title: { zh: '尾矿库数量', en: 'Tailings ponds' },
    th_headtop: { zh: '头顶库', en: 'Head-top' },
    th_headtop_title: { zh: '头顶库（下游有居民或重要设施的尾矿库）', en: 'Head-top tailings ponds (people or key facilities downstream)' },
    th_blackspots: { zh: '黑点', en: 'Black-spots' },
    th_blackspots_title: { zh: '道路运输事故多发点段', en: 'Road transport accident black-spots' },
    th_population: { zh: '人口', en: 'Pop.' },
    th_population_title: { zh: '常住人口', en: 'Resident population' },
    total: { zh: '合计', en: 'Total' },
    outside: { zh: '区外', en: 'Outside districts' },
    outside_title: { zh: '不在任何区县界内的对象（如市界外的道路）', en: 'Objects in no district (e.g. roads beyond the city boundary)' },
    metric_parks: { zh: '化工园区', en: 'Chemical parks' },
    metric_installations: { zh: '重大危险源（合计）', en: 'Major hazard installations (all)' },
    metric_installations_1: { zh: '一级重大危险源', en: 'Level-1 major hazard installations' },
    metric_tailings_ponds: { zh: '尾矿库', en: 'Tailings ponds' },
    metric_headtop_ponds: { zh: '头顶库', en: 'Head-top tailings ponds' },
    metric_blackspots: { zh: '事故多发点段', en: 'Accident black-spots' },
    metric_population: { zh: '人口', en: 'Population' },
    metric_unavailable: { zh: '当前用户无此数据', en: 'Not available to you' },
    choropleth_legend: { zh: '分级设色：{m}', en: 'Choropleth: {m}' },
    no_data: { zh: '无数据', en: 'No data' },
    no_districts: { zh: '暂无区县统计', en: 'No district statistics' },
    config_failed: { zh: '无法加载地图配置', en: 'Could not load the map configuration' },
    layers_failed: { zh: '无法加载图层列表', en: 'Could not load the layer list' },
    stale: { zh: '待更新', en: 'Stale' },
    edit: { zh: '编辑', en: 'Edit' },
    edit_title: { zh: '修改此要素的属性（位置不变）', en: 'Change this feature\'s attributes (its place stays)' },
    delete: { zh: '删除', en: 'Delete' },
    save: { zh: '保存', en: 'Save' },
    cancel: { zh: '取消', en: 'Cancel' },
    delete_confirm: { zh: '删除要素“{name}”？此操作不可撤销。', en: 'Delete the feature "{name}"? This cannot be undone.' },
    saved: { zh: '已保存', en: 'Saved' },
    deleted: { zh: '已删除', en: 'Deleted' },
    stale_title: { zh: '{when} 计算后输入（{inputs}）已改动：结果待重新计算（riskmap analyze {analysis}）',
                   en: 'Its inputs ({inputs}) changed since it was computed at {when}: to be recomputed (riskmap analyze {analysis})' },
    retrying: { zh: '（自动重试中）', en: '(retrying automatically)' },
    reconnected: { zh: '服务已恢复，图层已重新加载', en: 'Service restored: layers reloaded' },
    districts_failed: { zh: '区县统计加载失败', en: 'Could not load district statistics' },
    admin_failed: { zh: '无法加载行政区划边界', en: 'Could not load district boundaries' },
    home: { zh: '全市范围', en: 'Whole city' },
    zoom_in: { zh: '放大', en: 'Zoom in' },
    zoom_out: { zh: '缩小', en: 'Zoom out' },
    zoom_label: { zh: '级别', en: 'Zoom' },
    district_panel: { zh: '区县概况', en: 'District overview' },
    loading: { zh: '加载中…', en: 'Loading…' },
    grading: { zh: 'GB 18218 分级', en: 'GB 18218 grading' },
    grading_level: { zh: '级别', en: 'Level' },
    grading_not_major: { zh: '未构成重大危险源', en: 'Not a major hazard' },
    grading_people: { zh: '暴露人数', en: 'Exposed people' },
    grading_substance: { zh: '物质', en: 'Substance' },
    report: { zh: '报告', en: 'Report' },
    report_title: { zh: '下载离线 HTML 报告（地图与汇总表）', en: 'Download the offline HTML report (map and summary tables)' },
    report_loading: { zh: '正在生成报告…', en: 'Generating the report…' }
  };

  var THEMES = ['hazchem', 'tailings', 'transport', 'emergency', 'base'];

  // Colours and labels of coded values (the 红橙黄蓝 risk grades among them) are the layer registry's, from
  // /api/layers: style.by.values, legend and fields[].codes. The page keeps no palette of its own.

  // Sequential palette for the district choropleth (kept clear of the risk colours).
  var CHORO_COLORS = ['#f2f0f7', '#cbc9e2', '#9e9ac8', '#756bb1', '#54278f'];
  var CHORO_ZERO = '#ffffff';
  var CHORO_MISSING = '#d0d0d0';

  var METRICS = [
    { key: 'installations', get: function (d) { return sumLevels(d.installations_by_level); } },
    { key: 'installations_1', get: function (d) { return level(d, '1'); } },
    { key: 'parks', get: function (d) { return num(d.parks); } },
    { key: 'tailings_ponds', get: function (d) { return num(d.tailings_ponds); } },
    { key: 'headtop_ponds', get: function (d) { return num(d.headtop_ponds); } },
    { key: 'blackspots', get: function (d) { return num(d.blackspots); } },
    { key: 'population', get: function (d) { return num(d.population); } }
  ];

  var LS_TOKEN = 'onemap.token';
  var LS_LANG = 'onemap.lang';
  var DEFAULT_VIEW = { center: [102.71, 25.04], zoom: 9 }; // Kunming, used only if /api/config fails

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------
  var params = new URLSearchParams(window.location.search);
  var state = {
    lang: pickLang(),
    token: storageGet(LS_TOKEN) || null,
    renderer: params.get('renderer') === 'canvas' ? 'canvas' : 'svg',
    config: null,
    configFailed: false,
    down: false,        // the layer list failed for want of the server or its database: retried (retryLater)
    retryTimer: null,
    layerDefs: [],
    layers: {},          // id -> entry {id, def, grid, visible, index}
    layerOrder: [],      // ids in server order
    visibility: {},      // id -> bool set by the user; survives layer reloads
    basemap: null,       // L.TileLayer or null
    basemapVisible: true,
    districts: [],
    outside: null,  // counts of the objects in no district (/api/districts `outside`)
    districtSort: { key: null, dir: 1 },
    selectedDistrict: '',
    adminGeo: null,      // GeoJSON FeatureCollection from /collections/admin_areas/items
    adminGeoPromise: null,
    districtOutline: null,
    choropleth: { on: false, metric: 'installations', picked: null, layer: null, breaks: [] },  // picked: the user's metric
    selected: null,      // {layer, id, properties, detail, latlng, status}
    highlight: null,
    searchResults: [],
    searchSeq: 0,
    detailSeq: 0,
    layersSeq: 0,
    districtsSeq: 0,
    me: null,            // GET /auth/me for the current token ({name, role, can}); null: unknown (every tool shown)
    meSeq: 0,
    accessReady: null,   // the promise of the latest /auth/me request
    picking: false       // a topic panel picks points on the map (api.picking)
  };
  // The token is a property with a setter: whatever sets it (login, logout, a refused token, a test or the
  // console), the tools shown are asked for again (refreshAccess, below).
  (function () {
    var token = state.token;
    Object.defineProperty(state, 'token', {
      enumerable: true,
      get: function () { return token; },
      set: function (v) {
        v = v || null;
        if (v === token) { return; }
        token = v;
        refreshAccess();
      }
    });
  }());

  function pickLang() {
    var p = params.get('lang');
    if (p === 'en' || p === 'zh') { return p; }
    var s = storageGet(LS_LANG);
    return s === 'en' ? 'en' : 'zh';
  }

  function storageGet(k) {
    try { return window.localStorage.getItem(k); } catch (e) { return null; }
  }
  function storageSet(k, v) {
    try {
      if (v === null || v === undefined) { window.localStorage.removeItem(k); } else { window.localStorage.setItem(k, v); }
    } catch (e) { /* storage disabled: keep the value in memory only */ }
  }

  // ---------------------------------------------------------------------------
  // Small helpers
  // ---------------------------------------------------------------------------
  function t(key, vars) {
    var e = STR[key];
    var s = e ? (e[state.lang] || e.zh) : key;
    if (vars) {
      Object.keys(vars).forEach(function (k) { s = s.split('{' + k + '}').join(String(vars[k])); });
    }
    return s;
  }

  // Pick the current-language variant of a server field pair (x_zh / x_en).
  function loc(obj, base) {
    if (!obj) { return ''; }
    var a = obj[base + '_' + state.lang];
    var b = obj[base + '_' + (state.lang === 'en' ? 'zh' : 'en')];
    return (a !== undefined && a !== null && a !== '') ? a : (b !== undefined && b !== null ? b : '');
  }

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, children) {
    var n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === undefined || v === null || v === false) { return; }
        if (k === 'text') { n.textContent = v; } else if (k === 'className') { n.className = v; } else if (k === 'style') { n.style.cssText = v; /* CSSOM, allowed under a strict CSP */ } else if (k.indexOf('on') === 0 && typeof v === 'function') { n.addEventListener(k.slice(2), v); } else { n.setAttribute(k, v === true ? '' : v); }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) { return; }
      n.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return n;
  }

  function clear(n) { while (n.firstChild) { n.removeChild(n.firstChild); } return n; }

  // District numbers; null where the caller may not see the layer (the API sends null): shown as '—', not 0.
  function num(v) { if (v === null || v === undefined) { return null; } var n = Number(v); return isFinite(n) ? n : null; }
  function level(d, k) { return d && d.installations_by_level ? num(d.installations_by_level[k]) || 0 : null; }
  function sumLevels(o) {  // the major hazard installations: levels 1..4 (not 'none', those without a level)
    if (!o) { return null; }
    return ['1', '2', '3', '4'].reduce(function (a, k) { return a + (num(o[k]) || 0); }, 0);
  }

  // A number in the page's locale with at most `digits` decimals (default 6); from 10⁹ up and below 10⁻⁴ (not 0)
  // as 3 significant digits ×10ⁿ (1.08×10²⁵). The topic panels use it too (api.fmtNum).
  function fmtNum(v, digits) {
    if (v === null || v === undefined || v === '') { return '—'; }
    var n = Number(v);
    if (!isFinite(n)) { return String(v); }
    var a = Math.abs(n);
    if (a >= 1e9 || (a > 0 && a < 1e-4)) {
      var p = n.toExponential(2).split('e');
      return String(Number(p[0])) + '×10' + String(Number(p[1])).replace(/[-\d]/g, function (c) { return '⁻⁰¹²³⁴⁵⁶⁷⁸⁹'.charAt('-0123456789'.indexOf(c)); });
    }
    return n.toLocaleString(state.lang === 'en' ? 'en-US' : 'zh-CN', { maximumFractionDigits: digits === undefined ? 6 : digits });
  }

  function fmtPopulation(v) {
    var n = Number(v);
    if (v === null || v === undefined || !isFinite(n)) { return '—'; }
    if (state.lang === 'zh' && n >= 10000) { return (n / 10000).toFixed(1) + '万'; }
    if (state.lang === 'en' && n >= 1000) { return Math.round(n / 1000).toLocaleString('en-US') + 'k'; }
    return fmtNum(n);
  }

  // A time (ISO text, Date or ms) in Beijing time (Asia/Shanghai) whatever the browser's zone: 'YYYY-MM-DD HH:MM',
  // form 'short' 'MM-DD HH:MM', form 'time' 'HH:MM'. Whoever shows it says 北京时间 Beijing time. The topic panels
  // use it too (api.fmtTime).
  var BEIJING = new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit',
    day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  function fmtTime(v, form) {
    var d = new Date(v);
    if (isBlank(v) || isNaN(d.getTime())) { return isBlank(v) ? '—' : String(v); }
    var p = {};
    BEIJING.formatToParts(d).forEach(function (x) { p[x.type] = x.value; });
    var hm = p.hour + ':' + p.minute;
    return form === 'time' ? hm : (form === 'short' ? '' : p.year + '-') + p.month + '-' + p.day + ' ' + hm;
  }

  function bboxToBounds(b) {
    if (!b || b.length < 4) { return null; }
    var minx = Number(b[0]), miny = Number(b[1]), maxx = Number(b[2]), maxy = Number(b[3]);
    if (![minx, miny, maxx, maxy].every(isFinite)) { return null; }
    return L.latLngBounds([miny, minx], [maxy, maxx]);
  }

  function geomClass(type) {
    var g = String(type || '').replace(/^Multi/, '');
    if (g === 'Point') { return 'point'; }
    if (g === 'LineString') { return 'line'; }
    if (g === 'Polygon') { return 'polygon'; }
    return 'point';
  }

  function isBlank(v) { return v === null || v === undefined || v === ''; }

  // ---------------------------------------------------------------------------
  // HTTP
  // ---------------------------------------------------------------------------
  function HttpError(status, url) {
    this.name = 'HttpError';
    this.status = status;
    this.url = url;
    this.message = 'HTTP ' + status + ' for ' + url;
  }
  HttpError.prototype = Object.create(Error.prototype);

  function authHeaders(extra) {
    var h = {};
    if (state.token) { h.Authorization = 'Bearer ' + state.token; }
    Object.keys(extra || {}).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }

  function getJSON(url) {
    return fetch(url, {
      headers: authHeaders({ Accept: 'application/json, application/geo+json' }),
      credentials: 'same-origin'
    }).then(function (r) {
      if (r.ok) { return r.json(); }
      return r.json().catch(function () { return {}; }).then(function (b) {  // (the server's reason, as answerError)
        var e = new HttpError(r.status, url);
        e.said = b && b.description ? (b.description_zh ? b.description_zh + ' ' : '') + b.description : '';
        throw e;
      });
    });
  }

  // A "real" error: server failure or network failure, not an expected 4xx.
  function isRealError(err) {
    return !(err instanceof HttpError) || err.status >= 500;
  }

  // The topic panels' and the feature panel's requests (api.request / api.json / api.download): `fetch` with the
  // login token (and a JSON content type when there is a body).
  function request(path, opts) {
    opts = opts || {};
    var headers = opts.headers || {};
    if (state.token) { headers.Authorization = 'Bearer ' + state.token; }
    if (opts.body) { headers['Content-Type'] = 'application/json'; }
    return fetch(path, { method: opts.method || 'GET', headers: headers, body: opts.body });
  }

  // A refused answer as an Error with .status and the server's description, in Chinese too where it gives
  // one (description_zh; opts.who: who may do it).
  function answerError(r, opts) {
    return r.json().catch(function () { return {}; }).then(function (body) {
      var said = body.description ? (body.description_zh ? body.description_zh + ' ' : '') + body.description : 'HTTP ' + r.status;
      var e = new Error((r.status === 401 ? '请先登录 Log in first' + (opts && opts.who ? ' (' + opts.who + '). ' : '. ') :
                         r.status === 403 ? '无权限 Not allowed. ' : '') + said);
      e.status = r.status;
      e.description = body.description || null;
      throw e;
    });
  }

  // The JSON body, or a rejection with answerError's Error.
  function requestJSON(path, opts) {
    return request(path, opts).then(function (r) {
      return r.ok ? r.json().catch(function () { return {}; }) : answerError(r, opts);
    });
  }

  // Download path's answer (with the token, which a plain link cannot send) as a file named `filename`;
  // resolves to the Blob, or rejects with answerError's Error.
  function download(path, filename, opts) {
    return request(path, opts).then(function (r) {
      return r.ok ? r.blob() : answerError(r, opts);
    }).then(function (blob) {
      var url = URL.createObjectURL(blob);
      var a = el('a', { href: url, download: filename, hidden: true });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
      return blob;
    });
  }

  // ---------------------------------------------------------------------------
  // Map
  // ---------------------------------------------------------------------------
  var map = L.map('om-map', {
    zoomControl: false,
    minZoom: 3,
    maxZoom: 19,
    worldCopyJump: false
  });

  [['om-choropleth', 380], ['om-polygons', 410], ['om-lines', 420], ['om-points', 430], ['om-highlight', 450]]
    .forEach(function (p) { map.createPane(p[0]).style.zIndex = String(p[1]); });
  map.getPane('om-highlight').style.pointerEvents = 'none';

  // Top left: zoom, home, then the panels' buttons (added later). A language change retitles them in place:
  // removing and re-adding a control would move it after the panels' buttons.
  function titleControls() {
    var c = map.getContainer();
    [['.leaflet-control-zoom-in', 'zoom_in'], ['.leaflet-control-zoom-out', 'zoom_out'], ['.om-home a', 'home']].forEach(function (b) {
      var a = c.querySelector(b[0]);
      if (a) { a.title = t(b[1]); a.setAttribute('aria-label', t(b[1])); }
    });
  }

  var HomeControl = L.Control.extend({
    options: { position: 'topleft' },
    onAdd: function () {
      var c = L.DomUtil.create('div', 'leaflet-bar om-home');
      var a = L.DomUtil.create('a', '', c);
      a.href = '#';
      a.setAttribute('role', 'button');
      a.textContent = '\u2302';
      L.DomEvent.disableClickPropagation(c);
      L.DomEvent.on(a, 'click', function (e) { L.DomEvent.preventDefault(e); zoomHome(); });
      return c;
    }
  });
  var homeControl = new HomeControl();

  var CoordControl = L.Control.extend({
    options: { position: 'bottomleft' },
    onAdd: function () {
      this._div = L.DomUtil.create('div', 'om-coords');
      this.update();
      return this._div;
    },
    update: function (latlng) {
      if (!this._div) { return; }
      var s = t('zoom_label') + ' ' + map.getZoom();
      if (latlng) { s += ' · ' + latlng.lng.toFixed(5) + ', ' + latlng.lat.toFixed(5); }
      this._div.textContent = s;
    }
  });
  var coordControl = new CoordControl();

  L.control.zoom({ position: 'topleft' }).addTo(map);
  map.addControl(homeControl);
  titleControls();
  L.control.scale({ imperial: false, position: 'bottomright' }).addTo(map);

  map.on('mousemove', function (e) { coordControl.update(e.latlng); });
  map.on('zoomend', function () {
    coordControl.update();
    updateZoomHints();
  });

  var hoverTip = L.tooltip({ direction: 'top', offset: [0, -6], className: 'om-hover-tip' });

  function zoomHome() {
    var b = state.config && bboxToBounds(state.config.bounds);
    if (b) { map.fitBounds(b); } else if (state.config) { map.setView(lonlat(state.config.center), state.config.zoom); }
  }

  function lonlat(c) { return L.latLng(Number(c[1]), Number(c[0])); }

  // Fit `bounds` in the part of the map beside `box` (a panel over the map, on its left or right; ignored when
  // hidden or when it leaves too little room). opts: more fitBounds options (maxZoom, animate…).
  // The padding that keeps a fit (or a popup's auto-pan) in the part of the map a panel's box leaves free.
  function padBeside(box) {
    var pad = 30, tl = [pad, pad], br = [pad, pad];
    var m = map.getContainer().getBoundingClientRect(), b = box && !box.hidden ? box.getBoundingClientRect() : null;
    if (b && b.width) {
      if (b.left - m.left < m.right - b.right) { tl[0] = b.right - m.left + pad; } else { br[0] = m.right - b.left + pad; }
      if (m.width - tl[0] - br[0] < 100) { tl[0] = br[0] = pad; }
    }
    return { paddingTopLeft: tl, paddingBottomRight: br };
  }

  function fitBeside(bounds, box, opts) {
    var o = padBeside(box);
    Object.keys(opts || {}).forEach(function (k) { o[k] = opts[k]; });
    map.fitBounds(bounds, o);
  }

  // ---------------------------------------------------------------------------
  // Config
  // ---------------------------------------------------------------------------
  function loadConfig() {
    return getJSON('/api/config').then(function (cfg) {
      state.config = cfg || {};
      applyConfig();
    }).then(function () { state.configFailed = false; }, function (err) {
      console.error('onemap: /api/config failed', err);
      showStatus(t('config_failed'), 'error');
      state.configFailed = true;
      state.config = { center: DEFAULT_VIEW.center, zoom: DEFAULT_VIEW.zoom, bounds: null, basemap: { url: null, attribution: '' } };
      applyConfig();
    });
  }

  function applyConfig() {
    var cfg = state.config;
    var center = Array.isArray(cfg.center) && cfg.center.length >= 2 ? cfg.center : DEFAULT_VIEW.center;
    var zoom = isFinite(Number(cfg.zoom)) ? Number(cfg.zoom) : DEFAULT_VIEW.zoom;
    map.setView(lonlat(center), zoom);
    if (!coordControl._map) { map.addControl(coordControl); }
    applyTitle();

    var bm = cfg.basemap || {};
    if (state.basemap) { map.removeLayer(state.basemap); state.basemap = null; }
    if (bm.url) {
      state.basemap = L.tileLayer(bm.url, { attribution: bm.attribution || '', maxZoom: 19, pane: 'tilePane', zIndex: 0 });
      if (state.basemapVisible) { state.basemap.addTo(map); }
    } else if (bm.attribution) {
      map.attributionControl.addAttribution(bm.attribution);
    }
    document.body.classList.toggle('om-no-basemap', !bm.url);
  }

  function applyTitle() {
    var title = loc(state.config, 'title') || t('title_default');
    $('om-title').textContent = title;
    document.title = title;
  }

  // ---------------------------------------------------------------------------
  // Layers
  // ---------------------------------------------------------------------------
  // opts.login: a login attempt (a refused token is then the login form's message, not "logged out")
  function loadLayers(opts) {
    var seq = ++state.layersSeq;
    return getJSON('/api/layers').then(function (data) {
      if (seq !== state.layersSeq) { return { stale: true }; }
      buildLayers((data && data.layers) || []);
      if (state.down) { state.down = false; showStatus(t('reconnected'), 'info'); }
      return { ok: true };
    }).catch(function (err) {
      if (seq !== state.layersSeq) { return { stale: true }; }
      if (err instanceof HttpError && (err.status === 401 || err.status === 403) && state.token) {
        // The token was refused: drop it and fall back to the public layers.
        setToken(null);
        if (!(opts && opts.login)) { showStatus(t('token_invalid'), 'error'); }
        return loadLayers().then(function () { return { invalidToken: true }; });
      }
      console.error('onemap: /api/layers failed', err);
      // the server without its database (503) or out of reach: said, and tried again until it answers
      var down = !(err instanceof HttpError) || err.status === 503;
      showStatus(t('layers_failed') + (err.said ? ': ' + err.said : '') + (down ? ' ' + t('retrying') : ''), 'error', down);
      buildLayers([]);
      if (down) { state.down = true; retryLater(); }
      return { error: err };
    });
  }

  // After a failed layer list: every RETRY_MS the caller's access, the configuration (if it failed too) and
  // the layers are asked again, until the layer list loads (then the status says the service is back).
  var RETRY_MS = 5000;
  function retryLater() {
    if (state.retryTimer) { return; }
    state.retryTimer = setTimeout(function () {
      state.retryTimer = null;
      if (!state.down) { return; }
      refreshAccess();
      (state.configFailed ? loadConfig() : Promise.resolve()).then(function () { return reloadAll(); });
    }, RETRY_MS);
  }

  function tileBounds() {
    var b = state.config && bboxToBounds(state.config.bounds);
    return b ? b.pad(0.25) : undefined;
  }

  function paneFor(def) {
    var g = geomClass(def.geometry_type);
    return g === 'polygon' ? 'om-polygons' : (g === 'line' ? 'om-lines' : 'om-points');
  }

  function featureIdOf(props) {
    if (!props) { return null; }
    if (!isBlank(props.__fid)) { return props.__fid; }
    if (!isBlank(props.id)) { return props.id; }
    if (!isBlank(props.fid)) { return props.fid; }
    return null;
  }

  function clusterCount(props) {
    if (!props) { return 0; }
    var c = props.cluster_count !== undefined ? props.cluster_count : props.point_count;
    var n = Number(c);
    return isFinite(n) ? n : 0;
  }

  function colorBy(by, props) {
    if (!by || !by.field || !props) { return null; }
    var v = props[by.field];
    if (isBlank(v)) { return null; }
    return (by.values && by.values[String(v)]) || null;
  }

  var clusterIcons = {};
  function clusterIcon(count, color) {
    var label = count >= 10000 ? Math.round(count / 1000) + 'k' : (count >= 1000 ? (count / 1000).toFixed(1) + 'k' : String(count));
    var d = Math.round(22 + 7 * Math.log(count) / Math.LN10);
    var key = label + '|' + color + '|' + d;
    if (clusterIcons[key]) { return clusterIcons[key]; }
    var r = d / 2;
    var fs = label.length > 3 ? 10 : 11;
    var svg = '<svg xmlns="http://www.w3.org/2000/svg" width="' + d + '" height="' + d + '" viewBox="0 0 ' + d + ' ' + d + '">' +
      '<circle cx="' + r + '" cy="' + r + '" r="' + (r - 1.5) + '" fill="' + color + '" fill-opacity="0.85" stroke="#ffffff" stroke-width="2"/>' +
      '<text x="' + r + '" y="' + r + '" dy="0.35em" text-anchor="middle" font-family="Arial, Helvetica, sans-serif" font-size="' + fs +
      '" font-weight="bold" fill="' + textColorOn(color) + '">' + label + '</text></svg>';
    var icon = L.icon({ iconUrl: 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(svg), iconSize: [d, d], iconAnchor: [r, r] });
    clusterIcons[key] = icon;
    return icon;
  }

  function textColorOn(hex) {
    var m = /^#?([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(String(hex || ''));
    if (!m) { return '#ffffff'; }
    var lum = (0.299 * parseInt(m[1], 16) + 0.587 * parseInt(m[2], 16) + 0.114 * parseInt(m[3], 16)) / 255;
    return lum > 0.6 ? '#222222' : '#ffffff';
  }

  // The draw order of the layers, decided here only: each pane (by geometry) stacks them by drawRank, bottom to
  // top, and in the registry's order (/api/layers) within a rank:
  //   0 the base map's areas (districts);
  //   1 areas derived around objects (contextArea): context under the objects they surround;
  //   2 the objects (parks, installations, ponds, roads, routes…);
  //   3 the lines on top of every other line (LINE_STYLES `top`: black spots).
  function drawRank(def) {
    if (def.theme === 'base') { return 0; }
    if (contextArea(def)) { return 1; }
    return (LINE_STYLES[def.id] || {}).top ? 3 : 2;
  }

  // An analysis result's polygons (a derived layer: population exposure rings, tailings downstream zones) are areas
  // around objects, not objects: drawn under them (drawRank), lightly (CONTEXT_AREA, unless the registry's style
  // says), so that the overlapping rings of neighbouring installations (ten deep in a park) build up no opaque wash.
  function contextArea(def) { return !!def.derived && geomClass(def.geometry_type) === 'polygon'; }
  var CONTEXT_AREA = { opacity: 0.5, fillOpacity: 0.06 };

  // Lines drawn apart from their registry style so they read at city scale (z9–z11): black spots on top of the
  // other lines, over a dark casing (a wider stroke under the coloured one: their yellow and orange are also those
  // of trunk roads and motorways); route conflicts narrower than the black spots they may run along.
  var LINE_STYLES = {
    blackspots: { top: true, casing: '#1f2d3d' },
    route_conflicts: { weight: 4 }
  };

  function styleFor(def, props) {
    var st = def.style || {};
    var color = st.color || '#3388ff';
    var fill = st.fill || color;
    var by = colorBy(st.by, props);
    var weight = isFinite(Number(st.weight)) ? Number(st.weight) : null;
    var g = geomClass(def.geometry_type);
    if (g === 'point') {
      var cc = clusterCount(props);
      if (cc > 1) { return { icon: clusterIcon(cc, by || fill) }; }
      return {
        radius: isFinite(Number(st.radius)) ? Number(st.radius) : 6,
        fill: true, fillColor: by || fill, fillOpacity: st.fill_opacity !== undefined ? st.fill_opacity : 0.9,
        color: st.color || '#ffffff', weight: weight !== null ? weight : 1, opacity: 1
      };
    }
    if (g === 'line') {
      var ls = LINE_STYLES[def.id] || {};
      var line = {
        color: by || color, weight: ls.weight || (weight !== null ? weight : 2.5), opacity: st.opacity !== undefined ? st.opacity : 0.9,
        fill: false, lineCap: 'round', lineJoin: 'round'
      };
      // (VectorGrid draws an array's styles in turn: the casing, then the line over it, the one that takes clicks)
      return ls.casing ? [L.extend({}, line, { color: ls.casing, weight: line.weight + 3, opacity: 0.85, interactive: false }), line] : line;
    }
    var look = contextArea(def) ? CONTEXT_AREA : { opacity: 0.9, fillOpacity: 0.35 };
    return {  // (outlined in the class colour too, so a class reads the same through overlapping fills)
      color: by || color, weight: weight !== null ? weight : 1, opacity: st.opacity !== undefined ? st.opacity : look.opacity,
      fill: true, fillColor: by || fill, fillOpacity: st.fill_opacity !== undefined ? st.fill_opacity : look.fillOpacity
    };
  }

  function tileFetchOptions() {
    var o = { credentials: 'same-origin' };
    if (state.token) { o.headers = { Authorization: 'Bearer ' + state.token }; }
    return o;
  }

  function makeGrid(entry) {
    var def = entry.def;
    var styles = {};
    styles[def.id] = function (props) { return styleFor(def, props); };
    var opts = {
      rendererFactory: state.renderer === 'canvas' ? L.canvas.tile : L.svg.tile,
      vectorTileLayerStyles: styles,
      interactive: true,
      // Keeps the MVT feature id with the feature's properties (VectorGrid's
      // symbolizers only keep `properties`). Non-enumerable: never displayed.
      getFeatureId: function (f) {
        if (f.properties && f.id !== undefined) {
          try { Object.defineProperty(f.properties, '__fid', { value: f.id, enumerable: false, configurable: true }); } catch (e) { /* frozen */ }
        }
        return f.id;
      },
      fetchOptions: tileFetchOptions(),
      pane: paneFor(def),
      zIndex: drawRank(def) * state.layerDefs.length + entry.index + 1,  // (ranks apart, the registry's order within)
      maxZoom: 19,
      updateWhenZooming: false,
      keepBuffer: 1
    };
    if (isFinite(Number(def.minzoom))) { opts.minZoom = Number(def.minzoom); }
    if (isFinite(Number(def.maxzoom))) { opts.maxNativeZoom = Number(def.maxzoom); }
    var b = tileBounds();
    if (b) { opts.bounds = b; }

    var grid = L.vectorGrid.protobuf(def.tiles, opts);
    grid.on('click', function (e) { onFeatureClick(entry, e); });
    grid.on('mouseover', function (e) {
      var props = (e.layer && e.layer.properties) || {};
      var cc = clusterCount(props);
      var label = cc > 1 ? loc(def, 'title') + ' × ' + fmtNum(cc) : featureName(def, props);
      if (!label) { return; }
      hoverTip.setLatLng(e.latlng).setContent(escapeHtml(label));
      map.openTooltip(hoverTip);
    });
    grid.on('mouseout', function () { map.closeTooltip(hoverTip); });
    return grid;
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c];
    });
  }

  function buildLayers(defs) {
    // Tear down the old grids (login/logout reloads the list with new auth).
    state.layerOrder.forEach(function (id) {
      var e = state.layers[id];
      if (e && e.grid && map.hasLayer(e.grid)) { map.removeLayer(e.grid); }
    });
    map.closeTooltip(hoverTip);
    state.layerDefs = defs.filter(function (d) { return d && d.id && d.tiles; });
    state.layers = {};
    state.layerOrder = [];
    state.layerDefs.forEach(function (def, i) {
      var entry = { id: def.id, def: def, index: i, grid: null, visible: false };
      entry.grid = makeGrid(entry);
      state.layers[def.id] = entry;
      state.layerOrder.push(def.id);
      var want = state.visibility[def.id];
      setLayerVisible(def.id, want === undefined ? !!def.default_visible : want, { silent: true, remember: false });
    });
    if (state.selected && !state.layers[state.selected.layer]) { closePanel(); }
    renderSwitcher();
    renderLegend();
    updateBanner();
  }

  function setLayerVisible(id, on, opts) {
    opts = opts || {};
    if (id === '__basemap__') {
      state.basemapVisible = !!on;
      if (state.basemap) {
        if (on && !map.hasLayer(state.basemap)) { state.basemap.addTo(map); }
        if (!on && map.hasLayer(state.basemap)) { map.removeLayer(state.basemap); }
      }
    } else {
      var e = state.layers[id];
      if (!e) { return false; }
      e.visible = !!on;
      if (opts.remember !== false) { state.visibility[id] = !!on; }
      if (on && !map.hasLayer(e.grid)) { e.grid.addTo(map); }
      if (!on && map.hasLayer(e.grid)) { map.removeLayer(e.grid); map.closeTooltip(hoverTip); }
    }
    if (!opts.silent) {
      syncSwitcher();
      renderLegend();
      updateBanner();
    }
    return true;
  }

  function themeOrder(theme) {
    var i = THEMES.indexOf(theme);
    return i < 0 ? THEMES.length : i;
  }

  function groupedEntries() {
    var groups = {};
    var keys = [];
    state.layerOrder.forEach(function (id) {
      var e = state.layers[id];
      var th = THEMES.indexOf(e.def.theme) >= 0 ? e.def.theme : 'other';
      if (!groups[th]) { groups[th] = []; keys.push(th); }
      groups[th].push(e);
    });
    if (state.basemap && keys.indexOf('base') < 0) { groups.base = []; keys.push('base'); }
    keys.sort(function (a, b) { return themeOrder(a) - themeOrder(b); });
    return keys.map(function (k) { return { theme: k, entries: groups[k] }; });
  }

  function themeLabel(theme, entries) {
    var first = entries && entries[0] && entries[0].def;
    var l = first ? loc(first, 'theme') : '';
    return l || t('theme_' + theme);
  }

  function swatch(kind, color, fill) {
    var s = el('span', { className: 'om-swatch om-swatch-' + kind, 'aria-hidden': 'true' });
    if (kind === 'line') { s.style.backgroundColor = color; } else { s.style.backgroundColor = fill || color; s.style.borderColor = color; }
    return s;
  }

  // A layer's legend as styleFor draws it: {g, stroke, items: [{label, color}]}. A class (style.by) fills and
  // outlines a polygon in its colour; without classes the fill is style.fill inside style.color (the stroke),
  // whatever colour the registry's legend gives.
  function legendOf(def) {
    var st = def.style || {}, g = geomClass(def.geometry_type);
    var plain = g === 'line' ? st.color : st.fill || st.color;
    var items = (def.legend && def.legend.length ? def.legend : [{ color: plain }]).map(function (it) {
      return { label: loc(it, 'label') || loc(def, 'title') || def.id, color: (!st.by && plain) || it.color || '#3388ff' };
    });
    var stroke = g === 'polygon' ? ((!st.by && st.color) || null) : (g === 'point' ? (st.color || '#ffffff') : null);
    return { g: g, stroke: stroke, items: items };
  }

  function layerSwatch(def) {
    var lg = legendOf(def);
    return swatch(lg.g, lg.stroke || lg.items[0].color, lg.items[0].color);
  }

  function renderSwitcher() {
    var root = clear($('om-layer-switcher'));
    var groups = groupedEntries();
    if (!groups.length) {
      root.appendChild(el('p', { className: 'om-empty', text: t('no_layers') }));
    }
    groups.forEach(function (g) {
      var box = el('fieldset', { className: 'om-group', 'data-theme': g.theme });
      var gcb = el('input', { type: 'checkbox', className: 'om-group-toggle', 'data-theme': g.theme, 'aria-label': themeLabel(g.theme, g.entries) });
      gcb.addEventListener('change', function () {
        g.entries.forEach(function (e) { setLayerVisible(e.id, gcb.checked, { silent: true }); });
        if (g.theme === 'base' && state.basemap) { setLayerVisible('__basemap__', gcb.checked, { silent: true }); }
        syncSwitcher(); renderLegend(); updateBanner();
      });
      box.appendChild(el('legend', { className: 'om-group-title' }, [
        el('label', null, [gcb, ' ', el('span', { text: themeLabel(g.theme, g.entries) })])
      ]));
      if (g.theme === 'base' && state.basemap) {
        var bcb = el('input', { type: 'checkbox', id: 'om-layer-__basemap__', 'data-layer-id': '__basemap__' });
        bcb.checked = state.basemapVisible;
        bcb.addEventListener('change', function () { setLayerVisible('__basemap__', bcb.checked); });
        box.appendChild(el('label', { className: 'om-layer-row' }, [bcb, swatch('polygon', '#9aa7b1', '#dfe6eb'),
          el('span', { className: 'om-layer-title', text: t('basemap') })]));
      }
      g.entries.forEach(function (e) {
        var def = e.def;
        var cb = el('input', { type: 'checkbox', id: 'om-layer-' + def.id, 'data-layer-id': def.id });
        cb.checked = e.visible;
        cb.addEventListener('change', function () { setLayerVisible(def.id, cb.checked); });
        var badges = [];
        if (def.synthetic) { badges.push(el('span', { className: 'om-badge om-badge-synthetic', title: t('synthetic_title'), text: t('synthetic') })); }
        if (def.public === false) { badges.push(el('span', { className: 'om-badge om-badge-restricted', title: t('restricted_title'), text: t('restricted') })); }
        if (def.stale) {
          badges.push(el('span', { className: 'om-badge om-badge-stale', text: t('stale'), title: t('stale_title', {
            when: fmtTime(def.stale.computed_at), inputs: def.stale.changed_inputs.map(function (id) {
              return state.layers[id] ? loc(state.layers[id].def, 'title') : id; }).join('、'), analysis: def.stale.analysis }) }));
        }
        var hint = el('span', { className: 'om-zoom-hint', 'data-minzoom': def.minzoom });
        box.appendChild(el('label', { className: 'om-layer-row', 'data-layer-id': def.id }, [cb, layerSwatch(def),
          el('span', { className: 'om-layer-title', text: loc(def, 'title') || def.id })].concat(badges).concat([hint])));
      });
      root.appendChild(box);
    });
    if (!state.token && groups.length) {
      root.appendChild(el('p', { className: 'om-hint', text: t('login_hint') }));
    }
    syncSwitcher();
    updateZoomHints();
  }

  function syncSwitcher() {
    var root = $('om-layer-switcher');
    Array.prototype.forEach.call(root.querySelectorAll('input[data-layer-id]'), function (cb) {
      var id = cb.getAttribute('data-layer-id');
      cb.checked = id === '__basemap__' ? state.basemapVisible : !!(state.layers[id] && state.layers[id].visible);
    });
    Array.prototype.forEach.call(root.querySelectorAll('fieldset.om-group'), function (fs) {
      var cbs = Array.prototype.filter.call(fs.querySelectorAll('input[data-layer-id]'), function () { return true; });
      var on = cbs.filter(function (c) { return c.checked; }).length;
      var g = fs.querySelector('input.om-group-toggle');
      g.checked = cbs.length > 0 && on === cbs.length;
      g.indeterminate = on > 0 && on < cbs.length;
    });
  }

  function updateZoomHints() {
    var z = map.getZoom();
    Array.prototype.forEach.call(document.querySelectorAll('#om-layer-switcher .om-zoom-hint'), function (h) {
      var mz = Number(h.getAttribute('data-minzoom'));
      var out = isFinite(mz) && z < mz;
      h.textContent = out ? '≥' + mz : '';
      h.title = out ? t('zoom_in_to_see', { z: mz }) : '';
      h.parentNode.classList.toggle('om-out-of-range', out);
    });
  }

  // ---------------------------------------------------------------------------
  // Legend
  // ---------------------------------------------------------------------------
  function renderLegend() {
    var root = clear($('om-legend'));
    var visible = state.layerOrder.map(function (id) { return state.layers[id]; })
      .filter(function (e) { return e.visible; })
      .sort(function (a, b) { return themeOrder(a.def.theme) - themeOrder(b.def.theme) || a.index - b.index; });
    if (!visible.length && !state.choropleth.on) {
      root.appendChild(el('p', { className: 'om-empty', text: t('no_visible_layers') }));
    }
    // Layers whose legends are identical (same geometry kind, labels and colours,
    // e.g. several layers coloured by risk grade) share one legend block.
    var anyPoints = false;
    var blocks = [];
    var byKey = {};
    visible.forEach(function (e) {
      var lg = legendOf(e.def);
      if (lg.g === 'point') { anyPoints = true; }
      var key = lg.g + '|' + lg.stroke + '|' + JSON.stringify(lg.items);
      if (byKey[key]) { byKey[key].defs.push(e.def); return; }
      lg.defs = [e.def];
      byKey[key] = lg;
      blocks.push(lg);
    });
    blocks.forEach(function (b) {
      var block = el('div', { className: 'om-legend-block', 'data-layer-id': b.defs.map(function (d) { return d.id; }).join(' ') }, [
        el('div', { className: 'om-legend-title', text: b.defs.map(function (d) { return loc(d, 'title') || d.id; }).join(state.lang === 'en' ? ', ' : '、') })
      ]);
      var ul = el('ul', { className: 'om-legend-items' });
      b.items.forEach(function (it) {
        ul.appendChild(el('li', null, [swatch(b.g, b.stroke || it.color, it.color), el('span', { text: it.label })]));
      });
      block.appendChild(ul);
      root.appendChild(block);
    });
    if (anyPoints) {
      root.appendChild(el('div', { className: 'om-legend-block om-legend-cluster' }, [
        el('ul', { className: 'om-legend-items' }, [el('li', null, [el('span', { className: 'om-swatch om-swatch-cluster', text: '12' }), el('span', { text: t('cluster_legend') })])])
      ]));
    }
    if (state.choropleth.on) {
      var m = metricLabel(state.choropleth.metric);
      var cb = el('div', { className: 'om-legend-block om-legend-choropleth' }, [
        el('div', { className: 'om-legend-title', text: t('choropleth_legend', { m: m }) })
      ]);
      var cul = el('ul', { className: 'om-legend-items' });
      choroplethClasses().forEach(function (c) {
        cul.appendChild(el('li', null, [swatch('polygon', '#777777', c.color), el('span', { text: c.label })]));
      });
      cb.appendChild(cul);
      root.appendChild(cb);
    }
  }

  // ---------------------------------------------------------------------------
  // Synthetic-data banner
  // ---------------------------------------------------------------------------
  function updateBanner() {
    var cfg = state.config || {};
    var notice = state.lang === 'en' ? (cfg.synthetic_notice_en || cfg.synthetic_notice_zh) : (cfg.synthetic_notice_zh || cfg.synthetic_notice_en);
    var synth = state.layerOrder.map(function (id) { return state.layers[id]; })
      .filter(function (e) { return e.visible && e.def.synthetic; });
    var show = !!notice || synth.length > 0;
    var banner = $('om-banner');
    banner.hidden = !show;
    document.body.classList.toggle('om-has-banner', show);
    $('om-banner-text').textContent = t('banner');
    $('om-banner-notice').textContent = notice && notice !== t('banner') ? notice : '';
    banner.title = synth.length ? t('banner_layers') + synth.map(function (e) { return loc(e.def, 'title') || e.id; }).join('、') : '';
    map.invalidateSize();
  }

  // ---------------------------------------------------------------------------
  // Feature selection and the side panel
  // ---------------------------------------------------------------------------
  function featureName(def, props) {
    if (!props) { return ''; }
    if (!isBlank(props['name_' + state.lang])) { return String(props['name_' + state.lang]); }
    if (!isBlank(props.name)) { return String(props.name); }
    var pf = (def && def.popup_fields) || [];
    for (var i = 0; i < pf.length; i++) {
      var v = props[pf[i].name];
      if (!isBlank(v) && typeof v !== 'object') { return String(v); }
    }
    return '';
  }

  function onFeatureClick(entry, e) {
    if (state.picking) { return; }  // a panel is picking points: the click goes on to the map's handlers
    // Keep the map's own 'click' from firing for the same DOM event.
    L.DomEvent.stopPropagation(e);
    var props = (e.layer && e.layer.properties) || {};
    var cc = clusterCount(props);
    if (cc > 1) {
      map.setView(e.latlng, Math.min(map.getZoom() + 2, map.getMaxZoom()));
      return;
    }
    showFeature(entry.id, featureIdOf(props), props, e.latlng);
  }

  function showFeature(layerId, fid, props, latlng) {
    var seq = ++state.detailSeq;
    state.selected = { layer: layerId, id: fid, properties: props || {}, detail: null, latlng: latlng || null, status: 'loading', kind: 'feature' };
    loadGrading(state.selected);
    setHighlight(null);
    if (latlng) { setHighlight({ type: 'Feature', properties: {}, geometry: { type: 'Point', coordinates: [latlng.lng, latlng.lat] } }); }
    if (isBlank(fid)) {
      state.selected.status = 'no_id';
      renderPanel();
      return Promise.resolve(state.selected);
    }
    renderPanel();
    var url = itemPath(layerId, fid);
    return getJSON(url).then(function (feat) {
      if (seq !== state.detailSeq) { return state.selected; }
      state.selected.detail = feat;
      state.selected.status = 'ok';
      if (feat && feat.geometry) { setHighlight(feat); }
      renderPanel();
      return state.selected;
    }).catch(function (err) {
      if (seq !== state.detailSeq) { return state.selected; }
      if (err instanceof HttpError && (err.status === 401 || err.status === 403)) { state.selected.status = 'auth'; } else if (err instanceof HttpError && err.status === 404) { state.selected.status = 'not_found'; } else {
        state.selected.status = 'failed';
        if (isRealError(err)) { console.error('onemap: feature details failed', url, err); }
      }
      renderPanel();
      return state.selected;
    });
  }

  function setHighlight(geojson) {
    if (state.highlight) { map.removeLayer(state.highlight); state.highlight = null; }
    if (!geojson) { return; }
    state.highlight = L.geoJSON(geojson, {
      pane: 'om-highlight',
      interactive: false,
      style: function () { return { color: '#00c8ff', weight: 4, opacity: 0.95, fill: false }; },
      pointToLayer: function (f, ll) {
        return L.circleMarker(ll, { pane: 'om-highlight', radius: 13, color: '#00c8ff', weight: 3, opacity: 0.95, fill: false, interactive: false });
      }
    }).addTo(map);
  }

  function fieldDef(def, field) { return ((def && def.fields) || []).filter(function (x) { return x.name === field; })[0]; }

  // The registry's label of a coded value in the current language (fields[].codes of /api/layers), or null.
  function codeLabel(def, field, v) {
    var f = fieldDef(def, field);
    var c = f && f.codes ? f.codes[String(v)] : null;
    return c ? (c[state.lang] || c.zh) : null;
  }

  // Decimals shown of a number field (fields[].type of /api/layers): a float's people as whole numbers,
  // its lon/lat with 6, any other float (metres…) with 1; an int as it is.
  function fieldDigits(def, field) {
    var f = fieldDef(def, field);
    if (!f || f.type !== 'float') { return undefined; }
    if (/(^|_)(people|population)(_|$)/.test(field)) { return 0; }
    return /(^|_)(lon|lat)$/.test(field) ? 6 : 1;
  }

  function formatValue(field, v, def) {
    if (isBlank(v)) { return document.createTextNode('—'); }
    if (typeof v === 'boolean') { return document.createTextNode(v ? t('yes') : t('no')); }
    if ((fieldDef(def, field) || {}).type === 'datetime') { return document.createTextNode(fmtTime(v) + ' ' + t('beijing_time')); }
    var by = def && def.style && def.style.by;
    var label = codeLabel(def, field, v);
    if (by && by.field === field) {  // the value as the legend shows it: colour dot and label
      var color = colorBy(by, { [field]: v });
      return el('span', { className: 'om-chip' }, [color ? el('span', { className: 'om-chip-dot', style: 'background:' + color }) : null, label || String(v)]);
    }
    if (label) { return document.createTextNode(label); }
    if (typeof v === 'number') { return document.createTextNode(fmtNum(v, fieldDigits(def, field))); }
    if (typeof v === 'object') { return document.createTextNode(JSON.stringify(v)); }
    return document.createTextNode(String(v));
  }

  function closePanel() {
    state.detailSeq++;
    state.selected = null;
    setHighlight(null);
    $('om-panel').hidden = true;
    document.body.classList.remove('om-panel-open');
    map.invalidateSize();
  }

  function renderPanel() {
    var sel = state.selected;
    var panel = $('om-panel');
    if (!sel) { panel.hidden = true; return; }
    var wasHidden = panel.hidden;
    panel.hidden = false;
    document.body.classList.add('om-panel-open');
    if (wasHidden) { map.invalidateSize(); }
    if (sel.kind === 'district') { renderDistrictPanel(sel); return; }

    var entry = state.layers[sel.layer];
    var def = entry ? entry.def : { id: sel.layer, popup_fields: [] };
    var props = {};
    Object.keys(sel.properties || {}).forEach(function (k) { props[k] = sel.properties[k]; });
    if (sel.detail && sel.detail.properties) {
      Object.keys(sel.detail.properties).forEach(function (k) { props[k] = sel.detail.properties[k]; });
    }
    panel.setAttribute('data-layer-id', sel.layer);
    panel.setAttribute('data-feature-id', isBlank(sel.id) ? '' : String(sel.id));
    panel.setAttribute('data-status', sel.status);
    $('om-panel-layer').textContent = loc(def, 'title') || sel.layer;
    $('om-panel-title').textContent = featureName(def, props) || (isBlank(sel.id) ? '' : '#' + sel.id);

    var body = clear($('om-panel-body'));
    var statusKey = { loading: 'panel_loading', ok: 'panel_detail_ok', not_found: 'panel_detail_404', auth: 'panel_detail_auth', failed: 'panel_detail_failed', no_id: 'panel_no_id' }[sel.status];
    body.appendChild(el('p', { className: 'om-panel-status om-status-' + sel.status, text: t(statusKey) }));

    if (sel.editing && sel.detail) { body.appendChild(editForm(sel, def)); return; }
    var shown = {};
    var table = el('table', { className: 'om-props' });
    (def.popup_fields || []).forEach(function (f) {
      shown[f.name] = true;
      table.appendChild(el('tr', { 'data-field': f.name }, [el('th', { text: loc(f, 'title') || f.name }), el('td', null, [formatValue(f.name, props[f.name], def)])]));
    });
    if (!isBlank(sel.id)) {
      table.appendChild(el('tr', { 'data-field': '__id' }, [el('th', { text: t('feature_id') }), el('td', { text: String(sel.id) })]));
    }
    var geom = sel.detail && sel.detail.geometry;
    var pt = geom && geom.type === 'Point' ? geom.coordinates : (sel.latlng && !geom ? [sel.latlng.lng, sel.latlng.lat] : null);
    if (pt) {
      table.appendChild(el('tr', { 'data-field': '__coords' }, [el('th', { text: t('coordinates') }), el('td', { text: Number(pt[0]).toFixed(5) + ', ' + Number(pt[1]).toFixed(5) })]));
    }
    body.appendChild(table);

    var rest = Object.keys(props).filter(function (k) { return !shown[k] && k.charAt(0) !== '_' && k !== 'cluster_count'; });
    if (sel.grading) { body.appendChild(gradingBlock(sel)); }
    if (rest.length) {
      var det = el('details', { className: 'om-all-props' }, [el('summary', { text: t('all_properties') + ' (' + rest.length + ')' })]);
      var t2 = el('table', { className: 'om-props' });
      rest.forEach(function (k) { t2.appendChild(el('tr', { 'data-field': k }, [el('th', { text: k }), el('td', null, [formatValue(k, props[k], def)])])); });
      det.appendChild(t2);
      body.appendChild(det);
    }
    body.appendChild(panelActions(state.highlight && el('button', { type: 'button', className: 'om-btn', text: t('zoom_to'), onclick: function () {
      var b = state.highlight.getBounds();
      if (b.isValid()) { map.fitBounds(b, { maxZoom: Math.max(map.getZoom(), 15) }); }
    } }), sel.layer, sel.layer === 'admin_areas' ? props.adcode : sel.id));
    var edits = editActions(sel, def);
    if (edits) { body.appendChild(edits); }
  }

  // ---- 编辑 Edit: for roles with `features_edit`, on the layers the server edits feature by feature
  // (def.editable): the feature's fields as a form saved with PUT /collections/{layer}/items/{id} (its geometry
  // and, for an installation, its inventory kept), or the feature deleted (DELETE: refused, and said, when
  // something refers to it). The layer is drawn again after either (pollVersions).
  // The OGC API Features path of one feature (the panel's details, its edits, the monitoring panel's asset).
  function itemPath(layer, id) { return '/collections/' + encodeURIComponent(layer) + '/items/' + encodeURIComponent(id); }

  function editActions(sel, def) {
    if (!def.editable || !sel.detail || isBlank(sel.id) || !can('features_edit')) { return null; }
    var msg = el('p', { className: 'om-edit-msg om-edit-error', hidden: !sel.editMsg, text: sel.editMsg || '' });
    return el('div', { className: 'om-panel-actions om-edit-actions' }, [
      el('button', { type: 'button', className: 'om-btn om-edit', text: t('edit'), title: t('edit_title'),
        onclick: function () { sel.editing = true; sel.editMsg = null; renderPanel(); } }),
      el('button', { type: 'button', className: 'om-btn om-delete', text: t('delete'), onclick: function () {
        if (!window.confirm(t('delete_confirm', { name: featureName(def, sel.detail.properties) || '#' + sel.id }))) { return; }
        request(itemPath(sel.layer, sel.id), { method: 'DELETE' }).then(function (r) { return r.ok ? null : editError(r); }).then(function () {
          if (state.selected === sel) { closePanel(); }
          showStatus(t('deleted'), 'info');
          pollVersions();
        }, function (e) { sel.editMsg = e.message; if (state.selected === sel) { renderPanel(); } });
      } }), msg]);
  }

  // A refused edit's message: the server's reason (Chinese first) and each rejected field's.
  function editError(r) {
    return r.json().catch(function () { return {}; }).then(function (b) {
      var said = [b.description_zh, b.description].filter(Boolean).join(' ') || 'HTTP ' + r.status;
      throw new Error(said + (b.rejections || []).map(function (x) { return ' · ' + x.reason; }).join(''));
    });
  }

  function editForm(sel, def) {
    var props = sel.detail.properties || {};
    var form = el('form', { className: 'om-edit-form' });
    (def.fields || []).forEach(function (f) {
      var v = isBlank(props[f.name]) ? '' : String(props[f.name]), input;
      if (f.codes || f.type === 'bool') {  // (a flag's codes are true/false, as /api/layers keys them)
        var codes = f.codes || { 'true': { zh: t('yes'), en: t('yes') }, 'false': { zh: t('no'), en: t('no') } };
        input = el('select', { name: f.name }, [el('option', { value: '', text: '—' })].concat(Object.keys(codes).map(function (k) {
          return el('option', { value: k, text: (codes[k][state.lang] || codes[k].zh) + (f.codes ? ' (' + k + ')' : '') });
        })));
        input.value = v;
      } else {
        input = el('input', { name: f.name, type: 'text', value: v });
      }
      form.appendChild(el('label', { className: 'om-edit-row', 'data-field': f.name }, [el('span', { text: loc(f, 'title') || f.name }), input]));
    });
    var msg = el('p', { className: 'om-edit-msg om-edit-error', hidden: true });
    var save = el('button', { type: 'submit', className: 'om-btn om-save', text: t('save') });
    form.appendChild(el('div', { className: 'om-panel-actions' }, [save, el('button', { type: 'button', className: 'om-btn om-cancel',
      text: t('cancel'), onclick: function () { sel.editing = false; renderPanel(); } }), msg]));
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var values = {};  // (as typed: the server reads them as an import does, "1,200" people included; blank: none)
      Array.prototype.forEach.call(form.elements, function (n) { if (n.name) { values[n.name] = n.value === '' ? null : n.value; } });
      save.disabled = true;
      request(itemPath(sel.layer, sel.id), { method: 'PUT', body: JSON.stringify({ type: 'Feature', geometry: sel.detail.geometry, properties: values }) })
        .then(function (r) { return r.ok ? null : editError(r); }).then(function () {
          showStatus(t('saved'), 'info');
          pollVersions();
          if (state.selected === sel) { return showFeature(sel.layer, sel.id, null, sel.latlng); }
        }, function (e) { msg.hidden = false; msg.textContent = e.message; save.disabled = false; });
    });
    return form;
  }

  // GB 18218 grading of a hazard installation (GET /analysis/grading/{id}; roles with `analysis_read`), kept with
  // the selection as sel.grading = {status: loading | ok | note (404 not graded yet, 400 cannot be graded) | failed,
  // data, message}; its block (#om-grading) is replaced in place when the answer comes.
  function loadGrading(sel) {
    sel.grading = null;
    if (sel.kind !== 'feature' || sel.layer !== 'hazard_installations' || isBlank(sel.id) || !can('analysis_read')) { return; }
    var g = sel.grading = { status: 'loading' };
    requestJSON('/analysis/grading/' + encodeURIComponent(sel.id)).then(function (d) {
      g.status = 'ok';
      g.data = d;
    }, function (e) {
      g.status = e.status === 404 || e.status === 400 ? 'note' : 'failed';
      g.message = e.message;
      if (!(e.status < 500)) { console.error('onemap: grading failed', e); }
    }).then(function () {
      var old = $('om-grading');
      if (state.selected === sel && sel.grading === g && old) { old.parentNode.replaceChild(gradingBlock(sel), old); }
    });
  }

  function gradingBlock(sel) {
    var g = sel.grading, d = g.data;
    var box = el('section', { id: 'om-grading', className: 'om-grading', 'data-status': g.status }, [el('h3', { text: t('grading') })]);
    if (g.status !== 'ok') {
      box.appendChild(el('p', { className: 'om-grading-' + (g.status === 'failed' ? 'error' : 'note'), text: g.status === 'loading' ? t('loading') : g.message }));
      return box;
    }
    var entry = state.layers.hazard_installations;
    var level = d.level !== null && d.level !== undefined ? formatValue('level', d.level, entry && entry.def)
      : document.createTextNode(d.is_major ? '—' : t('grading_not_major'));
    var table = el('table', { className: 'om-props' });
    [['S', 'S (Σq/Q)', fmtNum(d.S, 2)], ['R', 'R', fmtNum(d.R, 2)], ['alpha', 'α', fmtNum(d.alpha, 2)], ['level', t('grading_level'), level],
      ['exposed_people', t('grading_people'), fmtNum(d.exposed_people, 0)]].forEach(function (r) {
      table.appendChild(el('tr', { 'data-field': r[0] }, [el('th', { text: r[1] }), el('td', null, [r[2]])]));
    });
    box.appendChild(table);
    var subs = el('table', { className: 'om-grading-substances' }, [el('tr', null, [t('grading_substance'), 'CAS', 'q t', 'Q t', 'β']
      .map(function (h) { return el('th', { text: h }); }))]);
    (d.substances || []).forEach(function (x) {
      subs.appendChild(el('tr', null, [x.name, x.cas || '—', fmtNum(x.q, 3), fmtNum(x.Q, 3), fmtNum(x.beta, 2)]
        .map(function (v) { return el('td', { text: v }); })));
    });
    box.appendChild(subs);
    return box;
  }

  // The panel's buttons: `first` (zoom to…), then 报告 Report for a park, an installation (by id) or a district
  // (by adcode) when the role may read analyses: GET /analysis/reports/{park|installation|district}/{id}, saved
  // as a file (api.download); a refusal shows the server's description under the buttons.
  var REPORT_KINDS = { chemical_parks: 'park', hazard_installations: 'installation', admin_areas: 'district' };
  function panelActions(first, layer, id) {
    var kind = REPORT_KINDS[layer], msg = el('p', { className: 'om-report-msg', hidden: true });
    var report = kind && !isBlank(id) && can('analysis_read') && el('button', { type: 'button', className: 'om-btn om-report',
      text: t('report'), title: t('report_title'), onclick: function () {
        report.disabled = true;
        msg.hidden = false;
        msg.className = 'om-report-msg';
        msg.textContent = t('report_loading');
        download('/analysis/reports/' + kind + '/' + encodeURIComponent(id), kind + '-' + id + '.html').then(function () {
          msg.hidden = true;
        }, function (e) {
          msg.className = 'om-report-msg om-report-error';
          msg.textContent = e.message;
          if (!(e.status < 500)) { console.error('onemap: report failed', e); }
        }).then(function () { report.disabled = false; });
      } });
    return el('div', { className: 'om-panel-actions' }, [first, report, msg]);
  }

  // ---------------------------------------------------------------------------
  // Search
  // ---------------------------------------------------------------------------
  var searchTimer = null;
  function runSearch(q) {
    q = (q || '').trim();
    var list = $('om-search-results');
    var seq = ++state.searchSeq;
    if (!q) { state.searchResults = []; list.hidden = true; clear(list); return Promise.resolve([]); }
    clear(list).appendChild(el('li', { className: 'om-search-msg', text: t('searching') }));
    list.hidden = false;
    return getJSON('/api/search?q=' + encodeURIComponent(q)).then(function (data) {
      if (seq !== state.searchSeq) { return state.searchResults; }
      state.searchResults = (data && data.results) || [];
      renderSearchResults();
      return state.searchResults;
    }).catch(function (err) {
      if (seq !== state.searchSeq) { return []; }
      if (isRealError(err)) { console.error('onemap: search failed', err); }
      state.searchResults = [];
      clear(list).appendChild(el('li', { className: 'om-search-msg', text: t('search_failed') }));
      return [];
    });
  }

  function renderSearchResults() {
    var list = clear($('om-search-results'));
    if (!state.searchResults.length) {
      list.appendChild(el('li', { className: 'om-search-msg', text: t('search_none') }));
    }
    state.searchResults.forEach(function (r, i) {
      var e = state.layers[r.layer];
      var layerTitle = loc(r, 'title') || (e && loc(e.def, 'title')) || r.layer;
      list.appendChild(el('li', { role: 'option', tabindex: '-1', className: 'om-search-item', 'data-index': i,
        onclick: function () { goToResult(r); },
        onkeydown: function (ev) { if (ev.key === 'Enter') { goToResult(r); } }
      }, [el('span', { className: 'om-search-name', text: r.name || ('#' + r.id) }), el('span', { className: 'om-search-layer', text: layerTitle })]));
    });
    list.hidden = false;
  }

  function goToResult(r) {
    $('om-search-results').hidden = true;
    if (state.layers[r.layer] && !state.layers[r.layer].visible) { setLayerVisible(r.layer, true); }
    var b = bboxToBounds(r.bbox);
    if (b) {
      map.fitBounds(b, { maxZoom: 16, padding: [40, 40] });
    }
    var c = b ? b.getCenter() : null;
    return showFeature(r.layer, r.id, { name: r.name }, c);
  }

  // ---------------------------------------------------------------------------
  // Districts: dropdown, overview table, choropleth
  // ---------------------------------------------------------------------------
  function loadDistricts() {
    var seq = ++state.districtsSeq;  // (an answer for the token before a login or logout is dropped)
    return getJSON('/api/districts').then(function (data) {
      if (seq !== state.districtsSeq) { return; }
      state.districts = (data && data.districts) || [];
      state.outside = (data && data.outside) || null;
      pickMetric();
      renderMetricSelect();
      renderDistrictSelect();
      renderDistrictTable();
      if (state.choropleth.on) { refreshChoropleth(); }
    }).catch(function (err) {
      if (seq !== state.districtsSeq) { return; }
      if (isRealError(err)) { console.error('onemap: /api/districts failed', err); }
      state.districts = [];
      state.outside = null;
      renderMetricSelect();
      renderDistrictSelect();
      renderDistrictTable(t('districts_failed'));
    });
  }

  function districtName(d) {
    return (state.lang === 'en' && d.name_en) ? d.name_en : (d.name || String(d.adcode));
  }

  function renderDistrictSelect() {
    var sel = clear($('om-district-select'));
    sel.appendChild(el('option', { value: '', text: t('whole_city') }));
    state.districts.forEach(function (d) {
      sel.appendChild(el('option', { value: String(d.adcode), text: districtName(d) }));
    });
    sel.value = state.selectedDistrict;
  }

  var DIST_COLS = [
    { key: 'name', label: 'th_name', get: function (d) { return districtName(d); }, text: true },
    { key: 'parks', label: 'th_parks', title: 'th_parks_title', get: function (d) { return num(d.parks); } },
    { key: 'l1', label: 'th_level_1', get: function (d) { return level(d, '1'); }, inst: true },
    { key: 'l2', label: 'th_level_2', get: function (d) { return level(d, '2'); }, inst: true },
    { key: 'l3', label: 'th_level_3', get: function (d) { return level(d, '3'); }, inst: true },
    { key: 'l4', label: 'th_level_4', get: function (d) { return level(d, '4'); }, inst: true },
    { key: 'tailings_ponds', label: 'th_ponds', title: 'th_ponds_title', get: function (d) { return num(d.tailings_ponds); } },
    { key: 'headtop_ponds', label: 'th_headtop', title: 'th_headtop_title', get: function (d) { return num(d.headtop_ponds); } },
    { key: 'blackspots', label: 'th_blackspots', title: 'th_blackspots_title', get: function (d) { return num(d.blackspots); } },
    { key: 'population', label: 'th_population', title: 'th_population_title', get: function (d) { return num(d.population); }, pop: true }
  ];

  function renderDistrictTable(message) {
    var table = $('om-district-table');
    var thead = clear(table.tHead);
    var tbody = clear(table.tBodies[0]);
    var tfoot = clear(table.tFoot);
    var sort = state.districtSort;

    function th(c, attrs) {
      var arrow = sort.key === c.key ? (sort.dir > 0 ? ' ▲' : ' ▼') : '';
      var a = { className: 'om-sortable', 'data-key': c.key, title: c.title ? t(c.title) : null, scope: 'col', text: t(c.label) + arrow,
        onclick: function () {
          state.districtSort = { key: c.key, dir: sort.key === c.key ? -sort.dir : (c.text ? 1 : -1) };
          renderDistrictTable();
        } };
      Object.keys(attrs || {}).forEach(function (k) { a[k] = attrs[k]; });
      return el('th', a);
    }
    var r1 = el('tr');
    var r2 = el('tr');
    DIST_COLS.forEach(function (c, i) {
      if (c.inst) {
        if (c.key === 'l1') { r1.appendChild(el('th', { colspan: '4', scope: 'colgroup', className: 'om-th-group', text: t('th_inst') })); }
        r2.appendChild(th(c));
      } else {
        r1.appendChild(th(c, { rowspan: '2' }));
      }
    });
    thead.appendChild(r1);
    thead.appendChild(r2);

    if (message || !state.districts.length) {
      tbody.appendChild(el('tr', null, [el('td', { colspan: String(DIST_COLS.length), className: 'om-empty', text: message || t('no_districts') })]));
      return;
    }
    var rows = state.districts.slice();
    if (sort.key) {
      var col = DIST_COLS.filter(function (c) { return c.key === sort.key; })[0];
      rows.sort(function (a, b) {
        var va = col.get(a), vb = col.get(b);
        var r = col.text ? String(va).localeCompare(String(vb), 'zh-CN') : va - vb;
        return r * sort.dir;
      });
    }
    var totals = DIST_COLS.map(function () { return null; });
    rows.forEach(function (d) {
      var tr = el('tr', { 'data-adcode': String(d.adcode), className: String(d.adcode) === state.selectedDistrict ? 'om-selected' : null,
        onclick: function () { selectDistrict(String(d.adcode)); } });
      DIST_COLS.forEach(function (c, i) {
        var v = c.get(d);
        if (!c.text && v !== null) { totals[i] = (totals[i] || 0) + v; }
        tr.appendChild(el(c.text ? 'th' : 'td', { scope: c.text ? 'row' : null, text: c.text ? v : (c.pop ? fmtPopulation(v) : fmtNum(v)) }));
      });
      tbody.appendChild(tr);
    });
    var out = state.outside;
    if (out && DIST_COLS.some(function (c) { return !c.text && !c.pop && c.get(out); })) {  // (a row only when some)
      var ot = el('tr', { className: 'om-outside', title: t('outside_title') });
      DIST_COLS.forEach(function (c, i) {
        var v = c.pop ? null : c.get(out);
        if (!c.text && v !== null) { totals[i] = (totals[i] || 0) + v; }
        ot.appendChild(el(c.text ? 'th' : 'td', { scope: c.text ? 'row' : null, text: c.text ? t('outside') : (c.pop ? '' : fmtNum(v)) }));
      });
      tfoot.appendChild(ot);
    }
    var ft = el('tr');
    DIST_COLS.forEach(function (c, i) {
      ft.appendChild(el(c.text ? 'th' : 'td', { scope: c.text ? 'row' : null, text: c.text ? t('total') : (c.pop ? fmtPopulation(totals[i]) : fmtNum(totals[i])) }));
    });
    tfoot.appendChild(ft);
  }

  function findDistrict(adcode) {
    return state.districts.filter(function (d) { return String(d.adcode) === String(adcode); })[0] || null;
  }

  function selectDistrict(adcode) {
    state.selectedDistrict = adcode ? String(adcode) : '';
    $('om-district-select').value = state.selectedDistrict;
    Array.prototype.forEach.call(document.querySelectorAll('#om-district-table tbody tr[data-adcode]'), function (tr) {
      tr.classList.toggle('om-selected', tr.getAttribute('data-adcode') === state.selectedDistrict);
    });
    if (state.districtOutline) { map.removeLayer(state.districtOutline); state.districtOutline = null; }
    if (!state.selectedDistrict) { zoomHome(); return Promise.resolve(null); }
    var d = findDistrict(state.selectedDistrict);
    var b = d && bboxToBounds(d.bbox);
    if (b) { map.fitBounds(b); }
    var wanted = state.selectedDistrict;
    return ensureAdminGeo().then(function (fc) {
      if (!fc || wanted !== state.selectedDistrict) { return d; }
      var feats = (fc.features || []).filter(function (f) { return f.properties && String(f.properties.adcode) === wanted; });
      if (!feats.length) { return d; }
      state.districtOutline = L.geoJSON({ type: 'FeatureCollection', features: feats }, {
        pane: 'om-highlight', interactive: false,
        style: function () { return { color: '#1f2d3d', weight: 2.5, dashArray: '6 4', fill: false }; }
      }).addTo(map);
      if (!b) { map.fitBounds(state.districtOutline.getBounds()); }
      return d;
    });
  }

  function ensureAdminGeo() {
    if (state.adminGeo) { return Promise.resolve(state.adminGeo); }
    if (!state.adminGeoPromise) {
      state.adminGeoPromise = getJSON('/collections/admin_areas/items?limit=100').then(function (fc) {
        state.adminGeo = fc;
        return fc;
      }).catch(function (err) {
        state.adminGeoPromise = null;
        if (isRealError(err)) { console.error('onemap: admin_areas failed', err); }
        showStatus(t('admin_failed'), 'error');
        return null;
      });
    }
    return state.adminGeoPromise;
  }

  function metricLabel(key) { return t('metric_' + key); }
  function metricDef(key) { return METRICS.filter(function (m) { return m.key === key; })[0] || METRICS[0]; }

  // Whether some district has a number for the metric (null everywhere: the caller may not see that layer).
  function metricHasData(m) { return state.districts.some(function (d) { return m.get(d) !== null; }); }

  // The metric shown: the user's pick while it has data, else the first metric with data for this caller
  // (called whenever the districts load, i.e. also after a login or logout).
  function pickMetric() {
    var c = state.choropleth;
    var ok = METRICS.filter(metricHasData).map(function (m) { return m.key; });
    if (ok.length) { c.metric = ok.indexOf(c.picked) >= 0 ? c.picked : ok[0]; }
  }

  function renderMetricSelect() {
    var sel = clear($('om-choropleth-metric'));
    METRICS.forEach(function (m) {
      var off = state.districts.length > 0 && !metricHasData(m);
      sel.appendChild(el('option', { value: m.key, text: metricLabel(m.key), disabled: off, title: off ? t('metric_unavailable') : null }));
    });
    sel.value = state.choropleth.metric;
  }

  // Equal-interval class breaks, at most one a colour, in whole numbers: every metric is a count, so the class
  // (previous break, break] holds the counts from previous + 1 to break, one at least (never "> 0 – 0.8").
  function computeBreaks(values) {
    var max = values.reduce(function (a, b) { return Math.max(a, b); }, 0);
    var out = [];
    for (var i = 1; max > 0 && i <= CHORO_COLORS.length; i++) {
      var b = Math.ceil(max * i / CHORO_COLORS.length);
      if (!out.length || b > out[out.length - 1]) { out.push(b); }
    }
    return out;
  }

  function choroColor(v) {
    if (v === null || v === undefined) { return CHORO_MISSING; }
    if (v <= 0) { return CHORO_ZERO; }
    var br = state.choropleth.breaks;
    var offset = CHORO_COLORS.length - br.length;
    for (var i = 0; i < br.length; i++) { if (v <= br[i]) { return CHORO_COLORS[i + offset]; } }
    return CHORO_COLORS[CHORO_COLORS.length - 1];
  }

  function choroplethClasses() {
    var br = state.choropleth.breaks;
    var out = [{ color: CHORO_ZERO, label: '0' }];
    var offset = CHORO_COLORS.length - br.length;
    var fmt = state.choropleth.metric === 'population' ? fmtPopulation : fmtNum;
    var lo = 0;
    br.forEach(function (b, i) {  // (whole numbers: "1 – 2", or "3" when the class holds one count)
      out.push({ color: CHORO_COLORS[i + offset], label: b > lo + 1 ? fmt(lo + 1) + ' – ' + fmt(b) : fmt(b) });
      lo = b;
    });
    out.push({ color: CHORO_MISSING, label: t('no_data') });
    return out;
  }

  function districtValue(adcode) {
    var d = findDistrict(adcode);
    return d ? metricDef(state.choropleth.metric).get(d) : null;
  }

  function refreshChoropleth() {
    var c = state.choropleth;
    var m = metricDef(c.metric);
    c.breaks = computeBreaks(state.districts.map(m.get));
    if (c.layer) {
      c.layer.setStyle(choroStyle);
      c.layer.eachLayer(function (l) { l.setTooltipContent(choroTip(l.feature)); });
    }
    renderLegend();
  }

  function choroStyle(f) {
    var v = districtValue(f.properties && f.properties.adcode);
    return { pane: 'om-choropleth', color: '#5c5c70', weight: 1, opacity: 0.8, fillColor: choroColor(v), fillOpacity: 0.7 };
  }

  function choroTip(f) {
    var p = f.properties || {};
    var d = findDistrict(p.adcode);
    var v = districtValue(p.adcode);
    var fmt = state.choropleth.metric === 'population' ? fmtPopulation : fmtNum;
    return escapeHtml((d ? districtName(d) : (p.name || p.adcode)) + ' · ' + metricLabel(state.choropleth.metric) + '：' + (v === null ? t('no_data') : fmt(v)));
  }

  function setChoropleth(on, metric) {
    var c = state.choropleth;
    if (metric) { c.metric = c.picked = metricDef(metric).key; $('om-choropleth-metric').value = c.metric; }
    c.on = !!on;
    $('om-choropleth-toggle').checked = c.on;
    if (!c.on) {
      if (c.layer) { map.removeLayer(c.layer); }
      renderLegend();
      return Promise.resolve(null);
    }
    return ensureAdminGeo().then(function (fc) {
      if (!c.on) { return null; }
      if (!fc) { c.on = false; $('om-choropleth-toggle').checked = false; renderLegend(); return null; }
      if (!c.layer) {
        c.layer = L.geoJSON(fc, {
          pane: 'om-choropleth',
          style: choroStyle,
          onEachFeature: function (f, l) {
            l.bindTooltip(choroTip(f), { sticky: true, className: 'om-hover-tip' });
            l.on('click', function () { showDistrict(f.properties && f.properties.adcode); });
          }
        });
      }
      refreshChoropleth();
      if (!map.hasLayer(c.layer)) { c.layer.addTo(map); }
      return c.layer;
    });
  }

  function showDistrict(adcode) {
    var d = findDistrict(adcode);
    if (!d) { return; }
    state.detailSeq++;
    setHighlight(null);
    state.selected = { kind: 'district', layer: 'admin_areas', id: String(d.adcode), properties: d, detail: null, status: 'ok' };
    renderPanel();
  }

  function renderDistrictPanel(sel) {
    var d = sel.properties;
    var panel = $('om-panel');
    panel.setAttribute('data-layer-id', 'admin_areas');
    panel.setAttribute('data-feature-id', String(d.adcode));
    panel.setAttribute('data-status', 'ok');
    $('om-panel-layer').textContent = t('district_panel');
    $('om-panel-title').textContent = districtName(d);
    var body = clear($('om-panel-body'));
    var table = el('table', { className: 'om-props' });
    var rows = [
      ['adcode', String(d.adcode)],
      [t('metric_parks'), fmtNum(d.parks)],
      [t('th_inst') + ' · ' + t('th_level_1'), fmtNum(level(d, '1'))],
      [t('th_inst') + ' · ' + t('th_level_2'), fmtNum(level(d, '2'))],
      [t('th_inst') + ' · ' + t('th_level_3'), fmtNum(level(d, '3'))],
      [t('th_inst') + ' · ' + t('th_level_4'), fmtNum(level(d, '4'))],
      [t('metric_tailings_ponds'), fmtNum(d.tailings_ponds)],
      [t('metric_headtop_ponds'), fmtNum(d.headtop_ponds)],
      [t('metric_blackspots'), fmtNum(d.blackspots)],
      [t('metric_population'), fmtNum(d.population)]
    ];
    rows.forEach(function (r) { table.appendChild(el('tr', null, [el('th', { text: r[0] }), el('td', { text: r[1] })])); });
    body.appendChild(table);
    body.appendChild(panelActions(el('button', { type: 'button', className: 'om-btn', text: t('zoom_to'), onclick: function () {
      selectDistrict(String(d.adcode));
    } }), 'admin_areas', d.adcode));
  }

  // ---------------------------------------------------------------------------
  // Login
  // ---------------------------------------------------------------------------
  function setToken(tok) {
    state.token = tok || null;
    storageSet(LS_TOKEN, state.token);
    renderLoginState();
  }

  function renderLoginState() {
    var on = !!state.token;
    $('om-login-btn').hidden = on;
    $('om-logout-btn').hidden = !on;
    var s = $('om-login-state');
    s.hidden = !on;
    var me = on && state.me && state.me.role !== 'anonymous' ? state.me : null;
    var role = me ? (state.lang === 'en' ? me.role_en || me.role : me.role_zh || me.role) : '';
    s.textContent = on ? t('logged_in') + (role ? ' · ' + role : '') : '';
    s.title = role ? t('role_title', { role: role }) + (me.name ? ' (' + me.name + ')' : '') : '';
    if (on) { $('om-login-form').hidden = true; $('om-login-btn').setAttribute('aria-expanded', 'false'); }
  }

  function reloadAll(opts) {
    return Promise.all([loadLayers(opts), loadDistricts()]).then(function (r) {
      return whenAccess().then(function () { return r[0]; });
    });
  }

  // ---------------------------------------------------------------------------
  // Access: the tools the caller's role may use (GET /auth/me)
  // ---------------------------------------------------------------------------
  // `can` comes from the role sets the API itself enforces. The topic panels hide the buttons and panels
  // of what the role may not use (api.can, api.onAccess). While unknown, or when /auth/me fails (e.g. 503),
  // every tool stays shown as before: the server still checks each request.
  var accessListeners = [];

  function can(key) {
    return !state.me || !state.me.can || state.me.can[key] !== false;
  }

  function setAccess(me) {
    state.me = me || null;
    renderLoginState();
    accessListeners.forEach(function (fn) {
      try { fn(state.me); } catch (e) { console.error('onemap: access listener failed', e); }
    });
  }

  function refreshAccess() {
    var seq = ++state.meSeq;
    var p = getJSON('/auth/me').then(function (me) {
      if (seq === state.meSeq) { setAccess(me); }
    }, function (err) {
      if (seq !== state.meSeq) { return; }
      // A refused token: loadLayers drops it, and the anonymous answer follows (no need to show all meanwhile).
      if (err instanceof HttpError && (err.status === 401 || err.status === 403) && state.token) { return; }
      if (isRealError(err)) { console.error('onemap: /auth/me failed', err); }
      setAccess(null);
    });
    state.accessReady = p;
    return p;
  }

  // Resolves (with state.me) once the answer for the current token is in, however often the token changed.
  function whenAccess() {
    var p = state.accessReady || refreshAccess();
    return p.then(function () { return p === state.accessReady ? state.me : whenAccess(); });
  }

  function onAccess(fn) {
    accessListeners.push(fn);
    fn(state.me);
  }

  // The feature panel's own tools follow the role too (grading block, report button): drawn again for a park,
  // an installation or a district (not for other features, whose panel does not change with the role).
  onAccess(function () {
    if (!state.selected || !REPORT_KINDS[state.selected.layer]) { return; }
    loadGrading(state.selected);
    renderPanel();
  });

  var loginSeq = 0;
  function login(token) {
    token = (token || '').trim();
    var msg = $('om-login-msg');
    var seq = ++loginSeq;  // (only the latest attempt writes the message)
    if (!token) { msg.textContent = t('token_empty'); return Promise.resolve({ ok: false, reason: 'empty' }); }
    msg.textContent = t('token_checking');
    setToken(token);
    return reloadAll({ login: true }).then(function (res) {
      var latest = seq === loginSeq;
      if (res && res.invalidToken) {
        if (latest) { $('om-login-form').hidden = false; msg.textContent = t('token_rejected'); }
        return { ok: false, reason: 'invalid' };
      }
      if (latest) { msg.textContent = ''; }
      $('om-token-input').value = '';
      showStatus(t('login_ok'), 'info');
      return { ok: true };
    });
  }

  function logout() {
    setToken(null);
    return reloadAll().then(function () { showStatus(t('logout_ok'), 'info'); return { ok: true }; });
  }

  // ---------------------------------------------------------------------------
  // Status line
  // ---------------------------------------------------------------------------
  var statusTimer = null;
  // A status line over the map, hidden after a while (sticky: until the next status).
  function showStatus(text, kind, sticky) {
    var s = $('om-status');
    s.textContent = text;
    s.className = 'om-status om-status-' + (kind || 'info');
    s.hidden = false;
    clearTimeout(statusTimer);
    if (!sticky) { statusTimer = setTimeout(function () { s.hidden = true; }, kind === 'error' ? 10000 : 4000); }
  }

  // ---------------------------------------------------------------------------
  // Language
  // ---------------------------------------------------------------------------
  function applyStaticI18n() {
    document.documentElement.lang = state.lang === 'en' ? 'en' : 'zh-CN';
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n]'), function (n) { n.textContent = t(n.getAttribute('data-i18n')); });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-placeholder]'), function (n) { n.placeholder = t(n.getAttribute('data-i18n-placeholder')); });
    Array.prototype.forEach.call(document.querySelectorAll('[data-i18n-title]'), function (n) {
      n.title = t(n.getAttribute('data-i18n-title'));
      n.setAttribute('aria-label', n.title);
    });
  }

  var langListeners = [];  // the topic panels' api.onLang(fn): called after every switch

  function setLang(lang) {
    state.lang = lang === 'en' ? 'en' : 'zh';
    storageSet(LS_LANG, state.lang);
    applyStaticI18n();
    if (state.config) { applyTitle(); }
    titleControls();
    coordControl.update();
    renderLoginState();
    renderSwitcher();
    renderLegend();
    updateBanner();
    renderDistrictSelect();
    renderDistrictTable();
    renderMetricSelect();
    if (state.choropleth.layer) { refreshChoropleth(); }
    if (state.selected) { renderPanel(); }
    if (!$('om-search-results').hidden && state.searchResults.length) { renderSearchResults(); }
    langListeners.forEach(function (fn) {
      try { fn(state.lang); } catch (e) { console.error('onemap: language listener failed', e); }
    });
    return state.lang;
  }

  // ---------------------------------------------------------------------------
  // DOM wiring
  // ---------------------------------------------------------------------------
  function wire() {
    if (window.innerWidth < 900) {
      document.body.classList.add('om-sidebar-collapsed');
      $('om-sidebar-toggle').setAttribute('aria-expanded', 'false');
    }
    $('om-lang-btn').addEventListener('click', function () { setLang(state.lang === 'zh' ? 'en' : 'zh'); });

    $('om-sidebar-toggle').addEventListener('click', function () {
      var collapsed = document.body.classList.toggle('om-sidebar-collapsed');
      $('om-sidebar-toggle').setAttribute('aria-expanded', collapsed ? 'false' : 'true');
      map.invalidateSize();
    });

    $('om-search').addEventListener('submit', function (e) {
      e.preventDefault();
      clearTimeout(searchTimer);
      runSearch($('om-search-input').value);
    });
    $('om-search-input').addEventListener('input', function () {
      clearTimeout(searchTimer);
      var q = $('om-search-input').value;
      if (q.trim().length < 2) { if (!q.trim()) { runSearch(''); } return; }
      searchTimer = setTimeout(function () { runSearch(q); }, 350);
    });
    $('om-search-input').addEventListener('keydown', function (e) {
      if (e.key === 'Escape') { $('om-search-results').hidden = true; }
      if (e.key === 'ArrowDown') {
        var first = document.querySelector('#om-search-results .om-search-item');
        if (first) { e.preventDefault(); first.focus(); }
      }
    });
    $('om-search-results').addEventListener('keydown', function (e) {
      var cur = document.activeElement;
      if (!cur || !cur.classList.contains('om-search-item')) { return; }
      if (e.key === 'ArrowDown' && cur.nextSibling) { e.preventDefault(); cur.nextSibling.focus(); }
      if (e.key === 'ArrowUp') { e.preventDefault(); (cur.previousSibling || $('om-search-input')).focus(); }
      if (e.key === 'Escape') { $('om-search-results').hidden = true; $('om-search-input').focus(); }
    });
    document.addEventListener('click', function (e) {
      if (!$('om-search').contains(e.target)) { $('om-search-results').hidden = true; }
    });

    $('om-district-select').addEventListener('change', function () { selectDistrict($('om-district-select').value); });

    $('om-choropleth-toggle').addEventListener('change', function () { setChoropleth($('om-choropleth-toggle').checked); });
    $('om-choropleth-metric').addEventListener('change', function () {
      state.choropleth.metric = state.choropleth.picked = $('om-choropleth-metric').value;
      if (state.choropleth.on) { refreshChoropleth(); } else { setChoropleth(true); }
    });

    $('om-login-btn').addEventListener('click', function () {
      var f = $('om-login-form');
      f.hidden = !f.hidden;
      $('om-login-btn').setAttribute('aria-expanded', f.hidden ? 'false' : 'true');
      $('om-login-msg').textContent = '';
      if (!f.hidden) { $('om-token-input').focus(); }
    });
    $('om-token-cancel').addEventListener('click', function () {
      $('om-login-form').hidden = true;
      $('om-login-btn').setAttribute('aria-expanded', 'false');
    });
    $('om-login-form').addEventListener('submit', function (e) {
      e.preventDefault();
      login($('om-token-input').value);
    });
    $('om-logout-btn').addEventListener('click', function () { logout(); });

    $('om-panel-close').addEventListener('click', closePanel);
    document.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' && state.selected && !$('om-search').contains(e.target)) { closePanel(); }
    });
  }

  // ---------------------------------------------------------------------------
  // Test / debugging helpers
  // ---------------------------------------------------------------------------
  // Features currently loaded in a layer's tiles: [{id, properties, tile}]
  function renderedFeatures(layerId) {
    var e = state.layers[layerId];
    if (!e || !e.grid || !e.grid._vectorTiles) { return []; }
    var out = [];
    Object.keys(e.grid._vectorTiles).forEach(function (key) {
      var feats = e.grid._vectorTiles[key]._features || {};
      Object.keys(feats).forEach(function (fid) {
        var f = feats[fid].feature;
        out.push({ id: f.properties && f.properties.__fid !== undefined ? f.properties.__fid : fid, properties: f.properties, tile: key });
      });
    });
    return out;
  }

  // Resolves when every visible layer has finished loading its current tiles (false after timeoutMs).
  // A view's tiles are requested when its move ends: after an animated setView/flyTo wait for 'moveend'
  // first, or set the view with {animate: false}.
  function whenTilesLoaded(timeoutMs) {
    var visible = state.layerOrder.map(function (id) { return state.layers[id].grid; })
      .filter(function (g) { return map.hasLayer(g); });
    return new Promise(function (resolve) {
      var pending = visible.filter(function (g) { return g.isLoading(); });
      if (!pending.length) { resolve(true); return; }
      var timer = setTimeout(function () { resolve(false); }, timeoutMs || 10000);
      pending.forEach(function (g) {
        g.once('load', function () {
          pending = pending.filter(function (x) { return x !== g && x.isLoading(); });
          if (!pending.length) { clearTimeout(timer); resolve(true); }
        });
      });
    });
  }

  // ---------------------------------------------------------------------------
  // Start
  // ---------------------------------------------------------------------------
  wire();
  applyStaticI18n();
  renderLoginState();
  renderMetricSelect();
  renderDistrictTable();

  refreshAccess();
  var ready = loadConfig().then(function () {
    return Promise.all([loadLayers(), loadDistricts()]);
  }).then(function () {
    return whenAccess();  // (the panels then start with the tools of the role, no flash of the others)
  }).then(function () {
    // Topic panels (routes, emergency, monitoring) load after this script and share the login token.
    var panels = window.RiskmapPanels || {};
    var api = {
      token: function () { return state.token; },
      // can(key): whether the role may use a tool (GET /auth/me `can`; true while unknown);
      // onAccess(fn): fn(me) now and after every change of role (login, logout, a refused token)
      can: can,
      onAccess: onAccess,
      // on: a panel picks points on the map, so clicks on features are not opened in the side panel
      picking: function (on) { state.picking = !!on; },
      // fmtNum(v, digits): a number as the page shows it; fmtTime(v, form): a time in Beijing time; fitBeside(bounds, box, opts): fit beside a panel's box
      fmtNum: fmtNum,
      fmtTime: fmtTime,
      fitBeside: fitBeside,
      padBeside: padBeside,
      // A panel's box over the map (class opts.className, inner HTML opts.html; clicks and wheel turns stay
      // in it) and its toggle button (a Leaflet control at opts.position, class opts.button, text opts.label,
      // tooltip opts.title): the button shows or hides the box, then calls opts.toggled(open).
      // Returns { panel, toggle, $ } ($(id): the element of the box with that id).
      box: function (opts) {
        var panel = el('div', { className: opts.className, hidden: true });
        panel.innerHTML = opts.html;
        map.getContainer().appendChild(panel);
        L.DomEvent.disableClickPropagation(panel);
        L.DomEvent.disableScrollPropagation(panel);
        var toggle = el('div', { className: 'leaflet-bar ' + opts.button, title: opts.title, text: opts.label });
        L.DomEvent.on(toggle, 'click', function (e) {
          L.DomEvent.stop(e);
          panel.hidden = !panel.hidden;
          if (opts.toggled) { opts.toggled(!panel.hidden); }
        });
        var Toggle = L.Control.extend({ options: { position: opts.position }, onAdd: function () { return toggle; } });
        map.addControl(new Toggle());
        return { panel: panel, toggle: toggle, $: function (id) { return panel.querySelector('#' + id); } };
      },
      // Put a panel's box under the control corner of its toggle (top and max-height from the corner's actual
      // height, whatever the number and width of the controls there; the bottom 40 px keep the scale and
      // attribution). Call it when the box opens and when what it shows, or the role's controls, change.
      placeBelow: function (panel, toggle) {
        var top = Math.round(toggle.parentNode.getBoundingClientRect().bottom - map.getContainer().getBoundingClientRect().top) + 8;
        panel.style.top = top + 'px';
        panel.style.maxHeight = 'calc(100% - ' + (top + 40) + 'px)';
      },
      // lang(): the page's language ('zh' | 'en'); onLang(fn): fn(lang) after every language switch
      lang: function () { return state.lang; },
      onLang: function (fn) { langListeners.push(fn); },
      // request(path, opts): fetch with the token; json(path, opts): the JSON body, or an Error with .status and
      // the server's description (opts.who: who may do it); download(path, filename, opts): the answer saved as
      // a file (rejects like json)
      request: request,
      json: requestJSON,
      itemPath: itemPath,
      download: download
    };
    Object.keys(panels).forEach(function (name) { panels[name].init(map, api); });
    pollVersions();
    setInterval(function () { if (!document.hidden) { pollVersions(); } }, VERSIONS_MS);
    return true;
  });

  // Writes made elsewhere (an import, an analysis run, another user's edit) reach an open page: every VERSIONS_MS
  // the layers' versions are asked (GET /api/versions) and the visible layers whose version moved are drawn
  // again (their tiles are revalidated: Cache-Control no-cache with an ETag). A layer first seen sets its baseline.
  var VERSIONS_MS = 30000;
  function pollVersions() {
    if (state.down) { return Promise.resolve(); }
    return getJSON('/api/versions').then(function (d) {
      var was = state.versions || {};
      state.versions = (d && d.versions) || {};
      Object.keys(state.versions).forEach(function (id) {
        var e = state.layers[id];
        if (e && e.visible && was[id] !== undefined && was[id] !== state.versions[id]) { e.grid.redraw(); }
      });
    }, function (err) { if (isRealError(err)) { console.warn('onemap: /api/versions failed', err); } });
  }

  window.onemap = {
    map: map,
    layers: state.layers,   // replaced on reload: read window.onemap.layers again after login/logout
    state: state,
    ready: ready,
    t: t,
    fmtNum: fmtNum,
    fmtTime: fmtTime,
    strings: STR,
    setLang: setLang,
    setLayerVisible: setLayerVisible,
    reloadLayers: loadLayers,
    login: login,
    logout: logout,
    can: can,
    whenAccess: whenAccess,
    search: runSearch,
    goToResult: goToResult,
    showFeature: showFeature,
    closePanel: closePanel,
    selectDistrict: selectDistrict,
    setChoropleth: setChoropleth,
    renderedFeatures: renderedFeatures,
    whenTilesLoaded: whenTilesLoaded,
    pollVersions: pollVersions
  };
  // Keep `layers` and the other state-backed fields current after reloads.
  Object.defineProperty(window.onemap, 'layers', { get: function () { return state.layers; }, enumerable: true });
  Object.defineProperty(window.onemap, 'config', { get: function () { return state.config; }, enumerable: true });
  Object.defineProperty(window.onemap, 'selected', { get: function () { return state.selected; }, enumerable: true });
  Object.defineProperty(window.onemap, 'lang', { get: function () { return state.lang; }, enumerable: true });
  Object.defineProperty(window.onemap, 'me', { get: function () { return state.me; }, enumerable: true });
})();
