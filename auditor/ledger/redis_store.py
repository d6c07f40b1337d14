"""Where LiteLLM's Redis is, and reading its counters (SCAN and MGET, never KEYS)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

import redis
from redis.client import NEVER_DECODE

from auditor.errors import InputError, UnavailableError
from auditor.ledger.db import mask_text
from auditor.litellm.counters import (
    MODEL_COUNTER_PREFIXES,
    Counter,
    loose_counter_key,
    parse_counter_key,
    parse_epoch,
    parse_float,
)

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
    """A client that has answered PING. Every command is bounded by the socket timeout (5 s, or the URL's
    ?socket_timeout= / ?socket_connect_timeout=, which win); a Redis that does not answer is exit 3, never a hang."""
    try:
        client = redis.Redis.from_url(
            target.url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, decode_responses=True
        )
    except (ValueError, TypeError) as err:  # a query-string option redis-py cannot cast
        raise InputError(f"Redis URL {target.masked!r} does not parse: {redis_error_text(target, err)}") from None
    try:
        client.ping()
    except Exception as err:  # noqa: BLE001 - not Redis at all (another service's port) breaks redis-py's handshake in odd ways
        client.close()
        raise UnavailableError(
            f"cannot reach Redis at {target.masked} ({target.origin}): {redis_error_text(target, err)}"
        ) from None
    return client


def read_all_counters(target: RedisTarget, client: redis.Redis) -> list[Counter]:
    """read_counters, with a Redis that fails or stops answering halfway as one masked line (exit 3)."""
    try:
        return read_counters(client)
    except (redis.RedisError, OSError) as err:
        raise UnavailableError(
            f"lost Redis at {target.masked} ({target.origin}) while reading counters: {redis_error_text(target, err)}"
        ) from None


def redis_error_text(target: RedisTarget, err: Exception) -> str:
    """The error's first line, with the password masked in every spelling it may take (as typed, URL-encoded)."""
    secrets = tuple({s for p in (target.password,) if p for s in (p, quote(p, safe=""), unquote(p))})
    return mask_text(str(err).splitlines()[0] if str(err) else type(err).__name__, secrets)


def scan_keys(client: redis.Redis, patterns: tuple[str, ...] = COUNTER_PATTERNS, count: int = 1000) -> Iterator[str]:
    """Key names as text. Read undecoded, so one name that is not UTF-8 (never LiteLLM's: it writes every key
    from a Python str) is skipped instead of failing the whole SCAN page it arrives in."""
    for pattern in patterns:
        for name in client.scan_iter(match=pattern, count=count, **_UNDECODED):
            text = _utf8(name)
            if text is not None:
                yield text


def read_counters(client: redis.Redis, batch: int = 500) -> list[Counter]:
    """Every per-model spend counter with its value and window start (entry-level start key, else
    the one per entity of LiteLLM 1.82–1.98)."""
    parsed = []
    for key in scan_keys(client, tuple(f"{prefix}:*" for prefix in MODEL_COUNTER_PREFIXES)):
        counter_key = parse_counter_key(key)
        if counter_key is not None:
            parsed.append((counter_key, True))
        elif (loose := loose_counter_key(key)) is not None:  # an id or model with `:` in it; counters.rekey decides
            parsed.append((loose, False))
    counters = []
    for start in range(0, len(parsed), batch):
        chunk = parsed[start : start + batch]
        values = _mget(client, [k.key for k, _ in chunk])
        starts = _mget(client, [k.start_key for k, _ in chunk])
        entity_starts = _mget(client, [k.entity_start_key for k, _ in chunk])
        for (key, exact), value, own, shared in zip(chunk, values, starts, entity_starts, strict=True):
            if value is None:
                continue  # expired between SCAN and MGET, or not a string value
            started = parse_epoch(own if own is not None else shared)
            counters.append(Counter("redis", key, parse_float(value), value, started, exact))
    return counters


def read_values(client: redis.Redis, keys: list[str], batch: int = 500) -> dict[str, str]:
    """The string values of `keys` that exist (MGET in batches): counters whose names auditor builds itself."""
    found: dict[str, str] = {}
    for start in range(0, len(keys), batch):
        chunk = keys[start : start + batch]
        found.update((k, v) for k, v in zip(chunk, _mget(client, chunk), strict=True) if v is not None)
    return found


def read_all_values(target: RedisTarget, client: redis.Redis, keys: list[str]) -> dict[str, str]:
    """read_values, with a Redis that fails halfway as one masked line (exit 3)."""
    try:
        return read_values(client, keys)
    except (redis.RedisError, OSError) as err:
        raise UnavailableError(
            f"lost Redis at {target.masked} ({target.origin}) while reading counters: {redis_error_text(target, err)}"
        ) from None


# Replies as bytes whatever the client's decode_responses: a value that is not UTF-8 must not fail the read.
_UNDECODED = {NEVER_DECODE: []}


def _mget(client: redis.Redis, keys: list[str]) -> list[str | None]:
    """MGET, each value as text (bytes that are not UTF-8 shown with backslash escapes: not a number)."""
    return [
        None if v is None else _utf8(v, errors="backslashreplace") for v in client.execute_command("MGET", *keys, **_UNDECODED)
    ]


def _utf8(value: bytes | str, errors: str = "strict") -> str | None:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8", errors)
    except UnicodeDecodeError:
        return None
