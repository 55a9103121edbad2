"""The routable graph on a hand-built network whose nodes, edges and parts are counted by hand;
lengths and covered lengths are cross-checked with pyproj/shapely."""

from __future__ import annotations

import pytest
from pyproj import Geod, Transformer
import shapely
from shapely import wkt
from sqlalchemy import text

from gis import roadgraph, roadnet, routing
from gis.errors import AnalysisError
from layers.crs import METRIC_EPSG
from layers.spec import structure_class

GEOD = Geod(ellps="WGS84")
TO_METRIC = Transformer.from_crs(4326, METRIC_EPSG, always_xy=True).transform

# name, class, speed, oneway, layer, WKT
ROADS = [
    ("A", "primary", 60, False, 0, "LINESTRING(102.70 25, 102.705 25, 102.71 25, 102.715 25, 102.72 25)"),
    ("B", "urban", None, False, 0, "LINESTRING(102.71 24.99, 102.71 25, 102.71 25.01)"),
    # crosses A and B at (102.71, 25) without a shared vertex: an overpass, not a junction
    ("C", "primary", 60, False, 1, "LINESTRING(102.705 24.995, 102.715 25.005)"),
    # shares A's vertex (102.715, 25) but on another layer: not a junction
    ("D", "secondary", 50, False, 1, "LINESTRING(102.715 24.99, 102.715 25, 102.715 25.01)"),
    ("E", "urban", 30, True, 0, "LINESTRING(102.72 25, 102.72 25.01)"),  # one-way dead end
    ("F", "urban", 30, False, 0, "LINESTRING(102.705 24.99, 102.705 25)"),  # ends on A's interior vertex
    ("G", "trunk", None, False, 0, "LINESTRING(102.69 25, 102.7000003 25)"),  # 3 cm short of A: snapped
    ("H", "urban", 30, False, 0, "LINESTRING(102.80 25, 102.81 25)"),  # island
]


TABLES = "roads, restricted_structures, water_source_zones, accidents, hazmat_routes, blackspots, route_conflicts"


@pytest.fixture
def clean(engine):
    """Only the tables of this topic (the shared ``clean`` also needs every other topic's migration)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return engine


def geod_len(geom_wkt: str) -> float:
    return GEOD.geometry_length(wkt.loads(geom_wkt))


@pytest.fixture
def network(clean):
    with clean.begin() as conn:
        for name, cls, speed, oneway, layer, geom in ROADS:
            conn.execute(text(
                "INSERT INTO roads (name, road_class, speed_kmh, oneway, layer, geom) "
                "VALUES (:n, :c, :s, :o, :l, ST_GeomFromText(:g, 4326))"),
                {"n": name, "c": cls, "s": speed, "o": oneway, "l": layer, "g": geom})
        conn.execute(text("""
            INSERT INTO restricted_structures (name, kind, structure_class, length_m, geom) VALUES
            ('overpass bridge', 'bridge', 'bridge_xl', 1500,
             ST_GeomFromText('LINESTRING(102.70503 24.99503, 102.71497 25.00497)', 4326)),
            ('tunnel on A', 'tunnel', 'tunnel_m', 605, ST_GeomFromText('LINESTRING(102.712 25, 102.718 25)', 4326))"""))
        conn.execute(text("""
            INSERT INTO water_source_zones (name, zone_level, geom) VALUES
            ('zone on B', 'grade1', ST_Multi(ST_GeomFromText(
              'POLYGON((102.705 25.003, 102.715 25.003, 102.715 25.02, 102.705 25.02, 102.705 25.003))', 4326)))"""))
        report = roadnet.build_graph(conn)
    return clean, report


def edges(conn) -> list:
    return conn.execute(text(
        "SELECT e.*, ST_AsText(e.geom) AS wkt, r.name FROM road_edges e JOIN roads r ON r.id = e.road_id "
        "ORDER BY e.id")).mappings().all()


def test_noding_counts_by_hand(network):
    engine, report = network
    assert report["roads"] == 8 and report["edges"] == 11 and report["nodes"] == 15
    assert report["degenerate_roads"] == 0 and report["one_way_edges"] == 1
    with engine.connect() as conn:
        per_road = dict(conn.execute(text(
            "SELECT r.name, count(*) FROM road_edges e JOIN roads r ON r.id = e.road_id GROUP BY r.name")).all())
    # A is cut at 102.705 (F ends there) and 102.71 (B shares it), not at 102.715 (D is on layer 1)
    assert per_road == {"A": 3, "B": 2, "C": 1, "D": 1, "E": 1, "F": 1, "G": 1, "H": 1}


def test_components_and_one_way_trap(network):
    engine, report = network
    # main part {A, B, E, F, G} with 9 nodes; C, D, H each alone (2 nodes)
    assert report["components"] == 4
    assert [p["nodes"] for p in report["parts"]] == [9, 2, 2, 2]
    assert report["nodes_outside_largest"] == 6
    assert report["one_way_trapped_nodes"] == 1  # the end of one-way E can be reached but not left
    with engine.connect() as conn:
        assert roadnet.components(conn) == {k: report[k] for k in roadnet.components(conn)}
    problems = roadnet.network_problems(report)
    assert any("disconnected: 4 parts" in p for p in problems)
    assert any("1 nodes are trapped" in p for p in problems)


def test_lengths_costs_and_direction(network):
    engine, _ = network
    with engine.connect() as conn:
        rows = edges(conn)
    speeds = {"A": 60, "B": 40, "C": 60, "D": 50, "E": 30, "F": 30, "G": 80, "H": 30}  # B, G: class defaults
    for e in rows:
        assert e["length_m"] == pytest.approx(geod_len(e["wkt"]), rel=1e-6)
        assert e["speed_kmh"] == speeds[e["name"]]
        assert e["cost_s"] == pytest.approx(e["length_m"] / (speeds[e["name"]] / 3.6))
        assert e["reverse_cost_s"] == (-1 if e["name"] == "E" else pytest.approx(e["cost_s"]))
        assert (e["x1"], e["y1"]) == wkt.loads(e["wkt"]).coords[0]
        assert (e["x2"], e["y2"]) == wkt.loads(e["wkt"]).coords[-1]
    g = next(e for e in rows if e["name"] == "G")
    a0 = next(e for e in rows if e["name"] == "A")
    assert g["target"] == a0["source"]  # snapped onto A's end
    # total length is preserved (G lost its 3 cm to the snap)
    with engine.connect() as conn:
        total = conn.execute(text("SELECT sum(length_m) FROM road_edges")).scalar_one()
    expected = sum(geod_len(r[5]) for r in ROADS)
    assert total == pytest.approx(expected, abs=0.1)


def test_structures_and_zones_tied_to_edges(network):
    engine, report = network
    assert report["linked_structures"] == 2 and report["unlinked_structures"] == []
    with engine.connect() as conn:
        links = conn.execute(text("""
            SELECT l.layer, l.feature_id, l.covered_m, l.lo, l.hi, r.name, ST_AsText(e.geom) AS wkt
            FROM road_edge_links l JOIN road_edges e ON e.id = l.edge_id JOIN roads r ON r.id = e.road_id
            ORDER BY l.layer, l.feature_id, e.id""")).mappings().all()
        zone = wkt.loads(conn.execute(text("SELECT ST_AsText(geom) FROM water_source_zones")).scalar_one())
    structures = [(x["feature_id"], x["name"]) for x in links if x["layer"] == "restricted_structures"]
    # the bridge runs along C only (A and B pass under it); the tunnel covers A's last edge
    assert structures == [(1, "C"), (2, "A")]
    tunnel = next(x for x in links if x["feature_id"] == 2 and x["layer"] == "restricted_structures")
    tunnel_m = shapely.transform(wkt.loads("LINESTRING(102.712 25, 102.718 25)"), TO_METRIC, interleaved=False).length
    assert tunnel["covered_m"] == pytest.approx(tunnel_m, rel=1e-3)
    # where on the edge: the tunnel's own ends (not the tolerance buffer's), as fractions of the metric edge
    edge_m = shapely.transform(wkt.loads(tunnel["wkt"]), TO_METRIC, interleaved=False)
    ends = [edge_m.project(shapely.transform(shapely.Point(x, 25), TO_METRIC, interleaved=False), normalized=True)
            for x in (102.712, 102.718)]
    assert (tunnel["lo"], tunnel["hi"]) == pytest.approx(sorted(ends), abs=1e-6)
    zone_links = [x for x in links if x["layer"] == "water_source_zones"]
    # zone covers B's northern edge and C's northern part (C, D and E touch it too: check by shapely)
    expected = {}
    with engine.connect() as conn:
        for e in edges(conn):
            inside = wkt.loads(e["wkt"]).intersection(zone)
            if not inside.is_empty:
                expected[e["name"]] = GEOD.geometry_length(inside)
                line_m = shapely.transform(wkt.loads(e["wkt"]), TO_METRIC, interleaved=False)
                at = [line_m.project(shapely.transform(shapely.Point(p), TO_METRIC, interleaved=False), normalized=True)
                      for p in shapely.get_coordinates(inside)]
                link = next(x for x in zone_links if x["wkt"] == e["wkt"])
                assert (link["lo"], link["hi"]) == pytest.approx((min(at), max(at)), abs=1e-6)
    assert {x["name"]: pytest.approx(x["covered_m"], rel=1e-3) for x in zone_links} == expected
    assert set(expected) == {"B", "C", "D"}


def test_nearest_node_and_rebuild(network):
    engine, report = network
    with engine.begin() as conn:
        node, dist = roadgraph.nearest_node(conn, 102.7101, 25.0001)
        x, y = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM road_nodes WHERE id = :i"), {"i": node}).one()
        assert (x, y) == (102.71, 25.0)
        assert dist == pytest.approx(GEOD.inv(102.7101, 25.0001, 102.71, 25.0)[2], rel=1e-3)
        again = roadnet.build_graph(conn)  # rebuilding gives the same graph
    assert {k: again[k] for k in ("edges", "nodes", "components")} == {"edges": 11, "nodes": 15, "components": 4}


def test_empty_graph_is_reported(clean):
    with clean.begin() as conn:
        report = roadnet.build_graph(conn)
        assert report["edges"] == 0 and report["components"] == 0
        assert roadnet.network_problems(report) == ["no routable edges: the roads layer is empty"]
        with pytest.raises(AnalysisError, match="road graph is empty"):
            roadgraph.nearest_node(conn, 102.7, 25.0)


def test_structure_class_sql_classes_as_the_standards(engine):
    """The SQL the route check classes structures by (a record's own class first) gives the JTG length
    classes (bridges JTG D60-2015, tunnels JTG 3370.1-2018) at and around every threshold, as the Python
    classifier of the imports does."""
    cases = [("bridge", 1000.1, "bridge_xl"), ("bridge", 1000, "bridge_l"), ("bridge", 100, "bridge_l"),
             ("bridge", 99.9, "bridge_m"), ("bridge", 30.1, "bridge_m"), ("bridge", 30, "bridge_s"),
             ("tunnel", 3000.1, "tunnel_xl"), ("tunnel", 3000, "tunnel_l"), ("tunnel", 1000.1, "tunnel_l"),
             ("tunnel", 1000, "tunnel_m"), ("tunnel", 500.1, "tunnel_m"), ("tunnel", 500, "tunnel_s")]
    rows = [(None, kind, length) for kind, length, _ in cases] + [("tunnel_xl", "tunnel", 10), (None, "bridge", None)]
    values = ", ".join(f"(CAST(:c{i} AS text), CAST(:k{i} AS text), CAST(:l{i} AS float8))" for i in range(len(rows)))
    params = {f"{p}{i}": v for i, row in enumerate(rows) for p, v in zip("ckl", row)}
    with engine.connect() as conn:
        got = conn.execute(text(f"SELECT {routing.STRUCTURE_CLASS_SQL} FROM (VALUES {values}) "
                                "s(structure_class, kind, length_m)"), params).scalars().all()
    assert got == [expected for *_, expected in cases] + ["tunnel_xl", None]
    assert got[:len(cases)] == [structure_class(kind, length) for kind, length, _ in cases]


def test_the_first_roads_run_is_current(network):
    """On a new database the shipped route rules are loaded when first read: by the first roads run, before it
    notes the versions of its inputs, so that run is not reported stale."""
    from layers.derived import latest_run

    engine, _ = network
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM route_rules"))
        conn.execute(text("UPDATE layer_versions SET version = 0 WHERE layer = 'route_rules'"))  # (as when new)
    roadnet.run(engine)
    with engine.connect() as conn:
        status = latest_run(conn, "roads")
        assert len(routing.list_rules(conn)) == len(routing.default_rules())
    assert status["stale"] is False and status["changed_inputs"] == []
