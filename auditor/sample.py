"""The sample deployment: loading it into a database, and the embedded SQLite default built from it."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from sqlalchemy import Connection, DateTime, func, select, tuple_

from auditor.errors import InputError, UnavailableError
from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
from auditor.ledger.schema import TABLES, metadata

SAMPLE_FILES = ("litellm_tables.json", "config.yaml", "redis.json")
LOADER_VERSION = "1"  # bump when the loader changes how rows land, so cached databases rebuild


def sample_dir() -> Path:
    """Installed wheels carry the sample inside the package; a source checkout has it beside it."""
    packaged = resources.files("auditor") / "_sample_data"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "sample_data"
    if checkout.is_dir():
        return checkout
    raise UnavailableError("the sample deployment is missing from this installation: reinstall auditor")


def sample_config_path() -> Path:
    return sample_dir() / "config.yaml"


def sample_fingerprint() -> str:
    digest = hashlib.sha256(LOADER_VERSION.encode())
    for name in SAMPLE_FILES:
        path = sample_dir() / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _sample_tables() -> dict[str, list[dict]]:
    return json.loads((sample_dir() / "litellm_tables.json").read_text())


def _typed(table_name: str, row: Mapping[str, object]) -> dict[str, object]:
    """JSON has no timestamps: parse the ISO strings of timestamp columns."""
    table = TABLES[table_name]
    return {
        key: datetime.fromisoformat(value) if isinstance(value, str) and isinstance(table.c[key].type, DateTime) else value
        for key, value in row.items()
    }


@dataclass(frozen=True)
class LoadResult:
    rows_by_table: dict[str, int]
    redis_keys: int = 0


def load_sample(conn: Connection, *, force: bool = False) -> LoadResult:
    """Create LiteLLM's tables where absent and insert the sample rows.

    Refuses a database that already holds spend logs unless `force`; with it, sample rows
    replace rows that share their primary keys and nothing else is touched.
    """
    metadata.create_all(conn, checkfirst=True)
    spend_logs = TABLES["LiteLLM_SpendLogs"]
    existing = conn.execute(select(func.count()).select_from(select(spend_logs.c.request_id).limit(1).subquery())).scalar_one()
    if existing and not force:
        raise InputError(
            "this database already holds LiteLLM spend logs: refusing to mix in sample rows "
            "(use a fresh database, or --force to replace rows with the sample's primary keys)"
        )
    counts: dict[str, int] = {}
    tables = _sample_tables()
    for table in metadata.sorted_tables:
        rows = [_typed(table.name, row) for row in tables.get(table.name, [])]
        if not rows:
            continue
        if force:
            pk = list(table.primary_key.columns)
            keys = [tuple(row[c.name] for c in pk) for row in rows]
            for start in range(0, len(keys), 500):
                conn.execute(table.delete().where(tuple_(*pk).in_(keys[start : start + 500])))
        conn.execute(table.insert(), rows)
        counts[table.name] = len(rows)
    return LoadResult(counts)


def load_sample_redis(client) -> int:
    """Write the sample's Redis counters (SET with their TTL); returns how many keys."""
    path = sample_dir() / "redis.json"
    if not path.exists():
        return 0
    counters = json.loads(path.read_text())
    pipe = client.pipeline(transaction=True)
    for key, spec in counters.items():
        pipe.set(key, spec["value"], ex=spec.get("ttl_seconds") or None)
    pipe.execute()
    return len(counters)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auditor"


def embedded_target() -> DatabaseTarget:
    """The SQLite sample database in the user's cache, built on first use and when the sample changes."""
    path = cache_dir() / f"sample-{sample_fingerprint()}.sqlite"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sample-", suffix=".sqlite", dir=path.parent)
        os.close(fd)
        try:
            target = DatabaseTarget(parse_database_url(f"sqlite:///{tmp}"), "embedded sample")
            with connect(target, read_only=False) as conn:
                load_sample(conn, force=True)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        for stale in path.parent.glob("sample-*.sqlite"):
            if stale != path:
                stale.unlink(missing_ok=True)
    return DatabaseTarget(parse_database_url(f"sqlite:///{path}"), "embedded sample")
