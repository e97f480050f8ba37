"""The same pairs mixed by one generator at three read sizes: a picture of what
``--generator-scale`` changes (docs/algorithm.md "The generator's read size").

Six CIFAR-10 test pairs (seeded), the shipped ``builtin:cifar10-small`` generator, one λ per
pair; one preview grid (image a, image b, mask, mixed) per read size, side by side, with the
scale and the mean |mask - λ| above each. Writes ``docs/read_size_preview.png`` by default.

    python benchmarks/read_size_preview.py
    python benchmarks/read_size_preview.py --data ../shared/data/cifar10_subset_4k_1k.npz --out grid.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import samix_hub
from samix_hub.mixing.masks import apply_mask
from samix_hub.mixing.preview import preview_grid
from samix_hub.train.frozen import scaled_masks

REPO = Path(__file__).resolve().parent.parent
SCALES = (1.0, 0.5, 0.25)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--data", type=Path, default=REPO.parent / "shared/data/cifar10_subset_4k_1k.npz"
    )
    p.add_argument("--out", type=Path, default=REPO / "docs" / "read_size_preview.png")
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from PIL import Image, ImageDraw

    with np.load(args.data) as d:
        x = torch.from_numpy(d["x_test"]).permute(0, 3, 1, 2).float() / 255
    g = torch.Generator().manual_seed(args.seed)
    n = args.pairs
    idx = torch.randperm(x.shape[0], generator=g)[: 2 * n]
    images = x[idx]
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])  # a_i with b_i, and back
    lam = (torch.rand(n, generator=g) * 0.6 + 0.2).repeat(2)
    gen = samix_hub.load_generator("builtin:cifar10-small")
    grids = []
    for scale in SCALES:
        with torch.no_grad():
            mask = scaled_masks(gen, scale)(images, partner, lam)[:n]
        mixed = apply_mask(images, torch.cat([mask, mask]), partner)[:n]
        grid = preview_grid(images[:n], images[n:], mask, mixed, lam[:n])
        err = float((mask.mean(dim=(1, 2, 3)) - lam[:n]).abs().mean())
        grids.append((f"--generator-scale {scale:g}  (mean |mask - lam| {err:.1e})", grid))
    top = 16
    width = sum(gr.width for _, gr in grids) + 8 * (len(grids) - 1)
    canvas = Image.new("RGB", (width, top + grids[0][1].height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x0 = 0
    for title, grid in grids:
        draw.text((x0 + 4, 2), title, fill=(0, 0, 0))
        canvas.paste(grid, (x0, top))
        x0 += grid.width + 8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
