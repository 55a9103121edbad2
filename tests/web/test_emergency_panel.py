"""The emergency panel (web/static/js/panel-emergency.js) in headless Chromium against the real server, on the
hand-made scene of tests/gis/test_emergency_fixture.py plus 20 depots around the spill and a rescue team 50 km
away: day or night is preselected by the hour in Beijing, 分析 Analyse fits the zones and the spill point beside
the panel (not the far resources), is kept in the duty log only when asked (its report downloads), resources show
in-zone badges, the server's warnings and unusable marks in both languages, and 仅查资源 Resources only lists every
kind. Numbers are formatted as elsewhere on the page: people with thousands separators, areas with 2 decimals."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import browser_page, free_port, serve, stop

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gis"))
from test_emergency_fixture import INCIDENT, build_scene, ll, point  # noqa: E402

FAR = (50000, 0)  # the rescue team, 50 km east of the spill


@pytest.fixture
def site(db_url, clean, tmp_path):
    build_scene(clean, tmp_path)
    with clean.begin() as conn:
        extra = [(f"D{i}", "depot", (100 + 45 * i, 20)) for i in range(20)]  # on road R1, in the protective zone
        extra += [("DX", "depot", (30, 10)), ("RT", "rescue_team", FAR)]     # DX in the isolation zone
        for name, kind, (dx, dy) in extra:
            conn.execute(text("INSERT INTO emergency_resources (name, kind, synthetic, geom) "
                              "VALUES (:n, :k, true, ST_GeomFromText(:g, 4326))"),
                         {"n": name, "k": kind, "g": point(dx, dy)})
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    yield f"http://127.0.0.1:{port}", clean
    stop(proc)


def test_emergency_panel(site, token):
    base, engine = site
    lon, lat = ll(*INCIDENT)
    with browser_page() as (page, errors):
        # 23:30 UTC: night for a browser in London, 07:30 (day) in Beijing
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/London"})
        page.clock.set_fixed_time("2026-11-29T23:30:00Z")
        page.goto(base + "/")
        page.evaluate("onemap.ready")
        assert page.evaluate(f"onemap.login({token('emergency')!r}).then(r => r.ok)")
        page.click(".em-toggle")
        assert page.input_value("#em-time") == "day"
        assert page.inner_text("#em-time-note") == "(北京时间 Beijing time 07:30)"
        assert page.is_checked("#em-save")

        page.fill("#em-chem", "液氯")
        page.fill("#em-lon", str(lon))
        page.fill("#em-lat", str(lat))
        page.select_option("#em-spill", "small")
        page.select_option("#em-time", "night")
        with page.expect_request("**/emergency/incident") as req:
            page.click("#em-run")
        page.wait_for_selector("#em-saved", timeout=30000)
        assert req.value.post_data_json["save"] is True
        with engine.connect() as conn:
            incident = conn.execute(text("SELECT id FROM incidents")).scalar_one()
        assert page.inner_text("#em-saved") == f"已记入值班日志 Recorded in the duty log: #{incident}"
        assert not page.is_disabled("#em-report")
        with page.expect_download() as dl:  # (api.download: with the token)
            page.click("#em-report")
        assert dl.value.suggested_filename == f"incident-{incident}.html"
        assert f"<title>危化品事故辅助决策报告 Hazmat incident report #{incident}: " in Path(dl.value.path()).read_text("utf-8")

        # the map fits the zones and the spill point beside the panel; the rescue team 50 km away is listed, not fitted
        assert page.evaluate("""() => {
            const box = document.querySelector('.em-panel').getBoundingClientRect();
            const map = onemap.map.getContainer().getBoundingClientRect();
            const zones = [...document.querySelectorAll('path.em-zone-protective, path.em-zone-isolation')];
            return zones.length === 2 && zones.every(z => { const r = z.getBoundingClientRect();
                return r.left >= box.right && r.right <= map.right && r.top >= map.top && r.bottom <= map.bottom; });
        }""")
        far_lon, far_lat = ll(*FAR)
        assert page.evaluate(f"onemap.map.getBounds().contains([{lat}, {lon}])")
        assert not page.evaluate(f"onemap.map.getBounds().contains([{far_lat}, {far_lon}])")
        assert "RT" in page.inner_text(".em-res[data-kind=rescue_team]")

        # resources: in-zone badges for any kind, unusable ones marked, labels in both languages
        def row(kind, name):
            return page.locator(f".em-res[data-kind={kind}]", has_text=f". {name} —")
        assert row("depot", "DX").locator(".em-zone").inner_text() == "⚠ 隔离区内 In isolation zone"
        assert row("depot", "D0").locator(".em-zone").inner_text() == "⚠ 防护区内 In protective zone"
        shelter = row("shelter", "S1")
        assert shelter.locator(".em-zone").inner_text() == "⚠ 防护区内 In protective zone"
        assert "不可用 Not usable" in shelter.inner_text() and "do not send people there" in shelter.inner_text()
        assert row("shelter", "S2").locator(".em-zone").count() == 0
        fire = row("fire_station", "F2").inner_text()
        assert "直线 Straight" in fire and "能力 Capacity 2" in fire

        # a what-if run: not kept in the duty log, and said so; the server's warnings on resources in a zone
        page.uncheck("#em-save")
        with page.expect_response("**/emergency/incident") as answer:
            page.click("#em-run")
        page.wait_for_selector("#em-saved", timeout=30000)
        assert answer.value.request.post_data_json["save"] is False
        assert page.inner_text("#em-saved") == "试算，未记录 What-if, not recorded"
        assert page.is_disabled("#em-report")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM incidents")).scalar_one() == 1
        depots = {r["name"]: r for r in answer.value.json()["resources"]["depot"]}
        for name, zone, words in (("DX", "isolation", "位于初始隔离区内"), ("D0", "protective", "位于防护行动区内")):
            r = depots[name]  # usable, with a bilingual warning (rank_candidates)
            assert r["in_zone"] == zone and r["usable"] is True and words in r["warning"] and "upwind" in r["warning"]
            assert row("depot", name).locator(".em-res-warning").inner_text() == "⚠ " + r["warning"]
        assert row("shelter", "S2").locator(".em-res-warning").count() == 0
        # each zone's people and area as the page formats numbers (1,234; at most 2 decimals)
        for zone in answer.value.json()["zones"].values():
            people = "— (无人口栅格 no grid)" if zone["population"] is None else f"{round(zone['population']):,}"
            area = f"{zone['area_km2']:,.2f}".rstrip("0").rstrip(".")
            assert f"人口 People: {people} · 面积 Area {area} km²" in page.inner_text("#em-out")
        assert not re.search(r"Area \d+\.\d{3}", page.inner_text("#em-out"))

        # resources only: a few of each kind, so the far rescue team is not crowded out by the 21 depots
        with page.expect_request("**/emergency/nearby?*") as req:
            page.click("#em-near")
        # (the incident's answer, which lists a rescue team too, is on screen until the new one replaces it)
        page.wait_for_function("!document.querySelector('#em-out').innerText.includes('防护行动区') && "
                               "document.querySelector('.em-res[data-kind=rescue_team]')", timeout=30000)
        assert "per_kind=5" in req.value.url and "limit=50" in req.value.url
        assert page.locator(".em-res[data-kind=depot]").count() == 5
        assert "救援队伍 Rescue teams" in page.inner_text("#em-out h4 >> nth=1")
    assert errors == [], errors
