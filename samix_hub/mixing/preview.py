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
from typing import TYPE_CHECKING

import numpy as np
import torch

from samix_hub.fileio import atomic_write
from samix_hub.fileio.guard import guard_output

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "COLUMNS",
    "preview_grid",
    "save_preview",
    "is_preview_png",
    "cell_scale",
    "cell_origin",
    "grid_size",
]

COLUMNS = ("image a", "image b", "mask", "mixed")
LABEL_WIDTH = 72
HEADER = 18
PAD = 4
MIN_CELL = 64
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
#: The PNG ``tEXt`` chunk that marks a grid this module wrote: only such a file is replaced.
MARKER_KEY, MARKER_VALUE = "Software", "samix-hub preview"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
) -> Image.Image:
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
            tile = Image.fromarray(_to_rgb_u8(img)).resize((w * s, h * s), Image.Resampling.NEAREST)
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
    """Write the grid as PNG (atomically), marked as ours; an existing file at ``path`` is
    replaced only when it is a grid this function wrote (:func:`is_preview_png`)."""
    from PIL.PngImagePlugin import PngInfo

    target = guard_output(path, "--preview", ours=is_preview_png)
    grid = preview_grid(image_a, image_b, mask, mixed, lam)
    info = PngInfo()
    info.add_text(MARKER_KEY, MARKER_VALUE)
    return atomic_write(
        target,
        lambda p: grid.save(p, format="PNG", pnginfo=info),
    )


def is_preview_png(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a regular file holding a PNG with this module's marker chunk
    (read chunk by chunk up to the image data; nothing is decoded)."""
    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    want = MARKER_KEY.encode("latin-1") + b"\0" + MARKER_VALUE.encode("latin-1")
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return False
        for _ in range(64):  # the marker comes before the image data
            head = f.read(8)
            if len(head) < 8:
                return False
            size, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind in (b"IDAT", b"IEND") or size > 1 << 20:
                return False
            body = f.read(size)
            f.seek(4, os.SEEK_CUR)  # CRC
            if kind == b"tEXt" and body == want:
                return True
    return False
