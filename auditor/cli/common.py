"""What every command shares: the consoles, the database/config/Redis options, the scan options (declared once
here; their defaults stay in each signature, as Typer wants), one-line errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import contextmanager
from enum import Enum
from typing import Annotated

import typer
from rich.console import Console

from auditor.errors import AuditorError
from auditor.exitcodes import ExitCode

# No highlighting and no :emoji: codes: database text is printed as typed (markup is escaped by render.clean)
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or mailed by cron: no terminal to fit, so do not squeeze tables into 80 columns

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database URL (postgresql://… or sqlite:///…). Default: $AUDITOR_DATABASE_URL, else $DATABASE_URL, else the embedded sample.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", help="LiteLLM proxy config.yaml. Default: $CONFIG_FILE_PATH or $LITELLM_CONFIG_PATH.", show_default=False
    ),
]
RedisOption = Annotated[
    str | None,
    typer.Option(
        "--redis",
        help="Redis URL (add ?socket_timeout=SECONDS to change the 5 s timeout). Default: $REDIS_URL, else $REDIS_HOST/$REDIS_PORT/$REDIS_PASSWORD.",
        show_default=False,
    ),
]
RedisOptionalOption = Annotated[
    bool,
    typer.Option(
        "--redis-optional",
        help="If Redis cannot be reached or read, scan without its counters (said on stderr and in the notes) instead of exiting 3.",
    ),
]

LiteLLMVersionOption = Annotated[
    str | None,
    typer.Option(
        "--litellm-version",
        help="The proxy's LiteLLM release (X.Y.Z, e.g. 1.83.7): which era's counter layout, windows and comparison to audit by. "
        "Default: what the schema and the counter keys suggest (doctor shows it).",
        show_default=False,
    ),
]

SinceOption = Annotated[
    str | None,
    typer.Option(help='Only spend logs with "startTime" at or after this (ISO 8601, or an age like 30d).', show_default=False),
]
UntilOption = Annotated[str | None, typer.Option(help='Only spend logs with "startTime" before this.', show_default=False)]
TimezoneOption = Annotated[
    str | None,
    typer.Option(help="Zone LiteLLM aligns budget resets to. Default: litellm_settings.timezone, else UTC.", show_default=False),
]
StatementTimeoutOption = Annotated[
    float | None,
    typer.Option(help="PostgreSQL statement_timeout for the scan's queries, in seconds.", show_default=False),
]
NowOption = Annotated[
    str | None,
    typer.Option(
        help="Judge the scan at this instant (default: the current time), for reproducible results.", show_default=False
    ),
]
ToleranceOption = Annotated[
    float, typer.Option(help="Dollars a counter may differ from the ledger before it is drift (and backfill repairs it).")
]
WindowSlackOption = Annotated[float, typer.Option(help="Seconds before a counter's start that still count in its window.")]
SettleOption = Annotated[float, typer.Option(help="Seconds before --now whose charges counters may not hold yet.")]
KeysOption = Annotated[
    list[str] | None, typer.Option("--key", help="A key hash or alias; repeat for several.", show_default=False)
]
ModelOption = Annotated[
    str | None, typer.Option(help="Only findings (or counters) of this model group or budget entry.", show_default=False)
]
OutputOption = Annotated[
    str | None, typer.Option(help="Write the output to this file (atomically, mode 0600).", show_default=False)
]


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


FormatOption = Annotated[Format, typer.Option("--format", help="Output format.")]


class FailOn(str, Enum):
    """--fail-on of scan and report: the severity at which the run exits 1."""

    error = "error"
    warning = "warning"
    never = "never"

    def fails(self, worst: str | None) -> bool:
        """Whether a run whose worst finding is `worst` (None: no finding) exits 1."""
        from auditor.audit.findings import SEVERITY_RANK

        return self is not FailOn.never and worst is not None and SEVERITY_RANK[worst] >= SEVERITY_RANK[self.value]


FailOnOption = Annotated[FailOn, typer.Option(help="Exit 1 when a finding of this severity or worse is found.")]


def fail(message: str, code: ExitCode) -> typer.Exit:
    from auditor.reports.render import clean

    err.print(f"auditor: {clean(message)}")  # messages quote user input: one line, inert
    return typer.Exit(int(code))


def handles_errors(command: Callable) -> Callable:
    """Typed errors become one line on stderr and their exit code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except AuditorError as error:
            raise fail(str(error), error.exit_code) from None

    return wrapper


@contextmanager
def progress():
    """A progress line on stderr while charges stream, only on a terminal."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(SpinnerColumn(), TextColumn("windowing {task.completed:,} charged rows"), console=err, transient=True) as bar:
        task = bar.add_task("scan", total=None)
        yield lambda n: bar.advance(task, n)


def say(text: str) -> None:
    """What the library says on the way (session.Warn), as the CLI says it: one line on stderr, inert."""
    from auditor.reports.render import clean

    err.print(f"auditor: {clean(text)}")
