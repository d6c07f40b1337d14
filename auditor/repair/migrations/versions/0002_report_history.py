"""Report run history: every finding of every `auditor report` run, under a stable id.

The run itself is a row of `runs` (kind `report`): its options, and in `summary` the instant judged at
(as_of), the row counts, the totals and the changes since the previous run. This table holds the findings,
one row per (run, finding id); see auditor/reports/history.py for how the id is made.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _names() -> tuple[str | None, str]:
    """(schema, table prefix): schema `auditor` on PostgreSQL, prefix `auditor_` on SQLite."""
    return ("auditor", "") if op.get_bind().dialect.name == "postgresql" else (None, "auditor_")


def upgrade() -> None:
    schema, prefix = _names()
    op.create_table(
        f"{prefix}report_findings",
        sa.Column("run_id", sa.String(36), sa.ForeignKey(f"{schema + '.' if schema else ''}{prefix}runs.id"), primary_key=True),
        sa.Column("finding_id", sa.String(32), primary_key=True),  # stable across runs: auditor.reports.history.finding_id
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(32), nullable=True),
        sa.Column("entity_id", sa.Text(), nullable=True),
        sa.Column("budget_model", sa.Text(), nullable=True),
        sa.Column("window_start", sa.DateTime(), nullable=True),
        sa.Column("finding", JSON, nullable=False),  # the finding as the report's JSON has it
        schema=schema,
    )
    op.create_index(f"{prefix}report_findings_finding_idx", f"{prefix}report_findings", ["finding_id"], schema=schema)


def downgrade() -> None:
    schema, prefix = _names()
    op.drop_table(f"{prefix}report_findings", schema=schema)
