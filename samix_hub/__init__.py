"""samix-hub: learned mixup (SAMix, SAMix^P; Li et al., arXiv 2111.15454) as a toolkit.

Importing the package registers its CIFAR-style backbones in timm.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .loading import load_backbone, load_generator
from .mixing.mixup import SAMixUp
from .models import Generator, GeneratorConfig, Mixer, MixerConfig, create_encoder

__all__ = [
    "__version__",
    "Generator",
    "GeneratorConfig",
    "Mixer",
    "MixerConfig",
    "SAMixUp",
    "create_encoder",
    "load_generator",
    "load_backbone",
]
