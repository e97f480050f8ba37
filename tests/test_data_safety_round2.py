"""Data safety, round two: the one write guard (``fileio/guard.py``), locks that die with their
process, and the refusals that keep a command from destroying what it did not write.

Every case runs the real command in-process and checks the exit code, a one-line message
without a traceback, and that nothing outside the command's own output changed (a digest of
every file and link under the test folder before and after).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from bad_input_helpers import (
    assert_fails,
    no_network_fixture,  # noqa: F401  (fixture no_network)
    tiny_fixture,  # noqa: F401  (fixture tiny)
)
from cli_helpers import run_cli
from PIL import Image
from test_export import ARCH, make_run, openmixup_checkpoint, reference_generator

from samix_hub.errors import OutputError
from samix_hub.fileio.locking import LOCK_NAME, folder_lock
from samix_hub.format.artifact import MIXED_STATE_NAME

MIX = ["mix", "--method", "mixup", "--data", "digits", "--num", 8, "--shard-size", 4]
MIX += ["--batch-size", 4, "--workers", 0, "-q"]
TRAIN = ["train", "--method", "vanilla", "--data", "digits", "--backbone", ARCH]
TRAIN += ["--epochs", 1, "--workers", 0, "--batch-size", 32, "--max-steps", 1, "-q"]

#: Holds ``folder_lock(argv[1])`` in a separate process until killed; prints "locked".
HOLD = (
    "import sys, time\n"
    "from samix_hub.fileio.locking import folder_lock\n"
    "with folder_lock(sys.argv[1], 'demo'):\n"
    "    print('locked', flush=True)\n"
    "    time.sleep(600)\n"
)


def hold_lock_elsewhere(folder: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def npz_digits(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(12, 8, 8, 3), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(12) % 3)
    return path


# ---------------------------------------------------------------------------------- --preview
def test_preview_never_overwrites_a_file_it_did_not_write(tmp_path: Path, capsys) -> None:
    data = npz_digits(tmp_path / "data.npz")
    mixed = tmp_path / "mixed"
    assert run_cli([*MIX, "--out", mixed], capsys)[0] == 0
    photo = tmp_path / "photo.png"
    Image.new("RGB", (4, 4), (200, 10, 10)).save(photo)  # a PNG, but not one of ours
    shard = next((mixed / "data").glob("*.parquet"))
    npz_mix = ["mix", "--method", "mixup", "--data", f"npz:{data}", "--num", 4]
    npz_mix += ["--shard-size", 4, "--workers", 0, "-q"]
    cases = [
        (npz_mix + ["--out", tmp_path / "m2", "--preview", data], data),  # the input
        ([*MIX, "--out", mixed, "--preview", shard], shard),  # a finished shard of --out
        ([*MIX, "--out", tmp_path / "m3", "--preview", photo], photo),  # the user's PNG
        ([*MIX, "--out", tmp_path / "m4", "--preview", mixed / "README.md"], mixed),
    ]
    for args, needle in cases:
        assert_fails(args, capsys, tmp_path, 2, str(needle))
    grid = tmp_path / "grid.png"
    assert run_cli([*MIX, "--out", tmp_path / "m5", "--preview", grid], capsys)[0] == 0
    first = grid.stat().st_mtime_ns
    code, _, err = run_cli([*MIX, "--out", tmp_path / "m5", "--preview", grid], capsys)
    assert code == 0, err  # a grid it wrote itself is replaced
    assert grid.stat().st_mtime_ns >= first


def test_preview_refuses_the_generators_own_config(tiny: Path, tmp_path: Path, capsys) -> None:
    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    args = ["mix", "--generator", gen, "--data", "digits", "--num", 4, "--runtime", "torch"]
    args += ["--workers", 0, "-q", "--out", tmp_path / "m", "--preview", gen / "config.json"]
    assert_fails(args, capsys, tmp_path, 2, str(gen / "config.json"))


def test_preview_link_is_refused(tmp_path: Path, capsys) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("not a picture\n")
    (tmp_path / "grid.png").symlink_to(victim)
    args = [*MIX, "--out", tmp_path / "m", "--preview", tmp_path / "grid.png"]
    assert_fails(args, capsys, tmp_path, 2, "symbolic link")


# ---------------------------------------------------------------------------------- links
@pytest.mark.parametrize("command", ["mix", "train"])
def test_lock_file_link_is_never_followed(tmp_path: Path, capsys, command: str) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    args = [*(MIX if command == "mix" else TRAIN), "--out", out]
    assert_fails(args, capsys, tmp_path, 2, str(out / LOCK_NAME))
    assert victim.read_text() == "precious\n"


def test_no_resume_does_not_follow_a_data_link(tmp_path: Path, capsys) -> None:
    mixed, other = tmp_path / "mixed", tmp_path / "other"
    assert run_cli([*MIX, "--out", mixed], capsys)[0] == 0
    other.mkdir()
    shutil.move(str(mixed / "data"), str(other / "data"))  # same shard names, another folder
    (mixed / "data").symlink_to(other / "data", target_is_directory=True)
    assert_fails([*MIX, "--out", mixed, "--no-resume"], capsys, tmp_path, 2, "symbolic link")
    assert len(list((other / "data").glob("*.parquet"))) == 2


def test_out_link_is_refused(tmp_path: Path, capsys) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    assert_fails([*TRAIN, "--out", tmp_path / "link"], capsys, tmp_path, 2, "symbolic link")


# ---------------------------------------------------------------------------------- --force
def test_export_force_never_deletes_its_own_input(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "runs")
    out = tmp_path / "o"
    shutil.copytree(run, out / "backbone")
    args = ["export", out / "backbone", "--out", out, "--what", "backbone", "--force"]
    assert_fails([*args, "--no-onnx", "-q"], capsys, tmp_path, 2, "input")
    assert (out / "backbone" / "checkpoints" / "last.pt").is_file()


def test_export_force_never_deletes_a_foreign_file(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "runs")
    out = tmp_path / "o"
    args = ["export", run, "--out", out, "--no-onnx", "-q"]
    assert run_cli(args, capsys)[0] == 0
    (out / "generator" / "notes.txt").write_text("mine\n")
    assert_fails([*args, "--force"], capsys, tmp_path, 2, "notes.txt")
    (out / "generator" / "notes.txt").unlink()
    code, _, err = run_cli([*args, "--force"], capsys)
    assert code == 0, err  # a folder of its own files is replaced


def test_import_openmixup_force_never_deletes_the_checkpoint(tmp_path: Path, capsys) -> None:
    gen = reference_generator(make_run(tmp_path / "runs"))
    out = tmp_path / "gen"
    out.mkdir()
    ckpt = out / "samix.pth"
    torch.save(openmixup_checkpoint(gen), ckpt)
    args = ["import-openmixup", ckpt, "--backbone", ARCH, "--out", out, "--force", "--no-onnx"]
    assert_fails(args, capsys, tmp_path, 2, "holds the input")
    assert ckpt.is_file()


# ---------------------------------------------------------------------------------- wrong --out
def test_train_and_finetune_refuse_a_mixed_data_set(tiny: Path, tmp_path: Path, capsys) -> None:
    mixed = Path(shutil.copytree(tiny / "mixed", tmp_path / "mixed"))
    assert_fails([*TRAIN, "--out", mixed], capsys, tmp_path, 2, "mixed data set")
    ft = ["finetune", "--backbone", ARCH, "--no-pretrained", "--method", "mixed", "--mixed"]
    ft += [mixed, "--data", "digits", *TRAIN[7:]]
    assert_fails([*ft, "--out", mixed], capsys, tmp_path, 2, "mixed data set")
    assert_fails([*TRAIN, "--out", mixed / "run"], capsys, tmp_path, 2, "inside the mixed")
    assert (mixed / MIXED_STATE_NAME).is_file()


# ---------------------------------------------------------------------------------- locks
def test_demo_takes_the_lock(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / ".samix-demo").write_text("an earlier demo\n")
    (out / "summary.json").write_text("{}\n")
    proc = hold_lock_elsewhere(out)
    try:
        assert_fails(["demo", "--fast", "-q", "--out", out], capsys, tmp_path, 1, "in use")
    finally:
        proc.kill()
        proc.wait()
    assert (out / "summary.json").read_text() == "{}\n"


def test_same_process_cannot_lock_twice(tmp_path: Path) -> None:
    with folder_lock(tmp_path / "x"):
        with pytest.raises(OutputError, match="in use"), folder_lock(tmp_path / "x"):
            pass
    with folder_lock(tmp_path / "y", shared=True), folder_lock(tmp_path / "y", shared=True):
        pass  # the ranks of one job share it
    with folder_lock(tmp_path / "y"):
        pass  # and it is free again


def test_lock_dies_with_the_process_not_with_its_workers(tmp_path: Path) -> None:
    """A killed run's forked children (DataLoader workers) outlive it for a while; a record
    lock is not inherited by them, so the folder is free at once."""
    out = tmp_path / "run"
    script = (
        "import os, sys, time\n"
        "from samix_hub.fileio.locking import folder_lock\n"
        "with folder_lock(sys.argv[1]):\n"
        "    child = os.fork()\n"
        "    if child == 0:\n"
        "        time.sleep(120)\n"
        "        os._exit(0)\n"
        "    print(child, flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())  # the child keeps the pipe open: read one line
    assert proc.wait(timeout=60) == -9
    try:
        os.kill(child, 0)  # the "worker" still runs and still has the lock file open
        start = time.monotonic()
        with folder_lock(out):
            pass
        assert time.monotonic() - start < 1
    finally:
        os.kill(child, signal.SIGKILL)


# ---------------------------------------------------------------------------------- secrets
SECRET = "hf_roundTwoSecretToken0123456789"
PUSH_OFFLINE = ["--endpoint", "http://127.0.0.1:9", "--token", SECRET]  # never contacted


@pytest.fixture(name="hub_cache")
def hub_cache_fixture(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("cache")))


def test_push_never_follows_a_link_out_of_the_folder(
    tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    (tmp_path / "private.txt").write_text("my diary\n")
    (gen / "notes.txt").symlink_to(tmp_path / "private.txt")
    args = ["push", gen, "me/gen", *PUSH_OFFLINE]
    assert_fails(args, capsys, tmp_path, 1, "outside")
    (gen / "notes.txt").unlink()
    (gen / "extra").symlink_to(tmp_path, target_is_directory=True)
    assert_fails(args, capsys, tmp_path, 1, "outside")
    assert not no_network


@pytest.mark.parametrize(
    "where",
    ["split by a line break", "split by spaces", "file name", "-m", "--tag", "--revision"],
)
def test_push_finds_the_token_everywhere(
    where: str, tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    args = ["push", gen, "me/gen", *PUSH_OFFLINE]
    needle = "contains your Hub token"
    if where == "split by a line break":
        with open(gen / "README.md", "a") as f:
            f.write(f"\nkey: {SECRET[:10]}\n  {SECRET[10:]}\n")
    elif where == "split by spaces":
        (gen / "notes.txt").write_text(" ".join(SECRET[i : i + 4] for i in range(0, 32, 4)))
    elif where == "file name":
        (gen / f"{SECRET}.txt").write_text("x\n")
    else:
        args += [where, f"release {SECRET}" if where == "-m" else SECRET]
    assert_fails(args, capsys, tmp_path, 1, needle)
    assert not no_network


def test_url_credentials_are_never_printed(tmp_path: Path, capsys, hub_cache) -> None:
    args = ["pull", "me/gen", "--endpoint", "http://someone:hunter2@127.0.0.1:9"]
    line = assert_fails([*args, "--dir", tmp_path / "d"], capsys, tmp_path, 1, "127.0.0.1:9")
    assert "hunter2" not in line and "someone" not in line


# ---------------------------------------------------------------------------------- tracebacks
def nest_config(folder: Path, depth: int = 100_000) -> None:
    """A config.json nested ``depth`` levels deep (json.loads would hit RecursionError)."""
    (folder / "config.json").write_text("[" * depth + "]" * depth)


@pytest.mark.parametrize("command", ["info", "push", "mix"])
def test_deeply_nested_config_is_one_line(
    command: str, tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    nest_config(gen)
    args = {
        "info": ["info", gen],
        "push": ["push", gen, "me/gen", *PUSH_OFFLINE],
        "mix": ["mix", "--generator", gen, "--data", "digits", "--runtime", "torch", "--out",
                tmp_path / "m", "-q"],
    }[command]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 1, "nested deeper than")
    assert str(gen / "config.json") in line
    assert not no_network


def _limit_file_size() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_export_under_ulimit_f_is_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs")
    out = tmp_path / "o"
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    proc = subprocess.run(
        [sys.executable, "-m", "samix_hub", "export", str(run), "--out", str(out), "--no-onnx",
         "-q"],
        capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(out / "generator") in lines[0] and "too large" in lines[0]
    assert not list(out.glob(".*partial*")) and not (out / "generator").exists()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before


def test_disk_full_during_export_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError(
            "Error while serializing: I/O error: No space left on device (os error 28)"
        )

    run = make_run(tmp_path / "runs")
    monkeypatch.setattr("samix_hub.export.generator.save_file", full)  # the library's function
    args = ["export", run, "--out", tmp_path / "o", "--no-onnx", "-q"]
    line = assert_fails(args, capsys, tmp_path, 1, "no space left", out=tmp_path / "o")
    assert str(tmp_path / "o" / "generator") in line
    assert not (tmp_path / "o" / "generator").exists()


def forged_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width x height`` RGB pixels (a few bytes on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + data)
    return path


def image_folder(root: Path, bomb: tuple[int, int]) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        for i in range(4):
            pixels = rng.integers(0, 255, size=(16, 16, 3), dtype=np.uint8)
            (root / "train" / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / "train" / cls / f"{i}.png")
    forged_png(root / "train" / "b" / "huge.png", *bomb)
    return root


@pytest.mark.parametrize("size", [(30000, 30000), (6000, 6000)])
def test_image_bomb_in_a_folder_data_set(size, tmp_path: Path, capsys) -> None:
    data = image_folder(tmp_path / "imgs", size)
    mix = ["mix", "--method", "mixup", "--data", f"folder:{data}", "--num", 40]
    mix += ["--shard-size", 40, "--workers", 0, "-q"]
    bomb = data / "train" / "b" / "huge.png"
    assert_fails(
        [*mix, "--out", tmp_path / "m1"], capsys, tmp_path, 2, str(bomb), out=tmp_path / "m1"
    )
    code, _, err = run_cli([*mix, "--out", tmp_path / "m2", "--on-error", "skip"], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert f"{bomb}" in err and "skipped" in err
    assert (tmp_path / "m2" / "README.md").is_file()
    train = ["train", "--method", "vanilla", "--data", f"folder:{data}", "--backbone", ARCH]
    train += ["--epochs", 1, "--workers", 0, "--batch-size", 9, "-q"]
    assert_fails(
        [*train, "--out", tmp_path / "r"], capsys, tmp_path, 2, str(bomb), out=tmp_path / "r"
    )


# ---------------------------------------------------------------------------------- mixed rows
def damage_rows(mixed: Path, column: str, value: object) -> Path:
    """Set ``column`` of the first row of the first shard to ``value`` (metadata kept)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    shard = sorted((mixed / "data").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    if column == "image":
        buf = io.BytesIO()
        forged_png(tmp := mixed.parent / "bomb.png", 30000, 30000)
        buf.write(tmp.read_bytes())
        tmp.unlink()
        images = table.column("image").to_pylist()
        images[0] = {**images[0], "bytes": buf.getvalue()}
        values = pa.array(images, type=table.schema.field("image").type)
    else:
        values = table.column(column).to_pylist()
        values[0] = value
        values = pa.array(values, type=table.schema.field(column).type)
    table = table.set_column(table.schema.get_field_index(column), column, values)
    pq.write_table(table, shard)
    return shard


ROW_CASES = [("label_a", 999999, "label_a 999999"), ("label_b", -1, "label_b -1"),
             ("lam", 1.5, "lam 1.5"), ("lam", float("nan"), "lam nan"),
             ("image", None, "row 0: image")]  # fmt: skip


@pytest.mark.parametrize(("column", "value", "needle"), ROW_CASES)
def test_push_range_checks_every_mixed_row(
    column, value, needle, tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    mixed = Path(shutil.copytree(tiny / "mixed", tmp_path / "mixed"))
    damage_rows(mixed, column, value)
    args = ["push", mixed, "me/mixed", "--repo-type", "dataset", *PUSH_OFFLINE]
    line = assert_fails(args, capsys, tmp_path, 1, needle)
    assert "row 0" in line
    assert not no_network


def test_finetune_mixed_with_an_out_of_range_label(tiny: Path, tmp_path: Path, capsys) -> None:
    mixed = Path(shutil.copytree(tiny / "mixed", tmp_path / "mixed"))
    damage_rows(mixed, "label_b", 999999)
    ft = ["finetune", "--backbone", ARCH, "--no-pretrained", "--method", "mixed", "--mixed"]
    ft += [mixed, "--data", "digits", *TRAIN[7:], "--out", tmp_path / "run"]
    assert_fails(ft, capsys, tmp_path, 1, "label_b 999999", out=tmp_path / "run")


# ---------------------------------------------------------------------------------- values
def test_one_pixel_images_are_refused(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(20, 1, 1, 3), dtype=np.uint8)
    np.savez(tmp_path / "one.npz", x_train=x, y_train=np.arange(20) % 2)
    train = ["train", "--method", "vanilla", "--data", f"npz:{tmp_path / 'one.npz'}"]
    train += ["--backbone", ARCH, *TRAIN[7:], "--out", tmp_path / "run"]
    assert_fails(train, capsys, tmp_path, 2, "1x1 pixels")
    assert not (tmp_path / "run").exists()


def test_eval_refuses_nan_weights(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli([*TRAIN, "--out", run], capsys)[0] == 0
    ckpt = run / "checkpoints" / "last.pt"
    state = torch.load(ckpt, weights_only=True)
    for name in ("model", "ema"):
        for tensor in (state.get(name) or {}).values():
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
    torch.save(state, ckpt)
    assert_fails(["eval", run, "--data", "digits"], capsys, tmp_path, 1, "NaN")
    teach = ["train", "--method", "samix", "--teacher", run, "--data", "digits", *TRAIN[7:]]
    assert_fails(
        [*teach, "--out", tmp_path / "gen"], capsys, tmp_path, 2, "NaN", out=tmp_path / "gen"
    )


def test_huge_alpha_gives_even_mixes(tmp_path: Path, capsys) -> None:
    from samix_hub.data.mixed import MixedDataset

    out = tmp_path / "m"
    code, _, err = run_cli([*MIX, "--alpha", "1e308", "--out", out], capsys)
    assert code == 0, err
    lam = MixedDataset(out).lam
    assert np.allclose(lam, 0.5), lam  # Beta(α, α) concentrates at 0.5 as α grows


# ---------------------------------------------------------------------------------- publish
@pytest.fixture(scope="module", name="onnx_release")
def onnx_release_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generator/ and backbone/ exported with their ONNX graphs."""
    from samix_hub.export.generator import export_run

    root = tmp_path_factory.mktemp("onnx-release")
    export_run(make_run(root), root / "out")
    return root / "out"


def scramble_onnx(graph: Path) -> None:
    """Replace every floating-point initializer (the graph's weights) with random values."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(graph))
    rng = np.random.default_rng(0)
    for i, tensor in enumerate(model.graph.initializer):
        arr = numpy_helper.to_array(tensor)
        if arr.dtype.kind == "f" and arr.size > 1:
            noise = rng.standard_normal(arr.shape).astype(arr.dtype)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(noise, tensor.name))
    onnx.save(model, str(graph))


@pytest.mark.parametrize("kind", ["generator", "backbone"])
def test_push_runs_the_onnx_graph_against_the_weights(
    kind: str, onnx_release: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    folder = Path(shutil.copytree(onnx_release / kind, tmp_path / kind))
    graph = folder / "onnx" / ("generator.onnx" if kind == "generator" else "model.onnx")
    scramble_onnx(graph)
    args = ["push", folder, f"me/{kind}", *PUSH_OFFLINE]
    assert_fails(args, capsys, tmp_path, 1, "computes another function")
    code, stdout, err = run_cli(["info", folder, "--json"], capsys)
    assert '"valid": false' in stdout and "computes another function" in stdout, stdout + err
    assert not no_network


def test_push_refuses_onnx_metadata_that_contradicts_the_config(
    onnx_release: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    from samix_hub.export.onnx_metadata import read_metadata, write_metadata

    folder = Path(shutil.copytree(onnx_release / "generator", tmp_path / "generator"))
    graph = folder / "onnx" / "generator.onnx"
    write_metadata(graph, {**read_metadata(graph), "input_size": [64, 64]})
    args = ["push", folder, "me/gen", *PUSH_OFFLINE]
    assert_fails(args, capsys, tmp_path, 1, "samix_hub.input_size [64, 64] differs from config")
    assert not no_network


CARDS = [("", "no YAML front matter"), ("# just text\n", "no YAML front matter"),
         ("---\nlicense: [unclosed\n---\n# x\n", "front matter does not parse"),
         ("---\n---\n# text\n", "empty front matter"),
         ("---\nlicense: mit\n---\n\n", "no text below")]  # fmt: skip


@pytest.mark.parametrize(("card", "needle"), CARDS)
def test_push_refuses_a_card_that_does_not_parse(
    card: str, needle: str, tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    (gen / "README.md").write_text(card)
    assert_fails(["push", gen, "me/gen", *PUSH_OFFLINE], capsys, tmp_path, 1, needle)
    assert not no_network


@pytest.mark.parametrize(
    "value", ["hf-hub:someone/evil-model", "https://example.com/x", "resnet50"]
)
def test_encoder_block_names_nothing_else(
    value: str, tiny: Path, tmp_path: Path, capsys, no_network, hub_cache
) -> None:
    import json

    gen = Path(shutil.copytree(tiny / "generator", tmp_path / "generator"))
    cfg = json.loads((gen / "config.json").read_text())
    cfg["encoder"]["architecture"] = value
    (gen / "config.json").write_text(json.dumps(cfg))
    line = assert_fails(["push", gen, "me/gen", *PUSH_OFFLINE], capsys, tmp_path, 1, "encoder")
    assert "architecture" in line
    assert not no_network


def test_eval_refuses_data_of_another_channel_count(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    grey = {k: rng.integers(0, 255, size=(40, 16, 16, 1), dtype=np.uint8)
            for k in ("x_train", "x_test")}  # fmt: skip
    labels = {k: np.arange(40) % 10 for k in ("y_train", "y_test")}
    np.savez(tmp_path / "grey.npz", **grey, **labels)
    run = tmp_path / "run"
    train = ["train", "--method", "vanilla", "--data", f"npz:{tmp_path / 'grey.npz'}"]
    assert run_cli([*train, "--backbone", ARCH, *TRAIN[7:], "--out", run], capsys)[0] == 0
    line = assert_fails(["eval", run, "--data", "digits"], capsys, tmp_path, 2, "1-channel")
    assert "3-channel" in line


# ---------------------------------------------------------------------------------- pull
@pytest.fixture(scope="module", name="fake_hub")
def fake_hub_fixture():
    from fakehub import FakeHub

    with FakeHub() as server:
        yield server


def publish_raw(hub, repo_type: str, repo_id: str, folder: Path) -> None:
    """Put ``folder``'s files on the Hub as one commit, unvalidated (a careless uploader)."""
    from fakehub import Repo

    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
             if p.is_file()}  # fmt: skip
    repo = Repo(repo_type, repo_id, private=False)
    repo.branches["main"] = repo.add_commit(files, None, "raw upload")
    hub.repos[(repo_type, repo_id)] = repo


@pytest.mark.parametrize("runtime", ["all", "onnx"])
def test_pull_refuses_a_scrambled_onnx_graph(
    runtime: str, fake_hub, onnx_release: Path, tmp_path: Path, capsys, hub_cache
) -> None:
    """Also for onnxruntime alone: the pull fetches the weights to run the graph against."""
    folder = Path(shutil.copytree(onnx_release / "generator", tmp_path / "src" / "generator"))
    scramble_onnx(folder / "onnx" / "generator.onnx")
    repo_id = f"me/scrambled-{runtime}"
    publish_raw(fake_hub, "model", repo_id, folder)
    root, dest = tmp_path / "root", tmp_path / "root" / "pulled"
    root.mkdir()
    args = ["pull", repo_id, "--endpoint", fake_hub.url, "--runtime", runtime]
    assert_fails(
        [*args, "--dir", dest, "-q"], capsys, root, 1, "computes another function", out=dest
    )
    assert not dest.exists()


@pytest.mark.parametrize(("card", "needle"), CARDS[:3])
def test_pull_refuses_a_generator_card_that_does_not_parse(
    card: str, needle: str, fake_hub, tiny: Path, tmp_path: Path, capsys, hub_cache
) -> None:
    """A generator repo written without our push (raw upload) is checked at pull as at push."""
    folder = Path(shutil.copytree(tiny / "generator", tmp_path / "src" / "generator"))
    (folder / "README.md").write_text(card)
    repo_id = f"me/bad-card-{CARDS.index((card, needle))}"
    publish_raw(fake_hub, "model", repo_id, folder)
    root, dest = tmp_path / "root", tmp_path / "root" / "pulled"
    root.mkdir()
    args = ["pull", repo_id, "--endpoint", fake_hub.url, "--runtime", "torch"]
    assert_fails([*args, "--dir", dest, "-q"], capsys, root, 1, needle, out=dest)
    assert not dest.exists()


@pytest.mark.parametrize(("column", "value", "needle"), ROW_CASES[::2])
def test_pull_range_checks_every_mixed_row(
    column, value, needle, fake_hub, tiny: Path, tmp_path: Path, capsys, hub_cache
) -> None:
    folder = Path(shutil.copytree(tiny / "mixed", tmp_path / "src" / "mixed"))
    damage_rows(folder, column, value)
    repo_id = f"me/bad-rows-{column}"
    publish_raw(fake_hub, "dataset", repo_id, folder)
    root, dest = tmp_path / "root", tmp_path / "root" / "pulled"
    root.mkdir()
    args = ["pull", repo_id, "--repo-type", "dataset", "--endpoint", fake_hub.url]
    assert_fails([*args, "--dir", dest, "-q"], capsys, root, 1, needle, out=dest)
    assert not dest.exists()


@pytest.mark.parametrize("name", ["metrics.jsonl", "checkpoints"])
def test_run_files_are_never_written_through_a_link(name: str, tmp_path: Path, capsys) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "metrics.jsonl").write_text("mine\n")
    run = tmp_path / "run"
    run.mkdir()
    target = elsewhere if name == "checkpoints" else elsewhere / "metrics.jsonl"
    (run / name).symlink_to(target, target_is_directory=name == "checkpoints")
    assert_fails([*TRAIN, "--out", run], capsys, tmp_path, 2, str(run / name))
