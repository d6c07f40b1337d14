"""The exit codes `auditor` promises; cron jobs and scripts branch on them."""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # nothing at or above --fail-on
    FINDINGS = 1  # findings at or above --fail-on (or, for backfill, something to repair)
    USAGE = 2  # bad arguments, a config or budget that does not parse
    UNAVAILABLE = 3  # could not run: database or Redis unreachable or lost, LiteLLM tables or a grant missing, a file unwritable
