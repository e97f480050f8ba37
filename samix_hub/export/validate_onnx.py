"""Checks of the ONNX graph in a generator or backbone folder (docs/artifacts.md): it parses
as one file without pickles, has the kind's input names and finite weights, its
``samix_hub.*`` metadata agrees with ``config.json``, and it computes what the safetensors
weights compute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from samix_hub.errors import ArtifactError, first_line
from samix_hub.export.generator_config import generator_config_from_dict
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_ONNX,
    BACKBONE_WEIGHTS,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_WEIGHTS,
    ONNX_INPUTS,
)
from samix_hub.models.generator import GeneratorNet

__all__ = ["check_onnx_graph"]

#: (graph, weights) of each kind with a graph.
_FILES = {
    GENERATOR: (GENERATOR_ONNX, GENERATOR_WEIGHTS),
    BACKBONE: (BACKBONE_ONNX, BACKBONE_WEIGHTS),
}


def check_onnx_graph(folder: Path, kind: str, cfg: dict[str, Any], parity: bool) -> None:
    """The graph of ``folder`` (a ``kind`` artifact whose ``config.json`` is ``cfg``): parses,
    has the kind's inputs, finite weights and metadata agreeing with ``cfg``; with ``parity``,
    it also computes what the safetensors weights do on one probe batch."""
    graph, _ = _FILES[kind]
    _check_onnx_file(folder / graph, kind)
    _check_onnx_metadata(cfg, folder / graph, kind)
    if parity:
        _check_onnx_parity(folder, cfg, folder / graph, kind)


def _check_onnx_finite(model: Any, path: Path) -> None:
    """The graph's floating-point initializers (its weights) hold no NaN or infinity."""
    import numpy as np
    from onnx import numpy_helper

    for tensor in model.graph.initializer:
        array = numpy_helper.to_array(tensor)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ArtifactError(
                f"{path}: initializer {tensor.name!r} has {bad} non-finite value(s) "
                "(NaN or inf); the weights are unusable"
            )


def _check_onnx_file(path: Path, kind: str) -> None:
    """Parse the graph (no pickles, single file) and check its input names."""
    from samix_hub.export.onnx import check_onnx

    model = check_onnx(path, full=False)
    _check_onnx_finite(model, path)
    names = tuple(i.name for i in model.graph.input)
    if names != ONNX_INPUTS[kind]:
        raise ArtifactError(f"{path}: graph inputs {names}, expected {ONNX_INPUTS[kind]}")


def _check_onnx_metadata(cfg: dict[str, Any], path: Path, kind: str) -> None:
    """The graph's ``samix_hub.*`` metadata (when it has any) agrees with ``config.json``."""
    import numpy as np

    from samix_hub.export.onnx_metadata import read_metadata

    try:
        meta = read_metadata(path)
    except Exception as exc:  # onnx's DecodeError and friends
        raise ArtifactError(f"{path}: unreadable ONNX metadata ({first_line(exc)})") from None
    if not meta:
        return  # graphs written before the metadata existed
    if kind == GENERATOR:
        expected = {
            "kind": GENERATOR,
            "mean": cfg.get("mean"),
            "std": cfg.get("std"),
            "in_chans": cfg.get("in_chans"),
            "input_size": cfg.get("input_size"),
        }
    else:
        pcfg = cfg.get("pretrained_cfg") or {}
        expected = {
            "kind": BACKBONE,
            "mean": pcfg.get("mean"),
            "std": pcfg.get("std"),
            "input_size": pcfg.get("input_size"),
        }
    for key, want in expected.items():
        if want is None or key not in meta:
            continue
        got = meta[key]
        if isinstance(want, str) or isinstance(got, str):
            same = got == want
        else:
            try:
                a, b = np.asarray(got, float), np.asarray(want, float)
                same = a.shape == b.shape and bool(np.allclose(a, b, atol=1e-6))
            except (TypeError, ValueError):
                same = False
        if not same:
            raise ArtifactError(
                f"{path}: ONNX metadata samix_hub.{key} {got!r} differs from config.json {want!r}"
            )


def _check_onnx_parity(folder: Path, cfg: dict[str, Any], path: Path, kind: str) -> None:
    """Run the graph and the safetensors weights on one fixed probe batch
    (``onnx.generator_parity`` / ``backbone_parity`` with ``probe``, seed 0); refuse a
    difference above ``onnx.PARITY_TOL``. ``samix-hub export`` runs the full set of cases."""
    from safetensors.torch import load_file

    from samix_hub.export.onnx import (
        PARITY_TOL,
        OnnxBackbone,
        OnnxGenerator,
        backbone_parity,
        generator_parity,
    )

    try:
        if kind == GENERATOR:
            config = generator_config_from_dict(cfg, source=str(folder / CONFIG_NAME))
            gen = GeneratorNet(config)
            gen.load_state_dict(load_file(str(folder / GENERATOR_WEIGHTS)))
            gen.eval()
            parity = generator_parity(gen, OnnxGenerator(path, config, device="cpu"), probe=True)
        else:
            import timm

            kwargs = dict(cfg.get("model_args") or {})
            kwargs.setdefault("num_classes", cfg["num_classes"])
            pcfg = cfg.get("pretrained_cfg") or {}
            input_size = pcfg.get("input_size") or [3, 224, 224]
            kwargs.setdefault("in_chans", int(input_size[0]))
            model = timm.create_model(cfg["architecture"], pretrained=False, **kwargs)
            model.load_state_dict(load_file(str(folder / BACKBONE_WEIGHTS)))
            parity = backbone_parity(
                model.eval(),
                OnnxBackbone(path, cfg, device="cpu"),
                pcfg.get("mean") or [0.0] * int(input_size[0]),
                pcfg.get("std") or [1.0] * int(input_size[0]),
                input_size,
                probe=True,
            )
    except ArtifactError:
        raise
    except Exception as exc:  # onnxruntime refusing the graph, a shape that does not fit
        raise ArtifactError(
            f"{path}: cannot be run against the safetensors weights ({first_line(exc)})"
        ) from None
    for key, value in parity.items():
        if not value <= PARITY_TOL[key]:
            raise ArtifactError(
                f"{path}: computes another function than the safetensors weights "
                f"(max |onnx - torch| on {key} {value:.2e} > {PARITY_TOL[key]:.0e}); re-export"
            )
