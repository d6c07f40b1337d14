"""`auditor scan` on deployments written by LiteLLM 1.83.7 and 1.90.7 themselves (tests/eras/*.json, recorded by
tests/eras/record.py with those releases' own router, spend-log writer and limiter), judged by their era.

A clean 1.90.7 deployment (Redis on, as enable_redis_auth_cache gives it) must give no false finding; 1.83.7's
known leak (#25549: counters charged under the deployment, checked under the model requested) must be found.
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from sqlalchemy import create_engine
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.capabilities import VERSION_MARKERS
from auditor.ledger.schema import budget_table, end_user_table, metadata, spend_logs, verification_token
from auditor.litellm.eras import parse_version

FIXTURES = Path(__file__).parent / "eras"
SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "auditor" / "scan.schema.json").read_text())
REDIS_URL = os.environ.get("AUDITOR_TEST_REDIS", "redis://127.0.0.1:6379/13")  # the db the redis_client fixture flushes
runner = CliRunner()


def load(version: str) -> dict:
    return json.loads((FIXTURES / f"litellm-{version}.json").read_text())


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def deploy(data: dict, url: str, tmp_path) -> str:
    """The fixture as LiteLLM's database holds it: keys (scalar spend = their ledger, as the spend writer keeps it),
    the end user's budget, the spend rows. Returns the config path."""
    rows = [{**r, "startTime": when(r["startTime"]), "endTime": when(r["endTime"]), "metadata": {}} for r in data["spend_logs"]]
    keys = [
        {
            "token": k["token"],
            "key_alias": k["key_alias"],
            "model_max_budget": k["model_max_budget"],
            "spend": math.fsum(r["spend"] for r in rows if r["api_key"] == k["token"]),
        }
        for k in data["keys"]
    ]
    budgets = [
        {
            "budget_id": f"budget-{u['user_id']}",
            "model_max_budget": u["model_max_budget"],
            "created_by": "test",
            "updated_by": "test",
        }
        for u in data["end_users"]
    ]
    end_users = [
        {
            "user_id": u["user_id"],
            "budget_id": f"budget-{u['user_id']}",
            "spend": math.fsum(r["spend"] for r in rows if r["end_user"] == u["user_id"]),
        }
        for u in data["end_users"]
    ]
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(verification_token.insert(), keys)
        conn.execute(budget_table.insert(), budgets)
        conn.execute(end_user_table.insert(), end_users)
        conn.execute(spend_logs.insert(), rows)
        as_released(conn, parse_version(data["litellm_version"]))
    engine.dispose()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data["config"]))
    return str(config)


def as_released(conn, version) -> None:
    """Drop what that release's schema did not have yet (the markers auditor dates a schema by)."""
    for table, column, since in VERSION_MARKERS:
        if parse_version(since) <= version:
            continue
        if column is None:
            conn.exec_driver_sql(f'DROP TABLE "{table}"')
        else:
            conn.exec_driver_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')


def scan(url: str, config: str, data: dict, *extra: str) -> dict:
    result = runner.invoke(
        app,
        ["scan", "--db", url, "--config", config, "--now", data["now"] + "Z", "--format", "json", "--fail-on", "never", *extra],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    jsonschema.validate(record, SCHEMA)
    return record


def counters(record: dict) -> list[dict]:
    return [
        f
        for f in record["findings"]
        if f["kind"] in ("counter_drift", "miskeyed_counter") and f["counter_source"] in ("redis", "budget_window_spend")
    ]


@pytest.mark.redis
def test_a_clean_1_90_7_deployment_gives_no_false_finding(any_url, tmp_path, redis_client):
    data = load("1.90.7")
    config = deploy(data, any_url, tmp_path)
    now = when(data["now"])
    for name, cell in data["redis"].items():
        redis_client.set(name, cell["value"], px=int((when(cell["expires_at"]) - now).total_seconds() * 1000))
    record = scan(any_url, config, data, "--redis", REDIS_URL)
    era = record["source"]["era"]
    assert (era["era"], era["origin"], era["certain"]) == ("1.84-1.98", "schema markers and counter keys", True)  # no flag needed
    assert counters(record) == []
    # the one error: the 0 cap, which before 1.99 means no limit (its requests all went through, rightly)
    zero = next(k["token"] for k in data["keys"] if k["key_alias"] == "zero")
    (invalid,) = [f for f in record["findings"] if f["severity"] == "error"]
    assert (invalid["kind"], invalid["entity_id"], invalid["budget_limit"]) == ("invalid_budget", zero, 0.0)
    assert "0 means no limit" in invalid["message"]
    over = [f for f in record["findings"] if f["kind"] == "over_budget"]
    assert over and all(f["requests_after_limit"] == 0 for f in over)  # only the crossing requests overshot
    assert {f["kind"] for f in record["findings"]} == {"over_budget", "invalid_budget"}


def test_the_1_83_7_leak_is_found_and_its_counters_are_not_looked_for(any_url, tmp_path):
    data = load("1.83.7")
    config = deploy(data, any_url, tmp_path)
    record = scan(any_url, config, data, "--litellm-version", "1.83.7")
    keys = {k["key_alias"]: k["token"] for k in data["keys"]}
    errors = [f for f in record["findings"] if f["severity"] == "error" and f["kind"] != "invalid_budget"]
    assert errors and {f["kind"] for f in errors} == {"over_budget"}
    invalid = [(f["entity_id"], f["budget_model"]) for f in record["findings"] if f["kind"] == "invalid_budget"]
    assert invalid == [(keys["zero"], "gpt-4o")]  # a 0 cap is no limit before 1.99
    leaked = {(f["scope"], f["entity_id"], f["budget_model"]) for f in errors}
    assert leaked == {
        ("key", keys["research"], "gpt-4o"),
        ("key", keys["research"], "gpt-4o-mini"),
        ("key", keys["mixed"], "gpt-4o"),
        ("key", keys["mixed"], "gpt-4o-mini"),
        ("end_user", "cust-1", "gpt-4o-mini"),
    }
    assert not any(
        f["entity_id"] in (keys["wild"], keys["zero"])
        for f in record["findings"]
        if f["kind"] == "over_budget" and f["severity"] == "error"
    )  # its wildcard route was enforced; a 0 cap is unlimited before 1.99
    assert counters(record) == []
    assert any("worker's memory" in note for note in record["notes"])
    research = [f for f in errors if f["entity_id"] == keys["research"] and f["budget_model"] == "gpt-4o"]
    assert sum(f["requests_after_limit"] for f in research) > 10


def test_the_same_1_83_7_ledger_judged_by_1_110_rules_finds_other_windows(any_url, tmp_path):
    """Why the era matters: 1.109+ rules (a window per entry, `>=`, 0 blocks) read the same rows differently."""
    data = load("1.83.7")
    config = deploy(data, any_url, tmp_path)
    old = scan(any_url, config, data, "--litellm-version", "1.83.7")
    new = scan(any_url, config, data, "--litellm-version", "1.110.2")
    zero = next(k["token"] for k in data["keys"] if k["key_alias"] == "zero")
    assert not any(f["entity_id"] == zero for f in old["findings"] if f["kind"] == "over_budget")
    assert any(f["entity_id"] == zero and f["severity"] == "error" for f in new["findings"] if f["kind"] == "over_budget")


@pytest.mark.redis
def test_backfill_on_1_90_7_writes_the_counter_that_era_reads(sqlite_url, tmp_path, redis_client):
    """A 1.90.7 key's Redis counter that lost increments: a warning (each worker enforces its own memory first), and
    backfill plans that counter, under the name that era reads, back to the replay's value."""
    data = load("1.90.7")
    config = deploy(data, sqlite_url, tmp_path)
    now = when(data["now"])
    mixed = next(k["token"] for k in data["keys"] if k["key_alias"] == "mixed")
    lagging = f"virtual_key_spend:{mixed}:gpt-4o:1d"
    for name, cell in data["redis"].items():
        value = "0.01" if name == lagging else cell["value"]
        redis_client.set(name, value, px=int((when(cell["expires_at"]) - now).total_seconds() * 1000))
    record = scan(sqlite_url, config, data, "--redis", REDIS_URL)
    (drift,) = counters(record)
    assert (drift["counter_key"], drift["severity"], drift["budget_model"], drift["cached_spend"]) == (
        lagging,
        "warning",
        "gpt-4o",
        0.01,
    )
    assert drift["logged_spend"] == pytest.approx(float(data["redis"][lagging]["value"]))
    result = runner.invoke(
        app,
        [
            "backfill",
            "--db",
            sqlite_url,
            "--config",
            config,
            "--redis",
            REDIS_URL,
            "--now",
            data["now"] + "Z",
            "--format",
            "json",
        ],
    )
    assert result.exit_code in (0, 1), result.output
    plan = json.loads(result.stdout)
    assert (plan["layout"]["name"], plan["layout"]["era"]) == ("alias", "1.84-1.98")
    (write,) = [w for w in plan["writes"] + plan["skipped"] if w["target"] == "redis"]
    assert write["keys"] == [lagging] and write["new_value"] == pytest.approx(drift["logged_spend"])


@pytest.mark.redis
def test_1_83_7_counters_copied_into_redis_are_named_for_what_they_are(sqlite_url, tmp_path, redis_client):
    """1.83.7's worker memory copied into Redis (its limiter never had Redis): the schema's era stands, the counters
    named after the deployment are miskeyed (no check reads `openai/gpt-4o`), and no counter is reported missing: that
    era keeps them in memory only."""
    data = load("1.83.7")
    config = deploy(data, sqlite_url, tmp_path)
    now = when(data["now"])
    live = {name: cell for name, cell in data["memory"].items() if when(cell["expires_at"]) > now}
    for name, cell in live.items():
        redis_client.set(name, repr(cell["value"]), px=int((when(cell["expires_at"]) - now).total_seconds() * 1000))
    record = scan(sqlite_url, config, data, "--redis", REDIS_URL)
    era = record["source"]["era"]
    assert era["era"] == "1.83.8-1.83.14" and any("the schema says otherwise" in line for line in era["evidence"])
    found = counters(record)
    spend_keys = sorted(n for n in live if n.split(":")[0].endswith("_spend"))
    deployment_named = [n for n in spend_keys if ":openai/" in n]
    assert deployment_named and sorted(f["counter_key"] for f in found) == deployment_named
    assert {f["kind"] for f in found} == {"miskeyed_counter"}
    assert {(f["model"], f["resolves_to"]) for f in found} <= {("openai/gpt-4o", "gpt-4o"), ("openai/gpt-4o-mini", "gpt-4o-mini")}


@pytest.mark.redis
@pytest.mark.parametrize(("cached", "drift"), [("3.0", False), ("2.0", True)])
def test_a_wildcard_routes_counter_is_the_one_1_90_reads(sqlite_url, tmp_path, redis_client, cached, drift):
    """Before 1.99 the counter is named after the model requested: `anthropic/claude-3-haiku` (through the
    `anthropic/*` route) is read for entry `claude-3-haiku` by its last segment, so it is the live counter, compared
    with the replay (1 + 2 = 3 since the key's start), not a miskeyed one with an entry-named twin missing."""
    from test_scan_focused import A, at, build, charge, epoch, iso

    route = dict(model="anthropic/claude-3-haiku", model_group="anthropic/claude-3-haiku", model_id="dep-anthropic")
    build(
        sqlite_url,
        [{"token": A, "key_alias": "alpha", "model_max_budget": {"claude-3-haiku": {"budget_limit": 10, "time_period": "1d"}}}],
        [charge(at(1), 1.0, **route), charge(at(2), 2.0, **route)],
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n  - model_name: anthropic/*\n    litellm_params:\n      model: anthropic/*\n    model_info:\n      id: dep-anthropic\n"
    )
    redis_client.set(f"virtual_key_spend:{A}:anthropic/claude-3-haiku:1d", cached, ex=86400)
    redis_client.set(f"virtual_key_budget_start_time:{A}", repr(epoch(at(1))), ex=86400)
    result = runner.invoke(
        app,
        [
            "scan",
            "--db",
            sqlite_url,
            "--config",
            str(config),
            "--redis",
            REDIS_URL,
            "--now",
            iso(at(3)),
            "--format",
            "json",
            "--fail-on",
            "never",
            "--litellm-version",
            "1.90.7",
        ],
    )
    assert result.exit_code == 0, result.output
    found = counters(json.loads(result.stdout))
    if not drift:
        assert found == []
    else:
        (finding,) = found
        assert (
            finding["kind"],
            finding["severity"],
            finding["budget_model"],
            finding["cached_spend"],
            finding["logged_spend"],
        ) == ("counter_drift", "warning", "claude-3-haiku", 2.0, 3.0)
        assert (finding["window_start"], finding["window_end"]) == (iso(at(1)), iso(at(1, days=1)))


def test_report_judges_by_the_era_and_keeps_no_checkpoint_of_shared_windows(sqlite_url, tmp_path):
    """`report --litellm-version 1.83.7 --incremental` twice: the same findings as `scan`, each run a full read that
    says why (shared windows are rebuilt from the whole ledger), and no checkpoint stored."""
    data = load("1.83.7")
    config = deploy(data, sqlite_url, tmp_path)
    scanned = scan(sqlite_url, config, data, "--litellm-version", "1.83.7")
    for n in (1, 2):
        out = tmp_path / f"r{n}"
        result = runner.invoke(
            app,
            [
                "report",
                "--db",
                sqlite_url,
                "--config",
                config,
                "--out",
                str(out),
                "--now",
                data["now"] + "Z",
                "--quiet",
                "--fail-on",
                "never",
                "--formats",
                "json",
                "--incremental",
                "--litellm-version",
                "1.83.7",
            ],
        )
        assert result.exit_code == 0, result.output
        record = json.loads((out / "latest.json").read_text())
        assert record["source"]["era"]["era"] == "1.82-1.83.7"
        run = record["run"]["incremental"]
        assert (run["mode"], run["checkpoint_stored"]) == ("full", False)
        assert "shares one window start per key" in run["fallback"] and "shares one window start per key" in run["not_stored"]
        assert len(record["findings"]) == len(scanned["findings"])


@pytest.mark.redis
def test_a_1_99_redis_copy_that_drifted_is_a_warning(sqlite_url, redis_client, tmp_path):
    """1.99 and 1.100 key counters by entry but still read each worker's memory first; Redis is a copy."""
    from test_scan_focused import A, at, build, charge, epoch, iso

    build(
        sqlite_url,
        [{"token": A, "key_alias": "alpha", "model_max_budget": {"gpt-4o": {"budget_limit": 10, "time_period": "1d"}}}],
        [charge(at(1), 1.0), charge(at(2), 2.0)],
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n  - model_name: gpt-4o\n    litellm_params:\n      model: azure/prod-gpt4o\n    model_info:\n      id: dep-gpt4o\n"
    )
    redis_client.set(f"virtual_key_spend:{A}:gpt-4o:1d", "1.0", ex=86400)
    redis_client.set(f"virtual_key_budget_start_time:{A}:gpt-4o:1d", repr(epoch(at(1))), ex=86400)
    severities = {}
    for version in ("1.99.0", "1.110.2"):
        result = runner.invoke(
            app,
            [
                "scan",
                "--db",
                sqlite_url,
                "--config",
                str(config),
                "--redis",
                REDIS_URL,
                "--now",
                iso(at(3)),
                "--format",
                "json",
                "--fail-on",
                "never",
                "--litellm-version",
                version,
            ],
        )
        assert result.exit_code == 0, result.output
        (drift,) = counters(json.loads(result.stdout))
        assert (drift["cached_spend"], drift["logged_spend"]) == (1.0, 3.0)
        severities[version] = drift["severity"]
    assert severities == {"1.99.0": "warning", "1.110.2": "error"}


@pytest.mark.redis
def test_doctor_names_a_1_90_deployment_from_its_keys(any_url, tmp_path, redis_client):
    data = load("1.90.7")
    deploy(data, any_url, tmp_path)
    now = when(data["now"])
    for name, cell in data["redis"].items():
        redis_client.set(name, cell["value"], px=int((when(cell["expires_at"]) - now).total_seconds() * 1000))
    result = runner.invoke(app, ["doctor", "--db", any_url, "--redis", REDIS_URL], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "1.84-1.98 (schema markers and counter keys: >= 1.84, < 1.99)" in result.output
    assert "counters keyed by requested model, one start key per key (shared by all its models)" in result.output
    assert "keys: one start key per key in Redis (virtual_key_budget_start_time:{hash}): 1.84-1.98" in result.output
