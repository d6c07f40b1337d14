"""A range-partitioned LiteLLM_SpendLogs, as operators set it up to drop old months cheaply (PostgreSQL declarative
partitioning by "startTime"): `auditor scan --since` reads only the partitions its range needs, as EXPLAIN shows
for every statement it runs on the ledger, and finds exactly what it finds on the same rows unpartitioned."""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.sample import load_sample

pytestmark = pytest.mark.postgres

SAMPLE_CONFIG = str(Path(__file__).resolve().parent.parent / "sample_data" / "config.yaml")
NOW = "2026-11-22T00:00:00Z"  # the sample's traffic: 1 .. 21 November
PARTITIONS = {  # name: [from, to)
    "spend_p1": ("2026-10-01", "2026-11-08"),
    "spend_p2": ("2026-11-08", "2026-11-15"),
    "spend_p3": ("2026-11-15", "2026-12-01"),
}


def partition(url: str) -> None:
    """The sample's spend logs moved into a table partitioned by range of "startTime", with LiteLLM's indexes."""
    statements = [
        'ALTER TABLE "LiteLLM_SpendLogs" RENAME TO spend_flat',
        'CREATE TABLE "LiteLLM_SpendLogs" (LIKE spend_flat INCLUDING DEFAULTS) PARTITION BY RANGE ("startTime")',
        *(
            f"CREATE TABLE {name} PARTITION OF \"LiteLLM_SpendLogs\" FOR VALUES FROM ('{lo}') TO ('{hi}')"
            for name, (lo, hi) in PARTITIONS.items()
        ),
        'INSERT INTO "LiteLLM_SpendLogs" SELECT * FROM spend_flat',
        "DROP TABLE spend_flat",
        'ALTER TABLE "LiteLLM_SpendLogs" ADD PRIMARY KEY (request_id, "startTime")',  # a partition key must be in it
        'CREATE INDEX ON "LiteLLM_SpendLogs" ("startTime")',
        'CREATE INDEX ON "LiteLLM_SpendLogs" (api_key, "startTime")',
        'ANALYZE "LiteLLM_SpendLogs"',
    ]
    with connect(DatabaseTarget(parse_database_url(url), "test"), read_only=False) as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)


@contextmanager
def partitions_read():
    """For each statement run on LiteLLM_SpendLogs meanwhile, the partitions its plan reads (EXPLAIN, same parameters)."""
    seen: list[tuple[set[str], str]] = []

    def explain(conn, cursor, statement, parameters, *_):
        if '"LiteLLM_SpendLogs"' in statement and not statement.startswith("EXPLAIN"):
            with cursor.connection.cursor() as plan:
                plan.execute("EXPLAIN " + statement, parameters)
                text = "\n".join(row[0] for row in plan.fetchall())
            seen.append((set(re.findall(r"\bspend_p\d\b", text)), statement))

    event.listen(Engine, "before_cursor_execute", explain)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", explain)


def scan(url: str, *args: str) -> dict:
    result = CliRunner().invoke(
        app, ["scan", "--db", url, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", "--fail-on", "never", *args]
    )
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return json.loads(result.stdout)


def test_since_reads_only_the_partitions_it_needs_and_finds_the_same(pg_url):
    with connect(DatabaseTarget(parse_database_url(pg_url), "test"), read_only=False) as conn:
        load_sample(conn)
    flat = scan(pg_url, "--since", "7d")
    partition(pg_url)

    with partitions_read() as seen:
        since = scan(pg_url, "--since", "7d")  # from 15 November: spend_p3 alone
    assert since == flat
    assert len(seen) >= 5 and all(parts == {"spend_p3"} for parts, _ in seen), [
        (sorted(parts), statement[:120]) for parts, statement in seen if parts != {"spend_p3"}
    ]

    with partitions_read() as seen:  # the same detector sees every partition when the range needs them
        scan(pg_url)
    assert set().union(*(parts for parts, _ in seen)) == set(PARTITIONS)
