"""What an artifact is, from its config, card and files (:func:`describe`): what
``samix-hub info`` prints and ``export/release.py`` records."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from samix_hub.data.names import dataset_info
from samix_hub.errors import ArtifactError
from samix_hub.export.cards import GENERATOR_METRICS
from samix_hub.export.validate import detect_kind, list_files, validate_artifact
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_WEIGHTS,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_WEIGHTS,
    MIXED_DATASET,
    PICKLE_SUFFIXES,
)

__all__ = ["describe"]


def _params(path: Path) -> int | None:
    """Parameter count from a safetensors header (no tensor is read)."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    except Exception:
        return None


def _card(folder: Path) -> dict[str, Any]:
    from huggingface_hub import metadata_load

    readme = folder / CARD_NAME
    try:
        return (metadata_load(readme) or {}) if readme.is_file() else {}
    except Exception:
        return {}


def _obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else {} (a broken config is described, not raised)."""
    return value if isinstance(value, dict) else {}


def _seq(value: Any) -> list[Any]:
    """``value`` when it is a JSON list, else []."""
    return value if isinstance(value, list) else []


def _results(meta: dict[str, Any]) -> list[str]:
    out = []
    for model in map(_obj, _seq(meta.get("model-index"))):
        for res in map(_obj, _seq(model.get("results"))):
            ds = _obj(res.get("dataset"))
            for m in map(_obj, _seq(res.get("metrics"))):
                out.append(
                    f"{m.get('name') or m.get('type')}: {m.get('value')} "
                    f"({ds.get('name')}, {ds.get('split', 'test')})"
                )
    return out


def _measured(prov: dict[str, Any]) -> list[str]:
    """A generator's own mask statistics from its provenance (no Hub metric: not in the card's
    model-index), as :func:`_results` words them."""
    measured = prov.get("measured")
    if not isinstance(measured, dict):
        return []
    values = measured.get("values") or {}
    data = dataset_info(prov.get("data"))[0]
    return [
        f"{label}: {values[key]} ({data}, test)"
        for key, label, _ in GENERATOR_METRICS
        if key in values
    ]


def _timm_provenance(folder: Path, pcfg: dict[str, Any]) -> dict[str, Any]:
    """What a plain timm folder says about itself: its writer, timm's pretrained tag, and the
    pickle files beside ``model.safetensors`` that are never loaded."""
    prov: dict[str, Any] = {
        "written_by": "timm (config.json + model.safetensors, no samix_hub section)"
    }
    for key in ("tag", "hf_hub_id", "license"):
        if isinstance(pcfg.get(key), str):
            prov[key] = pcfg[key]
    pickles = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES
    )
    if pickles:
        prov["ignored"] = ", ".join(pickles) + " (pickles: never loaded)"
    return prov


def describe(folder: str | Path, validate: bool = True) -> dict[str, Any]:
    """A JSON-serialisable summary of an artifact folder."""
    folder = Path(folder)
    kind = detect_kind(folder)
    info: dict[str, Any] = {"kind": kind, "path": str(folder)}
    if validate:
        try:
            # torch first: a broken config or weights is named before a missing ONNX graph.
            validate_artifact(folder, "torch")
            validate_artifact(folder, "all")
            info["valid"] = True
        except ArtifactError as exc:
            info["valid"] = False
            info["error"] = str(exc)
    cfg = _obj(read_json_bounded(folder / CONFIG_NAME)) if kind != MIXED_DATASET else {}
    meta = _obj(_card(folder))
    if kind == GENERATOR:
        mixer = _obj(cfg.get("mixer"))
        info["architecture"] = (
            f"{cfg.get('backbone')} to stage {cfg.get('stage')} + {mixer.get('variant')} mixer "
            f"({mixer.get('in_channels')} channels)"
        )
        size = _seq(cfg.get("input_size"))
        info["input"] = f"{cfg.get('in_chans')} x {' x '.join(map(str, size))}, in [0, 1]"
        info["normalisation"] = {"mean": cfg.get("mean"), "std": cfg.get("std")}
        info["parameters"] = _params(folder / GENERATOR_WEIGHTS)
        prov = dict(_obj(cfg.get("provenance")))
        stats = prov.pop("mask_statistics", None) or cfg.get("mask_statistics")
        if isinstance(stats, dict):
            info["mask_statistics"] = stats
        info["provenance"] = prov
        info["format_version"] = cfg.get("format_version")
    elif kind == BACKBONE:
        pcfg = _obj(cfg.get("pretrained_cfg"))
        info["architecture"] = f"{cfg.get('architecture')} ({cfg.get('num_classes')} classes)"
        info["input"] = " x ".join(map(str, _seq(pcfg.get("input_size"))))
        info["normalisation"] = {"mean": pcfg.get("mean"), "std": pcfg.get("std")}
        info["labels"] = _seq(cfg.get("label_names")) or None
        info["parameters"] = _params(folder / BACKBONE_WEIGHTS)
        samix = _obj(cfg.get("samix_hub"))
        info["provenance"] = _obj(samix.get("provenance"))
        info["format_version"] = samix.get("format_version")
        if not samix:  # a folder timm wrote (save_for_hf / push_to_hf_hub)
            info["provenance"] = _timm_provenance(folder, pcfg)
    else:
        import pyarrow.parquet as pq

        rows = 0
        for shard in sorted((folder / "data").glob("*.parquet")):
            try:
                rows += pq.read_metadata(shard).num_rows
            except Exception as exc:
                raise ArtifactError(f"{shard}: unreadable parquet ({exc})") from None
        info["rows"] = rows
        info["provenance"] = {k: v for k, v in meta.items() if k not in ("configs", "dataset_info")}
    info["card"] = {
        k: meta.get(k)
        for k in ("library_name", "license", "tags", "datasets", "base_model")
        if k in meta
    }
    info["results"] = _results(meta) or _measured(info.get("provenance") or {})
    info["files"] = list_files(folder)
    return info
