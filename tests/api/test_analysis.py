"""Analysis API over the real PostGIS: grading, siting check both ways, rule editing, staleness, roles."""

import mercantile
import numpy as np
import pyproj
import pytest
import shapely
from sqlalchemy import text

from gis import hazchem
from hazchem_world import EXPECTED_VIOLATIONS, grading_world, metric, violations_world
from layers import registry
from layers.crs import METRIC_EPSG
from layers.settings import StoreSettings

STORE = StoreSettings(database_url=None)
_TO_WGS84 = pyproj.Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True)


def geojson(geom) -> dict:
    g = shapely.transform(metric(geom), lambda c: np.column_stack(_TO_WGS84.transform(c[:, 0], c[:, 1])))
    return shapely.geometry.mapping(g)


def auth(token, role):
    return {"Authorization": f"Bearer {token(role, f'hz-{role}')}"}


@pytest.fixture
def graded(clean, tmp_path):
    with clean.begin() as conn:
        hazchem.reset_rules(conn)
        ids = grading_world(conn, tmp_path)
    hazchem.run(clean, STORE)
    return ids


@pytest.fixture
def violated(clean, tmp_path):
    with clean.begin() as conn:
        ids = violations_world(conn, tmp_path)
    hazchem.run(clean, STORE)
    return ids


def test_grading_endpoint(client, token, graded):
    r = client.get(f"/analysis/grading/{graded['M1']}", headers=auth(token, "planner"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("S", "R", "alpha", "level")} == {"S": 4.0, "R": 10.5, "alpha": 1.5, "level": 3}
    assert [(s["name"], s["cas"], s["q"], s["Q"], s["beta"]) for s in body["substances"]] == [
        ("柴油", None, 2500.0, 5000.0, 1.0), ("氨", "7664-41-7", 30.0, 10.0, 2.0),
        ("混合溶剂（甲苯、二甲苯）", None, 500.0, 1000.0, 1.0)]
    pop = body["population"]
    assert pop["exposed_people"] == 62 and pop["boundary"] == "enterprise" and "max(" in pop["method"]
    assert body["run"]["stale"] is False
    g7 = client.get("/analysis/grading/" + str(graded["G8 S=1"] - 1), headers=auth(token, "emergency")).json()
    assert g7["level"] is None and g7["S"] == pytest.approx(0.98)  # not a major hazard installation


def test_replacing_graded_installations_is_not_refused_for_their_gradings(client, graded, tmp_path):
    """(QA: `import hazard_installations --replace` asked for --discard-history because of the gradings, which
    the next run redoes.) The gradings go with the rows and the analysis is stale."""
    from layers.io import export_layer, import_file

    spec = registry.get("hazard_installations")
    with client.app.state.engine.connect() as conn:
        graded_n = conn.execute(text("SELECT count(*) FROM installation_gradings")).scalar()
    assert graded_n > 0
    export_layer(client.app.state.engine, spec, tmp_path / "hi.geojson", "geojson")
    result = import_file(client.app.state.engine, spec, tmp_path / "hi.geojson", area=STORE.area_bbox, replace=True)
    assert result.written == graded_n
    with client.app.state.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM installation_gradings")).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM installation_chemicals")).scalar() > 0  # (came back)


def test_grading_errors_and_roles(client, token, graded):
    assert client.get(f"/analysis/grading/{graded['M1']}").status_code == 401
    assert client.get(f"/analysis/grading/{graded['M1']}", headers=auth(token, "route_controller")).status_code == 403
    assert client.get("/analysis/grading/999999", headers=auth(token, "planner")).status_code == 404
    bad = client.get("/analysis/grading/abc", headers=auth(token, "planner"))
    assert bad.status_code == 400
    unknown = client.get(f"/analysis/grading/{graded['U1']}", headers=auth(token, "planner"))
    assert unknown.status_code == 400 and "神秘化合物" in unknown.json()["description"]


def test_siting_check_school_near_installations(client, token, violated):
    # a school 940 m east of T1 (toxic, 一级: 1000 m); F1 (flammable, 400 m) is 3.9 km away
    square = shapely.box(1040, 40, 1060, 60)  # 940 m from T1's edge
    r = client.post("/analysis/siting-check", headers=auth(token, "planner"),
                    json={"geometry": geojson(square), "use": "school"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["direction"] == "proposal_near_installation"
    [c] = body["conflicts"]
    assert c["installation_name"] == "T1" and c["protection_class"] == "high_sensitive"
    assert c["distance_m"] == pytest.approx(940, abs=0.01) and c["required_m"] == 1000
    assert c["shortfall_m"] == pytest.approx(60, abs=0.01) and c["line"]["type"] == "LineString"
    assert c["synthetic"] is True  # (the existing installation's flag: the test world's are synthetic)
    # the class follows from the use for a school (no people), from the people for a residential area
    assert body["assumed"]["protection_class_from"] == {"kind": "school", "people": None, "by": "kind",
                                                        "protection_class": "high_sensitive"}
    # a small residential (20 people, 三类) 99 m from F1 conflicts only with F1's 100 m rule
    home = client.post("/analysis/siting-check", headers=auth(token, "planner"), json={
        "geometry": geojson(shapely.Point(5199, 50)), "use": "residential", "people": 20}).json()
    assert [(c["installation_name"], c["required_m"]) for c in home["conflicts"]] == [("F1", 100.0)]
    assert home["assumed"]["protection_class_from"] == {"kind": "residential", "people": 20, "by": "people",
                                                        "protection_class": "general_3"}


def test_siting_options_are_what_the_check_takes(client):
    o = client.get("/analysis/siting-check/options").json()  # (public: the names of a form)
    assert [u["code"] for u in o["receptor_uses"]] == list(registry.get("receptors").field("kind").codes)
    assert [u["code"] for u in o["installation_uses"]] == ["chemical_plant", "hazchem_storage"]
    assert [(lv["code"], lv["zh"]) for lv in o["levels"]] == [(1, "一级"), (2, "二级"), (3, "三级"), (4, "四级")]
    assert [k["code"] for k in o["kinds"]] == ["toxic", "flammable", "explosive"]


def test_siting_check_proposed_plant_near_receptors(client, token, violated):
    plant = shapely.box(5400, 0, 5420, 20)  # toxic 一级 plant by default: the strictest rules
    body = client.post("/analysis/siting-check", headers=auth(token, "planner"),
                       json={"geometry": geojson(plant), "use": "chemical_plant"}).json()
    assert body["assumed"] == {"level": 1, "kinds": ["explosive", "flammable", "toxic"]}
    names = {c["receptor_name"]: c for c in body["conflicts"]}
    # H1 (hospital, 42 m away): 1000 m (toxic 一级); R1/R2 (三类, ~390 m): 100 m rule -> no conflict
    assert set(names) == {"H1"} and names["H1"]["required_m"] == 1000
    assert names["H1"]["direction"] == "installation_near_receptor"
    flammable = client.post("/analysis/siting-check", headers=auth(token, "planner"), json={
        "geometry": geojson(plant), "use": "hazchem_storage", "kinds": ["flammable"], "level": 3}).json()
    assert [(c["receptor_name"], c["required_m"]) for c in flammable["conflicts"]] == [("H1", 400.0)]


def test_siting_check_rejects_bad_input(client, token, violated):
    h = auth(token, "planner")
    square = geojson(shapely.box(0, 0, 10, 10))
    assert client.post("/analysis/siting-check", json={"geometry": square, "use": "school"}).status_code == 401
    for body in ({"geometry": square, "use": "spaceport"},
                 {"geometry": {"type": "Polygon", "coordinates": [[1, 2]]}, "use": "school"},
                 {"geometry": {"type": "Point", "coordinates": [0, 0]}, "use": "school"},
                 {"geometry": square, "use": "chemical_plant", "level": 7},
                 {"geometry": {"type": "Polygon", "coordinates": [[[102.7, 25], [102.71, 25.01], [102.71, 25],
                                                                   [102.7, 25.01], [102.7, 25]]]}, "use": "school"}):
        r = client.post("/analysis/siting-check", headers=h, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["description"]
    many = [[[[102.2 + .01 * i, 24.4 + .01 * j], [102.205 + .01 * i, 24.4 + .01 * j], [102.205 + .01 * i, 24.405 + .01 * j],
              [102.2 + .01 * i, 24.4 + .01 * j]]] for i in range(60) for j in range(60)]  # (QA: 28 000 parts took 19 s)
    r = client.post("/analysis/siting-check", headers=h, json={"geometry": {"type": "MultiPolygon", "coordinates": many},
                                                               "use": "chemical_plant", "level": 1})
    assert r.status_code == 400 and "at most 10000 positions, got 14400" in r.json()["description"], r.text
    for geometry, message in (({"type": "Circle", "coordinates": [102.7, 25]}, "geometry type must be one of"),
                              ({"type": "FeatureCollection", "features": []}, "geometry type must be one of"),
                              ({"type": "Point", "coordinates": 102.7}, "not a valid GeoJSON Point"),
                              ({"type": "Polygon"}, "not a valid GeoJSON Polygon"),
                              # (an empty one was "empty or invalid: Valid Geometry")
                              ({"type": "MultiPoint", "coordinates": []}, "geometry is empty: the MultiPoint has no"),
                              ({"type": "Polygon", "coordinates": [[[102.7, 25], [102.7, 25], [102.7, 25], [102.7, 25]]]},
                               "geometry is invalid: Too few points")):
        r = client.post("/analysis/siting-check", headers=h, json={"geometry": geometry, "use": "school"})
        assert r.status_code == 400 and message in r.json()["description"], r.text
    r = client.post("/analysis/siting-check", headers={**h, "Content-Type": "application/json"},
                    content='{"geometry": {"type": "Point", "coordinates": [NaN, 25]}, "use": "school"}')
    assert r.status_code == 400 and "finite numbers" in r.json()["description"], r.text
    # fields that do not apply to the use, no kinds at all, another CRS: refused, not ignored
    point = {"type": "Point", "coordinates": [102.71, 25.04]}
    for extra, message in (({"use": "school", "level": 2}, "level and kinds apply to a chemical plant"),
                           ({"use": "school", "kinds": ["toxic"]}, "level and kinds apply"),
                           ({"use": "chemical_plant", "people": 10}, "people applies to a receptor use"),
                           ({"use": "chemical_plant", "kinds": []}, "at least one"),
                           ({"use": "school", "geometry": {**point, "crs": {"type": "name", "properties": {
                               "name": "EPSG:3857"}}}}, "names another CRS")):
        r = client.post("/analysis/siting-check", headers=h, json={"geometry": point, **extra})
        assert r.status_code == 400 and message in r.json()["description"], (extra, r.text)
    lonlat = {**point, "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}}
    assert client.post("/analysis/siting-check", headers=h, json={"geometry": lonlat, "use": "school"}).status_code == 200


def test_rule_editing_roles_and_staleness(client, token, violated):
    editor, planner = auth(token, "editor"), auth(token, "planner")
    rules = client.get("/analysis/safety-rules", headers=planner).json()["rules"]
    assert len(rules) == 5
    rule = {"installation_kind": "toxic", "level": 1, "receptor_class": "high_sensitive", "distance_m": 1500,
            "basis": "地方规定（测试） / local rule (test)", "assumption": False}
    assert client.post("/analysis/safety-rules", headers=planner, json=rule).status_code == 403
    assert client.post("/analysis/safety-rules", json=rule).status_code == 401
    assert client.post("/analysis/safety-rules", headers=editor, json={**rule, "distance_m": -5}).status_code == 400
    assert client.post("/analysis/safety-rules", headers=editor, json={**rule, "receptor_class": "x"}).status_code == 400
    created = client.post("/analysis/safety-rules", headers=editor, json=rule)
    assert created.status_code == 201 and created.json()["distance_m"] == 1500
    status = client.get("/analysis/status", headers=planner).json()["analyses"]["hazchem"]
    assert status["stale"] is True and status["changed_inputs"] == ["safety_rules"]

    def stale():  # what the page's layer switcher marks 待更新 Stale
        return {d["id"]: d["stale"] for d in client.get("/api/layers", headers=planner).json()["layers"] if d["stale"]}
    assert stale()["safety_violations"] == {"analysis": "hazchem", "computed_at": status["computed_at"],
                                            "changed_inputs": ["safety_rules"]}
    assert "receptors" not in stale()  # (a source layer is never stale)
    rid = created.json()["id"]
    assert client.put(f"/analysis/safety-rules/{rid}", headers=editor,
                      json={**rule, "distance_m": 1100}).json()["distance_m"] == 1100
    assert client.put("/analysis/safety-rules/999999", headers=editor, json=rule).status_code == 404
    hazchem.run(client.app.state.engine, STORE)  # S2 (1001 m from T1) now violates: 1100 m
    assert client.get("/analysis/status", headers=planner).json()["analyses"]["hazchem"]["stale"] is False
    assert "safety_violations" not in stale()
    items = client.get("/collections/safety_violations/items", headers=planner).json()
    got = {(f["properties"]["installation_name"], f["properties"]["receptor_name"]) for f in items["features"]}
    assert got == {(a, b) for a, b, _, _ in EXPECTED_VIOLATIONS} | {("T1", "S2")}
    assert client.delete(f"/analysis/safety-rules/{rid}", headers=editor).status_code == 204
    assert client.delete(f"/analysis/safety-rules/{rid}", headers=editor).status_code == 404
    assert client.post("/analysis/safety-rules/reset", headers=editor).json() == {"rules": 40}


def test_derived_layers_are_staff_only_and_tiled(client, token, violated):
    assert client.get("/collections/safety_violations/items").status_code == 401
    assert client.get("/collections/exposure_rings/items").status_code == 401
    planner = auth(token, "planner")
    rings = client.get("/collections/exposure_rings/items?subject_layer=chemical_parks", headers=planner).json()
    assert rings["numberMatched"] == 4 and {f["properties"]["outer_m"] for f in rings["features"]} == {
        500, 1000, 3000, 5000}
    with client.app.state.engine.connect() as conn:
        lon, lat = conn.execute(text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) c FROM safety_violations "
                                     "LIMIT 1) t")).one()
    tile = mercantile.tile(lon, lat, 14)
    r = client.get(f"/tiles/safety_violations/14/{tile.x}/{tile.y}.pbf", headers=planner)
    assert r.status_code == 200 and len(r.content) > 0
    assert client.get(f"/tiles/safety_violations/14/{tile.x}/{tile.y}.pbf").status_code == 401


def test_status_lists_every_analysis(client, token, violated):
    assert client.get("/analysis/status").status_code == 401
    body = client.get("/analysis/status", headers=auth(token, "route_controller")).json()["analyses"]
    assert body["hazchem"]["stats"]["violations"] == 4 and body["hazchem"]["stale"] is False
