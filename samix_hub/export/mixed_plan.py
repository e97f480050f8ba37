"""The plan of an offline mixed data set (docs/artifacts.md "Mixed data set"): which images,
partners, λ and CutMix boxes each shard holds, and how its rows are encoded.

Determinism: the source order, pairs, λ and CutMix boxes of shard ``s`` are drawn from a
``torch.Generator`` seeded from ``(seed, s)`` only, so a shard never depends on the number of
workers, on ranks or on where an interrupted run resumed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from samix_hub.mixing.sampling import box_lam, sample_box, sample_lam

__all__ = ["GroupPlan", "shard_seed", "source_order", "plan_shard", "encode_images", "hf_features"]


def shard_seed(seed: int, *parts: int) -> int:
    """A 64-bit seed from ``(seed, *parts)`` (numpy SeedSequence: well mixed, platform-free)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, seed >> 32, *parts]).generate_state(2)[0])


def source_order(start: int, stop: int, length: int, seed: int) -> np.ndarray:
    """Image a of global positions ``[start, stop)``: epoch ``e`` is a permutation of the split
    seeded from ``(seed, 1, e)``, so each source image is image a once per epoch."""
    out = []
    for epoch in range(start // length, (stop - 1) // length + 1):
        gen = torch.Generator().manual_seed(shard_seed(seed, 1, epoch))
        perm = torch.randperm(length, generator=gen).numpy()
        lo = max(start - epoch * length, 0)
        hi = min(stop - epoch * length, length)
        out.append(perm[lo:hi])
    return np.concatenate(out).astype(np.int64)


@dataclass
class GroupPlan:
    """One generator batch: ``load`` images (``m``) of which the first ``rows`` become output.

    ``partner`` pairs within the batch (the encoder runs once per image, docs/algorithm.md "SAMix^P");
    ``lam`` is per image (CutMix: corrected to the kept area); ``boxes`` are CutMix boxes.
    """

    rows: int
    load: np.ndarray
    partner: torch.Tensor
    lam: torch.Tensor
    boxes: list[tuple[int, int, int, int]] | None
    adjust: torch.Tensor

    @property
    def index_a(self) -> np.ndarray:
        return self.load[: self.rows]

    @property
    def index_b(self) -> np.ndarray:
        return self.load[self.partner[: self.rows].numpy()]


def _group_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    bounds = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:  # never a batch of one
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds


def plan_shard(
    shard: int,
    *,
    num: int,
    length: int,
    shard_size: int,
    batch_size: int,
    method: str,
    alpha: float,
    seed: int,
    image_size: tuple[int, int],
    mask_adjust: float = 0.0,
) -> list[GroupPlan]:
    """The generator batches of shard ``shard``, drawn from ``(seed, shard)`` only.

    Pairs are a random cycle over each batch (no image is paired with itself); a batch of one
    (a one-image shard) loads an extra random partner. λ ~ Beta(α, α) per image, as the
    reference's mixup samples λ per batch but an offline data set gains from diverse λ.
    """
    start, stop = shard * shard_size, min((shard + 1) * shard_size, num)
    order = source_order(start, stop, length, seed)
    gen = torch.Generator().manual_seed(shard_seed(seed, 2, shard))
    h, w = image_size
    plans = []
    for lo, hi in _group_bounds(stop - start, batch_size):
        load = order[lo:hi]
        n = hi - lo
        if n == 1:
            other = int(torch.randint(length - 1, (1,), generator=gen))
            load = np.array([load[0], other + (other >= load[0])], dtype=np.int64)
            partner = torch.tensor([1, 0])
        else:
            perm = torch.randperm(n, generator=gen)
            partner = torch.empty(n, dtype=torch.long)
            partner[perm] = perm.roll(-1)  # one cycle: perm[j] -> perm[j + 1]
        m = len(load)
        lam = sample_lam(alpha, m, rng=gen)
        boxes = None
        if method == "cutmix":
            boxes = [sample_box(float(v), h, w, gen) for v in lam]
            lam = torch.tensor([box_lam(b, h, w) for b in boxes], dtype=torch.float32)
        adjust = torch.zeros(m, dtype=torch.bool)
        if method == "samix" and mask_adjust > 0:
            adjust = torch.rand(m, generator=gen) < mask_adjust
        plans.append(GroupPlan(n, load, partner, lam, boxes, adjust))
    return plans


def encode_images(images: np.ndarray, image_format: str = "png") -> list[bytes]:
    """N x H x W x C uint8 -> PNG/JPEG bytes with fixed settings (deterministic output)."""
    from PIL import Image

    out = []
    for arr in images:
        im = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        buf = io.BytesIO()
        if image_format == "png":
            im.save(buf, format="PNG", compress_level=6, optimize=False)
        elif image_format == "jpeg":
            im.save(buf, format="JPEG", quality=95, subsampling=0, optimize=False)
        else:
            raise ValueError(f"unknown image format {image_format!r} (png or jpeg)")
        out.append(buf.getvalue())
    return out


def hf_features(class_names: list[str], with_mask: bool) -> dict[str, Any]:
    """``datasets`` features of a shard, as ``datasets`` stores them in Parquet metadata."""
    labels = {"names": list(class_names), "_type": "ClassLabel"}
    feats: dict[str, Any] = {
        "image": {"_type": "Image"},
        "label_a": labels,
        "label_b": labels,
        "lam": {"dtype": "float32", "_type": "Value"},
        "index_a": {"dtype": "int64", "_type": "Value"},
        "index_b": {"dtype": "int64", "_type": "Value"},
    }
    if with_mask:
        value = {"dtype": "float32", "_type": "Value"}
        feats["mask"] = {"feature": {"feature": value, "_type": "Sequence"}, "_type": "Sequence"}
    return feats
