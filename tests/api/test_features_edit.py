"""Editing single features over the API (OGC API Features Part 4: POST /items, PUT and DELETE /items/{fid}),
validated as an import is, against the real PostGIS."""

from datetime import datetime, timezone

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from conftest import load, pond_with_open_alarm

SCHOOL = {"type": "Feature", "geometry": {"type": "Point", "coordinates": [102.7, 25.04]},
          "properties": {"name": "新建学校", "kind": "学校", "people": "1,200", "adcode": "530102"}}


def box(x: float, y: float, half: float = 0.002) -> shapely.MultiPolygon:
    return shapely.MultiPolygon([shapely.box(x - half, y - half, x + half, y + half)])


def frame(rows: list[dict], geoms: list) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(rows, geometry=geoms, crs="EPSG:4326")


@pytest.fixture
def editor(clean, token):
    return {"Authorization": f"Bearer {token('editor')}"}


def count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar()


def version(client, headers, layer: str) -> int:
    return client.get("/api/versions", headers=headers).json()["versions"][layer]


def test_create_a_receptor_and_read_it_back(client, editor, clean):
    before = version(client, editor, "receptors")
    r = client.post("/collections/receptors/items", json=SCHOOL, headers=editor)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "http://testserver/collections/receptors/items/1"
    assert r.headers["content-type"].startswith("application/geo+json")
    # the label 学校 stored as its code, "1,200" as 1200 (as an import reads them)
    props = r.json()["properties"]
    assert (props["name"], props["kind"], props["people"], props["adcode"]) == ("新建学校", "school", 1200, "530102")
    got = client.get(r.headers["location"]).json()
    assert got["geometry"] == {"type": "Point", "coordinates": [102.7, 25.04]} and got["properties"] == props
    assert version(client, editor, "receptors") > before  # (the tiles and the page's polling follow it)
    # an id given is kept; the next one without an id is numbered after it; a taken one is a 409
    r = client.post("/collections/receptors/items", json={**SCHOOL, "id": 50}, headers=editor)
    assert r.status_code == 201 and r.json()["id"] == 50
    assert client.post("/collections/receptors/items", json=SCHOOL, headers=editor).json()["id"] == 51
    r = client.post("/collections/receptors/items", json={**SCHOOL, "id": 50}, headers=editor)
    assert r.status_code == 409 and "50" in r.json()["description"] and r.json()["description_zh"]
    assert count(clean, "receptors") == 3
    # a FeatureCollection: every feature written, Location the first's
    two = {"type": "FeatureCollection", "features": [SCHOOL, {**SCHOOL, "properties": {"name": "医院", "kind": "hospital"}}]}
    r = client.post("/collections/receptors/items", json=two, headers=editor)
    assert r.status_code == 201 and [f["id"] for f in r.json()["features"]] == [52, 53]
    assert r.headers["location"].endswith("/collections/receptors/items/52") and count(clean, "receptors") == 5


def test_a_rejected_feature_says_why_and_nothing_is_written(client, editor, clean):
    bad = {**SCHOOL, "properties": {"kind": "spaceship", "people": -5}}
    r = client.post("/collections/receptors/items", json=bad, headers=editor)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == "FeatureRejected" and "nothing written" in body["description"] and body["description_zh"]
    (rejection,) = body["rejections"]
    assert rejection["row"] == 1
    for said in ("kind: 'spaceship' is not a valid code", "people: -5 is below the minimum of 0", "name: required"):
        assert said in rejection["reason"]
    # a FeatureCollection is all or nothing: its second feature's reference to a missing park rejects both
    parks = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(box(102.7, 25.0)), "properties": {"name": "甲企业"}},
        {"type": "Feature", "geometry": shapely.geometry.mapping(box(102.8, 25.0)),
         "properties": {"name": "乙企业", "park_id": 7}}]}
    r = client.post("/collections/enterprises/items", json=parks, headers=editor)
    assert r.status_code == 400 and [x["row"] for x in r.json()["rejections"]] == [2]
    assert "park_id 7: no such row in chemical_parks / 化工园区（chemical_parks）中无编号 7" in r.json()["rejections"][0]["reason"]
    assert count(clean, "receptors") == 0 and count(clean, "enterprises") == 0


def test_a_geometry_outside_the_area_is_rejected(client, editor, clean):
    beijing = {**SCHOOL, "geometry": {"type": "Point", "coordinates": [116.4, 39.9]}}
    r = client.post("/collections/receptors/items", json=beijing, headers=editor)
    assert r.status_code == 400 and "outside the area of interest" in r.json()["rejections"][0]["reason"]
    line = {**SCHOOL, "geometry": {"type": "LineString", "coordinates": [[102.7, 25.0], [102.8, 25.0]]}}
    r = client.post("/collections/receptors/items", json=line, headers=editor)
    assert "geometry is LineString, layer needs Point" in r.json()["rejections"][0]["reason"]
    broken = {**SCHOOL, "geometry": {"type": "Point", "coordinates": ["a", "b"]}}
    r = client.post("/collections/receptors/items", json=broken, headers=editor)
    assert r.status_code == 400 and "cannot read the geometry" in r.json()["rejections"][0]["reason"]
    assert count(clean, "receptors") == 0


def test_put_replaces_properties_and_geometry_of_the_same_row(client, editor, clean):
    load(clean, "chemical_parks", frame([{"name": "园区"}], [box(102.7, 25.0, 0.01)]))
    load(clean, "enterprises", frame([{"name": "企业", "park_id": 1, "risk_grade": "red"}], [box(102.7, 25.0)]))
    before = version(client, editor, "chemical_parks")
    park = {"type": "Feature", "id": 1, "geometry": shapely.geometry.mapping(box(102.72, 25.02, 0.01)),
            "properties": {"name": "新园区", "park_level": "省级"}}
    r = client.put("/collections/chemical_parks/items/1", json=park, headers=editor)
    assert r.status_code == 200, r.text
    got = client.get("/collections/chemical_parks/items/1").json()
    assert got["properties"]["name"] == "新园区" and got["properties"]["park_level"] == "provincial"
    assert shapely.geometry.shape(got["geometry"]).centroid.coords[0] == pytest.approx((102.72, 25.02))
    # an UPDATE, not a delete and insert: the enterprise still refers to the park (ON DELETE SET NULL would unlink it)
    assert client.get("/collections/enterprises/items/1", headers=editor).json()["properties"]["park_id"] == 1
    assert version(client, editor, "chemical_parks") > before
    # properties not given become null or the column's default (as an import stores them)
    ent = {"type": "Feature", "geometry": shapely.geometry.mapping(box(102.7, 25.0)), "properties": {"name": "企业二"}}
    r = client.put("/collections/enterprises/items/1", json=ent, headers=editor)
    props = r.json()["properties"]
    assert (props["name"], props["park_id"], props["risk_grade"], props["synthetic"]) == ("企业二", None, None, False)
    # validated as on POST; an id other than the path's; an unknown id
    r = client.put("/collections/enterprises/items/1", json={**ent, "properties": {"name": "x", "park_id": 9}},
                   headers=editor)
    assert r.status_code == 400 and "park_id 9: no such row" in r.json()["rejections"][0]["reason"]
    r = client.put("/collections/enterprises/items/1", json={**ent, "id": 2}, headers=editor)
    assert r.status_code == 400 and "is not the path's 1" in r.json()["description"]
    assert client.put("/collections/enterprises/items/99", json=ent, headers=editor).status_code == 404
    assert client.get("/collections/enterprises/items/1", headers=editor).json()["properties"]["name"] == "企业二"


def inventory(engine, installation: int) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT name, quantity_t FROM installation_chemicals WHERE installation_id = :i ORDER BY name"),
            {"i": installation})]


def test_put_on_an_installation_replaces_its_chemicals(client, editor, clean):
    load(clean, "hazard_installations", frame(
        [{"name": "液氯储罐区", "unit_type": "storage", "chemicals": [{"name": "液氯", "quantity_t": 30},
                                                                   {"name": "液氨", "quantity_t": 20}]}],
        [box(102.7, 25.0)]))
    assert inventory(clean, 1) == [("液氨", 20.0), ("液氯", 30.0)]
    tank = {"type": "Feature", "geometry": shapely.geometry.mapping(box(102.7, 25.0)),
            "properties": {"name": "汽油罐区", "unit_type": "storage", "chemicals": [{"name": "汽油", "quantity_t": 500}]}}
    r = client.put("/collections/hazard_installations/items/1", json=tank, headers=editor)
    assert r.status_code == 200, r.text
    assert inventory(clean, 1) == [("汽油", 500.0)]
    # without chemicals the inventory stays (the features' GET does not give it back to a client)
    r = client.put("/collections/hazard_installations/items/1",
                   json={**tank, "properties": {"name": "汽油罐区二"}}, headers=editor)
    assert r.status_code == 200 and inventory(clean, 1) == [("汽油", 500.0)]
    # a bad inventory is rejected as an import rejects it
    bad = {**tank, "properties": {"name": "x", "chemicals": [{"name": "汽油", "quantity_t": -1}]}}
    r = client.put("/collections/hazard_installations/items/1", json=bad, headers=editor)
    assert r.status_code == 400 and "quantity_t must be >= 0" in r.json()["rejections"][0]["reason"]
    # POST writes the inventory as an import does
    r = client.post("/collections/hazard_installations/items", json=tank, headers=editor)
    assert r.status_code == 201 and inventory(clean, r.json()["id"]) == [("汽油", 500.0)]


def test_delete_is_refused_while_something_refers_to_the_feature(client, editor, clean):
    load(clean, "chemical_parks", frame([{"name": "园区"}], [box(102.7, 25.0, 0.01)]))
    load(clean, "enterprises", frame([{"name": "企业", "park_id": 1}], [box(102.7, 25.0)]))
    r = client.delete("/collections/chemical_parks/items/1", headers=editor)
    assert r.status_code == 409, r.text
    assert "1 enterprises (park_id)" in r.json()["description"] and "1 enterprises (park_id)" in r.json()["description_zh"]
    assert count(clean, "chemical_parks") == 1
    # a pond that has a sensor with readings; the sensor itself, for its readings (history)
    pond_with_open_alarm(clean, datetime.now(timezone.utc))
    with clean.connect() as conn:
        pond = conn.execute(text("SELECT id FROM tailings_ponds")).scalar()
        sensor = conn.execute(text("SELECT id FROM monitoring_sensors WHERE code = 'TP1-D1'")).scalar()
    r = client.delete(f"/collections/tailings_ponds/items/{pond}", headers=editor)
    assert r.status_code == 409 and "monitoring_sensors (asset_layer, asset_id)" in r.json()["description"]
    r = client.delete(f"/collections/monitoring_sensors/items/{sensor}", headers=editor)
    assert r.status_code == 409 and "3 monitoring_readings (sensor_id)" in r.json()["description"]
    assert count(clean, "monitoring_readings") == 3 and count(clean, "tailings_ponds") == 1


def test_delete_an_unreferenced_feature(client, editor, clean):
    load(clean, "chemical_parks", frame([{"name": "园区"}], [box(102.7, 25.0, 0.01)]))
    load(clean, "enterprises", frame([{"name": "企业", "park_id": 1}], [box(102.7, 25.0)]))
    before = version(client, editor, "enterprises")
    r = client.delete("/collections/enterprises/items/1", headers=editor)
    assert r.status_code == 204 and r.content == b""
    assert version(client, editor, "enterprises") > before
    assert client.get("/collections/enterprises/items/1", headers=editor).status_code == 404
    assert client.delete("/collections/enterprises/items/1", headers=editor).status_code == 404
    assert client.delete("/collections/chemical_parks/items/1", headers=editor).status_code == 204  # (now unreferenced)
    # an installation's grading and inventory do not hold it: they go with it (the next analysis redoes the grading)
    load(clean, "hazard_installations", frame([{"name": "罐区", "chemicals": [{"name": "液氯", "quantity_t": 30}]}],
                                              [box(102.7, 25.0)]))
    with clean.begin() as conn:
        run = conn.execute(text("INSERT INTO analysis_runs (analysis, input_versions) VALUES ('hazchem', '{}') "
                                "RETURNING id")).scalar()
        conn.execute(text("INSERT INTO installation_gradings (run_id, installation_id) VALUES (:r, 1)"), {"r": run})
    assert client.delete("/collections/hazard_installations/items/1", headers=editor).status_code == 204
    assert count(clean, "installation_gradings") == 0 and inventory(clean, 1) == []


def test_only_editors_and_admins_edit(client, clean, token):
    planner, admin = ({"Authorization": f"Bearer {token(role)}"} for role in ("planner", "admin"))
    for method, path, body in (("POST", "/collections/receptors/items", SCHOOL),
                               ("PUT", "/collections/receptors/items/1", SCHOOL),
                               ("DELETE", "/collections/receptors/items/1", None)):
        assert client.request(method, path, json=body).status_code == 401
        assert client.request(method, path, json=body, headers=planner).status_code == 403
    # the role is checked before the body is read: a body that is not JSON is still a 401
    r = client.post("/collections/receptors/items", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 401
    assert client.post("/collections/receptors/items", json=SCHOOL, headers=admin).status_code == 201
    assert client.post("/collections/receptors/items", json=[SCHOOL], headers=admin).status_code == 400
    assert client.post("/collections/receptors/items", json={"type": "Point"}, headers=admin).status_code == 400
    assert client.post("/collections/nope/items", json=SCHOOL, headers=admin).status_code == 404


def test_derived_layers_are_not_edited(client, editor):
    for method, path in (("POST", "/collections/blackspots/items"), ("PUT", "/collections/blackspots/items/1"),
                         ("DELETE", "/collections/blackspots/items/1")):
        r = client.request(method, path, json=SCHOOL, headers=editor)
        assert r.status_code == 405 and "riskmap analyze" in r.json()["description"], r.text
        assert r.json()["description_zh"] and r.headers["allow"] == "GET"


def test_conformance_names_part_4(client):
    assert "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete" in \
        client.get("/conformance").json()["conformsTo"]
