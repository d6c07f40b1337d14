"""The scan's rollup pass: LiteLLM's daily rollup tables (per user, team, end user) against the ledger, on whole
days the ledger fully covers; with --use-rollups, per-day history for the days before it.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from auditor.audit import checkpoint, rollup_checks
from auditor.audit.ledger_pass import ledger_complete_since
from auditor.audit.windows import DEFAULT_LOOKBACK
from auditor.ledger import daily_rollups, queries
from auditor.ledger.capabilities import Capabilities

if TYPE_CHECKING:
    from auditor.audit.scan import ScanOptions


def rollup_pass(
    conn: Connection,
    caps: Capabilities,
    key_rows,
    options: ScanOptions,
    selected,
    history_out: list[dict],
    resume: checkpoint.State | None = None,
    state: checkpoint.State | None = None,
) -> tuple[list, list[str]]:
    """Daily rollups (per user, team, end user) against the ledger, only on whole days the ledger fully covers.
    Days before a checkpoint's cut whose rollup rows have not changed come from the checkpoint; the rest are read."""
    from auditor.ledger.schema import DAILY_ROLLUPS

    present = [(name, table, by) for name, (table, by) in DAILY_ROLLUPS.items() if caps.has_table(name)]
    if not present:
        return [], []
    complete_since = ledger_complete_since(conn, options)
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
    compared: list[tuple] = []  # (name, table, days, digests, reused) of each table compared
    reads: list[daily_rollups.RollupRead] = []
    for name, table, by in present:
        first_rollup, _ = daily_rollups.rollup_date_range(conn, table)
        if first_rollup is None:
            continue
        if first_rollup < first.isoformat():
            notes.append(f"{name} before {first.isoformat()} is not compared: the ledger does not fully cover those days")
            if options.use_rollups and name == "LiteLLM_DailyUserSpend":
                before = (first - timedelta(days=1)).isoformat()
                history_out.extend(
                    {
                        "date": day,
                        "api_key": api_key,
                        "model": model,
                        "custom_llm_provider": provider or None,
                        "spend": totals.spend,
                        "requests": totals.requests,
                        "source": name,
                    }
                    for (day, api_key, model, provider), totals in sorted(
                        daily_rollups.rollup_days(conn, table, first_rollup, before).items()
                    )
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
            digests = daily_rollups.rollup_day_digests(conn, table, first.isoformat(), last.isoformat())
        reused: dict[str, checkpoint.RollupDay] = {}
        if resume is not None:  # a day is whole in the checkpoint when none of its rows is one an incremental run reads
            stored, before = resume.rollups.get(name, {}), (resume.cut - DEFAULT_LOOKBACK).date().isoformat()
            empty = daily_rollups.EMPTY_DIGEST
            reused = {
                day: stored[day]
                for day in days
                if day < before and day in stored and stored[day].digest == digests.get(day, empty)
            }
        compared.append((name, table, days, digests, reused))
        reads.append(daily_rollups.RollupRead(name, table, by, _runs([day for day in days if day not in reused])))
    disagreeing = daily_rollups.rollup_disagreements(conn, caps, reads, options.tolerance)  # one read of the ledger
    for name, table, days, digests, reused in compared:
        ledger: dict = {}
        rollups: dict = {}
        for key, logged, cached in disagreeing.get(name, []):
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
        findings += rollup_checks.rollup_findings(name, ledger, rollups, aliases, options)
        if state is not None:
            until = (state.cut - DEFAULT_LOOKBACK).date().isoformat()
            differing: dict[str, dict] = defaultdict(dict)
            for k in set(ledger) | set(rollups):
                if (
                    k[0] < until
                    and k[0] not in reused
                    and rollup_checks.rollup_differs(ledger.get(k), rollups.get(k), options.tolerance)
                ):
                    differing[k[0]][k] = ledger.get(k)
            empty = daily_rollups.EMPTY_DIGEST
            state.rollups[name] = {
                day: reused.get(day) or checkpoint.RollupDay(digests.get(day, empty), differing.get(day, {}))
                for day in days
                if day < until
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
