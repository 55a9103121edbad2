"""Tailings head-top zones and online monitoring (issue #8): models, code tables, registry entries.

Map layers (registry entries):

* ``tailings_downstream`` — derived by ``gis/tailings.py``: the downstream zone of every tailings
  pond (D8 flow path from the dam toe, buffered) with the receptors, roads, installations and people
  inside it.
* ``monitoring_sensors`` — monitoring points (staff only), each belonging to one asset (a tailings
  pond or a hazard installation) and coloured by its current point level.
* ``monitored_assets`` — one point per monitored asset coloured by its current alarm level
  (maintained by ``gis/monitoring.py`` on every level change; this is what the map colours).

Tables that are not map layers: readings (time series), sensor state (the alarm state machine),
thresholds (data, per sensor kind and per asset), alarms with their event history, daily counts.
"""

from __future__ import annotations

from datetime import date, datetime

from geoalchemy2 import Geometry
from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, ForeignKey, Integer, SmallInteger, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from layers.models import SRID, Base, DerivedMixin, LayerMixin
from layers.spec import RUN, SOURCE, STAFF, SYNTHETIC, F, LayerSpec, Style

# Alarm levels 0..4; 蓝黄橙红 as in GB 39496-2020 5.5.4 (blue lowest, red highest).
LEVELS = ("normal", "blue", "yellow", "orange", "red")
LEVEL_CODES = {
    "normal": ("正常", "Normal", "#2e7d32"),
    "blue": ("蓝色预警", "Blue", "#1e64c8"),
    "yellow": ("黄色预警", "Yellow", "#ffd700"),
    "orange": ("橙色预警", "Orange", "#ff8c00"),
    "red": ("红色预警", "Red", "#e60012"),
}
ASSET_LAYERS = {
    "tailings_ponds": ("尾矿库", "Tailings pond"),
    "hazard_installations": ("重大危险源", "Major hazard installation"),
}


class Kind:
    """A sensor kind: what it measures, for which asset layer, in which unit, and which way is worse."""

    def __init__(self, zh: str, en: str, asset_layer: str, unit: str, direction: str, units: dict[str, float],
                 possible: tuple[float, float]):
        self.zh, self.en, self.asset_layer, self.unit, self.direction = zh, en, asset_layer, unit, direction
        self.units = units  # accepted unit -> factor to ``unit``
        self.possible = possible  # (min, max) in ``unit`` a working sensor can report; beyond: a fault


_LEN_MM = {"mm": 1.0, "cm": 10.0, "m": 1000.0}
_LEN_M = {"m": 1.0, "cm": 0.01, "mm": 0.001}
# Monitoring items of GB 39496-2020 5.5.2 (tailings) and the usual on-line items of a major hazard
# installation (tank level, temperature, pressure, gas detectors). Direction "below": a smaller value
# is worse (a shallower phreatic line, less freeboard or a shorter dry beach). The possible ranges are
# generous physical bounds (absolute zero, the 24 h rainfall record, a gas detector's scale…), only to
# refuse a sensor fault such as 1e25 mm, never a real alarm value.
KINDS: dict[str, Kind] = {
    "displacement": Kind("坝体表面位移", "Dam surface displacement", "tailings_ponds", "mm", "above", _LEN_MM,
                         (-100_000, 100_000)),
    "phreatic_depth": Kind("浸润线埋深", "Phreatic line depth", "tailings_ponds", "m", "below", _LEN_M, (-100, 1000)),
    "pond_level": Kind("库水位", "Pond water level", "tailings_ponds", "m", "above", {"m": 1.0}, (-500, 9000)),
    "freeboard": Kind("安全超高", "Freeboard", "tailings_ponds", "m", "below", _LEN_M, (-1000, 1000)),
    "dry_beach": Kind("干滩长度", "Dry beach length", "tailings_ponds", "m", "below", _LEN_M, (-100, 100_000)),
    "rainfall": Kind("降水量（24小时）", "Rainfall (24 h)", "tailings_ponds", "mm", "above", {"mm": 1.0}, (-10, 3000)),
    "tank_level": Kind("储罐液位", "Tank level", "hazard_installations", "%", "above", {"%": 1.0}, (-50, 200)),
    "temperature": Kind("温度", "Temperature", "hazard_installations", "°C", "above",
                        {"°C": 1.0, "℃": 1.0, "degC": 1.0, "C": 1.0}, (-273.15, 5000)),
    "pressure": Kind("压力", "Pressure", "hazard_installations", "MPa", "above",
                     {"MPa": 1.0, "kPa": 0.001, "bar": 0.1}, (-0.2, 1000)),
    "gas_flammable": Kind("可燃气体浓度", "Flammable gas", "hazard_installations", "%LEL", "above", {"%LEL": 1.0},
                          (-100, 10_000)),
    "gas_toxic": Kind("有毒气体浓度", "Toxic gas", "hazard_installations", "ppm", "above", {"ppm": 1.0},
                      (-1000, 1_000_000)),
}
# Alarm items besides the sensor kinds: a sensor that stopped reporting, and the pond as a whole when
# the GB 39496 escalation raises it above every single item.
ITEMS = {k: (v.zh, v.en) for k, v in KINDS.items()} | {
    "offline": ("传感器离线", "Sensor offline"),
    "pond": ("尾矿库综合预警", "Pond (combined items)"),
}


class TailingsDownstream(DerivedMixin, Base):
    __tablename__ = "tailings_downstream"
    pond_id: Mapped[int] = mapped_column(ForeignKey("tailings_ponds.id", ondelete="CASCADE"), index=True,
                                         nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    headtop: Mapped[bool] = mapped_column(Boolean, nullable=False)
    grade: Mapped[int | None] = mapped_column(Integer)
    people: Mapped[int | None] = mapped_column(BigInteger)
    receptors: Mapped[int] = mapped_column(Integer, nullable=False)
    receptor_people: Mapped[int] = mapped_column(BigInteger, nullable=False)
    roads: Mapped[int] = mapped_column(Integer, nullable=False)
    major_roads: Mapped[int] = mapped_column(Integer, nullable=False)
    road_length_m: Mapped[float] = mapped_column(Float, nullable=False)
    installations: Mapped[int] = mapped_column(Integer, nullable=False)
    receptor_names: Mapped[str | None] = mapped_column(Text)
    road_names: Mapped[str | None] = mapped_column(Text)
    installation_names: Mapped[str | None] = mapped_column(Text)
    path_length_m: Mapped[float] = mapped_column(Float, nullable=False)
    corridor_m: Mapped[float] = mapped_column(Float, nullable=False)
    toe_source: Mapped[str] = mapped_column(Text, nullable=False)
    truncated: Mapped[bool] = mapped_column(Boolean, nullable=False)
    contents: Mapped[dict] = mapped_column(JSONB, nullable=False, server_default="{}")
    path: Mapped[str] = mapped_column(Geometry("LINESTRING", srid=SRID, spatial_index=True), nullable=False)
    geom: Mapped[str] = mapped_column(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=True), nullable=False)


class Sensor(LayerMixin, Base):
    __tablename__ = "monitoring_sensors"
    code: Mapped[str] = mapped_column(Text, unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    asset_layer: Mapped[str] = mapped_column(Text, nullable=False)
    asset_id: Mapped[int] = mapped_column(Integer, nullable=False)
    interval_s: Mapped[int] = mapped_column(Integer, nullable=False, server_default="600")
    alarm_level: Mapped[str] = mapped_column(Text, nullable=False, server_default="normal")
    geom: Mapped[str] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=True), nullable=False)


class Reading(Base):
    """One reading (sensor, time) -> value in the sensor kind's unit; primary key (sensor_id, time)."""

    __tablename__ = "monitoring_readings"
    sensor_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sensors.id", ondelete="CASCADE"), primary_key=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    value: Mapped[float] = mapped_column(Float, nullable=False)


class SensorState(Base):
    """The alarm state machine of one monitoring point (see gis/monitoring.py)."""

    __tablename__ = "monitoring_sensor_state"
    sensor_id: Mapped[int] = mapped_column(ForeignKey("monitoring_sensors.id", ondelete="CASCADE"), primary_key=True)
    last_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_value: Mapped[float | None] = mapped_column(Float)
    level: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    raw_level: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    up_n: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    up_min: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    down_n: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    down_max: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    anchors: Mapped[list] = mapped_column(JSONB, nullable=False, server_default="[]")  # rate buckets
    offline: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class Threshold(Base):
    """Warning thresholds for a sensor kind (asset_layer/asset_id NULL) or for one asset."""

    __tablename__ = "monitoring_thresholds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, nullable=False)
    asset_layer: Mapped[str | None] = mapped_column(Text)
    asset_id: Mapped[int | None] = mapped_column(Integer)
    blue: Mapped[float | None] = mapped_column(Float)
    yellow: Mapped[float | None] = mapped_column(Float)
    orange: Mapped[float | None] = mapped_column(Float)
    red: Mapped[float | None] = mapped_column(Float)
    hysteresis: Mapped[float] = mapped_column(Float, nullable=False, server_default="0")
    rate_blue: Mapped[float | None] = mapped_column(Float)
    rate_yellow: Mapped[float | None] = mapped_column(Float)
    rate_orange: Mapped[float | None] = mapped_column(Float)
    rate_red: Mapped[float | None] = mapped_column(Float)
    rate_window_h: Mapped[float] = mapped_column(Float, nullable=False, server_default="24")
    debounce: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="2")
    source: Mapped[str | None] = mapped_column(Text)
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Alarm(Base):
    """One alarm per (asset, item) while open: it escalates and de-escalates instead of multiplying."""

    __tablename__ = "monitoring_alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_layer: Mapped[str] = mapped_column(Text, nullable=False)
    asset_id: Mapped[int] = mapped_column(Integer, nullable=False)
    item: Mapped[str] = mapped_column(Text, nullable=False)
    level: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    max_level: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    status: Mapped[str] = mapped_column(Text, nullable=False, server_default="open")
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sensor_code: Mapped[str | None] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    acknowledged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")


class AlarmEvent(Base):
    """History of an alarm: open, escalate, deescalate, close, ack."""

    __tablename__ = "monitoring_alarm_events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("monitoring_alarms.id", ondelete="CASCADE"), index=True,
                                          nullable=False)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    event: Mapped[str] = mapped_column(Text, nullable=False)
    level: Mapped[int] = mapped_column(SmallInteger, nullable=False)
    sensor_code: Mapped[str | None] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    user_name: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)


class MonitoredAsset(Base):
    __tablename__ = "monitored_assets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_layer: Mapped[str] = mapped_column(Text, nullable=False)
    asset_id: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str | None] = mapped_column(Text)
    alarm_level: Mapped[str] = mapped_column(Text, nullable=False, server_default="normal")
    open_alarms: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    offline_sensors: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    sensors: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    level_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    synthetic: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default="false")
    geom: Mapped[str] = mapped_column(Geometry("POINT", srid=SRID, spatial_index=True), nullable=False)


class MonitoringDaily(Base):
    """Per asset and day (Asia/Shanghai): readings, raw threshold crossings, alarms opened/escalated."""

    __tablename__ = "monitoring_daily"
    asset_layer: Mapped[str] = mapped_column(Text, primary_key=True)
    asset_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    readings: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    crossings: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    opened: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    escalated: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    red: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")


_ASSET_LAYER = F("asset_layer", "str", "所属图层", "Asset layer", required=True, codes=ASSET_LAYERS)
_LEVEL = F("alarm_level", "str", "预警等级", "Alarm level", codes=LEVEL_CODES)
_KIND = F("kind", "str", "监测类型", "Kind", required=True,
          codes={k: (v.zh, v.en) for k, v in KINDS.items()})
_COUNTS = (
    F("receptors", "int", "防护目标数", "Receptors"),
    F("receptor_people", "int", "防护目标人数", "People at receptors"),
    F("roads", "int", "道路数", "Roads"),
    F("major_roads", "int", "干线道路数", "Major roads"),
    F("installations", "int", "重大危险源数", "Hazard installations"),
)

LAYERS: tuple[LayerSpec, ...] = (
    LayerSpec(
        "tailings_downstream", TailingsDownstream, "尾矿库下游影响区（头顶库分析）",
        "Tailings downstream zones (head-top analysis)", "tailings", "MultiPolygon",
        (F("name", "str", "尾矿库", "Tailings pond"), F("pond_id", "int", "尾矿库编号", "Pond id"),
         F("headtop", "bool", "头顶库", "Head-top pond"),
         F("grade", "int", "等别", "Grade (等别)", codes={
             1: ("一等", "Grade 1", "#e60012"), 2: ("二等", "Grade 2", "#ff8c00"),
             3: ("三等", "Grade 3", "#ffd700"), 4: ("四等", "Grade 4", "#1e64c8"),
             5: ("五等", "Grade 5", "#7f8c8d")}),
         F("people", "int", "影响区人口（估算）", "People in zone (estimate)"), *_COUNTS,
         F("road_length_m", "float", "区内道路长度（米）", "Road length in zone (m)"),
         F("receptor_names", "str", "防护目标", "Receptor names"),
         F("road_names", "str", "道路", "Road names"),
         F("installation_names", "str", "重大危险源", "Installation names", roles=STAFF),
         F("path_length_m", "float", "流经路径长度（米）", "Flow path length (m)"),
         F("corridor_m", "float", "路径两侧宽度（米）", "Corridor half-width (m)"),
         F("toe_source", "str", "坝脚位置来源", "Dam toe from", codes={
             "toe": ("坝脚坐标", "Dam toe coordinates"),
             "lowest_boundary": ("库区边界最低点", "Lowest DEM point on the pond boundary")}),
         F("truncated", "bool", "路径在DEM边缘截断", "Path cut at the DEM edge"), *RUN, SYNTHETIC),
        Style("#6d4c41", fill="#bcaaa4", weight=1.5), derived=True,
        popup=("name", "headtop", "grade", "people", "receptors", "major_roads", "installations"),
    ),
    LayerSpec(
        "monitoring_sensors", Sensor, "在线监测点", "Monitoring sensors", "emergency", "Point",
        (F("code", "str", "测点编号", "Sensor code", required=True, pattern=r"^[A-Za-z0-9_.:\-]{1,64}$"),
         F("name", "str", "名称", "Name"), _KIND, _ASSET_LAYER,
         F("asset_id", "int", "所属对象编号", "Asset id", required=True),
         F("interval_s", "int", "采样间隔（秒）", "Sampling interval (s)", minimum=1), _LEVEL, SYNTHETIC, SOURCE),
        Style("#455a64", radius=4, by_field="alarm_level"), roles=STAFF, minzoom=11, default_visible=False,
        popup=("code", "kind", "alarm_level"),
    ),
    LayerSpec(
        "monitored_assets", MonitoredAsset, "监测预警（当前等级）", "Monitoring alarms (current level)",
        "emergency", "Point",
        (F("name", "str", "名称", "Name"), _ASSET_LAYER, F("asset_id", "int", "对象编号", "Asset id"), _LEVEL,
         F("open_alarms", "int", "未关闭预警", "Open alarms"),
         F("offline_sensors", "int", "离线测点", "Offline sensors"), F("sensors", "int", "测点数", "Sensors"),
         F("level_since", "datetime", "等级起始时间", "Level since"), SYNTHETIC),
        Style("#2e7d32", radius=8, by_field="alarm_level"), roles=STAFF,
        popup=("name", "asset_layer", "alarm_level", "open_alarms", "offline_sensors"),
    ),
)
