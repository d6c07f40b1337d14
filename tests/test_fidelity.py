"""What LiteLLM 1.110.2 does that a scan must follow, one case each: which rows the daily writer rolls up, which
end users and team members carry budgets, scalar budgets that let spend through, counter keys with `:` in an id,
router aliases. Each case names the LiteLLM function it follows; expected values are worked out by hand.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from test_scan_focused import CONFIG, T0, A, B, at, build, charge, key, kinds, scan


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG)
    return str(path)


def config_with(tmp_path, extra: str) -> str:
    path = tmp_path / "config-extra.yaml"
    path.write_text(CONFIG + extra)
    return str(path)


def insert(url: str, table, rows: list[dict]) -> None:
    from auditor.ledger.schema import rollup_metadata

    engine = create_engine(url)
    with engine.begin() as conn:
        rollup_metadata.create_all(conn)
        conn.execute(table.insert(), rows)
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# Daily rollups (db_spend_update_writer._common_add_spend_log_transaction_to_daily_transaction,
# daily_spend_bulk_upsert.daily_spend_entity_ids)


def rollup_row(table_key: str, entity, day: str, api_key: str, spend: float, requests: int, model="azure/prod-gpt4o") -> dict:
    return {
        "id": f"r-{table_key}-{entity}-{api_key[:4]}-{model}",
        table_key: entity,
        "date": day,
        "api_key": api_key,
        "model": model,
        "model_group": "gpt-4o",
        "custom_llm_provider": "azure",
        "spend": spend,
        "api_requests": requests,
        "successful_requests": requests,
        "failed_requests": 0,
        "updated_at": T0,
    }


def test_userless_teamless_and_keyless_rows_are_rolled_up_as_litellm_does(any_url, config):
    from auditor.ledger.schema import daily_end_user_spend, daily_team_spend, daily_user_spend

    # get_logging_payload stores user '' and team_id '' when there is none; the daily writer rolls up user ''
    # and NULL, team '' (not NULL), and keyless rows; an end user '' or NULL is skipped.
    rows = [charge(at(9), 0.20), charge(at(10), 0.30, key=""), charge(at(11), 0.05)]
    rows[0].update(user="", team_id="", end_user="", custom_llm_provider="azure")
    rows[1].update(user=None, team_id="", end_user="cust-1", custom_llm_provider="azure")
    rows[2].update(user="u-1", team_id=None, end_user=None, custom_llm_provider="azure")
    url = build(any_url, [key(limit=5.0)], rows)
    day = "2026-03-02"
    insert(
        url,
        daily_user_spend,
        [
            rollup_row("user_id", "", day, A, 0.20, 1),
            rollup_row("user_id", "x", day, "", 0.30, 1),
            rollup_row("user_id", "u-1", day, A, 0.05, 1),
        ],
    )
    insert(url, daily_team_spend, [rollup_row("team_id", "", day, A, 0.20, 1), rollup_row("team_id", "", day, "", 0.30, 1)])
    insert(url, daily_end_user_spend, [rollup_row("end_user_id", "cust-1", day, "", 0.30, 1)])
    record = scan(url, config, at(12, days=2))
    assert kinds(record, "rollup_drift") == []


def test_a_rollup_missing_the_userless_rows_is_drift(sqlite_url, config):
    from auditor.ledger.schema import daily_user_spend

    rows = [charge(at(9), 0.20), charge(at(10), 0.30)]
    rows[0].update(user="", custom_llm_provider="azure")
    rows[1].update(user="u-1", custom_llm_provider="azure")
    url = build(sqlite_url, [key(limit=5.0)], rows)
    insert(url, daily_user_spend, [rollup_row("user_id", "u-1", "2026-03-02", A, 0.30, 1)])
    [drift] = kinds(scan(url, config, at(12, days=2)), "rollup_drift")
    # both rows share the cell (day, key, deployment, provider): the ledger has 0.50 in 2, the rollup 0.30 in 1
    assert (drift["logged_spend"], drift["cached_spend"], drift["requests"], drift["cached_requests"]) == (
        pytest.approx(0.50),
        0.30,
        2,
        1,
    )


# ---------------------------------------------------------------------------------------------
# Budgets LiteLLM attaches without a row saying so


def budget(budget_id: str, entries: dict, max_budget: float | None = None) -> dict:
    return {
        "budget_id": budget_id,
        "model_max_budget": entries,
        "max_budget": max_budget,
        "created_by": "admin",
        "updated_by": "admin",
    }


def test_the_default_end_user_budget_governs_end_users_without_one(any_url, tmp_path):
    from auditor.ledger.schema import budget_table, end_user_table

    # litellm_settings.max_end_user_budget_id: auth_checks._apply_default_budget_to_end_user gives it to an end user
    # whose budget_id is unset. cust-1 spends 3 x 0.60 in one 1d window against a 1.00 cap: the third request was
    # admitted after the window reached the limit (1.20 > 1.00), so 0.60 leaked.
    # cust-2 has a budget of its own (5.00) and stays under it.
    rows = [charge(at(9), 0.60), charge(at(10), 0.60), charge(at(10, 30), 0.60), charge(at(11), 0.60)]
    rows[0]["end_user"] = rows[1]["end_user"] = rows[2]["end_user"] = "cust-1"
    rows[3]["end_user"] = "cust-2"
    url = build(any_url, [key(budget={})], rows)
    insert(
        url,
        budget_table,
        [
            budget("eu-default", {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}}),
            budget("eu-own", {"gpt-4o": {"budget_limit": 5.0, "time_period": "1d"}}),
        ],
    )
    insert(
        url,
        end_user_table,
        [
            {"user_id": "cust-1", "budget_id": None, "spend": 1.8, "blocked": False},
            {"user_id": "cust-2", "budget_id": "eu-own", "spend": 0.6, "blocked": False},
        ],
    )
    cfg = config_with(tmp_path, "litellm_settings:\n  max_end_user_budget_id: eu-default\n")
    record = scan(url, cfg, at(12))
    [over] = kinds(record, "over_budget")
    assert (over["scope"], over["entity_id"], over["budget_model"], over["logged_spend"]) == (
        "end_user",
        "cust-1",
        "gpt-4o",
        pytest.approx(1.8),
    )
    assert (over["severity"], over["requests_after_limit"], over["spend_after_limit"]) == ("error", 1, pytest.approx(0.6))
    assert sorted((s["entity_id"], s["logged_spend"]) for s in record["spend"] if s["scope"] == "end_user") == [
        ("cust-1", pytest.approx(1.8)),
        ("cust-2", pytest.approx(0.6)),
    ]
    # without the setting cust-1 has no budget at all
    plain = scan(url, config_with(tmp_path, ""), at(12))
    assert kinds(plain, "over_budget") == []


def test_a_team_member_without_a_membership_row_gets_the_teams_default_member_budget(any_url, config):
    from auditor.ledger.schema import budget_table, team_table

    # user_api_key_auth._load_team_member_default_model_budget: no LiteLLM_TeamMembership row for (u-1, t-1), so the
    # team's metadata.team_member_budget_id applies. u-1 spends 0.70 + 0.70 through its key in t-1: over 1.00.
    rows = [charge(at(9), 0.70), charge(at(10), 0.70)]
    for row in rows:
        row.update(user="u-1", team_id="t-1")
    k = {**key(budget={}), "user_id": "u-1", "team_id": "t-1"}
    url = build(any_url, [k], rows)
    insert(url, budget_table, [budget("member-default", {"gpt-4o": {"budget_limit": 1.0, "time_period": "1d"}})])
    insert(
        url,
        team_table,
        [
            {
                "team_id": "t-1",
                "team_alias": "platform",
                "metadata": {"team_member_budget_id": "member-default"},
                "model_max_budget": {},
                "spend": 1.4,
            }
        ],
    )
    record = scan(url, config, at(12))
    [over] = kinds(record, "over_budget")
    assert (over["scope"], over["entity_id"], over["logged_spend"]) == ("team_member", "3:u-1:t-1", pytest.approx(1.4))


# ---------------------------------------------------------------------------------------------
# Counter keys are built from the entries, as LiteLLM builds them (model_budget_spend_cache_key)


@pytest.mark.redis
def test_counter_keys_whose_ids_and_models_hold_colons_are_found_whole(sqlite_url, tmp_path, redis_client):
    from auditor.ledger.schema import budget_table, end_user_table
    from test_scan_focused import REDIS_URL, epoch

    # End user "tenant:42" (entry gpt-4o/1d) and key A with an entry named after a Bedrock ARN: both counters hold
    # exactly the ledger (0.50 each, windows opened at 09:00). Split at the first ':' they would read as another
    # entity's (or no) counter, and the real one as missing.
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-opus-4-6-v1:0"
    rows = [
        charge(at(9), 0.20),
        charge(at(10), 0.30),
        charge(at(9), 0.25, key=B, model=arn, model_group=arn, model_id="dep-arn"),
        charge(at(10), 0.25, key=B, model=arn, model_group=arn, model_id="dep-arn"),
    ]
    for row, end_user in zip(rows, ("tenant:42", "tenant:42", "", "")):
        row["end_user"] = end_user
    url = build(sqlite_url, [key(budget={}), key(B, "beta", model=arn, limit=5.0)], rows)
    insert(url, budget_table, [budget("eu", {"gpt-4o": {"budget_limit": 5.0, "time_period": "1d"}})])
    insert(url, end_user_table, [{"user_id": "tenant:42", "budget_id": "eu", "spend": 0.5, "blocked": False}])
    cfg = config_with(
        tmp_path,
        f"""  - model_name: {arn}
    litellm_params:
      model: bedrock/{arn}
    model_info:
      id: dep-arn
""",
    )
    for prefix, start_prefix, entity, entry in (
        ("end_user_model_spend", "end_user_budget_start_time", "tenant:42", "gpt-4o"),
        ("virtual_key_spend", "virtual_key_budget_start_time", B, arn),
    ):
        redis_client.set(f"{prefix}:{entity}:{entry}:1d", "0.5")
        redis_client.set(f"{start_prefix}:{entity}:{entry}:1d", repr(epoch(at(9))))
    record = scan(url, cfg, at(12), "--redis", REDIS_URL)
    assert kinds(record, "counter_drift", "miskeyed_counter") == []
    # the same counters one cent off are drift, named by the right entity and entry
    redis_client.set("end_user_model_spend:tenant:42:gpt-4o:1d", "0.51")
    redis_client.set(f"virtual_key_spend:{B}:{arn}:1d", "0.49")
    found = sorted(
        (f["scope"], f["entity_id"], f["budget_model"], f["cached_spend"])
        for f in kinds(scan(url, cfg, at(12), "--redis", REDIS_URL), "counter_drift")
    )
    assert found == [("end_user", "tenant:42", "gpt-4o", 0.51), ("key", B, arn, 0.49)]


# ---------------------------------------------------------------------------------------------
# Router aliases (user_api_key_auth._resolve_router_settings_model_group_alias rewrites only key/team aliases before
# auth; a proxy-level alias reaches the limiter, and the rows, as the alias: model_max_budget_limiter._requested_model_name)


def test_traffic_through_a_proxy_alias_is_charged_to_the_alias_name_and_bypasses_the_targets_entry(any_url, tmp_path):
    # gpt4 -> gpt-4o. Key A caps gpt-4o at 1.00/1d and sends 2 x 0.70 as `gpt4` and 0.30 as `gpt-4o`: its gpt-4o window
    # holds 0.30 only (no over_budget), and 1.40 in 2 requests bypassed the entry, which is enforced: an error whose
    # money is leaked money. Key B caps the alias itself: its gpt4 window holds 1.40 (over by 0.40, crossing request
    # only). Key C caps the glob gpt*, which covers both names: 1.70 in one window, and no bypass.
    C = "c" * 64
    rows = []
    for token in (A, B, C):
        rows += [
            charge(at(9), 0.70, key=token, model_group="gpt4"),
            charge(at(10), 0.70, key=token, model_group="gpt4"),
            charge(at(11), 0.30, key=token),
        ]
    url = build(any_url, [key(A, "alpha"), key(B, "beta", model="gpt4"), key(C, "gamma", model="gpt*", limit=5.0)], rows)
    cfg = config_with(tmp_path, "router_settings:\n  model_group_alias:\n    gpt4: gpt-4o\n")
    record = scan(url, cfg, at(12))
    [bypass] = kinds(record, "alias_bypass")
    assert {k: bypass[k] for k in ("scope", "entity_id", "budget_model", "model", "model_group", "requests", "severity")} == {
        "scope": "key",
        "entity_id": A,
        "budget_model": "gpt-4o",
        "model": "gpt4",
        "model_group": "gpt-4o",
        "requests": 2,
        "severity": "error",
    }
    assert bypass["logged_spend"] == pytest.approx(1.40)
    assert sorted(
        (s["entity_id"], s["budget_model"], round(s["logged_spend"], 6)) for s in record["spend"] if s["budget_model"]
    ) == [(A, "gpt-4o", 0.30), (B, "gpt4", 1.40), (C, "gpt*", 1.70)]
    # what no entry governs is a spend line of its own: A's alias traffic, and B's direct gpt-4o request
    assert sorted(
        (s["entity_id"], s["model_group"], round(s["logged_spend"], 6)) for s in record["spend"] if not s["budget_model"]
    ) == [(A, "gpt-4o", 1.40), (B, "gpt-4o", 0.30)]
    [over] = kinds(record, "over_budget")
    assert (over["entity_id"], over["budget_model"], over["severity"]) == (B, "gpt4", "warning")
    assert record["totals"]["money_leaked"] == pytest.approx(1.40)
    # --key reads the alias traffic with a query of its own: the same finding
    [alone] = kinds(scan(url, cfg, at(12), "--key", "alpha"), "alias_bypass")
    assert (alone["entity_id"], alone["requests"], round(alone["logged_spend"], 6)) == (A, 2, 1.40)


# ---------------------------------------------------------------------------------------------
# Scalar budgets (auth_checks: key, user and team member block at spend >= max_budget, team and end user at >)


def test_scalar_budgets_count_requests_admitted_after_the_ledger_reached_them(any_url, tmp_path):
    from auditor.ledger.schema import team_table, user_table

    # Key A (team t-1, owner u-1) and lifetime max_budgets of 1.00 on the key, its team and its owner. The ledger
    # reaches 1.00 at 10:00 (0.50 + 0.50); a request started at 11:00 (0.30) was admitted after that.
    # key (>=): 1 request, 0.30 leaked: error.  team (>): 1.00 is not over, so the 11:00 request was allowed: warning.
    # user (>=, but its budget gates only non-team keys unless apply_user_budget_to_team_keys): warning, then error.
    rows = [charge(at(9), 0.50), charge(at(10), 0.50), charge(at(11, 30), 0.30, start=at(11))]
    for row in rows:
        row.update(user="u-1", team_id="t-1")
    k = {**key(budget={}), "user_id": "u-1", "team_id": "t-1", "max_budget": 1.0}
    url = build(any_url, [k], rows)
    insert(
        url, team_table, [{"team_id": "t-1", "team_alias": "platform", "max_budget": 1.0, "spend": 1.3, "model_max_budget": {}}]
    )
    insert(url, user_table, [{"user_id": "u-1", "max_budget": 1.0, "spend": 1.3, "model_max_budget": {}}])

    def scalar_over(cfg):
        record = scan(url, cfg, at(12))
        return {
            f["scope"]: (f["severity"], f["requests_after_limit"], round(f["spend_after_limit"], 6))
            for f in kinds(record, "over_budget")
            if f["budget_model"] is None
        }

    assert scalar_over(config_with(tmp_path, "")) == {
        "key": ("error", 1, 0.30),
        "team": ("warning", 0, 0.0),
        "user": ("warning", 0, 0.0),
    }
    on_team_keys = config_with(tmp_path, "general_settings:\n  apply_user_budget_to_team_keys: true\n")
    assert scalar_over(on_team_keys)["user"] == ("error", 1, 0.30)


def test_scalar_leaks_reach_the_limit_at_the_end_of_the_charge_that_takes_the_total_there():
    from datetime import datetime

    from auditor.audit.scalar_budgets import scalar_leaks

    t = lambda minute: datetime(2026, 3, 2, 9, minute)  # noqa: E731
    # (start, end, spend, via a team key), in end order; the total reaches 1.0 at 09:10 (>=) and passes it at 09:15 (>).
    charges = [
        (t(0), t(5), 0.6, False),
        (t(6), t(10), 0.4, False),
        (t(8), t(15), 0.2, False),  # started before 09:10
        (t(10), t(20), 0.1, False),
        (t(21), t(25), 0.3, True),
    ]
    assert scalar_leaks(charges, 1.0, at_limit=True) == (2, pytest.approx(0.4))
    assert scalar_leaks(charges, 1.0, at_limit=False) == (1, pytest.approx(0.3))  # over at 09:15 (1.2 > 1.0)
    assert scalar_leaks(charges, 1.0, at_limit=True, gated=lambda team_key: not team_key) == (1, pytest.approx(0.1))
    assert scalar_leaks(charges, 5.0, at_limit=True) == (0, 0.0)


def test_a_model_spend_entry_under_a_deployment_name_is_miskeyed_with_what_it_resolves_to(sqlite_url, config):
    # The 2024 writer keyed model_spend on the deployment (kwargs["model"]): `azure/prod-gpt4o` is gpt-4o's deployment.
    # It is reported as miskeyed (info: nothing reads model_spend), and still merged into gpt-4o's total: 1.50 + 0.50
    # against a lifetime ledger of 0.20.
    url = build(sqlite_url, [{**key(budget={}), "model_spend": {"azure/prod-gpt4o": 1.5, "gpt-4o": 0.5}}], [charge(at(9), 0.20)])
    record = scan(url, config, at(12))
    [miskeyed] = kinds(record, "miskeyed_counter")
    assert {k: miskeyed[k] for k in ("severity", "counter_source", "counter_key", "resolves_to", "cached_spend")} == {
        "severity": "info",
        "counter_source": "model_spend",
        "counter_key": "azure/prod-gpt4o",
        "resolves_to": "gpt-4o",
        "cached_spend": 1.5,
    }
    [drift] = [f for f in kinds(record, "counter_drift") if f["counter_source"] == "model_spend"]
    assert (drift["model_group"], drift["cached_spend"], drift["logged_spend"]) == ("gpt-4o", 2.0, pytest.approx(0.2))


@pytest.mark.redis
def test_redis_spend_counters_read_before_the_spend_column_are_audited(sqlite_url, config, redis_client):
    from test_scan_focused import REDIS_URL

    # get_current_spend reads spend:key:{token} before LiteLLM_VerificationToken.spend. A's counter holds the ledger's
    # 0.50; B's lost an increment (0.20 of 0.50): drift, a warning (LiteLLM checks the column when a counter is under).
    rows = [charge(at(9), 0.20), charge(at(10), 0.30), charge(at(9), 0.20, key=B), charge(at(10), 0.30, key=B)]
    url = build(
        sqlite_url, [{**key(A, "alpha", budget={}), "max_budget": 10.0}, {**key(B, "beta", budget={}), "max_budget": 10.0}], rows
    )
    redis_client.set(f"spend:key:{A}", "0.5")
    redis_client.set(f"spend:key:{B}", "0.2")
    redis_client.set(f"spend:key:{B}:window:30d", "99")  # a budget_limits window counter: not the entity's spend
    record = scan(url, config, at(12), "--redis", REDIS_URL)
    [drift] = [f for f in kinds(record, "counter_drift") if f["counter_source"] == "redis_spend"]
    assert (drift["entity_id"], drift["counter_key"], drift["cached_spend"], drift["severity"]) == (
        B,
        f"spend:key:{B}",
        0.2,
        "warning",
    )
    assert drift["logged_spend"] == pytest.approx(0.5)


def test_an_entry_with_a_null_or_negative_limit_enforces_nothing_and_says_so(sqlite_url, config):
    # LiteLLM 1.99+ charges such an entry's counter but never blocks on it (a limit must be >= 0); a zero limit blocks all.
    for limit in (None, -1.0):
        url = build(
            sqlite_url.replace(".sqlite", f"-{limit}.sqlite"),
            [key(budget={"gpt-4o": {"budget_limit": limit, "time_period": "1d"}})],
            [charge(at(9), 5.0)],
        )
        [invalid] = kinds(scan(url, config, at(12)), "invalid_budget")
        assert (invalid["budget_model"], invalid["severity"], invalid["budget_limit"]) == ("gpt-4o", "error", limit)
        assert f"enforces nothing: its budget_limit is {'null' if limit is None else limit} (" in invalid["message"]
    zero = build(sqlite_url.replace(".sqlite", "-0.sqlite"), [key(limit=0.0)], [charge(at(9), 5.0)])
    assert kinds(scan(zero, config, at(12)), "invalid_budget") == []
