"""What the one-map draws over what, in headless Chromium against the real server: context areas (exposure rings,
tailings downstream zones) under the parks and installations they surround, black spots on top of every other line
with a dark casing, and whole-number choropleth classes for the district counts."""


import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from conftest import browser_page, load, open_map, served
from layers.derived import finish_run, start_run

PARK = (102.66, 25.00, 102.70, 25.04)       # in district 530102, with an installation in it
INSTALLATION = (102.675, 25.015, 102.685, 25.025)
ROAD = "LINESTRING(102.60 25.10, 102.80 25.10)"  # a trunk road (yellow), a yellow black spot and a conflict on it
BLACKSPOT = "LINESTRING(102.65 25.10, 102.75 25.10)"


def derived(conn, table, columns, geom):
    """One row of a derived layer, written by an analysis run of its own."""
    run = start_run(conn, table, [])
    columns = {**columns, "run_id": run, "synthetic": True}
    conn.execute(text(f"INSERT INTO {table} ({', '.join(columns)}, geom) VALUES "
                      f"({', '.join(':' + k for k in columns)}, ST_GeomFromText(:g, 4326))"), {**columns, "g": geom})
    finish_run(conn, run, {})


@pytest.fixture
def site(db_url, clean):
    # three districts; 4 parks in the first, 1 in the second, none in the third; one tailings pond
    load(clean, "admin_areas", gpd.GeoDataFrame(
        {"adcode": ["530102", "530103", "530111"], "name": ["五华区", "盘龙区", "官渡区"]},
        geometry=[shapely.box(102.6, 24.95, 102.8, 25.15), shapely.box(102.8, 24.95, 103.0, 25.15),
                  shapely.box(103.0, 24.95, 103.2, 25.15)], crs=4326))
    load(clean, "chemical_parks", gpd.GeoDataFrame(
        {"name": ["测试园区", "园区二", "园区三", "园区四", "园区五"], "risk_grade": ["red"] * 5, "synthetic": [True] * 5},
        geometry=[shapely.box(*PARK)] + [shapely.box(102.62 + i * 0.01, 24.96, 102.625 + i * 0.01, 24.965)
                                         for i in range(3)] + [shapely.box(102.9, 25.0, 102.91, 25.01)], crs=4326))
    load(clean, "hazard_installations", gpd.GeoDataFrame(
        {"name": ["测试危险源"], "level": [1]}, geometry=[shapely.box(*INSTALLATION)], crs=4326))
    load(clean, "tailings_ponds", gpd.GeoDataFrame(
        {"name": ["测试尾矿库"]}, geometry=[shapely.box(102.62, 25.12, 102.63, 25.13)], crs=4326))
    load(clean, "roads", gpd.GeoDataFrame({"name": ["测试国道"], "road_class": ["trunk"]},
                                          geometry=[shapely.from_wkt(ROAD)], crs=4326))
    with clean.begin() as conn:
        # a ring (here a disc) around the installation, over the whole park
        ring = shapely.MultiPolygon([shapely.Point(102.68, 25.02).buffer(0.05)]).wkt
        derived(conn, "exposure_rings", {"name": "测试圈层", "subject_layer": "hazard_installations", "subject_id": 1,
                                         "inner_m": 0, "outer_m": 5000}, ring)
        derived(conn, "blackspots", {
            "name": "测试黑点", "from_m": 5000, "to_m": 15000, "length_m": 10000, "accidents": 3, "deaths": 1,
            "injuries": 2, "hazmat_accidents": 0, "prev_accidents": 1, "prev_deaths": 0, "trend": "up", "rank": 1,
            "criterion": "major_x2", "risk_grade": "yellow", "period_start": "2025-01-01T00:00:00+08:00",
            "period_end": "2025-12-31T00:00:00+08:00"}, BLACKSPOT)
        derived(conn, "route_conflicts", {"name": "测试路线", "target": "structure", "distance_m": 100,
                                          "verdict": "forbidden"}, BLACKSPOT)
    with served(db_url) as base:
        yield base, clean


# The layer whose grid draws the topmost feature at a map point (the SVG path the browser hits there), or None.
LAYER_AT = """([lat, lon]) => {
    const p = onemap.map.latLngToContainerPoint([lat, lon]), r = onemap.map.getContainer().getBoundingClientRect();
    const hit = document.elementFromPoint(p.x + r.left, p.y + r.top);
    const e = Object.values(onemap.layers).find(e => e.grid.getContainer() && e.grid.getContainer().contains(hit));
    return e ? e.id : null; }"""

Z_INDEX = "id => Number(getComputedStyle(onemap.layers[id].grid.getContainer()).zIndex)"


def test_context_areas_draw_under_parks_and_installations(site, token):
    """Exposure rings (and tailings downstream zones) are context: drawn under the parks, installations and ponds
    they surround, so these stay visible and clickable with the rings on, and filled lightly (no opaque wash)."""
    base, _ = site
    with browser_page() as (page, errors):
        open_map(page, base, token('planner'))
        page.evaluate("onemap.setLayerVisible('exposure_rings', true)")
        page.evaluate("onemap.map.setView([25.02, 102.68], 13, {animate: false})")
        assert page.evaluate("onemap.whenTilesLoaded(15000)")
        assert page.evaluate("onemap.renderedFeatures('exposure_rings').length") > 0

        # the topmost feature: the installation inside the park, the park around it, the ring beyond the park
        assert page.evaluate(LAYER_AT, [25.02, 102.68]) == "hazard_installations"
        assert page.evaluate(LAYER_AT, [25.005, 102.665]) == "chemical_parks"
        assert page.evaluate(LAYER_AT, [25.05, 102.68]) == "exposure_rings"
        # (a click opens what is on top)
        point = page.evaluate("(() => { const p = onemap.map.latLngToContainerPoint([25.005, 102.665]);"
                              " const r = onemap.map.getContainer().getBoundingClientRect();"
                              " return [p.x + r.left, p.y + r.top]; })()")
        page.mouse.click(*point)
        page.wait_for_selector("#om-panel[data-layer-id=chemical_parks][data-status=ok]", timeout=10000)

        # the stacking of every context area under every object polygon, tailings downstream zones included
        z = {i: page.evaluate(Z_INDEX, i) for i in ("admin_areas", "exposure_rings", "tailings_downstream",
                                                    "chemical_parks", "hazard_installations", "tailings_ponds")}
        assert z["admin_areas"] < min(z["exposure_rings"], z["tailings_downstream"])
        assert max(z["exposure_rings"], z["tailings_downstream"]) < \
            min(z["chemical_parks"], z["hazard_installations"], z["tailings_ponds"]), z

        # a light fill: ten overlapping rings stay well short of opaque
        ring_fill = page.evaluate("Number(onemap.layers.exposure_rings.grid.getContainer()"
                                  ".querySelector('path').getAttribute('fill-opacity'))")
        park_fill = page.evaluate("Number(onemap.layers.chemical_parks.grid.getContainer()"
                                  ".querySelector('path').getAttribute('fill-opacity'))")
        assert ring_fill < park_fill and 1 - (1 - ring_fill) ** 10 < 0.5, ring_fill
    assert errors == [], errors


def test_blackspots_on_top_of_the_lines_with_a_casing(site, token):
    """At city scale a black spot is drawn over the road and the route conflict it runs along, over a dark casing
    (a yellow black spot on a yellow trunk road still stands out); a route conflict is narrower."""
    base, _ = site
    with browser_page() as (page, errors):
        open_map(page, base, token('planner'))
        page.evaluate("onemap.setLayerVisible('roads', true)")
        page.evaluate("onemap.map.setView([25.10, 102.70], 10, {animate: false})")
        assert page.evaluate("onemap.whenTilesLoaded(15000)")
        for layer in ("roads", "blackspots", "route_conflicts"):
            assert page.evaluate(f"onemap.renderedFeatures({layer!r}).length") > 0, layer

        lines = page.evaluate("Object.values(onemap.layers).filter(e => /LineString/.test(e.def.geometry_type))"
                              ".map(e => e.id)")
        z = {i: page.evaluate(Z_INDEX, i) for i in lines}
        assert max(z, key=z.get) == "blackspots", z
        assert page.evaluate(LAYER_AT, [25.10, 102.70]) == "blackspots"

        # each black spot: a wider dark casing path, then the coloured line (the registry's yellow) over it
        paths = page.evaluate("""id => [...onemap.layers[id].grid.getContainer().querySelectorAll('path')].map(p =>
            [p.getAttribute('stroke'), Number(p.getAttribute('stroke-width')), getComputedStyle(p).pointerEvents])""",
                              "blackspots")
        assert paths and len(paths) % 2 == 0
        for casing, line in zip(paths[::2], paths[1::2]):
            assert line[:1] == ["#ffd700"] and casing[0] == "#1f2d3d" and casing[1] > line[1], (casing, line)
            assert casing[2] == "none"  # (clicks and hovers go to the line itself)
        conflict = page.evaluate("Number(onemap.layers.route_conflicts.grid.getContainer().querySelector('path')"
                                 ".getAttribute('stroke-width'))")
        assert conflict < paths[1][1]
    assert errors == [], errors


def test_choropleth_classes_are_whole_numbers_and_ponds_are_counted(site):
    """Counts get whole-number classes ("1", "2", … or "1 – 2"), never a fractional or empty one ("> 0 – 0.8");
    the district table and the metrics include the tailings ponds."""
    base, _ = site
    with browser_page() as (page, errors):
        page.goto(base + "/")
        page.evaluate("onemap.ready")

        def classes(metric):
            page.evaluate(f"onemap.setChoropleth(true, {metric!r})")
            page.wait_for_function("document.querySelector('.om-legend-choropleth')", timeout=10000)
            return page.evaluate("[...document.querySelectorAll('.om-legend-choropleth li')].map(li => li.innerText)")

        assert classes("parks") == ["0", "1", "2", "3", "4", "无数据"]  # (4, 1 and 0 parks)
        # 7 black spots at most: five classes, each of one count or more
        page.evaluate("onemap.state.districts.forEach((d, i) => { d.blackspots = [7, 3, 0][i]; })")
        assert classes("blackspots") == ["0", "1 – 2", "3", "4 – 5", "6", "7", "无数据"]

        # tailings ponds: a column of the table (with its total) and a metric
        assert page.inner_text("#om-district-table th[data-key=tailings_ponds]") == "尾矿库"
        assert page.inner_text("#om-district-table tr[data-adcode='530102'] td:nth-of-type(6)") == "1"
        assert page.inner_text("#om-district-table tfoot tr:last-child td:nth-of-type(6)") == "1"
        assert classes("tailings_ponds") == ["0", "1", "无数据"]
        assert "分级设色：尾矿库" in page.inner_text(".om-legend-choropleth")
    assert errors == [], errors
