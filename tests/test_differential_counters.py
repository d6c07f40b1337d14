"""What auditor computes against LiteLLM 1.110.2's own functions where the other differential tests never looked:
counter key names, the key-over-team entry rule, generated deployment ids, and the scalar budget reset schedule.

Where auditor differed, the case was a strict xfail naming the LiteLLM behaviour; none is left.
"""

from __future__ import annotations

import os
import random
import warnings
from datetime import UTC, datetime, timedelta

import pytest

from conftest import import_litellm

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import_litellm("litellm")
with warnings.catch_warnings():  # LiteLLM's import-time pydantic chatter is not ours to show
    warnings.simplefilter("ignore")
    limiter = import_litellm("litellm.proxy.hooks.model_max_budget_limiter")
    from litellm.litellm_core_utils.duration_parser import get_next_standardized_reset_time
    from litellm.proxy._types import Litellm_EntityType
    from litellm.router_api import deployment_id

from auditor.audit.entities import team_entries  # noqa: E402
from auditor.ledger.queries import team_member_entity_id  # noqa: E402
from auditor.litellm.budgets import BudgetEntry, parse_model_max_budget  # noqa: E402
from auditor.litellm.catalogue import generated_model_id  # noqa: E402
from auditor.litellm.counters import (  # noqa: E402
    PREFIX_OF_SCOPE,
    Counter,
    CounterKey,
    expected_keys,
    loose_counter_key,
    parse_counter_key,
    rekey,
    spend_key,
)
from auditor.litellm.periods import period_start, zone  # noqa: E402

pytestmark = pytest.mark.differential

SEED = 20261202
SCOPES = {
    "key": Litellm_EntityType.KEY,
    "user": Litellm_EntityType.USER,
    "end_user": Litellm_EntityType.END_USER,
    "team": Litellm_EntityType.TEAM,
    "team_member": Litellm_EntityType.TEAM_MEMBER,
}
PLAIN_IDS = ("a" * 64, "alice", "u-1", "team-a", "eu-42", "svc_bot", "x")
COLON_IDS = ("tenant:42", "ops:svc", "arn:aws:iam::123456789012:user/bob", "a:b:c")
BUDGET_MODELS = (
    "gpt-4o",
    "claude-opus-4-6",
    "claude-*",
    "*",
    "general",
    "anthropic/*",
    "openai/gpt-4o",
    "anthropic.claude-3-5-sonnet-20240620-v1:0",
    "us.anthropic.claude-opus-4-8-v1:0:18k",
    "vertex_ai/claude-opus-4-6@default",
)
DURATIONS = ("1d", "30d", "12h", "1mo", "daily", "90m", "7d")


def _entity(scope: str, rng: random.Random, ids: tuple[str, ...]) -> tuple[str, str]:
    """(LiteLLM's entity id, auditor's) for one drawn entity; team members are (user, team) pairs."""
    if scope == "team_member":
        user, team = rng.choice(ids), rng.choice(PLAIN_IDS)
        return limiter.team_member_budget_entity_id(user_id=user, team_id=team), team_member_entity_id(user, team)
    entity = rng.choice(ids)
    return entity, entity


@pytest.mark.parametrize("ids", [PLAIN_IDS, COLON_IDS], ids=["plain-ids", "ids-with-colons"])
def test_counter_key_names_match_litellm(ids):
    rng = random.Random(SEED)
    found = []
    for _ in range(500):
        scope = rng.choice(list(SCOPES))
        theirs_id, ours_id = _entity(scope, rng, ids)
        model, duration = rng.choice(BUDGET_MODELS), rng.choice(DURATIONS)
        kind = SCOPES[scope]
        theirs = (
            limiter.model_budget_spend_cache_key(kind, theirs_id, model, duration),
            limiter.model_budget_start_time_cache_key(kind, theirs_id, model, duration),
        )
        ours_key = CounterKey(PREFIX_OF_SCOPE[scope], ours_id, model, duration)
        ours = (spend_key(scope, ours_id, model, duration), ours_key.start_key)
        if ours != theirs:
            found.append(f"{scope} {theirs_id!r} {model!r} {duration!r}: LiteLLM {theirs}, auditor {ours}")
    assert not found, "\n".join(found[:10])


def _roundtrip(ids: tuple[str, ...], scopes: tuple[str, ...]) -> list[str]:
    rng = random.Random(SEED + 1)
    found = []
    for _ in range(500):
        scope = rng.choice(scopes)
        theirs_id, _ = _entity(scope, rng, ids)
        model, duration = rng.choice(BUDGET_MODELS), rng.choice(DURATIONS)
        key = limiter.model_budget_spend_cache_key(SCOPES[scope], theirs_id, model, duration)
        # as the scan reads a counter: split it if it can be, then match it whole against the keys of the entries
        parsed = parse_counter_key(key)
        exact, parsed = parsed is not None, parsed or loose_counter_key(key)
        kept = (
            rekey([Counter("redis", parsed, 1.0, "1.0", None, exact)], expected_keys([(scope, theirs_id, model, duration)]))
            if parsed
            else []
        )
        got = (kept[0].key.scope, kept[0].key.entity_id, kept[0].key.budget_model, kept[0].key.duration) if kept else None
        if got != (scope, theirs_id, model, duration):
            found.append(f"{key!r}: auditor reads {got}")
    return found


def test_counter_keys_litellm_writes_parse_back_to_their_entry():
    found = _roundtrip(PLAIN_IDS, tuple(SCOPES))
    assert not found, "\n".join(found[:10])


def test_team_member_counter_keys_with_colons_parse_back():
    """`{len(user_id)}:{user_id}:{team_id}` is length-prefixed exactly so that a `:` in the user id stays readable."""
    found = _roundtrip(COLON_IDS, ("team_member",))
    assert not found, "\n".join(found[:10])


def test_counter_keys_with_colons_in_the_entity_id_parse_back():
    found = _roundtrip(COLON_IDS, ("key", "user", "end_user", "team"))
    assert not found, "\n".join(found[:10])


# --- the key entry that replaces a team entry ------------------------------------------------------------

TEAM_MODELS = (
    "gpt-4o",
    "openai/gpt-4o",
    "claude-opus-4-6",
    "vertex_ai/claude-opus-4-6@default",
    "bedrock/converse/us.anthropic.claude-opus-4-8",
    "anthropic/claude-haiku-4-5",
    "gpt-4o-mini",
)
ENTRY_NAMES = (
    "gpt-4o",
    "claude-opus-4-6",
    "claude-opus-4-6@default",
    "claude-*",
    "*",
    "gpt-4o*",
    "anthropic.claude-opus-4-8",
    "claude-opus-4-8",
    "claude-haiku-4-5",
    "openai/gpt-4o",
    "general",
)
ENTRY_VALUES = (
    {"max_budget": 1.0, "budget_duration": "1d"},
    {"budget_limit": 0, "time_period": "12h"},
    {"max_budget": None, "budget_duration": "1d"},
    {"max_budget": -1, "budget_duration": "1d"},
    {"max_budget": 2.0},
    {"max_budget": 1.0, "budget_duration": "1y"},
)


def _random_budget(rng: random.Random) -> dict:
    return {name: rng.choice(ENTRY_VALUES) for name in rng.sample(ENTRY_NAMES, rng.randint(0, 4))}


def test_team_entries_left_for_a_key_match_litellm():
    rng = random.Random(SEED + 2)
    found = []
    for _ in range(2000):
        model, team, key = rng.choice(TEAM_MODELS), _random_budget(rng), _random_budget(rng)
        theirs = set(limiter.team_model_budget_entries(model=model, team_model_max_budget=team, key_model_max_budget=key))
        usable = lambda mmb: {n: e for n, e in parse_model_max_budget(mmb).items() if isinstance(e, BudgetEntry)}  # noqa: E731
        ours = set(team_entries(model, usable(team), usable(key)))
        theirs &= set(usable(team))  # entries the limiter cannot use never govern anything, on either side
        if ours != theirs:
            found.append(f"model {model!r} team {team} key {key}: LiteLLM keeps {sorted(theirs)}, auditor {sorted(ours)}")
    assert not found, "\n".join(found[:10])


# --- generated deployment ids ------------------------------------------------------------------------------


def test_generated_model_ids_match_litellm():
    rng = random.Random(SEED + 3)
    values = ("openai/gpt-4o", "sk-x", 10, 0.5, True, None, ["a", "b"], {"b": 1, "a": "x"}, "us-east5", 1e-7, "é✓")
    keys = ("model", "api_key", "rpm", "tpm", "temperature", "tags", "extra_body", "vertex_location", "stream", "api_base")
    found = []
    for _ in range(1000):
        params = {k: rng.choice(values) for k in rng.sample(keys, rng.randint(1, 6))}
        group = rng.choice(("gpt-4o", "opus", "anthropic/*", "team-model-1"))
        if generated_model_id(group, params) != deployment_id(group, params):
            found.append(f"{group} {params}")
    assert not found, "\n".join(found[:10])


# --- the scalar budget reset schedule -----------------------------------------------------------------------

# DST changes at 02:00 and 03:00 (New York, Berlin), at midnight (Santiago, Beirut), by half an hour (Lord Howe)
ZONES = ("UTC", "Asia/Kolkata", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "America/Santiago", "Asia/Beirut")
DIVIDING = ("1d", "7d", "1w", "30d", "1mo", "2d", "12h", "6h", "1h", "30m", "15m", "daily", "weekly", "monthly")
NOT_DIVIDING = {
    "48h": "48h resets every day at midnight (get_next_standardized_reset_time wraps hours at the day)",
    "36h": "36h resets at the next noon or midnight (hours wrap at the day)",
    "90m": "90m resets every hour (minutes wrap at the hour)",
    "5h": "5h resets at 00/05/10/15/20h and again at midnight (hours wrap at the day)",
    "45m": "45m resets at :00 and :45 of every hour (minutes wrap at the hour)",
}


# Just before the 2026 DST changes (naive UTC), spring and autumn.
DST_INSTANTS = (
    datetime(2026, 3, 8, 6, 30),
    datetime(2026, 11, 1, 5, 30),
    datetime(2026, 3, 29, 0, 30),
    datetime(2026, 10, 25, 0, 30),
    datetime(2026, 3, 8, 4, 50),
    datetime(2026, 10, 24, 21, 50),
    datetime(2026, 9, 6, 3, 30),
    datetime(2026, 3, 28, 21, 30),
)  # and Santiago's, Beirut's at midnight


def _instants(rng: random.Random, dst: bool) -> list[datetime]:
    if dst:  # the job has run since well before the change: a chain of resets walks through it (see _schedule_mismatches)
        return [t - timedelta(hours=6) for t in DST_INSTANTS]
    return [datetime(2026, 4, 1) + timedelta(seconds=rng.randrange(0, 180 * 86400)) for _ in range(60)]  # no DST change


def _schedule_mismatches(duration: str, dst: bool = False) -> list[str]:
    """The reset job sets budget_reset_at = next(duration, when it ran); the period ending at the next reset began
    at the previous one. auditor's period_start must give that instant back."""
    rng = random.Random(f"{SEED}-{duration}")
    found = []
    for name in ZONES:
        for t0 in _instants(rng, dst):
            first = get_next_standardized_reset_time(duration, t0.replace(tzinfo=UTC), name)
            for _ in range(40 if dst else 1):  # across a DST change: every reset of the chain the job walks
                # the job runs at the reset with the wall clock's instant (UTC), not LiteLLM's own zoned return value
                second = get_next_standardized_reset_time(duration, first.astimezone(UTC), name)
                previous = first.astimezone(UTC).replace(tzinfo=None)
                reset_at = second.astimezone(UTC).replace(tzinfo=None)
                ours = period_start(duration, reset_at, zone(name))
                if ours != previous:
                    found.append(f"{duration} {name}: reset {reset_at} after {previous}; auditor's period starts {ours}")
                first = second
    return found


@pytest.mark.parametrize("duration", DIVIDING)
def test_scalar_periods_follow_the_reset_schedule(duration):
    found = _schedule_mismatches(duration)
    assert not found, "\n".join(found[:10])


@pytest.mark.parametrize("duration", list(NOT_DIVIDING))
def test_scalar_periods_that_do_not_divide_a_day_or_an_hour_follow_the_reset_schedule(duration):
    found = _schedule_mismatches(duration)
    assert not found, "\n".join(found[:10])


@pytest.mark.parametrize("duration", DIVIDING)
def test_scalar_periods_follow_the_reset_schedule_across_dst_changes(duration):
    found = _schedule_mismatches(duration, dst=True)
    assert not found, "\n".join(found[:10])
