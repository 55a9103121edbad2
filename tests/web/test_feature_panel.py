"""The feature side panel's planner tools (web/static/js/onemap.js) in headless Chromium against the real server,
on the GB 18218 grading world of tests/hazchem_world.py after a hazchem run: a hazard installation shows its
grading (S, R, α, level by the registry's label, exposed people, substances) as GET /analysis/grading/{id} gives
it, rounded; one not graded yet (404) or that cannot be graded (400) shows the server's description as a note;
报告 Report downloads the park, installation or district report with the token, and a refused report shows the
server's description; both tools only for roles with `analysis_read`."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from conftest import browser_page, open_map, served
from gis import hazchem
from hazchem_world import add, box, grading_world
from layers.settings import StoreSettings

SHOT = Path(os.environ.get("RISKMAP_SCREENSHOTS", "/tmp")) / "feature-panel-grading.png"


@pytest.fixture
def site(db_url, clean, tmp_path):
    with clean.begin() as conn:
        hazchem.reset_rules(conn)
        ids = grading_world(conn, tmp_path)
        ids["ODD"] = add(conn, "hazard_installations", box(-2000, 2000, -1950, 2050), name="ODD 液氯罐",
                         unit_type="storage", chemicals=[{"name": "液氯", "quantity_t": 7.777}])  # S 1.5554
        ids["PK"] = add(conn, "chemical_parks", box(3800, 3800, 4400, 4400), name="测试园区", risk_grade="red")
        add(conn, "admin_areas", box(-5000, -5000, 5000, 5000), name="测试区", adcode="530102")
    hazchem.run(clean, StoreSettings(database_url=None))
    with clean.begin() as conn:  # after the run: not graded yet
        ids["NEW"] = add(conn, "hazard_installations", box(-2500, 2000, -2450, 2050), name="NEW 新装置",
                         unit_type="storage", chemicals=[{"name": "液氨", "quantity_t": 20}])
    with served(db_url) as base:
        yield base, ids


def shown(v: float) -> str:
    """A number as the page shows it with at most 2 decimals (onemap.fmtNum(v, 2), zh-CN)."""
    return f"{v:,.2f}".rstrip("0").rstrip(".")


def test_grading_block_and_reports(site, token):
    base, ids = site
    planner = token("planner")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {planner}"})
    with browser_page() as (page, errors):
        open_map(page, base, planner)

        def open_feature(layer, fid, props="{}"):
            page.evaluate(f"onemap.showFeature({layer!r}, {fid}, {props})")
            page.wait_for_selector("#om-panel:not([data-status=loading])")

        def grading(fid, status="ok"):
            open_feature("hazard_installations", fid)
            page.wait_for_selector(f"#om-grading[data-status={status}]", timeout=10000)
            return {f: page.inner_text(f"#om-grading tr[data-field={f}] td") for f in
                    ("S", "R", "alpha", "level", "exposed_people")} if status == "ok" else None

        # an installation graded 四级..一级: the block is the API's answer, S and R to 2 decimals
        g = api.get(f"/analysis/grading/{ids['ODD']}").json()
        assert round(g["S"], 4) == 1.5554
        levels = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}
        assert grading(ids["ODD"]) == {"S": "1.56", "R": shown(g["R"]), "alpha": shown(g["alpha"]),
                                       "level": levels[g["level"]], "exposed_people": str(g["exposed_people"])}
        rows = page.locator("#om-grading .om-grading-substances tr").all_inner_texts()
        (sub,) = g["substances"]
        assert (sub["name"], sub["cas"], sub["q"], sub["Q"]) == ("氯", "7782-50-5", 7.777, 5.0)  # (液氯: Table 1's 氯)
        assert [r.split("\t") for r in rows] == [["物质", "CAS", "q t", "Q t", "β"],
                                                ["氯", "7782-50-5", "7.777", "5", shown(sub["beta"])]]

        # the mixture: three substances, level 3 by the registry's label, its colour dot; then the screenshot
        m1 = api.get(f"/analysis/grading/{ids['M1']}").json()
        assert grading(ids["M1"]) == {"S": "4", "R": "10.5", "alpha": "1.5", "level": "三级", "exposed_people": "62"}
        assert m1["S"] == 4.0 and m1["R"] == 10.5 and m1["level"] == 3
        assert page.locator("#om-grading tr[data-field=level] .om-chip-dot").count() == 1
        assert page.locator("#om-grading .om-grading-substances tr").count() == 4
        assert "7664-41-7" in page.inner_text("#om-grading .om-grading-substances")
        page.locator("#om-panel").screenshot(path=str(SHOT))
        page.evaluate("onemap.setLang('en')")
        assert page.inner_text("#om-grading h3") == "GB 18218 grading"
        assert page.inner_text("#om-grading tr[data-field=level] td") == "Level 3"
        assert page.inner_text("#om-panel .om-report") == "Report"
        page.evaluate("onemap.setLang('zh')")

        # S < 1: not a major hazard installation
        assert grading(ids["G7 S=0.98"])["level"] == "未构成重大危险源"
        # cannot be graded (400) and not graded yet (404): the server's description as a muted note
        for name, status, words in (("U1", 400, "神秘化合物"), ("NEW", 404, "has not been graded yet")):
            r = api.get(f"/analysis/grading/{ids[name]}")
            assert r.status_code == status and words in r.json()["description"]
            grading(ids[name], "note")
            said = r.json()
            assert page.inner_text("#om-grading .om-grading-note") == said["description_zh"] + " " + said["description"]
            assert page.locator("#om-status.om-status-error").count() == 0  # (no error toast)

        # 报告 Report: the installation, the park (by id) and the district (by adcode), downloaded with the token
        def report(layer, fid, props="{}"):
            open_feature(layer, fid, props)
            with page.expect_download() as dl:
                page.click("#om-panel .om-report")
            return dl.value.suggested_filename, Path(dl.value.path()).read_text(encoding="utf-8")

        for layer, fid, props, name, title in (
                ("hazard_installations", ids["M1"], "{}", f"installation-{ids['M1']}.html",
                 "重大危险源报告 Major hazard installation report: M1 mixture"),
                ("chemical_parks", ids["PK"], "{}", f"park-{ids['PK']}.html", "化工园区报告 Chemical park report: 测试园区"),
                ("admin_areas", 1, "{adcode: '530102'}", "district-530102.html", "区县报告 District report: 测试区 (530102)")):
            filename, html = report(layer, fid, props)
            assert filename == name
            assert html.lstrip().lower().startswith("<!doctype html>"), html[:80]
            assert f"<title>{title}</title>" in html
        # a report the server refuses: its description under the button (an unknown district: 404)
        refused = api.get("/analysis/reports/district/999999")
        assert refused.status_code == 404
        open_feature("admin_areas", 999, "{adcode: '999999'}")
        page.click("#om-panel .om-report")
        page.wait_for_selector("#om-panel .om-report-error")
        said = refused.json()  # (in Chinese too where the server gives it)
        assert page.inner_text("#om-panel .om-report-error") == " ".join(
            filter(None, (said.get("description_zh"), said["description"])))

        # a role without analysis_read: no grading, no report; the panel changes with the role
        open_feature("chemical_parks", ids["PK"])
        assert page.locator("#om-panel .om-report").count() == 1
        assert page.evaluate(f"onemap.login({token('route_controller')!r}).then(r => r.ok)")
        assert page.evaluate("onemap.can('analysis_read')") is False
        assert page.locator("#om-panel .om-report").count() == 0
        open_feature("hazard_installations", ids["M1"])
        assert page.locator("#om-grading, #om-panel .om-report").count() == 0
    # (Chromium logs each 4xx answer, the refusals above, as "Failed to load resource")
    assert [e for e in errors if not ("Failed to load resource" in e and ("404" in e or "400" in e))] == [], errors


def test_editor_edits_and_deletes_features_from_the_panel(site, token):
    """(QA: an editor could fix a single feature only by a CLI import on the server.) 编辑 Edit turns the panel into
    the layer's fields, saved with PUT (the place and the inventory kept); 删除 Delete deletes a feature nothing
    refers to, and a refused delete (a park its enterprises name) says what refers to it. Planners see neither."""
    base, ids = site
    editor, planner = token("editor"), token("planner")
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {editor}"}, trust_env=False)
    with browser_page() as (page, errors):
        open_map(page, base, planner)
        page.evaluate(f"onemap.showFeature('hazard_installations', {ids['ODD']}, {{}})")
        page.wait_for_selector("#om-panel[data-status=ok]")
        assert page.locator("#om-panel .om-edit, #om-panel .om-delete").count() == 0

        open_map(page, base, editor)
        page.on("dialog", lambda d: d.accept())  # (the delete's confirm)
        place = api.get(f"/collections/hazard_installations/items/{ids['ODD']}").json()["geometry"]
        page.evaluate(f"onemap.showFeature('hazard_installations', {ids['ODD']}, {{}})")
        page.wait_for_selector("#om-panel[data-status=ok] .om-edit")
        page.click("#om-panel .om-edit")
        page.fill(".om-edit-row[data-field=name] input", "ODD 液氯罐（改）")
        page.select_option(".om-edit-row[data-field=level] select", "3")
        with page.expect_response(lambda r: r.request.method == "PUT") as put:
            page.click("#om-panel .om-save")
        assert put.value.status == 200
        page.wait_for_function("document.querySelector('#om-panel-title').textContent === 'ODD 液氯罐（改）'")
        before = api.get(f"/collections/hazard_installations/items/{ids['ODD']}").json()
        assert before["properties"]["name"] == "ODD 液氯罐（改）" and before["properties"]["level"] == 3
        assert before["geometry"] == place  # (its place kept)

        # a value the registry refuses: the field's reason shown, nothing changed
        page.click("#om-panel .om-edit")
        page.fill(".om-edit-row[data-field=name] input", "")
        page.click("#om-panel .om-save")
        page.wait_for_selector(".om-edit-form .om-edit-error:not([hidden])")
        assert "name: required" in page.inner_text(".om-edit-form .om-edit-error")
        assert api.get(f"/collections/hazard_installations/items/{ids['ODD']}").json()["properties"]["name"] == \
            "ODD 液氯罐（改）"
        page.click("#om-panel .om-cancel")

        # enterprise E1 is named by its installations: the refusal says so, the panel stays
        page.evaluate(f"onemap.showFeature('enterprises', {ids['E1']}, {{}})")
        page.wait_for_selector("#om-panel[data-status=ok] .om-delete")
        page.click("#om-panel .om-delete")
        page.wait_for_selector(".om-edit-actions .om-edit-error:not([hidden])")
        assert "2 hazard_installations (enterprise_id)" in page.inner_text(".om-edit-actions .om-edit-error")
        assert api.get(f"/collections/enterprises/items/{ids['E1']}").status_code == 200

        # the park is named by no enterprise: deleted; the panel closes
        page.evaluate(f"onemap.showFeature('chemical_parks', {ids['PK']}, {{}})")
        page.wait_for_selector("#om-panel[data-status=ok] .om-delete")
        with page.expect_response(lambda r: r.request.method == "DELETE") as gone:
            page.click("#om-panel .om-delete")
        assert gone.value.status == 204
        page.wait_for_selector("#om-panel", state="hidden")
        assert api.get(f"/collections/chemical_parks/items/{ids['PK']}").status_code == 404
    # (the browser logs the refused save and delete it was shown: 400, 409)
    assert [e for e in errors if "(Bad Request)" not in e and "(Conflict)" not in e] == []
