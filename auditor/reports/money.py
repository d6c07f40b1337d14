"""The report's "where the money went": the `money` key of its JSON (spend.overview), its Markdown section and the
HTML section's stacked chart of daily spend per model group. Pure: plain dicts in, text and geometry out.
"""

from __future__ import annotations

import math

from auditor.reports.document import Axes, _usd4

SERIES = 7  # model groups drawn on their own; the rest (and unresolved models) stack as one "other" series
_MARGINS = (58, 16, 16, 34)  # left, right, top, bottom


def money_markdown(money: dict | None) -> str:
    """The top entities' table (as `auditor spend --top` prints it) and each model group's total."""
    if not money:
        return ""
    from auditor.reports.render import md_text, spend_markdown

    lines = [
        "",
        "## Where the money went",
        "",
        spend_markdown(money["table"]).rstrip("\n"),
        "",
        "| model group | spend | share | requests |",
        "|---|---:|---:|---:|",
    ]
    for g in money["model_groups"]:
        name = g["model_group"] if g["model_group"] is not None else "(unresolved)"
        name += f" (via alias {', '.join(g['aliases'])})" if g["aliases"] else ""
        lines.append(f"| {md_text(name)} | {_usd4(g['spend'])} | {g['share']:.1%} | {g['requests']:,} |")
    return "\n".join(lines) + "\n"


def daily_chart(money: dict) -> dict | None:
    """Stacked bars, one per local day, a segment per model group (largest groups first, from the bottom)."""
    days, series = money["daily"]["days"], money["daily"]["series"]
    if not days:
        return None
    named = [s for s in series if s["model_group"] is not None][:SERIES]
    rest = [s for s in series if s not in named]
    stacks = [{"label": s["model_group"], "spend": s["spend"], "tone": f"mg{n}"} for n, s in enumerate(named)]
    if rest:
        label = "unresolved models" if all(s["model_group"] is None for s in rest) else f"{len(rest)} other model groups"
        stacks.append(
            {"label": label, "spend": [math.fsum(s["spend"][i] for s in rest) for i in range(len(days))], "tone": "mgx"}
        )
    totals = [math.fsum(s["spend"][i] for s in stacks) for i in range(len(days))]
    axes = Axes.fit(max(totals), _MARGINS)
    plot_w, y = axes.plot_w, axes.y

    slot = plot_w / len(days)
    bar_w = min(slot * 0.78, 40.0)
    label_every = max(1, math.ceil(len(days) / max(1, int(plot_w // 52))))
    bars = []
    for i, day in enumerate(days):
        x = axes.left + i * slot + (slot - bar_w) / 2
        base, segments = 0.0, []
        for s in stacks:
            value = s["spend"][i]
            if value > 0:
                segments.append(
                    {
                        "y": y(base + value),
                        "h": round(y(base) - y(base + value), 2),
                        "tone": s["tone"],
                        "tip": f"{day} {s['label']}: {_usd4(value)}",
                    }
                )
            base += value
        bars.append(
            {
                "x": round(x, 2),
                "w": round(bar_w, 2),
                "segments": segments,
                "total": totals[i],
                "tip": f"{day}: {_usd4(totals[i])}",
                "tick": day[5:] if i % label_every == 0 else None,
                "tick_x": round(x + bar_w / 2, 2),
            }
        )
    return {
        "bars": bars,
        "ticks": axes.ticks(),
        "legend": [{"label": s["label"], "tone": s["tone"], "spend": math.fsum(s["spend"])} for s in stacks],
        **axes.frame(),
        "aria": f"daily spend per model group over {len(days)} days, {money['table']['timezone']}",
    }


def money_view(money: dict | None) -> dict | None:
    """What the page's section lays out: the top entities' lines, the groups, the chart."""
    if not money:
        return None
    from auditor.reports.render import spend_entity, spend_group

    table = money["table"]
    return {
        "lines": [dict(line, entity=spend_entity(line), group=spend_group(line)) for line in table["lines"]],
        "groups": money["model_groups"],
        "total": table["total_spend"],
        "requests": table["total_requests"],
        "timezone": table["timezone"],
        "omitted": table["omitted"],
        "chart": daily_chart(money),
    }
