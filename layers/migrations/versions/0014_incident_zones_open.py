"""Incident zones carry whether their incident is open: the one-map shows the zones of open incidents
only (a closed incident's zones stay for the record and the features API).

Revision ID: 0014
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incident_zones", sa.Column("open", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute("UPDATE incident_zones z SET open = false FROM incidents i WHERE i.id = z.incident_id "
               "AND i.status <> 'open'")


def downgrade() -> None:
    op.drop_column("incident_zones", "open")
