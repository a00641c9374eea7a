"""Server-side SVG of a version's cost-quality report (no scripts, no external assets)."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class _Frame:
    """The plot area and its scales: cost 0 … ``x_high`` across, ``y_low`` … ``y_high`` up."""

    x_high: float
    y_low: float
    y_high: float
    plot_w: int = WIDTH - LEFT - RIGHT
    plot_h: int = HEIGHT - TOP - BOTTOM

    def x(self, cost: float) -> float:
        return LEFT + cost / self.x_high * self.plot_w

    def y(self, score: float) -> float:
        return TOP + (1 - (score - self.y_low) / (self.y_high - self.y_low)) * self.plot_h


def cost_quality_svg(
    report: dict[str, Any], cascade: list[dict[str, Any]] | None = None
) -> SafeString:
    """The router's curve (tradeoff 0 … 1) with every single model as a labelled point, and a
    cascade's curve (``min_score``, ``cost``, ``score`` points) on the same axes when given."""
    curve = [(float(p["cost"]), float(p["score"])) for p in report.get("curve", [])]
    beside = [(float(p["cost"]), float(p["score"])) for p in cascade or []]
    models = [
        (m["id"], float(m["mean_cost"]), float(m["mean_score"])) for m in report.get("models", [])
    ]
    if not curve and not models:
        return mark_safe("")
    costs = [c for c, _ in curve + beside] + [c for _, c, _ in models]
    scores = [s for _, s in curve + beside] + [s for _, _, s in models]
    y_low, y_high = min(scores), max(scores)
    pad = (y_high - y_low) * 0.08 or 0.05
    frame = _Frame(x_high=max(costs) * 1.05 or 1.0, y_low=y_low - pad, y_high=y_high + pad)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-label="Cost and quality of the router and of each single model" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{LEFT}" y="{TOP}" width="{frame.plot_w}" height="{frame.plot_h}" class="chart-bg"/>',
        *_axes(frame),
        *_curve_marks(frame, report, curve),
        *_cascade_marks(frame, cascade or [], beside),
        *_model_marks(frame, models),
        _legend(cascade is not None),
        "</svg>",
    ]
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated label is escaped


def _axes(frame: _Frame) -> list[str]:
    x, y, plot_w, plot_h = frame.x, frame.y, frame.plot_w, frame.plot_h
    parts = []
    for tick in _ticks(0.0, frame.x_high):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{TOP}" x2="{x(tick):.1f}" y2="{TOP + plot_h}" class="grid"/>'
            f'<text x="{x(tick):.1f}" y="{TOP + plot_h + 18}" class="tick" text-anchor="middle">{escape(_money(tick))}</text>'
        )
    for tick in _ticks(frame.y_low, frame.y_high):
        parts.append(
            f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" class="grid"/>'
            f'<text x="{LEFT - 8}" y="{y(tick) + 4:.1f}" class="tick" text-anchor="end">{tick:.3f}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2}" y="{HEIGHT - 8}" class="axis" text-anchor="middle">mean cost per request</text>'
        f'<text x="16" y="{TOP + plot_h / 2}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 16 {TOP + plot_h / 2})">mean score</text>'
    )
    return parts


def _curve_marks(
    frame: _Frame, report: dict[str, Any], curve: list[tuple[float, float]]
) -> list[str]:
    if not curve:
        return []
    x, y = frame.x, frame.y
    points = " ".join(f"{x(c):.1f},{y(s):.1f}" for c, s in sorted(curve))
    parts = [f'<polyline points="{points}" class="curve"/>']
    for point, (c, s) in zip(report["curve"], curve, strict=True):
        label = f"tradeoff {point['tradeoff']:.2f}: score {s:.3f} at {_money(c)}"
        parts.append(
            f'<circle cx="{x(c):.1f}" cy="{y(s):.1f}" r="3" class="curve-point"><title>{escape(label)}</title></circle>'
        )
    return parts


def _cascade_marks(
    frame: _Frame, cascade: list[dict[str, Any]], points: list[tuple[float, float]]
) -> list[str]:
    if not points:
        return []
    x, y = frame.x, frame.y
    line = " ".join(f"{x(c):.1f},{y(s):.1f}" for c, s in sorted(points))
    parts = [f'<polyline points="{line}" class="curve cascade"/>']
    for point, (c, s) in zip(cascade, points, strict=True):
        label = f"gate {point['min_score']}: score {s:.3f} at {_money(c)}"
        parts.append(
            f'<rect x="{x(c) - 3:.1f}" y="{y(s) - 3:.1f}" width="6" height="6" class="cascade-point"><title>{escape(label)}</title></rect>'
        )
    return parts


def _model_marks(frame: _Frame, models: list[tuple[str, float, float]]) -> list[str]:
    x, y = frame.x, frame.y
    parts = []
    for name, c, s in models:
        # Labels point into the plot (left of points in its right half), so none runs into the
        # legend beside it or off the chart.
        inward = x(c) > LEFT + frame.plot_w / 2
        label_x, anchor = (x(c) - 8, "end") if inward else (x(c) + 8, "start")
        tooltip = f"{name}: score {s:.3f} at {_money(c)} per request"
        parts.append(
            f'<circle cx="{x(c):.1f}" cy="{y(s):.1f}" r="5" class="model-point"><title>{escape(tooltip)}</title></circle>'
            f'<text x="{label_x:.1f}" y="{y(s) + 4:.1f}" class="model-label" text-anchor="{anchor}">{escape(name)}</text>'
        )
    return parts


def _legend(with_cascade: bool = False) -> str:
    legend_x = WIDTH - RIGHT + 20
    legend = (
        f'<line x1="{legend_x}" y1="{TOP + 10}" x2="{legend_x + 24}" y2="{TOP + 10}" class="curve"/>'
        f'<text x="{legend_x + 30}" y="{TOP + 14}" class="tick">router</text>'
        f'<circle cx="{legend_x + 12}" cy="{TOP + 30}" r="5" class="model-point"/>'
        f'<text x="{legend_x + 30}" y="{TOP + 34}" class="tick">single model</text>'
    )
    if with_cascade:
        legend += (
            f'<line x1="{legend_x}" y1="{TOP + 50}" x2="{legend_x + 24}" y2="{TOP + 50}" class="curve cascade"/>'
            f'<text x="{legend_x + 30}" y="{TOP + 54}" class="tick">cascade</text>'
        )
    return legend
