"""Small SVG charts drawn on the server (no chart library): the geometry only.

The template (``admin/_chart.html``) draws these shapes; their colours come from the page's theme
through CSS classes (``currentColor`` and the theme variables), and the SVG scales to its box
(``viewBox``, width 100%), so a chart is readable in both themes and at 360 px. Each chart has a
title and a description, and the figures it shows are in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

WIDTH = 600
HEIGHT = 180
LEFT = 4  # (the axis labels are HTML around the chart: readable at any width)
RIGHT = 8
TOP = 10
BOTTOM = 4


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # (its value, in the bar's <title>)


@dataclass(frozen=True, slots=True)
class Line:
    css: str  # its class: the colour and dash
    points: str  # "x,y x,y …" (a gap, where a value is missing, starts a new line)
    segments: tuple[str, ...] = ()
    dots: tuple[tuple[float, float], ...] = ()


@dataclass
class Chart:
    id: str
    title: str
    description: str
    top_label: str  # the y axis' largest value
    first_label: str
    last_label: str
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def _nice(value: float) -> float:
    """A round number at least ``value`` for the top of an axis (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1
    magnitude = 10 ** len(str(int(value))) / 10 if value >= 1 else 0.1
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover


def _x(index: int, count: int) -> float:
    span = WIDTH - RIGHT - LEFT
    return LEFT + span * (index + 0.5) / max(count, 1)


def _y(value: float, top: float) -> float:
    span = HEIGHT - BOTTOM - TOP
    return HEIGHT - BOTTOM - span * min(value / top, 1)


def bars(
    chart_id: str, title: str, description: str, labels: Sequence[str], values: Sequence[float]
) -> Chart:
    top = _nice(max(values, default=0))
    slot = (WIDTH - RIGHT - LEFT) / max(len(values), 1)
    width = max(slot * 0.7, 1)
    chart = Chart(
        chart_id, title, description, f"{top:g}", labels[0] if labels else "", labels[-1] if labels else ""
    )
    for i, value in enumerate(values):
        y = _y(value, top)
        chart.bars.append(
            Bar(
                round(_x(i, len(values)) - width / 2, 2),
                round(y, 2),
                round(width, 2),
                round(HEIGHT - BOTTOM - y, 2),
                f"{labels[i]}: {value:g}",
            )
        )
    return chart


def lines(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    top: float | None = None,
    top_label: str | None = None,
) -> Chart:
    """One line per (css class, values); a missing value (None) leaves a gap."""
    highest = max((v for _, values in series for v in values if v is not None), default=0)
    top = top if top is not None else _nice(highest)
    chart = Chart(
        chart_id,
        title,
        description,
        top_label or f"{top:g}",
        labels[0] if labels else "",
        labels[-1] if labels else "",
    )
    for css, values in series:
        segments: list[list[str]] = [[]]
        dots = []
        for i, value in enumerate(values):
            if value is None:
                if segments[-1]:
                    segments.append([])
                continue
            x, y = round(_x(i, len(values)), 2), round(_y(value, top), 2)
            segments[-1].append(f"{x},{y}")
            dots.append((x, y))
        kept = tuple(" ".join(s) for s in segments if s)
        chart.lines.append(Line(css, " ".join(kept), kept, tuple(dots)))
    return chart
