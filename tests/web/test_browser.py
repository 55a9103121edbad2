"""The one-map in headless Chromium (Debian's build, driven by Playwright) against the real server."""

import os

import geopandas as gpd
import pytest
import shapely

from conftest import browser_page, free_port, load, serve, stop


@pytest.fixture
def site(db_url, clean):
    load(clean, "chemical_parks", gpd.GeoDataFrame(
        {"name": ["测试园区"], "risk_grade": ["red"], "synthetic": [True]},
        geometry=[shapely.box(102.66, 25.00, 102.76, 25.08)], crs=4326))
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
