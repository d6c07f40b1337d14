"""Reading a LiteLLM proxy config file: the only I/O behind the catalogue.

Errors that leave nothing to audit are one-line `ConfigError`s naming the file and what to do; anything
LiteLLM itself survives (an alias to nowhere, an alias cycle, a reused id) becomes a warning instead.
`os.environ/` values are left exactly as written: nothing we read from a config needs a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from auditor.errors import ConfigError
from auditor.litellm.catalogue import glob_matches

_INCLUDE_KEY = "include"
_MAX_CONFIG_BYTES = 16 << 20  # far above any proxy config


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A parsed config (includes merged) and what was odd about it."""

    data: dict[str, Any]
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


def _read_mapping(file: Path, root: Path) -> dict[str, Any]:
    """One YAML file as a mapping; an empty file is `{}`, as the proxy reads it."""
    where = str(file) if file == root else f"{file} (included from {root})"
    try:
        with file.open("rb") as handle:  # bounded: a device or a runaway include must not be read forever
            raw = handle.read(_MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        fix = "pass --config PATH or set CONFIG_FILE_PATH" if file == root else f"fix the include: list of {root}"
        raise ConfigError(f"{where}: no such file; {fix}") from None
    except IsADirectoryError:
        raise ConfigError(f"{where}: is a directory; pass the LiteLLM config YAML file itself") from None
    except PermissionError:
        raise ConfigError(f"{where}: not readable (permission denied); check the file's permissions") from None
    except OSError as error:
        raise ConfigError(f"{where}: cannot be read ({error.strerror or error}); check the path") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: larger than {_MAX_CONFIG_BYTES >> 20} MiB; pass the LiteLLM config YAML file itself")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not UTF-8 text; pass the LiteLLM config YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"{where}: not valid YAML{at} ({problem}); fix the syntax and retry") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read; pass the LiteLLM config YAML file itself") from None
    except (ValueError, OverflowError) as error:  # a scalar YAML types but Python cannot build: 2026-13-45, a 5000-digit int
        raise ConfigError(f"{where}: not valid YAML ({_first_line(error)}); fix the value and retry") from None
    except (AttributeError, KeyError, IndexError, TypeError):  # PyYAML's constructors on a scalar not of its explicit tag
        raise ConfigError(
            f"{where}: not valid YAML (a value tagged !!timestamp, !!bool, !!int or !!float is not one); "
            "fix the value or drop the tag"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: the top level is {_a(data)}, not a mapping; "
            "a LiteLLM config is a mapping with model_list, router_settings, ..."
        )
    _check_values(data, where)
    return data


_MAX_EXPANDED_VALUES = 1_000_000  # a proxy with thousands of deployments holds ~100,000
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_values(root: dict[str, Any], where: str) -> None:
    """Refuse what YAML parses but nothing can use: a value that contains itself (`&a [*a]`), aliases that
    expand past _MAX_EXPANDED_VALUES (nine nested lists of nine aliases are 9**9 values in a dozen lines,
    and the proxy's walkers, like ours, visit every use), and a lone surrogate escape ("\\ud800"), which
    is no character: it cannot be printed, hashed into a deployment id or sent to Redis.

    Iterative, so depth is no problem; each shared value is walked once and counted once per use."""
    sizes: dict[int, int] = {}
    on_path = {id(root)}
    stack: list[list[Any]] = [[root, iter(_children(root)), 1]]
    while stack:
        frame = stack[-1]
        child = next(frame[1], _END)
        if child is _END:
            stack.pop()
            on_path.discard(id(frame[0]))
            sizes[id(frame[0])] = frame[2]
            if stack:
                stack[-1][2] += frame[2]
        elif not isinstance(child, (dict, list)):
            frame[2] += 1
            if isinstance(child, str) and _SURROGATE.search(child):
                shown = child.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:60]
                raise ConfigError(
                    f'{where}: the string "{shown}" holds a lone surrogate escape, which is no character; fix that \\u escape'
                )
        elif id(child) in sizes:
            frame[2] += sizes[id(child)]
        elif id(child) in on_path:
            raise ConfigError(
                f"{where}: a YAML alias is used inside its own anchor (&name ... *name), so a value contains "
                "itself; remove that alias"
            )
        else:
            on_path.add(id(child))
            stack.append([child, iter(_children(child)), 1])
        if frame[2] > _MAX_EXPANDED_VALUES:
            raise ConfigError(
                f"{where}: its YAML aliases expand to more than {_MAX_EXPANDED_VALUES:,} values (an alias bomb); "
                "write the values out instead of nesting aliases"
            )


_END = object()


def _children(value: object) -> list[Any]:
    """A mapping's keys and values, a list's items."""
    return (
        [item for pair in value.items() for item in pair] if isinstance(value, dict) else value if isinstance(value, list) else []
    )


def _first_line(error: Exception) -> str:
    """The gist of a Python error about a value: its first line up to any advice after a `;`."""
    text = str(error).splitlines()
    return text[0].split(";")[0][:120] if text else type(error).__name__


_YAML_KINDS = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    type(None): "null",
    bytes: "binary data",
    set: "a set",
    date: "a date",
    datetime: "a timestamp",
}


def _a(value: object) -> str:
    """`a mapping`, `an integer`, `null`: what a YAML value is, in YAML's words, for a message."""
    return _YAML_KINDS.get(type(value), f"a {type(value).__name__}")


def _merge_includes(config: dict[str, Any], root: Path) -> dict[str, Any]:
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


def _include_entries(config: Mapping[str, Any], file: Path) -> list[str]:
    entries = config.get(_INCLUDE_KEY)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigError(f"{file}: 'include' is {_a(entries)}, not a list of file paths; write include: [other.yaml, ...]")
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry:
            raise ConfigError(f"{file}: include[{index}] is {_a(entry) if entry != '' else 'empty'}, not a file path")
    return entries


def _include_location(entry: str, declared_in: Path, root: Path) -> Path:
    beside_declaring = declared_in.parent / entry
    beside_root = root.parent / entry
    if beside_declaring.exists() or not beside_root.exists():
        return beside_declaring
    return beside_root


def _check_model_list(data: Mapping[str, Any], path: Path) -> None:
    if "model_list" not in data:
        raise ConfigError(f"{path}: no model_list; pass the config the proxy runs with (it lists its deployments)")
    model_list = data["model_list"]
    if not isinstance(model_list, list):
        raise ConfigError(f"{path}: model_list is {_a(model_list)}, not a list of deployments")
    for index, entry in enumerate(model_list):
        where = f"{path}: model_list[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} is {_a(entry)}; each deployment is a mapping with model_name")
        name = entry.get("model_name")
        if name is not None and not isinstance(name, str):
            raise ConfigError(f'{where}: model_name is {_a(name)}, not a name; quote it (model_name: "...")')
        if not name:
            raise ConfigError(f"{where} has no model_name; every deployment needs model_name and litellm_params.model")
        params = entry.get("litellm_params")
        model = params.get("model") if isinstance(params, Mapping) else None
        if not isinstance(model, str) or not model:
            raise ConfigError(
                f"{where} ({name}) has no litellm_params.model; every deployment needs model_name and litellm_params.model"
            )


def _warnings(data: Mapping[str, Any]) -> list[str]:
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
            warnings.append(f"model_group_alias {alias!r} shadows the configured model_name {alias!r}; requests go to {target!r}")
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


def spend_log_retention(data: Mapping[str, Any]) -> str | bool | None:
    """How LiteLLM trims old spend logs: the `maximum_spend_logs_retention_period` string, True for a
    size cap (`maximum_spend_logs_size`, which deletes by size, not age), None when it keeps everything."""
    settings = data.get("general_settings")
    if not isinstance(settings, Mapping):
        return None
    period = settings.get("maximum_spend_logs_retention_period")
    if isinstance(period, str) and period.strip():
        return period
    return True if settings.get("maximum_spend_logs_size") else None


def _timezone(data: Mapping[str, Any]) -> str | None:
    return litellm_setting(data, "timezone")


def general_setting_on(data: Mapping[str, Any] | None, name: str) -> bool:
    """A `general_settings` flag LiteLLM tests with `is True` (apply_user_budget_to_team_keys)."""
    settings = data.get("general_settings") if isinstance(data, Mapping) else None
    return isinstance(settings, Mapping) and settings.get(name) is True


def litellm_setting(data: Mapping[str, Any] | None, name: str) -> str | None:
    """A non-empty string under `litellm_settings` (timezone, max_end_user_budget_id), else None."""
    settings = data.get("litellm_settings") if isinstance(data, Mapping) else None
    value = settings.get(name) if isinstance(settings, Mapping) else None
    return value if isinstance(value, str) and value else None
