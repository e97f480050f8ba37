"""The artifact package owns the format: file names in one module, the generator config written
once (with its ``encoder`` block), one loader whose result is a ``MaskGenerator`` on both
runtimes (docs/artifacts.md)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

import samix_hub
from samix_hub import Generator, load_generator
from samix_hub.export.generator import write_generator
from samix_hub.export.generator_config import generator_config_from_dict
from samix_hub.export.load import read_generator
from samix_hub.export.schema import ConfigFieldError
from samix_hub.format import artifact as fmt
from samix_hub.models import GeneratorConfig, MaskGenerator, MixerConfig

ROOT = Path(samix_hub.__file__).resolve().parent
FILE_NAMES = {
    fmt.CONFIG_NAME,
    fmt.CARD_NAME,
    fmt.GENERATOR_WEIGHTS,
    fmt.BACKBONE_WEIGHTS,
    fmt.GENERATOR_ONNX,
    fmt.GENERATOR_ONNX_INT8,
    fmt.BACKBONE_ONNX,
}
#: The run folder's own ``config.json`` (train/, docs/artifacts.md "Run folder").
RUN_FOLDER = {"train/checkpoint.py", "train/loop.py"}


def _tiny() -> Generator:
    torch.manual_seed(0)
    cfg = GeneratorConfig(backbone="resnet18_cifar_w16", mixer=MixerConfig(in_channels=64))
    return Generator(cfg)


def test_file_names_are_spelled_only_in_the_format_module():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "format/artifact.py" or rel in RUN_FOLDER:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and node.value in FILE_NAMES
                and id(node) not in docstrings
            ):
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert found == []


def test_written_config_holds_the_encoder_block_and_reads_back(tmp_path):
    gen = _tiny()
    folder = write_generator(gen, tmp_path / "g")
    assert sorted(p.name for p in folder.iterdir()) == [fmt.CONFIG_NAME, fmt.GENERATOR_WEIGHTS]
    data = json.loads((folder / fmt.CONFIG_NAME).read_text())
    assert data["kind"] == fmt.GENERATOR
    assert data["format_version"] == fmt.GENERATOR_FORMAT_VERSION
    assert data["encoder"] == {
        "architecture": "resnet18_cifar_w16",
        "stage": 3,
        "in_chans": 3,
        "out_channels": 64,
        "reduction": gen.encoder.reduction,
    }
    assert generator_config_from_dict(data, "x") == gen.config
    back = read_generator(folder)
    x, partner = torch.rand(2, 3, 32, 32), torch.tensor([1, 0])
    assert torch.equal(back.masks(x, partner, 0.4), gen.masks(x, partner, 0.4))


def test_schema_refuses_another_kind_naming_the_source():
    with pytest.raises(ConfigFieldError, match=r"^cfg\.json: kind is 'samix-backbone'"):
        generator_config_from_dict({"kind": "samix-backbone"}, "cfg.json")


def test_one_loader_gives_a_mask_generator_on_both_runtimes():
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    partner, lam = torch.tensor([1, 2, 3, 0]), torch.full((4,), 0.3)
    torch_gen = load_generator("builtin:cifar10-small")
    onnx_gen = load_generator("builtin:cifar10-small", runtime="onnx", device="cpu")
    for gen in (torch_gen, onnx_gen):
        assert isinstance(gen, MaskGenerator)
    assert torch.allclose(
        torch_gen.masks(images, partner, lam), onnx_gen.masks(images, partner, lam), atol=1e-4
    )
    # the public name returns the class with the Hub methods
    assert isinstance(samix_hub.load_generator("builtin:cifar10-small"), samix_hub.Generator)
