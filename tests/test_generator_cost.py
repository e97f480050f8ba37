"""A generator's cost per image (export/cost.py), as its card states it.

The FLOP reference is independent of torch's counter: every convolution's multiply-adds from its
output size and kernel (forward hooks), plus the mixer's two attention products.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.nn as nn

import samix_hub
from samix_hub.export.cost import cost_text, generator_cost
from samix_hub.models.generator import GeneratorNet

BUILTIN = Path(samix_hub.__file__).parent / "builtin" / "cifar10-small"


def _reference_gflops(gen: GeneratorNet, size: tuple[int, int], read: tuple[int, int]) -> float:
    """2 x multiply-adds of every conv (hooks) and of q^T k and P v, per image."""
    n = 2
    flops = 0

    def conv_hook(m: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal flops
        assert isinstance(m, nn.Conv2d)
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        flops += 2 * out.numel() * k

    hooks = [m.register_forward_hook(conv_hook) for m in gen.modules() if isinstance(m, nn.Conv2d)]
    try:
        images = torch.rand(n, 3, *size)
        with torch.no_grad():
            gen.masks(images, torch.tensor([1, 0]), 0.5, encoder_size=read)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        feats = gen.encoder(torch.rand(1, 3, *read))
    hw = feats.shape[-2] * feats.shape[-1]
    flops += n * (2 * hw * hw * gen.mixer.inter_channels + 2 * hw * hw)
    return flops / n / 1e9


def test_flops_match_an_independent_count_and_halving_the_read_quarters_them(
    tmp_path: Path,
) -> None:
    gen = samix_hub.load_generator("builtin:cifar10-small")
    assert isinstance(gen, GeneratorNet)
    folder = tmp_path / "g"
    shutil.copytree(BUILTIN, folder)
    cost = generator_cost(gen, folder)
    assert cost.size == (32, 32)
    assert abs(cost.gflops - _reference_gflops(gen, (32, 32), (32, 32))) <= 1e-3 * cost.gflops
    half = _reference_gflops(gen, (32, 32), (16, 16))
    assert abs(cost.gflops_half - half) <= 1e-3 * half
    assert 3.0 < cost.gflops / cost.gflops_half < 4.5  # convs scale with the pixels read
    # every runtime the folder has is timed (the builtin has no int8 graph)
    assert set(cost.ms_per_image) == {"torch", "onnxruntime"}
    assert all(ms > 0 for ms in cost.ms_per_image.values())
    text = cost_text(cost)
    assert f"{cost.gflops:.3g} GFLOPs per image" in text and "| onnxruntime |" in text
    assert generator_cost(gen).ms_per_image.keys() == {"torch"}  # no folder: torch only
