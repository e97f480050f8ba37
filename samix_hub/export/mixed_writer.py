"""Writing a mixed data set: load -> generator -> encode -> Parquet, overlapped and resumable.

The main thread runs the generator batch after batch (on its runtime and device); a thread pool
decodes the next batches and encodes finished ones to PNG/JPEG (Pillow and zlib release the
GIL), and one writer thread turns each finished shard into a Parquet file, written atomically.
A shard on disk is complete by construction, so an interrupted run (even SIGKILL) resumes by
skipping the shards present. Under ``torchrun`` rank ``r`` of ``W`` writes shards
``[r*T/W, (r+1)*T/W)``; whichever rank finds all shards present writes the card (its content
depends on the shards only, so two ranks writing it at once write the same bytes).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samix_hub.errors import UserError
from samix_hub.export.mixed_card import MAX_ERRORS_KEPT, public_error, shard_info, write_card
from samix_hub.export.mixed_out import check_mix_out, mix_lock, prepare_out
from samix_hub.export.mixed_plan import GroupPlan, encode_images, hf_features, plan_shard
from samix_hub.export.mixed_source import SourceLoader, source_channels
from samix_hub.fileio import atomic_write
from samix_hub.format.mixed import DATA_DIR, FORMAT_VERSION, num_shards, shard_name
from samix_hub.mixing.masks import LAM_MARGIN
from samix_hub.mixing.methods import MixParams, build_method

__all__ = ["MixSettings", "MixResult", "mix_group", "preview_batch", "write_mixed"]

GenFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], Any]


@dataclass
class MixSettings:
    """Everything that determines the content of a mixed data set (resume checks it)."""

    data: str
    split: str
    source_size: int
    class_names: list[str]
    method: str
    alpha: float
    num: int
    seed: int
    batch_size: int
    shard_size: int
    image_size: tuple[int, int]
    image_format: str = "png"
    save_masks: bool = False
    mask_adjust: float = 0.0
    margin: float = LAM_MARGIN
    on_error: str = "stop"
    generator: dict[str, Any] | None = None
    runtime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return data

    @property
    def num_shards(self) -> int:
        return num_shards(self.num, self.shard_size)

    def plan(self, shard: int) -> list[GroupPlan]:
        return plan_shard(
            shard,
            num=self.num,
            length=self.source_size,
            shard_size=self.shard_size,
            batch_size=self.batch_size,
            method=self.method,
            alpha=self.alpha,
            seed=self.seed,
            image_size=self.image_size,
            mask_adjust=self.mask_adjust,
        )

    def planned_rows(self, shard: int) -> int:
        return min((shard + 1) * self.shard_size, self.num) - shard * self.shard_size


@dataclass
class MixResult:
    out: Path
    rows: int = 0  # rows written by this call
    skipped: int = 0
    shards_written: int = 0
    shards_total: int = 0
    seconds: float = 0.0
    complete: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


@torch.inference_mode()
def mix_group(
    images: torch.Tensor,
    plan: GroupPlan,
    method: str,
    generator: GenFn | None,
    device: torch.device,
    margin: float = LAM_MARGIN,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask (weight of image a) and mixed images in [0, 1] for one planned batch.

    The one mixing path (:meth:`~samix_hub.mixing.MixMethod.mix`) with the plan's per-sample λ,
    boxes and ``mask_adjust`` flags. SAMix: the generator's mask, optional ``mask_adjust``, then
    the λ margin fallback to plain MixUp (docs/algorithm.md "SAMix^P"); the mix is recomputed
    from the final mask so that both runtimes share one formula. MixUp: a constant λ mask;
    CutMix: the planned box is 0.
    """
    x = images.to(device, non_blocking=True).float().div_(255.0)
    mixer = build_method(method, mask_fn=generator, margin=margin)
    params = MixParams(
        lam=plan.lam.to(device), partner=plan.partner.to(device), boxes=plan.boxes,
        adjust=plan.adjust,
    )  # fmt: skip
    return mixer.mix(x, params)


def preview_batch(
    dataset: Any,
    settings: MixSettings,
    generator: GenFn | None = None,
    device: str | torch.device = "cpu",
    rows: int = 8,
) -> tuple[torch.Tensor, ...]:
    """``(image_a, image_b, mask, mixed, lam)`` of the first ``rows`` pairs of shard 0, exactly
    as written (the mixed image quantised to 8 bits), for :func:`samix_hub.mixing.preview.save_preview`.
    """
    plan = settings.plan(0)[0]
    loader = SourceLoader(dataset, settings.image_size, source_channels(dataset))
    images, _, _ = loader(plan.load)
    mask, mixed = mix_group(
        images, plan, settings.method, generator, torch.device(device), settings.margin
    )
    k = min(rows, plan.rows)
    x = images.float() / 255.0
    mixed_u8 = (mixed[:k].cpu() * 255).round().clamp(0, 255) / 255.0
    return x[:k], x[plan.partner[:k]], mask[:k].cpu(), mixed_u8, plan.lam[:k]


@dataclass
class _Part:
    """One mixed batch: ``encoded`` holds its uint8 images, then the future of their bytes."""

    encoded: Any
    columns: dict[str, np.ndarray]
    mask: np.ndarray | None
    skipped: int
    errors: list[str]


def _done(value: Any) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


def _build_table(parts: list[_Part], settings: MixSettings, shard: int) -> Any:
    import pyarrow as pa

    images = [b for part in parts for b in part.encoded.result()]
    cols = {k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns}
    n = len(images)
    image = pa.StructArray.from_arrays(
        [pa.array(images, pa.binary()), pa.nulls(n, pa.string())], names=["bytes", "path"]
    )
    arrays = {
        "image": image,
        "label_a": pa.array(cols["label_a"], pa.int64()),
        "label_b": pa.array(cols["label_b"], pa.int64()),
        "lam": pa.array(cols["lam"], pa.float32()),
        "index_a": pa.array(cols["index_a"], pa.int64()),
        "index_b": pa.array(cols["index_b"], pa.int64()),
    }
    if settings.save_masks:
        h, w = settings.image_size
        flat = np.concatenate([p.mask for p in parts]).astype(np.float32).reshape(-1)
        inner = pa.ListArray.from_arrays(np.arange(0, n * h * w + 1, w, dtype=np.int32), flat)
        arrays["mask"] = pa.ListArray.from_arrays(np.arange(0, n * h + 1, h, dtype=np.int32), inner)
    errors = [e for p in parts for e in p.errors]
    info = {
        "format_version": FORMAT_VERSION,
        "shard": shard,
        "num_shards": settings.num_shards,
        "rows": n,
        "planned": settings.planned_rows(shard),
        "skipped": sum(p.skipped for p in parts),
        # published with the shard: no local paths (docs/artifacts.md)
        "errors": [public_error(e, settings.data) for e in errors[:MAX_ERRORS_KEPT]],
    }
    meta = {
        "huggingface": json.dumps(
            {"info": {"features": hf_features(settings.class_names, settings.save_masks)}}
        ),
        "samix": json.dumps(info),
    }
    return pa.table(arrays).replace_schema_metadata(meta)


def _write_shard(path: Path, parts: list[_Part], settings: MixSettings, shard: int) -> int:
    import pyarrow.parquet as pq

    table = _build_table(parts, settings, shard)
    atomic_write(
        path,
        lambda tmp: pq.write_table(
            table,
            tmp,
            compression="zstd",
            row_group_size=256,
            use_dictionary=["label_a", "label_b"],
            write_statistics=["label_a", "label_b", "lam", "index_a", "index_b"],
        ),
    )
    return table.num_rows


def _complete(path: Path, settings: MixSettings, shard: int) -> bool:
    info = shard_info(path) if path.is_file() else None
    return info is not None and info.get("planned") == settings.planned_rows(shard)


def _mix_part(
    images: torch.Tensor,
    labels: np.ndarray,
    errors: list[str | None],
    plan: GroupPlan,
    settings: MixSettings,
    generator: GenFn | None,
    device: torch.device,
    warn: Callable[[str], None],
) -> _Part:
    """Mix one loaded batch; rows whose image a or b is unreadable are dropped (or stop)."""
    bad = np.array([e is not None for e in errors])
    msgs = [e for e in errors if e is not None]
    if msgs and settings.on_error == "stop":
        raise UserError(f"{msgs[0]} (pass --on-error skip to skip unreadable images)")
    for e in msgs:
        warn(f"warning: {e}; skipped")
    mask, mixed = mix_group(images, plan, settings.method, generator, device, settings.margin)
    n, partner = plan.rows, plan.partner.numpy()
    keep = ~(bad[:n] | bad[partner[:n]])
    scaled = (mixed[:n][torch.from_numpy(keep).to(mixed.device)] * 255).round_()
    u8 = scaled.clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    columns = {
        "label_a": labels[:n][keep],
        "label_b": labels[partner[:n]][keep],
        "lam": plan.lam[:n].numpy()[keep],
        "index_a": plan.index_a[keep],
        "index_b": plan.index_b[keep],
    }
    kept_mask = mask[:n, 0].float().cpu().numpy()[keep] if settings.save_masks else None
    return _Part(u8, columns, kept_mask, int((~keep).sum()), msgs)


def _groups(settings: MixSettings, shards: list[int]) -> Iterator[tuple[int, int, int, GroupPlan]]:
    for s in shards:
        plans = settings.plan(s)
        for g, plan in enumerate(plans):
            yield s, g, len(plans), plan


def write_mixed(
    out: str | Path,
    dataset: Any,
    settings: MixSettings,
    generator: GenFn | None = None,
    *,
    device: str | torch.device = "cpu",
    workers: int = 2,
    resume: bool = True,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
    warn: Callable[[str], None] | None = None,
) -> MixResult:
    """Write (or complete) the mixed data set ``out``; see the module docstring.

    ``out`` must be empty or a ``mix`` output (:mod:`~samix_hub.export.mixed_out`); it is
    locked while written.
    """
    out = Path(out)
    check_mix_out(out)
    with mix_lock(out, rank, world_size):
        return _write_mixed(
            out, dataset, settings, generator, torch.device(device), workers, resume, rank,
            world_size, progress, warn,
        )  # fmt: skip


def _progress_bar(settings: MixSettings, mine: range, todo: list[int], progress: bool) -> Any:
    """A tqdm bar over the rows of this rank's shards, the ones already written counted done."""
    from tqdm.auto import tqdm

    rows_todo = sum(settings.planned_rows(s) for s in todo)
    done_rows = sum(settings.planned_rows(s) for s in mine) - rows_todo
    return tqdm(
        total=rows_todo + done_rows,
        initial=done_rows,
        unit="img",
        file=sys.stderr,
        disable=not progress,
        desc=f"mix {settings.method}",
        dynamic_ncols=True,
    )


def _write_mixed(
    out: Path,
    dataset: Any,
    settings: MixSettings,
    generator: GenFn | None,
    device: torch.device,
    workers: int,
    resume: bool,
    rank: int,
    world_size: int,
    progress: bool,
    warn: Callable[[str], None] | None,
) -> MixResult:
    total = settings.num_shards
    mine = range(rank * total // world_size, (rank + 1) * total // world_size)
    prepare_out(out, settings.to_dict(), total, resume, rank, mine)
    paths = {s: out / DATA_DIR / shard_name(s, total) for s in mine}
    todo = [s for s in mine if not (resume and _complete(paths[s], settings, s))]
    result = MixResult(out, shards_total=total)
    loader = SourceLoader(dataset, settings.image_size, source_channels(dataset))
    pool = ThreadPoolExecutor(workers, "samix-mix") if workers > 0 else None
    writer = ThreadPoolExecutor(1, "samix-mix-write") if workers > 0 else None

    def submit(ex: ThreadPoolExecutor | None, fn: Callable[..., Any], *args: Any) -> Future:
        return ex.submit(fn, *args) if ex is not None else _done(fn(*args))

    bar = _progress_bar(settings, mine, todo, progress)
    warn = warn or (lambda msg: bar.write(msg, file=sys.stderr))
    start = time.perf_counter()
    work = _groups(settings, todo)
    queue: deque[tuple[tuple[int, int, int, GroupPlan], Future]] = deque()
    parts: list[_Part] = []
    pending: deque[Future] = deque()
    try:

        def fill() -> None:
            while len(queue) < max(2, 2 * workers):
                item = next(work, None)
                if item is None:
                    return
                queue.append((item, submit(pool, loader, item[3].load)))

        fill()
        while queue:
            (shard, g, n_groups, plan), fut = queue.popleft()
            fill()
            images, labels, errors = fut.result()
            part = _mix_part(images, labels, errors, plan, settings, generator, device, warn)
            part.encoded = submit(pool, encode_images, part.encoded, settings.image_format)
            parts.append(part)
            result.skipped += part.skipped
            result.errors += part.errors
            bar.update(plan.rows)
            if g == n_groups - 1:
                pending.append(submit(writer, _write_shard, paths[shard], parts, settings, shard))
                parts = []
                while len(pending) > 2:
                    result.rows += pending.popleft().result()
                    result.shards_written += 1
        while pending:
            result.rows += pending.popleft().result()
            result.shards_written += 1
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if writer is not None:
            writer.shutdown(wait=True)  # a shard being written is finished, atomically
        bar.close()
    result.seconds = time.perf_counter() - start
    result.complete = all(
        _complete(out / DATA_DIR / shard_name(s, total), settings, s) for s in range(total)
    )
    if result.complete:
        write_card(out, settings.to_dict(), total)
    return result
