"""Activity charts drawn on the server as SVG: stacked bars, one per span of time.

Only rectangles, lines and text with presentation attributes (no style attribute,
no script), so the dashboard's Content-Security-Policy holds for them too.
"""

from __future__ import annotations

from dataclasses import dataclass

from odiseo.operations import Series

WIDTH, HEIGHT, AXIS = 600, 140, 16
LAYERS = (  # bottom to top: (event type, label, CSS class)
    ("email.sent", "sent", "bar-sent"),
    ("email.deferred", "deferred", "bar-deferred"),
    ("email.failed", "failed", "bar-failed"),
)


@dataclass(frozen=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    """What templates/_chart.html draws."""

    width: int
    height: int
    bars: list[Bar]
    peak: int
    totals: dict[str, int]
    first_label: str
    last_label: str
    summary: str


def chart(series: Series, *, label_format: str) -> Chart:
    spans = len(series.starts)
    stacks = [sum(series.counts[t][i] for t, _, _ in LAYERS) for i in range(spans)]
    peak = max([*stacks, 1])
    slot = WIDTH / max(spans, 1)
    scale = (HEIGHT - AXIS) / peak
    bars: list[Bar] = []
    for i, start in enumerate(series.starts):
        bottom = float(HEIGHT - AXIS)
        for event_type, name, css in LAYERS:
            count = series.counts[event_type][i]
            if not count:
                continue
            height = count * scale
            bottom -= height
            title = f"{start.strftime(label_format)} UTC: {count} {name}"
            bars.append(
                Bar(
                    x=i * slot + 1,
                    y=bottom,
                    width=max(slot - 2, 1),
                    height=height,
                    css=css,
                    title=title,
                )
            )
    totals = {name: sum(series.counts[t]) for t, name, _ in LAYERS}
    summary = ", ".join(f"{n} {name}" for name, n in totals.items())
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        peak=peak,
        totals=totals,
        first_label=series.starts[0].strftime(label_format) if spans else "",
        last_label=series.starts[-1].strftime(label_format) if spans else "",
        summary=summary,
    )
