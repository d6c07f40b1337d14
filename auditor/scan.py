"""The scan: the ledger (LiteLLM_SpendLogs) against every per-model budget and every counter that caches it.

This module sequences the reads and feeds the pure parts (resolver, windows, reconcile);
it never renders and never writes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
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
from auditor.durations import shift_months
from auditor.errors import AuditorError, InputError
from auditor.findings import RowCounts, ScanResult
from auditor.resolver import Resolver, budget_candidates, governing_entry
from auditor.windows import Window, WindowTracker



@dataclass(frozen=True)
class ScanOptions:
    now: datetime  # naive UTC: the instant the scan is judged at
    since: datetime | None = None
    until: datetime | None = None
    keys: tuple[str, ...] = ()  # hashes or aliases
    entity: tuple[str, str | tuple[str, str]] | None = None  # (scope, id): audit one entity alone (explain)
    model: str | None = None
    tolerance: float = 0.0001
    window_slack: timedelta = timedelta(seconds=1)
    settle: timedelta = timedelta(seconds=120)
    timezone: str | None = None  # where LiteLLM aligns scalar budget resets (litellm_settings.timezone)
    retention: str | bool | None = None  # how LiteLLM trims old spend logs (config.spend_log_retention)
    use_rollups: bool = False  # fill per-day history before the ledger from LiteLLM_DailyUserSpend


SCOPES = ("key", "team", "user", "end_user", "team_member")


@dataclass
class EntityBudgets:
    """One entity's per-model budget at one scope: usable entries and the ones LiteLLM ignores."""

    scope: str
    entity_id: str  # as LiteLLM keys its counters
    alias: str | None
    deleted: bool
    source: str  # where model_max_budget came from
    stream_id: str | tuple[str, str]  # how its spend-log rows are selected
    entries: dict[str, BudgetEntry] = field(default_factory=dict)
    problems: list[BudgetProblem] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.entity_id


def entity_budgets(holder: queries.Holder) -> EntityBudgets:
    entity = holder.entity_id
    entity_id = queries.team_member_entity_id(*entity) if isinstance(entity, tuple) else entity
    budgets = EntityBudgets(holder.scope, entity_id, holder.alias, holder.deleted, holder.budget_source, entity)
    for name, parsed in parse_model_max_budget(holder.model_max_budget).items():
        if isinstance(parsed, BudgetEntry):
            budgets.entries[name] = parsed
        else:
            budgets.problems.append(parsed)
    return budgets


def key_budgets(row: queries.KeyRow) -> EntityBudgets:
    return entity_budgets(queries.key_holder(row))


def team_entries(group: str, team: Mapping[str, BudgetEntry], key: Mapping[str, BudgetEntry]) -> Mapping[str, BudgetEntry]:
    """LiteLLM 1.109: a key entry named after the model that spend-gates it replaces the team's entry of
    that name for the key's requests; the team's group and glob entries still apply."""
    candidates = budget_candidates(group)
    named = {name: key[name] for name in candidates if name in key}
    replacing = governing_entry(group, named, frozenset()) if named else None
    if replacing is None or not replacing.enforced:
        return team
    return {name: entry for name, entry in team.items() if name not in candidates}


class _Counted:
    """Passes rows through, counting them, for the progress bar."""

    def __init__(self, rows):
        self.rows, self.seen = rows, 0

    def __iter__(self):
        for row in self.rows:
            self.seen += 1
            yield row


def governed_charges(eb: EntityBudgets, charges, resolutions: Resolver, catalogue: Catalogue, keys_entries):
    """Each charge of one entity with its model group and the budget entry LiteLLM charges it to; charges no
    entry governs, or whose model cannot be placed, are passed over. Decided once per logged model (and, for a
    team, per key): this runs once per charged row, so a row costs one dict lookup."""
    placed: dict[tuple[str, str, str, str], tuple[str, BudgetEntry] | None] = {}
    per_key = eb.scope == "team"
    for charge in charges:
        memo = (charge.model, charge.model_group, charge.model_id, charge.api_key if per_key else "")
        place = placed.get(memo, False)
        if place is False:
            place = placed[memo] = _place(eb, charge, resolutions, catalogue, keys_entries)
        if place is not None:
            yield charge, place[0], place[1]


def _place(eb: EntityBudgets, charge, resolutions: Resolver, catalogue: Catalogue, keys_entries) -> tuple[str, BudgetEntry] | None:
    resolution = resolutions(charge.model, charge.model_group, charge.model_id)
    if resolution.status != "resolved":
        return None
    group = resolution.group
    entries = team_entries(group, eb.entries, keys_entries.get(charge.api_key, {})) if eb.scope == "team" else eb.entries
    entry = governing_entry(group, entries, catalogue.access_groups_of(group))
    return None if entry is None else (group, entry)


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
    where = queries.SpendFilter(since=options.since, until=options.until, api_keys=selected, entity=options.entity)
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

    holders = queries.holders(conn, caps, key_rows)
    if selected is not None:  # --key audits those keys alone: other scopes would see only part of their spend
        holders = [h for h in holders if h.scope == "key" and h.entity_id in selected]
    if options.entity is not None:
        holders = [h for h in holders if (h.scope, h.entity_id) == options.entity]
    budgets = {(b.scope, b.entity_id): b for b in map(entity_budgets, holders)}
    keys_entries = {b.entity_id: b.entries for b in budgets.values() if b.scope == "key"}

    counters = _database_counters(conn, caps)
    if redis_counters is not None:
        counters += redis_counters()
    read_source = _read_source(counters)  # from every counter: auditing one key does not move where LiteLLM reads
    if selected is not None:
        counters = [c for c in counters if c.key.scope == "key" and c.key.entity_id in selected]
    if options.entity is not None:
        counters = [c for c in counters if (c.key.scope, c.key.entity_id) in budgets]
    counters_by_entity: dict[tuple[str, str], list[Counter]] = defaultdict(list)
    for counter in counters:
        counters_by_entity[(counter.key.scope, counter.key.entity_id)].append(counter)

    ledger = reconcile.CounterLedger(counters, options)
    windows: dict[tuple[str, str, str], list[Window]] = {}
    groups_by_entry: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for scope in SCOPES:
        budgeted = [b for b in budgets.values() if b.scope == scope and b.entries]
        by_stream_id = {b.stream_id: b for b in budgeted}
        stream = queries.stream_charges(conn, caps, where, scope, sorted(by_stream_id))
        for entity_id, charges in groupby(stream, key=attrgetter("entity_id")):
            eb = budgets[(scope, entity_id)]
            trackers = {name: WindowTracker(entry.duration, entry.limit) for name, entry in eb.entries.items()}
            closed: dict[str, list[Window]] = defaultdict(list)
            seen: dict[str, set[str]] = defaultdict(set)  # entry name -> the model groups it charged
            counted = _Counted(charges)
            cached = ledger.caches(scope, entity_id)
            for charge, group, entry in governed_charges(eb, counted, resolutions, catalogue, keys_entries):
                seen[entry.name].add(group)
                done = trackers[entry.name].add(charge)
                if done is not None:
                    closed[entry.name].append(done)
                if cached:
                    ledger.add(scope, entity_id, entry, charge.end_time, charge.spend)
            for name, groups_seen in seen.items():
                groups_by_entry[(scope, entity_id, name)] |= groups_seen
            for name, tracker in trackers.items():
                last = tracker.close()
                if last is not None:
                    closed[name].append(last)
                windows[(scope, entity_id, name)] = closed[name]
            if progress is not None:
                progress(counted.seen)

    findings_scalar, scalar_notes = _scalar(conn, caps, holders, options)

    logged_groups = {
        resolution.group
        for group in groups
        if (resolution := resolutions(group.model, group.model_group, group.model_id)).status == "resolved"
    }
    findings = reconcile.budget_findings(budgets, windows, groups_by_entry, catalogue, logged_groups, options)
    findings += reconcile.counter_findings(budgets, windows, counters_by_entity, ledger, resolutions, catalogue, options,
                                           read_source=read_source)
    findings += reconcile.resolution_findings(groups, resolutions)
    notes = reconcile.model_spend_notes(key_rows)
    findings += reconcile.model_spend_findings(key_rows, groups, resolutions, options, selected)
    findings += findings_scalar
    notes += scalar_notes
    rollup_history: list[dict] = []
    rollup_found, rollup_notes = _rollups(conn, caps, key_rows, options, selected, rollup_history)
    findings += rollup_found
    notes += rollup_notes
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
        resolutions=_resolution_records(groups, resolutions),
        rollup_history=rollup_history if options.use_rollups else None,
    )


def _resolution_records(groups: list[queries.SpendGroup], resolutions: Resolver) -> list[dict]:
    """Charged rows and spend per distinct logged model triple, with how the resolver placed it (coverage)."""
    totals: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, 0.0])
    for group in groups:
        if group.outcome == queries.CHARGED:
            bucket = totals[(group.model, group.model_group, group.model_id)]
            bucket[0] += group.requests
            bucket[1] += group.spend
    records = []
    for (model, model_group, model_id), (rows, spend) in sorted(totals.items()):
        resolution = resolutions(model, model_group, model_id)
        records.append({
            "model": model or None, "model_group": model_group or None, "model_id": model_id or None,
            "status": resolution.status, "group": resolution.group, "rule": resolution.rule,
            "decided_by": resolution.decided_by, "candidates": list(resolution.candidates), "rows": rows, "spend": spend,
        })
    return records


def _scalar(conn: Connection, caps: Capabilities, holders: list[queries.Holder], options: ScanOptions):
    """Every entity's scalar spend over its current period, summed in SQL per scope."""
    from auditor.periods import zone

    tz = zone(options.timezone)
    complete_since = _ledger_complete_since(conn, options)
    starts: dict[tuple[str, object], datetime] = {}
    skipped: dict[str, int] = defaultdict(int)
    for holder in holders:
        if holder.deleted or holder.spend is None:
            continue
        start = reconcile.scalar_period(holder, tz)
        if start is None:
            skipped["budget_duration without budget_reset_at"] += 1
        elif complete_since is not None and start < complete_since:
            why = "lifetime spend" if start == reconcile.LIFETIME else "a period starting"
            skipped[f"{why} before {complete_since:%Y-%m-%d %H:%M}, where the ledger (spend-log retention, --since) begins"] += 1
        else:
            starts[(holder.scope, holder.entity_id)] = start
    period_sums: dict[tuple[str, object], tuple[float, int]] = {}
    lifetime_sums: dict[tuple[str, object], tuple[float, int]] = {}
    whole_ledger = complete_since is None
    for scope in SCOPES:
        pairs = [(entity, start) for (s, entity), start in starts.items() if s == scope]
        for entity, totals in queries.period_spend(conn, caps, scope, pairs, options.now).items():
            period_sums[(scope, entity)] = totals
        totals_wanted = [(h.entity_id, reconcile.LIFETIME) for h in holders if h.scope == scope and h.total_spend is not None and not h.deleted]
        if whole_ledger and totals_wanted:
            for entity, totals in queries.period_spend(conn, caps, scope, totals_wanted, options.now).items():
                lifetime_sums[(scope, entity)] = totals
            for entity, _ in totals_wanted:
                lifetime_sums.setdefault((scope, entity), (0.0, 0))
    findings = reconcile.scalar_findings(holders, period_sums, lifetime_sums, starts, options)
    notes = [f"scalar spend not compared for {n} entities: {why}" for why, n in sorted(skipped.items())]
    return findings, notes


def _rollups(conn: Connection, caps: Capabilities, key_rows, options: ScanOptions, selected, history_out: list[dict]) -> tuple[list, list[str]]:
    """Daily rollups (per user, team, end user) against the ledger, only on whole days the ledger fully covers."""
    from auditor.schema import DAILY_ROLLUPS

    present = [(name, table, by) for name, (table, by) in DAILY_ROLLUPS.items() if caps.has_table(name)]
    if not present:
        return [], []
    complete_since = _ledger_complete_since(conn, options)
    if complete_since is None:  # nothing trimmed: the ledger starts with the deployment, its first day is whole
        oldest, _ = queries.spend_time_range(conn)
        first = (oldest or options.now).date()
    else:  # the first whole day the ledger holds
        first = complete_since.date() + timedelta(days=0 if complete_since.time() == datetime.min.time() else 1)
    last = (options.now - options.settle).date() - timedelta(days=1)  # today's rollup is still being written
    if options.until is not None:
        last = min(last, options.until.date() - timedelta(days=1))  # days before --until's are whole
    aliases = {row.token: row.key_alias for row in key_rows}
    findings, notes = [], []
    for name, table, by in present:
        first_rollup, _ = queries.rollup_date_range(conn, table)
        if first_rollup is None:
            continue
        if first_rollup < first.isoformat():
            notes.append(f"{name} before {first.isoformat()} is not compared: the ledger does not fully cover those days")
            if options.use_rollups and name == "LiteLLM_DailyUserSpend":
                before = (first - timedelta(days=1)).isoformat()
                history_out.extend(
                    {"date": day, "api_key": api_key, "model": model, "custom_llm_provider": provider or None,
                     "spend": totals.spend, "requests": totals.requests, "source": name}
                    for (day, api_key, model, provider), totals in sorted(queries.rollup_days(conn, table, first_rollup, before).items())
                    if selected is None or api_key in selected
                )
                notes.append(
                    f"per-day history {first_rollup} .. {before} comes from {name} (--use-rollups): no per-request "
                    "order, so no windows, leaks or counters there, and model groups that share a deployment are "
                    "merged (LiteLLM issue #36172)"
                )
        if first > last:
            continue
        ledger = queries.ledger_days(conn, caps, by, first.isoformat(), last.isoformat())
        rollups = queries.rollup_days(conn, table, first.isoformat(), last.isoformat())
        if selected is not None:
            ledger = {k: v for k, v in ledger.items() if k[1] in selected}
            rollups = {k: v for k, v in rollups.items() if k[1] in selected}
        findings += reconcile.rollup_findings(name, ledger, rollups, aliases, options)
    return findings, notes


def _ledger_complete_since(conn: Connection, options: ScanOptions) -> datetime | None:
    """From when the ledger holds every row: --since, the retention cutoff, or (size-based retention) the
    oldest row left. None: since the beginning."""
    from auditor.durations import parse_duration

    cutoffs = [options.since] if options.since else []
    if options.retention is True:
        oldest, _ = queries.spend_time_range(conn)
        cutoffs.append(oldest or options.now)
    elif isinstance(options.retention, str):
        try:
            duration = parse_duration(options.retention, now=options.now)
        except AuditorError:
            duration = None
        if duration is not None and duration.seconds is not None:
            cutoffs.append(options.now - timedelta(seconds=duration.seconds))
        elif duration is not None:
            cutoffs.append(shift_months(options.now, -duration.value))
        else:
            oldest, _ = queries.spend_time_range(conn)
            cutoffs.append(oldest or options.now)
    return max(cutoffs) if cutoffs else None


def _database_counters(conn: Connection, caps: Capabilities) -> list[Counter]:
    counters = []
    for row in queries.model_budget_window_rows(conn, caps):
        key = parse_counter_key(row.entity_id)
        if key is not None:
            counters.append(Counter("budget_window_spend", key, row.spend, str(row.spend), row.window_start))
    return counters


def _read_source(counters: list[Counter]) -> str | None:
    """Where enforcement reads per-model counters: Redis when it holds any (1.102+ reads it first), else
    LiteLLM_BudgetWindowSpend when it holds any (1.109+ replicas without Redis), else nowhere we can see."""
    sources = {counter.source for counter in counters}
    return "redis" if "redis" in sources else "budget_window_spend" if "budget_window_spend" in sources else None


def load_catalogue(conn: Connection, caps: Capabilities, loaded, key_rows: list[queries.KeyRow]) -> Catalogue:
    """The model catalogue from the config file (if any), LiteLLM_ProxyModelTable and keys' aliases."""
    from pathlib import Path

    from auditor.catalogue import build_catalogue

    key_aliases: dict[str, str] = {}
    for row in key_rows:
        if isinstance(row.aliases, Mapping):
            key_aliases.update({str(k): str(v) for k, v in row.aliases.items() if isinstance(v, str)})
    return build_catalogue(
        loaded.data if loaded else None,
        queries.proxy_models(conn, caps),
        key_aliases,
        config_name=Path(loaded.path).name if loaded else "config.yaml",
    )
