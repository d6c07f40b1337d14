"""Renderers of one ScanResult: a Rich table for people, JSON/CSV/Markdown for machines and mail.

Every value that came from the database is user input (key aliases, model names): it is escaped
for the medium it lands in.
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from collections import defaultdict
from typing import TYPE_CHECKING

from auditor.audit.findings import SEVERITY_RANK, ScanResult, over_budget_phrase

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# What a terminal, a spreadsheet or a page could act on: C0/C1 controls (ESC starts ANSI/OSC sequences), DEL,
# and the Unicode bidi overrides and isolates that reorder what is shown (CVE-2021-42574). Line breaks and tabs
# become spaces (a line of output stays one line); the rest is dropped.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS = re.compile("[\t\n\u0085\u2028\u2029]")
if TYPE_CHECKING:
    from rich.console import Console
CSV_FIELDS = (
    "severity",
    "kind",
    "scope",
    "entity_id",
    "entity_alias",
    "budget_model",
    "model_group",
    "model",
    "time_period",
    "window_start",
    "window_end",
    "budget_limit",
    "logged_spend",
    "cached_spend",
    "requests_after_limit",
    "spend_after_limit",
    "counter_source",
    "counter_key",
    "message",
)


def plain(text: object) -> str:
    """Database text made inert for any medium: one line, no control characters or escape sequences.
    The one sanitiser every renderer uses (terminal, Markdown, CSV, HTML) before its own escaping. A lone
    surrogate (JSON text in SQLite can hold one) becomes `?`: no output encoding can write it."""
    text = _CONTROL.sub("", _BREAKS.sub(" ", str(text)))
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def clean(text: object) -> str:
    """Terminal-safe: plain() and Rich markup escaped, so `[bold]` prints as typed. (Rich is imported where it is
    used, so the library's report, which renders Markdown and HTML with this module, loads no Rich.)"""
    from rich.markup import escape

    return escape(plain(text))


def render_json(record: dict) -> str:
    """`scan --format json` and the report's JSON file: one top-level key a line, and one item a line of each list
    (findings, spend lines, resolutions), easy to grep and diff, written by json's C encoder, which
    json.dumps(indent=...) gives up for its pure-Python one (1 s for the 7.6 MB report of 2,000 keys)."""

    def value(v: object) -> str:
        if isinstance(v, list) and v:
            return "[\n" + ",\n".join("    " + json.dumps(item) for item in v) + "\n  ]"
        return json.dumps(v)

    return "{\n" + ",\n".join(f"  {json.dumps(k)}: {value(v)}" for k, v in record.items()) + "\n}\n"


def to_json(result: ScanResult) -> str:
    return render_json(result.as_record())


def to_csv(result: ScanResult) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for finding in result.as_record()["findings"]:
        writer.writerow({k: _csv_cell(finding.get(k)) for k in CSV_FIELDS})
    return buffer.getvalue()


def _csv_cell(value: object) -> object:
    """Spreadsheets run text cells that start with = + - @ (after blanks, tabs or CRs) as formulas: prefix a quote (OWASP).
    Numbers stay numbers: they come typed from the record, so a real negative amount is never quoted."""
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    value = plain(value)  # first: "\x1b=cmd" or "\t=cmd" must not hide the "="
    if value.lstrip(" ")[:1] in ("=", "+", "-", "@"):
        value = "'" + value
    return value


def md_text(text: object) -> str:
    """Database text in a Markdown line or table cell: plain, every character Markdown acts on backslashed."""
    escaped = plain(text)
    for char in "\\`*_{}[]<>()#+!|&~":
        escaped = escaped.replace(char, "\\" + char)
    return escaped


def to_markdown(result: ScanResult) -> str:
    return scan_markdown(result.as_record())


def scan_markdown(record: dict) -> str:
    """The scan's Markdown from its JSON record (or a report's, which holds it)."""
    totals, rows = record["totals"], record["rows"]
    lines = [
        f"# auditor scan, as of {record['as_of']}",
        "",
        f"- money leaked past working limits: **${totals['money_leaked']:,.4f}**",
        f"- {over_budget_phrase(record)}",
        f"- counters drifting: **{totals['counters_drifting']}**",
        f"- rows: {rows['read']:,} read = {rows['attributed']:,} attributed + {rows['unresolved']:,} unresolved + {rows['ignored']:,} ignored",
        "",
    ]
    if record["findings"]:
        lines += ["| severity | kind | entity | budget | message |", "|---|---|---|---|---|"]
        for f in record["findings"]:
            entity = f["entity_alias"] or (f["entity_id"] or "")[:12]
            lines.append(
                f"| {f['severity']} | {f['kind']} | {md_text(entity)} | {md_text(f['budget_model'] or f['model'] or '')} | {md_text(f['message'])} |"
            )
    else:
        lines.append("No findings.")
    for note in record["notes"]:
        lines += ["", f"> {md_text(note)}"]
    return "\n".join(lines) + "\n"


def _usd(value: object) -> str:
    return "" if value is None else f"${value:,.4f}"


def _why_over(f: dict, findings: list[dict]) -> str:
    """Why an over_budget window happened, from the entity's other findings about the same entry."""
    if f["severity"] != "error":
        return "only the crossing request overshot (what a working limiter does)"
    same = [g for g in findings if g is not f and g["budget_model"] == f["budget_model"]]
    if f["budget_model"] is None:
        lagging = [g for g in same if g["kind"] == "counter_drift" and g["counter_source"] in ("spend", "redis_spend")]
        return (
            f"lagging spend: {lagging[0]['counter_source']} holds {_usd(lagging[0]['cached_spend'])}"
            if lagging
            else "the spend LiteLLM read was under the budget"
        )
    miskeyed = [g for g in same if g["kind"] == "miskeyed_counter" and g["counter_source"] in ("redis", "budget_window_spend")]
    drift = [g for g in same if g["kind"] == "counter_drift" and g["counter_source"] in ("redis", "budget_window_spend")]
    missing = [g for g in drift if g["cached_spend"] == 0.0]
    if miskeyed:
        return f"counter under another name ({miskeyed[0]['model']}): enforcement read none"
    if missing:
        return "no counter where enforcement reads: LiteLLM read $0"
    if drift:
        return f"lagging counter: {_usd(drift[0]['cached_spend'])} cached for {_usd(drift[0]['logged_spend'])} spent"
    return "the counter enforcement read was behind the ledger"


_EXPLAIN_FLAG = {"key": "", "team": "--team ", "user": "--user ", "end_user": "--end-user "}


def next_commands(findings: list[dict]) -> list[str]:
    """What to run next for one entity: its story, and the repair when a counter it owns is wrong."""
    scope, entity = findings[0]["scope"], findings[0]["entity_alias"] or findings[0]["entity_id"]
    if scope not in _EXPLAIN_FLAG or not entity:
        return []
    ref = shlex.quote(
        entity if scope != "key" or not findings[0]["entity_alias"] or "(deleted)" in entity else findings[0]["entity_alias"]
    )
    commands = [f"auditor explain {_EXPLAIN_FLAG[scope]}{ref}"]
    repairable = any(
        f["kind"] in ("counter_drift", "miskeyed_counter") and f["counter_source"] in ("redis", "budget_window_spend")
        for f in findings
    )
    if scope == "key" and repairable:
        commands.append(f"auditor backfill --key {ref}")
    return commands


def print_table(result: ScanResult, console: Console) -> None:
    """One table per entity with findings, worst first, then the totals line."""
    from rich.table import Table

    record = result.as_record()
    by_entity: dict[str, list[dict]] = defaultdict(list)
    for finding in record["findings"]:
        alias, entity = finding["entity_alias"], finding["entity_id"]
        name = f"{alias} ({entity[:8]}…)" if alias and entity else alias or (f"{entity[:12]}…" if entity else "models")
        by_entity[f"{finding['scope'] or 'deployment'}: {name}"].append(finding)
    if not by_entity:
        console.print("[green]No findings.[/]")

    def weight(item: tuple[str, list[dict]]) -> tuple:
        """Worst first: highest severity, then the most money leaked."""
        findings = item[1]
        worst = max(SEVERITY_RANK[f["severity"]] for f in findings)
        return (-worst, -sum(f["spend_after_limit"] or 0.0 for f in findings), item[0])

    for entity, findings in sorted(by_entity.items(), key=weight):
        leaked = sum(f["spend_after_limit"] or 0.0 for f in findings)
        leaking = sum(1 for f in findings if f["kind"] == "over_budget" and f["severity"] == "error")
        caption = f"{_usd(leaked)} leaked in {leaking} window{'s' if leaking != 1 else ''}" if leaking else None
        table = Table(
            title=clean(entity),
            title_justify="left",
            title_style="bold",
            header_style="bold",
            expand=False,
            caption=caption,
            caption_justify="left",
        )
        table.add_column("severity", no_wrap=True)
        table.add_column("kind", no_wrap=True)
        table.add_column("budget / model", max_width=28, overflow="fold")
        table.add_column("window start (UTC)", no_wrap=True)
        table.add_column("logged", justify="right", no_wrap=True)
        table.add_column("limit", justify="right", no_wrap=True)
        table.add_column("cached", justify="right", no_wrap=True)
        table.add_column("after limit", justify="right", no_wrap=True)
        table.add_column("why", ratio=1, overflow="fold")
        for f in sorted(findings, key=lambda f: (f["kind"], f["budget_model"] or "", f["window_start"] or "")):
            after = f"{f['requests_after_limit']} · {_usd(f['spend_after_limit'])}" if f["requests_after_limit"] else ""
            table.add_row(
                f"[{SEVERITY_STYLE[f['severity']]}]{f['severity']}[/]",
                f["kind"],
                clean(f["budget_model"] or f["model"] or f["model_group"] or ""),
                (f["window_start"] or "")[:16].replace("T", " "),
                _usd(f["logged_spend"]),
                _usd(f["budget_limit"]),
                _usd(f["cached_spend"]),
                after,
                clean(_why_over(f, findings) if f["kind"] == "over_budget" else f["message"]),
            )
        console.print(table)
        nexts = next_commands(findings)
        if nexts:
            console.print("  next: " + " · ".join(clean(n) for n in nexts), soft_wrap=True, highlight=False)
    totals, rows = record["totals"], record["rows"]
    ignored = ", ".join(f"{n:,} {reason}" for reason, n in rows["ignored_by_reason"].items()) or "none"
    console.print(
        f"[bold]${totals['money_leaked']:,.4f} leaked[/] past limits that should have held · "
        f"{over_budget_phrase(record)} · "
        f"{totals['counters_drifting']} counters drifting"
    )
    console.print(
        f"rows: {rows['read']:,} read = {rows['attributed']:,} attributed + {rows['unresolved']:,} unresolved + "
        f"{rows['ignored']:,} ignored ({ignored})"
    )
    for note in record["notes"]:
        console.print(f"[dim]note: {clean(note)}[/]")


# --------------------------------------------------------------------------------------------------
# `auditor spend`: its table's record (spend.SpendTable.record()) as JSON, CSV, Markdown; the Rich table lives with
# the command, and the report's Markdown reuses spend_markdown


SPEND_CSV_FIELDS = (
    "period",
    "entity_id",
    "entity_alias",
    "model_group",
    "spend",
    "share",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "failures",
    "cache_hits",
    "aliases",
    "unresolved_models",
)


def spend_json(record: dict) -> str:
    return json.dumps(record, indent=2) + "\n"


def spend_csv(record: dict) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SPEND_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for line in record["lines"]:
        row = dict(line, aliases=" ".join(line["aliases"]), unresolved_models=" ".join(line["unresolved_models"]))
        writer.writerow({k: _csv_cell(row[k]) for k in SPEND_CSV_FIELDS})
    return buffer.getvalue()


def spend_group(line: dict) -> str:
    """A line's model group as people read it: the router aliases its requests named, or the models no group has."""
    if line["model_group"] is None:
        return "(unresolved: " + ", ".join(line["unresolved_models"]) + ")" if line["unresolved_models"] else "(unresolved)"
    return line["model_group"] + (" (via alias " + ", ".join(line["aliases"]) + ")" if line["aliases"] else "")


def spend_entity(line: dict) -> str:
    if line["entity_id"] is None:
        return "(none)"
    return f"{line['entity_alias']} ({line['entity_id'][:8]}…)" if line["entity_alias"] else line["entity_id"]


def spend_summary(record: dict) -> list[str]:
    """The lines under the table: total, what --top left out, rows not charged."""
    period = record["period"]
    said = [
        f"total {_usd(record['total_spend'])} in {record['total_requests']:,} charged requests ({record['by']} x model group"
        + (f" x {period}, {record['timezone']}" if period != "total" else "")
        + ")"
    ]
    if record["omitted"]:
        left = record["omitted"]
        said.append(f"--top left out {left['entities']} more entities: {_usd(left['spend'])} in {left['requests']:,} requests")
    if record["ignored_by_reason"]:
        said.append("not charged: " + ", ".join(f"{n:,} {why}" for why, n in record["ignored_by_reason"].items()))
    if record["by"] == "tag":
        said.append("a request with several tags is counted under each, so tags add up to more than the ledger")
    return said


def spend_markdown(record: dict) -> str:
    lines = [
        "| period | entity | model group | spend | share | requests | prompt tokens | completion tokens | failures | cache hits |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for line in record["lines"]:
        lines.append(
            f"| {line['period'] or 'total'} | {md_text(spend_entity(line))} | {md_text(spend_group(line))} | "
            f"{_usd(line['spend'])} | {line['share']:.1%} | {line['requests']:,} | {line['prompt_tokens']:,} | "
            f"{line['completion_tokens']:,} | {line['failures']:,} | {line['cache_hits']:,} |"
        )
    return "\n".join(lines + [""] + [f"- {md_text(s)}" for s in spend_summary(record)]) + "\n"
