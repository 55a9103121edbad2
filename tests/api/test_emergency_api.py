"""HTTP: /emergency/incident, /nearby, /chemicals, the incident log (hand-over) and the offline report."""

from __future__ import annotations

import html
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import mapbox_vector_tile
import mercantile
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gis"))
from test_emergency_fixture import INCIDENT, build_scene, ll  # noqa: E402


@pytest.fixture
def scene(clean, tmp_path):
    build_scene(clean, tmp_path)
    return clean


def _auth(token, role):
    return {"Authorization": f"Bearer {token(role)}"}


def _body(**kw):
    lon, lat = ll(*INCIDENT)
    return dict({"lon": lon, "lat": lat, "chemical": "液氯", "spill": "small", "time": "night"}, **kw)


def test_roles(client, scene, token):
    assert client.post("/emergency/incident", json=_body()).status_code == 401
    assert client.get("/emergency/nearby", params={"lon": 102.7, "lat": 25.04}).status_code == 401
    planner = _auth(token, "planner")
    assert client.post("/emergency/incident", json=_body(), headers=planner).status_code == 403
    assert client.get("/emergency/nearby", params={"lon": 102.7, "lat": 25.04}, headers=planner).status_code == 200
    assert client.get("/emergency/chemicals", headers=_auth(token, "route_controller")).status_code == 403
    assert client.post("/emergency/incident", json=_body(), headers=_auth(token, "admin")).status_code == 200


def test_incident_answer_is_kept_for_hand_over(client, scene, token):
    h = _auth(token, "emergency")
    r = client.post("/emergency/incident", json=_body(wind_from_deg=45), headers=h)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["chemical"]["un_number"] == "1017" and a["erg"]["edition"] == "ERG2024" and a["erg"]["verified"]
    assert (a["zones"]["isolation"]["distance_m"], a["zones"]["protective"]["distance_m"]) == (60, 1500)
    assert a["zones"]["protective"]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    assert a["zones"]["isolation"]["receptors"]["kindergarten"][0]["name"] == "幼儿园A"
    assert [f["name"] for f in a["resources"]["fire_station"]] == ["F2", "F1", "F4"]
    assert a["resources"]["fire_station"][0]["contact_phone"] == "0871-0000000"  # emergency sees contacts
    assert "Decision support" in a["decision_support"]
    iid = a["incident_id"]
    log = client.get("/emergency/incidents", headers=_auth(token, "planner")).json()["incidents"]
    assert log[0]["id"] == iid and log[0]["created_by"] == "test-emergency" and log[0]["status"] == "open"
    got = client.get(f"/emergency/incidents/{iid}", headers=_auth(token, "planner")).json()
    assert got["inputs"]["wind_from_deg"] == 45 and "contact_phone" not in got["resources"]["fire_station"][0]
    r = client.patch(f"/emergency/incidents/{iid}", json={"note": "交班：已疏散学校B", "status": "closed"}, headers=h)
    assert r.status_code == 200 and r.json()["status"] == "closed"
    assert r.json()["notes"][0]["by"] == "test-emergency" and "学校B" in r.json()["notes"][0]["text"]
    # the map shows the zones of open incidents only; the features API keeps a closed one's, marked
    tile = mercantile.tile(*ll(*INCIDENT), 14)
    url = f"/tiles/incident_zones/{tile.z}/{tile.x}/{tile.y}.pbf"
    assert client.get(url, headers=h).status_code == 204
    kept = client.get("/collections/incident_zones/items", params={"incident_id": iid}, headers=h).json()["features"]
    assert sorted(f["properties"]["zone"] for f in kept) == ["isolation", "protective"]
    assert {f["properties"]["open"] for f in kept} == {False}
    assert client.patch(f"/emergency/incidents/{iid}", json={"status": "open"}, headers=h).status_code == 200
    shown = mapbox_vector_tile.decode(client.get(url, headers=h).content)["incident_zones"]["features"]
    assert sorted(f["properties"]["zone"] for f in shown) == ["isolation", "protective"]
    assert client.patch(f"/emergency/incidents/{iid}", json={}, headers=h).status_code == 400
    assert client.get("/emergency/incidents/99999", headers=h).status_code == 404


def test_unverified_row_is_flagged_in_answer(client, scene, token):
    a = client.post("/emergency/incident", json=_body(chemical="天然气", spill="large", save=False),
                    headers=_auth(token, "emergency")).json()
    assert a["erg"]["verified"] is False and "UNVERIFIED ERG data" in a["warnings"][0]
    assert "incident_id" not in a


@pytest.mark.parametrize("patch,needle", [
    ({"chemical": "unobtainium"}, "UN number"), ({"chemical": "1090"}, "UN1090"), ({"spill": "huge"}, "spill"),
    ({"lon": 116.4, "lat": 39.9}, "outside the served area"), ({"wind_from_deg": 400}, "wind_from_deg"),
    ({"chemical": "氯气", "spill": "large", "container": "bathtub"}, "container"),
    ({"wind_direction": 270}, "wind_direction: Extra inputs are not permitted"),
])
def test_bad_input_is_a_clear_4xx(client, scene, token, patch, needle):
    r = client.post("/emergency/incident", json=_body(**patch), headers=_auth(token, "emergency"))
    assert r.status_code == 400 and needle in r.json()["description"], r.text


def test_nearby_and_chemicals(client, scene, token):
    h = _auth(token, "emergency")
    lon, lat = ll(*INCIDENT)
    r = client.get("/emergency/nearby", params={"lon": lon, "lat": lat, "kind": "hospital", "limit": 5}, headers=h)
    names = [(x["name"], x["reachable"]) for x in r.json()["resources"]]
    assert names == [("H2", True), ("H1", False)]
    # per_kind: at most one of each kind, in rank order (fire stations alone would fill a limit of 3)
    r = client.get("/emergency/nearby", params={"lon": lon, "lat": lat, "per_kind": 1, "limit": 3}, headers=h).json()
    assert [x["name"] for x in r["resources"]] == ["S1", "F2", "H2"]
    assert client.get("/emergency/nearby", params={"lon": lon, "lat": lat, "kind": "tank"},
                      headers=h).status_code == 400
    chem = client.get("/emergency/chemicals", params={"q": "氯"}, headers=h).json()
    assert {m["un_number"] for m in chem["materials"]} >= {"1017", "1050"} and chem["edition"] == "ERG2024"


def test_offline_report(client, scene, token):
    h = _auth(token, "emergency")
    iid = client.post("/emergency/incident", json=_body(wind_from_deg=90), headers=h).json()["incident_id"]
    r = client.get(f"/emergency/incidents/{iid}/report", headers=_auth(token, "planner"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "Decision support" in page and "初始隔离区" in page and "F2" in page and "幼儿园A" in page
    assert "L.map" in page or "L.Map" in page  # Leaflet inlined
    assert not re.findall(r"""<(?:script|link|img)[^>]+(?:src|href)=["'](?:https?:)?//""", page)  # no external asset
    assert "0871-0000000" not in page  # planner: no contacts
    # times as the duty staff read them: Beijing time, labelled (the API gives the moment with its offset)
    created = datetime.fromisoformat(client.get(f"/emergency/incidents/{iid}", headers=h).json()["created_at"])
    beijing = (created.astimezone(timezone.utc) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f"{beijing} 北京时间 Beijing time (UTC+8) · test-emergency" in page
    assert page.count("北京时间 Beijing time (UTC+8)") == 2  # recorded, and generated
    # (QA: hand-over notes in raw UTC, resources fire stations last (the stored answer's jsonb key order), and a
    # resource inside a zone without its warning)
    noted = client.patch(f"/emergency/incidents/{iid}", json={"note": "交班"}, headers=h).json()["notes"][-1]["at"]
    page = client.get(f"/emergency/incidents/{iid}/report", headers=h).text
    at = (datetime.fromisoformat(noted).astimezone(timezone.utc) + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f"<li>{at} test-emergency: 交班</li>" in page and "Hand-over notes（北京时间 Beijing time）" in page
    kinds = [page.index(f"<td>{label}") for label in ("消防站 Fire station", "医院 Hospital")]
    assert kinds == sorted(kinds)
    answer = client.get(f"/emergency/incidents/{iid}", headers=h).json()
    warned = [i for items in answer["resources"].values() for i in items if i.get("warning") and not i.get("reason")]
    assert all(html.escape(i["warning"]) in page for i in warned)


def test_cli_incident_and_report(scene, db_url, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    lon, lat = ll(*INCIDENT)
    runner = CliRunner()
    r = runner.invoke(app, ["incident", "--lon", str(lon), "--lat", str(lat), "--chemical", "UN1076", "--spill",
                            "small", "--time", "night", "--wind-from", "0", "--by", "夜班", "--out",
                            str(tmp_path / "a.html")])
    assert r.exit_code == 0, r.output
    assert "isolate 100 m, protect 2500 m" in r.output and "verified" in r.output
    iid = re.search(r"incident #(\d+)", r.output).group(1)
    r = runner.invoke(app, ["report", "incident", iid, "--out", str(tmp_path / "b.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert "光气" in page and "夜班" in page and "0871-0000000" in page and "Decision support" in page
    r = runner.invoke(app, ["incident", "--lon", str(lon), "--lat", str(lat), "--chemical", "kryptonite"])
    assert r.exit_code == 2 and "UN number" in r.output
