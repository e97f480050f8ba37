"""Backbones (timm + CIFAR variants), stage encoders, the SAMix mixer and the generator."""

from samix_hub.mixing.masks import rescale_lam
from samix_hub.models import backbones  # noqa: F401  (registers the CIFAR variants in timm)
from samix_hub.models.backbones import CIFAR_BACKBONES, CIFAR_MEAN, CIFAR_STD
from samix_hub.models.encoder import StageEncoder, create_encoder
from samix_hub.models.generator import GeneratorConfig, GeneratorNet, MaskGenerator
from samix_hub.models.mixer import Mixer, MixerConfig

__all__ = [
    "CIFAR_BACKBONES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "StageEncoder",
    "create_encoder",
    "GeneratorNet",
    "GeneratorConfig",
    "MaskGenerator",
    "Mixer",
    "MixerConfig",
    "rescale_lam",
]
