"""The shell around the core: where the database comes from, one-line errors, masked passwords."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.errors import InputError
from auditor.ledger.db import database_from, mask_text, parse_database_url
from auditor.ledger.redis_store import redis_from

runner = CliRunner()


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("postgres://litellm:s3cret@db:5432/litellm", "postgresql+psycopg"),
        ("postgresql://litellm@db/litellm", "postgresql+psycopg"),
        ("postgresql+psycopg://litellm@db/litellm", "postgresql+psycopg"),
        ("sqlite:////tmp/x.sqlite", "sqlite"),
    ],
)
def test_database_urls_users_have_are_accepted(raw, driver):
    assert parse_database_url(raw).drivername == driver


def test_unsupported_database_is_a_usage_error():
    with pytest.raises(InputError, match="unsupported database 'mysql'"):
        parse_database_url("mysql://root@localhost/x")


def test_database_precedence_flag_then_auditor_then_litellm_variable():
    env = {"AUDITOR_DATABASE_URL": "postgresql://a@h/a", "DATABASE_URL": "postgresql://b@h/b"}
    assert database_from("sqlite:///x", env).origin == "--db"
    assert database_from(None, env).origin == "AUDITOR_DATABASE_URL"
    assert database_from(None, {"DATABASE_URL": "postgres://b@h/b"}).url.database == "b"
    assert database_from(None, {}) is None


def test_passwords_are_masked_in_urls_and_messages():
    target = database_from("postgresql://litellm:hunter2@db:5432/litellm", {})
    assert "hunter2" not in target.masked
    assert mask_text("failed for postgresql://u:hunter2@h/db") == "failed for postgresql://u:***@h/db"
    assert mask_text("password hunter2 rejected", ("hunter2",)) == "password *** rejected"


def test_redis_from_litellm_variables():
    target = redis_from(None, {"REDIS_HOST": "cache", "REDIS_PORT": "6380", "REDIS_PASSWORD": "p@ss"})
    assert target.origin == "REDIS_HOST"
    assert target.url == "redis://:p%40ss@cache:6380/0"
    assert "p%40ss" not in target.masked and "p@ss" not in target.masked
    assert redis_from("redis://:pw@localhost:6379/2", {}).password == "pw"
    assert redis_from(None, {}) is None


def test_doctor_on_an_unreachable_database_prints_one_line_and_exits_3():
    result = runner.invoke(app, ["doctor", "--db", "postgresql://nobody:topsecret@127.0.0.1:1/x"])
    assert result.exit_code == 3, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("auditor: cannot connect to postgresql+psycopg://nobody:***@127.0.0.1:1/x (--db): ")
    assert "topsecret" not in result.output


def test_a_bad_database_url_is_a_usage_error():
    result = runner.invoke(app, ["scan", "--db", "mysql://root:pw@localhost/x"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "auditor: unsupported database 'mysql': auditor reads PostgreSQL (LiteLLM's database) or SQLite"
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["doctor", "--help"],
        ["scan", "--help"],
        ["sample", "load", "--help"],
        ["resolve", "--help"],
        ["explain", "--help"],
    ],
)
def test_every_help_shows_a_ready_to_paste_example(command):
    result = runner.invoke(app, command)
    assert result.exit_code == 0
    assert "Example" in result.output
    assert "auditor " in result.output.split("Example", 1)[1]


def test_the_scan_table_says_why_money_leaked_and_what_to_run_next():
    """On the sample: research-agent's windows leaked because no counter exists where enforcement reads (without
    Redis, LiteLLM_BudgetWindowSpend); bi-dashboards' because its spend column lagged. Each entity ends with the
    commands that explain and repair it, pasteable as they are."""
    result = runner.invoke(app, ["scan", "--now", "2026-11-22T00:00:00Z", "--fail-on", "never"], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    research = out[out.index("key: research-agent") :]
    assert "no counter where" in research.split("next:")[0]  # the why column folds at the table's width
    assert "next: auditor explain research-agent · auditor backfill --key research-agent" in research
    bi = out[out.index("key: bi-dashboards") :]
    assert "lagging spend:" in bi.split("next:")[0]
    assert "next: auditor explain bi-dashboards\n" in bi
    assert "next: auditor explain --end-user 'ACME Corp'" in out
    assert "entities over budget (" in out and "leaking" in out


@pytest.mark.parametrize(
    "command", [["--help"], ["scan", "--help"], ["explain", "--help"], ["backfill", "--help"], ["report", "--help"]]
)
def test_help_examples_are_never_rewrapped_so_they_paste_as_one_line(command):
    result = runner.invoke(app, command, env={"COLUMNS": "60"})
    assert result.exit_code == 0
    examples = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("auditor ")]
    assert examples, result.stdout
    for line in result.stdout.splitlines():  # no example continues on the next line
        assert not line.strip().startswith(("--config proxy_config", "--redis redis://", "--since 30d")), result.stdout


def test_verbose_logs_phases_and_sql_timings_to_stderr_and_leaves_stdout_alone(tmp_path):
    """-vv: every SQL statement with its milliseconds on stderr (auditor.sql), the scan's phases at INFO; the JSON on
    stdout is the same as without it, and the logging is undone when the command ends."""
    import json
    import logging

    url = f"sqlite:///{tmp_path / 'litellm.sqlite'}"
    assert runner.invoke(app, ["sample", "load", "--db", url]).exit_code == 0
    args = ["scan", "--db", url, "--now", "2026-11-22T00:00:00Z", "--format", "json"]
    quiet = runner.invoke(app, args)
    loud = runner.invoke(app, ["-vv", *args])
    assert loud.exit_code == quiet.exit_code == 1, loud.output
    assert json.loads(loud.stdout) == json.loads(quiet.stdout)
    assert "auditor.sql" not in quiet.stderr and "DEBUG" not in quiet.stderr
    sql = [line for line in loud.stderr.splitlines() if " DEBUG auditor.sql: " in line]
    assert any('FROM "LiteLLM_SpendLogs"' in line for line in sql), loud.stderr[:2000]
    assert all(" ms" in line.split("auditor.sql: ", 1)[1].split(":", 1)[0] for line in sql)
    assert " INFO auditor.audit.scan: ledger: " in loud.stderr
    assert all(len(line.split("auditor.sql: ", 1)[1]) < 260 for line in sql)  # one bounded line a statement
    phases = runner.invoke(app, ["-v", *args])
    assert " INFO auditor.audit.scan: " in phases.stderr and "auditor.sql" not in phases.stderr
    assert not logging.getLogger("auditor").handlers and logging.getLogger("auditor").level == logging.NOTSET


def test_shell_completion_is_offered():
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == 0 and "complete" in result.stdout
