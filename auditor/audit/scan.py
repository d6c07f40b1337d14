"""The scan: the ledger (LiteLLM_SpendLogs) against every per-model budget and every counter that caches it.

This module sequences the passes and assembles the ScanResult; it never renders and never writes. The passes,
each in its own module: which entities and budgets are audited (entities.py), which counters are compared
(counter_reads.py), the charge stream through the window trackers (window_pass.py), the grouped ledger pass
(ledger_pass.py), scalar budgets (scalar_pass.py), daily rollups (rollup_pass.py), and for report --incremental
where the checkpoint is cut and whether the previous one is resumed (incremental.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Connection

from auditor.audit import checkpoint, counter_reads, incremental, ledger_pass, reconcile, shared_windows
from auditor.audit.entities import budgets_in_scope, select_keys
from auditor.audit.findings import ScanResult
from auditor.audit.rollup_pass import rollup_pass
from auditor.audit.scalar_pass import scalar_pass
from auditor.audit.window_pass import group_splits, window_pass
from auditor.ledger import budget_holders, queries
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.counters import Counter
from auditor.litellm.eras import PER_ENTITY, era_named
from auditor.litellm.resolver import Resolver
from auditor.money import merge_totals

log = logging.getLogger(__name__)  # -v: the phases of a scan, counts only (auditor/cli/main.py)


@dataclass(frozen=True)
class ScanOptions:
    """What a scan judges by: the CLI's options, parsed, with the proxy config's settings applied (session.py)."""

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
    (auditor/audit/checkpoint.py, incremental.py); the result is the same either way."""
    key_rows = budget_holders.keys(conn, caps) if key_rows is None else key_rows
    selected = select_keys(key_rows, options.keys)
    where = queries.SpendFilter(since=options.since, until=options.until, api_keys=selected, entity=options.entity)
    resolutions = Resolver(catalogue)

    era = era_named(options.era) if options.era else None
    holders, budgets, era_notes = budgets_in_scope(
        budget_holders.holders(conn, caps, key_rows, options.default_end_user_budget), selected, options.entity, era
    )
    shared = era is not None and era.start_keys == PER_ENTITY  # before 1.99: one start key per key, replayed
    keys_entries = {b.entity_id: b.entries for b in budgets.values() if b.scope == "key"}
    counters, read_source, counter_notes = counter_reads.counters_in_scope(
        conn, caps, budgets, key_rows, selected, options.entity, redis_counters, era
    )
    era_notes += counter_notes
    counters_by_entity = counter_reads.by_entity(counters)
    log.info(
        "budgets: %d keys read, %d entities with per-model budgets; %d counters to compare",
        len(key_rows),
        len(budgets),
        len(counters),
    )

    resume, cut, bounds = None, None, (None, None, None)
    if increment is not None and shared:
        why = f"LiteLLM {era.name} shares one window start per key: its windows are rebuilt from the whole ledger every run"
        increment.fallback, increment.not_stored = (why if increment.requested else None), why
    elif increment is not None:
        resume, cut, bounds = incremental.plan(
            conn, caps, catalogue, options, where, selected, holders, budgets, counters, increment
        )
    read = where if resume is None else replace(where, ended_from=resume.cut)
    first_paid: queries.PaidJobs | None = {} if cut is not None else None

    # the same pass places every charged row in every scope (entity grain), for the spend lines of the other scopes
    # (ledger_pass.ungoverned_spend) and alias bypasses; a resumed run adds the rows it read to the checkpoint's cells
    other_scopes = selected is None and (options.entity is None or options.entity[0] != "key")
    by_entity: list | None = [] if other_scopes or catalogue.group_aliases else None
    read_groups = queries.spend_groups(conn, caps, read, resume.jobs if resume else (), first_paid, by_entity)
    groups = checkpoint.merge_groups(resume.groups, read_groups) if resume is not None else read_groups
    if resume is not None and by_entity is not None:
        by_entity = merge_totals(resume.cells, by_entity)
    rows = ledger_pass.row_counts(groups, resolutions)
    log.info(
        "ledger: %d spend rows read in %d groups (%d charged and resolved, %d unresolved, %d not charged)",
        sum(g.requests for g in read_groups),
        len(read_groups),
        rows.attributed,
        rows.unresolved,
        sum(rows.ignored_by_reason.values()),
    )

    ledger = reconcile.CounterLedger(counters, options)
    if resume is not None:
        for counter in ledger.values:
            ledger.values[counter] = resume.counters.get(checkpoint.counter_id(counter), 0.0)
    state = (
        incremental.new_state(conn, caps, where, groups, by_entity, cut, bounds, resume, first_paid) if cut is not None else None
    )
    if increment is not None:  # the report's "where the money went", resumed like the groups
        increment.money = incremental.money(conn, caps, where, resume, options.timezone)
        if state is not None:
            paid = bool(first_paid or state.jobs)
            state.money = incremental.money_state(conn, caps, where, increment.money, state, resume, paid, options.timezone)
    if shared:
        windows, groups_by_entry, replays = shared_windows.era_windows(
            era, budgets, lambda scope, ids: queries.stream_charges(conn, caps, read, scope, ids), progress
        )
    else:
        windows, groups_by_entry = window_pass(
            conn, caps, catalogue, resolutions, budgets, keys_entries, read, ledger, progress, resume, state, options.window_slack
        )
    log.info("windows: %d budget windows rebuilt", sum(map(len, windows.values())))
    findings_scalar, scalar_notes = scalar_pass(conn, caps, holders, options, resume, state, redis_values)

    logged_groups = ledger_pass.logged_groups(groups, resolutions)
    findings = reconcile.budget_findings(
        budgets, windows, groups_by_entry, catalogue, logged_groups, options, enforced=era.enforced if era is not None else None
    )
    if shared:
        findings += shared_windows.counter_findings(
            budgets,
            replays,
            counters_by_entity,
            era,
            options,
            read_source if era.counters_auditable else None,
            miskeyed=lambda counter, entity_id, eb: reconcile._miskeyed(
                counter, entity_id, reconcile._alias(eb), eb, catalogue, resolutions
            ),
        )
    else:
        findings += shared_windows.as_copies(
            reconcile.counter_findings(
                budgets, windows, counters_by_entity, ledger, resolutions, catalogue, options, read_source=read_source
            ),
            era,
        )
    findings += reconcile.resolution_findings(groups, resolutions)
    findings += ledger_pass.alias_bypasses(catalogue, budgets, keys_entries, by_entity or [])
    notes = era_notes + reconcile.model_spend_notes(key_rows)
    findings += reconcile.model_spend_findings(key_rows, groups, resolutions, options, selected)
    findings += findings_scalar
    notes += scalar_notes
    rollup_history: list[dict] = []
    rollup_found, rollup_notes = rollup_pass(conn, caps, key_rows, options, selected, rollup_history, resume, state)
    findings += rollup_found
    notes += rollup_notes
    spend = reconcile.window_spend(
        budgets,
        windows,
        groups_by_entry,
        group_splits(conn, caps, where, budgets, windows, groups_by_entry, resolutions, catalogue, keys_entries),
    )
    spend += ledger_pass.ungoverned_spend(groups, by_entity, budgets, keys_entries, resolutions, catalogue, options, selected)
    if options.model:
        ledger_pass.require_known_model(options.model, budgets, catalogue, groups, logged_groups)
        findings = [f for f in findings if options.model in (f.model_group, f.budget_model, f.model)]
        spend = [s for s in spend if options.model in (s.model_group, s.budget_model)]
    if not catalogue.has_config:
        notes.append("no LiteLLM config: model names resolved from LiteLLM_ProxyModelTable and the rows themselves")
    if increment is not None:
        incremental.keep(increment, state, read_groups, groups, key_rows, counters)
    return ScanResult(
        as_of=options.now,
        source=dict(source or {}),
        rows=rows,
        spend=spend,
        findings=findings,
        notes=notes,
        resolutions=ledger_pass.resolution_records(groups, resolutions),
        rollup_history=rollup_history if options.use_rollups else None,
    )


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
