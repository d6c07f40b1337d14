"""Audit the spend and per-model budgets of a LiteLLM proxy straight from its database.

As a library: `auditor.scan(...)`, `auditor.spend(...)`, `auditor.report(...)`, `auditor.doctor(...)`,
`auditor.plan_backfill(...)` and `auditor.apply_backfill(...)` (auditor.api; README, "Use it from Python"). They are
loaded on first use, so importing a pure module does not bring in the database layer.
"""

import sys
from types import ModuleType

__version__ = "0.1.0"

__all__ = ["__version__", "apply_backfill", "doctor", "plan_backfill", "report", "scan", "spend"]
_API = ("apply_backfill", "doctor", "plan_backfill", "scan", "spend")


def __getattr__(name: str):
    if name in _API:
        from auditor import api

        return getattr(api, name)
    raise AttributeError(f"module 'auditor' has no attribute {name!r}")


class _Auditor(ModuleType):
    """`auditor.report` is the library call (auditor.api.report) although auditor/report/ is a subpackage too:
    importing the subpackage binds it here, which is ignored. `from auditor.report import history` works as ever;
    only `import auditor.report.history as h` (which reads the attribute) does not: use the `from` form."""

    @property
    def report(self):
        from auditor.api import report

        return report

    @report.setter
    def report(self, value) -> None:
        pass  # the import system binding the auditor.report subpackage


sys.modules[__name__].__class__ = _Auditor
