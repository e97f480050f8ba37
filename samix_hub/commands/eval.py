"""``samix-hub eval``: top-1 / top-5 of a run's classifier (and EMA copy) or of a backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch

from ..devices import resolve_device
from ..errors import UserError
from ._common import POSITIVE, device_option, quiet_option, seed_option


def _run_models(run_dir: Path, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    from ..engine import build_classifier, load_checkpoint, read_run_config

    config = read_run_config(run_dir)
    if not config.get("num_classes"):
        raise UserError(
            f"{run_dir}: a {config.get('scenario')} run without a classifier head "
            "(score its encoder with --linear-probe)"
        )
    state = load_checkpoint(run_dir, map_location="cpu")
    models: dict[str, torch.nn.Module] = {}
    for name in ("model", "ema"):
        if state.get(name) is None:
            continue
        model = build_classifier(
            config["backbone"], config["num_classes"], config["mean"], config["std"],
            config["in_chans"],
        )  # fmt: skip
        model.net.load_state_dict(state[name])
        models[name] = model.to(device)
    return models, config


def _backbone_model(src: str, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    from ..engine import Classifier
    from ..loading import load_backbone

    net, config = load_backbone(src, device=device)
    pcfg = config.get("pretrained_cfg", {})
    mean, std = pcfg.get("mean"), pcfg.get("std")
    if mean is None or std is None:
        raise UserError(f"{src}: config.json has no pretrained_cfg mean/std")
    info = {
        "num_classes": config.get("num_classes"),
        "image_size": list(pcfg.get("input_size", [3, 0, 0])[1:]) or None,
        "backbone": config.get("architecture"),
    }
    return {"model": Classifier(net, mean, std).to(device)}, info


def _probe_encoder(src: str, path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Feature extractor (pooled features, head removed) of a run's ``model`` weights or of a
    backbone folder / Hub repo, for the linear probe."""
    from ..engine import Classifier, build_classifier, load_checkpoint, read_run_config

    if (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        config = read_run_config(path)
        state = load_checkpoint(path, map_location="cpu")
        model = build_classifier(
            config["backbone"], int(config.get("num_classes") or 0), config["mean"],
            config["std"], config["in_chans"],
        )  # fmt: skip
        model.net.load_state_dict(state["model"])
        info = {"image_size": config.get("image_size"), "backbone": config["backbone"]}
    else:
        models, info = _backbone_model(src, device)
        model = models["model"]
        assert isinstance(model, Classifier)
    model.net.reset_classifier(0)  # type: ignore[operator]
    return model.to(device), info


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
    from ..data import eval_transform, load_data
    from ..data.specs import DataSpecError
    from ..engine import evaluate
    from ..engine.loader import eval_loader

    dev = resolve_device(device)
    path = Path(src).expanduser()
    if linear_probe:
        _linear_probe(src, path, data, dev, batch_size, workers, probe_epochs, probe_lr, seed,
                      as_json, quiet)  # fmt: skip
        return
    if (path / "config.json").is_file() and (path / "checkpoints").is_dir():
        models, info = _run_models(path, dev)
    else:
        models, info = _backbone_model(src, dev)
    try:
        source = load_data(data)
    except DataSpecError as exc:
        raise UserError(str(exc)) from None
    if source.test is None:
        raise UserError(f"{data}: has no test split to evaluate")
    if info.get("num_classes") != source.num_classes:
        raise UserError(
            f"{src}: has {info.get('num_classes')} classes, {data} has {source.num_classes}"
        )
    size = tuple(info.get("image_size") or source.image_size)
    results: dict[str, Any] = {"source": src, "data": data}
    for name, model in models.items():
        batches = eval_loader(source.test, eval_transform(size), batch_size, workers)
        res = evaluate(model, batches, dev)
        prefix = "" if name == "model" else "ema_"
        results.update({f"{prefix}top1": res["top1"], f"{prefix}top5": res["top5"]})
        results["count"] = res["count"]
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


def _linear_probe(
    src: str,
    path: Path,
    data: str,
    dev: torch.device,
    batch_size: int,
    workers: int,
    epochs: int,
    lr: float,
    seed: int,
    as_json: bool,
    quiet: bool,
) -> None:
    from ..data import load_data
    from ..data.specs import DataSpecError
    from ..engine.linear_probe import linear_probe

    if epochs < 1 or lr <= 0:
        raise click.BadParameter(f"need --probe-epochs >= 1 and --probe-lr > 0 ({epochs}, {lr})")
    encoder, info = _probe_encoder(src, path, dev)
    try:
        source = load_data(data)
    except DataSpecError as exc:
        raise UserError(str(exc)) from None
    if source.test is None:
        raise UserError(f"{data}: has no test split to evaluate")
    size = tuple(info.get("image_size") or source.image_size)
    res = linear_probe(
        encoder, source, dev, epochs, lr, batch_size, workers=workers, seed=seed,
        image_size=size,  # type: ignore[arg-type]
    )  # fmt: skip
    results = {
        "source": src,
        "data": data,
        "linear_probe_top1": res["top1"],
        "linear_probe_top5": res["top5"],
        "linear_probe_train_top1": res["train_top1"],
        "feature_dim": res["feature_dim"],
        "count": res["num_test"],
        "probe_epochs": epochs,
        "probe_lr": lr,
    }
    if as_json:
        click.echo(json.dumps(results))
        return
    click.echo(f"linear-probe\ttop-1 {res['top1']:.2f}\ttop-5 {res['top5']:.2f}")
    if not quiet:
        click.echo(
            f"{res['num_test']} test images of {data}; probe fitted on {res['num_train']} "
            f"train images ({res['feature_dim']}-d features, {epochs} epochs)",
            err=True,
        )
