"""The CUDA paths: AMP + channels_last training, the torch generator on CUDA, onnxruntime's
CUDA provider and NCCL with one process under torchrun.

Marked ``gpu``; without CUDA (an external resource) the whole module skips.
``benchmarks/gpu_check.sh`` runs them first on a GPU machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from samix_hub import load_generator
from samix_hub.format.mixed import DATA_DIR

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

BUILTIN = "builtin:cifar10-small"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["--data", "digits", "--backbone", "resnet18_cifar_w16", "--epochs", "1", "--workers", "0"]


def _cli(*args: str, torchrun: bool = False) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1"]
    cmd = [*(launcher if torchrun else [sys.executable]), "-m", "samix_hub", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("method", ["samix", "mixup"])
def test_train_on_cuda_with_amp_and_channels_last(method: str, tmp_path: Path) -> None:
    """The loop's CUDA path (autocast, GradScaler or bf16, channels_last) gives finite losses."""
    out = tmp_path / "run"
    res = _cli("train", "--method", method, *TINY, "--device", "cuda", "--max-steps", "6",
               "--batch-size", "32", "--out", str(out), "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["device"] == "cuda" and config["amp"] and config["channels_last"]
    steps = _rows(out / "steps.jsonl")
    assert [r["step"] for r in steps] == list(range(1, 7))
    assert all(math.isfinite(r["loss"]) for r in steps)
    assert math.isfinite(_rows(out / "metrics.jsonl")[-1]["top1"])


@torch.no_grad()
def test_torch_generator_cuda_matches_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32, generator=g)
    partner = torch.roll(torch.arange(16), 1)
    lam = torch.rand(16, generator=g)
    cpu = load_generator(BUILTIN, runtime="torch", device="cpu")
    gpu = load_generator(BUILTIN, runtime="torch", device="cuda")
    m_cpu = cpu.masks(x, partner, lam)
    m_gpu = gpu.masks(x.cuda(), partner.cuda(), lam.cuda())
    assert m_gpu.device.type == "cuda"
    torch.testing.assert_close(m_gpu.cpu(), m_cpu, atol=1e-4, rtol=0)


@torch.no_grad()
def test_onnxruntime_cuda_provider_matches_torch() -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)")
    gen = load_generator(BUILTIN, runtime="onnx", device="cuda")
    assert gen.providers[0] == "CUDAExecutionProvider"
    ref = load_generator(BUILTIN, runtime="torch", device="cuda")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 3, 32, 32, generator=g).cuda()
    partner = torch.roll(torch.arange(8), 1).cuda()
    lam = torch.full((8,), 0.4).cuda()
    torch.testing.assert_close(
        gen.masks(x, partner, lam), ref.masks(x, partner, lam), atol=1e-4, rtol=0
    )


def test_mix_on_cuda(tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    res = _cli("mix", "--generator", BUILTIN, "--data", "digits", "--num", "64",
               "--runtime", "torch", "--device", "cuda", "--out", str(out), "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (out / DATA_DIR).glob("*.parquet")) == [
        "train-00000-of-00001.parquet"
    ]


def test_nccl_one_process_under_torchrun(tmp_path: Path) -> None:
    """NCCL process group of one rank: DDP forward/backward and an all-reduce."""
    script = tmp_path / "nccl_check.py"
    script.write_text(
        textwrap.dedent("""
        import torch, torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel as DDP
        dist.init_process_group("nccl")
        torch.cuda.set_device(0)
        model = DDP(torch.nn.Linear(4, 2).cuda(), device_ids=[0])
        model(torch.ones(3, 4, device="cuda")).sum().backward()
        t = torch.ones(2, device="cuda") * (dist.get_rank() + 1)
        dist.all_reduce(t)
        print("NCCL_OK", dist.get_backend(), dist.get_world_size(), t.tolist())
        dist.destroy_process_group()
    """)
    )
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", str(script)],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "NCCL_OK nccl 1 [1.0, 1.0]" in res.stdout
    # and the training command itself under torchrun on CUDA
    out = tmp_path / "run"
    res = _cli("train", "--method", "mixup", *TINY, "--device", "cuda", "--max-steps", "4",
               "--out", str(out), "-q", torchrun=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(_rows(out / "steps.jsonl")) == 4
