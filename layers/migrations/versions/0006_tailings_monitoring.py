"""Tailings head-top zones and online monitoring: downstream zones, sensors, readings, thresholds,
alarms with history, monitored assets (current level), daily counts; default thresholds per kind.

Revision ID: 0006
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from layers.migrations.util import bump_trigger, geom_column, gist_index

revision = "0006"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
NOW = sa.text("now()")

# Default thresholds per sensor kind (asset NULL); a row per asset overrides them. Kinds whose
# thresholds only make sense per asset (pond level, temperature, pressure, toxic gas) have none.
# (kind, blue, yellow, orange, red, hysteresis, rate blue/yellow/orange/red per day, debounce, source)
DEFAULTS = [
    ("displacement", 30, 50, 80, 120, 2, (2, 5, 10, 20), 2,
     "demo defaults: GB 39496-2020 5.5.4 leaves displacement thresholds to the designer; set them per pond"),
    ("phreatic_depth", 6.0, 5.0, 4.4, 4.0, 0.1, None, 2,
     "red: stand-in for the GB 50863 minimum burial depth (set per pond); orange = 1.1 x red "
     "(GB 51108-2015 条文说明 8.3); blue/yellow: demo"),
    ("freeboard", 2.0, 1.5, 1.2, 1.0, 0.05, None, 2,
     "red: stand-in for the GB 50863 minimum freeboard (set per pond); others: demo"),
    ("dry_beach", 100, 90, 80, 70, 2, None, 2,
     "red: stand-in for the GB 50863 minimum dry-beach length (set per pond); others: demo"),
    ("rainfall", 25, 50, 100, 250, 2, None, 1,
     "GB/T 28592-2012 24 h classes: 大雨 25, 暴雨 50 (yellow per GB 51108-2015 条文说明 8.3), 大暴雨 100, 特大暴雨 250 mm"),
    ("tank_level", 80, 85, 90, 95, 1, None, 2,
     "demo: usual high (85 %) / high-high (90 %) level alarms; set per tank"),
    ("gas_flammable", 10, 25, 40, 50, 2, None, 2,
     "GB/T 50493-2019: first alarm <= 25 %LEL (yellow), second alarm <= 50 %LEL (red); blue/orange: demo"),
]


def upgrade() -> None:
    for col in ("downstream_people", "downstream_receptors", "downstream_facilities"):
        op.add_column("tailings_ponds", sa.Column(col, sa.Integer()))

    op.create_table(
        "tailings_downstream",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("analysis_runs.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("computed_at", TZ, server_default=NOW, nullable=False),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("pond_id", sa.Integer(), sa.ForeignKey("tailings_ponds.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("name", sa.Text()),
        sa.Column("headtop", sa.Boolean(), nullable=False),
        sa.Column("grade", sa.Integer()),
        sa.Column("people", sa.Integer()),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in
          ("receptors", "receptor_people", "roads", "major_roads")),
        sa.Column("road_length_m", sa.Float(), nullable=False),
        sa.Column("installations", sa.Integer(), nullable=False),
        sa.Column("receptor_names", sa.Text()),
        sa.Column("road_names", sa.Text()),
        sa.Column("installation_names", sa.Text()),
        sa.Column("path_length_m", sa.Float(), nullable=False),
        sa.Column("corridor_m", sa.Float(), nullable=False),
        sa.Column("toe_source", sa.Text(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("contents", JSONB(), server_default="{}", nullable=False),
        geom_column("LINESTRING", "path"),
        geom_column("MULTIPOLYGON"),
    )
    gist_index("tailings_downstream")
    gist_index("tailings_downstream", "path")
    bump_trigger("tailings_downstream")

    op.create_table(
        "monitoring_sensors",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text()),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("updated_at", TZ, server_default=NOW, nullable=False),
        sa.Column("code", sa.Text(), nullable=False, unique=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("asset_layer", sa.Text(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("interval_s", sa.Integer(), server_default="600", nullable=False),
        sa.Column("alarm_level", sa.Text(), server_default="normal", nullable=False),
        geom_column("POINT"),
        sa.CheckConstraint("interval_s > 0", name="ck_monitoring_sensors_interval"),
    )
    gist_index("monitoring_sensors")
    op.create_index("ix_monitoring_sensors_asset", "monitoring_sensors", ["asset_layer", "asset_id"])
    bump_trigger("monitoring_sensors")

    # The time series: primary key (sensor, time) makes ingest idempotent and serves per-sensor ranges;
    # a BRIN index on time serves time-range scans (rows arrive roughly in time order).
    op.create_table(
        "monitoring_readings",
        sa.Column("sensor_id", sa.Integer(), sa.ForeignKey("monitoring_sensors.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("time", TZ, primary_key=True),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_monitoring_readings_time_brin", "monitoring_readings", ["time"], postgresql_using="brin")

    op.create_table(
        "monitoring_sensor_state",
        sa.Column("sensor_id", sa.Integer(), sa.ForeignKey("monitoring_sensors.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("last_time", TZ),
        sa.Column("last_value", sa.Float()),
        *(sa.Column(c, sa.SmallInteger(), server_default="0", nullable=False)
          for c in ("level", "raw_level", "up_n", "up_min", "down_n", "down_max")),
        sa.Column("anchors", JSONB(), server_default="[]", nullable=False),
        sa.Column("offline", sa.Boolean(), server_default="false", nullable=False),
    )

    op.create_table(
        "monitoring_thresholds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("asset_layer", sa.Text()),
        sa.Column("asset_id", sa.Integer()),
        *(sa.Column(c, sa.Float()) for c in ("blue", "yellow", "orange", "red")),
        sa.Column("hysteresis", sa.Float(), server_default="0", nullable=False),
        *(sa.Column(f"rate_{c}", sa.Float()) for c in ("blue", "yellow", "orange", "red")),
        sa.Column("rate_window_h", sa.Float(), server_default="24", nullable=False),
        sa.Column("debounce", sa.SmallInteger(), server_default="2", nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("updated_at", TZ, server_default=NOW),
        sa.CheckConstraint("hysteresis >= 0 AND rate_window_h > 0 AND debounce BETWEEN 1 AND 20",
                           name="ck_monitoring_thresholds_params"),
    )
    op.execute("CREATE UNIQUE INDEX ux_monitoring_thresholds_scope ON monitoring_thresholds "
               "(kind, coalesce(asset_layer, ''), coalesce(asset_id, -1))")
    bump_trigger("monitoring_thresholds")  # not a map layer: the version keys the ingest's rule cache
    table = sa.table("monitoring_thresholds", *(sa.column(c) for c in (
        "kind", "blue", "yellow", "orange", "red", "hysteresis", "rate_blue", "rate_yellow", "rate_orange",
        "rate_red", "debounce", "source")))
    op.bulk_insert(table, [
        dict(kind=k, blue=b, yellow=y, orange=o, red=r, hysteresis=h, debounce=d, source=s,
             **dict(zip(("rate_blue", "rate_yellow", "rate_orange", "rate_red"), rates or (None,) * 4)))
        for k, b, y, o, r, h, rates, d, s in DEFAULTS
    ])

    op.create_table(
        "monitoring_alarms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("asset_layer", sa.Text(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.Text(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("max_level", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("opened_at", TZ, nullable=False, index=True),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("closed_at", TZ),
        sa.Column("sensor_code", sa.Text()),
        sa.Column("value", sa.Float()),
        sa.Column("message", sa.Text()),
        sa.Column("acknowledged_by", sa.Text()),
        sa.Column("acknowledged_at", TZ),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        sa.CheckConstraint("status IN ('open', 'closed')", name="ck_monitoring_alarms_status"),
    )
    # At most one open alarm per asset and item: it escalates instead of multiplying.
    op.execute("CREATE UNIQUE INDEX ux_monitoring_alarms_open ON monitoring_alarms (asset_layer, asset_id, item) "
               "WHERE status = 'open'")
    op.create_table(
        "monitoring_alarm_events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("alarm_id", sa.Integer(), sa.ForeignKey("monitoring_alarms.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("time", TZ, nullable=False),
        sa.Column("recorded_at", TZ, server_default=NOW, nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("level", sa.SmallInteger(), nullable=False),
        sa.Column("sensor_code", sa.Text()),
        sa.Column("value", sa.Float()),
        sa.Column("user_name", sa.Text()),
        sa.Column("note", sa.Text()),
    )

    op.create_table(
        "monitored_assets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("asset_layer", sa.Text(), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text()),
        sa.Column("alarm_level", sa.Text(), server_default="normal", nullable=False),
        *(sa.Column(c, sa.Integer(), server_default="0", nullable=False)
          for c in ("open_alarms", "offline_sensors", "sensors")),
        sa.Column("level_since", TZ),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        geom_column("POINT"),
        sa.UniqueConstraint("asset_layer", "asset_id", name="uq_monitored_assets_asset"),
    )
    gist_index("monitored_assets")
    bump_trigger("monitored_assets")

    op.create_table(
        "monitoring_daily",
        sa.Column("asset_layer", sa.Text(), primary_key=True),
        sa.Column("asset_id", sa.Integer(), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        *(sa.Column(c, sa.Integer(), server_default="0", nullable=False)
          for c in ("readings", "crossings", "opened", "escalated", "red")),
    )


def downgrade() -> None:
    for table in ("monitoring_daily", "monitored_assets", "monitoring_alarm_events", "monitoring_alarms",
                  "monitoring_thresholds", "monitoring_sensor_state", "monitoring_readings", "monitoring_sensors",
                  "tailings_downstream"):
        op.drop_table(table)
    op.execute("DELETE FROM layer_versions WHERE layer IN ('tailings_downstream', 'monitoring_sensors', "
               "'monitored_assets', 'monitoring_thresholds')")
    for col in ("downstream_people", "downstream_receptors", "downstream_facilities"):
        op.drop_column("tailings_ponds", col)
