"""``samix-hub export``: a training run -> Hub-ready generator/ and backbone/ folders."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samix_hub.cli.options import quiet_option
from samix_hub.errors import UserError

__all__ = ["command"]


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder that receives generator/ and backbone/.",
)
@click.option(
    "--what",
    default="generator,backbone",
    show_default=True,
    help="Comma-separated: generator, backbone.",
)
@click.option(
    "--opset", type=click.IntRange(18), default=18, show_default=True, help="ONNX opset (>= 18)."
)
@click.option("--no-onnx", is_flag=True, help="Skip the ONNX graphs (safetensors only).")
@click.option(
    "--quantize",
    type=click.Choice(["none", "int8"]),
    default="none",
    show_default=True,
    help="Also write onnx/generator.int8.onnx (static int8, onnxruntime.quantization).",
)
@click.option(
    "--calibration-data",
    metavar="SPEC",
    default=None,
    help="Data set for int8 calibration and fidelity (default: the run's data).",
)
@click.option(
    "--weights",
    type=click.Choice(["model", "ema"]),
    default="model",
    show_default=True,
    help="Backbone weights to publish: the online or the EMA model.",
)
@click.option(
    "--generator-repo",
    metavar="ORG/NAME",
    default=None,
    help="Repo id written into the generator card's usage examples.",
)
@click.option(
    "--backbone-repo",
    metavar="ORG/NAME",
    default=None,
    help="Repo id written into the backbone card's usage examples.",
)
@click.option("--force", is_flag=True, help="Replace existing folders in --out.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@quiet_option
def command(
    run_dir: Path,
    out: Path,
    what: str,
    opset: int,
    no_onnx: bool,
    quantize: str,
    calibration_data: str | None,
    weights: str,
    generator_repo: str | None,
    backbone_repo: str | None,
    force: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Export a training run to Hub-ready folders (safetensors + ONNX + model card).

    \b
    Writes OUT/generator/ (config.json, generator.safetensors, onnx/generator.onnx, README.md)
    and OUT/backbone/ (timm Hub layout: config.json, model.safetensors, onnx/model.onnx,
    README.md), checks each (files, tensors, onnx.checker, torch vs onnxruntime parity, card)
    and only then moves it into place. A run without a mixer exports only the backbone.

    \b
    Examples:
      samix-hub export runs/samix-r18 --out release/
      samix-hub export runs/samix-r18 --out release/ --what generator --quantize int8
      samix-hub export runs/mixup-r18 --out release/ --no-onnx --weights ema
      samix-hub export runs/samix-r18 --out release/ --generator-repo me/samix-r18-cifar10
    """
    from samix_hub.errors import ONNX_EXTRA, require_extra
    from samix_hub.export.generator import export_run, int8_sample_images, load_run
    from samix_hub.fileio import check_writable_dir

    check_writable_dir(out, "--out")  # before the ONNX exports and parity checks
    parts = tuple(p.strip() for p in what.split(",") if p.strip())
    if no_onnx and quantize != "none":
        raise click.UsageError("--quantize int8 needs the ONNX graph; drop --no-onnx")
    if not no_onnx:
        require_extra(("onnx", "onnxscript", "onnxruntime"), ONNX_EXTRA, "export (or --no-onnx)")
    log = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    int8_images = evals = None
    if quantize == "int8" and "generator" in parts:
        run = load_run(run_dir)
        spec = calibration_data or run.config.get("data")
        if not spec:
            raise UserError("--quantize int8: pass --calibration-data SPEC (run has no data)")
        size = run.config.get("image_size", (32, 32))
        size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        log(f"loading calibration images from {spec} ...")
        try:
            int8_images, evals = int8_sample_images(spec, size)
        except (OSError, ValueError) as exc:
            raise UserError(f"--calibration-data {spec}: {exc}") from None
    reports = export_run(
        run_dir, out, parts, opset=opset, onnx=not no_onnx, weights=weights,
        int8_calibration=int8_images, int8_eval=evals, force=force, log=log,
        repo_ids={k: v for k, v in (("generator", generator_repo), ("backbone", backbone_repo)) if v},
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2))
        return
    for rep in reports:
        click.echo(f"{rep.kind}: {rep.path}")
        for name, size in rep.files.items():
            click.echo(f"  {name:<28} {_human(size):>10}")
        for key, value in rep.parity.items():
            click.echo(f"  parity {key:<21} max |torch - onnxruntime| = {value:.2e}")
        for key, value in rep.int8.items():
            click.echo(f"  int8 {key:<23} {value:.4f}")
