"""Drives LiteLLM 1.110.2's own code through a simulated deployment, on a simulated clock.

Every value that lands in the database or Redis comes out of a LiteLLM function: spend rows from
`get_logging_payload`, daily rollups from `DBSpendUpdateWriter`'s daily-transaction functions and
`daily_spend_bulk_upsert`'s merge, counters and blocking decisions from the model-budget limiter and
`_is_within_every_model_budget`, reset instants from `get_next_standardized_reset_time`. What we write by
hand is only what LiteLLM writes with SQL we cannot run outside the proxy (the scalar `spend += cost`, the
reset job's `spend = 0`, the daily upsert and LiteLLM_BudgetWindowSpend's upsert), reproduced from that SQL.

The clock: the limiter and its in-memory caches take a `clock` (they call nothing else for time); Redis
expires keys on the real clock, so `RedisTimeline` re-expires them on the simulated one.
"""

from __future__ import annotations

import asyncio
import os
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

import litellm  # noqa: E402
from litellm.caching.caching import Cache  # noqa: E402
from litellm.caching.dual_cache import DualCache  # noqa: E402
from litellm.caching.in_memory_cache import InMemoryCache  # noqa: E402
from litellm.caching.redis_cache import RedisCache  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.litellm_core_utils.duration_parser import get_next_standardized_reset_time  # noqa: E402
from litellm.proxy._types import UserAPIKeyAuth  # noqa: E402
from litellm.proxy.auth.user_api_key_auth import _is_within_every_model_budget  # noqa: E402
from litellm.proxy.db.daily_spend_bulk_upsert import (  # noqa: E402
    DAILY_SPEND_TABLES,
    _insert_columns,
    _row_params,
    merge_by_conflict_key,
)
from litellm.proxy.db.db_spend_update_writer import DBSpendUpdateWriter  # noqa: E402
from litellm.proxy.db.db_transaction_queue.window_spend_update_queue import build_window_spend_transaction  # noqa: E402
from litellm.proxy.hooks.model_budget_shared_windows import SharedWindow  # noqa: E402
from litellm.proxy.hooks.model_max_budget_limiter import (  # noqa: E402
    _PROXY_VirtualKeyModelMaxBudgetLimiter,
    model_access_groups_of,
)
from litellm.proxy.litellm_pre_call_utils import LiteLLMProxyRequestSetup  # noqa: E402
from litellm.proxy.spend_tracking.spend_tracking_utils import get_logging_payload  # noqa: E402
from litellm.proxy.utils import PrismaClient  # noqa: E402

from .world import Request, World  # noqa: E402

UTC = UTC
RESET_JOB_EVERY = timedelta(seconds=600)  # ResetBudgetJob's scheduler interval (proxy_budget_rescheduler_*_time)


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def to_ms(moment: datetime) -> datetime:
    """timestamp(3): PostgreSQL rounds microseconds to milliseconds."""
    micro = round(moment.microsecond / 1000) * 1000
    return moment.replace(microsecond=0) + timedelta(microseconds=micro)


class SimClock:
    def __init__(self, start: datetime) -> None:
        self.now = epoch(start)

    def __call__(self) -> float:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = max(self.now, epoch(moment))


class RedisTimeline:
    """Expires the simulation's Redis keys on the simulated clock: each key's TTL, as LiteLLM set it, is read
    right after the request that set it and turned into a simulated deadline."""

    def __init__(self, client) -> None:
        self.client = client
        self.deadlines: dict[str, float] = {}
        self.seen_expiry: dict[str, int] = {}  # key -> real expiry (ms) when last read

    def expire(self, now: float) -> None:
        gone = [k for k, deadline in self.deadlines.items() if deadline <= now]
        if gone:
            self.client.delete(*gone)
            for k in gone:
                self.deadlines.pop(k, None)
                self.seen_expiry.pop(k, None)

    def register(self, now: float) -> None:
        keys = list(self.client.scan_iter(count=1000))
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.pttl(k)
        seconds, micros = self.client.time()
        real_now_ms = seconds * 1000 + micros // 1000
        for k, pttl in zip(keys, pipe.execute()):
            k = k.decode() if isinstance(k, bytes) else k
            if pttl is None or pttl < 0:
                continue
            expiry = real_now_ms + pttl
            # LiteLLM re-sets a TTL from the simulated clock, seconds to days away from the last one; a few ms of
            # drift between TIME and PTTL is only the real clock moving
            if k not in self.deadlines or abs(expiry - self.seen_expiry.get(k, 0)) > 2000:
                self.deadlines[k] = now + pttl / 1000
            self.seen_expiry[k] = expiry

    def settle(self, now: float) -> None:
        """Leave Redis as it would be at `now`: expired keys gone, the rest with their remaining TTL."""
        self.expire(now)
        pipe = self.client.pipeline(transaction=False)
        for k, deadline in self.deadlines.items():
            pipe.pexpire(k, max(1, int((deadline - now) * 1000)))
        pipe.execute()


class SimSharedWindows:
    """LiteLLM_BudgetWindowSpend for the no-Redis mode (model_budget_shared_windows.DatabaseSharedWindows),
    applying its statements (_OPEN_WINDOW_SPEND_SQL, _UPSERT_WINDOW_SPEND_SQL) to rows held here.
    One replica, flushed on every add: the row is what the database holds after each flush."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list] = {}  # (entity_id, duration) -> [window_start naive, spend]

    def _window(self, row) -> SharedWindow:
        return SharedWindow(started_at=epoch(row[0]), spend=float(row[1]))

    async def read(self, spend_key: str, budget_duration: str) -> SharedWindow | None:
        row = self.rows.get((spend_key, budget_duration))
        return None if row is None else self._window(row)

    async def open(self, spend_key: str, budget_duration: str, now: float) -> float | None:
        row = self.rows.get((spend_key, budget_duration))
        if row is not None and self._window(row).is_open(budget_duration=budget_duration, now=now):
            return self._window(row).started_at
        start = to_ms(datetime.fromtimestamp(now, tz=UTC).replace(tzinfo=None))
        self.rows[(spend_key, budget_duration)] = [start, 0.0]  # the row held the window the caller saw: replaced
        return self._window(self.rows[(spend_key, budget_duration)]).started_at

    async def add(self, spend_key: str, budget_duration: str, started_at: float, spend: float) -> None:
        tx = build_window_spend_transaction(
            entity_type="model_max_budget",
            entity_id=spend_key,
            window_duration=budget_duration,
            window_start=datetime.fromtimestamp(started_at, tz=UTC),
            spend=spend,
        )
        incoming = to_ms(datetime.fromisoformat(tx["window_start"]))
        row = self.rows.get((spend_key, budget_duration))
        if row is None:
            self.rows[(spend_key, budget_duration)] = [incoming, float(tx["spend"])]
        elif row[0] >= incoming:
            row[1] += float(tx["spend"])
        else:
            row[0], row[1] = incoming, float(tx["spend"])


class _Capture(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, tuple] = {}

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.calls[kwargs["litellm_call_id"]] = ("success", kwargs, response_obj)

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self.calls[kwargs["litellm_call_id"]] = ("failure", kwargs, response_obj)


_CAPTURE = _Capture()  # one for the process: LiteLLM keeps the callbacks it saw first in its own lists


class _RequestStatus:
    """What the daily-transaction functions ask of the Prisma client: LiteLLM's own status rule."""

    get_request_status = PrismaClient.get_request_status


@dataclass
class Scalar:
    spend: float = 0.0
    total_spend: float = 0.0
    reset_at: datetime | None = None  # naive UTC


@dataclass
class Outcome:
    spend_rows: list[dict] = field(default_factory=list)
    rollups: dict[str, list[dict]] = field(default_factory=dict)  # table name -> rows
    scalars: dict[tuple[str, object], Scalar] = field(default_factory=dict)
    window_rows: list[dict] = field(default_factory=list)  # LiteLLM_BudgetWindowSpend (no Redis)
    blocked: int = 0
    failed: int = 0
    cache_hits: int = 0
    blocked_without_row: int = 0
    charges: list[dict] = field(default_factory=list)  # every successful request: who paid what, when


def _response(n: int, world: World, request: Request) -> dict:
    return {
        "id": f"chatcmpl-sim{world.seed}-{n:05d}",
        "object": "chat.completion",
        "created": int(epoch(request.start)),
        "model": request.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"answer {n}"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": request.completion_tokens,
            "total_tokens": request.prompt_tokens + request.completion_tokens,
        },
    }


class Simulation:
    def __init__(self, world: World, redis_url: str | None, *, disable_pre_routing_error_logs: bool = False) -> None:
        self.world = world
        self.clock = SimClock(world.start)
        self.tz = ZoneInfo(world.timezone)
        self.disable_pre_routing_error_logs = disable_pre_routing_error_logs
        config = world.config
        self.router = litellm.Router(
            model_list=config["model_list"],
            model_group_alias=config["router_settings"]["model_group_alias"],
            num_retries=0,
            disable_cooldowns=True,
        )
        self.redis = None
        redis_cache = None
        if redis_url is not None:
            import redis as redis_lib

            self.redis = redis_lib.Redis.from_url(redis_url)
            self.redis.flushdb()
            db = int(self.redis.connection_pool.connection_kwargs.get("db", 0))
            kw = self.redis.connection_pool.connection_kwargs
            redis_cache = RedisCache(host=kw.get("host", "127.0.0.1"), port=kw.get("port", 6379), db=db)
        self.timeline = RedisTimeline(self.redis) if self.redis is not None else None
        self.cache = DualCache(in_memory_cache=InMemoryCache(clock=self.clock), redis_cache=redis_cache)
        self.shared = SimSharedWindows()
        self.limiter = _PROXY_VirtualKeyModelMaxBudgetLimiter(
            dual_cache=self.cache,
            clock=self.clock,
            shared_windows=self.shared,
            model_access_groups=lambda model, team_id=None: model_access_groups_of(self.router, model, team_id),
        )
        self.capture = _CAPTURE
        self.writer = DBSpendUpdateWriter()
        self.status = _RequestStatus()
        self.outcome = Outcome()
        self.last_messages: dict[str, list] = {}
        self.next_reset_job = world.start
        created = world.start - timedelta(hours=2)
        for scope, entity in self._scalar_entities():
            self.outcome.scalars[(scope, entity.id if scope != "key" else entity.token)] = Scalar(
                reset_at=self._next_reset(entity.budget_duration, created) if entity.budget_duration else None
            )
        for membership in world.memberships:
            self.outcome.scalars[("team_member", membership)] = Scalar()

    def _scalar_entities(self):
        w = self.world
        yield from (("key", k) for k in w.keys.values())
        yield from (("user", u) for u in w.users.values())
        yield from (("team", t) for t in w.teams.values())
        yield from (("end_user", e) for e in w.end_users.values())

    def _next_reset(self, duration: str, at: datetime) -> datetime:
        """The reset job's `compute_budget_reset_at`, on the simulated clock."""
        return naive_utc(get_next_standardized_reset_time(duration, at.replace(tzinfo=UTC), self.world.timezone))

    # --- the proxy's auth view of a request ---------------------------------------------------------------

    def _auth(self, request: Request) -> UserAPIKeyAuth:
        w = self.world
        key = w.keys[request.key]
        user = w.users.get(key.user_id) if key.user_id else None
        team = w.teams.get(key.team_id) if key.team_id else None
        end_user_budget = None
        if request.end_user is not None:
            end_user = w.end_users[request.end_user]
            end_user_budget = w.budgets[end_user.budget_id or w.default_end_user_budget]  # resolve_default_end_user_budget
        member_budget = None
        if key.user_id and key.team_id:
            row_budget = w.memberships.get((key.user_id, key.team_id))
            default = (team.metadata or {}).get("team_member_budget_id") if team else None
            chosen = row_budget if row_budget and row_budget != default else default  # _load_team_member_default_model_budget
            member_budget = w.budgets.get(chosen) if chosen else None
        scalars = self.outcome.scalars
        return UserAPIKeyAuth(
            # the raw key: UserAPIKeyAuth hashes it into `token` and `api_key`, as the proxy's auth does
            api_key=f"sk-sim-{key.name}",
            key_alias=key.name,
            user_id=key.user_id,
            team_id=key.team_id,
            end_user_id=request.end_user,
            model_max_budget=dict(key.model_max_budget),
            litellm_budget_table_model_max_budget=w.budgets.get(key.budget_id) if key.budget_id else None,
            user_model_max_budget=(user.model_max_budget or None) if user else None,
            team_model_max_budget=(team.model_max_budget or None) if team else None,
            end_user_model_max_budget=end_user_budget,
            team_member_model_max_budget=member_budget,
            spend=scalars[("key", key.token)].spend,
            max_budget=key.max_budget,
        )

    def _metadata(self, auth: UserAPIKeyAuth) -> dict:
        """What litellm_pre_call_utils adds to the request's metadata for spend tracking and the limiter."""
        metadata = dict(LiteLLMProxyRequestSetup.get_sanitized_user_information_from_key(user_api_key_dict=auth))
        metadata["user_api_key"] = LiteLLMProxyRequestSetup.get_logged_api_key(auth)
        metadata.update(
            user_api_key_model_max_budget=auth.model_max_budget,
            user_api_key_team_model_max_budget=auth.team_model_max_budget,
            user_api_key_end_user_model_max_budget=auth.end_user_model_max_budget,
            user_api_key_user_model_max_budget=auth.user_model_max_budget,
            user_api_key_team_member_model_max_budget=auth.team_member_model_max_budget,
        )
        return metadata

    def _scalar_blocked(self, request: Request) -> bool:
        """Scalar budgets as proxy/auth/auth_checks.py compares them: key and user `>=`, team and end user `>`."""
        w, s = self.world, self.outcome.scalars
        key = w.keys[request.key]
        checks = [(key.max_budget, s[("key", key.token)].spend, True)]
        if key.user_id:
            checks.append((w.users[key.user_id].max_budget, s[("user", key.user_id)].spend, True))
        if key.team_id:
            checks.append((w.teams[key.team_id].max_budget, s[("team", key.team_id)].spend, False))
        if request.end_user:
            checks.append((w.end_users[request.end_user].max_budget, s[("end_user", request.end_user)].spend, False))
        return any(limit is not None and (spent >= limit if inclusive else spent > limit) for limit, spent, inclusive in checks)

    # --- time ---------------------------------------------------------------------------------------------

    def advance(self, moment: datetime) -> None:
        """Run the reset job ticks before `moment`, then move the clock there."""
        while self.next_reset_job <= moment:
            tick = self.next_reset_job
            for (scope, entity_id), scalar in self.outcome.scalars.items():
                if scalar.reset_at is not None and scalar.reset_at <= tick:
                    scalar.spend = 0.0
                    scalar.reset_at = self._next_reset(self._duration(scope, entity_id), tick)
            self.next_reset_job += RESET_JOB_EVERY
        self.clock.set(moment)
        if self.timeline is not None:
            self.timeline.expire(self.clock.now)

    def _duration(self, scope: str, entity_id) -> str:
        w = self.world
        if scope == "key":
            return next(k.budget_duration for k in w.keys.values() if k.token == entity_id)
        return {"user": w.users, "team": w.teams, "end_user": w.end_users}[scope][entity_id].budget_duration

    # --- one request ----------------------------------------------------------------------------------------

    async def request(self, request: Request) -> None:
        self.advance(request.start)
        auth = self._auth(request)
        assert auth.token == self.world.keys[request.key].token
        metadata = self._metadata(auth)
        call_id = f"call-sim{self.world.seed}-{request.n:05d}"
        blocked = self._scalar_blocked(request) or not await _is_within_every_model_budget(auth, self.limiter, request.model)
        if blocked:
            self.outcome.blocked += 1
            if self.disable_pre_routing_error_logs:
                self.outcome.blocked_without_row += 1
                return
            error = litellm.BudgetExceededError(current_cost=0.0, max_budget=0.0, message="budget exceeded")
            kwargs = {
                "model": request.model,
                "litellm_call_id": call_id,
                "call_type": "acompletion",
                "litellm_params": {"metadata": {**metadata, "status": "failure"}},
            }
            await self._row(kwargs, error, request, request.start)
            return
        messages = [{"role": "user", "content": f"question {request.n}"}]
        if request.outcome == "cache_repeat" and request.model in self.last_messages:
            messages = self.last_messages[request.model]
        mock = "litellm.RateLimitError" if request.outcome == "error" else _response(request.n, self.world, request)
        random.seed(f"{self.world.seed}-{request.n}")  # the router's choice between deployments of a group
        try:
            await self.router.acompletion(
                model=request.model,
                messages=messages,
                mock_response=mock,
                metadata=metadata,
                litellm_call_id=call_id,
                caching=True,
                user=request.end_user,
            )
        except Exception:  # noqa: BLE001 - the mocked provider error; its failure event is what we want
            pass
        for _ in range(10_000):  # LiteLLM logs on a worker task: wait for it (10 s at most)
            if call_id in self.capture.calls:
                break
            await asyncio.sleep(0.001)
        kind, kwargs, response = self.capture.calls.pop(call_id)
        self.advance(request.end)
        if kind == "failure":
            self.outcome.failed += 1
            kwargs.setdefault("litellm_params", {}).setdefault("metadata", {})["status"] = "failure"
            await self._row(kwargs, response, request, request.start)
            return
        if request.outcome != "cache_repeat":
            self.last_messages[request.model] = messages
        await self.limiter.async_log_success_event(kwargs, response, request.start, request.end)
        if self.timeline is not None:
            self.timeline.register(self.clock.now)
        row = await self._row(kwargs, response, request, request.start)
        if row["cache_hit"] == "True":
            self.outcome.cache_hits += 1
        self._charge_scalars(auth, request, row["spend"])
        self.outcome.charges.append(
            {
                "n": request.n,
                "key": request.key,
                "end": request.end,
                "spend": row["spend"],
                "model_group": row["model_group"],
                "end_user": request.end_user,
            }
        )

    async def _row(self, kwargs: dict, response, request: Request, start: datetime) -> dict:
        payload = get_logging_payload(
            kwargs, response, start.replace(tzinfo=UTC), request.end.replace(tzinfo=UTC), llm_router=self.router
        )
        payload["startTime"] = to_ms(request.start)
        payload["endTime"] = to_ms(request.end)
        payload["completionStartTime"] = payload["endTime"]
        self.outcome.spend_rows.append(dict(payload))
        daily = dict(payload, startTime=payload["startTime"].isoformat(), endTime=payload["endTime"].isoformat())
        await self.writer.add_spend_log_transaction_to_daily_user_transaction(payload=dict(daily), prisma_client=self.status)
        await self.writer.add_spend_log_transaction_to_daily_end_user_transaction(payload=dict(daily), prisma_client=self.status)
        await self.writer.add_spend_log_transaction_to_daily_team_transaction(payload=dict(daily), prisma_client=self.status)
        return payload

    def _charge_scalars(self, auth: UserAPIKeyAuth, request: Request, cost: float) -> None:
        """The spend writer's increments (_update_key_db, _update_user_db, _update_team_db): `spend += cost`."""
        s = self.outcome.scalars
        targets = [("key", auth.token)]
        if auth.user_id:
            targets.append(("user", auth.user_id))
        if request.end_user:
            targets.append(("end_user", request.end_user))
        if auth.team_id:
            targets.append(("team", auth.team_id))
            if (auth.user_id, auth.team_id) in self.world.memberships:
                targets.append(("team_member", (auth.user_id, auth.team_id)))
        for target in targets:
            s[target].spend += cost
            s[target].total_spend += cost

    # --- the whole run ----------------------------------------------------------------------------------------

    async def run(self, traffic: list[Request], until: datetime) -> Outcome:
        if self.capture not in litellm.callbacks:
            litellm.callbacks.append(self.capture)
        litellm.cache = Cache(type="local")  # a fresh one: a previous simulation's answers must not be cache hits
        try:
            for request in traffic:
                await self.request(request)
        finally:
            litellm.cache = None
        self.advance(until)
        if self.timeline is not None:
            self.timeline.settle(self.clock.now)
        await self._finish()
        return self.outcome

    async def _finish(self) -> None:
        queues = {
            "user": self.writer.daily_spend_update_queue,
            "team": self.writer.daily_team_spend_update_queue,
            "end_user": self.writer.daily_end_user_spend_update_queue,
        }
        for entity, queue in queues.items():
            table = DAILY_SPEND_TABLES[entity]
            transactions = await queue.flush_and_get_aggregated_daily_spend_update_transactions()
            columns = _insert_columns(table)
            rows = []
            for key, merged in merge_by_conflict_key(table, list(transactions.values())):
                rows.append(dict(zip(columns, _row_params(table, key, merged))))
            self.outcome.rollups[table.name] = rows
        self.outcome.window_rows = [
            {
                "entity_type": "model_max_budget",
                "entity_id": spend_key,
                "window_duration": duration,
                "window_start": start,
                "spend": spend,
            }
            for (spend_key, duration), (start, spend) in sorted(self.shared.rows.items())
        ]
