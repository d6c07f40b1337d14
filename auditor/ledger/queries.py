"""Every read of LiteLLM's tables. Aggregation happens here, in SQL, never row by row in Python."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import (
    Boolean,
    Connection,
    DateTime,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    func,
    literal,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
    values,
)
from sqlalchemy.sql import ColumnElement

from auditor.ledger.capabilities import Capabilities
from auditor.ledger.schema import (
    TABLES,
    budget_table,
    budget_window_spend,
    deleted_verification_token,
    end_user_table,
    proxy_model_table,
    spend_logs,
    team_membership,
    team_table,
    user_table,
    verification_token,
)
from auditor.audit.windows import DEFAULT_LOOKBACK


def estimated_rows(conn: Connection, table: str) -> int | None:
    """The planner's estimate on PostgreSQL (never count(*) on a large table); None if never analyzed."""
    if conn.dialect.name == "postgresql":
        estimate = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"), {"name": f'"{table}"'}
        ).scalar()
        return None if estimate is None or estimate < 0 else int(estimate)
    return conn.execute(select(func.count()).select_from(TABLES[table])).scalar_one()


def spend_time_range(conn: Connection, where: SpendFilter | None = None) -> tuple[datetime | None, datetime | None]:
    """Oldest and newest "startTime" (of the rows `where` selects): two index probes on PostgreSQL."""
    query = select(func.min(spend_logs.c.startTime), func.max(spend_logs.c.startTime))
    if where is not None:
        query = query.where(*where.where())
    row = conn.execute(query).one()
    return _as_datetime(row[0]), _as_datetime(row[1])


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


CHARGED = "charged"
IGNORED_FAILURE = "failure"
IGNORED_NO_API_KEY = "empty api_key"
IGNORED_REPEAT_POLL = "repeat job poll"
IGNORED_BAD_SPEND = "spend not a finite amount"

# No real request costs a quadrillion dollars. A spend at or past this bound, NaN or +-Infinity is junk with no
# amount to charge (Redis refuses to INCRBYFLOAT NaN or Infinity, so no counter held it). The bound is what keeps
# every SUM auditor takes finite: a double overflows only after about 1.8e293 rows of less than 1e15, so no window,
# total or JSON number becomes NaN or Infinity, and PostgreSQL's float8 SUM never fails with "value out of range".
SPEND_BOUND = 1e15


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """--since/--until on "startTime" (indexed; the partition key when SpendLogs is partitioned), --key.

    `ended_from` (incremental reports) keeps the rows charged at or after that instant ("endTime", which has no
    index); it also bounds "startTime" to DEFAULT_LOOKBACK before it, so the "startTime" indexes serve the read.
    That assumes no request runs longer than DEFAULT_LOOKBACK, as the window replay already does (windows.py)."""

    since: datetime | None = None
    until: datetime | None = None
    api_keys: tuple[str, ...] | None = None
    entity: tuple[str, str | tuple[str, str]] | None = None  # (scope, id): one entity's rows, for explain
    ended_from: datetime | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.entity is not None:
            scope, entity_id = self.entity
            values_ = (entity_id,) if isinstance(entity_id, str) else entity_id
            clauses += [spend_logs.c[name] == value for name, value in zip(SCOPE_COLUMNS[scope], values_, strict=True)]
        if self.since is not None:
            clauses.append(spend_logs.c.startTime >= self.since)
        if self.until is not None:
            clauses.append(spend_logs.c.startTime < self.until)
        if self.api_keys is not None:
            clauses.append(spend_logs.c.api_key.in_(self.api_keys))
        if self.ended_from is not None:
            clauses += [spend_logs.c.endTime >= self.ended_from, spend_logs.c.startTime >= self.ended_from - DEFAULT_LOOKBACK]
        return clauses


def _is_failure(caps: Capabilities, table=spend_logs) -> ColumnElement[bool]:
    """`status = 'failure'`; rows written before the column existed carry it in metadata.status."""
    if not caps.has_column("LiteLLM_SpendLogs", "status"):
        return literal(False)
    from_metadata = table.c.metadata["status"].as_string()
    return or_(
        table.c.status == "failure",
        and_(table.c.status.is_(None), from_metadata == "failure"),
    )


# Polls of a finished batch or video report the whole job's cost each time; LiteLLM charges it once
# per counter (litellm_core_utils/batch_utils.py, job_charged_once_marker_key).
JOB_POLL_CALL_TYPES = ("aretrieve_batch", "retrieve_batch", "avideo_status", "video_status")
_JOB_COST_SUFFIXES = ("_batch_cost", "_video_cost")


def _job_id(caps: Capabilities, table) -> ColumnElement[str]:
    """The polled job: 1.110 names the cost row `{job}_batch_cost` / `{job}_video_cost` and sets session_id to
    the batch id. Without either, each row is its own job, so nothing is merged on a guess."""
    request = table.c.request_id
    for suffix in _JOB_COST_SUFFIXES:
        request = func.replace(request, suffix, "")
    if caps.has_column("LiteLLM_SpendLogs", "session_id"):
        return func.coalesce(func.nullif(table.c.session_id, ""), request)
    return request


def _is_paid_poll(table=spend_logs) -> ColumnElement[bool]:
    return and_(table.c.call_type.in_(JOB_POLL_CALL_TYPES), table.c.spend > 0)


def _spend_not_finite(table=spend_logs) -> ColumnElement[bool]:
    """spend NaN, +-Infinity or at least SPEND_BOUND in size. One comparison catches all three on PostgreSQL, which
    orders NaN above every number, Infinity included; SQLite stores NaN as NULL. A NULL spend is not caught (NULL
    here): it reads as $0, as it always has."""
    return func.abs(table.c.spend) >= SPEND_BOUND


def _finite_spend(table=spend_logs) -> ColumnElement[float]:
    """spend to add up: NULL (which SUM skips) where `_spend_not_finite`, so a sum over any rows stays finite."""
    return case((_spend_not_finite(table), null()), else_=table.c.spend)


def row_outcome(caps: Capabilities) -> ColumnElement[str]:
    """Why a row is or is not charged, decided in SQL so that rows are counted, never fetched.

    A failure or a row without a key is that whatever its spend: LiteLLM never charges either, so the amount does
    not matter (and a failed request with a NaN spend is still one of a rollup's failed_requests, ledger_days).
    Only a row LiteLLM would charge is then asked whether its spend is an amount at all.

    Repeat job polls are not decided here: a per-row subquery would be costed for every row and wreck
    the plan of a full-table aggregate. `repeat_polls` and `stream_charges` handle them instead.
    Scalar spend counts repeat polls too, and the daily rollups every logged row, as LiteLLM's own writers add each
    one; neither adds a spend that is not a finite amount (period_spend, ledger_days)."""
    return case(
        (_is_failure(caps), literal(IGNORED_FAILURE)),
        (func.coalesce(spend_logs.c.api_key, "") == "", literal(IGNORED_NO_API_KEY)),
        (_spend_not_finite(), literal(IGNORED_BAD_SPEND)),
        else_=literal(CHARGED),
    ).label("outcome")


def model_triple(caps: Capabilities) -> tuple[ColumnElement[str], ColumnElement[str], ColumnElement[str]]:
    """(model, model_group, model_id) as non-null text; columns an old proxy lacks read as ''."""

    def text_or_empty(column: str) -> ColumnElement[str]:
        if caps.has_column("LiteLLM_SpendLogs", column):
            return func.coalesce(spend_logs.c[column], "")
        return literal("", String)

    return text_or_empty("model"), text_or_empty("model_group"), text_or_empty("model_id")


@dataclass(frozen=True, slots=True)
class SpendGroup:
    api_key: str
    model: str
    model_group: str
    model_id: str
    outcome: str
    spend: float
    requests: int


# A job (api_key, job id) whose first paid poll has been seen -> ("endTime", "startTime") of that poll; None when
# it was seen before the rows being read (an incremental report's checkpoint).
PaidJobs = dict[tuple[str, str], tuple[datetime, datetime] | None]


ENTITY_GRAIN = ("team_id", "user", "end_user")  # with api_key, the columns that place a row in every scope


def spend_groups(conn: Connection, caps: Capabilities, where: SpendFilter, paid: Collection[tuple[str, str]] = (),
                 first_paid: PaidJobs | None = None, charged_by_entity: list | None = None) -> list[SpendGroup]:
    """One grouped query over the whole ledger: memory grows with distinct (key, model triple), not rows.

    It groups on plain columns only (key, model triple, status, call_type): PostgreSQL estimates the
    number of groups from the columns an expression reads, so grouping on an expression over spend or
    metadata looks like one group per row and buys a disk sort instead of a hash aggregate. Outcomes
    are then decided per group; the two rare cases that need more (pre-1.68 failures recorded only in
    metadata, repeat job polls) each get a narrow query of their own, run only when such rows exist.
    Spend that is not a finite amount is an aggregate, not a grouped column: each group counts its rows of
    such spend and sums only the others, which costs nothing in the plan.

    `paid` and `first_paid` are for reads of part of the ledger (see repeat_polls). `charged_by_entity`, when a
    list, makes the same pass also group on ENTITY_GRAIN (plain columns too) and receives the charged rows at that
    grain, (api_key, team_id, user, end_user, model, model_group, model_id, spend, rows): the scan's spend lines
    of every scope, without a second read of the ledger."""
    model, model_group, model_id = model_triple(caps)
    key = func.coalesce(spend_logs.c.api_key, "")
    status = spend_logs.c.status if caps.has_column("LiteLLM_SpendLogs", "status") else literal(None, String)
    grain = _grain(charged_by_entity is not None)
    query = (
        select(
            key.label("api_key"), model.label("model"), model_group.label("model_group"), model_id.label("model_id"),
            *grain, status.label("status"), spend_logs.c.call_type,
            func.coalesce(func.sum(_finite_spend()), 0.0).label("spend"),
            func.count().label("requests"),
            func.count(case((_spend_not_finite(), 1))).label("bad_spend"),
        )
        .where(*where.where())
        .group_by(key, model, model_group, model_id, *grain, status, spend_logs.c.call_type)
    )
    rows = hash_aggregated(conn, query)
    unknown_status = caps.has_column("LiteLLM_SpendLogs", "status") and any(r.status is None for r in rows)
    metadata_failures = _metadata_failures(conn, caps, where, bool(grain)) if unknown_status else {}
    polls = any(r.call_type in JOB_POLL_CALL_TYPES and r.status != "failure" and r.api_key for r in rows)
    repeats = repeat_polls(conn, caps, where, paid, first_paid, bool(grain)) if polls else {}
    groups = []
    for r in rows:
        triple = (r.api_key, r.model, r.model_group, r.model_id)
        found = triple + tuple(r[4:4 + len(grain)])  # how the narrow queries key their groups
        spend, requests, bad = float(r.spend), int(r.requests), int(r.bad_spend)
        if r.status == "failure":
            groups.append(SpendGroup(*triple, IGNORED_FAILURE, spend, requests))
            continue
        if r.status is None and (found, r.call_type) in metadata_failures:
            failed_requests, failed_spend, failed_bad = metadata_failures.pop((found, r.call_type))
            groups.append(SpendGroup(*triple, IGNORED_FAILURE, failed_spend, failed_requests))
            spend, requests, bad = spend - failed_spend, requests - failed_requests, bad - failed_bad
        if not r.api_key:
            if requests:
                groups.append(SpendGroup(*triple, IGNORED_NO_API_KEY, spend, requests))
            continue
        if bad:  # their spend is not in `spend`: it is no amount, so the group of them holds $0
            groups.append(SpendGroup(*triple, IGNORED_BAD_SPEND, 0.0, bad))
            requests -= bad
        if r.call_type in JOB_POLL_CALL_TYPES and (found, r.call_type) in repeats:
            repeat_requests, repeat_spend = repeats.pop((found, r.call_type))
            groups.append(SpendGroup(*triple, IGNORED_REPEAT_POLL, repeat_spend, repeat_requests))
            spend, requests = spend - repeat_spend, requests - repeat_requests
        if requests:
            groups.append(SpendGroup(*triple, CHARGED, spend, requests))
            if charged_by_entity is not None:
                charged_by_entity.append((r.api_key, *found[4:], r.model, r.model_group, r.model_id, spend, requests))
    return _merged(groups)


def _grain(wanted: bool, table=spend_logs) -> list:
    """ENTITY_GRAIN as grouped columns ('' for NULL), or nothing."""
    return [func.coalesce(table.c[name], "").label(name) for name in ENTITY_GRAIN] if wanted else []


def hash_aggregated(conn: Connection, query) -> list:
    """Run a whole-ledger GROUP BY with PostgreSQL's sorts off for this one statement, so it hash-aggregates.

    PostgreSQL multiplies the distinct counts of the grouped columns, expects about a million groups where a
    ledger has tens of thousands, and sorts every row on disk to group them (10M rows: 19 s, against 6 s
    hashed). A hash aggregate whose groups outgrow work_mem spills to disk in batches, so this stays safe when
    the estimate is right. The setting is restored after success only: after an error the transaction is
    over, and a statement there would replace the error the user should see."""
    if conn.dialect.name != "postgresql":
        return conn.execute(query).all()
    previous = conn.execute(text("SELECT current_setting('enable_sort')")).scalar_one()
    conn.execute(text("SELECT set_config('enable_sort', 'off', true)"))
    rows = conn.execute(query).all()
    conn.execute(text("SELECT set_config('enable_sort', :value, true)"), {"value": previous})
    return rows


def _metadata_failures(conn: Connection, caps: Capabilities, where: SpendFilter, by_entity: bool = False) -> dict:
    """Rows written before the status column existed (LiteLLM < 1.68) that metadata.status marks as failures:
    (rows, finite spend, rows whose spend is not a finite amount) per group of spend_groups."""
    model, model_group, model_id = model_triple(caps)
    key = func.coalesce(spend_logs.c.api_key, "")
    group = (key, model, model_group, model_id, *_grain(by_entity))
    n = len(group)
    query = (
        select(*group, spend_logs.c.call_type, func.count(), func.coalesce(func.sum(_finite_spend()), 0.0),
               func.count(case((_spend_not_finite(), 1))))
        .where(*where.where(), spend_logs.c.status.is_(None), spend_logs.c.metadata["status"].as_string() == "failure")
        .group_by(*group, spend_logs.c.call_type)
    )
    return {(tuple(r[:n]), r[n]): (int(r[n + 1]), float(r[n + 2]), int(r[n + 3])) for r in hash_aggregated(conn, query)}


def _merged(groups: list[SpendGroup]) -> list[SpendGroup]:
    """Rows of one (key, triple, outcome) come from several (status, call_type) groups: add them up."""
    merged: dict[tuple, SpendGroup] = {}
    for g in groups:
        k = (g.api_key, g.model, g.model_group, g.model_id, g.outcome)
        m = merged.get(k)
        merged[k] = g if m is None else SpendGroup(*k, m.spend + g.spend, m.requests + g.requests)
    return list(merged.values())


def repeat_polls(conn: Connection, caps: Capabilities, where: SpendFilter, paid: Collection[tuple[str, str]] = (),
                 first_paid: PaidJobs | None = None, by_entity: bool = False) -> dict:
    """Paid polls of a job that the same key already paid for, per ((key, model triple), call_type): (rows, spend);
    `by_entity`: per ((key, model triple, *ENTITY_GRAIN), call_type), as spend_groups groups then.

    A finished batch or video reports its whole cost on every poll; LiteLLM charges it once per counter.
    The first paid poll (by endTime, then request_id) counts; the rest are repeats. Reads poll rows only.

    Reading part of the ledger (an incremental report), the jobs in `paid` were paid before it: their polls
    here are all repeats. `first_paid`, when given, receives the jobs first paid here, with their first poll's
    endTime and startTime, so the caller can tell which of them a later read starts after."""
    model, model_group, model_id = model_triple(caps)
    job = _job_id(caps, spend_logs)
    ranked = (
        select(
            spend_logs.c.api_key, model.label("model"), model_group.label("model_group"), model_id.label("model_id"),
            *_grain(by_entity), spend_logs.c.call_type, spend_logs.c.spend, job.label("job"), spend_logs.c.endTime,
            spend_logs.c.startTime,
            func.row_number().over(
                partition_by=(spend_logs.c.api_key, job), order_by=(spend_logs.c.endTime, spend_logs.c.request_id)
            ).label("nth"),
        )
        .where(*where.where(), _is_paid_poll(), row_outcome(caps) == CHARGED)
    )
    partial = bool(paid) or first_paid is not None
    ranked = ranked.cte("ranked") if partial else ranked.subquery()
    grain = [ranked.c[name] for name in ENTITY_GRAIN] if by_entity else []
    group = (ranked.c.api_key, ranked.c.model, ranked.c.model_group, ranked.c.model_id, *grain, ranked.c.call_type)
    n = len(group) - 1  # the columns before call_type
    query = select(*group, func.count(), func.sum(ranked.c.spend)).where(ranked.c.nth > 1).group_by(*group)
    if not partial:
        return {(tuple(r[:n]), r[n]): (int(r[n + 1]), float(r[n + 2])) for r in conn.execute(query)}
    # One statement (the ranked polls read once): the repeats grouped as above, then each job's first paid poll.
    nothing = (cast(null(), String), cast(null(), DateTime), cast(null(), DateTime))
    query = union_all(
        select(*group, func.count(), func.sum(ranked.c.spend), *nothing, literal(False, Boolean))
        .where(ranked.c.nth > 1).group_by(*group),
        select(*group, literal(1, Integer), ranked.c.spend, ranked.c.job, ranked.c.endTime, ranked.c.startTime, true())
        .where(ranked.c.nth == 1),
    )
    repeats: dict = {}
    for r in conn.execute(query):
        found = (tuple(r[:n]), r[n])
        count, spend, job, end, start, first = r[n + 1:n + 7]
        if first and (r[0], job) not in paid:  # the job's first paid poll, and the job was not paid before: charged
            if first_paid is not None:
                first_paid[(r[0], job)] = (_as_datetime(end), _as_datetime(start))
            continue
        rows, total = repeats.get(found, (0, 0.0))
        repeats[found] = (rows + int(count), total + float(spend or 0.0))
    return repeats


class ChargeRow(NamedTuple):
    """One charged request of a budgeted entity. A tuple, not a dataclass: the stream makes one per row, and
    its start_time, end_time and spend are all a WindowTracker reads, so it is passed there as is."""

    entity_id: str
    request_id: str
    api_key: str
    start_time: datetime
    end_time: datetime
    spend: float
    model: str
    model_group: str
    model_id: str


def team_member_entity_id(user_id: str, team_id: str) -> str:
    """How LiteLLM keys a team member's counters (`team_member_budget_entity_id`)."""
    return f"{len(user_id)}:{user_id}:{team_id}"


# The spend-log columns that attribute a row to an entity of each scope (semantics.md (c), (d)).
SCOPE_COLUMNS: dict[str, tuple[str, ...]] = {
    "key": ("api_key",),
    "team": ("team_id",),
    "user": ("user",),
    "end_user": ("end_user",),
    "team_member": ("user", "team_id"),
}


@dataclass(frozen=True, slots=True)
class AliasTraffic:
    """Charged rows whose model_group is a proxy-level alias, per the columns every scope attributes by."""

    api_key: str
    team_id: str
    user: str
    end_user: str
    alias: str
    spend: float
    requests: int


def alias_traffic(conn: Connection, caps: Capabilities, where: SpendFilter, aliases: Collection[str]) -> list[AliasTraffic]:
    """Spend and requests routed through `aliases` (model_group as logged), grouped once for every scope."""
    if not aliases or not caps.has_column("LiteLLM_SpendLogs", "model_group"):
        return []
    cols = [func.coalesce(spend_logs.c[name], "").label(name) for name in ("api_key", "team_id", "user", "end_user", "model_group")]
    query = (
        select(*cols, func.coalesce(func.sum(spend_logs.c.spend), 0.0), func.count())
        .where(*where.where(), spend_logs.c.model_group.in_(sorted(aliases)), row_outcome(caps) == CHARGED)
        .group_by(*cols)
    )
    return [AliasTraffic(r[0], r[1], r[2], r[3], r[4], float(r[5]), int(r[6])) for r in conn.execute(query)]


def stream_charges(
    conn: Connection, caps: Capabilities, where: SpendFilter, scope: str, entity_ids: Sequence[str | tuple[str, str]],
    batch: int = 5000, paid_jobs: PaidJobs | None = None,
) -> Iterator[ChargeRow]:
    """Charged rows of the given entities in (entity, charge time) order, through a server-side cursor.

    Only budgeted entities' rows are read, and only the narrow columns windowing needs. A job's polls after its
    first paid one are repeats and skipped; `paid_jobs`, when given, holds the jobs already paid (an incremental
    report's checkpoint) and receives those first paid in this stream.
    """
    if not entity_ids:
        return
    columns, matches = _entity_match(scope, entity_ids)
    model, model_group, model_id = model_triple(caps)
    query = (
        select(
            *columns,
            spend_logs.c.request_id,
            spend_logs.c.api_key,
            spend_logs.c.startTime,
            spend_logs.c.endTime,
            spend_logs.c.spend,
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
            case((_is_paid_poll(), _job_id(caps, spend_logs)), else_=None).label("job"),
        )
        .where(*where.where(), matches, row_outcome(caps) == CHARGED)
        .order_by(*columns, spend_logs.c.endTime, spend_logs.c.request_id)
    )
    # per statement: Connection.execution_options() would turn every later query into a server-side cursor
    result = conn.execute(query.execution_options(yield_per=batch))
    # The hot loop of a scan (one pass per charged row of a budgeted entity): positional access, no
    # per-row conversions where the driver already hands back the right types (psycopg: datetime, float).
    parse = conn.dialect.name != "postgresql"
    n = len(columns)
    if paid_jobs is None:
        paid_jobs = {}  # (key, job) already charged: later polls are repeats
    for row in result:
        request_id, api_key, start, end, spend, model, model_group, model_id, job = row[n:]
        if parse:
            start, end = _as_datetime(start), _as_datetime(end)
        if job is not None:
            if (api_key, job) in paid_jobs:
                continue
            paid_jobs[(api_key, job)] = (end, start)
        yield ChargeRow(
            row[0] if n == 1 else team_member_entity_id(row[0], row[1]), request_id, api_key, start, end,
            float(spend or 0.0), model, model_group, model_id,
        )


def _entity_match(scope: str, entity_ids: Sequence[str | tuple[str, str]]) -> tuple[list, ColumnElement[bool]]:
    columns = [spend_logs.c[name] for name in SCOPE_COLUMNS[scope]]
    return columns, (columns[0].in_(list(entity_ids)) if len(columns) == 1 else tuple_(*columns).in_(list(entity_ids)))


def paid_jobs_before(conn: Connection, caps: Capabilities, scope: str, entity_ids: Sequence[str | tuple[str, str]],
                     before: datetime) -> PaidJobs:
    """The jobs these entities paid for in a poll that ended before `before`: seeded into stream_charges' `paid_jobs`
    when it reads from `before` on (SpendFilter.ended_from), so a later poll of them is a repeat, as in a full read."""
    if not entity_ids:
        return {}
    _, matches = _entity_match(scope, entity_ids)
    query = (select(spend_logs.c.api_key, _job_id(caps, spend_logs))
             .where(matches, _is_paid_poll(), row_outcome(caps) == CHARGED, spend_logs.c.endTime < before).distinct())
    return {(r[0], r[1]): None for r in conn.execute(query)}


@dataclass(frozen=True, slots=True)
class KeyRow:
    token: str
    key_alias: str | None
    model_max_budget: object
    budget_table_model_max_budget: object  # via budget_id; applies when the key's own value is empty (1.82+)
    team_id: str | None
    user_id: str | None
    aliases: object
    model_spend: object
    deleted: bool = False
    spend: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    total_spend: float | None = None


def keys(conn: Connection, caps: Capabilities) -> list[KeyRow]:
    """Every live key (with its budget table's model_max_budget) and every deleted one."""
    vt = verification_token
    has_budget_table = caps.has_table("LiteLLM_BudgetTable") and caps.has_column("LiteLLM_VerificationToken", "budget_id")
    budget_mmb = budget_table.c.model_max_budget if has_budget_table else literal(None)
    total = vt.c.total_spend if caps.has_column("LiteLLM_VerificationToken", "total_spend") else literal(None)
    query = select(
        vt.c.token, vt.c.key_alias, vt.c.model_max_budget, budget_mmb.label("budget_mmb"), vt.c.team_id, vt.c.user_id,
        vt.c.aliases, vt.c.model_spend, vt.c.spend, vt.c.max_budget, vt.c.budget_duration, vt.c.budget_reset_at,
        total.label("total_spend"),
    )
    if has_budget_table:
        query = query.select_from(vt.outerjoin(budget_table, budget_table.c.budget_id == vt.c.budget_id))
    rows = [
        KeyRow(r.token, r.key_alias, r.model_max_budget, r.budget_mmb, r.team_id, r.user_id, r.aliases, r.model_spend,
               False, r.spend, r.max_budget, r.budget_duration, _as_datetime(r.budget_reset_at), r.total_spend)
        for r in conn.execute(query)
    ]
    if caps.has_table("LiteLLM_DeletedVerificationToken"):
        live = {row.token for row in rows}
        dt = deleted_verification_token
        seen: set[str] = set()
        for r in conn.execute(select(dt.c.token, dt.c.key_alias, dt.c.team_id, dt.c.user_id).order_by(dt.c.deleted_at.desc())):
            if r.token in live or r.token in seen:
                continue
            seen.add(r.token)
            rows.append(KeyRow(r.token, r.key_alias, {}, None, r.team_id, r.user_id, {}, {}, deleted=True))
    return rows


@dataclass(frozen=True, slots=True)
class WindowSpendRow:
    entity_id: str
    window_duration: str
    window_start: datetime
    spend: float


def model_budget_window_rows(conn: Connection, caps: Capabilities) -> list[WindowSpendRow]:
    """LiteLLM_BudgetWindowSpend's per-model counters (1.109+, no-Redis replicas)."""
    if not caps.has_table("LiteLLM_BudgetWindowSpend"):
        return []
    t = budget_window_spend
    query = select(t.c.entity_id, t.c.window_duration, t.c.window_start, t.c.spend).where(t.c.entity_type == "model_max_budget")
    return [WindowSpendRow(r.entity_id, r.window_duration, _as_datetime(r.window_start), float(r.spend)) for r in conn.execute(query)]


def proxy_models(conn: Connection, caps: Capabilities) -> list[dict]:
    """Models added through LiteLLM's UI/API, as the catalogue builder takes them."""
    if not caps.has_table("LiteLLM_ProxyModelTable"):
        return []
    t = proxy_model_table
    return [
        {"model_id": r.model_id, "model_name": r.model_name, "litellm_params": r.litellm_params, "model_info": r.model_info}
        for r in conn.execute(select(t.c.model_id, t.c.model_name, t.c.litellm_params, t.c.model_info))
    ]


@dataclass(frozen=True, slots=True)
class TripleTotals:
    model: str
    model_group: str
    model_id: str
    requests: int
    spend: float


def model_triples(conn: Connection, caps: Capabilities, where: SpendFilter) -> list[TripleTotals]:
    """Every distinct logged (model, model_group, model_id), with rows and spend: one GROUP BY."""
    model, model_group, model_id = model_triple(caps)
    query = (
        select(model.label("model"), model_group.label("model_group"), model_id.label("model_id"),
               func.count().label("requests"), func.coalesce(func.sum(_finite_spend()), 0.0).label("spend"))
        .where(*where.where())
        .group_by(model, model_group, model_id)
    )
    return [TripleTotals(r.model, r.model_group, r.model_id, int(r.requests), float(r.spend)) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class Holder:
    """An entity that may carry budgets, at one scope: its per-model budget and its scalar spend."""

    scope: str
    entity_id: str | tuple[str, str]  # team members: (user_id, team_id)
    alias: str | None
    model_max_budget: object
    budget_source: str  # where model_max_budget came from, for humans
    spend: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    total_spend: float | None = None
    spend_column: str = ""
    deleted: bool = False


def _budget_rows(conn: Connection, caps: Capabilities) -> dict[str, object]:
    if not caps.has_table("LiteLLM_BudgetTable"):
        return {}
    t = budget_table
    return {r.budget_id: r for r in conn.execute(select(t.c.budget_id, t.c.model_max_budget, t.c.max_budget, t.c.budget_duration, t.c.budget_reset_at))}


def key_holder(row: KeyRow) -> Holder:
    """A key's own model_max_budget, else its budget table's when the key's is empty (LiteLLM 1.82+)."""
    inherits = row.model_max_budget in (None, {}, "") and row.budget_table_model_max_budget not in (None, {}, "")
    return Holder(
        "key", row.token, row.key_alias,
        row.budget_table_model_max_budget if inherits else row.model_max_budget, "budget_id" if inherits else "key",
        row.spend, row.max_budget, row.budget_duration, row.budget_reset_at, row.total_spend,
        "LiteLLM_VerificationToken.spend", row.deleted,
    )


def holders(conn: Connection, caps: Capabilities, key_rows: list[KeyRow], default_end_user_budget: str | None = None) -> list[Holder]:
    """Every entity of every scope LiteLLM budgets: keys, teams, internal users, end users, team members.

    `default_end_user_budget` is `litellm_settings.max_end_user_budget_id`: LiteLLM 1.110 gives its budget to every
    end user whose own budget_id is unset or names no budget row (auth_checks._apply_default_budget_to_end_user)."""
    found = [key_holder(row) for row in key_rows]
    budgets = _budget_rows(conn, caps)
    member_default: dict[str, str] = {}
    if caps.has_table("LiteLLM_TeamTable"):
        t = team_table
        for r in conn.execute(select(t.c.team_id, t.c.team_alias, t.c.model_max_budget, t.c.metadata, t.c.spend, t.c.max_budget,
                                     t.c.budget_duration, t.c.budget_reset_at)):
            found.append(Holder("team", r.team_id, r.team_alias, r.model_max_budget, "team", r.spend, r.max_budget,
                                r.budget_duration, _as_datetime(r.budget_reset_at), None, "LiteLLM_TeamTable.spend"))
            default = r.metadata.get("team_member_budget_id") if isinstance(r.metadata, dict) else None
            if isinstance(default, str) and default:
                member_default[r.team_id] = default
    if caps.has_table("LiteLLM_UserTable"):
        u = user_table
        for r in conn.execute(select(u.c.user_id, u.c.user_alias, u.c.user_email, u.c.model_max_budget, u.c.spend, u.c.max_budget,
                                     u.c.budget_duration, u.c.budget_reset_at)):
            found.append(Holder("user", r.user_id, r.user_alias or r.user_email, r.model_max_budget, "user", r.spend, r.max_budget,
                                r.budget_duration, _as_datetime(r.budget_reset_at), None, "LiteLLM_UserTable.spend"))
    if caps.has_table("LiteLLM_EndUserTable"):
        e = end_user_table
        default = budgets.get(default_end_user_budget) if default_end_user_budget else None
        for r in conn.execute(select(e.c.user_id, e.c.alias, e.c.budget_id, e.c.spend)):
            b = budgets.get(r.budget_id) if r.budget_id is not None else None
            source = f"budget_id {r.budget_id}" if b else "none"
            if b is None and default is not None:
                b, source = default, f"litellm_settings.max_end_user_budget_id {default_end_user_budget}"
            found.append(Holder("end_user", r.user_id, r.alias, b.model_max_budget if b else None,
                                source, r.spend, b.max_budget if b else None,
                                b.budget_duration if b else None, _as_datetime(b.budget_reset_at) if b else None, None,
                                "LiteLLM_EndUserTable.spend"))
    members: set[tuple[str, str]] = set()
    if caps.has_table("LiteLLM_TeamMembership"):
        m = team_membership
        total = m.c.total_spend if caps.has_column("LiteLLM_TeamMembership", "total_spend") else literal(None)
        for r in conn.execute(select(m.c.user_id, m.c.team_id, m.c.budget_id, m.c.spend, total.label("total_spend"))):
            members.add((r.user_id, r.team_id))
            own = budgets.get(r.budget_id) if r.budget_id else None
            default_id = member_default.get(r.team_id)
            # LiteLLM uses the membership's own budget for per-model caps only when it has some; else the team's
            # default member budget (user_api_key_auth._load_team_member_default_model_budget). Scalar caps: its own.
            if own is not None and isinstance(own.model_max_budget, dict) and own.model_max_budget:
                mmb, source = own.model_max_budget, f"budget_id {r.budget_id}"
            elif default_id and default_id in budgets:
                mmb, source = budgets[default_id].model_max_budget, f"team metadata team_member_budget_id {default_id}"
            else:
                mmb, source = None, "none"
            scalar = own if own is not None else budgets.get(default_id) if default_id else None
            found.append(Holder("team_member", (r.user_id, r.team_id), f"{r.user_id} in {r.team_id}", mmb, source, r.spend,
                                scalar.max_budget if scalar else None, scalar.budget_duration if scalar else None,
                                _as_datetime(scalar.budget_reset_at) if scalar else None, r.total_spend,
                                "LiteLLM_TeamMembership.spend"))
    # A key's owner in the key's team is a team member to the limiter even without a membership row: it then gets the
    # team's default member budget (user_api_key_auth._load_team_member_default_model_budget), with no spend column.
    for row in key_rows:
        pair = (row.user_id, row.team_id)
        default_id = member_default.get(row.team_id or "")
        if row.user_id and row.team_id and default_id in budgets and pair not in members:
            members.add(pair)
            found.append(Holder("team_member", pair, f"{row.user_id} in {row.team_id}", budgets[default_id].model_max_budget,
                                f"team metadata team_member_budget_id {default_id} (no LiteLLM_TeamMembership row)"))
    return found


def period_spend(
    conn: Connection, caps: Capabilities, scope: str, starts: Sequence[tuple[str | tuple[str, str], datetime]], until: datetime,
    ended_from: datetime | None = None,
) -> dict[str | tuple[str, str], tuple[float, int]]:
    """Charged spend and rows of each entity since its own period start, in one grouped join. Charged: so rows
    whose spend is not a finite amount are left out (row_outcome), and the sums stay finite where LiteLLM's own
    spend column would have become NaN or Infinity.

    The (entity, start) pairs travel as a VALUES list, so every entity's period is summed in
    the database in a single statement whatever its start. The earliest start also bounds "startTime"
    as a constant, so recent periods are read through its index rather than the whole table.
    `ended_from` keeps only the rows an incremental report reads (as SpendFilter.ended_from does).
    """
    if not starts:
        return {}
    names = SCOPE_COLUMNS[scope]
    keyed = [((entity,) if isinstance(entity, str) else tuple(entity)) + (start,) for entity, start in starts]
    periods = _rows_as_table(keyed, [*(f"e{i}" for i in range(len(names))), "period_start"], [*(String,) * len(names), DateTime], conn)
    matches = [spend_logs.c[name] == periods.c[f"e{i}"] for i, name in enumerate(names)]
    entity_columns = [periods.c[f"e{i}"] for i in range(len(names))]
    read = SpendFilter(since=min(start for _, start in starts), ended_from=ended_from)
    query = (
        select(*entity_columns, func.coalesce(func.sum(spend_logs.c.spend), 0.0), func.count())
        .select_from(periods.join(spend_logs, and_(*matches, spend_logs.c.startTime >= periods.c.period_start)))
        .where(*read.where(), spend_logs.c.startTime <= until, row_outcome(caps) == CHARGED)
        .group_by(*entity_columns)
    )
    found: dict[str | tuple[str, str], tuple[float, int]] = {}
    for row in conn.execute(query):
        entity = row[0] if len(names) == 1 else (row[0], row[1])
        found[entity] = (float(row[-2]), int(row[-1]))
    return found


def period_charges(
    conn: Connection, caps: Capabilities, scope: str, entity: str | tuple[str, str], start: datetime, until: datetime,
) -> Iterator[tuple[datetime, datetime, float, bool]]:
    """One entity's charged rows of a scalar period (as period_spend counts them) in charge order: start, end, spend,
    and whether the request came through a team key. Streamed: only asked for entities over their budget."""
    names = SCOPE_COLUMNS[scope]
    values_ = (entity,) if isinstance(entity, str) else tuple(entity)
    team_key = func.coalesce(spend_logs.c.team_id, "") != ""
    query = (
        select(spend_logs.c.startTime, spend_logs.c.endTime, _finite_spend(), case((team_key, 1), else_=0))
        .where(*(spend_logs.c[name] == value for name, value in zip(names, values_, strict=True)),
               spend_logs.c.startTime >= start, spend_logs.c.startTime <= until, row_outcome(caps) == CHARGED)
        .order_by(spend_logs.c.endTime, spend_logs.c.request_id)
    )
    parse = conn.dialect.name != "postgresql"
    for row in conn.execute(query.execution_options(yield_per=5000)):
        begin, end = (_as_datetime(row[0]), _as_datetime(row[1])) if parse else (row[0], row[1])
        yield begin, end, float(row[2] or 0.0), bool(row[3])


def _rows_as_table(rows: list[tuple], names: list[str], types: list, conn: Connection):
    """Literal rows to join against: VALUES on PostgreSQL; SQLite takes no column list after VALUES,
    so there a UNION ALL of one-row SELECTs."""
    if conn.dialect.name == "postgresql":
        return values(*(column(n, t) for n, t in zip(names, types, strict=True)), name="periods").data(rows)
    selects = [select(*(literal(v, t).label(n) for v, n, t in zip(row, names, types, strict=True))) for row in rows]
    return (selects[0] if len(selects) == 1 else union_all(*selects)).subquery("periods")


RollupKey = tuple[str, str, str, str]  # (date, api_key, model, custom_llm_provider)


@dataclass(frozen=True, slots=True)
class DayTotals:
    spend: float
    requests: int
    successes: int
    failures: int


def _day_of(conn: Connection, column) -> ColumnElement[str]:
    """`YYYY-MM-DD` of a UTC timestamp, as LiteLLM writes DailyUserSpend.date."""
    if conn.dialect.name == "postgresql":
        return func.to_char(column, "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def _rolled_up(by: str) -> list[ColumnElement[bool]]:
    """Which rows LiteLLM 1.110 rolls up per entity (daily_spend_bulk_upsert.daily_spend_entity_ids): every row per
    user (a NULL or '' user is an entity of its own), every row with a team_id but NULL per team ('' is rolled up:
    get_logging_payload stores '' for a keyless or teamless request), and per end user only a non-empty one."""
    column = spend_logs.c[by]
    if by == "user":
        return []
    if by == "team_id":
        return [column.is_not(None)]
    return [func.coalesce(column, "") != ""]


def _ledger_day_rows(conn: Connection, caps: Capabilities, by: str, first_day: str, last_day: str):
    """The ledger's rows as a Daily*Spend table counts them: rows LiteLLM rolls up for its entity (`by`: "user",
    team_id, end_user; ROLLED_UP) whose UTC day is in range, at the rollup's grain (day, key, model, provider).
    Columns: day, api_key, model, provider, spend, failed (0/1). Spend that is not a finite amount (row_outcome)
    adds nothing, so sums stay finite; LiteLLM's own rollup would hold NaN, Infinity or the junk amount there."""
    provider = func.coalesce(spend_logs.c.custom_llm_provider, "") if caps.has_column("LiteLLM_SpendLogs", "custom_llm_provider") else literal("", String)
    failed = row_outcome(caps) == IGNORED_FAILURE
    return select(
        _day_of(conn, spend_logs.c.startTime).label("day"), spend_logs.c.api_key.label("api_key"),
        func.coalesce(spend_logs.c.model, "").label("model"), provider.label("provider"),
        _finite_spend().label("spend"), case((failed, 1), else_=0).label("failed"),
    ).where(*_rolled_up(by), spend_logs.c.startTime >= datetime.fromisoformat(first_day),
            spend_logs.c.startTime < datetime.fromisoformat(last_day) + timedelta(days=1))


def ledger_days(conn: Connection, caps: Capabilities, by: str, first_day: str, last_day: str) -> dict[RollupKey, DayTotals]:
    """The ledger grouped like a Daily*Spend table, per UTC day, key, model and provider: spend and counts over
    every row, failures included, as LiteLLM adds them."""
    rows = _ledger_day_rows(conn, caps, by, first_day, last_day).subquery()
    query = (
        select(rows.c.day, rows.c.api_key, rows.c.model, rows.c.provider, func.coalesce(func.sum(rows.c.spend), 0.0),
               func.count(), func.sum(1 - rows.c.failed), func.sum(rows.c.failed))
        .group_by(rows.c.day, rows.c.api_key, rows.c.model, rows.c.provider)
    )
    return {(r[0], r[1], r[2], r[3]): DayTotals(float(r[4]), int(r[5]), int(r[6]), int(r[7])) for r in hash_aggregated(conn, query)}


def rollup_disagreements(
    conn: Connection, caps: Capabilities, table, by: str, first_day: str, last_day: str, tolerance: float,
) -> list[tuple[RollupKey, DayTotals | None, DayTotals | None]]:
    """Where a Daily*Spend table and the ledger disagree, per (day, key, model, provider): (key, ledger's totals,
    rollup's totals), None where a side has no row. Compared in the database: a ledger of 90 days x thousands of
    keys has hundreds of thousands of such cells and only the disagreements leave the server, so memory grows
    with disagreements. One aggregate over both sides (UNION ALL, then GROUP BY the cell), no join. The test is
    reconcile.rollup_differs': spend beyond the tolerance (NaN differs) or a different request count."""
    ledger = _ledger_day_rows(conn, caps, by, first_day, last_day).subquery()
    t = table
    zero, none = literal(0), null()
    both = union_all(
        select(ledger.c.day, ledger.c.api_key, ledger.c.model, ledger.c.provider,
               ledger.c.spend.label("l_spend"), literal(1).label("l_rows"), ledger.c.failed.label("l_failed"),
               none.label("r_spend"), zero.label("r_requests"), zero.label("r_ok"), zero.label("r_failed"), zero.label("r_rows")),
        select(t.c.date, t.c.api_key, func.coalesce(t.c.model, ""), func.coalesce(t.c.custom_llm_provider, ""),
               none, zero, zero, t.c.spend, func.coalesce(t.c.api_requests, 0), func.coalesce(t.c.successful_requests, 0),
               func.coalesce(t.c.failed_requests, 0), literal(1))
        .where(t.c.date >= first_day, t.c.date <= last_day),
    ).subquery()
    l_spend, l_rows = func.coalesce(func.sum(both.c.l_spend), 0.0), func.sum(both.c.l_rows)
    r_spend, r_requests = func.coalesce(func.sum(both.c.r_spend), 0.0), func.sum(both.c.r_requests)
    query = (
        select(both.c.day, both.c.api_key, both.c.model, both.c.provider, l_spend, l_rows, func.sum(both.c.l_failed),
               r_spend, r_requests, func.sum(both.c.r_ok), func.sum(both.c.r_failed), func.sum(both.c.r_rows))
        .group_by(both.c.day, both.c.api_key, both.c.model, both.c.provider)
        .having(or_(~(func.abs(l_spend - r_spend) <= tolerance), l_rows != r_requests))  # NOT (NaN <= x) holds: NaN differs
    )
    found = []
    for r in hash_aggregated(conn, query):
        logged = DayTotals(float(r[4]), int(r[5]), int(r[5]) - int(r[6]), int(r[6])) if r[5] else None
        cached = DayTotals(float(r[7]), int(r[8]), int(r[9]), int(r[10])) if r[11] else None
        found.append(((r[0], r[1], r[2], r[3]), logged, cached))
    return found


def rollup_day_digests(conn: Connection, table, first_day: str, last_day: str, digest) -> dict[str, str]:
    """`digest` of each day's Daily*Spend totals (rollup_days' grain), streamed a day at a time."""
    t = table
    model, provider = func.coalesce(t.c.model, ""), func.coalesce(t.c.custom_llm_provider, "")
    query = (
        select(t.c.date, t.c.api_key, model, provider, func.sum(t.c.spend), func.sum(t.c.api_requests),
               func.sum(t.c.successful_requests), func.sum(t.c.failed_requests))
        .where(t.c.date >= first_day, t.c.date <= last_day)
        .group_by(t.c.date, t.c.api_key, model, provider)
        .order_by(t.c.date)
    )
    digests: dict[str, str] = {}
    day, rows = None, {}
    for r in conn.execute(query.execution_options(yield_per=5000)):
        if r[0] != day:
            if day is not None:
                digests[day] = digest(rows)
            day, rows = r[0], {}
        rows[(r[0], r[1], r[2], r[3])] = DayTotals(float(r[4] or 0.0), int(r[5] or 0), int(r[6] or 0), int(r[7] or 0))
    if day is not None:
        digests[day] = digest(rows)
    return digests


def rollup_days(conn: Connection, table, first_day: str, last_day: str) -> dict[RollupKey, DayTotals]:
    """A Daily*Spend table summed over its entities, tools and endpoints to the ledger's grain."""
    t = table
    provider = func.coalesce(t.c.custom_llm_provider, "")
    model = func.coalesce(t.c.model, "")
    query = (
        select(t.c.date, t.c.api_key, model, provider, func.sum(t.c.spend), func.sum(t.c.api_requests),
               func.sum(t.c.successful_requests), func.sum(t.c.failed_requests))
        .where(t.c.date >= first_day, t.c.date <= last_day)
        .group_by(t.c.date, t.c.api_key, model, provider)
    )
    return {(r[0], r[1], r[2], r[3]): DayTotals(float(r[4] or 0.0), int(r[5] or 0), int(r[6] or 0), int(r[7] or 0)) for r in conn.execute(query)}


def rollup_date_range(conn: Connection, table) -> tuple[str | None, str | None]:
    row = conn.execute(select(func.min(table.c.date), func.max(table.c.date))).one()
    return row[0], row[1]
