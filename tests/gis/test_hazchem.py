"""Hazchem analyses on a real PostGIS: GB 18218 grading through the database (every grade boundary,
a mixture, α counted around the plant boundary), safety-distance violations, risk grades, runs."""

import numpy as np
import pyproj
import pytest
import shapely
from sqlalchemy import text

from gis import hazchem
from gis.errors import AnalysisError
from hazchem_world import (BOUNDARY_CASES, EXPECTED_VIOLATIONS, add, box, grading_world, pt, violations_world,
                           write_population)
from layers.crs import METRIC_EPSG
from layers.derived import latest_run
from layers.registry import MAX_PEOPLE
from layers.settings import StoreSettings
from layers.topics.hazchem import PROTECTION_CLASSES

STORE = StoreSettings(database_url=None)


@pytest.fixture
def world(clean, tmp_path):
    with clean.begin() as conn:
        hazchem.reset_rules(conn)
        ids = grading_world(conn, tmp_path)
    return clean, ids


def gradings(engine) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT h.name, g.*, h.level AS stored_level FROM installation_gradings g "
            "JOIN hazard_installations h ON h.id = g.installation_id")).mappings().all()
    return {r["name"]: r for r in rows}


def test_grade_boundaries_written_back(world):
    engine, ids = world
    stats = hazchem.run(engine, STORE)
    g = gradings(engine)
    for name, _, q, level in BOUNDARY_CASES:
        row = g[name]
        assert row["alpha"] == 0.5 and row["exposed_people"] == 0, name
        assert row["s"] == pytest.approx(q / 5) and row["r"] == pytest.approx(0.4 * q), name
        assert row["level"] == level and row["stored_level"] == level, name
        assert row["is_major"] == (q >= 5), name
        assert row["kinds"] == ["toxic"]
    assert stats["levels"] == {"1": 1, "2": 2, "3": 3, "4": 2}  # G1 | G2 G3 | G4 G5 M1 | G6 G8
    assert stats["ungraded"] == 1 and stats["installations"] == 11


def test_mixture_and_alpha_population_around_the_plant_boundary(world):
    engine, ids = world
    hazchem.run(engine, STORE)
    m1 = gradings(engine)["M1 mixture"]
    # S = 2500/5000 + 30/10 + 500/1000 = 4; R = α (1·0.5 + 2·3 + 1·0.5) = 1.5 · 7 = 10.5 -> 三级
    assert (m1["s"], m1["r"], m1["alpha"], m1["level"]) == (4.0, 10.5, 1.5, 3)
    assert [(s["name"], s["q"], s["Q"], s["beta"]) for s in m1["substances"]] == [
        ("柴油", 2500.0, 5000.0, 1.0), ("氨", 30.0, 10.0, 2.0), ("混合溶剂（甲苯、二甲苯）", 500.0, 1000.0, 1.0)]
    assert m1["substances"][1]["cas"] == "7664-41-7"
    pop = m1["population"]
    # grid: 20 (whole cell) + 30/2 (cell halved by the zone's edge) = 35; residents max(35, 50) = 50;
    # + the school's 12 = 62. The office 550 m away and the shop inside the site do not count.
    assert pop["grid_people"] == pytest.approx(35.0, abs=1e-6)
    assert (pop["resident_receptor_people"], pop["visitor_receptor_people"], pop["exposed_people"]) == (50, 12, 62)
    assert pop["boundary"] == "enterprise" and pop["boundary_id"] == ids["E1"] and pop["buffer_m"] == 500
    assert m1["kinds"] == ["flammable", "toxic"]
    m2 = gradings(engine)["M2 empty"]  # same plant boundary, so the same α; no inventory: S = 0
    assert (m2["s"], m2["r"], m2["alpha"], m2["level"], m2["exposed_people"]) == (0.0, 0.0, 1.5, None, 62)


def test_unknown_substance_recorded_and_level_kept(world):
    engine, ids = world
    hazchem.run(engine, STORE)
    u1 = gradings(engine)["U1 unknown"]
    assert "神秘化合物" in u1["error"] and "hazard_class" in u1["error"]
    assert u1["level"] is None and u1["stored_level"] == 2  # the imported level stays


def test_exposed_people_rules():
    cfg = hazchem.load_config()
    assert hazchem.exposed_people(29.4, 0, 0, cfg) == (29, 29.4)
    assert hazchem.exposed_people(29.5, 0, 0, cfg) == (30, 29.5)  # half up: α 1.2, not 1.0
    assert hazchem.exposed_people(10, 40, 5, cfg)[0] == 45      # residents counted once
    no_visitors = hazchem.Config(**{**cfg.__dict__, "count_visitors": False})
    assert hazchem.exposed_people(10, 40, 5, no_visitors)[0] == 40


def test_installation_kinds():
    S = hazchem.gb18218.Substance
    assert hazchem.installation_kinds([S("液氯", 1)]) == ["toxic"]
    assert hazchem.installation_kinds([S("TNT", 1)]) == ["explosive"]
    assert hazchem.installation_kinds([S("丙烯醛", 1)]) == ["flammable", "toxic"]  # J2;W5.3
    assert hazchem.installation_kinds([S("甲醛(含量>90%)", 1)]) == ["toxic"]  # Table 1 toxic group, no class
    assert hazchem.installation_kinds([S("汽油", 1)]) == ["flammable"]
    assert hazchem.installation_kinds([S("无名物", 1)]) == []


def violations(engine) -> set:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT installation_name, receptor_name, distance_m, required_m, shortfall_m, "
                                 f"protection_class, ST_Length(ST_Transform(geom, {METRIC_EPSG})) AS len, run_id "
                                 "FROM safety_violations")).mappings().all()
    for r in rows:
        assert r["shortfall_m"] == pytest.approx(r["required_m"] - r["distance_m"])
        assert r["len"] == pytest.approx(r["distance_m"], abs=1e-3)  # the line is the shortest path
    return rows


def test_violations_match_hand_worked_pairs(clean, tmp_path):
    with clean.begin() as conn:
        ids = violations_world(conn, tmp_path)
    stats = hazchem.run(clean, STORE)
    rows = violations(clean)
    got = {(r["installation_name"], r["receptor_name"], round(r["distance_m"], 3), r["required_m"]) for r in rows}
    assert got == EXPECTED_VIOLATIONS and stats["violations"] == 4
    assert {r["receptor_name"]: r["protection_class"] for r in rows} == {
        "S1": "high_sensitive", "R4": "general_3", "H1": "high_sensitive", "R1": "general_3"}
    assert {r["run_id"] for r in rows} == {stats["run_id"]}
    with clean.connect() as conn:
        assert conn.execute(text("SELECT level FROM hazard_installations WHERE id = :i"),
                            {"i": ids["T1"]}).scalar_one() == 1


def to_metric(wkb):
    t = pyproj.Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)
    return shapely.transform(shapely.from_wkb(wkb), lambda c: np.column_stack(t.transform(c[:, 0], c[:, 1])))


def test_violations_cross_checked_with_shapely(clean, tmp_path):
    """Independent check: every pair's distance (pyproj + shapely) against the rules in Python."""
    with clean.begin() as conn:
        violations_world(conn, tmp_path)
    hazchem.run(clean, STORE)
    with clean.connect() as conn:
        inst = conn.execute(text("SELECT h.id, h.name, h.level, g.kinds, ST_AsBinary(h.geom) AS g "
                                 "FROM hazard_installations h JOIN installation_gradings g ON g.installation_id = h.id"
                                 )).all()
        recs = conn.execute(text(f"SELECT r.name, {hazchem.CLASS_SQL.format(a='r')} AS c, "
                                 "ST_AsBinary(r.geom) AS g FROM receptors r"),
                            hazchem.load_config().class_params()).all()
        rules = conn.execute(text("SELECT installation_kind, level, receptor_class, distance_m FROM safety_rules")).all()
    expected = set()
    for i in inst:
        for r in recs:
            req = [d for k, lv, c, d in rules if (k == "any" or k in i.kinds) and lv in (None, i.level) and c == r.c]
            dist = shapely.distance(to_metric(i.g), to_metric(r.g))
            if req and dist < max(req):
                expected.add((i.name, r.name, round(dist, 3)))
    assert {(a, b, round(d, 3)) for a, b, d, _ in EXPECTED_VIOLATIONS} == expected
    assert {(r["installation_name"], r["receptor_name"], round(r["distance_m"], 3)) for r in violations(clean)} == expected


def test_rule_edits_change_violations_and_mark_stale(clean, tmp_path):
    with clean.begin() as conn:
        violations_world(conn, tmp_path)
    hazchem.run(clean, STORE)
    with clean.begin() as conn:
        assert latest_run(conn, "hazchem")["stale"] is False  # its own level/grade write-backs do not count
        conn.execute(text("UPDATE safety_rules SET distance_m = 1002 WHERE installation_kind = 'toxic' AND level = 1"))
        status = latest_run(conn, "hazchem")
    assert status["stale"] is True and status["changed_inputs"] == ["safety_rules"]
    stats = hazchem.run(clean, STORE)  # S2 at 1001 m now violates too
    assert stats["violations"] == 5
    with clean.connect() as conn:
        assert latest_run(conn, "hazchem")["stale"] is False


def test_risk_grades_written_back(clean, tmp_path):
    with clean.begin() as conn:
        ids = violations_world(conn, tmp_path)
    stats = hazchem.run(clean, STORE)
    with clean.connect() as conn:
        grades = dict(conn.execute(text("SELECT name, risk_grade FROM enterprises")).all())
        park = conn.execute(text("SELECT risk_grade FROM chemical_parks")).scalar_one()
        et = conn.execute(text("SELECT score, indicators FROM risk_scores WHERE subject_layer = 'enterprises' "
                               "AND subject_id = :i"), {"i": ids["ET"]}).one()
    # ET: 一级 (40) + violations S1 high_sensitive (10) + R4 general_3 (2) + nobody in the grid (0)
    # + one accident with one death in 5 years (2 + 5; the 10-year-old one is out) = 59 -> orange.
    assert et.score == 59 and et.indicators["points"] == {"level": 40, "violations": 12, "population": 0,
                                                          "accidents": 7}
    assert et.indicators["violations"] == {"high_sensitive": 1, "general_3": 1}
    assert grades == {"ET": "orange", "EB": "blue"} and park == "orange"
    assert stats["risk_grades"]["enterprises"] == {"red": 0, "orange": 1, "yellow": 0, "blue": 1}


def test_score_thresholds_and_floor():
    cfg = hazchem.load_config()
    base = {"max_level": None, "violations": {}, "exposed_people": 0, "accidents": 0, "accident_deaths": 0}
    assert hazchem.score(base, cfg)[:2] == (0, "blue")
    assert hazchem.score({**base, "max_level": 3, "exposed_people": 100}, cfg)[:2] == (25, "yellow")
    assert hazchem.score({**base, "max_level": 3, "exposed_people": 99}, cfg)[:2] == (20, "blue")
    assert hazchem.score({**base, "max_level": 2, "exposed_people": 1000, "accidents": 2, "accident_deaths": 1}, cfg)[:2] \
        == (30 + 10 + 9, "orange")
    # violations are capped at 30, accidents at 10: 40 + 30 + 20 + 10 = 100
    full = {"max_level": 1, "violations": {"high_sensitive": 9}, "exposed_people": 10000, "accidents": 9,
            "accident_deaths": 9}
    assert hazchem.score(full, cfg)[:2] == (100, "red")
    assert hazchem.score({**base, "max_level": 1}, cfg)[:2] == (40, "orange")  # 一级 floor lifts yellow/blue


def test_run_is_repeatable_and_records_run_ids(clean, tmp_path):
    with clean.begin() as conn:
        violations_world(conn, tmp_path)
    first = hazchem.run(clean, STORE)
    second = hazchem.run(clean, STORE)
    assert second["run_id"] > first["run_id"] and second["violations"] == first["violations"]
    with clean.connect() as conn:
        for table in hazchem.DERIVED:
            runs = conn.execute(text(f"SELECT DISTINCT run_id FROM {table}")).scalars().all()
            assert runs == [second["run_id"]], table
        stored = conn.execute(text("SELECT stats FROM analysis_runs WHERE id = :i"), {"i": second["run_id"]}).scalar_one()
        assert stored["violations"] == 4 and stored["levels"] == {"1": 1, "2": 0, "3": 0, "4": 1}
        # a base-layer edit marks the run stale until the next run
        add(conn, "receptors", pt(2000, 2000), name="新学校", kind="school", people=10)
        status = latest_run(conn, "hazchem")
    assert status["stale"] and status["changed_inputs"] == ["receptors"]


def test_missing_population_raster_is_a_clear_error(clean, tmp_path):
    with clean.begin() as conn:
        violations_world(conn, tmp_path)
        conn.execute(text("UPDATE rasters SET path = :p WHERE name = 'population'"), {"p": str(tmp_path / "gone.tif")})
    with pytest.raises(AnalysisError, match="file is missing"):
        hazchem.run(clean, STORE)


def test_defaults_and_config_validation(tmp_path):
    rules = hazchem.default_rules()
    assert len(rules) == 40 and all(r["basis"] for r in rules)
    assert {r["receptor_class"] for r in rules} == set(PROTECTION_CLASSES)
    (tmp_path / "risk_scoring.toml").write_text("[exposure]\nrings_m = [1000, 500]\n", encoding="utf-8")
    with pytest.raises(AnalysisError, match="rings_m"):
        hazchem.load_config(tmp_path)
    (tmp_path / "risk_scoring.toml").write_text("[exposure]\nrings_m = [300, 1000, 2000]\n", encoding="utf-8")
    cfg = hazchem.load_config(tmp_path)  # an override keeps the other defaults
    assert cfg.rings_m == (300, 1000, 2000) and cfg.alpha_buffer_m == 500



def test_moved_receptor_is_measured_where_it_now_is(clean, tmp_path):
    """Distances use the stored metric geometry (geom_m, generated by PostgreSQL): an edit of a
    receptor's geometry must move it there too."""
    with clean.begin() as conn:
        violations_world(conn, tmp_path)
        conn.execute(text("UPDATE receptors SET geom = ST_Translate(geom, 0.05, 0) WHERE name = 'R1'"))  # ~5 km east
        moved = conn.execute(text(f"SELECT ST_Distance(geom_m, ST_Transform(geom, {METRIC_EPSG})) FROM receptors "
                                  "WHERE name = 'R1'")).scalar_one()
    assert moved == 0
    stats = hazchem.run(clean, STORE)
    assert stats["violations"] == 3
    assert "R1" not in {r["receptor_name"] for r in violations(clean)}


def _crowd_world(conn, tmp_path, people: int, at: float) -> int:
    """A lone installation K1 (100 m square at the origin, 10 t of chlorine: S = 2), no grid population,
    a residential area ``at`` m east of its edge and a school ``at`` + 100 m north of it, ``people`` each."""
    hazchem.reset_rules(conn)
    write_population(conn, tmp_path / "pop_none.tif", {})
    k1 = add(conn, "hazard_installations", box(0, 0, 100, 100), name="K1", chemicals=[{"name": "液氯", "quantity_t": 10}])
    add(conn, "receptors", pt(100 + at, 50), name="大小区", kind="residential", people=people)
    add(conn, "receptors", pt(50, 200 + at), name="大学校", kind="school", people=people)
    return k1


def test_people_at_the_import_maximum_are_summed_exactly(clean, tmp_path):
    """Both receptors at the import maximum (10 000 000 people), 200 m and 300 m from K1: α counts
    max(grid 0, residents 10 000 000) + the school's 10 000 000 = 20 000 000 (α 2: R = 2 · 4 · 10/5 = 16,
    三级), and the 0-500 m ring holds both: 20 000 000 people at receptors."""
    with clean.begin() as conn:
        k1 = _crowd_world(conn, tmp_path, MAX_PEOPLE, 200)
    hazchem.run(clean, STORE)
    with clean.connect() as conn:
        g = conn.execute(text("SELECT exposed_people, population, alpha, r, level FROM installation_gradings "
                              "WHERE installation_id = :i"), {"i": k1}).one()
        ring = conn.execute(text("SELECT receptor_people FROM exposure_rings WHERE subject_layer = 'hazard_installations' "
                                 "AND subject_id = :i AND outer_m = 500"), {"i": k1}).scalar_one()
    assert g.exposed_people == 20_000_000 and ring == 20_000_000
    assert (g.population["resident_receptor_people"], g.population["visitor_receptor_people"]) == (MAX_PEOPLE, MAX_PEOPLE)
    assert (g.alpha, g.r, g.level) == (2.0, 16.0, 3)


def test_people_sums_beyond_2_to_the_31_are_stored(clean, tmp_path):
    """People above the import maximum, stored before it existed (``add`` writes without the import's
    checks): 2 000 000 000 + 2 000 000 000 was an integer overflow of the sum; the sums and the result
    columns are bigint (migration 0013), so α counts 4 000 000 000 and so does the 0-500 m ring."""
    with clean.begin() as conn:
        k1 = _crowd_world(conn, tmp_path, 2_000_000_000, 200)
    hazchem.run(clean, STORE)
    with clean.connect() as conn:
        g = conn.execute(text("SELECT exposed_people FROM installation_gradings WHERE installation_id = :i"),
                         {"i": k1}).scalar_one()
        ring = conn.execute(text("SELECT receptor_people FROM exposure_rings WHERE subject_layer = 'hazard_installations' "
                                 "AND subject_id = :i AND outer_m = 500"), {"i": k1}).scalar_one()
    assert g == ring == 4_000_000_000
