"""Pure reconciliation: windows, counters and resolutions in, findings out. No I/O."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from auditor.budgets import BudgetEntry
from auditor.catalogue import Catalogue
from auditor.counters import Counter, spend_key
from auditor.findings import (
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
from auditor.resolver import governing_entry
from auditor.windows import Window

KEY = "key"
GLOB = "*"


def _money(value: float) -> str:
    return f"${value:,.4f}"


def _alias(budgets) -> str | None:
    """The key alias as reports show it; a deleted key's spend stays attributed to it, labelled."""
    if budgets is None:
        return None
    if budgets.deleted:
        return f"{budgets.alias or budgets.token[:12]} (deleted)"
    return budgets.alias


class CounterLedger:
    """The ledger's value for each cached counter, accumulated while charges stream past.

    A counter covers [its start - slack, start + period); charges in the last `settle` before
    `now` are left out because LiteLLM flushes counters in batches.
    """

    def __init__(self, counters: Iterable[Counter], options) -> None:
        self._options = options
        self._by_entry: dict[tuple[str, str, str], list[Counter]] = defaultdict(list)
        self.values: dict[Counter, float] = {}
        for counter in counters:
            if counter.key.scope == KEY and counter.window_start is not None:
                self._by_entry[(counter.key.entity_id, counter.key.budget_model, counter.key.duration)].append(counter)
                self.values[counter] = 0.0

    def add(self, token: str, entry: BudgetEntry, charged_at: datetime, spend: float) -> None:
        counters = self._by_entry.get((token, entry.name, entry.duration.raw))
        if not counters or charged_at > self._options.now - self._options.settle:
            return
        for counter in counters:
            start = counter.window_start
            if start - self._options.window_slack <= charged_at < entry.duration.end_of_window(start):
                self.values[counter] += spend


def budget_findings(
    budgets: Mapping[str, object],
    windows: Mapping[tuple[str, str], list[Window]],
    groups_by_entry: Mapping[tuple[str, str], set[str]],
    catalogue: Catalogue,
    logged_groups: Collection[str],
    options,
) -> list[Finding]:
    findings: list[Finding] = []
    names = {n for n in catalogue.served_names if GLOB not in n} | set(logged_groups)
    for token, kb in budgets.items():
        for problem in kb.problems:
            findings.append(Finding(
                kind=INVALID_BUDGET, severity=ERROR, scope=KEY, entity_id=token, entity_alias=_alias(kb),
                budget_model=problem.name or None,
                message=f"budget entry {problem.name!r} enforces nothing: {problem.reason}",
            ))
        for name, entry in kb.entries.items():
            if not _enforceable(entry, kb.entries, names, catalogue):
                findings.append(Finding(
                    kind=UNENFORCEABLE_BUDGET, severity=WARNING, scope=KEY, entity_id=token, entity_alias=_alias(kb),
                    budget_model=name, time_period=entry.duration.raw, budget_limit=entry.limit,
                    message=f"budget entry {name!r} governs no model this proxy serves or has logged, so it never applies",
                ))
            if not entry.enforced:
                continue
            groups = groups_by_entry.get((token, name), set())
            for window in windows.get((token, name), []):
                if window.spend <= entry.limit:
                    continue
                leaked = window.requests_after_limit > 0
                over = window.spend - entry.limit
                message = (
                    f"{name} {entry.duration.raw} window spent {_money(window.spend)} against a "
                    f"{_money(entry.limit)} limit"
                    + (f"; {window.requests_after_limit} requests ({_money(window.spend_after_limit)}) were admitted after the limit was reached"
                       if leaked else f"; only the crossing request overshot (by {_money(over)})")
                )
                findings.append(Finding(
                    kind=OVER_BUDGET, severity=ERROR if leaked else WARNING, scope=KEY, entity_id=token, entity_alias=_alias(kb),
                    budget_model=name, model_group=_single(groups), time_period=entry.duration.raw,
                    window_start=window.start, window_end=window.end, budget_limit=entry.limit,
                    logged_spend=window.spend, requests=window.requests, requests_after_limit=window.requests_after_limit,
                    spend_after_limit=window.spend_after_limit, message=message,
                ))
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
    budgets: Mapping[str, object],
    windows: Mapping[tuple[str, str], list[Window]],
    counters_by_key: Mapping[str, list[Counter]],
    ledger: CounterLedger,
    resolutions,
    catalogue: Catalogue,
    options,
    read_source: str | None,
) -> list[Finding]:
    findings: list[Finding] = []
    for token, counters in counters_by_key.items():
        kb = budgets.get(token)
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
            expected = _window_containing(windows.get((token, entry.name), []), counter.window_start, options)
            findings.append(Finding(
                kind=COUNTER_DRIFT, severity=ERROR if is_open else WARNING, scope=KEY, entity_id=token, entity_alias=alias,
                budget_model=entry.name, time_period=entry.duration.raw, window_start=counter.window_start, window_end=end,
                expected_window_start=expected, budget_limit=entry.limit, logged_spend=logged, cached_spend=cached,
                counter_source=counter.source, counter_key=counter.key.key,
                message=(
                    f"{counter.source} counter {counter.key.key} holds "
                    + (_money(cached) if cached is not None else f"{counter.raw_value!r} (not a number)")
                    + f" but the ledger has {_money(logged)} for its window"
                    + (" (open now: enforcement reads it)" if is_open else "")
                ),
            ))
        findings += _missing_counters(kb, token, windows, counters, options, read_source) if kb is not None else []
    for token, kb in budgets.items():
        if token not in counters_by_key:
            findings += _missing_counters(kb, token, windows, [], options, read_source)
    return findings


def _window_containing(windows: list[Window], start: datetime, options) -> datetime | None:
    """The reconstructed window's start when the counter's own start sits elsewhere (beyond the slack)."""
    for window in windows:
        if window.start - options.window_slack <= start < window.end:
            return None if abs((window.start - start).total_seconds()) <= options.window_slack.total_seconds() else window.start
    return None


def _missing_counters(kb, token, windows, counters, options, read_source) -> list[Finding]:
    """An open window with ledger spend but no counter: LiteLLM reads the missing counter as zero."""
    findings = []
    have = {(c.source, c.key.budget_model, c.key.duration) for c in counters}
    for name, entry in kb.entries.items():
        history = windows.get((token, name)) or []
        if not history:
            continue
        last = history[-1]
        if not (last.start <= options.now < last.end) or last.spend <= options.tolerance:
            continue
        for source in (read_source,):
            if (source, name, entry.duration.raw) in have:
                continue
            key = spend_key(KEY, token, name, entry.duration.raw)
            findings.append(Finding(
                kind=COUNTER_DRIFT, severity=ERROR, scope=KEY, entity_id=token, entity_alias=_alias(kb), budget_model=name,
                time_period=entry.duration.raw, window_start=last.start, window_end=last.end, budget_limit=entry.limit,
                logged_spend=last.spend, cached_spend=0.0, counter_source=source, counter_key=key,
                message=f"no {source} counter {key} for the open window; LiteLLM reads it as $0 while the ledger has {_money(last.spend)}",
            ))
    return findings


def _miskeyed(counter: Counter, token, alias, kb, catalogue, resolutions) -> Finding:
    resolved = resolutions(counter.key.budget_model, "", "")
    target = resolved.group if resolved.status == "resolved" else None
    governs = None
    if kb is not None and target is not None:
        found = governing_entry(target, kb.entries, catalogue.access_groups_of(target))
        governs = found.name if found is not None else None
    why = "the key has no such budget entry" if kb is not None else "no such key"
    if kb is not None and counter.key.budget_model in kb.entries:
        why = f"the entry's period is {kb.entries[counter.key.budget_model].duration.raw!r}, not {counter.key.duration!r}"
    value = _money(counter.value) if counter.value is not None else repr(counter.raw_value)
    return Finding(
        kind=MISKEYED_COUNTER, severity=WARNING, scope=KEY, entity_id=token, entity_alias=alias,
        budget_model=governs, model=counter.key.budget_model, model_group=target, time_period=counter.key.duration,
        window_start=counter.window_start, cached_spend=counter.value, counter_source=counter.source, counter_key=counter.key.key,
        resolves_to=target,
        message=(
            f"{counter.source} counter {counter.key.key} ({value}) is never read by enforcement: {why}"
            + (f"; it resolves to {target}" + (f", governed by entry {governs!r}" if governs else "") if target else "")
        ),
    )


def resolution_findings(groups, resolutions) -> list[Finding]:
    """Logged model names the resolver could not place, with their rows and spend (charged rows only)."""
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for group in groups:
        if group.outcome != "charged":
            continue
        triple = (group.model, group.model_group, group.model_id)
        if resolutions(*triple).status != "resolved":
            totals[triple][0] += group.requests
            totals[triple][1] += group.spend
    findings = []
    for triple, (requests, spend) in sorted(totals.items()):
        resolution = resolutions(*triple)
        ambiguous = resolution.status == "ambiguous"
        name = triple[0] or triple[1] or triple[2] or "(empty)"
        findings.append(Finding(
            kind=AMBIGUOUS_MODEL if ambiguous else UNRESOLVED_MODEL, severity=WARNING, model=triple[0],
            model_group=triple[1] or None, requests=int(requests), logged_spend=spend,
            message=(
                f"model {name!r} could be any of {', '.join(resolution.candidates)}: {int(requests)} rows, {_money(spend)} not attributed"
                if ambiguous else
                f"model {name!r} matches no configured model group: {int(requests)} rows, {_money(spend)} not attributed to any budget"
            ),
        ))
    return findings


def model_spend_notes(key_rows) -> list[str]:
    if all(not row.model_spend for row in key_rows if not row.deleted):
        return ["model_spend is empty on every key: LiteLLM has not maintained it since early 2024 (not a counter)"]
    return []


def model_spend_findings(key_rows, groups, resolutions, options, selected) -> list[Finding]:
    """A non-empty legacy model_spend (a fossil of early 2024) against the lifetime ledger, by canonical group."""
    lifetime: dict[tuple[str, str], float] = defaultdict(float)
    for group in groups:
        if group.outcome == "charged":
            resolution = resolutions(group.model, group.model_group, group.model_id)
            if resolution.status == "resolved":
                lifetime[(group.api_key, resolution.group)] += group.spend
    findings = []
    for row in key_rows:
        if row.deleted or not isinstance(row.model_spend, Mapping) or not row.model_spend:
            continue
        if selected is not None and row.token not in selected:
            continue
        merged: dict[str, float] = defaultdict(float)
        names: dict[str, list[str]] = defaultdict(list)
        for name, value in row.model_spend.items():
            resolution = resolutions(str(name), "", "")
            group = resolution.group if resolution.status == "resolved" else str(name)
            try:
                merged[group] += float(value)
            except (TypeError, ValueError):
                continue
            names[group].append(str(name))
        for group, cached in sorted(merged.items()):
            logged = lifetime.get((row.token, group), 0.0)
            if abs(cached - logged) <= options.tolerance:
                continue
            findings.append(Finding(
                kind=COUNTER_DRIFT, severity=INFO, scope=KEY, entity_id=row.token, entity_alias=row.key_alias,
                model_group=group, cached_spend=cached, logged_spend=logged, counter_source="model_spend",
                counter_key=", ".join(names[group]),
                message=(
                    f"legacy model_spend {', '.join(names[group])} = {_money(cached)}, "
                    f"lifetime ledger for {group} = {_money(logged)} (LiteLLM stopped maintaining model_spend in 2024)"
                ),
            ))
    return findings


def window_spend(budgets, windows, groups_by_entry) -> list[WindowSpend]:
    spend = []
    for (token, name), history in sorted(windows.items()):
        entry = budgets[token].entries[name]
        group = _single(groups_by_entry.get((token, name), set()))
        for window in history:
            spend.append(WindowSpend(KEY, token, group, name, entry.duration.raw, window.start, window.end, window.spend, window.requests))
    return spend
