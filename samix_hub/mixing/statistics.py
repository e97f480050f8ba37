"""Mask statistics: how well masks follow λ and how sharp they are (docs/algorithm.md).

One definition, used by the training runs' per-epoch metrics, generator cards, ``samix-hub
info``, the demo and ``benchmarks/mask_lambda.py``. Masks are the weight of image ``i``.

- ``mask_slope``: least-squares slope of the batch-mean mask against λ (1 when masks follow λ);
- ``mask_spatial_std``: mean over images of each mask's spatial std (0 for a flat MixUp blend,
  about 0.5 for a binary cut);
- ``mask_spread``: std of the per-image mean masks at one λ, averaged over λ (0 when every image
  gets exactly its λ);
- ``mask_lam_mae``: mean |mean(mask_i) - λ| over images and λ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["STAT_LAMS", "mask_statistics", "generator_mask_statistics"]

#: λ grid of the statistics (inside the 0.08 margin, where a learned mask is used).
STAT_LAMS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@torch.no_grad()
def mask_statistics(
    masks_at: Callable[[float], torch.Tensor], lams: Sequence[float] = STAT_LAMS
) -> dict[str, float | list[float]]:
    """Statistics of ``masks_at(λ)`` (N x 1 x H x W masks for one fixed batch and pairing)."""
    means, stds, spreads, errs = [], [], [], []
    for lam in lams:
        mask = masks_at(float(lam)).float().flatten(1)
        per_image = mask.mean(1)
        means.append(float(per_image.mean()))
        stds.append(float(mask.std(1, unbiased=False).mean()))
        spreads.append(float(per_image.std(unbiased=False)))
        errs.append(float((per_image - lam).abs().mean()))
    lam_mean = sum(lams) / len(lams)
    m_mean = sum(means) / len(means)
    cov = sum((lam - lam_mean) * (m - m_mean) for lam, m in zip(lams, means, strict=True))
    var = sum((lam - lam_mean) ** 2 for lam in lams)
    return {
        "mask_slope": cov / var,
        "mask_spatial_std": sum(stds) / len(stds),
        "mask_spread": sum(spreads) / len(spreads),
        "mask_lam_mae": sum(errs) / len(errs),
        "mask_means": means,
    }


def generator_mask_statistics(
    gen: Callable[..., tuple[torch.Tensor, torch.Tensor]],
    images: torch.Tensor,
    lams: Sequence[float] = STAT_LAMS,
) -> dict[str, float | list[float]]:
    """:func:`mask_statistics` of a generator (``gen(images, partner, lam) -> (mask, mixed)``,
    torch or onnxruntime) on ``images`` in [0, 1], each image paired with the next one."""
    partner = torch.roll(torch.arange(images.shape[0]), 1)
    return mask_statistics(lambda lam: gen(images, partner, lam)[0], lams)
