#!/usr/bin/env python3
"""Record what an old LiteLLM release itself writes, as a small JSON fixture the test suite reads without it.

Run in a throw-away venv holding that release and the proxy's import chain, e.g.

    python3 -m venv /tmp/venv-1.90.7
    /tmp/venv-1.90.7/bin/pip install litellm==1.90.7 fastapi orjson backoff redis apscheduler tzlocal PyJWT \\
        cryptography semver python-multipart email-validator websockets boto3 fastapi-sso pydantic-settings
    LITELLM_LOG=ERROR /tmp/venv-1.90.7/bin/python tests/eras/record.py --out tests/eras/litellm-1.90.7.json \\
        [--redis redis://127.0.0.1:6379/2]

A seeded scenario (keys and an end user with per-model budgets, overlapping requests, idle gaps) is played on a
simulated clock through that release's own code: `litellm.Router` with mock responses (token counts drawn from the
seed, cost from the cost map the wheel ships), the proxy's `get_logging_payload` for each LiteLLM_SpendLogs row,
and the proxy's `_PROXY_VirtualKeyModelMaxBudgetLimiter` on a `DualCache` for the counters: its pre-call checks
decide which requests are blocked (a blocked request is listed, not charged), its success hook charges the rest.
With --redis the limiter's cache has that Redis, as `litellm_settings.enable_redis_auth_cache: true` gives it
from 1.84 on (1.82-1.83 never attach one: pass no --redis there); Redis's clock is moved on with the simulated one
by shrinking every limiter key's TTL (advance_redis). Use a Redis database of your own: its limiter keys are deleted.

The fixture holds the config, the budgets, the spend rows, the blocked requests and every per-model counter and
start key the limiter's cache held at the end (value and expiry on the simulated clock, in memory and in Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sys
import time as real_time
from datetime import UTC, datetime, timedelta

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm  # noqa: E402
from litellm.caching import in_memory_cache as in_memory_module  # noqa: E402
from litellm.caching.dual_cache import DualCache  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.proxy._types import UserAPIKeyAuth  # noqa: E402
from litellm.proxy.hooks.model_max_budget_limiter import _PROXY_VirtualKeyModelMaxBudgetLimiter  # noqa: E402
from litellm.proxy.spend_tracking.spend_tracking_utils import get_logging_payload  # noqa: E402
from litellm.router_strategy import budget_limiter as budget_limiter_module  # noqa: E402

SEED = 17
T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)

MODEL_LIST = [
    {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "x"}, "model_info": {"id": "dep-gpt4o"}},
    {
        "model_name": "gpt-4o-mini",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_key": "x"},
        "model_info": {"id": "dep-mini"},
    },
    {
        "model_name": "anthropic/*",
        "litellm_params": {"model": "anthropic/*", "api_key": "x"},
        "model_info": {"id": "dep-anthropic"},
    },
]


def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


KEYS = [
    # Two entries sharing the key's one start key before 1.99: a day cap and an hour cap.
    {
        "token": token_hash("sk-research"),
        "key_alias": "research",
        "model_max_budget": {
            "gpt-4o": {"budget_limit": 0.05, "time_period": "1d"},
            "gpt-4o-mini": {"budget_limit": 0.002, "time_period": "1h"},
        },
    },
    # A wildcard route: the requested name is the counter's name.
    {
        "token": token_hash("sk-wild"),
        "key_alias": "wild",
        "model_max_budget": {"anthropic/claude-3-haiku-20240307": {"budget_limit": 0.004, "time_period": "1d"}},
    },
    # The same two durations with traffic that keeps the day's start key alive past the hour: the hour entry's
    # charges open new windows on it and move the start the day entry is measured from.
    {
        "token": token_hash("sk-mixed"),
        "key_alias": "mixed",
        "model_max_budget": {
            "gpt-4o": {"budget_limit": 0.03, "time_period": "1d"},
            "gpt-4o-mini": {"budget_limit": 0.0015, "time_period": "1h"},
        },
    },
    # 0 is "unlimited" before 1.99 (it blocks from 1.99 on).
    {
        "token": token_hash("sk-zero"),
        "key_alias": "zero",
        "model_max_budget": {"gpt-4o": {"budget_limit": 0, "time_period": "1d"}},
    },
]
END_USERS = [{"user_id": "cust-1", "model_max_budget": {"gpt-4o-mini": {"budget_limit": 0.003, "time_period": "1d"}}}]

# (key alias, requested model, end user or None, how many requests, mean gap in minutes, first one after minutes)
TRAFFIC = [
    ("research", "gpt-4o", None, 40, 35.0, 0),
    ("research", "gpt-4o-mini", "cust-1", 45, 9.0, 0),
    ("wild", "anthropic/claude-3-haiku-20240307", None, 30, 40.0, 0),
    ("zero", "gpt-4o", None, 8, 90.0, 0),
    ("mixed", "gpt-4o", None, 14, 170.0, 0),
    ("mixed", "gpt-4o-mini", None, 24, 75.0, 30),  # after the day entry's charge created the start key
]
COSTS = {  # per token, from the cost map: tokens are drawn so a few requests cross each cap
    "gpt-4o": ((400, 2500), (80, 700)),
    "gpt-4o-mini": ((500, 3000), (100, 800)),
    "anthropic/claude-3-haiku-20240307": ((300, 2000), (50, 500)),
}


class Clock:
    """The simulated wall clock the limiter and its in-memory cache read."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now.timestamp()


CLOCK = Clock()


class _FakeTimeModule:
    """`time` for litellm's in-memory cache: time() is the simulated clock, the rest is the real module."""

    def __getattr__(self, name):
        return getattr(real_time, name)

    @staticmethod
    def time() -> float:
        return CLOCK.time()


class _FakeDatetime(datetime):
    @classmethod
    def now(cls, tz=None):  # noqa: D102
        return CLOCK.now if tz is not None else CLOCK.now.replace(tzinfo=None)


in_memory_module.time = _FakeTimeModule()
budget_limiter_module.datetime = _FakeDatetime


class Capture(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, tuple] = {}

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.seen[kwargs.get("litellm_call_id")] = (kwargs, response_obj)


def plan_requests(rng: random.Random) -> list[dict]:
    by_alias = {k["key_alias"]: k for k in KEYS}
    requests = []
    for alias, model, end_user, count, gap, offset in TRAFFIC:
        moment = T0 + timedelta(minutes=offset + rng.uniform(0, 20))
        for n in range(count):
            if n == count // 2:
                moment += timedelta(hours=26)  # an idle day: every window of this key lapses
            took = timedelta(seconds=rng.choice([1.5, 3.0, 8.0, 20.0, 95.0]))
            (pin, pout), (cin, cout) = COSTS[model]
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)  # milliseconds, as the ledger stores them
            requests.append(
                {
                    "key": by_alias[alias],
                    "model": model,
                    "end_user": end_user,
                    "start": moment,
                    "end": moment + took,
                    "prompt_tokens": rng.randint(pin, pout),
                    "completion_tokens": rng.randint(cin, cout),
                }
            )
            moment += timedelta(minutes=rng.expovariate(1.0 / gap), seconds=1)
    requests.sort(key=lambda r: (r["start"], r["key"]["key_alias"]))
    for index, request in enumerate(requests):
        request["id"] = f"req-{index:04d}"
    return requests


def _mock_response(request: dict) -> dict:
    usage = {
        "prompt_tokens": request["prompt_tokens"],
        "completion_tokens": request["completion_tokens"],
        "total_tokens": request["prompt_tokens"] + request["completion_tokens"],
    }
    return {
        "id": request["id"],
        "object": "chat.completion",
        "created": int(request["start"].timestamp()),
        "model": request["model"],
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
        "usage": usage,
    }


def _metadata(request: dict) -> dict:
    key = request["key"]
    end_user = next((u for u in END_USERS if u["user_id"] == request["end_user"]), None)
    return {
        "user_api_key": key["token"],
        "user_api_key_hash": key["token"],
        "user_api_key_alias": key["key_alias"],
        "user_api_key_model_max_budget": key["model_max_budget"],
        "user_api_key_end_user_id": request["end_user"],
        "user_api_key_end_user_model_max_budget": end_user["model_max_budget"] if end_user else None,
    }


async def blocked_by(limiter, request: dict) -> str | None:
    """The proxy's pre-call model-budget checks at the request's start: which scope blocks it, if any."""
    key = request["key"]
    try:
        await limiter.is_key_within_model_budget(
            UserAPIKeyAuth(token=key["token"], key_alias=key["key_alias"], model_max_budget=key["model_max_budget"]),
            request["model"],
        )
    except litellm.BudgetExceededError:
        return "key"
    end_user = next((u for u in END_USERS if u["user_id"] == request["end_user"]), None)
    if end_user is not None:
        try:
            await limiter.is_end_user_within_model_budget(end_user["user_id"], end_user["model_max_budget"], request["model"])
        except litellm.BudgetExceededError:
            return "end_user"
    return None


ROW_COLUMNS = (
    "request_id",
    "call_type",
    "api_key",
    "spend",
    "total_tokens",
    "prompt_tokens",
    "completion_tokens",
    "startTime",
    "endTime",
    "model",
    "model_id",
    "model_group",
    "custom_llm_provider",
    "api_base",
    "user",
    "end_user",
    "team_id",
    "cache_hit",
    "status",
)


async def run(redis_url: str | None) -> dict:
    rng = random.Random(SEED)
    router = litellm.Router(model_list=MODEL_LIST, num_retries=0, disable_cooldowns=True)
    capture = Capture()
    litellm.callbacks = [capture]
    redis_cache = None
    if redis_url:
        from litellm.caching.redis_cache import RedisCache

        redis_cache = RedisCache(url=redis_url)
        client = redis_cache.init_async_client()
        for pattern in ("virtual_key_*", "end_user_*"):
            async for name in client.scan_iter(match=pattern):
                await client.delete(name)
    cache = DualCache(redis_cache=redis_cache)
    limiter = _PROXY_VirtualKeyModelMaxBudgetLimiter(dual_cache=cache)

    requests = plan_requests(rng)
    events = sorted(
        [(r["start"], 0, r) for r in requests] + [(r["end"], 1, r) for r in requests], key=lambda e: (e[0], e[1], e[2]["id"])
    )
    rows, blocked = [], []
    for moment, kind, request in events:
        if redis_cache is not None:
            await advance_redis(client, moment - CLOCK.now)
        CLOCK.now = moment
        if kind == 0:
            request["blocked"] = await blocked_by(limiter, request)
            if request["blocked"]:
                blocked.append(
                    {
                        "request_id": request["id"],
                        "api_key": request["key"]["token"],
                        "model": request["model"],
                        "end_user": request["end_user"],
                        "startTime": _iso(request["start"]),
                        "scope": request["blocked"],
                    }
                )
            continue
        if request["blocked"]:
            continue
        await router.acompletion(
            model=request["model"],
            messages=[{"role": "user", "content": "hi"}],
            mock_response=_mock_response(request),
            metadata=_metadata(request),
            litellm_call_id=request["id"],
            user=request["end_user"],
        )
        for _ in range(200):
            if request["id"] in capture.seen:
                break
            await asyncio.sleep(0.01)
        kwargs, response = capture.seen.pop(request["id"])
        kwargs.setdefault("litellm_params", {}).setdefault("metadata", {}).update(_metadata(request))
        await limiter.async_log_success_event(kwargs, response, request["start"], request["end"])
        if redis_cache is not None:
            await asyncio.sleep(0.02)  # the increment pipeline runs as a task
        payload = get_logging_payload(kwargs, response, request["start"], request["end"])
        row = {column: payload.get(column) for column in ROW_COLUMNS}
        row.update(request_id=request["id"], startTime=_iso(request["start"]), endTime=_iso(request["end"]))
        rows.append(row)
    now = max(r["end"] for r in requests) + timedelta(minutes=5)
    if redis_cache is not None:
        await advance_redis(client, now - CLOCK.now)
    CLOCK.now = now
    memory = {}
    store = cache.in_memory_cache
    for name in sorted(store.cache_dict):
        if name.startswith(("virtual_key_", "end_user_")):
            expires = store.ttl_dict.get(name)
            memory[name] = {
                "value": store.cache_dict[name],
                "expires_at": _iso(datetime.fromtimestamp(expires, tz=UTC)) if expires else None,
            }
    redis_state = None
    if redis_cache is not None:
        client = redis_cache.init_async_client()
        redis_state = {}
        for pattern in ("virtual_key_*", "end_user_*"):
            async for name in client.scan_iter(match=pattern):
                text = name.decode() if isinstance(name, bytes) else name
                value = await client.get(name)
                left = await client.pttl(name)
                redis_state[text] = {
                    "value": value.decode() if isinstance(value, bytes) else value,
                    "expires_at": _iso(now + timedelta(milliseconds=left)) if left > 0 else None,
                }
        redis_state = dict(sorted(redis_state.items()))
    return {
        "litellm_version": litellm.version if isinstance(getattr(litellm, "version", None), str) else _installed_version(),
        "recorded_with": "tests/eras/record.py",
        "seed": SEED,
        "now": _iso(now),
        "config": {"model_list": MODEL_LIST, "litellm_settings": {"enable_redis_auth_cache": bool(redis_url)}},
        "keys": KEYS,
        "end_users": END_USERS,
        "spend_logs": rows,
        "blocked": blocked,
        "memory": memory,
        "redis": redis_state,
    }


async def advance_redis(client, elapsed: timedelta) -> None:
    """Move Redis's clock on with the simulated one: every limiter key's TTL shrinks by `elapsed`, and a key whose
    TTL runs out is gone, as if that time had passed (Redis cannot be told another time)."""
    step_ms = int(elapsed.total_seconds() * 1000)
    if step_ms <= 0:
        return
    for pattern in ("virtual_key_*", "end_user_*"):
        async for name in client.scan_iter(match=pattern):
            left = await client.pttl(name)
            if left < 0:
                continue
            if left <= step_ms:
                await client.delete(name)
            else:
                await client.pexpire(name, left - step_ms)


def _installed_version() -> str:
    from importlib.metadata import version

    return version("litellm")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--redis", default=None, help="the limiter's cache gets this Redis (1.84+ with enable_redis_auth_cache)")
    args = parser.parse_args()
    fixture = asyncio.run(run(args.redis))
    fixture["litellm_version"] = _installed_version()
    with open(args.out, "w") as handle:
        json.dump(fixture, handle, indent=1, sort_keys=False, default=str)
        handle.write("\n")
    print(
        f"{args.out}: {len(fixture['spend_logs'])} rows, {len(fixture['blocked'])} blocked, "
        f"{len(fixture['memory'])} cached counters",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
