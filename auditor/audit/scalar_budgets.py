"""Pure rules for scalar budgets (max_budget on keys, teams, users, end users, team members): where an entity's
spend period starts, which requests LiteLLM admitted past the limit, and the findings. No I/O."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from auditor import money
from auditor.audit.findings import (
    COUNTER_DRIFT,
    ERROR,
    OVER_BUDGET,
    WARNING,
    Finding,
)
from auditor.litellm.counters import parse_float

LIFETIME = datetime(1, 1, 1)


def scalar_period(holder: Any, tz: tzinfo) -> datetime | None:
    """Where the entity's current `spend` period starts: LIFETIME without budget_duration, None when unknowable."""
    if not holder.budget_duration:
        return LIFETIME
    if holder.budget_reset_at is None:
        return None  # LiteLLM never scheduled a reset (keys with budget_id, issue #20688): the period is unknown
    from auditor.litellm.periods import period_start

    return period_start(holder.budget_duration, holder.budget_reset_at, tz)


# LiteLLM 1.110.2 blocks a key, a user or a team member once spend >= max_budget, a team or an end user once
# spend > max_budget (proxy/auth/auth_checks.py).
SCALAR_BLOCKS_AT_LIMIT = frozenset({"key", "user", "team_member"})


def scalar_leaks(
    charges: Iterable[tuple[datetime, datetime, float, bool]],
    limit: float,
    at_limit: bool,
    gated: Callable[[bool], bool] = lambda team_key: True,
) -> tuple[int, float]:
    """Requests admitted after the ledger's spend over the period had reached the budget, and their spend.

    `charges` are (start, end, spend, via a team key) in end order. The ledger reaches the limit at the end of the
    charge that takes the running total to it (`>=` where LiteLLM blocks at the limit, else `>`); a later charge
    whose request started at or after that instant was checked against a spend already over, and, where the budget
    gates it (`gated`: a user's budget gates team keys only with apply_user_budget_to_team_keys), leaked."""
    total, crossed, leaks, leaked = 0, None, 0, 0  # nano-dollars, as period_spend sums them
    for start, end, spend, team_key in charges:
        nanos = money.to_nanos(spend)
        if crossed is not None and start >= crossed and gated(team_key):
            leaks += 1
            leaked += nanos
        total += nanos
        if crossed is None and (money.to_dollars(total) >= limit if at_limit else money.to_dollars(total) > limit):
            crossed = end
    return leaks, money.to_dollars(leaked)


def scalar_findings(
    holders: Iterable[Any],
    period_sums: Mapping[Any, tuple[float, int]],
    lifetime_sums: Mapping[Any, Any],
    starts: Mapping[Any, datetime | None],
    options: Any,
    leaks: Mapping[Any, Any] | None = None,
    redis_spend: Mapping[Any, Any] | None = None,
) -> list[Finding]:
    """Scalar `spend` (and lifetime `total_spend`) against the ledger, and whole-entity budgets.

    `starts` maps (scope, entity) to the period start compared; entities left out could not be
    compared (unknown period, or a ledger that does not reach back far enough).
    """
    findings = []
    for holder in holders:
        if holder.deleted:
            continue
        entity = holder.entity_id
        entity_id = f"{len(entity[0])}:{entity[0]}:{entity[1]}" if isinstance(entity, tuple) else entity
        start = starts.get((holder.scope, entity))
        if start is None:
            continue
        logged = period_sums.get((holder.scope, entity), (0.0, 0))[0]
        lifetime = start == LIFETIME
        common = dict(
            scope=holder.scope,
            entity_id=entity_id,
            entity_alias=holder.alias,
            window_start=None if lifetime else start,
            window_end=None if lifetime else holder.budget_reset_at,
            time_period=holder.budget_duration or None,
            budget_limit=holder.max_budget,
            logged_spend=logged,
        )
        period = "lifetime" if lifetime else f"period since {start:%Y-%m-%d %H:%M} UTC"
        if holder.spend is not None and abs(holder.spend - logged) > options.tolerance:
            undercounts = holder.max_budget is not None and holder.spend < logged
            findings.append(
                Finding(
                    kind=COUNTER_DRIFT,
                    severity=ERROR if undercounts else WARNING,
                    cached_spend=holder.spend,
                    counter_source="spend",
                    counter_key=holder.spend_column,
                    **common,
                    message=(
                        f"{holder.spend_column} is {money.text(holder.spend)} but the ledger has {money.text(logged)} for its {period}"
                        + ("; the whole-entity budget is enforced from the lower figure" if undercounts else "")
                    ),
                )
            )
        if (holder.scope, entity) in (redis_spend or {}):
            key, raw = redis_spend[(holder.scope, entity)]  # type: ignore[index]  # in it, so not None
            cached = parse_float(raw)
            if cached is None or abs(cached - logged) > options.tolerance:
                shown = money.text(cached) if cached is not None else f"{raw!r} (not a number)"
                findings.append(
                    Finding(
                        kind=COUNTER_DRIFT,
                        severity=WARNING,
                        cached_spend=cached,
                        counter_source="redis_spend",
                        counter_key=key,
                        **common,
                        message=(
                            f"Redis counter {key} is {shown} but the ledger has {money.text(logged)} for its {period} "
                            "(LiteLLM reads it before the spend column, then checks the column when it is under budget)"
                        ),
                    )
                )
        after, after_spend = (leaks or {}).get((holder.scope, entity), (0, 0.0))
        if holder.max_budget is not None and (logged > holder.max_budget or after):
            findings.append(
                Finding(
                    kind=OVER_BUDGET,
                    severity=ERROR if after else WARNING,
                    requests_after_limit=after,
                    spend_after_limit=after_spend,
                    **common,
                    message=(
                        f"spent {money.text(logged)} in its {period} against a max_budget of {money.text(holder.max_budget)}"
                        + (
                            f"; {after} requests ({money.text(after_spend)}) were admitted after the ledger had reached it"
                            if after
                            else "; only the crossing request overshot"
                        )
                    ),
                )
            )
        if holder.total_spend is not None and (holder.scope, entity) in lifetime_sums:
            total_logged = lifetime_sums[(holder.scope, entity)][0]
            if abs(holder.total_spend - total_logged) > options.tolerance:
                column = holder.spend_column.rsplit(".", 1)[0] + ".total_spend"
                findings.append(
                    Finding(
                        kind=COUNTER_DRIFT,
                        severity=WARNING,
                        scope=holder.scope,
                        entity_id=entity_id,
                        entity_alias=holder.alias,
                        cached_spend=holder.total_spend,
                        logged_spend=total_logged,
                        counter_source="total_spend",
                        counter_key=column,
                        message=f"{column} is {money.text(holder.total_spend)} but the ledger's lifetime total is {money.text(total_logged)}",
                    )
                )
    return findings
