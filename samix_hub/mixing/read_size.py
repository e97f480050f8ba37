"""The generator's read size: SAMix^P's encoder reads a smaller copy of the batch.

docs/algorithm.md "The generator's read size": the mask is made from the stage-3 feature map
and upsampled, so the encoder can read the batch at a fraction ``scale`` of the generator's
native size for about ``scale²`` of its cost; a λ-exact mask is still calibrated at the images'
size. The fine-tune loop (``--generator-scale``) and the drop-in ``SAMixUp``
(``generator_scale=``) both bind it here. An onnxruntime graph has its read size built in.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_GENERATOR_SCALE",
    "check_generator_scale",
    "encoder_size",
    "read_copy",
    "scaled_masks",
]

#: A quarter of the native size: 1/16 of the encoder's convolutions, and no accuracy lost on
#: the transfer benchmark's test split (docs/algorithm.md "The generator's read size").
DEFAULT_GENERATOR_SCALE = 0.25
#: The smallest side the encoder reads (a ResNet's stage 3 still has a 2 x 2 map at 8 px).
MIN_READ = 8


def check_generator_scale(scale: float) -> float:
    """``scale`` if it is a number in (0, 1]; else ``ValueError`` naming it."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise ValueError(f"generator scale must be a number in (0, 1], got {scale!r}")
    if not (math.isfinite(scale) and 0 < scale <= 1):
        raise ValueError(f"generator scale must be in (0, 1], got {scale}")
    return float(scale)


def encoder_size(native: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size a generator of ``native`` input size reads a batch at, at ``scale`` (each side
    rounded, at least :data:`MIN_READ` px)."""
    return (max(MIN_READ, round(native[0] * scale)), max(MIN_READ, round(native[1] * scale)))


def read_copy(images: torch.Tensor, scale: float | None) -> torch.Tensor:
    """What an encoder reading at ``scale`` of the batch's size sees: a bilinear copy at
    :func:`encoder_size` of the images' size; ``None`` or 1: ``images`` themselves."""
    if scale is None or scale == 1.0:
        return images
    size = encoder_size((images.shape[-2], images.shape[-1]), scale)
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def scaled_masks(gen: Any, scale: float | None) -> Callable[..., torch.Tensor]:
    """``gen.masks`` with the encoder reading at ``scale`` times the native size; ``None`` or 1:
    ``gen.masks`` itself (or ``gen``, a plain mask function). Only a torch generator (an
    ``nn.Module``) can change its read size: another one with ``scale`` < 1 raises
    ``ValueError``."""
    masks: Callable[..., torch.Tensor] = getattr(gen, "masks", gen)  # a generator or a mask fn
    if scale is None or check_generator_scale(scale) == 1.0:
        return masks
    if not isinstance(gen, torch.nn.Module):
        raise ValueError(
            f"generator scale {scale:g} needs a torch generator; {type(gen).__name__} reads at "
            "its native size (load it with runtime='torch')"
        )
    native = cast(tuple[int, int], gen.input_size)
    return functools.partial(masks, encoder_size=encoder_size(native, scale))
