"""Data specs: the bundled real data set, npz, folder, fashion-mnist idx, and clear errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from samix_hub.data import DataSpecError, load_data
from samix_hub.train.loader import eval_transform, train_transform


def test_digits_is_real_bundled_data():
    src = load_data("digits")
    assert src.num_classes == 10 and src.image_size == (16, 16) and src.channels == 3
    assert len(src.train) + len(src.test) == 1797
    x, y = src.train[0]
    assert x.dtype == torch.uint8 and x.shape == (3, 16, 16) and 0 <= y < 10
    assert load_data("digits").train.labels.tolist() == src.train.labels.tolist()  # fixed split


def test_npz_and_transforms(tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (20, 32, 32, 3), dtype=np.uint8)
    y = np.arange(20) % 4
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:5], y_test=y[:5])
    src = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert src.num_classes == 4 and len(src.test) == 5
    img, _ = src.train[3]
    assert torch.equal(img, torch.from_numpy(x[3]).permute(2, 0, 1))
    t = train_transform(src.image_size)(img)
    assert t.dtype == torch.float32 and t.shape == (3, 32, 32) and 0 <= t.min() and t.max() <= 1
    e = eval_transform(src.image_size)(img)
    assert torch.allclose(e, img.float() / 255)


def test_real_cifar_subset(cifar_subset):
    src = load_data(f"npz:{cifar_subset}")
    assert len(src.train) == 4000 and len(src.test) == 1000
    assert src.class_names[0] == "airplane"


def test_folder_and_bad_image(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(d / f"{i}.png")
    src = load_data(f"folder:{tmp_path}")
    assert src.class_names == ["cat", "dog"] and len(src.train) == 4 and src.image_size == (8, 8)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"not a png")
    src = load_data(f"folder:{tmp_path}")
    bad = [i for i, (p, _) in enumerate(src.train.samples) if p.name == "broken.png"][0]
    with pytest.raises(DataSpecError, match="broken.png"):
        src.train[bad]


def test_fashion_mnist_idx(tmp_path):
    def idx(arr, path):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        with gzip.open(path, "wb") as f:
            f.write(header + arr.tobytes())

    imgs = np.random.default_rng(0).integers(0, 255, (6, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 4, 9], np.uint8)
    for prefix in ("train", "t10k"):
        idx(imgs, tmp_path / f"{prefix}-images-idx3-ubyte.gz")
        idx(labels, tmp_path / f"{prefix}-labels-idx1-ubyte.gz")
    src = load_data(f"fashion-mnist:{tmp_path}")
    assert src.channels == 1 and src.num_classes == 10 and src.class_names[-1] == "Ankle boot"


@pytest.mark.parametrize(
    "spec, match",
    [
        ("nope", "unknown data set 'nope'"),
        ("npz:/no/such.npz", "/no/such.npz"),
        ("cifar10:/no/such/dir", "/no/such/dir"),
        ("folder:/no/where", "/no/where/train"),
        ("weird:x", "unknown data set kind 'weird'"),
        ("npz:", "missing location"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(DataSpecError, match=match):
        load_data(spec)
