"""A LiteLLM-in-the-loop simulator: a seeded deployment whose database, config and Redis are written by LiteLLM
1.110.2's own code (needs the `differential` extra), for tests that audit it with `auditor scan`.

    run = simulate(seed, db_url, redis_url, workdir)   # then: auditor scan --db … --config run.config_path …
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from tests.litellm_sim.world import World, build_world, draw_traffic, key_hash


@dataclass(frozen=True)
class Faults:
    """What went wrong in the deployment; each is off by default (a clean, correctly working proxy)."""

    lost_rows: int = 0  # the last N successful spend rows of key `anon` never reached LiteLLM_SpendLogs
    lost_increment: bool = False  # key `anon`'s last per-model counter increment was lost
    double_flush: bool = False  # one LiteLLM_DailyUserSpend row's flush was applied twice
    renamed_entry: bool = False  # key `alice-a`'s entry `gpt-4o` renamed to `gpt-4o*` at the end
    deployment_counter: bool = False  # a counter stored under a deployment name for key `anon`
    stale_spend_column: bool = False  # key `anon`'s `spend` column stopped being written half a day before the end


@dataclass
class SimRun:
    world: World
    outcome: object  # engine.Outcome
    now: datetime  # the instant to scan at (naive UTC)
    config_path: Path
    rows_written: int
    applied: dict = field(default_factory=dict)  # fault -> what it changed (amounts, names), for the expectations


def simulate(seed: int, db_url: str, redis_url: str | None, workdir: Path, *, faults: Faults = Faults(),
             days: int = 4, requests_per_day: int = 60, disable_pre_routing_error_logs: bool = False) -> SimRun:
    from tests.litellm_sim import faults as fault_module
    from tests.litellm_sim.engine import Simulation
    from tests.litellm_sim.store import database_rows, write_config, write_database

    world = build_world(seed, days=days)
    traffic = draw_traffic(world, requests_per_day)
    now = world.end + timedelta(minutes=30)
    sim = Simulation(world, redis_url, disable_pre_routing_error_logs=disable_pre_routing_error_logs)
    applied: dict = {}
    fault_module.before_run(sim, world, traffic, faults, applied, now)
    outcome = asyncio.run(sim.run(traffic, now))
    fault_module.after_run(sim, world, outcome, faults, applied, now)
    rows = database_rows(world, outcome, now)
    fault_module.on_rows(world, rows, faults, applied, now)
    write_database(db_url, rows)
    config_path = write_config(Path(workdir) / "proxy_config.yaml", world,
                               disable_pre_routing_error_logs=disable_pre_routing_error_logs)
    return SimRun(world, outcome, now, config_path, len(rows["LiteLLM_SpendLogs"]), applied)


__all__ = ["Faults", "SimRun", "World", "build_world", "key_hash", "simulate"]
