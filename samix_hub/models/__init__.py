"""Backbones (timm + CIFAR variants), stage encoders, the SAMix mixer and the generator."""

from . import backbones as backbones  # registers the CIFAR variants in timm
from .backbones import CIFAR_BACKBONES, CIFAR_MEAN, CIFAR_STD
from .encoder import StageEncoder, create_encoder
from .generator import Generator, GeneratorConfig, MaskGenerator
from .mixer import Mixer, MixerConfig, rescale_lam

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
