"""The scheduled report: one scan written as dated JSON, Markdown and a self-contained HTML page.

Pure apart from `prepare_out_dir` and `write_reports`: the record, the summary figures, the charts' geometry
and the rendered texts are computed from one ScanResult and the run's metadata.

The JSON is the scan contract (`auditor/scan.schema.json`) with the report's own keys in front of it:
`{"run": {...}, "changes": null, "coverage": {...}, "money": {...}, ...scan contract...}`. Dropping REPORT_KEYS gives back
exactly what `auditor scan --format json` prints, so the scan's schema still validates it;
`auditor/report.schema.json` describes the report's keys. `changes` is what changed since the previous
run recorded in the history (auditor/reports/history.py): `{"previous_run", "previous_as_of", "new", "still_open",
"resolved", "counts", "finding_ids", "resolved_findings"}`, finding ids aligned with `findings`.

Every value that came from the database (key aliases, model names, counter keys) is user input: the HTML
is rendered by Jinja2 with autoescape on, and the charts are SVG elements in the template, so their text
is escaped the same way.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from auditor.audit.findings import (
    AMBIGUOUS_MODEL,
    OVER_BUDGET,
    SEVERITY_RANK,
    UNRESOLVED_MODEL,
    ScanResult,
    iso,
    over_budget_phrase,
)
from auditor.errors import UnavailableError
from auditor.output import write_atomic

REPORT_VERSION = 1
REPORT_KEYS = ("run", "changes", "coverage", "money")
FORMATS = ("json", "md", "html")  # also the files' extensions
PREFIX = "auditor-report-"
_TEMPLATES = Path(__file__).resolve().parent / "templates"


# --------------------------------------------------------------------------------------------------
# The record


@dataclass(frozen=True)
class Run:
    """What the report says about the run that produced it (`run` in the JSON)."""

    id: str
    started_at: datetime  # naive UTC, wall clock (as_of may be fixed by --now)
    duration_s: float
    options: dict
    files: dict[str, str] = field(default_factory=dict)  # format -> file name in the output directory
    auditor_version: str = ""
    incremental: dict | None = None  # checkpoint.Increment.record(): full or incremental, and what was read

    def as_record(self) -> dict:
        return {
            "id": self.id,
            "report_version": REPORT_VERSION,
            "auditor_version": self.auditor_version,
            "started_at": iso(self.started_at),
            "duration_s": round(self.duration_s, 3),
            "options": self.options,
            "files": dict(self.files),
            **({"incremental": self.incremental} if self.incremental is not None else {}),
        }


def file_stem(as_of: datetime) -> str:
    """auditor-report-20261122T000000Z: the instant the scan is judged at, sortable as text."""
    return f"{PREFIX}{as_of:%Y%m%dT%H%M%SZ}"


def file_names(as_of: datetime, formats: tuple[str, ...]) -> dict[str, str]:
    stem = file_stem(as_of)
    return {fmt: f"{stem}.{fmt}" for fmt in formats}


def build_record(result: ScanResult, run: Run, changes: dict | None = None, money: dict | None = None) -> dict:
    """The report's JSON: its own keys first, then the scan contract unchanged. `money` is where the money went
    (spend.overview; report.money renders it)."""
    scan = result.as_record()
    return {"run": run.as_record(), "changes": changes, "coverage": coverage(scan, result.resolutions), "money": money, **scan}


def scan_part(record: dict) -> dict:
    """What `auditor scan --format json` would have printed: validates against scan.schema.json."""
    return {k: v for k, v in record.items() if k not in REPORT_KEYS}


def coverage(scan: dict, resolutions: list[dict]) -> dict:
    """Charged rows (and spend) by how the resolver placed their model: one bucket per rule, and the
    unresolved / ambiguous models by name. `resolutions` is the scan's, one dict per distinct triple."""
    unplaced = [
        {"status": r["status"], "model": r["model"], "model_group": r["model_group"], "rows": r["rows"], "spend": r["spend"]}
        for r in resolutions
        if r["status"] != "resolved"
    ]
    unplaced.sort(key=lambda m: (-m["spend"], -m["rows"], m["model"] or ""))
    rows = scan["rows"]
    buckets: dict[tuple[str, str | None], list] = defaultdict(lambda: [0, 0.0])
    for r in resolutions:
        rule = r.get("rule") if r["status"] != "unresolved" else None
        buckets[(r["status"], rule)][0] += int(r["rows"])
        buckets[(r["status"], rule)][1] += float(r["spend"])
    by = [{"status": s, "rule": rule, "rows": n, "spend": round(spend, 6)} for (s, rule), (n, spend) in buckets.items()]
    basis = "resolutions"
    order = {"resolved": 0, "ambiguous": 1, "unresolved": 2}
    by.sort(key=lambda b: (order[b["status"]], -b["rows"], b["rule"] or ""))
    spends = [b["spend"] for b in by]
    return {
        "basis": basis,
        "charged_rows": rows["attributed"] + rows["unresolved"],
        "charged_spend": None if None in spends else round(math.fsum(spends), 6),
        "by_provenance": by,
        "unplaced_models": unplaced,
    }


# --------------------------------------------------------------------------------------------------
# Summary figures and the one-line summary


def figures(record: dict) -> dict:
    """The four figures at the top of the report, and what the summary line says."""
    findings, totals = record["findings"], record["totals"]
    over = [f for f in findings if f["kind"] == OVER_BUDGET]
    keys_over = {f["entity_id"] for f in over if f["scope"] == "key"}
    keys_leaking = {f["entity_id"] for f in over if f["scope"] == "key" and f["severity"] == "error"}
    unplaced = [f for f in findings if f["kind"] in (UNRESOLVED_MODEL, AMBIGUOUS_MODEL)]
    by_severity = totals["findings_by_severity"]
    return {
        "money_leaked": totals["money_leaked"],
        "money_over_budget": totals["money_over_budget"],
        "keys_over_budget": len(keys_over),
        "keys_leaking": len(keys_leaking),
        "other_entities_over_budget": totals["entities_over_budget"] - len(keys_over),
        "counters_drifting": totals["counters_drifting"],
        "miskeyed_counters": sum(1 for f in findings if f["kind"] == "miskeyed_counter"),
        "unresolved_spend": round(math.fsum(f["logged_spend"] or 0.0 for f in unplaced), 6),
        "unresolved_rows": record["rows"]["unresolved"],
        "charged_rows": record["rows"]["attributed"] + record["rows"]["unresolved"],
        "errors": by_severity.get("error", 0),
        "warnings": by_severity.get("warning", 0),
        "infos": by_severity.get("info", 0),
        "findings": len(findings),
    }


def summary_line(record: dict, report_path: str | None = None) -> str:
    """One line for cron mail: what was found and where the report is."""
    fig = figures(record)
    where = f"; report {report_path}" if report_path else ""
    if not fig["findings"]:
        return f"auditor: no findings{where}"
    counts = ", ".join(
        f"{n} {word}{'s' if n != 1 and word != 'info' else ''}"
        for n, word in ((fig["errors"], "error"), (fig["warnings"], "warning"), (fig["infos"], "info"))
        if n
    )
    return (
        f"auditor: {counts}: {_usd2(fig['money_leaked'])} leaked past budgets, "
        f"{over_budget_phrase(record)}, "
        f"{fig['counters_drifting']} counter{'s' if fig['counters_drifting'] != 1 else ''} drifting, "
        f"{_usd2(fig['unresolved_spend'])} unresolved spend ({fig['unresolved_rows']:,} rows){where}"
    )


# --------------------------------------------------------------------------------------------------
# Renderers


def scan_line(record: dict) -> str | None:
    """One line on how the run read the ledger: incremental from a checkpoint, or full (and why, when an
    incremental run was asked for)."""
    run = record.get("run") or {}
    inc = run.get("incremental")
    if not inc:
        return None
    rows = f"{inc['rows_read']:,} spend log{'s' if inc['rows_read'] != 1 else ''}"
    if inc["mode"] == "incremental":
        line = (
            f"incremental: read the {rows} that ended since {_when(inc['checkpoint_cut'])} UTC, "
            f"the cut of run {inc['checkpoint_run'][:8]}'s checkpoint"
        )
    else:
        line = f"full scan of {rows}" + (f" (incremental asked for: {inc['fallback']})" if inc["fallback"] else "")
    if inc["checkpoint_stored"]:
        return f"{line}; this run's checkpoint is cut at {_when(inc['cut'])} UTC"
    return f"{line}; no checkpoint kept" + (f": {inc['not_stored']}" if inc.get("not_stored") else "")


def render_markdown(record: dict) -> str:
    """The scan's Markdown (render.scan_markdown) with the run underneath, for mail bodies."""
    from auditor.reports.render import scan_markdown

    run = record["run"]
    html = run["files"].get("html")
    line = scan_line(record)
    tail = [
        "",
        "---",
        *([f"{_md_text(line[0].upper() + line[1:])}.", ""] if line else []),
        f"run `{run['id']}`, {run['duration_s']:.1f} s, auditor {run['auditor_version']}"
        + (f"; charts and resolver coverage: `{html}`" if html else ""),
    ]
    from auditor.reports.money import money_markdown

    return scan_markdown(record) + changes_markdown(record) + money_markdown(record.get("money")) + "\n".join(tail) + "\n"


CHANGES_LISTED = 50  # findings listed per group in the Markdown and HTML; the JSON has every id


def changes_view(record: dict) -> dict | None:
    """The changes since the previous run as the Markdown and the page show them."""
    changes = record.get("changes")
    if not changes:
        return None
    from auditor.reports.history import describe

    by_id = dict(zip(changes["finding_ids"], record["findings"]))
    new = [{"id": i, "line": describe(by_id[i]), "severity": by_id[i]["severity"]} for i in changes["new"]]
    new.sort(key=lambda f: -SEVERITY_RANK[f["severity"]])
    resolved = [{"id": f["id"], "line": describe(f), "severity": f["severity"]} for f in changes["resolved_findings"]]
    counts = changes["counts"]
    return {
        "previous_run": changes["previous_run"],
        "previous_as_of": changes["previous_as_of"],
        "counts": counts,
        "new": new[:CHANGES_LISTED],
        "new_more": max(0, len(new) - CHANGES_LISTED),
        "resolved": resolved[:CHANGES_LISTED],
        "resolved_more": max(0, len(resolved) - CHANGES_LISTED),
    }


def changes_markdown(record: dict) -> str:
    view = changes_view(record)
    if view is None:
        return ""
    c = view["counts"]
    if view["previous_run"]:
        head = (
            f"Since run `{view['previous_run']}` (as of {view['previous_as_of']}): **{c['new']} new** "
            f"({c['new_errors']} error{'s' if c['new_errors'] != 1 else ''}), {c['still_open']} still open, {c['resolved']} resolved."
        )
    else:
        head = f"No previous run recorded: all {c['new']} findings are new."
    lines = ["", "## Since the previous run", "", head]
    for title, key in (("New", "new"), ("Resolved", "resolved")):
        if view[key] and (view["previous_run"] or key == "resolved"):
            lines += ["", f"{title}:", ""]
            lines += [f"- `{f['id']}` {_md_text(f['line'])}" for f in view[key]]
            if view[f"{key}_more"]:
                lines.append(f"- … and {view[f'{key}_more']} more (ids in the JSON)")
    return "\n".join(lines) + "\n"


def _md_text(value: str) -> str:
    """Database text in a Markdown line: no control characters, no markup (the scan's own escaping)."""
    from auditor.reports.render import md_text

    return md_text(value)


def render_html(record: dict) -> str:
    """One self-contained page: inline CSS and SVG, no script, nothing fetched."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=True,  # explicitly on: the template is named .html.j2, which select_autoescape would miss
        finalize=_finalize,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=_usd4, usd2=_usd2, when=_when, short=_short, count=lambda n: f"{n:,}", pct=_pct)
    page = env.get_template("report.html.j2").render(view=html_view(record))
    changes = changes_view(record)
    if changes is None:
        return page
    section = env.from_string(_CHANGES_HTML).render(c=changes)
    at = page.find("<h2>")  # before the first section (entities, other findings or coverage)
    at = at if at >= 0 else page.rfind("</body>")
    return page[:at] + section + page[at:]


# The changes section, inserted into the page by render_html (same environment: autoescaped, finalized).
_CHANGES_HTML = """\
<h2 id="changes">Since the previous run</h2>
{% if c.previous_run %}
<p class="changes-line">Since run <span class="mono">{{ c.previous_run }}</span> (as of {{ c.previous_as_of | when }} UTC): <strong>{{ c.counts.new }} new</strong> ({{ c.counts.new_errors }} error{{ "s" if c.counts.new_errors != 1 }}), {{ c.counts.still_open }} still open, {{ c.counts.resolved }} resolved.</p>
{% else %}
<p class="changes-line">No previous run recorded: all {{ c.counts.new }} findings are new.</p>
{% endif %}
{% for title, key in (("New", "new"), ("Resolved", "resolved")) %}
{% if c[key] and (c.previous_run or key == "resolved") %}
<table class="changes-{{ key }}">
  <thead><tr><th>{{ title }}</th><th>finding</th></tr></thead>
  <tbody>
  {% for f in c[key] %}
    <tr class="sev-{{ f.severity }}"><td class="mono nowrap">{{ f.id }}</td><td class="break">{{ f.line }}</td></tr>
  {% endfor %}
  {% if c[key ~ "_more"] %}<tr><td></td><td class="faint">… and {{ c[key ~ "_more"] }} more (ids in the JSON)</td></tr>{% endif %}
  </tbody>
</table>
{% endif %}
{% endfor %}
"""


def _finalize(value: object) -> object:
    """Before escaping: no control characters from the database reach the page."""
    from auditor.reports.render import plain

    return plain(value) if isinstance(value, str) else ("" if value is None else value)


def _usd4(value: float | None) -> str:
    return "—" if value is None else f"${value:,.4f}"


def _usd2(value: float | None) -> str:
    if value is None:
        return "—"
    return f"${value:,.2f}" if value == 0 or abs(value) >= 0.01 else f"${value:,.4f}"


def _pct(part: float, whole: float) -> str:
    if not whole:
        return "—"
    share = 100 * part / whole
    return "<0.1%" if 0 < share < 0.1 else f"{share:.1f}%"


def _when(value: str | None) -> str:
    """2026-11-02T10:15:10.604Z -> 2026-11-02 10:15."""
    return (value or "")[:16].replace("T", " ")


def _short(entity_id: str | None, n: int = 12) -> str:
    if not entity_id:
        return ""
    return entity_id if len(entity_id) <= n + 2 else entity_id[:n] + "…"


# --------------------------------------------------------------------------------------------------
# The HTML page's view: plain dicts and numbers; the template only lays them out


def html_view(record: dict) -> dict:
    from auditor.reports.money import money_view

    fig = figures(record)
    findings = record["findings"]
    entities, other = _entities(record)
    cov = record.get("coverage") or coverage(scan_part(record), [])
    return {
        "record": record,
        "run": record.get("run"),
        "figures": fig,
        "entities": entities,
        "other_findings": other,
        "coverage": cov,
        "coverage_bar": _coverage_bar(cov),
        "unplaced": cov["unplaced_models"],
        "severity_total": len(findings),
        "scan_line": scan_line(record),
        "money": money_view(record.get("money")),
        "title": f"auditor report {_when(record['as_of'])} UTC: {_usd2(fig['money_leaked'])} leaked",
    }


def _entity_weight(entity: dict) -> tuple:
    """Worst first: highest severity, then the most money leaked, then the name."""
    return (-entity["worst_rank"], -entity["leaked"], -entity["over_windows"], entity["label"], entity["entity_id"])


def _entities(record: dict) -> tuple[list[dict], list[dict]]:
    """Findings grouped per entity, worst first; those about no entity other than unplaced models (which
    the resolver coverage section lists) go to "Other findings"."""
    by_entity: dict[tuple[str, str], list[dict]] = defaultdict(list)
    other = []
    for f in record["findings"]:
        if f["scope"] and f["entity_id"]:
            by_entity[(f["scope"], f["entity_id"])].append(f)
        elif f["kind"] not in (UNRESOLVED_MODEL, AMBIGUOUS_MODEL):
            other.append(f)
    windows: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for s in record["spend"]:
        windows[(s["scope"], s["entity_id"], s["budget_model"])].append(s)
    entities = []
    for (scope, entity_id), found in by_entity.items():
        over = [f for f in found if f["kind"] == OVER_BUDGET]
        leaking = [f for f in over if f["severity"] == "error"]
        alias = next((f["entity_alias"] for f in found if f["entity_alias"]), None)
        ratios = [f["logged_spend"] / f["budget_limit"] for f in over if f["budget_limit"] and f["logged_spend"] is not None]
        entities.append(
            {
                "scope": scope,
                "scope_label": scope.replace("_", " "),
                "entity_id": entity_id,
                "label": alias or entity_id,
                "has_alias": bool(alias),
                "findings": [{**f, "subject": _subject(f)} for f in sorted(found, key=_finding_order)],
                "worst": max((f["severity"] for f in found), key=SEVERITY_RANK.__getitem__),
                "worst_rank": max(SEVERITY_RANK[f["severity"]] for f in found),
                "counts": {s: sum(1 for f in found if f["severity"] == s) for s in ("error", "warning", "info")},
                "leaked": math.fsum(f["spend_after_limit"] or 0.0 for f in over),
                "leaked_requests": sum(f["requests_after_limit"] or 0 for f in over),
                "over_windows": len(over),
                "leaking_windows": len(leaking),
                "max_ratio": max(ratios, default=None),
                "charts": _charts(scope, entity_id, found, windows),
            }
        )
    entities.sort(key=_entity_weight)
    for n, entity in enumerate(entities, 1):
        entity["anchor"] = f"entity-{n}"
    return entities, sorted(other, key=_finding_order)


def _subject(f: dict) -> str:
    """What a finding is about, for the table's budget / model column."""
    if f["budget_model"] or f["model"] or f["model_group"]:
        return f["budget_model"] or f["model"] or f["model_group"]
    if f["counter_source"] in ("spend", "total_spend"):
        return f"{f['counter_source']} column"
    return "max_budget (all models)" if f["kind"] == OVER_BUDGET else ""


def _finding_order(f: dict) -> tuple:
    return (
        f["kind"] != OVER_BUDGET,
        -SEVERITY_RANK[f["severity"]] if f["kind"] != OVER_BUDGET else 0,
        f["kind"],
        f["budget_model"] or "",
        f["window_start"] or "",
        f["counter_key"] or "",
        f["model"] or "",
    )


# Chart geometry (SVG user units; the SVG scales to the page width through its viewBox)
CHART_W, CHART_H = 760, 236
_MARGINS = (58, 66, 24, 34)  # left, right, top, bottom; the budget line is labelled in the right margin


@dataclass(frozen=True)
class Axes:
    """A bar chart's plot area inside CHART_W x CHART_H and its y scale, from 0 to a round number above the
    tallest bar: what the window charts and the daily spend chart share."""

    left: int
    right: int
    top: int
    bottom: int
    y_max: float
    step: float

    @classmethod
    def fit(cls, tallest: float, margins: tuple[int, int, int, int]) -> Axes:
        step = _nice_step((tallest or 1.0) * 1.04)
        return cls(*margins, y_max=math.ceil((tallest or 1.0) * 1.04 / step) * step, step=step)

    @property
    def plot_w(self) -> float:
        return CHART_W - self.left - self.right

    @property
    def plot_h(self) -> float:
        return CHART_H - self.top - self.bottom

    def y(self, value: float) -> float:
        return round(self.top + self.plot_h - min(value, self.y_max) / self.y_max * self.plot_h, 2)

    def ticks(self) -> list[dict]:
        found, value = [], 0.0
        while value <= self.y_max + self.step / 1000:
            found.append({"y": self.y(value), "label": _tick(value, self.step)})
            value += self.step
        return found

    def frame(self) -> dict:
        """The template's plot-area keys."""
        return {
            "width": CHART_W,
            "height": CHART_H,
            "left": self.left,
            "right": CHART_W - self.right,
            "top": self.top,
            "bottom": CHART_H - self.bottom,
            "tick_y": CHART_H - self.bottom + 15,
        }


def _charts(scope: str, entity_id: str, found: list[dict], windows: dict) -> list[dict]:
    """One chart per budget entry of the entity that a finding names with its limit and that has windows."""
    limits: dict[str, float] = {}
    for f in found:
        if f["budget_model"] and f["budget_limit"] is not None:
            limits.setdefault(f["budget_model"], f["budget_limit"])
    over = {(f["budget_model"], f["window_start"]): f for f in found if f["kind"] == OVER_BUDGET and f["budget_model"]}
    charts = []
    for budget_model, limit in sorted(limits.items()):
        history = sorted(windows.get((scope, entity_id, budget_model), []), key=lambda s: s["window_start"])
        if history:
            charts.append(chart(budget_model, limit, history, {w: f for (m, w), f in over.items() if m == budget_model}))
    return charts


def chart(budget_model: str, limit: float | None, history: list[dict], over: dict[str, dict]) -> dict:
    """Bars of spend per window; the part above the budget line in red (requests admitted after the limit:
    leaked) or amber (only the crossing request overshot). Returns geometry for the template's SVG."""
    axes = Axes.fit(max([s["logged_spend"] for s in history] + [limit or 0.0]), _MARGINS)
    plot_w, y = axes.plot_w, axes.y
    n = len(history)
    slot = plot_w / n
    bar_w = min(slot * 0.72, 56.0)
    label_every = max(1, math.ceil(n / max(1, int(plot_w // 58))))
    days = [s["window_start"][:10] for s in history]
    same_day = len(set(days)) < len(days)
    bars = []
    for i, s in enumerate(history):
        spend = s["logged_spend"]
        x = axes.left + i * slot + (slot - bar_w) / 2
        finding = over.get(s["window_start"])
        within = min(spend, limit) if limit is not None else spend
        excess = spend - limit if limit is not None and spend > limit else 0.0
        tone = None
        if excess > 0:
            tone = "leak" if finding is not None and finding["severity"] == "error" else "overshoot"
        ratio = spend / limit if limit else None
        start = _parse(s["window_start"])
        tip = (
            f"{_when(s['window_start'])} → {_when(s['window_end'])} UTC: {_usd4(spend)}"
            + (f" against {_usd4(limit)} ({ratio:.1f}× the budget)" if ratio is not None else "")
            + f", {s['requests']:,} requests"
            + (
                f"; {finding['requests_after_limit']} admitted after the limit ({_usd4(finding['spend_after_limit'])})"
                if finding is not None and finding["requests_after_limit"]
                else ""
            )
        )
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "within_y": y(within),
                "within_h": round(y(0) - y(within), 2),
                "excess_y": y(spend),
                "excess_h": round(y(limit) - y(spend), 2) if excess else 0.0,
                "tone": tone,
                "ratio": _ratio(ratio) if tone and ratio is not None and ratio >= 1.95 and bar_w >= 15 else None,
                "label_x": round(x + bar_w / 2, 2),
                "label_y": round(y(spend) - 4, 2),
                "tick": (f"{start:%d %H:%M}" if same_day else f"{start:%b} {start.day}") if i % label_every == 0 else None,
                "tip": tip,
            }
        )
    leaking = sum(1 for b in bars if b["tone"] == "leak")
    overshooting = sum(1 for b in bars if b["tone"] == "overshoot")
    return {
        "budget_model": budget_model,
        "limit": limit,
        "period": history[0]["time_period"],
        "windows": n,
        "over": leaking + overshooting,
        "leaking": leaking,
        "overshooting": overshooting,
        "max_spend": max(s["logged_spend"] for s in history),
        "leaked": math.fsum((f["spend_after_limit"] or 0.0) for f in over.values()),
        "bars": bars,
        "ticks": axes.ticks(),
        "limit_y": y(limit) if limit is not None else None,
        **axes.frame(),
        "aria": (
            f"{budget_model}: {n} windows of {history[0]['time_period']}, "
            + (f"{leaking + overshooting} above the {_usd4(limit)} budget line" if limit is not None else "no budget line")
        ),
    }


def _ratio(ratio: float) -> str:
    return f"{ratio:.0f}×" if ratio >= 9.95 else f"{ratio:.1f}×"


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.rstrip("Z"))


def _nice_step(span: float, target: int = 5) -> float:
    raw = span / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _tick(value: float, step: float) -> str:
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > step * 1e-9:
        decimals += 1
    return f"${value:,.{decimals}f}"


def _coverage_bar(cov: dict) -> dict:
    """One horizontal bar of charged rows by provenance (a segment per bucket)."""
    total = sum(b["rows"] for b in cov["by_provenance"]) or 1
    width, x, segments = 760.0, 0.0, []
    for n, bucket in enumerate(cov["by_provenance"]):
        w = width * bucket["rows"] / total
        if bucket["rows"]:
            w = max(w, 3.0)
        tone = "resolved" if bucket["status"] == "resolved" else bucket["status"]
        segments.append({"x": round(x, 2), "w": round(w, 2), "tone": tone, "shade": n % 4, **bucket})
        x += w
    return {"segments": segments, "width": round(max(x, width), 2)}


# --------------------------------------------------------------------------------------------------
# Files


def prepare_out_dir(out: str | os.PathLike) -> Path:
    """The output directory, created (mode 0700) when missing, proven writable before the scan runs."""
    path = Path(out)
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(20, "not a directory")
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".auditor-probe.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UnavailableError(f"cannot write reports to {path}: {err.strerror or err}") from None
    return path


def write_reports(out_dir: Path, names: dict[str, str], texts: dict[str, str]) -> list[Path]:
    """Each dated file atomically (temp file, fsync, rename, mode 0600), then latest.<format> the same way.

    A dated file that cannot be written removes the ones this run already wrote, so the directory holds
    every format of a run or none; latest.* are replaced only once every dated file is in place.
    """
    written: list[Path] = []
    try:
        for fmt, text in texts.items():
            path = out_dir / names[fmt]
            write_atomic(path, text)
            written.append(path)
    except UnavailableError:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    for fmt, text in texts.items():
        write_atomic(out_dir / f"latest.{fmt}", text)
    return written
