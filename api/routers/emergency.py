"""Emergency endpoints: incident zones (ERG2024), nearest resources, the incident log and its report.

Roles: running an incident needs ``emergency`` (or admin); ``planner`` may read (nearby, chemicals,
the incident log and reports). Resource contact fields are shown to the roles the registry allows.
"""

from __future__ import annotations

import html
from typing import Literal

import folium
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import Connection, text

from api import reports
from api.deps import ConnDep, Principal, UserDep, require_role
from api.errors import NotFound
from gis import emergency as em
from layers import registry
from layers.errors import DataError
from layers.topics.emergency import SPILLS, TIMES, ZONES

router = APIRouter(prefix="/emergency", tags=["emergency"])
READERS = ("emergency", "planner")
KIND_LABELS = {k: (c.zh, c.en, c.color) for k, c in
               registry.get("emergency_resources").field("kind").codes.items()}
RECEPTOR_LABELS = {k: (c.zh, c.en) for k, c in registry.get("receptors").field("kind").codes.items()}


class IncidentRequest(BaseModel):
    lon: float = Field(..., ge=-180, le=180, description="WGS84 longitude")
    lat: float = Field(..., ge=-90, le=90, description="WGS84 latitude")
    chemical: str = Field(..., min_length=1, max_length=100, description="UN number, CAS, name (中文/English) or guide:NNN")
    spill: Literal["small", "large"] = "large"
    time: Literal["day", "night"] = "day"
    wind_from_deg: float | None = Field(None, ge=0, le=360, description="direction the wind blows FROM (degrees)")
    wind_speed_ms: float | None = Field(None, ge=0, lt=80, description="for ERG Table 3 wind classes")
    container: str | None = Field(None, description=f"ERG Table 3 container: {', '.join(em.CONTAINERS)}")
    resource_limit: int = Field(5, ge=1, le=50, description="resources listed per kind")
    save: bool = Field(True, description="keep the incident in the duty log")


class IncidentUpdate(BaseModel):
    status: Literal["open", "closed"] | None = None
    note: str | None = Field(None, max_length=2000)


def shows_contacts(user: Principal) -> bool:
    return registry.get("emergency_resources").field("contact_name").visible_to(user.role)


def _area(request: Request):
    return request.app.state.store_settings.area_bbox


@router.post("/incident")
def incident(body: IncidentRequest, request: Request, conn: ConnDep, user: UserDep):
    """Zones, counts and ranked resources for a spill; kept in the duty log unless ``save`` is false."""
    require_role(user, "emergency")
    inp = em.IncidentInput(body.lon, body.lat, body.chemical, body.spill, body.time, body.wind_from_deg,
                           body.wind_speed_ms, body.container, body.resource_limit)
    result = em.analyse_incident(conn, inp, show_contacts=shows_contacts(user), area=_area(request))
    if body.save:
        result["incident_id"] = em.save_incident(conn, result, user.name)
        conn.commit()
    return result


@router.get("/nearby")
def nearby(request: Request, conn: ConnDep, user: UserDep,
           lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90),
           kind: list[str] | None = Query(None, description=", ".join(em.RESOURCE_KINDS)),
           min_capacity: int | None = Query(None, ge=0), limit: int = Query(10, ge=1, le=200),
           radius_m: float = Query(em.SEARCH_RADIUS_M, gt=0, le=200000)):
    """Resources ranked by road travel time to a point (straight-line distance beside it)."""
    require_role(user, *READERS)
    kinds = [k for part in (kind or []) for k in part.split(",") if k] or None
    area = _area(request)
    em.IncidentInput(lon, lat, "-").check(area)
    ranked = em.rank_resources(conn, lon, lat, kinds=kinds, min_capacity=min_capacity, radius_m=radius_m,
                               show_contacts=shows_contacts(user))
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


def _incident(conn: Connection, incident_id: int) -> dict:
    row = conn.execute(text("SELECT id, created_at, created_by, status, notes, result FROM incidents WHERE id = :i"),
                       {"i": incident_id}).mappings().first()
    if row is None:
        raise NotFound(f"no incident {incident_id}")
    return dict(row)


@router.get("/incidents/{incident_id}")
def get_incident(incident_id: int, conn: ConnDep, user: UserDep):
    require_role(user, *READERS)
    row = _incident(conn, incident_id)
    result = row.pop("result")
    if not shows_contacts(user):
        for items in result["resources"].values():
            for i in items:
                i.pop("contact_name", None), i.pop("contact_phone", None)
    return dict(row, created_at=row["created_at"].isoformat(), **result, incident_id=incident_id)


@router.patch("/incidents/{incident_id}")
def update_incident(incident_id: int, body: IncidentUpdate, conn: ConnDep, user: UserDep):
    """Close an incident or add a hand-over note (who and when are recorded)."""
    require_role(user, "emergency")
    if body.status is None and not (body.note or "").strip():
        raise DataError("give a status ('open'/'closed') or a note")
    _incident(conn, incident_id)
    conn.execute(text("""
        UPDATE incidents SET status = coalesce(CAST(:s AS text), status), updated_at = now(),
               notes = CASE WHEN CAST(:note AS text) IS NULL THEN notes
                            ELSE notes || jsonb_build_array(jsonb_build_object('at', now(), 'by', CAST(:by AS text),
                                                                               'text', CAST(:note AS text))) END
        WHERE id = :i"""), {"s": body.status, "note": (body.note or "").strip() or None, "by": user.name,
                            "i": incident_id})
    conn.commit()
    row = _incident(conn, incident_id)
    return {"id": incident_id, "status": row["status"], "notes": row["notes"]}


@router.get("/incidents/{incident_id}/report", response_class=HTMLResponse)
def incident_report_html(incident_id: int, conn: ConnDep, user: UserDep):
    """Offline HTML report (folium, Leaflet inlined): map, zones, tables, time and inputs."""
    require_role(user, *READERS)
    page = incident_report(conn, incident_id, contacts=shows_contacts(user))
    return HTMLResponse(page, headers={"Content-Disposition": f'attachment; filename="incident-{incident_id}.html"'})


# --------------------------------------------------------------------------- report

def incident_report(conn: Connection, incident_id: int, contacts: bool = False) -> str:
    """Render a stored incident as an offline folium page (used by the API and ``riskmap report incident``)."""
    row = _incident(conn, incident_id)
    r = row["result"]
    inp, chem, erg = r["inputs"], r["chemical"], r["erg"]
    zones = r["zones"]
    xs, ys = [inp["lon"]], [inp["lat"]]
    for z in zones.values():
        for ring in _rings(z["geometry"]):
            xs += [p[0] for p in ring]
            ys += [p[1] for p in ring]
    title = f"危化品事故辅助决策报告 Hazmat incident report #{incident_id}: {chem['name_zh']} {chem['name_en']}"
    m = reports.new_map([min(xs), min(ys), max(xs), max(ys)], title)
    for name in ("protective", "isolation"):
        if name in zones:
            reports.add_geojson(m, zones[name]["geometry"], f"{ZONES[name][0]} {ZONES[name][1]}", ZONES[name][2])
    folium.CircleMarker([inp["lat"], inp["lon"]], radius=7, color="#000", fill=True, fill_color="#e60012",
                        tooltip="泄漏点 Spill").add_to(m)
    res_rows = []
    for kind, items in r["resources"].items():
        for rank, i in enumerate(items, 1):
            color = KIND_LABELS.get(kind, ("", "", "#555"))[2]
            folium.CircleMarker([i["lat"], i["lon"]], radius=5, color=color, fill=True, fill_opacity=0.8,
                                tooltip=f"{KIND_LABELS.get(kind, (kind, kind))[0]} {i['name']}").add_to(m)
            res_rows.append({
                "kind": " ".join(KIND_LABELS.get(kind, (kind, kind))[:2]), "rank": rank, "name": i["name"],
                "travel": "" if i["travel_s"] is None else f"{i['travel_s'] / 60:.1f}",
                "straight": f"{i['straight_m'] / 1000:.2f}", "capacity": i.get("capacity"),
                "contact": (f"{i.get('contact_name') or ''} {i.get('contact_phone') or ''}".strip() if contacts else ""),
                "note": i.get("reason") or ""})
    verified = "已核实 verified" if erg["verified"] else "未核实 UNVERIFIED — 以 ERG 原书为准 check the printed ERG"
    inputs = [
        {"k": "化学品 Chemical", "v": f"{chem['name_zh']} {chem['name_en']} UN{chem['un_number'] or '—'} "
                                    f"(ERG guide {chem['guide']}; 输入 entered: {inp['chemical']})"},
        {"k": "位置 Location (WGS84)", "v": f"{inp['lon']:.6f}, {inp['lat']:.6f}"},
        {"k": "泄漏 Spill", "v": " ".join(SPILLS[inp["spill"]])}, {"k": "昼夜 Time", "v": " ".join(TIMES[inp["time"]])},
        {"k": "风向 Wind from (°)", "v": inp["wind_from_deg"] if inp["wind_from_deg"] is not None else "未给出 not given"},
        {"k": "风速 Wind speed (m/s)", "v": inp["wind_speed_ms"]}, {"k": "容器 Container", "v": inp["container"]},
        {"k": "记录 Recorded", "v": f"{row['created_at']:%Y-%m-%d %H:%M %Z} · {row['created_by']} · {row['status']}"},
        {"k": f"{erg['edition']} 依据 Basis", "v": f"{erg['basis']} · {verified}"},
    ]
    zone_rows = []
    for name, z in zones.items():
        rec = "; ".join(f"{RECEPTOR_LABELS.get(k, (k, k))[0]} {len(v)}: " + ", ".join(i["name"] or "?" for i in v)
                        for k, v in z["receptors"].items())
        zone_rows.append({
            "zone": " ".join(ZONES[name][:2]), "dist": f"{z['distance_m']:.0f}", "shape": z["shape"],
            "people": "无人口栅格 no grid" if z["population"] is None else f"{z['population']:.0f}",
            "receptors": rec or "—",
            "domino": ", ".join([f"{h['name']} (L{h['level'] or '-'})" for h in z["hazard_installations"]]
                                + [f"尾矿库 {t['name']}" for t in z["tailings_ponds"]]) or "—"})
    notes = "".join(f"<li>{html.escape(n['at'][:16])} {html.escape(n['by'])}: {html.escape(n['text'])}</li>"
                    for n in row["notes"])
    panel = (f"<p class='banner'>{html.escape(r['decision_support'])}</p>"
             + "".join(f"<p class='banner'>{html.escape(w)}</p>" for w in r["warnings"])
             + reports.table(inputs, [("k", "输入 Input"), ("v", "值 Value")])
             + "<h4>区域 Zones</h4>"
             + reports.table(zone_rows, [("zone", "区域 Zone"), ("dist", "距离 Distance (m)"), ("shape", "形状 Shape"),
                                         ("people", "人口 People"), ("receptors", "防护目标 Receptors"),
                                         ("domino", "多米诺 Domino (installations, ponds)")])
             + "<h4>应急资源（按道路行程时间） Resources by road travel time</h4>"
             + reports.table(res_rows, [("kind", "类型 Kind"), ("rank", "#"), ("name", "名称 Name"),
                                        ("travel", "行程 Travel (min)"), ("straight", "直线 Straight (km)"),
                                        ("capacity", "能力 Capacity"), ("contact", "联系 Contact"),
                                        ("note", "说明 Note")])
             + (f"<h4>交接记录 Hand-over notes</h4><ul>{notes}</ul>" if notes else ""))
    return reports.render(m, title, panel, r["synthetic_data"])


def _rings(geometry: dict):
    coords = geometry["coordinates"]
    polys = coords if geometry["type"] == "MultiPolygon" else [coords]
    for poly in polys:
        yield from poly
