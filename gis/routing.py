"""Hazmat route checking and compliant route planning on the road graph (pgRouting).

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
:func:`plan_route` removes the banned edges and asks pgRouting for the fastest compliant route, next
to the unrestricted one; time-window bans met on the way are added and the route re-planned.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from functools import cache
from pathlib import Path
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

from pyproj import Geod
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from gis.roadnet import GraphSettings, along_sql, nearest_node
from layers.crs import METRIC_EPSG
from layers.derived import layer_versions

DATA = Path(__file__).with_name("data")
GEOD = Geod(ellps="WGS84")
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
HAZARD_CLASS = re.compile(r"^(1(\.[1-6][A-L]?)?|2(\.[1-3])?|3|4(\.[1-3])?|5(\.[12])?|6(\.[12])?|7|8|9)$")
TARGETS = ("structure", "water_zone", "road")
VERDICT_ORDER = {"forbidden": 2, "warning": 1}
VERDICT_TEXT = {"forbidden": ("禁止通行", "forbidden"), "warning": ("注意", "warning"), "allowed": ("允许通行", "allowed")}
CARGO_HELP = ('name the cargo as {"un_number": "1017"} (UN number, see GET /routes/cargo) or '
              '{"hazard_class": "2.3"} (UN/GB 6944 class or division: 1.1–1.6, 2.1–2.3, 3, 4.1–4.3, 5.1, 5.2, '
              '6.1, 6.2, 7, 8, 9), optionally with "quantity_t"')
# Structure class from kind and length when a record has none: JTG highway classes (reference §5).
STRUCTURE_CLASS_SQL = """coalesce(s.structure_class, CASE
    WHEN s.kind = 'tunnel' THEN CASE WHEN s.length_m > 3000 THEN 'tunnel_xl' WHEN s.length_m > 1000 THEN 'tunnel_l'
                                     WHEN s.length_m > 500 THEN 'tunnel_m' WHEN s.length_m IS NOT NULL THEN 'tunnel_s' END
    WHEN s.kind = 'bridge' THEN CASE WHEN s.length_m > 1000 THEN 'bridge_xl' WHEN s.length_m >= 100 THEN 'bridge_l'
                                     WHEN s.length_m > 30 THEN 'bridge_m' WHEN s.length_m IS NOT NULL THEN 'bridge_s' END
    END)"""


@dataclass(frozen=True)
class RouteSettings:
    """Defaults of checking and planning (docs/road-safety.md)."""

    match_tolerance_m: float = 20.0   # a route within this of a structure line runs over it ...
    match_share: float = 0.5          # ... if along it for this share of the shorter of the two
    check_speed_kmh: float = 60.0     # average speed for arrival times on a drawn/uploaded route
    max_snap_m: float = 2000.0        # origin/destination farther than this from the road graph: refused
    max_vertices: int = 50000
    alt_factor: float = 1.05          # first search: cells that may hold a path within factor x the ALT bound ...
    alt_margin_s: float = 0.0         # ... + margin (seconds); tuned in bench/routes.py
    full_share: float = 0.6           # search the whole graph once the cells hold this share of the nodes
    prune_above_nodes: int = 20000    # smaller graphs are always searched whole (pruning costs more there)
    replans: int = 4                  # re-plans for time-window bans met on the way


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
        raise AnalysisError(f"cargo missing: {CARGO_HELP}")
    qty = spec.get("quantity_t")
    if qty is not None:
        try:
            qty = float(qty)
        except (TypeError, ValueError):
            raise AnalysisError(f"cargo quantity_t must be a number of tonnes, got {qty!r}") from None
        if not math.isfinite(qty) or qty < 0:
            raise AnalysisError(f"cargo quantity_t must be ≥ 0 tonnes, got {qty}")
    un = str(spec.get("un_number") or "").strip().upper().removeprefix("UN").strip()
    cls = str(spec.get("hazard_class") or "").strip()
    if un:
        row = un_table().get(un.zfill(4))
        if row is None:
            raise AnalysisError(f"unknown UN number {un!r}: {CARGO_HELP}")
        if cls and _division(cls) != row["hazard_class"]:
            raise AnalysisError(f"UN{row['un_number']} is class {row['hazard_class']}, not {cls}")
        return Cargo(row["hazard_class"], (row["hazard_class"], *row["subsidiary"]), row["un_number"],
                     row["name_zh"], row["name_en"], qty)
    if cls:
        if not HAZARD_CLASS.match(cls):
            raise AnalysisError(f"unknown hazard class {cls!r}: {CARGO_HELP}")
        return Cargo(_division(cls), (_division(cls),), quantity_t=qty)
    raise AnalysisError(f"cargo has neither un_number nor hazard_class: {CARGO_HELP}")


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
        out.append(validate_rule(r))
    return out


def _time(value, name: str) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise AnalysisError(f"rule {name} must be a time of day HH:MM, got {value!r}") from None


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
            raise AnalysisError(f"rule {k} is required (Chinese and English names)")
    if r["target"] not in TARGETS:
        raise AnalysisError(f"rule target must be one of {', '.join(TARGETS)}")
    for k in _LISTS:
        v = r[k]
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) and x for x in v)):
            raise AnalysisError(f"rule {k} must be a list of codes")
        r[k] = v or None
    if not r["cargo_classes"]:
        raise AnalysisError('rule cargo_classes is required (e.g. ["2.3"], ["2"], ["*"] for all dangerous goods)')
    for c in r["cargo_classes"]:
        if c != "*" and not HAZARD_CLASS.match(c):
            raise AnalysisError(f"rule cargo class {c!r} is not a hazard class (or * for all)")
    from layers.registry import get

    allowed = {"structure_classes": set(get("restricted_structures").field("structure_class").codes),
               "adr_categories": set("ABCDE"), "zone_levels": set(get("water_source_zones").field("zone_level").codes),
               "road_classes": set(get("roads").field("road_class").codes)}
    for k, codes in allowed.items():
        bad = sorted(set(r[k] or ()) - codes)
        if bad:
            raise AnalysisError(f"rule {k} has unknown codes {bad}; allowed: {', '.join(sorted(codes))}")
    own = {"structure": ("structure_classes", "adr_categories"), "water_zone": ("zone_levels",),
           "road": ("road_classes",)}[r["target"]]
    stray = [k for k in ("structure_classes", "adr_categories", "zone_levels", "road_classes")
             if r[k] and k not in own]
    if stray:
        raise AnalysisError(f"a {r['target']} rule cannot filter by {', '.join(stray)}")
    if r["min_quantity_t"] is not None:
        try:
            r["min_quantity_t"] = float(r["min_quantity_t"])
        except (TypeError, ValueError):
            raise AnalysisError("rule min_quantity_t must be a number of tonnes") from None
    r["ban_start"], r["ban_end"] = _time(r["ban_start"], "ban_start"), _time(r["ban_end"], "ban_end")
    if r["weekdays"] is not None:
        try:
            r["weekdays"] = sorted({int(d) for d in r["weekdays"]})
        except (TypeError, ValueError):
            raise AnalysisError("rule weekdays must be ISO weekday numbers 1 (Mon) … 7 (Sun)") from None
        if not r["weekdays"] or not all(1 <= d <= 7 for d in r["weekdays"]):
            raise AnalysisError("rule weekdays must be ISO weekday numbers 1 (Mon) … 7 (Sun)")
    r["verdict"] = r["verdict"] or "forbidden"
    if r["verdict"] not in VERDICT_ORDER:
        raise AnalysisError("rule verdict must be forbidden or warning")
    r["active"] = True if r["active"] is None else bool(r["active"])
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


def rule_applies(rule: dict, cargo: Cargo) -> bool:
    """Whether ``rule`` concerns ``cargo`` (class or a subsidiary risk; quantity when both are known)."""
    if not any(class_matches(rc, c) for rc in rule["cargo_classes"] for c in cargo.classes):
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
    """Whether the rule is in force at some moment in [start, end] (checked every 5 minutes and at the ends)."""
    if not has_window(rule):
        return True
    step, t = timedelta(minutes=5), start
    while t < end:
        if in_force(rule, t):
            return True
        t += step
    return in_force(rule, end)


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
            raise AnalysisError(f"departure must be an ISO 8601 time like 2026-03-01T08:30+08:00, got {value!r}") \
                from None
    return t if t.tzinfo else t.replace(tzinfo=LOCAL_TZ)


# ---------------------------------------------------------------- route input


def _check_positions(coords, max_vertices: int) -> list[list[float]]:
    if not isinstance(coords, list) or len(coords) < 2:
        raise AnalysisError("a route needs at least two positions [lon, lat]")
    if len(coords) > max_vertices:
        raise AnalysisError(f"a route may have at most {max_vertices} positions, got {len(coords)}")
    out = []
    for i, c in enumerate(coords):
        try:
            lon, lat = float(c[0]), float(c[1])
        except (TypeError, ValueError, IndexError, KeyError):
            raise AnalysisError(f"route position {i} is not [lon, lat]: {c!r}") from None
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise AnalysisError(f"route position {i} is not lon/lat in degrees (EPSG:4326): {c!r}")
        out.append([lon, lat])
    if len({tuple(c) for c in out}) < 2:
        raise AnalysisError("a route needs at least two distinct positions")
    return out


def route_geojson(value, max_vertices: int = 50000) -> dict:
    """A GeoJSON LineString from a LineString, a Feature with one, or a FeatureCollection with one line."""
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        lines = [f for f in value.get("features") or [] if (f.get("geometry") or {}).get("type") == "LineString"]
        if len(lines) != 1:
            raise AnalysisError("a FeatureCollection route must hold exactly one LineString feature")
        value = lines[0]
    if isinstance(value, dict) and value.get("type") == "Feature":
        value = value.get("geometry")
    if not isinstance(value, dict) or value.get("type") != "LineString":
        raise AnalysisError("route must be a GeoJSON LineString (lon/lat, EPSG:4326)")
    return {"type": "LineString", "coordinates": _check_positions(value.get("coordinates"), max_vertices)}


def gpx_to_geojson(gpx: str | bytes, max_vertices: int = 50000) -> dict:
    """The track (trk/trkseg/trkpt, all segments joined) or else the route (rte/rtept) of a GPX document."""
    if (b"<!DOCTYPE" if isinstance(gpx, bytes) else "<!DOCTYPE") in gpx[:4096]:
        raise AnalysisError("GPX with a DOCTYPE (entity declarations) is refused")
    try:
        root = ElementTree.fromstring(gpx)
    except ElementTree.ParseError as exc:
        raise AnalysisError(f"not a GPX (XML) document: {exc}") from None
    if not root.tag.endswith("gpx"):
        raise AnalysisError("not a GPX document (root element is not <gpx>)")
    local = lambda el: el.tag.rsplit("}", 1)[-1]  # noqa: E731 - GPX 1.0 and 1.1 namespaces
    points = [el for el in root.iter() if local(el) == "trkpt"] or [el for el in root.iter() if local(el) == "rtept"]
    if not points:
        raise AnalysisError("the GPX holds no track points (trkpt) or route points (rtept)")
    coords = [[el.get("lon"), el.get("lat")] for el in points]
    return {"type": "LineString", "coordinates": _check_positions(coords, max_vertices)}


# ---------------------------------------------------------------- check


# Where the covered stretch of a structure (or edge) t.sg starts/ends on the route r.g (fractions).
ON_ROUTE = ("{lo}(ST_LineLocatePoint(r.g, ST_LineInterpolatePoint(t.sg, loc.slo)), "
            "ST_LineLocatePoint(r.g, ST_LineInterpolatePoint(t.sg, loc.shi)))")


_ROAD_PARTS = f"""
          UNION ALL  -- roads of a restricted class: every edge the route runs along, grouped by road
          SELECT 'road', rd.id, coalesce(rd.name, rd.ref), rd.road_class, NULL, rd.synthetic,
                 min({ON_ROUTE.format(lo="least")}), max({ON_ROUTE.format(lo="greatest")})
          FROM r JOIN road_edges e ON ST_DWithin(e.geom, r.g4, :deg)
                                      AND e.road_class = ANY(CAST(:classes AS text[]))
          JOIN roads rd ON rd.id = e.road_id
          CROSS JOIN LATERAL (SELECT ST_Transform(e.geom, {METRIC_EPSG}) AS sg) t
          {along_sql("r.g", "t.sg")}
          GROUP BY rd.id"""


def _parts(conn: Connection, route: str, s: RouteSettings, road_classes: list[str]) -> list[dict]:
    """Structures, zones and roads of the given classes the route runs along or through, in one query.

    Each: target, id, name, class, adr, synthetic, lo/hi (fractions along the route), route_m (its
    metric length) and geometry (GeoJSON of the stretch lo..hi).
    """
    params = {"route": route, "tol": float(s.match_tolerance_m), "share": float(s.match_share),
              "deg": float(s.match_tolerance_m) / 90000.0, "classes": road_classes}
    roads = _ROAD_PARTS if road_classes else ""  # edges are matched only when a road ban can apply
    # the set-returning functions' default estimates (1000 rows each) make this look huge: JIT compiling it
    # would cost ~0.3 s for a query that runs in about a millisecond
    conn.execute(text("SET LOCAL jit = off"))
    rows = conn.execute(text(f"""
        WITH r AS (SELECT g AS g4, ST_Transform(g, {METRIC_EPSG}) AS g
                   FROM ST_SetSRID(ST_GeomFromGeoJSON(:route), 4326) AS g),
        p AS (
          SELECT 'structure' AS target, s.id, s.name, {STRUCTURE_CLASS_SQL} AS class, s.adr_category AS adr,
                 s.synthetic, {ON_ROUTE.format(lo="least")} AS lo, {ON_ROUTE.format(lo="greatest")} AS hi
          FROM r JOIN restricted_structures s ON ST_DWithin(s.geom, r.g4, :deg)
          CROSS JOIN LATERAL (SELECT ST_Transform(s.geom, {METRIC_EPSG}) AS sg) t
          {along_sql("r.g", "t.sg")}
          UNION ALL
          SELECT 'water_zone', z.id, z.name, z.zone_level, NULL, z.synthetic, loc.lo, loc.hi
          FROM r JOIN water_source_zones z ON ST_Intersects(z.geom, r.g4)
          CROSS JOIN LATERAL (SELECT min(ST_LineLocatePoint(r.g, d.geom)) AS lo,
                                     max(ST_LineLocatePoint(r.g, d.geom)) AS hi
                              FROM ST_DumpPoints(ST_Intersection(r.g, ST_Transform(z.geom, {METRIC_EPSG}))) d) loc
          WHERE loc.lo IS NOT NULL
          {roads})
        SELECT p.*, ST_Length(r.g) AS route_m,
               ST_AsGeoJSON(ST_Transform(ST_LineSubstring(r.g, p.lo, greatest(p.hi, least(p.lo + 1 / ST_Length(r.g), 1))),
                                         4326), 7) AS geometry
        FROM p, r"""), params).mappings().all()
    return [dict(x) for x in rows]


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
    for (d0, t0), (d1, t1) in zip(profile, profile[1:]):
        if dist <= d1 or (d1, t1) == profile[-1]:
            f = 0.0 if d1 == d0 else min(max((dist - d0) / (d1 - d0), 0.0), 1.0)
            return departure + timedelta(seconds=t0 + f * (t1 - t0))
    return departure


def _verdict(conflicts: list[dict]) -> str:
    worst = max((VERDICT_ORDER[c["verdict"]] for c in conflicts), default=0)
    return {2: "forbidden", 1: "warning", 0: "allowed"}[worst]


def check_route(conn: Connection, route: dict, cargo: Cargo, departure: datetime | None,
                settings: RouteSettings | None = None, profile: list[tuple[float, float]] | None = None,
                rules: list[dict] | None = None) -> dict:
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
        Rules to apply (default: the active rules in ``route_rules``).

    Returns
    -------
    dict
        ``verdict`` (forbidden, warning or allowed, with ``verdict_zh``), ``length_m``, ``cargo``, and
        ``conflicts`` sorted by distance, each with target (structure, water_zone or road), target_id,
        target_name, target_class, rule_id, rule (zh/en), rule_source, distance_m (from the start),
        length_m, eta, verdict and geometry (the conflicting stretch of the route).
    """
    s = settings or RouteSettings()
    applicable = [r for r in (rules if rules is not None else list_rules(conn, active_only=True))
                  if rule_applies(r, cargo)]
    route_json = json.dumps(route)
    length = GEOD.line_length(*zip(*route["coordinates"]))
    profile = profile or [(0.0, 0.0), (length, length / (s.check_speed_kmh / 3.6))]
    end = departure + timedelta(seconds=profile[-1][1]) if departure else None
    # road-class rules are matched edge by edge: only when one can be in force during the trip
    road_classes = sorted({c for r in applicable if r["target"] == "road" and (
        departure is None or _window_hits(r, departure, end)) for c in (r["road_classes"] or ())})
    parts = sorted(_parts(conn, route_json, s, road_classes) if applicable else [], key=lambda p: p["lo"])
    best: dict[tuple, dict] = {}  # per structure/zone/road: the most severe rule, at its first stretch
    for part in parts:
        dist = part["lo"] * part["route_m"]
        eta = _eta(profile, departure, dist)
        for rule in applicable:
            if not _matches(rule, part) or not in_force(rule, eta):
                continue
            key = (part["target"], part["id"])
            if key in best and VERDICT_ORDER[best[key]["verdict"]] >= VERDICT_ORDER[rule["verdict"]]:
                continue
            best[key] = {
                "target": part["target"], "target_id": part["id"], "target_name": part["name"],
                "target_class": part["class"], "adr_category": part["adr"], "synthetic": part["synthetic"],
                "rule_id": rule["id"], "rule": {"zh": rule["name_zh"], "en": rule["name_en"]},
                "rule_source": rule["source"], "distance_m": round(dist, 1),
                "length_m": round((part["hi"] - part["lo"]) * part["route_m"], 1),
                "eta": eta.isoformat() if eta else None, "verdict": rule["verdict"],
                "verdict_zh": VERDICT_TEXT[rule["verdict"]][0], "geometry": json.loads(part["geometry"]),
            }
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
    geometry: dict
    searched_nodes: int = 0  # nodes in the cells searched (pruned search)
    widened: int = 0


# pgRouting 3.4's pgr_bdDijkstra and pgr_bdAstar return non-shortest paths on some graphs (found by
# tests/gis/test_roadnet_routing.py against NetworkX), and so does pgr_aStar with an admissible heuristic
# (bench/routes.py, demo network): only pgr_dijkstra is used, pruned by landmark bounds instead.
_EDGES_SQL = ("SELECT id, source, target, cost_s AS cost, reverse_cost_s AS reverse_cost FROM road_edges "
              "WHERE NOT (id = ANY(%1$L::int[]))")
_CELL_EDGES_SQL = _EDGES_SQL + " AND cell = ANY(%2$L::int[])"


def _run_path(conn: Connection, edges_sql: str, args: list, source: int, target: int) -> RoutePath | None:
    """pgr_dijkstra on the edges selected by ``edges_sql`` % ``args`` (int arrays, quoted by PostgreSQL's
    ``format``); the path with oriented geometry and its (distance, time) profile."""
    fmt = ", ".join(f"CAST(:a{i} AS int[])" for i in range(len(args)))
    params = {f"a{i}": a for i, a in enumerate(args)} | {"sql": edges_sql, "s": int(source), "t": int(target)}
    call = f"pgr_dijkstra(format(:sql, {fmt}), CAST(:s AS bigint), CAST(:t AS bigint), true)"
    row = conn.execute(text(f"""
        WITH p AS MATERIALIZED (SELECT * FROM {call} WHERE edge > 0),
        e AS (SELECT p.path_seq, p.agg_cost + p.cost AS t, e.id, e.length_m,
                     CASE WHEN p.node = e.source THEN e.geom ELSE ST_Reverse(e.geom) END AS g
              FROM p CROSS JOIN LATERAL (SELECT * FROM road_edges e WHERE e.id = p.edge) e),  -- by primary key
        c AS (SELECT *, sum(length_m) OVER (ORDER BY path_seq) AS d FROM e)
        SELECT max(t) AS cost, max(d) AS length, array_agg(id ORDER BY path_seq) AS edges,
               array_agg(d ORDER BY path_seq) AS ds, array_agg(t ORDER BY path_seq) AS ts,
               ST_AsGeoJSON(ST_MakeLine(g ORDER BY path_seq), 7) AS geometry
        FROM c"""), params).one()
    if row.cost is None:
        return None
    profile = [(0.0, 0.0)] + list(zip(row.ds, row.ts))
    return RoutePath(row.cost, row.length, list(row.edges), profile, json.loads(row.geometry))


def _bound(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _cells_sql(k: int) -> str:
    """Cells where some node p may have t(O->p) + t(p->D) <= :tau, by the ALT bounds of the cell's ranges."""
    to_p = ", ".join(f"c.lf_min[{i}] - :of{i}, :ot{i} - c.lt_max[{i}]" for i in range(1, k + 1))
    from_p = ", ".join(f":df{i} - c.lf_max[{i}], c.lt_min[{i}] - :dt{i}" for i in range(1, k + 1))
    return (f"SELECT coalesce(array_agg(cell ORDER BY cell), '{{}}') AS cells, coalesce(sum(nodes), 0) AS nodes "
            f"FROM road_cells c WHERE greatest(0, {to_p}) + greatest(0, {from_p}) <= :tau")


def shortest_path(conn: Connection, source: int, target: int, banned: list[int] | tuple = (),
                  settings: RouteSettings | None = None, at_least_s: float = 0.0) -> RoutePath | None:
    """Fastest path from node ``source`` to node ``target`` avoiding ``banned`` edges, or None.

    The edge query is pruned to the grid cells that may hold a node of a path faster than a bound
    tau, by the landmark (ALT) lower bounds of ``gis.roadnet.prepare_landmarks``: a cell is kept when
    lower-bound(O -> cell) + lower-bound(cell -> D) <= tau. tau starts at ``alt_factor`` x the lower
    bound of O -> D + ``alt_margin_s``. A path of time C <= tau found in those cells is optimal (a node
    of any faster path would satisfy the test, so its cell and its edges were searched); otherwise
    the search is repeated once with tau = C, which then holds every optimal path. No path: tau
    doubles. ``at_least_s`` is a known lower bound of the answer (the unrestricted time when planning
    around banned edges) that raises the first tau. Once the cells would hold ``full_share`` of the nodes, the whole graph is searched
    (as it is without landmark times). Removing banned edges only lengthens paths, so the bounds of
    the whole graph stay valid.
    """
    s = settings or RouteSettings()
    banned = sorted({int(b) for b in banned})
    if source == target:
        return RoutePath(0.0, 0.0, [], [(0.0, 0.0)], {"type": "LineString", "coordinates": []})
    n = conn.execute(text("""
        SELECT a.lm_from AS of, a.lm_to AS ot, b.lm_from AS df, b.lm_to AS dt,
               (SELECT sum(nodes) FROM road_cells) AS total
        FROM road_nodes a, road_nodes b WHERE a.id = :s AND b.id = :t"""), {"s": source, "t": target}).one()
    k = len(n.of or ())
    bounds = [b for i in range(k) for b in (_bound(n.df[i], n.of[i]), _bound(n.ot[i], n.dt[i])) if b is not None]
    if not bounds or not n.total or n.total <= s.prune_above_nodes:  # no landmark times, or a small graph
        return _run_path(conn, _EDGES_SQL, [banned], source, target)
    params = {f"{p}{i + 1}": getattr(n, p)[i] for p in ("of", "ot", "df", "dt") for i in range(k)}
    tau, tries = max(max(bounds), at_least_s) * s.alt_factor + s.alt_margin_s, 0
    while True:
        tries += 1
        cells = conn.execute(text(_cells_sql(k)), {**params, "tau": tau}).one()
        if cells.nodes >= min(s.full_share, 1.0) * n.total:  # (every cell: the whole graph anyway)
            path = _run_path(conn, _EDGES_SQL, [banned], source, target)
        else:
            path = _run_path(conn, _CELL_EDGES_SQL, [banned, list(cells.cells)], source, target)
            if path is None:
                tau *= 2
                continue
            if path.cost_s > tau:
                tau = path.cost_s * (1 + 1e-9)
                continue
        if path:
            path.widened, path.searched_nodes = tries - 1, int(cells.nodes)
        return path


def _features_banned(conn: Connection, rules: list[dict]) -> dict[tuple[str, int], dict]:
    """(target, id) -> the forbidding rule, for every structure/zone/road a list of rules forbids."""
    out: dict[tuple[str, int], dict] = {}
    if any(r["target"] == "structure" for r in rules):
        for p in conn.execute(text(f"SELECT 'structure' AS target, id, {STRUCTURE_CLASS_SQL} AS class, "
                                   f"adr_category AS adr FROM restricted_structures s")).mappings():
            for r in rules:
                if _matches(r, p):
                    out.setdefault(("structure", p["id"]), r)
    if any(r["target"] == "water_zone" for r in rules):
        for p in conn.execute(text("SELECT 'water_zone' AS target, id, zone_level AS class, NULL AS adr "
                                   "FROM water_source_zones")).mappings():
            for r in rules:
                if _matches(r, p):
                    out.setdefault(("water_zone", p["id"]), r)
    return out


def _banned_edges(conn: Connection, features: dict, road_classes: set[str]) -> list[int]:
    sids = [i for (t, i) in features if t == "structure"]
    zids = [i for (t, i) in features if t == "water_zone"]
    rids = [i for (t, i) in features if t == "road"]
    out = set(conn.execute(text("""
        SELECT edge_id FROM road_edge_links
        WHERE (layer = 'restricted_structures' AND feature_id = ANY(:s))
           OR (layer = 'water_source_zones' AND feature_id = ANY(:z))"""), {"s": sids, "z": zids}).scalars())
    if road_classes or rids:  # (a scan of the edges: only when roads are banned)
        out.update(conn.execute(text("SELECT id FROM road_edges WHERE road_class = ANY(:c) OR road_id = ANY(:r)"),
                                {"c": sorted(road_classes), "r": rids}).scalars())
    return sorted(out)


def banned_edges_for(conn: Connection, cargo: Cargo, departure: datetime | None) -> list[int]:
    """Edges the forbidding rules in force at ``departure`` close to ``cargo``."""
    rules = [r for r in list_rules(conn, active_only=True)
             if rule_applies(r, cargo) and r["verdict"] == "forbidden" and in_force(r, departure)]
    classes = {c for r in rules if r["target"] == "road" for c in r["road_classes"] or ()}
    return _banned_edges(conn, _features_banned(conn, rules), classes)


def _lonlat(point, what: str) -> tuple[float, float]:
    try:
        lon, lat = (float(v) for v in point)
    except (TypeError, ValueError):
        raise AnalysisError(f"{what} must be [lon, lat] in degrees (EPSG:4326)") from None
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise AnalysisError(f"{what} must be [lon, lat] in degrees (EPSG:4326), got {point!r}")
    return lon, lat


def _snap(conn: Connection, point, what: str, s: RouteSettings) -> tuple[int, float]:
    node, dist = nearest_node(conn, *_lonlat(point, what))
    if dist > s.max_snap_m:
        raise AnalysisError(f"{what} is {dist / 1000:.1f} km from the nearest road node (limit {s.max_snap_m:.0f} m)")
    return node, dist


def fastest_route(conn: Connection, origin, destination, settings: RouteSettings | None = None) -> dict:
    """GeoJSON LineString of the fastest unrestricted route between two [lon, lat] points."""
    s = settings or RouteSettings()
    o, d = _snap(conn, origin, "origin", s)[0], _snap(conn, destination, "destination", s)[0]
    path = shortest_path(conn, o, d, (), s) if o != d else None
    if path is None:
        raise AnalysisError("no road route between origin and destination (disconnected parts of the network, "
                            "or the same road node)")
    return path.geometry


def _summary(path: RoutePath) -> dict:
    return {"length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1), "geometry": path.geometry}


def plan_route(conn: Connection, origin, destination, cargo: Cargo, departure: datetime | None,
               settings: RouteSettings | None = None) -> dict:
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
        each with ``unblocks`` = whether lifting that one ban alone gives a route).
    """
    s = settings or RouteSettings()
    o, o_snap = _snap(conn, origin, "origin", s)
    d, d_snap = _snap(conn, destination, "destination", s)
    if o == d:
        raise AnalysisError("origin and destination snap to the same road node: nothing to plan")
    base = {"origin_node": o, "destination_node": d, "origin_snap_m": round(o_snap, 1),
            "destination_snap_m": round(d_snap, 1), "cargo": cargo.as_dict(),
            "departure": departure.isoformat() if departure else None}
    comp = dict(conn.execute(text("SELECT id, component FROM road_nodes WHERE id IN (:o, :d)"), {"o": o, "d": d}).all())
    if comp[o] != comp[d]:
        sizes = dict(conn.execute(text("SELECT component, count(*) FROM road_nodes WHERE component IN (:a, :b) "
                                       "GROUP BY component"), {"a": comp[o], "b": comp[d]}).all())
        return {**base, "found": False, "blocked_by": [],
                "reason": (f"origin and destination are on disconnected parts of the road network (parts of "
                           f"{sizes[comp[o]]} and {sizes[comp[d]]} nodes); no route exists even without restrictions")}
    rules = [r for r in list_rules(conn, active_only=True) if rule_applies(r, cargo)]
    # routes on the graph are checked with the tolerance that tied structures to its edges
    g = GraphSettings()
    cs = replace(s, match_tolerance_m=g.structure_tolerance_m, match_share=g.structure_share)
    free = shortest_path(conn, o, d, (), s)
    if free is None:
        return {**base, "found": False, "blocked_by": [],
                "reason": "no route exists even without restrictions (one-way roads)"}
    free_check = check_route(conn, free.geometry, cargo, departure, cs, free.profile, rules)
    forbidding = [r for r in rules if r["verdict"] == "forbidden"]
    features = _features_banned(conn, [r for r in forbidding if in_force(r, departure)])
    road_classes = {c for r in forbidding if r["target"] == "road" and in_force(r, departure)
                    for c in r["road_classes"] or ()}
    path, check = free, free_check
    for _ in range(s.replans + 1):
        banned = _banned_edges(conn, features, road_classes)
        if path is not free or set(free.edges) & set(banned):  # the fastest route is compliant: no new search
            path = shortest_path(conn, o, d, banned, s, at_least_s=free.cost_s)
            if path is None:
                break
            check = check_route(conn, path.geometry, cargo, departure, cs, path.profile, rules)
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
            c["unblocks"] = shortest_path(conn, o, d, _banned_edges(conn, others, classes), s) is not None
        names = ", ".join(f"{c['target_name'] or c['target']} ({c['rule']['zh']})" for c in blocked[:5])
        return {**base, "found": False, "unrestricted": unrestricted, "blocked_by": blocked,
                "reason": (f"no route for {cargo.label} obeys the rules: every way is blocked by banned "
                           f"structures, zones or roads ({len(features)} banned); the fastest route is blocked by "
                           f"{names or 'time-window bans'}")}
    avoided = [c for c in free_check["conflicts"] if c["verdict"] == "forbidden"]
    return {**base, "found": True, "verdict": check["verdict"], "verdict_zh": check["verdict_zh"],
            "route": {"type": "Feature", "geometry": path.geometry,
                      "properties": {"length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1)}},
            "length_m": round(path.length_m, 1), "time_s": round(path.cost_s, 1),
            "extra_length_m": round(path.length_m - free.length_m, 1),
            "extra_time_s": round(path.cost_s - free.cost_s, 1),
            "conflicts": check["conflicts"], "avoided": avoided, "banned_features": len(features),
            "unrestricted": unrestricted}


# ---------------------------------------------------------------- stored routes (bulk)


def _schedule_departure(schedule: str | None, day: datetime) -> datetime | None:
    """The departure on ``day`` from a schedule text holding a time HH:MM (first one), else None."""
    m = re.search(r"\b([01]?\d|2[0-3])[:：]([0-5]\d)\b", schedule or "")
    if not m:
        return None
    return day.astimezone(LOCAL_TZ).replace(hour=int(m.group(1)), minute=int(m.group(2)), second=0, microsecond=0)


def check_stored_routes(conn: Connection, run_id: int, settings: RouteSettings | None = None,
                        day: datetime | None = None) -> dict:
    """Check every route in ``hazmat_routes`` into the derived layer ``route_conflicts`` (run ``run_id``).

    Cargo comes from ``cargo_un`` (else ``cargo_class``) and ``quantity_t``; the departure is the first
    HH:MM in ``schedule`` on ``day`` (default today, local time); without one every time-window ban
    counts. Routes whose cargo cannot be resolved are reported in ``unchecked_routes``.
    """
    s = settings or RouteSettings()
    day = day or datetime.now(LOCAL_TZ)
    rules = list_rules(conn, active_only=True)
    conn.execute(text("DELETE FROM route_conflicts"))
    routes = conn.execute(text("SELECT id, name, cargo_un, cargo_class, quantity_t, schedule, synthetic, "
                               "ST_AsGeoJSON(geom) AS g FROM hazmat_routes ORDER BY id")).mappings().all()
    unchecked, verdicts, rows = [], {"forbidden": 0, "warning": 0, "allowed": 0}, []
    for rt in routes:
        try:
            cargo = resolve_cargo({"un_number": rt["cargo_un"], "hazard_class": rt["cargo_class"],
                                   "quantity_t": rt["quantity_t"]})
        except AnalysisError as exc:
            unchecked.append({"route_id": rt["id"], "reason": str(exc).split(":")[0]})
            continue
        result = check_route(conn, json.loads(rt["g"]), cargo, _schedule_departure(rt["schedule"], day), s,
                             rules=rules)
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
    return {"routes_checked": len(routes) - len(unchecked), "route_conflicts": len(rows),
            "routes_forbidden": verdicts["forbidden"], "routes_warning": verdicts["warning"],
            "unchecked_routes": unchecked}
