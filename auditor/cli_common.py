"""What every command shares: the consoles, the database/config/Redis options, one-line errors."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from auditor.errors import AuditorError
from auditor.exitcodes import ExitCode

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or mailed by cron: no terminal to fit, so do not squeeze tables into 80 columns

DbOption = Annotated[
    Optional[str],
    typer.Option(
        "--db",
        help="Database URL (postgresql://… or sqlite:///…). Default: $AUDITOR_DATABASE_URL, else $DATABASE_URL, else the embedded sample.",
        show_default=False,
    ),
]
ConfigOption = Annotated[
    Optional[str],
    typer.Option("--config", help="LiteLLM proxy config.yaml. Default: $CONFIG_FILE_PATH or $LITELLM_CONFIG_PATH.", show_default=False),
]
RedisOption = Annotated[
    Optional[str],
    typer.Option("--redis", help="Redis URL. Default: $REDIS_URL, else $REDIS_HOST/$REDIS_PORT/$REDIS_PASSWORD.", show_default=False),
]


def fail(message: str, code: ExitCode) -> typer.Exit:
    err.print(f"auditor: {escape(message)}")
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


def resolve_database(db: str | None):
    """The database to read; the embedded sample (said on stderr) when none is configured."""
    from auditor.db import database_from
    from auditor.sample import embedded_target

    target = database_from(db)
    if target is None:
        target = embedded_target()
        err.print("auditor: no database configured (--db, AUDITOR_DATABASE_URL, DATABASE_URL): using the embedded sample deployment")
    return target


def resolve_config(config: str | None, target) -> tuple[str | None, str]:
    """--config, else the environment, else the sample's own config when reading the embedded sample."""
    from auditor.config import config_from_env
    from auditor.db import EMBEDDED
    from auditor.sample import sample_config_path

    if config:
        return config, "--config"
    from_env = config_from_env(None)
    if from_env:
        return from_env, "environment"
    if target.origin == EMBEDDED:
        return str(sample_config_path()), "sample"
    return None, "none"
