"""Monitoring: a version of the sensor catalogue that the sensors' alarm levels do not bump.

The ingest caches the sensors (code, kind, asset, interval) per database and reloaded them whenever
the ``monitoring_sensors`` layer version moved; but the ingest itself writes each point's
``alarm_level`` into that table (the map colours it), so an alarm-dense feed reloaded the catalogue
and re-synchronised ``monitored_assets`` on nearly every batch. This version moves only with the
columns the catalogue holds.

Revision ID: 0008_monitoring
Revises: 0006
"""
from alembic import op

revision = "0008_monitoring"
down_revision = "0006"
branch_labels = None
depends_on = None

CATALOGUE = "monitoring_sensor_catalogue"  # also in gis/monitoring.py (VERSIONS_SQL)


def upgrade() -> None:
    op.execute(
        "CREATE TRIGGER monitoring_sensors_bump_catalogue AFTER INSERT OR DELETE OR TRUNCATE OR "
        "UPDATE OF code, kind, asset_layer, asset_id, interval_s, synthetic ON monitoring_sensors "
        f"FOR EACH STATEMENT EXECUTE FUNCTION riskmap_bump_layer_version('{CATALOGUE}')")
    op.execute(f"INSERT INTO layer_versions (layer, version) VALUES ('{CATALOGUE}', 0) ON CONFLICT DO NOTHING")


def downgrade() -> None:
    op.execute("DROP TRIGGER monitoring_sensors_bump_catalogue ON monitoring_sensors")
    op.execute(f"DELETE FROM layer_versions WHERE layer = '{CATALOGUE}'")
