"""Checks of a ``samix-mixed-dataset`` folder (docs/artifacts.md): a complete shard set, every
shard readable, every row in range, and the card's count matching the shards. Nothing is
decoded beyond image headers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from samix_hub.errors import ArtifactError, first_line
from samix_hub.fileio.guard import loads_bounded
from samix_hub.format.artifact import CARD_NAME
from samix_hub.format.limits import MAX_CLASSES, DataSpecError, check_pixels
from samix_hub.format.mixed import SHARD_RE

__all__ = ["validate_mixed_dataset"]


#: The card's count line (``export/mixed_card.py:render_card``): "| mixed images | N in S shards".
_CARD_COUNT_RE = re.compile(r"^\| mixed images \| (\d+) in (\d+) shards", re.MULTILINE)


def _shard_rows(shard: Path) -> int:
    """Rows of one shard, after checking it opens and its recorded count matches."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(shard)
        schema = pq.read_schema(shard)
    except Exception as exc:  # ArrowInvalid on a truncated or foreign file
        raise ArtifactError(
            f"{shard}: unreadable Parquet shard ({first_line(exc)}); truncated?"
        ) from None
    rows = int(meta.num_rows)
    info = (schema.metadata or {}).get(b"samix")
    if info is not None:
        try:
            recorded = loads_bounded(info).get("rows")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise ArtifactError(f"{shard}: corrupt 'samix' metadata") from None
        if recorded is not None and recorded != rows:
            raise ArtifactError(f"{shard}: holds {rows} rows, its metadata records {recorded}")
    # Reading every column chunk catches damage inside the file that the footer does not show.
    try:
        table = pq.ParquetFile(shard).read()
        table.validate(full=True)
    except Exception as exc:
        raise ArtifactError(f"{shard}: corrupt Parquet data ({first_line(exc)})") from None
    _check_rows(shard, table, schema.metadata or {})
    return rows


def _class_count(shard: Path, metadata: dict[bytes, bytes]) -> int:
    """The class count the shard's ``datasets`` features name (``label_a``'s names)."""
    try:
        info = loads_bounded(metadata.get(b"huggingface", b"{}"))
        names = info.get("info", {}).get("features", {}).get("label_a", {}).get("names")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ArtifactError(f"{shard}: corrupt 'huggingface' metadata") from None
    if not isinstance(names, list) or not names:
        return MAX_CLASSES
    return len(names)


def _check_rows(shard: Path, table: Any, metadata: dict[bytes, bytes]) -> None:
    """Every row in range: labels in 0..K-1, λ finite in [0, 1], an image whose header names
    a format PIL reads and a size within ``format.limits.MAX_SOURCE_PIXELS`` (nothing decoded)."""
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    names = set(table.column_names)
    missing = sorted({"image", "label_a", "label_b", "lam"} - names)
    if missing:
        raise ArtifactError(f"{shard}: lacks the column(s) {', '.join(missing)}")
    classes = _class_count(shard, metadata)
    for col in ("label_a", "label_b"):
        try:
            labels = np.asarray(table.column(col).to_numpy(zero_copy_only=False), dtype=np.int64)
        except (TypeError, ValueError, OverflowError):
            raise ArtifactError(f"{shard}: column {col} is not integer labels") from None
        bad = np.flatnonzero((labels < 0) | (labels >= classes))
        if bad.size:
            raise ArtifactError(
                f"{shard}: row {int(bad[0])}: {col} {int(labels[bad[0]])} is outside 0..{classes - 1}"
            )
    try:
        lam = np.asarray(table.column("lam").to_numpy(zero_copy_only=False), dtype=np.float64)
    except (TypeError, ValueError):
        raise ArtifactError(f"{shard}: column lam is not numbers") from None
    bad = np.flatnonzero(~(np.isfinite(lam) & (lam >= 0) & (lam <= 1)))
    if bad.size:
        raise ArtifactError(f"{shard}: row {int(bad[0])}: lam {lam[bad[0]]} is not in [0, 1]")
    images = table.column("image").combine_chunks()
    data = images.field("bytes") if hasattr(images, "field") else images
    for row, blob in enumerate(data.to_pylist()):
        where = f"{shard}: row {row}: image"
        if not isinstance(blob, bytes):
            raise ArtifactError(f"{where} is missing")
        try:
            with Image.open(io.BytesIO(blob)) as im:  # reads the header only
                check_pixels(im.size, where)
        except DataSpecError as exc:
            raise ArtifactError(str(exc)) from None
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise ArtifactError(f"{where} is not a readable image ({first_line(exc)})") from None


def validate_mixed_dataset(folder: Path) -> None:
    """Complete shard set; every shard opens and its rows match the card's count."""
    shards = sorted((folder / "data").glob("*.parquet"))
    totals = set()
    indices = set()
    for shard in shards:
        m = SHARD_RE.match(shard.name)
        if not m:
            raise ArtifactError(f"{shard}: shard name is not train-NNNNN-of-NNNNN.parquet")
        indices.add(int(m.group(1)))
        totals.add(int(m.group(2)))
    if len(totals) != 1:
        raise ArtifactError(f"{folder / 'data'}: shards disagree on their count {sorted(totals)}")
    total = totals.pop()
    missing = sorted(set(range(total)) - indices)
    if missing:
        raise ArtifactError(
            f"{folder / 'data'}: incomplete, shards {missing[:5]} of {total} missing"
        )
    rows = sum(_shard_rows(shard) for shard in shards)
    card = folder / CARD_NAME
    if card.is_file():
        try:
            text = card.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{card}: unreadable card ({exc})") from None
        m = _CARD_COUNT_RE.search(text)
        if m and (int(m.group(1)), int(m.group(2))) != (rows, total):
            raise ArtifactError(
                f"{card}: records {m.group(1)} rows in {m.group(2)} shards, the shards hold "
                f"{rows} rows in {total}"
            )
