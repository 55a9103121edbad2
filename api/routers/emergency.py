"""Emergency endpoints: incident zones (ERG2024), nearest resources, the incident log and its report.

Roles: running an incident needs ``emergency`` (or admin); ``planner`` may read (nearby, chemicals,
the incident log and reports). Resource contact fields are shown to the roles the registry allows.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from api import reports
from api.deps import ConnDep, Principal, UserDep, needs, require_role
from gis import emergency as em
from layers import registry
from layers.errors import DataError

router = APIRouter(prefix="/emergency", tags=["emergency"])
READERS = ("emergency", "planner")
# callers with the role, checked before the body is validated (api.deps.needs)
Responder = Annotated[Principal, Depends(needs("emergency"))]


class IncidentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # (a misspelt wind_from_deg must not silently give a circle)
    lon: float = Field(..., ge=-180, le=180, allow_inf_nan=False, description="WGS84 longitude")
    lat: float = Field(..., ge=-90, le=90, allow_inf_nan=False, description="WGS84 latitude")
    chemical: str = Field(..., min_length=1, max_length=100, description="UN number, CAS, name (中文/English) or guide:NNN")
    spill: Literal["small", "large"] = "large"
    time: Literal["day", "night"] = "day"
    wind_from_deg: float | None = Field(None, ge=0, le=360, allow_inf_nan=False,
                                        description="direction the wind blows FROM (degrees)")
    wind_speed_ms: float | None = Field(None, ge=0, lt=80, allow_inf_nan=False,
                                        description="for ERG Table 3 wind classes")
    container: str | None = Field(None, description=f"ERG Table 3 container: {', '.join(em.CONTAINERS)}")
    resource_limit: int = Field(5, ge=1, le=50, description="resources listed per kind")
    save: bool = Field(True, description="keep the incident in the duty log")


class IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["open", "closed"] | None = None
    note: str | None = Field(None, max_length=2000)


def shows_contacts(user: Principal) -> bool:
    return registry.get("emergency_resources").field("contact_name").visible_to(user.role)


def _area(request: Request):
    return request.app.state.store_settings.area_bbox


@router.post("/incident")
def incident(body: IncidentRequest, request: Request, conn: ConnDep, user: Responder):
    """Zones, counts and ranked resources for a spill; kept in the duty log unless ``save`` is false."""
    inp = em.IncidentInput(body.lon, body.lat, body.chemical, body.spill, body.time, body.wind_from_deg,
                           body.wind_speed_ms, body.container, body.resource_limit)
    result = em.analyse_incident(conn, inp, show_contacts=shows_contacts(user), area=_area(request))
    if body.save:
        result["incident_id"] = em.save_incident(conn, result, user.name)
        conn.commit()
    return result


@router.get("/nearby")
def nearby(request: Request, conn: ConnDep, user: UserDep,
           lon: float = Query(..., ge=-180, le=180, allow_inf_nan=False),
           lat: float = Query(..., ge=-90, le=90, allow_inf_nan=False),
           kind: list[str] | None = Query(None, description=", ".join(em.RESOURCE_KINDS)),
           min_capacity: int | None = Query(None, ge=0, le=2**31 - 1), limit: int = Query(10, ge=1, le=200),
           radius_m: float = Query(em.SEARCH_RADIUS_M, gt=0, le=200000, allow_inf_nan=False),
           per_kind: int | None = Query(None, ge=1, le=200, description="at most this many of each kind "
                                        "(the first in the ranking), so one kind cannot crowd out the others")):
    """Resources ranked by road travel time to a point (straight-line distance beside it)."""
    require_role(user, *READERS)
    kinds = [k for part in (kind or []) for k in part.split(",") if k] or None
    area = _area(request)
    em.IncidentInput(lon, lat, "-").check(area)
    ranked = em.rank_resources(conn, lon, lat, kinds=kinds, min_capacity=min_capacity, radius_m=radius_m,
                               show_contacts=shows_contacts(user))
    if per_kind is not None:
        kept = {id(r) for rows in em.top_per_kind(ranked, per_kind).values() for r in rows}
        ranked = [r for r in ranked if id(r) in kept]
    return {"lon": lon, "lat": lat, "kinds": kinds, "min_capacity": min_capacity, "count": len(ranked),
            "resources": ranked[:limit], "access_speed_kmh": em.ACCESS_SPEED_KMH}


@router.get("/chemicals")
def chemicals(user: UserDep, q: str = Query("", max_length=100), limit: int = Query(30, ge=1, le=200)):
    """Materials with shipped ERG distances (search box), the guides, containers and wind classes."""
    require_role(user, *READERS)
    return {"edition": em.EDITION, "materials": em.search_materials(q, limit),
            "guides": [{"guide": g.guide, "title_zh": g.title_zh, "title_en": g.title_en, "verified": g.verified}
                       for g in em.guides().values()],
            "containers": [{"code": k, "zh": v[0], "en": v[1]} for k, v in em.CONTAINERS.items()],
            "winds": [{"code": k, "zh": v[0], "en": v[1]} for k, v in em.WINDS.items()]}


@router.get("/incidents")
def incidents(conn: ConnDep, user: UserDep, status: Literal["open", "closed"] | None = None,
              limit: int = Query(50, ge=1, le=500)):
    """The duty log, newest first (for shift hand-over)."""
    require_role(user, *READERS)
    rows = conn.execute(text("""
        SELECT id, name, created_at, created_by, un_number, chemical, spill, time_of_day, wind_from_deg,
               isolation_m, protective_m, verified, status, notes, synthetic, ST_X(geom) AS lon, ST_Y(geom) AS lat
        FROM incidents WHERE CAST(:s AS text) IS NULL OR status = :s ORDER BY created_at DESC, id DESC LIMIT :n"""),
        {"s": status, "n": limit}).mappings().all()
    return {"incidents": [dict(r, created_at=r["created_at"].isoformat()) for r in rows]}


@router.get("/incidents/{incident_id}")
def get_incident(incident_id: int, conn: ConnDep, user: UserDep):
    require_role(user, *READERS)
    row = reports.stored_incident(conn, incident_id)
    result = row.pop("result")
    if not shows_contacts(user):
        for items in result["resources"].values():
            for i in items:
                i.pop("contact_name", None), i.pop("contact_phone", None)
    return dict(row, created_at=row["created_at"].isoformat(), **result, incident_id=incident_id)


@router.patch("/incidents/{incident_id}")
def update_incident(incident_id: int, body: IncidentUpdate, conn: ConnDep, user: Responder):
    """Close an incident or add a hand-over note (who and when are recorded)."""
    if body.status is None and not (body.note or "").strip():
        raise DataError("give a status ('open'/'closed') or a note", zh="请给出状态（open 进行中 / closed 已结束）或备注")
    reports.stored_incident(conn, incident_id)
    conn.execute(text("""
        UPDATE incidents SET status = coalesce(CAST(:s AS text), status), updated_at = now(),
               notes = CASE WHEN CAST(:note AS text) IS NULL THEN notes
                            ELSE notes || jsonb_build_array(jsonb_build_object('at', now(), 'by', CAST(:by AS text),
                                                                               'text', CAST(:note AS text))) END
        WHERE id = :i"""), {"s": body.status, "note": (body.note or "").strip() or None, "by": user.name,
                            "i": incident_id})
    if body.status is not None:  # the one-map shows the zones of open incidents only
        conn.execute(text("UPDATE incident_zones SET open = :o WHERE incident_id = :i AND open <> :o"),
                     {"o": body.status == "open", "i": incident_id})
    conn.commit()
    row = reports.stored_incident(conn, incident_id)
    return {"id": incident_id, "status": row["status"], "notes": row["notes"]}


@router.get("/incidents/{incident_id}/report", response_class=HTMLResponse)
def incident_report_html(incident_id: int, conn: ConnDep, user: UserDep):
    """Offline HTML report (folium, Leaflet inlined): map, zones, tables, time and inputs."""
    require_role(user, *READERS)
    page = reports.incident_report(conn, incident_id, contacts=shows_contacts(user))
    return HTMLResponse(page, headers={"Content-Disposition": f'attachment; filename="incident-{incident_id}.html"'})
