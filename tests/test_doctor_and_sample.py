"""doctor and the sample deployment, end to end on PostgreSQL and the embedded SQLite default."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.sample import sample_dir

runner = CliRunner()
SAMPLE = json.loads((sample_dir() / "litellm_tables.json").read_text())
CONFIG = str(sample_dir() / "config.yaml")


def invoke(*args: str):
    return runner.invoke(app, list(args))


@pytest.fixture
def pg_sample(pg_url):
    result = invoke("sample", "load", "--db", pg_url)
    assert result.exit_code == 0, result.output
    return pg_url


@pytest.mark.postgres
def test_sample_load_reports_what_it_loaded(pg_url):
    result = invoke("sample", "load", "--db", pg_url)
    assert result.exit_code == 0, result.output
    total = sum(len(rows) for rows in SAMPLE.values())
    assert f"loaded {total:,} rows into {len(SAMPLE)} LiteLLM tables" in result.output


@pytest.mark.postgres
def test_sample_load_refuses_a_database_with_spend_logs_unless_forced(pg_sample):
    again = invoke("sample", "load", "--db", pg_sample)
    assert again.exit_code == 2
    assert "already holds LiteLLM spend logs" in again.output
    forced = invoke("sample", "load", "--db", pg_sample, "--force")
    assert forced.exit_code == 0, forced.output
    engine = create_engine(make_url(pg_sample).set(drivername="postgresql+psycopg"))
    with engine.connect() as conn:
        count = conn.execute(text('SELECT count(*) FROM "LiteLLM_SpendLogs"')).scalar_one()
    engine.dispose()
    assert count == len(SAMPLE["LiteLLM_SpendLogs"])  # replaced, not doubled


@pytest.mark.postgres
def test_doctor_inventories_a_postgresql_database(pg_sample):
    result = runner.invoke(app, ["doctor", "--db", pg_sample, "--config", CONFIG], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "11 of 11 found" in out
    assert "LiteLLM >= 1.105 (from schema markers)" in out
    assert f"{len(SAMPLE['LiteLLM_SpendLogs']):,}" in out  # reltuples after the loader's ANALYZE
    starts = sorted(row["startTime"] for row in SAMPLE["LiteLLM_SpendLogs"])
    assert f"{starts[0][:10]} {starts[0][11:16]} .. {starts[-1][:10]} {starts[-1][11:16]} UTC" in out
    assert "6 model groups" in out
    assert "scan can run" in out


@pytest.mark.postgres
def test_doctor_prints_the_missing_index_statement_and_never_runs_it(pg_sample):
    engine = create_engine(make_url(pg_sample).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(text('DROP INDEX "LiteLLM_SpendLogs_api_key_startTime_idx"'))
    result = runner.invoke(app, ["doctor", "--db", pg_sample], env={"COLUMNS": "300"})
    with engine.connect() as conn:
        still_missing = conn.execute(text("SELECT to_regclass('\"LiteLLM_SpendLogs_api_key_startTime_idx\"')")).scalar()
    engine.dispose()
    assert result.exit_code == 0, result.output
    assert 'CREATE INDEX CONCURRENTLY IF NOT EXISTS "LiteLLM_SpendLogs_api_key_startTime_idx"' in result.output
    assert still_missing is None


@pytest.mark.postgres
def test_doctor_exits_3_on_a_database_without_litellm_tables(pg_url):
    result = runner.invoke(app, ["doctor", "--db", pg_url], env={"COLUMNS": "200"})
    assert result.exit_code == 3
    assert "LiteLLM_SpendLogs is missing" in result.output


def test_embedded_default_is_built_once_and_said_on_stderr():
    first = runner.invoke(app, ["doctor"], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "using the embedded sample deployment" in first.output
    assert "embedded sample" in first.output and "sqlite" in first.output
    assert f"{len(SAMPLE['LiteLLM_SpendLogs']):,}" in first.output
    assert "6 model groups" in first.output  # the sample's own config is used


@pytest.mark.postgres
def test_resolve_all_places_every_logged_model_but_the_unconfigured_one(pg_sample):
    result = invoke("resolve", "--all", "--json", "--db", pg_sample, "--config", CONFIG)
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    triples = {(r["model"], r["model_group"] or "", r["model_id"] or "") for r in SAMPLE["LiteLLM_SpendLogs"]}
    assert {(r["model"], r["model_group"], r["model_id"]) for r in listed} == triples
    assert sum(r["rows"] for r in listed) == len(SAMPLE["LiteLLM_SpendLogs"])
    unresolved = {r["model"] for r in listed if r["status"] != "resolved"}
    assert unresolved == {"llama3.1:8b", "ollama/llama3.1:8b"}
    assert [r["status"] for r in listed[:2]] == ["unresolved", "unresolved"]  # worst first
    assert all(r["rule"] and r["decided_by"] for r in listed)


def test_resolve_explains_which_entry_governs_for_a_key():
    result = runner.invoke(app, ["resolve", "claude-opus-4-6@default", "--key", "opus-tester"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "claude-opus-4-6@default → claude-opus-4-6" in result.output
    assert "rule: deployment" in result.output
    assert "claude-opus*: glob matches 'claude-opus-4-6' [→ governs]" in result.output


def test_resolve_needs_a_name_or_all():
    result = runner.invoke(app, ["resolve"])
    assert result.exit_code == 2
    assert "give a model NAME, or --all" in result.output


@pytest.fixture
def select_only_role(pg_sample, pg_server):
    """A role with only SELECT on LiteLLM's tables, as README tells users to create."""
    role = f"auditor_ro_{uuid.uuid4().hex[:8]}"
    database = make_url(pg_sample).database
    with pg_server.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
    engine = create_engine(make_url(pg_sample).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    yield str(make_url(pg_sample).set(username=role).render_as_string(hide_password=False))
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"))
        conn.execute(text(f'DROP OWNED BY "{role}"'))
    engine.dispose()
    with pg_server.connect() as conn:
        conn.execute(text(f'DROP ROLE "{role}"'))
    assert database


@pytest.mark.postgres
def test_scan_runs_with_a_select_only_role_and_writes_nothing(select_only_role):
    result = invoke("scan", "--db", select_only_role, "--config", CONFIG, "--now", "2026-11-22T00:00:00Z", "--format", "json")
    assert result.exit_code == 1, result.output  # the sample has error findings
    assert json.loads(result.output)["rows"]["read"] == len(SAMPLE["LiteLLM_SpendLogs"])


@pytest.mark.postgres
def test_a_statement_timeout_names_the_option_to_raise(pg_sample):
    # Another session holds an exclusive lock on the spend logs, so the scan's first read waits past
    # its 0.5 s statement_timeout, whatever the machine's speed.
    engine = create_engine(make_url(pg_sample).set(drivername="postgresql+psycopg"))
    with engine.connect() as holder:
        holder.execute(text('LOCK TABLE "LiteLLM_SpendLogs" IN ACCESS EXCLUSIVE MODE'))
        result = invoke("scan", "--db", pg_sample, "--config", CONFIG, "--statement-timeout", "0.5")
        holder.rollback()
    engine.dispose()
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines()[-1].startswith("auditor: a query on ")
    assert "raise --statement-timeout" in result.output


EXPECTED = json.loads((sample_dir() / "expected.json").read_text())


def test_explain_tells_one_keys_story_with_the_requests_that_leaked():
    [research] = [k for k in EXPECTED["keys"] if k["key_alias"] == "research-agent"]
    [entry] = research["entries"]
    first = entry["over_budget_windows"][0]
    result = runner.invoke(app, ["explain", "research-agent", "--now", "2026-11-22T00:00:00Z"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("key research-agent (") for line in lines)
    assert f"claude-opus-4-6: $1.0000 per 1d, {entry['windows']} windows" in result.output
    [window_line] = [line for line in lines if line.strip().startswith(first["start"][:10] + " " + first["start"][11:16])]
    assert f"{first['requests']} req" in window_line
    assert f"{first['requests_after_limit']} admitted after the limit (${first['spend_after_limit']['usd']})" in window_line
    assert "crossed by " in window_line


def test_explain_needs_exactly_one_entity():
    result = runner.invoke(app, ["explain", "research-agent", "--team", "team-data"])
    assert result.exit_code == 2
    assert "name one entity" in result.output
    unknown = runner.invoke(app, ["explain", "--team", "no-such-team"])
    assert unknown.exit_code == 2
    assert "no team 'no-such-team' (by id or alias)" in unknown.output
