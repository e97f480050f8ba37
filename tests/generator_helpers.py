"""Small generators for tests of the Python API and the Hub methods (random weights, seeded)."""

from __future__ import annotations

import torch

from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.models.encoder import StageEncoder

ARCH = "resnet18_cifar_w16"


def new_generator(seed: int) -> Generator:
    """A ``resnet18_cifar_w16`` generator whose weights depend on ``seed`` only."""
    torch.manual_seed(seed)  # test-only initialisation of the weights
    channels = StageEncoder(ARCH, stage=3).out_channels
    return Generator(GeneratorConfig(ARCH, MixerConfig(in_channels=channels)))


def masks_of(gen: object) -> torch.Tensor:
    """``gen``'s masks on a fixed batch of four random images (two pairs, λ 0.3 / 0.8 / 0.7)."""
    g = torch.Generator().manual_seed(7)
    images = torch.rand(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        return gen.masks(images, torch.tensor([1, 0, 3, 2]), torch.tensor([0.3, 0.3, 0.8, 0.7]))  # type: ignore[attr-defined]
