"""Loss curves from a run's ``metrics.jsonl``, drawn without matplotlib: an inline SVG (text) for the HTML page and
a PNG (Pillow) for the Markdown twin. Both come from one layout, so they show the same axes and lines.

The y axis is logarithmic when the values span more than a factor of 20 (losses usually fall that far).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
WIDTH, HEIGHT = 560, 300
MARGIN = (58, 16, 34, 40)  # left, right, top, bottom


@dataclass
class Series:
    name: str
    points: list[tuple[float, float]]  # (step, value), by step


def read_series(metrics: Path, keys: tuple[str, ...]) -> list[Series]:
    """One series per key present in the run log; a step logged twice (a resumed run) keeps its last value."""
    values: dict[str, dict[float, float]] = {k: {} for k in keys}
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            for k in keys:
                v = row.get(k)
                if isinstance(v, (int, float)) and math.isfinite(v):
                    values[k][float(row["step"])] = float(v)
    return [Series(k, sorted(values[k].items())) for k in keys if values[k]]


@dataclass
class Layout:
    """Data -> pixel coordinates and tick labels for one plot."""

    x0: float
    x1: float
    y0: float
    y1: float
    log: bool

    @classmethod
    def fit(cls, series: list[Series]) -> Layout:
        xs = [x for s in series for x, _ in s.points]
        ys = [y for s in series for _, y in s.points]
        log = min(ys) > 0 and max(ys) / min(ys) > 20
        y0, y1 = (math.log10(min(ys)), math.log10(max(ys))) if log else (min(ys), max(ys))
        pad = (y1 - y0) * 0.05 or 0.5
        return cls(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1, y0 - pad, y1 + pad, log)

    def px(self, x: float, y: float) -> tuple[float, float]:
        left, right, top, bottom = MARGIN
        yy = math.log10(y) if self.log else y
        u = left + (x - self.x0) / (self.x1 - self.x0) * (WIDTH - left - right)
        v = HEIGHT - bottom - (yy - self.y0) / (self.y1 - self.y0) * (HEIGHT - top - bottom)
        return round(u, 1), round(v, 1)

    def y_ticks(self) -> list[float]:
        if self.log:
            return [10**e for e in range(math.ceil(self.y0), math.floor(self.y1) + 1)] or [10**self.y0]
        return _nice(self.y0, self.y1)

    def x_ticks(self) -> list[float]:
        return _nice(self.x0, self.x1, 8)


def _nice(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round numbers between lo and hi."""
    raw = (hi - lo) / n
    step = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step *= next(m for m in (1, 2, 5, 10) if raw <= m * step)
    return [k * step for k in range(math.ceil(lo / step), math.floor(hi / step) + 1)]


def _label(v: float) -> str:
    return f"{v:g}" if abs(v) < 1e5 else f"{v:.0e}"


def svg_plot(series: list[Series], title: str) -> str:
    """An SVG line plot (its markup) of ``series`` against the training step."""
    lay = Layout.fit(series)
    left, right, top, bottom = MARGIN
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
    ]
    for y in lay.y_ticks():
        _, v = lay.px(lay.x0, y)
        out.append(f'<line x1="{left}" y1="{v}" x2="{WIDTH - right}" y2="{v}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 4}" y="{v + 4}" text-anchor="end">{_label(y)}</text>')
    for x in lay.x_ticks():
        u, _ = lay.px(x, 10**lay.y0 if lay.log else lay.y0)
        out.append(f'<text x="{u}" y="{HEIGHT - bottom + 14}" text-anchor="middle">{_label(x)}</text>')
    out.append(f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">step</text>')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{u},{v}" for u, v in (lay.px(x, y) for x, y in s.points))
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        legend = f'x="{WIDTH - right - 8}" y="{top + 14 * (i + 1)}" text-anchor="end" fill="{colour}"'
        out.append(f"<text {legend}>{escape(s.name)}</text>")
    out.append(
        f'<rect x="{left}" y="{top}" width="{WIDTH - left - right}" height="{HEIGHT - top - bottom}" '
        'fill="none" stroke="#888"/>'
    )
    return "\n".join(out + ["</svg>"])


def png_plot(series: list[Series], title: str, path: Path) -> Path:
    """The same plot as ``svg_plot``, as a PNG file."""
    lay = Layout.fit(series)
    left, right, top, bottom = MARGIN
    im = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(im)
    draw.text((WIDTH / 2, 4), title, fill="black", anchor="ma")
    for y in lay.y_ticks():
        _, v = lay.px(lay.x0, y)
        draw.line([(left, v), (WIDTH - right, v)], fill="#dddddd")
        draw.text((left - 4, v), _label(y), fill="black", anchor="rm")
    for x in lay.x_ticks():
        u, _ = lay.px(x, 10**lay.y0 if lay.log else lay.y0)
        draw.text((u, HEIGHT - bottom + 4), _label(x), fill="black", anchor="ma")
    draw.text((WIDTH / 2, HEIGHT - 14), "step", fill="black", anchor="ma")
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        points = [lay.px(x, y) for x, y in s.points]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2)
        else:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)
        draw.text((WIDTH - right - 8, top + 4 + 14 * i), s.name, fill=colour, anchor="ra")
    draw.rectangle([left, top, WIDTH - right, HEIGHT - bottom], outline="#888888")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path
