"""Loading a LiteLLM config: one-line errors for what cannot be used, warnings for what LiteLLM survives."""

from __future__ import annotations

import textwrap

import pytest

from auditor.errors import ConfigError, InputError
from auditor.litellm.config import LoadedConfig, config_from_env, load_config

GOOD = """
model_list:
  - model_name: opus
    litellm_params:
      model: vertex_ai/claude-opus-4-6@default
      vertex_credentials: os.environ/VERTEX_CREDS
  - model_name: opus
    litellm_params:
      model: bedrock/converse/us.anthropic.claude-opus-4-6-v1
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o-eastus
      api_key: os.environ/AZURE_API_KEY
router_settings:
  model_group_alias:
    gpt4: gpt-4o
    claude: {model: opus, hidden: true}
litellm_settings:
  timezone: Europe/Berlin
"""


def write(tmp_path, text: str, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_loads_a_good_config(tmp_path):
    loaded = load_config(write(tmp_path, GOOD))
    assert isinstance(loaded, LoadedConfig)
    assert loaded.path.endswith("config.yaml")
    assert loaded.timezone == "Europe/Berlin"
    assert loaded.warnings == ()  # two deployments named "opus" are load balancing, not a problem
    assert [m["model_name"] for m in loaded.data["model_list"]] == ["opus", "opus", "gpt-4o"]


def test_environment_references_are_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("AZURE_API_KEY", "sk-should-never-be-read")
    loaded = load_config(write(tmp_path, GOOD))
    assert loaded.data["model_list"][2]["litellm_params"]["api_key"] == "os.environ/AZURE_API_KEY"


def test_no_timezone(tmp_path):
    assert load_config(write(tmp_path, "model_list: []\n")).timezone is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model_list: [\n", "not valid YAML at line"),
        ("- a\n- b\n", "not a mapping"),
        ("", "no model_list"),
        ("general_settings: {}\n", "no model_list"),
        ("model_list: {opus: x}\n", "model_list is a mapping, not a list"),
        ("model_list: null\n", "model_list is null, not a list"),
        ("model_list: [just-a-string]\n", "model_list[0] is a string"),
        ("model_list:\n  - litellm_params: {model: openai/gpt-4o}\n", "model_list[0] has no model_name"),
        ("model_list:\n  - model_name: gpt-4o\n", "model_list[0] (gpt-4o) has no litellm_params.model"),
        ("model_list:\n  - model_name: gpt-4o\n    litellm_params: {api_key: x}\n", "has no litellm_params.model"),
    ],
)
def test_unusable_configs_are_one_line_config_errors(tmp_path, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message
    assert isinstance(error.value, InputError)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"no such file; pass --config PATH or set CONFIG_FILE_PATH"):
        load_config(tmp_path / "nope.yaml")


def test_directory(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_not_utf8(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"model_list: [\xff\xfe]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_alias_warnings(tmp_path):
    text = """
    model_list:
      - model_name: opus
        litellm_params: {model: vertex_ai/claude-opus-4-6@default}
      - model_name: anthropic/*
        litellm_params: {model: anthropic/*}
    router_settings:
      model_group_alias:
        ok: opus
        wild: anthropic/claude-sonnet-4-5
        nowhere: gpt-5
        chained: ok
        a: b
        b: a
        opus: ok
        empty: {hidden: true}
    """
    warnings = load_config(write(tmp_path, text)).warnings
    joined = "\n".join(warnings)
    assert "'nowhere' -> 'gpt-5': no deployment is named 'gpt-5'" in joined
    assert "'chained' -> 'ok' is another alias" in joined
    assert "model_group_alias cycle: a -> b -> a" in joined
    assert "'opus' shadows the configured model_name" in joined
    assert "'empty': no target model" in joined
    assert not any(w.startswith(("model_group_alias 'ok'", "model_group_alias 'wild'")) for w in warnings)
    assert "'opus' -> 'ok' is another alias" in joined
    assert len(warnings) == 6, warnings
    assert sum("cycle" in w for w in warnings) == 1


def test_alias_map_not_a_mapping(tmp_path):
    loaded = load_config(write(tmp_path, "model_list: []\nrouter_settings: {model_group_alias: [a, b]}\n"))
    assert loaded.warnings == ("router_settings.model_group_alias is not a mapping; ignored",)


def test_repeated_model_id_warns(tmp_path):
    text = """
    model_list:
      - model_name: a
        litellm_params: {model: openai/a}
        model_info: {id: same}
      - model_name: b
        litellm_params: {model: openai/b}
        model_info: {id: same}
    """
    (warning,) = load_config(write(tmp_path, text)).warnings
    assert "model_list[1] (b): model_info.id 'same' repeats model_list[0]" in warning


def test_includes_are_merged_like_the_proxy(tmp_path):
    (tmp_path / "sub").mkdir()
    write(
        tmp_path,
        "model_list:\n  - {model_name: b, litellm_params: {model: openai/b}}\ninclude: [nested.yaml]\n",
        "sub/models.yaml",
    )
    write(
        tmp_path,
        "model_list:\n  - {model_name: c, litellm_params: {model: openai/c}}\nlitellm_settings: {timezone: UTC}\n",
        "sub/nested.yaml",
    )
    root = write(
        tmp_path,
        "include: [sub/models.yaml, sub/models.yaml]\nmodel_list:\n  - {model_name: a, litellm_params: {model: openai/a}}\n",
    )
    loaded = load_config(root)
    assert [m["model_name"] for m in loaded.data["model_list"]] == ["a", "b", "c"]
    assert loaded.timezone == "UTC"
    assert "include" not in loaded.data


def test_include_only_config_has_a_model_list(tmp_path):
    write(tmp_path, "model_list:\n  - {model_name: a, litellm_params: {model: openai/a}}\n", "models.yaml")
    assert load_config(write(tmp_path, "include: [models.yaml]\n")).data["model_list"][0]["model_name"] == "a"


def test_missing_include(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.yaml \(included from .*config.yaml\): no such file"):
        load_config(write(tmp_path, "include: [nope.yaml]\nmodel_list: []\n"))


def test_include_must_be_a_list_of_paths(tmp_path):
    with pytest.raises(ConfigError, match=r"'include' is a string, not a list of file paths; write include: \[other.yaml, ...\]"):
        load_config(write(tmp_path, "include: models.yaml\nmodel_list: []\n"))


def test_config_from_env_precedence(monkeypatch):
    assert config_from_env(None) is None
    monkeypatch.setenv("LITELLM_CONFIG_PATH", "/etc/litellm.yaml")
    assert config_from_env(None) == "/etc/litellm.yaml"
    monkeypatch.setenv("CONFIG_FILE_PATH", "/app/config.yaml")
    assert config_from_env(None) == "/app/config.yaml"
    assert config_from_env("./mine.yaml") == "./mine.yaml"
    monkeypatch.setenv("CONFIG_FILE_PATH", "")
    assert config_from_env(None) == "/etc/litellm.yaml"
