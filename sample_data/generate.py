#!/usr/bin/env python3
"""Build the sample LiteLLM deployment in sample_data/ — deterministic, standard library only.

    python sample_data/generate.py

Writes, beside this file:
  config.yaml          the proxy's config (deployment names differ from their aliases, as in real ones)
  litellm_tables.json  LiteLLM's tables as rows, exact DDL column names ({table: [row, ...]})
  redis.json           the Redis counters the proxy holds ({key: {"value": str, "ttl_seconds": int|null}})
  expected.json        what a correct scan must find, computed by `reference()` from the rows written
  README.md            the same, for humans (rendered from expected.json, so the two never disagree)

The world: three weeks of traffic (2026-11-01 .. 2026-11-21, UTC) through one proxy. Rows before
2026-11-04 were written by LiteLLM 1.80 (no provider prefix on `model`), later ones by 1.110.
Each scenario is a small function below; its docstring says what it demonstrates. Every scenario
draws from its own random stream (seeded by its name), so changing one leaves the others' rows alone.

`reference()` is a second, deliberately plain computation of the findings (LiteLLM 1.99+ semantics,
see its docstring). It reads only the rows, the config structures and the Redis dump, never the
scenario code's knowledge, and the generator cross-checks it against its own event simulation.
"""

from __future__ import annotations

import calendar
import hashlib
import heapq
import json
import math
import random
import re
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = "litellm-auditor-sample/2026-11"
EPOCH = datetime(1970, 1, 1)
PERIOD_START = datetime(2026, 11, 1)
SNAPSHOT = datetime(2026, 11, 22)  # "now": Redis TTLs are measured from here; every row ends before it
UPGRADE = datetime(2026, 11, 4)  # rows starting before this were written by LiteLLM 1.80
DAYS = [PERIOD_START + timedelta(days=i) for i in range(21)]
TOLERANCE = 0.0001
SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000


def to_ms(dt: datetime) -> int:
    """Naive UTC datetime -> integer milliseconds since the epoch (the DB keeps milliseconds)."""
    return (dt - EPOCH) // timedelta(milliseconds=1)


def ts(ms: int) -> str:
    """Milliseconds -> 'YYYY-MM-DDTHH:MM:SS.mmm', as timestamp(3) without time zone."""
    return (EPOCH + timedelta(milliseconds=ms)).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}"


SNAPSHOT_MS, UPGRADE_MS = to_ms(SNAPSHOT), to_ms(UPGRADE)


# --------------------------------------------------------------------------------------------
# The proxy's configuration
# --------------------------------------------------------------------------------------------

DEPLOYMENTS = [
    {
        "model_name": "claude-opus-4-6",
        "litellm_params": {
            "model": "vertex_ai/claude-opus-4-6@default",
            "vertex_project": "acme-llm-prod",
            "vertex_location": "us-east5",
            "vertex_credentials": "os.environ/VERTEX_CREDENTIALS_JSON",
        },
        "model_info": {"id": "dep-opus-vertex", "access_groups": ["premium"]},
    },
    {
        "model_name": "claude-sonnet-4-5",
        "litellm_params": {
            "model": "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "aws_region_name": "us-east-1",
            "aws_access_key_id": "os.environ/AWS_ACCESS_KEY_ID",
            "aws_secret_access_key": "os.environ/AWS_SECRET_ACCESS_KEY",
        },
        "model_info": {"id": "dep-sonnet-bedrock", "access_groups": ["premium"]},
    },
    {
        "model_name": "claude-sonnet-4-5",
        "litellm_params": {"model": "anthropic/claude-sonnet-4-5-20250929", "api_key": "os.environ/ANTHROPIC_API_KEY"},
        "model_info": {"id": "dep-sonnet-anthropic", "access_groups": ["premium"]},
    },
    {
        "model_name": "gpt-4o",
        "litellm_params": {
            "model": "azure/prod-gpt4o-eastus",
            "api_base": "os.environ/AZURE_API_BASE",
            "api_key": "os.environ/AZURE_API_KEY",
            "api_version": "2024-10-21",
        },
        "model_info": {"id": "dep-gpt4o-azure", "base_model": "azure/gpt-4o"},
    },
    {
        "model_name": "gpt-4o-mini",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "os.environ/OPENAI_API_KEY"},
        "model_info": {"id": "dep-gpt4o-mini-openai"},
    },
    {
        "model_name": "gemini-2.5-pro",
        "litellm_params": {
            "model": "vertex_ai/gemini-2.5-pro",
            "vertex_project": "acme-llm-prod",
            "vertex_location": "us-central1",
            "vertex_credentials": "os.environ/VERTEX_CREDENTIALS_JSON",
        },
        "model_info": {"id": "dep-gemini-pro-vertex"},
    },
    {
        "model_name": "anthropic/*",
        "litellm_params": {"model": "anthropic/*", "api_key": "os.environ/ANTHROPIC_API_KEY"},
        "model_info": {"id": "dep-anthropic-wildcard"},
    },
]

# Added through the UI (`store_model_in_db: true`): lives only in LiteLLM_ProxyModelTable.
DB_MODELS = [
    {
        "model_id": "0f3c9b2e-7d41-4a8e-b5c6-2e91d0a4f7b3",
        "model_name": "mistral-large",
        "litellm_params": {"model": "mistral/mistral-large-latest", "api_key": "os.environ/MISTRAL_API_KEY"},
        "model_info": {"id": "0f3c9b2e-7d41-4a8e-b5c6-2e91d0a4f7b3", "db_model": True, "mode": "chat"},
    },
]

ROUTER_SETTINGS = {
    "routing_strategy": "simple-shuffle",
    "num_retries": 2,
    "timeout": 600,
    "model_group_alias": {"gpt4": "gpt-4o", "opus": {"model": "claude-opus-4-6", "hidden": True}},
    "redis_host": "os.environ/REDIS_HOST",
    "redis_port": "os.environ/REDIS_PORT",
    "redis_password": "os.environ/REDIS_PASSWORD",
}
LITELLM_SETTINGS = {
    "drop_params": True,
    "request_timeout": 600,
    "cache": True,
    "cache_params": {
        "type": "redis",
        "host": "os.environ/REDIS_HOST",
        "port": "os.environ/REDIS_PORT",
        "password": "os.environ/REDIS_PASSWORD",
        "ttl": 3600,
    },
    "enable_redis_auth_cache": True,
}
GENERAL_SETTINGS = {
    "master_key": "os.environ/LITELLM_MASTER_KEY",
    "database_url": "os.environ/DATABASE_URL",
    "store_model_in_db": True,
    "proxy_batch_write_at": 60,
    # No `maximum_spend_logs_retention_period`: LiteLLM keeps every spend log, so the ledger is taken as
    # complete and lifetime `spend` / `total_spend` are compared with it (scenario 23).
}

# USD per token (input, output), as in LiteLLM's cost map.
PRICES = {
    "claude-opus-4-6": (5e-06, 2.5e-05),
    "claude-sonnet-4-5": (3e-06, 1.5e-05),
    "gpt-4o": (2.5e-06, 1e-05),
    "gpt-4o-mini": (1.5e-07, 6e-07),
    "gemini-2.5-pro": (1.25e-06, 1e-05),
    "anthropic/claude-haiku-4-5": (1e-06, 5e-06),
    "mistral-large": (2e-06, 6e-06),
    "ollama/llama3.1:8b": (0.0, 0.0),
}
UNROUTED = "ollama/llama3.1:8b"  # called straight through, configured nowhere: no model_group, no model_id


def _routes() -> dict[str, list[tuple[str, str, str, float]]]:
    """group -> [(deployment string, model_id, custom_llm_provider, weight)]."""
    routes: dict[str, list[tuple[str, str, str, float]]] = {}
    for dep in DEPLOYMENTS + DB_MODELS:
        model = dep["litellm_params"]["model"]
        if "*" in model:
            continue
        weight = 0.6 if model.startswith("bedrock/") else 0.4 if "sonnet" in model else 1.0
        routes.setdefault(dep["model_name"], []).append((model, dep["model_info"]["id"], model.split("/")[0], weight))
    routes["anthropic/claude-haiku-4-5"] = [("anthropic/claude-haiku-4-5", "dep-anthropic-wildcard", "anthropic", 1.0)]
    routes[UNROUTED] = [(UNROUTED, "", "ollama", 1.0)]
    return routes


ROUTES = _routes()


# --------------------------------------------------------------------------------------------
# The world being built
# --------------------------------------------------------------------------------------------

B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

ERRORS = {
    "RateLimitError": ("429", "litellm.RateLimitError: {p}Exception - Resource exhausted. Please retry after some time."),
    "Timeout": ("408", "litellm.Timeout: APITimeoutError - Request timed out."),
    "ContextWindowExceededError": ("400", "litellm.ContextWindowExceededError: prompt is too long for this model"),
    "APIConnectionError": ("500", "litellm.APIConnectionError: {p}Exception - Connection error."),
    "ServiceUnavailableError": ("503", "litellm.ServiceUnavailableError: {p}Exception - Overloaded"),
    "BudgetExceededError": ("429", "LiteLLM Virtual Key: {token}, key_alias: {alias}, exceeded budget for model={model}"),
}
PROVIDER_ERRORS = [
    "RateLimitError",
    "RateLimitError",
    "Timeout",
    "ContextWindowExceededError",
    "APIConnectionError",
    "ServiceUnavailableError",
]

SCENARIOS: list = []


def scenario(number: int, title: str):
    def register(fn):
        SCENARIOS.append((number, title, fn))
        return fn

    return register


class Key:
    def __init__(self, alias, raw, user_id, team_id, model_max_budget, scenario_no, **extra):
        self.alias, self.user_id, self.team_id = alias, user_id, team_id
        self.token = hashlib.sha256(raw.encode()).hexdigest()  # as LiteLLM hashes `sk-...` keys; raw never written
        self.model_max_budget = model_max_budget
        self.scenario = scenario_no
        self.extra = extra


class Limiter:
    """LiteLLM's per-model limiter (1.99+) as an event model, used to *simulate* traffic.

    charge(): a success's cost lands at its end; it opens a window when none is open (or the open
    one has ended), else adds. allows(): the pre-call check, `spend >= limit` blocks.
    """

    def __init__(self, limit: float | None, period_ms: int):
        self.limit, self.period = limit, period_ms
        self.start: int | None = None
        self.costs: list[float] = []

    @property
    def spend(self) -> float:
        return math.fsum(self.costs)

    def open_at(self, t: int) -> bool:
        return self.start is not None and self.start <= t < self.start + self.period

    def charge(self, t: int, cost: float) -> None:
        if self.open_at(t):
            self.costs.append(cost)
        else:
            self.start, self.costs = t, [cost]

    def allows(self, t: int) -> bool:
        return (self.spend if self.open_at(t) else 0.0) < self.limit


def counter_state(rows: list[dict], period_ms: int, at_ms: int) -> tuple[int, float] | None:
    """Replay successes (charged at endTime) into a Limiter; the open window at `at_ms`, if any."""
    lim = Limiter(None, period_ms)
    for r in sorted(rows, key=lambda r: (r["_end"], r["_start"], r["request_id"])):
        if r["_end"] <= at_ms:
            lim.charge(r["_end"], r["spend"])
    return (lim.start, lim.spend) if lim.open_at(at_ms) else None


def last_window(rows: list[dict], period_ms: int) -> tuple[int, float]:
    """The last window of these charges, open or not (a BudgetWindowSpend row outlives its window)."""
    return counter_state(rows, period_ms, max(r["_end"] for r in rows))


class World:
    def __init__(self):
        self.keys: dict[str, Key] = {}
        self.deleted: dict[str, dict] = {}
        self.logs: list[dict] = []
        self.request_ids: set[str] = set()
        self.recent: dict[tuple, list[str]] = {}
        self.tables: dict[str, list[dict]] = {}
        self.redis: dict[str, dict] = {}
        self.scenario_no = 0
        self.notes: dict[int, list[str]] = {}

    def rng(self, name: str) -> random.Random:
        return random.Random(f"{SEED}/{name}")

    def note(self, text: str) -> None:
        self.notes.setdefault(self.scenario_no, []).append(text)

    # keys --------------------------------------------------------------------------------
    def add_key(self, alias, user_id, team_id, model_max_budget, **extra) -> Key:
        raw = "sk-" + hashlib.sha256(f"{SEED}/raw-key/{alias}".encode()).hexdigest()[:22]
        key = Key(alias, raw, user_id, team_id, model_max_budget, self.scenario_no, **extra)
        self.keys[alias] = key
        return key

    def bws(self, entity_id: str, duration: str, start: int, spend: float) -> None:
        """A LiteLLM_BudgetWindowSpend row (1.109+ replicas without Redis share windows through it)."""
        self.tables["LiteLLM_BudgetWindowSpend"].append(
            {
                "entity_type": "model_max_budget",
                "entity_id": entity_id,
                "window_duration": duration,
                "window_start": ts(start),
                "spend": spend,
                "created_at": ts(start + 1_204),
                "updated_at": ts(min(SNAPSHOT_MS - 1, start + DAY) - 17_000),
            }
        )

    # spend log rows ----------------------------------------------------------------------
    def _new_id(self, rng: random.Random, model: str, provider: str) -> str:
        def b62(n):
            return "".join(rng.choice(B62) for _ in range(n))

        if provider == "vertex_ai" and "claude" in model:
            rid = "msg_vrtx_01" + b62(22)
        elif provider == "bedrock":
            rid = "msg_bdrk_01" + b62(22)
        elif provider == "anthropic":
            rid = "msg_01" + b62(22)
        elif provider == "vertex_ai":
            rid = b62(22)
        elif provider == "mistral":
            rid = "%032x" % rng.getrandbits(128)
        else:
            rid = "chatcmpl-" + b62(29)
        return rid

    def _uuid(self, rng: random.Random) -> str:
        h = "%032x" % rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) % 4]}{h[17:20]}-{h[20:]}"

    def _base_row(self, key: Key | None, start: int, end: int, end_user: str, status: str) -> dict:
        assert start < end < SNAPSHOT_MS and start >= to_ms(PERIOD_START)
        return {
            "api_key": key.token if key else "",
            "call_type": "acompletion",
            "startTime": ts(start),
            "endTime": ts(end),
            "user": key.user_id if key else "",
            "team_id": (key.team_id or "") if key else "",
            "end_user": end_user,
            "status": status,
            "messages": {},
            "response": {},
            "proxy_server_request": {},
            "_start": start,
            "_end": end,
            "_scenario": self.scenario_no,
        }

    def success(self, rng, key, group, start, dur, pt, ct, end_user="", cache_hit=False) -> dict:
        """A successful call as LiteLLM writes it (1.80 format before UPGRADE, 1.110 after)."""
        routes = ROUTES[group]
        model, model_id, provider, _ = rng.choices(routes, weights=[r[3] for r in routes])[0] if len(routes) > 1 else routes[0]
        model_group = "" if group == UNROUTED else group
        legacy = start < UPGRADE_MS
        if legacy:
            model = model.split("/", 1)[1]  # ≤1.80: the provider segment is stripped
            if group not in (UNROUTED, "anthropic/claude-haiku-4-5"):
                r = rng.random()
                if r < 0.35:
                    model_group = ""
                if r < 0.12:
                    model_id = ""
        elif group == "mistral-large" and rng.random() < 0.4:
            model_group = ""  # a UI-added model reached outside the router: only model_id names it
        pin, pout = PRICES[group]
        recent = self.recent.setdefault((key.alias if key else "", group), [])
        if cache_hit and recent:
            logged_at = (start + dur) / 1000 + rng.randint(1, 999) / 1e6  # time.time() when the hit was logged
            request_id = f"{rng.choice(recent[-20:])}_cache_hit{logged_at:.6f}"
        else:
            cache_hit = False
            request_id = self._new_id(rng, model, provider)
            recent.append(request_id)
        row = self._base_row(key, start, start + dur, end_user, "success")
        row.update(
            request_id=request_id,
            spend=0.0 if cache_hit else pt * pin + ct * pout,
            prompt_tokens=pt,
            completion_tokens=ct,
            total_tokens=pt + ct,
            model=model,
            model_group=model_group,
            model_id=model_id,
            custom_llm_provider=provider,
            cache_hit="True" if cache_hit else "False",
            metadata={"status": "success", "user_api_key_alias": key.alias if key else None},
        )
        return self._add(row)

    def failure(self, rng, key, group, start, dur, error_class, end_user="", message=None) -> dict:
        """A failed call (1.63+ `async_post_call_failure_hook`): spend 0, `model` = the model requested.
        `message` replaces the error text (a budget of another scope than the key's)."""
        provider = "" if error_class == "BudgetExceededError" else ROUTES[group][0][2]
        code, template = ERRORS[error_class]
        message = message or template.format(
            p=provider.capitalize(), token=key.token if key else "", alias=key.alias if key else "", model=group
        )
        row = self._base_row(key, start, start + dur, end_user, "failure")
        row.update(
            request_id=self._uuid(rng),
            spend=0.0,
            prompt_tokens=0,
            completion_tokens=0,
            total_tokens=0,
            model=group,
            model_group="" if group == UNROUTED else group,
            model_id="",
            custom_llm_provider=provider,
            cache_hit="False",
            metadata={
                "status": "failure",
                "user_api_key_alias": key.alias if key else None,
                "error_information": {
                    "error_class": error_class,
                    "error_code": code,
                    "error_message": message,
                    "llm_provider": provider,
                },
            },
        )
        return self._add(row)

    def _add(self, row: dict) -> dict:
        assert row["request_id"] not in self.request_ids, row["request_id"]
        self.request_ids.add(row["request_id"])
        self.logs.append(row)
        return row

    def traffic(
        self,
        rng,
        key,
        group,
        day,
        n,
        hours=(8, 20),
        pt=(2000, 8000),
        ct=(200, 900),
        dur=(0.8, 20.0),
        cache=0.0,
        fail=0.0,
        end_users=("",),
    ):
        """`n` calls spread over `hours` of `day`: mostly successes, some cache hits and provider failures."""
        made = []
        for start in spread(rng, day, n, *hours):
            r, end_user = rng.random(), rng.choice(end_users)
            if r < fail:
                error = rng.choice(PROVIDER_ERRORS)
                seconds = rng.uniform(60, 90) if error == "Timeout" else rng.uniform(0.5, 4)
                made.append(self.failure(rng, key, group, start, int(seconds * SECOND), error, end_user))
            elif r < fail + cache:
                made.append(
                    self.success(
                        rng,
                        key,
                        group,
                        start,
                        rng.randint(500, 900),
                        rng.randint(*pt),
                        rng.randint(*ct),
                        end_user,
                        cache_hit=True,
                    )
                )
            else:
                made.append(
                    self.success(
                        rng, key, group, start, int(rng.uniform(*dur) * SECOND), rng.randint(*pt), rng.randint(*ct), end_user
                    )
                )
        return made


def spread(rng: random.Random, day: datetime, n: int, first_hour: float, last_hour: float) -> list[int]:
    lo, hi = to_ms(day) + int(first_hour * HOUR), to_ms(day) + int(last_hour * HOUR)
    return sorted(rng.randint(lo, hi) for _ in range(n))


def weekday(day: datetime) -> bool:
    return day.weekday() < 5


def successes(w: World, key: Key, groups: set[str]) -> list[dict]:
    return [
        r
        for r in w.logs
        if r["api_key"] == key.token and r["status"] == "success" and (r["model_group"] or group_of_row_sim(r)) in groups
    ]


def group_of_row_sim(row: dict) -> str:
    """Generator-side: which group a row was generated for (rows with blanked model_group)."""
    for group, routes in ROUTES.items():
        for model, _model_id, _, _ in routes:
            if row["model"] in (model, model.split("/", 1)[1]) and group != UNROUTED:
                return group
    return ""


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------


@scenario(1, "The classic failure: the counter was written under the deployment name")
def classic_failure(w: World) -> None:
    """research-agent caps claude-opus-4-6 at $1 a day, but the only counter its proxy wrote is keyed on
    the deployment string `vertex_ai/claude-opus-4-6@default` (the 1.82-1.83 write path), so the
    `claude-opus-4-6` counter enforcement reads never existed and nothing was blocked. The ledger shows
    $8-25 a day on heavy days: over-budget windows full of requests that should have been refused."""
    rng = w.rng("research-agent")
    key = w.add_key(
        "research-agent",
        "u-alice",
        "team-platform",
        {"claude-opus-4-6": {"budget_limit": 1.0, "time_period": "1d"}},
        created_at="2026-09-02T10:14:07.512",
        models=[],
    )
    heavy = {2, 3, 5, 6, 9, 10, 12, 13, 16, 17, 19, 20, 21}
    for day in DAYS:
        target = rng.uniform(8, 25) if day.day in heavy else rng.uniform(0.3, 1.8)
        calls, total = [], 0.0
        while total < target:
            pt, ct = rng.randint(8_000, 60_000), rng.randint(400, 3_500)
            calls.append((pt, ct))
            total += pt * 5e-06 + ct * 2.5e-05
        for start, (pt, ct) in zip(spread(rng, day, len(calls), 7, 22.5), calls):
            r = rng.random()
            seconds = rng.uniform(60, 90) if rng.random() < 0.05 else rng.uniform(4, 45)
            if r < 0.03:
                w.failure(rng, key, "claude-opus-4-6", start, int(rng.uniform(0.5, 3) * SECOND), "RateLimitError")
            elif r < 0.07:
                w.success(rng, key, "claude-opus-4-6", start, rng.randint(500, 900), pt, ct, cache_hit=True)
            elif r < 0.15:
                w.success(rng, key, "claude-sonnet-4-5", start, int(seconds * SECOND), pt // 2, ct)
            else:
                w.success(rng, key, "claude-opus-4-6", start, int(seconds * SECOND), pt, ct)
    # What the 1.83 replica keeps in Redis: its counter under the deployment string, one start key per key.
    state = counter_state(successes(w, key, {"claude-opus-4-6"}), DAY, SNAPSHOT_MS)
    assert state, "research-agent must have an open opus window at the snapshot"
    start, spend = state
    ttl = (start + DAY - SNAPSHOT_MS) // SECOND
    w.redis[f"virtual_key_spend:{key.token}:vertex_ai/claude-opus-4-6@default:1d"] = {"value": repr(spend), "ttl_seconds": ttl}
    w.redis[f"virtual_key_budget_start_time:{key.token}"] = {"value": repr(start / 1000), "ttl_seconds": ttl}
    w.note(
        "Redis holds its counter only under `vertex_ai/claude-opus-4-6@default:1d` (miskeyed); "
        f"`virtual_key_spend:{key.token[:10]}…:claude-opus-4-6:1d`, the key enforcement reads, is absent."
    )


@scenario(2, "Enforcement that worked")
def enforcement_worked(w: World) -> None:
    """support-bot caps gpt-4o at $2 a day (`max_budget`/`budget_duration` spelling). It spends until a
    request crosses $2, then LiteLLM refuses its calls (failure rows, spend 0, BudgetExceededError) until
    the window ends. Windows are over budget only by the crossing request, plus, in one window, a
    request already in flight when the limit was crossed: warnings, never errors. Its key went live
    after the upgrade to 1.110."""
    rng = w.rng("support-bot")
    key = w.add_key(
        "support-bot",
        "u-bob",
        "team-platform",
        {"gpt-4o": {"max_budget": 2.0, "budget_duration": "1d"}},
        created_at="2026-11-03T16:20:44.019",
        models=["gpt-4o", "gpt-4o-mini"],
        max_budget=150.0,
        budget_duration="30d",
    )
    price_in, price_out = PRICES["gpt-4o"]
    arrivals = []
    for day in DAYS[3:]:
        n = rng.randint(40, 54) if weekday(day) else rng.randint(8, 14)
        for start in spread(rng, day, n, 6, 21):
            cache = rng.random() < 0.05
            pt, ct = rng.randint(10_000, 30_000), rng.randint(500, 2_000)
            arrivals.append(
                {
                    "start": start,
                    "dur": rng.randint(800, 14_000) if not cache else rng.randint(500, 900),
                    "pt": pt,
                    "ct": ct,
                    "cost": 0.0 if cache else pt * price_in + ct * price_out,
                    "cache": cache,
                    "end_user": rng.choice(["customer-acme", "customer-globex", "", ""]),
                }
            )

    def simulate(arrivals):
        lim, pending, allowed, crossings = Limiter(2.0, DAY), [], [], []
        for i, a in sorted(enumerate(arrivals), key=lambda p: (p[1]["start"], p[0])):
            while pending and pending[0][0] <= a["start"]:
                end, j, cost = heapq.heappop(pending)
                before = lim.spend if lim.open_at(end) else 0.0
                lim.charge(end, cost)
                if before < lim.limit <= lim.spend:
                    crossings.append(j)
            ok = lim.allows(a["start"])
            allowed.append((i, ok))
            if ok:
                heapq.heappush(pending, (a["start"] + a["dur"], i, a["cost"]))
        return dict(allowed), crossings

    allowed, crossings = simulate(arrivals)
    # One request already in flight at the crossing: it starts 2.5 s before the crossing call ends.
    crossing = next(arrivals[j] for j in crossings if arrivals[j]["start"] >= to_ms(datetime(2026, 11, 10)))
    inflight = {
        "start": crossing["start"] + crossing["dur"] - 2_500,
        "dur": 25_000,
        "pt": 24_000,
        "ct": 1_800,
        "cost": 24_000 * price_in + 1_800 * price_out,
        "cache": False,
        "end_user": "customer-acme",
    }
    arrivals.append(inflight)
    allowed, crossings2 = simulate(arrivals)
    assert allowed[len(arrivals) - 1] and crossings2 == crossings
    for i, a in sorted(enumerate(arrivals), key=lambda p: p[1]["start"]):
        if allowed[i]:
            w.success(rng, key, "gpt-4o", a["start"], a["dur"], a["pt"], a["ct"], a["end_user"], cache_hit=a["cache"])
        else:
            w.failure(rng, key, "gpt-4o", a["start"], rng.randint(500, 700), "BudgetExceededError", a["end_user"])
    w.note(
        f"In-flight request: starts {ts(inflight['start'])}, 2.5 s before the crossing request (started {ts(crossing['start'])}) "
        f"ends at {ts(crossing['start'] + crossing['dur'])}; it ends at {ts(inflight['start'] + inflight['dur'])} and is charged, "
        "but was allowed (its check saw less than $2), so it is overshoot, not a leak."
    )


@scenario(3, "String amounts, Bedrock and Anthropic deployments of one alias")
def string_amounts_bedrock(w: World) -> None:
    """analytics caps claude-sonnet-4-5 at "5.00" (a string, as /key/update stores it since 1.82) per 7 days.
    Its calls go through both sonnet deployments (`bedrock/us.anthropic…-v1:0` and
    `anthropic/claude-sonnet-4-5-20250929`); both are the alias claude-sonnet-4-5 and share one counter.
    Within budget in most windows; a burst on 2026-11-16..18 pushes one window over."""
    rng = w.rng("analytics")
    key = w.add_key(
        "analytics",
        "u-carol",
        "team-data",
        {"claude-sonnet-4-5": {"budget_limit": "5.00", "time_period": "7d"}},
        created_at="2026-08-19T08:02:51.330",
        models=["claude-sonnet-4-5", "gemini-2.5-pro"],
    )
    for day in DAYS:
        n = rng.randint(28, 34) if day.day in (16, 17, 18) else rng.randint(5, 9) if weekday(day) else rng.randint(1, 3)
        w.traffic(
            rng, key, "claude-sonnet-4-5", day, n, hours=(7, 19), pt=(8_000, 20_000), ct=(500, 1_500), dur=(3, 40), fail=0.02
        )
    state = counter_state(successes(w, key, {"claude-sonnet-4-5"}), 7 * DAY, SNAPSHOT_MS)
    start, spend = state
    sk = f"virtual_key_spend:{key.token}:claude-sonnet-4-5:7d"
    ttl = (start + 7 * DAY - SNAPSHOT_MS) // SECOND
    w.redis[sk] = {"value": repr(spend), "ttl_seconds": ttl}
    w.redis[f"virtual_key_budget_start_time:{key.token}:claude-sonnet-4-5:7d"] = {"value": repr(start / 1000), "ttl_seconds": ttl}
    w.note("Redis counter `claude-sonnet-4-5:7d` matches the ledger of its window.")


@scenario(4, "Legacy float entry")
def legacy_float(w: World) -> None:
    """legacy-batch still carries `{"gpt-4o-mini": 0.5}`, the 2024 float format. LiteLLM 1.99+ skips it
    with a warning, so its nightly batches (about $0.4-0.6 a night) are capped by nothing. This key also
    holds the only non-empty `model_spend`: a fossil from early 2024 keyed on deployment names."""
    rng = w.rng("legacy-batch")
    key = w.add_key(
        "legacy-batch",
        "u-carol",
        "team-data",
        {"gpt-4o-mini": 0.5},
        created_at="2024-02-12T14:31:09.877",
        models=[],
        model_spend={"prod-gpt35-eastus": 14.28131, "gpt-4-0125-preview": 6.50712},
        prior_spend=318.4421,
    )
    for day in DAYS:
        w.traffic(
            rng,
            key,
            "gpt-4o-mini",
            day,
            rng.randint(20, 30),
            hours=(1, 3),
            pt=(80_000, 120_000),
            ct=(2_000, 6_000),
            dur=(5, 60),
            fail=0.01,
        )


@scenario(5, "Invalid duration")
def invalid_duration(w: World) -> None:
    """data-science caps gemini-2.5-pro at 2 per `1y`. `duration_in_seconds` has no year unit, so LiteLLM's
    limiter ignores the entry and about $0.8 a day of Gemini goes uncapped."""
    rng = w.rng("data-science")
    key = w.add_key(
        "data-science",
        "u-carol",
        "team-data",
        {"gemini-2.5-pro": {"budget_limit": 2, "time_period": "1y"}},
        created_at="2026-10-05T11:45:00.004",
        models=["gemini-2.5-pro"],
    )
    for day in DAYS:
        if weekday(day):
            w.traffic(
                rng,
                key,
                "gemini-2.5-pro",
                day,
                rng.randint(6, 12),
                hours=(9, 18),
                pt=(20_000, 80_000),
                ct=(1_000, 6_000),
                dur=(4, 50),
                fail=0.03,
            )


@scenario(6, "Glob entry")
def glob_entry(w: World) -> None:
    """opus-tester caps `claude-opus*` (a glob, 1.109+) at $3 per 30 days. The glob matches the alias
    claude-opus-4-6, so the entry governs its opus calls; about $10 over three weeks, so the one window
    goes over $3 early and stays there. Its Redis counter is double the ledger (an INCRBYFLOAT reseed race)."""
    rng = w.rng("opus-tester")
    key = w.add_key(
        "opus-tester",
        "u-alice",
        "team-platform",
        {"claude-opus*": {"budget_limit": 3.0, "time_period": "30d"}},
        created_at="2026-10-30T09:12:33.700",
        models=["claude-opus-4-6", "gpt-4o-mini"],
    )
    for day in DAYS[1:]:
        if weekday(day):
            w.traffic(
                rng,
                key,
                "claude-opus-4-6",
                day,
                rng.randint(2, 6),
                hours=(10, 17),
                pt=(10_000, 40_000),
                ct=(500, 3_000),
                dur=(5, 60),
            )
            w.traffic(rng, key, "gpt-4o-mini", day, rng.randint(0, 3), hours=(10, 17))
    start, spend = counter_state(successes(w, key, {"claude-opus-4-6"}), 30 * DAY, SNAPSHOT_MS)
    ttl = (start + 30 * DAY - SNAPSHOT_MS) // SECOND
    w.redis[f"virtual_key_spend:{key.token}:claude-opus*:30d"] = {"value": repr(2 * spend), "ttl_seconds": ttl}
    w.redis[f"virtual_key_budget_start_time:{key.token}:claude-opus*:30d"] = {"value": repr(start / 1000), "ttl_seconds": ttl}
    w.note("Redis counter `claude-opus*:30d` holds twice the ledger: it drifts by exactly the ledger value.")


@scenario(7, "Access-group entry")
def access_group(w: World) -> None:
    """premium-user caps the access group `premium` (opus and both sonnet deployments) at 10 per
    `monthly` (= 30d). One counter covers every model in the group; spend stays under $10. The shared
    window in LiteLLM_BudgetWindowSpend matches the ledger."""
    rng = w.rng("premium-user")
    key = w.add_key(
        "premium-user",
        "u-bob",
        None,
        {"premium": {"max_budget": 10, "budget_duration": "monthly"}},
        created_at="2026-10-21T17:03:12.245",
        models=["premium"],
    )
    for day in DAYS:
        w.traffic(
            rng,
            key,
            "claude-sonnet-4-5",
            day,
            rng.randint(1, 3),
            hours=(9, 22),
            pt=(10_000, 30_000),
            ct=(500, 2_000),
            dur=(2, 30),
        )
        w.traffic(
            rng, key, "claude-opus-4-6", day, rng.randint(0, 1), hours=(9, 22), pt=(10_000, 30_000), ct=(500, 2_000), dur=(5, 40)
        )
    start, spend = last_window(successes(w, key, {"claude-sonnet-4-5", "claude-opus-4-6"}), 30 * DAY)
    w.bws(f"virtual_key_spend:{key.token}:premium:monthly", "monthly", start, spend)
    w.note("LiteLLM_BudgetWindowSpend row `premium:monthly` matches the ledger.")


@scenario(8, "Budget through budget_id")
def budget_table(w: World) -> None:
    """via-budget-table has `model_max_budget = {}` and a `budget_id`; the budget row caps gpt-4o-mini at
    $0.5 a day, and since 1.82 that applies because the key's own value is empty. Ordinary days spend about
    $0.2; on 2026-11-09 and 2026-11-17 a backfill job overspends. Its shared window row lost a flush."""
    rng = w.rng("via-budget-table")
    w.tables["LiteLLM_BudgetTable"].append(
        budget_row(
            "budget-mini-daily", {"gpt-4o-mini": {"max_budget": 0.5, "budget_duration": "1d"}}, created="2026-10-01T09:00:00.000"
        )
    )
    key = w.add_key(
        "via-budget-table",
        "u-carol",
        "team-data",
        {},
        budget_id="budget-mini-daily",
        created_at="2026-10-01T09:02:17.118",
        models=["gpt-4o-mini"],
    )
    for day in DAYS:
        n = rng.randint(70, 80) if day.day in (9, 17) else rng.randint(10, 18)
        w.traffic(rng, key, "gpt-4o-mini", day, n, hours=(8, 20), pt=(60_000, 100_000), ct=(1_000, 3_000), dur=(2, 25), fail=0.01)
    rows = sorted(successes(w, key, {"gpt-4o-mini"}), key=lambda r: r["_end"])
    # The last window holding at least three charges (a later one's flushes never arrived at all).
    cut = len(rows)
    while True:
        start, spend = last_window(rows[:cut], DAY)
        in_window = [r for r in rows[:cut] if start <= r["_end"] < start + DAY]
        if len(in_window) >= 3:
            break
        cut -= len(in_window)
    lost = in_window[-1]["spend"] + in_window[-2]["spend"]
    w.bws(f"virtual_key_spend:{key.token}:gpt-4o-mini:1d", "1d", start, spend - lost)
    w.note(
        f"LiteLLM_BudgetWindowSpend row `gpt-4o-mini:1d` (window {ts(start)}) lacks the flush of that window's last two "
        f"charges (${lost:.4f})."
    )


@scenario(9, "Typo in the entry name")
def typo_entry(w: World) -> None:
    """typo-key caps `claude-opus-4.6` (dot, not dash): no alias, deployment or access group has that name,
    so it matches nothing and its opus calls are uncapped. A replica (1.84-1.98 write path, keyed on
    model_group) still flushed a `claude-opus-4-6:1d` window into LiteLLM_BudgetWindowSpend: miskeyed."""
    rng = w.rng("typo-key")
    key = w.add_key(
        "typo-key",
        "u-alice",
        "team-platform",
        {"claude-opus-4.6": {"budget_limit": 1, "time_period": "1d"}},
        created_at="2026-10-12T13:20:05.931",
        models=[],
    )
    for day in DAYS:
        if weekday(day) or day.day == 21:
            w.traffic(
                rng,
                key,
                "claude-opus-4-6",
                day,
                rng.randint(2, 5),
                hours=(9, 18),
                pt=(10_000, 40_000),
                ct=(500, 3_000),
                dur=(5, 60),
            )
    start, spend = last_window(successes(w, key, {"claude-opus-4-6"}), DAY)
    w.bws(f"virtual_key_spend:{key.token}:claude-opus-4-6:1d", "1d", start, spend)


@scenario(10, "Entry named after the deployment")
def deployment_entry(w: World) -> None:
    """deploy-name-key caps `openai/gpt-4o-mini` (the deployment string) while its requests name the alias
    `gpt-4o-mini`. Resolution tries the alias and its last `/` segment, never the deployment string, so
    the entry governs nothing."""
    rng = w.rng("deploy-name-key")
    key = w.add_key(
        "deploy-name-key",
        "u-bob",
        "team-platform",
        {"openai/gpt-4o-mini": {"budget_limit": 1, "time_period": "1d"}},
        created_at="2026-10-27T10:41:50.266",
        models=["gpt-4o-mini"],
    )
    for day in DAYS:
        w.traffic(
            rng,
            key,
            "gpt-4o-mini",
            day,
            rng.randint(10, 20),
            hours=(8, 21),
            pt=(20_000, 60_000),
            ct=(500, 2_000),
            dur=(1, 15),
            fail=0.02,
        )


@scenario(11, "`daily` is not `1d`")
def daily_word(w: World) -> None:
    """daily-key caps gpt-4o at 3 per `daily`. Since 1.95 `daily` means 24h, but the counter key keeps the
    raw word: `virtual_key_spend:<hash>:gpt-4o:daily`, a different counter from `…:gpt-4o:1d`. About
    $2 a day, over $3 on a few busy days. Its Redis start key is 0.35 s after the opening charge ended."""
    rng = w.rng("daily-key")
    key = w.add_key(
        "daily-key",
        "u-bob",
        "team-platform",
        {"gpt-4o": {"budget_limit": 3, "time_period": "daily"}},
        created_at="2026-10-14T15:55:21.440",
        models=["gpt-4o"],
    )
    for day in DAYS:
        n = rng.randint(32, 42) if day.day in (5, 11, 12, 18) else rng.randint(18, 28) if weekday(day) else rng.randint(5, 8)
        w.traffic(
            rng,
            key,
            "gpt-4o",
            day,
            n,
            hours=(9, 20) if weekday(day) else (9, 22.5),
            pt=(15_000, 40_000),
            ct=(800, 2_500),
            dur=(2, 30),
            fail=0.02,
        )
    state = counter_state(successes(w, key, {"gpt-4o"}), DAY, SNAPSHOT_MS)
    assert state, "daily-key must have an open window at the snapshot"
    start, spend = state
    ttl = (start + 350 + DAY - SNAPSHOT_MS) // SECOND
    w.redis[f"virtual_key_spend:{key.token}:gpt-4o:daily"] = {"value": repr(spend), "ttl_seconds": ttl}
    w.redis[f"virtual_key_budget_start_time:{key.token}:gpt-4o:daily"] = {"value": repr((start + 350) / 1000), "ttl_seconds": ttl}
    w.note(
        "Redis counter `gpt-4o:daily` matches the ledger (its start is 0.35 s after the opening charge; the 1 s slack covers it)."
    )


@scenario(12, "Ordinary keys, and a deleted key that still has spend")
def ordinary_keys(w: World) -> None:
    """chat-frontend (gpt-4o-mini with cache hits and end users, Claude Haiku through the `anthropic/*`
    wildcard), internal-tools and notebook carry no per-model budgets. ci-pipeline was deleted on
    2026-11-10: it is in LiteLLM_DeletedVerificationToken only, but its spend rows remain."""
    rng = w.rng("ordinary")
    chat = w.add_key(
        "chat-frontend",
        "u-bob",
        "team-platform",
        {},
        created_at="2026-07-08T12:00:03.105",
        models=[],
        max_budget=200.0,
        budget_duration="30d",
    )
    w.add_key("internal-tools", "u-alice", "team-platform", {}, created_at="2026-06-30T08:44:10.623", models=[])
    w.add_key("notebook", "u-carol", "team-data", {}, created_at="2026-09-21T16:18:42.090", models=[])
    ci = w.add_key(
        "ci-pipeline",
        "u-carol",
        "team-data",
        {},
        created_at="2026-09-14T07:30:00.000",
        models=["gpt-4o-mini", "claude-sonnet-4-5"],
    )
    deleted_at = to_ms(datetime(2026, 11, 10, 15, 42, 7, 301_000))
    w.deleted["ci-pipeline"] = {"deleted_at": ts(deleted_at), "deleted_by": "u-carol"}
    for day in DAYS:
        w.traffic(
            rng,
            chat,
            "gpt-4o-mini",
            day,
            rng.randint(20, 30),
            hours=(6, 23),
            pt=(800, 4_000),
            ct=(100, 600),
            dur=(0.6, 8),
            cache=0.15,
            fail=0.02,
            end_users=("customer-acme", "customer-acme", "customer-globex", ""),
        )
        w.traffic(
            rng,
            chat,
            "anthropic/claude-haiku-4-5",
            day,
            rng.randint(5, 10),
            hours=(6, 23),
            pt=(1_000, 5_000),
            ct=(100, 800),
            dur=(0.8, 10),
            fail=0.03,
            end_users=("customer-globex", ""),
        )
        if day < datetime(2026, 11, 10):
            w.traffic(
                rng, ci, "gpt-4o-mini", day, rng.randint(8, 12), hours=(2, 14), pt=(5_000, 20_000), ct=(200, 1_500), fail=0.02
            )
            w.traffic(rng, ci, "claude-sonnet-4-5", day, rng.randint(1, 3), hours=(2, 14), pt=(5_000, 15_000), ct=(300, 1_200))
        elif day == datetime(2026, 11, 10):
            w.traffic(rng, ci, "gpt-4o-mini", day, 6, hours=(2, 14), pt=(5_000, 20_000), ct=(200, 1_500))


@scenario(13, "A model that exists only in the database")
def db_only_model(w: World) -> None:
    """internal-tools calls `mistral-large`, added through the UI: it is in LiteLLM_ProxyModelTable
    (`mistral/mistral-large-latest`, model_id 0f3c9b2e-…) and not in config.yaml. Some of its 1.110 rows
    have an empty model_group, so only model_id says which alias they were."""
    rng = w.rng("internal-tools")
    key = w.keys["internal-tools"]
    for day in DAYS:
        if weekday(day):
            w.traffic(
                rng,
                key,
                "mistral-large",
                day,
                rng.randint(4, 8),
                hours=(8, 19),
                pt=(3_000, 12_000),
                ct=(300, 1_500),
                dur=(1, 20),
                fail=0.03,
            )
            w.traffic(rng, key, "gpt-4o", day, rng.randint(2, 4), hours=(8, 19), pt=(3_000, 12_000), ct=(300, 1_500), dur=(1, 20))
    mistral = [r for r in w.logs if r["model"].endswith("mistral-large-latest")]
    w.note(
        f"{len(mistral)} mistral-large rows, {sum(1 for r in mistral if not r['model_group'])} with empty model_group "
        f"(resolved through model_id `{DB_MODELS[0]['model_id']}` or, for 1.80 rows without it, through `model`)."
    )
    for dep in DB_MODELS:
        w.tables["LiteLLM_ProxyModelTable"].append(
            {
                "model_id": dep["model_id"],
                "model_name": dep["model_name"],
                "litellm_params": dep["litellm_params"],
                "model_info": dep["model_info"],
                "blocked": False,
                "created_at": "2026-10-02T10:11:12.131",
                "created_by": "u-alice",
                "updated_at": "2026-10-02T10:11:12.131",
                "updated_by": "u-alice",
            }
        )


@scenario(14, "Rows written before LiteLLM 1.81")
def legacy_rows(w: World) -> None:
    """Every row starting before 2026-11-04 was written by LiteLLM 1.80: `model` lacks the provider prefix
    (`claude-opus-4-6@default`, `prod-gpt4o-eastus`, `us.anthropic.claude-sonnet-4-5-20250929-v1:0`), about a
    third have an empty model_group, and some of those an empty model_id too, so only `model` (matched to
    a deployment string without its prefix) says which alias they were. research-agent's first heavy days
    are among them."""
    legacy = [r for r in w.logs if r["_start"] < UPGRADE_MS]
    w.note(
        f"{len(legacy)} rows before the upgrade; {sum(1 for r in legacy if not r['model_group'])} with empty model_group, "
        f"{sum(1 for r in legacy if not r['model_group'] and not r['model_id'])} of them with empty model_id too."
    )


@scenario(15, "An unconfigured model, key-less calls, failures, cache hits, wildcard traffic")
def loose_ends(w: World) -> None:
    """notebook and a key-less local script call `ollama/llama3.1:8b`, configured nowhere: empty model_group
    and model_id, spend 0; these are the scan's unresolved rows. A health checker calls gpt-4o-mini without
    a key (empty api_key). Provider failures (rate limits, timeouts, context-window errors), cache hits and
    `anthropic/claude-haiku-4-5` through the `anthropic/*` wildcard are spread over the other scenarios."""
    rng = w.rng("loose-ends")
    notebook = w.keys["notebook"]
    for day in DAYS:
        w.traffic(
            rng, notebook, UNROUTED, day, rng.randint(2, 5), hours=(9, 21), pt=(500, 4_000), ct=(100, 900), dur=(2, 35), fail=0.05
        )
        w.traffic(
            rng,
            notebook,
            "gemini-2.5-pro",
            day,
            rng.randint(0, 2),
            hours=(9, 21),
            pt=(5_000, 20_000),
            ct=(300, 1_500),
            dur=(3, 30),
        )
        w.traffic(
            rng, None, UNROUTED, day, rng.randint(2, 4), hours=(0, 23), pt=(200, 1_500), ct=(50, 400), dur=(1, 12), fail=0.05
        )
        w.traffic(rng, None, "gpt-4o-mini", day, rng.randint(1, 2), hours=(0, 23), pt=(20, 60), ct=(1, 10), dur=(0.5, 2))
    ollama = [r for r in w.logs if r["model"].endswith("llama3.1:8b")]
    keyless = [r for r in w.logs if not r["api_key"]]
    failures: dict[str, int] = {}
    for r in w.logs:
        if r["status"] == "failure":
            cls = r["metadata"]["error_information"]["error_class"]
            failures[cls] = failures.get(cls, 0) + 1
    w.note(
        f"{len(ollama)} ollama rows (all unresolved, spend 0), {sum(1 for r in ollama if not r['api_key'])} of them key-less; "
        f"{len(keyless)} key-less rows in all ({sum(1 for r in keyless if r['model_group'] == 'gpt-4o-mini')} of them gpt-4o-mini, "
        f"${math.fsum(r['spend'] for r in keyless):.4f})."
    )
    w.note(
        f"{sum(r['cache_hit'] == 'True' for r in w.logs)} cache hits (spend 0, request_id `<id>_cache_hit<epoch>`); "
        f"{sum(r['model_group'] == 'anthropic/claude-haiku-4-5' for r in w.logs)} wildcard rows; failures by class: "
        + ", ".join(f"{k} {v}" for k, v in sorted(failures.items()))
        + "."
    )


@scenario(16, "Teams, users, end users, memberships")
def org_entities(w: World) -> None:
    """Two teams (team-data caps gemini-2.5-pro at $25 per 7d), three internal users (u-carol caps
    claude-sonnet-4-5 at $5 a day; scenarios 19 and 22 add u-dave and u-erin), two end users (customer-acme
    via budget `budget-enduser-basic`: gpt-4o-mini at $0.25 a day, $5 a month in all) and their memberships.
    Scenarios 19-22 take each of these scopes over a per-model cap. Spend columns hold what the ledger holds
    for their period (scenario 23 lists the exceptions); `model_spend` is `{}` everywhere except
    legacy-batch's 2024 fossil."""
    w.tables["LiteLLM_BudgetTable"].append(
        budget_row(
            "budget-enduser-basic",
            {"gpt-4o-mini": {"max_budget": 0.25, "budget_duration": "1d"}},
            created="2026-09-01T12:00:00.000",
            max_budget=5.0,
            budget_duration="30d",
        )
    )
    w.users = {
        "u-alice": {
            "user_alias": "alice",
            "user_email": "alice@example.com",
            "teams": ["team-platform"],
            "max_budget": 1000.0,
            "model_max_budget": {},
        },
        "u-bob": {
            "user_alias": "bob",
            "user_email": "bob@example.com",
            "teams": ["team-platform"],
            "max_budget": None,
            "model_max_budget": {},
        },
        "u-carol": {
            "user_alias": "carol",
            "user_email": "carol@example.com",
            "teams": ["team-data"],
            "max_budget": 300.0,
            "model_max_budget": {"claude-sonnet-4-5": {"max_budget": 5.0, "budget_duration": "1d"}},
        },
    }
    w.teams = {
        "team-platform": {
            "team_alias": "platform",
            "admins": ["u-alice"],
            "members": ["u-alice", "u-bob"],
            "max_budget": 2000.0,
            "model_max_budget": {},
        },
        "team-data": {
            "team_alias": "data",
            "admins": ["u-carol"],
            "members": ["u-carol"],
            "max_budget": 500.0,
            "model_max_budget": {"gemini-2.5-pro": {"max_budget": 25.0, "budget_duration": "7d"}},
        },
    }
    w.end_users = {
        "customer-acme": {"alias": "ACME Corp", "budget_id": "budget-enduser-basic"},
        "customer-globex": {"alias": "Globex", "budget_id": None},
    }


@scenario(17, "Cached counters: matching, drifting, miskeyed")
def cached_counters(w: World) -> None:
    """Redis: analytics' entry-keyed counter matches the ledger, opus-tester's drifts, daily-key's `daily`
    counter matches, research-agent's is miskeyed. LiteLLM_BudgetWindowSpend: premium-user's window matches,
    via-budget-table's lost a flush, typo-key's is miskeyed. Two unrelated Redis keys (a key's total spend
    and a provider budget) must be ignored. Scenarios 19-22 add counters of the other scopes. (The counters
    are written by the scenarios they belong to; "Findings by cache" below lists them all.)"""
    support = w.keys["support-bot"]
    total = math.fsum(r["spend"] for r in w.logs if r["api_key"] == support.token and r["status"] == "success")
    w.redis[f"spend:key:{support.token}"] = {"value": repr(total), "ttl_seconds": None}
    w.redis["provider_spend:openai:1d"] = {"value": "0.8312", "ttl_seconds": 40_211}


@scenario(18, "Daily rollups, one of them wrong")
def daily_rollups(w: World) -> None:
    """LiteLLM_DailyUserSpend aggregated from the spend logs per (user_id, UTC date of startTime, api_key,
    model, custom_llm_provider); rows without a user (key-less calls) are rolled up under user_id '' as LiteLLM
    1.110 does (daily_spend_bulk_upsert.daily_spend_entity_ids). One rollup is
    deliberately off: research-agent's `vertex_ai/claude-opus-4-6@default` on 2026-11-12 is $2.3456 low
    (a lost batch). Listed under "Findings by cache" below."""
    rng = w.rng("rollups")
    # Keys of scenarios 19+ draw their rollup ids from a stream of their own (a group holds one key's rows), so
    # adding them left the earlier rollup rows exactly as they were.
    later = w.rng("rollups/19+")
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(w.logs, key=lambda r: (r["_start"], r["request_id"])):
        if r["user"] is not None:
            groups.setdefault((r["user"], r["startTime"][:10], r["api_key"], r["model"], r["custom_llm_provider"]), []).append(r)
    research = w.keys["research-agent"].token
    for (user, date, api_key, model, provider), rows in sorted(groups.items()):
        spend = math.fsum(r["spend"] for r in rows)
        if (date, api_key, model) == ("2026-11-12", research, "vertex_ai/claude-opus-4-6@default"):
            spend -= 2.3456
        last = max(r["_end"] for r in rows)
        w.tables["LiteLLM_DailyUserSpend"].append(
            {
                "id": w._uuid(rng if rows[0]["_scenario"] < 19 else later),
                "user_id": user,
                "date": date,
                "api_key": api_key,
                "model": model,
                "model_group": next((r["model_group"] for r in rows if r["model_group"]), None),
                "custom_llm_provider": provider,
                "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
                "completion_tokens": sum(r["completion_tokens"] for r in rows),
                "spend": spend,
                "api_requests": len(rows),
                "successful_requests": sum(r["status"] == "success" for r in rows),
                "failed_requests": sum(r["status"] == "failure" for r in rows),
                "created_at": ts(min(r["_end"] for r in rows) + 45 * SECOND),
                "updated_at": ts(last + 45 * SECOND),
            }
        )


def window_spend_at(charges: list[tuple[int, float]], period_ms: int, at_ms: int, resets: tuple[int, ...] = ()) -> float:
    """What a limiter counter reads at `at_ms`: the (end, cost) charges ended by then, replayed in order into a
    Limiter; a reset (the counter and its start key evicted) forgets the open window. 0 when none is open."""
    lim = Limiter(None, period_ms)
    events = sorted([(end, 0, cost) for end, cost in charges if end <= at_ms] + [(t, 1, 0.0) for t in resets if t <= at_ms])
    for t, is_reset, cost in events:
        if is_reset:
            lim.start, lim.costs = None, []
        else:
            lim.charge(t, cost)
    return lim.spend if lim.open_at(at_ms) else 0.0


def calls_worth(rng: random.Random, group: str, target: float, pt: tuple[int, int], ct: tuple[int, int]) -> list[tuple[int, int]]:
    """(prompt, completion) token pairs of calls whose cost first reaches `target`."""
    pin, pout = PRICES[group]
    calls, total = [], 0.0
    while total < target:
        p, c = rng.randint(*pt), rng.randint(*ct)
        calls.append((p, c))
        total += p * pin + c * pout
    return calls


def group_rows(w: World, group: str, pred) -> list[dict]:
    """Successful keyed rows of `group` that satisfy `pred` (the generator's own view of what a counter is charged)."""
    return [
        r
        for r in w.logs
        if r["status"] == "success" and r["api_key"] and (r["model_group"] or group_of_row_sim(r)) == group and pred(r)
    ]


def set_counter(
    w: World, prefix: str, start_prefix: str, entity: str, entry: str, duration: str, period_ms: int, start: int, value: float
) -> None:
    """A 1.99+ Redis counter and its entry-level start key, with the TTL left at the snapshot."""
    ttl = (start + period_ms - SNAPSHOT_MS) // SECOND
    w.redis[f"{prefix}:{entity}:{entry}:{duration}"] = {"value": repr(value), "ttl_seconds": ttl}
    w.redis[f"{start_prefix}:{entity}:{entry}:{duration}"] = {"value": repr(start / 1000), "ttl_seconds": ttl}


@scenario(19, "A team cap on a model, a key entry that replaces it, a team counter that lost increments")
def team_budget(w: World) -> None:
    """team-data caps gemini-2.5-pro at $25 per 7d (LiteLLM_TeamTable.model_max_budget, 1.105+). u-dave, a new member
    of team-data, calls Gemini through two keys: bi-dashboards ($1-2 a weekday, $7-8 a day on 2026-11-17..20) and
    etl-gemini, whose own `gemini-2.5-pro` entry ($40 per 7d) replaces the team's entry of that name for its requests
    (1.109+: a key entry named after the model that spend-gates it), so its $3.5-5 a night is charged to the key's
    window and never to the team's. The team's last window goes over $25 with requests admitted after the limit:
    the Redis counter `team_model_spend:team-data:gemini-2.5-pro:7d` never received bi-dashboards' increments of
    2026-11-18 and 11-19 (its replica lost Redis and dropped the queued INCRBYFLOATs on restart), so enforcement read
    less than the ledger and refused nothing. data-science's own `gemini-2.5-pro` entry is invalid (`1y`), so it
    replaces nothing: its calls count toward the team's window."""
    rng = w.rng("team-data-gemini")
    w.users["u-dave"] = {
        "user_alias": "dave",
        "user_email": "dave@example.com",
        "teams": ["team-data"],
        "max_budget": None,
        "model_max_budget": {},
    }
    w.teams["team-data"]["members"].append("u-dave")
    bi = w.add_key(
        "bi-dashboards",
        "u-dave",
        "team-data",
        {},
        created_at="2026-10-28T13:37:12.804",
        models=["gemini-2.5-pro"],
        max_budget=25.0,
    )
    etl = w.add_key(
        "etl-gemini",
        "u-dave",
        "team-data",
        {"gemini-2.5-pro": {"budget_limit": 40, "time_period": "7d"}},
        created_at="2026-10-28T13:41:55.127",
        models=["gemini-2.5-pro"],
    )
    for day in DAYS[1:]:
        if not weekday(day):
            continue
        target = rng.uniform(7, 8) if day.day in (17, 18, 19, 20) else rng.uniform(1, 2)
        calls = calls_worth(rng, "gemini-2.5-pro", target, (40_000, 120_000), (1_000, 5_000))
        for start, (pt, ct) in zip(spread(rng, day, len(calls), 8, 19), calls):
            if rng.random() < 0.03:
                w.failure(rng, bi, "gemini-2.5-pro", start, int(rng.uniform(0.5, 3) * SECOND), "RateLimitError")
                start += 4 * SECOND  # retried once, a few seconds later
            w.success(rng, bi, "gemini-2.5-pro", start, int(rng.uniform(4, 45) * SECOND), pt, ct)
        calls = calls_worth(rng, "gemini-2.5-pro", rng.uniform(3.5, 5), (120_000, 200_000), (4_000, 10_000))
        for start, (pt, ct) in zip(spread(rng, day, len(calls), 1, 5), calls):
            w.success(rng, etl, "gemini-2.5-pro", start, int(rng.uniform(20, 90) * SECOND), pt, ct)

    # What enforcement read: the team's charges (etl-gemini's are the key's), less bi-dashboards' lost increments.
    team = group_rows(w, "gemini-2.5-pro", lambda r: r["team_id"] == "team-data" and r["api_key"] != etl.token)
    lost = [r for r in team if r["api_key"] == bi.token and r["endTime"][:10] in ("2026-11-18", "2026-11-19")]
    lost_ids = {r["request_id"] for r in lost}
    counted = [(r["_end"], r["spend"]) for r in team if r["request_id"] not in lost_ids]
    for r in team:
        assert window_spend_at(counted, 7 * DAY, r["_start"]) < 25, f"team-data would have been refused at {r['startTime']}"
    start, spend = counter_state(team, 7 * DAY, SNAPSHOT_MS)
    assert ts(start) > "2026-11-15" and all(start <= r["_end"] for r in lost), "the lost increments belong to the open window"
    cached = spend - math.fsum(r["spend"] for r in lost)
    set_counter(
        w, "team_model_spend", "team_model_budget_start_time", "team-data", "gemini-2.5-pro", "7d", 7 * DAY, start, cached
    )
    w.note(
        f"Redis `team_model_spend:team-data:gemini-2.5-pro:7d` (window {ts(start)}) holds ${cached:.4f}: the ledger's ${spend:.4f} "
        f"less {len(lost)} lost increments (${math.fsum(r['spend'] for r in lost):.4f}). It never reached $25, so nothing was refused."
    )
    start, spend = counter_state(group_rows(w, "gemini-2.5-pro", lambda r: r["api_key"] == etl.token), 7 * DAY, SNAPSHOT_MS)
    set_counter(w, "virtual_key_spend", "virtual_key_budget_start_time", etl.token, "gemini-2.5-pro", "7d", 7 * DAY, start, spend)
    w.note("etl-gemini's own Redis counter `gemini-2.5-pro:7d` matches the ledger.")


@scenario(20, "A user cap, and a counter Redis evicted mid-window")
def user_budget(w: World) -> None:
    """u-carol caps claude-sonnet-4-5 at $5 a day (LiteLLM_UserTable.model_max_budget, enforced since 1.99) across
    all her keys. On Saturday 2026-11-14 from 18:30 she drafts a report through a new key, carol-drafts: her
    sonnet spend crosses $5 and LiteLLM refuses her calls (`LiteLLM User: u-carol, exceeded budget for
    model=claude-sonnet-4-5`); she retries every few minutes. At 21:12:37 Redis evicts the counter and its start
    key (maxmemory reached, `allkeys-lru`): the limiter opens a fresh window at her next charge and admits her
    calls again until she stops at 21:35. The ledger's window holds both sessions, so every call admitted after
    the eviction is a leak. Her window open at the snapshot has a matching Redis counter."""
    rng = w.rng("carol-drafts")
    key = w.add_key("carol-drafts", "u-carol", None, {}, created_at="2026-11-13T17:25:40.611", models=["claude-sonnet-4-5"])
    evicted = to_ms(datetime(2026, 11, 14, 21, 12, 37))
    stop = to_ms(datetime(2026, 11, 14, 21, 35))
    mine = group_rows(w, "claude-sonnet-4-5", lambda r: r["user"] == "u-carol")
    charges = [(r["_end"], r["spend"]) for r in mine]
    message = "LiteLLM User: u-carol, exceeded budget for model=claude-sonnet-4-5"
    t = to_ms(datetime(2026, 11, 14, 18, 30)) + rng.randint(0, 60_000)
    while t < stop:
        if window_spend_at(charges, DAY, t, (evicted,)) < 5:
            pt, ct = rng.randint(30_000, 60_000), rng.randint(2_000, 4_000)
            row = w.success(rng, key, "claude-sonnet-4-5", t, int(rng.uniform(10, 40) * SECOND), pt, ct)
            charges.append((row["_end"], row["spend"]))
            t = row["_end"] + int(rng.uniform(20, 60) * SECOND)
        else:
            row = w.failure(rng, key, "claude-sonnet-4-5", t, rng.randint(300, 600), "BudgetExceededError", message=message)
            t = row["_end"] + int(rng.uniform(180, 360) * SECOND)
    # Her other sonnet calls (analytics) were never refused, before or after the eviction.
    for r in mine:
        assert window_spend_at(charges, DAY, r["_start"], (evicted,)) < 5, f"u-carol would have been refused at {r['startTime']}"
    state = counter_state(group_rows(w, "claude-sonnet-4-5", lambda r: r["user"] == "u-carol"), DAY, SNAPSHOT_MS)
    assert state, "u-carol must have an open sonnet window at the snapshot"
    set_counter(w, "user_model_spend", "user_model_budget_start_time", "u-carol", "claude-sonnet-4-5", "1d", DAY, *state)
    w.note(f"Redis `user_model_spend:u-carol:claude-sonnet-4-5:1d` (window {ts(state[0])}) matches the ledger.")


@scenario(21, "End-user caps are per replica")
def end_user_budget(w: World) -> None:
    """customer-acme's budget `budget-enduser-basic` caps gpt-4o-mini at $0.25 a day (LiteLLM_EndUserTable.budget_id,
    1.82+). partner-gateway, u-bob's key for a partner integration, forwards customer-acme's document jobs on
    Thursdays, 9:00-17:00, round-robin to three replicas that run without Redis. End-user windows are never shared
    between replicas (LiteLLM 1.109+ keeps them per replica, `_PER_REPLICA_SCOPES`): each replica admits its own
    $0.25 before refusing (`LiteLLM End User: customer-acme, exceeded budget for model=gpt-4o-mini`), so the day's
    spend reaches about three times the cap and the requests admitted after the first $0.25 are leaks. No Redis
    counter exists for customer-acme."""
    rng = w.rng("partner-gateway")
    key = w.add_key("partner-gateway", "u-bob", "team-platform", {}, created_at="2026-10-29T11:05:33.472", models=["gpt-4o-mini"])
    message = "LiteLLM End User: customer-acme, exceeded budget for model=gpt-4o-mini"
    replicas = [(Limiter(0.25, DAY), []) for _ in range(3)]
    for day in (DAYS[4], DAYS[11], DAYS[18]):
        for i, start in enumerate(spread(rng, day, rng.randint(110, 130), 9, 17)):
            lim, pending = replicas[i % 3]
            while pending and pending[0][0] <= start:
                end, cost = heapq.heappop(pending)
                lim.charge(end, cost)
            if lim.allows(start):
                row = w.success(
                    rng,
                    key,
                    "gpt-4o-mini",
                    start,
                    int(rng.uniform(2, 20) * SECOND),
                    rng.randint(60_000, 100_000),
                    rng.randint(1_000, 3_000),
                    end_user="customer-acme",
                )
                heapq.heappush(pending, (row["_end"], row["spend"]))
            else:
                w.failure(
                    rng,
                    key,
                    "gpt-4o-mini",
                    start,
                    rng.randint(200, 500),
                    "BudgetExceededError",
                    end_user="customer-acme",
                    message=message,
                )


@scenario(22, "A default budget for every member of team-platform")
def team_member_budget(w: World) -> None:
    """team-platform's metadata names `budget-platform-member` as its members' default budget (1.108+:
    `metadata.team_member_budget_id`, used when the membership row has no budget_id): claude-sonnet-4-5 at $4 a
    day per member. u-erin joined on 2026-11-15; her agent, erin-agent, runs on two replicas without Redis, which
    share member windows through LiteLLM_BudgetWindowSpend, flushed every 60 s (`proxy_batch_write_at`) and read
    through a 5 s cache. On 2026-11-16 and 11-18 four workers call in parallel: for about a minute after the
    crossing the other replica still reads less than $4, so requests it started then were admitted after the
    limit (errors). On 2026-11-20 a single worker pauses 90-150 s between calls: only the crossing request
    overshoots (a warning). Each worker stops at its first refusal (`LiteLLM Team Member: user=u-erin,
    team=team-platform, exceeded budget for model=claude-sonnet-4-5`). The table's row for the 11-20 window lacks
    its last flush. u-alice's sonnet calls (research-agent) stay under the cap; her window open at the snapshot
    has a matching Redis counter."""
    rng = w.rng("erin-agent")
    w.users["u-erin"] = {
        "user_alias": "erin",
        "user_email": "erin@example.com",
        "teams": ["team-platform"],
        "max_budget": None,
        "model_max_budget": {},
    }
    w.teams["team-platform"]["members"].append("u-erin")
    w.teams["team-platform"]["metadata"] = {"team_member_budget_id": "budget-platform-member"}
    w.tables["LiteLLM_BudgetTable"].append(
        budget_row(
            "budget-platform-member",
            {"claude-sonnet-4-5": {"max_budget": 4.0, "budget_duration": "1d"}},
            created="2026-11-02T08:30:00.000",
        )
    )
    key = w.add_key(
        "erin-agent", "u-erin", "team-platform", {}, created_at="2026-11-15T16:02:18.245", models=["claude-sonnet-4-5"]
    )
    lag = 65 * SECOND
    message = "LiteLLM Team Member: user=u-erin, team=team-platform, exceeded budget for model=claude-sonnet-4-5"
    charges: list[tuple[int, float, int]] = []  # (end, cost, replica)
    for day, workers, gap in ((16, 4, (2, 12)), (18, 4, (2, 12)), (20, 1, (90, 150))):
        opens = to_ms(datetime(2026, 11, day, 10))
        queue = sorted((opens + rng.randint(0, 60_000), worker) for worker in range(workers))
        while queue:
            t, worker = heapq.heappop(queue)
            replica = worker % 2
            seen = [(end, cost) for end, cost, rep in charges if end <= t - lag or (rep == replica and end <= t)]
            if window_spend_at(seen, DAY, t) < 4:
                row = w.success(
                    rng,
                    key,
                    "claude-sonnet-4-5",
                    t,
                    int(rng.uniform(8, 40) * SECOND),
                    rng.randint(20_000, 40_000),
                    rng.randint(1_000, 3_000),
                )
                charges.append((row["_end"], row["spend"], replica))
                heapq.heappush(queue, (row["_end"] + int(rng.uniform(*gap) * SECOND), worker))
            else:
                w.failure(rng, key, "claude-sonnet-4-5", t, rng.randint(300, 600), "BudgetExceededError", message=message)
    rows = group_rows(w, "claude-sonnet-4-5", lambda r: r["api_key"] == key.token)
    start, spend = last_window(rows, DAY)
    last = max(rows, key=lambda r: (r["_end"], r["request_id"]))
    w.bws(
        f"team_member_model_spend:{len('u-erin')}:u-erin:team-platform:claude-sonnet-4-5:1d", "1d", start, spend - last["spend"]
    )
    w.note(
        f"LiteLLM_BudgetWindowSpend row for u-erin's window {ts(start)} lacks the flush of its last charge (${last['spend']:.4f})."
    )
    alice = group_rows(w, "claude-sonnet-4-5", lambda r: r["user"] == "u-alice" and r["team_id"] == "team-platform")
    state = counter_state(alice, DAY, SNAPSHOT_MS)
    assert state, "u-alice must have an open member window at the snapshot"
    set_counter(
        w,
        "team_member_model_spend",
        "team_member_model_budget_start_time",
        f"{len('u-alice')}:u-alice:team-platform",
        "claude-sonnet-4-5",
        "1d",
        DAY,
        *state,
    )


@scenario(23, "Scalar spend columns: a key stuck at $0, a team that lags, a total from before the ledger")
def scalar_spend(w: World) -> None:
    """bi-dashboards' `spend` and `total_spend` stayed $0 while its spend logs accumulated (as in LiteLLM issue
    #37144), so its $25 `max_budget` (lifetime: no budget_duration) never bit though the ledger holds more; team-data's
    `spend` misses the same increments, so it lags the ledger of its month. legacy-batch's `total_spend` carries
    $318.4421 spent before the ledger begins: no spend-log retention is configured, so the scan takes the ledger as
    complete and reports the difference (`--since` would skip lifetime comparisons). customer-acme spends more than
    its budget's $5 a month as a whole. Every other spend column equals the ledger over its period (the calendar
    month for `30d` budgets, the whole ledger without budget_duration)."""
    bi = w.keys["bi-dashboards"]
    bi.extra.update(spend_override=0.0, total_spend_override=0.0)
    w.teams["team-data"]["spend_missing_key"] = bi.token


# --------------------------------------------------------------------------------------------
# Table rows
# --------------------------------------------------------------------------------------------


def budget_row(budget_id, model_max_budget, created, max_budget=None, budget_duration=None) -> dict:
    return {
        "budget_id": budget_id,
        "max_budget": max_budget,
        "soft_budget": None,
        "budget_duration": budget_duration,
        "budget_reset_at": "2026-12-01T00:00:00.000" if budget_duration else None,
        "model_max_budget": model_max_budget,
        "allowed_models": [],
        "created_at": created,
        "created_by": "default_user_id",
        "updated_at": created,
        "updated_by": "default_user_id",
    }


def finish_tables(w: World) -> None:
    """Entity rows, with spend columns = November's successful spend of what they own."""
    ok = [r for r in w.logs if r["status"] == "success"]

    def spent(pred):
        return math.fsum(r["spend"] for r in ok if pred(r))

    key_rows, deleted_rows = [], []
    for alias, k in w.keys.items():
        x = k.extra
        spend = spent(lambda r: r["api_key"] == k.token)  # noqa: B023 - spent() calls it before k moves on
        row = {
            "token": k.token,
            "key_alias": alias,
            "user_id": k.user_id,
            "team_id": k.team_id,
            "models": x.get("models", []),
            "spend": x.get("spend_override", spend),
            "total_spend": x.get("total_spend_override", spend + x.get("prior_spend", 0.0)),
            "max_budget": x.get("max_budget"),
            "budget_duration": x.get("budget_duration"),
            "budget_reset_at": "2026-12-01T00:00:00.000" if x.get("budget_duration") else None,
            "model_max_budget": k.model_max_budget,
            "model_spend": x.get("model_spend", {}),
            "budget_id": x.get("budget_id"),
            "metadata": {},
            "aliases": {},
            "config": {},
            "permissions": {},
            "budget_fallbacks": {},
            "blocked": None,
            "created_at": x["created_at"],
            "created_by": k.user_id,
            "updated_at": x["created_at"],
            "updated_by": k.user_id,
        }
        if alias in w.deleted:
            h = hashlib.sha256(f"{SEED}/deleted/{alias}".encode()).hexdigest()
            row.update(
                id=f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}",
                soft_budget_cooldown=False,
                **w.deleted[alias],
                updated_at=w.deleted[alias]["deleted_at"],
            )
            deleted_rows.append(row)
        else:
            key_rows.append(row)
    w.tables["LiteLLM_VerificationToken"] = key_rows
    w.tables["LiteLLM_DeletedVerificationToken"] = deleted_rows
    created = "2026-06-02T09:00:00.000"
    w.tables["LiteLLM_UserTable"] = [
        {
            "user_id": uid,
            "user_alias": u["user_alias"],
            "user_email": u["user_email"],
            "user_role": "internal_user",
            "teams": u["teams"],
            "team_id": None,
            "models": [],
            "max_budget": u["max_budget"],
            "budget_duration": "30d" if u["max_budget"] else None,
            "budget_reset_at": "2026-12-01T00:00:00.000" if u["max_budget"] else None,
            "spend": spent(lambda r, uid=uid: r["user"] == uid),
            "model_spend": {},
            "model_max_budget": u["model_max_budget"],
            "metadata": {},
            "created_at": created,
            "updated_at": created,
        }
        for uid, u in w.users.items()
    ]
    w.tables["LiteLLM_TeamTable"] = [
        {
            "team_id": tid,
            "team_alias": t["team_alias"],
            "admins": t["admins"],
            "members": t["members"],
            "members_with_roles": [
                {"role": "admin" if m in t["admins"] else "user", "user_id": m, "user_email": w.users[m]["user_email"]}
                for m in t["members"]
            ],
            "metadata": t.get("metadata", {}),
            "max_budget": t["max_budget"],
            "budget_duration": "30d",
            "budget_reset_at": "2026-12-01T00:00:00.000",
            "spend": spent(lambda r, tid=tid, t=t: r["team_id"] == tid and r["api_key"] != t.get("spend_missing_key")),
            "models": [],
            "blocked": False,
            "model_spend": {},
            "model_max_budget": t["model_max_budget"],
            "created_at": created,
            "updated_at": created,
        }
        for tid, t in w.teams.items()
    ]
    w.tables["LiteLLM_TeamMembership"] = [
        {
            "user_id": m,
            "team_id": tid,
            "budget_id": None,
            "spend": spent(lambda r, m=m, tid=tid: r["user"] == m and r["team_id"] == tid),
            "total_spend": spent(lambda r, m=m, tid=tid: r["user"] == m and r["team_id"] == tid),
        }
        for tid, t in w.teams.items()
        for m in t["members"]
    ]
    w.tables["LiteLLM_EndUserTable"] = [
        {
            "user_id": eid,
            "alias": e["alias"],
            "budget_id": e["budget_id"],
            "blocked": False,
            "spend": spent(lambda r, eid=eid: r["end_user"] == eid),
        }
        for eid, e in w.end_users.items()
    ]
    w.tables["LiteLLM_SpendLogs"] = [
        {k: v for k, v in r.items() if not k.startswith("_")}
        for r in sorted(w.logs, key=lambda r: (r["_start"], r["request_id"]))
    ]


def build() -> World:
    w = World()
    for name in ("LiteLLM_BudgetTable", "LiteLLM_ProxyModelTable", "LiteLLM_BudgetWindowSpend", "LiteLLM_DailyUserSpend"):
        w.tables[name] = []
    # Scenarios 14, 17 and 18 describe or aggregate every row, so they run once every row exists.
    for number, _title, fn in sorted(SCENARIOS, key=lambda s: (s[0] in (14, 17, 18), s[0])):
        w.scenario_no = number
        fn(w)
    finish_tables(w)
    return w


# --------------------------------------------------------------------------------------------
# The reference computation (LiteLLM 1.99+ semantics), from the written rows only
# --------------------------------------------------------------------------------------------


def reference(tables: dict, deployments: list, redis_dump: dict) -> dict:
    """What a correct scan finds. Plain loops, independent of the generator's own bookkeeping.

    - Canonical group of a row: its model_group; else the group of its model_id (config ids and
      LiteLLM_ProxyModelTable); else the group whose deployment string equals `model`, with or without
      the deployment's provider prefix. None: unresolved.
    - Entries of a key: its model_max_budget, or, when that is {}, the model_max_budget of its budget_id.
      An entry is usable when it is a mapping with a parseable duration (`time_period`/`budget_duration`,
      word aliases daily/weekly/monthly/hourly) and a limit >= 0 (`budget_limit`/`max_budget`, strings cast).
    - Scopes, each audited on its own rows independently (one request counts in up to five): key
      (`api_key`), team (`team_id`; the team's model_max_budget), user (`user`; the user's), end user
      (`end_user`; the model_max_budget of its budget_id), team member (`user` and `team_id`; the
      membership's budget_id when that budget's model_max_budget is non-empty, else the budget named by
      the team's `metadata.team_member_budget_id`). Counters key a team member as `{len(user)}:{user}:{team}`.
    - A row is governed by the first usable entry among: its group, the group's last `/` segment; an
      access group serving the group (alphabetical); a `*` glob matching the group name whole.
    - Team entries set aside for a key (LiteLLM 1.109+): when the key's own (effective) entries hold a usable
      one named after the row's group (the group or its last `/` segment) with a limit >= 0, the team's
      entries of those names do not govern that key's rows; the team's group and glob entries still do.
    - Charges: successful rows with an api_key, governed, at endTime, in (endTime, startTime, request_id)
      order. A window opens at a charge when none is open and lasts the period; over budget means spend > limit.
    - Leak: a successful governed row whose startTime falls in a window whose charges with endTime <=
      startTime already total >= limit. Counted in the window the row is charged to.
    - Counter ledger: governed charges with endTime in [window_start - 1 s, window_start + period). Counter keys
      are `{prefix}:{entity}:{entry}:{duration}` (prefix by scope: virtual_key_spend, team_model_spend,
      user_model_spend, end_user_model_spend, team_member_model_spend); the window starts at the entry's start
      key, else the entity's (1.82-1.98). A counter no usable entry of that name and duration owns is miskeyed.
    - Missing counter: an entry's last window, open at the snapshot with spend > $0.0001, that no counter in the
      store enforcement reads covers (one starting in [window start - 1 s, window end)): it reads $0, an error.
      That store is Redis when it holds a per-model counter, else LiteLLM_BudgetWindowSpend, which never holds
      end users' windows (they stay on each replica).
    - Scalar `spend`: against the entity's charged rows with startTime in [period start, snapshot]. The period
      ends at budget_reset_at and starts a calendar month earlier for `30d`/`Nmo` (the duration earlier
      otherwise); without budget_duration it is the whole ledger (no spend-log retention is configured). Error
      when the entity has a max_budget and `spend` is below the ledger, else warning. `max_budget` below the
      period's ledger: over budget as a whole (warning). `total_spend` (keys, memberships): the whole ledger (warning).
    - Legacy `model_spend`: each name placed on its alias (or the alias of the deployment it names, else
      itself), against the key's lifetime charged ledger of that group (info).
    - Amounts: "raw" is math.fsum of the spends (exactly rounded, independent of summation order).
    """
    # model groups -----------------------------------------------------------------------------
    group_of_id, group_of_deployment, access_groups, served = {}, {}, {}, set()
    all_deps = [(d["model_name"], d["litellm_params"]["model"], d["model_info"]) for d in deployments]
    all_deps += [
        (m["model_name"], m["litellm_params"]["model"], m["model_info"] or {"id": m["model_id"]})
        for m in tables["LiteLLM_ProxyModelTable"]
    ]
    for name, model, info in all_deps:
        group_of_id[info["id"]] = name
        if "*" not in name:
            served.add(name)
        if "*" not in model:
            group_of_deployment[model] = name
            if "/" in model:
                group_of_deployment[model.split("/", 1)[1]] = name
        for ag in info.get("access_groups", []):
            access_groups.setdefault(ag, set()).add(name)
    wildcard_names = [name for name, _, _ in all_deps if "*" in name]

    def canonical(row):
        if row.get("model_group"):
            return row["model_group"]
        if row.get("model_id") and row["model_id"] in group_of_id:
            return group_of_id[row["model_id"]]
        return group_of_deployment.get(row["model"])

    def glob_match(pattern, name):
        return re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), name) is not None

    # durations ------------------------------------------------------------------------------
    def parse_duration(raw):
        if not isinstance(raw, str):
            return None
        s = raw.strip().lower().replace(" ", "")
        s = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}.get(s, s)
        m = re.match(r"(\d+)(mo|[smhdw]?)", s)
        if not m or not m.group(2):
            return None
        n, unit = int(m.group(1)), m.group(2)
        if unit == "mo":

            def add(start, n=n):
                y, mo = divmod(start.month - 1 + n, 12)
                y, mo = start.year + y, mo + 1
                return start.replace(year=y, month=mo, day=min(start.day, calendar.monthrange(y, mo)[1]))

            return add
        seconds = n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
        return lambda start, seconds=seconds: start + timedelta(seconds=seconds)

    def parse_entries(mmb):
        entries = {}
        for name, value in (mmb or {}).items():
            e = {"name": name, "raw": value, "usable": False}
            if not isinstance(value, dict):
                e["problem"] = f"invalid: legacy float format ({value!r}); LiteLLM 1.99+ ignores entries that are not mappings"
            else:
                dur = value["time_period"] if "time_period" in value else value.get("budget_duration")
                limit = value["budget_limit"] if "budget_limit" in value else value.get("max_budget")
                if dur is None:
                    e["problem"] = "invalid: no budget_duration/time_period"
                elif parse_duration(dur) is None:
                    e["problem"] = f"invalid: duration {dur!r} is not a LiteLLM duration (units s, m, h, d, w, mo)"
                elif limit is None or float(limit) < 0:
                    e["problem"] = "unenforced: null or negative limit"
                else:
                    e.update(usable=True, limit=float(limit), duration=dur, add=parse_duration(dur))
            entries[name] = e
        return entries

    def resolve(group, entries):
        if group is None:
            return None
        usable = {n for n, e in entries.items() if e["usable"]}
        for candidate in (group, group.rsplit("/", 1)[-1]):
            if candidate in usable:
                return candidate
        for name in sorted(usable):
            if name in access_groups and name not in served and group in access_groups[name]:
                return name
        globs = sorted(
            (n for n in usable if "*" in n and glob_match(n, group)), key=lambda n: (-len(n.replace("*", "")), n.count("*"), n)
        )
        return globs[0] if globs else None

    rows = []
    for r in tables["LiteLLM_SpendLogs"]:
        rows.append(
            dict(r, _start=datetime.fromisoformat(r["startTime"]), _end=datetime.fromisoformat(r["endTime"]), _group=canonical(r))
        )
    observed_groups = {r["_group"] for r in rows if r["_group"]}

    def money(x):
        return {"usd": f"{x:.4f}", "raw": x}

    def unenforceable_reason(name):
        names = served | observed_groups
        if name in names or any(name == g.rsplit("/", 1)[-1] for g in names):
            return None
        if name in access_groups and name not in served:
            return None
        if "*" in name and any(glob_match(name, g) for g in names):
            return None
        if any(glob_match(wc, name) for wc in wildcard_names):
            return None
        if name in group_of_deployment:
            return (
                f"unenforceable: names the deployment of alias {group_of_deployment[name]!r}; requests carry the alias, "
                "and resolution never looks at deployment strings"
            )
        return "unenforceable: matches no model group, access group or glob target served by this proxy"

    def charged(r):
        return r["status"] == "success" and bool(r["api_key"])

    def audit_entity(scope_rows, mmb, source, set_aside=None):
        """Every entry of one entity. `set_aside(row)`: entry names that do not govern that row (team scope)."""
        entries = parse_entries(mmb)
        out = []
        for name, e in entries.items():
            item = {"entry": name, "value": e["raw"], "source": source}
            if not e["usable"]:
                item.update(status="invalid" if e["problem"].startswith("invalid") else "unenforced", reason=e["problem"])
                out.append(item)
                continue
            reason = unenforceable_reason(name)
            governed, shadowed = [], []
            for r in scope_rows:
                if not charged(r):
                    continue
                hidden = set_aside(r) if set_aside else ()
                if resolve(r["_group"], {n: x for n, x in entries.items() if n not in hidden}) == name:
                    governed.append(r)
                elif hidden and resolve(r["_group"], entries) == name:
                    shadowed.append(r)
            charges = sorted(governed, key=lambda r: (r["_end"], r["_start"], r["request_id"]))
            windows = []
            for c in charges:
                if not windows or c["_end"] >= windows[-1]["end"]:
                    windows.append({"start": c["_end"], "end": e["add"](c["_end"]), "charges": [], "leaked": []})
                windows[-1]["charges"].append(c)
                c["_window"] = windows[-1]
            for c in charges:
                open_window = next((wd for wd in windows if wd["start"] <= c["_start"] < wd["end"]), None)
                before = math.fsum(d["spend"] for d in open_window["charges"] if d["_end"] <= c["_start"]) if open_window else 0.0
                if before >= e["limit"]:
                    c["_window"]["leaked"].append(c)
            for wd in windows:
                wd["spend"] = math.fsum(c["spend"] for c in wd["charges"])
                wd["after"] = len(wd["leaked"])
                wd["after_spend"] = math.fsum(c["spend"] for c in wd["leaked"])
            item.update(
                status="unenforceable" if reason else "ok",
                reason=reason,
                limit=e["limit"],
                duration=e["duration"],
                governed_rows=len(charges),
                governed_spend=money(math.fsum(c["spend"] for c in charges)),
                windows=len(windows),
                max_window_spend=money(max((wd["spend"] for wd in windows), default=0.0)),
                over_budget_windows=[
                    {
                        "start": wd["start"].isoformat(timespec="milliseconds"),
                        "end": wd["end"].isoformat(timespec="milliseconds"),
                        "spend": money(wd["spend"]),
                        "limit": e["limit"],
                        "requests": len(wd["charges"]),
                        "requests_after_limit": wd["after"],
                        "spend_after_limit": money(wd["after_spend"]),
                        "severity": "error" if wd["after"] > 0 else "warning",
                    }
                    for wd in windows
                    if wd["spend"] > e["limit"]
                ],
            )
            if set_aside is not None:
                by_key = {}
                for r in shadowed:
                    by_key.setdefault(r["api_key"], []).append(r["spend"])
                item["set_aside_for_keys"] = [
                    {"api_key": k, "key_alias": alias_of_token.get(k), "rows": len(v), "spend": money(math.fsum(v))}
                    for k, v in sorted(by_key.items())
                ]
            item["_charges"], item["_add"], item["_windows"] = charges, e["add"], windows
            out.append(item)
        return out

    budgets = {b["budget_id"]: b for b in tables["LiteLLM_BudgetTable"]}
    keys = [(k, False) for k in tables["LiteLLM_VerificationToken"]] + [
        (k, True) for k in tables["LiteLLM_DeletedVerificationToken"]
    ]
    alias_of_token = {k["token"]: k["key_alias"] for k, _ in keys}
    key_results, key_entries = [], {}
    for k, deleted in keys:
        own = [r for r in rows if r["api_key"] == k["token"]]
        mmb, source = k["model_max_budget"], "key"
        if not mmb and k.get("budget_id"):
            mmb, source = budgets[k["budget_id"]]["model_max_budget"], f"budget_id {k['budget_id']}"
        key_entries[k["token"]] = parse_entries(mmb)
        ok_rows = [r for r in own if r["status"] == "success"]
        key_results.append(
            {
                "key_alias": k["key_alias"],
                "token": k["token"],
                "deleted": deleted,
                "rows": len(own),
                "successful": len(ok_rows),
                "failed": sum(r["status"] == "failure" for r in own),
                "spend": money(math.fsum(r["spend"] for r in ok_rows)),
                "entries": audit_entity(own, mmb, source),
            }
        )

    def team_set_aside(row):
        """LiteLLM 1.109+: a usable key entry named after the row's group (the group or its last `/` segment), with a
        limit >= 0, replaces the team's entries of those names for that key's rows."""
        if row["_group"] is None:
            return ()
        candidates = (row["_group"], row["_group"].rsplit("/", 1)[-1])
        own = key_entries.get(row["api_key"], {})
        return candidates if any(c in own and own[c]["usable"] and own[c]["limit"] >= 0 for c in candidates) else ()

    # The other scopes: (scope, entity id as counters key it, alias as the scan shows it, rows, model_max_budget, source)
    teams = {t["team_id"]: t for t in tables["LiteLLM_TeamTable"]}
    scoped = []
    for t in tables["LiteLLM_TeamTable"]:
        scoped.append(
            ("team", t["team_id"], t["team_alias"], lambda r, t=t: r["team_id"] == t["team_id"], t["model_max_budget"], "team", t)
        )
    for u in tables["LiteLLM_UserTable"]:
        scoped.append(
            (
                "user",
                u["user_id"],
                u["user_alias"] or u["user_email"],
                lambda r, u=u: r["user"] == u["user_id"],
                u["model_max_budget"],
                "user",
                u,
            )
        )
    for e in tables["LiteLLM_EndUserTable"]:
        b = budgets.get(e["budget_id"])
        scoped.append(
            (
                "end_user",
                e["user_id"],
                e["alias"],
                lambda r, e=e: r["end_user"] == e["user_id"],
                b["model_max_budget"] if b else None,
                f"budget_id {e['budget_id']}" if b else "none",
                dict(e, **{f: b[f] if b else None for f in ("max_budget", "budget_duration", "budget_reset_at")}),
            )
        )
    for m in tables["LiteLLM_TeamMembership"]:
        default = (teams.get(m["team_id"], {}).get("metadata") or {}).get("team_member_budget_id")
        own = budgets.get(m["budget_id"]) if m["budget_id"] else None
        if own and m["budget_id"] != default and isinstance(own["model_max_budget"], dict) and own["model_max_budget"]:
            b, source = own, f"budget_id {m['budget_id']}"
        else:
            b, source = budgets.get(default) if default else None, f"team metadata team_member_budget_id {default}"
        scoped.append(
            (
                "team_member",
                f"{len(m['user_id'])}:{m['user_id']}:{m['team_id']}",
                f"{m['user_id']} in {m['team_id']}",
                lambda r, m=m: r["user"] == m["user_id"] and r["team_id"] == m["team_id"],
                b["model_max_budget"] if b else None,
                source if b else "none",
                dict(m, **{f: b[f] if b else None for f in ("max_budget", "budget_duration", "budget_reset_at")}),
            )
        )
    other_scopes = []
    for scope, entity, alias, belongs, mmb, source, _ in scoped:
        if mmb:
            result = {
                "scope": scope,
                "id": entity,
                "alias": alias,
                "entries": audit_entity(
                    [r for r in rows if belongs(r)], mmb, source, set_aside=team_set_aside if scope == "team" else None
                ),
            }
            if scope == "team_member":
                result["user_id"], _, result["team_id"] = entity.split(":", 1)[1].partition(":")
            other_scopes.append(result)

    # counters ---------------------------------------------------------------------------------
    prefixes = {
        "virtual_key_spend": ("key", "virtual_key_budget_start_time"),
        "team_model_spend": ("team", "team_model_budget_start_time"),
        "user_model_spend": ("user", "user_model_budget_start_time"),
        "end_user_model_spend": ("end_user", "end_user_budget_start_time"),
        "team_member_model_spend": ("team_member", "team_member_model_budget_start_time"),
    }
    start_prefixes = {start for _, start in prefixes.values()}
    owners = {("key", kr["token"]): (kr["key_alias"], kr) for kr in key_results}
    owners.update({(s["scope"], s["id"]): (s["alias"], s) for s in other_scopes})

    def split_counter(counter_key):
        prefix, _, rest = counter_key.partition(":")
        if prefix == "team_member_model_spend":
            length, _, tail = rest.partition(":")
            user = tail[: int(length)]
            team, _, rest = tail[int(length) + 1 :].partition(":")
            entity = f"{length}:{user}:{team}"
        else:
            entity, _, rest = rest.partition(":")
        entry, _, duration = rest.rpartition(":")
        return prefixes[prefix][0], entity, entry, duration

    def audit_counter(store, counter_key, cached, window_start):
        scope, entity, entry, duration = split_counter(counter_key)
        alias, owner = owners.get((scope, entity), (None, None))
        item = {
            "store": store,
            "key": counter_key,
            "scope": scope,
            "entity_id": entity,
            "alias": alias,
            "key_alias": alias if scope == "key" else None,
            "entry": entry,
            "duration": duration,
            "cached": money(cached),
            "window_start": window_start.isoformat(timespec="milliseconds") if window_start else None,
        }
        match = next(
            (
                e
                for e in (owner["entries"] if owner else [])
                if e["entry"] == entry and e.get("duration") == duration and "_charges" in e
            ),
            None,
        )
        if match is None:
            item.update(
                status="miskeyed",
                ledger=None,
                difference=None,
                reason=f"no usable entry {entry!r} with duration {duration!r} on this {scope.replace('_', ' ')}; enforcement never reads this counter",
            )
            return item
        lo, hi = window_start - timedelta(seconds=1), match["_add"](window_start)
        ledger = math.fsum(c["spend"] for c in match["_charges"] if lo <= c["_end"] < hi)
        item.update(
            ledger=money(ledger),
            difference=money(cached - ledger),
            status="drift" if abs(cached - ledger) > TOLERANCE else "ok",
            window_end=hi.isoformat(timespec="milliseconds"),
            limit=match["limit"],
        )
        return item

    counters, ignored = [], []
    for rk in sorted(redis_dump):
        prefix = rk.partition(":")[0]
        if prefix in prefixes:
            _, entity, entry, duration = split_counter(rk)
            start_prefix = prefixes[prefix][1]
            start = redis_dump.get(f"{start_prefix}:{entity}:{entry}:{duration}") or redis_dump.get(f"{start_prefix}:{entity}")
            ws = EPOCH + timedelta(seconds=float(start["value"])) if start else None
            counters.append(audit_counter("redis", rk, float(redis_dump[rk]["value"]), ws))
        elif prefix not in start_prefixes:
            ignored.append(rk)
    for b in sorted(tables["LiteLLM_BudgetWindowSpend"], key=lambda b: b["entity_id"]):
        if b["entity_type"] == "model_max_budget":
            counters.append(
                audit_counter("LiteLLM_BudgetWindowSpend", b["entity_id"], b["spend"], datetime.fromisoformat(b["window_start"]))
            )

    def missing_counters(store):
        """Open windows with spend and no counter in `store`, where enforcement reads (so it reads $0)."""
        found = []
        for (scope, entity), (alias, owner) in owners.items():
            if store == "LiteLLM_BudgetWindowSpend" and scope == "end_user":
                continue  # end-user windows stay on each replica: never shared through the table
            for e in owner["entries"]:
                if not e.get("_windows"):
                    continue
                last = e["_windows"][-1]
                if not (last["start"] <= SNAPSHOT < last["end"]) or last["spend"] <= TOLERANCE:
                    continue
                if any(
                    c["store"] == store
                    and (c["scope"], c["entity_id"], c["entry"], c["duration"]) == (scope, entity, e["entry"], e["duration"])
                    and (
                        c["window_start"] is None
                        or last["start"] - timedelta(seconds=1) <= datetime.fromisoformat(c["window_start"]) < last["end"]
                    )
                    for c in counters
                ):
                    continue
                prefix = next(p for p, (s, _) in prefixes.items() if s == scope)
                found.append(
                    {
                        "store": store,
                        "key": f"{prefix}:{entity}:{e['entry']}:{e['duration']}",
                        "scope": scope,
                        "entity_id": entity,
                        "alias": alias,
                        "entry": e["entry"],
                        "duration": e["duration"],
                        "limit": e["limit"],
                        "window_start": last["start"].isoformat(timespec="milliseconds"),
                        "window_end": last["end"].isoformat(timespec="milliseconds"),
                        "ledger": money(last["spend"]),
                        "cached": money(0.0),
                    }
                )
        return sorted(found, key=lambda f: f["key"])

    # scalar spend columns -----------------------------------------------------------------------
    def period_start(duration, reset_at):
        d = {"hourly": "1h", "daily": "24h", "weekly": "7d", "monthly": "30d"}.get(duration.strip().lower(), duration)
        m = re.match(r"(\d+)(mo|[smhdw])", d)
        n, unit = int(m.group(1)), m.group(2)
        if unit == "mo" or (unit == "d" and n == 30):  # calendar months, as LiteLLM's reset job aligns them
            y, mo = divmod(reset_at.month - 1 - (n if unit == "mo" else 1), 12)
            return reset_at.replace(
                year=reset_at.year + y, month=mo + 1, day=min(reset_at.day, calendar.monthrange(reset_at.year + y, mo + 1)[1])
            )
        return reset_at - timedelta(seconds=n * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[unit])

    scalar_holders = [
        ("key", k["token"], k["key_alias"], lambda r, k=k: r["api_key"] == k["token"], k)
        for k in tables["LiteLLM_VerificationToken"]
    ]
    scalar_holders += [(scope, entity, alias, belongs, row) for scope, entity, alias, belongs, _, _, row in scoped]
    scalar = []
    for scope, entity, alias, belongs, h in scalar_holders:
        if h.get("budget_duration") and not h.get("budget_reset_at"):
            continue  # the period is unknowable
        reset_at = datetime.fromisoformat(h["budget_reset_at"]) if h.get("budget_duration") else None
        start = period_start(h["budget_duration"], reset_at) if reset_at else None
        mine = [r for r in rows if charged(r) and belongs(r)]
        ledger = math.fsum(r["spend"] for r in mine if start is None or start <= r["_start"] <= SNAPSHOT)
        common = {
            "scope": scope,
            "entity_id": entity,
            "alias": alias,
            "ledger": money(ledger),
            "max_budget": h.get("max_budget"),
            "period_start": start.isoformat(timespec="milliseconds") if start else None,
            "period_end": reset_at.isoformat(timespec="milliseconds") if reset_at else None,
        }
        if h.get("spend") is not None and abs(h["spend"] - ledger) > TOLERANCE:
            scalar.append(
                dict(
                    common,
                    kind="counter_drift",
                    column="spend",
                    cached=money(h["spend"]),
                    difference=money(h["spend"] - ledger),
                    severity="error" if h.get("max_budget") is not None and h["spend"] < ledger else "warning",
                )
            )
        if h.get("max_budget") is not None and ledger >= h["max_budget"]:
            # Requests admitted after the ledger reached the budget: LiteLLM blocks a key, user or team member at
            # spend >= max_budget, a team or end user at spend > max_budget; a user's budget gates only its
            # non-team keys. The instant the ledger got there is the end of the charge that took it there.
            in_period = sorted(
                (r for r in mine if start is None or start <= r["_start"] <= SNAPSHOT), key=lambda r: (r["_end"], r["request_id"])
            )
            at_limit = scope in ("key", "user", "team_member")
            running, reached = 0.0, None
            for r in in_period:
                running += r["spend"]
                if reached is None and (running >= h["max_budget"] if at_limit else running > h["max_budget"]):
                    reached = r["_end"]
            after = [
                r for r in in_period if reached is not None and r["_start"] >= reached and (scope != "user" or not r["team_id"])
            ]
            if ledger > h["max_budget"] or after:
                scalar.append(
                    dict(
                        common,
                        kind="over_budget",
                        column="max_budget",
                        cached=None,
                        difference=money(ledger - h["max_budget"]),
                        requests_after_limit=len(after),
                        spend_after_limit=money(math.fsum(r["spend"] for r in after)),
                        severity="error" if after else "warning",
                    )
                )
        if "total_spend" in h and h["total_spend"] is not None:
            lifetime = math.fsum(r["spend"] for r in mine)
            if abs(h["total_spend"] - lifetime) > TOLERANCE:
                scalar.append(
                    dict(
                        common,
                        kind="counter_drift",
                        column="total_spend",
                        ledger=money(lifetime),
                        cached=money(h["total_spend"]),
                        difference=money(h["total_spend"] - lifetime),
                        period_start=None,
                        period_end=None,
                        severity="warning",
                    )
                )

    # legacy model_spend -------------------------------------------------------------------------
    model_spend, model_spend_miskeyed = [], []
    for k in tables["LiteLLM_VerificationToken"]:
        merged = {}
        for name, value in (k["model_spend"] or {}).items():
            group = name if name in served else group_of_deployment.get(name, name)
            merged.setdefault(group, []).append((name, float(value)))
            if group != name:  # named after a deployment: a miskeyed (info) finding of its own
                model_spend_miskeyed.append(
                    {
                        "key_alias": k["key_alias"],
                        "token": k["token"],
                        "name": name,
                        "group": group,
                        "cached": money(float(value)),
                        "severity": "info",
                    }
                )
        for group, items in sorted(merged.items()):
            ledger = math.fsum(r["spend"] for r in rows if charged(r) and r["api_key"] == k["token"] and r["_group"] == group)
            cached = math.fsum(v for _, v in items)
            if abs(cached - ledger) > TOLERANCE:
                model_spend.append(
                    {
                        "key_alias": k["key_alias"],
                        "token": k["token"],
                        "names": [n for n, _ in items],
                        "group": group,
                        "cached": money(cached),
                        "ledger": money(ledger),
                        "severity": "info",
                    }
                )

    # daily rollups ------------------------------------------------------------------------------
    ledger_days = {}
    for r in rows:
        if r["user"] is not None:
            g = (r["user"], r["startTime"][:10], r["api_key"], r["model"], r["custom_llm_provider"])
            agg = ledger_days.setdefault(g, {"spends": [], "api_requests": 0, "successful_requests": 0, "failed_requests": 0})
            agg["spends"].append(r["spend"])
            agg["api_requests"] += 1
            agg["successful_requests"] += r["status"] == "success"
            agg["failed_requests"] += r["status"] == "failure"
    for agg in ledger_days.values():
        agg["spend"] = math.fsum(agg.pop("spends"))
    discrepancies, seen = [], set()
    for d in tables["LiteLLM_DailyUserSpend"]:
        g = (d["user_id"], d["date"], d["api_key"], d["model"], d["custom_llm_provider"])
        seen.add(g)
        agg = ledger_days.get(g, {"spend": 0.0, "api_requests": 0, "successful_requests": 0, "failed_requests": 0})
        if abs(d["spend"] - agg["spend"]) > TOLERANCE or any(
            d[c] != agg[c] for c in ("api_requests", "successful_requests", "failed_requests")
        ):
            discrepancies.append(
                {
                    "user_id": g[0],
                    "date": g[1],
                    "api_key": g[2],
                    "model": g[3],
                    "custom_llm_provider": g[4],
                    "rollup_spend": money(d["spend"]),
                    "ledger_spend": money(agg["spend"]),
                    "difference": money(d["spend"] - agg["spend"]),
                    "rollup_requests": d["api_requests"],
                    "ledger_requests": agg["api_requests"],
                }
            )
    for g in sorted(set(ledger_days) - seen):
        discrepancies.append(
            {
                "user_id": g[0],
                "date": g[1],
                "api_key": g[2],
                "model": g[3],
                "custom_llm_provider": g[4],
                "rollup_spend": None,
                "ledger_spend": money(ledger_days[g]["spend"]),
                "difference": None,
            }
        )

    missing = {"redis": missing_counters("redis"), "LiteLLM_BudgetWindowSpend": missing_counters("LiteLLM_BudgetWindowSpend")}
    for kr in key_results + other_scopes:
        for e in kr["entries"]:
            for internal in ("_charges", "_add", "_windows"):
                e.pop(internal, None)
    ok_rows = [r for r in rows if r["status"] == "success"]
    return {
        "snapshot_time": SNAPSHOT.isoformat(timespec="milliseconds"),
        "tolerance": TOLERANCE,
        "totals": {
            "rows": len(rows),
            "successful": len(ok_rows),
            "failed": sum(r["status"] == "failure" for r in rows),
            "cache_hits": sum(r["cache_hit"] == "True" for r in rows),
            "empty_api_key": sum(not r["api_key"] for r in rows),
            "unresolved": sum(r["_group"] is None for r in rows),
            "unresolved_models": sorted({r["model"] for r in rows if r["_group"] is None}),
            "spend": money(math.fsum(r["spend"] for r in ok_rows)),
            "first_start": min(r["startTime"] for r in rows),
            "last_end": max(r["endTime"] for r in rows),
        },
        # The scan's row accounting: a failure is ignored first, then a row without api_key; the rest is
        # attributed when its model resolves, unresolved otherwise. read = attributed + unresolved + ignored.
        "scan_rows": {
            "read": len(rows),
            "ignored_failure": sum(r["status"] == "failure" for r in rows),
            "ignored_empty_api_key": sum(r["status"] != "failure" and not r["api_key"] for r in rows),
            "unresolved": sum(r["status"] != "failure" and bool(r["api_key"]) and r["_group"] is None for r in rows),
            "attributed": sum(r["status"] != "failure" and bool(r["api_key"]) and r["_group"] is not None for r in rows),
        },
        "keys": key_results,
        "other_scopes": other_scopes,
        "counters": counters,
        # Open windows without a counter where enforcement reads: Redis when the scan is given it, else the table.
        "missing_counters": missing,
        "ignored_redis_keys": ignored,
        "scalar": scalar,
        "model_spend": model_spend,
        "model_spend_miskeyed": model_spend_miskeyed,
        "rollups": {"rows": len(tables["LiteLLM_DailyUserSpend"]), "discrepancies": discrepancies},
    }


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def yaml_lines(value, indent=0) -> list[str]:
    """A tiny YAML emitter for the config (block style; strings JSON-quoted when not plain-safe)."""
    pad = "  " * indent

    def scalar(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", v) and v not in ("true", "false", "null", "yes", "no", "on", "off"):
            return v
        return json.dumps(v)

    lines = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.extend(yaml_lines(v, indent + 1))
            else:
                lines.append(
                    f"{pad}{k}: {scalar(v) if not isinstance(v, (dict, list)) else '{}' if isinstance(v, dict) else '[]'}"
                )
    else:
        for item in value:
            if isinstance(item, dict):
                sub = yaml_lines(item, indent + 1)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {scalar(item)}")
    return lines


def config_text() -> str:
    header = [
        "# LiteLLM proxy config of the sample deployment (generated by generate.py; do not edit by hand).",
        "# Aliases (model_name) differ from deployment strings (litellm_params.model) as in real deployments.",
        "# mistral-large is not here: it was added through the UI and lives in LiteLLM_ProxyModelTable.",
        "# No maximum_spend_logs_retention_period: every spend log is kept, so lifetime spend and total_spend are auditable.",
        "",
    ]
    body = {
        "model_list": DEPLOYMENTS,
        "router_settings": ROUTER_SETTINGS,
        "litellm_settings": LITELLM_SETTINGS,
        "general_settings": GENERAL_SETTINGS,
    }
    lines = []
    for section, value in body.items():
        lines.extend(yaml_lines({section: value}))
        lines.append("")
    return "\n".join(header + lines)


def dump_tables(tables: dict) -> str:
    parts = []
    for name in sorted(tables):
        rows = ",\n".join("  " + json.dumps(row, sort_keys=True) for row in tables[name])
        parts.append(f"{json.dumps(name)}: [\n{rows}\n]" if rows else f"{json.dumps(name)}: []")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def short(token: str) -> str:
    return token[:10] + "…"


def usd(m) -> str:
    return "—" if m is None else f"${m['usd']} (raw {m['raw']!r})"


def readme(w: World, expected: dict) -> str:
    t = expected["totals"]
    keys_by_alias = {k["key_alias"]: k for k in expected["keys"]}
    out = [
        "# Sample LiteLLM deployment",
        "",
        "Generated by `python sample_data/generate.py` (deterministic, standard library only). Do not edit the files by",
        "hand: change the generator and rerun it. Everything below, numbers included, is rendered by the generator from",
        "`expected.json`, which its `reference()` computes from the rows it wrote.",
        "",
        "| file | content |",
        "|---|---|",
        "| `config.yaml` | proxy config: 7 deployments, an `anthropic/*` wildcard, `model_group_alias`, access group `premium` |",
        "| `litellm_tables.json` | `{table: [row, ...]}` with LiteLLM's DDL column names; timestamps naive UTC `YYYY-MM-DDTHH:MM:SS.mmm` |",
        '| `redis.json` | `{key: {"value": str, "ttl_seconds": int or null}}`, TTLs as of the snapshot |',
        '| `expected.json` | the findings below, machine-readable (amounts as `{"usd": 4-decimal string, "raw": float}`) |',
        "",
        f'Snapshot: `{expected["snapshot_time"]}` UTC ("now" for TTLs). Traffic: {t["first_start"]} .. {t["last_end"]}. '
        "Rows starting before 2026-11-04 were written by LiteLLM 1.80 (no provider prefix on `model`), later rows by 1.110.",
        "",
        "## Deployment",
        "",
        "| alias (model_group) | deployment (`model` in 1.110 rows) | model_id | access groups |",
        "|---|---|---|---|",
    ]
    for d in DEPLOYMENTS:
        out.append(
            f"| `{d['model_name']}` | `{d['litellm_params']['model']}` | `{d['model_info']['id']}` | {', '.join(d['model_info'].get('access_groups', [])) or ''} |"
        )
    for m in DB_MODELS:
        out.append(f"| `{m['model_name']}` (DB only) | `{m['litellm_params']['model']}` | `{m['model_id']}` | |")
    out += [
        "",
        "Aliases: `gpt4` → `gpt-4o`, `opus` → `claude-opus-4-6` (hidden). Called but configured nowhere: `ollama/llama3.1:8b`.",
        "",
        "| key alias | hash | owner | team | `model_max_budget` | budget_id | scenario |",
        "|---|---|---|---|---|---|---|",
    ]
    for alias, k in w.keys.items():
        out.append(
            f"| {alias}{' (deleted)' if alias in w.deleted else ''} | `{short(k.token)}` | {k.user_id} | {k.team_id or ''} | "
            f"`{json.dumps(k.model_max_budget)}` | {k.extra.get('budget_id') or ''} | {k.scenario} |"
        )
    sr = expected["scan_rows"]
    out += [
        "",
        "## What a correct scan must find",
        "",
        "Semantics (LiteLLM 1.99+), as `reference()` in `generate.py` applies them:",
        "",
    ]
    out += doc_bullets(reference.__doc__)
    out += [
        "- Tolerance for counters and rollups: $0.0001. Severity of an over-budget window: error if requests_after_limit > 0, else warning.",
        "",
        "### Totals",
        "",
        "| rows read | successful | failed | cache hits | empty api_key | unresolved | spend (successful) |",
        "|---|---|---|---|---|---|---|",
        f"| {t['rows']} | {t['successful']} | {t['failed']} | {t['cache_hits']} | {t['empty_api_key']} | {t['unresolved']} "
        f"(`{'`, `'.join(t['unresolved_models'])}`) | {usd(t['spend'])} |",
        "",
        "How the scan accounts for every row (`rows` in its JSON): failures are ignored first, then rows without",
        "an `api_key`; the rest are attributed when their model resolves, unresolved otherwise.",
        "",
        "| read | attributed | unresolved | ignored: failure | ignored: empty api_key |",
        "|---|---|---|---|---|",
        f"| {sr['read']} | {sr['attributed']} | {sr['unresolved']} | {sr['ignored_failure']} | {sr['ignored_empty_api_key']} |",
        "",
    ]
    for number, title, fn in sorted(SCENARIOS, key=lambda s: s[0]):
        out += [f"### {number}. {title}", "", " ".join(line.strip() for line in fn.__doc__.split("\n")), ""]
        for alias, k in w.keys.items():
            if k.scenario != number:
                continue
            kr = keys_by_alias[alias]
            out.append(
                f"**{alias}** `{short(k.token)}`{' (deleted)' if kr['deleted'] else ''}: {kr['rows']} rows "
                f"({kr['successful']} successful, {kr['failed']} failed), spend {usd(kr['spend'])}."
            )
            out.append("")
            out.extend(entry_lines(kr["entries"]))
        for line in w.notes.get(number, []):
            out += [f"- {line}"]
        out.append("")
    out += by_scope(expected) + by_cache(expected)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).rstrip() + "\n"


SCOPE_TITLES = {"key": "Keys", "team": "Teams", "user": "Internal users", "end_user": "End users", "team_member": "Team members"}


def counter_name(key: str, scope: str) -> str:
    """A counter key with a key hash shortened (other scopes' ids are readable as they are)."""
    if scope != "key":
        return key
    prefix, token, rest = key.split(":", 2)
    return f"{prefix}:{short(token)}:{rest}"


def by_scope(expected: dict) -> list[str]:
    out = [
        "## Findings by scope",
        "",
        "Every scope is audited on its own rows (key: `api_key`, team: `team_id`, user: `user`, end user: `end_user`,",
        "team member: `user` and `team_id`) against its own per-model budget; one request can count in five scopes.",
        "",
        "### Keys",
        "",
        "Per-model over-budget windows (the entries, windows and reasons are in the scenarios above):",
        "",
        "| key | entry | windows over budget | of them errors | requests after limit | spend after limit |",
        "|---|---|---|---|---|---|",
    ]
    for k in expected["keys"]:
        for e in k["entries"]:
            over = e.get("over_budget_windows") or []
            if over:
                out.append(
                    f"| {k['key_alias']} | `{e['entry']}` | {len(over)} | {sum(wd['severity'] == 'error' for wd in over)} | "
                    f"{sum(wd['requests_after_limit'] for wd in over)} | "
                    f"${math.fsum(wd['spend_after_limit']['raw'] for wd in over):.4f} |"
                )
    out.append("")
    out += whole_entity_lines(expected, "key")
    for scope in ("team", "user", "end_user", "team_member"):
        out += [f"### {SCOPE_TITLES[scope]}", ""]
        for s in expected["other_scopes"]:
            if s["scope"] != scope:
                continue
            out += [f"**{s['alias']}** (`{s['id']}`):", ""]
            out.extend(entry_lines(s["entries"]))
            for e in s["entries"]:
                for aside in e.get("set_aside_for_keys") or []:
                    out += [
                        f"- entry `{e['entry']}` does not govern key {aside['key_alias']} (`{short(aside['api_key'])}`), whose own entry of "
                        f"that name replaces it: {aside['rows']} rows, {usd(aside['spend'])}, left out of the team's windows.",
                        "",
                    ]
        out += whole_entity_lines(expected, scope)
    return out


def whole_entity_lines(expected: dict, scope: str) -> list[str]:
    over = [x for x in expected["scalar"] if x["scope"] == scope and x["kind"] == "over_budget"]
    if not over:
        return []
    out = [
        "Over budget as a whole (`max_budget`; an error when requests were admitted after the ledger had reached it):",
        "",
        "| entity | period | ledger | max_budget | over by | admitted after | severity |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in over:
        period = f"{x['period_start']} .. {x['period_end']}" if x["period_start"] else "lifetime"
        out.append(
            f"| {x['alias']} | {period} | {usd(x['ledger'])} | ${x['max_budget']:g} | {usd(x['difference'])} | "
            f"{x['requests_after_limit']} ({usd(x['spend_after_limit'])}) | {x['severity']} |"
        )
    return out + [""]


def by_cache(expected: dict) -> list[str]:
    out = ["## Findings by cache", ""]
    for store, title, reads in (
        ("redis", "Redis per-model counters", "with `--redis`"),
        ("LiteLLM_BudgetWindowSpend", "LiteLLM_BudgetWindowSpend (per-model windows shared without Redis)", "without `--redis`"),
    ):
        out += [
            f"### {title}",
            "",
            "| scope | counter key | entity | cached | window start | ledger | difference | status |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in expected["counters"]:
            if c["store"] == store:
                out.append(
                    f"| {c['scope']} | `{counter_name(c['key'], c['scope'])}` | {c['alias']} | {usd(c['cached'])} | {c['window_start'] or '—'} | "
                    f"{usd(c['ledger'])} | {usd(c['difference'])} | **{c['status']}** |"
                )
        out += [
            "",
            (
                f"Enforcement reads this store when the scan is run {reads} (Redis, when it holds any per-model counter, else the table; "
                "end users are never shared through the table). These windows are open at the snapshot with spend, but no counter here "
                "covers them: enforcement reads $0 (counter_drift, error):"
            ),
            "",
            "| scope | counter key | entity | window | ledger |",
            "|---|---|---|---|---|",
        ]
        for m in expected["missing_counters"][store]:
            out.append(
                f"| {m['scope']} | `{counter_name(m['key'], m['scope'])}` | {m['alias']} | {m['window_start']} .. {m['window_end']} | {usd(m['ledger'])} |"
            )
        out.append("")
    out += [
        "Not per-model counters (must be ignored): "
        + ", ".join(
            f"`{k.replace(k.split(':')[-1], short(k.split(':')[-1])) if k.startswith('spend:key:') else k}`"
            for k in expected["ignored_redis_keys"]
        )
        + ".",
        "",
    ]
    for column, title in (("spend", "Scalar `spend`"), ("total_spend", "`total_spend` (lifetime)")):
        out += [
            f"### {title}",
            "",
            f"| scope | entity | period | `{column}` | ledger | difference | severity |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in expected["scalar"]:
            if x["column"] == column:
                period = f"{x['period_start']} .. {x['period_end']}" if x["period_start"] else "lifetime"
                out.append(
                    f"| {x['scope']} | {x['alias']} | {period} | {usd(x['cached'])} | {usd(x['ledger'])} | {usd(x['difference'])} | {x['severity']} |"
                )
        out.append("")
    out += [
        "### `model_spend` (legacy, 2024)",
        "",
        "| key | names | group | model_spend | lifetime ledger | severity |",
        "|---|---|---|---|---|---|",
    ]
    for x in expected["model_spend"]:
        out.append(
            f"| {x['key_alias']} | {', '.join(f'`{n}`' for n in x['names'])} | `{x['group']}` | {usd(x['cached'])} | {usd(x['ledger'])} | {x['severity']} |"
        )
    r = expected["rollups"]
    out += [
        "",
        "### Daily rollups (LiteLLM_DailyUserSpend)",
        "",
        f"{r['rows']} rows; discrepancies (tolerance $0.0001):",
        "",
        "| user | date | api_key | model | provider | rollup spend | ledger spend | difference |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in r["discrepancies"]:
        out.append(
            f"| {d['user_id']} | {d['date']} | `{short(d['api_key'])}` | `{d['model']}` | {d['custom_llm_provider']} | "
            f"{usd(d['rollup_spend'])} | {usd(d['ledger_spend'])} | {usd(d['difference'])} |"
        )
    return out


def doc_bullets(doc: str) -> list[str]:
    """The `- ` bullets of a docstring, each joined onto one line."""
    bullets = []
    for line in doc.splitlines():
        line = line.strip()
        if line.startswith("- "):
            bullets.append(line)
        elif bullets and line:
            bullets[-1] += " " + line
    return bullets


def entry_lines(entries: list) -> list[str]:
    if not entries:
        return ["- no per-model budget", ""]
    out = []
    for e in entries:
        head = f"- entry `{e['entry']}` = `{json.dumps(e['value'])}` (from {e['source']}): **{e['status']}**"
        if e["status"] in ("invalid", "unenforced", "unenforceable"):
            out.append(f"{head} — {e['reason']}")
            if e["status"] == "unenforceable":
                out[-1] += f" (governs {e['governed_rows']} rows)"
            continue
        out.append(
            f"{head}; limit ${e['limit']:g} per `{e['duration']}`; governs {e['governed_rows']} successful rows, "
            f"{usd(e['governed_spend'])}, in {e['windows']} windows; largest window {usd(e['max_window_spend'])}; "
            f"{len(e['over_budget_windows'])} over budget."
        )
        if e["over_budget_windows"]:
            out += [
                "",
                "  | window start | window end | spend | limit | requests | requests after limit | spend after limit | severity |",
                "  |---|---|---|---|---|---|---|---|",
            ]
            for wd in e["over_budget_windows"]:
                out.append(
                    f"  | {wd['start']} | {wd['end']} | {usd(wd['spend'])} | {wd['limit']:g} | {wd['requests']} | {wd['requests_after_limit']} | "
                    f"{usd(wd['spend_after_limit'])} | {wd['severity']} |"
                )
    out.append("")
    return out


def check(w: World, expected: dict) -> None:
    """Cross-check the reference against what the scenarios meant to build."""
    t = expected["totals"]
    assert 3000 <= t["rows"] <= 8000, t["rows"]
    assert 10 <= len(expected["keys"]) <= 25
    assert t["unresolved"] == sum(1 for r in w.logs if r["model"].endswith("llama3.1:8b")), "only the ollama rows are unresolved"
    keys = {k["key_alias"]: {e["entry"]: e for e in k["entries"]} for k in expected["keys"]}
    opus = keys["research-agent"]["claude-opus-4-6"]
    assert len(opus["over_budget_windows"]) >= 10 and all(
        wd["severity"] == "error" for wd in opus["over_budget_windows"] if float(wd["spend"]["usd"]) > 5
    )
    support = keys["support-bot"]["gpt-4o"]["over_budget_windows"]
    assert support and all(wd["severity"] == "warning" for wd in support)
    assert keys["premium-user"]["premium"]["over_budget_windows"] == [] and keys["premium-user"]["premium"]["governed_rows"] > 0
    assert keys["via-budget-table"]["gpt-4o-mini"]["source"] == "budget_id budget-mini-daily"
    assert any(wd["severity"] == "error" for wd in keys["via-budget-table"]["gpt-4o-mini"]["over_budget_windows"])
    assert (
        keys["legacy-batch"]["gpt-4o-mini"]["status"] == "invalid"
        and keys["data-science"]["gemini-2.5-pro"]["status"] == "invalid"
    )
    assert (
        keys["typo-key"]["claude-opus-4.6"]["status"] == "unenforceable"
        and keys["deploy-name-key"]["openai/gpt-4o-mini"]["status"] == "unenforceable"
    )
    assert keys["opus-tester"]["claude-opus*"]["governed_rows"] > 0 and keys["daily-key"]["gpt-4o"]["governed_rows"] > 0
    status = {(c["store"], c["scope"], c["alias"], c["entry"]): c["status"] for c in expected["counters"]}
    assert status == {
        ("redis", "key", "research-agent", "vertex_ai/claude-opus-4-6@default"): "miskeyed",
        ("redis", "key", "analytics", "claude-sonnet-4-5"): "ok",
        ("redis", "key", "opus-tester", "claude-opus*"): "drift",
        ("redis", "key", "daily-key", "gpt-4o"): "ok",
        ("redis", "key", "etl-gemini", "gemini-2.5-pro"): "ok",
        ("redis", "team", "data", "gemini-2.5-pro"): "drift",
        ("redis", "user", "carol", "claude-sonnet-4-5"): "ok",
        ("redis", "team_member", "u-alice in team-platform", "claude-sonnet-4-5"): "ok",
        ("LiteLLM_BudgetWindowSpend", "key", "premium-user", "premium"): "ok",
        ("LiteLLM_BudgetWindowSpend", "key", "via-budget-table", "gpt-4o-mini"): "drift",
        ("LiteLLM_BudgetWindowSpend", "key", "typo-key", "claude-opus-4-6"): "miskeyed",
        ("LiteLLM_BudgetWindowSpend", "team_member", "u-erin in team-platform", "claude-sonnet-4-5"): "drift",
    }, status
    for c in expected["counters"]:
        if c["status"] == "drift" and c["store"] == "LiteLLM_BudgetWindowSpend":
            assert c["difference"]["raw"] < 0
    assert (
        len(expected["rollups"]["discrepancies"]) == 1
        and abs(expected["rollups"]["discrepancies"][0]["difference"]["raw"] + 2.3456) < 1e-9
    )
    # Every scope has a per-model window over budget with requests admitted after the limit.
    scopes = {(s["scope"], s["alias"]): {e["entry"]: e for e in s["entries"]} for s in expected["other_scopes"]}
    for scope in ("team", "user", "end_user", "team_member"):
        over = [
            wd
            for (sc, _), entries in scopes.items()
            if sc == scope
            for e in entries.values()
            for wd in e.get("over_budget_windows", [])
        ]
        assert any(wd["severity"] == "error" for wd in over), scope
    team = scopes[("team", "data")]["gemini-2.5-pro"]
    assert [a["key_alias"] for a in team["set_aside_for_keys"]] == ["etl-gemini"] and team["set_aside_for_keys"][0]["rows"] > 100
    erin = scopes[("team_member", "u-erin in team-platform")]["claude-sonnet-4-5"]["over_budget_windows"]
    assert [wd["severity"] for wd in erin] == ["error", "error", "warning"], erin
    assert not scopes[("team_member", "u-alice in team-platform")]["claude-sonnet-4-5"]["over_budget_windows"]
    assert {(x["scope"], x["alias"], x["kind"], x["column"]) for x in expected["scalar"]} == {
        ("key", "bi-dashboards", "counter_drift", "spend"),
        ("key", "bi-dashboards", "counter_drift", "total_spend"),
        ("key", "bi-dashboards", "over_budget", "max_budget"),
        ("key", "legacy-batch", "counter_drift", "total_spend"),
        ("team", "data", "counter_drift", "spend"),
        ("end_user", "ACME Corp", "over_budget", "max_budget"),
    }, expected["scalar"]
    assert {x["names"][0] for x in expected["model_spend"]} == {"prod-gpt35-eastus", "gpt-4-0125-preview"}
    assert expected["missing_counters"]["redis"] and all(
        m["scope"] != "end_user" for m in expected["missing_counters"]["LiteLLM_BudgetWindowSpend"]
    )
    # The scan leaves out charges of the last 120 s (counters still being flushed); none of the sample's is that late.
    assert all(r["_end"] < SNAPSHOT_MS - 120 * SECOND for r in w.logs)
    text = json.dumps(w.tables) + json.dumps(w.redis)
    assert '"sk-' not in text and "sk-" not in text, "raw keys must never be written"


def main() -> None:
    w = build()
    expected = reference(w.tables, DEPLOYMENTS, w.redis)
    check(w, expected)
    (HERE / "config.yaml").write_text(config_text())
    (HERE / "litellm_tables.json").write_text(dump_tables(w.tables))
    (HERE / "redis.json").write_text(json.dumps(w.redis, indent=2, sort_keys=True) + "\n")
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    (HERE / "README.md").write_text(readme(w, expected))
    t = expected["totals"]
    print(f"wrote {HERE}: {t['rows']} spend rows, {len(w.keys)} keys, {len(w.redis)} Redis keys")


if __name__ == "__main__":
    main()
