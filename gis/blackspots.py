"""Accident black spots (事故多发点段) by sliding windows along the roads.

There is no national numeric criterion (docs/road-safety.md, reference §4), so the defaults below
follow the practice found and are all configurable (``riskmap blackspots --help``):

* each accident is tied to the nearest road within ``tolerance_m`` (default 50 m) and placed at its
  distance along it; accidents farther from every road are **reported** (count and ids), not dropped
  silently;
* every road is cut into windows of ``window_m`` (1000 m) every ``step_m`` (250 m), the last one
  ending at the road's end (a road shorter than a window is one window);
* the period is the ``period_years`` (3, as in the city-level 排查 notice of the reference) up to
  ``period_end`` (default: the latest accident), the previous period the same length before it;
* a window is flagged when, in the period, it has ≥ ``min_major`` (2) crashes with ≥ ``major_deaths``
  (3) deaths each, or ≥ ``min_fatal`` (3) fatal crashes, or ≥ ``min_any`` (5) crashes (criteria (b),
  (c), (d) of that notice; (a) needs a road-defect survey we do not have);
* overlapping (or touching) flagged windows of a road merge into one black-spot segment whose counts
  are recounted over the merged stretch (an accident counts once); the strongest criterion met gives
  the grade (red: major_x2, orange: fatal_x3, yellow: any_x5), segments are ranked by deaths, then
  crashes, then injuries, and the trend compares the crashes with the previous period.

Distances are metres in the metric CRS (``layers.crs.METRIC_EPSG``; for Kunming EPSG:4543, CGCS2000 /
3-degree Gauss-Krüger CM 102E).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from layers.crs import METRIC_EPSG


@dataclass(frozen=True)
class BlackspotCriteria:
    """Window, period and thresholds (defaults: docs/road-safety.md)."""

    window_m: float = 1000.0
    step_m: float = 250.0
    period_years: int = 3
    period_end: datetime | None = None
    tolerance_m: float = 50.0
    min_major: int = 2
    major_deaths: int = 3
    min_fatal: int = 3
    min_any: int = 5

    def __post_init__(self):
        if not (self.window_m > 0 and 0 < self.step_m <= self.window_m):
            raise AnalysisError("black spots: need window_m > 0 and 0 < step_m <= window_m")
        if self.period_years < 1 or self.tolerance_m < 0:
            raise AnalysisError("black spots: need period_years >= 1 and tolerance_m >= 0")
        if min(self.min_major, self.min_fatal, self.min_any, self.major_deaths) < 1:
            raise AnalysisError("black spots: thresholds must be >= 1")


def compute(conn: Connection, run_id: int, criteria: BlackspotCriteria | None = None) -> dict:
    """Recompute the derived layer ``blackspots`` for run ``run_id`` (in the caller's transaction).

    Returns
    -------
    dict
        blackspots, windows_flagged, accidents_in_period, accidents_unmatched (farther than the
        tolerance from every road, with their ids in ``unmatched_accident_ids``, at most 100),
        period_start, period_end.
    """
    c = criteria or BlackspotCriteria()
    p = {k: v for k, v in asdict(c).items()}
    conn.execute(text("DELETE FROM blackspots"))
    conn.execute(text("DROP TABLE IF EXISTS _bs_acc"))
    # Each accident on its nearest road (5 nearest by bounding box, then exact metric distance; distances
    # equal to the centimetre, as on roads that overlap or meet at the accident, go to the lowest road id,
    # not to whichever float noise makes nearer).
    conn.execute(text(f"""
        CREATE TEMP TABLE _bs_acc AS
        SELECT a.id, a.occurred_at, a.deaths, a.injuries, a.hazmat, a.synthetic, m.road_id, m.pos_m, m.dist_m
        FROM accidents a
        LEFT JOIN LATERAL (
          SELECT r.id AS road_id, ST_LineLocatePoint(r.rg, r.ag) * ST_Length(r.rg) AS pos_m,
                 ST_Distance(r.rg, r.ag) AS dist_m
          FROM (SELECT r.id, ST_Transform(r.geom, {METRIC_EPSG}) AS rg, ST_Transform(a.geom, {METRIC_EPSG}) AS ag
                FROM roads r ORDER BY r.geom <-> a.geom LIMIT 5) r
          ORDER BY round(CAST(ST_Distance(r.rg, r.ag) AS numeric), 2), r.id LIMIT 1) m ON true"""))
    period = conn.execute(text("""
        SELECT e AS period_end, e - make_interval(years => :period_years) AS period_start,
               e - make_interval(years => 2 * :period_years) AS prev_start
        FROM (SELECT coalesce(CAST(:period_end AS timestamptz), (SELECT max(occurred_at) FROM accidents)) AS e) x"""),
        p).mappings().one()
    unmatched = conn.execute(text("""
        SELECT count(*) AS n, (array_agg(id ORDER BY id))[1:100] AS ids FROM _bs_acc
        WHERE road_id IS NULL OR dist_m > :tolerance_m"""), p).one()
    stats = {"blackspots": 0, "windows_flagged": 0, "accidents_in_period": 0, "accidents_unmatched": unmatched.n,
             "unmatched_accident_ids": list(unmatched.ids or []),
             "period_start": period["period_start"], "period_end": period["period_end"]}
    if period["period_end"] is None:
        return stats
    conn.execute(text("""
        DELETE FROM _bs_acc WHERE road_id IS NULL OR dist_m > :tolerance_m
          OR occurred_at IS NULL OR NOT (occurred_at > :prev_start AND occurred_at <= :period_end)"""), {**p, **period})
    conn.execute(text("ALTER TABLE _bs_acc ADD COLUMN cur boolean"))
    conn.execute(text("UPDATE _bs_acc SET cur = occurred_at > :period_start"), dict(period))
    stats["accidents_in_period"] = conn.execute(text("SELECT count(*) FROM _bs_acc WHERE cur")).scalar_one()
    counts = """count(*) FILTER (WHERE a.cur) AS accidents,
                coalesce(sum(a.deaths) FILTER (WHERE a.cur), 0) AS deaths,
                coalesce(sum(a.injuries) FILTER (WHERE a.cur), 0) AS injuries,
                count(*) FILTER (WHERE a.cur AND a.hazmat) AS hazmat_accidents,
                count(*) FILTER (WHERE a.cur AND a.deaths > 0) AS fatal,
                count(*) FILTER (WHERE a.cur AND a.deaths >= :major_deaths) AS major,
                count(*) FILTER (WHERE NOT a.cur) AS prev_accidents,
                coalesce(sum(a.deaths) FILTER (WHERE NOT a.cur), 0) AS prev_deaths,
                bool_or(a.synthetic) AS synthetic"""
    flag = "(major >= :min_major OR fatal >= :min_fatal OR accidents >= :min_any)"
    rows = conn.execute(text(f"""
        WITH roads_m AS (
          SELECT r.id, r.name, r.ref, r.synthetic, ST_Transform(r.geom, {METRIC_EPSG}) AS rg,
                 ST_Length(ST_Transform(r.geom, {METRIC_EPSG})) AS len
          FROM roads r WHERE r.id IN (SELECT road_id FROM _bs_acc WHERE cur GROUP BY road_id
                                      HAVING count(*) >= least(:min_major, :min_fatal, :min_any))),
        win AS (
          SELECT r.id AS road_id, s.a AS from_m, least(s.a + :window_m, r.len) AS to_m
          FROM roads_m r CROSS JOIN LATERAL (
            SELECT g * :step_m AS a FROM generate_series(0, floor(greatest(r.len - :window_m, 0) / :step_m)::int) g
            UNION SELECT greatest(r.len - :window_m, 0)) s),
        counted AS (
          SELECT w.road_id, w.from_m, w.to_m, {counts}
          FROM win w JOIN _bs_acc a ON a.road_id = w.road_id AND a.pos_m BETWEEN w.from_m AND w.to_m
          GROUP BY w.road_id, w.from_m, w.to_m),
        flagged AS (SELECT * FROM counted WHERE {flag}),
        grouped AS (
          SELECT *, sum(CASE WHEN prev_max IS NULL OR from_m > prev_max THEN 1 ELSE 0 END)
                      OVER (PARTITION BY road_id ORDER BY from_m) AS grp
          FROM (SELECT *, max(to_m) OVER (PARTITION BY road_id ORDER BY from_m
                                          ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
                FROM flagged) f),
        segs AS (SELECT road_id, min(from_m) AS from_m, max(to_m) AS to_m, count(*) AS windows
                 FROM grouped GROUP BY road_id, grp),
        seg_counts AS (
          SELECT s.road_id, s.from_m, s.to_m, s.windows, {counts}
          FROM segs s JOIN _bs_acc a ON a.road_id = s.road_id AND a.pos_m BETWEEN s.from_m AND s.to_m
          GROUP BY s.road_id, s.from_m, s.to_m, s.windows)
        SELECT c.*, r.name, r.ref, r.synthetic OR c.synthetic AS syn,
               CASE WHEN c.major >= :min_major THEN 'major_x2' WHEN c.fatal >= :min_fatal THEN 'fatal_x3'
                    ELSE 'any_x5' END AS criterion,
               ST_AsEWKB(ST_Transform(ST_LineSubstring(r.rg, c.from_m / r.len, c.to_m / r.len), 4326)) AS g
        FROM seg_counts c JOIN roads_m r ON r.id = c.road_id"""), p).mappings().all()
    grade = {"major_x2": "red", "fatal_x3": "orange", "any_x5": "yellow"}
    ranked = sorted(rows, key=lambda r: (-r["deaths"], -r["accidents"], -r["injuries"], r["road_id"], r["from_m"]))
    out = []
    for rank, r in enumerate(ranked, 1):
        trend = ("new" if r["prev_accidents"] == 0 else "up" if r["accidents"] > r["prev_accidents"]
                 else "down" if r["accidents"] < r["prev_accidents"] else "same")
        out.append({"run_id": run_id, "name": r["name"] or r["ref"], "road_id": r["road_id"], "road_ref": r["ref"],
                    "from_m": r["from_m"], "to_m": r["to_m"], "length_m": r["to_m"] - r["from_m"],
                    "accidents": r["accidents"], "deaths": r["deaths"], "injuries": r["injuries"],
                    "hazmat_accidents": r["hazmat_accidents"], "prev_accidents": r["prev_accidents"],
                    "prev_deaths": r["prev_deaths"], "trend": trend, "rank": rank, "criterion": r["criterion"],
                    "risk_grade": grade[r["criterion"]], "period_start": period["period_start"],
                    "period_end": period["period_end"], "synthetic": bool(r["syn"]), "g": r["g"]})
    if out:
        conn.execute(text("""
            INSERT INTO blackspots (run_id, name, road_id, road_ref, from_m, to_m, length_m, accidents, deaths,
                                    injuries, hazmat_accidents, prev_accidents, prev_deaths, trend, rank, criterion,
                                    risk_grade, period_start, period_end, synthetic, geom)
            VALUES (:run_id, :name, :road_id, :road_ref, :from_m, :to_m, :length_m, :accidents, :deaths, :injuries,
                    :hazmat_accidents, :prev_accidents, :prev_deaths, :trend, :rank, :criterion, :risk_grade,
                    :period_start, :period_end, :synthetic, ST_GeomFromEWKB(:g))"""), out)
    stats["blackspots"] = len(out)
    stats["windows_flagged"] = int(sum(r["windows"] for r in rows))
    conn.execute(text("DROP TABLE _bs_acc"))
    return stats
