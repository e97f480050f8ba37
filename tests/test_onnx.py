"""ONNX graphs: single file, dynamic batch/height/width, encoder once per image, parity, providers."""

from __future__ import annotations

import sys
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch

from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.onnx import (
    OnnxGenerator,
    check_onnx,
    choose_providers,
    export_generator_onnx,
    generator_parity,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_export import sharpen  # noqa: E402

ARCH = "resnet18_cifar_w16"


def _generator(variant: str = "samix", size: int = 32) -> Generator:
    torch.manual_seed(0)
    mixer = MixerConfig(in_channels=64) if variant == "samix" else MixerConfig.automix(64)
    gen = Generator(GeneratorConfig(ARCH, mixer, input_size=(size, size)))
    if variant == "samix":
        sharpen(gen.mixer)
    else:
        with torch.no_grad():
            for p in gen.mixer.parameters():
                p.mul_(50)
    return gen.freeze()


@pytest.fixture(scope="module")
def samix_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Generator, Path]:
    gen = _generator()
    path = export_generator_onnx(gen, tmp_path_factory.mktemp("onnx") / "generator.onnx")
    return gen, path


def test_graph_is_single_file_with_dynamic_axes(samix_onnx):
    gen, path = samix_onnx
    assert [p.name for p in path.parent.iterdir()] == ["generator.onnx"]  # no external data
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    assert dims["images"][1] == 3
    assert all(isinstance(d, str) and d for d in (dims["images"][0], *dims["images"][2:]))
    assert dims["partner"] == [dims["images"][0]] and dims["lam"] == [dims["images"][0]]
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert types == {"images": onnx.TensorProto.FLOAT, "partner": onnx.TensorProto.INT64,
                     "lam": onnx.TensorProto.FLOAT}  # fmt: skip
    assert [o.name for o in model.graph.output] == ["mask", "mixed"]


def test_encoder_runs_once_per_image_in_the_graph(samix_onnx):
    gen, path = samix_onnx
    # every Conv of the graph is one module of the generator: none is duplicated for the
    # partners (their features are gathered, not recomputed)
    n_torch = sum(isinstance(m, torch.nn.Conv2d) for m in gen.modules())
    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    for fn in model.functions:
        nodes += list(fn.node)
    n_onnx = sum(node.op_type == "Conv" for node in nodes)
    assert n_onnx == n_torch
    assert any(node.op_type.startswith("Gather") for node in nodes)


@pytest.mark.parametrize("n,h,w", [(1, 32, 32), (7, 32, 32), (3, 48, 48), (2, 20, 36)])
def test_parity_several_batch_and_image_sizes(samix_onnx, n, h, w):
    gen, path = samix_onnx
    sess = OnnxGenerator(path, gen.config, device="cpu")
    g = torch.Generator().manual_seed(n * h)
    x = torch.rand(n, 3, h, w, generator=g)
    partner = torch.randperm(n, generator=g)
    lam = torch.rand(n, generator=g)
    with torch.no_grad():
        t_mask, t_mixed = gen(x, partner, lam)
    o_mask, o_mixed = sess(x, partner, lam)
    assert o_mask.shape == (n, 1, h, w) and o_mixed.shape == (n, 3, h, w)
    assert (o_mask - t_mask).abs().max() <= 1e-4
    assert (o_mixed - t_mixed).abs().max() <= 1e-4
    # a scalar λ is the same as the same λ for every image
    s_mask = sess.masks(x, partner, 0.3)
    v_mask = sess.masks(x, partner, torch.full((n,), 0.3))
    assert torch.equal(s_mask, v_mask)


def test_automix_generator_parity(tmp_path):
    gen = _generator("automix")
    path = export_generator_onnx(gen, tmp_path / "g.onnx")
    parity = generator_parity(gen, OnnxGenerator(path, gen.config, device="cpu"))
    assert parity["mask"] <= 1e-4 and parity["mixed"] <= 1e-4


def test_input_errors_are_clear(samix_onnx):
    gen, path = samix_onnx
    sess = OnnxGenerator(path, gen.config, device="cpu")
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        sess(torch.rand(2, 1, 32, 32), torch.tensor([1, 0]), 0.5)
    with pytest.raises(ValueError, match="lam has 3 values for a batch of 2"):
        sess(torch.rand(2, 3, 32, 32), torch.tensor([1, 0]), torch.rand(3))


def test_providers_choice():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    auto = choose_providers("auto")
    assert auto[-1] == "CPUExecutionProvider"
    assert (auto[0] == "CUDAExecutionProvider") == has_cuda
    if not has_cuda:
        with pytest.raises(UserError, match="no CUDAExecutionProvider"):
            choose_providers("cuda")
    with pytest.raises(UserError, match="unknown device"):
        choose_providers("tpu")


def test_broken_graphs_are_refused(samix_onnx, tmp_path):
    _, path = samix_onnx
    data = path.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArtifactError, match="truncated.onnx"):
        check_onnx(bad)
    model = onnx.load(str(path))
    onnx.save_model(model, str(tmp_path / "ext.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, size_threshold=0)  # fmt: skip
    with pytest.raises(ArtifactError, match="external data"):
        check_onnx(tmp_path / "ext.onnx")
    with pytest.raises(UserError, match="opset >= 18"):
        export_generator_onnx(_generator(), tmp_path / "old.onnx", opset=13)
    assert not (tmp_path / "old.onnx").exists()


@pytest.mark.parametrize("scale", [1.0, 10.0])
@pytest.mark.slow
def test_calibrated_generator_parity_and_exact_means_in_onnx(tmp_path, scale):
    torch.manual_seed(0)
    mixer = MixerConfig(in_channels=64, calibration="exact", variance="image")
    gen = Generator(GeneratorConfig(ARCH, mixer, input_size=(32, 32)))
    sharpen(gen.mixer)
    with torch.no_grad():  # scale 10: near-binary masks (logits up to about ±40)
        gen.mixer.value.conv[1].conv.weight.mul_(scale)
    gen.freeze()
    path = export_generator_onnx(gen, tmp_path / "g.onnx")
    sess = OnnxGenerator(path, gen.config, device="cpu")
    parity = generator_parity(gen, sess)
    assert parity["mask"] <= 1e-4 and parity["mixed"] <= 1e-4
    g = torch.Generator().manual_seed(1)
    for n, h, w in [(8, 32, 32), (5, 48, 40)]:
        x = torch.rand(n, 3, h, w, generator=g)
        partner = torch.randperm(n, generator=g)
        lam = torch.linspace(0.02, 0.98, n)
        o_mask = sess.masks(x, partner, lam)
        with torch.no_grad():
            t_mask = gen.masks(x, partner, lam)
        assert (o_mask.mean(dim=(1, 2, 3)) - lam).abs().max() <= 1e-3
        assert (t_mask.mean(dim=(1, 2, 3)) - lam).abs().max() <= 1e-3
        assert (o_mask - t_mask).abs().max() <= 1e-4
    if scale > 1:  # the masks really are near-binary
        assert ((t_mask < 0.01) | (t_mask > 0.99)).float().mean() > 0.4
