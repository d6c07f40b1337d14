"""Every read of LiteLLM's tables. Aggregation happens here, in SQL, never row by row in Python."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, String, and_, case, func, literal, or_, select, text
from sqlalchemy.sql import ColumnElement

from auditor.capabilities import Capabilities
from auditor.schema import (
    TABLES,
    budget_table,
    budget_window_spend,
    deleted_verification_token,
    proxy_model_table,
    spend_logs,
    verification_token,
)


def estimated_rows(conn: Connection, table: str) -> int | None:
    """The planner's estimate on PostgreSQL (never count(*) on a large table); None if never analyzed."""
    if conn.dialect.name == "postgresql":
        estimate = conn.execute(
            text("SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:name)"), {"name": f'"{table}"'}
        ).scalar()
        return None if estimate is None or estimate < 0 else int(estimate)
    return conn.execute(select(func.count()).select_from(TABLES[table])).scalar_one()


def spend_time_range(conn: Connection) -> tuple[datetime | None, datetime | None]:
    """Oldest and newest "startTime": two index probes on PostgreSQL."""
    row = conn.execute(select(func.min(spend_logs.c.startTime), func.max(spend_logs.c.startTime))).one()
    return _as_datetime(row[0]), _as_datetime(row[1])


def _as_datetime(value: object) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


CHARGED = "charged"
IGNORED_FAILURE = "failure"
IGNORED_NO_API_KEY = "empty api_key"


@dataclass(frozen=True, slots=True)
class SpendFilter:
    """--since/--until on "startTime" (indexed; the partition key when SpendLogs is partitioned), --key."""

    since: datetime | None = None
    until: datetime | None = None
    api_keys: tuple[str, ...] | None = None

    def where(self) -> list[ColumnElement[bool]]:
        clauses: list[ColumnElement[bool]] = []
        if self.since is not None:
            clauses.append(spend_logs.c.startTime >= self.since)
        if self.until is not None:
            clauses.append(spend_logs.c.startTime < self.until)
        if self.api_keys is not None:
            clauses.append(spend_logs.c.api_key.in_(self.api_keys))
        return clauses


def _is_failure(caps: Capabilities) -> ColumnElement[bool]:
    """`status = 'failure'`; rows written before the column existed carry it in metadata.status."""
    if not caps.has_column("LiteLLM_SpendLogs", "status"):
        return literal(False)
    from_metadata = spend_logs.c.metadata["status"].as_string()
    return or_(
        spend_logs.c.status == "failure",
        and_(spend_logs.c.status.is_(None), from_metadata == "failure"),
    )


def row_outcome(caps: Capabilities) -> ColumnElement[str]:
    """Why a row is or is not charged, decided in SQL so that rows are counted, never fetched."""
    return case(
        (_is_failure(caps), literal(IGNORED_FAILURE)),
        (func.coalesce(spend_logs.c.api_key, "") == "", literal(IGNORED_NO_API_KEY)),
        else_=literal(CHARGED),
    ).label("outcome")


def model_triple(caps: Capabilities) -> tuple[ColumnElement[str], ColumnElement[str], ColumnElement[str]]:
    """(model, model_group, model_id) as non-null text; columns an old proxy lacks read as ''."""

    def text_or_empty(column: str) -> ColumnElement[str]:
        if caps.has_column("LiteLLM_SpendLogs", column):
            return func.coalesce(spend_logs.c[column], "")
        return literal("", String)

    return text_or_empty("model"), text_or_empty("model_group"), text_or_empty("model_id")


@dataclass(frozen=True, slots=True)
class SpendGroup:
    api_key: str
    model: str
    model_group: str
    model_id: str
    outcome: str
    spend: float
    requests: int
    first_start: datetime | None
    last_start: datetime | None


def spend_groups(conn: Connection, caps: Capabilities, where: SpendFilter) -> list[SpendGroup]:
    """One grouped query over the whole ledger: memory grows with distinct (key, model triple), not rows."""
    model, model_group, model_id = model_triple(caps)
    outcome = row_outcome(caps)
    key = func.coalesce(spend_logs.c.api_key, "")
    query = (
        select(
            key.label("api_key"),
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
            outcome,
            func.coalesce(func.sum(spend_logs.c.spend), 0.0).label("spend"),
            func.count().label("requests"),
            func.min(spend_logs.c.startTime).label("first_start"),
            func.max(spend_logs.c.startTime).label("last_start"),
        )
        .where(*where.where())
        .group_by(key, model, model_group, model_id, outcome)
    )
    return [
        SpendGroup(
            r.api_key, r.model, r.model_group, r.model_id, r.outcome, float(r.spend), int(r.requests),
            _as_datetime(r.first_start), _as_datetime(r.last_start),
        )
        for r in conn.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class ChargeRow:
    api_key: str
    start_time: datetime
    end_time: datetime
    spend: float
    model: str
    model_group: str
    model_id: str


def stream_charges(
    conn: Connection, caps: Capabilities, where: SpendFilter, api_keys: Sequence[str], batch: int = 5000
) -> Iterator[ChargeRow]:
    """Charged rows of the given keys in (key, charge time) order, through a server-side cursor."""
    if not api_keys:
        return
    model, model_group, model_id = model_triple(caps)
    query = (
        select(
            spend_logs.c.api_key,
            spend_logs.c.startTime,
            spend_logs.c.endTime,
            spend_logs.c.spend,
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
        )
        .where(*where.where(), spend_logs.c.api_key.in_(list(api_keys)), row_outcome(caps) == CHARGED)
        .order_by(spend_logs.c.api_key, spend_logs.c.endTime, spend_logs.c.startTime, spend_logs.c.request_id)
    )
    result = conn.execution_options(yield_per=batch).execute(query)
    for r in result:
        yield ChargeRow(r.api_key, _as_datetime(r.startTime), _as_datetime(r.endTime), float(r.spend or 0.0), r.model, r.model_group, r.model_id)


@dataclass(frozen=True, slots=True)
class KeyRow:
    token: str
    key_alias: str | None
    model_max_budget: object
    budget_table_model_max_budget: object  # via budget_id; applies when the key's own value is empty (1.82+)
    team_id: str | None
    user_id: str | None
    aliases: object
    model_spend: object
    deleted: bool = False


def keys(conn: Connection, caps: Capabilities) -> list[KeyRow]:
    """Every live key (with its budget table's model_max_budget) and every deleted one."""
    vt = verification_token
    has_budget_table = caps.has_table("LiteLLM_BudgetTable") and caps.has_column("LiteLLM_VerificationToken", "budget_id")
    budget_mmb = budget_table.c.model_max_budget if has_budget_table else literal(None)
    query = select(
        vt.c.token, vt.c.key_alias, vt.c.model_max_budget, budget_mmb.label("budget_mmb"), vt.c.team_id, vt.c.user_id,
        vt.c.aliases, vt.c.model_spend,
    )
    if has_budget_table:
        query = query.select_from(vt.outerjoin(budget_table, budget_table.c.budget_id == vt.c.budget_id))
    rows = [KeyRow(r.token, r.key_alias, r.model_max_budget, r.budget_mmb, r.team_id, r.user_id, r.aliases, r.model_spend) for r in conn.execute(query)]
    if caps.has_table("LiteLLM_DeletedVerificationToken"):
        live = {row.token for row in rows}
        dt = deleted_verification_token
        seen: set[str] = set()
        for r in conn.execute(select(dt.c.token, dt.c.key_alias, dt.c.team_id, dt.c.user_id).order_by(dt.c.deleted_at.desc())):
            if r.token in live or r.token in seen:
                continue
            seen.add(r.token)
            rows.append(KeyRow(r.token, r.key_alias, {}, None, r.team_id, r.user_id, {}, {}, deleted=True))
    return rows


@dataclass(frozen=True, slots=True)
class WindowSpendRow:
    entity_id: str
    window_duration: str
    window_start: datetime
    spend: float


def model_budget_window_rows(conn: Connection, caps: Capabilities) -> list[WindowSpendRow]:
    """LiteLLM_BudgetWindowSpend's per-model counters (1.109+, no-Redis replicas)."""
    if not caps.has_table("LiteLLM_BudgetWindowSpend"):
        return []
    t = budget_window_spend
    query = select(t.c.entity_id, t.c.window_duration, t.c.window_start, t.c.spend).where(t.c.entity_type == "model_max_budget")
    return [WindowSpendRow(r.entity_id, r.window_duration, _as_datetime(r.window_start), float(r.spend)) for r in conn.execute(query)]


def proxy_models(conn: Connection, caps: Capabilities) -> list[dict]:
    """Models added through LiteLLM's UI/API, as the catalogue builder takes them."""
    if not caps.has_table("LiteLLM_ProxyModelTable"):
        return []
    t = proxy_model_table
    return [
        {"model_id": r.model_id, "model_name": r.model_name, "litellm_params": r.litellm_params, "model_info": r.model_info}
        for r in conn.execute(select(t.c.model_id, t.c.model_name, t.c.litellm_params, t.c.model_info))
    ]


@dataclass(frozen=True, slots=True)
class TripleTotals:
    model: str
    model_group: str
    model_id: str
    requests: int
    spend: float


def model_triples(conn: Connection, caps: Capabilities, where: SpendFilter) -> list[TripleTotals]:
    """Every distinct logged (model, model_group, model_id), with rows and spend: one GROUP BY."""
    model, model_group, model_id = model_triple(caps)
    query = (
        select(model.label("model"), model_group.label("model_group"), model_id.label("model_id"),
               func.count().label("requests"), func.coalesce(func.sum(spend_logs.c.spend), 0.0).label("spend"))
        .where(*where.where())
        .group_by(model, model_group, model_id)
    )
    return [TripleTotals(r.model, r.model_group, r.model_id, int(r.requests), float(r.spend)) for r in conn.execute(query)]
