"""Vector tiles: this server (cold and warm cache) against tipg on the same database, and the raw
ST_AsMVT SQL, for the Kunming main urban area at z10/z12/z14 (issue: the one-map).

    .venv/bin/python -m bench.tiles [--workers 4] [--min-requests 200] [--layers roads,receptors,accidents,admin_areas]

tipg runs from its own virtualenv (bench/.venv-tipg, made on first use from PyPI) as a separate
uvicorn process pointed at the same database. Every server gets the same tile list and the same
number of concurrent workers. Writes bench/results/tiles.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import mercantile
import psycopg

from bench.common import free_port, markdown_table, percentiles, serve, stop, throwaway_cluster, write_result
from layers import registry
from layers.db import libpq_url, make_engine, migrate
from layers.settings import StoreSettings
from layers.tiles import Tile, layer_sql

URBAN = (102.62, 24.96, 102.84, 25.12)  # Kunming main urban area (lon/lat)
ZOOMS = (10, 12, 14)
PROBE = (9, 402, 219)  # z/x/y of a tile outside the measured list (it holds the urban area), see cold_pass
TIPG_VENV = Path(__file__).parent / ".venv-tipg"


def tipg_python() -> str:
    py = TIPG_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run([str(TIPG_VENV / "bin" / "pip"), "install", "-q", "tipg", "uvicorn", "httptools", "uvloop"], check=True)
    return str(py)


def start_tipg(db_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": libpq_url(db_url),
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


async def _client(host: str, reader, writer, jobs, extra: bytes, lat: list, size: list) -> None:
    """One keep-alive HTTP/1.1 connection taking paths from the shared iterator ``jobs``."""
    try:
        for path in jobs:
            t0 = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n".encode() + extra + b"\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, chunked = int(head[9:12]), 0, False
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                k = k.strip().lower()
                if k == b"content-length":
                    length = int(v)
                elif k == b"transfer-encoding" and b"chunked" in v.lower():
                    chunked = True
            body = b""
            if chunked:
                while n := int((await reader.readuntil(b"\r\n")).strip(), 16):
                    body += (await reader.readexactly(n + 2))[:-2]
                await reader.readuntil(b"\r\n")
            elif length:
                body = await reader.readexactly(length)
            if status not in (200, 204):
                raise RuntimeError(f"{path}: {status} {body[:200]!r}")
            lat.append(time.perf_counter() - t0)
            size.append(len(body))
    finally:
        writer.close()


def fetch_all(urls: list[str], workers: int, headers: dict | None = None) -> tuple[list[float], float, int]:
    """Latencies, wall time and bytes for GETting every URL (one host) over ``workers`` concurrent
    keep-alive connections, gzip accepted. A minimal asyncio client: at thousands of requests a
    second a full HTTP client library costs more CPU than a cached tile, and the client shares the
    2 cores with the servers."""
    u = urlsplit(urls[0])
    extra = b"".join(f"{k}: {v}\r\n".encode() for k, v in (headers or {}).items())
    paths = iter([urlsplit(x)._replace(scheme="", netloc="").geturl() for x in urls])
    lat: list[float] = []
    size: list[int] = []

    async def run() -> float:
        conns = [await asyncio.open_connection(u.hostname, u.port) for _ in range(min(workers, len(urls)))]
        t0 = time.perf_counter()  # (connections open: only the requests are timed)
        await asyncio.gather(*(_client(u.hostname, r, w, paths, extra, lat, size) for r, w in conns))
        return time.perf_counter() - t0

    wall = asyncio.run(run())
    return lat, wall, sum(size)


def cpu_ns(pid: int) -> int:
    """CPU time used so far by every thread of a process (ns, ``/proc/<pid>/task/*/schedstat``)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError):  # (a thread gone meanwhile)
            pass
    return total


def postgres_pids(cluster) -> list[int]:
    """The cluster's postmaster and its children (backends, background workers)."""
    main = int((cluster.pgdata / "postmaster.pid").read_text().split()[0])
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == main:
                kids.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            pass
    return [main, *kids]


def metered(run, groups: dict):
    """``run()``'s result and the CPU seconds each group of processes (name -> function giving their
    pids) used meanwhile; a process started meanwhile counts from zero."""
    before = {k: {pid: cpu_ns(pid) for pid in pids()} for k, pids in groups.items()}
    out = run()
    return out, {k: sum(cpu_ns(pid) - before[k].get(pid, 0) for pid in pids()) / 1e9 for k, pids in groups.items()}


def wall_of(passes) -> float:
    return sum(p[1] for p in passes)


def raw_sql(conns: list, jobs: list[tuple]) -> tuple[list[float], float, int]:
    """Latencies, wall time and bytes for running each tile's statement, one thread per connection."""
    workers = len(conns)

    def one(i_job):
        i, (spec, tile) = i_job
        t0 = time.perf_counter()
        mvt = conns[i % workers].execute(layer_sql(spec, "anonymous", tile, 20000),
                                         {"z": tile.z, "x": tile.x, "y": tile.y}).fetchone()[0]
        return time.perf_counter() - t0, len(mvt)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, enumerate(jobs)))
    wall = time.perf_counter() - t0
    return [r[0] for r in results], wall, sum(r[1] for r in results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--min-requests", type=int, default=200, help="repeat each tile list to at least this many")
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
        rows, ratios, cpu_rows = [], [], []
        cpu_groups = {"riskmap": lambda: [procs[0].pid], "PostgreSQL": lambda: postgres_pids(cluster),
                      "client": lambda: [os.getpid()]}
        conninfo = libpq_url(url)
        touch = psycopg.connect(conninfo, autocommit=True)
        # the raw SQL's connections are opened once and warmed (PostGIS loaded in each backend), as a
        # server's pooled connections are
        raw_conns = [psycopg.connect(conninfo, autocommit=True) for _ in range(args.workers)]
        for c in raw_conns:
            c.execute("SELECT postgis_full_version()")
        for lid in layer_ids:
            spec = registry.get(lid)
            fields = ",".join(f.name for f in spec.fields_for("anonymous"))
            for z in ZOOMS:
                ts = tiles[z]
                n, reps = len(ts), -(-args.min_requests // len(ts))
                ours = [f"http://127.0.0.1:{ours_port}/tiles/{lid}/{t.z}/{t.x}/{t.y}.pbf" for t in ts]
                tipg = [f"http://127.0.0.1:{tipg_port}/collections/public.{spec.table}/tiles/WebMercatorQuad/"
                        f"{t.z}/{t.x}/{t.y}?properties={fields}" for t in ts]
                jobs = [(spec, Tile(t.z, t.x, t.y)) for t in ts]

                def cold_pass():
                    # a write that changes nothing still bumps the layer version, so every cached tile
                    # misses; not timed: wait until the server has heard of it (the ETag of a probe tile
                    # outside the measured list changes), then measure the pass
                    before = httpx.get(probe).headers["etag"]
                    touch.execute(f'UPDATE "{spec.table}" SET id = id WHERE false')
                    while httpx.get(probe).headers["etag"] == before:
                        pass
                    return metered(lambda: fetch_all(ours, args.workers), cpu_groups)

                probe = f"http://127.0.0.1:{ours_port}/tiles/{lid}/{'/'.join(map(str, PROBE))}.pbf"
                cold_runs = [cold_pass() for _ in range(reps)]
                raw_runs = [metered(lambda: raw_sql(raw_conns[:n], jobs), cpu_groups) for _ in range(reps)]
                runs = {"riskmap cold": [r for r, _ in cold_runs],
                        "riskmap warm": [fetch_all(ours, args.workers) for _ in range(reps)],
                        "tipg": [fetch_all(tipg, args.workers) for _ in range(reps)],
                        "raw ST_AsMVT SQL": [r for r, _ in raw_runs]}
                cpu = {what: {k: sum(c[k] for _, c in passes) / (n * reps) * 1e6 for k in cpu_groups}
                       for what, passes in (("cold", cold_runs), ("raw", raw_runs))}
                cpu_rows.append([lid, z, cpu["cold"]["riskmap"], cpu["cold"]["PostgreSQL"], cpu["cold"]["client"],
                                 cpu["raw"]["PostgreSQL"], cpu["raw"]["client"],
                                 (wall_of(runs["riskmap cold"]) / (n * reps)) * 1e6,
                                 (wall_of(runs["raw ST_AsMVT SQL"]) / (n * reps)) * 1e6])
                wall = {}
                for name, passes in runs.items():
                    lat = [x for p in passes for x in p[0]]
                    wall[name] = wall_of(passes)
                    q = percentiles(lat)
                    rows.append([lid, z, n * reps, name, len(lat) / wall[name], q["p50"], q["p95"], q["p99"]])
                cold, warm, tp, raw = (wall[k] for k in runs)
                ratios.append([lid, z, f"{tp / cold:.2f}x", f"{tp / warm:.1f}x", f"{cold / raw:.2f}x",
                               runs["riskmap cold"][0][2] // 1024, runs["tipg"][0][2] // 1024])
                print(f"{lid} z{z}: {n} tiles x {reps} passes done", flush=True)
        for c in [touch, *raw_conns]:
            c.close()
        table = markdown_table(["layer", "z", "requests", "server", "tiles/s", "p50 ms", "p95 ms", "p99 ms"], rows)
        summary = markdown_table(["layer", "z", "cold vs tipg (goal >= 1x)", "warm vs tipg (goal >= 10x)",
                                  "cold time / raw SQL time (goal <= 1.5x)", "KB per pass ours (gzip)",
                                  "KB per pass tipg"], ratios)
        notes = (f"Tiles: every tile of the bbox {URBAN} at each zoom, in passes over that list, repeated to at least "
                 f"{args.min_requests} requests; {args.workers} concurrent keep-alive connections (at most one per "
                 "tile of a pass) for every server, the same minimal asyncio HTTP/1.1 client for both servers "
                 "(gzip accepted); both servers run uvicorn with httptools and uvloop, one process; passes run back to "
                 "back. riskmap cold = every pass right after a write to the layer that changes nothing but its "
                 "version (so every cached tile misses and is rendered again), started once the server has heard "
                 "of it (the ETag of a probe tile outside the list has changed; not timed); warm = the same "
                 "passes served from the cache. tipg gets the same properties "
                 "(`properties=`). Accidents are clustered on our server below z13 (tipg sends every point), so "
                 "their low-zoom rows compare different work. Raw SQL = the exact statement our server runs, over "
                 "psycopg with the same concurrency, no HTTP. Ratios divide the wall times of all passes.")
        cpu_table = markdown_table(["layer", "z", "cold: riskmap", "cold: PostgreSQL", "cold: bench client",
                                    "raw: PostgreSQL", "raw: bench client", "cold wall per tile", "raw wall per tile"],
                                   cpu_rows)
        cpu_notes = ("CPU time per tile in microseconds (every thread of each process, from `/proc/<pid>/task/*/"
                     "schedstat`) over the cold and the raw SQL passes above, and the wall time per tile (both are "
                     "per pass: at z10 the 2 tiles of a pass carry the client's per-pass setup). With 2 cores a pass "
                     "takes at least the sum of its CPU columns / 2, and a cold pass at least the riskmap column: one "
                     "event-loop thread does nearly all of the server's work.")
        body = ("## Summary\n\n" + summary + "\n\n## Every server\n\n" + table + "\n\n" + notes
                + "\n\n## CPU per cold tile\n\n" + cpu_table + "\n\n" + cpu_notes)
        print(body)
        print("wrote", write_result("tiles", "Vector tiles: riskmap vs tipg vs raw SQL", body))
    finally:
        for p in procs:
            stop(p) if p.args and "riskmap" in str(p.args[0]) else p.terminate()
        cluster.destroy()


if __name__ == "__main__":
    main()
