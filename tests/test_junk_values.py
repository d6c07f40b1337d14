"""Values no sane writer stores, on PostgreSQL and SQLite: a JSON integer Python refuses to read, and spends that
are not an amount (NaN, Infinity, a quadrillion dollars or more). The scan survives each and says where it went;
every sum it takes stays finite. tests/corpus/{budgets,spend_rows}.yaml has the user-facing cases; these pin the
pieces (the JSON loader, the scalar and rollup sums) the corpus does not reach.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

import psycopg
import pytest
from sqlalchemy import text

from auditor.ledger import daily_rollups, queries
from auditor.ledger.capabilities import inspect_database
from auditor.ledger.db import connect, database_from, json_or_text
from test_corpus import CONFIG, DAY, A, B, build, key_row, scan, spend_log_row, strict_json

HUGE = "1" + "9" * 4999  # 5000 digits: past Python's 4300-digit int-from-text limit
STORED = '{"gpt-4o": {"budget_limit": %s, "time_period": "1d"}}' % HUGE


def test_json_or_text_decodes_what_python_reads_and_hands_back_the_text_of_the_rest():
    assert json_or_text('{"a": [1, 2.5, null]}') == {"a": [1, 2.5, None]}
    assert json_or_text(b'{"a": "\xc3\xa9"}') == {"a": "\u00e9"}  # psycopg hands its loader bytes
    assert json_or_text(STORED) == STORED
    assert json_or_text(STORED.encode()) == STORED
    deep = "[" * 100_000 + "]" * 100_000  # valid JSON deeper than the recursion limit
    assert json_or_text(deep) == deep
    assert json_or_text(b"{not json") == "{not json"  # a hand-edited SQLite JSON column


@pytest.fixture
def config_file(tmp_path) -> str:
    path = tmp_path / "proxy_config.yaml"
    path.write_text(CONFIG)
    return str(path)


def test_a_budget_holding_a_5000_digit_integer_is_reported_and_the_other_keys_audited(dialect_url, config_file):
    """Key alpha's value is valid JSON (jsonb stores it) that Python cannot read: reported as invalid, not a
    traceback. Key beta ($1 a day, $1.20 spent in two requests) is audited as usual: one warning, the crossing one."""
    dialect, url = dialect_url
    keys = [key_row(A, "alpha", {}), key_row(B, "beta", {"gpt-4o": {"budget_limit": 1, "time_period": "1d"}})]
    rows = [
        spend_log_row(f"r-{n}", end=end, api_key=key, spend=0.6)
        for n, (key, end) in enumerate([(A, "09:00"), (B, "09:00"), (B, "10:00")])
    ]
    build(url, keys, rows)
    stored = "CAST(:raw AS jsonb)" if dialect == "postgresql" else ":raw"
    with connect(database_from(url), read_only=False) as conn:
        conn.execute(
            text(f'UPDATE "LiteLLM_VerificationToken" SET model_max_budget = {stored} WHERE token = :token'),
            {"raw": STORED, "token": A},
        )
    result = scan(url, config_file, "2026-03-04T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    record = strict_json(result.stdout)
    # jsonb keeps its own text: shorter keys first. The message shows the text as a JSON string, cut at 60 characters.
    kept = STORED if dialect == "sqlite" else '{"gpt-4o": {"time_period": "1d", "budget_limit": %s}}' % HUGE
    invalid = [(f["severity"], f["entity_alias"], f["message"]) for f in record["findings"] if f["kind"] == "invalid_budget"]
    assert invalid == [
        (
            "error",
            "alpha",
            f"budget entry '' enforces nothing: the value holds an integer of more than 4300 digits "
            f"({json.dumps(kept)[:57]}...), which Python cannot read; LiteLLM fails on the whole value",
        )
    ]
    budget_findings = [
        (f["kind"], f["severity"], f["entity_alias"], f["budget_model"], f["logged_spend"])
        for f in record["findings"]
        if f["kind"] == "over_budget"
    ]
    assert budget_findings == [("over_budget", "warning", "beta", "gpt-4o", 1.2)]
    assert record["rows"] == {"read": 3, "attributed": 3, "unresolved": 0, "ignored": 0, "ignored_by_reason": {}}


@pytest.mark.postgres
def test_the_safe_json_loader_is_the_engines_own_not_psycopgs_global(pg_url, config_file):
    """The scan registers its loader on its engine's adapters only: any other psycopg connection in the process
    still reads jsonb with json.loads, and so still refuses the 5000-digit integer."""
    build(pg_url, [key_row(A, "alpha", {})], [])
    assert scan(pg_url, config_file, "2026-03-04T00:00:00Z").exit_code == 0
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        assert conn.execute("SELECT '[1, 2]'::jsonb").fetchone()[0] == [1, 2]
        with pytest.raises(ValueError, match="4300"):
            conn.execute(f"SELECT '{STORED}'::jsonb").fetchone()


# ---------------------------------------------------------------------------------------------
# Spend that is not an amount: the scalar (period_spend) and rollup (ledger_days) sums leave it out


def junk_spend_rows(dialect: str) -> list[dict]:
    """Key alpha, user u1, 2026-03-02: $0.50 and $0.25 charged; Infinity, -1e308 and 1e308 twice (whose sum
    overflows a double), exactly 1e15, and on PostgreSQL NaN, all charged-looking rows whose spend is not an
    amount; a failure whose spend is Infinity (a failure still), and a $2 failure."""
    spends = [0.5, 0.25, math.inf, -1e308, 1e308, 1e308, 1e15] + ([math.nan] if dialect == "postgresql" else [])
    rows = [spend_log_row(f"r-{n:02d}", end=f"{9 + n:02d}:00", spend=spend, user="u1") for n, spend in enumerate(spends)]
    rows += [
        spend_log_row("f-01", end="20:00", spend=math.inf, status="failure", user="u1"),
        spend_log_row("f-02", end="21:00", spend=2.0, status="failure", user="u1"),
    ]
    return rows


def test_scalar_and_rollup_sums_leave_out_spend_that_is_not_an_amount(dialect_url):
    dialect, url = dialect_url
    rows = junk_spend_rows(dialect)
    build(url, [key_row(A, "alpha", {})], rows)
    junk = len(rows) - 4  # all but the two charged rows and the two failures
    with connect(database_from(url)) as conn:
        caps = inspect_database(conn)
        # charged rows only: $0.50 + $0.25, 2 rows
        assert queries.period_spend(conn, caps, "key", [(A, DAY)], datetime(2026, 3, 4)) == {A: (0.75, 2)}
        assert queries.period_spend(conn, caps, "user", [("u1", DAY)], datetime(2026, 3, 4)) == {"u1": (0.75, 2)}
        # every row counted as LiteLLM's rollup counts requests; spend from finite amounts only: 0.5 + 0.25 + 2.0
        assert daily_rollups.ledger_days(conn, caps, "user", "2026-03-02", "2026-03-02") == {
            ("2026-03-02", A, "azure/prod-gpt4o", ""): daily_rollups.DayTotals(2.75, len(rows), len(rows) - 2, 2),
        }
        groups = {g.outcome: (g.spend, g.requests) for g in queries.spend_groups(conn, caps, queries.SpendFilter())}
    assert groups == {"charged": (0.75, 2), "failure": (2.0, 2), "spend not a finite amount": (0.0, junk)}


def test_a_scan_of_junk_spends_is_strict_json_with_every_row_accounted_for(dialect_url, config_file):
    dialect, url = dialect_url
    rows = junk_spend_rows(dialect)
    build(url, [key_row(A, "alpha", {"gpt-4o": {"budget_limit": 1, "time_period": "1d"}})], rows)
    result = scan(url, config_file, "2026-03-04T00:00:00Z", "--format", "json")
    assert result.exit_code == 0, result.output
    record = strict_json(result.stdout)
    junk = len(rows) - 4
    assert record["rows"] == {
        "read": len(rows),
        "attributed": 2,
        "unresolved": 0,
        "ignored": junk + 2,
        "ignored_by_reason": {"failure": 2, "spend not a finite amount": junk},
    }
    assert [(s["scope"], s["budget_model"], s["window_start"], s["logged_spend"], s["requests"]) for s in record["spend"]] == [
        ("key", "gpt-4o", "2026-03-02T09:00:00.000Z", 0.75, 2),
        ("user", None, None, 0.75, 2),  # u1's spend, which no entry of a user budget governs
    ]
    assert json.dumps(record, allow_nan=False)  # nothing non-finite anywhere in it
