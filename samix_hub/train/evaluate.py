"""Top-1 / top-5 accuracy (percent) of a classifier, exact under DDP (counts summed over ranks);
the mask statistics of a run's mixer (docs/algorithm.md "Mask statistics")."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.data.specs import DataSource
from samix_hub.mixing.read_size import read_copy
from samix_hub.mixing.statistics import mask_statistics
from samix_hub.models.classifier import Classifier
from samix_hub.train.distributed import DistInfo, all_reduce_sum
from samix_hub.train.loader import eval_loader, eval_transform
from samix_hub.train.scenario import EvalContext, TrainModules

__all__ = ["evaluate", "evaluate_on_test", "topk_correct", "mixer_statistics"]

#: Size of the fixed batch of first test images the mask statistics are measured on.
STAT_BATCH = 64


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    """Number of samples whose label is among the ``k`` highest logits, for each ``k``."""
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == labels[:, None]
    return [int(hit[:, : min(k, kmax)].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    info: DistInfo | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    channels_last: bool = False,
) -> dict[str, float]:
    """``{"top1", "top5", "loss", "count"}`` of ``model`` (images in [0, 1]) over ``batches``.

    Runs in eval mode and restores the model's previous mode. With ``info`` under DDP every rank
    passes its own shard and the counts are summed, so the result is the full-set accuracy.
    """
    was_training = model.training
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64)
    try:
        for images, labels in batches:
            images = images.to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast():
                logits = model(images)
            logits = logits.float()
            c1, c5 = topk_correct(logits, labels, (1, 5))
            loss = F.cross_entropy(logits, labels, reduction="sum").item()
            totals += torch.tensor([c1, c5, loss, labels.numel()], dtype=torch.float64)
    finally:
        model.train(was_training)
    if info is not None:
        totals = all_reduce_sum(totals.to(info.device), info).cpu()
    n = max(float(totals[3]), 1.0)
    return {
        "top1": 100.0 * float(totals[0]) / n,
        "top5": 100.0 * float(totals[1]) / n,
        "loss": float(totals[2]) / n,
        "count": int(totals[3]),
    }


def evaluate_on_test(model: nn.Module, ev: EvalContext) -> dict[str, float]:
    """``model``'s ``top1``, ``top5``, ``test_loss`` and ``test_images`` on the test split
    (sharded over the ranks; the caller checks there is a test split)."""
    data, cfg, info = ev.data, ev.cfg, ev.info
    assert data.test is not None
    tf = eval_transform(data.image_size)
    batches = eval_loader(
        data.test, tf, cfg.eval_batch_size, min(cfg.workers, 2), info.rank, info.world
    )
    res = evaluate(model, batches, info.device, info, ev.autocast, ev.channels_last)
    return {
        "top1": res["top1"],
        "top5": res["top5"],
        "test_loss": res["loss"],
        "test_images": res["count"],
    }


@torch.no_grad()
def mixer_statistics(
    mods: TrainModules,
    data: DataSource,
    stage: int,
    device: torch.device,
    encoder: Classifier | None,
    scale: float | None = None,
) -> dict[str, float]:
    """:func:`~samix_hub.mixing.statistics.mask_statistics` of a run's mixer reading
    ``encoder``'s stage ``stage`` on the first :data:`STAT_BATCH` test images, each paired with
    the next, as the exported generator computes masks (mixer and encoder in eval mode; both
    modes restored); finite values only. The batch is loaded once and kept in ``mods.stat_batch``.
    ``scale``: the encoder reads a copy at that fraction of the size, as the run's mixer trained
    (docs/algorithm.md "The generator's read size")."""
    mixer = mods.mixer
    if mixer is None or data.test is None or encoder is None:
        return {}
    images = mods.stat_batch
    if images is None:
        from samix_hub.train.loader import dataset_len, eval_loader, eval_transform

        n = min(STAT_BATCH, dataset_len(data.test))
        loader = eval_loader(data.test, eval_transform(data.image_size), n, 0)
        images = mods.stat_batch = next(iter(loader))[0]
    images = images.to(device)
    modes = [(m, m.training) for m in (mixer, encoder)]
    mixer.eval()
    encoder.eval()
    try:
        n, size = images.shape[0], tuple(images.shape[-2:])
        feats = encoder.features(read_copy(images, scale), stage).float()
        partner = torch.roll(torch.arange(n, device=device), 1)  # fixed, no self-pairs
        stats = mask_statistics(lambda lam: mixer(feats, lam, partner, size))
    finally:
        for module, mode in modes:
            module.train(mode)
    return {k: v for k, v in stats.items() if isinstance(v, float) and math.isfinite(v)}
