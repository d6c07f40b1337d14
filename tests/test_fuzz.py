"""Fuzzing the parsers a production database and config feed: the budget parser, the duration parser, the
resolver and the config loader. Whatever comes in, only the project's typed errors (AuditorError) may come
out, and what does come out is one line a user can read. Any other exception is a bug: fix it in the core
and keep the input below as an `@example`.

Hypothesis profiles are in tests/conftest.py: `fuzz-tests` is the short developer run, and the long `fuzz`
profile under CI (or AUDITOR_FUZZ=1), about a minute in all.
"""

from __future__ import annotations

import math
import string
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auditor.errors import AuditorError, ConfigError, DurationError
from auditor.litellm.budgets import BudgetEntry, BudgetProblem, parse_model_max_budget
from auditor.litellm.catalogue import build_catalogue, generated_model_id, glob_matches
from auditor.litellm.config import load_config
from auditor.litellm.counters import parse_counter_key, parse_epoch, parse_float
from auditor.litellm.durations import Duration, parse_duration
from auditor.litellm.resolver import Resolver, budget_candidates, explain_governing, governing_entry, normalise_model_name

pytestmark = pytest.mark.fuzz

FUZZ = settings.get_profile("fuzz-tests")


def fuzz_settings(share: float = 1.0, **overrides) -> settings:
    """The fuzz profile, with `share` of its examples for a test whose examples cost more."""
    return settings(FUZZ, max_examples=max(10, int(FUZZ.max_examples * share)), **overrides)


def one_line(message: str) -> None:
    """What the CLI prints: one line, and text a terminal can take (no lone surrogate)."""
    assert message and "\n" not in message and "\r" not in message, repr(message)
    message.encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Strategies: what a jsonb column, a YAML file or a hand edit can hold

NOW = datetime(2026, 3, 15, 12, 0, 0)

TRICKY_TEXT = st.sampled_from(
    [
        "",
        " ",
        "1d",
        " daily ",
        "MONTHLY",
        "1mo",
        "99999mo",
        "9" * 5000 + "d",
        "1y",
        "30",
        "1.5d",
        "0d",
        "١d",
        "NaN",
        "-Infinity",
        "inf",
        "1e309",
        "1_000",
        "_1",
        "1__0",
        " 1_0 ",
        "$5",
        "1,000",
        "0x10",
        "1e-400",
        "*",
        "**",
        "a*b*",
        "claude-*",
        "gpt-4o",
        "azure/prod-gpt4o",
        "bedrock/converse/us.anthropic.claude-v1:0",
        "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3-5-sonnet-20240620-v1:0",
        "os.environ/AZURE_MODEL",
        "v2:gcm:abc",
        "\x00",
        "\ud7ff",
        "\u2028",
        "'; DROP TABLE x; --",
        "<b>x</b>",
        "self",
        "budget_limit",
        "time_period",
        "max_budget",
        "budget_duration",
        "tpm_limit",
        "rpm_limit",
    ]
)
TEXT = st.text(max_size=24) | TRICKY_TEXT
NUMBERS = (
    st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.sampled_from([2**63, -(2**63) - 1, 2**1024])
    | st.sampled_from([1, -1]).map(lambda sign: sign * 10**5000)  # too long for int(str): built, never repr'd
    | st.floats(allow_nan=True, allow_infinity=True)
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
JSON_LIKE = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=16,
)
BUDGET_FIELD = st.sampled_from(
    ["max_budget", "budget_limit", "budget_duration", "time_period", "tpm_limit", "rpm_limit", "self", "x"]
)
ENTRY = st.dictionaries(BUDGET_FIELD, JSON_LIKE, max_size=5) | JSON_LIKE
MODEL_MAX_BUDGET = st.dictionaries(TEXT, ENTRY, max_size=5) | JSON_LIKE
# Python values no JSON decoder returns, but a caller's dict could hold: bytes, tuples, non-str keys.
ODD_PYTHON = st.recursive(
    SCALARS | st.binary(max_size=8) | st.datetimes(),
    lambda children: (
        st.tuples(children, children)
        | st.dictionaries(st.integers() | st.none() | st.booleans() | TEXT | st.binary(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
MOMENTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59))


# ---------------------------------------------------------------------------------------------
# model_max_budget


def check_budget(raw: object, now: datetime | None) -> None:
    parsed = parse_model_max_budget(raw, now=now)
    assert isinstance(parsed, dict)
    for name, item in parsed.items():
        assert isinstance(name, str)
        assert isinstance(item, (BudgetEntry, BudgetProblem))
        assert item.name == name
        if isinstance(item, BudgetProblem):
            one_line(item.reason)
            assert len(item.reason) < 400, item.reason  # values are shown bounded, never in full
        else:
            assert item.limit is None or isinstance(item.limit, float)
            assert isinstance(item.duration, Duration)
            item.enforced  # noqa: B018  # a property that must not raise on NaN or inf


@given(MODEL_MAX_BUDGET, MOMENTS | st.none())
@example({"gpt-4o": {"budget_limit": 10**5000, "time_period": "1d"}}, NOW)
@example({"gpt-4o": {"budget_limit": "9" * 5000, "time_period": "1d"}}, NOW)
@example({"gpt-4o": {"budget_limit": 1, "time_period": "99999mo"}}, datetime(9999, 12, 31))
@example({"gpt-4o": {"budget_limit": 1, "time_period": "1mo"}}, datetime(9999, 12, 31))
@example({"gpt-4o": {"budget_limit": 1, "time_period": "9" * 5000 + "d"}}, NOW)
@example({"gpt-4o": {"tpm_limit": "9" * 5000, "budget_limit": 1, "time_period": "1d"}}, NOW)
@example('"' + "[" * 100000 + '"', NOW)
@example("[" * 100000, NOW)
@example('{"gpt-4o": {"budget_limit": ' + "9" * 5000 + ', "time_period": "1d"}}', NOW)
@example({"a": {"budget_limit": 1, "time_period": "1d", "tpm_limit": "0" * 5000 + "1"}}, NOW)
@fuzz_settings()
def test_budget_parser_never_raises(raw, now):
    check_budget(raw, now)


@given(
    st.dictionaries(
        TEXT | st.integers(), st.dictionaries(BUDGET_FIELD | st.integers(), ODD_PYTHON, max_size=4) | ODD_PYTHON, max_size=4
    )
    | ODD_PYTHON
)
@example({"gpt-4o": {"budget_limit": b"1", "time_period": b"1d"}})
@example({"gpt-4o": {"budget_limit": b"\xff", "time_period": "1d"}})
@example({"gpt-4o": {"budget_limit": 1, "time_period": b"\xff"}})
@fuzz_settings(0.5)
def test_budget_parser_never_raises_on_python_values(raw):
    check_budget(raw, NOW)


def test_budget_parser_survives_a_self_containing_value():
    loop: dict = {"budget_limit": 1, "time_period": "1d"}
    loop["budget_limit"] = loop
    outer: list = []
    outer.append(outer)
    check_budget({"gpt-4o": loop, "x": outer}, NOW)
    check_budget(outer, NOW)


# ---------------------------------------------------------------------------------------------
# Durations


@given(ODD_PYTHON | JSON_LIKE, MOMENTS | st.none(), MOMENTS)
@example("9" * 5000 + "d", NOW, NOW)
@example("99999mo", datetime(1, 1, 1), datetime(9999, 12, 31))
@example("1mo", datetime(9999, 11, 30), datetime(9999, 12, 31, 23, 59, 59))
@example("9999999999w", NOW, datetime(1, 1, 1))
@example("1" + "\u0661" * 30 + "d", NOW, NOW)
@fuzz_settings()
def test_duration_parser_only_raises_duration_errors(raw, now, start):
    try:
        duration = parse_duration(raw, now=now)
    except DurationError as error:
        one_line(str(error))
        assert len(str(error)) < 300
        return
    assert duration.raw == raw and duration.value >= 0
    assert duration.unit in {"s", "m", "h", "d", "w", "mo"}
    assert duration.end_of_window(start) >= start
    aware = start.replace(tzinfo=timezone(timedelta(hours=-5)))
    assert duration.end_of_window(aware) >= aware


@given(st.text(alphabet=string.digits + "smhdwo.-+ _DMYyéa\u0661\u0969", max_size=12), MOMENTS)
@fuzz_settings(0.5)
def test_duration_grammar_shaped_text(raw, now):
    try:
        duration = parse_duration(raw, now=now)
    except DurationError as error:
        one_line(str(error))
    else:
        assert duration.seconds is None or duration.seconds >= 0


# ---------------------------------------------------------------------------------------------
# The resolver, over catalogues built from generated configs and LiteLLM_ProxyModelTable rows

NAMES = (
    st.sampled_from(
        [
            "gpt-4o",
            "claude-opus",
            "anthropic/*",
            "*",
            "openai/*",
            "team-x-internal",
            "opus",
            "a",
            "b",
            "vertex_ai/claude-opus-4-6@default",
            "bedrock/converse/us.anthropic.claude-opus-4-v1:0",
            "azure/prod-gpt4o",
        ]
    )
    | TEXT
)


@st.composite
def deployments(draw):
    """A model_list entry as a hand-edited config may hold it: mostly well formed, any field may be junk."""
    entry = {
        "model_name": draw(NAMES | JSON_LIKE),
        "litellm_params": draw(
            st.fixed_dictionaries(
                {"model": NAMES | JSON_LIKE},
                optional={
                    "api_key": st.just("os.environ/KEY") | TEXT,
                    "organization": st.lists(TEXT, max_size=2) | TEXT,
                    "extra": JSON_LIKE,
                },
            )
            | JSON_LIKE
        ),
        "model_info": draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "id": TEXT | NUMBERS | st.none(),
                    "access_groups": st.lists(NAMES, max_size=3) | JSON_LIKE,
                    "team_public_model_name": NAMES | JSON_LIKE,
                    "base_model": NAMES | JSON_LIKE,
                },
            )
            | JSON_LIKE
        ),
    }
    return draw(st.just(entry) | JSON_LIKE)


CONFIGS = (
    st.fixed_dictionaries(
        {},
        optional={
            "model_list": st.lists(deployments(), max_size=5) | JSON_LIKE,
            "router_settings": st.fixed_dictionaries(
                {},
                optional={
                    "model_group_alias": st.dictionaries(
                        NAMES, NAMES | st.fixed_dictionaries({"model": NAMES | JSON_LIKE, "hidden": JSON_LIKE}), max_size=4
                    )
                    | JSON_LIKE,
                },
            )
            | JSON_LIKE,
            "general_settings": JSON_LIKE,
            "litellm_settings": JSON_LIKE,
        },
    )
    | st.none()
)
TABLE_ROWS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "model_name": NAMES | JSON_LIKE,
            "model_id": TEXT | st.none(),
            "litellm_params": st.fixed_dictionaries({"model": NAMES | st.just("v2:gcm:" + "A" * 60)}) | JSON_LIKE | TEXT,
            "model_info": st.fixed_dictionaries({}, optional={"id": TEXT, "access_groups": st.lists(NAMES, max_size=2)})
            | JSON_LIKE
            | TEXT,
        },
    )
    | JSON_LIKE,
    max_size=3,
)
OPTIONAL_TEXT = st.none() | st.just("") | NAMES


@given(
    CONFIGS,
    TABLE_ROWS,
    st.dictionaries(NAMES, NAMES, max_size=3),
    st.lists(st.tuples(OPTIONAL_TEXT, OPTIONAL_TEXT, OPTIONAL_TEXT), min_size=1, max_size=6),
    MODEL_MAX_BUDGET,
)
@fuzz_settings(0.5, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_resolver_never_raises(config, table_rows, key_aliases, triples, model_max_budget):
    catalogue = build_catalogue(config, table_rows, key_aliases)
    for note in catalogue.notes:
        one_line(note)
    resolver = Resolver(catalogue)
    entries = parse_model_max_budget(model_max_budget, now=NOW)
    for model, model_group, model_id in triples:
        found = resolver(model, model_group, model_id)
        assert found.status in ("resolved", "ambiguous", "unresolved")
        assert (found.group is not None) == (found.status == "resolved")
        assert found.status != "ambiguous" or len(found.candidates) >= 2
        assert resolver(model, model_group, model_id) is found  # memoised per triple
        for name in filter(None, (found.group, model, model_group)):
            groups = catalogue.access_groups_of(name)
            governing = governing_entry(name, entries, groups)
            steps = explain_governing(name, entries, groups)
            assert governing == next((entries[s.entry] for s in steps if s.usable), None)
            assert budget_candidates(name)[0] == name
            normalise_model_name(name)


@given(NAMES, NAMES)
@example("*" * 2000 + "a", "b" * 2000)
@fuzz_settings()
def test_glob_matching_never_raises(pattern, name):
    assert glob_matches(pattern, name) == (pattern == name) or "*" in pattern


@given(NAMES, st.dictionaries(TEXT, JSON_LIKE | ODD_PYTHON, max_size=4))
@example("m", {"extra": {b"bin": 1}})
@example("\ud800", {"model": "x"})
@fuzz_settings(0.5)
def test_generated_model_ids_never_raise(model_name, litellm_params):
    found = generated_model_id(model_name, litellm_params)
    assert found is None or len(found) == 64


# ---------------------------------------------------------------------------------------------
# The config loader, on generated YAML text


def yaml_text(value: object) -> str:
    return yaml.safe_dump(value, allow_unicode=True, default_flow_style=None, sort_keys=False)


YAML_SNIPPETS = st.sampled_from(
    [
        "model_list:",
        "  - model_name: gpt-4o",
        "    litellm_params:",
        "      model: azure/prod-gpt4o",
        "    model_info: {id: x}",
        "router_settings:",
        "  model_group_alias: {a: b, b: a}",
        "include: [other.yaml]",
        "include: other.yaml",
        "&a [*a]",
        "x: &anchor {k: *anchor}",
        "- a",
        "{",
        "[",
        "]",
        "}",
        ":",
        "? key",
        "!!python/object:os.system",
        "!!binary aGVsbG8=",
        "!!timestamp 2026-13-45",
        "!!timestamp soon",
        "!!bool maybe",
        "!!int +",
        "!!float _",
        "2026-02-30",
        "!!int 0x",
        "1e400",
        "!!float nan",
        "%YAML 1.1",
        "---",
        "...",
        "\t",
        "'",
        '"\\x"',
        "*undefined",
        "<<: *a",
        "x: " + "9" * 5000,
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!str",
        "- &b [*b]",
    ]
)


@st.composite
def config_texts(draw):
    """YAML that is nearly a config (lines shuffled from real and broken snippets), a dumped structure, or any text."""
    kind = draw(st.integers(0, 2))
    if kind == 0:
        lines = draw(st.lists(YAML_SNIPPETS | st.text(max_size=10), max_size=12))
        return "\n".join(lines) + "\n"
    if kind == 1:
        value = draw(CONFIGS.filter(lambda c: c is not None) | JSON_LIKE)
        try:
            return yaml_text(value)
        except ValueError:  # an int too long for str(): YAML cannot write it either
            return "model_list: []\nx: " + "9" * 5000 + "\n"
    return draw(st.text(max_size=80))


@given(config_texts())
@example("a: &a [*a]\nmodel_list: []\n")
@example("model_list: []\nx: 2026-13-45\n")
@example("!!timestamp 2026-13-45\n&a [*a]\n")
@example("model_list: []\nx: !!timestamp 10000-01-01\n")
@example("model_list: []\nx: !!bool maybe\n")
@example("model_list: []\nx: !!int +\n")
@example("model_list: []\nx: !!float\n")
@example("model_list: []\nx: " + "9" * 5000 + "\n")
@example("[" * 5000 + "]" * 5000)
@example("model_list: &m [{model_name: a, litellm_params: {model: x, extra: *m}}]\n")
@example("model_list: !!python/object:os.system []\n")
@example("model_list: []\nx: !!binary aGVsbG8=\n")
@example("model_list: []\ninclude: [config.yaml]\n")
@example("model_list: []\nrouter_settings: {model_group_alias: {? [a]: b}}\n")
@example('model_list:\n  - model_name: "\\ud800"\n    litellm_params: {model: x}\n')
@example('model_list: []\n"\\udcff": 1\n')
@example("model_list: [{model_name: [a], litellm_params: {model: x}}]\n")
@example(
    "model_list:\n  - {model_name: a, litellm_params: {model: x}, model_info: {id: [1]}}\n"
    "  - {model_name: b, litellm_params: {model: y}, model_info: {id: [1]}}\n"
)
@fuzz_settings(0.5, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_config_loader_only_raises_config_errors(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        loaded = load_config(path)
    except ConfigError as error:
        one_line(str(error))
        assert str(path) in str(error)
        return
    assert isinstance(loaded.data, dict)
    for warning in loaded.warnings:
        one_line(warning)
    catalogue = build_catalogue(loaded.data, [])
    resolver = Resolver(catalogue)
    for group in catalogue.groups:
        assert resolver(None, group, None).status == "resolved"


@given(st.binary(max_size=64))
@example(b"\xff\xfe")
@example(b"model_list: []\n\x00")
@fuzz_settings(0.2, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_config_loader_on_bytes(tmp_path, raw):
    path = tmp_path / "config.yaml"
    path.write_bytes(raw)
    try:
        load_config(path)
    except ConfigError as error:
        one_line(str(error))


# ---------------------------------------------------------------------------------------------
# Counter keys and values as Redis or LiteLLM_BudgetWindowSpend hold them


@given(
    st.text(max_size=60)
    | st.builds(
        lambda p, rest: f"{p}:{rest}",
        st.sampled_from(
            [
                "virtual_key_spend",
                "team_member_model_spend",
                "user_model_spend",
                "end_user_model_spend",
                "team_model_spend",
            ]
        ),
        st.text(alphabet="ab:0123456789*-", max_size=30),
    )
)
@example("team_member_model_spend:99999999999999999999:u:t:m:1d")
@example("team_member_model_spend:" + "9" * 5000 + ":u:t:m:1d")
@example("team_member_model_spend:\u00b2:ab:t:m:1d")
@fuzz_settings()
def test_counter_keys_parse_or_are_skipped(key):
    parsed = parse_counter_key(key)
    if parsed is not None:
        assert parsed.key == key
        assert parsed.duration and parsed.budget_model and parsed.entity_id


@given(ODD_PYTHON | JSON_LIKE)
@example("1e400")
@example("9" * 5000)
@example(10**5000)
@example("-62135596801")
@fuzz_settings()
def test_counter_values_parse_or_are_none(value):
    number = parse_float(value)
    assert number is None or math.isfinite(number)
    moment = parse_epoch(value)
    assert moment is None or moment.tzinfo is None


def test_only_typed_errors_are_caught_above():
    """The contract these tests hold the core to: every typed error is an AuditorError with an exit code."""
    for error_type in (ConfigError, DurationError):
        assert issubclass(error_type, AuditorError) and error_type.exit_code == 2
