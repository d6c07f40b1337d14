"""`auditor scan` on deployments written by LiteLLM 1.110.2's own code (tests/litellm_sim): a clean proxy gives no
false finding, every row is accounted for, and each injected fault gives exactly its finding.

The baseline deployment has every scope and budget kind; each simulator feature switches on one more LiteLLM
behaviour. A case auditor misreads is kept as a strict xfail naming the semantic (none today). More seeds:
AUDITOR_SIM_SWEEP=N.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import import_litellm

pytestmark = pytest.mark.differential

# LiteLLM's proxy code drives the simulator: skipped without the differential extra, a failure under CI
import_litellm("litellm.proxy.hooks.model_max_budget_limiter")

import litellm_sim  # noqa: E402
from auditor.cli.main import app  # noqa: E402
from litellm_sim.faults import Expected  # noqa: E402

SIM_REDIS = os.environ.get("AUDITOR_TEST_REDIS_SIM", "redis://127.0.0.1:6379/5")
SWEEP = int(os.environ.get("AUDITOR_SIM_SWEEP", "0") or 0)
SEEDS = list(range(1000, 1000 + SWEEP)) if SWEEP else [1, 2]
FEATURE_SEED = 1
TOLERANCE = 0.0001
FALSE_KINDS = ("counter_drift", "rollup_drift", "miskeyed_counter")
BASELINE = frozenset()

runner = CliRunner()
_runs: dict[tuple, litellm_sim.SimRun] = {}


@pytest.fixture
def sim_redis():
    """The simulator's own Redis db (AUDITOR_TEST_REDIS_SIM), flushed before and after."""
    import redis

    from conftest import _unavailable

    client = redis.Redis.from_url(SIM_REDIS, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        _unavailable("Redis at 127.0.0.1:6379", error)
    client.flushdb()
    yield SIM_REDIS
    client.flushdb()
    client.close()


def simulation(seed: int, features: frozenset[str], with_redis: bool, tmp_path_factory, **options) -> litellm_sim.SimRun:
    """One LiteLLM run per (seed, features, Redis or not, options) for the whole session: it is the slow part."""
    memo = (seed, features, with_redis, tuple(sorted(options.items())))
    if memo not in _runs:
        workdir = tmp_path_factory.mktemp(f"sim{seed}")
        _runs[memo] = litellm_sim.simulate(seed, SIM_REDIS if with_redis else None, workdir, features=features, **options)
    return _runs[memo]


def database(backend: str, tmp_path: Path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'litellm.sqlite'}"
    return request.getfixturevalue("pg_url")


def scan(run: litellm_sim.SimRun, db_url: str, with_redis: bool) -> dict:
    args = [
        "scan",
        "--db",
        db_url,
        "--config",
        str(run.config_path),
        "--format",
        "json",
        "--now",
        run.now.isoformat(timespec="milliseconds") + "Z",
    ]
    if with_redis:
        args += ["--redis", SIM_REDIS]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def false_findings(report: dict) -> list[dict]:
    """What a clean deployment must never show: drift, miskeyed counters, an over_budget error (money leaked)."""
    return [
        f for f in report["findings"] if f["kind"] in FALSE_KINDS or (f["kind"] == "over_budget" and f["severity"] == "error")
    ]


def describe(findings: list[dict]) -> str:
    keep = (
        "kind",
        "severity",
        "scope",
        "entity_alias",
        "entity_id",
        "budget_model",
        "model_group",
        "model",
        "counter_source",
        "logged_spend",
        "cached_spend",
        "requests_after_limit",
        "window_start",
    )
    return "\n".join(str({k: f[k] for k in keep if f.get(k) is not None}) for f in findings[:12])


def assert_rows_exact(report: dict, run: litellm_sim.SimRun) -> None:
    rows = report["rows"]
    assert rows["read"] == rows["attributed"] + rows["unresolved"] + rows["ignored"]
    assert sum(rows["ignored_by_reason"].values()) == rows["ignored"]
    assert rows["read"] == run.rows_written
    assert rows["unresolved"] == 0
    failures = sum(1 for r in run.rows["LiteLLM_SpendLogs"] if r["status"] == "failure")
    assert failures == run.outcome.failed + run.outcome.blocked - run.outcome.blocked_without_row
    assert rows["ignored_by_reason"] == ({"failure": failures} if failures else {})


# --- a clean deployment ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("with_redis", [True, False], ids=["redis", "no-redis"])
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("seed", SEEDS)
def test_clean_deployment_gives_no_false_finding(seed, backend, with_redis, sim_redis, tmp_path, tmp_path_factory, request):
    run = simulation(seed, BASELINE, with_redis, tmp_path_factory)
    db_url = database(backend, tmp_path, request)
    assert litellm_sim.materialize(run, db_url, SIM_REDIS if with_redis else None) == []
    report = scan(run, db_url, with_redis)
    assert_rows_exact(report, run)
    assert not false_findings(report), describe(false_findings(report))


@pytest.mark.redis
def test_blocked_requests_without_a_row_keep_the_rows_exact(sim_redis, tmp_path, tmp_path_factory):
    """general_settings.disable_pre_routing_error_logs: a budget block leaves no row, and the ledger is what was written."""
    run = simulation(FEATURE_SEED, BASELINE, True, tmp_path_factory, disable_pre_routing_error_logs=True)
    assert run.outcome.blocked_without_row == run.outcome.blocked > 0
    db_url = f"sqlite:///{tmp_path / 'litellm.sqlite'}"
    litellm_sim.materialize(run, db_url, SIM_REDIS)
    report = scan(run, db_url, True)
    assert_rows_exact(report, run)
    assert not false_findings(report), describe(false_findings(report))


# --- one LiteLLM behaviour at a time ---------------------------------------------------------------------

# (feature, with Redis) -> why auditor reports false findings on it, as a strict xfail that turns red once fixed.
# Empty: every behaviour the simulator drives is audited without a false finding.
KNOWN: dict[tuple[str, bool], str] = {}
FEATURE_CASES = sorted(litellm_sim.FEATURES)


def _feature_param(feature: str, with_redis: bool):
    reason = KNOWN.get((feature, with_redis))
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)] if reason else []
    return pytest.param(feature, with_redis, marks=marks, id=f"{feature}-{'redis' if with_redis else 'no-redis'}")


@pytest.mark.redis
@pytest.mark.parametrize(("feature", "with_redis"), [_feature_param(f, r) for f in FEATURE_CASES for r in (True, False)])
def test_each_litellm_behaviour_alone_gives_no_false_finding(feature, with_redis, sim_redis, tmp_path, tmp_path_factory):
    run = simulation(FEATURE_SEED, frozenset({feature}), with_redis, tmp_path_factory)
    db_url = f"sqlite:///{tmp_path / 'litellm.sqlite'}"
    litellm_sim.materialize(run, db_url, SIM_REDIS if with_redis else None)
    report = scan(run, db_url, with_redis)
    assert_rows_exact(report, run)
    assert not false_findings(report), describe(false_findings(report))


# --- each fault gives exactly its finding ------------------------------------------------------------------

FAULTS = {
    "lost_rows": litellm_sim.Faults(lost_rows=2),
    "lost_increment": litellm_sim.Faults(lost_increment=True),
    "double_flush": litellm_sim.Faults(double_flush=True),
    "renamed_entry": litellm_sim.Faults(renamed_entry=True),
    "deployment_counter": litellm_sim.Faults(deployment_counter=True),
    "stale_spend_column": litellm_sim.Faults(stale_spend_column=True),
}
FAULT_XFAIL: dict[str, str] = {}


def _identity(finding: dict) -> tuple:
    what = finding.get("budget_model") if finding.get("budget_model") else finding.get("counter_source")
    if finding["kind"] == "miskeyed_counter":
        what = ""
    return finding["kind"], finding["scope"], finding["entity_id"], what or ""


def _fault_param(name: str, with_redis: bool, backend: str):
    marks = [pytest.mark.xfail(strict=True, raises=AssertionError, reason=FAULT_XFAIL[name])] if name in FAULT_XFAIL else []
    if backend == "postgres":
        marks.append(pytest.mark.postgres)
    return pytest.param(name, with_redis, backend, marks=marks, id=f"{name}-{'redis' if with_redis else 'no-redis'}-{backend}")


@pytest.mark.redis
@pytest.mark.parametrize(
    ("fault", "with_redis", "backend"),
    [_fault_param(n, r, b) for n in FAULTS for r in (True, False) for b in ("sqlite", "postgres")],
)
def test_each_fault_gives_exactly_its_finding(fault, with_redis, backend, sim_redis, tmp_path, tmp_path_factory, request):
    """On both backends: PostgreSQL compares the rollups through its day checksums, SQLite cell by cell."""
    run = simulation(FEATURE_SEED, BASELINE, with_redis, tmp_path_factory)
    redis_url = SIM_REDIS if with_redis else None
    clean_url = f"sqlite:///{tmp_path / 'clean.sqlite'}"
    faulty_url = f"sqlite:///{tmp_path / 'faulty.sqlite'}"
    if backend == "postgres":
        clean_url, faulty_url = (request.getfixturevalue("pg_database_factory")() for _ in range(2))
    litellm_sim.materialize(run, clean_url, redis_url)
    before = {_identity(f): f for f in scan(run, clean_url, with_redis)["findings"] if f["kind"] in FALSE_KINDS}
    expected: list[Expected] = litellm_sim.materialize(run, faulty_url, redis_url, FAULTS[fault])
    assert expected, f"seed {FEATURE_SEED} gives fault {fault} nothing to break: pick another seed"
    after = {_identity(f): f for f in scan(run, faulty_url, with_redis)["findings"] if f["kind"] in FALSE_KINDS}
    assert set(before) <= set(after), describe([before[k] for k in set(before) - set(after)])
    new = {k: f for k, f in after.items() if k not in before}
    assert set(new) == {(e.kind, e.scope, e.entity_id, e.what) for e in expected}, describe(list(new.values()))
    for e in expected:
        if e.delta is not None:
            finding = new[(e.kind, e.scope, e.entity_id, e.what)]
            assert finding["cached_spend"] - finding["logged_spend"] == pytest.approx(e.delta, abs=TOLERANCE)
