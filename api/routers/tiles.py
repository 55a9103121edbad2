"""Vector tiles: XYZ, OGC API Tiles (z/row/col), TileJSON 3.0 per layer and for the composite one-map.

Empty tiles are answered ``204 No Content``. Tiles are gzip-encoded, carry an ETag built from the
layer versions and answer ``304 Not Modified`` to a matching ``If-None-Match``. A tile whose feature
cap was hit holds a ``_truncated`` layer and the ``X-Tile-Truncated`` header names the layers.
"""

from __future__ import annotations

import gzip

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from api.deps import ConnDep, LayerDep, UserDep
from api.errors import NotFound
from layers import registry
from layers.features import layer_extent
from layers.registry import LayerSpec
from layers.tiles import Tile, render

router = APIRouter(tags=["tiles"])
MVT = "application/vnd.mapbox-vector-tile"
FEATURE_CAP = 20000
JSON_TYPES = {"str": "String", "int": "Number", "float": "Number", "bool": "Boolean", "datetime": "String"}


def _tile(z: int, x: int, y: int) -> Tile:
    tile = Tile(z, x, y)
    if not tile.valid():
        raise NotFound(f"no tile {z}/{x}/{y} (zoom 0-22, x and y in 0..2^z-1)")
    return tile


def _versions(conn, specs: list[LayerSpec]) -> tuple:
    rows = conn.execute(text("SELECT layer, version FROM layer_versions WHERE layer = ANY(:l)"),
                        {"l": [s.id for s in specs]}).all()
    found = dict(rows)
    return tuple(found.get(s.id, 0) for s in specs)


def serve_tile(request: Request, conn, specs: list[LayerSpec], role: str, tile: Tile, what: str) -> Response:
    cache, metrics = request.app.state.tile_cache, request.app.state.metrics
    key = (what, role, tile.z, tile.x, tile.y, _versions(conn, specs))
    entry = cache.get(key)
    metrics.tile_cache.labels("hit" if entry else "miss").inc()
    if entry is None:
        body, truncated = render(conn, specs, role, tile, FEATURE_CAP)
        for layer in truncated:
            metrics.tile_truncated.labels(layer).inc()
        entry = cache.put(key, gzip.compress(body, 6) if body else b"", tuple(truncated))
    body, etag, truncated = entry
    headers = {"ETag": etag, "Cache-Control": "no-cache", "Vary": "Authorization, Accept-Encoding"}
    if truncated:
        headers["X-Tile-Truncated"] = ",".join(truncated)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if not body:
        return Response(status_code=204, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
    else:
        body = gzip.decompress(body)
    return Response(body, media_type=MVT, headers=headers)


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
    return serve_tile(request, conn, [spec], user.role, _tile(z, col, row), spec.id)


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
