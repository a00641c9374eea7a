"""Charts that read: labels inside the drawing, today's date on the axis, values on hover."""

from __future__ import annotations

import re
from datetime import date, timedelta
from decimal import Decimal

from billing.charts import spend_chart
from training.charts import LEFT, RIGHT, WIDTH, cost_quality_svg

TODAY = date(2026, 11, 28)
LABEL_CHAR_PX = 6.5  # an 11 px label character, generously


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """(x, text-anchor, text) of every <text> element."""
    found = []
    for attrs, text in re.findall(r"<text([^>]*)>([^<]*)</text>", svg):
        x = float(re.search(r'x="([\d.]+)"', attrs).group(1))  # type: ignore[union-attr]
        anchor = re.search(r'text-anchor="(\w+)"', attrs)
        found.append((x, anchor.group(1) if anchor else "start", text))
    return found


def test_spend_chart_y_labels_fit_left_of_the_plot_whatever_their_length() -> None:
    rows = [{"day": TODAY, "model": "demo/small", "cost": Decimal("0.0000023")}]

    svg = spend_chart(rows, days=30, today=TODAY).svg

    y_labels = [(x, text) for x, anchor, text in _texts(svg) if anchor == "end"]
    assert len(y_labels) == 5 and max(len(t) for _, t in y_labels) >= 9  # "$0.0000025"
    for x, text in y_labels:
        assert x - len(text) * LABEL_CHAR_PX >= 0, (x, text)


def test_spend_chart_labels_today_and_tells_each_days_total_on_hover() -> None:
    rows = [
        {"day": TODAY, "model": "a", "cost": Decimal("0.5")},
        {"day": TODAY, "model": "b", "cost": Decimal("0.25")},
        {"day": TODAY - timedelta(days=3), "model": "a", "cost": Decimal("1")},
    ]

    svg = spend_chart(rows, days=30, today=TODAY).svg

    dates = [text for _, anchor, text in _texts(svg) if anchor == "middle"]
    assert dates[-1] == "Nov 28" and dates[0] == "Oct 30"
    assert "<title>Nov 28 · a · $0.50 (day: $0.75)</title>" in svg


def test_report_chart_model_labels_stay_clear_of_the_legend() -> None:
    report = {
        "curve": [
            {"tradeoff": 0.0, "cost": 0.01, "score": 0.9},
            {"tradeoff": 1, "cost": 0.001, "score": 0.6},
        ],
        "models": [
            {
                "id": "openai/a-long-model-name-for-the-dearest",
                "mean_cost": 0.01,
                "mean_score": 0.88,
            },
            {"id": "demo/small", "mean_cost": 0.001, "mean_score": 0.6},
        ],
    }

    svg = str(cost_quality_svg(report))

    labels = re.findall(
        r'<text x="([\d.]+)" y="[\d.]+" class="model-label" text-anchor="(\w+)">([^<]+)', svg
    )
    assert len(labels) == 2
    for x, anchor, text in labels:
        start = float(x) - (len(text) * LABEL_CHAR_PX if anchor == "end" else 0)
        end = start + len(text) * LABEL_CHAR_PX
        assert start >= LEFT and end <= WIDTH - RIGHT + 20, (x, anchor, text)  # legend from there
    assert "score 0.880 at $0.01 per request" in svg


def test_spend_chart_draws_one_segment_per_colour_a_day_however_many_models() -> None:
    """200 models every day of 30: the models outside the legend are one "other" segment a
    day, so the drawing stays bounded (it had one segment per model and day: 6,000)."""
    rows = [
        {"day": TODAY - timedelta(days=d), "model": f"m/{m:03d}", "cost": Decimal(m + 1)}
        for d in range(30)
        for m in range(200)
    ]

    chart = spend_chart(rows, days=30, today=TODAY)

    assert chart.svg.count("<rect") <= 30 * 8
    assert chart.legend[-1][0] == "other" and len(chart.legend) == 8
    assert chart.total == 30 * sum(Decimal(m + 1) for m in range(200))
    assert "· other · $" in chart.svg


def test_the_legend_helper_leaves_the_totals_it_is_given_as_they_are() -> None:
    from billing.charts import _colours

    totals = {f"m/{m:02d}": Decimal(m + 1) for m in range(12)}
    given = dict(totals)

    top, colours, with_other = _colours(totals)

    assert totals == given  # it added "other" to the caller's dict
    assert with_other == given | {"other": sum(Decimal(m + 1) for m in range(12 - len(top)))}
    assert set(colours) == {*top, "other"}
