"""LiteLLM's duration grammar (`1d`, `30d`, `1mo`, `daily`), and how long a window of one lasts.

Mirrors LiteLLM 1.110.2 `litellm_core_utils/duration_parser.py` (`normalize_duration`,
`duration_in_seconds`, `duration_in_seconds_from`, `_shift_months`) and
`router_strategy/budget_limiter.py::budget_window_seconds`, so that a duration is valid here
exactly when LiteLLM's limiter can key and time a counter on it.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from auditor.errors import DurationError

# Matched after strip()+lower(); note `monthly` is 30 days, not a calendar month.
_WORD_ALIASES: Final = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}

# A prefix match, as LiteLLM uses re.match: `7days` is 7d, `1min` one minute, `1month` 1mo.
# `\d` is Unicode-aware on str patterns, so `١d` is one day in LiteLLM too.
_GRAMMAR: Final = re.compile(r"(\d+)(mo|[smhdw]?)")

_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

_ACCEPTED: Final = "use <number><s|m|h|d|w|mo> such as 1d, 30d, 1mo, or hourly/daily/weekly/monthly"

_LAST_YEAR: Final = datetime.max.year


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration. `raw` is kept: LiteLLM's counter keys use the string as configured."""

    raw: str
    value: int
    unit: str  # one of "s", "m", "h", "d", "w", "mo"

    @property
    def seconds(self) -> int | None:
        """Fixed length in seconds; None for `mo`, whose length depends on where the window starts."""
        multiplier = _UNIT_SECONDS.get(self.unit)
        return None if multiplier is None else self.value * multiplier

    def end_of_window(self, start: datetime) -> datetime:
        """When a window of this duration that opened at `start` (naive UTC) ends.

        `Nmo` counts calendar months from `start` in UTC, clamping the day to the target month's
        end and keeping the time of day, as `budget_window_seconds` does. An end past year 9999
        comes back as `datetime.max` (same tzinfo as `start`): such a window never ends.
        An aware `start` is computed in UTC and returned in its own timezone.
        """
        if start.tzinfo is not None:
            try:
                start_utc = start.astimezone(UTC).replace(tzinfo=None)
            except OverflowError:  # within a day of year 1 or 9999: its UTC instant has no datetime
                return self.end_of_window(start.replace(tzinfo=None)).replace(tzinfo=start.tzinfo)
            end_utc = self.end_of_window(start_utc)
            if end_utc == datetime.max:
                return datetime.max.replace(tzinfo=start.tzinfo)
            try:
                return end_utc.replace(tzinfo=UTC).astimezone(start.tzinfo)
            except OverflowError:
                return datetime.max.replace(tzinfo=start.tzinfo)
        seconds = self.seconds
        if seconds is None:
            return shift_months(start, self.value)
        try:
            return start + timedelta(seconds=seconds)
        except OverflowError:
            return datetime.max


def parse_duration(raw: object, *, now: datetime | None = None) -> Duration:
    """Parse as LiteLLM's `duration_in_seconds` does; raise DurationError with a one-line reason.

    `now` only matters for `Nmo`, which LiteLLM rejects when N months from now leaves Python's
    datetime range (year 9999). Naive `now` is UTC; None reads the clock, as LiteLLM does.
    """
    if not isinstance(raw, str):
        raise DurationError(f"duration must be a string, got {type(raw).__name__} {_show(raw)}: {_ACCEPTED}")
    match = _GRAMMAR.match(_WORD_ALIASES.get(raw.strip().lower(), raw))
    if match is None or match.group(2) == "":
        raise DurationError(f"unsupported duration {_show(raw)}: {_ACCEPTED}")
    digits, unit = match.groups()
    try:
        value = int(digits)
    except ValueError:  # more digits than Python's int() accepts from text; LiteLLM fails the same way
        raise DurationError(f"unsupported duration {_show(raw)}: the number is too long; {_ACCEPTED}") from None
    if unit == "mo" and _shifted_year(_utc_naive(now), value) > _LAST_YEAR:
        raise DurationError(f"unsupported duration {_show(raw)}: {value} months from now is past year 9999")
    return Duration(raw=raw, value=value, unit=unit)


def shift_months(moment: datetime, months: int) -> datetime:
    """`moment` moved forward `months` calendar months, day clamped to the month's end; max if past 9999."""
    total = moment.year * 12 + moment.month - 1 + months
    year, month_index = divmod(total, 12)
    if year > _LAST_YEAR:
        return datetime.max
    month = month_index + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _shifted_year(moment: datetime, months: int) -> int:
    return (moment.year * 12 + moment.month - 1 + months) // 12


def _utc_naive(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC).replace(tzinfo=None)
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _show(value: object, limit: int = 60) -> str:
    """A one-line, bounded rendering of a user's value for an error message."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001  # e.g. an int too long for repr(); the type is enough then
        return f"<{type(value).__name__}>"
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
