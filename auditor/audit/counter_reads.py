"""The counters a scan compares: LiteLLM_BudgetWindowSpend rows and Redis counters, keyed as the budgets expect,
less those it must not compare, and where enforcement reads them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping

from sqlalchemy import Connection

from auditor.ledger import budget_holders
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.counters import Counter, expected_keys, loose_counter_key, parse_counter_key, rekey
from auditor.litellm.eras import Era


def database_counters(conn: Connection, caps: Capabilities) -> list[Counter]:
    counters = []
    for row in budget_holders.model_budget_window_rows(conn, caps):
        key = parse_counter_key(row.entity_id)
        exact = key is not None
        key = key or loose_counter_key(row.entity_id)
        if key is not None:
            counters.append(Counter("budget_window_spend", key, row.spend, str(row.spend), row.window_start, exact))
    return counters


def read_source(counters: list[Counter]) -> str | None:
    """Where enforcement reads per-model counters: Redis when it holds any (1.102+ reads it first), else
    LiteLLM_BudgetWindowSpend when it holds any (1.109+ replicas without Redis), else nowhere we can see."""
    sources = {counter.source for counter in counters}
    return "redis" if "redis" in sources else "budget_window_spend" if "budget_window_spend" in sources else None


def counters_in_scope(
    conn: Connection,
    caps: Capabilities,
    budgets: Mapping,
    key_rows: list[budget_holders.KeyRow],
    selected: tuple[str, ...] | None,
    entity,
    redis_counters: Callable[[], list[Counter]] | None,
    era: Era | None,
) -> tuple[list[Counter], str | None, list[str]]:
    """The counters this scan compares, keyed as the budgets in scope expect them; where enforcement reads (judged
    from every counter: auditing one key does not move it); and notes on what is left out and why."""
    notes: list[str] = []
    counters = database_counters(conn, caps)
    if redis_counters is not None:
        counters += redis_counters()
    if era is not None and not era.counters_auditable:  # counters found anyway are compared; none is missing
        notes.append(
            f"LiteLLM {era.name} keeps per-model counters in each worker's memory: Redis holds none of them, so a "
            "counter is never missing there and the ledger is what is audited"
        )
    counters = rekey(
        counters,
        expected_keys(
            (b.scope, b.entity_id, name, entry.duration.raw) for b in budgets.values() for name, entry in b.entries.items()
        ),
    )
    source = read_source(counters)
    deleted = {row.token for row in key_rows if row.deleted}
    left = [c for c in counters if c.key.scope == "key" and c.key.entity_id in deleted]
    if left:  # a deleted key's last window: nothing removes the row (no TTL), nothing reads it again
        counters = [c for c in counters if not (c.key.scope == "key" and c.key.entity_id in deleted)]
        notes.append(
            f"{len(left)} counter{'s' if len(left) != 1 else ''} of deleted keys not compared: the last windows of keys "
            "LiteLLM no longer serves (it never removes them, and never reads them again)"
        )
    if selected is not None:
        counters = [c for c in counters if c.key.scope == "key" and c.key.entity_id in selected]
    if entity is not None:
        counters = [c for c in counters if (c.key.scope, c.key.entity_id) in budgets]
    return counters, source, notes


def by_entity(counters: list[Counter]) -> dict[tuple[str, str], list[Counter]]:
    """Counters grouped by the entity they count for."""
    grouped: dict[tuple[str, str], list[Counter]] = defaultdict(list)
    for counter in counters:
        grouped[(counter.key.scope, counter.key.entity_id)].append(counter)
    return grouped
