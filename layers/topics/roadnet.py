"""Road network: the routable graph tables, hazmat route rules, and the derived layers
``blackspots`` (事故多发点段) and ``route_conflicts`` (hazmat routes against the rules).

Schema: migration ``0004_roadnet``; computed by ``gis.roadnet.run`` (``riskmap analyze roads``).
"""

from __future__ import annotations

from datetime import datetime, time

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, Text, Time, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from layers.models import SRID, Base, DerivedMixin
from layers.spec import RISK_GRADES, RUN, SYNTHETIC, F, LayerSpec, Style


def _geom(kind: str) -> Mapped:
    return mapped_column(Geometry(kind, srid=SRID, spatial_index=True), nullable=False)


class RoadNode(Base):
    __tablename__ = "road_nodes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    component: Mapped[int | None] = mapped_column(Integer)
    geom: Mapped[str] = _geom("POINT")


class RoadEdge(Base):
    __tablename__ = "road_edges"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    road_id: Mapped[int] = mapped_column(Integer, index=True, nullable=False)
    source: Mapped[int] = mapped_column(Integer, index=True, nullable=False)
    target: Mapped[int] = mapped_column(Integer, index=True, nullable=False)
    length_m: Mapped[float] = mapped_column(Float, nullable=False)
    speed_kmh: Mapped[float] = mapped_column(Float, nullable=False)
    cost_s: Mapped[float] = mapped_column(Float, nullable=False)
    reverse_cost_s: Mapped[float] = mapped_column(Float, nullable=False)
    road_class: Mapped[str | None] = mapped_column(Text)
    bridge: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    tunnel: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    component: Mapped[int | None] = mapped_column(Integer)
    x1: Mapped[float] = mapped_column(Float, nullable=False)
    y1: Mapped[float] = mapped_column(Float, nullable=False)
    x2: Mapped[float] = mapped_column(Float, nullable=False)
    y2: Mapped[float] = mapped_column(Float, nullable=False)
    geom: Mapped[str] = _geom("LINESTRING")


class RoadEdgeLink(Base):
    __tablename__ = "road_edge_links"
    edge_id: Mapped[int] = mapped_column(ForeignKey("road_edges.id", ondelete="CASCADE"), primary_key=True)
    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    feature_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    covered_m: Mapped[float] = mapped_column(Float, nullable=False)
    # the stretch of the edge covered: fractions along its metric line, digitised direction
    lo: Mapped[float | None] = mapped_column(Float)
    hi: Mapped[float | None] = mapped_column(Float)


class RoadGraphInput(Base):
    """The ``layer_versions`` row of each layer the links were made from (stale links: a newer one)."""

    __tablename__ = "road_graph_inputs"
    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int | None] = mapped_column(BigInteger)
    x: Mapped[str | None] = mapped_column(Text)


class RouteRule(Base):
    """One hazmat routing rule: cargo classes x (structure classes | water-zone levels | road classes)."""

    __tablename__ = "route_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name_zh: Mapped[str] = mapped_column(Text, nullable=False)
    name_en: Mapped[str] = mapped_column(Text, nullable=False)
    cargo_classes: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    structure_classes: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    adr_categories: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    zone_levels: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    road_classes: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    min_quantity_t: Mapped[float | None] = mapped_column(Float)
    ban_start: Mapped[time | None] = mapped_column(Time)
    ban_end: Mapped[time | None] = mapped_column(Time)
    weekdays: Mapped[list[int] | None] = mapped_column(ARRAY(Integer))
    verdict: Mapped[str] = mapped_column(Text, nullable=False, server_default="forbidden")
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="true")
    source: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Blackspot(DerivedMixin, Base):
    __tablename__ = "blackspots"
    name: Mapped[str | None] = mapped_column(Text)
    road_id: Mapped[int | None] = mapped_column(Integer)
    road_ref: Mapped[str | None] = mapped_column(Text)
    from_m: Mapped[float] = mapped_column(Float, nullable=False)
    to_m: Mapped[float] = mapped_column(Float, nullable=False)
    length_m: Mapped[float] = mapped_column(Float, nullable=False)
    accidents: Mapped[int] = mapped_column(Integer, nullable=False)
    deaths: Mapped[int] = mapped_column(Integer, nullable=False)
    injuries: Mapped[int] = mapped_column(Integer, nullable=False)
    hazmat_accidents: Mapped[int] = mapped_column(Integer, nullable=False)
    prev_accidents: Mapped[int] = mapped_column(Integer, nullable=False)
    prev_deaths: Mapped[int] = mapped_column(Integer, nullable=False)
    trend: Mapped[str] = mapped_column(Text, nullable=False)
    rank: Mapped[int] = mapped_column(Integer, nullable=False)
    criterion: Mapped[str] = mapped_column(Text, nullable=False)
    risk_grade: Mapped[str | None] = mapped_column(Text)
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    period_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    geom: Mapped[str] = _geom("LINESTRING")


class RouteConflict(DerivedMixin, Base):
    __tablename__ = "route_conflicts"
    route_id: Mapped[int | None] = mapped_column(Integer)
    name: Mapped[str | None] = mapped_column(Text)
    cargo: Mapped[str | None] = mapped_column(Text)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    rule: Mapped[str | None] = mapped_column(Text)
    target: Mapped[str] = mapped_column(Text, nullable=False)
    target_id: Mapped[int | None] = mapped_column(Integer)
    target_name: Mapped[str | None] = mapped_column(Text)
    target_class: Mapped[str | None] = mapped_column(Text)
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str] = mapped_column(Text, nullable=False)
    geom: Mapped[str] = _geom("LINESTRING")


TRENDS = {"up": ("上升", "Rising", "#e60012"), "down": ("下降", "Falling", "#27ae60"),
          "same": ("持平", "Unchanged", "#7f8c8d"), "new": ("新增", "New", "#ff8c00")}
# (the codes name the defaults; `riskmap blackspots` may flag with other thresholds, which the run records)
CRITERIA = {
    "major_x2": ("重大伤亡事故多发（默认：2起以上死亡3人以上事故）",
                 "Repeated major crashes (default: ≥2 with ≥3 deaths each)"),
    "fatal_x3": ("死亡事故多发（默认：3起以上死亡事故）", "Repeated fatal crashes (default: ≥3)"),
    "any_x5": ("事故多发（默认：5起以上事故）", "Frequent crashes (default: ≥5)"),
}
VERDICTS = {"forbidden": ("禁止通行", "Forbidden", "#e60012"), "warning": ("注意（需审批或限时）", "Warning", "#ff8c00")}
TARGETS = {"structure": ("桥梁隧道", "Bridge or tunnel"), "water_zone": ("饮用水水源保护区", "Water-source zone"),
           "road": ("道路（限时）", "Road (time ban)")}
# Who may check and plan hazmat routes (POST /routes/check, /routes/plan; admin may do anything) ...
ROUTE_CHECK_ROLES = frozenset({"route_controller", "planner", "emergency"})
# ... and who may read the route data: the hazmat_routes and route_conflicts layers, the rules, the cargo
# table and the network report. Editors, who edit the rules, read them but do not check or plan.
ROUTE_DATA_ROLES = ROUTE_CHECK_ROLES | {"editor"}

LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec(
        "blackspots", Blackspot, "事故多发点段", "Accident black spots", "transport", "LineString",
        (F("name", "str", "道路", "Road"), F("road_ref", "str", "道路编号", "Road ref"),
         F("rank", "int", "排名", "Rank"),
         F("risk_grade", "str", "等级", "Grade", codes=RISK_GRADES),
         F("criterion", "str", "认定依据", "Criterion", codes=CRITERIA),
         F("accidents", "int", "事故数", "Crashes"), F("deaths", "int", "死亡人数", "Deaths"),
         F("injuries", "int", "受伤人数", "Injuries"), F("hazmat_accidents", "int", "涉危化品事故", "Hazmat crashes"),
         F("prev_accidents", "int", "上期事故数", "Crashes, previous period"),
         F("prev_deaths", "int", "上期死亡人数", "Deaths, previous period"),
         F("trend", "str", "趋势", "Trend", codes=TRENDS),
         F("from_m", "float", "起点（米）", "From (m)"), F("to_m", "float", "终点（米）", "To (m)"),
         F("length_m", "float", "长度（米）", "Length (m)"),
         F("period_start", "datetime", "统计起", "Period start"), F("period_end", "datetime", "统计止", "Period end"),
         F("road_id", "int", "道路 id", "Road id"), SYNTHETIC, *RUN),
        Style("#e60012", weight=6, by_field="risk_grade"), derived=True,
        popup=("name", "rank", "accidents", "deaths", "injuries", "trend", "criterion"),
    ),
    LayerSpec(
        "route_conflicts", RouteConflict, "危化品路线冲突", "Hazmat route conflicts", "transport", "LineString",
        (F("name", "str", "路线", "Route"), F("route_id", "int", "路线 id", "Route id"),
         F("cargo", "str", "货物", "Cargo"), F("rule", "str", "规则", "Rule"), F("rule_id", "int", "规则 id", "Rule id"),
         F("target", "str", "对象类型", "Target", codes=TARGETS), F("target_id", "int", "对象 id", "Target id"),
         F("target_name", "str", "对象", "Structure or zone"), F("target_class", "str", "对象分类", "Class"),
         F("distance_m", "float", "距起点（米）", "From start (m)"), F("eta", "datetime", "预计到达", "ETA"),
         F("verdict", "str", "结论", "Verdict", codes=VERDICTS), SYNTHETIC, *RUN),
        Style("#e60012", weight=6, by_field="verdict"), roles=ROUTE_DATA_ROLES, derived=True,
        popup=("name", "cargo", "target_name", "rule", "distance_m", "verdict"),
    ),
)
