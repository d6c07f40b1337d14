"""Doctor says "scan can run" only when every column the scan selects exists (issue 13), derived from the scan's
own statements; proven both ways against a real scan of the same database."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.sample import load_sample

runner = CliRunner()


@pytest.fixture
def sample_pg(pg_url):
    with connect(DatabaseTarget(parse_database_url(pg_url), "test"), read_only=False) as conn:
        load_sample(conn)
    return pg_url


def _drop(url: str, table: str, column: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'ALTER TABLE "{table}" DROP COLUMN "{column}" CASCADE'))
    engine.dispose()


@pytest.mark.parametrize(
    ("table", "column"),
    [("LiteLLM_SpendLogs", "end_user"), ("LiteLLM_VerificationToken", "key_alias"), ("LiteLLM_SpendLogs", "call_type")],
)
def test_a_column_the_scan_selects_missing_means_scan_cannot_run_and_it_cannot(sample_pg, table, column):
    _drop(sample_pg, table, column)
    doctor = runner.invoke(app, ["doctor", "--db", sample_pg], env={"COLUMNS": "400"})
    assert doctor.exit_code == 3, doctor.output
    assert f'{table}."{column}"' in doctor.output and "scan cannot run" in doctor.output
    scan = runner.invoke(app, ["scan", "--db", sample_pg, "--format", "json"])
    assert scan.exit_code == 3 and column in scan.stderr  # the scan really fails on it


def test_a_column_the_scan_reads_only_when_present_does_not_stop_it(sample_pg):
    _drop(sample_pg, "LiteLLM_SpendLogs", "session_id")  # read only where LiteLLM has it (1.110 batch ids)
    doctor = runner.invoke(app, ["doctor", "--db", sample_pg], env={"COLUMNS": "400"})
    assert doctor.exit_code == 0, doctor.output
    assert "every column the scan selects is present" in doctor.output and "scan can run" in doctor.output
    scan = runner.invoke(app, ["scan", "--db", sample_pg, "--format", "json", "--fail-on", "never"])
    assert scan.exit_code == 0, scan.output
