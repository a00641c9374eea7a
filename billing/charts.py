"""Server-side SVG charts (no JavaScript, no network): spend per day, stacked by model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from html import escape

from routerhub.money import money, usd_text

LABEL_CHAR_PX = 6.5  # width of one character of the 11 px axis labels
OTHER_MODELS = "other"  # the legend's last entry: the models outside it, added up
PALETTE = ["#4f46e5", "#0ea5e9", "#10b981", "#f59e0b", "#ef4444", "#8b5cf6", "#14b8a6", "#64748b"]
LEGEND_MODELS = len(PALETTE) - 1  # the costliest models named in the legend; then "other"


@dataclass(frozen=True)
class StackedBars:
    svg: str
    legend: list[tuple[str, str]]  # (label, colour)
    total: Decimal


def usd_label(value: float) -> str:
    """$0.25, $0.0004, $0.000002: never scientific notation."""
    if value == 0:
        return "$0"
    return "$" + f"{value:.8f}".rstrip("0").rstrip(".")


def _nice_ceiling(value: float) -> float:
    """The smallest 1/2/2.5/5 x 10^k at or above ``value`` (axis maximum)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    return float(next(step * magnitude for step in (1, 2, 2.5, 5, 10) if value <= step * magnitude))


def _colours(
    totals: dict[str, Decimal],
) -> tuple[list[str], dict[str, str], dict[str, Decimal]]:
    """The legend's models (the costliest), each one's colour, and ``totals`` with "other" (the
    models outside the legend, which share its colour) added when there are any; ``totals``
    itself is left as it is."""
    models = sorted((m for m in totals if m != OTHER_MODELS), key=lambda m: -totals[m])
    top = models[:LEGEND_MODELS]
    colours = {m: PALETTE[i] for i, m in enumerate(top)}
    if len(models) <= len(top) and OTHER_MODELS not in totals:  # rows may come added up
        return top, colours, dict(totals)
    colours[OTHER_MODELS] = PALETTE[-1]
    other = sum((totals[m] for m in models[len(top) :]), totals.get(OTHER_MODELS, Decimal(0)))
    return top, colours, totals | {OTHER_MODELS: other}


def _others_merged(costs: dict[str, Decimal], colours: dict[str, str]) -> dict[str, Decimal]:
    """A day's costs with the models outside the legend as one "other" bar segment: a day has
    at most one segment per colour, however many models were used."""
    merged: dict[str, Decimal] = {}
    for model, cost in costs.items():
        name = model if model in colours else OTHER_MODELS
        merged[name] = merged.get(name, Decimal(0)) + cost
    return merged


def spend_chart(rows: list[dict[str, object]], *, days: int, today: date) -> StackedBars:
    """Stacked bars of cost per day and model over the last ``days`` days."""
    start = today - timedelta(days=days - 1)
    by_day: dict[date, dict[str, Decimal]] = {start + timedelta(days=i): {} for i in range(days)}
    totals: dict[str, Decimal] = {}
    for row in rows:
        day, model, cost = row["day"], str(row["model"] or "?"), Decimal(str(row["cost"] or 0))
        if isinstance(day, date) and day in by_day:
            by_day[day][model] = by_day[day].get(model, Decimal(0)) + cost
            totals[model] = totals.get(model, Decimal(0)) + cost
    grand_total = sum(totals.values(), Decimal(0))
    top, colours, totals = _colours(totals)
    if OTHER_MODELS in colours:
        by_day = {day: _others_merged(costs, colours) for day, costs in by_day.items()}
    peak = max((sum(v.values(), Decimal(0)) for v in by_day.values()), default=Decimal(0))
    ceiling = _nice_ceiling(float(peak))
    y_labels = [usd_label(ceiling * i / 4) for i in range(5)]
    # The y labels sit left of the plot: make room for the longest (11 px text ≈ 6.5 px/char).
    left = 12 + math.ceil(max(len(label) for label in y_labels) * LABEL_CHAR_PX)
    width, height, bottom, top_pad = 960, 220, 24, 10
    plot_w, plot_h = width - left - 8, height - bottom - top_pad
    bar_w = plot_w / days
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="Spend per day by model, last {days} days" '
        'xmlns="http://www.w3.org/2000/svg" class="chart">'
    ]
    for i, label in enumerate(y_labels):
        y = top_pad + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ee"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#5d6475">{label}</text>'
        )
    label_every = max(days // 6, 1)
    for index, (day, costs) in enumerate(by_day.items()):
        x = left + index * bar_w + 1
        y = top_pad + plot_h
        day_total = escape(usd_text(money(sum(costs.values(), Decimal(0)))))
        for model, cost in sorted(costs.items(), key=lambda kv: -totals[kv[0]]):
            colour = colours.get(model, colours.get(OTHER_MODELS, PALETTE[-1]))
            h = plot_h * float(cost) / ceiling
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{day:%b %d} · {escape(model)} · {escape(usd_text(money(cost)))} "
                f"(day: {day_total})</title></rect>"
            )
        # Every few days, and always the last one (today), unless a label is too close to it.
        last = index == days - 1
        if (index % label_every == 0 and days - 1 - index >= label_every / 2) or last:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="11" fill="#5d6475">{day:%b %d}</text>'
            )
    parts.append("</svg>")
    legend = [(m, colours[m]) for m in top] + (
        [(OTHER_MODELS, colours[OTHER_MODELS])] if OTHER_MODELS in colours else []
    )
    return StackedBars("".join(parts), legend, grand_total)
