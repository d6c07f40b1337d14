"""Writing a simulated deployment: LiteLLM's tables (created as `auditor sample load` creates them), the rows the
simulation produced, and the proxy config YAML."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import yaml
from sqlalchemy import JSON, Column, MetaData, Table, create_engine

from auditor.ledger import schema

from .engine import Outcome
from .world import World

# LiteLLM_DailyTeamSpend / LiteLLM_DailyEndUserSpend: LiteLLM_DailyUserSpend's columns with the entity column
# renamed (schema.prisma 1.110.2). auditor.ledger.schema keeps only the columns it reads of these two.
_extra = MetaData()


def _daily_like(name: str, entity: str) -> Table:
    columns = [
        Column(entity if c.name == "user_id" else c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in schema.daily_user_spend.columns
    ]
    return Table(name, _extra, *columns)


DAILY_TEAM = _daily_like("LiteLLM_DailyTeamSpend", "team_id")
DAILY_END_USER = _daily_like("LiteLLM_DailyEndUserSpend", "end_user_id")


def _json_columns(table: Table) -> set[str]:
    return {c.name for c in table.columns if isinstance(c.type, JSON) or "JSON" in type(c.type).__name__.upper()}


def _fit(table: Table, row: dict) -> dict:
    """A row with only the table's columns; JSON text (as get_logging_payload returns it) decoded for jsonb."""
    json_cols = _json_columns(table)
    fitted = {}
    for name, value in row.items():
        if name not in table.c:
            continue
        if name in json_cols and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        fitted[name] = value
    return fitted


def write_config(path: Path, world: World, *, disable_pre_routing_error_logs: bool = False) -> Path:
    config = json.loads(json.dumps(world.config))
    if disable_pre_routing_error_logs:
        config["general_settings"]["disable_pre_routing_error_logs"] = True
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def database_rows(world: World, outcome: Outcome, now: datetime) -> dict[str, list[dict]]:
    s = outcome.scalars
    rows: dict[str, list[dict]] = {name: [] for name in schema.TABLES}
    end_user_budget_limits = {e.budget_id: e.max_budget for e in world.end_users.values() if e.budget_id}
    for budget_id, mmb in world.budgets.items():
        rows["LiteLLM_BudgetTable"].append(
            {
                "budget_id": budget_id,
                "model_max_budget": mmb,
                "max_budget": end_user_budget_limits.get(budget_id),
                "created_by": "sim",
                "updated_by": "sim",
                "created_at": world.start,
                "updated_at": world.start,
            }
        )
    for key in world.keys.values():
        scalar = s[("key", key.token)]
        row = {
            "token": key.token,
            "key_alias": key.name,
            "key_name": f"sk-...{key.name[-4:]}",
            "user_id": key.user_id,
            "team_id": key.team_id,
            "model_max_budget": key.model_max_budget,
            "budget_id": key.budget_id,
            "max_budget": key.max_budget,
            "budget_duration": key.budget_duration,
            "budget_reset_at": scalar.reset_at,
            "spend": scalar.spend,
            "total_spend": scalar.total_spend,
            "created_at": world.start,
        }
        if key.deleted_at is not None and key.deleted_at <= now:
            rows["LiteLLM_DeletedVerificationToken"].append({**row, "id": f"deleted-{key.name}", "deleted_at": key.deleted_at})
        else:
            rows["LiteLLM_VerificationToken"].append(row)
    for user in world.users.values():
        scalar = s[("user", user.id)]
        rows["LiteLLM_UserTable"].append(
            {
                "user_id": user.id,
                "model_max_budget": user.model_max_budget,
                "max_budget": user.max_budget,
                "budget_duration": user.budget_duration,
                "budget_reset_at": scalar.reset_at,
                "spend": scalar.spend,
                "teams": [t for (u, t) in [*world.memberships, *world.team_members_without_row] if u == user.id],
            }
        )
    for team in world.teams.values():
        scalar = s[("team", team.id)]
        rows["LiteLLM_TeamTable"].append(
            {
                "team_id": team.id,
                "team_alias": team.id,
                "model_max_budget": team.model_max_budget,
                "max_budget": team.max_budget,
                "budget_duration": team.budget_duration,
                "budget_reset_at": scalar.reset_at,
                "spend": scalar.spend,
                "metadata": team.metadata,
                "members": [u for (u, t) in [*world.memberships, *world.team_members_without_row] if t == team.id],
            }
        )
    for end_user in world.end_users.values():
        rows["LiteLLM_EndUserTable"].append(
            {"user_id": end_user.id, "budget_id": end_user.budget_id, "spend": s[("end_user", end_user.id)].spend}
        )
    for (user_id, team_id), budget_id in world.memberships.items():
        scalar = s[("team_member", (user_id, team_id))]
        rows["LiteLLM_TeamMembership"].append(
            {
                "user_id": user_id,
                "team_id": team_id,
                "budget_id": budget_id,
                "spend": scalar.spend,
                "total_spend": scalar.total_spend,
            }
        )
    rows["LiteLLM_SpendLogs"] = outcome.spend_rows
    rows["LiteLLM_BudgetWindowSpend"] = [
        {**r, "created_at": r["window_start"], "updated_at": r["window_start"]} for r in outcome.window_rows
    ]
    for name in ("LiteLLM_DailyUserSpend", "LiteLLM_DailyTeamSpend", "LiteLLM_DailyEndUserSpend"):
        rows[name] = [{**r, "created_at": now, "updated_at": now} for r in outcome.rollups.get(name, [])]
    return rows


def write_database(url: str, rows: dict[str, list[dict]]) -> None:
    engine = create_engine(url)
    tables = {**schema.TABLES, DAILY_TEAM.name: DAILY_TEAM, DAILY_END_USER.name: DAILY_END_USER}
    try:
        with engine.begin() as conn:
            schema.metadata.create_all(conn)
            _extra.create_all(conn)
            for name, table_rows in rows.items():
                if table_rows:
                    table = tables[name]
                    conn.execute(table.insert(), [_fit(table, r) for r in table_rows])
    finally:
        engine.dispose()
