"""Train and eval transforms (docs/algorithm.md "Online supervised SAMix"), producing float images in [0, 1].

Normalisation (mean/std) is NOT applied here: mixing happens in pixel space (a frozen
generator takes images in [0, 1]) and models normalise on the device
(:class:`samix_hub.train.Normalize`). Mixing commutes with per-channel normalisation.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["train_transform", "eval_transform"]


def train_transform(image_size: tuple[int, int], small: bool | None = None) -> v2.Compose:
    """Small images (<= 64 px): reflect-pad crop (pad = size/8, 4 px at 32) + flip;
    large images: RandomResizedCrop + flip."""
    h, w = image_size
    small = max(h, w) <= 64 if small is None else small
    if small:
        ops = [
            v2.Resize((h, w), antialias=True),
            v2.RandomCrop((h, w), padding=max(h // 8, 1), padding_mode="reflect"),
        ]
    else:
        ops = [v2.RandomResizedCrop((h, w), antialias=True)]
    return v2.Compose([*ops, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


def eval_transform(image_size: tuple[int, int], small: bool | None = None) -> v2.Compose:
    """Small images: resize only; large images: resize to size/0.875 then centre crop."""
    h, w = image_size
    small = max(h, w) <= 64 if small is None else small
    if small:
        ops = [v2.Resize((h, w), antialias=True)]
    else:
        ops = [v2.Resize(int(round(min(h, w) / 0.875)), antialias=True), v2.CenterCrop((h, w))]
    return v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True)])
