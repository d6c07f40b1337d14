"""What a user needs to know before trusting a scan: the inventory behind `auditor doctor`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from auditor.errors import AuditorError
from auditor.ledger.capabilities import CREATE_API_KEY_START_INDEX, Capabilities
from auditor.ledger.queries import estimated_rows, spend_time_range
from auditor.ledger.schema import TABLES

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"


@dataclass(frozen=True)
class Check:
    topic: str
    status: str  # ok | info | warn | fail
    detail: str
    fix: str | None = None


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    def add(self, topic: str, status: str, detail: str, fix: str | None = None) -> None:
        self.checks.append(Check(topic, status, detail, fix))

    @property
    def can_scan(self) -> bool:
        return not any(check.status == FAIL for check in self.checks)


def database_checks(report: DoctorReport, conn: Connection, caps: Capabilities) -> None:
    report.add("server", INFO, caps.server_version)
    if not caps.has_spend_logs:
        report.add(
            "LiteLLM tables",
            FAIL,
            "LiteLLM_SpendLogs is missing: this is not a LiteLLM database (or the wrong schema)",
            "point --db at the database LiteLLM's DATABASE_URL names",
        )
        return
    missing = caps.missing_tables
    report.add(
        "LiteLLM tables",
        OK if not missing else INFO,
        f"{len(TABLES) - len(missing)} of {len(TABLES)} found" + (f"; absent: {', '.join(missing)}" if missing else ""),
    )
    report.add("LiteLLM version", INFO, caps.describe_version())
    if not caps.has_column("LiteLLM_SpendLogs", "status"):
        report.add(
            "failure rows",
            WARN,
            'LiteLLM_SpendLogs has no "status" column (LiteLLM < 1.68): failed requests cannot be told apart; '
            "rows with spend 0 are treated as uncharged",
        )
    if caps.has_table("LiteLLM_BudgetWindowSpend"):
        report.add("shared windows", INFO, "LiteLLM_BudgetWindowSpend present: its per-model window counters are audited")
    if caps.dialect == "postgresql" and not caps.has_api_key_start_index:
        report.add(
            "index",
            WARN,
            'no (api_key, "startTime") index on LiteLLM_SpendLogs: per-key windowing will scan the table',
            f"run (auditor never does): {CREATE_API_KEY_START_INDEX}",
        )
    for table in ("LiteLLM_SpendLogs", "LiteLLM_VerificationToken", "LiteLLM_DailyUserSpend"):
        if caps.has_table(table):
            rows = estimated_rows(conn, table)
            label = "estimated rows" if caps.dialect == "postgresql" else "rows"
            detail = f"{rows:,}" if rows is not None else "unknown (never analyzed; ANALYZE gives an estimate)"
            report.add(f"{table} {label}", INFO, detail)
    scan_column_checks(report, caps)
    oldest, newest = spend_time_range(conn)
    if oldest is None:
        report.add("spend logs", WARN, "LiteLLM_SpendLogs is empty: nothing to audit")
    else:
        report.add("spend logs", INFO, f"{oldest:%Y-%m-%d %H:%M} .. {newest:%Y-%m-%d %H:%M} UTC")


def config_checks(report: DoctorReport, config_path: str | None, origin: str) -> None:
    from auditor.litellm.config import load_config

    if not config_path:
        report.add(
            "LiteLLM config",
            WARN,
            "none given: aliases are resolved from the database and the rows alone",
            "pass --config PATH (or set CONFIG_FILE_PATH) to the proxy's config.yaml",
        )
        return
    try:
        loaded = load_config(Path(config_path))
    except AuditorError as err:
        report.add("LiteLLM config", FAIL, str(err))
        return
    names = sorted({entry["model_name"] for entry in loaded.data.get("model_list", [])})
    shown = ", ".join(names[:8]) + (f", … (+{len(names) - 8})" if len(names) > 8 else "")
    report.add("LiteLLM config", OK, f"{config_path} ({origin}): {len(names)} model groups: {shown}")
    for warning in loaded.warnings:
        report.add("LiteLLM config", WARN, warning)


def redis_checks(report: DoctorReport, target) -> list[str] | None:
    """Redis reachable and readable; returns the limiter's key names it holds (None when not read)."""
    from auditor.ledger.redis_store import connect_redis, scan_keys

    if target is None:
        report.add("Redis", INFO, "not configured: Redis counters are not audited (--redis URL or REDIS_URL)")
        return None
    try:
        client = connect_redis(target)
    except AuditorError as err:
        report.add("Redis", FAIL, str(err), "check --redis / REDIS_URL, or leave Redis out to audit the database only")
        return None
    from redis import RedisError

    from auditor.ledger.redis_store import redis_error_text

    with client:
        try:
            keys = list(scan_keys(client))
        except (RedisError, OSError) as err:  # answered PING, then failed or stopped answering
            report.add(
                "Redis",
                FAIL,
                f"{target.masked} ({target.origin}) answered PING but not SCAN: {redis_error_text(target, err)}",
                "check the server, or its ACL allows SCAN and MGET",
            )
            return None
    report.add("Redis", OK, f"{target.masked} ({target.origin}): {len(keys):,} LiteLLM per-model counter keys")
    return keys


def era_checks(
    report: DoctorReport, conn: Connection, caps: Capabilities, redis_keys: list[str] | None, litellm_version: str | None
) -> None:
    """The LiteLLM era a scan will assume (auditor.litellm.eras), its counter layout in words, and the evidence."""
    from auditor.ledger.capabilities import detect_deployment_era

    found = detect_deployment_era(conn, caps, litellm_version, redis_keys=redis_keys or ())
    sure = found.certain and not found.disputed
    report.add(
        "LiteLLM era",
        OK if sure else WARN,
        f"{found.era.name} ({found.origin}: {found.version})",
        None
        if sure
        else "pass --litellm-version X.Y.Z (the proxy's release) to scan, report and backfill"
        + (": the one given disagrees with the database" if found.disputed else ""),
    )
    report.add("counter layout", INFO, found.era.layout())
    if found.era.note:
        report.add("counter layout", INFO, found.era.note)
    for line in found.evidence:
        report.add("era evidence", INFO, line)


def scan_columns(caps: Capabilities) -> dict[str, set[str]]:
    """Every column of LiteLLM's tables that the scan's statements name, for a database of these capabilities.

    Not a list kept beside the queries (it would drift from them): the scan itself is run on the embedded sample,
    which has every column, with `caps` as its view of the schema, so each query is built exactly as it would be for
    that database (a column the queries read only when present is left out when absent), and every statement it
    executes is walked for the columns it names."""
    from collections import defaultdict

    from sqlalchemy import Column, event
    from sqlalchemy.sql import visitors

    from auditor.audit.scan import ScanOptions, load_catalogue, run_scan
    from auditor.clock import utc_now
    from auditor.ledger import budget_holders
    from auditor.ledger.db import connect
    from auditor.sample import embedded_target

    used: dict[str, set[str]] = defaultdict(set)

    def record(conn, statement, *args) -> None:
        for element in visitors.iterate(statement):
            if isinstance(element, Column) and getattr(element, "table", None) is not None and element.table.name in TABLES:
                used[element.table.name].add(element.name)

    with connect(embedded_target()) as conn:
        event.listen(conn, "before_execute", record)
        key_rows = budget_holders.keys(conn, caps)
        run_scan(conn, caps, load_catalogue(conn, caps, None, key_rows), ScanOptions(now=utc_now()), key_rows=key_rows)
    return used


def scan_column_checks(report: DoctorReport, caps: Capabilities) -> None:
    """ "scan can run" only if every column the scan will select exists."""
    try:
        used = scan_columns(caps)
    except AuditorError as error:  # pragma: no cover - the sample is shipped with the package
        report.add("scan columns", WARN, f"could not derive the columns the scan reads: {error}")
        return
    missing = sorted(
        f'{table}."{column}"'
        for table, columns in used.items()
        if table in caps.columns
        for column in columns - caps.columns[table]
    )
    if missing:
        report.add(
            "scan columns",
            FAIL,
            f"the scan selects columns this database lacks: {', '.join(missing)}",
            "point --db at a LiteLLM database whose schema is complete (LiteLLM's prisma migrations), or report the "
            "LiteLLM version so auditor learns to read it",
        )
    else:
        report.add(
            "scan columns", OK, f"every column the scan selects is present ({sum(map(len, used.values()))} in {len(used)} tables)"
        )
