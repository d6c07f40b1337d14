"""The scan's result: findings with stable kinds, row accounting, and windowed spend. Plain data."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

SCHEMA_VERSION = 1

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_RANK = {INFO: 0, WARNING: 1, ERROR: 2}

# Stable kind names: cron jobs and the run history key on them.
OVER_BUDGET = "over_budget"
COUNTER_DRIFT = "counter_drift"
MISKEYED_COUNTER = "miskeyed_counter"
INVALID_BUDGET = "invalid_budget"
UNENFORCEABLE_BUDGET = "unenforceable_budget"
UNRESOLVED_MODEL = "unresolved_model"
AMBIGUOUS_MODEL = "ambiguous_model"
ROLLUP_DRIFT = "rollup_drift"
ALIAS_BYPASS = "alias_bypass"


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    message: str
    scope: str | None = None
    entity_id: str | None = None
    entity_alias: str | None = None
    budget_model: str | None = None
    model_group: str | None = None
    time_period: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    expected_window_start: datetime | None = None
    budget_limit: float | None = None
    logged_spend: float | None = None
    cached_spend: float | None = None
    counter_source: str | None = None
    counter_key: str | None = None
    spend_after_limit: float | None = None
    requests_after_limit: int | None = None
    requests: int | None = None
    cached_requests: int | None = None
    model: str | None = None
    resolves_to: str | None = None

    @property
    def sort_key(self) -> tuple[object, ...]:
        return (
            -SEVERITY_RANK[self.severity],
            self.scope or "",
            self.entity_alias or self.entity_id or "",
            self.kind,
            self.budget_model or "",
            self.window_start or datetime.min,
            self.counter_key or "",
            self.model or "",
        )


@dataclass(frozen=True)
class WindowSpend:
    scope: str
    entity_id: str
    model_group: str | None
    budget_model: str | None  # None: spend no budget entry governs (no window), the entity's total for the group
    time_period: str | None
    window_start: datetime | None
    window_end: datetime | None
    logged_spend: float
    requests: int


@dataclass
class RowCounts:
    """Every spend row read lands in exactly one bucket: read = attributed + unresolved + ignored."""

    attributed: int = 0
    unresolved: int = 0
    ignored_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def ignored(self) -> int:
        return sum(self.ignored_by_reason.values())

    @property
    def read(self) -> int:
        return self.attributed + self.unresolved + self.ignored


@dataclass
class ScanResult:
    as_of: datetime
    source: dict[str, Any]
    rows: RowCounts
    spend: list[WindowSpend]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    resolutions: list[dict[str, Any]] = field(default_factory=list)
    rollup_history: list[dict[str, Any]] | None = None  # --use-rollups: per-day spend the ledger no longer holds

    def worst(self) -> str | None:
        return max((f.severity for f in self.findings), key=SEVERITY_RANK.__getitem__, default=None)

    def as_record(self) -> dict[str, Any]:
        """The versioned JSON contract (auditor/scan.schema.json)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "as_of": iso(self.as_of),
            "source": self.source,
            "rows": {
                "read": self.rows.read,
                "attributed": self.rows.attributed,
                "unresolved": self.rows.unresolved,
                "ignored": self.rows.ignored,
                "ignored_by_reason": dict(sorted(self.rows.ignored_by_reason.items())),
            },
            "totals": totals(self.findings),
            "notes": list(self.notes),
            "spend": [_record(s) for s in self.spend],
            "findings": [_record(f) for f in sorted(self.findings, key=lambda f: f.sort_key)],
            **({"rollup_history": self.rollup_history} if self.rollup_history is not None else {}),
        }


def totals(findings: list[Finding]) -> dict[str, Any]:
    over = [f for f in findings if f.kind == OVER_BUDGET]
    return {
        # past a working limit, and past one the limiter never applied (alias traffic an enforced entry should have gated)
        "money_leaked": round(
            sum(f.spend_after_limit or 0.0 for f in over)
            + sum(f.logged_spend or 0.0 for f in findings if f.kind == ALIAS_BYPASS and f.severity == ERROR),
            6,
        ),
        "money_over_budget": round(sum((f.logged_spend or 0.0) - (f.budget_limit or 0.0) for f in over), 6),
        "entities_over_budget": len({(f.scope, f.entity_id) for f in over}),
        "entities_leaking": len({(f.scope, f.entity_id) for f in over if f.severity == ERROR}),
        # model_spend is a 2024 fossil nothing reads: reported at info, not counted as a drifting counter
        "counters_drifting": sum(1 for f in findings if f.kind == COUNTER_DRIFT and f.counter_source != "model_spend"),
        "findings_by_severity": {s: sum(1 for f in findings if f.severity == s) for s in (ERROR, WARNING, INFO)},
    }


def over_budget_phrase(record: dict[str, Any]) -> str:
    """'11 entities over budget (7 keys), 9 leaking': one wording for the terminal, Markdown and the report."""
    over = [f for f in record["findings"] if f["kind"] == OVER_BUDGET]
    entities = record["totals"]["entities_over_budget"]
    keys = len({f["entity_id"] for f in over if f["scope"] == "key"})
    leaking = record["totals"]["entities_leaking"]
    return (
        f"{entities} entit{'ies' if entities != 1 else 'y'} over budget ({keys} key{'s' if keys != 1 else ''}), {leaking} leaking"
    )


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z; LiteLLM stores naive UTC."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def _record(item: Finding | WindowSpend) -> dict[str, Any]:
    """A flat dataclass of plain values as a JSON object. Not dataclasses.asdict: its deep copy costs more
    than the rest of the rendering, and there are as many of these as windows."""
    return {f.name: iso(v) if isinstance(v := getattr(item, f.name), datetime) else v for f in fields(item)}
