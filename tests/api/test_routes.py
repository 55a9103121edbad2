"""/routes endpoints end to end on a hand-built network: roles, check (GeoJSON, GPX text and upload,
origin/destination), plan, rules CRUD, and `analyze roads` writing route_conflicts and blackspots."""

from __future__ import annotations

import pytest
from pyproj import Geod
from sqlalchemy import text

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
    body = {"route": MAIN, "cargo": CHLORINE}
    assert client.post("/routes/check", json=body).status_code == 401
    assert client.post("/routes/check", json=body, headers=editor).status_code == 403
    planner = {"Authorization": f"Bearer {token('planner')}"}
    assert client.post("/routes/check", json=body, headers=planner).status_code == 200
    assert client.post("/routes/rules", json={}, headers=planner).status_code == 403
    assert client.get("/routes/rules", headers=editor).status_code == 200


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
    for other in (gpx, upload, od):
        assert other["conflicts"] == out["conflicts"]


@pytest.mark.parametrize("body, message", [
    ({"route": MAIN, "cargo": {"un_number": "9999"}}, "unknown UN number '9999'"),
    ({"route": MAIN, "cargo": {}}, "neither un_number nor hazard_class"),
    ({"route": {"type": "Point", "coordinates": [1, 2]}, "cargo": CHLORINE}, "GeoJSON LineString"),
    ({"route": {"type": "LineString", "coordinates": [[1, 2]]}, "cargo": CHLORINE}, "at least two positions"),
    ({"route": MAIN, "gpx": GPX, "cargo": CHLORINE}, "exactly one of"),
    ({"route": MAIN, "cargo": CHLORINE, "departure": "tomorrow"}, "ISO 8601"),
    ({"route": MAIN, "cargo": CHLORINE, "speed": 3}, "speed"),
    ({"gpx": "<gpx><trk>", "cargo": CHLORINE}, "not a GPX"),
])
def test_bad_input_is_400(client, net, rc, body, message):
    r = client.post("/routes/check", json=body, headers=rc)
    assert r.status_code == 400 and message in r.json()["description"], r.text


def test_plan(client, net, rc):
    detour = sum(GEOD.inv(*a, *b)[2] for a, b in ((O, Q), (Q, R), (R, D)))
    free = sum(GEOD.inv(*a, *b)[2] for a, b in ((O, P), (P, D)))
    r = client.post("/routes/plan", json={"origin": list(O), "destination": list(D), "cargo": CHLORINE,
                                          "departure": "2026-03-02T10:00+08:00"}, headers=rc)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["found"] and out["route"]["geometry"]["coordinates"] == [list(O), list(Q), list(R), list(D)]
    assert out["extra_length_m"] == pytest.approx(detour - free, abs=0.5)
    assert out["unrestricted"]["verdict"] == "forbidden"
    r = client.post("/routes/plan", json={"origin": [110, 30], "destination": list(D), "cargo": CHLORINE}, headers=rc)
    assert r.status_code == 400 and "km from the nearest road node" in r.json()["description"]


def test_rules_crud_and_blocked_plan(client, net, rc, editor):
    rules = client.get("/routes/rules", headers=editor).json()
    assert len(rules) == 10 and all(r["source"] for r in rules)  # the shipped defaults, each with its source
    new = {"name_zh": "城区禁行", "name_en": "Urban ban", "cargo_classes": ["2.3"], "target": "road",
           "road_classes": ["urban"], "source": "test"}
    r = client.post("/routes/rules", json=new, headers=editor)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    # with the tunnel and the urban roads both forbidden, chlorine has no route
    plan = {"origin": list(O), "destination": list(D), "cargo": CHLORINE, "departure": "2026-03-02T10:00+08:00"}
    out = client.post("/routes/plan", json=plan, headers=rc).json()
    assert not out["found"] and "长隧道" in out["reason"]
    assert [(b["target_name"], b["unblocks"]) for b in out["blocked_by"]] == [("长隧道", True)]
    # without a departure time the expressway night ban counts too: the motorways block as well
    night = client.post("/routes/plan", json={**plan, "departure": None}, headers=rc).json()
    assert [b["target_name"] for b in night["blocked_by"]] == ["M1", "M2", "长隧道"]
    bad = client.put(f"/routes/rules/{rid}", json={**new, "road_classes": ["footpath"]}, headers=editor)
    assert bad.status_code == 400 and "unknown codes" in bad.json()["description"]
    ok = client.put(f"/routes/rules/{rid}", json={**new, "cargo_classes": ["1"]}, headers=editor)
    assert ok.status_code == 200 and ok.json()["cargo_classes"] == ["1"]
    assert client.delete(f"/routes/rules/{rid}", headers=editor).status_code == 204
    assert client.delete(f"/routes/rules/{rid}", headers=editor).status_code == 404
    assert client.put("/routes/rules/99999", json=new, headers=editor).status_code == 404
    assert client.post("/routes/rules/reset", headers=editor).json() == {"rules": 10}


def test_analyze_roads_writes_derived_layers(client, net, rc, store_settings):
    with net.begin() as conn:
        conn.execute(text("INSERT INTO hazmat_routes (name, cargo_un, quantity_t, schedule, synthetic, geom) VALUES "
                          "('氯气专线', '1017', 20, '每日 10:00', true, ST_GeomFromText(:a, 4326)), "
                          "('绕行线', '1017', 20, '每日 10:00', true, ST_GeomFromText(:b, 4326)), "
                          "('未知货物', '9999', 1, NULL, true, ST_GeomFromText(:a, 4326))"),
                     {"a": line(O, P, D), "b": line(O, Q, R, D)})
        conn.execute(text("INSERT INTO roads (name, road_class, geom) VALUES ('孤岛', 'urban', "
                          "ST_GeomFromText('LINESTRING(102.9 25, 102.91 25)', 4326))"))
    stats = roadnet.run(net, store_settings)
    assert stats["routes_checked"] == 2 and stats["routes_forbidden"] == 1 and stats["route_conflicts"] == 1
    assert stats["unchecked_routes"] == [{"route_id": 3, "reason": "unknown UN number '9999'"}]
    assert stats["components"] == 2 and any("disconnected" in p for p in stats["network_problems"])
    items = client.get("/collections/route_conflicts/items", headers=rc).json()["features"]
    assert [(f["properties"]["name"], f["properties"]["target_name"], f["properties"]["verdict"],
             f["properties"]["synthetic"]) for f in items] == [("氯气专线", "长隧道", "forbidden", True)]
    assert client.get("/collections/route_conflicts/items").status_code == 401  # restricted layer
    network = client.get("/routes/network", headers=rc).json()
    assert network["components"] == 2 and network["problems"]
