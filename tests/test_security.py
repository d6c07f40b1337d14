"""Security promises (docs/security.md), each proven against real PostgreSQL, SQLite and Redis:

- secrets: a database password, a Redis password, a webhook token and raw API keys appear in no output, log
  record, report, history or journal row, whether the connections work or fail;
- least privilege: scan and report run as a role that can only read LiteLLM's tables (plus the documented grants
  for the run history); a role missing a grant fails with one line naming the privilege;
- injection: aliases and model names holding SQL, HTML, Rich markup, Markdown, terminal escapes and spreadsheet
  formulas are stored in the database and come out inert in the terminal, CSV, Markdown and HTML; all SQL is
  parameterised;
- every file auditor creates is readable by its owner only.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import logging
import os
import re
import socket
import stat
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.clock import utc_now
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.ledger.schema import budget_window_spend, metadata, spend_logs, team_table, verification_token

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CONFIG = str(REPO / "sample_data" / "config.yaml")
NOW = "2026-11-22T00:00:00Z"
STEM = "auditor-report-20261122T000000Z"
PG_PASSWORD = "S3cretPW"
REDIS_PASSWORD = "R3disPW"
HOOK_TOKEN = "W3bhookT0ken"
CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
    model_info:
      id: dep-gpt4o
"""
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")  # anything but \n

runner = CliRunner()


def invoke(*args: str, env: dict | None = None, code: int | None = None):
    result = runner.invoke(app, list(args), env=env)
    if code is not None:
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def admin(url: str):
    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")


def masked(url: str) -> str:
    return parse_database_url(url).render_as_string(hide_password=True)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Roles (cluster-wide: unique names, dropped at the end)


@pytest.fixture
def make_role(pg_server, pg_url):
    """Create login roles in the test database with the grants given, as its owner would; all dropped after."""
    made: list[str] = []
    engine = admin(pg_url)

    def make(*grants: str, password: str | None = None, owner: bool = False) -> str:
        role = f"auditor_sec_{uuid.uuid4().hex[:10]}"
        with pg_server.connect() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN" + (f" PASSWORD '{password}'" if password else "")))
        made.append(role)
        with engine.connect() as conn:
            if owner:
                conn.execute(text(f'ALTER DATABASE "{make_url(pg_url).database}" OWNER TO {role}'))
                conn.execute(text(f"ALTER SCHEMA public OWNER TO {role}"))
            for grant in grants:
                conn.execute(text(grant.format(role=role)))
        return role

    yield make
    with engine.connect() as conn:
        for role in made:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role})
            conn.execute(text(f"REASSIGN OWNED BY {role} TO postgres"))
            conn.execute(text(f"DROP OWNED BY {role}"))
    engine.dispose()
    with pg_server.connect() as conn:
        for role in made:
            conn.execute(text(f"DROP ROLE {role}"))


def as_role(url: str, role: str, password: str | None = None) -> str:
    return make_url(url).set(username=role, password=password).render_as_string(hide_password=False)


@pytest.fixture
def redis_user(redis_client):
    """A Redis ACL user with a password (the shared server's default user is left alone); deleted after."""
    name = f"auditor_sec_{uuid.uuid4().hex[:10]}"
    redis_client.execute_command("ACL", "SETUSER", name, "on", f">{REDIS_PASSWORD}", "~*", "&*", "+@all")
    kwargs = redis_client.connection_pool.connection_kwargs
    yield name, f"{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}", kwargs.get("db", 0)
    redis_client.execute_command("ACL", "DELUSER", name)


# ---------------------------------------------------------------------------------------------
# Secrets


class Sweep:
    """Everything a run of commands produced: outputs, files, database and Redis rows, log records."""

    def __init__(self) -> None:
        self.blobs: list[tuple[str, str]] = []

    def run(self, *args: str, env: dict | None = None, code: int | None = None):
        result = invoke(*args, env=env, code=code)
        self.blobs.append((" ".join(args[:2]) + " stdout", result.stdout))
        self.blobs.append((" ".join(args[:2]) + " stderr", result.stderr))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.blobs.append((" ".join(args[:2]) + " exception", repr(result.exception)))
        return result

    def add(self, where: str, content: str) -> None:
        self.blobs.append((where, content))

    def files(self, root: Path) -> None:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                self.add(str(path), path.read_bytes().decode("utf-8", "replace"))

    def leaks(self, *secrets: str) -> list[tuple[str, str]]:
        return [(where, secret) for where, blob in self.blobs for secret in secrets if secret in blob]


@pytest.mark.postgres
def test_no_password_or_token_reaches_any_output_file_row_or_log(pg_url, make_role, redis_user, redis_client, tmp_path, caplog):
    caplog.set_level(logging.INFO)  # alembic's and SQLAlchemy's log records count as output too
    role = make_role(password=PG_PASSWORD, owner=True)
    db = as_role(pg_url, role, PG_PASSWORD)  # trust auth here: the password travels, as in production
    user, address, redis_db = redis_user
    rd = f"redis://{user}:{REDIS_PASSWORD}@{address}/{redis_db}"
    hook = f"http://127.0.0.1:{closed_port()}/services/T000/B000/{HOOK_TOKEN}"
    out = tmp_path / "out"
    out.mkdir()
    s = Sweep()
    common = ["--db", db, "--redis", rd, "--config", SAMPLE_CONFIG]

    # Working connections: every command that reads or writes
    s.run("sample", "load", "--db", db, "--redis", rd, code=0)
    s.run("db", "upgrade", "--db", db, code=0)
    s.run("doctor", *common, code=0)
    for fmt in ("table", "json", "csv", "markdown"):
        s.run("scan", *common, "--now", NOW, "--format", fmt, "--fail-on", "never", env={"COLUMNS": "300"}, code=0)
    s.run("scan", *common, "--now", NOW, "--format", "json", "--output", str(out / "scan.json"), "--fail-on", "never", code=0)
    report = s.run("report", *common, "--now", NOW, "--out", str(out / "reports"), "--webhook", hook, code=1)
    assert report.stderr.startswith("auditor: webhook ") and len(report.stderr.splitlines()) == 1  # it failed, quietly
    s.run("history", "--db", db, code=0)
    s.run("history", "--db", db, "--format", "json", code=0)
    s.run("explain", "research-agent", *common, "--now", NOW, code=0)
    s.run("resolve", "--all", "--db", db, "--config", SAMPLE_CONFIG, code=0)
    fix = [*common, "--now", NOW, "--target", "model_spend"]
    s.run("backfill", *fix, code=1)
    s.run("backfill", *fix, "--format", "json", code=1)
    applied = s.run("backfill", *fix, "--apply", "--yes", "--format", "json", code=0)
    s.run("backfill", "history", "--db", db, code=0)
    s.run("backfill", "history", "--db", db, "--format", "json", code=0)
    s.run("backfill", "undo", json.loads(applied.stdout)["run_id"], "--db", db, "--redis", rd, "--yes", code=0)

    # Failing connections: the database unreachable, a database that does not exist, Redis refusing the password
    # (the real server's WRONGPASS), Redis unreachable; from flags and from LiteLLM's environment variables
    down = as_role(pg_url.replace(":5432/", f":{closed_port()}/"), role, PG_PASSWORD)
    missing = make_url(db).set(database=f"no_such_db_{uuid.uuid4().hex[:6]}").render_as_string(hide_password=False)
    for bad in (down, missing):
        for command in (
            ["scan"],
            ["doctor"],
            ["report", "--out", str(out / "never")],
            ["backfill"],
            ["backfill", "history"],
            ["history"],
            ["explain", "research-agent"],
            ["db", "upgrade"],
        ):
            result = s.run(*command, "--db", bad, code=3)
            assert len(result.stderr.splitlines()) == 1
    wrong = f"redis://{user}:x{REDIS_PASSWORD}x@{address}/{redis_db}"
    unreachable = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0"
    for bad in (wrong, unreachable):
        for command in (["scan"], ["report", "--out", str(out / "never")], ["backfill"], ["explain", "research-agent"]):
            s.run(*command, "--db", db, "--redis", bad, code=3)
        s.run("doctor", "--db", db, "--redis", bad, code=3)
        s.run("scan", "--db", db, "--redis", bad, "--redis-optional", "--format", "json", "--fail-on", "never", code=0)
    env = {"DATABASE_URL": down, "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(closed_port()), "REDIS_PASSWORD": REDIS_PASSWORD}
    s.run("scan", env=env, code=3)
    s.run("scan", "--db", db, env={**env, "DATABASE_URL": None}, code=3)
    s.run("doctor", env=env, code=3)

    # The usage error a forgotten --db gives quotes the argument: main() masks it (the real entry point)
    stray = subprocess.run([sys.executable, "-m", "auditor", "scan", db], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert stray.returncode == 2
    assert f"Got unexpected extra argument(s) ({masked(db)})" in stray.stderr
    s.add("usage error", stray.stdout + stray.stderr)

    # Everything written: files, auditor's own tables (journal and history), Redis, log records
    s.files(tmp_path)
    engine = admin(pg_url)
    with engine.connect() as conn:
        for table in ("runs", "backfill_changes", "report_findings"):
            rows = conn.execute(text(f"SELECT row_to_json(t)::text FROM auditor.{table} t")).scalars().all()
            assert rows, table
            s.add(f"auditor.{table}", "\n".join(rows))
    engine.dispose()
    s.add("redis", json.dumps({k: redis_client.get(k) for k in redis_client.scan_iter("*") if redis_client.type(k) == "string"}))
    s.add("log records", caplog.text)

    assert s.leaks(PG_PASSWORD, REDIS_PASSWORD, HOOK_TOKEN) == []
    # and the masked forms are what was shown: the sweep looked at the right outputs
    shown = "\n".join(blob for _, blob in s.blobs)
    assert f"postgresql+psycopg://{role}:***@127.0.0.1:5432/" in shown
    assert f"redis://{user}:***@{address}/{redis_db}" in shown
    assert "invalid username-password pair" in shown and "Connection refused" in shown and "does not exist" in shown


RAW_KEY = "sk-LiveRawKEYmaterialZZ9988776655QQ"  # upper case and Z/Q: no window of it can occur in hex output
T0 = datetime(2026, 3, 2, 9, 0)


def _raw_key_database(url: str) -> None:
    """An early-2024 key whose token column holds the API key itself, over its $1/day gpt-4o budget with requests
    admitted after the limit, and a LiteLLM_BudgetWindowSpend counter for it that drifts."""
    rows = [
        {
            "request_id": f"req-{n}",
            "call_type": "acompletion",
            "api_key": RAW_KEY,
            "spend": 0.6,
            "startTime": T0 + timedelta(hours=n, seconds=-1),
            "endTime": T0 + timedelta(hours=n),
            "model": "azure/prod-gpt4o",
            "model_group": "gpt-4o",
            "model_id": "dep-gpt4o",
            "status": "success",
            "metadata": {},
        }
        for n in range(3)
    ]
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": RAW_KEY,
                    "key_alias": None,
                    "spend": 1.8,
                    "total_spend": 1.8,
                    "model_spend": {"gpt-4o": 5.0},
                    "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}},
                }
            ],
        )
        conn.execute(spend_logs.insert(), rows)
        conn.execute(
            budget_window_spend.insert(),
            [
                {
                    "entity_type": "model_max_budget",
                    "entity_id": f"virtual_key_spend:{RAW_KEY}:gpt-4o:1d",
                    "window_duration": "1d",
                    "window_start": T0,
                    "spend": 0.5,
                    "updated_at": T0,
                }
            ],
        )
    engine.dispose()


def test_a_raw_api_key_in_the_token_column_is_never_printed(sqlite_url, config, tmp_path):
    _raw_key_database(sqlite_url)
    hashed = hashlib.sha256(RAW_KEY.encode()).hexdigest()
    now = (T0 + timedelta(hours=3)).isoformat() + "Z"
    s = Sweep()
    common = ["--db", sqlite_url, "--config", config]
    outputs = {}
    for fmt in ("table", "json", "csv", "markdown"):
        outputs[fmt] = s.run("scan", *common, "--now", now, "--format", fmt, env={"COLUMNS": "300"}, code=1).stdout
    s.run(
        "report",
        *common,
        "--now",
        now,
        "--out",
        str(tmp_path / "r"),
        "--history-db",
        f"sqlite:///{tmp_path / 'h.sqlite'}",
        code=1,
    )
    s.run("explain", RAW_KEY, *common, "--now", now, code=0)
    s.run("resolve", "gpt-4o", "--key", RAW_KEY, *common, code=0)
    s.run("db", "upgrade", "--db", sqlite_url, code=0)
    fix = [*common, "--now", now, "--target", "counters", "--target", "model_spend"]
    s.run("backfill", *fix, env={"COLUMNS": "300"}, code=1)
    s.run("backfill", *fix, "--format", "json", code=1)
    applied = s.run("backfill", *fix, "--apply", "--yes", "--format", "json", code=0)
    s.run("backfill", "undo", json.loads(applied.stdout)["run_id"], "--db", sqlite_url, "--yes", env={"COLUMNS": "300"}, code=0)
    s.files(tmp_path / "r")
    s.add("history", (tmp_path / "h.sqlite").read_bytes().decode("utf-8", "replace"))

    secret = RAW_KEY[3:]
    windows = {secret[i : i + 8] for i in range(len(secret) - 7)}
    assert s.leaks(RAW_KEY, *windows) == []
    record = json.loads(outputs["json"])
    assert {f["entity_id"] for f in record["findings"] if f["scope"] == "key"} == {hashed}
    assert f"virtual_key_spend:{hashed}:gpt-4o:1d" in {f["counter_key"] for f in record["findings"]}
    assert record["notes"][-1].startswith("1 key stored as raw API keys (sk-…) rather than hashes: shown by SHA-256")
    assert hashed[:8] in outputs["table"]
    # what was written used the real key, so undo could put it back: the counter holds the ledger's value again
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.execute(select(budget_window_spend.c.spend)).scalar_one() == 0.5
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# Least privilege


READER_GRANTS = ("GRANT USAGE ON SCHEMA public TO {role}", "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
HISTORY_GRANTS = (  # docs/security.md: the report's run history in the same database, after `auditor db upgrade`
    "GRANT USAGE ON SCHEMA auditor TO {role}",
    "GRANT SELECT ON auditor.alembic_version TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON auditor.runs TO {role}",
    "GRANT SELECT, INSERT ON auditor.report_findings TO {role}",
    "GRANT SELECT, INSERT, DELETE ON auditor.report_checkpoints TO {role}",
)


@pytest.fixture
def pg_sample(pg_url) -> str:
    invoke("sample", "load", "--db", pg_url, code=0)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    return pg_url


@pytest.mark.postgres
def test_reads_run_in_a_read_only_transaction_even_for_a_superuser(pg_sample):
    target = DatabaseTarget(parse_database_url(pg_sample), "--db")
    with connect(target) as conn:
        assert conn.execute(text("SHOW transaction_read_only")).scalar() == "on"
        with pytest.raises(Exception, match="cannot execute UPDATE in a read-only transaction"):
            conn.execute(text('UPDATE "LiteLLM_VerificationToken" SET spend = 0'))


@pytest.mark.postgres
def test_a_select_only_role_runs_scan_and_report(pg_sample, make_role, tmp_path):
    role = make_role(*READER_GRANTS, *HISTORY_GRANTS)
    reader = as_role(pg_sample, role)
    scan = ["scan", "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json"]
    theirs = json.loads(invoke(*scan, "--db", reader, code=1).stdout)
    ours = json.loads(invoke(*scan, "--db", pg_sample, code=1).stdout)
    assert {**theirs, "source": None} == {**ours, "source": None} and theirs["findings"]
    out = tmp_path / "r"
    invoke("report", "--db", reader, "--config", SAMPLE_CONFIG, "--now", NOW, "--out", str(out), "--quiet", code=1)
    assert {p.name for p in out.iterdir()} == {f"{STEM}.{f}" for f in ("json", "md", "html")} | {
        f"latest.{f}" for f in ("json", "md", "html")
    }
    runs = json.loads(invoke("history", "--db", reader, "--format", "json", code=0).stdout)
    assert [(r["status"], r["findings"]) for r in runs] == [("completed", len(ours["findings"]))]
    engine = create_engine(make_url(reader).set(drivername="postgresql+psycopg"))
    try:
        with engine.connect() as conn:  # and it can write nothing of LiteLLM's, nor the backfill journal
            for statement in ('UPDATE "LiteLLM_VerificationToken" SET spend = 0', "DELETE FROM auditor.backfill_changes"):
                with pytest.raises(Exception, match="permission denied"):
                    conn.execute(text(statement))
                conn.rollback()
    finally:
        engine.dispose()


def _open_window_database(url: str) -> None:
    """A key capping gpt-4o at $100/day, its window opened 3 h ago by the wall clock, $3.50 in the ledger and
    $1.25 in LiteLLM_BudgetWindowSpend: backfill plans one row update."""
    start = (utc_now() - timedelta(hours=3)).replace(microsecond=0)
    rows = [
        {
            "request_id": f"req-{n}",
            "call_type": "acompletion",
            "api_key": "a" * 64,
            "spend": spend,
            "startTime": start + timedelta(hours=n, seconds=-1),
            "endTime": start + timedelta(hours=n),
            "model": "azure/prod-gpt4o",
            "model_group": "gpt-4o",
            "model_id": "dep-gpt4o",
            "status": "success",
            "metadata": {},
        }
        for n, spend in enumerate((1.0, 2.0, 0.5))
    ]
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": "a" * 64,
                    "key_alias": "alpha",
                    "spend": 3.5,
                    "total_spend": 3.5,
                    "model_max_budget": {"gpt-4o": {"budget_limit": 100.0, "time_period": "1d"}},
                }
            ],
        )
        conn.execute(spend_logs.insert(), rows)
        conn.execute(
            budget_window_spend.insert(),
            [
                {
                    "entity_type": "model_max_budget",
                    "entity_id": f"virtual_key_spend:{'a' * 64}:gpt-4o:1d",
                    "window_duration": "1d",
                    "window_start": start,
                    "spend": 1.25,
                    "updated_at": start,
                }
            ],
        )
    engine.dispose()


@pytest.mark.postgres
def test_a_role_missing_a_grant_fails_with_one_line_naming_the_privilege(pg_sample, make_role, tmp_path):
    no_spend_logs = as_role(pg_sample, make_role(*READER_GRANTS, 'REVOKE SELECT ON "LiteLLM_SpendLogs" FROM {role}'))
    result = invoke("scan", "--db", no_spend_logs, "--config", SAMPLE_CONFIG, "--now", NOW, "--format", "json", code=3)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"auditor: database error on {masked(no_spend_logs)}: permission denied for table LiteLLM_SpendLogs: "
        "the role needs SELECT on it (docs/security.md lists every grant)"
    ]
    no_history = as_role(pg_sample, make_role(*READER_GRANTS))
    result = invoke("report", "--db", no_history, "--config", SAMPLE_CONFIG, "--now", NOW, "--out", str(tmp_path / "r"), code=3)
    assert result.stderr.splitlines() == [
        f"auditor: run history in {masked(no_history)} failed: permission denied for schema auditor: the role needs USAGE on it "
        "(docs/security.md lists every grant): give --history-db URL, a database auditor may write its own tables to"
    ]
    assert list((tmp_path / "r").iterdir()) == []


@pytest.mark.postgres
def test_a_writer_without_the_update_grant_is_refused_and_nothing_changes(pg_url, make_role, config):
    _open_window_database(pg_url)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    writer = make_role(
        *READER_GRANTS,
        "GRANT USAGE ON SCHEMA auditor TO {role}",  # docs/backfill.md's grants but UPDATE
        "GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA auditor TO {role}",
        "GRANT USAGE ON ALL SEQUENCES IN SCHEMA auditor TO {role}",
    )
    url = as_role(pg_url, writer)
    result = invoke("backfill", "--db", url, "--config", config, "--apply", "--yes", "--format", "json", code=3)
    assert result.stdout == ""
    started, line = result.stderr.splitlines()  # the run id as the run starts, then the one-line error
    assert re.fullmatch(r"auditor: run [0-9a-f-]{36} started \(backfill, 1 changes\).*", started), started
    assert re.fullmatch(
        re.escape(f"auditor: database error on {masked(url)} during run ")
        + r"[0-9a-f-]{36}"
        + re.escape(
            ": permission denied for table LiteLLM_BudgetWindowSpend: the role needs UPDATE on it (docs/security.md lists "
            "every grant); its open transaction was rolled back"
        ),
        line,
    ), line
    engine = admin(pg_url)
    with engine.connect() as conn:
        assert conn.execute(select(budget_window_spend.c.spend)).scalar_one() == 1.25
        assert conn.execute(text("SELECT status FROM auditor.runs")).scalars().all() == ["failed"]
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# Injection


PAYLOADS = {  # stored as key aliases; what a terminal must show of each (controls gone, markup as typed)
    "sql": ('x\'; DROP TABLE "LiteLLM_SpendLogs"; --', 'x\'; DROP TABLE "LiteLLM_SpendLogs"; --'),
    "html": ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    "rich": ("[bold red]x[/]", "[bold red]x[/]"),
    "markdown": ("| --- | [c](javascript:alert(1))", "| --- | [c](javascript:alert(1))"),
    "ansi": ("\x1b[31mred\x1b[0m", "[31mred[0m"),
    "osc8": ("\x1b]8;;http://evil.example\x07click\x1b]8;;\x07", "]8;;http://evil.exampleclick]8;;"),
    "formula": ('=HYPERLINK("http://evil.example","x")', '=HYPERLINK("http://evil.example","x")'),
    "plus": ("+1", "+1"),
    "minus": ("-1", "-1"),
    "at": ("@SUM(A1:A2)", "@SUM(A1:A2)"),
    "bidi": ("abc\u202edcba", "abcdcba"),
    "newline": ("line1\nauditor: no findings", "line1 auditor: no findings"),
}
CSV_CELL = {  # what the CSV's entity_alias cell holds: formulas quoted (OWASP), controls gone
    "sql": PAYLOADS["sql"][0],
    "html": PAYLOADS["html"][0],
    "rich": PAYLOADS["rich"][0],
    "markdown": PAYLOADS["markdown"][0],
    "ansi": "[31mred[0m",
    "osc8": "]8;;http://evil.exampleclick]8;;",
    "formula": "'" + PAYLOADS["formula"][0],
    "plus": "'+1",
    "minus": "'-1",
    "at": "'@SUM(A1:A2)",
    "bidi": "abcdcba",
    "newline": "line1 auditor: no findings",
}
TEAM_ALIAS = "<img src=x onerror=alert(1)>\x1b[2J[/]"
EVIL_MODEL = "evil\x1b[31m<b>|model](javascript:x)"


def _token(n: int) -> str:
    return hashlib.sha256(f"key-{n}".encode()).hexdigest()


def _hostile_database(url: str) -> None:
    """One key per payload, each over its $1/day gpt-4o budget ($0.60 twice); a team with a hostile alias over
    its own budget; requests for a model name holding escapes (unresolved)."""
    keys, rows = [], []
    for n, (alias, _) in enumerate(PAYLOADS.values()):
        keys.append(
            {
                "token": _token(n),
                "key_alias": alias,
                "spend": 1.2,
                "total_spend": 1.2,
                "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}},
            }
        )
        for h in (1, 2):
            rows.append(
                {
                    "request_id": f"req-{n}-{h}",
                    "call_type": "acompletion",
                    "api_key": _token(n),
                    "spend": 0.6,
                    "startTime": T0 + timedelta(hours=h, seconds=-1),
                    "endTime": T0 + timedelta(hours=h),
                    "model": "azure/prod-gpt4o",
                    "model_group": "gpt-4o",
                    "model_id": "dep-gpt4o",
                    "status": "success",
                    "metadata": {},
                    "team_id": None,
                }
            )
    # the team's spend comes from a key of its own without per-model entries (a key entry named after the
    # model would replace the team's for the key's requests)
    keys.append({"token": _token(99), "key_alias": "team-key", "spend": 1.2, "total_spend": 1.2, "model_max_budget": {}})
    for h in (1, 2):
        rows.append(
            {
                "request_id": f"req-team-{h}",
                "call_type": "acompletion",
                "api_key": _token(99),
                "spend": 0.6,
                "startTime": T0 + timedelta(hours=h, seconds=-1),
                "endTime": T0 + timedelta(hours=h),
                "model": "azure/prod-gpt4o",
                "model_group": "gpt-4o",
                "model_id": "dep-gpt4o",
                "status": "success",
                "metadata": {},
                "team_id": "team-evil",
            }
        )
    rows.append(
        {
            "request_id": "req-evil-model",
            "call_type": "acompletion",
            "api_key": _token(1),
            "spend": 0.01,
            "startTime": T0 + timedelta(hours=5, seconds=-1),
            "endTime": T0 + timedelta(hours=5),
            "model": EVIL_MODEL,
            "model_group": "",
            "model_id": "",
            "status": "success",
            "metadata": {},
            "team_id": None,
        }
    )
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg") if url.startswith("postgres") else url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(verification_token.insert(), keys)
        conn.execute(
            team_table.insert(),
            [
                {
                    "team_id": "team-evil",
                    "team_alias": TEAM_ALIAS,
                    "spend": 1.2,
                    "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}},
                }
            ],
        )
        conn.execute(spend_logs.insert(), rows)
    engine.dispose()


def _row_count(url: str) -> int:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg") if url.startswith("postgres") else url)
    with engine.connect() as conn:
        count = conn.execute(text('SELECT count(*) FROM "LiteLLM_SpendLogs"')).scalar_one()
    engine.dispose()
    return count


@pytest.fixture
def hostile(any_url, config) -> str:
    _hostile_database(any_url)
    return any_url


def test_hostile_names_are_inert_in_every_output(hostile, config, tmp_path):
    now = (T0 + timedelta(days=1, hours=12)).isoformat() + "Z"
    common = ["--db", hostile, "--config", config, "--now", now, "--fail-on", "never"]

    table = invoke("scan", *common, env={"COLUMNS": "400"}, code=0).stdout
    assert CONTROL.search(table) is None
    for _, shown in PAYLOADS.values():
        assert f"key: {shown} (" in table  # the table's title for the key, printed as typed
    assert "team: <img src=x onerror=alert(1)>[2J[/] (team-evi…)" in table

    record = json.loads(invoke("scan", *common, "--format", "json", code=0).stdout)
    over = {f["entity_alias"] for f in record["findings"] if f["kind"] == "over_budget"}
    assert over == {alias for alias, _ in PAYLOADS.values()} | {TEAM_ALIAS}  # stored and reported losslessly
    assert [f["model"] for f in record["findings"] if f["kind"] == "unresolved_model"] == [EVIL_MODEL]

    rows = list(csv.DictReader(io.StringIO(invoke("scan", *common, "--format", "csv", code=0).stdout)))
    cells = {r["entity_id"]: r["entity_alias"] for r in rows if r["kind"] == "over_budget" and r["scope"] == "key"}
    assert cells == {_token(n): CSV_CELL[name] for n, name in enumerate(PAYLOADS)}
    assert all(not r[k].startswith("'") and float(r[k]) > 0 for r in rows for k in ("logged_spend",) if r[k])

    markdown = invoke("scan", *common, "--format", "markdown", code=0).stdout
    assert CONTROL.search(markdown) is None
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(record["findings"])
    assert all(len(re.split(r"(?<!\\)\|", line)) == 7 for line in lines)  # no cell broke out of its column
    assert re.search(r"(?<!\\)<", markdown) is None  # every < a Markdown renderer could take for HTML is escaped
    assert re.search(r"(?<!\\)\]\(", markdown) is None  # and no ]( can make a link
    assert "\\<script\\>alert\\(1\\)\\</script\\>" in markdown and "\\[c\\]\\(javascript:alert\\(1\\)\\)" in markdown

    out = tmp_path / "r"
    invoke("report", *common, "--out", str(out), "--history-db", f"sqlite:///{tmp_path / 'h.sqlite'}", code=0)
    html = (out / "latest.html").read_text()
    assert CONTROL.search(html) is None
    for raw in ("<script>alert(1)</script>", "<img src=x", "<b>|model"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;[2J[/]" in html
    md_file = (out / "latest.md").read_text()
    assert CONTROL.search(md_file) is None and "<script>" not in md_file


def test_sql_in_names_is_data_never_sql(hostile, config):
    before = _row_count(hostile)
    sql_alias = PAYLOADS["sql"][0]
    now = (T0 + timedelta(days=1, hours=12)).isoformat() + "Z"
    selected = json.loads(
        invoke("scan", "--db", hostile, "--config", config, "--now", now, "--format", "json", "--key", sql_alias, code=0).stdout
    )
    assert {f["entity_id"] for f in selected["findings"] if f["scope"] == "key"} == {_token(0)}
    story = invoke("explain", sql_alias, "--db", hostile, "--config", config, "--now", now, env={"COLUMNS": "300"}, code=0)
    assert story.stdout.startswith(f"key {sql_alias} ({_token(0)[:16]}…)")
    assert _row_count(hostile) == before == 2 * len(PAYLOADS) + 3


# Every SQL text auditor builds from Python values, with why each value is safe. A new f-string or
# concatenation handed to text()/exec_driver_sql() fails this test until it is parameterised or listed here.
REVIEWED_SQL = {
    ("auditor/ledger/db.py", 'f"SET LOCAL statement_timeout = {max(1, round(statement_timeout_s * 1000))}"'): "an integer",
    ("auditor/ledger/db.py", "f'ANALYZE \"{table}\"'"): "table names from auditor.ledger.schema (sample load)",
    ("auditor/repair/journal.py", 'f"CREATE SCHEMA {SCHEMA}"'): "a constant",
}


def test_all_sql_is_parameterised():
    built = set()
    for path in sorted((REPO / "auditor").rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in ("text", "exec_driver_sql", "execute", "literal_column", "execution_options"):
                continue
            first = node.args[0]
            if (
                isinstance(first, ast.JoinedStr)
                or (isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Add, ast.Mod)))
                or (isinstance(first, ast.Call) and isinstance(first.func, ast.Attribute) and first.func.attr == "format")
            ):
                built.add((str(path.relative_to(REPO)), ast.get_source_segment(source, first)))
    assert built == set(REVIEWED_SQL)


# ---------------------------------------------------------------------------------------------
# File modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_auditor_creates_is_owner_only(tmp_path, config):
    previous = os.umask(0o022)
    try:
        db = tmp_path / "litellm.sqlite"
        invoke("sample", "load", "--db", f"sqlite:///{db}", code=0)
        journal = tmp_path / "journal.sqlite"
        invoke("db", "upgrade", "--db", f"sqlite:///{journal}", code=0)
        out, history = tmp_path / "reports", tmp_path / "history.sqlite"
        invoke(
            "report",
            "--db",
            f"sqlite:///{db}",
            "--config",
            SAMPLE_CONFIG,
            "--now",
            NOW,
            "--out",
            str(out),
            "--history-db",
            f"sqlite:///{history}",
            "--quiet",
            code=1,
        )
        output = tmp_path / "scan.csv"
        invoke(
            "scan",
            "--db",
            f"sqlite:///{db}",
            "--config",
            SAMPLE_CONFIG,
            "--now",
            NOW,
            "--format",
            "csv",
            "--output",
            str(output),
            "--fail-on",
            "never",
            code=0,
        )
        cache = tmp_path / "cache"
        invoke(
            "report",
            "--now",
            NOW,
            "--out",
            str(tmp_path / "sample-reports"),
            "--quiet",
            env={"XDG_CACHE_HOME": str(cache)},
            code=1,
        )
        assert os.umask(0o022) == 0o022  # put back after each command: the test process is as it was
    finally:
        os.umask(previous)
    files = [
        db,
        journal,
        history,
        Path(f"{history}.lock"),
        output,
        *out.iterdir(),
        *(tmp_path / "sample-reports").iterdir(),
        *(p for p in cache.rglob("*") if p.is_file()),
    ]
    assert len([p for p in files if p.name.startswith(("auditor-report-", "latest."))]) == 12
    assert {p.name for p in cache.rglob("*") if p.is_file()} >= {"report-history.sqlite", "report-history.sqlite.lock"}
    assert {str(p): oct(_mode(p)) for p in files if _mode(p) != 0o600} == {}
    assert {str(d): oct(_mode(d)) for d in (out, tmp_path / "sample-reports", cache / "auditor") if _mode(d) != 0o700} == {}


def test_a_lone_surrogate_in_a_budget_name_prints_as_a_question_mark(sqlite_url, config):
    """JSON text in SQLite can hold "\\ud800", which json.loads turns into a lone surrogate no encoder can write."""
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": _token(1),
                    "key_alias": "odd",
                    "spend": 0.0,
                    "model_max_budget": {"x\ud800y": {"budget_limit": 1.0, "time_period": "1d"}},
                }
            ],
        )
    engine.dispose()
    common = ["--db", sqlite_url, "--config", config, "--now", "2026-11-22T00:00:00Z", "--fail-on", "never"]
    for fmt in ("table", "csv", "markdown"):
        shown = invoke("scan", *common, "--format", fmt, env={"COLUMNS": "400"}, code=0).stdout
        assert "x?y" in shown.replace("\\", ""), fmt
    record = json.loads(invoke("scan", *common, "--format", "json", code=0).stdout)
    assert "x\ud800y" in {f["budget_model"] for f in record["findings"]}  # JSON keeps it, escaped


def test_verbose_sql_logs_hold_no_raw_key(sqlite_url, config):
    """-vv logs every statement auditor runs: the text, never the values bound to it (a raw API key among them)."""
    _raw_key_database(sqlite_url)
    now = (T0 + timedelta(hours=3)).isoformat() + "Z"
    common = ["--db", sqlite_url, "--config", config, "--now", now]
    results = [invoke("-vv", "scan", *common, code=1), invoke("-vv", "explain", RAW_KEY, *common, code=0)]
    logged = "\n".join(result.stderr for result in results)
    assert " DEBUG auditor.sql: " in logged and 'FROM "LiteLLM_SpendLogs"' in logged
    assert RAW_KEY[3:11] not in logged and RAW_KEY[-8:] not in logged


@pytest.mark.postgres
def test_verbose_sql_logs_hold_no_password(pg_sample, make_role):
    role = make_role(*READER_GRANTS, password=PG_PASSWORD)
    result = invoke(
        "-vv",
        "scan",
        "--db",
        as_role(pg_sample, role, PG_PASSWORD),
        "--config",
        SAMPLE_CONFIG,
        "--now",
        NOW,
        "--format",
        "json",
        code=1,
    )
    assert " DEBUG auditor.sql: " in result.stderr and "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ" in result.stderr
    assert PG_PASSWORD not in result.stderr + result.stdout
