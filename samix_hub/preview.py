"""A PNG grid to eyeball a mixing method: per row image a, image b, the mask, the mixed image.

Layout (all in pixels): a left column ``LABEL_WIDTH`` wide holds ``lam=0.42`` for each row, a
``HEADER``-high top band names the columns, cells are the images upscaled (nearest) by an
integer ``scale`` so that their longer side is at least ``MIN_CELL``, separated by ``PAD``::

    width  = LABEL_WIDTH + PAD + 4 * (scale * W + PAD)
    height = HEADER + PAD + rows * (scale * H + PAD)

The mask is the weight of image a (white = all a, black = all b).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .fileio import atomic_write

__all__ = ["COLUMNS", "preview_grid", "save_preview", "cell_scale", "cell_origin", "grid_size"]

COLUMNS = ("image a", "image b", "mask", "mixed")
LABEL_WIDTH = 72
HEADER = 18
PAD = 4
MIN_CELL = 64
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def cell_scale(height: int, width: int) -> int:
    """Integer upscaling so that the longer image side is at least ``MIN_CELL`` pixels."""
    return max(1, -(-MIN_CELL // max(height, width)))


def grid_size(rows: int, height: int, width: int) -> tuple[int, int]:
    """``(width, height)`` of the grid for ``rows`` pairs of ``height x width`` images."""
    s = cell_scale(height, width)
    return (
        LABEL_WIDTH + PAD + len(COLUMNS) * (s * width + PAD),
        HEADER + PAD + rows * (s * height + PAD),
    )


def cell_origin(row: int, col: int, height: int, width: int) -> tuple[int, int]:
    """Top-left ``(x, y)`` of cell ``(row, col)``."""
    s = cell_scale(height, width)
    return LABEL_WIDTH + PAD + col * (s * width + PAD), HEADER + PAD + row * (s * height + PAD)


def _to_rgb_u8(x: torch.Tensor) -> np.ndarray:
    """C x H x W in [0, 1] (C = 1 or 3) -> H x W x 3 uint8."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def preview_grid(
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    mask: torch.Tensor,
    mixed: torch.Tensor,
    lam: torch.Tensor,
) -> object:
    """A PIL image of the grid; every tensor is N x C x H x W in [0, 1] (mask: N x 1 x H x W)."""
    from PIL import Image, ImageDraw, ImageFont

    n, _, h, w = image_a.shape
    if not (image_b.shape[0] == mask.shape[0] == mixed.shape[0] == len(lam) == n) or n == 0:
        raise ValueError("preview needs the same number (> 0) of images a, b, masks, mixes, λ")
    s = cell_scale(h, w)
    canvas = Image.new("RGB", grid_size(n, h, w), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for col, title in enumerate(COLUMNS):
        x, _ = cell_origin(0, col, h, w)
        draw.text((x, 3), title, fill=TEXT, font=font)
    for row in range(n):
        cells = (image_a[row], image_b[row], mask[row], mixed[row])
        for col, img in enumerate(cells):
            tile = Image.fromarray(_to_rgb_u8(img)).resize((w * s, h * s), Image.NEAREST)
            canvas.paste(tile, cell_origin(row, col, h, w))
        _, y = cell_origin(row, 0, h, w)
        draw.text((PAD, y + (s * h) // 2 - 6), f"lam={float(lam[row]):.2f}", fill=TEXT, font=font)
    return canvas


def save_preview(
    path: str | os.PathLike[str],
    image_a: torch.Tensor,
    image_b: torch.Tensor,
    mask: torch.Tensor,
    mixed: torch.Tensor,
    lam: torch.Tensor,
) -> Path:
    """Write the grid as PNG (atomically)."""
    grid = preview_grid(image_a, image_b, mask, mixed, lam)
    return atomic_write(path, lambda p: grid.save(p, format="PNG"))  # type: ignore[attr-defined]
