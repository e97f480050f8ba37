"""Every ```python block of README.md, copied out of the file and executed (so they cannot drift).

The blocks run in a folder holding the paths they name: ``samix-demo/release/{generator,
backbone}`` (a tiny run exported as ``export`` does) and ``samix-demo/mixed`` (``samix-hub mix``).
Their results are then checked against independent computations.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from samix_hub.export.generator import export_run

sys.path.insert(0, str(Path(__file__).parent))
from test_export import make_run  # noqa: E402

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    export_run(make_run(root), root / "samix-demo" / "release")
    return root


def _run_block(index: int, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(workdir)
    ns: dict = {"__name__": "readme_example"}
    exec(compile(python_blocks()[index], f"{README}:python block {index}", "exec"), ns)
    return ns


def test_readme_has_the_examples() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 2
    assert any("SoftTargetCrossEntropy" in b and "SAMixUp" in b for b in blocks)
    assert all("0.5) / 0.25" not in b for b in blocks)  # normalisation read from the config


@pytest.mark.slow
def test_every_python_block_runs(workdir: Path, monkeypatch, capsys) -> None:
    mixed = workdir / "samix-demo" / "mixed"
    args = ["mix", "--method", "mixup", "--data", "digits", "--num", 16, "--out", mixed, "-q"]
    assert run_cli(args, capsys)[0] == 0
    for i, block in enumerate(python_blocks()):
        ns = _run_block(i, workdir, monkeypatch)
        if "load_backbone" in block and "mask" in ns:  # the Python API example
            images, partner, mask = ns["images"], ns["partner"], ns["mask"]
            assert torch.allclose(
                ns["mixed"], mask * images + (1 - mask) * images[partner], atol=1e-5
            )
            model, config = ns["model"], ns["config"]
            cfg = config["pretrained_cfg"]
            x = (images - torch.tensor(cfg["mean"]).view(1, -1, 1, 1)) / torch.tensor(
                cfg["std"]
            ).view(1, -1, 1, 1)
            with torch.no_grad():
                assert torch.allclose(ns["logits"], model(x), atol=1e-5)
            assert cfg["mean"] != [0.5, 0.5, 0.5]  # the backbone's own constants
        if "SoftTargetCrossEntropy" in block:  # the training loop
            assert torch.isfinite(ns["loss"]) and ns["loss"].requires_grad
            targets = ns["targets"]
            assert targets.shape == (16, 10)
            assert torch.allclose(targets.sum(1), torch.ones(16), atol=1e-6)
            assert 0 <= float(ns["images"].min()) and float(ns["images"].max()) <= 1
            assert abs(sum(ns["soft_label"]) - 1) < 1e-5 and len(ns["soft_label"]) == 10
            assert len(ns["hf"]) == 48
