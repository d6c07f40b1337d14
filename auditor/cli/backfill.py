"""`auditor backfill` (plan, --apply, history, undo) and `auditor db upgrade`: arguments and rendering only.

Registered in auditor/cli/main.py with:

    app.add_typer(backfill_app, name="backfill")
    app.add_typer(db_app, name="db")

"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from enum import Enum
from typing import Annotated

import typer

from auditor.cli.common import (
    ConfigOption,
    DbOption,
    KeysOption,
    LiteLLMVersionOption,
    ModelOption,
    NowOption,
    RedisOption,
    SettleOption,
    StatementTimeoutOption,
    TimezoneOption,
    ToleranceOption,
    WindowSlackOption,
    err,
    handles_errors,
    out,
    say,
)
from auditor.exitcodes import ExitCode
from auditor.session import writable_target

PAUSE_HOOK_ENV = "AUDITOR_TEST_PAUSE_AFTER_WRITE"  # seconds to pause after every write (crash and disconnect tests)

backfill_app = typer.Typer(
    help=(
        "Repair the counters the scan found wrong (dry run unless --apply), list runs, undo one.\n\n"
        "Example:\n\n"
        "\b\n    auditor backfill --db postgresql://auditor_writer@db.internal/litellm --redis redis://cache:6379/0"
    ),
    rich_markup_mode=None,
)
db_app = typer.Typer(
    help="auditor's own tables (the backfill journal and the report history).", no_args_is_help=True, rich_markup_mode=None
)


class PlanFormat(str, Enum):
    table = "table"
    json = "json"


class Target(str, Enum):
    counters = "counters"
    model_spend = "model_spend"
    spend = "spend"


def _pause_hook(stop: Callable[[], str | None] = lambda: None) -> Callable[[str], None]:
    seconds = os.environ.get(PAUSE_HOOK_ENV)
    if not seconds:
        return lambda what: None

    at = os.environ.get("AUDITOR_TEST_PAUSE_AT", "")  # only after writes whose name starts with this

    def pause(what: str) -> None:
        if not what.startswith(at):
            return
        sys.stderr.write(f"auditor: test hook: paused after {what}\n")
        sys.stderr.flush()
        end = time.monotonic() + float(seconds)
        while time.monotonic() < end and not stop():
            time.sleep(0.02)

    return pause


class StopSignals:
    """SIGINT and SIGTERM, while a run writes, ask it to stop at its next safe point instead of killing it
    mid-change (backfill.Interrupted); a second signal of either kind stops at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict = {}

    def __call__(self) -> str | None:
        import signal

        return None if self.received is None else signal.Signals(self.received).name

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __enter__(self) -> StopSignals:
        import signal

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _interrupted(stop: StopSignals, run_id: str, kind: str, done: int, total: int) -> typer.Exit:
    """One block on stderr saying where the run stands and how to go on; exit 128 + the signal's number."""
    import signal

    err.print(
        f"auditor: run {run_id} interrupted by {stop()} after {done} of {total} changes; the change in flight was "
        "finished or rolled back, and the journal marks the run interrupted",
        markup=False,
        highlight=False,
    )
    if kind == "backfill":
        err.print(
            "auditor: resume: rerun the same `auditor backfill … --apply` (it plans only what is still wrong); "
            f"undo what was written: auditor backfill undo {run_id}",
            markup=False,
            highlight=False,
        )
    else:
        err.print(
            "auditor: resume: rerun the same `auditor backfill undo` (values already restored are left as they are)",
            markup=False,
            highlight=False,
        )
    return typer.Exit(128 + int(stop.received or signal.SIGINT))


def _announce(kind: str, total: int) -> Callable[[str], None]:
    def started(run_id: str) -> None:
        err.print(
            f"auditor: run {run_id} started ({kind}, {total} changes); Ctrl-C stops it safely; "
            f"`auditor backfill undo {run_id}` puts back what it wrote",
            markup=False,
            highlight=False,
        )

    return started


def _money(value: float | None) -> str:
    return "absent" if value is None else f"${value:,.4f}"


# ---------------------------------------------------------------------------------------------
# auditor backfill


@backfill_app.callback(invoke_without_command=True)
@handles_errors
def backfill(
    ctx: typer.Context,
    db: DbOption = None,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    key: KeysOption = None,
    model: ModelOption = None,
    target: Annotated[
        list[Target] | None,
        typer.Option(
            "--target",
            help="What to repair: counters (live per-model window counters, default), model_spend (legacy JSON), spend (scalar spend of the current period). Repeatable.",
            show_default=False,
        ),
    ] = None,
    remove_miskeyed: Annotated[
        bool, typer.Option("--remove-miskeyed", help="Also delete counters stored under names enforcement never reads.")
    ] = False,
    litellm_version: LiteLLMVersionOption = None,
    now: NowOption = None,
    tolerance: ToleranceOption = 0.0001,
    window_slack: WindowSlackOption = 1.0,
    settle: SettleOption = 0.0,
    output_format: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.table,
    apply_: Annotated[bool, typer.Option("--apply", help="Write the plan (asks first unless --yes) and journal it.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    batch: Annotated[int, typer.Option(help="Entities per database transaction (0: the whole run in one).")] = 0,
    flush_lag: Annotated[
        float | None,
        typer.Option(
            "--flush-lag",
            help="Seconds a spend-log row may take to reach the database after its request's counter increment; --apply waits this long before it sums the ledger. Default: general_settings.proxy_batch_write_at (else 10) + 10.",
            show_default=False,
        ),
    ] = None,
    increment_lag: Annotated[
        float,
        typer.Option(
            "--increment-lag",
            help="Seconds from a request's end until its increment is in Redis, at most: a counter is read twice this far apart to find an instant no request was in flight.",
        ),
    ] = 1.0,
    timezone: TimezoneOption = None,
    statement_timeout: StatementTimeoutOption = None,
) -> None:
    """Repair the counters the scan found wrong, on a live proxy, with a journal and a way back.

    Default is a dry run: the plan (target, key, old → new, why), exit 1 when there is something
    to repair, 0 when nothing. --apply writes it: each Redis counter is read, the ledger summed up
    to that read once the proxy has flushed (--flush-lag), and the counter set to that sum plus
    whatever the proxy added since, in one atomic script (no increment is lost); database rows are
    locked and re-checked; every old/new value is journaled so `auditor backfill undo RUN_ID` can
    put it back. The run id is printed when it starts; Ctrl-C or SIGTERM stops it safely (exit
    130/143). Needs `auditor db upgrade` once.

    --settle defaults to 0 here: the value written holds every logged charge. --now judges the
    scan; TTLs always follow the wall clock.

    Example:

        \b
        auditor backfill --db postgresql://auditor_writer@db.internal/litellm --redis redis://cache:6379/0 --apply
    """
    if ctx.invoked_subcommand is not None:
        return
    from auditor import api
    from auditor.repair.apply import Interrupted, RunReport
    from auditor.repair.plan import REDIS

    prepared = api.plan_backfill(
        db,
        config=config,
        redis=redis_url,
        keys=key or (),
        model=model,
        targets=[t.value for t in (target or [Target.counters])],
        remove_miskeyed=remove_miskeyed,
        litellm_version=litellm_version,
        now=now,
        tolerance=tolerance,
        window_slack=window_slack,
        settle=settle,
        timezone=timezone,
        statement_timeout=statement_timeout,
        batch=batch,
        flush_lag=flush_lag,
        increment_lag=increment_lag,
        writable=apply_,
        warn=say,
    )
    planned = prepared.plan
    record = planned.as_record()
    hide = _raw_key_redactor(planned.writes)  # shown, never written: the writes use the real keys
    if not apply_:
        if output_format is PlanFormat.json:
            sys.stdout.write(hide(json.dumps(record, indent=2)) + "\n")
        else:
            render_plan(planned, out, dry_run=True, hide=hide)
        raise typer.Exit(int(ExitCode.FINDINGS if planned.actionable else ExitCode.OK))

    if not planned.actionable:
        if output_format is PlanFormat.json:
            sys.stdout.write(hide(json.dumps({**record, "run_id": None}, indent=2)) + "\n")
        else:
            render_plan(planned, out, dry_run=False, hide=hide)
            out.print("nothing to repair: nothing written, no run journaled")
        raise typer.Exit(int(ExitCode.OK))
    if output_format is PlanFormat.table:
        render_plan(planned, out, dry_run=False, hide=hide)
    if not yes:
        writes_redis = prepared.redis is not None and any(w.target == REDIS for w in planned.actionable)
        where = prepared.database.masked + (f" and Redis {prepared.redis.masked}" if writes_redis else "")
        try:
            confirmed = typer.confirm(f"Write these {len(planned.actionable)} changes to {where}?", default=False, err=True)
        except typer.Abort:
            confirmed = False
        if not confirmed:
            err.print("auditor: not applied: nothing written")
            raise typer.Exit(int(ExitCode.FINDINGS))
    stop = StopSignals()
    report = RunReport("", "backfill", [])
    try:
        with stop:
            report = api.apply_backfill(
                prepared,
                stop=stop,
                hook=_pause_hook(stop),
                started=_announce("backfill", len(planned.actionable)),
                report=report,
                waiting=lambda seconds: err.print(
                    f"auditor: waiting {seconds:g} s for the proxy's spend-log flush before summing the ledger (--flush-lag)",
                    markup=False,
                    highlight=False,
                ),
            )
    except Interrupted:
        raise _interrupted(stop, report.run_id, "backfill", len(report.outcomes), len(planned.actionable)) from None
    if output_format is PlanFormat.json:
        sys.stdout.write(hide(json.dumps({**record, "run_id": report.run_id, "run": report.as_record()}, indent=2)) + "\n")
    else:
        render_report(report, out, hide=hide)
    left = sum(1 for o in report.outcomes if o.state == "conflict")
    raise typer.Exit(int(ExitCode.FINDINGS if left else ExitCode.OK))


def _raw_key_redactor(writes):
    """Raw API keys (old LiteLLM stored them as tokens) are shown by their hash (auditor/redact.py)."""
    from auditor.redact import Redactor

    return Redactor(w.entity_id for w in writes if w.scope == "key" and w.entity_id)


@backfill_app.command("history")
@handles_errors
def history(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many runs, newest first (0: all).")] = 20,
    output_format: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.table,
) -> None:
    """List the journaled runs, newest first; a run that never finished shows as incomplete.

    Example:

        \b
        auditor backfill history --db postgresql://auditor_writer@db.internal/litellm
    """
    from rich.table import Table

    from auditor import api
    from auditor.audit.findings import iso
    from auditor.reports.render import clean

    journaled = api.backfill_runs(db, limit=limit)
    if output_format is PlanFormat.json:
        sys.stdout.write(json.dumps([j.as_record() for j in journaled], indent=2) + "\n")
        return
    if not journaled:
        out.print("no runs journaled yet")
        return
    table = Table(header_style="bold")
    for column in ("run id", "kind", "started (UTC)", "finished (UTC)", "status", "changes", "note"):
        table.add_column(column, overflow="fold")
    style = {"completed": "green", "failed": "bold red", "incomplete": "bold red"}
    for j in journaled:
        r = j.run
        changes = ", ".join(f"{n} {state}" for state, n in sorted(j.changes.items())) or "none"
        note = f"undoes {r.parent_run_id}" if r.parent_run_id else ""
        if r.message:
            note = (note + "; " if note else "") + r.message
        table.add_row(
            r.id,
            r.kind,
            (iso(r.started_at) or "")[:19].replace("T", " "),
            (iso(r.finished_at) or "—")[:19].replace("T", " "),
            f"[{style.get(r.state, 'yellow')}]{r.state}[/]",
            changes,
            clean(note),
        )
    out.print(table)


@backfill_app.command("undo")
@handles_errors
def undo(
    run_id: Annotated[
        str, typer.Argument(help="The run to undo (as printed by --apply or history; a unique prefix of 8+ characters works).")
    ],
    db: DbOption = None,
    redis_url: RedisOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    output_format: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.table,
) -> None:
    """Put back the values a run replaced, wherever nothing changed them since.

    Each value is restored by the same compare-and-set (Redis) or locked re-check (database) as
    --apply; values changed since the run are left alone and listed. Journaled as a run of its
    own. Exit 0 when everything was restored, 1 when something could not be.

    Example:

        \b
        auditor backfill undo 3f2a9c1e --db postgresql://auditor_writer@db.internal/litellm --redis redis://cache:6379/0
    """
    from auditor import api
    from auditor.repair.apply import Interrupted, RunReport

    planned = api.plan_undo(run_id, db=db, redis=redis_url)
    run, changes = planned.run, planned.changes
    if not yes:
        try:
            confirmed = typer.confirm(
                f"Undo run {run.id} ({len(changes)} changes) on {planned.database.masked}?", default=False, err=True
            )
        except typer.Abort:
            confirmed = False
        if not confirmed:
            err.print("auditor: not undone: nothing written")
            raise typer.Exit(int(ExitCode.FINDINGS))
    stop = StopSignals()
    report = RunReport("", "undo", [], parent_run_id=run.id)
    try:
        with stop:
            report = api.undo_backfill(
                planned, stop=stop, hook=_pause_hook(stop), started=_announce(f"undo of {run.id}", len(changes)), report=report
            )
    except Interrupted:
        raise _interrupted(stop, report.run_id, "undo", len(report.outcomes), len(changes)) from None
    if output_format is PlanFormat.json:
        hide = _raw_key_redactor([o.write for o in report.outcomes])
        sys.stdout.write(hide(json.dumps(report.as_record(), indent=2)) + "\n")
    else:
        render_report(report, out, hide=_raw_key_redactor([o.write for o in report.outcomes]))
    left = [o for o in report.outcomes if o.state == "conflict"]
    raise typer.Exit(int(ExitCode.FINDINGS if left else ExitCode.OK))


# ---------------------------------------------------------------------------------------------
# auditor db upgrade


@db_app.command("upgrade")
@handles_errors
def db_upgrade(db: DbOption = None) -> None:
    """Create or upgrade auditor's own tables (the backfill journal, the report history) with its Alembic migrations.

    PostgreSQL: inside the schema `auditor` (created when absent; or create it yourself and grant
    CREATE on it), never among LiteLLM's tables. SQLite: tables prefixed `auditor_`.

    Example:

        \b
        auditor db upgrade --db postgresql://auditor_writer@db.internal/litellm
    """
    from auditor.ledger.db import BACKFILL, database_errors, engine_for
    from auditor.repair import journal

    target = writable_target(db, "db upgrade")
    engine = engine_for(target, BACKFILL)
    try:
        with database_errors(target), engine.begin() as conn:
            before, after = journal.upgrade(conn)
    finally:
        engine.dispose()
    where = f"schema {journal.SCHEMA}" if target.dialect == "postgresql" else f"tables {journal.SQLITE_PREFIX}*"
    if before == after:
        out.print(f"auditor's journal is up to date at revision {after} ({where} in {target.masked})")
    else:
        out.print(f"auditor's journal upgraded from {before or 'nothing'} to revision {after} ({where} in {target.masked})")


# ---------------------------------------------------------------------------------------------
# Rendering


def render_plan(planned, console, *, dry_run: bool, hide=None) -> None:
    from rich.table import Table

    from auditor.repair import layout as layouts
    from auditor.repair import plan
    from auditor.reports.render import clean as inert

    shown = hide or (lambda value: value)

    def clean(value: object) -> str:
        return inert(shown(str(value)))

    layout = planned.layout
    shape = {
        layouts.ENTRY_LAYOUT: "entry-keyed counters, a start key per entry (LiteLLM 1.99+)",
        layouts.ALIAS_LAYOUT: "counters keyed by requested model, one start key per entity (LiteLLM 1.84–1.98)",
        layouts.MEMORY_LAYOUT: "counters in worker memory, none to write (LiteLLM < 1.84)",
    }[layout.name]
    console.print(f"counter layout: {shape}; LiteLLM {clean(layout.version)} from {layout.origin}")
    for note in planned.notes:
        console.print(f"[dim]note: {clean(note)}[/]")
    if planned.actionable:
        table = Table(title="planned writes", title_justify="left", header_style="bold")
        table.add_column("target", no_wrap=True)
        table.add_column("key", overflow="fold", ratio=3)
        table.add_column("old → new", no_wrap=True)
        table.add_column("why", overflow="fold", ratio=2)
        for w in planned.actionable:
            keys = list(w.keys) if w.target == plan.REDIS else [w.key]
            if w.target == plan.BWS:
                keys = [f"LiteLLM_BudgetWindowSpend {w.key}"]
            elif w.target == plan.MODEL_SPEND:
                keys = [f"LiteLLM_VerificationToken.model_spend of {w.entity_alias or shown(w.key)[:12]}"]
            elif w.target == plan.SCALAR:
                keys = [f"{w.key} of {w.scope} {w.entity_alias or shown(w.entity_id or '')[:12]}"]
            change = f"{_money(w.old_value)} → " + ("removed" if w.action == plan.REMOVE else _money(w.new_value))
            table.add_row(w.target, "\n".join(clean(k) for k in keys), change, clean(w.why))
        console.print(table)
    if planned.skipped:
        table = Table(title="not written", title_justify="left", header_style="bold")
        table.add_column("target", no_wrap=True)
        table.add_column("key", overflow="fold", ratio=3)
        table.add_column("why not", overflow="fold", ratio=2)
        for w in planned.skipped:
            table.add_row(w.target, clean(w.key), clean(w.why))
        console.print(table)
    counts = ", ".join(f"{n} {t}" for t, n in planned.as_record()["summary"]["by_target"].items())
    if not planned.actionable:
        console.print(
            "[green]nothing to repair[/]" + (f" ({len(planned.skipped)} not written, see above)" if planned.skipped else "")
        )
    elif dry_run:
        console.print(
            f"[bold]{len(planned.actionable)} writes[/] ({counts}), {len(planned.skipped)} not written. "
            "Dry run: nothing written; rerun with --apply to write and journal them."
        )


def render_report(report, console, hide=None) -> None:
    from rich.table import Table

    from auditor.reports.render import clean as inert

    def clean(value: object) -> str:
        return inert(hide(str(value)) if hide else value)

    styles = {"applied": "green", "recomputed": "yellow", "restored": "green", "unchanged": "dim", "conflict": "bold red"}
    table = Table(header_style="bold")
    table.add_column("target", no_wrap=True)
    table.add_column("key", overflow="fold", ratio=3)
    table.add_column("state", no_wrap=True)
    table.add_column("written", no_wrap=True)
    table.add_column("note", overflow="fold", ratio=2)
    for o in report.outcomes:
        written = o.as_record()["written_value"]
        table.add_row(
            o.write.target,
            clean(o.write.key),
            f"[{styles.get(o.state, 'yellow')}]{o.state}[/]",
            "" if o.state in ("conflict", "unchanged") else ("removed" if written is None else _money(written)),
            clean(o.reason or ""),
        )
    if report.outcomes:
        console.print(table)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(report.counts().items())) or "no changes"
    verb = f"undo of run {report.parent_run_id}" if report.kind == "undo" else "backfill"
    console.print(f"run {report.run_id} journaled ({verb}): {counts}")
    if report.kind == "backfill":
        console.print(f"undo it with: auditor backfill undo {report.run_id}")
