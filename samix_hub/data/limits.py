"""The shared size limits (images, channels, classes, encoder stages) and ``DataSpecError``.

The CLI (``commands/_common.py:ImageSize``), the data specs (``data/npz.py``) and the artifact
config checks (``artifact/schema.py``) all apply these same numbers.
"""

from __future__ import annotations

__all__ = [
    "DataSpecError",
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_STAGE",
]

#: Smallest image side anything accepts (the ONNX graphs' dynamic height/width start at 8).
MIN_IMAGE_SIZE = 8
#: Largest image side a config or an option may name.
MAX_IMAGE_SIZE = 4096
#: Largest channel count of an input image.
MAX_CHANNELS = 64
#: Largest class count of a head or a data set.
MAX_CLASSES = 100_000
#: Largest encoder stage (timm feature levels of a ResNet: 0..4).
MAX_STAGE = 4


class DataSpecError(ValueError):
    """A data set spec, path or file that cannot be used; the message names it."""
