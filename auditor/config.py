"""Reading a LiteLLM proxy config file: the only I/O behind the catalogue.

Errors that leave nothing to audit are one-line `ConfigError`s naming the file and what to do; anything
LiteLLM itself survives (an alias to nowhere, an alias cycle, a reused id) becomes a warning instead.
`os.environ/` values are left exactly as written: nothing we read from a config needs a secret.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from auditor.catalogue import glob_matches
from auditor.errors import ConfigError

_INCLUDE_KEY = "include"


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A parsed config (includes merged) and what was odd about it."""

    data: dict
    path: str
    warnings: tuple[str, ...]
    timezone: str | None  # litellm_settings.timezone: the zone LiteLLM aligns budget resets to


def config_from_env(explicit: str | None) -> str | None:
    """The config path as the proxy finds it: `--config PATH`, else `CONFIG_FILE_PATH`, else `LITELLM_CONFIG_PATH`."""
    for candidate in (explicit, os.environ.get("CONFIG_FILE_PATH"), os.environ.get("LITELLM_CONFIG_PATH")):
        if candidate:
            return candidate
    return None


def load_config(path: str | os.PathLike[str]) -> LoadedConfig:
    """Read and check a LiteLLM config; raise ConfigError only when it cannot describe any deployment."""
    root = Path(path)
    data = _merge_includes(_read_mapping(root, root), root)
    _check_model_list(data, root)
    return LoadedConfig(
        data=data,
        path=str(root),
        warnings=tuple(_warnings(data)),
        timezone=_timezone(data),
    )


def _read_mapping(file: Path, root: Path) -> dict:
    """One YAML file as a mapping; an empty file is `{}`, as the proxy reads it."""
    where = str(file) if file == root else f"{file} (included from {root})"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; pass --config PATH or set CONFIG_FILE_PATH") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory; pass the LiteLLM config YAML file itself") from None
    except PermissionError:
        raise ConfigError(f"{where}: not readable (permission denied); check the file's permissions") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text; pass the LiteLLM config YAML file") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read ({error.strerror or error}); check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"{where}: not valid YAML{at} ({problem}); fix the syntax and retry") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: the top level is a {type(data).__name__}, not a mapping; "
            "a LiteLLM config is a mapping with model_list, router_settings, ..."
        )
    return data


def _merge_includes(config: dict, root: Path) -> dict:
    """Merge `include:` files as the proxy does: lists extend, other values replace, each file read once.

    A file is looked up next to the config naming it, then next to the root config (the proxy's
    fallback for configs written before nested includes resolved relative to their own file).
    """
    merged = {key: value for key, value in config.items() if key != _INCLUDE_KEY}
    pending = [(entry, root) for entry in _include_entries(config, root)]
    loaded = {root.resolve()}
    while pending:
        entry, declared_in = pending.pop(0)
        location = _include_location(entry, declared_in, root)
        if location.resolve() in loaded:
            continue
        loaded.add(location.resolve())
        included = _read_mapping(location, root)
        for key, value in included.items():
            if key == _INCLUDE_KEY:
                continue
            base = merged.get(key)
            merged[key] = [*base, *value] if isinstance(base, list) and isinstance(value, list) else value
        pending.extend((nested, location) for nested in _include_entries(included, location))
    return merged


def _include_entries(config: Mapping, file: Path) -> list[str]:
    entries = config.get(_INCLUDE_KEY)
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
        raise ConfigError(f"{file}: 'include' must be a list of file paths")
    return entries


def _include_location(entry: str, declared_in: Path, root: Path) -> Path:
    beside_declaring = declared_in.parent / entry
    beside_root = root.parent / entry
    if beside_declaring.exists() or not beside_root.exists():
        return beside_declaring
    return beside_root


def _check_model_list(data: Mapping, path: Path) -> None:
    if "model_list" not in data:
        raise ConfigError(f"{path}: no model_list; pass the config the proxy runs with (it lists its deployments)")
    model_list = data["model_list"]
    if not isinstance(model_list, list):
        raise ConfigError(f"{path}: model_list is a {type(model_list).__name__}, not a list of deployments")
    for index, entry in enumerate(model_list):
        where = f"{path}: model_list[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} is a {type(entry).__name__}; each deployment is a mapping with model_name")
        name = entry.get("model_name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where} has no model_name; every deployment needs model_name and litellm_params.model")
        params = entry.get("litellm_params")
        model = params.get("model") if isinstance(params, Mapping) else None
        if not isinstance(model, str) or not model:
            raise ConfigError(
                f"{where} ({name}) has no litellm_params.model; every deployment needs model_name and litellm_params.model"
            )


def _warnings(data: Mapping) -> list[str]:
    """Survivable oddities: LiteLLM starts anyway, but rows may resolve differently than the operator expects."""
    model_list = data["model_list"]
    warnings: list[str] = []
    names = {entry["model_name"] for entry in model_list}
    names |= {
        public
        for entry in model_list
        if isinstance(entry.get("model_info"), Mapping)
        and isinstance(public := entry["model_info"].get("team_public_model_name"), str)
    }

    seen_ids: dict[str, int] = {}
    for index, entry in enumerate(model_list):
        info = entry.get("model_info")
        if info is not None and not isinstance(info, Mapping):
            warnings.append(f"model_list[{index}] ({entry['model_name']}): model_info is not a mapping; ignored")
            continue
        model_id = info.get("id") if info else None
        if model_id is None:
            continue
        if str(model_id) in seen_ids:
            warnings.append(
                f"model_list[{index}] ({entry['model_name']}): model_info.id {model_id!r} repeats "
                f"model_list[{seen_ids[str(model_id)]}]; LiteLLM keeps only the first deployment with an id"
            )
        else:
            seen_ids[str(model_id)] = index

    router_settings = data.get("router_settings")
    aliases_raw = router_settings.get("model_group_alias") if isinstance(router_settings, Mapping) else None
    if aliases_raw is None:
        return warnings
    if not isinstance(aliases_raw, Mapping):
        warnings.append("router_settings.model_group_alias is not a mapping; ignored")
        return warnings
    aliases: dict[str, str] = {}
    for alias, value in aliases_raw.items():
        target = value.get("model") if isinstance(value, Mapping) else value
        if not isinstance(target, str) or not target:
            warnings.append(f"model_group_alias {alias!r}: no target model; LiteLLM ignores it")
            continue
        aliases[str(alias)] = target
    cycles, in_cycles = _alias_cycles(aliases, names)
    patterns = [name for name in names if "*" in name]
    for alias, target in aliases.items():
        if alias in names:
            warnings.append(
                f"model_group_alias {alias!r} shadows the configured model_name {alias!r}; requests go to {target!r}"
            )
        if target in names or any(glob_matches(pattern, target) for pattern in patterns) or alias in in_cycles:
            continue
        if target in aliases:
            warnings.append(
                f"model_group_alias {alias!r} -> {target!r} is another alias; LiteLLM takes one alias step, "
                f"so requests for {alias!r} reach no deployment"
            )
        else:
            warnings.append(f"model_group_alias {alias!r} -> {target!r}: no deployment is named {target!r}")
    warnings.extend(cycles)
    return warnings


def _alias_cycles(aliases: Mapping[str, str], names: set[str]) -> tuple[list[str], set[str]]:
    """Each alias cycle once (`a -> b -> a`) and the aliases on one; LiteLLM takes one step, so they reach nothing.

    A target that is also a configured name ends the walk: one step already reaches its deployments.
    """
    cycles: list[str] = []
    reported: set[str] = set()
    for start in aliases:
        path = [start]
        current = aliases[start]
        while current in aliases and current not in path and current not in names:
            path.append(current)
            current = aliases[current]
        if current in path and current not in names and not reported.intersection(path):
            loop = path[path.index(current) :]
            reported.update(loop)
            cycles.append("model_group_alias cycle: " + " -> ".join([*loop, current]) + "; these aliases reach no deployment")
    return cycles, reported


def spend_log_retention(data: Mapping) -> str | bool | None:
    """How LiteLLM trims old spend logs: the `maximum_spend_logs_retention_period` string, True for a
    size cap (`maximum_spend_logs_size`, which deletes by size, not age), None when it keeps everything."""
    settings = data.get("general_settings")
    if not isinstance(settings, Mapping):
        return None
    period = settings.get("maximum_spend_logs_retention_period")
    if isinstance(period, str) and period.strip():
        return period
    return True if settings.get("maximum_spend_logs_size") else None


def _timezone(data: Mapping) -> str | None:
    settings = data.get("litellm_settings")
    zone = settings.get("timezone") if isinstance(settings, Mapping) else None
    return zone if isinstance(zone, str) and zone else None
