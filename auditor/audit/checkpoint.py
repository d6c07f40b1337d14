"""Incremental reports: the scan's state at a cut, stored after each report run, and when it may be reused.

A report run (`auditor report`, full or `--incremental`) stores a checkpoint: the scan's state at the cut
C = min(W, now - settle) - lookback, where W is the newest "startTime" in scope (the watermark). The next
`report --incremental` loads it and reads only the rows R(C): "endTime" at or after C, and "startTime" at or after
C minus windows.DEFAULT_LOOKBACK (one day), which lets the "startTime" indexes serve the read (queries.SpendFilter
.ended_from). Every part of the state holds exactly the rows outside R(C), so the result is the checkpoint plus R(C)
and the next checkpoint the old one plus the rows of R(C) outside R(C').

The cut is on "endTime" because LiteLLM charges a request when it ends: windows are replayed in "endTime" order, and
the state is frozen per (entity, entry) just before the first charge at or after C. What the state holds:

- the ledger's grouped totals (`spend_groups`: rows and spend per key, logged model and outcome, and the charged
  cells at entity grain for the spend lines of every scope) outside R(C), and
  the jobs (api_key, job id) first paid outside it, so later polls of them stay repeats;
- per budgeted (scope, entity): every budget entry's closed windows, its WindowTracker state (windows.TrackerState:
  the open window, the last charge, the limit's step function) and the model groups it charged; per scope the jobs
  the charge stream has already paid;
- per counter (source, key, window start) whose window reaches before C: the ledger's sum of its charges before C
  (counters themselves are read live every run);
- per entity and scalar period (its current budget period, or lifetime for spend without budget_duration and for
  total_spend) that started before C: its charged spend and rows outside R(C). A period that rolled over since (a
  new budget_reset_at) is read whole: it started recently;
- per Daily*Spend table and whole day ending at least a day before C (none of its rows in R(C)): a digest of the
  rollup rows of that day and the ledger's totals of the (key, model, provider) rows that disagree with them. A
  day whose rollup rows still have that digest gives the same findings; one whose rollup rows changed is re-read;
- the report's spend cells (spend_ledger.MoneyCells: per key and logged model, per local day and logged model) outside
  R(C), unless the ledger has paid job polls: which of them repeat is decided over the whole ledger, so then the
  cells are read whole every run.

It grows with entities x windows, groups, jobs and days, not with rows. What it assumes: no request runs longer
than a day (as the window replay does), and no row is written after a run with an "endTime" before its cut (the
cut is `--lookback` before the watermark for that): such a late row is missed by incremental runs and picked up
by the next full one.

A checkpoint is reused only when nothing it depends on changed (`fingerprint`, `why_not`): otherwise the run is
full, and says why. Pure: no I/O; the scan fills and reads it (scan.run_scan), the history stores it.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import astuple, dataclass, field
from datetime import datetime, timedelta

from auditor import __version__
from auditor.audit.findings import iso
from auditor.audit.spend_ledger import MoneyCells
from auditor.audit.windows import TrackerState, Window, WindowTracker
from auditor.ledger.daily_rollups import DayTotals, RollupKey
from auditor.ledger.db import json_value  # model_max_budget: text on SQLite, decoded on PostgreSQL; hashed alike
from auditor.ledger.queries import SpendGroup
from auditor.ledger.spend_queries import Cell
from auditor.money import merge_totals

# 2: junk spend is its own ignored outcome. 3: amounts are sums of whole nano-dollars (auditor.money), so a float sum
# stored by an older auditor would not add up exactly. 4: the charged cells at entity grain, so a resumed run's spend
# lines and alias bypasses need no read of the whole ledger. 5: rollup day digests over
# whole nano-dollars, computed by PostgreSQL. 6: the report's money cells, the zone in the fingerprint, and day digests
# summed over rollup rows (no sort). Bump when State or its encoding changes: older checkpoints are then not reused
FORMAT = 6
DEFAULT_LOOKBACK = timedelta(hours=1)  # --lookback: how late a row may be written and still be read

FULL, INCREMENTAL = "full", "incremental"


@dataclass
class EntityState:
    """One budgeted entity's windows at the cut, per budget entry name."""

    trackers: dict[str, TrackerState]
    closed: dict[str, list[Window]] = field(default_factory=dict)
    groups: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of(
        cls, trackers: Mapping[str, WindowTracker], closed: Mapping[str, list[Window]], seen: Mapping[str, set[str]]
    ) -> EntityState:
        """A copy, so the scan may go on appending to its own lists."""
        return cls(
            {name: t.state() for name, t in trackers.items()},
            {name: list(ws) for name, ws in closed.items() if ws},
            {name: set(gs) for name, gs in seen.items() if gs},
        )


@dataclass(frozen=True)
class RollupDay:
    digest: str  # of the Daily*Spend rows of the day (daily_rollups.rollup_day_digests)
    differing: dict[RollupKey, DayTotals | None]  # the ledger's totals of the rows that disagree (None: none logged)


CounterId = tuple[str, str, datetime]  # (source, counter key, window start)


@dataclass
class State:
    cut: datetime
    watermark: datetime | None  # the newest "startTime" in scope when it was cut
    oldest: datetime | None  # the oldest "startTime" in scope
    table_oldest: datetime | None  # the oldest "startTime" of the whole table (where the rollups' first day comes from)
    groups: list[SpendGroup] = field(default_factory=list)
    cells: list[tuple] = field(default_factory=list)  # charged rows at entity grain (spend_groups' charged_by_entity)
    jobs: set[tuple[str, str]] = field(default_factory=set)
    stream_jobs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # scope -> jobs its stream paid
    entities: dict[tuple[str, str], EntityState] = field(default_factory=dict)  # (scope, entity id) ->
    counters: dict[CounterId, float] = field(default_factory=dict)
    periods: dict[tuple[str, object, datetime], tuple[float, int]] = field(
        default_factory=dict
    )  # (scope, entity, period start) ->
    rollups: dict[str, dict[str, RollupDay]] = field(default_factory=dict)  # table -> day -> RollupDay
    money: MoneyCells | None = None  # the report's spend cells; None when the ledger has paid job polls (read whole)


# --------------------------------------------------------------------------------------------------
# Merging


def merge_groups(
    base: Iterable[SpendGroup], plus: Iterable[SpendGroup] = (), minus: Iterable[SpendGroup] = ()
) -> list[SpendGroup]:
    """Grouped ledger totals added and taken away per (key, model triple, outcome); groups left with no row go.
    Spend is added in whole nano-dollars (auditor.money), as the query sums it: merged, it is what one query gives."""

    def cells(groups: Iterable[SpendGroup]) -> Iterable[tuple]:
        return ((g.api_key, g.model, g.model_group, g.model_id, g.outcome, g.spend, g.requests) for g in groups)

    return [SpendGroup(*cell) for cell in merge_totals(cells(base), cells(plus), cells(minus))]


def counter_id(counter) -> CounterId:
    return (counter.source, counter.key.key, counter.window_start)


# --------------------------------------------------------------------------------------------------
# What a checkpoint depends on


def fingerprint(options, selected: tuple[str, ...] | None, caps, catalogue, holders) -> dict[str, object]:
    """Everything that shapes the state besides the rows: the options that select or judge them, the budgets,
    what the resolver reads, LiteLLM's schema and auditor itself. Plain JSON values, hashed where large."""
    return {
        "format": FORMAT,
        "auditor": __version__,
        "since": _iso(options.since),
        "until": _iso(options.until),
        "keys": sorted(selected) if selected is not None else None,
        "window_slack": options.window_slack.total_seconds(),
        "settle": options.settle.total_seconds(),
        "tolerance": options.tolerance,
        "retention": options.retention,
        "era": options.era,
        "timezone": options.timezone,
        "budgets": _digest(
            sorted(
                json.dumps([h.scope, h.entity_id, json_value(h.model_max_budget)], sort_keys=True, default=str) for h in holders
            )
        ),
        "catalogue": _digest(
            [
                [list(astuple(d)) for d in catalogue.deployments],
                sorted(catalogue.group_aliases.items()),
                sorted(catalogue.hidden_aliases),
                sorted(catalogue.key_aliases.items()),
                catalogue.has_config,
            ]
        ),
        "schema": _digest([caps.dialect, sorted([table, sorted(columns)] for table, columns in caps.columns.items())]),
    }


_WHY = {
    "format": "the checkpoint was stored in format {old}; this auditor reads format {new}",
    "auditor": "the checkpoint was written by auditor {old}; this is auditor {new}",
    "since": "--since changed since the checkpoint ({old} -> {new}; an age like 30d moves with every run)",
    "until": "--until changed since the checkpoint ({old} -> {new}; an age like 1d moves with every run)",
    "keys": "--key changed since the checkpoint",
    "window_slack": "--window-slack changed since the checkpoint ({old} s -> {new} s)",
    "settle": "--settle changed since the checkpoint ({old} s -> {new} s)",
    "tolerance": "--tolerance changed since the checkpoint ({old} -> {new})",
    "retention": "the config's spend-log retention changed since the checkpoint ({old} -> {new})",
    "era": "the LiteLLM era judged by changed since the checkpoint ({old} -> {new}: an upgrade, or --litellm-version)",
    "timezone": "the zone of budget resets and report days changed since the checkpoint ({old} -> {new})",
    "budgets": "budgets changed since the checkpoint (a model_max_budget was edited, or an entity added or removed)",
    "catalogue": "the LiteLLM config or model table changed since the checkpoint",
    "schema": "LiteLLM's tables changed since the checkpoint (an upgrade?)",
}


def why_not(stored: Mapping[str, object], current: Mapping[str, object]) -> str | None:
    """The first thing that differs, as one line; None when the checkpoint may be reused."""
    for name, template in _WHY.items():
        old, new = stored.get(name), current.get(name)
        if old != new:
            return template.format(old="none" if old is None else old, new="none" if new is None else new)
    return None


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Encoding: JSON (times as ISO 8601, floats exactly as repr writes them), zlib-compressed


def encode(state: State) -> bytes:
    doc = {
        "cut": _iso(state.cut),
        "watermark": _iso(state.watermark),
        "oldest": _iso(state.oldest),
        "table_oldest": _iso(state.table_oldest),
        "groups": [[g.api_key, g.model, g.model_group, g.model_id, g.outcome, g.spend, g.requests] for g in state.groups],
        "cells": [list(c) for c in state.cells],
        "jobs": sorted(map(list, state.jobs)),
        "stream_jobs": {scope: sorted(map(list, jobs)) for scope, jobs in state.stream_jobs.items()},
        "entities": [[scope, entity, _entity_doc(e)] for (scope, entity), e in state.entities.items()],
        "counters": [[source, key, _iso(start), value] for (source, key, start), value in state.counters.items()],
        "periods": [
            [scope, list(e) if isinstance(e, tuple) else e, _iso(start), spend, rows]
            for (scope, e, start), (spend, rows) in state.periods.items()
        ],
        "rollups": {
            table: {
                day: [r.digest, [[*k, None if t is None else list(astuple(t))] for k, t in r.differing.items()]]
                for day, r in days.items()
            }
            for table, days in state.rollups.items()
        },
        "money": None
        if state.money is None
        else [[_cell_doc(c) for c in state.money.by_key], [_cell_doc(c) for c in state.money.by_day]],
    }
    # level 1: a third of level 6's time (0.9 s -> 0.3 s for 16 MB of cells) for a blob 5% larger
    return zlib.compress(json.dumps(doc, separators=(",", ":")).encode("utf-8"), 1)


def decode(blob: bytes) -> State:
    doc = json.loads(zlib.decompress(blob).decode("utf-8"))
    return State(
        cut=_time(doc["cut"]),
        watermark=_time(doc["watermark"]),
        oldest=_time(doc["oldest"]),
        table_oldest=_time(doc["table_oldest"]),
        groups=[SpendGroup(*g) for g in doc["groups"]],
        cells=[tuple(c) for c in doc["cells"]],
        jobs={tuple(j) for j in doc["jobs"]},
        stream_jobs={scope: {tuple(j) for j in jobs} for scope, jobs in doc["stream_jobs"].items()},
        entities={(scope, entity): _entity(e) for scope, entity, e in doc["entities"]},
        counters={(source, key, _time(start)): value for source, key, start, value in doc["counters"]},
        periods={
            (scope, tuple(e) if isinstance(e, list) else e, _time(start)): (spend, rows)
            for scope, e, start, spend, rows in doc["periods"]
        },
        rollups={
            table: {
                day: RollupDay(digest, {tuple(k[:4]): None if k[4] is None else DayTotals(*k[4]) for k in differing})
                for day, (digest, differing) in days.items()
            }
            for table, days in doc["rollups"].items()
        },
        money=None if doc["money"] is None else MoneyCells(*([_cell(c) for c in cells] for cells in doc["money"])),
    )


def _cell_doc(cell: Cell) -> list:
    return [list(cell.entity), *cell[1:]]


def _cell(doc: list) -> Cell:
    return Cell(tuple(doc[0]), *doc[1:])


def _entity_doc(e: EntityState) -> dict:
    return {
        "trackers": {
            name: [_window_doc(t.open) if t.open else None, _iso(t.last_end), t.floor, [[_iso(at), v] for at, v in t.changes]]
            for name, t in e.trackers.items()
        },
        "closed": {name: [_window_doc(w) for w in ws] for name, ws in e.closed.items()},
        "groups": {name: sorted(gs) for name, gs in e.groups.items()},
    }


def _entity(doc: dict) -> EntityState:
    return EntityState(
        {
            name: TrackerState(_window(w) if w else None, _time(last), floor, tuple((_time(at), v) for at, v in changes))
            for name, (w, last, floor, changes) in doc["trackers"].items()
        },
        {name: [_window(w) for w in ws] for name, ws in doc["closed"].items()},
        {name: set(gs) for name, gs in doc["groups"].items()},
    )


def _window_doc(w: Window) -> list:
    return [_iso(w.start), _iso(w.end), w.spend, w.requests, w.requests_after_limit, w.spend_after_limit]


def _window(doc: list) -> Window:
    return Window(_time(doc[0]), _time(doc[1]), *doc[2:])


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# --------------------------------------------------------------------------------------------------
# A report run's request to the scan, and what the scan did with it


@dataclass(frozen=True)
class Stored:
    """A checkpoint as the history holds it (the state still encoded: decoded only once it may be reused)."""

    run_id: str
    watermark: datetime | None
    cut: datetime
    fingerprint: dict
    format: int
    state: bytes


@dataclass
class Increment:
    """What a report run asks of scan.run_scan besides a scan: resume from `previous` when `requested` (and nothing
    it depends on changed), cut a new checkpoint in any case, and read the report's spend cells (`money`: where
    the money went). run_scan fills in the rest."""

    lookback: timedelta = DEFAULT_LOOKBACK
    requested: bool = False
    previous: Stored | None = None
    mode: str = FULL
    fallback: str | None = None  # why a requested incremental run read everything
    watermark: datetime | None = None
    cut: datetime | None = None
    rows_read: int = 0
    fingerprint: dict = field(default_factory=dict)
    state: State | None = None  # the new checkpoint
    money: MoneyCells | None = None  # the report's spend cells of the whole range (read or resumed)
    not_stored: str | None = None  # why this run keeps none

    def record(self) -> dict:
        """The report's `run.incremental`."""
        resumed = self.mode == INCREMENTAL and self.previous is not None
        return {
            "mode": self.mode,
            "requested": self.requested,
            "lookback_s": self.lookback.total_seconds(),
            "watermark": iso(self.watermark),
            "cut": iso(self.cut),
            "checkpoint_run": self.previous.run_id if resumed else None,
            "checkpoint_cut": iso(self.previous.cut) if resumed else None,
            "rows_read": self.rows_read,
            "fallback": self.fallback,
            "checkpoint_stored": self.state is not None,
            "not_stored": self.not_stored,
        }
