"""The mixed data set's names (docs/artifacts.md "Mixed data set"): format version, folder and
shard names, the methods it may be written with.

A mixed data set is a folder ``DIR`` with Parquet shards ``DIR/data/train-00000-of-000NN.parquet``
and a ``README.md`` card written last; ``MIXED_STATE_NAME`` marks a folder ``mix`` still writes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from samix_hub.format.artifact import MIXED_STATE_NAME

__all__ = [
    "FORMAT_VERSION",
    "STATE_NAME",
    "DATA_DIR",
    "SHARD_RE",
    "METHODS",
    "shard_name",
    "shard_paths",
    "num_shards",
]

FORMAT_VERSION = 1
STATE_NAME = MIXED_STATE_NAME
DATA_DIR = "data"
#: The one shard-name pattern (:func:`shard_name` writes it; ``export/validate.py`` checks it).
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
