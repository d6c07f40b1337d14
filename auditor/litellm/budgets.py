"""`model_max_budget` entries as LiteLLM's limiter reads them, and the problems it silently ignores.

Follows LiteLLM 1.99+ `proxy/hooks/model_max_budget_limiter.py::_usable_budget_config`: an entry is
usable when `BudgetConfig.model_validate(entry)` succeeds (pydantic lax mode, `time_period` and
`budget_limit` renamed by `BudgetConfig.__init__`) and its duration passes `duration_in_seconds`.
The coercions are pydantic's own (the library LiteLLM validates with), and tests/test_differential_litellm.py
checks the whole classification against LiteLLM's code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from pydantic import TypeAdapter, ValidationError

from auditor.errors import DurationError
from auditor.litellm.durations import Duration, parse_duration


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    """A usable entry: LiteLLM keys a counter on (`name`, `duration.raw`)."""

    name: str
    limit: float | None  # None: a null cap, which enforces nothing
    duration: Duration

    @property
    def enforced(self) -> bool:
        """1.99+: a zero cap blocks everything, a negative, NaN or null cap enforces nothing."""
        return self.limit is not None and self.limit >= 0


@dataclass(frozen=True, slots=True)
class BudgetProblem:
    """An entry LiteLLM's limiter ignores, so it silently enforces nothing."""

    name: str  # "" when the whole value is unusable
    reason: str  # one line, for a human
    raw: object


def parse_model_max_budget(raw: object, *, now: datetime | None = None) -> dict[str, BudgetEntry | BudgetProblem]:
    """Every entry of a stored `model_max_budget` value, usable or not. Never raises.

    `raw` is the column's decoded JSON value (what the driver returns for jsonb). A str therefore
    means the jsonb holds a JSON *string*; it is tried as JSON only to say what it holds. LiteLLM
    does not honour it even when it holds an object: the key and user rows are validated into
    pydantic `dict` fields that reject a str (the key's auth view also rejects a team value that
    is a str), and the limiter skips any value that is not a Mapping. So any non-mapping value
    yields one BudgetProblem named "". `now` is passed to `parse_duration` (it matters for `Nmo`).
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        return {"": BudgetProblem("", _whole_value_reason(raw), raw)}
    parsed: dict[str, BudgetEntry | BudgetProblem] = {}
    try:
        items = list(raw.items())
    except Exception:  # noqa: BLE001  # a Mapping that cannot be iterated holds no usable entry
        return {"": BudgetProblem("", "the value cannot be read as a mapping; LiteLLM ignores the whole value", raw)}
    for key, value in items:
        if isinstance(key, str):
            parsed[key] = _parse_entry(key, value, now)
    for key, value in items:  # non-str keys cannot come from JSON; a str key of the same text wins
        if not isinstance(key, str):
            name = _text(key)
            if name not in parsed:
                parsed[name] = BudgetProblem(name, "entry name is not a string; LiteLLM never matches it", value)
    return parsed


def _whole_value_reason(raw: object) -> str:
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except (ValueError, RecursionError):
            if _TOO_LONG_INT.search(raw):  # JSON, but Python (so Prisma's client in LiteLLM too) refuses to read it
                return (
                    f"the value holds an integer of more than {_MAX_INT_DIGITS} digits ({_show(raw)}), which Python cannot "
                    "read; LiteLLM fails on the whole value"
                )
            return f"the value is a string that is not JSON ({_show(raw)}), not an object; LiteLLM ignores the whole value"
        if isinstance(decoded, dict):
            return (
                "the value is a JSON string holding an object, not the object itself; LiteLLM does not decode it "
                "and ignores the whole value: store the object"
            )
        return f"the value is a JSON string holding {_kind(decoded)}, not an object; LiteLLM ignores the whole value"
    return f"the value is {_kind(raw)} {_show(raw)}, not an object; LiteLLM ignores the whole value"


def _parse_entry(name: str, entry: object, now: datetime | None) -> BudgetEntry | BudgetProblem:
    if isinstance(entry, (int, float)) and not isinstance(entry, bool):
        amount = _show(entry)
        return BudgetProblem(
            name,
            f'legacy float entry {amount}: LiteLLM 1.99+ ignores it; write {{"budget_limit": {amount}, "time_period": "..."}}',
            entry,
        )
    if not isinstance(entry, Mapping):
        shown = "" if entry is None else f" {_show(entry)}"
        return BudgetProblem(name, f"entry is {_kind(entry)}{shown}, not an object; LiteLLM ignores it", entry)
    try:
        fields = dict(entry.items())
    except Exception:  # noqa: BLE001  # unreadable mapping: LiteLLM's validation fails on it too
        return BudgetProblem(name, "entry cannot be read as an object; LiteLLM ignores it", entry)
    if any(not isinstance(key, str) for key in fields):
        return BudgetProblem(name, "entry has a key that is not a string; LiteLLM ignores the entry", entry)
    if "self" in fields:  # BudgetConfig.__init__(self, **data) cannot take a keyword named self
        return BudgetProblem(
            name, "entry has a key named 'self', which breaks LiteLLM's BudgetConfig; it ignores the entry", entry
        )
    # BudgetConfig.__init__: the alias wins whenever present, even when null.
    cap_key = "budget_limit" if "budget_limit" in fields else "max_budget"
    duration_key = "time_period" if "time_period" in fields else "budget_duration"
    cap = fields.get(cap_key)
    limit = None if cap is None else _lax_float(cap)
    if cap is not None and limit is None:
        return BudgetProblem(name, f"{cap_key} {_show(cap)} is not a number; LiteLLM ignores the entry", entry)
    duration_raw = fields.get(duration_key)
    duration_text = None if duration_raw is None else _lax_str(duration_raw)
    if duration_raw is not None and duration_text is None:
        return BudgetProblem(name, f"{duration_key} {_show(duration_raw)} is not a string; LiteLLM ignores the entry", entry)
    for limit_key in ("tpm_limit", "rpm_limit"):
        value = fields.get(limit_key)
        if value is not None and not _lax_int_ok(value):
            return BudgetProblem(name, f"{limit_key} {_show(value)} is not an integer; LiteLLM ignores the whole entry", entry)
    if duration_text is None:
        missing = f"{duration_key} is null" if duration_key in fields else "no time_period (or budget_duration)"
        return BudgetProblem(name, f"{missing}; LiteLLM ignores the entry", entry)
    try:
        duration = parse_duration(duration_text, now=now)
    except DurationError as err:
        return BudgetProblem(name, f"{duration_key}: {err}; LiteLLM ignores the entry", entry)
    return BudgetEntry(name=name, limit=limit, duration=duration)


# --- pydantic lax coercions (python mode), from pydantic itself -------------------------------------
# LiteLLM's BudgetConfig fields are Optional[float] / Optional[str] / Optional[int]: the same adapters give
# its answers by construction ("1_000", " 2.5 ", "Infinity" are numbers; "0x10" is not). Built once: budgets
# are parsed per key, and building an adapter costs far more than a validation.
_FLOAT: Final = TypeAdapter(float)
_INT: Final = TypeAdapter(int)
_STR: Final = TypeAdapter(str)

_MAX_INT_DIGITS: Final = 4300  # Python's int-from-text limit, which pydantic-core applies too
_TOO_LONG_INT: Final = re.compile(r"[0-9]{%d}" % (_MAX_INT_DIGITS + 1))


def _lax_float(value: object) -> float | None:
    """`float` in pydantic lax mode; None when pydantic rejects it."""
    try:
        return _FLOAT.validate_python(value)
    except ValidationError:
        return None


def _lax_int_ok(value: object) -> bool:
    """Whether pydantic lax mode accepts `value` for an `int | None` field."""
    try:
        _INT.validate_python(value)
    except ValidationError:
        return False
    return True


def _lax_str(value: object) -> str | None:
    """`str` in pydantic lax mode (str itself, or bytes that decode as UTF-8); None when pydantic rejects it."""
    try:
        return _STR.validate_python(value)
    except ValidationError:
        return None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return f"a {type(value).__name__}"


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001
        return f"<{type(value).__name__}>"


def _show(value: object, limit: int = 60) -> str:
    """A one-line, bounded rendering of a user's value for a reason: as JSON, the way it is stored."""
    try:
        text = json.dumps(value, allow_nan=True, ensure_ascii=False)
    except Exception:  # noqa: BLE001  # not JSON (bytes, a cycle) or an int too long to print
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001
            return f"<{type(value).__name__}>"
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
