"""`auditor backfill`: plan, apply, undo, journal, on real PostgreSQL and real Redis (db 12).

Two kinds of data. A small focused database whose window is open in real time (charges a few hours
ago, a Redis counter inflated 2x as LiteLLM #28247 does, a LiteLLM_BudgetWindowSpend row that lost a
flush), so every write really happens; and the sample deployment judged at a fixed --now, where
windows already over by the wall clock must be skipped and said so.

The sub-apps are not registered in auditor/cli/main.py yet: tests build their own Typer app with `scan`,
`backfill` and `db`, and the subprocess tests run the same app from a two-line script.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
import typer
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.audit.findings import COUNTER_DRIFT, ERROR, Finding, RowCounts, ScanResult, iso
from auditor.cli import main as cli
from auditor.cli.backfill import backfill_app, db_app
from auditor.clock import utc_now
from auditor.errors import InputError
from auditor.ledger.db import BACKFILL, DatabaseTarget, connect, engine_for, parse_database_url
from auditor.ledger.schema import budget_window_spend, metadata, spend_logs, verification_token
from auditor.litellm.config import load_config
from auditor.litellm.counters import CounterKey
from auditor.repair import apply as writing
from auditor.repair import layout as layouts
from auditor.repair import plan as planning
from auditor.repair import prepare as preparing
from auditor.sample import load_sample

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get(
    "AUDITOR_TEST_REDIS_BACKFILL", "redis://127.0.0.1:6379/12"
)  # our own db: conftest's redis_client flushes 13
SAMPLE_CONFIG = str(REPO / "sample_data" / "config.yaml")
SAMPLE_NOW = "2026-11-22T00:00:00Z"
SAMPLE_SNAPSHOT = datetime(2026, 11, 22, tzinfo=UTC)

A = "a" * 64
ENTRY = "gpt-4o"
SPEND_KEY = f"virtual_key_spend:{A}:{ENTRY}:1d"
START_KEY = f"virtual_key_budget_start_time:{A}:{ENTRY}:1d"
CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
    model_info:
      id: dep-gpt4o
"""

runner = CliRunner()
NO_WAIT = ("--flush-lag", "0", "--increment-lag", "0")  # these tests' proxy flushes nothing late


def make_app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False, rich_markup_mode=None)
    app.command("scan")(cli.scan)
    app.add_typer(backfill_app, name="backfill")
    app.add_typer(db_app, name="db")
    return app


APP = make_app()
SCRIPT = (
    "import typer\n"
    "from auditor.cli.backfill import backfill_app, db_app\n"
    "app = typer.Typer(pretty_exceptions_enable=False)\n"
    "app.add_typer(backfill_app, name='backfill')\n"
    "app.add_typer(db_app, name='db')\n"
    "app(prog_name='auditor')\n"
)


def invoke(*args: str, code: int | None = None):
    result = runner.invoke(APP, list(args))
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def as_json(result) -> dict:
    return json.loads(result.stdout)


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def r12():
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at 127.0.0.1:6379 is not reachable: {error}", pytrace=False)
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {error}")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


class Focused:
    """One key capping gpt-4o at $100 a day; its window opened 3 h ago; the ledger holds $3.50.

    Redis holds $7.00 (inflated 2x), LiteLLM_BudgetWindowSpend $1.25 (a lost flush).
    """

    ledger = 3.5

    def __init__(self, url: str, client, config: str) -> None:
        self.url, self.redis, self.config = url, client, config
        self.w0 = (utc_now() - timedelta(hours=3)).replace(microsecond=0)
        self.end = self.w0 + timedelta(days=1)
        self.engine = create_engine(url)
        rows = [
            self.charge(self.w0, 1.0),
            self.charge(self.w0 + timedelta(hours=1), 2.0),
            self.charge(self.w0 + timedelta(hours=2), 0.5),
        ]
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(
                verification_token.insert(),
                [
                    {
                        "token": A,
                        "key_alias": "alpha",
                        "spend": self.ledger,
                        "total_spend": self.ledger,
                        "model_max_budget": {ENTRY: {"budget_limit": 100.0, "time_period": "1d"}},
                    }
                ],
            )
            conn.execute(spend_logs.insert(), rows)
            conn.execute(
                budget_window_spend.insert(),
                [
                    {
                        "entity_type": "model_max_budget",
                        "entity_id": SPEND_KEY,
                        "window_duration": "1d",
                        "window_start": self.w0,
                        "spend": 1.25,
                        "updated_at": self.w0,
                    }
                ],
            )
        if client is not None:
            client.set(SPEND_KEY, "7.0", pxat=int(epoch(self.end) * 1000))
            client.set(START_KEY, repr(epoch(self.w0)), pxat=int(epoch(self.end) * 1000))

    def charge(self, end: datetime, spend: float) -> dict:
        return {
            "request_id": f"req-{uuid.uuid4().hex[:12]}",
            "call_type": "acompletion",
            "api_key": A,
            "spend": spend,
            "startTime": end - timedelta(seconds=1),
            "endTime": end,
            "model": "azure/prod-gpt4o",
            "model_group": ENTRY,
            "model_id": "dep-gpt4o",
            "status": "success",
            "metadata": {},
        }

    def proxy_charges(self, spend: float) -> None:
        """What LiteLLM does on a success: a spend-log row (its flush) and a counter increment."""
        with self.engine.begin() as conn:
            conn.execute(spend_logs.insert(), [self.charge(utc_now() - timedelta(seconds=1), spend)])
        if self.redis is not None:
            self.redis.incrbyfloat(SPEND_KEY, spend)

    def row(self) -> tuple[datetime, float] | None:
        with self.engine.connect() as conn:
            found = conn.execute(
                select(budget_window_spend.c.window_start, budget_window_spend.c.spend).where(
                    budget_window_spend.c.entity_id == SPEND_KEY
                )
            ).first()
        return None if found is None else (found[0], found[1])

    def args(self, *extra: str) -> list[str]:
        return ["--db", self.url, "--config", self.config, *(["--redis", REDIS_URL] if self.redis is not None else []), *extra]

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def focused(pg_url, r12, config):
    data = Focused(pg_url, r12, config)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    yield data
    data.close()


def counter_findings(record: dict, entity: str | None = None, sources=("redis", "budget_window_spend")) -> list[tuple]:
    """The per-model counter findings backfill repairs (scalar spend and rollups are other findings)."""
    return sorted(
        (f["kind"], f["counter_source"], f["counter_key"], round(f["cached_spend"] or 0.0, 9))
        for f in record["findings"]
        if f["kind"] in ("counter_drift", "miskeyed_counter")
        and f["counter_source"] in sources
        and (entity is None or f["entity_id"] == entity)
    )


def redis_state(client) -> dict:
    return {key: (client.get(key), client.pttl(key)) for key in sorted(client.scan_iter("*"))}


# ---------------------------------------------------------------------------------------------
# Focused database: the round trip, idempotence, dry run


def test_round_trip_scan_apply_scan_undo_scan(focused):
    scan = ["scan", *focused.args("--format", "json", "--fail-on", "error")]
    before = invoke(*scan, code=1)
    drift = counter_findings(as_json(before), A)
    assert drift == sorted(
        [
            ("counter_drift", "budget_window_spend", SPEND_KEY, 1.25),
            ("counter_drift", "redis", SPEND_KEY, 7.0),
        ]
    )

    applied = as_json(invoke("backfill", *focused.args("--apply", "--yes", *NO_WAIT, "--format", "json"), code=0))
    run_id = applied["run_id"]
    assert applied["run"]["counts"] == {"applied": 2}
    assert {w["target"] for w in applied["writes"]} == {"redis", "budget_window_spend"}
    assert focused.redis.get(SPEND_KEY) == repr(3.5)
    assert float(focused.redis.get(START_KEY)) == pytest.approx(epoch(focused.w0))
    remaining_ms = (epoch(focused.end) - time.time()) * 1000
    for key in (SPEND_KEY, START_KEY):  # TTL = the window's remaining time, by the wall clock
        assert abs(focused.redis.pttl(key) - remaining_ms) < 5000
    assert focused.row() == (focused.w0, 3.5)

    after = invoke(*scan, code=0)  # nothing at --fail-on error any more
    assert counter_findings(as_json(after), A) == []

    again = invoke("backfill", *focused.args("--apply", "--yes", *NO_WAIT), code=0)  # idempotent, and says so
    assert "nothing to repair: nothing written, no run journaled" in again.stdout
    history = as_json(invoke("backfill", "history", "--db", focused.url, "--format", "json", code=0))
    assert [(r["run_id"], r["kind"], r["status"], r["changes"]) for r in history] == [
        (run_id, "backfill", "completed", {"applied": 2})
    ]

    undone = as_json(
        invoke("backfill", "undo", run_id, "--db", focused.url, "--redis", REDIS_URL, "--yes", "--format", "json", code=0)
    )
    assert undone["counts"] == {"restored": 2} and undone["parent_run_id"] == run_id
    assert counter_findings(as_json(invoke(*scan, code=1)), A) == drift  # the same drift as at first
    assert focused.redis.get(SPEND_KEY) == "7.0" and focused.row() == (focused.w0, 1.25)

    twice = as_json(
        invoke("backfill", "undo", run_id[:8], "--db", focused.url, "--redis", REDIS_URL, "--yes", "--format", "json", code=0)
    )
    assert twice["counts"] == {"unchanged": 2}


def test_the_library_plans_and_applies_as_the_cli_does(focused):
    """auditor.plan_backfill is `auditor backfill`'s plan, its JSON the same but for the TTLs; README's example applies it."""
    import auditor
    from test_api import readme_examples

    now = iso(utc_now())

    def timeless(record: dict) -> str:  # TTLs run on the wall clock, a second apart between the two plans
        text = json.dumps({**record, "wall_clock": None})
        return re.sub(r'"ttl_seconds": \d+', "", re.sub(r"TTL [0-9d :]+", "", text))

    cli_plan = as_json(invoke("backfill", *focused.args("--format", "json", "--now", now), code=1))
    planned = auditor.plan_backfill(focused.url, config=focused.config, redis=REDIS_URL, now=now, flush_lag=0, increment_lag=0)
    assert timeless(planned.plan.as_record()) == timeless(cli_plan)
    assert len(planned.plan.actionable) == 2
    with pytest.raises(InputError, match="the embedded sample is read-only"):
        auditor.plan_backfill(None, writable=True)

    example = readme_examples()[1].replace("postgresql://auditor_writer@db.internal/litellm", focused.url)
    example = example.replace(
        'redis="redis://cache:6379/0"', f"redis={REDIS_URL!r}, config={focused.config!r}, flush_lag=0, increment_lag=0"
    )
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        exec("import auditor\n" + example, {})
    count, run = said.getvalue().splitlines()
    assert count == "2 writes planned" and run.endswith(" {'applied': 2}")
    assert focused.redis.get(SPEND_KEY) == repr(3.5) and focused.row() == (focused.w0, 3.5)
    history = as_json(invoke("backfill", "history", "--db", focused.url, "--format", "json", code=0))
    assert [(r["run_id"], r["options"]["flush_lag"], r["options"]["targets"]) for r in history] == [
        (run.split()[0], 0, ["counters"])
    ]


def test_the_library_lists_and_undoes_runs_as_the_cli_does(focused):
    """auditor.backfill_runs is `auditor backfill history`'s JSON; plan_undo + undo_backfill is `auditor backfill undo`."""
    import auditor

    def same(record) -> str:  # what differs between two undo runs of the same thing: their own id
        return json.dumps({**record, "run_id": None}, sort_keys=True)

    applied = as_json(invoke("backfill", *focused.args("--apply", "--yes", *NO_WAIT, "--format", "json"), code=0))
    run_id = applied["run_id"]
    cli_history = as_json(invoke("backfill", "history", "--db", focused.url, "--format", "json", code=0))
    assert json.loads(json.dumps([j.as_record() for j in auditor.backfill_runs(focused.url)])) == cli_history
    with pytest.raises(InputError, match="pass --redis to undo it"):
        auditor.plan_undo(run_id, db=focused.url)
    with pytest.raises(InputError, match="the embedded sample is read-only"):
        auditor.backfill_runs()

    planned = auditor.plan_undo(run_id[:8], db=focused.url, redis=REDIS_URL)
    assert planned.run.id == run_id and len(planned.changes) == 2 and focused.redis.get(SPEND_KEY) == repr(3.5)
    undone = auditor.undo_backfill(planned)
    assert undone.counts() == {"restored": 2} and undone.parent_run_id == run_id
    assert focused.redis.get(SPEND_KEY) == "7.0" and focused.row() == (focused.w0, 1.25)
    cli_undo = as_json(
        invoke("backfill", "undo", run_id, "--db", focused.url, "--redis", REDIS_URL, "--yes", "--format", "json", code=0)
    )
    again = auditor.undo_backfill(run_id, db=focused.url, redis=REDIS_URL)
    assert same(json.loads(json.dumps(again.as_record()))) == same(cli_undo) and again.counts() == {"unchanged": 2}
    cli_history = as_json(invoke("backfill", "history", "--db", focused.url, "--limit", "2", "--format", "json", code=0))
    runs = auditor.backfill_runs(focused.url, limit=2)
    assert json.loads(json.dumps([j.as_record() for j in runs])) == cli_history and [j.run.id for j in runs][0] == again.run_id
    assert len(auditor.backfill_runs(focused.url, limit=0)) == 4


def test_dry_run_writes_nothing_and_exits_like_scan(focused):
    redis_before = redis_state(focused.redis)
    with focused.engine.connect() as conn:
        rows_before = conn.execute(text('SELECT * FROM "LiteLLM_BudgetWindowSpend" ORDER BY entity_id')).all()
        runs_before = conn.execute(text("SELECT count(*) FROM auditor.runs")).scalar()

    plan = invoke("backfill", *focused.args("--format", "json"), code=1)
    table = invoke("backfill", *focused.args(), code=1)

    record = as_json(plan)
    assert record["summary"] == {"writes": 2, "skipped": 0, "by_target": {"budget_window_spend": 1, "redis": 1}}
    assert record["layout"]["name"] == "entry"
    redis_write = next(w for w in record["writes"] if w["target"] == "redis")
    assert redis_write["keys"] == [SPEND_KEY, START_KEY]
    assert (redis_write["old_value"], redis_write["new_value"]) == (7.0, 3.5)
    assert "Dry run: nothing written" in table.stdout and "$7.0000 → $3.5000" in table.stdout
    assert redis_state(focused.redis) == {k: (v, pytest.approx(ttl, abs=3000)) for k, (v, ttl) in redis_before.items()}
    with focused.engine.connect() as conn:
        assert conn.execute(text('SELECT * FROM "LiteLLM_BudgetWindowSpend" ORDER BY entity_id')).all() == rows_before
        assert conn.execute(text("SELECT count(*) FROM auditor.runs")).scalar() == runs_before == 0


def test_apply_without_the_journal_tables_says_how_to_create_them(pg_url, r12, config):
    data = Focused(pg_url, r12, config)
    try:
        result = invoke("backfill", *data.args("--apply", "--yes", *NO_WAIT), code=3)
        assert "auditor db upgrade" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert r12.get(SPEND_KEY) == "7.0" and data.row() == (data.w0, 1.25)
    finally:
        data.close()


def test_declined_confirmation_writes_nothing(focused):
    result = runner.invoke(APP, ["backfill", *focused.args("--apply", *NO_WAIT)], input="n\n")
    assert result.exit_code == 1 and "nothing written" in result.stderr
    assert focused.redis.get(SPEND_KEY) == "7.0" and focused.row() == (focused.w0, 1.25)


# ---------------------------------------------------------------------------------------------
# A live proxy writing meanwhile


def _prepared(data: Focused, targets=("counters",)):
    from auditor.audit.scan import ScanOptions
    from auditor.ledger.capabilities import inspect_database

    target = DatabaseTarget(parse_database_url(data.url), "--db")
    with connect(target) as conn:
        prepared = preparing.prepare(
            conn,
            inspect_database(conn),
            load_config(data.config),
            ScanOptions(now=utc_now(), settle=timedelta(0)),
            data.redis,
            litellm_version=None,
            targets=list(targets),
            remove_miskeyed=False,
            wall_now=utc_now(),
        )
    engine = engine_for(target, BACKFILL)
    env = writing.WriteEnv(engine=engine, redis=data.redis, ledger=prepared.ledger, masked_db=target.masked, clock=utc_now)
    return prepared, env


def test_increments_between_plan_and_write_are_not_lost(focused):
    prepared, env = _prepared(focused)
    assert [w.new_value for w in prepared.plan.actionable] == [3.5, 3.5]
    # The proxy serves a $0.75 request after the plan was read: a spend-log row and INCRBYFLOAT on
    # Redis; its LiteLLM_BudgetWindowSpend flush adds the same to the row.
    focused.proxy_charges(0.75)
    with focused.engine.begin() as conn:
        conn.execute(text('UPDATE "LiteLLM_BudgetWindowSpend" SET spend = spend + 0.75 WHERE entity_id = :k'), {"k": SPEND_KEY})
    try:
        report = writing.apply(prepared.plan, env, {})
    finally:
        env.engine.dispose()
    assert sorted(o.state for o in report.outcomes) == ["recomputed", "recomputed"]
    # CAS failed on Redis (7.75 is not the 7.0 it read), the row lock saw 2.00, not 1.25: both were
    # re-summed from the ledger, which now includes the new row.
    assert float(focused.redis.get(SPEND_KEY)) == pytest.approx(4.25, abs=1e-9)
    assert focused.row()[1] == pytest.approx(4.25, abs=1e-9)
    assert counter_findings(as_json(invoke("scan", *focused.args("--format", "json", "--settle", "0"), code=0)), A) == []
    # Undo puts back what the write really replaced (the proxy's increment included), not the plan's stale view.
    invoke("backfill", "undo", report.run_id, "--db", focused.url, "--redis", REDIS_URL, "--yes", code=0)
    assert focused.redis.get(SPEND_KEY) == "7.75" and focused.row()[1] == pytest.approx(2.0)


def test_scalar_spend_target_recomputes_under_the_lock(focused):
    with focused.engine.begin() as conn:
        conn.execute(verification_token.update().where(verification_token.c.token == A).values(spend=2.0))
    dry = as_json(invoke("backfill", *focused.args("--format", "json")))
    assert any("--target spend" in note for note in dry["notes"])
    prepared, env = _prepared(focused, targets=("spend",))
    (write,) = prepared.plan.actionable
    assert (write.target, write.key, write.old_value, write.new_value) == ("spend", "LiteLLM_VerificationToken.spend", 2.0, 3.5)
    focused.proxy_charges(0.75)  # LiteLLM's batch writer then adds the increment to the key's spend
    with focused.engine.begin() as conn:
        conn.execute(text('UPDATE "LiteLLM_VerificationToken" SET spend = spend + 0.75 WHERE token = :t'), {"t": A})
    try:
        report = writing.apply(prepared.plan, env, {})
    finally:
        env.engine.dispose()
    assert [o.state for o in report.outcomes] == ["recomputed"]
    with focused.engine.connect() as conn:
        spend = lambda: conn.execute(select(verification_token.c.spend).where(verification_token.c.token == A)).scalar_one()  # noqa: E731
        assert spend() == pytest.approx(4.25)
        conn.rollback()
        invoke("backfill", "undo", report.run_id, "--db", focused.url, "--yes", code=0)
        assert spend() == pytest.approx(2.75)


def test_a_flush_blocked_by_the_row_lock_lands_on_top(focused):
    """The proxy's flush waits for the backfill's row lock, then adds its increment to the repaired value."""
    prepared, env = _prepared(focused)
    flushed = threading.Event()

    def proxy_flush():
        with create_engine(focused.url).begin() as conn:
            conn.execute(
                text('UPDATE "LiteLLM_BudgetWindowSpend" SET spend = spend + 0.75 WHERE entity_id = :k'), {"k": SPEND_KEY}
            )
        flushed.set()

    writer = threading.Thread(target=proxy_flush)

    def hook(what: str) -> None:
        if what.startswith("budget_window_spend"):  # the row is written and locked, not yet committed
            focused.proxy_charges(0.75)
            writer.start()
            assert not flushed.wait(0.5), "the proxy's UPDATE must wait for the backfill's row lock"

    env.hook = hook
    try:
        writing.apply(prepared.plan, env, {})
    finally:
        env.engine.dispose()
    writer.join(10)
    assert flushed.is_set()
    assert focused.row()[1] == pytest.approx(4.25, abs=1e-9)  # 3.50 repaired + 0.75 flushed after the lock


# ---------------------------------------------------------------------------------------------
# Crashes and lost connections


def _spawn(data: Focused, pause: float) -> subprocess.Popen:
    env = {**os.environ, core_pause_env(): str(pause), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "backfill", *data.args("--apply", "--yes", *NO_WAIT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def core_pause_env() -> str:
    from auditor.cli.backfill import PAUSE_HOOK_ENV

    return PAUSE_HOOK_ENV


def _wait_for(proc: subprocess.Popen, marker: str, timeout: float = 30) -> list[str]:
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if marker in line:
                return lines
    finally:
        watchdog.cancel()
    raise AssertionError(f"the backfill never paused at {marker!r}: {''.join(lines)}")


def test_killed_mid_run_leaves_the_database_as_before_and_the_run_incomplete(focused):
    proc = _spawn(focused, pause=60)
    _wait_for(proc, "paused after budget_window_spend")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert focused.row() == (focused.w0, 1.25)  # the row's transaction died with the process
    assert focused.redis.get(SPEND_KEY) == "7.0"
    history = as_json(invoke("backfill", "history", "--db", focused.url, "--format", "json", code=0))
    assert [(r["status"], r["finished_at"], r["changes"]) for r in history] == [("incomplete", None, {})]
    assert "incomplete" in invoke("backfill", "history", "--db", focused.url, code=0).stdout


def test_connection_lost_mid_run_rolls_back_with_one_line_and_exit_3(focused):
    proc = _spawn(focused, pause=2)
    _wait_for(proc, "paused after budget_window_spend")
    database = make_url(focused.url).database
    with create_engine(focused.url).connect() as conn:
        killed = conn.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = :db AND application_name = 'auditor backfill' AND pid <> pg_backend_pid()"
            ),
            {"db": database},
        ).scalar()
    assert killed == 1
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3
    lines = [line for line in stderr.splitlines() if "test hook" not in line]
    assert len(lines) == 1 and lines[0].startswith("auditor: lost the database connection to postgresql+psycopg://postgres@")
    assert "rolled back" in lines[0] and "Traceback" not in stderr
    assert focused.row() == (focused.w0, 1.25) and focused.redis.get(SPEND_KEY) == "7.0"
    history = as_json(invoke("backfill", "history", "--db", focused.url, "--format", "json", code=0))
    assert [(r["status"], r["changes"]) for r in history] == [("failed", {})]


# ---------------------------------------------------------------------------------------------
# Least privilege


@pytest.fixture
def writer_role(pg_server, pg_url):
    """A login role with only what docs/backfill.md grants (no INSERT/DELETE: the focused plan updates rows)."""
    role = f"auditor_writer_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        conn.execute(text(f'GRANT UPDATE (window_start, spend, updated_at) ON "LiteLLM_BudgetWindowSpend" TO {role}'))
        conn.execute(text("CREATE SCHEMA auditor"))
        conn.execute(text(f"GRANT USAGE, CREATE ON SCHEMA auditor TO {role}"))
    yield str(make_url(pg_url).set(username=role).render_as_string(hide_password=False)), role
    with admin.connect() as conn:
        conn.execute(text(f"DROP OWNED BY {role}"))
        conn.execute(text(f"DROP ROLE {role}"))
    admin.dispose()


@pytest.fixture
def focused_tables_only(pg_url, r12, config):
    data = Focused(pg_url, r12, config)
    yield data
    data.close()


def test_a_role_with_only_the_documented_grants_can_upgrade_apply_and_undo(focused_tables_only, writer_role):
    data = focused_tables_only
    url, role = writer_role
    invoke("db", "upgrade", "--db", url, code=0)
    as_role = ["--db", url, "--config", data.config, "--redis", REDIS_URL]
    applied = as_json(invoke("backfill", *as_role, "--apply", "--yes", *NO_WAIT, "--format", "json", code=0))
    assert applied["run"]["counts"] == {"applied": 2} and data.row() == (data.w0, 3.5)
    invoke("backfill", "undo", applied["run_id"], "--db", url, "--redis", REDIS_URL, "--yes", code=0)
    assert data.row() == (data.w0, 1.25)
    history = as_json(invoke("backfill", "history", "--db", url, "--format", "json", code=0))
    assert {r["database_user"] for r in history} == {role}
    # the grant is column-level: nothing else in LiteLLM's tables
    with create_engine(url).connect() as conn, pytest.raises(Exception, match="permission denied"):
        conn.execute(text('UPDATE "LiteLLM_BudgetWindowSpend" SET entity_type = entity_type'))


# ---------------------------------------------------------------------------------------------
# SQLite: the journal in auditor_* tables, no Redis


def test_sqlite_journal_tables_are_prefixed_and_the_round_trip_works(sqlite_url, config):
    data = Focused(sqlite_url, None, config)
    try:
        invoke("db", "upgrade", "--db", sqlite_url, code=0)
        with data.engine.connect() as conn:
            names = {
                r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'auditor%'"))
            }
        assert names == {
            "auditor_runs",
            "auditor_backfill_changes",
            "auditor_report_findings",
            "auditor_report_checkpoints",
            "auditor_alembic_version",
        }
        applied = as_json(invoke("backfill", *data.args("--apply", "--yes", *NO_WAIT, "--format", "json"), code=0))
        assert [w["target"] for w in applied["writes"]] == ["budget_window_spend"] and data.row()[1] == 3.5
        invoke("backfill", "undo", applied["run_id"], "--db", sqlite_url, "--yes", code=0)
        assert data.row()[1] == 1.25
    finally:
        data.close()


# ---------------------------------------------------------------------------------------------
# The sample deployment at a fixed --now


def _load_sample_redis(client) -> None:
    """The sample's Redis counters with TTLs rewritten for the wall clock: a window still open really expires at
    its end; one already over gets 10 minutes so that scans at --now still see it during the test."""
    now = time.time()
    for key, spec in json.loads((REPO / "sample_data" / "redis.json").read_text()).items():
        if spec["ttl_seconds"] is None:
            client.set(key, spec["value"])
            continue
        left = SAMPLE_SNAPSHOT.timestamp() + spec["ttl_seconds"] - now
        client.set(key, spec["value"], px=int(left * 1000) if left > 0 else 600_000)


@pytest.fixture
def sample(pg_url, r12):
    with connect(DatabaseTarget(parse_database_url(pg_url), "test"), read_only=False) as conn:
        load_sample(conn)
    _load_sample_redis(r12)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    return pg_url


SAMPLE_KEYS = (
    "--key",
    "opus-tester",
    "--key",
    "premium-user",
    "--key",
    "research-agent",
    "--key",
    "legacy-batch",
    "--key",
    "typo-key",
)


def test_sample_round_trip_at_a_fixed_now(sample, r12):
    common = ["--db", sample, "--redis", REDIS_URL, "--config", SAMPLE_CONFIG, "--now", SAMPLE_NOW, *SAMPLE_KEYS]
    scan = ["scan", *common, "--format", "json", "--fail-on", "never"]
    first = as_json(invoke(*scan, code=0))
    drift = counter_findings(first)
    legacy = [f for f in first["findings"] if f["counter_source"] == "model_spend"]
    assert legacy and ("miskeyed_counter", "redis") in {(k, s) for k, s, _, _ in drift}

    args = [*common, "--target", "counters", "--target", "model_spend", "--remove-miskeyed", "--format", "json"]
    planned = as_json(invoke("backfill", *args))
    wall = utc_now()
    for write in planned["writes"]:  # written: windows the live proxy still reads
        if write["window_end"]:
            assert datetime.fromisoformat(write["window_end"].rstrip("Z")) > wall
    for skip in planned["skipped"]:  # not written, and why
        if "by the wall clock" in skip["why"]:
            assert datetime.fromisoformat(skip["window_end"].rstrip("Z")) <= wall
    reasons = {s["key"]: s["why"] for s in planned["skipped"]}
    research = next(k for k in reasons if k.endswith(":claude-opus-4-6:1d") and "c53fc536" in k)
    assert "ended at 2026-11-22T07:24:35.462 by the wall clock" in reasons[research]
    removed = {(w["target"], w["key"].split(":", 2)[2]) for w in planned["writes"] if w["action"] == "remove"}
    assert removed == {("redis", "vertex_ai/claude-opus-4-6@default:1d"), ("budget_window_spend", "claude-opus-4-6:1d")}
    assert any(w["target"] == "model_spend" for w in planned["writes"])

    applied = as_json(invoke("backfill", *args, "--apply", "--yes", *NO_WAIT, code=0))
    written = {w["key"] for w in applied["writes"]}
    second = as_json(invoke(*scan, code=0))
    assert not [f for f in counter_findings(second) if f[2] in written]  # every counter written is clean now
    assert not [f for f in second["findings"] if f["counter_source"] == "model_spend"]
    fossil = _model_spend(sample, "legacy-batch")  # canonical group -> lifetime ledger sum (README scenario 4: $8.8782)
    assert fossil == {"gpt-4o-mini": pytest.approx(8.87817735, abs=1e-9)}

    invoke("backfill", "undo", applied["run_id"], "--db", sample, "--redis", REDIS_URL, "--yes", code=0)
    third = as_json(invoke(*scan, code=0))
    assert counter_findings(third) == drift  # the same drift as at first
    assert [f["cached_spend"] for f in third["findings"] if f["counter_source"] == "model_spend"] == [
        f["cached_spend"] for f in legacy
    ]


def _model_spend(url: str, alias: str) -> dict:
    with create_engine(url).connect() as conn:
        return conn.execute(select(verification_token.c.model_spend).where(verification_token.c.key_alias == alias)).scalar_one()


# ---------------------------------------------------------------------------------------------
# The plan alone (pure)


def _finding(**overrides) -> Finding:
    start = datetime(2026, 11, 27, 4, 0, 0)
    values = dict(
        kind=COUNTER_DRIFT,
        severity=ERROR,
        message="",
        scope="key",
        entity_id=A,
        entity_alias="alpha",
        budget_model=ENTRY,
        time_period="1d",
        window_start=start,
        window_end=start + timedelta(days=1),
        logged_spend=3.5,
        cached_spend=0.0,
        counter_source="redis",
        counter_key=SPEND_KEY,
    )
    values.update(overrides)
    return Finding(**values)


def _result(*findings: Finding, now=datetime(2026, 11, 27, 7, 0)) -> ScanResult:
    return ScanResult(as_of=now, source={}, rows=RowCounts(), spend=[], findings=list(findings))


def test_alias_layout_writes_the_alias_counter_and_one_start_key_per_entity():
    layout = layouts.layout_for("1.90", None)
    assert (layout.name, layout.reads_budget_window_spend) == (layouts.ALIAS_LAYOUT, False)
    result = _result(_finding(), _finding(counter_source="budget_window_spend", cached_spend=1.0))
    planned = planning.plan(
        result, planning.Snapshot(), planning.PlanOptions(wall_now=datetime(2026, 11, 27, 7, 0), layout=layout)
    )
    sets = sorted((w.target, w.keys) for w in planned.actionable)
    assert sets == [("redis", (f"virtual_key_budget_start_time:{A}",)), ("redis", (SPEND_KEY,))]
    assert "1.109+" in planned.skipped[0].why  # 1.90 does not read LiteLLM_BudgetWindowSpend


def test_entry_layout_writes_spend_and_start_key_with_the_window_end_as_expiry():
    layout = layouts.layout_for("1.110", None)
    start = datetime(2026, 11, 27, 4, 0, 0)
    planned = planning.plan(
        _result(_finding()), planning.Snapshot(), planning.PlanOptions(wall_now=datetime(2026, 11, 27, 7, 0), layout=layout)
    )
    (write,) = planned.actionable
    assert write.keys == (SPEND_KEY, CounterKey("virtual_key_spend", A, ENTRY, "1d").start_key)
    end_ms = int(epoch(start + timedelta(days=1)) * 1000)
    assert [c["expire_at_ms"] for c in write.new] == [end_ms, end_ms]
    assert write.new[0]["value"] == "3.5" and float(write.new[1]["value"]) == epoch(start)
    assert write.ttl_seconds == 21 * 3600


def test_windows_over_by_the_wall_clock_or_at_now_are_skipped_with_the_reason():
    layout = layouts.layout_for("1.110", None)
    options = planning.PlanOptions(wall_now=datetime(2026, 11, 28, 5, 0), layout=layout)
    (skipped,) = planning.plan(_result(_finding()), planning.Snapshot(), options).skipped
    assert "by the wall clock" in skipped.why
    closed = _finding(window_start=datetime(2026, 11, 20), window_end=datetime(2026, 11, 21))
    (skipped,) = planning.plan(_result(closed), planning.Snapshot(), options).skipped
    assert "as of --now" in skipped.why


def test_versions_without_shared_counters_are_refused():
    with pytest.raises(InputError, match="in each worker's memory"):
        layouts.layout_for("1.80", None)
    with pytest.raises(InputError, match="not a version"):
        layouts.layout_for("latest", None)


def test_batches_keep_an_entity_in_one_transaction():
    writes = [
        (i, planning.PlannedWrite(target="spend", action="set", key=str(i), why="", scope="key", entity_id=entity))
        for i, entity in enumerate(["a", "b", "a", "c", "b"])
    ]
    assert [[seq for seq, _ in batch] for batch in writing._batches(writes, 2)] == [[0, 2, 1, 4], [3]]
    assert [[seq for seq, _ in batch] for batch in writing._batches(writes, 0)] == [[0, 1, 2, 3, 4]]


def test_a_window_the_proxy_opened_since_the_scan_is_recomputed_not_overwritten():
    layout = layouts.layout_for("1.110", None)
    start = datetime(2026, 11, 27, 4, 0, 0)
    options = planning.PlanOptions(wall_now=datetime(2026, 11, 27, 7, 0), layout=layout)
    start_key = CounterKey("virtual_key_spend", A, ENTRY, "1d").start_key
    same = planning.Snapshot(redis={SPEND_KEY: {"value": "7.0"}, start_key: {"value": repr(epoch(start))}})
    moved = planning.Snapshot(redis={SPEND_KEY: {"value": "7.0"}, start_key: {"value": repr(epoch(start) + 3600)}})
    assert not planning.plan(_result(_finding(cached_spend=7.0)), same, options).actionable[0].stale
    assert planning.plan(_result(_finding(cached_spend=7.0)), moved, options).actionable[0].stale
