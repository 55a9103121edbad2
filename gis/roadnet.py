"""The routable road graph (pgRouting) built from the ``roads`` layer, and the ``roads`` analysis.

Noding follows OpenStreetMap semantics: roads connect where they share a vertex (an end point, or an
interior vertex shared by two roads on the same ``layer``), never where they merely cross (a bridge
over a road is not a junction). Coordinates are snapped to a grid of ``snap_deg`` degrees
(default 1e-6°, about 0.1 m) so that end points digitised a few centimetres apart still meet.
Each road is cut at its node vertices into edges, and an edge longer than ``max_edge_m`` (default 500 m)
into equal pieces at new nodes of its own (never joined to another road's node at the same place), so
that every point of a road is within ``max_edge_m / 2`` of a node: origins, destinations, incidents and
resources snap to the nearest node, and a long rural edge would leave a point on the road kilometres
from one (a point on a road is within 250 m of a node by default). The tables:

``road_edges``
    id, road_id, source, target, length_m (geodesic), speed_kmh, cost_s = length_m / speed,
    reverse_cost_s (-1 for one-way roads: travel only in digitised direction), road_class, bridge,
    tunnel, component, x1/y1/x2/y2 (lon/lat of source/target), geom (LineString, 4326).
``road_nodes``
    id, component, geom (Point, 4326).
``road_edge_links``
    which edges a restricted structure (bridge/tunnel line) or a water-source zone covers.

pgRouting builds and checks the graph (components, strong components); route searches run on an
in-memory copy of these tables (:mod:`gis.roadgraph`), which every rebuild invalidates.

A broken network is reported, not ignored: :func:`components` lists the disconnected parts and the
nodes trapped by one-way roads, and :func:`run` stores that in the analysis run's statistics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from gis import roadgraph
from layers.crs import METRIC_EPSG
from layers.spec import ROAD_CLASS_SPEEDS


@dataclass(frozen=True)
class GraphSettings:
    """How the graph is built (defaults documented in docs/road-safety.md)."""

    snap_deg: float = 1e-6            # vertex snapping grid (degrees)
    default_speed_kmh: float = 40.0   # road with no speed and an unknown class
    speeds: dict = field(default_factory=lambda: dict(ROAD_CLASS_SPEEDS))  # road with no speed, by class
    structure_tolerance_m: float = 15.0   # an edge within this distance of a bridge/tunnel line ...
    structure_share: float = 0.5          # ... running along it for this share of the shorter of the two
    max_edge_m: float = 500.0         # longer edges are cut into equal pieces: a road point is within half of it of a node


def _tmp(conn: Connection, name: str, select_sql: str, params: dict | None = None) -> None:
    conn.execute(text(f"DROP TABLE IF EXISTS {name}"))
    conn.execute(text(f"CREATE TEMP TABLE {name} AS {select_sql}"), params or {})


def build_graph(conn: Connection, settings: GraphSettings | None = None) -> dict:
    """(Re)build ``road_edges``/``road_nodes`` from the ``roads`` layer and link structures and zones.

    Runs in the caller's transaction (the graph is replaced as a whole or not at all).

    Parameters
    ----------
    conn : sqlalchemy.Connection
        Connection inside a transaction.
    settings : GraphSettings, optional
        Snapping grid, default speeds, structure-matching tolerance, longest edge.

    Returns
    -------
    dict
        Statistics: roads, edges, nodes, degenerate_roads (fewer than two distinct vertices, left
        out), one_way_edges, split_edges (edges between nodes longer than ``max_edge_m``, cut into
        pieces: ``edges`` counts the pieces), plus those of :func:`link_features` and :func:`components`.
    """
    s = settings or GraphSettings()
    k = round(1 / s.snap_deg)  # grid keys are integers; coordinates key / k
    roadgraph.bump_version(conn)  # searches run on an in-memory copy (gis.roadgraph): every process reloads it
    conn.execute(text("TRUNCATE road_edge_links, road_edges, road_nodes RESTART IDENTITY"))
    # Vertices snapped to integer grid keys, consecutive duplicates dropped.
    _tmp(conn, "_rn_v", """
        SELECT road_id, lyr, idx, kx, ky FROM (
          SELECT p.*, lag(kx) OVER w AS px, lag(ky) OVER w AS py FROM (
            SELECT r.id AS road_id, coalesce(r.layer, 0) AS lyr, (d).path[1] AS idx,
                   round(ST_X((d).geom) * :k)::bigint AS kx, round(ST_Y((d).geom) * :k)::bigint AS ky
            FROM roads r, LATERAL ST_DumpPoints(r.geom) AS d) p
          WINDOW w AS (PARTITION BY road_id ORDER BY idx)) q
        WHERE px IS NULL OR px <> kx OR py <> ky""", {"k": k})
    conn.execute(text("CREATE INDEX ON _rn_v (road_id, idx)"))
    # Node vertices: road ends, vertices shared on the same layer, and any vertex where a road ends.
    _tmp(conn, "_rn_seg", """
        SELECT road_id, i0, i1, kx0, ky0, kx1, ky1 FROM (
          SELECT road_id, idx AS i0, kx AS kx0, ky AS ky0, lead(idx) OVER w AS i1, lead(kx) OVER w AS kx1,
                 lead(ky) OVER w AS ky1
          FROM (SELECT f.*, bool_or(is_end) OVER (PARTITION BY kx, ky) AS any_end FROM (
                  SELECT v.*, (idx = min(idx) OVER r OR idx = max(idx) OVER r) AS is_end,
                         count(*) OVER (PARTITION BY kx, ky, lyr) AS n
                  FROM _rn_v v WINDOW r AS (PARTITION BY road_id)) f) g
          WHERE is_end OR n > 1 OR any_end
          WINDOW w AS (PARTITION BY road_id ORDER BY idx)) s
        WHERE i1 IS NOT NULL""")
    _tmp(conn, "_rn_nodes", """
        SELECT row_number() OVER (ORDER BY kx, ky)::int AS id, kx, ky
        FROM (SELECT kx0 AS kx, ky0 AS ky FROM _rn_seg UNION SELECT kx1, ky1 FROM _rn_seg) n""")
    conn.execute(text("CREATE INDEX ON _rn_nodes (kx, ky)"))
    # Edges between node vertices (road order), each to be cut into n equal pieces of at most max_edge_m
    # (1 mm of slack: a 2000.0000001 m edge gives 4 pieces, not 5).
    _tmp(conn, "_rn_e", """
        SELECT row_number() OVER (ORDER BY e.road_id, e.i0)::int AS eid, e.road_id, n0.id AS source, n1.id AS target,
               e.geom, e.v, e.oneway, e.road_class, e.bridge, e.tunnel,
               greatest(1, ceil((ST_Length(e.geom::geography) - 0.001) / :max_edge))::int AS n
        FROM (
          SELECT l.*, r.oneway, r.bridge, r.tunnel, r.road_class,
                 CASE WHEN r.speed_kmh > 0 THEN r.speed_kmh
                      ELSE coalesce((CAST(:speeds AS jsonb) ->> r.road_class)::float, :v0) END AS v
          FROM (SELECT s.road_id, s.i0, s.kx0, s.ky0, s.kx1, s.ky1,
                       ST_SetSRID(ST_MakeLine(array_agg(ST_MakePoint(v.kx::float8 / :k, v.ky::float8 / :k) ORDER BY v.idx)), 4326)
                         AS geom
                FROM _rn_seg s JOIN _rn_v v ON v.road_id = s.road_id AND v.idx BETWEEN s.i0 AND s.i1
                GROUP BY s.road_id, s.i0, s.kx0, s.ky0, s.kx1, s.ky1) l
          JOIN roads r ON r.id = l.road_id) e
        JOIN _rn_nodes n0 ON n0.kx = e.kx0 AND n0.ky = e.ky0
        JOIN _rn_nodes n1 ON n1.kx = e.kx1 AND n1.ky = e.ky1""",
         {"k": k, "speeds": json.dumps(s.speeds), "v0": float(s.default_speed_kmh), "max_edge": float(s.max_edge_m)})
    # Cut points at equal geodesic distances, on the edge's line (f: fraction of its lon/lat length, as
    # ST_LineSubstring takes): new nodes numbered after the vertex nodes, never keyed by position (a cut
    # point on a bridge right above another road's node or cut point must not join them).
    _tmp(conn, "_rn_cut", """
        SELECT (SELECT count(*) FROM _rn_nodes)::int + row_number() OVER (ORDER BY eid, j)::int AS id, eid, j,
               (d0 + t * deg) / dlen AS f, ST_LineInterpolatePoint(seg, t) AS geom
        FROM (  -- the segment each cut falls on (the last starting before it) and where on it
          SELECT DISTINCT ON (s.eid, k.j) s.*, k.j, greatest(0, least(1, (k.j * s.len / s.n - s.m0) / s.m)) AS t
          FROM (SELECT s.*, sum(m) OVER w - m AS m0, sum(deg) OVER w - deg AS d0,
                       sum(m) OVER (PARTITION BY eid) AS len, sum(deg) OVER (PARTITION BY eid) AS dlen
                FROM (SELECT e.eid, e.n, d.path[1] AS i, d.geom AS seg, ST_Length(d.geom::geography) AS m,
                             ST_Length(d.geom) AS deg
                      FROM _rn_e e, ST_DumpSegments(e.geom) d WHERE e.n > 1) s
                WINDOW w AS (PARTITION BY eid ORDER BY i)) s
          CROSS JOIN generate_series(1, s.n - 1) k(j)
          WHERE s.m0 <= k.j * s.len / s.n
          ORDER BY s.eid, k.j, s.i DESC) c""")
    conn.execute(text("CREATE INDEX ON _rn_cut (eid, j)"))
    conn.execute(text("""
        INSERT INTO road_nodes (id, geom)
        SELECT id, ST_SetSRID(ST_MakePoint(kx::float8 / :k, ky::float8 / :k), 4326) FROM _rn_nodes
        UNION ALL SELECT id, geom FROM _rn_cut ORDER BY id"""), {"k": k})
    # Piece j of an edge: the stretch between its cut points, its ends set to its nodes' points exactly.
    conn.execute(text("""
        INSERT INTO road_edges (road_id, source, target, length_m, speed_kmh, cost_s, reverse_cost_s, road_class,
                                bridge, tunnel, x1, y1, x2, y2, geom)
        SELECT e.road_id, coalesce(c0.id, e.source), coalesce(c1.id, e.target), p.len, e.v, p.len / (e.v / 3.6),
               CASE WHEN e.oneway THEN -1 ELSE p.len / (e.v / 3.6) END, e.road_class, e.bridge, e.tunnel,
               ST_X(ST_StartPoint(g.geom)), ST_Y(ST_StartPoint(g.geom)), ST_X(ST_EndPoint(g.geom)),
               ST_Y(ST_EndPoint(g.geom)), g.geom
        FROM _rn_e e CROSS JOIN LATERAL generate_series(1, e.n) k(j)
        LEFT JOIN _rn_cut c0 ON c0.eid = e.eid AND c0.j = k.j - 1
        LEFT JOIN _rn_cut c1 ON c1.eid = e.eid AND c1.j = k.j
        CROSS JOIN LATERAL (SELECT CASE WHEN e.n = 1 THEN e.geom ELSE ST_SetPoint(ST_SetPoint(
            ST_LineSubstring(e.geom, coalesce(c0.f, 0), coalesce(c1.f, 1)),
            0, coalesce(c0.geom, ST_StartPoint(e.geom))), -1, coalesce(c1.geom, ST_EndPoint(e.geom))) END AS geom) g
        CROSS JOIN LATERAL (SELECT ST_Length(g.geom::geography) AS len) p
        ORDER BY e.eid, k.j"""))
    stats = dict(conn.execute(text("""
        SELECT (SELECT count(*) FROM roads) AS roads, (SELECT count(*) FROM road_edges) AS edges,
               (SELECT count(*) FROM road_nodes) AS nodes,
               (SELECT count(*) FROM road_edges WHERE reverse_cost_s < 0) AS one_way_edges,
               (SELECT count(*) FROM roads r WHERE NOT EXISTS (SELECT 1 FROM road_edges e WHERE e.road_id = r.id))
                 AS degenerate_roads,
               (SELECT count(*) FROM _rn_e WHERE n > 1) AS split_edges""")).mappings().one())
    for name in ("_rn_v", "_rn_seg", "_rn_nodes", "_rn_e", "_rn_cut"):
        conn.execute(text(f"DROP TABLE {name}"))
    _label_components(conn)
    for table in ("road_nodes", "road_edges"):
        # written once more: no dead row versions from the updates above
        conn.execute(text(f"CREATE TEMP TABLE _rn_copy AS SELECT * FROM {table} ORDER BY id"))
        conn.execute(text(f"TRUNCATE road_edge_links, {table}"))  # (links are computed below)
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM _rn_copy"))
        conn.execute(text("DROP TABLE _rn_copy"))
        conn.execute(text(f"ANALYZE {table}"))
    stats.update(link_features(conn, s))
    stats.update(components(conn))
    return stats


def _label_components(conn: Connection) -> None:
    """Store the (undirected) connected component of every node and edge: its smallest node id."""
    conn.execute(text("""
        UPDATE road_nodes n SET component = c.component
        FROM pgr_connectedComponents('SELECT id, source, target, cost_s AS cost, reverse_cost_s AS reverse_cost
                                      FROM road_edges') c
        WHERE c.node = n.id"""))
    conn.execute(text("UPDATE road_edges e SET component = n.component FROM road_nodes n WHERE n.id = e.source"))


def along_sql(a: str, s: str) -> str:
    """SQL joins measuring how metric line ``a`` runs along metric line ``s`` (within ``:tol`` metres).

    Adds one row per connected piece ``p.part`` of ``a`` within ``:tol`` of ``s``, with ``loc.alo``/
    ``loc.ahi`` (its first and last fraction along ``a``) and ``loc.slo``/``loc.shi`` (along ``s``), and a
    WHERE clause keeping the pieces that run along ``s`` for at least ``:share`` of the shorter of the two
    lines, measured along ``s``: a line crossing ``s`` covers almost nothing of it, and a route that only
    touches both ends of a tunnel (going round it) has two short pieces, not one long one. ``a`` and
    ``s`` are SQL expressions from code.
    """
    return f"""
        CROSS JOIN LATERAL (SELECT (ST_Dump(ST_Intersection({a}, ST_Buffer({s}, :tol)))).geom AS part) p
        CROSS JOIN LATERAL (SELECT min(ST_LineLocatePoint({s}, d.geom)) AS slo, max(ST_LineLocatePoint({s}, d.geom)) AS shi,
                                   min(ST_LineLocatePoint({a}, d.geom)) AS alo, max(ST_LineLocatePoint({a}, d.geom)) AS ahi
                            FROM ST_DumpPoints(p.part) d) loc
        WHERE NOT ST_IsEmpty(p.part)
          AND (loc.shi - loc.slo) * ST_Length({s}) >= :share * least(ST_Length({a}), ST_Length({s}))"""


def link_features(conn: Connection, settings: GraphSettings | None = None) -> dict:
    """Tie restricted structures and water-source zones to the edges they cover (``road_edge_links``).

    A structure (bridge or tunnel line) covers a road between two junctions (an edge as noded, before
    :func:`build_graph` cut it into pieces) when the road runs within ``structure_tolerance_m`` of it
    for at least ``structure_share`` of the shorter of the two, measured along the structure (so a road
    passing under a bridge is not tied to it); the structure is then linked to each piece of that road
    its stretch covers, ``covered_m`` the share of that stretch on the piece. A zone covers
    every edge that intersects it; ``covered_m`` is the length inside. ``lo``/``hi``: the stretch of the
    edge covered (fractions along its metric line, digitised direction). ``road_graph_inputs`` keeps the
    ``layer_versions`` rows of the two layers the links were made from (the tables are locked against
    writes meanwhile), so a later edit to them is known to make the links stale.

    Returns
    -------
    dict
        linked_structures, unlinked_structures (ids of structures on no edge), zone_links.
    """
    s = settings or GraphSettings()
    roadgraph.bump_version(conn)  # the in-memory graph holds the links: every process reloads it
    conn.execute(text("LOCK TABLE restricted_structures, water_source_zones IN SHARE MODE"))
    conn.execute(text("DELETE FROM road_edge_links"))
    # Structures are matched to the road between two junctions (a chain: the pieces build_graph cut an edge
    # into, joined at nodes where nothing else meets), as before the cut, and the links go to the pieces
    # the matched stretch covers: a 600 m tunnel covering 100 m of a 500 m piece still covers that piece.
    _tmp(conn, "_lf_e", f"""
        SELECT id, chain, geom, mg, (cum - len) / total AS f0, cum / total AS f1 FROM (
          SELECT e.*, sum(len) OVER (PARTITION BY chain ORDER BY id) AS cum, sum(len) OVER (PARTITION BY chain) AS total
          FROM (SELECT e.id, e.geom, e.mg, ST_Length(e.mg) AS len, sum(e.first::int) OVER (ORDER BY e.id) AS chain
                FROM (SELECT e.id, e.geom, ST_Transform(e.geom, {METRIC_EPSG}) AS mg,
                             NOT coalesce(lag(e.road_id) OVER w = e.road_id AND lag(e.target) OVER w = e.source
                                          AND d.n = 2, false) AS first
                      FROM road_edges e
                      JOIN (SELECT node, count(*) AS n FROM (SELECT source AS node FROM road_edges
                                                             UNION ALL SELECT target FROM road_edges) x
                            GROUP BY node) d ON d.node = e.source
                      WINDOW w AS (ORDER BY e.id)) e) e) e""")
    _tmp(conn, "_lf_c", """
        SELECT chain, ST_MakeLine(array_agg(geom ORDER BY id)) AS geom, ST_MakeLine(array_agg(mg ORDER BY id)) AS mg
        FROM _lf_e GROUP BY chain""")
    conn.execute(text("CREATE INDEX ON _lf_c USING gist (geom)"))
    conn.execute(text("CREATE INDEX ON _lf_e (chain)"))
    ends = ", ".join(f"ST_LineLocatePoint(t.eg, ST_LineInterpolatePoint(t.sg, loc.{f}))" for f in ("slo", "shi"))
    conn.execute(text(f"""
        INSERT INTO road_edge_links (edge_id, layer, feature_id, covered_m, lo, hi)
        -- per piece: its share of each matched stretch (clo..chi along the chain), as fractions of the piece
        SELECT e.id, 'restricted_structures', x.sid,
               sum(x.run * CASE WHEN x.chi > x.clo THEN (least(x.chi, e.f1) - greatest(x.clo, e.f0)) / (x.chi - x.clo)
                                ELSE 1 END),
               min((greatest(x.clo, e.f0) - e.f0) / (e.f1 - e.f0)), max((least(x.chi, e.f1) - e.f0) / (e.f1 - e.f0))
        FROM (
          SELECT c.chain, st.id AS sid, (loc.shi - loc.slo) * ST_Length(t.sg) AS run,
                 -- the stretch of the structure run along, located on the chain (not the buffer's wider ends)
                 least({ends}) AS clo, greatest({ends}) AS chi
          FROM restricted_structures st
          -- (tol in degrees: at most 110.5 km a degree of latitude, 111.3 km · cos(latitude) of longitude)
          JOIN _lf_c c ON c.geom && ST_Expand(st.geom, :tol / (110500.0 * cos(radians(least(89.0,
              greatest(abs(ST_YMin(st.geom::box2d)), abs(ST_YMax(st.geom::box2d))))))))
          CROSS JOIN LATERAL (SELECT ST_Transform(st.geom, {METRIC_EPSG}) AS sg, c.mg AS eg) t
          {along_sql("t.eg", "t.sg")}) x
        JOIN _lf_e e ON e.chain = x.chain
         AND (greatest(x.clo, e.f0) < least(x.chi, e.f1) OR x.clo = x.chi AND x.clo BETWEEN e.f0 AND e.f1)
        GROUP BY e.id, x.sid"""),
        {"tol": float(s.structure_tolerance_m), "share": float(s.structure_share)})
    for name in ("_lf_e", "_lf_c"):
        conn.execute(text(f"DROP TABLE {name}"))
    conn.execute(text(f"""
        INSERT INTO road_edge_links (edge_id, layer, feature_id, covered_m, lo, hi)
        SELECT e.id, 'water_source_zones', z.id, ST_Length(i.geom::geography), loc.lo, loc.hi
        FROM water_source_zones z JOIN road_edges e ON ST_Intersects(e.geom, z.geom)
        CROSS JOIN LATERAL (SELECT ST_Intersection(e.geom, z.geom) AS geom) i
        CROSS JOIN LATERAL (SELECT min(f) AS lo, max(f) AS hi FROM ST_DumpPoints(i.geom) d,
                            LATERAL ST_LineLocatePoint(ST_Transform(e.geom, {METRIC_EPSG}),
                                                       ST_Transform(d.geom, {METRIC_EPSG})) f) loc"""))
    conn.execute(text("DELETE FROM road_graph_inputs"))
    conn.execute(text("""
        INSERT INTO road_graph_inputs (layer, version, x)
        SELECT l.layer, v.version, v.xmin::text FROM unnest(ARRAY['restricted_structures', 'water_source_zones']) l(layer)
        LEFT JOIN layer_versions v ON v.layer = l.layer"""))
    row = conn.execute(text("""
        SELECT (SELECT count(DISTINCT feature_id) FROM road_edge_links WHERE layer = 'restricted_structures') AS ls,
               (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM restricted_structures s WHERE NOT EXISTS (
                  SELECT 1 FROM road_edge_links l WHERE l.layer = 'restricted_structures' AND l.feature_id = s.id))
                 AS unlinked,
               (SELECT count(*) FROM road_edge_links WHERE layer = 'water_source_zones') AS zl""")).one()
    return {"linked_structures": row.ls, "unlinked_structures": list(row.unlinked), "zone_links": row.zl}


def components(conn: Connection, limit: int = 20) -> dict:
    """Report the disconnected parts of the graph and the nodes one-way roads trap.

    Parameters
    ----------
    conn : sqlalchemy.Connection
    limit : int
        How many parts to list (largest first).

    Returns
    -------
    dict
        ``components`` (number of connected parts, ignoring direction), ``parts`` (the largest
        ``limit``: component id, nodes, edges, length_km, bbox), ``nodes_outside_largest``,
        ``strong_components`` (parts when one-way directions are respected) and
        ``one_way_trapped_nodes`` (nodes of the largest part that cannot reach, or cannot be
        reached from, the rest of it).
    """
    parts = [dict(r) for r in conn.execute(text("""
        SELECT n.component, count(*) AS nodes,
               (SELECT count(*) FROM road_edges e WHERE e.component = n.component) AS edges,
               round(((SELECT coalesce(sum(length_m), 0) FROM road_edges e WHERE e.component = n.component)
                      / 1000)::numeric, 3)::float AS length_km,
               ARRAY[ST_XMin(ST_Extent(n.geom)), ST_YMin(ST_Extent(n.geom)),
                     ST_XMax(ST_Extent(n.geom)), ST_YMax(ST_Extent(n.geom))] AS bbox
        FROM road_nodes n GROUP BY n.component ORDER BY nodes DESC, n.component""")).mappings()]
    total = sum(p["nodes"] for p in parts)
    out = {"components": len(parts), "parts": parts[:limit],
           "nodes_outside_largest": total - (parts[0]["nodes"] if parts else 0),
           "strong_components": 0, "one_way_trapped_nodes": 0}
    if parts:
        strong = conn.execute(text("""
            SELECT component, count(*) AS n FROM pgr_strongComponents(
              'SELECT id, source, target, cost_s AS cost, reverse_cost_s AS reverse_cost FROM road_edges')
            GROUP BY component ORDER BY n DESC""")).all()
        largest_strong = strong[0].n if strong else 0
        out["strong_components"] = len(strong)
        out["one_way_trapped_nodes"] = parts[0]["nodes"] - largest_strong
    return out


def network_problems(report: dict) -> list[str]:
    """Plain-language problems in a :func:`build_graph` report (empty when the network is sound)."""
    problems = []
    if report.get("edges", 0) == 0:
        problems.append("no routable edges: the roads layer is empty")
    if report.get("components", 0) > 1:
        problems.append(f"network is disconnected: {report['components']} parts, "
                        f"{report['nodes_outside_largest']} nodes outside the largest")
    if report.get("one_way_trapped_nodes"):
        problems.append(f"{report['one_way_trapped_nodes']} nodes are trapped by one-way roads")
    if report.get("degenerate_roads"):
        problems.append(f"{report['degenerate_roads']} roads have fewer than two distinct vertices (left out)")
    if report.get("unlinked_structures"):
        problems.append(f"{len(report['unlinked_structures'])} restricted structures lie on no road edge: "
                        f"ids {report['unlinked_structures'][:20]}")
    return problems


def run(engine: Engine, store_settings=None) -> dict:
    """The ``roads`` analysis: rebuild the graph, black spots and the conflicts of stored hazmat routes.

    One transaction; derived layers ``blackspots`` and ``route_conflicts`` carry the run id.
    """
    from gis import blackspots, routing
    from layers.derived import finish_run, start_run

    with engine.begin() as conn:
        routing.list_rules(conn)  # (loads the shipped rules on first use: before the run notes the versions it read)
        run_id = start_run(conn, "roads", ["roads", "restricted_structures", "water_source_zones", "accidents",
                                           "hazmat_routes", "route_rules"])
        graph = build_graph(conn)
        stats = {k: graph[k] for k in ("roads", "edges", "nodes", "split_edges", "components", "nodes_outside_largest",
                                        "one_way_trapped_nodes", "linked_structures", "zone_links")}
        stats["network_problems"] = network_problems(graph)
        stats.update(blackspots.compute(conn, run_id))
        stats.update(routing.check_stored_routes(conn, run_id))
        finish_run(conn, run_id, stats)
    return stats
