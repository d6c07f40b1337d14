"""The spend ledger's reads (LiteLLM_SpendLogs): what a row counts as, the grouped spend, the charge stream, paid
jobs, period sums. Who holds budgets is read in budget_holders.py, the daily rollups in daily_rollups.py; aggregation
happens in SQL, never row by row in Python."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
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
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from auditor.audit.windows import DEFAULT_LOOKBACK
from auditor.ledger.capabilities import Capabilities
from auditor.ledger.schema import TABLES, spend_logs
from auditor.money import SPLIT, from_parts, to_dollars, to_nanos


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


class _NanosHigh(FunctionElement):
    """A row's spend in whole nano-dollars (money.to_nanos), divided by money.SPLIT and truncated: the high part."""

    type = BigInteger()
    name = "nanos_high"
    inherit_cache = True


class _NanosLow(FunctionElement):
    """What the high part leaves: a row's nano-dollars minus _NanosHigh * SPLIT, below SPLIT in size."""

    type = BigInteger()
    name = "nanos_low"
    inherit_cache = True


def _scaled(element, compiler, double: str, **kw) -> str:
    """spend * 1e9 moved half a nano-dollar away from zero, in doubles: truncated, money.to_nanos's rounding."""
    (spend,) = element.clauses
    v = compiler.process(spend, **kw)
    return (
        f"(({v}) * CAST(1000000000 AS {double}) + CASE WHEN ({v}) < 0 THEN CAST(-0.5 AS {double}) ELSE CAST(0.5 AS {double}) END)"
    )


# SQLite: CAST(real AS INTEGER) truncates toward zero. y / 2**32 is exact, trunc(y / 2**32) = trunc(trunc(y) / 2**32),
# and y - high * 2**32 is exact (both are multiples of y's ulp, the difference below 2**32), so
# high * 2**32 + low = trunc(y) = money.to_nanos(spend) for every |spend| < SPEND_BOUND, and no BIGINT overflows.
@compiles(_NanosHigh)
def _nanos_high_sqlite(element, compiler, **kw) -> str:
    return f"CAST({_scaled(element, compiler, 'REAL', **kw)} / {float(SPLIT)!r} AS INTEGER)"


@compiles(_NanosLow)
def _nanos_low_sqlite(element, compiler, **kw) -> str:
    y = _scaled(element, compiler, "REAL", **kw)
    return f"CAST({y} - CAST({y} / {float(SPLIT)!r} AS INTEGER) * {float(SPLIT)!r} AS INTEGER)"


# PostgreSQL: CAST(float8 AS bigint) rounds, so truncate first with TRUNC (exact on a double).
@compiles(_NanosHigh, "postgresql")
def _nanos_high_pg(element, compiler, **kw) -> str:
    return f"CAST(TRUNC({_scaled(element, compiler, 'DOUBLE PRECISION', **kw)} / CAST({SPLIT} AS DOUBLE PRECISION)) AS BIGINT)"


@compiles(_NanosLow, "postgresql")
def _nanos_low_pg(element, compiler, **kw) -> str:
    y = _scaled(element, compiler, "DOUBLE PRECISION", **kw)
    split = f"CAST({SPLIT} AS DOUBLE PRECISION)"
    return f"CAST(TRUNC({y} - TRUNC({y} / {split}) * {split}) AS BIGINT)"


def nanos_parts(spend: ColumnElement) -> tuple[ColumnElement[int], ColumnElement[int]]:
    """A row's spend (a finite amount or NULL: `_finite_spend`) in nano-dollars as (high, low), so that SUMs of
    them are exact integers whatever the order of the rows; money.from_parts puts the two sums together."""
    return _NanosHigh(spend), _NanosLow(spend)


def summed_nanos(spend: ColumnElement) -> list[ColumnElement[int]]:
    """SUM of nanos_parts, 0 over no row: two result columns, for money.from_parts."""
    return [func.coalesce(func.sum(part), 0) for part in nanos_parts(spend)]


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


def spend_groups(
    conn: Connection,
    caps: Capabilities,
    where: SpendFilter,
    paid: Collection[tuple[str, str]] = (),
    first_paid: PaidJobs | None = None,
    charged_by_entity: list | None = None,
) -> list[SpendGroup]:
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
            key.label("api_key"),
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
            *grain,
            status.label("status"),
            spend_logs.c.call_type,
            *(part.label(name) for part, name in zip(summed_nanos(_finite_spend()), ("spend_high", "spend_low"))),
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
        found = triple + tuple(r[4 : 4 + len(grain)])  # how the narrow queries key their groups
        spend, requests, bad = from_parts(r.spend_high, r.spend_low), int(r.requests), int(r.bad_spend)  # nano-dollars
        if r.status == "failure":
            groups.append(SpendGroup(*triple, IGNORED_FAILURE, to_dollars(spend), requests))
            continue
        if r.status is None and (found, r.call_type) in metadata_failures:
            failed_requests, failed_spend, failed_bad = metadata_failures.pop((found, r.call_type))
            groups.append(SpendGroup(*triple, IGNORED_FAILURE, to_dollars(failed_spend), failed_requests))
            spend, requests, bad = spend - failed_spend, requests - failed_requests, bad - failed_bad
        if not r.api_key:
            if requests:
                groups.append(SpendGroup(*triple, IGNORED_NO_API_KEY, to_dollars(spend), requests))
            continue
        if bad:  # their spend is not in `spend`: it is no amount, so the group of them holds $0
            groups.append(SpendGroup(*triple, IGNORED_BAD_SPEND, 0.0, bad))
            requests -= bad
        if r.call_type in JOB_POLL_CALL_TYPES and (found, r.call_type) in repeats:
            repeat_requests, repeat_spend = repeats.pop((found, r.call_type))
            groups.append(SpendGroup(*triple, IGNORED_REPEAT_POLL, to_dollars(repeat_spend), repeat_requests))
            spend, requests = spend - repeat_spend, requests - repeat_requests
        if requests:
            groups.append(SpendGroup(*triple, CHARGED, to_dollars(spend), requests))
            if charged_by_entity is not None:
                charged_by_entity.append((r.api_key, *found[4:], r.model, r.model_group, r.model_id, to_dollars(spend), requests))
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
        select(
            *group,
            spend_logs.c.call_type,
            func.count(),
            func.count(case((_spend_not_finite(), 1))),
            *summed_nanos(_finite_spend()),
        )
        .where(*where.where(), spend_logs.c.status.is_(None), spend_logs.c.metadata["status"].as_string() == "failure")
        .group_by(*group, spend_logs.c.call_type)
    )
    return {
        (tuple(r[:n]), r[n]): (int(r[n + 1]), from_parts(r[n + 3], r[n + 4]), int(r[n + 2])) for r in hash_aggregated(conn, query)
    }


def _merged(groups: list[SpendGroup]) -> list[SpendGroup]:
    """Rows of one (key, triple, outcome) come from several (status, call_type) groups: add them up."""
    merged: dict[tuple, SpendGroup] = {}
    for g in groups:
        k = (g.api_key, g.model, g.model_group, g.model_id, g.outcome)
        m = merged.get(k)
        merged[k] = g if m is None else SpendGroup(*k, to_dollars(to_nanos(m.spend) + to_nanos(g.spend)), m.requests + g.requests)
    return list(merged.values())


def repeat_polls(
    conn: Connection,
    caps: Capabilities,
    where: SpendFilter,
    paid: Collection[tuple[str, str]] = (),
    first_paid: PaidJobs | None = None,
    by_entity: bool = False,
) -> dict:
    """Paid polls of a job that the same key already paid for, per ((key, model triple), call_type): (rows, spend);
    `by_entity`: per ((key, model triple, *ENTITY_GRAIN), call_type), as spend_groups groups then.

    A finished batch or video reports its whole cost on every poll; LiteLLM charges it once per counter.
    The first paid poll (by endTime, then request_id) counts; the rest are repeats. Reads poll rows only.

    Reading part of the ledger (an incremental report), the jobs in `paid` were paid before it: their polls
    here are all repeats. `first_paid`, when given, receives the jobs first paid here, with their first poll's
    endTime and startTime, so the caller can tell which of them a later read starts after."""
    model, model_group, model_id = model_triple(caps)
    job = _job_id(caps, spend_logs)
    ranked = select(
        spend_logs.c.api_key,
        model.label("model"),
        model_group.label("model_group"),
        model_id.label("model_id"),
        *_grain(by_entity),
        spend_logs.c.call_type,
        spend_logs.c.spend,
        job.label("job"),
        spend_logs.c.endTime,
        spend_logs.c.startTime,
        func.row_number()
        .over(partition_by=(spend_logs.c.api_key, job), order_by=(spend_logs.c.endTime, spend_logs.c.request_id))
        .label("nth"),
    ).where(*where.where(), _is_paid_poll(), row_outcome(caps) == CHARGED)
    partial = bool(paid) or first_paid is not None
    ranked = ranked.cte("ranked") if partial else ranked.subquery()
    grain = [ranked.c[name] for name in ENTITY_GRAIN] if by_entity else []
    group = (ranked.c.api_key, ranked.c.model, ranked.c.model_group, ranked.c.model_id, *grain, ranked.c.call_type)
    n = len(group) - 1  # the columns before call_type
    query = select(*group, func.count(), *summed_nanos(ranked.c.spend)).where(ranked.c.nth > 1).group_by(*group)
    if not partial:  # (rows, nano-dollars)
        return {(tuple(r[:n]), r[n]): (int(r[n + 1]), from_parts(r[n + 2], r[n + 3])) for r in conn.execute(query)}
    # One statement (the ranked polls read once): the repeats grouped as above, then each job's first paid poll.
    nothing = (cast(null(), String), cast(null(), DateTime), cast(null(), DateTime))
    query = union_all(
        select(*group, func.count(), *summed_nanos(ranked.c.spend), *nothing, literal(False, Boolean))
        .where(ranked.c.nth > 1)
        .group_by(*group),
        select(
            *group, literal(1, Integer), *nanos_parts(ranked.c.spend), ranked.c.job, ranked.c.endTime, ranked.c.startTime, true()
        ).where(ranked.c.nth == 1),
    )
    repeats: dict = {}
    for r in conn.execute(query):
        found = (tuple(r[:n]), r[n])
        count, high, low, job, end, start, first = r[n + 1 : n + 8]
        if first and (r[0], job) not in paid:  # the job's first paid poll, and the job was not paid before: charged
            if first_paid is not None:
                first_paid[(r[0], job)] = (_as_datetime(end), _as_datetime(start))
            continue
        rows, total = repeats.get(found, (0, 0))
        repeats[found] = (rows + int(count), total + from_parts(high, low))
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


def stream_charges(
    conn: Connection,
    caps: Capabilities,
    where: SpendFilter,
    scope: str,
    entity_ids: Sequence[str | tuple[str, str]],
    batch: int = 5000,
    paid_jobs: PaidJobs | None = None,
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
    n = len(columns)
    keyed = SCOPE_COLUMNS[scope] == ("api_key",)  # the entity is the key: sorted once, not twice (64 bytes a row)
    query = (
        select(
            *columns,
            spend_logs.c.request_id,
            *([] if keyed else [spend_logs.c.api_key]),
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
    if paid_jobs is None:
        paid_jobs = {}  # (key, job) already charged: later polls are repeats
    for row in result:
        if keyed:
            api_key, request_id, start, end, spend, model, model_group, model_id, job = row
        else:
            request_id, api_key, start, end, spend, model, model_group, model_id, job = row[n:]
        if parse:
            start, end = _as_datetime(start), _as_datetime(end)
        if job is not None:
            if (api_key, job) in paid_jobs:
                continue
            paid_jobs[(api_key, job)] = (end, start)
        yield ChargeRow(
            row[0] if n == 1 else team_member_entity_id(row[0], row[1]),
            request_id,
            api_key,
            start,
            end,
            float(spend or 0.0),
            model,
            model_group,
            model_id,
        )


def _entity_match(scope: str, entity_ids: Sequence[str | tuple[str, str]]) -> tuple[list, ColumnElement[bool]]:
    columns = [spend_logs.c[name] for name in SCOPE_COLUMNS[scope]]
    return columns, (columns[0].in_(list(entity_ids)) if len(columns) == 1 else tuple_(*columns).in_(list(entity_ids)))


def paid_jobs_before(
    conn: Connection, caps: Capabilities, scope: str, entity_ids: Sequence[str | tuple[str, str]], before: datetime
) -> PaidJobs:
    """The jobs these entities paid for in a poll that ended before `before`: seeded into stream_charges' `paid_jobs`
    when it reads from `before` on (SpendFilter.ended_from), so a later poll of them is a repeat, as in a full read."""
    if not entity_ids:
        return {}
    _, matches = _entity_match(scope, entity_ids)
    query = (
        select(spend_logs.c.api_key, _job_id(caps, spend_logs))
        .where(matches, _is_paid_poll(), row_outcome(caps) == CHARGED, spend_logs.c.endTime < before)
        .distinct()
    )
    return {(r[0], r[1]): None for r in conn.execute(query)}


def period_spend(
    conn: Connection,
    caps: Capabilities,
    scope: str,
    starts: Sequence[tuple[str | tuple[str, str], datetime]],
    until: datetime,
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
    periods = _rows_as_table(
        keyed, [*(f"e{i}" for i in range(len(names))), "period_start"], [*(String,) * len(names), DateTime], conn
    )
    matches = [spend_logs.c[name] == periods.c[f"e{i}"] for i, name in enumerate(names)]
    entity_columns = [periods.c[f"e{i}"] for i in range(len(names))]
    read = SpendFilter(since=min(start for _, start in starts), ended_from=ended_from)
    query = (
        select(*entity_columns, func.count(), *summed_nanos(_finite_spend()))
        .select_from(periods.join(spend_logs, and_(*matches, spend_logs.c.startTime >= periods.c.period_start)))
        .where(*read.where(), spend_logs.c.startTime <= until, row_outcome(caps) == CHARGED)
        .group_by(*entity_columns)
    )
    found: dict[str | tuple[str, str], tuple[float, int]] = {}
    for row in conn.execute(query):
        entity = row[0] if len(names) == 1 else (row[0], row[1])
        found[entity] = (to_dollars(from_parts(row[-2], row[-1])), int(row[-3]))
    return found


def lifetime_spend(
    conn: Connection, caps: Capabilities, scopes: Sequence[str], until: datetime, ended_from: datetime | None = None
) -> dict[str, dict[str | tuple[str, str], tuple[float, int]]]:
    """Every entity's charged spend and rows over the whole ledger (to `until`) per scope, as period_spend sums a
    lifetime period: {scope: {entity: (spend, rows)}}. One statement for all the scopes: on PostgreSQL GROUP BY
    GROUPING SETS, one read of the heap where a lifetime period_spend per scope read it once each (scalar lifetime
    spend and total_spend of keys, teams, users, end users and team members); SQLite, which has no grouping sets,
    gets a UNION ALL of one GROUP BY per scope. `ended_from` as in period_spend."""
    scopes = list(dict.fromkeys(scopes))
    if not scopes:
        return {}
    names = list(dict.fromkeys(name for scope in scopes for name in SCOPE_COLUMNS[scope]))
    where = (*SpendFilter(ended_from=ended_from).where(), spend_logs.c.startTime <= until, row_outcome(caps) == CHARGED)
    measures = (func.count(), *summed_nanos(_finite_spend()))
    if conn.dialect.name == "postgresql":
        sets = [tuple_(*(spend_logs.c[name] for name in SCOPE_COLUMNS[scope])) for scope in scopes]
        grouped = func.grouping(*(spend_logs.c[name] for name in names))  # a bit per column left out of the set
        query = select(grouped, *(spend_logs.c[name] for name in names), *measures).where(*where)
        rows = conn.execute(query.group_by(func.grouping_sets(*sets))).all()
        left_out = {
            sum(1 << (len(names) - 1 - n) for n, name in enumerate(names) if name not in SCOPE_COLUMNS[scope]): scope
            for scope in scopes
        }
    else:
        parts = [
            select(
                literal(n),
                *(spend_logs.c[name] if name in SCOPE_COLUMNS[scope] else null() for name in names),
                *measures,
            )
            .where(*where)
            .group_by(*(spend_logs.c[name] for name in SCOPE_COLUMNS[scope]))
            for n, scope in enumerate(scopes)
        ]
        rows = conn.execute(union_all(*parts)).all()
        left_out = dict(enumerate(scopes))
    found: dict[str, dict[str | tuple[str, str], tuple[float, int]]] = {scope: {} for scope in scopes}
    for row in rows:
        scope = left_out[row[0]]
        values_ = tuple(row[1 + names.index(name)] for name in SCOPE_COLUMNS[scope])
        if any(v is None for v in values_):  # period_spend's join never matches a NULL entity
            continue
        found[scope][values_[0] if len(values_) == 1 else values_] = (to_dollars(from_parts(row[-2], row[-1])), int(row[-3]))
    return found


def window_splits(
    conn: Connection,
    caps: Capabilities,
    where: SpendFilter,
    scope: str,
    entity: str | tuple[str, str],
    windows: Sequence[tuple[datetime, datetime]],
) -> list[tuple[datetime, str, str, str, str, float, int]]:
    """One entity's charged rows per window (charged at "endTime" in [start, end), as the replay assigns them), key and
    logged model triple: (window start, api_key, model, model_group, model_id, spend, rows), of the rows in `where` (the
    scan's, whose rows the windows hold; its --since also lets a partitioned ledger skip older partitions). One
    statement, the windows joined as a VALUES list; asked only for entries that charged several model groups."""
    if not windows:
        return []
    names = SCOPE_COLUMNS[scope]
    values_ = (entity,) if isinstance(entity, str) else tuple(entity)
    spans = _rows_as_table(list(windows), ["w_start", "w_end"], [DateTime, DateTime], conn)
    model, model_group, model_id = model_triple(caps)
    key = func.coalesce(spend_logs.c.api_key, "")
    query = (
        select(spans.c.w_start, key, model, model_group, model_id, func.count(), *summed_nanos(_finite_spend()))
        .select_from(spans.join(spend_logs, and_(spend_logs.c.endTime >= spans.c.w_start, spend_logs.c.endTime < spans.c.w_end)))
        .where(
            *where.where(),
            *(spend_logs.c[name] == value for name, value in zip(names, values_, strict=True)),
            spend_logs.c.startTime >= min(start for start, _ in windows) - DEFAULT_LOOKBACK,
            row_outcome(caps) == CHARGED,
        )
        .group_by(spans.c.w_start, key, model, model_group, model_id)
    )
    parse = conn.dialect.name != "postgresql"
    return [
        (_as_datetime(r[0]) if parse else r[0], r[1], r[2], r[3], r[4], to_dollars(from_parts(r[6], r[7])), int(r[5]))
        for r in conn.execute(query)
    ]


def period_charges(
    conn: Connection,
    caps: Capabilities,
    scope: str,
    entity: str | tuple[str, str],
    start: datetime,
    until: datetime,
) -> Iterator[tuple[datetime, datetime, float, bool]]:
    """One entity's charged rows of a scalar period (as period_spend counts them) in charge order: start, end, spend,
    and whether the request came through a team key. Streamed: only asked for entities over their budget."""
    names = SCOPE_COLUMNS[scope]
    values_ = (entity,) if isinstance(entity, str) else tuple(entity)
    team_key = func.coalesce(spend_logs.c.team_id, "") != ""
    query = (
        select(spend_logs.c.startTime, spend_logs.c.endTime, _finite_spend(), case((team_key, 1), else_=0))
        .where(
            *(spend_logs.c[name] == value for name, value in zip(names, values_, strict=True)),
            spend_logs.c.startTime >= start,
            spend_logs.c.startTime <= until,
            row_outcome(caps) == CHARGED,
        )
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
