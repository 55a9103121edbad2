"""Test fixtures: one throwaway PostGIS cluster per session (never skipped, never mocked)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.settings import ApiSettings
from layers import registry
from layers.db import make_engine, migrate
from layers.embedded import EmbeddedCluster
from layers.settings import StoreSettings
from layers.users import add_user

FIXTURES = Path(__file__).parent / "fixtures"
RISKMAP = str(Path(sys.executable).parent / "riskmap")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {output(proc)}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("server did not become ready")


def eventually(check, seconds: float = 10.0) -> bool:
    """Poll ``check`` until it holds (a change made on another connection reaches the server by NOTIFY)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def settled(engine, table: str) -> bool:
    """Whether ``table`` has been vacuumed and analysed (as ``layers.io.settle`` does after an import)."""
    with engine.connect() as conn:
        stats = conn.execute(text("SELECT last_vacuum, last_analyze FROM pg_stat_user_tables WHERE relname = :t"),
                             {"t": table}).one()
    return stats.last_vacuum is not None and stats.last_analyze is not None


def serve(env: dict, port: int, *args: str) -> subprocess.Popen:
    """``riskmap serve`` as a user starts it, its output (one log line a request) kept in a file: in a pipe
    nobody reads, the server would stop at the pipe's 64 KiB, blocked writing a log line."""
    log = tempfile.TemporaryFile("w+", encoding="utf-8")
    proc = subprocess.Popen([RISKMAP, "serve", "--port", str(port), *args], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


@contextmanager
def served(db_url: str):
    """The URL of a server started by :func:`serve` on ``db_url`` (no demo data), stopped afterwards."""
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def output(proc: subprocess.Popen) -> str:
    """What a server started by :func:`serve` has written so far."""
    proc.log.flush()
    proc.log.seek(0)
    return proc.log.read()


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Stop a server started by :func:`serve` (Ctrl-C, or ``sig``) and return its output."""
    proc.send_signal(sig)
    proc.wait(timeout=60)
    out = output(proc)
    proc.log.close()
    return out


def load(engine, layer: str, frame, **kw) -> None:
    """Validate a GeoDataFrame against the registry and write it (the import path, minus the file)."""
    from layers.io import validate, write

    spec = registry.get(layer)
    records, rejections, _ = validate(spec, frame, StoreSettings().area_bbox, **kw)
    assert not rejections, rejections
    with engine.begin() as conn:
        write(conn, spec, records)


def pond_with_open_alarm(engine, now) -> None:
    """A tailings pond (测试尾矿库) with the simulation's sensors (TP1-D1 …) and one open alarm: TP1-D1's
    displacement up to 8 minutes before ``now``. Alarms and per-asset thresholds from before are cleared."""
    import geopandas as gpd
    import shapely

    from gis import monitoring

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE monitoring_alarms, monitoring_alarm_events, monitoring_daily CASCADE"))
        conn.execute(text("DELETE FROM monitoring_thresholds WHERE asset_layer IS NOT NULL"))
    load(engine, "tailings_ponds", gpd.GeoDataFrame({"name": ["测试尾矿库"]},
                                                   geometry=[shapely.box(102.7, 25.0, 102.71, 25.01)], crs=4326))
    with engine.begin() as conn:
        monitoring.ensure_demo_sensors(conn)
        readings = [{"sensor": "TP1-D1", "time": (now - timedelta(minutes=m)).isoformat(), "value": v, "unit": "mm"}
                    for m, v in ((15, 20), (10, 55), (8, 60))]
        assert monitoring.ingest(conn, readings)["alarms"]


@contextmanager
def browser_page():
    """A page in Debian's headless Chromium (driven by Playwright) and the list of its console errors."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            yield page, errors
        finally:
            browser.close()


def open_map(page, base: str, token: str) -> None:
    """The one-map at ``base`` loaded in ``page`` and logged in with ``token``."""
    page.goto(base + "/")
    page.evaluate("onemap.ready")
    assert page.evaluate(f"onemap.login({token!r}).then(r => r.ok)")


def map_still(page, quiet_ms=400):
    """Wait until the map has stopped moving: no zoom or pan animation and the same view for quiet_ms (a panel's
    animated fit starts a frame after it is asked for, and drawn shapes are not where the map says while it runs)."""
    page.wait_for_function("""(quiet) => {
      const m = onemap.map, c = m.getCenter(), now = performance.now();
      const moving = m._animatingZoom || (m._panAnim && m._panAnim._inProgress);
      const view = [m.getZoom(), c.lat, c.lng, moving].join();
      if (window.__view !== view) { window.__view = view; window.__viewSince = now; return false; }
      return !moving && now - window.__viewSince >= quiet;
    }""", arg=quiet_ms, timeout=15000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_cluster() -> EmbeddedCluster:
    # /tmp, not the repo: the unprivileged postgres user must be able to reach the folder.
    root = Path(tempfile.mkdtemp(prefix="riskmap-test-"))
    os.chmod(root, 0o755)
    cluster = EmbeddedCluster(root / "cluster", free_port())
    cluster.ensure_started()
    return cluster


@pytest.fixture(scope="session")
def cluster():
    c = throwaway_cluster()
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def db_url(cluster) -> str:
    url = cluster.url()
    migrate(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url):
    eng = make_engine(db_url, pool_size=4)
    yield eng
    eng.dispose()


@pytest.fixture
def clean(engine):
    """Empty every layer table (and users, and the alarms: they name their asset without a key) before a test
    that needs a known state."""
    tables = ", ".join([s.table for s in registry.LAYERS] + ["installation_chemicals", "users", "monitoring_alarms"])
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def store_settings() -> StoreSettings:
    return StoreSettings(database_url=None)


@pytest.fixture
def client(db_url, store_settings):
    app = create_app(db_url, ApiSettings(), store_settings)
    with TestClient(app) as c:
        yield c


@pytest.fixture
def token(engine):
    def make(role: str, name: str | None = None) -> str:
        with engine.begin() as conn:
            return add_user(conn, name or f"test-{role}", role)
    return make


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory) -> StoreSettings:
    """Store settings of the demo database: rasters are built into a fresh session folder."""
    return StoreSettings(database_url=None, data_dir=tmp_path_factory.mktemp("demo-data"))


@pytest.fixture(scope="session")
def demo_db_url(cluster, demo_store) -> str:
    """The Kunming demo (scale 1, default seed) loaded once per session into its own database of the
    session cluster (``riskmap_demo``), so that ``clean`` in other tests never empties it."""
    import psycopg

    from layers.demo import load_demo

    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="riskmap", password=cluster.password(),
                         dbname="postgres", autocommit=True) as conn:
        conn.execute('CREATE DATABASE "riskmap_demo"')
    url = cluster.url("riskmap_demo")
    migrate(url)
    eng = make_engine(url, pool_size=2)
    try:
        load_demo(eng, demo_store, replace=True)
    finally:
        eng.dispose()
    return url


@pytest.fixture(scope="session")
def demo_engine(demo_db_url):
    """Engine on the session's demo database (read it; tests that write must clean up after)."""
    eng = make_engine(demo_db_url, pool_size=4)
    yield eng
    eng.dispose()
