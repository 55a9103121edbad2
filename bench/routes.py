"""Hazmat routing: /routes/plan and /routes/check over HTTP against an in-memory NetworkX Dijkstra on the
same graph, on the Kunming demo network, the x10 synthetic one and a 300 x 300 street grid; one search of
ours (in-memory graph, gis.roadgraph) against NetworkX and against a whole-table pgr_dijkstra.

    .venv/bin/python -m bench.routes [--scales 1,10] [--pairs 30]

Per scale: a throwaway cluster, the demo (``layers.demo`` at that scale, through the import
validation), the road graph, the default rules, and ``riskmap serve`` on it. Origin/destination pairs
are random road nodes of the largest connected part (fixed seed). The cargo is chlorine (UN 1017,
class 2.3) leaving at 10:00, so the banned edges (long tunnels, ADR C-E tunnels, extra-large bridges,
grade-1/2 water-source zones) are removed for every search, NetworkX included (graph loading is not
timed for NetworkX). Writes bench/results/routes.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import socket
import statistics
import tempfile
import time
from pathlib import Path

import networkx as nx
from sqlalchemy import text

from bench.common import free_port, markdown_table, serve, stop, throwaway_cluster, write_result
from bench.emergency import load
from gis import roadgraph, routing
from gis.roadnet import build_graph
from layers.db import make_engine, migrate
from layers.settings import StoreSettings
from layers.users import add_user

CARGO = {"un_number": "1017"}
PASSES = 3  # passes over the pairs for the plan / NetworkX ratio
DEPARTURE = "2026-03-02T10:00:00+08:00"
FULL_TABLE = ("SELECT max(agg_cost) FROM pgr_dijkstra('SELECT id, source, target, cost_s AS cost, "
              "reverse_cost_s AS reverse_cost FROM road_edges', CAST(:s AS bigint), CAST(:t AS bigint), true)")


def ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1000 if xs else float("nan")


def nx_graph(conn, banned: set[int]) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(conn.execute(text("SELECT id FROM road_nodes")).scalars())  # (also those only on banned edges)
    for e in conn.execute(text("SELECT id, source, target, cost_s, reverse_cost_s FROM road_edges")):
        if e.id in banned:
            continue
        for a, b, c in ((e.source, e.target, e.cost_s), (e.target, e.source, e.reverse_cost_s)):
            if c >= 0 and (not g.has_edge(a, b) or g[a][b]["w"] > c):
                g.add_edge(a, b, w=c)
    return g


def nx_dijkstra(g: nx.DiGraph, s: int, t: int, seconds: list[float]) -> float | None:
    """NetworkX's fastest time s -> t (None: no path), its duration appended to ``seconds``."""
    t0 = time.perf_counter()
    try:
        return nx.dijkstra_path_length(g, s, t, weight="w")
    except nx.NetworkXNoPath:
        return None
    finally:
        seconds.append(time.perf_counter() - t0)


def pairs(conn, n: int, seed: int = 11) -> list[tuple]:
    nodes = conn.execute(text("""
        SELECT id, ST_X(geom) AS x, ST_Y(geom) AS y FROM road_nodes
        WHERE component = (SELECT component FROM road_nodes GROUP BY component ORDER BY count(*) DESC LIMIT 1)
        ORDER BY id""")).all()
    rng = random.Random(seed)
    return [tuple(rng.sample(nodes, 2)) for _ in range(n)]


GRID_ROADS = """
INSERT INTO roads (name, road_class, speed_kmh, synthetic, source, geom)
SELECT 'grid', CASE WHEN k % 40 = 0 THEN 'motorway' WHEN k % 10 = 0 THEN 'primary' ELSE 'urban' END,
       CASE WHEN k % 40 = 0 THEN 100 WHEN k % 10 = 0 THEN 60 ELSE 40 END, true, 'bench/routes.py synthetic grid',
       ST_SetSRID(ST_MakeLine(ST_MakePoint(102.3 + i * :step, 24.7 + j * :step),
                              ST_MakePoint(102.3 + (i + di) * :step, 24.7 + (j + dj) * :step)), 4326)
FROM generate_series(0, :n - 1) i, generate_series(0, :n - 1) j, (VALUES (1, 0), (0, 1)) d(di, dj),
     LATERAL (SELECT CASE WHEN di = 1 THEN j ELSE i END AS k) kk
WHERE i + di < :n AND j + dj < :n"""
# every 7th motorway edge is a long tunnel; one grade-1 water-source zone in the middle
GRID_RESTRICTIONS = """
INSERT INTO restricted_structures (name, kind, structure_class, length_m, adr_category, synthetic, source, geom)
SELECT 'grid tunnel ' || id, 'tunnel', 'tunnel_l', ST_Length(geom::geography), 'D', true, 'bench grid', geom
FROM roads WHERE road_class = 'motorway' AND id % 7 = 0;
INSERT INTO water_source_zones (name, zone_level, synthetic, source, geom)
VALUES ('grid zone', 'grade1', true, 'bench grid', ST_Multi(ST_Buffer(ST_SetSRID(ST_MakePoint(102.67, 25.07), 4326), 0.03)))"""


def load_grid(engine, n: int) -> int:
    """An n x n grid of 250 m streets (a synthetic network like the issue's 179 400-edge reference)."""
    with engine.begin() as conn:
        conn.execute(text(GRID_ROADS), {"n": n, "step": 0.0025})
        for stmt in GRID_RESTRICTIONS.split(";"):
            conn.execute(text(stmt))
    return 0


def run_scale(scale: int, n: int, grid: int = 0) -> dict:
    cluster = throwaway_cluster()
    data_dir = Path(tempfile.mkdtemp(prefix="riskmap-bench-routes-"))
    proc = None
    try:
        url = cluster.url()
        migrate(url)
        engine = make_engine(url, pool_size=2)
        left_out = (load_grid(engine, grid) if grid
                    else load(engine, StoreSettings(database_url=url, data_dir=data_dir), scale))
        t0 = time.perf_counter()
        with engine.begin() as conn:
            graph = build_graph(conn)
            routing.reset_rules(conn)
            token = add_user(conn, "bench-routes", "route_controller")
        build_s = time.perf_counter() - t0
        print(f"{'grid' if grid else 'x' + str(scale)}: graph {graph['edges']} edges, {graph['nodes']} nodes in {build_s:.1f} s", flush=True)
        res = {"name": f"grid {grid}x{grid} (synthetic)" if grid else f"demo x{scale}", "left_out": left_out,
               "build_s": build_s, "graph": graph}
        cargo = routing.resolve_cargo(CARGO)
        with engine.begin() as conn:
            t = time.perf_counter()
            roadgraph.get(conn)  # the first request after a rebuild loads the graph into memory
            res["load_ms"] = (time.perf_counter() - t) * 1000
            banned = routing.banned_edges_for(conn, cargo, routing.parse_departure(DEPARTURE))
            res["sizes"] = dict(conn.execute(text(
                "SELECT (SELECT count(*) FROM restricted_structures) AS structures, "
                "(SELECT count(*) FROM water_source_zones) AS zones")).mappings().one())
            res["banned"] = len(banned)
            g = nx_graph(conn, set(banned))
            od = pairs(conn, n)
            times = {k: [] for k in ("nx", "nx_bidir", "full", "ours", "plan_inproc", "check_inproc", "plan", "check",
                                     "check_floor")}
            mismatches, routes = 0, []
            for a, b in od:
                expected = nx_dijkstra(g, a.id, b.id, times["nx"])
                t = time.perf_counter()
                try:
                    nx.bidirectional_dijkstra(g, a.id, b.id, weight="w")
                except nx.NetworkXNoPath:
                    pass
                times["nx_bidir"].append(time.perf_counter() - t)
                t = time.perf_counter()
                path = routing.shortest_path(conn, a.id, b.id, banned)
                times["ours"].append(time.perf_counter() - t)
                got = path.cost_s if path else None
                if (got is None) != (expected is None) or (got is not None and abs(got - expected) > 1e-6 * got):
                    mismatches += 1
            # plans and checks in this process (no HTTP), with the versions of the graph, rules, structures and
            # zones given, as the server's change feed gives them
            versions, departure, free = routing._versions(conn), routing.parse_departure(DEPARTURE), []
            gc.collect()  # this process's heap (the demo it generated, NetworkX's graph) out of the collector's
            gc.freeze()   # full passes, as `riskmap serve` leaves its own after warm-up
            for k in range(PASSES):
                for a, b in od:
                    t = time.perf_counter()
                    out = routing.plan_route(conn, [a.x, a.y], [b.x, b.y], cargo, departure, versions=versions)
                    times["plan_inproc"].append(time.perf_counter() - t)
                    if k == 0:
                        free.append(out["unrestricted"]["geometry"])
            for _ in range(PASSES):
                for route in free:
                    t = time.perf_counter()
                    routing.check_route(conn, route, cargo, departure, versions=versions)
                    times["check_inproc"].append(time.perf_counter() - t)
            gc.unfreeze()
            for a, b in od[: max(5, n // 3)]:  # the whole table per query is slow: fewer samples
                t = time.perf_counter()
                conn.execute(text(FULL_TABLE), {"s": a.id, "t": b.id}).scalar()
                times["full"].append(time.perf_counter() - t)
        engine.dispose()
        port = free_port()
        proc = serve({**os.environ, "DATABASE_URL": url, "RISKMAP_DATA_DIR": str(data_dir)}, port, "--no-demo")
        client = socket.create_connection(("127.0.0.1", port), timeout=120)  # one keep-alive connection
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\n"

        def post(path: str, body: dict) -> tuple[dict, float]:
            """The JSON answer and the seconds from sending the request to the last byte of the answer: a
            minimal HTTP/1.1 client (as the tiles bench's), so that what is timed is the server, not a
            client library's header parsing (http.client added ~0.12 ms a request here)."""
            data = json.dumps(body).encode()
            request = f"POST {path} HTTP/1.1\r\n{head}Content-Length: {len(data)}\r\n\r\n".encode() + data
            t = time.perf_counter()
            client.sendall(request)
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += client.recv(1 << 16)
            status_head, _, answer = buf.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in status_head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            while len(answer) < length:
                answer += client.recv(1 << 16)
            elapsed = time.perf_counter() - t
            if not status_head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"{path}: {status_head[:40]!r} {answer[:300]!r}")
            return json.loads(answer), elapsed

        body = {"cargo": CARGO, "departure": DEPARTURE}
        post("/routes/plan", {**body, "origin": [od[0][0].x, od[0][0].y],
                              "destination": [od[0][1].x, od[0][1].y]})  # warm up
        for a, b in od:
            answer, seconds = post("/routes/plan", {**body, "origin": [a.x, a.y], "destination": [b.x, b.y]})
            times["plan"].append(seconds)
            routes.append(answer["unrestricted"])
        for _ in range(PASSES - 1):  # more samples of both sides of the ratio, each in its own loop
            for a, b in od:
                times["plan"].append(post("/routes/plan", {**body, "origin": [a.x, a.y],
                                                           "destination": [b.x, b.y]})[1])
            for a, b in od:
                nx_dijkstra(g, a.id, b.id, times["nx"])
        for _ in range(PASSES):
            for route in routes:
                answer, seconds = post("/routes/check", {**body, "route": route["geometry"]})
                times["check"].append(seconds)
                route["conflicts_found"] = len(answer["conflicts"])
            for a, _ in od:  # the least a check can cost here: a 2-point route of ~10 m
                times["check_floor"].append(post("/routes/check", {**body, "route": {
                    "type": "LineString", "coordinates": [[a.x, a.y], [a.x + 0.0001, a.y]]}})[1])
        client.close()
        res.update(times=times, mismatches=mismatches,
                   route_km=statistics.median(r["length_m"] for r in routes) / 1000,
                   route_vertices=statistics.median(len(r["geometry"]["coordinates"]) for r in routes),
                   with_conflicts=sum(1 for r in routes if r["conflicts_found"]))
        return res
    finally:
        if proc is not None:
            stop(proc)
        cluster.destroy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="1,10")
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--grid", type=int, default=300, help="also an N x N street grid (0: none); 300 = 179 400 edges")
    args = ap.parse_args()
    results = [run_scale(int(s), args.pairs) for s in args.scales.split(",")]
    if args.grid:
        results.append(run_scale(0, args.pairs, args.grid))
    size_rows, search_rows, inproc_rows, http_rows = [], [], [], []
    for r in results:
        t, g = r["times"], r["graph"]
        name = r["name"] + (f" ({r['left_out']} invalid features left out)" if r["left_out"] else "")
        size_rows.append([name, g["edges"], g["nodes"], g["components"], r["sizes"]["structures"],
                          r["sizes"]["zones"], r["banned"], round(r["build_s"], 1), round(r["load_ms"])])
        search_rows.append([name, ms(t["nx"]), ms(t["nx_bidir"]), ms(t["full"]), ms(t["ours"]),
                            f"{ms(t['nx']) / ms(t['ours']):.1f}x", r["mismatches"]])
        inproc_rows.append([name, round(r["route_km"], 1), int(r["route_vertices"]), r["with_conflicts"],
                            f"{ms(t['plan_inproc']):.3f}", f"{ms(t['check_inproc']):.3f}",
                            f"{ms(t['check_inproc']) / ms(t['plan_inproc']):.2f}"])
        http_rows.append([name, f"{ms(t['plan']):.3f}", f"{ms(t['check']):.3f}", f"{ms(t['check_floor']):.3f}",
                          f"{ms(t['nx']) / ms(t['plan']):.1f}x", f"{ms(t['check']) / ms(t['plan']):.2f}",
                          f"{ms(t['check_floor']) / ms(t['plan']):.2f}"])
    body = (
        f"{args.pairs} random origin/destination pairs per network (largest connected part, seed 11); cargo chlorine "
        f"(UN 1017, class 2.3) at 10:00 with the default rules, so the banned edges are removed for every search. "
        "Median milliseconds.\n\n## Networks\n\n"
        + markdown_table(["network", "edges", "nodes", "parts", "restricted structures", "water zones",
                          "banned edges", "graph build s", "graph load ms"], size_rows)
        + "\n\n`graph build s`: `build_graph` in PostGIS/pgRouting (`riskmap analyze roads`); `graph load ms`: the "
        "first search after a rebuild reads the graph tables into memory (`gis.roadgraph`), later ones reuse them."
        + "\n\n## One compliant shortest-path search\n\n"
        "NetworkX: `dijkstra_path_length` on an in-memory DiGraph (loading not timed); `bidirectional_dijkstra` "
        "for reference. pgRouting whole table: plain `pgr_dijkstra` over every edge (what every search cost "
        "before: it reads the edge table on each call). Ours: `gis.routing.shortest_path` = the graph version "
        "check (one query), then an A* search with landmark bounds (ALT) compiled with numba on the graph held in "
        "memory as CSR arrays (`gis.roadgraph`), the path's edges, profile and geometry. `mismatches`: answers "
        "differing from NetworkX's optimum (must be 0).\n\n"
        + markdown_table(["network", "NetworkX Dijkstra", "NetworkX bidirectional", "pgr_dijkstra whole table",
                          "ours", "NetworkX / ours", "mismatches"], search_rows)
        + "\n\n## Plan and check\n\n"
        "`plan` = snapping, rules, the unrestricted and the compliant search, and the check of both routes (arrival "
        "times) through their edges' links to structures and zones. `check` = the unrestricted route of each pair "
        "(a long route following the roads, as a GeoJSON line) against every restricted structure, water-source zone "
        "and time-banned road class, by geometry (`gis.routing.check_route`). Both on data held in memory. Goals: "
        "plan at least 3x faster than NetworkX at x10; check under a tenth of plan. Plans, checks and NetworkX's "
        f"searches are timed over {PASSES} passes of the pairs, each kind in its own loop (NetworkX timed right "
        "before each plan made the plan up to 2x slower: both share the 2 cores and their caches).\n\n"
        "### The computation (in this process)\n\n"
        "`gis.routing.plan_route` and `gis.routing.check_route` called directly, with the versions of the graph, "
        "rules, structures and zones given, as the server's change feed gives them (read once per network), and "
        "the objects made before them frozen out of the garbage collector's full passes, as the server does after "
        "warm-up (`gc.freeze`).\n\n"
        + markdown_table(["network", "route km (median)", "route vertices", "routes with conflicts",
                          "plan ms", "check ms", "check / plan"], inproc_rows)
        + "\n\n### Over HTTP\n\n"
        "Both requests are answered by the server's fast path (`api.routers.routes.RouteFastPath`): the token and "
        "the versions come from the change feed, so neither makes a database round trip. `2-point check` = a check "
        "of a 10 m route near the origin: what any check costs here (HTTP, JSON, validation, rules) before its "
        "geometry; a plan carries the same kind of cost. One keep-alive connection and a minimal HTTP/1.1 client "
        "(as the tiles bench's), from sending the request to the last byte of the answer.\n\n"
        + markdown_table(["network", "/routes/plan ms", "/routes/check ms", "2-point check ms",
                          "NetworkX Dijkstra / plan", "check / plan", "2-point check / plan"], http_rows)
    )
    print(body)
    print("wrote", write_result("routes", "Hazmat route planning and checking (issue #6)", body))


if __name__ == "__main__":
    main()
