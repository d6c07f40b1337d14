"""Our reset scheduler (`periods.next_reset`) against LiteLLM 1.110.2's `get_next_standardized_reset_time`: the same
instant for any moment, in zones whose DST change falls at midnight or repeats an hour. That `period_start` finds the
reset the job made before is checked in tests/test_differential_counters.py."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conftest import import_litellm

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
get_next_standardized_reset_time = import_litellm("litellm.litellm_core_utils.duration_parser").get_next_standardized_reset_time

from auditor.litellm.periods import next_reset, period_start  # noqa: E402

pytestmark = pytest.mark.differential

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Asia/Beirut", "Asia/Kolkata", "Australia/Lord_Howe")
DURATIONS = (
    "1d",
    "7d",
    "30d",
    "1mo",
    "2d",
    "3w",
    "24h",
    "48h",
    "36h",
    "5h",
    "1h",
    "25h",
    "1000h",
    "90m",
    "45m",
    "15m",
    "61m",
    "90s",
    "7s",
    "daily",
    "weekly",
    "monthly",
    "hourly",
    "1month",
    "bogus",
)


@pytest.mark.parametrize("zone", ZONES)
def test_next_reset_is_litellms_at_any_moment(zone):
    rng = random.Random(zone)
    for duration in DURATIONS:
        for _ in range(120):
            moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
                seconds=rng.randrange(365 * 86400), microseconds=rng.randrange(10**6)
            )
            want = get_next_standardized_reset_time(duration, moment, zone).astimezone(UTC)
            assert next_reset(duration, moment.astimezone(ZoneInfo(zone))).astimezone(UTC) == want, (duration, moment)


def test_a_duration_too_large_for_a_date_has_no_period_instead_of_crashing():
    assert period_start("99999999999d", datetime(2026, 1, 1)) is None
    assert period_start("9999999999999h", datetime(2026, 1, 1), ZoneInfo("Europe/Berlin")) is None
