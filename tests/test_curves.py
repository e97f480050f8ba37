"""Training curves (``curves.png``) and the ``--log`` sinks (``metrics.csv``, TensorBoard).

The drawing is checked on records (valid PNG, deterministic, changes with the data, the panels
a run's keys call for); real tiny runs check the run folder: the picture after an evaluation,
the CSV rows equal to ``metrics.jsonl`` also after ``--resume`` (no duplicated rows), the
TensorBoard events readable with TensorBoard's own reader, and the picture carried into an
export beside the card that shows it.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from PIL import Image

from samix_hub.export.curves import (
    MAX_POINTS,
    binned,
    curve_panels,
    is_curves_png,
    nice_ticks,
    render,
    save_curves,
)
from samix_hub.format.run import CURVES_NAME
from samix_hub.train import load_checkpoint
from samix_hub.train.run_log import csv_columns, csv_text


def _records(epochs: int = 4, per_epoch: int = 50, mixer: bool = True):
    steps = [
        {"step": s, "epoch": 1 + (s - 1) // per_epoch, "lr": 0.1 * (1 - s / (epochs * per_epoch)),
         "loss": 2.3 * math.exp(-s / 80)}
        for s in range(1, epochs * per_epoch + 1)
    ]  # fmt: skip
    metrics = []
    for e in range(1, epochs + 1):
        row = {"epoch": e, "step": e * per_epoch, "top1": 20.0 * e, "ema_top1": 15.0 * e,
               "train_loss": 2.0 / e, "lr": 0.1 / e, "mask_means": [0.2, 0.5, 0.8]}  # fmt: skip
        if mixer:
            row.update(mask_slope=0.5 + 0.1 * e, mask_spatial_std=0.1 * e, train_loss_mixer=1 / e)
        metrics.append(row)
    return metrics, steps


def _png(path: Path) -> Image.Image:
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.verify()
    image = Image.open(path)
    image.load()
    return image


def test_curves_png_is_valid_deterministic_and_follows_the_data(tmp_path: Path) -> None:
    metrics, steps = _records()
    a = save_curves(tmp_path / "a.png", metrics, steps)
    b = save_curves(tmp_path / "b.png", metrics, steps)
    image = _png(a)
    assert image.size == (840, 520)  # 2 x 2 panels of 420 x 260
    assert a.read_bytes() == b.read_bytes()  # same records, same bytes
    # a picture with lines on it: several colours, mostly white background
    colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 10
    assert max(colours)[1] == (255, 255, 255)
    assert is_curves_png(a)

    changed = [dict(m) for m in metrics]
    changed[-1]["top1"] = 5.0
    c = save_curves(tmp_path / "c.png", changed, steps)
    assert c.read_bytes() != a.read_bytes()
    d = save_curves(tmp_path / "d.png", metrics, [{**s, "lr": 0.05} for s in steps])
    assert d.read_bytes() != a.read_bytes()
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary left


def test_panels_follow_the_keys_a_run_records() -> None:
    metrics, steps = _records()
    titles = [p.title for p in curve_panels(metrics, steps)]
    assert titles == ["loss", "top-1 accuracy (%)", "learning rate", "mixer masks"]
    masks = curve_panels(metrics, steps)[3]
    assert [s.label for s in masks.series] == ["slope (ideal 1)", "spatial std"]
    assert masks.series[0].points == [(50.0, 0.6), (100.0, 0.7), (150.0, 0.8), (200.0, 0.9)]
    # no mixer: no mask panel; a self-supervised run's kNN monitor is its accuracy
    plain, _ = _records(mixer=False)
    assert [p.title for p in curve_panels(plain, steps)][-1] == "learning rate"
    ssl = [{"step": 10, "knn_top1": 33.0, "train_loss": 5.0}]
    panels = curve_panels(ssl, [])
    assert [s.label for s in panels[1].series] == ["kNN top-1"]
    assert [p.title for p in panels] == ["loss", "top-1 accuracy (%)"]  # no lr recorded
    # nothing measured yet: a small picture that says so
    assert render(curve_panels([], [])).size == (420, 60)
    # non-finite values are left out rather than breaking the scale
    nan = [{"step": 1, "top1": float("nan")}, {"step": 2, "top1": 50.0}]
    assert curve_panels(nan)[0].series[0].points == [(2.0, 50.0)]


def test_binned_keeps_the_mean_and_the_point_budget() -> None:
    points = [(float(i), float(i % 7)) for i in range(1, 10_001)]
    out = binned(points)
    assert len(out) <= MAX_POINTS and len(out) >= MAX_POINTS // 2
    assert out[0][0] == pytest.approx(sum(p[0] for p in points[:25]) / 25)
    mean_in = sum(p[1] for p in points) / len(points)
    mean_out = sum(p[1] for p in out) / len(out)
    assert mean_out == pytest.approx(mean_in, abs=0.01)
    assert binned(points[:10]) == points[:10]


@pytest.mark.parametrize("lo, hi", [(0.0, 1.0), (0.013, 0.097), (-3.2, 250.0), (1e-5, 3e-5)])
def test_nice_ticks_are_round_and_inside_the_range(lo: float, hi: float) -> None:
    ticks = nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 11
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    steps = {round(b - a, 15) for a, b in zip(ticks, ticks[1:], strict=False)}
    (step,) = {round(s / 10 ** math.floor(math.log10(s)), 6) for s in steps}
    assert step in (1.0, 2.0, 5.0)


def test_csv_text_has_a_header_and_one_row_per_record() -> None:
    rows = [{"epoch": 1, "step": 5, "top1": 10.5, "mask_means": [0.1]}, {"epoch": 2, "step": 10}]
    columns = csv_columns(rows)
    assert columns == ["epoch", "step", "top1"]  # lists stay in metrics.jsonl
    parsed = list(csv.reader(io.StringIO(csv_text(rows, columns))))
    assert parsed == [["epoch", "step", "top1"], ["1", "5", "10.5"], ["2", "10", ""]]


def test_is_curves_png_refuses_what_is_not_a_png(tmp_path: Path) -> None:
    (tmp_path / "text.png").write_text("not a picture")
    Image.new("RGB", (4, 4)).save(tmp_path / "pic.jpg", format="JPEG")
    Image.new("RGB", (4, 4)).save(tmp_path / "ok.png", format="PNG")
    (tmp_path / "link.png").symlink_to(tmp_path / "ok.png")
    assert is_curves_png(tmp_path / "ok.png")
    for name in ("text.png", "pic.jpg", "link.png", "missing.png"):
        assert not is_curves_png(tmp_path / name), name


# --------------------------------------------------------------------------- real tiny runs
TINY = ["--data", "digits", "--backbone", "resnet18_cifar_w16", "--workers", "0", "--device",
        "cpu", "-q"]  # fmt: skip


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _assert_csv_matches(run: Path) -> None:
    metrics = _jsonl(run / "metrics.jsonl")
    rows = _csv(run / "metrics.csv")
    assert len(rows) == len(metrics)
    for row, record in zip(rows, metrics, strict=True):
        scalars = {k: v for k, v in record.items() if not isinstance(v, (list, dict))}
        assert set(row) == set(scalars)
        for key, value in scalars.items():
            assert float(row[key]) == pytest.approx(float(value), rel=1e-12), key


def _scalars(run: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def mixup_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 epochs of 5 steps (batch 256 of the 1,437 training digits), evaluated after each."""
    pytest.importorskip("tensorboard")  # the dev extra installs it
    out = tmp_path_factory.mktemp("curves") / "mixup"
    args = ["train", "--method", "mixup", *TINY, "--epochs", "2", "--batch-size", "256"]
    code, stdout, stderr = run_cli([*args, "--out", out, "--log", "csv", "--log", "tensorboard"],
                                   _NoCapture())  # fmt: skip
    assert code == 0, stderr
    return out


class _NoCapture:
    """``run_cli`` wants a capsys; a module fixture has none (the output is not checked)."""

    def readouterr(self) -> tuple[str, str]:
        return "", ""


@pytest.mark.slow
def test_run_writes_curves_csv_and_tensorboard(mixup_run: Path) -> None:
    metrics = _jsonl(mixup_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [5, 10]
    image = _png(mixup_run / CURVES_NAME)
    assert image.size == (840, 520)  # loss, top-1, lr: no mixer, no mask panel
    assert (
        image.tobytes()
        == render(curve_panels(metrics, _jsonl(mixup_run / "steps.jsonl"))).tobytes()
    )
    _assert_csv_matches(mixup_run)
    top1 = _scalars(mixup_run, "top1")
    assert [s for s, _ in top1] == [5, 10]
    assert [v for _, v in top1] == pytest.approx([m["top1"] for m in metrics], rel=1e-6)
    lr = _scalars(mixup_run, "lr")
    assert [v for _, v in lr] == pytest.approx([m["lr"] for m in metrics], rel=1e-6)


@pytest.mark.slow
def test_resumed_run_has_no_duplicated_rows(mixup_run: Path, capsys) -> None:
    """Rewind the checkpoint to the end of epoch 1 (step 5) and resume: epoch 2 runs again;
    metrics.csv and TensorBoard hold each evaluation once, as metrics.jsonl does."""
    state = load_checkpoint(mixup_run)
    state["step"], state["epoch"] = 5, 1
    torch.save(state, mixup_run / "checkpoints" / "last.pt")
    first = _jsonl(mixup_run / "metrics.jsonl")
    code, _, stderr = run_cli(
        ["train", "--resume", "--out", mixup_run, "-q", "--log", "csv,tensorboard"], capsys
    )
    assert code == 0, stderr
    metrics = _jsonl(mixup_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [5, 10] and metrics[0] == first[0]
    _assert_csv_matches(mixup_run)
    top1 = _scalars(mixup_run, "top1")
    assert [s for s, _ in top1] == [5, 10]
    assert [v for _, v in top1] == pytest.approx([m["top1"] for m in metrics], rel=1e-6)
    image = _png(mixup_run / CURVES_NAME)
    steps = _jsonl(mixup_run / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 11))
    assert image.tobytes() == render(curve_panels(metrics, steps)).tobytes()


@pytest.mark.slow
def test_mixer_run_draws_mask_curves_and_export_shows_them(tmp_path: Path, capsys) -> None:
    """A tiny SAMix run: the mask panel, and an export copies curves.png beside each card,
    which shows it; a fine-tune (the same loop) draws its curves too, with --log csv."""
    run = tmp_path / "samix"
    args = ["train", "--method", "samix", *TINY, "--epochs", "1", "--batch-size", "128"]
    code, _, stderr = run_cli([*args, "--max-steps", "3", "--out", run], capsys)
    assert code == 0, stderr
    metrics = _jsonl(run / "metrics.jsonl")
    assert {"mask_slope", "mask_spatial_std"} <= set(metrics[-1])
    assert [p.title for p in curve_panels(metrics)][-1] == "mixer masks"
    assert not (run / "metrics.csv").exists() and not (run / "tensorboard").exists()
    picture = (run / CURVES_NAME).read_bytes()

    out = tmp_path / "export"
    code, _, stderr = run_cli(["export", run, "--out", out, "--no-onnx", "-q"], capsys)
    assert code == 0, stderr
    for kind in ("generator", "backbone"):
        assert (out / kind / CURVES_NAME).read_bytes() == picture
        card = (out / kind / "README.md").read_text()
        assert f"]({CURVES_NAME})" in card and f"`{CURVES_NAME}`" in card

    ft = tmp_path / "ft"
    args = ["finetune", "--backbone", str(out / "backbone"), "--method", "mixup", "--data",
            "digits", "--workers", "0", "--device", "cpu", "-q"]  # fmt: skip
    code, _, stderr = run_cli(
        [*args, "--epochs", "1", "--max-steps", "2", "--batch-size", "64", "--out", ft,
         "--log", "csv"], capsys,
    )  # fmt: skip
    assert code == 0, stderr
    assert is_curves_png(ft / CURVES_NAME)
    _assert_csv_matches(ft)


@pytest.mark.parametrize("name", ["curves.png", "metrics.csv", "metrics.jsonl", "checkpoints"])
def test_a_run_never_replaces_a_file_it_did_not_write(tmp_path: Path, capsys, name: str) -> None:
    """A folder without a run's config.json holding a file named as a run's: refused, kept.
    (A killed run's temporary files alone do not count: tests/test_data_safety.py.)"""
    out = tmp_path / "out"
    mine = out / name
    out.mkdir()
    if name == "checkpoints":  # a folder of the user's, with a file a run would replace
        mine.mkdir()
        mine = mine / "last.pt"
    mine.write_bytes(b"the user's own file")
    code, _, stderr = run_cli(["train", "--method", "mixup", *TINY, "--out", out], capsys)
    assert code != 0 and f"{mine}: exists" in stderr
    assert "choose another --out" in stderr and mine.read_bytes() == b"the user's own file"
    assert not (out / "config.json").exists()
