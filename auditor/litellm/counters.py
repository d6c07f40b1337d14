"""LiteLLM's per-model counter keys: parsing them, and the keys enforcement reads.

1.99+ layout: `{prefix}:{entity_id}:{budget_model}:{duration}` with a start key of the same shape;
1.82–1.98 kept one start key per entity, `{start_prefix}:{entity_id}` (semantics.md (b)).
The budget model may itself contain `:` (`…-v1:0`); the duration is always the last segment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import cast

# Per-model limiter counters, LiteLLM 1.99+ (semantics.md (b)): spend prefix -> start-time prefix.
MODEL_COUNTER_PREFIXES: dict[str, str] = {
    "virtual_key_spend": "virtual_key_budget_start_time",
    "user_model_spend": "user_model_budget_start_time",
    "end_user_model_spend": "end_user_budget_start_time",
    "team_model_spend": "team_model_budget_start_time",
    "team_member_model_spend": "team_member_model_budget_start_time",
}

SCOPE_OF_PREFIX = {
    "virtual_key_spend": "key",
    "user_model_spend": "user",
    "end_user_model_spend": "end_user",
    "team_model_spend": "team",
    "team_member_model_spend": "team_member",
}
PREFIX_OF_SCOPE = {scope: prefix for prefix, scope in SCOPE_OF_PREFIX.items()}


@dataclass(frozen=True, slots=True)
class CounterKey:
    prefix: str
    entity_id: str
    budget_model: str
    duration: str

    @property
    def scope(self) -> str:
        return SCOPE_OF_PREFIX[self.prefix]

    @property
    def key(self) -> str:
        return f"{self.prefix}:{self.entity_id}:{self.budget_model}:{self.duration}"

    @property
    def start_key(self) -> str:
        return f"{MODEL_COUNTER_PREFIXES[self.prefix]}:{self.entity_id}:{self.budget_model}:{self.duration}"

    @property
    def entity_start_key(self) -> str:
        """The one start key per entity of LiteLLM 1.82–1.98."""
        return f"{MODEL_COUNTER_PREFIXES[self.prefix]}:{self.entity_id}"


def scalar_counter_key(scope: str, entity_id: str | tuple[str, str]) -> str:
    """The Redis counter of an entity's whole spend that LiteLLM 1.110 reads before the spend column
    (redis/stores/spend_counters/types.py; get_current_spend), reset with the column by the budget reset job."""
    if scope == "team_member":
        user_id, team_id = cast("tuple[str, str]", entity_id)
        return f"spend:team_member:{user_id}:{team_id}"
    return f"spend:{scope}:{entity_id}"


def spend_key(scope: str, entity_id: str, budget_model: str, duration: str) -> str:
    """The counter enforcement reads for an entry (1.99+)."""
    return CounterKey(PREFIX_OF_SCOPE[scope], entity_id, budget_model, duration).key


def parse_counter_key(key: str) -> CounterKey | None:
    """A per-model spend counter key, or None for anything else (start keys, other families, junk)."""
    prefix, sep, rest = key.partition(":")
    if not sep or prefix not in SCOPE_OF_PREFIX:
        return None
    if prefix == "team_member_model_spend":
        entity_id, rest = _team_member_entity(rest)
        if entity_id is None:
            return None
    else:
        entity_id, sep, rest = rest.partition(":")
        if not sep or not entity_id:
            return None
    budget_model, sep, duration = rest.rpartition(":")
    if not sep or not budget_model or not duration:
        return None
    # Batch/poll dedupe markers hang off a spend key: `{spend_key}:batch:{id}` (1.105), `{spend_key}:{kind}:{id}` (1.110).
    if ":batch:" in f":{budget_model}:" or budget_model.count(":") >= 2 and not _looks_like_version(budget_model):
        return None
    return CounterKey(prefix, entity_id, budget_model, duration)


def loose_counter_key(key: str) -> CounterKey | None:
    """Any key of a per-model counter family split at its first and last `:`. Only good for matching against the
    keys enforcement reads (`rekey`): ids and model names may hold `:` themselves, and dedupe markers look alike."""
    prefix, sep, rest = key.partition(":")
    entity_id, sep2, rest = rest.partition(":")
    budget_model, sep3, duration = rest.rpartition(":")
    if prefix not in SCOPE_OF_PREFIX or not (sep and sep2 and sep3):
        return None
    return CounterKey(prefix, entity_id, budget_model, duration)


def rekey(counters: list[Counter], expected: dict[str, CounterKey]) -> list[Counter]:
    """Counters named as enforcement names them, from `expected` (the key of each budget entry, built the way
    LiteLLM builds it): a key whose entity id or model holds `:` is then matched whole, never split by guess.
    A counter that only a loose split could read (`exact` False) is kept only when it is one of those keys."""
    out = []
    for counter in counters:
        wanted = expected.get(counter.key.key)
        if wanted is not None and wanted != counter.key:
            counter = replace(counter, key=wanted, exact=True)
        elif wanted is None and not counter.exact:
            continue
        out.append(counter)
    return out


def expected_keys(entries_by_entity: Iterable[tuple[str, str, str, str]]) -> dict[str, CounterKey]:
    """{counter key: CounterKey} for every (scope, entity_id, entry name, duration string) enforcement reads."""
    keys = {}
    for scope, entity_id, name, duration in entries_by_entity:
        key = CounterKey(PREFIX_OF_SCOPE[scope], entity_id, name, duration)
        keys[key.key] = key
    return keys


def _looks_like_version(budget_model: str) -> bool:
    return budget_model.rsplit(":", 1)[-1].isdigit() or budget_model.endswith("k")


def _team_member_entity(rest: str) -> tuple[str | None, str]:
    """`{len(user_id)}:{user_id}:{team_id}` as LiteLLM keys team members."""
    length, sep, tail = rest.partition(":")
    # ASCII digits only ("²".isdigit() is True, int("²") raises), and no longer than the key itself
    if not sep or not (length.isascii() and length.isdigit()) or len(length) > len(str(len(tail))):
        return None, rest
    size = int(length)
    if len(tail) < size + 1 or tail[size] != ":":
        return None, rest
    user_id = tail[:size]
    team_id, sep, remainder = tail[int(length) + 1 :].partition(":")
    if not sep:
        return None, rest
    return f"{length}:{user_id}:{team_id}", remainder


def parse_float(value: object) -> float | None:
    """Counter values as LiteLLM reads them; None when not a number (it reads those as a miss)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond a double
        return None
    return number if number == number and abs(number) != float("inf") else None


def epoch_to_utc(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC).replace(tzinfo=None)


def parse_epoch(value: object) -> datetime | None:
    """A start key's epoch seconds as naive UTC; None when it is not a number or not a date (year 1..9999)."""
    seconds = parse_float(value)
    if seconds is None:
        return None
    try:
        return epoch_to_utc(seconds)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class Counter:
    """One cached counter, from Redis or LiteLLM_BudgetWindowSpend."""

    source: str  # "redis" | "budget_window_spend"
    key: CounterKey
    value: float | None  # None: not a number
    raw_value: str
    window_start: datetime | None  # None: no start key (LiteLLM would open a new window)
    exact: bool = True  # False: parse_counter_key could not split the name; kept only if `rekey` matches it
