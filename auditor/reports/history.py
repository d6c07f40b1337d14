"""Report run history: every `auditor report` run recorded in auditor's own tables, what changed since the
previous run, one run at a time, and the webhook that says so.

Where: the history database (`--history-db`, default the report's database; for the embedded sample a SQLite
file in the user's cache beside the sample). Only auditor's own tables are written there (schema `auditor` on
PostgreSQL, `auditor_*` tables on SQLite, migration 0002): a run is a row of `runs` (kind `report`) and its
findings rows of `report_findings`. LiteLLM's tables are never written.

Finding ids. A finding's id is the first 16 hex digits of the SHA-256 of its identifying fields, joined by
U+001F in this order (absent fields as empty strings, times as the report prints them):

    kind, scope, entity_id, budget_model, window_start, counter_source, counter_key, model, model_group

Nothing that changes while a finding stays the same problem (amounts, severity, aliases, messages) is part
of it, so an over-budget window keeps its id from run to run while its spend grows, and a drifting counter
keeps its id while the drift changes. Two findings of one run with the same fields (none are known) get
`-2`, `-3`… appended in report order.

Checkpoints. A completed run also stores the scan's state at its cut (`report_checkpoints`, migration 0003; see
auditor/audit/checkpoint.py), and `report --incremental` resumes from the newest one of the same database. Only that newest
one is kept: storing a run's checkpoint deletes the database's older ones in the same transaction as its findings.

One run at a time. PostgreSQL: `pg_try_advisory_lock(LOCK_KEY)` on a connection to the history database held
for the whole run. SQLite: `flock` on `<history file>.lock` beside the history database. The holder records
itself as a `running` row of `runs` right after it takes the lock, so a second run can name it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from auditor.audit import checkpoint
from auditor.audit.findings import ERROR, iso
from auditor.errors import InputError, UnavailableError
from auditor.ledger.db import (
    EMBEDDED,
    REPORT,
    DatabaseTarget,
    database_from,
    describe_db_error,
    engine_for,
    parse_database_url,
)
from auditor.repair import journal

KIND = "report"
ID_FIELDS = (
    "kind",
    "scope",
    "entity_id",
    "budget_model",
    "window_start",
    "counter_source",
    "counter_key",
    "model",
    "model_group",
)
LOCK_KEY = 0x61756469746F7231  # "auditor1": pg_try_advisory_lock's one bigint key for report runs
SAMPLE_HISTORY = "report-history.sqlite"  # not sample-*.sqlite: the sample cache prunes those
WEBHOOK_TIMEOUT_S = 5.0


# --------------------------------------------------------------------------------------------------
# Finding ids and changes (pure)


def finding_id(finding: dict) -> str:
    parts = [str(finding.get(name) or "") for name in ID_FIELDS]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def finding_ids(findings: list[dict]) -> list[str]:
    """The ids of a run's findings (record dicts), in order; a repeated id gets -2, -3…"""
    seen: dict[str, int] = {}
    ids = []
    for f in findings:
        base = finding_id(f)
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


def brief(finding: dict) -> dict:
    """What the report shows of a finding that is gone (the current record no longer holds it)."""
    keys = (
        "kind",
        "severity",
        "scope",
        "entity_id",
        "entity_alias",
        "budget_model",
        "model",
        "counter_key",
        "window_start",
        "message",
    )
    return {k: finding.get(k) for k in keys}


def compare(findings: list[dict], ids: list[str], previous: Previous | None) -> dict:
    """The report's `changes`: ids new since the previous run, still open, resolved (gone)."""
    before = previous.findings if previous else {}
    now = set(ids)
    new = [i for i in ids if i not in before]
    still_open = [i for i in ids if i in before]
    resolved = [i for i in before if i not in now]
    severity = {i: f["severity"] for i, f in zip(ids, findings)}
    return {
        "previous_run": previous.run_id if previous else None,
        "previous_as_of": previous.as_of if previous else None,
        "new": new,
        "still_open": still_open,
        "resolved": resolved,
        "counts": {
            "new": len(new),
            "still_open": len(still_open),
            "resolved": len(resolved),
            "new_errors": sum(1 for i in new if severity[i] == ERROR),
        },
        "finding_ids": list(ids),
        "resolved_findings": [{"id": i, **brief(before[i])} for i in resolved],
    }


def describe(finding: dict) -> str:
    """One short line about a finding: severity, kind, whose, which budget/model, which window."""
    who = finding.get("entity_alias") or _short(finding.get("entity_id"))
    what = finding.get("budget_model") or finding.get("model") or finding.get("counter_key") or ""
    when = (finding.get("window_start") or "")[:16].replace("T", " ")
    parts = [finding["severity"], finding["kind"].replace("_", " ")]
    if finding.get("scope"):
        parts.append(f"{finding['scope'].replace('_', ' ')} {who}")
    if what:
        parts.append(what)
    if when:
        parts.append(f"window {when}")
    return " ".join(p for p in parts if p)


def _short(value: str | None, n: int = 12) -> str:
    if not value:
        return ""
    return value if len(value) <= n + 2 else value[:n] + "…"


# --------------------------------------------------------------------------------------------------
# Where the history lives


def history_target(history_db: str | None, report_db: str | None, cache: Path | None = None) -> DatabaseTarget:
    """--history-db, else the report's database (--db or the environment), else a SQLite file beside the
    embedded sample in the user's cache."""
    if history_db:
        return DatabaseTarget(parse_database_url(history_db), "--history-db")
    target = database_from(report_db)
    if target is not None:
        return target
    if cache is None:
        from auditor.sample import cache_dir

        cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    return DatabaseTarget(make_url(f"sqlite:///{cache / SAMPLE_HISTORY}"), EMBEDDED)


def source_name(report_db: str | None) -> str:
    """Which database a run audited, as history matches runs to their previous one."""
    target = database_from(report_db)
    return target.masked if target is not None else EMBEDDED


def _failure(target: DatabaseTarget, error: DBAPIError) -> UnavailableError:
    detail = describe_db_error(target, error)
    hint = ": give --history-db URL, a database auditor may write its own tables to" if "permission denied" in detail else ""
    if isinstance(error, OperationalError) and "connect" in detail.lower():
        return UnavailableError(f"cannot connect to the history database {target.masked}: {detail}")
    return UnavailableError(f"run history in {target.masked} failed: {detail}{hint}")


@contextmanager
def _guard(target: DatabaseTarget) -> Iterator[None]:
    try:
        yield
    except DBAPIError as error:
        raise _failure(target, error) from None


# --------------------------------------------------------------------------------------------------
# The lock


class Locked(UnavailableError):
    """Another report run holds the lock (exit 3)."""


@dataclass
class _Lock:
    release: callable


def _lock(target: DatabaseTarget, engine: Engine) -> _Lock | None:
    """Take the run lock without waiting; None when another run holds it."""
    if target.dialect == "postgresql":
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None

        def release() -> None:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
            except DBAPIError:
                pass  # a lost connection released it already
            finally:
                conn.close()

        return _Lock(release)
    database = target.url.database
    if not database or database == ":memory:":
        raise InputError("run history needs a database file: give --history-db sqlite:///PATH or a PostgreSQL URL")
    path = f"{database}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise UnavailableError(f"cannot create the run lock {path}: {err.strerror or err}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None

    def release() -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return _Lock(release)


def _holder(engine: Engine) -> str:
    """The running report run that holds the lock, as one line."""
    try:
        with engine.connect() as conn:
            if journal.current_revision(conn) is None:
                return "another auditor report run holds the lock (it has not recorded itself yet)"
            t = journal.tables(conn.dialect.name)
            row = conn.execute(
                select(t.runs)
                .where(t.runs.c.kind == KIND, t.runs.c.status == journal.RUNNING)
                .order_by(t.runs.c.started_at.desc())
                .limit(1)
            ).first()
    except DBAPIError:
        row = None
    if row is None:
        return "another auditor report run holds the lock (it has not recorded itself yet)"
    who = row.options or {}
    where = f" (pid {who['pid']} on {who['host']})" if who.get("pid") and who.get("host") else ""
    return f"another auditor report run holds the lock: run {row.id} started {iso(row.started_at)}{where}"


# --------------------------------------------------------------------------------------------------
# A run


@dataclass(frozen=True)
class Previous:
    run_id: str
    as_of: str | None
    findings: dict[str, dict]  # id -> the finding as recorded, in report order


@dataclass
class ReportRun:
    """The running run: its id, where it is recorded, and how to finish it."""

    run_id: str
    target: DatabaseTarget
    engine: Engine
    source: str
    finished: bool = False
    upgraded: tuple[str | None, str | None] | None = field(default=None)

    def previous(self) -> Previous | None:
        """The newest completed report run of the same database before this one."""
        with _guard(self.target), self.engine.connect() as conn:
            t = journal.tables(conn.dialect.name)
            rows = conn.execute(
                select(t.runs)
                .where(t.runs.c.kind == KIND, t.runs.c.status == journal.COMPLETED, t.runs.c.id != self.run_id)
                .order_by(t.runs.c.started_at.desc(), t.runs.c.id)
            )
            found = next((r for r in rows if (r.options or {}).get("database") == self.source), None)
            if found is None:
                return None
            f = t.report_findings
            stored = conn.execute(select(f.c.finding_id, f.c.finding).where(f.c.run_id == found.id))
            by_id = {r.finding_id: r.finding for r in stored}
        order = (found.summary or {}).get("finding_ids") or sorted(by_id)
        return Previous(found.id, (found.summary or {}).get("as_of"), {i: by_id[i] for i in order if i in by_id})

    def checkpoint(self) -> checkpoint.Stored | None:
        """The newest checkpoint stored for this database (only completed runs store one)."""
        with _guard(self.target), self.engine.connect() as conn:
            c = journal.tables(conn.dialect.name).report_checkpoints
            row = conn.execute(select(c).where(c.c.source == self.source).order_by(c.c.created_at.desc()).limit(1)).first()
        if row is None:
            return None
        return checkpoint.Stored(row.run_id, row.watermark, row.cut, dict(row.fingerprint or {}), row.format, bytes(row.state))

    def complete(self, record: dict, changes: dict, finished_at: datetime, increment: checkpoint.Increment | None = None) -> None:
        """The findings, the run's summary and its checkpoint, in one transaction."""
        ids = changes["finding_ids"]
        summary = {
            "as_of": record["as_of"],
            "rows": record["rows"],
            "totals": record["totals"],
            "findings": len(ids),
            "previous_run": changes["previous_run"],
            "changes": changes["counts"],
            "finding_ids": ids,
            "files": record["run"]["files"],
            "out": record["run"]["options"].get("out"),
            "incremental": record["run"].get("incremental"),
        }
        with _guard(self.target), self.engine.begin() as conn:
            tables = journal.tables(conn.dialect.name)
            f = tables.report_findings
            if increment is not None and increment.state is not None:
                c = tables.report_checkpoints
                conn.execute(delete(c).where(c.c.source == self.source))
                conn.execute(
                    c.insert().values(
                        run_id=self.run_id,
                        source=self.source,
                        created_at=finished_at,
                        watermark=increment.watermark,
                        cut=increment.cut,
                        fingerprint=increment.fingerprint,
                        format=checkpoint.FORMAT,
                        state=checkpoint.encode(increment.state),
                    )
                )
            if ids:
                conn.execute(
                    f.insert(),
                    [
                        {
                            "run_id": self.run_id,
                            "finding_id": i,
                            "kind": x["kind"],
                            "severity": x["severity"],
                            "scope": x["scope"],
                            "entity_id": x["entity_id"],
                            "budget_model": x["budget_model"],
                            "window_start": _naive(x["window_start"]),
                            "finding": x,
                        }
                        for i, x in zip(ids, record["findings"])
                    ],
                )
            journal.finish_run(conn, self.run_id, journal.COMPLETED, finished_at, summary)
        self.finished = True

    def fail(self, message: str, finished_at: datetime) -> None:
        try:
            with self.engine.begin() as conn:
                journal.finish_run(conn, self.run_id, journal.FAILED, finished_at, {}, message[:2000])
        except DBAPIError:
            pass  # the run stays `running` (history shows it incomplete); the original error is what matters
        self.finished = True


def _naive(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.rstrip("Z")) if value else None


@contextmanager
def report_run(target: DatabaseTarget, source: str, options: dict, started_at: datetime, clock) -> Iterator[ReportRun]:
    """Lock, make sure auditor's tables are there, record the run as running; on the way out mark it failed
    unless completed, and release the lock.

    SQLite: the tables are created or upgraded here. PostgreSQL: missing or old tables are a usage error
    (exit 2) saying to run `auditor db upgrade`: DDL on a production database is the operator's call.
    """
    engine = engine_for(target, REPORT)
    lock = None
    try:
        with _guard(target):
            lock = _lock(target, engine)
            if lock is None:
                raise Locked(_holder(engine))
            upgraded = None
            with engine.begin() as conn:
                found = journal.current_revision(conn)
                if found != journal.HEAD:
                    if target.dialect != "sqlite":
                        state = "missing" if found is None else f"at revision {found}, need {journal.HEAD}"
                        raise InputError(
                            f"auditor's tables for run history are {state} in {target.masked}: "
                            f"run `auditor db upgrade --db URL` once, or give --history-db"
                        )
                    upgraded = journal.upgrade(conn)
            with engine.begin() as conn:
                run_id = journal.start_run(
                    conn, KIND, {**options, "database": source, "pid": os.getpid(), "host": socket.gethostname()}, started_at
                )
        run = ReportRun(run_id, target, engine, source, upgraded=upgraded)
        try:
            yield run
        except BaseException as error:
            if not run.finished:
                run.fail(str(error) or type(error).__name__, clock())
            raise
        if not run.finished:
            run.fail("ended without recording its findings", clock())
    finally:
        if lock is not None:
            lock.release()
        engine.dispose()


# --------------------------------------------------------------------------------------------------
# Reading the history (auditor history)


def list_report_runs(target: DatabaseTarget, limit: int | None) -> list[dict]:
    engine = engine_for(target, REPORT)
    try:
        with _guard(target), engine.connect() as conn:
            found = journal.current_revision(conn)
            if found != journal.HEAD:
                state = "missing" if found is None else f"at revision {found}, need {journal.HEAD}"
                raise UnavailableError(
                    f"auditor's run history tables are {state} in {target.masked}: "
                    "no report has recorded its run there yet (or run `auditor db upgrade`)"
                )
            t = journal.tables(conn.dialect.name)
            query = select(t.runs).where(t.runs.c.kind == KIND).order_by(t.runs.c.started_at.desc(), t.runs.c.id)
            if limit:
                query = query.limit(limit)
            runs = [journal._run(r) for r in conn.execute(query)]
    finally:
        engine.dispose()
    listed = []
    for r in runs:
        s = r.summary or {}
        counts = s.get("changes") or {}
        listed.append(
            {
                "run_id": r.id,
                "status": r.state,
                "started_at": iso(r.started_at),
                "finished_at": iso(r.finished_at),
                "as_of": s.get("as_of"),
                "database": r.options.get("database"),
                "findings": s.get("findings"),
                "by_severity": (s.get("totals") or {}).get("findings_by_severity"),
                "previous_run": s.get("previous_run"),
                "mode": (s.get("incremental") or {}).get("mode"),
                "new": counts.get("new"),
                "still_open": counts.get("still_open"),
                "resolved": counts.get("resolved"),
                "new_errors": counts.get("new_errors"),
                "out": s.get("out"),
                "message": r.message,
            }
        )
    return listed


# --------------------------------------------------------------------------------------------------
# The webhook


def check_webhook(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("--webhook takes an http:// or https:// URL")
    return url


def webhook_host(url: str) -> str:
    """The URL without its path: Slack-style webhook URLs hold their secret in the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def webhook_text(record: dict, changes: dict, report_path: str) -> str:
    """Slack-compatible text: how many new errors, the first few, where the report is."""
    ids = changes["finding_ids"]
    new = set(changes["new"])
    fresh = [f for i, f in zip(ids, record["findings"]) if i in new and f["severity"] == ERROR]
    errors = record["totals"]["findings_by_severity"].get(ERROR, 0)
    since = f"since run {changes['previous_run'][:8]}" if changes["previous_run"] else "(first recorded run)"
    lines = [
        (
            f"auditor: {len(fresh)} new error finding{'s' if len(fresh) != 1 else ''} {since}; "
            f"{errors} error{'s' if errors != 1 else ''} open, ${record['totals']['money_leaked']:,.2f} leaked past budgets"
        )
    ]
    lines += [f"• {slack_text(describe(f))}" for f in fresh[:5]]
    if len(fresh) > 5:
        lines.append(f"• … and {len(fresh) - 5} more")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def slack_text(value: str) -> str:
    """Database text in a Slack message: inert. Slack reads `<!channel>`, `<url|label>` and `&` entities as
    markup (its escaping rules name exactly &, < and >), and control characters have no place in one line."""
    from auditor.reports.render import plain

    return plain(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_webhook(
    url: str, payload: dict, *, timeout: float = WEBHOOK_TIMEOUT_S, retries: int = 1, retry_delay: float = 1.0
) -> str | None:
    """POST the JSON payload; one retry. None when delivered, else why not (one line, URL path hidden)."""
    body = json.dumps(payload).encode("utf-8")
    why = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(retry_delay)
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "auditor"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return None
        except urllib.error.HTTPError as error:
            why = f"HTTP {error.code}"
        except urllib.error.URLError as error:
            reason = error.reason
            why = "timed out" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else str(reason)
        except (TimeoutError, OSError) as error:
            why = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
    tries = retries + 1
    return f"webhook POST to {webhook_host(url)} failed after {tries} attempt{'s' if tries != 1 else ''}: {why}"
