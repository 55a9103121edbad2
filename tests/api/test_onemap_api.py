"""Search, district overview (cross-checked with geopandas) and offline report maps."""

import re
import subprocess

import geopandas as gpd
import pytest
import shapely

from conftest import RISKMAP, load
from sqlalchemy import text

KUNMING_DISTRICTS = "data/kunming/kunming_districts_530100_full_datav_gcj02.geojson"


@pytest.fixture
def city(clean):
    from layers.io import read_source
    from layers.settings import REPO_ROOT

    districts, _ = read_source(REPO_ROOT / KUNMING_DISTRICTS, "gcj02")
    districts["adcode"] = districts["adcode"].astype(str)
    load(clean, "admin_areas", districts[["adcode", "name", "geometry"]], make_valid=True)
    # parks and installations scattered over the city on a regular lattice
    pts = [shapely.Point(102.3 + 0.1 * i, 24.5 + 0.1 * j) for i in range(13) for j in range(20)]
    boxes = [shapely.box(p.x, p.y, p.x + 0.01, p.y + 0.01) for p in pts]
    load(clean, "chemical_parks", gpd.GeoDataFrame({"name": [f"园区{i}" for i in range(len(boxes))]},
                                                   geometry=boxes, crs=4326))
    load(clean, "hazard_installations", gpd.GeoDataFrame(
        {"name": [f"危险源{i}" for i in range(len(boxes))], "level": [(i % 5) or None for i in range(len(boxes))],
         "chemicals": [[{"name": "氯", "quantity_t": 1.0}]] * len(boxes)}, geometry=boxes, crs=4326))
    load(clean, "tailings_ponds", gpd.GeoDataFrame(
        {"name": ["尾矿库甲", "尾矿库乙"], "headtop": [True, False]},
        geometry=[shapely.box(103.1, 26.1, 103.11, 26.11), shapely.box(103.2, 26.2, 103.21, 26.21)], crs=4326))
    return clean, districts, gpd.GeoDataFrame({"level": [(i % 5) or None for i in range(len(boxes))]},
                                              geometry=boxes, crs=4326)


def test_district_overview_matches_geopandas(client, city, token):
    _, districts, inst = city
    districts = districts.assign(geometry=districts.geometry.make_valid())
    joined = gpd.sjoin(inst.set_geometry(inst.geometry.representative_point()), districts[["adcode", "geometry"]],
                       predicate="within")
    planner = {"Authorization": f"Bearer {token('planner')}"}
    rows = {r["adcode"]: r for r in client.get("/api/districts", headers=planner).json()["districts"]}
    assert len(rows) == 14
    for adcode, group in joined.groupby("adcode"):
        assert rows[adcode]["parks"] == len(group)
        assert rows[adcode]["installations_by_level"]["1"] == int((group["level"] == 1).sum())
    assert sum(r["headtop_ponds"] for r in rows.values()) == 1
    # features in no district are counted apart: the table's totals are the layers' totals
    outside = client.get("/api/districts", headers=planner).json()["outside"]
    assert outside["parks"] == len(inst) - joined.index.nunique() > 0
    assert sum(r["parks"] for r in rows.values()) + outside["parks"] == len(inst)
    assert outside["installations_by_level"]["none"] == int((inst.drop(joined.index)["level"].isna()).sum())
    assert outside["headtop_ponds"] == 0 and outside["blackspots"] == 0
    anon = client.get("/api/districts").json()["districts"]
    assert all(r["installations_by_level"] is None for r in anon)  # restricted layer: no numbers leak
    assert client.get("/api/districts").json()["outside"]["installations_by_level"] is None


def test_search_by_name_respects_roles(client, city, token):
    res = client.get("/api/search", params={"q": "五华"}).json()["results"]
    assert res[0]["layer"] == "admin_areas" and res[0]["name"] == "五华区" and len(res[0]["bbox"]) == 4
    assert client.get("/api/search", params={"q": "530181"}).json()["results"][0]["name"] == "安宁市"
    # by English name too, and a road's segments are one result spanning them all (QA: "Wuhua" found nothing; "N08"
    # gave 20 identical rows, each one 5 km segment)
    with city[0].begin() as conn:
        conn.execute(text("UPDATE admin_areas SET name_en = 'Wuhua District' WHERE adcode = '530102'"))
        conn.execute(text("INSERT INTO roads (name, ref, road_class, geom) VALUES "
                          "('演示国道', 'N99', 'trunk', ST_GeomFromText('LINESTRING(102.6 25.0, 102.7 25.0)', 4326)), "
                          "('演示国道', 'N99', 'trunk', ST_GeomFromText('LINESTRING(102.7 25.0, 102.8 25.1)', 4326))"))
    assert [r["name"] for r in client.get("/api/search", params={"q": "wuhua"}).json()["results"]] == ["五华区"]
    (road,) = client.get("/api/search", params={"q": "N99"}).json()["results"]
    assert road["layer"] == "roads" and road["bbox"] == [102.6, 25.0, 102.8, 25.1]
    assert client.get("/api/search", params={"q": "危险源1"}).json()["results"] == []
    planner = {"Authorization": f"Bearer {token('planner')}"}
    assert client.get("/api/search", params={"q": "危险源12"}, headers=planner).json()["results"]
    assert client.get("/api/search", params={"q": "%"}).json()["results"] == []  # wildcards are literal
    assert client.get("/api/search", params={"q": ""}).status_code == 400


def test_reports_open_offline(city, db_url, tmp_path):
    env = {"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}
    for kind, ident in (("park", "1"), ("installation", "2"), ("district", "530181")):
        out = tmp_path / f"{kind}.html"
        r = subprocess.run([RISKMAP, "report", kind, ident, "--out", str(out)], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        page = out.read_text(encoding="utf-8")
        assert not re.search(r"""<(script|link|img)\b[^>]*(src|href)=["'](https?:)?//""", page)
        assert "L.map(" in page or "L.map" in page
    assert "安宁市" in (tmp_path / "district.html").read_text(encoding="utf-8")
    assert "氯" in (tmp_path / "installation.html").read_text(encoding="utf-8")
    r = subprocess.run([RISKMAP, "report", "park", "99999", "--out", str(tmp_path / "x.html")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not found" in r.stderr
    r = subprocess.run([RISKMAP, "report", "incident", "99999", "--out", str(tmp_path / "x.html")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no incident 99999" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([RISKMAP, "report", "park", "1", "--out", str(tmp_path / "none" / "x.html")], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "no folder" in r.stderr and "Traceback" not in r.stderr


def test_installation_report_says_the_grading_outcome_as_the_map_does():
    """(QA: the report said 未分级 "not graded" where the map's grading block said S = 0.24, not a major hazard.)"""
    from api.reports import _grading_text
    from layers.registry import HAZARD_LEVELS

    graded = {"r": 57.123, "s": 9.0, "grading_error": None}
    assert _grading_text(graded, HAZARD_LEVELS[2]).endswith("(R = 57.12)")
    assert _grading_text({"r": 0.3, "s": 0.24, "grading_error": None}, None) == (
        "未构成重大危险源 Not a major hazard installation (S = 0.24 < 1)")
    assert _grading_text({"r": None, "s": None, "grading_error": "'x' is not in Table 1"}, None).startswith("无法分级")
    assert _grading_text({"r": None, "s": None, "grading_error": None}, None).startswith("未分级 not graded")
    from api.reports import table

    assert "无 None" in table([], [("name", "名称 Name")])  # (an empty receptor table said nothing)


def test_reports_over_http_for_staff(client, city, token):
    planner = {"Authorization": f"Bearer {token('planner')}"}
    for kind, ident, needle in (("park", "1", "Chemical park report"), ("installation", "2", "氯"),
                                ("district", "530181", "安宁市")):
        r = client.get(f"/analysis/reports/{kind}/{ident}", headers=planner)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
        assert f'filename="{kind}-{ident}.html"' in r.headers["content-disposition"] and needle in r.text
        assert "L.control.scale({imperial: false})" in r.text and "L.control.scale()" not in r.text  # (metric only)
    assert client.get("/analysis/reports/park/1").status_code == 401
    for url, status, needle in (("/analysis/reports/park/99999", 404, "not found"),
                                ("/analysis/reports/district/000000", 404, "not found"),
                                ("/analysis/reports/park/abc", 400, "numeric id"),
                                ("/analysis/reports/park/" + "9" * 30, 400, "numeric id"),
                                ("/analysis/reports/tank/1", 400, "kind")):
        r = client.get(url, headers=planner)
        assert r.status_code == status and needle in r.json()["description"], (url, r.text)


def test_report_counts_every_receptor_and_lists_the_nearest(city):
    from api.reports import RECEPTORS_LISTED, park_report

    engine = city[0]
    # park 1 is the box 102.3..102.31 x 24.5..24.51: 250 receptors inside it (0 m away) and 30 about 5 km east
    inside = [shapely.Point(102.301 + 0.008 * (i % 25) / 25, 24.501 + 0.008 * (i // 25) / 10) for i in range(250)]
    outside = [shapely.Point(102.36, 24.501 + 0.0002 * i) for i in range(30)]
    load(engine, "receptors", gpd.GeoDataFrame({"name": [f"目标{i}" for i in range(280)], "kind": "school"},
                                               geometry=inside + outside, crs=4326))
    with engine.connect() as conn:
        page = park_report(conn, 1)
    assert RECEPTORS_LISTED == 200
    assert "Receptors within 1000 m</td><td>250</td>" in page  # the summary counts them all
    # the table lists 200, coded values with the registry's labels (as the map shows them)
    assert "nearest 200 of 250" in page and page.count("<td>学校 School</td>") == 200
    assert not any(f"<td>目标{i}</td>" in page for i in range(250, 280))  # (those 5 km away)
