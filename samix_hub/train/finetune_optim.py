"""Fine-tuning optimizers and schedules through timm's factories (docs/algorithm.md
"Fine-tuning: optimizer and warm-up").

``--opt sgd`` without warm-up is not handled here: the loop's own SGD and cosine stay exactly
as they were (the CNN recipe). ``--opt adamw`` is ``timm.optim.create_optimizer_v2`` (AdamW
with decoupled weight decay, no decay on biases, norm weights and the model's
``no_weight_decay()`` names, as timm trains ViTs). ``--warmup-epochs N`` is timm's
``CosineLRScheduler`` stepped per update: lr rises linearly from 0 to ``--lr`` over the first
``N`` epochs' steps, then follows a cosine to ``--min-lr`` over the remaining steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from samix_hub.errors import UserError
from samix_hub.train.config import TrainConfig

__all__ = ["OPT_DEFAULTS", "create_optimizer", "create_scheduler", "WarmupCosine", "check_warmup"]

#: ``--lr`` / ``--weight-decay`` when not given: SGD keeps the fine-tune defaults; AdamW takes
#: the usual transformer fine-tuning values (a starting point, not tuned here).
OPT_DEFAULTS: dict[str, dict[str, float]] = {
    "sgd": {"lr": 0.01, "weight_decay": 1e-4},
    "adamw": {"lr": 1e-4, "weight_decay": 0.05},
}


def check_warmup(cfg: TrainConfig, warmup_epochs: Any) -> int:
    """``--warmup-epochs``: a whole number in [0, --epochs]."""
    if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int):
        raise UserError(f"--warmup-epochs must be a whole number, got {warmup_epochs!r}")
    if not 0 <= warmup_epochs <= cfg.epochs:
        raise UserError(
            f"--warmup-epochs must be in [0, --epochs {cfg.epochs}], got {warmup_epochs}"
        )
    return warmup_epochs


def create_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer | None:
    """timm's AdamW over the trainable parameters of ``model``; None for SGD (the loop's)."""
    if cfg.optimizer != "adamw":
        return None
    from timm.optim import create_optimizer_v2

    net = getattr(model, "net", model)  # the timm model: its no_weight_decay() names count
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if trainable != {id(p) for p in net.parameters() if p.requires_grad}:
        raise RuntimeError("the classifier has trainable parameters outside its timm model")
    return create_optimizer_v2(net, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay)


class WarmupCosine:
    """timm's ``CosineLRScheduler`` (per update) behind the loop's scheduler calls.

    Its state is the number of updates: the schedule is a function of it and of the config,
    which ``--resume`` checks, so a checkpoint holds one integer.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total: int, warmup: int, min_lr: float):
        from timm.scheduler import CosineLRScheduler

        self.optimizer = optimizer
        self.warmup = min(warmup, total)
        self.scheduler = CosineLRScheduler(
            optimizer,
            t_initial=max(1, total - self.warmup),
            lr_min=min_lr,
            warmup_t=self.warmup,
            warmup_lr_init=0.0,
            warmup_prefix=True,
            t_in_epochs=False,
        )
        self.updates = 0
        self.scheduler.step_update(0)

    def step(self) -> None:
        self.updates += 1
        self.scheduler.step_update(self.updates)

    def get_last_lr(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"updates"}:
            raise UserError(
                "the checkpoint's schedule is not a warm-up schedule; use another --out"
            )
        self.updates = int(state["updates"])
        self.scheduler.step_update(self.updates)


def create_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, per_epoch: int
) -> WarmupCosine | None:
    """The warm-up + cosine schedule for ``--warmup-epochs N > 0``; None: the loop's cosine."""
    warmup = int(cfg.finetune.warmup_epochs or 0)
    if warmup == 0:
        return None
    return WarmupCosine(optimizer, total, warmup * per_epoch, cfg.min_lr or 0.0)
