"""`model_max_budget` parsing: which entries LiteLLM 1.99+ enforces, and why it ignores the rest."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditor.litellm.budgets import BudgetEntry, BudgetProblem, parse_model_max_budget
from auditor.litellm.durations import Duration

NOW = datetime(2026, 3, 15, 12, 0, 0)


def one(entry: object) -> BudgetEntry | BudgetProblem:
    parsed = parse_model_max_budget({"gpt-4o": entry}, now=NOW)
    assert list(parsed) == ["gpt-4o"]
    return parsed["gpt-4o"]


def usable(entry: object) -> BudgetEntry:
    parsed = one(entry)
    assert isinstance(parsed, BudgetEntry), parsed
    return parsed


def problem(entry: object) -> str:
    parsed = one(entry)
    assert isinstance(parsed, BudgetProblem), parsed
    assert parsed.name == "gpt-4o"
    assert parsed.raw == entry or parsed.raw is entry
    assert "\n" not in parsed.reason
    return parsed.reason


@pytest.mark.parametrize("raw", [None, {}])
def test_nothing_configured(raw: object) -> None:
    assert parse_model_max_budget(raw) == {}


@pytest.mark.parametrize(
    ("entry", "limit", "duration"),
    [
        ({"budget_limit": 0.5, "time_period": "1d"}, 0.5, "1d"),
        ({"max_budget": 0.5, "budget_duration": "1d"}, 0.5, "1d"),
        ({"budget_limit": "1.00", "time_period": "30d"}, 1.0, "30d"),
        ({"max_budget": " 2.5 ", "budget_duration": "1mo"}, 2.5, "1mo"),
        ({"max_budget": "1_000", "budget_duration": "1d"}, 1000.0, "1d"),
        ({"max_budget": "1e3", "budget_duration": "1d"}, 1000.0, "1d"),
        ({"max_budget": 3, "budget_duration": "1d"}, 3.0, "1d"),
        ({"max_budget": True, "budget_duration": "1d"}, 1.0, "1d"),
        ({"max_budget": "Infinity", "budget_duration": "1d"}, math.inf, "1d"),
        ({"max_budget": 5, "budget_duration": "daily"}, 5.0, "daily"),
        ({"max_budget": 5, "budget_duration": "7days"}, 5.0, "7days"),
        # the alias wins when both spellings are given
        ({"budget_limit": 2, "max_budget": 1, "time_period": "2d", "budget_duration": "1d"}, 2.0, "2d"),
        # unknown keys are ignored, valid tpm/rpm limits are fine
        ({"max_budget": 1, "budget_duration": "1d", "note": "x", "tpm_limit": "10", "rpm_limit": 5.0}, 1.0, "1d"),
        ({"max_budget": 1, "budget_duration": "1d", "tpm_limit": None, "rpm_limit": True}, 1.0, "1d"),
    ],
)
def test_usable_entries(entry: dict[str, object], limit: float, duration: str) -> None:
    parsed = usable(entry)
    assert parsed.name == "gpt-4o"
    assert parsed.limit == limit
    assert parsed.duration.raw == duration
    assert parsed.enforced


@pytest.mark.parametrize(
    ("entry", "enforced"),
    [
        ({"max_budget": None, "budget_duration": "1d"}, False),
        ({"budget_duration": "1d"}, False),
        ({"max_budget": -1, "budget_duration": "1d"}, False),
        ({"max_budget": "NaN", "budget_duration": "1d"}, False),
        ({"max_budget": 0, "budget_duration": "1d"}, True),
        ({"max_budget": "-0", "budget_duration": "1d"}, True),
        # the alias wins even when it is null
        ({"budget_limit": None, "max_budget": 5, "budget_duration": "1d"}, False),
    ],
)
def test_caps_that_enforce_nothing_are_still_valid_entries(entry: dict[str, object], enforced: bool) -> None:
    assert usable(entry).enforced is enforced


def test_null_cap_keeps_none() -> None:
    assert usable({"max_budget": None, "budget_duration": "1d"}).limit is None


def test_legacy_float_entry() -> None:
    reason = problem(0.5)
    assert reason == 'legacy float entry 0.5: LiteLLM 1.99+ ignores it; write {"budget_limit": 0.5, "time_period": "..."}'
    assert "legacy float entry 3:" in problem(3)


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("1.0", "not an object"),
        (True, "not an object"),
        (None, "not an object"),
        ([{"max_budget": 1, "budget_duration": "1d"}], "not an object"),
        ({"max_budget": 1}, "no time_period"),
        ({"budget_limit": 1, "time_period": None, "budget_duration": "1d"}, "time_period is null"),
        ({"max_budget": 1, "budget_duration": "1y"}, "unsupported duration '1y'"),
        ({"budget_limit": 1, "time_period": "30"}, "time_period: unsupported duration '30'"),
        ({"max_budget": 1, "budget_duration": " 1d"}, "unsupported duration"),
        ({"max_budget": 1, "budget_duration": "99999mo"}, "past year 9999"),
        ({"max_budget": 1, "budget_duration": 1}, "budget_duration 1 is not a string"),
        ({"max_budget": "1,000", "budget_duration": "1d"}, 'max_budget "1,000" is not a number'),
        ({"budget_limit": "$5", "time_period": "1d"}, 'budget_limit "$5" is not a number'),
        ({"max_budget": "", "budget_duration": "1d"}, "is not a number"),
        ({"max_budget": [1], "budget_duration": "1d"}, "is not a number"),
        ({"max_budget": 10**400, "budget_duration": "1d"}, "is not a number"),
        ({"max_budget": 1, "budget_duration": "1d", "tpm_limit": 1.5}, "tpm_limit 1.5 is not an integer"),
        ({"max_budget": 1, "budget_duration": "1d", "rpm_limit": "ten"}, 'rpm_limit "ten" is not an integer'),
        ({"max_budget": 1, "budget_duration": "1d", "rpm_limit": math.inf}, "rpm_limit Infinity is not an integer"),
        ({"max_budget": 1, "budget_duration": "1d", "tpm_limit": 1e20}, "not an integer"),
        ({"max_budget": 1, "budget_duration": "1d", "self": 1}, "'self'"),
    ],
)
def test_problems(entry: object, words: str) -> None:
    assert words in problem(entry)


def test_duration_problem_carries_the_duration_error() -> None:
    reason = problem({"max_budget": 1, "budget_duration": "1y"})
    assert reason == (
        "budget_duration: unsupported duration '1y': use <number><s|m|h|d|w|mo> such as 1d, 30d, 1mo, "
        "or hourly/daily/weekly/monthly; LiteLLM ignores the entry"
    )


def test_mixed_value_keeps_every_entry_in_order() -> None:
    parsed = parse_model_max_budget(
        {
            "gpt-4": 0.5,
            "claude-opus-4*": {"budget_limit": "1.00", "time_period": "daily"},
            "gpt-4o": {"max_budget": 2, "budget_duration": "1d"},
        },
        now=NOW,
    )
    assert list(parsed) == ["gpt-4", "claude-opus-4*", "gpt-4o"]
    assert isinstance(parsed["gpt-4"], BudgetProblem)
    assert parsed["claude-opus-4*"] == BudgetEntry("claude-opus-4*", 1.0, Duration("daily", 24, "h"))
    assert parsed["gpt-4o"] == BudgetEntry("gpt-4o", 2.0, Duration("1d", 1, "d"))


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"gpt-4": {"budget_limit": 1, "time_period": "1d"}}', "JSON string holding an object"),
        ('["gpt-4"]', "JSON string holding a list"),
        ('"nested"', "JSON string holding a string"),
        ("12", "JSON string holding a number"),
        ("not json", "string that is not JSON"),
        ([{"gpt-4": 1}], "the value is a list"),
        (5, "the value is a number"),
        (True, "the value is a boolean"),
    ],
)
def test_whole_value_that_is_not_an_object(raw: object, words: str) -> None:
    parsed = parse_model_max_budget(raw)
    assert list(parsed) == [""]
    found = parsed[""]
    assert isinstance(found, BudgetProblem)
    assert found.name == "" and found.raw == raw
    assert words in found.reason and "ignores the whole value" in found.reason
    assert "\n" not in found.reason


def test_non_string_entry_names_are_problems() -> None:
    parsed = parse_model_max_budget({1: {"max_budget": 1, "budget_duration": "1d"}})
    assert isinstance(parsed["1"], BudgetProblem)


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["1d", "daily", "1mo", "99999mo", "1y", "1.00", "NaN", "-Infinity", "1_0", " 7 "]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)

entry_like = st.dictionaries(
    st.sampled_from(["max_budget", "budget_limit", "budget_duration", "time_period", "tpm_limit", "rpm_limit", "x"]),
    json_like,
    max_size=5,
)


@given(st.one_of(json_like, st.dictionaries(st.text(max_size=8), st.one_of(json_like, entry_like), max_size=4)))
def test_never_raises(raw: object) -> None:
    parsed = parse_model_max_budget(raw, now=NOW)
    for name, item in parsed.items():
        assert isinstance(item, (BudgetEntry, BudgetProblem))
        assert item.name == name
        if isinstance(item, BudgetProblem):
            assert item.reason and "\n" not in item.reason and "\r" not in item.reason
