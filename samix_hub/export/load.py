"""The one reader of local artifact folders: :func:`open_generator` / :func:`open_backbone` from a
folder (also as timm's ``local-dir:FOLDER``), a ``builtin:NAME`` or a resolved source, on torch or
onnxruntime; :func:`read_generator` reads a generator folder. Both take ``(src, runtime, device)``
in that order. ``samix_hub.load_generator`` / ``load_backbone`` (:mod:`samix_hub.hub.api`) add
the Hub downloads in front of them.

Every load validates the folder first (:func:`~samix_hub.export.validate.validate_artifact`):
unknown format versions, missing files and tensors that do not match the config are refused with
an :class:`~samix_hub.errors.ArtifactError` naming the file. Weights are read with safetensors only.
Both runtimes return a :class:`~samix_hub.models.generator.MaskGenerator`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from samix_hub.errors import ONNX_EXTRA, ArtifactError, UserError, require_extra
from samix_hub.export.generator_config import generator_config_from_dict
from samix_hub.export.validate import backbone_meta, check_finite, validate_artifact
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_ONNX,
    BACKBONE_WEIGHTS,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_ONNX_INT8,
    GENERATOR_WEIGHTS,
)
from samix_hub.format.repo_ref import ResolvedSource, resolve_local
from samix_hub.models import backbones as _backbones  # noqa: F401  (registers the CIFAR backbones in timm)
from samix_hub.models.generator import GeneratorNet, MaskGenerator

__all__ = [
    "RUNTIMES",
    "check_runtime",
    "open_generator",
    "open_backbone",
    "read_generator",
    "GeneratorFactory",
]

#: Builds the torch generator from its config (``samix_hub.Generator`` adds the Hub methods).
GeneratorFactory = type[GeneratorNet]


#: The runtimes an artifact loads on.
RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str) -> None:
    """An unknown runtime, or ``onnx`` without the ``onnx`` extra, is refused before anything is
    resolved or downloaded."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r} (torch or onnx)")
    if runtime == "onnx":
        require_extra(("onnx", "onnxruntime"), ONNX_EXTRA, "runtime='onnx'")


def _resolve(
    src: str | os.PathLike[str] | ResolvedSource, runtime: str, kind: str
) -> ResolvedSource:
    check_runtime(runtime)
    resolved = src if isinstance(src, ResolvedSource) else resolve_local(src, runtime)
    if resolved.kind is not None and resolved.validated in (runtime, "all"):
        found = resolved.kind  # hub.pull validated these files for this runtime
    else:
        found = validate_artifact(resolved.path, runtime)
    if found != kind:
        raise ArtifactError(f"{resolved.path}: is a {found}, not a {kind}")
    return resolved


def read_generator(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    cls: GeneratorFactory = GeneratorNet,
) -> GeneratorNet:
    """The torch generator of a folder, without the full validation; errors name the file
    that is missing (``FileNotFoundError``) or wrong (``ValueError``)."""
    folder = Path(path)
    cfg_path = folder / CONFIG_NAME
    weights = folder / GENERATOR_WEIGHTS
    for p in (cfg_path, weights):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: missing (not a samix-hub generator folder?)")
    try:
        data = read_json_bounded(cfg_path)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
    gen = cls(generator_config_from_dict(data, source=str(cfg_path)))
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises SafetensorError / OSError
        raise ValueError(f"{weights}: unreadable safetensors file ({exc})") from None
    own = gen.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"{weights}: tensors do not match {cfg_path.name} "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(
                f"{weights}: tensor {key!r} has shape {tuple(value.shape)}, "
                f"config expects {tuple(own[key].shape)}"
            )
    check_finite(state, weights)
    gen.load_state_dict(state)
    return gen.to(device).freeze()


def open_generator(
    src: str | os.PathLike[str] | ResolvedSource,
    runtime: str = "torch",
    device: str | torch.device | None = None,
    int8: bool = False,
    cls: GeneratorFactory = GeneratorNet,
) -> MaskGenerator:
    """A frozen generator callable as ``gen(images [0, 1], partner, lam) -> (mask, mixed)``.

    ``runtime="torch"``: a :class:`~samix_hub.models.generator.GeneratorNet` (``cls``) on
    ``device`` (default cpu). ``runtime="onnx"``: a :class:`~samix_hub.export.onnx.OnnxGenerator`;
    ``device`` auto (the default) takes CUDA when onnxruntime offers it, else CPU (see
    ``.providers``); ``int8`` picks the quantised graph when the folder has one. ``.source``
    records where it came from.

    ``src``: a resolved source, a folder, ``local-dir:FOLDER`` or ``builtin:NAME``
    (:func:`samix_hub.hub.api.load_generator` also downloads Hub repos).
    """
    resolved = _resolve(src, runtime, GENERATOR)
    folder = resolved.path
    gen: Any
    if runtime == "torch":
        if int8:
            raise UserError("int8 generators run with runtime='onnx' only")
        try:
            gen = read_generator(folder, device=device or "cpu", cls=cls)
        except (ValueError, FileNotFoundError) as exc:
            raise ArtifactError(str(exc)) from None
    else:
        from samix_hub.export.onnx import OnnxGenerator

        cfg_path = folder / CONFIG_NAME
        try:
            config = generator_config_from_dict(read_json_bounded(cfg_path), str(cfg_path))
        except ValueError as exc:
            raise ArtifactError(str(exc)) from None
        graph = folder / (GENERATOR_ONNX_INT8 if int8 else GENERATOR_ONNX)
        if not graph.is_file():
            raise ArtifactError(f"{graph}: missing (export with --quantize int8 to get it)")
        gen = OnnxGenerator(graph, config, device=str(device or "auto"))
    gen.source = resolved
    return gen


def open_backbone(
    src: str | os.PathLike[str] | ResolvedSource,
    runtime: str = "torch",
    device: str | torch.device | None = None,
) -> tuple[Any, dict[str, Any]]:
    """(model, config.json as a dict) for a backbone folder, ``local-dir:FOLDER`` or repo id.

    The positional order is that of :func:`open_generator`: ``src``, ``runtime``, ``device``.
    ``runtime="torch"``: the timm model in eval mode, built from ``config.json`` through timm's
    own ``local-dir:`` loader and filled from ``model.safetensors`` (never from a pickle, even
    when timm wrote ``pytorch_model.bin`` beside it); it expects normalised input
    (``config["pretrained_cfg"]`` mean/std), as every timm model. ``runtime="onnx"``: a
    :class:`~samix_hub.export.onnx.OnnxBackbone` taking images in [0, 1].
    """
    import timm

    resolved = _resolve(src, runtime, BACKBONE)
    folder = resolved.path
    config = read_json_bounded(folder / CONFIG_NAME)
    backbone_meta(config, folder / CONFIG_NAME)  # refuses an unknown samix-hub format version
    if runtime == "onnx":
        from samix_hub.export.onnx import OnnxBackbone

        if not (folder / BACKBONE_ONNX).is_file():  # a plain timm folder has no graph
            raise ArtifactError(f"{folder / BACKBONE_ONNX}: missing ({BACKBONE}, runtime onnx)")
        model: Any = OnnxBackbone(folder / BACKBONE_ONNX, config, device=str(device or "auto"))
    else:
        weights = folder / BACKBONE_WEIGHTS
        try:
            # the architecture and pretrained_cfg from config.json; no weights read by timm
            model = timm.create_model(f"local-dir:{folder}", pretrained=False)
            model.load_state_dict(load_file(str(weights)))
        except (RuntimeError, ValueError, KeyError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ArtifactError(f"{folder}: timm cannot build the backbone ({first})") from None
        model = model.to(device or "cpu").eval()
    model.source = resolved
    return model, config
