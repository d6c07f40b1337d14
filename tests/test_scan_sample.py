"""`auditor scan` on the sample deployment, checked against sample_data/expected.json.

expected.json is computed by sample_data/generate.py::reference(), an independent plain-loop
implementation of the same semantics: this is the second method the scan must agree with.
The same sample is scanned on SQLite and on PostgreSQL (and once more with its Redis counters),
through the CLI exactly as a user runs it, and the JSON is validated against the published schema.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from auditor.cli import app
from auditor.db import DatabaseTarget, connect, parse_database_url
from auditor.sample import load_sample, load_sample_redis

REPO = Path(__file__).resolve().parent.parent
CONFIG = str(REPO / "sample_data" / "config.yaml")
EXPECTED = json.loads((REPO / "sample_data" / "expected.json").read_text())
SCHEMA = json.loads((REPO / "auditor" / "scan.schema.json").read_text())
NOW = "2026-11-22T00:00:00Z"
REDIS_URL = "redis://127.0.0.1:6379/13"  # the db the redis_client fixture flushes

runner = CliRunner()

KEYS = {k["key_alias"]: k for k in EXPECTED["keys"]}
TOKEN = {alias: k["token"] for alias, k in KEYS.items()}
ALIAS_OF = {k["token"]: alias for alias, k in KEYS.items()}
COUNTERS = {c["key"]: c for c in EXPECTED["counters"]}
PER_MODEL = ("redis", "budget_window_spend")  # the stores of per-model counters (not scalar spend columns)


def counter_key(alias: str, entry: str, duration: str) -> str:
    return f"virtual_key_spend:{TOKEN[alias]}:{entry}:{duration}"


def z(naive_iso: str) -> str:
    """expected.json holds naive UTC with milliseconds; the scan writes the same instant with a Z."""
    return naive_iso + "Z"


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


_scans: dict[tuple[str, ...], object] = {}


def scan(url: str, *extra: str):
    """Run `auditor scan` (cached per argument list: the database does not change under us)."""
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


def test_every_expected_over_budget_window_and_no_other(sample_db):
    record = scan_json(sample_db)
    expected = {}
    for owner in [*EXPECTED["keys"], *EXPECTED["other_scopes"]]:  # other scopes: none over, to check none is found
        for entry in owner.get("entries", []):
            for w in entry.get("over_budget_windows", []):
                expected[(owner.get("token", owner.get("id")), entry["entry"], z(w["start"]))] = (owner, entry, w)
    got = {(f["entity_id"], f["budget_model"], f["window_start"]): f for f in per_model(record, "over_budget")}
    assert len(expected) == 38  # 19 research-agent + 12 support-bot + 1 analytics + 1 opus-tester + 2 + 3
    assert sorted(got) == sorted(expected)
    for ident, (key, entry, w) in expected.items():
        f = got[ident]
        where = f"{key['key_alias']} {entry['entry']} {w['start']}"
        assert f["scope"] == "key", where
        assert f["window_end"] == z(w["end"]), where
        assert abs(f["logged_spend"] - w["spend"]["raw"]) <= 1e-9, where
        assert f["requests"] == w["requests"], where
        assert f["requests_after_limit"] == w["requests_after_limit"], where
        assert abs(f["spend_after_limit"] - w["spend_after_limit"]["raw"]) <= 1e-9, where
        assert f["severity"] == w["severity"], where
        assert f["budget_limit"] == w["limit"] == entry["limit"], where
        assert f["time_period"] == entry["duration"], where
        assert f["entity_alias"] == key["key_alias"], where


def test_money_leaked_is_the_sum_of_expected_spend_after_limit(sample_db):
    record = scan_json(sample_db)
    leaked = math.fsum(
        w["spend_after_limit"]["raw"] for k in EXPECTED["keys"] for e in k.get("entries", []) for w in e.get("over_budget_windows", [])
    )
    assert record["totals"]["money_leaked"] == pytest.approx(leaked, abs=1e-6)  # the total is rounded to 6 decimals
    # research-agent, analytics, opus-tester, via-budget-table, daily-key (support-bot only ever overshoots)
    assert record["totals"]["entities_leaking"] == 5


def test_invalid_and_unenforceable_entries(sample_db):
    record = scan_json(sample_db)
    invalid = {(f["entity_alias"], f["budget_model"], f["severity"]) for f in per_model(record, "invalid_budget")}
    assert invalid == {("legacy-batch", "gpt-4o-mini", "error"), ("data-science", "gemini-2.5-pro", "error")}
    unenforceable = {(f["entity_alias"], f["budget_model"]) for f in per_model(record, "unenforceable_budget")}
    assert unenforceable == {("typo-key", "claude-opus-4.6"), ("deploy-name-key", "openai/gpt-4o-mini")}


def test_budget_window_spend_counters(sample_db):
    record = scan_json(sample_db)
    # via-budget-table's row lost a flush: cached and ledger as reference() computed them
    key = counter_key("via-budget-table", "gpt-4o-mini", "1d")
    expected = COUNTERS[key]
    [drift] = [
        f for f in findings(record, "counter_drift", "via-budget-table")
        if f["counter_source"] == "budget_window_spend" and f["window_start"] == z(expected["window_start"])
    ]
    assert drift["counter_key"] == key
    assert abs(drift["cached_spend"] - expected["cached"]["raw"]) <= 1e-9
    assert abs(drift["logged_spend"] - expected["ledger"]["raw"]) <= 1e-9
    assert drift["severity"] == "warning"  # its window closed 2026-11-21T18:27: nothing reads it any more

    # typo-key's replica flushed a claude-opus-4-6:1d window though the entry is claude-opus-4.6
    key = counter_key("typo-key", "claude-opus-4-6", "1d")
    [miskeyed] = findings(record, "miskeyed_counter", "typo-key")
    assert miskeyed["counter_key"] == key
    assert miskeyed["counter_source"] == "budget_window_spend"
    assert abs(miskeyed["cached_spend"] - COUNTERS[key]["cached"]["raw"]) <= 1e-9
    assert miskeyed["window_start"] == z(COUNTERS[key]["window_start"])
    assert miskeyed["resolves_to"] == "claude-opus-4-6"

    # premium-user's shared window matches the ledger: nothing to say about it from this table
    premium = counter_key("premium-user", "premium", "monthly")
    assert COUNTERS[premium]["status"] == "ok"
    assert not [f for f in record["findings"] if f["counter_key"] == premium]


def test_row_accounting(sample_db):
    record = scan_json(sample_db)
    rows, totals = record["rows"], EXPECTED["totals"]
    assert rows["read"] == totals["rows"] == 5051
    assert rows["read"] == rows["attributed"] + rows["unresolved"] + rows["ignored"]
    assert rows["ignored"] == sum(rows["ignored_by_reason"].values())
    assert rows["ignored_by_reason"]["failure"] == totals["failed"] == 238
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
# With the sample's Redis counters (PostgreSQL)


@pytest.mark.postgres
@pytest.mark.redis
def test_redis_counters(sample_pg, redis_client):
    assert load_sample_redis(redis_client) == 10
    for key in redis_client.scan_iter("*"):
        redis_client.persist(key)  # the sample's TTLs count from 2026-11-22: keep every key alive
    record = scan_json(sample_pg, "--redis", REDIS_URL)
    assert record["source"]["redis"] == REDIS_URL
    by_key = {f["counter_key"]: f for f in record["findings"] if f["counter_key"]}

    # opus-tester: twice the ledger (a reseed race), in its open 30d window
    key = counter_key("opus-tester", "claude-opus*", "30d")
    drift, expected = by_key[key], COUNTERS[key]
    assert (drift["kind"], drift["counter_source"], drift["severity"]) == ("counter_drift", "redis", "error")
    assert abs(drift["cached_spend"] - expected["cached"]["raw"]) <= 1e-9
    assert abs(drift["logged_spend"] - expected["ledger"]["raw"]) <= 1e-9
    assert drift["window_start"] == z(expected["window_start"])

    # research-agent: the only counter is keyed on the deployment name (start key per entity, 1.82-1.98)
    key = counter_key("research-agent", "vertex_ai/claude-opus-4-6@default", "1d")
    miskeyed = by_key[key]
    assert (miskeyed["kind"], miskeyed["counter_source"]) == ("miskeyed_counter", "redis")
    assert miskeyed["model"] == "vertex_ai/claude-opus-4-6@default"
    assert miskeyed["time_period"] == "1d"
    assert miskeyed["window_start"] == z(COUNTERS[key]["window_start"])
    assert abs(miskeyed["cached_spend"] - COUNTERS[key]["cached"]["raw"]) <= 1e-9

    # ... so the counter enforcement reads, claude-opus-4-6:1d, is missing: read as $0
    key = counter_key("research-agent", "claude-opus-4-6", "1d")
    missing = by_key[key]
    assert (missing["kind"], missing["counter_source"], missing["severity"]) == ("counter_drift", "redis", "error")
    assert missing["cached_spend"] == 0.0
    last = KEYS["research-agent"]["entries"][0]["over_budget_windows"][-1]  # the window open at --now
    assert missing["window_start"] == z(last["start"])
    assert abs(missing["logged_spend"] - last["spend"]["raw"]) <= 1e-9

    # analytics (entry key) and daily-key (`daily`, start 0.35 s after the charge) match the ledger
    for alias, entry, duration in (("analytics", "claude-sonnet-4-5", "7d"), ("daily-key", "gpt-4o", "daily")):
        assert COUNTERS[counter_key(alias, entry, duration)]["status"] == "ok"
        assert not [
            f for f in record["findings"]
            if f["kind"] in ("counter_drift", "miskeyed_counter") and f["entity_alias"] == alias and f["counter_source"] in PER_MODEL
        ]

    # the unrelated keys are not counters
    assert not [f for f in record["findings"] if f["counter_key"] in EXPECTED["ignored_redis_keys"]]
    # the database's BudgetWindowSpend findings are still reported
    assert counter_key("via-budget-table", "gpt-4o-mini", "1d") in {
        f["counter_key"] for f in findings(record, "counter_drift", "via-budget-table") if f["counter_source"] == "budget_window_spend"
    }
    assert counter_key("typo-key", "claude-opus-4-6", "1d") in by_key
