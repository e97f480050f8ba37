"""The generator that ships inside the package: ``builtin:cifar10-small``.

Built by ``export/build_builtin.py``. These tests check the committed folder as a user gets it:
its files and weights, both runtimes, masks on real images, and the commands that take it
(``info``, ``mix``, ``finetune``) offline. Real images: the CIFAR-10 subset of
``../shared/data`` when this checkout has it, else 32 x 32 tiles of scikit-learn's two bundled
photographs (never skipped).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import samix_hub
from samix_hub.errors import UserError
from samix_hub.export.cards import validate_card
from samix_hub.export.validate import GENERATOR, list_files, validate_artifact
from samix_hub.format.mixed import STATE_NAME
from samix_hub.format.repo_ref import BUILTIN_PREFIX, builtin_names
from samix_hub.hub.resolve import resolve_source

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import run_cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = "cifar10-small"
SRC = BUILTIN_PREFIX + NAME
FOLDER = ROOT / "samix_hub" / "builtin" / NAME
SHIPPED = {"config.json", "generator.safetensors", "onnx/generator.onnx", "README.md"}
CIFAR_NPZ = ROOT.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
#: Lowest spatial std of the masks accepted on the real images used here (MixUp: 0). The shipped
#: generator measured 0.262 on the 1,000 CIFAR test images (its config), 0.261 on the 128 used
#: here and 0.137 on the 120 photo tiles; after one epoch of mixer training it had 0.08 on CIFAR.
MIN_SPATIAL_STD = {"cifar10": 0.18, "photo tiles": 0.09}


def _photo_tiles() -> np.ndarray:
    """32 x 32 RGB tiles (uint8, NHWC) of scikit-learn's bundled photographs."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    tiles = []
    for photo in load_sample_images().images:
        h, w = photo.shape[:2]
        small = np.asarray(Image.fromarray(photo).resize((w // 2, h // 2), Image.BILINEAR))
        for y in range(0, small.shape[0] - 31, 32):
            for x in range(0, small.shape[1] - 31, 32):
                tiles.append(small[y : y + 32, x : x + 32])
    return np.stack(tiles)


@pytest.fixture(scope="module")
def real_images() -> tuple[torch.Tensor, str]:
    """128 real 32 x 32 RGB images in [0, 1] and where they came from."""
    if CIFAR_NPZ.is_file():
        with np.load(CIFAR_NPZ, allow_pickle=False) as z:
            x, what = z["x_test"][:128], "cifar10"
    else:
        x, what = _photo_tiles()[:128], "photo tiles"
    assert x.shape[1:] == (32, 32, 3) and len(x) >= 64
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0, what


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory: pytest.TempPathFactory, real_images) -> Path:
    """A 3-channel ``npz:`` data set of real images: 48 train, 16 test, 4 classes."""
    x = (real_images[0][:64] * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    y = np.arange(64, dtype=np.uint8) % 4
    path = tmp_path_factory.mktemp("builtin-data") / "small.npz"
    np.savez(path, x_train=x[:48], y_train=y[:48], x_test=x[48:], y_test=y[48:])
    return path


def _strings(value: object) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def test_shipped_folder_is_a_valid_small_generator():
    assert NAME in builtin_names()
    assert set(list_files(FOLDER)) == SHIPPED  # safetensors + ONNX only, no pickles, no extras
    assert sum(list_files(FOLDER).values()) < 5_000_000
    assert validate_artifact(FOLDER, "all") == GENERATOR
    validate_card(FOLDER / "README.md", "generator")
    cfg = json.loads((FOLDER / "config.json").read_text())
    assert (cfg["kind"], cfg["format_version"], cfg["in_chans"]) == (GENERATOR, 1, 3)
    assert cfg["backbone"] == "resnet18_cifar_w16" and cfg["input_size"] == [32, 32]
    assert cfg["mixer"]["calibration"] == "exact"
    prov = cfg["provenance"]
    assert prov["builtin"] == NAME and prov["encoder_weights"] == "teacher"
    assert prov["data"] == "npz:cifar10_subset_4k_1k.npz" and 0 < prov["teacher_top1"] <= 100
    stats = prov["mask_statistics"]
    for key in ("slope", "spatial_std", "spread"):
        assert math.isfinite(stats[key]), key
    assert abs(stats["slope"] - 1) < 0.01 and stats["spatial_std"] > MIN_SPATIAL_STD["cifar10"]
    # no local path of the machine that built it, in the config or the card
    card = (FOLDER / "README.md").read_text()
    assert not [s for s in _strings(cfg) if s.startswith(("/", "~")) or ":\\" in s]
    assert "/work/" not in card and "/home/" not in card and "/tmp/" not in card
    assert "python export/build_builtin.py" in card and f"{stats['spatial_std']:.3f}" in card
    assert f"{prov['teacher_top1']:.2f} %" in card
    weights = load_file(str(FOLDER / "generator.safetensors"))
    assert weights and all(torch.isfinite(t).all() for t in weights.values())


def test_torch_and_onnxruntime_agree(real_images):
    gen = samix_hub.load_generator(SRC, runtime="torch")
    ort = samix_hub.load_generator(SRC, runtime="onnx", device="cpu")
    assert gen.source.provenance() == {"builtin": NAME, "samix_hub": samix_hub.__version__}
    x = real_images[0][:32]
    g = torch.Generator().manual_seed(0)
    partner, lam = torch.randperm(32, generator=g), torch.rand(32, generator=g)
    with torch.no_grad():
        (mask_t, mixed_t), (mask_o, mixed_o) = gen(x, partner, lam), ort(x, partner, lam)
    assert float((mask_t - mask_o).abs().max()) <= 1e-4
    assert float((mixed_t - mixed_o).abs().max()) <= 1e-4


def test_masks_follow_lambda_and_are_spatial(real_images):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from mask_lambda import mask_statistics
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    gen = samix_hub.load_generator(SRC)
    x, what = real_images
    g = torch.Generator().manual_seed(1)
    partner = torch.randperm(len(x), generator=g)
    lam = 0.1 + 0.8 * torch.rand(len(x), generator=g)
    with torch.no_grad():
        mask = gen.masks(x, partner, lam)
    assert mask.shape == (len(x), 1, 32, 32) and mask.min() >= 0 and mask.max() <= 1
    assert float((mask.mean(dim=(1, 2, 3)) - lam).abs().max()) < 1e-3
    stats = mask_statistics(gen, x)
    assert abs(stats["slope"] - 1) < 1e-2, stats
    assert stats["spatial_std"] > MIN_SPATIAL_STD[what], (what, stats)


def test_info_shows_the_mask_statistics(capsys):
    stats = json.loads((FOLDER / "config.json").read_text())["provenance"]["mask_statistics"]
    code, out, err = run_cli(["info", SRC], capsys)
    assert code == 0, err
    assert f"source:        {SRC} (samix-hub {samix_hub.__version__})" in out
    assert "valid:         yes" in out
    line = next(s for s in out.splitlines() if s.startswith("mask stats:"))
    assert (
        f"slope {stats['slope']:.3f}" in line and f"spatial std {stats['spatial_std']:.3f}" in line
    )
    assert f"spread {stats['spread']:.3f}" in line
    code, out, _ = run_cli(["info", SRC, "--json", "--no-validate"], capsys)
    assert code == 0 and json.loads(out)["mask_statistics"]["slope"] == stats["slope"]
    code, out, _ = run_cli(["info"], capsys)  # no SRC: the built-in names
    assert code == 0 and SRC in out
    code, out, _ = run_cli(["info", "--json"], capsys)
    assert code == 0 and SRC in json.loads(out)["builtin"]
    for command in ("mix", "finetune"):
        code, out, _ = run_cli([command, "--help"], capsys)
        assert code == 0 and SRC in " ".join(out.split()), command


def test_unknown_builtin_is_one_clear_line(capsys):
    with pytest.raises(UserError, match=f"known: {SRC}"):
        resolve_source("builtin:nope")
    code, out, err = run_cli(["info", "builtin:nope"], capsys)
    assert code != 0 and not out
    assert len(err.strip().splitlines()) == 1 and "builtin:nope" in err and SRC in err
    code, _, err = run_cli(["mix", "--generator", "builtin:nope", "--data", "digits"] +
                           ["--out", "unused"], capsys)  # fmt: skip
    assert code != 0 and len(err.strip().splitlines()) == 1 and SRC in err


def test_mix_with_the_builtin(tmp_path, small_npz, capsys):
    # digits ship with scikit-learn as grey scans replicated to 3 channels (16 x 16): they mix
    out_dir = tmp_path / "mixed"
    args = ["mix", "--generator", SRC, "--data", "digits", "--out", out_dir, "--num", 16]
    args += ["--batch-size", 8, "--workers", 0, "--seed", 3, "-q"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert validate_artifact(out_dir, "all") == "samix-mixed-dataset"
    state = json.loads((out_dir / STATE_NAME).read_text())
    prov = state["settings"]["generator"]
    assert {k: prov[k] for k in ("builtin", "samix_hub")} == {
        "builtin": NAME,
        "samix_hub": samix_hub.__version__,
    }
    assert len(prov["sha256"]) == 64
    card = (out_dir / "README.md").read_text()
    assert f"`{SRC}` of samix-hub {samix_hub.__version__}" in card
    for text in (card, json.dumps(state)):
        assert str(FOLDER) not in text and "site-packages" not in text
    # 1-channel images: one clear line, nothing written
    with np.load(small_npz) as z:
        grey = {k: (z[k][..., :1] if k.startswith("x_") else z[k]) for k in z.files}
    np.savez(tmp_path / "grey.npz", **grey)
    args = ["mix", "--generator", SRC, "--data", f"npz:{tmp_path / 'grey.npz'}"]
    code, out, err = run_cli([*args, "--out", tmp_path / "g", "-q"], capsys)
    assert code != 0 and not out and len(err.strip().splitlines()) == 1, err
    assert "3-channel" in err and "1-channel" in err and not (tmp_path / "g" / "data").exists()


def test_finetune_with_the_builtin(tmp_path, small_npz, capsys):
    out = tmp_path / "ft"
    args = ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--generator", SRC]
    args += ["--data", f"npz:{small_npz}", "--epochs", 1, "--max-steps", 2, "--batch-size", 8]
    args += ["--workers", 0, "--out", out, "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "samix-p" and cfg["generator_source"] == SRC
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2 and (out / "checkpoints" / "last.pt").is_file()
    text = json.dumps(cfg)
    assert str(FOLDER) not in text and "site-packages" not in text


def test_finetune_records_the_builtin_provenance():
    from samix_hub.train.frozen import generator_provenance

    prov = resolve_source(SRC).provenance()
    assert generator_provenance(SRC, prov) == {"builtin": NAME, "samix_hub": samix_hub.__version__}
