"""Inline SVG charts of a comparison, drawn without a charting library.

Two horizontal bar charts, on one linear byte scale each:

- *holdings*: for each image, one bar per level whose length is the bytes the
  image holds at that level, split into the part another image also holds
  (solid) and the part only this image holds (light);
- *storage*: for each level, the sum over images split into the union (what
  storing them all takes, solid) and the saving (light).

Colour tells the level apart; the SVG also carries a ``<title>`` on every bar,
so the exact figures show on hover and reach screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from html import escape

from .model import LEVELS, CompareReport, LevelFigures
from .text import format_size, image_keys

__all__ = ["LEVEL_COLORS", "holdings_chart", "light_color", "storage_chart"]

LEVEL_COLORS = {"layer": "#4e79a7", "file": "#f28e2b", "block": "#59a14f"}
"""Bar colour of each level (from the Tableau 10 palette, legible to most
colour-blind readers)."""

_WIDTH = 900
_NAME_WIDTH = 64
_BAR_START = _NAME_WIDTH + 8
_BAR_WIDTH = 560
_NOTE_START = _BAR_START + _BAR_WIDTH + 10
_BAR_HEIGHT = 16
_BAR_GAP = 5
_AXIS_TOP = 48
_GRID_COLOR = "#d8dde3"
_TEXT_COLOR = "#1f2933"
_MUTED_COLOR = "#52606d"
_FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', sans-serif"


def light_color(color: str, amount: float = 0.62) -> str:
    """Mix ``color`` (``#rrggbb``) with white; ``amount`` is white's share."""
    channels = [int(color[index : index + 2], 16) for index in (1, 3, 5)]
    mixed = [round(value + (255 - value) * amount) for value in channels]
    return "#" + "".join(f"{value:02x}" for value in mixed)


@dataclass(frozen=True, slots=True)
class _Scale:
    """Maps bytes to pixels of the bar area, with round tick values."""

    maximum: float
    step: float

    @classmethod
    def for_maximum(cls, largest: int) -> _Scale:
        step = _tick_step(max(largest, 1))
        return cls(math.ceil(max(largest, 1) / step) * step, step)

    def x(self, size: float) -> float:
        return _BAR_START + _BAR_WIDTH * size / self.maximum

    def ticks(self) -> Iterator[float]:
        count = round(self.maximum / self.step)
        return (self.step * index for index in range(count + 1))


def _tick_step(largest: float) -> float:
    """Return a tick step of 1, 2 or 5 times a power of ten: at most ten ticks."""
    power = 10.0 ** math.floor(math.log10(largest))
    for factor in (0.1, 0.2, 0.5, 1, 2, 5):
        if largest / (factor * power) <= 10:
            return factor * power
    return 10 * power


def holdings_chart(report: CompareReport) -> str:
    """Return the SVG of what each image holds at each level."""
    levels = [report.level(name) for name in LEVELS]
    largest = max(
        (amount.held.size for f in levels for amount in f.per_image), default=0
    )
    scale = _Scale.for_maximum(largest)
    group_height = 22 + len(LEVELS) * (_BAR_HEIGHT + _BAR_GAP) + 12
    height = _AXIS_TOP + 8 + group_height * len(report.images)
    parts = [_open_svg(height, "Bytes each image holds, by level")]
    parts += _holdings_legend()
    parts += _axis(scale, height)
    keys = image_keys(len(report.images))
    for index, image in enumerate(report.images):
        top = _AXIS_TOP + 8 + group_height * index
        parts.append(
            _text(0, top + 14, f"{keys[index]}  {image.label}", weight="600", size=13)
        )
        for row, figures in enumerate(levels):
            y = top + 22 + row * (_BAR_HEIGHT + _BAR_GAP)
            parts += _holding_bar(figures, index, y, scale)
    parts.append("</svg>")
    return "\n".join(parts)


def _holding_bar(
    figures: LevelFigures, image: int, y: float, scale: _Scale
) -> list[str]:
    amount = figures.per_image[image]
    color = LEVEL_COLORS[figures.level]
    shared_end = scale.x(amount.shared.size)
    held_end = scale.x(amount.held.size)
    fraction = amount.shared.size / amount.held.size if amount.held.size else 0.0
    title = (
        f"{figures.level}: {format_size(amount.held.size)} held,"
        f" {format_size(amount.shared.size)} shared with another image,"
        f" {format_size(amount.unique.size)} only in this image"
    )
    return [
        _text(_NAME_WIDTH, y + 12, figures.level, anchor="end", color=_MUTED_COLOR),
        _rect(_BAR_START, y, shared_end - _BAR_START, color, title),
        _rect(shared_end, y, held_end - shared_end, light_color(color), title),
        _text(
            _NOTE_START,
            y + 12,
            f"{format_size(amount.held.size)}, {fraction:.1%} shared",
        ),
    ]


def storage_chart(report: CompareReport) -> str:
    """Return the SVG of the sum over images against the union, per level."""
    levels = [report.level(name) for name in LEVELS]
    scale = _Scale.for_maximum(max((f.total.size for f in levels), default=0))
    row_height = _BAR_HEIGHT + 2 * _BAR_GAP + 4
    height = _AXIS_TOP + 8 + row_height * len(levels) + 4
    parts = [_open_svg(height, "Bytes needed to store all images, by level")]
    parts += _storage_legend()
    parts += _axis(scale, height)
    for row, figures in enumerate(levels):
        y = _AXIS_TOP + 12 + row * row_height
        parts += _storage_bar(figures, y, scale)
    parts.append("</svg>")
    return "\n".join(parts)


def _storage_bar(figures: LevelFigures, y: float, scale: _Scale) -> list[str]:
    color = LEVEL_COLORS[figures.level]
    union_end = scale.x(figures.union.size)
    total_end = scale.x(figures.total.size)
    title = (
        f"{figures.level}: {format_size(figures.union.size)} to store all,"
        f" {format_size(figures.total.size)} summed over images,"
        f" {format_size(figures.saving)} saved"
    )
    return [
        _text(_NAME_WIDTH, y + 12, figures.level, anchor="end", color=_MUTED_COLOR),
        _rect(_BAR_START, y, union_end - _BAR_START, color, title),
        _rect(union_end, y, total_end - union_end, light_color(color, 0.8), title),
        _text(
            _NOTE_START,
            y + 12,
            f"{format_size(figures.union.size)}, saves {figures.saving_fraction:.1%}",
        ),
    ]


def _open_svg(height: float, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}"'
        f' height="{height:.0f}" viewBox="0 0 {_WIDTH} {height:.0f}"'
        f' role="img" aria-label="{escape(label)}" font-family="{_FONT}"'
        f' font-size="12">'
    )


def _holdings_legend() -> list[str]:
    parts = _level_legend()
    x = 330
    parts.append(_swatch(x, "#6b7785", "shared"))
    parts.append(_text(x + 20, 17, "shared with another image"))
    x += 220
    parts.append(_swatch(x, light_color("#6b7785"), "unique"))
    parts.append(_text(x + 20, 17, "only in this image"))
    return parts


def _storage_legend() -> list[str]:
    parts = _level_legend()
    x = 330
    parts.append(_swatch(x, "#6b7785", "union"))
    parts.append(_text(x + 20, 17, "union: stored once"))
    x += 220
    parts.append(_swatch(x, light_color("#6b7785", 0.8), "saving"))
    parts.append(_text(x + 20, 17, "saving: sum over images minus union"))
    return parts


def _level_legend() -> list[str]:
    parts = []
    for index, level in enumerate(LEVELS):
        x = _BAR_START + index * 80
        parts.append(_swatch(x, LEVEL_COLORS[level], level))
        parts.append(_text(x + 20, 17, level))
    return parts


def _axis(scale: _Scale, height: float) -> list[str]:
    parts = []
    for value in scale.ticks():
        x = scale.x(value)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_AXIS_TOP - 4}" x2="{x:.1f}"'
            f' y2="{height - 2:.0f}" stroke="{_GRID_COLOR}" stroke-width="1"/>'
        )
        parts.append(
            _text(
                x,
                _AXIS_TOP - 8,
                _tick_label(value),
                anchor="middle",
                color=_MUTED_COLOR,
                size=11,
            )
        )
    return parts


def _swatch(x: float, color: str, title: str) -> str:
    return _rect(x, 6, 14, color, title, height=14)


def _tick_label(value: float) -> str:
    return format_size(round(value)).replace(".0 ", " ")


def _rect(
    x: float,
    y: float,
    width: float,
    color: str,
    title: str,
    *,
    height: int = _BAR_HEIGHT,
) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}"'
        f' height="{height}" fill="{color}"><title>{escape(title)}</title></rect>'
    )


def _text(
    x: float,
    y: float,
    content: str,
    *,
    anchor: str = "start",
    color: str = _TEXT_COLOR,
    weight: str = "400",
    size: int = 12,
) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{color}"'
        f' font-weight="{weight}" font-size="{size}">{escape(content)}</text>'
    )
