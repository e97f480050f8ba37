"""``samix-hub mix``: write a mixed data set offline with a published generator (or MixUp/CutMix)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from samix_hub.cli.options import (
    POSITIVE,
    UNIT,
    ImageSize,
    builtin_hint,
    device_option,
    quiet_option,
    resume_hint,
    seed_option,
)

__all__ = ["command"]


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
    from samix_hub.hub.mix import MixRequest, mix_dataset
    from samix_hub.train.distributed import resolve_device

    if method == "samix" and not generator_src:
        raise click.UsageError("--method samix needs --generator SRC")
    if method != "samix" and generator_src and not quiet:
        click.echo(f"note: --method {method} uses no generator; ignoring --generator", err=True)
    req = MixRequest(
        data_spec=data_spec, out=out, method=method, generator_src=generator_src,
        runtime=runtime, device=resolve_device(device), alpha=alpha, num=num, split=split,
        batch_size=batch_size, shard_size=shard_size, workers=workers, seed=seed,
        image_format=image_format, image_size=image_size, save_masks=save_masks,
        mask_adjust=mask_adjust, on_error=on_error, preview=preview, resume=resume,
        download=download, progress=not quiet,
    )  # fmt: skip
    how = f"the same `samix-hub mix ... --out {out}` again, without --no-resume"
    how += " (finished shards are kept)"
    with resume_hint(how):
        result, rank = mix_dataset(req)
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
