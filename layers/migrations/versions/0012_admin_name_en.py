"""Districts get an English name (``admin_areas.name_en``) for the map's English mode.

Revision ID: 0012
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("admin_areas", sa.Column("name_en", sa.Text()))


def downgrade() -> None:
    op.drop_column("admin_areas", "name_en")
