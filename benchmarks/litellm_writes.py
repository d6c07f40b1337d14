"""What a LiteLLM 1.110 proxy writes besides LiteLLM_SpendLogs, filled in SQL from the ledger: the daily rollups
(LiteLLM_DailyUserSpend, DailyTeamSpend, DailyEndUserSpend) and the scalar `spend` of keys, teams and users.

generate.py calls litellm_writes after its load; run.py calls add_rollups and set_scalar_spend when it appends rows
for the incremental timing, and again to put the database back. One heap pass for the three rollups."""

from __future__ import annotations

import math
import random
import time
from datetime import datetime

import psycopg
from psycopg import sql

# (scope, entity id) -> (budget_duration or None for lifetime, headroom over the entity's typical period spend)
ScalarBudgets = dict[tuple[str, str], tuple[str | None, float]]


# Scalar budgets (max_budget / budget_duration on keys, teams, users): calendar-aligned durations only, so each
# current period starts at a UTC midnight (LiteLLM >= 1.74's reset job: 1d next midnight, 7d next Monday, 30d the
# 1st of next month). (share of entities, duration) per table; the rest have no budget_duration (lifetime spend).
SCALAR_DURATIONS = {
    "key": [(0.05, "1d"), (0.08, "7d"), (0.12, "30d")],
    "team": [(0.30, "30d")],
    "user": [(0.10, "7d")],
}
LIFETIME_BUDGET_SHARE = 0.05  # keys without budget_duration that still have a max_budget


def assign_scalar_budgets(rng: random.Random, keys: list[str], teams: list[str], users: list[str]) -> ScalarBudgets:
    """(scope, entity) -> (budget_duration or None, headroom) for entities with a scalar max_budget.

    The limit itself is set after the load (set_max_budgets), as headroom x the entity's average spend over
    one period: LiteLLM blocks at the limit, so a period far over it would not be a proxy's data."""
    budgets: ScalarBudgets = {}
    for scope, ids in (("key", keys), ("team", teams), ("user", users)):
        for entity in ids:
            r, at = rng.random(), 0.0
            for share, duration in SCALAR_DURATIONS[scope]:
                at += share
                if r < at:
                    budgets[(scope, entity)] = (duration, rng.uniform(1.5, 4.0))
                    break
            else:
                if scope == "key" and rng.random() < LIFETIME_BUDGET_SHARE:
                    budgets[(scope, entity)] = (None, rng.uniform(1.2, 2.0))
    return budgets


# rollup table -> its entity column (proxy/db/daily_spend_bulk_upsert.py DAILY_SPEND_TABLES)
ROLLUP_TABLES = {
    "LiteLLM_DailyUserSpend": "user_id",
    "LiteLLM_DailyTeamSpend": "team_id",
    "LiteLLM_DailyEndUserSpend": "end_user_id",
}
# the conflict target after the entity column, in constraint order (daily_spend_bulk_upsert._KEY_COLUMNS)
ROLLUP_KEY = ("date", "api_key", "model", "custom_llm_provider", "mcp_namespaced_tool_name", "endpoint")
ROLLUP_COUNTERS = (
    "prompt_tokens",
    "completion_tokens",
    "spend",
    "api_requests",
    "successful_requests",
    "failed_requests",
    "total_response_time_ms",
    "timed_requests",
)
# call_type -> endpoint, the part of proxy/route_llm_request.py ROUTE_ENDPOINT_MAPPING a chat/embedding proxy logs
# NOT NULL columns this data leaves at zero (tables created from auditor's schema have no server defaults)
ROLLUP_ZEROS = (
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "compression_saved_tokens",
    "compression_savings_spend",
    "prompt_caching_savings_spend",
    "autorouter_savings_spend",
    "gateway_injected_caching_savings_spend",
)
ROUTE_ENDPOINTS = {
    "acompletion": "/chat/completions",
    "atext_completion": "/completions",
    "aembedding": "/embeddings",
    "aimage_generation": "/image/generations",
    "aresponses": "/responses",
    "arerank": "/rerank",
}


def create_rollup_tables(conn: psycopg.Connection) -> None:
    """LiteLLM_DailyTeamSpend and LiteLLM_DailyEndUserSpend when missing (schema.prisma 1.110.2: DailyUserSpend's
    columns with the entity column renamed; the team table adds ptu_flat_cost)."""
    for table, entity in ROLLUP_TABLES.items():
        if conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()[0] is None:
            conn.execute(
                sql.SQL('CREATE TABLE {} (LIKE "LiteLLM_DailyUserSpend" INCLUDING DEFAULTS)').format(sql.Identifier(table))
            )
            conn.execute(
                sql.SQL("ALTER TABLE {} RENAME COLUMN user_id TO {}").format(sql.Identifier(table), sql.Identifier(entity))
            )
            conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(table)))
            if entity == "team_id":
                conn.execute(
                    'ALTER TABLE "LiteLLM_DailyTeamSpend" ADD COLUMN ptu_flat_cost double precision NOT NULL DEFAULT 0.0'
                )


def rollup_indexes(table: str) -> dict[str, tuple[str, ...]]:
    """A rollup table's indexes as schema.prisma declares them (names as Prisma makes them); the unique one, which
    LiteLLM upserts on, first."""
    entity, short = ROLLUP_TABLES[table], table.removeprefix("LiteLLM_")
    return {
        f"LiteLLM_{short}_{entity}_date_api_key_model_custom_ll_key": (entity, *ROLLUP_KEY),
        f"LiteLLM_{short}_date_idx": ("date",),
        f"LiteLLM_{short}_{entity}_date_idx": (entity, "date"),
        f"LiteLLM_{short}_api_key_idx": ("api_key",),
        f"LiteLLM_{short}_model_idx": ("model",),
        f"LiteLLM_{short}_mcp_namespaced_tool_name_idx": ("mcp_namespaced_tool_name",),
        f"LiteLLM_{short}_endpoint_idx": ("endpoint",),
    }


def create_rollup_indexes(conn: psycopg.Connection) -> None:
    for table in ROLLUP_TABLES:
        for name, columns in rollup_indexes(table).items():
            conn.execute(
                sql.SQL("CREATE {} INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.SQL("UNIQUE" if name.endswith("_key") else ""),
                    sql.Identifier(name),
                    sql.Identifier(table),
                    sql.SQL(", ").join(map(sql.Identifier, columns)),
                )
            )


def drop_rollup_indexes(conn: psycopg.Connection) -> None:
    for table in ROLLUP_TABLES:
        for name in rollup_indexes(table):
            conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(name)))


def add_rollups(conn: psycopg.Connection, since: datetime | None = None, upsert: bool = True) -> dict[str, int]:
    """Roll the spend logs up into the three Daily*Spend tables as DBSpendUpdateWriter does, and return the rows
    each table received: every row with `"startTime"` at or after `since` (all rows without it).

    LiteLLM 1.110 (db_spend_update_writer._common_add_spend_log_transaction_to_daily_transaction,
    daily_spend_bulk_upsert): date = the UTC date of "startTime"; the conflict key's columns NULL-free ('');
    per user every row (a NULL user is the entity ''), per team every row whose team_id is not NULL, per end
    user only a non-empty one; failures (status) count as failed_requests; response time over successes;
    model_group is the first writer's (here the greatest). Cache token columns stay 0: they come from the
    metadata jsonb, which this would have to detoast for every row. The ledger is read once, at the finest grain
    the three share, into a temporary table; each table then gets one INSERT ... ON CONFLICT DO UPDATE that adds,
    so adding a day of new rows later works as LiteLLM's next flush does (`upsert=False`: a plain INSERT into
    empty tables without their indexes, several times faster)."""
    endpoint = sql.SQL("CASE call_type {} END").format(
        sql.SQL(" ").join(sql.SQL("WHEN {} THEN {}").format(sql.Literal(t), sql.Literal(e)) for t, e in ROUTE_ENDPOINTS.items())
    )
    where = sql.SQL('WHERE "startTime" >= {}').format(sql.Literal(since)) if since is not None else sql.SQL("")
    conn.execute("SET LOCAL work_mem = '256MB'")
    conn.execute("SET LOCAL enable_sort = off")  # hash-aggregate: the planner over-estimates the groups and sorts
    conn.execute("DROP TABLE IF EXISTS bench_rollup_cells")
    conn.execute(
        sql.SQL("""
        CREATE TEMP TABLE bench_rollup_cells ON COMMIT DROP AS
        SELECT to_char("startTime", 'YYYY-MM-DD') AS date, coalesce(api_key, '') AS api_key, coalesce(model, '') AS model,
               coalesce(custom_llm_provider, '') AS custom_llm_provider,
               coalesce(mcp_namespaced_tool_name, '') AS mcp_namespaced_tool_name, coalesce({endpoint}, '') AS endpoint,
               coalesce("user", '') AS user_id, team_id, nullif(end_user, '') AS end_user_id, max(model_group) AS model_group,
               sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens,
               sum(spend) AS spend, count(*) AS api_requests,
               count(*) FILTER (WHERE status IS DISTINCT FROM 'failure') AS successful_requests,
               count(*) FILTER (WHERE status = 'failure') AS failed_requests,
               coalesce(sum(request_duration_ms) FILTER (WHERE status IS DISTINCT FROM 'failure' AND request_duration_ms >= 0), 0)::bigint
                   AS total_response_time_ms,
               count(request_duration_ms) FILTER (WHERE status IS DISTINCT FROM 'failure' AND request_duration_ms >= 0) AS timed_requests
        FROM "LiteLLM_SpendLogs" {where}
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    """).format(endpoint=endpoint, where=where)
    )
    written = {}
    for table, entity in ROLLUP_TABLES.items():  # the cells' entity columns carry the tables' names
        key = sql.SQL(", ").join(map(sql.Identifier, (entity, *ROLLUP_KEY)))
        sums = sql.SQL(", ").join(sql.SQL("sum({c})").format(c=sql.Identifier(c)) for c in ROLLUP_COUNTERS)
        counters = sql.SQL(", ").join(map(sql.Identifier, ROLLUP_COUNTERS))
        adds = sql.SQL(", ").join(sql.SQL("{c} = t.{c} + EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in ROLLUP_COUNTERS)
        cur = conn.execute(
            sql.SQL("""
            INSERT INTO {table} AS t (id, {key}, model_group, {counters}, {zero_columns}, created_at, updated_at)
            SELECT gen_random_uuid()::text, {entity}, {rollup_key}, max(model_group), {sums}, {zeros},
                   now() AT TIME ZONE 'UTC', now() AT TIME ZONE 'UTC'
            FROM bench_rollup_cells WHERE {entity} IS NOT NULL
            GROUP BY {entity}, {rollup_key}
            {conflict}
        """).format(
                conflict=sql.SQL("ON CONFLICT ({key}) DO UPDATE SET {adds}, updated_at = EXCLUDED.updated_at").format(
                    key=key, adds=adds
                )
                if upsert
                else sql.SQL(""),
                table=sql.Identifier(table),
                key=key,
                counters=counters,
                entity=sql.Identifier(entity),
                rollup_key=sql.SQL(", ").join(map(sql.Identifier, ROLLUP_KEY)),
                sums=sums,
                zero_columns=sql.SQL(", ").join(map(sql.Identifier, ROLLUP_ZEROS)),
                zeros=sql.SQL(", ".join(["0"] * len(ROLLUP_ZEROS))),
            )
        )
        written[table] = cur.rowcount
    conn.execute("DROP TABLE bench_rollup_cells")
    return written


def delete_rollups(conn: psycopg.Connection, from_day: str) -> None:
    """Drop the rollup rows of `from_day` (YYYY-MM-DD) and later, so add_rollups(since=that midnight) rebuilds them."""
    for table in ROLLUP_TABLES:
        conn.execute(sql.SQL("DELETE FROM {} WHERE date >= %s").format(sql.Identifier(table)), (from_day,))


# scope -> (table, id column, rollup table, rollup entity column)
SCALAR_TABLES = {
    "key": ("LiteLLM_VerificationToken", "token", "LiteLLM_DailyUserSpend", "api_key"),
    "team": ("LiteLLM_TeamTable", "team_id", "LiteLLM_DailyTeamSpend", "team_id"),
    "user": ("LiteLLM_UserTable", "user_id", "LiteLLM_DailyUserSpend", "user_id"),
}


def set_scalar_spend(conn: psycopg.Connection, now: datetime) -> None:
    """`spend` on keys, teams and users as the proxy holds it at `now`: the entity's charges since its current
    period began (LiteLLM's reset job zeroes it at budget_reset_at and schedules the next one, calendar-aligned
    in UTC), or its lifetime charges without budget_duration; keys' total_spend is lifetime. budget_reset_at is
    the end of the period `now` is in.

    Summed from the rollups just written, not the ledger: every duration here starts a period at a UTC midnight
    and a rollup row's date is its requests' "startTime" day, so the sums are the same charges (failures carry no
    spend in this data; key-less rows are left out) in a few hundred thousand rows instead of the whole ledger."""
    start = sql.SQL("""CASE e.budget_duration WHEN '1d' THEN date_trunc('day', {now}) WHEN '7d' THEN date_trunc('week', {now})
                       WHEN '30d' THEN date_trunc('month', {now}) END""").format(now=sql.Literal(now))
    reset = sql.SQL("""CASE t.budget_duration WHEN '1d' THEN date_trunc('day', {now}) + interval '1 day'
                       WHEN '7d' THEN date_trunc('week', {now}) + interval '7 days'
                       WHEN '30d' THEN date_trunc('month', {now}) + interval '1 month' END""").format(now=sql.Literal(now))
    for scope, (table, id_column, rollup, entity) in SCALAR_TABLES.items():
        lifetime = sql.SQL(", total_spend = s.lifetime") if scope == "key" else sql.SQL("")
        conn.execute(
            sql.SQL("""
            UPDATE {table} AS t SET spend = s.period, budget_reset_at = {reset}{lifetime}
            FROM (SELECT e.{id}, coalesce(sum(d.spend) FILTER (WHERE d.date >= coalesce(to_char({start}, 'YYYY-MM-DD'), '')), 0.0) AS period,
                         coalesce(sum(d.spend), 0.0) AS lifetime
                  FROM {table} AS e LEFT JOIN {rollup} AS d ON d.{entity} = e.{id} AND d.api_key <> ''
                  GROUP BY e.{id}) AS s
            WHERE t.{id} = s.{id}
        """).format(
                table=sql.Identifier(table),
                reset=reset,
                lifetime=lifetime,
                id=sql.Identifier(id_column),
                start=start,
                rollup=sql.Identifier(rollup),
                entity=sql.Identifier(entity),
            )
        )


def set_budget_durations(conn: psycopg.Connection, budgets: ScalarBudgets) -> None:
    """budget_duration on the entities `budgets` names (NULL elsewhere, as max_budget until set_max_budgets)."""
    for scope, (table, id_column, *_) in SCALAR_TABLES.items():
        durations = [(duration, entity) for (s, entity), (duration, _) in budgets.items() if s == scope]
        conn.execute(sql.SQL("UPDATE {} SET budget_duration = NULL, max_budget = NULL").format(sql.Identifier(table)))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("UPDATE {} SET budget_duration = %s WHERE {} = %s").format(
                    sql.Identifier(table), sql.Identifier(id_column)
                ),
                durations,
            )


def set_max_budgets(conn: psycopg.Connection, budgets: ScalarBudgets) -> int:
    """Each scalar budget's max_budget: its headroom x the entity's average spend over one period of the ledger
    (lifetime budgets: x its lifetime spend), rounded up to the cent. Returns how many were set."""
    first, last = conn.execute('SELECT min("startTime"), max("startTime") FROM "LiteLLM_SpendLogs"').fetchone()
    ledger_days = max(1.0, (last - first).total_seconds() / 86400) if first else 1.0
    period_days = {"1d": 1.0, "7d": 7.0, "30d": 30.0}
    limits: dict[str, list[tuple[float, str]]] = {scope: [] for scope in SCALAR_TABLES}
    for scope, (table, id_column, rollup, entity) in SCALAR_TABLES.items():
        lifetime = dict(
            conn.execute(
                sql.SQL("SELECT {e}, sum(spend) FROM {r} WHERE api_key <> '' GROUP BY {e}").format(
                    e=sql.Identifier(entity), r=sql.Identifier(rollup)
                )
            ).fetchall()
        )
        for (s, entity_id), (duration, headroom) in budgets.items():
            if s != scope:
                continue
            spent = float(lifetime.get(entity_id) or 0.0)
            typical = spent * period_days[duration] / ledger_days if duration else spent
            limits[scope].append((math.ceil(max(1.0, typical * headroom) * 100) / 100, entity_id))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("UPDATE {} SET max_budget = %s WHERE {} = %s").format(sql.Identifier(table), sql.Identifier(id_column)),
                limits[scope],
            )
    return sum(map(len, limits.values()))


def litellm_writes(conn: psycopg.Connection, budgets: ScalarBudgets | None) -> str:
    """After the load: the rollups from scratch; with `budgets` (generate.assign_scalar_budgets), their
    budget_duration; scalar spend at the ledger's newest "endTime"; with `budgets`, the limits. In one transaction
    (add_rollups needs one), so `generate.py --resume` on a finished load, even one made before this step
    existed, redoes it whole. Returns a line saying what was written."""
    t0 = time.monotonic()
    with conn.transaction():
        create_rollup_tables(conn)
        drop_rollup_indexes(conn)
        for table in ROLLUP_TABLES:
            conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
        written = add_rollups(conn, upsert=False)
        create_rollup_indexes(conn)
        if budgets is not None:
            set_budget_durations(conn, budgets)
        now = conn.execute('SELECT max("endTime") FROM "LiteLLM_SpendLogs"').fetchone()[0]
        if now is not None:
            set_scalar_spend(conn, now)
        limits = set_max_budgets(conn, budgets) if budgets is not None else 0
        for table in (*ROLLUP_TABLES, *(t for t, *_ in SCALAR_TABLES.values())):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    return (
        ", ".join(f"{table} {n:,} rows" for table, n in written.items())
        + f"; scalar spend as of {now}, {limits} max_budgets; {time.monotonic() - t0:.1f} s"
    )
