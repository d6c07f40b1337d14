"""No row is dropped silently: whatever junk LiteLLM_SpendLogs holds, every row a scan reads is attributed,
unresolved or ignored with a named reason, and the rows it reads are exactly the rows in scope.

Hypothesis writes junk rows (odd, NULL or empty models; NULL and odd statuses; negative, NaN, infinite, huge
and NULL spend; NULL or empty api_key; batch and video polls; every cache_hit spelling; metadata of every
shape) into a real database, scans it with `auditor scan --format json`, and checks the `rows` block
against an oracle written here from LiteLLM's rules (README "What scan finds"), not from auditor's code.
SQLite per example; PostgreSQL for a few derandomized (fixed-seed) examples.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import null

from test_corpus import CONFIG, A, B, build, key_row, scan, strict_json

NAMED_REASONS = {"failure", "empty api_key", "repeat job poll", "spend not a finite amount"}
SPEND_BOUND = 1e15  # no request costs a quadrillion dollars (README "What scan finds")
POLLS = ("aretrieve_batch", "retrieve_batch", "avideo_status", "video_status")
SINCE = datetime(2026, 3, 2)
NOW = "2026-03-05T00:00:00Z"

# Names whose resolution is known without asking the resolver (CONFIG serves gpt-4o and claude-opus, alias gpt4):
PLACED_MODELS = ["azure/prod-gpt4o", "vertex_ai/claude-opus-4-6@default", "gpt-4o", "claude-opus", "gpt4", "GPT-4o"]
# "zz-" + letters and digits: no "/", "@", "." or version suffix, so no normalisation can reach a group.
UNPLACED_MODELS = st.sampled_from(["", None, "unknown-model"]) | st.text("abcdefxyz0123456789-", max_size=8).map(
    lambda s: "zz-" + s
)
NAME_TEXT = st.text(max_size=10).filter(lambda s: "\x00" not in s)  # PostgreSQL text cannot hold NUL


@st.composite
def junk_rows(draw, allow_nan: bool):
    count = draw(st.integers(1, 14))
    rows = []
    for index in range(count):
        start = SINCE + timedelta(minutes=draw(st.integers(-24 * 60, 2 * 24 * 60)))
        end = start + timedelta(seconds=draw(st.integers(-3600, 7200)))
        # weighted towards what makes repeat polls: one key polling one job
        call_type = draw(st.sampled_from(["acompletion", "aembedding", "", "pass_through_endpoint", *POLLS, *POLLS]))
        job = draw(st.sampled_from([None, "", "batch_1", "batch_1", "batch_1", "batch_2", "video_1"]))
        spends = (
            st.floats(min_value=-1e300, max_value=1e300)
            | st.floats(min_value=-100, max_value=100)
            | st.sampled_from([0.0, 0.4, -0.0, math.inf, -math.inf, None, SPEND_BOUND, -SPEND_BOUND, 999999999999999.9])
        )
        if allow_nan:
            spends |= st.just(math.nan)
        rows.append(
            {
                # zero-padded: the same order under PostgreSQL's collation as in Python
                "request_id": draw(
                    st.sampled_from([f"r-{index:02d}", f"batch_1_batch_cost_{index:02d}", f"video_1_video_cost_{index:02d}"])
                ),
                "call_type": call_type,
                "api_key": draw(st.sampled_from([A, A, A, B, "c" * 64, "", None])),
                "spend": draw(spends),
                "startTime": start,
                "endTime": end,
                "model": draw(st.sampled_from(PLACED_MODELS) | UNPLACED_MODELS),
                "model_group": draw(st.sampled_from(["", None, "gpt-4o", "claude-opus", "gpt4", "gpt-5"]) | NAME_TEXT),
                "model_id": draw(st.sampled_from(["", None, "dep-gpt4o", "dep-opus", "no-such-id"])),
                "status": draw(st.sampled_from(["success", "success", "success", "failure", None, "", "FAILURE", "error"])),
                "metadata": draw(
                    st.sampled_from(
                        [
                            {},
                            {"status": "failure"},
                            {"status": "success"},
                            [],
                            "failure",
                            None,
                            {"status": 1},
                            {"status": None},
                            {"error_information": {"status": "failure"}},
                        ]
                    )
                ),
                "cache_hit": draw(st.sampled_from(["True", "False", "true", "None", "", None, "1"])),
                "session_id": job,
                "total_tokens": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "created_at": end,
                "updated_at": end,
            }
        )
    # Some rows become paid polls of one job by one key: the repeats only a poll of the same job can make.
    for index in draw(st.lists(st.integers(0, count - 1), max_size=4, unique=True)):
        rows[index].update(
            call_type=draw(st.sampled_from(POLLS)), api_key=A, session_id="batch_1", spend=draw(st.sampled_from([0.4, 2.0, 0.0]))
        )
    return rows


def as_inserted(row: dict) -> dict:
    """SQL NULL for a None metadata (JSON null would be a value)."""
    return {**row, "metadata": null() if row["metadata"] is None else row["metadata"]}


def expected_rows(rows: list[dict], dialect: str) -> dict:
    """The oracle: where each in-scope row must go, from LiteLLM's rules."""
    scoped = [r for r in rows if r["startTime"] >= SINCE]
    ignored: dict[str, int] = {}
    charged = []
    for row in scoped:
        meta = row["metadata"]
        failed = row["status"] == "failure" or (
            row["status"] is None and isinstance(meta, dict) and meta.get("status") == "failure"
        )
        # a failure or a keyless row is that whatever its spend; only a row LiteLLM would charge is asked for an amount
        reason = (
            "failure"
            if failed
            else "empty api_key"
            if not row["api_key"]
            else "spend not a finite amount"
            if not_an_amount(row["spend"], dialect)
            else None
        )
        if reason:
            ignored[reason] = ignored.get(reason, 0) + 1
        else:
            charged.append(row)
    # A finished job reports its whole cost on every poll: the first paid poll (by endTime, then request_id) of
    # each (key, job) is charged, later paid polls are repeats. A job is its session_id, else its request_id
    # without the _batch_cost/_video_cost suffix.
    seen: set[tuple[str, str]] = set()
    repeats: list[dict] = []
    for row in sorted(
        (r for r in charged if r["call_type"] in POLLS and paid(r["spend"])), key=lambda r: (r["endTime"], r["request_id"])
    ):
        job = row["session_id"] or row["request_id"].replace("_batch_cost", "").replace("_video_cost", "")
        if (row["api_key"], job) in seen:
            repeats.append(row)
        seen.add((row["api_key"], job))
    if repeats:
        ignored["repeat job poll"] = len(repeats)
    counted = [r for r in charged if not any(r is repeat for repeat in repeats)]
    attributed = sum(1 for r in counted if placed(r))
    return {"read": len(scoped), "attributed": attributed, "unresolved": len(counted) - attributed, "ignored_by_reason": ignored}


def placed(row: dict) -> bool:
    """A model_group is the router's own record (trusted even when not configured); else a configured id or name."""
    return bool(row["model_group"]) or row["model_id"] in ("dep-gpt4o", "dep-opus") or row["model"] in PLACED_MODELS


def not_an_amount(spend: float | None, dialect: str) -> bool:
    """NaN, +-Infinity, or |spend| >= SPEND_BOUND; SQLite stores NaN as NULL, and a NULL spend is $0."""
    if spend is None:
        return False
    if math.isnan(spend):
        return dialect == "postgresql"
    return abs(spend) >= SPEND_BOUND


def paid(spend: float | None) -> bool:
    """`spend > 0` of a charged row (so a finite amount, or NULL)."""
    return spend is not None and spend > 0


def check(url: str, rows: list[dict], config: str, dialect: str) -> None:
    unique = {r["request_id"] for r in rows}
    if len(unique) < len(rows):  # the primary key: keep the first of each id, as LiteLLM's skip_duplicates does
        kept: dict[str, dict] = {}
        for row in rows:
            kept.setdefault(row["request_id"], row)
        rows = list(kept.values())
    keys = [
        key_row(A, "alpha", {"gpt-4o": {"budget_limit": 1, "time_period": "1d"}, "*": {"budget_limit": 5, "time_period": "1h"}}),
        key_row(B, "beta", {}),
    ]
    build(url, keys, [as_inserted(r) for r in rows], nullable=("model", "api_key", "spend"))
    result = scan(url, config, NOW, "--since", SINCE.isoformat() + "Z")
    assert result.exit_code == 0, result.output
    record = strict_json(result.stdout)  # no NaN or Infinity, whatever the spends
    got = record["rows"]
    assert set(got["ignored_by_reason"]) <= NAMED_REASONS, got
    assert got["read"] == got["attributed"] + got["unresolved"] + sum(got["ignored_by_reason"].values())
    assert got["ignored"] == sum(got["ignored_by_reason"].values())
    assert {k: got[k] for k in ("read", "attributed", "unresolved", "ignored_by_reason")} == expected_rows(rows, dialect)


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "proxy_config.yaml"
    path.write_text(CONFIG)
    return str(path)


@given(junk_rows(allow_nan=False))
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_row_is_accounted_for_on_sqlite(tmp_path, config, rows):
    check(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite'}", rows, config, "sqlite")


@pytest.mark.postgres
@given(junk_rows(allow_nan=True))
@settings(max_examples=4, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_every_row_is_accounted_for_on_postgresql(pg_database_factory, config, rows):
    check(pg_database_factory(), rows, config, "postgresql")
