"""LiteLLM's limiter before 1.99, replayed for one entity: one start key shared by all of its counters.

Before 1.99 (router_strategy/budget_limiter.py `_increment_spend_for_key`, on the proxy's in-memory DualCache) a
key or end user has ONE start key, `virtual_key_budget_start_time:{hash}` (issue #33326), and one counter per
(model name, duration). A charge on any model reads the start key, creating it (TTL = that entry's duration) when
it is absent or expired; when more than that entry's duration has passed since it, the charge opens a new window:
its counter is set to the charge and the start key to now. Otherwise the counter is incremented (created with the
window's remaining seconds as TTL). LiteLLM's InMemoryCache only sets a TTL on a key that has none or whose TTL has
run out, so a reset never extends a live key: a counter lives until its first TTL ends, and a start key reset by
a short entry still expires when its first, longer TTL says. The pre-call check reads the counter as it stands
(an expired one is gone: 0). This module replays exactly that, so windows shared across an entity's models, and
what each check read, come out as LiteLLM had them. Pure: charges in, counter lives and check values out.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, cast

from auditor.audit.windows import DEFAULT_LOOKBACK, Window
from auditor.litellm.durations import Duration
from auditor.money import to_dollars, to_nanos

if TYPE_CHECKING:  # for annotations only: entity budgets, options and charges are the scan's shapes, typed Any
    from auditor.audit.findings import Finding
    from auditor.litellm.budgets import BudgetEntry
    from auditor.litellm.counters import Counter
    from auditor.litellm.eras import Era


def seconds_of(duration: Duration, at: datetime) -> int:
    """`duration_in_seconds` before 1.99: whole seconds; a month counts from `at` as the calendar does."""
    if duration.seconds is not None:
        return int(duration.seconds)
    return int((duration.end_of_window(at) - at).total_seconds())


@dataclass(slots=True)
class _Cell:
    """One cache key: its value and the instant its TTL ends (the key reads as absent after it)."""

    value: float
    expires: datetime

    def live(self, at: datetime) -> bool:
        return not at > self.expires


@dataclass(slots=True)
class _Life:
    """One counter from the start of the window it was created (or reset) in until its TTL ended or a new window
    reset it. Its spends are whole nano-dollars (auditor.money), exact sums; the counter's own value (_Cell) stays a
    float added as LiteLLM adds it."""

    start: datetime
    expires: datetime
    spend: int = 0
    requests: int = 0
    leaks: int = 0
    leak_spend: int = 0

    def window(self, end: datetime) -> Window:
        return Window(self.start, end, to_dollars(self.spend), self.requests, self.leaks, to_dollars(self.leak_spend))


@dataclass
class _Counter:
    cell: _Cell | None = None
    life: _Life | None = None
    lives: list[Window] = field(default_factory=list)
    # What a read returned over time, within the lookback: (instant, value from then on, expiry of that value).
    times: list[datetime] = field(default_factory=list)
    values: list[tuple[float, datetime]] = field(default_factory=list)


class SharedStartReplay:
    """One entity's counters and its shared start key, fed charges in `end_time` order.

    `charge` applies one successful request exactly as the pre-1.99 success hook does; `read` gives what the
    pre-call check read for a counter at an earlier or equal instant (0.0 when absent or expired), from the
    history kept for `lookback` behind the latest charge (DEFAULT_LOOKBACK, as the window tracker).
    """

    def __init__(self, *, lookback: timedelta | None = DEFAULT_LOOKBACK) -> None:
        self.start: _Cell | None = None
        self.started_at: datetime | None = None  # the start key's value as a moment
        self.counters: dict[tuple[str, str], _Counter] = {}
        self._lookback = lookback
        self._last: datetime | None = None

    # -- the pre-call check

    def read(self, name: str, duration: str, at: datetime) -> float:
        """The counter `{prefix}:{entity}:{name}:{duration}` as a check at `at` read it (0.0: absent or expired)."""
        counter = self.counters.get((name, duration))
        if counter is None:
            return 0.0
        index = bisect_right(counter.times, at) - 1
        if index < 0:
            return 0.0
        value, expires = counter.values[index]
        return value if not at > expires else 0.0

    def read_first(self, names: tuple[str, ...], duration: str, at: datetime) -> float:
        """LiteLLM's lookup order: the first of `names` present at `at` (the requested model, then its last segment)."""
        for name in names:
            counter = self.counters.get((name, duration))
            if counter is None:
                continue
            index = bisect_right(counter.times, at) - 1
            if index >= 0:
                value, expires = counter.values[index]
                if not at > expires:
                    return value
        return 0.0

    # -- the success hook

    def charge(self, at: datetime, name: str, duration: Duration, cost: float, *, leaked: bool = False) -> None:
        """A successful request's cost charged at `at` to the counter (name, duration.raw); `leaked`: its check
        should have refused it (counted in the life it lands in)."""
        if self._last is not None and at < self._last:
            raise ValueError(f"charges must come in end_time order: {at.isoformat()} after {self._last.isoformat()}")
        self._last = at
        ttl = seconds_of(duration, at)
        if self.start is None or not self.start.live(at):
            self.start = _Cell(_epoch(at), at + timedelta(seconds=ttl))  # _get_or_set_budget_start_time
            self.started_at = at
        counter = self.counters.setdefault((name, duration.raw), _Counter())
        elapsed = _epoch(at) - self.start.value
        if elapsed > ttl:  # _handle_new_budget_window: counter := cost, start := now; live TTLs stay as they were
            self._set(counter, at, cost, ttl, reset=True, window_start=at)
            self.start = _Cell(_epoch(at), self.start.expires)  # live here: read (or created) just above
            self.started_at = at
        else:  # _increment_spend_in_current_window: TTL = the window's remaining whole seconds, if the key is new
            current = counter.cell.value if counter.cell is not None and counter.cell.live(at) else 0.0
            self._set(counter, at, current + cost, int(ttl - elapsed), reset=False, window_start=cast(datetime, self.started_at))
        life = cast(_Life, counter.life)  # _set just gave the counter a life
        nanos = to_nanos(cost)
        life.spend += nanos
        life.requests += 1
        if leaked:
            life.leaks += 1
            life.leak_spend += nanos
        self._trim(counter, at)

    def _set(self, counter: _Counter, at: datetime, value: float, ttl: int, *, reset: bool, window_start: datetime) -> None:
        """InMemoryCache.set_cache: the value always; the TTL only when the key has none or it has run out. A counter
        that starts a new life is in the window the start key says began at `window_start` (never before its previous
        life ended)."""
        if counter.cell is not None and counter.cell.live(at):
            expires = counter.cell.expires
            if reset:  # a new window on a live key: same TTL, a new life from here
                counter.lives.append(cast(_Life, counter.life).window(at))  # a live cell has a life
                counter.life = _Life(at, expires)
        else:
            expires = at + timedelta(seconds=ttl)
            began = window_start
            if counter.life is not None:
                counter.lives.append(counter.life.window(counter.life.expires))
                began = max(began, counter.life.expires)
            counter.life = _Life(began, expires)
        counter.cell = _Cell(value, expires)
        counter.times.append(at)
        counter.values.append((value, expires))

    def _trim(self, counter: _Counter, at: datetime) -> None:
        if self._lookback is None or len(counter.times) < 64:
            return
        keep = bisect_right(counter.times, at - self._lookback) - 1
        if keep > len(counter.times) // 2:
            del counter.times[:keep]
            del counter.values[:keep]

    # -- results

    def windows(self, name: str, duration: str) -> list[Window]:
        """Every life of one counter, oldest first; the one still cached ends where its TTL does."""
        counter = self.counters.get((name, duration))
        if counter is None:
            return []
        lives = list(counter.lives)
        if counter.life is not None:
            lives.append(counter.life.window(counter.life.expires))
        return lives

    def cached(self, name: str, duration: str, at: datetime) -> tuple[float, datetime] | None:
        """What the cache holds for the counter at `at` (value, expiry), or None when absent or expired."""
        counter = self.counters.get((name, duration))
        if counter is None or counter.cell is None or not counter.cell.live(at):
            return None
        return counter.cell.value, counter.cell.expires

    def start_key(self, at: datetime) -> tuple[float, datetime] | None:
        """The entity's start key at `at` (epoch seconds, expiry), or None when absent or expired."""
        if self.start is None or not self.start.live(at):
            return None
        return self.start.value, self.start.expires


def requested_name(model: str, model_group: str) -> str:
    """The name a pre-1.99 limiter charges and checks: the model group (what was requested), else the logged model."""
    return model_group or model


def entry_by_name(name: str, entries: Mapping[str, BudgetEntry]) -> BudgetEntry | None:
    """Before 1.99 a model finds its entry by its exact name, else its last `/` segment; nothing else (no globs,
    access groups or Bedrock candidates). None when neither is a usable entry."""
    found = entries.get(name)
    if found is None and "/" in name:
        found = entries.get(name.rsplit("/", 1)[-1])
    return found if hasattr(found, "duration") else None


class EntityReplay:
    """One key's or end user's charges as its pre-1.99 limiter counted them, with counters named after the model as
    requested: the counter the pre-call check reads. (1.82-1.83.7 charged the deployment string instead, so its checks
    read nothing; counted this way the requests that bug let through are the ones judged after the limit.)"""

    def __init__(self, era: Era, entries: Mapping[str, BudgetEntry], *, lookback: timedelta | None = DEFAULT_LOOKBACK) -> None:
        self.era = era
        self.entries = entries
        self.replay = SharedStartReplay(lookback=lookback)
        self.lookback = lookback
        self.names: dict[str, set[tuple[str, str]]] = {}  # entry name -> the counters (name, duration) charged under it
        self._placed: dict[str, BudgetEntry | None] = {}

    def add(self, charge: Any) -> tuple[str, BudgetEntry] | None:
        """Charge one request (anything with start_time, end_time, spend, model, model_group); returns (counter name,
        entry), or None when no entry governs it."""
        name = requested_name(charge.model, charge.model_group)
        entry: BudgetEntry | None | Literal[False] = self._placed.get(name, False)  # False: not placed yet
        if entry is False:
            entry = self._placed[name] = entry_by_name(name, self.entries)
        if entry is None:
            return None
        judged_at = min(charge.start_time, charge.end_time)
        if self.lookback is not None:
            judged_at = max(judged_at, charge.end_time - self.lookback)
        read = self.replay.read_first(self.era.read_names(name, entry.name), entry.duration.raw, judged_at)
        self.replay.charge(charge.end_time, name, entry.duration, charge.spend, leaked=self.era.blocks(read, entry.limit))
        self.names.setdefault(entry.name, set()).add((name, entry.duration.raw))
        return name, entry

    def windows(self) -> dict[str, list[Window]]:
        """Each entry's windows: the lives of every counter charged under it, oldest first."""
        return {
            entry: sorted((w for counter in sorted(counters) for w in self.replay.windows(*counter)), key=lambda w: w.start)
            for entry, counters in self.names.items()
        }


def _epoch(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


_EPOCH = datetime(1970, 1, 1)


# ---------------------------------------------------------------------------------------------
# The scan of a pre-1.99 deployment (called by scan.run_scan when the era keeps one start key per entity)

REPLAYED_SCOPES = ("key", "end_user")  # the only scopes with per-model budgets before 1.99


def era_windows(
    era: Era,
    budgets: Mapping[tuple[str, str], Any],
    stream: Callable[[str, list[Any]], Iterable[Any]],
    progress: Callable[[int], object] | None = None,
) -> tuple[dict[tuple[str, str, str], list[Window]], dict[tuple[str, str, str], set[str]], dict[tuple[str, str], EntityReplay]]:
    """Every key's and end user's windows, rebuilt by EntityReplay from `stream(scope, stream ids)` (charged rows in
    (entity, end_time) order, as queries.stream_charges yields them). Returns (windows, groups_by_entry, replays)
    keyed as the scan keys them: (scope, entity_id, entry name)."""
    from itertools import groupby
    from operator import attrgetter

    windows: dict[tuple[str, str, str], list[Window]] = {}
    groups_by_entry: dict[tuple[str, str, str], set[str]] = {}
    replays: dict[tuple[str, str], EntityReplay] = {}
    for scope in REPLAYED_SCOPES:
        by_stream_id = {b.stream_id: b for b in budgets.values() if b.scope == scope and b.entries}
        for entity_id, charges in groupby(stream(scope, sorted(by_stream_id)), key=attrgetter("entity_id")):
            eb = budgets[(scope, entity_id)]
            replay = replays[(scope, entity_id)] = EntityReplay(era, eb.entries)
            seen = 0
            for charge in charges:
                seen += 1
                replay.add(charge)
            for entry, lives in replay.windows().items():
                windows[(scope, entity_id, entry)] = lives
                groups_by_entry[(scope, entity_id, entry)] = {name for name, _ in replay.names[entry]}
            if progress is not None:
                progress(seen)
    return windows, groups_by_entry, replays


def in_era(budgets: Mapping[tuple[str, str], Any], era: Era) -> tuple[dict[tuple[str, str], Any], list[str]]:
    """The per-model budgets the era's limiter enforces at all: scopes it did not have are left out, and said."""
    scopes = set(era.scopes()) & (set(REPLAYED_SCOPES) if era.start_keys == "entity" else set(era.scopes()))
    kept = {k: b for k, b in budgets.items() if b.scope in scopes}
    dropped: dict[str, int] = {}
    for b in budgets.values():
        if b.scope not in scopes and (b.entries or b.problems):
            dropped[b.scope] = dropped.get(b.scope, 0) + 1
    notes = [
        f"LiteLLM {era.name} has no {scope.replace('_', ' ')} per-model budgets: {n} not audited"
        for scope, n in sorted(dropped.items())
    ]
    return kept, notes


def counter_findings(
    budgets: Mapping[tuple[str, str], Any],
    replays: Mapping[tuple[str, str], EntityReplay],
    counters_by_entity: Mapping[tuple[str, str], list[Counter]],
    era: Era,
    options: Any,
    read_source: str | None,
    miskeyed: Callable[[Counter, str, Any], Finding],
) -> list[Finding]:
    """Counters of a 1.84-1.98 deployment (named after the model as requested, one start key per entity) against the
    replay: each counter's value now (or before the last `settle`, which LiteLLM may not have pushed yet), and live
    counters Redis lacks. Redis is only a copy there (each worker reads its own memory first), so drift is a warning.
    `miskeyed(counter, entity_id, budgets)` builds the finding for a counter no entry reads."""
    from auditor.audit.findings import COUNTER_DRIFT, WARNING, Finding
    from auditor.audit.reconcile import _alias  # how reports show an entity, deleted keys labelled

    findings = []
    for (scope, entity_id), counters in sorted(counters_by_entity.items()):
        eb = budgets.get((scope, entity_id))
        replay = replays.get((scope, entity_id))
        alias = _alias(eb)
        seen = set()
        read = _read_names(eb, replay)
        for counter in counters:
            name, duration = counter.key.budget_model, counter.key.duration
            entry = entry_by_name(name, eb.entries) if eb is not None and name in read else None
            if entry is None or entry.duration.raw != duration:
                findings.append(miskeyed(counter, entity_id, eb))
                continue
            seen.add((name, duration))
            now = _value_at(replay, name, duration, options.now)
            settled = _value_at(replay, name, duration, options.now - options.settle)
            cached = counter.value
            if cached is not None and min(abs(cached - now), abs(cached - settled)) <= options.tolerance:
                continue
            life = _current_life(replay, name, duration, options.now)
            findings.append(
                Finding(
                    kind=COUNTER_DRIFT,
                    severity=WARNING,
                    scope=scope,
                    entity_id=entity_id,
                    entity_alias=alias,
                    budget_model=entry.name,
                    model_group=name,
                    time_period=duration,
                    window_start=life.start if life else counter.window_start,
                    window_end=life.end if life else None,
                    budget_limit=entry.limit,
                    logged_spend=now,
                    cached_spend=cached,
                    counter_source=counter.source,
                    counter_key=counter.key.key,
                    message=(
                        f"{counter.source} counter {counter.key.key} holds "
                        + (f"${cached:,.4f}" if cached is not None else f"{counter.raw_value!r} (not a number)")
                        + f" but LiteLLM {era.name}'s limiter, replayed over the ledger, holds ${now:,.4f}; Redis is a copy "
                        "there (each worker enforces its own memory first)"
                    ),
                )
            )
        if read_source == "redis" and replay is not None:
            findings += _missing(scope, entity_id, eb, replay, seen, options, era, alias)
    for (scope, entity_id), replay in sorted(replays.items()):
        if read_source == "redis" and (scope, entity_id) not in counters_by_entity:
            findings += _missing(
                scope, entity_id, budgets[(scope, entity_id)], replay, set(), options, era, _alias(budgets[(scope, entity_id)])
            )
    return findings


def _read_names(eb: Any, replay: EntityReplay | None) -> set[str]:
    """The counter names a pre-call check reads for this entity: each model requested (and its last segment), and
    each entry's own name (requested by that name). A counter under another name (1.82-1.83.7's `openai/gpt-4o` for
    a `gpt-4o` request) is never read."""
    names = set(eb.entries) if eb is not None else set()
    for counters in replay.names.values() if replay is not None else ():
        for name, _ in counters:
            names |= {name, name.rsplit("/", 1)[-1]}
    return names


def _missing(
    scope: str,
    entity_id: str,
    eb: Any,
    replay: EntityReplay,
    seen: set[tuple[str, str]],
    options: Any,
    era: Era,
    alias: str | None,
) -> list[Finding]:
    """Live counters the replay holds and Redis does not (LiteLLM pushed every increment there when it had Redis)."""
    from auditor.audit.findings import COUNTER_DRIFT, WARNING, Finding
    from auditor.litellm.counters import spend_key

    found = []
    for entry_name, counters in sorted(replay.names.items()):
        entry = eb.entries[entry_name]
        for name, duration in sorted(counters - seen):
            cached = replay.replay.cached(name, duration, options.now - options.settle)
            if cached is None or cached[0] <= options.tolerance or replay.replay.cached(name, duration, options.now) is None:
                continue
            key = spend_key(scope, entity_id, name, duration)
            life = _current_life(replay, name, duration, options.now)
            found.append(
                Finding(
                    kind=COUNTER_DRIFT,
                    severity=WARNING,
                    scope=scope,
                    entity_id=entity_id,
                    entity_alias=alias,
                    budget_model=entry_name,
                    model_group=name,
                    time_period=duration,
                    window_start=life.start if life else None,
                    window_end=life.end if life else None,
                    budget_limit=entry.limit,
                    logged_spend=cached[0],
                    cached_spend=0.0,
                    counter_source="redis",
                    counter_key=key,
                    message=(
                        f"no redis counter {key} while LiteLLM {era.name}'s limiter, replayed over the ledger, holds ${cached[0]:,.4f}: "
                        "Redis is only a copy there (each worker enforces its own memory first)"
                    ),
                )
            )
    return found


def _value_at(replay: EntityReplay | None, name: str, duration: str, at: datetime) -> float:
    return 0.0 if replay is None else replay.replay.read(name, duration, at)


def _current_life(replay: EntityReplay | None, name: str, duration: str, at: datetime) -> Window | None:
    if replay is None:
        return None
    return next((w for w in reversed(replay.replay.windows(name, duration)) if w.start <= at < w.end), None)


def as_copies(findings: list[Finding], era: Era | None) -> list[Finding]:
    """Where the era keeps counters in memory and Redis only holds a copy (1.84-1.100, read memory-first), a Redis
    counter that differs from the ledger is a warning: each worker enforced its own memory, not that copy."""
    from dataclasses import replace

    from auditor.audit.findings import COUNTER_DRIFT, ERROR, WARNING
    from auditor.litellm.eras import MEMORY_FIRST

    if era is None or era.storage != MEMORY_FIRST:
        return findings
    return [
        replace(
            f,
            severity=WARNING,
            message=f"{f.message}; Redis is only a copy in LiteLLM {era.name} (each worker enforces its own memory first)",
        )
        if f.kind == COUNTER_DRIFT and f.counter_source == "redis" and f.severity == ERROR
        else f
        for f in findings
    ]
