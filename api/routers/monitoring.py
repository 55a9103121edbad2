"""Online monitoring and early warning: ingest readings, alarms (list, history, acknowledge), daily
counts, a monitored asset's readings for its panel chart, thresholds.

Roles: ingest editor/gateway/admin (a data gateway gets its own user of role gateway: readings only),
thresholds editor/admin;
reading anything staff (planner, route_controller, emergency, editor, admin); acknowledging
emergency/editor/admin. Anonymous callers see nothing (monitoring data is sensitive).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import ConnDep, Principal, UserDep, needs, require_role
from api.errors import NotFound
from gis import monitoring
from layers.errors import DataError
from layers.spec import STAFF
from layers.topics.monitoring import ASSET_LAYERS, KINDS

router = APIRouter(prefix="/monitoring", tags=["monitoring"])
INGEST = ("editor", "gateway")  # (a data gateway's user: readings only)
EDIT = ("editor",)
ACK = ("emergency", "editor")
READ = tuple(sorted(STAFF))
# callers with the role, checked before the body is validated (api.deps.needs)
Acknowledger = Annotated[Principal, Depends(needs(*ACK))]
Ingester = Annotated[Principal, Depends(needs(*INGEST))]
Editor = Annotated[Principal, Depends(needs(*EDIT))]
MAX_BODY = 20 * 1024 * 1024
AssetLayer = Literal["tailings_ponds", "hazard_installations"]


def _items(ctype: str, body: bytes, form) -> list:
    # (a CSV sent as text/plain or octet-stream, as curl --data-binary does, is known by its header)
    if ctype in ("text/csv", "application/csv") or (ctype in ("text/plain", "application/octet-stream")
                                                     and body.lstrip()[:7].lower() == b"sensor,"):
        return monitoring.parse_csv(body)
    if ctype == "multipart/form-data":
        upload = form.get("file") if form is not None else None
        if upload is None or isinstance(upload, str):
            raise DataError("multipart upload needs a CSV file in the field 'file'")
        return monitoring.parse_csv(upload.file.read())
    return monitoring.parse_json(body)


def _ingest(engine, ctype: str, body: bytes, form) -> dict:
    """Decode and ingest in a worker thread (decoding a large batch would hold up the event loop),
    with the garbage collector paused over both (see :func:`gis.monitoring.gc_paused`)."""
    with monitoring.gc_paused():
        items = _items(ctype, body, form)
        with engine.begin() as conn:
            return monitoring.ingest(conn, items)


# The body as the API docs show it (the route reads it itself: JSON, a CSV body or a CSV upload).
READING = {"type": "object", "required": ["sensor", "time", "value", "unit"], "properties": {
    "sensor": {"type": "string", "description": "sensor code, e.g. TP1-D1"},
    "time": {"type": "string", "format": "date-time", "description": "ISO 8601; no offset: Beijing time"},
    "value": {"type": "number"}, "unit": {"type": "string", "description": "a unit of the kind (GET /monitoring/kinds)"}}}
READINGS_BODY = {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["readings"],
                                    "properties": {"readings": {"type": "array", "items": READING}}}},
    "text/csv": {"schema": {"type": "string", "description": "header sensor,time,value,unit"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV with the header sensor,time,value,unit"}}}},
}}


@router.post("/readings", openapi_extra={"requestBody": READINGS_BODY})
async def post_readings(request: Request, user: Ingester):
    """Ingest a batch of readings: JSON ``{"readings": [...]}``, a CSV body (``text/csv``) or a CSV
    upload (multipart field ``file``). Bad readings are rejected one by one with the reason; the
    good ones are kept (idempotent on sensor and time) and evaluated for alarms before the answer.
    Answers 422 only when nothing in the batch was acceptable."""
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise DataError(f"body larger than {MAX_BODY // 1024 // 1024} MB: send smaller batches")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = await request.form() if ctype.startswith("multipart/") else None
    body = b"" if form is not None else await request.body()
    result = await run_in_threadpool(_ingest, request.app.state.engine, ctype, body, form)
    if result["received"] and result["accepted"] == 0:  # an error, in the shape of every error, with the details
        first = "".join(f" (reading {r['index']}: {r['reason']})" for r in result["rejected"][:1])
        return JSONResponse({"code": "ReadingsRejected", "description": (
            f"none of the {result['received']} readings was accepted{first}; see rejected"), **result}, status_code=422)
    return JSONResponse(result)


def _check_offline(request: Request) -> None:
    with request.app.state.engine.begin() as conn:
        monitoring.check_offline(conn)


@router.get("/alarms")
def alarms(request: Request, conn: ConnDep, user: UserDep,
           status: Literal["open", "closed", "all"] = "open", asset_layer: AssetLayer | None = None,
           asset_id: int | None = Query(None, ge=1), limit: int = Query(500, ge=1, le=5000)):
    """Alarms, open ones by default (highest level first). Sensors that went silent are marked
    offline first, so a feed that stopped altogether still shows up here."""
    require_role(user, *READ)
    _check_offline(request)
    return {"alarms": monitoring.list_alarms(conn, status, asset_layer, asset_id, limit)}


@router.get("/alarms/{alarm_id}")
def alarm(conn: ConnDep, user: UserDep, alarm_id: int):
    """One alarm with its history (open, escalate, deescalate, close, ack events)."""
    require_role(user, *READ)
    found = monitoring.alarm_detail(conn, alarm_id)
    if found is None:
        raise NotFound(f"no alarm {alarm_id}", zh=f"没有警报 {alarm_id}")
    return found


class Ack(BaseModel):
    note: str | None = Field(None, max_length=2000)


@router.post("/alarms/{alarm_id}/ack")
def acknowledge(request: Request, user: Acknowledger, alarm_id: int, ack: Ack = Body(default_factory=Ack)):
    """Acknowledge an alarm (emergency, editor, admin): recorded with the user's name in its history."""
    with request.app.state.engine.begin() as conn:
        found = monitoring.acknowledge(conn, alarm_id, user.name, ack.note)
    if found is None:
        raise NotFound(f"no alarm {alarm_id}", zh=f"没有警报 {alarm_id}")
    return found


@router.get("/daily")
def daily(conn: ConnDep, user: UserDep, days: int = Query(7, ge=1, le=366), asset_layer: AssetLayer | None = None,
          asset_id: int | None = Query(None, ge=1)):
    """Per asset and day: readings, raw threshold crossings, alarms opened and escalated, red alarms."""
    require_role(user, *READ)
    rows = monitoring.daily_counts(conn, days, asset_layer, asset_id)
    totals = {k: sum(r[k] for r in rows) for k in ("readings", "crossings", "opened", "escalated", "red")}
    raised = totals["opened"] + totals["escalated"]
    totals["reduction"] = round(1 - raised / totals["crossings"], 3) if totals["crossings"] else None
    return {"days": rows, "totals": totals}


@router.get("/assets/{asset_layer}/{asset_id}")
def asset(conn: ConnDep, user: UserDep, asset_layer: AssetLayer, asset_id: int,
          hours: float = Query(48, gt=0, le=24 * 31, allow_inf_nan=False)):
    """A monitored asset: current level, open alarms, and every sensor's recent readings with its
    thresholds (what a feature's panel charts)."""
    require_role(user, *READ)
    found = monitoring.asset_view(conn, asset_layer, asset_id, hours)
    if found is None:
        raise NotFound(f"no {asset_layer} {asset_id}", zh=f"没有 {asset_layer} {asset_id}")
    return found


@router.get("/sensors/{code}/readings")
def readings(conn: ConnDep, user: UserDep, code: str, since: datetime | None = None, until: datetime | None = None,
             limit: int = Query(10000, ge=1, le=100000)):
    """Readings of one sensor (oldest first), in the unit of its kind."""
    require_role(user, *READ)
    found = monitoring.sensor_readings(conn, code, since, until, limit)
    if found is None:
        raise NotFound(f"no sensor {code!r}", zh=f"没有传感器 {code!r}")
    return found


@router.get("/kinds")
def kinds():
    """Sensor kinds: what they measure, for which asset layer, unit and accepted units, worse direction, and
    the range a working sensor can report (a reading beyond it is refused as a sensor fault)."""
    return {"kinds": [{"kind": k, "zh": v.zh, "en": v.en, "asset_layer": v.asset_layer, "unit": v.unit,
                       "units": list(v.units), "direction": v.direction, "possible": list(v.possible)}
                      for k, v in KINDS.items()],
            "asset_layers": {k: {"zh": zh, "en": en} for k, (zh, en) in ASSET_LAYERS.items()}}


@router.get("/thresholds")
def thresholds(conn: ConnDep, user: UserDep):
    """All thresholds: per kind (asset_layer/asset_id null) and per asset."""
    require_role(user, *READ)
    return {"thresholds": monitoring.list_thresholds(conn)}


class ThresholdIn(BaseModel):
    kind: str
    asset_layer: AssetLayer | None = None
    asset_id: int | None = Field(None, ge=1)
    blue: float | None = Field(None, allow_inf_nan=False)
    yellow: float | None = Field(None, allow_inf_nan=False)
    orange: float | None = Field(None, allow_inf_nan=False)
    red: float | None = Field(None, allow_inf_nan=False)
    hysteresis: float | None = Field(None, ge=0, allow_inf_nan=False)
    rate_blue: float | None = Field(None, ge=0, allow_inf_nan=False)  # (rates of change per day: 0 or more)
    rate_yellow: float | None = Field(None, ge=0, allow_inf_nan=False)
    rate_orange: float | None = Field(None, ge=0, allow_inf_nan=False)
    rate_red: float | None = Field(None, ge=0, allow_inf_nan=False)
    rate_window_h: float | None = Field(None, gt=0, le=24 * 30, allow_inf_nan=False)
    debounce: int | None = Field(None, ge=1, le=20)
    source: str | None = Field(None, max_length=1000)


@router.put("/thresholds")
def put_threshold(request: Request, user: Editor, body: ThresholdIn):
    """Create or replace the thresholds of a kind (default) or of one asset (editor, admin). The row is replaced
    as a whole: a field not given takes its default (hysteresis 0, debounce 2, rate window 24 h), not the old value."""
    values = body.model_dump(exclude={"kind", "asset_layer", "asset_id"})
    with request.app.state.engine.begin() as conn:
        return monitoring.set_threshold(conn, body.kind, values, body.asset_layer, body.asset_id)


@router.delete("/thresholds", status_code=204)
def delete_threshold(request: Request, user: Editor, kind: str = Query(..., max_length=50),
                     asset_layer: AssetLayer = Query(...), asset_id: int = Query(..., ge=1)):
    """Remove one asset's own thresholds of a kind (editor, admin): its sensors go back to the kind's default.
    Also for an asset since deleted. A kind's default is replaced (PUT), never removed."""
    with request.app.state.engine.begin() as conn:
        if not monitoring.delete_threshold(conn, kind, asset_layer, asset_id):
            raise NotFound(f"{asset_layer} {asset_id} has no {kind} thresholds of its own",
                           zh=f"{asset_layer} {asset_id} 没有单独设定的 {kind} 阈值")
