"""``samix-hub train``: online SAMix, AutoMix, SAMix^P and the classic baselines."""

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
    ImageSize,
    device_option,
    generator_scale_option,
    log_option,
    quiet_option,
    resume_hint,
    run_options,
    seed_option,
)
from samix_hub.errors import UserError
from samix_hub.format.artifact import CALIBRATION_MODES, CONFIG_NAME

REQUIRED = ("method", "data", "backbone", "out")
#: Options of --scenario ssl only; they travel in TrainConfig.ssl (and config.json).
SSL_ONLY = ("queue_len", "temperature", "proj_dim")


#: Defaults of ``--teacher`` runs where the option is not given (docs/algorithm.md).
TEACHER_DEFAULTS: dict[str, Any] = {"optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0}


@click.command("train")
@click.option(
    "--scenario",
    type=click.Choice(["sl", "ssl"]),
    default="sl",
    show_default=True,
    help="sl: supervised; ssl: self-supervised (MoCo v2 + SAMix).",
)
@click.option(
    "--method",
    help="sl: vanilla, mixup, cutmix, automix, samix (online) or samix-p (frozen --generator); "
    "ssl: moco, mixup (MoCo + MixUp) or samix (MoCo + SAMix).",
)
@click.option("--data", help="Data set SPEC: cifar10:DIR, npz:FILE, folder:DIR, hf:NAME, digits...")
@click.option("--backbone", help="timm model name, e.g. resnet18_cifar, resnet18_cifar_w16.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to write (RUN_DIR).")
@click.option("--epochs", type=click.IntRange(1), default=200, show_default=True)
@click.option(
    "--batch-size", type=click.IntRange(2), default=100, show_default=True, help="Per device."
)
@click.option(
    "--lr", type=POSITIVE, default=0.1, show_default=True, help="Learning rate (--teacher: 0.001)."
)
@click.option(
    "--optimizer",
    type=click.Choice(["sgd", "adamw"]),
    default="sgd",
    show_default=True,
    help="sgd: the reference recipe (uses --momentum); adamw (the --teacher default).",
)
@click.option(
    "--mixer-lr",
    type=POSITIVE,
    default=None,
    help="automix/samix: the mixer's learning rate [default: --lr]; same cosine shape.",
)
@click.option(
    "--min-lr",
    type=NON_NEGATIVE,
    default=None,
    help="End of the cosine schedule [default: lr/2 for automix/samix (0.05), else 0].",
)
@click.option("--momentum", type=UNIT, default=0.9, show_default=True, help="SGD momentum.")
@click.option(
    "--weight-decay",
    type=NON_NEGATIVE,
    default=1e-4,
    show_default=True,
    help="--teacher: 0 by default.",
)
@click.option(
    "--alpha",
    type=POSITIVE,
    default=None,
    help="Beta(α, α) for λ [default: 2 automix/samix/samix-p, 1 mixup, 0.2 cutmix].",
)
@click.option(
    "--eta", type=NON_NEGATIVE, default=0.5, show_default=True, help="η of the mixer loss."
)
@click.option(
    "--mask-adjust",
    type=UNIT,
    default=0.0,
    show_default=True,
    help="Probability of rescaling a mask to mean λ.",
)
@click.option(
    "--mask-loss-weight",
    type=NON_NEGATIVE,
    default=0.1,
    show_default=True,
    help="Mask regulariser.",
)
@click.option(
    "--calibration",
    type=click.Choice(sorted(CALIBRATION_MODES)),
    default=None,
    help="automix/samix: 'exact' shifts each mask so its mean is λ exactly (docs/algorithm.md); "
    "'none' is the reference mixer [default: exact].",
)
@click.option(
    "--mask-variance",
    type=click.Choice(["image", "batch"]),
    default=None,
    help="automix/samix: variance term of the mask regulariser, per-image spatial or "
    "batch-wide (the reference) [default: image].",
)
@click.option(
    "--teacher",
    default=None,
    metavar="SRC",
    help="samix/automix: train ONLY the mixer against this frozen, trained classifier (a run "
    "folder, backbone folder, ORG/NAME[@REV], hf-hub:... or timm name); its stage 3 becomes "
    "the generator's encoder. Replaces --backbone.",
)
@click.option("--ema-momentum", type=UNIT, default=0.999, show_default=True, help="EMA start.")
@click.option(
    "--ema-end-momentum",
    type=UNIT,
    default=0.999999,
    show_default=True,
    help="End of the EMA cosine schedule (ssl: defaults to --ema-momentum, MoCo's constant).",
)
@click.option(
    "--queue-len",
    type=click.IntRange(1),
    default=None,
    help="ssl: negatives in the MoCo queue [default: sized for the data set, 4096 on CIFAR].",
)
@click.option(
    "--temperature", type=POSITIVE, default=None, help="ssl: InfoNCE temperature [default: 0.2]."
)
@click.option(
    "--proj-dim", type=click.IntRange(1), default=None, help="ssl: projection size [default: 128]."
)
@click.option(
    "--generator", default=None, help="samix-p: frozen generator folder or ORG/NAME[@REV]."
)
@click.option("--clean-loss", is_flag=True, help="samix-p: add the clean-batch CE (≈2.25x cost).")
@generator_scale_option
@seed_option
@device_option
@run_options
@click.option(
    "--image-size", type=ImageSize(), default=None, help="Resize images to HxW (default: native)."
)
@click.option("--download", is_flag=True, help="Let torchvision download CIFAR when missing.")
@log_option
@quiet_option
@click.pass_context
def command(
    ctx: click.Context, resume: bool, quiet: bool, log: tuple[str, ...], **opts: Any
) -> None:
    """Train a classifier with a mixup method; writes a run folder RUN_DIR.

    \b
    RUN_DIR gets config.json (the resolved options), metrics.jsonl (top-1/top-5 of the
    classifier and of its EMA copy after each epoch), curves.png (loss, top-1, lr and mask
    statistics, redrawn at each evaluation), steps.jsonl (the losses of every step) and
    checkpoints/last.pt (written atomically each epoch). --log csv,tensorboard adds
    metrics.csv and tensorboard/. An interrupted run continues exactly where it stopped with
    --resume. Under torchrun it trains with DDP.

    \b
    --scenario ssl trains without labels (MoCo v2 with a queue of negatives; mixup/samix add
    the mixup InfoNCE, samix a label-free mixer); metrics.jsonl then holds knn_top1 (kNN
    monitor on the test split) and `samix-hub eval RUN_DIR --linear-probe` scores the encoder.

    \b
    Examples:
      samix-hub train --method samix --data cifar100:~/data --backbone resnet18_cifar \\
          --epochs 200 --out runs/c100-r18-samix
      samix-hub train --method mixup --data digits --backbone resnet18_cifar_w16 \\
          --epochs 2 --batch-size 64 --out runs/digits-mixup
      samix-hub train --method samix-p --generator ORG/samix-generator --data npz:sub.npz \\
          --backbone resnet18_cifar_w32 --epochs 30 --out runs/samix-p
      samix-hub train --scenario ssl --method samix --data digits \\
          --backbone resnet18_cifar_w16 --epochs 2 --batch-size 64 --lr 0.06 --out runs/ssl
      samix-hub train --method samix --teacher runs/c100-r18-samix --data cifar100:~/data \\
          --epochs 10 --out runs/c100-teacher       # mixer only, frozen trained teacher
      samix-hub train --resume --out runs/c100-r18-samix       # after an interruption
      torchrun --nproc-per-node 4 -m samix_hub train --method samix ... --out runs/ddp
    """
    from samix_hub.hub.resolve import resolve_source
    from samix_hub.train import SslOptions, TrainConfig, train
    from samix_hub.train.distributed import is_main_process
    from samix_hub.train.resume import resume_config

    given = {
        name
        for name in opts
        if ctx.get_parameter_source(name)
        in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    }
    ssl_opts = {k: opts.pop(k) for k in SSL_ONLY}
    if opts["teacher"]:
        if opts["scenario"] != "sl":
            raise UserError("--teacher trains a supervised mixer, not --scenario ssl")
        opts["scenario"] = "teacher"  # the frozen-teacher scenario (train/teacher.py)
    out = opts["out"]
    if resume and out and (Path(out) / CONFIG_NAME).is_file():
        cfg = resume_config(out, {name: {**opts, **ssl_opts}[name] for name in given})
    else:
        required = [n for n in REQUIRED if not (n == "backbone" and opts["teacher"])]
        missing = [f"--{n}" for n in required if not opts.get(n)]
        if missing:
            raise click.UsageError(f"missing option(s) {', '.join(missing)}")
        if opts["teacher"]:
            # Teacher runs: AdamW 1e-3, no weight decay, unless given (measured: with the
            # reference SGD lr 0.1 the masks sharpen, then go flat; docs/algorithm.md).
            for name, value in TEACHER_DEFAULTS.items():
                if name not in given:
                    opts[name] = value
        given_ssl = {k: v for k, v in ssl_opts.items() if v is not None}
        if given_ssl and opts["scenario"] != "ssl":
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given_ssl)
            raise click.UsageError(f"{flags}: only used with --scenario ssl")
        cfg = TrainConfig(**opts, ssl=SslOptions.from_dict(given_ssl))
    with resume_hint(f"samix-hub train --resume --out {shlex.quote(str(cfg.out))}"):
        run_dir = train(cfg, resume=resume, quiet=quiet, log=log, sources=resolve_source)
    if is_main_process():
        click.echo(str(run_dir))
