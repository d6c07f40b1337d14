"""The bad-input corpus: every case in tests/corpus/*.yaml through the real user path, asserting its exact outcome.

Each family is one data file; each case names its input, the outcome a user sees (finding kind and message,
exit code and stderr line, or where a spend row went) and why that outcome is right. Budget, duration and
config cases run on SQLite, spend-row cases on SQLite and PostgreSQL, Redis cases against a real Redis.
A case with `xfail` is a right outcome that needs a fix outside the parsing core (strict: it fails once fixed).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, Table, create_engine, null, text
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.ledger.schema import metadata, spend_logs, verification_token
from auditor.litellm.config import load_config

CORPUS = Path(__file__).resolve().parent / "corpus"
runner = CliRunner()

A = "a" * 64  # key alpha
B = "b" * 64  # key beta
DAY = datetime(2026, 3, 2)  # naive UTC, as LiteLLM stores it

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
    model_info:
      id: dep-gpt4o
  - model_name: claude-opus
    litellm_params:
      model: vertex_ai/claude-opus-4-6@default
    model_info:
      id: dep-opus
router_settings:
  model_group_alias:
    gpt4: gpt-4o
"""

# Findings about scalar spend columns (a key's `spend`, `total_spend`, whole-entity max_budget) are not
# what these cases are about: the keys here do not keep them in step with the junk on purpose.
SCALAR_SOURCES = ("spend", "total_spend", "model_spend")


def load(family: str) -> list:
    document = yaml.safe_load((CORPUS / f"{family}.yaml").read_text(encoding="utf-8"))
    params = []
    for case in document["cases"]:
        assert case.get("why", "").strip(), f"{family}/{case['id']}: every case says why its outcome is right"
        params.append(pytest.param(case, id=case["id"]))
    ids = [p.id for p in params]
    assert len(ids) == len(set(ids)), f"{family}: duplicate case ids"
    return params


FAMILIES = ("budgets", "durations", "configs", "spend_rows", "redis")


def test_the_corpus_covers_every_family():
    counts = {family: len(load(family)) for family in FAMILIES}
    assert all(n >= 10 for n in counts.values()), counts
    assert sum(counts.values()) >= 40, counts
    assert sorted(p.stem for p in CORPUS.glob("*.yaml")) == sorted(FAMILIES)


def at(clock: str) -> datetime:
    """`HH:MM[:SS]` on DAY, or a full ISO 8601 instant (naive UTC)."""
    return datetime.fromisoformat(clock) if "T" in clock or "-" in clock else datetime.fromisoformat(f"{DAY:%Y-%m-%d}T{clock}")


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds") + "Z"


def scan(url: str, config: str | None, now: str, *extra: str):
    args = ["scan", "--db", url, "--now", now, "--format", "json", "--fail-on", "never", *extra]
    return runner.invoke(app, [*args, *(["--config", config] if config else [])])


def scan_record(url: str, config: str | None, now: str, *extra: str) -> dict:
    result = scan(url, config, now, *extra)
    assert result.exit_code == 0, result.output
    assert result.stderr == "", result.stderr
    return strict_json(result.stdout)


def strict_json(text: str) -> dict:
    """The JSON contract is JSON: NaN and Infinity are not (jq and every strict parser refuse them)."""

    def refuse(token: str):
        raise AssertionError(f"{token} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def case_findings(record: dict) -> list[tuple]:
    """(kind, severity, budget entry or model, message) of every finding not about a scalar spend column."""
    found = []
    for f in record["findings"]:
        if f["counter_source"] in SCALAR_SOURCES or (f["kind"] == "over_budget" and f["budget_model"] is None):
            continue
        name = (
            f["budget_model"]
            if f["kind"] in ("over_budget", "invalid_budget", "unenforceable_budget", "counter_drift")
            else f["model"]
        )
        found.append((f["kind"], f["severity"], name, f["message"]))
    return sorted(found, key=lambda f: (f[0], f[2] or "", f[3]))


def assert_findings(record: dict, expected: list) -> None:
    """Exactly the expected findings: kind, severity and name equal, each expected fragment in the message."""
    actual = case_findings(record)
    wanted = sorted(expected, key=lambda f: (f[0], f[2] or ""))
    assert [f[:3] for f in actual] == [tuple(w[:3]) for w in wanted], actual
    for got, want in zip(actual, wanted, strict=True):
        fragments = want[3] if isinstance(want[3], list) else [want[3]]
        for fragment in fragments:
            assert fragment in got[3], (fragment, got[3])


def windows(record: dict) -> list[list]:
    return [
        [s["budget_model"], s["time_period"], s["window_start"], s["window_end"], s["logged_spend"], s["requests"]]
        for s in record["spend"]
        if s["budget_model"] is not None  # a window; the others are spend no entry governs
    ]


def assert_windows(record: dict, expected: list) -> None:
    got = windows(record)
    assert [w[:4] + w[5:] for w in got] == [w[:4] + w[5:] for w in expected], got
    for have, want in zip(got, expected, strict=True):
        assert have[4] == pytest.approx(want[4], rel=1e-12, abs=1e-12), (have, want)


@pytest.fixture
def config_file(tmp_path) -> str:
    path = tmp_path / "proxy_config.yaml"
    path.write_text(CONFIG)
    return str(path)


# ---------------------------------------------------------------------------------------------
# Building a LiteLLM database


def spend_log_row(request_id: str, *, end: str = "09:00", start: str | None = None, **columns) -> dict:
    """One LiteLLM_SpendLogs row: a successful $0.10 gpt-4o request by key alpha that took 1 s, unless told otherwise.

    Every NOT NULL column is given, so the row also fits the altered tables some cases build."""
    end_at = at(end)
    row = {
        "request_id": request_id,
        "call_type": "acompletion",
        "api_key": A,
        "spend": 0.10,
        "total_tokens": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "startTime": at(start) if start else end_at - timedelta(seconds=1),
        "endTime": end_at,
        "model": "azure/prod-gpt4o",
        "model_group": "gpt-4o",
        "model_id": "dep-gpt4o",
        "status": "success",
        "metadata": {},
        "cache_hit": "False",
        "created_at": end_at,
        "updated_at": end_at,
    }
    row.update(columns)
    if row.pop("metadata_sql_null", False):
        row["metadata"] = null()
    return row


def spend_logs_table(nullable: tuple[str, ...] = (), partitioned: bool = False) -> Table:
    """LiteLLM_SpendLogs as a hand-altered database has it: some NOT NULL columns dropped, or range-partitioned
    on "startTime" with the primary key (request_id, "startTime") that partitioning forces."""
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key and not partitioned, nullable=c.nullable or c.name in nullable)
        for c in spend_logs.columns
    ]
    extra = [PrimaryKeyConstraint("request_id", "startTime")] if partitioned else []
    options = {"postgresql_partition_by": 'RANGE ("startTime")'} if partitioned else {}
    return Table(spend_logs.name, MetaData(), *columns, *extra, **options)


def build(url: str, keys: list[dict], rows: list[dict], *, nullable: tuple[str, ...] = (), partitioned: bool = False) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            others = [t for t in metadata.sorted_tables if t.name != spend_logs.name]
            metadata.create_all(conn, tables=others)
            table = spend_logs_table(nullable, partitioned)
            table.create(conn)
            if partitioned and conn.dialect.name == "postgresql":
                for name, low, high in (("p20260301", "2026-03-01", "2026-03-02"), ("p20260302", "2026-03-02", "2026-03-03")):
                    conn.execute(
                        text(
                            f'CREATE TABLE "LiteLLM_SpendLogs_{name}" PARTITION OF "LiteLLM_SpendLogs" '
                            f"FOR VALUES FROM ('{low}') TO ('{high}')"
                        )
                    )
                conn.execute(text('CREATE TABLE "LiteLLM_SpendLogs_default" PARTITION OF "LiteLLM_SpendLogs" DEFAULT'))
            if keys:
                conn.execute(verification_token.insert(), keys)
            if rows:
                conn.execute(table.insert(), rows)
    finally:
        engine.dispose()


def key_row(token: str, alias: str, model_max_budget: object) -> dict:
    return {"token": token, "key_alias": alias, "model_max_budget": model_max_budget}


# ---------------------------------------------------------------------------------------------
# model_max_budget values and durations: through a scan, the findings and windows a user sees


TWO_CHARGES = (("r-1", "09:00", 0.60), ("r-2", "10:00", 0.60))


def _budget_case(case: dict, sqlite_url: str, config_file: str, stored: object) -> None:
    rows = [spend_log_row(rid, end=end, spend=spend) for rid, end, spend in TWO_CHARGES]
    key = key_row(A, "alpha", {} if "stored_raw" in case else stored)
    key.update(spend=1.2, total_spend=1.2)  # what LiteLLM's own columns hold for these two requests
    build(sqlite_url, [key], rows)
    if "stored_raw" in case:  # text no JSON encoder writes: into the column as is
        engine = create_engine(sqlite_url)
        with engine.begin() as conn:
            conn.execute(
                verification_token.update().values(model_max_budget=text(":raw")),
                {"raw": case["stored_raw"].replace("DIGITS", "9" * 4999)},
            )
        engine.dispose()
    record = scan_record(sqlite_url, config_file, "2026-03-04T00:00:00Z")
    assert record["rows"]["attributed"] == 2
    assert_findings(record, case["findings"])
    assert_windows(record, case["windows"])


@pytest.mark.parametrize("case", load("budgets"))
def test_budget_values(case, sqlite_url, config_file, request):
    known_bug(case, "sqlite", request)
    _budget_case(case, sqlite_url, config_file, None if "stored_raw" in case else json.loads(case["stored"]))


@pytest.mark.parametrize("case", load("durations"))
def test_durations(case, sqlite_url, config_file):
    _budget_case(case, sqlite_url, config_file, {"gpt-4o": {"budget_limit": 1, "time_period": case["time_period"]}})


# ---------------------------------------------------------------------------------------------
# Spend rows: on SQLite and PostgreSQL, where each row went (the scan's `rows` block) and what was said

KEYS = {"alpha": A, "beta": B, "stranger": "c" * 64, "": "", None: None}
ALPHA_BUDGET = {"gpt-4o": {"budget_limit": 1, "time_period": "1d"}}


def case_rows(case: dict) -> list[dict]:
    rows = []
    for index, spec in enumerate(case["rows"], start=1):
        spec = dict(spec)
        if "key" in spec:
            spec["api_key"] = KEYS[spec.pop("key")]
        rows.append(
            spend_log_row(
                spec.pop("request_id", f"r-{index}"), end=spec.pop("end", "09:00"), start=spec.pop("start", None), **spec
            )
        )
    return rows


def wanted_dialect(case: dict, dialect: str) -> None:
    if dialect not in case.get("dialects", ("sqlite", "postgresql")):
        pytest.skip(f"{case['id']} cannot be stored on {dialect}: {case['why'][:60]}")


def known_bug(case: dict, dialect: str, request) -> None:
    """`xfail: reason` or `xfail: {dialect: reason}`: an outcome that needs a fix outside the core (strict: it
    fails once fixed, so the marker is removed with the fix)."""
    xfail = case.get("xfail")
    reason = xfail.get(dialect) if isinstance(xfail, dict) else xfail
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))


@pytest.mark.parametrize("case", load("spend_rows"))
def test_spend_rows(case, dialect_url, config_file, request):
    dialect, url = dialect_url
    wanted_dialect(case, dialect)
    known_bug(case, dialect, request)
    keys = [key_row(A, "alpha", ALPHA_BUDGET), key_row(B, "beta", {})]
    build(url, keys, case_rows(case), nullable=tuple(case.get("nullable", ())), partitioned=case.get("partitioned", False))
    record = scan_record(url, config_file, case.get("now", "2026-03-04T00:00:00Z"), *case.get("args", ()))
    rows = record["rows"]
    expect = case["expect"]
    assert {k: rows[k] for k in ("read", "attributed", "unresolved", "ignored_by_reason")} == expect
    assert rows["ignored"] == sum(expect["ignored_by_reason"].values())
    assert rows["read"] == rows["attributed"] + rows["unresolved"] + rows["ignored"]
    assert_findings(record, case["findings"])
    if "windows" in case:
        assert_windows(record, case["windows"])


# ---------------------------------------------------------------------------------------------
# Config files: through `auditor scan --config`, the exit code and the one line a user reads


def config_path_for(case: dict, folder: Path) -> Path:
    path = folder / "proxy_config.yaml"
    if case.get("config_path") == "directory":
        return folder
    if case.get("config_path") == "missing":
        return folder / "no_such_config.yaml"
    if "config_bytes" in case:
        path.write_bytes(bytes.fromhex(case["config_bytes"]))
    elif "config_repeat" in case:
        spec = case["config_repeat"]
        times = spec.get("times", 1)
        path.write_text(
            spec["text"].format(
                digits="9" * spec.get("digits", 0), open=spec.get("open", "") * times, close=spec.get("close", "") * times
            )
        )
    else:
        path.write_text(case["config"], encoding="utf-8")
    for name, body in case.get("files", {}).items():
        (folder / name).write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", load("configs"))
def test_configs(case, sqlite_url, tmp_path, monkeypatch):
    folder = tmp_path / "proxy"
    folder.mkdir()
    path = config_path_for(case, folder)
    for name, value in case.get("env", {}).items():
        monkeypatch.setenv(name, value)
    rows = case_rows(case) if "rows" in case else [spend_log_row("r-1")]
    build(sqlite_url, [key_row(A, "alpha", ALPHA_BUDGET)], rows)
    result = scan(sqlite_url, str(path), "2026-03-04T00:00:00Z")
    assert result.exit_code == case["exit"], result.output
    if case["exit"] != 0:
        expected = case["stderr"].format(config=path, dir=folder)
        assert result.stderr == f"auditor: {expected}\n"
        assert result.stdout == ""
        return
    assert result.stderr == ""
    assert list(load_config(path).warnings) == case["warnings"]
    record = strict_json(result.stdout)
    assert {k: record["rows"][k] for k in ("read", "attributed", "unresolved", "ignored_by_reason")} == case["expect"]
    if "findings" in case:
        assert_findings(record, case["findings"])
    if "windows" in case:
        assert_windows(record, case["windows"])


# ---------------------------------------------------------------------------------------------
# Redis: `scan --redis` against a real Redis, the counter findings a user sees

COUNTER_KINDS = ("counter_drift", "miskeyed_counter")
TWO_SMALL_CHARGES = [{"end": "09:00", "spend": 0.3}, {"end": "10:00", "spend": 0.3}]


def redis_value(client, name: bytes | str, value: object) -> None:
    if isinstance(value, dict) and "hash" in value:
        client.hset(name, mapping=value["hash"])
    elif isinstance(value, dict) and "hex" in value:
        client.set(name, bytes.fromhex(value["hex"]))
    else:
        client.set(name, value)


def counter_findings(record: dict) -> list[tuple]:
    found = [
        (f["kind"], f["severity"], f["budget_model"], f["message"])
        for f in record["findings"]
        if f["kind"] in COUNTER_KINDS and f["counter_source"] == "redis"
    ]
    return sorted(found, key=lambda f: (f[0], f[2] or "", f[3]))


@pytest.mark.redis
@pytest.mark.parametrize("case", load("redis"))
def test_redis(case, sqlite_url, config_file, redis_client):
    build(
        sqlite_url,
        [key_row(A, "alpha", case.get("budget", ALPHA_BUDGET))],
        case_rows({"rows": case.get("rows", TWO_SMALL_CHARGES)}),
    )
    for name, value in case.get("redis", {}).items():
        redis_value(redis_client, name.replace("{A}", A), value)
    for name, value in case.get("redis_raw_keys", {}).items():
        redis_value(redis_client, bytes.fromhex(name), value)
    pool = redis_client.connection_pool.connection_kwargs
    url = f"redis://{pool['host']}:{pool['port']}/{pool['db']}"
    record = scan_record(sqlite_url, config_file, "2026-03-02T12:00:00Z", "--redis", url)
    assert record["source"]["redis"] == url
    actual = counter_findings(record)
    wanted = sorted(([k, s, n, m.replace("{A}", A)] for k, s, n, m in case["findings"]), key=lambda f: (f[0], f[2] or "", f[3]))
    assert [f[:3] for f in actual] == [tuple(w[:3]) for w in wanted], actual
    for got, want in zip(actual, wanted, strict=True):
        assert want[3] in got[3], (want[3], got[3])
