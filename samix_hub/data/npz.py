"""``npz:FILE`` data sets (docs/README.md module map): one clear error per mistake in the file.

The file holds ``x_train`` and ``y_train`` (and optionally ``x_test``/``y_test`` and a
``classes`` array of names). Images are N x H x W x C uint8 with C <= 4; an N x C x H x W array
is named as such, with the transpose that fixes it. Labels are integers in 0..K-1, K bounded by
the labels present and by :data:`samix_hub.format.limits.MAX_CLASSES`, so one stray label cannot make a
million-class head. Every error names the file and the array.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from samix_hub.format.limits import MAX_CLASSES, DataSpecError

__all__ = ["read_npz", "NpzArrays", "MAX_NPZ_CHANNELS"]

#: Largest channel count of an npz image array (grey, RGB, RGBA); more means NCHW or a mistake.
MAX_NPZ_CHANNELS = 4


def _npz_images(path: Path, key: str, x: np.ndarray) -> np.ndarray:
    """``x_train`` / ``x_test`` as N x H x W x C uint8 (C in 1..4); one error per mistake."""
    if x.size == 0 or x.ndim == 0 or len(x) == 0:
        raise DataSpecError(f"{path}: array {key!r} is empty (no images)")
    if x.dtype != np.uint8:
        raise DataSpecError(
            f"{path}: array {key!r} is {x.dtype}, expected uint8 pixels (0..255); "
            "convert with (x * 255).round().astype(np.uint8) for images in [0, 1]"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataSpecError(f"{path}: array {key!r} has shape {x.shape}, expected N x H x W x C")
    if x.shape[-1] > MAX_NPZ_CHANNELS:
        if x.shape[1] <= MAX_NPZ_CHANNELS:
            raise DataSpecError(
                f"{path}: array {key!r} has shape {x.shape}, which looks like NCHW; "
                "transpose to NHWC: np.transpose(x, (0, 2, 3, 1))"
            )
        raise DataSpecError(
            f"{path}: array {key!r} has shape {x.shape}: {x.shape[-1]} channels, "
            f"expected N x H x W x C with C <= {MAX_NPZ_CHANNELS}"
        )
    return x


def _npz_labels(path: Path, key: str, y: np.ndarray, count: int) -> np.ndarray:
    """Integer class labels, one per image."""
    if y.dtype.kind not in "iu":
        raise DataSpecError(
            f"{path}: array {key!r} is {y.dtype}; labels must be integers "
            "(e.g. y.astype(np.int64) after checking they are whole numbers)"
        )
    y = y.reshape(-1) if y.ndim == 2 and y.shape[-1] == 1 else y
    if y.ndim != 1 or len(y) != count:
        raise DataSpecError(
            f"{path}: array {key!r} has shape {y.shape}, expected one label per image ({count})"
        )
    if len(y) and y.min() < 0:
        raise DataSpecError(f"{path}: array {key!r} has a negative label ({int(y.min())})")
    return y.astype(np.int64)


def _npz_classes(path: Path, arrays: dict[str, np.ndarray], labels: np.ndarray) -> list[str]:
    """Class names covering every label; the class count is bounded (docs/README.md)."""
    top = int(labels.max()) + 1
    if "classes" in arrays:
        names = [str(c) for c in np.asarray(arrays["classes"]).reshape(-1)]
        if len(names) < top:
            raise DataSpecError(
                f"{path}: 'classes' has {len(names)} names but the labels go up to {top - 1}; "
                f"give one name per class (at least {top})"
            )
        if len(names) > MAX_CLASSES:
            raise DataSpecError(f"{path}: 'classes' has {len(names)} names (max {MAX_CLASSES})")
        return names
    present = len(np.unique(labels))
    if top > MAX_CLASSES or (top > 2 * present and top - present > 10):
        raise DataSpecError(
            f"{path}: labels go up to {top - 1} but only {present} distinct label(s) are "
            f"present (at most {MAX_CLASSES} classes); relabel to 0..{present - 1} or add a "
            "'classes' array naming every class"
        )
    return [str(i) for i in range(top)]


NpzArrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None", list[str]]


def read_npz(location: str) -> NpzArrays:
    """``npz:FILE``: (x_train, y_train, x_test, y_test, class names), checked array by array;
    :func:`samix_hub.data.specs.load_data` turns them into a ``DataSource``."""
    path = Path(location)
    if not path.is_file():
        raise DataSpecError(f"{path}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataSpecError(f"{path}: unreadable .npz ({exc})") from None
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataSpecError(
                f"{path}: missing array {key!r} (needs x_train, y_train, x_test, y_test)"
            )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataSpecError(f"{path}: has only one of 'x_test' and 'y_test'; give both or none")
    x_train = _npz_images(path, "x_train", arrays["x_train"])
    y_train = _npz_labels(path, "y_train", arrays["y_train"], len(x_train))
    x_test = y_test = None
    if "x_test" in arrays:
        x_test = _npz_images(path, "x_test", arrays["x_test"])
        y_test = _npz_labels(path, "y_test", arrays["y_test"], len(x_test))
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataSpecError(
                f"{path}: x_test images are {x_test.shape[1:]}, x_train images "
                f"{x_train.shape[1:]}; both splits need the same H x W x C"
            )
    labels = y_train if y_test is None else np.concatenate([y_train, y_test])
    names = _npz_classes(path, arrays, labels)
    return x_train, y_train, x_test, y_test, names
