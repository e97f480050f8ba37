"""Sampling of mixup parameters, separate from applying them (as torchvision v2 MixUp/CutMix).

Every function takes an explicit ``torch.Generator`` as ``rng``; nothing touches the global RNG.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "DEFAULT_ALPHA",
    "sample_lam",
    "sample_partner",
    "sample_box",
    "box_lam",
    "check_alpha",
    "PAIRINGS",
    "check_pairing",
]

#: The one Beta(α, α) table: each method's α on CIFAR, as the reference (docs/algorithm.md:
#: "Online supervised SAMix", "SAMix^P", "Baselines"). ``moco`` is self-supervised MoCo.
DEFAULT_ALPHA: dict[str, float] = {
    "vanilla": 1.0,
    "mixup": 1.0,
    "cutmix": 0.2,
    "automix": 2.0,
    "samix": 2.0,
    "samix-p": 2.0,
    "moco": 1.0,
}


def check_alpha(alpha: float) -> float:
    """Validate a Beta(α, α) parameter."""
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    return float(alpha)


def _beta(alpha: float, shape: tuple[int, ...], rng: torch.Generator | None) -> torch.Tensor:
    # Beta(a, a) = Ga / (Ga + Gb); torch.distributions takes no generator, _standard_gamma does.
    conc = torch.full((2, *shape), float(alpha), dtype=torch.float64)
    gam = torch._standard_gamma(conc, generator=rng)
    total = gam[0] + gam[1]
    # For α near the float64 maximum the sum overflows to inf: the ratio form stays finite.
    out = torch.where(total.isinf(), 1.0 / (1.0 + gam[1] / gam[0]), gam[0] / total)
    return out.nan_to_num(0.5).float()  # 0/0 only for vanishing α: fall back to an even mix


def sample_lam(
    alpha: float, n: int | None = None, rng: torch.Generator | None = None
) -> torch.Tensor:
    """λ ~ Beta(α, α): a 0-d tensor (one λ per batch) or ``n`` values (one per sample)."""
    check_alpha(alpha)
    shape: tuple[int, ...] = () if n is None else (n,)
    return _beta(alpha, shape, rng)


#: ``permutation``: a random permutation (the reference; about one image in N is its own
#: partner); ``derangement``: a random cycle through the batch, nobody is their own partner.
PAIRINGS = ("permutation", "derangement")


def check_pairing(pairing: str) -> str:
    """Validate a pairing name (:data:`PAIRINGS`)."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {', '.join(PAIRINGS)}, got {pairing!r}")
    return pairing


def sample_partner(
    n: int, rng: torch.Generator | None = None, pairing: str = "permutation"
) -> torch.Tensor:
    """Partners π: sample ``i`` is mixed with ``π[i]`` (see :data:`PAIRINGS`).

    ``derangement`` shuffles the batch into a random order σ and pairs each image with the next
    one in it (``π[σ_k] = σ_{k+1 mod n}``): one random cycle, so no image meets itself unless the
    batch has one image. Both draw exactly one ``randperm`` from ``rng``.
    """
    if n < 1:
        raise ValueError(f"need at least one sample to pair, got {n}")
    check_pairing(pairing)
    perm = torch.randperm(n, generator=rng)
    if pairing == "permutation":
        return perm
    partner = torch.empty_like(perm)
    partner[perm] = perm.roll(-1)
    return partner


def sample_box(
    lam: float, height: int, width: int, rng: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """CutMix box ``(y0, y1, x0, x1)`` of side ``sqrt(1 - λ)`` with a random centre, clipped."""
    ratio = math.sqrt(1.0 - float(lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, (1,), generator=rng))
    cx = int(torch.randint(width, (1,), generator=rng))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return y0, y1, x0, x1


def box_lam(box: tuple[int, int, int, int], height: int, width: int) -> float:
    """CutMix's λ corrected to the area kept after clipping: ``1 - box area / image area``."""
    y0, y1, x0, x1 = box
    return 1.0 - (y1 - y0) * (x1 - x0) / float(height * width)
