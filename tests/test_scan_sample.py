"""`auditor scan` on the sample deployment, checked against sample_data/expected.json.

expected.json is computed by sample_data/generate.py::reference(), an independent plain-loop
implementation of the same semantics: this is the second method the scan must agree with.
The same sample is scanned on SQLite and on PostgreSQL (each also with its Redis counters),
through the CLI exactly as a user runs it, and the JSON is validated against the published schema.
Every scope (key, team, user, end user, team member) and every cache (Redis, LiteLLM_BudgetWindowSpend,
scalar spend, total_spend, model_spend, daily rollups) is compared finding by finding.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.sample import load_sample, load_sample_redis

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "sample_data" / "config.yaml")
EXPECTED = json.loads((REPO / "sample_data" / "expected.json").read_text())
REDIS_DUMP = json.loads((REPO / "sample_data" / "redis.json").read_text())
SCHEMA = json.loads((REPO / "auditor" / "scan.schema.json").read_text())
NOW = "2026-11-22T00:00:00Z"
REDIS_URL = os.environ.get("AUDITOR_TEST_REDIS", "redis://127.0.0.1:6379/13")  # the db the redis_client fixture flushes

runner = CliRunner()

KEYS = {k["key_alias"]: k for k in EXPECTED["keys"]}
TOKEN = {alias: k["token"] for alias, k in KEYS.items()}
COUNTERS = {(c["key"], c["store"]): c for c in EXPECTED["counters"]}
PER_MODEL = ("redis", "budget_window_spend")  # the stores of per-model counters (not scalar spend columns)
SOURCE = {"redis": "redis", "LiteLLM_BudgetWindowSpend": "budget_window_spend"}  # reference store -> scan counter_source
SCOPES = ("key", "team", "user", "end_user", "team_member")
CACHES = {"redis", "budget_window_spend", "spend", "total_spend", "model_spend", "daily_user_spend"}
# Every entity with a per-model budget: (scope, entity id as counters key it, alias as the scan shows it, its reference result)
OWNERS = [("key", k["token"], k["key_alias"], k) for k in EXPECTED["keys"]] + [
    (s["scope"], s["id"], s["alias"], s) for s in EXPECTED["other_scopes"]
]


def counter_key(alias: str, entry: str, duration: str) -> str:
    return f"virtual_key_spend:{TOKEN[alias]}:{entry}:{duration}"


def z(naive_iso: str | None) -> str | None:
    """expected.json holds naive UTC with milliseconds; the scan writes the same instant with a Z."""
    return None if naive_iso is None else naive_iso + "Z"


def close(got: float | None, expected: dict | None) -> bool:
    """A scan amount against a reference amount ({"usd", "raw"}), to 1e-9."""
    return got is not None and expected is not None and abs(got - expected["raw"]) <= 1e-9


def _expected_windows() -> dict[tuple[str, str, str, str], tuple[str, dict, dict]]:
    windows = {}
    for scope, entity, alias, owner in OWNERS:
        for entry in owner["entries"]:
            for w in entry.get("over_budget_windows", []):
                windows[(scope, entity, entry["entry"], z(w["start"]))] = (alias, entry, w)
    return windows


EXPECTED_WINDOWS = _expected_windows()


def expected_counter_findings(read_from: str) -> dict[tuple[str, str, str, str | None], dict]:
    """What the reference says the scan reports about per-model counters, when enforcement reads `read_from`:
    every drifting or miskeyed counter (Redis ones only when the scan reads Redis), and every open window
    without a counter in `read_from`, which enforcement reads as $0."""
    found = {}
    for c in EXPECTED["counters"]:
        if c["store"] == "redis" and read_from != "redis":
            continue
        if c["status"] in ("drift", "miskeyed"):
            kind = "counter_drift" if c["status"] == "drift" else "miskeyed_counter"
            found[(kind, SOURCE[c["store"]], c["key"], z(c["window_start"]))] = c
    for m in EXPECTED["missing_counters"][read_from]:
        found[("counter_drift", SOURCE[m["store"]], m["key"], z(m["window_start"]))] = dict(m, status="missing")
    return found


# ---------------------------------------------------------------------------------------------
# The sample, loaded once per dialect (module scope: loading it per test would cost seconds each)


def _load(url: str) -> str:
    with connect(DatabaseTarget(parse_database_url(url), "test"), read_only=False) as conn:
        load_sample(conn)
    return url


@pytest.fixture(scope="module")
def sample_sqlite(tmp_path_factory) -> str:
    return _load(f"sqlite:///{tmp_path_factory.mktemp('sample') / 'litellm.sqlite'}")


@pytest.fixture(scope="module")
def sample_pg(pg_database_factory) -> str:
    # pg_database_factory is what the pg_url fixture calls: a fresh database, dropped at session end.
    return _load(pg_database_factory())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def sample_db(request) -> str:
    return request.getfixturevalue("sample_sqlite" if request.param == "sqlite" else "sample_pg")


@pytest.fixture
def sample_redis(redis_client) -> str:
    """The sample's Redis counters in the test db, kept alive (their TTLs count from 2026-11-22)."""
    assert load_sample_redis(redis_client) == len(REDIS_DUMP) == 18
    for key in redis_client.scan_iter("*"):
        redis_client.persist(key)
    return REDIS_URL


_scans: dict[tuple[str, ...], object] = {}


def scan(url: str, *extra: str):
    """Run `auditor scan` (cached per argument list: the database and the sample's Redis do not change under us)."""
    args = ("scan", "--db", url, "--config", CONFIG, "--now", NOW, "--format", "json", *extra)
    if args not in _scans:
        _scans[args] = runner.invoke(app, list(args))
    return _scans[args]


def scan_json(url: str, *extra: str) -> dict:
    result = scan(url, *extra)
    assert result.exit_code in (0, 1), result.output
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    return record


def findings(record: dict, kind: str, alias: str | None = None) -> list[dict]:
    return [f for f in record["findings"] if f["kind"] == kind and (alias is None or f["entity_alias"] == alias)]


def rounded(value):
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, list):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# Against expected.json


def test_output_validates_against_the_schema(sample_db):
    record = scan_json(sample_db)
    assert record["schema_version"] == 1
    assert record["as_of"] == "2026-11-22T00:00:00.000Z"
    assert record["source"]["config"] == CONFIG


def per_model(record: dict, kind: str) -> list[dict]:
    """Findings about per-model budget entries (a scalar max_budget's findings have no budget_model)."""
    return [f for f in record["findings"] if f["kind"] == kind and f["budget_model"] is not None]


def test_every_expected_over_budget_window_in_every_scope_and_no_other(sample_db):
    record = scan_json(sample_db)
    got = {(f["scope"], f["entity_id"], f["budget_model"], f["window_start"]): f for f in per_model(record, "over_budget")}
    # keys: 19 research-agent + 12 support-bot + 1 analytics + 1 opus-tester + 2 via-budget-table + 3 daily-key;
    # team-data's gemini week, u-carol's evicted day, customer-acme's three partner days, u-erin's three agent days
    assert Counter(scope for scope, *_ in EXPECTED_WINDOWS) == {"key": 38, "team": 1, "user": 1, "end_user": 3, "team_member": 3}
    assert sorted(got) == sorted(EXPECTED_WINDOWS)
    for ident, (alias, entry, w) in EXPECTED_WINDOWS.items():
        f = got[ident]
        where = f"{ident[0]} {alias} {entry['entry']} {w['start']}"
        assert f["entity_alias"] == alias, where
        assert f["window_end"] == z(w["end"]), where
        assert close(f["logged_spend"], w["spend"]), where
        assert f["requests"] == w["requests"], where
        assert f["requests_after_limit"] == w["requests_after_limit"], where
        assert close(f["spend_after_limit"], w["spend_after_limit"]), where
        assert f["severity"] == w["severity"], where
        assert f["budget_limit"] == w["limit"] == entry["limit"], where
        assert f["time_period"] == entry["duration"], where
    for scope in SCOPES:  # each scope has a window with requests admitted after its limit
        assert any(f["severity"] == "error" for f in got.values() if f["scope"] == scope), scope


def test_windowed_spend_of_every_entry_in_every_scope(sample_db):
    """Every window the scan rebuilt, per (scope, entity, entry): as many, as many requests and as much spend as the reference."""
    record = scan_json(sample_db)
    got = defaultdict(list)
    for s in record["spend"]:
        if s["budget_model"] is not None:  # the others are spend no entry governs (no window)
            got[(s["scope"], s["entity_id"], s["budget_model"])].append(s)
    expected = {}
    for scope, entity, _alias, owner in OWNERS:
        for entry in owner["entries"]:
            if entry.get("windows"):
                expected[(scope, entity, entry["entry"])] = entry
    assert sorted(got) == sorted(expected)
    for ident, entry in expected.items():
        lines = got[ident]  # an entry that charged several model groups has a line per group in each window
        windows: dict[str, float] = defaultdict(float)
        for line in lines:
            windows[line["window_start"]] += line["logged_spend"]
        assert len(windows) == entry["windows"], ident
        assert sum(w["requests"] for w in lines) == entry["governed_rows"], ident
        assert math.fsum(windows.values()) == pytest.approx(entry["governed_spend"]["raw"], abs=1e-9), ident
        assert max(windows.values()) == pytest.approx(entry["max_window_spend"]["raw"], abs=1e-9), ident


def test_a_key_entry_replaces_the_team_entry_of_its_name(sample_db):
    """LiteLLM 1.109+: etl-gemini's own gemini-2.5-pro entry governs its requests, so the team's entry of that name
    leaves them out; data-science's entry of that name is invalid (`1y`), so its requests still count for the team."""
    record = scan_json(sample_db)
    [team] = [s for s in EXPECTED["other_scopes"] if (s["scope"], s["id"]) == ("team", "team-data")]
    [entry] = [e for e in team["entries"] if e["entry"] == "gemini-2.5-pro"]
    [aside] = entry["set_aside_for_keys"]
    assert aside["key_alias"] == "etl-gemini" and aside["rows"] == 243
    team_windows = [
        s for s in record["spend"] if (s["scope"], s["entity_id"], s["budget_model"]) == ("team", "team-data", "gemini-2.5-pro")
    ]
    assert sum(w["requests"] for w in team_windows) == entry["governed_rows"] == 540
    etl_windows = [
        s for s in record["spend"] if (s["scope"], s["entity_id"]) == ("key", TOKEN["etl-gemini"]) and s["budget_model"]
    ]
    assert sum(w["requests"] for w in etl_windows) == aside["rows"]
    assert math.fsum(w["logged_spend"] for w in etl_windows) == pytest.approx(aside["spend"]["raw"], abs=1e-9)
    [over] = [f for f in per_model(record, "over_budget") if f["scope"] == "team"]
    assert (over["entity_id"], over["entity_alias"], over["severity"]) == ("team-data", "data", "error")


def test_money_leaked_is_the_sum_of_expected_spend_after_limit(sample_db):
    record = scan_json(sample_db)
    leaked = math.fsum(
        [
            *(w["spend_after_limit"]["raw"] for _, _, w in EXPECTED_WINDOWS.values()),
            *(x["spend_after_limit"]["raw"] for x in EXPECTED["scalar"] if x["kind"] == "over_budget"),
        ]
    )
    assert record["totals"]["money_leaked"] == pytest.approx(leaked, abs=1e-6)  # the total is rounded to 6 decimals
    # keys research-agent, analytics, opus-tester, via-budget-table, daily-key (support-bot only ever overshoots),
    # bi-dashboards (its max_budget, enforced from a spend column stuck at $0); team-data, u-carol, customer-acme,
    # u-erin in team-platform
    assert record["totals"]["entities_leaking"] == 10


def test_invalid_and_unenforceable_entries(sample_db):
    record = scan_json(sample_db)
    invalid = {(f["entity_alias"], f["budget_model"], f["severity"]) for f in per_model(record, "invalid_budget")}
    assert invalid == {("legacy-batch", "gpt-4o-mini", "error"), ("data-science", "gemini-2.5-pro", "error")}
    unenforceable = {(f["entity_alias"], f["budget_model"]) for f in per_model(record, "unenforceable_budget")}
    assert unenforceable == {("typo-key", "claude-opus-4.6"), ("deploy-name-key", "openai/gpt-4o-mini")}


def assert_counter_findings(record: dict, read_from: str) -> dict[str, list[dict]]:
    """The per-model counter findings, exactly those the reference expects, value for value; returned by counter key."""
    expected = expected_counter_findings(read_from)
    got = {
        (f["kind"], f["counter_source"], f["counter_key"], f["window_start"]): f
        for f in record["findings"]
        if f["counter_source"] in PER_MODEL
    }
    assert sorted(got) == sorted(expected)
    for ident, c in expected.items():
        f, where = got[ident], f"{ident[1]} {ident[2]} ({c['status']})"
        assert (f["scope"], f["entity_id"], f["entity_alias"]) == (c["scope"], c["entity_id"], c["alias"]), where
        assert close(f["cached_spend"], c["cached"]), where
        if c["status"] == "miskeyed":
            assert (f["model"], f["time_period"], f["severity"]) == (c["entry"], c["duration"], "warning"), where
            continue
        assert (f["budget_model"], f["time_period"], f["budget_limit"]) == (c["entry"], c["duration"], c["limit"]), where
        assert f["window_end"] == z(c["window_end"]), where
        assert close(f["logged_spend"], c["ledger"]), where
        is_open = c["window_start"] <= EXPECTED["snapshot_time"] < c["window_end"]
        assert f["severity"] == ("error" if is_open else "warning"), where  # a missing counter's window is open
    by_key = defaultdict(list)
    for f in got.values():
        by_key[f["counter_key"]].append(f)
    return by_key


def test_budget_window_spend_counters(sample_db):
    """Without Redis, enforcement reads LiteLLM_BudgetWindowSpend: its rows against the ledger, and every open
    window (end users aside: their windows stay on each replica) that has no row there."""
    record = scan_json(sample_db)
    by_key = assert_counter_findings(record, "LiteLLM_BudgetWindowSpend")

    # via-budget-table's row lost a flush: cached and ledger as reference() computed them
    key = counter_key("via-budget-table", "gpt-4o-mini", "1d")
    expected = COUNTERS[(key, "LiteLLM_BudgetWindowSpend")]
    [drift] = [f for f in by_key[key] if f["window_start"] == z(expected["window_start"])]
    assert drift["kind"] == "counter_drift"
    assert drift["severity"] == "warning"  # its window closed 2026-11-21T18:27: nothing reads it any more

    # typo-key's replica flushed a claude-opus-4-6:1d window though the entry is claude-opus-4.6
    key = counter_key("typo-key", "claude-opus-4-6", "1d")
    [miskeyed] = findings(record, "miskeyed_counter", "typo-key")
    assert miskeyed["counter_key"] == key
    assert miskeyed["resolves_to"] == "claude-opus-4-6"

    # u-erin's team-member window (entity `6:u-erin:team-platform`) lacks its last flush: closed, so a warning
    key = "team_member_model_spend:6:u-erin:team-platform:claude-sonnet-4-5:1d"
    [erin] = by_key[key]
    assert (erin["kind"], erin["scope"], erin["entity_id"], erin["severity"]) == (
        "counter_drift",
        "team_member",
        "6:u-erin:team-platform",
        "warning",
    )
    assert erin["cached_spend"] < erin["logged_spend"]

    # premium-user's shared window matches the ledger: nothing to say about it from this table
    premium = counter_key("premium-user", "premium", "monthly")
    assert COUNTERS[(premium, "LiteLLM_BudgetWindowSpend")]["status"] == "ok"
    assert not by_key[premium]

    # open windows of every scope but end users, with no row in the table: read as $0
    missing = {f["scope"] for fs in by_key.values() for f in fs if f["cached_spend"] == 0.0}
    assert missing == {"key", "team", "user", "team_member"}


def test_scalar_spend_total_spend_and_whole_entity_budgets(sample_db):
    """`spend` over each entity's current period, `total_spend` over the whole ledger (no retention is configured),
    and max_budget over the period: exactly the reference's findings."""
    record = scan_json(sample_db)
    got = {
        (f["scope"], f["entity_id"], f["counter_source"] or f["kind"]): f
        for f in record["findings"]
        if f["counter_source"] in ("spend", "total_spend") or (f["kind"] == "over_budget" and f["budget_model"] is None)
    }
    expected = {
        (x["scope"], x["entity_id"], x["column"] if x["kind"] == "counter_drift" else "over_budget"): x
        for x in EXPECTED["scalar"]
    }
    assert sorted(got) == sorted(expected)
    assert {ident[2] for ident in expected} == {"spend", "total_spend", "over_budget"}
    for ident, x in expected.items():
        f, where = got[ident], str(ident)
        assert (f["kind"], f["severity"], f["entity_alias"]) == (x["kind"], x["severity"], x["alias"]), where
        assert close(f["logged_spend"], x["ledger"]), where
        if x["kind"] == "counter_drift":
            assert close(f["cached_spend"], x["cached"]), where
        if x["kind"] == "over_budget":
            assert f["requests_after_limit"] == x["requests_after_limit"], where
            assert close(f["spend_after_limit"], x["spend_after_limit"]), where
        if x["column"] != "total_spend":
            assert f["budget_limit"] == x["max_budget"], where
            assert (f["window_start"], f["window_end"]) == (z(x["period_start"]), z(x["period_end"])), where
    # bi-dashboards' spend stuck at $0 (an error: its max_budget was enforced from $0); team-data's lags its month
    assert got[("key", TOKEN["bi-dashboards"], "spend")]["severity"] == "error"
    assert got[("team", "team-data", "spend")]["window_start"] == "2026-11-01T00:00:00.000Z"
    assert not [n for n in record["notes"] if n.startswith("scalar spend not compared")]  # nothing skipped


def test_model_spend_and_daily_rollups(sample_db):
    record = scan_json(sample_db)
    legacy = {f["counter_key"]: f for f in record["findings"] if f["counter_source"] == "model_spend"}
    assert sorted(legacy) == sorted(", ".join(x["names"]) for x in EXPECTED["model_spend"])
    for x in EXPECTED["model_spend"]:
        f = legacy[", ".join(x["names"])]
        assert (f["entity_id"], f["entity_alias"], f["model_group"], f["severity"]) == (
            x["token"],
            x["key_alias"],
            x["group"],
            "info",
        )
        assert close(f["cached_spend"], x["cached"]) and close(f["logged_spend"], x["ledger"])
    [d] = EXPECTED["rollups"]["discrepancies"]
    [f] = [f for f in record["findings"] if f["counter_source"] == "daily_user_spend"]
    assert (f["kind"], f["entity_id"], f["model"], f["window_start"]) == (
        "rollup_drift",
        d["api_key"],
        d["model"],
        z(d["date"] + "T00:00:00.000"),
    )
    assert close(f["cached_spend"], d["rollup_spend"]) and close(f["logged_spend"], d["ledger_spend"])
    assert (f["cached_requests"], f["requests"]) == (d["rollup_requests"], d["ledger_requests"])


def test_every_scope_and_every_cache_but_redis_has_a_finding(sample_db):
    record = scan_json(sample_db)
    assert {f["scope"] for f in record["findings"]} >= set(SCOPES)
    assert {f["counter_source"] for f in record["findings"]} - {None} == CACHES - {"redis"}


def test_row_accounting(sample_db):
    record = scan_json(sample_db)
    rows, totals = record["rows"], EXPECTED["totals"]
    assert rows["read"] == totals["rows"] == 6256
    assert rows["read"] == rows["attributed"] + rows["unresolved"] + rows["ignored"]
    assert rows["ignored"] == sum(rows["ignored_by_reason"].values())
    assert rows["ignored_by_reason"]["failure"] == totals["failed"] == 476
    # key-less rows that failed count as failures (checked first): 93 key-less, 6 of them failed
    assert rows["ignored_by_reason"]["empty api_key"] == 87
    assert set(rows["ignored_by_reason"]) == {"failure", "empty api_key"}


def test_only_the_ollama_model_is_unresolved(sample_db):
    record = scan_json(sample_db)
    unresolved = findings(record, "unresolved_model")
    assert {f["model"] for f in unresolved} == set(EXPECTED["totals"]["unresolved_models"])
    assert not findings(record, "ambiguous_model")
    # charged, keyed ollama rows: 130 in all, minus 54 key-less successes, 6 key-less and 3 keyed failures
    assert sum(f["requests"] for f in unresolved) == record["rows"]["unresolved"] == 67
    assert all(f["logged_spend"] == 0 for f in unresolved)


@pytest.mark.postgres
def test_sqlite_and_postgresql_agree(sample_sqlite, sample_pg):
    lite, pg = scan_json(sample_sqlite), scan_json(sample_pg)
    assert rounded(lite["findings"]) == rounded(pg["findings"])
    assert rounded(lite["spend"]) == rounded(pg["spend"])
    assert lite["rows"] == pg["rows"]
    assert rounded(lite["totals"]) == rounded(pg["totals"])
    assert (lite["source"]["dialect"], pg["source"]["dialect"]) == ("sqlite", "postgresql")


def test_exit_codes_follow_fail_on(sample_db):
    assert scan(sample_db).exit_code == 1  # default --fail-on error, and there are errors
    assert scan(sample_db, "--fail-on", "never").exit_code == 0
    assert json.loads(scan(sample_db, "--fail-on", "never").stdout) == json.loads(scan(sample_db).stdout)


# ---------------------------------------------------------------------------------------------
# With the sample's Redis counters


@pytest.mark.redis
def test_redis_counters(sample_db, sample_redis):
    record = scan_json(sample_db, "--redis", sample_redis)
    assert record["source"]["redis"] == REDIS_URL
    by_key = assert_counter_findings(record, "redis")

    # opus-tester: twice the ledger (a reseed race), in its open 30d window
    [drift] = by_key[counter_key("opus-tester", "claude-opus*", "30d")]
    assert (drift["kind"], drift["counter_source"], drift["severity"]) == ("counter_drift", "redis", "error")
    assert drift["cached_spend"] == pytest.approx(2 * drift["logged_spend"])

    # research-agent: the only counter is keyed on the deployment name (start key per entity, 1.82-1.98)
    key = counter_key("research-agent", "vertex_ai/claude-opus-4-6@default", "1d")
    [miskeyed] = by_key[key]
    assert (miskeyed["kind"], miskeyed["counter_source"]) == ("miskeyed_counter", "redis")
    assert miskeyed["window_start"] == z(COUNTERS[(key, "redis")]["window_start"])

    # ... so the counter enforcement reads, claude-opus-4-6:1d, is missing: read as $0
    [missing] = by_key[counter_key("research-agent", "claude-opus-4-6", "1d")]
    last = KEYS["research-agent"]["entries"][0]["over_budget_windows"][-1]  # the window open at --now
    assert (missing["cached_spend"], missing["window_start"]) == (0.0, z(last["start"]))
    assert close(missing["logged_spend"], last["spend"])

    # team-data's counter lost bi-dashboards' increments of 11-18 and 11-19: it reads less than the ledger, in the open
    # window that went over budget with requests admitted after the limit
    [team] = by_key["team_model_spend:team-data:gemini-2.5-pro:7d"]
    assert (team["kind"], team["scope"], team["severity"]) == ("counter_drift", "team", "error")
    assert team["cached_spend"] < team["budget_limit"] < team["logged_spend"]
    [over] = [f for f in per_model(record, "over_budget") if f["scope"] == "team"]
    assert over["window_start"] == team["window_start"] and over["logged_spend"] == pytest.approx(team["logged_spend"])

    # customer-acme's windows stay on each replica: Redis has no end-user counter for the open window
    [end_user] = by_key["end_user_model_spend:customer-acme:gpt-4o-mini:1d"]
    assert (end_user["scope"], end_user["cached_spend"], end_user["severity"]) == ("end_user", 0.0, "error")

    # matching counters: keys (entry-keyed, `daily`), u-carol's user window, u-alice's team-member window
    for key, store in (
        (counter_key("analytics", "claude-sonnet-4-5", "7d"), "redis"),
        (counter_key("daily-key", "gpt-4o", "daily"), "redis"),
        (counter_key("etl-gemini", "gemini-2.5-pro", "7d"), "redis"),
        ("user_model_spend:u-carol:claude-sonnet-4-5:1d", "redis"),
        ("team_member_model_spend:7:u-alice:team-platform:claude-sonnet-4-5:1d", "redis"),
    ):
        assert COUNTERS[(key, store)]["status"] == "ok"
        assert not by_key[key]

    # the unrelated keys are not counters
    assert not [f for f in record["findings"] if f["counter_key"] in EXPECTED["ignored_redis_keys"]]
    # the database's BudgetWindowSpend findings are still reported
    assert counter_key("via-budget-table", "gpt-4o-mini", "1d") in by_key
    assert counter_key("typo-key", "claude-opus-4-6", "1d") in by_key


@pytest.mark.redis
def test_every_scope_and_every_cache_has_a_finding(sample_db, sample_redis):
    record = scan_json(sample_db, "--redis", sample_redis)
    assert {f["scope"] for f in record["findings"]} >= set(SCOPES)
    for scope in SCOPES:
        assert [f for f in per_model(record, "over_budget") if f["scope"] == scope and f["severity"] == "error"], scope
    assert {f["counter_source"] for f in record["findings"]} - {None} == CACHES
    assert {f["scope"] for f in record["findings"] if f["counter_source"] == "redis"} == {"key", "team", "end_user"}
