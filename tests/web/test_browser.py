"""The one-map in headless Chromium (Debian's build, driven by Playwright) against the real server."""


import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from conftest import browser_page, load, pond_with_open_alarm, served, throwaway_cluster
from layers.db import migrate


@pytest.fixture
def site(db_url, clean):
    load(clean, "chemical_parks", gpd.GeoDataFrame(  # (the second in no district)
        {"name": ["测试园区", "区外园区"], "risk_grade": ["red", None], "synthetic": [True, True]},
        geometry=[shapely.box(102.66, 25.00, 102.76, 25.08), shapely.box(102.90, 25.20, 102.92, 25.22)], crs=4326))
    load(clean, "enterprises", gpd.GeoDataFrame(
        {"name": ["测试企业"], "kind": ["storage"], "risk_grade": ["orange"], "park_id": [1]},
        geometry=[shapely.box(102.70, 25.03, 102.72, 25.05)], crs=4326))
    load(clean, "admin_areas", gpd.GeoDataFrame({"adcode": ["530102"], "name": ["五华区"], "name_en": ["Wuhua District"]},
                                                geometry=[shapely.box(102.6, 24.95, 102.8, 25.1)], crs=4326))
    with served(db_url) as base:
        yield base, clean


def test_map_loads_draws_clicks_and_shows_restricted_layer_after_login(site, token):
    base, _ = site
    planner = token("planner")
    with browser_page() as (page, errors):
        page.goto(base + "/")
        page.evaluate("onemap.ready")
        page.evaluate("onemap.map.setView([25.04, 102.71], 13, {animate: false})")  # (tiles requested now)
        page.evaluate("onemap.whenTilesLoaded(15000)")
        assert page.evaluate("onemap.renderedFeatures('chemical_parks').length") > 0
        assert "enterprises" not in page.evaluate("Object.keys(onemap.layers)")
        assert page.locator("#om-banner").is_visible()  # synthetic data is labelled
        # the district table: parks counted for all; installations (restricted) shown as unknown, not 0
        parks, level_1 = (f"#om-district-table tr[data-adcode='530102'] td:nth-of-type({i})" for i in (1, 2))
        page.wait_for_selector(parks)
        assert page.inner_text(parks) == "1" and page.inner_text(level_1) == "—"
        # a park in no district has its own row, so the total is every park
        assert page.inner_text("#om-district-table tfoot tr.om-outside").split("\t")[:2] == ["区外", "1"]
        assert page.inner_text("#om-district-table tfoot tr:last-child td:nth-of-type(1)") == "2"

        # click inside the park: the side panel opens with its attributes
        point = page.evaluate("(() => { const p = onemap.map.latLngToContainerPoint([25.01, 102.68]);"
                              " const r = onemap.map.getContainer().getBoundingClientRect();"
                              " return [p.x + r.left, p.y + r.top]; })()")
        page.mouse.click(*point)
        page.wait_for_selector("#om-panel[data-status=ok]", timeout=10000)
        assert "测试园区" in page.inner_text("#om-panel")
        # risk grade as the registry names and colours it (layers.spec.RISK_GRADES), in panel and legend
        assert page.inner_text("#om-panel tr[data-field=risk_grade] td") == "重大风险（红）"
        assert page.evaluate("getComputedStyle(document.querySelector("
                             "'#om-panel tr[data-field=risk_grade] .om-chip-dot')).backgroundColor") == "rgb(230, 0, 18)"
        legend = page.inner_text("#om-legend")
        assert all(g in legend for g in ("重大风险（红）", "较大风险（橙）", "一般风险（黄）", "低风险（蓝）"))

        # log in with a token through the form: the restricted layer appears and draws
        page.click("#om-login-btn")
        page.fill("#om-token-input", planner)
        page.click("#om-token-submit")
        page.wait_for_function("Object.keys(onemap.layers).includes('enterprises')", timeout=10000)
        page.wait_for_function(f"document.querySelector({level_1!r}).innerText === '0'", timeout=10000)  # (now known)
        page.evaluate("onemap.whenTilesLoaded(15000)")
        assert page.evaluate("onemap.renderedFeatures('enterprises').length") > 0
    assert errors == []


def test_panel_tools_follow_the_role(site, token):
    """The 应急 / 路线 / 预警 buttons and 确认 Acknowledge show only for a role that may use them (GET /auth/me):
    none for anonymous; after a login those of the role; logging out closes an open panel of the old role."""
    from datetime import datetime, timezone

    base, engine = site
    pond_with_open_alarm(engine, datetime.now(timezone.utc).replace(microsecond=0))
    planner, editor, emergency = token("planner"), token("editor"), token("emergency")
    toggles = {"emergency": ".em-toggle", "routes": ".rt-toggle", "alarms": ".mo-toggle", "siting": ".st-toggle"}

    with browser_page() as (page, errors):
        def shown():
            return {k: page.locator(sel).is_visible() for k, sel in toggles.items()}

        def role_is(role):
            page.wait_for_function(f"onemap.me && onemap.me.role === {role!r}", timeout=10000)

        def open_alarm():
            if not page.locator(".mo-panel").is_visible():
                page.click(".mo-toggle")
            page.click(".mo-alarm >> nth=0")
            page.wait_for_selector("#mo-detail h4", timeout=10000)

        page.goto(base + "/")
        page.evaluate("onemap.ready")
        assert page.evaluate("onemap.me.role") == "anonymous"
        assert shown() == {"emergency": False, "routes": False, "alarms": False, "siting": False}
        assert page.locator(".em-toggle").count() == 1  # (there, hidden)

        # planner: routes, alarms (no acknowledging) and the emergency look-ups (no incident analysis)
        page.click("#om-login-btn")
        page.fill("#om-token-input", planner)
        page.click("#om-token-submit")
        role_is("planner")
        assert shown() == {"emergency": True, "routes": True, "alarms": True, "siting": True}
        assert "规划人员" in page.inner_text("#om-login-state")
        open_alarm()
        assert page.locator("#mo-ack").count() == 1 and not page.locator("#mo-ack").is_visible()
        page.click(".em-toggle")
        assert page.locator("#em-near").is_visible() and not page.locator("#em-run").is_visible()

        # logging out hides every tool and closes the open panels
        page.click("#om-logout-btn")
        role_is("anonymous")
        assert shown() == {"emergency": False, "routes": False, "alarms": False, "siting": False}
        assert not page.locator(".mo-panel").is_visible() and not page.locator(".em-panel").is_visible()

        # editor: alarms and acknowledging, the route rules (the Routes panel's rules tab only), no emergency tools
        assert page.evaluate(f"onemap.login({editor!r}).then(r => r.ok)")
        assert page.evaluate("onemap.me.role") == "editor"  # (login resolves with the new role's tools)
        assert shown() == {"emergency": False, "routes": True, "alarms": True, "siting": True}

        # emergency: everything; the Acknowledge button shows and works
        assert page.evaluate(f"onemap.login({emergency!r}).then(r => r.ok)")
        assert shown() == {"emergency": True, "routes": True, "alarms": True, "siting": True}
        open_alarm()
        assert page.locator("#mo-ack").is_visible()
        page.click("#mo-ack")
        page.wait_for_selector("#mo-acked", timeout=10000)  # (acknowledged: who and when, no second button)
        assert "test-emergency" in page.inner_text("#mo-acked") and page.locator("#mo-ack").count() == 0
        page.click(".em-toggle")
        assert page.locator("#em-run").is_visible()
    assert errors == []


def test_panel_tools_stay_when_auth_me_fails(site):
    """If GET /auth/me fails (here a 503), the page keeps every tool shown; the server still checks each use."""
    base, _ = site
    with browser_page() as (page, errors):
        page.route("**/auth/me", lambda route: route.fulfill(
            status=503, content_type="application/json",
            body='{"code": "DatabaseUnavailable", "description": "the database is unavailable; retry shortly"}'))
        page.goto(base + "/")
        page.evaluate("onemap.ready")
        assert page.evaluate("onemap.me") is None
        for sel in (".em-toggle", ".rt-toggle", ".mo-toggle"):
            assert page.locator(sel).is_visible(), sel
    # the failure is reported (as for the other endpoints' 5xx), nothing else
    assert errors and all("503" in e or "/auth/me failed" in e for e in errors), errors


def test_controls_numbers_choropleth_and_login_messages(site, token):
    """Top-left controls keep their order (zoom, home, then the tools) through language switches and logins;
    the feature panel rounds float fields by the registry's field types; the choropleth opens on a metric the
    caller has numbers for; the login form says a refused token was not accepted and refuses an empty one."""
    base, engine = site
    load(engine, "tailings_ponds", gpd.GeoDataFrame(
        {"name": ["测试尾矿库"], "dam_height_m": [35.456], "capacity_10k_m3": [482.976836], "toe_lon": [102.7012345],
         "downstream_people": [1234]}, geometry=[shapely.box(102.70, 25.00, 102.71, 25.01)], crs=4326))
    planner = token("planner")
    with browser_page() as (page, errors):
        page.goto(base + "/")
        page.evaluate("onemap.ready")

        def top_left():
            return page.evaluate("[...document.querySelector('.leaflet-top.leaflet-left').children].map(c =>"
                                 " c.classList.contains('leaflet-control-zoom') ? 'zoom' : c.classList.contains('om-home')"
                                 " ? 'home' : [...c.classList].find(k => k.endsWith('-toggle')))")

        order = top_left()
        assert order[:2] == ["zoom", "home"] and {"em-toggle", "st-toggle"} <= set(order[2:])
        page.evaluate("onemap.setLang('en')")
        assert top_left() == order
        assert page.get_attribute(".leaflet-control-zoom-in", "title") == "Zoom in"
        assert page.get_attribute(".om-home a", "title") == "Whole city"
        page.evaluate("onemap.setLang('zh')")
        assert page.get_attribute(".leaflet-control-zoom-in", "title") == "放大"
        assert page.evaluate(f"onemap.login({planner!r}).then(r => r.ok)")
        page.evaluate("onemap.setLang('en')")
        page.evaluate("onemap.setLang('zh')")
        assert top_left() == order
        page.evaluate("onemap.logout()")

        # floats: at most 1 decimal (metres…), people whole, lon/lat 6 decimals; ints as they are
        with engine.connect() as conn:
            pond = conn.execute(text("SELECT id FROM tailings_ponds")).scalar_one()
        page.evaluate(f"onemap.showFeature('tailings_ponds', {pond}, {{}}, null)")
        page.wait_for_selector("#om-panel[data-status=ok]", timeout=10000)

        def cell(field):
            return page.text_content(f"#om-panel tr[data-field={field}] td")
        assert (cell("dam_height_m"), cell("capacity_10k_m3"), cell("toe_lon"), cell("downstream_people")) == \
            ("35.5", "483", "102.701235", "1,234")
        assert page.evaluate(f"onemap.login({planner!r}).then(r => r.ok)")
        page.evaluate("onemap.showFeature('exposure_rings', null, {people: 122.074, outer_m: 482.976836}, null)")
        assert (cell("people"), cell("outer_m")) == ("122", "483")
        page.evaluate("onemap.closePanel(); onemap.logout()")

        # the choropleth: anonymous callers see no installation counts, so it opens on the first metric with
        # numbers and the installation metrics are disabled; a login brings them back (and the default with them)
        page.wait_for_function("onemap.me && onemap.me.role === 'anonymous'", timeout=10000)
        disabled = "[...document.querySelectorAll('#om-choropleth-metric option:disabled')].map(o => o.value)"
        assert page.evaluate(disabled)[:2] == ["installations", "installations_1"]
        assert page.input_value("#om-choropleth-metric") == "parks"
        page.check("#om-choropleth-toggle")
        page.wait_for_function("document.querySelector('.om-legend-choropleth')", timeout=10000)
        assert "分级设色：化工园区" in page.inner_text(".om-legend-choropleth")
        assert page.evaluate(f"onemap.login({planner!r}).then(r => r.ok)")
        page.wait_for_function("document.querySelector('#om-choropleth-metric').value === 'installations'",
                               timeout=10000)
        assert "installations" not in page.evaluate(disabled)  # (population stays off: this city has none)
        page.evaluate("onemap.logout()")
        page.wait_for_function("document.querySelector('#om-choropleth-metric').value === 'parks'", timeout=10000)

        # login messages: a refused token was "not accepted" (nobody was logged in, nobody was logged out);
        # an empty token has its own message; a new attempt clears the old message
        page.click("#om-login-btn")
        page.fill("#om-token-input", "not-a-token")
        page.click("#om-token-submit")
        page.wait_for_function("document.querySelector('#om-login-msg').textContent.includes('未被接受')",
                               timeout=10000)
        assert page.inner_text("#om-login-msg") == "令牌未被接受（无效或已过期）"
        assert "令牌无效" not in page.text_content("#om-status")  # (no "…logged out" toast)
        page.fill("#om-token-input", "")
        page.click("#om-token-submit")
        assert page.inner_text("#om-login-msg") == "请输入访问令牌"
        page.fill("#om-token-input", planner)
        page.click("#om-token-submit")
        page.wait_for_function("onemap.me && onemap.me.role === 'planner'"
                               " && document.querySelector('#om-login-msg').textContent === ''", timeout=10000)
    # only the 401s of the refused token (Chromium logs every 4xx response)
    assert all("status of 401" in e for e in errors) and len(errors) == 3, errors


def test_names_times_swatches_titles_and_search_box(site, token):
    """The feature panel's title is the name in the page's language (name_en in English, name the fallback);
    datetime fields are Beijing time, labelled, whatever the browser's zone; a layer's swatch in the layer list
    and the legend is what the map draws (a polygon's fill inside its stroke); a long title wraps between words,
    not inside them; the search box shows its whole placeholder in English at 1366 and 1280 px, logged in as an
    emergency responder (the longest role name in the header)."""
    base, engine = site
    load(engine, "accidents", gpd.GeoDataFrame({"occurred_at": ["2021-01-07T23:44:18+00:00"], "kind": ["collision"]},
                                               geometry=[shapely.Point(102.71, 25.04)], crs=4326))
    with engine.connect() as conn:
        district = conn.execute(text("SELECT id FROM admin_areas")).scalar_one()
        accident = conn.execute(text("SELECT id FROM accidents")).scalar_one()
    with browser_page() as (page, errors):
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "America/Los_Angeles"})
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(base + "/?lang=en")
        page.evaluate("onemap.ready")
        assert page.evaluate(f"onemap.login({token('emergency')!r}).then(r => r.ok)")
        assert page.evaluate("onemap.me.role_en") == "Emergency responder"

        def show(layer, fid):
            page.evaluate(f"onemap.showFeature({layer!r}, {fid}, {{}}, null)")
            page.wait_for_selector("#om-panel[data-status=ok]", timeout=10000)

        show("admin_areas", district)
        assert page.inner_text("#om-panel-title") == "Wuhua District"
        show("accidents", accident)
        assert page.inner_text("#om-panel tr[data-field=occurred_at] td") == "2021-01-08 07:44 Beijing time"
        page.evaluate("onemap.setLang('zh')")
        assert page.inner_text("#om-panel tr[data-field=occurred_at] td") == "2021-01-08 07:44 北京时间"
        show("admin_areas", district)
        assert page.inner_text("#om-panel-title") == "五华区"
        page.evaluate("onemap.setLang('en')")

        # swatches: the colours the layer's own style function gives a feature of its first legend class
        polygons = page.evaluate("""() => Object.values(onemap.layers)
            .filter(e => /Polygon/.test(e.def.geometry_type)).map(e => e.id)""")
        assert {"exposure_rings", "tailings_downstream"} <= set(polygons)
        for layer in polygons:
            page.evaluate(f"onemap.setLayerVisible({layer!r}, true)")
        swatches = page.evaluate("""ids => ids.map(id => {
            const e = onemap.layers[id], by = e.def.style.by, first = e.def.legend[0];
            const drawn = e.grid.options.vectorTileLayerStyles[id](by ? {[by.field]: first.value} : {});
            const rgb = c => { const s = document.createElement('span'); s.style.color = c; document.body.append(s);
                               const v = getComputedStyle(s).color; s.remove(); return v; };
            const shown = [...document.querySelectorAll(`#om-layer-switcher label[data-layer-id="${id}"] .om-swatch,
                #om-legend .om-legend-block[data-layer-id~="${id}"] li:first-child .om-swatch`)]
                .map(s => [getComputedStyle(s).backgroundColor, getComputedStyle(s).borderTopColor]);
            return [id, [rgb(drawn.fillColor), rgb(drawn.color)], shown];
        })""", polygons)
        for layer, drawn, shown in swatches:
            assert len(shown) == 2 and all(s == drawn for s in shown), (layer, drawn, shown)
        rings = dict((layer, drawn) for layer, drawn, _ in swatches)["exposure_rings"]
        assert rings[0] != rings[1]  # (filled in one colour, outlined in another)

        # a title wraps between words, not inside them, and a long unbroken string still wraps within the panel;
        # the search box shows its whole placeholder (800 px: a narrow window, the panel over the map)
        split = """() => { const h = document.querySelector('#om-panel-title'), n = h.firstChild, out = [], re = /\\S+/g;
            for (let m; (m = re.exec(n.data));) {
                const r = document.createRange(); r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
                if (r.getClientRects().length > 1) { out.push(m[0]); } }
            return [out, h.scrollWidth <= h.clientWidth]; }"""
        placeholder = """() => { const i = document.querySelector('#om-search-input'), cs = getComputedStyle(i);
            const c = document.createElement('canvas').getContext('2d'); c.font = cs.font;
            return c.measureText(i.placeholder).width <= i.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight); }"""
        for width in (1366, 1280, 800):
            page.set_viewport_size({"width": width, "height": 800})
            for name in ("Kunming Demo Chemical Industry Park tailings pond number seven",
                         "Demo tailings pond of the Dongchuan copper mine, a synthetic record with a long English name",
                         "Demo tailings pond 12 (synthetic)"):
                page.evaluate(f"onemap.showFeature('chemical_parks', null, {{name: {name!r}}}, null)")
                assert page.evaluate(split) == [[], True], (width, name)
            page.evaluate("onemap.showFeature('chemical_parks', null, {name: 'Demo ' + 'X'.repeat(60)}, null)")
            assert page.evaluate(split) == [["X" * 60], True], width
            assert width == 800 or page.evaluate(placeholder), width
        assert page.get_attribute("#om-search-input", "title") == "Search enterprises, tailings ponds, roads…"
    assert errors == [], errors


def test_page_says_the_database_is_lost_and_recovers_by_itself():
    """Opened while the server has lost its database: the page says so (the server's 503 reason) and, once the
    database is back, loads its layers without being reloaded."""
    cluster = throwaway_cluster()
    try:
        migrate(cluster.url())
        with served(cluster.url()) as base, browser_page() as (page, _):
            cluster.stop()
            page.goto(base + "/")
            page.evaluate("onemap.ready")
            assert page.evaluate("Object.keys(onemap.layers).length") == 0
            status = page.inner_text("#om-status")
            assert "无法加载图层列表" in status and "数据库暂时不可用" in status and "自动重试" in status
            cluster.start()
            page.wait_for_function("Object.keys(onemap.layers).length > 0", timeout=60000)
            assert "服务已恢复" in page.inner_text("#om-status")
            assert page.evaluate("onemap.state.config.bounds") is not None  # (the configuration asked again)
    finally:
        cluster.destroy()


def test_an_open_page_draws_what_is_written_meanwhile(site):
    """(QA: a page left open never showed an import made after it loaded.) The page asks GET /api/versions every
    30 s (here: at once) and draws again the visible layers written since."""
    base, engine = site
    with browser_page() as (page, errors):
        page.goto(base + "/")
        page.evaluate("onemap.ready")
        page.evaluate("onemap.map.setView([25.04, 102.71], 13, {animate: false})")
        page.evaluate("onemap.whenTilesLoaded(15000)")
        names = "[...new Set(onemap.renderedFeatures('chemical_parks').map(f => f.properties.name))].sort()"
        assert page.evaluate(names) == ["测试园区"]
        load(engine, "chemical_parks", gpd.GeoDataFrame({"name": ["新导入园区"], "synthetic": [True]},
                                                        geometry=[shapely.box(102.70, 25.05, 102.72, 25.07)], crs=4326))
        page.evaluate("onemap.pollVersions()")
        page.wait_for_function(f"JSON.stringify({names}) === JSON.stringify(['新导入园区', '测试园区'].sort())",
                               timeout=15000)
        versions = page.evaluate("onemap.state.versions")
        assert "chemical_parks" in versions and "enterprises" not in versions  # (anonymous: the public layers only)
    assert errors == []
