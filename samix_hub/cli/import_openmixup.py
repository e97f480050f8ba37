"""``samix-hub import-openmixup``: an openmixup AutoMix/SAMix checkpoint -> generator folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from samix_hub.cli.options import FiniteFloat, quiet_option
from samix_hub.format.limits import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

__all__ = ["command"]


def _floats(value: str | None, name: str, positive: bool = False) -> tuple[float, ...] | None:
    """``"a,b,c"`` -> finite floats (``positive``: each > 0, as a std must be)."""
    if value is None:
        return None
    try:
        values = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: comma-separated numbers expected", param_hint=name
        ) from None
    if not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        need = "positive finite numbers" if positive else "finite numbers"
        raise click.BadParameter(f"{value!r}: {need} expected", param_hint=name)
    return values


@click.command("import-openmixup")
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--backbone",
    required=True,
    metavar="NAME",
    help="timm architecture of the encoder (e.g. resnet18_cifar, resnet50).",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Generator folder to write.",
)
@click.option(
    "--input-size",
    type=click.IntRange(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
    default=None,
    help="Native image size (default: the architecture's pretrained_cfg).",
)
@click.option("--mean", default=None, metavar="M1,M2,M3", help="Normalisation mean.")
@click.option("--std", default=None, metavar="S1,S2,S3", help="Normalisation std.")
@click.option(
    "--lam-mul-k",
    type=FiniteFloat(),
    default=None,
    help="SAMix λ encoding k (default 0.25 up to 64 px, none above).",
)
@click.option("--data-name", default=None, help="Data set it was trained on (for the card).")
@click.option("--opset", type=click.IntRange(18), default=18, show_default=True)
@click.option("--no-onnx", is_flag=True, help="Skip the ONNX graph.")
@click.option("--repo-id", metavar="ORG/NAME", default=None, help="Repo id for the card.")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@quiet_option
def command(
    checkpoint: Path,
    backbone: str,
    out: Path,
    input_size: int | None,
    mean: str | None,
    std: str | None,
    lam_mul_k: float | None,
    data_name: str | None,
    opset: int,
    no_onnx: bool,
    repo_id: str | None,
    force: bool,
    quiet: bool,
) -> None:
    """Import an AutoMix / SAMix checkpoint of the reference openmixup code as a generator.

    \b
    Maps the EMA encoder (backbone_k.*, truncated after stage 3) onto the timm architecture
    --backbone and the mixer (mix_block.*) onto samix-hub's Mixer, then writes and validates a
    generator folder (safetensors + ONNX + card). The checkpoint is read with
    torch.load(weights_only=True); one that needs arbitrary unpickling is refused.

    \b
    Examples:
      samix-hub import-openmixup samix_r18_c100.pth --backbone resnet18_cifar --out gen/ \\
          --mean 0.5071,0.4865,0.4409 --std 0.2673,0.2564,0.2762 --data-name cifar100
      samix-hub import-openmixup automix_r50_in1k.pth --backbone resnet50 --out gen-in1k/
    """
    import shutil

    from samix_hub.export.common import check_replaceable
    from samix_hub.export.generator import finalize_folder, staging_folder, write_generator_folder
    from samix_hub.export.run import load_weights_only
    from samix_hub.fileio import check_writable_dir
    from samix_hub.format.artifact import GENERATOR
    from samix_hub.models.openmixup import generator_from_openmixup

    if out.exists() and not force:
        raise click.UsageError(f"{out}: exists; pass --force to replace it")
    check_writable_dir(out.parent if str(out.parent) else Path("."), "--out")
    check_replaceable(out, force, GENERATOR, inputs=[checkpoint])  # never the checkpoint
    norm_mean, norm_std = _floats(mean, "--mean"), _floats(std, "--std", positive=True)
    ckpt = load_weights_only(checkpoint)
    gen = generator_from_openmixup(
        ckpt, backbone,
        input_size=(input_size, input_size) if input_size else None,
        mean=norm_mean, std=norm_std,
        lam_mul_k=lam_mul_k, source=str(checkpoint),
    )  # fmt: skip
    if data_name:
        gen.config.provenance["data"] = data_name
    stage = staging_folder(out.parent if str(out.parent) else Path("."), out.name)
    try:
        if not quiet:
            click.echo(f"writing {out} ...", err=True)
        report = write_generator_folder(
            gen, stage, run_config=None, metrics=[], onnx=not no_onnx, opset=opset, repo_id=repo_id
        )
        finalize_folder(stage, out, force, GENERATOR, [checkpoint])
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    report.path = out
    click.echo(json.dumps(report.to_dict(), indent=2))
