"""Static int8 quantisation of a generator graph with onnxruntime.quantization (docs/artifacts.md
"Generator": ``onnx/generator.int8.onnx``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from samix_hub.errors import UserError
from samix_hub.export.onnx import check_onnx, quiet_exporter
from samix_hub.export.onnx_metadata import read_metadata, write_metadata
from samix_hub.fileio import atomic_write

__all__ = ["quantize_generator", "calibration_feeds"]


def calibration_feeds(
    calibration: torch.Tensor, seed: int = 0, batch_size: int = 32
) -> list[dict[str, np.ndarray]]:
    """The generator graph's inputs for calibration: batches of ``calibration`` with seeded
    random partners and λ ~ Beta(2, 2); batches of fewer than 2 images are skipped."""
    g = torch.Generator().manual_seed(seed)
    feeds: list[dict[str, np.ndarray]] = []
    for start in range(0, calibration.shape[0], batch_size):
        x = calibration[start : start + batch_size].float()
        n = x.shape[0]
        if n < 2:
            continue
        # The median of 3 uniforms is Beta(2, 2) distributed (order statistics).
        lam = torch.rand(n, 3, generator=g).sort(dim=1).values[:, 1]
        feeds.append(
            {
                "images": x.numpy(),
                "partner": torch.randperm(n, generator=g).numpy(),
                "lam": lam.float().numpy(),
            }
        )
    return feeds


def quantize_generator(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    calibration: torch.Tensor,
    seed: int = 0,
    batch_size: int = 32,
) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) with onnxruntime.quantization.

    Only the encoder's convolutions are quantised (the encoder dominates the cost); the mixer's
    1x1 convolutions (whose sharp attention amplifies errors), normalisation, upsampling and the
    final ``mask * x + (1 - mask) * x[partner]`` stay in float32, so the mixed images follow the
    mask exactly.

    ``calibration``: real images in [0, 1] (N x C x H x W at the native size); partners are random
    and λ ~ Beta(2, 2) (docs/algorithm.md "Online supervised SAMix"), drawn with a seeded torch.Generator.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    feeds = calibration_feeds(calibration, seed, batch_size)
    if not feeds:
        raise UserError("int8 quantisation needs at least 2 calibration images")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    import onnx

    graph = onnx.load(str(src)).graph
    mixer_convs = [
        n.name for n in graph.node if n.op_type == "Conv" and n.input[1].startswith("mixer.")
    ]
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        pre = tmp + ".pre.onnx"
        try:
            with quiet_exporter():
                quant_pre_process(str(src), pre, skip_symbolic_shape=True)
                quantize_static(
                    pre,
                    tmp,
                    _Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=True,
                    op_types_to_quantize=["Conv"],
                    nodes_to_exclude=mixer_convs,
                    activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                )
        finally:
            Path(pre).unlink(missing_ok=True)

    atomic_write(dst, write)
    check_onnx(dst)
    meta = read_metadata(src)
    return write_metadata(dst, {**meta, "quantized": "int8"}) if meta else dst
