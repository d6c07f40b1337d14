"""LiteLLM's duration grammar and window lengths, by hand-computed cases and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.errors import DurationError, InputError
from auditor.litellm.durations import Duration, parse_duration

NOW = datetime(2026, 3, 15, 12, 0, 0)


@pytest.mark.parametrize(
    ("raw", "value", "unit", "seconds"),
    [
        ("1s", 1, "s", 1),
        ("90s", 90, "s", 90),
        ("1m", 1, "m", 60),
        ("1h", 1, "h", 3600),
        ("1d", 1, "d", 86400),
        ("30d", 30, "d", 2_592_000),
        ("2w", 2, "w", 1_209_600),
        ("0d", 0, "d", 0),
        ("007d", 7, "d", 604_800),
        # re.match is a prefix match: the rest of the string is ignored
        ("7days", 7, "d", 604_800),
        ("1min", 1, "m", 60),
        ("1hour", 1, "h", 3600),
        ("2d ", 2, "d", 172_800),
        ("3hx", 3, "h", 10_800),
        ("1month", 1, "mo", None),
        ("1mo", 1, "mo", None),
        ("12mo", 12, "mo", None),
        ("0mo", 0, "mo", None),
        # word aliases, after strip() and lower(); monthly is 30 days, not a calendar month
        ("hourly", 1, "h", 3600),
        ("daily", 24, "h", 86400),
        ("weekly", 7, "d", 604_800),
        ("monthly", 30, "d", 2_592_000),
        (" Daily ", 24, "h", 86400),
        ("WEEKLY", 7, "d", 604_800),
        # \d is Unicode-aware in LiteLLM's pattern too
        ("\u0661d", 1, "d", 86400),
        ("\uff11d", 1, "d", 86400),
    ],
)
def test_valid_durations(raw: str, value: int, unit: str, seconds: int | None) -> None:
    duration = parse_duration(raw, now=NOW)
    assert duration == Duration(raw=raw, value=value, unit=unit)
    assert duration.seconds == seconds


@pytest.mark.parametrize(
    "raw",
    ["2 weeks", "1y", "30", "", " 1d", "1.5d", "d", "mo", "-1d", "+1d", "1 d", "daily please", "1D", "1H"],
)
def test_invalid_durations(raw: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(raw, now=NOW)
    message = str(caught.value)
    assert "\n" not in message
    assert repr(raw) in message
    assert "1mo" in message and "daily" in message


def test_error_message_names_value_and_grammar() -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration("1y")
    assert str(caught.value) == (
        "unsupported duration '1y': use <number><s|m|h|d|w|mo> such as 1d, 30d, 1mo, or hourly/daily/weekly/monthly"
    )


@pytest.mark.parametrize("raw", [None, 30, 1.5, b"1d", ["1d"], {"d": 1}, True])
def test_non_strings_are_rejected(raw: object) -> None:
    with pytest.raises(DurationError, match="must be a string"):
        parse_duration(raw)


def test_duration_error_is_an_input_error() -> None:
    assert issubclass(DurationError, InputError)


def test_months_past_year_9999_are_invalid() -> None:
    with pytest.raises(DurationError, match="99999mo"):
        parse_duration("99999mo", now=NOW)
    # 2026-03 + 95_685 months = 9999-12: the last month Python can represent
    assert parse_duration("95685mo", now=NOW).value == 95_685
    with pytest.raises(DurationError):
        parse_duration("95686mo", now=NOW)
    # fixed units are never out of range: LiteLLM just returns a huge number of seconds
    assert parse_duration("99999999999d", now=NOW).seconds == 99_999_999_999 * 86400


def test_too_many_digits_is_invalid() -> None:
    with pytest.raises(DurationError, match="too long"):
        parse_duration("9" * 5000 + "d")


def test_raw_is_kept_so_counter_keys_differ() -> None:
    daily, hours, day = (parse_duration(raw) for raw in ("daily", "24h", "1d"))
    assert daily.seconds == hours.seconds == day.seconds == 86400
    assert len({daily.raw, hours.raw, day.raw}) == 3
    assert daily != hours  # the raw string is part of identity


@pytest.mark.parametrize(
    ("raw", "start", "end"),
    [
        ("1d", datetime(2026, 1, 1, 10), datetime(2026, 1, 2, 10)),
        ("24h", datetime(2026, 1, 1, 10), datetime(2026, 1, 2, 10)),
        ("90s", datetime(2026, 1, 1, 23, 59), datetime(2026, 1, 2, 0, 0, 30)),
        ("1w", datetime(2024, 2, 26), datetime(2024, 3, 4)),
        ("0d", datetime(2026, 1, 1, 10), datetime(2026, 1, 1, 10)),
        # calendar months from the start, day clamped to the target month's end, time kept
        ("1mo", datetime(2026, 1, 31, 10), datetime(2026, 2, 28, 10)),
        ("1mo", datetime(2026, 2, 28, 10), datetime(2026, 3, 28, 10)),
        ("1mo", datetime(2024, 1, 31, 10), datetime(2024, 2, 29, 10)),
        ("1mo", datetime(2026, 3, 31, 23, 59, 59, 999_999), datetime(2026, 4, 30, 23, 59, 59, 999_999)),
        ("1mo", datetime(2026, 12, 15), datetime(2027, 1, 15)),
        ("2mo", datetime(2025, 12, 31), datetime(2026, 2, 28)),
        ("13mo", datetime(2023, 1, 29), datetime(2024, 2, 29)),
        ("12mo", datetime(2024, 2, 29), datetime(2025, 2, 28)),
        ("0mo", datetime(2026, 1, 31), datetime(2026, 1, 31)),
        ("monthly", datetime(2026, 1, 31, 10), datetime(2026, 3, 2, 10)),
        # past year 9999 the window never ends
        ("1mo", datetime(9999, 12, 5), datetime.max),
        ("99999999999d", datetime(2026, 1, 1), datetime.max),
    ],
)
def test_end_of_window(raw: str, start: datetime, end: datetime) -> None:
    assert parse_duration(raw, now=NOW).end_of_window(start) == end


def test_end_of_window_with_aware_start_is_computed_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    start = datetime(2026, 2, 1, 1, 0, tzinfo=plus_two)  # 2026-01-31 23:00 UTC
    end = parse_duration("1mo").end_of_window(start)
    assert end == datetime(2026, 2, 28, 23, 0, tzinfo=UTC)
    assert end.tzinfo == plus_two


def test_aware_now_is_converted_to_utc() -> None:
    late = datetime(9999, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))  # 9999-11-30 23:30 UTC
    assert parse_duration("1mo", now=late).value == 1
    with pytest.raises(DurationError):
        parse_duration("2mo", now=late)


@given(st.text())
def test_parse_duration_only_raises_duration_error(raw: str) -> None:
    try:
        duration = parse_duration(raw, now=NOW)
    except DurationError as err:
        assert "\n" not in str(err)
    else:
        assert duration.raw == raw
        assert duration.unit in {"s", "m", "h", "d", "w", "mo"}


@given(st.from_regex(r"\A[0-9]{1,4}(s|m|h|d|w|mo)[a-z ]{0,3}\Z"))
def test_number_and_unit_always_parse(raw: str) -> None:
    # at most 9999 months: more can pass year 9999, which LiteLLM rejects too (tested above)
    assert parse_duration(raw, now=NOW).value >= 0


@given(
    st.integers(min_value=0, max_value=1200),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 12, 31)),
)
def test_month_windows_end_on_the_clamped_day_at_the_same_time(months: int, start: datetime) -> None:
    end = parse_duration(f"{months}mo", now=NOW).end_of_window(start)
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == months
    assert end.time() == start.time()
    assert end.day == start.day or (end.day < start.day and (end + timedelta(days=1)).day == 1)
