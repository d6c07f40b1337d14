"""Our durations, windows and budget parsing against LiteLLM 1.110.2's own code, on generated cases.

Deliberate differences are listed in docs/differences-from-litellm.md and excluded here by name.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from conftest import import_litellm

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no network: use the cost map shipped in the wheel
litellm = import_litellm("litellm")  # skipped without the differential extra, a failure under CI

from litellm.litellm_core_utils.duration_parser import duration_in_seconds  # noqa: E402
from litellm.router_strategy.budget_limiter import budget_window_seconds  # noqa: E402

from auditor.errors import DurationError  # noqa: E402
from auditor.litellm.budgets import BudgetEntry, parse_model_max_budget  # noqa: E402
from auditor.litellm.durations import parse_duration  # noqa: E402

pytestmark = pytest.mark.differential

SEED = 20260315
CASES = 3000
EPOCH = datetime(1970, 1, 1)


def _hook() -> Callable[[object], object]:
    """LiteLLM's `_usable_budget_config`; its module needs the proxy's web deps (fastapi, orjson)."""
    module = import_litellm("litellm.proxy.hooks.model_max_budget_limiter")
    return module._usable_budget_config  # noqa: SLF001  # the exact function the limiter uses


def _mismatches(found: list[str]) -> str:
    return f"{len(found)} disagreements, first ones:\n" + "\n".join(found[:15])


# --- generators ------------------------------------------------------------------------------

_DIGITS = "0123456789"
_ODD_DIGITS = "\u0661\u0665\uff15\u07c0\u0e51"  # Arabic-Indic, fullwidth, NKo, Thai: \d matches them
_UNITS = ["", "s", "m", "h", "d", "w", "mo", "min", "month", "months", "days", "hour", "y", "D", "H", "M", "Mo", "ms", "wk"]
_SPACES = ["", " ", "\t", "\n", "\xa0", "  "]
_ALIASES = ["hourly", "daily", "weekly", "monthly", "Daily", "WEEKLY", "mOnThLy", "day", "dailyy", "annually"]


def _number(rng: random.Random, odd: bool = True) -> str:
    size = rng.choice([1, 1, 1, 2, 2, 3, 5, 12])
    pool = _DIGITS + (_ODD_DIGITS if odd and rng.random() < 0.1 else "")
    return "".join(rng.choice(pool) for _ in range(size))


def random_duration(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(_SPACES) + rng.choice(_ALIASES) + rng.choice(_SPACES)
    if roll < 0.2:
        return "".join(rng.choice("0123456789smhdwo .-+yD\u0661") for _ in range(rng.randint(0, 6)))
    if roll < 0.22:
        return rng.choice(["99999mo", "9999mo", "95000mo", "9" * 4301 + "d", "1" * 4300 + "s", "-1d", "1.5d", "1e3s"])
    text = _number(rng) + rng.choice(_UNITS)
    if rng.random() < 0.1:
        text = rng.choice(_SPACES) + text
    if rng.random() < 0.15:
        text += rng.choice([" ", "x", "ly", "1", ".5", " weeks"])
    return text


def _numeric_text(rng: random.Random, integer_like: bool) -> str:
    """Strings near the edge of what pydantic reads as a number."""
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(
            [
                "NaN",
                "nan",
                "-nan",
                "+NAN",
                "inf",
                "-inf",
                "+Infinity",
                "INFINITY",
                "infinit",
                "in_f",
                "n_an",
                "1,000",
                "$5",
                "5$",
                "0x10",
                "0b1",
                "1e",
                "e1",
                ".",
                "-.",
                "",
                " ",
                "1d",
                "١٢",
                "１",
                "1.0.0",
                "--1",
                "0-4",
                "+0-4",
                "-0-4",
                "0__9",
                "0-01",
                "0-0",
                "0_",
                "0_.0",
                "1_0.0",
                "1.0_0",
                "+_1",
                "1._5",
                "in_f",
            ]
        )
    sign = rng.choice(["", "", "", "-", "+"])
    whole = _number(rng, odd=False)
    if rng.random() < 0.2:
        cut = rng.randint(0, len(whole))
        whole = whole[:cut] + rng.choice(["_", "__"]) + whole[cut:]
    text = sign + whole
    if rng.random() < (0.3 if integer_like else 0.5):
        text += "." + rng.choice(["", "0", "00", "5", "25", "0_0", "_5"])
    if rng.random() < (0.05 if integer_like else 0.2):
        text += rng.choice(["e", "E"]) + rng.choice(["", "-", "+"]) + rng.choice(["1", "3", "400", "_5", "5_0"])
    if rng.random() < 0.25:
        text = rng.choice(_SPACES + ["\x1c", "\u200b", "\u2003", "\x85", "\ufeff", "_"]) + text
    if rng.random() < 0.25:
        text += rng.choice(_SPACES + ["\x1c", "\u3000", "_", "x"])
    if rng.random() < 0.02:
        text = rng.choice(["1" * 4300, "1" * 4301, "0" * 4400 + "7", "9" * 400])
    return text


def random_amount(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.45:
        return _numeric_text(rng, integer_like=False)
    if roll < 0.85:
        return rng.choice(
            [
                0,
                1,
                -1,
                3,
                0.5,
                -0.0,
                1e308,
                1e-320,
                math.nan,
                math.inf,
                -math.inf,
                10**400,
                2**63,
                True,
                False,
                None,
                [1],
                {"a": 1},
                b"1.5",
                b"x",
                "1.00",
            ]
        )
    return rng.uniform(-5, 50)


def random_int_limit(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.5:
        return _numeric_text(rng, integer_like=True)
    return rng.choice(
        [
            0,
            7,
            -3,
            10**30,
            1.0,
            1.5,
            -0.0,
            9.2e18,
            2.0**63,
            -(2.0**63),
            1e20,
            math.nan,
            math.inf,
            True,
            None,
            "10",
            "1.0",
            "10.00",
            b"5",
            [1],
            {},
        ]
    )


def random_entry(rng: random.Random) -> object:
    roll = rng.random()
    if roll < 0.08:
        return rng.choice([0.5, 3, "1.0", None, True, [], ["1d"], "daily", -1])
    entry: dict[str, object] = {}
    if rng.random() < 0.6:
        entry["budget_limit" if rng.random() < 0.5 else "max_budget"] = random_amount(rng)
    if rng.random() < 0.15:
        entry["max_budget" if "budget_limit" in entry else "budget_limit"] = random_amount(rng)
    for key in ("time_period", "budget_duration"):
        if rng.random() < 0.5:
            entry[key] = rng.choice([None, 1, b"1d", ["1d"]]) if rng.random() < 0.1 else random_duration(rng)
    for key in ("tpm_limit", "rpm_limit"):
        if rng.random() < 0.2:
            entry[key] = random_int_limit(rng)
    if rng.random() < 0.1:
        entry[rng.choice(["note", "model", "self", "data", "budget_reset_at", "__class__"])] = "x"
    return entry


# --- durations -------------------------------------------------------------------------------


def test_duration_validity_and_length_match_duration_in_seconds() -> None:
    rng = random.Random(SEED)
    found: list[str] = []
    for _ in range(CASES):
        raw = random_duration(rng)
        try:
            theirs: int | None = duration_in_seconds(raw)
        except (ValueError, OverflowError):  # OverflowError: a month count past what datetime() takes
            theirs = None
        try:
            ours = parse_duration(raw)
        except DurationError:
            if theirs is not None:
                found.append(f"{raw!r}: LiteLLM {theirs}s, auditor rejects")
            continue
        if theirs is None:
            found.append(f"{raw!r}: LiteLLM rejects, auditor {ours}")
        elif ours.seconds is not None and ours.seconds != theirs:
            found.append(f"{raw!r}: LiteLLM {theirs}s, auditor {ours.seconds}s")
    assert not found, _mismatches(found)


def _starts(rng: random.Random) -> list[datetime]:
    special = [
        datetime(year, month, day, hour, minute, second)
        for year in (2000, 2023, 2024, 2025, 2100)
        for month, day in ((1, 28), (1, 29), (1, 30), (1, 31), (2, 28), (2, 29), (3, 31), (4, 30), (8, 31), (12, 31))
        for hour, minute, second in ((0, 0, 0), (23, 59, 59), (10, 0, 0))
        if not (month == 2 and day == 29 and year % 4 != 0) and not (month == 2 and day == 29 and year == 2100)
    ]
    randoms = [EPOCH + timedelta(seconds=rng.randrange(0, 4_102_444_800)) for _ in range(400)]
    with_micros = [start.replace(microsecond=rng.randrange(1_000_000)) for start in randoms[:100]]
    return special + randoms + with_micros


def test_end_of_window_matches_budget_window_seconds() -> None:
    rng = random.Random(SEED + 1)
    durations = [
        "1s",
        "90s",
        "1m",
        "15m",
        "1h",
        "24h",
        "1d",
        "7d",
        "30d",
        "1w",
        "2w",
        "0d",
        "0mo",
        "1min",
        "7days",
        "1month",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        *(f"{months}mo" for months in (1, 2, 3, 5, 6, 11, 12, 13, 18, 24, 48, 120)),
    ]
    found: list[str] = []
    for start in _starts(rng):
        started_at = (start - EPOCH).total_seconds()
        start_seen = datetime.fromtimestamp(started_at, tz=UTC).replace(tzinfo=None)  # as LiteLLM reads it
        for raw in rng.sample(durations, 8):
            theirs = budget_window_seconds(started_at, raw)
            end = parse_duration(raw).end_of_window(start_seen)
            ours = (end - start_seen).total_seconds()
            if ours != theirs:
                found.append(f"{raw!r} from {start_seen.isoformat()}: LiteLLM {theirs}s, auditor {ours}s (ends {end})")
    assert not found, _mismatches(found)


@pytest.mark.parametrize(
    ("start", "raw"),
    [(datetime(9999, 6, 1), "7mo"), (datetime(9999, 12, 31), "1d"), (datetime(2026, 1, 1), "99999999999d")],
)
def test_windows_ending_after_year_9999_are_a_deliberate_difference(start: datetime, raw: str) -> None:
    """Excluded above: docs/differences-from-litellm.md, "window ending after year 9999"."""
    try:
        budget_window_seconds((start - EPOCH).total_seconds(), raw)
    except (ValueError, OverflowError):
        pass  # LiteLLM cannot time it (Nmo) or returns seconds no datetime can hold
    assert parse_duration(raw, now=datetime(2026, 1, 1)).end_of_window(start) == datetime.max


# --- budget entries ------------------------------------------------------------------------------


def _same_float(ours: float | None, theirs: float | None) -> bool:
    if ours is None or theirs is None:
        return ours is theirs
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return ours == theirs and math.copysign(1, ours) == math.copysign(1, theirs)


def _compare_entries(entries: list[object]) -> list[str]:
    usable_budget_config = _hook()
    found: list[str] = []
    for entry in entries:
        theirs = usable_budget_config(entry)
        ours = parse_model_max_budget({"m": entry})["m"]
        if (theirs is not None) != isinstance(ours, BudgetEntry):
            found.append(f"{entry!r:.200}: LiteLLM {'usable' if theirs is not None else 'ignores'}, auditor {ours!r:.200}")
        elif isinstance(ours, BudgetEntry):
            if not _same_float(ours.limit, theirs.max_budget) or ours.duration.raw != theirs.budget_duration:
                found.append(f"{entry!r:.200}: LiteLLM {theirs!r}, auditor {ours!r}")
    return found


def test_entry_classification_matches_usable_budget_config() -> None:
    rng = random.Random(SEED + 2)
    found = _compare_entries([random_entry(rng) for _ in range(CASES)])
    assert not found, _mismatches(found)


def test_amount_coercion_matches_pydantic() -> None:
    rng = random.Random(SEED + 3)
    amounts = [random_amount(rng) for _ in range(CASES)]
    found = _compare_entries([{"budget_limit": amount, "time_period": "1d"} for amount in amounts])
    assert not found, _mismatches(found)


def test_rate_limit_coercion_matches_pydantic() -> None:
    rng = random.Random(SEED + 4)
    limits = [random_int_limit(rng) for _ in range(CASES)]
    found = _compare_entries([{"max_budget": 1, "budget_duration": "1d", "tpm_limit": value} for value in limits])
    assert not found, _mismatches(found)


def test_a_json_string_value_is_not_honoured_by_litellm() -> None:
    """Why a str value is a whole-value problem: LiteLLM's key and user rows refuse it outright."""
    types = import_litellm("litellm.proxy._types")
    value = '{"gpt-4o": {"budget_limit": 1, "time_period": "1d"}}'
    with pytest.raises(ValueError):
        types.LiteLLM_VerificationTokenView(token="t", model_max_budget=value)
    with pytest.raises(ValueError):
        types.LiteLLM_VerificationTokenView(token="t", team_model_max_budget=value)
    with pytest.raises(ValueError):
        types.LiteLLM_UserTable(user_id="u", model_max_budget=value)
    assert list(parse_model_max_budget(value)) == [""]
