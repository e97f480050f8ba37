"""The loop's default optimizer and schedule (docs/algorithm.md "Online supervised SAMix"),
and the warning for an EMA horizon longer than a short run."""

from __future__ import annotations

import math
import sys
from typing import Any

import torch

from samix_hub.train.config import TrainConfig

__all__ = ["build_optimizer", "cosine_schedule", "warn_short_ema", "suggest_momentum"]


def build_optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (the reference recipe, docs/algorithm.md "Online supervised SAMix") or AdamW over the scenario's groups."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine from each group's lr; to ``min_lr`` (one lr) or to ``lr_g * min_lr / lr`` (several:
    a mixer with its own lr keeps its ratio to the backbone's, as the reference's two cosines)."""
    lrs = {float(g["lr"]) for g in optimizer.param_groups}
    min_lr = cfg.min_lr or 0.0
    if len(lrs) <= 1:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=min_lr)
    ratio = min_lr / cfg.lr

    def factor(step: int) -> float:
        return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def warn_short_ema(cfg: TrainConfig, total: int, show: bool) -> None:
    """Online SAMix/AutoMix score the mixer with the EMA classifier and publish its encoder.

    The reference momentum (0.999, docs/algorithm.md "Online supervised SAMix") averages over ~1,000 steps, made for runs
    of 10^5 steps. In a run of a few hundred steps the EMA stays near its random initialisation,
    so the mixer learns from a random classifier (measured on ``digits``: after 176 steps at
    0.999 the EMA scored 16 % top-1 while the online model scored 87 %). Say so.
    """
    if not show or cfg.scenario != "sl" or cfg.method not in ("samix", "automix"):
        return
    horizon = 1.0 / max(1.0 - cfg.ema_momentum, 1e-12)
    if horizon > 0.25 * total:
        print(
            f"warning: --ema-momentum {cfg.ema_momentum} averages over ~{horizon:.0f} steps but "
            f"the run has {total}: the EMA classifier that trains the mixer (and becomes the "
            "generator's encoder) will stay near its initialisation; for short runs pass e.g. "
            f"--ema-momentum {suggest_momentum(total)} --ema-end-momentum 0.999",
            file=sys.stderr,
        )


def suggest_momentum(total: int) -> float:
    """A momentum whose horizon is ~2 % of the run, rounded to a readable value."""
    for m in (0.999, 0.995, 0.99, 0.98, 0.95, 0.9):
        if 1.0 / (1.0 - m) <= max(0.02 * total, 10):
            return m
    return 0.9
