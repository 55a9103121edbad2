"""Hazchem: installations and receptors keep their geometry in the metric CRS too.

``geom_m`` = ``ST_Transform(geom, METRIC_EPSG)``, a stored generated column: PostgreSQL keeps it
current on every insert and update, whoever writes. The violation search then measures distances
without re-projecting both geometries of every candidate pair, and probes an SP-GiST index on the
receptors' metric points (a k-d tree; fewer page visits than the R-tree of GiST for points). The
expression GiST indexes of migration 0003 stay: other analyses query ``ST_Transform(geom, ...)``.

Revision ID: 0008_hazchem
Revises: 0003
"""
from alembic import op

from layers.crs import METRIC_EPSG

revision = "0008_hazchem"
down_revision = "0003"
branch_labels = None
depends_on = None

METRIC = {"hazard_installations": "MultiPolygon", "receptors": "Point"}


def upgrade() -> None:
    for table, kind in METRIC.items():
        op.execute(f"ALTER TABLE {table} ADD COLUMN geom_m geometry({kind}, {METRIC_EPSG}) "
                   f"GENERATED ALWAYS AS (ST_Transform(geom, {METRIC_EPSG})) STORED")
    op.execute("CREATE INDEX idx_receptors_geom_m ON receptors USING spgist (geom_m)")


def downgrade() -> None:
    op.execute("DROP INDEX idx_receptors_geom_m")
    for table in METRIC:
        op.execute(f"ALTER TABLE {table} DROP COLUMN geom_m")
