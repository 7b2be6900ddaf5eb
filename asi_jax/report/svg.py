"""Inline SVG plots, written by hand so the report needs no plotting library and no network:
a line chart (loss curves, discoveries against compute) and paired horizontal bars (winners
against all). Every label is escaped; the charts carry no script."""

from __future__ import annotations

import dataclasses
import html
import itertools
import math
from collections.abc import Sequence

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


@dataclasses.dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    steps: bool = False  # a staircase (counts) rather than a polyline
    markers: bool = False
    dashed: bool = False


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def line_chart(series: Sequence[Series], *, title: str, x_label: str, y_label: str,
               width: int = 560, height: int = 300) -> str:  # fmt: skip
    """One chart of `series` on shared axes; empty series are left out."""
    series = [s for s in series if len(s.xs)]
    e = html.escape
    if not series:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    left, right, top, bottom = 60, 16, 28, 44
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{e(title)}">',
           f'<text x="{left}" y="16" class="title">{e(title)}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']  # fmt: skip
    for t in _ticks(x0, x1):
        out.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top + ph}" '
                   f'y2="{top + ph + 4}" class="tick"/><text x="{px(t):.1f}" '
                   f'y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')  # fmt: skip
    for t in _ticks(y0, y1):
        out.append(f'<line x1="{left - 4}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
                   f'class="grid"/><text x="{left - 6}" y="{py(t) + 4:.1f}" '
                   f'text-anchor="end">{_fmt(t)}</text>')  # fmt: skip
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">'
               f'{e(x_label)}</text><text x="12" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 12 {top + ph / 2})">{e(y_label)}</text>')  # fmt: skip
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = list(zip(s.xs, s.ys, strict=True))
        if s.steps:
            stepped = [points[0]]
            for (_, ya), (xb, yb) in itertools.pairwise(points):
                stepped += [(xb, ya), (xb, yb)]
            points = stepped
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        dash = ' stroke-dasharray="5 4"' if s.dashed else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" '
                   f'stroke-width="1.8"{dash}/>')  # fmt: skip
        if s.markers:
            out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{colour}"/>'
                    for x, y in zip(s.xs, s.ys, strict=True)]  # fmt: skip
        ly = top + 14 + 14 * i
        out.append(f'<line x1="{left + 8}" x2="{left + 24}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"{dash}/><text x="{left + 28}" '
                   f'y="{ly}">{e(s.label)}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def paired_bars(rows: Sequence[tuple[str, float, float]], *, title: str,
                legend: tuple[str, str], width: int = 560) -> str:  # fmt: skip
    """Horizontal bars, two per row (shares in [0, 1]): e.g. winners against all."""
    e = html.escape
    if not rows:
        return f'<p class="empty">{e(title)}: no data yet</p>'
    label_w, bar_h, gap, top = 220, 9, 8, 40
    pw = width - label_w - 60
    height = top + len(rows) * (2 * bar_h + gap) + 8
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{e(title)}">',
           f'<text x="4" y="16" class="title">{e(title)}</text>']  # fmt: skip
    for i, name in enumerate(legend):
        x = label_w + i * 160
        out.append(f'<rect x="{x}" y="24" width="12" height="9" fill="{COLOURS[i]}"/>'
                   f'<text x="{x + 16}" y="33">{e(name)}</text>')  # fmt: skip
    for i, (label, a, b) in enumerate(rows):
        y = top + i * (2 * bar_h + gap)
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar_h + 3}" text-anchor="end">{e(label)}</text>'
        )
        for j, v in enumerate((a, b)):
            w = max(0.0, min(1.0, v)) * pw
            yy = y + j * bar_h
            out.append(f'<rect x="{label_w}" y="{yy}" width="{w:.1f}" height="{bar_h - 1}" '
                       f'fill="{COLOURS[j]}"/><text x="{label_w + w + 4:.1f}" '
                       f'y="{yy + bar_h - 1}" class="small">{v:.0%}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)
