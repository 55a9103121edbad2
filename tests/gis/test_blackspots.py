"""Black spots on hand-built roads: accidents placed at known metres along straight metric lines, so
the flagged windows, merged segments, counts, ranks and trends can be worked out by hand."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import shapely
from pyproj import Transformer
from shapely import wkb
from shapely.geometry import LineString, Point
from sqlalchemy import text

from gis import blackspots
from gis.blackspots import BlackspotCriteria
from gis.errors import AnalysisError
from layers.crs import METRIC_EPSG

TO_LONLAT = Transformer.from_crs(METRIC_EPSG, 4326, always_xy=True).transform
TO_METRIC = Transformer.from_crs(4326, METRIC_EPSG, always_xy=True).transform
X0, Y0 = (round(v) for v in TO_METRIC(102.7, 25.0))  # metres in the project's metric CRS, near Kunming
END = datetime(2025, 12, 31, 12, tzinfo=timezone.utc)  # the latest accident: end of the period
TABLES = "roads, accidents, blackspots, route_conflicts, hazmat_routes, restricted_structures, water_source_zones"


def transform(fn, geom):
    return shapely.transform(geom, fn, interleaved=False)


def road_wkt(y: float, length: float) -> str:
    line = LineString([(X0 + s, y) for s in range(0, int(length) + 1, 100)])  # dense: straight in both CRSs
    return transform(TO_LONLAT, line).wkt


def at(s: float, y: float, offset: float = 0.0) -> str:
    return transform(TO_LONLAT, Point(X0 + s, y + offset)).wkt


@pytest.fixture
def clean(engine):
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def accidents(clean):
    """R1 (5 km) and R2 (600 m); times are days before END."""
    rows = [
        # R1 cluster A: five crashes without deaths at 1110..1490 m, this period
        *[(1, s, 30 + i, 0, 1, False) for i, s in enumerate((1110, 1200, 1300, 1400, 1490))],
        # R1 cluster B: three fatal crashes at 3600..3800 m, plus one in the previous period
        (1, 3600, 10, 1, 0, True), (1, 3700, 20, 1, 2, False), (1, 3800, 40, 1, 0, False),
        (1, 3700, 365 * 3 + 100, 1, 0, False),
        # R1: a lone crash (never a black spot) and one 5 years ago (outside both periods)
        (1, 200, 0, 0, 1, False), (1, 1300, 365 * 7, 5, 0, False),
        # R2: two crashes with >= 3 deaths this period; three crashes in the previous period
        (2, 300, 50, 3, 1, True), (2, 320, 60, 4, 0, False),
        *[(2, 300, 365 * 3 + 10 * i + 5, 0, 1, False) for i in range(3)],
    ]
    with clean.begin() as conn:
        conn.execute(text("INSERT INTO roads (name, ref, road_class, synthetic, geom) VALUES "
                          "('R1', 'G1', 'trunk', false, ST_GeomFromText(:a, 4326)), "
                          "('R2', 'S2', 'primary', false, ST_GeomFromText(:b, 4326))"),
                     {"a": road_wkt(Y0, 5000), "b": road_wkt(Y0 + 3000, 600)})
        ys = {1: Y0, 2: Y0 + 3000}
        for road, s, days, deaths, injuries, hazmat in rows:
            conn.execute(text("INSERT INTO accidents (occurred_at, deaths, injuries, hazmat, synthetic, geom) "
                              "VALUES (:t, :d, :i, :h, true, ST_GeomFromText(:g, 4326))"),
                         {"t": END - timedelta(days=days), "d": deaths, "i": injuries, "h": hazmat,
                          "g": at(s, ys[road], offset=12.0)})
        # 200 m off every road: must be reported, not silently dropped
        conn.execute(text("INSERT INTO accidents (occurred_at, deaths, injuries, geom) "
                          "VALUES (:t, 0, 1, ST_GeomFromText(:g, 4326))"),
                     {"t": END - timedelta(days=5), "g": at(2500, Y0, offset=200)})
    return clean


def run(engine, criteria=None):
    with engine.begin() as conn:
        run_id = conn.execute(text("INSERT INTO analysis_runs (analysis) VALUES ('test') RETURNING id")).scalar_one()
        stats = blackspots.compute(conn, run_id, criteria)
        rows = conn.execute(text("SELECT *, ST_AsBinary(geom) AS wkb FROM blackspots ORDER BY rank")).mappings().all()
    return stats, rows


def test_default_criteria_known_answer(accidents):
    stats, rows = run(accidents)
    assert stats["period_end"] == END and stats["period_start"] == END.replace(year=2022)
    assert stats["accidents_unmatched"] == 1 and stats["unmatched_accident_ids"] == [17]
    assert stats["accidents_in_period"] == 11  # 5 + 3 + 1 (R1 lone) + 2 (R2)
    got = [(r["name"], r["from_m"], r["to_m"], r["accidents"], r["deaths"], r["injuries"], r["criterion"],
            r["risk_grade"], r["rank"], r["prev_accidents"], r["trend"]) for r in rows]
    assert got == [
        # R2 is shorter than a window: one window over the whole road; 2 crashes with >= 3 deaths
        ("R2", 0, pytest.approx(600, abs=0.01), 2, 7, 1, "major_x2", "red", 1, 3, "down"),
        # windows starting at 3000, 3250, 3500 hold all three fatal crashes -> merged 3000..4500
        ("R1", 3000, 4500, 3, 3, 2, "fatal_x3", "orange", 2, 1, "up"),
        # windows starting at 500, 750, 1000 hold all five crashes at 1110..1490 -> merged 500..2000
        ("R1", 500, 2000, 5, 0, 5, "any_x5", "yellow", 3, 0, "new"),
    ]
    assert stats["blackspots"] == 3 and stats["windows_flagged"] == 1 + 3 + 3
    assert [r["hazmat_accidents"] for r in rows] == [1, 1, 0]
    assert all(r["synthetic"] for r in rows)  # built from synthetic accidents
    # geometry: the stretch 500..2000 m of R1
    seg = transform(TO_METRIC, wkb.loads(bytes(rows[2]["wkb"])))
    assert seg.length == pytest.approx(1500, abs=0.5)
    assert seg.coords[0] == pytest.approx((X0 + 500, Y0), abs=0.5)


def test_configured_window_and_thresholds(accidents):
    # 500 m windows every 100 m: the five crashes (1110..1490) fit in windows starting at 1000 and 1100
    stats, rows = run(accidents, BlackspotCriteria(window_m=500, step_m=100, min_fatal=4))
    got = [(r["name"], r["from_m"], r["to_m"], r["criterion"]) for r in rows]
    # R2 keeps its two major crashes; cluster B (3 fatal) no longer qualifies with min_fatal=4
    r2 = [g for g in got if g[0] == "R2"]
    # R2 (600 m) has windows 0..500 and 100..600: both hold the crashes at 300 and 320 -> merged 0..600
    assert r2 == [("R2", 0, pytest.approx(600, abs=0.01), "major_x2")]
    assert [g for g in got if g[0] == "R1"] == [("R1", 1000, 1600, "any_x5")]


def test_period_end_moves_the_period(accidents):
    # ending a year earlier drops the crashes of the last year (all the R1 clusters are recent)
    stats, rows = run(accidents, BlackspotCriteria(period_end=END - timedelta(days=365)))
    assert stats["period_end"] == END - timedelta(days=365)
    assert [r["name"] for r in rows] == []


def test_bad_criteria_rejected():
    with pytest.raises(AnalysisError, match="step_m"):
        BlackspotCriteria(window_m=100, step_m=200)
    with pytest.raises(AnalysisError, match="thresholds"):
        BlackspotCriteria(min_any=0)


def test_cli_end_day_is_the_whole_day(accidents, db_url, monkeypatch):
    from typer.testing import CliRunner

    from api.cli import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    # the latest crash is at END, 2025-12-31 20:00 Beijing time: a period ending "2025-12-31" holds it
    out = CliRunner().invoke(app, ["blackspots", "--end", "2025-12-31"])
    assert out.exit_code == 0, out.output
    assert "accidents_in_period=11," in out.output  # (as the run to END itself; "2025-12-31" at 00:00 had 10)
    with accidents.connect() as conn:
        assert conn.execute(text("SELECT max(period_end) FROM blackspots")).scalar_one() == datetime(
            2025, 12, 31, 16, tzinfo=timezone.utc) - timedelta(microseconds=1)  # (23:59:59.999999 Beijing)
    bad = CliRunner().invoke(app, ["blackspots", "--end", "garbage"])
    assert bad.exit_code == 2 and "--end must be an ISO 8601 time" in bad.output


def test_an_accident_where_roads_meet_goes_to_the_lowest_road_id(clean):
    with clean.begin() as conn:  # R1 west-east and R2 south-north cross at 1000 m along R1; R3 duplicates R1
        conn.execute(text("INSERT INTO roads (name, road_class, geom) VALUES ('R1', 'trunk', ST_GeomFromText(:a, 4326)), "
                          "('R2', 'trunk', ST_GeomFromText(:b, 4326)), ('R3', 'trunk', ST_GeomFromText(:a, 4326))"),
                     {"a": road_wkt(Y0, 2000), "b": transform(TO_LONLAT, LineString(
                         [(X0 + 1000, Y0 - 1000 + s) for s in range(0, 2001, 100)])).wkt})
        for i in range(5):  # at the crossing, as digitised (a few nanometres off either road)
            conn.execute(text("INSERT INTO accidents (occurred_at, deaths, injuries, synthetic, geom) "
                              "VALUES (:t, 0, 1, true, ST_GeomFromText(:g, 4326))"),
                         {"t": END - timedelta(days=i), "g": at(1000, Y0, offset=1e-6 * (-1) ** i)})
    stats, rows = run(clean)
    assert [(r["name"], r["accidents"]) for r in rows] == [("R1", 5)]
