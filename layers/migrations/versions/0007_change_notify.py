"""Change notifications: layer-version bumps and user changes are announced with NOTIFY.

The API keeps layer versions and token lookups in memory and follows these channels (api/changes.py)
instead of asking the database on every tile request.

Revision ID: 0007
Revises: 0002
"""
import importlib

from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None

BUMP_NOTIFY = """
CREATE OR REPLACE FUNCTION riskmap_bump_layer_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
  INSERT INTO layer_versions (layer, version, updated_at) VALUES (TG_ARGV[0], 1, now())
  ON CONFLICT (layer) DO UPDATE SET version = layer_versions.version + 1, updated_at = now()
  RETURNING version INTO v;
  PERFORM pg_notify('riskmap_layers', TG_ARGV[0] || ' ' || v);  -- delivered at commit
  RETURN NULL;
END $$;
"""

def upgrade() -> None:
    op.execute(BUMP_NOTIFY)
    op.execute("""
        CREATE FUNCTION riskmap_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM pg_notify('riskmap_users', ''); RETURN NULL; END $$""")
    op.execute("CREATE TRIGGER users_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users "
               "FOR EACH STATEMENT EXECUTE FUNCTION riskmap_users_changed()")


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS users_notify ON users")
    op.execute("DROP FUNCTION IF EXISTS riskmap_users_changed()")
    # the function as 0001 made it
    op.execute(importlib.import_module("layers.migrations.versions.0001_initial").BUMP_FUNCTION)
