"""The one-map in headless Chromium (Debian's build, driven by Playwright) against the real server."""

import os

import geopandas as gpd
import pytest
import shapely

from conftest import browser_page, free_port, load, serve, stop


@pytest.fixture
def site(db_url, clean):
    load(clean, "chemical_parks", gpd.GeoDataFrame(  # (the second in no district)
        {"name": ["测试园区", "区外园区"], "risk_grade": ["red", None], "synthetic": [True, True]},
        geometry=[shapely.box(102.66, 25.00, 102.76, 25.08), shapely.box(102.90, 25.20, 102.92, 25.22)], crs=4326))
    load(clean, "enterprises", gpd.GeoDataFrame(
        {"name": ["测试企业"], "kind": ["storage"], "risk_grade": ["orange"], "park_id": [1]},
        geometry=[shapely.box(102.70, 25.03, 102.72, 25.05)], crs=4326))
    load(clean, "admin_areas", gpd.GeoDataFrame({"adcode": ["530102"], "name": ["五华区"]},
                                                geometry=[shapely.box(102.6, 24.95, 102.8, 25.1)], crs=4326))
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    yield f"http://127.0.0.1:{port}", clean
    stop(proc)


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
    import json
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import text

    from gis import monitoring
    from layers import registry
    from layers.io import validate, write
    from layers.settings import StoreSettings

    base, engine = site
    now = datetime.now(timezone.utc).replace(microsecond=0)
    with engine.begin() as conn:  # a tailings pond with the simulation's sensors and one open alarm
        conn.execute(text("TRUNCATE monitoring_alarms, monitoring_alarm_events, monitoring_daily CASCADE"))
        conn.execute(text("DELETE FROM monitoring_thresholds WHERE asset_layer IS NOT NULL"))
        spec = registry.get("tailings_ponds")
        pond = gpd.GeoDataFrame({"name": ["测试尾矿库"]}, geometry=[shapely.box(102.7, 25.0, 102.71, 25.01)], crs=4326)
        write(conn, spec, validate(spec, pond, StoreSettings().area_bbox)[0])
        monitoring.ensure_demo_sensors(conn)
        readings = [{"sensor": "TP1-D1", "time": (now - timedelta(minutes=m)).isoformat(), "value": v, "unit": "mm"}
                    for m, v in ((15, 20), (10, 55), (8, 60))]
        assert monitoring.ingest(conn, monitoring.parse_json(json.dumps({"readings": readings}).encode()))["alarms"]
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

        # editor: alarms and acknowledging, but neither route checks nor emergency tools
        assert page.evaluate(f"onemap.login({editor!r}).then(r => r.ok)")
        assert page.evaluate("onemap.me.role") == "editor"  # (login resolves with the new role's tools)
        assert shown() == {"emergency": False, "routes": False, "alarms": True, "siting": True}

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
