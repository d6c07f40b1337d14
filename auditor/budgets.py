"""`model_max_budget` entries as LiteLLM's limiter reads them, and the problems it silently ignores."""

from __future__ import annotations

from dataclasses import dataclass

from auditor.durations import Duration


@dataclass(frozen=True, slots=True)
class BudgetEntry:
    """A usable entry: LiteLLM keys a counter on (`name`, `duration.raw`)."""

    name: str
    limit: float | None  # None: a null cap, which enforces nothing
    duration: Duration

    @property
    def enforced(self) -> bool:
        """1.99+: a zero cap blocks everything, a negative or null cap enforces nothing."""
        return self.limit is not None and self.limit >= 0


@dataclass(frozen=True, slots=True)
class BudgetProblem:
    """An entry LiteLLM's limiter ignores, so it silently enforces nothing."""

    name: str
    reason: str  # one line, for a human
    raw: object


def parse_model_max_budget(raw: object) -> dict[str, BudgetEntry | BudgetProblem]:
    """Every entry of a stored `model_max_budget` value, usable or not. Never raises."""
    raise NotImplementedError
