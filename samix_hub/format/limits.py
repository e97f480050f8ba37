"""The shared size limits (images, channels, classes, encoder stages) and ``DataSpecError``.

The CLI (``cli/options.py:ImageSize``), the data specs (``data/npz.py``) and the artifact
config checks (``export/schema.py``) all apply these same numbers.
"""

from __future__ import annotations

__all__ = [
    "DataSpecError",
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
    "MAX_SOURCE_PIXELS",
    "check_pixels",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "MAX_STAGE",
]

#: Smallest image side anything accepts (the ONNX graphs' dynamic height/width start at 8).
MIN_IMAGE_SIZE = 8
#: Largest image side a config or an option may name.
MAX_IMAGE_SIZE = 4096
#: Most pixels of one image file decoded (a folder data set's image, a mixed set's row): the
#: size is read from the header and checked before decoding, so an image bomb costs nothing.
MAX_SOURCE_PIXELS = MAX_IMAGE_SIZE * MAX_IMAGE_SIZE
#: Largest channel count of an input image.
MAX_CHANNELS = 64
#: Largest class count of a head or a data set.
MAX_CLASSES = 100_000
#: Largest encoder stage (timm feature levels of a ResNet: 0..4).
MAX_STAGE = 4


class DataSpecError(ValueError):
    """A data set spec, path or file that cannot be used; the message names it."""


def check_pixels(size: tuple[int, int], where: object) -> None:
    """Refuse an image of ``size`` (width, height, from its header) above
    :data:`MAX_SOURCE_PIXELS`, before it is decoded."""
    width, height = int(size[0]), int(size[1])
    if width * height > MAX_SOURCE_PIXELS:
        raise DataSpecError(
            f"{where}: image of {width}x{height} pixels, more than the {MAX_SOURCE_PIXELS} "
            "samix-hub decodes (format/limits.py); resize it"
        )
