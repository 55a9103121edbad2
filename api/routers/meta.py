"""Landing page (HTML map or OGC JSON), conformance, health, the web map's config and layer list, and the
caller's role and what it may do (``GET /auth/me``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi import Response
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import text

from api.deps import ConnDep, UserDep, has_role, roles_of
from api.routers import analysis, emergency, features, monitoring, routes
from api.routers.tiles import versions_of
from layers import registry
from layers.derived import stale_layers
from layers.errors import DataError
from layers.features import synthetic_layers
from layers.registry import THEMES, LayerSpec
from layers.topics.roadnet import ROUTE_DATA_ROLES

router = APIRouter()
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    # Part 4 (draft): POST /items, PUT and DELETE /items/{fid} (editors); no PATCH (update), no optimistic locking
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/create-replace-delete",
    "http://www.opengis.net/spec/ogcapi-features-4/1.0/conf/features",
]

# The roles by name, for people (GET /auth/me); the roles themselves are layers.spec.ROLES (a test checks
# that each has its title).
ROLE_TITLES = {
    "anonymous": ("访客（未登录）", "Guest (not logged in)"),
    "planner": ("规划人员", "Planner"),
    "route_controller": ("路线管控人员", "Route controller"),
    "emergency": ("应急值守人员", "Emergency responder"),
    "editor": ("数据编辑人员", "Editor"),
    "gateway": ("监测数据接入网关", "Monitoring data gateway"),
    "admin": ("管理员", "Administrator"),
}

# GET /auth/me's ``can``: each capability with the role set of the endpoints it stands for, taken from those
# endpoints themselves (their needs(...) aliases or the constants they pass to require_role: no copy of a role
# list here; admin may do everything, as api.deps.has_role says), what it is, and the endpoints.
CAPABILITIES: dict[str, tuple[frozenset, str, str, str]] = {
    "emergency_incident": (
        roles_of(emergency.Responder), "分析危化品泄漏事故并记入值班日志", "Analyse a hazmat incident (duty log)",
        "POST /emergency/incident, PATCH /emergency/incidents/{id}"),
    "emergency_read": (
        frozenset(emergency.READERS), "查询应急资源、化学品与事故记录", "Look up resources, chemicals, incidents",
        "GET /emergency/nearby, /emergency/chemicals, /emergency/incidents…"),
    "route_check": (
        roles_of(routes.RouteChecker), "危化品路线检查与规划", "Check and plan hazmat routes",
        "POST /routes/check, /routes/check/gpx, /routes/plan"),
    "route_data": (
        ROUTE_DATA_ROLES, "查看路线规则、货物表与路网", "Read route rules, cargo table, network",
        "GET /routes/rules, /routes/cargo, /routes/network"),
    "route_rules_edit": (
        roles_of(routes.RuleEditor), "编辑路线规则", "Edit route rules",
        "POST/PUT/DELETE /routes/rules, POST /routes/rules/reset"),
    "monitoring_read": (
        frozenset(monitoring.READ), "查看在线监测与预警", "See monitoring readings and alarms",
        "GET /monitoring/alarms, /monitoring/assets/…, /monitoring/daily…"),
    "monitoring_ack": (
        roles_of(monitoring.Acknowledger), "确认预警", "Acknowledge alarms",
        "POST /monitoring/alarms/{id}/ack"),
    "monitoring_ingest": (
        roles_of(monitoring.Ingester), "上传监测读数", "Ingest readings", "POST /monitoring/readings"),
    "monitoring_thresholds": (
        roles_of(monitoring.Editor), "设置预警阈值", "Set alarm thresholds", "PUT/DELETE /monitoring/thresholds"),
    "analysis_read": (
        roles_of(analysis.Reader), "重大危险源辨识、选址检查、查看安全距离规则", "Grading, siting check, safety rules",
        "GET /analysis/grading/{id}, POST /analysis/siting-check…"),
    "analysis_edit": (
        roles_of(analysis.Editor), "编辑安全距离规则", "Edit safety-distance rules",
        "POST/PUT/DELETE /analysis/safety-rules"),
    "features_edit": (
        roles_of(features.Writer), "逐个新增、修改、删除要素", "Create, replace and delete features one by one",
        "POST /collections/{layer}/items, PUT/DELETE /collections/{layer}/items/{id}"),
}


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


def _me_description() -> str:
    rows = "\n".join(f"| `{k}` | {zh} / {en} | {ep} |" for k, (_, zh, en, ep) in CAPABILITIES.items())
    return ("The caller's name and role and, in `can`, whether that role may use each tool (the same role sets "
            "the endpoints enforce; they still check every request). Anonymous callers (no `Authorization`) get "
            "role `anonymous` and 200; an invalid or revoked token is a 401 `{code, description}`.\n\n"
            "| `can` key | 能力 / capability | endpoints |\n|---|---|---|\n" + rows)


@router.get("/auth/me", tags=["auth"], description=_me_description())
def me(user: UserDep, response: Response):
    """Who the caller is and what the role may do (the web map shows only the tools in ``can``)."""
    response.headers["Cache-Control"] = "private, no-store"
    zh, en = ROLE_TITLES.get(user.role, (user.role, user.role))
    return {
        "name": user.name, "role": user.role, "role_zh": zh, "role_en": en,
        "can": {key: has_role(user.role, *roles) for key, (roles, *_) in CAPABILITIES.items()},
    }


@router.get("/api/config")
def config(request: Request, conn: ConnDep):
    s = request.app.state.api_settings
    synthetic = bool(synthetic_layers(conn))
    return {
        "title_zh": s.title_zh, "title_en": s.title_en, "center": list(s.center), "zoom": s.zoom,
        "bounds": list(request.app.state.store_settings.area_bbox),
        "basemap": {"url": s.basemap_url or None, "attribution": s.basemap_attribution},
        # (which layers: those the page marks 合成 Synthetic; a layer computed from a synthetic raster is one)
        "synthetic_notice_zh": "标“合成”的图层含生成的演示数据或由其算出的结果，不代表真实情况" if synthetic else None,
        "synthetic_notice_en": "Layers marked Synthetic hold generated demo data or results computed from it, not real facts"
        if synthetic else None,
    }


def _code_key(value) -> str:
    """A code as the page reads a feature's value (``String(v)``): true/false for a flag, else its text."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def layer_info(spec: LayerSpec, role: str, synthetic: bool, stale: dict | None) -> dict:
    style = spec.style
    by = None
    if style.by_field:
        table = spec.field(style.by_field).codes or {}
        by = {"field": style.by_field, "values": {_code_key(k): c.color for k, c in table.items() if c.color}}
    return {
        "id": spec.id, "title_zh": spec.title_zh, "title_en": spec.title_en,
        "theme": spec.theme, "theme_zh": THEMES[spec.theme][0], "theme_en": THEMES[spec.theme][1],
        "geometry_type": spec.geometry_type, "minzoom": spec.minzoom, "maxzoom": spec.maxzoom,
        "tiles": f"/tiles/{spec.id}/{{z}}/{{x}}/{{y}}.pbf", "public": spec.public, "synthetic": synthetic,
        "default_visible": spec.default_visible, "derived": spec.derived,
        "stale": stale,
        "editable": features.editable(spec),  # feature by feature (POST/PUT/DELETE /collections/{layer}/items)  # a derived layer whose inputs changed since its analysis ran: analysis, computed_at, changed_inputs
        "style": {"color": style.color, "fill": style.fill, "weight": style.weight, "radius": style.radius, "by": by},
        "legend": spec.legend(),
        "popup_fields": [
            {"name": f.name, "title_zh": f.title_zh, "title_en": f.title_en}
            for f in spec.fields_for(role) if f.name in spec.popup
        ],
        "fields": [
            {"name": f.name, "type": f.type, "title_zh": f.title_zh, "title_en": f.title_en,
             "codes": {_code_key(k): {"zh": c.zh, "en": c.en} for k, c in f.codes.items()} if f.codes else None}
            for f in spec.fields_for(role)
        ],
    }


@router.get("/api/layers")
def layers(user: UserDep, conn: ConnDep):
    synthetic, specs = synthetic_layers(conn), registry.visible_layers(user.role)
    stale = stale_layers(conn, specs)
    return {"role": user.role, "layers": [layer_info(s, user.role, s.id in synthetic, stale.get(s.id)) for s in specs]}


@router.get("/api/versions")
def versions(request: Request, user: UserDep, conn: ConnDep):
    """Each layer the caller may see with its version, bumped by every write to it (an import, an edit, an
    analysis run): the web map asks every 30 s and redraws the layers that changed."""
    specs = registry.visible_layers(user.role)
    return {"versions": dict(zip([s.id for s in specs], versions_of(request, conn, specs)))}


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request):
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    m = request.app.state.metrics
    pool = request.app.state.engine.pool
    m.pool.labels("checked_out").set(pool.checkedout())
    m.pool.labels("idle").set(pool.checkedin())
    m.database_up.set(1 if request.app.state.changes.live else 0)
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
    """Per-district counts for the overview table and choropleth (None where the role may not see a layer),
    and ``outside``: the same counts of features in no district."""
    from gis.overview import district_overview

    return district_overview(conn, user.role)
