"""Emergency records: incidents kept for shift hand-over and their ERG zones (models + registry entries).

An incident row keeps who ran the analysis, when, the inputs and the whole answer (zones, counts,
ranked resources) as JSON, so the next shift sees exactly what was decided on. The zones are also
stored as polygons so the one-map can show open incidents.
"""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.models import SRID, Base, LayerMixin
from layers.spec import COMMON, F, LayerSpec, Style

EMERGENCY_ROLES = frozenset({"emergency", "planner"})


class Incident(LayerMixin, Base):
    __tablename__ = "incidents"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    created_by: Mapped[str] = mapped_column(Text, nullable=False)
    un_number: Mapped[str | None] = mapped_column(Text)
    chemical: Mapped[str] = mapped_column(Text, nullable=False)  # as entered
    spill: Mapped[str] = mapped_column(Text, nullable=False)
    time_of_day: Mapped[str] = mapped_column(Text, nullable=False)
    wind_from_deg: Mapped[float | None] = mapped_column(Float)
    isolation_m: Mapped[float] = mapped_column(Float, nullable=False)
    protective_m: Mapped[float | None] = mapped_column(Float)
    verified: Mapped[bool] = mapped_column(Boolean, nullable=False)  # every ERG row used was verified
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="open")
    inputs: Mapped[dict] = mapped_column(JSONB, nullable=False)
    result: Mapped[dict] = mapped_column(JSONB, nullable=False)
    notes: Mapped[list] = mapped_column(JSONB, nullable=False, server_default="[]")  # [{at, by, text}]
    geom: Mapped[str] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=True), nullable=False)


class IncidentZone(LayerMixin, Base):
    __tablename__ = "incident_zones"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True,
                                             nullable=False)
    zone: Mapped[str] = mapped_column(Text, nullable=False)  # isolation | protective
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    shape: Mapped[str] = mapped_column(Text, nullable=False)
    people: Mapped[float | None] = mapped_column(Float)
    open: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")  # the incident's status
    geom: Mapped[str] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False)


SPILLS = {"small": ("小量泄漏（<208 L）", "Small spill (<208 L)"), "large": ("大量泄漏（>208 L）", "Large spill (>208 L)")}
TIMES = {"day": ("白天", "Day"), "night": ("夜间", "Night")}
ZONES = {"isolation": ("初始隔离区", "Initial isolation zone", "#e60012"),
         "protective": ("防护行动区", "Protective action zone", "#ff8c00")}

LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec(
        "incidents", Incident, "危化品事故（值班记录）", "Hazmat incidents (duty log)", "emergency", "Point",
        (F("name", "str", "名称", "Name"), F("created_at", "datetime", "记录时间", "Recorded at"),
         F("created_by", "str", "记录人", "Recorded by"), F("un_number", "str", "UN 编号", "UN number"),
         F("chemical", "str", "化学品（输入）", "Chemical (as entered)"),
         F("spill", "str", "泄漏规模", "Spill size", codes=SPILLS),
         F("time_of_day", "str", "昼夜", "Day/night", codes=TIMES),
         F("wind_from_deg", "float", "风向（来向，度）", "Wind from (deg)"),
         F("isolation_m", "float", "隔离距离（米）", "Isolation distance (m)"),
         F("protective_m", "float", "防护距离（米）", "Protective action distance (m)"),
         F("verified", "bool", "ERG 数据已核实", "ERG rows verified"),
         F("status", "str", "状态", "Status", codes={"open": ("处置中", "Open", "#e60012"),
                                                  "closed": ("已结束", "Closed", "#7f8c8d")}),
         *COMMON),
        Style("#e60012", radius=7, by_field="status"), roles=EMERGENCY_ROLES,
        popup=("name", "created_at", "created_by", "spill", "status"),
    ),
    LayerSpec(
        "incident_zones", IncidentZone, "事故隔离与防护区", "Incident isolation and protective zones", "emergency",
        "MultiPolygon",
        (F("name", "str", "名称", "Name"), F("incident_id", "int", "事故编号", "Incident id"),
         F("zone", "str", "区域", "Zone", codes=ZONES),
         F("distance_m", "float", "距离（米）", "Distance (m)"), F("shape", "str", "形状", "Shape"),
         F("people", "float", "估算人口", "Estimated people"),
         F("open", "bool", "事故处置中", "Incident open"), *COMMON),
        Style("#ff8c00", fill="#ff8c00", by_field="zone"), roles=EMERGENCY_ROLES,
        popup=("name", "zone", "distance_m", "people"), tile_where="t.open",
    ),
)
