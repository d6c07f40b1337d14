"""LiteLLM's tables as SQLAlchemy Core, column for column as its migrations create them.

Generated once from LiteLLM's own DDL (tests/fixtures/litellm_ddl.sql, litellm-proxy-extras 0.4.110)
and checked against it by tests/test_schema.py. Older proxies lack some columns: ask
`auditor.ledger.capabilities` before selecting anything that is not in every version. The same
definitions create the tables on SQLite, where jsonb and text[] are JSON text.
"""

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Column, DateTime, Float, Index, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP

metadata = MetaData()

JSONB_ = JSON().with_variant(JSONB(), "postgresql")
TEXT_ARRAY = JSON().with_variant(ARRAY(Text), "postgresql")
# timestamp(3) without time zone, holding UTC
TIMESTAMP3 = DateTime().with_variant(TIMESTAMP(precision=3), "postgresql")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


budget_table = Table(
    "LiteLLM_BudgetTable",
    metadata,
    Column("budget_id", Text, primary_key=True),
    Column("max_budget", Float, nullable=True),
    Column("soft_budget", Float, nullable=True),
    Column("max_parallel_requests", Integer, nullable=True),
    Column("tpm_limit", BigInteger, nullable=True),
    Column("rpm_limit", BigInteger, nullable=True),
    Column("model_max_budget", JSONB_, nullable=True),
    Column("budget_duration", Text, nullable=True),
    Column("budget_reset_at", TIMESTAMP3, nullable=True),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("created_by", Text, nullable=False),
    Column("updated_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_by", Text, nullable=False),
    Column("allowed_models", TEXT_ARRAY, nullable=True, default=list),
    Column("tpd_limit", BigInteger, nullable=True),
    Column("temp_budget_increase", Float, nullable=True),
    Column("temp_budget_expiry", TIMESTAMP3, nullable=True),
)


budget_window_spend = Table(
    "LiteLLM_BudgetWindowSpend",
    metadata,
    Column("entity_type", Text, primary_key=True),
    Column("entity_id", Text, primary_key=True),
    Column("window_duration", Text, primary_key=True),
    Column("window_start", TIMESTAMP3, nullable=False),
    Column("spend", Float, nullable=False, default=0.0),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_at", TIMESTAMP3, nullable=False),
)


daily_user_spend = Table(
    "LiteLLM_DailyUserSpend",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text, nullable=True),
    Column("date", Text, nullable=False),
    Column("api_key", Text, nullable=False),
    Column("model", Text, nullable=True),
    Column("model_group", Text, nullable=True),
    Column("custom_llm_provider", Text, nullable=True),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("spend", Float, nullable=False, default=0.0),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_at", TIMESTAMP3, nullable=False),
    Column("api_requests", BigInteger, nullable=False, default=0),
    Column("failed_requests", BigInteger, nullable=False, default=0),
    Column("successful_requests", BigInteger, nullable=False, default=0),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, default=0),
    Column("cache_read_input_tokens", BigInteger, nullable=False, default=0),
    Column("mcp_namespaced_tool_name", Text, nullable=True),
    Column("endpoint", Text, nullable=True),
    Column("compression_saved_tokens", BigInteger, nullable=False, default=0),
    Column("compression_savings_spend", Float, nullable=False, default=0.0),
    Column("prompt_caching_savings_spend", Float, nullable=False, default=0.0),
    Column("autorouter_savings_spend", Float, nullable=False, default=0.0),
    Column("gateway_injected_caching_savings_spend", Float, nullable=False, default=0.0),
    Column("total_response_time_ms", BigInteger, nullable=False, default=0),
    Column("timed_requests", BigInteger, nullable=False, default=0),
)


deleted_verification_token = Table(
    "LiteLLM_DeletedVerificationToken",
    metadata,
    Column("id", Text, primary_key=True),
    Column("token", Text, nullable=False),
    Column("key_name", Text, nullable=True),
    Column("key_alias", Text, nullable=True),
    Column("soft_budget_cooldown", Boolean, nullable=False, default=False),
    Column("spend", Float, nullable=False, default=0.0),
    Column("expires", TIMESTAMP3, nullable=True),
    Column("models", TEXT_ARRAY, nullable=True),
    Column("aliases", JSONB_, nullable=False, default=dict),
    Column("config", JSONB_, nullable=False, default=dict),
    Column("user_id", Text, nullable=True),
    Column("team_id", Text, nullable=True),
    Column("permissions", JSONB_, nullable=False, default=dict),
    Column("max_parallel_requests", Integer, nullable=True),
    Column("metadata", JSONB_, nullable=False, default=dict),
    Column("blocked", Boolean, nullable=True),
    Column("tpm_limit", BigInteger, nullable=True),
    Column("rpm_limit", BigInteger, nullable=True),
    Column("max_budget", Float, nullable=True),
    Column("budget_duration", Text, nullable=True),
    Column("budget_reset_at", TIMESTAMP3, nullable=True),
    Column("allowed_cache_controls", TEXT_ARRAY, nullable=True, default=list),
    Column("allowed_routes", TEXT_ARRAY, nullable=True, default=list),
    Column("model_spend", JSONB_, nullable=False, default=dict),
    Column("model_max_budget", JSONB_, nullable=False, default=dict),
    Column("budget_id", Text, nullable=True),
    Column("organization_id", Text, nullable=True),
    Column("object_permission_id", Text, nullable=True),
    Column("created_at", TIMESTAMP3, nullable=True),
    Column("created_by", Text, nullable=True),
    Column("updated_at", TIMESTAMP3, nullable=True),
    Column("updated_by", Text, nullable=True),
    Column("rotation_count", Integer, nullable=True, default=0),
    Column("auto_rotate", Boolean, nullable=True, default=False),
    Column("rotation_interval", Text, nullable=True),
    Column("last_rotation_at", TIMESTAMP3, nullable=True),
    Column("key_rotation_at", TIMESTAMP3, nullable=True),
    Column("deleted_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("deleted_by", Text, nullable=True),
    Column("deleted_by_api_key", Text, nullable=True),
    Column("litellm_changed_by", Text, nullable=True),
    Column("router_settings", JSONB_, nullable=True, default=dict),
    Column("policies", TEXT_ARRAY, nullable=True, default=list),
    Column("access_group_ids", TEXT_ARRAY, nullable=True, default=list),
    Column("last_active", TIMESTAMP3, nullable=True),
    Column("project_id", Text, nullable=True),
    Column("agent_id", Text, nullable=True),
    Column("budget_fallbacks", JSONB_, nullable=False, default=dict),
    Column("key_type", Text, nullable=True),
    Column("settings_updated_at", TIMESTAMP3, nullable=True),
    Column("tpd_limit", BigInteger, nullable=True),
    Column("total_spend", Float, nullable=False, default=0.0),
)


end_user_table = Table(
    "LiteLLM_EndUserTable",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("alias", Text, nullable=True),
    Column("spend", Float, nullable=False, default=0.0),
    Column("allowed_model_region", Text, nullable=True),
    Column("default_model", Text, nullable=True),
    Column("budget_id", Text, nullable=True),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("object_permission_id", Text, nullable=True),
    Column("models", TEXT_ARRAY, nullable=True, default=list),
)


proxy_model_table = Table(
    "LiteLLM_ProxyModelTable",
    metadata,
    Column("model_id", Text, primary_key=True),
    Column("model_name", Text, nullable=False),
    Column("litellm_params", JSONB_, nullable=False),
    Column("model_info", JSONB_, nullable=True),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("created_by", Text, nullable=False),
    Column("updated_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_by", Text, nullable=False),
    Column("blocked", Boolean, nullable=False, default=False),
)


spend_logs = Table(
    "LiteLLM_SpendLogs",
    metadata,
    Column("request_id", Text, primary_key=True),
    Column("call_type", Text, nullable=False),
    Column("api_key", Text, nullable=False, default=""),
    Column("spend", Float, nullable=False, default=0.0),
    Column("total_tokens", Integer, nullable=False, default=0),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("startTime", TIMESTAMP3, nullable=False),
    Column("endTime", TIMESTAMP3, nullable=False),
    Column("completionStartTime", TIMESTAMP3, nullable=True),
    Column("model", Text, nullable=False, default=""),
    Column("model_id", Text, nullable=True, default=""),
    Column("model_group", Text, nullable=True, default=""),
    Column("custom_llm_provider", Text, nullable=True, default=""),
    Column("api_base", Text, nullable=True, default=""),
    Column("user", Text, nullable=True, default=""),
    Column("metadata", JSONB_, nullable=True, default=dict),
    Column("cache_hit", Text, nullable=True, default=""),
    Column("cache_key", Text, nullable=True, default=""),
    Column("request_tags", JSONB_, nullable=True, default=list),
    Column("team_id", Text, nullable=True),
    Column("end_user", Text, nullable=True),
    Column("requester_ip_address", Text, nullable=True),
    Column("messages", JSONB_, nullable=True, default=dict),
    Column("response", JSONB_, nullable=True, default=dict),
    Column("proxy_server_request", JSONB_, nullable=True, default=dict),
    Column("session_id", Text, nullable=True),
    Column("status", Text, nullable=True),
    Column("mcp_namespaced_tool_name", Text, nullable=True),
    Column("organization_id", Text, nullable=True),
    Column("agent_id", Text, nullable=True),
    Column("request_duration_ms", Integer, nullable=True),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("litellm_call_id", Text, nullable=True),
    Column("billing_agent_id", Text, nullable=True),
)


team_membership = Table(
    "LiteLLM_TeamMembership",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("team_id", Text, primary_key=True),
    Column("spend", Float, nullable=False, default=0.0),
    Column("budget_id", Text, nullable=True),
    Column("total_spend", Float, nullable=False, default=0.0),
)


team_table = Table(
    "LiteLLM_TeamTable",
    metadata,
    Column("team_id", Text, primary_key=True),
    Column("team_alias", Text, nullable=True),
    Column("organization_id", Text, nullable=True),
    Column("admins", TEXT_ARRAY, nullable=True),
    Column("members", TEXT_ARRAY, nullable=True),
    Column("members_with_roles", JSONB_, nullable=False, default=dict),
    Column("metadata", JSONB_, nullable=False, default=dict),
    Column("max_budget", Float, nullable=True),
    Column("spend", Float, nullable=False, default=0.0),
    Column("models", TEXT_ARRAY, nullable=True),
    Column("max_parallel_requests", Integer, nullable=True),
    Column("tpm_limit", BigInteger, nullable=True),
    Column("rpm_limit", BigInteger, nullable=True),
    Column("budget_duration", Text, nullable=True),
    Column("budget_reset_at", TIMESTAMP3, nullable=True),
    Column("blocked", Boolean, nullable=False, default=False),
    Column("created_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("updated_at", TIMESTAMP3, nullable=False, default=_utcnow),
    Column("model_spend", JSONB_, nullable=False, default=dict),
    Column("model_max_budget", JSONB_, nullable=False, default=dict),
    Column("model_id", Integer, nullable=True),
    Column("team_member_permissions", TEXT_ARRAY, nullable=True, default=list),
    Column("object_permission_id", Text, nullable=True),
    Column("router_settings", JSONB_, nullable=True, default=dict),
    Column("policies", TEXT_ARRAY, nullable=True, default=list),
    Column("allow_team_guardrail_config", Boolean, nullable=False, default=False),
    Column("soft_budget", Float, nullable=True),
    Column("access_group_ids", TEXT_ARRAY, nullable=True, default=list),
    Column("budget_limits", JSONB_, nullable=True),
    Column("default_team_member_models", TEXT_ARRAY, nullable=True, default=list),
    Column("tpd_limit", BigInteger, nullable=True),
)


user_table = Table(
    "LiteLLM_UserTable",
    metadata,
    Column("user_id", Text, primary_key=True),
    Column("user_alias", Text, nullable=True),
    Column("team_id", Text, nullable=True),
    Column("sso_user_id", Text, nullable=True),
    Column("organization_id", Text, nullable=True),
    Column("password", Text, nullable=True),
    Column("teams", TEXT_ARRAY, nullable=True, default=list),
    Column("user_role", Text, nullable=True),
    Column("max_budget", Float, nullable=True),
    Column("spend", Float, nullable=False, default=0.0),
    Column("user_email", Text, nullable=True),
    Column("models", TEXT_ARRAY, nullable=True),
    Column("metadata", JSONB_, nullable=False, default=dict),
    Column("max_parallel_requests", Integer, nullable=True),
    Column("tpm_limit", BigInteger, nullable=True),
    Column("rpm_limit", BigInteger, nullable=True),
    Column("budget_duration", Text, nullable=True),
    Column("budget_reset_at", TIMESTAMP3, nullable=True),
    Column("allowed_cache_controls", TEXT_ARRAY, nullable=True, default=list),
    Column("model_spend", JSONB_, nullable=False, default=dict),
    Column("model_max_budget", JSONB_, nullable=False, default=dict),
    Column("created_at", TIMESTAMP3, nullable=True, default=_utcnow),
    Column("updated_at", TIMESTAMP3, nullable=True, default=_utcnow),
    Column("object_permission_id", Text, nullable=True),
    Column("policies", TEXT_ARRAY, nullable=True, default=list),
    Column("password_reset_required", Boolean, nullable=True),
    Column("last_breach_check_at", TIMESTAMP3, nullable=True),
)


verification_token = Table(
    "LiteLLM_VerificationToken",
    metadata,
    Column("token", Text, primary_key=True),
    Column("key_name", Text, nullable=True),
    Column("key_alias", Text, nullable=True),
    Column("soft_budget_cooldown", Boolean, nullable=False, default=False),
    Column("spend", Float, nullable=False, default=0.0),
    Column("expires", TIMESTAMP3, nullable=True),
    Column("models", TEXT_ARRAY, nullable=True),
    Column("aliases", JSONB_, nullable=False, default=dict),
    Column("config", JSONB_, nullable=False, default=dict),
    Column("user_id", Text, nullable=True),
    Column("team_id", Text, nullable=True),
    Column("permissions", JSONB_, nullable=False, default=dict),
    Column("max_parallel_requests", Integer, nullable=True),
    Column("metadata", JSONB_, nullable=False, default=dict),
    Column("blocked", Boolean, nullable=True),
    Column("tpm_limit", BigInteger, nullable=True),
    Column("rpm_limit", BigInteger, nullable=True),
    Column("max_budget", Float, nullable=True),
    Column("budget_duration", Text, nullable=True),
    Column("budget_reset_at", TIMESTAMP3, nullable=True),
    Column("allowed_cache_controls", TEXT_ARRAY, nullable=True, default=list),
    Column("model_spend", JSONB_, nullable=False, default=dict),
    Column("model_max_budget", JSONB_, nullable=False, default=dict),
    Column("budget_id", Text, nullable=True),
    Column("organization_id", Text, nullable=True),
    Column("created_at", TIMESTAMP3, nullable=True, default=_utcnow),
    Column("created_by", Text, nullable=True),
    Column("updated_at", TIMESTAMP3, nullable=True, default=_utcnow),
    Column("updated_by", Text, nullable=True),
    Column("allowed_routes", TEXT_ARRAY, nullable=True, default=list),
    Column("object_permission_id", Text, nullable=True),
    Column("auto_rotate", Boolean, nullable=True, default=False),
    Column("key_rotation_at", TIMESTAMP3, nullable=True),
    Column("last_rotation_at", TIMESTAMP3, nullable=True),
    Column("rotation_count", Integer, nullable=True, default=0),
    Column("rotation_interval", Text, nullable=True),
    Column("project_id", Text, nullable=True),
    Column("router_settings", JSONB_, nullable=True, default=dict),
    Column("policies", TEXT_ARRAY, nullable=True, default=list),
    Column("access_group_ids", TEXT_ARRAY, nullable=True, default=list),
    Column("last_active", TIMESTAMP3, nullable=True),
    Column("agent_id", Text, nullable=True),
    Column("budget_limits", JSONB_, nullable=True),
    Column("budget_fallbacks", JSONB_, nullable=False, default=dict),
    Column("key_type", Text, nullable=True),
    Column("settings_updated_at", TIMESTAMP3, nullable=True),
    Column("tpd_limit", BigInteger, nullable=True),
    Column("total_spend", Float, nullable=False, default=0.0),
)


# Built by migrations (startTime) and at proxy start-up (api_key, startTime); doctor warns when the latter is missing.
Index("LiteLLM_SpendLogs_startTime_idx", spend_logs.c.startTime)
Index("LiteLLM_SpendLogs_api_key_startTime_idx", spend_logs.c.api_key, spend_logs.c.startTime)

# Columns whose payloads make up most of a real row (about 6 KB): never select them in bulk.
HEAVY_SPEND_LOG_COLUMNS = frozenset({"metadata", "messages", "response", "proxy_server_request"})

TABLES = {table.name: table for table in metadata.sorted_tables}


# Daily rollups per team and per end user: the same shape as LiteLLM_DailyUserSpend, keyed on team_id /
# end_user_id (litellm/proxy/schema.prisma, 1.110.2). They are not in the DDL fixture, so they live in their
# own MetaData: never created by `sample load`, only read when capabilities say they exist. Read columns only.
rollup_metadata = MetaData()


def _daily_rollup(name: str, entity: str) -> Table:
    return Table(
        name,
        rollup_metadata,
        Column("id", Text, primary_key=True),
        Column(entity, Text, nullable=True),
        Column("date", Text, nullable=False),
        Column("api_key", Text, nullable=False),
        Column("model", Text, nullable=True),
        Column("custom_llm_provider", Text, nullable=True),
        Column("spend", Float, nullable=False),
        Column("api_requests", BigInteger, nullable=False),
        Column("successful_requests", BigInteger, nullable=False),
        Column("failed_requests", BigInteger, nullable=False),
    )


daily_team_spend = _daily_rollup("LiteLLM_DailyTeamSpend", "team_id")
daily_end_user_spend = _daily_rollup("LiteLLM_DailyEndUserSpend", "end_user_id")

# rollup table -> the LiteLLM_SpendLogs column whose rows it aggregates
DAILY_ROLLUPS = {
    "LiteLLM_DailyUserSpend": (daily_user_spend, "user"),
    "LiteLLM_DailyTeamSpend": (daily_team_spend, "team_id"),
    "LiteLLM_DailyEndUserSpend": (daily_end_user_spend, "end_user"),
}
