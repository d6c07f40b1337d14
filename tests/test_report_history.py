"""Report run history (auditor/reports/history.py): finding ids, new / still open / resolved across runs, the history
database (SQLite created on demand, PostgreSQL only after `auditor db upgrade`, a read-only report database
with --history-db), one run at a time (two real processes), and the webhook against local HTTP servers.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import create_engine, delete, text, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.cli.backfill import db_app
from auditor.cli.report import history_command, report_command
from auditor.ledger.schema import metadata, spend_logs, verification_token
from auditor.repair import journal
from auditor.reports import history

NOW = "2026-11-23T00:00:00Z"
STEM = "auditor-report-20261123T000000Z"
KEY = "a" * 64
CONFIG = (
    "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/prod-gpt4o\n"
    "    model_info:\n      id: dep-gpt4o\n"
)
SCRIPT = (
    "import typer\n"
    "from auditor.cli.report import report_command\n"
    "app = typer.Typer(pretty_exceptions_enable=False)\n"
    "app.command('report')(report_command)\n"
    "app.command('noop')(lambda: None)\n"
    "app(prog_name='auditor')\n"
)

runner = CliRunner()
APP = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
APP.command("report")(report_command)
APP.command("history")(history_command)  # as auditor/cli/main.py is to register it
APP.add_typer(db_app, name="db")


def invoke(*args: str, code: int | None = None):
    result = runner.invoke(APP, list(args))
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def expected_id(kind, scope, entity, budget_model, window_start, counter_source="", counter_key="", model="", group="") -> str:
    """The documented recipe (auditor/reports/history.py), computed here independently."""
    parts = [kind, scope, entity, budget_model, window_start, counter_source, counter_key, model, group]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


F20 = expected_id("over_budget", "key", KEY, "gpt-4o", "2026-11-20T09:00:00.000Z", group="gpt-4o")
F21 = expected_id("over_budget", "key", KEY, "gpt-4o", "2026-11-21T09:00:00.000Z", group="gpt-4o")


def day(n: int, count: int = 4) -> list[dict]:
    """`count` $0.50 requests an hour apart from 09:00 on 2026-11-<n>: over the $1 daily budget from the 3rd."""
    t0 = datetime(2026, 11, n, 9)
    return [
        {
            "request_id": f"req-{n}-{i}",
            "call_type": "acompletion",
            "api_key": KEY,
            "spend": 0.5,
            "startTime": t0 + timedelta(hours=i, seconds=-2),
            "endTime": t0 + timedelta(hours=i),
            "model": "azure/prod-gpt4o",
            "model_group": "gpt-4o",
            "model_id": "dep-gpt4o",
            "status": "success",
            "metadata": {},
        }
        for i in range(count)
    ]


class Ledger:
    """LiteLLM's tables with one key capped at $1 a day on gpt-4o; its scalar spend kept as LiteLLM keeps it."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(
                verification_token.insert(),
                [
                    {
                        "token": KEY,
                        "key_alias": "tidy",
                        "spend": 0.0,
                        "total_spend": 0.0,
                        "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}},
                    }
                ],
            )

    def add(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(spend_logs.insert(), rows)
            self._respend(conn)

    def drop_day(self, n: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(spend_logs).where(spend_logs.c.request_id.like(f"req-{n}-%")))
            self._respend(conn)

    def _respend(self, conn) -> None:
        total = conn.execute(text('SELECT COALESCE(SUM(spend), 0) FROM "LiteLLM_SpendLogs"')).scalar()
        conn.execute(update(verification_token).values(spend=total, total_spend=total))

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def report(url: str, config: str, out: Path, *extra: str, code: int = 1) -> dict:
    invoke("report", "--db", url, "--config", config, "--out", str(out), "--now", NOW, "--quiet", *extra, code=code)
    return json.loads((out / "latest.json").read_text())


def changes(record: dict) -> tuple:
    c = record["changes"]
    return c["previous_run"], c["new"], c["still_open"], c["resolved"], c["counts"]


# ---------------------------------------------------------------------------------------------
# Finding ids


def test_a_finding_keeps_its_id_while_its_amounts_change():
    base = {
        "kind": "over_budget",
        "severity": "warning",
        "scope": "key",
        "entity_id": KEY,
        "budget_model": "gpt-4o",
        "window_start": "2026-11-20T09:00:00.000Z",
        "model_group": "gpt-4o",
        "logged_spend": 1.2,
        "message": "a",
    }
    grown = {**base, "severity": "error", "logged_spend": 9.0, "message": "b", "entity_alias": "renamed"}
    assert history.finding_id(base) == history.finding_id(grown) == F20 == "7892b0fe45966fb3"
    other_window = {**base, "window_start": "2026-11-21T09:00:00.000Z"}
    assert history.finding_id(other_window) == F21 != F20
    drift = {"kind": "counter_drift", "scope": "key", "entity_id": KEY, "counter_source": "spend"}
    assert history.finding_ids([drift, {**drift, "counter_source": "total_spend"}, drift]) == [
        expected_id("counter_drift", "key", KEY, "", "", "spend"),
        expected_id("counter_drift", "key", KEY, "", "", "total_spend"),
        expected_id("counter_drift", "key", KEY, "", "", "spend") + "-2",
    ]


def test_sample_finding_ids_are_unique(tmp_path):
    out = tmp_path / "r"
    result = invoke("report", "--out", str(out), "--now", "2026-11-22T00:00:00Z", "--quiet")
    assert result.exit_code == 1, result.stderr
    record = json.loads((out / "latest.json").read_text())
    ids = record["changes"]["finding_ids"]
    assert len(ids) == len(record["findings"]) == len(set(ids)) and all("-" not in i for i in ids)


# ---------------------------------------------------------------------------------------------
# New, still open, resolved


def test_new_still_open_and_resolved_across_runs_on_sqlite(sqlite_url, config, tmp_path):
    ledger = Ledger(sqlite_url)
    try:
        ledger.add(day(20))
        first = report(sqlite_url, config, tmp_path / "r1")
        assert changes(first) == (None, [F20], [], [], {"new": 1, "still_open": 0, "resolved": 0, "new_errors": 1})
        assert first["changes"]["finding_ids"] == [F20] and first["changes"]["previous_as_of"] is None

        ledger.add(day(21))
        second = report(sqlite_url, config, tmp_path / "r2")
        assert changes(second) == (
            first["run"]["id"],
            [F21],
            [F20],
            [],
            {"new": 1, "still_open": 1, "resolved": 0, "new_errors": 1},
        )
        assert second["changes"]["previous_as_of"] == "2026-11-23T00:00:00.000Z"

        ledger.drop_day(21)
        third = report(sqlite_url, config, tmp_path / "r3")
        assert changes(third) == (
            second["run"]["id"],
            [],
            [F20],
            [F21],
            {"new": 0, "still_open": 1, "resolved": 1, "new_errors": 0},
        )
        (gone,) = third["changes"]["resolved_findings"]
        assert (gone["id"], gone["kind"], gone["entity_alias"], gone["window_start"]) == (
            F21,
            "over_budget",
            "tidy",
            "2026-11-21T09:00:00.000Z",
        )

        md = (tmp_path / "r3" / f"{STEM}.md").read_text()
        assert (
            f"Since run `{second['run']['id']}` (as of 2026-11-23T00:00:00.000Z): **0 new** (0 errors), 1 still open, 1 resolved.\n"
            f"\nResolved:\n\n- `{F21}` error over budget key tidy gpt-4o window 2026-11-21 09:00\n"
        ) in md
        page = (tmp_path / "r3" / f"{STEM}.html").read_text()
        assert '<h2 id="changes">Since the previous run</h2>' in page and f'<td class="mono nowrap">{F21}</td>' in page
        md2 = (tmp_path / "r2" / f"{STEM}.md").read_text()
        assert f"\nNew:\n\n- `{F21}` error over budget key tidy gpt-4o window 2026-11-21 09:00\n" in md2

        listed = json.loads(invoke("history", "--db", sqlite_url, "--format", "json", code=0).stdout)
        assert [
            (r["run_id"], r["status"], r["findings"], r["new"], r["still_open"], r["resolved"], r["previous_run"]) for r in listed
        ] == [
            (third["run"]["id"], "completed", 1, 0, 1, 1, second["run"]["id"]),
            (second["run"]["id"], "completed", 2, 1, 1, 0, first["run"]["id"]),
            (first["run"]["id"], "completed", 1, 1, 0, 0, None),
        ]
        assert [r["mode"] for r in listed] == ["full", "full", "full"]  # no --incremental asked for
        table = invoke("history", "--db", sqlite_url, code=0).stdout
        assert "first recorded run" in table and f"since {second['run']['id'][:8]}" in table
        assert table.count("│ full ") == 3
        with ledger.engine.connect() as conn:  # auditor's tables beside LiteLLM's, prefixed
            names = {
                r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'auditor%'"))
            }
            stored = conn.execute(
                text("SELECT run_id, finding_id, kind, severity FROM auditor_report_findings ORDER BY run_id, finding_id")
            ).all()
        assert names == {
            "auditor_runs",
            "auditor_backfill_changes",
            "auditor_report_findings",
            "auditor_report_checkpoints",
            "auditor_alembic_version",
        }
        assert sorted(stored) == sorted(
            [
                (first["run"]["id"], F20, "over_budget", "error"),
                (second["run"]["id"], F20, "over_budget", "error"),
                (second["run"]["id"], F21, "over_budget", "error"),
                (third["run"]["id"], F20, "over_budget", "error"),
            ]
        )
    finally:
        ledger.close()


def test_a_run_that_fails_is_recorded_failed_and_is_not_the_previous_run(sqlite_url, config, tmp_path):
    ledger = Ledger(sqlite_url)
    try:
        ledger.add(day(20))
        first = report(sqlite_url, config, tmp_path / "r1")
        failed = invoke(
            "report",
            "--db",
            sqlite_url,
            "--config",
            config,
            "--out",
            str(tmp_path / "r2"),
            "--now",
            NOW,
            "--timezone",
            "Mars/Olympus_Mons",
            "--quiet",
        )
        assert failed.exit_code == 2 and len(failed.stderr.strip().splitlines()) == 1
        third = report(sqlite_url, config, tmp_path / "r3")
        assert changes(third)[:2] == (first["run"]["id"], [])
        listed = json.loads(invoke("history", "--db", sqlite_url, "--format", "json", code=0).stdout)
        assert [r["status"] for r in listed] == ["completed", "failed", "completed"]
        assert "Mars/Olympus_Mons" in listed[1]["message"]
    finally:
        ledger.close()


# ---------------------------------------------------------------------------------------------
# PostgreSQL: tables from `auditor db upgrade`; a read-only report database


def test_postgresql_history_needs_db_upgrade_then_works(pg_url, config, tmp_path):
    ledger = Ledger(pg_url)
    try:
        ledger.add(day(20))
        missing = invoke("report", "--db", pg_url, "--config", config, "--out", str(tmp_path / "r0"), "--now", NOW, "--quiet")
        masked = make_url(pg_url).set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        assert (missing.exit_code, missing.stdout) == (2, "")
        assert missing.stderr.splitlines() == [
            f"auditor: auditor's tables for run history are missing in {masked}: run `auditor db upgrade --db URL` once, or give --history-db"
        ]
        assert not (tmp_path / "r0" / "latest.json").exists()
        invoke("db", "upgrade", "--db", pg_url, code=0)
        first = report(pg_url, config, tmp_path / "r1")
        ledger.add(day(21))
        second = report(pg_url, config, tmp_path / "r2")
        assert changes(second) == (
            first["run"]["id"],
            [F21],
            [F20],
            [],
            {"new": 1, "still_open": 1, "resolved": 0, "new_errors": 1},
        )
        with ledger.engine.connect() as conn:
            rows = conn.execute(text("SELECT kind, status FROM auditor.runs ORDER BY started_at")).all()
            assert rows == [("report", "completed"), ("report", "completed")]
            assert conn.execute(text("SELECT count(*) FROM auditor.report_findings")).scalar() == 3
    finally:
        ledger.close()


@pytest.fixture
def pg_ledger(pg_url):
    ledger = Ledger(pg_url)
    yield ledger
    ledger.close()


@pytest.fixture
def reader_role(pg_url, pg_ledger):
    """A login role that may only SELECT LiteLLM's tables (created first), as docs/cron.md suggests for the report."""
    role = f"auditor_reader_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    yield str(make_url(pg_url).set(username=role).render_as_string(hide_password=False))
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


def test_a_select_only_report_database_keeps_its_history_elsewhere(pg_url, pg_ledger, reader_role, config, tmp_path):
    ledger, reader = pg_ledger, reader_role
    ledger.add(day(20))
    history_url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    first = report(reader, config, tmp_path / "r1", "--history-db", history_url)
    second = report(reader, config, tmp_path / "r2", "--history-db", history_url)
    assert changes(second)[:3] == (first["run"]["id"], [], [F20])
    with ledger.engine.connect() as conn:  # nothing written to the report's database
        assert conn.execute(text("SELECT count(*) FROM pg_namespace WHERE nspname = 'auditor'")).scalar() == 0
    invoke("db", "upgrade", "--db", pg_url, code=0)  # an admin created the tables, but the role may not write them
    denied = invoke("report", "--db", reader, "--config", config, "--out", str(tmp_path / "r3"), "--now", NOW, "--quiet")
    assert denied.exit_code == 3 and len(denied.stderr.splitlines()) == 1
    assert "permission denied" in denied.stderr and "give --history-db URL" in denied.stderr
    listed = json.loads(invoke("history", "--history-db", history_url, "--format", "json", code=0).stdout)
    assert [r["run_id"] for r in listed] == [second["run"]["id"], first["run"]["id"]]


# ---------------------------------------------------------------------------------------------
# One run at a time: two real processes


def _start_paused(args: list[str], seconds: float) -> subprocess.Popen:
    env = {**os.environ, "AUDITOR_TEST_PAUSE_AFTER_LOCK": str(seconds)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "report", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = proc.stderr.readline()  # blocks until the first process holds the lock and has recorded itself
    assert line == "auditor: test hook: paused after taking the run lock\n", line
    return proc


def _second(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, "report", *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_a_second_concurrent_run_exits_3_naming_the_holder(dialect, pg_url, sqlite_url, config, tmp_path):
    url = pg_url if dialect == "postgresql" else sqlite_url
    ledger = Ledger(url)
    try:
        ledger.add(day(20))
        if dialect == "postgresql":
            invoke("db", "upgrade", "--db", url, code=0)
        args = ["--db", url, "--config", config, "--now", NOW, "--quiet"]
        first = _start_paused([*args, "--out", str(tmp_path / "r1")], 4)
        try:
            with ledger.engine.connect() as conn:
                (running,) = [(r.id, r.started_at) for r in journal.list_runs(conn) if r.status == "running"]
                run_id, started = running
            second = _second([*args, "--out", str(tmp_path / "r2")])
        finally:
            _, errors = first.communicate(timeout=60)
        started_iso = started.isoformat(timespec="milliseconds") + "Z"
        assert second.returncode == 3 and second.stdout == ""
        assert second.stderr.splitlines() == [
            f"auditor: another auditor report run holds the lock: run {run_id} started {started_iso} (pid {first.pid} on {socket.gethostname()})"
        ]
        assert not (tmp_path / "r2" / "latest.json").exists()
        assert first.returncode == 1, errors
        assert json.loads((tmp_path / "r1" / "latest.json").read_text())["run"]["id"] == run_id
        third = _second([*args, "--out", str(tmp_path / "r3")])  # the lock is free again
        assert third.returncode == 1, third.stderr
    finally:
        ledger.close()


# ---------------------------------------------------------------------------------------------
# The webhook


class Server:
    """A local HTTP server in a thread: `statuses` are answered in turn (the last one repeats)."""

    def __init__(self, statuses: list[int]):
        self.bodies: list[dict] = []
        self.statuses = list(statuses)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                server.bodies.append({"type": self.headers["Content-Type"], "json": json.loads(self.rfile.read(length))})
                status = server.statuses.pop(0) if len(server.statuses) > 1 else server.statuses[0]
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/services/T000/B000/SECRET"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    made: list[Server] = []

    def make(statuses: list[int]) -> Server:
        made.append(Server(statuses))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_the_webhook_posts_only_when_new_errors_appear(sqlite_url, config, tmp_path, server_factory):
    hook = server_factory([200])
    ledger = Ledger(sqlite_url)
    try:
        ledger.add(day(20))
        first = report(sqlite_url, config, tmp_path / "r1", "--webhook", hook.url)
        html = tmp_path / "r1" / f"{STEM}.html"
        assert hook.bodies == [
            {
                "type": "application/json",
                "json": {
                    "text": (
                        "auditor: 1 new error finding (first recorded run); 1 error open, $1.00 leaked past budgets\n"
                        "• error over budget key tidy gpt-4o window 2026-11-20 09:00\n"
                        f"report: {html}"
                    )
                },
            }
        ]
        report(sqlite_url, config, tmp_path / "r2", "--webhook", hook.url)  # nothing new: no POST
        assert len(hook.bodies) == 1
        ledger.add(day(21))
        third = report(sqlite_url, config, tmp_path / "r3", "--webhook", hook.url)
        assert third["totals"]["money_leaked"] == 2.5  # the scan's figure, as the text says it
        assert hook.bodies[1]["json"]["text"].splitlines()[:2] == [
            (
                f"auditor: 1 new error finding since run {json.loads((tmp_path / 'r2' / 'latest.json').read_text())['run']['id'][:8]}; "
                "2 errors open, $2.50 leaked past budgets"
            ),
            "• error over budget key tidy gpt-4o window 2026-11-21 09:00",
        ]
        assert first["changes"]["counts"]["new_errors"] == 1
    finally:
        ledger.close()


def test_the_webhook_text_makes_aliases_inert_for_slack():
    finding = {
        "severity": "error",
        "kind": "over_budget",
        "scope": "key",
        "entity_alias": "<!channel> & <https://x|y>\x1b[31m",
        "budget_model": "gpt-4o",
        "window_start": "2026-11-20T09:00:00.000Z",
    }
    record = {"findings": [finding], "totals": {"findings_by_severity": {"error": 1}, "money_leaked": 1.0}}
    changes = {"finding_ids": ["f1"], "new": ["f1"], "previous_run": None}
    text = history.webhook_text(record, changes, "/r/report.html")
    assert (
        text.splitlines()[1]
        == "• error over budget key &lt;!channel&gt; &amp; &lt;https://x|y&gt;[31m gpt-4o window 2026-11-20 09:00"
    )


def test_a_webhook_that_fails_once_is_retried(sqlite_url, config, tmp_path, server_factory):
    hook = server_factory([500, 200])
    ledger = Ledger(sqlite_url)
    try:
        ledger.add(day(20))
        result = invoke(
            "report",
            "--db",
            sqlite_url,
            "--config",
            config,
            "--out",
            str(tmp_path),
            "--now",
            NOW,
            "--quiet",
            "--webhook",
            hook.url,
        )
        assert result.exit_code == 1 and result.stderr == ""
        assert len(hook.bodies) == 2 and hook.bodies[0] == hook.bodies[1]
    finally:
        ledger.close()


def test_a_webhook_that_keeps_failing_is_one_line_and_keeps_the_reports(sqlite_url, config, tmp_path, server_factory):
    hook = server_factory([500])
    ledger = Ledger(sqlite_url)
    try:
        ledger.add(day(20))
        result = invoke(
            "report",
            "--db",
            sqlite_url,
            "--config",
            config,
            "--out",
            str(tmp_path / "r"),
            "--now",
            NOW,
            "--quiet",
            "--webhook",
            hook.url,
        )
        assert result.exit_code == 1  # as without --webhook
        host = f"http://127.0.0.1:{hook.httpd.server_port}"
        assert result.stderr.splitlines() == [
            f"auditor: webhook POST to {host} failed after 2 attempts: HTTP 500; the reports are written"
        ]
        assert "SECRET" not in result.stderr and len(hook.bodies) == 2
        assert {p.name for p in (tmp_path / "r").iterdir()} == {f"{STEM}.{f}" for f in ("json", "md", "html")} | {
            f"latest.{f}" for f in ("json", "md", "html")
        }
        listed = json.loads(invoke("history", "--db", sqlite_url, "--format", "json", code=0).stdout)
        assert [r["status"] for r in listed] == ["completed"]
    finally:
        ledger.close()


def test_a_webhook_that_never_answers_times_out_bounded():
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # connections queue in the backlog and nothing ever answers them
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        began = time.monotonic()
        problem = history.post_webhook(url, {"text": "x"}, timeout=0.5, retry_delay=0.1)
        elapsed = time.monotonic() - began
    finally:
        silent.close()
    assert problem == f"webhook POST to http://127.0.0.1:{url.split(':')[2].split('/')[0]} failed after 2 attempts: timed out"
    assert 1.0 <= elapsed < 3.0  # two 0.5 s attempts and the pause between them, no more


def test_the_cli_webhook_timeout_is_five_seconds():
    assert history.WEBHOOK_TIMEOUT_S == 5.0
    assert history.post_webhook.__kwdefaults__ == {"timeout": 5.0, "retries": 1, "retry_delay": 1.0}


def test_a_webhook_that_is_not_http_is_a_usage_error(tmp_path):
    result = invoke("report", "--out", str(tmp_path / "r"), "--webhook", "file:///etc/passwd")
    assert result.exit_code == 2 and result.stderr.splitlines() == ["auditor: --webhook takes an http:// or https:// URL"]
    assert not (tmp_path / "r").exists()
