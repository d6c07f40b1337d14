"""Where LiteLLM's Redis is, and reading its counters (SCAN and MGET, never KEYS)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote

import redis

from auditor.counters import MODEL_COUNTER_PREFIXES, Counter, epoch_to_utc, parse_counter_key, parse_float
from auditor.db import mask_text
from auditor.errors import InputError, UnavailableError

COUNTER_PATTERNS = tuple(f"{prefix}:*" for pair in MODEL_COUNTER_PREFIXES.items() for prefix in pair)


@dataclass(frozen=True, slots=True)
class RedisTarget:
    url: str
    origin: str  # "--redis", "REDIS_URL" or "REDIS_HOST"
    password: str | None

    @property
    def masked(self) -> str:
        return mask_text(self.url, (self.password,) if self.password else ())


def redis_from(explicit: str | None, environ: Mapping[str, str] = os.environ) -> RedisTarget | None:
    """--redis, else REDIS_URL, else REDIS_HOST/REDIS_PORT/REDIS_PASSWORD as LiteLLM reads them."""
    for origin, value in (("--redis", explicit), ("REDIS_URL", environ.get("REDIS_URL"))):
        if value:
            if not value.startswith(("redis://", "rediss://", "unix://")):
                raise InputError(f"Redis URL {mask_text(value)!r} does not parse: use redis://[:PASSWORD@]HOST:PORT/DB")
            try:
                password = redis.connection.parse_url(value).get("password")
            except ValueError:
                raise InputError(f"Redis URL {mask_text(value)!r} does not parse: use redis://HOST:PORT/DB") from None
            return RedisTarget(value, origin, password)
    host = environ.get("REDIS_HOST")
    if host:
        port = environ.get("REDIS_PORT") or "6379"
        password = environ.get("REDIS_PASSWORD") or None
        auth = f":{quote(password, safe='')}@" if password else ""
        return RedisTarget(f"redis://{auth}{host}:{port}/0", "REDIS_HOST", password)
    return None


def connect_redis(target: RedisTarget, timeout_s: float = 5.0) -> redis.Redis:
    client = redis.Redis.from_url(target.url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as err:
        raise UnavailableError(f"cannot reach Redis at {target.masked} ({target.origin}): {redis_error_text(target, err)}") from None
    return client


def redis_error_text(target: RedisTarget, err: Exception) -> str:
    return mask_text(str(err).splitlines()[0] if str(err) else type(err).__name__, (target.password,) if target.password else ())


def scan_keys(client: redis.Redis, patterns: tuple[str, ...] = COUNTER_PATTERNS, count: int = 1000) -> Iterator[str]:
    for pattern in patterns:
        yield from client.scan_iter(match=pattern, count=count)


def read_counters(client: redis.Redis, batch: int = 500) -> list[Counter]:
    """Every per-model spend counter with its value and window start (entry-level start key, else
    the one per entity of LiteLLM 1.82–1.98)."""
    parsed = []
    for key in scan_keys(client, tuple(f"{prefix}:*" for prefix in MODEL_COUNTER_PREFIXES)):
        counter_key = parse_counter_key(key)
        if counter_key is not None:
            parsed.append(counter_key)
    counters = []
    for start in range(0, len(parsed), batch):
        chunk = parsed[start : start + batch]
        values = client.mget([k.key for k in chunk])
        starts = client.mget([k.start_key for k in chunk])
        entity_starts = client.mget([k.entity_start_key for k in chunk])
        for key, value, own, shared in zip(chunk, values, starts, entity_starts, strict=True):
            if value is None:
                continue  # expired between SCAN and MGET
            started = parse_float(own if own is not None else shared)
            counters.append(Counter("redis", key, parse_float(value), str(value), epoch_to_utc(started) if started is not None else None))
    return counters
