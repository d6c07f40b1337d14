"""The current period of an entity's scalar `spend`, as LiteLLM's budget reset job aligns it.

Unlike per-model windows, key/team/user/end-user/team-member budgets reset on calendar boundaries
in `litellm_settings.timezone` (LiteLLM 1.74+, `get_next_standardized_reset_time`), and
`budget_reset_at` records the next reset. The period that ends there starts where LiteLLM's
`get_budget_window_start` says: `30d` and `Nmo` span calendar months, an unrecognised duration a day.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from auditor.durations import shift_months
from auditor.errors import InputError

_WORDS = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}
_SPELLED = re.compile(r"(\d+)([a-z]+)")
_UNIT = re.compile(r"(\d+)(mo|[smhdw]?)")
_STEP = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def zone(name: str | None) -> ZoneInfo | timezone:
    """--timezone or litellm_settings.timezone; LiteLLM itself falls back to UTC on an unknown name."""
    if not name:
        return timezone.utc
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
    unit = _UNIT.match(duration)[2] or word
    if unit == "mo" and word != "mo" and value != 1:
        return value, word
    return value, unit


def period_start(duration: str, reset_at: datetime, tz: ZoneInfo | timezone = timezone.utc) -> datetime:
    """Start (naive UTC) of the budget period that ends at `reset_at` (naive UTC)."""
    local = reset_at.replace(tzinfo=timezone.utc).astimezone(tz)
    value, unit = _reset_unit(duration)
    if value is None:
        start = local - timedelta(days=1)
    elif unit == "mo":
        start = shift_months(local, -value)
    elif unit == "d" and value == 30:
        start = shift_months(local, -1)
    elif unit in _STEP:
        start = local - timedelta(**{_STEP[unit]: value})
    else:
        start = local - timedelta(days=1)
    return start.astimezone(timezone.utc).replace(tzinfo=None)
