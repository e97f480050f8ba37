"""Backbones (timm + CIFAR variants), stage encoders, the SAMix mixer and the generator."""

from samix_hub.models import backbones  # noqa: F401  (registers the CIFAR variants in timm)
from samix_hub.models.backbones import CIFAR_BACKBONES, CIFAR_MEAN, CIFAR_STD
from samix_hub.models.encoder import StageEncoder, create_encoder
from samix_hub.models.generator import Generator, GeneratorConfig, MaskGenerator
from samix_hub.models.mixer import Mixer, MixerConfig, rescale_lam

__all__ = [
    "CIFAR_BACKBONES",
    "CIFAR_MEAN",
    "CIFAR_STD",
    "StageEncoder",
    "create_encoder",
    "Generator",
    "GeneratorConfig",
    "MaskGenerator",
    "Mixer",
    "MixerConfig",
    "rescale_lam",
]
