"""Fault injection on a finished simulation: each fault changes what a correctly working LiteLLM left, at the layer
it breaks, and says which findings it must cause (`Expected`), with the amount the cache or column is off by
(cached - logged). All faults hit key `anon`, whose requests carry no end user and whose only per-model entry is
`gpt-4o-mini`, so the effect of each is known exactly."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from .engine import to_ms
from .world import key_hash

ANON = key_hash("anon")
SETTLE = timedelta(seconds=120)  # auditor scan's default --settle


@dataclass(frozen=True)
class Expected:
    kind: str
    scope: str
    entity_id: str
    what: str  # budget_model for per-model findings, counter_source for scalar and rollup ones
    delta: float | None  # cached - logged; None: not compared


def _spend_key(entry: str, duration: str, model: str | None = None) -> str:
    return f"virtual_key_spend:{ANON}:{model or entry}:{duration}"


def _anon_entry(run) -> tuple[str, str]:
    ((name, entry),) = run.world.keys["anon"].model_max_budget.items()
    return name, entry.get("time_period") or entry.get("budget_duration")


def _open_window_start(run, spend_key: str) -> datetime | None:
    """When the live counter's window started, if one is open at the scan instant."""
    start = run.counter_starts.get(spend_key)
    return start if start is not None and start <= run.now else None


def _anon_period_start(run, rows) -> datetime:
    """Where anon's current scalar period began: LiteLLM's get_budget_window_start, in the proxy's zone."""
    from litellm.litellm_core_utils.duration_parser import get_budget_window_start

    token = next(r for r in rows["LiteLLM_VerificationToken"] if r["token"] == ANON)
    local = token["budget_reset_at"].replace(tzinfo=UTC).astimezone(ZoneInfo(run.world.timezone))
    start = get_budget_window_start(run.world.keys["anon"].budget_duration, local)
    return start.astimezone(UTC).replace(tzinfo=None)


def _scalar_targets(run) -> list[tuple[str, str, bool]]:
    """(scope, entity, has a period) of the scalar spend columns an anon request adds to."""
    key = run.world.keys["anon"]
    targets = [("key", ANON, True)]
    if key.user_id:
        targets.append(("user", key.user_id, run.world.users[key.user_id].budget_duration is not None))
    if key.team_id:
        targets.append(("team", key.team_id, run.world.teams[key.team_id].budget_duration is not None))
    return targets


def lost_rows(run, rows, count: int) -> list[Expected]:
    """The last `count` successful gpt-4o-mini rows of key anon (today's, in its current period) never reached
    LiteLLM_SpendLogs; counters, columns and today's (not yet compared) rollups have them."""
    entry, duration = _anon_entry(run)
    spend_key = _spend_key(entry, duration)
    window_start = _open_window_start(run, spend_key)
    floor = max(_anon_period_start(run, rows), datetime.combine((run.now - SETTLE).date(), datetime.min.time()))
    candidates = [
        r
        for r in rows["LiteLLM_SpendLogs"]
        if r["api_key"] == ANON
        and r["status"] == "success"
        and r["spend"] > 0
        and r["model_group"] == entry
        and r["startTime"] >= floor
        and r["endTime"] < run.now - SETTLE
    ]
    dropped = candidates[-count:]
    if len(dropped) < count:
        return []
    ids = {r["request_id"] for r in dropped}
    rows["LiteLLM_SpendLogs"] = [r for r in rows["LiteLLM_SpendLogs"] if r["request_id"] not in ids]
    total = sum(r["spend"] for r in dropped)
    expected = [Expected("counter_drift", "key", ANON, "total_spend", total)]
    for scope, entity, _ in _scalar_targets(run):
        expected.append(Expected("counter_drift", scope, entity, "spend", total))
    if window_start is not None:
        # the charge that opened the window is the row that ended at its start (rows keep milliseconds)
        in_window = sum(r["spend"] for r in dropped if r["endTime"] >= to_ms(window_start))
        if in_window:
            expected.append(Expected("counter_drift", "key", ANON, entry, in_window))
    return expected


def lost_increment(run, rows, redis) -> list[Expected]:
    """Key anon's last gpt-4o-mini increment never reached the counter enforcement reads."""
    entry, duration = _anon_entry(run)
    spend_key = _spend_key(entry, duration)
    if _open_window_start(run, spend_key) is None:
        return []
    last = next(
        (c for c in reversed(run.outcome.charges) if c["key"] == "anon" and c["model_group"] == entry and c["spend"] > 0), None
    )
    if last is None:
        return []
    amount = last["spend"]
    if redis is not None:
        if redis.get(spend_key) is None:
            return []
        redis.incrbyfloat(spend_key, -amount)
    else:
        row = next((r for r in rows["LiteLLM_BudgetWindowSpend"] if r["entity_id"] == spend_key), None)
        if row is None:
            return []
        row["spend"] -= amount
    return [Expected("counter_drift", "key", ANON, entry, -amount)]


def double_flush(run, rows) -> list[Expected]:
    """One LiteLLM_DailyUserSpend row of key anon, on a whole day the scan compares, was flushed twice."""
    last_day = ((run.now - SETTLE).date() - timedelta(days=1)).isoformat()
    row = next(
        (r for r in rows["LiteLLM_DailyUserSpend"] if r["api_key"] == ANON and r["date"] <= last_day and r["spend"] > 0), None
    )
    if row is None:
        return []
    for column in ("spend", "api_requests", "successful_requests", "failed_requests", "prompt_tokens", "completion_tokens"):
        row[column] = row[column] * 2
    return [Expected("rollup_drift", "key", ANON, "daily_user_spend", row["spend"] / 2)]


def renamed_entry(run, rows) -> list[Expected]:
    """Key anon's entry renamed after the traffic (`gpt-4o-mini` -> `gpt-4o-mini*`): LiteLLM's limiter now reads a
    counter that does not exist, so enforcement restarts from $0 while the ledger holds the window's spend."""
    entry, duration = _anon_entry(run)
    token = next(r for r in rows["LiteLLM_VerificationToken"] if r["token"] == ANON)
    token["model_max_budget"] = {f"{entry}*": token["model_max_budget"][entry]}
    if _open_window_start(run, _spend_key(entry, duration)) is None:
        return []
    return [Expected("counter_drift", "key", ANON, f"{entry}*", None), Expected("miskeyed_counter", "key", ANON, "", None)]


def deployment_counter(run, rows, redis) -> list[Expected]:
    """A counter under the deployment name (`openai/gpt-4o-mini`), as LiteLLM 1.82-1.83 wrote them."""
    entry, duration = _anon_entry(run)
    spend_key = _spend_key(entry, duration, model="openai/gpt-4o-mini")
    started = run.now - timedelta(hours=1)
    if redis is not None:
        start_key = spend_key.replace("virtual_key_spend", "virtual_key_budget_start_time", 1)
        redis.set(spend_key, 0.0123, ex=3600)
        redis.set(start_key, started.timestamp() if started.tzinfo else (started - datetime(1970, 1, 1)).total_seconds(), ex=3600)
    else:
        rows["LiteLLM_BudgetWindowSpend"].append(
            {
                "entity_type": "model_max_budget",
                "entity_id": spend_key,
                "window_duration": duration,
                "window_start": started,
                "spend": 0.0123,
                "created_at": started,
                "updated_at": started,
            }
        )
    return [Expected("miskeyed_counter", "key", ANON, "", None)]


def stale_spend_column(run, rows) -> list[Expected]:
    """Key anon's `spend` column stopped being written six hours before the scan (total_spend still is)."""
    cut = run.now - timedelta(hours=6)
    since = max(cut, _anon_period_start(run, rows))
    missing = sum(c["spend"] for c in run.outcome.charges if c["key"] == "anon" and c["end"] >= since)
    if not missing:
        return []
    token = next(r for r in rows["LiteLLM_VerificationToken"] if r["token"] == ANON)
    token["spend"] -= missing
    return [Expected("counter_drift", "key", ANON, "spend", -missing)]
