"""The ledger against LiteLLM's daily rollups (LiteLLM_DailyUserSpend, DailyTeamSpend, DailyEndUserSpend): the
ledger grouped per UTC day, key, model and provider, and where a rollup table disagrees, compared in the database."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Float,
    Numeric,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.sql import ColumnElement

from auditor.ledger.capabilities import Capabilities
from auditor.ledger.queries import (
    IGNORED_FAILURE,
    _finite_spend,
    _spend_not_finite,
    hash_aggregated,
    nanos_parts,
    row_outcome,
)
from auditor.ledger.schema import spend_logs
from auditor.money import NANOS_PER_DOLLAR, SPLIT, from_parts, to_dollars

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


def _provider(caps: Capabilities) -> ColumnElement[str]:
    """A row's custom_llm_provider as the rollups key it ('' for NULL, or for a ledger too old to have it)."""
    if caps.has_column("LiteLLM_SpendLogs", "custom_llm_provider"):
        return func.coalesce(spend_logs.c.custom_llm_provider, "")
    return literal("", String)


def _ledger_day_rows(conn: Connection, caps: Capabilities, by: str, first_day: str, last_day: str):
    """The ledger's rows as a Daily*Spend table counts them: rows LiteLLM rolls up for its entity (`by`: "user",
    team_id, end_user; ROLLED_UP) whose UTC day is in range, at the rollup's grain (day, key, model, provider).
    Columns: day, api_key, model, provider, spend_high, spend_low (the row's nano-dollars, queries.nanos_parts, so
    sums are exact), failed (0/1). Spend that is not a finite amount (row_outcome) adds nothing, so sums stay finite;
    LiteLLM's own rollup would hold NaN, Infinity or the junk amount there."""
    provider = _provider(caps)
    failed = row_outcome(caps) == IGNORED_FAILURE
    return select(
        _day_of(conn, spend_logs.c.startTime).label("day"),
        spend_logs.c.api_key.label("api_key"),
        func.coalesce(spend_logs.c.model, "").label("model"),
        provider.label("provider"),
        *(part.label(name) for part, name in zip(nanos_parts(_finite_spend()), ("spend_high", "spend_low"))),
        case((failed, 1), else_=0).label("failed"),
    ).where(
        *_rolled_up(by),
        spend_logs.c.startTime >= datetime.fromisoformat(first_day),
        spend_logs.c.startTime < datetime.fromisoformat(last_day) + timedelta(days=1),
    )


def ledger_days(conn: Connection, caps: Capabilities, by: str, first_day: str, last_day: str) -> dict[RollupKey, DayTotals]:
    """The ledger grouped like a Daily*Spend table, per UTC day, key, model and provider: spend and counts over
    every row, failures included, as LiteLLM adds them."""
    rows = _ledger_day_rows(conn, caps, by, first_day, last_day).subquery()
    query = select(
        rows.c.day,
        rows.c.api_key,
        rows.c.model,
        rows.c.provider,
        func.sum(rows.c.spend_high),
        func.sum(rows.c.spend_low),
        func.count(),
        func.sum(1 - rows.c.failed),
        func.sum(rows.c.failed),
    ).group_by(rows.c.day, rows.c.api_key, rows.c.model, rows.c.provider)
    return {
        (r[0], r[1], r[2], r[3]): DayTotals(to_dollars(from_parts(r[4], r[5])), int(r[6]), int(r[7]), int(r[8]))
        for r in hash_aggregated(conn, query)
    }


@dataclass(frozen=True)
class RollupRead:
    """One Daily*Spend table to compare: its name, table, the entity column LiteLLM rolls it up by ("user",
    team_id, end_user) and the runs of days (first, last; ISO, inclusive) to compare."""

    name: str
    table: Any
    by: str
    runs: Sequence[tuple[str, str]]


def rollup_disagreements(
    conn: Connection, caps: Capabilities, reads: Sequence[RollupRead], tolerance: float
) -> dict[str, list[tuple[RollupKey, DayTotals | None, DayTotals | None]]]:
    """Where each Daily*Spend table and the ledger disagree, per (day, key, model, provider): (key, ledger's totals,
    rollup's totals), None where a side has no row; per table name. Compared in the database: a ledger of 90 days
    x thousands of keys has hundreds of thousands of such cells and only the disagreements leave the server, so
    memory grows with disagreements.

    Only days whose checksums differ (_suspect_days; every day where the database cannot tell) are compared cell by
    cell, one statement a day (_day_disagreements) for every table: a day's cells (~7k on 10M rows) fit
    PostgreSQL's default work_mem, where the whole range's 580k spilled 1.7 GB to disk in 256 batches, and each
    day's "startTime" range is read through its index."""
    days = sorted({day for read in reads for lo, hi in read.runs for day in _days(lo, hi)})
    found: dict[str, list] = {read.name: [] for read in reads if read.runs}
    suspect = _suspect_days(conn, caps, reads, tolerance)
    for day in days:
        on_day = [
            RollupRead(r.name, r.table, r.by, [(day, day)])
            for r in reads
            if any(lo <= day <= hi for lo, hi in r.runs) and (suspect is None or day in suspect[r.name])
        ]
        if on_day:
            for name, cells in _day_disagreements(conn, caps, day, on_day, tolerance).items():
                found[name] += cells
    return found


def _suspect_days(
    conn: Connection, caps: Capabilities, reads: Sequence[RollupRead], tolerance: float
) -> dict[str, set[str]] | None:
    """Per table, the days whose cells may disagree with the ledger's; None where the database cannot tell (SQLite:
    every day is compared cell by cell).

    A day's cells all agree only if its checksums agree: per table and day, each side's request count, the sum of
    a 64-bit hash of each request's cell (key, model, provider: a request counted in another cell, or missing, or
    twice, changes it), and its spend three times, plain and weighted by two 8-bit weights from that hash (spend
    moved between cells with the counts unchanged changes a weighted sum unless both cells draw both weights
    alike: 1 in 65,536). Each check is at least as strict as the cells' own (counts exact, spend within half the
    tolerance, NaN differs), so a day that passes has no disagreeing cell and is not read again; a healthy
    proxy's ledger is read once for all tables and days (10M rows: one parallel pass instead of 90 statements)."""
    if conn.dialect.name != "postgresql" or not reads or _major_version(caps) < 11:  # hashtextextended: PostgreSQL 11
        return None
    ledger = _day_checksums_ledger(conn, caps, reads)
    suspect: dict[str, set[str]] = {}
    zero = (0, 0, 0.0, 0.0, 0.0)  # a side with no row that day
    for n, read in enumerate(reads):
        days = {day for lo, hi in read.runs for day in _days(lo, hi)}
        cached = _day_checksums_rollup(conn, read)
        suspect[read.name] = {
            day for day in days if not _checksums_agree(ledger.get(day, {}).get(n, zero), cached.get(day, zero), tolerance / 2)
        }
    return suspect


def _major_version(caps: Capabilities) -> int:
    """12 of "postgresql 12.19 (Debian ...)"; 0 where the server says something else."""
    number = re.match(r"\S+ (\d+)", caps.server_version)
    return int(number[1]) if number else 0


def _checksums_agree(logged: tuple, cached: tuple, tolerance: float) -> bool:
    count, hashed, *spends = logged
    r_count, r_hashed, *r_spends = cached
    return (
        int(count) == int(r_count)
        and int(hashed) == int(r_hashed)
        and all(abs(float(a) - float(b)) <= tolerance for a, b in zip(spends, r_spends))  # NaN differs
    )


def _cell_hash(api_key, model, provider) -> ColumnElement[int]:
    """A 64-bit hash of a rollup cell (day aside), the same expression on both sides of _suspect_days."""
    return func.hashtextextended(func.concat_ws("|", api_key, model, provider), 0)


def _weights(hashed) -> tuple[ColumnElement[int], ColumnElement[int]]:
    return (hashed.op("&")(255) + 1, hashed.op(">>")(8).op("&")(255) + 1)


def _in_runs(column, runs: Sequence[tuple[str, str]], as_time: bool) -> ColumnElement[bool]:
    if as_time:
        return or_(
            *(
                and_(column >= datetime.fromisoformat(lo), column < datetime.fromisoformat(hi) + timedelta(days=1))
                for lo, hi in runs
            )
        )
    return or_(*(and_(column >= lo, column <= hi) for lo, hi in runs))


def _day_checksums_ledger(conn: Connection, caps: Capabilities, reads: Sequence[RollupRead]) -> dict[str, dict[int, tuple]]:
    """The ledger's side of _suspect_days: one pass over every day any table compares, grouped by UTC day and by
    whether a row has a team and an end user (_rolled_up: at most four groups a day), then each table's checksums
    added up here from the groups it rolls up, keyed by its index in `reads`. Grouping on the flags, not a FILTER
    per table, keeps the hash to three evaluations a row: PostgreSQL inlines it into every aggregate that reads it
    (twelve, and 23 s instead of 8 s on 10M rows)."""
    flags = {by: rolled[0].label(f"in_{by}") for read in reads if (rolled := _rolled_up(by := read.by))}
    rows = select(
        cast(spend_logs.c.startTime, Date).label("day"),
        _cell_hash(spend_logs.c.api_key, func.coalesce(spend_logs.c.model, ""), _provider(caps)).label("h"),
        _finite_spend().label("spend"),
        *flags.values(),
    ).where(_in_runs(spend_logs.c.startTime, sorted({run for read in reads for run in read.runs}), as_time=True))
    sub = rows.subquery()
    w1, w2 = _weights(sub.c.h)
    grouped = (sub.c.day, *(sub.c[f"in_{by}"] for by in flags))
    measures = (func.count(), func.sum(sub.c.h), func.sum(sub.c.spend), func.sum(sub.c.spend * w1), func.sum(sub.c.spend * w2))
    query = select(*grouped, *(func.coalesce(m, 0) for m in measures)).group_by(*grouped)
    found: dict[str, dict[int, tuple]] = {}
    for day, *values in hash_aggregated(conn, query):
        flagged, sums = dict(zip(flags, values[: len(flags)])), values[len(flags) :]
        tables = found.setdefault(day.isoformat(), {})
        for n, read in enumerate(reads):
            if read.by in flags and not flagged[read.by]:
                continue
            count, hashed, *spends = tables.get(n, (0, 0, 0.0, 0.0, 0.0))
            tables[n] = (
                count + int(sums[0]),
                hashed + int(sums[1]),
                *(a + float(b) for a, b in zip(spends, sums[2:])),
            )
    return found


def _day_checksums_rollup(conn: Connection, read: RollupRead) -> dict[str, tuple]:
    """A Daily*Spend table's side of _suspect_days: per day, its request count, the hash sum (each row's hash times
    its api_requests) and the spend sums."""
    t = read.table
    hashed = _cell_hash(t.c.api_key, func.coalesce(t.c.model, ""), func.coalesce(t.c.custom_llm_provider, ""))
    w1, w2 = _weights(hashed)
    requests = func.coalesce(t.c.api_requests, 0)
    query = (
        select(
            t.c.date,
            func.coalesce(func.sum(requests), 0),
            func.coalesce(func.sum(cast(hashed, Numeric) * requests), 0),  # a 64-bit hash times a count: numeric
            func.coalesce(func.sum(t.c.spend), 0.0),
            func.coalesce(func.sum(t.c.spend * w1), 0.0),
            func.coalesce(func.sum(t.c.spend * w2), 0.0),
        )
        .where(_in_runs(t.c.date, read.runs, as_time=False))
        .group_by(t.c.date)
    )
    return {day: tuple(values) for day, *values in conn.execute(query)}


def _days(first: str, last: str) -> list[str]:
    start, end = datetime.fromisoformat(first), datetime.fromisoformat(last)
    return [(start + timedelta(days=n)).date().isoformat() for n in range((end - start).days + 1)]


def _day_disagreements(
    conn: Connection, caps: Capabilities, day: str, reads: Sequence[RollupRead], tolerance: float
) -> dict[str, list[tuple[RollupKey, DayTotals | None, DayTotals | None]]]:
    """One day of every table in one statement, reading the day's ledger rows once: grouped at the rollups' grain
    with whether each row has a team and an end user (the WITH query, which PostgreSQL materializes once when
    several tables use it); each table then takes its rows (_rolled_up), and one aggregate over both sides per
    table (UNION ALL, then GROUP BY the cell, no join) keeps the cells that differ by rollup_checks.rollup_differs'
    test: spend beyond the tolerance (NaN differs) or a different request count."""
    flags = {by: rolled[0].label(f"in_{by}") for read in reads if (rolled := _rolled_up(by := read.by))}
    rows = _ledger_day_rows(conn, caps, "user", day, day).add_columns(*flags.values()).subquery()
    cells = (rows.c.day, rows.c.api_key, rows.c.model, rows.c.provider, *(rows.c[f"in_{by}"] for by in flags))
    ledger = (
        select(
            *cells,
            func.sum(rows.c.spend_high).label("l_high"),
            func.sum(rows.c.spend_low).label("l_low"),
            func.count().label("l_rows"),
            func.sum(rows.c.failed).label("l_failed"),
        )
        .group_by(*cells)
        .cte("ledger")
    )
    query = union_all(
        *(_compared(ledger, read, ledger.c[f"in_{read.by}"] if read.by in flags else None, tolerance) for read in reads)
    )
    found: dict[str, list] = {read.name: [] for read in reads}
    for r in hash_aggregated(conn, query):
        logged = DayTotals(to_dollars(from_parts(r[5], r[6])), int(r[7]), int(r[7]) - int(r[8]), int(r[8])) if r[7] else None
        cached = DayTotals(float(r[9]), int(r[10]), int(r[11]), int(r[12])) if r[13] else None
        found[r[0]].append(((r[1], r[2], r[3], r[4]), logged, cached))
    return found


def _compared(ledger, read: RollupRead, flag, tolerance: float):
    """One table's disagreeing cells: the ledger's cells it rolls up and its own rows, on its days, summed per cell."""
    t = read.table
    zero, none = literal(0), null()
    on_ledger_days = or_(*(and_(ledger.c.day >= lo, ledger.c.day <= hi) for lo, hi in read.runs))
    on_table_days = or_(*(and_(t.c.date >= lo, t.c.date <= hi) for lo, hi in read.runs))
    both = union_all(
        select(
            ledger.c.day,
            ledger.c.api_key,
            ledger.c.model,
            ledger.c.provider,
            ledger.c.l_high,
            ledger.c.l_low,
            ledger.c.l_rows,
            ledger.c.l_failed,
            none.label("r_spend"),
            zero.label("r_requests"),
            zero.label("r_ok"),
            zero.label("r_failed"),
            zero.label("r_rows"),
        ).where(on_ledger_days, *([flag] if flag is not None else [])),
        select(
            t.c.date,
            t.c.api_key,
            func.coalesce(t.c.model, ""),
            func.coalesce(t.c.custom_llm_provider, ""),
            none,
            none,
            zero,
            zero,
            t.c.spend,
            func.coalesce(t.c.api_requests, 0),
            func.coalesce(t.c.successful_requests, 0),
            func.coalesce(t.c.failed_requests, 0),
            literal(1),
        ).where(on_table_days),
    ).subquery()
    l_high, l_low, l_rows = (
        func.coalesce(func.sum(both.c.l_high), 0),
        func.coalesce(func.sum(both.c.l_low), 0),
        func.coalesce(func.sum(both.c.l_rows), 0),
    )
    # in dollars for the test only (within the tolerance, a double is close enough); the totals are exact (from_parts)
    l_spend = (cast(l_high, Float) * float(SPLIT) + cast(l_low, Float)) / float(NANOS_PER_DOLLAR)
    r_spend, r_requests = func.coalesce(func.sum(both.c.r_spend), 0.0), func.sum(both.c.r_requests)
    return (
        select(
            literal(read.name, String).label("name"),
            both.c.day,
            both.c.api_key,
            both.c.model,
            both.c.provider,
            l_high,
            l_low,
            l_rows,
            func.coalesce(func.sum(both.c.l_failed), 0),
            r_spend,
            r_requests,
            func.sum(both.c.r_ok),
            func.sum(both.c.r_failed),
            func.sum(both.c.r_rows),
        )
        .group_by(both.c.day, both.c.api_key, both.c.model, both.c.provider)
        .having(or_(~(func.abs(l_spend - r_spend) <= tolerance), l_rows != r_requests))  # NOT (NaN <= x) holds: NaN differs
    )


EMPTY_DIGEST = "0-0"  # a day without rollup rows


def rollup_day_digests(conn: Connection, table, first_day: str, last_day: str) -> dict[str, str]:
    """A digest of each day's Daily*Spend rows: `rows-sum` (hex), the sum over its rows of the first 60 bits of the
    md5 of `api_key|model|provider|nanos high|nanos low|bad|requests|successes|failures`, spend in whole
    nano-dollars (queries.nanos_parts), so the text does not depend on how the database prints a float. A sum
    needs no order: PostgreSQL computes it in one parallel hash aggregate of a row a day, with no sort and no group
    per rollup row (which spilled to disk at work_mem 4 MB: 0.9 s for 94k rows). SQLite sends the rows' fields,
    hashed here to the same text."""
    t = table
    high, low = (func.coalesce(part, 0) for part in nanos_parts(_finite_spend(t)))
    fields = (
        t.c.api_key,
        func.coalesce(t.c.model, ""),
        func.coalesce(t.c.custom_llm_provider, ""),
        high,
        low,
        case((_spend_not_finite(t), 1), else_=0),
        func.coalesce(t.c.api_requests, 0),
        func.coalesce(t.c.successful_requests, 0),
        func.coalesce(t.c.failed_requests, 0),
    )
    where = (t.c.date >= first_day, t.c.date <= last_day)
    if conn.dialect.name == "postgresql":
        line = func.concat_ws("|", *fields)
        bits = cast(cast(func.concat("x", func.substr(func.md5(line), 1, 15)), BIT(60)), BigInteger)
        query = select(t.c.date, func.count(), func.sum(bits)).where(*where).group_by(t.c.date)
        return {day: _digest(rows, total) for day, rows, total in conn.execute(query)}
    sums: dict[str, list[int]] = {}
    for day, *values in conn.execute(select(t.c.date, *fields).where(*where)):
        bucket = sums.setdefault(day, [0, 0])
        bucket[0] += 1
        bucket[1] += int(hashlib.md5("|".join(map(str, values)).encode("utf-8")).hexdigest()[:15], 16)
    return {day: _digest(rows, total) for day, (rows, total) in sums.items()}


def _digest(rows: int, total: object) -> str:
    return f"{rows}-{int(total or 0):x}"  # PostgreSQL sums bigint as numeric: Decimal, exact


def rollup_days(conn: Connection, table, first_day: str, last_day: str) -> dict[RollupKey, DayTotals]:
    """A Daily*Spend table summed over its entities, tools and endpoints to the ledger's grain."""
    t = table
    provider = func.coalesce(t.c.custom_llm_provider, "")
    model = func.coalesce(t.c.model, "")
    query = (
        select(
            t.c.date,
            t.c.api_key,
            model,
            provider,
            func.sum(t.c.spend),
            func.sum(t.c.api_requests),
            func.sum(t.c.successful_requests),
            func.sum(t.c.failed_requests),
        )
        .where(t.c.date >= first_day, t.c.date <= last_day)
        .group_by(t.c.date, t.c.api_key, model, provider)
    )
    return {
        (r[0], r[1], r[2], r[3]): DayTotals(float(r[4] or 0.0), int(r[5] or 0), int(r[6] or 0), int(r[7] or 0))
        for r in conn.execute(query)
    }


def rollup_date_range(conn: Connection, table) -> tuple[str | None, str | None]:
    row = conn.execute(select(func.min(table.c.date), func.max(table.c.date))).one()
    return row[0], row[1]
