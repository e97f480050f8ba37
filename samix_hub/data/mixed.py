"""Offline mixed data sets (docs/artifacts.md "Mixed data set"): the shard format, the plan, the reader.

A mixed data set is a folder ``DIR`` with Parquet shards ``DIR/data/train-00000-of-000NN.parquet``
and a ``README.md`` card written last. Each row is one mixed image:

- ``image``: the ``datasets`` Image encoding, a struct ``{bytes: PNG/JPEG, path: null}``;
- ``label_a``, ``label_b`` (``datasets`` ClassLabel), ``lam`` (float32): the image is worth
  ``lam`` of ``label_a`` and ``1 - lam`` of ``label_b`` (docs/algorithm.md: labels use the sampled λ,
  never the mask mean);
- ``index_a``, ``index_b``: the two source images' positions in the source split;
- ``mask`` (optional, float32 H x W): the weight of image a per pixel.

The ``datasets`` features are stored in the Parquet schema metadata (key ``huggingface``) so that
``datasets.load_dataset("parquet", data_dir=DIR)`` decodes the images; shard metadata key
``samix`` records the shard's counts. :class:`MixedDataset` reads the same folder for torch.

Determinism: the source order, pairs, λ and CutMix boxes of shard ``s`` are drawn from a
``torch.Generator`` seeded from ``(seed, s)`` only, so a shard never depends on the number of
workers, on ranks or on where an interrupted run resumed.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from samix_hub.fileio.guard import loads_bounded
from samix_hub.format.artifact import MIXED_STATE_NAME
from samix_hub.format.limits import DataSpecError, check_pixels
from samix_hub.mixing.sampling import box_lam, sample_box, sample_lam

__all__ = [
    "FORMAT_VERSION",
    "STATE_NAME",
    "GroupPlan",
    "MixedDataset",
    "SHARD_RE",
    "shard_name",
    "shard_paths",
    "num_shards",
    "shard_seed",
    "source_order",
    "plan_shard",
    "encode_images",
    "hf_features",
]

FORMAT_VERSION = 1
STATE_NAME = MIXED_STATE_NAME
DATA_DIR = "data"
#: The one shard-name pattern (:func:`shard_name` writes it; ``artifact/validate.py`` checks it).
SHARD_RE = re.compile(r"^train-(\d{5})-of-(\d{5})\.parquet$")
#: The methods of an offline mixed set (their α: ``mixing.sampling.DEFAULT_ALPHA``).
METHODS = ("samix", "mixup", "cutmix")


def shard_name(index: int, total: int) -> str:
    return f"train-{index:05d}-of-{total:05d}.parquet"


def num_shards(num: int, shard_size: int) -> int:
    return max(1, -(-num // shard_size))


def shard_paths(root: str | os.PathLike[str]) -> list[Path]:
    """The shards of a mixed data set, in order; an error names a gap or a stray name."""
    data = Path(root) / DATA_DIR
    found: dict[int, Path] = {}
    totals = set()
    for p in sorted(data.glob("*.parquet")):
        m = SHARD_RE.match(p.name)
        if not m:
            raise ValueError(f"{p}: not a shard name train-NNNNN-of-NNNNN.parquet")
        found[int(m.group(1))] = p
        totals.add(int(m.group(2)))
    if not found:
        raise FileNotFoundError(f"{data}: no Parquet shards (not a mixed data set?)")
    if len(totals) != 1:
        raise ValueError(f"{data}: shards disagree on their count {sorted(totals)}")
    total = totals.pop()
    missing = sorted(set(range(total)) - set(found))
    if missing:
        raise ValueError(f"{data}: incomplete, shards {missing[:5]} of {total} missing")
    return [found[i] for i in range(total)]


# --------------------------------------------------------------------------- plan
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


# --------------------------------------------------------------------------- encoding
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


# --------------------------------------------------------------------------- reader
def _decode(data: bytes, where: object = "a mixed image") -> torch.Tensor:
    """A row's encoded image; one that is not a decodable image within the pixel budget
    (``limits.MAX_SOURCE_PIXELS``, checked from the header) raises ``DataSpecError``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(im.size, where)
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataSpecError(f"{where}: not a decodable image ({exc})") from None
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


class MixedDataset(Dataset):
    """A mixed data set folder as a torch Dataset of ``(image, label_a, label_b, lam)``.

    ``image`` is float32 C x H x W in [0, 1] (``transform`` is applied to it); train with
    ``lam * CE(z, label_a) + (1 - lam) * CE(z, label_b)``. Labels, λ and indices are loaded at
    once; image bytes per shard on first use (``cache_shards`` bounds how many stay in memory,
    None keeps all). Safe with DataLoader workers (caches are not pickled).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: Any = None,
        cache_shards: int | None = None,
    ) -> None:
        import pyarrow.parquet as pq

        self.root = Path(root)
        self.transform = transform
        self.cache_shards = cache_shards
        self.shards = shard_paths(self.root)
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("label_a", "label_b", "lam")}
        cols |= {"index_a": [], "index_b": []}
        sizes = []
        meta = pq.read_schema(self.shards[0]).metadata or {}
        feats = loads_bounded(meta.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
        self.class_names: list[str] = list(feats.get("label_a", {}).get("names", []))
        self.has_mask = "mask" in pq.read_schema(self.shards[0]).names
        for p in self.shards:
            try:
                table = pq.read_table(p, columns=list(cols))
            except Exception as exc:
                raise ValueError(f"{p}: unreadable Parquet shard ({exc})") from None
            for k in cols:
                cols[k].append(table.column(k).to_numpy())
            sizes.append(table.num_rows)
        self.label_a = np.concatenate(cols["label_a"]).astype(np.int64)
        self.label_b = np.concatenate(cols["label_b"]).astype(np.int64)
        self.lam = np.concatenate(cols["lam"]).astype(np.float32)
        self.index_a = np.concatenate(cols["index_a"]).astype(np.int64)
        self.index_b = np.concatenate(cols["index_b"]).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._cache: dict[tuple[int, str], Any] = {}

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return int(max(self.label_a.max(initial=-1), self.label_b.max(initial=-1))) + 1

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def _norm(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} mixed images")
        return index % len(self)

    def _locate(self, index: int) -> tuple[int, int]:
        index = self._norm(index)
        shard = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return shard, index - int(self.offsets[shard])

    def _column(self, shard: int, name: str) -> Any:
        import pyarrow.parquet as pq

        key = (shard, name)
        if key not in self._cache:
            if self.cache_shards is not None and len(self._cache) >= self.cache_shards:
                self._cache.pop(next(iter(self._cache)))  # oldest first
            col = pq.read_table(self.shards[shard], columns=[name]).column(name).combine_chunks()
            self._cache[key] = col.field("bytes") if name == "image" else col
        return self._cache[key]

    def image_bytes(self, index: int) -> bytes:
        shard, row = self._locate(index)
        return self._column(shard, "image")[row].as_py()

    def mask(self, index: int) -> torch.Tensor:
        """The saved mask (weight of image a), 1 x H x W float32; needs ``--save-masks``."""
        if not self.has_mask:
            raise KeyError(f"{self.root}: written without --save-masks, no mask column")
        shard, row = self._locate(index)
        return torch.tensor(np.array(self._column(shard, "mask")[row].as_py(), np.float32))[None]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int, float]:
        image = _decode(self.image_bytes(index), f"{self.root}: row {index}").float() / 255.0
        if self.transform is not None:
            image = self.transform(image)
        i = self._norm(index)
        return image, int(self.label_a[i]), int(self.label_b[i]), float(self.lam[i])
