"""Vector tiles from the registry: content, fields per role, clustering, cap, cache/ETag, GDAL."""

import logging
import math
import subprocess

import geopandas as gpd
import mapbox_vector_tile
import mercantile
import pytest
import shapely

from conftest import eventually, load, throwaway_cluster
from fastapi.testclient import TestClient
from sqlalchemy import event, text

from api.app import create_app
from layers.db import make_engine, migrate






@pytest.fixture
def data(clean):
    pts = [shapely.Point(102.70 + (i % 30) * 0.0005, 25.03 + (i // 30) * 0.0005) for i in range(600)]
    load(clean, "accidents", gpd.GeoDataFrame(
        {"occurred_at": ["2024-05-01T08:00:00"] * 600, "kind": ["collision"] * 600,
         "deaths": [1 if i < 10 else 0 for i in range(600)], "injuries": [2] * 600}, geometry=pts, crs=4326))
    load(clean, "chemical_parks", gpd.GeoDataFrame(
        {"name": ["园区"], "risk_grade": ["orange"]},
        geometry=[shapely.box(102.69, 25.02, 102.73, 25.06)], crs=4326))
    load(clean, "emergency_resources", gpd.GeoDataFrame(
        {"name": ["消防站"], "kind": ["fire_station"], "contact_phone": ["110"]},
        geometry=[shapely.Point(102.71, 25.04)], crs=4326))
    return clean


def xyz(z, lon=102.71, lat=25.04):
    t = mercantile.tile(lon, lat, z)
    return t.z, t.x, t.y


def decode(resp):
    body = resp.content
    return mapbox_vector_tile.decode(body)


def test_layer_tile_features_ids_and_fields(client, data):
    z, x, y = xyz(14)
    r = client.get(f"/tiles/chemical_parks/{z}/{x}/{y}.pbf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = decode(r)["chemical_parks"]
    assert len(layer["features"]) == 1
    feat = layer["features"][0]
    assert feat["id"] == 1 and feat["properties"]["risk_grade"] == "orange" and feat["properties"]["name"] == "园区"


def test_points_cluster_at_low_zoom_with_counts_and_are_points_at_high_zoom(client, data):
    z, x, y = xyz(10)
    feats = decode(client.get(f"/tiles/accidents/{z}/{x}/{y}.pbf"))["accidents"]["features"]
    assert sum(f["properties"]["cluster_count"] for f in feats) == 600
    assert sum(f["properties"]["deaths"] for f in feats) == 10
    assert len(feats) < 20
    # clusters lie a cell of 48 screen pixels apart, 16 tile units a pixel (QA: the cell was 48 tile units, 3 px:
    # 1,234 clusters a tile at z9 hid the black spots)
    from layers.tiles import CLUSTER_PX, EXTENT, TILE_PX

    pts = [f["geometry"]["coordinates"] for f in feats]
    assert min(math.dist(a, b) for i, a in enumerate(pts) for b in pts[:i]) >= CLUSTER_PX * EXTENT / TILE_PX - 1
    # a cluster of several carries an id no feature has (ids are int4); the one-point cluster of a lone
    # accident carries its table id, which /collections/accidents/items/{id} takes (the map opens it)
    assert all(f["id"] >= 2**31 for f in feats)
    load(data, "accidents", gpd.GeoDataFrame(
        {"occurred_at": ["2024-05-02T08:00:00"], "kind": ["collision"]}, geometry=[shapely.Point(102.95, 25.20)],
        crs=4326))
    z, x, y = xyz(10, 102.95, 25.20)
    (lone,) = [f for f in decode(client.get(f"/tiles/accidents/{z}/{x}/{y}.pbf"))["accidents"]["features"]
               if f["properties"]["cluster_count"] == 1]
    assert lone["id"] == 601 and client.get("/collections/accidents/items/601").json()["properties"]["occurred_at"] \
        .startswith("2024-05-02")
    z, x, y = xyz(16, 102.7025, 25.0325)
    feats = decode(client.get(f"/tiles/accidents/{z}/{x}/{y}.pbf"))["accidents"]["features"]
    assert feats and all("cluster_count" not in f["properties"] for f in feats)
    assert all(f["properties"]["kind"] == "collision" for f in feats)


def test_restricted_layer_and_fields_follow_the_role(client, data, token):
    z, x, y = xyz(14)
    assert client.get(f"/tiles/emergency_resources/{z}/{x}/{y}.pbf").status_code == 401
    for bad in ("Basic abc", "Bearer ", "Bearer not-a-token"):  # the fast path leaves these to the route
        r = client.get(f"/tiles/chemical_parks/{z}/{x}/{y}.pbf", headers={"Authorization": bad})
        assert r.status_code == 401 and r.json()["code"] == "Unauthorized", bad
    anon = decode(client.get(f"/tiles/onemap/{z}/{x}/{y}.pbf"))
    assert "emergency_resources" not in anon and "chemical_parks" in anon
    planner = {"Authorization": f"Bearer {token('planner')}"}
    tile = decode(client.get(f"/tiles/onemap/{z}/{x}/{y}.pbf", headers=planner))
    assert "contact_phone" not in tile["emergency_resources"]["features"][0]["properties"]
    emergency = {"Authorization": f"Bearer {token('emergency')}"}
    tile = decode(client.get(f"/tiles/onemap/{z}/{x}/{y}.pbf", headers=emergency))
    assert tile["emergency_resources"]["features"][0]["properties"]["contact_phone"] == "110"
    # two Authorization headers: the fast path reads the first, as the routes do (it read the last: a token it knew
    # opened a tile that the same request was refused on /collections)
    twice = [("Authorization", "Bearer not-a-token"), ("Authorization", emergency["Authorization"])]
    assert client.get(f"/tiles/emergency_resources/{z}/{x}/{y}.pbf", headers=twice).status_code == 401
    assert client.get("/collections/emergency_resources/items", headers=twice).status_code == 401


def test_etag_304_and_no_stale_tile_after_edit(client, data):
    z, x, y = xyz(14)
    url = f"/tiles/chemical_parks/{z}/{x}/{y}.pbf"
    first = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert first.headers.get("content-encoding") == "gzip"
    etag = first.headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    for weak in (f"W/{etag}", f'"other", {etag}', "*"):  # weak comparison over a list (RFC 9110 13.1.2)
        assert client.get(url, headers={"If-None-Match": weak, "Accept-Encoding": "gzip"}).status_code == 304, weak
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.headers["etag"] != etag  # another coding, another tag
    assert client.get(url, headers={"If-None-Match": etag, "Accept-Encoding": "identity"}).status_code == 200
    with data.begin() as conn:
        conn.execute(text("UPDATE chemical_parks SET risk_grade = 'red'"))
        version = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'chemical_parks'")).scalar_one()
    # a write made elsewhere reaches the server when its commit is announced (NOTIFY)
    assert eventually(lambda: client.app.state.changes.remembered().get("chemical_parks") == version)
    after = client.get(url, headers={"If-None-Match": etag})
    assert after.status_code == 200 and after.headers["etag"] != etag
    assert decode(after)["chemical_parks"]["features"][0]["properties"]["risk_grade"] == "red"
    metrics = client.get("/metrics").text
    assert 'riskmap_tile_cache_total{result="hit"}' in metrics
    assert "riskmap_http_request_seconds_bucket" in metrics and "riskmap_db_pool_connections" in metrics


def test_empty_tile_is_204_and_bad_tile_is_404(client, data):
    assert client.get("/tiles/chemical_parks/14/0/0.pbf").status_code == 204
    assert client.get("/tiles/chemical_parks/3/9/9.pbf").status_code == 404
    # named as the URL gave them: z/x/y, or OGC tileMatrix/tileRow/tileCol
    assert "no tile 3/9/0 (zoom" in client.get("/tiles/chemical_parks/3/9/0.pbf").json()["description"]
    r = client.get("/collections/chemical_parks/tiles/WebMercatorQuad/3/9/0")
    assert r.status_code == 404 and "no tile 3/9/0 (tileMatrix" in r.json()["description"]
    assert client.get("/tiles/nolayer/3/1/1.pbf").status_code == 404


@pytest.mark.parametrize("path", ["/tiles/onemap/{n}/0/0.pbf", "/tiles/accidents/1/{n}/0.pbf",
                                  "/collections/accidents/tiles/WebMercatorQuad/1/0/{n}"])
@pytest.mark.parametrize("n", ["9" * 5000, "\u0663"])
def test_odd_tile_numbers_go_to_the_route_without_an_error(client, data, caplog, path, n):
    """Numbers of thousands of digits (int() refuses them) or in another script's digits (the fast path served
    U+0663 as tile 3): the tile fast path leaves them to the route (it used to log an error with a traceback for
    the first), which answers as for any bad tile number."""
    r = client.get(path.format(n=n))
    assert r.status_code in (400, 404), r.text
    assert r.json()["code"] in ("InvalidParameter", "NotFound")
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR], caplog.text


def test_feature_cap_is_announced_in_the_tile(client, data, monkeypatch):
    from api.routers import tiles

    monkeypatch.setattr(tiles, "FEATURE_CAP", 50)
    z, x, y = xyz(16, 102.7025, 25.0325)
    r = client.get(f"/tiles/accidents/{z}/{x}/{y}.pbf")
    tile = decode(r)
    assert len(tile["accidents"]["features"]) == 50
    assert tile["_truncated"]["features"][0]["properties"] == {"layers": "accidents", "cap": 50}
    assert r.headers["x-tile-truncated"] == "accidents"


def test_ogc_tiles_path_is_z_row_col_and_tilejson(client, data):
    z, x, y = xyz(14)
    a = client.get(f"/tiles/chemical_parks/{z}/{x}/{y}.pbf").content
    assert client.get(f"/collections/chemical_parks/tiles/WebMercatorQuad/{z}/{y}/{x}").content == a
    tj = client.get("/tiles/chemical_parks.json").json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/tiles/chemical_parks/{z}/{x}/{y}.pbf")
    assert tj["vector_layers"][0]["fields"]["risk_grade"] == "String"
    assert tj["bounds"] == pytest.approx([102.69, 25.02, 102.73, 25.06])
    one = client.get("/tiles/onemap.json").json()
    assert {"chemical_parks", "accidents"} <= {v["id"] for v in one["vector_layers"]}
    assert "emergency_resources" not in {v["id"] for v in one["vector_layers"]}


def test_gdal_mvt_driver_reads_a_served_tile(client, data, tmp_path):
    z, x, y = xyz(14)
    body = client.get(f"/tiles/onemap/{z}/{x}/{y}.pbf").content
    path = tmp_path / f"{y}.pbf"
    path.write_bytes(body)
    out = subprocess.run(["ogrinfo", "-ro", "-al", "-oo", f"Z={z}", "-oo", f"X={x}", "-oo", f"Y={y}", str(path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Layer name: chemical_parks" in out.stdout and "Layer name: accidents" in out.stdout
    assert "risk_grade (String) = orange" in out.stdout


def test_warm_tile_is_served_without_a_database_round_trip(client, data, token):
    z, x, y = xyz(14)
    emergency = {"Authorization": f"Bearer {token('emergency')}"}
    for headers in ({}, emergency):
        url = f"/tiles/onemap/{z}/{x}/{y}.pbf"
        first = client.get(url, headers=headers)
        assert eventually(client.app.state.changes.settled)  # (the fixtures' own writes are announced)
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(client.app.state.engine, "before_cursor_execute", listener)
        pool_requests = client.app.state.tile_pool.checkouts
        try:
            again = client.get(url, headers=headers)
        finally:
            event.remove(client.app.state.engine, "before_cursor_execute", listener)
        assert again.status_code == 200 and again.content == first.content
        assert again.headers["etag"] == first.headers["etag"]
        assert statements == [] and client.app.state.tile_pool.checkouts == pool_requests
    assert "emergency_resources" in decode(again)  # (the token's role, remembered from the first request)


def test_a_revoked_token_stops_opening_tiles(client, data, token, engine):
    from layers.users import remove_user

    z, x, y = xyz(14)
    url = f"/tiles/emergency_resources/{z}/{x}/{y}.pbf"
    headers = {"Authorization": f"Bearer {token('emergency', 'duty-officer')}"}
    assert client.get(url, headers=headers).status_code == 200
    assert client.get(url, headers=headers).status_code == 200  # now from memory
    with engine.begin() as conn:
        remove_user(conn, "duty-officer")
    assert eventually(lambda: client.get(url, headers=headers).status_code == 401)


def test_own_write_is_seen_by_the_next_request(client, data, token):
    editor = {"Authorization": f"Bearer {token('editor')}"}
    with client.app.state.engine.connect() as conn:
        before = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'safety_rules'")).scalar_one()
    rule = {"installation_kind": "toxic", "level": 1, "receptor_class": "high_sensitive", "distance_m": 1500,
            "basis": "地方规定（测试） / local rule (test)", "assumption": False}
    refreshes = []
    listener = lambda *args: refreshes.append(args[2]) if args[2].startswith("SELECT layer, version") else None  # noqa: E731
    event.listen(client.app.state.engine, "before_cursor_execute", listener)
    try:
        assert client.post("/analysis/safety-rules", headers=editor, json=rule).status_code == 201
        assert len(refreshes) == 1
        assert client.post("/analysis/siting-check", headers=editor, json={}).status_code == 400
        assert len(refreshes) == 1  # a computing POST (marked reads_only) refreshes nothing
    finally:
        event.remove(client.app.state.engine, "before_cursor_execute", listener)
    with client.app.state.engine.connect() as conn:
        now = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'safety_rules'")).scalar_one()
    assert now > before and client.app.state.changes.remembered()["safety_rules"] == now


def test_tiles_follow_the_database_through_a_restart():
    cluster = throwaway_cluster()
    try:
        migrate(cluster.url())
        engine = make_engine(cluster.url())
        with TestClient(create_app(cluster.url())) as client:
            assert client.app.state.changes.live
            url = "/tiles/chemical_parks/14/12866/7014.pbf"
            assert client.get(url).status_code == 204
            cluster.stop()
            r = client.get(url)
            assert r.status_code == 503 and "unavailable" in r.json()["description"]
            cluster.start()
            load(engine, "chemical_parks", gpd.GeoDataFrame(
                {"name": ["园区"], "risk_grade": ["orange"]}, geometry=[shapely.box(102.69, 25.02, 102.73, 25.06)],
                crs=4326))
            assert eventually(lambda: client.get(url).status_code == 200)
            assert eventually(lambda: client.app.state.changes.live)
        engine.dispose()
    finally:
        cluster.destroy()
