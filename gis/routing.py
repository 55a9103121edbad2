"""Hazmat route checking and compliant route planning on the road graph.

Rules are data (table ``route_rules``, edited through ``/routes/rules``; defaults with their sources in
``gis/data/route_rules.csv``). A rule bans (or warns) cargo classes from

* restricted structures, by structure class (特大桥, 长/特长隧道 … from JTG length thresholds when the
  record has no class) and/or ADR tunnel category (1.9.5.2.2, A–E);
* drinking-water source protection zones, by zone level;
* roads of a class (e.g. expressways) — usually with a daily time window;

optionally only above a quantity, only in a daily time window (may wrap midnight) and on given ISO
weekdays. Cargo is named by UN number (``gis/data/un_classes.csv``) or hazard class; a rule listing
class ``2`` applies to 2.1, 2.2 and 2.3, ``*`` to all dangerous goods, and subsidiary risks count.

:func:`check_route` finds where a route runs along a structure or through a zone, estimates when it
gets there, and returns each conflict with its distance from the start and a verdict.
:func:`plan_route` removes the banned edges and finds the fastest compliant route, next to the
unrestricted one; time-window bans met on the way are added and the route re-planned.

Both work on data held in process memory, so a plan costs one database query (the versions of the
graph, rules, structures and zones): the graph built by pgRouting (:mod:`gis.roadgraph`), the rules,
and the structures and zones with their metric geometries (matched with shapely/GEOS and pyproj, the
same operations the former PostGIS query made), each reloaded when its ``layer_versions`` row changes.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
import re
import weakref
from bisect import bisect_left
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from functools import cache, lru_cache
from itertools import chain
from operator import itemgetter
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import shapely
from numba import njit
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from gis import roadgraph
from gis.roadnet import GraphSettings
from gis.tmerc import project
from layers.db import db_key
from layers.derived import layer_versions
from layers.settings import LOCAL_TZ

DATA = Path(__file__).with_name("data")
HAZARD_CLASS = re.compile(r"^(1(\.[1-6][A-L]?)?|2(\.[1-3])?|3|4(\.[1-3])?|5(\.[12])?|6(\.[12])?|7|8|9)$")
TARGETS = ("structure", "water_zone", "road")
VERDICT_ORDER = {"forbidden": 2, "warning": 1}
VERDICT_TEXT = {"forbidden": ("禁止通行", "forbidden"), "warning": ("注意", "warning"), "allowed": ("允许通行", "allowed")}
CARGO_HELP = ('name the cargo as {"un_number": "1017"} (UN number, see GET /routes/cargo) or '
              '{"hazard_class": "2.3"} (UN/GB 6944 class or division: 1.1–1.6, 2.1–2.3, 3, 4.1–4.3, 5.1, 5.2, '
              '6.1, 6.2, 7, 8, 9), optionally with "quantity_t"')
CARGO_HELP_ZH = '货物以联合国编号（UN 编号，见 GET /routes/cargo）或危险货物类别/项别（GB 6944）给出，可附吨数 quantity_t'
# Class of a structure ``s``: its own, else by kind and length, JTG D60-2015 (bridges) and JTG 3370.1-2018
# (tunnels) as tabled in layers.spec.STRUCTURE_CLASSES, which OSM and demo imports classify by too.
from layers.spec import structure_class_sql  # noqa: E402  (kept with the one definition that uses it)
STRUCTURE_CLASS_SQL = structure_class_sql("s")


@dataclass(frozen=True)
class RouteSettings:
    """Defaults of checking and planning (docs/road-safety.md)."""

    match_tolerance_m: float = 20.0   # a route within this of a structure line runs over it ...
    match_share: float = 0.5          # ... if along it for this share of the shorter of the two
    check_speed_kmh: float = 60.0     # average speed for arrival times on a drawn/uploaded route
    max_snap_m: float = 2000.0        # origin/destination farther than this from the road graph: refused
    max_vertices: int = 50000
    replans: int = 4                  # re-plans for time-window bans met on the way


DEFAULT_SETTINGS = RouteSettings()


# ---------------------------------------------------------------- cargo


@dataclass(frozen=True)
class Cargo:
    hazard_class: str
    classes: tuple[str, ...]  # primary class and subsidiary risks
    un_number: str | None = None
    name_zh: str | None = None
    name_en: str | None = None
    quantity_t: float | None = None

    @property
    def label(self) -> str:
        name = f"UN{self.un_number} {self.name_zh}" if self.un_number else "危险货物"
        return f"{name} ({self.hazard_class})"

    def as_dict(self) -> dict:
        return {"un_number": self.un_number, "name_zh": self.name_zh, "name_en": self.name_en,
                "hazard_class": self.hazard_class, "classes": list(self.classes), "quantity_t": self.quantity_t}


@cache
def un_table() -> dict[str, dict]:
    """UN number -> {name_zh, name_en, hazard_class, subsidiary (tuple), source}."""
    with open(DATA / "un_classes.csv", encoding="utf-8") as fh:
        return {r["un_number"]: {**r, "subsidiary": tuple(x for x in r["subsidiary"].split(";") if x)}
                for r in csv.DictReader(fh)}


def _division(hazard_class: str) -> str:
    return re.sub(r"[A-L]$", "", hazard_class)  # 1.1D -> 1.1 (compatibility group)


def resolve_cargo(spec: dict | None) -> Cargo:
    """Cargo from ``{"un_number": ...}`` or ``{"hazard_class": ...}`` (+ optional ``quantity_t``).

    Raises
    ------
    AnalysisError
        Unknown UN number or class, or a negative quantity; the message says how to name cargo.
    """
    if not isinstance(spec, dict):
        raise AnalysisError(f"cargo missing: {CARGO_HELP}", zh=f"未给出货物：{CARGO_HELP_ZH}")
    qty = spec.get("quantity_t")
    if isinstance(qty, bool):  # (JSON true would read as 1 t)
        raise AnalysisError(f"cargo quantity_t must be a number of tonnes, got {qty!r}", zh=f"货物吨数应为数字，而非 {qty!r}")
    if qty is not None:
        try:
            qty = float(qty)
        except (TypeError, ValueError):
            raise AnalysisError(f"cargo quantity_t must be a number of tonnes, got {qty!r}",
                                zh=f"货物吨数应为数字，而非 {qty!r}") from None
        if not math.isfinite(qty) or qty < 0:
            raise AnalysisError(f"cargo quantity_t must be ≥ 0 tonnes, got {qty}", zh=f"货物吨数应 ≥ 0，而非 {qty}")
    un, cls = (spec.get(k) for k in ("un_number", "hazard_class"))
    un, cls = ("" if v is None else str(v).strip() for v in (un, cls))
    un = un.upper().removeprefix("UN").strip()
    if un:
        row = un_table().get(un.zfill(4))
        if row is None:
            raise AnalysisError(f"unknown UN number {un!r}: {CARGO_HELP}", zh=f"未知的 UN 编号 {un!r}；{CARGO_HELP_ZH}")
        if cls and _division(cls) != row["hazard_class"]:
            raise AnalysisError(f"UN{row['un_number']} is class {row['hazard_class']}, not {cls}",
                                zh=f"UN{row['un_number']} 属第 {row['hazard_class']} 类/项，不是 {cls}")
        return Cargo(row["hazard_class"], (row["hazard_class"], *row["subsidiary"]), row["un_number"],
                     row["name_zh"], row["name_en"], qty)
    if cls:
        if not HAZARD_CLASS.match(cls):
            raise AnalysisError(f"unknown hazard class {cls!r}: {CARGO_HELP}", zh=f"未知的危险货物类别 {cls!r}；{CARGO_HELP_ZH}")
        return Cargo(_division(cls), (_division(cls),), quantity_t=qty)
    raise AnalysisError(f"cargo has neither un_number nor hazard_class: {CARGO_HELP}",
                        zh=f"货物既无 UN 编号也无危险货物类别；{CARGO_HELP_ZH}")


def class_matches(rule_class: str, cargo_class: str) -> bool:
    """``*`` matches every class; ``2`` matches 2.1–2.3; ``2.3`` matches only 2.3."""
    return rule_class == "*" or cargo_class == rule_class or cargo_class.startswith(rule_class + ".")


# ---------------------------------------------------------------- rules

RULE_FIELDS = ("name_zh", "name_en", "cargo_classes", "target", "structure_classes", "adr_categories", "zone_levels",
               "road_classes", "min_quantity_t", "ban_start", "ban_end", "weekdays", "verdict", "active", "source")
_LISTS = ("cargo_classes", "structure_classes", "adr_categories", "zone_levels", "road_classes")


def default_rules() -> list[dict]:
    """The shipped default rules (``gis/data/route_rules.csv``), validated."""
    with open(DATA / "route_rules.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        r = {k: (v if v != "" else None) for k, v in r.items()}
        for k in (*_LISTS, "weekdays"):
            r[k] = r[k].split(";") if r[k] else None
        # (the file's text as the JSON an editor would send: numbers as numbers)
        r["weekdays"] = r["weekdays"] and [int(d) for d in r["weekdays"]]
        r["min_quantity_t"] = r["min_quantity_t"] and float(r["min_quantity_t"])
        out.append(validate_rule(r))
    return out


def _time(value, name: str) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    try:
        t = time.fromisoformat(str(value))
    except ValueError:
        raise AnalysisError(f"rule {name} must be a time of day HH:MM, got {value!r}",
                            zh=f"规则 {name} 应为一天中的时刻 HH:MM，而非 {value!r}") from None
    if t.tzinfo is not None:  # (the column holds local times: an offset would be dropped)
        raise AnalysisError(f"rule {name} is a local time of day (Beijing time) HH:MM without an offset, got {value!r}",
                            zh=f"规则 {name} 为北京时间 HH:MM，不带时区偏移，而非 {value!r}")
    return t


def _utf8(value: str) -> bool:
    """Whether text can be stored (JSON may carry a lone UTF-16 surrogate, which UTF-8 cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_rule(payload: dict) -> dict:
    """Check a rule given by an editor; returns the row to store. Raises AnalysisError (400)."""
    if not isinstance(payload, dict):
        raise AnalysisError("a rule is a JSON object")
    unknown = set(payload) - set(RULE_FIELDS) - {"id", "updated_at"}
    if unknown:
        raise AnalysisError(f"unknown rule fields {sorted(unknown)}; fields: {', '.join(RULE_FIELDS)}")
    r = {k: payload.get(k) for k in RULE_FIELDS}
    for k in ("name_zh", "name_en"):
        if not isinstance(r[k], str) or not r[k].strip():
            raise AnalysisError(f"rule {k} is required (Chinese and English names)", zh=f"规则须有 {k}（中英文名称）")
    for k, most in (("name_zh", 200), ("name_en", 200), ("source", 2000)):
        if r[k] is not None and (not isinstance(r[k], str) or len(r[k]) > most or not _utf8(r[k])):
            raise AnalysisError(f"rule {k} must be text of at most {most} characters (valid Unicode)",
                                zh=f"规则 {k} 应为最多 {most} 个字符的有效文本")
    if r["target"] not in TARGETS:
        raise AnalysisError(f"rule target must be one of {', '.join(TARGETS)}")
    for k in _LISTS:
        v = r[k]
        if v is not None and (not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v)):
            raise AnalysisError(f"rule {k} must be a non-empty list of codes (left out: every one)",
                                zh=f"规则 {k} 应为非空代码列表（不给出则为全部）")
        r[k] = v
    if not r["cargo_classes"]:
        raise AnalysisError('rule cargo_classes is required (e.g. ["2.3"], ["2"], ["*"] for all dangerous goods)',
                            zh='规则须有货物类别 cargo_classes（如 ["2.3"]、["2"]，["*"] 为全部危险货物）')
    for c in r["cargo_classes"]:
        if c != "*" and not HAZARD_CLASS.match(c):
            raise AnalysisError(f"rule cargo class {c!r} is not a hazard class (or * for all)",
                                zh=f"规则货物类别 {c!r} 不是危险货物类别（或 * 表示全部）")
    from layers.registry import get

    allowed = {"structure_classes": set(get("restricted_structures").field("structure_class").codes),
               "adr_categories": set("ABCDE"), "zone_levels": set(get("water_source_zones").field("zone_level").codes),
               "road_classes": set(get("roads").field("road_class").codes)}
    for k, codes in allowed.items():
        bad = sorted(set(r[k] or ()) - codes)
        if bad:
            raise AnalysisError(f"rule {k} has unknown codes {bad}; allowed: {', '.join(sorted(codes))}",
                                zh=f"规则 {k} 含未知代码 {bad}；可用：{'、'.join(sorted(codes))}")
    own = {"structure": ("structure_classes", "adr_categories"), "water_zone": ("zone_levels",),
           "road": ("road_classes",)}[r["target"]]
    stray = [k for k in ("structure_classes", "adr_categories", "zone_levels", "road_classes")
             if r[k] and k not in own]
    if stray:
        raise AnalysisError(f"a {r['target']} rule cannot filter by {', '.join(stray)}",
                            zh=f"{r['target']} 规则不能按 {'、'.join(stray)} 筛选")
    q = r["min_quantity_t"]
    if q is not None:  # (JSON numbers only: a string "nan" or "inf" would pass float())
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not math.isfinite(q) or q < 0:
            raise AnalysisError(f"rule min_quantity_t must be a number of tonnes, 0 or more, got {q!r}",
                                zh=f"规则最小吨数 min_quantity_t 应为 ≥ 0 的数字，而非 {q!r}")
        r["min_quantity_t"] = float(q)
    r["ban_start"], r["ban_end"] = _time(r["ban_start"], "ban_start"), _time(r["ban_end"], "ban_end")
    days = r["weekdays"]
    if days is not None:
        if not isinstance(days, list) or not days or \
                not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7 for d in days):
            raise AnalysisError(f"rule weekdays must be a list of ISO weekday numbers 1 (Mon) … 7 (Sun), got {days!r}",
                                zh=f"规则星期应为 1（周一）… 7（周日）的列表，而非 {days!r}")
        r["weekdays"] = sorted(set(days))
    r["verdict"] = "forbidden" if r["verdict"] is None else r["verdict"]
    if not isinstance(r["verdict"], str) or r["verdict"] not in VERDICT_ORDER:
        raise AnalysisError("rule verdict must be forbidden or warning")
    if r["active"] is None:
        r["active"] = True
    elif not isinstance(r["active"], bool):
        raise AnalysisError(f"rule active must be true or false, got {r['active']!r}")
    return r


def _insert_rules(conn: Connection, rows: list[dict]) -> list[int]:
    return [conn.execute(text(f"""
        INSERT INTO route_rules ({', '.join(RULE_FIELDS)})
        VALUES ({', '.join(':' + k for k in RULE_FIELDS)}) RETURNING id"""), r).scalar_one() for r in rows]


def reset_rules(conn: Connection) -> int:
    """Replace every rule with the shipped defaults; returns how many."""
    conn.execute(text("DELETE FROM route_rules"))
    return len(_insert_rules(conn, default_rules()))


def list_rules(conn: Connection, active_only: bool = False) -> list[dict]:
    """All rules (the defaults are loaded the first time, while the table has never been written)."""
    sql = text(f"SELECT * FROM route_rules {'WHERE active' if active_only else ''} ORDER BY id")
    rows = conn.execute(sql).mappings().all()
    if not rows and layer_versions(conn, ["route_rules"]).get("route_rules", 0) == 0 and not conn.execute(
            text("SELECT EXISTS (SELECT 1 FROM route_rules)")).scalar_one():
        reset_rules(conn)
        rows = conn.execute(sql).mappings().all()
    return [dict(r) for r in rows]


def create_rule(conn: Connection, payload: dict) -> dict:
    rid = _insert_rules(conn, [validate_rule(payload)])[0]
    return get_rule(conn, rid)


def get_rule(conn: Connection, rule_id: int) -> dict | None:
    row = conn.execute(text("SELECT * FROM route_rules WHERE id = :i"), {"i": int(rule_id)}).mappings().first()
    return dict(row) if row else None


def update_rule(conn: Connection, rule_id: int, payload: dict) -> dict | None:
    r = validate_rule(payload)
    done = conn.execute(text(f"""UPDATE route_rules SET {', '.join(f'{k} = :{k}' for k in RULE_FIELDS)},
                                 updated_at = now() WHERE id = :id"""), {**r, "id": int(rule_id)}).rowcount
    return get_rule(conn, rule_id) if done else None


def delete_rule(conn: Connection, rule_id: int) -> bool:
    return bool(conn.execute(text("DELETE FROM route_rules WHERE id = :i"), {"i": int(rule_id)}).rowcount)


@lru_cache(maxsize=4096)
def _classes_match(rule_classes: tuple[str, ...], cargo_classes: tuple[str, ...]) -> bool:
    return any(class_matches(rc, c) for rc in rule_classes for c in cargo_classes)


def rule_applies(rule: dict, cargo: Cargo) -> bool:
    """Whether ``rule`` concerns ``cargo`` (class or a subsidiary risk; quantity when both are known)."""
    if not _classes_match(tuple(rule["cargo_classes"]), cargo.classes):
        return False
    return rule["min_quantity_t"] is None or cargo.quantity_t is None or cargo.quantity_t >= rule["min_quantity_t"]


def has_window(rule: dict) -> bool:
    return rule["ban_start"] is not None or rule["ban_end"] is not None or bool(rule["weekdays"])


def in_force(rule: dict, when: datetime | None) -> bool:
    """Whether the rule's time window covers ``when`` (local time, Asia/Shanghai). ``None``: unknown time,
    every rule counts (conservative)."""
    if when is None or not has_window(rule):
        return True
    t = when.astimezone(LOCAL_TZ)
    if rule["weekdays"] and t.isoweekday() not in rule["weekdays"]:
        return False
    start, end, now = rule["ban_start"] or time(0), rule["ban_end"], t.time()
    if end is None or end == start:
        return now >= start if end is None else True
    return start <= now < end if start < end else (now >= start or now < end)


def _window_hits(rule: dict, start: datetime, end: datetime) -> bool:
    """Whether the rule is in force at some moment in [start, end]: its window on each local day of the
    trip whose weekday it names (as :func:`in_force` reads it: a window past midnight covers both ends of
    the day) against the trip."""
    if not has_window(rule):
        return True
    s, e = start.astimezone(LOCAL_TZ), end.astimezone(LOCAL_TZ)
    ban_start, ban_end = rule["ban_start"] or time(0), rule["ban_end"]
    if ban_end is None or ban_end == ban_start:
        spans = [(ban_start if ban_end is None else time(0), None)]  # (None: to midnight)
    elif ban_start < ban_end:
        spans = [(ban_start, ban_end)]
    else:
        spans = [(time(0), ban_end), (ban_start, None)]
    day = s.date()
    while day <= e.date():
        if not rule["weekdays"] or day.isoweekday() in rule["weekdays"]:
            for a, b in spans:
                lo = datetime.combine(day, a, LOCAL_TZ)
                hi = datetime.combine(day + timedelta(days=1) if b is None else day, b or time(0), LOCAL_TZ)
                if lo < hi and lo <= e and hi > s:
                    return True
        day += timedelta(days=1)
    return False


def parse_departure(value) -> datetime | None:
    """ISO 8601 time; a time without zone is local time (Asia/Shanghai). Raises AnalysisError."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        t = value
    else:
        try:
            t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise AnalysisError(f"departure must be an ISO 8601 time like 2026-03-01T08:30+08:00, got {value!r}",
                                zh=f"出发时间应为 ISO 8601 时间，如 2026-03-01T08:30+08:00，而非 {value!r}") from None
    if not DEPARTURE_YEARS[0] <= t.year <= DEPARTURE_YEARS[1]:  # (trip times and rule days stay within datetime's)
        raise AnalysisError(f"departure must be in the years {DEPARTURE_YEARS[0]}–{DEPARTURE_YEARS[1]}, got {value!r}",
                            zh=f"出发时间应在 {DEPARTURE_YEARS[0]}–{DEPARTURE_YEARS[1]} 年之间，而非 {value!r}")
    return t if t.tzinfo else t.replace(tzinfo=LOCAL_TZ)


DEPARTURE_YEARS = (1970, 2200)


# ---------------------------------------------------------------- route input


def _check_positions(coords, max_vertices: int, area: tuple[float, float, float, float] | None) -> list[list[float]]:
    if not isinstance(coords, list) or len(coords) < 2:
        raise AnalysisError("a route needs at least two positions [lon, lat]", zh="路线至少需要两个点 [经度, 纬度]")
    if len(coords) > max_vertices:
        raise AnalysisError(f"a route may have at most {max_vertices} positions, got {len(coords)}",
                            zh=f"路线最多 {max_vertices} 个点，收到 {len(coords)} 个")
    xy = None
    try:  # the usual case in one step: numbers, lon/lat in range, two distinct
        xy = np.asarray(coords, dtype=float)
        xy = xy[:, :2] if xy.ndim == 2 else xy  # ([lon, lat, z]: z left out)
        # (JSON true/false become 1/0 here: any 0 or 1 is looked at one by one)
        if not (xy.ndim == 2 and xy.shape[1] == 2 and ((xy >= (-180, -90)) & (xy <= (180, 90))).all()
                and (xy != xy[0]).any() and not ((xy == 0) | (xy == 1)).any()):
            xy = None
    except (TypeError, ValueError, IndexError):
        pass
    if xy is None:
        xy = np.array(_positions_one_by_one(coords))
    if area is not None and not ((xy >= area[:2]) & (xy <= area[2:])).all(axis=1).any() \
            and not shapely.intersects(shapely.linestrings(xy), shapely.box(*area)):  # (no vertex in it: any line?)
        raise AnalysisError(f"the route lies outside the served area {list(area)} (lon/lat)",
                            zh=f"路线位于服务范围 {list(area)}（经纬度）之外")
    return xy.tolist()


def _positions_one_by_one(coords: list) -> list[list[float]]:
    """[lon, lat] of each position, else AnalysisError saying which one is wrong and how."""
    out = []
    for i, c in enumerate(coords):
        try:
            if isinstance(c, str) or any(isinstance(v, (str, bool)) for v in c[:2]):
                raise TypeError
            lon, lat = float(c[0]), float(c[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise AnalysisError(f"route position {i} is not [lon, lat]: {c!r}",
                                zh=f"路线第 {i} 个点不是 [经度, 纬度]：{c!r}") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise AnalysisError(f"route position {i} is not lon/lat in degrees (EPSG:4326): {c!r}",
                                zh=f"路线第 {i} 个点不是以度为单位的经纬度（EPSG:4326）：{c!r}")
        out.append([lon, lat])
    if len({tuple(c) for c in out}) < 2:
        raise AnalysisError("a route needs at least two distinct positions", zh="路线至少需要两个不同的点")
    return out


def route_geojson(value, max_vertices: int = 50000, area: tuple[float, float, float, float] | None = None) -> dict:
    """A GeoJSON LineString from a LineString, a Feature with one, or a FeatureCollection with one line;
    AnalysisError if it is none of these, or (``area`` given: lon/lat box) lies wholly outside ``area``."""
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        features = value.get("features")
        if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
            raise AnalysisError("a FeatureCollection's features must be a list of GeoJSON Features",
                                zh="FeatureCollection 的 features 应为 GeoJSON 要素列表")
        lines = [f for f in features if isinstance(f.get("geometry"), dict)
                 and f["geometry"].get("type") in ("LineString", "MultiLineString")]
        if len(lines) != 1:
            raise AnalysisError("a FeatureCollection route must hold exactly one LineString feature",
                                zh="作为路线的 FeatureCollection 应恰好包含一条线（LineString）")
        value = lines[0]
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if isinstance(value, dict) and value.get("type") == "MultiLineString":
        value = {"type": "LineString", "coordinates": _joined_parts(value.get("coordinates"))}
    if not isinstance(value, dict) or value.get("type") != "LineString":
        raise AnalysisError("route must be a GeoJSON LineString (lon/lat, EPSG:4326)",
                            zh="路线应为 GeoJSON LineString（经纬度，EPSG:4326）")
    return {"type": "LineString", "coordinates": _check_positions(value.get("coordinates"), max_vertices, area)}


def _joined_parts(parts) -> list:
    """The positions of a MultiLineString's parts as one line, when each part starts where the one before
    it ends (a GPS track split into segments, as GDAL and QGIS write a GPX track): not guessed otherwise."""
    if not isinstance(parts, list) or not parts or not all(isinstance(p, list) and p for p in parts):
        raise AnalysisError("a MultiLineString route needs a non-empty list of non-empty parts",
                            zh="MultiLineString 路线应由非空的线段组成")
    joined = list(parts[0])
    for i, part in enumerate(parts[1:], 1):
        if part[0] != joined[-1]:
            raise AnalysisError(f"a MultiLineString route must be one line: part {i} does not start where part "
                                f"{i - 1} ends ({part[0]} ≠ {joined[-1]}); send it as one LineString",
                                zh=f"MultiLineString 路线应首尾相接：第 {i} 段的起点不是第 {i - 1} 段的终点；"
                                   "请作为一条 LineString 发送")
        joined += part[1:]
    return joined


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))  # (UTF-32 LE starts as UTF-16 LE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?\bencoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")


def _xml_text(data: bytes) -> str:
    """An XML document's text, decoded by its byte-order mark, else its declared encoding (GBK, GB18030,
    Big5… which the XML parser does not take itself), else UTF-8. Decoded before anything looks at it, so
    a check for a DOCTYPE sees one in any encoding."""
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        declared = _XML_ENCODING.match(data)
        encoding = declared.group(1).decode() if declared else "utf-8"
    try:
        return data.decode(encoding)
    except LookupError:
        raise AnalysisError(f"GPX encoding {encoding!r} is not known; save the file as UTF-8",
                            zh=f"未知的 GPX 编码 {encoding!r}；请将文件另存为 UTF-8") from None
    except UnicodeDecodeError as exc:
        raise AnalysisError(f"GPX is not valid {encoding} text (byte {exc.start}); save the file as UTF-8",
                            zh=f"GPX 不是有效的 {encoding} 文本（第 {exc.start} 字节）；请将文件另存为 UTF-8") from None


def gpx_to_geojson(gpx: str | bytes, max_vertices: int = 50000,
                   area: tuple[float, float, float, float] | None = None) -> dict:
    """The track (trk/trkseg/trkpt, all segments joined) or else the route (rte/rtept) of a GPX document
    (``area``: as :func:`route_geojson`)."""
    if isinstance(gpx, bytes):
        gpx = _xml_text(gpx)
    if "<!DOCTYPE" in gpx:  # (anywhere: after a long comment too)
        raise AnalysisError("GPX with a DOCTYPE (entity declarations) is refused", zh="不接受含 DOCTYPE（实体声明）的 GPX")
    try:
        root = ElementTree.fromstring(gpx)
    except (ElementTree.ParseError, ValueError) as exc:
        raise AnalysisError(f"not a GPX (XML) document: {exc}", zh=f"不是 GPX（XML）文件：{exc}") from None
    if not root.tag.endswith("gpx"):
        raise AnalysisError("not a GPX document (root element is not <gpx>)", zh="不是 GPX 文件（根元素不是 <gpx>）")
    local = lambda el: el.tag.rsplit("}", 1)[-1]  # noqa: E731 - GPX 1.0 and 1.1 namespaces
    points = [el for el in root.iter() if local(el) == "trkpt"] or [el for el in root.iter() if local(el) == "rtept"]
    if not points:
        raise AnalysisError("the GPX holds no track points (trkpt) or route points (rtept)",
                            zh="GPX 中没有轨迹点（trkpt）或路线点（rtept）")
    coords = []
    for i, el in enumerate(points):
        try:
            coords.append([float(el.get("lon")), float(el.get("lat"))])
        except (TypeError, ValueError):
            raise AnalysisError(f"GPX point {i} has no numeric lon and lat: {ElementTree.tostring(el)[:200]!r}",
                                zh=f"GPX 第 {i} 个点没有数值经纬度") from None
    return {"type": "LineString", "coordinates": _check_positions(coords, max_vertices, area)}


# ---------------------------------------------------------------- check


_CHUNK = 16  # segments per box: of a route in :func:`_along_pieces`, of a zone's rings in :func:`_edge_chunks`


@dataclass
class _Targets:
    """Restricted structures and water-source zones held in memory for route checks, per version of the
    two layers: their metric geometries, bounding boxes and vertices (target t's are xy[ptr[t]:ptr[t + 1]])."""

    info: list[dict]        # target, id, name, class, adr, synthetic
    metric: np.ndarray
    zone: np.ndarray        # bool: a water-source zone (else a structure)
    index: dict = field(init=False)  # (target, id) -> position in info
    boxes: np.ndarray = field(init=False)
    xy: np.ndarray = field(init=False)
    ptr: np.ndarray = field(init=False)
    structures: np.ndarray = field(init=False)  # positions of the structures
    zones: np.ndarray = field(init=False)       # and of the zones
    edges: tuple = field(init=False)            # the zones' rings for _zone_spans: vertices, chunks, boxes, firsts

    def __post_init__(self):
        self.index = {(p["target"], p["id"]): i for i, p in enumerate(self.info)}
        self.structures, self.zones = np.flatnonzero(~self.zone), np.flatnonzero(self.zone)
        self.boxes = shapely.bounds(self.metric).reshape(-1, 4)
        self.xy, self.ptr = _vertices(self.metric)
        parts, zone = shapely.get_parts(self.metric[self.zones], return_index=True)
        rings, part = shapely.get_rings(parts, return_index=True)  # (exterior and holes)
        rxy, ptr = _vertices(rings)
        self.edges = (rxy, *_edge_chunks(rxy, ptr, self.zones[zone[part]], len(self.info)))


@njit(cache=True, nogil=True)
def _edge_chunks(xy, ptr, owner, targets):
    """The edges of rings (ring r: xy[ptr[r]:ptr[r + 1]], closed, of target owner[r], rings by target) in
    chunks of up to :data:`_CHUNK`: (first vertex, edges) and box of each chunk, and each target's first
    chunk (target t's are first[t]:first[t + 1])."""
    count = 0
    for r in range(len(ptr) - 1):
        count += (ptr[r + 1] - ptr[r] - 1 + _CHUNK - 1) // _CHUNK
    chunks, boxes, chunk_owner, c = np.empty((count, 2), np.int64), np.empty((count, 4)), np.empty(count, np.int64), 0
    for r in range(len(ptr) - 1):
        for s in range(ptr[r], ptr[r + 1] - 1, _CHUNK):
            e = min(s + _CHUNK, ptr[r + 1] - 1)  # edges s..e-1, vertices s..e
            chunks[c, 0], chunks[c, 1], chunk_owner[c] = s, e - s, owner[r]
            _box(xy, s, e, boxes[c])
            c += 1
    return chunks, boxes, np.searchsorted(chunk_owner, np.arange(targets + 1))


@njit(cache=True, nogil=True)
def _box(xy, s, e, out):
    """The box (min x, min y, max x, max y) of the vertices xy[s..e] into ``out``."""
    out[0], out[1], out[2], out[3] = xy[s, 0], xy[s, 1], xy[s, 0], xy[s, 1]
    for k in range(s + 1, e + 1):
        out[0], out[1] = min(out[0], xy[k, 0]), min(out[1], xy[k, 1])
        out[2], out[3] = max(out[2], xy[k, 0]), max(out[3], xy[k, 1])


def _vertices(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All vertices of the geometries, and where each geometry's start (and the last ends)."""
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    return xy, np.searchsorted(owner, np.arange(len(geoms) + 1))


def _targets(conn: Connection, versions: dict) -> _Targets:
    def load() -> _Targets:
        rows = conn.execute(text(f"""
            SELECT 'structure' AS target, s.id, s.name, {STRUCTURE_CLASS_SQL} AS class, s.adr_category AS adr,
                   s.synthetic, ST_AsBinary(s.geom) AS wkb FROM restricted_structures s
            UNION ALL
            SELECT 'water_zone', z.id, z.name, z.zone_level, NULL, z.synthetic, ST_AsBinary(z.geom)
            FROM water_source_zones z""")).mappings().all()
        wgs = shapely.from_wkb([r["wkb"] for r in rows]) if rows else np.array([], dtype=object)
        return _Targets([{k: r[k] for k in ("target", "id", "name", "class", "adr", "synthetic")} for r in rows],
                        shapely.transform(wgs, project), np.array([r["target"] == "water_zone" for r in rows], bool))
    key = (versions.get("restricted_structures"), versions.get("water_source_zones"))
    return _cached(conn, "targets", None if None in key else key, load)


@njit(cache=True, nogil=True)
def _band(px, py, dx, dy, ax, ay, bx, by, r):
    """The t in [0, 1] where p + t·d lies within ``r`` of the segment a–b, as (t0, t1) (t0 > t1: nowhere).
    The points within r of a segment form a capsule (a band along it and a disc at each end); a capsule is
    convex, so a segment meets it in one interval: from the lowest t of the three parts it meets to the
    highest."""
    ux, uy = bx - ax, by - ay
    length = math.hypot(ux, uy)
    ux, uy = (ux / length, uy / length) if length > 0 else (1.0, 0.0)
    qx, qy = px - ax, py - ay  # in the frame of a–b: x along it from a, y across it
    x0, y0, vx, vy = qx * ux + qy * uy, qy * ux - qx * uy, dx * ux + dy * uy, dy * ux - dx * uy
    lo, hi = -math.inf, math.inf  # the band: 0 <= x <= length, |y| <= r
    for v0, dv, vmin, vmax in ((x0, vx, 0.0, length), (y0, vy, -r, r)):
        if dv == 0:
            if v0 < vmin or v0 > vmax:
                lo, hi = math.inf, -math.inf
        else:
            t1, t2 = (vmin - v0) / dv, (vmax - v0) / dv
            lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
    if lo > hi:
        lo, hi = math.inf, -math.inf
    aa = vx * vx + vy * vy
    for cx in (0.0, length):  # the discs: |(x0 - cx, y0) + t·v| <= r
        wx = x0 - cx
        bb, cc = 2 * (wx * vx + y0 * vy), wx * wx + y0 * y0 - r * r
        if aa == 0:
            if cc <= 0:
                lo, hi = -math.inf, math.inf
            continue
        disc = bb * bb - 4 * aa * cc
        if disc >= 0:
            root = math.sqrt(disc)
            lo, hi = min(lo, (-bb - root) / (2 * aa)), max(hi, (-bb + root) / (2 * aa))
    return max(lo, 0.0), min(hi, 1.0)


@njit(cache=True, nogil=True)
def _locate(px, py, xy, first, last):
    """Metres along the polyline xy[first..last] to its point nearest p (the first, as GEOS's)."""
    best, along, walked = math.inf, 0.0, 0.0
    for k in range(first, last):
        ax, ay, dx, dy = xy[k, 0], xy[k, 1], xy[k + 1, 0] - xy[k, 0], xy[k + 1, 1] - xy[k, 1]
        l2 = dx * dx + dy * dy
        t = 0.0 if l2 == 0 else min(max(((px - ax) * dx + (py - ay) * dy) / l2, 0.0), 1.0)
        ex, ey = ax + t * dx - px, ay + t * dy - py
        seg = math.sqrt(l2)
        if ex * ex + ey * ey < best:
            best, along = ex * ex + ey * ey, walked + t * seg
        walked += seg
    return along


@njit(cache=True, nogil=True)
def _stretch(xy, cum, a, b):
    """The points of the polyline ``xy`` from ``a`` to ``b`` metres along it (``cum``: metres up to each
    vertex): its ends interpolated and the vertices in between, as ST_LineSubstring."""
    first, last = np.searchsorted(cum, a, "right"), np.searchsorted(cum, b, "left")
    pts = np.empty((max(last - first, 0) + 2, 2))
    pts[0] = _point_at(xy, cum, 0, a)
    pts[1:-1] = xy[first:last]
    pts[-1] = _point_at(xy, cum, 0, b)
    return pts


@njit(cache=True, nogil=True)
def _substring(xy, cum, a, b):
    """:func:`_stretch` to 7 decimals (as ST_AsGeoJSON), no point repeated."""
    pts = np.round(_stretch(xy, cum, a, b), 7)
    keep = 1
    for k in range(1, len(pts)):
        if pts[k, 0] != pts[keep - 1, 0] or pts[k, 1] != pts[keep - 1, 1]:
            pts[keep] = pts[k]
            keep += 1
    return pts[:keep]


@njit(cache=True, nogil=True)
def _point_at(xy, cum, first, d):
    """The point ``d`` metres along the polyline from xy[first] (``cum``: metres up to each vertex)."""
    k = min(max(np.searchsorted(cum, d, "right") - 1, 0), len(cum) - 2)
    seg = cum[k + 1] - cum[k]
    t = 0.0 if seg == 0 else min(max((d - cum[k]) / seg, 0.0), 1.0)
    return (xy[first + k, 0] + t * (xy[first + k + 1, 0] - xy[first + k, 0]),
            xy[first + k, 1] + t * (xy[first + k + 1, 1] - xy[first + k, 1]))


@njit(cache=True, nogil=True)
def _along_pieces(rxy, cum, lxy, lptr, lines, boxes, tol, share):
    """:func:`_runs_along` on arrays: the route's vertices ``rxy`` and metres up to each ``cum``; the
    lines' vertices ``lxy``, line l being lxy[lptr[l]:lptr[l + 1]], its box boxes[l]; ``lines`` the
    lines to test. The route's segments are scanned by boxes of :data:`_CHUNK` segments."""
    n = len(rxy) - 1
    length = cum[-1]
    chunks = (n + _CHUNK - 1) // _CHUNK
    cbox = np.empty((chunks, 4))  # the box of each chunk of segments
    for c in range(chunks):
        _box(rxy, c * _CHUNK, min((c + 1) * _CHUNK, n), cbox[c])
    count = 0  # every stretch of the route within tol of a segment: (line, metres from, metres to)
    line, d0, d1 = np.empty(16, np.int64), np.empty(16), np.empty(16)
    rx0, ry0, rx1, ry1 = cbox[:, 0].min(), cbox[:, 1].min(), cbox[:, 2].max(), cbox[:, 3].max()
    for l in lines:
        if boxes[l, 0] - tol > rx1 or boxes[l, 2] + tol < rx0 or boxes[l, 1] - tol > ry1 or boxes[l, 3] + tol < ry0:
            continue
        for k in range(lptr[l], lptr[l + 1] - 1):
            ax, ay, bx, by = lxy[k, 0], lxy[k, 1], lxy[k + 1, 0], lxy[k + 1, 1]
            x0, x1, y0, y1 = min(ax, bx) - tol, max(ax, bx) + tol, min(ay, by) - tol, max(ay, by) + tol
            for c in range(chunks):
                if cbox[c, 2] < x0 or cbox[c, 0] > x1 or cbox[c, 3] < y0 or cbox[c, 1] > y1:
                    continue
                for i in range(c * _CHUNK, min((c + 1) * _CHUNK, n)):
                    px, py, qx, qy = rxy[i, 0], rxy[i, 1], rxy[i + 1, 0], rxy[i + 1, 1]
                    if max(px, qx) < x0 or min(px, qx) > x1 or max(py, qy) < y0 or min(py, qy) > y1:
                        continue
                    t0, t1 = _band(px, py, qx - px, qy - py, ax, ay, bx, by, tol)
                    if t0 <= t1:
                        if count == len(line):  # (grown by doubling)
                            line, d0, d1 = (np.concatenate((line, line)), np.concatenate((d0, d0)),
                                            np.concatenate((d1, d1)))
                        seg = cum[i + 1] - cum[i]
                        line[count], d0[count], d1[count] = l, cum[i] + t0 * seg, cum[i] + t1 * seg
                        count += 1
    line, d0, d1 = line[:count], d0[:count], d1[:count]
    order = np.argsort(d0, kind="mergesort")
    order = order[np.argsort(line[order], kind="mergesort")]  # by line, then along the route
    owner, lo, hi = np.empty(count, np.int64), np.empty(count), np.empty(count)
    pieces, m = 0, 0
    while m < count:  # each line's stretches merged into connected pieces of the route
        l, p0, p1 = line[order[m]], d0[order[m]], d1[order[m]]
        m += 1
        while m < count and line[order[m]] == l and d0[order[m]] <= p1 + 1e-3:
            p1 = max(p1, d1[order[m]])
            m += 1
        # the piece's points (its ends and the route's vertices between) located along the line
        a, b = lptr[l], lptr[l + 1] - 1
        lcum = np.zeros(b - a + 1)
        for k in range(a, b):
            lcum[k - a + 1] = lcum[k - a] + math.hypot(lxy[k + 1, 0] - lxy[k, 0], lxy[k + 1, 1] - lxy[k, 1])
        llen = lcum[-1]
        pts = _stretch(rxy, cum, p0, p1)
        slo, shi = math.inf, -math.inf
        for k in range(len(pts)):
            at = _locate(pts[k, 0], pts[k, 1], lxy, a, b) / llen if llen > 0 else 0.0
            slo, shi = min(slo, at), max(shi, at)
        if (shi - slo) * llen < share * min(length, llen):
            continue
        # where the stretch of the line run along starts and ends on the piece
        e0x, e0y = _point_at(lxy, lcum, a, slo * llen)
        e1x, e1y = _point_at(lxy, lcum, a, shi * llen)
        e0 = p0 + _locate(e0x, e0y, pts, 0, len(pts) - 1)
        e1 = p0 + _locate(e1x, e1y, pts, 0, len(pts) - 1)
        owner[pieces], lo[pieces], hi[pieces] = l, min(e0, e1) / length, max(e0, e1) / length
        pieces += 1
    return owner[:pieces], lo[:pieces], hi[:pieces]


def _runs_along(where: _Route, lines: np.ndarray, tol: float,
                share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the route runs along each of the metric ``lines``: each connected piece of the route within
    ``tol`` of a line that runs along it for at least ``share`` of the shorter of the two, measured along
    the line — the rule of :func:`gis.roadnet.along_sql` (which ties structures to edges when the graph
    is built), here for one route and all lines at once (compiled, :func:`_along_pieces`). The pieces
    are exact (PostGIS there buffers the lines by polygons, within 0.1 m of the true 20 m band). Returns
    (position in ``lines``, lo, hi) per piece: lo/hi are fractions along the route, in route order, of
    the stretch of the line the piece runs along."""
    return _along_pieces(where.rxy, where.cum, *_vertices(lines), np.arange(len(lines)),
                         shapely.bounds(lines).reshape(-1, 4), float(tol), float(share))


_ON_EDGE = 1e-6  # metres: a route this near a zone's boundary meets it (for rounding, not a tolerance)


@njit(cache=True, nogil=True)
def _inside(px, py, xy, chunks, boxes, c0, c1):
    """Whether p is inside the rings of chunks c0..c1 (even-odd rule: holes and parts count)."""
    inside = False
    for c in range(c0, c1):
        if boxes[c, 2] < px or boxes[c, 1] > py or boxes[c, 3] < py:
            continue
        for k in range(chunks[c, 0], chunks[c, 0] + chunks[c, 1]):
            ax, ay, bx, by = xy[k, 0], xy[k, 1], xy[k + 1, 0], xy[k + 1, 1]
            if (ay > py) != (by > py) and px < ax + (py - ay) * (bx - ax) / (by - ay):
                inside = not inside
    return inside


@njit(cache=True, nogil=True)
def _meets(rxy, i, xy, chunks, boxes, c0, c1):
    """(t0, t1): the first and last t where the route's segment i meets the edges of chunks c0..c1 (t0 > t1:
    nowhere)."""
    px, py, qx, qy = rxy[i, 0], rxy[i, 1], rxy[i + 1, 0], rxy[i + 1, 1]
    x0, x1 = min(px, qx) - _ON_EDGE, max(px, qx) + _ON_EDGE
    y0, y1 = min(py, qy) - _ON_EDGE, max(py, qy) + _ON_EDGE
    lo, hi = math.inf, -math.inf
    for c in range(c0, c1):
        if boxes[c, 0] > x1 or boxes[c, 2] < x0 or boxes[c, 1] > y1 or boxes[c, 3] < y0:
            continue
        for k in range(chunks[c, 0], chunks[c, 0] + chunks[c, 1]):
            ax, ay, bx, by = xy[k, 0], xy[k, 1], xy[k + 1, 0], xy[k + 1, 1]
            if max(ax, bx) < x0 or min(ax, bx) > x1 or max(ay, by) < y0 or min(ay, by) > y1:
                continue
            t0, t1 = _band(px, py, qx - px, qy - py, ax, ay, bx, by, _ON_EDGE)
            if t0 <= t1:
                lo, hi = min(lo, t0), max(hi, t1)
    return lo, hi


@njit(cache=True, nogil=True)
def _zone_end(rxy, cum, zb, xy, chunks, cboxes, c0, c1, backward):
    """Metres along the route to its first point in the zone (the last, ``backward``), or -1: the route's
    start (end) if inside, else its first (last) point on a ring edge, scanning the segments whose boxes
    meet the zone's box ``zb`` (the zone's ring edges: chunks c0..c1, :func:`_edge_chunks`)."""
    n = len(rxy) - 1
    v = n if backward else 0
    if _inside(rxy[v, 0], rxy[v, 1], xy, chunks, cboxes, c0, c1):
        return cum[v]
    for k in range(n):
        i = n - 1 - k if backward else k
        if (max(rxy[i, 0], rxy[i + 1, 0]) < zb[0] or min(rxy[i, 0], rxy[i + 1, 0]) > zb[2]
                or max(rxy[i, 1], rxy[i + 1, 1]) < zb[1] or min(rxy[i, 1], rxy[i + 1, 1]) > zb[3]):
            continue
        t0, t1 = _meets(rxy, i, xy, chunks, cboxes, c0, c1)
        if t0 <= t1:
            return cum[i] + (t1 if backward else t0) * (cum[i + 1] - cum[i])
    return -1.0


@njit(cache=True, nogil=True)
def _zone_spans(rxy, cum, bounds, zones, boxes, xy, chunks, cboxes, first):
    """Where the route (vertices ``rxy``, metres up to each ``cum``, box ``bounds``) is inside each of the
    ``zones`` (positions; their boxes ``boxes``, their rings' edges in chunks, :func:`_edge_chunks`):
    (zone, lo, hi) per zone it meets, lo/hi the fractions along the route of its first and last point in
    the zone (boundary included). The route enters a zone only across its boundary, so those are found
    from each end (:func:`_zone_end`)."""
    owner, lo, hi = np.empty(len(zones), np.int64), np.empty(len(zones)), np.empty(len(zones))
    m = 0
    for z in zones:
        zb = boxes[z]
        if zb[0] > bounds[2] or zb[2] < bounds[0] or zb[1] > bounds[3] or zb[3] < bounds[1]:
            continue
        start = _zone_end(rxy, cum, zb, xy, chunks, cboxes, first[z], first[z + 1], False)
        if start < 0:  # (never in the zone)
            continue
        end = _zone_end(rxy, cum, zb, xy, chunks, cboxes, first[z], first[z + 1], True)
        owner[m], lo[m], hi[m] = z, start / cum[-1], end / cum[-1]
        m += 1
    return owner[:m], lo[:m], hi[:m]


@njit(cache=True, nogil=True)
def _target_spans(rxy, cum, bounds, xy, ptr, boxes, structures, zones, exy, chunks, cboxes, first, tol, share):
    """:func:`_along_pieces` for the ``structures`` and :func:`_zone_spans` for the ``zones`` (positions
    in the targets held, :class:`_Targets`) in one call: (target, lo, hi) per part."""
    s = _along_pieces(rxy, cum, xy, ptr, structures, boxes, tol, share)
    z = _zone_spans(rxy, cum, bounds, zones, boxes, exy, chunks, cboxes, first)
    return np.concatenate((s[0], z[0])), np.concatenate((s[1], z[1])), np.concatenate((s[2], z[2]))


def _parts(conn: Connection, where: _Route, s: RouteSettings, road_classes: list[str],
           versions: dict, rules: _RuleSet | None = None) -> list[tuple]:
    """Structures, zones and roads of the given classes the route runs along or through (only the
    structures and zones some of ``rules`` concern, if given).

    Each part: (info, lo, hi), info the target, id, name, class, adr and synthetic, lo/hi fractions along
    the route. Computed in memory on the cached structures and zones: one structure gives one
    part per stretch run along (:func:`_runs_along`); a zone one part from the route's first point in it
    to its last.
    """
    if where.length <= 0:
        return []
    tg = _targets(conn, versions)
    structures, zones = (tg.structures, tg.zones) if rules is None else rules.concerned(tg)
    tol, share = float(s.match_tolerance_m), float(s.match_share)
    found = [(tg.info[i], lo, hi) for i, lo, hi in zip(*(a.tolist() for a in _target_spans(
        where.rxy, where.cum, where.bounds, tg.xy, tg.ptr, tg.boxes, structures, zones, *tg.edges, tol, share)))]
    if road_classes:  # roads of a restricted class: every edge the route runs along, grouped by road
        g = roadgraph.get(conn, versions.get("road_graph"))
        edges = g.edge_tree().query(shapely.box(*where.wgs_bounds(tol)))  # (WGS84: the graph's tree)
        edges = edges[np.isin(g.edge_class[edges], road_classes)]
        lines = shapely.transform(g.edge_geoms()[edges], project)
        spans: dict[int, list[float]] = {}
        for i, lo, hi in zip(*_runs_along(where, lines, tol, share)):
            span = spans.setdefault(int(g.edge_road[edges[i]]), [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
        found += _road_spans(conn, spans, tol / where.length)
    return found


def _road_spans(conn: Connection, spans: dict[int, list[float]], gap: float) -> list[tuple]:
    """(info, lo, hi) of the roads of ``spans`` (road id -> [lo, hi], fractions along the route): the records of one
    named road that follow each other along the route (less than ``gap`` apart) as one stretch, with the first
    record's id (a road is stored in segments: a night ban on an expressway was one conflict per segment)."""
    if not spans:
        return []
    found: list[list] = []
    for rd in conn.execute(text("SELECT id, coalesce(name, ref) AS name, road_class, synthetic FROM roads "
                                "WHERE id = ANY(:i)"), {"i": sorted(spans)}).mappings():
        found.append([{"target": "road", "id": rd["id"], "name": rd["name"], "class": rd["road_class"], "adr": None,
                       "synthetic": rd["synthetic"]}, *spans[rd["id"]]])
    found.sort(key=itemgetter(1))
    merged: list[list] = []
    for info, lo, hi in found:
        last = merged[-1] if merged else None
        if last and info["name"] and (last[0]["name"], last[0]["class"]) == (info["name"], info["class"]) \
                and lo - last[2] <= gap:
            last[2] = max(last[2], hi)
            last[0] = {**last[0], "synthetic": last[0]["synthetic"] or info["synthetic"]}
        else:
            merged.append([info, lo, hi])
    return [tuple(m) for m in merged]


@njit(cache=True, nogil=True)
def _measure(xy):
    """Metres along a metric polyline up to each vertex, and its bounds (min x, min y, max x, max y)."""
    cum, bounds = np.zeros(len(xy)), np.empty(4)
    bounds[:2], bounds[2:] = xy[0], xy[0]
    for k in range(1, len(xy)):
        cum[k] = cum[k - 1] + math.hypot(xy[k, 0] - xy[k - 1, 0], xy[k, 1] - xy[k - 1, 1])
        bounds[0], bounds[1] = min(bounds[0], xy[k, 0]), min(bounds[1], xy[k, 1])
        bounds[2], bounds[3] = max(bounds[2], xy[k, 0]), max(bounds[3], xy[k, 1])
    return cum, bounds


class _Route:
    """A route's vertices (WGS84 and metric) and the metric length up to each: where its stretches are."""

    def __init__(self, coords: list[list[float]], rxy: np.ndarray | None = None):
        self.coords = coords  # (and ``rxy`` the same in the metric CRS, projected here if not given)
        self._wgs = None
        if rxy is None:
            self._wgs = np.fromiter(chain.from_iterable(coords), float, 2 * len(coords)).reshape(-1, 2)
            rxy = project(self._wgs)
        self.rxy = rxy
        self.cum, self.bounds = _measure(self.rxy)
        self.length = float(self.cum[-1])

    @property
    def wgs(self) -> np.ndarray:
        """The WGS84 vertices as an (n, 2) array."""
        if self._wgs is None:
            self._wgs = np.array(self.coords, dtype=float)
        return self._wgs

    def wgs_bounds(self, margin_m: float) -> tuple[float, ...]:
        """The route's WGS84 bounding box grown by at least ``margin_m``."""
        lo, hi = self.wgs.min(axis=0), self.wgs.max(axis=0)
        # (a degree is over 110.5 km of latitude, and of longitude over 111.3 km · cos of the largest latitude)
        deg = margin_m / (110_500.0 * math.cos(math.radians(min(max(abs(lo[1]), abs(hi[1])), 89.0))))
        return (*(lo - deg), *(hi + deg))

    def geometry(self, lo: float, hi: float) -> dict:
        """GeoJSON (WGS84) of the stretch between fractions lo and hi (a Point at the very end), as
        ST_LineSubstring: the route's vertices in between and its ends interpolated, no repeated point."""
        a, b = lo * self.length, max(hi, min(lo + 1 / self.length, 1.0)) * self.length
        coords = _substring(self.wgs, self.cum, a, b).tolist()
        if len(coords) == 1:
            return {"type": "Point", "coordinates": coords[0]}
        return {"type": "LineString", "coordinates": coords}


def warm_up() -> None:
    """Run the compiled parts of a route check once (as :func:`gis.roadgraph.warm_up`)."""
    where = _Route([[102.7, 25.0], [102.701, 25.0]])
    tg = _Targets([{"target": "water_zone", "id": 0}, {"target": "structure", "id": 0}],
                  np.array([shapely.buffer(shapely.points(where.rxy[0]), 5.0), shapely.linestrings(where.rxy)]),
                  np.array([True, False]))
    _target_spans(where.rxy, where.cum, where.bounds, tg.xy, tg.ptr, tg.boxes, tg.structures, tg.zones, *tg.edges,
                  20.0, 0.5)
    _runs_along(where, np.array([shapely.linestrings(where.rxy)]), 20.0, 0.5)
    where.geometry(0.0, 0.5)


_LINK_TARGET = {"restricted_structures": "structure", "water_source_zones": "water_zone"}


def _path_parts(conn: Connection, path: RoutePath, where: _Route, road_classes: list[str],
                versions: dict) -> list[tuple]:
    """:func:`_parts` for a route found on the graph, from its edges: the structures and zones tied to
    them (``road_edge_links``, the ties that close edges to a banned cargo), placed along the route by
    the stretch of each edge they cover, one part per run of consecutive edges; and the roads of the
    given classes, edge by edge (``where``: the path's line). Only valid while the links are current
    (:func:`_links_current`)."""
    g = roadgraph.get(conn, versions.get("road_graph"))
    tg = _targets(conn, versions)
    cum, r_len = where.cum, where.length
    if r_len <= 0:
        return []
    e = path.edge_idx
    vertex = np.concatenate([[0], np.cumsum(g.coord_start[e + 1] - g.coord_start[e] - 1)])
    start, end = cum[vertex[:-1]], cum[vertex[1:]]  # metres along the route where each edge starts and ends

    def place(k: int, lo: float, hi: float) -> tuple[float, float]:  # (fractions along edge k, digitised)
        if not path.forward[k]:
            lo, hi = 1.0 - hi, 1.0 - lo
        return (start[k] + lo * (end[k] - start[k])) / r_len, (start[k] + hi * (end[k] - start[k])) / r_len

    runs: list[list] = []  # [key, lo, hi, last edge position]
    last: dict[tuple, list] = {}
    for k in np.flatnonzero(g.link_ptr[e + 1] > g.link_ptr[e]).tolist():
        for j in range(g.link_ptr[e[k]], g.link_ptr[e[k] + 1]):
            lo, hi = place(k, g.link_lo[j], g.link_hi[j])
            run = last.get(g.link_key[j])
            if run is not None and run[3] == k - 1:
                run[1], run[2], run[3] = min(run[1], lo), max(run[2], hi), k
            else:
                runs.append(run := [g.link_key[j], lo, hi, k])
                last[g.link_key[j]] = run
    found = []
    for (layer, fid), lo, hi, _ in runs:
        i = tg.index.get((_LINK_TARGET[layer], fid))
        if i is not None:
            found.append((tg.info[i], lo, hi))
    if road_classes:
        spans: dict[int, list[float]] = {}
        for k in np.flatnonzero(np.isin(g.edge_class[e], road_classes)).tolist():
            lo, hi = place(k, 0.0, 1.0)
            span = spans.setdefault(int(g.edge_road[e[k]]), [lo, hi])
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
        found += _road_spans(conn, spans, 1e-9)  # (the path's edges meet end to end)
    return found


def _links_current(conn: Connection, versions: dict) -> bool:
    """Whether the graph's links were made from the current structures and zones."""
    g = roadgraph.get(conn, versions.get("road_graph"))
    return all(g.inputs.get(layer) == versions.get(layer) for layer in _LINK_TARGET)


class _RuleSet:
    """The rules that concern a cargo, arranged for checks (:func:`_rule_set`)."""

    def __init__(self, rules: list[dict], cargo: Cargo):
        self.rules = [r for r in rules if rule_applies(r, cargo)]
        self.by_target: dict[str, list[dict]] = {}
        for rule in self.rules:
            self.by_target.setdefault(rule["target"], []).append(rule)
        self.roads = self.by_target.get("road", [])
        self._matching: dict[tuple, list[dict]] = {}
        self._concerned: tuple | None = None

    def matching(self, info: dict) -> list[dict]:
        """The rules that concern a structure, zone or road (by its target, class and ADR category)."""
        kind = (info["target"], info["class"], info["adr"])
        found = self._matching.get(kind)
        if found is None:
            found = self._matching[kind] = [r for r in self.by_target.get(info["target"], ()) if _matches(r, info)]
        return found

    def concerned(self, tg: _Targets) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the structures and of the zones held in ``tg`` that some of the rules concern. Only
        those can be in conflict, so only those are tested against a route (docs/road-safety.md)."""
        if self._concerned is None or self._concerned[0] is not tg:
            concerned = np.array([bool(self.matching(info)) for info in tg.info], bool)
            self._concerned = (tg, tg.structures[concerned[tg.structures]], tg.zones[concerned[tg.zones]])
        return self._concerned[1], self._concerned[2]


_RULE_SETS: dict[tuple, tuple] = {}


def _rule_set(rules: list[dict], cargo: Cargo) -> _RuleSet:
    """:class:`_RuleSet` of ``rules`` for ``cargo``, kept per list of rules and cargo (the entry holds the
    list, so its id stays its own; the lists are those cached per version of ``route_rules``)."""
    key = (id(rules), cargo)
    hit = _RULE_SETS.get(key)
    if hit is None:
        if len(_RULE_SETS) >= 256:
            _RULE_SETS.clear()
        hit = _RULE_SETS[key] = (rules, _RuleSet(rules, cargo))
    return hit[1]


def _matches(rule: dict, part: dict) -> bool:
    if rule["target"] != part["target"]:
        return False
    if part["target"] == "structure":
        return ((rule["structure_classes"] is None or part["class"] in rule["structure_classes"])
                and (rule["adr_categories"] is None or part["adr"] in rule["adr_categories"]))
    if part["target"] == "water_zone":
        return rule["zone_levels"] is None or part["class"] in rule["zone_levels"]
    return rule["road_classes"] is None or part["class"] in rule["road_classes"]


def _eta(profile: list[tuple[float, float]], departure: datetime | None, dist: float) -> datetime | None:
    """Arrival time at ``dist`` metres by linear interpolation in a (distance, seconds) profile."""
    if departure is None:
        return None
    if len(profile) < 2:
        return departure
    k = min(max(bisect_left(profile, (dist,)), 1), len(profile) - 1)  # the first point at or past dist
    (d0, t0), (d1, t1) = profile[k - 1], profile[k]
    f = 0.0 if d1 == d0 else min(max((dist - d0) / (d1 - d0), 0.0), 1.0)
    return departure + timedelta(seconds=t0 + f * (t1 - t0))


def _verdict(conflicts: list[dict]) -> str:
    worst = 0
    for c in conflicts:
        worst = max(worst, VERDICT_ORDER[c["verdict"]])
    return ("allowed", "warning", "forbidden")[worst]


def check_route(conn: Connection, route: dict, cargo: Cargo, departure: datetime | None,
                settings: RouteSettings | None = None, profile: list[tuple[float, float]] | None = None,
                rules: list[dict] | None = None, versions: dict | None = None, path: RoutePath | None = None) -> dict:
    """Conflicts of a route with the rules for a cargo and departure time.

    Parameters
    ----------
    route : dict
        GeoJSON LineString (EPSG:4326), see :func:`route_geojson`.
    cargo : Cargo
    departure : datetime or None
        Departure time; ``None`` counts every time-window ban as in force.
    profile : list of (metres, seconds), optional
        Travel-time profile along the route for arrival times; default a constant ``check_speed_kmh``.
    rules : list of dict, optional
        Rules to apply (default: the active rules in ``route_rules``). Those that concern the cargo are
        kept per list and cargo (:func:`_rule_set`): a list passed here must not change afterwards.
    path : RoutePath, optional
        The route as found on the graph (``route`` is its geometry): its structures and zones come from
        its edges' links (:func:`_path_parts`), not from geometry. Only while the links are current.

    Returns
    -------
    dict
        ``verdict`` (forbidden, warning or allowed, with ``verdict_zh``), ``length_m``, ``cargo``, and
        ``conflicts`` sorted by distance, each with target (structure, water_zone or road), target_id,
        target_name, target_class, rule_id, rule (zh/en), rule_source, distance_m (from the start),
        length_m, eta, verdict and geometry (the conflicting stretch of the route).
    """
    s = settings or DEFAULT_SETTINGS
    versions = versions if versions is not None else _versions(conn)
    rule_set = _rule_set(rules if rules is not None else _active_rules(conn, versions), cargo)
    applicable = rule_set.rules
    where = _Route(route["coordinates"], None) if path is None else _Route(path.coords, path.metric)
    length = profile[-1][0] if profile else where.length
    profile = profile or [(0.0, 0.0), (length, length / (s.check_speed_kmh / 3.6))]
    end = departure + timedelta(seconds=profile[-1][1]) if departure else None
    # road-class rules are matched edge by edge: only when one can be in force during the trip
    road_classes = sorted({c for r in rule_set.roads if departure is None or _window_hits(r, departure, end)
                           for c in (r["road_classes"] or ())})
    if not applicable:
        parts = []
    elif path is not None:
        parts = _path_parts(conn, path, where, road_classes, versions)
    else:
        parts = _parts(conn, where, s, road_classes, versions, rule_set)
    parts.sort(key=itemgetter(1))
    best: dict[tuple, dict] = {}  # per structure/zone/road: the most severe rule, at its first stretch
    stretch: dict[tuple, tuple[float, float]] = {}  # and where that stretch is (its geometry made once)
    for info, lo, hi in parts:
        matching = rule_set.matching(info)
        if not matching:
            continue
        dist = lo * where.length
        eta, leave = _eta(profile, departure, dist), None
        for rule in matching:
            # a time window counts when it meets the stretch, from entering it to leaving it
            if eta is not None and has_window(rule):
                leave = leave or _eta(profile, departure, hi * where.length)
                if not _window_hits(rule, eta, leave):
                    continue
            key = (info["target"], info["id"])
            if key in best and VERDICT_ORDER[best[key]["verdict"]] >= VERDICT_ORDER[rule["verdict"]]:
                continue
            best[key] = {
                "target": info["target"], "target_id": info["id"], "target_name": info["name"],
                "target_class": info["class"], "adr_category": info["adr"], "synthetic": info["synthetic"],
                "rule_id": rule["id"], "rule": {"zh": rule["name_zh"], "en": rule["name_en"]},
                "rule_source": rule["source"], "distance_m": round(dist, 1),
                "length_m": round((hi - lo) * where.length, 1),
                "eta": eta.isoformat() if eta else None, "verdict": rule["verdict"],
                "verdict_zh": VERDICT_TEXT[rule["verdict"]][0],
            }
            stretch[key] = (lo, hi)
    for key, c in best.items():
        c["geometry"] = where.geometry(*stretch[key])
    conflicts = sorted(best.values(), key=lambda c: (c["distance_m"], c["target"], c["target_id"]))
    verdict = _verdict(conflicts)
    return {"verdict": verdict, "verdict_zh": VERDICT_TEXT[verdict][0], "length_m": round(length, 1),
            "departure": departure.isoformat() if departure else None, "cargo": cargo.as_dict(),
            "rules_applied": len(applicable), "conflicts": conflicts}


# ---------------------------------------------------------------- plan


@dataclass
class RoutePath:
    cost_s: float
    length_m: float
    edges: list[int]
    profile: list[tuple[float, float]]
    geometry: dict          # GeoJSON LineString: the roads' own line (no vertex where the path goes straight on)
    edge_idx: np.ndarray    # the edges' indices in the graph, in travel order
    forward: np.ndarray     # per edge: travelled in digitised direction
    metric: np.ndarray      # every vertex of the edges (shared nodes once) in the metric CRS ...
    coords: list            # ... and in WGS84: where each edge starts and ends along the route (_path_parts)


def _route(g: roadgraph.RoadGraph, o: int, d: int, banned: np.ndarray | None = None) -> RoutePath | None:
    """Fastest path between node indices on the in-memory graph: edge ids, oriented geometry (edges in travel
    order, shared nodes once, 7 decimals as ST_AsGeoJSON) and its (distance, time) profile."""
    p = g.shortest_path(o, d, banned)
    if p is None:
        return None
    ds, ts = np.cumsum(g.edge_length[p.edges]), np.cumsum(p.costs)
    vertices = g.path_vertices(p)
    coords = np.round(g.coords[vertices], 7)
    # the nodes between edges (positions in vertices) where the path goes straight on, as at the points where the
    # graph cut a long road (gis.roadnet, max_edge_m: on the road's segment, to the 7 decimals' rounding), are
    # left out of its line: within 1e-6° (~0.1 m) of the line from the vertex before to the one after
    joints = np.cumsum(np.diff(g.coord_start)[p.edges] - 1)[:-1]
    a, b = coords[joints] - coords[joints - 1], coords[joints + 1] - coords[joints]
    straight = (np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]) <= 1e-6 * np.hypot(*(a + b).T)) & ((a * b).sum(axis=1) > 0)
    coords = coords.tolist()
    line = np.delete(np.arange(len(coords)), joints[straight]) if straight.any() else None
    return RoutePath(float(ts[-1]) if len(ts) else 0.0, float(ds[-1]) if len(ds) else 0.0,
                     g.edge_ids[p.edges].tolist(), [(0.0, 0.0)] + list(zip(ds.tolist(), ts.tolist())),
                     {"type": "LineString", "coordinates": coords if line is None else [coords[i] for i in line]},
                     p.edges, p.forward, g.metric_coords(project)[vertices], coords)


def shortest_path(conn: Connection, source: int, target: int, banned: list[int] | tuple = ()) -> RoutePath | None:
    """Fastest path from node id ``source`` to node id ``target`` avoiding the edge ids ``banned``, or None
    (searched in the in-memory graph, :mod:`gis.roadgraph`)."""
    g = roadgraph.get(conn)
    if not (g.has_node(source) and g.has_node(target)):
        return None
    banned_idx = g.edge_index(sorted({int(b) for b in banned}))
    return _route(g, int(g.node_index(source)), int(g.node_index(target)), banned_idx)


_CACHE: dict[tuple, object] = {}


def _cached(conn: Connection, name: str, version, load):
    """``load()`` once per ``version`` (a layer_versions row: number and writing transaction) and database."""
    if version is None:
        return load()
    key = (db_key(conn.engine), name)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    value = load()
    _CACHE[key] = (version, value)
    return value


VERSIONED = ("road_graph", "route_rules", "restricted_structures", "water_source_zones")


def _versions(conn: Connection) -> dict[str, tuple]:
    """Version and writing transaction of the layer_versions rows a plan depends on (one query)."""
    return {r.layer: (r.version, r.x) for r in conn.execute(text(
        "SELECT layer, version, xmin::text AS x FROM layer_versions WHERE layer = ANY(:l)"), {"l": list(VERSIONED)})}


def _active_rules(conn: Connection, versions: dict) -> list[dict]:
    return _cached(conn, "rules", versions.get("route_rules"), lambda: list_rules(conn, active_only=True))


def _features_banned(conn: Connection, rules: list[dict], versions: dict) -> dict[tuple[str, int], dict]:
    """(target, id) -> the forbidding rule, for every structure/zone a list of rules forbids."""
    def match() -> dict:
        out: dict[tuple[str, int], dict] = {}
        for p in _targets(conn, versions).info:
            for r in rules:
                if _matches(r, p):
                    out.setdefault((p["target"], p["id"]), r)
        return out
    if not any(r["target"] in ("structure", "water_zone") for r in rules):
        return {}
    key = (versions.get("restricted_structures"), versions.get("water_source_zones"), versions.get("route_rules"))
    return dict(_cached(conn, f"banned {[r['id'] for r in rules]}", None if None in key else key, match))


_LINK_LAYER = {target: layer for layer, target in _LINK_TARGET.items()}


_BANNED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # graph -> {bans: edge indices}


def _banned_edges(g: roadgraph.RoadGraph, features: dict, road_classes: set[str]) -> np.ndarray:
    """Indices of the edges the banned structures/zones cover, and of the banned roads and road classes
    (sorted; kept per graph for the sets of bans met last: those of a cargo and time repeat)."""
    key = (frozenset(features), frozenset(road_classes))
    memo = _BANNED.setdefault(g, {})
    edges = memo.get(key)
    if edges is None:
        out = [g.edges_of((_LINK_LAYER[t], i) for (t, i) in features if t in _LINK_LAYER)]
        rids = [i for (t, i) in features if t == "road"]
        if road_classes or rids:
            out.append(np.flatnonzero(np.isin(g.edge_class, sorted(road_classes)) | np.isin(g.edge_road, rids)))
        if len(memo) >= 64:
            memo.clear()
        edges = memo[key] = np.unique(np.concatenate(out))
    return edges


def banned_edges_for(conn: Connection, cargo: Cargo, departure: datetime | None) -> list[int]:
    """Ids of the edges the forbidding rules in force at ``departure`` close to ``cargo``."""
    versions = _versions(conn)
    g = roadgraph.get(conn, versions.get("road_graph"))
    rules = [r for r in _active_rules(conn, versions)
             if rule_applies(r, cargo) and r["verdict"] == "forbidden" and in_force(r, departure)]
    classes = {c for r in rules if r["target"] == "road" for c in r["road_classes"] or ()}
    return g.edge_ids[_banned_edges(g, _features_banned(conn, rules, versions), classes)].tolist()


_ENDS_ZH = {"origin": "起点", "destination": "终点"}


def _lonlat(point, what: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in point)
    except (TypeError, ValueError):
        raise AnalysisError(f"{what} must be [lon, lat] in degrees (EPSG:4326)",
                            zh=f"{_ENDS_ZH[what]}应为 [经度, 纬度]（度，EPSG:4326）") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise AnalysisError(f"{what} must be [lon, lat] in degrees (EPSG:4326), got {point!r}",
                            zh=f"{_ENDS_ZH[what]}应为 [经度, 纬度]（度，EPSG:4326），而非 {point!r}")
    return lon, lat


def _snap(g: roadgraph.RoadGraph, origin, destination, s: RouteSettings) -> tuple[tuple[int, float], ...]:
    """(index of the nearest graph node, its distance in m) of origin and destination (one lookup);
    refused beyond ``max_snap_m``."""
    (lon0, lat0), (lon1, lat1) = _lonlat(origin, "origin"), _lonlat(destination, "destination")
    idx, dist = g.nearest([lon0, lon1], [lat0, lat1])
    for what, m in zip(("origin", "destination"), dist):
        if m > s.max_snap_m:
            raise AnalysisError(f"{what} is {m / 1000:.1f} km from the nearest road node (limit {s.max_snap_m:.0f} m)",
                                zh=f"{_ENDS_ZH[what]}距最近的路网节点 {m / 1000:.1f} km（上限 {s.max_snap_m:.0f} m）")
    return (int(idx[0]), float(dist[0])), (int(idx[1]), float(dist[1]))


def fastest_route(conn: Connection, origin, destination, settings: RouteSettings | None = None,
                  versions: dict | None = None) -> dict:
    """GeoJSON LineString of the fastest unrestricted route between two [lon, lat] points."""
    s = settings or DEFAULT_SETTINGS
    g = roadgraph.get(conn) if versions is None else roadgraph.get(conn, versions.get("road_graph"))
    (o, _), (d, _) = _snap(g, origin, destination, s)
    if o == d:
        raise AnalysisError("origin and destination snap to the same road node: no route to check",
                            zh="起点和终点落在同一路网节点上：没有可检查的路线")
    path = _route(g, o, d)
    if path is None:
        apart = g.node_component[o] != g.node_component[d]
        why = ("they are on disconnected parts of the road network" if apart
               else "one-way roads allow no way from the origin to the destination")
        why_zh = "二者位于路网互不连通的部分" if apart else "单行道使起点无法到达终点"
        raise AnalysisError(f"no road route between origin and destination: {why}", zh=f"起终点之间没有道路路线：{why_zh}")
    return path.geometry


def _summary(path: RoutePath) -> dict:
    return {"length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1), "geometry": path.geometry}


def plan_route(conn: Connection, origin, destination, cargo: Cargo, departure: datetime | None,
               settings: RouteSettings | None = None, versions: dict | None = None, look_later: bool = True) -> dict:
    """The fastest route that obeys the rules for ``cargo`` leaving at ``departure``.

    Forbidding rules in force at departure remove their edges; the route found is then checked with
    its own arrival times, and structures/zones/roads whose ban starts on the way are removed too
    and the route re-planned (at most ``replans`` times).

    Returns
    -------
    dict
        ``found``; if found: ``route`` (GeoJSON Feature), ``length_m``, ``time_s``, ``verdict`` and
        ``conflicts`` (warnings left on it), ``extra_length_m``/``extra_time_s`` against
        ``unrestricted`` (the fastest route ignoring the rules, with its conflicts), ``avoided``; if
        not: ``reason`` and ``blocked_by`` (the forbidden structures/zones on the unrestricted route,
        each with ``unblocks`` = whether lifting that one ban alone gives a route), and ``next_departure``: the
        first departure within a day, in steps of :data:`LATER_STEP`, that has a compliant route (time-window bans
        lift), or None.

    ``versions``: the ``layer_versions`` rows of :data:`VERSIONED` as :func:`_versions` reads them, when
    the caller knows them already (the API's change feed); else they are read here. ``look_later``: whether a
    no-route answer looks for ``next_departure`` (not within that search).
    """
    s = settings or DEFAULT_SETTINGS
    versions = versions if versions is not None else _versions(conn)
    g = roadgraph.get(conn, versions.get("road_graph"))
    (o, o_snap), (d, d_snap) = _snap(g, origin, destination, s)
    if o == d:
        raise AnalysisError("origin and destination snap to the same road node: nothing to plan",
                            zh="起点和终点落在同一路网节点上：无需规划")
    base = {"origin_node": int(g.node_ids[o]), "destination_node": int(g.node_ids[d]), "origin_snap_m": round(o_snap, 1),
            "destination_snap_m": round(d_snap, 1), "cargo": cargo.as_dict(),
            "departure": departure.isoformat() if departure else None}
    co, cd = g.node_component[o], g.node_component[d]
    if co != cd:
        sizes = {c: int(np.count_nonzero(g.node_component == c)) for c in (co, cd)}
        return {**base, "found": False, "blocked_by": [],
                "reason": (f"起点与终点位于互不连通的路网部分（{sizes[co]} 与 {sizes[cd]} 个节点），不考虑限制也无路可达 / "
                           f"origin and destination are on disconnected parts of the road network (parts of "
                           f"{sizes[co]} and {sizes[cd]} nodes); no route exists even without restrictions")}
    active = _active_rules(conn, versions)
    rules = _rule_set(active, cargo).rules
    # routes on the graph are checked through their edges' links to structures and zones, the ties that
    # ban edges; when structures or zones changed since the links were made, by geometry, with the
    # tolerance that tied them
    gs = GraphSettings()
    cs = replace(s, match_tolerance_m=gs.structure_tolerance_m, match_share=gs.structure_share)
    by_links = _links_current(conn, versions)

    def conflicts_of(p: RoutePath) -> dict:
        return check_route(conn, p.geometry, cargo, departure, cs, p.profile, active, versions, p if by_links else None)

    free = _route(g, o, d)
    if free is None:
        return {**base, "found": False, "blocked_by": [],
                "reason": "单行道使起点无法到达终点，不考虑限制也无路可达 / no route exists even without restrictions "
                          "(one-way roads)"}
    free_check = conflicts_of(free)
    forbidding = [r for r in rules if r["verdict"] == "forbidden"]
    features = _features_banned(conn, [r for r in forbidding if in_force(r, departure)], versions)
    road_classes = {c for r in forbidding if r["target"] == "road" and in_force(r, departure)
                    for c in r["road_classes"] or ()}
    path, check = free, free_check
    for _ in range(s.replans + 1):
        banned = _banned_edges(g, features, road_classes)
        if path is not free or g.closed(banned)[0][free.edge_idx].any():  # else compliant: no new search
            path = _route(g, o, d, banned)
            if path is None:
                break
            check = conflicts_of(path)
        new = {(c["target"], c["target_id"]): c for c in check["conflicts"] if c["verdict"] == "forbidden"}
        if not new or new.keys() <= features.keys():  # compliant, or nothing left to avoid
            break
        for key, c in new.items():  # a ban met on the way (time window): avoid that structure/zone/road too
            features[key] = {"id": c["rule_id"]}
        path = None
    unrestricted = {**_summary(free), "verdict": free_check["verdict"], "conflicts": free_check["conflicts"]}
    if path is None or check["verdict"] == "forbidden":
        blocked = [c for c in free_check["conflicts"] if c["verdict"] == "forbidden"]
        for c in blocked[:5]:  # would lifting this one ban alone open a route?
            others = {k: v for k, v in features.items() if k != (c["target"], c["target_id"])}
            classes = road_classes - ({c["target_class"]} if c["target"] == "road" else set())
            c["unblocks"] = g.shortest_path(o, d, _banned_edges(g, others, classes)) is not None
        names = ", ".join(f"{c['target_name'] or c['target']} ({c['rule']['zh']})" for c in blocked[:5])
        later = _next_departure(conn, g, (o, d), (origin, destination), cargo, departure, s, versions, rules) \
            if look_later else None
        when = later and later.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M")
        return {**base, "found": False, "unrestricted": unrestricted, "blocked_by": blocked,
                "next_departure": later and later.isoformat(),
                "reason": (f"{cargo.label} 无合规路线：所有路径均被禁行的构筑物、保护区或道路阻断（共 {len(features)} 处），"
                           f"最快路线受阻于 {names or '时段禁行'}" + (f"；最早可于 {when}（北京时间）出发" if later else "")
                           + f" / no route for {cargo.label} obeys the rules: every "
                           f"way is blocked by banned structures, zones or roads ({len(features)} banned); the "
                           f"fastest route is blocked by {names or 'time-window bans'}"
                           + (f"; the first departure with a compliant route is {when} Beijing time" if later else ""))}
    avoided = [c for c in free_check["conflicts"] if c["verdict"] == "forbidden"]
    return {**base, "found": True, "verdict": check["verdict"], "verdict_zh": check["verdict_zh"],
            "route": {"type": "Feature", "geometry": path.geometry,
                      "properties": {"length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1)}},
            "length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1),
            "extra_length_m": round(path.length_m - free.length_m, 1),
            "extra_time_s": round(path.cost_s - free.cost_s, 1),
            "conflicts": check["conflicts"], "avoided": avoided, "banned_features": len(features),
            "unrestricted": unrestricted}


LATER_STEP = timedelta(minutes=30)


def _next_departure(conn: Connection, g: roadgraph.RoadGraph, nodes: tuple[int, int], ends: tuple, cargo: Cargo,
                    departure: datetime | None, s: RouteSettings, versions: dict, rules: list[dict]) -> datetime | None:
    """The first departure after ``departure``, within a day in :data:`LATER_STEP` steps, with a compliant route
    (``rules``: those for ``cargo``; ``nodes``: the snapped graph nodes of ``ends``, origin and destination). None
    without a departure, when the all-day bans alone leave no way (one search: no departure can help), or when no
    step finds one."""
    forbidding = [r for r in rules if r["verdict"] == "forbidden"]
    if departure is None or all(not has_window(r) for r in forbidding):
        return None
    allday = [r for r in forbidding if not has_window(r)]
    classes = {c for r in allday if r["target"] == "road" for c in r["road_classes"] or ()}
    if g.shortest_path(*nodes, _banned_edges(g, _features_banned(conn, allday, versions), classes)) is None:
        return None
    for k in range(1, int(timedelta(days=1) / LATER_STEP) + 1):
        later = departure + k * LATER_STEP
        if plan_route(conn, *ends, cargo, later, s, versions, look_later=False)["found"]:
            return later
    return None


# ---------------------------------------------------------------- stored routes (bulk)


def _schedule_departure(schedule: str | None, day: datetime) -> datetime | None:
    """The departure on ``day`` from a schedule text holding a time HH:MM (first one), else None."""
    m = re.search(r"\b([01]?\d|2[0-3])[:：]([0-5]\d)\b", schedule or "")
    if not m:
        return None
    return day.astimezone(LOCAL_TZ).replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)


def stored_route_checks(conn: Connection, day: datetime | None = None, settings: RouteSettings | None = None):
    """Each route in ``hazmat_routes`` checked for ``day`` (default today, local time): yields (route row,
    cargo, check result), or (route row, None, reason) when its cargo cannot be resolved. Cargo comes from
    ``cargo_un`` (else ``cargo_class``) and ``quantity_t``; the departure is the first HH:MM in
    ``schedule`` on ``day``; without one every time-window ban counts."""
    s = settings or DEFAULT_SETTINGS
    day = day or datetime.now(LOCAL_TZ)
    rules = list_rules(conn, active_only=True)
    routes = conn.execute(text("SELECT id, name, cargo_un, cargo_class, quantity_t, schedule, synthetic, "
                               "ST_AsGeoJSON(geom) AS g FROM hazmat_routes ORDER BY id")).mappings().all()
    for rt in routes:
        try:
            cargo = resolve_cargo({"un_number": rt["cargo_un"], "hazard_class": rt["cargo_class"],
                                   "quantity_t": rt["quantity_t"]})
        except AnalysisError as exc:
            yield rt, None, str(exc).split(":")[0]
            continue
        yield rt, cargo, check_route(conn, json.loads(rt["g"]), cargo, _schedule_departure(rt["schedule"], day), s,
                                     rules=rules)


def check_stored_routes(conn: Connection, run_id: int, settings: RouteSettings | None = None,
                        day: datetime | None = None) -> dict:
    """Check every route in ``hazmat_routes`` (:func:`stored_route_checks`) into the derived layer
    ``route_conflicts`` (run ``run_id``). Routes whose cargo cannot be resolved are reported in
    ``unchecked_routes``."""
    conn.execute(text("DELETE FROM route_conflicts"))
    unchecked, verdicts, rows, checked = [], {"forbidden": 0, "warning": 0, "allowed": 0}, [], 0
    for rt, cargo, result in stored_route_checks(conn, day, settings):
        if cargo is None:
            unchecked.append({"route_id": rt["id"], "reason": result})
            continue
        checked += 1
        verdicts[result["verdict"]] += 1
        rows += [{"run_id": run_id, "route_id": rt["id"], "name": rt["name"], "cargo": cargo.label,
                  "rule_id": c["rule_id"], "rule": c["rule"]["zh"] + " / " + c["rule"]["en"], "target": c["target"],
                  "target_id": c["target_id"], "target_name": c["target_name"], "target_class": c["target_class"],
                  "distance_m": c["distance_m"], "eta": c["eta"], "verdict": c["verdict"],
                  "synthetic": bool(rt["synthetic"] or c["synthetic"]), "g": json.dumps(c["geometry"])}
                 for c in result["conflicts"]]
    if rows:
        conn.execute(text("""
            INSERT INTO route_conflicts (run_id, route_id, name, cargo, rule_id, rule, target, target_id, target_name,
                                         target_class, distance_m, eta, verdict, synthetic, geom)
            VALUES (:run_id, :route_id, :name, :cargo, :rule_id, :rule, :target, :target_id, :target_name,
                    :target_class, :distance_m, CAST(:eta AS timestamptz), :verdict, :synthetic,
                    ST_SetSRID(ST_GeomFromGeoJSON(:g), 4326))"""), rows)
    return {"routes_checked": checked, "route_conflicts": len(rows),
            "routes_forbidden": verdicts["forbidden"], "routes_warning": verdicts["warning"],
            "unchecked_routes": unchecked}
