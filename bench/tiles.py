"""Vector tiles: this server (cold and warm cache) against tipg on the same database, and the raw
ST_AsMVT SQL, for the Kunming main urban area at z10/z12/z14 (issue: the one-map).

    .venv/bin/python -m bench.tiles [--workers 4] [--layers roads,receptors,accidents,admin_areas]

tipg runs from its own virtualenv (bench/.venv-tipg, made on first use from PyPI) as a separate
uvicorn process pointed at the same database. Every server gets the same tile list and the same
number of concurrent workers. Writes bench/results/tiles.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mercantile
import psycopg

from bench.common import free_port, markdown_table, percentiles, serve, stop, throwaway_cluster, write_result
from layers import registry
from layers.db import make_engine, migrate
from layers.settings import StoreSettings
from layers.tiles import Tile, layer_sql

URBAN = (102.62, 24.96, 102.84, 25.12)  # Kunming main urban area (lon/lat)
ZOOMS = (10, 12, 14)
TIPG_VENV = Path(__file__).parent / ".venv-tipg"


def tipg_python() -> str:
    py = TIPG_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run([str(TIPG_VENV / "bin" / "pip"), "install", "-q", "tipg", "uvicorn"], check=True)
    return str(py)


def start_tipg(db_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": db_url.replace("postgresql+psycopg://", "postgresql://"),
           "TIPG_DB_SCHEMAS": '["public"]', "TIPG_MAX_FEATURES_PER_TILE": "20000"}
    proc = subprocess.Popen([tipg_python(), "-m", "uvicorn", "tipg.main:app", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/collections", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError("tipg did not start")


def fetch_all(urls: list[str], workers: int, headers: dict | None = None) -> tuple[list[float], float, int]:
    """Latencies, wall time and bytes for GETting every URL with ``workers`` concurrent clients."""
    clients = [httpx.Client(timeout=60, headers=headers or {}) for _ in range(workers)]

    def one(i_url):
        i, url = i_url
        t0 = time.perf_counter()
        r = clients[i % workers].get(url)
        if r.status_code not in (200, 204):
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
        return time.perf_counter() - t0, len(r.content)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, enumerate(urls)))
    wall = time.perf_counter() - t0
    for c in clients:
        c.close()
    return [r[0] for r in results], wall, sum(r[1] for r in results)


def raw_sql(db_url: str, jobs: list[tuple], workers: int) -> tuple[list[float], float]:
    conninfo = db_url.replace("postgresql+psycopg://", "postgresql://")
    conns = [psycopg.connect(conninfo) for _ in range(workers)]

    def one(i_job):
        i, (spec, tile) = i_job
        t0 = time.perf_counter()
        conns[i % workers].execute(layer_sql(spec, "anonymous", tile, 20000).replace(":z", "%(z)s")
                                   .replace(":x", "%(x)s").replace(":y", "%(y)s"),
                                   {"z": tile.z, "x": tile.x, "y": tile.y}).fetchone()
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        lat = list(pool.map(one, enumerate(jobs)))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return lat, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--layers", default="roads,receptors,accidents,admin_areas")
    args = ap.parse_args()
    layer_ids = args.layers.split(",")

    cluster = throwaway_cluster()
    procs = []
    try:
        url = cluster.url()
        migrate(url)
        engine = make_engine(url)
        from layers.demo import load_demo_if_empty

        print("loading the demo ...", flush=True)
        load_demo_if_empty(engine, StoreSettings())
        engine.dispose()
        tiles = {z: list(mercantile.tiles(*URBAN, zooms=z)) for z in ZOOMS}
        ours_port, tipg_port = free_port(), free_port()
        procs.append(serve({**os.environ, "DATABASE_URL": url, "RISKMAP_LOG_LEVEL": "warning"}, ours_port, "--no-demo"))
        procs.append(start_tipg(url, tipg_port))
        rows = []
        for lid in layer_ids:
            spec = registry.get(lid)
            fields = ",".join(f.name for f in spec.fields_for("anonymous"))
            for z in ZOOMS:
                ts = tiles[z]
                ours = [f"http://127.0.0.1:{ours_port}/tiles/{lid}/{t.z}/{t.x}/{t.y}.pbf" for t in ts]
                tipg = [f"http://127.0.0.1:{tipg_port}/collections/public.{spec.table}/tiles/WebMercatorQuad/"
                        f"{t.z}/{t.x}/{t.y}?properties={fields}" for t in ts]
                cold, cold_wall, nbytes = fetch_all(ours, args.workers)
                warm, warm_wall, _ = fetch_all(ours, args.workers)
                tp, tp_wall, tbytes = fetch_all(tipg, args.workers)
                raw, raw_wall = raw_sql(url, [(spec, Tile(t.z, t.x, t.y)) for t in ts], args.workers)
                n = len(ts)
                for name, lat, wall in (("riskmap cold", cold, cold_wall), ("riskmap warm", warm, warm_wall),
                                        ("tipg", tp, tp_wall), ("raw ST_AsMVT SQL", raw, raw_wall)):
                    p = percentiles(lat)
                    rows.append([lid, z, n, name, n / wall, p["p50"], p["p95"], p["p99"]])
                rows.append([lid, z, n, "ratios", f"cold/tipg {tp_wall / cold_wall:.2f}x faster",
                             f"warm/tipg {tp_wall / warm_wall:.1f}x", f"cold/raw {cold_wall / raw_wall:.2f}x slower",
                             f"KB ours {nbytes // 1024} tipg {tbytes // 1024}"])
                print(f"{lid} z{z}: {n} tiles done", flush=True)
        table = markdown_table(["layer", "z", "tiles", "server", "tiles/s", "p50 ms", "p95 ms", "p99 ms"], rows)
        notes = (f"\n\nTiles: every tile of the bbox {URBAN} at each zoom; {args.workers} concurrent clients for every "
                 "server; riskmap cold = first pass after start (empty cache), warm = second pass. tipg gets the same "
                 "properties (`properties=`). Accidents are clustered on our server below z13 (tipg sends every point), "
                 "so their low-zoom rows compare different work. Raw SQL = the exact statement our server runs, "
                 "over psycopg with the same concurrency.")
        print(table + notes)
        print("wrote", write_result("tiles", "Vector tiles: riskmap vs tipg vs raw SQL", table + notes))
    finally:
        for p in procs:
            stop(p) if p.args and "riskmap" in str(p.args[0]) else p.terminate()
        cluster.destroy()


if __name__ == "__main__":
    main()
