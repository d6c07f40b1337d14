"""Who holds a per-model budget, and which of its entries LiteLLM charges a request to.

An entity (key, team, user, end user, team member) with its parsed model_max_budget; the entry that governs a
logged model for it (team entries replaced by the requesting key's own, as LiteLLM 1.109 does); --key selection.
Shared by the scan's passes, explain and backfill.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from auditor.audit import shared_windows
from auditor.errors import InputError
from auditor.ledger import budget_holders, queries
from auditor.litellm.budgets import BudgetEntry, BudgetProblem, parse_model_max_budget
from auditor.litellm.catalogue import Catalogue
from auditor.litellm.eras import Era
from auditor.litellm.resolver import Resolver, budget_candidates, governing_entry

SCOPES = ("key", "team", "user", "end_user", "team_member")


@dataclass
class EntityBudgets:
    """One entity's per-model budget at one scope: usable entries and the ones LiteLLM ignores."""

    scope: str
    entity_id: str  # as LiteLLM keys its counters
    alias: str | None
    deleted: bool
    source: str  # where model_max_budget came from
    stream_id: str | tuple[str, str]  # how its spend-log rows are selected
    entries: dict[str, BudgetEntry] = field(default_factory=dict)
    problems: list[BudgetProblem] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.entity_id


def entity_budgets(holder: budget_holders.Holder) -> EntityBudgets:
    entity = holder.entity_id
    entity_id = queries.team_member_entity_id(*entity) if isinstance(entity, tuple) else entity
    budgets = EntityBudgets(holder.scope, entity_id, holder.alias, holder.deleted, holder.budget_source, entity)
    for name, parsed in parse_model_max_budget(holder.model_max_budget).items():
        if isinstance(parsed, BudgetEntry):
            budgets.entries[name] = parsed
        else:
            budgets.problems.append(parsed)
    return budgets


def key_budgets(row: budget_holders.KeyRow) -> EntityBudgets:
    return entity_budgets(budget_holders.key_holder(row))


def team_entries(group: str, team: Mapping[str, BudgetEntry], key: Mapping[str, BudgetEntry]) -> Mapping[str, BudgetEntry]:
    """LiteLLM 1.109: a key entry named after the model that spend-gates it replaces the team's entry of
    that name for the key's requests; the team's group and glob entries still apply."""
    candidates = budget_candidates(group)
    named = {name: key[name] for name in candidates if name in key}
    replacing = governing_entry(group, named, frozenset()) if named else None
    if replacing is None or not replacing.enforced:
        return team
    return {name: entry for name, entry in team.items() if name not in candidates}


def governed_charges(eb: EntityBudgets, charges, resolutions: Resolver, catalogue: Catalogue, keys_entries):
    """Each charge of one entity with its model group and the budget entry LiteLLM charges it to; charges no
    entry governs, or whose model cannot be placed, are passed over. Decided once per logged model (and, for a
    team, per key): this runs once per charged row, so a row costs one dict lookup."""
    placed: dict[tuple[str, str, str, str], tuple[str, BudgetEntry] | None] = {}
    per_key = eb.scope == "team"
    for charge in charges:
        memo = (charge.model, charge.model_group, charge.model_id, charge.api_key if per_key else "")
        place = placed.get(memo, False)
        if place is False:
            place = placed[memo] = place_charge(eb, charge, resolutions, catalogue, keys_entries)
        if place is not None:
            yield charge, place[0], place[1]


def place_charge(
    eb: EntityBudgets, charge, resolutions: Resolver, catalogue: Catalogue, keys_entries
) -> tuple[str, BudgetEntry] | None:
    """The model group of one charge and the entry that governs it for this entity; None when either is missing."""
    resolution = resolutions(charge.model, charge.model_group, charge.model_id)
    if resolution.status != "resolved":
        return None
    entry = entry_for(eb, resolution.budget_name, catalogue, keys_entries.get(charge.api_key, {}))
    return None if entry is None else (resolution.group, entry)


def entry_for(eb: EntityBudgets, name: str, catalogue: Catalogue, key_entries: Mapping[str, BudgetEntry]) -> BudgetEntry | None:
    """The entry LiteLLM's limiter charges a request for `name` to (resolve_model_budget), at the entity's scope;
    for a team, after the requesting key's own entries replaced the team's of the same name."""
    entries = team_entries(name, eb.entries, key_entries) if eb.scope == "team" else eb.entries
    return governing_entry(name, entries, catalogue.access_groups_of(name))


def select_keys(key_rows: list[budget_holders.KeyRow], wanted: tuple[str, ...]) -> tuple[str, ...] | None:
    """--key takes hashes or aliases; an unknown one is a usage error, not an empty scan."""
    if not wanted:
        return None
    by_alias: dict[str, list[str]] = defaultdict(list)
    tokens = {row.token for row in key_rows}
    for row in key_rows:
        if row.key_alias:
            by_alias[row.key_alias].append(row.token)
    chosen: list[str] = []
    for name in wanted:
        if name in tokens:
            chosen.append(name)
        elif name in by_alias:
            chosen.extend(by_alias[name])
        else:
            raise InputError(f"--key {name!r} matches no key hash or key alias in LiteLLM_VerificationToken")
    return tuple(dict.fromkeys(chosen))


def scope_entities(api_key: str, team: str, user: str, end_user: str) -> Iterator[tuple[str, str]]:
    """The entity of every scope a charged row belongs to (its key, team, user, end user, team member)."""
    member = queries.team_member_entity_id(user, team) if user and team else ""
    for scope, entity_id in (("key", api_key), ("team", team), ("user", user), ("end_user", end_user), ("team_member", member)):
        if entity_id:
            yield scope, entity_id


def budgets_in_scope(
    holders: list[budget_holders.Holder], selected: tuple[str, ...] | None, entity, era: Era | None
) -> tuple[list[budget_holders.Holder], dict[tuple[str, str], EntityBudgets], list[str]]:
    """The holders a scan audits (--key: those keys alone, since other scopes would see only part of their spend;
    explain: one entity) and their budgets, limited to the scopes the era's limiter had, with notes on what that
    left out."""
    if selected is not None:
        holders = [h for h in holders if h.scope == "key" and h.entity_id in selected]
    if entity is not None:
        holders = [h for h in holders if (h.scope, h.entity_id) == entity]
    budgets = {(b.scope, b.entity_id): b for b in map(entity_budgets, holders)}
    notes: list[str] = []
    if era is not None:
        budgets, notes = shared_windows.in_era(budgets, era)
    return holders, budgets, notes
