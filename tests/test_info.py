"""``samix-hub info`` and the clear errors for broken artifacts (loading refuses them)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

import samix_hub
from samix_hub.cli.main import cli
from samix_hub.errors import ArtifactError
from samix_hub.export.generator import export_run
from samix_hub.export.info import describe

sys.path.insert(0, str(Path(__file__).parent))
from test_export import ARCH, CLASSES, make_run  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("info")
    export_run(make_run(root), root / "out", onnx=False)
    return root / "out"


@pytest.fixture
def copy(folders: Path, tmp_path: Path):
    def _copy(kind: str) -> Path:
        return Path(shutil.copytree(folders / kind, tmp_path / kind))

    return _copy


def test_describe_generator_and_backbone(folders):
    gen = describe(folders / "generator")
    assert gen["kind"] == "samix-generator" and gen["valid"] is False  # no ONNX graph
    assert "onnx/generator.onnx: missing" in gen["error"]
    assert gen["provenance"]["method"] == "samix" and gen["provenance"]["seed"] == 0
    weights = load_file(str(folders / "generator" / "generator.safetensors"))
    assert gen["parameters"] == sum(v.numel() for v in weights.values())
    # a generator's own mask statistics (provenance "measured"); top-1 is the backbone's result
    assert gen["results"][0].startswith("Mask mean vs λ") and "0.875" in gen["results"][0]
    assert len(gen["results"]) == 3 and not any("Top-1" in r for r in gen["results"])
    assert set(gen["files"]) == {"README.md", "config.json", "generator.safetensors"}
    bb = describe(folders / "backbone")
    assert bb["kind"] == "samix-backbone" and bb["labels"] == CLASSES
    assert bb["architecture"] == f"{ARCH} (10 classes)" and bb["input"] == "3 x 32 x 32"
    assert (
        bb["files"]["model.safetensors"] == (folders / "backbone/model.safetensors").stat().st_size
    )


def test_info_cli(folders):
    res = CliRunner().invoke(cli, ["info", str(folders / "backbone")])
    assert res.exit_code == 0, res.output
    assert "kind:          samix-backbone" in res.stdout and "model.safetensors" in res.stdout
    assert "results:       Top-1: 39.75" in res.stdout
    res = CliRunner().invoke(cli, ["info", str(folders / "generator"), "--json"])
    info = json.loads(res.stdout)
    assert info["kind"] == "samix-generator" and info["provenance"]["epochs"] == 3
    res = CliRunner().invoke(cli, ["info", str(folders / "nope")])
    assert res.exit_code != 0


def test_missing_file(copy):
    gen = copy("generator")
    (gen / "generator.safetensors").unlink()
    with pytest.raises(ArtifactError, match=r"generator.safetensors: missing"):
        samix_hub.load_generator(gen)
    with pytest.raises(ArtifactError, match=r"onnx/generator.onnx: missing"):
        samix_hub.load_generator(gen, runtime="onnx")  # this export has no ONNX graph


def test_truncated_safetensors(copy):
    bb = copy("backbone")
    data = (bb / "model.safetensors").read_bytes()
    (bb / "model.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ArtifactError, match="model.safetensors"):
        samix_hub.load_backbone(bb)


def test_wrong_format_version(copy):
    gen = copy("generator")
    cfg = json.loads((gen / "config.json").read_text())
    cfg["format_version"] = 7
    (gen / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="unknown generator format_version 7"):
        samix_hub.load_generator(gen)
    bb = copy("backbone")
    cfg = json.loads((bb / "config.json").read_text())
    cfg["samix_hub"]["format_version"] = 2
    (bb / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="unknown backbone format_version 2"):
        samix_hub.load_backbone(bb)


def test_mismatched_shapes(copy):
    gen = copy("generator")
    state = load_file(str(gen / "generator.safetensors"))
    state["mixer.query.weight"] = state["mixer.query.weight"][:16].contiguous()
    save_file(state, str(gen / "generator.safetensors"))
    with pytest.raises(ArtifactError, match=r"'mixer.query.weight' has shape \(16, 128, 1, 1\)"):
        samix_hub.load_generator(gen)
    bb = copy("backbone")
    cfg = json.loads((bb / "config.json").read_text())
    cfg["num_classes"] = cfg["model_args"]["num_classes"] = 7
    (bb / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ArtifactError, match=r"'fc.weight' has shape \(10, 128\), config expects \(7, 128\)"
    ):
        samix_hub.load_backbone(bb)


def test_pickles_and_wrong_kind_are_refused(copy):
    gen = copy("generator")
    (gen / "pytorch_model.bin").write_bytes(b"not even a pickle")
    with pytest.raises(ArtifactError, match="pickle"):
        samix_hub.load_generator(gen)
    bb = copy("backbone")
    with pytest.raises(ArtifactError, match="is a samix-backbone, not a samix-generator"):
        samix_hub.load_generator(bb)
