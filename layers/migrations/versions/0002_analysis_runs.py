"""Analysis runs: every derived layer row carries the id of the run that computed it.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("analysis", sa.Text(), nullable=False, index=True),
        sa.Column("started_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.Text(), nullable=False, server_default="running"),
        # versions of the input layers when the run read them: later writes make the run stale
        sa.Column("input_versions", JSONB(), nullable=False, server_default="{}"),
        sa.Column("stats", JSONB(), nullable=False, server_default="{}"),
    )


def downgrade() -> None:
    op.drop_table("analysis_runs")
