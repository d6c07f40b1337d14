"""`auditor spend`: where the money went, by entity x canonical model group x period.

Registered by auditor/cli/main.py with `app.command("spend")(spend_command)`. The query is spend_queries.ledger_cells,
the grouping spend.merge / spend.table, the text renderers render.spend_*; this module only wires them.
"""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from auditor.cli.common import (
    ConfigOption,
    DbOption,
    Format,
    FormatOption,
    OutputOption,
    SinceOption,
    StatementTimeoutOption,
    TimezoneOption,
    UntilOption,
    handles_errors,
    out,
    say,
)


class By(str, Enum):
    key = "key"
    team = "team"
    user = "user"
    end_user = "end_user"
    team_member = "team_member"
    tag = "tag"


class Period(str, Enum):
    day = "day"
    week = "week"
    month = "month"
    total = "total"


@handles_errors
def spend_command(
    db: DbOption = None,
    config: ConfigOption = None,
    by: Annotated[By, typer.Option("--by", help="Group by this entity (tag: each of a request's request_tags).")] = By.key,
    period: Annotated[Period, typer.Option("--period", help="Calendar periods, in --timezone.")] = Period.total,
    since: SinceOption = None,
    until: UntilOption = None,
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, help="Only the N entities that spent most (the rest summed below).", show_default=False),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", help="Only this model group (or a router alias of it, or an unresolved model name).", show_default=False
        ),
    ] = None,
    timezone: TimezoneOption = None,
    output_format: FormatOption = Format.table,
    output: OutputOption = None,
    statement_timeout: StatementTimeoutOption = None,
) -> None:
    """Where the money went: spend by key, team, user, end user, team member or tag, per canonical model group.

    One grouped query over LiteLLM_SpendLogs (read-only). Deployments of a model group are merged into it,
    traffic to a router alias is shown under its target with the alias named, rows the resolver cannot place
    get a line of their own. Spend counts what the scan charges (no failures, no repeat polls of a paid job);
    failures and cache hits are columns. Exit 0, 2 bad input, 3 could not run.

    Example:

        auditor spend --db postgresql://auditor@db.internal:5432/litellm --by team --period month --since 90d
    """
    from auditor import api
    from auditor.output import write_atomic
    from auditor.reports import render

    result = api.spend(
        db,
        config=config,
        by=by.value,
        period=period.value,
        since=since,
        until=until,
        top=top,
        model=model,
        timezone=timezone,
        statement_timeout=statement_timeout,
        warn=say,
    )
    if output_format is Format.table and not output:
        _print_table(result)
        return
    text = {
        Format.json: render.spend_json,
        Format.csv: render.spend_csv,
        Format.markdown: render.spend_markdown,
        Format.table: render.spend_markdown,
    }[output_format](result.record())
    if output:
        write_atomic(output, text)
    else:
        sys.stdout.write(text)


def _print_table(result) -> None:
    from auditor.reports import render

    record = result.record()
    table = Table(header_style="bold", expand=False)
    columns = [
        ("period", "left"),
        (result.by.replace("_", " "), "left"),
        ("model group", "left"),
        ("spend", "right"),
        ("share", "right"),
        ("requests", "right"),
        ("tokens in", "right"),
        ("tokens out", "right"),
        ("failures", "right"),
        ("cache hits", "right"),
    ]
    by_period = result.period != "total"
    for name, justify in columns[0 if by_period else 1 :]:
        table.add_column(name, justify=justify, overflow="fold")
    for line in record["lines"]:
        cells = [
            render.clean(render.spend_entity(line)),
            render.clean(render.spend_group(line)),
            f"${line['spend']:,.4f}",
            f"{line['share']:.1%}",
            f"{line['requests']:,}",
            f"{line['prompt_tokens']:,}",
            f"{line['completion_tokens']:,}",
            f"{line['failures']:,}",
            f"{line['cache_hits']:,}",
        ]
        table.add_row(*([line["period"]] if by_period else []), *cells)
    out.print(table)
    for said in render.spend_summary(record):
        out.print(render.clean(said))
