"""Monitoring: the point state machine (pure), then ingest, alarms, escalation and offline on PostGIS."""

from datetime import datetime, timedelta, timezone

import geopandas as gpd
import pytest
import shapely
from sqlalchemy import text

from gis import monitoring
from gis.monitoring import RED, Rule, State, combine, ingest, step
from layers import registry
from layers.io import validate, write
from layers.settings import StoreSettings

T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=3)


def feed(rule, values, dt=600.0):
    """Levels after each value fed to a fresh state machine, and the raw crossings."""
    state, levels, crossings = State(1), [], 0
    for i, v in enumerate(values):
        crossed = step(state, rule, i * dt, v)[1]
        crossings += crossed
        levels.append(state.level)
    return levels, crossings


ABOVE = Rule(1, (30, 50, 80, 120), hysteresis=2, debounce=2)
BELOW = Rule(-1, (6.0, 5.0, 4.4, 4.0), hysteresis=0.1, debounce=2)


def test_levels_directions_and_ladder():
    assert [ABOVE.value_level(v) for v in (29.9, 30, 50, 79, 120)] == [0, 1, 2, 2, 4]
    assert [BELOW.value_level(v) for v in (6.1, 6.0, 4.5, 4.4, 3.9)] == [0, 1, 2, 3, 4]
    assert ABOVE.value_level(48.5, relax=True) == 2 and BELOW.value_level(5.05, relax=True) == 2
    assert combine([1, 1, 1, 1], True) == 2 and combine([1, 1, 1], True) == 1
    assert combine([2, 2, 2, 0], True) == 3 and combine([3, 3], True) == 4 and combine([3, 3], False) == 3
    assert combine([4], True) == 4 and combine([], True) == 0


def test_debounce_ignores_a_single_spike_but_never_a_red():
    levels, _ = feed(ABOVE, [10, 55, 10, 10])           # one yellow reading: no change
    assert levels == [0, 0, 0, 0]
    levels, _ = feed(ABOVE, [10, 55, 60, 10, 10])       # two in a row: yellow, then two to fall
    assert levels == [0, 0, 2, 2, 0]
    levels, _ = feed(ABOVE, [10, 130, 10, 10])          # red at once, even for one reading
    assert levels == [0, RED, RED, 0]


def test_hysteresis_stops_a_hovering_value_from_flapping():
    hover = [49.5, 50.5] * 50                            # at the yellow threshold, 50 raw crossings
    levels, crossings = feed(ABOVE, hover)
    changes = sum(a != b for a, b in zip([0] + levels, levels))
    assert crossings == 51 and changes == 2             # blue once, yellow once, then it stays
    assert levels[-1] == 2
    levels, _ = feed(ABOVE, [51, 51] + [48.5] * 10 + [47.9, 47.9])  # falls only past 50 - 2
    assert levels[-3] == 2 and levels[-1] == 1
    levels, _ = feed(BELOW, [4.3, 4.3, 4.45, 4.5, 4.55, 4.6])       # below-direction: orange until > 4.4 + 0.1
    assert levels == [0, 3, 3, 3, 3, 2]


def test_rate_rule_over_the_window():
    rule = Rule(1, (300, 500, 800, 1200), rates=(2, 5, 10, 20), rate_window_s=86400, debounce=1)
    values = [100 + 6 * i / 144 for i in range(300)]    # 6 mm/day, every 10 min
    levels, _ = feed(rule, values)
    assert levels[94] == 0 and levels[95] == 2          # bucket mean times half a window apart
    state = State(1)
    for i, v in enumerate(values):
        step(state, rule, i * 600.0, v)
    assert len(state.anchors) <= 7
    assert monitoring.rate_of(state, rule, 300 * 600.0, 100 + 6 * 300 / 144) == pytest.approx(6.0)


def test_fast_path_matches_the_state_machine():
    """The batch evaluation skips readings inside a point's steady band; it must agree with feeding
    every reading to ``step`` (random walks across the thresholds, three rules)."""
    import random

    rng = random.Random(3)
    meta = monitoring.SensorMeta(1, "X", "displacement", ("tailings_ponds", 1), 600, False)
    for rule, start, scale in ((ABOVE, 40, 6), (BELOW, 5.5, 0.3), (Rule(1, (None, 10, None, 20), 1, debounce=3), 12, 2)):
        values, v = [], start
        for _ in range(3000):
            v += rng.gauss(0, scale)
            values.append(v)
        readings = [(meta, i * 600.0, x, "") for i, x in enumerate(values)]
        run = monitoring._run_machines(readings, {}, {("displacement", "tailings_ponds", 1): rule})
        ref, crossings = State(1), 0
        changes = []
        for i, x in enumerate(values):
            changed, crossed = step(ref, rule, i * 600.0, x)
            crossings += crossed
            if changed:
                changes.append((i * 600.0, 1, ref.level, x))
        assert run.transitions == changes and len(changes) > 20
        assert run.crossings == crossings and run.touched[0].level == ref.level


# --------------------------------------------------------------------------------------- database
@pytest.fixture
def site(clean):
    """One tailings pond with 4 displacement + 2 phreatic + 1 rainfall + 1 pond level sensor, one hazard
    installation with a gas detector; per-asset pond-level thresholds."""
    area = StoreSettings().area_bbox
    pond = shapely.Polygon([(102.70, 25.00), (102.71, 25.00), (102.71, 25.01), (102.70, 25.01)])
    inst = shapely.Polygon([(102.80, 25.10), (102.801, 25.10), (102.801, 25.101), (102.80, 25.101)])
    sensors = [("D1", "displacement"), ("D2", "displacement"), ("D3", "displacement"), ("D4", "displacement"),
               ("P1", "phreatic_depth"), ("P2", "phreatic_depth"), ("R1", "rainfall"), ("L1", "pond_level"),
               ("F1", "freeboard"), ("B1", "dry_beach")]
    with clean.begin() as conn:
        conn.execute(text("TRUNCATE monitoring_alarms, monitoring_alarm_events, monitoring_daily CASCADE"))
        conn.execute(text("DELETE FROM monitoring_thresholds WHERE asset_layer IS NOT NULL"))
        for layer, rows, geom in (("tailings_ponds", {"name": ["测试库"]}, pond),
                                  ("hazard_installations", {"name": ["罐区"], "level": [2]}, inst)):
            spec = registry.get(layer)
            write(conn, spec, validate(spec, gpd.GeoDataFrame(rows, geometry=[geom], crs=4326), area)[0])
        spec = registry.get("monitoring_sensors")
        frame = gpd.GeoDataFrame(
            {"code": [c for c, _ in sensors] + ["G1"], "kind": [k for _, k in sensors] + ["gas_flammable"],
             "asset_layer": ["tailings_ponds"] * len(sensors) + ["hazard_installations"],
             "asset_id": [1] * len(sensors) + [1], "interval_s": 600},
            geometry=[pond.centroid] * len(sensors) + [inst.centroid], crs=4326)
        records, rejections, _ = validate(spec, frame, area)
        assert not rejections
        write(conn, spec, records)
        monitoring.set_threshold(conn, "pond_level", {"blue": 1902, "yellow": 1902.5, "orange": 1903, "red": 1903.5},
                                 "tailings_ponds", 1)
    return clean


def post(engine, readings, now=None):
    with engine.begin() as conn:
        return ingest(conn, readings, now=now)


def r(sensor, minutes, value, unit):
    return {"sensor": sensor, "time": (T0 + timedelta(minutes=minutes)).isoformat(), "value": value, "unit": unit}


def alarms(engine, status="all"):
    with engine.connect() as conn:
        return monitoring.list_alarms(conn, status)


def test_bad_readings_rejected_one_by_one_and_ingest_is_idempotent(site):
    batch = [r("D1", 0, 10, "mm"), r("NOPE", 0, 1, "mm"), r("D1", 10, 1, "furlong"), r("D1", 20, float("nan"), "mm"),
             {"sensor": "D1", "time": (datetime.now(timezone.utc) + timedelta(days=1)).isoformat(), "value": 1,
              "unit": "mm"},
             r("D1", 30, "abc", "mm"), {"sensor": "D1", "value": 1, "unit": "mm"}, "junk", r("P1", 0, 650, "cm"),
             r("D1", 0, 10, "mm"), r("D2", 0, 1e25, "mm"), r("P1", 10, 2, "m")]
    res = post(site, batch, T0 + timedelta(minutes=40))
    reasons = {x["index"]: x["reason"] for x in res["rejected"]}
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7, 10}
    assert reasons[10] == ("value 1e+25 mm is beyond what a displacement sensor can report (-100000 to 100000): "
                           "a sensor fault, not stored")
    assert "unknown sensor 'NOPE'" in reasons[1] and "unit 'furlong'" in reasons[2] and "finite" in reasons[3]
    assert "future" in reasons[4] and "time must be" in reasons[6] and "object" in reasons[7]
    assert res["accepted"] == 4 and res["stored"] == 3 and res["duplicates"] == 1
    again = post(site, batch, T0 + timedelta(minutes=40))
    assert again["stored"] == 0 and again["duplicates"] == 4
    with site.connect() as conn:
        rows = conn.execute(text("SELECT s.code, r.value FROM monitoring_readings r JOIN monitoring_sensors s "
                                 "ON s.id = r.sensor_id ORDER BY s.code")).all()
    assert [tuple(x) for x in rows] == [("D1", 10.0), ("P1", 6.5), ("P1", 2.0)]  # 650 cm stored as 6.5 m


def test_one_alarm_per_item_opens_escalates_and_closes_with_history(site):
    seq = [10, 55, 56, 57, 130, 60, 40, 20, 10, 10]       # yellow (2 readings), red at once, back down
    res = post(site, [r("D1", 10 * i, v, "mm") for i, v in enumerate(seq)], T0 + timedelta(minutes=100))
    # 60, 40 fall to the highest level the two readings hold (yellow); 20, 10 close it
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [
        ("open", "yellow"), ("escalate", "red"), ("deescalate", "yellow"), ("close", "normal")]
    found = alarms(site)
    assert len(found) == 1 and found[0]["status"] == "closed" and found[0]["max_level"] == "red"
    with site.connect() as conn:
        detail = monitoring.alarm_detail(conn, found[0]["id"])
        daily = monitoring.daily_counts(conn, 30)
    assert [h["event"] for h in detail["history"]] == ["open", "escalate", "deescalate", "close"]
    assert detail["history"][1]["time"] == (T0 + timedelta(minutes=40)).isoformat()  # the red reading's time
    total = {k: sum(d[k] for d in daily) for k in ("readings", "opened", "escalated", "crossings", "red")}
    assert total == {"readings": 10, "opened": 1, "escalated": 1, "crossings": 2, "red": 1}


def test_gb39496_escalation_points_and_items(site):
    now = T0 + timedelta(minutes=30)
    # four displacement points at blue -> the displacement item is yellow
    post(site, [r(f"D{k}", m, 35, "mm") for k in range(1, 5) for m in (0, 10)], now)
    open_ = {a["item"]: a["level"] for a in alarms(site, "open")}
    assert open_ == {"displacement": "yellow"}
    # two phreatic points at orange -> the phreatic item is red
    post(site, [r(f"P{k}", m, 4.3, "m") for k in (1, 2) for m in (20, 30)], now)
    open_ = {a["item"]: a["level"] for a in alarms(site, "open")}
    assert open_ == {"displacement": "yellow", "phreatic_depth": "red"}
    with site.connect() as conn:
        level = conn.execute(text("SELECT alarm_level, open_alarms FROM monitored_assets "
                                  "WHERE asset_layer = 'tailings_ponds'")).one()
        sensor = conn.execute(text("SELECT alarm_level FROM monitoring_sensors WHERE code = 'P1'")).scalar()
    assert tuple(level) == ("red", 2) and sensor == "orange"


def test_four_items_at_blue_raise_the_pond(site):
    now = T0 + timedelta(minutes=10)
    blue = [("D1", 35, "mm"), ("P1", 5.8, "m"), ("R1", 30, "mm"), ("L1", 1902.2, "m")]
    res = post(site, [r(c, m, v, u) for c, v, u in blue for m in (0, 10)], now)
    open_ = {a["item"]: a["level"] for a in alarms(site, "open")}
    assert open_ == {"displacement": "blue", "phreatic_depth": "blue", "rainfall": "blue", "pond_level": "blue",
                     "pond": "yellow"}
    assert sum(e["event"] == "open" for e in res["alarms"]) == 5
    with site.connect() as conn:
        assert conn.execute(text("SELECT alarm_level FROM monitored_assets WHERE asset_layer = 'tailings_ponds'")
                            ).scalar() == "yellow"


def test_offline_sensor_alarm_opens_and_closes(site):
    post(site, [r("G1", 0, 1.0, "%LEL")], T0)
    with site.begin() as conn:
        assert monitoring.check_offline(conn, T0 + timedelta(minutes=29)) == []
        events = monitoring.check_offline(conn, T0 + timedelta(minutes=31))  # 3 intervals of 10 min
    assert [(e["item"], e["event"], e["level"]) for e in events] == [("offline", "open", "blue")]
    with site.connect() as conn:
        row = conn.execute(text("SELECT offline_sensors, open_alarms FROM monitored_assets "
                                "WHERE asset_layer = 'hazard_installations'")).one()
    assert tuple(row) == (1, 1)
    res = post(site, [r("G1", 40, 1.0, "%LEL")], T0 + timedelta(minutes=40))
    assert [(e["item"], e["event"]) for e in res["alarms"]] == [("offline", "close")]
    # the daily counts set alarms against threshold crossings: an offline alarm is neither (QA: reduction -7 %)
    with site.connect() as conn:
        assert conn.execute(text("SELECT sum(opened), sum(crossings) FROM monitoring_daily")).one() == (0, 0)


def test_thresholds_are_checked_and_per_asset_overrides_default(site):
    from layers.errors import DataError

    with site.begin() as conn:
        with pytest.raises(DataError, match="yellow"):
            monitoring.set_threshold(conn, "displacement", {"blue": 30, "yellow": 20})
        with pytest.raises(DataError, match="below"):
            monitoring.set_threshold(conn, "phreatic_depth", {"blue": 5, "yellow": 6})
        with pytest.raises(DataError, match="belong"):
            monitoring.set_threshold(conn, "displacement", {"red": 5}, "hazard_installations", 1)
        with pytest.raises(DataError, match="beyond what a sensor can report"):  # (QA: 1.18e21 mm was stored)
            monitoring.set_threshold(conn, "displacement", {"blue": 2**70})
        monitoring.set_threshold(conn, "displacement", {"blue": 5, "red": 10, "debounce": 1}, "tailings_ponds", 1)
        rules = monitoring.load_rules(conn)
    assert monitoring.rule_for(rules, "displacement", ("tailings_ponds", 1)).limits == (5, None, None, 10)
    assert monitoring.rule_for(rules, "displacement", ("tailings_ponds", 2)).limits == (30, 50, 80, 120)
    res = post(site, [r("D1", 0, 7, "mm")], T0)
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("open", "blue")]


def test_rows_written_behind_the_ingest_take_the_conflict_path(site):
    post(site, [r("D2", 0, 10, "mm")], T0)
    with site.begin() as conn:  # a reading newer than the state, written without ingest()
        conn.execute(text("INSERT INTO monitoring_readings SELECT id, :t, 99 FROM monitoring_sensors WHERE code = 'D2'"),
                     {"t": T0 + timedelta(minutes=10)})
    res = post(site, [r("D2", 10, 11, "mm"), r("D2", 20, 12, "mm")], T0 + timedelta(minutes=20))
    assert res["stored"] == 1 and res["duplicates"] == 1
    with site.connect() as conn:
        values = conn.execute(text("SELECT value FROM monitoring_readings r JOIN monitoring_sensors s "
                                   "ON s.id = r.sensor_id WHERE s.code = 'D2' ORDER BY time")).scalars().all()
    assert values == [10, 99, 12]  # the first value written stays


def test_rejection_indices_across_validation_chunks(site):
    batch = [r("D3", m, 10 + m % 3, "mm") for m in range(4500)]
    for i in (10, 2500, 4400):
        batch[i] = dict(batch[i], unit="kg")
    res = post(site, batch, T0 + timedelta(minutes=4500))
    assert [x["index"] for x in res["rejected"]] == [10, 2500, 4400]
    assert res["stored"] == 4497 and res["duplicates"] == 0


def test_same_time_twice_in_a_batch_the_first_value_counts(site):
    res = post(site, [r("G1", 0, 60.0, "%LEL"), r("G1", 0, 1.0, "%LEL")], T0)  # red first: stored and evaluated
    assert res["stored"] == 1 and res["duplicates"] == 1
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("open", "red")]
    res = post(site, [r("G1", 10, 1.0, "%LEL"), r("G1", 10, 60.0, "%LEL"), r("G1", 20, 1.0, "%LEL")],
               T0 + timedelta(minutes=20))
    assert res["stored"] == 2  # 1.0 at 10 and 20 min: two readings below, the alarm closes (debounce 2)
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("close", "normal")]
    with site.connect() as conn:
        values = conn.execute(text("SELECT value FROM monitoring_readings ORDER BY time")).scalars().all()
    assert values == [60.0, 1.0, 1.0]


def test_alarm_levels_keep_the_sensor_catalogue_new_sensors_renew_it(site):
    """The ingest writes each point's alarm level into monitoring_sensors (the map colours it);
    that must not reload the cached catalogue, while a new sensor must be known at the next ingest."""
    with site.connect() as conn:
        before = monitoring.sensors(conn)
    res = post(site, [r("G1", 0, 60.0, "%LEL")], T0)
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("open", "red")]
    with site.connect() as conn:
        assert monitoring.sensors(conn) is before
        assert conn.execute(text("SELECT alarm_level FROM monitoring_sensors WHERE code = 'G1'")).scalar() == "red"
    spec = registry.get("monitoring_sensors")
    frame = gpd.GeoDataFrame({"code": ["G2"], "kind": ["gas_flammable"], "asset_layer": ["hazard_installations"],
                              "asset_id": [1], "interval_s": [600]}, geometry=[shapely.Point(102.8005, 25.1005)],
                             crs=4326)
    with site.begin() as conn:
        write(conn, spec, validate(spec, frame, StoreSettings().area_bbox)[0])
    res = post(site, [r("G2", 0, 1.0, "%LEL")], T0)
    assert res["stored"] == 1 and res["rejected"] == []
    with site.connect() as conn:
        assert conn.execute(text("SELECT sensors FROM monitored_assets WHERE asset_layer = 'hazard_installations'")
                            ).scalar() == 2


def test_gc_pauses_nest_and_restore_the_collector():
    import gc

    assert gc.isenabled()
    with monitoring.gc_paused():
        with monitoring.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with monitoring.gc_paused():
            pass
        assert not gc.isenabled()  # was off before: stays off
    finally:
        gc.enable()


def test_csv_line_ends_and_unreadable_csv():
    """Any line end (LF, CRLF, a lone CR) is one; a CR inside an unquoted field used to raise csv.Error out of
    the parser, a 500 of POST /monitoring/readings (found by tests/api/test_fuzz.py); what the csv module cannot
    read is a DataError (400) naming the line."""
    from layers.errors import DataError

    row = {"sensor": "TP1-D1", "time": "2024-07-01T08:00", "value": "1", "unit": "mm"}
    assert monitoring.parse_csv("sensor,time,value,unit\rTP1-D1,2024-07-01T08:00,1,mm\r") == [row]
    assert monitoring.parse_csv(b"sensor,time,value,unit\r\nTP1-D1,2024-07-01T08:00,1,mm\r\n") == [row]
    rows = monitoring.parse_csv("sensor,time,value,unit\nTP1-D1,a\rb,1,mm\n")
    assert [r["sensor"] for r in rows] == ["TP1-D1", "b"]  # (two rows, each then rejected on its own)
    with pytest.raises(DataError, match=r"CSV cannot be read: field larger than field limit \(131072\) \(after line 1\)"):
        monitoring.parse_csv("sensor,time,value,unit\nTP1-D1," + "x" * 200_000 + ",1,mm\n")


def test_a_late_red_reading_still_raises_red_and_later_readings_lower_it(site):
    # a gateway with a fast clock: a reading 4 minutes ahead makes the real ones after it late
    res = post(site, [r("G1", 4, 1.0, "%LEL")], T0)
    assert res["stored"] == 1 and not res["alarms"]
    res = post(site, [r("G1", 1, 20.0, "%LEL"), r("G1", 2, 85.0, "%LEL")], T0 + timedelta(minutes=2))
    assert res["late"] == 2 and res["crossings"] == 1  # 20 %LEL (below red) is not evaluated, 85 is
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("open", "red")]
    (alarm,) = alarms(site, "open")
    assert alarm["level"] == "red"
    with site.connect() as conn:  # raised as of the sensor's latest reading, which the red one came after
        history = monitoring.alarm_detail(conn, alarm["id"])["history"]
    assert history[0]["time"] == (T0 + timedelta(minutes=4)).isoformat()
    # a late red on a point already red changes nothing; in-order readings below lower it as usual
    assert post(site, [r("G1", 3, 90.0, "%LEL")], T0 + timedelta(minutes=5))["alarms"] == []
    res = post(site, [r("G1", 10, 1.0, "%LEL"), r("G1", 20, 1.0, "%LEL")], T0 + timedelta(minutes=20))
    assert [(e["event"], e["level"]) for e in res["alarms"]] == [("close", "normal")]
