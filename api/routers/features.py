"""OGC API Features: /collections, /collections/{id}, /items, /items/{fid}, /queryables."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep, LayerDep, UserDep
from api.errors import NotFound
from layers import registry
from layers.errors import DataError
from layers.features import get_item, layer_extent, query_items
from layers.registry import LayerSpec

router = APIRouter(tags=["features"])
GEOJSON = "application/geo+json"
RESERVED = {"bbox", "limit", "offset", "f", "datetime", "properties", "crs", "bbox-crs"}
# What the items answer in (lon/lat WGS84, GeoJSON): a request for another CRS or format is refused (400), not
# silently answered in these. (``datetime`` and ``properties`` are accepted and not applied: no layer has a
# temporal extent, and every visible property is returned.)
# (EPSG:4326 is refused too: its axis order is lat/lon, and answering lon/lat to it would swap the coordinates)
CRS84 = ("http://www.opengis.net/def/crs/OGC/1.3/CRS84",)
FORMATS = ("json", "geojson")


def _served_as_is(params) -> None:
    for name in ("crs", "bbox-crs"):
        if params.get(name) not in (None, *CRS84):
            raise DataError(f"{name} {params[name]!r} is not served: coordinates are lon/lat ({CRS84[0]})")
    if params.get("f") not in (None, *FORMATS):
        raise DataError(f"f={params['f']!r} is not served: items are GeoJSON (f=json)")
JSON_TYPES = {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "datetime": "string"}


def parse_bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise DataError(f"bbox must be four numbers minx,miny,maxx,maxy; got {text!r}") from None
    if len(values) != 4:
        raise DataError(f"bbox must have 4 numbers (minx,miny,maxx,maxy); got {len(values)}")
    minx, miny, maxx, maxy = values
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise DataError("bbox must be lon/lat (EPSG:4326) with minx<=maxx and miny<=maxy")
    return minx, miny, maxx, maxy


def collection(request: Request, spec: LayerSpec, conn) -> dict:
    base = str(request.base_url).rstrip("/")
    extent = layer_extent(conn, spec) if conn is not None else None
    out = {
        "id": spec.id,
        "title": f"{spec.title_zh} {spec.title_en}",
        "title_zh": spec.title_zh,
        "title_en": spec.title_en,
        "description": f"{spec.title_en} ({spec.geometry_type}); {'public' if spec.public else 'restricted'}",
        "itemType": "feature",
        "crs": ["http://www.opengis.net/def/crs/OGC/1.3/CRS84"],
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/collections/{spec.id}"},
            {"rel": "items", "type": GEOJSON, "href": f"{base}/collections/{spec.id}/items"},
            {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
             "href": f"{base}/collections/{spec.id}/queryables"},
        ],
    }
    if extent:
        out["extent"] = {"spatial": {"bbox": [extent], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}}
    return out


@router.get("/collections")
def collections(request: Request, conn: ConnDep, user: UserDep):
    base = str(request.base_url).rstrip("/")
    return {
        "collections": [collection(request, s, conn) for s in registry.visible_layers(user.role)],
        "links": [{"rel": "self", "type": "application/json", "href": f"{base}/collections"}],
    }


@router.get("/collections/{layer_id}")
def one_collection(request: Request, spec: LayerDep, conn: ConnDep):
    return collection(request, spec, conn)


@router.get("/collections/{layer_id}/queryables")
def queryables(request: Request, spec: LayerDep, user: UserDep):
    props = {}
    for f in spec.fields_for(user.role):
        prop = {"title": f"{f.title_zh} {f.title_en}", "type": JSON_TYPES[f.type]}
        if f.codes:
            prop["enum"] = list(f.codes)
        props[f.name] = prop
    return JSONResponse({
        "$schema": "https://json-schema.org/draft/2019-09/schema",
        "$id": f"{str(request.base_url).rstrip('/')}/collections/{spec.id}/queryables",
        "type": "object", "title": spec.title_en, "properties": props,
    }, media_type="application/schema+json")


@router.get("/collections/{layer_id}/items", response_class=JSONResponse)
def items(
    request: Request, spec: LayerDep, conn: ConnDep, user: UserDep,
    bbox: str | None = Query(None, description="minx,miny,maxx,maxy in lon/lat"),
    limit: int = Query(None, ge=1, description="page size (default 100, at most 10000)"),
    offset: int = Query(0, ge=0, le=10_000_000),
):
    settings = request.app.state.api_settings
    limit = limit or settings.default_limit
    if limit > settings.max_limit:
        raise DataError(f"limit must be at most {settings.max_limit}")
    _served_as_is(request.query_params)
    filters = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    feats, matched = query_items(conn, spec, user.role, bbox=parse_bbox(bbox), limit=limit, offset=offset,
                                 filters=filters)
    base = f"{str(request.base_url).rstrip('/')}/collections/{spec.id}/items"
    params = {k: v for k, v in request.query_params.items() if k not in ("offset", "limit")}

    def page(off: int) -> str:
        return f"{base}?{urlencode({**params, 'limit': limit, 'offset': off})}"

    links = [{"rel": "self", "type": GEOJSON, "href": page(offset)}]
    if offset + limit < matched:
        links.append({"rel": "next", "type": GEOJSON, "href": page(offset + limit)})
    if offset > 0:
        links.append({"rel": "prev", "type": GEOJSON, "href": page(max(0, offset - limit))})
    body = {
        "type": "FeatureCollection",
        "features": feats,
        "numberMatched": matched,
        "numberReturned": len(feats),
        "timeStamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "links": links,
    }
    return JSONResponse(body, media_type=GEOJSON)


@router.get("/collections/{layer_id}/items/{fid}")
def item(request: Request, spec: LayerDep, conn: ConnDep, user: UserDep, fid: str):
    # (ids are PostgreSQL integers: at most 10 digits, and int() refuses a string of thousands)
    if not (fid.isascii() and fid.isdigit()) or len(fid) > 10 or int(fid) >= 2**31:
        raise NotFound(f"no feature {fid!r} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid!r}")
    feat = get_item(conn, spec, user.role, int(fid))
    if feat is None:
        raise NotFound(f"no feature {fid} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid}")
    base = str(request.base_url).rstrip("/")
    feat["links"] = [
        {"rel": "self", "type": GEOJSON, "href": f"{base}/collections/{spec.id}/items/{fid}"},
        {"rel": "collection", "type": "application/json", "href": f"{base}/collections/{spec.id}"},
    ]
    return JSONResponse(feat, media_type=GEOJSON)
