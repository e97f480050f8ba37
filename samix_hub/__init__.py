"""samix-hub: learned mixup (SAMix, SAMix^P; Li et al., arXiv 2111.15454) as a toolkit.

Importing the package registers its CIFAR-style backbones in timm. The public API; modules
inside the package never import this file (docs/README.md "Which way imports go").
"""

from __future__ import annotations

from ._version import __version__
from .artifact.load import load_backbone
from .hub_api import Generator, load_generator
from .mixup import SAMixUp
from .models import GeneratorConfig, MaskGenerator, Mixer, MixerConfig, create_encoder

__all__ = [
    "__version__",
    "Generator",
    "GeneratorConfig",
    "MaskGenerator",
    "Mixer",
    "MixerConfig",
    "SAMixUp",
    "create_encoder",
    "load_generator",
    "load_backbone",
]
