"""`auditor report --incremental` (auditor/audit/checkpoint.py): a run that resumes from the previous run's checkpoint and
reads only the spend logs that ended since its cut must give what a full scan of the same data gives.

The nightly sequence runs on PostgreSQL against a hand-built ledger whose findings are worked out below, so the
changes of each run are asserted id by id; the sample deployment (every scope and every cache, Redis included) is
run the same way and compared with full scans. Money is summed in whole nano-dollars (auditor.money), so however the
rows are split between the checkpoint and the new read, every amount and message is compared exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from auditor.audit import checkpoint
from auditor.audit.spend_ledger import MoneyCells
from auditor.audit.windows import Charge, TrackerState, Window, WindowTracker, windows
from auditor.cli.main import app
from auditor.ledger.daily_rollups import DayTotals
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.ledger.queries import SpendGroup
from auditor.ledger.schema import budget_window_spend, daily_user_spend, metadata, spend_logs, verification_token
from auditor.ledger.spend_queries import Cell
from auditor.litellm.durations import parse_duration
from auditor.repair import journal
from auditor.reports.document import scan_part
from auditor.reports.history import finding_ids
from auditor.sample import load_sample, load_sample_redis

REPO = Path(__file__).resolve().parent.parent
REPORT_SCHEMA = json.loads((REPO / "auditor" / "report.schema.json").read_text())
SCAN_SCHEMA = json.loads((REPO / "auditor" / "scan.schema.json").read_text())
SAMPLE_CONFIG = str(REPO / "sample_data" / "config.yaml")
REDIS_URL = os.environ.get("AUDITOR_TEST_REDIS", "redis://127.0.0.1:6379/13")  # the db the redis_client fixture flushes

CONFIG = (
    "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/prod-gpt4o\n"
    "    model_info:\n      id: dep-gpt4o\n"
)
A, B, C = "a" * 64, "b" * 64, "c" * 64  # key hashes: tidy ($1 a day on gpt-4o), batchy ($5 a day), plain (no budget)

runner = CliRunner()


def invoke(*args: str, code: int | None = None):
    result = runner.invoke(app, list(args))
    if code is not None:
        assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr, result.exception)
    return result


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def expected_id(kind, scope, entity, budget_model, window_start, counter_source="", counter_key="", model="", group="") -> str:
    """The documented finding-id recipe (auditor/reports/history.py), computed here independently."""
    parts = [kind, scope, entity, budget_model, window_start, counter_source, counter_key, model, group]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Comparing a report with a full scan


def assert_same(got, want, path: str = "") -> None:
    """Equal, floats to the last bit (NaN equal to NaN)."""
    if isinstance(got, float) or isinstance(want, float):
        assert got is not None and want is not None, (path, got, want)
        assert (math.isnan(got) and math.isnan(want)) or got == want, (path, got, want)
    elif isinstance(got, dict):
        assert isinstance(want, dict) and set(got) == set(want), (path, set(got) ^ set(want))
        for key in got:
            assert_same(got[key], want[key], f"{path}.{key}")
    elif isinstance(got, list):
        assert isinstance(want, list) and len(got) == len(want), (path, len(got), len(want))
        for n, (x, y) in enumerate(zip(got, want)):
            assert_same(x, y, f"{path}[{n}]")
    else:
        assert got == want, (path, got, want)


def assert_same_result(got: dict, want: dict) -> None:
    """A report against a full scan (either may be a report record or a scan record): findings by stable id with
    every value, window spend, rows, totals, notes."""
    got_findings = dict(zip(finding_ids(got["findings"]), got["findings"]))
    want_findings = dict(zip(finding_ids(want["findings"]), want["findings"]))
    assert list(got_findings) == list(want_findings)
    assert_same(got_findings, want_findings, "findings")
    assert_same(got["spend"], want["spend"], "spend")
    assert got["rows"] == want["rows"]
    assert_same(got["totals"], want["totals"], "totals")
    assert got["notes"] == want["notes"]


def report(url: str, config: str, out: Path, now: str, *extra: str) -> dict:
    invoke(
        "report",
        "--db",
        url,
        "--config",
        config,
        "--out",
        str(out),
        "--now",
        now,
        "--quiet",
        "--fail-on",
        "never",
        *extra,
        code=0,
    )
    record = json.loads((out / "latest.json").read_text())
    jsonschema.validate(record, REPORT_SCHEMA)
    jsonschema.validate(scan_part(record), SCAN_SCHEMA)
    return record


def full_scan(url: str, config: str, now: str, *extra: str) -> dict:
    result = invoke(
        "scan", "--db", url, "--config", config, "--now", now, "--format", "json", "--fail-on", "never", *extra, code=0
    )
    return json.loads(result.stdout)


# ---------------------------------------------------------------------------------------------
# Pure: the window tracker's state, the checkpoint's encoding, why a checkpoint is not reused


@st.composite
def charge_streams(draw: st.DrawFn) -> list[Charge]:
    """Charges sorted by end on a coarse grid (ties, idle gaps, long requests), with negative and fractional spends."""
    step = draw(st.sampled_from([1, 60, 3600, 86400]))
    end = datetime(2026, 1, 30) + timedelta(seconds=draw(st.integers(0, 86400)))
    charges = []
    for _ in range(draw(st.integers(0, 30))):
        end += timedelta(seconds=draw(st.integers(0, 3)) * step)
        took = timedelta(seconds=draw(st.integers(-1, 40)) * step)
        spend = draw(st.one_of(st.sampled_from([0.0, 0.1, 0.25, 1.0, 2.5]), st.floats(min_value=-1, max_value=5, width=32)))
        charges.append(Charge(end - took, end, float(spend)))
    return charges


@settings(max_examples=400, deadline=None)
@given(
    charge_streams(),
    st.sampled_from(["10s", "1h", "1d", "7d", "1mo", "daily"]),
    st.sampled_from([None, -1.0, 0.0, 0.5, 1.0, 3.0]),
    st.data(),
)
def test_a_tracker_resumed_from_its_state_at_any_split_gives_the_windows_of_one_pass(charges, period, limit, data):
    duration = parse_duration(period)
    split = data.draw(st.integers(0, len(charges)))
    first = WindowTracker(duration, limit)
    found = [w for w in map(first.add, charges[:split]) if w is not None]
    # through the checkpoint's own encoding, as a report stores it
    stored = checkpoint.State(
        datetime(2026, 1, 1), None, None, None, entities={("key", "k"): checkpoint.EntityState({"e": first.state()})}
    )
    second = WindowTracker.resume(
        duration, limit, checkpoint.decode(checkpoint.encode(stored)).entities[("key", "k")].trackers["e"]
    )
    found += [w for w in map(second.add, charges[split:]) if w is not None]
    last = second.close()
    found += [last] if last is not None else []
    assert found == list(windows(charges, duration, limit))  # exactly: the same additions in the same order


def test_a_state_read_back_after_a_split_still_refuses_unsorted_charges():
    tracker = WindowTracker(parse_duration("1h"), 1.0)
    tracker.add(Charge(datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10), 2.0))
    resumed = WindowTracker.resume(parse_duration("1h"), 1.0, tracker.state())
    assert resumed.state() == TrackerState(
        Window(datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 11), 2.0, 1, 0, 0.0),
        datetime(2026, 1, 1, 10),
        False,
        ((datetime(2026, 1, 1, 10), True),),
    )
    with pytest.raises(Exception, match="sorted by end_time"):
        resumed.add(Charge(datetime(2026, 1, 1, 9), datetime(2026, 1, 1, 9), 1.0))


def test_a_checkpoint_survives_its_encoding_exactly():
    t = datetime(2026, 11, 22, 21, 49, 58, 123000)
    window = Window(t, t + timedelta(days=1), 0.1 + 0.2, 3, 1, 1e-17)
    state = checkpoint.State(
        cut=t,
        watermark=t + timedelta(hours=1),
        oldest=datetime(2026, 11, 1),
        table_oldest=None,
        groups=[
            SpendGroup(A, "azure/prod-gpt4o", "gpt-4o", "dep-gpt4o", "charged", 1 / 3, 7),
            SpendGroup("", "m", "", "", "empty api_key", 0.5, 1),
        ],
        jobs={(B, "batch-1")},
        stream_jobs={"key": {(B, "batch-1")}, "team": set()},
        entities={
            ("team_member", "5:alice:team-1"): checkpoint.EntityState(
                {
                    "gpt-4o": TrackerState(window, t, True, ((t, True), (t + timedelta(seconds=1), False))),
                    "idle": TrackerState(None, None, False),
                },
                {"gpt-4o": [window]},
                {"gpt-4o": {"gpt-4o", "gpt-4o-mini"}},
            )
        },
        counters={("redis", f"virtual_key_spend:{A}:gpt-4o:1d", t): 0.30000000000000004},
        periods={("team_member", ("alice", "team-1"), datetime(1, 1, 1)): (12.5, 3), ("key", A, t): (float("nan"), 0)},
        rollups={
            "LiteLLM_DailyUserSpend": {
                "2026-11-20": checkpoint.RollupDay(
                    "abc", {("2026-11-20", A, "m", ""): DayTotals(1.5, 2, 2, 0), ("2026-11-20", B, "m", "p"): None}
                )
            }
        },
        money=MoneyCells(
            [Cell((A,), "azure/prod-gpt4o", "gpt-4o", "dep-gpt4o", None, "charged", 1 / 3, 3, 120, 45, 1)],
            [Cell((), "m", "", "", "2026-11-20", "failure", 0.0, 2, 0, 0, 0)],
        ),
    )
    back = checkpoint.decode(checkpoint.encode(state))
    nan = back.periods.pop(("key", A, t))
    state.periods.pop(("key", A, t))
    assert math.isnan(nan[0]) and nan[1] == 0
    assert back == state


def test_merged_groups_add_and_take_away_and_drop_what_is_left_empty():
    g = lambda outcome, spend, n: SpendGroup(A, "m", "g", "i", outcome, spend, n)  # noqa: E731
    merged = checkpoint.merge_groups(
        [g("charged", 1.5, 3), g("failure", 0.5, 1)], [g("charged", 0.25, 1)], [g("failure", 0.5, 1)]
    )
    assert merged == [g("charged", 1.75, 4)]


FINGERPRINT = {
    "format": 1,
    "auditor": "0.1.0",
    "since": None,
    "until": None,
    "keys": None,
    "window_slack": 1.0,
    "settle": 120.0,
    "tolerance": 0.0001,
    "retention": None,
    "budgets": "b1",
    "catalogue": "c1",
    "schema": "s1",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({}, None),
        (
            {"since": "2026-11-02T00:00:00"},
            "--since changed since the checkpoint (none -> 2026-11-02T00:00:00; an age like 30d moves with every run)",
        ),
        ({"keys": [A]}, "--key changed since the checkpoint"),
        ({"settle": 60.0}, "--settle changed since the checkpoint (120.0 s -> 60.0 s)"),
        (
            {"budgets": "b2"},
            "budgets changed since the checkpoint (a model_max_budget was edited, or an entity added or removed)",
        ),
        (
            {"catalogue": "c2", "budgets": "b2"},
            "budgets changed since the checkpoint (a model_max_budget was edited, or an entity added or removed)",
        ),
        ({"catalogue": "c2"}, "the LiteLLM config or model table changed since the checkpoint"),
        (
            {"timezone": "Europe/Paris"},
            "the zone of budget resets and report days changed since the checkpoint (none -> Europe/Paris)",
        ),
        ({"schema": "s2"}, "LiteLLM's tables changed since the checkpoint (an upgrade?)"),
        ({"format": 2}, "the checkpoint was stored in format 1; this auditor reads format 2"),
        ({"auditor": "0.2.0"}, "the checkpoint was written by auditor 0.1.0; this is auditor 0.2.0"),
    ],
)
def test_why_a_checkpoint_is_not_reused_is_the_first_thing_that_changed(change, message):
    assert checkpoint.why_not(FINGERPRINT, {**FINGERPRINT, **change}) == message


# ---------------------------------------------------------------------------------------------
# The nightly sequence on PostgreSQL: report; append; report --incremental; append; report --incremental


def day(n: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, n, hour, minute)


class Ledger:
    """LiteLLM's tables: tidy ($1 a day on gpt-4o), batchy ($5 a day, polls batch jobs), plain (no budget); each
    key's scalar spend kept as LiteLLM keeps it, and LiteLLM_BudgetWindowSpend counters set by hand."""

    def __init__(self, url: str):
        self.url, self.n = url, 0
        self.engine = create_engine(url)
        with self.engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(
                verification_token.insert(),
                [
                    {"token": A, "key_alias": "tidy", "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}}},
                    {
                        "token": B,
                        "key_alias": "batchy",
                        "model_max_budget": {"gpt-4o": {"max_budget": 5.0, "budget_duration": "1d"}},
                    },
                    {"token": C, "key_alias": "plain", "model_max_budget": {}},
                ],
            )

    def row(self, key: str, end: datetime, spend: float, *, job: str | None = None, status: str = "success") -> dict:
        self.n += 1
        return {
            "request_id": f"req-{self.n:04d}",
            "call_type": "aretrieve_batch" if job else "acompletion",
            "api_key": key,
            "spend": spend,
            "startTime": end - timedelta(seconds=2),
            "endTime": end,
            "model": "azure/prod-gpt4o",
            "model_group": "gpt-4o",
            "model_id": "dep-gpt4o",
            "status": status,
            "session_id": job,
            "metadata": {},
        }

    def add(self, rows: list[dict], counters: dict[str, tuple[datetime, float]] = {}) -> None:  # noqa: B006
        with self.engine.begin() as conn:
            if rows:
                conn.execute(spend_logs.insert(), rows)
            conn.execute(
                text(
                    'UPDATE "LiteLLM_VerificationToken" AS k SET spend = s.total, total_spend = s.total FROM ('
                    '  SELECT token, COALESCE((SELECT SUM(spend) FROM "LiteLLM_SpendLogs" l WHERE l.api_key = t.token'
                    "    AND l.status <> 'failure'), 0) AS total FROM \"LiteLLM_VerificationToken\" t) AS s WHERE k.token = s.token"
                )
            )
            for key, (start, spend) in counters.items():
                entity = f"virtual_key_spend:{key}:gpt-4o:1d"
                conn.execute(delete(budget_window_spend).where(budget_window_spend.c.entity_id == entity))
                conn.execute(
                    budget_window_spend.insert().values(
                        entity_type="model_max_budget",
                        entity_id=entity,
                        window_duration="1d",
                        window_start=start,
                        spend=spend,
                        updated_at=start,
                    )
                )

    def count(self, where) -> int:
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(spend_logs).where(where)).scalar_one()

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


F_A20 = expected_id("over_budget", "key", A, "gpt-4o", "2026-11-20T09:00:00.000Z", group="gpt-4o")
F_B23 = expected_id("over_budget", "key", B, "gpt-4o", "2026-11-23T08:00:00.000Z", group="gpt-4o")
F_A24 = expected_id("over_budget", "key", A, "gpt-4o", "2026-11-24T11:00:00.000Z", group="gpt-4o")
COUNTER_A = f"virtual_key_spend:{A}:gpt-4o:1d"
D_A23 = expected_id("counter_drift", "key", A, "gpt-4o", "2026-11-23T10:00:00.000Z", "budget_window_spend", COUNTER_A)
M_A24 = expected_id("counter_drift", "key", A, "gpt-4o", "2026-11-24T11:00:00.000Z", "budget_window_spend", COUNTER_A)


def changes(record: dict) -> tuple:
    c = record["changes"]
    return c["new"], c["still_open"], c["resolved"]


def test_the_nightly_sequence_on_postgresql_equals_a_full_scan(pg_url, config, tmp_path):
    ledger = Ledger(pg_url)
    try:
        invoke("db", "upgrade", "--db", pg_url, code=0)
        r = ledger.row
        # tidy: 4 x $0.50 on the 20th from 09:00 (the 3rd and 4th admitted past the $1 limit: F_A20); $0.50 on the 22nd.
        # batchy: batch-1 paid $2 on the 21st, its two later polls are repeats. plain's row sets the watermark.
        ledger.add(
            [r(A, day(20, h), 0.5) for h in (9, 10, 11, 12)]
            + [r(A, day(22, 9), 0.3), r(A, day(22, 21), 0.2)]
            + [
                r(B, day(21, 10), 2.0, job="batch-1"),
                r(B, day(21, 11), 2.0, job="batch-1"),
                r(B, day(22, 10), 2.0, job="batch-1"),
            ]
            + [r(C, day(22, 22, 50), 0.1)],
            {A: (day(22, 9), 0.5)},
        )
        first = report(pg_url, config, tmp_path / "r1", "2026-11-23T00:00:00Z")
        inc = first["run"]["incremental"]
        cut1 = day(22, 21, 49) + timedelta(seconds=58)  # plain's start (22:50 - 2 s), less the 1 h lookback
        assert (inc["mode"], inc["requested"], inc["watermark"], inc["cut"], inc["rows_read"], inc["checkpoint_stored"]) == (
            "full",
            False,
            iso(day(22, 22, 49) + timedelta(seconds=58)),
            iso(cut1),
            10,
            True,
        )
        assert changes(first) == ([F_A20], [], [])

        # Night 2: a late row of tidy's (started 21:59:58, after the cut, before the watermark); tidy's counter moves to a
        # window of the 23rd holding $0.90 while the ledger has $0.40 (D_A23); batchy crosses $5 (F_B23), batch-1 is
        # polled again (a repeat across the checkpoint) and batch-2 paid once.
        ledger.add(
            [r(A, day(22, 22), 0.2), r(A, day(23, 10), 0.4)]
            + [r(B, day(23, h), 3.0) for h in (8, 9, 10)]
            + [r(B, day(23, 12), 2.0, job="batch-1"), r(B, day(23, 13), 1.0, job="batch-2")]
            + [r(C, day(23, 22, 50), 0.1)],
            {A: (day(23, 10), 0.9), B: (day(23, 8), 10.0)},
        )
        second = report(pg_url, config, tmp_path / "r2", "2026-11-24T00:00:00Z", "--incremental")
        inc = second["run"]["incremental"]
        cut2 = day(23, 21, 49) + timedelta(seconds=58)
        assert (inc["mode"], inc["checkpoint_run"], inc["checkpoint_cut"], inc["cut"], inc["fallback"]) == (
            "incremental",
            first["run"]["id"],
            iso(cut1),
            iso(cut2),
            None,
        )
        assert inc["rows_read"] == ledger.count(spend_logs.c.endTime >= cut1) == 9
        assert changes(second) == ([F_B23, D_A23], [F_A20], [])
        assert_same_result(second, full_scan(pg_url, config, "2026-11-24T00:00:00Z"))
        over_b = next(f for f in second["findings"] if f["entity_id"] == B)
        assert (over_b["logged_spend"], over_b["requests"], over_b["requests_after_limit"], over_b["spend_after_limit"]) == (
            10.0,
            4,
            2,
            4.0,
        )

        # Night 3: late rows again: tidy's $0.50 that its counter already held (D_A23 resolved), a repeat poll of batch-2;
        # tidy crosses $1 on the 24th (F_A24) in a window no counter covers (M_A24); a failure and a key-less row.
        ledger.add(
            [r(A, day(23, 22, 20), 0.5), r(B, day(23, 22, 30), 1.0, job="batch-2")]
            + [r(A, day(24, h), 0.5) for h in (11, 12, 13)]
            + [r(C, day(24, 20), 0.7, status="failure"), r("", day(24, 21), 0.3), r(C, day(24, 22, 50), 0.1)]
        )
        third = report(pg_url, config, tmp_path / "r3", "2026-11-25T00:00:00Z", "--incremental")
        inc = third["run"]["incremental"]
        assert (inc["mode"], inc["checkpoint_run"], inc["checkpoint_cut"]) == ("incremental", second["run"]["id"], iso(cut2))
        assert inc["rows_read"] == ledger.count(spend_logs.c.endTime >= cut2) == 9
        assert changes(third) == ([M_A24, F_A24], [F_B23, F_A20], [D_A23])
        assert third["changes"]["finding_ids"] == [F_B23, M_A24, F_A20, F_A24]
        assert third["rows"] == {
            "read": 26,
            "attributed": 20,
            "unresolved": 0,
            "ignored": 6,
            "ignored_by_reason": {"empty api_key": 1, "failure": 1, "repeat job poll": 4},
        }

        # the same data, scanned whole: as a scan, and as a full report into another history
        assert_same_result(third, full_scan(pg_url, config, "2026-11-25T00:00:00Z"))
        full = report(
            pg_url, config, tmp_path / "r4", "2026-11-25T00:00:00Z", "--history-db", f"sqlite:///{tmp_path / 'h.sqlite'}"
        )
        assert full["run"]["incremental"]["mode"] == "full" and full["run"]["incremental"]["rows_read"] == 26
        assert_same_result(third, full)
        with ledger.engine.connect() as conn:  # one checkpoint kept, the newest run's
            kept = conn.execute(text("SELECT run_id, cut FROM auditor.report_checkpoints")).all()
        assert kept == [(third["run"]["id"], day(24, 21, 49) + timedelta(seconds=58))]
        md = (tmp_path / "r3" / "latest.md").read_text()
        assert (
            f"Incremental: read the 9 spend logs that ended since 2026-11-23 21:49 UTC, the cut of run {second['run']['id'][:8]}'s "
            "checkpoint; this run's checkpoint is cut at 2026-11-24 21:49 UTC."
        ) in md
        listed = json.loads(invoke("history", "--db", pg_url, "--format", "json", code=0).stdout)
        assert [r["mode"] for r in listed] == ["incremental", "incremental", "full"]
    finally:
        ledger.close()


# ---------------------------------------------------------------------------------------------
# The sample deployment (every scope, Redis and database counters, daily rollups) with days appended


def load(url: str) -> str:
    with connect(DatabaseTarget(parse_database_url(url), "test"), read_only=False) as conn:
        load_sample(conn)
    return url


def append_day(url: str, source_day: str, days: int, tag: str) -> int:
    """Copy every spend log of one day `days` later under new request ids (polls keep their job ids)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            start = datetime.fromisoformat(source_day)
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    select(spend_logs).where(spend_logs.c.startTime >= start, spend_logs.c.startTime < start + timedelta(days=1))
                )
            ]
            for row in rows:
                row["request_id"] = f"{tag}-{row['request_id']}"
                row["startTime"] += timedelta(days=days)
                row["endTime"] += timedelta(days=days)
            conn.execute(insert(spend_logs), rows)
    finally:
        engine.dispose()
    return len(rows)


@contextmanager
def ledger_reads():
    """Every statement any engine runs on LiteLLM_SpendLogs meanwhile (to see which reads an incremental run makes)."""
    seen: list[str] = []

    def record(conn, cursor, statement, *_):
        if '"LiteLLM_SpendLogs"' in statement:
            seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_the_sample_with_days_appended_equals_a_full_scan_on_postgresql(pg_url, redis_client, tmp_path):
    load(pg_url)
    load_sample_redis(redis_client)
    for key in redis_client.scan_iter("*"):
        redis_client.persist(key)
    invoke("db", "upgrade", "--db", pg_url, code=0)
    args = ("--redis", REDIS_URL)
    first = report(pg_url, SAMPLE_CONFIG, tmp_path / "r1", "2026-11-22T00:00:00Z", *args)
    assert first["run"]["incremental"]["rows_read"] == first["rows"]["read"] == 6256
    same = report(pg_url, SAMPLE_CONFIG, tmp_path / "r2", "2026-11-22T00:00:00Z", "--incremental", *args)
    assert same["run"]["incremental"]["mode"] == "incremental"
    assert_same_result(same, first)
    assert same["changes"]["counts"] == {"new": 0, "still_open": len(first["findings"]), "resolved": 0, "new_errors": 0}

    assert append_day(pg_url, "2026-11-20", 2, "n2") > 300
    second = report(pg_url, SAMPLE_CONFIG, tmp_path / "r3", "2026-11-23T00:00:00Z", "--incremental", *args)
    assert second["run"]["incremental"]["mode"] == "incremental"
    assert_same_result(second, full_scan(pg_url, SAMPLE_CONFIG, "2026-11-23T00:00:00Z", *args))
    assert append_day(pg_url, "2026-11-21", 2, "n3") > 200
    with ledger_reads() as reads:
        third = report(pg_url, SAMPLE_CONFIG, tmp_path / "r4", "2026-11-24T00:00:00Z", "--incremental", *args)
    at_entity_grain = [r for r in reads if "GROUP BY" in r and "team_id" in r.rpartition("GROUP BY")[2]]
    assert at_entity_grain and all('"LiteLLM_SpendLogs"."endTime" >=' in r for r in at_entity_grain)  # the rest: the checkpoint's
    money_reads = [r for r in reads if "prompt_tokens" in r]  # where the money went: resumed, the new rows read
    assert money_reads and all('"LiteLLM_SpendLogs"."endTime" >=' in r for r in money_reads), money_reads
    assert stored_money(pg_url) is not None
    inc = third["run"]["incremental"]
    assert inc["mode"] == "incremental" and inc["rows_read"] < third["rows"]["read"] / 20
    want = full_scan(pg_url, SAMPLE_CONFIG, "2026-11-24T00:00:00Z", *args)
    assert_same_result(third, want)
    full = report(
        pg_url, SAMPLE_CONFIG, tmp_path / "f4", "2026-11-24T00:00:00Z", *args, "--history-db", f"sqlite:///{tmp_path / 'f.db'}"
    )
    assert_same(third["money"], full["money"], "money")
    scopes = {f["scope"] for f in want["findings"]}
    kinds = {(f["kind"], f["counter_source"]) for f in want["findings"]}
    assert scopes >= {"key", "team", "user", "end_user", "team_member"}  # what the comparison covered
    assert {
        ("rollup_drift", "daily_user_spend"),
        ("counter_drift", "redis"),
        ("counter_drift", "budget_window_spend"),
        ("counter_drift", "spend"),
        ("over_budget", None),
    } <= kinds


# ---------------------------------------------------------------------------------------------
# When a checkpoint cannot be used: a full run, and why (SQLite: the decisions do not depend on the dialect)


@pytest.fixture
def small(sqlite_url):
    ledger = Ledger(sqlite_url)
    r = ledger.row
    ledger.add([r(A, day(20, h), 0.5) for h in (9, 10, 11, 12)] + [r(C, day(22, 22, 50), 0.1)])
    yield ledger
    ledger.close()


def incremental(url: str, config: str, out: Path, now: str, *extra: str):
    """report --incremental without --quiet: its stderr says why it ran full."""
    result = invoke(
        "report",
        "--db",
        url,
        "--config",
        config,
        "--out",
        str(out),
        "--now",
        now,
        "--fail-on",
        "never",
        "--incremental",
        *extra,
        code=0,
    )
    return json.loads((out / "latest.json").read_text())["run"]["incremental"], result.stderr


def test_the_first_incremental_run_reads_everything_and_says_so(small, config, tmp_path):
    inc, stderr = incremental(small.url, config, tmp_path / "r1", "2026-11-23T00:00:00Z")
    why = "no checkpoint from a previous report run of this database"
    assert (inc["mode"], inc["fallback"], inc["rows_read"], inc["checkpoint_stored"]) == ("full", why, 5, True)
    assert stderr == f"auditor: full scan instead of incremental: {why}\n"
    inc, stderr = incremental(small.url, config, tmp_path / "r2", "2026-11-23T00:00:00Z")
    assert (inc["mode"], inc["fallback"], inc["rows_read"], stderr) == ("incremental", None, 1, "")
    quiet = invoke(
        "report",
        "--db",
        small.url,
        "--config",
        config,
        "--out",
        str(tmp_path / "r3"),
        "--now",
        "2026-11-23T00:00:00Z",
        "--incremental",
        "--quiet",
        "--history-db",
        f"sqlite:///{tmp_path / 'other.sqlite'}",
        code=1,
    )
    assert quiet.stderr == ""  # --quiet: the reason is in the JSON only


def _edit_budget(ledger: Ledger, config: str) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(
            update(verification_token)
            .where(verification_token.c.token == A)
            .values(model_max_budget={"gpt-4o": {"budget_limit": 2.0, "time_period": "1d"}})
        )


def _edit_config(ledger: Ledger, config: str) -> None:
    Path(config).write_text(CONFIG + "  - model_name: gpt-4o-mini\n    litellm_params:\n      model: openai/gpt-4o-mini\n")


@pytest.mark.parametrize(
    ("edit", "first_args", "args", "why"),
    [
        (
            _edit_budget,
            (),
            (),
            "budgets changed since the checkpoint (a model_max_budget was edited, or an entity added or removed)",
        ),
        (_edit_config, (), (), "the LiteLLM config or model table changed since the checkpoint"),
        (
            None,
            ("--since", "2026-11-01"),
            ("--since", "2026-11-02"),
            "--since changed since the checkpoint (2026-11-01T00:00:00 -> 2026-11-02T00:00:00; an age like 30d moves with every run)",
        ),
        (
            None,
            ("--since", "30d"),
            ("--since", "30d"),
            "--since changed since the checkpoint (2026-10-24T00:00:00 -> 2026-10-25T00:00:00; an age like 30d moves with every run)",
        ),
    ],
)
def test_a_changed_budget_config_or_since_runs_full_and_says_why(small, config, tmp_path, edit, first_args, args, why):
    report(small.url, config, tmp_path / "r1", "2026-11-23T00:00:00Z", *first_args)
    if edit is not None:
        edit(small, config)
    inc, stderr = incremental(small.url, config, tmp_path / "r2", "2026-11-24T00:00:00Z", *args)
    assert (inc["mode"], inc["fallback"]) == ("full", why)
    assert stderr == f"auditor: full scan instead of incremental: {why}\n"
    after, _ = incremental(small.url, config, tmp_path / "r3", "2026-11-24T00:00:00Z", *args)  # the full run's checkpoint serves
    assert (after["mode"], after["fallback"]) == ("incremental", None)


def test_deleted_rows_and_unknown_counters_run_full(small, config, tmp_path):
    report(small.url, config, tmp_path / "r1", "2026-11-23T00:00:00Z")
    small.add([], {A: (day(20, 9), 2.0)})  # a counter starting long before the cut, which the checkpoint never saw
    inc, _ = incremental(small.url, config, tmp_path / "r2", "2026-11-23T00:00:00Z")
    assert inc["fallback"] == (
        f"budget_window_spend counter {COUNTER_A} (window from 2026-11-20 09:00:00) starts before the "
        "checkpoint's cut, and the checkpoint does not know it"
    )
    with small.engine.begin() as conn:
        conn.execute(delete(spend_logs).where(spend_logs.c.endTime < day(20, 10)))
    inc, _ = incremental(small.url, config, tmp_path / "r3", "2026-11-23T00:00:00Z")
    assert inc["fallback"] == (
        "the oldest spend log in scope moved from 2026-11-20 08:59:58 to 2026-11-20 09:59:58 since the "
        "checkpoint (rows deleted, e.g. by spend-log retention, or written before it)"
    )
    with small.engine.begin() as conn:
        conn.execute(delete(spend_logs).where(spend_logs.c.api_key == C))
    inc, _ = incremental(small.url, config, tmp_path / "r4", "2026-11-23T00:00:00Z")
    assert inc["fallback"] == (
        "the newest spend log (2026-11-20 11:59:58) is older than the checkpoint's watermark "
        "(2026-11-22 22:49:58): rows were deleted"
    )
    inc, _ = incremental(small.url, config, tmp_path / "r5", "2026-11-20T11:00:00Z")
    assert inc["fallback"] == "--now minus --settle (2026-11-20 10:58:00) is before the checkpoint's cut (2026-11-20 10:59:58)"


def test_a_run_cut_before_the_previous_cut_keeps_the_previous_one(small, config, tmp_path):
    """A larger --lookback does not move the cut back: the state before the previous cut is gone."""
    first = report(small.url, config, tmp_path / "r1", "2026-11-23T00:00:00Z")
    inc, _ = incremental(small.url, config, tmp_path / "r2", "2026-11-23T00:00:00Z", "--lookback", "1d")
    assert (inc["mode"], inc["cut"]) == ("incremental", first["run"]["incremental"]["cut"])


def test_lookback_takes_a_fixed_duration(small, config, tmp_path):
    result = invoke("report", "--db", small.url, "--config", config, "--out", str(tmp_path), "--lookback", "1mo")
    assert (result.exit_code, result.stderr) == (2, "auditor: --lookback takes a duration such as 1h, 30m or 0s (got '1mo')\n")
    assert not (tmp_path / "latest.json").exists()
    inc, _ = incremental(small.url, config, tmp_path / "r", "2026-11-23T00:00:00Z", "--lookback", "0s")
    assert (inc["lookback_s"], inc["cut"]) == (0.0, iso(day(22, 22, 49) + timedelta(seconds=58)))


def test_raw_api_keys_are_never_stored_in_a_checkpoint(sqlite_url, config, tmp_path):
    raw = "sk-" + "x" * 20
    ledger = Ledger(sqlite_url)
    try:
        ledger.add([{**ledger.row(A, day(20, 9), 0.5), "api_key": raw}])
        inc, stderr = incremental(sqlite_url, config, tmp_path / "r", "2026-11-23T00:00:00Z")
        assert (inc["checkpoint_stored"], inc["not_stored"]) == (
            False,
            "the ledger holds raw API keys (sk-…), which auditor never "
            "stores: no checkpoint kept, so the next incremental run reads everything",
        )
        assert inc["not_stored"] in stderr
        with ledger.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM auditor_report_checkpoints")).scalar() == 0
    finally:
        ledger.close()


def test_a_rollup_day_digest_is_the_same_text_on_both_databases(any_url):
    """PostgreSQL digests a day itself, SQLite sends its rows: both hash the same lines, worked out here by hand
    (spend in nano-dollars as high and low 2**32 parts), and sum their md5s' first 60 bits, so no collation or row
    order enters."""
    from auditor.ledger.daily_rollups import EMPTY_DIGEST, rollup_day_digests

    engine = create_engine(any_url)
    rows = [  # two users of key "a" on one model; 5.0 dollars exercises the high part
        ("a", "gpt-4o", "openai", "u1", 0.04, 1, 1, 0),
        ("a", "gpt-4o", "openai", "u2", 0.06, 1, 1, 0),
        ("B", "claude", None, "u1", 5.0, 3, 2, 1),
    ]
    with engine.begin() as conn:
        metadata.create_all(conn)
        if conn.dialect.name == "postgresql":  # a linguistic collation, as production databases often have: "a" < "B"
            conn.execute(text('ALTER TABLE "LiteLLM_DailyUserSpend" ALTER COLUMN api_key TYPE text COLLATE "und-x-icu"'))
        conn.execute(
            insert(daily_user_spend),
            [
                {
                    "id": f"r{n}",
                    "date": "2026-11-10",
                    "api_key": k,
                    "model": m,
                    "custom_llm_provider": p,
                    "user_id": u,
                    "spend": spend,
                    "api_requests": req,
                    "successful_requests": ok,
                    "failed_requests": bad,
                    "updated_at": day(10, 0),
                }
                for n, (k, m, p, u, spend, req, ok, bad) in enumerate(rows)
            ],
        )
    lines = ["a|gpt-4o|openai|0|40000000|0|1|1|0", "a|gpt-4o|openai|0|60000000|0|1|1|0", "B|claude||1|705032704|0|3|2|1"]
    total = sum(int(hashlib.md5(line.encode()).hexdigest()[:15], 16) for line in lines)  # 5e9 = 1 * 2**32 + 705032704
    try:
        with connect(DatabaseTarget(parse_database_url(any_url), "test")) as conn:
            digests = rollup_day_digests(conn, daily_user_spend, "2026-11-01", "2026-11-30")
        assert digests == {"2026-11-10": f"3-{total:x}"}
        assert EMPTY_DIGEST == "0-0"
        with engine.begin() as conn:  # a millionth of a dollar more: another day
            conn.execute(update(daily_user_spend).where(daily_user_spend.c.id == "r0").values(spend=0.040001))
        with connect(DatabaseTarget(parse_database_url(any_url), "test")) as conn:
            assert rollup_day_digests(conn, daily_user_spend, "2026-11-01", "2026-11-30")["2026-11-10"] != digests["2026-11-10"]
    finally:
        engine.dispose()


def test_a_rollup_day_that_changed_is_read_again(tmp_path):
    """A day before the cut whose Daily*Spend rows changed is compared with the ledger again, as a full scan does."""
    url = load(f"sqlite:///{tmp_path / 'sample.sqlite'}")
    first = report(url, SAMPLE_CONFIG, tmp_path / "r1", "2026-11-22T00:00:00Z")
    engine = create_engine(url)
    with engine.begin() as conn:  # one rollup row of the 10th now holds a dollar more
        target = conn.execute(
            select(daily_user_spend.c.id).where(daily_user_spend.c.date == "2026-11-10").order_by(daily_user_spend.c.id)
        ).first()
        conn.execute(
            update(daily_user_spend).where(daily_user_spend.c.id == target.id).values(spend=daily_user_spend.c.spend + 1.0)
        )
    engine.dispose()
    second = report(url, SAMPLE_CONFIG, tmp_path / "r2", "2026-11-22T00:00:00Z", "--incremental")
    assert second["run"]["incremental"]["mode"] == "incremental"
    assert_same_result(second, full_scan(url, SAMPLE_CONFIG, "2026-11-22T00:00:00Z"))
    new = [f for f in second["findings"] if f["kind"] == "rollup_drift" and f["window_start"] == "2026-11-10T00:00:00.000Z"]
    before = [f for f in first["findings"] if f["kind"] == "rollup_drift" and f["window_start"] == "2026-11-10T00:00:00.000Z"]
    assert len(new) == len(before) + 1


def test_postgresql_history_without_migration_0003_asks_for_db_upgrade(pg_url, config, tmp_path):
    ledger = Ledger(pg_url)
    try:
        ledger.add([ledger.row(A, day(20, 9), 0.5)])
        engine = create_engine(pg_url)
        with engine.begin() as conn:
            assert journal.upgrade(conn, "0002") == (None, "0002")
        engine.dispose()
        result = invoke("report", "--db", pg_url, "--config", config, "--out", str(tmp_path / "r"), "--incremental", "--quiet")
        masked = make_url(pg_url).set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        assert (result.exit_code, result.stdout) == (2, "")
        assert result.stderr.splitlines() == [
            f"auditor: auditor's tables for run history are at revision 0002, need 0003 in {masked}: "
            "run `auditor db upgrade --db URL` once, or give --history-db"
        ]
        invoke("db", "upgrade", "--db", pg_url, code=0)
        report(pg_url, config, tmp_path / "r2", "2026-11-23T00:00:00Z", "--incremental")
    finally:
        ledger.close()


# ---------------------------------------------------------------------------------------------
# The sample's incremental report in a browser


def test_the_sample_incremental_report_renders_in_chromium_with_its_summary(tmp_path):
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed", pytrace=False)
        pytest.skip("chromium is not installed")
    url = load(f"sqlite:///{tmp_path / 'sample.sqlite'}")
    report(url, SAMPLE_CONFIG, tmp_path / "r1", "2026-11-22T00:00:00Z")
    append_day(url, "2026-11-20", 2, "n2")
    record = report(url, SAMPLE_CONFIG, tmp_path / "r2", "2026-11-23T00:00:00Z", "--incremental")
    page = tmp_path / "r2" / "latest.html"
    run = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": str(tmp_path)},
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    dom = " ".join(run.stdout.split())
    leaked = f"${record['totals']['money_leaked']:,.2f}"
    assert f'<div class="label">Leaked past budgets</div> <div class="value">{leaked}</div>' in dom
    inc = record["run"]["incremental"]
    assert (
        f'<dd id="scan-line">incremental: read the {inc["rows_read"]} spend logs that ended since '
        f"{inc['checkpoint_cut'][:16].replace('T', ' ')} UTC"
    ) in dom


# ---------------------------------------------------------------------------------------------
# Random ledgers written in batches: every incremental run equals a full scan of the same rows


def random_ledger(seed: int, polls: bool = True) -> list[dict]:
    """Rows of three budgeted keys in two teams and one budgeted user over four days: requests that run up to two
    hours (so later batches hold rows that started before the previous watermark), batch jobs polled across days
    (unless not `polls`), failures, rows without a key, and a model nobody configured."""
    import random

    rng = random.Random(seed)
    keys = [(A, "t1", "u1"), (B, "t1", None), (C, "t2", "u1")]
    jobs = [f"job-{n}" for n in range(6)]
    rows = []
    for n in range(rng.randint(250, 400)):
        key, team, user = rng.choice(keys)
        end = datetime(2026, 11, 20) + timedelta(seconds=rng.randint(0, 4 * 86400))
        took = timedelta(seconds=rng.choice([1, 5, 60, 900, 3600, 7200]))
        job = rng.choice(jobs) if rng.random() < 0.15 and polls else None
        rows.append(
            {
                "request_id": f"r{seed}-{n:04d}",
                "call_type": "aretrieve_batch" if job else "acompletion",
                "api_key": "" if rng.random() < 0.03 else key,
                "spend": rng.choice([0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 1 / 3]),
                "startTime": end - took,
                "endTime": end,
                "model": "azure/prod-gpt4o",
                "model_group": "gpt-4o" if rng.random() < 0.95 else "mystery",
                "model_id": "dep-gpt4o",
                "status": "failure" if rng.random() < 0.05 else "success",
                "session_id": job,
                "team_id": team,
                "user": user,
                "metadata": {},
            }
        )
    return rows


def daily_rollups(rows: list[dict], seed: int) -> list[dict]:
    totals: dict[tuple, list] = {}
    for r in rows:
        if r["user"]:
            bucket = totals.setdefault((r["startTime"].date().isoformat(), r["api_key"]), [0.0, 0, 0])
            bucket[0] += r["spend"]
            bucket[1 if r["status"] == "success" else 2] += 1
    return [
        {
            "id": f"{day}-{key}",
            "user_id": "u1",
            "date": day,
            "api_key": key,
            "model": "azure/prod-gpt4o",
            "custom_llm_provider": None,
            "spend": spend + (0.5 if n == seed else 0.0),
            "api_requests": ok + failed,
            "successful_requests": ok,
            "failed_requests": failed,
            "updated_at": datetime(2026, 11, 25),
        }
        for n, ((day, key), (spend, ok, failed)) in enumerate(sorted(totals.items()))
    ]


def stored_money(url: str) -> MoneyCells | None:
    """The report's spend cells in the newest checkpoint auditor stored in the database at `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            c = journal.tables(conn.dialect.name).report_checkpoints
            state = conn.execute(select(c.c.state).order_by(c.c.created_at.desc()).limit(1)).scalar_one()
    finally:
        engine.dispose()
    return checkpoint.decode(bytes(state)).money


@pytest.mark.parametrize(("seed", "polls"), [(1, True), (2, True), (3, True), (4, False), (5, False)])
def test_random_ledgers_written_in_batches_give_the_same_result_incrementally(seed, polls, sqlite_url, config, tmp_path):
    """Every incremental run equals a full scan, and its "where the money went" a full report's. Without job polls the
    checkpoint keeps the report's spend cells (so the run reads only the new rows for them); with them it does not."""
    from auditor.ledger.schema import team_table, user_table

    rows = random_ledger(seed, polls)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": A,
                    "key_alias": "a",
                    "team_id": "t1",
                    "model_max_budget": {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}},
                },
                {
                    "token": B,
                    "key_alias": "b",
                    "team_id": "t1",
                    "model_max_budget": {"gpt-4o": {"budget_limit": 0.5, "time_period": "6h"}},
                },
                {"token": C, "key_alias": "c", "team_id": "t2", "model_max_budget": {}},
            ],
        )
        conn.execute(
            team_table.insert(),
            [
                {
                    "team_id": "t1",
                    "team_alias": "one",
                    "model_max_budget": {"gpt-4o": {"max_budget": 3.0, "budget_duration": "1d"}},
                    "spend": 0.0,
                },
                {
                    "team_id": "t2",
                    "team_alias": "two",
                    "model_max_budget": {"gpt-4o": {"max_budget": 2.0, "budget_duration": "1d"}},
                    "spend": 0.0,
                },
            ],
        )
        conn.execute(
            user_table.insert(),
            [{"user_id": "u1", "model_max_budget": {"gpt-4o": {"max_budget": 1.5, "budget_duration": "12h"}}, "spend": 0.0}],
        )
    # Written in batches by "endTime": each batch ends after the previous run's cut, and holds rows that started
    # before that run's watermark (the late rows the lookback is for).
    bounds = [datetime(2026, 11, 21, 6), datetime(2026, 11, 22, 13), datetime(2026, 11, 23, 2), datetime(2026, 11, 25)]
    previous = datetime.min
    for n, bound in enumerate(bounds):
        with engine.begin() as conn:
            conn.execute(spend_logs.insert(), [r for r in rows if previous <= r["endTime"] < bound])
            conn.execute(delete(daily_user_spend))  # LiteLLM's daily rollup of what is written, one day of one key off by $0.50
            conn.execute(daily_user_spend.insert(), daily_rollups([r for r in rows if r["endTime"] < bound], seed))
        previous = bound
        now = iso(bound + timedelta(minutes=5))
        record = report(sqlite_url, config, tmp_path / f"r{n}", now, "--incremental")
        assert record["run"]["incremental"]["mode"] == ("full" if n == 0 else "incremental")
        assert_same_result(record, full_scan(sqlite_url, config, now))
        assert (stored_money(sqlite_url) is None) == polls
        full = report(sqlite_url, config, tmp_path / f"f{n}", now, "--history-db", f"sqlite:///{tmp_path / 'full.db'}")
        assert full["run"]["incremental"]["mode"] == "full"
        assert_same(record["money"], full["money"], "money")
    engine.dispose()
    assert record["rows"]["read"] == len(rows)
    assert (record["rows"]["ignored_by_reason"].get("repeat job poll", 0) > 0) == polls
    assert {f["scope"] for f in record["findings"] if f["kind"] == "over_budget"} >= {"key", "team", "user"}
    assert any(f["kind"] == "rollup_drift" for f in record["findings"])
