"""The backbone folder of an export: timm's Hub layout (``model.safetensors``, ``config.json``
with a ``samix_hub`` section), ONNX, parity check, card, validation (docs/artifacts.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.nn as nn

from samix_hub._version import __version__
from samix_hub.export.card_recipe import limitations_text, recipe_table, smoke_run
from samix_hub.export.cards import (
    dataset_info,
    format_value,
    render_card,
    results_text,
    summarize_metrics,
    validate_card,
)
from samix_hub.export.common import ExportReport, check_parity, copy_curves, files_cell, num_params
from samix_hub.export.load import open_backbone
from samix_hub.export.provenance import teacher_summary
from samix_hub.export.run import run_chans, run_image_size
from samix_hub.export.validate import list_files, validate_artifact
from samix_hub.fileio import atomic_write_text
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_FORMAT_VERSION,
    BACKBONE_ONNX,
    CARD_NAME,
    CONFIG_NAME,
)

__all__ = ["write_backbone_folder", "base_model"]


def write_backbone_folder(
    model: nn.Module,
    folder: Path,
    *,
    run_config: dict[str, Any],
    metrics: Sequence[dict[str, Any]],
    weights: str = "model",
    onnx: bool = True,
    opset: int = 18,
    repo_id: str | None = None,
    base_model: str | None = None,
    run_dir: Path | None = None,
) -> ExportReport:
    """timm Hub layout (``save_for_hf``) + ONNX + parity + card into ``folder`` (staging);
    the run's ``curves.png`` (``run_dir``) is copied and shown on the card."""
    from timm.models import save_for_hf

    from samix_hub.export.onnx import backbone_parity, export_backbone_onnx

    cfg = run_config
    h, w = run_image_size(cfg)
    c = run_chans(cfg)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    names = list(cfg.get("class_names") or [])
    smoke = smoke_run(cfg, metrics)
    samix_meta = _samix_section(cfg, weights, smoke)
    model_config: dict[str, Any] = {"samix_hub": samix_meta, "pretrained_cfg": {"tag": "samix"}}
    if names and len(names) == model.num_classes:
        model_config["label_names"] = names
    save_for_hf(
        model,
        str(folder),
        model_config=model_config,
        safe_serialization=True,
        data_config={"input_size": (c, h, w), "mean": mean, "std": std, "crop_pct": 1.0},
    )
    _drop_inherited(folder / CONFIG_NAME)
    report = ExportReport(kind=BACKBONE, path=folder)
    curves_line = copy_curves(run_dir, folder)
    if onnx:
        export_backbone_onnx(
            model, folder / BACKBONE_ONNX, mean, std, (c, h, w), opset=opset,
            label_names=model_config.get("label_names"),
        )  # fmt: skip
        onnx_model, _ = open_backbone(folder, runtime="onnx", device="cpu")
        report.parity = backbone_parity(model, onnx_model, mean, std, (c, h, w))
    check_parity(report.parity, folder)
    key = _accuracy_key(cfg, weights)
    summary = summarize_metrics(list(metrics), key)
    fields = _card_fields(model, cfg, weights=weights, onnx=onnx, opset=opset, repo_id=repo_id)
    fields["recipe"] = recipe_table(cfg, metrics)
    fields["results"] = _results(summary, key) + curves_line
    fields["extra_limitations"] = limitations_text(onnx, smoke)
    fields["files"] = files_cell(folder)
    text = render_card(
        "backbone",
        fields,
        model_name=repo_id.split("/")[-1] if repo_id else f"{cfg['backbone']}-{cfg.get('method')}",
        data_spec=cfg.get("data"),
        summary=summary,
        metric_name="Top-1 (k-NN)" if "knn" in key else "Top-1",
        base_model=base_model,
        extra_tags=("image-classification", "timm"),
    )
    atomic_write_text(folder / CARD_NAME, text)
    validate_card(folder / CARD_NAME, "backbone")
    validate_artifact(folder, "all" if onnx else "torch")
    report.files = list_files(folder)
    return report


def _samix_section(cfg: dict[str, Any], weights: str, smoke: str | None) -> dict[str, Any]:
    """The ``samix_hub`` section of a backbone's ``config.json`` (docs/artifacts.md)."""
    return {
        "kind": BACKBONE,
        "format_version": BACKBONE_FORMAT_VERSION,
        "onnx": {"input": "images", "range": [0.0, 1.0], "normalised_inside": True},
        "weights": weights,
        "provenance": {
            "scenario": cfg.get("scenario"),
            "method": cfg.get("method"),
            "data": dataset_info(cfg.get("data"))[2],
            "epochs": cfg.get("epochs"),
            "max_steps": cfg.get("max_steps"),
            "smoke_run": smoke is not None,
            "seed": cfg.get("seed"),
            "generator": cfg.get("generator"),
            "teacher": cfg.get("teacher_provenance"),
            "trained_with": cfg.get("samix_hub_version"),
            "samix_hub_version": __version__,
        },
    }


def _accuracy_key(cfg: dict[str, Any], weights: str) -> str:
    """The metric the card reports: k-NN for self-supervised or headless runs."""
    if cfg.get("scenario") == "ssl" or not int(cfg["num_classes"]):
        return "knn_top1"
    return "ema_top1" if weights == "ema" else "top1"


def _results(summary: dict[str, Any] | None, key: str) -> str:
    what = "accuracy of these weights" + (" (k-NN on features)" if "knn" in key else "")
    return results_text(summary, what, None)


def _card_fields(
    model: nn.Module,
    cfg: dict[str, Any],
    *,
    weights: str,
    onnx: bool,
    opset: int,
    repo_id: str | None,
) -> dict[str, Any]:
    """The backbone card's template fields that describe the model (not the run's results)."""
    h, w = run_image_size(cfg)
    c = run_chans(cfg)
    names = list(cfg.get("class_names") or [])
    nc = int(cfg["num_classes"])
    data_name = dataset_info(cfg.get("data"))[0]
    fields = {
        "title": f"{cfg['backbone']} ({cfg.get('method', 'samix')}) on {data_name}",
        "backbone": cfg["backbone"],
        "head_summary": f"classifier ({nc} classes)" if nc else "feature extractor (no head)",
        "method": cfg.get("method", "unknown"),
        "repo_id": repo_id or "ORG/NAME",
        "input_size": format_value((c, h, w)),
        "in_chans": c,
        "height": h,
        "width": w,
        "mean": format_value(tuple(cfg["mean"])),
        "std": format_value(tuple(cfg["std"])),
        "opset": opset,
        "onnx_output": "logits" if nc else "features",
        "num_params": num_params(model),
        "classes": ", ".join(names) if names else str(nc),
        "trained_how": f"trained with **{cfg.get('method', 'unknown')}** on **{data_name}**",
        "weights_source": "EMA copy of the classifier" if weights == "ema" else "online classifier",
        "files": "",
        "samix_hub_version": __version__,
    }
    teacher = cfg.get("teacher_provenance")
    if isinstance(teacher, dict):  # a teacher run: these are the teacher's frozen weights
        head = cfg.get("teacher_head") or {}
        refit = " with a linear head refit on its frozen features" if head.get("fitted") else ""
        fields["trained_how"] = (
            f"used unchanged{refit} as the frozen teacher of a {cfg.get('method')} generator "
            f"trained on **{data_name}** (teacher: {teacher_summary(teacher)})"
        )
        fields["weights_source"] = "the frozen teacher" + (" (head refit)" if refit else "")
    return fields


#: ``pretrained_cfg`` keys that describe the timm weights a run started from (their paper,
#: origin, notes, Hub id), not the weights this export holds: dropped from its config.json.
INHERITED_KEYS = (
    "paper_ids", "paper_name", "origin_url", "notes", "description", "hf_hub_id",
    "hf_hub_filename", "url", "file", "source",
)  # fmt: skip


def _drop_inherited(config_path: Path) -> None:
    """Remove :data:`INHERITED_KEYS` from the ``pretrained_cfg`` timm's writer copied in."""
    config = read_json_bounded(config_path)
    pcfg = config.get("pretrained_cfg")
    if isinstance(pcfg, dict) and any(key in pcfg for key in INHERITED_KEYS):
        config["pretrained_cfg"] = {k: v for k, v in pcfg.items() if k not in INHERITED_KEYS}
        atomic_write_text(config_path, json.dumps(config, indent=2) + "\n")


def base_model(config: dict[str, Any]) -> str | None:
    """A Hub repo id the run started from (fine-tuning), when the run config records one."""
    for key in ("base_model", "backbone_provenance", "init", "pretrained", "backbone_source"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("repo_id")
        if isinstance(value, str) and value.count("/") == 1 and not Path(value).exists():
            return value.split("@")[0]
    return None
