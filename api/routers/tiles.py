"""Vector tiles: XYZ, OGC API Tiles (z/row/col), TileJSON 3.0 per layer and for the composite one-map.

Empty tiles are answered ``204 No Content``. Tiles are gzip-encoded, carry an ETag built from the
layer versions and answer ``304 Not Modified`` to a matching ``If-None-Match``. A tile whose feature
cap was hit holds a ``_truncated`` layer and the ``X-Tile-Truncated`` header names the layers.
"""

from __future__ import annotations

import gzip
import logging
import re

from fastapi import APIRouter, Request, Response
from isal import igzip
from sqlalchemy import text

from api.asyncpool import ERRORS as POOL_ERRORS
from api.deps import ConnDep, LayerDep, RouteTemplate, UserDep, known_role
from api.errors import NotFound
from layers import registry
from layers.features import layer_extent
from layers.registry import LayerSpec
from layers.tiles import Tile, render, render_async

router = APIRouter(tags=["tiles"])
log = logging.getLogger("riskmap.tiles")
MVT = "application/vnd.mapbox-vector-tile"
FEATURE_CAP = 20000
# gzip by ISA-L (isal): its level 1 gives z14 demo tiles within 3% of zlib level 1 in size at half its
# time (12 against 26 µs for a 1.4 kB tile, a tenth of a cold tile's server time); zlib level 1 was
# within 12% of level 6 in size at a third of its time on the big z10 tiles
GZIP_LEVEL = 1
JSON_TYPES = {"str": "String", "int": "Number", "float": "Number", "bool": "Boolean", "datetime": "String"}


def _tile(z: int, x: int, y: int, ogc: bool = False) -> Tile:
    tile = Tile(z, x, y)
    if not tile.valid():  # (named in the order of the URL it came in)
        raise NotFound(f"no tile {z}/{y}/{x} (tileMatrix 0-22, tileRow and tileCol in 0..2^z-1)" if ogc else
                       f"no tile {z}/{x}/{y} (zoom 0-22, x and y in 0..2^z-1)")
    return tile


def versions_of(request: Request, conn, specs: list[LayerSpec]) -> tuple:
    """The layers' versions (bumped by every write), from the change feed's memory when it can be trusted."""
    ids = [s.id for s in specs]
    known = request.app.state.changes.versions(ids)
    if known is not None:
        return known
    found = dict(conn.execute(text("SELECT layer, version FROM layer_versions WHERE layer = ANY(:l)"),
                              {"l": ids}).all())
    return tuple(found.get(i, 0) for i in ids)


def tile_key(what: str, role: str, tile: Tile, versions: tuple) -> tuple:
    """Cache key (and ETag source): a write to any of the layers changes ``versions``."""
    return what, role, tile.z, tile.x, tile.y, versions


def cache_lookup(state, key: tuple):
    entry = state.tile_cache.get(key)
    state.metrics.tile_cache.labels("hit" if entry else "miss").inc()
    return entry


def store(state, key: tuple, body: bytes, truncated: list[str]):
    """Cache a rendered tile gzipped; (gzipped body, ETag, truncated layers)."""
    for layer in truncated:
        state.metrics.tile_truncated.labels(layer).inc()
    return state.tile_cache.put(key, igzip.compress(body, GZIP_LEVEL, mtime=0) if body else b"", tuple(truncated))


def _matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 13.1.2: ``*``, or any entity tag of the list equal to ``etag`` by weak comparison (``W/``
    ignored; proxies that recompress weaken tags)."""
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def tile_answer(entry, if_none_match: str | None, accepts_gzip: bool) -> tuple[int, dict, bytes]:
    """Status, headers and body for a cached tile: 304 on a matching ETag, 204 when empty."""
    body, etag, truncated = entry
    if body and not accepts_gzip:  # (each coding of a tile has its own strong ETag)
        etag = etag[:-1] + '-identity"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Authorization, Accept-Encoding"}
    if truncated:
        headers["X-Tile-Truncated"] = ",".join(truncated)
    if if_none_match and _matches(if_none_match, etag):
        return 304, headers, b""
    if not body:
        return 204, headers, b""
    if accepts_gzip:
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    headers["Content-Type"] = MVT
    return 200, headers, body


def serve_tile(request: Request, conn, specs: list[LayerSpec], role: str, tile: Tile, what: str) -> Response:
    state = request.app.state
    key = tile_key(what, role, tile, versions_of(request, conn, specs))
    entry = cache_lookup(state, key) or store(state, key, *render(conn, specs, role, tile, FEATURE_CAP))
    status, headers, body = tile_answer(entry, request.headers.get("if-none-match"),
                                        "gzip" in request.headers.get("accept-encoding", ""))
    return Response(body, status_code=status, headers=headers)


@router.get("/tiles/onemap/{z}/{x}/{y}.pbf")
def onemap_tile(request: Request, conn: ConnDep, user: UserDep, z: int, x: int, y: int):
    """One tile with every layer the caller may see, each as its own MVT layer."""
    return serve_tile(request, conn, registry.visible_layers(user.role), user.role, _tile(z, x, y), "onemap")


@router.get("/tiles/{layer_id}/{z}/{x}/{y}.pbf")
def layer_tile(request: Request, spec: LayerDep, conn: ConnDep, user: UserDep, z: int, x: int, y: int):
    return serve_tile(request, conn, [spec], user.role, _tile(z, x, y), spec.id)


@router.get("/collections/{layer_id}/tiles/WebMercatorQuad/{z}/{row}/{col}")
def ogc_tile(request: Request, spec: LayerDep, conn: ConnDep, user: UserDep, z: int, row: int, col: int):
    """OGC API Tiles order: tileMatrix/tileRow/tileCol (= z/y/x)."""
    return serve_tile(request, conn, [spec], user.role, _tile(z, col, row, ogc=True), spec.id)


def _vector_layer(spec: LayerSpec, role: str) -> dict:
    fields = {f.name: JSON_TYPES[f.type] for f in spec.fields_for(role)}
    if spec.cluster_below_zoom is not None:
        fields["cluster_count"] = "Number"
    return {"id": spec.id, "description": f"{spec.title_zh} {spec.title_en}", "fields": fields,
            "minzoom": spec.minzoom, "maxzoom": spec.maxzoom}


def tilejson(request: Request, conn, specs: list[LayerSpec], role: str, path: str, name: str) -> dict:
    base = str(request.base_url).rstrip("/")
    extents = [e for e in (layer_extent(conn, s) for s in specs) if e]
    bounds = ([min(e[0] for e in extents), min(e[1] for e in extents), max(e[2] for e in extents),
               max(e[3] for e in extents)] if extents else list(request.app.state.store_settings.area_bbox))
    settings = request.app.state.api_settings
    return {
        "tilejson": "3.0.0", "name": name, "scheme": "xyz", "format": "pbf",
        "tiles": [f"{base}/tiles/{path}/{{z}}/{{x}}/{{y}}.pbf"],
        "minzoom": min(s.minzoom for s in specs), "maxzoom": max(min(s.maxzoom, 22) for s in specs),
        "bounds": bounds, "center": [*settings.center, settings.zoom],
        "vector_layers": [_vector_layer(s, role) for s in specs],
    }


@router.get("/tiles/onemap.json")
def onemap_tilejson(request: Request, conn: ConnDep, user: UserDep):
    specs = registry.visible_layers(user.role)
    return tilejson(request, conn, specs, user.role, "onemap", "危险化学品安全风险一张图 / risk one-map")


@router.get("/tiles/{layer_id}.json")
def layer_tilejson(request: Request, spec: LayerDep, conn: ConnDep, user: UserDep):
    return tilejson(request, conn, [spec], user.role, spec.id, f"{spec.title_zh} / {spec.title_en}")


@router.get("/collections/{layer_id}/tiles")
def ogc_tilesets(request: Request, spec: LayerDep):
    base = str(request.base_url).rstrip("/")
    return {"tilesets": [{
        "title": f"{spec.title_zh} {spec.title_en}", "dataType": "vector", "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "links": [
            {"rel": "item", "type": MVT, "templated": True,
             "href": f"{base}/collections/{spec.id}/tiles/WebMercatorQuad/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"},
            {"rel": "describedby", "type": "application/json", "href": f"{base}/tiles/{spec.id}.json"},
        ],
    }]}


# ---------------------------------------------------------------- fast path (no FastAPI on the way)

# Tile numbers as the routes take them, in ASCII digits and no longer than a valid one can be (zoom 0-22, x and y
# below 2^22): anything else (a number of thousands of digits, which int() refuses, or other scripts' digits) is
# left to the routes, which answer it 400/404.
_Z, _XY = "[0-9]{1,2}", "[0-9]{1,7}"
_FAST_PATHS = (
    (re.compile(rf"/tiles/onemap/(?P<z>{_Z})/(?P<x>{_XY})/(?P<y>{_XY})\.pbf"), "/tiles/onemap/{z}/{x}/{y}.pbf"),
    (re.compile(rf"/tiles/(?P<layer>\w+)/(?P<z>{_Z})/(?P<x>{_XY})/(?P<y>{_XY})\.pbf"), "/tiles/{layer_id}/{z}/{x}/{y}.pbf"),
    (re.compile(rf"/collections/(?P<layer>\w+)/tiles/WebMercatorQuad/(?P<z>{_Z})/(?P<y>{_XY})/(?P<x>{_XY})"),
     "/collections/{layer_id}/tiles/WebMercatorQuad/{z}/{row}/{col}"),
)


class TileFastPath:
    """ASGI middleware answering the common tile request before FastAPI routing and dependencies:
    anonymous or a token seen before, a layer the role may see, versions known from the change
    feed. A cache hit then costs no database round trip; a miss renders on a pooled async
    connection (psycopg, autocommit: no thread hop, no BEGIN/ROLLBACK, no SQLAlchemy on the way).
    Anything else (unknown token, restricted layer, bad tile, feed not live, a database error) goes
    on to the routes above, which answer it with the usual checks and messages."""

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET":
            try:
                answer = await self._try(scope)
            except Exception:  # noqa: BLE001  (outside Starlette's error handling: never fail here)
                log.exception("tile fast path failed on %s; the route answers", scope["path"])
                answer = None
            if answer is not None:
                status, headers, body = answer
                raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
                if body:
                    raw.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": raw})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    async def _try(self, scope):
        path = scope["path"]
        if not (path.startswith("/tiles/") or path.startswith("/collections/")):
            return None
        for pattern, template in _FAST_PATHS:
            m = pattern.fullmatch(path)
            if m:
                break
        else:
            return None
        headers = dict(reversed(scope["headers"]))  # (the first of repeated headers, as Starlette reads them)
        role = known_role(self.state, headers)
        tile = Tile(int(m["z"]), int(m["x"]), int(m["y"]))
        if role is None or not tile.valid():
            return None
        layer = m.groupdict().get("layer")
        if layer is None:
            specs, what = registry.visible_layers(role), "onemap"
        else:
            try:
                spec = registry.get(layer)
            except KeyError:
                return None
            if not spec.visible_to(role):
                return None
            specs, what = [spec], spec.id
        versions = self.state.changes.versions([s.id for s in specs])
        if versions is None:
            return None
        key = tile_key(what, role, tile, versions)
        entry = cache_lookup(self.state, key)
        if entry is None:
            try:
                async with self.state.tile_pool.connection() as aconn:
                    rendered = await render_async(aconn, specs, role, tile, FEATURE_CAP)
            except POOL_ERRORS:
                return None  # the route answers it (503 when the database is down)
            entry = store(self.state, key, *rendered)
        scope["route"] = RouteTemplate(template)  # for the access log and metrics
        inm = headers.get(b"if-none-match")
        return tile_answer(entry, inm.decode("latin-1") if inm else None,
                           b"gzip" in headers.get(b"accept-encoding", b""))
