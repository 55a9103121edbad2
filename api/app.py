"""FastAPI application factory: settings, engine lifespan, middleware, error handlers, routers."""

from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from api import deps, errors
from api.asyncpool import AsyncPool
from api.metrics import Metrics
from api.changes import ChangeFeed, RefreshAfterWrites
from api.routers import features, meta, tiles
from api.routers.tiles import TileFastPath
from api.routers import emergency
from api.routers import analysis
from api.routers import routes
from api.routers.routes import RouteFastPath
from api.routers import monitoring
from api.tilecache import TileCache
from api.settings import ApiSettings
from layers.db import libpq_url, make_engine
from layers.settings import REPO_ROOT, StoreSettings

log = logging.getLogger("riskmap.access")


MAX_REQUEST_BYTES = 25 * 1024 * 1024  # the largest body taken (GPX files and batches of readings: 20 MB)


class BodyLimit:
    """Pure ASGI middleware: a request body over :data:`MAX_REQUEST_BYTES` is answered 413 by its
    Content-Length before anything reads it; one sent in chunks with no length ends, for the app, as a
    client gone once it passes the limit."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if length.isdigit() and int(length) <= MAX_REQUEST_BYTES:
                return await self.app(scope, receive, send)
            return await JSONResponse({"code": "PayloadTooLarge", "description": (
                f"the request body may be at most {MAX_REQUEST_BYTES // 1024 // 1024} MB"), "description_zh": (
                f"请求体最大 {MAX_REQUEST_BYTES // 1024 // 1024} MB")}, 413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            return {"type": "http.disconnect"} if seen > MAX_REQUEST_BYTES else message
        return await self.app(scope, counted, send)


class AccessLog:
    """Pure ASGI middleware: one JSON log line and metrics per request, ``Vary: Authorization``.

    Not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware cancels the endpoint when the
    client disconnects (the map aborts tiles on every zoom), which leaked pooled connections held
    by dependencies until the pool ran dry.
    """

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]
        scope.setdefault("state", {})  # (shared with the request: current_user puts the user's name in it)

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = message.get("headers", [])
                if not any(k.lower() == b"vary" for k, _ in headers):  # answers differ by token: never
                    message["headers"] = [*headers, (b"vary", b"Authorization")]  # share them between users
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - start
            route = scope.get("route")
            template = route.path if route is not None else "unmatched"
            self.metrics.requests.labels(template, scope["method"], str(status[0])).inc()
            self.metrics.latency.labels(template).observe(seconds)
            if log.isEnabledFor(logging.INFO):
                log.info(json.dumps({
                    "method": scope["method"], "path": scope["path"],
                    "query": scope.get("query_string", b"").decode("latin-1") or None,
                    "status": status[0], "ms": round(seconds * 1000, 1),
                    # who: the token's user (requests that looked it up; null: anonymous or a fast path), from where
                    "user": (scope.get("state") or {}).get("user"), "client": (scope.get("client") or (None,))[0],
                }, ensure_ascii=False))


class RiskmapApp(FastAPI):
    """FastAPI with the access log, the body limit and the fast paths outside Starlette's own middleware
    (all pure ASGI): they answer most tile requests and route plans/checks without the rest of the stack."""

    def build_middleware_stack(self):
        inner = super().build_middleware_stack()
        fast = RouteFastPath(TileFastPath(inner, state=self.state), state=self.state)
        return AccessLog(BodyLimit(fast), metrics=self.state.metrics)


def create_app(database_url: str, api_settings: ApiSettings | None = None,
               store_settings: StoreSettings | None = None) -> FastAPI:
    """Build the app for a database URL (the caller resolves the embedded cluster or DATABASE_URL)."""
    api_settings = api_settings or ApiSettings()
    store_settings = store_settings or StoreSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = make_engine(database_url, store_settings.pool_size, pre_ping=False)
        app.state.changes = ChangeFeed(app.state.engine)
        app.state.changes.start()
        # async connections for the tile fast path (autocommit: one round trip per statement)
        app.state.tile_pool = AsyncPool(libpq_url(database_url), store_settings.pool_size)
        await app.state.tile_pool.warm(4)
        try:
            yield
        finally:
            await app.state.tile_pool.close()
            app.state.changes.stop()
            app.state.engine.dispose()

    app = RiskmapApp(
        title="riskmap: 危险化学品安全风险一张图 / hazardous-chemicals risk one-map",
        version="0.1.0", lifespan=lifespan,
        description="OGC API Features and vector tiles, analyses and emergency tools.",
        docs_url=None, redoc_url=None,  # (FastAPI's pages load from a CDN: /docs is served below from our copy)
    )
    app.state.api_settings = api_settings
    app.state.store_settings = store_settings
    app.state.web_dir = REPO_ROOT / "web"
    app.state.tile_cache = TileCache()
    app.state.metrics = Metrics()
    errors.install(app, deps.refused_before_body)

    # access log -> tile fast path -> (Starlette's error handling) -> refresh after writes -> routes
    app.add_middleware(RefreshAfterWrites, state=app.state)

    app.include_router(meta.router)
    app.include_router(tiles.router)
    app.include_router(features.router)
    app.include_router(emergency.router)
    app.include_router(analysis.router)
    app.include_router(routes.router)
    app.include_router(monitoring.router)
    static = Path(app.state.web_dir / "static")
    static.mkdir(parents=True, exist_ok=True)
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """The API's interactive docs: Swagger UI from web/static/vendor (offline: no CDN, no validator)."""
        ui = "/static/vendor/swagger-ui/"
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=app.title,
                                   swagger_js_url=ui + "swagger-ui-bundle.js", swagger_css_url=ui + "swagger-ui.css",
                                   swagger_favicon_url=ui + "favicon-32x32.png", swagger_ui_parameters={"validatorUrl": None})
    return app
