"""auditor's own tables: the journal of every run that writes, and of every value it changed.

PostgreSQL keeps them in the schema `auditor` (never among LiteLLM's tables); SQLite in tables
prefixed `auditor_`. Alembic creates and upgrades them (`auditor/repair/migrations`, `auditor db upgrade`);
this module only reads and writes rows. Each function takes the connection whose transaction the
row belongs to, so a change's journal row commits with the change itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql

from auditor import __version__
from auditor.errors import InputError, UnavailableError

SCHEMA = "auditor"  # PostgreSQL schema of auditor's own tables
SQLITE_PREFIX = "auditor_"
HEAD = "0003"  # newest migration in auditor/repair/migrations/versions

RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"
# Change states. intent: about to write Redis (its outcome row follows); applied: written as planned;
# recomputed: the value moved since the plan, written from the ledger re-summed under the lock / CAS;
# conflict: changed since the plan and left alone; restored: an undo put the old value back.
INTENT, APPLIED, RECOMPUTED, CONFLICT, RESTORED, UNCHANGED = (
    "intent",
    "applied",
    "recomputed",
    "conflict",
    "restored",
    "unchanged",
)
WRITTEN_STATES = (APPLIED, RECOMPUTED, RESTORED)

_JSON = JSON().with_variant(postgresql.JSONB(), "postgresql")


def version_table(dialect: str) -> str:
    return "alembic_version" if dialect == "postgresql" else f"{SQLITE_PREFIX}alembic_version"


@dataclass(frozen=True)
class JournalTables:
    runs: Table
    changes: Table
    version: Table
    report_findings: Table
    report_checkpoints: Table


@cache
def tables(dialect: str) -> JournalTables:
    """The journal tables as this dialect names them (mirrors migration 0001). Built once per dialect: a run
    journals thousands of rows, and rebuilding the metadata for each cost more than the write itself."""
    schema, prefix = (SCHEMA, "") if dialect == "postgresql" else (None, SQLITE_PREFIX)
    md = MetaData(schema=schema)
    runs = Table(
        f"{prefix}runs",
        md,
        Column("id", String(36), primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("status", String(16), nullable=False),
        Column("started_at", DateTime(), nullable=False),
        Column("finished_at", DateTime()),
        Column("options", _JSON, nullable=False),
        Column("summary", _JSON),
        Column("message", Text()),
        Column("parent_run_id", String(36)),
        Column("auditor_version", String(32), nullable=False),
        Column("database_user", Text()),
    )
    changes = Table(
        f"{prefix}backfill_changes",
        md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(36), ForeignKey(runs.c.id), nullable=False),
        Column("seq", Integer, nullable=False),
        Column("target", String(32), nullable=False),
        Column("action", String(16), nullable=False),
        Column("scope", String(32)),
        Column("entity_id", Text()),
        Column("key", Text(), nullable=False),
        Column("old", _JSON, nullable=False),
        Column("new", _JSON, nullable=False),
        Column("written", _JSON),
        Column("state", String(16), nullable=False),
        Column("reason", Text()),
        Column("recorded_at", DateTime(), nullable=False),
    )
    version = Table(version_table(dialect), md, Column("version_num", String(32), primary_key=True))
    report_findings = Table(  # migration 0002: every finding of every report run (auditor/reports/history.py)
        f"{prefix}report_findings",
        md,
        Column("run_id", String(36), ForeignKey(runs.c.id), primary_key=True),
        Column("finding_id", String(32), primary_key=True),
        Column("kind", String(32), nullable=False),
        Column("severity", String(16), nullable=False),
        Column("scope", String(32)),
        Column("entity_id", Text()),
        Column("budget_model", Text()),
        Column("window_start", DateTime()),
        Column("finding", _JSON, nullable=False),
    )
    report_checkpoints = Table(  # migration 0003: the newest report checkpoint of each database (auditor/audit/checkpoint.py)
        f"{prefix}report_checkpoints",
        md,
        Column("run_id", String(36), ForeignKey(runs.c.id), primary_key=True),
        Column("source", Text(), nullable=False),
        Column("created_at", DateTime(), nullable=False),
        Column("watermark", DateTime()),
        Column("cut", DateTime(), nullable=False),
        Column("fingerprint", _JSON, nullable=False),
        Column("format", Integer, nullable=False),
        Column("state", LargeBinary(), nullable=False),
    )
    return JournalTables(runs, changes, version, report_findings, report_checkpoints)


# ---------------------------------------------------------------------------------------------
# Migrations


def alembic_config(conn: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("auditor.repair") / "migrations"))
    config.attributes["connection"] = conn
    return config


def upgrade(conn: Connection, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply auditor's migrations on `conn` (committed by the caller's transaction); (before, after)."""
    from alembic import command

    before = current_revision(conn)
    if conn.dialect.name == "postgresql":
        exists = conn.execute(text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": SCHEMA}).scalar()
        if not exists:
            conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    command.upgrade(alembic_config(conn), revision)
    return before, current_revision(conn)


def current_revision(conn: Connection) -> str | None:
    table = tables(conn.dialect.name).version
    if not inspect(conn).has_table(table.name, schema=table.schema):
        return None
    return conn.execute(select(table.c.version_num)).scalar()


def require_current(conn: Connection, masked_db: str) -> None:
    """Writing commands need the journal: say exactly how to create it when it is missing or old."""
    found = current_revision(conn)
    if found != HEAD:
        state = "missing" if found is None else f"at revision {found}, need {HEAD}"
        raise UnavailableError(f"auditor's journal tables are {state} in {masked_db}: run `auditor db upgrade --db URL` first")


# ---------------------------------------------------------------------------------------------
# Rows


def new_run_id() -> str:
    return str(uuid.uuid4())


def start_run(
    conn: Connection,
    kind: str,
    options: Mapping,
    started_at: datetime,
    *,
    parent_run_id: str | None = None,
    run_id: str | None = None,
) -> str:
    t = tables(conn.dialect.name)
    run_id = run_id or new_run_id()
    user = conn.execute(text("SELECT current_user")).scalar() if conn.dialect.name == "postgresql" else None
    conn.execute(
        t.runs.insert().values(
            id=run_id,
            kind=kind,
            status=RUNNING,
            started_at=started_at,
            options=dict(options),
            parent_run_id=parent_run_id,
            auditor_version=__version__,
            database_user=user,
        )
    )
    return run_id


def finish_run(
    conn: Connection, run_id: str, status: str, finished_at: datetime, summary: Mapping, message: str | None = None
) -> None:
    t = tables(conn.dialect.name)
    conn.execute(
        t.runs.update()
        .where(t.runs.c.id == run_id)
        .values(
            status=status,
            finished_at=finished_at,
            summary=dict(summary),
            message=message,
        )
    )


def record_changes(
    conn: Connection, run_id: str, changes: Iterable[tuple[int, Mapping, str, object, str | None]], at: datetime
) -> None:
    """Many changes in one statement: (seq, change, state, written, reason) each."""
    rows = [
        dict(
            run_id=run_id,
            seq=seq,
            target=change["target"],
            action=change["action"],
            scope=change.get("scope"),
            entity_id=change.get("entity_id"),
            key=change["key"],
            old=change["old"],
            new=change["new"],
            written=written,
            state=state,
            reason=reason,
            recorded_at=at,
        )
        for seq, change, state, written, reason in changes
    ]
    if rows:
        conn.execute(tables(conn.dialect.name).changes.insert(), rows)


def update_changes(
    conn: Connection, run_id: str, outcomes: Iterable[tuple[int, str, object, str | None, object]], at: datetime
) -> None:
    """Many Redis outcomes at once, by (run, seq): (seq, state, written, reason, old) each; `old` None keeps the planned cells."""
    t = tables(conn.dialect.name).changes
    where = and_(t.c.run_id == run_id, t.c.seq == bindparam("b_seq"))
    plain, with_old = [], []
    for seq, state, written, reason, old in outcomes:
        row = {"b_seq": seq, "b_state": state, "b_written": written, "b_reason": reason, "b_at": at}
        (plain if old is None else with_old).append(row if old is None else {**row, "b_old": old})
    values = dict(
        state=bindparam("b_state"), written=bindparam("b_written"), reason=bindparam("b_reason"), recorded_at=bindparam("b_at")
    )
    if plain:
        conn.execute(t.update().where(where).values(**values), plain)
    if with_old:
        conn.execute(t.update().where(where).values(**values, old=bindparam("b_old")), with_old)


@dataclass(frozen=True)
class Run:
    id: str
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    options: dict
    summary: dict | None
    message: str | None
    parent_run_id: str | None
    database_user: str | None

    @property
    def complete(self) -> bool:
        return self.finished_at is not None and self.status == COMPLETED

    @property
    def state(self) -> str:
        """What history shows: a run that never finished (killed, crashed) is `incomplete`."""
        return "incomplete" if self.status == RUNNING and self.finished_at is None else self.status


def _run(row) -> Run:
    return Run(
        row.id,
        row.kind,
        row.status,
        row.started_at,
        row.finished_at,
        row.options or {},
        row.summary,
        row.message,
        row.parent_run_id,
        row.database_user,
    )


def list_runs(conn: Connection, limit: int | None = None) -> list[Run]:
    t = tables(conn.dialect.name)
    query = select(t.runs).order_by(t.runs.c.started_at.desc(), t.runs.c.id)
    if limit:
        query = query.limit(limit)
    return [_run(r) for r in conn.execute(query)]


def find_run(conn: Connection, run_id: str) -> Run:
    """A run by id, or by a unique prefix of at least 8 characters (as history prints them)."""
    t = tables(conn.dialect.name)
    wanted = run_id.strip().lower()
    rows = list(conn.execute(select(t.runs).where(t.runs.c.id == wanted)))
    if not rows and len(wanted) >= 8:
        rows = list(conn.execute(select(t.runs).where(t.runs.c.id.like(wanted.replace("%", "").replace("_", "") + "%")).limit(2)))
    if not rows:
        raise InputError(f"no run {run_id!r} in the journal: `auditor backfill history` lists them")
    if len(rows) > 1:
        raise InputError(f"run id prefix {run_id!r} is ambiguous: give more characters")
    return _run(rows[0])


@dataclass(frozen=True)
class Change:
    id: int
    seq: int
    target: str
    action: str
    scope: str | None
    entity_id: str | None
    key: str
    old: object
    new: object
    written: object
    state: str
    reason: str | None


def changes_of(conn: Connection, run_id: str) -> list[Change]:
    t = tables(conn.dialect.name)
    query = select(t.changes).where(t.changes.c.run_id == run_id).order_by(t.changes.c.seq, t.changes.c.id)
    return [
        Change(r.id, r.seq, r.target, r.action, r.scope, r.entity_id, r.key, r.old, r.new, r.written, r.state, r.reason)
        for r in conn.execute(query)
    ]


def change_counts(conn: Connection) -> dict[str, dict[str, int]]:
    """{run_id: {state: n}} for history, in one grouped query."""
    from sqlalchemy import func

    t = tables(conn.dialect.name)
    found: dict[str, dict[str, int]] = {}
    for row in conn.execute(
        select(t.changes.c.run_id, t.changes.c.state, func.count()).group_by(t.changes.c.run_id, t.changes.c.state)
    ):
        found.setdefault(row[0], {})[row[1]] = int(row[2])
    return found
