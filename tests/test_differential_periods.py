"""Scalar budget periods against LiteLLM 1.110.2's reset scheduler (`get_next_standardized_reset_time`): our
`next_reset` must give the same instant for any moment, and `period_start` must find the reset the job made before,
when the job runs right after each reset, in zones whose DST change falls at midnight or repeats an hour."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from conftest import import_litellm

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
get_next_standardized_reset_time = import_litellm("litellm.litellm_core_utils.duration_parser").get_next_standardized_reset_time

from auditor.litellm.periods import next_reset, period_start  # noqa: E402

pytestmark = pytest.mark.differential

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Santiago", "Asia/Beirut", "Asia/Kolkata", "Australia/Lord_Howe")
DURATIONS = ("1d", "7d", "30d", "1mo", "2d", "3w", "24h", "48h", "36h", "5h", "1h", "25h", "1000h", "90m", "45m", "15m",
             "61m", "90s", "7s", "daily", "weekly", "monthly", "hourly", "1month", "bogus")
# instants just before DST changes (spring and autumn, both hemispheres) and ordinary ones
STARTS = (datetime(2026, 3, 28, 20, tzinfo=timezone.utc), datetime(2026, 10, 24, 22, 17, tzinfo=timezone.utc),
          datetime(2026, 9, 5, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, 3, tzinfo=timezone.utc),
          datetime(2026, 4, 4, 10, 30, tzinfo=timezone.utc), datetime(2026, 6, 15, 13, 7, 11, tzinfo=timezone.utc))


@pytest.mark.parametrize("zone", ZONES)
def test_next_reset_is_litellms_at_any_moment(zone):
    rng = random.Random(zone)
    for duration in DURATIONS:
        for _ in range(120):
            moment = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=rng.randrange(365 * 86400),
                                                                            microseconds=rng.randrange(10**6))
            want = get_next_standardized_reset_time(duration, moment, zone).astimezone(timezone.utc)
            assert next_reset(duration, moment.astimezone(ZoneInfo(zone))).astimezone(timezone.utc) == want, (duration, moment)


@pytest.mark.parametrize("zone", ZONES)
def test_the_period_is_the_one_the_reset_job_made(zone):
    for duration in DURATIONS:
        for start in STARTS:
            reset = get_next_standardized_reset_time(duration, start, zone).astimezone(timezone.utc)
            for _ in range(30):  # the job runs a second after each reset and schedules the next
                following = get_next_standardized_reset_time(duration, reset + timedelta(seconds=1), zone).astimezone(timezone.utc)
                found = period_start(duration, following.replace(tzinfo=None), ZoneInfo(zone))
                assert found == reset.replace(tzinfo=None), (duration, zone, following)
                reset = following


def test_a_duration_too_large_for_a_date_has_no_period_instead_of_crashing():
    assert period_start("99999999999d", datetime(2026, 1, 1)) is None
    assert period_start("9999999999999h", datetime(2026, 1, 1), ZoneInfo("Europe/Berlin")) is None
