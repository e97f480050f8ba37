"""What one generator pass costs per image, for its card (docs/artifacts.md "Generator").

SAMix^P's price is one generator pass per batch (arXiv 2111.15454, SAMix^P); a user choosing a
generator wants it per image, per runtime, next to its size. :func:`generator_cost` counts the
FLOPs of a pass at the native size and at half of it (``--generator-scale 0.5``,
docs/algorithm.md "The generator's read size") and times each runtime the folder has (torch,
onnxruntime fp32, onnxruntime int8) on the exporting machine, a few seconds at most.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from samix_hub.format.artifact import GENERATOR_ONNX, GENERATOR_ONNX_INT8
from samix_hub.mixing.read_size import encoder_size
from samix_hub.models.generator import GeneratorNet

__all__ = ["GeneratorCost", "generator_cost", "cost_text"]

#: Images per timed batch, and timed repeats (median) after one warm-up batch.
BATCH = 16
REPEATS = 3


@dataclass
class GeneratorCost:
    """FLOPs per image (native and half size) and measured ms per image by runtime."""

    size: tuple[int, int]
    gflops: float
    gflops_half: float
    ms_per_image: dict[str, float] = field(default_factory=dict)
    machine: str = ""


def _gflops(gen: GeneratorNet, size: tuple[int, int], read: tuple[int, int] | None) -> float:
    n = 4
    images = torch.rand(n, gen.config.in_chans, *size, generator=torch.Generator().manual_seed(0))
    partner = torch.roll(torch.arange(n), 1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        gen.masks(images, partner, 0.5, encoder_size=read)
    return counter.get_total_flops() / n / 1e9


def _ms_per_image(run: Callable[[], object]) -> float:
    run()  # warm-up: first-call allocations, onnxruntime's graph set-up
    times = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times) / BATCH


def generator_cost(gen: GeneratorNet, folder: Path | None = None) -> GeneratorCost:
    """Cost of ``gen`` at its native size; the ONNX graphs in ``folder`` are timed too."""
    from samix_hub.export.onnx import OnnxGenerator

    size = gen.input_size
    half = encoder_size(size, 0.5)
    cost = GeneratorCost(size, _gflops(gen, size, None), _gflops(gen, size, half))
    g = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH, gen.config.in_chans, *size, generator=g)
    partner = torch.randperm(BATCH, generator=g)
    lam = torch.rand(BATCH, generator=g) * 0.8 + 0.1
    threads = torch.get_num_threads()
    with torch.no_grad():
        cost.ms_per_image["torch"] = _ms_per_image(partial(gen.masks, images, partner, lam))
    graphs = {"onnxruntime": GENERATOR_ONNX, "onnxruntime int8": GENERATOR_ONNX_INT8}
    for name, rel in graphs.items():
        if folder is not None and (folder / rel).is_file():
            ort = OnnxGenerator(folder / rel, gen.config, device="cpu", threads=threads)
            cost.ms_per_image[name] = _ms_per_image(partial(ort.masks, images, partner, lam))
    cost.machine = f"{platform.machine()} CPU, {threads} thread{'s' if threads > 1 else ''}"
    return cost


def cost_text(cost: GeneratorCost) -> str:
    """The card's cost section: FLOPs, then ms / image per runtime."""
    h, w = cost.size
    lines = [
        f"One pass at the native {h} x {w} px costs **{cost.gflops:.3g} GFLOPs per image** "
        "(the convolutions and matrix products of encoder and mixer; "
        f"{cost.gflops_half:.3g} with `--generator-scale 0.5`, the encoder reading the batch at "
        "half size). Measured when this folder was written "
        f"({cost.machine}, batch {BATCH}, median of {REPEATS}):",
        "",
        "| runtime | ms per image | images/s |",
        "|---|---|---|",
    ]
    for name, ms in cost.ms_per_image.items():
        lines.append(f"| {name} | {ms:.3g} | {1e3 / ms:.0f} |")
    return "\n".join(lines)
