"""The routable graph on a hand-built network whose nodes, edges and parts are counted by hand;
lengths and covered lengths are cross-checked with pyproj/shapely."""

from __future__ import annotations

import math

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


# Noded, the network has 11 edges and 15 nodes; cut into pieces of at most 500 m (GraphSettings.max_edge_m),
# an edge of L metres gives ceil(L / 500) pieces and each extra piece one node more. Lengths (0.005° of
# longitude at 25° N is 505 m, 0.01° of latitude 1108 m): A 505 + 505 + 1009 m -> 2 + 2 + 3 pieces, B 1108 +
# 1108 -> 3 + 3, C 1499 -> 3, D 2216 -> 5, E, F 1108 -> 3, G, H 1009 -> 3: 33 edges, 15 + 22 = 37 nodes.
PIECES = {"A": 7, "B": 6, "C": 3, "D": 5, "E": 3, "F": 3, "G": 3, "H": 3}


def test_noding_counts_by_hand(network):
    engine, report = network
    assert report["roads"] == 8 and report["edges"] == 33 and report["nodes"] == 37
    assert report["split_edges"] == 11  # every edge of this network is longer than 500 m
    assert report["degenerate_roads"] == 0 and report["one_way_edges"] == 3  # one-way E in 3 pieces
    with engine.connect() as conn:
        per_road = dict(conn.execute(text(
            "SELECT r.name, count(*) FROM road_edges e JOIN roads r ON r.id = e.road_id GROUP BY r.name")).all())
    # A is cut at 102.705 (F ends there) and 102.71 (B shares it), not at 102.715 (D is on layer 1)
    assert per_road == PIECES
    unsplit = roadnet.GraphSettings(max_edge_m=1e6)  # the noding alone
    with engine.begin() as conn:
        report = roadnet.build_graph(conn, unsplit)
        assert (report["edges"], report["nodes"], report["split_edges"]) == (11, 15, 0)
        per_road = dict(conn.execute(text(
            "SELECT r.name, count(*) FROM road_edges e JOIN roads r ON r.id = e.road_id GROUP BY r.name")).all())
        assert per_road == {"A": 3, "B": 2, "C": 1, "D": 1, "E": 1, "F": 1, "G": 1, "H": 1}


def test_components_and_one_way_trap(network):
    engine, report = network
    # main part {A, B, E, F, G}: 9 nodes, 14 more where its edges are cut (A 4, B 4, E, F, G 2 each);
    # C, D, H each alone: 2 nodes and 2, 4, 2 cut points (see PIECES)
    assert report["components"] == 4
    assert [p["nodes"] for p in report["parts"]] == [23, 6, 4, 4]
    assert report["nodes_outside_largest"] == 14
    # the 2 cut points and the end of one-way E can be reached but not left
    assert report["one_way_trapped_nodes"] == 3
    with engine.connect() as conn:
        assert roadnet.components(conn) == {k: report[k] for k in roadnet.components(conn)}
    problems = roadnet.network_problems(report)
    assert any("disconnected: 4 parts" in p for p in problems)
    assert any("3 nodes are trapped" in p for p in problems)


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
    g = [e for e in rows if e["name"] == "G"][-1]  # (G's last piece)
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
            SELECT l.layer, l.feature_id, l.covered_m, l.lo, l.hi, r.name, e.id, ST_AsText(e.geom) AS wkt
            FROM road_edge_links l JOIN road_edges e ON e.id = l.edge_id JOIN roads r ON r.id = e.road_id
            ORDER BY l.layer, l.feature_id, e.id""")).mappings().all()
        zone = wkt.loads(conn.execute(text("SELECT ST_AsText(geom) FROM water_source_zones")).scalar_one())
        rows = edges(conn)
    structures = [(x["feature_id"], x["name"]) for x in links if x["layer"] == "restricted_structures"]
    # the bridge runs along C only (A and B pass under it), over C's 3 pieces; the tunnel (102.712–102.718)
    # covers parts of the 3 pieces of A's last edge (102.71–102.72, cut at 102.71333 and 102.71667)
    assert structures == [(1, "C")] * 3 + [(2, "A")] * 3
    tunnel_wgs = wkt.loads("LINESTRING(102.712 25, 102.718 25)")
    tunnel_m = shapely.transform(tunnel_wgs, TO_METRIC, interleaved=False)
    pieces = [x for x in links if x["feature_id"] == 2 and x["layer"] == "restricted_structures"]
    assert sum(x["covered_m"] for x in pieces) == pytest.approx(tunnel_m.length, rel=1e-3)
    for x in pieces:
        # where on the piece: the tunnel's own ends (not the tolerance buffer's), as fractions of the metric
        # piece (an end beyond the piece is its end), and the length of the tunnel over the piece
        edge_m = shapely.transform(wkt.loads(x["wkt"]), TO_METRIC, interleaved=False)
        ends = [edge_m.project(shapely.transform(shapely.Point(lon, 25), TO_METRIC, interleaved=False), normalized=True)
                for lon in (102.712, 102.718)]
        assert (x["lo"], x["hi"]) == pytest.approx(sorted(ends), abs=1e-6)
        assert x["covered_m"] == pytest.approx(tunnel_m.intersection(edge_m.buffer(0.01)).length, abs=0.05)
    zone_links = {x["id"]: x for x in links if x["layer"] == "water_source_zones"}
    # zone covers B's northern pieces and C's northern part (C, D and E touch it too: check by shapely)
    expected = {}
    for e in rows:
        inside = wkt.loads(e["wkt"]).intersection(zone)
        if not inside.is_empty:
            expected[e["id"]] = GEOD.geometry_length(inside)
            line_m = shapely.transform(wkt.loads(e["wkt"]), TO_METRIC, interleaved=False)
            at = [line_m.project(shapely.transform(shapely.Point(p), TO_METRIC, interleaved=False), normalized=True)
                  for p in shapely.get_coordinates(inside)]
            assert (zone_links[e["id"]]["lo"], zone_links[e["id"]]["hi"]) == pytest.approx((min(at), max(at)), abs=1e-6)
    assert {i: pytest.approx(x["covered_m"], rel=1e-3) for i, x in zone_links.items()} == expected
    assert {zone_links[i]["name"] for i in expected} == {"B", "C", "D"}


def test_nearest_node_and_rebuild(network):
    engine, report = network
    with engine.begin() as conn:
        node, dist = roadgraph.nearest_node(conn, 102.7101, 25.0001)
        x, y = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM road_nodes WHERE id = :i"), {"i": node}).one()
        assert (x, y) == (102.71, 25.0)
        assert dist == pytest.approx(GEOD.inv(102.7101, 25.0001, 102.71, 25.0)[2], rel=1e-3)
        again = roadnet.build_graph(conn)  # rebuilding gives the same graph
    assert {k: again[k] for k in ("edges", "nodes", "components")} == {"edges": 33, "nodes": 37, "components": 4}


def add_road(conn, name: str, start, end, layer: int = 0, bridge: bool = False) -> None:
    conn.execute(text("INSERT INTO roads (name, road_class, speed_kmh, oneway, layer, bridge, geom) VALUES "
                      "(:n, 'primary', 60, false, :l, :b, ST_MakeLine(ST_Point(:x0, :y0, 4326), ST_Point(:x1, :y1, 4326)))"),
                 {"n": name, "l": layer, "b": bridge, "x0": start[0], "y0": start[1], "x1": end[0], "y1": end[1]})


def test_long_edges_are_cut_so_a_point_on_the_road_snaps_nearby(clean):
    """A 2.0 km road with no junction (a rural road between two villages) is cut into 4 edges of 500 m at 3 new
    nodes: a point anywhere on it is at most 250 m from a node (uncut, its middle was 1000 m from both ends)."""
    x0, y0 = 102.70, 25.0
    x1, y1, _ = GEOD.fwd(x0, y0, 90, 2000.0)  # 2000 m east, on the 1e-6° grid (x towards the start: not over 2 km)
    x1, y1 = math.floor(x1 * 1e6) / 1e6, round(y1, 6)
    length = GEOD.inv(x0, y0, x1, y1)[2]
    assert length == pytest.approx(2000, abs=0.1) and length <= 2000
    at = lambda d: (x0 + (x1 - x0) * d / 2000, y0 + (y1 - y0) * d / 2000)  # the point about d metres along
    with clean.begin() as conn:
        add_road(conn, "rural", (x0, y0), (x1, y1))
        conn.execute(text("INSERT INTO restricted_structures (name, kind, structure_class, length_m, geom) VALUES "
                          "('tunnel', 'tunnel', 'tunnel_m', 800, ST_MakeLine(ST_Point(:a, :b, 4326), ST_Point(:c, :d, 4326)))"),
                     dict(zip("abcd", (*at(300), *at(1100)))))  # from 300 m to 1100 m along the road
        report = roadnet.build_graph(conn)
        assert (report["edges"], report["nodes"], report["split_edges"], report["components"]) == (4, 5, 1, 1)
        rows = edges(conn)
        assert [e["length_m"] for e in rows] == [pytest.approx(length / 4, abs=0.01)] * 4  # 500 m (to 3 cm)
        assert [(e["source"], e["target"]) for e in rows] == [(1, 3), (3, 4), (4, 5), (5, 2)]  # ends 1, 2; cuts 3..5
        for e in rows:  # each piece starts at its source node and ends at its target node, costs from its length
            ends = conn.execute(text("SELECT ST_X(geom), ST_Y(geom) FROM road_nodes WHERE id IN (:s, :t) ORDER BY id = :t"),
                                {"s": e["source"], "t": e["target"]}).all()
            assert [tuple(p) for p in ends] == [(e["x1"], e["y1"]), (e["x2"], e["y2"])]
            assert e["cost_s"] == e["reverse_cost_s"] == pytest.approx(e["length_m"] / (60 / 3.6))
            assert e["road_class"] == "primary" and e["road_id"] == 1 and not e["bridge"]
        g = roadgraph.get(conn)  # the lookup route plans, route checks and emergency rankings snap with
        _, dist = g.nearest(*at(1000))
        assert dist[0] == pytest.approx(0, abs=0.01)  # the middle of the road is a cut point
        _, dist = g.nearest(*zip(*(at(d) for d in (250, 750, 1250, 1750))))  # the middles of the pieces
        assert dist.tolist() == [pytest.approx(length / 8, abs=0.01)] * 4 and max(dist) <= 250
        assert routing.shortest_path(conn, 1, 2).length_m == pytest.approx(length, abs=0.01)
        # the tunnel covers 200 m of the first piece, the whole second and 100 m of the third: linked to those
        # three (though it covers less than half of the first and third), each with the stretch it covers
        links = conn.execute(text("SELECT edge_id, covered_m, lo, hi FROM road_edge_links ORDER BY edge_id")).all()
    assert [link.edge_id for link in links] == [1, 2, 3]
    assert [link.covered_m for link in links] == [pytest.approx(m, rel=1e-3) for m in (200, 500, 100)]
    assert [(link.lo, link.hi) for link in links] == [pytest.approx(f, abs=1e-4) for f in ((0.6, 1), (0, 1), (0, 0.2))]


def test_cut_points_of_a_bridge_and_the_road_under_it_are_not_joined(clean):
    """A 900 m bridge (layer 1) over a 900 m road, crossing at both middles: each is cut there, at points a few
    millimetres apart, which stay two nodes (the bridge does not become a junction)."""
    px, py = 102.75, 25.02
    dx = GEOD.fwd(px, py, 90, 450.0)[0] - px  # 450 m of longitude here
    south, north = GEOD.fwd(px, py, 180, 450.0)[1], GEOD.fwd(px, py, 0, 450.0)[1]
    with clean.begin() as conn:
        add_road(conn, "under", (px - dx, py), (px + dx, py))
        add_road(conn, "bridge", (px, south), (px, north), layer=1, bridge=True)
        report = roadnet.build_graph(conn)
        assert (report["edges"], report["nodes"], report["split_edges"], report["components"]) == (4, 6, 2, 2)
        cuts = conn.execute(text("SELECT id, ST_X(geom), ST_Y(geom) FROM road_nodes WHERE id > 4 ORDER BY id")).all()
        by_road = conn.execute(text("SELECT road_id, array_agg(DISTINCT n) FROM road_edges, "
                                    "unnest(ARRAY[source, target]) n GROUP BY road_id ORDER BY road_id")).all()
    assert len(cuts) == 2 and GEOD.inv(*cuts[0][1:], *cuts[1][1:])[2] < 0.01  # the same place, two nodes
    assert GEOD.inv(px, py, *cuts[0][1:])[2] < 0.01
    assert not set(by_road[0][1]) & set(by_road[1][1])  # no node shared by the road and the bridge


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
