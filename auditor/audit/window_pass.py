"""The scan's window pass: every budgeted entity's charges, streamed in order, through a WindowTracker per budget
entry (auditor/audit/windows.py), giving its windows, the model groups each entry charged and the ledger's sums
for the counters that cache it. Resumes from and cuts a checkpoint for report --incremental (incremental.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from functools import partial
from itertools import chain, groupby
from operator import attrgetter

from auditor import money
from auditor.audit import checkpoint
from auditor.audit.entities import SCOPES, EntityBudgets, entry_for, governed_charges
from auditor.audit.incremental import paid_before
from auditor.audit.windows import Window, WindowTracker
from auditor.ledger import queries


class _Counted:
    """Passes rows through, counting them, for the progress bar."""

    def __init__(self, rows):
        self.rows, self.seen = rows, 0

    def __iter__(self):
        for row in self.rows:
            self.seen += 1
            yield row


def window_pass(conn, caps, catalogue, resolutions, budgets, keys_entries, read, ledger, progress, resume, state, slack):
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
            state.stream_jobs[scope] = paid_before(paid, cut)
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
        trackers[name] = (
            WindowTracker(entry.duration, entry.limit)
            if tracker_state is None
            else WindowTracker.resume(entry.duration, entry.limit, tracker_state)
        )
    for name, ws in before.closed.items():
        closed[name] = list(ws)
    for name, gs in before.groups.items():
        seen[name] = set(gs)
    return trackers, closed, seen


def group_splits(conn, caps, where, budgets, windows, groups_by_entry, resolutions, catalogue, keys_entries) -> dict:
    """Per-model-group spend inside each window of an entry that charged several groups (a glob, an access group):
    {(scope, entity, entry, window start): {group: [spend, requests]}}, so every (entity, model group) has spend lines.
    Read per such entity with one grouped statement; the rows of each window are placed exactly as the replay did."""
    splits: dict[tuple, dict[str, list]] = {}
    for (scope, entity_id, name), history in windows.items():
        if len(groups_by_entry.get((scope, entity_id, name), ())) < 2 or not history:
            continue
        eb = budgets[(scope, entity_id)]
        rows = queries.window_splits(conn, caps, where, scope, eb.stream_id, [(w.start, w.end) for w in history])
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
