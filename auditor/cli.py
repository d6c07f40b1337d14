"""The command line: parse arguments, call the core, render. Nothing else lives here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from auditor import __version__
from auditor.errors import AuditorError
from auditor.exitcodes import ExitCode

app = typer.Typer(
    help=(
        "Audit the spend and per-model budgets of a LiteLLM proxy straight from its database.\n\n"
        "Example (the built-in sample deployment, no setup):\n\n"
        "    auditor doctor\n\n"
        "Example (your proxy's database, read-only):\n\n"
        "    auditor doctor --db postgresql://auditor@db.internal:5432/litellm --config proxy_config.yaml"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=False,
)
sample_app = typer.Typer(help="The built-in sample deployment.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(sample_app, name="sample")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


@app.command()
@handles_errors
def doctor(db: DbOption = None, config: ConfigOption = None, redis_url: RedisOption = None) -> None:
    """Check what auditor can see before you trust a scan.

    Prints the database (password masked), what LiteLLM schema it holds, row estimates, the
    spend-log time range, the parsed LiteLLM config and Redis; warnings come with the exact fix.
    Exit 0 when a scan can run, 3 when it cannot.

    Example:

        auditor doctor --db postgresql://auditor@db.internal:5432/litellm --config proxy_config.yaml
    """
    from auditor.capabilities import inspect_database
    from auditor.db import connect
    from auditor.doctor import FAIL, DoctorReport, config_checks, database_checks, redis_checks
    from auditor.redis_store import redis_from

    target = resolve_database(db)
    report = DoctorReport()
    report.add("database", "info", f"{target.masked} ({target.origin})")
    try:
        with connect(target) as conn:
            database_checks(report, conn, inspect_database(conn))
    except AuditorError as error:
        report.add("database", FAIL, str(error))
    config_path, origin = resolve_config(config, target)
    config_checks(report, config_path, origin)
    try:
        redis_target = redis_from(redis_url)
    except AuditorError as error:
        report.add("Redis", FAIL, str(error))
    else:
        redis_checks(report, redis_target)
    _render_doctor(report)
    if not report.can_scan:
        raise typer.Exit(int(ExitCode.UNAVAILABLE))


_STATUS_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "fail": "bold red"}


def _render_doctor(report) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("what auditor sees")
    for check in report.checks:
        detail = escape(check.detail) + (f"\n  [dim]fix:[/dim] {escape(check.fix)}" if check.fix else "")
        table.add_row(f"[{_STATUS_STYLE[check.status]}]{check.status}[/]", escape(check.topic), detail)
    out.print(table)
    out.print("scan can run" if report.can_scan else "[bold red]scan cannot run[/] (exit 3)")


@sample_app.command("load")
@handles_errors
def sample_load(
    db: Annotated[str, typer.Option("--db", help="Database URL to load the sample into.", show_default=False)],
    redis_url: RedisOption = None,
    force: Annotated[bool, typer.Option("--force", help="Load even if the database already holds spend logs.")] = False,
) -> None:
    """Load the sample deployment into a database (creating LiteLLM's tables when absent).

    Refuses a database that already holds spend logs unless --force. With --redis, also
    writes the sample's Redis counters.

    Example:

        createdb litellm_sample && auditor sample load --db postgresql://127.0.0.1/litellm_sample
    """
    from auditor.db import connect, parse_database_url, DatabaseTarget
    from auditor.redis_store import connect_redis, redis_from
    from auditor.sample import load_sample, load_sample_redis

    target = DatabaseTarget(parse_database_url(db), "--db")
    with connect(target, read_only=False) as conn:
        result = load_sample(conn, force=force)
    if target.dialect == "postgresql":
        from auditor.db import analyze

        analyze(target, list(result.rows_by_table))
    total = sum(result.rows_by_table.values())
    out.print(f"loaded {total:,} rows into {len(result.rows_by_table)} LiteLLM tables at {escape(target.masked)}")
    redis_target = redis_from(redis_url) if redis_url else None
    if redis_target is not None:
        client = connect_redis(redis_target)
        with client:
            keys = load_sample_redis(client)
        out.print(f"wrote {keys} counter keys to Redis at {escape(redis_target.masked)}")


def version_callback(value: bool) -> None:
    if value:
        out.print(f"auditor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")] = False,
) -> None:
    pass


def main() -> None:
    try:
        app()
    except AuditorError as error:  # raised outside a command (e.g. while building the embedded sample)
        err.print(f"auditor: {escape(str(error))}")
        sys.exit(int(error.exit_code))
    except KeyboardInterrupt:
        err.print("auditor: interrupted")
        sys.exit(130)
