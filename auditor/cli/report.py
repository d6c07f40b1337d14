"""`auditor report`: a scan written to a directory as dated JSON, Markdown and HTML files, for cron.

Registered by auditor/cli/main.py with `app.command("report")(report_command)`. The shared options, one-line
errors and database/config resolution come from auditor/cli/common.py; the scan is sequenced exactly as
`auditor scan` sequences it (see `_scan`).
"""

from __future__ import annotations

import os
import sys
import time
from enum import Enum
from typing import Annotated, Optional

import typer

from auditor.cli.common import (
    ConfigOption,
    DbOption,
    FailOn,
    LiteLLMVersionOption,
    RedisOption,
    RedisOptionalOption,
    err,
    handles_errors,
    out,
)
from auditor.exitcodes import ExitCode

PAUSE_HOOK_ENV = "AUDITOR_TEST_PAUSE_AFTER_LOCK"  # seconds to pause once the run holds the lock (lock tests)

HistoryDbOption = Annotated[
    Optional[str],
    typer.Option(
        "--history-db",
        help="Where auditor records report runs (its own tables only). Default: the report's database; for the embedded sample a SQLite file in the cache.",
        show_default=False,
    ),
]


def _pause_hook() -> None:
    seconds = os.environ.get(PAUSE_HOOK_ENV)
    if seconds:
        sys.stderr.write("auditor: test hook: paused after taking the run lock\n")
        sys.stderr.flush()
        time.sleep(float(seconds))


def parse_lookback(raw: str):
    """--lookback: a fixed duration in LiteLLM's grammar (1h, 30m, 0s), as a timedelta."""
    from datetime import timedelta

    from auditor.litellm.durations import parse_duration
    from auditor.errors import AuditorError, InputError

    try:
        seconds = parse_duration(raw).seconds
    except AuditorError:
        seconds = None
    if seconds is None:
        raise InputError(f"--lookback takes a duration such as 1h, 30m or 0s (got {raw!r})")
    return timedelta(seconds=seconds)


def parse_formats(raw: str) -> tuple[str, ...]:
    from auditor.errors import InputError
    from auditor.report.document import FORMATS

    aliases = {"markdown": "md", "htm": "html"}
    chosen = [aliases.get(part.strip().lower(), part.strip().lower()) for part in raw.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in FORMATS]
    if unknown or not chosen:
        raise InputError(f"--formats takes a comma-separated list of {', '.join(FORMATS)} (got {raw!r})")
    return tuple(f for f in FORMATS if f in chosen)  # a stable order, each once


@handles_errors
def report(
    out: Annotated[str, typer.Option("--out", help="Directory the reports are written to (created with mode 0700 when missing).", show_default=False)],
    formats: Annotated[str, typer.Option("--formats", help="Which files to write, comma-separated: json, md, html.")] = "json,md,html",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing when nothing reaches --fail-on; else one summary line (cron mails only then).")] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    redis_optional: RedisOptionalOption = False,
    since: Annotated[Optional[str], typer.Option(help='Only spend logs with "startTime" at or after this (ISO 8601, or an age like 30d).', show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option(help='Only spend logs with "startTime" before this.', show_default=False)] = None,
    now: Annotated[Optional[str], typer.Option(help="Judge the scan at this instant (default: the current time); also the files' timestamp.", show_default=False)] = None,
    tolerance: Annotated[float, typer.Option(help="Dollars a counter may differ from the ledger before it is drift.")] = 0.0001,
    window_slack: Annotated[float, typer.Option(help="Seconds before a counter's start that still count in its window.")] = 1.0,
    settle: Annotated[float, typer.Option(help="Seconds before --now whose charges counters may not hold yet.")] = 120.0,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 1 (and, with --quiet, print the summary) when a finding of this severity or worse is found.")] = FailOn.error,
    statement_timeout: Annotated[Optional[float], typer.Option(help="PostgreSQL statement_timeout for the scan's queries, in seconds.", show_default=False)] = None,
    timezone: Annotated[Optional[str], typer.Option(help="Zone LiteLLM aligns budget resets to. Default: litellm_settings.timezone, else UTC.", show_default=False)] = None,
    history_db: HistoryDbOption = None,
    webhook: Annotated[Optional[str], typer.Option("--webhook", help='POST {"text": ...} (Slack-compatible) here when new error findings appear; 5 s timeout, one retry.', show_default=False)] = None,
    incremental: Annotated[bool, typer.Option("--incremental", help="Resume from the previous run's checkpoint: read only spend logs that ended since its cut. Falls back to a full scan (and says why) when the checkpoint cannot be reused.")] = False,
    lookback: Annotated[str, typer.Option("--lookback", help='How late a spend log may be written and still be read: the checkpoint is cut this long before the newest "startTime".')] = "1h",
    litellm_version: LiteLLMVersionOption = None,
) -> None:
    """Run a scan and write it as dated report files: JSON, Markdown and a self-contained HTML page.

    Writes auditor-report-<UTC timestamp>.json/.md/.html in --out, each atomically (mode 0600),
    then latest.json/.md/.html with the same content. Each run is recorded in auditor's own tables
    (--history-db, default the report's database) and the report says which findings are new, still
    open or resolved since the previous run. Each run also stores a checkpoint of the scan's state;
    --incremental resumes from it and reads only the spend logs that ended since (docs/cron.md), with the
    same result as a full scan. One run at a time: a second one exits 3. Exit codes as
    scan: 0 clean, 1 findings at or above --fail-on, 2 bad input (or PostgreSQL history tables missing:
    run `auditor db upgrade`), 3 could not run (or could not write --out, or another run holds the lock).
    With --quiet it prints nothing unless it exits 1, so cron mails only when there is something to say.

    Example:

        \b
        auditor report --out /var/lib/auditor/reports --db postgresql://auditor@db.internal:5432/litellm --incremental --quiet
    """
    from rich.markup import escape

    from auditor.audit import checkpoint
    from auditor.report import history
    from auditor.clock import parse_instant, utc_now
    from auditor.report.document import prepare_out_dir, summary_line

    chosen = parse_formats(formats)
    lookback_delta = parse_lookback(lookback)
    from auditor.session import check_amounts

    check_amounts({"--tolerance": tolerance, "--window-slack": window_slack, "--settle": settle}, seconds=("--window-slack", "--settle"))
    started, clock = utc_now(), time.monotonic()
    for value, option in ((now, "--now"), (since, "--since"), (until, "--until")):
        if value:
            parse_instant(value, started, option)  # bad input is exit 2 before anything is locked or recorded
    if webhook:
        history.check_webhook(webhook)
    out_dir = prepare_out_dir(out)  # an unwritable --out fails (exit 3) before the database is read
    from auditor.session import require_litellm
    from auditor.ledger.db import database_from

    if (target := database_from(db)) is not None:
        require_litellm(target)  # before the history: a wrong --db is not a missing `db upgrade`
    history_target = history.history_target(history_db, db)
    source = history.source_name(db)
    with history.report_run(history_target, source, {"out": str(out_dir), "formats": list(chosen), "now": now},
                            started, utc_now) as recorded:
        _pause_hook()
        increment = checkpoint.Increment(lookback=lookback_delta, requested=incremental,
                                         previous=recorded.checkpoint() if incremental else None)
        result, options, money = _scan(db, config, redis_url, since, until, now, tolerance, window_slack, settle, statement_timeout,
                                       timezone, progress=not quiet, redis_optional=redis_optional, increment=increment,
                                       litellm_version=litellm_version)
        if not quiet:
            for why in (increment.fallback and f"full scan instead of incremental: {increment.fallback}", increment.not_stored):
                if why:
                    err.print(f"auditor: {escape(why)}")
        record, names, written, changes = _write(result, options, recorded, started, clock, chosen, out_dir, now, fail_on,
                                                  statement_timeout, increment, money)
        recorded.complete(record, changes, utc_now(), increment)

    worst = result.worst()
    failing = fail_on.fails(worst)
    main_file = str(out_dir / names["html" if "html" in names else chosen[0]])
    if not quiet:
        for path in written:
            sys.stdout.write(f"wrote {path}\n")
        sys.stdout.write(f"and {', '.join(f'latest.{fmt}' for fmt in chosen)} in {out_dir}\n")
    if not quiet or failing:
        sys.stdout.write(summary_line(record, main_file) + "\n")
    if webhook and changes["counts"]["new_errors"]:
        problem = history.post_webhook(webhook, {"text": history.webhook_text(record, changes, main_file)})
        if problem:
            err.print(f"auditor: {escape(problem)}; the reports are written")
    if failing:
        raise typer.Exit(int(ExitCode.FINDINGS))


def _write(result, options, recorded, started, clock, chosen, out_dir, now, fail_on, statement_timeout, increment, money=None):
    """The record (with the changes since the previous run) and its files."""
    from auditor import __version__
    from auditor.report import history
    from auditor.audit.findings import iso
    from auditor.report.document import (
        Run,
        build_record,
        file_names,
        render_html,
        render_json,
        render_markdown,
        write_reports,
    )

    names = file_names(result.as_of, chosen)
    run = Run(
        id=recorded.run_id,
        started_at=started,
        duration_s=time.monotonic() - clock,
        options={
            "since": iso(options.since), "until": iso(options.until), "now": iso(options.now), "now_given": now is not None,
            "tolerance": options.tolerance, "window_slack": options.window_slack.total_seconds(),
            "settle": options.settle.total_seconds(), "fail_on": fail_on.value, "statement_timeout": statement_timeout,
            "timezone": options.timezone, "formats": list(chosen), "out": str(out_dir),
            "incremental": increment.requested, "lookback_s": increment.lookback.total_seconds(),
        },
        files=names,
        auditor_version=__version__,
        incremental=increment.record(),
    )
    scanned = result.as_record()["findings"]
    changes = history.compare(scanned, history.finding_ids(scanned), recorded.previous())
    record = build_record(result, run, changes, money)
    renderers = {"json": lambda: render_json(record), "md": lambda: render_markdown(result, record), "html": lambda: render_html(record)}
    written = write_reports(out_dir, names, {fmt: renderers[fmt]() for fmt in chosen})
    return record, names, written, changes


report_command = report


class HistoryFormat(str, Enum):
    table = "table"
    json = "json"


@handles_errors
def history(
    db: DbOption = None,
    history_db: HistoryDbOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many runs, newest first (0: all).")] = 20,
    output_format: Annotated[HistoryFormat, typer.Option("--format", help="Output format.")] = HistoryFormat.table,
) -> None:
    """List recorded report runs, newest first: findings, and how many are new, still open, resolved.

    Reads the history `auditor report` records (--history-db, else the report's database, else the
    embedded sample's history in the cache). A run that never finished shows as incomplete.

    Example:

        \b
        auditor history --db postgresql://auditor@db.internal:5432/litellm --limit 10
    """
    import json

    from rich.table import Table

    from auditor.report import history as core
    from auditor.report.render import clean

    runs = core.list_report_runs(core.history_target(history_db, db), limit or None)
    if output_format is HistoryFormat.json:
        sys.stdout.write(json.dumps(runs, indent=2) + "\n")
        return
    if not runs:
        out.print("no report runs recorded yet")
        return
    table = Table(header_style="bold")
    for column in ("run id", "started (UTC)", "as of (UTC)", "status", "read", "findings", "new", "still open", "resolved", "note"):
        table.add_column(column, overflow="fold")
    style = {"completed": "green", "failed": "bold red", "incomplete": "bold red"}
    for r in runs:
        sev = r["by_severity"] or {}
        found = "—" if r["findings"] is None else f"{r['findings']} ({sev.get('error', 0)} errors)"
        note = r["message"] or ("first recorded run" if r["status"] == "completed" and not r["previous_run"] else
                                (f"since {r['previous_run'][:8]}" if r["previous_run"] else ""))
        number = lambda n: "—" if n is None else str(n)
        table.add_row(r["run_id"], (r["started_at"] or "")[:19].replace("T", " "), (r["as_of"] or "—")[:19].replace("T", " "),
                      f"[{style.get(r['status'], 'yellow')}]{r['status']}[/]", r["mode"] or "—", found, number(r["new"]),
                      number(r["still_open"]), number(r["resolved"]), clean(note))
    out.print(table)


history_command = history


def _scan(db, config, redis_url, since, until, now, tolerance, window_slack, settle, statement_timeout, timezone, *,
          progress: bool, redis_optional: bool = False, increment=None, litellm_version: str | None = None):
    """The scan exactly as `auditor scan` runs it, returning the result, its options and where the money went
    (spend.overview: one more grouped query over the ledger, daily in the scan's zone)."""
    from contextlib import nullcontext

    from auditor.cli.common import progress as progress_bar, scan_session
    from auditor.audit.spend_ledger import ledger_lines
    from auditor.audit.spend import overview

    with scan_session(
        db, config, redis_url, now=now, since=since, until=until, tolerance=tolerance, window_slack=window_slack,
        settle=settle, timezone=timezone, statement_timeout=statement_timeout, redis_optional=redis_optional,
        litellm_version=litellm_version,
    ) as session, (progress_bar() if progress else nullcontext()) as advance:
        result = session.scan(advance, increment=increment)
        options = session.options
        money = overview(*ledger_lines(session, "key", "day"), zone_name=options.timezone or "UTC", since=options.since,
                         until=options.until)
        return result, options, money
