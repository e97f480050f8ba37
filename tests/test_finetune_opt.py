"""``samix-hub finetune --opt adamw --warmup-epochs N``: timm's AdamW and warm-up + cosine.

Tiny runs on 64 images of the bundled ``digits`` set (16 x 16) with a randomly initialised
``resnet18_cifar_w16``. The learning rates the run logged are checked against the
closed-form schedule computed here; the optimizer's groups against the model's own parameters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from cli_helpers import run_cli

from samix_hub.data import load_data
from samix_hub.train import load_checkpoint
from samix_hub.train.finetune import FinetuneScenario

ARCH = "resnet18_cifar_w16"
BATCH = 16
PER_EPOCH = 64 // BATCH  # 4 steps per epoch
BASE = ["finetune", "--backbone", ARCH, "--no-pretrained", "--method", "vanilla"]


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> list[object]:
    """CLI options for a tiny data set: 64 training and 32 test images of ``digits``."""
    digits = load_data("digits")
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(
        path,
        x_train=digits.train.images[:64],  # type: ignore[union-attr]
        y_train=digits.train.labels[:64],  # type: ignore[union-attr]
        x_test=digits.test.images[:32],  # type: ignore[union-attr]
        y_test=digits.test.labels[:32],  # type: ignore[union-attr]
    )
    return ["--data", f"npz:{path}", "--batch-size", BATCH, "--workers", 0, "--eval-every", 0,
            "--quiet"]  # fmt: skip


def lrs(run: Path) -> list[float]:
    lines = (run / "steps.jsonl").read_text().splitlines()
    return [json.loads(line)["lr"] for line in lines]


def warmup_cosine(step: int, lr: float, warmup: int, total: int) -> float:
    """Linear from 0 to lr over ``warmup`` steps, then cosine to 0 over the rest."""
    if step < warmup:
        return lr * step / warmup
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


def test_adamw_with_warmup_schedule_groups_and_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast: list[object]
) -> None:
    out = tmp_path / "vit-like"
    args = [*BASE, *fast, "--opt", "adamw", "--warmup-epochs", 1, "--epochs", 3]
    code, printed, err = run_cli([*args, "--out", out], capsys)
    assert code == 0, err
    assert printed.strip() == str(out)
    config = json.loads((out / "config.json").read_text())
    assert (config["optimizer"], config["warmup_epochs"]) == ("adamw", 1)
    assert (config["lr"], config["weight_decay"]) == (1e-4, 0.05)  # the AdamW defaults
    logged = lrs(out)
    assert len(logged) == 12
    expected = [warmup_cosine(t, 1e-4, PER_EPOCH, 12) for t in range(12)]
    assert logged == pytest.approx(expected, abs=1e-12)
    assert logged[0] == 0.0 and logged[PER_EPOCH] == pytest.approx(1e-4)

    # AdamW from timm: no weight decay on biases and norm weights (the 1-D parameters).
    state = load_checkpoint(out)
    groups = state["optimizer"]["param_groups"]
    model = timm.create_model(ARCH, num_classes=10)
    one_d = sum(1 for p in model.parameters() if p.ndim <= 1)
    assert sorted((g["weight_decay"], len(g["params"])) for g in groups) == [
        (0.0, one_d),
        (0.05, sum(1 for _ in model.parameters()) - one_d),
    ]
    assert all("betas" in g for g in groups) and state["scheduler"] == {"updates": 12}

    # --resume checks the new options like the others.
    for flag, value in (("--opt", "sgd"), ("--warmup-epochs", 2), ("--weight-decay", 0.01)):
        code, _, err = run_cli(["finetune", "--resume", "--out", out, flag, value], capsys)
        assert code == 2, err
        assert "differs from the run" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli([*args, "--warmup-epochs", 4, "--out", tmp_path / "bad"], capsys)
    assert code == 2 and "--warmup-epochs must be in [0, --epochs 3], got 4" in err


def test_warmup_resume_continues_the_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast: list[object]
) -> None:
    """Interrupted inside the warm-up and resumed: same lrs and weights as one run."""
    args = [*BASE, *fast, "--warmup-epochs", 2, "--epochs", 3]
    code, _, err = run_cli([*args, "--out", tmp_path / "ref"], capsys)
    assert code == 0, err
    original = FinetuneScenario.after_step

    def after_step(self, mods, step, total, cfg):  # a crash inside the warm-up (8 steps)
        original(self, mods, step, total, cfg)
        if step == 4:
            raise KeyboardInterrupt

    mp = pytest.MonkeyPatch()
    mp.setattr(FinetuneScenario, "after_step", after_step)
    try:
        code, _, _ = run_cli([*args, "--checkpoint-every", 3, "--out", tmp_path / "cut"], capsys)
    finally:
        mp.undo()
    assert code != 0 and 0 < load_checkpoint(tmp_path / "cut")["step"] < 8
    code, _, err = run_cli(["finetune", "--resume", "--out", tmp_path / "cut", "--quiet"], capsys)
    assert code == 0, err
    assert lrs(tmp_path / "cut") == lrs(tmp_path / "ref")
    expected = [warmup_cosine(t, 0.01, 2 * PER_EPOCH, 3 * PER_EPOCH) for t in range(12)]
    assert lrs(tmp_path / "ref") == pytest.approx(expected, abs=1e-12)  # SGD: lr 0.01
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "cut")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_default_sgd_schedule_is_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast: list[object]
) -> None:
    """No new option: torch SGD (momentum 0.9, no Nesterov) and the loop's plain cosine."""
    out = tmp_path / "cnn"
    code, _, err = run_cli([*BASE, *fast, "--max-steps", 5, "--out", out], capsys)
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert (config["optimizer"], config["warmup_epochs"]) == ("sgd", 0)
    assert (config["lr"], config["weight_decay"]) == (0.01, 1e-4)
    state = load_checkpoint(out)
    (group,) = state["optimizer"]["param_groups"]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.9, False, 1e-4)
    assert state["scheduler"]["T_max"] == 5  # torch's CosineAnnealingLR, as before
    cosine = [0.005 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    assert lrs(out) == pytest.approx(cosine, abs=1e-12)


def test_adamw_skips_decay_on_vit_no_weight_decay_names() -> None:
    """A timm ViT: its ``no_weight_decay()`` names (pos_embed, cls_token) and every 1-D
    parameter get no weight decay; the matrices get --weight-decay."""
    from samix_hub.models.classifier import Classifier
    from samix_hub.train import TrainConfig
    from samix_hub.train.finetune_optim import create_optimizer

    net = timm.create_model("vit_tiny_patch16_224", img_size=32, num_classes=5)
    model = Classifier(net, (0.5,) * 3, (0.25,) * 3)
    cfg = TrainConfig(method="vanilla", data="digits", backbone="vit", out="x", optimizer="adamw")
    cfg.lr, cfg.weight_decay = 1e-4, 0.05
    optimizer = create_optimizer(model, cfg)
    assert isinstance(optimizer, torch.optim.AdamW)
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    names = dict(net.named_parameters())
    assert len(decay) == len(names)
    assert decay[id(names["pos_embed"])] == decay[id(names["cls_token"])] == 0.0
    for name, p in names.items():
        if name not in ("pos_embed", "cls_token"):
            assert decay[id(p)] == (0.0 if p.ndim <= 1 else 0.05), name
    cfg.optimizer = "sgd"
    assert create_optimizer(model, cfg) is None  # SGD stays the loop's own
