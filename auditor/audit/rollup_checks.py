"""Pure rules for LiteLLM's daily rollups (Daily{User,Team,EndUser}Spend) against the ledger: when a day's row
disagrees, and the findings. No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from auditor import money
from auditor.audit.findings import ROLLUP_DRIFT, WARNING, Finding
from auditor.audit.reconcile import KEY

ROLLUP_SOURCES = {
    "LiteLLM_DailyUserSpend": "daily_user_spend",
    "LiteLLM_DailyTeamSpend": "daily_team_spend",
    "LiteLLM_DailyEndUserSpend": "daily_end_user_spend",
}


def rollup_differs(logged: Any, cached: Any, tolerance: float) -> bool:
    """Whether a rollup row (DayTotals or None) disagrees with the ledger's beyond the tolerance, or in its count."""
    logged_spend, logged_requests = (logged.spend, logged.requests) if logged else (0.0, 0)
    cached_spend, cached_requests = (cached.spend, cached.requests) if cached else (0.0, 0)
    return not (abs(logged_spend - cached_spend) <= tolerance and logged_requests == cached_requests)  # NaN differs


def rollup_findings(
    table: str,
    ledger_days: Mapping[tuple[str, str, str, str], Any],
    rollup_days: Mapping[tuple[str, str, str, str], Any],
    aliases: Mapping[str, str | None],
    options: Any,
) -> list[Finding]:
    """LiteLLM_DailyUserSpend against the ledger per (day, key, model, provider): spend and request counts.

    Daily rollups merge model groups that share a deployment (issue #36172), so they are compared at
    the grain they keep, never by model group.
    """
    findings = []
    for day_key in sorted(set(ledger_days) | set(rollup_days)):
        day, api_key, model, provider = day_key
        logged = ledger_days.get(day_key)
        cached = rollup_days.get(day_key)
        if not rollup_differs(logged, cached, options.tolerance):
            continue
        logged_spend = logged.spend if logged else 0.0
        cached_spend = cached.spend if cached else 0.0
        logged_requests = logged.requests if logged else 0
        cached_requests = cached.requests if cached else 0
        start = datetime.fromisoformat(day)
        findings.append(
            Finding(
                kind=ROLLUP_DRIFT,
                severity=WARNING,
                scope=KEY,
                entity_id=api_key or None,
                entity_alias=aliases.get(api_key),
                model=model,
                window_start=start,
                window_end=start + timedelta(days=1),
                logged_spend=logged_spend,
                cached_spend=cached_spend,
                requests=logged_requests,
                cached_requests=cached_requests,
                counter_source=ROLLUP_SOURCES[table],
                counter_key=f"{day} {model} {provider}".strip(),
                message=(
                    f"{table} for {day} {model} ({provider or 'no provider'}) has {money.text(cached_spend)} in "
                    f"{cached_requests} requests; the ledger has {money.text(logged_spend)} in {logged_requests}"
                ),
            )
        )
    return findings
