"""``samix-hub finetune``: fine-tune a pretrained backbone with a frozen SAMix^P generator."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from samix_hub.cli.options import (
    NON_NEGATIVE,
    POSITIVE,
    UNIT,
    FiniteFloat,
    ImageSize,
    builtin_hint,
    device_option,
    generator_scale_option,
    log_option,
    quiet_option,
    resume_hint,
    run_options,
    seed_option,
)
from samix_hub.errors import UserError
from samix_hub.format.artifact import CONFIG_NAME

__all__ = ["command"]

METHODS = ("vanilla", "mixup", "cutmix", "samix-p", "mixed")
#: Options that name the fine-tune itself (kept in ``config.json``; fixed on --resume).
#: mixing.sampling.PAIRINGS, spelled out so that --help imports no torch (a test compares them).
PAIRING_CHOICES = ("permutation", "derangement")
FT_ARGS = (
    "backbone",
    "generator",
    "mixed",
    "pretrained",
    "freeze_backbone",
    "clean_fraction",
    "warmup_epochs",
)


@click.command("finetune")
@click.option(
    "--backbone",
    metavar="SRC",
    help="Backbone folder, ORG/NAME[@REV], hf-hub:ORG/NAME or timm name.",
)
@click.option("--data", metavar="SPEC", help="Target data set: cifar10:DIR, npz:FILE, digits...")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to write (RUN_DIR).")
@click.option(
    "--generator",
    metavar="SRC",
    help=f"Frozen generator (SAMix^P): folder, ORG/NAME[@REV] or {builtin_hint()}.",
)
@click.option(
    "--mixed",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Train on an offline mixed data set written by `samix-hub mix`.",
)
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default=None,
    help="Default: samix-p with --generator, mixed with --mixed, else vanilla.",
)
@click.option(
    "--pretrained/--no-pretrained",
    default=True,
    show_default=True,
    help="timm model names: start from timm's pretrained weights (needs network or cache).",
)
@click.option("--freeze-backbone", is_flag=True, help="Linear probe: train the classifier only.")
@click.option(
    "--clean-fraction",
    type=FiniteFloat(0, 1, max_open=True),
    default=0.0,
    show_default=True,
    help="--mixed: share of clean images interleaved in each epoch, in [0, 1).",
)
@click.option("--epochs", type=click.IntRange(1), default=30, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(2), default=64, show_default=True, help="Per device."
)
@click.option(
    "--opt",
    "--optimizer",
    "optimizer",
    type=click.Choice(["sgd", "adamw"]),
    default="sgd",
    show_default=True,
    help="sgd (CNNs) or adamw (timm's, no decay on biases/norms: ViTs and other transformers).",
)
@click.option(
    "--lr", type=POSITIVE, default=None, help="Peak learning rate [default: sgd 0.01, adamw 1e-4]."
)
@click.option(
    "--min-lr", type=NON_NEGATIVE, default=None, help="End of the cosine schedule [default: 0]."
)
@click.option(
    "--warmup-epochs",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Linear warm-up from 0 to --lr over N epochs, then the cosine (timm's scheduler).",
)
@click.option("--momentum", type=UNIT, default=0.9, show_default=True, help="SGD momentum.")
@click.option(
    "--weight-decay", type=NON_NEGATIVE, default=None, help="[default: sgd 1e-4, adamw 0.05]."
)
@click.option(
    "--alpha",
    type=POSITIVE,
    default=None,
    help="Beta(α, α) for λ [default: 2 samix-p, 1 mixup, 0.2 cutmix].",
)
@click.option(
    "--mask-adjust",
    type=UNIT,
    default=0.0,
    show_default=True,
    help="samix-p: probability of rescaling a mask to mean λ.",
)
@click.option("--clean-loss", is_flag=True, help="samix-p: add the clean-batch CE (≈2.25x cost).")
@click.option(
    "--mask-temperature",
    type=POSITIVE,
    default=1.0,
    show_default=True,
    help="samix-p: < 1 sharpens the generator's masks, > 1 softens them; each mask keeps mean λ.",
)
@click.option(
    "--mix-prob",
    type=UNIT,
    default=1.0,
    show_default=True,
    help="Probability that a batch is mixed at all (timm's prob); else it trains clean.",
)
@click.option(
    "--switch-prob",
    type=UNIT,
    default=0.0,
    show_default=True,
    help="Probability that a mixed batch uses CutMix instead (MixUp for --method cutmix).",
)
@click.option(
    "--pairing",
    type=click.Choice(PAIRING_CHOICES),
    default="permutation",
    show_default=True,
    help="Partners: a random permutation (some images meet themselves) or a derangement.",
)
@click.option(
    "--image-size",
    type=ImageSize(),
    default=None,
    help="Train at HxW [default: the backbone's size].",
)
@generator_scale_option
@seed_option
@device_option
@run_options
@click.option("--download", is_flag=True, help="Let torchvision download CIFAR when missing.")
@log_option
@quiet_option
@click.pass_context
def command(
    ctx: click.Context, resume: bool, quiet: bool, log: tuple[str, ...], **opts: Any
) -> None:
    """Fine-tune a pretrained backbone on a new data set; writes a run folder RUN_DIR.

    \b
    With --generator, every step mixes the batch with a frozen pre-trained SAMix generator
    (SAMix^P: one generator pass per step, no mixer training); --mixed trains on an offline
    set from `samix-hub mix`; --method mixup|cutmix|vanilla are the baselines. The classifier
    is replaced for the target classes; input size and normalisation follow the backbone.
    RUN_DIR is a training run (config.json, metrics.jsonl, curves.png, checkpoints/last.pt;
    --log csv,tensorboard adds metrics.csv and tensorboard/): evaluated each epoch, resumable with --resume, exportable with `samix-hub export --what backbone`.
    Prints RUN_DIR on stdout.

    \b
    Examples:
      samix-hub finetune --backbone ORG/resnet18-c100 --generator ORG/samix-generator \\
          --data cifar10:~/data --out runs/ft-samix-p
      samix-hub finetune --backbone release/backbone --generator builtin:cifar10-small \\
          --data npz:cifar_subset.npz --out runs/ft-builtin
      samix-hub finetune --backbone resnet18.a1_in1k --generator ORG/samix-generator \\
          --data folder:~/flowers --image-size 160 --epochs 20 --out runs/flowers
      samix-hub finetune --backbone release/backbone --generator builtin:cifar10-small \\
          --mask-temperature 0.5 --pairing derangement --data digits --out runs/ft-sharp
      samix-hub finetune --backbone release/backbone --mixed mixed/ --clean-fraction 0.5 \\
          --data digits --out runs/ft-offline
      samix-hub finetune --backbone resnet18_cifar_w16 --no-pretrained --method mixup \\
          --data digits --epochs 2 --out runs/ft-mixup
      samix-hub finetune --backbone hf-hub:timm/vit_tiny_patch16_224.augreg_in21k \\
          --opt adamw --warmup-epochs 2 --generator ORG/samix-generator \\
          --data folder:~/flowers --out runs/vit
      samix-hub finetune --backbone hf-hub:timm/resnet18.a1_in1k --freeze-backbone \\
          --data cifar10:~/data --out runs/probe
      samix-hub finetune --resume --out runs/ft-samix-p        # after an interruption
      samix-hub export runs/ft-samix-p --out release/ --what backbone
    """
    from samix_hub.hub.resolve import resolve_source
    from samix_hub.train import read_run_config, train
    from samix_hub.train.distributed import is_main_process
    from samix_hub.train.finetune import finetune_config
    from samix_hub.train.resume import resume_config

    given = {
        name
        for name in opts
        if ctx.get_parameter_source(name)
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    out = opts["out"]
    if resume and out and (Path(out) / CONFIG_NAME).is_file():
        run = read_run_config(out)
        if run.get("scenario") != "finetune":
            raise UserError(f"{out}: a {run.get('scenario')!r} run; resume it with samix-hub train")
        cfg = resume_config(out, {name: opts[name] for name in given})
    else:
        missing = [f"--{n}" for n in ("backbone", "data", "out") if not opts.get(n)]
        if missing:
            raise click.UsageError(f"missing option(s) {', '.join(missing)}")
        if opts["clean_fraction"] and not opts["mixed"]:
            raise UserError("--clean-fraction interleaves clean images with --mixed DIR only")
        ft = {k: opts.pop(k) for k in FT_ARGS}
        cfg = finetune_config(
            ft.pop("backbone"), opts.pop("data"), opts.pop("out"), method=opts.pop("method"), **ft,
            **opts,
        )  # fmt: skip
    with resume_hint(f"samix-hub finetune --resume --out {shlex.quote(str(cfg.out))}"):
        run_dir = train(cfg, resume=resume, quiet=quiet, log=log, sources=resolve_source)
    if is_main_process():
        click.echo(str(run_dir))
