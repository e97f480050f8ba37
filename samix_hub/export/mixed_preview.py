"""The preview grid's rows: pairs of shard 0 mixed exactly as ``mix`` writes them."""

from __future__ import annotations

from typing import Any

import torch

from samix_hub.export.mixed_source import SourceLoader, source_channels
from samix_hub.export.mixed_writer import GenFn, MixSettings, mix_group

__all__ = ["preview_batch"]


def preview_batch(
    dataset: Any,
    settings: MixSettings,
    generator: GenFn | None = None,
    device: str | torch.device = "cpu",
    rows: int = 8,
) -> tuple[torch.Tensor, ...]:
    """``(image_a, image_b, mask, mixed, lam)`` of the first ``rows`` pairs of shard 0, exactly
    as written (the mixed image quantised to 8 bits), for :func:`samix_hub.mixing.preview.save_preview`.
    """
    plan = settings.plan(0)[0]
    loader = SourceLoader(dataset, settings.image_size, source_channels(dataset))
    images, _, _ = loader(plan.load)
    mask, mixed = mix_group(
        images, plan, settings.method, generator, torch.device(device), settings.margin
    )
    k = min(rows, plan.rows)
    x = images.float() / 255.0
    mixed_u8 = (mixed[:k].cpu() * 255).round().clamp(0, 255) / 255.0
    return x[:k], x[plan.partner[:k]], mask[:k].cpu(), mixed_u8, plan.lam[:k]
