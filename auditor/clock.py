"""Instants on the command line (--now, --since, --until), all held as naive UTC like LiteLLM's columns."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from auditor.errors import InputError

_EARLIEST, _LATEST = datetime(1900, 1, 1), datetime(9000, 1, 1)
_AGO = re.compile(r"^(\d+)([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


Instant = str | datetime  # ISO 8601, an age such as "30d" (before `now`), or a datetime (naive means UTC)


def instant_text(value: Instant | None) -> str | None:
    """An instant given to the library as the command line would give it (a datetime as ISO 8601)."""
    return value.isoformat() if isinstance(value, datetime) else value


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def parse_instant(value: str, now: datetime, option: str) -> datetime:
    """ISO 8601 (a date, or a time with Z/offset; naive means UTC), or an age such as 7d meaning now minus 7 days.
    Instants outside 1900–9000 are refused: the windows and lookbacks computed from them would overflow a datetime."""
    text = value.strip()
    ago = _AGO.match(text)
    try:
        if ago:
            parsed = now - timedelta(**{_UNIT[ago[2]]: int(ago[1])})
        else:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise InputError(
                    f"{option} {value!r} is not a time: use ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z) or an age such as 7d"
                ) from None
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        parsed = None
    if parsed is None or not (_EARLIEST <= parsed <= _LATEST):
        raise InputError(f"{option} {value!r} is out of range: give an instant between {_EARLIEST:%Y} and {_LATEST:%Y}")
    return parsed
