"""Data set specs ``KIND:LOCATION`` (docs/README.md): one loader per kind, one clear error per mistake.

Kinds: ``cifar10:DIR``, ``cifar100:DIR`` (torchvision layout), ``fashion-mnist:DIR`` (torchvision
raw layout or the idx files of Debian's ``dataset-fashion-mnist``), ``folder:DIR`` (``train/`` and
``val/`` with one sub-folder per class), ``npz:FILE`` (``x_train, y_train, x_test, y_test``, NHWC
uint8), ``hf:NAME`` (a Hugging Face ``datasets`` name) and the bare name ``digits``: scikit-learn's
bundled handwritten digits (real scans, 1,797 images, no download), upsampled from 8x8 to 16x16
and replicated to 3 channels so that RGB backbones and generators apply.

Every data set yields ``(image, label)`` with ``image`` a uint8 tensor C x H x W.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from samix_hub.data.npz import read_npz
from samix_hub.errors import HF_EXTRA, missing_extra_message
from samix_hub.format.limits import MIN_IMAGE_SIZE, DataSpecError, check_pixels

__all__ = [
    "DataSpecError",
    "DataSource",
    "ArrayDataset",
    "FolderDataset",
    "load_data",
    "SPEC_KINDS",
]

SPEC_KINDS = ("cifar10", "cifar100", "fashion-mnist", "folder", "npz", "hf", "digits")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.201)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class ArrayDataset(Dataset):
    """In-memory NHWC uint8 images with integer labels."""

    #: decoded already: the training loop indexes it without worker processes
    in_memory = True

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise DataSpecError(
                f"images must be N x H x W x C uint8, got {images.shape} {images.dtype}"
            )
        if len(images) != len(labels):
            raise DataSpecError(f"{len(images)} images but {len(labels)} labels")
        self.images = np.ascontiguousarray(images)
        self.labels = np.asarray(labels).astype(np.int64).reshape(-1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = torch.from_numpy(self.images[index]).permute(2, 0, 1)
        return img, int(self.labels[index])


class FolderDataset(Dataset):
    """Images under ``root/<class>/`` decoded lazily with PIL; bad files are named in the error."""

    def __init__(self, root: Path, classes: list[str], channels: int = 3) -> None:
        self.root = root
        self.classes = classes
        self.channels = channels
        self.samples: list[tuple[Path, int]] = []
        for label, name in enumerate(classes):
            for p in sorted((root / name).rglob("*")):
                if p.suffix.lower() in IMAGE_EXTS:
                    self.samples.append((p, label))
        self.labels = np.array([s[1] for s in self.samples], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError

        path, label = self.samples[index]
        try:
            with Image.open(path) as im:
                check_pixels(im.size, path)  # from the header, before decoding
                im = im.convert("RGB" if self.channels == 3 else "L")
                arr = np.asarray(im, dtype=np.uint8)
        except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
            raise DataSpecError(f"{path}: unreadable image ({exc})") from None
        if arr.ndim == 2:
            arr = arr[..., None]
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), label


class HFDataset(Dataset):
    """A Hugging Face ``datasets`` split with an image and a label column."""

    def __init__(self, ds: Any, image_col: str, label_col: str) -> None:
        self.ds = ds
        self.image_col = image_col
        self.label_col = label_col
        self.labels = np.asarray(ds[label_col], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.ds[int(index)]
        arr = np.asarray(row[self.image_col].convert("RGB"), dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1), int(row[self.label_col])


@dataclass
class DataSource:
    """A loaded data set: train and test splits plus what models need to know about it."""

    spec: str
    train: Dataset
    test: Dataset | None
    num_classes: int
    class_names: list[str]
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Dataset:
        if name == "train":
            return self.train
        if name in ("test", "val", "validation"):
            if self.test is None:
                raise DataSpecError(f"{self.spec}: has no test split")
            return self.test
        raise DataSpecError(f"unknown split {name!r} (train or test)")

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "channels": self.channels,
            "image_size": list(self.image_size),
            "mean": list(self.mean),
            "std": list(self.std),
            "train_size": len(cast(Sized, self.train)),
            "test_size": len(cast(Sized, self.test)) if self.test is not None else 0,
        }


def _stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(float(v) for v in x.mean(0)), tuple(float(max(v, 1e-3)) for v in x.std(0))


def from_arrays(
    spec: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    class_names: list[str] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> DataSource:
    train = ArrayDataset(x_train, y_train)
    test = ArrayDataset(x_test, y_test) if x_test is not None and y_test is not None else None
    labels = np.concatenate([train.labels] + ([test.labels] if test is not None else []))
    if labels.min() < 0:
        raise DataSpecError(f"{spec}: negative labels")
    num_classes = int(labels.max()) + 1
    if class_names is not None and len(class_names) < num_classes:
        raise DataSpecError(
            f"{spec}: {len(class_names)} class names do not cover label {num_classes - 1}"
        )
    names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
    num_classes = len(names)
    if mean is None or std is None:
        mean, std = _stats(train.images)
    _, h, w, c = train.images.shape
    return DataSource(spec, train, test, num_classes, names, c, (h, w), mean, std)


def _load_digits(spec: str) -> DataSource:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    t = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)[:, None]  # N,1,8,8 in [0,1]
    t = torch.nn.functional.interpolate(t, size=(16, 16), mode="bilinear", align_corners=False)
    x = (t.clamp(0, 1) * 255).round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    y = bunch.target.astype(np.int64)
    perm = np.random.default_rng(0).permutation(len(x))  # fixed split, not the global RNG
    n_test = 360
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return from_arrays(
        spec, x[train_idx], y[train_idx], x[test_idx], y[test_idx], [str(i) for i in range(10)]
    )


def _load_cifar(spec: str, kind: str, location: str, download: bool) -> DataSource:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if kind == "cifar10" else CIFAR100
    root = Path(location)
    if not download and not root.is_dir():
        raise DataSpecError(f"{root}: no such folder (pass --download to fetch {kind})")
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=download)
    except RuntimeError as exc:
        raise DataSpecError(f"{root}: {kind} not found there ({exc})") from None
    return from_arrays(
        spec,
        tr.data,
        np.array(tr.targets),
        te.data,
        np.array(te.targets),
        list(tr.classes),
        CIFAR_MEAN,
        CIFAR_STD,
    )


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 8 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise DataSpecError(f"{path}: not an idx file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataSpecError(f"{path}: truncated idx file")
    return arr.reshape(dims)


FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


def _load_fashion(spec: str, location: str) -> DataSource:
    root = Path(location)
    if not root.is_dir():
        raise DataSpecError(f"{root}: no such folder (fashion-mnist idx files)")

    def find(stem: str) -> Path:
        for cand in [root, root / "FashionMNIST" / "raw", root / "raw"]:
            for name in (stem, stem + ".gz"):
                if (cand / name).is_file():
                    return cand / name
        raise DataSpecError(f"{root}: missing {stem}[.gz]")

    x_tr = _read_idx(find("train-images-idx3-ubyte"))
    y_tr = _read_idx(find("train-labels-idx1-ubyte"))
    x_te = _read_idx(find("t10k-images-idx3-ubyte"))
    y_te = _read_idx(find("t10k-labels-idx1-ubyte"))
    return from_arrays(spec, x_tr, y_tr, x_te, y_te, FASHION_CLASSES)


def _load_folder(spec: str, location: str, image_size: tuple[int, int] | None) -> DataSource:
    root = Path(location)
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataSpecError(f"{train_dir}: missing (folder data sets need train/ and val/)")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if not classes:
        raise DataSpecError(f"{train_dir}: no class sub-folders")
    train = FolderDataset(train_dir, classes)
    if len(train) == 0:
        raise DataSpecError(f"{train_dir}: no images")
    val_dir = root / "val"
    test = FolderDataset(val_dir, classes) if val_dir.is_dir() else None
    size = image_size
    if size is None:
        first, _ = train[0]
        size = (int(first.shape[1]), int(first.shape[2]))
    small = max(size) <= 64
    mean, std = (CIFAR_MEAN, CIFAR_STD) if small else (IMAGENET_MEAN, IMAGENET_STD)
    return DataSource(spec, train, test, len(classes), classes, 3, size, mean, std)


def _load_hf(spec: str, name: str, image_size: tuple[int, int] | None) -> DataSource:
    try:
        import datasets
    except ImportError:
        raise DataSpecError(missing_extra_message("datasets", HF_EXTRA, spec)) from None
    try:
        dd = datasets.load_dataset(name)
    except Exception as exc:
        raise DataSpecError(f"hf:{name}: cannot load ({type(exc).__name__}: {exc})") from None
    split_train = "train" if "train" in dd else list(dd)[0]
    split_test = next((s for s in ("test", "validation", "val") if s in dd), None)
    cols = dd[split_train].features
    image_col = next((c for c in ("image", "img") if c in cols), None)
    label_col = next((c for c in ("label", "labels", "fine_label") if c in cols), None)
    if image_col is None or label_col is None:
        raise DataSpecError(f"hf:{name}: needs an image and a label column, has {list(cols)}")
    names = getattr(cols[label_col], "names", None)
    train = HFDataset(dd[split_train], image_col, label_col)
    test = HFDataset(dd[split_test], image_col, label_col) if split_test else None
    num_classes = len(names) if names else int(train.labels.max()) + 1
    first, _ = train[0]
    size = image_size or (int(first.shape[1]), int(first.shape[2]))
    small = max(size) <= 64
    mean, std = (CIFAR_MEAN, CIFAR_STD) if small else (IMAGENET_MEAN, IMAGENET_STD)
    return DataSource(
        spec, train, test, num_classes, list(names or range(num_classes)), 3, size, mean, std
    )


def load_data(
    spec: str, download: bool = False, image_size: tuple[int, int] | None = None
) -> DataSource:
    """Load a data set from a spec ``KIND:LOCATION`` or a bare name (``digits``); images
    smaller than ``limits.MIN_IMAGE_SIZE`` on a side are refused (the networks pad by more)."""
    source = _load_data(spec, download, image_size)
    h, w = (int(v) for v in source.image_size)
    if min(h, w) < MIN_IMAGE_SIZE:
        raise DataSpecError(
            f"{spec}: images of {h}x{w} pixels; samix-hub needs at least {MIN_IMAGE_SIZE} "
            "pixels on each side"
        )
    return source


def _load_data(spec: str, download: bool, image_size: tuple[int, int] | None) -> DataSource:
    if not spec:
        raise DataSpecError("empty data set spec")
    kind, sep, location = spec.partition(":")
    kind = kind.lower()
    if not sep:
        if kind == "digits":
            return _load_digits(spec)
        if os.path.isfile(spec) and spec.endswith(".npz"):
            return from_arrays(f"npz:{spec}", *read_npz(spec))
        raise DataSpecError(
            f"unknown data set {spec!r}: use KIND:LOCATION with KIND in {', '.join(SPEC_KINDS)}, or 'digits'"
        )
    if not location:
        raise DataSpecError(f"{spec!r}: missing location after '{kind}:'")
    location = os.path.expanduser(location)
    if kind in ("cifar10", "cifar100"):
        return _load_cifar(spec, kind, location, download)
    if kind == "fashion-mnist":
        return _load_fashion(spec, location)
    if kind == "folder":
        return _load_folder(spec, location, image_size)
    if kind == "npz":
        return from_arrays(spec, *read_npz(location))
    if kind == "hf":
        return _load_hf(spec, location, image_size)
    raise DataSpecError(
        f"unknown data set kind {kind!r} in {spec!r} (one of {', '.join(SPEC_KINDS)})"
    )
