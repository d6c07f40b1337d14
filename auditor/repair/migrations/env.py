"""Alembic environment for auditor's own tables. Run through `auditor db upgrade` (auditor.repair.journal.upgrade),
which hands over an open connection; there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from auditor.repair.journal import SCHEMA, version_table

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running the alembic CLI by hand
    raise RuntimeError("run auditor's migrations with `auditor db upgrade --db URL`")

dialect = connection.dialect.name
context.configure(
    connection=connection,
    target_metadata=None,
    version_table=version_table(dialect),
    version_table_schema=SCHEMA if dialect == "postgresql" else None,
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
