"""`auditor report`: a scan written to a directory as dated JSON, Markdown and HTML files, for cron.

Registered by auditor/cli/main.py with `app.command("report")(report_command)`. Parsing, one call to
auditor.api.report (the run: lock, history, scan, files, webhook; auditor/reports/run.py) and rendering its
ReportRun. The shared options and one-line errors come from auditor/cli/common.py.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer

from auditor.cli.common import (
    ConfigOption,
    DbOption,
    FailOn,
    FailOnOption,
    LiteLLMVersionOption,
    NowOption,
    RedisOption,
    RedisOptionalOption,
    SettleOption,
    SinceOption,
    StatementTimeoutOption,
    TimezoneOption,
    ToleranceOption,
    UntilOption,
    WindowSlackOption,
    err,
    handles_errors,
    out,
    progress,
    say,
)
from auditor.exitcodes import ExitCode

HistoryDbOption = Annotated[
    str | None,
    typer.Option(
        "--history-db",
        help="Where auditor records report runs (its own tables only). Default: the report's database; for the embedded sample a SQLite file in the cache.",
        show_default=False,
    ),
]


@handles_errors
def report(
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Directory the reports are written to (created with mode 0700 when missing).", show_default=False
        ),
    ],
    formats: Annotated[
        str, typer.Option("--formats", help="Which files to write, comma-separated: json, md, html.")
    ] = "json,md,html",
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="Print nothing when nothing reaches --fail-on; else one summary line (cron mails only then)."
        ),
    ] = False,
    db: DbOption = None,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    redis_optional: RedisOptionalOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
    now: NowOption = None,
    tolerance: ToleranceOption = 0.0001,
    window_slack: WindowSlackOption = 1.0,
    settle: SettleOption = 120.0,
    fail_on: FailOnOption = FailOn.error,
    statement_timeout: StatementTimeoutOption = None,
    timezone: TimezoneOption = None,
    history_db: HistoryDbOption = None,
    webhook: Annotated[
        str | None,
        typer.Option(
            "--webhook",
            help='POST {"text": ...} (Slack-compatible) here when new error findings appear; 5 s timeout, one retry.',
            show_default=False,
        ),
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Resume from the previous run's checkpoint: read only spend logs that ended since its cut. Falls back to a full scan (and says why) when the checkpoint cannot be reused.",
        ),
    ] = False,
    lookback: Annotated[
        str,
        typer.Option(
            "--lookback",
            help='How late a spend log may be written and still be read: the checkpoint is cut this long before the newest "startTime".',
        ),
    ] = "1h",
    litellm_version: LiteLLMVersionOption = None,
) -> None:
    """Run a scan and write it as dated report files: JSON, Markdown and a self-contained HTML page.

    Writes auditor-report-<UTC timestamp>.json/.md/.html in --out (the timestamp of --now when given),
    each atomically (mode 0600), then latest.json/.md/.html with the same content. Each run is recorded in auditor's own tables
    (--history-db, default the report's database) and the report says which findings are new, still
    open or resolved since the previous run. Each run also stores a checkpoint of the scan's state;
    --incremental resumes from it and reads only the spend logs that ended since (docs/cron.md), with the
    same result as a full scan. One run at a time: a second one exits 3. Exit codes as
    scan: 0 clean, 1 findings at or above --fail-on, 2 bad input (or PostgreSQL history tables missing:
    run `auditor db upgrade`), 3 could not run (or could not write --out, or another run holds the lock).
    With --quiet it prints nothing unless it exits 1 (then the summary line), so cron mails only when there
    is something to say.

    Example:

        \b
        auditor report --out /var/lib/auditor/reports --db postgresql://auditor@db.internal:5432/litellm --incremental --quiet
    """
    from contextlib import nullcontext

    from rich.markup import escape

    from auditor import api

    with progress() if not quiet else nullcontext() as advance:
        run = api.report(
            db,
            config=config,
            redis=redis_url,
            out=out,
            formats=formats,
            incremental=incremental,
            lookback=lookback,
            history_db=history_db,
            webhook=webhook,
            now=now,
            since=since,
            until=until,
            tolerance=tolerance,
            window_slack=window_slack,
            settle=settle,
            fail_on=fail_on.value,
            statement_timeout=statement_timeout,
            timezone=timezone,
            redis_optional=redis_optional,
            litellm_version=litellm_version,
            progress=advance,
            warn=say,
        )
    failing = fail_on.fails(run.result.worst())
    if not quiet:
        for why in run.notices:
            err.print(f"auditor: {escape(why)}")
        for path in run.written:
            sys.stdout.write(f"wrote {path}\n")
        sys.stdout.write(f"and {', '.join(f'latest.{fmt}' for fmt in run.formats)} in {run.out_dir}\n")
    if not quiet or failing:
        sys.stdout.write(run.summary() + "\n")
    if run.webhook_problem:
        err.print(f"auditor: {escape(run.webhook_problem)}; the reports are written")
    if failing:
        raise typer.Exit(int(ExitCode.FINDINGS))


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

    from auditor.reports import history as core
    from auditor.reports.render import clean

    runs = core.list_report_runs(core.history_target(history_db, db), limit or None)
    if output_format is HistoryFormat.json:
        sys.stdout.write(json.dumps(runs, indent=2) + "\n")
        return
    if not runs:
        out.print("no report runs recorded yet")
        return
    table = Table(header_style="bold")
    for column in (
        "run id",
        "started (UTC)",
        "as of (UTC)",
        "status",
        "read",
        "findings",
        "new",
        "still open",
        "resolved",
        "note",
    ):
        table.add_column(column, overflow="fold")
    style = {"completed": "green", "failed": "bold red", "incomplete": "bold red"}

    def number(n: int | None) -> str:
        return "—" if n is None else str(n)

    for r in runs:
        sev = r["by_severity"] or {}
        found = "—" if r["findings"] is None else f"{r['findings']} ({sev.get('error', 0)} errors)"
        note = r["message"] or (
            "first recorded run"
            if r["status"] == "completed" and not r["previous_run"]
            else (f"since {r['previous_run'][:8]}" if r["previous_run"] else "")
        )
        table.add_row(
            r["run_id"],
            (r["started_at"] or "")[:19].replace("T", " "),
            (r["as_of"] or "—")[:19].replace("T", " "),
            f"[{style.get(r['status'], 'yellow')}]{r['status']}[/]",
            r["mode"] or "—",
            found,
            number(r["new"]),
            number(r["still_open"]),
            number(r["resolved"]),
            clean(note),
        )
    out.print(table)


history_command = history
