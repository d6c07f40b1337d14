"""One entity's story for a human: its budget entries, windows, counters and scalar spend.

Built from the same scan (restricted to the entity) plus one replay of its charges to name the
requests that crossed each limit and those admitted after it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import Connection

from auditor.audit.entities import EntityBudgets, entity_budgets, governed_charges
from auditor.audit.findings import Finding, ScanResult
from auditor.audit.scan import ScanOptions, run_scan
from auditor.errors import InputError
from auditor.ledger import budget_holders, queries
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.budgets import BudgetEntry, BudgetProblem
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.resolver import Resolver
from auditor.money import to_dollars, to_nanos

EXAMPLES = 3  # request ids named per window; the counts are always complete


@dataclass
class WindowStory:
    start: datetime
    end: datetime
    spend: float
    requests: int
    requests_after_limit: int = 0
    spend_after_limit: float = 0.0
    crossed_by: str | None = None  # the request whose charge took the window to its limit
    crossed_at: datetime | None = None
    leaked_examples: list[str] = field(default_factory=list)


@dataclass
class EntryStory:
    name: str
    entry: BudgetEntry | BudgetProblem
    windows: list[WindowStory] = field(default_factory=list)
    counters: list[Finding] = field(default_factory=list)


@dataclass
class Story:
    budgets: EntityBudgets
    holder: budget_holders.Holder
    entries: list[EntryStory]
    other: list[Finding]  # scalar spend, miskeyed counters, whole-entity budgets
    result: ScanResult


def find_holder(holders: list[budget_holders.Holder], scope: str, wanted: str) -> budget_holders.Holder:
    """By id first, then alias; an alias shared by several entities is a usage error, not a guess."""
    in_scope = [h for h in holders if h.scope == scope]
    exact = [h for h in in_scope if h.entity_id == wanted or (isinstance(h.entity_id, tuple) and ":".join(h.entity_id) == wanted)]
    if not exact:
        exact = [h for h in in_scope if h.alias == wanted]
    if not exact:
        raise InputError(f"no {scope.replace('_', ' ')} {wanted!r} (by id or alias) in LiteLLM's tables")
    if len(exact) > 1:
        raise InputError(f"{len(exact)} {scope.replace('_', ' ')}s are called {wanted!r}: give the id instead")
    return exact[0]


def explain(
    conn: Connection,
    caps: Capabilities,
    catalogue: Catalogue,
    options: ScanOptions,
    key_rows,
    holder: budget_holders.Holder,
    redis_counters=None,
) -> Story:
    scoped = replace(options, entity=(holder.scope, holder.entity_id))
    result = run_scan(conn, caps, catalogue, scoped, redis_counters=redis_counters, key_rows=key_rows)
    budgets = entity_budgets(holder)
    stories = {name: EntryStory(name, entry) for name, entry in budgets.entries.items()}
    for problem in budgets.problems:
        stories[problem.name] = EntryStory(problem.name, problem)
    for spend in result.spend:
        if spend.budget_model in stories:
            stories[spend.budget_model].windows.append(
                WindowStory(spend.window_start, spend.window_end, spend.logged_spend, spend.requests)
            )
    other = []
    for finding in result.findings:
        if finding.kind == "over_budget" and finding.budget_model in stories:
            for window in stories[finding.budget_model].windows:
                if window.start == finding.window_start:
                    window.requests_after_limit = finding.requests_after_limit or 0
                    window.spend_after_limit = finding.spend_after_limit or 0.0
        elif (
            finding.kind == "counter_drift"
            and finding.counter_source in ("redis", "budget_window_spend")
            and finding.budget_model in stories
        ):
            stories[finding.budget_model].counters.append(finding)
        elif (finding.scope, finding.entity_id) == (budgets.scope, budgets.entity_id):
            other.append(finding)
    _name_requests(conn, caps, catalogue, scoped, budgets, stories, key_rows)
    return Story(budgets, holder, list(stories.values()), other, result)


def _name_requests(conn, caps, catalogue, options, budgets: EntityBudgets, stories, key_rows) -> None:
    """Replay the entity's charges to name, per over-budget window, the crossing request and examples of leaks."""
    over = {
        (name, window.start): window
        for name, story in stories.items()
        if isinstance(story.entry, BudgetEntry) and story.entry.enforced
        for window in story.windows
        if window.spend > story.entry.limit
    }
    if not over:
        return
    keys_entries = {}
    if budgets.scope == "team":
        keys_entries = {b.entity_id: b.entries for b in map(entity_budgets, map(budget_holders.key_holder, key_rows))}
    where = queries.SpendFilter(since=options.since, until=options.until, entity=options.entity)
    charges = queries.stream_charges(conn, caps, where, budgets.scope, [budgets.stream_id])
    totals: dict[tuple[str, datetime], int] = defaultdict(int)  # nano-dollars, as the window tracker adds them
    for charge, _, entry in governed_charges(budgets, charges, Resolver(catalogue), catalogue, keys_entries):
        window = next((w for (name, _), w in over.items() if name == entry.name and w.start <= charge.end_time < w.end), None)
        if window is None:
            continue
        if window.crossed_at is not None and charge.start_time >= window.crossed_at:
            if len(window.leaked_examples) < EXAMPLES:
                window.leaked_examples.append(charge.request_id)
        totals[(entry.name, window.start)] += to_nanos(charge.spend)
        if window.crossed_at is None and to_dollars(totals[(entry.name, window.start)]) >= entry.limit:
            window.crossed_by, window.crossed_at = charge.request_id, charge.end_time
