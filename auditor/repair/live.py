"""Writing a counter the live proxy keeps incrementing: the ledger a counter is repaired to, and the Redis protocol
that carries every increment the proxy makes meanwhile (docs/backfill.md, "No lost increments").

LiteLLM increments a window's Redis counter (INCRBYFLOAT) when a request succeeds and flushes the request's
spend-log row seconds later, in batches. So at any instant the counter holds increments whose rows are not in the
ledger yet, and a SET of "the ledger" computed at some instant drops whatever landed around it. Here:

1. `observe`: each counter (spend key and start key) is read with Redis's own TIME in one MULTI: the value V0 at
   t0. It is read again `increment_lag` later; if nothing moved in between, no request was in flight at t0 (one
   that ended before t0 had incremented by then), so "incremented before t0" is exactly "ended before t0".
2. The caller waits until every row of a request that ended before t0 is in the database (`flush_lag`).
3. `Ledger.window_spends`: the ledger of the counter's window over the rows that ended before t0 (`ledger_cut`: 1 ms
   past t0, as "endTime" is rounded to the millisecond), with the scan's own code (the charge stream, its outcomes and repeat job polls, the resolver).
4. `write_deltas`: one Lua script per counter, pipelined: if the window is still the one read (start key), the
   counter becomes ledger(t0) + (its value now - V0). Every increment after t0 is carried on top; none is lost.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter

from sqlalchemy import Connection

from auditor.errors import InputError
from auditor.ledger import queries
from auditor.ledger.capabilities import Capabilities
from auditor.money import to_dollars, to_nanos

EPOCH = datetime(1970, 1, 1)
CHUNK = 500  # counters per Redis round trip and per journal statement


# ---------------------------------------------------------------------------------------------
# The ledger of one window, with the scan's own code


@dataclass(frozen=True)
class WindowAsk:
    scope: str
    entity_id: str
    budget_model: str
    start: datetime  # the window's start (naive UTC)
    cut: datetime | None = None  # only rows that ended before this instant; None: up to the window's end


class Ledger:
    """Re-sums counters' windows from LiteLLM_SpendLogs as the scan does: `queries.stream_charges` (charged rows
    only, repeat polls of a paid job dropped) and `entities.governed_charges` (the entry LiteLLM charges each row to)."""

    def __init__(self, caps: Capabilities, budgets: Mapping, catalogue, slack: timedelta) -> None:
        from auditor.litellm.resolver import Resolver

        self.caps = caps
        self.budgets = budgets
        self.catalogue = catalogue
        self.resolver = Resolver(catalogue)
        self.slack = slack
        self.keys_entries = {b.entity_id: b.entries for b in budgets.values() if b.scope == "key"}

    def entry(self, scope: str, entity_id: str, budget_model: str):
        eb = self.budgets.get((scope, entity_id))
        return None if eb is None else eb.entries.get(budget_model)

    def window_end(self, scope: str, entity_id: str, budget_model: str, start: datetime) -> datetime | None:
        entry = self.entry(scope, entity_id, budget_model)
        return None if entry is None else entry.duration.end_of_window(start)

    def period_spend(self, conn: Connection, scope: str, entity_id: str, start: datetime | None, until: datetime) -> float:
        """An entity's charged spend since its period start (the scan's own query, queries.period_spend)."""
        from auditor.audit.scalar_budgets import LIFETIME
        from auditor.repair.plan import team_member_ids

        entity = team_member_ids(entity_id) if scope == "team_member" else entity_id
        found = queries.period_spend(conn, self.caps, scope, [(entity, start or LIFETIME)], until)
        return found.get(entity, (0.0, 0))[0]

    def window_spend(
        self, conn: Connection, scope: str, entity_id: str, budget_model: str, start: datetime, cut: datetime | None = None
    ) -> float:
        return self.window_spends(conn, [WindowAsk(scope, entity_id, budget_model, start, cut)])[0]

    def window_spends(self, conn: Connection, asks: Sequence[WindowAsk]) -> list[float]:
        """Each ask's charges in [start - slack, min(window end, cut)), by endTime as the scan's CounterLedger counts
        them: one streamed read per scope for all the asks, from the earliest window on."""
        from auditor.audit.entities import governed_charges

        totals = [0] * len(asks)  # nano-dollars (auditor.money): the same sum the scan's windows take
        wanted: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        streams: dict[str, set] = defaultdict(set)
        for index, ask in enumerate(asks):
            eb = self.budgets.get((ask.scope, ask.entity_id))
            entry = None if eb is None else eb.entries.get(ask.budget_model)
            if entry is None:
                raise InputError(
                    f"{ask.scope} {ask.entity_id[:12]} has no budget entry {ask.budget_model!r} any more: cannot recompute its counter"
                )
            end = entry.duration.end_of_window(ask.start)
            if ask.cut is not None:
                end = min(end, ask.cut)
            wanted[ask.scope][ask.entity_id][ask.budget_model].append((index, ask.start - self.slack, end))
            streams[ask.scope].add(eb.stream_id)
        for scope, entities in wanted.items():
            since = min(low for per_entry in entities.values() for items in per_entry.values() for _, low, _ in items)
            ids = sorted(streams[scope])
            paid = queries.paid_jobs_before(conn, self.caps, scope, ids, since)
            stream = queries.stream_charges(conn, self.caps, queries.SpendFilter(ended_from=since), scope, ids, paid_jobs=paid)
            for entity_id, charges in groupby(stream, key=attrgetter("entity_id")):
                per_entry = entities.get(entity_id)
                if per_entry is None:
                    continue
                eb = self.budgets[(scope, entity_id)]
                for charge, _group, entry in governed_charges(eb, charges, self.resolver, self.catalogue, self.keys_entries):
                    for index, low, high in per_entry.get(entry.name, ()):
                        if low <= charge.end_time < high:
                            totals[index] += to_nanos(charge.spend)
        return [to_dollars(nanos) for nanos in totals]


# ---------------------------------------------------------------------------------------------
# Reading counters at an instant


def instant(at_us: int) -> datetime:
    """Redis TIME in microseconds as naive UTC, exactly (no float on the way)."""
    return EPOCH + timedelta(microseconds=at_us)


@dataclass(frozen=True)
class Reading:
    values: tuple[str | None, ...]  # one per key: spend key, then start key when there is one
    at_us: int  # Redis's TIME when read, in microseconds (the ledger is cut just past it: ledger_cut)
    clock: float  # time.monotonic() when read (for the flush wait)
    quiet: bool  # nothing moved for increment_lag after the read: no request was in flight at it


# LiteLLM's "endTime" is timestamp(3): PostgreSQL rounds it to the millisecond, so a request that ended in the last
# half millisecond before the read is stored up to 0.5 ms after it. The ledger is cut 1 ms past the read, inside the
# quiet interval that followed it (no increment landed there, so no request ended there).
CUT_PAST_READ = timedelta(milliseconds=1)


def ledger_cut(reading: Reading) -> datetime:
    """The instant the ledger is summed up to for a counter read at `reading`: its rows stored before it are exactly
    the requests whose increments the reading holds."""
    return instant(reading.at_us) + CUT_PAST_READ


def _read(client, keysets: Sequence[Sequence[str]], indices: Sequence[int]) -> dict[int, tuple[tuple, int, float]]:
    found = {}
    for start in range(0, len(indices), CHUNK):
        chunk = indices[start : start + CHUNK]
        pipe = client.pipeline(transaction=True)
        pipe.time()
        for index in chunk:
            for key in keysets[index]:
                pipe.get(key)
        replies = pipe.execute()
        clock = time.monotonic()
        seconds, micros = replies[0]
        at_us = int(seconds) * 1_000_000 + int(micros)
        position = 1
        for index in chunk:
            size = len(keysets[index])
            found[index] = (tuple(replies[position : position + size]), at_us, clock)
            position += size
    return found


def observe(
    client, keysets: Sequence[Sequence[str]], increment_lag: float, patience: float, wait: Callable[[float], None]
) -> list[Reading]:
    """Each counter's value at an instant no request was in flight: two reads `increment_lag` apart that agree.
    A counter still moving after `patience` seconds is taken at its last read, not quiet."""
    pending = list(range(len(keysets)))
    first = _read(client, keysets, pending)
    found: dict[int, Reading] = {}
    deadline = time.monotonic() + patience
    while pending:
        wait(increment_lag)
        second = _read(client, keysets, pending)
        moving = []
        for index in pending:
            if second[index][0] == first[index][0]:
                found[index] = Reading(*first[index], quiet=True)
            else:
                moving.append(index)
        pending, first = moving, second
        if pending and time.monotonic() >= deadline:
            for index in pending:
                found[index] = Reading(*second[index], quiet=False)
            break
    return [found[index] for index in range(len(keysets))]


# ---------------------------------------------------------------------------------------------
# The write: ledger(t0) + what the proxy added since t0, atomically per counter

# KEYS: spend key [, start key]. ARGV: v0_present, v0, start0_present, start0, ledger, start_value, pxat_ms.
# Replies {code, spend_present, spend, start_present, start, spend_pttl, start_pttl, redis_now_ms[, written]}:
# code 1 written; 0 the window changed since the read (another start key); 2 the window is over; 3 not a number.
DELTA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = tonumber(ARGV[7])
local cur = redis.call('GET', KEYS[1])
local start = false
local start_ttl = -2
if #KEYS > 1 then
  start = redis.call('GET', KEYS[2])
  start_ttl = redis.call('PTTL', KEYS[2])
end
local function found(code)
  return {code, cur and '1' or '0', cur or '', start and '1' or '0', start or '',
          tostring(redis.call('PTTL', KEYS[1])), tostring(start_ttl), tostring(now)}
end
if #KEYS > 1 then
  if ARGV[3] == '1' then
    if start ~= ARGV[4] then return found(0) end
  elseif start then
    return found(0)
  end
end
if at - now <= 0 then return found(2) end
local base = 0
if ARGV[1] == '1' then base = tonumber(ARGV[2]) end
local current = 0
if cur then current = tonumber(cur) end
if base == nil or current == nil then return found(3) end
local text = ARGV[5]
if current ~= base then text = string.format('%.17g', tonumber(ARGV[5]) + (current - base)) end
local out = found(1)
redis.call('SET', KEYS[1], text, 'PX', at - now)
if #KEYS > 1 then redis.call('SET', KEYS[2], start or ARGV[6], 'PX', at - now) end
out[#out + 1] = text
return out
"""


@dataclass(frozen=True)
class Delta:
    keys: tuple[str, ...]
    read: tuple[str | None, ...]  # V0, as observed
    ledger: str  # the ledger's sum up to the read, as written when nothing moved since
    start_value: str  # written to an absent start key
    expire_at_ms: int


@dataclass(frozen=True)
class DeltaResult:
    code: int
    current: tuple[str | None, ...]  # what the script found (spend, start)
    expire_at_ms: tuple[int | None, ...]  # their absolute expiry then
    written: str | None = None


WRITTEN, WINDOW_CHANGED, WINDOW_OVER, NOT_A_NUMBER = 1, 0, 2, 3


def write_deltas(client, deltas: Sequence[Delta]) -> list[DeltaResult]:
    """The scripts of `deltas`, pipelined (EVALSHA; redis-py loads the script once if Redis lacks it)."""
    script = client.register_script(DELTA_SCRIPT)
    results: list[DeltaResult] = []
    for start in range(0, len(deltas), CHUNK):
        pipe = client.pipeline(transaction=False)
        for d in deltas[start : start + CHUNK]:
            args = [
                "1" if d.read[0] is not None else "0",
                d.read[0] or "",
                "1" if len(d.read) > 1 and d.read[1] is not None else "0",
                (d.read[1] if len(d.read) > 1 else None) or "",
                d.ledger,
                d.start_value,
                str(d.expire_at_ms),
            ]
            script(keys=list(d.keys), args=args, client=pipe)
        for reply, d in zip(pipe.execute(), deltas[start : start + CHUNK], strict=True):
            now = int(reply[7])
            current = (reply[2] if reply[1] == "1" else None, reply[4] if reply[3] == "1" else None)[: len(d.keys)]
            ttls = (int(reply[5]), int(reply[6]))[: len(d.keys)]
            expiry = tuple(now + ttl if ttl > 0 else None for ttl in ttls)
            results.append(DeltaResult(int(reply[0]), current, expiry, reply[8] if len(reply) > 8 else None))
    return results
