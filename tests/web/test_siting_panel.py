"""The siting-check panel (web/static/js/panel-siting.js) in headless Chromium against the real server: a
planner draws a proposed school next to a hazard installation and sees the safety-distance conflict (checked
against shapely + pyproj) beside the panel, not under it; the people field takes whole numbers only and the
assumed class is worded by what set it; a site far from everything has none; a proposed store's level sets
the required distance, hazard kinds show by name; API errors show in the panel, and closing it or logging out
clears what it drew."""

from __future__ import annotations


import geopandas as gpd
import pyproj
import pytest
import shapely
from sqlalchemy import text

from conftest import browser_page, load, map_still, served
from gis import hazchem
from layers.crs import METRIC_EPSG

TO_M = pyproj.Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
TO_LL = pyproj.Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True)
X0, Y0 = (round(v, -1) for v in TO_M.transform(102.71, 25.04))


def lonlat(x: float, y: float) -> tuple[float, float]:
    """Metres relative to (X0, Y0) in the metric CRS -> lon/lat."""
    return TO_LL.transform(X0 + x, Y0 + y)


def to_lonlat(geom):
    import numpy as np
    return shapely.transform(geom, lambda c: np.column_stack(TO_LL.transform(c[:, 0] + X0, c[:, 1] + Y0)))


TANK = shapely.box(0, 0, 100, 100)      # the installation (relative metres): 一级, no grading run -> kinds unknown
SCHOOL = shapely.Point(700, 50)        # an existing school (300 people: 高敏感), 600 m east of the tank


@pytest.fixture
def site(db_url, clean):
    with clean.begin() as conn:
        hazchem.reset_rules(conn)  # the 40 default rules: any installation -> 高敏感 100 m (GB 50160)
        conn.execute(text("TRUNCATE installation_gradings"))
    load(clean, "hazard_installations", gpd.GeoDataFrame(
        {"name": ["测试液氨罐区"], "unit_type": ["storage"], "level": [1], "synthetic": [True]},
        geometry=[to_lonlat(TANK)], crs=4326))
    load(clean, "receptors", gpd.GeoDataFrame(
        {"name": ["测试小学"], "kind": ["school"], "people": [300], "synthetic": [True]},
        geometry=[to_lonlat(SCHOOL)], crs=4326))
    with served(db_url) as base:
        yield base


def distance_m(geojson: dict, other) -> float:
    """Distance in metres (metric CRS, pyproj + shapely) from a lon/lat GeoJSON geometry to a relative one."""
    import numpy as np
    g = shapely.transform(shapely.geometry.shape(geojson),
                          lambda c: np.column_stack(TO_M.transform(c[:, 0], c[:, 1])) - (X0, Y0))
    return g.distance(other)


def test_siting_panel(site, token):
    planner = token("planner")
    with browser_page() as (page, errors):
        page.goto(site + "/")
        page.evaluate("onemap.ready")
        assert page.evaluate("onemap.me.role") == "anonymous"
        assert page.locator(".st-toggle").count() == 1 and not page.locator(".st-toggle").is_visible()

        assert page.evaluate(f"onemap.login({planner!r}).then(r => r.ok)")
        assert page.locator(".st-toggle").is_visible()
        # the installation's tiles are drawn: the clicks below must not open it in the side panel
        page.evaluate("Object.keys(onemap.layers).forEach(id => onemap.setLayerVisible(id, "
                      "id === 'hazard_installations' || id === 'receptors'))")
        lon, lat = lonlat(150, 50)
        page.evaluate(f"onemap.map.setView([{lat}, {lon}], 17, {{animate: false}})")
        page.evaluate("onemap.whenTilesLoaded(15000)")
        assert page.evaluate("onemap.renderedFeatures('hazard_installations').length") > 0

        def screen(x, y):
            lo, la = lonlat(x, y)
            return page.evaluate(f"(() => {{ const p = onemap.map.latLngToContainerPoint([{la}, {lo}]);"
                                 " const r = onemap.map.getContainer().getBoundingClientRect();"
                                 " return [p.x + r.left, p.y + r.top]; })()")

        def check():
            with page.expect_request("**/analysis/siting-check") as req:
                page.click("#st-run")
            page.wait_for_selector("#st-out[data-conflicts], #st-out .st-error", timeout=30000)
            return req.value.post_data_json

        def beside_panel(selector):
            """Every element drawn for `selector` is inside the map and clear of the panel's box."""
            return page.evaluate("""sel => {
                const box = document.querySelector('.st-panel').getBoundingClientRect();
                const map = onemap.map.getContainer().getBoundingClientRect();
                const rects = [...document.querySelectorAll(sel)].map(e => e.getBoundingClientRect());
                return rects.length > 0 && rects.every(r => r.left >= box.right && r.right <= map.right
                    && r.top >= map.top && r.bottom <= map.bottom);
            }""", selector)

        page.click(".st-toggle")
        page.select_option("#st-use", "school")
        assert page.locator("#st-people").is_visible() and not page.locator("#st-level").is_visible()
        # a proposed school 60 m east of the tank (the 100 m rule), the last vertex double-clicked to close
        page.click("#st-polygon")
        corners = [(160, 20), (220, 20), (220, 80), (160, 80)]
        for x, y in corners[:-1]:
            page.mouse.click(*screen(x, y))
        page.mouse.dblclick(*screen(*corners[-1]))
        assert page.evaluate("onemap.state.selected") is None  # (no feature was opened by the clicks)
        sent = check()
        assert sent["use"] == "school" and sent["geometry"]["type"] == "Polygon"
        assert len(sent["geometry"]["coordinates"][0]) == 5  # 4 vertices, closed (the double-click added one)
        expected = distance_m(sent["geometry"], TANK)
        assert 55 < expected < 65
        row = page.locator("#st-out .st-conflict")
        assert row.count() == 1
        assert float(row.get_attribute("data-distance")) == pytest.approx(expected, abs=0.01)
        assert float(row.get_attribute("data-required")) == 100
        out = page.inner_text("#st-out")
        assert "不符合 Not compliant" in out and "测试液氨罐区" in out
        assert "要求 Required 100.0 m" in out and f"实际 Actual {expected:.1f} m" in out
        assert f"不足 Short by {100 - expected:.1f} m" in out
        assert "GB 50160" in out and "高敏感防护目标" in out and "一级" in out
        # a school's class is set by its use: the assumed line says so and says nothing of people
        assumed = page.inner_text("#st-out .st-assumed")
        assert "按用途定类" in assumed and "高敏感防护目标" in assumed and "人数" not in assumed and "people" not in assumed
        # the site and the conflict line are fitted beside the panel, not under it
        map_still(page)
        assert beside_panel("path.st-line, path.st-site")
        page.wait_for_selector("#st-out .st-synthetic:not([hidden])", timeout=10000)  # the tank is synthetic
        # the conflict drawn in red: the shortest line, and the installation outlined
        assert page.evaluate("[...document.querySelectorAll('path.st-line')].map(p => p.getAttribute('stroke'))") \
            == ["#e60012"]
        page.wait_for_function("document.querySelectorAll('path.st-feature').length === 1", timeout=10000)
        # clicking the conflict's row fits its line beside the panel too
        page.evaluate("onemap.map.setView(onemap.map.getCenter(), 12, {animate: false})")
        page.click("#st-out .st-conflict")
        map_still(page)  # (an animated fit)
        assert page.evaluate("onemap.map.getZoom()") == 17 and beside_panel("path.st-line")

        # people: blank is the default headcount, "1e3" is 1000 (not parseInt's 1), a fraction or a negative
        # number is refused in the panel and nothing is sent
        page.select_option("#st-use", "residential")
        sent = check()
        assert "people" not in sent
        assert page.inner_text("#st-out .st-assumed") == \
            "未填人数，按默认 100 人定类 People not given: class from the default 100 people: 一般防护目标（一类） General, class 1"
        page.fill("#st-people", "1e3")
        assert check()["people"] == 1000
        assert page.inner_text("#st-out .st-assumed").startswith("按人数 1000 人定类 Class from 1000 people: 一般防护目标（一类）")
        sent_now = []
        page.on("request", lambda r: sent_now.append(r) if "siting-check" in r.url and r.method == "POST" else None)
        for bad in ("1.5", "-2"):
            page.fill("#st-people", bad)
            page.click("#st-run")
            assert "人数须为不小于 0 的整数 People must be a whole number" in page.inner_text("#st-out .st-error")
            assert page.get_attribute("#st-out", "data-conflicts") is None
        page.wait_for_timeout(300)
        assert sent_now == []
        page.fill("#st-people", "")
        page.select_option("#st-use", "school")

        # a site far from everything: no conflict, nothing drawn but the site
        page.click("#st-point")
        page.evaluate("onemap.map.setView([25.10, 102.80], 15, {animate: false})")
        point = page.evaluate("(() => { const p = onemap.map.latLngToContainerPoint([25.10, 102.80]);"
                              " const r = onemap.map.getContainer().getBoundingClientRect();"
                              " return [p.x + r.left, p.y + r.top]; })()")
        page.mouse.click(*point)
        assert check()["geometry"]["type"] == "Point"
        assert page.get_attribute("#st-out", "data-conflicts") == "0"
        assert "无冲突" in page.inner_text("#st-out") and "No conflict" in page.inner_text("#st-out")
        assert page.evaluate("document.querySelectorAll('path.st-line').length") == 0

        # a proposed hazchem store 250 m from the school: 一级 with every kind (default) needs 1000 m;
        # 四级 toxic needs 300 m (toxic, level 4, 高敏感)
        page.evaluate(f"onemap.map.setView([{lat}, {lon}], 16, {{animate: false}})")
        page.select_option("#st-use", "hazchem_storage")
        assert page.locator("#st-level").is_visible() and not page.locator("#st-people").is_visible()
        page.click("#st-point")
        page.mouse.click(*screen(450, 50))
        sent = check()
        assert "level" not in sent and "kinds" not in sent
        assert page.get_attribute("#st-out .st-conflict", "data-required") == "1000"
        page.select_option("#st-level", "4")
        page.check(".st-kind[value=toxic]")
        sent = check()
        assert sent["level"] == 4 and sent["kinds"] == ["toxic"]
        expected = distance_m(sent["geometry"], SCHOOL)
        assert 240 < expected < 260
        row = page.locator("#st-out .st-conflict")
        assert row.count() == 1 and row.get_attribute("data-required") == "300"
        assert float(row.get_attribute("data-distance")) == pytest.approx(expected, abs=0.01)
        assert "测试小学" in row.inner_text() and "四级" in page.inner_text("#st-out")
        assert page.evaluate("document.querySelectorAll('path.st-line').length") == 1

        # an installation's hazard kinds are named as the options name them, not by code
        def graded(route):
            answer = route.fetch()
            body = answer.json()
            for c in body["conflicts"]:
                c["kinds"] = "flammable,toxic"
            route.fulfill(response=answer, json=body)
        page.route("**/analysis/siting-check", graded)
        page.select_option("#st-use", "school")
        page.click("#st-point")
        page.mouse.click(*screen(160, 50))
        check()
        page.unroute("**/analysis/siting-check")
        row = page.inner_text("#st-out .st-conflict")
        assert "易燃及其他理化危险 Flammable and other physical hazards (W2-W11)、有毒物质 Toxic" in row
        assert "flammable,toxic" not in row
        page.select_option("#st-use", "hazchem_storage")

        # an API error (a self-intersecting polygon: 400) is shown in the panel
        page.evaluate(f"onemap.map.setView([{lat}, {lon}], 16, {{animate: false}})")
        page.click("#st-polygon")
        for x, y in [(300, -300), (400, -200), (400, -300), (300, -200)]:  # (below the panel)
            page.mouse.click(*screen(x, y))
        page.click("#st-finish")
        check()
        assert "geometry is invalid" in page.inner_text("#st-out .st-error")

        # closing the panel clears what it drew
        page.click("#st-point")
        page.mouse.click(*screen(450, 50))
        check()
        assert page.evaluate("document.querySelectorAll('path.st-line, .st-site').length") >= 2
        page.click(".st-toggle")
        assert not page.locator(".st-panel").is_visible()
        assert page.evaluate("document.querySelectorAll('path.st-line, .st-site, .st-end').length") == 0

        # so does logging out (and the button goes)
        page.click(".st-toggle")
        page.click("#st-point")
        page.mouse.click(*screen(450, 50))
        check()
        assert page.evaluate("document.querySelectorAll('path.st-line').length") == 1
        page.click("#om-logout-btn")
        page.wait_for_function("onemap.me && onemap.me.role === 'anonymous'", timeout=10000)
        assert not page.locator(".st-toggle").is_visible() and not page.locator(".st-panel").is_visible()
        assert page.evaluate("document.querySelectorAll('path.st-line, .st-site, .st-end').length") == 0
    # only the 400 asked for on purpose (Chromium logs every 4xx response)
    assert all("status of 400" in e for e in errors) and len(errors) == 1, errors
