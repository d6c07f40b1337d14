"""The backfill plan, pure: the scan's findings and a snapshot of the values it would touch in, the planned writes
(and the ones skipped, with why) out. No database or Redis here: auditor.repair.snapshot reads the snapshot,
auditor.repair.apply makes the writes."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Required, TypedDict

from auditor.audit.findings import COUNTER_DRIFT, MISKEYED_COUNTER, Finding, ScanResult, iso
from auditor.litellm.counters import MODEL_COUNTER_PREFIXES, PREFIX_OF_SCOPE, CounterKey, parse_counter_key, parse_float
from auditor.repair.layout import ALIAS_LAYOUT, ENTRY_LAYOUT, MEMORY_LAYOUT, Layout

# Where each scope keeps its scalar spend (table name), and the row's primary key (semantics.md (a)); the tables
# themselves are auditor.ledger.schema's, looked up by name when written (auditor.repair.apply).
SCALAR_ROWS = {
    "key": ("LiteLLM_VerificationToken", ("token",)),
    "team": ("LiteLLM_TeamTable", ("team_id",)),
    "user": ("LiteLLM_UserTable", ("user_id",)),
    "end_user": ("LiteLLM_EndUserTable", ("user_id",)),
    "team_member": ("LiteLLM_TeamMembership", ("user_id", "team_id")),
}

REDIS, BWS, MODEL_SPEND, SCALAR = "redis", "budget_window_spend", "model_spend", "spend"
SET, REMOVE, SKIP, RESTORE = "set", "remove", "skip", "restore"

COUNTERS_TARGET = "counters"  # --target: live window counters (Redis keys, LiteLLM_BudgetWindowSpend rows)
TARGETS = (COUNTERS_TARGET, MODEL_SPEND, SCALAR)  # --target spend: an entity's scalar spend for its current period

BWS_ENTITY_TYPE = "model_max_budget"

# One value as read or to write: a Redis key ({"key", "value", "expire_at_ms"}), a LiteLLM_BudgetWindowSpend row, a
# key's model_spend JSON or an entity's scalar spend. Plain dicts: they go to the JSON plan and the journal as they are.
Cell = dict[str, Any]


@dataclass(frozen=True)
class Snapshot:
    """The values the plan would touch, read right after the scan.

    redis: key -> {"value": str | None, "expire_at_ms": int | None} (absent keys map to value None);
    rows: (entity_id, window_duration) -> {"window_start": iso, "spend": float} of LiteLLM_BudgetWindowSpend;
    model_spend: key hash -> the key's model_spend JSON.
    """

    redis: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rows: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    model_spend: Mapping[str, object] = field(default_factory=dict)
    lifetime: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # key hash -> {model group: lifetime ledger}


@dataclass(frozen=True)
class PlanOptions:
    wall_now: datetime  # naive UTC: TTLs are the window's end minus this, as LiteLLM's own clock sees it
    layout: Layout
    targets: frozenset[str] = frozenset({COUNTERS_TARGET})
    remove_miskeyed: bool = False
    canonical: Callable[[str], str | None] = lambda name: None  # model_spend: a logged name's model group


@dataclass(frozen=True)
class PlannedWrite:
    target: str  # REDIS, BWS, MODEL_SPEND
    action: str  # SET, REMOVE, SKIP
    key: str  # the Redis key / BudgetWindowSpend entity_id / key hash written
    why: str
    old: tuple[Cell, ...] = ()  # cells as read (what a compare-and-set expects)
    new: tuple[Cell, ...] = ()  # cells to write
    scope: str | None = None
    entity_id: str | None = None
    entity_alias: str | None = None
    budget_model: str | None = None
    time_period: str | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    old_value: float | None = None
    new_value: float | None = None
    ttl_seconds: int | None = None
    stale: bool = False  # the counter moved between the scan and the snapshot: recompute when applying

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(cell["key"] for cell in self.new) if self.target == REDIS and self.new else (self.key,)

    def as_record(self) -> dict[str, Any]:
        record = asdict(self)
        for name in ("window_start", "window_end"):
            record[name] = iso(record[name])
        record["keys"] = list(self.keys)
        return record

    def journal_record(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "action": self.action,
            "scope": self.scope,
            "entity_id": self.entity_id,
            "key": self.key,
            "old": list(self.old),
            "new": list(self.new),
        }


@dataclass(frozen=True)
class Plan:
    as_of: datetime  # the scan's --now
    wall_now: datetime
    layout: Layout
    targets: tuple[str, ...]
    writes: list[PlannedWrite]
    notes: list[str] = field(default_factory=list)

    @property
    def actionable(self) -> list[PlannedWrite]:
        return [w for w in self.writes if w.action != SKIP]

    @property
    def skipped(self) -> list[PlannedWrite]:
        return [w for w in self.writes if w.action == SKIP]

    def as_record(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "as_of": iso(self.as_of),
            "wall_clock": iso(self.wall_now),
            "layout": self.layout.as_record(),
            "targets": list(self.targets),
            "summary": {
                "writes": len(self.actionable),
                "skipped": len(self.skipped),
                "by_target": tally(w.target for w in self.actionable),
            },
            "notes": list(self.notes),
            "writes": [w.as_record() for w in self.actionable],
            "skipped": [w.as_record() for w in self.skipped],
        }


def tally(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(sorted(counts.items()))


def epoch_ms(moment: datetime) -> int:
    return int(round(moment.replace(tzinfo=UTC).timestamp() * 1000))


def start_value(moment: datetime) -> str:
    """A start key's value as LiteLLM writes it: epoch seconds as a float."""
    return repr(round(moment.replace(tzinfo=UTC).timestamp(), 3))


def money_value(value: float) -> str:
    return repr(float(value))


def iso_ms(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


def _is_drift(f: Finding, source: str) -> bool:
    return f.kind == COUNTER_DRIFT and f.counter_source == source


def redis_keys_to_read(result: ScanResult, layout: Layout) -> list[str]:
    """Every Redis key the plan may touch: spend keys, the start key the layout uses, miskeyed start keys."""
    keys: list[str] = []
    for f in result.findings:
        if f.counter_source != REDIS or f.counter_key is None or f.kind not in (COUNTER_DRIFT, MISKEYED_COUNTER):
            continue
        parsed = parse_counter_key(f.counter_key)
        if parsed is None:
            continue
        keys += [parsed.key, parsed.start_key]
        if f.kind == COUNTER_DRIFT and layout.name == ALIAS_LAYOUT:
            keys.append(parsed.entity_start_key)
    return list(dict.fromkeys(keys))


def bws_rows_to_read(result: ScanResult) -> list[tuple[str, str]]:
    ids = []
    for f in result.findings:
        if f.counter_source == BWS and f.counter_key and f.kind in (COUNTER_DRIFT, MISKEYED_COUNTER):
            parsed = parse_counter_key(f.counter_key)
            if parsed is not None:
                ids.append((parsed.key, parsed.duration))
    return list(dict.fromkeys(ids))


def model_spend_tokens(result: ScanResult) -> list[str]:
    return sorted({f.entity_id for f in result.findings if _is_drift(f, MODEL_SPEND) and f.entity_id})


def plan(result: ScanResult, snapshot: Snapshot, options: PlanOptions) -> Plan:
    """The writes that make the counters the scan found wrong equal the ledger, and why; skipped ones say why not."""
    writes: list[PlannedWrite] = []
    notes: list[str] = []
    layout = options.layout
    if layout.note:
        notes.append(layout.note)
    now = result.as_of
    if abs((options.wall_now - now).total_seconds()) > 60:
        notes.append(
            f"--now is {iso(now)} but the wall clock is {iso(options.wall_now)}: windows are judged at --now, "
            "TTLs and whether the live proxy still reads a window at the wall clock"
        )
    alias_starts: dict[tuple[str, str], list[PlannedWrite]] = defaultdict(list)
    counters = COUNTERS_TARGET in options.targets
    for f in sorted(result.findings, key=lambda f: f.sort_key):
        if f.kind == COUNTER_DRIFT and f.counter_source in (REDIS, BWS):
            if not counters:
                continue
            write = _plan_counter(f, f.counter_source, snapshot, options, now)
            writes.append(write)
            if (
                write.action == SET
                and write.target == REDIS
                and layout.name == ALIAS_LAYOUT
                and f.scope is not None
                and f.entity_id is not None
            ):  # always named by a counter's finding
                alias_starts[(f.scope, f.entity_id)].append(write)
        elif f.kind == MISKEYED_COUNTER and f.counter_source in (REDIS, BWS):
            if counters:
                writes.append(_plan_miskeyed(f, f.counter_source, snapshot, options))
    scalar = [f for f in result.findings if _is_drift(f, SCALAR)]
    if SCALAR in options.targets:
        writes += [_plan_scalar(f, options) for f in sorted(scalar, key=lambda f: f.sort_key)]
    elif scalar:
        notes.append(f"{len(scalar)} entities' scalar spend differs from the ledger for its period: --target spend rewrites it")
    writes += _plan_alias_starts(alias_starts, snapshot, options)
    writes = _merge_reasons(writes)
    if MODEL_SPEND in options.targets:
        writes += _plan_model_spend(result, snapshot, options)
    elif any(_is_drift(f, MODEL_SPEND) for f in result.findings):
        notes.append("legacy model_spend differs from the lifetime ledger (nothing reads it): --target model_spend rewrites it")
    order = {SET: 0, REMOVE: 1, SKIP: 2}
    writes.sort(key=lambda w: (order[w.action], w.scope or "", w.entity_alias or w.entity_id or "", w.target, w.key))
    return Plan(now, options.wall_now, layout, tuple(t for t in TARGETS if t in options.targets), writes, notes)


class _About(TypedDict, total=False):
    """What a PlannedWrite is about, the same whether it is set, removed or skipped: `PlannedWrite(**about, action=...)`."""

    target: Required[str]
    key: Required[str]
    scope: str | None
    entity_id: str | None
    entity_alias: str | None
    budget_model: str | None
    time_period: str | None
    window_start: datetime | None
    window_end: datetime | None


def _base(f: Finding, target: str, key: str) -> _About:
    return _About(
        target=target,
        key=key,
        scope=f.scope,
        entity_id=f.entity_id,
        entity_alias=f.entity_alias,
        budget_model=f.budget_model,
        time_period=f.time_period,
        window_start=f.window_start,
        window_end=f.window_end,
    )


def _redis_cell(snapshot: Snapshot, key: str) -> Cell:
    found = snapshot.redis.get(key) or {}
    return {"key": key, "value": found.get("value"), "expire_at_ms": found.get("expire_at_ms")}


def _row_cell(snapshot: Snapshot, entity_id: str, duration: str) -> Cell:
    found = snapshot.rows.get((entity_id, duration)) or {}
    return {
        "entity_id": entity_id,
        "window_duration": duration,
        "window_start": found.get("window_start"),
        "spend": found.get("spend"),
    }


def _plan_counter(f: Finding, target: str, snapshot: Snapshot, options: PlanOptions, now: datetime) -> PlannedWrite:
    """One drifted window counter (`target`: its counter_source, REDIS or BWS) set to the ledger, or skipped with why."""
    layout = options.layout
    parsed = parse_counter_key(f.counter_key or "")
    if parsed is None or f.window_start is None or f.window_end is None or f.logged_spend is None:
        return PlannedWrite(**_base(f, target, f.counter_key or ""), action=SKIP, why="the finding does not name a window")
    base = _base(f, target, parsed.key)
    if layout.name == MEMORY_LAYOUT:
        return PlannedWrite(
            **base,
            action=SKIP,
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            why=f"LiteLLM {layout.version} keeps per-model counters in worker memory: nothing it reads can be written",
        )
    if not (f.window_start <= now < f.window_end):
        return PlannedWrite(
            **base,
            action=SKIP,
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            why=f"window closed at {iso_ms(f.window_end)} as of --now: enforcement no longer reads it",
        )
    remaining = (f.window_end - options.wall_now).total_seconds()
    if remaining <= 0:
        return PlannedWrite(
            **base,
            action=SKIP,
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            why=f"window ended at {iso_ms(f.window_end)} by the wall clock: the live proxy opens a new one on its next charge",
        )
    ttl = math.ceil(remaining)
    end_ms = epoch_ms(f.window_end)
    window = f"window {iso_ms(f.window_start)} → {iso_ms(f.window_end)}"
    if target == BWS:
        if not layout.reads_budget_window_spend:
            return PlannedWrite(
                **base,
                action=SKIP,
                old_value=f.cached_spend,
                new_value=f.logged_spend,
                why=f"LiteLLM {layout.version} does not read LiteLLM_BudgetWindowSpend for per-model budgets (1.109+ does)",
            )
        old = _row_cell(snapshot, parsed.key, parsed.duration)
        new = {**old, "window_start": iso_ms(f.window_start), "spend": float(f.logged_spend)}
        stale = _moved(old.get("spend"), f.cached_spend, old.get("spend") is None) or (
            old.get("window_start") is not None and old["window_start"] != iso_ms(f.window_start)
        )  # the proxy opened a new window
        why = ("row missing: LiteLLM reads $0" if old["spend"] is None else "row differs from the ledger") + f"; {window}"
        return PlannedWrite(
            **base,
            action=SET,
            old=(old,),
            new=(new,),
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            ttl_seconds=None,
            stale=stale,
            why=why,
        )
    spend_key = parsed.key  # 1.99+: named after the entry; 1.84-1.98: after the model as requested (the scan names it)
    old_spend = _redis_cell(snapshot, spend_key)
    new_spend = {"key": spend_key, "value": money_value(f.logged_spend), "expire_at_ms": end_ms}
    cells_old, cells_new = [old_spend], [new_spend]
    if layout.name == ENTRY_LAYOUT:
        start_key = CounterKey(parsed.prefix, parsed.entity_id, f.budget_model or parsed.budget_model, parsed.duration).start_key
        old_start = _redis_cell(snapshot, start_key)
        cells_old.append(old_start)
        cells_new.append({"key": start_key, "value": start_value(f.window_start), "expire_at_ms": end_ms})
    current = parse_float(old_spend["value"]) if old_spend["value"] is not None else None
    stale = _moved(current, f.cached_spend, old_spend["value"] is None)
    if len(cells_old) > 1 and cells_old[1]["value"] is not None:
        # A start key for another window (the proxy opened one since the scan, or keeps its own): the value is
        # recomputed at apply time for the window that start key says, never written over it.
        started = parse_float(cells_old[1]["value"])
        stale = stale or started is None or abs(started - f.window_start.replace(tzinfo=UTC).timestamp()) > 0.002
    why = (
        "missing: LiteLLM reads $0" if old_spend["value"] is None else "differs from the ledger"
    ) + f"; {window}, TTL {_duration(ttl)}"
    return PlannedWrite(
        **base,
        action=SET,
        old=tuple(cells_old),
        new=tuple(cells_new),
        old_value=current if old_spend["value"] is not None else None,
        new_value=f.logged_spend,
        ttl_seconds=ttl,
        stale=stale,
        why=why,
    )


def _moved(current: float | None, scanned: float | None, absent: bool) -> bool:
    """Did the counter change between the scan and the snapshot? (A missing counter scans as 0.)"""
    if absent:
        return bool(scanned)
    if current is None or scanned is None:
        return current != scanned
    return abs(current - scanned) > 1e-12


def _plan_alias_starts(
    pending: Mapping[tuple[str, str], list[PlannedWrite]], snapshot: Snapshot, options: PlanOptions
) -> list[PlannedWrite]:
    """1.84–1.98 keep one start key per entity, shared by all its counters: write it once, only where absent."""
    writes = []
    for (scope, entity_id), counters in sorted(pending.items()):
        # (start, end, write) of each counter set; a set counter always has its window (_plan_counter skips the others)
        windows = [(w.window_start, w.window_end, w) for w in counters if w.window_start is not None and w.window_end is not None]
        if not windows:
            continue
        key = f"{MODEL_COUNTER_PREFIXES[PREFIX_OF_SCOPE[scope]]}:{entity_id}"
        cell = _redis_cell(snapshot, key)
        start, _, first = min(windows, key=lambda window: window[0])
        end = max(window_end for _, window_end, _ in windows)
        base = _About(
            target=REDIS,
            key=key,
            scope=scope,
            entity_id=entity_id,
            entity_alias=first.entity_alias,
            window_start=start,
            window_end=end,
        )
        existing = parse_float(cell["value"]) if cell["value"] is not None else None
        if existing is not None and abs(existing - start.replace(tzinfo=UTC).timestamp()) <= 1.0:
            continue  # already the window the counters were computed for
        if cell["value"] is not None or len({window_start for window_start, _, _ in windows}) > 1:
            writes.append(
                PlannedWrite(
                    **base,
                    action=SKIP,
                    why=(
                        "the entity's shared start key (1.84–1.98) holds another window start; left alone"
                        if cell["value"] is not None
                        else "this entity's counters are in windows that started at different times; one shared start key cannot hold them"
                    ),
                )
            )
            continue
        end_ms = epoch_ms(end)
        ttl = math.ceil((end - options.wall_now).total_seconds())
        writes.append(
            PlannedWrite(
                **base,
                action=SET,
                old=(cell,),
                new=({"key": key, "value": start_value(start), "expire_at_ms": end_ms},),
                ttl_seconds=ttl,
                why=f"the entity's shared start key is missing; TTL {_duration(ttl)}",
            )
        )
    return writes


def _plan_miskeyed(f: Finding, target: str, snapshot: Snapshot, options: PlanOptions) -> PlannedWrite:
    parsed = parse_counter_key(f.counter_key or "")
    base = _base(f, target, f.counter_key or "")
    if parsed is None:
        return PlannedWrite(**base, action=SKIP, why="the finding does not name a counter key")
    merge = _merge_note(f, options.layout)
    if not options.remove_miskeyed:
        return PlannedWrite(
            **base, action=SKIP, old_value=f.cached_spend, why=f"never read by enforcement; {merge}; --remove-miskeyed deletes it"
        )
    if f.counter_source == BWS:
        old = _row_cell(snapshot, parsed.key, parsed.duration)
        if old["spend"] is None:
            return PlannedWrite(**base, action=SKIP, why="already gone")
        new = {**old, "window_start": None, "spend": None}
        return PlannedWrite(
            **base,
            action=REMOVE,
            old=(old,),
            new=(new,),
            old_value=old["spend"],
            new_value=None,
            why=f"never read by enforcement; {merge}",
        )
    cells_old = [_redis_cell(snapshot, parsed.key)]
    if cells_old[0]["value"] is None:
        return PlannedWrite(**base, action=SKIP, why="already gone (expired)")
    start = _redis_cell(snapshot, parsed.start_key)
    if start["value"] is not None:  # its own start key is miskeyed too; the entity's shared one is left alone
        cells_old.append(start)
    cells_new = [{"key": c["key"], "value": None, "expire_at_ms": None} for c in cells_old]
    return PlannedWrite(
        **base,
        action=REMOVE,
        old=tuple(cells_old),
        new=tuple(cells_new),
        old_value=parse_float(cells_old[0]["value"]),
        new_value=None,
        why=f"never read by enforcement; {merge}",
    )


def _merge_note(f: Finding, layout: Layout) -> str:
    if not f.budget_model:
        return f"no budget entry governs {f.model or f.resolves_to or 'its model'}, so there is nothing to merge it into"
    target = f"{PREFIX_OF_SCOPE.get(f.scope or 'key', 'virtual_key_spend')}:{f.entity_id}:{f.budget_model}:…"
    return f"its spend is counted in the ledger, which is what {target} is repaired from"


def _merge_reasons(writes: list[PlannedWrite]) -> list[PlannedWrite]:
    """A miskeyed counter's spend lands in the counter enforcement reads via the ledger: name that counter exactly."""
    reads = {
        (w.scope, w.entity_id, w.budget_model): w
        for w in writes
        if w.budget_model and "never read by enforcement" not in w.why and w.target in (REDIS, BWS)
    }
    merged = []
    for w in writes:
        if w.target in (REDIS, BWS) and w.action in (REMOVE, SKIP) and "never read by enforcement" in w.why and w.budget_model:
            target = reads.get((w.scope, w.entity_id, w.budget_model))
            tail = "; --remove-miskeyed deletes it" if w.action == SKIP else ""
            if target is not None and target.action == SET:
                w = replace(
                    w,
                    why=f"never read by enforcement; its spend is merged into {target.key} (set to the ledger's ${target.new_value:,.4f}){tail}",
                )
            elif target is not None:
                w = replace(
                    w,
                    why=f"never read by enforcement; its spend belongs to {target.key}, which is not written ({target.why}){tail}",
                )
        merged.append(w)
    return merged


def _plan_model_spend(result: ScanResult, snapshot: Snapshot, options: PlanOptions) -> list[PlannedWrite]:
    """Rewrite a key's legacy model_spend with canonical model groups and the lifetime ledger's sums."""
    by_token: dict[str, list[Finding]] = defaultdict(list)
    for f in result.findings:
        if _is_drift(f, MODEL_SPEND) and f.entity_id:
            by_token[f.entity_id].append(f)
    writes = []
    for token, findings in sorted(by_token.items()):
        current = snapshot.model_spend.get(token)
        alias = findings[0].entity_alias
        base = _About(target=MODEL_SPEND, key=token, scope="key", entity_id=token, entity_alias=alias)
        if not isinstance(current, Mapping):
            writes.append(PlannedWrite(**base, action=SKIP, why="the key's model_spend is gone or not a JSON object"))
            continue
        if token in snapshot.lifetime:  # the key's whole lifetime ledger, by canonical group
            new = {group: float(value) for group, value in sorted(snapshot.lifetime[token].items()) if value}
        else:  # only the groups the scan compared
            rewritten: dict[str, float] = defaultdict(float)
            for name, value in current.items():
                number = parse_float(value)
                if number is not None:  # not a number: the scan skipped it too, and the rewrite drops it
                    rewritten[options.canonical(str(name)) or str(name)] += number
            for f in findings:
                if f.model_group is not None:  # always: a model_spend drift names the group it compared
                    rewritten[f.model_group] = float(f.logged_spend or 0.0)
            new = {name: rewritten[name] for name in sorted(rewritten) if rewritten[name]}
        old_total, new_total = sum(parse_float(v) or 0.0 for v in current.values()), sum(new.values())
        groups = ", ".join(new) or "no spend"
        writes.append(
            PlannedWrite(
                **base,
                action=SET,
                old=({"token": token, "model_spend": dict(current)},),
                new=({"token": token, "model_spend": new},),
                old_value=old_total,
                new_value=new_total,
                why=f"legacy JSON (nothing reads it; {len(current)} names) rewritten as lifetime ledger sums by canonical model group: {groups}",
            )
        )
    return writes


def team_member_ids(entity_id: str) -> tuple[str, str]:
    """`{len(user_id)}:{user_id}:{team_id}` back to (user_id, team_id)."""
    length, _, rest = entity_id.partition(":")
    size = int(length)
    return rest[:size], rest[size + 1 :]


def _plan_scalar(f: Finding, options: PlanOptions) -> PlannedWrite:
    """An entity's scalar `spend` set to the ledger's sum over its current budget period."""
    base = _About(
        target=SCALAR,
        key=f.counter_key or "",
        scope=f.scope,
        entity_id=f.entity_id,
        entity_alias=f.entity_alias,
        time_period=f.time_period,
        window_start=f.window_start,
        window_end=f.window_end,
    )
    if f.scope not in SCALAR_ROWS or f.entity_id is None or f.logged_spend is None or f.cached_spend is None:
        return PlannedWrite(
            **base,
            action=SKIP,
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            why="the finding does not name an entity's spend",
        )
    if f.window_end is not None and f.window_end <= options.wall_now:
        return PlannedWrite(
            **base,
            action=SKIP,
            old_value=f.cached_spend,
            new_value=f.logged_spend,
            why=f"its period ended at {iso_ms(f.window_end)}: LiteLLM's reset job zeroes it",
        )
    table, pk = SCALAR_ROWS[f.scope]
    ids = team_member_ids(f.entity_id) if f.scope == "team_member" else (f.entity_id,)
    cell = {
        "table": table,
        "pk": dict(zip(pk, ids, strict=True)),
        "period_start": iso_ms(f.window_start) if f.window_start else None,
    }
    period = f"period since {iso_ms(f.window_start)}" if f.window_start else "lifetime (no budget_duration)"
    return PlannedWrite(
        **base,
        action=SET,
        old=({**cell, "spend": float(f.cached_spend)},),
        new=({**cell, "spend": float(f.logged_spend)},),
        old_value=f.cached_spend,
        new_value=f.logged_spend,
        why=f"{table}.spend against the ledger's {period}",
    )


def _duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"
