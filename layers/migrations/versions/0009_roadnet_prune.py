"""Road network: drop what the pgRouting search pruning used (landmarks, cells, the speed index).

Searches run on the graph held in memory since then (gis/roadgraph.py, docs/road-safety.md). The
edges keep x1/y1/x2/y2: they make the table ready for pgRouting's A* functions in hand-written queries.

Revision ID: 0009
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0009"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("road_cells")
    op.drop_index("ix_road_edges_speed_kmh", table_name="road_edges")
    op.drop_index("ix_road_edges_cell", table_name="road_edges")
    op.drop_column("road_edges", "cell")
    for column in ("cell", "lm_from", "lm_to"):
        op.drop_column("road_nodes", column)


def downgrade() -> None:
    op.add_column("road_nodes", sa.Column("cell", sa.Integer()))
    op.add_column("road_nodes", sa.Column("lm_from", ARRAY(sa.Float())))
    op.add_column("road_nodes", sa.Column("lm_to", ARRAY(sa.Float())))
    op.add_column("road_edges", sa.Column("cell", sa.Integer()))
    op.create_index("ix_road_edges_cell", "road_edges", ["cell"])
    op.create_index("ix_road_edges_speed_kmh", "road_edges", ["speed_kmh"])
    op.create_table(
        "road_cells",
        sa.Column("cell", sa.Integer(), primary_key=True),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("lf_min", ARRAY(sa.Float())), sa.Column("lf_max", ARRAY(sa.Float())),
        sa.Column("lt_min", ARRAY(sa.Float())), sa.Column("lt_max", ARRAY(sa.Float())),
    )
