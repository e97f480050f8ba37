"""A finished run folder as the exporter and ``--backbone RUN_DIR`` read it: its config, metrics
and last checkpoint (:func:`load_run`), its classifier (:func:`run_classifier`, the one
constructor of a run's classifier; :func:`build_backbone` its timm model) and its SAMix^P
generator (:func:`build_generator`, the one constructor of a run's generator; docs/artifacts.md
"Run folder").
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from samix_hub._version import __version__
from samix_hub.data.names import dataset_info
from samix_hub.errors import UserError
from samix_hub.export.cards import summarize_generator_metrics
from samix_hub.export.validate import check_finite
from samix_hub.fileio.guard import loads_bounded, read_json_bounded
from samix_hub.format.artifact import CONFIG_NAME
from samix_hub.format.run import CHECKPOINT, METRICS_NAME, RUN_KIND
from samix_hub.models import backbones as _backbones  # noqa: F401  (registers the CIFAR backbones in timm)
from samix_hub.models.classifier import Classifier, create_net
from samix_hub.models.generator import GeneratorConfig, GeneratorNet
from samix_hub.models.mixer import MixerConfig

__all__ = [
    "load_weights_only",
    "read_run_config",
    "Run",
    "load_run",
    "build_backbone",
    "run_classifier",
    "build_generator",
    "run_generator",
    "run_chans",
    "run_image_size",
]


def load_weights_only(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """``torch.load(weights_only=True)``; a checkpoint needing arbitrary unpickling is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError for arbitrary objects, RuntimeError if corrupt
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path}: refused: not loadable with torch.load(weights_only=True) ({first}); "
            "samix-hub never unpickles arbitrary objects"
        ) from None
    if not isinstance(ckpt, dict):
        raise UserError(f"{path}: expected a dict of tensors, got {type(ckpt).__name__}")
    return ckpt


def read_run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``RUN_DIR/config.json`` of a ``samix-hub train`` run."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise UserError(f"{path}: missing (not a samix-hub run folder)")
    try:
        config = read_json_bounded(path)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if config.get("kind") != RUN_KIND:
        raise UserError(f"{path}: kind is {config.get('kind')!r}, not a {RUN_KIND}")
    return config


@dataclass
class Run:
    """A training run: its config, measured metrics and last checkpoint (tensors only)."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    checkpoint: dict[str, Any]


def load_run(run_dir: str | Path) -> Run:
    """Read a run folder written by ``samix-hub train`` (RUN_DIR contract)."""
    path = Path(run_dir)
    cfg_path = path / CONFIG_NAME
    config = read_run_config(path)  # the one reader of a run's config.json (kind checked there)
    if config.get("format_version", 1) != 1:
        raise UserError(
            f"{cfg_path}: not a samix-run of format version 1 "
            f"(format_version {config.get('format_version')!r})"
        )
    for key in ("backbone", "num_classes"):
        if key not in config:
            raise UserError(f"{cfg_path}: lacks {key!r}")
    metrics = []
    metrics_path = path / METRICS_NAME
    if metrics_path.is_file():
        for n, line in enumerate(metrics_path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    metrics.append(loads_bounded(line))
                except json.JSONDecodeError:
                    raise UserError(f"{metrics_path}:{n}: not valid JSON") from None
    checkpoint = load_weights_only(path / CHECKPOINT)
    return Run(path=path, config=config, metrics=metrics, checkpoint=checkpoint)


def run_chans(config: dict[str, Any]) -> int:
    return int(config.get("in_chans", len(config.get("mean", (0, 0, 0)))))


def run_image_size(config: dict[str, Any]) -> tuple[int, int]:
    size = config.get("image_size", (32, 32))
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def _load_into(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy a timm state dict; keys the model lacks (e.g. an SSL projector) are ignored."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise UserError(f"checkpoint {what!r} lacks {len(missing)} weights, e.g. {missing[:3]}")
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise UserError(
                f"checkpoint {what!r}: {key} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(value.shape)}"
            )
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def build_backbone(run: Run, weights: str = "model") -> nn.Module:
    """The run's timm classifier with the ``model`` or ``ema`` weights, in eval mode (an
    encoder without head for a run of no classes)."""
    state = run.checkpoint.get(weights)
    if not isinstance(state, dict):
        raise UserError(f"{run.path}: checkpoint has no {weights!r} weights")
    cfg = run.config
    net = create_net(cfg["backbone"], int(cfg.get("num_classes") or 0), run_chans(cfg))
    _load_into(net, state, weights)
    return net.eval()


def run_classifier(run: Run, weights: str = "model") -> Classifier:
    """The run's classifier as it trained: :func:`build_backbone` (weights checked finite)
    behind the run's normalisation."""
    net = build_backbone(run, weights)
    check_finite(net.state_dict(), f"{run.path / CHECKPOINT} ({weights})")
    return Classifier(net, run.config["mean"], run.config["std"])


def build_generator(run: Run, use_ema: bool = True) -> GeneratorNet | None:
    """The run's frozen generator: EMA encoder (to ``stage``; the online one without
    ``use_ema`` or without an EMA copy) + mixer; None without a mixer."""
    cfg = run.config
    if not cfg.get("mixer") or not isinstance(run.checkpoint.get("mixer"), dict):
        return None
    has_ema = isinstance(run.checkpoint.get("ema"), dict)
    source = "ema" if use_ema and has_ema else "model"
    provenance = {
        "scenario": cfg.get("scenario"),
        "method": cfg.get("method"),
        "data": dataset_info(cfg.get("data"))[2],
        "num_classes": cfg.get("num_classes"),
        "epochs": cfg.get("epochs"),
        "step": run.checkpoint.get("step"),
        "seed": cfg.get("seed"),
        "encoder_weights": source,
        "trained_with": cfg.get("samix_hub_version"),
        "samix_hub_version": __version__,
        # the run's own mask statistics (test split), as the card's body states them
        "measured": summarize_generator_metrics(run.metrics),
    }
    teacher = cfg.get("teacher_provenance")
    if isinstance(teacher, dict):  # train/teacher.py: the encoder is the frozen teacher's
        provenance["encoder_weights"] = "teacher"
        provenance["trained_against"] = "a frozen teacher"
        provenance["teacher"] = teacher  # no local paths: a folder is named, not located
    gcfg = GeneratorConfig(
        backbone=cfg["backbone"],
        mixer=MixerConfig.from_dict(cfg["mixer"]),
        stage=int(cfg.get("stage", 3)),
        in_chans=run_chans(cfg),
        input_size=run_image_size(cfg),
        mean=tuple(cfg["mean"]),
        std=tuple(cfg["std"]),
        provenance={k: v for k, v in provenance.items() if v is not None},
    )
    gen = GeneratorNet(gcfg)
    classifier = build_backbone(run, source)
    gen.encoder.load_from_backbone(classifier)
    gen.mixer.load_state_dict(run.checkpoint["mixer"])
    return gen.freeze()


def run_generator(run_dir: str | Path, use_ema: bool = True) -> GeneratorNet:
    """The SAMix^P generator of a run folder (:func:`build_generator`); an error when the
    run's method trained no mixer."""
    run = load_run(run_dir)
    gen = build_generator(run, use_ema)
    if gen is None:
        raise UserError(f"{run_dir}: method {run.config.get('method')!r} trained no mixer")
    return gen
