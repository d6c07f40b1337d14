"""reconcile.py, scalar_budgets.py and rollup_checks.py decide every finding's kind and severity: pure functions over plain data, so each rule is checked
here on a handful of values worked out by hand, without a database."""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from auditor.audit import reconcile, rollup_checks, scalar_budgets
from auditor.audit.entities import EntityBudgets
from auditor.audit.windows import Window
from auditor.ledger.budget_holders import Holder
from auditor.ledger.daily_rollups import DayTotals
from auditor.litellm.budgets import BudgetEntry
from auditor.litellm.catalogue import build_catalogue
from auditor.litellm.durations import parse_duration

T0 = datetime(2026, 3, 2)
CATALOGUE = build_catalogue({"model_list": [{"model_name": "gpt-4o", "litellm_params": {"model": "azure/prod-gpt4o"}}]}, [], {})
OPTIONS = SimpleNamespace(tolerance=0.0001, now=T0 + timedelta(hours=12), settle=timedelta(0), window_slack=timedelta(seconds=1))


def entry(name: str, limit: float | None, period: str = "1d") -> BudgetEntry:
    return BudgetEntry(name, limit, parse_duration(period))


def budgets_of(*entries: BudgetEntry, scope: str = "key", entity: str = "k1", alias: str | None = "alpha") -> dict:
    eb = EntityBudgets(scope, entity, alias, False, "key", entity, {e.name: e for e in entries})
    return {(scope, entity): eb}


def window(start_hour: float, spend: float, requests: int, after: int = 0, after_spend: float = 0.0) -> Window:
    start = T0 + timedelta(hours=start_hour)
    return Window(start, start + timedelta(days=1), spend, requests, after, after_spend)


def test_a_window_over_its_limit_is_an_error_only_when_requests_were_admitted_after_it():
    budgets = budgets_of(entry("gpt-4o", 1.0))
    windows = {("key", "k1", "gpt-4o"): [window(0, 1.2, 2), window(30, 3.0, 5, after=3, after_spend=1.8), window(60, 0.9, 1)]}
    found = reconcile.budget_findings(budgets, windows, {("key", "k1", "gpt-4o"): {"gpt-4o"}}, CATALOGUE, {"gpt-4o"}, OPTIONS)
    assert [(f.kind, f.severity, f.logged_spend, f.requests_after_limit, f.spend_after_limit) for f in found] == [
        ("over_budget", "warning", 1.2, 0, 0.0),
        ("over_budget", "error", 3.0, 3, 1.8),
    ]


@pytest.mark.parametrize(("limit", "shown"), [(None, "null"), (-1.0, "-1.0")])
def test_an_entry_that_caps_nothing_is_invalid_and_its_windows_are_not_judged(limit, shown):
    budgets = budgets_of(entry("gpt-4o", limit))
    windows = {("key", "k1", "gpt-4o"): [window(0, 9.0, 9)]}
    [found] = reconcile.budget_findings(budgets, windows, {}, CATALOGUE, {"gpt-4o"}, OPTIONS)
    assert (found.kind, found.severity) == ("invalid_budget", "error")
    assert f"its budget_limit is {shown} (" in found.message


def test_rollups_differ_beyond_the_tolerance_or_in_their_request_count():
    same = DayTotals(1.0, 2, 2, 0)
    assert not rollup_checks.rollup_differs(same, DayTotals(1.00005, 2, 2, 0), 0.0001)
    assert rollup_checks.rollup_differs(same, DayTotals(1.0002, 2, 2, 0), 0.0001)
    assert rollup_checks.rollup_differs(same, DayTotals(1.0, 3, 2, 1), 0.0001)
    assert rollup_checks.rollup_differs(same, None, 0.0001) and not rollup_checks.rollup_differs(None, None, 0.0001)
    assert rollup_checks.rollup_differs(DayTotals(float("nan"), 1, 1, 0), DayTotals(float("nan"), 1, 1, 0), 0.0001)


def test_an_alias_bypass_is_an_error_when_the_entry_it_bypassed_is_enforced():
    budgets = {**budgets_of(entry("gpt-4o", 1.0)), **budgets_of(entry("gpt-4o", None), entity="k2", alias=None)}
    found = reconcile.alias_bypass_findings(
        budgets, {("key", "k1", "gpt-4o", "gpt4", "gpt-4o"): [1.4, 2], ("key", "k2", "gpt-4o", "gpt4", "gpt-4o"): [0.5, 1]}
    )
    assert [(f.entity_id, f.severity, f.model, f.model_group, f.logged_spend, f.requests) for f in found] == [
        ("k1", "error", "gpt4", "gpt-4o", 1.4, 2),
        ("k2", "warning", "gpt4", "gpt-4o", 0.5, 1),
    ]


def test_a_window_of_an_entry_over_several_groups_is_split_by_group_and_the_parts_add_up():
    budgets = budgets_of(entry("claude-*", 5.0))
    w = window(0, 3.0, 4)
    spend = reconcile.window_spend(
        budgets,
        {("key", "k1", "claude-*"): [w]},
        {("key", "k1", "claude-*"): {"opus", "sonnet"}},
        {("key", "k1", "claude-*", w.start): {"sonnet": [1.0, 1], "opus": [2.0, 3]}},
    )
    assert [(s.model_group, s.budget_model, s.logged_spend, s.requests) for s in spend] == [
        ("opus", "claude-*", 2.0, 3),
        ("sonnet", "claude-*", 1.0, 1),
    ]
    [whole] = reconcile.window_spend(budgets, {("key", "k1", "claude-*"): [w]}, {("key", "k1", "claude-*"): {"opus", "sonnet"}})
    assert (whole.model_group, whole.logged_spend) == (None, 3.0)


def test_scalar_findings_compare_the_column_and_the_redis_counter_with_the_period_and_count_the_leaks():
    start = T0
    holder = Holder(
        "key",
        "k1",
        "alpha",
        {},
        "key",
        spend=0.5,
        max_budget=1.0,
        budget_duration="1d",
        budget_reset_at=T0 + timedelta(days=1),
        spend_column="LiteLLM_VerificationToken.spend",
    )
    found = scalar_budgets.scalar_findings(
        [holder],
        {("key", "k1"): (1.5, 3)},
        {},
        {("key", "k1"): start},
        OPTIONS,
        leaks={("key", "k1"): (1, 0.5)},
        redis_spend={("key", "k1"): ("spend:key:k1", "1.5")},
    )
    assert [(f.kind, f.severity, f.counter_source, f.cached_spend, f.requests_after_limit) for f in found] == [
        ("counter_drift", "error", "spend", 0.5, None),  # the column undercounts an entity with a max_budget
        ("over_budget", "error", None, None, 1),
    ]  # the Redis counter agrees with the ledger: no finding
    stale = scalar_budgets.scalar_findings(
        [holder],
        {("key", "k1"): (1.5, 3)},
        {},
        {("key", "k1"): start},
        OPTIONS,
        redis_spend={("key", "k1"): ("spend:key:k1", "nope")},
    )
    assert [(f.counter_source, f.severity, f.cached_spend) for f in stale if f.counter_source == "redis_spend"] == [
        ("redis_spend", "warning", None)
    ]
