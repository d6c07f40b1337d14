"""LiteLLM's duration grammar (`1d`, `30d`, `1mo`, `daily`), and how long a window of one lasts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from auditor.errors import DurationError


@dataclass(frozen=True, slots=True)
class Duration:
    """A parsed duration. `raw` is kept: LiteLLM's counter keys use the string as configured."""

    raw: str
    value: int
    unit: str  # one of "s", "m", "h", "d", "w", "mo"

    def end_of_window(self, start: datetime) -> datetime:
        """When a window of this duration that opened at `start` (naive UTC) ends."""
        raise NotImplementedError


def parse_duration(raw: object) -> Duration:
    """Parse as LiteLLM's `duration_in_seconds` does; raise DurationError with a one-line reason."""
    raise NotImplementedError
