"""Results that sum the people of receptors hold them as bigint: a receptor may hold up to 10 million
(``layers.registry.MAX_PEOPLE``), so a few hundred in one ring or downstream zone pass 2^31.

Revision ID: 0013
Revises: 0008_hazchem, 0008_monitoring
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = ("0008_hazchem", "0008_monitoring")
branch_labels = None
depends_on = None

COLUMNS = (("installation_gradings", "exposed_people"), ("exposure_rings", "receptor_people"),
           ("tailings_downstream", "people"), ("tailings_downstream", "receptor_people"))


def upgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.BigInteger())


def downgrade() -> None:
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=sa.Integer())
