"""OGC API Features: /collections, /collections/{id}, /items, /items/{fid}, /queryables; editors create, replace
and delete single features (Part 4: POST /items, PUT and DELETE /items/{fid}), validated as an import is."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from api.deps import ConnDep, LayerDep, Principal, UserDep, needs
from api.errors import NotFound
from gis.errors import ConflictError
from layers import registry
from layers.errors import DataError, ImportRejected
from layers.features import (delete_feature, get_item, layer_extent, lock_feature, query_items, replace_feature,
                             taken_ids, validated)
from layers.io import WRITTEN_BY_THE_SERVER, dependents, insert_records
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


def _fid(spec: LayerSpec, fid: str) -> int:
    # (ids are PostgreSQL integers: at most 10 digits, and int() refuses a string of thousands)
    if not (fid.isascii() and fid.isdigit()) or len(fid) > 10 or int(fid) >= 2**31:
        raise NotFound(f"no feature {fid!r} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid!r}")
    return int(fid)


def _linked(request: Request, spec: LayerSpec, feat: dict) -> dict:
    base = str(request.base_url).rstrip("/")
    feat["links"] = [
        {"rel": "self", "type": GEOJSON, "href": f"{base}/collections/{spec.id}/items/{feat['id']}"},
        {"rel": "collection", "type": "application/json", "href": f"{base}/collections/{spec.id}"},
    ]
    return feat


@router.get("/collections/{layer_id}/items/{fid}")
def item(request: Request, spec: LayerDep, conn: ConnDep, user: UserDep, fid: str):
    feat = get_item(conn, spec, user.role, _fid(spec, fid))
    if feat is None:
        raise NotFound(f"no feature {fid} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid}")
    return JSONResponse(_linked(request, spec, feat), media_type=GEOJSON)


# ---- editing (OGC API Features Part 4: Create, Replace, Delete): editors and admins, on the base layers
Writer = Annotated[Principal, Depends(needs("editor"))]  # (checked before the body is read: api.deps.needs)
NOT_EDITED = {**WRITTEN_BY_THE_SERVER,
              "monitored_assets": "monitored assets are kept from the sensors by the monitoring"}
FEATURE = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
    "type": {"type": "string", "enum": ["Feature"]},
    "id": {"type": "integer", "description": "optional: kept by POST (409 if taken); PUT: the path's"},
    "geometry": {"type": "object", "description": "GeoJSON geometry, lon/lat (CRS84)"},
    "properties": {"type": "object", "description": "the layer's fields (GET /collections/{layer}/queryables); "
                                                    "hazard_installations also take chemicals: [{name, cas, "
                                                    "un_number, hazard_class, quantity_t}]"}}}
COLLECTION = {"type": "object", "required": ["type", "features"], "properties": {
    "type": {"type": "string", "enum": ["FeatureCollection"]}, "features": {"type": "array", "items": FEATURE}}}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {
        t: {"schema": schema} for t in (GEOJSON, "application/json")}}}


def editable(spec: LayerSpec) -> bool:
    """Whether the layer is edited feature by feature (not derived, not written by the server)."""
    return not spec.derived and spec.id not in NOT_EDITED


def _not_edited(spec: LayerSpec) -> JSONResponse | None:
    """The 405 for a layer no one edits feature by feature (derived: computed by ``riskmap analyze``), else None."""
    if editable(spec):
        return None
    why = NOT_EDITED.get(spec.id, f"{spec.id} is derived: it is computed by `riskmap analyze`")
    zh = (f"{spec.title_zh}（{spec.id}）由服务器生成，不能逐个编辑" if spec.id in NOT_EDITED
          else f"{spec.title_zh}（{spec.id}）是分析结果，由 `riskmap analyze` 计算，不能逐个编辑")
    return JSONResponse({"code": "MethodNotAllowed", "description": f"{spec.id} is not edited feature by feature: {why}",
                         "description_zh": zh}, status_code=405, headers={"Allow": "GET"})


def _lonlat(request: Request) -> None:
    """400 for a body in another CRS than lon/lat (Part 4's ``Content-Crs`` header)."""
    crs = request.headers.get("content-crs")
    if crs is not None and crs.strip().strip("<>") not in CRS84:
        raise DataError(f"Content-Crs {crs!r} is not taken: send lon/lat ({CRS84[0]})",
                        zh=f"不接受 Content-Crs {crs!r}：请用经纬度（{CRS84[0]}）")


def _validated(request: Request, conn, spec: LayerSpec, features: list) -> tuple[list[dict], list[str]] | JSONResponse:
    """The features validated as an import's rows (:func:`layers.features.validated`), or the 400 listing each
    rejected one (row N: the N-th feature) and why."""
    try:
        return validated(conn, spec, features, request.app.state.store_settings.area_bbox)
    except ImportRejected as exc:
        return JSONResponse({
            "code": "FeatureRejected",
            "description": f"{len(exc.rejections)} of {exc.total} features rejected for {spec.id}; nothing written",
            "description_zh": f"{exc.total} 个要素中 {len(exc.rejections)} 个未通过校验（{spec.title_zh}）；未写入任何数据",
            "rejections": [{"row": r.row, "reason": r.reason} for r in exc.rejections[:500]],
        }, status_code=400)


def _refused(exc: IntegrityError) -> Exception:
    """A write the database refused (an id taken or a row referred to meanwhile: 409; else 400), rolled back."""
    detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None)
    reason = str(exc.orig).splitlines()[0] + (f" ({detail})" if detail else "")
    if getattr(exc.orig, "sqlstate", None) in ("23505", "23503"):
        return ConflictError(f"the database refused the feature, nothing written: {reason}",
                             zh=f"数据库拒绝写入该要素（与现有数据冲突），未写入任何数据：{reason}")
    return DataError(f"the database refused the feature, nothing written: {reason}",
                     zh=f"数据库拒绝写入该要素，未写入任何数据：{reason}")


def _ignored(body: dict, ignored: list[str]) -> dict:
    return body | {"ignored_properties": ignored} if ignored else body


@router.post("/collections/{layer_id}/items", status_code=201,
             openapi_extra=_body({"oneOf": [FEATURE, COLLECTION]}))
def create_items(request: Request, user: Writer, spec: LayerDep, conn: ConnDep, body: dict[str, Any] = Body(...)):
    """Add a feature (a GeoJSON Feature), or several (a FeatureCollection: all or nothing), validated as `riskmap
    import` validates a file's rows: 400 lists each rejected feature and why. An `id` is kept (409 if taken);
    without one the database numbers it. 201 with the feature(s) as stored and `Location` (of the first)."""
    if (refused := _not_edited(spec)) is not None:
        return refused
    _lonlat(request)
    single = body.get("type") == "Feature"
    features = [body] if single else body.get("features") if body.get("type") == "FeatureCollection" else None
    if not isinstance(features, list) or not features:
        raise DataError("the body must be a GeoJSON Feature or a FeatureCollection with features",
                        zh="请求体应为 GeoJSON Feature，或含要素的 FeatureCollection")
    if len(features) > request.app.state.api_settings.max_limit:
        raise DataError(f"at most {request.app.state.api_settings.max_limit} features a request: import a file "
                        "with `riskmap import` for more", zh="每次请求的要素数超过上限：更多要素请用 riskmap import 导入")
    checked = _validated(request, conn, spec, features)
    if isinstance(checked, JSONResponse):
        return checked
    records, ignored = checked
    if taken := taken_ids(conn, spec, [r["id"] for r in records if "id" in r]):
        ids = ", ".join(map(str, taken[:20]))
        raise ConflictError(f"{spec.id} already has feature(s) {ids}: PUT to replace them; nothing written",
                            zh=f"{spec.title_zh} 中已有要素 {ids}：替换请用 PUT；未写入任何数据")
    try:
        ids = insert_records(conn, spec, records)
    except IntegrityError as exc:
        raise _refused(exc) from None
    conn.commit()
    feats = [_linked(request, spec, get_item(conn, spec, user.role, i)) for i in ids]
    out = feats[0] if single else {"type": "FeatureCollection", "features": feats, "numberReturned": len(feats)}
    return JSONResponse(_ignored(out, ignored), status_code=201, media_type=GEOJSON,
                        headers={"Location": feats[0]["links"][0]["href"]})


@router.put("/collections/{layer_id}/items/{fid}", openapi_extra=_body(FEATURE))
def replace_item(request: Request, user: Writer, spec: LayerDep, conn: ConnDep, fid: str,
                 body: dict[str, Any] = Body(...)):
    """Replace a feature's geometry and properties (a GeoJSON Feature, validated as an import's row): properties
    not given become null or their default, as an import stores them; for a hazard installation a given `chemicals`
    list replaces its inventory (without it the inventory stays). The row is updated, not deleted and inserted:
    what refers to it stays linked. 200 with the feature as stored."""
    if (refused := _not_edited(spec)) is not None:
        return refused
    ident = _fid(spec, fid)
    if not lock_feature(conn, spec, ident):
        raise NotFound(f"no feature {fid} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid}")
    _lonlat(request)
    if body.get("type") != "Feature":
        raise DataError("the body must be a GeoJSON Feature", zh="请求体应为一个 GeoJSON Feature")
    checked = _validated(request, conn, spec, [body])
    if isinstance(checked, JSONResponse):
        return checked
    (record,), ignored = checked
    if record.get("id", ident) != ident:
        raise DataError(f"the body's id {record['id']} is not the path's {ident}",
                        zh=f"请求体中的 id {record['id']} 与路径中的 {ident} 不一致")
    try:
        replace_feature(conn, spec, ident, record)
    except IntegrityError as exc:
        raise _refused(exc) from None
    conn.commit()
    feat = _linked(request, spec, get_item(conn, spec, user.role, ident))
    return JSONResponse(_ignored(feat, ignored), media_type=GEOJSON)


@router.delete("/collections/{layer_id}/items/{fid}", status_code=204)
def delete_item(user: Writer, spec: LayerDep, conn: ConnDep, fid: str):
    """Delete a feature: 409 naming what refers to it while rows of another base layer (an enterprise's park, a
    sensor's pond) or monitoring history (a sensor's readings) do; derived layers' rows referring to it are
    deleted with it (analyses redo them). 204."""
    if (refused := _not_edited(spec)) is not None:
        return refused
    ident = _fid(spec, fid)
    if not lock_feature(conn, spec, ident):
        raise NotFound(f"no feature {fid} in {spec.id}", zh=f"图层 {spec.id} 中没有要素 {fid}")
    base, history = dependents(conn, spec, ids=[ident])
    if base or history:
        said = [f"rows of other layers refer to it: {', '.join(base)}"] * bool(base) + [
            f"the history kept of it would be lost: {', '.join(history)}"] * bool(history)
        said_zh = [f"其他图层的数据引用它：{'，'.join(base)}"] * bool(base) + [
            f"会丢失它的历史记录：{'，'.join(history)}"] * bool(history)
        raise ConflictError(f"{spec.id} {ident} is not deleted: {'; '.join(said)}. Change or delete those first",
                            zh=f"未删除{spec.title_zh} {ident}：{'；'.join(said_zh)}。请先修改或删除这些数据")
    delete_feature(conn, spec, ident)
    conn.commit()
    return Response(status_code=204)
