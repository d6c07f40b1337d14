"""Which LiteLLM release wrote the counters, and how that release kept them: one table of eras, and detection.

Each era is a range of releases whose per-model budget limiter names, stores, windows and compares its counters
the same way (proxy/hooks/model_max_budget_limiter.py, router_strategy/budget_limiter.py and the cache the proxy
gives the limiter in proxy/proxy_server.py, read release by release; ../shared/litellm/semantics.md (b)). A scan
judges a deployment by the era it ran, not by the latest one: the 1.83.7 leak and a 1.90 key's shared windows
only make sense in their own era.

Pure: no database, Redis or CLI here. `detect_era` takes what the caller read (schema range, counter key names).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from auditor.errors import InputError

Version = tuple[int, int, int]

# Which name a counter is stored under.
DEPLOYMENT: Final = "deployment"  # the logged model, i.e. the deployment string (StandardLoggingPayload.model)
REQUESTED: Final = "requested"  # the model as requested (the model group for routed traffic)
ENTRY: Final = "entry"  # the budget entry as configured (`claude-opus-4*`)

# Where the start of a window is kept.
PER_ENTITY: Final = "entity"  # one start key per key / end user, shared by all its counters (issue #33326)
PER_ENTRY: Final = "entry"  # one start key per counter

# Where counters live, and which copy enforcement reads.
MEMORY: Final = "memory"  # each worker's memory only: Redis holds none
MEMORY_FIRST: Final = "memory-first"  # memory, copied to Redis only with enable_redis_auth_cache; memory read first
REDIS_FIRST: Final = "redis-first"  # spend_counter_cache: Redis whenever the proxy has one, read first

# Which budget entry a request falls under.
EXACT_OR_LAST_SEGMENT: Final = "exact or last segment"  # `openai/gpt-4o` -> entry `openai/gpt-4o`, else `gpt-4o`
CANDIDATES: Final = "candidates"  # 1.99+: resolve_model_budget's candidate names (no globs, no access groups)
CANDIDATES_GLOBS: Final = "candidates, access groups and globs"  # 1.109+

SCOPE_SINCE: Final[dict[str, Version]] = {  # the first release whose limiter has the scope
    "key": (1, 55, 0),
    "end_user": (1, 82, 0),
    "user": (1, 99, 0),
    "team": (1, 103, 0),
    "team_member": (1, 108, 0),
}


@dataclass(frozen=True)
class Era:
    """How one range of LiteLLM releases kept per-model budget counters."""

    name: str
    first: Version
    until: Version | None  # the first release after it
    written: str  # the name the success hook charges: DEPLOYMENT, REQUESTED or ENTRY
    read: str  # the name the pre-call check reads: REQUESTED (then its last `/` segment) or ENTRY
    start_keys: str  # PER_ENTITY or PER_ENTRY
    storage: str  # MEMORY, MEMORY_FIRST or REDIS_FIRST
    matching: str  # how a model finds its entry
    strict: bool  # True: blocks when spend > cap, and a cap of 0 means unlimited; False: spend >= cap, 0 blocks
    charged_duration: str | None = None  # the duration the write path hard-codes ("1d" before 1.82), else the entry's
    shares_through_table: bool = False  # 1.109+: replicas without Redis share windows through LiteLLM_BudgetWindowSpend
    legacy_carry: bool = False  # 1.99+: key and end-user checks add the requested-model counter of an upgrade
    note: str = ""

    def contains(self, version: Version) -> bool:
        return self.first <= version and (self.until is None or version < self.until)

    @property
    def counters_auditable(self) -> bool:
        """Whether any counter it keeps can be seen from outside the proxy's workers."""
        return self.storage != MEMORY

    def scopes(self, version: Version | None = None) -> tuple[str, ...]:
        """The scopes its limiter enforces (at `version`, else at the era's first release)."""
        at = version or self.first
        return tuple(scope for scope, since in SCOPE_SINCE.items() if since <= at)

    def enforced(self, limit: float | None) -> bool:
        """Whether an entry with this cap enforces anything at all."""
        if limit is None or limit != limit:
            return False
        return limit > 0 if self.strict else limit >= 0

    def blocks(self, spend: float, limit: float | None) -> bool:
        """The pre-call comparison: does a counter at `spend` refuse the next request?"""
        if not self.enforced(limit):
            return False
        return spend > limit if self.strict else spend >= limit  # type: ignore[operator]  # enforced: a number

    def read_names(self, requested: str, entry: str) -> tuple[str, ...]:
        """The counter names the pre-call check reads, in order, for a request of `requested` under `entry`."""
        if self.read == ENTRY:
            return (entry,) if not self.legacy_carry or requested == entry else (entry, requested)
        last = requested.rsplit("/", 1)[-1]
        return (requested,) if last == requested else (requested, last)

    def layout(self) -> str:
        """The counter layout in words, as `doctor` prints it."""
        named = {DEPLOYMENT: "the logged deployment (e.g. openai/gpt-4o)", REQUESTED: "requested model", ENTRY: "budget entry"}[
            self.written
        ]
        if self.written != self.read:
            named += f", read under the {'requested model' if self.read == REQUESTED else 'budget entry'}"
        starts = (
            "one start key per key (shared by all its models)" if self.start_keys == PER_ENTITY else "one start key per counter"
        )
        where = {
            MEMORY: "in worker memory: Redis holds none; only the ledger can be audited",
            MEMORY_FIRST: "in worker memory, copied to Redis only with enable_redis_auth_cache and read from memory first",
            REDIS_FIRST: "in Redis when the proxy has one, read from Redis first"
            + ("; without Redis, replicas share windows through LiteLLM_BudgetWindowSpend" if self.shares_through_table else ""),
        }[self.storage]
        compare = "blocks at spend > cap, a cap of 0 is unlimited" if self.strict else "blocks at spend >= cap, a cap of 0 blocks"
        duration = f"; written under a hard-coded {self.charged_duration}" if self.charged_duration else ""
        return f"counters keyed by {named}{duration}, {starts}, {where}; {compare}"


ERAS: Final[tuple[Era, ...]] = (
    Era(
        "<=1.80",
        (0, 0, 0),
        (1, 81, 0),
        DEPLOYMENT,
        REQUESTED,
        PER_ENTITY,
        MEMORY,
        EXACT_OR_LAST_SEGMENT,
        strict=True,
        charged_duration="1d",
        note="written under the deployment name without its provider and a hard-coded 1d; read under the requested "
        "model and the entry's duration: a budget is enforced only for a 1d entry on a deployment named like its model",
    ),
    Era(
        "1.81",
        (1, 81, 0),
        (1, 82, 0),
        DEPLOYMENT,
        REQUESTED,
        PER_ENTITY,
        MEMORY,
        EXACT_OR_LAST_SEGMENT,
        strict=True,
        charged_duration="1d",
        note="as <=1.80, but the logged model gains its provider prefix (openai/gpt-4o): the written counter is never the one read",
    ),
    Era(
        "1.82-1.83.7",
        (1, 82, 0),
        (1, 83, 8),
        DEPLOYMENT,
        REQUESTED,
        PER_ENTITY,
        MEMORY,
        EXACT_OR_LAST_SEGMENT,
        strict=True,
        note="LiteLLM PR #25549's bug: charged under the deployment string (openai/gpt-4o), checked under the requested "
        "model (gpt-4o): budgets on routed models are never enforced",
    ),
    Era(
        "1.83.8-1.83.14",
        (1, 83, 8),
        (1, 84, 0),
        REQUESTED,
        REQUESTED,
        PER_ENTITY,
        MEMORY,
        EXACT_OR_LAST_SEGMENT,
        strict=True,
        note="PR #25549's fix: charged and checked under the requested model group; same schema as 1.82-1.83.7",
    ),
    Era(
        "1.84-1.98",
        (1, 84, 0),
        (1, 99, 0),
        REQUESTED,
        REQUESTED,
        PER_ENTITY,
        MEMORY_FIRST,
        EXACT_OR_LAST_SEGMENT,
        strict=True,
        note="Redis only with litellm_settings.enable_redis_auth_cache (1.84.0 copies window starts and resets only; "
        "increments are pushed after each success from 1.85 at the latest); each worker reads its own memory first, "
        "so Redis may disagree with what a pod enforced (issue #33325)",
    ),
    Era(
        "1.99-1.100",
        (1, 99, 0),
        (1, 101, 0),
        ENTRY,
        ENTRY,
        PER_ENTRY,
        MEMORY_FIRST,
        CANDIDATES,
        strict=False,
        legacy_carry=True,
        note="counters keyed on the configured entry with their own start key (PR #37736); Redis still only with "
        "enable_redis_auth_cache, memory read first",
    ),
    Era(
        "1.101-1.108",
        (1, 101, 0),
        (1, 109, 0),
        ENTRY,
        ENTRY,
        PER_ENTRY,
        REDIS_FIRST,
        CANDIDATES,
        strict=False,
        legacy_carry=True,
        note="the limiter moves to spend_counter_cache (Redis whenever the proxy has one) and reads Redis first from 1.101.0; "
        "team scope from 1.103, team members from 1.108",
    ),
    Era(
        "1.109+",
        (1, 109, 0),
        None,
        ENTRY,
        ENTRY,
        PER_ENTRY,
        REDIS_FIRST,
        CANDIDATES_GLOBS,
        strict=False,
        legacy_carry=True,
        shares_through_table=True,
        note="access-group and glob entries; replicas without Redis share windows through LiteLLM_BudgetWindowSpend "
        "(end users excepted)",
    ),
)

_VERSION: Final = re.compile(r"v?([0-9]{1,4})(?:\.([0-9]{1,4}))?(?:\.([0-9]{1,4}))?")


def parse_version(text: str) -> Version:
    """`1.83.7`, `v1.90`, `1.110` (a missing part is 0). Anything else is a usage error."""
    found = _VERSION.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise InputError(f"--litellm-version {text!r} is not a version: use MAJOR.MINOR.PATCH such as 1.83.7")
    return tuple(int(part) if part else 0 for part in found.groups())  # type: ignore[return-value]


def show_version(version: Version) -> str:
    return ".".join(map(str, version))


def era_of(version: Version) -> Era:
    return next(era for era in ERAS if era.contains(version))


def era_named(name: str) -> Era:
    return next(era for era in ERAS if era.name == name)


# ---------------------------------------------------------------------------------------------
# Evidence in counter key names (Redis keys, LiteLLM_BudgetWindowSpend entity ids)

ENTITY_START_KEYS: Final = "entity start keys"
ENTRY_START_KEYS: Final = "entry start keys"
REDIS_COUNTERS: Final = "redis counters"
USER_COUNTERS: Final = "user counters"
TEAM_COUNTERS: Final = "team counters"
TEAM_MEMBER_COUNTERS: Final = "team member counters"
BATCH_MARKERS: Final = "batch markers"
TABLE_WINDOWS: Final = "table windows"

# What each shape says about the version: (at least, below), and the words for it.
SHAPE_BOUNDS: Final[dict[str, tuple[Version | None, Version | None, str]]] = {
    ENTITY_START_KEYS: (
        (1, 84, 0),
        (1, 99, 0),
        "one start key per key in Redis (virtual_key_budget_start_time:{hash}): 1.84-1.98",
    ),
    ENTRY_START_KEYS: (
        (1, 99, 0),
        None,
        "a start key per counter (virtual_key_budget_start_time:{hash}:{entry}:{duration}): 1.99+",
    ),
    REDIS_COUNTERS: ((1, 84, 0), None, "per-model counters in Redis: 1.84+ (earlier limiters never had Redis)"),
    USER_COUNTERS: ((1, 99, 0), None, "user_model_spend counters: 1.99+"),
    TEAM_COUNTERS: ((1, 103, 0), None, "team_model_spend counters: 1.103+"),
    TEAM_MEMBER_COUNTERS: ((1, 108, 0), None, "team_member_model_spend counters: 1.108+"),
    BATCH_MARKERS: ((1, 105, 0), None, "batch dedupe markers ({counter}:batch:{id}): 1.105+"),
    TABLE_WINDOWS: ((1, 109, 0), None, "model_max_budget rows in LiteLLM_BudgetWindowSpend: 1.109+"),
}

_HEX_HASH: Final = re.compile(r"[0-9a-f]{64}")


def counter_shapes(redis_keys: Iterable[str] = (), table_entity_ids: Iterable[str] = ()) -> frozenset[str]:
    """The shapes of the limiter's keys seen in Redis and in LiteLLM_BudgetWindowSpend (entity_type model_max_budget)."""
    shapes: set[str] = set()
    for key in redis_keys:
        prefix, _, rest = key.partition(":")
        if prefix == "virtual_key_budget_start_time":
            entity, _, tail = rest.partition(":")
            if _HEX_HASH.fullmatch(entity):  # a key hash never holds ':'; other scopes' ids may
                shapes.add(ENTRY_START_KEYS if tail else ENTITY_START_KEYS)
        elif prefix.endswith("_model_spend") or prefix == "virtual_key_spend":
            shapes.add(BATCH_MARKERS if ":batch:" in rest else REDIS_COUNTERS)
            shapes |= _scope_shape(prefix)
    for entity_id in table_entity_ids:
        shapes.add(TABLE_WINDOWS)
        shapes |= _scope_shape(entity_id.partition(":")[0])
    return frozenset(shapes)


def _scope_shape(prefix: str) -> set[str]:
    return {
        "user_model_spend": {USER_COUNTERS},
        "team_model_spend": {TEAM_COUNTERS},
        "team_member_model_spend": {TEAM_MEMBER_COUNTERS},
    }.get(prefix, set())


# ---------------------------------------------------------------------------------------------
# Detection


@dataclass(frozen=True)
class Detection:
    """The era a scan assumes, and why."""

    era: Era
    version: str  # what the choice rests on, for humans: "1.90.7", ">= 1.84, < 1.99"
    origin: str  # "--litellm-version", "counter keys", "schema markers", "schema markers and counter keys", "nothing"
    certain: bool  # False: more than one era fits the evidence and this one was assumed
    evidence: tuple[str, ...] = field(default=())

    @property
    def disputed(self) -> bool:
        """--litellm-version contradicts the schema or the counter keys."""
        return any(line.startswith("but ") for line in self.evidence)

    @property
    def why(self) -> str:
        return "; ".join(self.evidence)

    def as_record(self) -> dict[str, Any]:
        return {
            "era": self.era.name,
            "version": self.version,
            "origin": self.origin,
            "certain": self.certain,
            "layout": self.era.layout(),
            "evidence": list(self.evidence),
        }


def detect_era(
    schema_range: tuple[str | None, str | None] = (None, None),
    shapes: Collection[str] = (),
    explicit: str | None = None,
    *,
    schema_words: str | None = None,
) -> Detection:
    """The era from --litellm-version when given, else from the schema markers (Capabilities.version_range) narrowed
    by the counter key shapes seen (counter_shapes). The schema wins a conflict with the keys (a column is where
    LiteLLM's own migrations put it; keys may have been copied or left behind), and among the keys the newest wins
    (keys an older release left behind expire with their window)."""
    schema_low = parse_version(schema_range[0]) if schema_range[0] else None
    schema_high = parse_version(schema_range[1]) if schema_range[1] else None
    schema_text = schema_words or _range_text(schema_low, schema_high, "from schema markers")
    known = sorted(s for s in shapes if s in SHAPE_BOUNDS)
    shape_words = [SHAPE_BOUNDS[s][2] for s in known]
    if explicit:
        version = parse_version(explicit)
        era = era_of(version)
        evidence = [f"--litellm-version {explicit.strip()}: {era.name}"]
        disagree = _disagreements(version, schema_low, schema_high, shapes)
        evidence += [f"but {d}" for d in disagree]
        if version[:2] == (1, 83) and explicit.strip().count(".") < 2:
            evidence.append("1.83 without a patch release: 1.83.0-1.83.7 have the #25549 bug, 1.83.8+ the fix; assumed 1.83.0")
        return Detection(era, explicit.strip(), "--litellm-version", True, tuple(evidence))

    evidence = [f"schema: {schema_text}"]
    agreeing = []
    for shape in known:
        at_least, below, words = SHAPE_BOUNDS[shape]
        if (at_least is not None and schema_high is not None and at_least >= schema_high) or (
            below is not None and schema_low is not None and below <= schema_low
        ):
            evidence.append(f"keys: {words}; the schema says otherwise, so they are not from the release that runs it")
        else:
            agreeing.append(shape)
            evidence.append(f"keys: {words}")
    lows = [v for v in (schema_low,) if v] + [v for s in agreeing if (v := SHAPE_BOUNDS[s][0])]
    highs = [v for v in (schema_high,) if v] + [v for s in agreeing if (v := SHAPE_BOUNDS[s][1])]
    low = max(lows) if lows else None
    dropped = [h for h in highs if low is not None and h <= low]
    if dropped:
        evidence.append("older key shapes too: left by a release before an upgrade (they expire with their window)")
    kept = [h for h in highs if h not in dropped]
    high = min(kept) if kept else None
    candidates = fits = [era for era in ERAS if _overlaps(era, low, high)]
    if len(candidates) > 1 and era_named("1.84-1.98") in candidates:
        # 1.99 and 1.100 have no schema marker of their own and lived two minor releases: a 1.84+ schema without
        # LiteLLM_BudgetWindowSpend is taken as 1.84-1.98 unless entry start keys say otherwise.
        candidates = [era for era in candidates if era.name != "1.99-1.100"]
    era = candidates[-1]
    origin = (
        "schema markers and counter keys"
        if shape_words and (schema_low or schema_high)
        else "counter keys"
        if shape_words
        else "schema markers"
        if (schema_low or schema_high)
        else "nothing"
    )
    certain = len(fits) == 1
    if not certain:
        others = ", ".join(e.name for e in fits if e != era)
        evidence.append(f"assumed {era.name}, the latest that fits ({others} fit too): pass --litellm-version to say which")
    if era.name == "1.83.8-1.83.14":
        evidence.append(
            "1.82-1.83.7 (the #25549 bug) and 1.83.8-1.83.14 have the same schema and keep counters in memory: "
            "only --litellm-version tells them apart"
        )
    return Detection(era, _range_text(low, high, ""), origin, certain, tuple(evidence))


def _overlaps(era: Era, low: Version | None, high: Version | None) -> bool:
    starts_before_high = high is None or era.first < high
    ends_after_low = low is None or era.until is None or era.until > low
    return starts_before_high and ends_after_low


def _range_text(low: Version | None, high: Version | None, suffix: str) -> str:
    parts = ([f">= {_short(low)}"] if low else []) + ([f"< {_short(high)}"] if high else [])
    text = ", ".join(parts) or "unknown"
    return f"{text} ({suffix})" if suffix and parts else text


def _short(version: Version) -> str:
    return show_version(version[:2] if version[2] == 0 else version)  # type: ignore[arg-type]


def _disagreements(version: Version, low: Version | None, high: Version | None, shapes: Collection[str]) -> list[str]:
    found = []
    if low is not None and version < low:
        found.append(f"the schema has markers of {_short(low)}+")
    if high is not None and version >= high:
        found.append(f"the schema lacks a marker of {_short(high)}")
    for shape in sorted(shapes):
        at_least, below, words = SHAPE_BOUNDS.get(shape, (None, None, ""))
        if (at_least is not None and version < at_least) or (below is not None and version >= below):
            found.append(f"the counter keys show {words}")
    return found
