"""Repair the counters the scan found wrong, on a live proxy, with a journal and a way back.

`plan()` is pure: the scan's findings and a snapshot of the values it would touch in, a list of
planned writes out. `apply()` and `undo()` do the I/O:

- PostgreSQL rows (LiteLLM_BudgetWindowSpend, legacy model_spend) are written in one transaction
  per run (or per `batch` entities), each row locked with SELECT … FOR UPDATE and compared with the
  value the plan read; a row the proxy changed meanwhile is recomputed inside the lock by re-summing
  the ledger for its window in SQL, never overwritten blindly. The journal row of each change is
  inserted in the same transaction.
- Redis keys are written by one Lua compare-and-set per counter (spend key and start key together):
  SET with an absolute expiry at the window's end, never INCRBYFLOAT (LiteLLM issue #28247). A CAS
  that finds a different value re-sums the ledger and retries on what it found. The journal records
  the intent before and the outcome after, so a crash shows as an incomplete run.

Nothing here prints; the CLI (`auditor.cli.backfill`) renders.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, and_, select, tuple_
from sqlalchemy.exc import DBAPIError

from auditor.repair import backfill_live as live
from auditor.repair import journal
from auditor.ledger import queries
from auditor.ledger import budget_holders
from auditor.repair.backfill_live import Delta, Ledger, WindowAsk, observe, write_deltas
from auditor.ledger.capabilities import Capabilities
from auditor.litellm.counters import MODEL_COUNTER_PREFIXES, PREFIX_OF_SCOPE, CounterKey, epoch_to_utc, parse_counter_key, parse_float
from auditor.ledger.db import json_value
from auditor.errors import InputError, UnavailableError
from auditor.audit.findings import COUNTER_DRIFT, MISKEYED_COUNTER, Finding, ScanResult, iso
from auditor.ledger.schema import budget_window_spend, end_user_table, team_membership, team_table, user_table, verification_token

# Where each scope keeps its scalar spend, and the row's primary key (semantics.md (a)).
SCALAR_TABLES = {
    "key": (verification_token, ("token",)),
    "team": (team_table, ("team_id",)),
    "user": (user_table, ("user_id",)),
    "end_user": (end_user_table, ("user_id",)),
    "team_member": (team_membership, ("user_id", "team_id")),
}

REDIS, BWS, MODEL_SPEND, SCALAR = "redis", "budget_window_spend", "model_spend", "spend"
SET, REMOVE, SKIP, RESTORE = "set", "remove", "skip", "restore"

COUNTERS_TARGET = "counters"  # --target: live window counters (Redis keys, LiteLLM_BudgetWindowSpend rows)
TARGETS = (COUNTERS_TARGET, MODEL_SPEND, SCALAR)  # --target spend: an entity's scalar spend for its current period

ENTRY_LAYOUT, ALIAS_LAYOUT, MEMORY_LAYOUT = "entry", "alias", "memory"
BWS_ENTITY_TYPE = "model_max_budget"


# ---------------------------------------------------------------------------------------------
# Which counter layout the proxy reads


@dataclass(frozen=True)
class Layout:
    """Where the running proxy reads per-model counters: its era (auditor.litellm.eras), as backfill writes it."""

    name: str  # ENTRY_LAYOUT (1.99+): `{prefix}:{entity}:{entry}:{dur}` + a start key per entry;
    #            ALIAS_LAYOUT (1.84–1.98): counter named after the requested model, one start key per entity;
    #            MEMORY_LAYOUT (before 1.84): counters in worker memory only, nothing to write
    version: str  # what the choice rests on, for humans: "1.110", ">= 1.105", ...
    origin: str  # "--litellm-version", "schema markers", "counter keys", ...
    reads_budget_window_spend: bool  # 1.109+ replicas without Redis share windows through the table
    note: str | None = None
    era: str | None = None  # auditor.litellm.eras.Era.name

    def as_record(self) -> dict:
        return asdict(self)


def layout_for(explicit: str | None, caps: Capabilities | None, shapes: Iterable[str] = ()) -> Layout:
    """--litellm-version when given, else what the schema markers and the counter key shapes suggest (eras.detect_era)."""
    from auditor.litellm.eras import detect_era

    return layout_of(detect_era(caps.version_range() if caps is not None else (None, None), frozenset(shapes), explicit), explicit)


def layout_of(found, explicit: str | None) -> Layout:
    """The layout backfill writes for a detected era (auditor.litellm.eras.Detection)."""
    from auditor.litellm.eras import MEMORY, PER_ENTRY

    era = found.era
    note = None if found.certain else found.evidence[-1]
    if era.storage == MEMORY:
        if explicit:
            raise InputError(
                f"LiteLLM {explicit} keeps per-model counters in each worker's memory (no Redis, no table): "
                "there is nothing backfill can write for it"
            )
        name, note = MEMORY_LAYOUT, (f"LiteLLM {found.version} ({era.name}) keeps per-model counters in each worker's memory: "
                                     "no counter can be written; pass --litellm-version if it runs a later release")
    else:
        name = ENTRY_LAYOUT if era.start_keys == PER_ENTRY else ALIAS_LAYOUT
    return Layout(name, found.version, found.origin, era.shares_through_table, note, era.name)


# ---------------------------------------------------------------------------------------------
# Plan (pure)


@dataclass(frozen=True)
class Snapshot:
    """The values the plan would touch, read right after the scan.

    redis: key -> {"value": str | None, "expire_at_ms": int | None} (absent keys map to value None);
    rows: (entity_id, window_duration) -> {"window_start": iso, "spend": float} of LiteLLM_BudgetWindowSpend;
    model_spend: key hash -> the key's model_spend JSON.
    """

    redis: Mapping[str, Mapping] = field(default_factory=dict)
    rows: Mapping[tuple[str, str], Mapping] = field(default_factory=dict)
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
    old: tuple[dict, ...] = ()  # cells as read (what a compare-and-set expects)
    new: tuple[dict, ...] = ()  # cells to write
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

    def as_record(self) -> dict:
        record = asdict(self)
        for name in ("window_start", "window_end"):
            record[name] = iso(record[name])
        record["keys"] = list(self.keys)
        return record

    def journal_record(self) -> dict:
        return {"target": self.target, "action": self.action, "scope": self.scope, "entity_id": self.entity_id,
                "key": self.key, "old": list(self.old), "new": list(self.new)}


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

    def as_record(self) -> dict:
        return {
            "schema_version": 1,
            "as_of": iso(self.as_of),
            "wall_clock": iso(self.wall_now),
            "layout": self.layout.as_record(),
            "targets": list(self.targets),
            "summary": {"writes": len(self.actionable), "skipped": len(self.skipped),
                        "by_target": _count(w.target for w in self.actionable)},
            "notes": list(self.notes),
            "writes": [w.as_record() for w in self.actionable],
            "skipped": [w.as_record() for w in self.skipped],
        }


def _count(values: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return dict(sorted(counts.items()))


def epoch_ms(moment: datetime) -> int:
    return int(round(moment.replace(tzinfo=timezone.utc).timestamp() * 1000))


def start_value(moment: datetime) -> str:
    """A start key's value as LiteLLM writes it: epoch seconds as a float."""
    return repr(round(moment.replace(tzinfo=timezone.utc).timestamp(), 3))


def money_value(value: float) -> str:
    return repr(float(value))


def _ms(moment: datetime) -> str:
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
            write = _plan_counter(f, snapshot, options, now)
            writes.append(write)
            if write.action == SET and write.target == REDIS and layout.name == ALIAS_LAYOUT:
                alias_starts[(f.scope, f.entity_id)].append(write)
        elif f.kind == MISKEYED_COUNTER and f.counter_source in (REDIS, BWS):
            if counters:
                writes.append(_plan_miskeyed(f, snapshot, options))
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


def _base(f: Finding, target: str, key: str) -> dict:
    return dict(target=target, key=key, scope=f.scope, entity_id=f.entity_id, entity_alias=f.entity_alias,
                budget_model=f.budget_model, time_period=f.time_period, window_start=f.window_start, window_end=f.window_end)


def _redis_cell(snapshot: Snapshot, key: str) -> dict:
    found = snapshot.redis.get(key) or {}
    return {"key": key, "value": found.get("value"), "expire_at_ms": found.get("expire_at_ms")}


def _row_cell(snapshot: Snapshot, entity_id: str, duration: str) -> dict:
    found = snapshot.rows.get((entity_id, duration)) or {}
    return {"entity_id": entity_id, "window_duration": duration, "window_start": found.get("window_start"), "spend": found.get("spend")}


def _plan_counter(f: Finding, snapshot: Snapshot, options: PlanOptions, now: datetime) -> PlannedWrite:
    layout = options.layout
    parsed = parse_counter_key(f.counter_key or "")
    target = f.counter_source
    if parsed is None or f.window_start is None or f.window_end is None or f.logged_spend is None:
        return PlannedWrite(**_base(f, target, f.counter_key or ""), action=SKIP, why="the finding does not name a window")
    base = _base(f, target, parsed.key)
    if layout.name == MEMORY_LAYOUT:
        return PlannedWrite(**base, action=SKIP, old_value=f.cached_spend, new_value=f.logged_spend,
                            why=f"LiteLLM {layout.version} keeps per-model counters in worker memory: nothing it reads can be written")
    if not (f.window_start <= now < f.window_end):
        return PlannedWrite(**base, action=SKIP, old_value=f.cached_spend, new_value=f.logged_spend,
                            why=f"window closed at {_ms(f.window_end)} as of --now: enforcement no longer reads it")
    remaining = (f.window_end - options.wall_now).total_seconds()
    if remaining <= 0:
        return PlannedWrite(**base, action=SKIP, old_value=f.cached_spend, new_value=f.logged_spend,
                            why=f"window ended at {_ms(f.window_end)} by the wall clock: the live proxy opens a new one on its next charge")
    ttl = math.ceil(remaining)
    end_ms = epoch_ms(f.window_end)
    window = f"window {_ms(f.window_start)} → {_ms(f.window_end)}"
    if target == BWS:
        if not layout.reads_budget_window_spend:
            return PlannedWrite(**base, action=SKIP, old_value=f.cached_spend, new_value=f.logged_spend,
                                why=f"LiteLLM {layout.version} does not read LiteLLM_BudgetWindowSpend for per-model budgets (1.109+ does)")
        old = _row_cell(snapshot, parsed.key, parsed.duration)
        new = {**old, "window_start": _ms(f.window_start), "spend": float(f.logged_spend)}
        stale = _moved(old.get("spend"), f.cached_spend, old.get("spend") is None) or (
            old.get("window_start") is not None and old["window_start"] != _ms(f.window_start))  # the proxy opened a new window
        why = ("row missing: LiteLLM reads $0" if old["spend"] is None else "row differs from the ledger") + f"; {window}"
        return PlannedWrite(**base, action=SET, old=(old,), new=(new,), old_value=f.cached_spend, new_value=f.logged_spend,
                            ttl_seconds=None, stale=stale, why=why)
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
        stale = stale or started is None or abs(started - f.window_start.replace(tzinfo=timezone.utc).timestamp()) > 0.002
    why = ("missing: LiteLLM reads $0" if old_spend["value"] is None else "differs from the ledger") + f"; {window}, TTL {_duration(ttl)}"
    return PlannedWrite(**{**base, "key": spend_key}, action=SET, old=tuple(cells_old), new=tuple(cells_new),
                        old_value=current if old_spend["value"] is not None else None, new_value=f.logged_spend,
                        ttl_seconds=ttl, stale=stale, why=why)


def _moved(current: float | None, scanned: float | None, absent: bool) -> bool:
    """Did the counter change between the scan and the snapshot? (A missing counter scans as 0.)"""
    if absent:
        return bool(scanned)
    if current is None or scanned is None:
        return current != scanned
    return abs(current - scanned) > 1e-12


def _plan_alias_starts(pending: Mapping[tuple[str, str], list[PlannedWrite]], snapshot: Snapshot, options: PlanOptions) -> list[PlannedWrite]:
    """1.84–1.98 keep one start key per entity, shared by all its counters: write it once, only where absent."""
    writes = []
    for (scope, entity_id), counters in sorted(pending.items()):
        key = f"{MODEL_COUNTER_PREFIXES[PREFIX_OF_SCOPE[scope]]}:{entity_id}"
        cell = _redis_cell(snapshot, key)
        first = min(counters, key=lambda w: w.window_start)
        base = dict(target=REDIS, key=key, scope=scope, entity_id=entity_id, entity_alias=first.entity_alias,
                    window_start=first.window_start, window_end=max(w.window_end for w in counters))
        existing = parse_float(cell["value"]) if cell["value"] is not None else None
        if existing is not None and abs(existing - first.window_start.replace(tzinfo=timezone.utc).timestamp()) <= 1.0:
            continue  # already the window the counters were computed for
        if cell["value"] is not None or len({w.window_start for w in counters}) > 1:
            writes.append(PlannedWrite(**base, action=SKIP, why=(
                "the entity's shared start key (1.84–1.98) holds another window start; left alone" if cell["value"] is not None
                else "this entity's counters are in windows that started at different times; one shared start key cannot hold them")))
            continue
        end_ms = epoch_ms(base["window_end"])
        ttl = math.ceil((base["window_end"] - options.wall_now).total_seconds())
        writes.append(PlannedWrite(**base, action=SET, old=(cell,), new=({"key": key, "value": start_value(first.window_start), "expire_at_ms": end_ms},),
                                   ttl_seconds=ttl, why=f"the entity's shared start key is missing; TTL {_duration(ttl)}"))
    return writes


def _plan_miskeyed(f: Finding, snapshot: Snapshot, options: PlanOptions) -> PlannedWrite:
    parsed = parse_counter_key(f.counter_key or "")
    base = _base(f, f.counter_source, f.counter_key or "")
    base["budget_model"] = f.budget_model
    if parsed is None:
        return PlannedWrite(**base, action=SKIP, why="the finding does not name a counter key")
    merge = _merge_note(f, options.layout)
    if not options.remove_miskeyed:
        return PlannedWrite(**base, action=SKIP, old_value=f.cached_spend, why=f"never read by enforcement; {merge}; --remove-miskeyed deletes it")
    if f.counter_source == BWS:
        old = _row_cell(snapshot, parsed.key, parsed.duration)
        if old["spend"] is None:
            return PlannedWrite(**base, action=SKIP, why="already gone")
        new = {**old, "window_start": None, "spend": None}
        return PlannedWrite(**base, action=REMOVE, old=(old,), new=(new,), old_value=old["spend"], new_value=None, why=f"never read by enforcement; {merge}")
    cells_old = [_redis_cell(snapshot, parsed.key)]
    if cells_old[0]["value"] is None:
        return PlannedWrite(**base, action=SKIP, why="already gone (expired)")
    start = _redis_cell(snapshot, parsed.start_key)
    if start["value"] is not None:  # its own start key is miskeyed too; the entity's shared one is left alone
        cells_old.append(start)
    cells_new = [{"key": c["key"], "value": None, "expire_at_ms": None} for c in cells_old]
    return PlannedWrite(**base, action=REMOVE, old=tuple(cells_old), new=tuple(cells_new),
                        old_value=parse_float(cells_old[0]["value"]), new_value=None, why=f"never read by enforcement; {merge}")


def _merge_note(f: Finding, layout: Layout) -> str:
    if not f.budget_model:
        return f"no budget entry governs {f.model or f.resolves_to or 'its model'}, so there is nothing to merge it into"
    target = f"{PREFIX_OF_SCOPE.get(f.scope or 'key', 'virtual_key_spend')}:{f.entity_id}:{f.budget_model}:…"
    return f"its spend is counted in the ledger, which is what {target} is repaired from"


def _merge_reasons(writes: list[PlannedWrite]) -> list[PlannedWrite]:
    """A miskeyed counter's spend lands in the counter enforcement reads via the ledger: name that counter exactly."""
    reads = {(w.scope, w.entity_id, w.budget_model): w for w in writes
             if w.budget_model and "never read by enforcement" not in w.why and w.target in (REDIS, BWS)}
    merged = []
    for w in writes:
        if w.target in (REDIS, BWS) and w.action in (REMOVE, SKIP) and "never read by enforcement" in w.why and w.budget_model:
            target = reads.get((w.scope, w.entity_id, w.budget_model))
            tail = "; --remove-miskeyed deletes it" if w.action == SKIP else ""
            if target is not None and target.action == SET:
                w = replace(w, why=f"never read by enforcement; its spend is merged into {target.key} (set to the ledger's ${target.new_value:,.4f}){tail}")
            elif target is not None:
                w = replace(w, why=f"never read by enforcement; its spend belongs to {target.key}, which is not written ({target.why}){tail}")
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
        base = dict(target=MODEL_SPEND, key=token, scope="key", entity_id=token, entity_alias=alias)
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
                rewritten[f.model_group] = float(f.logged_spend or 0.0)
            new = {name: rewritten[name] for name in sorted(rewritten) if rewritten[name]}
        old_total, new_total = sum(parse_float(v) or 0.0 for v in current.values()), sum(new.values())
        groups = ", ".join(new) or "no spend"
        writes.append(PlannedWrite(
            **base, action=SET, old=({"token": token, "model_spend": dict(current)},), new=({"token": token, "model_spend": new},),
            old_value=old_total, new_value=new_total,
            why=f"legacy JSON (nothing reads it; {len(current)} names) rewritten as lifetime ledger sums by canonical model group: {groups}",
        ))
    return writes


def team_member_ids(entity_id: str) -> tuple[str, str]:
    """`{len(user_id)}:{user_id}:{team_id}` back to (user_id, team_id)."""
    length, _, rest = entity_id.partition(":")
    size = int(length)
    return rest[:size], rest[size + 1 :]


def _plan_scalar(f: Finding, options: PlanOptions) -> PlannedWrite:
    """An entity's scalar `spend` set to the ledger's sum over its current budget period."""
    base = dict(target=SCALAR, key=f.counter_key or "", scope=f.scope, entity_id=f.entity_id, entity_alias=f.entity_alias,
                time_period=f.time_period, window_start=f.window_start, window_end=f.window_end,
                old_value=f.cached_spend, new_value=f.logged_spend)
    if f.scope not in SCALAR_TABLES or f.entity_id is None or f.logged_spend is None or f.cached_spend is None:
        return PlannedWrite(**base, action=SKIP, why="the finding does not name an entity's spend")
    if f.window_end is not None and f.window_end <= options.wall_now:
        return PlannedWrite(**base, action=SKIP, why=f"its period ended at {_ms(f.window_end)}: LiteLLM's reset job zeroes it")
    table, pk = SCALAR_TABLES[f.scope]
    ids = team_member_ids(f.entity_id) if f.scope == "team_member" else (f.entity_id,)
    cell = {"table": table.name, "pk": dict(zip(pk, ids, strict=True)), "period_start": _ms(f.window_start) if f.window_start else None}
    period = f"period since {_ms(f.window_start)}" if f.window_start else "lifetime (no budget_duration)"
    return PlannedWrite(**base, action=SET, old=({**cell, "spend": float(f.cached_spend)},), new=({**cell, "spend": float(f.logged_spend)},),
                        why=f"{table.name}.spend against the ledger's {period}")


def _duration(seconds: int) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


# ---------------------------------------------------------------------------------------------
# Reading the snapshot


def read_snapshot(conn: Connection, caps: Capabilities, client, result: ScanResult, layout: Layout, targets: Iterable[str]) -> Snapshot:
    targets = set(targets)
    redis_values: dict[str, dict] = {}
    rows: dict[tuple[str, str], dict] = {}
    model_spend: dict[str, object] = {}
    if COUNTERS_TARGET in targets:
        keys = redis_keys_to_read(result, layout)
        if keys and client is not None:
            redis_values = read_redis(client, keys)
        wanted = bws_rows_to_read(result)
        if wanted and caps.has_table("LiteLLM_BudgetWindowSpend"):
            t = budget_window_spend
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                query = select(t.c.entity_id, t.c.window_duration, t.c.window_start, t.c.spend).where(
                    t.c.entity_type == BWS_ENTITY_TYPE, tuple_(t.c.entity_id, t.c.window_duration).in_(chunk))
                for r in conn.execute(query):
                    rows[(r.entity_id, r.window_duration)] = {"window_start": _ms(_naive(r.window_start)), "spend": float(r.spend)}
    if MODEL_SPEND in targets:
        tokens = model_spend_tokens(result)
        if tokens:
            vt = verification_token
            for r in conn.execute(select(vt.c.token, vt.c.model_spend).where(vt.c.token.in_(tokens))):
                model_spend[r.token] = json_value(r.model_spend)
    return Snapshot(redis_values, rows, model_spend)


def read_redis(client, keys: Sequence[str]) -> dict[str, dict]:
    """Values and absolute expiry (ms, on Redis's clock) of keys, one round trip per chunk; PTTL, not
    PEXPIRETIME, so Redis before 7 works too."""
    found = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        pipe = client.pipeline(transaction=True)
        pipe.time()
        for key in chunk:
            pipe.get(key)
            pipe.pttl(key)
        replies = pipe.execute()
        seconds, micros = replies[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        for index, key in enumerate(chunk):
            value, ttl = replies[1 + 2 * index], replies[2 + 2 * index]
            found[key] = {"value": value, "expire_at_ms": now_ms + int(ttl) if value is not None and ttl is not None and ttl > 0 else None}
    return found


def _naive(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=None) if value.tzinfo is None else value.astimezone(timezone.utc).replace(tzinfo=None)


# ---------------------------------------------------------------------------------------------
# Apply and undo (I/O)

# One compare-and-set over N keys, atomically: every key must hold what the caller read (or be absent),
# then each is SET with an absolute expiry (PXAT) or deleted. Never INCRBYFLOAT (LiteLLM #28247).
# ARGV per key: expect_present, expected, write_present, value, pxat_ms (0 = no expiry).
CAS_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local current = {}
local ok = true
for i = 1, n do
  local base = (i - 1) * 5
  local cur = redis.call('GET', KEYS[i])
  current[i] = cur
  if ARGV[base + 1] == '1' then
    if cur ~= ARGV[base + 2] then ok = false end
  elseif cur then
    ok = false
  end
end
if not ok then
  local out = {0}
  for i = 1, n do
    local ttl = redis.call('PTTL', KEYS[i])
    if current[i] then out[#out + 1] = '1'; out[#out + 1] = current[i]
    else out[#out + 1] = '0'; out[#out + 1] = '' end
    if ttl > 0 then out[#out + 1] = tostring(now + ttl) else out[#out + 1] = '0' end
  end
  return out
end
for i = 1, n do
  local base = (i - 1) * 5
  local at = tonumber(ARGV[base + 5])
  if ARGV[base + 3] == '1' and at > 0 and at - now > 0 then
    redis.call('SET', KEYS[i], ARGV[base + 4], 'PX', at - now)
  elseif ARGV[base + 3] == '1' and at == 0 then
    redis.call('SET', KEYS[i], ARGV[base + 4])
  else
    redis.call('DEL', KEYS[i])
  end
end
return {1}
"""


def redis_cas(client, expected: Sequence[dict], new: Sequence[dict]) -> tuple[bool, list[dict]]:
    """(written, the cells found instead when not written). Expiry is absolute (ms), applied as the
    remaining time on Redis's own clock; an expiry already past deletes the key."""
    keys = [cell["key"] for cell in new]
    args: list[str] = []
    for old, cell in zip(expected, new, strict=True):
        args += ["1" if old.get("value") is not None else "0", old.get("value") or "",
                 "1" if cell.get("value") is not None else "0", cell.get("value") or "", str(cell.get("expire_at_ms") or 0)]
    reply = client.eval(CAS_SCRIPT, len(keys), *keys, *args)
    if int(reply[0]) == 1:
        return True, []
    found = reply[1:]
    return False, [
        {"key": key, "value": found[3 * i + 1] if found[3 * i] == "1" else None,
         "expire_at_ms": int(found[3 * i + 2]) if found[3 * i] == "1" and int(found[3 * i + 2]) > 0 else None}
        for i, key in enumerate(keys)
    ]


@dataclass
class Outcome:
    write: PlannedWrite
    state: str
    written: list[dict] | None = None
    reason: str | None = None
    replaced: list[dict] | None = None  # what was really there when written (differs from the plan's old when recomputed)

    def journal_record(self) -> dict:
        record = self.write.journal_record()
        if self.replaced is not None:
            record["old"] = list(self.replaced)
        return record

    def as_record(self) -> dict:
        return {"target": self.write.target, "action": self.write.action, "key": self.write.key, "state": self.state,
                "old_value": self.write.old_value, "planned_value": self.write.new_value,
                "written_value": _written_value(self.write.target, self.written), "reason": self.reason}


def _written_value(target: str, written: list[dict] | None) -> float | None:
    if not written:
        return None
    cell = written[0]
    if target == REDIS:
        return parse_float(cell.get("value")) if cell.get("value") is not None else None
    if target == BWS:
        return cell.get("spend")
    if target == SCALAR:
        return cell.get("spend")
    if target == MODEL_SPEND and isinstance(cell.get("model_spend"), Mapping):
        return sum(parse_float(v) or 0.0 for v in cell["model_spend"].values())
    return None


@dataclass
class RunReport:
    run_id: str
    kind: str
    outcomes: list[Outcome]
    status: str = journal.COMPLETED
    parent_run_id: str | None = None

    def counts(self) -> dict[str, int]:
        return _count(o.state for o in self.outcomes)

    def as_record(self) -> dict:
        return {"run_id": self.run_id, "kind": self.kind, "status": self.status, "parent_run_id": self.parent_run_id,
                "counts": self.counts(), "results": [o.as_record() for o in self.outcomes]}


class Interrupted(Exception):
    """SIGINT/SIGTERM asked the run to stop: raised at the next safe point (between changes, between chunks)."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


@dataclass
class WriteEnv:
    """What apply/undo write through, injected so tests drive time and pauses."""

    engine: Engine  # read-write; a small pool, one connection at a time
    redis: object | None
    ledger: Ledger | None
    masked_db: str
    clock: Callable[[], datetime]  # wall clock, naive UTC
    batch: int = 0  # entities per database transaction; 0 = all in one
    hook: Callable[[str], None] = lambda what: None  # called after every write (tests pause or crash here)
    tolerance: float = 0.0001
    flush_lag: float = 0.0  # seconds from a request's counter increment until its spend-log row is in the database, at most
    increment_lag: float = 0.0  # seconds from a request's endTime until its increment is in Redis, at most
    stop: Callable[[], str | None] = lambda: None  # the signal's name once the run was asked to stop
    started: Callable[[str], None] = lambda run_id: None  # told the run id as soon as it is journaled
    waiting: Callable[[float], None] = lambda seconds: None  # told before the flush wait

    def check(self) -> None:
        signal_name = self.stop()
        if signal_name:
            raise Interrupted(signal_name)

    def wait(self, seconds: float) -> None:
        """Sleep, interruptibly."""
        end = time.monotonic() + max(0.0, seconds)
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))


def apply(plan_: Plan, env: WriteEnv, options: Mapping, report: RunReport | None = None) -> RunReport:
    """Journal a run and make every planned write, with the safeguards in the module docstring. `report`, when
    given, is filled in place, so a caller that sees Interrupted still knows the run id and what was written."""
    writes = list(enumerate(plan_.writes))
    actionable = [(seq, w) for seq, w in writes if w.action != SKIP]
    report = report if report is not None else RunReport("", "backfill", [])
    report.run_id = _start(env, "backfill", options)
    env.started(report.run_id)
    _run_guarded(env, report, lambda: _apply_all(actionable, env, report))
    return report


def undo(run_id: str, env: WriteEnv, report: RunReport | None = None) -> RunReport:
    """Put back the old values of a run's changes wherever nothing changed them since (same compare-and-set)."""
    with _begin(env) as conn:
        journal.require_current(conn, env.masked_db)
        run = journal.find_run(conn, run_id)
        changes = journal.changes_of(conn, run.id)
    todo = [c for c in changes if c.state in journal.WRITTEN_STATES or c.state == journal.INTENT]
    todo.sort(key=lambda c: c.seq, reverse=True)
    report = report if report is not None else RunReport("", "undo", [])
    report.run_id, report.parent_run_id = _start(env, "undo", {"undo_of": run.id}, parent=run.id), run.id
    env.started(report.run_id)
    writes = []
    for seq, change in enumerate(todo):
        expected = change.written if change.state != journal.INTENT else change.new
        writes.append((seq, PlannedWrite(
            target=change.target, action=RESTORE, key=change.key, scope=change.scope, entity_id=change.entity_id,
            old=tuple(expected or ()), new=tuple(change.old or ()), why=f"undo of run {run.id} change {change.seq}",
            old_value=_written_value(change.target, expected), new_value=_written_value(change.target, change.old),
        )))
    _run_guarded(env, report, lambda: _apply_all(writes, env, report))
    return report


def _start(env: WriteEnv, kind: str, options: Mapping, parent: str | None = None) -> str:
    with _begin(env) as conn:
        journal.require_current(conn, env.masked_db)
        return journal.start_run(conn, kind, options, env.clock(), parent_run_id=parent)


def _begin(env: WriteEnv):
    return env.engine.begin()


def _run_guarded(env: WriteEnv, report: RunReport, body: Callable[[], None]) -> None:
    """Any failure: the open transaction rolls back, the run is marked failed (best effort), one line goes up."""
    import redis as redis_lib

    try:
        body()
    except DBAPIError as err:
        detail = _db_detail(err)
        _finish(env, report, journal.FAILED, f"database error: {detail}")
        raise UnavailableError(
            f"lost the database connection to {env.masked_db} during run {report.run_id}: {detail}; "
            "its open transaction was rolled back (earlier ones stay committed and journaled)"
            if _is_disconnect(err) else
            f"database error on {env.masked_db} during run {report.run_id}: {detail}; its open transaction was rolled back"
        ) from None
    except redis_lib.RedisError as err:
        from auditor.ledger.db import mask_text

        detail = mask_text(str(err).splitlines()[0] if str(err) else type(err).__name__)
        _finish(env, report, journal.FAILED, f"redis error: {detail}")
        raise UnavailableError(f"Redis failed during run {report.run_id}: {detail}; the journal says which writes completed") from None
    except Interrupted as err:
        _finish(env, report, journal.INTERRUPTED, f"interrupted by {err.signal_name}")
        raise
    except BaseException as err:
        if isinstance(err, (InputError, UnavailableError)):
            _finish(env, report, journal.FAILED, str(err))
        raise
    report.status = journal.COMPLETED
    _finish(env, report, journal.COMPLETED, None)


def _finish(env: WriteEnv, report: RunReport, status: str, message: str | None) -> None:
    report.status = status
    try:
        with _begin(env) as conn:
            journal.finish_run(conn, report.run_id, status, env.clock(), report.counts(), message)
    except DBAPIError:
        if status == journal.COMPLETED:
            raise
        # The database is gone: the run stays `running` with no finish time, which history shows as incomplete.


def _db_detail(err: DBAPIError) -> str:
    from auditor.ledger.db import error_line

    return error_line(err)  # masked; a denied privilege is named


_DISCONNECTED = ("terminating connection", "server closed the connection", "connection is closed", "connection already closed",
                 "consuming input failed", "could not receive data", "ssl syscall error: eof")


def _is_disconnect(err: DBAPIError) -> bool:
    text = str(getattr(err, "orig", err)).lower()
    return bool(err.connection_invalidated) or any(s in text for s in _DISCONNECTED)


def _apply_all(writes: list[tuple[int, PlannedWrite]], env: WriteEnv, report: RunReport) -> None:
    database = [(s, w) for s, w in writes if w.target in (BWS, MODEL_SPEND, SCALAR)]
    in_redis = [(s, w) for s, w in writes if w.target == REDIS]
    for batch in _batches(database, env.batch):
        outcomes = []
        with _begin(env) as conn:  # an interrupt inside rolls the whole batch back, journal rows included
            for seq, write in batch:
                env.check()
                outcomes.append((seq, _write_row(conn, write, env)))
                env.hook(f"{write.target} {seq}")
            env.check()  # asked to stop: the open transaction is rolled back, not committed
            journal.record_changes(conn, report.run_id, ((seq, o.journal_record(), o.state, o.written, o.reason) for seq, o in outcomes),
                                   env.clock())
        report.outcomes += [o for _, o in outcomes]  # only once committed
    if in_redis and env.redis is None:
        raise InputError("the plan writes Redis keys but no Redis is configured: pass --redis")
    counters = [(s, w) for s, w in in_redis if w.action == SET and w.budget_model is not None and env.ledger is not None]
    others = [(s, w) for s, w in in_redis if not (w.action == SET and w.budget_model is not None and env.ledger is not None)]
    for start in range(0, len(others), live.CHUNK):
        env.check()
        _redis_chunk(others[start : start + live.CHUNK], env, report, lambda chunk: [_write_redis(w, env) for _, w in chunk])
    if counters:
        _apply_live_counters(counters, env, report)
    env.check()  # a signal during the last change: the run says it was interrupted, with every change journaled


def _redis_chunk(chunk: list[tuple[int, PlannedWrite]], env: WriteEnv, report: RunReport,
                 write: Callable[[list[tuple[int, PlannedWrite]]], list[Outcome]]) -> None:
    """Intents committed, then the Redis writes, then their outcomes: a crash in between shows the intents."""
    with _begin(env) as conn:
        journal.record_changes(conn, report.run_id, ((seq, w.journal_record(), journal.INTENT, None, None) for seq, w in chunk), env.clock())
    env.hook(f"intent {chunk[0][0]}")
    outcomes = write(chunk)
    with _begin(env) as conn:
        journal.update_changes(conn, report.run_id, ((seq, o.state, o.written, o.reason, o.replaced)
                                                     for (seq, _), o in zip(chunk, outcomes, strict=True)), env.clock())
    report.outcomes += outcomes
    for seq, _ in chunk:
        env.hook(f"redis {seq}")


def _apply_live_counters(counters: list[tuple[int, PlannedWrite]], env: WriteEnv, report: RunReport) -> None:
    """The protocol of auditor/repair/backfill_live.py: read each counter at an instant, wait for the flush, sum the ledger up
    to that instant, then set counter = ledger + what the proxy added since the read."""
    writes = [w for _, w in counters]
    readings = observe(env.redis, [w.keys for w in writes], env.increment_lag, max(env.flush_lag, 3 * env.increment_lag), env.wait)
    latest = max(r.clock for r in readings)
    if env.flush_lag > 0:
        env.waiting(env.flush_lag)
    env.wait(latest + env.flush_lag - time.monotonic())
    now = env.clock()
    asks, windows = [], []
    for write, reading in zip(writes, readings, strict=True):
        start = write.window_start
        if len(reading.values) > 1 and reading.values[1] is not None and (epoch := parse_float(reading.values[1])) is not None:
            start = epoch_to_utc(epoch)  # the window the proxy is in, whatever the scan saw
        end = env.ledger.window_end(write.scope, write.entity_id, write.budget_model, start)
        windows.append((start, end))
        if end is not None and end > now:
            asks.append(WindowAsk(write.scope, write.entity_id, write.budget_model, start, live.ledger_cut(reading)))
    with env.engine.connect() as conn:
        sums = iter(env.ledger.window_spends(conn, asks))
    todo = []
    for (seq, write), reading, (start, end) in zip(counters, readings, windows, strict=True):
        ledger = next(sums) if end is not None and end > now else None
        todo.append((seq, write, reading, start, end, ledger))
    for first in range(0, len(todo), live.CHUNK):
        env.check()
        chunk = todo[first : first + live.CHUNK]
        _redis_chunk([(seq, w) for seq, w, *_ in chunk], env, report, lambda _: _write_live(chunk, env))


def _write_live(chunk: list[tuple], env: WriteEnv) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(chunk)
    deltas, where = [], []
    for index, (_, write, reading, start, end, ledger) in enumerate(chunk):
        if ledger is None:
            outcomes[index] = Outcome(write, journal.CONFLICT, None, "its budget entry is gone" if end is None else
                                      "its window is over by the wall clock: the live proxy opens a new one")
            continue
        deltas.append(Delta(write.keys, reading.values, money_value(ledger), start_value(start), epoch_ms(end)))
        where.append(index)
    for index, result in zip(where, write_deltas(env.redis, deltas), strict=True):
        outcomes[index] = _live_outcome(*chunk[index][1:], result)
    return outcomes


def _live_outcome(write: PlannedWrite, reading, start: datetime, end: datetime, ledger: float, result) -> Outcome:
    found = [{"key": key, "value": value, "expire_at_ms": expiry}
             for key, value, expiry in zip(write.keys, result.current, result.expire_at_ms, strict=True)]
    now = _describe_values(result.current)
    if result.code == live.WINDOW_CHANGED:
        return Outcome(write, journal.CONFLICT, None, f"the proxy opened another window since the read (now {now}): left to it")
    if result.code == live.WINDOW_OVER:
        return Outcome(write, journal.CONFLICT, None, "its window ended before the write: the live proxy opens a new one")
    if result.code != live.WRITTEN:
        return Outcome(write, journal.CONFLICT, None, f"holds something that is not a number (now {now}): left as is")
    end_ms = epoch_ms(end)
    written = [{"key": write.keys[0], "value": result.written, "expire_at_ms": end_ms}]
    if len(write.keys) > 1:
        written.append({"key": write.keys[1], "value": result.current[1] if result.current[1] is not None else start_value(start),
                        "expire_at_ms": end_ms})
    carried = (parse_float(result.current[0]) or 0.0) - (parse_float(reading.values[0]) or 0.0)
    planned = [c.get("value") for c in write.old]
    exact = reading.values == tuple(planned) and not carried and abs(ledger - (write.new_value or 0.0)) <= 1e-9
    notes = [] if exact else [f"the ledger's ${ledger:,.4f} up to the read at {_ms(live.instant(reading.at_us))}"
                              + (f" + ${carried:,.4f} the proxy added since" if carried else "")
                              + (f" (read {_describe_values(reading.values)}, planned on {_describe_values(planned)})"
                                 if reading.values != tuple(planned) else "")]
    if not reading.quiet:
        notes.append("it never stopped moving while read: a request in flight at the read may be counted twice (none is lost)")
    return Outcome(write, journal.APPLIED if exact else journal.RECOMPUTED, written, "; ".join(notes) or None, replaced=found)


def _batches(writes: list[tuple[int, PlannedWrite]], size: int) -> Iterable[list[tuple[int, PlannedWrite]]]:
    """`size` entities per transaction (all of an entity's rows stay together); 0 = one transaction."""
    if not writes:
        return
    if size <= 0:
        yield writes
        return
    by_entity: dict[tuple, list] = defaultdict(list)
    for item in writes:
        by_entity[(item[1].scope, item[1].entity_id)].append(item)
    entities = list(by_entity.values())
    for start in range(0, len(entities), size):
        yield [item for group in entities[start : start + size] for item in group]


# --- database rows


def _row_key(cell: Mapping) -> tuple:
    return (cell.get("window_start"), cell.get("spend"))


def _same_row(current: Mapping, expected: Mapping) -> bool:
    if (current.get("spend") is None) != (expected.get("spend") is None):
        return False
    if current.get("spend") is None:
        return True
    return current.get("window_start") == expected.get("window_start") and float(current["spend"]) == float(expected["spend"])


def _write_row(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    if write.target == MODEL_SPEND:
        return _write_model_spend(conn, write)
    if write.target == SCALAR:
        return _write_scalar(conn, write, env)
    return _write_window_row(conn, write, env)


def _write_scalar(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    """Lock the entity's row; if the proxy added spend since the plan, re-sum the period in SQL under the lock."""
    expected, wanted = write.old[0], dict(write.new[0])
    table = next(t for t, _ in SCALAR_TABLES.values() if t.name == expected["table"])
    where = and_(*(table.c[name] == value for name, value in expected["pk"].items()))
    row = conn.execute(select(table.c.spend).where(where).with_for_update()).first()
    if row is None:
        return Outcome(write, journal.CONFLICT, None, "the row is gone")
    current = float(row.spend) if row.spend is not None else None
    state, reason = (journal.RESTORED if write.action == RESTORE else journal.APPLIED), None
    if current != expected["spend"]:
        if write.action == RESTORE:
            if current == wanted["spend"]:
                return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
            return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_money_text(current)}): left as is")
        start = datetime.fromisoformat(expected["period_start"]) if expected.get("period_start") else None
        wanted["spend"] = env.ledger.period_spend(conn, write.scope, write.entity_id, start, env.clock())
        state = journal.RECOMPUTED
        reason = f"was {_money_text(current)} instead of {_money_text(expected['spend'])}: re-summed the ledger for the period under the row lock"
    conn.execute(table.update().where(where).values(spend=wanted["spend"]))
    return Outcome(write, state, [wanted], reason, replaced=[{**expected, "spend": current}])


def _money_text(value: float | None) -> str:
    return "null" if value is None else f"${value:,.4f}"


def _bws_where(cell: Mapping):
    t = budget_window_spend
    return and_(t.c.entity_type == BWS_ENTITY_TYPE, t.c.entity_id == cell["entity_id"], t.c.window_duration == cell["window_duration"])


def _lock_window_row(conn: Connection, cell: Mapping) -> dict:
    t = budget_window_spend
    row = conn.execute(select(t.c.window_start, t.c.spend).where(_bws_where(cell)).with_for_update()).first()
    if row is None:
        return {**cell, "window_start": None, "spend": None}
    return {**cell, "window_start": _ms(_naive(row.window_start)), "spend": float(row.spend)}


def _write_window_row(conn: Connection, write: PlannedWrite, env: WriteEnv) -> Outcome:
    expected, wanted = write.old[0], write.new[0]
    current = _lock_window_row(conn, expected)
    state, reason = journal.APPLIED, None
    if write.action == RESTORE:
        if not _same_row(current, expected):
            if _same_row(current, wanted):
                return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
            return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_describe_row(current)}): left as is")
    elif write.stale or not _same_row(current, expected):
        if write.action == REMOVE:
            return Outcome(write, journal.CONFLICT, None, f"changed since the plan (now {_describe_row(current)}): left as is")
        start = datetime.fromisoformat(current["window_start"]) if current.get("window_start") else write.window_start
        end = env.ledger.window_end(write.scope, write.entity_id, write.budget_model, start) if env.ledger else None
        if end is None or end <= env.clock():
            return Outcome(write, journal.CONFLICT, None, f"changed since the plan (now {_describe_row(current)}) and its window is over: left as is")
        spend = env.ledger.window_spend(conn, write.scope, write.entity_id, write.budget_model, start)
        wanted = {**wanted, "window_start": _ms(start), "spend": spend}
        state = journal.RECOMPUTED
        reason = f"was {_describe_row(current)} instead of {_describe_row(expected)}: re-summed the ledger for the window under the row lock"
    _put_window_row(conn, current, wanted, env)
    if write.action == RESTORE:
        state = journal.RESTORED
    return Outcome(write, state, [wanted], reason, replaced=[current])


def _put_window_row(conn: Connection, current: Mapping, wanted: Mapping, env: WriteEnv) -> None:
    t = budget_window_spend
    where = _bws_where(wanted)
    if wanted.get("spend") is None:
        conn.execute(t.delete().where(where))
        return
    values = {"window_start": datetime.fromisoformat(wanted["window_start"]), "spend": float(wanted["spend"]), "updated_at": env.clock()}
    if current.get("spend") is not None:
        conn.execute(t.update().where(where).values(**values))
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    inserted = conn.execute(insert(t).values(entity_type=BWS_ENTITY_TYPE, entity_id=wanted["entity_id"],
                                             window_duration=wanted["window_duration"], **values).on_conflict_do_nothing())
    if inserted.rowcount == 0:
        raise UnavailableError(f"LiteLLM_BudgetWindowSpend row {wanted['entity_id']} appeared while it was being created: rerun backfill")


def _describe_row(cell: Mapping) -> str:
    if cell.get("spend") is None:
        return "no row"
    return f"${float(cell['spend']):,.4f} from {cell['window_start']}"


def _write_model_spend(conn: Connection, write: PlannedWrite) -> Outcome:
    vt = verification_token
    expected, wanted = write.old[0], write.new[0]
    row = conn.execute(select(vt.c.model_spend).where(vt.c.token == expected["token"]).with_for_update()).first()
    if row is None:
        return Outcome(write, journal.CONFLICT, None, "the key is gone")
    current = json_value(row.model_spend)
    if current != expected["model_spend"]:
        if write.action == RESTORE and current == wanted["model_spend"]:
            return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
        # LiteLLM >= 1.53 never writes model_spend: someone else edited it. Do not guess.
        return Outcome(write, journal.CONFLICT, None, "model_spend changed since it was read (LiteLLM does not write it: someone edited it): left as is")
    conn.execute(vt.update().where(vt.c.token == expected["token"]).values(model_spend=wanted["model_spend"]))
    return Outcome(write, journal.RESTORED if write.action == RESTORE else journal.APPLIED, [wanted])


# --- Redis


def _write_redis(write: PlannedWrite, env: WriteEnv) -> Outcome:
    expected, wanted = [dict(c) for c in write.old], [dict(c) for c in write.new]
    now_ms = epoch_ms(env.clock())
    if write.action == RESTORE:
        reason = None
        for cell in wanted:  # an old TTL that has run out: the key would be gone by now
            if cell.get("value") is not None and cell.get("expire_at_ms") and cell["expire_at_ms"] <= now_ms:
                cell.update(value=None, expire_at_ms=None)
                reason = "its old TTL has run out: removed, as it would have expired"
        ok, current = redis_cas(env.redis, expected, wanted)
        if ok:
            return Outcome(write, journal.RESTORED, wanted, reason, replaced=expected)
        values = [c["value"] for c in current]
        if [c.get("value") for c in wanted] == values:
            return Outcome(write, journal.UNCHANGED, None, "already holds the old value")
        return Outcome(write, journal.CONFLICT, None, f"changed since the run (now {_describe_values(values)}): left as is")
    ok, current = redis_cas(env.redis, expected, wanted)
    if ok:
        return Outcome(write, journal.APPLIED, wanted, replaced=expected)
    return Outcome(write, journal.CONFLICT, None, f"changed since the plan (now {_describe_values([c['value'] for c in current])}): left as is")


def _describe_values(values: Sequence[str | None]) -> str:
    return ", ".join("absent" if v is None else repr(v) for v in values)


# ---------------------------------------------------------------------------------------------
# Putting it together (read side): scan, snapshot, plan, and the ledger context apply needs


@dataclass
class Prepared:
    plan: Plan
    result: ScanResult
    ledger: Ledger


def prepare(conn: Connection, caps: Capabilities, loaded_config, scan_options, client, *, litellm_version: str | None,
            targets: Iterable[str], remove_miskeyed: bool, wall_now: datetime, source: Mapping | None = None) -> Prepared:
    """Run the scan (read-only, on `conn`), read the values the plan would touch, and plan."""
    from auditor.ledger.redis_store import read_counters
    from auditor.litellm.resolver import Resolver
    from auditor.audit.entities import entity_budgets
    from auditor.audit.scan import load_catalogue, run_scan

    from auditor.ledger.capabilities import detect_deployment_era

    targets = frozenset(targets)
    found = detect_deployment_era(conn, caps, litellm_version, client=client)
    layout = layout_of(found, litellm_version)
    scan_options = replace(scan_options, era=found.era.name)  # judged by the release that wrote the counters
    key_rows = budget_holders.keys(conn, caps)
    catalogue = load_catalogue(conn, caps, loaded_config, key_rows)
    result = run_scan(conn, caps, catalogue, scan_options,
                      redis_counters=(lambda: read_counters(client)) if client is not None else None,
                      source=source, key_rows=key_rows)
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
        resolution = resolver(name, "", "")
        return resolution.group if resolution.status == "resolved" else None

    planned = plan(result, snapshot, PlanOptions(wall_now=wall_now, layout=layout, targets=targets,
                                                 remove_miskeyed=remove_miskeyed, canonical=canonical))
    budgets = {(b.scope, b.entity_id): b for b in map(entity_budgets, budget_holders.holders(conn, caps, key_rows, scan_options.default_end_user_budget))}
    return Prepared(planned, result, Ledger(caps, budgets, catalogue, scan_options.window_slack))
