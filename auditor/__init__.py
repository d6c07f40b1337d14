"""Audit the spend and per-model budgets of a LiteLLM proxy straight from its database.

As a library: `auditor.scan(...)`, `auditor.spend(...)`, `auditor.report(...)`, `auditor.doctor(...)`,
`auditor.resolve(...)`, `auditor.explain(...)`, `auditor.plan_backfill(...)`, `auditor.apply_backfill(...)`,
`auditor.backfill_runs(...)`, `auditor.plan_undo(...)` and `auditor.undo_backfill(...)` (auditor.api; README, "Use it
from Python"). They are loaded on first use, so importing a pure module does not bring in the database layer.
"""

__version__ = "0.1.0"

# the library calls (auditor.api), loaded on first use
_API = (
    "apply_backfill",
    "backfill_runs",
    "doctor",
    "explain",
    "plan_backfill",
    "plan_undo",
    "report",
    "resolve",
    "scan",
    "spend",
    "undo_backfill",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from auditor import api

        return getattr(api, name)
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")
