"""Who holds budgets: keys (live and deleted), teams, users, end users and team members with their
model_max_budget, and LiteLLM's own tables about budgets and models (LiteLLM_BudgetWindowSpend, the proxy's models).
Reads of LiteLLM's tables, like queries.py; aggregation in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, literal, select

from auditor.ledger.capabilities import Capabilities
from auditor.ledger.queries import SpendFilter, _as_datetime, _finite_spend, model_triple
from auditor.ledger.schema import (
    budget_table,
    budget_window_spend,
    deleted_verification_token,
    end_user_table,
    proxy_model_table,
    team_membership,
    team_table,
    user_table,
    verification_token,
)


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
    spend: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    total_spend: float | None = None


def keys(conn: Connection, caps: Capabilities) -> list[KeyRow]:
    """Every live key (with its budget table's model_max_budget) and every deleted one."""
    vt = verification_token
    has_budget_table = caps.has_table("LiteLLM_BudgetTable") and caps.has_column("LiteLLM_VerificationToken", "budget_id")
    budget_mmb = budget_table.c.model_max_budget if has_budget_table else literal(None)
    total = vt.c.total_spend if caps.has_column("LiteLLM_VerificationToken", "total_spend") else literal(None)
    query = select(
        vt.c.token,
        vt.c.key_alias,
        vt.c.model_max_budget,
        budget_mmb.label("budget_mmb"),
        vt.c.team_id,
        vt.c.user_id,
        vt.c.aliases,
        vt.c.model_spend,
        vt.c.spend,
        vt.c.max_budget,
        vt.c.budget_duration,
        vt.c.budget_reset_at,
        total.label("total_spend"),
    )
    if has_budget_table:
        query = query.select_from(vt.outerjoin(budget_table, budget_table.c.budget_id == vt.c.budget_id))
    rows = [
        KeyRow(
            r.token,
            r.key_alias,
            r.model_max_budget,
            r.budget_mmb,
            r.team_id,
            r.user_id,
            r.aliases,
            r.model_spend,
            False,
            r.spend,
            r.max_budget,
            r.budget_duration,
            _as_datetime(r.budget_reset_at),
            r.total_spend,
        )
        for r in conn.execute(query)
    ]
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
    return [
        WindowSpendRow(r.entity_id, r.window_duration, _as_datetime(r.window_start), float(r.spend)) for r in conn.execute(query)
    ]


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
        select(
            model.label("model"),
            model_group.label("model_group"),
            model_id.label("model_id"),
            func.count().label("requests"),
            func.coalesce(func.sum(_finite_spend()), 0.0).label("spend"),
        )
        .where(*where.where())
        .group_by(model, model_group, model_id)
    )
    return [TripleTotals(r.model, r.model_group, r.model_id, int(r.requests), float(r.spend)) for r in conn.execute(query)]


@dataclass(frozen=True, slots=True)
class Holder:
    """An entity that may carry budgets, at one scope: its per-model budget and its scalar spend."""

    scope: str
    entity_id: str | tuple[str, str]  # team members: (user_id, team_id)
    alias: str | None
    model_max_budget: object
    budget_source: str  # where model_max_budget came from, for humans
    spend: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    total_spend: float | None = None
    spend_column: str = ""
    deleted: bool = False


def _budget_rows(conn: Connection, caps: Capabilities) -> dict[str, object]:
    if not caps.has_table("LiteLLM_BudgetTable"):
        return {}
    t = budget_table
    return {
        r.budget_id: r
        for r in conn.execute(
            select(t.c.budget_id, t.c.model_max_budget, t.c.max_budget, t.c.budget_duration, t.c.budget_reset_at)
        )
    }


def key_holder(row: KeyRow) -> Holder:
    """A key's own model_max_budget, else its budget table's when the key's is empty (LiteLLM 1.82+)."""
    inherits = row.model_max_budget in (None, {}, "") and row.budget_table_model_max_budget not in (None, {}, "")
    return Holder(
        "key",
        row.token,
        row.key_alias,
        row.budget_table_model_max_budget if inherits else row.model_max_budget,
        "budget_id" if inherits else "key",
        row.spend,
        row.max_budget,
        row.budget_duration,
        row.budget_reset_at,
        row.total_spend,
        "LiteLLM_VerificationToken.spend",
        row.deleted,
    )


def holders(
    conn: Connection, caps: Capabilities, key_rows: list[KeyRow], default_end_user_budget: str | None = None
) -> list[Holder]:
    """Every entity of every scope LiteLLM budgets: keys, teams, internal users, end users, team members.

    `default_end_user_budget` is `litellm_settings.max_end_user_budget_id`: LiteLLM 1.110 gives its budget to every
    end user whose own budget_id is unset or names no budget row (auth_checks._apply_default_budget_to_end_user)."""
    found = [key_holder(row) for row in key_rows]
    budgets = _budget_rows(conn, caps)
    member_default: dict[str, str] = {}
    if caps.has_table("LiteLLM_TeamTable"):
        t = team_table
        for r in conn.execute(
            select(
                t.c.team_id,
                t.c.team_alias,
                t.c.model_max_budget,
                t.c.metadata,
                t.c.spend,
                t.c.max_budget,
                t.c.budget_duration,
                t.c.budget_reset_at,
            )
        ):
            found.append(
                Holder(
                    "team",
                    r.team_id,
                    r.team_alias,
                    r.model_max_budget,
                    "team",
                    r.spend,
                    r.max_budget,
                    r.budget_duration,
                    _as_datetime(r.budget_reset_at),
                    None,
                    "LiteLLM_TeamTable.spend",
                )
            )
            default = r.metadata.get("team_member_budget_id") if isinstance(r.metadata, dict) else None
            if isinstance(default, str) and default:
                member_default[r.team_id] = default
    if caps.has_table("LiteLLM_UserTable"):
        u = user_table
        for r in conn.execute(
            select(
                u.c.user_id,
                u.c.user_alias,
                u.c.user_email,
                u.c.model_max_budget,
                u.c.spend,
                u.c.max_budget,
                u.c.budget_duration,
                u.c.budget_reset_at,
            )
        ):
            found.append(
                Holder(
                    "user",
                    r.user_id,
                    r.user_alias or r.user_email,
                    r.model_max_budget,
                    "user",
                    r.spend,
                    r.max_budget,
                    r.budget_duration,
                    _as_datetime(r.budget_reset_at),
                    None,
                    "LiteLLM_UserTable.spend",
                )
            )
    if caps.has_table("LiteLLM_EndUserTable"):
        e = end_user_table
        default = budgets.get(default_end_user_budget) if default_end_user_budget else None
        for r in conn.execute(select(e.c.user_id, e.c.alias, e.c.budget_id, e.c.spend)):
            b = budgets.get(r.budget_id) if r.budget_id is not None else None
            source = f"budget_id {r.budget_id}" if b else "none"
            if b is None and default is not None:
                b, source = default, f"litellm_settings.max_end_user_budget_id {default_end_user_budget}"
            found.append(
                Holder(
                    "end_user",
                    r.user_id,
                    r.alias,
                    b.model_max_budget if b else None,
                    source,
                    r.spend,
                    b.max_budget if b else None,
                    b.budget_duration if b else None,
                    _as_datetime(b.budget_reset_at) if b else None,
                    None,
                    "LiteLLM_EndUserTable.spend",
                )
            )
    members: set[tuple[str, str]] = set()
    if caps.has_table("LiteLLM_TeamMembership"):
        m = team_membership
        total = m.c.total_spend if caps.has_column("LiteLLM_TeamMembership", "total_spend") else literal(None)
        for r in conn.execute(select(m.c.user_id, m.c.team_id, m.c.budget_id, m.c.spend, total.label("total_spend"))):
            members.add((r.user_id, r.team_id))
            own = budgets.get(r.budget_id) if r.budget_id else None
            default_id = member_default.get(r.team_id)
            # LiteLLM uses the membership's own budget for per-model caps only when it has some; else the team's
            # default member budget (user_api_key_auth._load_team_member_default_model_budget). Scalar caps: its own.
            if own is not None and isinstance(own.model_max_budget, dict) and own.model_max_budget:
                mmb, source = own.model_max_budget, f"budget_id {r.budget_id}"
            elif default_id and default_id in budgets:
                mmb, source = budgets[default_id].model_max_budget, f"team metadata team_member_budget_id {default_id}"
            else:
                mmb, source = None, "none"
            scalar = own if own is not None else budgets.get(default_id) if default_id else None
            found.append(
                Holder(
                    "team_member",
                    (r.user_id, r.team_id),
                    f"{r.user_id} in {r.team_id}",
                    mmb,
                    source,
                    r.spend,
                    scalar.max_budget if scalar else None,
                    scalar.budget_duration if scalar else None,
                    _as_datetime(scalar.budget_reset_at) if scalar else None,
                    r.total_spend,
                    "LiteLLM_TeamMembership.spend",
                )
            )
    # A key's owner in the key's team is a team member to the limiter even without a membership row: it then gets the
    # team's default member budget (user_api_key_auth._load_team_member_default_model_budget), with no spend column.
    for row in key_rows:
        pair = (row.user_id, row.team_id)
        default_id = member_default.get(row.team_id or "")
        if row.user_id and row.team_id and default_id in budgets and pair not in members:
            members.add(pair)
            found.append(
                Holder(
                    "team_member",
                    pair,
                    f"{row.user_id} in {row.team_id}",
                    budgets[default_id].model_max_budget,
                    f"team metadata team_member_budget_id {default_id} (no LiteLLM_TeamMembership row)",
                )
            )
    return found
