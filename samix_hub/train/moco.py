"""MoCo v2 building blocks (He et al. 2020; Chen et al. 2020, arXiv 2003.04297), for SSL SAMix.

- :class:`MoCoNet`: on-device normalisation -> timm backbone without head (pooled features) ->
  2-layer projection MLP ``d -> d -> 128`` (MoCo v2 ``mlp``; openmixup ``NonLinearNeckV1``).
- :class:`KeyQueue`: the queue of negative keys (FIFO ring buffer, L2-normalised rows).
- :func:`shuffled_forward`: shuffle-BN for the key encoder (MoCo, arXiv 1911.05722 §3.3). Under DDP the keys'
  batch is gathered, shuffled across ranks with a permutation every rank draws alike, encoded
  and un-shuffled, as the reference's ``_batch_shuffle_ddp``. In one process the batch is
  shuffled and encoded in ``splits`` chunks (the single-device "SplitBatchNorm" of the MoCo
  CIFAR demo): either way a key's BatchNorm statistics come from another sub-batch than its
  query's, which removes the intra-batch leak MoCo describes.
- :func:`two_view_transform`: the MoCo v2 augmentation, two independent views per image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import timm
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torchvision.transforms import v2

from samix_hub.errors import UserError
from samix_hub.models.classifier import Classifier, check_backbone, timm_method
from samix_hub.train.distributed import DistInfo

__all__ = [
    "MoCoNet",
    "KeyQueue",
    "shuffled_forward",
    "gather_rows",
    "default_queue_len",
    "two_view_transform",
    "TwoViews",
    "build_moco",
]


class MoCoNet(Classifier):
    """``neck(net(normalize(x)))``: the 128-d embedding of MoCo v2 for images in [0, 1].

    ``net`` is a timm model created with ``num_classes=0`` (its forward returns pooled features),
    so ``net.state_dict()`` holds plain timm key names, as a published backbone does.
    """

    def __init__(
        self,
        net: nn.Module,
        mean: Sequence[float],
        std: Sequence[float],
        proj_dim: int = 128,
        hidden: int | None = None,
    ) -> None:
        super().__init__(net, mean, std)
        dim = int(getattr(net, "num_features"))  # noqa: B009  (timm attribute, untyped)
        self.embedding_dim = dim
        hidden = hidden or dim  # MoCo v2: Linear(d, d) -> ReLU -> Linear(d, 128)
        self.neck = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, proj_dim)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features (what the kNN monitor and the linear probe read)."""
        return self.net(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.embed(x))

    def forward_with_features(
        self, x: torch.Tensor, stage: int = 3
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(embedding, stage feature map)`` from ONE pass (the key encoder feeds the mixer)."""
        final, inter = timm_method(self.net, "forward_intermediates")(
            self.normalize(x), indices=[stage], intermediates_only=False
        )
        return self.neck(timm_method(self.net, "forward_head")(final)), inter[-1]


class KeyQueue(nn.Module):
    """MoCo's queue of ``length`` negative keys (rows L2-normalised; random at the start)."""

    keys: torch.Tensor
    ptr: torch.Tensor

    def __init__(self, dim: int, length: int, rng: torch.Generator | None = None) -> None:
        super().__init__()
        if length < 1 or dim < 1:
            raise ValueError(f"queue needs length >= 1 and dim >= 1, got {length}, {dim}")
        keys = F.normalize(torch.randn(length, dim, generator=rng), dim=1)
        self.register_buffer("keys", keys)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @torch.no_grad()
    def push(self, keys: torch.Tensor) -> None:
        """Enqueue ``keys`` (B x dim) in place of the oldest ones (ring buffer)."""
        n, length = keys.shape[0], len(self)
        if n > length:
            raise ValueError(f"cannot enqueue {n} keys into a queue of {length}")
        idx = (self.ptr + torch.arange(n, device=self.keys.device)) % length
        self.keys[idx] = F.normalize(keys.detach().float(), dim=1).to(self.keys.dtype)
        self.ptr.copy_((self.ptr + n) % length)


def default_queue_len(num_train: int, global_batch: int) -> int:
    """Queue length sized for the data set: the power of two <= 1/12 of the training images,
    capped at 65536 and at least one global batch.

    This gives the references' values on their data sets (ImageNet 1.28 M -> 65536, MoCo v2;
    CIFAR-10 50 k -> 4096) and keeps a small set's queue from holding many stale copies of
    the same images (a queue near the data set size makes positives reappear as negatives).
    """
    target = max(num_train // 12, 1)
    length = 1 << (target.bit_length() - 1)
    return max(min(length, 65536), global_batch)


@torch.no_grad()
def gather_rows(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate equal-sized tensors of all ranks along dim 0 (rank order); no grad."""
    if not info.enabled:
        return x
    parts = [torch.empty_like(x) for _ in range(info.world)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def shuffled_forward(
    fn: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    x: torch.Tensor,
    rng: torch.Generator,
    info: DistInfo,
    splits: int = 1,
) -> tuple[torch.Tensor, ...]:
    """``fn(x)`` computed with shuffle-BN; outputs come back in the order of ``x``.

    ``rng`` must draw the same permutation on every rank (it is seeded without the rank).
    Under DDP every rank encodes its share of the gathered, shuffled batch (as the reference);
    in one process the shuffled batch is encoded in ``splits`` chunks.
    """
    n = x.shape[0]
    if info.enabled:
        x_all = gather_rows(x, info)
        perm = torch.randperm(x_all.shape[0], generator=rng).to(x.device)
        mine = perm.view(info.world, n)[info.rank]
        outs = fn(x_all[mine])
        result = []
        for out in outs:
            out_all = gather_rows(out, info)
            unshuffled = torch.empty_like(out_all)
            unshuffled[perm] = out_all
            result.append(unshuffled[info.rank * n : (info.rank + 1) * n])
        return tuple(result)
    perm = torch.randperm(n, generator=rng).to(x.device)
    chunks = [fn(x[idx]) for idx in perm.chunk(max(min(splits, n // 2), 1))]
    result = []
    for parts in zip(*chunks, strict=True):
        cat = torch.cat(parts, dim=0)
        unshuffled = torch.empty_like(cat)
        unshuffled[perm] = cat
        result.append(unshuffled)
    return tuple(result)


def two_view_transform(
    image_size: tuple[int, int], channels: int = 3, small: bool | None = None
) -> v2.Compose:
    """One MoCo v2 view: RandomResizedCrop(scale 0.2-1) -> colour jitter (0.4, 0.4, 0.4, 0.1;
    p 0.8) -> grayscale (p 0.2) -> Gaussian blur (sigma 0.1-2, p 0.5; large images only, as
    MoCo v2 on ImageNet; CIFAR recipes drop it) -> flip -> float [0, 1].

    One-channel images get brightness/contrast jitter only (saturation, hue and grayscale need
    colour).
    """
    h, w = image_size
    small = max(h, w) <= 64 if small is None else small
    ops: list[nn.Module] = [v2.RandomResizedCrop((h, w), scale=(0.2, 1.0), antialias=True)]
    if channels == 3:
        ops += [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
    else:
        ops.append(v2.RandomApply([v2.ColorJitter(0.4, 0.4)], p=0.8))
    if not small:
        kernel = max(int(0.1 * min(h, w)) // 2 * 2 + 1, 3)
        ops.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    ops += [v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)]
    return v2.Compose(ops)


class TwoViews:
    """``image -> stack([view(image), view(image)])`` (2 x C x H x W): two independent views."""

    def __init__(self, view: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.view = view

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.view(image), self.view(image)])


def build_moco(
    backbone: str,
    mean: Any,
    std: Any,
    in_chans: int,
    proj_dim: int = 128,
    seed: int | None = None,
) -> MoCoNet:
    """A freshly initialised query network (timm backbone without head + projection MLP)."""
    check_backbone(backbone)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=in_chans)
        if not hasattr(net, "forward_intermediates"):
            raise UserError(f"backbone {backbone!r}: timm model without forward_intermediates")
        return MoCoNet(net, mean, std, proj_dim)
