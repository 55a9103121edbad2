"""Helpers shared by migrations."""

import geoalchemy2
import sqlalchemy as sa
from alembic import op


def bump_trigger(table: str, layer: str | None = None) -> None:
    """Every write to ``table`` bumps the version of ``layer`` (default: the table's own name)."""
    layer = layer or table
    op.execute(
        f"CREATE TRIGGER {table}_bump_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION riskmap_bump_layer_version('{layer}')"
    )
    op.execute(f"INSERT INTO layer_versions (layer, version) VALUES ('{layer}', 0) ON CONFLICT DO NOTHING")


def geom_column(kind: str, name: str = "geom") -> sa.Column:
    """A required EPSG:4326 geometry column; its GiST index is made explicitly by gist_index()."""
    return sa.Column(name, geoalchemy2.types.Geometry(geometry_type=kind, srid=4326, spatial_index=False),
                     nullable=False)


def gist_index(table: str, column: str = "geom") -> None:
    op.create_index(f"idx_{table}_{column}", table, [column], postgresql_using="gist")


def derived_columns() -> list[sa.Column]:
    """The columns of models.DerivedMixin (every analysis-result table)."""
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("analysis_runs.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
    ]
