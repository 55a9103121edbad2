"""FastAPI application factory: settings, engine lifespan, middleware, error handlers, routers."""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from api import errors
from api.metrics import Metrics
from api.routers import features, meta, tiles
from api.tilecache import TileCache
from api.settings import ApiSettings
from layers.db import make_engine
from layers.settings import REPO_ROOT, StoreSettings

log = logging.getLogger("riskmap.access")


def create_app(database_url: str, api_settings: ApiSettings | None = None,
               store_settings: StoreSettings | None = None) -> FastAPI:
    """Build the app for a database URL (the caller resolves the embedded cluster or DATABASE_URL)."""
    api_settings = api_settings or ApiSettings()
    store_settings = store_settings or StoreSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = make_engine(database_url, store_settings.pool_size)
        try:
            yield
        finally:
            app.state.engine.dispose()

    app = FastAPI(
        title="riskmap: 危险化学品安全风险一张图 / hazardous-chemicals risk one-map",
        version="0.1.0", lifespan=lifespan,
        description="OGC API Features and vector tiles, analyses and emergency tools.",
    )
    app.state.api_settings = api_settings
    app.state.store_settings = store_settings
    app.state.web_dir = REPO_ROOT / "web"
    app.state.tile_cache = TileCache()
    app.state.metrics = metrics = Metrics()
    errors.install(app)

    @app.middleware("http")
    async def access_log(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        seconds = time.perf_counter() - start
        if "vary" not in response.headers:  # answers differ by token: never share them between users
            response.headers["Vary"] = "Authorization"
        route = request.scope.get("route")
        template = route.path if route is not None else "unmatched"
        metrics.requests.labels(template, request.method, str(response.status_code)).inc()
        metrics.latency.labels(template).observe(seconds)
        log.info(json.dumps({
            "method": request.method, "path": request.url.path, "query": request.url.query or None,
            "status": response.status_code, "ms": round(seconds * 1000, 1),
        }, ensure_ascii=False))
        return response

    app.include_router(meta.router)
    app.include_router(tiles.router)
    app.include_router(features.router)
    static = Path(app.state.web_dir / "static")
    static.mkdir(parents=True, exist_ok=True)
    app.mount("/static", StaticFiles(directory=static), name="static")
    return app
