"""Change notifications come from ``layer_versions`` itself and name the writing transaction.

0007 announced bumps from the layer triggers only, so bumps written directly (the road graph's
``road_graph`` row, gis/roadgraph.py) went unannounced. Now a row trigger on ``layer_versions``
announces every insert or update as ``layer version xid``: the xid is the writing transaction, as
``xmin`` reads it, which lets the API tell a committed version from one a rolled-back transaction
held under the same number (api/changes.py, gis/routing.py).

Revision ID: 0010
Revises: 0007
"""
import importlib

from alembic import op

revision = "0010"
down_revision = "0007"
branch_labels = None
depends_on = None

ANNOUNCE = """
CREATE FUNCTION riskmap_announce_layer_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('riskmap_layers', NEW.layer || ' ' || NEW.version || ' ' || pg_current_xact_id()::xid);
  RETURN NULL;
END $$;
"""


def upgrade() -> None:
    # the bump itself no longer notifies (the row trigger does, once per row written)
    op.execute(importlib.import_module("layers.migrations.versions.0001_initial").BUMP_FUNCTION)
    op.execute(ANNOUNCE)
    op.execute("CREATE TRIGGER layer_versions_notify AFTER INSERT OR UPDATE ON layer_versions "
               "FOR EACH ROW EXECUTE FUNCTION riskmap_announce_layer_version()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS layer_versions_notify ON layer_versions")
    op.execute("DROP FUNCTION IF EXISTS riskmap_announce_layer_version()")
    op.execute(importlib.import_module("layers.migrations.versions.0007_change_notify").BUMP_NOTIFY)
