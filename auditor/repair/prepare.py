"""Putting the read side together: run the scan, read the snapshot, plan, and keep the ledger context apply needs
to recompute a counter (auditor.repair.live.Ledger)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

from auditor.audit.entities import entity_budgets
from auditor.audit.findings import ScanResult
from auditor.audit.scan import ScanOptions, load_catalogue, run_scan
from auditor.ledger import budget_holders, queries
from auditor.ledger.capabilities import Capabilities, detect_deployment_era
from auditor.ledger.redis_store import read_counters
from auditor.litellm.config import LoadedConfig
from auditor.litellm.counters import parse_float
from auditor.litellm.resolver import Resolver
from auditor.repair.layout import layout_of
from auditor.repair.live import Ledger
from auditor.repair.plan import MODEL_SPEND, Plan, PlanOptions, model_spend_tokens, plan
from auditor.repair.snapshot import read_snapshot

if TYPE_CHECKING:
    from redis import Redis


@dataclass
class Prepared:
    """A plan, the scan it was made from, and the ledger context apply recomputes counters with."""

    plan: Plan
    result: ScanResult
    ledger: Ledger


def prepare(
    conn: Connection,
    caps: Capabilities,
    loaded_config: LoadedConfig | None,
    scan_options: ScanOptions,
    client: Redis | None,
    *,
    litellm_version: str | None,
    targets: Iterable[str],
    remove_miskeyed: bool,
    wall_now: datetime,
    source: Mapping | None = None,
) -> Prepared:
    """Run the scan (read-only, on `conn`), read the values the plan would touch, and plan."""
    targets = frozenset(targets)
    found = detect_deployment_era(conn, caps, litellm_version, client=client)
    layout = layout_of(found, litellm_version)
    scan_options = replace(scan_options, era=found.era.name)  # judged by the release that wrote the counters
    key_rows = budget_holders.keys(conn, caps)
    catalogue = load_catalogue(conn, caps, loaded_config, key_rows)
    result = run_scan(
        conn,
        caps,
        catalogue,
        scan_options,
        redis_counters=(lambda: read_counters(client)) if client is not None else None,
        source=source,
        key_rows=key_rows,
    )
    snapshot = read_snapshot(conn, caps, client, result, layout, targets)
    resolver = Resolver(catalogue)
    tokens = model_spend_tokens(result) if MODEL_SPEND in targets else []
    if tokens:
        lifetime: dict[str, dict[str, float]] = {token: defaultdict(float) for token in tokens}
        for group in queries.spend_groups(conn, caps, queries.SpendFilter(api_keys=tuple(tokens))):
            resolution = resolver(group.model, group.model_group, group.model_id)
            if group.outcome == queries.CHARGED and resolution.status == "resolved":
                lifetime[group.api_key][resolution.group] += group.spend
        snapshot = replace(snapshot, lifetime={token: dict(groups) for token, groups in lifetime.items()})

    def canonical(name: str) -> str | None:
        return resolver(name, "", "").resolved_group

    planned = plan(
        result,
        snapshot,
        PlanOptions(wall_now=wall_now, layout=layout, targets=targets, remove_miskeyed=remove_miskeyed, canonical=canonical),
    )
    budgets = {
        (b.scope, b.entity_id): b
        for b in map(entity_budgets, budget_holders.holders(conn, caps, key_rows, scan_options.default_end_user_budget))
    }
    return Prepared(planned, result, Ledger(caps, budgets, catalogue, scan_options.window_slack))


def default_flush_lag(loaded: LoadedConfig | None) -> float:
    """How long a spend-log row may take to reach the database after its request's counter increment: LiteLLM
    flushes every general_settings.proxy_batch_write_at seconds (10 by default) plus up to 5 s of jitter; 5 s more
    for the flush itself."""
    settings = loaded.data.get("general_settings") if loaded is not None else None
    every = parse_float(settings.get("proxy_batch_write_at")) if isinstance(settings, dict) else None
    return (every if every is not None and every >= 0 else 10.0) + 10.0
