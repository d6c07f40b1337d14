"""Reading the snapshot a backfill plan is made from: the Redis keys, LiteLLM_BudgetWindowSpend rows and
model_spend JSON the scan's findings name, right after the scan (auditor.repair.plan decides from them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, select, tuple_

from auditor.audit.findings import ScanResult
from auditor.ledger.capabilities import Capabilities
from auditor.ledger.db import json_value
from auditor.ledger.schema import budget_window_spend, verification_token
from auditor.repair.layout import Layout
from auditor.repair.plan import (
    BWS_ENTITY_TYPE,
    COUNTERS_TARGET,
    MODEL_SPEND,
    Snapshot,
    bws_rows_to_read,
    iso_ms,
    model_spend_tokens,
    redis_keys_to_read,
)

if TYPE_CHECKING:
    from redis import Redis


def read_snapshot(
    conn: Connection, caps: Capabilities, client: Redis | None, result: ScanResult, layout: Layout, targets: Iterable[str]
) -> Snapshot:
    targets = set(targets)
    redis_values: dict[str, dict] = {}
    rows: dict[tuple[str, str], dict] = {}
    model_spend: dict[str, object] = {}
    if COUNTERS_TARGET in targets:
        keys = redis_keys_to_read(result, layout)
        if keys and client is not None:
            redis_values = read_redis(client, keys)
        wanted = bws_rows_to_read(result)
        if wanted and caps.has_table("LiteLLM_BudgetWindowSpend"):
            t = budget_window_spend
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = select(t.c.entity_id, t.c.window_duration, t.c.window_start, t.c.spend).where(
                    t.c.entity_type == BWS_ENTITY_TYPE, tuple_(t.c.entity_id, t.c.window_duration).in_(chunk)
                )
                for r in conn.execute(query):
                    rows[(r.entity_id, r.window_duration)] = {
                        "window_start": iso_ms(naive_utc(r.window_start)),
                        "spend": float(r.spend),
                    }
    if MODEL_SPEND in targets:
        tokens = model_spend_tokens(result)
        if tokens:
            vt = verification_token
            for r in conn.execute(select(vt.c.token, vt.c.model_spend).where(vt.c.token.in_(tokens))):
                model_spend[r.token] = json_value(r.model_spend)
    return Snapshot(redis_values, rows, model_spend)


def read_redis(client: Redis, keys: Sequence[str]) -> dict[str, dict]:
    """Values and absolute expiry (ms, on Redis's clock) of keys, one round trip per chunk; PTTL, not
    PEXPIRETIME, so Redis before 7 works too."""
    found = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        pipe = client.pipeline(transaction=True)
        pipe.time()
        for key in chunk:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        for index, key in enumerate(chunk):
            value, ttl = replies[1 + 2 * index], replies[2 + 2 * index]
            found[key] = {
                "value": value,
                "expire_at_ms": now_ms + int(ttl) if value is not None and ttl is not None and ttl > 0 else None,
            }
    return found


def naive_utc(value: datetime | str) -> datetime:
    """A timestamp as read from either database (aware, naive, or SQLite's text) as naive UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
