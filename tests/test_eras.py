"""The LiteLLM era table and its detection (auditor/litellm/eras.py), checked against what old releases did.

The boundaries were read in the released wheels (`pip download --no-deps litellm==X`); the fixtures in tests/eras/
were written by 1.83.7's and 1.90.7's own router, spend-log writer and limiter (tests/eras/record.py), so the facts
the table states about those two releases are asserted on their own output here.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert
from typer.testing import CliRunner

from auditor.cli.main import app
from auditor.errors import InputError
from auditor.ledger.schema import metadata, rollup_metadata, spend_logs
from auditor.litellm.eras import (
    DEPLOYMENT,
    ENTITY_START_KEYS,
    ENTRY,
    ENTRY_START_KEYS,
    ERAS,
    MEMORY,
    MEMORY_FIRST,
    PER_ENTITY,
    PER_ENTRY,
    REDIS_COUNTERS,
    REDIS_FIRST,
    REQUESTED,
    TABLE_WINDOWS,
    TEAM_COUNTERS,
    counter_shapes,
    detect_era,
    era_named,
    era_of,
    parse_version,
)
from auditor.repair import layout as layouts
from auditor.repair import plan as planning

FIXTURES = Path(__file__).parent / "eras"
runner = CliRunner()


def fixture(version: str) -> dict:
    return json.loads((FIXTURES / f"litellm-{version}.json").read_text())


# ---------------------------------------------------------------------------------------------
# The table


def test_eras_cover_every_release_once_in_order():
    assert ERAS[0].first == (0, 0, 0) and ERAS[-1].until is None
    for before, after in zip(ERAS, ERAS[1:]):
        assert before.until == after.first, (before.name, after.name)


@pytest.mark.parametrize(
    ("release", "era", "written", "read", "starts", "storage", "strict"),
    [
        # release read in its wheel -> what its limiter does
        ("1.80.17", "<=1.80", DEPLOYMENT, REQUESTED, PER_ENTITY, MEMORY, True),
        ("1.81.0", "1.81", DEPLOYMENT, REQUESTED, PER_ENTITY, MEMORY, True),
        ("1.82.0", "1.82-1.83.7", DEPLOYMENT, REQUESTED, PER_ENTITY, MEMORY, True),
        ("1.83.7", "1.82-1.83.7", DEPLOYMENT, REQUESTED, PER_ENTITY, MEMORY, True),
        ("1.83.8", "1.83.8-1.83.14", REQUESTED, REQUESTED, PER_ENTITY, MEMORY, True),  # model_group, same schema as 1.83.7
        ("1.83.14", "1.83.8-1.83.14", REQUESTED, REQUESTED, PER_ENTITY, MEMORY, True),
        ("1.84.0", "1.84-1.98", REQUESTED, REQUESTED, PER_ENTITY, MEMORY_FIRST, True),  # enable_redis_auth_cache appears
        ("1.90.7", "1.84-1.98", REQUESTED, REQUESTED, PER_ENTITY, MEMORY_FIRST, True),
        ("1.98.1", "1.84-1.98", REQUESTED, REQUESTED, PER_ENTITY, MEMORY_FIRST, True),
        ("1.99.0", "1.99-1.100", ENTRY, ENTRY, PER_ENTRY, MEMORY_FIRST, False),  # PR #37736: entry keys, >=, 0 blocks
        ("1.100.5", "1.99-1.100", ENTRY, ENTRY, PER_ENTRY, MEMORY_FIRST, False),  # still user_api_key_cache
        ("1.101.0", "1.101-1.108", ENTRY, ENTRY, PER_ENTRY, REDIS_FIRST, False),  # spend_counter_cache, Redis read first
        ("1.108.0", "1.101-1.108", ENTRY, ENTRY, PER_ENTRY, REDIS_FIRST, False),
        ("1.109.0", "1.109+", ENTRY, ENTRY, PER_ENTRY, REDIS_FIRST, False),  # model_budget_shared_windows.py appears
        ("1.110.2", "1.109+", ENTRY, ENTRY, PER_ENTRY, REDIS_FIRST, False),
    ],
)
def test_each_release_falls_in_the_era_its_source_shows(release, era, written, read, starts, storage, strict):
    found = era_of(parse_version(release))
    assert (found.name, found.written, found.read, found.start_keys, found.storage, found.strict) == (
        era,
        written,
        read,
        starts,
        storage,
        strict,
    )


def test_only_1_109_shares_windows_through_the_table_and_only_1_81_and_earlier_hard_code_1d():
    assert [e.name for e in ERAS if e.shares_through_table] == ["1.109+"]
    assert [e.name for e in ERAS if e.charged_duration == "1d"] == ["<=1.80", "1.81"]
    assert [e.name for e in ERAS if not e.counters_auditable] == ["<=1.80", "1.81", "1.82-1.83.7", "1.83.8-1.83.14"]


def test_scopes_grow_with_the_release():
    assert era_named("1.82-1.83.7").scopes() == ("key", "end_user")
    assert era_named("1.99-1.100").scopes() == ("key", "end_user", "user")
    assert era_named("1.101-1.108").scopes((1, 103, 0)) == ("key", "end_user", "user", "team")
    assert era_named("1.101-1.108").scopes((1, 107, 9)) == ("key", "end_user", "user", "team")
    assert era_named("1.109+").scopes() == ("key", "end_user", "user", "team", "team_member")


def test_the_comparison_of_each_era():
    old, new = era_named("1.84-1.98"), era_named("1.109+")
    # before 1.99: spend > cap, and 0 means unlimited
    assert (old.blocks(0.05, 0.05), old.blocks(0.0500001, 0.05), old.blocks(5.0, 0), old.enforced(0)) == (
        False,
        True,
        False,
        False,
    )
    # 1.99+: spend >= cap, 0 blocks even with nothing spent, a negative or null cap enforces nothing
    assert (new.blocks(0.05, 0.05), new.blocks(0.0, 0), new.blocks(9.0, -1), new.blocks(9.0, None)) == (True, True, False, False)
    assert not old.blocks(1.0, float("nan")) and not new.blocks(1.0, float("nan"))


def test_the_counter_names_each_era_reads():
    assert era_named("1.84-1.98").read_names("anthropic/claude-3-haiku", "claude-3-haiku") == (
        "anthropic/claude-3-haiku",
        "claude-3-haiku",
    )
    assert era_named("1.84-1.98").read_names("gpt-4o", "gpt-4o") == ("gpt-4o",)
    # 1.99+: the entry, plus the requested-model counter an upgrade carried over (key and end-user scopes)
    assert era_named("1.109+").read_names("openai/gpt-4o", "gpt-4o") == ("gpt-4o", "openai/gpt-4o")
    assert era_named("1.109+").read_names("gpt-4o", "gpt-4o") == ("gpt-4o",)


def test_layouts_in_words():
    assert (
        era_named("1.83.8-1.83.14")
        .layout()
        .startswith(
            "counters keyed by requested model, one start key per key (shared by all its models), in worker memory: "
            "Redis holds none; only the ledger can be audited"
        )
    )
    assert "enable_redis_auth_cache" in era_named("1.84-1.98").layout()
    assert "LiteLLM_BudgetWindowSpend" in era_named("1.109+").layout()
    assert "read under the requested model" in era_named("1.82-1.83.7").layout()


@pytest.mark.parametrize(
    ("text", "version"), [("1.83.7", (1, 83, 7)), ("v1.90", (1, 90, 0)), (" 1.110 ", (1, 110, 0)), ("2", (2, 0, 0))]
)
def test_versions_parse(text, version):
    assert parse_version(text) == version


@pytest.mark.parametrize("text", ["latest", "1.83.7.1", "1..2", "", "1.x", "\u0661.83"])
def test_anything_else_is_a_usage_error(text):
    with pytest.raises(InputError, match="not a version"):
        parse_version(text)


# ---------------------------------------------------------------------------------------------
# Detection

H = "ab" * 32


def test_key_shapes_are_told_apart():
    shapes = counter_shapes([f"virtual_key_budget_start_time:{H}", f"virtual_key_spend:{H}:gpt-4o:1d"])
    assert shapes == {ENTITY_START_KEYS, REDIS_COUNTERS}
    assert counter_shapes([f"virtual_key_budget_start_time:{H}:gpt-4o:1d"]) == {ENTRY_START_KEYS}
    # an end user's id may hold ':': its start keys say nothing
    assert counter_shapes(["end_user_budget_start_time:tenant:42"]) == frozenset()
    assert counter_shapes([], ["team_model_spend:t1:gpt-4o:1d"]) == {TABLE_WINDOWS, TEAM_COUNTERS}


def test_the_schema_alone_never_takes_1_83_for_the_bug():
    found = detect_era(("1.68", "1.84"))
    assert (found.era.name, found.certain, found.origin) == ("1.83.8-1.83.14", False, "schema markers")
    assert "only --litellm-version tells them apart" in found.why


def test_a_1_84_schema_is_1_84_to_1_98_unless_the_keys_say_1_99():
    assert detect_era(("1.84", "1.100")).era.name == "1.84-1.98"
    keyed = detect_era(("1.84", "1.100"), {ENTITY_START_KEYS, REDIS_COUNTERS})
    assert (keyed.era.name, keyed.certain, keyed.version) == ("1.84-1.98", True, ">= 1.84, < 1.99")
    assert detect_era(("1.84", "1.100"), {ENTRY_START_KEYS}).era.name == "1.99-1.100"


def test_newer_keys_win_over_leftovers_of_an_older_release():
    found = detect_era((None, None), {ENTITY_START_KEYS, ENTRY_START_KEYS, TABLE_WINDOWS})
    assert (found.era.name, found.certain) == ("1.109+", True)
    assert "left by a release before an upgrade" in found.why
    # with a 1.105 schema the old start keys contradict the schema itself
    found = detect_era(("1.105", None), {ENTITY_START_KEYS, ENTRY_START_KEYS, TABLE_WINDOWS})
    assert (found.era.name, found.certain) == ("1.109+", True)
    assert "the schema says otherwise" in found.why


def test_the_schema_wins_over_keys_it_cannot_have_written():
    """Counters in Redis next to a schema older than 1.84 (whose limiter never had Redis) were put there by something
    else: the schema's era stands, and the keys are named as not its own."""
    found = detect_era(("1.68", "1.84"), {REDIS_COUNTERS, ENTITY_START_KEYS})
    assert (found.era.name, found.origin) == ("1.83.8-1.83.14", "schema markers and counter keys")
    assert "the schema says otherwise" in found.why


def test_an_explicit_version_wins_and_says_what_disagrees():
    found = detect_era(("1.105", None), {ENTRY_START_KEYS}, "1.83.7")
    assert (found.era.name, found.origin, found.version) == ("1.82-1.83.7", "--litellm-version", "1.83.7")
    assert "but the schema has markers of 1.105+" in found.why
    assert "1.82-1.83.7" in found.as_record()["era"] and found.as_record()["layout"] == found.era.layout()
    assert "assumed 1.83.0" in detect_era(explicit="1.83").why


def test_the_fixtures_of_1_83_7_show_its_bug():
    """1.83.7 charged the deployment string and checked the requested model: only the wildcard route, whose
    logged model is the requested one, was ever blocked; the routed gpt-4o key ran far past its cap unblocked."""
    data = fixture("1.83.7")
    research = next(k["token"] for k in data["keys"] if k["key_alias"] == "research")
    names = {k.split(":")[2] for k in data["memory"] if k.startswith("virtual_key_spend:")}
    assert names == {"openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-3-haiku-20240307"}
    assert {b["model"] for b in data["blocked"]} == {"anthropic/claude-3-haiku-20240307"}
    assert data["memory"][f"virtual_key_spend:{research}:openai/gpt-4o:1d"]["value"] > 3 * 0.05
    assert data["redis"] is None  # its limiter's cache has no Redis
    # one start key per key, shared by the day and the hour entry
    assert f"virtual_key_budget_start_time:{research}" in data["memory"]
    assert era_of(parse_version(data["litellm_version"])).written == DEPLOYMENT


def test_the_fixtures_of_1_90_7_show_requested_names_shared_start_keys_and_a_zero_cap_that_blocks_nothing():
    data = fixture("1.90.7")
    names = {k.split(":")[2] for k in data["redis"] if k.startswith("virtual_key_spend:")}
    assert names <= {"gpt-4o", "gpt-4o-mini", "anthropic/claude-3-haiku-20240307"}  # the requested model, not openai/…
    zero = next(k["token"] for k in data["keys"] if k["key_alias"] == "zero")
    assert not any(b["api_key"] == zero for b in data["blocked"])  # a 0 cap is unlimited before 1.99
    assert any(r["api_key"] == zero for r in data["spend_logs"])
    found = detect_era(("1.84", "1.100"), counter_shapes(data["redis"]))
    assert (found.era.name, found.certain) == ("1.84-1.98", True)
    assert era_of(parse_version(data["litellm_version"])) == found.era


# ---------------------------------------------------------------------------------------------
# Where the era shows: backfill's layout, doctor, the scan's source


def test_backfill_layout_follows_the_era():
    assert layouts.layout_for("1.90.7", None).name == layouts.ALIAS_LAYOUT
    assert layouts.layout_for("1.99", None).name == layouts.ENTRY_LAYOUT
    assert layouts.layout_for("1.110.2", None).reads_budget_window_spend
    with pytest.raises(InputError, match="in each worker's memory"):
        layouts.layout_for("1.83.8", None)


def test_backfill_writes_no_counter_for_a_detected_memory_era():
    from auditor.audit.findings import COUNTER_DRIFT, Finding, RowCounts, ScanResult
    from auditor.ledger.capabilities import Capabilities

    caps = Capabilities("sqlite", "sqlite", {"LiteLLM_SpendLogs": frozenset({"status"})}, {})
    layout = layouts.layout_for(None, caps)
    assert (layout.name, layout.era) == (layouts.MEMORY_LAYOUT, "1.83.8-1.83.14")
    drift = Finding(
        kind=COUNTER_DRIFT,
        severity="error",
        scope="key",
        entity_id=H,
        budget_model="gpt-4o",
        time_period="1d",
        window_start=datetime(2026, 3, 2),
        window_end=datetime(2026, 3, 3),
        logged_spend=2.0,
        cached_spend=1.0,
        counter_source="redis",
        counter_key=f"virtual_key_spend:{H}:gpt-4o:1d",
        message="",
    )
    result = ScanResult(as_of=datetime(2026, 3, 2, 12), source={}, rows=RowCounts(), spend=[], findings=[drift])
    planned = planning.plan(result, planning.Snapshot(), planning.PlanOptions(wall_now=datetime(2026, 3, 2, 12), layout=layout))
    assert planned.actionable == [] and "worker memory" in planned.skipped[0].why


@pytest.fixture
def small_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'litellm.sqlite'}"
    engine = create_engine(url)
    metadata.create_all(engine)
    rollup_metadata.create_all(engine)  # LiteLLM_DailyTeamSpend and LiteLLM_DailyEndUserSpend: not among auditor's tables
    with engine.begin() as conn:
        conn.execute(
            insert(spend_logs).values(
                request_id="r1",
                call_type="acompletion",
                api_key=H,
                spend=0.1,
                startTime=datetime(2026, 3, 2, 8),
                endTime=datetime(2026, 3, 2, 8, 0, 1),
                model="gpt-4o",
            )
        )
    engine.dispose()
    return url


def test_doctor_counts_only_the_tables_auditor_reads_and_names_the_layout(small_db):
    result = runner.invoke(app, ["doctor", "--db", small_db, "--litellm-version", "1.90.7"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "11 of 11 found" in result.output  # the two extra daily rollups are not counted (it said 13 of 11)
    assert "1.84-1.98 (--litellm-version: 1.90.7)" in result.output
    assert "counters keyed by requested model, one start key per key (shared by all its models)" in result.output
    assert "but the schema has markers of 1.105+" in result.output


def test_doctor_says_what_it_assumed_without_a_version(small_db):
    result = runner.invoke(app, ["doctor", "--db", small_db], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert "1.109+ (schema markers: >= 1.105)" in result.output
    assert "pass --litellm-version" in result.output


def test_a_bad_version_is_one_line_and_exit_2(small_db):
    for command in (["doctor"], ["scan"], ["backfill"]):
        result = runner.invoke(app, [*command, "--db", small_db, "--litellm-version", "latest"])
        assert result.exit_code == 2, (command, result.output)
        assert result.output.strip().splitlines() == [
            "auditor: --litellm-version 'latest' is not a version: use MAJOR.MINOR.PATCH such as 1.83.7"
        ]


def test_the_scan_says_which_era_it_assumed_and_why(small_db):
    result = runner.invoke(
        app, ["scan", "--db", small_db, "--format", "json", "--litellm-version", "1.83.7", "--fail-on", "never"]
    )
    assert result.exit_code == 0, result.output
    era = json.loads(result.output)["source"]["era"]
    assert (era["era"], era["origin"], era["version"], era["certain"]) == ("1.82-1.83.7", "--litellm-version", "1.83.7", True)
    assert era["layout"].startswith("counters keyed by the logged deployment")
    assert era["evidence"][0] == "--litellm-version 1.83.7: 1.82-1.83.7"


def test_backfill_names_a_1_84_to_1_98_counter_as_the_scan_found_it():
    """Before 1.99 the counter is named after the model as requested: a wildcard route's entry `claude-3-haiku` is
    read through `anthropic/claude-3-haiku`, and that is the key backfill writes."""
    from auditor.audit.findings import COUNTER_DRIFT, Finding, RowCounts, ScanResult

    key = f"virtual_key_spend:{H}:anthropic/claude-3-haiku:1d"
    drift = Finding(
        kind=COUNTER_DRIFT,
        severity="warning",
        scope="key",
        entity_id=H,
        budget_model="claude-3-haiku",
        time_period="1d",
        window_start=datetime(2026, 3, 2, 4),
        window_end=datetime(2026, 3, 3, 4),
        logged_spend=2.0,
        cached_spend=0.0,
        counter_source="redis",
        counter_key=key,
        message="",
    )
    result = ScanResult(as_of=datetime(2026, 3, 2, 12), source={}, rows=RowCounts(), spend=[], findings=[drift])
    planned = planning.plan(
        result,
        planning.Snapshot(),
        planning.PlanOptions(wall_now=datetime(2026, 3, 2, 12), layout=layouts.layout_for("1.90.7", None)),
    )
    assert sorted(w.keys for w in planned.actionable) == [(f"virtual_key_budget_start_time:{H}",), (key,)]
