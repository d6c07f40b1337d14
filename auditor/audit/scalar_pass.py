"""The scan's scalar pass: each entity's spend over its current budget period (max_budget, budget_duration) from
the ledger, against its spend column and the Redis `spend:*` counter LiteLLM reads first.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from auditor import money
from auditor.audit import checkpoint, scalar_budgets
from auditor.audit.entities import SCOPES
from auditor.audit.ledger_pass import ledger_complete_since
from auditor.ledger import budget_holders, queries
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.counters import scalar_counter_key

if TYPE_CHECKING:
    from auditor.audit.scan import ScanOptions


def scalar_pass(
    conn: Connection,
    caps: Capabilities,
    holders: list[budget_holders.Holder],
    options: ScanOptions,
    resume: checkpoint.State | None = None,
    state: checkpoint.State | None = None,
    redis_values=None,
):
    """Every entity's scalar spend over its current period, summed in SQL per scope (see _period_sums), against its
    spend column and the Redis `spend:*` counter LiteLLM reads before it (get_current_spend)."""
    from auditor.litellm.periods import zone

    tz = zone(options.timezone)
    complete_since = ledger_complete_since(conn, options)
    starts: dict[tuple[str, object], datetime] = {}
    skipped: dict[str, int] = defaultdict(int)
    for holder in holders:
        if holder.deleted or holder.spend is None:
            continue
        start = scalar_budgets.scalar_period(holder, tz)
        if start is None:
            skipped[
                "budget_duration without budget_reset_at"
                if holder.budget_reset_at is None
                else "a budget_duration whose period cannot be placed (too large for a date)"
            ] += 1
        elif complete_since is not None and start < complete_since:
            why = "lifetime spend" if start == scalar_budgets.LIFETIME else "a period starting"
            skipped[f"{why} before {complete_since:%Y-%m-%d %H:%M}, where the ledger (spend-log retention, --since) begins"] += 1
        else:
            starts[(holder.scope, holder.entity_id)] = start
    period_sums: dict[tuple[str, object], tuple[float, int]] = {}
    lifetime_sums: dict[tuple[str, object], tuple[float, int]] = {}
    whole_ledger = complete_since is None
    totals_wanted = {
        scope: [
            (h.entity_id, scalar_budgets.LIFETIME)
            for h in holders
            if h.scope == scope and h.total_spend is not None and not h.deleted
        ]
        for scope in SCOPES
        if whole_ledger
    }
    lifetime_scopes = [
        scope
        for scope in SCOPES
        if totals_wanted.get(scope) or any(s == scope and start == scalar_budgets.LIFETIME for (s, _), start in starts.items())
    ]
    sums = _Sums(conn, caps, options.now, lifetime_scopes)
    for scope in SCOPES:
        pairs = [(entity, start) for (s, entity), start in starts.items() if s == scope]
        for entity, totals in _period_sums(sums, scope, pairs, resume, state).items():
            period_sums[(scope, entity)] = totals
        wanted = totals_wanted.get(scope, [])
        if wanted:
            for entity, totals in _period_sums(sums, scope, wanted, resume, state).items():
                lifetime_sums[(scope, entity)] = totals
            for entity, _ in wanted:
                lifetime_sums.setdefault((scope, entity), (0.0, 0))
    leaks = {}
    for holder in holders:  # only entities at or over their budget: their period streamed in charge order
        entity = (holder.scope, holder.entity_id)
        limit = holder.max_budget
        if entity not in period_sums or limit is None or not 0 <= limit < math.inf or period_sums[entity][0] < limit:
            continue
        gated = (
            (lambda team_key: True)
            if holder.scope != "user" or options.user_budget_on_team_keys
            else (lambda team_key: not team_key)
        )
        charges = queries.period_charges(conn, caps, holder.scope, holder.entity_id, starts[entity], options.now)
        leaks[entity] = scalar_budgets.scalar_leaks(charges, limit, holder.scope in scalar_budgets.SCALAR_BLOCKS_AT_LIMIT, gated)
    redis_spend = {}
    if redis_values is not None:
        wanted = {
            (h.scope, h.entity_id): scalar_counter_key(h.scope, h.entity_id) for h in holders if (h.scope, h.entity_id) in starts
        }
        values = redis_values(sorted(set(wanted.values())))
        redis_spend = {entity: (key, values[key]) for entity, key in wanted.items() if key in values}
    findings = scalar_budgets.scalar_findings(holders, period_sums, lifetime_sums, starts, options, leaks, redis_spend)
    notes = [f"scalar spend not compared for {n} entities: {why}" for why, n in sorted(skipped.items())]
    return findings, notes


class _Sums:
    """Each entity's charged spend since its period start: queries.period_spend, except lifetime periods, which all
    scopes share one statement for (queries.lifetime_spend), read once per `ended_from` and kept."""

    def __init__(self, conn: Connection, caps: Capabilities, now: datetime, lifetime_scopes: list[str]):
        self.conn, self.caps, self.now, self.lifetime_scopes = conn, caps, now, lifetime_scopes
        self.lifetime: dict[datetime | None, dict] = {}

    def __call__(self, scope: str, pairs: list, ended_from: datetime | None = None) -> dict:
        periods = [(e, start) for e, start in pairs if start != scalar_budgets.LIFETIME]
        found = queries.period_spend(self.conn, self.caps, scope, periods, self.now, ended_from=ended_from)
        if len(periods) < len(pairs):
            if ended_from not in self.lifetime:
                self.lifetime[ended_from] = queries.lifetime_spend(
                    self.conn, self.caps, self.lifetime_scopes, self.now, ended_from
                )
            whole = self.lifetime[ended_from].get(scope, {})
            found.update((e, whole[e]) for e, start in pairs if start == scalar_budgets.LIFETIME and e in whole)
        return found


def _period_sums(
    sums: _Sums,
    scope: str,
    pairs: list,
    resume: checkpoint.State | None,
    state: checkpoint.State | None,
) -> dict:
    """Each entity's period sum (_Sums), resumable: an entity whose period started before the checkpoint's cut and
    has not rolled over since gets the checkpoint's sum plus that of the rows an incremental run reads (lifetime
    spend and total_spend above all: without it they read the whole ledger). Into the new checkpoint, each sum of a
    period that started before the new cut, less the rows the next incremental run will read."""
    if not pairs:
        return {}
    stored = resume.periods if resume is not None else {}
    known = [(e, start) for e, start in pairs if (scope, e, start) in stored]
    found = sums(scope, [(e, start) for e, start in pairs if (scope, e, start) not in stored])
    if known:
        since = sums(scope, known, ended_from=resume.cut)
        for e, start in known:
            (spend, rows), (more, more_rows) = stored[(scope, e, start)], since.get(e, (0.0, 0))
            found[e] = (money.add(spend, more), rows + more_rows)
    if state is not None:
        before = [(e, start) for e, start in pairs if start < state.cut]
        after = sums(scope, before, ended_from=state.cut)
        for e, start in before:
            (spend, rows), (later, later_rows) = found.get(e, (0.0, 0)), after.get(e, (0.0, 0))
            state.periods[(scope, e, start)] = (money.add(spend, -later), rows - later_rows)
    return found
