"""/routes endpoints end to end on a hand-built network: roles, check (GeoJSON, GPX text and upload,
origin/destination), plan, rules CRUD, and `analyze roads` writing route_conflicts and blackspots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from pyproj import Geod
from sqlalchemy import event, text

from conftest import eventually
from gis import roadnet, routing

GEOD = Geod(ellps="WGS84")
O, P, D, Q, R = (102.70, 25.00), (102.72, 25.00), (102.74, 25.00), (102.70, 25.02), (102.74, 25.02)
TABLES = "roads, restricted_structures, water_source_zones, accidents, hazmat_routes, blackspots, route_conflicts"
MAIN = {"type": "LineString", "coordinates": [list(O), list(P), list(D)]}
GPX = ('<gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
       + "".join(f'<trkpt lat="{y}" lon="{x}"/>' for x, y in (O, P, D)) + "</trkseg></trk></gpx>")
CHLORINE = {"un_number": "1017", "quantity_t": 20}


def line(*pts) -> str:
    return "LINESTRING(" + ", ".join(f"{x} {y}" for x, y in pts) + ")"


def vertices(geometry):
    """A route's line (a GeoJSON geometry, or its coordinates) without the vertices in the middle of a straight
    stretch: those where the graph cut a road longer than 500 m (every road here is straight, along a parallel or
    a meridian, so a cut point lies exactly on it)."""
    if isinstance(geometry, dict):
        return {**geometry, "coordinates": vertices(geometry["coordinates"])}
    return shapely.get_coordinates(shapely.simplify(shapely.LineString(geometry), 0)).tolist()


@pytest.fixture
def net(engine):
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
        routing.reset_rules(conn)  # the shipped defaults
        for name, cls, v, pts in [("M1", "motorway", 80, (O, P)), ("M2", "motorway", 80, (P, D)),
                                  ("U1", "urban", 40, (O, Q)), ("U2", "urban", 40, (Q, R)), ("U3", "urban", 40, (R, D))]:
            conn.execute(text("INSERT INTO roads (name, road_class, speed_kmh, geom) "
                              "VALUES (:n, :c, :v, ST_GeomFromText(:g, 4326))"),
                         {"n": name, "c": cls, "v": v, "g": line(*pts)})
        conn.execute(text("INSERT INTO restricted_structures (name, kind, structure_class, length_m, geom) VALUES "
                          "('长隧道', 'tunnel', 'tunnel_l', 1009, ST_GeomFromText(:g, 4326))"),
                     {"g": line((102.725, 25.0), (102.735, 25.0))})
        roadnet.build_graph(conn)
    return engine


@pytest.fixture
def rc(client, token):
    return {"Authorization": f"Bearer {token('route_controller')}"}


@pytest.fixture
def editor(client, token):
    return {"Authorization": f"Bearer {token('editor')}"}


def test_roles(client, net, editor, token):
    """Check and plan: route_controller, planner, emergency (and admin). Rules, cargo table and network report:
    those and editors; rules changed by editors only."""
    body = {"route": MAIN, "cargo": CHLORINE}
    plan = {"origin": list(O), "destination": list(D), "cargo": CHLORINE}
    assert client.post("/routes/check", json=body).status_code == 401
    r = client.post("/routes/check", json=body, headers=editor)
    assert r.status_code == 403 and "needs emergency, planner, route_controller" in r.text
    assert client.post("/routes/plan", json=plan, headers=editor).status_code == 403
    for role in ("planner", "emergency", "route_controller", "admin"):
        headers = {"Authorization": f"Bearer {token(role)}"}
        assert client.post("/routes/check", json=body, headers=headers).status_code == 200, role
        assert client.post("/routes/plan", json=plan, headers=headers).status_code == 200, role
    planner = {"Authorization": f"Bearer {token('planner')}"}
    assert client.post("/routes/rules", json={}, headers=planner).status_code == 403
    for path in ("/routes/rules", "/routes/cargo", "/routes/network"):
        assert client.get(path, headers=editor).status_code == 200, path
        r = client.get(path)
        assert r.status_code == 401 and "role: editor, emergency, planner, route_controller" in r.text, path


def test_check_default_rules(client, net, rc):
    r = client.post("/routes/check", json={"route": MAIN, "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"},
                    headers=rc)
    assert r.status_code == 200, r.text
    out = r.json()
    # the shipped defaults: all dangerous goods are banned from long tunnels
    assert out["verdict"] == "forbidden" and out["verdict_zh"] == "禁止通行"
    (c,) = out["conflicts"]
    assert (c["target_name"], c["target_class"], c["verdict"]) == ("长隧道", "tunnel_l", "forbidden")
    assert c["rule"]["zh"] == "长及特长隧道全天禁止危险货物运输车辆通行" and "深公交" in c["rule_source"]
    assert 2400 < c["distance_m"] < 2600
    # the same route as GPX text, as an uploaded GPX file, and between origin and destination
    gpx = client.post("/routes/check", json={"gpx": GPX, "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"},
                      headers=rc).json()
    upload = client.post("/routes/check/gpx", files={"file": ("trip.gpx", GPX.encode(), "application/gpx+xml")},
                         data={"un_number": "1017", "quantity_t": "20", "departure": "2026-03-02T10:00+08:00"},
                         headers=rc).json()
    od = client.post("/routes/check", json={"origin": list(O), "destination": list(D), "cargo": CHLORINE,
                                            "departure": "2026-03-02T10:00+08:00"}, headers=rc).json()
    for other in (gpx, upload, od):  # (od's route runs on the graph: its line has the edges' cut points too)
        assert [{**c, "geometry": vertices(c["geometry"])} for c in other["conflicts"]] == out["conflicts"]


@pytest.mark.parametrize("body, message", [
    ({"route": MAIN, "cargo": {"un_number": "9999"}}, "unknown UN number '9999'"),
    ({"route": MAIN, "cargo": {}}, "neither un_number nor hazard_class"),
    ({"route": {"type": "Point", "coordinates": [1, 2]}, "cargo": CHLORINE}, "GeoJSON LineString"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2]]}, "cargo": CHLORINE}, "at least two positions"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2], [200, 2]]}, "cargo": CHLORINE},
     "position 1 is not lon/lat in degrees"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2], ["x", 2]]}, "cargo": CHLORINE},
     "position 1 is not [lon, lat]"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2], [3]]}, "cargo": CHLORINE},
     "position 1 is not [lon, lat]"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2], [1, 2]]}, "cargo": CHLORINE}, "two distinct"),
    ({"route": {"type": "LineString", "coordinates": [MAIN["coordinates"][0], [True, False]]}, "cargo": CHLORINE},
     "position 1 is not [lon, lat]: [True, False]"),
    ({"route": MAIN, "gpx": GPX, "cargo": CHLORINE}, "exactly one of"),
    ({"route": MAIN, "destination": list(D), "cargo": CHLORINE}, "exactly one of"),  # (was dropped silently)
    ({"route": MAIN, "cargo": {"un_number": "1017", "quantity_t": True}}, "quantity_t must be a number"),
    ({"route": MAIN, "cargo": {"un_number": 0}}, "unknown UN number '0'"),
    ({"route": MAIN, "cargo": CHLORINE, "departure": "tomorrow"}, "ISO 8601"),
    ({"route": MAIN, "cargo": CHLORINE, "speed": 3}, "speed"),
    ({"gpx": "<gpx><trk>", "cargo": CHLORINE}, "not a GPX"),
    ({"route": {"type": "FeatureCollection", "features": [1]}, "cargo": CHLORINE}, "list of GeoJSON Features"),
    ({"route": {"type": "FeatureCollection", "features": "abc"}, "cargo": CHLORINE}, "list of GeoJSON Features"),
    ({"route": {"type": "FeatureCollection", "features": [{"geometry": "x"}]}, "cargo": CHLORINE}, "exactly one"),
    ({"route": {"type": "LineString", "coordinates": [[116.3, 39.9], [116.5, 39.95]]}, "cargo": CHLORINE},
     "outside the served area"),
    ({"origin": [116.3, 39.9], "destination": list(D), "cargo": CHLORINE}, "origin [116.3, 39.9] is outside"),
    ({"route": MAIN, "cargo": CHLORINE, "departure": "9999-12-31T23:59"}, "in the years"),
    ({"route": MAIN, "cargo": CHLORINE, "departure": "0001-01-01T00:00+14:00"}, "in the years"),
])
def test_bad_input_is_400(client, net, rc, body, message):
    r = client.post("/routes/check", json=body, headers=rc)
    assert r.status_code == 400 and message in r.json()["description"], r.text
    assert r.json()["description_zh"], r.text  # (what the panel shows first)
    # once the token is known the fast path takes the request and hands the error to the route
    assert client.post("/routes/check", json={"route": MAIN, "cargo": CHLORINE}, headers=rc).status_code == 200
    again = client.post("/routes/check", json=body, headers=rc)
    assert again.status_code == 400 and again.json() == r.json()


def test_plan_ends_outside_the_served_area_are_400(client, net, rc):
    for body in ({"origin": [116.3, 39.9], "destination": list(D)}, {"origin": list(O), "destination": [0.0, 0.0]}):
        for _ in range(2):  # (by the route, then by the fast path once the token is known)
            r = client.post("/routes/plan", json={**body, "cargo": CHLORINE}, headers=rc)
            assert r.status_code == 400 and "outside the served area" in r.json()["description"], r.text


def test_plan_and_check_from_memory(client, net, rc):
    """A caller whose token the server knows, with the graph, rules and structures in memory: the fast
    path answers a plan and a check with no database statement (nor even a pooled connection), the
    same as the route did."""
    plan = {"origin": list(O), "destination": list(D), "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    check = {"route": MAIN, "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    first = [client.post("/routes/plan", json=plan, headers=rc), client.post("/routes/check", json=check, headers=rc)]
    assert eventually(client.app.state.changes.settled)
    statements, checkouts = [], []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    on_checkout = lambda *args: checkouts.append(args)  # noqa: E731
    engine = client.app.state.engine
    event.listen(engine, "before_cursor_execute", listener)
    event.listen(engine.pool, "checkout", on_checkout)
    try:
        again = [client.post("/routes/plan", json=plan, headers=rc), client.post("/routes/check", json=check, headers=rc)]
    finally:
        event.remove(engine, "before_cursor_execute", listener)
        event.remove(engine.pool, "checkout", on_checkout)
    assert statements == [] and checkouts == []
    assert [r.json() for r in again] == [r.json() for r in first] and again[0].json()["found"]


def test_a_body_too_large_for_the_fast_path_goes_to_the_route_whole(client, net, rc, monkeypatch):
    from api.routers.routes import RouteFastPath

    body = {"route": MAIN, "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    expected = client.post("/routes/check", json=body, headers=rc).json()  # (the token is known from now on)
    monkeypatch.setattr(RouteFastPath, "MAX_BODY", 16)
    computed = []
    monkeypatch.setattr(RouteFastPath, "_compute", lambda *args: computed.append(args))
    r = client.post("/routes/check", content=json.dumps(body).encode(), headers={**rc, "Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == expected and computed == []


def test_a_rebuilt_graph_reaches_the_next_plan(net, client, rc):  # (the server starts with a graph)
    """``analyze roads`` in another process (here another connection) rebuilds the graph: its version
    is announced and the next plan searches the new one, not the one held in memory."""
    plan = {"origin": list(O), "destination": list(D), "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    free = lambda: client.post("/routes/plan", json=plan, headers=rc).json()["unrestricted"]["geometry"]["coordinates"]  # noqa: E731
    # (the second one from memory; the roads' own line: no vertex where it goes straight on, at the points
    # where the graph cut the roads nor at P, where M1 meets M2 in line)
    first, second = free(), free()
    assert first == second and np.allclose(first, [O, D], rtol=0, atol=1e-7)
    with net.begin() as conn:  # the motorways go: only the graph changes among what a plan depends on
        conn.execute(text("DELETE FROM roads WHERE road_class = 'motorway'"))
        roadnet.build_graph(conn)
    assert eventually(lambda: len(free()) == 4 and np.allclose(free(), [O, Q, R, D], rtol=0, atol=1e-7))


def test_plans_run_on_the_event_loop_unless_they_need_the_database(client, net, rc, monkeypatch):
    """On a city-size graph held in memory the fast path plans on the event loop; a plan that needs the
    database there (the names of roads under a time-window ban) is computed again in a worker thread,
    and answers as the route does."""
    from api.routers.routes import RouteFastPath

    with net.begin() as conn:
        routing.create_rule(conn, {"name_zh": "高速夜禁", "name_en": "motorway night ban", "source": "test",
                                   "cargo_classes": ["*"], "target": "road", "road_classes": ["motorway"],
                                   "ban_start": "00:00", "ban_end": "06:00"})
    day = {"origin": list(O), "destination": list(D), "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    night = {**day, "departure": "2026-03-02T03:00+08:00"}
    by_route = [client.post("/routes/plan", json=b, headers=rc).json() for b in (day, night)]  # (token unknown)
    assert eventually(client.app.state.changes.settled)
    calls, compute = [], RouteFastPath._compute

    def recording(self, *args, offline=False):
        try:
            return compute(self, *args, offline=offline)
        finally:
            calls.append(offline)
    monkeypatch.setattr(RouteFastPath, "_compute", recording)
    assert client.post("/routes/plan", json=day, headers=rc).json() == by_route[0]
    assert calls == [True]  # on the event loop, from memory
    calls.clear()
    answer = client.post("/routes/plan", json=night, headers=rc).json()
    assert calls == [True, False] and answer == by_route[1]  # then in a thread, which may ask the database
    assert [c["target_name"] for c in answer["unrestricted"]["conflicts"] if c["target"] == "road"] == ["M1", "M2"]


def test_the_role_is_checked_before_the_body(client, net, token):
    # (a caller without the role learns nothing of the body's schema: 401/403 whatever the body)
    planner = {"Authorization": f"Bearer {token('planner')}"}
    for path, headers, status in (("/routes/check", {}, 401), ("/routes/plan", {}, 401), ("/routes/rules", planner, 403),
                                  ("/analysis/safety-rules", planner, 403), ("/emergency/incident", {}, 401),
                                  ("/analysis/siting-check", {}, 401)):
        r = client.post(path, json={"nonsense": 1}, headers=headers)
        assert r.status_code == status, (path, r.text)
    r = client.put("/monitoring/thresholds", json={"kind": 5}, headers=planner)
    assert r.status_code == 403, r.text


def test_stored_routes_checked_for_a_day(client, net, rc):
    with net.begin() as conn:
        for name, un, schedule in (("chlorine run", "1017", "每日 10:00 发车"), ("unknown cargo", "9999", None)):
            conn.execute(text("INSERT INTO hazmat_routes (name, cargo_un, schedule, geom) "
                              "VALUES (:n, :u, :s, ST_GeomFromText(:g, 4326))"),
                         {"n": name, "u": un, "s": schedule, "g": line(O, P, D)})
    for far in ("9999-12-31", "0001-01-01"):  # (QA fuzz: a 500, the trip's end beyond datetime's range)
        r = client.get("/routes/stored/check", params={"day": far}, headers=rc)
        assert r.status_code == 400 and "in the years" in r.json()["description"], r.text
    r = client.get("/routes/stored/check", params={"day": "2026-12-01"}, headers=rc)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["day"] == "2026-12-01"
    (route,) = out["routes"]
    assert (route["name"], route["verdict"], route["departure"]) == ("chlorine run", "forbidden",
                                                                     "2026-12-01T10:00:00+08:00")
    assert [c["target_name"] for c in route["conflicts"]] == ["长隧道"] and "geometry" not in route["conflicts"][0]
    # the same answer as a check of that line
    alone = client.post("/routes/check", json={"route": MAIN, "cargo": {"un_number": "1017"},
                                               "departure": "2026-12-01T10:00+08:00"}, headers=rc).json()
    assert route["conflicts"][0]["distance_m"] == alone["conflicts"][0]["distance_m"]
    assert [(u["name"], "unknown UN number" in u["reason"]) for u in out["unchecked"]] == [("unknown cargo", True)]
    assert client.get("/routes/stored/check", params={"day": "tomorrow"}, headers=rc).status_code == 400
    assert client.get("/routes/stored/check").status_code == 401
