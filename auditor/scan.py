"""The scan: the ledger (LiteLLM_SpendLogs) against every per-model budget and every counter that caches it.

This module sequences the reads and feeds the pure parts (resolver, windows, reconcile);
it never renders and never writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter

from sqlalchemy import Connection

from auditor import queries, reconcile
from auditor.budgets import BudgetEntry, BudgetProblem, parse_model_max_budget
from auditor.capabilities import Capabilities
from auditor.catalogue import Catalogue
from auditor.counters import Counter, parse_counter_key
from auditor.errors import InputError
from auditor.findings import RowCounts, ScanResult
from auditor.resolver import Resolver, governing_entry
from auditor.windows import Charge, Window, WindowTracker

KEY_SCOPE = "key"


@dataclass(frozen=True)
class ScanOptions:
    now: datetime  # naive UTC: the instant the scan is judged at
    since: datetime | None = None
    until: datetime | None = None
    keys: tuple[str, ...] = ()  # hashes or aliases
    model: str | None = None
    tolerance: float = 0.0001
    window_slack: timedelta = timedelta(seconds=1)
    settle: timedelta = timedelta(seconds=120)


@dataclass
class KeyBudgets:
    """One key's per-model budget: usable entries and the ones LiteLLM ignores."""

    token: str
    alias: str | None
    deleted: bool
    source: str  # "key" or "budget_id"
    entries: dict[str, BudgetEntry] = field(default_factory=dict)
    problems: list[BudgetProblem] = field(default_factory=list)


def key_budgets(row: queries.KeyRow) -> KeyBudgets:
    """The key's own model_max_budget, else its budget table's when the key's is empty (LiteLLM 1.82+)."""
    own = parse_model_max_budget(row.model_max_budget)
    source = "key"
    if not own and row.budget_table_model_max_budget not in (None, {}, ""):
        own = parse_model_max_budget(row.budget_table_model_max_budget)
        source = "budget_id"
    budgets = KeyBudgets(row.token, row.key_alias, row.deleted, source)
    for name, parsed in own.items():
        if isinstance(parsed, BudgetEntry):
            budgets.entries[name] = parsed
        else:
            budgets.problems.append(parsed)
    return budgets


def select_keys(key_rows: list[queries.KeyRow], wanted: tuple[str, ...]) -> tuple[str, ...] | None:
    """--key takes hashes or aliases; an unknown one is a usage error, not an empty scan."""
    if not wanted:
        return None
    by_alias: dict[str, list[str]] = defaultdict(list)
    tokens = {row.token for row in key_rows}
    for row in key_rows:
        if row.key_alias:
            by_alias[row.key_alias].append(row.token)
    chosen: list[str] = []
    for name in wanted:
        if name in tokens:
            chosen.append(name)
        elif name in by_alias:
            chosen.extend(by_alias[name])
        else:
            raise InputError(f"--key {name!r} matches no key hash or key alias in LiteLLM_VerificationToken")
    return tuple(dict.fromkeys(chosen))


def run_scan(
    conn: Connection,
    caps: Capabilities,
    catalogue: Catalogue,
    options: ScanOptions,
    redis_counters: Callable[[], list[Counter]] | None = None,
    progress: Callable[[int], None] | None = None,
    source: Mapping[str, object] | None = None,
    key_rows: list[queries.KeyRow] | None = None,
) -> ScanResult:
    key_rows = queries.keys(conn, caps) if key_rows is None else key_rows
    selected = select_keys(key_rows, options.keys)
    where = queries.SpendFilter(since=options.since, until=options.until, api_keys=selected)
    resolutions = Resolver(catalogue)

    groups = queries.spend_groups(conn, caps, where)
    rows = RowCounts()
    for group in groups:
        if group.outcome != queries.CHARGED:
            rows.ignored_by_reason[group.outcome] = rows.ignored_by_reason.get(group.outcome, 0) + group.requests
        elif resolutions(group.model, group.model_group, group.model_id).status == "resolved":
            rows.attributed += group.requests
        else:
            rows.unresolved += group.requests

    budgets = {row.token: key_budgets(row) for row in key_rows if selected is None or row.token in selected}
    counters = [c for c in _database_counters(conn, caps) if selected is None or c.key.entity_id in selected]
    redis_in_use = False
    if redis_counters is not None:
        from_redis = [c for c in redis_counters() if selected is None or c.key.entity_id in selected]
        redis_in_use = any(c.key.scope == KEY_SCOPE for c in from_redis)
        counters += from_redis
    counters_by_key: dict[str, list[Counter]] = defaultdict(list)
    for counter in counters:
        if counter.key.scope == KEY_SCOPE:
            counters_by_key[counter.key.entity_id].append(counter)

    windowed = sorted(token for token, kb in budgets.items() if kb.entries)
    ledger = reconcile.CounterLedger(counters, options)
    windows: dict[tuple[str, str], list[Window]] = {}
    groups_by_entry: dict[tuple[str, str], set[str]] = defaultdict(set)
    for token, charges in groupby(queries.stream_charges(conn, caps, where, windowed), key=attrgetter("api_key")):
        kb = budgets[token]
        trackers = {name: WindowTracker(entry.duration, entry.limit) for name, entry in kb.entries.items()}
        closed: dict[str, list[Window]] = defaultdict(list)
        governing: dict[str, BudgetEntry | None] = {}
        seen = 0
        for charge in charges:
            seen += 1
            resolution = resolutions(charge.model, charge.model_group, charge.model_id)
            if resolution.status != "resolved":
                continue
            group = resolution.group
            if group not in governing:
                governing[group] = governing_entry(group, kb.entries, catalogue.access_groups_of(group))
            entry = governing[group]
            if entry is None:
                continue
            groups_by_entry[(token, entry.name)].add(group)
            done = trackers[entry.name].add(Charge(charge.start_time, charge.end_time, charge.spend))
            if done is not None:
                closed[entry.name].append(done)
            ledger.add(token, entry, charge.end_time, charge.spend)
        for name, tracker in trackers.items():
            last = tracker.close()
            if last is not None:
                closed[name].append(last)
            windows[(token, name)] = closed[name]
        if progress is not None:
            progress(seen)

    logged_groups = {
        resolution.group
        for group in groups
        if (resolution := resolutions(group.model, group.model_group, group.model_id)).status == "resolved"
    }
    findings = reconcile.budget_findings(budgets, windows, groups_by_entry, catalogue, logged_groups, options)
    findings += reconcile.counter_findings(budgets, windows, counters_by_key, ledger, resolutions, catalogue, options,
                                           read_source=_read_source(counters_by_key, redis_in_use))
    findings += reconcile.resolution_findings(groups, resolutions)
    notes = reconcile.model_spend_notes(key_rows)
    findings += reconcile.model_spend_findings(key_rows, groups, resolutions, options, selected)
    spend = reconcile.window_spend(budgets, windows, groups_by_entry)
    if options.model:
        findings = [f for f in findings if options.model in (f.model_group, f.budget_model, f.model)]
        spend = [s for s in spend if options.model in (s.model_group, s.budget_model)]
    if not catalogue.has_config:
        notes.append("no LiteLLM config: model names resolved from LiteLLM_ProxyModelTable and the rows themselves")
    return ScanResult(
        as_of=options.now,
        source=dict(source or {}),
        rows=rows,
        spend=spend,
        findings=findings,
        notes=notes,
    )


def _database_counters(conn: Connection, caps: Capabilities) -> list[Counter]:
    counters = []
    for row in queries.model_budget_window_rows(conn, caps):
        key = parse_counter_key(row.entity_id)
        if key is not None:
            counters.append(Counter("budget_window_spend", key, row.spend, str(row.spend), row.window_start))
    return counters


def _read_source(counters_by_key: Mapping[str, list[Counter]], redis_in_use: bool) -> str | None:
    """Where enforcement reads key counters: Redis when it holds any (1.102+ reads it first), else
    LiteLLM_BudgetWindowSpend when it holds any (1.109+ replicas without Redis), else nowhere we can see."""
    if redis_in_use:
        return "redis"
    if any(c.source == "budget_window_spend" for cs in counters_by_key.values() for c in cs):
        return "budget_window_spend"
    return None


def load_catalogue(conn: Connection, caps: Capabilities, config_path: str | None, key_rows: list[queries.KeyRow]) -> Catalogue:
    """The model catalogue from the config file (if any), LiteLLM_ProxyModelTable and keys' aliases."""
    from pathlib import Path

    from auditor.catalogue import build_catalogue
    from auditor.config import load_config

    loaded = load_config(Path(config_path)) if config_path else None
    key_aliases: dict[str, str] = {}
    for row in key_rows:
        if isinstance(row.aliases, Mapping):
            key_aliases.update({str(k): str(v) for k, v in row.aliases.items() if isinstance(v, str)})
    return build_catalogue(
        loaded.data if loaded else None,
        queries.proxy_models(conn, caps),
        key_aliases,
        config_name=Path(config_path).name if config_path else "config.yaml",
    )
