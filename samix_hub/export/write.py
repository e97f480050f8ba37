"""Write a generator's ``config.json`` (with its ``encoder`` block) and weights, once.

``export`` and ``save_pretrained`` then add ONNX graphs and the card (``export_run.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from samix_hub.export.schema import generator_config_dict
from samix_hub.fileio import atomic_write, atomic_write_json
from samix_hub.format.artifact import CONFIG_NAME, GENERATOR_WEIGHTS
from samix_hub.models.generator import GeneratorNet

__all__ = ["write_generator"]


def write_generator(gen: GeneratorNet, path: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``generator.safetensors`` into folder ``path`` (atomically)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in gen.state_dict().items()}
    atomic_write(
        folder / GENERATOR_WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"})
    )
    atomic_write_json(folder / CONFIG_NAME, generator_config_dict(gen))
    return folder
