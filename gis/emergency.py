"""Hazmat incident zones (US/Canada/Mexico ERG2024), what is inside them, and the nearest resources.

Pure lookups and geometry where the work is pure; PostGIS/pgRouting where the data is. docs/emergency.md
gives the sources, the shapes and every default.

Data (``gis/data``), each row with its edition, source and a ``verified`` flag that travels into
every answer:

``erg_materials.csv``  UN number, ERG guide, names (中文/English) and aliases, CAS, whether in Table 1.
``erg_distances.csv``  Table 1 (small/large spill, day/night) and Table 3 (large spills of six gases by
                       container and wind) rows.
``erg_guides.csv``     Orange-guide distances for materials not in Table 1 (flammable liquids and gases).

Zones (built in the metric CRS ``layers.crs.METRIC_EPSG``, EPSG:4543 for Kunming; returned in WGS84):

* Initial isolation zone: a circle of the isolation distance around the spill.
* Protective action zone: with the wind given, ERG's square downwind — side = the protective action
  distance, its upwind edge centred on the spill; without wind, a circle of that radius (the wind may
  blow anywhere). It is stored and counted without the isolation circle, so the two zones'
  counts add up.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import re
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import Point, Polygon, mapping
from sqlalchemy import Connection, text

from gis import roadgraph
from gis.errors import AnalysisError, UnknownSubstanceError
from gis.raster import Registered, registered_path, zonal_sum
from layers import registry
from layers.crs import from_metric, in_box, to_metric
from layers.topics.emergency import ZONES

_DATA = Path(__file__).with_name("data")
EDITION = "ERG2024"
CONTAINERS = {
    "rail_tank_car": ("铁路罐车", "Rail tank car"),
    "highway_tank": ("公路罐车或拖车", "Highway tank truck or trailer"),
    "agricultural_nurse_tank": ("农用供氨罐", "Agricultural nurse tank"),
    "multiple_small_cylinders": ("多个小钢瓶", "Multiple small cylinders"),
    "multiple_ton_cylinders": ("多个吨级钢瓶", "Multiple ton cylinders"),
    "small_cylinders_or_single_ton": ("多个小钢瓶或单个吨级钢瓶", "Multiple small cylinders or single ton cylinder"),
}
# ERG Table 3 wind classes: low < 10 km/h, moderate 10-20 km/h, high > 20 km/h.
WINDS = {"low": ("弱风 <10 km/h", "Low wind <10 km/h"), "moderate": ("中等风 10–20 km/h", "Moderate wind 10–20 km/h"),
         "high": ("强风 >20 km/h", "High wind >20 km/h")}
RESOURCE_KINDS = ("fire_station", "rescue_team", "hospital", "depot", "shelter")
ACCESS_SPEED_KMH = 20.0   # between a point and its nearest road node (off the network)
MAX_SNAP_M = 1000.0       # an incident or resource farther than this from any road node: its off-road leg is warned of
OFFROAD_MAX_M = 5000.0    # up to this far it still gets travel times (the off-road leg at ACCESS_SPEED_KMH); farther: not
SEARCH_RADIUS_M = 60000.0  # resources considered around the incident (straight line)
CANDIDATES_PER_KIND = 20   # nearest by straight line, per kind, then ranked by travel time
EMPTY_WKB = shapely.from_wkt("POLYGON EMPTY").wkb
SYNTHETIC_FEATURES = "统计的要素中含合成演示数据 / some features counted are synthetic demo data"


# --------------------------------------------------------------------------- ERG data

@dataclass(frozen=True)
class Material:
    """One material of ``erg_materials.csv``."""

    un_number: str
    guide: str
    name_en: str
    name_zh: str
    aliases: tuple[str, ...]
    cas: str | None
    table1: bool
    verified: bool
    source: str

    def label(self) -> str:
        return f"{self.name_zh} {self.name_en} (UN{self.un_number})"


@dataclass(frozen=True)
class Guide:
    guide: str
    title_en: str
    title_zh: str
    isolation_m: float
    large_spill_downwind_m: float | None
    fire_isolation_m: float
    note: str
    verified: bool
    source: str


def _bool(v: str) -> bool:
    return v.strip().lower() == "true"


def _rows(name: str) -> list[dict]:
    with (_DATA / name).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@cache
def materials() -> dict[str, Material]:
    """UN number -> material."""
    return {r["un_number"]: Material(r["un_number"], r["guide"], r["name_en"], r["name_zh"],
                                     tuple(a.strip() for a in r["aliases"].split(";") if a.strip()),
                                     r["cas"] or None, _bool(r["table1"]), _bool(r["verified"]), r["source"])
            for r in _rows("erg_materials.csv")}


@cache
def guides() -> dict[str, Guide]:
    return {r["guide"]: Guide(r["guide"], r["title_en"], r["title_zh"], float(r["isolation_m"]),
                              float(r["large_spill_downwind_m"]) if r["large_spill_downwind_m"] else None,
                              float(r["fire_isolation_m"]), r["note"], _bool(r["verified"]), r["source"])
            for r in _rows("erg_guides.csv")}


@cache
def distance_rows() -> dict[str, list[dict]]:
    """UN number -> its Table 1/Table 3 rows (numbers converted)."""
    out: dict[str, list[dict]] = {}
    for r in _rows("erg_distances.csv"):
        row = dict(r, table=int(r["table"]), isolation_m=float(r["isolation_m"]), day_km=float(r["day_km"]),
                   night_km=float(r["night_km"]), verified=_bool(r["verified"]),
                   at_least=[s for s in r["at_least"].split(";") if s])
        out.setdefault(r["un_number"], []).append(row)
    return out


def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).casefold()
    return re.sub(r"[\s,，()（）\-_/.]+", "", s)


@cache
def _index() -> dict[str, str]:
    idx: dict[str, str] = {}
    # a material's own number and names before any other's aliases ("butane" is Butane, UN1011, not the
    # LPG, UN1075, that lists it as an alias); within each pass the first material wins
    for keys in (lambda m: (m.un_number, "un" + m.un_number, m.name_en, m.name_zh, m.cas or ""),
                 lambda m: m.aliases):
        for m in materials().values():
            for key in keys(m):
                if key:
                    idx.setdefault(_norm(key), m.un_number)
    return idx


HOW_TO_NAME = ("name the chemical by its 4-digit UN number (e.g. 1005 or UN1005), its CAS number, its Chinese or "
               "English name (e.g. 液氨, chlorine), or 'guide:128' to apply an ERG orange guide "
               "(flammable liquids/gases: guides {guides}) knowingly; GET /emergency/chemicals lists them")
HOW_TO_NAME_ZH = ("请以 4 位 UN 编号（如 1005 或 UN1005）、CAS 号、中文或英文名称（如 液氨、chlorine）指明化学品，"
                  "或明知地用 'guide:128' 套用 ERG 指南（易燃液体/气体：指南 {guides}）；GET /emergency/chemicals 列出全部")


def find_material(query: str) -> Material | Guide:
    """The material (or an explicitly requested guide, ``guide:128``) named by ``query``.

    Raises
    ------
    UnknownSubstanceError
        For anything not in the shipped tables: the message says how to name one and may suggest
        close names ("did you mean"), never picks one.
    """
    q = (query or "").strip()
    g = re.fullmatch(r"(?i)(?:erg\s*)?guide\s*[:：]?\s*(\d{3})", q)
    if g:
        if g.group(1) in guides():
            return guides()[g.group(1)]
        raise UnknownSubstanceError(f"no distances shipped for ERG guide {g.group(1)}; "
                                    + HOW_TO_NAME.format(guides=", ".join(guides())),
                                    zh=f"未收录 ERG 指南 {g.group(1)} 的距离；" + HOW_TO_NAME_ZH.format(guides="、".join(guides())))
    un = _index().get(_norm(q))
    if un:
        return materials()[un]
    numeric = re.fullmatch(r"(?i)(un\s*)?\d{4}", q)
    near = [] if numeric else difflib.get_close_matches(_norm(q), list(_index()), n=3, cutoff=0.75)
    near = [materials()[_index()[k]].label() for k in dict.fromkeys(near)]
    what = f"UN{q[-4:]}" if numeric else repr(q)
    # (the suggestion first: the duty officer reads the start of a long message)
    raise UnknownSubstanceError(f"unknown chemical {what}" + (f"; did you mean: {', '.join(near)}?" if near else "")
                                + f" Not in the shipped {EDITION} tables; " + HOW_TO_NAME.format(guides=", ".join(guides())),
                                zh=f"未知化学品 {what}" + (f"；是否指：{'、'.join(near)}？" if near else "")
                                   + f"不在所附 {EDITION} 表中；" + HOW_TO_NAME_ZH.format(guides="、".join(guides())))


def search_materials(q: str = "", limit: int = 20) -> list[dict]:
    """Materials whose UN number, names or aliases contain ``q`` (for the panel's search box)."""
    key = _norm(q)
    out = []
    for m in materials().values():
        keys = [_norm(k) for k in (m.un_number, m.name_en, m.name_zh, m.cas or "", *m.aliases)]
        if not key or any(key in k for k in keys):
            out.append({"un_number": m.un_number, "name_zh": m.name_zh, "name_en": m.name_en, "guide": m.guide,
                        "table1": m.table1, "verified": m.verified})
    return out[:limit]


def wind_class(speed_ms: float | None) -> str | None:
    """ERG Table 3 wind class of a wind speed in m/s (None when not given)."""
    if speed_ms is None:
        return None
    kmh = speed_ms * 3.6
    return "low" if kmh < 10 else ("moderate" if kmh <= 20 else "high")


@dataclass
class Distances:
    """Isolation and protective action distances with where they came from."""

    isolation_m: float
    protective_m: float | None
    basis: str                       # "table1", "table3" or "guide"
    guide: str
    rows: list[dict]                 # the source rows used (with source and verified)
    verified: bool
    at_least: bool = False           # "+": can be larger in certain atmospheric conditions
    notes: list[str] = field(default_factory=list)


def erg_distances(subject: Material | Guide, spill: str, time_of_day: str, container: str | None = None,
                  wind_speed_ms: float | None = None) -> Distances:
    """The ERG distances for a material (or guide), spill size and day/night.

    Table 1 when the material is in it (Table 3 for the large spills it refers to), otherwise the
    material's orange guide. For Table 3 without container or wind, the largest distance over the
    rows left is used and said so (ERG: when unsure, take the larger distance).
    """
    if spill not in ("small", "large"):
        raise AnalysisError("spill must be 'small' (<208 L) or 'large' (>208 L)",
                            zh="泄漏规模应为 'small'（<208 L）或 'large'（>208 L）")
    if time_of_day not in ("day", "night"):
        raise AnalysisError("time must be 'day' or 'night'", zh="时段应为 'day'（白天）或 'night'（夜间）")
    if container is not None and container not in CONTAINERS:
        raise AnalysisError(f"container must be one of {', '.join(CONTAINERS)}", zh=f"容器应为 {'、'.join(CONTAINERS)} 之一")
    col = "day_km" if time_of_day == "day" else "night_km"
    rows = distance_rows().get(subject.un_number, []) if isinstance(subject, Material) else []
    if rows:
        t1 = [r for r in rows if r["table"] == 1 and r["spill"] == spill]
        if t1:
            r = t1[0]
            return Distances(r["isolation_m"], r[col] * 1000, "table1", subject.guide, [r], r["verified"],
                             time_of_day in r["at_least"])
        t3 = [r for r in rows if r["table"] == 3]
        notes = []
        if container:
            t3 = [r for r in t3 if r["container"] == container]
            if not t3:
                have = sorted({r["container"] for r in rows if r["table"] == 3})
                raise AnalysisError(f"ERG Table 3 has no row for {subject.label()} in container {container!r}; "
                                    f"choose from {', '.join(have)}",
                                    zh=f"ERG 表 3 中没有 {subject.label()} 在容器 {container!r} 中的数据；可选 {'、'.join(have)}")
        else:
            notes.append("未给出容器：取表 3 各容器中最大的距离 / container not given: largest Table 3 distance over all "
                         "containers used")
        wind = wind_class(wind_speed_ms)
        if wind:
            t3 = [r for r in t3 if r["wind"] == wind]
        else:
            notes.append("未给出风速：取表 3 各风速等级中最大的距离 / wind speed not given: largest Table 3 distance over "
                         "all wind classes used")
        r = max(t3, key=lambda r: (r[col], r["isolation_m"]))
        iso = max(x["isolation_m"] for x in t3)
        return Distances(iso, r[col] * 1000, "table3", subject.guide, [r], all(x["verified"] for x in t3),
                         time_of_day in r["at_least"], notes)
    g = subject if isinstance(subject, Guide) else guides().get(subject.guide)
    if g is None:
        raise UnknownSubstanceError(f"{subject.label()} uses ERG guide {subject.guide}, whose distances are not "
                                    "shipped; consult the ERG",
                                    zh=f"{subject.label()} 适用 ERG 指南 {subject.guide}，未收录其距离；请查阅 ERG")
    row = {"table": "guide", "guide": g.guide, "title_en": g.title_en, "title_zh": g.title_zh,
           "isolation_m": g.isolation_m, "large_spill_downwind_m": g.large_spill_downwind_m,
           "fire_isolation_m": g.fire_isolation_m, "edition": EDITION, "verified": g.verified, "source": g.source}
    notes = [f"不在 ERG 表 1 中：按指南 {g.guide}（{g.title_zh}）的距离；储罐着火时四周隔离 {g.fire_isolation_m:.0f} 米 / "
             f"not in ERG Table 1: Guide {g.guide} ({g.title_en}) distances; if a tank is on fire isolate "
             f"{g.fire_isolation_m:.0f} m in all directions"]
    protective = g.large_spill_downwind_m if spill == "large" else None
    if spill == "small":
        notes.append("小量泄漏：该指南只给出隔离距离 / small spill: the guide gives an isolation distance only")
    elif protective is None and g.note:
        notes.append(g.note)
    verified = g.verified and (subject.verified if isinstance(subject, Material) else True)
    return Distances(g.isolation_m, protective, "guide", g.guide, [row], verified, False, notes)


# --------------------------------------------------------------------------- zones

def downwind_square(x: float, y: float, side: float, wind_from_deg: float) -> Polygon:
    """ERG's protective action square in metric coordinates: upwind edge centred on (x, y).

    ``wind_from_deg`` is where the wind blows from (meteorological, clockwise from north); the
    square extends ``side`` metres towards ``wind_from_deg + 180``.
    """
    theta = math.radians((wind_from_deg + 180.0) % 360.0)
    ux, uy = math.sin(theta), math.cos(theta)     # downwind
    vx, vy = uy, -ux                              # crosswind
    h = side / 2
    return Polygon([(x + vx * h, y + vy * h), (x + vx * h + ux * side, y + vy * h + uy * side),
                    (x - vx * h + ux * side, y - vy * h + uy * side), (x - vx * h, y - vy * h)])


def zone_geometries(lon: float, lat: float, d: Distances, wind_from_deg: float | None) -> dict:
    """WGS84 zone polygons: ``isolation`` and (when there is a distance) ``protective`` with shape names."""
    c = to_metric(Point(lon, lat))
    iso = c.buffer(d.isolation_m, quad_segs=32)
    out = {"isolation": {"geom": from_metric(iso), "distance_m": d.isolation_m, "shape": "圆形 circle"}}
    if d.protective_m:
        if wind_from_deg is None:
            outer, shape = c.buffer(d.protective_m, quad_segs=32), "圆形（未给风向） circle (no wind given)"
        else:
            outer, shape = downwind_square(c.x, c.y, d.protective_m, wind_from_deg), "顺风方形 downwind square (ERG)"
        out["protective"] = {"geom": from_metric(outer.difference(iso)), "distance_m": d.protective_m,
                             "shape": shape + "，不含隔离圆 / isolation circle excluded"}
    return out


# --------------------------------------------------------------------------- what is inside

_CONTENTS = """
WITH z AS (SELECT 'isolation' AS zone, ST_GeomFromWKB(:iso, 4326) AS g
           UNION ALL SELECT 'protective', ST_GeomFromWKB(:paz, 4326) WHERE CAST(:paz AS bytea) IS NOT NULL)
SELECT 'receptors' AS layer, z.zone, r.id, r.name, r.kind AS kind, r.protection_class AS class, r.people,
       NULL::int AS level, r.synthetic FROM receptors r JOIN z ON ST_Intersects(r.geom, z.g)
UNION ALL
SELECT 'hazard_installations', z.zone, h.id, h.name, h.unit_type, e.name, NULL, h.level, h.synthetic
FROM hazard_installations h JOIN z ON ST_Intersects(h.geom, z.g) LEFT JOIN enterprises e ON e.id = h.enterprise_id
UNION ALL
SELECT 'tailings_ponds', z.zone, t.id, t.name, t.status, t.mine, NULL, t.grade, t.synthetic
FROM tailings_ponds t JOIN z ON ST_Intersects(t.geom, z.g)
ORDER BY 1, 2, 5, 3"""


@dataclass(frozen=True)
class Session:
    """What the incident queries need first, from one round trip (:func:`prepare`)."""

    population: Registered | None  # the registered population raster (path-like, with its synthetic flag)
    graph_key: tuple | None     # the road graph's version row, for :func:`gis.roadgraph.get`


_PREPARE = text("""
SELECT set_config('jit', 'off', true) AS jit,
       (SELECT path FROM rasters WHERE name = 'population') AS population,
       (SELECT synthetic FROM rasters WHERE name = 'population') AS population_synthetic,
       (SELECT version FROM layer_versions WHERE layer = 'road_graph') AS graph_version,
       (SELECT xmin::text FROM layer_versions WHERE layer = 'road_graph') AS graph_x""")


def prepare(conn: Connection) -> Session:
    """JIT off for this transaction, the population raster and the road graph's version, in one round trip.

    PostGIS's high function costs push the small incident queries over ``jit_above_cost``: compiling them
    took ~5 ms for a ~2 ms query (ranked resources at x10, bench/emergency.py).
    """
    row = conn.execute(_PREPARE).one()
    return Session(None if row.population is None else Registered("population", registered_path(row.population),
                                                                  bool(row.population_synthetic)),
                   None if row.graph_version is None else (row.graph_version, row.graph_x))


def zone_contents(conn: Connection, zones: dict, session: Session | None = None) -> dict:
    """Receptors by kind (with names), hazard installations and tailings ponds in each zone (one query;
    :func:`prepare` first unless ``session`` says it ran in this transaction)."""
    paz = zones.get("protective")
    if session is None:
        prepare(conn)
    rows = conn.execute(text(_CONTENTS), {"iso": zones["isolation"]["geom"].wkb,
                                          "paz": paz["geom"].wkb if paz else None}).mappings().all()
    out = {z: {"receptors": {}, "receptor_count": 0, "receptor_people": 0, "hazard_installations": [],
               "tailings_ponds": []} for z in zones}
    synthetic = False
    for r in rows:
        synthetic |= bool(r["synthetic"])
        o = out[r["zone"]]
        if r["layer"] == "receptors":
            o["receptors"].setdefault(r["kind"] or "other", []).append(
                {"id": r["id"], "name": r["name"], "protection_class": r["class"], "people": r["people"]})
            o["receptor_count"] += 1
            o["receptor_people"] += r["people"] or 0
        elif r["layer"] == "hazard_installations":
            o["hazard_installations"].append({"id": r["id"], "name": r["name"], "unit_type": r["kind"],
                                              "enterprise": r["class"], "level": r["level"]})
        else:
            o["tailings_ponds"].append({"id": r["id"], "name": r["name"], "status": r["kind"], "mine": r["class"],
                                        "grade": r["level"]})
    return {"zones": out, "synthetic": synthetic}


# --------------------------------------------------------------------------- resources

# Resources not to be used inside a zone: people are not sent to a shelter in either zone, casualties not
# to a hospital in the isolation zone. Others in a zone (fire stations, rescue teams, depots, hospitals in the
# protective zone) stay usable, with a warning.
NO_GO = {"shelter": ("isolation", "protective"), "hospital": ("isolation",)}

_CANDIDATES = """
WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), 4326) AS g, ST_GeomFromWKB(:iso, 4326) AS iso,
                  ST_GeomFromWKB(:paz, 4326) AS paz)
SELECT r.id, r.name, r.kind, r.capacity, r.address, r.contact_name, r.contact_phone, r.synthetic, r.lon, r.lat,
       r.straight_m, r.in_zone
FROM p CROSS JOIN unnest(CAST(:kinds AS text[])) AS k(kind)
CROSS JOIN LATERAL (
  SELECT r.id, r.name, r.kind, r.capacity, r.address, r.contact_name, r.contact_phone, r.synthetic,
         ST_X(r.geom) AS lon, ST_Y(r.geom) AS lat, ST_Distance(r.geom::geography, p.g::geography) AS straight_m,
         z.in_zone
  FROM emergency_resources r
  CROSS JOIN LATERAL (SELECT CASE WHEN ST_Intersects(r.geom, p.iso) THEN 'isolation'
                                  WHEN ST_Intersects(r.geom, p.paz) THEN 'protective' END AS in_zone) z
  WHERE r.kind = k.kind AND (CAST(:cap AS int) IS NULL OR r.capacity >= CAST(:cap AS int))
    AND ST_DWithin(r.geom::geography, p.g::geography, :radius)
  -- those not to be used come last, so they never crowd out usable ones (a large zone holds many shelters)
  ORDER BY coalesce(r.kind || ':' || z.in_zone = ANY(CAST(:nogo AS text[])), false), r.geom <-> p.g
  LIMIT :per_kind) r"""
_NO_GO_KEYS = [f"{kind}:{zone}" for kind, zones in NO_GO.items() for zone in zones]


def rank_resources(conn: Connection, lon: float, lat: float, *, kinds: list[str] | None = None,
                   min_capacity: int | None = None, zones: dict | None = None,
                   radius_m: float = SEARCH_RADIUS_M, per_kind: int = CANDIDATES_PER_KIND,
                   show_contacts: bool = False) -> list[dict]:
    """Emergency resources ranked by road travel time to (lon, lat), straight-line distance beside it.

    One query: per kind, the ``per_kind`` resources nearest in a straight line within ``radius_m`` are
    the candidates (GiST KNN). Incident and candidates are snapped to their nearest road nodes and a
    single Dijkstra on the reversed graph from the incident's node gives every resource's driving time to
    the incident, on the in-memory graph (:mod:`gis.roadgraph`). Off-network legs (point to node) count at
    ``ACCESS_SPEED_KMH``.

    Per kind, the candidates not to be used inside a zone (:data:`NO_GO`) are taken only after all others.
    Order: usable resources by travel time (those inside a zone with a ``warning``); then the ones inside
    a zone not to be used (flagged, with the reason); then resources not reachable on the network, each
    with the reason. Reasons and warnings are Chinese and English.
    """
    rows, g = resource_candidates(conn, lon, lat, kinds=kinds, min_capacity=min_capacity, zones=zones,
                                  radius_m=radius_m, per_kind=per_kind)
    return rank_candidates(rows, g, lon, lat, show_contacts=show_contacts)


def resource_candidates(conn: Connection, lon: float, lat: float, *, kinds: list[str] | None = None,
                        min_capacity: int | None = None, zones: dict | None = None,
                        radius_m: float = SEARCH_RADIUS_M, per_kind: int = CANDIDATES_PER_KIND,
                        session: Session | None = None):
    """The database part of :func:`rank_resources`: the candidate rows and the in-memory road graph
    (:func:`prepare` first unless ``session`` is its result in this transaction)."""
    for k in kinds or []:
        if k not in RESOURCE_KINDS:
            raise AnalysisError(f"kind must be one of {', '.join(RESOURCE_KINDS)}; got {k!r}",
                                zh=f"资源类型应为 {'、'.join(RESOURCE_KINDS)} 之一，而非 {k!r}")
    zones = zones or {}
    params = {"x": lon, "y": lat, "kinds": list(kinds or RESOURCE_KINDS), "cap": min_capacity, "radius": radius_m,
              "per_kind": per_kind, "nogo": _NO_GO_KEYS,
              "iso": zones["isolation"]["geom"].wkb if "isolation" in zones else EMPTY_WKB,
              "paz": zones["protective"]["geom"].wkb if "protective" in zones else EMPTY_WKB}
    session = session or prepare(conn)
    rows = conn.execute(text(_CANDIDATES), params).mappings().all()
    return rows, roadgraph.get(conn, session.graph_key)


def rank_candidates(rows, g: roadgraph.RoadGraph, lon: float, lat: float, *,
                    show_contacts: bool = False) -> list[dict]:
    """The search part of :func:`rank_resources` (no database: it can run beside a query)."""
    inc = node = None
    if g.n and rows:
        idx, dist = g.nearest([lon] + [r["lon"] for r in rows], [lat] + [r["lat"] for r in rows])
        inc, inc_snap, node, snap = idx[0], dist[0], idx[1:], dist[1:]
        times = g.times_to(inc, node)  # reversed graph from the incident: each resource's drive to it, one search
    access = ACCESS_SPEED_KMH / 3.6
    usable, flagged, unreachable = [], [], []
    for i, r in enumerate(rows):
        item = {k: r[k] for k in ("id", "name", "kind", "capacity", "address", "lon", "lat", "synthetic", "in_zone")}
        if show_contacts:
            item.update(contact_name=r["contact_name"], contact_phone=r["contact_phone"])
        item["straight_m"] = round(r["straight_m"], 1)
        reason = None
        if inc is None:
            reason = ("路网为空（导入道路并运行 riskmap analyze roads）；road graph is empty (import roads, run "
                      "`riskmap analyze roads`)")
        elif inc_snap > OFFROAD_MAX_M:
            reason = (f"事故点距最近道路 {inc_snap:.0f} 米（> {OFFROAD_MAX_M:.0f} 米）；"
                      f"incident is {inc_snap:.0f} m from the nearest road (> {OFFROAD_MAX_M:.0f} m)")
        elif snap[i] > OFFROAD_MAX_M:
            reason = f"资源点 {OFFROAD_MAX_M:.0f} 米内无道路；no road within {OFFROAD_MAX_M:.0f} m of the resource"
        elif g.node_component[node[i]] != g.node_component[inc]:
            reason = "所在路网与事故点不连通；on a road network part not connected to the incident's"
        elif not np.isfinite(times[i]):
            reason = "无可行驶路径（单行道）；no drivable path (one-way roads)"
        if reason:
            unreachable.append(dict(item, reachable=False, reason=reason, travel_s=None, road_m=None, warning=None))
            continue
        net = float(times[i])
        item.update(reachable=True, reason=None, warning=None, network_s=round(net, 1),
                    travel_s=round(net + (snap[i] + inc_snap) / access, 1))
        zone, warnings = r["in_zone"], []
        for (zh, en), off in ((("事故点", "the incident"), inc_snap), (("资源点", "the resource"), float(snap[i]))):
            if off > MAX_SNAP_M:  # (a spill in a field, a depot the road layer misses: reached, with that leg)
                warnings.append(f"{zh}距最近道路 {off:.0f} 米，时间含按 {ACCESS_SPEED_KMH:g} km/h 估算的非道路段；"
                                f"{en} is {off:.0f} m from the nearest road: the time includes that leg at "
                                f"{ACCESS_SPEED_KMH:g} km/h")
        if zone in NO_GO.get(r["kind"], ()):
            whom = ("人员", "people") if r["kind"] == "shelter" else ("伤员", "casualties")
            item.update(usable=False, warning=" | ".join(warnings) or None,
                        reason=f"位于{ZONES[zone][0]}内，勿送{whom[0]}前往；inside the {ZONES[zone][1].lower()}: "
                               f"do not send {whom[1]} there")
            flagged.append(item)
        else:
            if zone:
                warnings.append(f"位于{ZONES[zone][0]}内，需防护并从上风向出入；inside the {ZONES[zone][1].lower()}: "
                                "protective equipment, approach from upwind")
            item.update(usable=True, warning=" | ".join(warnings) or None)
            usable.append(item)
    usable.sort(key=lambda i: (i["travel_s"], i["straight_m"]))
    flagged.sort(key=lambda i: i["travel_s"])
    unreachable.sort(key=lambda i: i["straight_m"])
    for i in unreachable:
        i["usable"] = False
    return usable + flagged + unreachable


def top_per_kind(ranked: list[dict], limit: int) -> dict[str, list[dict]]:
    """The first ``limit`` of each kind, in rank order (unreachable ones kept only to fill the list)."""
    out: dict[str, list[dict]] = {k: [] for k in RESOURCE_KINDS}
    for i in ranked:
        if len(out.setdefault(i["kind"], [])) < limit:
            out[i["kind"]].append(i)
    return out


# --------------------------------------------------------------------------- the whole answer

@dataclass(frozen=True)
class IncidentInput:
    lon: float
    lat: float
    chemical: str
    spill: str = "large"
    time: str = "day"
    wind_from_deg: float | None = None
    wind_speed_ms: float | None = None
    container: str | None = None
    resource_limit: int = 5

    def check(self, area: tuple[float, float, float, float] | None = None) -> None:
        if not (-180 <= self.lon <= 180 and -90 <= self.lat <= 90):
            raise AnalysisError("lon/lat must be WGS84 degrees", zh="经纬度应为 WGS84 度数")
        if area and not in_box(self.lon, self.lat, area):
            raise AnalysisError(f"the point ({self.lon}, {self.lat}) is outside the served area {list(area)}",
                                zh=f"该点（{self.lon}, {self.lat}）位于服务范围 {list(area)} 之外")
        if self.wind_from_deg is not None and not (0 <= self.wind_from_deg <= 360):
            raise AnalysisError("wind_from_deg must be between 0 and 360 (direction the wind blows from)",
                                zh="风向 wind_from_deg 应在 0–360 之间（风的来向）")
        if self.wind_speed_ms is not None and not (0 <= self.wind_speed_ms < 80):
            raise AnalysisError("wind_speed_ms must be between 0 and 80", zh="风速 wind_speed_ms 应在 0–80 m/s 之间")
        if not (1 <= self.resource_limit <= 50):
            raise AnalysisError("resource_limit must be between 1 and 50", zh="资源数 resource_limit 应在 1–50 之间")


_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="riskmap-incident")


def _timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t) * 1000


def analyse_incident(conn: Connection, inp: IncidentInput, *, show_contacts: bool = False,
                     area: tuple[float, float, float, float] | None = None) -> dict:
    """Zones, what is in them and the ranked resources for one incident (JSON-ready dict).

    ``timings_ms`` gives the time of the steps on this thread (zones, resource candidates, contents),
    of the raster sum (in a worker, overlapping them) and the wall ``total``; nothing is computed
    twice. The database is asked three times: :func:`prepare` (JIT off, the population raster, the
    road graph's version), the resource candidates and the contents; the raster sum and the
    travel-time search (on the graph held in memory) run in worker threads meanwhile.
    """
    t0 = time.perf_counter()
    inp.check(area)
    subject = find_material(inp.chemical)
    d = erg_distances(subject, inp.spill, inp.time, inp.container, inp.wind_speed_ms)
    zones = zone_geometries(inp.lon, inp.lat, d, inp.wind_from_deg)
    t1 = time.perf_counter()
    # The raster sum and the graph search need no database: they run in worker threads while the
    # candidates and contents queries run here (the raster sum as soon as its path is known, the
    # search once the candidates are fetched).
    session = prepare(conn)
    path = session.population
    pop = _POOL.submit(_timed, zonal_sum, path, [z["geom"] for z in zones.values()]) if path else None
    rows, graph = resource_candidates(conn, inp.lon, inp.lat, zones=zones, session=session)
    search = _POOL.submit(rank_candidates, rows, graph, inp.lon, inp.lat, show_contacts=show_contacts)
    t2 = time.perf_counter()
    contents = zone_contents(conn, zones, session)
    t3 = time.perf_counter()
    ranked = search.result()
    people, pop_ms = pop.result() if pop else (None, 0.0)
    t4 = time.perf_counter()
    resources = top_per_kind(ranked, inp.resource_limit)
    zone_out = {}
    for (name, z), n in zip(zones.items(), people or [None] * len(zones)):
        zone_out[name] = {"distance_m": z["distance_m"], "shape": z["shape"],
                          "area_km2": round(to_metric(z["geom"]).area / 1e6, 4),
                          "population": None if n is None else round(n, 1),
                          "geometry": mapping(z["geom"]), **contents["zones"][name]}
    if isinstance(subject, Material):
        chem = {"un_number": subject.un_number, "name_zh": subject.name_zh, "name_en": subject.name_en,
                "guide": subject.guide, "cas": subject.cas, "index_verified": subject.verified,
                "index_source": subject.source}
    else:
        chem = {"un_number": None, "name_zh": subject.title_zh, "name_en": subject.title_en, "guide": subject.guide}
    features_synthetic = contents["synthetic"] or any(i["synthetic"] for i in ranked)
    grid_synthetic = people is not None and path.synthetic
    synthetic = features_synthetic or grid_synthetic
    warnings = list(d.notes)
    if not d.verified:
        warnings.insert(0, "ERG 数据未核实：所用数据至少一行未能与 ERG 原文核对 / UNVERIFIED ERG data: at least one row "
                           "used could not be verified against the ERG text")
    if people is None:
        warnings.append("未登记人口栅格：未统计人口 / no population grid registered: population not counted")
    if d.at_least:
        warnings.append("ERG 标注“+”：特定气象条件下距离可能更大 / ERG marks this distance '+': it can be larger in "
                        "certain atmospheric conditions")
    if grid_synthetic:
        warnings.append(path.note)
    if features_synthetic:
        warnings.append(SYNTHETIC_FEATURES)
    warnings += _outside_warnings(zones, area) + _missing_kinds(resources)
    return {
        "decision_support": "辅助决策，不替代现场指挥判断 / Decision support only: it does not replace the "
                            "incident commander's judgement",
        "inputs": asdict(inp),
        "chemical": chem,
        "erg": {"edition": EDITION, "basis": d.basis, "guide": d.guide, "isolation_m": d.isolation_m,
                "protective_m": d.protective_m, "verified": d.verified, "at_least": d.at_least, "rows": d.rows,
                "wind_class": wind_class(inp.wind_speed_ms)},
        "zones": zone_out,
        "resources": resources,
        "synthetic_data": synthetic,
        "warnings": warnings,
        "timings_ms": {"zones": round((t1 - t0) * 1000, 2), "resource_candidates": round((t2 - t1) * 1000, 2),
                       "contents": round((t3 - t2) * 1000, 2), "population": round(pop_ms, 2),
                       "total": round((t4 - t0) * 1000, 2)},
    }


def _outside_warnings(zones: dict, area: tuple[float, float, float, float] | None) -> list[str]:
    """A zone reaching past the served area: its people, receptors and installations are counted only inside
    (the data stop at its edge), so an edge incident's counts are a floor, not "0 people"."""
    if area is None:
        return []
    out, box = [], shapely.box(*area)
    for name, z in zones.items():  # (shares of areas in lon/lat: the same as in metres over a zone's few km)
        whole = z["geom"]
        share = 1 - whole.intersection(box).area / whole.area if whole.area else 0.0
        if share >= 0.01:
            zh, en = ZONES[name][:2]
            out.append(f"{zh}有 {share:.0%} 位于服务范围之外：人口、防护目标和危险源只计入范围内部分（为下限）/ "
                       f"{share:.0%} of the {en.lower()} lies outside the served area: people, receptors and "
                       "installations are counted inside it only (a floor)")
    return out


def _missing_kinds(resources: dict[str, list]) -> list[str]:
    """A resource kind with none within the search radius (the list leaves it out): said, not silently missing."""
    names = registry.get("emergency_resources").field("kind").codes
    return [f"{SEARCH_RADIUS_M / 1000:g} 公里内没有{names[k].zh} / no {names[k].en.lower()} within "
            f"{SEARCH_RADIUS_M / 1000:g} km" for k, found in resources.items() if not found and k in names]


# --------------------------------------------------------------------------- incidents (hand-over)

def save_incident(conn: Connection, result: dict, user: str) -> int:
    """Store an analysed incident (who, when, inputs, answer) and its zones; returns the incident id."""
    inp, chem, erg = result["inputs"], result["chemical"], result["erg"]
    name = f"{chem['name_zh']} {chem['name_en']}" + (f" UN{chem['un_number']}" if chem["un_number"] else "")
    iid = conn.execute(text("""
        INSERT INTO incidents (name, synthetic, source, created_by, un_number, chemical, spill, time_of_day,
                               wind_from_deg, isolation_m, protective_m, verified, inputs, result, geom)
        VALUES (:name, :syn, :src, :by, :un, :chem, :spill, :tod, :wind, :iso, :pad, :ver, CAST(:inputs AS jsonb),
                CAST(:result AS jsonb), ST_SetSRID(ST_MakePoint(:x, :y), 4326)) RETURNING id"""), {
        "name": name, "syn": result["synthetic_data"], "src": f"riskmap emergency analysis ({EDITION})", "by": user,
        "un": chem["un_number"], "chem": inp["chemical"], "spill": inp["spill"], "tod": inp["time"],
        "wind": inp["wind_from_deg"], "iso": erg["isolation_m"], "pad": erg["protective_m"], "ver": erg["verified"],
        "inputs": json.dumps(inp, ensure_ascii=False), "result": json.dumps(result, ensure_ascii=False, default=str),
        "x": inp["lon"], "y": inp["lat"]}).scalar_one()
    for zname, z in result["zones"].items():
        conn.execute(text("""
            INSERT INTO incident_zones (name, synthetic, source, incident_id, zone, distance_m, shape, people, geom)
            VALUES (:name, :syn, :src, :iid, :zone, :dist, :shape, :people,
                    ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(:gj), 4326)))"""), {
            "name": f"#{iid} {name}", "syn": result["synthetic_data"], "src": EDITION, "iid": iid, "zone": zname,
            "dist": z["distance_m"], "shape": z["shape"], "people": z["population"],
            "gj": json.dumps(z["geometry"])})
    return iid


__all__ = ["Material", "Guide", "Distances", "IncidentInput", "materials", "guides", "find_material",
           "search_materials", "erg_distances", "zone_geometries", "downwind_square", "zone_contents",
           "rank_resources", "top_per_kind", "analyse_incident", "save_incident", "wind_class"]
