"""Our budget resolution against LiteLLM 1.110.2's own `resolve_model_budget`, on generated realistic cases.

Known, deliberate differences are excluded explicitly and listed in docs/differences-from-litellm.md ("Resolver").
"""

from __future__ import annotations

import copy
import os
import random
import warnings
from types import MappingProxyType

import pytest

from conftest import import_litellm

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import_litellm("litellm")  # skipped without the differential extra, a failure under CI

with warnings.catch_warnings():  # LiteLLM's import-time pydantic chatter is not ours to show
    warnings.simplefilter("ignore")
    import litellm
    from litellm.llms.bedrock.common_utils import get_bedrock_base_model
    from litellm.proxy.hooks import model_max_budget_limiter as limiter

from auditor.litellm.budgets import BudgetEntry, BudgetProblem  # noqa: E402
from auditor.litellm.catalogue import generated_model_id  # noqa: E402
from auditor.litellm.durations import Duration  # noqa: E402
from auditor.litellm.resolver import (  # noqa: E402
    _has_bedrock_vendor,
    bedrock_base_model,
    budget_candidates,
    explain_governing,
    governing_entry,
)

pytestmark = pytest.mark.differential

SEED = 20260110
CASES = 3000

# (raw value as stored, usable?) — the test's own classification, checked against LiteLLM below.
USABLE = (
    {"max_budget": 10.0, "budget_duration": "1d"},
    {"budget_limit": 5, "time_period": "30d"},
    {"max_budget": 0, "budget_duration": "1h"},
    {"max_budget": None, "budget_duration": "7d"},
)
UNUSABLE = (
    0.5,
    {"max_budget": 1.0},
    {"max_budget": 1.0, "budget_duration": "1y"},
    "junk",
    None,
)
ACCESS_GROUP_NAMES = ("claude-models", "team-a", "beta", "gpt-4o", "all-bedrock", "zz-last")
FIXED_GLOBS = ("*", "**", "claude-*", "*-v1:0", "anthropic.*", "gpt-4o*", "*sonnet*", "bedrock/*", "*/*", "c*e*4*")
DECORATIONS = (
    "{}",
    "bedrock/{}",
    "bedrock/converse/{}",
    "bedrock/invoke/{}",
    "bedrock/us-west-2/{}",
    "us.{}",
    "eu.{}",
    "global.{}",
    "{}:51k",
    "{}[1m]",
    "openai/{}",
    "vertex_ai/{}@default",
    "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{}",
)


def _entry(name: str, raw: object) -> BudgetEntry | BudgetProblem:
    if raw in USABLE:
        assert isinstance(raw, dict)
        limit = raw.get("max_budget", raw.get("budget_limit"))
        duration = str(raw.get("budget_duration") or raw.get("time_period"))
        return BudgetEntry(name=name, limit=limit, duration=Duration(raw=duration, value=int(duration[:-1]), unit=duration[-1]))
    return BudgetProblem(name=name, reason="unusable", raw=raw)


def _cost_map_names() -> list[str]:
    return sorted(litellm.model_cost)


def _bedrock_priced(name: str) -> bool:
    return str((litellm.model_cost.get(name) or {}).get("litellm_provider") or "").startswith("bedrock")


def _name_pool(rng: random.Random) -> list[str]:
    names = _cost_map_names()
    bedrock = [name for name in names if _bedrock_priced(name)]
    picked = rng.sample(names, 300) + rng.sample(bedrock, min(200, len(bedrock)))
    decorated = [rng.choice(DECORATIONS).format(name.split("/")[-1]) for name in rng.sample(bedrock, 150)]
    return picked + decorated + ["claude-opus-4-6", "vertex_ai/claude-opus-4-6@default", "azure/prod-gpt4o-eastus"]


def _globs_for(name: str, rng: random.Random) -> list[str]:
    cut = rng.randint(0, len(name))
    other = rng.randint(0, len(name))
    low, high = sorted((cut, other))
    return [
        name[:cut] + "*",
        "*" + name[cut:],
        name[:low] + "*" + name[high:],
        "*" + name[low:high] + "*",
        rng.choice(FIXED_GLOBS),
    ]


def _case(rng: random.Random, pool: list[str]) -> tuple[str, dict[str, object], frozenset[str]]:
    name = rng.choice(pool)
    candidates = list(dict.fromkeys((*limiter._budget_model_candidates(name), *budget_candidates(name))))
    choices = candidates + list(ACCESS_GROUP_NAMES) + _globs_for(rng.choice(candidates), rng) + rng.sample(pool, 2)
    raw: dict[str, object] = {}
    for entry in rng.sample(choices, min(len(choices), rng.randint(1, 7))):
        raw[entry] = copy.deepcopy(rng.choice(USABLE) if rng.random() < 0.6 else rng.choice(UNUSABLE))
    groups = frozenset(group for group in ACCESS_GROUP_NAMES + tuple(candidates) if rng.random() < 0.35)
    return name, raw, groups


def _candidates_differ(name: str) -> bool:
    """Excluded: a documented Bedrock-gate difference (checked in test_budget_candidates_match_litellm_on_its_cost_map)."""
    return limiter._budget_model_candidates(name) != budget_candidates(name)


def test_usable_classification_matches_litellm():
    for raw in USABLE:
        assert limiter._usable_budget_config(copy.deepcopy(raw)) is not None, raw
    for raw in UNUSABLE:
        assert limiter._usable_budget_config(copy.deepcopy(raw)) is None, raw


def test_governing_entry_matches_litellm_resolve_model_budget():
    rng = random.Random(SEED)
    pool = _name_pool(rng)
    compared = excluded = 0
    mismatches = []
    for _ in range(CASES):
        name, raw, groups = _case(rng, pool)
        if _candidates_differ(name):
            excluded += 1
            continue
        entries = MappingProxyType({entry: _entry(entry, value) for entry, value in raw.items()})
        theirs = limiter.resolve_model_budget(
            model=name, model_max_budget=raw, model_access_groups=lambda _model, _team_id, g=groups: g
        )
        ours = governing_entry(name, entries, groups)
        their_order = list(
            limiter._governing_entry_names(
                model=name, model_max_budget=raw, model_access_groups=lambda _m, _t, g=groups: g, team_id=None
            )
        )
        our_order = explain_governing(name, entries, groups)
        compared += 1
        if (theirs.budget_model if theirs else None) != (ours.name if ours else None) or their_order != [
            step.entry for step in our_order
        ]:
            mismatches.append((name, raw, sorted(groups), theirs, ours))
        for step in our_order:
            assert step.usable == (limiter._usable_budget_config(copy.deepcopy(raw[step.entry])) is not None)
    assert not mismatches, mismatches[:5]
    assert compared >= CASES * 0.8, f"only {compared} of {CASES} cases compared ({excluded} excluded)"


def test_budget_candidates_match_litellm_on_its_cost_map():
    """Every cost-map name and Bedrock decorations of each; every disagreement is one of the two documented kinds."""
    names = _cost_map_names()
    bedrock = [name.split("/")[-1] for name in names if _bedrock_priced(name)]
    decorated = [form.format(base) for base in bedrock for form in DECORATIONS]
    unexplained = [(name, *pair) for name in names + decorated if (pair := _candidate_difference(name)) is not None]
    assert not unexplained, unexplained[:10]


def _candidate_difference(name: str) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """None when the candidates agree or differ only as documented ("Bedrock candidates without a cost map")."""
    theirs, ours = limiter._budget_model_candidates(name), budget_candidates(name)
    if theirs == ours:
        return None
    head = tuple(dict.fromkeys((name, name.split("/")[-1])))
    vendor_known = _has_bedrock_vendor(bedrock_base_model(name))
    if theirs == head and ours[: len(head)] == head and vendor_known:
        return None  # we add the pair for a vendor-dotted id LiteLLM's cost map does not price
    if ours == head and theirs[: len(head)] == head and not vendor_known:
        return None  # LiteLLM's cost map prices a base that names no vendor we know (GovCloud, image sizes)
    return theirs, ours


def test_bedrock_base_model_matches_litellm():
    names = _cost_map_names()
    bedrock = [name.split("/")[-1] for name in names if _bedrock_priced(name)]
    forms = names + [form.format(base) for base in bedrock for form in DECORATIONS] + [
        "bedrock/nova/arn:aws:bedrock:us-east-1:1:custom-model/x", "bedrock/nova-2/arn:aws:x", "converse/nova/x",
        "bedrock/openai/converse/us.anthropic.x-v1:0", "bedrock/learnlm/x", "us-gov.anthropic.x[200k]",
    ]  # fmt: skip
    assert [(n, get_bedrock_base_model(n)) for n in forms] == [(n, bedrock_base_model(n)) for n in forms]


# --- generated deployment ids -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:.*ReadOnly.*:UserWarning")  # pydantic noise from LiteLLM's lazy imports
def test_generated_model_id_matches_litellm_router():
    model_list = [
        {
            "model_name": "gpt-4o",
            "litellm_params": {
                "model": "openai/gpt-4o",
                "api_key": "sk-test",
                "rpm": 10,
                "temperature": 0.5,
                "tags": ["a", "b"],
                "extra_body": {"b": 1, "a": "x"},
                "stream": True,
            },
        },
        {"model_name": "opus", "litellm_params": {"model": "vertex_ai/claude-opus-4-6@default", "vertex_project": "p"}},
        {
            "model_name": "sonnet",
            "litellm_params": {
                "model": "bedrock/converse/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
                "aws_region_name": "us-west-2",
            },
        },
    ]
    router = litellm.Router(model_list=copy.deepcopy(model_list))
    actual = {d["model_name"]: d["model_info"]["id"] for d in router.registry().deployments()}
    assert actual == {m["model_name"]: generated_model_id(m["model_name"], m["litellm_params"]) for m in model_list}
