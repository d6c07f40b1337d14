"""Window reconstruction: hand-computed cases, and a brute-force replay that must agree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.audit.windows import DEFAULT_LOOKBACK, Charge, Window, WindowTracker, windows
from auditor.errors import InputError
from auditor.litellm.durations import Duration, parse_duration
from auditor.money import to_dollars, to_nanos

T0 = datetime(2026, 1, 1)


def at(hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def ended(end: datetime, spend: float = 1.0, start: datetime | None = None) -> Charge:
    """A request that took one second unless told otherwise."""
    return Charge(end - timedelta(seconds=1) if start is None else start, end, spend)


def run(charges: list[Charge], duration: str, limit: float | None, **kwargs: object) -> list[Window]:
    return list(windows(charges, parse_duration(duration), limit, **kwargs))  # type: ignore[arg-type]


def test_no_charges_no_windows() -> None:
    assert run([], "1d", 1.0) == []


def test_boundary_exactly_at_the_period_opens_a_new_window() -> None:
    found = run([ended(at(0)), ended(at(0, 30)), ended(at(1))], "1h", 10.0)
    assert [(w.start, w.end, w.requests, w.spend) for w in found] == [
        (at(0), at(1), 2, 2.0),
        (at(1), at(2), 1, 1.0),
    ]


def test_idle_time_opens_nothing_and_windows_drift() -> None:
    found = run([ended(at(0, 10)), ended(at(5, 10)), ended(at(6, 9)), ended(at(6, 10))], "1h", None)
    assert [(w.start, w.end, w.requests) for w in found] == [
        (at(0, 10), at(1, 10), 1),
        (at(5, 10), at(6, 10), 2),
        (at(6, 10), at(7, 10), 1),
    ]


def test_month_windows_across_february() -> None:
    charges = [
        ended(datetime(2026, 1, 31, 10)),
        ended(datetime(2026, 2, 28, 9, 59, 59)),
        ended(datetime(2026, 2, 28, 10)),
        ended(datetime(2026, 3, 28, 10)),
    ]
    found = run(charges, "1mo", None)
    assert [(w.start, w.end, w.requests) for w in found] == [
        (datetime(2026, 1, 31, 10), datetime(2026, 2, 28, 10), 2),
        (datetime(2026, 2, 28, 10), datetime(2026, 3, 28, 10), 1),
        (datetime(2026, 3, 28, 10), datetime(2026, 4, 28, 10), 1),
    ]


@pytest.mark.parametrize("raw", ["daily", "24h", "1d"])
def test_daily_spellings_time_the_same_window(raw: str) -> None:
    (window,) = run([ended(at(1)), ended(at(24, 59, 59))], raw, None)
    assert (window.start, window.end, window.requests) == (at(1), at(25), 2)


def test_the_crossing_request_is_not_a_leak_but_the_next_admitted_one_is() -> None:
    charges = [
        ended(at(0, 1), 6.0, start=at(0, 0)),
        ended(at(1, 1), 6.0, start=at(1, 0)),  # total 6 when it started; it crosses to 12
        ended(at(1, 2), 2.0, start=at(1, 0, 30)),  # started before the crossing charge ended
        ended(at(2, 1), 1.0, start=at(1, 1)),  # started the instant the crossing charge ended: 12 >= 10
        ended(at(3, 1), 4.0, start=at(3, 0)),
    ]
    (window,) = run(charges, "1d", 10.0)
    assert (window.spend, window.requests) == (19.0, 5)
    assert (window.requests_after_limit, window.spend_after_limit) == (2, 5.0)
    assert window.over_budget(10.0)


def test_reaching_the_limit_exactly_blocks_but_is_not_overspend() -> None:
    (window,) = run([ended(at(0), 5.0), ended(at(1), 0.0)], "1d", 5.0)
    assert (window.requests_after_limit, window.spend_after_limit) == (1, 0.0)
    assert not window.over_budget(5.0)


def test_zero_limit_blocks_everything() -> None:
    charges = [ended(at(0), 0.0), ended(at(0, 30), 1.0), ended(at(2), 2.0)]
    found = run(charges, "1h", 0.0)
    assert [(w.requests, w.requests_after_limit, w.spend_after_limit) for w in found] == [(2, 2, 1.0), (1, 1, 2.0)]
    assert [w.over_budget(0.0) for w in found] == [True, True]


@pytest.mark.parametrize("limit", [None, -1.0, math.nan])
def test_unenforced_caps_never_leak_nor_go_over(limit: float | None) -> None:
    charges = [ended(at(0), 5.0), ended(at(0, 30), 5.0), ended(at(0, 40), 5.0)]
    (window,) = run(charges, "1h", limit)
    assert (window.spend, window.requests, window.requests_after_limit, window.spend_after_limit) == (15.0, 3, 0, 0.0)
    assert not window.over_budget(limit)


def test_a_long_request_is_judged_against_the_window_open_when_it_started() -> None:
    charges = [
        ended(at(0, 10), 5.0, start=at(0, 9)),  # W1 opens at 0:10 and reaches 5 there
        ended(at(0, 20), 1.0, start=at(0, 15)),  # leak in W1
        ended(at(1, 30), 0.5, start=at(1, 29)),  # W1 ended at 1:10; opens W2, nothing open at 1:29
        ended(at(1, 40), 2.0, start=at(0, 30)),  # started in W1 after it reached 5: leak, charged to W2
        ended(at(1, 50), 1.0, start=at(0, 5)),  # started before W1 existed: counter read 0
        ended(at(1, 55), 3.0, start=at(1, 15)),  # started in the idle gap: counter read 0
        ended(at(2, 0), 4.0, start=at(1, 35)),  # started in W2 when it held 0.5: fine
    ]
    w1, w2 = run(charges, "1h", 5.0)
    assert (w1.start, w1.end, w1.spend, w1.requests, w1.requests_after_limit, w1.spend_after_limit) == (
        at(0, 10),
        at(1, 10),
        6.0,
        2,
        1,
        1.0,
    )
    assert (w2.start, w2.end, w2.spend, w2.requests, w2.requests_after_limit, w2.spend_after_limit) == (
        at(1, 30),
        at(2, 30),
        10.5,
        5,
        1,
        2.0,
    )


def test_a_request_started_several_windows_back() -> None:
    charges = [ended(at(0), 9.0)]
    charges += [ended(at(h, 1), 0.0) for h in range(1, 6)]  # five more one-hour windows
    charges.append(ended(at(6, 30), 1.0, start=at(0, 30)))  # started in the first, full window
    charges.append(ended(at(6, 40), 1.0, start=at(3, 30)))  # started in a window holding 0
    found = run(charges, "1h", 9.0)
    assert [w.requests_after_limit for w in found] == [0, 0, 0, 0, 0, 0, 1]
    assert found[-1].spend_after_limit == 1.0


def test_a_window_that_opens_full_at_the_boundary() -> None:
    charges = [
        ended(at(0), 5.0),
        ended(at(1), 5.0),  # started at 0:59:59 in the full first window; opens the second, full at once
        Charge(at(1), at(1, 30), 1.0),  # started the instant the second window opened with 5 in it
    ]
    first, second = run(charges, "1h", 5.0)
    assert (first.requests_after_limit, second.requests_after_limit, second.spend_after_limit) == (0, 2, 6.0)


def test_ties_on_end_time_count_in_input_order() -> None:
    t = at(0)
    charges = [Charge(t, t, 5.0), Charge(t, t, 1.0), Charge(t, t, 1.0)]
    (window,) = run(charges, "1h", 5.0)
    # the first reads 0; the second sees the first's 5; the third too
    assert (window.requests_after_limit, window.spend_after_limit) == (2, 2.0)


def test_start_after_end_is_read_as_end() -> None:
    charges = [ended(at(0), 5.0), Charge(at(3), at(0, 30), 1.0)]
    (window,) = run(charges, "1h", 5.0)
    assert window.requests_after_limit == 1


def test_requests_longer_than_the_lookback_are_judged_at_end_minus_lookback() -> None:
    charges = [ended(at(0), 5.0), ended(at(2), 0.0), Charge(at(0, 30), at(2, 10), 1.0)]
    exact = run(charges, "1h", 5.0, lookback=None)
    bounded = run(charges, "1h", 5.0, lookback=timedelta(minutes=30))
    assert exact[-1].requests_after_limit == 1  # judged at 0:30, in the full first window
    assert bounded[-1].requests_after_limit == 0  # judged at 1:40, in the idle gap
    assert timedelta(hours=2) <= DEFAULT_LOOKBACK
    assert run(charges, "1h", 5.0) == exact


def test_zero_length_windows_hold_one_instant_of_charges() -> None:
    found = run([ended(at(0)), ended(at(0)), ended(at(1))], "0s", 0.0)
    assert [(w.start, w.end, w.requests) for w in found] == [(at(0), at(0), 1), (at(0), at(0), 1), (at(1), at(1), 1)]
    assert all(w.requests_after_limit == 1 for w in found)


def test_unsorted_charges_are_an_input_error() -> None:
    tracker = WindowTracker(parse_duration("1h"), 1.0)
    tracker.add(ended(at(1)))
    with pytest.raises(InputError, match="sorted by end_time"):
        tracker.add(ended(at(0)))


def test_tracker_reports_closed_windows_as_they_close() -> None:
    tracker = WindowTracker(parse_duration("1h"), 1.0)
    assert tracker.add(ended(at(0))) is None
    assert tracker.add(ended(at(0, 59))) is None
    assert tracker.current == Window(at(0), at(1), 2.0, 2, 1, 1.0)
    closed = tracker.add(ended(at(1)))  # started at 0:59:59, in the full first window: a leak
    assert closed == Window(at(0), at(1), 2.0, 2, 1, 1.0)
    assert tracker.close() == Window(at(1), at(2), 1.0, 1, 1, 1.0)
    assert tracker.close() is None


def test_memory_is_bounded_by_windows_not_rows() -> None:
    tracker = WindowTracker(parse_duration("1m"), 0.5, lookback=timedelta(minutes=10))
    for second in range(0, 6 * 3600, 2):  # 10 800 rows, 360 windows, each reaching the limit
        tracker.add(ended(at(seconds=second), 0.25))
    kept = len(tracker._times) - tracker._head  # noqa: SLF001  # the documented bound, checked
    assert kept <= 2 * 11


# --- a brute-force model: keep every charge, recompute everything -------------------------------


@dataclass
class _Slot:
    start: datetime
    end: datetime
    members: list[int]


def brute_force(charges: list[Charge], duration: Duration, limit: float | None, lookback: timedelta | None) -> list[Window]:
    slots: list[_Slot] = []
    owner: list[int] = []
    for index, charge in enumerate(charges):
        if not slots or charge.end_time >= slots[-1].end:
            slots.append(_Slot(charge.end_time, duration.end_of_window(charge.end_time), []))
        slots[-1].members.append(index)
        owner.append(len(slots) - 1)
    enforced = limit is not None and limit >= 0
    leaked: list[bool] = []
    for index, charge in enumerate(charges):
        judged = min(charge.start_time, charge.end_time)
        if lookback is not None:
            judged = max(judged, charge.end_time - lookback)
        open_at = [n for n, slot in enumerate(slots) if slot.start <= judged < slot.end]
        total = 0  # nano-dollars: amounts are summed exactly (auditor.money)
        if open_at:
            for j in slots[open_at[0]].members:
                if j < index and charges[j].end_time <= judged:
                    total += to_nanos(charges[j].spend)
        leaked.append(enforced and to_dollars(total) >= limit)  # type: ignore[operator]
    result = []
    for n, slot in enumerate(slots):
        spend = leak_spend = 0
        leaks = 0
        for j in slot.members:
            spend += to_nanos(charges[j].spend)
            if leaked[j]:
                leaks += 1
                leak_spend += to_nanos(charges[j].spend)
        assert all(owner[j] == n for j in slot.members)
        result.append(Window(slot.start, slot.end, to_dollars(spend), len(slot.members), leaks, to_dollars(leak_spend)))
    return result


@st.composite
def charge_streams(draw: st.DrawFn) -> tuple[list[Charge], timedelta | None]:
    """Charges on a time grid, and a lookback on the same grid so trimming lands on charge instants."""
    count = draw(st.integers(min_value=0, max_value=40))
    step = draw(st.sampled_from([1, 7, 60, 3600, 86400 * 3]))
    end = datetime(2024, 1, 28) + timedelta(seconds=draw(st.integers(0, 86400 * 5)))
    spends = st.one_of(st.sampled_from([0.0, 0.25, 1.0, 2.5, 5.0]), st.floats(min_value=-2, max_value=10, width=32))
    charges = []
    for _ in range(count):
        end += timedelta(seconds=draw(st.integers(0, 4)) * step)
        took = timedelta(seconds=draw(st.integers(-1, 30)) * step)
        charges.append(Charge(end - took, end, float(draw(spends))))
    lookback = draw(
        st.one_of(
            st.none(),
            st.just(DEFAULT_LOOKBACK),
            st.integers(0, 12).map(lambda k: timedelta(seconds=k * step)),
        )
    )
    return charges, lookback


durations = st.sampled_from(["0s", "3s", "10s", "1m", "5m", "1h", "1d", "7d", "1mo", "2mo", "daily"]).map(parse_duration)
limits = st.sampled_from([None, -1.0, 0.0, 0.5, 1.0, 2.5, 5.0, 12.0, math.inf])


@settings(max_examples=400, deadline=None)
@given(charge_streams(), durations, limits)
def test_streaming_agrees_with_brute_force(
    stream: tuple[list[Charge], timedelta | None], duration: Duration, limit: float | None
) -> None:
    charges, lookback = stream
    assert run_tracker(charges, duration, limit, lookback) == brute_force(charges, duration, limit, lookback)


def run_tracker(charges: list[Charge], duration: Duration, limit: float | None, lookback: timedelta | None) -> list[Window]:
    return list(windows(charges, duration, limit, lookback=lookback))


@settings(max_examples=200, deadline=None)
@given(charge_streams(), durations, limits)
def test_windows_cover_every_charge_once_and_never_overlap(
    stream: tuple[list[Charge], timedelta | None], duration: Duration, limit: float | None
) -> None:
    charges, lookback = stream
    found = run_tracker(charges, duration, limit, lookback)
    assert math.isclose(sum(w.spend for w in found), sum(c.spend for c in charges), abs_tol=1e-6)
    assert sum(w.requests for w in found) == len(charges)
    for window in found:
        assert window.start <= window.end
        assert 0 <= window.requests_after_limit <= window.requests
    for earlier, later in zip(found, found[1:]):
        assert earlier.end <= later.start
