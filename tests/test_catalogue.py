"""Building the catalogue from a parsed config and `LiteLLM_ProxyModelTable` rows."""

from __future__ import annotations

import base64
import hashlib

import pytest

from auditor.litellm.catalogue import Catalogue, build_catalogue, generated_model_id, glob_matches, without_first_segment

CONFIG = {
    "model_list": [
        {
            "model_name": "opus",
            "litellm_params": {"model": "vertex_ai/claude-opus-4-6@default", "vertex_project": "acme"},
            "model_info": {"access_groups": ["claude-models", "all"], "base_model": "claude-opus-4-6"},
        },
        {
            "model_name": "opus",
            "litellm_params": {"model": "bedrock/converse/us.anthropic.claude-opus-4-6-v1"},
            "model_info": {"id": "opus-bedrock", "access_groups": ["claude-models", "opus"]},
        },
        {
            "model_name": "gpt-4o",
            "litellm_params": {"model": "azure/prod-gpt4o-eastus", "api_key": "os.environ/AZURE_API_KEY"},
            "model_info": {"access_groups": ["openai-models"]},
        },
        {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*"}, "model_info": {"access_groups": ["all"]}},
        {
            "model_name": "model_name_team1_8f2c",
            "litellm_params": {"model": "anthropic/claude-haiku-4-5-20251001"},
            "model_info": {"team_id": "team1", "team_public_model_name": "haiku", "access_groups": ["team-models"]},
        },
        {"model_name": "secret-model", "litellm_params": {"model": "os.environ/SECRET_MODEL"}},
    ],
    "router_settings": {
        "model_group_alias": {
            "gpt4": "gpt-4o",
            "claude": {"model": "opus", "hidden": True},
            "bad": {"hidden": True},
            "also-bad": 3,
        }
    },
}
ENCRYPTED = base64.urlsafe_b64encode(bytes(range(24)) + b"\x00" * 16 + b"vertex_ai/gemini-2.0-flash").decode()
TABLE = [
    {
        "model_id": "db-1",
        "model_name": "llama",
        "litellm_params": {"model": "bedrock/us.meta.llama3-3-70b-instruct-v1:0", "api_key": ENCRYPTED},
        "model_info": {"id": "db-1", "access_groups": ["open-models"]},
    },
    {"model_id": "db-2", "model_name": "gemini", "litellm_params": {"model": ENCRYPTED}, "model_info": None},
    {"model_id": "db-3", "model_name": "gemini", "litellm_params": {"model": "v2:gcm:AAAAbbbbCCCC"}, "model_info": {}},
    {"model_id": "db-4", "model_name": "", "litellm_params": {}},
    "not even a mapping",
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return build_catalogue(CONFIG, TABLE, {"my-opus": "claude"}, config_name="proxy.yaml")


def test_deployments_and_provenance(catalogue):
    sources = [d.source for d in catalogue.deployments]
    assert sources[:6] == [f"proxy.yaml model_list[{i}]" for i in range(6)]
    assert sources[6:] == [
        "LiteLLM_ProxyModelTable model_id=db-1",
        "LiteLLM_ProxyModelTable model_id=db-2",
        "LiteLLM_ProxyModelTable model_id=db-3",
    ]
    opus = catalogue.deployments[0]
    assert (opus.model_name, opus.model, opus.base_model, opus.access_groups) == (
        "opus",
        "vertex_ai/claude-opus-4-6@default",
        "claude-opus-4-6",
        ("claude-models", "all"),
    )


def test_secret_and_encrypted_models_are_never_read(catalogue):
    by_source = {d.source: d for d in catalogue.deployments}
    assert by_source["proxy.yaml model_list[5]"].model is None  # os.environ/ reference
    assert by_source["LiteLLM_ProxyModelTable model_id=db-2"].model is None  # NaCl box
    assert by_source["LiteLLM_ProxyModelTable model_id=db-3"].model is None  # AES-GCM
    assert by_source["LiteLLM_ProxyModelTable model_id=db-1"].model == "bedrock/us.meta.llama3-3-70b-instruct-v1:0"
    assert any("encrypted" in note for note in catalogue.notes)


def test_ids_declared_generated_or_unknowable(catalogue):
    by_source = {d.source: d for d in catalogue.deployments}
    assert by_source["proxy.yaml model_list[1]"].model_id == "opus-bedrock"
    assert by_source["proxy.yaml model_list[0]"].model_id == generated_model_id(
        "opus", {"model": "vertex_ai/claude-opus-4-6@default", "vertex_project": "acme"}
    )
    assert by_source["proxy.yaml model_list[2]"].model_id is None  # hashes the resolved AZURE_API_KEY
    assert any("os.environ/" in note for note in catalogue.notes)
    assert catalogue.by_id["db-1"].model_name == "llama"


def test_generated_model_id_algorithm():
    params = {"model": "openai/gpt-4o", "rpm": 10, "temperature": 0.5, "stream": True, "tags": ["a"], "extra": {"b": 1}}
    joined = "gpt-4o" + "modelopenai/gpt-4o" + "rpm10" + "temperature0.5" + "streamTrue" + "tags['a']" + 'extra{"b": 1}'
    assert generated_model_id("gpt-4o", params) == hashlib.sha256(joined.encode()).hexdigest()
    assert generated_model_id("gpt-4o", {"model": "x", "nested": {"key": "os.environ/KEY"}}) is None
    assert generated_model_id("gpt-4o", {"model": "x", "organization": ["org-1", "org-2"]}) is None


def test_groups_lookups(catalogue):
    assert catalogue.groups == frozenset({"opus", "gpt-4o", "haiku", "secret-model", "llama", "gemini"})
    assert [d.model_name for d in catalogue.wildcard_routes] == ["anthropic/*"]
    assert catalogue.internal_names == {"model_name_team1_8f2c": "haiku"}
    assert len(catalogue.deployments_by_group["opus"]) == 2
    assert catalogue.groups_by_deployment["vertex_ai/claude-opus-4-6@default"] == frozenset({"opus"})
    assert catalogue.groups_by_bare_deployment["claude-opus-4-6@default"] == frozenset({"opus"})
    assert catalogue.groups_by_bare_deployment["converse/us.anthropic.claude-opus-4-6-v1"] == frozenset({"opus"})


def test_aliases(catalogue):
    assert dict(catalogue.group_aliases) == {"gpt4": "gpt-4o", "claude": "opus"}
    assert catalogue.hidden_aliases == frozenset({"claude"})
    assert catalogue.alias_target("gpt4") == "gpt-4o"
    assert catalogue.alias_target("gpt-4o") is None
    assert dict(catalogue.key_aliases) == {"my-opus": "claude"}


def test_access_groups_of(catalogue):
    # "opus" is also a served model name, so LiteLLM does not treat it as an access group
    assert catalogue.access_groups_of("opus") == frozenset({"claude-models", "all"})
    assert catalogue.access_groups_of("claude") == frozenset({"claude-models", "all"})  # alias -> its group
    assert catalogue.access_groups_of("anthropic/claude-sonnet-4-5") == frozenset({"all"})  # wildcard route
    assert catalogue.access_groups_of("haiku") == frozenset({"team-models"})  # public name of a team model
    assert catalogue.access_groups_of("llama") == frozenset({"open-models"})
    assert catalogue.access_groups_of("nothing") == frozenset()
    assert catalogue.access_group_members["claude-models"] == frozenset({"opus"})
    assert catalogue.access_group_members["all"] == frozenset({"opus", "anthropic/*"})


def test_table_json_given_as_text():
    row = {"model_id": "t", "model_name": "m", "litellm_params": '{"model": "openai/m"}', "model_info": "not json"}
    (deployment,) = build_catalogue(None, [row]).deployments
    assert (deployment.model, deployment.access_groups) == ("openai/m", ())


def test_first_deployment_with_an_id_wins():
    catalogue = build_catalogue(
        {
            "model_list": [
                {"model_name": "a", "litellm_params": {"model": "openai/a"}, "model_info": {"id": "same"}},
                {"model_name": "b", "litellm_params": {"model": "openai/b"}, "model_info": {"id": "same"}},
            ]
        },
        [],
    )
    assert catalogue.by_id["same"].model_name == "a"


def test_empty_inputs():
    catalogue = build_catalogue(None, [])
    assert (catalogue.deployments, catalogue.has_config, catalogue.groups) == ((), False, frozenset())
    assert catalogue.notes == ("no LiteLLM config given: resolving from the database and the rows themselves",)
    assert build_catalogue({"model_list": []}, []).has_config


def test_catalogue_is_frozen(catalogue):
    with pytest.raises(AttributeError):
        catalogue.deployments = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        catalogue.deployments[0].model = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("anthropic/*", "anthropic/claude-sonnet-4-5", True),
        ("anthropic/*", "openai/gpt-4o", False),
        ("*", "", True),
        ("a*a", "a", False),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("*-v1:0", "anthropic.claude-v1:0", True),
        ("gpt-4o", "gpt-4o", True),
    ],
)
def test_glob_matches(pattern, name, matches):
    assert glob_matches(pattern, name) is matches


def test_without_first_segment():
    assert without_first_segment("vertex_ai/claude-opus-4-6@default") == "claude-opus-4-6@default"
    assert without_first_segment("bedrock/converse/x") == "converse/x"
    assert without_first_segment("gpt-4o") is None
