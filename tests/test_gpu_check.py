"""``benchmarks/gpu_check.sh``: it parses, its dry run names every GPU check, and every option
it passes exists in the benchmark script that receives it (so the first GPU run does not fail
on a typo)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
BASH = shutil.which("bash")

pytestmark = pytest.mark.skipif(BASH is None, reason="bash not installed")


def _dry_run() -> list[tuple[str, int, list[str]]]:
    res = subprocess.run([BASH, str(SCRIPT), "--dry-run"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    steps = []
    for line in res.stdout.splitlines():
        m = re.match(r"^\[([a-z-]+)\] timeout (\d+) (.*)$", line)
        assert m, line
        steps.append((m.group(1), int(m.group(2)), shlex.split(m.group(3))))
    return steps


def test_script_parses() -> None:
    res = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_dry_run_lists_every_check_within_eight_minutes() -> None:
    steps = _dry_run()
    names = [name for name, _, _ in steps]
    assert names == [
        "pytest-gpu", "train-step", "train-step-big", "generator-throughput", "mix-throughput"
    ]  # fmt: skip
    assert sum(limit for _, limit, _ in steps) <= 8 * 60
    pytest_cmd = steps[0][2]
    assert pytest_cmd[1:3] == ["-m", "pytest"] and "-m" in pytest_cmd[3:]
    assert pytest_cmd[pytest_cmd.index("-m", 3) + 1] == "gpu"
    assert steps[1][2][steps[1][2].index("--device") + 1] == "cuda"
    for i in (2, 4):
        assert steps[i][2][steps[i][2].index("--device") + 1] == "cuda"


def test_every_option_exists_in_its_benchmark() -> None:
    for name, _, cmd in _dry_run()[1:]:
        script = REPO / cmd[1]
        assert script.is_file(), (name, cmd[1])
        source = script.read_text()
        for opt in (w for w in cmd[2:] if w.startswith("--")):
            assert f'"{opt}"' in source, f"{name}: {cmd[1]} has no option {opt}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_without_cuda_it_says_so() -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    res = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 3
    assert "no CUDA device" in res.stderr


def test_unknown_argument_is_refused() -> None:
    res = subprocess.run([BASH, str(SCRIPT), "--fast"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument --fast" in res.stderr
