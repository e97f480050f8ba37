"""``curves.png``: the training curves of a run, drawn with Pillow (no plotting library).

Small line charts in a grid, one panel per quantity against the training step: the loss
(every step, averaged into at most :data:`MAX_POINTS` bins, with the per-evaluation means
marked), top-1 accuracy (classifier, EMA copy or kNN monitor, whichever the run records), the
learning rate, and for runs with a learned mixer its mask statistics (slope of the mask mean
against λ, ideal 1, and the per-image spatial std; docs/algorithm.md). Inputs are the records
of ``metrics.jsonl`` and ``steps.jsonl``; the same records give the same bytes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from samix_hub.fileio import atomic_write

#: What Pillow's ``load_default`` gives: a scalable font (Pillow >= 10.1) or the bitmap one.
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont

__all__ = [
    "MAX_POINTS",
    "Series",
    "Panel",
    "curve_panels",
    "render",
    "save_curves",
    "is_curves_png",
]

#: The picture's file name in a run folder (and next to an exported artifact's card).
#: A per-step series is averaged into at most this many points.
MAX_POINTS = 400
#: A curves picture larger than this is not one this module drew (export skips it).
MAX_CURVES_BYTES = 8 * 2**20

PANEL_W, PANEL_H = 420, 260
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 14, 46, 40
BACKGROUND = (255, 255, 255)
AXIS = (60, 60, 60)
GRID = (225, 225, 225)
TEXT = (30, 30, 30)
COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189))

Point = tuple[float, float]


@dataclass
class Series:
    """One line: its legend label and (step, value) points; ``marks`` draws dots too."""

    label: str
    points: list[Point]
    marks: bool = False


@dataclass
class Panel:
    """One chart: a title, its lines, and the values of dashed horizontal reference lines."""

    title: str
    series: list[Series]
    references: list[float] = field(default_factory=list)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _column(rows: Iterable[Mapping[str, Any]], key: str) -> list[Point]:
    return [
        (float(r["step"]), float(r[key]))
        for r in rows
        if _finite(r.get("step")) and _finite(r.get(key))
    ]


def binned(points: Sequence[Point], max_points: int = MAX_POINTS) -> list[Point]:
    """``points`` averaged over consecutive runs of equal size, at most ``max_points`` left."""
    if len(points) <= max_points:
        return list(points)
    size = math.ceil(len(points) / max_points)
    out = []
    for start in range(0, len(points), size):
        chunk = points[start : start + size]
        out.append((sum(p[0] for p in chunk) / len(chunk), sum(p[1] for p in chunk) / len(chunk)))
    return out


def curve_panels(
    metrics: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]] = ()
) -> list[Panel]:
    """The panels for a run's ``metrics.jsonl`` and ``steps.jsonl`` records (empty ones left out)."""
    loss = [Series("per step", binned(_column(steps, "loss")))]
    loss.append(Series("evaluation mean", _column(metrics, "train_loss"), marks=True))
    mixer_loss = _column(metrics, "train_loss_mixer")
    if mixer_loss:
        loss.append(Series("mixer", mixer_loss, marks=True))
    accuracy = [
        Series(label, _column(metrics, key), marks=True)
        for key, label in (("top1", "top-1"), ("ema_top1", "EMA top-1"), ("knn_top1", "kNN top-1"))
    ]
    lr = _column(steps, "lr") or _column(metrics, "lr")
    mask = [
        Series("slope (ideal 1)", _column(metrics, "mask_slope"), marks=True),
        Series("spatial std", _column(metrics, "mask_spatial_std"), marks=True),
    ]
    panels = [
        Panel("loss", loss),
        Panel("top-1 accuracy (%)", accuracy),
        Panel("learning rate", [Series("lr", binned(lr))]),
        Panel("mixer masks", mask, references=[1.0]),
    ]
    kept = []
    for panel in panels:
        panel.series = [s for s in panel.series if s.points]
        if panel.series:
            kept.append(panel)
    return kept


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` (at least two) round values inside [lo, hi], 1, 2 or 5 times a power of
    ten apart."""
    if not hi > lo:
        return [lo]
    power = 10 ** math.floor(math.log10((hi - lo) / max(count - 1, 1)))
    best: list[float] = []
    for step in (m * power * f for f in (0.1, 1, 10) for m in (1, 2, 5)):
        first = math.ceil(lo / step - 1e-9)
        ticks = [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]
        if len(ticks) >= 2 and (not best or abs(len(ticks) - count) < abs(len(best) - count)):
            best = ticks
    return best or [lo, hi]


def _label(value: float) -> str:
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.1e}"
    return f"{value:.4g}"


def _range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = max(abs(hi) * 0.05, 1e-6)
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, x0: int, y0: int, font: Font) -> None:
    left, top = x0 + MARGIN_L, y0 + MARGIN_T
    right, bottom = x0 + PANEL_W - MARGIN_R, y0 + PANEL_H - MARGIN_B
    draw.text((left, y0 + 6), panel.title, fill=TEXT, font=font)
    xs = [p[0] for s in panel.series for p in s.points]
    ys = [p[1] for s in panel.series for p in s.points] + list(panel.references)
    x_lo, x_hi = (min(xs), max(xs)) if max(xs) > min(xs) else (min(xs) - 1, max(xs) + 1)
    y_lo, y_hi = _range(ys)

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x_lo) / (x_hi - x_lo) * (right - left),
            bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top),
        )

    for tick in nice_ticks(y_lo, y_hi):
        _, y = px(x_lo, tick)
        draw.line([(left, y), (right, y)], fill=GRID)
        text = _label(tick)
        width = draw.textlength(text, font=font)
        draw.text((left - 6 - width, y - 6), text, fill=TEXT, font=font)
    for tick in nice_ticks(x_lo, x_hi, 4):
        x, _ = px(tick, y_lo)
        draw.line([(x, bottom), (x, bottom + 4)], fill=AXIS)
        text = _label(tick)
        draw.text(
            (x - draw.textlength(text, font=font) / 2, bottom + 6), text, fill=TEXT, font=font
        )
    draw.text(
        (right - draw.textlength("step", font=font), bottom + 22), "step", fill=TEXT, font=font
    )
    for value in panel.references:
        _, y = px(x_lo, value)
        for xa in range(left, right, 8):  # dashed
            draw.line([(xa, y), (min(xa + 4, right), y)], fill=AXIS)
    draw.rectangle([left, top, right, bottom], outline=AXIS)
    legend_x = left
    for index, series in enumerate(panel.series):
        colour = COLOURS[index % len(COLOURS)]
        points = [px(x, y) for x, y in series.points]
        if len(points) > 1:
            draw.line(points, fill=colour, width=2, joint="curve")
        if series.marks or len(points) == 1:
            for x, y in points:
                draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=colour)
        draw.line([(legend_x, y0 + 31), (legend_x + 14, y0 + 31)], fill=colour, width=3)
        draw.text((legend_x + 18, y0 + 24), series.label, fill=TEXT, font=font)
        legend_x += int(draw.textlength(series.label, font=font)) + 30


def _font() -> Font:
    try:
        return ImageFont.load_default(size=12)
    except TypeError:  # Pillow < 10.1: the bitmap font, one size
        return ImageFont.load_default()


def render(panels: Sequence[Panel], columns: int = 2) -> Image.Image:
    """The panels in a grid of ``columns``; an empty list gives a picture saying so."""
    font = _font()
    if not panels:
        image = Image.new("RGB", (PANEL_W, 60), BACKGROUND)
        ImageDraw.Draw(image).text((12, 22), "no measurements yet", fill=TEXT, font=font)
        return image
    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    image = Image.new("RGB", (columns * PANEL_W, rows * PANEL_H), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for index, panel in enumerate(panels):
        row, col = divmod(index, columns)
        _draw_panel(draw, panel, col * PANEL_W, row * PANEL_H, font)
    return image


def save_curves(
    path: str | os.PathLike[str],
    metrics: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]] = (),
) -> Path:
    """Draw :func:`curve_panels` of the records and write the PNG to ``path`` atomically."""
    image = render(curve_panels(metrics, steps))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def is_curves_png(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file (not a link) holding a PNG that decodes, of at most
    :data:`MAX_CURVES_BYTES`: what export copies next to a card."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_CURVES_BYTES:
        return False
    try:
        with Image.open(path) as image:
            if image.format != "PNG":
                return False
            image.verify()
    except Exception:  # any decoding error: not a picture to publish
        return False
    return True
