"""``samix-hub eval``: top-1 / top-5 of a run's classifier (and EMA copy) or of a backbone."""

from __future__ import annotations

import json

import click

from samix_hub.cli.options import POSITIVE, device_option, quiet_option, seed_option


@click.command("eval")
@click.argument("src")
@click.option("--data", required=True, help="Data set SPEC (its test split is evaluated).")
@click.option("--batch-size", type=click.IntRange(1), default=256, show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option(
    "--linear-probe",
    is_flag=True,
    help="Fit a linear classifier on the frozen backbone's features (train split), score it "
    "on the test split (self-supervised encoders; any backbone).",
)
@click.option(
    "--probe-epochs", type=click.IntRange(1), default=100, show_default=True, help="Linear probe."
)
@click.option("--probe-lr", type=POSITIVE, default=0.1, show_default=True, help="Linear probe.")
@seed_option
@device_option
@quiet_option
def command(
    src: str,
    data: str,
    batch_size: int,
    workers: int,
    as_json: bool,
    linear_probe: bool,
    probe_epochs: int,
    probe_lr: float,
    seed: int,
    device: str,
    quiet: bool,
) -> None:
    """Top-1 / top-5 accuracy (%) of a training run (classifier and its EMA copy) or of a
    backbone folder / Hub repo, on the test split of a data set.

    \b
    With --linear-probe the backbone is frozen, its pooled features of the train split
    (without augmentation) train a linear classifier, and its test top-1/top-5 are reported:
    the evaluation of `samix-hub train --scenario ssl` encoders (a run's query encoder).

    \b
    Examples:
      samix-hub eval runs/digits-samix --data digits
      samix-hub eval exported/backbone --data cifar10:~/data --json
      samix-hub eval ORG/samix-resnet18-cifar100 --data cifar100:~/data
      samix-hub eval runs/ssl --data digits --linear-probe
      samix-hub eval runs/c10-moco --data cifar10:~/data --linear-probe --probe-epochs 50 --json
    """
    from samix_hub.hub.eval import accuracy, probe
    from samix_hub.train.distributed import resolve_device

    dev = resolve_device(device)
    if linear_probe:
        if probe_epochs < 1 or probe_lr <= 0:
            raise click.BadParameter(
                f"need --probe-epochs >= 1 and --probe-lr > 0 ({probe_epochs}, {probe_lr})"
            )
        results, res = probe(src, data, dev, batch_size, workers, probe_epochs, probe_lr, seed)
        if as_json:
            click.echo(json.dumps(results))
            return
        click.echo(f"linear-probe\ttop-1 {res['top1']:.2f}\ttop-5 {res['top5']:.2f}")
        if not quiet:
            click.echo(
                f"{res['num_test']} test images of {data}; probe fitted on {res['num_train']} "
                f"train images ({res['feature_dim']}-d features, {probe_epochs} epochs)",
                err=True,
            )
        return
    results, models = accuracy(src, data, dev, batch_size, workers)
    if as_json:
        click.echo(json.dumps(results))
        return
    for name in models:
        prefix = "" if name == "model" else "ema_"
        label = "classifier" if name == "model" else "ema"
        click.echo(
            f"{label}\ttop-1 {results[prefix + 'top1']:.2f}\ttop-5 {results[prefix + 'top5']:.2f}"
        )
    if not quiet:
        click.echo(f"{results['count']} test images of {data}", err=True)
