"""What ``mix`` reads: the source images, gathered or read one by one and resized
(docs/artifacts.md "Mixed data set")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["SourceLoader", "source_channels"]


class SourceLoader:
    """``loader(indices) -> (uint8 m x C x H x W, labels, errors)``; bad images become zeros.

    In-memory array data sets are gathered in one step; others are read image by image and
    resized to ``image_size`` (bilinear, antialiased) when their size differs.
    """

    def __init__(self, dataset: Any, image_size: tuple[int, int], channels: int) -> None:
        self.dataset = dataset
        self.image_size = tuple(image_size)
        self.channels = channels
        images = getattr(dataset, "images", None)
        self.bulk = isinstance(images, np.ndarray) and hasattr(dataset, "labels")

    def _fit(self, img: torch.Tensor, index: int) -> torch.Tensor:
        if img.shape[0] != self.channels:
            if img.shape[0] == 1:
                img = img.expand(self.channels, -1, -1)
            else:
                raise ValueError(f"image {index} has {img.shape[0]} channels, not {self.channels}")
        if tuple(img.shape[-2:]) != self.image_size:
            from torchvision.transforms.v2 import functional as TF

            img = TF.resize(img, list(self.image_size), antialias=True)
        return img

    def __call__(self, indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray, list[str | None]]:
        if self.bulk:
            x = torch.from_numpy(self.dataset.images[indices]).permute(0, 3, 1, 2)
            labels = self.dataset.labels[indices].astype(np.int64)
            if tuple(x.shape[-2:]) != self.image_size or x.shape[1] != self.channels:
                x = torch.stack([self._fit(img, int(i)) for img, i in zip(x, indices, strict=True)])
            return x.contiguous(), labels, [None] * len(indices)
        h, w = self.image_size
        x = torch.zeros(len(indices), self.channels, h, w, dtype=torch.uint8)
        labels = np.zeros(len(indices), dtype=np.int64)
        errors: list[str | None] = [None] * len(indices)
        for j, i in enumerate(indices):
            try:
                img, label = self.dataset[int(i)]
                x[j] = self._fit(torch.as_tensor(img), int(i))
                labels[j] = int(label)
            except (OSError, ValueError, RuntimeError) as exc:  # DataSpecError is a ValueError
                msg = str(exc)
                errors[j] = msg if str(i) in msg or "/" in msg else f"source image {i}: {msg}"
        return x, labels, errors


def source_channels(dataset: Any) -> int:
    """Channels of a source data set's images (the last axis of in-memory arrays, else 3)."""
    images = getattr(dataset, "images", None)
    if isinstance(images, np.ndarray):
        return int(images.shape[-1])
    return int(getattr(dataset, "channels", 3))
