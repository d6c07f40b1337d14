"""The simulated deployment: the proxy config and every entity LiteLLM stores, drawn from a seed.

Plain data, no LiteLLM import: the engine (tests/litellm_sim/engine.py) feeds it to LiteLLM's own code.
The shape is fixed so every scope and routing case is always present; amounts, periods, zones and traffic
are drawn from the seed.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

ZONES = ("Asia/Kolkata", "Asia/Tokyo", "America/Sao_Paulo")  # non-UTC, no DST change in March 2026
ENTRY_PERIODS = ("1d", "12h", "6h", "2d")
SCALAR_PERIODS = ("1d", "12h", "7d", "1d")
ODD_SCALAR_PERIODS = ("48h", "36h", "90m", "5h", "45m")  # do not divide a day or an hour
WORD_PERIODS = ("daily", "hourly", "30d", "1mo", "24h")  # word aliases and month-long windows

# Each feature switches on one LiteLLM behaviour on top of the baseline deployment, so a test can tell which
# one a false finding comes from. The baseline alone is every scope, budget kind and routing case that needs none.
FEATURES = frozenset(
    {
        "alias_traffic",  # requests name a proxy-level model_group_alias ("opus" -> claude-opus-4-6)
        "keys_without_user_or_team",  # keys with no user_id / team_id: rows with user "" and team_id ""
        "default_end_user_budget",  # end users without budget_id, governed by litellm_settings.max_end_user_budget_id
        "colon_ids",  # a user id and an end-user id containing ':'
        "member_without_row",  # a team member with no LiteLLM_TeamMembership row (the team's team_member_budget_id)
        "cache_hits",  # repeated requests answered from LiteLLM's cache ($0 rows)
        "deleted_key",  # a key deleted half-way (LiteLLM_DeletedVerificationToken)
        "odd_scalar_periods",  # scalar budget_duration 48h / 36h / 90m / 5h / 45m
        "dst",  # litellm_settings.timezone America/New_York across its spring-forward day (2026-03-08)
        "word_periods",  # per-model entries over daily / hourly / 30d / 1mo / 24h
        "unenforced_entries",  # entries the limiter charges but never blocks on (max_budget null or negative)
    }
)


def key_hash(name: str) -> str:
    """The token LiteLLM stores for a virtual key: sha256 of the raw key (proxy/utils.py::hash_token)."""
    return hashlib.sha256(f"sk-sim-{name}".encode()).hexdigest()


@dataclass
class Key:
    name: str  # key_alias
    user_id: str | None
    team_id: str | None
    model_max_budget: dict
    budget_id: str | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    deleted_at: datetime | None = None  # /key/delete at this instant
    end_users: tuple[str, ...] = ()  # end users its requests may carry

    @property
    def token(self) -> str:
        return key_hash(self.name)


@dataclass
class Entity:
    """A user, team or end user row: its per-model budget, scalar budget and (end users) budget_id."""

    id: str
    model_max_budget: dict = field(default_factory=dict)
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_id: str | None = None
    metadata: dict = field(default_factory=dict)


@dataclass
class World:
    seed: int
    features: frozenset[str]
    start: datetime  # naive UTC
    days: int
    timezone: str
    config: dict
    budgets: dict[str, dict]  # LiteLLM_BudgetTable: budget_id -> model_max_budget
    users: dict[str, Entity]
    teams: dict[str, Entity]
    end_users: dict[str, Entity]
    memberships: dict[tuple[str, str], str | None]  # (user_id, team_id) -> budget_id; absent: no row
    team_members_without_row: tuple[tuple[str, str], ...]
    keys: dict[str, Key]
    models: tuple[str, ...]  # what requests name
    default_end_user_budget: str

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    def key(self, name: str) -> Key:
        return self.keys[name]


def _entry(
    rng: random.Random, low: float, high: float, *, legacy_names: bool = False, periods: tuple[str, ...] = ENTRY_PERIODS
) -> dict:
    """One model_max_budget entry; /key/generate stores the names as sent (budget_limit/time_period),
    /budget/new, team and user endpoints store max_budget/budget_duration (semantics.md (c))."""
    limit = round(rng.uniform(low, high), 4)
    period = rng.choice(periods)
    if legacy_names:
        return {"budget_limit": limit, "time_period": period}
    return {"max_budget": limit, "budget_duration": period}


def build_world(seed: int, *, days: int = 4, features: frozenset[str] = FEATURES) -> World:
    unknown = set(features) - FEATURES
    if unknown:
        raise ValueError(f"unknown simulator features: {sorted(unknown)}")
    on = features.__contains__
    rng = random.Random(seed)
    start = datetime(2026, 3, 2) + timedelta(days=rng.randrange(0, 20), hours=rng.randrange(0, 24))
    zone = rng.choice(ZONES)
    if on("dst"):
        start, zone = datetime(2026, 3, 6, rng.randrange(0, 24)), "America/New_York"
    svc_user = "ops:svc" if on("colon_ids") else "ops-svc"
    tenant = "tenant:42" if on("colon_ids") else "tenant-42"
    scalar_periods = ODD_SCALAR_PERIODS if on("odd_scalar_periods") else SCALAR_PERIODS
    entry = partial(_entry, periods=WORD_PERIODS if on("word_periods") else ENTRY_PERIODS)
    config = {
        "model_list": [
            {
                "model_name": "gpt-4o",
                "litellm_params": {"model": "openai/gpt-4o", "api_key": "sk-dummy"},
                "model_info": {"access_groups": ["general"]},
            },
            {
                "model_name": "gpt-4o",
                "litellm_params": {
                    "model": "azure/prod-gpt4o-eastus",
                    "api_key": "dummy",
                    "api_base": "https://example.openai.azure.com",
                    "api_version": "2024-06-01",
                },
                "model_info": {"access_groups": ["general"], "base_model": "azure/gpt-4o"},
            },
            {
                "model_name": "gpt-4o-mini",
                "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-dummy"},
                "model_info": {"access_groups": ["general"]},
            },
            {
                "model_name": "claude-opus-4-6",
                "litellm_params": {
                    "model": "vertex_ai/claude-opus-4-6@default",
                    "vertex_project": "sim",
                    "vertex_location": "us-east5",
                },
            },
            {"model_name": "anthropic/*", "litellm_params": {"model": "anthropic/*", "api_key": "sk-dummy"}},
        ],
        "router_settings": {"model_group_alias": {"opus": "claude-opus-4-6"}},
        "litellm_settings": {"timezone": zone},
        "general_settings": {},
    }
    if on("default_end_user_budget"):
        config["litellm_settings"]["max_end_user_budget_id"] = "bud-eu-default"
    budgets = {
        "bud-key-shared": {"claude-*": entry(rng, 0.05, 0.15)},
        "bud-member-alice": {"gpt-4o-mini": entry(rng, 0.01, 0.04)},
        "bud-member-default": {"gpt-4o-mini": entry(rng, 0.01, 0.04)},
        "bud-eu": {"gpt-4o": entry(rng, 0.03, 0.08)},
        "bud-eu-default": {"gpt-4o-mini": entry(rng, 0.005, 0.02)},
    }
    users = {
        "alice": Entity(
            "alice",
            {"claude-opus-4-6": entry(rng, 0.05, 0.15)},
            max_budget=round(rng.uniform(0.3, 1.5), 2),
            budget_duration=rng.choice(scalar_periods),
        ),
        "bob": Entity("bob"),
        "carol": Entity("carol", max_budget=50.0, budget_duration="7d"),
        svc_user: Entity(svc_user, {"gpt-4o": entry(rng, 0.04, 0.12)}),
        "dave": Entity("dave"),
    }
    teams = {
        "team-a": Entity(
            "team-a",
            {"gpt-4o": entry(rng, 0.08, 0.2)},
            max_budget=round(rng.uniform(0.5, 2.0), 2),
            budget_duration=rng.choice(scalar_periods),
            metadata={"team_member_budget_id": "bud-member-default"},
        ),
        "team-b": Entity("team-b"),
    }
    end_users = {
        "eu-1": Entity("eu-1", budget_id="bud-eu", max_budget=round(rng.uniform(0.2, 1.0), 2)),
        tenant: Entity(tenant, budget_id=None if on("default_end_user_budget") else "bud-eu"),
        "eu-2": Entity("eu-2", budget_id=None if on("default_end_user_budget") else "bud-eu"),
    }
    keys = {
        "alice-a": Key(
            "alice-a",
            "alice",
            "team-a",
            {"gpt-4o": entry(rng, 0.04, 0.1, legacy_names=True)},
            max_budget=round(rng.uniform(0.2, 1.0), 2),
            budget_duration=rng.choice(scalar_periods),
            end_users=("eu-1", tenant),
        ),
        "bob-a": Key("bob-a", "bob", "team-a", {}, budget_id="bud-key-shared", end_users=("eu-2",)),
        "carol": Key(
            "carol",
            "carol",
            None if on("keys_without_user_or_team") else "team-b",
            {"general": entry(rng, 0.05, 0.15, legacy_names=True), "anthropic/*": entry(rng, 0.01, 0.03)},
            end_users=("eu-1", "eu-2"),
        ),
        "svc": Key("svc", svc_user, "team-b", {"claude-opus-4-6": entry(rng, 0.05, 0.12, legacy_names=True)}),
        "anon": Key(
            "anon",
            *((None, None) if on("keys_without_user_or_team") else ("dave", "team-b")),
            {"gpt-4o-mini": entry(rng, 0.01, 0.03, legacy_names=True)},
            max_budget=round(rng.uniform(0.5, 2.0), 2),
            budget_duration="30d",
        ),
        "old": Key(
            "old",
            "carol",
            "team-b",
            {"gpt-4o": entry(rng, 0.05, 0.1, legacy_names=True)},
            deleted_at=start + timedelta(days=days / 2, minutes=rng.randrange(0, 600)) if on("deleted_key") else None,
        ),
    }
    if on("unenforced_entries"):
        keys["svc"].model_max_budget["gpt-4o-mini"] = {"max_budget": None, "budget_duration": "1d"}
        users["dave"].model_max_budget["claude-opus-4-6"] = {"max_budget": -1, "budget_duration": "12h"}
    memberships = {("alice", "team-a"): "bud-member-alice", ("bob", "team-a"): None}
    without_row: tuple[tuple[str, str], ...] = ()
    if on("member_without_row"):
        del memberships[("bob", "team-a")]
        without_row = (("bob", "team-a"),)
    models = ["gpt-4o", "gpt-4o-mini", "claude-opus-4-6", "anthropic/claude-haiku-4-5"]
    if on("alias_traffic"):
        models.append("opus")
    return World(
        seed=seed,
        start=start,
        days=days,
        timezone=zone,
        config=config,
        features=frozenset(features),
        budgets=budgets,
        users=users,
        teams=teams,
        end_users=end_users,
        memberships=memberships,
        team_members_without_row=without_row,
        keys=keys,
        models=tuple(models),
        default_end_user_budget="bud-eu-default",
    )


@dataclass(frozen=True)
class Request:
    n: int
    start: datetime  # naive UTC
    latency: timedelta
    key: str
    model: str
    end_user: str | None
    prompt_tokens: int
    completion_tokens: int
    outcome: str  # "success" | "error" | "cache_repeat" (the same request again, served from cache)

    @property
    def end(self) -> datetime:
        return self.start + self.latency


def draw_traffic(world: World, requests_per_day: int = 60) -> list[Request]:
    """Requests in time order, each finished before the next starts (the limiter sees them in sequence)."""
    rng = random.Random(world.seed * 7919 + 1)
    count = requests_per_day * world.days
    span = world.days * 86400 - 600
    offsets = sorted(rng.sample(range(0, span // 30), count))
    out: list[Request] = []
    names = list(world.keys)
    for n, slot in enumerate(offsets):
        start = world.start + timedelta(seconds=slot * 30 + rng.randrange(0, 5), milliseconds=rng.randrange(0, 1000))
        live = [k for k in names if world.keys[k].deleted_at is None or world.keys[k].deleted_at > start]
        key = world.keys[rng.choice(live)]
        model = rng.choice(world.models)
        end_user = rng.choice(key.end_users) if key.end_users and rng.random() < 0.6 else None
        roll = rng.random()
        repeat = "cache_hits" in world.features and roll < 0.1 and out
        outcome = "error" if roll < 0.05 else "cache_repeat" if repeat else "success"
        out.append(
            Request(
                n,
                start,
                timedelta(seconds=rng.uniform(0.4, 20)),
                key.name,
                model,
                end_user,
                rng.randrange(200, 3000),
                rng.randrange(50, 1500),
                outcome,
            )
        )
    return out
