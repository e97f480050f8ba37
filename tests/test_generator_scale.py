"""The generator's read size (docs/algorithm.md "The generator's read size"): SAMix^P's encoder
reads a downscaled copy of the batch; the mask is still made, and λ-calibrated, at the images'
size.

References are independent of the code under test: the encoder's input seen by a forward hook,
a 2 x 2 average pool of the normalised images, the mean of each mask.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_helpers import run_cli

import samix_hub
from samix_hub.errors import UserError
from samix_hub.mixing.mixup_inputs import MixInputError
from samix_hub.mixing.read_size import DEFAULT_GENERATOR_SCALE, encoder_size, read_copy
from samix_hub.models.generator import GeneratorNet
from samix_hub.train import get_scenario
from samix_hub.train.config import TrainConfig, legacy_values
from samix_hub.train.finetune import FinetuneScenario, finetune_config
from samix_hub.train.frozen import scaled_masks

BUILTIN = Path(samix_hub.__file__).parent / "builtin" / "cifar10-small"


@pytest.fixture(scope="module")
def gen() -> GeneratorNet:
    g = samix_hub.load_generator("builtin:cifar10-small")
    assert isinstance(g, GeneratorNet) and g.config.mixer.calibration == "exact"
    return g


def _batch(n: int = 8, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, size, size, generator=g)
    partner = torch.randperm(n, generator=g)
    lam = torch.rand(n, generator=g) * 0.8 + 0.1
    return images, partner, lam


def test_the_encoder_reads_the_smaller_size_and_the_mask_keeps_lam(gen: GeneratorNet) -> None:
    images, partner, lam = _batch()
    seen: list[tuple[int, ...]] = []
    hook = gen.encoder.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    try:
        mask = gen.masks(images, partner, lam, encoder_size=(16, 16))
    finally:
        hook.remove()
    assert seen == [(8, 3, 16, 16)]  # once per batch, at the read size
    assert mask.shape == (8, 1, 32, 32)  # at the images' size
    assert torch.allclose(mask.mean(dim=(1, 2, 3)), lam, atol=1e-4)  # λ-exact at 32 px
    assert float(mask.min()) >= 0.0 and float(mask.max()) <= 1.0
    # a coarser read gives a different (coarser) mask, not the native one
    assert float((mask - gen.masks(images, partner, lam)).abs().max()) > 1e-2


def test_a_half_size_read_is_the_encoder_on_2x2_means(gen: GeneratorNet) -> None:
    images, partner, lam = _batch()
    x = (images - gen.mean) / gen.std
    feats = gen.encoder(F.avg_pool2d(x, 2))
    expected = gen.mixer(feats, lam, partner, (32, 32))
    got = gen.masks(images, partner, lam, encoder_size=(16, 16))
    assert torch.allclose(got, expected, atol=1e-5)


def test_the_native_size_is_the_default(gen: GeneratorNet) -> None:
    images, partner, lam = _batch()
    native = gen.masks(images, partner, lam)
    assert torch.equal(gen.masks(images, partner, lam, encoder_size=gen.input_size), native)
    assert scaled_masks(gen, 1.0) == gen.masks and scaled_masks(gen, None) == gen.masks


def test_scaled_masks_read_at_the_scaled_native_size(gen: GeneratorNet) -> None:
    images, partner, lam = _batch(size=48)  # images larger than the native 32 px
    got = scaled_masks(gen, 0.5)(images, partner, lam)
    assert got.shape == (8, 1, 48, 48)
    assert torch.equal(got, gen.masks(images, partner, lam, encoder_size=(16, 16)))


@pytest.mark.parametrize(
    ("native", "scale", "expected"),
    [((32, 32), 0.5, (16, 16)), ((224, 224), 0.5, (112, 112)), ((32, 32), 0.1, (8, 8)),
     ((30, 20), 0.5, (15, 10)), ((224, 160), 0.25, (56, 40))],
)  # fmt: skip
def test_encoder_size_rounds_each_side_and_keeps_8_px(native, scale, expected) -> None:
    assert encoder_size(native, scale) == expected


def test_an_onnx_generator_cannot_change_its_read_size() -> None:
    onnx_gen = samix_hub.load_generator("builtin:cifar10-small", runtime="onnx")
    with pytest.raises(UserError, match="--generator-scale: generator scale 0.5 needs a torch"):
        scaled_masks(onnx_gen, 0.5)


def test_the_option_is_checked_and_recorded(tmp_path: Path) -> None:
    base = dict(backbone="resnet18_cifar_w16", data="digits", out=str(tmp_path / "r"))
    cfg = get_scenario("finetune").resolve(
        finetune_config(**base, generator="builtin:cifar10-small", pretrained=False)
    )
    assert cfg.generator_scale == DEFAULT_GENERATOR_SCALE  # filled in, so config.json says it
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(UserError, match="--generator-scale must be in"):
            finetune_config(**base, method="samix-p", generator="x", generator_scale=bad).validate()
    with pytest.raises(UserError, match="--generator-scale is an option of samix-p and of teacher"):
        FinetuneScenario().resolve(
            finetune_config(**base, method="mixup", generator_scale=0.5, pretrained=False)
        )
    sl = TrainConfig(method="mixup", data="digits", backbone="resnet18_cifar_w16", out="-")
    assert sl.resolve().generator_scale is None
    # runs written before the option read the batch at the generator's native size
    assert legacy_values({"method": "samix-p"})["generator_scale"] == 1.0
    assert legacy_values({"method": "mixup"})["generator_scale"] is None
    assert "generator_scale" not in legacy_values({"method": "samix-p", "generator_scale": 0.5})


def test_finetune_records_the_scale_and_rejects_a_bad_one(tmp_path: Path, capsys) -> None:
    args = ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--data", "digits"]
    run = tmp_path / "ft"
    code, out, err = run_cli(
        [*args, "--generator", "builtin:cifar10-small", "--generator-scale", "0.5",
         "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--out", run, "--quiet"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((run / "config.json").read_text())["generator_scale"] == 0.5
    code, _, err = run_cli([*args, "--generator-scale", "0", "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--generator-scale" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_an_int8_graph_of_a_lambda_exact_generator_keeps_lam(tmp_path: Path) -> None:
    """Static int8 quantisation of a λ-exact graph (its calibration loop defeats onnxruntime's
    symbolic shape inference, so pre-processing uses ONNX shape inference only)."""
    from samix_hub.export.int8 import quantize_generator
    from samix_hub.export.onnx import OnnxGenerator

    images, partner, lam = _batch(n=16)
    dst = quantize_generator(BUILTIN / "onnx" / "generator.onnx", tmp_path / "g.int8.onnx", images)
    fp32 = samix_hub.load_generator("builtin:cifar10-small")
    int8 = OnnxGenerator(dst, fp32.config, device="cpu")
    mask = int8.masks(images, partner, lam)
    assert torch.allclose(mask.mean(dim=(1, 2, 3)), lam, atol=1e-3)
    assert float((mask - fp32.masks(images, partner, lam)).abs().mean()) < 0.1


def _reads(gen: GeneratorNet, mixup: samix_hub.SAMixUp, images: torch.Tensor) -> list[tuple]:
    """The sizes the generator's encoder reads during one drop-in call."""
    seen: list[tuple] = []
    hook = gen.encoder.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    try:
        mixup(images, torch.arange(images.shape[0]) % 10)
    finally:
        hook.remove()
    return seen


def test_the_drop_in_reads_at_the_fine_tune_default_and_takes_the_option(gen) -> None:
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    quarter = samix_hub.SAMixUp(gen, num_classes=10, seed=0)
    assert _reads(gen, quarter, images) == [(8, 8)]  # 32 px x 0.25
    full = samix_hub.SAMixUp(gen, num_classes=10, seed=0, generator_scale=1.0)
    assert _reads(gen, full, images) == [(32, 32)]
    half = samix_hub.SAMixUp(gen, num_classes=10, seed=0, generator_scale=0.5)
    assert _reads(gen, half, images) == [(16, 16)]
    onnx_gen = samix_hub.load_generator("builtin:cifar10-small", runtime="onnx")
    x, y = samix_hub.SAMixUp(onnx_gen, num_classes=10, seed=0)(images, torch.arange(8))
    assert x.shape == images.shape and torch.allclose(y.sum(1), torch.ones(8))  # native read
    with pytest.raises(MixInputError, match="needs a torch generator"):
        samix_hub.SAMixUp(onnx_gen, num_classes=10, generator_scale=0.5)
    for bad in (0.0, 2.0, "half"):
        with pytest.raises(MixInputError, match="generator scale"):
            samix_hub.SAMixUp(gen, num_classes=10, generator_scale=bad)


def test_a_teacher_run_trains_the_mixer_at_the_read_it_is_given(tmp_path: Path) -> None:
    """``train --teacher --generator-scale 0.5``: each step's features come from a half-size
    copy, the mixed batch goes through the teacher at full size (the stems' inputs, seen by a
    global forward pre-hook on every 3-channel convolution)."""
    from samix_hub.train import train

    common = dict(data="digits", workers=0, batch_size=16, epochs=1, max_steps=1, eval_every=0)
    teacher = tmp_path / "teacher"
    train(TrainConfig(method="vanilla", backbone="resnet18_cifar_w16", out=str(teacher), **common))
    sizes: set[int] = set()

    def stem(m: torch.nn.Module, args: tuple) -> None:
        if isinstance(m, torch.nn.Conv2d) and m.in_channels == 3 and m.training is False:
            sizes.add(int(args[0].shape[-1]))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(stem)
    try:
        cfg = TrainConfig(
            method="samix", teacher=str(teacher), backbone=None, out=str(tmp_path / "g"),
            generator_scale=0.5, **common,
        )  # fmt: skip
        train(cfg, quiet=True)
    finally:
        hook.remove()
    assert {8, 16} <= sizes  # digits are 16 px: the features read 8 px, the teacher 16 px
    run = json.loads((tmp_path / "g" / "config.json").read_text())
    assert run["generator_scale"] == 0.5 and run["scenario"] == "teacher"


def test_the_read_copy_is_the_images_at_the_encoder_size() -> None:
    """``read_copy``: the images themselves at no scale or 1; else at ``encoder_size`` of their
    size, each 2 x 2 block's mean at half size (bilinear, no antialias), never under 8 px."""
    images = torch.rand(3, 3, 32, 24, generator=torch.Generator().manual_seed(0))
    assert read_copy(images, None) is images and read_copy(images, 1.0) is images
    half = read_copy(images, 0.5)
    assert half.shape[-2:] == (16, 12)
    torch.testing.assert_close(half, F.avg_pool2d(images, 2))
    assert read_copy(images, 0.1).shape[-2:] == (8, 8)
