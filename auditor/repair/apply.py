"""Making a backfill plan's writes (`apply`) and putting them back (`undo`), journaled, on a live proxy.

The plan (auditor.repair.plan) is pure; here is the I/O:

- PostgreSQL rows (LiteLLM_BudgetWindowSpend, legacy model_spend) are written in one transaction
  per run (or per `batch` entities), each row locked with SELECT … FOR UPDATE and compared with the
  value the plan read; a row the proxy changed meanwhile is recomputed inside the lock by re-summing
  the ledger for its window in SQL, never overwritten blindly. The journal row of each change is
  inserted in the same transaction.
- Redis keys are written by one Lua compare-and-set per counter (spend key and start key together):
  SET with an absolute expiry at the window's end, never INCRBYFLOAT (LiteLLM issue #28247). A CAS
  that finds a different value re-sums the ledger and retries on what it found. The journal records
  the intent before and the outcome after, so a crash shows as an incomplete run.

Nothing here prints; the CLI (`auditor.cli.backfill`) renders.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, and_, select
from sqlalchemy.exc import DBAPIError

from auditor.errors import InputError, UnavailableError
from auditor.ledger.db import json_value
from auditor.ledger.schema import budget_window_spend, end_user_table, team_membership, team_table, user_table, verification_token
from auditor.litellm.counters import epoch_to_utc, parse_float
from auditor.repair import journal, live
from auditor.repair.live import Delta, Ledger, WindowAsk, observe, write_deltas
from auditor.repair.plan import (
    BWS,
    BWS_ENTITY_TYPE,
    MODEL_SPEND,
    REDIS,
    REMOVE,
    RESTORE,
    SCALAR,
    SET,
    SKIP,
    Plan,
    PlannedWrite,
    epoch_ms,
    iso_ms,
    money_value,
    start_value,
    tally,
)
from auditor.repair.redis_cas import redis_cas
from auditor.repair.snapshot import naive_utc

if TYPE_CHECKING:
    from redis import Redis

# The tables holding each scope's scalar spend, by the name the plan gives them (plan.SCALAR_ROWS).
SCALAR_TABLES = {t.name: t for t in (verification_token, team_table, user_table, end_user_table, team_membership)}


@dataclass
class Outcome:
    write: PlannedWrite
    state: str
    written: list[dict] | None = None
    reason: str | None = None
    replaced: list[dict] | None = None  # what was really there when written (differs from the plan's old when recomputed)

    def journal_record(self) -> dict:
        record = self.write.journal_record()
        if self.replaced is not None:
            record["old"] = list(self.replaced)
        return record

    def as_record(self) -> dict:
        return {
            "target": self.write.target,
            "action": self.write.action,
            "key": self.write.key,
            "state": self.state,
            "old_value": self.write.old_value,
            "planned_value": self.write.new_value,
            "written_value": _written_value(self.write.target, self.written),
            "reason": self.reason,
        }


def _written_value(target: str, written: list[dict] | None) -> float | None:
    if not written:
        return None
    cell = written[0]
    if target == REDIS:
        return parse_float(cell.get("value")) if cell.get("value") is not None else None
    if target == BWS:
        return cell.get("spend")
    if target == SCALAR:
        return cell.get("spend")
    if target == MODEL_SPEND and isinstance(cell.get("model_spend"), Mapping):
        return sum(parse_float(v) or 0.0 for v in cell["model_spend"].values())
    return None


@dataclass
class RunReport:
    run_id: str
    kind: str
    outcomes: list[Outcome]
    status: str = journal.COMPLETED
    parent_run_id: str | None = None

    def counts(self) -> dict[str, int]:
        return tally(o.state for o in self.outcomes)

    def as_record(self) -> dict:
        return {
            "run_id": self.run_id,
            "kind": self.kind,
            "status": self.status,
            "parent_run_id": self.parent_run_id,
            "counts": self.counts(),
            "results": [o.as_record() for o in self.outcomes],
        }


class Interrupted(Exception):
    """SIGINT/SIGTERM asked the run to stop: raised at the next safe point (between changes, between chunks)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass
class WriteEnv:
    """What apply/undo write through, injected so tests drive time and pauses."""

    engine: Engine  # read-write; a small pool, one connection at a time
    redis: Redis | None
    ledger: Ledger | None
    masked_db: str
    clock: Callable[[], datetime]  # wall clock, naive UTC
    batch: int = 0  # entities per database transaction; 0 = all in one
    hook: Callable[[str], None] = lambda what: None  # called after every write (tests pause or crash here)
    tolerance: float = 0.0001
    flush_lag: float = 0.0  # seconds from a request's counter increment until its spend-log row is in the database, at most
    increment_lag: float = 0.0  # seconds from a request's endTime until its increment is in Redis, at most
    stop: Callable[[], str | None] = lambda: None  # the signal's name once the run was asked to stop
    started: Callable[[str], None] = lambda run_id: None  # told the run id as soon as it is journaled
    waiting: Callable[[float], None] = lambda seconds: None  # told before the flush wait

    def check(self) -> None:
        signal_name = self.stop()
        if signal_name:
            raise Interrupted(signal_name)

    def wait(self, seconds: float) -> None:
        """Sleep, interruptibly."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def apply(plan_: Plan, env: WriteEnv, options: Mapping, report: RunReport | None = None) -> RunReport:
    """Journal a run and make every planned write, with the safeguards in the module docstring. `report`, when
    given, is filled in place, so a caller that sees Interrupted still knows the run id and what was written."""
    writes = list(enumerate(plan_.writes))
    actionable = [(seq, w) for seq, w in writes if w.action != SKIP]
    report = report if report is not None else RunReport("", "backfill", [])
    report.run_id = _start(env, "backfill", options)
    env.started(report.run_id)
    _run_guarded(env, report, lambda: _apply_all(actionable, env, report))
    return report


def undo(run_id: str, env: WriteEnv, report: RunReport | None = None) -> RunReport:
    """Put back the old values of a run's changes wherever nothing changed them since (same compare-and-set)."""
    with _begin(env) as conn:
        journal.require_current(conn, env.masked_db)
        run = journal.find_run(conn, run_id)
        changes = journal.changes_of(conn, run.id)
    todo = [c for c in changes if c.state in journal.WRITTEN_STATES or c.state == journal.INTENT]
    todo.sort(key=lambda c: c.seq, reverse=True)
    report = report if report is not None else RunReport("", "undo", [])
    report.run_id, report.parent_run_id = _start(env, "undo", {"undo_of": run.id}, parent=run.id), run.id
    env.started(report.run_id)
    writes = []
    for seq, change in enumerate(todo):
        expected = change.written if change.state != journal.INTENT else change.new
        writes.append(
            (
                seq,
                PlannedWrite(
                    target=change.target,
                    action=RESTORE,
                    key=change.key,
                    scope=change.scope,
                    entity_id=change.entity_id,
                    old=tuple(expected or ()),
                    new=tuple(change.old or ()),
                    why=f"undo of run {run.id} change {change.seq}",
                    old_value=_written_value(change.target, expected),
                    new_value=_written_value(change.target, change.old),
                ),
            )
        )
    _run_guarded(env, report, lambda: _apply_all(writes, env, report))
    return report


def _start(env: WriteEnv, kind: str, options: Mapping, parent: str | None = None) -> str:
    with _begin(env) as conn:
        journal.require_current(conn, env.masked_db)
        return journal.start_run(conn, kind, options, env.clock(), parent_run_id=parent)


def _begin(env: WriteEnv):
    return env.engine.begin()


def _run_guarded(env: WriteEnv, report: RunReport, body: Callable[[], None]) -> None:
    """Any failure: the open transaction rolls back, the run is marked failed (best effort), one line goes up."""
    import redis as redis_lib

    try:
        body()
    except DBAPIError as err:
        detail = _db_detail(err)
        _finish(env, report, journal.FAILED, f"database error: {detail}")
        raise UnavailableError(
            f"lost the database connection to {env.masked_db} during run {report.run_id}: {detail}; "
            "its open transaction was rolled back (earlier ones stay committed and journaled)"
            if _is_disconnect(err)
            else f"database error on {env.masked_db} during run {report.run_id}: {detail}; its open transaction was rolled back"
        ) from None
    except redis_lib.RedisError as err:
        from auditor.ledger.db import mask_text

        detail = mask_text(str(err).splitlines()[0] if str(err) else type(err).__name__)
        _finish(env, report, journal.FAILED, f"redis error: {detail}")
        raise UnavailableError(
            f"Redis failed during run {report.run_id}: {detail}; the journal says which writes completed"
        ) from None
    except Interrupted as err:
        _finish(env, report, journal.INTERRUPTED, f"interrupted by {err.signal_name}")
        raise
    except BaseException as err:
        if isinstance(err, (InputError, UnavailableError)):
            _finish(env, report, journal.FAILED, str(err))
        raise
    report.status = journal.COMPLETED
    _finish(env, report, journal.COMPLETED, None)


def _finish(env: WriteEnv, report: RunReport, status: str, message: str | None) -> None:
    report.status = status
    try:
        with _begin(env) as conn:
            journal.finish_run(conn, report.run_id, status, env.clock(), report.counts(), message)
    except DBAPIError:
        if status == journal.COMPLETED:
            raise
        # The database is gone: the run stays `running` with no finish time, which history shows as incomplete.


def _db_detail(err: DBAPIError) -> str:
    from auditor.ledger.db import error_line

    return error_line(err)  # masked; a denied privilege is named


_DISCONNECTED = (
    "terminating connection",
    "server closed the connection",
    "connection is closed",
    "connection already closed",
    "consuming input failed",
    "could not receive data",
    "ssl syscall error: eof",
)


def _is_disconnect(err: DBAPIError) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return bool(err.connection_invalidated) or any(s in text for s in _DISCONNECTED)


def _apply_all(writes: list[tuple[int, PlannedWrite]], env: WriteEnv, report: RunReport) -> None:
    database = [(s, w) for s, w in writes if w.target in (BWS, MODEL_SPEND, SCALAR)]
    in_redis = [(s, w) for s, w in writes if w.target == REDIS]
    for batch in _batches(database, env.batch):
        outcomes = []
        with _begin(env) as conn:  # an interrupt inside rolls the whole batch back, journal rows included
            for seq, write in batch:
                env.check()
                outcomes.append((seq, _write_row(conn, write, env)))
                env.hook(f"{write.target} {seq}")
            env.check()  # asked to stop: the open transaction is rolled back, not committed
            journal.record_changes(
                conn, report.run_id, ((seq, o.journal_record(), o.state, o.written, o.reason) for seq, o in outcomes), env.clock()
            )
        report.outcomes += [o for _, o in outcomes]  # only once committed
    if in_redis and env.redis is None:
        raise InputError("the plan writes Redis keys but no Redis is configured: pass --redis")
    counters = [(s, w) for s, w in in_redis if w.action == SET and w.budget_model is not None and env.ledger is not None]
    others = [(s, w) for s, w in in_redis if not (w.action == SET and w.budget_model is not None and env.ledger is not None)]
    for start in range(0, len(others), live.CHUNK):
        env.check()
        _redis_chunk(others[start : start + live.CHUNK], env, report, lambda chunk: [_write_redis(w, env) for _, w in chunk])
    if counters:
        _apply_live_counters(counters, env, report)
    env.check()  # a signal during the last change: the run says it was interrupted, with every change journaled


def _redis_chunk(
    chunk: list[tuple[int, PlannedWrite]],
    env: WriteEnv,
    report: RunReport,
    write: Callable[[list[tuple[int, PlannedWrite]]], list[Outcome]],
) -> None:
    """Intents committed, then the Redis writes, then their outcomes: a crash in between shows the intents."""
    with _begin(env) as conn:
        journal.record_changes(
            conn, report.run_id, ((seq, w.journal_record(), journal.INTENT, None, None) for seq, w in chunk), env.clock()
        )
    env.hook(f"intent {chunk[0][0]}")
    outcomes = write(chunk)
    with _begin(env) as conn:
        journal.update_changes(
            conn,
            report.run_id,
            ((seq, o.state, o.written, o.reason, o.replaced) for (seq, _), o in zip(chunk, outcomes, strict=True)),
            env.clock(),
        )
    report.outcomes += outcomes
    for seq, _ in chunk:
        env.hook(f"redis {seq}")


def _apply_live_counters(counters: list[tuple[int, PlannedWrite]], env: WriteEnv, report: RunReport) -> None:
    """The protocol of auditor/repair/live.py: read each counter at an instant, wait for the flush, sum the ledger up
    to that instant, then set counter = ledger + what the proxy added since the read."""
    writes = [w for _, w in counters]
    readings = observe(
        env.redis, [w.keys for w in writes], env.increment_lag, max(env.flush_lag, 3 * env.increment_lag), env.wait
    )
    latest = max(r.clock for r in readings)
    if env.flush_lag > 0:
        env.waiting(env.flush_lag)
    env.wait(latest + env.flush_lag - time.monotonic())
    now = env.clock()
    asks, windows = [], []
    for write, reading in zip(writes, readings, strict=True):
        start = write.window_start
        if len(reading.values) > 1 and reading.values[1] is not None and (epoch := parse_float(reading.values[1])) is not None:
            start = epoch_to_utc(epoch)  # the window the proxy is in, whatever the scan saw
        end = env.ledger.window_end(write.scope, write.entity_id, write.budget_model, start)
        windows.append((start, end))
        if end is not None and end > now:
            asks.append(WindowAsk(write.scope, write.entity_id, write.budget_model, start, live.ledger_cut(reading)))
    with env.engine.connect() as conn:
        sums = iter(env.ledger.window_spends(conn, asks))
    todo = []
    for (seq, write), reading, (start, end) in zip(counters, readings, windows, strict=True):
        ledger = next(sums) if end is not None and end > now else None
        todo.append((seq, write, reading, start, end, ledger))
    for first in range(0, len(todo), live.CHUNK):
        env.check()
        chunk = todo[first : first + live.CHUNK]
        _redis_chunk([(seq, w) for seq, w, *_ in chunk], env, report, lambda _, chunk=chunk: _write_live(chunk, env))


def _write_live(chunk: list[tuple], env: WriteEnv) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(chunk)
    deltas, where = [], []
    for index, (_, write, reading, start, end, ledger) in enumerate(chunk):
        if ledger is None:
            outcomes[index] = Outcome(
                write,
                journal.CONFLICT,
                None,
                "its budget entry is gone"
                if end is None
                else "its window is over by the wall clock: the live proxy opens a new one",
            )
            continue
        deltas.append(Delta(write.keys, reading.values, money_value(ledger), start_value(start), epoch_ms(end)))
        where.append(index)
    for index, result in zip(where, write_deltas(env.redis, deltas), strict=True):
        outcomes[index] = _live_outcome(*chunk[index][1:], result)
    return outcomes


def _live_outcome(write: PlannedWrite, reading, start: datetime, end: datetime, ledger: float, result) -> Outcome:
    found = [
        {"key": key, "value": value, "expire_at_ms": expiry}
        for key, value, expiry in zip(write.keys, result.current, result.expire_at_ms, strict=True)
    ]
    now = _describe_values(result.current)
    if result.code == live.WINDOW_CHANGED:
        return Outcome(write, journal.CONFLICT, None, f"the proxy opened another window since the read (now {now}): left to it")
    if result.code == live.WINDOW_OVER:
        return Outcome(write, journal.CONFLICT, None, "its window ended before the write: the live proxy opens a new one")
    if result.code != live.WRITTEN:
        return Outcome(write, journal.CONFLICT, None, f"holds something that is not a number (now {now}): left as is")
    end_ms = epoch_ms(end)
    written = [{"key": write.keys[0], "value": result.written, "expire_at_ms": end_ms}]
    if len(write.keys) > 1:
        written.append(
            {
                "key": write.keys[1],
                "value": result.current[1] if result.current[1] is not None else start_value(start),
                "expire_at_ms": end_ms,
            }
        )
    carried = (parse_float(result.current[0]) or 0.0) - (parse_float(reading.values[0]) or 0.0)
    planned = [c.get("value") for c in write.old]
    exact = reading.values == tuple(planned) and not carried and abs(ledger - (write.new_value or 0.0)) <= 1e-9
    notes = (
        []
        if exact
        else [
            f"the ledger's ${ledger:,.4f} up to the read at {iso_ms(live.instant(reading.at_us))}"
            + (f" + ${carried:,.4f} the proxy added since" if carried else "")
            + (
                f" (read {_describe_values(reading.values)}, planned on {_describe_values(planned)})"
                if reading.values != tuple(planned)
                else ""
            )
        ]
    )
    if not reading.quiet:
        notes.append("it never stopped moving while read: a request in flight at the read may be counted twice (none is lost)")
    return Outcome(write, journal.APPLIED if exact else journal.RECOMPUTED, written, "; ".join(notes) or None, replaced=found)


def _batches(writes: list[tuple[int, PlannedWrite]], size: int) -> Iterable[list[tuple[int, PlannedWrite]]]:
    """`size` entities per transaction (all of an entity's rows stay together); 0 = one transaction."""
    if not writes:
        return
    if size <= 0:
        yield writes
        return
    by_entity: dict[tuple, list] = defaultdict(list)
    for item in writes:
        by_entity[(item[1].scope, item[1].entity_id)].append(item)
    entities = list(by_entity.values())
    for start in range(0, len(entities), size):
        yield [item for group in entities[start : start + size] for item in group]


# --- database rows


def _row_key(cell: Mapping) -> tuple:
    return (cell.get("window_start"), cell.get("spend"))


def _same_row(current: Mapping, expected: Mapping) -> bool:
    if (current.get("spend") is None) != (expected.get("spend") is None):
        return False
    if current.get("spend") is None:
        return True
    return current.get("window_start") == expected.get("window_start") and float(current["spend"]) == float(expected["spend"])


def _write_row(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    if write.target == MODEL_SPEND:
        return _write_model_spend(conn, write)
    if write.target == SCALAR:
        return _write_scalar(conn, write, env)
    return _write_window_row(conn, write, env)


def _write_scalar(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    """Lock the entity's row; if the proxy added spend since the plan, re-sum the period in SQL under the lock."""
    expected, wanted = write.old[0], dict(write.new[0])
    table = SCALAR_TABLES[expected["table"]]
    where = and_(*(table.c[name] == value for name, value in expected["pk"].items()))
    row = conn.execute(select(table.c.spend).where(where).with_for_update()).first()
    if row is None:
        return Outcome(write, journal.CONFLICT, None, "the row is gone")
    current = float(row.spend) if row.spend is not None else None
    state, reason = (journal.RESTORED if write.action == RESTORE else journal.APPLIED), None
    if current != expected["spend"]:
        if write.action == RESTORE:
            if current == wanted["spend"]:
                return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
            return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_money_text(current)}): left as is")
        start = datetime.fromisoformat(expected["period_start"]) if expected.get("period_start") else None
        wanted["spend"] = env.ledger.period_spend(conn, write.scope, write.entity_id, start, env.clock())
        state = journal.RECOMPUTED
        reason = f"was {_money_text(current)} instead of {_money_text(expected['spend'])}: re-summed the ledger for the period under the row lock"
    conn.execute(table.update().where(where).values(spend=wanted["spend"]))
    return Outcome(write, state, [wanted], reason, replaced=[{**expected, "spend": current}])


def _money_text(value: float | None) -> str:
    return "null" if value is None else f"${value:,.4f}"


def _bws_where(cell: Mapping):
    t = budget_window_spend
    return and_(
        t.c.entity_type == BWS_ENTITY_TYPE, t.c.entity_id == cell["entity_id"], t.c.window_duration == cell["window_duration"]
    )


def _lock_window_row(conn: Connection, cell: Mapping) -> dict:
    t = budget_window_spend
    row = conn.execute(select(t.c.window_start, t.c.spend).where(_bws_where(cell)).with_for_update()).first()
    if row is None:
        return {**cell, "window_start": None, "spend": None}
    return {**cell, "window_start": iso_ms(naive_utc(row.window_start)), "spend": float(row.spend)}


def _write_window_row(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    expected, wanted = write.old[0], write.new[0]
    current = _lock_window_row(conn, expected)
    state, reason = journal.APPLIED, None
    if write.action == RESTORE:
        if not _same_row(current, expected):
            if _same_row(current, wanted):
                return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
            return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_describe_row(current)}): left as is")
    elif write.stale or not _same_row(current, expected):
        if write.action == REMOVE:
            return Outcome(write, journal.CONFLICT, None, f"changed since the plan (now {_describe_row(current)}): left as is")
        start = datetime.fromisoformat(current["window_start"]) if current.get("window_start") else write.window_start
        end = env.ledger.window_end(write.scope, write.entity_id, write.budget_model, start) if env.ledger else None
        if end is None or end <= env.clock():
            return Outcome(
                write,
                journal.CONFLICT,
                None,
                f"changed since the plan (now {_describe_row(current)}) and its window is over: left as is",
            )
        spend = env.ledger.window_spend(conn, write.scope, write.entity_id, write.budget_model, start)
        wanted = {**wanted, "window_start": iso_ms(start), "spend": spend}
        state = journal.RECOMPUTED
        reason = f"was {_describe_row(current)} instead of {_describe_row(expected)}: re-summed the ledger for the window under the row lock"
    _put_window_row(conn, current, wanted, env)
    if write.action == RESTORE:
        state = journal.RESTORED
    return Outcome(write, state, [wanted], reason, replaced=[current])


def _put_window_row(conn: Connection, current: Mapping, wanted: Mapping, env: WriteEnv) -> None:
    t = budget_window_spend
    where = _bws_where(wanted)
    if wanted.get("spend") is None:
        conn.execute(t.delete().where(where))
        return
    values = {
        "window_start": datetime.fromisoformat(wanted["window_start"]),
        "spend": float(wanted["spend"]),
        "updated_at": env.clock(),
    }
    if current.get("spend") is not None:
        conn.execute(t.update().where(where).values(**values))
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    inserted = conn.execute(
        insert(t)
        .values(entity_type=BWS_ENTITY_TYPE, entity_id=wanted["entity_id"], window_duration=wanted["window_duration"], **values)
        .on_conflict_do_nothing()
    )
    if inserted.rowcount == 0:
        raise UnavailableError(
            f"LiteLLM_BudgetWindowSpend row {wanted['entity_id']} appeared while it was being created: rerun backfill"
        )


def _describe_row(cell: Mapping) -> str:
    if cell.get("spend") is None:
        return "no row"
    return f"${float(cell['spend']):,.4f} from {cell['window_start']}"


def _write_model_spend(conn: Connection, write: PlannedWrite) -> Outcome:
    vt = verification_token
    expected, wanted = write.old[0], write.new[0]
    row = conn.execute(select(vt.c.model_spend).where(vt.c.token == expected["token"]).with_for_update()).first()
    if row is None:
        return Outcome(write, journal.CONFLICT, None, "the key is gone")
    current = json_value(row.model_spend)
    if current != expected["model_spend"]:
        if write.action == RESTORE and current == wanted["model_spend"]:
            return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
        # LiteLLM >= 1.53 never writes model_spend: someone else edited it. Do not guess.
        return Outcome(
            write,
            journal.CONFLICT,
            None,
            "model_spend changed since it was read (LiteLLM does not write it: someone edited it): left as is",
        )
    conn.execute(vt.update().where(vt.c.token == expected["token"]).values(model_spend=wanted["model_spend"]))
    return Outcome(write, journal.RESTORED if write.action == RESTORE else journal.APPLIED, [wanted])


# --- Redis


def _write_redis(write: PlannedWrite, env: WriteEnv) -> Outcome:
    expected, wanted = [dict(c) for c in write.old], [dict(c) for c in write.new]
    now_ms = epoch_ms(env.clock())
    if write.action == RESTORE:
        reason = None
        for cell in wanted:  # an old TTL that has run out: the key would be gone by now
            if cell.get("value") is not None and cell.get("expire_at_ms") and cell["expire_at_ms"] <= now_ms:
                cell.update(value=None, expire_at_ms=None)
                reason = "its old TTL has run out: removed, as it would have expired"
        ok, current = redis_cas(env.redis, expected, wanted)
        if ok:
            return Outcome(write, journal.RESTORED, wanted, reason, replaced=expected)
        values = [c["value"] for c in current]
        if [c.get("value") for c in wanted] == values:
            return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
        return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_describe_values(values)}): left as is")
    ok, current = redis_cas(env.redis, expected, wanted)
    if ok:
        return Outcome(write, journal.APPLIED, wanted, replaced=expected)
    return Outcome(
        write,
        journal.CONFLICT,
        None,
        f"changed since the plan (now {_describe_values([c['value'] for c in current])}): left as is",
    )


def _describe_values(values: Sequence[str | None]) -> str:
    return ", ".join("absent" if v is None else repr(v) for v in values)
