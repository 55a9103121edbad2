"""Emergency: incidents kept for shift hand-over, and their ERG zones.

Revision ID: 0005
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from layers.migrations.util import bump_trigger, geom_column

revision = "0005"
down_revision = "0002"
branch_labels = None
depends_on = None


def _common() -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text()),
        sa.Column("synthetic", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "incidents",
        *_common(),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("created_by", sa.Text(), nullable=False),
        sa.Column("un_number", sa.Text()),
        sa.Column("chemical", sa.Text(), nullable=False),
        sa.Column("spill", sa.Text(), nullable=False),
        sa.Column("time_of_day", sa.Text(), nullable=False),
        sa.Column("wind_from_deg", sa.Float()),
        sa.Column("isolation_m", sa.Float(), nullable=False),
        sa.Column("protective_m", sa.Float()),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("inputs", JSONB(), nullable=False),
        sa.Column("result", JSONB(), nullable=False),
        sa.Column("notes", JSONB(), server_default="[]", nullable=False),
        geom_column("POINT"),
        sa.CheckConstraint("spill IN ('small', 'large')", name="incidents_spill"),
        sa.CheckConstraint("time_of_day IN ('day', 'night')", name="incidents_time"),
        sa.CheckConstraint("status IN ('open', 'closed')", name="incidents_status"),
    )
    op.create_index("idx_incidents_geom", "incidents", ["geom"], postgresql_using="gist")
    op.create_index("ix_incidents_created_at", "incidents", ["created_at"])
    bump_trigger("incidents")
    op.create_table(
        "incident_zones",
        *_common(),
        sa.Column("incident_id", sa.Integer(), sa.ForeignKey("incidents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("zone", sa.Text(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("shape", sa.Text(), nullable=False),
        sa.Column("people", sa.Float()),
        geom_column("MULTIPOLYGON"),
        sa.CheckConstraint("zone IN ('isolation', 'protective')", name="incident_zones_zone"),
    )
    op.create_index("idx_incident_zones_geom", "incident_zones", ["geom"], postgresql_using="gist")
    op.create_index("ix_incident_zones_incident_id", "incident_zones", ["incident_id"])
    bump_trigger("incident_zones")


def downgrade() -> None:
    op.drop_table("incident_zones")
    op.drop_table("incidents")
    op.execute("DELETE FROM layer_versions WHERE layer IN ('incidents', 'incident_zones')")
