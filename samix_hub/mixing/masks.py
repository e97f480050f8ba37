"""Mask helpers shared by online SAMix, SAMix^P and offline mixing (docs/algorithm.md: "Online supervised SAMix" and "SAMix^P").

All masks are the weight of sample ``i`` (N x 1 x H x W); ``partner[i]`` gets ``1 - mask``.
Everything here is branch-free tensor code so that it exports to ONNX.
"""

from __future__ import annotations

import torch

__all__ = [
    "CALIBRATION_ITERS",
    "as_lam_tensor",
    "calibrate_logits",
    "rescale_lam",
    "apply_mask",
    "mask_adjust",
    "margin_fallback",
    "sharpen",
    "check_temperature",
    "LAM_MARGIN",
]

#: Newton / bisection steps of :func:`calibrate_logits` (fixed: the ONNX graph is unrolled).
CALIBRATION_ITERS = 16

#: λ margin of the reference: masks for λ <= 0.08 or >= 0.92 are replaced by plain MixUp.
LAM_MARGIN = 0.08


def rescale_lam(lam: torch.Tensor, k: float) -> torch.Tensor:
    """SAMix λ encoding: ``(4/3 λ³ - 2 λ² + (k+1) λ) / (k + 1 - 2/3)``; identity when k < 0.

    Fixes 0, 1/2 and 1 and is monotone for k >= 0 (openmixup ``rescale_lam_mult``).
    """
    if k < 0:
        return lam
    kk = k + 1.0
    return (4.0 / 3.0 * lam**3 - 2.0 * lam**2 + kk * lam) / (kk - 2.0 / 3.0)


def as_lam_tensor(lam: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """λ as a float32 tensor of shape (n,), from a float, a 0-d tensor or n values."""
    lam_t = torch.as_tensor(lam, dtype=torch.float32, device=device)
    if lam_t.dim() == 0:
        lam_t = lam_t.expand(n)
    lam_t = lam_t.reshape(-1)
    if lam_t.shape[0] != n:
        raise ValueError(f"lam has {lam_t.shape[0]} values for a batch of {n}")
    return lam_t


def calibrate_logits(
    logits: torch.Tensor, lam: torch.Tensor, iters: int = CALIBRATION_ITERS
) -> torch.Tensor:
    """Shift each image's logits by one scalar ``b_i`` so that ``mean(sigmoid(logits_i + b_i)) = λ_i``.

    ``logits`` (N x 1 x H x W) are the logits of the weight of image ``i``; ``lam`` has N values
    in (0, 1). ``g(b) = mean(sigmoid(s + b))`` is continuous and increasing, and its root lies in
    ``[logit(λ) - max(s), logit(λ) - min(s)]``; a fixed number of Newton steps, replaced by
    bisection of that bracket whenever Newton leaves it, finds it (branch-free: exports to
    ONNX unrolled). The solve runs without autograd; one straight-through Newton step then carries
    the implicit-function gradient ``db/ds_k = -sigmoid'(s_k + b) / sum_j sigmoid'(s_j + b)``
    (and ``db/dλ``) without changing the value. Computed in fp32 (fp64 stays fp64).
    """
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    n = logits.shape[0]
    flat = logits.to(dtype).reshape(n, -1)
    target = lam.to(dtype).reshape(n).clamp(1e-6, 1 - 1e-6)
    t = torch.log(target) - torch.log1p(-target)  # logit(λ)
    with torch.no_grad():
        s = flat.detach()
        lo = t - s.amax(dim=1)
        hi = t - s.amin(dim=1)
        b = (t - s.mean(dim=1)).clamp(min=lo, max=hi)
        for _ in range(iters):
            p = torch.sigmoid(s + b[:, None])
            f = p.mean(dim=1) - target
            slope = (p * (1 - p)).mean(dim=1)
            below = f < 0
            lo = torch.where(below, b, lo)
            hi = torch.where(below, hi, b)
            newton = b - f / slope.clamp_min(1e-30)
            inside = (newton >= lo) & (newton <= hi)
            b = torch.where(inside, newton, 0.5 * (lo + hi))
    p = torch.sigmoid(flat + b[:, None])
    f = p.mean(dim=1) - target
    slope = (p * (1 - p)).mean(dim=1).detach().clamp_min(1e-30)
    step = f / slope
    b = b - (step - step.detach())  # value b, gradient of the implicit solution
    return (flat + b[:, None]).reshape(logits.shape).to(logits.dtype)


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
