"""`auditor scan` on tiny hand-made LiteLLM databases: each case a few rows, its expected values worked
out by hand in a comment. SQLite always; PostgreSQL too where a case is about the data, not the CLI.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.schema import budget_window_spend, metadata, spend_logs, verification_token

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "auditor" / "scan.schema.json").read_text())
REDIS_URL = os.environ.get("AUDITOR_TEST_REDIS", "redis://127.0.0.1:6379/13")  # the db the redis_client fixture flushes

runner = CliRunner()

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
    model_info:
      id: dep-gpt4o
"""

T0 = datetime(2026, 3, 2)  # a Monday, 00:00 UTC (naive UTC, as LiteLLM stores it)
A = "a" * 64  # key hashes
B = "b" * 64


def at(hours: float = 0, minutes: float = 0, seconds: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


# ---------------------------------------------------------------------------------------------
# Building a database


_ids = itertools.count()


def charge(
    end: datetime,
    spend: float = 1.0,
    *,
    key: str = A,
    start: datetime | None = None,
    took: float = 1.0,
    model: str = "azure/prod-gpt4o",
    model_group: str = "gpt-4o",
    model_id: str = "dep-gpt4o",
    status: str | None = "success",
    meta: dict | None = None,
) -> dict:
    """One LiteLLM_SpendLogs row: a successful gpt-4o request that took `took` seconds unless told otherwise."""
    return {
        "request_id": f"req-{next(_ids):06d}",
        "call_type": "acompletion",
        "api_key": key,
        "spend": spend,
        "startTime": start if start is not None else end - timedelta(seconds=took),
        "endTime": end,
        "model": model,
        "model_group": model_group,
        "model_id": model_id,
        "status": status,
        "metadata": meta or {},
    }


def key(
    token: str = A,
    alias: str | None = "alpha",
    budget: object = None,
    period: str = "1d",
    limit: float = 1.0,
    model: str = "gpt-4o",
) -> dict:
    """One LiteLLM_VerificationToken row; by default `{model: {budget_limit: limit, time_period: period}}`."""
    mmb = {model: {"budget_limit": limit, "time_period": period}} if budget is None else budget
    return {"token": token, "key_alias": alias, "model_max_budget": mmb}


def window_row(token: str, entry: str, period: str, start: datetime, spend: float) -> dict:
    """One LiteLLM_BudgetWindowSpend counter, as 1.109+ replicas without Redis flush them."""
    return {
        "entity_type": "model_max_budget",
        "entity_id": f"virtual_key_spend:{token}:{entry}:{period}",
        "window_duration": period,
        "window_start": start,
        "spend": spend,
        "updated_at": start,
    }


def _charged(row: dict) -> bool:
    return row["api_key"] != "" and row["status"] != "failure" and row["metadata"].get("status") != "failure"


def build(url: str, keys: list[dict], rows: list[dict], windows: list[dict] = ()) -> str:
    """Create LiteLLM's tables and insert the rows. Each key's scalar `spend`/`total_spend` is its charged
    rows' total, as LiteLLM maintains them, so that only what a case is about can differ from the ledger."""
    for k in keys:
        total = math.fsum(r["spend"] for r in rows if r["api_key"] == k["token"] and _charged(r))
        k.setdefault("spend", total)
        k.setdefault("total_spend", total)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            if keys:
                conn.execute(verification_token.insert(), keys)
            if rows:
                conn.execute(spend_logs.insert(), rows)
            if windows:
                conn.execute(budget_window_spend.insert(), list(windows))
    finally:
        engine.dispose()
    return url


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def run(url: str, config: str | None, now: datetime, *extra: str, fail_on: str = "never"):
    args = ["scan", "--db", url, "--now", iso(now), "--format", "json", "--fail-on", fail_on, *extra]
    if config:
        args += ["--config", config]
    return runner.invoke(app, args)


def scan(url: str, config: str | None, now: datetime, *extra: str) -> dict:
    result = run(url, config, now, *extra)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    return record


def windows_of(record: dict, token: str = A) -> list[tuple[str, str, float, int]]:
    return [
        (s["window_start"], s["window_end"], s["logged_spend"], s["requests"]) for s in record["spend"] if s["entity_id"] == token
    ]


def kinds(record: dict, *wanted: str) -> list[dict]:
    return [f for f in record["findings"] if f["kind"] in wanted]


def counters(record: dict, *wanted: str) -> list[dict]:
    """Findings about per-model counters (Redis, LiteLLM_BudgetWindowSpend); not the keys' scalar spend columns."""
    return [
        f
        for f in kinds(record, *(wanted or ("counter_drift", "miskeyed_counter")))
        if f["counter_source"] in ("redis", "budget_window_spend", None)
    ]


# ---------------------------------------------------------------------------------------------
# Windows


def test_a_charge_exactly_one_period_after_the_start_opens_a_new_window(any_url, config):
    url = build(any_url, [key(limit=10)], [charge(at(0), 1.0), charge(at(12), 2.0), charge(at(days=1), 4.0)])
    record = scan(url, config, at(days=3))
    # window 1 = [T0, T0+1d): 1 + 2 = 3 in 2 requests; the charge at T0+1d is at its end, so it opens
    # window 2 = [T0+1d, T0+2d): 4 in 1 request. Neither is over the $10 limit.
    assert windows_of(record) == [
        (iso(at(0)), iso(at(days=1)), 3.0, 2),
        (iso(at(days=1)), iso(at(days=2)), 4.0, 1),
    ]
    assert kinds(record, "over_budget") == []


def test_month_windows_across_february(any_url, config):
    rows = [
        charge(datetime(2026, 1, 31, 10), 1.0),
        charge(datetime(2026, 2, 28, 9, 59, 59), 1.0),
        charge(datetime(2026, 2, 28, 10), 1.0),
        charge(datetime(2026, 3, 28, 10), 1.0),
    ]
    url = build(any_url, [key(period="1mo", limit=10)], rows)
    record = scan(url, config, datetime(2026, 6, 1))
    # 1mo from Jan 31 10:00 clamps to Feb 28 10:00 (2026 is not a leap year): 2 charges, the second
    # one second before the end. Feb 28 10:00 + 1mo = Mar 28 10:00, which is exactly the 4th charge,
    # so it opens a third window ending Apr 28 10:00.
    assert windows_of(record) == [
        ("2026-01-31T10:00:00.000Z", "2026-02-28T10:00:00.000Z", 2.0, 2),
        ("2026-02-28T10:00:00.000Z", "2026-03-28T10:00:00.000Z", 1.0, 1),
        ("2026-03-28T10:00:00.000Z", "2026-04-28T10:00:00.000Z", 1.0, 1),
    ]


def test_the_crossing_request_is_a_warning_leaked_requests_are_an_error(any_url, config):
    rows = [
        # key A, limit $1: 0.60 (ends 10 s); the crossing 0.60 (starts 19 s, ends 20 s, its check read 0.60 < 1);
        # an in-flight 0.25 that started at 15 s, before the crossing ended, when the total was still 0.60.
        charge(at(seconds=10), 0.60),
        charge(at(seconds=20), 0.60, start=at(seconds=19)),
        charge(at(seconds=30), 0.25, start=at(seconds=15)),
        # key B, limit $1: 0.60, crossing 0.60 (total 1.20 at 20 s), then 0.30 and 0.20 that started at
        # 25 s and 40 s, when the total (charges ended by then) was 1.20 and 1.50 >= 1: both leaked.
        charge(at(seconds=10), 0.60, key=B),
        charge(at(seconds=20), 0.60, key=B, start=at(seconds=19)),
        charge(at(seconds=30), 0.30, key=B, start=at(seconds=25)),
        charge(at(seconds=45), 0.20, key=B, start=at(seconds=40)),
    ]
    url = build(any_url, [key(A, "overshoot"), key(B, "leaky")], rows)
    record = scan(url, config, at(days=2))
    by_alias = {f["entity_alias"]: f for f in kinds(record, "over_budget")}
    assert set(by_alias) == {"overshoot", "leaky"}

    warning = by_alias["overshoot"]  # 0.60 + 0.60 + 0.25 = 1.45 > 1, nothing admitted after the limit
    assert warning["severity"] == "warning"
    assert (warning["requests"], warning["requests_after_limit"]) == (3, 0)
    assert warning["logged_spend"] == pytest.approx(1.45, abs=1e-12)
    assert warning["spend_after_limit"] == 0.0

    error = by_alias["leaky"]  # 0.60 + 0.60 + 0.30 + 0.20 = 1.70; leaked 2 requests, 0.30 + 0.20 = 0.50
    assert error["severity"] == "error"
    assert (error["requests"], error["requests_after_limit"]) == (4, 2)
    assert error["logged_spend"] == pytest.approx(1.70, abs=1e-12)
    assert error["spend_after_limit"] == pytest.approx(0.50, abs=1e-12)
    assert (error["window_start"], error["window_end"]) == (iso(at(seconds=10)), iso(at(days=1, seconds=10)))

    assert record["totals"]["money_leaked"] == pytest.approx(0.50, abs=1e-9)
    assert (record["totals"]["entities_over_budget"], record["totals"]["entities_leaking"]) == (2, 1)
    assert run(url, config, at(days=2), fail_on="error").exit_code == 1
    assert run(url, config, at(days=2), "--key", "overshoot", fail_on="error").exit_code == 0  # a warning only
    assert run(url, config, at(days=2), "--key", "overshoot", fail_on="warning").exit_code == 1


# ---------------------------------------------------------------------------------------------
# Counters


@pytest.mark.parametrize(
    ("cached", "drifts"),
    [
        (0.50009, False),  # |0.50009 - 0.50| = 0.00009 <= 0.0001
        (0.49991, False),  # |0.49991 - 0.50| = 0.00009
        (0.50011, True),  # 0.00011 > 0.0001
        (0.49989, True),
    ],
)
def test_drift_inside_the_tolerance_is_not_a_finding(any_url, config, cached, drifts):
    # ledger for the window opened at 09:00: 0.20 + 0.30 = 0.50 (limit $1, open at --now 12:00)
    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    url = build(any_url, [key()], rows, [window_row(A, "gpt-4o", "1d", at(9), cached)])
    record = scan(url, config, at(12))
    found = counters(record)
    if not drifts:
        assert found == []
        return
    [drift] = found
    assert drift["kind"] == "counter_drift"
    assert drift["severity"] == "error"  # the window is open: enforcement reads this value now
    assert drift["counter_source"] == "budget_window_spend"
    assert drift["cached_spend"] == cached
    assert drift["logged_spend"] == pytest.approx(0.50, abs=1e-12)
    assert (drift["window_start"], drift["window_end"]) == (iso(at(9)), iso(at(days=1, hours=9)))


def test_a_custom_tolerance_is_honoured(sqlite_url, config):
    url = build(sqlite_url, [key()], [charge(at(9), 0.50)], [window_row(A, "gpt-4o", "1d", at(9), 0.51)])
    assert len(counters(scan(url, config, at(12)), "counter_drift")) == 1  # 0.01 > 0.0001
    assert counters(scan(url, config, at(12), "--tolerance", "0.02"), "counter_drift") == []  # 0.01 <= 0.02


def _set_redis_counter(client, token: str, entry: str, period: str, start: datetime, value: float) -> None:
    client.set(f"virtual_key_spend:{token}:{entry}:{period}", repr(value))
    client.set(f"virtual_key_budget_start_time:{token}:{entry}:{period}", repr(epoch(start)))


@pytest.mark.redis
def test_redis_counters_are_compared_and_a_missing_one_reads_as_zero(sqlite_url, config, redis_client):
    # A and B each spend 0.20 + 0.30 = 0.50 in a window opened at 09:00, open at --now 12:00.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30), charge(at(9), 0.20, key=B), charge(at(10), 0.30, key=B)]
    url = build(sqlite_url, [key(A, "alpha"), key(B, "beta")], rows)
    # A's counter (start 0.4 s after the opening charge: within the 1 s slack) is right; B has none.
    _set_redis_counter(redis_client, A, "gpt-4o", "1d", at(9, seconds=0.4), 0.5)
    record = scan(url, config, at(12), "--redis", REDIS_URL)
    [missing] = counters(record)
    assert missing["entity_alias"] == "beta"
    assert (missing["counter_source"], missing["severity"]) == ("redis", "error")
    assert missing["counter_key"] == f"virtual_key_spend:{B}:gpt-4o:1d"
    assert missing["cached_spend"] == 0.0
    assert missing["logged_spend"] == pytest.approx(0.50, abs=1e-12)
    assert missing["window_start"] == iso(at(9))

    # Now A's counter holds twice the ledger: drift, read from Redis.
    _set_redis_counter(redis_client, A, "gpt-4o", "1d", at(9, seconds=0.4), 1.0)
    record = scan(url, config, at(12), "--redis", REDIS_URL)
    drift = {f["entity_alias"]: f for f in counters(record, "counter_drift")}
    assert drift["alpha"]["cached_spend"] == 1.0
    assert drift["alpha"]["logged_spend"] == pytest.approx(0.50, abs=1e-12)
    assert drift["alpha"]["counter_source"] == "redis"
    assert drift["alpha"]["window_start"] == iso(at(9, seconds=0.4))


@pytest.mark.redis
def test_key_selection_does_not_change_where_enforcement_reads(sqlite_url, config, redis_client):
    # As above: Redis holds A's (right) counter only; B's open window (0.50) has none, so reads $0.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30), charge(at(9), 0.20, key=B), charge(at(10), 0.30, key=B)]
    url = build(sqlite_url, [key(A, "alpha"), key(B, "beta")], rows)
    _set_redis_counter(redis_client, A, "gpt-4o", "1d", at(9), 0.5)
    whole = counters(scan(url, config, at(12), "--redis", REDIS_URL), "counter_drift")
    only_beta = counters(scan(url, config, at(12), "--redis", REDIS_URL, "--key", "beta"), "counter_drift")
    assert [(f["entity_alias"], f["counter_source"]) for f in whole] == [("beta", "redis")]
    assert only_beta == whole


def test_without_redis_a_missing_counter_is_read_where_budget_window_spend_is(sqlite_url, config):
    # Same spend as above, no Redis; the table holds A's (correct) counter, so B's absence is drift there.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30), charge(at(9), 0.20, key=B), charge(at(10), 0.30, key=B)]
    url = build(sqlite_url, [key(A, "alpha"), key(B, "beta")], rows, [window_row(A, "gpt-4o", "1d", at(9), 0.50)])
    [missing] = counters(scan(url, config, at(12)), "counter_drift")
    assert (missing["entity_alias"], missing["counter_source"], missing["cached_spend"]) == ("beta", "budget_window_spend", 0.0)


def test_without_any_counter_store_an_open_window_is_not_drift(sqlite_url, config):
    # No Redis, empty LiteLLM_BudgetWindowSpend: we cannot see where enforcement reads, so nothing to compare.
    url = build(sqlite_url, [key()], [charge(at(9), 0.20), charge(at(10), 0.30)])
    record = scan(url, config, at(12))
    assert counters(record, "counter_drift") == []


def test_a_counter_left_on_an_expired_window_does_not_cover_the_open_one(sqlite_url, config):
    # Day 1: 0.50 at 09:00, counter right (0.50, start 09:00). Day 2: 0.30 at 10:00 opens a new window
    # [D2 10:00, D3 10:00), but the table still holds day 1's window: enforcement reads $0 against 0.30.
    rows = [charge(at(9), 0.50), charge(at(days=1, hours=10), 0.30)]
    url = build(sqlite_url, [key()], rows, [window_row(A, "gpt-4o", "1d", at(9), 0.50)])
    record = scan(url, config, at(days=1, hours=12))
    [missing] = counters(record, "counter_drift")
    assert (missing["window_start"], missing["cached_spend"]) == (iso(at(days=1, hours=10)), 0.0)
    assert missing["logged_spend"] == pytest.approx(0.30, abs=1e-12)


def test_a_1d_counter_for_a_daily_entry_is_miskeyed(any_url, config):
    # Entry gpt-4o/daily (24 h, but keyed on the raw word). Ledger of the window opened at 09:00: 0.50.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    stored = [window_row(A, "gpt-4o", "daily", at(9), 0.50), window_row(A, "gpt-4o", "1d", at(9), 0.50)]
    url = build(any_url, [key(period="daily", limit=3)], rows, stored)
    record = scan(url, config, at(12))
    found = counters(record)
    # the :daily counter matches the ledger; the :1d one is never read by enforcement
    assert [(f["kind"], f["counter_key"], f["time_period"]) for f in found] == [
        ("miskeyed_counter", f"virtual_key_spend:{A}:gpt-4o:1d", "1d"),
    ]
    assert "'daily', not '1d'" in found[0]["message"]
    assert found[0]["cached_spend"] == 0.5


def test_the_settle_margin_leaves_the_newest_charges_out_of_a_counters_ledger(sqlite_url, config):
    now = at(12)
    # counter 0.50 = the 09:00 charge; a 0.25 charge ended 60 s before --now, not flushed yet.
    rows = [charge(at(9), 0.50), charge(now - timedelta(seconds=60), 0.25)]
    url = build(sqlite_url, [key(limit=10)], rows, [window_row(A, "gpt-4o", "1d", at(9), 0.50)])
    # default --settle 120: the ledger leaves out charges after now - 120 s, so it is 0.50 = the counter
    assert counters(scan(url, config, now), "counter_drift") == []
    # --settle 0: ledger 0.50 + 0.25 = 0.75 against 0.50 cached
    [drift] = counters(scan(url, config, now, "--settle", "0"), "counter_drift")
    assert drift["logged_spend"] == pytest.approx(0.75, abs=1e-12)
    assert drift["cached_spend"] == 0.5
    # --settle 30: the charge 60 s old is in, same drift
    assert len(counters(scan(url, config, now, "--settle", "30"), "counter_drift")) == 1


def test_the_window_slack_admits_a_charge_just_before_the_counters_start(sqlite_url, config):
    # The counter's start is 09:00:00.800; the opening charge ended at 09:00:00.000, 0.8 s earlier.
    # Default slack 1 s: the ledger is 0.20 + 0.30 = 0.50 = cached. Slack 0.5 s: the ledger is 0.30 alone.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    url = build(sqlite_url, [key()], rows, [window_row(A, "gpt-4o", "1d", at(9, seconds=0.8), 0.50)])
    assert counters(scan(url, config, at(12)), "counter_drift") == []
    [drift] = counters(scan(url, config, at(12), "--window-slack", "0.5"), "counter_drift")
    assert drift["logged_spend"] == pytest.approx(0.30, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Rows


def test_an_empty_model_group_is_resolved_by_model_id(any_url, config):
    rows = [
        charge(at(9), 0.60),
        # 1.80-style row: no model_group, a model string nothing matches, but the config's model_id
        charge(at(10), 0.60, model="prod-gpt4o-legacy-name", model_group="", model_id="dep-gpt4o"),
        # nothing to go on at all: unresolved, so governed by nothing
        charge(at(11), 5.00, model="prod-gpt4o-legacy-name", model_group="", model_id=""),
    ]
    url = build(any_url, [key()], rows)
    record = scan(url, config, at(days=2))
    assert record["rows"] == {"read": 3, "attributed": 2, "unresolved": 1, "ignored": 0, "ignored_by_reason": {}}
    # the window holds the two resolved rows: 0.60 + 0.60 = 1.20 > 1, the second one crossing
    [over] = kinds(record, "over_budget")
    assert (over["requests"], over["logged_spend"], over["severity"]) == (2, pytest.approx(1.2, abs=1e-12), "warning")
    [unresolved] = kinds(record, "unresolved_model")
    assert (unresolved["model"], unresolved["requests"], unresolved["logged_spend"]) == ("prod-gpt4o-legacy-name", 1, 5.0)


def test_failures_and_key_less_rows_are_ignored_with_their_reasons(any_url, config):
    rows = [
        charge(at(9), 0.50),
        charge(at(9, 1), 5.00, status="failure"),  # a failure carries no charge, whatever its spend
        charge(at(9, 2), 5.00, status=None, meta={"status": "failure"}),  # pre-status-column failure
        charge(at(9, 3), 0.40, key=""),  # key-less
        charge(at(9, 4), 0.40, key="", status="failure"),  # both: failure is checked first
    ]
    url = build(any_url, [key()], rows)
    record = scan(url, config, at(days=2))
    assert record["rows"] == {
        "read": 5,
        "attributed": 1,
        "unresolved": 0,
        "ignored": 3 + 1,
        "ignored_by_reason": {"empty api_key": 1, "failure": 3},
    }
    # only the 0.50 charge reaches the window: under the $1 limit
    assert windows_of(record) == [(iso(at(9)), iso(at(days=1, hours=9)), 0.5, 1)]
    assert kinds(record, "over_budget") == []


# ---------------------------------------------------------------------------------------------
# The command line


def _two_keys_over_budget(url: str) -> str:
    # alpha (A) and beta (B) each spend 0.60 + 0.60 = 1.20 > $1: one warning each
    rows = [charge(at(9), 0.6), charge(at(10), 0.6), charge(at(9), 0.6, key=B), charge(at(10), 0.6, key=B)]
    return build(url, [key(A, "alpha"), key(B, "beta")], rows)


def test_key_by_alias(sqlite_url, config):
    url = _two_keys_over_budget(sqlite_url)
    both = scan(url, config, at(days=2))
    assert {f["entity_alias"] for f in kinds(both, "over_budget")} == {"alpha", "beta"}
    beta = scan(url, config, at(days=2), "--key", "beta")
    assert [(f["entity_alias"], f["entity_id"]) for f in kinds(beta, "over_budget")] == [("beta", B)]
    assert beta["rows"]["read"] == 2
    assert scan(url, config, at(days=2), "--key", B) == beta  # the hash selects the same key


def test_an_unknown_key_exits_2_with_one_line(sqlite_url, config):
    url = _two_keys_over_budget(sqlite_url)
    result = run(url, config, at(days=2), "--key", "nope")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "auditor: --key 'nope' matches no key hash or key alias in LiteLLM_VerificationToken"
    ]


def test_an_unreachable_database_exits_3_with_one_line_and_no_traceback(config):
    result = run("postgresql://nobody:topsecret@127.0.0.1:1/litellm", config, at(0))
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("auditor: cannot connect to postgresql+psycopg://nobody:***@127.0.0.1:1/litellm (--db): ")
    assert "Traceback" not in result.output and "topsecret" not in result.output


def test_csv_neutralises_a_formula_in_a_key_alias(sqlite_url, config):
    alias = '=HYPERLINK("http://evil.example","x")'
    url = build(sqlite_url, [key(alias=alias)], [charge(at(9), 0.6), charge(at(10), 0.6)])
    result = run(url, config, at(days=2), "--format", "csv")
    assert result.exit_code == 0, result.output
    [row] = list(csv.DictReader(io.StringIO(result.stdout)))
    assert row["entity_alias"] == "'" + alias
    assert (row["kind"], row["severity"], row["budget_model"]) == ("over_budget", "warning", "gpt-4o")


def test_output_file_holds_the_same_json_with_mode_0600(sqlite_url, config, tmp_path):
    url = _two_keys_over_budget(sqlite_url)
    target = tmp_path / "out" / "scan.json"
    target.parent.mkdir()
    target.write_text("old report")
    os.chmod(target, 0o644)
    result = run(url, config, at(days=2), "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == json.loads(run(url, config, at(days=2)).stdout)
    assert sorted(p.name for p in target.parent.iterdir()) == ["scan.json"]  # no temp file left behind


# ---------------------------------------------------------------------------------------------
# Charged once


def poll(end: datetime, spend: float, request_id: str, session: str | None, status: str = "success") -> dict:
    """A batch retrieve row: a finished batch reports the whole job's cost on every poll."""
    row = charge(end, spend, status=status)
    row.update(call_type="aretrieve_batch", request_id=request_id, session_id=session)
    return row


def test_a_batch_polled_three_times_is_charged_once(any_url, config):
    # batch_1 reports $0.90 on three polls (1.110's `_batch_cost` row, then two rows of an older proxy that
    # logged each poll under its own id with the batch id as session); LiteLLM charged it once.
    # batch_2: one poll, $0.40. A failed poll of batch_1 is a failure, not a repeat.
    # charged: 0.90 (09:00) + 0.40 (09:30) = 1.30 > limit 1.00 in the window opened at 09:00; 2 repeats ignored.
    rows = [
        poll(at(9), 0.90, "batch_1_batch_cost", "batch_1"),
        poll(at(9, 10), 0.90, "call-aaa", "batch_1"),
        poll(at(9, 20), 0.90, "call-bbb", "batch_1"),
        poll(at(9, 25), 0.0, "call-ccc", "batch_1", status="failure"),
        poll(at(9, 30), 0.40, "batch_2_batch_cost", "batch_2"),
    ]
    record = scan(build(any_url, [key()], rows), config, at(12))
    assert record["rows"]["ignored_by_reason"] == {"failure": 1, "repeat job poll": 2}
    assert record["rows"]["attributed"] == 2
    assert windows_of(record) == [(iso(at(9)), iso(at(9, days=1)), pytest.approx(1.30), 2)]


def test_polls_without_a_job_id_are_never_merged_on_a_guess(any_url, config):
    # Same cost, different request ids, no session: nothing says they are one job, so both count (0.50 + 0.50).
    rows = [poll(at(9), 0.50, "call-1", None), poll(at(10), 0.50, "call-2", None)]
    record = scan(build(any_url, [key()], rows), config, at(12))
    assert record["rows"]["ignored_by_reason"] == {}
    assert windows_of(record) == [(iso(at(9)), iso(at(9, days=1)), pytest.approx(1.00), 2)]


# ---------------------------------------------------------------------------------------------
# Daily rollups


def rollup(day: str, spend: float, requests: int, key_: str = A, model: str = "azure/prod-gpt4o") -> dict:
    """One LiteLLM_DailyUserSpend row, as LiteLLM aggregates a user's requests per day, key and deployment."""
    return {
        "id": f"roll-{next(_ids)}",
        "user_id": "u-1",
        "date": day,
        "api_key": key_,
        "model": model,
        "model_group": "gpt-4o",
        "custom_llm_provider": "azure",
        "spend": spend,
        "api_requests": requests,
        "successful_requests": requests,
        "failed_requests": 0,
        "updated_at": datetime.fromisoformat(day),
    }


def test_use_rollups_adds_the_days_the_ledger_no_longer_holds(any_url, config):
    from auditor.ledger.schema import daily_user_spend

    # The ledger starts on 2026-03-02 (09:00, $0.20 by user u-1); rollups reach back two more days, as they
    # do after LiteLLM's spend-log retention deleted those rows. 03-02 matches the ledger, so it is no drift.
    rows = [charge(at(9), 0.20)]
    rows[0]["user"] = "u-1"
    rows[0]["custom_llm_provider"] = "azure"
    url = build(any_url, [key()], rows)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            daily_user_spend.insert(),
            [
                rollup("2026-02-28", 1.25, 5),
                rollup("2026-03-01", 0.75, 3),
                rollup("2026-03-02", 0.20, 1),
            ],
        )
    engine.dispose()
    plain = scan(url, config, at(12, days=2))
    assert "rollup_history" not in plain
    assert kinds(plain, "rollup_drift") == []
    record = scan(url, config, at(12, days=2), "--use-rollups")
    assert [(h["date"], h["spend"], h["requests"], h["source"]) for h in record["rollup_history"]] == [
        ("2026-02-28", 1.25, 5, "LiteLLM_DailyUserSpend"),
        ("2026-03-01", 0.75, 3, "LiteLLM_DailyUserSpend"),
    ]
    assert any("comes from LiteLLM_DailyUserSpend" in note and "#36172" in note for note in record["notes"])


def test_a_rollup_that_disagrees_with_a_whole_ledger_day_is_drift(any_url, config):
    from auditor.ledger.schema import daily_user_spend

    # 03-02: ledger 0.20 + 0.30 = 0.50 in 2 requests; the rollup says 0.20 in 1 (a lost flush).
    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    for row in rows:
        row.update(user="u-1", custom_llm_provider="azure")
    url = build(any_url, [key(limit=5.0)], rows)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(daily_user_spend.insert(), [rollup("2026-03-02", 0.20, 1)])
    engine.dispose()
    [drift] = kinds(scan(url, config, at(12, days=2)), "rollup_drift")
    assert (drift["logged_spend"], drift["cached_spend"], drift["requests"], drift["cached_requests"]) == (
        pytest.approx(0.50),
        0.20,
        2,
        1,
    )
    assert drift["window_start"] == iso(T0) and drift["counter_source"] == "daily_user_spend"


def test_rollup_disagreements_in_sql_are_the_cells_a_python_comparison_finds(any_url):
    """daily_rollups.rollup_disagreements compares in the database; a second, simple method (both sides read whole,
    compared with rollup_checks.rollup_differs) must find exactly the same cells with the same totals."""
    import random

    from auditor.audit.rollup_checks import rollup_differs
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.daily_rollups import RollupRead, ledger_days, rollup_days, rollup_disagreements
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.ledger.schema import daily_user_spend

    rng = random.Random(7)
    models, keys_ = ("azure/a", "azure/b", "openai/c"), (A, "b" * 64)
    rows, rollups = [], []
    for day in (1, 2, 3):
        for model in models:
            for key_ in keys_:
                spends = [round(rng.uniform(0.01, 2.0), 4) for _ in range(rng.randrange(0, 4))]
                for n, spend in enumerate(spends):
                    row = charge(
                        at(8 + n, days=day - 1),
                        spend,
                        key=key_,
                        model=model,
                        status="failure" if rng.random() < 0.2 else "success",
                    )
                    row.update(user="u-1", custom_llm_provider="azure")
                    rows.append(row)
                fate = rng.choice(("same", "same", "off-by-a-cent", "within-tolerance", "one-request-short", "missing", "extra"))
                total = math.fsum(spends)
                if fate == "missing" or (not spends and fate != "extra"):
                    continue
                spend, requests = {
                    "same": (total, len(spends)),
                    "off-by-a-cent": (total + 0.01, len(spends)),
                    "within-tolerance": (total + 0.00001, len(spends)),
                    "one-request-short": (total, max(len(spends) - 1, 0)),
                    "extra": (total + 0.5, len(spends) + 1),
                }[fate]
                rollups.append({**rollup(f"2026-03-0{day + 1}", spend, requests, key_=key_, model=model)})
    url = build(any_url, [key()], rows)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(daily_user_spend.insert(), rollups)
    engine.dispose()
    with connect(DatabaseTarget(parse_database_url(url), "--db")) as conn:
        caps = inspect_database(conn)
        ledger, cached = (
            ledger_days(conn, caps, "user", "2026-03-01", "2026-03-05"),
            rollup_days(conn, daily_user_spend, "2026-03-01", "2026-03-05"),
        )
        expected = {
            k: (ledger.get(k), cached.get(k))
            for k in set(ledger) | set(cached)
            if rollup_differs(ledger.get(k), cached.get(k), 0.0001)
        }
        reads = [RollupRead("LiteLLM_DailyUserSpend", daily_user_spend, "user", [("2026-03-01", "2026-03-05")])]
        found = rollup_disagreements(conn, caps, reads, 0.0001)["LiteLLM_DailyUserSpend"]
    assert len(expected) >= 5 and len(expected) < len(set(ledger) | set(cached))  # some cells agree, some do not
    assert {k: (logged, cached_) for k, logged, cached_ in found} == {
        k: (pytest.approx(lg) if lg else None, pytest.approx(c) if c else None) for k, (lg, c) in expected.items()
    }
    assert len(found) == len(expected)


@pytest.mark.postgres
def test_only_days_whose_checksums_differ_are_compared_cell_by_cell(pg_url):
    """On PostgreSQL one pass of per-day checksums picks the days to compare cell by cell: each kind of drift makes
    its day suspect, even when it leaves the day's totals alone; rows LiteLLM does not roll up for a table (no
    team) do not; a difference within the tolerance but above a float's rounding is compared, and agrees."""
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.daily_rollups import RollupRead, _suspect_days, rollup_disagreements
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.ledger.schema import daily_team_spend, daily_user_spend, rollup_metadata

    cells = [(key_, model) for key_ in (A, B) for model in ("azure/a", "azure/b")]
    rows, users, teams = [], [], []
    for day in range(4):  # 03-02 .. 03-05; each cell: 0.25 + 0.50 by team t-1, and 0.125 with no team
        for key_, model in cells:
            for hour, spend, team in ((8, 0.25, "t-1"), (9, 0.5, "t-1"), (10, 0.125, None)):
                row = charge(at(hour, days=day), spend, key=key_, model=model)
                row.update(user="u-1", team_id=team, custom_llm_provider="azure")
                rows.append(row)
            date = f"2026-03-0{day + 2}"
            users.append(rollup(date, 0.875, 3, key_=key_, model=model))
            teams.append({**rollup(date, 0.75, 2, key_=key_, model=model), "user_id": None, "team_id": "t-1"})
    first, second = users[4:6]  # 03-03's cells (A, azure/a) and (A, azure/b)
    first["spend"], second["spend"] = 0.875 + 0.5, 0.875 - 0.5  # spend moved between cells, totals kept
    third, fourth = users[
        8:10
    ]  # 03-04's (A, azure/a) and (A, azure/b): a request counted in the wrong cell, spend and totals kept
    third["api_requests"], fourth["api_requests"] = 2, 4
    users[12]["spend"] = 0.875 + 0.00001  # 03-05: within the tolerance
    url = build(pg_url, [key()], rows)
    engine = create_engine(url)
    with engine.begin() as conn:
        rollup_metadata.create_all(conn)
        conn.execute(daily_user_spend.insert(), users)
        conn.execute(daily_team_spend.insert(), teams)
    engine.dispose()
    reads = [
        RollupRead("LiteLLM_DailyUserSpend", daily_user_spend, "user", [("2026-03-02", "2026-03-05")]),
        RollupRead("LiteLLM_DailyTeamSpend", daily_team_spend, "team_id", [("2026-03-02", "2026-03-05")]),
    ]
    with connect(DatabaseTarget(parse_database_url(url), "--db")) as conn:
        caps = inspect_database(conn)
        suspect = _suspect_days(conn, caps, reads, 0.0001)
        found = rollup_disagreements(conn, caps, reads, 0.0001)
    assert suspect == {"LiteLLM_DailyUserSpend": {"2026-03-03", "2026-03-04", "2026-03-05"}, "LiteLLM_DailyTeamSpend": set()}
    assert {(k, lg.spend, lg.requests, c.spend, c.requests) for k, lg, c in found["LiteLLM_DailyUserSpend"]} == {
        (("2026-03-03", A, "azure/a", "azure"), 0.875, 3, 1.375, 3),
        (("2026-03-03", A, "azure/b", "azure"), 0.875, 3, 0.375, 3),
        (("2026-03-04", A, "azure/a", "azure"), 0.875, 3, 0.875, 2),
        (("2026-03-04", A, "azure/b", "azure"), 0.875, 3, 0.875, 4),
    }
    assert found["LiteLLM_DailyTeamSpend"] == []


def test_team_rollups_are_compared_when_the_table_exists(any_url, config):
    from auditor.ledger.schema import daily_team_spend, rollup_metadata

    # Team t-1's requests on 03-02: 0.20 + 0.30 = 0.50 in 2; LiteLLM_DailyTeamSpend holds 0.50 in 2 for the key's
    # deployment (no drift), and 0.10 in 1 for a deployment the ledger never saw that day (drift: ledger 0 in 0).
    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    for row in rows:
        row.update(team_id="t-1", custom_llm_provider="azure")
    url = build(any_url, [key(limit=5.0)], rows)
    engine = create_engine(url)
    with engine.begin() as conn:
        rollup_metadata.create_all(conn)
        base = {
            "team_id": "t-1",
            "date": "2026-03-02",
            "api_key": A,
            "custom_llm_provider": "azure",
            "successful_requests": 0,
            "failed_requests": 0,
        }
        conn.execute(
            daily_team_spend.insert(),
            [
                {**base, "id": "t1", "model": "azure/prod-gpt4o", "spend": 0.50, "api_requests": 2},
                {**base, "id": "t2", "model": "azure/other", "spend": 0.10, "api_requests": 1},
            ],
        )
    engine.dispose()
    [drift] = kinds(scan(url, config, at(12, days=2)), "rollup_drift")
    assert (drift["counter_source"], drift["model"], drift["cached_spend"], drift["logged_spend"]) == (
        "daily_team_spend",
        "azure/other",
        0.10,
        0.0,
    )
    assert drift["message"].startswith("LiteLLM_DailyTeamSpend for 2026-03-02")


def test_what_the_config_holds_that_litellm_ignores_is_a_note_of_the_scan(sqlite_url, tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(CONFIG + "router_settings:\n  model_group_alias:\n    gpt-4: ''\n")
    record = scan(build(sqlite_url, [key()], [charge(at(9), 0.20)]), str(path), at(12))
    assert "config: model_group_alias 'gpt-4': no target model; LiteLLM ignores it" in record["notes"]
    plain = scan(build(f"sqlite:///{tmp_path / 'other.sqlite'}", [key()], [charge(at(9), 0.20)]), None, at(12))
    assert not [n for n in plain["notes"] if n.startswith("config:")]


def test_lifetime_sums_of_every_scope_in_one_statement_are_period_spend_per_scope(any_url):
    """queries.lifetime_spend (one statement for all scopes: grouping sets on PostgreSQL) against a second method,
    period_spend of each scope over a lifetime period: the same (spend, rows) for every entity, with rows that are
    failures, whose spend is no amount, without a key, without a team, user or end user, or after `until`."""
    import random

    from auditor.audit.scalar_budgets import LIFETIME
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.ledger.queries import SCOPE_COLUMNS, lifetime_spend, period_spend

    rng = random.Random(11)
    rows = []
    for _ in range(300):
        row = charge(
            at(0, days=rng.randrange(0, 5)) + timedelta(minutes=rng.randrange(0, 1440)),
            rng.choice([0.1, 0.25, 1 / 3, 2.0, float("inf")]),  # SQLite stores a NaN as NULL, which spend refuses
            key=rng.choice([A, "b" * 64, ""]),  # api_key is NOT NULL; "" is a keyless request
            status=rng.choice(["success", "success", "failure"]),
        )
        row.update(
            team_id=rng.choice(["t-1", "t-2", "", None]),
            user=rng.choice(["u-1", "u-2", None]),
            end_user=rng.choice(["e-1", "", None]),
        )
        rows.append(row)
    url = build(any_url, [{**key(), "spend": 0.0, "total_spend": 0.0}], rows)  # the key's own spend is beside the point
    until, cut = at(0, days=4), at(12, days=2)
    scopes = list(SCOPE_COLUMNS)
    with connect(DatabaseTarget(parse_database_url(url), "--db")) as conn:
        caps = inspect_database(conn)
        for ended_from in (None, cut):
            found = lifetime_spend(conn, caps, scopes, until, ended_from)
            for scope, names in SCOPE_COLUMNS.items():
                entities = {tuple(r[n] for n in names) for r in rows if all(r[n] is not None for n in names)}
                wanted = [(e[0] if len(e) == 1 else e, LIFETIME) for e in sorted(entities)]
                expected = period_spend(conn, caps, scope, wanted, until, ended_from=ended_from)
                assert found[scope] == expected, (scope, ended_from)
                assert len(expected) >= 2, scope  # the case covers several entities of each scope
