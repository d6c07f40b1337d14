"""Pure reconciliation: windows, counters and resolutions in, findings out. No I/O."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from auditor import money
from auditor.audit.findings import (
    ALIAS_BYPASS,
    AMBIGUOUS_MODEL,
    COUNTER_DRIFT,
    ERROR,
    INFO,
    INVALID_BUDGET,
    MISKEYED_COUNTER,
    OVER_BUDGET,
    UNENFORCEABLE_BUDGET,
    UNRESOLVED_MODEL,
    WARNING,
    Finding,
    WindowSpend,
)
from auditor.audit.windows import Window
from auditor.litellm.budgets import BudgetEntry
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.counters import Counter, spend_key
from auditor.litellm.resolver import Resolution, governing_entry

KEY = "key"
GLOB = "*"

# Entity budgets, options and ledger rows are the scan's shapes, read here by attribute: typed Any (they live outside the pure core).
Resolve = Callable[[str | None, str | None, str | None], Resolution]  # (model, model_group, model_id) to its group


def _alias(budgets: Any) -> str | None:
    """The key alias as reports show it; a deleted key's spend stays attributed to it, labelled."""
    if budgets is None:
        return None
    if budgets.deleted:
        return f"{budgets.alias or budgets.token[:12]} (deleted)"
    return cast("str | None", budgets.alias)


class CounterLedger:
    """The ledger's value for each cached counter, accumulated while charges stream past.

    A counter covers [its start - slack, start + period); charges in the last `settle` before
    `now` are left out because LiteLLM flushes counters in batches.
    """

    def __init__(self, counters: Iterable[Counter], options: Any) -> None:
        self._options = options
        self._by_entry: dict[tuple[str, str, str, str], list[Counter]] = defaultdict(list)
        self._entities: dict[tuple[str, str], list[Counter]] = defaultdict(list)
        self.values: dict[Counter, float] = {}
        for counter in counters:
            if counter.window_start is not None:
                key = counter.key
                self._by_entry[(key.scope, key.entity_id, key.budget_model, key.duration)].append(counter)
                self._entities[(key.scope, key.entity_id)].append(counter)
                self.values[counter] = 0.0

    def caches(self, scope: str, entity_id: str) -> bool:
        """Whether any counter caches this entity's spend: asked once per entity, so most charges skip add()."""
        return (scope, entity_id) in self._entities

    def counters_of(self, scope: str, entity_id: str) -> list[Counter]:
        return self._entities.get((scope, entity_id), [])

    def add(self, scope: str, entity_id: str, entry: BudgetEntry, charged_at: datetime, spend: float) -> None:
        counters = self._by_entry.get((scope, entity_id, entry.name, entry.duration.raw))
        if not counters or charged_at > self._options.now - self._options.settle:
            return
        for counter in counters:
            start = cast(datetime, counter.window_start)  # only counters with a start are kept (__init__)
            if start - self._options.window_slack <= charged_at < entry.duration.end_of_window(start):
                self.values[counter] = money.add(self.values[counter], spend)  # exact: a resumed sum agrees with one pass


def budget_findings(
    budgets: Mapping[tuple[str, str], Any],
    windows: Mapping[tuple[str, str, str], list[Window]],
    groups_by_entry: Mapping[tuple[str, str, str], set[str]],
    catalogue: Catalogue,
    logged_groups: Collection[str],
    options: Any,
    enforced: Callable[[float], bool] | None = None,
) -> list[Finding]:
    """Invalid and unenforceable entries, and windows over their limit. `enforced(limit)`: whether the era's limiter
    enforces a cap at all (before 1.99 a 0 cap is unlimited); default: 1.99+'s BudgetEntry.enforced."""
    findings: list[Finding] = []
    names = {n for n in catalogue.served_names if GLOB not in n} | set(logged_groups)
    for (scope, token), kb in budgets.items():
        for problem in kb.problems:
            findings.append(
                Finding(
                    kind=INVALID_BUDGET,
                    severity=ERROR,
                    scope=scope,
                    entity_id=token,
                    entity_alias=_alias(kb),
                    budget_model=problem.name or None,
                    message=f"budget entry {problem.name!r} enforces nothing: {problem.reason}",
                )
            )
        for name, entry in kb.entries.items():
            if not _enforceable(entry, kb.entries, names, catalogue):
                findings.append(
                    Finding(
                        kind=UNENFORCEABLE_BUDGET,
                        severity=WARNING,
                        scope=scope,
                        entity_id=token,
                        entity_alias=_alias(kb),
                        budget_model=name,
                        time_period=entry.duration.raw,
                        budget_limit=entry.limit,
                        message=f"budget entry {name!r} governs no model this proxy serves or has logged, so it never applies",
                    )
                )
            if not (entry.enforced if enforced is None else enforced(entry.limit)):  # still governs its models, caps nothing
                findings.append(
                    Finding(
                        kind=INVALID_BUDGET,
                        severity=ERROR,
                        scope=scope,
                        entity_id=token,
                        entity_alias=_alias(kb),
                        budget_model=name,
                        time_period=entry.duration.raw,
                        budget_limit=entry.limit if entry.limit is not None and math.isfinite(entry.limit) else None,
                        message=(
                            f"budget entry {name!r} enforces nothing: its budget_limit is "
                            f"{'null' if entry.limit is None else repr(entry.limit)} "
                            + (
                                "(LiteLLM 1.99+ enforces only a limit >= 0)"
                                if enforced is None or enforced(0.0)
                                else "(before 1.99 LiteLLM enforces only a limit > 0: 0 means no limit)"
                            )
                        ),
                    )
                )
                continue
            groups = groups_by_entry.get((scope, token, name), set())
            for window in windows.get((scope, token, name), []):
                if window.spend <= entry.limit:
                    continue
                leaked = window.requests_after_limit > 0
                over = window.spend - entry.limit
                message = (
                    f"{name} {entry.duration.raw} window spent {money.text(window.spend)} against a "
                    f"{money.text(entry.limit)} limit"
                    + (
                        f"; {window.requests_after_limit} requests ({money.text(window.spend_after_limit)}) were admitted after the limit was reached"
                        if leaked
                        else f"; only the crossing request overshot (by {money.text(over)})"
                    )
                )
                findings.append(
                    Finding(
                        kind=OVER_BUDGET,
                        severity=ERROR if leaked else WARNING,
                        scope=scope,
                        entity_id=token,
                        entity_alias=_alias(kb),
                        budget_model=name,
                        model_group=_single(groups),
                        time_period=entry.duration.raw,
                        window_start=window.start,
                        window_end=window.end,
                        budget_limit=entry.limit,
                        logged_spend=window.spend,
                        requests=window.requests,
                        requests_after_limit=window.requests_after_limit,
                        spend_after_limit=window.spend_after_limit,
                        message=message,
                    )
                )
    return findings


def alias_bypass_findings(
    budgets: Mapping[tuple[str, str], Any], totals: Mapping[tuple[str, str, str, str, str], list[Any]]
) -> list[Finding]:
    """One finding per (entity, entry governing the target, alias): the spend and requests no counter saw."""
    findings = []
    for (scope, entity_id, entry_name, alias, target), (spend, requests) in sorted(totals.items()):
        kb = budgets[(scope, entity_id)]
        entry = kb.entries[entry_name]
        findings.append(
            Finding(
                kind=ALIAS_BYPASS,
                severity=ERROR if entry.enforced else WARNING,
                scope=scope,
                entity_id=entity_id,
                entity_alias=_alias(kb),
                budget_model=entry_name,
                model=alias,
                model_group=target,
                time_period=entry.duration.raw,
                budget_limit=entry.limit,
                logged_spend=spend,
                requests=requests,
                message=(
                    f"{requests} requests ({money.text(spend)}) through router alias {alias!r} -> {target!r} bypassed entry "
                    f"{entry_name!r}: LiteLLM's limiter gates and charges the alias name, which no entry governs"
                ),
            )
        )
    return findings


def _single(groups: Collection[str]) -> str | None:
    return next(iter(groups)) if len(groups) == 1 else None


def _enforceable(entry: BudgetEntry, entries: Mapping[str, BudgetEntry], names: Iterable[str], catalogue: Catalogue) -> bool:
    """Some served or logged model group resolves to it, or a wildcard route lets requests name it."""
    if catalogue.wildcard_serves(entry.name):
        return True
    return any(
        (found := governing_entry(name, entries, catalogue.access_groups_of(name))) is not None and found.name == entry.name
        for name in names
    )


def counter_findings(
    budgets: Mapping[tuple[str, str], Any],
    windows: Mapping[tuple[str, str, str], list[Window]],
    counters_by_key: Mapping[tuple[str, str], list[Counter]],
    ledger: CounterLedger,
    resolutions: Resolve,
    catalogue: Catalogue,
    options: Any,
    read_source: str | None,
) -> list[Finding]:
    findings: list[Finding] = []
    for (scope, token), counters in counters_by_key.items():
        kb = budgets.get((scope, token))
        alias = _alias(kb)
        entries = kb.entries if kb is not None else {}
        for counter in counters:
            entry = entries.get(counter.key.budget_model)
            if entry is None or entry.duration.raw != counter.key.duration:
                findings.append(_miskeyed(counter, token, alias, kb, catalogue, resolutions))
                continue
            if counter.window_start is None:
                continue  # no start key: LiteLLM opens a fresh window on the next charge
            logged = ledger.values.get(counter, 0.0)
            cached = counter.value
            if cached is not None and abs(cached - logged) <= options.tolerance:
                continue
            end = entry.duration.end_of_window(counter.window_start)
            is_open = counter.window_start <= options.now < end
            expected = _window_containing(windows.get((scope, token, entry.name), []), counter.window_start, options)
            findings.append(
                Finding(
                    kind=COUNTER_DRIFT,
                    severity=ERROR if is_open else WARNING,
                    scope=scope,
                    entity_id=token,
                    entity_alias=alias,
                    budget_model=entry.name,
                    time_period=entry.duration.raw,
                    window_start=counter.window_start,
                    window_end=end,
                    expected_window_start=expected,
                    budget_limit=entry.limit,
                    logged_spend=logged,
                    cached_spend=cached,
                    counter_source=counter.source,
                    counter_key=counter.key.key,
                    message=(
                        f"{counter.source} counter {counter.key.key} holds "
                        + (money.text(cached) if cached is not None else f"{counter.raw_value!r} (not a number)")
                        + f" but the ledger has {money.text(logged)} for its window"
                        + (" (open now: enforcement reads it)" if is_open else "")
                    ),
                )
            )
        findings += _missing_counters(kb, windows, counters, options, read_source) if kb is not None else []
    for key, kb in budgets.items():
        if key not in counters_by_key:
            findings += _missing_counters(kb, windows, [], options, read_source)
    return findings


def _window_containing(windows: list[Window], start: datetime, options: Any) -> datetime | None:
    """The reconstructed window's start when the counter's own start sits elsewhere (beyond the slack)."""
    for window in windows:
        if window.start - options.window_slack <= start < window.end:
            return None if abs((window.start - start).total_seconds()) <= options.window_slack.total_seconds() else window.start
    return None


def _missing_counters(
    kb: Any, windows: Mapping[tuple[str, str, str], list[Window]], counters: list[Counter], options: Any, read_source: str | None
) -> list[Finding]:
    """An open window with ledger spend but no counter where enforcement reads: LiteLLM reads it as zero.

    End users are never shared through LiteLLM_BudgetWindowSpend (their counters stay per replica)."""
    if read_source is None or (read_source == "budget_window_spend" and kb.scope == "end_user"):
        return []
    findings = []
    for name, entry in kb.entries.items():
        history = windows.get((kb.scope, kb.entity_id, name)) or []
        if not history:
            continue
        last = history[-1]
        if not (last.start <= options.now < last.end) or last.spend <= options.tolerance:
            continue
        if any(  # a counter left on an expired window does not cover the open one
            c.source == read_source
            and c.key.budget_model == name
            and c.key.duration == entry.duration.raw
            and (c.window_start is None or last.start - options.window_slack <= c.window_start < last.end)
            for c in counters
        ):
            continue
        key = spend_key(kb.scope, kb.entity_id, name, entry.duration.raw)
        findings.append(
            Finding(
                kind=COUNTER_DRIFT,
                severity=ERROR,
                scope=kb.scope,
                entity_id=kb.entity_id,
                entity_alias=_alias(kb),
                budget_model=name,
                time_period=entry.duration.raw,
                window_start=last.start,
                window_end=last.end,
                budget_limit=entry.limit,
                logged_spend=last.spend,
                cached_spend=0.0,
                counter_source=read_source,
                counter_key=key,
                message=f"no {read_source} counter {key} for the open window; LiteLLM reads it as $0 while the ledger has {money.text(last.spend)}",
            )
        )
    return findings


def _miskeyed(counter: Counter, token: str, alias: str | None, kb: Any, catalogue: Catalogue, resolutions: Resolve) -> Finding:
    target = resolutions(counter.key.budget_model, "", "").resolved_group
    governs = None
    if kb is not None and target is not None:
        found = governing_entry(target, kb.entries, catalogue.access_groups_of(target))
        governs = found.name if found is not None else None
    scope = counter.key.scope.replace("_", " ")
    why = f"the {scope} has no such budget entry" if kb is not None else f"no such {scope} in LiteLLM's tables"
    if kb is not None and counter.key.budget_model in kb.entries:
        why = f"the entry's period is {kb.entries[counter.key.budget_model].duration.raw!r}, not {counter.key.duration!r}"
    value = money.text(counter.value) if counter.value is not None else repr(counter.raw_value)
    return Finding(
        kind=MISKEYED_COUNTER,
        severity=WARNING,
        scope=counter.key.scope,
        entity_id=token,
        entity_alias=alias,
        budget_model=governs,
        model=counter.key.budget_model,
        model_group=target,
        time_period=counter.key.duration,
        window_start=counter.window_start,
        cached_spend=counter.value,
        counter_source=counter.source,
        counter_key=counter.key.key,
        resolves_to=target,
        message=(
            f"{counter.source} counter {counter.key.key} ({value}) is never read by enforcement: {why}"
            + (f"; it resolves to {target}" + (f", governed by entry {governs!r}" if governs else "") if target else "")
        ),
    )


def resolution_findings(groups: Iterable[Any], resolutions: Resolve) -> list[Finding]:
    """Logged model names the resolver could not place, with their rows and spend (charged rows only)."""
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])  # rows, nano-dollars
    for group in groups:
        if group.outcome != "charged":
            continue
        triple = (group.model, group.model_group, group.model_id)
        if resolutions(*triple).status != "resolved":
            totals[triple][0] += group.requests
            totals[triple][1] += money.to_nanos(group.spend)
    findings = []
    for triple, (requests, nanos) in sorted(totals.items()):
        spend = money.to_dollars(nanos)
        resolution = resolutions(*triple)
        ambiguous = resolution.status == "ambiguous"
        name = triple[0] or triple[1] or triple[2] or "(empty)"
        findings.append(
            Finding(
                kind=AMBIGUOUS_MODEL if ambiguous else UNRESOLVED_MODEL,
                severity=WARNING,
                model=triple[0],
                model_group=triple[1] or None,
                requests=int(requests),
                logged_spend=spend,
                message=(
                    f"model {name!r} could be any of {', '.join(resolution.candidates)}: {int(requests)} rows, {money.text(spend)} not attributed"
                    if ambiguous
                    else f"model {name!r} matches no configured model group: {int(requests)} rows, {money.text(spend)} not attributed to any budget"
                ),
            )
        )
    return findings


def model_spend_notes(key_rows: Iterable[Any]) -> list[str]:
    if all(not row.model_spend for row in key_rows if not row.deleted):
        return ["model_spend is empty on every key: LiteLLM has not maintained it since early 2024 (not a counter)"]
    return []


def model_spend_findings(
    key_rows: Iterable[Any], groups: Iterable[Any], resolutions: Resolve, options: Any, selected: Collection[str] | None
) -> list[Finding]:
    """A non-empty legacy model_spend (a fossil of early 2024) against the lifetime ledger, by canonical group."""
    nanos: dict[tuple[str, str | None], int] = defaultdict(int)
    for group in groups:
        if group.outcome == "charged":
            resolution = resolutions(group.model, group.model_group, group.model_id)
            if resolution.status == "resolved":
                nanos[(group.api_key, resolution.group)] += money.to_nanos(group.spend)
    lifetime: dict[tuple[str, str | None], float] = {k: money.to_dollars(n) for k, n in nanos.items()}
    findings = []
    for row in key_rows:
        if row.deleted or not isinstance(row.model_spend, Mapping) or not row.model_spend:
            continue
        if selected is not None and row.token not in selected:
            continue
        merged: dict[str | None, float] = defaultdict(float)
        names: dict[str | None, list[str]] = defaultdict(list)
        for name, value in row.model_spend.items():
            resolution = resolutions(str(name), "", "")
            group = resolution.group if resolution.status == "resolved" else str(name)
            try:
                amount = float(value)
            except (TypeError, ValueError):
                continue
            merged[group] += amount
            names[group].append(str(name))
            if group != str(name):  # an entry under a deployment name (the 2024 writer keyed on kwargs["model"])
                findings.append(
                    Finding(
                        kind=MISKEYED_COUNTER,
                        severity=INFO,
                        scope=KEY,
                        entity_id=row.token,
                        entity_alias=row.key_alias,
                        model=str(name),
                        model_group=group,
                        resolves_to=group,
                        cached_spend=amount,
                        counter_source="model_spend",
                        counter_key=str(name),
                        message=(
                            f"legacy model_spend entry {str(name)!r} ({money.text(amount)}) is named after a deployment, not a model "
                            f"group; it resolves to {group} (nothing reads model_spend since 2024)"
                        ),
                    )
                )
        for group, cached in sorted(merged.items()):
            logged = lifetime.get((row.token, group), 0.0)
            if abs(cached - logged) <= options.tolerance:
                continue
            findings.append(
                Finding(
                    kind=COUNTER_DRIFT,
                    severity=INFO,
                    scope=KEY,
                    entity_id=row.token,
                    entity_alias=row.key_alias,
                    model_group=group,
                    cached_spend=cached,
                    logged_spend=logged,
                    counter_source="model_spend",
                    counter_key=", ".join(names[group]),
                    message=(
                        f"legacy model_spend {', '.join(names[group])} = {money.text(cached)}, "
                        f"lifetime ledger for {group} = {money.text(logged)} (LiteLLM stopped maintaining model_spend in 2024)"
                    ),
                )
            )
    return findings


def window_spend(
    budgets: Mapping[tuple[str, str], Any],
    windows: Mapping[tuple[str, str, str], list[Window]],
    groups_by_entry: Mapping[tuple[str, str, str], set[str]],
    splits: Mapping[tuple[str, str, str, datetime], Mapping[str | None, tuple[float, int]]] | None = None,
) -> list[WindowSpend]:
    """A line per budget window; for an entry that charged several model groups, a line per group in each window
    (`splits`), whose amounts add up to the window's."""
    spend = []
    for (scope, entity_id, name), history in sorted(windows.items()):
        entry = budgets[(scope, entity_id)].entries[name]
        group = _single(groups_by_entry.get((scope, entity_id, name), set()))
        for window in history:
            parts = (splits or {}).get((scope, entity_id, name, window.start))
            if not parts:
                spend.append(
                    WindowSpend(
                        scope, entity_id, group, name, entry.duration.raw, window.start, window.end, window.spend, window.requests
                    )
                )
                continue
            for part_group, (part_spend, part_requests) in sorted(parts.items()):
                spend.append(
                    WindowSpend(
                        scope,
                        entity_id,
                        part_group,
                        name,
                        entry.duration.raw,
                        window.start,
                        window.end,
                        part_spend,
                        part_requests,
                    )
                )
    return spend
