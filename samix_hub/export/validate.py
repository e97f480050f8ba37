"""Artifact folders (docs/artifacts.md): what kind a folder is, and whether it is complete.

Kinds: ``samix-generator`` (config.json + generator.safetensors [+ onnx/generator.onnx] +
README.md), ``samix-backbone`` (timm Hub layout: config.json + model.safetensors
[+ onnx/model.onnx] + README.md) and ``samix-mixed-dataset`` (data/*.parquet shards + README.md).
Validation never unpickles anything: weights are read with safetensors only. The ONNX graph
checks are in :mod:`samix_hub.export.validate_onnx`, a mixed data set's in
:mod:`samix_hub.export.validate_dataset`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samix_hub.errors import ArtifactError, NotAnArtifactError, UserError, first_line
from samix_hub.export.generator_config import generator_config_from_dict
from samix_hub.export.schema import check_backbone_config
from samix_hub.export.validate_dataset import validate_mixed_dataset
from samix_hub.export.validate_onnx import check_onnx_graph
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_FORMAT_VERSION,
    BACKBONE_ONNX,
    BACKBONE_WEIGHTS,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_WEIGHTS,
    MIXED_DATASET,
    ONNX_INPUTS,
    PICKLE_SUFFIXES,
)
from samix_hub.models.generator import GeneratorNet

__all__ = [
    "GENERATOR",
    "BACKBONE",
    "MIXED_DATASET",
    "detect_kind",
    "validate_artifact",
    "required_files",
    "PICKLE_SUFFIXES",
    "BACKBONE_FORMAT_VERSION",
    "backbone_meta",
    "list_files",
    "is_plain_timm",
]


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ArtifactError(f"{path}: missing")
    try:
        data = read_json_bounded(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object")
    return data


def _pickle_files(folder: Path) -> list[str]:
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES
    )


def detect_kind(path: str | Path) -> str:
    """The artifact kind of a folder, from its files; an error names what is wrong.

    A timm folder (``timm.models.save_for_hf`` / ``push_to_hf_hub``) with ``model.safetensors``
    beside ``pytorch_model.bin`` is a backbone: its pickles are ignored, never read. Pickle
    weights without safetensors are refused with a one-line error saying to convert them.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise NotAnArtifactError(f"{folder}: no such folder")
    pickles = _pickle_files(folder)
    if (folder / "data").is_dir() and any((folder / "data").glob("*.parquet")) and not pickles:
        return MIXED_DATASET
    cfg_path = folder / CONFIG_NAME
    if pickles:
        cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
        timm_layout = cfg.get("kind") != GENERATOR and "architecture" in cfg
        if timm_layout and (folder / BACKBONE_WEIGHTS).is_file():
            return BACKBONE  # the safetensors file is used; the pickles are never opened
        if timm_layout:
            raise ArtifactError(
                f"{folder}: timm weights only as pickles ({', '.join(pickles[:3])}); samix-hub "
                f"never loads pickles: convert them to safetensors ({BACKBONE_WEIGHTS}, e.g. "
                "timm.models.save_for_hf(model, DIR, safe_serialization=True))"
            )
        raise ArtifactError(
            f"{folder}: contains pickle weights {pickles[:3]}; samix-hub only loads safetensors"
        )
    if not cfg_path.is_file():
        raise NotAnArtifactError(
            f"{folder}: not a samix-hub artifact (no config.json, no data/*.parquet)"
        )
    cfg = _read_json(cfg_path)
    if cfg.get("kind") == GENERATOR:
        return GENERATOR
    if "architecture" in cfg:
        return BACKBONE
    raise NotAnArtifactError(f"{cfg_path}: neither a samix-generator nor a timm backbone config")


def is_plain_timm(folder: str | Path) -> bool:
    """A backbone folder timm wrote (no ``samix_hub`` section in its ``config.json``)."""
    cfg_path = Path(folder) / CONFIG_NAME
    try:
        cfg = read_json_bounded(cfg_path)
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "architecture" in cfg and not cfg.get("samix_hub")


def required_files(kind: str, runtime: str = "all") -> list[str]:
    """Files an artifact of ``kind`` must hold for ``runtime`` (torch, onnx or all)."""
    if runtime not in ("torch", "onnx", "all"):
        raise UserError(f"unknown runtime {runtime!r} (torch, onnx or all)")
    if kind == GENERATOR:
        torch_files, onnx_files = [GENERATOR_WEIGHTS], [GENERATOR_ONNX]
    elif kind == BACKBONE:
        torch_files, onnx_files = [BACKBONE_WEIGHTS], [BACKBONE_ONNX]
    elif kind == MIXED_DATASET:
        return [CARD_NAME]
    else:
        raise ArtifactError(f"unknown artifact kind {kind!r}")
    files = [CONFIG_NAME]
    if runtime in ("torch", "all"):
        files += torch_files
    if runtime in ("onnx", "all"):
        files += onnx_files
    return files


def _check_safetensors(path: Path, expected: dict[str, tuple[int, ...]]) -> None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # SafetensorError on truncated/corrupt files
        raise ArtifactError(f"{path}: unreadable safetensors file ({exc})") from None
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"{path}: tensors do not match config.json (missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise ArtifactError(
                f"{path}: tensor {key!r} has shape {shapes[key]}, config expects {shape}"
            )
    # Reading every tensor catches truncation that the header alone does not show.
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    except Exception as exc:
        raise ArtifactError(f"{path}: corrupt or truncated ({exc})") from None
    check_finite(tensors, path)


def check_finite(tensors: dict[str, Any], path: str | Path) -> None:
    """Refuse weights holding NaN or infinity (a diverged run mixes all-black images)."""
    import torch

    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ArtifactError(
                f"{path}: tensor {key!r} has {bad} non-finite value(s) (NaN or inf); "
                "the weights are unusable"
            )


def _validate_generator(folder: Path, runtime: str) -> None:
    cfg_path = folder / CONFIG_NAME
    try:
        config = generator_config_from_dict(_read_json(cfg_path), source=str(cfg_path))
        if runtime in ("torch", "all"):
            expected = {k: tuple(v.shape) for k, v in GeneratorNet(config).state_dict().items()}
            _check_safetensors(folder / GENERATOR_WEIGHTS, expected)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None


def backbone_meta(cfg: dict[str, Any], cfg_path: str | Path) -> dict[str, Any]:
    """The ``samix_hub`` section of a backbone config ({} for a plain timm repo); checks version."""
    meta = cfg.get("samix_hub") or {}
    if not isinstance(meta, dict):
        raise ArtifactError(f"{cfg_path}: 'samix_hub' must be an object")
    version = meta.get("format_version", BACKBONE_FORMAT_VERSION)
    if version != BACKBONE_FORMAT_VERSION:
        raise ArtifactError(
            f"{cfg_path}: unknown backbone format_version {version!r} "
            f"(this samix-hub reads version {BACKBONE_FORMAT_VERSION})"
        )
    return meta


def _validate_backbone(folder: Path, runtime: str) -> None:
    import timm

    from samix_hub.models import backbones as _backbones  # noqa: F401  (registers the CIFAR backbones)

    cfg_path = folder / CONFIG_NAME
    cfg = _read_json(cfg_path)
    backbone_meta(cfg, cfg_path)
    # Every field's type and range; also refuses configs that name files, URLs or other repos.
    in_chans = check_backbone_config(cfg, str(cfg_path))
    arch = cfg["architecture"]
    # timm's writer records the constructor arguments (``model_args``); build as timm would.
    kwargs = dict(cfg.get("model_args") or {})
    kwargs.setdefault("num_classes", cfg["num_classes"])
    kwargs.setdefault("in_chans", in_chans)
    if runtime in ("torch", "all"):
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except (RuntimeError, TypeError, ValueError, KeyError, AssertionError) as exc:
            raise ArtifactError(
                f"{cfg_path}: timm cannot build architecture {arch!r} with these model_args "
                f"({first_line(exc)})"
            ) from None
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        _check_safetensors(folder / BACKBONE_WEIGHTS, expected)


def validate_artifact(path: str | Path, runtime: str = "all") -> str:
    """Check a folder is a complete artifact for ``runtime``; return its kind.

    ``runtime="all"`` needs every file of the kind, except the ONNX graph of a plain timm
    backbone folder (timm publishes none; when there is one it is checked).

    Raises :class:`~samix_hub.errors.ArtifactError` naming the file that is missing or wrong.
    """
    folder = Path(path)
    kind = detect_kind(folder)
    if (
        kind == BACKBONE
        and runtime == "all"
        and not (folder / BACKBONE_ONNX).is_file()
        and is_plain_timm(folder)
    ):
        runtime = "torch"  # timm publishes no ONNX graph: "everything it has" is the weights
    for name in required_files(kind, runtime):
        if not (folder / name).is_file():
            raise ArtifactError(f"{folder / name}: missing ({kind} artifact, runtime {runtime})")
    if kind == GENERATOR:
        _validate_generator(folder, runtime)
    elif kind == BACKBONE:
        _validate_backbone(folder, runtime)
    else:
        validate_mixed_dataset(folder)
    if kind in ONNX_INPUTS and runtime in ("onnx", "all"):
        weights = required_files(kind, "torch")[-1]
        # both files present: the graph must compute what the weights do (a pull for
        # onnxruntime fetches the weights too, for this check; hub/transfer.py:allow_patterns)
        parity = runtime == "all" or (folder / weights).is_file()
        check_onnx_graph(folder, kind, _read_json(folder / CONFIG_NAME), parity)
    return kind


def list_files(path: str | Path) -> dict[str, int]:
    """Relative path -> size in bytes of every file in an artifact folder (hidden ones skipped)."""
    folder = Path(path)
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }
