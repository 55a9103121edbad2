"""Road network links say where on the edge they are, and which structure/zone versions they saw.

``road_edge_links.lo``/``hi``: the stretch of the edge (fractions along its metric line, in digitised
direction) that the structure or zone covers, so a route found on the graph is checked from its edges'
links instead of its geometry (gis/routing.py). ``road_graph_inputs``: the ``layer_versions`` rows of
``restricted_structures`` and ``water_source_zones`` the links were computed from; when they differ
from the current ones the links are stale and routes are checked by geometry. Links made before this
revision have no stretch (read as the whole edge) and no inputs (stale until ``riskmap analyze roads``).

Revision ID: 0011
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("road_edge_links", sa.Column("lo", sa.Float()))
    op.add_column("road_edge_links", sa.Column("hi", sa.Float()))
    op.create_table(
        "road_graph_inputs",
        sa.Column("layer", sa.Text(), primary_key=True),
        sa.Column("version", sa.BigInteger()),
        sa.Column("x", sa.Text()),
    )


def downgrade() -> None:
    op.drop_table("road_graph_inputs")
    op.drop_column("road_edge_links", "hi")
    op.drop_column("road_edge_links", "lo")
