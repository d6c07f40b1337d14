"""What the proxy serves: deployments from the LiteLLM config and `LiteLLM_ProxyModelTable`, as plain data.

Built once per run by `build_catalogue`; the resolver only reads it. Nothing here resolves `os.environ/`
references or decrypts anything: the names a spend row can carry never need a secret.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType
from typing import Any

GLOB_WILDCARD = "*"
_ENV_REFERENCE = "os.environ/"
# `encrypt_value_helper` output: `v2:gcm:` (AES) or urlsafe base64 of a NaCl box (24-byte nonce + 16-byte MAC + text).
_AES_CIPHERTEXT_PREFIX = "v2:gcm:"
_NACL_CIPHERTEXT = re.compile(r"[A-Za-z0-9_-]{54,}={0,2}")  # >= 41 bytes: >= 56 chars, padded to a multiple of 4


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment the router serves; `model` is None when we cannot read it (encrypted, `os.environ/`)."""

    model_name: str  # the router group it is registered under (team models: an internal name)
    model: str | None  # litellm_params.model, e.g. "vertex_ai/claude-opus-4-6@default"
    model_id: str | None  # model_info.id, the table's model_id, or LiteLLM's generated hash; None if unknowable
    access_groups: tuple[str, ...]
    team_public_model_name: str | None
    base_model: str | None  # model_info.base_model
    source: str  # provenance, e.g. "config.yaml model_list[3]" or "LiteLLM_ProxyModelTable model_id=abc"

    @property
    def public_name(self) -> str:
        """The name callers use and LiteLLM 1.109+ charges budgets under: a team model's public name."""
        public = self.team_public_model_name
        return public if public and GLOB_WILDCARD not in public else self.model_name

    @property
    def is_wildcard_route(self) -> bool:
        """`anthropic/*`, `*`: the router serves any requested name the pattern matches, under that name."""
        return GLOB_WILDCARD in self.model_name


@dataclass(frozen=True, eq=False)
class Catalogue:
    """Everything the resolver may match a spend row against. Compared by identity; lookups are built once."""

    deployments: tuple[Deployment, ...]
    group_aliases: Mapping[str, str]  # router_settings.model_group_alias, alias -> group
    hidden_aliases: frozenset[str]
    key_aliases: Mapping[str, str]  # per-key `aliases` merged, alias -> model
    has_config: bool
    notes: tuple[str, ...]

    @cached_property
    def routes(self) -> tuple[Deployment, ...]:
        """Deployments registered under a concrete group name (not a wildcard pattern)."""
        return tuple(d for d in self.deployments if not d.is_wildcard_route)

    @cached_property
    def wildcard_routes(self) -> tuple[Deployment, ...]:
        return tuple(d for d in self.deployments if d.is_wildcard_route)

    @cached_property
    def groups(self) -> frozenset[str]:
        """Public group names: what a budget entry or a report line is keyed on."""
        return frozenset(d.public_name for d in self.routes)

    @cached_property
    def deployments_by_group(self) -> Mapping[str, tuple[Deployment, ...]]:
        return _frozen_groups((d.public_name, d) for d in self.routes)

    @cached_property
    def internal_names(self) -> Mapping[str, str]:
        """Router group name -> public name, for team models the router registers under an internal name."""
        return MappingProxyType({d.model_name: d.public_name for d in self.routes if d.model_name != d.public_name})

    @cached_property
    def by_id(self) -> Mapping[str, Deployment]:
        """Deployment by id; the first one wins, as LiteLLM skips a deployment whose id it already has."""
        found: dict[str, Deployment] = {}
        for deployment in self.deployments:
            if deployment.model_id is not None:
                found.setdefault(deployment.model_id, deployment)
        return MappingProxyType(found)

    @cached_property
    def groups_by_deployment(self) -> Mapping[str, frozenset[str]]:
        """`litellm_params.model` as configured -> the groups serving it (several: a shared deployment)."""
        return _frozen_sets((d.model, d.public_name) for d in self.routes if d.model is not None)

    @cached_property
    def groups_by_bare_deployment(self) -> Mapping[str, frozenset[str]]:
        """The same without the first `provider/` segment, as LiteLLM <= 1.80 logged `model`."""
        return _frozen_sets(
            (bare, d.public_name) for d in self.routes if d.model is not None and (bare := without_first_segment(d.model))
        )

    @cached_property
    def served_names(self) -> frozenset[str]:
        """Every name the router answers to; an access group named like one of these is not treated as a group."""
        return (
            self.groups
            | frozenset(self.internal_names)
            | frozenset(self.group_aliases)
            | frozenset(d.model_name for d in self.wildcard_routes)
        )

    @cached_property
    def access_group_members(self) -> Mapping[str, frozenset[str]]:
        """Access group -> the names it serves (public group names and wildcard patterns)."""
        return _frozen_sets((group, d.public_name) for d in self.deployments for group in d.access_groups)

    def wildcard_serves(self, name: str) -> bool:
        """Whether a wildcard route (`openai/*`) lets requests name `name` itself."""
        return any(glob_matches(d.model_name, name) for d in self.wildcard_routes)

    def alias_target(self, name: str) -> str | None:
        """One `model_group_alias` step, as the router takes it (no chains)."""
        return self.group_aliases.get(name)

    def access_groups_of(self, name: str) -> frozenset[str]:
        """Access groups serving `name`, minus groups named like a served model, as LiteLLM's limiter asks the router.

        A name is served by deployments registered under it or published under it (team models), by its
        alias target's deployments, and by wildcard routes whose pattern matches it.
        """
        target = self.alias_target(name) or name
        serving = (
            d
            for d in self.deployments
            if d.model_name in (name, target)
            or d.team_public_model_name in (name, target)
            or (d.is_wildcard_route and glob_matches(d.model_name, name))
        )
        groups = frozenset(group for d in serving for group in d.access_groups)
        return groups - self.served_names


def build_catalogue(
    config: Mapping[str, Any] | None,
    proxy_models: Sequence[Mapping[str, Any]],
    key_aliases: Mapping[str, str] = MappingProxyType({}),
    *,
    config_name: str = "config.yaml",
) -> Catalogue:
    """The catalogue from a parsed LiteLLM config (or None) and `LiteLLM_ProxyModelTable` rows as dicts.

    Tolerant by design: the loader has already rejected what cannot be used, and table rows are whatever
    the proxy wrote, so an odd row becomes a note or a deployment with less known, never an exception.
    """
    notes: list[str] = []
    if config is None:
        notes.append("no LiteLLM config given: resolving from the database and the rows themselves")
        config = {}
    config_deployments = tuple(_config_deployments(config.get("model_list"), config_name))
    table_deployments = tuple(_table_deployments(proxy_models))
    aliases, hidden = _group_aliases(_mapping(config.get("router_settings")).get("model_group_alias"))

    unknown_ids = sum(1 for d in config_deployments if d.model_id is None)
    if unknown_ids:
        notes.append(
            f"{unknown_ids} config deployment(s) without model_info.id use os.environ/ values or a list of "
            "organizations: LiteLLM hashes the resolved values into the id, so their rows match by name, not id"
        )
    unreadable = sum(1 for d in table_deployments if d.model is None)
    if unreadable:
        notes.append(
            f"{unreadable} LiteLLM_ProxyModelTable deployment(s) store litellm_params.model encrypted: "
            "they match by model_id and model name only"
        )
    return Catalogue(
        deployments=config_deployments + table_deployments,
        group_aliases=MappingProxyType(aliases),
        hidden_aliases=hidden,
        key_aliases=MappingProxyType({str(k): str(v) for k, v in key_aliases.items() if k and v}),
        has_config=bool(config),
        notes=tuple(notes),
    )


def generated_model_id(model_name: str, litellm_params: Mapping[str, object]) -> str | None:
    """The id LiteLLM's router gives a deployment without `model_info.id`, or None when we cannot know it.

    LiteLLM (`router_api.deployment_id`, formerly `Router._generate_model_id`) hashes with sha256 the
    group name followed by every litellm_params key and value in order: strings as is, dicts as
    `json.dumps`, anything else as `str()`. The proxy resolves every `os.environ/` value first
    (`_check_for_os_environ_vars`), and a list `organization` makes one deployment per organization,
    so with either the hash depends on something we do not have. Nor when LiteLLM's own hashing would
    raise (a YAML `!!binary` key, a lone surrogate escape, an int too long for str()): it cannot start then.
    """
    if _mentions_env(litellm_params) or isinstance(litellm_params.get("organization"), list):
        return None
    parts = [model_name]
    try:
        for key, value in litellm_params.items():
            for item in (key, value):
                if isinstance(item, str):
                    parts.append(item)
                elif isinstance(item, dict):
                    parts.append(json.dumps(item, default=_stable_type_name))
                else:
                    parts.append(str(item))
        return hashlib.sha256("".join(parts).encode()).hexdigest()
    except (TypeError, ValueError, RecursionError):  # ValueError: also UnicodeEncodeError, circular JSON
        return None


def without_first_segment(model: str) -> str | None:
    """`vertex_ai/claude-opus-4-6@default` -> `claude-opus-4-6@default`; None without a `/`."""
    _, slash, rest = model.partition("/")
    return rest if slash and rest else None


def glob_matches(pattern: str, name: str) -> bool:
    """Whole-name match where `*` is the only wildcard (no `?`, no classes), without backtracking.

    Each literal piece between wildcards is taken at its first occurrence: a later one only leaves less
    room for the rest, so greedy-leftmost is exact.
    """
    if GLOB_WILDCARD not in pattern:
        return pattern == name
    pieces = pattern.split(GLOB_WILDCARD)
    head, tail, middle = pieces[0], pieces[-1], pieces[1:-1]
    if len(head) + len(tail) > len(name) or not name.startswith(head) or not name.endswith(tail):
        return False
    position, end = len(head), len(name) - len(tail)
    for piece in middle:
        found = name.find(piece, position, end)
        if found < 0:
            return False
        position = found + len(piece)
    return True


def _config_deployments(model_list: object, config_name: str) -> Iterator[Deployment]:
    if not isinstance(model_list, list):
        return
    for index, entry in enumerate(model_list):
        entry = _mapping(entry)
        model_name = entry.get("model_name")
        params = _mapping(entry.get("litellm_params"))
        info = _mapping(entry.get("model_info"))
        if not isinstance(model_name, str) or not model_name:
            continue
        declared = info.get("id")
        yield Deployment(
            model_name=model_name,
            model=_readable_model(params.get("model"), encrypted_possible=False),
            model_id=_id_text(declared) if declared is not None else generated_model_id(model_name, params),
            access_groups=_strings(info.get("access_groups")),
            team_public_model_name=_string(info.get("team_public_model_name")),
            base_model=_string(info.get("base_model")),
            source=f"{config_name} model_list[{index}]",
        )


def _table_deployments(rows: Sequence[Mapping[str, Any]]) -> Iterator[Deployment]:
    for index, row in enumerate(rows):
        row = _mapping(row)
        model_name = row.get("model_name")
        if not isinstance(model_name, str) or not model_name:
            continue
        params = _json_mapping(row.get("litellm_params"))
        info = _json_mapping(row.get("model_info"))
        model_id = _string(row.get("model_id")) or _string(info.get("id"))
        yield Deployment(
            model_name=model_name,
            model=_readable_model(params.get("model"), encrypted_possible=True),
            model_id=model_id,
            access_groups=_strings(info.get("access_groups")),
            team_public_model_name=_string(info.get("team_public_model_name")),
            base_model=_string(info.get("base_model")),
            source=f"LiteLLM_ProxyModelTable model_id={model_id}" if model_id else f"LiteLLM_ProxyModelTable row {index}",
        )


def _group_aliases(raw: object) -> tuple[dict[str, str], frozenset[str]]:
    """`model_group_alias` values are a group name or `{"model": name, "hidden": bool}`; others are skipped."""
    aliases: dict[str, str] = {}
    hidden: set[str] = set()
    for alias, value in _mapping(raw).items():
        target = value.get("model") if isinstance(value, Mapping) else value
        if not isinstance(alias, str) or not isinstance(target, str) or not target:
            continue
        aliases[alias] = target
        if isinstance(value, Mapping) and value.get("hidden") is True:
            hidden.add(alias)
    return aliases, frozenset(hidden)


def _readable_model(value: object, *, encrypted_possible: bool) -> str | None:
    """The deployment string, unless it is a secret reference or (table rows) ciphertext we will not decrypt."""
    if not isinstance(value, str) or not value or value.startswith(_ENV_REFERENCE):
        return None
    if encrypted_possible and (value.startswith(_AES_CIPHERTEXT_PREFIX) or _looks_like_nacl_box(value)):
        return None
    return value


def _looks_like_nacl_box(value: str) -> bool:
    return len(value) >= 56 and len(value) % 4 == 0 and _NACL_CIPHERTEXT.fullmatch(value) is not None


def _mentions_env(value: object) -> bool:
    if isinstance(value, str):
        return value.startswith(_ENV_REFERENCE)
    if isinstance(value, Mapping):
        return any(_mentions_env(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_mentions_env(item) for item in value)
    return False


def _stable_type_name(value: object) -> str:
    """json.dumps fallback for a non-JSON value, as LiteLLM's id hash writes it."""
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _json_mapping(value: object) -> Mapping[str, Any]:
    """A jsonb column as a mapping; a driver that hands back the JSON text gets it decoded."""
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return _mapping(value)


def _id_text(value: object) -> str | None:
    """A declared `model_info.id` as the router keys it (str()); None when even that fails (a 5000-digit int)."""
    try:
        return str(value)
    except ValueError:
        return None


def _string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        return ()
    return tuple(dict.fromkeys(item for item in value if isinstance(item, str) and item))


def _frozen_groups(pairs: Iterable[tuple[str, Deployment]]) -> Mapping[str, tuple[Deployment, ...]]:
    collected: dict[str, list[Deployment]] = {}
    for key, deployment in pairs:
        collected.setdefault(key, []).append(deployment)
    return MappingProxyType({key: tuple(values) for key, values in collected.items()})


def _frozen_sets(pairs: Iterable[tuple[str, str]]) -> Mapping[str, frozenset[str]]:
    collected: dict[str, set[str]] = {}
    for key, value in pairs:
        collected.setdefault(key, set()).add(value)
    return MappingProxyType({key: frozenset(values) for key, values in collected.items()})
