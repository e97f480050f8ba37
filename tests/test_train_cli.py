"""``samix-hub train`` / ``eval`` as processes: help, one-line errors, a real interruption
(SIGKILL) and ``--resume`` against an uninterrupted run, and two DDP processes under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from samix_hub.cli.main import main
from samix_hub.data import load_data
from samix_hub.train import build_classifier, evaluate, load_checkpoint
from samix_hub.train.loader import eval_loader, eval_transform

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = [
    "--data", "digits", "--backbone", "resnet18_cifar_w16", "--epochs", "1",
    "--workers", "0", "-q",
]  # fmt: skip


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "samix_hub", *args], capture_output=True, text=True, env=ENV, **kw
    )


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("cmd", ["train", "eval"])
def test_help_has_examples(cmd, capsys):
    main([cmd, "--help"])  # click's non-standalone mode returns after printing help
    out = capsys.readouterr().out
    assert "Examples:" in out and f"samix-hub {cmd}" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--backbone", "nonet_9"], "nonet_9"),
        (["--data", "npz:/nowhere/x.npz"], "/nowhere/x.npz"),
        (["--alpha", "-2"], "alpha"),
        (["--eta", "-1"], "eta"),
    ],
)
def test_bad_input_is_one_line(args, needle, tmp_path, capsys):
    """The console entry point turns user errors into one line on stderr and exit code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--method", "mixup", *TINY, *args, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted_run(tmp_path):
    """SIGKILL part-way (after a mid-epoch checkpoint), ``--resume``: every later step has the
    same losses, the metrics and the final weights are those of the uninterrupted run."""
    args = ["train", "--method", "samix", *TINY, "--batch-size", "16", "--max-steps", "16",
            "--checkpoint-every", "2"]  # fmt: skip
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    cmd = [sys.executable, "-m", "samix_hub", *args]
    victim = subprocess.Popen([*cmd, "--out", str(run_dir)], env=ENV, stderr=subprocess.PIPE)
    steps = run_dir / "steps.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if steps.exists() and len(steps.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    assert victim.poll() is None, "the run ended before it could be interrupted"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = len(steps.read_text().splitlines())
    saved = load_checkpoint(run_dir)["step"]
    assert 4 <= saved < 16 and saved <= killed_at
    # The uninterrupted reference, in this process (single-threaded like the subprocesses).
    main([*args, "--out", str(ref_dir)])

    out = _cli("train", "--resume", "--out", str(run_dir), "-q")
    assert out.returncode == 0, out.stderr
    got, want = _rows(run_dir / "steps.jsonl"), _rows(ref_dir / "steps.jsonl")
    assert [r["step"] for r in got] == list(range(1, 17)) == [r["step"] for r in want]
    for a, b in zip(got, want, strict=True):
        for key in ("loss", "loss_mix", "loss_clean", "loss_mixer", "loss_mask", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), (a["step"], key)
    m_got, m_want = _rows(run_dir / "metrics.jsonl"), _rows(ref_dir / "metrics.jsonl")
    assert len(m_got) == len(m_want) == 1
    for key in ("top1", "top5", "ema_top1", "ema_top5", "train_loss"):
        assert m_got[0][key] == pytest.approx(m_want[0][key], rel=1e-5)
    a, b = load_checkpoint(run_dir), load_checkpoint(ref_dir)
    for part in ("model", "ema", "mixer"):
        for key, value in b[part].items():
            torch.testing.assert_close(a[part][key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """torchrun, 2 processes, gloo: one run folder, written once, whose checkpoint scores what
    its metrics say (the sharded evaluation is summed over ranks exactly)."""
    out_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
        "--master-port", str(29500 + os.getpid() % 1000), "-m", "samix_hub", "train",
        "--method", "samix", *TINY, "--batch-size", "16", "--max-steps", "6",
        "--out", str(out_dir),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == str(out_dir)  # printed by rank 0 only
    config = json.loads((out_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["kind"] == "samix-run"
    assert [r["step"] for r in _rows(out_dir / "steps.jsonl")] == list(range(1, 7))
    metrics = _rows(out_dir / "metrics.jsonl")
    assert len(metrics) == 1 and metrics[0]["test_images"] == 360
    state = load_checkpoint(out_dir)
    assert state["step"] == 6
    data = load_data("digits")
    model = build_classifier(config["backbone"], 10, config["mean"], config["std"])
    model.net.load_state_dict(state["model"])
    res = evaluate(
        model, eval_loader(data.test, eval_transform((16, 16)), 128, 0), torch.device("cpu")
    )
    assert res["top1"] == pytest.approx(metrics[0]["top1"], abs=1e-6)
