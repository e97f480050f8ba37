"""Linear probe: a linear classifier on the frozen backbone's pooled features (the standard
evaluation of self-supervised encoders: MoCo, SAMix, arXiv 2111.15454 §5).

Deviation from the references' linear evaluation (100 epochs of SGD through the frozen backbone
with RandomResizedCrop + flip): features are extracted ONCE without augmentation (eval
transform), standardised with the training split's mean and std, and a softmax regression is
fitted on them (mini-batch SGD with momentum, cosine schedule, explicit generator). This costs
one backbone pass per image instead of one per image and epoch; it usually scores a little below
the augmented protocol, so compare probes with probes only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.data.specs import DataSource
from samix_hub.train.evaluate import topk_correct
from samix_hub.train.knn import extract_features
from samix_hub.train.loader import eval_loader, eval_transform

__all__ = ["LinearProbe", "fit_linear_probe", "linear_probe"]


class LinearProbe(nn.Module):
    """``linear((x - mean) / std)`` on features; statistics from the training features."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.clone())
        self.register_buffer("std", std.clone())
        self.linear = nn.Linear(mean.numel(), num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x - self.mean) / self.std)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    seed: int = 0,
) -> LinearProbe:
    """Softmax regression on standardised ``features`` (N x D) by SGD (momentum 0.9, cosine)."""
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise ValueError(f"{features.shape[0]} feature rows for {labels.shape[0]} labels")
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise ValueError(
            f"need epochs >= 1, lr > 0, batch size >= 1 ({epochs}, {lr}, {batch_size})"
        )
    x = features.float()
    mean, std = x.mean(dim=0), x.std(dim=0, unbiased=False).clamp_min(1e-6)
    probe = LinearProbe(mean, std, num_classes).to(x.device)
    opt = torch.optim.SGD(
        probe.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True
    )
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(probe(x[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return probe.eval()


@torch.no_grad()
def _accuracy(probe: LinearProbe, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    if x.shape[0] == 0:
        return 0.0, 0.0
    c1, c5 = topk_correct(probe(x.float()), y, (1, 5))
    return 100.0 * c1 / x.shape[0], 100.0 * c5 / x.shape[0]


def linear_probe(
    encode: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data: DataSource,
    device: torch.device,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    workers: int = 2,
    seed: int = 0,
    image_size: tuple[int, int] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, Any]:
    """Fit on ``data.train``, score on ``data.test``: ``{"top1", "top5", "train_top1", ...}``.

    ``encode`` maps images in [0, 1] to pooled features (e.g. ``MoCoNet.embed`` or a
    :class:`~samix_hub.train.Classifier` whose timm model has ``num_classes=0``); it runs in
    eval mode, and a module's previous mode is restored.
    """
    if data.test is None:
        raise ValueError("the data set has no test split")
    h, w = image_size or data.image_size
    tf = eval_transform((h, w))
    owner = encode if isinstance(encode, nn.Module) else getattr(encode, "__self__", None)
    module = owner if isinstance(owner, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        train = eval_loader(data.train, tf, batch_size, workers)
        test = eval_loader(data.test, tf, batch_size, workers)
        x_tr, y_tr = extract_features(encode, train, device, autocast)
        x_te, y_te = extract_features(encode, test, device, autocast)
    finally:
        if module is not None:
            module.train(was_training)
    with torch.enable_grad():
        probe = fit_linear_probe(
            x_tr, y_tr, data.num_classes, epochs, lr, batch_size, weight_decay, seed
        )
    top1, top5 = _accuracy(probe, x_te, y_te)
    train_top1, _ = _accuracy(probe, x_tr, y_tr)
    return {
        "top1": top1,
        "top5": top5,
        "train_top1": train_top1,
        "feature_dim": int(x_tr.shape[1]),
        "num_train": int(x_tr.shape[0]),
        "num_test": int(x_te.shape[0]),
        "epochs": epochs,
        "lr": lr,
    }
