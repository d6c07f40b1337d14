"""One report run (`auditor report`, `auditor.report(...)`): lock, record the run in auditor's history, scan (resuming
from the previous run's checkpoint when asked), write the files, compare with the previous run, post the webhook.

No Typer or Rich: the CLI parses, calls `run_report`, and renders the ReportRun it gets back.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from auditor.audit.findings import ScanResult
from auditor.clock import Instant, instant_text
from auditor.session import Warn, log_warning

PAUSE_HOOK_ENV = "AUDITOR_TEST_PAUSE_AFTER_LOCK"  # seconds to pause once the run holds the lock (lock tests)


@dataclass(frozen=True)
class ReportRun:
    """What a report run produced: the scan, the report document, the comparison with the previous run, the files."""

    run_id: str
    result: ScanResult
    record: dict[str, Any]  # the report's JSON (report.schema.json)
    changes: dict[str, Any]  # history.compare: finding ids, previous run, counts (new, still open, resolved, new errors)
    out_dir: Path
    formats: tuple[str, ...]
    files: dict[str, str]  # format -> the dated file's name in out_dir
    written: list[Path]  # the dated files written (latest.<format> besides them)
    notices: list[str] = field(default_factory=list)  # why the run read everything although asked to resume, etc.
    webhook_problem: str | None = None  # the webhook could not be posted (the reports are written)

    @property
    def main_file(self) -> str:
        """The file a reader should open: the HTML page when written, else the first format."""
        return str(self.out_dir / self.files["html" if "html" in self.files else self.formats[0]])

    def summary(self) -> str:
        """One line for cron mail: what was found and where the report is."""
        from auditor.reports.document import summary_line

        return summary_line(self.record, self.main_file)


def parse_lookback(raw: str | timedelta) -> timedelta:
    """--lookback: a fixed duration in LiteLLM's grammar (1h, 30m, 0s), as a timedelta."""
    from auditor.errors import AuditorError, InputError
    from auditor.litellm.durations import parse_duration

    if isinstance(raw, timedelta):
        return raw
    try:
        seconds = parse_duration(raw).seconds
    except AuditorError:
        seconds = None
    if seconds is None:
        raise InputError(f"--lookback takes a duration such as 1h, 30m or 0s (got {raw!r})")
    return timedelta(seconds=seconds)


def parse_formats(raw: str | Sequence[str]) -> tuple[str, ...]:
    """--formats: a comma-separated list (or a sequence) of json, md, html; in a stable order, each once."""
    from auditor.errors import InputError
    from auditor.reports.document import FORMATS

    raw = raw if isinstance(raw, str) else ",".join(raw)
    aliases = {"markdown": "md", "htm": "html"}
    chosen = [aliases.get(part.strip().lower(), part.strip().lower()) for part in raw.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in FORMATS]
    if unknown or not chosen:
        raise InputError(f"--formats takes a comma-separated list of {', '.join(FORMATS)} (got {raw!r})")
    return tuple(f for f in FORMATS if f in chosen)


FAIL_ON = ("error", "warning", "never")


def _pause_hook() -> None:
    seconds = os.environ.get(PAUSE_HOOK_ENV)
    if seconds:
        sys.stderr.write("auditor: test hook: paused after taking the run lock\n")
        sys.stderr.flush()
        time.sleep(float(seconds))


def report(
    db: str | None = None,
    *,
    config: str | None = None,
    redis: str | None = None,
    out: str | os.PathLike,
    formats: str | Sequence[str] = "json,md,html",
    incremental: bool = False,
    lookback: str | timedelta = "1h",
    history_db: str | None = None,
    webhook: str | None = None,
    now: Instant | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    tolerance: float = 0.0001,
    window_slack: float = 1.0,
    settle: float = 120.0,
    fail_on: str = "error",
    statement_timeout: float | None = None,
    timezone: str | None = None,
    redis_optional: bool = False,
    litellm_version: str | None = None,
    progress: Callable[[int], None] | None = None,
    warn: Warn = log_warning,
) -> ReportRun:
    """`auditor report` (`auditor.report`): a scan written to `out` as dated JSON, Markdown and HTML files (and
    latest.*), recorded in auditor's history (`history_db`, default the report's database) and compared with the
    previous run; with `incremental`, resumed from that run's checkpoint. `webhook` is posted when new errors
    appear. `fail_on` is recorded in the report; the caller decides what failing means (the CLI exits 1 when
    `result.worst()` reaches it). Bad input is rejected (exit 2) before anything is locked or recorded, an
    unwritable `out` (exit 3) before the database is read; one run at a time (a second one raises
    history.Locked, exit 3)."""
    from auditor.audit import checkpoint
    from auditor.clock import parse_instant, utc_now
    from auditor.errors import InputError
    from auditor.ledger.db import database_from
    from auditor.reports import history
    from auditor.reports.document import prepare_out_dir
    from auditor.session import check_amounts, require_litellm

    now, since, until = instant_text(now), instant_text(since), instant_text(until)
    chosen = parse_formats(formats)
    lookback_delta = parse_lookback(lookback)
    if fail_on not in FAIL_ON:
        raise InputError(f"--fail-on {fail_on!r}: use one of {', '.join(FAIL_ON)}")
    check_amounts(
        {"--tolerance": tolerance, "--window-slack": window_slack, "--settle": settle}, seconds=("--window-slack", "--settle")
    )
    started, clock = utc_now(), time.monotonic()
    for value, option in ((now, "--now"), (since, "--since"), (until, "--until")):
        if value:
            parse_instant(value, started, option)  # bad input is exit 2 before anything is locked or recorded
    if webhook:
        history.check_webhook(webhook)
    out_dir = prepare_out_dir(out)  # an unwritable --out fails (exit 3) before the database is read
    if (target := database_from(db)) is not None:
        require_litellm(target)  # before the history: a wrong --db is not a missing `db upgrade`
    history_target = history.history_target(history_db, db)
    source = history.source_name(db)
    with history.report_run(
        history_target, source, {"out": str(out_dir), "formats": list(chosen), "now": now}, started, utc_now
    ) as recorded:
        _pause_hook()
        increment = checkpoint.Increment(
            lookback=lookback_delta, requested=incremental, previous=recorded.checkpoint() if incremental else None
        )
        result, options, money = _scan(
            db,
            config,
            redis,
            since,
            until,
            now,
            tolerance,
            window_slack,
            settle,
            statement_timeout,
            timezone,
            progress=progress,
            redis_optional=redis_optional,
            increment=increment,
            litellm_version=litellm_version,
            warn=warn,
        )
        notices = [
            why
            for why in (increment.fallback and f"full scan instead of incremental: {increment.fallback}", increment.not_stored)
            if why
        ]
        record, names, written, changes = _write(
            result, options, recorded, started, clock, chosen, out_dir, now, fail_on, statement_timeout, increment, money
        )
        recorded.complete(record, changes, utc_now(), increment)

    run = ReportRun(recorded.run_id, result, record, changes, out_dir, chosen, names, written, notices)
    if webhook and changes["counts"]["new_errors"]:
        problem = history.post_webhook(webhook, {"text": history.webhook_text(record, changes, run.main_file)})
        if problem:
            run = ReportRun(recorded.run_id, result, record, changes, out_dir, chosen, names, written, notices, problem)
    return run


def _scan(
    db,
    config,
    redis_url,
    since,
    until,
    now,
    tolerance,
    window_slack,
    settle,
    statement_timeout,
    timezone,
    *,
    progress,
    redis_optional: bool = False,
    increment=None,
    litellm_version: str | None = None,
    warn: Warn = log_warning,
):
    """The scan exactly as `auditor scan` runs it, returning the result, its options and where the money went
    (spend.overview, from the spend cells the scan read or resumed from the checkpoint)."""
    from auditor.audit.spend_ledger import money_overview
    from auditor.session import scan_session

    with scan_session(
        db,
        config,
        redis_url,
        now=now,
        since=since,
        until=until,
        tolerance=tolerance,
        window_slack=window_slack,
        settle=settle,
        timezone=timezone,
        statement_timeout=statement_timeout,
        redis_optional=redis_optional,
        litellm_version=litellm_version,
        warn=warn,
    ) as session:
        result = session.scan(progress, increment=increment)
        return result, session.options, money_overview(session, increment.money)


def _write(
    result,
    options,
    recorded,
    started: datetime,
    clock: float,
    chosen,
    out_dir,
    now,
    fail_on: str,
    statement_timeout,
    increment,
    money=None,
):
    """The record (with the changes since the previous run) and its files."""
    from auditor import __version__
    from auditor.audit.findings import iso
    from auditor.reports import history
    from auditor.reports.document import (
        Run,
        build_record,
        file_names,
        render_html,
        render_markdown,
        write_reports,
    )
    from auditor.reports.render import render_json

    names = file_names(result.as_of, chosen)
    run = Run(
        id=recorded.run_id,
        started_at=started,
        duration_s=time.monotonic() - clock,
        options={
            "since": iso(options.since),
            "until": iso(options.until),
            "now": iso(options.now),
            "now_given": now is not None,
            "tolerance": options.tolerance,
            "window_slack": options.window_slack.total_seconds(),
            "settle": options.settle.total_seconds(),
            "fail_on": fail_on,
            "statement_timeout": statement_timeout,
            "timezone": options.timezone,
            "formats": list(chosen),
            "out": str(out_dir),
            "incremental": increment.requested,
            "lookback_s": increment.lookback.total_seconds(),
        },
        files=names,
        auditor_version=__version__,
        incremental=increment.record(),
    )
    record = build_record(result, run, None, money)
    scanned = record["findings"]
    record["changes"] = changes = history.compare(scanned, history.finding_ids(scanned), recorded.previous())
    renderers = {
        "json": lambda: render_json(record),
        "md": lambda: render_markdown(record),
        "html": lambda: render_html(record),
    }
    written = write_reports(out_dir, names, {fmt: renderers[fmt]() for fmt in chosen})
    return record, names, written, changes
