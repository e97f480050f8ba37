"""``samix-hub mix``: write a mixed data set offline with a published generator (or MixUp/CutMix)."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import click
import torch

from ..devices import resolve_device
from ..errors import UserError
from ._common import (
    POSITIVE,
    UNIT,
    ImageSize,
    builtin_hint,
    device_option,
    quiet_option,
    resume_hint,
    seed_option,
)

__all__ = ["command", "load_mix_generator", "folder_sha256"]


def folder_sha256(folder: Path, names: list[str]) -> str:
    """sha256 over ``name sha256(file)`` lines of the files that define a generator."""
    lines = []
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{name} {digest.hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def load_mix_generator(
    src: str, runtime: str, device: torch.device
) -> tuple[Any, dict[str, Any], str]:
    """``(generator, provenance, runtime)`` for ``src`` (a folder, ``ORG/NAME[@REV]`` or
    ``builtin:NAME``).

    ``runtime="auto"`` picks onnxruntime when the folder has ``onnx/generator.onnx`` and
    onnxruntime is installed, else torch.
    """
    from ..sources import resolve_source

    want = runtime if runtime != "auto" else ("onnx" if _has_onnxruntime() else "torch")
    resolved = resolve_source(src, runtime=want)
    folder = resolved.path
    onnx_file = folder / "onnx" / "generator.onnx"
    if runtime == "auto":
        runtime = "onnx" if onnx_file.is_file() and _has_onnxruntime() else "torch"
    try:
        if runtime == "onnx":
            if not onnx_file.is_file():
                raise UserError(f"{onnx_file}: missing (export with ONNX, or --runtime torch)")
            from ..loading import load_generator

            gen = load_generator(str(folder), runtime="onnx", device=device.type)
            files = ["config.json", "onnx/generator.onnx"]
        else:
            from ..models.generator import Generator

            gen = Generator.from_folder(folder, device=device)
            files = ["config.json", "generator.safetensors"]
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    if resolved.repo_id is not None:
        prov: dict[str, Any] = resolved.provenance()
    elif resolved.builtin is not None:  # shipped in the package: named and versioned, no path
        prov = {**resolved.provenance(), "sha256": folder_sha256(folder, files)}
    else:
        prov = {"name": folder.resolve().name, "sha256": folder_sha256(folder, files)}
    return gen, prov, runtime


def _dist() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (1 process without it)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return rank, world, int(os.environ.get("LOCAL_RANK", rank))


@click.command("mix")
@click.option(
    "--generator",
    "generator_src",
    metavar="SRC",
    help=f"Generator folder, ORG/NAME[@REV] or {builtin_hint()}.",
)
@click.option("--data", "data_spec", required=True, metavar="SPEC", help="Source data set.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--method", type=click.Choice(["samix", "mixup", "cutmix"]), default="samix", show_default=True
)
@click.option(
    "--runtime",
    type=click.Choice(["auto", "onnx", "torch"]),
    default="auto",
    show_default=True,
    help="Generator runtime; auto: onnxruntime when the folder has onnx/generator.onnx.",
)
@device_option
@click.option(
    "--alpha", type=POSITIVE, help="λ ~ Beta(α, α). [default: samix 2, mixup 1, cutmix 0.2]"
)
@click.option(
    "--num", type=click.IntRange(1), help="Mixed images to write. [default: one per source image]"
)
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option(
    "--batch-size",
    type=click.IntRange(2),
    default=128,
    show_default=True,
    help="Generator batch; pairs are drawn within it (part of the output's identity).",
)
@click.option("--shard-size", type=click.IntRange(1), default=1000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=min(4, os.cpu_count() or 1),
    show_default=True,
    help="Decode/encode threads (0: all in the main thread).",
)
@seed_option
@click.option(
    "--image-format", type=click.Choice(["png", "jpeg"]), default="png", show_default=True
)
@click.option(
    "--image-size",
    type=ImageSize(),
    metavar="H[xW]",
    help="Resize source images (default: the data set's size).",
)
@click.option(
    "--save-masks", is_flag=True, help="Store each mask (float32 H x W) in a 'mask' column."
)
@click.option(
    "--mask-adjust",
    type=UNIT,
    default=0.0,
    show_default=True,
    help="SAMix: probability of rescaling a mask to mean exactly λ.",
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="Unreadable source image: stop, or skip its pairs and count them.",
)
@click.option("--preview", type=click.Path(dir_okay=False), help="Write a PNG grid of a few pairs.")
@click.option(
    "--resume/--no-resume",
    default=True,
    show_default=True,
    help="Continue an interrupted run in --out; --no-resume deletes what an earlier `mix` "
    "wrote there (and nothing else), then writes it again.",
)
@click.option("--download", is_flag=True, help="Download torchvision data sets if missing.")
@quiet_option
def command(
    generator_src: str | None,
    data_spec: str,
    out: str,
    method: str,
    runtime: str,
    device: str,
    alpha: float | None,
    num: int | None,
    split: str,
    batch_size: int,
    shard_size: int,
    workers: int,
    seed: int,
    image_format: str,
    image_size: tuple[int, int] | None,
    save_masks: bool,
    mask_adjust: float,
    on_error: str,
    preview: str | None,
    resume: bool,
    download: bool,
    quiet: bool,
) -> None:
    """Write a mixed data set: Parquet shards of (image, label_a, label_b, lam) plus a card.

    \b
    Each row is one mixed image worth `lam` of label_a and 1 - lam of label_b; the same inputs
    and --seed give byte-identical shards whatever --workers. Interrupted runs resume (shards
    are written atomically). Under torchrun each rank writes its own range of shards.
    --out must be empty, new or an earlier `mix` output, and is locked while written.
    Prints the output folder on stdout.

    \b
    Examples:
      samix-hub mix --generator ORG/samix-generator --data cifar10:~/data --out mixed/
      samix-hub mix --generator runs/gen/generator --data digits --out mixed/ --preview grid.png
      samix-hub mix --generator builtin:cifar10-small --data cifar10:~/data --out mixed/
      samix-hub mix --method mixup --data npz:cifar.npz --out mixup/ --num 100000
      torchrun --nproc-per-node 4 -m samix_hub mix --generator ORG/gen --data folder:imgs --out m/

    \b
    Under torchrun give --num as SAMIX_MIX_NUM=N (torchrun reads --num as its --numa-binding).
    """
    from ..data.mix_out import check_mix_out
    from ..data.mix_writer import MixSettings, preview_batch, write_mixed
    from ..data.specs import load_data
    from ..fileio import check_writable_dir, check_writable_file
    from ..mixing.sampling import DEFAULT_ALPHA, check_alpha

    check_mix_out(out)  # before any long work: refuse a folder that is not ours
    check_writable_dir(out, "--out")
    if preview:
        check_writable_file(preview, "--preview")
    rank, world, local_rank = _dist()
    dev = resolve_device(device)
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    size = image_size
    source = load_data(data_spec, download=download, image_size=size)
    dataset = source.split(split)
    length = len(dataset)  # type: ignore[arg-type]
    num = length if num is None else num
    if num < 1:
        raise click.BadParameter(f"{num}: must be at least 1", param_hint="--num")
    if length < 2 or num > length * (length - 1):
        raise UserError(
            f"{data_spec} ({split}) has {length} image(s): too few for {num} distinct pairs"
        )
    try:
        alpha = check_alpha(DEFAULT_ALPHA[method] if alpha is None else alpha)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--alpha") from None
    gen, prov, used_runtime = None, None, None
    if method == "samix":
        if not generator_src:
            raise click.UsageError("--method samix needs --generator SRC")
        gen, prov, used_runtime = load_mix_generator(generator_src, runtime, dev)
        if used_runtime == "onnx":
            dev = torch.device("cpu")  # onnxruntime picks its own device; mixing stays on CPU
        chans = int(gen.config.in_chans)
        if chans != source.channels:
            raise UserError(
                f"generator {generator_src} takes {chans}-channel images, {data_spec} has "
                f"{source.channels}-channel images"
            )
    elif generator_src and not quiet:
        click.echo(f"note: --method {method} uses no generator; ignoring --generator", err=True)
    settings = MixSettings(
        data=data_spec,
        split=split,
        source_size=length,
        class_names=[str(c) for c in source.class_names],
        method=method,
        alpha=alpha,
        num=num,
        seed=seed,
        batch_size=batch_size,
        shard_size=shard_size,
        image_size=size or tuple(source.image_size),
        image_format=image_format,
        save_masks=save_masks,
        mask_adjust=mask_adjust,
        on_error=on_error,
        generator=prov,
        runtime=used_runtime,
    )
    how = f"the same `samix-hub mix ... --out {out}` again, without --no-resume"
    how += " (finished shards are kept)"
    with resume_hint(how):
        result = write_mixed(
            out,
            dataset,
            settings,
            gen,
            device=dev,
            workers=workers,
            resume=resume,
            rank=rank,
            world_size=world,
            progress=not quiet and rank == 0,
        )
    if preview and rank == 0:
        from ..preview import save_preview

        save_preview(preview, *preview_batch(dataset, settings, gen, dev))
    if not quiet:
        state = "complete" if result.complete else "this rank's shards done"
        click.echo(
            f"{Path(out)}: wrote {result.rows} images in {result.shards_written} of "
            f"{result.shards_total} shards ({result.images_per_s:.0f} img/s, "
            f"{result.skipped} skipped); {state}",
            err=True,
        )
    if rank == 0:
        click.echo(str(Path(out)))
    sys.stdout.flush()
