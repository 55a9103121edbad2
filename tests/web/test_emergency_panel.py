"""The emergency panel (web/static/js/panel-emergency.js) in headless Chromium against the real server, on the
hand-made scene of tests/gis/test_emergency_fixture.py plus 20 depots around the spill and a rescue team 50 km
away: day or night is preselected by the hour in Beijing, and chosen again when the panel opens and before each
分析 Analyse unless chosen by hand; 分析 Analyse fits the zones and the spill point beside the panel (not the far
resources), is kept in the duty log only when asked (its report downloads), resources show in-zone badges, the
server's warnings and unusable marks in both languages, and 仅查资源 Resources only lists every kind. Numbers are
formatted as elsewhere on the page: people with thousands separators, areas with 2 decimals. Each zone is counted in
a few lines before the resources, its receptors' names after them, a handful each behind 显示全部 Show all; a failed
analysis leaves nothing of the previous one. A kept incident opened in the feature panel takes a hand-over note,
closes (its zones leave the map's tiles) and reopens, and downloads its report."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import browser_page, map_still, open_map, served

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
    with served(db_url) as base:
        yield base, clean


def test_emergency_panel(site, token):
    base, engine = site
    lon, lat = ll(*INCIDENT)
    with browser_page() as (page, errors):
        # 23:30 UTC: night for a browser in London, 07:30 (day) in Beijing
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/London"})
        page.clock.set_fixed_time("2026-11-29T23:30:00Z")
        open_map(page, base, token('emergency'))
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
        map_still(page)
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


def analyse(page, chemical, lon, lat):
    """分析 Analyse a small spill of `chemical` at lon/lat; the incident's answer (a Response)."""
    page.select_option("#em-spill", "small")
    page.fill("#em-chem", chemical)
    page.fill("#em-lon", str(lon))
    page.fill("#em-lat", str(lat))
    with page.expect_response("**/emergency/incident") as answer:
        page.click("#em-run")
    page.wait_for_selector("#em-saved, #em-error", timeout=30000)
    return answer.value


def test_day_night_follows_the_clock(site, token):
    base, _ = site
    lon, lat = ll(*INCIDENT)
    with browser_page() as (page, errors):
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/London"})
        page.clock.set_fixed_time("2026-11-30T09:30:00Z")  # 17:30 in Beijing
        open_map(page, base, token('emergency'))
        page.click(".em-toggle")
        assert (page.input_value("#em-time"), page.inner_text("#em-time-note")) == ("day", "(北京时间 Beijing time 17:30)")

        # the page stays open into the night: opening the panel again chooses again
        page.click(".em-toggle")
        page.clock.set_fixed_time("2026-11-30T14:30:00Z")  # 22:30
        page.click(".em-toggle")
        assert (page.input_value("#em-time"), page.inner_text("#em-time-note")) == ("night", "(北京时间 Beijing time 22:30)")

        # ... and so does 分析 Analyse, the panel left open till morning
        page.clock.set_fixed_time("2026-11-30T23:10:00Z")  # 07:10
        assert analyse(page, "液氯", lon, lat).request.post_data_json["time"] == "day"
        assert page.inner_text("#em-time-note") == "(北京时间 Beijing time 07:10)"
        assert re.search(r"^氯气 Chlorine UN1017 · guide 124 · ERG2024 \w+ · 白天 Day$", page.inner_text("#em-out"), re.M)

        # chosen by hand: kept when the panel opens and at 分析 Analyse, flagged while the clock says otherwise
        page.select_option("#em-time", "night")
        assert page.inner_text("#em-time-note") == "(北京时间 Beijing time 07:10) ⚠ 现为白天 Now day"
        assert page.get_attribute("#em-time-note", "class") == "em-warn"
        page.click(".em-toggle")
        page.clock.set_fixed_time("2026-12-01T03:00:00Z")  # 11:00
        page.click(".em-toggle")
        assert page.input_value("#em-time") == "night"
        assert analyse(page, "液氯", lon, lat).request.post_data_json["time"] == "night"
        assert page.inner_text("#em-time-note") == "(北京时间 Beijing time 11:00) ⚠ 现为白天 Now day"
        page.clock.set_fixed_time("2026-12-01T12:00:00Z")  # 20:00: the hand choice agrees with the clock again
        analyse(page, "液氯", lon, lat)
        assert page.inner_text("#em-time-note") == "(北京时间 Beijing time 20:00)"
    assert errors == [], errors


def test_zone_counts_before_resources_and_failure_clears(site, token):
    base, engine = site
    lon, lat = ll(*INCIDENT)
    schools = [f"学校{i:02d}" for i in range(30)]
    with engine.begin() as conn:  # a crowded protective zone: 30 schools and 12 homes beside depot D0
        for i, name in enumerate(schools + [f"小区{i:02d}" for i in range(12)]):
            conn.execute(text("INSERT INTO receptors (name, kind, people, geom) VALUES (:n, :k, 100, "
                              "ST_GeomFromText(:g, 4326))"),
                         {"n": name, "k": "school" if name in schools else "residential", "g": point(150 + 3 * i, 40)})
    with browser_page() as (page, errors):
        open_map(page, base, token('emergency'))
        page.click(".em-toggle")
        page.uncheck("#em-save")
        zones = analyse(page, "液氯", lon, lat).json()["zones"]
        receptors = zones["protective"]["receptors"]
        assert len(receptors["school"]) >= 30 and len(receptors["residential"]) == 12

        # each zone: counts only (people, schools with kindergartens, hospitals, the rest), no names
        for name, z in zones.items():
            n = {k: len(v) for k, v in z["receptors"].items()}
            kids = n.get("school", 0) + n.get("kindergarten", 0)
            assert page.inner_text(f".em-counts[data-zone={name}]") == (
                f"学校幼儿园 Schools {kids} · 医院 Hospitals {n.get('hospital', 0)} · "
                f"其他防护目标 Other receptors {sum(n.values()) - kids - n.get('hospital', 0)}")
        # the resources come before any receptor's name, which are listed after them
        order = page.evaluate("""() => [...document.querySelectorAll('#em-out h4, #em-out .em-res, #em-out .em-receptors')]
            .map(e => e.matches('h4') ? e.textContent : e.className.split(' ')[0])""")
        first_res, first_names = order.index("em-res"), order.index("em-receptors")
        assert first_res < order.index("防护目标 Receptors") < first_names, order
        before = page.evaluate("""() => { const r = document.createRange(); r.setStartBefore(document.querySelector('#em-out'));
            r.setEndBefore(document.querySelector('#em-out .em-res')); return r.toString(); }""")
        assert not any(s in before for s in schools)

        # a handful of names per kind, all behind 显示全部 Show all (N), and back
        row = page.locator(".em-receptors[data-zone=protective][data-kind=school]")
        total = len(receptors["school"])
        shown = row.locator(".em-names > span").inner_text()
        assert row.inner_text().startswith(f"学校 School ({total}): ") and shown.endswith(" …")
        assert len(shown.removesuffix(" …").split("、")) == 5
        row.locator("button.em-more").click()
        assert row.locator(".em-names > span").inner_text() == "、".join(r["name"] for r in receptors["school"])
        assert row.locator("button.em-more").inner_text() == "收起 Show fewer"
        row.locator("button.em-more").click()
        assert row.locator("button.em-more").inner_text() == f"显示全部 Show all ({total})"
        residential = page.locator(".em-receptors[data-zone=protective][data-kind=residential]")
        assert residential.locator("button.em-more").inner_text() == "显示全部 Show all (12)"

        # a failed analysis (a typo) leaves neither the previous zones nor its resources, on the map or in the panel
        assert page.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length") > 2
        failed = analyse(page, "chlorin", lon, lat)
        assert failed.status == 400
        assert "chlorin" in page.inner_text("#em-error")
        assert page.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length") == 0
        assert page.locator("#em-out .em-res, #em-out h4").count() == 0
        assert page.is_disabled("#em-report")
        # (a missing location is refused in the panel, the same way)
        analyse(page, "液氯", lon, lat)
        page.fill("#em-lon", "")
        page.click("#em-run")
        assert page.inner_text("#em-out") == "请输入或点选位置 Enter or click a location"
        assert page.evaluate("document.querySelectorAll('.leaflet-overlay-pane path').length") == 0
    assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"], errors


def zone_tiles(page, incident):
    """Whether the map's incident_zones tiles (all loaded) hold a zone of `incident`."""
    return page.evaluate(f"""onemap.whenTilesLoaded(15000).then(() => onemap.renderedFeatures('incident_zones')
        .some(f => f.properties.incident_id === {incident}))""")


def test_kept_incident_in_feature_panel(site, token):
    base, engine = site
    lon, lat = ll(*INCIDENT)
    with browser_page() as (page, errors):
        open_map(page, base, token('emergency', 'duty-a'))
        page.click(".em-toggle")
        incident = analyse(page, "液氯", lon, lat).json()["incident_id"]
        assert zone_tiles(page, incident)

        # the duty log lists it; a click opens it in the feature panel with its status and no notes yet
        page.click("#em-log summary")
        page.click(f".em-log-row[data-id='{incident}']")
        section = page.locator(f"#om-panel[data-status=ok] .em-incident[data-incident='{incident}']")
        section.locator(".em-inc-status").wait_for(timeout=10000)
        assert section.locator(".em-inc-status").inner_text() == "状态 Status: 处置中 Open"
        assert "交接记录 Hand-over notes (北京时间 Beijing time): 无 none" in section.inner_text()

        def patch(button):
            with page.expect_response(f"**/emergency/incidents/{incident}") as answer:
                section.locator(button).click()
            return answer.value

        # an empty note: the server's refusal in both languages, in the section
        assert patch(".em-add-note").status == 400
        assert "give a status" in section.locator(".em-incident-msg.em-warn").inner_text()

        # a hand-over note: kept, with who and when (Beijing time)
        section.locator(".em-note-input").fill("交接：风向转北 hand-over: wind turned north")
        assert patch(".em-add-note").request.post_data_json == {"note": "交接：风向转北 hand-over: wind turned north"}
        page.wait_for_selector(".em-incident .em-note")
        with engine.connect() as conn:
            (note,) = conn.execute(text("SELECT notes FROM incidents WHERE id = :i"), {"i": incident}).scalar_one()
        assert note["by"] == "duty-a"
        assert section.locator(".em-note").inner_text() == (
            page.evaluate(f"onemap.fmtTime({note['at']!r}, 'short')") + " duty-a: 交接：风向转北 hand-over: wind turned north")
        assert section.locator(".em-incident-msg").inner_text() == f"已保存 Saved: #{incident} 处置中 Open · 交接记录 Notes 1"

        # closed: the feature panel says so, and its zones leave the map (the zone tiles show open incidents only)
        assert patch(".em-flip").request.post_data_json == {"status": "closed", "note": None}
        page.wait_for_selector("#om-panel[data-status=ok] tr[data-field=status] >> text=已结束")
        assert section.locator(".em-flip").inner_text() == "重新开启 Reopen"
        page.wait_for_function(f"""onemap.whenTilesLoaded(15000).then(() => !onemap.renderedFeatures('incident_zones')
            .some(f => f.properties.incident_id === {incident}))""", timeout=15000)
        assert "已结束 Closed" in page.inner_text(f".em-log-row[data-id='{incident}']")
        # reopened: back on the map
        patch(".em-flip")
        page.wait_for_selector("#om-panel[data-status=ok] tr[data-field=status] >> text=处置中")
        page.wait_for_function(f"""onemap.whenTilesLoaded(15000).then(() => onemap.renderedFeatures('incident_zones')
            .some(f => f.properties.incident_id === {incident}))""", timeout=15000)

        with page.expect_download() as dl:
            section.locator(".em-inc-report").click()
        assert dl.value.suggested_filename == f"incident-{incident}.html"

        # a planner reads the log and the report, and may not change it
        assert page.evaluate(f"onemap.login({token('planner')!r}).then(r => r.ok)")
        section.locator(".em-inc-status").wait_for(timeout=10000)
        assert section.locator(".em-inc-report").is_visible()
        assert section.locator(".em-add-note, .em-flip, .em-note-input").count() == 0
    assert errors == ["Failed to load resource: the server responded with a status of 400 (Bad Request)"], errors
