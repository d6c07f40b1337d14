"""report --incremental's side of the scan: where this run cuts its checkpoint, whether the previous one may be
resumed (and why not), and the paid jobs a read from the cut does not see again. The checkpoint itself is
auditor/audit/checkpoint.py.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING

from auditor.audit import checkpoint
from auditor.audit.spend_ledger import MoneyCells, money_cells
from auditor.audit.windows import DEFAULT_LOOKBACK
from auditor.ledger import queries
from auditor.money import merge_totals
from auditor.redact import is_raw_key

if TYPE_CHECKING:
    from auditor.audit.scan import ScanOptions


def plan(
    conn, caps, catalogue, options: ScanOptions, where, selected, holders, budgets, counters, increment: checkpoint.Increment
):
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
        return (
            f"the oldest spend log in scope moved from {when(state.oldest)} to {when(oldest)} since the checkpoint "
            "(rows deleted, e.g. by spend-log retention, or written before it)"
        )
    if options.since is None and not options.retention and table_oldest != state.table_oldest:
        return f"the oldest spend log moved from {when(state.table_oldest)} to {when(table_oldest)} since the checkpoint (rows deleted)"
    if state.watermark is not None and (newest is None or newest < state.watermark):
        return f"the newest spend log ({when(newest)}) is older than the checkpoint's watermark ({when(state.watermark)}): rows were deleted"
    if state.cut > settled:
        return f"--now minus --settle ({when(settled)}) is before the checkpoint's cut ({when(state.cut)})"
    for counter in counters:  # a counter whose window reaches before the cut needs the ledger's sum there
        eb = budgets.get((counter.key.scope, counter.key.entity_id))
        entry = eb.entries.get(counter.key.budget_model) if eb is not None else None
        if (
            entry is None
            or entry.duration.raw != counter.key.duration
            or counter.window_start is None
            or counter.window_start - options.window_slack >= state.cut
        ):
            continue
        if checkpoint.counter_id(counter) not in state.counters:
            return (
                f"{counter.source} counter {counter.key.key} (window from {when(counter.window_start)}) starts before the "
                "checkpoint's cut, and the checkpoint does not know it"
            )
    return None


def paid_before(first_paid: queries.PaidJobs, cut: datetime) -> set[tuple[str, str]]:
    """The jobs whose first paid poll a read from `cut` on does not see again: it ended before the cut (or started
    more than DEFAULT_LOOKBACK before it). None: paid before the rows read."""
    bound = cut - DEFAULT_LOOKBACK
    return {job for job, first in first_paid.items() if first is None or first[0] < cut or first[1] < bound}


def new_state(
    conn,
    caps,
    where: queries.SpendFilter,
    groups: list[queries.SpendGroup],
    cells: list | None,
    cut: datetime,
    bounds: tuple,
    resume: checkpoint.State | None,
    first_paid: queries.PaidJobs,
) -> checkpoint.State:
    """The checkpoint this run cuts, before the window pass fills in its entities: the ledger's groups (and, when the
    scan collects them, its charged cells at entity grain) up to the cut (the old totals when nothing ended between
    the cuts), and the paid jobs a read from the cut will not see again. The rows after the cut are read once more,
    from the "startTime" index: a lookback's worth, not the ledger."""
    state = checkpoint.State(cut, *bounds)
    state.jobs = (set(resume.jobs) if resume else set()) | paid_before(first_paid, cut)
    if resume is not None and cut == resume.cut:  # nothing ended between the cuts: the old totals stand
        state.groups, state.cells = resume.groups, resume.cells
    else:
        after_cells: list | None = [] if cells is not None else None
        after = queries.spend_groups(conn, caps, replace(where, ended_from=cut), state.jobs, charged_by_entity=after_cells)
        state.groups = checkpoint.merge_groups(groups, minus=after)
        state.cells = merge_totals(cells or [], minus=after_cells or [])
    return state


def keep(increment: checkpoint.Increment, state: checkpoint.State | None, read_groups, groups, key_rows, counters) -> None:
    """Hands the run's checkpoint to the report, unless the ledger holds raw API keys, which auditor never stores."""
    increment.rows_read = sum(g.requests for g in read_groups)
    if state is not None and any(
        map(
            is_raw_key,
            chain(
                (g.api_key for g in groups),
                (r.token for r in key_rows),
                (c.key.entity_id for c in counters if c.key.scope == "key"),
            ),
        )
    ):
        increment.not_stored = (
            "the ledger holds raw API keys (sk-…), which auditor never stores: no checkpoint kept, "
            "so the next incremental run reads everything"
        )
        state = None
    increment.state = state


def money(conn, caps, where, resume: checkpoint.State | None, zone_name: str | None) -> MoneyCells:
    """The report's spend cells of the whole range: the checkpoint's plus the rows that ended since its cut, or all
    rows read when the checkpoint has none."""
    if resume is None or resume.money is None:
        return money_cells(conn, caps, where, zone_name)
    return resume.money.merged(money_cells(conn, caps, replace(where, ended_from=resume.cut), zone_name))


def money_state(
    conn, caps, where, cells: MoneyCells, state: checkpoint.State, resume: checkpoint.State | None, paid: bool, zone_name
) -> MoneyCells | None:
    """The spend cells the new checkpoint keeps: those outside R(cut) (the old ones when the cut did not move).
    None when the ledger has paid job polls (`paid`): a read of part of it cannot tell which polls repeat."""
    if paid:
        return None
    if resume is not None and resume.money is not None and state.cut == resume.cut:
        return resume.money
    return cells.merged(minus=money_cells(conn, caps, replace(where, ended_from=state.cut), zone_name))
