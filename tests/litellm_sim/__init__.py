"""A LiteLLM-in-the-loop simulator: a seeded deployment whose database, config and Redis are written by LiteLLM
1.110.2's own code (needs the `differential` extra), for tests that audit it with `auditor scan`.

    run = simulate(seed, redis_url, workdir)        # LiteLLM's code runs once, on a simulated clock
    expected = materialize(run, db_url, redis_url, Faults(lost_rows=2))   # write it, with faults
    # then: auditor scan --db db_url --config run.config_path --redis redis_url --now run.now
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .world import FEATURES, World, build_world, draw_traffic, key_hash


@dataclass(frozen=True)
class Faults:
    """What went wrong in the deployment; each is off by default (a clean, correctly working proxy)."""

    lost_rows: int = 0  # the last N successful spend rows of key `anon` never reached LiteLLM_SpendLogs
    lost_increment: bool = False  # key `anon`'s last per-model counter increment was lost
    double_flush: bool = False  # one LiteLLM_DailyUserSpend row's flush was applied twice
    renamed_entry: bool = False  # key `anon`'s entry `gpt-4o-mini` renamed to `gpt-4o-mini*` at the end
    deployment_counter: bool = False  # a counter stored under a deployment name for key `anon`
    stale_spend_column: bool = False  # key `anon`'s `spend` column stopped being written half a day before the end


@dataclass
class SimRun:
    """A finished simulation, held in memory: `materialize` writes it (and a fault) into a database and Redis."""

    world: World
    outcome: object  # engine.Outcome
    now: datetime  # the instant to scan at (naive UTC)
    config_path: Path
    rows: dict  # table name -> rows, as LiteLLM left them
    redis_snapshot: list  # (key, DUMP payload, PTTL) of every key LiteLLM left in Redis; None without Redis
    counter_starts: dict  # spend key -> start of its window (naive UTC) in the state LiteLLM left
    disable_pre_routing_error_logs: bool = False

    @property
    def rows_written(self) -> int:
        return len(self.rows["LiteLLM_SpendLogs"])


_LOOP: asyncio.AbstractEventLoop | None = None


def _loop() -> asyncio.AbstractEventLoop:
    """One event loop for every simulation of a process: LiteLLM's logging worker binds to the first loop it runs
    on, and a second asyncio.run would leave the success callbacks queued on a closed one."""
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def simulate(
    seed: int,
    redis_url: str | None,
    workdir: Path,
    *,
    features: frozenset[str] = FEATURES,
    days: int = 4,
    requests_per_day: int = 60,
    disable_pre_routing_error_logs: bool = False,
) -> SimRun:
    """Run the deployment through LiteLLM; Redis (a db of its own: it is flushed) holds its counters afterwards."""
    from .engine import Simulation
    from .store import database_rows, write_config

    world = build_world(seed, days=days, features=frozenset(features))
    traffic = draw_traffic(world, requests_per_day)
    now = world.end + timedelta(minutes=30)
    sim = Simulation(world, redis_url, disable_pre_routing_error_logs=disable_pre_routing_error_logs)
    outcome = _loop().run_until_complete(sim.run(traffic, now))
    rows = database_rows(world, outcome, now)
    snapshot, starts = None, {}
    if sim.redis is not None:
        snapshot = [(k, sim.redis.dump(k), sim.redis.pttl(k)) for k in sim.redis.scan_iter(count=1000)]
        for k in sim.redis.scan_iter(match="*budget_start_time:*", count=1000):
            name = k.decode()
            prefix, _, rest = name.partition(":")
            spend_prefix = {"virtual_key_budget_start_time": "virtual_key_spend"}.get(prefix)
            if spend_prefix:
                starts[f"{spend_prefix}:{rest}"] = datetime.fromtimestamp(float(sim.redis.get(k)), UTC).replace(tzinfo=None)
    else:
        starts = {r["entity_id"]: r["window_start"] for r in rows["LiteLLM_BudgetWindowSpend"]}
    config_path = write_config(
        Path(workdir) / "proxy_config.yaml", world, disable_pre_routing_error_logs=disable_pre_routing_error_logs
    )
    return SimRun(world, outcome, now, config_path, rows, snapshot, starts, disable_pre_routing_error_logs)


def materialize(run: SimRun, db_url: str, redis_url: str | None, faults: Faults = Faults()) -> list:
    """Write the simulation into an empty database (and Redis, restored to what LiteLLM left), with `faults`
    applied; returns the findings the faults must cause (faults.Expected)."""
    import copy

    import redis as redis_lib

    from . import faults as f
    from .store import write_database

    rows = copy.deepcopy(run.rows)
    client = None
    if redis_url is not None and run.redis_snapshot is not None:
        client = redis_lib.Redis.from_url(redis_url)
        client.flushdb()
        for key, payload, pttl in run.redis_snapshot:
            client.restore(key, max(pttl, 0), payload, replace=True)
    expected: list = []
    if faults.lost_rows:
        expected += f.lost_rows(run, rows, faults.lost_rows)
    if faults.lost_increment:
        expected += f.lost_increment(run, rows, client)
    if faults.double_flush:
        expected += f.double_flush(run, rows)
    if faults.renamed_entry:
        expected += f.renamed_entry(run, rows)
    if faults.deployment_counter:
        expected += f.deployment_counter(run, rows, client)
    if faults.stale_spend_column:
        expected += f.stale_spend_column(run, rows)
    write_database(db_url, rows)
    if client is not None:
        client.close()
    return expected


__all__ = ["FEATURES", "Faults", "SimRun", "World", "build_world", "key_hash", "materialize", "simulate"]
