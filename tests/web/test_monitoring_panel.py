"""The monitoring panel (web/static/js/panel-monitoring.js) in headless Chromium against the real server: a
tailings pond's displacement sensor has an alarm and, stored before the server refused sensor faults, a
reading of 10²⁵ mm; the alarm list names the highest level in both languages, and the chart's axis labels
are formatted as the page formats numbers (×10ⁿ, no "e+25"); the panel opens under the top-right controls, clear of
the 预警 Alarms button and its count badges. The feature panel's 在线监测 section asks for an asset once per opened
feature (not again when the details come or the language switches), says so when an installation has no sensors,
and every time shown is Beijing time, labelled, whatever the browser's zone. A click on an alarm fits the map to its
pond beside the panel; the list filters by level; a second acknowledgement's refusal (409) shows beside the
确认 Acknowledge button, in view, and the alarm is shown again, acknowledged."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import geopandas as gpd
import httpx
import pytest
import shapely
from sqlalchemy import text

from conftest import browser_page, load, map_still, open_map, pond_with_open_alarm, served

BEIJING = timezone(timedelta(hours=8))


@pytest.fixture
def site(db_url, clean):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    pond_with_open_alarm(clean, now)
    with clean.begin() as conn:
        # (ingest refuses it now as a sensor fault; older stores may hold such a reading)
        conn.execute(text("INSERT INTO monitoring_readings (sensor_id, time, value) SELECT id, :t, 1e25 "
                          "FROM monitoring_sensors WHERE code = 'TP1-D1'"), {"t": now - timedelta(minutes=5)})
    # (after the pond's sensors: an installation without any)
    load(clean, "hazard_installations", gpd.GeoDataFrame(
        {"name": ["无传感器装置"]}, geometry=[shapely.box(102.72, 25.0, 102.73, 25.01)], crs=4326))
    with served(db_url) as base:
        yield base


def test_alarm_levels_and_chart_axis(site, token):
    with browser_page() as (page, errors):
        open_map(page, site, token('emergency'))
        page.click(".mo-toggle")
        page.wait_for_selector(".mo-alarm", timeout=10000)
        row = page.inner_text(".mo-alarm >> nth=0")
        assert re.search(r"最高 Highest: (蓝色预警 Blue|黄色预警 Yellow|橙色预警 Orange|红色预警 Red)", row), row
        assert not re.search(r"max (blue|yellow|orange|red)", row)
        # the panel opens under the top-right controls: it covers neither 预警 Alarms (widened by its count badges)
        # nor 路线 Routes, and ends above the map's bottom
        page.wait_for_selector(".mo-toggle .mo-n")
        rects = page.evaluate("""() => {
            const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
            return { panel: r(document.querySelector('.mo-panel')), map: r(onemap.map.getContainer()),
                     controls: [...document.querySelectorAll('.leaflet-top.leaflet-right .leaflet-control')]
                         .filter(c => !c.hidden).map(c => [c.className, r(c)]) };
        }""")
        p = rects["panel"]
        assert {c.split()[1] for c, _ in rects["controls"]} >= {"mo-toggle", "rt-toggle"}, rects
        for name, c in rects["controls"]:
            assert c[2] <= p[0] or c[0] >= p[2] or c[3] <= p[1] or c[1] >= p[3], (name, c, p)
        assert rects["map"][1] < p[1] and p[3] <= rects["map"][3] - 40

        page.click(".mo-alarm >> nth=0")
        page.wait_for_selector("#mo-detail .mo-chart .mo-axis", timeout=10000)
        chart = page.locator("#mo-detail .mo-sensor", has_text="TP1-D1").locator(".mo-chart")
        axis = chart.locator(".mo-axis").all_text_contents()
        assert axis == ["1.08×10²⁵", "-8×10²³"], axis  # (readings 20 … 10²⁵, padded by 8 %)
        assert not any("e+" in t or "e-" in t for t in chart.locator("text").all_text_contents())
        # the page's number format (onemap.fmtNum, which the panels share): very small numbers too
        shown = page.evaluate("[1.2345e-7, -8.000000000000001e+23, 60.125].map(v => onemap.fmtNum(v, 1))")
        assert shown == ["1.23×10⁻⁷", "-8×10²³", "60.1"]
    assert errors == [], errors


def test_feature_section_asks_once_and_shows_beijing_time(site, token):
    emergency = token("emergency")
    api = httpx.Client(base_url=site, headers={"Authorization": f"Bearer {emergency}"}, trust_env=False)
    (alarm,) = api.get("/monitoring/alarms").json()["alarms"]
    pond = api.get(f"/monitoring/assets/tailings_ponds/{alarm['asset_id']}?hours=48").json()
    installation = 1
    bare = api.get(f"/monitoring/assets/hazard_installations/{installation}?hours=48")
    assert bare.status_code == 200 and bare.json()["sensors"] == []

    def beijing(iso):
        return datetime.fromisoformat(iso).astimezone(BEIJING).strftime("%m-%d %H:%M")

    with browser_page() as (page, errors):
        # a browser in London: the times shown are still Beijing time
        page.context.new_cdp_session(page).send("Emulation.setTimezoneOverride", {"timezoneId": "Europe/London"})
        asked, refused = [], []
        page.on("request", lambda r: asked.append(r.url) if "/monitoring/assets/" in r.url else None)
        page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
        open_map(page, site, emergency)

        def open_feature(layer, fid):
            asked.clear()
            page.evaluate(f"onemap.showFeature({layer!r}, {fid}, {{}}, null)")
            page.wait_for_selector("#om-panel[data-status=ok] .mo-section :is(.mo-none, .mo-chart)", timeout=10000)

        # an installation without sensors: said in both languages, one request however often the panel is drawn
        open_feature("hazard_installations", installation)
        assert page.inner_text(".mo-section .mo-none") == "无监测传感器 No monitoring sensors"
        page.evaluate("onemap.setLang('en'); onemap.setLang('zh')")
        page.wait_for_selector(".mo-section .mo-none")
        assert asked == [f"{site}/monitoring/assets/hazard_installations/{installation}?hours=48"], asked

        # the pond: its charts, asked once; the chart's times are Beijing time and say so
        open_feature("tailings_ponds", alarm["asset_id"])
        page.evaluate("onemap.setLang('en')")
        page.wait_for_selector(".mo-section .mo-chart")
        assert len(asked) == 1, asked
        (d1,) = [s for s in pond["sensors"] if s["code"] == "TP1-D1"]
        texts = page.locator(".mo-section .mo-sensor", has_text="TP1-D1").locator(".mo-chart text").all_text_contents()
        assert texts[-3:] == [beijing(d1["readings"][0][0]), "北京时间 Beijing time", beijing(d1["readings"][-1][0])]
        page.evaluate("onemap.setLang('zh')")

        # the alarm list and history: Beijing time, labelled in the panel
        page.click(".mo-toggle")
        page.wait_for_selector(".mo-alarm", timeout=10000)
        assert "北京时间 Beijing time" in page.inner_text(".mo-panel > .mo-muted")
        assert f"自 Since {beijing(alarm['opened_at'])} · " in page.inner_text(".mo-alarm >> nth=0")
        page.click(".mo-alarm >> nth=0")
        page.wait_for_selector("#mo-detail .mo-hist div")
        assert "历史 History (北京时间 Beijing time)" in page.inner_text("#mo-detail")
        assert page.inner_text("#mo-detail .mo-hist div >> nth=0").startswith(beijing(alarm["opened_at"]) + " 开启 open")
    # (the only refusal: the installation's GB 18218 grading, not run yet, which the feature panel shows as a note)
    assert refused == [f"{site}/analysis/grading/{installation}"], refused
    assert errors == ["Failed to load resource: the server responded with a status of 404 (Not Found)"], errors


def test_alarm_fit_level_filter_and_second_ack(site, token):
    api = httpx.Client(base_url=site, headers={"Authorization": f"Bearer {token('emergency', 'duty-b')}"}, trust_env=False)
    (alarm,) = api.get("/monitoring/alarms").json()["alarms"]
    other = next(lv for lv in ("red", "orange", "yellow", "blue") if lv != alarm["level"])
    with browser_page() as (page, errors):
        open_map(page, site, token('emergency', 'duty-a'))
        page.click(".mo-toggle")
        page.wait_for_selector(".mo-alarm", timeout=10000)

        # by level: another level shows none, the alarm's own shows it
        page.select_option("#mo-level", other)
        assert page.locator(".mo-alarm").count() == 0 and page.inner_text("#mo-list") == "无预警 No alarms"
        page.select_option("#mo-level", alarm["level"])
        assert page.locator(".mo-alarm").count() == 1
        page.select_option("#mo-level", "")

        # a click fits the map to the pond (102.70–102.71, 25.00–25.01, ~1 km) beside the panel
        assert page.evaluate("onemap.map.getZoom()") < 12
        page.click(".mo-alarm >> nth=0")
        page.wait_for_function("onemap.map.getZoom() >= 14", timeout=10000)
        map_still(page)
        assert page.evaluate("onemap.map.getBounds().contains([[25.0, 102.7], [25.01, 102.71]])")
        right, left = page.evaluate("""() => { const m = onemap.map, c = m.getContainer().getBoundingClientRect();
            return [c.left + m.latLngToContainerPoint([25.0, 102.71]).x, document.querySelector('.mo-panel').getBoundingClientRect().left]; }""")
        assert right <= left, (right, left)

        # acknowledged meanwhile by someone else: the server's 409 shows beside the button, in view, and the alarm
        # is shown again, acknowledged (no button)
        page.wait_for_selector("#mo-ack")
        assert api.post(f"/monitoring/alarms/{alarm['id']}/ack", json={"note": "first"}).status_code == 200
        with page.expect_response(f"**/monitoring/alarms/{alarm['id']}/ack") as answer:
            page.click("#mo-ack")
        assert answer.value.status == 409
        page.wait_for_selector("#mo-ack-msg")
        assert "already acknowledged by duty-b" in page.inner_text("#mo-ack-msg")
        assert page.locator("#mo-ack").count() == 0
        assert page.inner_text("#mo-acked").startswith("✓ 已确认 Acknowledged: duty-b ")
        assert page.evaluate("document.querySelector('#mo-acked').nextElementSibling.id") == "mo-ack-msg"
        msg, box = page.evaluate("""() => [document.querySelector('#mo-ack-msg'), document.querySelector('.mo-panel')]
            .map(e => { const r = e.getBoundingClientRect(); return [r.top, r.bottom]; })""")
        assert box[0] <= msg[0] and msg[1] <= box[1], (msg, box)
        assert page.evaluate("onemap.map.getContainer().scrollTop") == 0
        page.wait_for_selector(".mo-alarm >> text=✓ duty-b")
    assert errors == ["Failed to load resource: the server responded with a status of 409 (Conflict)"], errors
