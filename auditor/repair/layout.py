"""Which counter layout the running proxy reads, as backfill writes it: its LiteLLM era (auditor.litellm.eras) in the
terms of the writes (entry-keyed counters, alias-keyed counters with one start key per entity, or worker memory).
Pure: the era is detected elsewhere (auditor.ledger.capabilities.detect_deployment_era) and passed in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from auditor.errors import InputError
from auditor.litellm.eras import MEMORY, PER_ENTRY, Detection, detect_era

ENTRY_LAYOUT, ALIAS_LAYOUT, MEMORY_LAYOUT = "entry", "alias", "memory"


class SchemaMarkers(Protocol):
    """What layout_for needs of auditor.ledger.capabilities.Capabilities (named here so this module stays pure)."""

    def version_range(self) -> tuple[str | None, str | None]: ...


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

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def layout_for(explicit: str | None, caps: SchemaMarkers | None, shapes: Iterable[str] = ()) -> Layout:
    """--litellm-version when given, else what the schema markers and the counter key shapes suggest (eras.detect_era)."""
    return layout_of(
        detect_era(caps.version_range() if caps is not None else (None, None), frozenset(shapes), explicit), explicit
    )


def layout_of(found: Detection, explicit: str | None) -> Layout:
    """The layout backfill writes for a detected era (auditor.litellm.eras.Detection)."""
    era = found.era
    note = None if found.certain else found.evidence[-1]
    if era.storage == MEMORY:
        if explicit:
            raise InputError(
                f"LiteLLM {explicit} keeps per-model counters in each worker's memory (no Redis, no table): "
                "there is nothing backfill can write for it"
            )
        name, note = (
            MEMORY_LAYOUT,
            (
                f"LiteLLM {found.version} ({era.name}) keeps per-model counters in each worker's memory: "
                "no counter can be written; pass --litellm-version if it runs a later release"
            ),
        )
    else:
        name = ENTRY_LAYOUT if era.start_keys == PER_ENTRY else ALIAS_LAYOUT
    return Layout(name, found.version, found.origin, era.shares_through_table, note, era.name)
