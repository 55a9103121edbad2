"""ERG lookups, zone shapes, population sums, zone contents and resource ranking on a hand-made scene.

Expected numbers are worked out by hand from the scene in ``test_emergency_fixture.py`` (metres on a
36/72 km/h road network) or by an independent method (shapely cell-by-cell areas, pyproj geodesics).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyproj import Geod
from shapely.geometry import Point, box
from sqlalchemy import text

from gis import emergency as em
from gis import roadgraph
from gis.errors import UnknownSubstanceError
from gis.raster import SYNTHETIC_NOTES, registered, zonal_sum
from layers.crs import from_metric, to_metric
from test_emergency_fixture import CELL_PEOPLE, INCIDENT, X0, Y0, build_scene, ll, write_population

GEOD = Geod(ellps="WGS84")


# --------------------------------------------------------------- ERG data (values read from ERG2024 by hand)

@pytest.mark.parametrize("name,spill,tod,iso,pad", [
    ("1005", "small", "night", 30, 200), ("chlorine", "small", "night", 60, 1500), ("硫化氢", "large", "night", 400, 6300),
    ("UN1050", "small", "day", 30, 100), ("二氧化硫", "small", "night", 100, 2600), ("光气", "large", "day", 500, 3000),
    ("hydrogen cyanide", "large", "night", 200, 1800), ("74-90-8", "small", "day", 60, 200),
])
def test_table1_rows(name, spill, tod, iso, pad):
    d = em.erg_distances(em.find_material(name), spill, tod)
    assert (d.basis, d.isolation_m, d.protective_m, d.verified) == ("table1", iso, pad, True)
    assert "ERG2024" in d.rows[0]["source"] and d.rows[0]["edition"] == "ERG2024"


def test_table3_by_container_and_wind_and_largest_when_unknown():
    chlorine = em.find_material("氯气")
    d = em.erg_distances(chlorine, "large", "day", "highway_tank", wind_speed_ms=4.0)  # 14.4 km/h: moderate
    assert (d.basis, d.isolation_m, d.protective_m) == ("table3", 600, 3300)
    d = em.erg_distances(chlorine, "large", "night")  # nothing known: the largest row (rail car, low wind, 11.0+)
    assert (d.isolation_m, d.protective_m, d.at_least) == (1000, 11000, True)
    assert any("container not given" in n for n in d.notes)
    d = em.erg_distances(em.find_material("ammonia"), "large", "day", "agricultural_nurse_tank", 10.0)  # 36 km/h
    assert (d.isolation_m, d.protective_m) == (60, 300)
    with pytest.raises(em.AnalysisError, match="container"):
        em.erg_distances(em.find_material("1079"), "large", "day", "agricultural_nurse_tank")


def test_guides_for_flammables_and_explicit_guide():
    d = em.erg_distances(em.find_material("汽油"), "large", "night")
    assert (d.basis, d.guide, d.isolation_m, d.protective_m) == ("guide", "128", 50, 300)
    assert em.erg_distances(em.find_material("LPG"), "large", "day").protective_m == 800
    assert em.erg_distances(em.find_material("benzene"), "small", "day").protective_m is None
    methanol = em.erg_distances(em.find_material("甲醇"), "large", "day")
    assert methanol.protective_m is None and any("downwind" in n for n in methanol.notes)
    assert em.erg_distances(em.find_material("guide:130"), "large", "day").protective_m == 300


def test_unverified_row_is_flagged():
    d = em.erg_distances(em.find_material("天然气"), "large", "day")  # UN1971 index row not verified
    assert d.verified is False and d.protective_m == 800


@pytest.mark.parametrize("bad", ["chlorin", "1090", "UN9999", "", "guide:999", "'; DROP TABLE roads; --"])
def test_unknown_chemical_says_how_to_name_one(bad):
    with pytest.raises(UnknownSubstanceError) as exc:
        em.find_material(bad)
    assert "UN number" in str(exc.value) and "/emergency/chemicals" in str(exc.value)
    if bad == "chlorin":  # (the suggestion first: QA found it at the end of 600 characters)
        assert str(exc.value).startswith("unknown chemical 'chlorin'; did you mean: ") and "UN1017" in str(exc.value)
        assert exc.value.zh.startswith("未知化学品 'chlorin'；是否指：")


def test_every_required_material_and_guide_is_shipped():
    for un in ("1005", "1017", "1053", "1050", "1079", "1076", "1051", "1203", "1202", "1075", "1971", "1230", "1114"):
        assert un in em.materials()
    for m in em.materials().values():
        assert m.table1 == (m.un_number in em.distance_rows()) or m.guide in em.guides(), m


def test_a_materials_own_name_wins_over_another_materials_alias():
    # butane and 丁烷 are Butane (UN1011), though LPG (UN1075) lists both as aliases; LPG's own aliases still work
    assert [em.find_material(q).un_number for q in ("butane", "丁烷", "Butane", "液化气", "LPG")] == \
        ["1011", "1011", "1011", "1075", "1075"]
    for m in em.materials().values():  # every material is found by its own names and number
        assert {em.find_material(q).un_number for q in (m.un_number, m.name_en, m.name_zh)} == {m.un_number}, m


# --------------------------------------------------------------- zone shapes

def test_isolation_circle_and_protective_circle_without_wind():
    d = em.erg_distances(em.find_material("chlorine"), "small", "night")
    z = em.zone_geometries(*ll(*INCIDENT), d, None)
    iso, paz = to_metric(z["isolation"]["geom"]), to_metric(z["protective"]["geom"])
    assert iso.area == pytest.approx(math.pi * 60 ** 2, rel=0.01)
    assert paz.area == pytest.approx(math.pi * (1500 ** 2 - 60 ** 2), rel=0.01)
    assert not iso.intersection(paz).area > 1e-3  # disjoint: counts add up


@pytest.mark.parametrize("wind_from", [0, 90, 225, 300])
def test_downwind_square_points_downwind(wind_from):
    d = em.erg_distances(em.find_material("phosgene"), "small", "night")  # 100 m / 2.5 km
    lon, lat = ll(*INCIDENT)
    paz = em.zone_geometries(lon, lat, d, wind_from)["protective"]["geom"]
    c = paz.centroid
    azimuth, _, dist = GEOD.inv(lon, lat, c.x, c.y)
    assert (azimuth - (wind_from + 180)) % 360 == pytest.approx(0, abs=1.0) or \
        (azimuth - (wind_from + 180)) % 360 == pytest.approx(360, abs=1.0)
    assert dist == pytest.approx(1250, rel=0.03)  # centroid of the square sits half a side downwind
    assert to_metric(paz).area == pytest.approx(2500 ** 2 - math.pi * 100 ** 2 / 2, rel=0.01)


# --------------------------------------------------------------- population grid

def test_population_constant_grid_is_area_times_density(tmp_path):
    path = write_population(tmp_path / "p.tif")
    circle = from_metric(Point(X0 + 123, Y0 + 456).buffer(777, quad_segs=64))
    n = zonal_sum(path, [circle, None])
    assert n[0] == pytest.approx(CELL_PEOPLE * to_metric(circle).area / 1e4, rel=1e-4)
    assert n[1] == 0.0


def test_population_varied_grid_matches_cell_by_cell_shapely(tmp_path):
    rng = np.random.default_rng(7)
    cells = rng.integers(0, 50, size=(90, 90)).astype(float)
    path = write_population(tmp_path / "v.tif", cells=cells)
    zone_m = box(X0 - 333, Y0 - 250, X0 + 417, Y0 + 610).union(Point(X0 + 800, Y0).buffer(300))
    zone = from_metric(zone_m)
    expected = 0.0
    for r in range(90):
        for c in range(90):
            x0, y1 = X0 - 3000 + c * 100, Y0 + 6000 - r * 100
            expected += cells[r, c] * box(x0, y1 - 100, x0 + 100, y1).intersection(to_metric(zone)).area / 1e4
    assert zonal_sum(path, [zone])[0] == pytest.approx(expected, rel=1e-4)


def test_population_none_without_registered_grid(clean):
    with clean.connect() as conn:
        conn.execute(text("DELETE FROM rasters WHERE name = 'population'"))
        assert registered(conn, "population") is None
        assert em.prepare(conn).population is None


# --------------------------------------------------------------- the whole incident on the hand-made scene

@pytest.fixture
def scene(clean, tmp_path):
    build_scene(clean, tmp_path)
    return clean


def _analyse(engine, **kw):
    args = dict(chemical="chlorine", spill="small", time="night", resource_limit=10)
    args.update(kw)
    with engine.connect() as conn:
        return em.analyse_incident(conn, em.IncidentInput(*ll(*INCIDENT), **args))


def test_zone_contents_and_population(scene):
    r = _analyse(scene)
    iso, paz = r["zones"]["isolation"], r["zones"]["protective"]
    assert [i["name"] for i in iso["receptors"]["kindergarten"]] == ["幼儿园A"]  # 28 m from the spill
    assert [i["name"] for i in paz["receptors"]["school"]] == ["学校B"]          # 135 m
    assert "hospital" not in paz["receptors"]                                    # 4.2 km
    assert [h["name"] for h in paz["hazard_installations"]] == ["储罐区X"] and not iso["hazard_installations"]
    assert paz["tailings_ponds"] == []
    for z in (iso, paz):  # population: density x polygon area (independent of exactextract)
        area = to_metric(em.zone_geometries(*ll(*INCIDENT), em.erg_distances(em.find_material("1017"), "small", "night"),
                                          None)["isolation" if z is iso else "protective"]["geom"]).area
        assert z["population"] == pytest.approx(CELL_PEOPLE * area / 1e4, rel=1e-3, abs=0.06)  # rounded to 0.1
    assert r["erg"]["verified"] and r["synthetic_data"] is True
    assert set(r["timings_ms"]) == {"zones", "resource_candidates", "contents", "population", "total"}



def test_population_from_a_synthetic_grid_marks_the_answer_synthetic(scene):
    """Real features only: the answer is synthetic exactly when the registered grid it counted is."""
    note = SYNTHETIC_NOTES["population"]
    with scene.connect() as conn:  # edits rolled back at the end
        conn.execute(text("UPDATE emergency_resources SET synthetic = false"))
        assert conn.execute(text("SELECT bool_or(synthetic) FROM rasters WHERE name = 'population'")).scalar()
        inp = em.IncidentInput(*ll(*INCIDENT), chemical="chlorine", spill="small", time="night")
        on_grid = em.analyse_incident(conn, inp)
        conn.execute(text("UPDATE rasters SET synthetic = false WHERE name = 'population'"))
        real = em.analyse_incident(conn, inp)
        conn.rollback()
    assert on_grid["zones"]["isolation"]["population"] > 0
    assert on_grid["synthetic_data"] is True and note in on_grid["warnings"]
    assert em.SYNTHETIC_FEATURES not in on_grid["warnings"]
    assert real["synthetic_data"] is False and note not in real["warnings"]

def test_resources_ranked_by_travel_time_with_reasons(scene):
    res = _analyse(scene)["resources"]
    access = em.ACCESS_SPEED_KMH / 3.6
    fire = res["fire_station"]
    # by hand: F2 2000 m at 10 m/s + 3000 m at 20 m/s + (15 + 10) m off-road; F1 4000 m at 10 m/s + 30 m;
    # F4 is nearer in a straight line than F1 (3829 m < 4000 m) but slower (510 m off-road to its node)
    assert [f["name"] for f in fire] == ["F2", "F1", "F4"]
    assert fire[0]["travel_s"] == pytest.approx(200 + 150 + 25 / access, abs=1.5)
    assert fire[1]["travel_s"] == pytest.approx(400 + 30 / access, abs=1.5)
    assert fire[2]["travel_s"] == pytest.approx(350 + (math.hypot(500, 100) + 10) / access, abs=1.5)
    assert fire[2]["straight_m"] < fire[1]["straight_m"]
    hosp = res["hospital"]
    assert [h["name"] for h in hosp] == ["H2", "H1"] and hosp[1]["reachable"] is False
    assert "not connected" in hosp[1]["reason"]
    # D1 is over 1 km from any road: reached with that leg at the access speed, and said (was "unreachable")
    d1 = res["depot"][0]
    assert d1["reachable"] and "the resource is 1" in d1["warning"] and "m from the nearest road" in d1["warning"]
    assert d1["travel_s"] - d1["network_s"] > em.MAX_SNAP_M / access
    shelters = res["shelter"]
    assert [s["name"] for s in shelters] == ["S2", "S1"]
    assert shelters[0]["usable"] and not shelters[1]["usable"] and shelters[1]["in_zone"] == "protective"


def test_nearby_filters_kind_and_capacity_and_hides_contacts(scene):
    lon, lat = ll(*INCIDENT)
    with scene.connect() as conn:
        ranked = em.rank_resources(conn, lon, lat, kinds=["fire_station"], min_capacity=2)
        assert [r["name"] for r in ranked] == ["F2", "F1"] and "contact_phone" not in ranked[0]
        ranked = em.rank_resources(conn, lon, lat, kinds=["hospital"], show_contacts=True)
        assert ranked[0]["contact_phone"] == "0871-0000000"
        with pytest.raises(em.AnalysisError, match="kind must be one of"):
            em.rank_resources(conn, lon, lat, kinds=["tank"])


def test_travel_times_equal_one_query_per_resource(scene):
    """Independent check: pgr_dijkstraCost resource -> incident, one query each, on the forward graph."""
    lon, lat = ll(*INCIDENT)
    with scene.connect() as conn:
        ranked = {r["name"]: r for r in em.rank_resources(conn, lon, lat) if r["reachable"]}
        inc = conn.execute(text("SELECT id FROM road_nodes ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:x, :y), 4326) "
                                "LIMIT 1"), {"x": lon, "y": lat}).scalar_one()
        for name, r in ranked.items():
            node = conn.execute(text("SELECT n.id FROM road_nodes n, emergency_resources e WHERE e.name = :n "
                                     "ORDER BY n.geom <-> e.geom LIMIT 1"), {"n": name}).scalar_one()
            cost = conn.execute(text(
                "SELECT agg_cost FROM pgr_dijkstraCost('SELECT id, source, target, cost_s AS cost, "
                "reverse_cost_s AS reverse_cost FROM road_edges', :a, :b, true)"), {"a": node, "b": inc}).scalar()
            assert r["network_s"] == pytest.approx(cost or 0.0, abs=0.06), name  # rounded to 0.1 s


def test_saved_incident_keeps_inputs_result_and_zones(scene):
    r = _analyse(scene, wind_from_deg=270)
    with scene.begin() as conn:
        iid = em.save_incident(conn, r, "duty-officer")
    with scene.connect() as conn:
        row = conn.execute(text("SELECT created_by, chemical, spill, time_of_day, verified, status, result "
                                "FROM incidents WHERE id = :i"), {"i": iid}).mappings().one()
        zones = conn.execute(text("SELECT zone, distance_m, round(people::numeric, 1) AS people FROM incident_zones "
                                  "WHERE incident_id = :i ORDER BY zone"), {"i": iid}).all()
    assert (row["created_by"], row["chemical"], row["spill"], row["status"]) == ("duty-officer", "chlorine", "small", "open")
    assert row["result"]["zones"]["protective"]["shape"].startswith("顺风方形 downwind square")
    assert [(z.zone, z.distance_m) for z in zones] == [("isolation", 60), ("protective", 1500)]


def test_resources_inside_a_zone_never_crowd_out_usable_ones_and_are_flagged_or_warned(scene):
    lon, lat = ll(*INCIDENT)

    def zones(isolation_m, protective_m):  # circles around the incident (no wind)
        return em.zone_geometries(lon, lat, em.Distances(isolation_m, protective_m, "table1", "124", [], True), None)

    with scene.connect() as conn:
        near = zones(100, 1500)  # S1 (300 m away) inside the protective zone, S2 (2 km) outside
        ranked = em.rank_resources(conn, lon, lat, kinds=["shelter"], zones=near, per_kind=1)
        # S1 is nearer in a straight line, but inside the zone: S2 is the one candidate
        assert [(r["name"], r["usable"], r["in_zone"]) for r in ranked] == [("S2", True, None)]
        ranked = em.rank_resources(conn, lon, lat, kinds=["shelter"], zones=near)
        assert [(r["name"], r["usable"]) for r in ranked] == [("S2", True), ("S1", False)]
        assert "勿送人员" in ranked[1]["reason"] and "do not send people" in ranked[1]["reason"]
        # a fire station in a zone stays usable, with a warning; so does a hospital in the protective zone
        ranked = {r["name"]: r for r in em.rank_resources(conn, lon, lat, kinds=["fire_station", "hospital"],
                                                          zones=zones(100, 4100))}
        assert ranked["F1"]["usable"] and ranked["F1"]["in_zone"] == "protective" and "upwind" in ranked["F1"]["warning"]
        assert ranked["H2"]["usable"] and ranked["H2"]["in_zone"] == "protective" and ranked["H2"]["warning"]
        # a hospital in the isolation zone is not to be used
        h2 = next(r for r in em.rank_resources(conn, lon, lat, kinds=["hospital"], zones=zones(4100, 4200))
                  if r["name"] == "H2")
        assert not h2["usable"] and h2["in_zone"] == "isolation" and "do not send casualties" in h2["reason"]


def test_an_incident_off_the_road_network_still_gets_travel_times_with_a_warning(scene):
    with scene.connect() as conn:
        g = roadgraph.get(conn, em.prepare(conn).graph_key)
        lon, lat = ll(500, 1900)  # near the depot D1, 2 km from any road
        snap = float(g.nearest([lon], [lat])[1][0])
        assert em.MAX_SNAP_M < snap < em.OFFROAD_MAX_M
        ranked = em.rank_resources(conn, lon, lat, kinds=["fire_station"])
        far = em.rank_resources(conn, *ll(500, 15000), kinds=["fire_station"])  # beyond 5 km: no times
    assert sorted(r["name"] for r in ranked if r["reachable"]) == ["F1", "F2", "F4"]
    for r in ranked:  # the incident's off-road leg at the access speed is in the time, and said
        assert r["travel_s"] - r["network_s"] >= snap / (em.ACCESS_SPEED_KMH / 3.6) - 0.1
        assert f"the incident is {snap:.0f} m from the nearest road" in r["warning"]
    assert far and all(not r["reachable"] and "(> 5000 m)" in r["reason"] for r in far)


def test_a_zone_past_the_served_area_and_a_missing_kind_are_said(scene):
    """(QA: at the edge of the area a zone 85 % outside it showed "0 people" without a word; a kind with nothing
    within 60 km was left out of the list silently.)"""
    lon, lat = ll(*INCIDENT)
    with scene.connect() as conn:  # the served area's east edge through the spill: each zone (a circle) half out
        r = em.analyse_incident(conn, em.IncidentInput(lon, lat, chemical="chlorine", spill="small", time="night"),
                                area=(lon - 1, lat - 1, lon, lat + 1))
    said = [w for w in r["warnings"] if "outside the served area" in w]
    assert len(said) == 2 and all(w.startswith(("初始隔离区有 50%", "防护行动区有 50%")) for w in said), said
    missing = {k for k, found in r["resources"].items() if not found}
    assert missing and len([w for w in r["warnings"] if "公里内没有" in w]) == len(missing)
