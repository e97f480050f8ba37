"""Bad options and bad data files, for every command: one line, the right exit code, no change.

Each case runs the real ``samix-hub`` entry point in-process and asserts the exit code (2 for
usage errors), exactly one ``Error:`` line on stderr that names the offending value, no
traceback, and that no file in the test's folder outside ``--out`` changed. Corrupt artifacts
are in ``test_bad_artifacts.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bad_input_helpers import assert_fails  # noqa: E402

ARCH = "resnet18_cifar_w16"


def _train(out: Path, *extra: object) -> list[object]:
    return ["train", "--method", "mixup", "--data", "digits", "--backbone", ARCH, "--epochs", 1,
            "--out", out, *extra]  # fmt: skip


def _finetune(out: Path, *extra: object) -> list[object]:
    return ["finetune", "--backbone", ARCH, "--no-pretrained", "--method", "mixup", "--data",
            "digits", "--out", out, *extra]  # fmt: skip


def _mix(out: Path, *extra: object) -> list[object]:
    return ["mix", "--method", "mixup", "--data", "digits", "--out", out, "-q", *extra]


def _eval(out: Path, *extra: object) -> list[object]:
    return ["eval", out / "no-run", "--data", "digits", *extra]


def _import(out: Path, *extra: object) -> list[object]:
    return ["import-openmixup", out.parent / "ckpt.pth", "--backbone", ARCH, "--out", out, *extra]


# (command builder, extra args, needle naming the option and value)
OPTION_CASES = [
    (_eval, ["--batch-size", 0], "'--batch-size': 0"),
    (_eval, ["--workers", -1], "'--workers': -1"),
    (_eval, ["--probe-epochs", 0], "'--probe-epochs': 0"),
    (_eval, ["--probe-lr", "nan"], "'--probe-lr': 'nan'"),
    (_train, ["--eval-batch-size", 0], "'--eval-batch-size': 0"),
    (_train, ["--workers", -1], "'--workers': -1"),
    (_train, ["--epochs", 0], "'--epochs': 0"),
    (_train, ["--batch-size", 1], "'--batch-size': 1"),
    (_train, ["--lr", 0], "'--lr': 0"),
    (_train, ["--lr", "nan"], "'--lr': 'nan'"),
    (_train, ["--lr", "inf"], "'--lr': 'inf'"),
    (_train, ["--momentum", 1.5], "'--momentum': 1.5"),
    (_train, ["--max-steps", 0], "'--max-steps': 0"),
    (_train, ["--eval-every", -1], "'--eval-every': -1"),
    (_train, ["--checkpoint-every", -2], "'--checkpoint-every': -2"),
    (_train, ["--seed", -1], "'--seed': -1"),
    (_train, ["--image-size", 4], "'--image-size': '4'"),
    (_train, ["--image-size", "32xfoo"], "'--image-size': '32xfoo'"),
    (_train, ["--image-size", "99999"], "'--image-size': '99999'"),
    (_train, ["--queue-len", 0], "'--queue-len': 0"),
    (_train, ["--mask-adjust", 2], "'--mask-adjust': 2"),
    (_finetune, ["--eval-batch-size", 0], "'--eval-batch-size': 0"),
    (_finetune, ["--image-size", "5x5"], "'--image-size': '5x5'"),
    (_finetune, ["--clean-fraction", 1], "'--clean-fraction': 1"),
    (_finetune, ["--epochs", -3], "'--epochs': -3"),
    (_finetune, ["--weight-decay", -1], "'--weight-decay': -1"),
    (_mix, ["--image-size", 4], "'--image-size': '4'"),
    (_mix, ["--image-size", 0], "'--image-size': '0'"),
    (_mix, ["--num", 0], "'--num': 0"),
    (_mix, ["--alpha", 0], "'--alpha': 0"),
    (_mix, ["--alpha", "nan"], "'--alpha': 'nan'"),
    (_mix, ["--batch-size", 1], "'--batch-size': 1"),
    (_mix, ["--workers", -1], "'--workers': -1"),
    (_mix, ["--mask-adjust", "nan"], "'--mask-adjust': 'nan'"),
    (_mix, ["--shard-size", 0], "'--shard-size': 0"),
    (_import, ["--input-size", -5], "'--input-size': -5"),
    (_import, ["--input-size", 0], "'--input-size': 0"),
    (_import, ["--std", "0,0,0"], "'0,0,0': positive finite numbers expected"),
    (_import, ["--std", "a,b,c"], "'a,b,c': comma-separated numbers expected"),
    (_import, ["--mean", "nan,0,0"], "'nan,0,0': finite numbers expected"),
    (_import, ["--opset", 7], "'--opset': 7"),
    (_import, ["--lam-mul-k", "inf"], "'--lam-mul-k': 'inf'"),
]


@pytest.mark.parametrize(
    ("build", "extra", "needle"),
    OPTION_CASES,
    ids=[f"{b.__name__[1:]}{'_'.join(map(str, e))}" for b, e, _ in OPTION_CASES],
)
def test_bad_option(build, extra, needle, tmp_path, capsys):
    """Counts, sizes and rates are typed: refused before any work (exit 2, nothing written)."""
    (tmp_path / "ckpt.pth").write_bytes(b"not read: the option is refused first")
    out = tmp_path / "out"
    line = assert_fails(build(out, *extra), capsys, tmp_path, 2, needle, out=out)
    assert "--help" in line  # points at the command's help, on the same line
    assert not out.exists()


def test_image_size_rule_is_shared(tmp_path, capsys):
    """`mix` and `train` accept and refuse the same sizes, with the same message."""
    mix = assert_fails(_mix(tmp_path / "m", "--image-size", "7x9"), capsys, tmp_path, 2, "'7x9'")
    train = assert_fails(
        _train(tmp_path / "t", "--image-size", "7x9"), capsys, tmp_path, 2, "'7x9'"
    )
    assert mix.split("(see")[0] == train.split("(see")[0]
    assert "[8, 4096]" in mix


def test_vit_at_another_image_size_is_one_line(tmp_path, capsys):
    """A ViT built for 224 x 224 fed 32 x 32: refused before training, naming the size to use."""
    out = tmp_path / "run"
    args = ["finetune", "--backbone", "vit_tiny_patch16_224", "--no-pretrained", "--data",
            "digits", "--image-size", "32", "--epochs", 1, "--max-steps", 1, "--workers", 0,
            "--out", out, "-q"]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 2, "--image-size 32x32", out=out)
    assert "--image-size 224x224" in line and not out.exists()


# ---------------------------------------------------------------------------------- npz files
def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _images(n: int = 12, shape: tuple[int, ...] = (16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, *shape), dtype=np.uint8)


def _labels(n: int = 12) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % 3


NPZ_CASES = {
    "nchw": (
        dict(x_train=_images(shape=(3, 16, 16)), y_train=_labels()),
        "looks like NCHW; transpose to NHWC",
    ),
    "huge_label": (
        dict(x_train=_images(), y_train=np.array([0, 1] * 5 + [2, 1_000_000])),
        "labels go up to 1000000",
    ),
    "float_labels": (
        dict(x_train=_images(), y_train=_labels().astype(np.float32) + 0.5),
        "'y_train' is float32; labels must be integers",
    ),
    "short_classes": (
        dict(x_train=_images(), y_train=_labels(), classes=np.array(["a", "b"])),
        "'classes' has 2 names but the labels go up to 2",
    ),
    "empty": (
        dict(x_train=np.zeros((0, 16, 16, 3), np.uint8), y_train=np.zeros(0, np.int64)),
        "'x_train' is empty",
    ),
    "no_arrays": (dict(), "missing array 'x_train'"),
    "float_images": (
        dict(x_train=_images().astype(np.float32) / 255, y_train=_labels()),
        "'x_train' is float32, expected uint8",
    ),
    "label_count": (dict(x_train=_images(), y_train=_labels(5)), "'y_train' has shape (5,)"),
    "negative_label": (
        dict(x_train=_images(), y_train=_labels() - 1),
        "'y_train' has a negative label (-1)",
    ),
    "x_test_only": (
        dict(x_train=_images(), y_train=_labels(), x_test=_images(4)),
        "only one of 'x_test' and 'y_test'",
    ),
    "five_dims": (dict(x_train=_images()[:, None], y_train=_labels()), "expected N x H x W x C"),
    "test_size": (
        dict(x_train=_images(), y_train=_labels(), x_test=_images(4, (8, 8, 3)), y_test=_labels(4)),
        "both splits need the same H x W x C",
    ),
}


@pytest.mark.parametrize("case", sorted(NPZ_CASES))
def test_bad_npz(case, tmp_path, capsys):
    """Each npz mistake is one line naming the file and the problem (mix and train alike)."""
    arrays, needle = NPZ_CASES[case]
    path = _npz(tmp_path / f"{case}.npz", **arrays)
    out = tmp_path / "out"
    args = ["mix", "--method", "mixup", "--data", f"npz:{path}", "--out", out, "-q"]
    line = assert_fails(args, capsys, tmp_path, 2, needle, out=out)
    assert str(path) in line and not out.exists()


def test_npz_errors_name_the_file_in_train_too(tmp_path, capsys):
    path = _npz(tmp_path / "d.npz", x_train=_images(shape=(3, 16, 16)), y_train=_labels())
    out = tmp_path / "run"
    args = ["train", "--method", "mixup", "--data", f"npz:{path}", "--backbone", ARCH,
            "--out", out, "--epochs", 1]  # fmt: skip
    assert_fails(args, capsys, tmp_path, 2, f"{path}: array 'x_train'", out=out)


def test_unreadable_npz(tmp_path, capsys):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip file")
    out = tmp_path / "out"
    assert_fails(_mix(out)[:4] + [f"npz:{path}", "--out", out], capsys, tmp_path, 2,
                 f"{path}: unreadable .npz", out=out)  # fmt: skip


def test_good_npz_with_classes_covers_labels(tmp_path):
    """A valid file still loads: the class count is the `classes` array's length."""
    from samix_hub.data import load_data

    path = _npz(tmp_path / "ok.npz", x_train=_images(), y_train=_labels(),
                classes=np.array(["a", "b", "c", "d"]))  # fmt: skip
    src = load_data(f"npz:{path}")
    assert src.num_classes == 4 and src.class_names == ["a", "b", "c", "d"]
    assert src.channels == 3 and src.image_size == (16, 16)
