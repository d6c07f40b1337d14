"""Rebuild one (entity, budget entry)'s LiteLLM 1.99+ per-model budget windows from its charges.

LiteLLM's limiter keeps no history: a window opens at the first charge when none is open, lasts
the entry's duration from its start, and its counter is checked (`spend >= limit`) before each
request. Replaying the charges in `end_time` order reproduces the windows, and for each request
what the counter read when it started, hence which requests should have been rejected ("leaked").
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from auditor.errors import InputError
from auditor.litellm.durations import Duration
from auditor.money import to_dollars, to_nanos

# How far before a request's end its start is still judged exactly. LiteLLM's default request
# timeout is 6000 s, so a day covers every ordinary request with room to spare.
DEFAULT_LOOKBACK: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Charge:
    """One successful request: LiteLLM charges `spend` at `end_time` and checked the cap at `start_time`.

    Times are naive UTC, as LiteLLM_SpendLogs stores them.
    """

    start_time: datetime
    end_time: datetime
    spend: float


@dataclass(frozen=True, slots=True)
class Window:
    """One budget window: [start, end), the charges it took, and those that should have been refused. Spends are
    sums of whole nano-dollars (auditor.money), so they do not depend on how the stream was split."""

    start: datetime
    end: datetime
    spend: float
    requests: int
    requests_after_limit: int  # charged here, yet the counter they were checked against was already at the cap
    spend_after_limit: float

    def over_budget(self, limit: float | None) -> bool:
        """Spend beyond the cap (strictly). A null, negative or NaN cap enforces nothing, so is never over."""
        return limit is not None and limit >= 0 and self.spend > limit


class _OpenWindow:
    """The window still taking charges; mutable so a long stream costs no allocation per charge. Spends are held
    in whole nano-dollars (exact integer sums) and become dollars when frozen."""

    __slots__ = ("start", "end", "spend", "requests", "leaks", "leak_spend")

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.end = end
        self.spend = 0
        self.requests = 0
        self.leaks = 0
        self.leak_spend = 0

    def frozen(self) -> Window:
        return Window(self.start, self.end, to_dollars(self.spend), self.requests, self.leaks, to_dollars(self.leak_spend))


@dataclass(frozen=True, slots=True)
class TrackerState:
    """Everything a WindowTracker carries from one charge to the next, so a stream can stop here and go on later
    (an incremental report resumes from it): the open window, the last end_time seen, and the step function
    "counter >= limit" still within the lookback (`floor` before the first kept change, then `changes`).
    The entry's duration, limit and the lookback are not part of it: the tracker is rebuilt from the entry."""

    open: Window | None
    last_end: datetime | None
    floor: bool
    changes: tuple[tuple[datetime, bool], ...] = ()


class WindowTracker:
    """Streams the charges of one (entity, entry), sorted by `end_time`, into windows.

    A request is charged to the window open at its `end_time` (opening one if none is); it is
    checked against the window that was open at its `start_time`, counting that window's charges
    that ended no later than that instant and came earlier in the stream. If that total was
    already >= the limit, the request leaked. No window open there reads as 0, so only a zero
    limit leaks then. A null, negative or NaN limit enforces nothing and nothing leaks.

    Memory: the open window plus the instants at which the check's outcome changes within
    `lookback` of the latest `end_time`: at most two per window that reached its limit when
    spends are non-negative, none at all for a zero or unenforced limit. The cost is that a
    request is judged at max(start_time, end_time - lookback): one that ran longer than
    `lookback` is judged as if it had started `lookback` before it ended. `lookback=None` keeps
    everything. A `start_time` after the `end_time` is read as the `end_time`.
    """

    def __init__(self, duration: Duration, limit: float | None, *, lookback: timedelta | None = DEFAULT_LOOKBACK):
        if lookback is not None and lookback < timedelta(0):
            raise InputError(f"lookback must not be negative, got {lookback}")
        self._duration = duration
        self._limit = limit
        self._lookback = lookback
        self._enforced = limit is not None and limit >= 0
        # What the check reads where no window is open: a missing counter is 0.
        self._idle_value = self._enforced and limit == 0
        self._open: _OpenWindow | None = None
        self._last_end: datetime | None = None
        # Step function "counter >= limit" over time: value before the first kept change, then changes.
        self._floor = self._idle_value
        self._times: list[datetime] = []
        self._values: list[bool] = []
        self._head = 0

    @classmethod
    def resume(
        cls, duration: Duration, limit: float | None, state: TrackerState, *, lookback: timedelta | None = DEFAULT_LOOKBACK
    ) -> WindowTracker:
        """A tracker that goes on exactly where the one that exported `state` stopped."""
        tracker = cls(duration, limit, lookback=lookback)
        if state.open is not None:
            w = state.open
            tracker._open = _OpenWindow(w.start, w.end)
            tracker._open.spend, tracker._open.requests = to_nanos(w.spend), w.requests
            tracker._open.leaks, tracker._open.leak_spend = w.requests_after_limit, to_nanos(w.spend_after_limit)
        tracker._last_end = state.last_end
        tracker._floor = state.floor
        tracker._times = [instant for instant, _ in state.changes]
        tracker._values = [value for _, value in state.changes]
        return tracker

    def state(self) -> TrackerState:
        """What `resume` needs to go on from here (the open window stays open)."""
        head = self._head
        return TrackerState(self.current, self._last_end, self._floor, tuple(zip(self._times[head:], self._values[head:])))

    @property
    def current(self) -> Window | None:
        """The window still taking charges, as it stands."""
        return None if self._open is None else self._open.frozen()

    def add(self, charge: Charge) -> Window | None:
        """Take the next charge (anything with start_time, end_time and spend: a Charge, or the scan's ChargeRow
        as it comes from the database); return the window it closed, if it opened a new one."""
        end = charge.end_time
        if self._last_end is not None and end < self._last_end:
            raise InputError(f"charges must be sorted by end_time: {end.isoformat()} came after {self._last_end.isoformat()}")
        self._last_end = end
        closed: Window | None = None
        if self._open is not None and end >= self._open.end:
            closed = self._open.frozen()
            # A zero-length window ends where it started: this overwrites its own mark, as it should.
            self._set(self._open.end, self._idle_value)
            self._open = None
        judged_at = min(charge.start_time, end)
        cutoff = self._cutoff(end)
        if cutoff is not None:
            self._trim(cutoff)
            judged_at = max(judged_at, cutoff)
        leaked = self._enforced and self._reached_at(judged_at)
        if self._open is None:
            self._open = _OpenWindow(end, self._duration.end_of_window(end))
        window = self._open
        nanos = to_nanos(charge.spend)
        window.spend += nanos
        window.requests += 1
        if leaked:
            window.leaks += 1
            window.leak_spend += nanos
        if self._enforced:
            self._set(end, to_dollars(window.spend) >= self._limit)  # type: ignore[operator]  # enforced: limit is a float
        return closed

    def close(self) -> Window | None:
        """End of the stream: return the window still open, if any, and forget it."""
        window, self._open = self._open, None
        return None if window is None else window.frozen()

    def _cutoff(self, end: datetime) -> datetime | None:
        if self._lookback is None:
            return None
        try:
            return end - self._lookback
        except OverflowError:
            return None

    def _reached_at(self, instant: datetime) -> bool:
        index = bisect_right(self._times, instant, lo=self._head) - 1
        return self._floor if index < self._head else self._values[index]

    def _set(self, instant: datetime, value: bool) -> None:
        """Record the check's outcome from `instant` on; only changes are kept."""
        times, values = self._times, self._values
        latest = values[-1] if len(times) > self._head else self._floor
        if value == latest:
            return
        if len(times) > self._head and times[-1] == instant:
            # Undo the change made at this very instant: the kept values alternate, so the one
            # before it is `value`.
            times.pop()
            values.pop()
        else:
            times.append(instant)
            values.append(value)

    def _trim(self, cutoff: datetime) -> None:
        """Fold changes no later than `cutoff` into the floor: no later request is judged before it."""
        kept = bisect_right(self._times, cutoff, lo=self._head)
        if kept > self._head:
            self._floor = self._values[kept - 1]
            self._head = kept
        if self._head > 64 and self._head * 2 > len(self._times):
            del self._times[: self._head]
            del self._values[: self._head]
            self._head = 0


def windows(
    charges: Iterable[Charge],
    duration: Duration,
    limit: float | None,
    *,
    lookback: timedelta | None = DEFAULT_LOOKBACK,
) -> Iterator[Window]:
    """Every window of one (entity, entry), oldest first, from charges sorted by `end_time`."""
    tracker = WindowTracker(duration, limit, lookback=lookback)
    for charge in charges:
        closed = tracker.add(charge)
        if closed is not None:
            yield closed
    last = tracker.close()
    if last is not None:
        yield last
