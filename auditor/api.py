"""auditor as a library: what the commands do, without the command line (no Typer, no Rich).

Each call opens the database, the proxy config and Redis the way the CLI does (auditor.session: --db, else
$AUDITOR_DATABASE_URL, else $DATABASE_URL, else the embedded sample; the config from the environment, or the
sample's own), reads in one read-only transaction and returns the result the CLI renders. Errors are
auditor.errors.AuditorError subclasses carrying the CLI's exit code. What the CLI says on stderr on the way (the
embedded sample, Redis given up) goes to `warn`, by default a warning on the `auditor` logger.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from auditor.audit.doctor import DoctorReport
from auditor.audit.findings import ScanResult
from auditor.audit.spend import BY, SpendTable
from auditor.errors import InputError
from auditor.report.run import ReportRun
from auditor.session import Warn, log_warning, scan_session

__all__ = ["ReportRun", "doctor", "report", "scan", "spend"]

Instant = str | datetime  # ISO 8601, an age such as "30d" (before `now`), or a datetime (naive means UTC)


def _instant(value: Instant | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def scan(db: str | None = None, *, config: str | None = None, redis: str | None = None, now: Instant | None = None,
         since: Instant | None = None, until: Instant | None = None, keys: tuple[str, ...] = (), model: str | None = None,
         tolerance: float = 0.0001, window_slack: float = 1.0, settle: float = 120.0, timezone: str | None = None,
         use_rollups: bool = False, statement_timeout: float | None = None, redis_optional: bool = False,
         litellm_version: str | None = None, progress: Callable[[int], None] | None = None,
         warn: Warn = log_warning) -> ScanResult:
    """`auditor scan`: the findings, the rows read and where enforcement reads, as one ScanResult (its
    .as_record() is the JSON `auditor scan --format json` prints). The options are the CLI's, by the same names."""
    with scan_session(db, config, redis, now=_instant(now), since=_instant(since), until=_instant(until), keys=keys,
                      model=model, tolerance=tolerance, window_slack=window_slack, settle=settle, timezone=timezone,
                      use_rollups=use_rollups, statement_timeout=statement_timeout, redis_optional=redis_optional,
                      litellm_version=litellm_version, warn=warn) as session:
        return session.scan(progress)


def spend(db: str | None = None, *, config: str | None = None, by: str = "key", period: str = "total",
          since: Instant | None = None, until: Instant | None = None, top: int | None = None, model: str | None = None,
          timezone: str | None = None, statement_timeout: float | None = None, warn: Warn = log_warning) -> SpendTable:
    """`auditor spend`: spend by `by` (key, team, user, end_user, team_member, tag) x model group x `period`
    (day, week, month, total). Reads the ledger alone, never Redis."""
    from auditor.audit import spend as lines
    from auditor.audit.spend_ledger import ledger_lines

    if by not in BY:
        raise InputError(f"--by {by!r}: use one of {', '.join(BY)}")
    if top is not None and top < 1:
        raise InputError(f"--top {top!r}: give a whole number >= 1")
    with scan_session(db, config, None, since=_instant(since), until=_instant(until), timezone=timezone,
                      statement_timeout=statement_timeout, with_redis=False, warn=warn) as session:
        found, ignored = ledger_lines(session, by, period)
    options = session.options
    return lines.table(found, ignored, by=by, period=period, zone_name=options.timezone or "UTC", top=top, model=model,
                       since=options.since, until=options.until)


def report(db: str | None = None, *, config: str | None = None, redis: str | None = None, out: str | os.PathLike,
           formats: str | Sequence[str] = ("json", "md", "html"), incremental: bool = False, lookback: str | timedelta = "1h",
           history_db: str | None = None, webhook: str | None = None, now: Instant | None = None,
           since: Instant | None = None, until: Instant | None = None, tolerance: float = 0.0001, window_slack: float = 1.0,
           settle: float = 120.0, fail_on: str = "error", statement_timeout: float | None = None,
           timezone: str | None = None, redis_optional: bool = False, litellm_version: str | None = None,
           progress: Callable[[int], None] | None = None, warn: Warn = log_warning) -> ReportRun:
    """`auditor report`: a scan written to `out` as dated JSON, Markdown and HTML files (and latest.*), recorded in
    auditor's history (`history_db`, default the report's database) and compared with the previous run; with
    `incremental`, resumed from that run's checkpoint. `webhook` is posted when new errors appear. One run at a
    time: another one holding the lock raises UnavailableError (exit 3). `fail_on` is recorded in the report; the
    caller decides what failing means (the CLI exits 1 when `result.worst()` reaches it)."""
    from auditor.report.run import run_report

    return run_report(db, config, redis, out=out, formats=formats, incremental=incremental, lookback=lookback,
                      history_db=history_db, webhook=webhook, now=_instant(now), since=_instant(since),
                      until=_instant(until), tolerance=tolerance, window_slack=window_slack, settle=settle, fail_on=fail_on,
                      statement_timeout=statement_timeout, timezone=timezone, redis_optional=redis_optional,
                      litellm_version=litellm_version, progress=progress, warn=warn)


def doctor(db: str | None = None, *, config: str | None = None, redis: str | None = None,
           litellm_version: str | None = None, warn: Warn = log_warning) -> DoctorReport:
    """`auditor doctor`: what auditor can see before a scan is trusted; `.can_scan` is False when a scan
    cannot run (the CLI's exit 3). An unreachable database raises UnavailableError."""
    from auditor.audit.doctor import FAIL, config_checks, database_checks, era_checks, redis_checks
    from auditor.errors import AuditorError
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import connect
    from auditor.ledger.redis_store import redis_from
    from auditor.litellm.eras import parse_version
    from auditor.session import resolve_config, resolve_database

    if litellm_version:
        parse_version(litellm_version)  # a usage error before anything connects
    target = resolve_database(db, warn)
    report = DoctorReport()
    report.add("database", "info", f"{target.masked} ({target.origin})")
    with connect(target) as conn:
        caps = inspect_database(conn)
        database_checks(report, conn, caps)
        config_path, origin = resolve_config(config, target)
        config_checks(report, config_path, origin)
        redis_keys = None
        try:
            redis_target = redis_from(redis)
        except AuditorError as error:
            report.add("Redis", FAIL, str(error))
        else:
            redis_keys = redis_checks(report, redis_target)
        if caps.has_spend_logs:
            era_checks(report, conn, caps, redis_keys, litellm_version)
    return report
