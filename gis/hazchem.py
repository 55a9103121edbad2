"""Hazchem analyses: GB 18218 grading of every installation, safety-distance violations,
population exposure rings and the 红橙黄蓝 risk grade of enterprises and chemical parks.

:func:`run` recomputes all of it in one transaction (``riskmap analyze hazchem``). Distances are
measured in the project's metric CRS (``layers.crs.METRIC_EPSG``, CGCS2000 3-degree Gauss-Krüger);
populations are area-weighted sums of the registered ``population`` raster (``gis.raster``). A
result is flagged ``synthetic`` when its subject, the receptors or accidents it counts, or that
raster are generated. docs/hazchem-analyses.md gives the rules, the defaults and their sources.
"""

from __future__ import annotations

import csv
import json
import math
import tomllib
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Iterable

import numpy as np
import shapely
from sqlalchemy import Connection, insert, text
from sqlalchemy.engine import Engine

from gis import gb18218
from gis.errors import AnalysisError, UnknownSubstanceError
from gis.raster import Registered, registered, zonal_sum
from layers.crs import METRIC_EPSG
from layers.derived import finish_run, layer_versions, start_run
from layers import registry
from layers.spec import HAZARD_LEVELS, RISK_GRADES
from layers.topics.hazchem import (INSTALLATION_KINDS, PROTECTION_CLASSES, InstallationGrading, RiskScore,
                                  SafetyRule)

ANALYSIS = "hazchem"
POPULATION_RASTER = "population"
DATA = Path(__file__).with_name("data")
DEFAULT_RULES = DATA / "safety_distance_rules.csv"
DEFAULT_CONFIG = DATA / "risk_scoring.toml"
# Layers the analysis reads (installation_chemicals bumps hazard_installations). Those it also
# writes back (level, risk_grade) are re-read after the write-back; see _record_inputs.
INPUTS = ("hazard_installations", "enterprises", "chemical_parks", "receptors", "accidents", "safety_rules")
DERIVED = ("safety_violations", "exposure_rings", "risk_scores", "installation_gradings")
M = METRIC_EPSG  # spelled as a literal in SQL so that the metric GiST indexes (migration 0003) apply
QUAD_SEGS = 16  # buffer arcs: 64 segments per circle, area within 0.2 % of the true disc
GRADE_ORDER = ("blue", "yellow", "orange", "red")


# --------------------------------------------------------------------------------------------
# Settings (gis/data/risk_scoring.toml, overridable from the store's data directory)


@dataclass(frozen=True)
class Config:
    """Settings of the hazchem analyses; see ``gis/data/risk_scoring.toml``."""

    rings_m: tuple[float, ...]
    alpha_buffer_m: float
    resident_kinds: tuple[str, ...]
    count_visitors: bool
    high_sensitive_kinds: tuple[str, ...]
    important_kinds: tuple[str, ...]
    general_1_min_people: int
    general_2_min_people: int
    scoring: dict
    grades: dict

    def class_params(self) -> dict:
        """Bound parameters of :data:`CLASS_SQL`."""
        return {"hs_kinds": list(self.high_sensitive_kinds), "imp_kinds": list(self.important_kinds),
                "g1_min": self.general_1_min_people, "g2_min": self.general_2_min_people}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_config(data_dir: Path | None = None) -> Config:
    """Defaults from ``gis/data/risk_scoring.toml``, overridden by ``<data_dir>/risk_scoring.toml``.

    Raises
    ------
    AnalysisError
        When a value is missing or out of range (the message names it).
    """
    with open(DEFAULT_CONFIG, "rb") as f:
        raw = tomllib.load(f)
    override = Path(data_dir) / "risk_scoring.toml" if data_dir else None
    if override is not None and override.exists():
        try:
            with open(override, "rb") as f:
                raw = _merge(raw, tomllib.load(f))
        except tomllib.TOMLDecodeError as exc:
            raise AnalysisError(f"{override}: {exc}") from exc
    try:
        ex, al, rc, sc, gr = raw["exposure"], raw["alpha"], raw["receptor_classes"], raw["scoring"], raw["grades"]
        rings = tuple(float(r) for r in ex["rings_m"])
        config = Config(
            rings_m=rings, alpha_buffer_m=float(al["buffer_m"]),
            resident_kinds=tuple(al["resident_kinds"]), count_visitors=bool(al["count_visitors"]),
            high_sensitive_kinds=tuple(rc["high_sensitive_kinds"]), important_kinds=tuple(rc["important_kinds"]),
            general_1_min_people=int(rc["general_1_min_people"]), general_2_min_people=int(rc["general_2_min_people"]),
            scoring={
                "population_ring_m": float(sc["population_ring_m"]),
                "accident_radius_m": float(sc["accident_radius_m"]), "accident_years": int(sc["accident_years"]),
                "level_points": {int(k): float(v) for k, v in sc["level_points"].items()},
                "violation_points": {k: float(v) for k, v in sc["violation_points"].items()},
                "violation_cap": float(sc["violation_cap"]),
                "population_points": sorted(((float(t), float(p)) for t, p in sc["population_points"]), reverse=True),
                "accident_points": {k: float(sc["accident_points"][k]) for k in ("per_accident", "per_death")},
                "accident_cap": float(sc["accident_cap"]),
            },
            grades={"red": float(gr["red"]), "orange": float(gr["orange"]), "yellow": float(gr["yellow"]),
                    "level_1_floor": gr.get("level_1_floor")},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise AnalysisError(f"risk_scoring.toml: missing or bad setting {exc}") from exc
    problems = []
    if not rings or any(r <= 0 for r in rings) or list(rings) != sorted(set(rings)):
        problems.append("exposure.rings_m must be increasing positive distances")
    if config.scoring["population_ring_m"] not in rings:
        problems.append("scoring.population_ring_m must be one of exposure.rings_m")
    if not 0 < config.alpha_buffer_m <= 5000:
        problems.append("alpha.buffer_m must be in (0, 5000]")
    if not config.grades["red"] > config.grades["orange"] > config.grades["yellow"]:
        problems.append("grades must satisfy red > orange > yellow")
    if config.grades["level_1_floor"] not in (None, *RISK_GRADES):
        problems.append(f"grades.level_1_floor must be one of {', '.join(RISK_GRADES)}")
    if set(config.scoring["violation_points"]) - set(PROTECTION_CLASSES):
        problems.append(f"scoring.violation_points keys must be among {', '.join(PROTECTION_CLASSES)}")
    if problems:
        raise AnalysisError("risk_scoring.toml: " + "; ".join(problems))
    return config


def population_raster(conn: Connection) -> Registered:
    """The registered ``population`` raster (people per cell; path-like, with its ``synthetic``
    flag); AnalysisError if missing."""
    raster = registered(conn, POPULATION_RASTER)
    if raster is None:
        raise AnalysisError(f"no {POPULATION_RASTER!r} raster is registered (table rasters): load the demo data "
                            "or register a population grid", zh="未登记人口栅格：请载入演示数据或登记人口格网")
    if not raster.path.exists():
        raise AnalysisError(f"the {POPULATION_RASTER!r} raster is registered at {raster.path}, but the file is missing",
                            zh=f"人口栅格登记在 {raster.path}，但文件缺失")
    return raster


def people_in(raster: Registered | Path, geometries) -> np.ndarray:
    """Area-weighted people of the raster inside each polygon (metric CRS) as an array."""
    return np.asarray(zonal_sum(raster, list(geometries), crs=f"EPSG:{METRIC_EPSG}"), dtype=float)


# GB 36894 class of a receptor: its own protection_class, else from its kind and people (config).
CLASS_SQL = """coalesce({a}.protection_class, CASE
    WHEN {a}.kind = ANY(:hs_kinds) THEN 'high_sensitive' WHEN {a}.kind = ANY(:imp_kinds) THEN 'important'
    WHEN coalesce({a}.people, 0) >= :g1_min THEN 'general_1' WHEN coalesce({a}.people, 0) >= :g2_min THEN 'general_2'
    ELSE 'general_3' END)"""


# --------------------------------------------------------------------------------------------
# Safety rules (the table is seeded from gis/data/safety_distance_rules.csv by migration 0003)


def default_rules() -> list[dict]:
    """The shipped default rules (``gis/data/safety_distance_rules.csv``) as row dicts."""
    with open(DEFAULT_RULES, encoding="utf-8", newline="") as f:
        return [{"installation_kind": r["installation_kind"], "level": int(r["level"]) if r["level"] else None,
                 "receptor_class": r["receptor_class"], "distance_m": float(r["distance_m"]), "basis": r["basis"],
                 "assumption": r["assumption"] == "yes", "note": r["note"] or None}
                for r in csv.DictReader(f)]


def reset_rules(conn: Connection) -> int:
    """Replace every safety rule by the shipped defaults; returns their number."""
    rules = default_rules()
    conn.execute(SafetyRule.__table__.delete())
    conn.execute(insert(SafetyRule.__table__), rules)
    return len(rules)


# --------------------------------------------------------------------------------------------
# GB 18218 grading


def _codes(hazard_class) -> tuple[str, ...]:
    if not hazard_class:
        return ()
    items = hazard_class.replace(",", ";").split(";") if isinstance(hazard_class, str) else hazard_class
    return tuple(c.strip().upper() for c in items if c.strip())


def installation_kinds(substances: Iterable[gb18218.Substance]) -> list[str]:
    """Kinds of hazard in an inventory, for the safety rules: toxic, flammable, explosive.

    From the GB 18218-2018 classes: J* (and the Table 3 toxic gases) are toxic, W1.* explosive,
    the other W classes flammable (fire and other physical hazards). A Table 1 chemical without a
    class takes its group: rows 1-30 are the toxic substances. Unknown substances are skipped.

    Examples
    --------
    >>> installation_kinds([gb18218.Substance("液氯", 10), gb18218.Substance("柴油", 5, hazard_class="W5.4")])
    ['flammable', 'toxic']
    """
    kinds = set()
    for s in substances:
        try:
            entry = gb18218.lookup(s.name, s.cas, s.un_number)
        except UnknownSubstanceError:
            entry = None
        classes = _codes(s.hazard_class) or (entry.hazard_classes if entry else ())
        if entry is not None and entry.in_table3:
            kinds.add("toxic")
        for c in classes:
            kinds.add("toxic" if c.startswith("J") else "explosive" if c.startswith("W1.") else "flammable")
        if entry is not None and not classes and not entry.in_table3:
            kinds.add("toxic" if entry.seq <= 30 else "flammable")
    return sorted(kinds)


def exposed_people(grid: float, resident_receptors: int, visitor_receptors: int, config: Config) -> tuple[int, float]:
    """People counted for α (and the residents before rounding).

    Residents are the larger of the grid's area-weighted people and the people at residential
    receptors (two estimates of the same residents: adding them would count them twice); people
    at other receptors (schools, hospitals ...) live elsewhere and are added when
    ``count_visitors``. The sum is rounded half up to whole people.

    Examples
    --------
    >>> cfg = load_config()
    >>> exposed_people(20.4, 35, 10, cfg)  # max(20.4, 35) + 10
    (45, 35.0)
    """
    residents = max(float(grid), float(resident_receptors))
    total = residents + (visitor_receptors if config.count_visitors else 0)
    return int(math.floor(total + 0.5)), residents


_SITES_SQL = f"""
WITH sites AS (
    SELECT 'enterprise' AS boundary, e.id, e.synthetic, ST_Transform(e.geom, {M}) AS g FROM enterprises e
    WHERE EXISTS (SELECT 1 FROM hazard_installations h WHERE h.enterprise_id = e.id)
    UNION ALL
    SELECT 'installation', h.id, false, h.geom_m FROM hazard_installations h WHERE h.enterprise_id IS NULL
)
SELECT s.boundary, s.id, ST_AsBinary(ST_Difference(ST_Buffer(s.g, :buf, 'quad_segs={QUAD_SEGS}'), s.g)) AS zone,
       rc.residents, rc.visitors, rc.n, s.synthetic OR rc.synthetic AS synthetic
FROM sites s CROSS JOIN LATERAL (
    SELECT coalesce(sum(r.people) FILTER (WHERE r.kind = ANY(:resident)), 0)::bigint AS residents,
           coalesce(sum(r.people) FILTER (WHERE r.kind IS NULL OR r.kind <> ALL(:resident)), 0)::bigint AS visitors,
           count(*)::int AS n, coalesce(bool_or(r.synthetic), false) AS synthetic
    FROM receptors r
    WHERE ST_DWithin(r.geom_m, s.g, :buf) AND NOT ST_Intersects(r.geom_m, s.g)
) rc
"""


def grade_installations(conn: Connection, run_id: int, raster: Registered, config: Config) -> dict:
    """Grade every installation (GB 18218-2018 4.2-4.3), store the breakdown, write levels back.

    α counts the people within ``alpha.buffer_m`` (500 m) outside the plant boundary: the
    enterprise's site polygon, or the installation's own polygon when it has no enterprise (see
    :func:`exposed_people`). An installation whose inventory cannot be graded (a substance with
    neither a Table 1 entry nor a class) gets a row with ``error`` and keeps its stored level.
    A grading is synthetic when the installation, its enterprise, a receptor counted for α or the
    population raster is; ``population.notes`` then says the grid is synthetic.
    """
    sites = {}
    for row in conn.execute(text(_SITES_SQL), {"buf": config.alpha_buffer_m, "resident": list(config.resident_kinds)}):
        sites[(row.boundary, row.id)] = row
    keys = list(sites)
    grid = people_in(raster, shapely.from_wkb([sites[k].zone for k in keys]))
    grid_by_key = dict(zip(keys, grid))
    inventory = {}
    for r in conn.execute(text("SELECT installation_id, name, cas, un_number, hazard_class, quantity_t "
                               "FROM installation_chemicals ORDER BY installation_id, id")):
        inventory.setdefault(r.installation_id, []).append(
            gb18218.Substance(r.name, r.quantity_t, r.cas, r.un_number, r.hazard_class))
    rows, levels = [], {}
    for inst in conn.execute(text("SELECT id, enterprise_id, synthetic FROM hazard_installations ORDER BY id")).all():
        key = ("enterprise", inst.enterprise_id) if inst.enterprise_id is not None else ("installation", inst.id)
        site = sites[key]
        n, residents = exposed_people(grid_by_key[key], site.residents, site.visitors, config)
        substances = inventory.get(inst.id, [])
        population = {
            "exposed_people": n, "grid_people": round(float(grid_by_key[key]), 2),
            "resident_receptor_people": site.residents, "visitor_receptor_people": site.visitors,
            "residents": round(residents, 2), "count_visitors": config.count_visitors,
            "boundary": key[0], "boundary_id": key[1], "buffer_m": config.alpha_buffer_m, "raster": POPULATION_RASTER,
            "raster_synthetic": raster.synthetic, "notes": [raster.note] if raster.synthetic else [],
            "method": (f"people within {config.alpha_buffer_m:g} m outside the {key[0]} boundary: residents = "
                       "max(area-weighted population grid, people at residential receptors)"
                       + (" + people at other receptors" if config.count_visitors else "")
                       + ", rounded half up"),
        }
        row = {"run_id": run_id, "installation_id": inst.id, "enterprise_id": inst.enterprise_id,
               "synthetic": inst.synthetic or site.synthetic or raster.synthetic,
               "kinds": installation_kinds(substances), "exposed_people": n,
               "population": population, "substances": [], "s": None, "r": None, "alpha": None, "level": None,
               "is_major": None, "error": None}
        try:
            g = gb18218.grade(substances, n)
        except AnalysisError as exc:
            row["error"] = str(exc)
        else:
            row.update(s=g.S, r=g.R, alpha=g.alpha, level=g.level, is_major=g.is_major, substances=[
                {"name": s.name, "cas": s.cas, "q": s.q, "Q": s.Q, "beta": s.beta, "source": s.source}
                for s in g.substances])
            levels[g.level] = levels.get(g.level, 0) + 1
        rows.append(row)
    if rows:
        conn.execute(insert(InstallationGrading.__table__), rows)
    conn.execute(text(
        "UPDATE hazard_installations h SET level = g.level FROM installation_gradings g "
        "WHERE g.run_id = :run AND g.installation_id = h.id AND g.error IS NULL AND h.level IS DISTINCT FROM g.level"),
        {"run": run_id})
    return {"installations": len(rows), "major": sum(v for k, v in levels.items() if k is not None),
            "levels": {str(k): levels.get(k, 0) for k in (1, 2, 3, 4)},
            "ungraded": sum(1 for r in rows if r["error"])}


# --------------------------------------------------------------------------------------------
# Safety-distance conflicts (violations of existing pairs, and the siting check of proposals)

# Installations and receptors as relations in the metric CRS (their stored ``geom_m``, migration
# 0008_hazchem). The installations' kinds come from the last grading (installation_gradings holds
# only the last run's rows).
INSTALLATIONS_SQL = """SELECT h.id, h.name, h.enterprise_id, h.level, coalesce(g.kinds, '{}') AS kinds,
    h.synthetic, h.geom_m AS g
    FROM hazard_installations h LEFT JOIN installation_gradings g ON g.installation_id = h.id"""
RECEPTORS_SQL = f"""SELECT r.id, r.name, r.kind, r.people, r.synthetic, {CLASS_SQL.format(a='r')} AS pclass,
    r.geom_m AS g FROM receptors r"""
_CLASSES = "ARRAY[" + ", ".join(f"'{c}'" for c in PROTECTION_CLASSES) + "]"


def _per_class(column: str) -> str:
    """An array of ``column`` of the ``req`` rows of a group, one element per protection class (in
    the order of PROTECTION_CLASSES; NULL where no rule applies to the class)."""
    return "ARRAY[" + ", ".join(f"max({column}) FILTER (WHERE receptor_class = '{c}')" for c in PROTECTION_CLASSES) + "]"


def conflicts_sql(installations: str = INSTALLATIONS_SQL, receptors: str = RECEPTORS_SQL) -> str:
    """SELECT of every installation-receptor pair closer than its rule requires.

    The required distance of a pair is the largest ``distance_m`` of the safety rules whose kind
    is ``any`` or one of the installation's kinds, whose level is empty or the installation's,
    and whose class is the receptor's (worked out once per distinct (kinds, level), as arrays
    indexed by the class's position). Columns: installation_*, receptor_*, protection_class,
    distance_m, required_m, shortfall_m, rule_id, basis, synthetic, geom (shortest line, EPSG:4326).
    Both relations are SQL from this module (never user text); values are bound parameters.

    The receptors are probed per installation (LATERAL, ``OFFSET 0`` keeps the planner from
    flattening it into a cross join) with the bounding box grown by the installation's reach
    (the largest required distance of any class), so that the receptors' metric index is used
    whatever the table sizes; a pair closer than required is always inside that box, so the exact
    distance is the only other test. Installations are visited in their geometry's sort order (a
    Hilbert curve in PostGIS): neighbouring probes touch neighbouring index and table pages, and
    the layer rows are inserted in spatial order, which keeps their GiST index inserts local.
    """
    return f"""
    WITH inst AS MATERIALIZED (SELECT * FROM ({installations}) i0 ORDER BY i0.g),
    combos AS (SELECT DISTINCT kinds, coalesce(level, 0) AS lvl FROM inst),
    req AS (
        SELECT c.kinds, c.lvl, r.receptor_class, max(r.distance_m) AS required_m,
               (array_agg(r.id ORDER BY r.distance_m DESC, r.id))[1] AS rule_id,
               (array_agg(r.basis ORDER BY r.distance_m DESC, r.id))[1] AS basis
        FROM combos c JOIN safety_rules r
          ON (r.installation_kind = 'any' OR r.installation_kind = ANY(c.kinds)) AND (r.level IS NULL OR r.level = c.lvl)
        GROUP BY c.kinds, c.lvl, r.receptor_class),
    reach AS MATERIALIZED (
        SELECT kinds, lvl, max(required_m) AS reach_m, {_per_class('required_m')} AS required,
               {_per_class('rule_id')} AS rule_ids, {_per_class('basis')} AS bases
        FROM req GROUP BY kinds, lvl)
    SELECT i.id AS installation_id, i.name AS installation_name, i.enterprise_id, i.level,
           array_to_string(i.kinds, ',') AS kinds, p.id AS receptor_id, p.name AS receptor_name,
           p.kind AS receptor_kind, p.pclass AS protection_class, q.distance_m, x.required[q.c] AS required_m,
           x.required[q.c] - q.distance_m AS shortfall_m, x.rule_ids[q.c] AS rule_id, x.bases[q.c] AS basis,
           i.synthetic OR p.synthetic AS synthetic,
           ST_Transform(ST_ShortestLine(i.g, p.g), 4326) AS geom
    FROM inst i
    JOIN reach x ON x.kinds = i.kinds AND x.lvl = coalesce(i.level, 0)
    CROSS JOIN LATERAL (SELECT * FROM ({receptors}) p0 WHERE p0.g && ST_Expand(i.g, x.reach_m) OFFSET 0) p
    CROSS JOIN LATERAL (SELECT ST_Distance(i.g, p.g) AS distance_m, array_position({_CLASSES}, p.pclass) AS c) q
    WHERE q.distance_m < x.required[q.c]"""


CONFLICT_COLUMNS = ("installation_id", "installation_name", "enterprise_id", "level", "kinds", "receptor_id",
                    "receptor_name", "receptor_kind", "protection_class", "distance_m", "required_m",
                    "shortfall_m", "rule_id", "basis", "synthetic", "geom")


def no_jit(conn: Connection) -> None:
    """Turn JIT compilation off for the current transaction: PostGIS functions carry high cost
    estimates, so PostgreSQL JIT-compiles these statements for ~0.4 s, far more than they run."""
    conn.execute(text("SET LOCAL jit = off"))


def find_violations(conn: Connection, run_id: int, config: Config) -> int:
    """Write every installation-receptor pair closer than required to ``safety_violations``."""
    no_jit(conn)
    cols = ", ".join(CONFLICT_COLUMNS)
    return conn.execute(text(
        f"INSERT INTO safety_violations (run_id, name, {cols}) "
        f"SELECT :run, c.installation_name || ' → ' || c.receptor_name, {cols} FROM ({conflicts_sql()}) c"),
        {"run": run_id, **config.class_params()}).rowcount


# Uses a planner may propose: the receptors' kinds (checked against installations) and installations
# (checked against receptors), with their names (zh, en); siting_options() lists them for a form.
RECEPTOR_USES = tuple(registry.get("receptors").field("kind").codes)
INSTALLATION_USES = {"chemical_plant": ("化工厂", "Chemical plant"), "hazchem_storage": ("危险化学品仓储", "Hazchem storage")}
USES = RECEPTOR_USES + tuple(INSTALLATION_USES)
ALL_KINDS = tuple(k for k in INSTALLATION_KINDS if k != "any")


def siting_options() -> dict:
    """What :func:`siting_check` takes, with the registry's names: the uses (receptor kinds and
    installations), GB 18218 levels and hazard kinds, each ``{"code", "zh", "en"}``."""
    def listed(table: dict) -> list[dict]:  # (values: (zh, en, ...))
        return [{"code": k, "zh": v[0], "en": v[1]} for k, v in table.items()]

    kinds = registry.get("receptors").field("kind").codes
    return {"receptor_uses": listed({k: (c.zh, c.en) for k, c in kinds.items()}),
            "installation_uses": listed(INSTALLATION_USES), "levels": listed(HAZARD_LEVELS),
            "kinds": listed({k: INSTALLATION_KINDS[k] for k in ALL_KINDS})}


def siting_check(conn: Connection, geometry, use: str, config: Config, *, level: int | None = None,
                 kinds: Iterable[str] | None = None, people: int | None = None) -> dict:
    """Conflicts of a proposed site with the existing installations or receptors.

    A receptor use (school, hospital, residential ...) is checked against every installation: the
    proposal is too close to an installation. An installation use (chemical_plant,
    hazchem_storage) is checked against every receptor: receptors too close to the proposal.

    Parameters
    ----------
    conn : Connection
    geometry : shapely geometry
        The proposed site in EPSG:4326.
    use : str
        One of :data:`RECEPTOR_USES` or :data:`INSTALLATION_USES`.
    config : Config
    level : int, optional
        GB 18218 level of a proposed installation; default 1 (the strictest).
    kinds : iterable of str, optional
        Hazard kinds of a proposed installation; default all (toxic, flammable, explosive).
    people : int, optional
        People at a proposed receptor (sets its GB 36894 general class); default: class 1.

    Returns
    -------
    dict
        ``{"use", "direction", "assumed", "conflicts": [...]}``, conflicts with the largest shortfall first.
    """
    no_jit(conn)
    proposal = f"ST_Transform(ST_GeomFromWKB(:wkb, 4326), {M})"
    params = {"wkb": shapely.to_wkb(geometry), **config.class_params()}
    if use in RECEPTOR_USES:
        people = config.general_1_min_people if people is None else people
        by_kind = use in config.high_sensitive_kinds or use in config.important_kinds
        pclass = conn.execute(text(f"SELECT {CLASS_SQL.format(a='x')} FROM (SELECT NULL::text AS protection_class, "
                                   "CAST(:pkind AS text) AS kind, CAST(:people AS int) AS people) x"),
                              {**config.class_params(), "pkind": use, "people": people}).scalar()
        # (by: whether the class follows from the use itself, e.g. a school, or from the number of people)
        assumed = {"protection_class_from": {"kind": use, "people": None if by_kind else people,
                                             "by": "kind" if by_kind else "people", "protection_class": pclass}}
        receptors = (f"SELECT 0 AS id, CAST(:pname AS text) AS name, CAST(:pkind AS text) AS kind, "
                     f"CAST(:people AS int) AS people, false AS synthetic, "
                     f"{CLASS_SQL.format(a='x')} AS pclass, {proposal} AS g "
                     f"FROM (SELECT NULL::text AS protection_class, CAST(:pkind AS text) AS kind, "
                     f"CAST(:people AS int) AS people) x")
        sql = conflicts_sql(receptors=receptors)
        params |= {"pname": "proposal", "pkind": use, "people": people}
        direction = "proposal_near_installation"
    elif use in INSTALLATION_USES:
        kinds = sorted(set(kinds) if kinds else ALL_KINDS)
        level = 1 if level is None else level
        assumed = {"level": level, "kinds": kinds}
        installations = (f"SELECT 0 AS id, CAST(:pname AS text) AS name, NULL::int AS enterprise_id, "
                         f"CAST(:level AS int) AS level, CAST(:kinds AS text[]) AS kinds, false AS synthetic, "
                         f"{proposal} AS g")
        sql = conflicts_sql(installations=installations)
        params |= {"pname": "proposal", "level": level, "kinds": kinds}
        direction = "installation_near_receptor"
    else:
        raise AnalysisError(f"unknown use {use!r}; one of {', '.join(USES)}", zh=f"未知用途 {use!r}；应为 {'、'.join(USES)} 之一")
    rows = conn.execute(text(
        f"SELECT c.*, ST_AsGeoJSON(c.geom, 7) AS line FROM ({sql}) c ORDER BY c.shortfall_m DESC, c.installation_id, "
        "c.receptor_id"), params).mappings().all()
    keep = [c for c in CONFLICT_COLUMNS if c != "geom"]  # (synthetic: the existing feature's, the proposal is not)
    conflicts = []
    for r in rows:
        item = {c: r[c] for c in keep}
        item["distance_m"], item["required_m"] = round(r["distance_m"], 2), r["required_m"]
        item["shortfall_m"] = round(r["shortfall_m"], 2)
        item["direction"] = direction
        item["line"] = json.loads(r["line"])
        if direction == "proposal_near_installation":
            item.pop("receptor_id"), item.pop("receptor_name")
        else:
            item.pop("installation_id"), item.pop("installation_name"), item.pop("enterprise_id")
        conflicts.append(item)
    return {"use": use, "direction": direction, "assumed": assumed, "conflicts": conflicts}


# --------------------------------------------------------------------------------------------
# Points near polygons (receptors in rings, accidents near sites)


def points_within(subjects, points, reach: float, chunk: int = 2000):
    """Every (subject index, point index, distance) with distance <= ``reach``, in chunks.

    Exact polygon-to-point distances (GEOS, vectorised) of the candidates an STRtree finds in each
    subject's bounding box grown by ``reach``; the work is proportional to the pairs found. At x100
    of the demo (33 M receptor pairs within 5 km of an installation or park) this took 23 s where a
    per-subject SQL probe (LATERAL + metric GiST) took 90 s: per-row function calls dominate there.
    """
    subjects = np.asarray(subjects, dtype=object)
    points = np.asarray(points, dtype=object)
    if len(subjects) == 0 or len(points) == 0:
        return
    tree = shapely.STRtree(points)
    for start in range(0, len(subjects), chunk):
        part = subjects[start:start + chunk]
        minx, miny, maxx, maxy = shapely.bounds(part).T
        s_idx, p_idx = tree.query(shapely.box(minx - reach, miny - reach, maxx + reach, maxy + reach))
        d = shapely.distance(part[s_idx], points[p_idx])
        keep = d <= reach
        yield s_idx[keep] + start, p_idx[keep], d[keep]


def _metric_points(conn: Connection, sql: str, params: dict, extra: int) -> tuple:
    """Points (metric CRS) of a query whose first two columns are x, y, and its ``extra`` other
    columns as arrays."""
    rows = conn.execute(text(sql), params).all()
    cols = list(zip(*rows)) if rows else [()] * (2 + extra)
    return (shapely.points(np.asarray(cols[0], float), np.asarray(cols[1], float)),
            *(np.asarray(c) for c in cols[2:]))


# --------------------------------------------------------------------------------------------
# Population exposure rings


_SUBJECTS_SQL = f"""
    SELECT 'hazard_installations' AS layer, h.id, h.name, h.synthetic, h.geom_m AS g
    FROM hazard_installations h
    UNION ALL
    SELECT 'chemical_parks', p.id, p.name, p.synthetic, ST_Transform(p.geom, {M}) FROM chemical_parks p"""


def exposure_rings(conn: Connection, run_id: int, raster: Registered, config: Config) -> int:
    """Rings around every installation and park with their people and receptors by class.

    Ring k covers the points within ``rings_m[k]`` of the subject's polygon but not within
    ``rings_m[k-1]`` (the first ring includes the polygon itself). ``people`` is the area-weighted
    population of the ring, ``people_within`` that of everything within its outer distance;
    receptors are counted by GB 36894 class on their exact distance (their people are reported
    apart, never added to the grid's). A ring is synthetic when its subject, the population raster
    or a receptor counted in it is.
    """
    outer = list(config.rings_m)
    inner = [0.0] + outer[:-1]
    buf = "ST_Buffer(s.g, {}, 'quad_segs=" + str(QUAD_SEGS) + "')"
    ring = (f"CASE WHEN d.inner_m = 0 THEN {buf.format('d.outer_m')} "
            f"ELSE ST_Difference({buf.format('d.outer_m')}, {buf.format('d.inner_m')}) END")
    rows = conn.execute(text(f"""
        INSERT INTO exposure_rings (run_id, synthetic, name, subject_layer, subject_id, inner_m, outer_m, geom)
        SELECT :run, s.synthetic OR :raster_synthetic,
               coalesce(s.name, '') || ' ' || d.inner_m || '–' || d.outer_m || ' m',
               s.layer, s.id, d.inner_m, d.outer_m, ST_Multi(ST_Transform({ring}, 4326))
        FROM ({_SUBJECTS_SQL}) s CROSS JOIN unnest(CAST(:inner AS float8[]), CAST(:outer AS float8[])) AS d(inner_m, outer_m)
        RETURNING id, subject_layer, subject_id, outer_m, ST_AsBinary(ST_Transform(geom, {M})) AS wkb"""),
        {"run": run_id, "inner": inner, "outer": outer, "raster_synthetic": raster.synthetic}).all()
    if not rows:
        return 0
    rows.sort(key=lambda r: (r.subject_layer, r.subject_id, r.outer_m))
    people = people_in(raster, shapely.from_wkb([r.wkb for r in rows]))
    within = np.empty_like(people)
    start = 0
    for _, group in groupby(range(len(rows)), key=lambda i: (rows[i].subject_layer, rows[i].subject_id)):
        n = len(list(group))
        within[start:start + n] = np.cumsum(people[start:start + n])
        start += n
    conn.execute(text(
        "UPDATE exposure_rings e SET people = v.p, people_within = v.w "
        "FROM unnest(CAST(:ids AS int[]), CAST(:p AS float8[]), CAST(:w AS float8[])) AS v(id, p, w) WHERE e.id = v.id"),
        {"ids": [r.id for r in rows], "p": people.round(3).tolist(), "w": within.round(3).tolist()})
    # Receptors by ring and class: ring k holds distances in (rings_m[k-1], rings_m[k]].
    classes = list(PROTECTION_CLASSES)
    subjects = conn.execute(text(f"SELECT layer, id, ST_AsBinary(g) FROM ({_SUBJECTS_SQL}) s")).all()
    slot = {(layer, sid): i for i, (layer, sid, _) in enumerate(subjects)}
    pts, pclass, rpeople, rsynthetic = _metric_points(
        conn, f"SELECT ST_X(g), ST_Y(g), pclass, coalesce(people, 0), synthetic FROM ({RECEPTORS_SQL}) r",
        config.class_params(), 3)
    n_r, n_c = len(outer), len(classes)
    counts = np.zeros(len(subjects) * n_r * n_c, dtype=np.int64)
    heads = np.zeros(len(subjects) * n_r * n_c)
    synthetic = np.zeros(len(subjects) * n_r, dtype=bool)  # a synthetic receptor counted in the ring
    if len(pts):
        cls = np.array([classes.index(c) for c in pclass])
        rpeople, rsynthetic = rpeople.astype(float), rsynthetic.astype(bool)
        for si, pi, d in points_within(shapely.from_wkb([w for _, _, w in subjects]), pts, outer[-1]):
            ring_key = si * n_r + np.searchsorted(outer, d, side="left")
            key = ring_key * n_c + cls[pi]
            counts += np.bincount(key, minlength=counts.size)
            heads += np.bincount(key, weights=rpeople[pi], minlength=heads.size)
            synthetic[ring_key[rsynthetic[pi]]] = True
    counts, heads = counts.reshape(-1, n_r, n_c), heads.reshape(-1, n_r, n_c).sum(axis=2)
    ring_of = {o: k for k, o in enumerate(outer)}
    idx = [(slot[(r.subject_layer, r.subject_id)], ring_of[r.outer_m]) for r in rows]
    sets = ", ".join(f"receptors_{c} = v.{c}" for c in classes)
    arrays = ", ".join(f"CAST(:{c} AS int[])" for c in classes)
    conn.execute(text(
        f"UPDATE exposure_rings e SET {sets}, receptor_people = v.people, synthetic = e.synthetic OR v.syn "
        f"FROM unnest(CAST(:ids AS int[]), {arrays}, CAST(:people AS bigint[]), CAST(:syn AS bool[])) "
        f"AS v(id, {', '.join(classes)}, people, syn) WHERE e.id = v.id"),
        {"ids": [r.id for r in rows],
         "people": [int(round(heads[i, k])) for i, k in idx],
         "syn": [bool(synthetic[i * n_r + k]) for i, k in idx],
         **{c: [int(counts[i, k, j]) for i, k in idx] for j, c in enumerate(classes)}})
    return len(rows)


# --------------------------------------------------------------------------------------------
# Enterprise and park risk grade (红橙黄蓝)


def score(indicators: dict, config: Config) -> tuple[float, str, dict]:
    """Points, grade and per-indicator points from the indicators of one enterprise or park.

    ``indicators``: ``max_level`` (1-4 or None), ``violations`` ({class: count}), ``exposed_people``,
    ``accidents``, ``accident_deaths``. Points follow ``[scoring]`` of risk_scoring.toml; the grade
    is red/orange/yellow/blue by ``[grades]``, raised to ``level_1_floor`` for a 一级 installation.

    Examples
    --------
    >>> cfg = load_config()
    >>> score({"max_level": 2, "violations": {"high_sensitive": 1, "general_2": 2}, "exposed_people": 3500,
    ...        "accidents": 1, "accident_deaths": 0}, cfg)[:2]  # 30 + (10 + 6) + 15 + 2
    (63.0, 'orange')
    """
    sc = config.scoring
    points = {
        "level": sc["level_points"].get(indicators.get("max_level"), 0.0),
        "violations": min(sc["violation_cap"], sum(sc["violation_points"].get(c, 0.0) * n
                                                   for c, n in indicators.get("violations", {}).items())),
        "population": next((p for t, p in sc["population_points"] if indicators.get("exposed_people", 0) >= t), 0.0),
        "accidents": min(sc["accident_cap"], sc["accident_points"]["per_accident"] * indicators.get("accidents", 0)
                         + sc["accident_points"]["per_death"] * indicators.get("accident_deaths", 0)),
    }
    total = float(sum(points.values()))
    gr = config.grades
    grade = "red" if total >= gr["red"] else "orange" if total >= gr["orange"] else (
        "yellow" if total >= gr["yellow"] else "blue")
    floor = gr["level_1_floor"]
    if floor and indicators.get("max_level") == 1 and GRADE_ORDER.index(floor) > GRADE_ORDER.index(grade):
        grade = floor
    return total, grade, points


# Installations that belong to each subject: an enterprise's own; a park's are those of its
# enterprises (enterprises.park_id) and those lying in its polygon.
_MEMBERS = {
    "enterprises": ("SELECT h.enterprise_id AS sid, h.id AS iid FROM hazard_installations h "
                    "WHERE h.enterprise_id IS NOT NULL"),
    "chemical_parks": """SELECT e.park_id AS sid, h.id AS iid FROM hazard_installations h
        JOIN enterprises e ON e.id = h.enterprise_id WHERE e.park_id IS NOT NULL
        UNION SELECT p.id, h.id FROM chemical_parks p JOIN hazard_installations h ON ST_Intersects(h.geom, p.geom)""",
}


def _indicators(conn: Connection, layer: str, config: Config, accidents: tuple) -> dict[int, dict]:
    sc = config.scoring
    members = _MEMBERS[layer]
    # "synthetic": the subject, or a grading, violation, ring or accident behind a points indicator
    # is synthetic (popped into the row's own column by risk_grades)
    out = {sid: {"max_level": None, "violations": {}, "exposed_people": 0.0, "accidents": 0, "accident_deaths": 0,
                 "major_installations": 0, "synthetic": synthetic}
           for sid, synthetic in conn.execute(text(f"SELECT id, synthetic FROM {layer}"))}
    for r in conn.execute(text(f"""SELECT m.sid, min(g.level) AS lvl, count(*) FILTER (WHERE g.is_major) AS n,
            bool_or(g.synthetic) AS syn
            FROM ({members}) m JOIN installation_gradings g ON g.installation_id = m.iid GROUP BY m.sid""")):
        out[r.sid].update(max_level=r.lvl, major_installations=r.n)
        out[r.sid]["synthetic"] |= r.syn
    for r in conn.execute(text(f"""SELECT m.sid, v.protection_class AS c, count(*) AS n, bool_or(v.synthetic) AS syn
            FROM ({members}) m JOIN safety_violations v ON v.installation_id = m.iid GROUP BY 1, 2""")):
        out[r.sid]["violations"][r.c] = r.n
        out[r.sid]["synthetic"] |= r.syn
    own = "" if layer == "enterprises" else (
        "UNION ALL SELECT x.subject_id, x.people_within, x.synthetic FROM exposure_rings x "
        "WHERE x.subject_layer = 'chemical_parks' AND x.outer_m = :ring")
    for r in conn.execute(text(f"""SELECT sid, max(p) AS p, bool_or(syn) AS syn FROM (
            SELECT m.sid, x.people_within AS p, x.synthetic AS syn FROM ({members}) m JOIN exposure_rings x
              ON x.subject_layer = 'hazard_installations' AND x.subject_id = m.iid AND x.outer_m = :ring
            {own}) t GROUP BY sid"""), {"ring": sc["population_ring_m"]}):
        out[r.sid]["exposed_people"] = round(float(r.p or 0), 1)
        out[r.sid]["synthetic"] |= r.syn
    ids, wkb = zip(*conn.execute(text(f"SELECT id, ST_AsBinary(ST_Transform(geom, {M})) FROM {layer} ORDER BY id"))
                   ) if out else ((), ())
    n, deaths = np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids))
    synthetic = np.zeros(len(ids), dtype=bool)
    for si, pi, _ in points_within(shapely.from_wkb(list(wkb)), accidents[0], sc["accident_radius_m"]):
        n += np.bincount(si, minlength=len(ids))
        deaths += np.bincount(si, weights=accidents[1][pi], minlength=len(ids))
        synthetic[si[accidents[2][pi]]] = True
    for sid, k, dead, syn in zip(ids, n, deaths, synthetic):
        out[sid].update(accidents=int(k), accident_deaths=int(dead))
        out[sid]["synthetic"] |= bool(syn)
    return out


def risk_grades(conn: Connection, run_id: int, config: Config) -> dict:
    """Score every enterprise and park, store the breakdown in ``risk_scores`` and write
    ``risk_grade`` back to ``enterprises`` and ``chemical_parks``. A score is synthetic when the
    subject or anything behind its points (gradings, violations, rings, accidents) is."""
    stats = {}
    accidents = _metric_points(conn, f"SELECT ST_X(g), ST_Y(g), deaths, synthetic FROM (SELECT ST_Transform(geom, {M}) "
                               "AS g, deaths, synthetic FROM accidents "
                               "WHERE occurred_at >= now() - make_interval(years => :years)) a",
                               {"years": config.scoring["accident_years"]}, 2)
    accidents = (accidents[0], accidents[1].astype(float), accidents[2].astype(bool))
    for layer in ("enterprises", "chemical_parks"):
        rows = []
        for sid, ind in sorted(_indicators(conn, layer, config, accidents).items()):
            synthetic = bool(ind.pop("synthetic"))
            total, grade, points = score(ind, config)
            rows.append({"run_id": run_id, "subject_layer": layer, "subject_id": sid, "score": total,
                         "risk_grade": grade, "synthetic": synthetic, "indicators": {**ind, "points": points}})
        if rows:
            conn.execute(insert(RiskScore.__table__), rows)
            conn.execute(text(
                f"UPDATE {layer} t SET risk_grade = v.g FROM unnest(CAST(:ids AS int[]), CAST(:g AS text[])) "
                "AS v(id, g) WHERE t.id = v.id AND t.risk_grade IS DISTINCT FROM v.g"),
                {"ids": [r["subject_id"] for r in rows], "g": [r["risk_grade"] for r in rows]})
        stats[layer] = {g: sum(1 for r in rows if r["risk_grade"] == g) for g in RISK_GRADES}
    return stats


# --------------------------------------------------------------------------------------------
# The whole analysis


def run(engine: Engine, store_settings) -> dict:
    """Recompute every hazchem result in one transaction; safe to re-run.

    Locks the input tables against writers for the run (readers go on), replaces the rows of the
    derived tables with rows carrying the new run id, writes back installation levels and
    enterprise/park risk grades, and records the input layer versions *after* those write-backs,
    so that the run's own writes do not make it stale while any later edit does.

    Returns
    -------
    dict
        Statistics of the run (also stored in ``analysis_runs.stats``).
    """
    config = load_config(getattr(store_settings, "data_dir", None))
    with engine.begin() as conn:
        conn.execute(text(f"LOCK TABLE {', '.join(INPUTS)}, installation_chemicals IN SHARE ROW EXCLUSIVE MODE"))
        no_jit(conn)
        raster = population_raster(conn)
        run_id = start_run(conn, ANALYSIS, INPUTS)
        for table in DERIVED:
            conn.execute(text(f"DELETE FROM {table}"))
        stats = {"run_id": run_id, "population_raster": raster.path.name, "population_raster_synthetic": raster.synthetic,
                 "notes": [raster.note] if raster.synthetic else [],
                 "rules": conn.execute(text("SELECT count(*) FROM safety_rules")).scalar_one()}
        stats |= grade_installations(conn, run_id, raster, config)
        stats["violations"] = find_violations(conn, run_id, config)
        stats["rings"] = exposure_rings(conn, run_id, raster, config)
        stats["risk_grades"] = risk_grades(conn, run_id, config)
        _record_inputs(conn, run_id)
        finish_run(conn, run_id, stats)
    return stats


def _record_inputs(conn: Connection, run_id: int) -> None:
    # The tables are locked against other writers, so the versions now differ from those at the
    # start only by this run's own write-backs.
    conn.execute(text("UPDATE analysis_runs SET input_versions = CAST(:v AS jsonb) WHERE id = :id"),
                 {"v": json.dumps(layer_versions(conn, INPUTS)), "id": run_id})
