"""Landing page (HTML map or OGC JSON), conformance, health, and the web map's config and layer list."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi import Response
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import text

from api.deps import ConnDep, UserDep
from layers import registry
from layers.errors import DataError
from layers.features import synthetic_layers
from layers.registry import THEMES, LayerSpec

router = APIRouter()
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]


def wants_html(request: Request) -> bool:
    f = request.query_params.get("f")
    if f:
        return f == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept


@router.get("/", include_in_schema=False)
def landing(request: Request):
    if wants_html(request):
        return FileResponse(request.app.state.web_dir / "templates" / "index.html", media_type="text/html")
    base = str(request.base_url).rstrip("/")
    settings = request.app.state.api_settings
    return JSONResponse({
        "title": f"{settings.title_zh} {settings.title_en}",
        "description": "OGC API Features and vector tiles for the hazardous-chemicals risk one-map",
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/?f=json"},
            {"rel": "alternate", "type": "text/html", "href": f"{base}/?f=html"},
            {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
             "href": f"{base}/openapi.json"},
            {"rel": "service-doc", "type": "text/html", "href": f"{base}/docs"},
            {"rel": "conformance", "type": "application/json", "href": f"{base}/conformance"},
            {"rel": "data", "type": "application/json", "href": f"{base}/collections"},
        ],
    })


@router.get("/conformance")
def conformance():
    return {"conformsTo": CONFORMANCE}


@router.get("/healthz")
def healthz():
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request):
    with request.app.state.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ready", "database": "ok"}


@router.get("/api/config")
def config(request: Request, conn: ConnDep):
    s = request.app.state.api_settings
    synthetic = bool(synthetic_layers(conn))
    return {
        "title_zh": s.title_zh, "title_en": s.title_en, "center": list(s.center), "zoom": s.zoom,
        "bounds": list(request.app.state.store_settings.area_bbox),
        "basemap": {"url": s.basemap_url or None, "attribution": s.basemap_attribution},
        "synthetic_notice_zh": "演示数据为合成数据，不代表真实设施" if synthetic else None,
        "synthetic_notice_en": "Demo data is synthetic and does not show real facilities" if synthetic else None,
    }


def layer_info(spec: LayerSpec, role: str, synthetic: bool) -> dict:
    style = spec.style
    by = None
    if style.by_field:
        table = spec.field(style.by_field).codes or {}
        by = {"field": style.by_field, "values": {str(k): c.color for k, c in table.items() if c.color}}
    return {
        "id": spec.id, "title_zh": spec.title_zh, "title_en": spec.title_en,
        "theme": spec.theme, "theme_zh": THEMES[spec.theme][0], "theme_en": THEMES[spec.theme][1],
        "geometry_type": spec.geometry_type, "minzoom": spec.minzoom, "maxzoom": spec.maxzoom,
        "tiles": f"/tiles/{spec.id}/{{z}}/{{x}}/{{y}}.pbf", "public": spec.public, "synthetic": synthetic,
        "default_visible": spec.default_visible, "derived": spec.derived,
        "style": {"color": style.color, "fill": style.fill, "weight": style.weight, "radius": style.radius, "by": by},
        "legend": spec.legend(),
        "popup_fields": [
            {"name": f.name, "title_zh": f.title_zh, "title_en": f.title_en}
            for f in spec.fields_for(role) if f.name in spec.popup
        ],
        "fields": [
            {"name": f.name, "type": f.type, "title_zh": f.title_zh, "title_en": f.title_en,
             "codes": {str(k): {"zh": c.zh, "en": c.en} for k, c in f.codes.items()} if f.codes else None}
            for f in spec.fields_for(role)
        ],
    }


@router.get("/api/layers")
def layers(user: UserDep, conn: ConnDep):
    synthetic = synthetic_layers(conn)
    return {
        "role": user.role,
        "layers": [layer_info(s, user.role, s.id in synthetic) for s in registry.visible_layers(user.role)],
    }


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    m = request.app.state.metrics
    pool = request.app.state.engine.pool
    m.pool.labels("checked_out").set(pool.checkedout())
    m.pool.labels("idle").set(pool.checkedin())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/search")
def search_features(user: UserDep, conn: ConnDep, q: str = Query(..., min_length=1, max_length=100),
                    limit: int = Query(20, ge=1, le=100)):
    """Search the layers the caller may see by name or code (统一社会信用代码, adcode, road ref)."""
    from layers.features import search

    if not q.strip():
        raise DataError("q must hold a name or code, not only spaces")
    results = search(conn, registry.visible_layers(user.role), q.strip(), limit)
    titles = {s.id: (s.title_zh, s.title_en) for s in registry.LAYERS}
    return {"results": [r | {"title_zh": titles[r["layer"]][0], "title_en": titles[r["layer"]][1]} for r in results]}


@router.get("/api/districts")
def districts(user: UserDep, conn: ConnDep):
    """Per-district counts for the overview table and choropleth (None where the role may not see a layer)."""
    from gis.overview import district_overview

    return {"districts": district_overview(conn, user.role)}
