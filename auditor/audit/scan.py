"""The scan: the ledger (LiteLLM_SpendLogs) against every per-model budget and every counter that caches it.

This module sequences the reads and feeds the pure parts (resolver, windows, reconcile);
it never renders and never writes.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from itertools import chain, groupby
from operator import attrgetter

from sqlalchemy import Connection

from auditor import money
from auditor.audit import checkpoint
from auditor.ledger import queries
from auditor.ledger import budget_holders
from auditor.ledger import daily_rollups
from auditor.audit import reconcile
from auditor.audit import shared_windows
from auditor.litellm.budgets import BudgetEntry, BudgetProblem, parse_model_max_budget
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.counters import Counter, expected_keys, loose_counter_key, parse_counter_key, rekey, scalar_counter_key
from auditor.litellm.durations import shift_months
from auditor.litellm.eras import PER_ENTITY, era_named
from auditor.errors import AuditorError, InputError
from auditor.audit.findings import RowCounts, ScanResult
from auditor.redact import is_raw_key
from auditor.litellm.resolver import Resolver, budget_candidates, governing_entry
from auditor.audit.windows import DEFAULT_LOOKBACK, Window, WindowTracker

log = logging.getLogger(__name__)  # -v: the phases of a scan, counts only (auditor/cli/main.py)


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
    default_end_user_budget: str | None = None  # litellm_settings.max_end_user_budget_id
    user_budget_on_team_keys: bool = False  # general_settings.apply_user_budget_to_team_keys
    era: str | None = None  # auditor.litellm.eras.Era.name of the release that ran (None: the latest's rules)


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


def entity_budgets(holder: budget_holders.Holder) -> EntityBudgets:
    entity = holder.entity_id
    entity_id = queries.team_member_entity_id(*entity) if isinstance(entity, tuple) else entity
    budgets = EntityBudgets(holder.scope, entity_id, holder.alias, holder.deleted, holder.budget_source, entity)
    for name, parsed in parse_model_max_budget(holder.model_max_budget).items():
        if isinstance(parsed, BudgetEntry):
            budgets.entries[name] = parsed
        else:
            budgets.problems.append(parsed)
    return budgets


def key_budgets(row: budget_holders.KeyRow) -> EntityBudgets:
    return entity_budgets(budget_holders.key_holder(row))


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
    entry = entry_for(eb, resolution.budget_name, catalogue, keys_entries.get(charge.api_key, {}))
    return None if entry is None else (resolution.group, entry)


def entry_for(eb: EntityBudgets, name: str, catalogue: Catalogue, key_entries: Mapping[str, BudgetEntry]) -> BudgetEntry | None:
    """The entry LiteLLM's limiter charges a request for `name` to (resolve_model_budget), at the entity's scope;
    for a team, after the requesting key's own entries replaced the team's of the same name."""
    entries = team_entries(name, eb.entries, key_entries) if eb.scope == "team" else eb.entries
    return governing_entry(name, entries, catalogue.access_groups_of(name))


def select_keys(key_rows: list[budget_holders.KeyRow], wanted: tuple[str, ...]) -> tuple[str, ...] | None:
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
    key_rows: list[budget_holders.KeyRow] | None = None,
    increment: checkpoint.Increment | None = None,
    redis_values: Callable[[list[str]], Mapping[str, str]] | None = None,
) -> ScanResult:
    """The scan. With `increment` (auditor report) it also cuts a checkpoint of its state, and, when asked and
    the previous checkpoint is still valid, resumes from it and reads only the rows that ended since its cut
    (auditor/audit/checkpoint.py); the result is the same either way."""
    key_rows = budget_holders.keys(conn, caps) if key_rows is None else key_rows
    selected = select_keys(key_rows, options.keys)
    where = queries.SpendFilter(since=options.since, until=options.until, api_keys=selected, entity=options.entity)
    resolutions = Resolver(catalogue)

    holders = budget_holders.holders(conn, caps, key_rows, options.default_end_user_budget)
    if selected is not None:  # --key audits those keys alone: other scopes would see only part of their spend
        holders = [h for h in holders if h.scope == "key" and h.entity_id in selected]
    if options.entity is not None:
        holders = [h for h in holders if (h.scope, h.entity_id) == options.entity]
    budgets = {(b.scope, b.entity_id): b for b in map(entity_budgets, holders)}
    era = era_named(options.era) if options.era else None
    era_notes: list[str] = []
    if era is not None:  # only the scopes that release's limiter had
        budgets, era_notes = shared_windows.in_era(budgets, era)
    shared = era is not None and era.start_keys == PER_ENTITY  # before 1.99: one start key per key, replayed
    keys_entries = {b.entity_id: b.entries for b in budgets.values() if b.scope == "key"}

    counters = _database_counters(conn, caps)
    if redis_counters is not None:
        counters += redis_counters()
    if era is not None and not era.counters_auditable:  # counters found anyway are compared; none is missing
        era_notes.append(f"LiteLLM {era.name} keeps per-model counters in each worker's memory: Redis holds none of them, so a "
                         "counter is never missing there and the ledger is what is audited")
    counters = rekey(counters, expected_keys(
        (b.scope, b.entity_id, name, entry.duration.raw) for b in budgets.values() for name, entry in b.entries.items()))
    read_source = _read_source(counters)  # from every counter: auditing one key does not move where LiteLLM reads
    deleted = {row.token for row in key_rows if row.deleted}
    left = [c for c in counters if c.key.scope == "key" and c.key.entity_id in deleted]
    if left:  # a deleted key's last window: nothing removes the row (no TTL), nothing reads it again
        counters = [c for c in counters if not (c.key.scope == "key" and c.key.entity_id in deleted)]
        era_notes.append(f"{len(left)} counter{'s' if len(left) != 1 else ''} of deleted keys not compared: the last windows of keys "
                         "LiteLLM no longer serves (it never removes them, and never reads them again)")
    if selected is not None:
        counters = [c for c in counters if c.key.scope == "key" and c.key.entity_id in selected]
    if options.entity is not None:
        counters = [c for c in counters if (c.key.scope, c.key.entity_id) in budgets]
    log.info("budgets: %d keys read, %d entities with per-model budgets; %d counters to compare", len(key_rows),
             len(budgets), len(counters))
    counters_by_entity: dict[tuple[str, str], list[Counter]] = defaultdict(list)
    for counter in counters:
        counters_by_entity[(counter.key.scope, counter.key.entity_id)].append(counter)

    resume, cut, bounds = None, None, (None, None, None)
    if increment is not None and shared:
        why = f"LiteLLM {era.name} shares one window start per key: its windows are rebuilt from the whole ledger every run"
        increment.fallback, increment.not_stored = (why if increment.requested else None), why
    elif increment is not None:
        resume, cut, bounds = _plan(conn, caps, catalogue, options, where, selected, holders, budgets, counters, increment)
    read = where if resume is None else replace(where, ended_from=resume.cut)
    first_paid: queries.PaidJobs | None = {} if cut is not None else None

    # a full read also places every charged row in every scope, for the spend lines (_ungoverned_spend)
    other_scopes = selected is None and (options.entity is None or options.entity[0] != "key")
    by_entity: list | None = [] if resume is None and other_scopes else None
    read_groups = queries.spend_groups(conn, caps, read, resume.jobs if resume else (), first_paid, by_entity)
    groups = checkpoint.merge_groups(resume.groups, read_groups) if resume is not None else read_groups
    rows = RowCounts()
    for group in groups:
        if group.outcome != queries.CHARGED:
            rows.ignored_by_reason[group.outcome] = rows.ignored_by_reason.get(group.outcome, 0) + group.requests
        elif resolutions(group.model, group.model_group, group.model_id).status == "resolved":
            rows.attributed += group.requests
        else:
            rows.unresolved += group.requests

    log.info("ledger: %d spend rows read in %d groups (%d charged and resolved, %d unresolved, %d not charged)",
             sum(g.requests for g in read_groups), len(read_groups), rows.attributed, rows.unresolved,
             sum(rows.ignored_by_reason.values()))
    ledger = reconcile.CounterLedger(counters, options)
    if resume is not None:
        for counter in ledger.values:
            ledger.values[counter] = resume.counters.get(checkpoint.counter_id(counter), 0.0)
    state = None
    if cut is not None:
        state = checkpoint.State(cut, *bounds)
        state.jobs = (set(resume.jobs) if resume else set()) | _paid_before(first_paid, cut)
        if resume is not None and cut == resume.cut:  # nothing ended between the cuts: the old totals stand
            state.groups = resume.groups
        else:
            after = queries.spend_groups(conn, caps, replace(where, ended_from=cut), state.jobs)
            state.groups = checkpoint.merge_groups(groups, minus=after)
    if shared:
        windows, groups_by_entry, replays = shared_windows.era_windows(
            era, budgets, lambda scope, ids: queries.stream_charges(conn, caps, read, scope, ids), progress)
    else:
        windows, groups_by_entry = _windows(conn, caps, catalogue, resolutions, budgets, keys_entries, read, ledger, progress,
                                            resume, state, options.window_slack)

    log.info("windows: %d budget windows rebuilt", sum(map(len, windows.values())))
    findings_scalar, scalar_notes = _scalar(conn, caps, holders, options, resume, state, redis_values)

    logged_groups = {
        resolution.group
        for group in groups
        if (resolution := resolutions(group.model, group.model_group, group.model_id)).status == "resolved"
    }
    findings = reconcile.budget_findings(budgets, windows, groups_by_entry, catalogue, logged_groups, options,
                                         enforced=era.enforced if era is not None else None)
    if shared:
        findings += shared_windows.counter_findings(
            budgets, replays, counters_by_entity, era, options, read_source if era.counters_auditable else None,
            miskeyed=lambda counter, entity_id, eb: reconcile._miskeyed(counter, entity_id, reconcile._alias(eb), eb, catalogue, resolutions))
    else:
        findings += shared_windows.as_copies(reconcile.counter_findings(
            budgets, windows, counters_by_entity, ledger, resolutions, catalogue, options, read_source=read_source), era)
    findings += reconcile.resolution_findings(groups, resolutions)
    if by_entity is None and (other_scopes or catalogue.group_aliases):  # an incremental run read only the new rows;
        by_entity = _charged_by_entity(conn, caps, where)                  # a --key scan did not group at entity grain
    findings += _alias_bypasses(catalogue, budgets, keys_entries, by_entity or [])
    notes = era_notes + reconcile.model_spend_notes(key_rows)
    findings += reconcile.model_spend_findings(key_rows, groups, resolutions, options, selected)
    findings += findings_scalar
    notes += scalar_notes
    rollup_history: list[dict] = []
    rollup_found, rollup_notes = _rollups(conn, caps, key_rows, options, selected, rollup_history, resume, state)
    findings += rollup_found
    notes += rollup_notes
    spend = reconcile.window_spend(budgets, windows, groups_by_entry,
                                   _group_splits(conn, caps, budgets, windows, groups_by_entry, resolutions, catalogue, keys_entries))
    spend += _ungoverned_spend(groups, by_entity, budgets, keys_entries, resolutions, catalogue, options, selected)
    if options.model:
        _require_known_model(options.model, budgets, catalogue, groups, logged_groups)
        findings = [f for f in findings if options.model in (f.model_group, f.budget_model, f.model)]
        spend = [s for s in spend if options.model in (s.model_group, s.budget_model)]
    if not catalogue.has_config:
        notes.append("no LiteLLM config: model names resolved from LiteLLM_ProxyModelTable and the rows themselves")
    if increment is not None:
        increment.rows_read = sum(g.requests for g in read_groups)
        if state is not None and any(map(is_raw_key, chain((g.api_key for g in groups), (r.token for r in key_rows),
                                                          (c.key.entity_id for c in counters if c.key.scope == "key")))):
            increment.not_stored = ("the ledger holds raw API keys (sk-…), which auditor never stores: no checkpoint kept, "
                                    "so the next incremental run reads everything")
            state = None
        increment.state = state
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


def _charged_by_entity(conn, caps, where) -> list[tuple]:
    """The charged rows at entity grain, as spend_groups collects them on a full read: (api_key, team_id, user,
    end_user, model, model_group, model_id, spend, rows). One grouped query, for the reads that did not collect them."""
    from auditor.ledger import spend_queries

    return [(*c.entity, c.model, c.model_group, c.model_id, c.spend, c.requests)
            for c in spend_queries.ledger_cells(conn, caps, where, ("api_key", *queries.ENTITY_GRAIN))
            if c.outcome == queries.CHARGED]


def _scope_entities(api_key: str, team: str, user: str, end_user: str) -> Iterator[tuple[str, str]]:
    """The entity of every scope a charged row belongs to (its key, team, user, end user, team member)."""
    member = queries.team_member_entity_id(user, team) if user and team else ""
    for scope, entity_id in (("key", api_key), ("team", team), ("user", user), ("end_user", end_user), ("team_member", member)):
        if entity_id:
            yield scope, entity_id


def _alias_bypasses(catalogue: Catalogue, budgets, keys_entries, by_entity) -> list:
    """Traffic through a proxy-level alias that no entry governs while an entry governs its target: LiteLLM's
    limiter gates and charges the alias name, so that traffic is neither blocked nor counted (alias_bypass)."""
    aliases = {alias: catalogue.internal_names.get(target, target)
               for alias in catalogue.group_aliases if (target := catalogue.alias_target(alias)) is not None}
    if not aliases:
        return []
    totals: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for api_key, team, user, end_user, _, alias, _, spend, requests in by_entity:
        if alias not in aliases:
            continue
        target = aliases[alias]
        for scope, entity_id in _scope_entities(api_key, team, user, end_user):
            eb = budgets.get((scope, entity_id))
            if eb is None or not eb.entries:
                continue
            key_entries = keys_entries.get(api_key, {})
            if entry_for(eb, alias, catalogue, key_entries) is not None:
                continue  # the alias has an entry of its own (or a glob or group covers it): governed, not a bypass
            governing = entry_for(eb, target, catalogue, key_entries)
            if governing is not None:
                bucket = totals[(scope, entity_id, governing.name, alias, target)]
                bucket[0] = money.add(bucket[0], spend)
                bucket[1] += requests
    return reconcile.alias_bypass_findings(budgets, totals)


def _require_known_model(model: str, budgets, catalogue: Catalogue, groups, logged_groups) -> None:
    """--model names a budget entry, a served model or a logged one; a typo is a usage error, never an all-clear."""
    known = set(logged_groups) | set(catalogue.served_names) | {name for b in budgets.values() for name in b.entries}
    known |= {name for g in groups for name in (g.model, g.model_group) if name}
    if model not in known:
        raise InputError(f"--model {model!r} names no budget entry, served model or logged model (or model group)")


def _group_splits(conn, caps, budgets, windows, groups_by_entry, resolutions, catalogue, keys_entries) -> dict:
    """Per-model-group spend inside each window of an entry that charged several groups (a glob, an access group):
    {(scope, entity, entry, window start): {group: [spend, requests]}}, so every (entity, model group) has spend lines.
    Read per such entity with one grouped statement; the rows of each window are placed exactly as the replay did."""
    splits: dict[tuple, dict[str, list]] = {}
    for (scope, entity_id, name), history in windows.items():
        if len(groups_by_entry.get((scope, entity_id, name), ())) < 2 or not history:
            continue
        eb = budgets[(scope, entity_id)]
        rows = queries.window_splits(conn, caps, scope, eb.stream_id, [(w.start, w.end) for w in history])
        for start, api_key, model, model_group, model_id, spend, requests in rows:
            resolution = resolutions(model, model_group, model_id)
            if resolution.status != "resolved":
                continue
            entry = entry_for(eb, resolution.budget_name, catalogue, keys_entries.get(api_key, {}))
            if entry is None or entry.name != name:
                continue
            cell = splits.setdefault((scope, entity_id, name, start), {}).setdefault(resolution.group, [0.0, 0])
            cell[0] = money.add(cell[0], spend)
            cell[1] += requests
    return splits


def _ungoverned_spend(groups, by_entity, budgets, keys_entries, resolutions, catalogue, options, selected):
    """The spend of every (scope, entity, model group) the ledger charged that no budget entry governs, which no
    window shows (budget_model null). Keys from the scan's own groups; the other scopes from the charged rows at
    entity grain (`by_entity`, of the whole range); none when the scan audits chosen keys alone."""
    from auditor.audit.spend import ungoverned

    totals = [("key", g.api_key, g.api_key, g.model, g.model_group, g.model_id, g.spend, g.requests)
              for g in groups if g.outcome == queries.CHARGED]
    if selected is None and (options.entity is None or options.entity[0] != "key"):
        for api_key, team, user, end_user, model, model_group, model_id, spend, requests in by_entity:
            for scope, entity_id in _scope_entities(api_key, team, user, end_user):
                if scope != "key":
                    totals.append((scope, entity_id, api_key, model, model_group, model_id, spend, requests))
    if options.entity is not None:
        scope, entity = options.entity
        wanted = (scope, queries.team_member_entity_id(*entity) if isinstance(entity, tuple) else entity)
        totals = [t for t in totals if t[:2] == wanted]

    def governed(scope, entity_id, api_key, model, model_group, model_id) -> bool:
        eb = budgets.get((scope, entity_id))
        if eb is None or not eb.entries:  # most entities: no per-model budget at all
            return False
        charge = queries.ChargeRow(entity_id, "", api_key, None, None, 0.0, model, model_group, model_id)
        return _place(eb, charge, resolutions, catalogue, keys_entries) is not None

    return ungoverned(totals, resolutions, governed)


def _paid_before(first_paid: queries.PaidJobs, cut: datetime) -> set[tuple[str, str]]:
    """The jobs whose first paid poll a read from `cut` on does not see again: it ended before the cut (or started
    more than DEFAULT_LOOKBACK before it). None: paid before the rows read."""
    bound = cut - DEFAULT_LOOKBACK
    return {job for job, first in first_paid.items() if first is None or first[0] < cut or first[1] < bound}


def _plan(conn, caps, catalogue, options: ScanOptions, where, selected, holders, budgets, counters, increment: checkpoint.Increment):
    """Where this run cuts its checkpoint, and the previous checkpoint's state if it may resume from it (else None,
    and `increment.fallback` says why when an incremental run was asked for)."""
    increment.fingerprint = checkpoint.fingerprint(options, selected, caps, catalogue, holders)
    oldest, newest = queries.spend_time_range(conn, where)
    table_oldest = queries.spend_time_range(conn)[0] if where.where() else oldest
    settled = options.now - options.settle
    cut = (min(newest, settled) if newest is not None else settled) - increment.lookback
    resume, why = None, None
    previous = increment.previous
    if not increment.requested:
        pass
    elif previous is None:
        why = "no checkpoint from a previous report run of this database"
    else:
        why = checkpoint.why_not(previous.fingerprint, increment.fingerprint)
        if why is None:
            try:
                resume = checkpoint.decode(previous.state)
            except (ValueError, KeyError, TypeError, IndexError) as error:
                why = f"the checkpoint of run {previous.run_id} cannot be read ({type(error).__name__})"
        if resume is not None:
            why = _stale(resume, oldest, newest, table_oldest, settled, options, budgets, counters)
            if why is not None:
                resume = None
    if resume is not None:
        cut = max(cut, resume.cut)  # the cut never moves back: the state before the previous one is gone
        increment.mode = checkpoint.INCREMENTAL
    increment.fallback, increment.watermark, increment.cut = why, newest, cut
    return resume, cut, (newest, oldest, table_oldest)


def _stale(state: checkpoint.State, oldest, newest, table_oldest, settled, options: ScanOptions, budgets, counters) -> str | None:
    """Why the ledger or the counters moved in a way the checkpoint cannot absorb; None when they did not."""
    when = lambda t: "none" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"  # noqa: E731
    if oldest != state.oldest:
        return (f"the oldest spend log in scope moved from {when(state.oldest)} to {when(oldest)} since the checkpoint "
                "(rows deleted, e.g. by spend-log retention, or written before it)")
    if options.since is None and not options.retention and table_oldest != state.table_oldest:
        return f"the oldest spend log moved from {when(state.table_oldest)} to {when(table_oldest)} since the checkpoint (rows deleted)"
    if state.watermark is not None and (newest is None or newest < state.watermark):
        return f"the newest spend log ({when(newest)}) is older than the checkpoint's watermark ({when(state.watermark)}): rows were deleted"
    if state.cut > settled:
        return f"--now minus --settle ({when(settled)}) is before the checkpoint's cut ({when(state.cut)})"
    for counter in counters:  # a counter whose window reaches before the cut needs the ledger's sum there
        eb = budgets.get((counter.key.scope, counter.key.entity_id))
        entry = eb.entries.get(counter.key.budget_model) if eb is not None else None
        if (entry is None or entry.duration.raw != counter.key.duration or counter.window_start is None
                or counter.window_start - options.window_slack >= state.cut):
            continue
        if checkpoint.counter_id(counter) not in state.counters:
            return (f"{counter.source} counter {counter.key.key} (window from {when(counter.window_start)}) starts before the "
                    "checkpoint's cut, and the checkpoint does not know it")
    return None


def _windows(conn, caps, catalogue, resolutions, budgets, keys_entries, read, ledger, progress, resume, state, slack):
    """Every budgeted entity's charges through a WindowTracker per budget entry: its windows, the model groups each
    entry charged, and the counter ledger. Resuming, trackers start from the checkpoint; cutting one (`state`), each
    entity's state is frozen just before its first charge at or after the cut."""
    windows: dict[tuple[str, str, str], list[Window]] = {}
    groups_by_entry: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    cut = state.cut if state is not None else None
    partial_sums = dict(ledger.values) if state is not None else {}  # counter -> the ledger's sum of charges before the cut

    def finish(scope, entity_id, trackers, closed, seen) -> None:
        for name, groups_seen in seen.items():
            groups_by_entry[(scope, entity_id, name)] |= groups_seen
        for name, tracker in trackers.items():
            last = tracker.close()
            if last is not None:
                closed[name].append(last)
            windows[(scope, entity_id, name)] = closed[name]

    for scope in SCOPES:
        budgeted = [b for b in budgets.values() if b.scope == scope and b.entries]
        by_stream_id = {b.stream_id: b for b in budgeted}
        paid: queries.PaidJobs = dict.fromkeys(resume.stream_jobs.get(scope, ()), None) if resume is not None else {}
        stream = queries.stream_charges(conn, caps, read, scope, sorted(by_stream_id), paid_jobs=paid)
        streamed: set[str] = set()
        for entity_id, charges in groupby(stream, key=attrgetter("entity_id")):
            streamed.add(entity_id)
            eb = budgets[(scope, entity_id)]
            trackers, closed, seen = _resumed(eb, resume.entities.get((scope, entity_id)) if resume is not None else None)
            counted = _Counted(charges)
            ledger_add = partial(ledger.add, scope, entity_id) if ledger.caches(scope, entity_id) else None
            governed = governed_charges(eb, counted, resolutions, catalogue, keys_entries)
            if cut is not None:  # up to the cut, then freeze the entity's state; the rest below
                after = _replay(governed, trackers, closed, seen, ledger_add, until=cut)
                state.entities[(scope, entity_id)] = checkpoint.EntityState.of(trackers, closed, seen)
                for counter in ledger.counters_of(scope, entity_id):
                    partial_sums[counter] = ledger.values[counter]
                governed = chain((after,), governed) if after is not None else ()
            _replay(governed, trackers, closed, seen, ledger_add)
            finish(scope, entity_id, trackers, closed, seen)
            if progress is not None:
                progress(counted.seen)
        if resume is not None:  # entities with no charge since the previous cut: as the checkpoint left them
            for (in_scope, entity_id), before in resume.entities.items():
                if in_scope == scope and entity_id not in streamed:
                    finish(scope, entity_id, *_resumed(budgets[(scope, entity_id)], before))
                    if state is not None:
                        state.entities[(scope, entity_id)] = before
        if state is not None:
            state.stream_jobs[scope] = _paid_before(paid, cut)
    if state is not None:
        state.counters = {checkpoint.counter_id(c): value for c, value in partial_sums.items() if c.window_start - slack < cut}
    return windows, groups_by_entry


def _replay(charges, trackers, closed, seen, ledger_add, until: datetime | None = None):
    """Governed charges through their entries' trackers, in order, noting the groups each entry charged and, when a
    counter caches the entity, the ledger's sums. Stops before the first charge ending at or after `until` and
    returns it (None: the charges ran out). The scan's hot loop: one pass per charged row, nothing allocated."""
    for item in charges:
        charge, group, entry = item
        if until is not None and charge.end_time >= until:
            return item
        seen[entry.name].add(group)
        done = trackers[entry.name].add(charge)
        if done is not None:
            closed[entry.name].append(done)
        if ledger_add is not None:
            ledger_add(entry, charge.end_time, charge.spend)
    return None


def _resumed(eb: EntityBudgets, before: checkpoint.EntityState | None):
    """An entity's trackers, closed windows and charged groups per entry: fresh, or where a checkpoint left them."""
    closed: dict[str, list[Window]] = defaultdict(list)
    seen: dict[str, set[str]] = defaultdict(set)
    if before is None:
        return {name: WindowTracker(entry.duration, entry.limit) for name, entry in eb.entries.items()}, closed, seen
    trackers = {}
    for name, entry in eb.entries.items():
        tracker_state = before.trackers.get(name)
        trackers[name] = (WindowTracker(entry.duration, entry.limit) if tracker_state is None
                          else WindowTracker.resume(entry.duration, entry.limit, tracker_state))
    for name, ws in before.closed.items():
        closed[name] = list(ws)
    for name, gs in before.groups.items():
        seen[name] = set(gs)
    return trackers, closed, seen


def _resolution_records(groups: list[queries.SpendGroup], resolutions: Resolver) -> list[dict]:
    """Charged rows and spend per distinct logged model triple, with how the resolver placed it (coverage)."""
    totals: dict[tuple[str, str, str], list] = defaultdict(lambda: [0, 0.0])
    for group in groups:
        if group.outcome == queries.CHARGED:
            bucket = totals[(group.model, group.model_group, group.model_id)]
            bucket[0] += group.requests
            bucket[1] = money.add(bucket[1], group.spend)
    records = []
    for (model, model_group, model_id), (rows, spend) in sorted(totals.items()):
        resolution = resolutions(model, model_group, model_id)
        records.append({
            "model": model or None, "model_group": model_group or None, "model_id": model_id or None,
            "status": resolution.status, "group": resolution.group, "rule": resolution.rule,
            "decided_by": resolution.decided_by, "candidates": list(resolution.candidates), "rows": rows, "spend": spend,
        })
    return records


def _scalar(conn: Connection, caps: Capabilities, holders: list[budget_holders.Holder], options: ScanOptions,
            resume: checkpoint.State | None = None, state: checkpoint.State | None = None, redis_values=None):
    """Every entity's scalar spend over its current period, summed in SQL per scope (see _period_sums), against its
    spend column and the Redis `spend:*` counter LiteLLM reads before it (get_current_spend)."""
    from auditor.litellm.periods import zone

    tz = zone(options.timezone)
    complete_since = _ledger_complete_since(conn, options)
    starts: dict[tuple[str, object], datetime] = {}
    skipped: dict[str, int] = defaultdict(int)
    for holder in holders:
        if holder.deleted or holder.spend is None:
            continue
        start = reconcile.scalar_period(holder, tz)
        if start is None:
            skipped["budget_duration without budget_reset_at" if holder.budget_reset_at is None
                    else "a budget_duration whose period cannot be placed (too large for a date)"] += 1
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
        for entity, totals in _period_sums(conn, caps, scope, pairs, options.now, resume, state).items():
            period_sums[(scope, entity)] = totals
        totals_wanted = [(h.entity_id, reconcile.LIFETIME) for h in holders if h.scope == scope and h.total_spend is not None and not h.deleted]
        if whole_ledger and totals_wanted:
            for entity, totals in _period_sums(conn, caps, scope, totals_wanted, options.now, resume, state).items():
                lifetime_sums[(scope, entity)] = totals
            for entity, _ in totals_wanted:
                lifetime_sums.setdefault((scope, entity), (0.0, 0))
    leaks = {}
    for holder in holders:  # only entities at or over their budget: their period streamed in charge order
        entity = (holder.scope, holder.entity_id)
        limit = holder.max_budget
        if entity not in period_sums or limit is None or not 0 <= limit < math.inf or period_sums[entity][0] < limit:
            continue
        gated = (lambda team_key: True) if holder.scope != "user" or options.user_budget_on_team_keys else (lambda team_key: not team_key)
        charges = queries.period_charges(conn, caps, holder.scope, holder.entity_id, starts[entity], options.now)
        leaks[entity] = reconcile.scalar_leaks(charges, limit, holder.scope in reconcile.SCALAR_BLOCKS_AT_LIMIT, gated)
    redis_spend = {}
    if redis_values is not None:
        wanted = {(h.scope, h.entity_id): scalar_counter_key(h.scope, h.entity_id) for h in holders if (h.scope, h.entity_id) in starts}
        values = redis_values(sorted(set(wanted.values())))
        redis_spend = {entity: (key, values[key]) for entity, key in wanted.items() if key in values}
    findings = reconcile.scalar_findings(holders, period_sums, lifetime_sums, starts, options, leaks, redis_spend)
    notes = [f"scalar spend not compared for {n} entities: {why}" for why, n in sorted(skipped.items())]
    return findings, notes


def _period_sums(conn: Connection, caps: Capabilities, scope: str, pairs: list, now: datetime,
                 resume: checkpoint.State | None, state: checkpoint.State | None) -> dict:
    """queries.period_spend, resumable: an entity whose period started before the checkpoint's cut and has not
    rolled over since gets the checkpoint's sum plus that of the rows an incremental run reads (lifetime spend and
    total_spend above all: without it they read the whole ledger). Into the new checkpoint, each sum of a period
    that started before the new cut, less the rows the next incremental run will read."""
    if not pairs:
        return {}
    stored = resume.periods if resume is not None else {}
    known = [(e, start) for e, start in pairs if (scope, e, start) in stored]
    found = queries.period_spend(conn, caps, scope, [(e, start) for e, start in pairs if (scope, e, start) not in stored], now)
    if known:
        since = queries.period_spend(conn, caps, scope, known, now, ended_from=resume.cut)
        for e, start in known:
            (spend, rows), (more, more_rows) = stored[(scope, e, start)], since.get(e, (0.0, 0))
            found[e] = (money.add(spend, more), rows + more_rows)
    if state is not None:
        before = [(e, start) for e, start in pairs if start < state.cut]
        after = queries.period_spend(conn, caps, scope, before, now, ended_from=state.cut)
        for e, start in before:
            (spend, rows), (later, later_rows) = found.get(e, (0.0, 0)), after.get(e, (0.0, 0))
            state.periods[(scope, e, start)] = (money.add(spend, -later), rows - later_rows)
    return found


def _rollups(conn: Connection, caps: Capabilities, key_rows, options: ScanOptions, selected, history_out: list[dict],
             resume: checkpoint.State | None = None, state: checkpoint.State | None = None) -> tuple[list, list[str]]:
    """Daily rollups (per user, team, end user) against the ledger, only on whole days the ledger fully covers.
    Days before a checkpoint's cut whose rollup rows have not changed come from the checkpoint; the rest are read."""
    from auditor.ledger.schema import DAILY_ROLLUPS

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
        first_rollup, _ = daily_rollups.rollup_date_range(conn, table)
        if first_rollup is None:
            continue
        if first_rollup < first.isoformat():
            notes.append(f"{name} before {first.isoformat()} is not compared: the ledger does not fully cover those days")
            if options.use_rollups and name == "LiteLLM_DailyUserSpend":
                before = (first - timedelta(days=1)).isoformat()
                history_out.extend(
                    {"date": day, "api_key": api_key, "model": model, "custom_llm_provider": provider or None,
                     "spend": totals.spend, "requests": totals.requests, "source": name}
                    for (day, api_key, model, provider), totals in sorted(daily_rollups.rollup_days(conn, table, first_rollup, before).items())
                    if selected is None or api_key in selected
                )
                notes.append(
                    f"per-day history {first_rollup} .. {before} comes from {name} (--use-rollups): no per-request "
                    "order, so no windows, leaks or counters there, and model groups that share a deployment are "
                    "merged (LiteLLM issue #36172)"
                )
        if first > last:
            continue
        days = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
        digests: dict[str, str] = {}
        if resume is not None or state is not None:  # a checkpoint keys each past day by its rollup rows
            digests = daily_rollups.rollup_day_digests(conn, table, first.isoformat(), last.isoformat(), checkpoint.rollup_digest)
        reused: dict[str, checkpoint.RollupDay] = {}
        if resume is not None:  # a day is whole in the checkpoint when none of its rows is one an incremental run reads
            stored, before = resume.rollups.get(name, {}), (resume.cut - DEFAULT_LOOKBACK).date().isoformat()
            empty = checkpoint.rollup_digest({})
            reused = {day: stored[day] for day in days if day < before and day in stored and stored[day].digest == digests.get(day, empty)}
        ledger: dict = {}
        rollups: dict = {}
        for lo, hi in _runs([day for day in days if day not in reused]):
            for key, logged, cached in daily_rollups.rollup_disagreements(conn, caps, table, by, lo, hi, options.tolerance):
                if logged is not None:
                    ledger[key] = logged
                if cached is not None:
                    rollups[key] = cached
        for day, kept in reused.items():  # the rows that disagreed then: the ledger's side from the checkpoint
            if kept.differing:
                current = daily_rollups.rollup_days(conn, table, day, day)
                ledger.update((k, v) for k, v in kept.differing.items() if v is not None)
                rollups.update((k, v) for k, v in current.items() if k in kept.differing)
        if selected is not None:
            ledger = {k: v for k, v in ledger.items() if k[1] in selected}
            rollups = {k: v for k, v in rollups.items() if k[1] in selected}
        findings += reconcile.rollup_findings(name, ledger, rollups, aliases, options)
        if state is not None:
            until = (state.cut - DEFAULT_LOOKBACK).date().isoformat()
            differing: dict[str, dict] = defaultdict(dict)
            for k in set(ledger) | set(rollups):
                if k[0] < until and k[0] not in reused and reconcile.rollup_differs(ledger.get(k), rollups.get(k), options.tolerance):
                    differing[k[0]][k] = ledger.get(k)
            empty = checkpoint.rollup_digest({})
            state.rollups[name] = {
                day: reused.get(day) or checkpoint.RollupDay(digests.get(day, empty), differing.get(day, {}))
                for day in days if day < until
            }
    return findings, notes


def _runs(days: list[str]) -> list[tuple[str, str]]:
    """Consecutive ISO days as (first, last) ranges."""
    runs: list[tuple[str, str]] = []
    for day in days:
        if runs and (datetime.fromisoformat(runs[-1][1]) + timedelta(days=1)).date().isoformat() == day:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _ledger_complete_since(conn: Connection, options: ScanOptions) -> datetime | None:
    """From when the ledger holds every row: --since, the retention cutoff, or (size-based retention) the
    oldest row left. None: since the beginning."""
    from auditor.litellm.durations import parse_duration

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
    for row in budget_holders.model_budget_window_rows(conn, caps):
        key = parse_counter_key(row.entity_id)
        exact = key is not None
        key = key or loose_counter_key(row.entity_id)
        if key is not None:
            counters.append(Counter("budget_window_spend", key, row.spend, str(row.spend), row.window_start, exact))
    return counters


def _read_source(counters: list[Counter]) -> str | None:
    """Where enforcement reads per-model counters: Redis when it holds any (1.102+ reads it first), else
    LiteLLM_BudgetWindowSpend when it holds any (1.109+ replicas without Redis), else nowhere we can see."""
    sources = {counter.source for counter in counters}
    return "redis" if "redis" in sources else "budget_window_spend" if "budget_window_spend" in sources else None


def load_catalogue(conn: Connection, caps: Capabilities, loaded, key_rows: list[budget_holders.KeyRow]) -> Catalogue:
    """The model catalogue from the config file (if any), LiteLLM_ProxyModelTable and keys' aliases."""
    from pathlib import Path

    from auditor.litellm.catalogue import build_catalogue

    key_aliases: dict[str, str] = {}
    for row in key_rows:
        if isinstance(row.aliases, Mapping):
            key_aliases.update({str(k): str(v) for k, v in row.aliases.items() if isinstance(v, str)})
    return build_catalogue(
        loaded.data if loaded else None,
        budget_holders.proxy_models(conn, caps),
        key_aliases,
        config_name=Path(loaded.path).name if loaded else "config.yaml",
    )
