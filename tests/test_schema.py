"""Our Table definitions against LiteLLM's real schema, created in PostgreSQL from its own DDL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from auditor.ledger.schema import metadata

DDL = Path(__file__).parent / "fixtures" / "litellm_ddl.sql"

EXPECTED_PG_TYPE = {  # our type as PostgreSQL DDL -> (information_schema data_type, udt_name)
    "TEXT": ("text", "text"),
    "FLOAT": ("double precision", "float8"),
    "INTEGER": ("integer", "int4"),
    "BIGINT": ("bigint", "int8"),
    "BOOLEAN": ("boolean", "bool"),
    "JSONB": ("jsonb", "jsonb"),
    "TEXT[]": ("ARRAY", "_text"),
    "TIMESTAMP(3) WITHOUT TIME ZONE": ("timestamp without time zone", "timestamp"),
}


def apply_ddl(url: str, ddl: str) -> None:
    """LiteLLM's DDL minus foreign keys to tables the fixture does not dump."""
    statements = [s for s in ddl.split(";\n") if s.strip() and "FOREIGN KEY" not in s]
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            if any(line.strip() and not line.strip().startswith("--") for line in statement.splitlines()):
                conn.exec_driver_sql(statement)
    engine.dispose()


def schema_drift(url: str) -> list[str]:
    """Every difference between our definitions and the live catalog, one line each."""
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT table_name, column_name, data_type, udt_name, is_nullable, datetime_precision "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            )
        ).all()
    engine.dispose()
    live = {(r.table_name, r.column_name): r for r in rows}
    problems = []
    for table in metadata.sorted_tables:
        live_columns = {column for (t, column) in live if t == table.name}
        if not live_columns:
            problems.append(f"{table.name}: table missing")
            continue
        ours = {column.name for column in table.columns}
        problems += [f"{table.name}.{c}: not in LiteLLM's schema" for c in sorted(ours - live_columns)]
        problems += [f"{table.name}.{c}: not defined by auditor" for c in sorted(live_columns - ours)]
        for column in table.columns:
            row = live.get((table.name, column.name))
            if row is None:
                continue
            expected = EXPECTED_PG_TYPE[column.type.compile(dialect=engine.dialect)]
            if (row.data_type, row.udt_name) != expected:
                problems.append(f"{table.name}.{column.name}: ours {expected}, LiteLLM {(row.data_type, row.udt_name)}")
            if row.datetime_precision not in (None, 3) or (expected[1] == "timestamp" and row.datetime_precision != 3):
                problems.append(f"{table.name}.{column.name}: timestamp precision {row.datetime_precision}")
            if (row.is_nullable == "YES") != bool(column.nullable):
                problems.append(f"{table.name}.{column.name}: nullable ours {column.nullable}, LiteLLM {row.is_nullable}")
    return problems


@pytest.mark.postgres
def test_every_column_matches_litellms_schema(pg_url):
    apply_ddl(pg_url, DDL.read_text())
    assert schema_drift(pg_url) == []


@pytest.mark.postgres
def test_a_renamed_column_in_the_ddl_is_caught(pg_url):
    renamed = DDL.read_text().replace('"startTime"', '"start_time"')
    assert renamed != DDL.read_text()
    apply_ddl(pg_url, renamed)
    assert schema_drift(pg_url) == [
        "LiteLLM_SpendLogs.startTime: not in LiteLLM's schema",
        "LiteLLM_SpendLogs.start_time: not defined by auditor",
    ]


@pytest.mark.postgres
def test_a_changed_type_is_caught(pg_url):
    changed = DDL.read_text().replace(
        "    spend double precision DEFAULT 0.0 NOT NULL,\n    total_tokens",
        "    spend numeric DEFAULT 0.0 NOT NULL,\n    total_tokens",
    )
    apply_ddl(pg_url, changed)
    assert schema_drift(pg_url) == [
        "LiteLLM_SpendLogs.spend: ours ('double precision', 'float8'), LiteLLM ('numeric', 'numeric')"
    ]


@pytest.mark.postgres
def test_our_definitions_create_the_same_schema(pg_url):
    """`sample load` creates tables from our definitions: they must be LiteLLM's too."""
    engine = create_engine(pg_url)
    metadata.create_all(engine)
    engine.dispose()
    assert schema_drift(pg_url) == []


def test_the_same_definitions_work_on_sqlite(sqlite_url):
    from datetime import datetime

    from sqlalchemy import insert, select

    from auditor.ledger.schema import spend_logs, verification_token

    engine = create_engine(sqlite_url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(verification_token).values(
                token="abc", models=["gpt-4o"], model_max_budget={"gpt-4o": {"budget_limit": 1, "time_period": "1d"}}
            )
        )
        conn.execute(
            insert(spend_logs).values(
                request_id="r1",
                call_type="acompletion",
                startTime=datetime(2026, 11, 1, 12, 0, 0, 123000),
                endTime=datetime(2026, 11, 1, 12, 0, 1),
            )
        )
        token = conn.execute(select(verification_token)).one()
        log = conn.execute(select(spend_logs)).one()
    engine.dispose()
    assert token.models == ["gpt-4o"]
    assert token.model_max_budget == {"gpt-4o": {"budget_limit": 1, "time_period": "1d"}}
    assert token.aliases == {} and token.spend == 0.0
    assert log.startTime == datetime(2026, 11, 1, 12, 0, 0, 123000)
    assert log.api_key == "" and log.model == "" and log.request_tags == []
