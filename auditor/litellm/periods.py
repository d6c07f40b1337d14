"""The current period of an entity's scalar `spend`, as LiteLLM's budget reset job aligns it.

Unlike per-model windows, key/team/user/end-user/team-member budgets reset on calendar boundaries
in `litellm_settings.timezone` (LiteLLM 1.74+, `get_next_standardized_reset_time`), and
`budget_reset_at` records the next reset. The period that ends there starts where LiteLLM's
`get_budget_window_start` would say for most durations; for hour, minute and second durations that do not
divide a day or an hour, and across DST changes, it is the reset the job really made before (see period_start).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache
from typing import Any, cast, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from auditor.errors import InputError
from auditor.litellm.durations import shift_months

_WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
_SPELLED = re.compile(r"(\d+)([a-z]+)")
_UNIT = re.compile(r"(\d+)(mo|[smhdw]?)")
_STEP = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def zone(name: str | None) -> ZoneInfo | timezone:
    """--timezone or litellm_settings.timezone; LiteLLM itself falls back to UTC on an unknown name."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"unknown timezone {name!r}: use an IANA name such as UTC or Europe/Berlin") from None


def _reset_unit(duration: str) -> tuple[int | None, str | None]:
    """LiteLLM's `_parse_duration` for resets: `2months` is not `2mo`, but `1month` is."""
    duration = _WORDS.get(duration.strip().lower(), duration)
    spelled = _SPELLED.match(duration)
    if not spelled:
        return None, None
    value, word = int(spelled[1]), spelled[2]
    unit = cast("re.Match[str]", _UNIT.match(duration))[2] or word  # matches wherever _SPELLED did
    if unit == "mo" and word != "mo" and value != 1:
        return value, word
    return value, unit


def next_reset(duration: str, now: datetime) -> datetime | None:
    """When LiteLLM's reset job, running at `now` (aware, in the budget's zone), schedules the next reset: the
    calendar-aligned rule of `get_next_standardized_reset_time`, in wall-clock time. Hour, minute and second
    durations step to the next multiple of the duration within the day (48h: next midnight; 36h: noon the next day);
    None where LiteLLM cannot schedule one (`Nmo` with N != 1)."""
    value, unit = _reset_unit(duration)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if value is None or unit not in ("d", "w", "h", "m", "s", "mo"):
        return midnight + timedelta(days=1)
    if value == 0 and unit != "mo":
        return now
    if unit in ("d", "w"):
        days = value * 7 if unit == "w" else value
        if days == 30:
            return next_reset("1mo", now)
        if days == 7:
            monday = midnight + timedelta(days=(7 - now.weekday()) % 7)
            return monday + timedelta(days=7) if monday <= now else monday
        return midnight + timedelta(days=days)
    if unit == "mo":
        if value != 1:
            return None
        first = midnight.replace(day=1)
        if first > now:
            return first
        return first.replace(year=first.year + 1, month=1) if first.month == 12 else first.replace(month=first.month + 1)
    fields = {"h": ("hour",), "m": ("hour", "minute"), "s": ("hour", "minute", "second")}[unit]
    current = getattr(now, fields[-1])
    step = current + value - current % value  # the next multiple of the duration, carried into the coarser fields
    parts = dict(hour=now.hour, minute=now.minute, second=now.second)
    parts[fields[-1]] = step
    if unit == "s":
        parts["minute"], parts["second"] = parts["minute"] + parts["second"] // 60, parts["second"] % 60
    if unit in ("m", "s"):
        parts["hour"], parts["minute"] = parts["hour"] + parts["minute"] // 60, parts["minute"] % 60
    zeroed: dict[str, Any] = {"hour": 0, "minute": 0, "second": 0}
    zeroed.update({f: parts[f] for f in fields})
    if zeroed["hour"] >= 24:
        return (midnight + timedelta(days=1)).replace(**{**zeroed, "hour": zeroed["hour"] % 24})
    return now.replace(**zeroed, microsecond=0)


_UNIT_STEP = {"h": timedelta(hours=1), "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
_TICK = timedelta(milliseconds=1)


@lru_cache(maxsize=4096)  # the job resets most entities at the same few instants: a scan asks for each once
def period_start(duration: str, reset_at: datetime, tz: tzinfo = UTC) -> datetime | None:
    """Start (naive UTC) of the budget period that ends at `reset_at` (naive UTC): the previous reset LiteLLM's job
    scheduled. Day, week and month periods span whole calendar units (`30d` and `Nmo` calendar months, an unrecognised
    duration a day). Hour, minute and second periods are found on the schedule itself: the latest instant the job
    could have reset at (one `next_reset` leads to) from which `next_reset` leads to `reset_at`; so `36h`, `90m` or
    `5h` get the period LiteLLM actually runs, not reset_at minus the duration. None when the period cannot be placed
    (a duration too large for a date)."""
    try:
        return _period_start(duration, reset_at, tz)
    except (OverflowError, ValueError):
        return None


def _period_start(duration: str, reset_at: datetime, tz: tzinfo) -> datetime | None:
    local = reset_at.replace(tzinfo=UTC).astimezone(tz)
    value, unit = _reset_unit(duration)
    start: datetime | None
    if unit == "mo" and value != 1:  # LiteLLM's job cannot schedule it; calendar months back, as it measures them
        start = shift_months(local, -cast(int, value))  # a unit comes with its value (_reset_unit)
    else:
        start = _previous_on_chain(duration, cast(int, value), unit, local, tz) if unit in _UNIT_STEP else None
        start = start or _previous_on_schedule(duration, value, unit, local, tz)
        if start is None:  # not on any schedule LiteLLM makes (a reset_at set by hand): the nominal span back
            start = local - _nominal(value, unit)
    return start.astimezone(UTC).replace(tzinfo=None)


def _nominal(value: int | None, unit: str | None) -> timedelta:
    if value is None or unit not in (*_UNIT_STEP, "d", "w"):
        return timedelta(days=30 if unit == "mo" else 1)
    return value * (_UNIT_STEP[unit] if unit in _UNIT_STEP else timedelta(days=7 if unit == "w" else 1))


def _previous_on_chain(duration: str, value: int, unit: str, local: datetime, tz: tzinfo) -> datetime | None:
    """The reset before `local` on the chain the job walks when it runs right after each reset, followed from a
    while back: around an autumn change the job skips the repeated hour, which a search alone cannot tell."""
    target = local.astimezone(UTC)
    back = min(max(3 * value * _UNIT_STEP[unit], timedelta(hours=2)), timedelta(days=3))
    previous, at = None, next_reset(duration, (target - back).astimezone(tz))
    for _ in range(int(back / _UNIT_STEP[unit]) + 2):
        if at is None or _utc(at) >= target:
            break
        previous, at = at, next_reset(duration, (_utc(at) + _TICK).astimezone(tz))
    return previous if at is not None and _utc(at) == target else None


def _previous_on_schedule(duration: str, value: int | None, unit: str | None, local: datetime, tz: tzinfo) -> datetime | None:
    """The latest instant before `local` that is on LiteLLM's schedule and whose next reset is `local`. Candidates are
    a unit apart in absolute time for hour, minute and second durations (an hour repeated in autumn is two), and the
    midnights of earlier days otherwise; at most a duration or two days back (a year of days for day durations)."""
    target = local.astimezone(UTC)
    nominal = _nominal(value, unit)
    if unit in _UNIT_STEP:
        step = _UNIT_STEP[unit]
        count = min(value or 0, int(timedelta(days=2) / step)) + 2
        candidates = ((target - k * step).astimezone(tz) for k in range(1, count + 1))
    else:
        day = local.date()
        count = min(nominal.days, 400) + 2
        candidates = (datetime.combine(day - timedelta(days=k), datetime.min.time(), tz) for k in range(1, count + 1))
    for candidate in candidates:
        if _utc(next_reset(duration, candidate + _TICK)) == target and _is_scheduled(duration, candidate, nominal):
            return candidate
    return None


@overload
def _utc(moment: datetime) -> datetime: ...
@overload
def _utc(moment: datetime | None) -> datetime | None: ...
def _utc(moment: datetime | None) -> datetime | None:
    """Aware datetimes of one zone compare by wall clock in Python, whatever their fold: compare instants instead."""
    return None if moment is None else moment.astimezone(UTC)


def _is_scheduled(duration: str, moment: datetime, nominal: timedelta) -> bool:
    """Whether some run of the reset job, just after an earlier reset, schedules one at `moment` (it is on the cycle)."""
    tz, at = moment.tzinfo, _utc(moment)
    floors = (
        moment.replace(second=0, microsecond=0),
        moment.replace(minute=0, second=0, microsecond=0),
        moment.replace(hour=0, minute=0, second=0, microsecond=0),
    )
    earlier = {at - _TICK, *(_utc(floor) - _TICK for floor in floors)}
    probes = [t.astimezone(tz) for t in earlier]
    probes.append(moment - nominal + _TICK)  # wall-clock days back, as the job adds them
    return any(_utc(next_reset(duration, t)) == at for t in probes)
