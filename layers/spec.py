"""The building blocks of layer registry entries: fields, code lists, styles, roles."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


ROLES = ("anonymous", "planner", "route_controller", "emergency", "editor", "admin")
STAFF = frozenset({"planner", "route_controller", "emergency", "editor", "admin"})

THEMES = {
    "hazchem": ("危化品", "Hazardous chemicals"),
    "tailings": ("尾矿库", "Tailings ponds"),
    "transport": ("道路运输", "Road transport"),
    "emergency": ("应急资源", "Emergency resources"),
    "base": ("底图", "Base"),
}

# 红橙黄蓝: 重大/较大/一般/低风险 (the four-colour risk grading used by Chinese safety regulators).
RISK_GRADES = {
    "red": ("红（重大风险）", "Red (major risk)", "#e60012"),
    "orange": ("橙（较大风险）", "Orange (high risk)", "#ff8c00"),
    "yellow": ("黄（一般风险）", "Yellow (moderate risk)", "#ffd700"),
    "blue": ("蓝（低风险）", "Blue (low risk)", "#1e64c8"),
}
# GB 36894-2018 protection target (防护目标) classes: receptors.protection_class and the safety rules.
PROTECTION_CLASSES = {
    "high_sensitive": ("高敏感防护目标", "Highly sensitive", "#e60012"),
    "important": ("重要防护目标", "Important", "#ff8c00"),
    "general_1": ("一般防护目标（一类）", "General, class 1", "#ffd700"),
    "general_2": ("一般防护目标（二类）", "General, class 2", "#1e64c8"),
    "general_3": ("一般防护目标（三类）", "General, class 3", "#7f8c8d"),
}
# GB 18218-2018 4.3: 一级..四级 major hazard installations.
HAZARD_LEVELS = {
    1: ("一级", "Level 1", "#e60012"),
    2: ("二级", "Level 2", "#ff8c00"),
    3: ("三级", "Level 3", "#ffd700"),
    4: ("四级", "Level 4", "#1e64c8"),
}


@dataclass(frozen=True)
class Code:
    zh: str
    en: str
    color: str | None = None


def codes(table: Mapping) -> Mapping:
    return MappingProxyType({k: Code(*v) for k, v in table.items()})


@dataclass(frozen=True)
class FieldSpec:
    """One attribute of a layer.

    ``type`` is one of str, int, float, bool, datetime. ``roles`` restricts the field further than
    its layer (None: whoever sees the layer sees the field).
    """

    name: str
    type: str
    title_zh: str
    title_en: str
    required: bool = False
    codes: Mapping | None = None
    roles: frozenset | None = None
    pattern: str | None = None

    def visible_to(self, role: str) -> bool:
        return self.roles is None or role == "admin" or role in self.roles


@dataclass(frozen=True)
class Style:
    color: str
    fill: str | None = None
    weight: float = 2
    radius: float = 5
    by_field: str | None = None  # colour features by this coded field


@dataclass(frozen=True)
class LayerSpec:
    id: str
    model: type
    title_zh: str
    title_en: str
    theme: str
    geometry_type: str
    fields: tuple[FieldSpec, ...]
    style: Style
    roles: frozenset | None = None  # None: public
    minzoom: int = 0
    maxzoom: int = 22
    popup: tuple[str, ...] = ("name",)
    default_visible: bool = True
    cluster_below_zoom: int | None = None  # server-side clustering of dense point layers
    derived: bool = False

    @property
    def table(self) -> str:
        return self.model.__tablename__

    @property
    def public(self) -> bool:
        return self.roles is None

    def visible_to(self, role: str) -> bool:
        return self.roles is None or role == "admin" or role in self.roles

    def fields_for(self, role: str) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.visible_to(role))

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def legend(self) -> list[dict]:
        if self.style.by_field:
            table = self.field(self.style.by_field).codes or {}
            return [
                {"value": k, "label_zh": c.zh, "label_en": c.en, "color": c.color}
                for k, c in table.items() if c.color
            ]
        return [{"value": None, "label_zh": self.title_zh, "label_en": self.title_en, "color": self.style.color}]


def F(name, type_, zh, en, **kw) -> FieldSpec:  # noqa: N802 - short constructor for the table below
    if isinstance(kw.get("codes"), dict):
        kw["codes"] = codes(kw["codes"])
    if kw.get("roles") is not None:
        kw["roles"] = frozenset(kw["roles"])
    return FieldSpec(name, type_, zh, en, **kw)


NAME = F("name", "str", "名称", "Name")
SYNTHETIC = F("synthetic", "bool", "合成数据", "Synthetic")
SOURCE = F("source", "str", "来源", "Source")
RISK = F("risk_grade", "str", "风险等级", "Risk grade", codes=RISK_GRADES)
ADCODE = F("adcode", "str", "行政区划代码", "Admin code (adcode)", pattern=r"^\d{6}$")
COMMON = (SYNTHETIC, SOURCE)
# Columns of every derived layer (see layers/derived.py).
RUN = (F("run_id", "int", "分析批次", "Analysis run"), F("computed_at", "datetime", "计算时间", "Computed at"))
