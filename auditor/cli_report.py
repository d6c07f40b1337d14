"""`auditor report`: a scan written to a directory as dated JSON, Markdown and HTML files, for cron.

Registered by auditor/cli.py with `app.command("report")(report_command)`. The shared options, one-line
errors and database/config resolution come from auditor/cli_common.py; the scan is sequenced exactly as
`auditor scan` sequences it (see `_scan`).
"""

from __future__ import annotations

import sys
import time
import uuid
from enum import Enum
from typing import Annotated, Optional

import typer

from auditor.cli_common import ConfigOption, DbOption, RedisOption, handles_errors, resolve_config, resolve_database
from auditor.exitcodes import ExitCode


class FailOn(str, Enum):  # the same values as scan's (auditor/cli.py), which cli_common does not hold yet
    error = "error"
    warning = "warning"
    never = "never"


def parse_formats(raw: str) -> tuple[str, ...]:
    from auditor.errors import InputError
    from auditor.report import FORMATS

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
    since: Annotated[Optional[str], typer.Option(help='Only spend logs with "startTime" at or after this (ISO 8601, or an age like 30d).', show_default=False)] = None,
    until: Annotated[Optional[str], typer.Option(help='Only spend logs with "startTime" before this.', show_default=False)] = None,
    now: Annotated[Optional[str], typer.Option(help="Judge the scan at this instant (default: the current time); also the files' timestamp.", show_default=False)] = None,
    tolerance: Annotated[float, typer.Option(help="Dollars a counter may differ from the ledger before it is drift.")] = 0.0001,
    window_slack: Annotated[float, typer.Option(help="Seconds before a counter's start that still count in its window.")] = 1.0,
    settle: Annotated[float, typer.Option(help="Seconds before --now whose charges counters may not hold yet.")] = 120.0,
    fail_on: Annotated[FailOn, typer.Option(help="Exit 1 (and, with --quiet, print the summary) when a finding of this severity or worse is found.")] = FailOn.error,
    statement_timeout: Annotated[Optional[float], typer.Option(help="PostgreSQL statement_timeout for the scan's queries, in seconds.", show_default=False)] = None,
    timezone: Annotated[Optional[str], typer.Option(help="Zone LiteLLM aligns budget resets to. Default: litellm_settings.timezone, else UTC.", show_default=False)] = None,
) -> None:
    """Run a scan and write it as dated report files: JSON, Markdown and a self-contained HTML page.

    Writes auditor-report-<UTC timestamp>.json/.md/.html in --out, each atomically (mode 0600),
    then latest.json/.md/.html with the same content. Exit codes as scan: 0 clean, 1 findings at or
    above --fail-on, 2 bad input, 3 could not run (or could not write --out). With --quiet it prints
    nothing unless it exits 1, so cron mails only when there is something to say.

    Example:

        auditor report --out /var/lib/auditor/reports --db postgresql://auditor@db.internal:5432/litellm --quiet
    """
    from auditor import __version__
    from auditor.clock import utc_now
    from auditor.errors import InputError
    from auditor.findings import SEVERITY_RANK, iso
    from auditor.report import (
        Run, build_record, file_names, prepare_out_dir, render_html, render_json, render_markdown, summary_line,
        write_reports,
    )

    chosen = parse_formats(formats)
    if tolerance < 0 or window_slack < 0 or settle < 0:
        raise InputError("--tolerance, --window-slack and --settle take values >= 0")
    started, clock = utc_now(), time.monotonic()
    out_dir = prepare_out_dir(out)  # an unwritable --out fails (exit 3) before the database is read
    result, options = _scan(db, config, redis_url, since, until, now, tolerance, window_slack, settle, statement_timeout,
                            timezone, progress=not quiet)
    names = file_names(result.as_of, chosen)
    run = Run(
        id=str(uuid.uuid4()),
        started_at=started,
        duration_s=time.monotonic() - clock,
        options={
            "since": iso(options.since), "until": iso(options.until), "now": iso(options.now), "now_given": now is not None,
            "tolerance": options.tolerance, "window_slack": options.window_slack.total_seconds(),
            "settle": options.settle.total_seconds(), "fail_on": fail_on.value, "statement_timeout": statement_timeout,
            "timezone": options.timezone, "formats": list(chosen), "out": str(out_dir),
        },
        files=names,
        auditor_version=__version__,
    )
    record = build_record(result, run)
    renderers = {"json": lambda: render_json(record), "md": lambda: render_markdown(result, record), "html": lambda: render_html(record)}
    written = write_reports(out_dir, names, {fmt: renderers[fmt]() for fmt in chosen})

    worst = result.worst()
    failing = fail_on is not FailOn.never and worst is not None and SEVERITY_RANK[worst] >= SEVERITY_RANK[fail_on.value]
    main_file = str(out_dir / names["html" if "html" in names else chosen[0]])
    if not quiet:
        for path in written:
            sys.stdout.write(f"wrote {path}\n")
        sys.stdout.write(f"and {', '.join(f'latest.{fmt}' for fmt in chosen)} in {out_dir}\n")
    if not quiet or failing:
        sys.stdout.write(summary_line(record, main_file) + "\n")
    if failing:
        raise typer.Exit(int(ExitCode.FINDINGS))


report_command = report


def _scan(db, config, redis_url, since, until, now, tolerance, window_slack, settle, statement_timeout, timezone, *,
          progress: bool):
    """The scan exactly as `auditor scan` runs it (auditor/cli.py), returning the result and its options."""
    from contextlib import nullcontext
    from dataclasses import replace
    from datetime import timedelta
    from pathlib import Path

    from auditor import queries
    from auditor.capabilities import inspect_database
    from auditor.cli import _progress  # imported here: cli.py imports this module
    from auditor.clock import parse_instant, utc_now
    from auditor.config import load_config, spend_log_retention
    from auditor.db import connect
    from auditor.errors import UnavailableError
    from auditor.periods import zone
    from auditor.redis_store import connect_redis, read_counters, redis_from
    from auditor.scan import ScanOptions, load_catalogue, run_scan

    judged_at = parse_instant(now, utc_now(), "--now") if now else utc_now()
    options = ScanOptions(
        now=judged_at,
        since=parse_instant(since, judged_at, "--since") if since else None,
        until=parse_instant(until, judged_at, "--until") if until else None,
        tolerance=tolerance,
        window_slack=timedelta(seconds=window_slack),
        settle=timedelta(seconds=settle),
    )
    target = resolve_database(db)
    config_path, _ = resolve_config(config, target)
    loaded = load_config(Path(config_path)) if config_path else None
    options = replace(
        options,
        timezone=timezone or (loaded.timezone if loaded else None),
        retention=spend_log_retention(loaded.data) if loaded else None,
    )
    zone(options.timezone)  # an unknown zone is a usage error before anything connects
    redis_target = redis_from(redis_url)
    client = connect_redis(redis_target) if redis_target is not None else None
    try:
        with connect(target, statement_timeout_s=statement_timeout) as conn:
            caps = inspect_database(conn)
            if not caps.has_spend_logs:
                raise UnavailableError(f"{target.masked} has no LiteLLM_SpendLogs table: point --db at LiteLLM's database")
            key_rows = queries.keys(conn, caps)
            catalogue = load_catalogue(conn, caps, loaded, key_rows)
            source = {
                "dialect": caps.dialect,
                "database": target.masked,
                "litellm_version": caps.describe_version(),
                "config": config_path,
                "redis": redis_target.masked if redis_target else None,
            }
            with _progress() if progress else nullcontext() as advance:
                result = run_scan(
                    conn, caps, catalogue, options,
                    redis_counters=(lambda: read_counters(client)) if client is not None else None,
                    progress=advance, source=source, key_rows=key_rows,
                )
    finally:
        if client is not None:
            client.close()
    return result, options
