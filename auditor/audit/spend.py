"""Where the money went: ledger cells (spend_queries.Cell) merged by entity x canonical model group x period. Pure.

The database groups by the logged model triple; the resolver maps each distinct triple to its canonical group here,
so deployments of one group (`vertex_ai/claude-opus-4-6@default`, `bedrock/...-v1:0`) become one line, and a
router alias (`router_settings.model_group_alias`) is shown under its target group with the alias named. Rows the
resolver cannot place keep a line of their own (model_group None) naming the logged models. Memory: one entry per
output line.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from auditor import money
from auditor.audit.findings import WindowSpend
from auditor.litellm.resolver import Resolution

CHARGED, IGNORED_FAILURE = "charged", "failure"  # queries.row_outcome's outcomes (this module imports no SQL)

BY = ("key", "team", "user", "end_user", "team_member", "tag")

LineKey = tuple[str | None, ...]  # (entity, model group, period)
Resolve = Callable[[str | None, str | None, str | None], Resolution]  # (model, model_group, model_id) to its group


@dataclass
class SpendLine:
    """One (entity, model group, period): charged spend, requests and tokens; failures and cache hits counted."""

    entity_id: str | None  # None: rows without that entity (no team, no tag, ...)
    entity_alias: str | None
    model_group: str | None  # None: the resolver could not place the model
    period: str | None  # local start date of the day / week / month; None for --period total
    spend: float = 0.0
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failures: int = 0
    cache_hits: int = 0
    aliases: set[str] = field(default_factory=set)  # router aliases the requests named
    models: set[str] = field(default_factory=set)  # logged names, for an unresolved line
    share: float = 0.0

    def record(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "entity_alias": self.entity_alias,
            "model_group": self.model_group,
            "period": self.period,
            "spend": self.spend,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "failures": self.failures,
            "cache_hits": self.cache_hits,
            "share": round(self.share, 6),
            "aliases": sorted(self.aliases),
            "unresolved_models": sorted(self.models),
        }


@dataclass
class SpendTable:
    """The lines, with what a reader needs to trust them: the total, what was left out and why."""

    by: str
    period: str
    timezone: str
    lines: list[SpendLine]
    total_spend: float
    total_requests: int
    ignored: dict[str, int]  # rows not charged, by outcome (failures are also a column)
    omitted: dict[str, Any] | None = None  # --top: the entities left out, and their spend
    since: datetime | None = None
    until: datetime | None = None

    def record(self) -> dict[str, Any]:
        from auditor.audit.findings import iso

        return {
            "by": self.by,
            "period": self.period,
            "timezone": self.timezone,
            "since": iso(self.since),
            "until": iso(self.until),
            "total_spend": self.total_spend,
            "total_requests": self.total_requests,
            "ignored_by_reason": dict(sorted(self.ignored.items())),
            "omitted": self.omitted,
            "lines": [line.record() for line in self.lines],
        }


def alias_named(resolution: Resolution, model: str, model_group: str, alias_target: Callable[[str], str | None]) -> str | None:
    """The proxy-level router alias a row's request named, when that is how the resolver placed it."""
    if resolution.rule == "model_group_alias":
        return model_group
    if resolution.rule == "group_name" and model and alias_target(model) is not None:
        return model
    return None


def entity_label(scope: str, entity: tuple[str, ...]) -> str | None:
    """An entity as the scan's JSON names it (team members: `len(user):user:team`, LiteLLM's counter id)."""
    if scope == "team_member":
        user, team = entity
        return None if not user or not team else f"{len(user)}:{user}:{team}"
    return entity[0] or None


def merge(
    cells: Iterable[Any],
    by: str,
    resolve: Resolve,
    alias_target: Callable[[str], str | None],
    aliases: Mapping[str | None, str | None] = {},
    redact: Callable[[str], str] = lambda v: v,
) -> tuple[dict[LineKey, SpendLine], dict[str, int]]:
    """Cells into lines keyed (entity_id, model_group, period); rows not charged (other than failures, which are a
    column) into counts by outcome."""
    lines: dict[LineKey, SpendLine] = {}
    ignored: dict[str, int] = defaultdict(int)
    for cell in cells:
        if cell.outcome not in (CHARGED, IGNORED_FAILURE):
            ignored[cell.outcome] += cell.requests
            continue
        resolution = resolve(cell.model, cell.model_group, cell.model_id)
        group = resolution.resolved_group
        entity = entity_label(by, cell.entity)
        shown = redact(entity) if by == "key" and entity else entity
        line = lines.get((shown, group, cell.period))
        if line is None:
            line = lines[(shown, group, cell.period)] = SpendLine(shown, aliases.get(entity), group, cell.period)
        if group is None:
            line.models.add(cell.model or cell.model_group or cell.model_id or "(empty)")
        if cell.outcome == IGNORED_FAILURE:
            line.failures += cell.requests
            ignored[IGNORED_FAILURE] += cell.requests
            continue
        line.spend = money.add(line.spend, cell.spend)  # exact: the same total however the cells are split
        line.requests += cell.requests
        line.prompt_tokens += cell.prompt_tokens
        line.completion_tokens += cell.completion_tokens
        line.cache_hits += cell.cache_hits
        if group is not None and (alias := alias_named(resolution, cell.model, cell.model_group, alias_target)) is not None:
            line.aliases.add(alias)
    return lines, dict(ignored)


def table(
    lines: Mapping[LineKey, SpendLine],
    ignored: dict[str, int],
    *,
    by: str,
    period: str,
    zone_name: str,
    top: int | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> SpendTable:
    """Lines ordered by period, then entity (most spend first), then model group (most spend first); `model` keeps
    one model group (or the lines whose requests named it as an alias, or an unresolved model of that name); `top`
    keeps the N entities that spent most over the whole range, the rest summed in `omitted`."""
    chosen = [
        line
        for line in lines.values()
        if model is None or model == line.model_group or model in line.aliases or model in line.models
    ]
    total_spend = money.total(line.spend for line in chosen)
    total_requests = sum(line.requests for line in chosen)
    for line in chosen:
        line.share = line.spend / total_spend if total_spend > 0 else 0.0
    per_entity: dict[str | None, float] = defaultdict(float)
    for line in chosen:
        per_entity[line.entity_id] = money.add(per_entity[line.entity_id], line.spend)
    ranked = sorted(per_entity, key=lambda e: (-per_entity[e], e is None, e or ""))
    omitted = None
    if top is not None and len(ranked) > top:
        kept = set(ranked[:top])
        left = [line for line in chosen if line.entity_id not in kept]
        omitted = {
            "entities": len(ranked) - top,
            "spend": money.total(line.spend for line in left),
            "requests": sum(line.requests for line in left),
        }
        chosen = [line for line in chosen if line.entity_id in kept]
    rank = {e: n for n, e in enumerate(ranked)}
    chosen.sort(
        key=lambda line: (line.period or "", rank[line.entity_id], -line.spend, line.model_group is None, line.model_group or "")
    )
    return SpendTable(by, period, zone_name, chosen, total_spend, total_requests, ignored, omitted, since, until)


# --------------------------------------------------------------------------------------------------
# Calendar periods in a zone


def offset_changes(tz: tzinfo, start: datetime | None, end: datetime | None) -> list[tuple[datetime | None, int]]:
    """The zone's UTC offset (seconds) from `start` on, and each instant (naive UTC) in [start, end] where it
    changes: what SQLite, which knows no zones, needs to put a UTC "startTime" into local periods."""

    def offset(at: datetime) -> int:
        return int(at.replace(tzinfo=UTC).astimezone(tz).utcoffset().total_seconds())  # type: ignore[union-attr]  # aware

    if start is None or end is None:
        return [(None, 0 if start is None else offset(start))]
    changes: list[tuple[datetime | None, int]] = [(None, offset(start))]
    step = timedelta(hours=6)  # zones change their offset at most a few times a year, never twice in 6 hours
    at = start
    while at < end:
        nxt = min(at + step, end)
        if offset(nxt) != offset(at):
            lo, hi = at, nxt  # the first instant with the new offset, to the second
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            changes.append((hi.replace(microsecond=0), offset(hi)))
        at = nxt
    return changes


# --------------------------------------------------------------------------------------------------
# The scan's spend lines that no budget window shows


SCAN_SCOPES = ("key", "team", "user", "end_user", "team_member")


def ungoverned(totals: Iterable[tuple[Any, ...]], resolve: Resolve, governed: Callable[..., bool]) -> list[WindowSpend]:
    """Charged totals (scope, entity_id, api_key, model, model_group, model_id, spend, requests) that no budget entry
    governs, summed per (scope, entity, canonical model group): the scan's `spend` lines with budget_model and window
    null. With the windows (which hold every governed charge) they add up to each entity's attributed spend.
    Unresolved models are left out, as from `rows.attributed` (they are unresolved_model findings)."""
    found: dict[tuple[str, str, str | None], list[int]] = {}
    for scope, entity_id, api_key, model, model_group, model_id, spend, requests in totals:
        group = resolve(model, model_group, model_id).resolved_group  # the Resolver resolves each triple once
        if group is None or governed(scope, entity_id, api_key, model, model_group, model_id):
            continue
        line = found.setdefault((scope, entity_id, group), [0, 0])
        line[0] += money.to_nanos(spend)  # summed as nano-dollars, as money.add would, converted once
        line[1] += requests
    order = {scope: n for n, scope in enumerate(SCAN_SCOPES)}
    return [
        WindowSpend(scope, entity_id, group, None, None, None, None, money.to_dollars(nanos), requests)
        for (scope, entity_id, group), (nanos, requests) in sorted(found.items(), key=lambda kv: (order[kv[0][0]], *kv[0][1:]))
    ]


# --------------------------------------------------------------------------------------------------
# The report's "where the money went"


def overview(
    lines: Mapping[LineKey, SpendLine],
    ignored: dict[str, int],
    day_cells: Iterable[Any],
    resolve: Resolve,
    *,
    zone_name: str,
    top: int = 10,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Top entities (their lines per model group over the range, as `auditor spend --top`), every model group's
    total, and each day's spend per model group (from cells grouped by day and logged model, no entity; unresolved
    models as one series, model_group null)."""
    totals = table(lines, ignored, by="key", period="total", zone_name=zone_name, top=top, since=since, until=until)
    groups: dict[str | None, list[Any]] = {}
    for line in lines.values():
        g = groups.setdefault(line.model_group, [0.0, 0, set()])
        g[0] = money.add(g[0], line.spend)
        g[1] += line.requests
        g[2] |= line.aliases
    per_day: dict[tuple[str | None, str | None], float] = defaultdict(float)
    for cell in day_cells:
        if cell.outcome in (CHARGED, IGNORED_FAILURE):  # the outcomes `merge` makes lines of: a day of failures shows
            group = resolve(cell.model, cell.model_group, cell.model_id).resolved_group
            charged = cell.spend if cell.outcome == CHARGED else 0.0
            per_day[(cell.period, group)] = money.add(per_day[(cell.period, group)], charged)
    whole = totals.total_spend
    ordered = sorted(groups, key=lambda g: (g is None, -groups[g][0], g or ""))
    days = sorted({day for day, _ in per_day if day})
    return {
        "table": totals.record(),
        "model_groups": [
            {
                "model_group": g,
                "spend": groups[g][0],
                "requests": groups[g][1],
                "share": round(groups[g][0] / whole, 6) if whole > 0 else 0.0,
                "aliases": sorted(groups[g][2]),
            }
            for g in ordered
        ],
        "daily": {
            "days": days,
            "series": [{"model_group": g, "spend": [per_day.get((day, g), 0.0) for day in days]} for g in ordered],
        },
    }
