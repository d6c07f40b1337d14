"""`backfill --apply` against a busy proxy: no increment is lost (docs/backfill.md, "No lost increments").

A simulated proxy behaves as LiteLLM does: each request INCRBYFLOATs its window counter in Redis when it
succeeds, and its spend-log row reaches LiteLLM_SpendLogs in a batch about a second later; several writer
threads serve requests on 1,000 keys while backfill repairs every one of their counters. After the proxy's
last flush, every repaired counter must equal the ledger of its window, exactly. Also here: the in-lock and
in-script re-sums count a paid job once, as the scan does; SIGTERM/SIGINT stop a run cleanly.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text

from auditor.clock import utc_now
from auditor.ledger.schema import metadata, spend_logs, verification_token
from auditor.repair import apply as writing
from auditor.repair import prepare as preparing
from test_backfill import (  # noqa: F401 - config is a fixture
    APP,
    CONFIG,
    ENTRY,
    NO_WAIT,
    REDIS_URL,
    REPO,
    SCRIPT,
    SPEND_KEY,
    A,
    Focused,
    _wait_for,
    as_json,
    config,
    core_pause_env,
    counter_findings,
    invoke,
    runner,
)

KEYS = 1000
WRITERS = 4
FLUSH_EVERY = 1.0  # the simulated proxy's spend-log batch interval (LiteLLM: proxy_batch_write_at)


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


class Proxy:
    """LiteLLM's write path for per-model budgets: INCRBYFLOAT at success, the row flushed in a later batch."""

    def __init__(self, url: str, client, tokens: list[str]) -> None:
        self.engine = create_engine(url)
        self.redis, self.tokens = client, tokens
        self.pending: list[dict] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.requests = 0

    def serve(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stopping.is_set():
            token = rng.choice(self.tokens)
            spend = round(rng.uniform(0.0001, 0.05), 6)
            end = utc_now()  # the request ends, then its success callback increments the counter
            self.redis.incrbyfloat(f"virtual_key_spend:{token}:{ENTRY}:1d", spend)
            with self.lock:
                self.pending.append(row(token, end, spend))
                self.requests += 1
            time.sleep(rng.uniform(0, 0.01))

    def flusher(self) -> None:
        while not self.stopping.wait(FLUSH_EVERY):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
        if batch:
            with self.engine.begin() as conn:
                conn.execute(spend_logs.insert(), batch)

    def __enter__(self) -> Proxy:
        self.stopping.clear()
        self.threads = [threading.Thread(target=self.serve, args=(seed,), daemon=True) for seed in range(WRITERS)]
        self.threads.append(threading.Thread(target=self.flusher, daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)
        self.flush()  # the last batch: after it, every increment has its row


def row(token: str, end: datetime, spend: float) -> dict:
    return {
        "request_id": f"req-{uuid.uuid4().hex}",
        "call_type": "acompletion",
        "api_key": token,
        "spend": spend,
        "startTime": end - timedelta(seconds=1),
        "endTime": end,
        "model": "azure/prod-gpt4o",
        "model_group": ENTRY,
        "model_id": "dep-gpt4o",
        "status": "success",
        "metadata": {},
    }


@pytest.fixture
def busy(pg_url, tmp_path):
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable: {error}", pytrace=False)
        pytest.skip(f"Redis is not reachable: {error}")
    client.flushdb()
    config_file = tmp_path / "config.yaml"
    config_file.write_text(CONFIG)
    rng = random.Random(7)
    now = utc_now().replace(microsecond=0)
    tokens = [f"{i:064x}" for i in range(1, KEYS + 1)]
    starts = {token: now - timedelta(minutes=rng.randint(10, 20 * 60)) for token in tokens}
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": token,
                    "key_alias": f"k{i}",
                    "spend": 0.0,
                    "model_max_budget": {ENTRY: {"budget_limit": 1e9, "time_period": "1d"}},
                }
                for i, token in enumerate(tokens)
            ],
        )
        conn.execute(
            spend_logs.insert(),
            [row(token, starts[token] + timedelta(minutes=5 * n), 0.25 * (n + 1)) for token in tokens for n in (0, 1)],
        )  # the first charge opened the window
    pipe = client.pipeline()
    for token in tokens:  # every counter off the ledger (0.75): a lost flush here, an inflated one there
        end_ms = int(epoch(starts[token] + timedelta(days=1)) * 1000)
        pipe.set(f"virtual_key_spend:{token}:{ENTRY}:1d", repr(rng.choice([0.5, 1.5, 2.25])), pxat=end_ms)
        pipe.set(f"virtual_key_budget_start_time:{token}:{ENTRY}:1d", repr(epoch(starts[token])), pxat=end_ms)
    pipe.execute()
    invoke("db", "upgrade", "--db", pg_url, code=0)
    yield pg_url, client, str(config_file), tokens, starts
    engine.dispose()
    client.flushdb()
    client.close()


def window_ledgers(url: str, starts: dict[str, datetime]) -> dict[str, float]:
    """Each key's ledger for its window, summed independently of auditor (1 s of window slack, as the scan)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text('SELECT api_key, "endTime", spend FROM "LiteLLM_SpendLogs"')).all()
    finally:
        engine.dispose()
    sums = dict.fromkeys(starts, 0.0)
    for api_key, end, spend in rows:
        start = starts[api_key]
        if start - timedelta(seconds=1) <= end < start + timedelta(days=1):
            sums[api_key] += spend
    return sums


def test_a_busy_proxy_loses_no_increment_to_backfill(busy):
    url, client, config_path, tokens, starts = busy
    args = [
        "backfill",
        "--db",
        url,
        "--config",
        config_path,
        "--redis",
        REDIS_URL,
        "--apply",
        "--yes",
        "--format",
        "json",
        "--flush-lag",
        str(FLUSH_EVERY + 3),
        "--increment-lag",
        "0.5",
    ]
    proxy = Proxy(url, client, tokens)
    for attempt in range(3):
        with proxy:
            time.sleep(0.5)  # requests in flight and rows unflushed when the run starts
            result = runner.invoke(APP, args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        results = [r for r in as_json(result)["run"]["results"] if r["target"] == "redis"]
        states = {r["state"] for r in results}
        assert len(results) == KEYS and states <= {"applied", "recomputed"}, states
        ledgers = window_ledgers(url, starts)
        pipe = client.pipeline()
        for token in tokens:
            pipe.get(f"virtual_key_spend:{token}:{ENTRY}:1d")
        counters = dict(zip(tokens, map(float, pipe.execute()), strict=True))
        off = {t: (counters[t], ledgers[t]) for t in tokens if abs(counters[t] - ledgers[t]) > 1e-9}
        assert not off, f"attempt {attempt}: {len(off)} counters differ from their window's ledger, e.g. {list(off.items())[:3]}"
        pipe = client.pipeline()
        for token in tokens:  # off the ledger again for the next attempt
            pipe.incrbyfloat(f"virtual_key_spend:{token}:{ENTRY}:1d", random.choice([-0.5, 0.75]))
        pipe.execute()
    assert proxy.requests > 1000  # the proxy was busy: about as many requests as counters


# ---------------------------------------------------------------------------------------------
# The re-sum counts a paid job once, as the scan does (issue 12)


def _polls(data: Focused, job: str, spend: float, count: int) -> None:
    """A finished batch's polls: each reports the whole job's cost; LiteLLM charges the first only."""
    base = utc_now() - timedelta(minutes=30)
    with data.engine.begin() as conn:
        conn.execute(
            spend_logs.insert(),
            [
                {
                    **data.charge(base + timedelta(minutes=n), spend),
                    "call_type": "aretrieve_batch",
                    "request_id": f"{job}_batch_cost" if n == 0 else f"poll-{uuid.uuid4().hex[:8]}",
                    "session_id": job,
                }
                for n in range(count)
            ],
        )


def test_the_re_sum_drops_repeat_job_polls_as_the_scan_does(pg_url, config):
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
    client.flushdb()
    data = Focused(pg_url, client, config)
    try:
        invoke("db", "upgrade", "--db", pg_url, code=0)
        _polls(data, "batch_abc", 2.0, 3)  # charged once: the ledger is 3.50 + 2.00, not 3.50 + 6.00
        scanned = as_json(invoke("scan", *data.args("--format", "json", "--settle", "0", "--fail-on", "never"), code=0))
        logged = {
            f["counter_source"]: f["logged_spend"]
            for f in scanned["findings"]
            if f["kind"] == "counter_drift" and f["counter_source"] in ("redis", "budget_window_spend")
        }
        assert logged == {"redis": pytest.approx(5.5), "budget_window_spend": pytest.approx(5.5)}
        # The proxy flushed to the row after the plan read it: the row is re-summed under its lock.
        from test_backfill import _prepared

        prepared, env = _prepared(data)
        with data.engine.begin() as conn:
            conn.execute(
                text('UPDATE "LiteLLM_BudgetWindowSpend" SET spend = spend + 0.5 WHERE entity_id = :k'), {"k": SPEND_KEY}
            )
        try:
            report = writing.apply(prepared.plan, env, {})
        finally:
            env.engine.dispose()
        assert sorted(o.state for o in report.outcomes) == ["applied", "recomputed"]
        assert data.row()[1] == pytest.approx(5.5, abs=1e-9)  # 9.50 with every poll counted
        assert float(client.get(SPEND_KEY)) == pytest.approx(5.5, abs=1e-9)
        assert counter_findings(as_json(invoke("scan", *data.args("--format", "json", "--settle", "0"), code=0)), A) == []
    finally:
        data.close()
        client.flushdb()
        client.close()


def test_a_poll_of_a_job_paid_before_the_window_is_a_repeat(pg_url, config):
    """The re-sum reads from the window on; a job whose first paid poll is older still counts as paid."""
    from auditor.audit.scan import ScanOptions
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.litellm.config import load_config

    data = Focused(pg_url, None, config)
    try:
        with data.engine.begin() as conn:  # first paid a day and a half ago, polled again inside the window
            conn.execute(
                spend_logs.insert(),
                [
                    {**data.charge(data.w0 - timedelta(hours=36), 4.0), "call_type": "aretrieve_batch", "session_id": "old_job"},
                    {
                        **data.charge(data.w0 + timedelta(minutes=30), 4.0),
                        "call_type": "aretrieve_batch",
                        "session_id": "old_job",
                    },
                ],
            )
        target = DatabaseTarget(parse_database_url(pg_url), "--db")
        with connect(target) as conn:
            caps = inspect_database(conn)
            prepared = preparing.prepare(
                conn,
                caps,
                load_config(config),
                ScanOptions(now=utc_now(), settle=timedelta(0)),
                None,
                litellm_version=None,
                targets=["counters"],
                remove_miskeyed=False,
                wall_now=utc_now(),
            )
            ledger = prepared.ledger.window_spend(conn, "key", A, ENTRY, data.w0)
        assert ledger == pytest.approx(3.5, abs=1e-9)
    finally:
        data.close()


def test_a_row_that_ended_just_before_the_read_is_in_the_ledger_though_stored_after_it(pg_url, config):
    """PostgreSQL rounds "endTime" (timestamp(3)) to the millisecond: a request that ended 0.4 ms before the read,
    whose increment the read holds, is stored 0.1 ms after it. Cut at the read itself, its row is left out and its
    increment lost (a one-in-a-few-runs failure of the busy-proxy test above); the cut is 1 ms past the read."""
    from auditor.audit.scan import ScanOptions
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.litellm.config import load_config
    from auditor.repair import live

    data = Focused(pg_url, None, config)
    try:
        read_at = data.w0.replace(microsecond=0) + timedelta(hours=2, minutes=30, microseconds=900)  # t0 = ….000900
        ended = read_at - timedelta(microseconds=400)  # ….000500: stored as ….001000, after t0
        with data.engine.begin() as conn:
            conn.execute(spend_logs.insert(), [data.charge(ended, 0.03)])
            stored = conn.execute(text('SELECT max("endTime") FROM "LiteLLM_SpendLogs"')).scalar_one()
        assert stored > read_at  # the premise: the row now reads as ended after the instant the counter was read
        reading = live.Reading(
            values=("3.53",), at_us=int((read_at - live.EPOCH) / timedelta(microseconds=1)), clock=0.0, quiet=True
        )
        assert live.instant(reading.at_us) == read_at
        target = DatabaseTarget(parse_database_url(pg_url), "--db")
        with connect(target) as conn:
            prepared = preparing.prepare(
                conn,
                inspect_database(conn),
                load_config(config),
                ScanOptions(now=utc_now(), settle=timedelta(0)),
                None,
                litellm_version=None,
                targets=["counters"],
                remove_miskeyed=False,
                wall_now=utc_now(),
            )
            at_read = prepared.ledger.window_spend(conn, "key", A, ENTRY, data.w0, live.instant(reading.at_us))
            at_cut = prepared.ledger.window_spend(conn, "key", A, ENTRY, data.w0, live.ledger_cut(reading))
        assert at_read == pytest.approx(3.5, abs=1e-9)  # the bug: $0.03 short of what the counter holds
        assert at_cut == pytest.approx(3.53, abs=1e-9)
    finally:
        data.close()


# ---------------------------------------------------------------------------------------------
# Interrupted runs


@pytest.fixture
def focused_live(pg_url, config):
    import redis

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=5)
    client.flushdb()
    data = Focused(pg_url, client, config)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    yield data
    data.close()
    client.flushdb()
    client.close()


def _spawn(data: Focused, at: str) -> subprocess.Popen:
    env = {**os.environ, core_pause_env(): "30", "AUDITOR_TEST_PAUSE_AT": at, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "backfill", *data.args("--apply", "--yes", *NO_WAIT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_transaction_rolls_the_batch_back_and_marks_the_run_interrupted(focused_live, signum, code):
    data = focused_live
    proc = _spawn(data, "budget_window_spend")
    lines = _wait_for(proc, "paused after budget_window_spend")
    started = next(line for line in lines if "started" in line)
    run_id = started.split("run ", 1)[1].split()[0]
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert f"run {run_id} interrupted by {signal.Signals(signum).name} after 0 of 2 changes" in stderr
    assert f"auditor backfill undo {run_id}" in stderr
    assert (
        data.row() == (data.w0, 1.25) and data.redis.get(SPEND_KEY) == "7.0"
    )  # the row's batch rolled back; Redis never reached
    history = as_json(invoke("backfill", "history", "--db", data.url, "--format", "json", code=0))
    assert [(r["run_id"], r["status"], r["changes"]) for r in history] == [(run_id, "interrupted", {})]


def test_a_signal_during_the_redis_writes_finishes_the_chunk_in_flight(focused_live):
    data = focused_live
    proc = _spawn(data, "redis")
    lines = _wait_for(proc, "paused after redis")
    run_id = next(line for line in lines if "started" in line).split("run ", 1)[1].split()[0]
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143, stderr
    assert f"run {run_id} interrupted by SIGTERM after 2 of 2 changes" in stderr
    assert data.row()[1] == 3.5 and data.redis.get(SPEND_KEY) == "3.5"  # both written and journaled
    history = as_json(invoke("backfill", "history", "--db", data.url, "--format", "json", code=0))
    assert [(r["status"], r["changes"]) for r in history] == [("interrupted", {"applied": 2})]
    invoke("backfill", "undo", run_id, "--db", data.url, "--redis", REDIS_URL, "--yes", code=0)  # undo works on it
    assert data.row()[1] == 1.25 and data.redis.get(SPEND_KEY) == "7.0"
