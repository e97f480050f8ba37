"""Pretrained backbones to fine-tune: one resolver for every ``--backbone SRC``.

``SRC`` is one of

- a ``samix-hub train`` run folder (``RUN_DIR`` with ``config.json`` and ``checkpoints/last.pt``):
  its classifier, with the online or the EMA weights, whichever scored higher at the last
  evaluation (the ``model`` weights when nothing was evaluated);
- a samix-hub backbone folder or Hub repo ``ORG/NAME[@REV]`` (timm's Hub layout, loaded through
  :func:`samix_hub.load_backbone`, which validates it and reads safetensors only);
- ``hf-hub:ORG/NAME``: any timm model on the Hub (``timm.create_model(SRC, pretrained=True)``);
- a timm model name (``resnet18``, ``resnet18.a1_in1k``, ``resnet18_cifar_w16``): timm's pretrained
  weights (downloaded by timm) or, with ``pretrained=False``, a seeded random initialisation.

Input size and normalisation come from the backbone's ``pretrained_cfg`` (as timm's own
``resolve_data_config``); the classifier is replaced for the target classes by
:meth:`PretrainedBackbone.with_head`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.load import open_backbone
from samix_hub.format.artifact import BACKBONE_WEIGHTS, CONFIG_NAME
from samix_hub.format.repo_ref import Resolve, resolve_local
from samix_hub.format.run import CHECKPOINT, RUN_KIND, is_run_folder
from samix_hub.models.classifier import timm_method

__all__ = ["PretrainedBackbone", "load_pretrained_backbone", "backbone_kind"]

_WEIGHT_KEYS = ("url", "hf_hub_id", "file", "state_dict")


@dataclass
class PretrainedBackbone:
    """A loaded backbone (with its original head) and what fine-tuning needs to know about it."""

    net: nn.Module
    architecture: str
    in_chans: int
    input_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: Where the weights came from (recorded in the run's config.json, no local paths).
    provenance: dict[str, Any] = field(default_factory=dict)
    #: A Hub repo id the weights came from (a card's ``base_model``), None when there is none.
    base_model: str | None = None
    kind: str = "timm"
    #: The head's class names when the source records them (run folders, samix-hub backbones).
    class_names: tuple[str, ...] | None = None

    def fixed_input_size(self) -> tuple[int, int] | None:
        """The only input size the network accepts (a ViT's strict patch embedding), or None.

        timm's vision transformers are built for one image size unless created with
        ``dynamic_img_size``; fed another size they fail inside their forward pass.
        """
        patch_embed = getattr(self.net, "patch_embed", None)
        if patch_embed is None or getattr(self.net, "dynamic_img_size", False):
            return None
        if not getattr(patch_embed, "strict_img_size", False):
            return None
        size = getattr(patch_embed, "img_size", None)
        return (int(size[0]), int(size[1])) if size is not None else None

    def with_head(self, num_classes: int, seed: int) -> nn.Module:
        """The network with a fresh classifier for ``num_classes`` (seeded; global RNG kept)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            timm_method(self.net, "reset_classifier")(num_classes)
        return self.net

    def run_config(
        self, normalisation: tuple[Sequence[float], Sequence[float]], channels: int
    ) -> dict[str, Any]:
        """The keys a run started from this backbone adds to its ``config.json``: the
        normalisation it trains with, the channel count and the ``base_model`` (teacher and
        fine-tune runs)."""
        mean, std = normalisation
        return {
            "mean": list(mean),
            "std": list(std),
            "in_chans": channels,
            "base_model": self.base_model,
        }

    def normalisation(self, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """mean/std for ``channels`` input channels (averaged when timm adapted the first conv)."""
        if len(self.mean) == channels:
            return self.mean, self.std
        mean = sum(self.mean) / len(self.mean)
        std = sum(self.std) / len(self.std)
        return (mean,) * channels, (std,) * channels


def backbone_kind(src: str) -> str:
    """``run`` (a training run folder), ``artifact`` (folder or ``ORG/NAME``), ``hf-hub`` or
    ``timm`` (a model name)."""
    if src.startswith("hf-hub:"):
        return "hf-hub"
    folder = Path(os.path.expanduser(src))
    if is_run_folder(folder):
        return "run"
    if Path(os.path.expanduser(src)).exists() or "/" in src or os.sep in src:
        return "artifact"
    return "timm"


def _from_cfg(net: nn.Module, fallback: str) -> tuple[str, int, tuple[int, int], tuple, tuple]:
    pcfg = dict(getattr(net, "pretrained_cfg", None) or {})
    size = tuple(pcfg.get("input_size") or (3, 224, 224))
    in_chans = int(getattr(net, "in_chans", 0) or size[0])
    mean = tuple(float(v) for v in pcfg.get("mean") or (0.485, 0.456, 0.406))
    std = tuple(float(v) for v in pcfg.get("std") or (0.229, 0.224, 0.225))
    arch = str(pcfg.get("architecture") or fallback)
    return arch, in_chans, (int(size[1]), int(size[2])), mean, std


def _has_weights(name: str) -> tuple[bool, str | None]:
    from timm.models import get_pretrained_cfg

    try:
        pcfg = get_pretrained_cfg(name, allow_unregistered=False)
    except (RuntimeError, ValueError):
        pcfg = None
    if pcfg is None:
        return False, None
    return any(getattr(pcfg, k, None) for k in _WEIGHT_KEYS), getattr(pcfg, "hf_hub_id", None)


def _from_run(src: str) -> PretrainedBackbone:
    """The classifier of a ``samix-hub train`` run folder (see the module docstring)."""
    from samix_hub.data.names import dataset_info
    from samix_hub.export.run import load_run, run_classifier
    from samix_hub.fileio import folder_sha256

    folder = Path(os.path.expanduser(src))
    run = load_run(folder)
    cfg, last = run.config, (run.metrics[-1] if run.metrics else {})
    weights = "model"
    ema_better = float(last.get("ema_top1", -1.0)) > float(last.get("top1", -1.0))
    if ema_better and isinstance(run.checkpoint.get("ema"), dict):
        weights = "ema"
    net = run_classifier(run, weights).net
    size = cfg.get("image_size") or (32, 32)
    size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    chans = int(cfg.get("in_chans", len(cfg.get("mean") or (0, 0, 0))))
    prov: dict[str, Any] = {
        "kind": RUN_KIND,
        "source": folder.resolve().name,
        "sha256": folder_sha256(folder, [CONFIG_NAME, CHECKPOINT.as_posix()]),
        "weights": weights,
        "method": cfg.get("method"),
        "scenario": cfg.get("scenario"),
        "trained_on": dataset_info(cfg.get("data"))[2],
        "step": run.checkpoint.get("step"),
    }
    top1 = last.get("ema_top1" if weights == "ema" else "top1")
    if isinstance(top1, (int, float)):
        prov["top1"] = float(top1)
    names = tuple(str(c) for c in cfg.get("class_names") or ()) or None
    mean = tuple(float(v) for v in cfg["mean"])
    std = tuple(float(v) for v in cfg["std"])
    base = cfg.get("base_model") if isinstance(cfg.get("base_model"), str) else None
    arch = str(cfg["backbone"])
    return PretrainedBackbone(net.train(), arch, chans, size, mean, std, prov, base, "run", names)


def _from_artifact(src: str, option: str, sources: Resolve) -> PretrainedBackbone:
    """An exported backbone (a folder or a Hub repo ``sources`` fetches)."""
    resolved = sources(src, "torch")
    try:
        net, config = open_backbone(resolved)
    except ArtifactError as exc:  # keeps its exit code (docs: errors.py)
        raise type(exc)(f"{option} {src}: {exc}") from None
    arch, chans, size, mean, std = _from_cfg(net, str(config.get("architecture")))
    if resolved.repo_id is not None:
        prov: dict[str, Any] = {"kind": "samix-backbone", **resolved.provenance()}
    else:
        from samix_hub.fileio import folder_sha256

        files = [CONFIG_NAME, BACKBONE_WEIGHTS]
        prov = {
            "kind": "samix-backbone",
            "source": resolved.path.resolve().name,
            "sha256": folder_sha256(resolved.path, files),
        }
    meta = config.get("samix_hub") or {}
    if isinstance(meta, dict) and meta.get("provenance"):
        prov["trained_on"] = meta["provenance"].get("data")
    names = tuple(str(c) for c in config.get("label_names") or ()) or None
    return PretrainedBackbone(
        net.train(), arch, chans, size, mean, std, prov, resolved.repo_id, "artifact", names
    )


def _timm_create(
    src: str, pretrained: bool, in_chans: int | None, option: str = "--backbone"
) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {} if in_chans is None else {"in_chans": in_chans}
    try:
        return timm.create_model(src, pretrained=pretrained, **kwargs)
    except Exception as exc:  # download / cache errors: huggingface_hub, urllib, OSError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = (
            "pass --no-pretrained to start from random weights, or give a local backbone folder"
            if pretrained and option == "--backbone"
            else "give a local folder"
            if pretrained
            else "check the name"
        )
        raise UserError(
            f"{option} {src}: timm could not build it ({type(exc).__name__}: {first}); {hint}"
        ) from None


def load_pretrained_backbone(
    src: str,
    *,
    pretrained: bool = True,
    in_chans: int | None = None,
    seed: int = 0,
    option: str = "--backbone",
    sources: Resolve = resolve_local,
) -> PretrainedBackbone:
    """Resolve ``--backbone SRC`` (see the module docstring); errors are one line naming SRC.

    ``in_chans`` (the data's channels) is passed to timm for model names and ``hf-hub:`` repos,
    which adapt the first convolution of pretrained weights; an artifact must already match.
    ``seed`` makes a random initialisation (``pretrained=False``) reproducible. ``option`` is the
    command-line option named in errors (``--teacher`` for a teacher run). ``sources`` turns
    an artifact's SRC into a local folder (the command line's downloads Hub repos).
    """
    from samix_hub.models import backbones as _backbones  # noqa: F401  (registers the CIFAR backbones)
    from samix_hub.models.classifier import check_backbone

    kind = backbone_kind(src)
    if kind in ("artifact", "run") and not pretrained:
        raise UserError(f"--no-pretrained applies to timm model names, not to {src}")
    if kind == "run":
        try:
            return _from_run(src)
        except UserError as exc:
            raise UserError(f"{option} {src}: {exc}") from None
    if kind == "artifact":
        return _from_artifact(src, option, sources)
    if kind == "timm":
        check_backbone(src.split(".")[0])
        has, hub_id = _has_weights(src)
        if pretrained and not has:
            hint = (
                "pass --no-pretrained to fine-tune from a random initialisation, or give a "
                "trained backbone folder"
                if option == "--backbone"
                else "give a trained run folder, backbone folder or Hub repo ORG/NAME[@REV]"
            )
            raise UserError(f"{option} {src}: timm has no pretrained weights for it; {hint}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _timm_create(src, pretrained, in_chans, option)
        arch, chans, size, mean, std = _from_cfg(net, src.split(".")[0])
        prov = {"kind": "timm", "name": src, "pretrained": pretrained}
        base = hub_id if pretrained else None
        if base:
            prov["hf_hub_id"] = base
        return PretrainedBackbone(net.train(), arch, chans, size, mean, std, prov, base, kind)
    repo = src[len("hf-hub:") :]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _timm_create(src, pretrained, in_chans, option)
    arch, chans, size, mean, std = _from_cfg(net, repo)
    prov = {"kind": "hf-hub", "repo_id": repo, "pretrained": pretrained}
    base = repo.split("@")[0] if pretrained else None
    return PretrainedBackbone(net.train(), arch, chans, size, mean, std, prov, base, kind)
