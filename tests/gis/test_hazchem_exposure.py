"""Population exposure rings, cross-checked against an independent shapely/numpy computation."""

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from gis import hazchem
from hazchem_world import RES, add, cell_polygons, metric, pt, write_population
from layers.crs import METRIC_EPSG
from layers.settings import StoreSettings

L_SHAPE = shapely.Polygon([(0, 0), (200, 0), (200, 100), (100, 100), (100, 200), (0, 200)])
PARK = shapely.Polygon([(-3000, -3000), (-2000, -3000), (-2000, -2300), (-2600, -2200)])


@pytest.fixture
def exposure(clean, tmp_path):
    people = np.random.default_rng(5).integers(0, 50, (120, 120)).astype(float)
    with clean.begin() as conn:
        hazchem.reset_rules(conn)
        write_population(conn, tmp_path / "pop_random.tif", people)
        ids = {"X": add(conn, "hazard_installations", L_SHAPE, name="X",
                        chemicals=[{"name": "液氨", "quantity_t": 12}]),
               "P": add(conn, "chemical_parks", PARK, name="P")}
        add(conn, "receptors", pt(400, 50), name="school 200 m", kind="school", people=30)
        add(conn, "receptors", pt(950, 50), name="homes 750 m", kind="residential", people=80)       # 二类
        add(conn, "receptors", pt(50, 3199), name="hospital 2999 m", kind="hospital", people=200)
        add(conn, "receptors", pt(-4000, 100), name="offices 4000 m", kind="office", people=150)    # 一类
        add(conn, "receptors", pt(50, -6000), name="market 6000 m", kind="market", people=10)
    hazchem.run(clean, StoreSettings(database_url=None))
    with clean.connect() as conn:
        rings = conn.execute(text("SELECT * FROM exposure_rings ORDER BY subject_layer, subject_id, outer_m")).mappings().all()
    return people, ids, rings


def independent_ring_people(people: np.ndarray, geom, rings_m) -> list[float]:
    """Σ value x (cell ∩ ring area) / cell area over every cell, with shapely buffers of the subject."""
    cells, index = cell_polygons()
    cells = metric(cells)
    values = people[index[:, 0], index[:, 1]]
    out, inner = [], None
    for i, d in enumerate(rings_m):
        outer = shapely.buffer(metric(geom), d, quad_segs=16)
        ring = outer if i == 0 else shapely.difference(outer, inner)
        out.append(float((shapely.area(shapely.intersection(cells, ring)) / RES**2 * values).sum()))
        inner = outer
    return out


def test_ring_people_match_an_independent_computation(exposure):
    people, ids, rings = exposure
    cfg = hazchem.load_config()
    assert [r["outer_m"] for r in rings] == list(cfg.rings_m) * 2
    for layer, geom, sid in (("hazard_installations", L_SHAPE, ids["X"]), ("chemical_parks", PARK, ids["P"])):
        mine = [r for r in rings if r["subject_layer"] == layer and r["subject_id"] == sid]
        expected = independent_ring_people(people, geom, cfg.rings_m)
        assert [r["people"] for r in mine] == pytest.approx(expected, rel=1e-5)
        assert [r["people_within"] for r in mine] == pytest.approx(np.cumsum(expected), rel=1e-5)
        assert [r["inner_m"] for r in mine] == [0, 500, 1000, 3000]
        assert len({r["run_id"] for r in mine}) == 1


def test_receptors_counted_by_ring_and_class(exposure):
    _, ids, rings = exposure
    x = {r["outer_m"]: r for r in rings if r["subject_layer"] == "hazard_installations"}
    assert (x[500]["receptors_high_sensitive"], x[500]["receptor_people"]) == (1, 30)
    assert (x[1000]["receptors_general_2"], x[1000]["receptor_people"]) == (1, 80)
    assert (x[3000]["receptors_high_sensitive"], x[3000]["receptor_people"]) == (1, 200)
    assert (x[5000]["receptors_general_1"], x[5000]["receptor_people"]) == (1, 150)
    counted = sum(r[f"receptors_{c}"] for r in x.values() for c in
                  ("high_sensitive", "important", "general_1", "general_2", "general_3"))
    assert counted == 4  # the market 6 km away is in no ring


def test_ring_areas_in_the_database(exposure, engine):
    with engine.connect() as conn:
        areas = conn.execute(text(f"SELECT outer_m, ST_Area(ST_Transform(geom, {METRIC_EPSG})) FROM exposure_rings "
                                  "WHERE subject_layer = 'hazard_installations' ORDER BY outer_m")).all()
    discs = [shapely.area(shapely.buffer(L_SHAPE, d, quad_segs=16)) for d in (500, 1000, 3000, 5000)]
    assert [a for _, a in areas] == pytest.approx(np.diff([0, *discs]), rel=1e-4)


@pytest.mark.parametrize("grid_synthetic", [True, False])
def test_real_installation_takes_the_grids_synthetic_flag(clean, tmp_path, grid_synthetic):
    """A real enterprise and installation: their grading, rings and risk score are synthetic exactly
    when the population grid is (rasters.synthetic), or where a synthetic receptor is counted."""
    with clean.begin() as conn:
        hazchem.reset_rules(conn)
        write_population(conn, tmp_path / "pop_flag.tif", {(300, 50): 40}, synthetic=grid_synthetic)
        ent = add(conn, "enterprises", shapely.box(-20, -20, 120, 120), name="real E", kind="storage", synthetic=False)
        inst = add(conn, "hazard_installations", shapely.box(0, 0, 100, 100), name="real X", enterprise_id=ent,
                   synthetic=False, chemicals=[{"name": "液氨", "quantity_t": 12}])
        add(conn, "receptors", pt(50, 2100), name="demo homes 2000 m", kind="residential", people=50)  # synthetic
    stats = hazchem.run(clean, StoreSettings(database_url=None))
    note = "人口来自合成栅格 / population from a synthetic grid"
    with clean.connect() as conn:
        grading = conn.execute(text("SELECT synthetic, population FROM installation_gradings "
                                    "WHERE installation_id = :i"), {"i": inst}).one()
        rings = dict(conn.execute(text("SELECT outer_m, synthetic FROM exposure_rings WHERE subject_id = :i "
                                       "AND subject_layer = 'hazard_installations'"), {"i": inst}).all())
        score = conn.execute(text("SELECT synthetic FROM risk_scores WHERE subject_layer = 'enterprises' "
                                  "AND subject_id = :e"), {"e": ent}).scalar_one()
    assert grading.population["grid_people"] == 40 and grading.population["raster_synthetic"] is grid_synthetic
    assert grading.synthetic is grid_synthetic and grading.population["notes"] == ([note] if grid_synthetic else [])
    assert stats["population_raster_synthetic"] is grid_synthetic and stats["notes"] == grading.population["notes"]
    # the synthetic receptor lies 2000 m from the installation: in the 1-3 km ring only
    assert rings == {500: grid_synthetic, 1000: grid_synthetic, 3000: True, 5000: grid_synthetic}
    assert score is grid_synthetic  # scored on the 1 km ring; no violation, no accident
