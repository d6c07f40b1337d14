"""Time `backfill --apply` on N drifted counters: the plan (scan, snapshot) and the writes, separately.

Builds a throw-away PostgreSQL database (dropped at the end unless --keep) holding N keys that each cap
gpt-4o at a 1d window with two charges in it and a drifted Redis counter (and its start key) per key, so each
key needs one write. Then it
plans and applies with auditor's own code, as `auditor backfill --apply --flush-lag 0 --increment-lag 0`
does (the flush wait is a fixed pause per run, not per counter, and is left out), and prints counters/s.

    python benchmarks/backfill.py --admin postgresql://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/7 --keys 3000

The Redis db given is flushed before and after.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditor.audit.scan import ScanOptions  # noqa: E402
from auditor.clock import utc_now  # noqa: E402
from auditor.ledger.capabilities import inspect_database  # noqa: E402
from auditor.ledger.db import BACKFILL, DatabaseTarget, connect, engine_for, parse_database_url  # noqa: E402
from auditor.ledger.schema import metadata, spend_logs, verification_token  # noqa: E402
from auditor.litellm.config import load_config  # noqa: E402
from auditor.repair import apply as writing  # noqa: E402
from auditor.repair import journal  # noqa: E402
from auditor.repair import prepare as preparing  # noqa: E402

CONFIG = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: azure/prod-gpt4o
    model_info:
      id: dep-gpt4o
"""


def build(url: str, client, keys: int) -> None:
    now = utc_now().replace(microsecond=0)
    start = now - timedelta(hours=3)
    end_ms = int((start + timedelta(days=1)).replace(tzinfo=UTC).timestamp() * 1000)
    tokens = [f"{i:064x}" for i in range(1, keys + 1)]
    engine = create_engine(url)
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            verification_token.insert(),
            [
                {
                    "token": t,
                    "key_alias": f"k{i}",
                    "spend": 0.0,
                    "model_max_budget": {"gpt-4o": {"budget_limit": 1e9, "time_period": "1d"}},
                }
                for i, t in enumerate(tokens)
            ],
        )
        conn.execute(
            spend_logs.insert(),
            [
                {
                    "request_id": f"req-{uuid.uuid4().hex}",
                    "call_type": "acompletion",
                    "api_key": t,
                    "spend": 0.25 * (n + 1),
                    "startTime": start + timedelta(minutes=n) - timedelta(seconds=1),
                    "endTime": start + timedelta(minutes=n),
                    "model": "azure/prod-gpt4o",
                    "model_group": "gpt-4o",
                    "model_id": "dep-gpt4o",
                    "status": "success",
                    "metadata": {},
                }
                for t in tokens
                for n in (0, 1)
            ],
        )
        journal.upgrade(conn)
    engine.dispose()
    pipe = client.pipeline(transaction=False)
    for t in tokens:
        pipe.set(f"virtual_key_spend:{t}:gpt-4o:1d", "1.5", pxat=end_ms)
        pipe.set(f"virtual_key_budget_start_time:{t}:gpt-4o:1d", repr(start.replace(tzinfo=UTC).timestamp()), pxat=end_ms)
    pipe.execute()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin", default="postgresql+psycopg://postgres@127.0.0.1:5432/test", help="a database to CREATE DATABASE from"
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/7", help="a Redis db to use (flushed)")
    parser.add_argument("--keys", type=int, default=3000)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args(argv)

    name = f"auditor_bench_backfill_{uuid.uuid4().hex[:8]}"
    admin = create_engine(parse_database_url(args.admin), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(parse_database_url(args.admin)).set(database=name).render_as_string(hide_password=False)
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    client.flushdb()
    try:
        build(url, client, args.keys)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
            handle.write(CONFIG)
        target = DatabaseTarget(parse_database_url(url), "--db")
        began = time.perf_counter()
        with connect(target) as conn:
            prepared = preparing.prepare(
                conn,
                inspect_database(conn),
                load_config(handle.name),
                ScanOptions(now=utc_now(), settle=timedelta(0)),
                client,
                litellm_version=None,
                targets=["counters"],
                remove_miskeyed=False,
                wall_now=utc_now(),
            )
        planned = time.perf_counter() - began
        writes = prepared.plan.actionable
        engine = engine_for(target, BACKFILL)
        env = writing.WriteEnv(engine=engine, redis=client, ledger=prepared.ledger, masked_db=target.masked, clock=utc_now)
        began = time.perf_counter()
        report = writing.apply(prepared.plan, env, {})
        applied = time.perf_counter() - began
        engine.dispose()
        counts = report.counts()
        by_target: dict[str, int] = {}
        for w in writes:
            by_target[w.target] = by_target.get(w.target, 0) + 1
        print(f"keys: {args.keys}; planned writes: {len(writes)} {by_target}; outcomes: {counts}")
        print(f"plan (scan + snapshot): {planned:.2f} s")
        print(f"apply: {applied:.2f} s = {len(writes) / applied:,.0f} counters/s")
        wrong = [o for o in report.outcomes if o.state not in ("applied", "recomputed")]
        return 1 if wrong else 0
    finally:
        client.flushdb()
        client.close()
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
