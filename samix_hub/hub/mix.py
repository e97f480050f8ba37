"""``mix`` as a library call: load the generator (:func:`load_mix_generator`), then write the
mixed data set (:func:`mix_dataset`); ``cli/mix.py`` parses and prints around it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from samix_hub.data.specs import load_data
from samix_hub.errors import UserError
from samix_hub.export.mixed_out import check_mix_out
from samix_hub.export.mixed_writer import MixResult, MixSettings, preview_batch, write_mixed
from samix_hub.export.provenance import generator_source_provenance
from samix_hub.fileio import check_writable_dir, check_writable_file
from samix_hub.fileio.guard import guard_output
from samix_hub.format.artifact import CONFIG_NAME, GENERATOR_ONNX, GENERATOR_WEIGHTS
from samix_hub.hub.api import load_generator
from samix_hub.hub.resolve import resolve_source
from samix_hub.mixing.preview import is_preview_png, save_preview
from samix_hub.mixing.sampling import DEFAULT_ALPHA, check_alpha
from samix_hub.models.generator import MaskGenerator
from samix_hub.train.distributed import torchrun_env
from samix_hub.train.loader import dataset_len

__all__ = ["MixRequest", "load_mix_generator", "mix_dataset"]


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_mix_generator(
    src: str, runtime: str, device: torch.device
) -> tuple[MaskGenerator, dict[str, Any], str]:
    """``(generator, provenance, runtime)`` for ``src`` (a folder, ``ORG/NAME[@REV]`` or
    ``builtin:NAME``).

    ``runtime="auto"`` picks onnxruntime when the folder has ``onnx/generator.onnx`` and
    onnxruntime is installed, else torch.
    """
    want = runtime if runtime != "auto" else ("onnx" if _has_onnxruntime() else "torch")
    resolved = resolve_source(src, runtime=want)
    folder = resolved.path
    onnx_file = folder / GENERATOR_ONNX
    if runtime == "auto":
        runtime = "onnx" if onnx_file.is_file() and _has_onnxruntime() else "torch"
    if runtime == "onnx":
        if not onnx_file.is_file():
            raise UserError(f"{onnx_file}: missing (export with ONNX, or --runtime torch)")
        gen = load_generator(resolved, runtime="onnx", device=device.type)
        files = [CONFIG_NAME, GENERATOR_ONNX]
    else:
        gen = load_generator(resolved, runtime="torch", device=device)
        files = [CONFIG_NAME, GENERATOR_WEIGHTS]
    prov = generator_source_provenance(resolved, files)
    return gen, prov, runtime


@dataclass
class MixRequest:
    """The options of ``samix-hub mix`` (see its ``--help``)."""

    data_spec: str
    out: str
    method: str = "samix"
    generator_src: str | None = None
    runtime: str = "auto"
    device: torch.device = torch.device("cpu")
    alpha: float | None = None
    num: int | None = None
    split: str = "train"
    batch_size: int = 128
    shard_size: int = 1000
    workers: int = 0
    seed: int = 0
    image_format: str = "png"
    image_size: tuple[int, int] | None = None
    save_masks: bool = False
    mask_adjust: float = 0.0
    on_error: str = "stop"
    preview: str | None = None
    resume: bool = True
    download: bool = False
    progress: bool = True


def _input_paths(req: MixRequest) -> list[str]:
    """The local files and folders ``mix`` reads: the data set's path (``npz:FILE``,
    ``folder:DIR``, ``cifar10:ROOT``...) and a generator given as a folder."""
    found = []
    _, sep, rest = req.data_spec.partition(":")
    if sep and rest and os.path.exists(os.path.expanduser(rest)):
        found.append(rest)
    src = req.generator_src or ""
    if req.method == "samix" and src and os.path.isdir(os.path.expanduser(src)):
        found.append(src)
    return found


def mix_dataset(req: MixRequest) -> tuple[MixResult, int]:
    """Check the output, load data and generator, write the shards (and the preview on rank 0);
    return the writer's result and this process's rank."""
    check_mix_out(req.out)  # before any long work: refuse a folder that is not ours
    check_writable_dir(req.out, "--out")
    inputs = _input_paths(req)
    guard_output(req.out, "--out", inputs=inputs, kind="mixed")
    if req.preview:
        check_writable_file(req.preview, "--preview")
        guard_output(req.preview, "--preview", inputs=[*inputs, req.out], ours=is_preview_png)
    rank, world, local_rank = torchrun_env()
    dev = req.device
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    source = load_data(req.data_spec, download=req.download, image_size=req.image_size)
    dataset = source.split(req.split)
    length = dataset_len(dataset)
    num = length if req.num is None else req.num
    if length < 2 or num > length * (length - 1):
        raise UserError(
            f"{req.data_spec} ({req.split}) has {length} image(s): too few for {num} distinct pairs"
        )
    try:
        alpha = check_alpha(DEFAULT_ALPHA[req.method] if req.alpha is None else req.alpha)
    except ValueError as exc:
        raise UserError(f"--alpha: {exc}") from None
    gen, prov, used_runtime = None, None, None
    if req.method == "samix":
        gen, prov, used_runtime = load_mix_generator(req.generator_src or "", req.runtime, dev)
        if used_runtime == "onnx":
            dev = torch.device("cpu")  # onnxruntime picks its own device; mixing stays on CPU
        chans = int(gen.config.in_chans)
        if chans != source.channels:
            raise UserError(
                f"generator {req.generator_src} takes {chans}-channel images, {req.data_spec} "
                f"has {source.channels}-channel images"
            )
    settings = MixSettings(
        data=req.data_spec,
        split=req.split,
        source_size=length,
        class_names=[str(c) for c in source.class_names],
        method=req.method,
        alpha=alpha,
        num=num,
        seed=req.seed,
        batch_size=req.batch_size,
        shard_size=req.shard_size,
        image_size=req.image_size or (int(source.image_size[0]), int(source.image_size[1])),
        image_format=req.image_format,
        save_masks=req.save_masks,
        mask_adjust=req.mask_adjust,
        on_error=req.on_error,
        generator=prov,
        runtime=used_runtime,
    )
    result = write_mixed(
        req.out, dataset, settings, gen, device=dev, workers=req.workers, resume=req.resume,
        rank=rank, world_size=world, progress=req.progress and rank == 0,
    )  # fmt: skip
    if req.preview and rank == 0:
        save_preview(req.preview, *preview_batch(dataset, settings, gen, dev))
    return result, rank
