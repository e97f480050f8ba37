"""Backbones from timm, plus CIFAR-style variants registered in timm's registry.

CIFAR-style ResNets (He et al. 2016, as used by openmixup for CIFAR/Tiny-ImageNet) replace the
7x7 stride-2 stem and the max-pool with a 3x3 stride-1 convolution, so a 32 px image keeps a
32x32 map in ``layer1`` and an 8x8 map after ``layer3`` (the stage the SAMix mixer reads).
After ``import samix_hub`` they are built with ``timm.create_model(name, num_classes=...)``.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = ["CifarResNet", "CIFAR_MEAN", "CIFAR_STD", "CIFAR_BACKBONES"]

#: Normalisation of docs/algorithm.md "Online supervised SAMix" (CIFAR recipe).
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.201)


class CifarResNet(ResNet):
    """timm ResNet with a 3x3 stride-1 stem and no max-pool (CIFAR-style)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stem_width = self.conv1.out_channels
        in_chans = self.conv1.in_channels
        self.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.maxpool = nn.Identity()
        # The stem no longer reduces: every stage's stride is 4x smaller than timm's ResNet.
        for info in self.feature_info:
            info["reduction"] = max(1, info["reduction"] // 4)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (4, 4),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR_MEAN,
        "std": CIFAR_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        **kwargs,
    }


_ARCHS: dict[str, dict[str, Any]] = {
    "resnet18_cifar": dict(block=BasicBlock, layers=(2, 2, 2, 2)),
    "resnet34_cifar": dict(block=BasicBlock, layers=(3, 4, 6, 3)),
    "resnet50_cifar": dict(block=Bottleneck, layers=(3, 4, 6, 3)),
    "resnext50_32x4d_cifar": dict(
        block=Bottleneck, layers=(3, 4, 6, 3), cardinality=32, base_width=4
    ),
    # Narrow variants for CPU work: same depth as ResNet-18, base widths 32 and 16.
    "resnet18_cifar_w32": dict(
        block=BasicBlock, layers=(2, 2, 2, 2), stem_width=32, channels=(32, 64, 128, 256)
    ),
    "resnet18_cifar_w16": dict(
        block=BasicBlock, layers=(2, 2, 2, 2), stem_width=16, channels=(16, 32, 64, 128)
    ),
}

#: Names this package registers in timm.
CIFAR_BACKBONES: tuple[str, ...] = tuple(_ARCHS)

default_cfgs = generate_default_cfgs({f"{name}.untrained": _cfg() for name in _ARCHS})


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    args = dict(_ARCHS[variant])
    args.update(kwargs)
    return build_model_with_cfg(CifarResNet, variant, pretrained, **args)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18, CIFAR stem (stage-3 output: 256 channels, stride 4)."""
    return _create("resnet18_cifar", pretrained, **kwargs)


@register_model
def resnet34_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-34, CIFAR stem."""
    return _create("resnet34_cifar", pretrained, **kwargs)


@register_model
def resnet50_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-50, CIFAR stem (stage-3 output: 1024 channels, stride 4)."""
    return _create("resnet50_cifar", pretrained, **kwargs)


@register_model
def resnext50_32x4d_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNeXt-50 32x4d, CIFAR stem."""
    return _create("resnext50_32x4d_cifar", pretrained, **kwargs)


@register_model
def resnet18_cifar_w32(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 depth at half width (32-64-128-256), CIFAR stem: a fast CPU backbone."""
    return _create("resnet18_cifar_w32", pretrained, **kwargs)


@register_model
def resnet18_cifar_w16(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """ResNet-18 depth at quarter width (16-32-64-128), CIFAR stem: for tests and the demo."""
    return _create("resnet18_cifar_w16", pretrained, **kwargs)
