"""Road network: routable graph (edges, nodes, links to structures/zones), route rules, black spots,
route conflicts.

Revision ID: 0004
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

from layers.migrations.util import bump_trigger, derived_columns, geom_column, gist_index

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The routable graph, rebuilt from `roads` by gis.roadnet.build_graph (not a map layer).
    op.create_table(
        "road_nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("component", sa.Integer()),
        sa.Column("cell", sa.Integer()),
        # travel times (s) from / to each landmark (ALT lower bounds, gis.roadnet.prepare_landmarks)
        sa.Column("lm_from", ARRAY(sa.Float())),
        sa.Column("lm_to", ARRAY(sa.Float())),
        geom_column("POINT"),
    )
    gist_index("road_nodes")
    op.create_table(
        "road_edges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("road_id", sa.Integer(), nullable=False, index=True),  # roads.id (no FK: rebuilt, never blocks road edits)
        sa.Column("source", sa.Integer(), nullable=False, index=True),
        sa.Column("target", sa.Integer(), nullable=False, index=True),
        sa.Column("length_m", sa.Float(), nullable=False),
        sa.Column("speed_kmh", sa.Float(), nullable=False),
        sa.Column("cost_s", sa.Float(), nullable=False),
        sa.Column("reverse_cost_s", sa.Float(), nullable=False),  # -1: one-way (travel only source -> target)
        sa.Column("road_class", sa.Text()),
        sa.Column("bridge", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("tunnel", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("component", sa.Integer()),
        sa.Column("cell", sa.Integer(), index=True),  # cell of the source node (pruned edge queries)
        # lon/lat of source and target, for pgRouting's A* heuristics
        sa.Column("x1", sa.Float(), nullable=False), sa.Column("y1", sa.Float(), nullable=False),
        sa.Column("x2", sa.Float(), nullable=False), sa.Column("y2", sa.Float(), nullable=False),
        geom_column("LINESTRING"),
    )
    gist_index("road_edges")
    op.create_index("ix_road_edges_speed_kmh", "road_edges", ["speed_kmh"])  # max speed: A*/corridor bounds
    # Per grid cell: the range of the landmark times of its nodes (lower bounds for a whole cell).
    op.create_table(
        "road_cells",
        sa.Column("cell", sa.Integer(), primary_key=True),
        sa.Column("nodes", sa.Integer(), nullable=False),
        sa.Column("lf_min", ARRAY(sa.Float())), sa.Column("lf_max", ARRAY(sa.Float())),
        sa.Column("lt_min", ARRAY(sa.Float())), sa.Column("lt_max", ARRAY(sa.Float())),
    )
    # Which edges a restricted structure or a water-source zone covers (and over how many metres).
    op.create_table(
        "road_edge_links",
        sa.Column("edge_id", sa.Integer(), sa.ForeignKey("road_edges.id", ondelete="CASCADE"), nullable=False),
        sa.Column("layer", sa.Text(), nullable=False),
        sa.Column("feature_id", sa.Integer(), nullable=False),
        sa.Column("covered_m", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("edge_id", "layer", "feature_id"),
    )
    op.create_index("ix_road_edge_links_feature", "road_edge_links", ["layer", "feature_id"])

    # Hazmat routing rules (data, edited by editors through /routes/rules).
    op.create_table(
        "route_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name_zh", sa.Text(), nullable=False),
        sa.Column("name_en", sa.Text(), nullable=False),
        sa.Column("cargo_classes", ARRAY(sa.Text()), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("structure_classes", ARRAY(sa.Text())),
        sa.Column("adr_categories", ARRAY(sa.Text())),
        sa.Column("zone_levels", ARRAY(sa.Text())),
        sa.Column("road_classes", ARRAY(sa.Text())),
        sa.Column("min_quantity_t", sa.Float()),
        sa.Column("ban_start", sa.Time()),
        sa.Column("ban_end", sa.Time()),
        sa.Column("weekdays", ARRAY(sa.Integer())),
        sa.Column("verdict", sa.Text(), nullable=False, server_default="forbidden"),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="true"),
        sa.Column("source", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("target IN ('structure', 'water_zone', 'road')", name="route_rules_target"),
        sa.CheckConstraint("verdict IN ('forbidden', 'warning')", name="route_rules_verdict"),
    )
    bump_trigger("route_rules")

    op.create_table(
        "blackspots",
        *derived_columns(),
        sa.Column("name", sa.Text()),
        sa.Column("road_id", sa.Integer()),
        sa.Column("road_ref", sa.Text()),
        sa.Column("from_m", sa.Float(), nullable=False),
        sa.Column("to_m", sa.Float(), nullable=False),
        sa.Column("length_m", sa.Float(), nullable=False),
        sa.Column("accidents", sa.Integer(), nullable=False),
        sa.Column("deaths", sa.Integer(), nullable=False),
        sa.Column("injuries", sa.Integer(), nullable=False),
        sa.Column("hazmat_accidents", sa.Integer(), nullable=False),
        sa.Column("prev_accidents", sa.Integer(), nullable=False),
        sa.Column("prev_deaths", sa.Integer(), nullable=False),
        sa.Column("trend", sa.Text(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("criterion", sa.Text(), nullable=False),
        sa.Column("risk_grade", sa.Text()),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        geom_column("LINESTRING"),
    )
    gist_index("blackspots")
    bump_trigger("blackspots")

    op.create_table(
        "route_conflicts",
        *derived_columns(),
        sa.Column("route_id", sa.Integer()),
        sa.Column("name", sa.Text()),
        sa.Column("cargo", sa.Text()),
        sa.Column("rule_id", sa.Integer()),
        sa.Column("rule", sa.Text()),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("target_id", sa.Integer()),
        sa.Column("target_name", sa.Text()),
        sa.Column("target_class", sa.Text()),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("eta", sa.DateTime(timezone=True)),
        sa.Column("verdict", sa.Text(), nullable=False),
        geom_column("LINESTRING"),
    )
    gist_index("route_conflicts")
    bump_trigger("route_conflicts")


def downgrade() -> None:
    for table in ("route_conflicts", "blackspots", "route_rules", "road_edge_links", "road_cells", "road_edges",
                  "road_nodes"):
        op.drop_table(table)
    op.execute("DELETE FROM layer_versions WHERE layer IN ('route_conflicts', 'blackspots', 'route_rules')")
