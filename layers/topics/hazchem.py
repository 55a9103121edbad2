"""Hazchem analysis tables (gis/hazchem.py writes them): models and registry entries.

* ``safety_rules`` — editable rules of required distances (data, not code; seeded from
  ``gis/data/safety_distance_rules.csv``); not a map layer.
* ``installation_gradings`` — GB 18218 grading of every installation with its breakdown; not a map layer.
* ``risk_scores`` — the 红橙黄蓝 score of every enterprise and park with its indicators; not a map layer.
* ``safety_violations`` and ``exposure_rings`` — derived map layers (restricted to staff).
"""

from __future__ import annotations

from datetime import datetime

from geoalchemy2 import Geometry
from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Integer, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.models import SRID, Base, DerivedMixin
from layers.spec import HAZARD_LEVELS, PROTECTION_CLASSES, RUN, STAFF, SYNTHETIC, F, LayerSpec, Style

# Installation kinds a safety rule applies to (from the GB 18218 classes of the inventory).
INSTALLATION_KINDS = {
    "any": ("任意", "Any installation"),
    "toxic": ("有毒物质", "Toxic (J classes, Table 3 gases)"),
    "flammable": ("易燃及其他理化危险", "Flammable and other physical hazards (W2-W11)"),
    "explosive": ("爆炸物", "Explosives (W1)"),
}
SUBJECT_LAYERS = {
    "hazard_installations": ("重大危险源", "Major hazard installation"),
    "chemical_parks": ("化工园区", "Chemical park"),
    "enterprises": ("危险化学品企业", "Enterprise"),
}


class SafetyRule(Base):
    """Required distance from an installation (kind, level) to a receptor of a protection class."""

    __tablename__ = "safety_rules"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    installation_kind: Mapped[str] = mapped_column(Text, nullable=False)
    level: Mapped[int | None] = mapped_column(Integer, CheckConstraint("level BETWEEN 1 AND 4"))  # NULL: any
    receptor_class: Mapped[str] = mapped_column(Text, nullable=False)
    distance_m: Mapped[float] = mapped_column(
        Float, CheckConstraint("distance_m > 0 AND distance_m <= 20000"), nullable=False
    )
    basis: Mapped[str] = mapped_column(Text, nullable=False)
    assumption: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    note: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class InstallationGrading(DerivedMixin, Base):
    """GB 18218-2018 identification and grading of one installation, with how α was counted."""

    __tablename__ = "installation_gradings"
    installation_id: Mapped[int] = mapped_column(
        ForeignKey("hazard_installations.id", ondelete="CASCADE"), index=True, nullable=False
    )
    enterprise_id: Mapped[int | None] = mapped_column(Integer)
    s: Mapped[float | None] = mapped_column(Float)  # identification index S
    r: Mapped[float | None] = mapped_column(Float)  # grading index R
    alpha: Mapped[float | None] = mapped_column(Float)
    level: Mapped[int | None] = mapped_column(Integer)
    is_major: Mapped[bool | None] = mapped_column(Boolean)
    kinds: Mapped[list[str]] = mapped_column(ARRAY(Text), nullable=False, server_default="{}")
    exposed_people: Mapped[int | None] = mapped_column(BigInteger)
    population: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")
    substances: Mapped[list] = mapped_column(JSONB, nullable=False, server_default="[]")
    error: Mapped[str | None] = mapped_column(Text)


class RiskScore(DerivedMixin, Base):
    """红橙黄蓝 grade of one enterprise or park with the indicators and points behind it."""

    __tablename__ = "risk_scores"
    subject_layer: Mapped[str] = mapped_column(Text, nullable=False)
    subject_id: Mapped[int] = mapped_column(Integer, nullable=False)
    score: Mapped[float] = mapped_column(Float, nullable=False)
    risk_grade: Mapped[str] = mapped_column(Text, nullable=False)
    indicators: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")


class SafetyViolation(DerivedMixin, Base):
    __tablename__ = "safety_violations"
    name: Mapped[str | None] = mapped_column(Text)
    installation_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    installation_name: Mapped[str | None] = mapped_column(Text)
    enterprise_id: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[int | None] = mapped_column(Integer)
    kinds: Mapped[str | None] = mapped_column(Text)
    receptor_id: Mapped[int] = mapped_column(Integer, nullable=False)
    receptor_name: Mapped[str | None] = mapped_column(Text)
    receptor_kind: Mapped[str | None] = mapped_column(Text)
    protection_class: Mapped[str] = mapped_column(Text, nullable=False)
    distance_m: Mapped[float] = mapped_column(Float, nullable=False)
    required_m: Mapped[float] = mapped_column(Float, nullable=False)
    shortfall_m: Mapped[float] = mapped_column(Float, nullable=False)
    rule_id: Mapped[int | None] = mapped_column(Integer)
    basis: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[str] = mapped_column(Geometry("LINESTRING", srid=SRID, spatial_index=True), nullable=False)


class ExposureRing(DerivedMixin, Base):
    __tablename__ = "exposure_rings"
    name: Mapped[str | None] = mapped_column(Text)
    subject_layer: Mapped[str] = mapped_column(Text, nullable=False)
    subject_id: Mapped[int] = mapped_column(Integer, nullable=False)
    inner_m: Mapped[float] = mapped_column(Float, nullable=False)
    outer_m: Mapped[float] = mapped_column(Float, nullable=False)
    people: Mapped[float | None] = mapped_column(Float)
    people_within: Mapped[float | None] = mapped_column(Float)
    receptors_high_sensitive: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    receptors_important: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    receptors_general_1: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    receptors_general_2: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    receptors_general_3: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    receptor_people: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    geom: Mapped[str] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False)


LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec(
        "safety_violations", SafetyViolation, "安全防护距离不足", "Safety-distance violations", "hazchem",
        "LineString",
        (F("name", "str", "名称", "Name"),
         F("installation_id", "int", "危险源编号", "Installation id"),
         F("installation_name", "str", "危险源名称", "Installation"),
         F("enterprise_id", "int", "所属企业", "Enterprise id"),
         F("level", "int", "危险源等级", "Level (GB 18218)", codes=HAZARD_LEVELS),
         F("kinds", "str", "危险类型", "Hazard kinds"),
         F("receptor_id", "int", "防护目标编号", "Receptor id"),
         F("receptor_name", "str", "防护目标名称", "Receptor"),
         F("receptor_kind", "str", "防护目标类型", "Receptor kind"),
         F("protection_class", "str", "防护目标类别 (GB 36894)", "Protection class (GB 36894)",
           codes=PROTECTION_CLASSES),
         F("distance_m", "float", "实际距离（米）", "Distance (m)"),
         F("required_m", "float", "要求距离（米）", "Required (m)"),
         F("shortfall_m", "float", "不足（米）", "Shortfall (m)"),
         F("rule_id", "int", "规则编号", "Rule id"),
         F("basis", "str", "依据", "Basis"),
         SYNTHETIC, *RUN),
        Style("#e60012", weight=3, by_field="protection_class"), roles=STAFF, derived=True,
        popup=("name", "protection_class", "distance_m", "required_m", "shortfall_m"),
    ),
    LayerSpec(
        "exposure_rings", ExposureRing, "人口暴露圈层", "Population exposure rings", "hazchem", "MultiPolygon",
        (F("name", "str", "名称", "Name"),
         F("subject_layer", "str", "对象类型", "Subject layer", codes=SUBJECT_LAYERS),
         F("subject_id", "int", "对象编号", "Subject id"),
         F("inner_m", "float", "内半径（米）", "Inner distance (m)"),
         F("outer_m", "float", "外半径（米）", "Outer distance (m)"),
         F("people", "float", "圈层人口", "People in ring"),
         F("people_within", "float", "范围内累计人口", "People within outer distance"),
         F("receptors_high_sensitive", "int", "高敏感防护目标数", "Highly sensitive receptors"),
         F("receptors_important", "int", "重要防护目标数", "Important receptors"),
         F("receptors_general_1", "int", "一般一类防护目标数", "General class-1 receptors"),
         F("receptors_general_2", "int", "一般二类防护目标数", "General class-2 receptors"),
         F("receptors_general_3", "int", "一般三类防护目标数", "General class-3 receptors"),
         F("receptor_people", "int", "防护目标人数", "People at receptors"),
         SYNTHETIC, *RUN),
        # (purple: the rings are not a risk level, so not in the 红橙黄蓝 of the levels drawn over them)
        Style("#7d3c98", fill="#d7bde2", weight=1), roles=STAFF, derived=True, default_visible=False, minzoom=8,
        popup=("name", "people", "people_within", "receptors_high_sensitive"),
    ),
)
