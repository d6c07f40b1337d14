"""The backfill journal: one row per run (generic: backfill, undo, and later kinds), one per change.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _names() -> tuple[str | None, str]:
    """(schema, table prefix): schema `auditor` on PostgreSQL, prefix `auditor_` on SQLite."""
    return ("auditor", "") if op.get_bind().dialect.name == "postgresql" else (None, "auditor_")


def upgrade() -> None:
    schema, prefix = _names()
    op.create_table(
        f"{prefix}runs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),  # backfill, undo; later features add their own kinds
        sa.Column("status", sa.String(16), nullable=False),  # running, completed, failed
        sa.Column("started_at", sa.DateTime(), nullable=False),  # naive UTC, like LiteLLM's columns
        sa.Column("finished_at", sa.DateTime(), nullable=True),  # NULL while running, or forever if it crashed
        sa.Column("options", JSON, nullable=False),
        sa.Column("summary", JSON, nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("parent_run_id", sa.String(36), nullable=True),  # the run an undo reverts
        sa.Column("auditor_version", sa.String(32), nullable=False),
        sa.Column("database_user", sa.Text(), nullable=True),
        schema=schema,
    )
    op.create_index(f"{prefix}runs_started_at_idx", f"{prefix}runs", ["started_at"], schema=schema)
    op.create_table(
        f"{prefix}backfill_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(36), sa.ForeignKey(f"{schema + '.' if schema else ''}{prefix}runs.id"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),  # redis, budget_window_spend, model_spend
        sa.Column("action", sa.String(16), nullable=False),  # set, remove, restore
        sa.Column("scope", sa.String(32), nullable=True),
        sa.Column("entity_id", sa.Text(), nullable=True),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("old", JSON, nullable=False),  # the cells as read when the plan was made
        sa.Column("new", JSON, nullable=False),  # the cells the plan meant to write
        sa.Column("written", JSON, nullable=True),  # the cells actually written (differs when recomputed)
        sa.Column("state", sa.String(16), nullable=False),  # intent, applied, recomputed, conflict, failed
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        schema=schema,
    )
    op.create_index(f"{prefix}backfill_changes_run_idx", f"{prefix}backfill_changes", ["run_id", "seq"], schema=schema)


def downgrade() -> None:
    schema, prefix = _names()
    op.drop_table(f"{prefix}backfill_changes", schema=schema)
    op.drop_table(f"{prefix}runs", schema=schema)
