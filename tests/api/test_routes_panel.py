"""The route panel (web/static/js/panel-routes.js) in headless Chromium against the real server: draw a
route by clicking, check it, then plan the compliant alternative; upload a route, plan from its ends, switch to
origin/destination; refuse a bad quantity; a plan with no road at all; where the panel draws (its pane) and fits
(clear of the panel, which leaves the top-right controls uncovered)."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy import text

from conftest import browser_page, free_port, serve, stop
from gis import roadnet, routing

O, P, D, Q, R = (102.70, 25.00), (102.72, 25.00), (102.74, 25.00), (102.70, 25.02), (102.74, 25.02)
X, Y = (102.70, 24.98), (102.72, 24.98)  # a road joined to nothing else
TABLES = "roads, restricted_structures, water_source_zones, accidents, hazmat_routes, blackspots, route_conflicts"
TUNNEL_ZH = "长及特长隧道全天禁止危险货物运输车辆通行"
TUNNEL_EN = "Dangerous goods banned all day in long and extra-long tunnels (>1000 m)"
ROUTE, COMPLIANT = '#1e64c8', '#27ae60'


@pytest.fixture
def site(db_url, engine):
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
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
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def screen(page, lon, lat):
    """Page coordinates of a lon/lat on the map."""
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
        assert "允许通行 Allowed" in out and "Extra vs fastest" in out and "长隧道" in out  # avoided
        assert "禁止通行 Forbidden" in out  # the check's result stays
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{COMPLIANT}\"]').length") == 1  # drawn beside
        assert page.evaluate(f"document.querySelectorAll('path[stroke=\"{ROUTE}\"]').length") >= 1  # the checked route
        assert pane_z(page, COMPLIANT) > 430 and pane_z(page, "#7f8c8d") > 430  # and the unrestricted one
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
        page.wait_for_timeout(300)
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
