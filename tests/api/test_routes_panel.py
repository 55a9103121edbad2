"""The route panel (web/static/js/panel-routes.js) in headless Chromium against the real server: draw a
route by clicking, check it, then plan the compliant alternative (an avoided row opens its conflict, classes by
the registry's labels); upload a route, plan from its ends, switch to origin/destination; a broken upload drops
the previous route; refuse a bad quantity; a plan with no road at all; a plan from off the roads with no
compliant route until a later departure; where the panel draws (its pane) and fits (clear of the panel, which
leaves the top-right controls uncovered); the rules tab (edited by an editor, read-only for a route controller);
the stored routes checked for a day."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import text

from conftest import browser_page, map_still, served
from gis import roadnet, routing

O, P, D, Q, R = (102.70, 25.00), (102.72, 25.00), (102.74, 25.00), (102.70, 25.02), (102.74, 25.02)
X, Y = (102.70, 24.98), (102.72, 24.98)  # a road joined to nothing else
TUNNEL_ZH = "长及特长隧道全天禁止危险货物运输车辆通行"
TUNNEL_EN = "Dangerous goods banned all day in long and extra-long tunnels (>1000 m)"
ROUTE, COMPLIANT = '#1e64c8', '#27ae60'


@pytest.fixture
def site(db_url, clean):  # (every layer empty: a district or park left by another test took the drawing clicks)
    with clean.begin() as conn:
        routing.reset_rules(conn)
        for name, cls, v, a, b in [("M1", "motorway", 80, O, P), ("M2", "motorway", 80, P, D),
                                   ("U1", "urban", 40, O, Q), ("U2", "urban", 40, Q, R), ("U3", "urban", 40, R, D),
                                   ("X1", "urban", 40, X, Y)]:
            conn.execute(text("INSERT INTO roads (name, road_class, speed_kmh, geom) VALUES (:n, :c, :v, "
                              "ST_SetSRID(ST_MakeLine(ST_MakePoint(:ax, :ay), ST_MakePoint(:bx, :by)), 4326))"),
                         {"n": name, "c": cls, "v": v, "ax": a[0], "ay": a[1], "bx": b[0], "by": b[1]})
        conn.execute(text("INSERT INTO restricted_structures (name, kind, structure_class, length_m, geom) VALUES "
                          "('长隧道', 'tunnel', 'tunnel_l', 1009, "
                          "ST_GeomFromText('LINESTRING(102.725 25, 102.735 25)', 4326))"))
        roadnet.build_graph(conn)
    with served(db_url) as base:
        yield base


def screen(page, lon, lat):
    """Page coordinates of a lon/lat on the map, once it has stopped moving (the panel's fits are animated)."""
    map_still(page, 300)
    return page.evaluate(f"(() => {{ const p = onemap.map.latLngToContainerPoint([{lat}, {lon}]);"
                         " const r = onemap.map.getContainer().getBoundingClientRect();"
                         " return [p.x + r.left, p.y + r.top]; })()")


def open_panel(page, site, tok, *, only_roads=True, login=False, center=(25.01, 102.72), zoom=14):
    page.goto(site + "/")
    page.evaluate("onemap.ready")
    if login:  # (reloads the layers: the default ones are shown)
        assert page.evaluate(f"onemap.login({tok!r}).then(r => r.ok)")
    else:  # the panel shares the map's token; set it without reloading every map layer
        page.evaluate(f"onemap.state.token = {tok!r}")
    if only_roads:
        # only the roads drawn (other tiles would queue ahead of the panel's requests): the vertices below are
        # clicked on road features, which must not take the click while the panel is drawing
        page.evaluate("Object.keys(onemap.layers).forEach(id => onemap.setLayerVisible(id, id === 'roads'))")
    page.evaluate(f"onemap.map.setView([{center[0]}, {center[1]}], {zoom}, {{animate: false}})")
    page.evaluate("onemap.whenTilesLoaded(15000)")
    page.click(".rt-toggle")
    if page.locator("#rt-dep").is_visible():  # (an editor has the rules only)
        page.fill("#rt-dep", "2026-03-02T10:00")


def posted(page, selector, path):
    """Click and return the JSON body of the request to path it sends."""
    with page.expect_request(lambda r: r.url.endswith(path) and r.method == "POST") as req:
        page.click(selector)
    return req.value.post_data_json


def pane_z(page, stroke):
    """z-index of the map pane holding the path drawn in that colour."""
    return page.evaluate(f"(() => {{ const p = document.querySelector('path[stroke=\"{stroke}\"]');"
                         " return +getComputedStyle(p.closest('.leaflet-pane')).zIndex; })()")


def test_draw_check_and_plan(site, token):
    rc = token("route_controller")
    with browser_page() as (page, errors):
        open_panel(page, site, rc)
        assert page.evaluate("onemap.renderedFeatures('roads').length") > 0
        page.fill("#rt-un", "1017")
        page.click("#rt-draw")
        for lon, lat in (O, P, D):
            page.mouse.click(*screen(page, lon, lat))
        page.click("#rt-draw")  # finish
        assert page.evaluate("onemap.state.selected") is None  # (no road was opened in the side panel)
        page.click("#rt-check")
        page.wait_for_selector("#rt-out .rt-conflict", timeout=60000)
        out = page.inner_text("#rt-out")
        assert "禁止通行 Forbidden" in out and "长隧道" in out and TUNNEL_ZH in out
        # the conflict is highlighted in red on the map, the route and it above the thematic layers' panes
        # (om-polygons 410, om-lines 420, om-points 430)
        assert page.evaluate("document.querySelectorAll('path[stroke=\"#e60012\"]').length") >= 1
        assert pane_z(page, ROUTE) > 430 and pane_z(page, "#e60012") > 430

        # the rule in the page's language, redrawn by the switch itself (api.onLang, not a watcher run later)
        out = page.evaluate("onemap.setLang('en'), document.querySelector('#rt-out').innerText")
        assert TUNNEL_EN in out and TUNNEL_ZH not in out
        page.click("#rt-out .rt-conflict")
        assert TUNNEL_EN in page.inner_text(".leaflet-popup-content")
        page.evaluate("onemap.setLang('zh')")
        assert TUNNEL_ZH in page.inner_text("#rt-out")

        body = posted(page, "#rt-plan", "/routes/plan")  # from the first to the last vertex drawn
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Compliant')", timeout=60000)
        assert body["origin"] == pytest.approx(O, abs=1e-4) and body["destination"] == pytest.approx(D, abs=1e-4)
        out = page.inner_text("#rt-out")
        assert "允许通行 Allowed" in out and "比最快路线多 Extra vs fastest" in out and "长隧道" in out  # avoided
        # the unrestricted route is the fastest (what the server plans), and every label says so
        assert "最快（不考虑限制）fastest, unrestricted" in page.inner_text(".rt-legend")
        assert "最短" not in page.inner_text(".rt-panel") and "shortest" not in page.inner_text(".rt-panel").lower()
        assert "禁止通行 Forbidden" in out  # the check's result stays
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{COMPLIANT}\"]').length") == 1  # drawn beside
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{ROUTE}\"]').length") >= 1  # the checked route
        assert pane_z(page, COMPLIANT) > 430 and pane_z(page, "#7f8c8d") > 430  # and the unrestricted one

        # a row under 已避开 Avoided opens the unrestricted route's conflict there (another JSON object than the
        # avoided entry), zoomed to it; the popup names the class by the registry's label in the page's language
        avoided = "#rt-out h4:has-text('已避开 Avoided') + div .rt-conflict"
        for lang, label in (("zh", "长隧道"), ("en", "Long tunnel")):
            page.evaluate(f"onemap.map.closePopup(), onemap.setLang({lang!r}), onemap.map.setZoom(12, {{animate: false}})")
            page.wait_for_selector(".leaflet-popup", state="detached")  # (a closed popup fades out first)
            page.click(avoided)
            popup = page.inner_text(".leaflet-popup-content")
            assert "桥隧 Structure · " + label in popup and "tunnel_l" not in popup
            page.wait_for_function("onemap.map.getZoom() > 12", timeout=10000)  # (zoomed to it; the fit may animate)
        page.evaluate("onemap.setLang('zh')")
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-plan.png")
    assert errors == []


def test_upload_plan_then_origin_destination(site, token):
    rc = token("route_controller")
    route = {"type": "Feature", "properties": {}, "geometry": {"type": "LineString", "coordinates": [list(O), list(P), list(D)]}}
    with browser_page() as (page, errors):
        open_panel(page, site, rc, center=(25.01, 102.74), zoom=13)
        page.fill("#rt-un", "1017")
        with page.expect_request(lambda r: r.url.endswith("/routes/check")) as req:
            page.set_input_files("#rt-file", files=[{"name": "r.geojson", "mimeType": "application/geo+json",
                                                      "buffer": json.dumps(route).encode()}])
        assert req.value.post_data_json["route"] == route
        page.wait_for_selector("#rt-out .rt-conflict", timeout=60000)

        # plan from the uploaded route's ends; the uploaded route stays on the map beside the plan
        body = posted(page, "#rt-plan", "/routes/plan")
        assert body["origin"] == list(O) and body["destination"] == list(D) and body["cargo"] == {"un_number": "1017"}
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Compliant')", timeout=60000)
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{COMPLIANT}\"]').length") == 1
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{ROUTE}\"]').length") == 1

        # origin/destination replaces the upload: the check sends the two points, not the uploaded route
        page.click("#rt-od")
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{ROUTE}\"]').length") == 0
        assert page.input_value("#rt-file") == ""
        for lon, lat in (Q, R):
            page.mouse.click(*screen(page, lon, lat))
        body = posted(page, "#rt-check", "/routes/check")
        assert set(body) == {"origin", "destination", "cargo", "departure"}
        assert body["origin"] == pytest.approx(Q, abs=1e-3) and body["destination"] == pytest.approx(R, abs=1e-3)
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Check')", timeout=60000)
        body = posted(page, "#rt-plan", "/routes/plan")
        assert body["origin"] == pytest.approx(Q, abs=1e-3) and body["destination"] == pytest.approx(R, abs=1e-3)
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Compliant')", timeout=60000)

        # a quantity that is no finite number of tonnes ≥ 0 is refused in the panel, nothing is sent
        sent = []
        page.on("request", lambda r: sent.append(r.url) if "/routes/" in r.url else None)
        for bad in ("1e400", "-1"):
            page.fill("#rt-qty", bad)
            page.click("#rt-check")
            assert "Quantity must be a number of tonnes ≥ 0" in page.inner_text("#rt-out .rt-msg.rt-msg-error")
            page.click("#rt-plan")
            assert "数量须为" in page.inner_text("#rt-out .rt-msg.rt-msg-error")
        page.wait_for_timeout(300)
        assert sent == []
        page.fill("#rt-qty", "12.5")

        # a UN number and a class both go to the server, which says when they do not match
        page.select_option("#rt-class", "3")
        body = posted(page, "#rt-check", "/routes/check")
        assert body["cargo"] == {"un_number": "1017", "hazard_class": "3", "quantity_t": 12.5}
        page.wait_for_selector("#rt-out .rt-msg.rt-msg-error", timeout=60000)
        assert "not 3" in page.inner_text("#rt-out .rt-msg")
    assert [e for e in errors if "400" not in e] == []  # (the refused check's 400 is logged by the browser)


def test_broken_upload_drops_the_previous_route(site, token):
    rc = token("route_controller")
    route = {"type": "LineString", "coordinates": [list(O), list(P), list(D)]}
    with browser_page() as (page, errors):
        open_panel(page, site, rc, center=(25.01, 102.74), zoom=13)
        page.fill("#rt-un", "1017")
        page.set_input_files("#rt-file", files=[{"name": "route.geojson", "mimeType": "application/geo+json",
                                                  "buffer": json.dumps(route).encode()}])
        page.wait_for_selector("#rt-out .rt-conflict", timeout=60000)
        assert "已载入 Loaded route.geojson" in page.inner_text("#rt-hint")
        # a truncated file: its error alone, no "loaded" hint, the old route and result gone, nothing left to plan
        page.set_input_files("#rt-file", files=[{"name": "broken.geojson", "mimeType": "application/geo+json",
                                                  "buffer": json.dumps(route).encode()[:40]}])
        page.wait_for_selector("#rt-out .rt-msg-error >> text=Not GeoJSON (broken.geojson)", timeout=10000)
        assert page.inner_text("#rt-hint") == "" and page.input_value("#rt-file") == ""
        assert page.locator("#rt-out .rt-conflict, #rt-out .rt-verdict").count() == 0
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{ROUTE}\"]').length") == 0
        sent = []
        page.on("request", lambda r: sent.append(r.url) if "/routes/" in r.url else None)
        page.click("#rt-plan")
        assert "Draw or upload a route" in page.inner_text("#rt-out .rt-msg-error")
        page.wait_for_timeout(300)
        assert sent == []
    assert errors == []


def test_plan_from_off_the_road_until_a_later_departure(site, token):
    rc = token("route_controller")
    # over 1 km from every road node (the graph cuts each road into edges of at most 500 m: a point near a road is
    # near a node): 1057 m from the nearest, M1's cut point 0.016° east of O (M1, 2019 m, in 5 edges of 0.004°);
    # 1095 m from the next one on M1, 1175 m from the nearest of U2
    off, start = (102.715, 25.0095), (102.716, 25.0)
    with browser_page() as (page, errors):
        open_panel(page, site, rc, center=(25.005, 102.73), zoom=14)  # (P left of the panel)
        page.fill("#rt-un", "1017")
        page.fill("#rt-dep", "2026-03-02T02:00")  # P is reached on expressways only, banned 00:00–06:00
        page.click("#rt-od")
        for lon, lat in (off, P):
            page.mouse.click(*screen(page, lon, lat))
        with page.expect_response(lambda r: r.url.endswith("/routes/plan")) as resp:
            page.click("#rt-plan")
        plan = resp.value.json()
        assert plan["found"] is False and plan["next_departure"].startswith("2026-03-02T06:00")
        page.wait_for_selector("#rt-out .rt-next", timeout=60000)
        assert "最早合规出发 First compliant departure: 2026-03-02 06:00（北京时间 Beijing time）" in page.inner_text(".rt-next")

        def snapped():  # the origin's move said (the destination's, a few metres, not) and drawn dashed from the marker
            m = plan["origin_snap_m"]
            d = f"{m / 1000:.2f} km"
            assert m > 1000 and page.locator("#rt-out .rt-snap").count() == 1
            assert (plan["route"] if plan["found"] else plan["unrestricted"])["geometry"]["coordinates"][0] == \
                pytest.approx(list(start), abs=1e-9)
            assert page.inner_text(".rt-snap") == f"起点距最近道路节点 {d} Origin moved {d} to the nearest road"
            map_still(page)
            box = page.evaluate("document.querySelector('path.rt-snap-line').getBoundingClientRect().toJSON()")
            for x, y in (screen(page, *off), screen(page, *start)):
                assert box["left"] - 3 <= x <= box["right"] + 3 and box["top"] - 3 <= y <= box["bottom"] + 3
            assert page.locator("path.rt-snap-line").count() == 1
        snapped()

        # a 阻断 Blocked by row opens its conflict on the unrestricted route, the road class by its label
        page.click("#rt-out h4:has-text('阻断 Blocked by') + div .rt-conflict")
        popup = page.inner_text(".leaflet-popup-content")
        assert "道路限时 Road ban · 高速公路" in popup and "motorway" not in popup

        # 改为此时出发 Use this departure: the departure input set to it (Beijing time) and planned again
        with page.expect_response(lambda r: r.url.endswith("/routes/plan")) as resp:
            page.click(".rt-use-next")
        assert resp.value.request.post_data_json["departure"] == "2026-03-02T06:00:00+08:00"
        assert page.input_value("#rt-dep") == "2026-03-02T06:00"
        plan = resp.value.json()
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Compliant')", timeout=60000)
        assert page.locator("#rt-out .rt-next").count() == 0
        snapped()
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-snap.png")
    assert errors == []


def test_plan_without_any_road(site, token):
    rc = token("route_controller")
    with browser_page() as (page, errors):
        open_panel(page, site, rc, center=(24.99, 102.72), zoom=14)
        page.fill("#rt-un", "1017")
        page.click("#rt-od")
        for lon, lat in (O, Y):  # on two parts of the network that no road joins
            page.mouse.click(*screen(page, lon, lat))
        page.click("#rt-plan")
        page.wait_for_selector("#rt-out .rt-verdict", timeout=60000)
        assert page.inner_text("#rt-out .rt-verdict") == "无道路可达 No road route"
        assert page.locator("#rt-out .rt-forbidden").count() == 0
        assert "no route exists even without restrictions" in page.inner_text("#rt-out .rt-msg")
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-noroute.png")
    assert errors == []


def test_fit_clear_of_panel_with_default_layers(site, token):
    em = token("emergency")  # (may check routes and see the alarms)
    with browser_page() as (page, errors):
        open_panel(page, site, em, only_roads=False, login=True, center=(25.01, 102.74), zoom=13)
        assert page.locator(".mo-toggle").is_visible()
        # the alarms control as wide as with open alarms of four levels (their counts, as panel-monitoring.js adds them)
        page.evaluate("for (const n of [12, 3, 45, 6]) { const s = document.createElement('span');"
                      " s.className = 'mo-n'; s.textContent = n; document.querySelector('.mo-toggle').appendChild(s); }")
        page.click(".rt-toggle")
        page.click(".rt-toggle")  # (closed and opened again)
        rect = "(s => document.querySelector(s).getBoundingClientRect().toJSON())"
        panel = page.evaluate(f"{rect}('.rt-panel')")
        controls = page.evaluate("Array.from(document.querySelectorAll('.leaflet-top.leaflet-right .leaflet-control'))"
                                 ".map(c => c.getBoundingClientRect().toJSON())")
        assert len(controls) >= 2
        for c in controls:  # the panel covers none of the top-right controls (路线 Routes, 预警 Alarms)
            assert (c["bottom"] <= panel["top"] or c["top"] >= panel["bottom"] or c["right"] <= panel["left"]
                    or c["left"] >= panel["right"]), (c, panel)

        page.fill("#rt-un", "1017")
        page.click("#rt-od")
        for lon, lat in (O, D):
            page.mouse.click(*screen(page, lon, lat))
        page.click("#rt-check")
        page.wait_for_selector("#rt-out .rt-conflict", timeout=60000)
        map_still(page)
        # fitted left of the panel: the whole route and the destination's marker
        route = page.evaluate(f"document.querySelector('path[stroke=\"{ROUTE}\"]').getBoundingClientRect().toJSON()")
        assert page.evaluate(f"{rect}('#om-map')")["left"] < route["left"] and route["right"] < panel["left"]
        marks = page.evaluate("Array.from(document.querySelectorAll('.leaflet-tooltip'))"
                              ".map(t => [t.textContent, t.getBoundingClientRect().right])")
        assert {m[0] for m in marks} >= {"起 O", "终 D"} and all(m[1] < panel["left"] for m in marks)
        # with the default layers on, the route and its conflict are on top: the topmost element at a point of
        # the route is its path, at the tunnel (drawn in om-lines) the red conflict stretch
        top = "((x, y) => document.elementFromPoint(x, y).getAttribute('stroke'))"
        assert page.evaluate(f"{top}(...{screen(page, 102.71, 25.0)})") == ROUTE
        assert page.evaluate(f"{top}(...{screen(page, 102.73, 25.0)})") == "#e60012"
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-fit.png")
    assert errors == []


def rule_row(page, name):
    return page.locator(".rt-rule", has_text=name)


def test_rules_edited_by_an_editor_read_only_for_a_controller(site, token):
    editor, rc = token("editor"), token("route_controller")
    with browser_page() as (page, errors):
        page.on("dialog", lambda d: d.accept())  # (the confirms of delete and reset)
        open_panel(page, site, editor)
        # an editor sees the rules only (no check or stored routes, which need route_check)
        assert page.is_visible("#rt-tab-rules") and not page.is_visible("#rt-tab-check")
        assert not page.is_visible('.rt-tabs [data-tab="check"]') and not page.is_visible('.rt-tabs [data-tab="stored"]')
        page.wait_for_function("document.querySelectorAll('.rt-rule').length === 10", timeout=30000)
        tunnel = rule_row(page, TUNNEL_ZH)
        assert "长隧道 (tunnel_l), 特长隧道 (tunnel_xl)" in tunnel.inner_text()  # codes by the registry's labels
        assert "全天 all day" in tunnel.inner_text() and "深公交" in tunnel.inner_text()
        assert "00:00–06:00" in rule_row(page, "高速公路 0 时").inner_text()
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-rules.png")

        # deactivate the long-tunnel rule: a PUT of the rule with active false
        with page.expect_request(lambda r: "/routes/rules/" in r.url and r.method == "PUT") as req:
            tunnel.locator(".rt-rule-active").uncheck()
        body = req.value.post_data_json
        assert body["active"] is False and body["name_zh"] == TUNNEL_ZH and body["structure_classes"] == ["tunnel_l", "tunnel_xl"]
        page.wait_for_selector(".rt-rule.rt-inactive", timeout=10000)
        assert "rt-inactive" in rule_row(page, TUNNEL_ZH).get_attribute("class")

        # a new rule with an unknown code: the server's 400 in the message box, the form kept as typed
        page.click("#rt-rule-add")
        form = "#rt-rule-form"
        page.fill(f"{form} [name=name_zh]", "测试规则")
        page.fill(f"{form} [name=name_en]", "Test rule")
        page.fill(f"{form} [name=cargo_classes]", "2.3")
        page.fill(f"{form} [name=structure_classes]", "tunnel_zz")
        with page.expect_response(lambda r: r.url.endswith("/routes/rules") and r.request.method == "POST") as resp:
            page.click("#rt-rule-save")
        assert resp.value.status == 400
        page.wait_for_selector("#rt-rules-msg .rt-msg-error", timeout=10000)
        assert "unknown codes ['tunnel_zz']" in page.inner_text("#rt-rules-msg")
        assert page.input_value(f"{form} [name=structure_classes]") == "tunnel_zz"
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-rule-form.png")
        # the code picked from its list (by label), a time window on two weekdays: added
        page.fill(f"{form} [name=structure_classes]", "")
        page.select_option(f"{form} .rt-list[data-target=structure] select >> nth=0", "tunnel_m")
        assert page.input_value(f"{form} [name=structure_classes]") == "tunnel_m"
        page.fill(f"{form} [name=ban_start]", "22:00")
        page.fill(f"{form} [name=ban_end]", "06:00")
        page.check(f"{form} [name=weekdays][value='6']")
        page.check(f"{form} [name=weekdays][value='7']")
        with page.expect_request(lambda r: r.url.endswith("/routes/rules") and r.method == "POST") as req:
            page.click("#rt-rule-save")
        assert req.value.post_data_json == {
            "name_zh": "测试规则", "name_en": "Test rule", "cargo_classes": ["2.3"], "target": "structure",
            "structure_classes": ["tunnel_m"], "adr_categories": None, "min_quantity_t": None, "ban_start": "22:00",
            "ban_end": "06:00", "weekdays": [6, 7], "verdict": "forbidden", "active": True, "source": None}
        page.wait_for_function("document.querySelectorAll('.rt-rule').length === 11", timeout=10000)
        assert not page.is_visible(form)
        assert "22:00–06:00 · 周 Days: 六 Sat, 日 Sun" in rule_row(page, "测试规则").inner_text()
        assert "Test rule" in page.evaluate("onemap.setLang('en'), document.querySelector('#rt-rules').innerText")
        page.evaluate("onemap.setLang('zh')")

        # delete one, then reset: the 10 defaults again, all active
        rule_row(page, "测试规则").locator(".rt-rule-delete").click()
        page.wait_for_function("document.querySelectorAll('.rt-rule').length === 10", timeout=10000)
        page.click("#rt-rules-reset")
        page.wait_for_selector("#rt-rules-msg >> text=10 default rules restored", timeout=10000)
        assert page.locator(".rt-rule").count() == 10 and page.locator(".rt-rule.rt-inactive").count() == 0

        # deactivated again, a route controller sees it read-only, and the tunnel route is then allowed
        with page.expect_response(lambda r: "/routes/rules/" in r.url and r.request.method == "PUT"):
            rule_row(page, TUNNEL_ZH).locator(".rt-rule-active").uncheck()
        page.evaluate(f"onemap.state.token = {rc!r}")
        page.wait_for_function("onemap.me && onemap.me.role === 'route_controller'", timeout=10000)
        if not page.is_visible(".rt-panel"):
            page.click(".rt-toggle")
        page.click('.rt-tabs [data-tab="rules"]')
        page.wait_for_function("document.querySelectorAll('.rt-rule').length === 10", timeout=10000)
        assert page.locator(".rt-rule-active, .rt-rule-edit, .rt-rule-delete").count() == 0
        assert not page.is_visible("#rt-rule-add") and not page.is_visible("#rt-rules-reset")
        assert "停用 Inactive" in rule_row(page, TUNNEL_ZH).inner_text()
        page.click('.rt-tabs [data-tab="check"]')
        page.fill("#rt-dep", "2026-03-02T10:00")
        page.fill("#rt-un", "1017")
        page.click("#rt-draw")
        for lon, lat in (O, P, D):
            page.mouse.click(*screen(page, lon, lat))
        page.click("#rt-check")
        page.wait_for_selector("#rt-out .rt-verdict", timeout=60000)
        assert page.inner_text("#rt-out .rt-verdict") == "允许通行 Allowed"
    assert [e for e in errors if "400" not in e] == []  # (the refused rule's 400 is logged by the browser)


def test_stored_routes_for_a_day(site, engine, token):
    rc = token("route_controller")
    with engine.begin() as conn:
        for name, un, schedule in (("氯气专线", "1017", "每日 08:30 发车"), ("未知货物", "9999", None)):
            conn.execute(text("INSERT INTO hazmat_routes (name, cargo_un, schedule, geom) VALUES (:n, :u, :s, "
                              "ST_GeomFromText('LINESTRING(102.70 25, 102.72 25, 102.74 25)', 4326))"),
                         {"n": name, "u": un, "s": schedule})
    with browser_page() as (page, errors):
        open_panel(page, site, rc)
        with page.expect_request(lambda r: "/routes/stored/check?day=2026-03-02" in r.url):
            page.click('.rt-tabs [data-tab="stored"]')
            page.fill("#rt-day", "2026-03-02")
        page.wait_for_selector(".rt-stored-route", timeout=60000)
        row = page.inner_text(".rt-stored-route")
        assert "禁止通行 Forbidden" in row and "氯气专线" in row and "UN1017" in row
        assert "出发 Departs 2026-03-02 08:30" in row and "1 处冲突 conflicts" in row
        assert page.locator(".rt-stored-route .rt-forbidden").count() == 1  # (the check's colours)
        assert "未知货物 — unknown UN number '9999'" in page.inner_text(".rt-unchecked")
        # the route's conflicts (listed only) and the route itself drawn red and fitted
        page.click(".rt-stored-route")
        page.wait_for_selector('path[stroke="#e60012"]', state="attached", timeout=10000)  # (a level line: no height)
        out = page.inner_text("#rt-stored .rt-conflict")
        assert "长隧道" in out and TUNNEL_ZH in out
        map_still(page)
        path = page.evaluate("document.querySelector('path[stroke=\"#e60012\"]').getBoundingClientRect().toJSON()")
        panel = page.evaluate("document.querySelector('.rt-panel').getBoundingClientRect().toJSON()")
        assert path["right"] < panel["left"] and path["width"] > 100
        page.screenshot(path=os.environ.get("RT_SHOT", "/tmp") + "/routes-panel-stored.png")
    assert errors == []
