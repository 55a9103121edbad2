"""Hazmat routes: check a route against the rules, plan a compliant route, edit the rules.

Check and plan: ``ROUTE_CHECK_ROLES`` (route_controller, planner, emergency; and admin). Rules, cargo table
and network report: read by ``ROUTE_DATA_ROLES`` (those and editors), rules changed by editors.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Annotated, Any

import anyio

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict
from sqlalchemy import text

from api.changes import reads_only
from api.deps import ConnDep, Principal, RouteTemplate, UserDep, has_role, known_role, needs, require_role
from api.errors import NotFound
from api.responses import FastJSONResponse as JSONResponse
from gis import roadgraph, routing
from gis.errors import AnalysisError
from gis.roadnet import components, network_problems
from layers.crs import in_box
from layers.db import LazyConnection, NeedsDatabase
from layers.settings import LOCAL_TZ
from layers.topics.roadnet import ROUTE_CHECK_ROLES, ROUTE_DATA_ROLES

router = APIRouter(prefix="/routes", tags=["routes"])
# callers with the role, checked before the body is validated (api.deps.needs)
RouteChecker = Annotated[Principal, Depends(needs(*sorted(ROUTE_CHECK_ROLES)))]
RuleEditor = Annotated[Principal, Depends(needs("editor"))]
# Check and plan answer with a JSONResponse encoded by pydantic_core: their results are plain JSON
# types already; FastAPI's generic encoding of a plan (two routes' coordinates) cost ~0.7 ms and the
# standard library's json 0.33 ms, more than one search at x10.
MAX_GPX_BYTES = 20 * 1024 * 1024


class CheckIn(BaseModel):
    """One of: ``route`` (GeoJSON LineString/Feature), ``gpx`` (GPX text), or ``origin``+``destination``."""

    model_config = ConfigDict(extra="forbid")
    route: dict[str, Any] | None = None
    gpx: str | None = None
    origin: list[float] | None = None
    destination: list[float] | None = None
    cargo: dict[str, Any]
    departure: str | None = None


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    origin: list[float]
    destination: list[float]
    cargo: dict[str, Any]
    departure: str | None = None


def _check(conn, route: dict, cargo: dict, departure: str | None, versions: dict | None = None) -> dict:
    result = routing.check_route(conn, route, routing.resolve_cargo(cargo), routing.parse_departure(departure),
                                 versions=versions)
    return {**result, "route": route}


def _area(state) -> tuple[float, float, float, float]:
    """The served area (lon/lat box, ``RISKMAP_AREA_BBOX``) of the app whose state this is."""
    return state.store_settings.area_bbox


def _ends_in_area(body, area) -> None:
    for what in ("origin", "destination"):
        point = getattr(body, what)
        if point is not None and len(point) == 2 and not in_box(*point, area):
            raise AnalysisError(f"the {what} {point} is outside the served area {list(area)} (lon/lat)",
                                zh=f"{'起点' if what == 'origin' else '终点'} {point} 位于服务范围 {list(area)}（经纬度）之外")


def _check_body(conn, body: CheckIn, area, versions: dict | None = None) -> dict:
    given = [k for k in ("route", "gpx", "origin") if getattr(body, k) is not None]
    if len(given) != 1 or (body.destination is not None and body.origin is None):
        raise AnalysisError("give exactly one of route (GeoJSON LineString), gpx (GPX text) or origin+destination",
                            zh="路线（GeoJSON LineString）、GPX 文本、起点+终点三者只能给出一个")
    if body.route is not None:
        route = routing.route_geojson(body.route, area=area)
    elif body.gpx is not None:
        route = routing.gpx_to_geojson(body.gpx, area=area)
    else:
        if body.destination is None:
            raise AnalysisError("origin needs a destination", zh="有起点还需给出终点")
        routing.resolve_cargo(body.cargo)  # bad cargo: 400 before any routing
        _ends_in_area(body, area)
        route = routing.fastest_route(conn, body.origin, body.destination, versions=versions)
    return _check(conn, route, body.cargo, body.departure, versions)


def _plan(conn, body: PlanIn, area, versions: dict | None = None) -> dict:
    _ends_in_area(body, area)
    return routing.plan_route(conn, body.origin, body.destination, routing.resolve_cargo(body.cargo),
                              routing.parse_departure(body.departure), versions=versions)


def _answer(conn, result: dict) -> JSONResponse:
    conn.commit()  # the first use loads the default rules
    return JSONResponse(result)


@router.post("/check")
@reads_only
def check(body: CheckIn, request: Request, conn: ConnDep, user: RouteChecker) -> JSONResponse:
    """Conflicts of a route with the hazmat rules for a cargo and departure time.

    Without ``departure`` every time-window ban counts as in force. With ``origin``/``destination``
    the fastest unrestricted route between them is checked.
    """
    return _answer(conn, _check_body(conn, body, _area(request.app.state)))


@router.post("/check/gpx")
@reads_only
def check_gpx(request: Request, conn: ConnDep, user: RouteChecker, file: UploadFile = File(..., description="GPX track or route"),
                    un_number: str | None = Form(None), hazard_class: str | None = Form(None),
                    quantity_t: float | None = Form(None), departure: str | None = Form(None)) -> JSONResponse:
    """Check an uploaded GPX file (multipart form: file, un_number or hazard_class, quantity_t, departure)."""
    data = file.file.read(MAX_GPX_BYTES + 1)
    if len(data) > MAX_GPX_BYTES:
        raise AnalysisError(f"GPX file larger than {MAX_GPX_BYTES // 1024 // 1024} MB",
                            zh=f"GPX 文件大于 {MAX_GPX_BYTES // 1024 // 1024} MB")
    route = routing.gpx_to_geojson(data, area=_area(request.app.state))
    cargo = {"un_number": un_number, "hazard_class": hazard_class, "quantity_t": quantity_t}
    return _answer(conn, _check(conn, route, cargo, departure))


@router.post("/plan")
@reads_only
def plan(body: PlanIn, request: Request, conn: ConnDep, user: RouteChecker) -> JSONResponse:
    """Fastest route obeying the rules for the cargo and departure, against the unrestricted one.

    ``found: false`` with ``reason`` and ``blocked_by`` when no compliant route exists.
    """
    return _answer(conn, _plan(conn, body, _area(request.app.state)))


class RouteFastPath:
    """Pure ASGI middleware: ``POST /routes/plan`` and ``/routes/check`` (JSON) without FastAPI's
    request machinery, for a caller whose token the change feed knows.

    The same computation as the routes (:func:`_plan`, :func:`_check_body`), with the versions of the
    graph, rules, structures and zones taken from the feed, on the event loop for a city-size graph
    and a small body, else in one worker thread: when those are held in memory (:mod:`gis.roadgraph`,
    :mod:`gis.routing`) a plan makes no database round trip at all.
    Anything else (token not known here, feed not settled, invalid body, an error to report, the
    database gone) goes on to the routes with the body replayed; they answer it the usual way.
    """

    PATHS = {"/routes/plan": (PlanIn, _plan), "/routes/check": (CheckIn, _check_body)}
    MAX_BODY = MAX_GPX_BYTES  # a larger body goes to the route as it comes
    # On a graph up to this size (a city: the x10 demo has 9 312 edges) and a body up to this size (a
    # route of ~500 points) a plan or check takes about a millisecond of CPU, most of it holding the
    # GIL: it runs on the event loop, which saves the ~0.09 ms hop to a worker thread and back, and goes
    # to the thread only if it needs the database (NeedsDatabase: e.g. a graph not loaded yet, which a
    # check of a drawn route does not need). Larger work goes to the thread: the search releases the
    # GIL, so other requests are served meanwhile.
    INLINE_EDGES = 20_000
    INLINE_BODY = 16 * 1024

    def __init__(self, app, state):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        found = self.PATHS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if found is not None:
            headers = dict(reversed(scope["headers"]))  # (the first of repeated headers, as Starlette reads them)
            if not (headers.get(b"content-type", b"").startswith(b"application/json")
                    and has_role(known_role(self.state, headers) or "", *ROUTE_CHECK_ROLES)):
                found = None
        if found is None:
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more and size <= self.MAX_BODY:
            message = await receive()
            if message["type"] != "http.request":  # client gone
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
        body = b"".join(chunks)
        result = None
        versions = self.state.changes.rows(routing.VERSIONED)
        if versions is not None and size <= self.MAX_BODY:
            try:
                model_class, compute = found
                model = model_class.model_validate_json(body)
                graph = roadgraph.held(self.state.engine, versions.get("road_graph"))  # (None: not loaded yet)
                if (graph is None or len(graph.edge_ids) <= self.INLINE_EDGES) and size <= self.INLINE_BODY:
                    try:
                        result = self._compute(compute, model, versions, offline=True)
                    except NeedsDatabase:
                        pass
                if result is None:
                    result = await anyio.to_thread.run_sync(self._compute, compute, model, versions)
            except Exception:  # noqa: BLE001  (the route answers it: 4xx, or 503 for a lost database)
                result = None
        if result is None:  # the route reads the body read so far, then the rest
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()
                replayed = True
                return {"type": "http.request", "body": body, "more_body": more}
            return await self.app(scope, replay, send)
        scope["route"] = RouteTemplate(scope["path"])  # for the access log and metrics
        await JSONResponse(result)(scope, receive, send)

    def _compute(self, compute, body, versions: dict, offline: bool = False) -> dict:
        conn = LazyConnection(self.state.engine, offline)  # (no checkout unless something is not in memory)
        try:
            result = compute(conn, body, _area(self.state), versions)
        except BaseException:
            conn.close()  # (rolls back)
            raise
        conn.commit_and_close()
        return result


@router.get("/cargo")
def cargo_table(user: UserDep) -> dict:
    """UN numbers known to the checker (with hazard class and source) and how to name other cargo."""
    require_role(user, *sorted(ROUTE_DATA_ROLES))
    return {"how_to_name_cargo": routing.CARGO_HELP,
            "un_numbers": [{k: (list(v) if k == "subsidiary" else v) for k, v in row.items()}
                           for row in routing.un_table().values()]}


@router.get("/stored/check")
def stored_check(conn: ConnDep, user: RouteChecker,
                 day: date | None = Query(None, description="the day the stored routes run (default today, Beijing "
                                                            "time); each leaves at the first HH:MM of its schedule")):
    """Every stored hazmat route (layer ``hazmat_routes``) checked now against the current rules for a day:
    its verdict and conflicts. The layer ``route_conflicts`` holds the same for the day of the last
    ``riskmap analyze roads``; this answers for any day without writing anything."""
    when = routing.parse_departure(datetime.combine(day, time(0), LOCAL_TZ)) if day else None  # (its years)
    routes, unchecked = [], []
    for rt, cargo, result in routing.stored_route_checks(conn, when):
        if cargo is None:
            unchecked.append({"route_id": rt["id"], "name": rt["name"], "reason": result})
            continue
        conflicts = [{k: v for k, v in c.items() if k != "geometry"} for c in result["conflicts"]]
        routes.append({"route_id": rt["id"], "name": rt["name"], "schedule": rt["schedule"],
                       "departure": result["departure"], "cargo": result["cargo"], "length_m": result["length_m"],
                       "verdict": result["verdict"], "verdict_zh": result["verdict_zh"], "conflicts": conflicts})
    conn.commit()  # (the first use loads the default rules)
    return {"day": (day or datetime.now(LOCAL_TZ).date()).isoformat(), "routes": routes, "unchecked": unchecked}


@router.get("/network")
def network(conn: ConnDep, user: UserDep) -> dict:
    """Connectivity of the routable graph (rebuilt by ``riskmap analyze roads``)."""
    require_role(user, *sorted(ROUTE_DATA_ROLES))
    report = components(conn)
    report["edges"] = conn.execute(text("SELECT count(*) FROM road_edges")).scalar_one()
    return {**report, "problems": network_problems(report)}


@router.get("/rules")
def rules(conn: ConnDep, user: UserDep) -> list[dict]:
    require_role(user, *sorted(ROUTE_DATA_ROLES))
    out = routing.list_rules(conn)
    conn.commit()
    return out


@router.post("/rules", status_code=201)
def create_rule(body: dict[str, Any], conn: ConnDep, user: RuleEditor) -> dict:
    """Add a rule (fields: see GET /routes/rules; e.g. cargo_classes ["2.3"], target structure,
    structure_classes ["tunnel_l"], ban_start "22:00", ban_end "06:00", verdict forbidden, source)."""
    out = routing.create_rule(conn, body)
    conn.commit()
    return out


@router.put("/rules/{rule_id}")
def update_rule(rule_id: int, body: dict[str, Any], conn: ConnDep, user: RuleEditor) -> dict:
    out = routing.update_rule(conn, rule_id, body)
    if out is None:
        raise NotFound(f"no rule {rule_id}", zh=f"没有规则 {rule_id}")
    conn.commit()
    return out


@router.delete("/rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, conn: ConnDep, user: UserDep) -> None:
    require_role(user, "editor")
    if not routing.delete_rule(conn, rule_id):
        raise NotFound(f"no rule {rule_id}", zh=f"没有规则 {rule_id}")
    conn.commit()


@router.post("/rules/reset")
def reset_rules(conn: ConnDep, user: UserDep) -> dict:
    """Replace every rule with the shipped defaults (gis/data/route_rules.csv)."""
    require_role(user, "editor")
    n = routing.reset_rules(conn)
    conn.commit()
    return {"rules": n}
