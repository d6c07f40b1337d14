"""The command line: parse arguments, call the core, render. Nothing else lives here."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from rich.table import Table

from auditor import __version__
from auditor.cli.backfill import backfill_app, db_app
from auditor.cli.common import (
    ConfigOption,
    DbOption,
    FailOn,
    FailOnOption,
    Format,
    FormatOption,
    KeysOption,
    LiteLLMVersionOption,
    ModelOption,
    NowOption,
    OutputOption,
    RedisOption,
    RedisOptionalOption,
    SettleOption,
    SinceOption,
    StatementTimeoutOption,
    TimezoneOption,
    ToleranceOption,
    UntilOption,
    WindowSlackOption,
    err,
    handles_errors,
    out,
    progress,
    say,
)
from auditor.cli.report import history_command, report_command
from auditor.cli.spend import spend_command
from auditor.errors import AuditorError
from auditor.exitcodes import ExitCode
from auditor.reports.render import clean

app = typer.Typer(
    help=(
        "Audit the spend and per-model budgets of a LiteLLM proxy straight from its database.\n\n"
        "Example (the built-in sample deployment, no setup):\n\n"
        "\b\n    auditor doctor\n\n"
        "Example (your proxy's database, read-only):\n\n"
        "\b\n    auditor doctor --db postgresql://auditor@db.internal:5432/litellm --config proxy_config.yaml"
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
sample_app = typer.Typer(help="The built-in sample deployment.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(sample_app, name="sample")
app.add_typer(backfill_app, name="backfill")
app.add_typer(db_app, name="db")
app.command("report")(report_command)
app.command("history")(history_command)
app.command("spend")(spend_command)


@app.command()
@handles_errors
def doctor(
    db: DbOption = None, config: ConfigOption = None, redis_url: RedisOption = None, litellm_version: LiteLLMVersionOption = None
) -> None:
    """Check what auditor can see before you trust a scan.

    Prints the database (password masked), what LiteLLM schema it holds, row estimates, the
    spend-log time range, the parsed LiteLLM config, Redis, and the LiteLLM era a scan will
    assume: its counter layout in words and the evidence; warnings come with the exact fix.
    Exit 0 when a scan can run, 3 when it cannot.

    Example:

        \b
        auditor doctor --db postgresql://auditor@db.internal:5432/litellm --config proxy_config.yaml
    """
    from auditor import api

    report = api.doctor(db, config=config, redis=redis_url, litellm_version=litellm_version, warn=say)
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
        table.add_row(f"[{_STATUS_STYLE[check.status]}]{check.status}[/]", clean(check.topic), clean(check.detail))
    out.print(table)
    for check in report.checks:
        if check.fix:  # unwrapped, so a statement can be pasted as is
            out.print(f"[{_STATUS_STYLE[check.status]}]fix[/] {clean(check.topic)}: {clean(check.fix)}")
    out.print("scan can run" if report.can_scan else "[bold red]scan cannot run[/] (exit 3)")


@app.command()
@handles_errors
def scan(
    db: DbOption = None,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    redis_optional: RedisOptionalOption = False,
    since: SinceOption = None,
    until: UntilOption = None,
    key: KeysOption = None,
    model: ModelOption = None,
    output_format: FormatOption = Format.table,
    output: OutputOption = None,
    now: NowOption = None,
    tolerance: ToleranceOption = 0.0001,
    window_slack: WindowSlackOption = 1.0,
    settle: SettleOption = 120.0,
    fail_on: FailOnOption = FailOn.error,
    statement_timeout: StatementTimeoutOption = None,
    timezone: TimezoneOption = None,
    use_rollups: Annotated[
        bool,
        typer.Option(
            "--use-rollups",
            help="Add per-day history from LiteLLM_DailyUserSpend for days the ledger no longer holds (JSON: rollup_history).",
        ),
    ] = False,
    litellm_version: LiteLLMVersionOption = None,
) -> None:
    """How much leaked past each per-model budget, and are the counters right now.

    Reads LiteLLM_SpendLogs (the ledger) in a read-only transaction, rebuilds every budget window
    the way LiteLLM opens them, and compares the counters enforcement reads (Redis,
    LiteLLM_BudgetWindowSpend) with it. Exit 0 clean, 1 findings at or above --fail-on,
    2 bad input, 3 could not run.

    Example:

        \b
        auditor scan --db postgresql://auditor@db.internal:5432/litellm --config proxy_config.yaml --since 30d
    """
    from auditor import api
    from auditor.output import write_atomic
    from auditor.reports import render

    with progress() as advance:
        result = api.scan(
            db,
            config=config,
            redis=redis_url,
            now=now,
            since=since,
            until=until,
            keys=tuple(key or ()),
            model=model,
            tolerance=tolerance,
            window_slack=window_slack,
            settle=settle,
            timezone=timezone,
            use_rollups=use_rollups,
            statement_timeout=statement_timeout,
            redis_optional=redis_optional,
            litellm_version=litellm_version,
            progress=advance,
            warn=say,
        )
    if output_format is Format.table and not output:
        render.print_table(result, out)
    else:
        text = {
            Format.json: render.to_json,
            Format.csv: render.to_csv,
            Format.markdown: render.to_markdown,
            Format.table: render.to_markdown,
        }[output_format](result)
        if output:
            write_atomic(output, text)
        else:
            sys.stdout.write(text)
    worst = result.worst()
    if fail_on.fails(worst):
        raise typer.Exit(int(ExitCode.FINDINGS))


@app.command()
@handles_errors
def resolve(
    name: Annotated[str | None, typer.Argument(help="A model name as logged or requested.", show_default=False)] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Also say which of this key's budget entries governs the name (hash or alias).", show_default=False
        ),
    ] = None,
    all_models: Annotated[
        bool, typer.Option("--all", help="Every distinct logged model with its resolution, rows and spend.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Explain how a model name resolves to the model group budgets are written against.

    Prints the canonical group, the rule and config entry that decided, LiteLLM's candidate
    names for budget entries, and with --key which entry governs and why. --all lists every
    logged (model, model_group, model_id), unresolved and ambiguous first.

    Exit code: 0 once it has answered, unresolved names included (a scan reports those as
    findings and fails on them with --fail-on warning); 2 for bad input; 3 when the
    database cannot be read.

    Example:

        \b
        auditor resolve vertex_ai/claude-opus-4-6@default --key research-agent
    """
    from auditor import api

    resolved = api.resolve(name, db=db, config=config, key=key, all_models=all_models, warn=say)
    for note in resolved.notes:
        err.print(f"note: {clean(note)}")
    if resolved.resolution is None:
        if as_json:
            sys.stdout.write(json.dumps(resolved.as_record(), indent=2) + "\n")
        else:
            _render_all_models(resolved.models)
        return
    if as_json and key is None:
        sys.stdout.write(json.dumps(resolved.as_record(), indent=2) + "\n")
        return
    resolution, requested = resolved.resolution, resolved.requested
    style = {"resolved": "green", "ambiguous": "yellow", "unresolved": "bold red"}[resolution.status]
    out.print(f"[bold]{clean(name)}[/] → [{style}]{clean(resolution.group or resolution.status)}[/]")
    out.print(f"  rule: {resolution.rule}; decided by: {clean(resolution.decided_by)}")
    if resolution.candidates:
        out.print(f"  candidates: {clean(', '.join(resolution.candidates))}")
    out.print(f"  LiteLLM's budget-entry candidates for {clean(requested)}: {clean(', '.join(resolved.budget_candidates))}")
    if resolved.access_groups:
        out.print(f"  access groups serving it: {clean(', '.join(resolved.access_groups))}")
    governing = resolved.key
    if governing is None:
        return
    label = clean(governing.label)
    if not governing.considered:
        out.print(
            f"  key {label}: no budget entry governs {clean(requested)} (entries: {clean(', '.join(governing.entries) or 'none')})"
        )
        return
    out.print(f"  key {label} ({governing.source}): entries LiteLLM considers, in order:")
    chosen = governing.governs
    for consideration in governing.considered:
        mark = (
            "→ governs"
            if consideration.entry == chosen
            else ("unusable, falls through" if not consideration.usable else "shadowed")
        )
        out.print(f"    {clean(consideration.entry)}: {clean(consideration.why)} [{mark}]")


def _render_all_models(rows) -> None:
    table = Table(header_style="bold")
    for column in ("status", "model", "model_group", "model_id", "group", "rule", "rows", "spend", "decided by"):
        table.add_column(column, justify="right" if column in ("rows", "spend") else "left", overflow="fold")
    for totals, resolution in rows:
        table.add_row(
            resolution.status,
            clean(totals.model),
            clean(totals.model_group),
            clean(totals.model_id),
            clean(resolution.group or ", ".join(resolution.candidates)),
            resolution.rule,
            f"{totals.requests:,}",
            f"${totals.spend:,.4f}",
            clean(resolution.decided_by),
        )
    out.print(table)
    unresolved = sum(t.requests for t, r in rows if r.status != "resolved")
    out.print(f"{len(rows)} distinct logged models; {unresolved:,} rows unresolved or ambiguous")


@app.command()
@handles_errors
def explain(
    key: Annotated[str | None, typer.Argument(help="A key hash or alias.", show_default=False)] = None,
    team: Annotated[str | None, typer.Option("--team", help="A team id or alias instead of a key.", show_default=False)] = None,
    user: Annotated[str | None, typer.Option("--user", help="An internal user id, alias or email.", show_default=False)] = None,
    end_user: Annotated[
        str | None, typer.Option("--end-user", help="An end user (customer) id or alias.", show_default=False)
    ] = None,
    db: DbOption = None,
    config: ConfigOption = None,
    redis_url: RedisOption = None,
    since: SinceOption = None,
    now: NowOption = None,
    timezone: TimezoneOption = None,
) -> None:
    """One entity's story: each budget entry's windows against the limit, its counters, and its scalar spend.

    Names the request that crossed each limit and examples of those admitted after it.

    Example:

        \b
        auditor explain research-agent
        auditor explain --team team-data --since 30d
    """

    from auditor import api

    story = api.explain(
        key,
        team=team,
        user=user,
        end_user=end_user,
        db=db,
        config=config,
        redis=redis_url,
        since=since,
        now=now,
        timezone=timezone,
        warn=say,
    )
    _render_story(story)


def _bar(spend: float, limit: float, width: int = 20) -> str:
    """A compact bar: the limit is the full width; what went past it is marked beyond the edge."""
    if limit <= 0:
        return "▶" * min(width, 3) if spend > 0 else ""
    filled = min(spend / limit, 1.0) * width
    bar = "█" * int(filled) + ("▌" if filled - int(filled) >= 0.5 else "")
    return bar.ljust(width) + ("│" + "▶" * min(10, max(1, int((spend / limit - 1) * width / 4))) if spend > limit else "│")


def _render_story(story) -> None:
    from auditor.litellm.budgets import BudgetEntry
    from auditor.redact import Redactor
    from auditor.reports.render import clean as inert

    budgets, holder = story.budgets, story.holder
    hide = Redactor([budgets.entity_id] if budgets.scope == "key" else [])

    def clean(text: object) -> str:  # a raw API key in this story is shown by its hash
        return inert(hide(str(text)))

    name = clean(budgets.alias or budgets.entity_id)
    out.print(
        f"[bold]{budgets.scope.replace('_', ' ')} {name}[/] ({clean(hide(budgets.entity_id)[:16])}…) — model_max_budget from {clean(budgets.source)}"
    )
    if not story.entries:
        out.print("  no per-model budget")
    for entry_story in story.entries:
        entry = entry_story.entry
        if not isinstance(entry, BudgetEntry):
            out.print(f"  [bold red]{clean(entry_story.name)}[/]: ignored by LiteLLM: {clean(entry.reason)}")
            continue
        limit = entry.limit
        cap = f"${limit:,.4f}" if limit is not None else "no cap"
        out.print(
            f"  [bold]{clean(entry_story.name)}[/]: {cap} per {clean(entry.duration.raw)}"
            + ("" if entry.enforced else " (enforces nothing)")
            + f", {len(entry_story.windows)} windows"
        )
        for w in entry_story.windows:
            over = entry.enforced and w.spend > limit
            style = "red" if w.requests_after_limit else "yellow" if over else "green"
            line = f"    {w.start:%Y-%m-%d %H:%M} → {w.end:%m-%d %H:%M}  ${w.spend:>9,.4f}"
            if entry.enforced:
                line += (
                    f"  [{style}]{_bar(w.spend, limit)}[/] {w.spend / limit:>5.0%}"
                    if limit
                    else f"  [{style}]{_bar(w.spend, 0)}[/]"
                )
            line += f"  {w.requests} req"
            if w.crossed_by:
                line += f"; crossed by {clean(w.crossed_by)} at {w.crossed_at:%m-%d %H:%M:%S}"
            if w.requests_after_limit:
                examples = ", ".join(clean(r) for r in w.leaked_examples)
                line += f"; [red]{w.requests_after_limit} admitted after the limit (${w.spend_after_limit:,.4f})[/]" + (
                    f", e.g. {examples}" if examples else ""
                )
            out.print(line)
        for finding in entry_story.counters:
            out.print(f"    counter: {clean(finding.message)}")
    if holder.spend is not None:
        out.print(
            f"  scalar spend: {clean(holder.spend_column)} = ${holder.spend:,.4f}"
            + (f", max_budget ${holder.max_budget:,.4f}" if holder.max_budget is not None else ", no max_budget")
            + (
                f", resets {holder.budget_duration} (next {holder.budget_reset_at:%Y-%m-%d %H:%M} UTC)"
                if holder.budget_duration and holder.budget_reset_at
                else ""
            )
        )
    for finding in story.other:
        out.print(
            f"  [{'red' if finding.severity == 'error' else 'yellow' if finding.severity == 'warning' else 'cyan'}]{finding.kind}[/]: {clean(finding.message)}"
        )


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

        \b
        createdb litellm_sample && auditor sample load --db postgresql://127.0.0.1/litellm_sample
    """
    from auditor.ledger.db import DatabaseTarget, connect, parse_database_url
    from auditor.ledger.redis_store import connect_redis, redis_from
    from auditor.sample import load_sample, load_sample_redis

    target = DatabaseTarget(parse_database_url(db), "--db")
    with connect(target, read_only=False) as conn:
        result = load_sample(conn, force=force)
    if target.dialect == "postgresql":
        from auditor.ledger.db import analyze

        analyze(target, list(result.rows_by_table))
    total = sum(result.rows_by_table.values())
    out.print(f"loaded {total:,} rows into {len(result.rows_by_table)} LiteLLM tables at {clean(target.masked)}")
    redis_target = redis_from(redis_url) if redis_url else None
    if redis_target is not None:
        client = connect_redis(redis_target)
        with client:
            keys = load_sample_redis(client)
        out.print(f"wrote {keys} counter keys to Redis at {clean(redis_target.masked)}")


def version_callback(value: bool) -> None:
    if value:
        out.print(f"auditor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log to stderr what auditor does: -v the phases, -vv also every SQL statement and its time.",
            show_default=False,
        ),
    ] = 0,
) -> None:
    """Every file auditor creates (reports, --output, SQLite history and journal databases, lock files, the sample
    cache) is readable by its owner only: they hold key hashes and aliases. The umask covers the files SQLite
    creates too; it is put back when the command ends."""
    import os

    previous = os.umask(0o077)
    ctx.call_on_close(lambda: os.umask(previous))
    if verbose:
        ctx.call_on_close(_log_to_stderr(logging.INFO if verbose == 1 else logging.DEBUG))


def _log_to_stderr(level: int):
    """The `auditor` loggers (auditor.sql among them) to stderr at `level`, stdout untouched; returns the undo, so
    runs in one process (tests, a notebook calling main) do not stack handlers."""
    logger = logging.getLogger("auditor")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)

    def undo() -> None:
        logger.removeHandler(handler)
        logger.setLevel(previous)

    return undo


# Typer's own Click (vendored by recent Typer, so not `click.ClickException`): found through a public class
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    import io

    from auditor.ledger.db import mask_text

    try:
        code = app(standalone_mode=False)
    except _CLICK_ERROR as error:  # a usage error quotes the arguments: a stray URL's password among them
        shown = io.StringIO()
        error.show(file=shown)
        sys.stderr.write(mask_text(shown.getvalue()))
        sys.exit(error.exit_code)
    except (typer.Abort, RuntimeError) as error:  # Click's Abort (confirmation declined with ^C/^D)
        if type(error).__name__ != "Abort":
            raise
        err.print("Aborted!")
        sys.exit(1)
    except AuditorError as error:  # raised outside a command (e.g. while building the embedded sample)
        err.print(f"auditor: {clean(str(error))}")
        sys.exit(int(error.exit_code))
    except KeyboardInterrupt:
        err.print("auditor: interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
