"""The scan's grouped ledger pass: what the spend logs grouped by logged model (and entity) say beyond windows:
how each model name resolved, traffic through an alias no entry governs, spend no entry governs, and from when
the ledger is complete.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from auditor import money
from auditor.audit import reconcile
from auditor.audit.entities import entry_for, place_charge, scope_entities
from auditor.audit.findings import RowCounts
from auditor.errors import AuditorError, InputError
from auditor.ledger import queries
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.durations import shift_months
from auditor.litellm.resolver import Resolver

if TYPE_CHECKING:
    from auditor.audit.scan import ScanOptions


def resolution_records(groups: list[queries.SpendGroup], resolutions: Resolver) -> list[dict]:
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
        records.append(
            {
                "model": model or None,
                "model_group": model_group or None,
                "model_id": model_id or None,
                "status": resolution.status,
                "group": resolution.group,
                "rule": resolution.rule,
                "decided_by": resolution.decided_by,
                "candidates": list(resolution.candidates),
                "rows": rows,
                "spend": spend,
            }
        )
    return records


def alias_bypasses(catalogue: Catalogue, budgets, keys_entries, by_entity) -> list:
    """Traffic through a proxy-level alias that no entry governs while an entry governs its target: LiteLLM's
    limiter gates and charges the alias name, so that traffic is neither blocked nor counted (alias_bypass)."""
    aliases = {
        alias: catalogue.internal_names.get(target, target)
        for alias in catalogue.group_aliases
        if (target := catalogue.alias_target(alias)) is not None
    }
    if not aliases:
        return []
    totals: dict[tuple, list] = defaultdict(lambda: [0.0, 0])
    for api_key, team, user, end_user, _, alias, _, spend, requests in by_entity:
        if alias not in aliases:
            continue
        target = aliases[alias]
        for scope, entity_id in scope_entities(api_key, team, user, end_user):
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


def require_known_model(model: str, budgets, catalogue: Catalogue, groups, logged_groups) -> None:
    """--model names a budget entry, a served model or a logged one; a typo is a usage error, never an all-clear."""
    known = set(logged_groups) | set(catalogue.served_names) | {name for b in budgets.values() for name in b.entries}
    known |= {name for g in groups for name in (g.model, g.model_group) if name}
    if model not in known:
        raise InputError(f"--model {model!r} names no budget entry, served model or logged model (or model group)")


def ungoverned_spend(groups, by_entity, budgets, keys_entries, resolutions, catalogue, options, selected):
    """The spend of every (scope, entity, model group) the ledger charged that no budget entry governs, which no
    window shows (budget_model null). Keys from the scan's own groups; the other scopes from the charged rows at
    entity grain (`by_entity`, of the whole range); none when the scan audits chosen keys alone."""
    from auditor.audit.spend import ungoverned

    totals = [
        ("key", g.api_key, g.api_key, g.model, g.model_group, g.model_id, g.spend, g.requests)
        for g in groups
        if g.outcome == queries.CHARGED
    ]
    if selected is None and (options.entity is None or options.entity[0] != "key"):
        for api_key, team, user, end_user, model, model_group, model_id, spend, requests in by_entity:
            for scope, entity_id in scope_entities(api_key, team, user, end_user):
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
        return place_charge(eb, charge, resolutions, catalogue, keys_entries) is not None

    return ungoverned(totals, resolutions, governed)


def ledger_complete_since(conn: Connection, options: ScanOptions) -> datetime | None:
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


def row_counts(groups: list[queries.SpendGroup], resolutions: Resolver) -> RowCounts:
    """The rows read: charged and placed, charged but unresolved, and not charged by reason."""
    rows = RowCounts()
    for group in groups:
        if group.outcome != queries.CHARGED:
            rows.ignored_by_reason[group.outcome] = rows.ignored_by_reason.get(group.outcome, 0) + group.requests
        elif resolutions(group.model, group.model_group, group.model_id).status == "resolved":
            rows.attributed += group.requests
        else:
            rows.unresolved += group.requests
    return rows


def logged_groups(groups: list[queries.SpendGroup], resolutions: Resolver) -> set[str]:
    """The model groups the ledger logged, as the resolver places them."""
    return {
        resolution.group
        for group in groups
        if (resolution := resolutions(group.model, group.model_group, group.model_id)).status == "resolved"
    }
