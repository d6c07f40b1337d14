"""Which model group a spend row belongs to, and which `model_max_budget` entry governs a model. Pure.

A spend row names its model up to three ways (`model_group`, `model_id`, `model`), each trustworthy to a
different degree depending on the LiteLLM version that wrote it (semantics.md (d), (f)). `resolve` takes
the first rule that applies, most authoritative first, and says which rule and which config entry
decided, so a surprising attribution can be traced. It never guesses between groups: several equally
good matches are reported as ambiguous.

The budget half mirrors LiteLLM 1.110.2 `proxy/hooks/model_max_budget_limiter.py::resolve_model_budget`
(see `docs/differences-from-litellm.md`, section "Resolver", for where and why we differ).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, NamedTuple

from auditor.litellm.budgets import BudgetEntry, BudgetProblem
from auditor.litellm.catalogue import GLOB_WILDCARD, Catalogue, Deployment, glob_matches, without_first_segment

Status = Literal["resolved", "ambiguous", "unresolved"]
Rule = Literal["model_group", "model_group_alias", "model_id", "deployment", "group_name", "normalised", "wildcard", "unresolved"]

# semantics.md (f) and llms/bedrock/common_utils.py; lower case, as `normalise_model_name` compares.
CROSS_REGION_PREFIXES = ("us-gov", "global", "apac", "us", "eu", "jp", "au")
BEDROCK_VENDORS = frozenset(
    {
        # the vendors of every model LiteLLM 1.110.2's cost map prices as Bedrock
        "ai21", "amazon", "anthropic", "cohere", "deepseek", "google", "meta", "minimax", "mistral", "moonshot",
        "moonshotai", "nvidia", "openai", "qwen", "stability", "twelvelabs", "writer", "xai", "zai",
    }
)  # fmt: skip
# Inference-profile prefixes a Bedrock base may still carry (LiteLLM strips only the first, and not `in.`).
_PROFILE_PREFIXES = frozenset({*CROSS_REGION_PREFIXES, "in"})
# LiteLLM's `get_all_bedrock_regions()` (AmazonBedrockGlobalConfig), for `bedrock/<region>/<model>` paths.
BEDROCK_REGIONS = frozenset(
    {
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "us-gov-east-1", "us-gov-west-1",
        "eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-central-2", "eu-south-1", "eu-south-2",
        "eu-north-1", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ap-south-1", "ap-south-2",
        "ap-southeast-1", "ap-southeast-2", "ca-central-1", "sa-east-1",
    }
)  # fmt: skip
# `strip_bedrock_routing_prefix`: tried in this order, each at most once.
_BEDROCK_ROUTE_PREFIXES = (
    "bedrock/", "chat_completions/", "converse/", "invoke/", "openai/", "mantle/", "nova-2/", "nova/",
)  # fmt: skip
_BEDROCK_MANTLE = "bedrock_mantle/"
_BEDROCK_THROUGHPUT = re.compile(r"(:\d+):\d+k$")
_BEDROCK_CONTEXT = re.compile(r"\[\w+\]$")

_THROUGHPUT = re.compile(r":\d+k$")
_VERSION_SUFFIX = re.compile(r"(?:-v\d+(?::\d+)?|:\d+)$")


# --------------------------------------------------------------------------------------------------
# Spend rows -> model groups


@dataclass(frozen=True, slots=True)
class Resolution:
    """The group a row belongs to, and why. `candidates` lists the groups an ambiguous row could be."""

    status: Status
    group: str | None
    rule: Rule
    decided_by: str  # the config entry / table row / name that decided, for a human
    candidates: tuple[str, ...] = ()
    # The proxy-level router_settings.model_group_alias the row's model_group names. LiteLLM gates and charges the
    # alias name itself, not its target group (model_max_budget_limiter._requested_model_name), so budgets follow it.
    alias: str | None = None

    @property
    def resolved_group(self) -> str | None:
        """The group when the row resolved to one; None when it is ambiguous or unresolved."""
        return self.group if self.status == "resolved" else None

    @property
    def budget_name(self) -> str | None:
        """The name LiteLLM's limiter resolves budget entries for: the alias as called, else the group."""
        return self.alias or self.group


class Resolver:
    """Resolves (model, model_group, model_id) triples against one catalogue, each distinct triple once.

    Spend tables hold millions of rows but a few hundred distinct triples: callers resolve triples, never rows.
    """

    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self._normalised = _normalised_index(catalogue)
        self._memo: dict[tuple[str | None, str | None, str | None], Resolution] = {}

    def resolve(self, model: str | None, model_group: str | None, model_id: str | None) -> Resolution:
        key = (model or None, model_group or None, model_id or None)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._resolve(*key)
        return found

    __call__ = resolve

    def _resolve(self, model: str | None, model_group: str | None, model_id: str | None) -> Resolution:
        if model_group is not None:
            return self._by_model_group(model_group)
        if model_id is not None and (deployment := self.catalogue.by_id.get(model_id)) is not None:
            if deployment not in self.catalogue.wildcard_routes:
                return _resolved(deployment.public_name, "model_id", f"model_id {model_id} = {_describe(deployment)}")
            if model is not None and glob_matches(deployment.model_name, model):  # the router serves it as requested
                return _resolved(model, "wildcard", f"model_id {model_id} is wildcard route {_describe(deployment)}")
        if model is None:
            why = f"model_id {model_id} matches no deployment and the row names no model" if model_id else ""
            return _unresolved(why or "the row names no model, model_group or model_id")
        return (
            self._by_deployment(model)
            or self._by_name(model)
            or self._by_wildcard(model, specific_only=True)
            or self._by_normalised(model)
            or self._by_wildcard(model, specific_only=False)
            or _unresolved(f"no configured group, alias, deployment or id matches {model!r}")
        )

    def _by_model_group(self, model_group: str) -> Resolution:
        """The router's own record of the group called. An alias maps to its group, a team's internal name to its public one."""
        catalogue = self.catalogue
        target = catalogue.alias_target(model_group)
        if target is not None:
            group = catalogue.internal_names.get(target, target)
            found = _resolved(group, "model_group_alias", f"router_settings.model_group_alias {model_group!r} -> {target!r}")
            return replace(found, alias=model_group)
        if model_group in catalogue.internal_names:
            group = catalogue.internal_names[model_group]
            deployment = catalogue.deployments_by_group[group][0]
            return _resolved(group, "model_group", f"team model {model_group!r} published as {group!r} ({_describe(deployment)})")
        if model_group in catalogue.deployments_by_group:
            deployment = catalogue.deployments_by_group[model_group][0]
            return _resolved(model_group, "model_group", f"row model_group = {_describe(deployment)}")
        route = _best_route(catalogue.wildcard_routes, model_group)
        if route is not None:
            return _resolved(model_group, "wildcard", f"row model_group served by wildcard route {_describe(route)}")
        return _resolved(model_group, "model_group", f"row model_group {model_group!r} as recorded (not in the catalogue)")

    def _by_deployment(self, model: str) -> Resolution | None:
        """The row's model is a configured `litellm_params.model`, possibly as LiteLLM <= 1.80 logged it."""
        catalogue = self.catalogue
        groups = catalogue.groups_by_deployment.get(model, frozenset()) | catalogue.groups_by_bare_deployment.get(
            model, frozenset()
        )
        bare = without_first_segment(model)
        if bare is not None and model.startswith("bedrock/") and "/" not in bare:
            # 1.81+ logs `bedrock/<id>` for a Bedrock deployment configured as a bare `<id>`
            groups |= catalogue.groups_by_deployment.get(bare, frozenset())
        if not groups:
            return None
        if len(groups) > 1:
            return _ambiguous(groups, "deployment", f"deployment {model!r} is shared by {len(groups)} groups")
        (group,) = groups
        deployments = catalogue.deployments_by_group[group]
        deployment = next((d for d in deployments if d.model in (model, bare) or _bare(d) == model), deployments[0])
        return _resolved(group, "deployment", f"deployment {deployment.model!r} of {_describe(deployment)}")

    def _by_name(self, model: str) -> Resolution | None:
        """The row's model is a group name, a router alias, a team model's internal name or a key alias."""
        catalogue = self.catalogue
        if model in catalogue.deployments_by_group:
            return _resolved(model, "group_name", f"group name = {_describe(catalogue.deployments_by_group[model][0])}")
        if model in catalogue.internal_names:
            group = catalogue.internal_names[model]
            return _resolved(group, "group_name", f"team model {model!r} published as {group!r}")
        target = catalogue.alias_target(model)
        if target is not None:
            group = catalogue.internal_names.get(target, target)
            return _resolved(group, "group_name", f"router_settings.model_group_alias {model!r} -> {target!r}")
        target = catalogue.key_aliases.get(model)
        if target is not None:
            routed = catalogue.alias_target(target) or target
            group = catalogue.internal_names.get(routed, routed)
            return _resolved(group, "group_name", f"key alias {model!r} -> {target!r}")
        return None

    def _by_wildcard(self, model: str, *, specific_only: bool) -> Resolution | None:
        """A wildcard route serves the requested name under that name. `*` alone is tried after normalisation."""
        routes = [d for d in self.catalogue.wildcard_routes if not specific_only or d.model_name.strip(GLOB_WILDCARD)]
        route = _best_route(routes, model)
        if route is None:
            return None
        return _resolved(model, "wildcard", f"wildcard route {_describe(route)}")

    def _by_normalised(self, model: str) -> Resolution | None:
        key = normalise_model_name(model)
        matches = self._normalised.get(key)
        if not matches:
            return None
        if len(matches) > 1:
            return _ambiguous(frozenset(matches), "normalised", f"{model!r} normalises to {key!r}, like {len(matches)} groups")
        ((group, how),) = matches.items()
        return _resolved(group, "normalised", f"{model!r} normalises to {key!r}, like {how}")


@lru_cache(maxsize=16)
def _resolver_for(catalogue: Catalogue) -> Resolver:
    return Resolver(catalogue)


def resolve(catalogue: Catalogue, model: str | None, model_group: str | None, model_id: str | None) -> Resolution:
    """Resolve one triple; memoised per catalogue (by identity) and per triple."""
    return _resolver_for(catalogue).resolve(model, model_group, model_id)


def normalise_model_name(name: str) -> str:
    """The bare model a decorated name refers to, for matching only (not a name LiteLLM uses).

    Drops, in order: case; ARN and provider/route/region paths (last `/` segment); `@version`;
    `[1m]`-style context and `:18k`-style throughput suffixes; cross-region (`us.`) and Bedrock vendor
    (`anthropic.`) prefixes; one version suffix (`-v1:0`, `-v2`, `:0`).
    """
    text = name.strip().lower()
    text = text.rsplit("/", 1)[-1]
    text = text.split("@", 1)[0] or text
    text = _BEDROCK_CONTEXT.sub("", text)
    text = _THROUGHPUT.sub("", text)
    head, dot, rest = text.partition(".")
    if dot and rest and head in CROSS_REGION_PREFIXES:
        text = rest
        head, dot, rest = text.partition(".")
    if dot and rest and head in BEDROCK_VENDORS:
        text = rest
    return _VERSION_SUFFIX.sub("", text) or text


def _normalised_index(catalogue: Catalogue) -> Mapping[str, Mapping[str, str]]:
    """Normalised name -> {group: what matched}, over group names, aliases and deployment strings."""
    index: dict[str, dict[str, str]] = {}

    def add(name: str, group: str, how: str) -> None:
        if GLOB_WILDCARD not in name:
            index.setdefault(normalise_model_name(name), {}).setdefault(group, how)

    for group, deployments in catalogue.deployments_by_group.items():
        add(group, group, f"group {group!r}")
        for deployment in deployments:
            if deployment.model_name != group:
                add(deployment.model_name, group, f"team model {deployment.model_name!r} of {group!r}")
            if deployment.model is not None:
                add(deployment.model, group, f"deployment {deployment.model!r} of {_describe(deployment)}")
    for alias, target in catalogue.group_aliases.items():
        add(alias, catalogue.internal_names.get(target, target), f"alias {alias!r} -> {target!r}")
    return index


def _best_route(routes: Iterable[Deployment], name: str) -> Deployment | None:
    """The most specific wildcard route matching `name`, by the same precedence LiteLLM orders glob budgets."""
    matching = [route for route in routes if glob_matches(route.model_name, name)]
    return max(matching, key=lambda route: glob_precedence(route.model_name), default=None)


def _bare(deployment: Deployment) -> str | None:
    return without_first_segment(deployment.model) if deployment.model else None


def _describe(deployment: Deployment) -> str:
    return f"{deployment.model_name!r} ({deployment.source})"


def _resolved(group: str, rule: Rule, decided_by: str) -> Resolution:
    return Resolution(status="resolved", group=group, rule=rule, decided_by=decided_by)


def _ambiguous(groups: frozenset[str], rule: Rule, decided_by: str) -> Resolution:
    return Resolution(status="ambiguous", group=None, rule=rule, decided_by=decided_by, candidates=tuple(sorted(groups)))


def _unresolved(decided_by: str) -> Resolution:
    return Resolution(status="unresolved", group=None, rule="unresolved", decided_by=decided_by)


# --------------------------------------------------------------------------------------------------
# Models -> the `model_max_budget` entry that governs them (LiteLLM 1.109+)


class Consideration(NamedTuple):
    """One entry LiteLLM looks at for a model, in its order; the first usable one governs."""

    entry: str
    why: str
    usable: bool


def budget_candidates(name: str) -> tuple[str, ...]:
    """Names a budget entry may be keyed under for `name`, most specific first (LiteLLM `_budget_model_candidates`).

    The name; its last `/` segment; and for a Bedrock model its base model (`get_bedrock_base_model`:
    route prefixes, ARN path, cross-region prefix, `:NNk` and `[1m]` stripped, `-v1:0` kept) and that
    base without its vendor. Deliberate difference: LiteLLM adds the Bedrock pair only when its cost
    map prices the base as Bedrock; we have no cost map and require the base to start with a known
    Bedrock vendor (`anthropic.`, `amazon.`, ...), optionally under `bedrock_mantle/[<region>/]` or
    after an inference-profile prefix LiteLLM left in place (`bedrock/us-west-2/us.amazon...`, `in.`).
    """
    return tuple(dict.fromkeys((name, name.split("/")[-1], *_bedrock_candidates(name))))


def bedrock_base_model(name: str) -> str:
    """LiteLLM's `get_bedrock_base_model`, reimplemented: the Bedrock model id without routing decorations."""
    head = name
    for prefix in ("bedrock/converse/", "bedrock/", "converse/"):
        if head.startswith(prefix):
            head = head[len(prefix) :]
            break
    if head.startswith("nova-2/"):
        return "amazon.nova-2-custom"
    if head.startswith("nova/"):
        return "amazon.nova-custom"
    model = name
    for prefix in _BEDROCK_ROUTE_PREFIXES:
        if model.startswith(prefix):
            model = model[len(prefix) :]
    if "arn" in model.lower():
        model = model.split("/")[-1]
    model = _BEDROCK_THROUGHPUT.sub(r"\1", model)
    model = _BEDROCK_CONTEXT.sub("", model)
    region, dot, rest = model.partition(".")
    if dot and region in CROSS_REGION_PREFIXES:
        return rest
    region, slash, rest = model.partition("/")
    if slash and region in BEDROCK_REGIONS:
        return rest
    return model


def _bedrock_candidates(name: str) -> tuple[str, ...]:
    base = bedrock_base_model(name)
    if not _has_bedrock_vendor(base):
        return ()
    _, _, without_vendor = base.partition(".")
    return (base, without_vendor) if without_vendor else (base,)


def _has_bedrock_vendor(base: str) -> bool:
    """Our stand-in for LiteLLM's "priced as Bedrock" gate: `<vendor>.<model>`, maybe under `bedrock_mantle/`."""
    if base.startswith(_BEDROCK_MANTLE):
        base = base[len(_BEDROCK_MANTLE) :]
        region, slash, rest = base.partition("/")
        if slash and region in BEDROCK_REGIONS:
            base = rest
    vendor, dot, model = base.partition(".")
    if dot and vendor in _PROFILE_PREFIXES:  # a prefix LiteLLM kept: `us-west-2/us.amazon.x`, `in.moonshotai.x`
        vendor, dot, model = model.partition(".")
    return bool(dot and model) and vendor in BEDROCK_VENDORS


def glob_precedence(pattern: str) -> tuple[int, int, str]:
    """LiteLLM `_glob_precedence`: more literal characters, then fewer `*`; sorted descending, so ties go to the larger name."""
    wildcards = pattern.count(GLOB_WILDCARD)
    return len(pattern) - wildcards, -wildcards, pattern


def explain_governing(
    name: str, entries: Mapping[str, BudgetEntry | BudgetProblem], access_groups: frozenset[str]
) -> tuple[Consideration, ...]:
    """Every entry LiteLLM 1.110.2 would consider for `name`, in its order (`_governing_entry_names`)."""
    return tuple(
        Consideration(entry=entry, why=why, usable=isinstance(entries[entry], BudgetEntry))
        for entry, why in _governing_entry_names(name, entries, access_groups)
    )


def governing_entry(
    name: str, entries: Mapping[str, BudgetEntry | BudgetProblem], access_groups: frozenset[str]
) -> BudgetEntry | None:
    """The entry whose counter LiteLLM charges and enforces for `name`, or None: the first usable one considered.

    `access_groups` are the access groups serving `name` (`Catalogue.access_groups_of`), excluding any
    named like a served model, exactly as LiteLLM's `model_access_groups` callable returns them.
    """
    for entry, _ in _governing_entry_names(name, entries, access_groups):
        value = entries[entry]
        if isinstance(value, BudgetEntry):
            return value
    return None


def _governing_entry_names(name: str, entries: Mapping[str, object], access_groups: frozenset[str]) -> Iterator[tuple[str, str]]:
    """Exact candidates in order; then access-group entries, alphabetical; then matching globs by precedence."""
    candidates = budget_candidates(name)
    reasons = _candidate_reasons(name, candidates)
    for candidate in candidates:
        if candidate in entries:
            yield candidate, reasons[candidate]
    for entry in sorted(e for e in entries if GLOB_WILDCARD not in e and e not in candidates):
        if entry in access_groups:
            yield entry, f"access group {entry!r} serves {name!r}"
    globs = (e for e in entries if GLOB_WILDCARD in e and any(glob_matches(e, c) for c in candidates))
    for entry in sorted(globs, key=glob_precedence, reverse=True):
        matched = next(c for c in candidates if glob_matches(entry, c))
        yield entry, f"glob matches {matched!r}"


def _candidate_reasons(name: str, candidates: tuple[str, ...]) -> dict[str, str]:
    last, base = name.split("/")[-1], bedrock_base_model(name)
    reasons: dict[str, str] = {}
    for candidate in candidates:
        if candidate == name:
            reasons[candidate] = "exact model name"
        elif candidate == last:
            reasons[candidate] = f"last '/' segment of {name!r}"
        elif candidate == base:
            reasons[candidate] = f"Bedrock base model of {name!r}"
        else:
            reasons[candidate] = f"Bedrock base model of {name!r} without its vendor"
    return reasons
