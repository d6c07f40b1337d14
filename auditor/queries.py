"""Every read of LiteLLM's tables. Aggregation happens here, in SQL, never row by row in Python."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, func, select, text

from auditor.schema import TABLES, spend_logs


def estimated_rows(conn: Connection, table: str) -> int | None:
    """The planner's estimate on PostgreSQL (never count(*) on a large table); None if never analyzed."""
    if conn.dialect.name == "postgresql":
        estimate = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"), {"name": f'"{table}"'}
        ).scalar()
        return None if estimate is None or estimate < 0 else int(estimate)
    return conn.execute(select(func.count()).select_from(TABLES[table])).scalar_one()


def spend_time_range(conn: Connection) -> tuple[datetime | None, datetime | None]:
    """Oldest and newest "startTime": two index probes on PostgreSQL."""
    row = conn.execute(select(func.min(spend_logs.c.startTime), func.max(spend_logs.c.startTime))).one()
    return _as_datetime(row[0]), _as_datetime(row[1])


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))
