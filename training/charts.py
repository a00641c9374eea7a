"""Server-side SVG of a version's cost-quality report (no scripts, no external assets)."""

from __future__ import annotations

from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 170, 20, 50


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    return [low + (high - low) * i / (count - 1) for i in range(count)]


def _money(value: float) -> str:
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value:.2g}" if value < 0.001 else f"${value:.4f}".rstrip("0")


def cost_quality_svg(report: dict[str, Any]) -> SafeString:
    """The router's curve (tradeoff 0 … 1) with every single model as a labelled point."""
    curve = [(float(p["cost"]), float(p["score"])) for p in report.get("curve", [])]
    models = [
        (m["id"], float(m["mean_cost"]), float(m["mean_score"])) for m in report.get("models", [])
    ]
    if not curve and not models:
        return mark_safe("")
    costs = [c for c, _ in curve] + [c for _, c, _ in models]
    scores = [s for _, s in curve] + [s for _, _, s in models]
    x_high = max(costs) * 1.05 or 1.0
    y_low, y_high = min(scores), max(scores)
    pad = (y_high - y_low) * 0.08 or 0.05
    y_low, y_high = y_low - pad, y_high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(cost: float) -> float:
        return LEFT + cost / x_high * plot_w

    def y(score: float) -> float:
        return TOP + (1 - (score - y_low) / (y_high - y_low)) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-label="Cost and quality of the router and of each single model" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" class="chart-bg"/>',
    ]
    for tick in _ticks(0.0, x_high):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{TOP}" x2="{x(tick):.1f}" y2="{TOP + plot_h}" class="grid"/>'
            f'<text x="{x(tick):.1f}" y="{TOP + plot_h + 18}" class="tick" text-anchor="middle">{escape(_money(tick))}</text>'
        )
    for tick in _ticks(y_low, y_high):
        parts.append(
            f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:.3f}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" class="axis" text-anchor="middle">mean cost per request</text>'
        f'<text x="16" y="{TOP + plot_h / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">mean score</text>'
    )
    if curve:
        points = " ".join(f"{x(c):.1f},{y(s):.1f}" for c, s in sorted(curve))
        parts.append(f'<polyline points="{points}" class="curve"/>')
        for point, (c, s) in zip(report["curve"], curve, strict=True):
            label = f"tradeoff {point['tradeoff']:.2f}: score {s:.3f} at {_money(c)}"
            parts.append(
                f'<circle cx="{x(c):.1f}" cy="{y(s):.1f}" r="3" class="curve-point"><title>{escape(label)}</title></circle>'
            )
    for name, c, s in models:
        # Labels point into the plot (left of points in its right half), so none runs into the
        # legend beside it or off the chart.
        inward = x(c) > LEFT + plot_w / 2
        label_x, anchor = (x(c) - 8, "end") if inward else (x(c) + 8, "start")
        tooltip = f"{name}: score {s:.3f} at {_money(c)} per request"
        parts.append(
            f'<circle cx="{x(c):.1f}" cy="{y(s):.1f}" r="5" class="model-point"><title>{escape(tooltip)}</title></circle>'
            f'<text x="{label_x:.1f}" y="{y(s) + 4:.1f}" class="model-label" text-anchor="{anchor}">{escape(name)}</text>'
        )
    legend_x = WIDTH - RIGHT + 20
    parts.append(
        f'<line x1="{legend_x}" y1="{TOP + 10}" x2="{legend_x + 24}" y2="{TOP + 10}" class="curve"/>'
        f'<text x="{legend_x + 30}" y="{TOP + 14}" class="tick">router</text>'
        f'<circle cx="{legend_x + 12}" cy="{TOP + 30}" r="5" class="model-point"/>'
        f'<text x="{legend_x + 30}" y="{TOP + 34}" class="tick">single model</text>'
    )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped
