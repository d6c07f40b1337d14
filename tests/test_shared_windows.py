"""The pre-1.99 limiter replay (auditor/audit/shared_windows.py) against what LiteLLM 1.83.7 and 1.90.7 themselves did.

tests/eras/*.json were recorded by those releases' own router, spend-log writer and limiter (tests/eras/record.py).
Replaying every request of a fixture in time order, with the counter names its era writes and reads, must block
exactly the requests that release blocked and end with exactly the counters and start keys its cache held.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from auditor.audit.shared_windows import EntityReplay, SharedStartReplay, seconds_of
from auditor.litellm.budgets import BudgetEntry, parse_model_max_budget
from auditor.litellm.durations import parse_duration
from auditor.litellm.eras import DEPLOYMENT, era_of, parse_version

FIXTURES = Path(__file__).parent / "eras"


def load(version: str) -> dict:
    return json.loads((FIXTURES / f"litellm-{version}.json").read_text())


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def entry_for(entries: dict, name: str):
    """Before 1.99 a model finds its entry by its exact name, else its last `/` segment."""
    found = entries.get(name) or entries.get(name.rsplit("/", 1)[-1])
    return found if isinstance(found, BudgetEntry) else None


def play(data: dict):
    """Every request of the fixture through one replay per key and per end user, as the proxy ran them."""
    era = era_of(parse_version(data["litellm_version"]))
    budgets = {("key", k["token"]): parse_model_max_budget(k["model_max_budget"]) for k in data["keys"]}
    budgets.update({("end_user", u["user_id"]): parse_model_max_budget(u["model_max_budget"]) for u in data["end_users"]})
    replays = {entity: SharedStartReplay(lookback=None) for entity in budgets}
    attempts = [("ok", r, r["model_group"] or r["model"], r["end_user"] or None) for r in data["spend_logs"]]
    attempts += [("blocked", b, b["model"], b["end_user"]) for b in data["blocked"]]
    events = sorted(
        [(when(row["startTime"]), 0, i) for i, (_, row, _, _) in enumerate(attempts)]
        + [(when(row["endTime"]), 1, i) for i, (kind, row, _, _) in enumerate(attempts) if kind == "ok"]
    )
    blocked = {}
    for moment, kind, index in events:
        _, row, requested, end_user = attempts[index]
        entities = [("key", row["api_key"])] + ([("end_user", end_user)] if end_user else [])
        if kind == 0:
            for entity in entities:
                entry = entry_for(budgets[entity], requested)
                if entry is None or not era.enforced(entry.limit):
                    continue
                spend = replays[entity].read_first(era.read_names(requested, entry.name), entry.duration.raw, moment)
                if era.blocks(spend, entry.limit):
                    blocked[row["request_id"]] = entity[0]
                    break
            continue
        written = row["model"] if era.written == DEPLOYMENT else requested
        for entity in entities:
            entry = entry_for(budgets[entity], written)  # the write path resolves the entry from its own name
            if entry is not None:
                replays[entity].charge(moment, written, entry.duration, row["spend"])
    return era, replays, blocked


@pytest.mark.parametrize("version", ["1.83.7", "1.90.7"])
def test_the_replay_blocks_exactly_what_litellm_blocked(version):
    data = load(version)
    _, _, blocked = play(data)
    assert blocked == {b["request_id"]: b["scope"] for b in data["blocked"]}
    assert len(blocked) > 10  # the fixture exercises the check


@pytest.mark.parametrize("version", ["1.83.7", "1.90.7"])
def test_the_replay_ends_with_the_counters_and_start_keys_litellm_held(version):
    data = load(version)
    _, replays, _ = play(data)
    now = when(data["now"])
    held = {
        name: (cell["value"], when(cell["expires_at"]))
        for name, cell in data["memory"].items()
        if when(cell["expires_at"]) >= now
    }
    ours = {}
    for (scope, entity), replay in replays.items():
        spend_prefix, start_prefix = (
            ("virtual_key_spend", "virtual_key_budget_start_time")
            if scope == "key"
            else ("end_user_model_spend", "end_user_budget_start_time")
        )
        if (start := replay.start_key(now)) is not None:
            ours[f"{start_prefix}:{entity}"] = start
        for name, duration in replay.counters:
            if (cached := replay.cached(name, duration, now)) is not None:
                ours[f"{spend_prefix}:{entity}:{name}:{duration}"] = cached
    assert sorted(ours) == sorted(held)
    for name, (value, expires) in held.items():
        assert ours[name][0] == pytest.approx(value, abs=1e-9), name
        assert abs((ours[name][1] - expires).total_seconds()) < 0.002, name


class Row:
    """A fixture row as the scan streams it."""

    def __init__(self, row: dict) -> None:
        self.start_time, self.end_time = when(row["startTime"]), when(row["endTime"])
        self.spend, self.model, self.model_group = row["spend"], row["model"], row["model_group"] or ""


def audited(version: str) -> dict[tuple[str, str], dict]:
    """Every key's and end user's windows as the scan rebuilds them for that era (EntityReplay)."""
    data = load(version)
    era = era_of(parse_version(data["litellm_version"]))
    found = {}
    holders = [("key", k["token"], k["model_max_budget"], "api_key") for k in data["keys"]]
    holders += [("end_user", u["user_id"], u["model_max_budget"], "end_user") for u in data["end_users"]]
    for scope, entity, budget, column in holders:
        replay = EntityReplay(era, parse_model_max_budget(budget))
        rows = sorted((r for r in data["spend_logs"] if r[column] == entity), key=lambda r: r["endTime"])
        for row in rows:
            replay.add(Row(row))
        found[(scope, entity)] = replay.windows()
    return found


def test_a_clean_1_90_7_deployment_leaked_nothing():
    """1.90.7 enforced what it counted: rebuilt its way, no window admitted a request after its limit, though the
    requests in flight when a limit was crossed overshot it."""
    found = audited("1.90.7")
    rows = load("1.90.7")["spend_logs"]
    windows = [w for entries in found.values() for ws in entries.values() for w in ws]
    assert sum(w.requests for w in windows) == len(rows) + sum(r["end_user"] == "cust-1" for r in rows)  # 81 + 13
    assert sum(w.requests_after_limit for w in windows) == 0
    assert any(w.spend > 0.05 for w in found[("key", KEY["research"])]["gpt-4o"])  # the crossing request overshot


def test_the_1_83_7_leak_is_found_where_it_happened():
    """1.83.7 charged openai/gpt-4o and checked gpt-4o: every routed key ran past its caps unblocked. Its wildcard
    route, logged as requested, was enforced: no leak there."""
    found = audited("1.83.7")
    leaked = {
        (scope, entity[:6], entry): sum(w.requests_after_limit for w in ws)
        for (scope, entity), entries in found.items()
        for entry, ws in entries.items()
    }
    assert leaked[("key", KEY["research"][:6], "gpt-4o")] > 10 and leaked[("key", KEY["mixed"][:6], "gpt-4o-mini")] > 0
    assert leaked[("end_user", "cust-1", "gpt-4o-mini")] > 10
    assert leaked[("key", KEY["wild"][:6], "anthropic/claude-3-haiku-20240307")] == 0
    assert leaked[("key", KEY["zero"][:6], "gpt-4o")] == 0  # a 0 cap is unlimited before 1.99
    # each leak independently: the window open at the request's start already held more than the cap from requests
    # that had ended by then (counted from the rows and the windows' bounds alone)
    data = load("1.83.7")
    rows = [Row(r) for r in data["spend_logs"] if r["api_key"] == KEY["research"] and r["model_group"] == "gpt-4o"]
    windows = found[("key", KEY["research"])]["gpt-4o"]
    expected = 0
    for row in rows:
        window = next((w for w in windows if w.start <= row.start_time < w.end), None)
        if window is not None:
            held = sum(r.spend for r in rows if window.start <= r.end_time <= row.start_time)
            expected += held > 0.05
    assert leaked[("key", KEY["research"][:6], "gpt-4o")] == expected


KEY = {k["key_alias"]: k["token"] for k in load("1.83.7")["keys"]}


def test_a_short_entry_restarts_the_window_a_long_one_is_measured_in():
    """The issue-#33326 behaviour: one start key per key. A charge on the hour entry after more than an hour opens a
    new window, and resets the start key the day entry's counter is measured against."""
    hour, day = parse_duration("1h"), parse_duration("1d")
    t0 = datetime(2026, 3, 2, 8)
    replay = SharedStartReplay()
    replay.charge(t0, "gpt-4o", day, 1.0)  # start key created with the day's TTL
    replay.charge(t0 + timedelta(minutes=90), "gpt-4o-mini", hour, 0.5)  # 90 min > 1 h: a new window, start := now
    assert replay.start_key(t0 + timedelta(minutes=91))[0] == (t0 + timedelta(minutes=90) - datetime(1970, 1, 1)).total_seconds()
    # the reset kept the start key's first TTL (a day, not the hour entry's): alive at 3 h, gone after a day
    assert replay.start_key(t0 + timedelta(hours=2, minutes=59)) is not None
    assert replay.start_key(t0 + timedelta(days=1, seconds=1)) is None
    replay.charge(t0 + timedelta(hours=3), "gpt-4o", day, 2.0)  # within a day of the new start: the same counter grows
    assert replay.cached("gpt-4o", "1d", t0 + timedelta(hours=3)) == (3.0, t0 + timedelta(days=1))
    assert seconds_of(parse_duration("1mo"), datetime(2026, 2, 1)) == 28 * 86400


def test_a_counter_created_inside_an_open_window_belongs_to_it():
    """The hour entry's first charge, 30 min after the day entry's opened the key's window: its counter gets the
    window's remaining 30 min as TTL, so it lives in [t0, t0 + 1 h), the window the start key says."""
    t0 = datetime(2026, 3, 2, 8)
    replay = SharedStartReplay()
    replay.charge(t0, "gpt-4o", parse_duration("1d"), 1.0)
    replay.charge(t0 + timedelta(minutes=30), "gpt-4o-mini", parse_duration("1h"), 0.25)
    (window,) = replay.windows("gpt-4o-mini", "1h")
    assert (window.start, window.end, window.spend, window.requests) == (t0, t0 + timedelta(hours=1), 0.25, 1)
    assert replay.cached("gpt-4o-mini", "1h", t0 + timedelta(hours=1, seconds=1)) is None
