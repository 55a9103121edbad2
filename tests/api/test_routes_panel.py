"""The route panel (web/static/js/panel-routes.js) in headless Chromium against the real server: draw a
route by clicking, check it, then plan the compliant alternative."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from conftest import browser_page, free_port, serve, stop
from gis import roadnet, routing

O, P, D, Q, R = (102.70, 25.00), (102.72, 25.00), (102.74, 25.00), (102.70, 25.02), (102.74, 25.02)
TABLES = "roads, restricted_structures, water_source_zones, accidents, hazmat_routes, blackspots, route_conflicts"


@pytest.fixture
def site(db_url, engine):
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        routing.reset_rules(conn)
        for name, cls, v, a, b in [("M1", "motorway", 80, O, P), ("M2", "motorway", 80, P, D),
                                   ("U1", "urban", 40, O, Q), ("U2", "urban", 40, Q, R), ("U3", "urban", 40, R, D)]:
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


def test_draw_check_and_plan(site, token):
    rc = token("route_controller")
    with browser_page() as (page, errors):
        page.goto(site + "/")
        page.evaluate("onemap.ready")
        # the panel shares the map's token; set it without reloading every map layer
        page.evaluate(f"onemap.state.token = {rc!r}")
        # only the roads drawn (other tiles would queue ahead of the panel's requests): the vertices below are
        # clicked on road features, which must not take the click while the panel is drawing
        page.evaluate("Object.keys(onemap.layers).forEach(id => onemap.setLayerVisible(id, id === 'roads'))")
        page.evaluate("onemap.map.setView([25.01, 102.72], 14, {animate: false})")  # (tiles requested now)
        page.evaluate("onemap.whenTilesLoaded(15000)")
        assert page.evaluate("onemap.renderedFeatures('roads').length") > 0
        page.click(".rt-toggle")
        page.fill("#rt-un", "1017")
        page.fill("#rt-dep", "2026-03-02T10:00")

        def screen(lon, lat):
            return page.evaluate(f"(() => {{ const p = onemap.map.latLngToContainerPoint([{lat}, {lon}]);"
                                 " const r = onemap.map.getContainer().getBoundingClientRect();"
                                 " return [p.x + r.left, p.y + r.top]; })()")

        page.click("#rt-draw")
        for lon, lat in (O, P, D):
            page.mouse.click(*screen(lon, lat))
        page.click("#rt-draw")  # finish
        assert page.evaluate("onemap.state.selected") is None  # (no road was opened in the side panel)
        page.click("#rt-check")
        page.wait_for_selector("#rt-out .rt-conflict", timeout=60000)
        out = page.inner_text("#rt-out")
        assert "禁止通行 Forbidden" in out and "长隧道" in out
        # the conflict is highlighted in red on the map
        assert page.evaluate("document.querySelectorAll('path[stroke=\"#e60012\"]').length") >= 1

        page.click("#rt-plan")  # from the first to the last vertex drawn
        page.wait_for_function("document.querySelector('#rt-out').innerText.includes('Compliant')", timeout=60000)
        out = page.inner_text("#rt-out")
        assert "允许通行 Allowed" in out and "Extra vs fastest" in out and "长隧道" in out  # avoided
        assert page.evaluate("document.querySelectorAll('path[stroke=\"#27ae60\"]').length") == 1  # drawn beside
    assert errors == []
