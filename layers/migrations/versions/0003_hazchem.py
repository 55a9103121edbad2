"""Hazchem analyses: safety rules (seeded with the defaults), installation gradings, risk scores,
safety-violation and exposure-ring layers, metric GiST indexes on installations and receptors.

Revision ID: 0003
Revises: 0002
"""
import csv
from pathlib import Path

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from layers.crs import METRIC_EPSG  # queries spell ST_Transform(geom, METRIC_EPSG) to use the indexes
from layers.migrations.util import bump_trigger, derived_columns, geom_column

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The default rules are data shipped beside the analysis (read here as a file, not imported).
DEFAULT_RULES = Path(__file__).resolve().parents[3] / "gis" / "data" / "safety_distance_rules.csv"


def upgrade() -> None:
    rules = op.create_table(
        "safety_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("installation_kind", sa.Text(), nullable=False),
        sa.Column("level", sa.Integer(), sa.CheckConstraint("level BETWEEN 1 AND 4")),
        sa.Column("receptor_class", sa.Text(), nullable=False),
        sa.Column("distance_m", sa.Float(), sa.CheckConstraint("distance_m > 0 AND distance_m <= 20000"),
                  nullable=False),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("assumption", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
    )
    with open(DEFAULT_RULES, encoding="utf-8", newline="") as f:
        op.bulk_insert(rules, [
            {"installation_kind": r["installation_kind"], "level": int(r["level"]) if r["level"] else None,
             "receptor_class": r["receptor_class"], "distance_m": float(r["distance_m"]), "basis": r["basis"],
             "assumption": r["assumption"] == "yes", "note": r["note"] or None}
            for r in csv.DictReader(f)
        ])
    op.create_table(
        "installation_gradings", *derived_columns(),
        sa.Column("installation_id", sa.Integer(), sa.ForeignKey("hazard_installations.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("enterprise_id", sa.Integer()),
        sa.Column("s", sa.Float()), sa.Column("r", sa.Float()), sa.Column("alpha", sa.Float()),
        sa.Column("level", sa.Integer()), sa.Column("is_major", sa.Boolean()),
        sa.Column("kinds", ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("exposed_people", sa.Integer()),
        sa.Column("population", JSONB(), server_default="{}", nullable=False),
        sa.Column("substances", JSONB(), server_default="[]", nullable=False),
        sa.Column("error", sa.Text()),
    )
    op.create_table(
        "risk_scores", *derived_columns(),
        sa.Column("subject_layer", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("risk_grade", sa.Text(), nullable=False),
        sa.Column("indicators", JSONB(), server_default="{}", nullable=False),
    )
    op.create_table(
        "safety_violations", *derived_columns(),
        sa.Column("name", sa.Text()),
        sa.Column("installation_id", sa.Integer(), nullable=False, index=True),
        sa.Column("installation_name", sa.Text()),
        sa.Column("enterprise_id", sa.Integer()),
        sa.Column("level", sa.Integer()),
        sa.Column("kinds", sa.Text()),
        sa.Column("receptor_id", sa.Integer(), nullable=False),
        sa.Column("receptor_name", sa.Text()),
        sa.Column("receptor_kind", sa.Text()),
        sa.Column("protection_class", sa.Text(), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("required_m", sa.Float(), nullable=False),
        sa.Column("shortfall_m", sa.Float(), nullable=False),
        sa.Column("rule_id", sa.Integer()),
        sa.Column("basis", sa.Text()),
        geom_column("LINESTRING"),
    )
    op.create_table(
        "exposure_rings", *derived_columns(),
        sa.Column("name", sa.Text()),
        sa.Column("subject_layer", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("inner_m", sa.Float(), nullable=False),
        sa.Column("outer_m", sa.Float(), nullable=False),
        sa.Column("people", sa.Float()),
        sa.Column("people_within", sa.Float()),
        *[sa.Column(f"receptors_{c}", sa.Integer(), server_default="0", nullable=False)
          for c in ("high_sensitive", "important", "general_1", "general_2", "general_3")],
        sa.Column("receptor_people", sa.Integer(), server_default="0", nullable=False),
        geom_column("MULTIPOLYGON"),
    )
    for table in ("safety_violations", "exposure_rings"):
        op.create_index(f"idx_{table}_geom", table, ["geom"], postgresql_using="gist")
        bump_trigger(table)
    bump_trigger("safety_rules")  # rule edits make the last run stale
    # Distance queries run in the metric CRS; these indexes let them use GiST without a copy.
    for table in ("hazard_installations", "receptors", "enterprises", "chemical_parks", "accidents"):
        op.execute(f"CREATE INDEX idx_{table}_geom_{METRIC_EPSG} ON {table} "
                   f"USING gist (ST_Transform(geom, {METRIC_EPSG}))")


def downgrade() -> None:
    for table in ("hazard_installations", "receptors", "enterprises", "chemical_parks", "accidents"):
        op.execute(f"DROP INDEX IF EXISTS idx_{table}_geom_{METRIC_EPSG}")
    for table in ("exposure_rings", "safety_violations", "risk_scores", "installation_gradings", "safety_rules"):
        op.drop_table(table)
        op.execute(f"DELETE FROM layer_versions WHERE layer = '{table}'")
