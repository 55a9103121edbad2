"""Head-top analysis on a synthetic DEM whose flow path is known by construction.

The DEM (50 m cells, EPSG:4543) has one L-shaped valley: a channel down column 30 to row 30, then
east along row 30 to the edge. Elevation falls 5 m per channel cell down the first leg and 1 m per
cell along the second (steep enough that D8 does not cut the corner diagonally) and rises 10 m per
cell away from the channel, so D8 must follow the channel. Pond A's toe is the centre of cell (20, 30): its 1 km
path is 10 cells south then 10 cells east, ending at the centre of (30, 40).
"""

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import LineString, Point, box
from sqlalchemy import text

from gis import tailings
from gis.tailings import HeadTopSettings, pond_grade, trace
from layers import registry
from layers.crs import reproject
from layers.io import validate, write
from layers.settings import StoreSettings

X0, Y0, CELL, N = 570000.0, 2772000.0, 50.0, 100
TO_LONLAT = Transformer.from_crs("EPSG:4543", "EPSG:4326", always_xy=True)


def centre(row, col):
    return X0 + (col + 0.5) * CELL, Y0 - (row + 0.5) * CELL


def channel():
    return [(r, 30) for r in range(0, 31)] + [(30, c) for c in range(31, N)]


def make_dem(path):
    chan = np.array(channel())
    rows, cols = np.mgrid[0:N, 0:N]
    d2 = (rows[..., None] - chan[:, 0]) ** 2 + (cols[..., None] - chan[:, 1]) ** 2
    nearest = d2.argmin(axis=-1)  # index along the channel of the nearest channel cell
    along = np.array([1000.0 - 5.0 * i if i <= 30 else 850.0 - (i - 30) for i in range(len(chan))])
    dem = along[nearest] + 10.0 * np.sqrt(d2.min(axis=-1))
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32", crs="EPSG:4543",
                       transform=Affine(CELL, 0, X0, 0, -CELL, Y0), nodata=-9999) as dst:
        dst.write(dem.astype("float32"), 1)


POP_CELLS = {(10, 17): 100.0, (15, 18): 40.0, (3, 40): 500.0}  # (row, col) of 100 m cells -> people


def make_population(path):
    pop = np.zeros((N // 2, N // 2), dtype="float32")
    for (r, c), v in POP_CELLS.items():
        pop[r, c] = v
    with rasterio.open(path, "w", driver="GTiff", width=N // 2, height=N // 2, count=1, dtype="float32",
                       crs="EPSG:4543", transform=Affine(100, 0, X0, 0, -100, Y0), nodata=-1) as dst:
        dst.write(pop, 1)


def lonlat(geom):
    return reproject(geom, TO_LONLAT)


def put(conn, layer, rows, geoms):
    spec = registry.get(layer)
    frame = gpd.GeoDataFrame(rows, geometry=[lonlat(g) for g in geoms], crs="EPSG:4326")
    records, rejections, _ = validate(spec, frame, StoreSettings().area_bbox)
    assert not rejections, rejections
    write(conn, spec, records)


@pytest.fixture
def world(clean, tmp_path):
    make_dem(tmp_path / "dem.tif")
    make_population(tmp_path / "pop.tif")
    toe_a = TO_LONLAT.transform(*centre(20, 30))
    x, y = centre(29, 65)
    pond_b = box(centre(22, 55)[0] + 10, y, x + 10, centre(22, 55)[1])  # bottom edge through row 29 centres
    with clean.begin() as conn:
        for name, p in (("dem", tmp_path / "dem.tif"), ("population", tmp_path / "pop.tif")):
            conn.execute(text("INSERT INTO rasters (name, path, crs, units, synthetic) VALUES (:n, :p, 'EPSG:4543', "
                              "'test', true) ON CONFLICT (name) DO UPDATE SET path = EXCLUDED.path"),
                         {"n": name, "p": str(p)})
        put(conn, "tailings_ponds", {
            "name": ["A", "B", "C", "D"], "dam_height_m": [45, 20, 80, 10], "capacity_10k_m3": [1500, 50, 2000, None],
            "status": ["operating", "operating", "reclaimed", "closed"], "grade": [None, None, None, 4],
            "toe_lon": [toe_a[0], None, None, TO_LONLAT.transform(*centre(30, 90))[0]],
            "toe_lat": [toe_a[1], None, None, TO_LONLAT.transform(*centre(30, 90))[1]]},
            [box(*centre(19, 25), *centre(10, 35)), pond_b, box(*centre(80, 80), *centre(75, 85)),
             box(*centre(29, 88), *centre(25, 92))])
        r_in = Point(centre(30, 38)[0], centre(30, 38)[1] + 100)       # 100 m off the path: inside
        r_circle = Point(*centre(35, 30))                               # 750 m from the toe, 250 m off the path
        r_beyond = Point(*centre(30, 50))                               # 500 m past the path's end
        put(conn, "receptors", {"name": ["in", "circle", "beyond"], "kind": ["school"] * 3, "people": [30, 40, 50]},
            [r_in, r_circle, r_beyond])
        y25 = centre(25, 0)[1]
        put(conn, "roads", {"name": ["crossing", "far"], "road_class": ["primary", "secondary"]},
            [LineString([(centre(0, 20)[0], y25), (centre(0, 45)[0], y25)]),
             LineString([centre(60, 0), centre(60, 99)])])
        put(conn, "hazard_installations", {"name": ["corner tank"], "level": [3]},
            [box(*centre(31, 29), *centre(30, 30))])
    yield clean
    with clean.begin() as conn:
        conn.execute(text("DELETE FROM rasters WHERE name IN ('dem', 'population')"))


def test_pond_grade_table_and_combination():
    assert pond_grade(12000, 120) == 2 and pond_grade(5000, 70) == 3 and pond_grade(500, 40) == 4
    assert pond_grade(50, 10) == 5
    assert pond_grade(1000, 59.9) == 3        # 三等 + 四等 (one apart): the higher
    assert pond_grade(12000, 20) == 3         # 二等 + 五等 (three apart): higher minus one
    assert pond_grade(100, 100) == 3          # 四等 + 二等 (two apart): 二 + 1
    assert pond_grade(None, None) is None and pond_grade(-5, None) is None


def test_people_shown_decide_and_round_half_up():
    """(QA: 0.6 people showed as 1 on a pond not flagged head-top; the count shown now decides.)"""
    empty = {"receptors": [], "roads": [], "installations": []}
    for estimate, shown, headtop in ((0.6, 1, True), (0.49, 0, False), (2.5, 3, True), (None, None, False)):
        s = tailings.summarise(empty, estimate, HeadTopSettings())
        assert (s["people"], s["headtop"]) == (shown, headtop), estimate


def test_zone_is_square_at_its_ends_and_leaves_out_the_pond():
    path = LineString([(0, 0), (0, -1000)])  # from the toe at the pond's foot, 1 km downstream
    zone = tailings.downstream_zone(path, box(-300, 0, 300, 500), 200)
    assert zone.bounds == (-200, -1000, 200, 0) and zone.area == pytest.approx(400 * 1000)
    across = LineString([(0, 0), (0, 400), (0, 900)])  # a path running back across the pond (a DEM without the dam)
    zone = tailings.downstream_zone(across, box(-300, 0, 300, 500), 200)
    assert zone.bounds == (-200, 500, 200, 900) and zone.area == pytest.approx(400 * 400)
    pit = tailings.downstream_zone(LineString([(0, 0), (0, 0)]), box(-300, 0, 300, 500), 200)  # nowhere to flow
    assert pit.area == pytest.approx(math.pi * 200**2 / 2, rel=0.01)  # (the half disc outside the pond)
    inside = tailings.downstream_zone(LineString([(0, 10), (0, 20)]), box(-900, -900, 900, 900), 200)
    assert inside.area == pytest.approx(400 * 10)  # (wholly inside the pond: kept whole)


def test_trace_follows_directions_and_cuts_at_distance():
    # east (code 1) along row 0 of a 1x5 grid of 100 m cells, from the centre of cell 0
    fdir = np.array([[1, 1, 1, 1, 1]])
    transform = Affine(100, 0, 0, 0, -100, 100)
    line, truncated = trace(fdir, transform, 50, 50, 250)
    assert not truncated and line.length == pytest.approx(250)
    assert list(line.coords) == [(50, 50), (150, 50), (250, 50), (300, 50)]
    line, truncated = trace(fdir, transform, 50, 50, 1000)  # leaves the grid after 4 steps
    assert truncated and line.length == pytest.approx(400)


def test_headtop_analysis_on_known_valley(world):
    stats = tailings.run(world, StoreSettings())
    assert stats["ponds"] == 3 and stats["skipped_reclaimed"] == 1 and stats["headtop"] == 1
    assert stats["toe_from_boundary"] == 1 and stats["truncated_paths"] == 1
    with world.connect() as conn:
        zones = {r["name"]: dict(r) for r in conn.execute(text(
            "SELECT z.*, ST_AsBinary(ST_Transform(z.path, 4543)) AS path_m, ST_AsBinary(ST_Transform(z.geom, 4543)) "
            "AS zone_m FROM tailings_downstream z")).mappings()}
        ponds = {r["name"]: dict(r) for r in conn.execute(text("SELECT * FROM tailings_ponds")).mappings()}

    a = zones["A"]
    path = shapely.from_wkb(a["path_m"])
    expected = [centre(r, 30) for r in range(20, 31)] + [centre(30, c) for c in range(31, 41)]
    assert shapely.hausdorff_distance(path, LineString(expected)) < 0.01  # toe round-trips through lon/lat
    assert a["path_length_m"] == pytest.approx(1000, abs=0.1) and not a["truncated"] and a["toe_source"] == "toe"
    assert a["headtop"] and a["grade"] == 3
    assert a["receptors"] == 1 and a["receptor_names"] == "in" and a["receptor_people"] == 30
    assert a["roads"] == 1 and a["major_roads"] == 1 and a["road_length_m"] == pytest.approx(400, abs=0.5)
    assert a["installations"] == 1 and a["installation_names"] == "corner tank"
    # people: an independent shapely computation of the coverage-weighted sum
    zone = LineString(expected).buffer(200, cap_style="flat")  # (square at both ends: exactly 1 km downstream)
    want = sum(v * box(X0 + c * 100, Y0 - (r + 1) * 100, X0 + (c + 1) * 100, Y0 - r * 100).intersection(zone).area
               / 10000 for (r, c), v in POP_CELLS.items())
    assert 55 < want < 60 and a["contents"]["people"] == pytest.approx(want, rel=1e-6)
    assert a["people"] == math.floor(a["contents"]["people"] + 0.5)
    assert shapely.from_wkb(a["zone_m"]).symmetric_difference(zone).area < 1.0
    assert ponds["A"]["headtop"] and ponds["A"]["grade"] == 3
    assert (ponds["A"]["downstream_people"], ponds["A"]["downstream_receptors"],
            ponds["A"]["downstream_facilities"]) == (a["people"], 1, 2)

    b = zones["B"]
    bpath = shapely.get_coordinates(shapely.from_wkb(b["path_m"]))
    assert b["toe_source"] == "lowest_boundary" and not b["truncated"]
    toe_row, toe_col = rasterio.transform.rowcol(Affine(CELL, 0, X0, 0, -CELL, Y0), *bpath[0])
    assert (toe_row, toe_col) == (29, 65)      # the lowest outline cell: nearest the channel, furthest down it
    assert np.allclose(bpath[1], centre(30, 65)) and np.allclose(bpath[2:, 1], centre(30, 0)[1])
    assert not b["headtop"] and b["people"] == 0 and b["receptors"] == 0 and b["grade"] == 5

    d = zones["D"]
    assert d["truncated"] and d["path_length_m"] == pytest.approx(450, abs=0.1)  # 9 cells to the east edge
    assert d["grade"] == 5 and ponds["D"]["grade"] == 5
    assert "C" not in zones and ponds["C"]["headtop"] is None


def test_rerun_does_not_bump_ponds_and_run_is_fresh(world):
    from layers.derived import latest_run

    tailings.run(world, StoreSettings())
    with world.connect() as conn:
        before = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'tailings_ponds'")).scalar()
    tailings.run(world, StoreSettings(), HeadTopSettings())
    with world.connect() as conn:
        after = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'tailings_ponds'")).scalar()
        run = latest_run(conn, "tailings")
        n = conn.execute(text("SELECT count(*) FROM tailings_downstream")).scalar()
    assert before == after and not run["stale"] and n == 3



def test_zones_of_real_ponds_are_synthetic_when_a_grid_used_is(world):
    """The ponds are real (synthetic = false); the DEM and the population grid are registered synthetic."""
    dem_note, pop_note = "下游路径来自合成高程模型 / downstream path from a synthetic DEM", \
        "人口来自合成栅格 / population from a synthetic grid"
    sql = text("SELECT name, synthetic, contents -> 'notes' AS notes FROM tailings_downstream ORDER BY name")
    stats = tailings.run(world, StoreSettings())
    with world.begin() as conn:
        assert conn.execute(text("SELECT bool_or(synthetic) FROM tailings_ponds")).scalar() is False
        on_grids = conn.execute(sql).all()
        conn.execute(text("UPDATE rasters SET synthetic = false WHERE name = 'population'"))
    assert stats["notes"] == [dem_note, pop_note]
    assert [tuple(r) for r in on_grids] == [(n, True, [dem_note, pop_note]) for n in ("A", "B", "D")]
    tailings.run(world, StoreSettings())
    with world.begin() as conn:
        assert [tuple(r) for r in conn.execute(sql)] == [(n, True, [dem_note]) for n in ("A", "B", "D")]
        conn.execute(text("UPDATE rasters SET synthetic = false WHERE name = 'dem'"))
    stats = tailings.run(world, StoreSettings())
    with world.connect() as conn:
        assert [tuple(r) for r in conn.execute(sql)] == [(n, False, []) for n in ("A", "B", "D")]
    assert stats["notes"] == []

def test_wider_corridor_and_missing_dem(world):
    stats = tailings.run(world, StoreSettings(), HeadTopSettings(corridor_m=300))
    with world.connect() as conn:
        names = conn.execute(text("SELECT receptor_names FROM tailings_downstream WHERE name = 'A'")).scalar()
        conn.execute(text("DELETE FROM rasters WHERE name = 'dem'"))
        conn.commit()
    assert stats["corridor_m"] == 300 and set(names.split("、")) == {"in", "circle"}  # 250 m off the corner
    from gis.errors import AnalysisError

    with pytest.raises(AnalysisError, match="no DEM"):
        tailings.run(world, StoreSettings())


def test_geographic_dem_is_warped_to_metric(world, tmp_path):
    """A DEM in lon/lat is read through a warped view in EPSG:4543: the path still follows the valley."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with world.connect() as conn:
        src_path = conn.execute(text("SELECT path FROM rasters WHERE name = 'dem'")).scalar()
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                                               *src.bounds)
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height}
        with rasterio.open(tmp_path / "dem4326.tif", "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.bilinear)
    with world.begin() as conn:
        conn.execute(text("UPDATE rasters SET path = :p, crs = 'EPSG:4326' WHERE name = 'dem'"),
                     {"p": str(tmp_path / "dem4326.tif")})
    tailings.run(world, StoreSettings())
    with world.connect() as conn:
        a = conn.execute(text("SELECT path_length_m, ST_AsBinary(ST_Transform(path, 4543)) AS p FROM "
                              "tailings_downstream WHERE name = 'A'")).one()
    expected = LineString([centre(r, 30) for r in range(20, 31)] + [centre(30, c) for c in range(31, 41)])
    assert a.path_length_m == pytest.approx(1000, abs=0.1)
    assert shapely.hausdorff_distance(shapely.from_wkb(a.p), expected) < 2 * CELL


def test_pond_outside_the_dem_is_reported_not_guessed(world):
    with world.begin() as conn:
        put(conn, "tailings_ponds", {"name": ["far"], "dam_height_m": [65], "capacity_10k_m3": [50]},
            [box(X0 + 20000, Y0 + 20000, X0 + 20300, Y0 + 20300)])
    stats = tailings.run(world, StoreSettings())
    with world.connect() as conn:
        far = conn.execute(text("SELECT id, headtop, grade FROM tailings_ponds WHERE name = 'far'")).one()
    assert stats["outside_dem"] == [far.id] and stats["ponds"] == 3
    assert far.headtop is None and far.grade == 4  # 三等 by height, 五等 by capacity: 3 + 1
