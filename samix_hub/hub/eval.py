"""``eval`` as library calls: :func:`accuracy` (top-1/top-5 of a run's classifier and its EMA
copy, or of a backbone) and :func:`probe` (the linear probe of a frozen encoder).

``cli/eval.py`` parses the options and prints what these return.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from samix_hub.data import load_data
from samix_hub.data.specs import DataSource, DataSpecError
from samix_hub.errors import UserError
from samix_hub.export.run import load_run, read_run_config, run_classifier
from samix_hub.format.run import is_run_folder
from samix_hub.hub.api import load_backbone
from samix_hub.models.classifier import Classifier
from samix_hub.train.evaluate import evaluate
from samix_hub.train.linear_probe import linear_probe
from samix_hub.train.loader import eval_loader, eval_transform

__all__ = ["accuracy", "probe"]


def _run_models(run_dir: Path, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    config = read_run_config(run_dir)
    if not config.get("num_classes"):
        raise UserError(
            f"{run_dir}: a {config.get('scenario')} run without a classifier head "
            "(score its encoder with --linear-probe)"
        )
    run = load_run(run_dir)
    models: dict[str, torch.nn.Module] = {}
    for name in ("model", "ema"):
        if run.checkpoint.get(name) is not None:
            models[name] = run_classifier(run, name).to(device)
    return models, config


def _backbone_model(src: str, device: torch.device) -> tuple[dict[str, torch.nn.Module], dict]:
    net, config = load_backbone(src, device=device)
    pcfg = config.get("pretrained_cfg", {})
    mean, std = pcfg.get("mean"), pcfg.get("std")
    if mean is None or std is None:
        raise UserError(f"{src}: config.json has no pretrained_cfg mean/std")
    info = {
        "num_classes": config.get("num_classes"),
        "image_size": list(pcfg.get("input_size", [3, 0, 0])[1:]) or None,
        "backbone": config.get("architecture"),
        "in_chans": (pcfg.get("input_size") or [3])[0],
    }
    return {"model": Classifier(net, mean, std).to(device)}, info


def _probe_encoder(src: str, path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Feature extractor (pooled features, head removed) of a run's ``model`` weights or of a
    backbone folder / Hub repo, for the linear probe."""
    if is_run_folder(path):
        run = load_run(path)
        config = run.config
        model = run_classifier(run, "model")
        info = {
            "image_size": config.get("image_size"),
            "backbone": config["backbone"],
            "in_chans": config.get("in_chans", 3),
        }
    else:
        models, info = _backbone_model(src, device)
        model = models["model"]
        assert isinstance(model, Classifier)
    model.net.reset_classifier(0)
    return model.to(device), info


def _test_data(data: str, src: str, info: dict[str, Any]) -> DataSource:
    """The data's test split, refused when its images have another channel count than the
    model takes."""
    try:
        source = load_data(data)
    except DataSpecError as exc:
        raise UserError(str(exc)) from None
    if source.test is None:
        raise UserError(f"{data}: has no test split to evaluate")
    chans = info.get("in_chans")
    if chans is not None and int(chans) != int(source.channels):
        raise UserError(
            f"{src}: takes {chans}-channel images, {data} has {source.channels}-channel images"
        )
    return source


def accuracy(
    src: str, data: str, device: torch.device, batch_size: int, workers: int
) -> tuple[dict[str, Any], list[str]]:
    """(results, model names): ``top1``/``top5`` (and ``ema_top1``/``ema_top5`` for a run with
    an EMA copy), ``count``, ``source`` and ``data``."""
    path = Path(src).expanduser()
    if is_run_folder(path):
        models, info = _run_models(path, device)
    else:
        models, info = _backbone_model(src, device)
    source = _test_data(data, src, info)
    if info.get("num_classes") != source.num_classes:
        raise UserError(
            f"{src}: has {info.get('num_classes')} classes, {data} has {source.num_classes}"
        )
    size = tuple(info.get("image_size") or source.image_size)
    results: dict[str, Any] = {"source": src, "data": data}
    for name, model in models.items():
        batches = eval_loader(source.test, eval_transform(size), batch_size, workers)
        res = evaluate(model, batches, device)
        prefix = "" if name == "model" else "ema_"
        results.update({f"{prefix}top1": res["top1"], f"{prefix}top5": res["top5"]})
        results["count"] = res["count"]
    return results, list(models)


def probe(
    src: str,
    data: str,
    device: torch.device,
    batch_size: int,
    workers: int,
    epochs: int,
    lr: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(results, the probe's raw numbers) of a linear probe on ``src``'s frozen features."""
    encoder, info = _probe_encoder(src, Path(src).expanduser(), device)
    source = _test_data(data, src, info)
    size = tuple(info.get("image_size") or source.image_size)
    res = linear_probe(
        encoder, source, device, epochs, lr, batch_size, workers=workers, seed=seed,
        image_size=size,
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
    return results, res
