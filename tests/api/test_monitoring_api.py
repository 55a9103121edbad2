"""Monitoring API: roles, JSON/CSV ingest with per-reading rejections, alarms, acknowledgement, the
asset panel data, thresholds, and the map layer of current levels."""

from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from gis import monitoring
from layers import registry
from layers.io import validate, write
from layers.settings import LOCAL_TZ, StoreSettings

NOW = datetime.now(timezone.utc).replace(microsecond=0)


def at(minutes_ago):
    return (NOW - timedelta(minutes=minutes_ago)).isoformat()


@pytest.fixture
def site(clean):
    """A pond and an installation with the simulation's sensor layout (TP1-D1 ..., HI1-G1 ...)."""
    area = StoreSettings().area_bbox
    with clean.begin() as conn:
        conn.execute(text("TRUNCATE monitoring_alarms, monitoring_alarm_events, monitoring_daily CASCADE"))
        conn.execute(text("DELETE FROM monitoring_thresholds WHERE asset_layer IS NOT NULL"))
        for layer, name in (("tailings_ponds", "测试尾矿库"), ("hazard_installations", "测试罐区")):
            spec = registry.get(layer)
            frame = gpd.GeoDataFrame({"name": [name]}, geometry=[shapely.box(102.7, 25.0, 102.71, 25.01)], crs=4326)
            write(conn, spec, validate(spec, frame, area)[0])
        monitoring.ensure_demo_sensors(conn)
    return clean


def test_roles_and_anonymous(client, site, token):
    body = {"readings": [{"sensor": "TP1-D1", "time": at(5), "value": 10, "unit": "mm"}]}
    assert client.post("/monitoring/readings", json=body).status_code == 401
    assert client.get("/monitoring/alarms").status_code == 401
    assert client.get("/monitoring/assets/tailings_ponds/1").status_code == 401
    assert client.get("/collections/monitored_assets/items").status_code == 401
    assert client.get("/monitoring/kinds").status_code == 200
    planner = {"Authorization": f"Bearer {token('planner')}"}
    assert client.post("/monitoring/readings", json=body, headers=planner).status_code == 403
    assert client.get("/monitoring/alarms", headers=planner).status_code == 200
    assert client.post("/monitoring/alarms/1/ack", headers=planner).status_code == 403


def test_acknowledged_once_per_level(client, site, token):
    """A second acknowledgement is refused (409) and keeps the first; an escalation needs a new one."""
    editor, emergency = ({"Authorization": f"Bearer {token(r)}"} for r in ("editor", "emergency"))
    def post(*readings):
        body = {"readings": [{"sensor": "TP1-D1", "time": at(m), "value": v, "unit": "mm"} for m, v in readings]}
        return [a["event"] for a in client.post("/monitoring/readings", json=body, headers=editor).json()["alarms"]]

    assert post((15, 20), (10, 55), (8, 60)) == ["open"]
    alarm_id = client.get("/monitoring/alarms", headers=emergency).json()["alarms"][0]["id"]
    assert client.post(f"/monitoring/alarms/{alarm_id}/ack", headers=emergency).json()["acknowledged_by"] == "test-emergency"
    again = client.post(f"/monitoring/alarms/{alarm_id}/ack", headers=editor)
    assert again.status_code == 409 and "already acknowledged by test-emergency" in again.json()["description"]
    detail = client.get(f"/monitoring/alarms/{alarm_id}", headers=editor).json()
    assert detail["acknowledged_by"] == "test-emergency" and [h["event"] for h in detail["history"]] == ["open", "ack"]
    assert post((5, 125)) == ["escalate"]
    detail = client.get(f"/monitoring/alarms/{alarm_id}", headers=editor).json()
    assert detail["level"] == "red" and detail["acknowledged_by"] is None and detail["acknowledged_at"] is None
    acked = client.post(f"/monitoring/alarms/{alarm_id}/ack", headers=editor).json()
    assert acked["acknowledged_by"] == "test-editor"
    assert [(h["event"], h["level"], h["user_name"]) for h in acked["history"]] == [
        ("open", "yellow", None), ("ack", "yellow", "test-emergency"), ("escalate", "red", None),
        ("ack", "red", "test-editor")]


def test_ingest_json_csv_and_rejections(client, site, token):
    editor = {"Authorization": f"Bearer {token('editor')}"}
    body = {"readings": [
        {"sensor": "TP1-D1", "time": at(20), "value": 10, "unit": "mm"},
        {"sensor": "TP1-D1", "time": at(19), "value": 1.1, "unit": "cm"},
        {"sensor": "TP9-D1", "time": at(18), "value": 10, "unit": "mm"},
        {"sensor": "TP1-D1", "time": (NOW + timedelta(hours=2)).isoformat(), "value": 10, "unit": "mm"},
        {"sensor": "TP1-P1", "time": at(18), "value": 7, "unit": "mm/s"},
        {"sensor": "TP1-P1", "time": at(18), "value": "NaN", "unit": "m"}]}
    res = client.post("/monitoring/readings", json=body, headers=editor)
    assert res.status_code == 200
    out = res.json()
    assert out["accepted"] == 2 and out["stored"] == 2
    assert [(r["index"], r["sensor"]) for r in out["rejected"]] == [(2, "TP9-D1"), (3, "TP1-D1"), (4, "TP1-P1"),
                                                                    (5, "TP1-P1")]
    nothing = client.post("/monitoring/readings", json={"readings": body["readings"][2:]}, headers=editor)
    assert nothing.status_code == 422            # nothing acceptable: an error like any other, with the details
    assert nothing.json()["code"] == "ReadingsRejected" and nothing.json()["description"] == (
        "none of the 4 readings was accepted (reading 0: unknown sensor 'TP9-D1'); see rejected")
    assert [r["index"] for r in nothing.json()["rejected"]] == [0, 1, 2, 3] and nothing.json()["received"] == 4
    assert client.post("/monitoring/readings", content=b"{not json", headers=editor |
                       {"Content-Type": "application/json"}).status_code == 400
    assert client.post("/monitoring/readings", json={"rows": []}, headers=editor).status_code == 400
    csv_body = f"sensor,time,value,unit\nTP1-D2,{at(10)},12.5,mm\nTP1-D2,{at(9)},abc,mm\n"
    res = client.post("/monitoring/readings", content=csv_body.encode(), headers=editor | {"Content-Type": "text/csv"})
    assert res.status_code == 200 and res.json()["stored"] == 1 and res.json()["rejected"][0]["index"] == 1
    res = client.post("/monitoring/readings", files={"file": ("r.csv", f"sensor,time,value,unit\nTP1-D3,{at(8)},3,mm\n")},
                      headers=editor)
    assert res.status_code == 200 and res.json()["stored"] == 1
    assert client.post("/monitoring/readings", content=b"a,b\n1,2\n", headers=editor |
                       {"Content-Type": "text/csv"}).status_code == 400
    # a CR in an unquoted field (was a 500: csv.Error) is a line end; a field the csv module refuses is a 400
    res = client.post("/monitoring/readings", content=f"sensor,time,value,unit\rTP1-D3,{at(7)},4,mm\rx\ry,z\r".encode(),
                      headers=editor | {"Content-Type": "text/csv"})
    assert res.status_code == 200 and res.json()["stored"] == 1 and len(res.json()["rejected"]) == 2
    res = client.post("/monitoring/readings", content=("sensor,time,value,unit\n" + "x" * 200_000).encode(),
                      headers=editor | {"Content-Type": "text/csv"})
    assert res.status_code == 400 and "field larger than field limit" in res.json()["description"]
    readings = client.get("/monitoring/sensors/TP1-D1/readings", headers=editor).json()
    assert readings["readings"] == [[at(20), 10.0], [at(19), 11.0]] and readings["unit"] == "mm"
    # bounds without an offset are Beijing time, as reading times are on upload
    half = (NOW - timedelta(minutes=19.5)).astimezone(LOCAL_TZ).replace(tzinfo=None).isoformat()
    later = client.get("/monitoring/sensors/TP1-D1/readings", params={"since": half}, headers=editor).json()
    assert later["readings"] == [[at(19), 11.0]]
    # a CSV sent as text/plain is read by its header; a body that is neither says how to send a CSV
    res = client.post("/monitoring/readings", content=f"sensor,time,value,unit\nTP1-D3,{at(6)},5,mm\n".encode(),
                      headers=editor | {"Content-Type": "text/plain"})
    assert res.status_code == 200 and res.json()["stored"] == 1
    res = client.post("/monitoring/readings", content=b"TP1-D3;5", headers=editor | {"Content-Type": "text/plain"})
    assert res.status_code == 400 and "text/csv" in res.json()["description"]


def test_alarm_visible_acknowledged_and_panel_data(client, site, token):
    editor = {"Authorization": f"Bearer {token('editor')}"}
    body = {"readings": [{"sensor": "TP1-D1", "time": at(m), "value": v, "unit": "mm"}
                         for m, v in ((15, 20), (10, 55), (5, 60), (2, 125))]}
    res = client.post("/monitoring/readings", json=body, headers=editor).json()
    assert [(a["event"], a["level"]) for a in res["alarms"]] == [("open", "yellow"), ("escalate", "red")]
    emergency = {"Authorization": f"Bearer {token('emergency')}"}
    listed = client.get("/monitoring/alarms", headers=emergency).json()["alarms"]
    assert len(listed) == 1 and listed[0]["level"] == "red" and listed[0]["item"] == "displacement"
    assert listed[0]["asset_name"] == "测试尾矿库" and listed[0]["item_zh"] == "坝体表面位移"
    alarm_id = listed[0]["id"]
    acked = client.post(f"/monitoring/alarms/{alarm_id}/ack", json={"note": "现场已核实"}, headers=emergency).json()
    assert acked["acknowledged_by"] == "test-emergency" and acked["history"][-1]["event"] == "ack"
    assert acked["history"][-1]["note"] == "现场已核实"
    assert client.post("/monitoring/alarms/999999/ack", headers=emergency).status_code == 404

    panel = client.get("/monitoring/assets/tailings_ponds/1?hours=1", headers=emergency).json()
    assert panel["alarm_level"] == "red" and len(panel["sensors"]) == 10 and len(panel["alarms"]) == 1
    d1 = next(s for s in panel["sensors"] if s["code"] == "TP1-D1")
    assert [v for _, v in d1["readings"]] == [20, 55, 60, 125] and d1["alarm_level"] == "red"
    assert d1["thresholds"]["red"] == 120 and d1["thresholds"]["rates_per_day"]["red"] == 20
    assert client.get("/monitoring/assets/hazard_installations/77", headers=emergency).status_code == 404
    # an asset without sensors is no error (the panel asks for every one it opens; a 404 was a console error)
    with site.begin() as conn:
        spec = registry.get("hazard_installations")
        frame = gpd.GeoDataFrame({"name": ["无监测罐区"]}, geometry=[shapely.box(102.72, 25.0, 102.73, 25.01)], crs=4326)
        write(conn, spec, validate(spec, frame, StoreSettings().area_bbox)[0])
        bare = conn.execute(text("SELECT id FROM hazard_installations WHERE name = '无监测罐区'")).scalar()
    panel = client.get(f"/monitoring/assets/hazard_installations/{bare}", headers=emergency)
    assert panel.status_code == 200 and panel.json()["sensors"] == [] and panel.json()["alarm_level"] is None
    assert panel.json()["name"] == "无监测罐区" and panel.json()["alarms"] == []

    feats = client.get("/collections/monitored_assets/items", headers=emergency).json()["features"]
    levels = {(f["properties"]["asset_layer"], f["properties"]["asset_id"]): f["properties"]["alarm_level"]
              for f in feats}
    assert levels == {("tailings_ponds", 1): "red", ("hazard_installations", 1): "normal"}
    daily = client.get("/monitoring/daily", headers=emergency).json()
    assert daily["totals"]["crossings"] == 2 and daily["totals"]["opened"] == 1 and daily["totals"]["escalated"] == 1


def test_thresholds_api(client, site, token):
    editor = {"Authorization": f"Bearer {token('editor')}"}
    ok = client.put("/monitoring/thresholds", headers=editor, json={
        "kind": "temperature", "asset_layer": "hazard_installations", "asset_id": 1,
        "blue": 40, "yellow": 45, "orange": 50, "red": 55, "hysteresis": 0.5})
    assert ok.status_code == 200 and ok.json()["red"] == 55
    bad = client.put("/monitoring/thresholds", headers=editor, json={"kind": "temperature", "blue": 50, "yellow": 40})
    assert bad.status_code == 400 and "yellow" in bad.json()["description"]
    assert bad.json()["description_zh"] == "温度：黄色预警阈值（40.0）应高于蓝色预警阈值（50.0）"
    nope = client.put("/monitoring/thresholds", headers=editor, json={"kind": "nope", "red": 1})
    assert nope.status_code == 400 and nope.json()["description_zh"].startswith("未知的监测类型 'nope'")
    missing = client.put("/monitoring/thresholds", headers=editor, json={  # (a typo'd asset is not stored)
        "kind": "temperature", "asset_layer": "hazard_installations", "asset_id": 999999, "red": 55})
    assert missing.status_code == 400 and "no hazard_installations 999999" in missing.json()["description"]
    for body in ('{"kind": "temperature", "blue": Infinity}', '{"kind": "temperature", "red": NaN}',
                 '{"kind": "displacement", "rate_red": -5}'):  # (refused, and nothing stored)
        r = client.put("/monitoring/thresholds", headers={**editor, "Content-Type": "application/json"}, content=body)
        assert r.status_code == 400, r.text
    assert client.get("/monitoring/thresholds", headers=editor).status_code == 200
    planner = {"Authorization": f"Bearer {token('planner')}"}
    assert client.put("/monitoring/thresholds", headers=planner, json={"kind": "temperature", "red": 1}).status_code == 403
    rows = client.get("/monitoring/thresholds", headers=planner).json()["thresholds"]
    mine = [r for r in rows if r["kind"] == "temperature" and r["asset_id"] is not None]
    assert len(mine) == 1 and mine[0]["asset_id"] == 1 and mine[0]["hysteresis"] == 0.5

    # an asset's own thresholds removed (editor only): its sensors go back to the kind's default; once only
    own = "/monitoring/thresholds?kind=temperature&asset_layer=hazard_installations&asset_id=1"
    assert client.delete(own, headers=planner).status_code == 403
    assert client.delete(own, headers=editor).status_code == 204
    gone = client.delete(own, headers=editor)
    assert gone.status_code == 404 and gone.json()["description_zh"] == "hazard_installations 1 没有单独设定的 temperature 阈值"
    assert not [r for r in client.get("/monitoring/thresholds", headers=editor).json()["thresholds"]
                if r["kind"] == "temperature" and r["asset_id"] is not None]
    # a kind's default is not removed (no asset given), nor a kind's thresholds on the other layer's assets
    assert client.delete("/monitoring/thresholds?kind=temperature", headers=editor).status_code == 400
    other = client.delete("/monitoring/thresholds?kind=temperature&asset_layer=tailings_ponds&asset_id=1", headers=editor)
    assert other.status_code == 400 and "temperature sensors belong to hazard_installations" in other.json()["description"]
