"""``samix-hub train --method samix --teacher SRC``: only the mixer trains, against a frozen teacher.

End to end on the bundled digits: a vanilla teacher run (library), a teacher run (CLI), export,
the exported generator (encoder = the teacher's stage 3, λ-exact masks), the cards, --resume,
a new head when the teacher's classes are not the data's, and one-line errors for a bad SRC.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samix_hub
from samix_hub.cli.main import main
from samix_hub.export.generator import export_run
from samix_hub.train import TrainConfig, train
from samix_hub.train.teacher import TeacherScenario
from samix_hub.train.teacher_head import fit_linear_head

ARCH = "resnet18_cifar_w16"
FAST = ["--epochs", "1", "--batch-size", "32", "--workers", "0", "--device", "cpu", "-q"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained vanilla classifier on digits (10 classes), the teacher of every test here."""
    out = tmp_path_factory.mktemp("teacher") / "vanilla"
    cfg = TrainConfig(
        method="vanilla", data="digits", backbone=ARCH, out=str(out), epochs=2, batch_size=64,
        workers=0, device="cpu", seed=0,
    )  # fmt: skip
    return train(cfg, quiet=True)


@pytest.fixture(scope="module")
def mixer_run(teacher_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mixer") / "run"
    code, stdout, err = _cli(["train", "--method", "samix", "--teacher", str(teacher_run),
                              "--data", "digits", "--max-steps", "30", "--out", str(out),
                              *FAST])  # fmt: skip
    assert code == 0, err
    assert stdout.strip() == str(out)
    return out


def _cli(args: list[str]) -> tuple[int, str, str]:
    """``samix-hub ARGS`` in-process with captured streams (module-scoped fixtures can't capsys)."""
    out, err = io.StringIO(), io.StringIO()

    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_teacher_run_trains_only_the_mixer(teacher_run: Path, mixer_run: Path) -> None:
    cfg = json.loads((mixer_run / "config.json").read_text())
    assert cfg["scenario"] == "teacher" and cfg["method"] == "samix" and cfg["backbone"] == ARCH
    assert cfg["teacher"] == str(teacher_run) and cfg["trained_against"] == "a frozen teacher"
    prov = cfg["teacher_provenance"]
    assert prov["kind"] == "samix-run" and prov["source"] == teacher_run.name
    assert str(teacher_run.parent) not in json.dumps(prov)  # named, never located
    assert cfg["teacher_head"] == {"fitted": False}
    assert cfg["calibration"] == "exact" and cfg["mask_variance"] == "image"
    assert cfg["mixer"]["calibration"] == "exact" and cfg["mixer"]["variance"] == "image"
    # the teacher recipe's optimiser defaults (not given on the command line)
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"]) == ("adamw", 0.001, 0.0)
    # the teacher's weights are untouched and its accuracy is the teacher run's own
    before = torch.load(teacher_run / "checkpoints/last.pt", weights_only=True)
    after = torch.load(mixer_run / "checkpoints/last.pt", weights_only=True)
    assert after["ema"] is None and after["step"] == 30
    for key, value in before["model"].items():
        assert torch.equal(after["model"][key], value), key
    (last,) = _rows(mixer_run / "metrics.jsonl")
    assert last["top1"] == pytest.approx(_rows(teacher_run / "metrics.jsonl")[-1]["top1"])
    assert last["mask_slope"] == pytest.approx(1.0, abs=1e-3)  # λ-exact masks
    assert last["mask_lam_mae"] < 1e-3 and last["mask_spatial_std"] >= 0
    steps = _rows(mixer_run / "steps.jsonl")
    assert len(steps) == 30 and {"loss_mixer", "loss_mask"} <= set(steps[0])


def test_export_teacher_run(teacher_run: Path, mixer_run: Path, tmp_path: Path) -> None:
    reports = export_run(mixer_run, tmp_path / "out", onnx=False)
    assert [r.kind for r in reports] == ["samix-generator", "samix-backbone"]
    gen = samix_hub.load_generator(tmp_path / "out" / "generator")
    assert gen.config.mixer.calibration == "exact"
    assert gen.config.provenance["trained_against"] == "a frozen teacher"
    assert gen.config.provenance["teacher"]["source"] == teacher_run.name
    # the generator's encoder is the teacher's stage 3
    teacher = torch.load(teacher_run / "checkpoints/last.pt", weights_only=True)["model"]
    for key, value in gen.encoder.net.state_dict().items():
        assert torch.equal(value, teacher[key]), key
    g = torch.Generator().manual_seed(0)
    x = torch.rand(12, 3, 16, 16, generator=g)
    lam = torch.rand(12, generator=g) * 0.9 + 0.05
    with torch.no_grad():
        mask, mixed = gen(x, torch.randperm(12, generator=g), lam)
    assert (mask.flatten(1).mean(1) - lam).abs().max() < 1e-3
    card = (tmp_path / "out" / "generator" / "README.md").read_text()
    assert "trained against a frozen teacher" in card and f"`{teacher_run.name}`" in card
    assert str(tmp_path) not in card and str(teacher_run.parent) not in card
    index = samix_hub.export.cards.validate_card(tmp_path / "out" / "generator" / "README.md").data
    # mask statistics are no Hub metric ids: in the body, not in model-index
    assert not index.eval_results and "Mask mean vs λ, least-squares slope" in card
    backbone = (tmp_path / "out" / "backbone" / "README.md").read_text()
    assert "frozen teacher" in backbone and "type: accuracy" in backbone


def test_resume_restores_the_mixer(teacher_run: Path, tmp_path: Path, monkeypatch) -> None:
    def cfg(out: str) -> TrainConfig:
        return TrainConfig(
            method="samix", data="digits", backbone="", out=out, scenario="teacher",
            teacher=str(teacher_run), epochs=1, max_steps=16, batch_size=32, workers=0,
            device="cpu", checkpoint_every=8,
        )  # fmt: skip

    full = train(cfg(str(tmp_path / "full")), quiet=True)
    step_fn = TeacherScenario.step_fn

    def dying(self: TeacherScenario, method: str):  # noqa: ANN202
        inner = step_fn(self, method)

        def step(ctx, images, labels):  # noqa: ANN001, ANN202
            if ctx.step == 12:
                raise KeyboardInterrupt
            return inner(ctx, images, labels)

        return step

    monkeypatch.setattr(TeacherScenario, "step_fn", dying)
    with pytest.raises(KeyboardInterrupt):
        train(cfg(str(tmp_path / "cut")), quiet=True)
    monkeypatch.setattr(TeacherScenario, "step_fn", step_fn)
    cut = train(cfg(str(tmp_path / "cut")), resume=True, quiet=True)
    a = torch.load(full / "checkpoints/last.pt", weights_only=True)
    b = torch.load(cut / "checkpoints/last.pt", weights_only=True)
    assert a["step"] == b["step"] == 16
    for key, value in a["mixer"].items():
        assert torch.allclose(value.float(), b["mixer"][key].float(), atol=1e-6), key


def test_new_head_when_classes_differ(teacher_run: Path, digits, tmp_path: Path) -> None:
    """Digits 5-9 as a 5-class npz: the 10-class teacher gets a head fitted on its features."""
    arrays = {}
    for split, ds in (("train", digits.train), ("test", digits.test)):
        keep = ds.labels >= 5
        arrays[f"x_{split}"] = ds.images[keep]
        arrays[f"y_{split}"] = ds.labels[keep] - 5
    np.savez(tmp_path / "five.npz", **arrays)
    out = tmp_path / "run"
    code, _, err = _cli(["train", "--method", "samix", "--teacher", str(teacher_run), "--data",
                         f"npz:{tmp_path / 'five.npz'}", "--max-steps", "5", "--out", str(out),
                         *FAST])  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    head = cfg["teacher_head"]
    assert head["fitted"] and "10 classes" in head["reason"] and cfg["num_classes"] == 5
    assert head["train_top1"] > 50 and 0 <= head["test_top1"] <= 100
    (last,) = _rows(out / "metrics.jsonl")
    assert last["top1"] == pytest.approx(head["test_top1"], abs=1e-3)  # this head scores the mix
    export_run(out, tmp_path / "exp", what=["backbone"], onnx=False)
    bb = json.loads((tmp_path / "exp" / "backbone" / "config.json").read_text())
    assert bb["num_classes"] == 5


def test_fit_linear_head_separates_classes() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 4
    y = torch.arange(300) % 3
    x = centres[y] + torch.randn(300, 8, generator=g) + 10  # offset: standardisation folds back
    w, b = fit_linear_head(x, y, 3)
    assert w.shape == (3, 8) and b.shape == (3,)
    assert ((x @ w.T + b).argmax(1) == y).float().mean() > 0.95


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--teacher", "{missing}"], "--teacher {missing}: "),
        (["--teacher", "no_such_model_name"], "--teacher no_such_model_name: unknown backbone"),
        (["--teacher", ARCH], f"--teacher {ARCH}: timm has no pretrained weights"),
        (["--teacher", "{teacher}", "--method", "mixup"], "unknown --teacher method 'mixup'"),
        (["--teacher", "{teacher}", "--scenario", "ssl"], "not --scenario ssl"),
        (["--teacher", "{teacher}", "--backbone", "resnet18_cifar"], "omit --backbone"),
    ],
)
def test_bad_teacher_is_one_line(
    extra: list[str], message: str, teacher_run: Path, tmp_path: Path
) -> None:
    fill = {"missing": str(tmp_path / "nope" / "run"), "teacher": str(teacher_run)}
    args = [a.format(**fill) for a in extra]
    method = [] if "--method" in args else ["--method", "samix"]
    code, out, err = _cli(["train", *method, "--data", "digits", "--out", str(tmp_path / "o"),
                           *args, *FAST])  # fmt: skip
    assert code != 0 and out == ""
    assert message.format(**fill) in err and len(err.strip().splitlines()) == 1, err


def test_teacher_optimiser_given_on_the_command_line_is_kept(
    teacher_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sgd"
    code, _, err = _cli(["train", "--method", "samix", "--teacher", str(teacher_run),
                         "--data", "digits", "--max-steps", "2", "--optimizer", "sgd",
                         "--lr", "0.05", "--out", str(out), *FAST])  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"]) == ("sgd", 0.05, 0.0)


def test_fused_teacher_computes_the_same(teacher_run: Path) -> None:
    from samix_hub.train.pretrained import load_pretrained_backbone
    from samix_hub.train.teacher import FrozenClassifier, fuse_conv_bn

    bb = load_pretrained_backbone(str(teacher_run))
    teacher = FrozenClassifier(bb.net, bb.mean, bb.std)
    fused = fuse_conv_bn(teacher)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in teacher.modules())  # untouched
    x = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(fused(x), teacher(x), atol=1e-4)
        assert torch.allclose(fused.features(x, 3), teacher.features(x, 3), atol=1e-4)


@pytest.mark.hub
@pytest.mark.slow
def test_teacher_from_the_hub(teacher_run: Path, tmp_path: Path, monkeypatch) -> None:
    """``--teacher ORG/NAME``: a (local, fake) Hub backbone; the run, the generator config and
    card record the repo id as given and the resolved commit, and no local path."""
    import os
    import subprocess
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fakehub import FakeHub
    from huggingface_hub import constants

    from samix_hub.hub.transfer import push

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    export_run(teacher_run, tmp_path / "rel", what=["backbone"], onnx=False)
    token = "hf_fakehubSecretToken0123456789"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SAMIX_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_TOKEN=token, HF_HUB_DISABLE_XET="1")
    with FakeHub(token=token) as hub:
        env["HF_ENDPOINT"] = hub.url
        _, sha = push(tmp_path / "rel" / "backbone", "me/teacher", endpoint=hub.url, token=token)
        done = subprocess.run(
            [sys.executable, "-m", "samix_hub", "train", "--method", "samix", "--teacher",
             "me/teacher", "--data", "digits", "--max-steps", "3", "--out",
             str(tmp_path / "run"), *FAST],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    prov = json.loads((tmp_path / "run" / "config.json").read_text())["teacher_provenance"]
    assert prov["src"] == "me/teacher" and prov["repo_id"] == "me/teacher"
    assert prov["commit"] == sha and prov["kind"] == "samix-backbone"
    export_run(tmp_path / "run", tmp_path / "out", onnx=False)
    card = (tmp_path / "out" / "generator" / "README.md").read_text()
    assert f"`me/teacher` (commit {sha})" in card and str(tmp_path) not in card
    gen = json.loads((tmp_path / "out" / "generator" / "config.json").read_text())
    assert gen["provenance"]["teacher"]["commit"] == sha
    assert str(tmp_path) not in json.dumps(gen)
    assert "base_model: me/teacher" in (tmp_path / "out" / "backbone" / "README.md").read_text()
