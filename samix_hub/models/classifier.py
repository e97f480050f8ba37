"""Classifiers as the engine trains them: on-device normalisation in front of a timm model.

Mixing happens in [0, 1] pixel space (docs/algorithm.md "SAMix^P": a generator takes raw images), so the
models normalise on the device. Checkpoints store ``Classifier.net.state_dict()``: plain timm key
names, loadable by ``timm.create_model(name, num_classes=...)`` after ``import samix_hub``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import timm
import torch
import torch.nn as nn

from samix_hub.errors import UserError
from samix_hub.models import Mixer, MixerConfig

__all__ = [
    "Normalize",
    "Classifier",
    "create_net",
    "build_classifier",
    "build_mixer",
    "check_backbone",
]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics are not part of the state dict."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} values, std {len(std)}")
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class Classifier(nn.Module):
    """``net(normalize(x))`` for images in [0, 1]; ``features`` reads an intermediate stage."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))

    def features(self, x: torch.Tensor, stage: int = 3) -> torch.Tensor:
        """Feature map after ``stage`` (timm ``forward_intermediates`` index; ResNet 3 = layer3).

        Same tensor as :class:`samix_hub.models.StageEncoder` with these weights, without a copy:
        this is how the EMA classifier feeds the mixer (docs/algorithm.md "Online supervised SAMix", step 2).
        """
        feats = timm_method(self.net, "forward_intermediates")(
            self.normalize(x), indices=[stage], intermediates_only=True, stop_early=True
        )
        return feats[-1]


def timm_method(net: nn.Module, name: str) -> Callable[..., Any]:
    """A method of the timm model ``net`` (``forward_intermediates``, ``reset_classifier``...)."""
    method = getattr(net, name, None)
    if not callable(method):
        raise TypeError(f"{type(net).__name__} has no {name}() (not a timm model)")
    return method


def check_backbone(name: str) -> str:
    """A timm model name (after ``import samix_hub``); a clear error otherwise."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:6]
        hint = f" (similar: {', '.join(close)})" if close else ""
        raise UserError(f"unknown backbone {name!r}: not a timm model name{hint}")
    return name


def create_net(
    backbone: str, num_classes: int, in_chans: int = 3, seed: int | None = None
) -> nn.Module:
    """A freshly initialised timm model ``backbone`` (no pretrained weights; ``num_classes`` 0:
    no head). ``seed`` makes the initialisation reproducible without leaving the global RNG
    changed (timm initialises weights from it; the state is forked and restored)."""
    check_backbone(backbone)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = timm.create_model(
            backbone, pretrained=False, num_classes=num_classes, in_chans=in_chans
        )
    assert isinstance(net, nn.Module)
    return net


def build_classifier(
    backbone: str,
    num_classes: int,
    mean: Sequence[float],
    std: Sequence[float],
    in_chans: int = 3,
    seed: int | None = None,
) -> Classifier:
    """A freshly initialised timm classifier (:func:`create_net`) with normalisation in front."""
    net = create_net(backbone, num_classes, in_chans, seed)
    if not hasattr(net, "forward_intermediates"):
        raise UserError(f"backbone {backbone!r}: timm model without forward_intermediates")
    return Classifier(net, mean, std)


def build_mixer(
    model: Classifier,
    in_chans: int,
    image_size: Sequence[int],
    variant: str,
    stage: int,
    seed: int,
    device: torch.device,
    calibration: str | None = None,
    variance: str | None = None,
) -> Mixer:
    """A fresh SAMix or AutoMix mixer for the stage-``stage`` features of ``model``.

    The channel count comes from a probe through ``model.features``; ImageNet-size images get
    λ' = λ and dropout 0.1 (docs/algorithm.md "The mixer"). Initialised from ``seed + 1`` without touching
    the caller's RNG. ``calibration`` / ``variance`` set the mixer options of docs/algorithm.md "Deviations"
    (None: MixerConfig's defaults). ``model`` is returned to the mode it was in.
    """
    was_training = model.training
    with torch.no_grad():  # channel count of the stage the mixer reads
        probe = torch.zeros(2, in_chans, *image_size, device=device)
        channels = int(model.eval().features(probe, stage).shape[1])
        model.train(was_training)
    options: dict[str, Any] = {}
    if calibration is not None:
        options["calibration"] = calibration
    if variance is not None:
        options["variance"] = variance
    mcfg = (
        MixerConfig(channels, **options)
        if variant == "samix"
        else MixerConfig.automix(channels, **options)
    )
    if max(image_size) > 64:
        mcfg.lam_mul_k = -1.0
        mcfg.dropout = 0.1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        return Mixer(mcfg).to(device)
