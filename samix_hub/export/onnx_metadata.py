"""Self-describing ONNX graphs: the ``metadata_props`` samix-hub writes and reads (docs/artifacts.md).

Every key starts with ``samix_hub.``; values are strings (lists and numbers as JSON). A plain
onnxruntime user reads them with ``session.get_modelmeta().custom_metadata_map``; the wrappers
in ``export/onnx.py`` read them to check the input range and to report what a graph expects.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samix_hub.errors import ArtifactError, UserError
from samix_hub.fileio import atomic_write
from samix_hub.fileio.guard import loads_bounded
from samix_hub.format.artifact import ONNX_LAM_CONVENTION, ONNX_MASK_CONVENTION
from samix_hub.mixing.masks import LAM_MARGIN

__all__ = [
    "PREFIX",
    "INPUT_TOLERANCE",
    "generator_metadata",
    "backbone_metadata",
    "write_metadata",
    "read_metadata",
    "session_metadata",
    "check_input_range",
    "check_against_config",
]

PREFIX = "samix_hub."
#: How far inputs may stray outside the recorded range before a wrapper refuses them.
INPUT_TOLERANCE = 1e-2


def _common(kind: str) -> dict[str, Any]:
    from samix_hub._version import __version__

    return {
        "kind": kind,
        "format_version": 1,
        "samix_hub_version": __version__,
        "input": "images",
        "input_range": [0.0, 1.0],
        "normalised_inside": True,
    }


def generator_metadata(config: Any, quantized: str | None = None) -> dict[str, Any]:
    """The metadata of a generator graph built from its ``GeneratorConfig``."""
    h, w = config.input_size
    meta = {
        **_common("samix-generator"),
        "mean": list(config.mean),
        "std": list(config.std),
        "in_chans": int(config.in_chans),
        "input_size": [int(h), int(w)],
        "inputs": "images float32 [N, C, H, W] in [0, 1] (not normalised); partner int64 [N]; "
        "lam float32 [N] in [0, 1]",
        "outputs": "mask float32 [N, 1, H, W] in [0, 1]; mixed float32 [N, C, H, W] in [0, 1]",
        "mask_convention": ONNX_MASK_CONVENTION,
        "lam_convention": ONNX_LAM_CONVENTION,
        "calibration": config.mixer.calibration,
        "mask_mean": "equals lam[i]"
        if config.mixer.calibration == "exact"
        else "approximates lam[i]",
        "margin_fallback": "not in the graph: callers use a constant lam mask outside "
        f"[{LAM_MARGIN:g}, {1 - LAM_MARGIN:g}]",
    }
    if quantized:
        meta["quantized"] = quantized
    return meta


def backbone_metadata(
    mean: Sequence[float],
    std: Sequence[float],
    input_size: Sequence[int],
    output: str,
    label_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The metadata of a backbone graph; ``input_size`` is (C, H, W)."""
    return {
        **_common("samix-backbone"),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "input_size": [int(v) for v in input_size],
        "output": output,
        "label_names": list(label_names or []),
    }


def _encode(meta: Mapping[str, Any]) -> dict[str, str]:
    return {
        PREFIX + k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in meta.items()
    }


def write_metadata(path: str | os.PathLike[str], meta: Mapping[str, Any]) -> Path:
    """Set the ``samix_hub.*`` ``metadata_props`` of an ONNX file (atomically, others kept)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in model.metadata_props if not p.key.startswith(PREFIX)}
    props.update(_encode(meta))
    del model.metadata_props[:]
    for key in sorted(props):
        model.metadata_props.add(key=key, value=props[key])
    atomic_write(path, lambda tmp: onnx.save(model, tmp))
    return path


def _decode(props: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in props.items():
        if not key.startswith(PREFIX):
            continue
        try:
            out[key[len(PREFIX) :]] = loads_bounded(value)
        except json.JSONDecodeError:
            out[key[len(PREFIX) :]] = value
    return out


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``samix_hub.*`` metadata of an ONNX file, without the prefix ({} for older graphs)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ArtifactError(f"{path}: not a readable ONNX model ({exc})") from None
    return _decode({p.key: p.value for p in model.metadata_props})


def session_metadata(session: Any) -> dict[str, Any]:
    """:func:`read_metadata` of an onnxruntime session (``custom_metadata_map``)."""
    return _decode(dict(session.get_modelmeta().custom_metadata_map))


def check_input_range(images: np.ndarray, meta: Mapping[str, Any], what: str) -> None:
    """Refuse images outside the graph's ``input_range`` (default [0, 1]) with a hint."""
    lo_ok, hi_ok = (float(v) for v in meta.get("input_range", [0.0, 1.0]))
    if images.size == 0:
        return
    lo, hi = float(images.min()), float(images.max())
    if lo >= lo_ok - INPUT_TOLERANCE and hi <= hi_ok + INPUT_TOLERANCE:
        return
    hint = (
        "0-255 pixels? divide by 255"
        if hi > 2.0 and lo >= -INPUT_TOLERANCE
        else "normalised input? this graph normalises inside (metadata samix_hub.normalised_inside)"
    )
    raise UserError(
        f"{what}: images span [{lo:.3g}, {hi:.3g}], outside the graph's input range "
        f"[{lo_ok:g}, {hi_ok:g}] (metadata samix_hub.input_range): {hint}"
    )


def check_against_config(meta: Mapping[str, Any], mean: Any, std: Any, what: str) -> None:
    """A graph whose recorded mean/std differ from its folder's config is refused."""
    for key, value in (("mean", mean), ("std", std)):
        if key in meta and value is not None:
            if not np.allclose(np.asarray(meta[key], float), np.asarray(value, float), atol=1e-6):
                raise ArtifactError(
                    f"{what}: ONNX metadata {PREFIX}{key} {meta[key]} differs from config.json "
                    f"{list(value)}"
                )
