"""Helpers shared by migrations."""

from alembic import op


def bump_trigger(table: str, layer: str | None = None) -> None:
    """Every write to ``table`` bumps the version of ``layer`` (default: the table's own name)."""
    layer = layer or table
    op.execute(
        f"CREATE TRIGGER {table}_bump_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION riskmap_bump_layer_version('{layer}')"
    )
    op.execute(f"INSERT INTO layer_versions (layer, version) VALUES ('{layer}', 0) ON CONFLICT DO NOTHING")
