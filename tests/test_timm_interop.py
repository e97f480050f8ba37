"""Folders and Hub repos written by timm itself (``timm.models.save_for_hf`` and
``timm.models.push_to_hf_hub``), read by samix-hub: safetensors are used and pickles never
loaded, pickle-only weights are refused with one line, timm's ``local-dir:`` prefix works and
``samix-hub info`` describes them. Backbone cards written by ``export`` are timm cards that state
only facts about the exported weights.

Every folder is written by real timm; the Hub is tests/fakehub.py behind the real
``huggingface_hub`` client (and real timm's ``push_to_hf_hub``). A pickle that samix-hub must
never read is replaced by bytes that are no pickle at all, so reading it would fail the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from cli_helpers import run_cli
from timm.models import save_for_hf

import samix_hub
from samix_hub.errors import ArtifactError, HubError
from samix_hub.export.validate import detect_kind, validate_artifact

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub  # noqa: E402

TOKEN = "hf_fakehubTimmToken0123456789"
ARCH = "resnet18_cifar_w16"
NOT_A_PICKLE = b"if this is ever unpickled the test fails\n"


@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as server:
        yield server


def timm_model(seed: int = 5) -> torch.nn.Module:
    torch.manual_seed(seed)  # test-only initialisation of the weights
    return timm.create_model(ARCH, num_classes=10).eval()


def timm_folder(folder: Path, formats: bool | str, model: torch.nn.Module) -> Path:
    """What ``save_for_hf`` writes: ``True`` safetensors, ``False`` pickle, ``"both"``."""
    save_for_hf(model, str(folder), safe_serialization=formats)
    return folder


def probe() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_a_timm_folder_with_both_formats_loads_from_safetensors(tmp_path: Path) -> None:
    model = timm_model()
    folder = timm_folder(tmp_path / "both", "both", model)
    assert (folder / "pytorch_model.bin").is_file() and (folder / "model.safetensors").is_file()
    (folder / "pytorch_model.bin").write_bytes(NOT_A_PICKLE)  # reading it would raise
    assert validate_artifact(folder, "all") == "samix-backbone"  # timm writes no ONNX graph
    with torch.no_grad():
        expected = model(probe())
    for src in (folder, f"local-dir:{folder}"):
        net, config = samix_hub.load_backbone(src)
        assert config["architecture"] == ARCH and net.source.path == folder
        with torch.no_grad():
            assert torch.equal(net(probe()), expected)
    with pytest.raises(ArtifactError, match="onnx/model.onnx: missing"):  # timm wrote none
        samix_hub.load_backbone(folder, "onnx")
    # the old positional order (src, device) still works
    net, _ = samix_hub.load_backbone(folder, "cpu")
    assert next(net.parameters()).device.type == "cpu"


def test_pickle_only_timm_weights_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = timm_folder(tmp_path / "pickle", False, timm_model())
    assert not (folder / "model.safetensors").exists()
    for src in (folder, f"local-dir:{folder}"):
        with pytest.raises(ArtifactError) as err:
            samix_hub.load_backbone(src)
        message = str(err.value)
        assert len(message.splitlines()) == 1
        assert "pytorch_model.bin" in message and "convert them to safetensors" in message
    code, out, stderr = run_cli(["info", folder], capsys)
    assert code != 0 and out == ""
    assert len(stderr.strip().splitlines()) == 1 and "convert them to safetensors" in stderr
    # a generator folder with a pickle is still refused, whatever else it holds
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "config.json").write_text(json.dumps({"kind": "samix-generator"}))
    (tmp_path / "gen" / "model.safetensors").write_bytes(b"")
    (tmp_path / "gen" / "weights.pt").write_bytes(NOT_A_PICKLE)
    with pytest.raises(ArtifactError, match="pickle weights"):
        detect_kind(tmp_path / "gen")


def test_local_dir_prefix_as_a_backbone_to_fine_tune(tmp_path: Path) -> None:
    """``--backbone local-dir:FOLDER`` (``train/pretrained.py``) resolves the timm folder."""
    from samix_hub.train.pretrained import load_pretrained_backbone

    model = timm_model(3)
    folder = timm_folder(tmp_path / "both", "both", model)
    (folder / "pytorch_model.bin").write_bytes(NOT_A_PICKLE)
    backbone = load_pretrained_backbone(f"local-dir:{folder}")
    assert backbone.architecture == ARCH and backbone.input_size == (32, 32)
    assert backbone.provenance["source"] == "both" and len(backbone.provenance["sha256"]) == 64
    with torch.no_grad():
        assert torch.equal(backbone.net.eval()(probe()), model(probe()))
    with pytest.raises(samix_hub.errors.UserError, match="local-dir:.*is not a folder"):
        samix_hub.load_backbone(f"local-dir:{tmp_path / 'absent'}")


def test_info_describes_a_plain_timm_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = timm_folder(tmp_path / "both", "both", timm_model())
    (folder / "pytorch_model.bin").write_bytes(NOT_A_PICKLE)
    code, out, err = run_cli(["info", folder], capsys)
    assert code == 0, err
    assert "valid:         yes" in out and "missing" not in out
    assert f"architecture:  {ARCH} (10 classes)" in out
    assert "written_by=timm" in out
    assert "ignored=pytorch_model.bin (pickles: never loaded)" in out
    code, out, err = run_cli(["info", f"local-dir:{folder}", "--json"], capsys)
    info = json.loads(out)
    assert code == 0 and info["valid"] is True and info["kind"] == "samix-backbone"
    assert info["parameters"] == sum(p.numel() for p in timm_model().state_dict().values())


def test_timm_push_to_hf_hub_repo_pulls_loads_and_describes(
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = timm_model(7)
    torch.save(model.state_dict(), tmp_path / "state.pt")
    script = (  # timm's own push, in a process whose huggingface_hub talks to the test Hub
        "import sys, timm, torch, samix_hub  # samix_hub registers the CIFAR ResNet\n"
        "from timm.models import push_to_hf_hub\n"
        f"m = timm.create_model({ARCH!r}, num_classes=10)\n"
        "m.load_state_dict(torch.load(sys.argv[1], weights_only=True))\n"
        "info = push_to_hf_hub(m.eval(), 'timm-user/r18', safe_serialization='both',\n"
        "                      model_card={'details': {'Dataset': 'cifar10'}})\n"
        "print(info.oid)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_TOKEN=TOKEN,
               HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1")  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "state.pt")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    sha = run.stdout.split()[-1]
    repo = hub.repos[("model", "timm-user/r18")]
    assert {"config.json", "model.safetensors", "pytorch_model.bin", "README.md"} <= set(
        repo.commits[sha]
    )
    assert b"library_name: timm" in repo.commits[sha]["README.md"]
    start = len(hub.requests)
    net, config = samix_hub.load_backbone("timm-user/r18", token=TOKEN, endpoint=hub.url)
    assert net.source.commit == sha and config["architecture"] == ARCH
    assert not any(p.endswith(".bin") for _, p in hub.requests[start:])  # never downloaded
    with torch.no_grad():
        assert torch.equal(net(probe()), model(probe()))

    info = subprocess.run(
        [sys.executable, "-m", "samix_hub", "info", "timm-user/r18", "--json"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr[-2000:]
    out = info.stdout
    described = json.loads(out)
    assert described["valid"] is True and described["commit"] == sha
    assert described["card"]["library_name"] == "timm"
    assert described["provenance"]["written_by"].startswith("timm")
    assert "onnx/model.onnx" not in json.dumps(described)

    # pickles only: refused before anything is downloaded, saying to convert
    only = timm_folder(tmp_path / "only", False, model)
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("timm-user/pickled", exist_ok=True)
    api.upload_folder(folder_path=only, repo_id="timm-user/pickled")
    start = len(hub.requests)
    with pytest.raises(HubError, match="pickle weights.*convert them to safetensors"):
        samix_hub.load_backbone("timm-user/pickled", token=TOKEN, endpoint=hub.url)
    assert not any(p.endswith(".bin") for _, p in hub.requests[start:])
