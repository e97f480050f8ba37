"""ONNX export of generators and backbones, and onnxruntime wrappers that behave like the torch ones.

docs/artifacts.md: single-file graphs (no external data), dynamic batch, height and width.
The generator graph takes ``images`` in [0, 1] (N x C x H x W float32), ``partner`` (int64, N) and
``lam`` (float32, N); it normalises inside, runs the encoder once per image and returns ``mask``
(weight of each image) and ``mixed``. The backbone graph takes ``images`` in [0, 1] too and
normalises inside (deviation from timm's ONNX convention, which expects normalised input: the
graph is self-contained, like the generator's), returning ``logits`` (``features`` when the
backbone has no classifier head). Both graphs carry ``samix_hub.*`` ``metadata_props``
(``export/onnx_metadata.py``): the wrappers read them to check the input range and report them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.onnx_metadata import (
    backbone_metadata,
    check_against_config,
    check_input_range,
    generator_metadata,
    session_metadata,
    write_metadata,
)
from samix_hub.fileio import atomic_write
from samix_hub.models.generator import GeneratorConfig, GeneratorNet

__all__ = [
    "DEFAULT_OPSET",
    "GENERATOR_INPUTS",
    "GENERATOR_OUTPUTS",
    "NormalizedBackbone",
    "quiet_exporter",
    "export_generator_onnx",
    "export_backbone_onnx",
    "check_onnx",
    "choose_providers",
    "OnnxGenerator",
    "OnnxBackbone",
    "generator_parity",
    "backbone_parity",
]

DEFAULT_OPSET = 18
GENERATOR_INPUTS = ("images", "partner", "lam")
GENERATOR_OUTPUTS = ("mask", "mixed")


class NormalizedBackbone(nn.Module):
    """``model((images - mean) / std)``: a timm classifier fed with [0, 1] images."""

    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(list(mean)).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model((images - self.mean) / self.std)


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """The torch exporter prints progress on stdout; stdout is for data, so send it to stderr."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_shapes: dict[str, dict[int, Any]],
    opset: int,
) -> Path:
    if opset < DEFAULT_OPSET:
        raise UserError(f"--opset {opset}: the torch exporter needs opset >= {DEFAULT_OPSET}")

    def write(tmp: str) -> None:
        with quiet_exporter():
            torch.onnx.export(
                module,
                args,
                tmp,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                external_data=False,
                verbose=False,
            )

    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)
    check_onnx(path)
    return path


def _dims() -> tuple[Any, Any, Any]:
    dim = torch.export.Dim
    return dim("batch", min=1), dim("height", min=8), dim("width", min=8)


def export_generator_onnx(gen: GeneratorNet, path: str | os.PathLike[str], opset: int = 18) -> Path:
    """Export a :class:`~samix_hub.models.generator.GeneratorNet` (CPU, eval) to one ONNX file."""
    cfg = gen.config
    h, w = cfg.input_size
    n = 4
    g = torch.Generator().manual_seed(0)
    example = (
        torch.rand(n, cfg.in_chans, h, w, generator=g),
        torch.tensor([1, 2, 3, 0], dtype=torch.int64),
        torch.rand(n, generator=g),
    )
    b, hh, ww = _dims()
    shapes = {"images": {0: b, 2: hh, 3: ww}, "partner": {0: b}, "lam": {0: b}}
    out = _export(
        gen.cpu().eval(), example, Path(path), GENERATOR_INPUTS, GENERATOR_OUTPUTS, shapes, opset
    )
    return write_metadata(out, generator_metadata(cfg))


def export_backbone_onnx(
    model: nn.Module,
    path: str | os.PathLike[str],
    mean: Sequence[float],
    std: Sequence[float],
    input_size: Sequence[int],
    opset: int = 18,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Export a timm classifier behind :class:`NormalizedBackbone`; ``input_size`` is (C, H, W)."""
    c, h, w = (int(v) for v in input_size)
    wrapped = NormalizedBackbone(model.cpu().eval(), mean, std).eval()
    example = (torch.rand(2, c, h, w, generator=torch.Generator().manual_seed(0)),)
    b, hh, ww = _dims()
    out = "logits" if getattr(model, "num_classes", 1) else "features"
    graph = _export(
        wrapped, example, Path(path), ["images"], [out], {"images": {0: b, 2: hh, 3: ww}}, opset
    )
    return write_metadata(graph, backbone_metadata(mean, std, (c, h, w), out, label_names))


def check_onnx(path: str | os.PathLike[str], full: bool = True) -> Any:
    """Load and check an ONNX file (``onnx.checker`` full check); refuse external data."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError on truncated files
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from None
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise ArtifactError(f"{path}: uses external data; samix-hub ships single-file graphs")
    try:
        onnx.checker.check_model(model, full_check=full)
    except Exception as exc:
        raise ArtifactError(f"{path}: fails onnx.checker ({exc})") from None
    return model


def choose_providers(device: str = "auto") -> list[str]:
    """onnxruntime providers: CUDA first when the installed onnxruntime offers it, then CPU.

    ``device="cuda"`` without a CUDA provider is a clear error; whether CUDA *actually* runs is
    only known once a session exists (see :attr:`OnnxGenerator.providers`).
    """
    import onnxruntime as ort

    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {device!r} for onnxruntime (auto, cpu or cuda)")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise UserError(
            "device cuda: this onnxruntime has no CUDAExecutionProvider "
            "(install samix-hub[gpu], i.e. onnxruntime-gpu, instead of onnxruntime)"
        )
    return ["CPUExecutionProvider"]


def _session(path: Path, device: str, threads: int | None = None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        sess = ort.InferenceSession(str(path), opts, providers=choose_providers(device))
    except Exception as exc:
        raise ArtifactError(f"{path}: onnxruntime cannot load it ({exc})") from None
    if device == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
        raise UserError(f"device cuda: onnxruntime fell back to {sess.get_providers()} for {path}")
    return sess


class OnnxGenerator:
    """An onnxruntime session with the torch generator's call: ``gen(images, partner, lam)``.

    Inputs may be torch tensors on any device; outputs are torch tensors on the images' device.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: GeneratorConfig,
        device: str = "auto",
        threads: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.session = _session(self.path, device, threads)
        names = tuple(i.name for i in self.session.get_inputs())
        if names != GENERATOR_INPUTS:
            raise ArtifactError(f"{self.path}: graph inputs {names}, expected {GENERATOR_INPUTS}")
        #: the graph's ``samix_hub.*`` metadata ({} for graphs written before it existed)
        self.metadata = session_metadata(self.session)
        check_against_config(self.metadata, config.mean, config.std, str(self.path))

    @property
    def providers(self) -> list[str]:
        """The providers onnxruntime actually uses, best first."""
        return list(self.session.get_providers())

    @property
    def input_size(self) -> tuple[int, int]:
        h, w = self.config.input_size
        return (h, w)

    def _feed(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> dict[str, np.ndarray]:
        if images.dim() != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(
                f"generator expects N x {self.config.in_chans} x H x W images in [0, 1], "
                f"got shape {tuple(images.shape)}"
            )
        n = images.shape[0]
        feed = images.detach().float().cpu().contiguous().numpy()
        check_input_range(feed, self.metadata, str(self.path))
        lam_t = torch.as_tensor(lam, dtype=torch.float32).detach().cpu().reshape(-1)
        if lam_t.numel() == 1:
            lam_t = lam_t.expand(n)
        if lam_t.numel() != n:
            raise ValueError(f"lam has {lam_t.numel()} values for a batch of {n}")
        return {
            "images": feed,
            "partner": torch.as_tensor(partner).detach().cpu().long().numpy(),
            "lam": np.ascontiguousarray(lam_t.numpy()),
        }

    def __call__(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask, mixed = self.session.run(list(GENERATOR_OUTPUTS), self._feed(images, partner, lam))
        return torch.from_numpy(mask).to(images.device), torch.from_numpy(mixed).to(images.device)

    def masks(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> torch.Tensor:
        return self(images, partner, lam)[0]

    def __repr__(self) -> str:
        return f"OnnxGenerator({str(self.path)!r}, providers={self.providers})"


class OnnxBackbone:
    """An onnxruntime session for a backbone graph: ``model(images in [0, 1]) -> logits``."""

    def __init__(
        self, path: str | os.PathLike[str], config: dict[str, Any], device: str = "auto"
    ) -> None:
        self.path = Path(path)
        self.config = config
        self.session = _session(self.path, device)
        #: the graph's ``samix_hub.*`` metadata ({} for graphs written before it existed)
        self.metadata = session_metadata(self.session)
        cfg = config.get("pretrained_cfg") or {}
        check_against_config(self.metadata, cfg.get("mean"), cfg.get("std"), str(self.path))

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    @property
    def label_names(self) -> list[str]:
        """Class names recorded in the graph (else in config.json), index = logit column."""
        return list(self.metadata.get("label_names") or self.config.get("label_names") or [])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        feed = images.detach().float().cpu().contiguous().numpy()
        check_input_range(feed, self.metadata, str(self.path))
        (out,) = self.session.run(None, {"images": feed})
        return torch.from_numpy(out).to(images.device)

    def __repr__(self) -> str:
        return f"OnnxBackbone({str(self.path)!r}, providers={self.providers})"


#: Max |torch - onnxruntime| accepted, at export and whenever a folder is validated with both
#: runtimes: mask and mixed 1e-4, logits 1e-3.
PARITY_TOL = {"mask": 1e-4, "mixed": 1e-4, "logits": 1e-3}


def _cases(native: Sequence[int], probe: bool = False) -> list[tuple[int, int, int]]:
    """(batch, height, width) cases for parity: several batch sizes, native and other sizes;
    with ``probe``, one batch whose batch size and image size both differ from the traced
    example's (4 images at the native size), so a graph fixed to either still fails."""
    h, w = (int(v) for v in native)
    if probe:
        return [(3, h + h // 2, w + w // 2)]
    return [(1, h, w), (5, h, w), (3, h + h // 2, w + w // 2), (2, max(8, h // 2), max(8, w))]


@torch.no_grad()
def generator_parity(
    gen: nn.Module, onnx_gen: Any, seed: int = 0, probe: bool = False
) -> dict[str, float]:
    """Max |torch - onnxruntime| on mask and mixed over :func:`_cases` (random images in
    [0, 1]); ``probe``: one batch (what validation and ``save_pretrained`` run)."""
    g = torch.Generator().manual_seed(seed)
    worst = {"mask": 0.0, "mixed": 0.0}
    for n, h, w in _cases(onnx_gen.input_size, probe):
        x = torch.rand(n, onnx_gen.config.in_chans, h, w, generator=g)
        partner = torch.randperm(n, generator=g)
        lam = torch.rand(n, generator=g)
        t_mask, t_mixed = gen(x, partner, lam)
        o_mask, o_mixed = onnx_gen(x, partner, lam)
        worst["mask"] = max(worst["mask"], float((t_mask - o_mask).abs().max()))
        worst["mixed"] = max(worst["mixed"], float((t_mixed - o_mixed).abs().max()))
    return worst


@torch.no_grad()
def backbone_parity(
    model: nn.Module,
    onnx_model: OnnxBackbone,
    mean: Sequence[float],
    std: Sequence[float],
    input_size: Sequence[int],
    seed: int = 0,
    probe: bool = False,
) -> dict[str, float]:
    """Max |torch - onnxruntime| on the outputs over :func:`_cases` (``probe``: one batch)."""
    g = torch.Generator().manual_seed(seed)
    wrapped = NormalizedBackbone(model.eval(), mean, std).eval()
    worst = 0.0
    for n, h, w in _cases(input_size[1:], probe):
        x = torch.rand(n, int(input_size[0]), h, w, generator=g)
        worst = max(worst, float((wrapped(x) - onnx_model(x)).abs().max()))
    return {"logits": worst}
