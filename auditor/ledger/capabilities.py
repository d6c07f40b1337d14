"""What the connected LiteLLM database has: inspected once, asked everywhere instead of assuming.

Databases come from many LiteLLM versions; columns and tables appear over time. Each marker
below names the version that introduced it (../shared/litellm/semantics.md, timeline and (d)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, inspect, text

from auditor.ledger.schema import DAILY_ROLLUPS, TABLES

# (table, column or None for the table itself, first LiteLLM version that has it)
VERSION_MARKERS: tuple[tuple[str, str | None, str], ...] = (
    ("LiteLLM_SpendLogs", "custom_llm_provider", "1.55"),
    ("LiteLLM_SpendLogs", "status", "1.68"),
    ("LiteLLM_VerificationToken", "budget_limits", "1.84"),
    ("LiteLLM_TeamMembership", "total_spend", "1.84"),
    ("LiteLLM_BudgetWindowSpend", None, "1.100"),
    ("LiteLLM_VerificationToken", "total_spend", "1.105"),
)

API_KEY_START_INDEX = ("api_key", "startTime")
CREATE_API_KEY_START_INDEX = (
    'CREATE INDEX CONCURRENTLY IF NOT EXISTS "LiteLLM_SpendLogs_api_key_startTime_idx" '
    'ON "LiteLLM_SpendLogs" (api_key, "startTime");'
)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class Capabilities:
    dialect: str
    server_version: str
    columns: Mapping[str, frozenset[str]]  # LiteLLM tables present -> their columns
    indexes: Mapping[str, tuple[tuple[str, ...], ...]]  # table -> indexed column lists

    def has_table(self, table: str) -> bool:
        return table in self.columns

    def has_column(self, table: str, column: str) -> bool:
        return column in self.columns.get(table, frozenset())

    @property
    def has_spend_logs(self) -> bool:
        return self.has_table("LiteLLM_SpendLogs")

    @property
    def has_api_key_start_index(self) -> bool:
        return any(cols[:2] == API_KEY_START_INDEX for cols in self.indexes.get("LiteLLM_SpendLogs", ()))

    @property
    def missing_tables(self) -> tuple[str, ...]:
        return tuple(name for name in TABLES if name not in self.columns)  # the tables auditor defines

    def version_range(self) -> tuple[str | None, str | None]:
        """(at least, below) LiteLLM version suggested by which markers are present."""
        present = [v for table, column, v in VERSION_MARKERS if self._has_marker(table, column)]
        absent = [v for table, column, v in VERSION_MARKERS if not self._has_marker(table, column)]
        low = max(present, key=_version_key) if present else None
        above_low = [v for v in absent if low is None or _version_key(v) > _version_key(low)]
        high = min(above_low, key=_version_key) if above_low else None
        return low, high

    def describe_version(self) -> str:
        low, high = self.version_range()
        if low and high:
            return f"LiteLLM >= {low}, < {high} (from schema markers)"
        if low:
            return f"LiteLLM >= {low} (from schema markers)"
        if high:
            return f"LiteLLM < {high} (from schema markers)"
        return "unknown LiteLLM version"

    def _has_marker(self, table: str, column: str | None) -> bool:
        return self.has_table(table) if column is None else self.has_column(table, column)


def inspect_database(conn: Connection) -> Capabilities:
    """One pass over the catalog for LiteLLM's tables; nothing else is read."""
    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    columns: dict[str, frozenset[str]] = {}
    indexes: dict[str, tuple[tuple[str, ...], ...]] = {}
    for name in [*TABLES, *(t for t in DAILY_ROLLUPS if t not in TABLES)]:
        if name not in present:
            continue
        columns[name] = frozenset(col["name"] for col in inspector.get_columns(name))
        indexes[name] = tuple(tuple(c for c in ix["column_names"] if c) for ix in inspector.get_indexes(name))
    dialect = conn.dialect.name
    if dialect == "postgresql":
        server_version = conn.execute(text("SHOW server_version")).scalar_one()
    else:
        server_version = conn.execute(text("SELECT sqlite_version()")).scalar_one()
    return Capabilities(dialect=dialect, server_version=f"{dialect} {server_version}", columns=columns, indexes=indexes)


def detect_deployment_era(
    conn: Connection, caps: Capabilities, explicit: str | None, *, client=None, redis_keys: Iterable[str] | None = None
):
    """The LiteLLM era (auditor.litellm.eras.Detection): --litellm-version, else the schema markers and the limiter's key names
    in Redis (read with `client`, or given as `redis_keys`) and in LiteLLM_BudgetWindowSpend. A Redis that fails while
    its key names are read is left out: the scan that follows reads it again and says so."""
    from redis import RedisError

    from auditor.ledger import budget_holders
    from auditor.ledger.redis_store import scan_keys
    from auditor.litellm.eras import counter_shapes, detect_era

    if explicit:
        return detect_era(caps.version_range(), (), explicit, schema_words=caps.describe_version())
    table_ids = [row.entity_id for row in budget_holders.model_budget_window_rows(conn, caps)]
    keys: list[str] = list(redis_keys or ())
    if client is not None and redis_keys is None:
        try:
            keys = list(scan_keys(client))
        except (RedisError, OSError):
            keys = []
    return detect_era(caps.version_range(), counter_shapes(keys, table_ids), None, schema_words=caps.describe_version())
