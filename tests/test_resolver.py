"""Resolving spend rows to model groups, and `model_max_budget` entries to models, with real LiteLLM names."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auditor.litellm.budgets import BudgetEntry, BudgetProblem
from auditor.litellm.catalogue import build_catalogue, generated_model_id
from auditor.litellm.durations import Duration
from auditor.litellm.resolver import (
    Resolver,
    bedrock_base_model,
    budget_candidates,
    explain_governing,
    glob_precedence,
    governing_entry,
    normalise_model_name,
    resolve,
)

OPUS_VERTEX = {"model": "vertex_ai/claude-opus-4-6@default", "vertex_project": "acme", "vertex_location": "us-east5"}

CONFIG = {
    "model_list": [
        {"model_name": "opus", "litellm_params": OPUS_VERTEX, "model_info": {"access_groups": ["claude-models"]}},
        {"model_name": "opus", "litellm_params": {"model": "bedrock/converse/us.anthropic.claude-opus-4-6-v1"}},
        {"model_name": "sonnet-4-5", "litellm_params": {"model": "vertex_ai/claude-sonnet-4-5@20250929"}},
        {
            "model_name": "sonnet-4-5-bedrock",
            "litellm_params": {"model": "bedrock/converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
        },
        {
            "model_name": "sonnet-3-5",
            "litellm_params": {"model": "bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0"},
        },
        {
            "model_name": "gpt-4o",
            "litellm_params": {"model": "azure/prod-gpt4o-eastus", "api_key": "os.environ/AZURE_API_KEY"},
            "model_info": {"id": "azure-eastus-1", "base_model": "azure/gpt-4o"},
        },
        {"model_name": "gpt-4o-mini", "litellm_params": {"model": "openai/gpt-4o-mini"}},
        {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*"}},
        {
            "model_name": "model_name_team1_8f2c",
            "litellm_params": {"model": "anthropic/claude-haiku-4-5-20251001"},
            "model_info": {"team_id": "team1", "team_public_model_name": "haiku"},
        },
        {"model_name": "shared-a", "litellm_params": {"model": "openai/gpt-4.1"}},
        {"model_name": "shared-b", "litellm_params": {"model": "openai/gpt-4.1"}},
        {"model_name": "sonnet-latest", "litellm_params": {"model": "anthropic/claude-3-5-sonnet-latest"}},
        {
            "model_name": "sonnet-3-7",
            "litellm_params": {
                "model": "bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
                "us.anthropic.claude-3-7-sonnet-20250219-v1:0"
            },
        },
    ],
    "router_settings": {"model_group_alias": {"gpt4": "gpt-4o", "claude": {"model": "opus", "hidden": True}}},
}
TABLE = [
    {
        "model_id": "db-1",
        "model_name": "llama",
        "litellm_params": {"model": "bedrock/us.meta.llama3-3-70b-instruct-v1:0"},
        "model_info": {"access_groups": ["open-models"]},
    }
]
CATALOGUE = build_catalogue(CONFIG, TABLE, {"my-opus": "claude"})
OPUS_ID = generated_model_id("opus", OPUS_VERTEX)

# (model, model_group, model_id) -> (status, group, rule)
CASES = [
    # (1) model_group, through aliases and team-internal names
    ((None, "opus", None), ("resolved", "opus", "model_group")),
    (("vertex_ai/claude-sonnet-4-5@20250929", "opus", None), ("resolved", "opus", "model_group")),
    ((None, "gpt4", None), ("resolved", "gpt-4o", "model_group_alias")),
    ((None, "claude", None), ("resolved", "opus", "model_group_alias")),
    ((None, "model_name_team1_8f2c", None), ("resolved", "haiku", "model_group")),
    ((None, "haiku", None), ("resolved", "haiku", "model_group")),
    ((None, "anthropic/claude-sonnet-4-5", None), ("resolved", "anthropic/claude-sonnet-4-5", "wildcard")),
    ((None, "retired-group", None), ("resolved", "retired-group", "model_group")),
    # (2) model_id
    (("whatever", None, "azure-eastus-1"), ("resolved", "gpt-4o", "model_id")),
    ((None, None, OPUS_ID), ("resolved", "opus", "model_id")),
    ((None, None, "db-1"), ("resolved", "llama", "model_id")),
    # (3) deployment string, 1.81+ (full) and older (first provider segment stripped)
    (("vertex_ai/claude-opus-4-6@default", None, None), ("resolved", "opus", "deployment")),
    (("claude-opus-4-6@default", None, None), ("resolved", "opus", "deployment")),
    (("vertex_ai/claude-sonnet-4-5@20250929", None, None), ("resolved", "sonnet-4-5", "deployment")),
    (
        ("bedrock/converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0", None, None),
        ("resolved", "sonnet-4-5-bedrock", "deployment"),
    ),
    (
        ("converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0", None, None),
        ("resolved", "sonnet-4-5-bedrock", "deployment"),
    ),
    (("bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0", None, None), ("resolved", "sonnet-3-5", "deployment")),
    (("us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0", None, None), ("resolved", "sonnet-3-5", "deployment")),
    (("azure/prod-gpt4o-eastus", None, None), ("resolved", "gpt-4o", "deployment")),
    (("prod-gpt4o-eastus", None, None), ("resolved", "gpt-4o", "deployment")),
    (("openai/gpt-4o-mini", None, None), ("resolved", "gpt-4o-mini", "deployment")),
    (("gpt-4o-mini", None, None), ("resolved", "gpt-4o-mini", "deployment")),
    (("openai/gpt-4.1", None, None), ("ambiguous", None, "deployment")),
    (("gpt-4.1", None, None), ("ambiguous", None, "deployment")),
    (("anthropic/claude-haiku-4-5-20251001", None, None), ("resolved", "haiku", "deployment")),
    (("anthropic/claude-3-5-sonnet-latest", None, None), ("resolved", "sonnet-latest", "deployment")),
    (("claude-3-5-sonnet-latest", None, None), ("resolved", "sonnet-latest", "deployment")),
    (
        (
            "bedrock/arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-7-sonnet-20250219-v1:0",
            None,
            None,
        ),
        ("resolved", "sonnet-3-7", "deployment"),
    ),
    (("bedrock/us.meta.llama3-3-70b-instruct-v1:0", None, None), ("resolved", "llama", "deployment")),
    (("whatever", None, "no-such-id"), ("unresolved", None, "unresolved")),
    # (4) group names and aliases
    (("opus", None, None), ("resolved", "opus", "group_name")),
    (("gpt4", None, None), ("resolved", "gpt-4o", "group_name")),
    (("haiku", None, None), ("resolved", "haiku", "group_name")),
    (("model_name_team1_8f2c", None, None), ("resolved", "haiku", "group_name")),
    (("my-opus", None, None), ("resolved", "opus", "group_name")),
    # (5) wildcard routes and normalisation
    (("anthropic/claude-sonnet-4-5", None, None), ("resolved", "anthropic/claude-sonnet-4-5", "wildcard")),
    (("claude-sonnet-4-5", None, None), ("resolved", "sonnet-4-5", "normalised")),
    (("vertex_ai/claude-opus-4-6@20260101", None, None), ("resolved", "opus", "normalised")),
    (("bedrock/invoke/eu.anthropic.claude-opus-4-6-v1:0[1m]", None, None), ("resolved", "opus", "normalised")),
    (("anthropic.claude-sonnet-4-5-20250929-v1:0:18k", None, None), ("resolved", "sonnet-4-5-bedrock", "normalised")),
    (("us.anthropic.claude-3-7-sonnet-20250219-v1:0", None, None), ("resolved", "sonnet-3-7", "normalised")),
    (("bedrock/eu-west-1/anthropic.claude-3-5-sonnet-20241022-v2:0", None, None), ("resolved", "sonnet-3-5", "normalised")),
    (("meta.llama3-3-70b-instruct-v1:0", None, None), ("resolved", "llama", "normalised")),
    # (6) nothing
    (("unknown-model", None, None), ("unresolved", None, "unresolved")),
    (("claude-3-5-sonnet-20240620", None, None), ("unresolved", None, "unresolved")),
    ((None, None, None), ("unresolved", None, "unresolved")),
    (("", "", ""), ("unresolved", None, "unresolved")),
]


@pytest.mark.parametrize(("row", "expected"), CASES, ids=[str(row) for row, _ in CASES])
def test_resolution_rules(row, expected):
    found = resolve(CATALOGUE, *row)
    assert (found.status, found.group, found.rule) == expected, found.decided_by
    assert found.decided_by


def test_ambiguous_lists_candidates_and_never_guesses():
    found = resolve(CATALOGUE, "openai/gpt-4.1", None, None)
    assert found.group is None
    assert found.candidates == ("shared-a", "shared-b")


def test_decided_by_names_the_config_entry():
    assert "model_list[5]" in resolve(CATALOGUE, None, None, "azure-eastus-1").decided_by
    assert "model_list[0]" in resolve(CATALOGUE, "vertex_ai/claude-opus-4-6@default", None, None).decided_by
    assert "LiteLLM_ProxyModelTable model_id=db-1" in resolve(CATALOGUE, None, None, "db-1").decided_by


def test_normalised_ambiguity_between_providers():
    catalogue = build_catalogue(
        {
            "model_list": [
                {"model_name": "sonnet-vertex", "litellm_params": {"model": "vertex_ai/claude-sonnet-4@20250514"}},
                {"model_name": "sonnet-bedrock", "litellm_params": {"model": "bedrock/anthropic.claude-sonnet-4-v1:0"}},
            ]
        },
        [],
    )
    found = resolve(catalogue, "us.anthropic.claude-sonnet-4-v1:0", None, None)
    assert (found.status, found.rule, found.candidates) == ("ambiguous", "normalised", ("sonnet-bedrock", "sonnet-vertex"))


def test_catch_all_route_comes_after_normalisation():
    catalogue = build_catalogue(
        {
            "model_list": [
                {"model_name": "*", "litellm_params": {"model": "*"}},
                {"model_name": "opus", "litellm_params": {"model": "vertex_ai/claude-opus-4-6@default"}},
            ]
        },
        [],
    )
    assert resolve(catalogue, "claude-opus-4-6", None, None).group == "opus"
    found = resolve(catalogue, "gemini/gemini-2.0-flash", None, None)
    assert (found.group, found.rule) == ("gemini/gemini-2.0-flash", "wildcard")


def test_bedrock_prefix_readded_for_a_bare_bedrock_deployment():
    catalogue = build_catalogue(
        {
            "model_list": [
                {
                    "model_name": "haiku",
                    "litellm_params": {
                        "model": "anthropic.claude-3-haiku-20240307-v1:0",
                        "custom_llm_provider": "bedrock",
                    },
                },
                {"model_name": "mini", "litellm_params": {"model": "gpt-4o-mini"}},
            ]
        },
        [],
    )
    found = resolve(catalogue, "bedrock/anthropic.claude-3-haiku-20240307-v1:0", None, None)
    assert (found.group, found.rule) == ("haiku", "deployment")
    assert resolve(catalogue, "openai/gpt-4o-mini", None, None).rule == "normalised"  # not a logged 1.81 form


def test_without_config_model_group_is_taken_as_recorded():
    catalogue = build_catalogue(None, [])
    assert catalogue.notes and "no LiteLLM config" in catalogue.notes[0]
    found = resolve(catalogue, "openai/gpt-4o", "gpt-4o", None)
    assert (found.status, found.group, found.rule) == ("resolved", "gpt-4o", "model_group")
    assert resolve(catalogue, "openai/gpt-4o", None, None).status == "unresolved"


def test_resolver_memoises_per_triple():
    resolver = Resolver(CATALOGUE)
    first = resolver.resolve("claude-opus-4-6@default", None, None)
    assert resolver("claude-opus-4-6@default", "", None) is first
    assert len(resolver._memo) == 1


@pytest.mark.parametrize(
    ("name", "normalised"),
    [
        ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6"),
        ("vertex_ai/claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("vertex_ai/mistralai/mistral-large@2407", "mistral-large"),
        ("bedrock/converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),
        ("bedrock/us-gov-west-1/us-gov.anthropic.claude-3-haiku-20240307-v1:0", "claude-3-haiku-20240307"),
        ("anthropic.claude-v2:1", "claude"),
        ("apac.amazon.nova-pro-v1:0", "nova-pro"),
        ("us.anthropic.claude-opus-4-6-v1[1m]", "claude-opus-4-6"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0:51k", "claude-3-5-sonnet-20241022"),
        ("arn:aws:bedrock:us-east-1:123:inference-profile/global.anthropic.claude-opus-4-6-v1", "claude-opus-4-6"),
        ("azure/eu/prod-gpt4o", "prod-gpt4o"),
        ("openai/gpt-4o-mini", "gpt-4o-mini"),
        ("anthropic/claude-3-5-sonnet-latest", "claude-3-5-sonnet-latest"),
        ("gemini-1.5-pro-002", "gemini-1.5-pro-002"),
    ],
)
def test_normalise_model_name(name, normalised):
    assert normalise_model_name(name) == normalised


# --- budget candidates and governing entries ---------------------------------------------------------

DAY = Duration(raw="1d", value=1, unit="d")


def usable(name: str, limit: float | None = 10.0) -> BudgetEntry:
    return BudgetEntry(name=name, limit=limit, duration=DAY)


def broken(name: str) -> BudgetProblem:
    return BudgetProblem(name=name, reason="no budget_duration", raw={"max_budget": 1})


@pytest.mark.parametrize(
    ("name", "candidates"),
    [
        ("vertex_ai/claude-opus-4-6@default", ("vertex_ai/claude-opus-4-6@default", "claude-opus-4-6@default")),
        (
            "bedrock/converse/us.anthropic.claude-opus-4-6-v1",
            (
                "bedrock/converse/us.anthropic.claude-opus-4-6-v1",
                "us.anthropic.claude-opus-4-6-v1",
                "anthropic.claude-opus-4-6-v1",
                "claude-opus-4-6-v1",
            ),
        ),
        (
            "bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0",
            (
                "bedrock/us-west-2/anthropic.claude-3-5-sonnet-20241022-v2:0",
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet-20241022-v2:0",
            ),
        ),
        (
            "anthropic.claude-3-5-sonnet-20241022-v2:0:51k",
            (
                "anthropic.claude-3-5-sonnet-20241022-v2:0:51k",
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                "claude-3-5-sonnet-20241022-v2:0",
            ),
        ),
        ("azure/gpt-4.1", ("azure/gpt-4.1", "gpt-4.1")),
        ("gpt-4o", ("gpt-4o",)),
        ("openai/gpt-4o-mini", ("openai/gpt-4o-mini", "gpt-4o-mini")),
        (
            "bedrock/nova/arn:aws:bedrock:us-east-1:1:custom-model/x",
            ("bedrock/nova/arn:aws:bedrock:us-east-1:1:custom-model/x", "x", "amazon.nova-custom", "nova-custom"),
        ),
    ],
)
def test_budget_candidates(name, candidates):
    assert budget_candidates(name) == candidates


def test_bedrock_base_model_keeps_version_suffix():
    assert bedrock_base_model("bedrock/converse/us.anthropic.claude-opus-4-6-v1:0[1m]") == "anthropic.claude-opus-4-6-v1:0"
    assert bedrock_base_model("bedrock/us-gov-west-1/anthropic.claude-3-haiku-20240307-v1:0") == (
        "anthropic.claude-3-haiku-20240307-v1:0"
    )


def test_exact_candidates_win_in_candidate_order():
    name = "bedrock/converse/us.anthropic.claude-opus-4-6-v1"
    entries = {
        "claude-opus-4-6-v1": usable("claude-opus-4-6-v1"),
        "anthropic.claude-opus-4-6-v1": usable("anthropic.claude-opus-4-6-v1"),
    }
    assert governing_entry(name, entries, frozenset()).name == "anthropic.claude-opus-4-6-v1"


def test_unusable_entry_falls_through():
    entries = {"gpt-4o": broken("gpt-4o"), "gpt-*": usable("gpt-*")}
    assert governing_entry("openai/gpt-4o", entries, frozenset()).name == "gpt-*"
    steps = explain_governing("openai/gpt-4o", entries, frozenset())
    assert [(s.entry, s.usable) for s in steps] == [("gpt-4o", False), ("gpt-*", True)]


def test_access_groups_alphabetical_after_candidates_before_globs():
    entries = {"*": usable("*"), "zeta": usable("zeta"), "alpha": usable("alpha"), "other": usable("other")}
    assert governing_entry("opus", entries, frozenset({"zeta", "alpha"})).name == "alpha"
    assert [s.entry for s in explain_governing("opus", entries, frozenset({"zeta", "alpha"}))] == ["alpha", "zeta", "*"]
    entries["opus"] = usable("opus")
    assert governing_entry("opus", entries, frozenset({"alpha"})).name == "opus"


def test_access_group_entry_named_like_a_candidate_is_a_candidate():
    steps = explain_governing("opus", {"opus": usable("opus")}, frozenset({"opus"}))
    assert [(s.entry, s.why) for s in steps] == [("opus", "exact model name")]


def test_glob_precedence_literal_characters_then_fewer_wildcards_then_larger_name():
    entries = {p: usable(p) for p in ("*", "claude-*", "claude-opus*", "*opus*", "claude-o*", "claude-*-4*", "clau*-opus*")}
    order = [s.entry for s in explain_governing("claude-opus-4-6", entries, frozenset())]
    # checked against LiteLLM 1.110.2 `_governing_entry_names`: the 9-literal, 2-`*` tie goes to the larger name
    assert order == ["claude-opus*", "claude-*-4*", "clau*-opus*", "claude-o*", "claude-*", "*opus*", "*"]


def test_glob_matches_any_candidate_whole_name():
    entries = {"claude-opus-4-6*": usable("claude-opus-4-6*")}
    assert governing_entry("vertex_ai/claude-opus-4-6@default", entries, frozenset()).name == "claude-opus-4-6*"
    assert governing_entry("vertex_ai/claude-opus-4-6@default", {"claude-opus": usable("claude-opus")}, frozenset()) is None
    assert governing_entry("gpt-4o", {"gpt*x": usable("gpt*x")}, frozenset()) is None


def test_null_cap_entry_still_governs():
    """An entry without max_budget is usable to LiteLLM (it keys a counter), it just enforces nothing."""
    entries = {"gpt-4o": usable("gpt-4o", limit=None), "*": usable("*")}
    assert governing_entry("gpt-4o", entries, frozenset()).name == "gpt-4o"


def test_nothing_governs():
    assert governing_entry("gpt-4o", {}, frozenset()) is None
    assert explain_governing("gpt-4o", {"claude": usable("claude")}, frozenset()) == ()


# --- properties ----------------------------------------------------------------------------------

BASES = (
    "claude-opus-4-6",
    "claude-sonnet-4-5-20250929",
    "claude-3-5-haiku-20241022",
    "llama3-3-70b-instruct",
    "nova-pro",
    "mistral-large-2407",
    "command-r-plus",
    "gpt-4o-mini",
    "titan-text-express",
)
DEPLOYMENT_STYLES = (
    "vertex_ai/{}@default",
    "bedrock/converse/us.anthropic.{}-v1:0",
    "bedrock/us-west-2/anthropic.{}-v2:0",
    "openai/{}",
    "azure/{}",
    "{}",
)
PREFIXES = ("", "vertex_ai/", "bedrock/", "bedrock/converse/", "bedrock/invoke/", "bedrock/us-west-2/", "azure/eu/", "openai/")
REGIONS = ("", "us.", "eu.", "apac.", "jp.", "au.", "global.", "us-gov.")
VENDORS = ("", "anthropic.", "amazon.", "meta.", "mistral.", "cohere.", "ai21.", "deepseek.", "qwen.", "openai.", "stability.")
VERSIONS = ("", "-v1:0", "-v2:0", "-v1", "-v2:1", ":0", "-v1:0:18k", "-v2:0:51k", "@default", "@20250929", "@001", "@latest")
CONTEXTS = ("", "[1m]", "[200k]")


@st.composite
def catalogues(draw):
    bases = draw(st.lists(st.sampled_from(BASES), min_size=1, max_size=len(BASES), unique=True))
    model_list = [
        {"model_name": f"group-{i}", "litellm_params": {"model": draw(st.sampled_from(DEPLOYMENT_STYLES)).format(base)}}
        for i, base in enumerate(bases)
    ]
    return build_catalogue({"model_list": model_list}, []), bases


@given(catalogues(), st.data())
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_decorated_deployment_resolves_to_its_group(catalogue_and_bases, data):
    catalogue, bases = catalogue_and_bases
    index = data.draw(st.integers(0, len(bases) - 1))
    decorated = "".join(
        (
            data.draw(st.sampled_from(PREFIXES)),
            data.draw(st.sampled_from(REGIONS)),
            data.draw(st.sampled_from(VENDORS)),
            bases[index],
            data.draw(st.sampled_from(VERSIONS)),
            data.draw(st.sampled_from(CONTEXTS)),
        )
    )
    found = resolve(catalogue, decorated, None, None)
    assert (found.status, found.group) == ("resolved", f"group-{index}"), (decorated, found)


NAME = st.text(alphabet=string.ascii_lowercase + string.digits + "-._", min_size=1, max_size=12)


@given(st.lists(st.tuples(NAME, NAME), min_size=1, max_size=6, unique_by=lambda pair: pair[0]), st.data())
@settings(max_examples=150, deadline=None)
def test_a_groups_own_name_resolves_to_the_group(pairs, data):
    model_list = [{"model_name": f"g-{group}", "litellm_params": {"model": f"openai/m-{model}"}} for group, model in pairs]
    catalogue = build_catalogue({"model_list": model_list}, [])
    group = f"g-{data.draw(st.sampled_from(pairs))[0]}"
    for row in ((None, group, None), (group, None, None), ("anything", group, "any-id")):
        found = resolve(catalogue, *row)
        assert (found.status, found.group) == ("resolved", group)


GLOB = st.text(alphabet="ab*-", min_size=1, max_size=6)


@given(GLOB, GLOB, GLOB)
def test_glob_precedence_is_a_strict_total_order(a, b, c):
    def outranks(x: str, y: str) -> bool:
        return glob_precedence(x) > glob_precedence(y)

    if a != b:
        assert outranks(a, b) != outranks(b, a)  # total and antisymmetric on distinct patterns
    assert not outranks(a, a)
    if outranks(a, b) and outranks(b, c):
        assert outranks(a, c)


ENTRY_NAME = st.text(min_size=0, max_size=15) | st.sampled_from(["*", "**", "claude-*", "gpt-4o", "anthropic.*", "x*y*"])


@given(
    name=st.text(max_size=40) | st.sampled_from([b.format(x) for b in DEPLOYMENT_STYLES for x in BASES]),
    entries=st.dictionaries(ENTRY_NAME, st.booleans(), max_size=8),
    groups=st.frozensets(ENTRY_NAME, max_size=4),
)
@settings(max_examples=300, deadline=None)
def test_governing_entry_never_raises(name, entries, groups):
    typed = {entry: usable(entry) if ok else broken(entry) for entry, ok in entries.items()}
    found = governing_entry(name, typed, groups)
    steps = explain_governing(name, typed, groups)
    assert found == next((typed[s.entry] for s in steps if s.usable), None)
    assert len({s.entry for s in steps}) == len(steps)


def test_a_row_of_a_wildcard_deployment_resolves_to_the_model_requested_not_the_pattern():
    # A failure row (or one from before model_group was logged) names the wildcard deployment's id and the model the
    # router served under the requested name; the group is that name, as the router records it.
    wildcard_id = generated_model_id("anthropic/*", {"model": "anthropic/*"})
    found = Resolver(CATALOGUE)("anthropic/claude-haiku-4-5", None, wildcard_id)
    assert (found.status, found.group, found.rule) == ("resolved", "anthropic/claude-haiku-4-5", "wildcard")
    # an id of an ordinary deployment still decides by itself
    assert Resolver(CATALOGUE)("anthropic/claude-haiku-4-5", None, "azure-eastus-1").group == "gpt-4o"
