"""Opening what an audit reads, one way for the library and every command: the database (down to the embedded
sample), the proxy config, Redis, the scan options with the config's settings applied. No Typer or Rich here:
what the CLI prints, it passes in as `warn` (the library's default logs it)."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from auditor.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from auditor.ledger.budget_holders import KeyRow
    from auditor.ledger.capabilities import Capabilities
    from auditor.litellm.catalogue import Catalogue

Warn = Callable[[str], None]


def log_warning(text: str) -> None:
    """The library's default for what the CLI says on stderr: a warning on the `auditor` logger."""
    logging.getLogger("auditor").warning(text)


MAX_SECONDS = 10 * 366 * 86400  # ten years: any more and `now - it` leaves the datetimes LiteLLM's rows hold


def check_amounts(options: dict[str, float | int | None], seconds: tuple[str, ...] = ()) -> None:
    """Numeric options are finite and >= 0: NaN compares false with everything, so it would pass a plain `< 0` check
    and silently turn every comparison into "no finding"; infinity overflows the datetimes built from it. Options
    named in `seconds` are durations, at most ten years."""
    import math

    for name, value in options.items():
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise InputError(f"{name} {value!r} is not a finite number >= 0")
        if value is not None and name in seconds and value > MAX_SECONDS:
            raise InputError(f"{name} {value!r} is more than ten years in seconds")


def not_litellm(target) -> Exception:
    """The one way to say --db is not LiteLLM's database (scan, report, backfill, resolve)."""
    from auditor.errors import UnavailableError

    return UnavailableError(
        f"{target.masked} is not LiteLLM's database (it has no LiteLLM_SpendLogs table): "
        "point --db at the database the proxy's DATABASE_URL names"
    )


def require_litellm(target) -> None:
    """Before anything is written for a run (report's history), the database must be LiteLLM's."""
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import connect

    with connect(target) as conn:
        if not inspect_database(conn).has_spend_logs:
            raise not_litellm(target)


def resolve_database(db: str | None, warn: Warn = log_warning):
    """The database to read; the embedded sample (said through `warn`) when none is configured."""
    from auditor.ledger.db import database_from
    from auditor.sample import embedded_target

    target = database_from(db)
    if target is None:
        target = embedded_target()
        warn("no database configured (--db, AUDITOR_DATABASE_URL, DATABASE_URL): using the embedded sample deployment")
    return target


def writable_target(db: str | None, what: str):
    """Writers need a database named explicitly; the embedded sample is a read-only demo."""
    from auditor.ledger.db import database_from

    target = database_from(db)
    if target is None:
        raise InputError(f"{what} writes: give --db (or AUDITOR_DATABASE_URL / DATABASE_URL); the embedded sample is read-only")
    return target


def resolve_config(config: str | None, target) -> tuple[str | None, str]:
    """--config, else the environment, else the sample's own config when reading the embedded sample."""
    from auditor.ledger.db import EMBEDDED
    from auditor.litellm.config import config_from_env
    from auditor.sample import sample_config_path

    if config:
        return config, "--config"
    from_env = config_from_env(None)
    if from_env:
        return from_env, "environment"
    if target.origin == EMBEDDED:
        return str(sample_config_path()), "sample"
    return None, "none"


MID_SCAN_HOOK_ENV = "AUDITOR_TEST_PAUSE_MID_SCAN"  # test only: seconds to pause once charges have streamed (fault tests)


def _mid_scan_hook(advance):
    """With AUDITOR_TEST_PAUSE_MID_SCAN set, pause once, mid-stream with the read transaction open, so a test can
    kill the connection at a known point; it only sleeps and says so on stderr. Unset (always, outside tests): as is."""
    seconds = os.environ.get(MID_SCAN_HOOK_ENV)
    if not seconds:
        return advance
    paused: list[bool] = []

    def hooked(n: int) -> None:
        if advance is not None:
            advance(n)
        if not paused:
            paused.append(True)
            sys.stderr.write("auditor: test hook: paused mid-scan\n")
            sys.stderr.flush()
            time.sleep(float(seconds))

    return hooked


@dataclass
class RedisSource:
    """Redis for a scan: its counters, or, with --redis-optional, none once it cannot be reached or read (said once
    through `warn`, and in the result's notes by ScanSession.scan)."""

    target: object
    optional: bool
    warn: Warn = log_warning
    client: object = None
    problem: str | None = None

    def open(self) -> None:
        from auditor.errors import UnavailableError
        from auditor.ledger.redis_store import connect_redis

        try:
            self.client = connect_redis(self.target)
        except UnavailableError as error:
            self._give_up(str(error))

    def counters(self) -> list:
        from auditor.errors import UnavailableError
        from auditor.ledger.redis_store import read_all_counters

        if self.client is None:
            return []
        try:
            return read_all_counters(self.target, self.client)
        except UnavailableError as error:
            self._give_up(str(error))
            return []

    def values(self, keys: list[str]) -> dict:
        from auditor.errors import UnavailableError
        from auditor.ledger.redis_store import read_all_values

        if self.client is None or not keys:
            return {}
        try:
            return read_all_values(self.target, self.client, keys)
        except UnavailableError as error:
            self._give_up(str(error))
            return {}

    def _give_up(self, message: str) -> None:
        from auditor.errors import UnavailableError

        if not self.optional:
            raise UnavailableError(message)
        self.close()
        self.problem = message
        self.warn(f"warning: {message}; scanning without Redis counters (--redis-optional)")

    @property
    def note(self) -> str | None:
        if self.problem is None:
            return None
        return (
            f"DEGRADED (--redis-optional): Redis counters were not read ({self.problem}); no Redis counter was compared, "
            "and where enforcement reads is judged from the database alone"
        )

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


@dataclass
class Opened:
    """LiteLLM's database opened read-only with what every reader needs first: what it has, its keys, and the
    model catalogue (config + LiteLLM_ProxyModelTable) names resolve against."""

    conn: Connection
    caps: Capabilities
    key_rows: list[KeyRow]
    catalogue: Catalogue


@contextmanager
def open_catalogue(target, loaded, statement_timeout: float | None = None) -> Iterator[Opened]:
    """Connect, check the database is LiteLLM's, read the keys and build the catalogue: the one way scan_session
    and catalogue_session open a database."""
    from auditor.audit.scan import load_catalogue
    from auditor.ledger import budget_holders
    from auditor.ledger.capabilities import inspect_database
    from auditor.ledger.db import connect

    with connect(target, statement_timeout_s=statement_timeout) as conn:
        caps = inspect_database(conn)
        if not caps.has_spend_logs:
            raise not_litellm(target)
        key_rows = budget_holders.keys(conn, caps)
        yield Opened(conn, caps, key_rows, load_catalogue(conn, caps, loaded, key_rows))


@contextmanager
def catalogue_session(db: str | None, config: str | None, warn: Warn = log_warning) -> Iterator[Opened]:
    """The database and config resolved as scan_session resolves them, without the scan's options or Redis: what
    `resolve` reads (a scan's options would refuse a config whose timezone resolving never uses)."""
    from pathlib import Path

    from auditor.litellm.config import load_config

    target = resolve_database(db, warn)
    config_path, _ = resolve_config(config, target)
    with open_catalogue(target, load_config(Path(config_path)) if config_path else None) as opened:
        yield opened


@dataclass
class ScanSession:
    """Everything a scan-like command needs, opened once: the read-only connection, what the database
    has, the model catalogue, the options with the config's settings applied, and Redis if configured."""

    conn: object
    caps: object
    catalogue: object
    options: object
    key_rows: list
    source: dict
    redis: RedisSource | None = None
    config_warnings: tuple[str, ...] = ()  # what the config holds that LiteLLM ignores (config._warnings)
    era: object = None  # auditor.litellm.eras.Detection: the LiteLLM era the scan assumes, and why

    @property
    def redis_counters(self) -> Callable | None:
        return self.redis.counters if self.redis is not None and self.redis.client is not None else None

    def scan(self, advance=None, increment=None):
        from dataclasses import replace

        from auditor.audit.scan import run_scan
        from auditor.redact import redact_result

        result = run_scan(
            self.conn,
            self.caps,
            self.catalogue,
            self.options,
            redis_counters=self.redis_counters,
            redis_values=self.redis.values if self.redis_counters is not None else None,
            progress=_mid_scan_hook(advance),
            source=self.source,
            key_rows=self.key_rows,
            increment=increment,
        )
        if self.redis is not None and self.redis.note:
            result = replace(result, notes=[self.redis.note, *result.notes])
        if self.config_warnings:  # said by doctor too, but a cron report is where people look
            result = replace(result, notes=[*result.notes, *(f"config: {w}" for w in self.config_warnings)])
        return redact_result(result, (row.token for row in self.key_rows))


@contextmanager
def scan_session(
    db,
    config,
    redis_url,
    *,
    now=None,
    since=None,
    until=None,
    keys=(),
    model=None,
    tolerance=0.0001,
    window_slack=1.0,
    settle=120.0,
    timezone=None,
    use_rollups=False,
    statement_timeout=None,
    redis_optional=False,
    litellm_version=None,
    with_redis=True,
    warn: Warn = log_warning,
) -> Iterator[ScanSession]:
    """Parse the shared scan options, resolve database/config/Redis, and open them: one way for the library and
    every command. `warn` hears what is said on the way (the embedded sample, Redis given up with redis_optional)."""
    from dataclasses import replace
    from datetime import timedelta
    from pathlib import Path

    from auditor.audit.scan import ScanOptions
    from auditor.clock import parse_instant, utc_now
    from auditor.ledger.capabilities import detect_deployment_era
    from auditor.ledger.redis_store import redis_from
    from auditor.litellm.config import general_setting_on, litellm_setting, load_config, spend_log_retention
    from auditor.litellm.periods import zone

    check_amounts(
        {"--tolerance": tolerance, "--window-slack": window_slack, "--settle": settle}, seconds=("--window-slack", "--settle")
    )
    judged_at = parse_instant(now, utc_now(), "--now") if now else utc_now()
    target = resolve_database(db, warn)
    config_path, _ = resolve_config(config, target)
    loaded = load_config(Path(config_path)) if config_path else None
    options = ScanOptions(
        now=judged_at,
        since=parse_instant(since, judged_at, "--since") if since else None,
        until=parse_instant(until, judged_at, "--until") if until else None,
        keys=tuple(keys or ()),
        model=model,
        tolerance=tolerance,
        window_slack=timedelta(seconds=window_slack),
        settle=timedelta(seconds=settle),
        timezone=timezone or (loaded.timezone if loaded else None),
        retention=spend_log_retention(loaded.data) if loaded else None,
        use_rollups=use_rollups,
        default_end_user_budget=litellm_setting(loaded.data if loaded else None, "max_end_user_budget_id"),
        user_budget_on_team_keys=general_setting_on(loaded.data if loaded else None, "apply_user_budget_to_team_keys"),
    )
    zone(options.timezone)  # an unknown zone is a usage error before anything connects
    if litellm_version:
        from auditor.litellm.eras import parse_version

        parse_version(litellm_version)  # a usage error before anything connects
    redis_target = redis_from(redis_url) if with_redis else None  # `spend` reads the ledger alone
    redis = RedisSource(redis_target, redis_optional, warn) if redis_target is not None else None
    if redis is not None:
        redis.open()
    try:
        with open_catalogue(target, loaded, statement_timeout) as opened:
            conn, caps, key_rows = opened.conn, opened.caps, opened.key_rows
            era = detect_deployment_era(conn, caps, litellm_version, client=redis.client if redis is not None else None)
            source = {
                "dialect": caps.dialect,
                "database": target.masked,
                "litellm_version": caps.describe_version(),
                "config": config_path,
                "redis": redis_target.masked if redis_target else None,
                "era": era.as_record(),
            }
            options = replace(options, era=era.era.name)  # the scan judges the deployment by the release that ran
            yield ScanSession(
                conn, caps, opened.catalogue, options, key_rows, source, redis, loaded.warnings if loaded else (), era
            )
    finally:
        if redis is not None:
            redis.close()
