"""``samix-hub eval``: top-1 / top-5 of a run's classifier (and EMA copy) or of a backbone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import torch

from ..errors import UserError
from ._common import device_option, quiet_option, resolve_device


def _run_models(run_dir: Path, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    from ..engine import build_classifier, load_checkpoint, read_run_config

    config = read_run_config(run_dir)
    if not config.get("num_classes"):
        raise UserError(f"{run_dir}: a {config.get('scenario')} run without a classifier head")
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
    import samix_hub

    from ..engine import Classifier

    loader = getattr(samix_hub, "load_backbone", None)
    if loader is None:
        from ..loading import load_backbone as loader  # noqa: PLC0415
    net, config = loader(src, device=device)
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


@click.command("eval")
@click.argument("src")
@click.option("--data", required=True, help="Data set SPEC (its test split is evaluated).")
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@device_option
@quiet_option
def command(
    src: str, data: str, batch_size: int, workers: int, as_json: bool, device: str, quiet: bool
) -> None:
    """Top-1 / top-5 accuracy (%) of a training run (classifier and its EMA copy) or of a
    backbone folder / Hub repo, on the test split of a data set.

    \b
    Examples:
      samix-hub eval runs/digits-samix --data digits
      samix-hub eval exported/backbone --data cifar10:~/data --json
      samix-hub eval ORG/samix-resnet18-cifar100 --data cifar100:~/data
    """
    from ..data import eval_transform, load_data
    from ..data.specs import DataSpecError
    from ..engine import evaluate
    from ..engine.loader import eval_loader

    dev = resolve_device(device)
    path = Path(src).expanduser()
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
