"""The Kunming demo dataset, loaded once per session (``demo_engine``): sizes, synthetic flags and
the invariants of issue #3, each checked by an independent method (rasterstats, shapely, networkx,
rasterio, gis.gb18218) against what PostGIS holds."""

from __future__ import annotations

import re

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from pyproj import Geod
from fastapi.testclient import TestClient
from rasterio.warp import Resampling, reproject
from rasterstats import zonal_stats
from sqlalchemy import text

from api.app import create_app
from api.settings import ApiSettings
from gis import gb18218, hazchem
from layers.crs import METRIC_EPSG
from layers.demo import (COUNTS, ORDER, SEED, Progress, build_demo, demo_extent, facilities, load_demo,
                         load_demo_if_empty)
from layers.demo.sources import DIANCHI_WGS84, KUNMING, Inputs
from layers.errors import DataError
from layers.io import read_source
from layers.osm import components, structure_class

GEOD = Geod(ellps="WGS84")
GENERATED = ("chemical_parks", "enterprises", "hazard_installations", "tailings_ponds", "accidents", "roads",
             "restricted_structures", "water_source_zones", "receptors", "emergency_resources", "hazmat_routes")


def frame(engine, sql: str) -> gpd.GeoDataFrame:
    with engine.connect() as conn:
        return gpd.read_postgis(text(sql), conn, geom_col="geom", crs="EPSG:4326")


def scalar(engine, sql: str):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


@pytest.fixture(scope="module")
def rasters(demo_engine) -> dict[str, str]:
    with demo_engine.connect() as conn:
        return dict(conn.execute(text("SELECT name, path FROM rasters")).all())


def test_sizes_meet_the_issue(demo_engine):
    counts = {t: scalar(demo_engine, f"SELECT count(*) FROM {t}") for t in GENERATED}
    assert counts["chemical_parks"] >= 10
    for layer, n in COUNTS.items():
        assert counts[layer] >= n, layer
    assert counts["roads"] > 1000
    assert counts["restricted_structures"] >= 30
    assert scalar(demo_engine, "SELECT count(DISTINCT water_body) FROM water_source_zones") >= 5
    classes = dict(demo_engine.connect().execute(text(
        "SELECT structure_class, count(*) FROM restricted_structures GROUP BY 1")).all())
    assert classes.get("bridge_xl", 0) >= 3 and classes.get("tunnel_xl", 0) >= 2
    span = demo_engine.connect().execute(text(
        "SELECT min(occurred_at AT TIME ZONE 'Asia/Shanghai'), max(occurred_at AT TIME ZONE 'Asia/Shanghai') "
        "FROM accidents")).one()
    assert span[0].year == 2021 and span[1].year == 2025
    assert scalar(demo_engine, "SELECT count(*) FROM installation_chemicals") >= COUNTS["hazard_installations"]


def test_everything_generated_is_flagged_synthetic_and_the_api_says_so(demo_engine, demo_db_url, demo_store):
    for table in GENERATED:
        assert scalar(demo_engine, f"SELECT bool_and(synthetic) FROM {table}") is True, table
        assert scalar(demo_engine, f"SELECT count(*) FROM {table} WHERE source IS NULL") == 0, table
    assert scalar(demo_engine, "SELECT bool_or(synthetic) FROM admin_areas") is False  # real boundaries
    with demo_engine.connect() as conn:
        rows = conn.execute(text("SELECT name, synthetic, path FROM rasters ORDER BY name")).all()
    assert [(r.name, r.synthetic) for r in rows] == [("dem", True), ("population", True)]
    for r in rows:
        with rasterio.open(r.path) as src:
            assert src.crs.to_epsg() == METRIC_EPSG and src.tags()["synthetic"] == "true"
    # generated names are obviously synthetic (never a plausible real company name)
    for table in ("enterprises", "hazard_installations", "tailings_ponds", "receptors", "emergency_resources",
                  "hazmat_routes"):
        assert scalar(demo_engine, f"SELECT bool_and(name LIKE '演示%') FROM {table}") is True, table
    # parks: the generated ones are 演示化工园区-…, the seed ones keep the seed name (also in source) marked
    # （演示）/(demo); no park level (the seed list gives none)
    with demo_engine.connect() as conn:
        parks = conn.execute(text("SELECT name, park_level, source FROM chemical_parks ORDER BY id")).all()
    seeds = list(Inputs().parks_seed["name"])
    assert [p.name for p in parks[:len(seeds)]] == [f"{n}（演示） / {n} (demo)" for n in seeds]
    assert all(n in p.source for n, p in zip(seeds, parks))
    assert all(p.name.startswith("演示化工园区-") for p in parks[len(seeds):])
    assert all(p.park_level is None for p in parks)
    with TestClient(create_app(demo_db_url, ApiSettings(), demo_store)) as client:
        layers = {item["id"]: item for item in client.get("/api/layers").json()["layers"]}
        assert layers["chemical_parks"]["synthetic"] is True and layers["admin_areas"]["synthetic"] is False
        assert client.get("/api/config").json()["synthetic_notice_en"]
        items = client.get("/collections/chemical_parks/items", params={"limit": 5}).json()["features"]
        assert items and all(f["properties"]["synthetic"] is True for f in items)


def test_district_populations_sum_to_the_2023_table(rasters):
    """Zonal sums (rasterstats, cell-centre rule) over the *derived WGS84* district polygons."""
    table = pd.read_csv(KUNMING / "kunming_district_population_2023.csv", dtype={"adcode": str})
    districts = gpd.read_file(KUNMING / "kunming_districts_530100_datav_wgs84_derived.geojson").to_crs(METRIC_EPSG)
    districts["geometry"] = districts.geometry.make_valid()
    sums = zonal_stats(districts, rasters["population"], stats="sum", nodata=-9999)
    got = dict(zip(districts["adcode"].astype(str), (s["sum"] for s in sums)))
    for row in table.itertuples():
        want = row.pop_2023_10k * 10000
        assert abs(got[row.adcode] - want) / want < 0.005, (row.name, got[row.adcode], want)
    lake = gpd.GeoSeries([DIANCHI_WGS84], crs=4326).to_crs(METRIC_EPSG)
    assert zonal_stats(lake, rasters["population"], stats="sum", nodata=-9999)[0]["sum"] == 0
    with rasterio.open(rasters["population"]) as src:
        pop = src.read(1)
        assert src.res == (100.0, 100.0)
        # dense where the city is: 2 km around the Kunming GeoNames point vs the city-wide mean
        city = Inputs().settlements.query("kind == 'city'").geometry.iloc[0]
        r, c = src.index(city.x, city.y)
        assert pop[r - 20:r + 20, c - 20:c + 20].mean() > 50 * pop[pop > 0].mean()


def test_dem_keeps_the_coarse_relief(rasters):
    """Averaged back onto the real 5' grid, the 90 m DEM stays close to the real values."""
    with rasterio.open(KUNMING / "kunming_dem_5arcmin_pvlib_wgs84.tif") as coarse, rasterio.open(rasters["dem"]) as fine:
        assert abs(fine.res[0] - 90) < 1e-6
        real = coarse.read(1).astype("float64")
        back = np.full(real.shape, np.nan)
        reproject(fine.read(1), back, src_transform=fine.transform, src_crs=fine.crs, src_nodata=-9999,
                  dst_transform=coarse.transform, dst_crs=coarse.crs, dst_nodata=np.nan, resampling=Resampling.average)
        inner = back[2:-2, 2:-2]  # cells wholly covered by the 90 m grid
        diff = np.abs(inner - real[2:-2, 2:-2])[np.isfinite(inner)]
        assert diff.size > 100 and np.median(diff) < 40 and np.percentile(diff, 95) < 120
        dem = fine.read(1)
        gy, gx = np.gradient(dem.astype(float), 90.0)
        assert np.percentile(np.degrees(np.arctan(np.hypot(gx, gy))), 90) > 10  # real slopes, not a smooth blur


def test_installations_inside_their_enterprise_inside_their_park(demo_engine):
    sql = """SELECT count(*) FROM hazard_installations h JOIN enterprises e ON e.id = h.enterprise_id
             WHERE NOT ST_Within(h.geom, e.geom)"""
    assert scalar(demo_engine, sql) == 0
    assert scalar(demo_engine, "SELECT count(*) FROM hazard_installations WHERE enterprise_id IS NULL") == 0
    sql = """SELECT count(*) FROM enterprises e JOIN chemical_parks p ON p.id = e.park_id
             WHERE NOT ST_Within(e.geom, p.geom)"""
    assert scalar(demo_engine, sql) == 0
    assert scalar(demo_engine, "SELECT count(*) FROM enterprises WHERE park_id IS NOT NULL") >= 0.7 * COUNTS["enterprises"]
    # shapely cross-check, and the installation lies in its park too
    inst = frame(demo_engine, "SELECT enterprise_id, geom FROM hazard_installations")
    ent = frame(demo_engine, "SELECT id, park_id, geom FROM enterprises").set_index("id")
    parks = frame(demo_engine, "SELECT id, geom FROM chemical_parks").set_index("id").geometry
    assert shapely.within(inst.geometry.values, ent.geometry[inst.enterprise_id].values).all()
    park_of = ent.park_id[inst.enterprise_id].to_numpy()
    in_park = ~pd.isna(park_of)
    assert in_park.mean() >= 0.7
    assert shapely.within(inst.geometry.values[in_park], parks[park_of[in_park].astype(int)].values).all()


def test_tailings_ponds_lie_in_their_county_and_the_mining_counties(demo_engine):
    sql = """SELECT count(*) FROM tailings_ponds t JOIN admin_areas a ON a.adcode = t.adcode
             WHERE ST_Within(t.geom, a.geom)"""
    assert scalar(demo_engine, sql) == scalar(demo_engine, "SELECT count(*) FROM tailings_ponds")
    counties = set(demo_engine.connect().execute(text("SELECT DISTINCT adcode FROM tailings_ponds")).scalars())
    assert counties == set(facilities.PONDS)
    ponds = frame(demo_engine, "SELECT grade, headtop, capacity_10k_m3, dam_height_m, toe_lon, toe_lat, geom "
                               "FROM tailings_ponds")
    assert ponds.grade.isna().all() and ponds.headtop.isna().all()  # left to `riskmap analyze tailings`
    # capacity = area x 0.4 x dam height (area measured here on the stored outline, metric CRS)
    area = ponds.geometry.to_crs(METRIC_EPSG).area.to_numpy()
    assert np.allclose(ponds.capacity_10k_m3, area * 0.4 * ponds.dam_height_m / 1e4, rtol=1e-3, atol=0.1)
    # the dam toe lies downstream of the crest, 2.5 x the dam height away (1:2.5 outer slope)
    toes = gpd.GeoSeries(shapely.points(ponds.toe_lon, ponds.toe_lat), crs=4326).to_crs(METRIC_EPSG)
    gap = toes.distance(ponds.geometry.to_crs(METRIC_EPSG), align=False).to_numpy()
    assert (gap > 0).all() and (gap <= 2.5 * ponds.dam_height_m.to_numpy() + 1).all()


def test_accidents_lie_on_the_roads(demo_engine):
    sql = """SELECT count(*) FROM accidents a WHERE NOT EXISTS (
               SELECT 1 FROM roads r WHERE ST_DWithin(a.geom, r.geom, 0.0001)
               AND ST_Distance(a.geom::geography, r.geom::geography) < 3)"""
    assert scalar(demo_engine, sql) == 0
    # hot spots: the busiest 500 m cell holds far more than an average cell with accidents
    acc = frame(demo_engine, "SELECT geom FROM accidents").to_crs(METRIC_EPSG)
    cells = pd.Series(list(zip((acc.geometry.x // 500).astype(int), (acc.geometry.y // 500).astype(int))))
    per_cell = cells.value_counts()
    assert per_cell.iloc[0] > 20 * per_cell.mean()


def test_hazmat_routes_run_along_the_roads_from_a_park(demo_engine):
    routes = frame(demo_engine, "SELECT name, cargo_un, schedule, geom FROM hazmat_routes").to_crs(METRIC_EPSG)
    roads = frame(demo_engine, "SELECT geom FROM roads").to_crs(METRIC_EPSG)
    parks = frame(demo_engine, "SELECT geom FROM chemical_parks").to_crs(METRIC_EPSG)
    net = shapely.union_all(roads.geometry.values)
    for r in routes.itertuples():  # every vertex on a road (1 m: the two CRS round trips), 15+ km long
        vertices = shapely.points(shapely.get_coordinates(r.geom))
        assert shapely.distance(vertices, net).max() < 1.0, r.name
        assert r.geom.length > 15000 and parks.distance(shapely.get_point(r.geom, 0)).min() < 3000, r.name
        assert re.fullmatch(r"\d{4}", r.cargo_un) and re.search(r"\d{2}:\d{2}", r.schedule)


def test_road_network_is_one_connected_component(demo_engine):
    roads = frame(demo_engine, "SELECT id, road_class, bridge, tunnel, layer, speed_kmh, geom FROM roads")
    graph = nx.Graph()
    for g in roads.geometry:
        graph.add_edge(g.coords[0], g.coords[-1])
    assert nx.number_connected_components(graph) == 1
    assert set(roads.road_class) == {"motorway", "trunk", "primary", "secondary", "urban"}
    assert (roads.loc[roads.bridge, "layer"] == 1).all() and (roads.loc[roads.tunnel, "layer"] == -1).all()
    assert roads.speed_kmh.notna().all()
    assert not roads.intersects(DIANCHI_WGS84).any()  # roads go round the lake


def test_bridges_span_valleys_and_tunnels_cross_ridges(demo_engine, rasters):
    """DEM (rasterio) under the middle of each large structure vs at its two ends."""
    st = frame(demo_engine, "SELECT kind, structure_class, length_m, geom FROM restricted_structures").to_crs(METRIC_EPSG)
    with rasterio.open(rasters["dem"]) as dem:
        def z(points):
            return np.array([v[0] for v in dem.sample([(p.x, p.y) for p in points])])
        mid = z(st.geometry.interpolate(0.5, normalized=True))
        ends = np.maximum(z(st.geometry.interpolate(0)), z(st.geometry.interpolate(1, normalized=True)))
        ends_low = np.minimum(z(st.geometry.interpolate(0)), z(st.geometry.interpolate(1, normalized=True)))
    bridges, tunnels = (st.kind == "bridge").to_numpy(), (st.kind == "tunnel").to_numpy()
    assert (mid[bridges] < ends[bridges]).mean() > 0.9
    assert (mid[tunnels] > ends_low[tunnels]).mean() > 0.9
    geodesic = st.geometry.to_crs(4326).apply(GEOD.geometry_length)
    assert np.allclose(geodesic, st.length_m, rtol=0.002)  # stored lengths are metric (EPSG:4543)
    assert [structure_class(k, n) for k, n in zip(st.kind, st.length_m)] == list(st.structure_class)


def test_district_boundaries_land_on_the_derived_wgs84_copies(demo_engine):
    """GCJ-02 originals through our conversion vs the README's WGS84 derivations: Hausdorff < 5 m."""
    ours = frame(demo_engine, "SELECT adcode, geom FROM admin_areas").set_index("adcode").to_crs(METRIC_EPSG)
    ref = gpd.read_file(KUNMING / "kunming_districts_530100_datav_wgs84_derived.geojson")
    ref = ref.set_index(ref["adcode"].astype(str)).to_crs(METRIC_EPSG)
    assert len(ours) == 14
    for adcode, geom in ours.geometry.items():
        assert geom.hausdorff_distance(ref.geometry[adcode]) < 5, adcode
    hires, _ = read_source(KUNMING / "kunming_districts_hires_gcj02.geojson", "gcj02")
    hires_ref = gpd.read_file(KUNMING / "kunming_districts_hires_wgs84_derived.geojson")
    a = hires.set_index(hires["id"].astype(str)).to_crs(METRIC_EPSG).geometry
    b = hires_ref.set_index(hires_ref["id"].astype(str)).to_crs(METRIC_EPSG).geometry
    assert max(a[k].hausdorff_distance(b[k]) for k in a.index) < 5


def test_districts_carry_their_english_names(demo_engine):
    """Every district has its English name; the names are the Chinese ones' Hanyu Pinyin (the generic term
    translated), checked here by their generic term."""
    rows = frame(demo_engine, "SELECT adcode, name, name_en, geom FROM admin_areas")
    assert rows.name_en.notna().all() and len(rows) == 14
    generic = {"区": "District", "县": "County", "市": "City"}
    assert all(en.endswith(generic[zh[-1]]) for zh, en in zip(rows.name, rows.name_en))
    assert dict(zip(rows.adcode, rows.name_en))["530181"] == "Anning City"


def test_inventories_grade_to_all_four_levels(demo_engine):
    """gis.gb18218 on the stored inventories: some units below threshold, all four levels at α = 1."""
    with demo_engine.connect() as conn:
        rows = conn.execute(text("SELECT installation_id, name, cas, un_number, hazard_class, quantity_t "
                                 "FROM installation_chemicals ORDER BY installation_id")).all()
    units: dict[int, list] = {}
    for r in rows:
        units.setdefault(r.installation_id, []).append(
            gb18218.Substance(r.name, r.quantity_t, r.cas, r.un_number, r.hazard_class))
    levels = [gb18218.grade(s, exposed_people=10).level for s in units.values()]
    assert {1, 2, 3, 4} <= set(levels) and levels.count(None) >= 5
    for people in (0, 150):  # α = 0.5 and 2 still spread over three levels or more
        assert len({gb18218.grade(s, exposed_people=people).level for s in units.values()} - {None}) >= 3


def test_demo_substances_match_gb18218_table1():
    for name, (cas, un, Q, beta, cls, _) in facilities.SUBSTANCES.items():
        s = gb18218.Substance(name, 1.0, cas, un, cls)
        assert gb18218.critical_quantity(s) == Q, name
        assert gb18218.beta_for(s) == beta, name


def test_receptors_where_people_live_and_outside_parks(demo_engine, rasters):
    assert scalar(demo_engine, """SELECT count(*) FROM receptors r JOIN chemical_parks p
                                  ON ST_Intersects(r.geom, p.geom)""") == 0
    rec = frame(demo_engine, "SELECT kind, protection_class, people, geom FROM receptors").to_crs(METRIC_EPSG)
    with rasterio.open(rasters["population"]) as src:
        here = np.array([v[0] for v in src.sample([(p.x, p.y) for p in rec.geometry])])
    assert (here > 0).mean() > 0.85  # villages next to parks may sit in thin cells; the rest where people are
    assert rec.protection_class.isna().all()  # the hazchem analysis derives it from its settings


def test_receptor_classes_come_from_the_analysis_settings(demo_engine):
    """With no stored class, each receptor's GB 36894 class is the configured rule (risk_scoring.toml),
    here restated by hand: kinds first, then people thresholds."""
    cfg = hazchem.load_config()
    with demo_engine.connect() as conn:
        rows = conn.execute(text(f"SELECT kind, people, pclass FROM ({hazchem.RECEPTORS_SQL}) r"),
                            cfg.class_params()).all()

    def by_hand(kind, people):
        if kind in cfg.high_sensitive_kinds:
            return "high_sensitive"
        if kind in cfg.important_kinds:
            return "important"
        return "general_1" if people >= cfg.general_1_min_people else (
            "general_2" if people >= cfg.general_2_min_people else "general_3")

    assert [r.pclass for r in rows] == [by_hand(r.kind, r.people) for r in rows]
    assert {r.pclass for r in rows if r.kind == "prison"} == {"important"}
    assert {"high_sensitive", "important", "general_1", "general_2"} <= {r.pclass for r in rows}


def test_water_zones_are_nested_rings_of_real_reservoirs(demo_engine):
    z = frame(demo_engine, "SELECT water_body, zone_level, geom FROM water_source_zones").to_crs(METRIC_EPSG)
    assert set(z.water_body) == {r[0] for r in facilities.RESERVOIRS}
    for body, g in z.groupby("water_body"):
        one, two = g.set_index("zone_level").geometry[["grade1", "grade2"]]
        assert one.intersection(two).area < 1 and one.distance(two) < 1


def test_same_seed_same_data_and_scale_multiplies(demo_store, capsys):
    a = build_demo(demo_store, seed=SEED)
    b = build_demo(demo_store, seed=SEED)
    for layer in a.layers:
        assert a.layers[layer].geometry.to_wkb().tolist() == b.layers[layer].geometry.to_wkb().tolist(), layer
    assert "demo: reusing" in capsys.readouterr().err  # progress lines; rasters built once, then reused
    big = build_demo(demo_store, scale=2, seed=SEED)
    for layer, n in COUNTS.items():
        assert len(big.layers[layer]) >= 2 * n, layer
    assert len(big.layers["roads"]) > len(a.layers["roads"])
    assert components(big.layers["roads"].geometry.values)[0] == 1


def test_load_refuses_a_database_with_data_unless_replace(demo_engine, demo_store):
    def admin_areas_version():
        return scalar(demo_engine, "SELECT version FROM layer_versions WHERE layer = 'admin_areas'")

    with demo_engine.begin() as conn:  # a demo loaded before districts had English names
        conn.execute(text("UPDATE admin_areas SET name_en = NULL WHERE adcode IN ('530102', '530181')"))
    before = admin_areas_version()
    assert load_demo_if_empty(demo_engine, demo_store) is False
    with demo_engine.connect() as conn:  # ... gets them when the server starts on it (one write)
        names = dict(conn.execute(text(
            "SELECT adcode, name_en FROM admin_areas WHERE adcode IN ('530102', '530181')")).all())
    assert names == {"530102": "Wuhua District", "530181": "Anning City"}
    assert admin_areas_version() == before + 1
    assert load_demo_if_empty(demo_engine, demo_store) is False  # nothing to change: no write, same version
    assert admin_areas_version() == before + 1
    with pytest.raises(DataError, match="--replace"):
        load_demo(demo_engine, demo_store)


def test_the_demo_lies_within_its_extent(demo_engine):
    """`riskmap serve` loads the demo only when the area box contains ``demo_extent`` (the districts' bounds):
    every feature of it must then pass the area check."""
    west, south, east, north = demo_extent()
    assert (round(west, 2), round(south, 2), round(east, 2), round(north, 2)) == (102.17, 24.39, 103.67, 26.55)
    for layer in ORDER:
        w, s, e, n = (scalar(demo_engine, f"SELECT {f}(geom)) FROM {layer}")
                      for f in ("min(ST_XMin", "min(ST_YMin", "max(ST_XMax", "max(ST_YMax"))
        assert west <= w and south <= s and e <= east and n <= north, layer


def test_progress_lines_are_printed_or_logged_once(capsys, caplog):
    with caplog.at_level("INFO", logger="riskmap.demo"):
        Progress()("demo: one")
        Progress(echo=False)("demo: two")  # (under `riskmap serve`, whose log goes to stderr)
    assert "demo: one" in capsys.readouterr().err and [r.getMessage()[-9:] for r in caplog.records] == ["demo: two"]
