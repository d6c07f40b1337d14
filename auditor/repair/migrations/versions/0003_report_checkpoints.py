"""Report checkpoints: the scan's state after each report run, so `auditor report --incremental` reads only what
ended since (auditor/audit/checkpoint.py says what the state holds and when it may be reused).

One row per report run that stored one, keyed by the run; only the newest of each audited database is kept (the
run that stores a checkpoint deletes the older ones of its database in the same transaction).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _names() -> tuple[str | None, str]:
    """(schema, table prefix): schema `auditor` on PostgreSQL, prefix `auditor_` on SQLite."""
    return ("auditor", "") if op.get_bind().dialect.name == "postgresql" else (None, "auditor_")


def upgrade() -> None:
    schema, prefix = _names()
    op.create_table(
        f"{prefix}report_checkpoints",
        sa.Column("run_id", sa.String(36), sa.ForeignKey(f"{schema + '.' if schema else ''}{prefix}runs.id"), primary_key=True),
        sa.Column("source", sa.Text(), nullable=False),  # the audited database as the run history names it (masked URL)
        sa.Column("created_at", sa.DateTime(), nullable=False),  # naive UTC
        sa.Column("watermark", sa.DateTime(), nullable=True),  # newest "startTime" in scope when cut
        sa.Column("cut", sa.DateTime(), nullable=False),  # the state holds what ended before this
        sa.Column("fingerprint", JSON, nullable=False),  # what the state depends on besides the rows
        sa.Column("format", sa.Integer(), nullable=False),  # auditor.audit.checkpoint.FORMAT
        sa.Column("state", sa.LargeBinary(), nullable=False),  # zlib-compressed JSON
        schema=schema,
    )
    op.create_index(f"{prefix}report_checkpoints_source_idx", f"{prefix}report_checkpoints", ["source"], schema=schema)


def downgrade() -> None:
    schema, prefix = _names()
    op.drop_table(f"{prefix}report_checkpoints", schema=schema)
