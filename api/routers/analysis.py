"""Hazchem analysis endpoints: GB 18218 grading, siting check, safety-rule editing, run status, reports.

Grading, siting check, reports and rule reading: planner, emergency, editor (admin may do everything);
rule editing: editor. Anonymous callers get 401.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import shapely
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from shapely.validation import explain_validity
from sqlalchemy import delete, insert, select, text, update

from api import reports
from api.changes import reads_only
from api.deps import ConnDep, Principal, UserDep, needs, require_role
from api.errors import NotFound
from gis import hazchem
from gis.analyses import ANALYSES
from layers.derived import latest_run
from layers.errors import DataError
from layers.topics.hazchem import INSTALLATION_KINDS, PROTECTION_CLASSES, SafetyRule


router = APIRouter(prefix="/analysis", tags=["analysis"])
READERS = ("planner", "emergency", "editor")
EDITORS = ("editor",)
# callers with the role, checked before the body is validated (api.deps.needs)
Reader = Annotated[Principal, Depends(needs(*READERS))]
Editor = Annotated[Principal, Depends(needs(*EDITORS))]
RULES = SafetyRule.__table__

Use = Literal[hazchem.USES]  # type: ignore[valid-type]
Kind = Literal[tuple(INSTALLATION_KINDS)]  # type: ignore[valid-type]
ReceptorClass = Literal[tuple(PROTECTION_CLASSES)]  # type: ignore[valid-type]


SITE_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon")
MAX_SITE_POSITIONS = 10_000  # a site outline has a few hundred; 20 000 (5 000 squares) took 2.4 s to check here


class SitingRequest(BaseModel):
    """A proposed site: its GeoJSON geometry (lon/lat) and use."""

    model_config = ConfigDict(extra="forbid")
    geometry: dict = Field(description="GeoJSON geometry in lon/lat (EPSG:4326)")
    use: Use = Field(description="school, kindergarten, hospital, care_home, residential, market, office, prison "
                                 "(checked against installations) or chemical_plant, hazchem_storage (checked "
                                 "against receptors)")
    level: int | None = Field(None, ge=1, le=4, description="GB 18218 level of a proposed installation (default 1)")
    kinds: list[Literal["toxic", "flammable", "explosive"]] | None = Field(
        None, description="hazard kinds of a proposed installation (default: all)")
    people: int | None = Field(None, ge=0, le=10_000_000, description="people at a proposed receptor")


class RuleIn(BaseModel):
    """A safety-distance rule: required distance from an installation to a receptor class."""

    model_config = ConfigDict(extra="forbid")
    installation_kind: Kind
    level: int | None = Field(None, ge=1, le=4, description="GB 18218 level; null: any level")
    receptor_class: ReceptorClass
    distance_m: float = Field(gt=0, le=20000, allow_inf_nan=False)
    basis: str = Field(min_length=1, max_length=2000, description="standard and clause, or the assumption made")
    assumption: bool = True
    note: str | None = Field(None, max_length=2000)


def _config(request: Request) -> hazchem.Config:
    return hazchem.load_config(request.app.state.store_settings.data_dir)


def _run_info(conn) -> dict | None:
    run = latest_run(conn, hazchem.ANALYSIS)
    return run and {k: run[k] for k in ("run_id", "computed_at", "stale", "changed_inputs")}


@router.get("/status")
def status(conn: ConnDep, user: UserDep):
    """The last run of every analysis: id, time, statistics and whether edits made it stale."""
    require_role(user, "planner", "route_controller", "emergency", "editor")
    return {"analyses": {name: latest_run(conn, name) for name in ANALYSES}}


@router.get("/grading/{installation_id}")
def grading(installation_id: int, conn: ConnDep, user: UserDep):
    """GB 18218-2018 grading of one installation as computed by the last hazchem run."""
    require_role(user, *READERS)
    inst = conn.execute(text("SELECT id, name FROM hazard_installations WHERE id = :i"),
                        {"i": installation_id}).first()
    if inst is None:
        raise NotFound(f"no hazard installation {installation_id}", zh=f"没有危险源 {installation_id}")
    g = conn.execute(text("SELECT * FROM installation_gradings WHERE installation_id = :i"),
                     {"i": installation_id}).mappings().first()
    if g is None:
        raise NotFound(f"installation {installation_id} has not been graded yet: run `riskmap analyze hazchem`",
                       zh=f"危险源 {installation_id} 尚未分级：请运行 `riskmap analyze hazchem`")
    if g["error"]:
        raise DataError(f"installation {installation_id} ({inst.name}) cannot be graded: {g['error']}",
                        zh=f"危险源 {installation_id}（{inst.name}）无法分级：{g['error']}")
    return {
        "installation_id": inst.id, "name": inst.name,
        "S": g["s"], "R": g["r"], "alpha": g["alpha"], "level": g["level"], "is_major": g["is_major"],
        "kinds": g["kinds"],
        "substances": [{k: s[k] for k in ("name", "cas", "q", "Q", "beta", "source")} for s in g["substances"]],
        "exposed_people": g["exposed_people"], "population": g["population"],
        "run": _run_info(conn),
    }


@router.get("/siting-check/options")
def siting_options():
    """What the siting check takes, with their names (中文/English): the uses (receptor kinds, installations),
    GB 18218 levels and hazard kinds, each ``{code, zh, en}`` (the web map's siting form; public)."""
    return hazchem.siting_options()


@router.post("/siting-check")
@reads_only
def siting_check(body: SitingRequest, request: Request, conn: ConnDep, user: Reader):
    """Conflicts of a proposed site with the safety distances, both ways (see gis.hazchem.siting_check)."""
    if body.use in hazchem.INSTALLATION_USES:
        if body.people is not None:
            raise DataError(f"people applies to a receptor use, not to {body.use!r} (give level and kinds)",
                            zh=f"人数 people 只用于防护目标类用途，不用于 {body.use!r}（请给出等级和危险类型）")
    elif body.level is not None or body.kinds is not None:
        raise DataError(f"level and kinds apply to a chemical plant or hazchem storage, not to {body.use!r}",
                        zh=f"等级和危险类型只用于化工装置或危化品仓储，不用于 {body.use!r}")
    if body.kinds == []:
        raise DataError("kinds must name at least one of toxic, flammable, explosive (leave it out for all)",
                        zh="危险类型至少选一项：有毒、易燃、爆炸（不给出则为全部）")
    crs = body.geometry.get("crs")
    if crs is not None and (not isinstance(crs, dict) or str((crs.get("properties") or {}).get("name", "")).rsplit(
            ":", 1)[-1].upper() not in ("CRS84", "4326")):
        raise DataError("geometry must be in lon/lat (EPSG:4326 / CRS84); its crs member names another CRS",
                        zh="几何应为经纬度（EPSG:4326 / CRS84）；其 crs 指定了其他坐标系")
    kind = body.geometry.get("type")
    if kind not in SITE_TYPES:
        raise DataError(f"geometry type must be one of {', '.join(SITE_TYPES)}, got {kind!r}",
                        zh=f"几何类型应为 {'、'.join(SITE_TYPES)} 之一，而非 {kind!r}")
    try:
        geojson = json.dumps(body.geometry, allow_nan=False)
    except ValueError:
        raise DataError("geometry coordinates must be finite numbers (no NaN or Infinity)",
                        zh="几何坐标应为有限数值（不能是 NaN 或 Infinity）") from None
    try:  # (GEOS's own GeoJSON reader: it says what is wrong in the coordinates)
        geom = shapely.from_geojson(geojson)
    except (ValueError, shapely.errors.GEOSException) as exc:
        raise DataError(f"geometry is not a valid GeoJSON {kind}: {str(exc).split('Error parsing JSON: ')[-1]}",
                        zh=f"几何不是有效的 GeoJSON {kind}") from None
    if shapely.get_num_coordinates(geom) > MAX_SITE_POSITIONS:  # (each receptor is measured against all of it)
        raise DataError(f"geometry may have at most {MAX_SITE_POSITIONS} positions, got "
                        f"{shapely.get_num_coordinates(geom)}; simplify the outline",
                        zh=f"几何最多 {MAX_SITE_POSITIONS} 个点，收到 {shapely.get_num_coordinates(geom)} 个；请简化边界")
    if geom.is_empty:  # (explain_validity calls an empty geometry "Valid Geometry")
        raise DataError(f"geometry is empty: the {kind} has no coordinates", zh=f"几何为空：该 {kind} 没有坐标")
    if not geom.is_valid:
        raise DataError(f"geometry is invalid: {explain_validity(geom)}", zh=f"几何无效：{explain_validity(geom)}")
    geom = shapely.force_2d(geom)
    minx, miny, maxx, maxy = geom.bounds
    area = request.app.state.store_settings.area_bbox
    if minx < area[0] or miny < area[1] or maxx > area[2] or maxy > area[3]:
        raise DataError(f"geometry is outside the area of interest {area} (lon/lat, EPSG:4326 expected)",
                        zh=f"几何位于服务范围 {area} 之外（应为经纬度 EPSG:4326）")
    result = hazchem.siting_check(conn, geom, body.use, _config(request), level=body.level, kinds=body.kinds,
                                  people=body.people)
    return {**result, "run": _run_info(conn)}


def _rule(row) -> dict:
    return dict(row._mapping) | {"updated_at": row.updated_at.isoformat()}


@router.get("/safety-rules")
def list_rules(conn: ConnDep, user: UserDep):
    """Every safety-distance rule (the required distance of a pair is the largest matching rule)."""
    require_role(user, *READERS)
    return {"rules": [_rule(r) for r in conn.execute(select(RULES).order_by(RULES.c.id))]}


@router.post("/safety-rules", status_code=201)
def add_rule(body: RuleIn, conn: ConnDep, user: Editor):
    row = conn.execute(insert(RULES).values(**body.model_dump()).returning(*RULES.c)).one()
    conn.commit()
    return _rule(row)


@router.put("/safety-rules/{rule_id}")
def replace_rule(rule_id: int, body: RuleIn, conn: ConnDep, user: Editor):
    row = conn.execute(update(RULES).where(RULES.c.id == rule_id)
                       .values(**body.model_dump(), updated_at=text("now()")).returning(*RULES.c)).first()
    if row is None:
        raise NotFound(f"no safety rule {rule_id}", zh=f"没有安全距离规则 {rule_id}")
    conn.commit()
    return _rule(row)


@router.delete("/safety-rules/{rule_id}", status_code=204)
def delete_rule(rule_id: int, conn: ConnDep, user: UserDep):
    require_role(user, *EDITORS)
    if conn.execute(delete(RULES).where(RULES.c.id == rule_id)).rowcount == 0:
        raise NotFound(f"no safety rule {rule_id}", zh=f"没有安全距离规则 {rule_id}")
    conn.commit()
    return Response(status_code=204)


@router.post("/safety-rules/reset")
def reset_rules(conn: ConnDep, user: UserDep):
    """Replace every rule by the shipped defaults (gis/data/safety_distance_rules.csv)."""
    require_role(user, *EDITORS)
    n = hazchem.reset_rules(conn)
    conn.commit()
    return {"rules": n}


@router.get("/reports/{kind}/{ident}", response_class=HTMLResponse)
def report(kind: Literal["park", "installation", "district"], ident: str, conn: ConnDep, user: Reader):
    """Offline HTML report (folium, Leaflet inlined) of a chemical park or hazard installation (by id) or a
    district (by adcode): its map and summary tables, as ``riskmap report`` writes them."""
    if kind != "district" and not (ident.isascii() and ident.isdigit() and len(ident) <= 9):
        raise DataError(f"a {kind} report takes the {kind}'s numeric id, got {ident[:40]!r}",
                        zh=f"{kind} 报告需用数字编号，而非 {ident[:40]!r}")
    page = (reports.district_report(conn, ident, user.role) if kind == "district"
            else reports.REPORTS[kind](conn, int(ident)))
    return HTMLResponse(page, headers={"Content-Disposition": f'attachment; filename="{kind}-{ident}.html"'})
