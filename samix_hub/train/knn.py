"""Weighted kNN monitor for self-supervised training (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination"; the monitor of the MoCo / openmixup code).

Every test image is classified by its ``k`` nearest training images in the L2-normalised feature
space (cosine similarity), each neighbour voting for its label with weight ``exp(sim / T)``
(``k = 200``, ``T = 0.1`` as the references). Labels serve evaluation only, never training.
Under DDP every rank encodes its shard of both splits; the training bank is gathered to all
ranks and the counts of correct test predictions are summed, so the result is exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.train.distributed import DistInfo, all_reduce_sum

__all__ = ["extract_features", "knn_scores", "knn_accuracy", "gather_varlen"]


@torch.no_grad()
def extract_features(
    encode: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features float32 N x D, labels N)`` of ``encode`` over ``batches`` (images in [0, 1])."""
    feats, labels = [], []
    for images, y in batches:
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            f = encode(images)
        feats.append(f.float().flatten(1))
        labels.append(y.to(device))
    if not feats:
        return torch.zeros(0, 0, device=device), torch.zeros(0, dtype=torch.long, device=device)
    return torch.cat(feats), torch.cat(labels)


@torch.no_grad()
def gather_varlen(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Rows of all ranks (shards may differ in length by a few rows); identity on one process."""
    if not info.enabled:
        return x
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(info.world)]
    dist.all_gather(sizes, n)
    most = int(max(int(s) for s in sizes))
    padded = torch.zeros((most, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in range(info.world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s)] for p, s in zip(parts, sizes, strict=True)])


@torch.no_grad()
def knn_scores(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> torch.Tensor:
    """Class scores (M x num_classes): sum over the ``k`` most similar bank rows of
    ``exp(cos / T)`` for each neighbour's label."""
    if bank.shape[0] == 0:
        raise ValueError("the kNN bank is empty")
    bank = F.normalize(bank.float(), dim=1)
    k = min(k, bank.shape[0])
    out = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start : start + chunk].float(), dim=1)
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        weight = (sim / temperature).exp()
        scores = torch.zeros(q.shape[0], num_classes, device=q.device)
        scores.scatter_add_(1, bank_labels[idx], weight)
        out.append(scores)
    return torch.cat(out) if out else torch.zeros(0, num_classes, device=bank.device)


def knn_accuracy(
    encode: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    test_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    device: torch.device,
    info: DistInfo | None = None,
    k: int = 200,
    temperature: float = 0.1,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
) -> dict[str, float]:
    """``{"knn_top1", "knn_top5", "knn_count"}`` (percent) of a feature extractor.

    ``encode`` (a module or a module's method, e.g. ``MoCoNet.embed``) runs in eval mode; the
    module's previous mode is restored. Under DDP pass each
    rank's shards of both splits and ``info``.
    """
    info = info or DistInfo(device=device)
    owner = encode if isinstance(encode, nn.Module) else getattr(encode, "__self__", None)
    module = owner if isinstance(owner, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        bank, bank_y = extract_features(encode, train_batches, device, autocast, channels_last)
        test, test_y = extract_features(encode, test_batches, device, autocast, channels_last)
    finally:
        if module is not None:
            module.train(was_training)
    bank, bank_y = gather_varlen(bank, info), gather_varlen(bank_y, info)
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    if test.shape[0]:
        scores = knn_scores(bank, bank_y, test, num_classes, k, temperature)
        top = scores.topk(min(5, num_classes), dim=1).indices
        hit = top == test_y[:, None]
        counts += torch.tensor(
            [float(hit[:, 0].sum()), float(hit.any(dim=1).sum()), float(test.shape[0])],
            dtype=torch.float64,
            device=device,
        )
    counts = all_reduce_sum(counts, info)
    n = max(float(counts[2]), 1.0)
    return {
        "knn_top1": 100.0 * float(counts[0]) / n,
        "knn_top5": 100.0 * float(counts[1]) / n,
        "knn_count": int(counts[2]),
    }
