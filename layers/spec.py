"""The building blocks of layer registry entries: fields, code lists (with the classifications and
defaults behind some of them), styles, roles."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping


ROLES = ("anonymous", "planner", "route_controller", "emergency", "editor", "gateway", "admin")  # gateway: ingest only
STAFF = frozenset({"planner", "route_controller", "emergency", "editor", "admin"})

THEMES = {
    "hazchem": ("危化品", "Hazardous chemicals"),
    "tailings": ("尾矿库", "Tailings ponds"),
    "transport": ("道路运输", "Road transport"),
    "emergency": ("应急资源", "Emergency resources"),
    "base": ("底图", "Base"),
}

# The four-colour risk palette (红橙黄蓝), highest first: the one set of colours of every graded code list
# below, of the legends and tile styles (/api/layers) and so of the web map.
RISK_COLORS = MappingProxyType({"red": "#e60012", "orange": "#ff8c00", "yellow": "#ffd700", "blue": "#1e64c8"})
# The four-colour risk grading of Chinese safety regulators: 重大风险 红, 较大风险 橙, 一般风险 黄, 低风险 蓝.
RISK_GRADES = {
    "red": ("重大风险（红）", "Major risk (red)", RISK_COLORS["red"]),
    "orange": ("较大风险（橙）", "Significant risk (orange)", RISK_COLORS["orange"]),
    "yellow": ("一般风险（黄）", "Moderate risk (yellow)", RISK_COLORS["yellow"]),
    "blue": ("低风险（蓝）", "Low risk (blue)", RISK_COLORS["blue"]),
}
# GB 36894-2018 protection target (防护目标) classes: receptors.protection_class and the safety rules.
PROTECTION_CLASSES = {
    "high_sensitive": ("高敏感防护目标", "Highly sensitive", RISK_COLORS["red"]),
    "important": ("重要防护目标", "Important", RISK_COLORS["orange"]),
    "general_1": ("一般防护目标（一类）", "General, class 1", RISK_COLORS["yellow"]),
    "general_2": ("一般防护目标（二类）", "General, class 2", RISK_COLORS["blue"]),
    "general_3": ("一般防护目标（三类）", "General, class 3", "#7f8c8d"),
}
# GB 18218-2018 4.3: 一级..四级 major hazard installations.
HAZARD_LEVELS = {
    1: ("一级", "Level 1", RISK_COLORS["red"]),
    2: ("二级", "Level 2", RISK_COLORS["orange"]),
    3: ("三级", "Level 3", RISK_COLORS["yellow"]),
    4: ("四级", "Level 4", RISK_COLORS["blue"]),
}
# Road classes of the ``roads`` layer: zh, en, map colour, and the speed (km/h) a road of the class is taken to
# have when it has none of its own (the routable graph, gis.roadnet; the demo's generated roads): a design
# speed of JTG B01-2014 within the class's range — 高速公路 100 (of 120/100/80), 一级公路 80 (100/80/60),
# 二级 60 (80/60), 三级 40 (40/30) — and 40 for urban roads (CJJ 37-2012: 主干路 60/50/40, 次干路 50/40/30,
# 支路 40/30/20).
ROAD_CLASSES = {
    "motorway": ("高速公路", "Expressway", "#e67e22", 100.0),
    "trunk": ("国道", "National road", "#f1c40f", 80.0),
    "primary": ("省道", "Provincial road", "#3498db", 60.0),
    "secondary": ("县道", "County road", "#95a5a6", 40.0),
    "urban": ("城市道路", "Urban road", "#bdc3c7", 40.0),
}
ROAD_CLASS_SPEEDS = MappingProxyType({k: v[3] for k, v in ROAD_CLASSES.items()})


@dataclass(frozen=True)
class LengthClass:
    """A length class of bridges or tunnels: longer than ``above_m`` (or equal, when ``inclusive``)."""

    kind: str                # bridge | tunnel
    zh: str
    en: str
    color: str               # legend and map colour
    above_m: float | None    # None: any length (the shortest class)
    inclusive: bool = False


# Length classes of restricted structures (``restricted_structures.structure_class``), each kind longest first.
# Bridges by total length L, JTG D60-2015 《公路桥涵设计通用规范》 (the same figures in JTG B01): 特大桥 L > 1000 m,
# 大桥 100 ≤ L ≤ 1000, 中桥 30 < L < 100, 小桥 8 ≤ L ≤ 30 (shorter ones are taken as 小桥 too: the layer holds no
# culverts). Tunnels by length L, JTG 3370.1-2018 《公路隧道设计规范 第一册 土建工程》: 特长 L > 3000 m,
# 长 1000 < L ≤ 3000, 中 500 < L ≤ 1000, 短 L ≤ 500.
STRUCTURE_CLASSES = MappingProxyType({
    "bridge_xl": LengthClass("bridge", "特大桥", "Extra-large bridge", RISK_COLORS["red"], 1000.0),
    "bridge_l": LengthClass("bridge", "大桥", "Large bridge", RISK_COLORS["orange"], 100.0, inclusive=True),
    "bridge_m": LengthClass("bridge", "中桥", "Medium bridge", RISK_COLORS["yellow"], 30.0),
    "bridge_s": LengthClass("bridge", "小桥", "Small bridge", "#95a5a6", None),
    "tunnel_xl": LengthClass("tunnel", "特长隧道", "Extra-long tunnel", "#6c3483", 3000.0),
    "tunnel_l": LengthClass("tunnel", "长隧道", "Long tunnel", "#a569bd", 1000.0),
    "tunnel_m": LengthClass("tunnel", "中隧道", "Medium tunnel", "#c39bd3", 500.0),
    "tunnel_s": LengthClass("tunnel", "短隧道", "Short tunnel", "#7f8c8d", None),
})


def structure_class(kind: str, length: float) -> str | None:
    """Length class of a bridge or tunnel (:data:`STRUCTURE_CLASSES`); None for another kind.

    >>> structure_class("bridge", 1200), structure_class("bridge", 100), structure_class("tunnel", 1000)
    ('bridge_xl', 'bridge_l', 'tunnel_m')
    """
    for code, c in STRUCTURE_CLASSES.items():
        if c.kind == kind and (c.above_m is None or length > c.above_m or (c.inclusive and length == c.above_m)):
            return code
    return None


def structure_class_sql(alias: str) -> str:
    """SQL for the class of the structure row ``alias``: its ``structure_class``, else :func:`structure_class`
    of its ``kind`` and ``length_m`` (NULL without a length). ``alias`` is a table alias from code; the codes
    and lengths come from :data:`STRUCTURE_CLASSES` (floats written as SQL numbers), never from a request.
    """
    def test(c: LengthClass) -> str:
        if c.above_m is None:
            return f"{alias}.length_m IS NOT NULL"
        return f"{alias}.length_m {'>=' if c.inclusive else '>'} {float(c.above_m)!r}"

    kinds = dict.fromkeys(c.kind for c in STRUCTURE_CLASSES.values())
    cases = " ".join(
        f"WHEN {alias}.kind = '{kind}' THEN CASE "
        + " ".join(f"WHEN {test(c)} THEN '{code}'" for code, c in STRUCTURE_CLASSES.items() if c.kind == kind)
        + " END" for kind in kinds)
    return f"coalesce({alias}.structure_class, CASE {cases} END)"


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
    its layer (None: whoever sees the layer sees the field). ``minimum`` and ``maximum`` bound an int or
    float field, both inclusive (None: no bound beyond the column's own range): imports refuse a value
    outside them (the features API's filters do not, so rows stored before a bound can be found).
    """

    name: str
    type: str
    title_zh: str
    title_en: str
    required: bool = False
    codes: Mapping | None = None
    roles: frozenset | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None

    def __post_init__(self):
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("int", "float"):
            raise ValueError(f"{self.name}: only int and float fields take a minimum or maximum")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{self.name}: minimum {self.minimum} is above maximum {self.maximum}")

    def visible_to(self, role: str) -> bool:
        return self.roles is None or role == "admin" or role in self.roles


@dataclass(frozen=True)
class Style:
    color: str
    fill: str | None = None
    weight: float = 2
    radius: float = 5
    by_field: str | None = None  # colour features by this coded field
    blank: tuple[str, str] | None = None  # (zh, en) legend label of features without a value there, drawn in fill


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
    tile_where: str | None = None  # fixed SQL condition on the rows (alias t) the map tiles show, from code only
    search_whole: bool = False  # features of one name are parts of one thing (a road's segments): one search result

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
            items = [{"value": k, "label_zh": c.zh, "label_en": c.en, "color": c.color}
                     for k, c in table.items() if c.color]
            if self.style.blank:
                zh, en = self.style.blank
                items.append({"value": None, "label_zh": zh, "label_en": en, "color": self.style.fill or self.style.color})
            return items
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
