"""Mask helpers shared by online SAMix, SAMix^P and offline mixing (docs/algorithm.md: "Online supervised SAMix" and "SAMix^P").

All masks are the weight of sample ``i`` (N x 1 x H x W); ``partner[i]`` gets ``1 - mask``.
Everything here is branch-free tensor code so that it exports to ONNX.
"""

from __future__ import annotations

import torch

from samix_hub.models.mixer import calibrate_logits

__all__ = [
    "apply_mask",
    "mask_adjust",
    "margin_fallback",
    "sharpen",
    "check_temperature",
    "LAM_MARGIN",
]

#: λ margin of the reference: masks for λ <= 0.08 or >= 0.92 are replaced by plain MixUp.
LAM_MARGIN = 0.08


def _lam_view(lam: float | torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    lam_t = torch.as_tensor(lam, dtype=mask.dtype, device=mask.device)
    if lam_t.dim() == 0:
        lam_t = lam_t.expand(mask.shape[0])
    return lam_t.reshape(-1, 1, 1, 1)


def apply_mask(images: torch.Tensor, mask: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """``mask * images + (1 - mask) * images[partner]``."""
    return mask * images + (1 - mask) * images[partner]


def mask_adjust(mask: torch.Tensor, lam: float | torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Rescale each mask so that its mean is exactly λ while staying in [0, 1].

    As openmixup's ``mask_adjust``: a mask whose mean is above λ is scaled by ``λ / mean``; one
    below λ has its complement scaled by ``(1 - λ) / (1 - mean)``.
    """
    lam_v = _lam_view(lam, mask)
    m = mask.clamp(eps, 1 - eps)
    mean = m.mean(dim=(1, 2, 3), keepdim=True)
    down = m * (lam_v / mean)
    up = 1 - (1 - m) * ((1 - lam_v) / (1 - mean))
    return torch.where(mean > lam_v, down, up)


def margin_fallback(
    mask: torch.Tensor, lam: float | torch.Tensor, margin: float = LAM_MARGIN
) -> torch.Tensor:
    """Replace the mask of samples with ``λ <= margin`` or ``λ >= 1 - margin`` by the constant λ."""
    lam_v = _lam_view(lam, mask)
    extreme = (lam_v <= margin) | (lam_v >= 1 - margin)
    return torch.where(extreme, lam_v.expand_as(mask), mask)


def check_temperature(temperature: float) -> float:
    """Validate a mask temperature: positive and finite."""
    if not 0.0 < temperature < float("inf"):
        raise ValueError(f"mask temperature must be > 0 and finite, got {temperature}")
    return float(temperature)


def sharpen(
    mask: torch.Tensor, lam: float | torch.Tensor, temperature: float, eps: float = 1e-6
) -> torch.Tensor:
    """A sharper (``temperature < 1``) or softer (``> 1``) mask whose mean stays λ per image.

    The mask's logits are divided by ``temperature`` and shifted back to mean λ with the same
    solve as λ-exact generators (docs/algorithm.md "Mask temperature", a deviation: the paper has
    no such knob). ``temperature == 1`` returns the mask unchanged; a constant mask stays
    constant. Per-image error of the mean <= 1e-6 for λ in [0.02, 0.98].
    """
    check_temperature(temperature)
    if temperature == 1.0:
        return mask
    dtype = mask.dtype
    work = mask.float() if dtype in (torch.float16, torch.bfloat16) else mask
    logits = torch.logit(work.clamp(eps, 1 - eps)) / temperature
    lam_v = _lam_view(lam, work).reshape(-1)
    return torch.sigmoid(calibrate_logits(logits, lam_v)).to(dtype)
