"""An offline mixed data set (docs/artifacts.md "Mixed data set") read back as a torch data set.

Each row is one mixed image:

- ``image``: the ``datasets`` Image encoding, a struct ``{bytes: PNG/JPEG, path: null}``;
- ``label_a``, ``label_b`` (``datasets`` ClassLabel), ``lam`` (float32): the image is worth
  ``lam`` of ``label_a`` and ``1 - lam`` of ``label_b`` (docs/algorithm.md: labels use the sampled λ,
  never the mask mean);
- ``index_a``, ``index_b``: the two source images' positions in the source split;
- ``mask`` (optional, float32 H x W): the weight of image a per pixel.

The ``datasets`` features are stored in the Parquet schema metadata (key ``huggingface``) so that
``datasets.load_dataset("parquet", data_dir=DIR)`` decodes the images; shard metadata key
``samix`` records the shard's counts. :class:`MixedDataset` reads the same folder for torch.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from samix_hub.fileio.guard import loads_bounded
from samix_hub.format.limits import DataSpecError, check_pixels
from samix_hub.format.mixed import shard_paths

__all__ = ["MixedDataset"]


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
