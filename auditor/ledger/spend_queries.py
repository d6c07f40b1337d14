"""The ledger grouped for `auditor spend` (and the scan's spend lines): one GROUP BY in the database.

It groups on the entity column(s), the logged model triple, the calendar period and the row's outcome
(queries.row_outcome, so "charged" means what it means to the scan), and returns a cell per group (and per
call_type): memory grows with the groups, never with rows. Repeat polls of a paid job, which row_outcome cannot see, are moved out
of the charged cells by a narrow second query over poll rows, run only when charged poll rows exist (as
queries.spend_groups does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, String, and_, case, cast, func, literal, literal_column, select, true

from auditor.errors import InputError
from auditor.ledger.capabilities import Capabilities
from auditor.ledger.queries import (
    CHARGED,
    IGNORED_REPEAT_POLL,
    JOB_POLL_CALL_TYPES,
    SCOPE_COLUMNS,
    SpendFilter,
    _finite_spend,  # the scan's own definitions of a summable spend, a paid poll and a job: one way to decide
    _is_paid_poll,
    _job_id,
    hash_aggregated,
    model_triple,
    row_outcome,
    summed_nanos,
)
from auditor.ledger.schema import spend_logs
from auditor.money import from_parts, to_dollars

TAG = "tag"
ENTITY_COLUMNS: dict[str, tuple[str, ...]] = {**SCOPE_COLUMNS, TAG: ("request_tags",)}
PERIODS = ("day", "week", "month", "total")


class Cell(NamedTuple):
    """One group of ledger rows: entity values ('' where the row has none), logged triple, period start (local
    date, None for total) and outcome. A tuple: a daily read makes one per (key, model, day, outcome)."""

    entity: tuple[str, ...]
    model: str
    model_group: str
    model_id: str
    period: str | None
    outcome: str
    spend: float
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cache_hits: int


def ledger_cells(
    conn: Connection,
    caps: Capabilities,
    where: SpendFilter,
    by: str | tuple[str, ...],
    period: str = "total",
    offsets: Sequence[tuple[datetime | None, int]] = ((None, 0),),
    zone_name: str = "UTC",
) -> list[Cell]:
    """The ledger's rows in `where`, grouped by the entity of `by` (a scope, or "tag": a row counts once under
    each of its request_tags, and under '' when it has none; or a tuple of spend-log columns), model triple,
    calendar `period` and outcome.

    Periods are local to the zone: PostgreSQL converts with the zone's name (AT TIME ZONE); SQLite, which knows
    no zones, shifts "startTime" by `offsets`, the zone's UTC offsets in force from each instant on (the first
    from the beginning), as spend.offset_changes lists them for the range read."""
    if by == TAG and not caps.has_column("LiteLLM_SpendLogs", "request_tags"):
        raise InputError("--by tag: this LiteLLM_SpendLogs has no request_tags column (LiteLLM before tags were logged)")
    source, entity = _entity_source(conn, spend_logs, by)
    bucket = _bucket(conn, spend_logs.c.startTime, period, offsets, zone_name)
    model, model_group, model_id = model_triple(caps)
    outcome = row_outcome(caps)
    keys = [*entity, model, model_group, model_id, bucket, outcome, spend_logs.c.call_type]
    query = select(*keys, *_measures(caps, spend_logs)).select_from(source).where(*where.where()).group_by(*keys)
    rows = hash_aggregated(conn, query)
    n = len(entity)
    dates: dict = {}  # each distinct bucket converted once
    cells = [
        Cell(
            tuple(r[:n]),
            r[n],
            r[n + 1],
            r[n + 2],
            _date(r[n + 3], dates),
            r[n + 4],
            to_dollars(from_parts(r[n + 6], r[n + 7])),
            int(r[n + 8]),
            int(r[n + 9] or 0),
            int(r[n + 10] or 0),
            int(r[n + 11] or 0),
        )
        for r in rows
    ]
    if any(c.outcome == CHARGED and r[n + 5] in JOB_POLL_CALL_TYPES for c, r in zip(cells, rows)):
        # each group of repeats moves out of the charged cells: a cell of them, and the same with the sign turned
        for r in _repeat_polls(conn, caps, where, by, period, offsets, zone_name):
            head = (tuple(r[:n]), r[n], r[n + 1], r[n + 2], _date(r[n + 3], dates))
            values = (
                to_dollars(from_parts(r[n + 4], r[n + 5])),
                int(r[n + 6]),
                int(r[n + 7] or 0),
                int(r[n + 8] or 0),
                int(r[n + 9] or 0),
            )
            cells.append(Cell(*head, IGNORED_REPEAT_POLL, *values))
            cells.append(Cell(*head, CHARGED, *(-v for v in values)))
    return cells


def _date(bucket: object, dates: dict) -> str | None:
    """A period's first day as 'YYYY-MM-DD' (PostgreSQL gives a timestamp, SQLite the text); None for the total."""
    found = dates.get(bucket)
    if found is None and bucket:
        found = dates[bucket] = bucket.date().isoformat() if isinstance(bucket, datetime) else str(bucket)[:10]
    return found


def _measures(caps: Capabilities, table) -> list:
    """spend (finite amounts only, as two exact sums of nano-dollars: money.from_parts), rows, prompt and completion
    tokens, cache hits."""

    def tokens(name: str):
        return func.coalesce(func.sum(table.c[name]), 0) if caps.has_column("LiteLLM_SpendLogs", name) else literal(0)

    hit = (
        func.count(case((func.lower(func.coalesce(table.c.cache_hit, "")) == "true", 1)))
        if caps.has_column("LiteLLM_SpendLogs", "cache_hit")
        else literal(0)
    )
    return [*summed_nanos(_finite_spend(table)), func.count(), tokens("prompt_tokens"), tokens("completion_tokens"), hit]


def _entity_source(conn: Connection, table, by: str):
    """(FROM clause, entity expressions). Tags are unnested with a table function joined to each row (LEFT JOIN
    ... ON true: a row without tags keeps one line, tag ''); a request_tags value that is not a JSON array
    counts as no tags rather than failing the statement."""
    if isinstance(by, tuple):  # spend-log columns named directly (the scan's lines of every scope at once)
        return table, [func.coalesce(table.c[name], "") for name in by]
    if by not in ENTITY_COLUMNS:
        raise InputError(f"--by {by!r}: use one of {', '.join(ENTITY_COLUMNS)}")
    if by != TAG:
        return table, [func.coalesce(table.c[name], "") for name in SCOPE_COLUMNS[by]]
    tags = table.c.request_tags
    if conn.dialect.name == "postgresql":
        array = case((func.jsonb_typeof(tags) == "array", tags), else_=literal_column("'[]'::jsonb"))
        unnested = func.jsonb_array_elements_text(array).table_valued("value").alias("tag")
        value = unnested.c.value
    else:
        array = case((and_(func.json_valid(tags) == 1, func.json_type(tags) == "array"), tags), else_=literal("[]"))
        unnested = func.json_each(array).table_valued("value").alias("tag")
        value = cast(unnested.c.value, String)
    return table.outerjoin(unnested, true()), [func.coalesce(value, "")]


def _bucket(conn: Connection, column, period: str, offsets: Sequence[tuple[datetime | None, int]], zone_name: str):
    """The local calendar day, week (from Monday) or month a UTC "startTime" falls in: its first day ('YYYY-MM-DD'
    on SQLite, midnight of it on PostgreSQL); '' for the total."""
    if period not in PERIODS:
        raise InputError(f"--period {period!r}: use one of {', '.join(PERIODS)}")
    if period == "total":
        return literal("", String)
    if conn.dialect.name == "postgresql":
        local = func.timezone(zone_name, func.timezone("UTC", column))
        return func.date_trunc(period, local)  # a timestamp: grouping on to_char's text costs three times as much
    shifts = [(since, f"{seconds:+d} seconds") for since, seconds in offsets]
    first = shifts[0][1]
    later = [(column >= since, shift) for since, shift in reversed(shifts[1:])]
    local = func.datetime(column, case(*later, else_=literal(first)) if later else literal(first))
    if period == "day":
        return func.date(local)
    if period == "week":
        return func.date(local, "-6 days", "weekday 1")
    return func.strftime("%Y-%m-01", local)


def _repeat_polls(
    conn: Connection, caps: Capabilities, where: SpendFilter, by: str, period: str, offsets, zone_name: str
) -> list:
    """The charged polls of a job after its first paid one (by "endTime", then request_id, per key: as
    queries.repeat_polls ranks them), grouped like ledger_cells' cells without the outcome."""
    model, model_group, model_id = model_triple(caps)
    wanted = [spend_logs.c[name] for name in (by if isinstance(by, tuple) else ENTITY_COLUMNS[by])]
    extra = [
        spend_logs.c[name]
        for name in ("prompt_tokens", "completion_tokens", "cache_hit")
        if caps.has_column("LiteLLM_SpendLogs", name)
    ]
    ranked = (
        select(
            *wanted,
            *extra,
            spend_logs.c.startTime,
            spend_logs.c.spend,
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
            func.row_number()
            .over(
                partition_by=(spend_logs.c.api_key, _job_id(caps, spend_logs)),
                order_by=(spend_logs.c.endTime, spend_logs.c.request_id),
            )
            .label("nth"),
        )
        .where(*where.where(), _is_paid_poll(), row_outcome(caps) == CHARGED)
        .subquery("ranked")
    )
    source, entity = _entity_source(conn, ranked, by)
    bucket = _bucket(conn, ranked.c.startTime, period, offsets, zone_name)
    keys = [*entity, ranked.c.model, ranked.c.model_group, ranked.c.model_id, bucket]
    query = select(*keys, *_measures(caps, ranked)).select_from(source).where(ranked.c.nth > 1).group_by(*keys)
    return conn.execute(query).all()
