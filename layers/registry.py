"""The layer registry: one frozen entry per layer drives import validation, the features API,
tiles, legend and docs.

Base layers are declared here; derived layers (analysis results) in ``layers/topics/``. Adding a
layer means one entry and one model (``tests/layers/test_registry.py`` checks that they agree).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from layers import models
from layers.spec import (  # noqa: F401 - re-exported for callers of the registry
    ADCODE, COMMON, HAZARD_LEVELS, NAME, PROTECTION_CLASSES, RISK, RISK_COLORS, RISK_GRADES, ROAD_CLASSES, ROLES,
    SOURCE, STAFF, STRUCTURE_CLASSES, SYNTHETIC, THEMES, F, FieldSpec, LayerSpec, Style,
)
from layers.topics import emergency, hazchem, monitoring, roadnet

# Bounds of numeric fields (FieldSpec.minimum/maximum, inclusive). Counts, sizes, lengths and amounts are
# never negative; a field that may be (roads' ``layer``: -1 is below ground) has no minimum.
COUNT = {"minimum": 0}
# People at one protection target: 10 million is more than any one school, hospital or residential area
# holds (Kunming has about 8.7 million residents in all). It keeps a typing error out (e.g. 2147483000);
# the analyses' sums of people are bigint all the same (migration 0013).
MAX_PEOPLE = 10_000_000

BASE_LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec(
        "admin_areas", models.AdminArea, "行政区划（区县）", "Districts and counties", "base", "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True), F("name_en", "str", "英文名称", "English name"),
         F("adcode", "str", "行政区划代码", "Admin code (adcode)", required=True, pattern=r"^\d{6}$"),
         F("level", "str", "级别", "Level", codes={"district": ("市辖区", "District"),
                                                  "county": ("县", "County"),
                                                  "county_city": ("县级市", "County-level city")}),
         F("population", "int", "常住人口", "Resident population", **COUNT),
         F("population_year", "int", "人口年份", "Population year", minimum=1900, maximum=2100), *COMMON),
        Style("#555555", fill=None, weight=1.5), popup=("name", "adcode", "population"),
    ),
    LayerSpec(
        "chemical_parks", models.ChemicalPark, "化工园区", "Chemical parks", "hazchem", "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True),
         F("park_level", "str", "园区级别", "Park level", codes={
             "national": ("国家级", "National"), "provincial": ("省级", "Provincial"),
             "municipal": ("市级", "Municipal")}),
         F("status", "str", "状态", "Status", codes={
             "operating": ("运营", "Operating"), "construction": ("在建", "Under construction"),
             "planned": ("规划", "Planned")}),
         RISK, ADCODE, F("main_industry", "str", "主导产业", "Main industry"), *COMMON),
        Style("#8e44ad", fill="#8e44ad", by_field="risk_grade"), popup=("name", "park_level", "risk_grade"),
    ),
    LayerSpec(
        "enterprises", models.Enterprise, "危险化学品企业", "Hazardous-chemical enterprises", "hazchem",
        "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True),
         F("credit_code", "str", "统一社会信用代码", "Unified social credit code",
           pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$"),
         F("industry", "str", "行业", "Industry"),
         F("park_id", "int", "所属园区", "Chemical park id"),
         F("kind", "str", "企业类型", "Type", codes={
             "production": ("生产", "Production"), "storage": ("储存", "Storage"),
             "use": ("使用", "Use"), "operation": ("经营", "Trading")}),
         RISK, ADCODE, F("address", "str", "地址", "Address"), *COMMON),
        Style("#c0392b", fill="#c0392b", by_field="risk_grade"), roles=STAFF, minzoom=10,
        popup=("name", "kind", "industry", "risk_grade"),
    ),
    LayerSpec(
        "hazard_installations", models.HazardInstallation, "重大危险源", "Major hazard installations",
        "hazchem", "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True),
         F("enterprise_id", "int", "所属企业", "Enterprise id"),
         F("unit_type", "str", "单元类型", "Unit type", codes={
             "production": ("生产单元", "Production unit"), "storage": ("储存单元", "Storage unit")}),
         F("level", "int", "危险源等级", "Level (GB 18218)", codes=HAZARD_LEVELS), *COMMON),
        # (no level: S < 1 under GB 18218, or not graded yet; never in a level's colour)
        Style("#7f8c8d", fill="#95a5a6", by_field="level",
              blank=("无等级（未构成重大危险源或未分级）", "No level (not a major hazard, or not graded)")),
        roles=STAFF, minzoom=8,
        popup=("name", "unit_type", "level"),
    ),
    LayerSpec(
        "tailings_ponds", models.TailingsPond, "尾矿库", "Tailings ponds", "tailings", "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True),
         F("mine", "str", "所属矿山", "Mine"),
         F("dam_height_m", "float", "坝高（米）", "Dam height (m)", **COUNT),
         F("capacity_10k_m3", "float", "总库容（万立方米）", "Capacity (10⁴ m³)", **COUNT),
         F("grade", "int", "等别", "Grade (等别)", codes={
             1: ("一等", "Grade 1", RISK_COLORS["red"]), 2: ("二等", "Grade 2", RISK_COLORS["orange"]),
             3: ("三等", "Grade 3", RISK_COLORS["yellow"]), 4: ("四等", "Grade 4", RISK_COLORS["blue"]),
             5: ("五等", "Grade 5", "#7f8c8d")}),
         F("status", "str", "状态", "Status", codes={
             "operating": ("运行", "Operating"), "inactive": ("停用", "Inactive"),
             "closed": ("闭库", "Closed"), "reclaimed": ("销库", "Decommissioned")}),
         ADCODE, F("headtop", "bool", "头顶库", "Head-top dam", codes={  # (the map's colours: the flag a planner looks for)
             True: ("头顶库", "Head-top pond", "#d81b60"), False: ("非头顶库", "Not head-top", "#a1887f")}),
         F("toe_lon", "float", "坝脚经度", "Dam toe longitude", minimum=-180, maximum=180),
         F("toe_lat", "float", "坝脚纬度", "Dam toe latitude", minimum=-90, maximum=90),
         F("downstream_people", "int", "下游影响区人口", "People downstream", **COUNT),
         F("downstream_receptors", "int", "下游防护目标数", "Receptors downstream", **COUNT),
         F("downstream_facilities", "int", "下游重要设施数", "Key facilities downstream", **COUNT), *COMMON),
        Style("#8d6e63", fill="#a1887f", by_field="headtop", blank=("未分析", "Not analysed")),
        popup=("name", "mine", "grade", "headtop"),
    ),
    LayerSpec(
        "accidents", models.Accident, "道路交通事故", "Road accidents", "transport", "Point",
        (F("occurred_at", "datetime", "发生时间", "Time", required=True),
         F("kind", "str", "事故类型", "Type", codes={
             "collision": ("碰撞", "Collision"), "rollover": ("侧翻", "Rollover"),
             "pedestrian": ("碰撞行人", "Pedestrian"), "fire": ("起火", "Fire"),
             "leak": ("泄漏", "Leak"), "other": ("其他", "Other")}),
         F("deaths", "int", "死亡人数", "Deaths", **COUNT), F("injuries", "int", "受伤人数", "Injuries", **COUNT),
         F("vehicles", "int", "车辆数", "Vehicles", **COUNT), F("hazmat", "bool", "涉危化品", "Hazmat involved"),
         NAME, *COMMON),
        Style("#d35400", radius=3), cluster_below_zoom=13, default_visible=False,
        popup=("occurred_at", "kind", "deaths", "injuries", "hazmat"),
    ),
    LayerSpec(
        "roads", models.Road, "道路", "Roads", "transport", "LineString",
        (NAME, F("ref", "str", "编号", "Ref"),
         F("road_class", "str", "道路等级", "Class", required=True,
           codes={k: (zh, en, color) for k, (zh, en, color, _speed) in ROAD_CLASSES.items()}),
         F("speed_kmh", "float", "设计速度（km/h）", "Speed (km/h)", **COUNT), F("oneway", "bool", "单行", "One-way"),
         F("bridge", "bool", "桥梁", "Bridge"), F("tunnel", "bool", "隧道", "Tunnel"),
         F("layer", "int", "层", "Layer"),  # (no minimum: -1 and below are under ground, as in OSM)
         F("length_m", "float", "长度（米）", "Length (m)", **COUNT),
         F("osm_id", "int", "OSM 编号", "OSM id"), *COMMON),
        Style("#7f8c8d", weight=2, by_field="road_class"), default_visible=False,
        popup=("name", "ref", "road_class", "speed_kmh"), search_whole=True,
    ),
    LayerSpec(
        "restricted_structures", models.RestrictedStructure, "限行桥梁隧道", "Restricted bridges and tunnels",
        "transport", "LineString",
        (F("name", "str", "名称", "Name", required=True),
         F("kind", "str", "类型", "Kind", required=True, codes={
             "bridge": ("桥梁", "Bridge"), "tunnel": ("隧道", "Tunnel")}),
         F("structure_class", "str", "分类", "Class",
           codes={k: (c.zh, c.en, c.color) for k, c in STRUCTURE_CLASSES.items()}),
         F("length_m", "float", "长度（米）", "Length (m)", **COUNT),
         F("adr_category", "str", "ADR 隧道类别", "ADR tunnel category",
           codes={c: (c, c) for c in "ABCDE"}),
         F("road_ref", "str", "所在道路", "Road ref"), *COMMON),
        Style("#6c3483", weight=5, by_field="structure_class"), popup=("name", "structure_class", "length_m"),
    ),
    LayerSpec(
        "water_source_zones", models.WaterSourceZone, "饮用水水源保护区", "Drinking-water source protection zones",
        "transport", "MultiPolygon",
        (F("name", "str", "名称", "Name", required=True),
         F("zone_level", "str", "保护区级别", "Zone level", required=True, codes={
             "grade1": ("一级保护区", "Grade-1 zone", "#0b5394"), "grade2": ("二级保护区", "Grade-2 zone", "#3d85c6"),
             "quasi": ("准保护区", "Quasi-protection zone", "#9fc5e8")}),
         F("water_body", "str", "水体", "Water body"), *COMMON),
        Style("#3d85c6", fill="#9fc5e8", by_field="zone_level"), popup=("name", "zone_level", "water_body"),
    ),
    LayerSpec(
        "hazmat_routes", models.HazmatRoute, "危化品运输路线", "Hazardous-cargo routes", "transport", "LineString",
        (F("name", "str", "名称", "Name", required=True), F("carrier", "str", "承运单位", "Carrier"),
         F("cargo_un", "str", "货物 UN 编号", "Cargo UN number", pattern=r"^\d{4}$"),
         F("cargo_class", "str", "危险货物类别", "Cargo hazard class"),
         F("quantity_t", "float", "运量（吨）", "Quantity (t)", **COUNT), F("schedule", "str", "班次", "Schedule"), *COMMON),
        Style("#c0392b", weight=3), roles=roadnet.ROUTE_DATA_ROLES,
        popup=("name", "carrier", "cargo_un", "schedule"),
    ),
    LayerSpec(
        "receptors", models.Receptor, "防护目标", "Protection targets", "hazchem", "Point",
        (F("name", "str", "名称", "Name", required=True),
         F("kind", "str", "类型", "Kind", required=True, codes={  # (the map colours receptors by kind: the class
             "school": ("学校", "School", "#2e86c1"),             # may be unset, derived by the hazchem analysis)
             "kindergarten": ("幼儿园", "Kindergarten", "#5dade2"),
             "hospital": ("医院", "Hospital", "#27ae60"), "care_home": ("养老院", "Care home", "#82e0aa"),
             "residential": ("居住区", "Residential area", "#7f8c8d"), "market": ("商场市场", "Market", "#d68910"),
             "office": ("办公场所", "Office", "#aab7b8"), "prison": ("监所", "Prison", "#6c3483")}),
         F("protection_class", "str", "防护目标类别 (GB 36894)", "Protection class (GB 36894)", codes=PROTECTION_CLASSES),
         F("people", "int", "人数", "People", minimum=0, maximum=MAX_PEOPLE), ADCODE, *COMMON),
        Style("#2e86c1", radius=4, by_field="kind"), minzoom=9,
        popup=("name", "kind", "protection_class", "people"),
    ),
    LayerSpec(
        "emergency_resources", models.EmergencyResource, "应急资源", "Emergency resources", "emergency", "Point",
        (F("name", "str", "名称", "Name", required=True),
         F("kind", "str", "类型", "Kind", required=True, codes={
             "fire_station": ("消防站", "Fire station", "#e60012"),
             "rescue_team": ("救援队伍", "Rescue team", "#ff8c00"),
             "hospital": ("医院", "Hospital", "#27ae60"),
             "depot": ("物资库", "Material depot", "#8e44ad"),
             "shelter": ("避难场所", "Shelter", "#1e64c8")}),
         # (by kind: fire engines, hospital beds, people a shelter or team holds, tonnes of material)
         F("capacity", "int", "能力（车/床/人/吨）", "Capacity (vehicles/beds/people/t)", **COUNT),
         F("contact_name", "str", "联系人", "Contact", roles={"emergency", "editor"}),
         F("contact_phone", "str", "联系电话", "Phone", roles={"emergency", "editor"}),
         F("address", "str", "地址", "Address"), *COMMON),
        Style("#27ae60", radius=5, by_field="kind"), roles=STAFF, popup=("name", "kind", "capacity"),
    ),
)

LAYERS: tuple[LayerSpec, ...] = BASE_LAYERS + hazchem.LAYERS + roadnet.LAYERS + emergency.LAYERS + monitoring.LAYERS
_BY_ID = {spec.id: spec for spec in LAYERS}
assert len(_BY_ID) == len(LAYERS), "duplicate layer id in the registry"
REGISTRY: Mapping[str, LayerSpec] = MappingProxyType(_BY_ID)


def get(layer_id: str) -> LayerSpec:
    """The spec for ``layer_id``; KeyError if unknown."""
    return REGISTRY[layer_id]


def visible_layers(role: str) -> list[LayerSpec]:
    return [spec for spec in LAYERS if spec.visible_to(role)]
