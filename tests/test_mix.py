"""``samix-hub mix``: shard format, round trips, determinism, resume, ranks, preview, bad inputs.

References are computed independently of the writer: the source images are looked up again by
``index_a``/``index_b``, the tiny generator is re-run on each pair alone, and CutMix/MixUp masks
are checked against their definitions.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.data import MixedDataset, load_data
from samix_hub.export.generator import write_generator
from samix_hub.export.load import read_generator
from samix_hub.export.mixed_card import shard_info
from samix_hub.export.mixed_plan import source_order
from samix_hub.format.mixed import DATA_DIR
from samix_hub.mixing.masks import margin_fallback

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def gen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generator whose mixer weights are large enough to give non-flat masks."""
    cfg = GeneratorConfig(
        backbone="resnet18_cifar_w16", mixer=MixerConfig(in_channels=64), input_size=(16, 16)
    )
    torch.manual_seed(0)  # test set-up only; library code takes explicit generators
    gen = Generator(cfg)
    rng = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in gen.mixer.parameters():
            p.copy_(torch.randn(p.shape, generator=rng) * 0.3)
    return write_generator(gen, tmp_path_factory.mktemp("gen") / "generator")


@pytest.fixture(scope="module")
def digits() -> object:
    return load_data("digits").train


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / DATA_DIR).glob("*.parquet"))}


def source(ds: object, idx: int) -> tuple[torch.Tensor, int]:
    img, label = ds[idx]  # type: ignore[index]
    return img.float() / 255.0, label


def test_samix_round_trip(gen_dir: Path, digits: object, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mixed"
    args = ["mix", "--generator", gen_dir, "--data", "digits", "--out", out, "--num", 150]
    args += ["--shard-size", 64, "--batch-size", 32, "--save-masks", "--runtime", "torch", "-q"]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert stdout.strip() == str(out)
    names = sorted(p.name for p in (out / DATA_DIR).glob("*.parquet"))
    assert names == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    ds = MixedDataset(out)
    assert len(ds) == 150 and ds.class_names == [str(i) for i in range(10)]
    # One epoch of a seeded permutation: every image a is distinct, none is its own partner.
    np.testing.assert_array_equal(ds.index_a, source_order(0, 150, len(digits), 0))
    assert (ds.index_a != ds.index_b).all()
    pairs_a, pairs_b, masks = [], [], []
    for i in range(len(ds)):
        image, la, lb, lam = ds[i]
        a, ya = source(digits, int(ds.index_a[i]))
        b, yb = source(digits, int(ds.index_b[i]))
        assert (la, lb) == (ya, yb) and 0.0 < lam < 1.0
        mask = ds.mask(i)
        expected = mask * a + (1 - mask) * b
        assert (image - expected).abs().max() <= 0.5 / 255 + 1e-5  # 8-bit rounding only
        pairs_a.append(a), pairs_b.append(b), masks.append(mask)
    # Reference: the generator re-run on every pair, in batches unlike the writer's, then the
    # 0.08 margin fallback (docs/algorithm.md "SAMix^P").
    n, lam = len(ds), torch.from_numpy(ds.lam)
    images = torch.stack(pairs_a + pairs_b)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    ref = read_generator(gen_dir).masks(images, partner, torch.cat([lam, lam]))[:n]
    ref = margin_fallback(ref, lam)
    saved = torch.stack(masks)
    torch.testing.assert_close(saved, ref, atol=2e-5, rtol=0)
    assert ((lam <= 0.08) | (lam >= 0.92)).any()  # this seed exercises the fallback
    assert saved.std(dim=(1, 2, 3)).mean() > 1e-3  # masks are not flat
    # datasets decodes the same content
    import datasets

    hf = datasets.load_dataset("parquet", data_dir=str(out))["train"]
    assert len(hf) == 150 and isinstance(hf.features["image"], datasets.Image)
    for i in (0, 77, 149):
        row = hf[i]
        pixels = torch.from_numpy(np.array(row["image"])).permute(2, 0, 1).float() / 255
        torch.testing.assert_close(pixels, ds[i][0], atol=0, rtol=0)
        assert (row["label_a"], row["label_b"]) == (int(ds.label_a[i]), int(ds.label_b[i]))
        assert row["lam"] == pytest.approx(float(ds.lam[i]))
    from samix_hub.export.validate import validate_artifact

    assert validate_artifact(out) == "samix-mixed-dataset"
    card = (out / "README.md").read_text()
    from samix_hub.fileio import folder_sha256

    assert folder_sha256(gen_dir, ["config.json", "generator.safetensors"]) in card
    assert "150 mixed" in card and "α = 2.0" in card and "| seed | 0 |" in card


@pytest.mark.parametrize("method", ["mixup", "cutmix"])
def test_mixup_cutmix_masks_exact(method: str, digits: object, tmp_path: Path, capsys) -> None:
    out = tmp_path / method
    args = ["mix", "--method", method, "--data", "digits", "--out", out, "--num", 96]
    args += ["--batch-size", 16, "--save-masks", "--seed", 3, "-q"]
    if method == "cutmix":
        args += ["--alpha", 1.0]
    assert run_cli(args, capsys)[0] == 0
    ds = MixedDataset(out)
    for i in range(len(ds)):
        image, _, _, lam = ds[i]
        mask = ds.mask(i)[0]
        if method == "mixup":
            assert torch.all(mask == torch.tensor(lam, dtype=torch.float32))
        else:
            assert set(mask.unique().tolist()) <= {0.0, 1.0}
            rows, cols = torch.nonzero(mask == 0, as_tuple=True)
            if len(rows):  # the pasted region is one full rectangle
                box = mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
                assert torch.all(box == 0)
            assert float(mask.mean()) == pytest.approx(lam, abs=1e-6)
        a, _ = source(digits, int(ds.index_a[i]))
        b, _ = source(digits, int(ds.index_b[i]))
        assert (image - (mask * a + (1 - mask) * b)).abs().max() <= 0.5 / 255 + 1e-5
    if method == "cutmix":
        assert (ds.lam < 1).sum() > 10  # boxes were actually pasted


def test_mask_adjust_mean_equals_lam(gen_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "adj"
    args = ["mix", "--generator", gen_dir, "--data", "digits", "--out", out, "--num", 64]
    args += ["--save-masks", "--mask-adjust", 1.0, "--runtime", "torch", "-q"]
    assert run_cli(args, capsys)[0] == 0
    ds = MixedDataset(out)
    means = np.array([float(ds.mask(i).mean()) for i in range(len(ds))])
    np.testing.assert_allclose(means, ds.lam, atol=1e-4)


def test_deterministic_across_workers(gen_dir: Path, tmp_path: Path, capsys) -> None:
    base = ["mix", "--generator", gen_dir, "--data", "digits", "--num", 120, "--shard-size", 50]
    base += ["--batch-size", 16, "--save-masks", "--runtime", "torch", "--seed", 5, "-q"]
    outs = []
    for workers in (0, 3):
        out = tmp_path / f"w{workers}"
        assert run_cli([*base, "--out", out, "--workers", workers], capsys)[0] == 0
        outs.append(shard_bytes(out))
    assert len(outs[0]) == 3 and outs[0] == outs[1]
    other = tmp_path / "seed6"
    assert run_cli([*base[:-3], "--seed", 6, "-q", "--out", other], capsys)[0] == 0
    assert shard_bytes(other) != outs[0]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_sigkill_then_resume(gen_dir: Path, tmp_path: Path, capsys) -> None:
    out, ref = tmp_path / "killed", tmp_path / "ref"
    args = ["mix", "--generator", gen_dir, "--data", "digits", "--num", 2000]
    args += ["--shard-size", 100, "--batch-size", 50, "--runtime", "torch", "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "samix_hub", *map(str, args), "--out", str(out)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while len(list((out / DATA_DIR).glob("*.parquet"))) < 3 and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = shard_bytes(out)
    assert 3 <= len(before) < 20 and not (out / "README.md").exists()
    code, _, err = run_cli([*args, "--out", out], capsys)  # resume (the default)
    assert code == 0, err
    assert not list((out / DATA_DIR).glob(".*.tmp"))
    after = shard_bytes(out)
    assert all(after[k] == v for k, v in before.items())  # finished shards were kept
    assert run_cli([*args, "--out", ref], capsys)[0] == 0
    assert after == shard_bytes(ref)  # no duplicate, no missing sample
    ds = MixedDataset(out)
    np.testing.assert_array_equal(ds.index_a, source_order(0, 2000, 1437, 0))
    assert (out / "README.md").is_file()


@pytest.mark.slow
def test_torchrun_ranks_write_their_shards(tmp_path: Path, capsys) -> None:
    args = ["mix", "--method", "mixup", "--data", "digits", "--shard-size", 50, "-q"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert run_cli([*args, "--num", 300, "--out", single], capsys)[0] == 0
    # torchrun's own parser would take --num for --numa-binding: pass it by environment.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    proc = subprocess.run(
        [*cmd, "-m", "samix_hub", *map(str, args), "--out", str(multi)],
        env={**_env(), "SAMIX_MIX_NUM": "300"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(multi)  # rank 0 only prints the folder
    assert shard_bytes(multi) == shard_bytes(single)
    assert "300 mixed" in (multi / "README.md").read_text()
    assert (multi / "README.md").read_text() == (single / "README.md").read_text()


def test_preview_grid(gen_dir: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from samix_hub.mixing import preview as pv

    out, png = tmp_path / "m", tmp_path / "grid.png"
    args = ["mix", "--generator", gen_dir, "--data", "digits", "--out", out, "--num", 40]
    args += ["--preview", png, "--runtime", "torch", "-q"]
    assert run_cli(args, capsys)[0] == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        im.verify()
    grid = np.asarray(Image.open(png).convert("RGB"))
    s = pv.cell_scale(16, 16)
    assert s == 4
    expected_w = pv.LABEL_WIDTH + pv.PAD + 4 * (16 * s + pv.PAD)
    expected_h = pv.HEADER + pv.PAD + 8 * (16 * s + pv.PAD)
    assert grid.shape == (expected_h, expected_w, 3)
    ds = MixedDataset(out)
    for row in (0, 7):  # the grid's image a and mixed cells are the data set's first rows
        a, _ = source(load_data("digits").train, int(ds.index_a[row]))
        for col, img in ((0, a), (3, ds[row][0])):
            x, y = pv.cell_origin(row, col, 16, 16)
            cell = grid[y : y + 16 * s, x : x + 16 * s]
            ref = (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            np.testing.assert_array_equal(cell, ref.repeat(s, 0).repeat(s, 1))


def _folder_data(root: Path, bad: bool) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (root / "train" / c).mkdir(parents=True)
        for i in range(6):
            arr = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / "train" / c / f"{i}.png")
    if bad:
        (root / "train" / "dog" / "3.png").write_bytes(b"not a png at all")
    return root


def test_unreadable_image_stop_or_skip(tmp_path: Path, capsys) -> None:
    data = _folder_data(tmp_path / "imgs", bad=True)
    base = ["mix", "--method", "mixup", "--data", f"folder:{data}", "--batch-size", 4, "-q"]
    code, _, err = run_cli([*base, "--out", tmp_path / "a"], capsys)
    assert code == 2 and str(data / "train" / "dog" / "3.png") in err
    assert len(err.strip().splitlines()) == 1
    code, _, err = run_cli([*base, "--out", tmp_path / "b", "--on-error", "skip"], capsys)
    assert code == 0, err
    ds = MixedDataset(tmp_path / "b")
    bad_index = 6 + 3  # sorted: cat/0..5, dog/0..5
    assert bad_index not in set(ds.index_a) | set(ds.index_b)
    assert len(ds) == 12 - 2  # the bad image's two pairs (as a and as b) were skipped
    card = (tmp_path / "b" / "README.md").read_text()
    assert "2 skipped" in card and "3.png" in card and str(tmp_path) not in card
    for shard in (tmp_path / "b" / "data").glob("*.parquet"):  # published too: no local path
        info = shard_info(shard)
        assert info is not None and info["errors"] and str(tmp_path) not in json.dumps(info)


def _npz(path: Path, n: int, channels: int) -> Path:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (n, 16, 16, channels), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(n) % 2, x_test=x, y_test=np.arange(n) % 2)
    return path


def test_bad_inputs(gen_dir: Path, tmp_path: Path, capsys) -> None:
    grey = _npz(tmp_path / "grey.npz", 20, 1)
    args = ["mix", "--generator", gen_dir, "--data", f"npz:{grey}", "--out", tmp_path / "o"]
    code, _, err = run_cli([*args, "--runtime", "torch"], capsys)
    assert code == 2 and "3-channel" in err and "1-channel" in err
    one = _npz(tmp_path / "one.npz", 1, 3)
    code, _, err = run_cli(
        ["mix", "--method", "mixup", "--data", f"npz:{one}", "--out", tmp_path / "x"], capsys
    )
    assert code == 2 and "too few" in err
    three = _npz(tmp_path / "three.npz", 3, 3)
    mix3 = ["mix", "--method", "mixup", "--data", f"npz:{three}", "--out", tmp_path / "y"]
    assert run_cli([*mix3, "--num", 7], capsys)[0] == 2
    assert run_cli([*mix3, "--num", 6, "-q"], capsys)[0] == 0
    code, _, err = run_cli([*mix3, "--num", 6, "--seed", 1, "-q"], capsys)
    assert code == 2 and "other settings (seed)" in err
    assert run_cli([*mix3, "--num", 6, "--seed", 1, "--no-resume", "-q"], capsys)[0] == 0
    state = json.loads((tmp_path / "y" / ".samix-mix.json").read_text())
    assert state["settings"]["seed"] == 1
    foreign = tmp_path / "foreign"
    (foreign / DATA_DIR).mkdir(parents=True)
    (foreign / DATA_DIR / "x.parquet").write_bytes(b"")
    code, _, err = run_cli(
        ["mix", "--method", "mixup", "--data", "digits", "--out", foreign], capsys
    )
    assert code == 2 and "not a `mix` output" in err
    code, _, err = run_cli(["mix", "--data", "digits", "--out", tmp_path / "z"], capsys)
    assert code == 2 and "--generator" in err


def test_help_has_examples() -> None:
    from click.testing import CliRunner

    from samix_hub.cli.main import cli

    res = CliRunner().invoke(cli, ["mix", "--help"])
    assert res.exit_code == 0 and "Examples" in res.output and "--on-error" in res.output


def test_jpeg_and_resize(digits: object, tmp_path: Path, capsys) -> None:
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    out = tmp_path / "j"
    args = ["mix", "--method", "mixup", "--data", "digits", "--out", out, "--num", 8]
    assert run_cli([*args, "--image-format", "jpeg", "-q"], capsys)[0] == 0
    with Image.open(io.BytesIO(MixedDataset(out).image_bytes(0))) as im:
        assert im.format == "JPEG" and im.size == (16, 16)
    small = tmp_path / "small"
    args = ["mix", "--method", "mixup", "--data", "digits", "--out", small, "--num", 8]
    assert run_cli([*args, "--image-size", "12x10", "-q"], capsys)[0] == 0
    ds = MixedDataset(small)
    for i in range(len(ds)):
        image, _, _, lam = ds[i]
        a, b = (
            TF.resize(digits[int(j)][0], [12, 10], antialias=True).float() / 255
            for j in (ds.index_a[i], ds.index_b[i])
        )  # type: ignore[index]
        assert image.shape == (3, 12, 10)
        assert (image - (lam * a + (1 - lam) * b)).abs().max() <= 0.5 / 255 + 1e-5


@pytest.mark.slow
def test_onnx_runtime_matches_torch(gen_dir: Path, tmp_path: Path, capsys) -> None:
    from samix_hub.export.onnx import export_generator_onnx

    folder = tmp_path / "gen"
    gen = read_generator(gen_dir)
    write_generator(gen, folder)
    export_generator_onnx(gen, folder / "onnx" / "generator.onnx")
    base = ["mix", "--generator", folder, "--data", "digits", "--num", 64, "--save-masks", "-q"]
    assert run_cli([*base, "--out", tmp_path / "onnx"], capsys)[0] == 0  # auto picks onnx
    assert run_cli([*base, "--out", tmp_path / "torch", "--runtime", "torch"], capsys)[0] == 0
    card = (tmp_path / "onnx" / "README.md").read_text()
    assert "runtime onnx" in card
    a, b = MixedDataset(tmp_path / "onnx"), MixedDataset(tmp_path / "torch")
    np.testing.assert_array_equal(a.index_b, b.index_b)
    np.testing.assert_array_equal(a.lam, b.lam)
    for i in range(len(a)):
        torch.testing.assert_close(a.mask(i), b.mask(i), atol=1e-4, rtol=0)
        assert (a[i][0] - b[i][0]).abs().max() <= 1 / 255 + 1e-6


@pytest.mark.hub
@pytest.mark.slow
def test_hub_generator_provenance_in_card(
    gen_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from huggingface_hub import constants

    sys.path.insert(0, str(REPO / "tests"))
    from fakehub import FakeHub

    from samix_hub.hub.transfer import push

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    token = "hf_fakehubMixToken0123456789"
    folder = tmp_path / "gen"
    shutil.copytree(gen_dir, folder)
    card = "---\nlibrary_name: samix-hub\nlicense: apache-2.0\n---\n\nA tiny test generator.\n"
    (folder / "README.md").write_text(card)  # push requires a card body
    with FakeHub(token=token) as hub:
        _, sha = push(folder, "me/tiny-gen", endpoint=hub.url, token=token)
        env = {k: v for k, v in _env().items() if not k.startswith(("HF_", "SAMIX_"))}
        env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": token}
        env |= {"HF_HUB_DISABLE_XET": "1"}
        out = tmp_path / "mixed"
        args = ["mix", "--generator", "me/tiny-gen", "--runtime", "torch", "--data", "digits"]
        proc = subprocess.run(
            [sys.executable, "-m", "samix_hub", *args, "--num", "32", "--out", str(out), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = (out / "README.md").read_text()
    assert f"`me/tiny-gen` at commit `{sha}`" in card and token not in card
    state = json.loads((out / ".samix-mix.json").read_text())
    assert state["settings"]["generator"]["commit"] == sha
