"""OGC API Features over the real PostGIS: paging, bbox, filters, access control, errors."""

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from layers import registry
from layers.io import validate, write
from layers.settings import StoreSettings


@pytest.fixture
def receptors(clean):
    """25 receptors on a diagonal, every 5th a hospital, one emergency resource with contacts."""
    frame = gpd.GeoDataFrame(
        {"name": [f"R{i}" for i in range(25)],
         "kind": ["hospital" if i % 5 == 0 else "school" for i in range(25)],
         "people": list(range(25))},
        geometry=[shapely.Point(102.5 + i * 0.01, 25.0 + i * 0.01) for i in range(25)], crs="EPSG:4326")
    area = StoreSettings().area_bbox
    res = gpd.GeoDataFrame({"name": ["消防站一"], "kind": ["fire_station"], "contact_phone": ["0871-0000000"]},
                           geometry=[shapely.Point(102.7, 25.0)], crs="EPSG:4326")
    with clean.begin() as conn:
        write(conn, registry.get("receptors"), validate(registry.get("receptors"), frame, area)[0])
        write(conn, registry.get("emergency_resources"),
              validate(registry.get("emergency_resources"), res, area)[0])
    return clean


def test_landing_conformance_collections(client, receptors):
    landing = client.get("/", headers={"Accept": "application/json"}).json()
    assert {"data", "conformance", "service-desc"} <= {l["rel"] for l in landing["links"]}
    assert "ogcapi-features-1/1.0/conf/geojson" in " ".join(client.get("/conformance").json()["conformsTo"])
    ids = [c["id"] for c in client.get("/collections").json()["collections"]]
    assert "receptors" in ids and "emergency_resources" not in ids  # restricted layer hidden from anonymous
    coll = client.get("/collections/receptors").json()
    assert coll["extent"]["spatial"]["bbox"][0] == pytest.approx([102.5, 25.0, 102.74, 25.24])


def test_paging_with_next_links(client, receptors):
    r = client.get("/collections/receptors/items?limit=10&offset=20")
    assert r.headers["content-type"].startswith("application/geo+json")
    body = r.json()
    assert body["numberMatched"] == 25 and body["numberReturned"] == 5
    assert [f["properties"]["name"] for f in body["features"]] == [f"R{i}" for i in range(20, 25)]
    assert "next" not in {l["rel"] for l in body["links"]}
    first = client.get("/collections/receptors/items?limit=10").json()
    nxt = next(l["href"] for l in first["links"] if l["rel"] == "next")
    assert "offset=10" in nxt and "limit=10" in nxt


def test_bbox_and_property_filters(client, receptors):
    body = client.get("/collections/receptors/items?bbox=102.545,25.045,102.605,25.105").json()
    assert [f["properties"]["name"] for f in body["features"]] == ["R5", "R6", "R7", "R8", "R9", "R10"]
    body = client.get("/collections/receptors/items?kind=hospital").json()
    assert body["numberMatched"] == 5
    body = client.get("/collections/receptors/items?kind=hospital&bbox=102.5,25.0,102.55,25.05").json()
    assert [f["properties"]["name"] for f in body["features"]] == ["R0", "R5"]


@pytest.mark.parametrize("url, status, words", [
    ("/collections/nope/items", 404, "unknown layer"),
    ("/collections/receptors/items?bbox=1,2,3", 400, "4 numbers"),
    ("/collections/receptors/items?bbox=a,b,c,d", 400, "four numbers"),
    ("/collections/receptors/items?bbox=200,0,201,1", 400, "lon/lat"),
    ("/collections/receptors/items?limit=100000000", 400, "at most"),
    ("/collections/receptors/items?limit=-1", 400, "limit"),
    ("/collections/receptors/items?kind=spaceship", 400, "not a valid code"),
    ("/collections/receptors/items?colour=red", 400, "unknown property"),
    ("/collections/receptors/items?people=many", 400, "people"),
    ("/collections/receptors/items/999999", 404, "no feature"),
    ("/collections/receptors/items/1;DROP", 404, "no feature"),
    ("/collections/receptors/items/" + "9" * 5000, 404, "no feature"),  # (int() refuses it: it was a 500)
    ("/collections/'%3B--/items", 404, "unknown layer"),
])
def test_bad_requests_get_a_clear_4xx(client, receptors, url, status, words):
    r = client.get(url)
    assert r.status_code == status, r.text
    assert words in r.json()["description"]


def test_restricted_layer_needs_a_token_and_sensitive_fields_a_role(client, receptors, token):
    r = client.get("/collections/emergency_resources/items")
    assert r.status_code == 401 and "restricted" in r.json()["description"]
    assert client.get("/collections/emergency_resources/items",
                      headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    planner = {"Authorization": f"Bearer {token('planner')}"}
    props = client.get("/collections/emergency_resources/items", headers=planner).json()["features"][0]["properties"]
    assert props["name"] == "消防站一" and "contact_phone" not in props
    emergency = {"Authorization": f"Bearer {token('emergency')}"}
    props = client.get("/collections/emergency_resources/items", headers=emergency).json()["features"][0]["properties"]
    assert props["contact_phone"] == "0871-0000000"
    # a filter on a field the role may not see is refused, not silently applied
    r = client.get("/collections/emergency_resources/items?contact_phone=0871-0000000", headers=planner)
    assert r.status_code == 400
    layers = {l["id"] for l in client.get("/api/layers").json()["layers"]}
    assert "emergency_resources" not in layers and "receptors" in layers
    assert "emergency_resources" in {l["id"] for l in client.get("/api/layers", headers=planner).json()["layers"]}


def test_item_and_version_bump(client, receptors):
    with receptors.connect() as conn:
        v0 = conn.execute(text("SELECT version FROM layer_versions WHERE layer='receptors'")).scalar_one()
    item = client.get("/collections/receptors/items/3").json()
    assert item["properties"]["name"] == "R2" and item["geometry"]["coordinates"] == [102.52, 25.02]
    with receptors.begin() as conn:
        conn.execute(text("UPDATE receptors SET people = 1 WHERE id = 3"))
        v1 = conn.execute(text("SELECT version FROM layer_versions WHERE layer='receptors'")).scalar_one()
    assert v1 == v0 + 1



def test_public_analysis_layers_hide_names_from_restricted_layers():
    # tailings_downstream is public (people downstream of a dam), as the receptors it names; the installations
    # it names are not: their names are for staff only
    spec = registry.get("tailings_downstream")
    anon, planner = ({f.name for f in spec.fields_for(role)} for role in ("anonymous", "planner"))
    assert spec.public and registry.get("receptors").public and not registry.get("hazard_installations").public
    assert {"people", "receptor_names"} <= anon and "installation_names" not in anon
    assert "installation_names" in planner


def test_whole_numbers_beyond_the_column_are_400(client, receptors):
    for value in ("99999999999999999999", "2147483648"):  # (receptors.people is a PostgreSQL integer)
        r = client.get("/collections/receptors/items", params={"people": value})
        assert r.status_code == 400 and "out of range" in r.json()["description"], r.text
    assert client.get("/collections/receptors/items", params={"people": "2147483647"}).json()["features"] == []
    r = client.get("/emergency/nearby", params={"lon": 102.71, "lat": 25.04, "min_capacity": 10**20})
    assert r.status_code in (400, 401) and "Traceback" not in r.text


def test_unknown_paths_and_methods_answer_in_the_same_shape(client):
    r = client.get("/no/such/path")
    assert r.status_code == 404 and r.json()["code"] == "NotFound" and "/no/such/path" in r.json()["description"]
    r = client.delete("/collections")
    assert r.status_code == 405 and r.json()["code"] == "MethodNotAllowed"


def test_errors_a_user_meets_are_said_in_chinese_too(client, receptors, token):
    """The page shows description_zh before the English description (bureau staff read Chinese)."""
    r = client.get("/no/such/path")
    assert r.json()["description_zh"] == "没有这个地址 /no/such/path（见 /docs）"
    r = client.get("/collections/emergency_resources/items")
    assert r.status_code == 401 and r.json()["description_zh"] == "图层 'emergency_resources' 受限：请用令牌登录"
    r = client.get("/collections/receptors/items/0")
    assert r.status_code == 404 and r.json()["description_zh"] == "图层 receptors 中没有要素 0"
    planner = {"Authorization": f"Bearer {token('planner')}"}
    r = client.post("/routes/rules/reset", headers=planner)
    assert r.status_code == 403 and r.json()["description_zh"] == "角色 planner 无此权限（需要 editor）"
    schema = client.get("/openapi.json").json()["components"]["schemas"]["Error"]
    assert set(schema["properties"]) == {"code", "description", "description_zh"} and schema["required"] == [
        "code", "description"]


def test_a_body_that_is_not_json_is_a_400_saying_why(client, token):
    """Found by tests/api/test_fuzz.py: broken JSON read "0: JSON decode error" (the offset taken for a field), JSON
    that is not UTF-8 FastAPI's bare "There was an error parsing the body"."""
    editor = {"Authorization": f"Bearer {token('editor')}", "Content-Type": "application/json"}
    r = client.post("/analysis/safety-rules", content=b'{"installation_kind": ', headers=editor)
    assert r.status_code == 400 and r.json() == {"code": "InvalidParameter", "description": (
        "the request body is not valid JSON: Expecting value: character 22"), "description_zh": "请求体不是有效的 JSON（第 22 个字符处）"}
    r = client.post("/analysis/safety-rules", content=b'{"basis": "\xff"}', headers=editor)
    assert r.status_code == 400 and r.json()["code"] == "HTTPError"
    assert r.json()["description"].startswith("There was an error parsing the body: 'utf-8' codec can't decode byte 0xff")


def test_a_bad_field_is_said_in_chinese_too(client, token):
    """(QA: every bad parameter or body field read only "参数或请求体有误（详见英文说明）" in Chinese.)"""
    editor = {"Authorization": f"Bearer {token('editor')}"}
    rule = {"installation_kind": "toxic", "receptor_class": "important", "distance_m": -5, "colour": 1}
    r = client.post("/analysis/safety-rules", json=rule, headers=editor)
    assert r.status_code == 400 and r.json()["description_zh"] == "distance_m 应大于 0；缺少 basis；不接受字段 colour"
    r = client.get("/collections/receptors/items?limit=0", headers=editor)
    assert r.status_code == 400 and r.json()["description_zh"] == "limit 应不小于 1"
    r = client.get("/collections/receptors/items?limit=ten", headers=editor)
    assert r.status_code == 400 and r.json()["description_zh"] == "limit 应为整数"


def test_a_body_that_cannot_be_parsed_is_refused_by_role_first(client, token):
    """(QA: FastAPI parses the body before the role check, so a caller without the role got 400 for broken JSON or
    multipart and 401/403 for any other body.)"""
    broken = {"Content-Type": "application/json"}
    r = client.post("/analysis/safety-rules", content=b"{bad", headers=broken)
    assert r.status_code == 401 and r.json()["code"] == "Unauthorized", r.text
    r = client.post("/routes/rules", content=b"{bad", headers={**broken, "Authorization": f"Bearer {token('planner')}"})
    assert r.status_code == 403 and r.json()["code"] == "Forbidden", r.text
    r = client.post("/routes/check/gpx", content=b"garbage", headers={"Content-Type": "multipart/form-data; boundary=x"})
    assert r.status_code == 401, r.text
    r = client.post("/routes/rules", content=b"{bad", headers={**broken, "Authorization": "Bearer not-a-token"})
    assert r.status_code == 401 and r.json()["description"] == "invalid or revoked token"
    r = client.post("/routes/rules", content=b"{bad", headers={**broken, "Authorization": f"Bearer {token('editor')}"})
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"  # (the role held: the body's fault)


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/analysis/safety-rules", b'{"installation_kind": "toxic", "receptor_class": "important", "basis": "x", '
                                       b'"distance_m": NaN}'),
    ("POST", "/emergency/incident", b'{"lon": 102.7, "lat": 25.0, "chemical": "1017", "wind_speed_ms": NaN}'),
    ("POST", "/emergency/incident", b'{"lon": 102.7, "lat": 25.0, "chemical": "1017", "wind_from_deg": NaN}'),
    ("PUT", "/monitoring/thresholds", b'{"kind": "pond_level", "red": 1, "rate_window_h": NaN}'),
    ("GET", "/emergency/nearby?lon=102.7&lat=25.0&radius_m=NaN", None),
    ("GET", "/monitoring/assets/tailings_ponds/1?hours=NaN", None),
])
def test_a_number_that_is_not_finite_is_refused_as_such(client, token, method, path, body):
    """(NaN, which Python's JSON and float() read, failed the bounds instead: "should be less than or equal to
    20000".)"""
    headers = {"Authorization": f"Bearer {token('admin')}", "Content-Type": "application/json"}
    r = client.request(method, path, content=body, headers=headers)
    assert r.status_code == 400 and "Input should be a finite number" in r.json()["description"], r.text


def test_another_crs_or_format_is_refused_not_ignored(client, receptors):
    crs84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
    ok = client.get("/collections/receptors/items", params={"crs": crs84, "bbox-crs": crs84, "f": "json"})
    assert ok.status_code == 200 and ok.json()["numberReturned"] == 25
    for params, message in (({"crs": "http://www.opengis.net/def/crs/EPSG/0/3857"}, "crs"),
                            ({"bbox-crs": "EPSG:4490"}, "bbox-crs"), ({"f": "html"}, "GeoJSON"),
                            ({"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}, "lon/lat")):  # (lat/lon axes)
        r = client.get("/collections/receptors/items", params=params)
        assert r.status_code == 400 and message in r.json()["description"], r.text


def test_values_the_database_cannot_hold_are_400(client, receptors):
    for path, params in (("/collections/receptors/items", {"name": "a\x00b"}), ("/api/search", {"q": "a\x00"}),
                         ("/collections/receptors/items/999999999999", {})):
        r = client.get(path, params=params)
        assert r.status_code in (400, 404) and r.json()["code"] in ("InvalidValue", "DataError", "NotFound"), r.text
    for fid in ("999999999999", "²", "١٢"):  # (beyond an integer; digits that are not 0-9)
        assert client.get(f"/collections/receptors/items/{fid}").status_code == 404


def test_a_body_over_the_limit_is_413_before_it_is_read(client):
    from api.app import MAX_REQUEST_BYTES

    r = client.post("/analysis/safety-rules", content=b"x" * (MAX_REQUEST_BYTES + 1),
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge"


def test_head_top_ponds_are_told_apart_on_the_map(client):
    """(QA: ponds were coloured by 等别 only; 头顶库 could be found only by clicking each.) A flag's codes are keyed as
    the page reads a feature's value, String(true) = "true"."""
    ponds = next(l for l in client.get("/api/layers").json()["layers"] if l["id"] == "tailings_ponds")
    assert ponds["style"]["by"] == {"field": "headtop", "values": {"true": "#d81b60", "false": "#a1887f"}}
    headtop = next(f for f in ponds["fields"] if f["name"] == "headtop")
    assert headtop["codes"]["true"] == {"zh": "头顶库", "en": "Head-top pond"}
    assert [i["label_en"] for i in ponds["legend"]] == ["Head-top pond", "Not head-top", "Not analysed"]
