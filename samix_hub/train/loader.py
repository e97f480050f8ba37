"""Data loading for training: reproducible augmentation and a resumable, sharded sampler.

Two properties make ``--resume`` continue exactly where a run stopped, on any number of ranks and
workers: the epoch's permutation is a function of ``(seed, epoch)`` (as ``DistributedSampler``),
and each sample's augmentation is drawn from a seed that is a function of
``(seed, epoch, index)``. torchvision's v2 transforms take no generator, so the draw happens inside
``torch.random.fork_rng``: the process's global RNG is left as it was.

Small data is fast: the sampler hands out ``(epoch, index)`` pairs, so one loader with persistent
workers serves every epoch (no worker re-spawned per epoch), and data sets that are already in
memory (:func:`in_memory`: npz, digits, tensors) are loaded in the main process, without workers.

The per-image transforms (:func:`train_transform`, :func:`eval_transform`; docs/algorithm.md
"Online supervised SAMix") produce float images in [0, 1]. Normalisation (mean/std) is NOT
applied here: mixing happens in pixel space (a frozen generator takes images in [0, 1]) and
models normalise on the device (:class:`samix_hub.models.classifier.Classifier`). Mixing
commutes with per-channel normalisation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sized
from typing import Any, cast

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset
from torchvision.transforms import v2

__all__ = [
    "train_transform",
    "eval_transform",
    "SeededTransform",
    "ResumableSampler",
    "train_loader",
    "eval_loader",
    "mix_seed",
    "in_memory",
    "loader_workers",
]

_MASK = (1 << 63) - 1


def train_transform(image_size: tuple[int, int], small: bool | None = None) -> v2.Compose:
    """Small images (<= 64 px): reflect-pad crop (pad = size/8, 4 px at 32) + flip;
    large images: RandomResizedCrop + flip."""
    h, w = image_size
    small = max(h, w) <= 64 if small is None else small
    if small:
        ops = [
            v2.Resize((h, w), antialias=True),
            v2.RandomCrop((h, w), padding=max(h // 8, 1), padding_mode="reflect"),
        ]
    else:
        ops = [v2.RandomResizedCrop((h, w), antialias=True)]
    return v2.Compose([*ops, v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])


def eval_transform(image_size: tuple[int, int], small: bool | None = None) -> v2.Compose:
    """Small images: resize only; large images: resize to size/0.875 then centre crop."""
    h, w = image_size
    small = max(h, w) <= 64 if small is None else small
    if small:
        ops = [v2.Resize((h, w), antialias=True)]
    else:
        ops = [v2.Resize(int(round(min(h, w) / 0.875)), antialias=True), v2.CenterCrop((h, w))]
    return v2.Compose([*ops, v2.ToDtype(torch.float32, scale=True)])


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (splitmix64 steps): decorrelated streams per (seed, rank, ...)."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x & _MASK


class SeededTransform(Dataset):
    """``(transform(image), label)`` with the transform's randomness seeded per (epoch, index)."""

    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor], seed: int):
        self.base = base
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch of plain integer indices (the loop's sampler passes ``(epoch, index)``)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return dataset_len(self.base)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        epoch, i = index if isinstance(index, tuple) else (self.epoch, index)
        image, label = self.base[i]
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only (what fork_rng restores): torch.manual_seed would also queue
            # a lazy seed of every CUDA device, recording a stack trace each time (18 % of a
            # small CPU step, measured with cProfile).
            torch.random.default_generator.manual_seed(mix_seed(self.seed, epoch, i))
            return self.transform(image), label


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (seeded by ``(seed, epoch)``) that can start part-way into an epoch.

    ``set_start(k)`` skips the first ``k`` samples of this rank's share, so a run resumed from a
    mid-epoch checkpoint sees exactly the batches the interrupted run had not yet seen.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(
            dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = max(int(start), 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """``(epoch, index)`` pairs: workers that outlive an epoch still seed by the right one."""
        indices = list(super().__iter__())
        return iter([(self.epoch, i) for i in indices[self.start :]])

    def __len__(self) -> int:
        return max(self.num_samples - self.start, 0)


def train_loader(
    dataset: SeededTransform,
    batch_size: int,
    sampler: ResumableSampler,
    workers: int,
    pin_memory: bool,
) -> DataLoader:
    """Batches of ``batch_size`` per rank; incomplete last batches are dropped (equal mixup pairs).

    Build it once per run: its workers persist across epochs (:func:`loader_workers` decides
    whether there are any).
    """
    workers = loader_workers(dataset, workers)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=True,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


def in_memory(dataset: Dataset[Any]) -> bool:
    """Whether ``dataset`` already holds decoded images in memory (nothing for a worker to do).

    True for data sets that say so (``in_memory = True``, e.g. ``ArrayDataset`` of npz files and
    digits) and ``TensorDataset``, looking through ``SeededTransform``, ``Subset`` and mapped
    views.
    """
    while True:
        if isinstance(dataset, TensorDataset) or getattr(dataset, "in_memory", False) is True:
            return True
        inner = getattr(dataset, "base", None)
        if inner is None:
            inner = getattr(dataset, "dataset", None)
        if inner is None or inner is dataset:
            return False
        dataset = inner


def loader_workers(dataset: Dataset[Any], workers: int) -> int:
    """``workers``, or 0 for an in-memory data set: worker processes would only copy it and
    pass tensors back, slower than indexing it in the main process."""
    return 0 if in_memory(dataset) else max(int(workers), 0)


def dataset_len(dataset: Dataset[Any]) -> int:
    """The length of a map-style data set (torch's ``Dataset`` type does not declare one)."""
    return len(cast(Sized, dataset))


class _Mapped(Dataset):
    def __init__(self, base: Dataset, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return dataset_len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.base[index]
        return self.transform(image), label


def eval_loader(
    dataset: Dataset,
    transform: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    workers: int,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """Deterministic evaluation batches; rank ``r`` of ``world`` takes indices ``r::world``
    (no padding, so counts summed over ranks are exact)."""
    indices = list(range(rank, dataset_len(dataset), world))
    subset = torch.utils.data.Subset(_Mapped(dataset, transform), indices)
    workers = loader_workers(dataset, workers)
    return DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers)
