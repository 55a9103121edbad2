"""The simulated feed (``riskmap simulate-sensors``): the incident raises alarms, no red episode is
missed, and far fewer alarms are raised than raw threshold crossings."""

from datetime import datetime, timezone

import geopandas as gpd
import shapely
from sqlalchemy import text

from gis import monitoring
from layers import registry
from layers.io import validate, write
from layers.settings import StoreSettings


def test_simulated_feed_alarms_against_crossings(clean):
    area = StoreSettings().area_bbox
    squares = [shapely.box(102.6 + i * 0.02, 25.0, 102.61 + i * 0.02, 25.01) for i in range(3)]
    with clean.begin() as conn:
        conn.execute(text("TRUNCATE monitoring_alarms, monitoring_alarm_events, monitoring_daily CASCADE"))
        conn.execute(text("DELETE FROM monitoring_thresholds WHERE asset_layer IS NOT NULL"))
        for layer, names in (("tailings_ponds", ["甲库", "乙库", "丙库"]), ("hazard_installations", ["一号罐区", "二号罐区"])):
            spec = registry.get(layer)
            frame = gpd.GeoDataFrame({"name": names}, geometry=squares[:len(names)], crs=4326)
            write(conn, spec, validate(spec, frame, area)[0])
    now = datetime.now(timezone.utc).replace(microsecond=0)
    out = monitoring.simulate(clean, hours=24, step_min=10, now=now)

    assert out["sensors"] == 3 * 10 + 2 * 5 and out["steps"] == 145
    assert out["stored"] == out["sensors"] * out["steps"] and len(out["rejected"]) == 3
    assert {r["index"] for r in out["rejected"]} == {out["stored"] // 145 * 6 + i for i in range(3)}
    assert out["red_episodes"] >= 2 and out["red_missed"] == []
    raised = out["alarms_opened"] + out["escalations"]
    assert out["crossings"] >= 3 * raised and out["reduction"] >= 0.6
    with clean.connect() as conn:
        pond = {a["item"]: a["level"] for a in monitoring.list_alarms(conn, "open", "tailings_ponds", 1)}
        gas = monitoring.list_alarms(conn, "all", "hazard_installations", 1)
        assets = dict(conn.execute(text("SELECT asset_layer || asset_id, alarm_level FROM monitored_assets")).all())
        synthetic = conn.execute(text("SELECT bool_and(synthetic) FROM monitoring_sensors")).scalar()
    assert pond["displacement"] == "red" and pond["phreatic_depth"] == "red" and pond["freeboard"] == "red"
    assert assets["tailings_ponds1"] == "red" and synthetic
    leak = next(a for a in gas if a["item"] == "gas_flammable")
    assert leak["max_level"] == "red" and leak["status"] == "closed"  # the leak came and went
