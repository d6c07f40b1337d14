"""auditor as a library: what the commands do, without the command line (no Typer, no Rich).

Each call opens the database, the proxy config and Redis the way the CLI does (auditor.session: --db, else
$AUDITOR_DATABASE_URL, else $DATABASE_URL, else the embedded sample; the config from the environment, or the
sample's own), reads in one read-only transaction and returns the result the CLI renders. Errors are
auditor.errors.AuditorError subclasses carrying the CLI's exit code. What the CLI says on stderr on the way (the
embedded sample, Redis given up) goes to `warn`, by default a warning on the `auditor` logger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from auditor import _API  # the calls auditor exports, named once
from auditor.audit.doctor import DoctorReport
from auditor.audit.findings import ScanResult, iso
from auditor.audit.spend import BY, SpendTable
from auditor.clock import Instant, instant_text
from auditor.errors import InputError
from auditor.reports.run import ReportRun
from auditor.reports.run import report as report  # auditor.report (a re-export)
from auditor.session import Warn, log_warning, scan_session

if TYPE_CHECKING:
    from auditor.audit.explain import Story
    from auditor.ledger.budget_holders import TripleTotals
    from auditor.ledger.db import DatabaseTarget
    from auditor.ledger.redis_store import RedisTarget
    from auditor.litellm.resolver import Consideration, Resolution
    from auditor.repair.apply import RunReport
    from auditor.repair.journal import Change, Run
    from auditor.repair.live import Ledger
    from auditor.repair.plan import Plan

__all__ = [*_API, "BackfillPlan", "JournaledRun", "KeyGoverning", "ReportRun", "Resolved", "UndoPlan"]


def scan(
    db: str | None = None,
    *,
    config: str | None = None,
    redis: str | None = None,
    now: Instant | None = None,
    since: Instant | None = None,
    until: Instant | None = None,
    keys: tuple[str, ...] = (),
    model: str | None = None,
    tolerance: float = 0.0001,
    window_slack: float = 1.0,
    settle: float = 120.0,
    timezone: str | None = None,
    use_rollups: bool = False,
    statement_timeout: float | None = None,
    redis_optional: bool = False,
    litellm_version: str | None = None,
    progress: Callable[[int], None] | None = None,
    warn: Warn = log_warning,
) -> ScanResult:
    """`auditor scan`: the findings, the rows read and where enforcement reads, as one ScanResult (its
    .as_record() is the JSON `auditor scan --format json` prints). The options are the CLI's, by the same names."""
    with scan_session(
        db,
        config,
        redis,
        now=instant_text(now),
        since=instant_text(since),
        until=instant_text(until),
        keys=keys,
        model=model,
        tolerance=tolerance,
        window_slack=window_slack,
        settle=settle,
        timezone=timezone,
        use_rollups=use_rollups,
        statement_timeout=statement_timeout,
        redis_optional=redis_optional,
        litellm_version=litellm_version,
        warn=warn,
    ) as session:
        return session.scan(progress)


def spend(
    db: str | None = None,
    *,
    config: str | None = None,
    by: str = "key",
    period: str = "total",
    since: Instant | None = None,
    until: Instant | None = None,
    top: int | None = None,
    model: str | None = None,
    timezone: str | None = None,
    statement_timeout: float | None = None,
    warn: Warn = log_warning,
) -> SpendTable:
    """`auditor spend`: spend by `by` (key, team, user, end_user, team_member, tag) x model group x `period`
    (day, week, month, total). Reads the ledger alone, never Redis."""
    from auditor.audit import spend as lines
    from auditor.audit.spend_ledger import ledger_lines

    if by not in BY:
        raise InputError(f"--by {by!r}: use one of {', '.join(BY)}")
    if top is not None and top < 1:
        raise InputError(f"--top {top!r}: give a whole number >= 1")
    with scan_session(
        db,
        config,
        None,
        since=instant_text(since),
        until=instant_text(until),
        timezone=timezone,
        statement_timeout=statement_timeout,
        with_redis=False,
        warn=warn,
    ) as session:
        found, ignored = ledger_lines(session, by, period)
    options = session.options
    return lines.table(
        found,
        ignored,
        by=by,
        period=period,
        zone_name=options.timezone or "UTC",
        top=top,
        model=model,
        since=options.since,
        until=options.until,
    )


def doctor(
    db: str | None = None,
    *,
    config: str | None = None,
    redis: str | None = None,
    litellm_version: str | None = None,
    warn: Warn = log_warning,
) -> DoctorReport:
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


@dataclass(frozen=True)
class BackfillPlan:
    """What `auditor backfill` plans (`.plan`; its .as_record() is the dry run's JSON) and everything
    apply_backfill needs to write it as planned: where, the ledger context a counter is recomputed with, and the
    options the journal records with the run."""

    plan: Plan
    result: ScanResult  # the scan the plan was made from
    ledger: Ledger
    database: DatabaseTarget
    redis: RedisTarget | None
    targets: tuple[str, ...]
    remove_miskeyed: bool
    keys: tuple[str, ...]
    model: str | None
    tolerance: float
    settle: float
    batch: int
    flush_lag: float  # given, or general_settings.proxy_batch_write_at (else 10) + 10
    increment_lag: float

    def run_options(self) -> dict:
        """The options the journal records with the run (`auditor backfill history --format json`)."""
        return {
            "targets": list(self.targets),
            "remove_miskeyed": self.remove_miskeyed,
            "layout": self.plan.layout.as_record(),
            "now": iso(self.plan.as_of),
            "keys": list(self.keys),
            "model": self.model,
            "tolerance": self.tolerance,
            "settle": self.settle,
            "batch": self.batch,
            "flush_lag": self.flush_lag,
            "increment_lag": self.increment_lag,
            "database": self.database.masked,
            "redis": self.redis.masked if self.redis else None,
        }


def plan_backfill(
    db: str | None = None,
    *,
    config: str | None = None,
    redis: str | None = None,
    keys: Iterable[str] = (),
    model: str | None = None,
    targets: Iterable[str] = ("counters",),
    remove_miskeyed: bool = False,
    litellm_version: str | None = None,
    now: Instant | None = None,
    tolerance: float = 0.0001,
    window_slack: float = 1.0,
    settle: float = 0.0,
    timezone: str | None = None,
    statement_timeout: float | None = None,
    batch: int = 0,
    flush_lag: float | None = None,
    increment_lag: float = 1.0,
    writable: bool = False,
    warn: Warn = log_warning,
) -> BackfillPlan:
    """`auditor backfill` without --apply: scan, read the values the repair would touch, and plan. Writes nothing.
    `writable=True` (what --apply does) refuses the embedded sample before anything is read; batch, flush_lag and
    increment_lag are how apply_backfill will write, checked here so a bad one is refused before the scan."""
    from dataclasses import replace
    from pathlib import Path

    from auditor.audit.scan import ScanOptions
    from auditor.clock import parse_instant, utc_now
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import connect
    from auditor.ledger.redis_store import connect_redis, redis_from
    from auditor.litellm.config import general_setting_on, litellm_setting, load_config, spend_log_retention
    from auditor.litellm.periods import zone
    from auditor.repair.layout import layout_for
    from auditor.repair.plan import TARGETS
    from auditor.repair.prepare import default_flush_lag, prepare
    from auditor.session import check_amounts, not_litellm, resolve_config, resolve_database, writable_target

    check_amounts(
        {
            "--tolerance": tolerance,
            "--window-slack": window_slack,
            "--settle": settle,
            "--batch": batch,
            "--flush-lag": flush_lag,
            "--increment-lag": increment_lag,
        },
        seconds=("--window-slack", "--settle", "--flush-lag", "--increment-lag"),
    )
    targets = tuple(targets)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise InputError(f"--target {unknown[0]!r}: use one of {', '.join(TARGETS)}")
    if litellm_version:
        layout_for(litellm_version, None)  # a bad or memory-only version: usage error before connecting
    wall_now = utc_now()
    judged_at = parse_instant(instant_text(now), wall_now, "--now") if now else wall_now
    options = ScanOptions(
        now=judged_at,
        keys=tuple(keys),
        model=model,
        tolerance=tolerance,
        window_slack=timedelta(seconds=window_slack),
        settle=timedelta(seconds=settle),
    )
    target = writable_target(db, "backfill --apply") if writable else resolve_database(db, warn)
    config_path, _ = resolve_config(config, target)
    loaded = load_config(Path(config_path)) if config_path else None
    options = replace(  # as `auditor scan` does: a trimmed ledger is never written as lifetime spend
        options,
        timezone=timezone or (loaded.timezone if loaded else None),
        retention=spend_log_retention(loaded.data) if loaded else None,
        default_end_user_budget=litellm_setting(loaded.data if loaded else None, "max_end_user_budget_id"),
        user_budget_on_team_keys=general_setting_on(loaded.data if loaded else None, "apply_user_budget_to_team_keys"),
    )
    zone(options.timezone)  # an unknown zone is a usage error before anything connects
    redis_target = redis_from(redis)
    client = connect_redis(redis_target) if redis_target is not None else None
    source = {
        "dialect": target.dialect,
        "database": target.masked,
        "config": config_path,
        "redis": redis_target.masked if redis_target else None,
    }
    try:
        with connect(target, statement_timeout_s=statement_timeout) as conn:
            caps = inspect_database(conn)
            if not caps.has_spend_logs:
                raise not_litellm(target)
            prepared = prepare(
                conn,
                caps,
                loaded,
                options,
                client,
                litellm_version=litellm_version,
                targets=targets,
                remove_miskeyed=remove_miskeyed,
                wall_now=wall_now,
                source=source,
            )
    finally:
        if client is not None:
            client.close()
    return BackfillPlan(
        prepared.plan,
        prepared.result,
        prepared.ledger,
        target,
        redis_target,
        targets,
        remove_miskeyed,
        options.keys,
        model,
        tolerance,
        settle,
        batch,
        default_flush_lag(loaded) if flush_lag is None else flush_lag,
        increment_lag,
    )


def apply_backfill(
    planned: BackfillPlan,
    *,
    stop: Callable[[], str | None] = lambda: None,
    hook: Callable[[str], None] = lambda what: None,
    started: Callable[[str], None] = lambda run_id: None,
    waiting: Callable[[float], None] = lambda seconds: None,
    clock: Callable[[], datetime] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """`auditor backfill --apply` once confirmed: journal a run and make the plan's writes (auditor.repair.apply).
    `stop` returning a signal's name stops the run at its next safe point (raises auditor.repair.apply.Interrupted);
    `started` is told the run id as soon as it is journaled, `waiting` the seconds of the flush wait; `report`,
    when given, is filled in place, so a caller that sees Interrupted knows the run id and what was written."""
    from auditor.clock import utc_now
    from auditor.ledger.db import BACKFILL, database_errors, engine_for
    from auditor.ledger.redis_store import connect_redis
    from auditor.repair.apply import RunReport, WriteEnv, apply

    engine = engine_for(planned.database, BACKFILL)
    client = None
    try:
        client = connect_redis(planned.redis) if planned.redis is not None else None
        env = WriteEnv(
            engine=engine,
            redis=client,
            ledger=planned.ledger,
            masked_db=planned.database.masked,
            clock=clock or utc_now,
            batch=planned.batch,
            hook=hook,
            tolerance=planned.tolerance,
            flush_lag=planned.flush_lag,
            increment_lag=planned.increment_lag,
            stop=stop,
            started=started,
            waiting=waiting,
        )
        with database_errors(planned.database):
            return apply(
                planned.plan, env, planned.run_options(), report if report is not None else RunReport("", "backfill", [])
            )
    finally:
        engine.dispose()
        if client is not None:
            client.close()


@dataclass(frozen=True)
class KeyGoverning:
    """Which of a key's model_max_budget entries LiteLLM considers for a name, in its order (`resolve --key`)."""

    label: str  # the key's alias, else its token (a raw API key by its hash) cut to 12 characters
    source: str  # where its model_max_budget came from
    entries: tuple[str, ...]  # every entry it has, usable or not
    considered: tuple[Consideration, ...]

    @property
    def governs(self) -> str | None:
        """The entry that governs: the first usable one considered."""
        return next((c.entry for c in self.considered if c.usable), None)


@dataclass(frozen=True)
class Resolved:
    """What `auditor resolve` answers: for a `name`, its resolution, LiteLLM's budget-entry candidates, the access
    groups serving it and (with a key) which entry governs; for all_models, every logged (model, model_group,
    model_id) with its resolution, unresolved and ambiguous first, then by spend. `notes` are the catalogue's."""

    name: str | None
    resolution: Resolution | None
    budget_candidates: tuple[str, ...]
    access_groups: tuple[str, ...]  # sorted
    key: KeyGoverning | None
    models: tuple[tuple[TripleTotals, Resolution], ...]
    notes: tuple[str, ...]

    @property
    def requested(self) -> str | None:
        """The name budgets are looked up for: the resolved group, else the name as given."""
        return None if self.resolution is None else self.resolution.group or self.name

    def as_record(self) -> dict | list:
        """`auditor resolve --json`: the list for all_models, else the name's record (the key is not in it)."""
        if self.resolution is None:
            return [
                {
                    "model": t.model,
                    "model_group": t.model_group,
                    "model_id": t.model_id,
                    "rows": t.requests,
                    "spend": t.spend,
                    **resolution_record(r),
                }
                for t, r in self.models
            ]
        return {
            "name": self.name,
            **resolution_record(self.resolution),
            "budget_candidates": list(self.budget_candidates),
            "access_groups": list(self.access_groups),
        }


def resolution_record(resolution: Resolution) -> dict:
    """A resolution as `auditor resolve --json` prints it."""
    return {
        "status": resolution.status,
        "group": resolution.group,
        "rule": resolution.rule,
        "decided_by": resolution.decided_by,
        "candidates": list(resolution.candidates),
    }


RESOLVED_ORDER = {"unresolved": 0, "ambiguous": 1, "resolved": 2}


def resolve(
    name: str | None = None,
    *,
    db: str | None = None,
    config: str | None = None,
    key: str | None = None,
    all_models: bool = False,
    warn: Warn = log_warning,
) -> Resolved:
    """`auditor resolve`: how a model name resolves to the model group budgets are written against, or with
    all_models every logged model's resolution. Give a name or all_models, not both (InputError)."""
    from auditor.audit.entities import key_budgets, select_keys
    from auditor.ledger import budget_holders, queries
    from auditor.litellm.resolver import Resolver, budget_candidates, explain_governing
    from auditor.redact import is_raw_key, key_hash
    from auditor.session import catalogue_session

    if (name is None) == (not all_models):
        raise InputError("give a model NAME, or --all for every logged model (not both)")
    with catalogue_session(db, config, warn) as opened:
        catalogue, key_rows = opened.catalogue, opened.key_rows
        triples = budget_holders.model_triples(opened.conn, opened.caps, queries.SpendFilter()) if all_models else []
    resolver = Resolver(catalogue)
    notes = tuple(catalogue.notes)
    if name is None:
        listed = sorted(
            ((t, resolver(t.model, t.model_group, t.model_id)) for t in triples),
            key=lambda tr: (RESOLVED_ORDER[tr[1].status], -tr[0].spend),
        )
        return Resolved(None, None, (), (), None, tuple(listed), notes)
    resolution = resolver(name, "", "")
    requested = resolution.group or name
    access_groups = catalogue.access_groups_of(requested)
    governing = None
    if key is not None:
        (token,) = (select_keys(key_rows, (key,)) or ())[:1]
        row = next(r for r in key_rows if r.token == token)
        budgets = key_budgets(row)
        entries = {**budgets.entries, **{p.name: p for p in budgets.problems}}
        shown = key_hash(token) if is_raw_key(token) else token
        governing = KeyGoverning(
            row.key_alias or shown[:12], budgets.source, tuple(entries), explain_governing(requested, entries, access_groups)
        )
    return Resolved(name, resolution, tuple(budget_candidates(requested)), tuple(sorted(access_groups)), governing, (), notes)


def explain(
    key: str | None = None,
    *,
    team: str | None = None,
    user: str | None = None,
    end_user: str | None = None,
    db: str | None = None,
    config: str | None = None,
    redis: str | None = None,
    since: Instant | None = None,
    now: Instant | None = None,
    timezone: str | None = None,
    warn: Warn = log_warning,
) -> Story:
    """`auditor explain`: one entity's story (name exactly one of key, team, user, end_user; by id or alias):
    each budget entry's windows against its limit, the request that crossed it, its counters, its scalar spend."""
    from auditor.audit.explain import explain as build_story
    from auditor.audit.explain import find_holder
    from auditor.ledger import budget_holders

    chosen = [(scope, value) for scope, value in (("key", key), ("team", team), ("user", user), ("end_user", end_user)) if value]
    if len(chosen) != 1:
        raise InputError("name one entity: a KEY (hash or alias), or --team, --user or --end-user")
    ((scope, wanted),) = chosen
    with scan_session(
        db, config, redis, now=instant_text(now), since=instant_text(since), timezone=timezone, warn=warn
    ) as session:
        holders = budget_holders.holders(session.conn, session.caps, session.key_rows, session.options.default_end_user_budget)
        return build_story(
            session.conn,
            session.caps,
            session.catalogue,
            session.options,
            session.key_rows,
            find_holder(holders, scope, wanted),
            redis_counters=session.redis_counters,
        )


@dataclass(frozen=True)
class JournaledRun:
    """One run in auditor's backfill journal (`auditor backfill history`), with its changes counted by state."""

    run: Run
    changes: dict[str, int]

    def as_record(self) -> dict:
        """The run as `auditor backfill history --format json` lists it."""
        r = self.run
        return {
            "run_id": r.id,
            "kind": r.kind,
            "status": r.state,
            "started_at": iso(r.started_at),
            "finished_at": iso(r.finished_at),
            "parent_run_id": r.parent_run_id,
            "database_user": r.database_user,
            "changes": self.changes,
            "options": r.options,
            "message": r.message,
        }


def backfill_runs(db: str | None = None, *, limit: int | None = 20) -> list[JournaledRun]:
    """`auditor backfill history`: the journaled runs, newest first, at most `limit` (0 or None: all). The journal
    lives in the database backfill writes, so it is named explicitly (never the embedded sample)."""
    from auditor.ledger.db import BACKFILL, database_errors, engine_for
    from auditor.repair import journal
    from auditor.session import writable_target

    target = writable_target(db, "backfill history reads auditor's journal, which")
    engine = engine_for(target, BACKFILL)
    try:
        with database_errors(target), engine.connect() as conn:
            journal.require_current(conn, target.masked)
            runs = journal.list_runs(conn, limit or None)
            counts = journal.change_counts(conn)
    finally:
        engine.dispose()
    return [JournaledRun(r, counts.get(r.id, {})) for r in runs]


@dataclass(frozen=True)
class UndoPlan:
    """A journaled run to undo (`.run`, `.changes`) and where: what undo_backfill needs, read before anything is
    written so a caller can ask first."""

    run: Run
    changes: tuple[Change, ...]
    database: DatabaseTarget
    redis: RedisTarget | None


def plan_undo(run_id: str, *, db: str | None = None, redis: str | None = None) -> UndoPlan:
    """The run `run_id` names (its id, or a unique prefix of 8+ characters) and its changes. Refuses the embedded
    sample, an unreachable Redis, and a run that changed Redis keys when no Redis is given. Writes nothing."""
    from auditor.ledger.db import BACKFILL, database_errors, engine_for
    from auditor.ledger.redis_store import connect_redis, redis_from
    from auditor.repair import journal, plan
    from auditor.session import writable_target

    target = writable_target(db, "backfill undo")
    engine = engine_for(target, BACKFILL)
    redis_target = redis_from(redis)
    client = connect_redis(redis_target) if redis_target is not None else None  # unreachable: refused before the journal
    try:
        with database_errors(target), engine.connect() as conn:
            journal.require_current(conn, target.masked)
            run = journal.find_run(conn, run_id)
            changes = tuple(journal.changes_of(conn, run.id))
    finally:
        engine.dispose()
        if client is not None:
            client.close()
    if any(c.target == plan.REDIS for c in changes) and redis_target is None:
        raise InputError(f"run {run.id} changed Redis keys: pass --redis to undo it")
    return UndoPlan(run, changes, target, redis_target)


def undo_backfill(
    run: str | UndoPlan,
    *,
    db: str | None = None,
    redis: str | None = None,
    stop: Callable[[], str | None] = lambda: None,
    hook: Callable[[str], None] = lambda what: None,
    started: Callable[[str], None] = lambda run_id: None,
    clock: Callable[[], datetime] | None = None,
    report: RunReport | None = None,
) -> RunReport:
    """`auditor backfill undo` once confirmed: put back the values a run replaced wherever nothing changed them
    since, journaled as a run of its own. `run` is a run id (db and redis then say where, as for plan_undo) or
    plan_undo's answer. stop, hook, started and report as for apply_backfill."""
    from auditor.clock import utc_now
    from auditor.ledger.db import BACKFILL, database_errors, engine_for
    from auditor.ledger.redis_store import connect_redis
    from auditor.repair.apply import RunReport, WriteEnv
    from auditor.repair.apply import undo as undo_run

    planned = run if isinstance(run, UndoPlan) else plan_undo(run, db=db, redis=redis)
    engine = engine_for(planned.database, BACKFILL)
    client = None
    try:
        client = connect_redis(planned.redis) if planned.redis is not None else None
        env = WriteEnv(
            engine=engine,
            redis=client,
            ledger=None,
            masked_db=planned.database.masked,
            clock=clock or utc_now,
            hook=hook,
            stop=stop,
            started=started,
        )
        with database_errors(planned.database):
            return undo_run(
                planned.run.id, env, report if report is not None else RunReport("", "undo", [], parent_run_id=planned.run.id)
            )
    finally:
        engine.dispose()
        if client is not None:
            client.close()
