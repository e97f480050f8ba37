"""A training run folder -> Hub-ready ``generator/`` and ``backbone/`` folders, validated.

Reads ``RUN_DIR/config.json``, ``metrics.jsonl`` and ``checkpoints/last.pt`` (``weights_only``).
The generator is the EMA encoder truncated after stage 3 plus the mixer (docs/algorithm.md "SAMix^P");
the backbone is the timm classifier in timm's Hub layout. Each folder is written into a hidden
staging folder, checked (files, tensors, ONNX checker, torch vs onnxruntime parity, card) and
only then renamed into place, so a failed export never leaves a folder that looks complete.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ._version import __version__
from .artifact.format import (
    BACKBONE,
    BACKBONE_FORMAT_VERSION,
    BACKBONE_ONNX,
    CARD_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_ONNX_INT8,
)
from .artifact.load import load_backbone, load_generator
from .artifact.schema import generator_config_dict
from .artifact.validate import list_files, validate_artifact
from .artifact.write import write_generator
from .cards import (
    dataset_info,
    format_value,
    generator_results_text,
    mixer_summary,
    recipe_table,
    render_card,
    results_text,
    summarize_generator_metrics,
    summarize_metrics,
    teacher_summary,
    validate_card,
)
from .engine.run_reader import (
    Run,
    build_backbone,
    build_generator,
    load_checkpoint,
    load_run,
    run_chans,
    run_image_size,
)
from .errors import ArtifactError, UserError
from .fileio import atomic_write_text

__all__ = [
    "Run",
    "ExportReport",
    "load_run",
    "load_checkpoint",
    "build_generator",
    "build_backbone",
    "write_generator_folder",
    "write_backbone_folder",
    "export_run",
    "PARITY_TOL",
    "finalize_folder",
    "staging_folder",
]

#: Max |torch - onnxruntime| accepted (issue 6): mask and mixed 1e-4, logits 1e-3.
PARITY_TOL = {"mask": 1e-4, "mixed": 1e-4, "logits": 1e-3}
WHAT = ("generator", "backbone")


@dataclass
class ExportReport:
    """What an export wrote and measured."""

    kind: str
    path: Path
    files: dict[str, int] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    int8: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "files": self.files,
            "parity": self.parity,
            "int8": self.int8,
        }


def finalize_folder(stage: Path, target: Path, force: bool) -> None:
    """Rename a checked staging folder onto ``target`` (replacing it only with ``force``)."""
    old = None
    if target.exists():
        if not force:
            raise UserError(f"{target}: exists; pass --force to replace it")
        old = target.with_name(f".{target.name}.old-{stage.name}")
        target.rename(old)
    stage.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def staging_folder(out: Path, name: str) -> Path:
    """A hidden, empty folder beside the final one (same file system, so rename is atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out))


def _num_params(module: nn.Module) -> str:
    n = sum(p.numel() for p in module.parameters())
    return f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k"


def _files_cell(folder: Path) -> str:
    return ", ".join(f"`{k}`" for k in list_files(folder) if k != CARD_NAME) + f", `{CARD_NAME}`"


def write_generator_folder(
    gen: Any,
    folder: Path,
    *,
    run_config: dict[str, Any] | None,
    metrics: Sequence[dict[str, Any]],
    onnx: bool = True,
    opset: int = 18,
    repo_id: str | None = None,
    int8_calibration: torch.Tensor | None = None,
    int8_eval: torch.Tensor | None = None,
) -> ExportReport:
    """Weights, config, ONNX (+ int8), parity, card, validation into ``folder`` (a staging dir)."""
    from .onnx import export_generator_onnx, generator_parity, quantize_generator

    write_generator(gen, folder)
    cfg = gen.config
    data = generator_config_dict(gen)
    report = ExportReport(kind=GENERATOR, path=folder)
    if onnx:
        export_generator_onnx(gen, folder / GENERATOR_ONNX, opset=opset)
        report.parity = generator_parity(gen, load_generator(folder, "onnx", device="cpu"))
        if int8_calibration is not None:
            quantize_generator(
                folder / GENERATOR_ONNX, folder / GENERATOR_ONNX_INT8, int8_calibration
            )
            report.int8 = _int8_fidelity(
                folder, int8_eval if int8_eval is not None else int8_calibration
            )
    _check_parity(report.parity, folder)
    prov = cfg.provenance
    own = summarize_generator_metrics(list(metrics))
    h, w = cfg.input_size
    origin, scorer = _generator_origin(cfg, prov, run_config, list(metrics))
    exact = cfg.mixer.calibration == "exact"
    fields = {
        "title": f"SAMix generator: {cfg.backbone} on {dataset_info(prov.get('data'))[0]}",
        "backbone": cfg.backbone,
        "stage": cfg.stage,
        "method": prov.get("method", "samix"),
        "repo_id": repo_id or "ORG/NAME",
        "in_chans": cfg.in_chans,
        "height": h,
        "width": w,
        "opset": opset,
        "feature_channels": gen.encoder.out_channels,
        "mixer_summary": mixer_summary(cfg.mixer.to_dict()),
        "mean": format_value(tuple(cfg.mean)),
        "std": format_value(tuple(cfg.std)),
        "lam_convention": data["lam_convention"],
        "files": "",
        "recipe": recipe_table(run_config),
        "results": generator_results_text(own, scorer),
        "origin": origin,
        "mask_mean": "its mean equals λ exactly"
        if exact
        else "its mean is free (not calibrated to λ; see the measured slope)",
        "mean_limitation": "its mean equals λ (λ-exact calibration)."
        if exact
        else "its mean is not calibrated to λ: check the measured slope.",
        "extra_limitations": "" if onnx else "- This export has no ONNX graph.\n",
        "samix_hub_version": __version__,
    }
    fields["files"] = _files_cell(folder)
    data_spec = (run_config or {}).get("data", prov.get("data"))
    text = render_card(
        "generator",
        fields,
        model_name=repo_id.split("/")[-1] if repo_id else f"samix-generator-{cfg.backbone}",
        data_spec=data_spec,
        summary=None,
        metric_name="",
        extra_tags=("mixup-generator",),
        eval_results=None,  # mask statistics are no Hub metric: they are in the body
    )
    atomic_write_text(folder / CARD_NAME, text)
    validate_card(folder / CARD_NAME, "generator")
    validate_artifact(folder, "all" if onnx else "torch")
    report.files = list_files(folder)
    return report


def _generator_origin(
    cfg: Any,
    prov: dict[str, Any],
    run_config: dict[str, Any] | None,
    metrics: list[dict[str, Any]],
) -> tuple[str, str]:
    """The card's description of the encoder and mixer, and of the classifier that scored it.

    The classifier's accuracy is stated in the body only: it is the backbone card's result.
    """

    data = dataset_info(prov.get("data"))[0]
    summary = summarize_metrics(metrics, "top1")
    acc = f" (top-1 {summary['last']:.2f} % on the test split)" if summary else ""
    teacher = prov.get("teacher")
    if isinstance(teacher, dict):
        who = teacher_summary(teacher)
        origin = (
            f"the encoder of a frozen, already trained `{cfg.backbone}` classifier (the teacher, "
            f"{who}) truncated after stage {cfg.stage}, plus a {cfg.mixer.variant} mixer "
            f"**trained against a frozen teacher** on **{data}**; only the mixer was trained"
        )
        scorer = f"The mixer was trained against the frozen teacher {who}{acc}."
        head = (run_config or {}).get("teacher_head") or {}
        if head.get("fitted"):
            scorer += f" Its head was refit on frozen features for this data ({head['reason']})."
        return origin, scorer + " The teacher is exported as the backbone; see its card."
    weights = "EMA encoder" if prov.get("encoder_weights") == "ema" else "encoder"
    origin = (
        f"the {weights} of a `{cfg.backbone}` truncated after stage {cfg.stage} plus the "
        f"{cfg.mixer.variant} mixer, trained with **{prov.get('method', 'samix')}** on **{data}**"
    )
    if summary is None:
        return origin, "The classifier trained jointly with it recorded no evaluation."
    return origin, (
        f"The classifier trained jointly with this generator scored top-1 {summary['last']:.2f} % "
        "on the test split (a result of the backbone card, not of this generator)."
    )


def _int8_fidelity(folder: Path, images: torch.Tensor) -> dict[str, float]:
    """Mean / max |mask_int8 - mask_fp32| on real images (issue 6), seeded partners and λ."""

    fp32 = load_generator(folder, "onnx", device="cpu")
    int8 = load_generator(folder, "onnx", device="cpu", int8=True)
    g = torch.Generator().manual_seed(1)
    diffs = []
    for start in range(0, images.shape[0], 64):
        x = images[start : start + 64]
        partner = torch.randperm(x.shape[0], generator=g)
        lam = torch.rand(x.shape[0], generator=g)
        diffs.append((fp32.masks(x, partner, lam) - int8.masks(x, partner, lam)).abs().flatten())
    d = torch.cat(diffs)
    return {"mask_mean_abs_diff": float(d.mean()), "mask_max_abs_diff": float(d.max())}


def _check_parity(parity: dict[str, float], folder: Path) -> None:
    for key, value in parity.items():
        if not value <= PARITY_TOL[key]:
            raise ArtifactError(
                f"{folder}: onnxruntime differs from torch on {key} by {value:.2e} "
                f"(> {PARITY_TOL[key]:.0e}); export refused"
            )


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
) -> ExportReport:
    """timm Hub layout (``save_for_hf``) + ONNX + parity + card into ``folder`` (staging)."""
    from timm.models import save_for_hf

    from .onnx import backbone_parity, export_backbone_onnx

    cfg = run_config
    h, w = run_image_size(cfg)
    c = run_chans(cfg)
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    names = list(cfg.get("class_names") or [])
    samix_meta = {
        "kind": BACKBONE,
        "format_version": BACKBONE_FORMAT_VERSION,
        "onnx": {"input": "images", "range": [0.0, 1.0], "normalised_inside": True},
        "weights": weights,
        "provenance": {
            "scenario": cfg.get("scenario"),
            "method": cfg.get("method"),
            "data": dataset_info(cfg.get("data"))[2],
            "epochs": cfg.get("epochs"),
            "seed": cfg.get("seed"),
            "generator": cfg.get("generator"),
            "teacher": cfg.get("teacher_provenance"),
            "trained_with": cfg.get("samix_hub_version"),
            "samix_hub_version": __version__,
        },
    }
    model_config: dict[str, Any] = {"samix_hub": samix_meta, "pretrained_cfg": {"tag": "samix"}}
    if names and len(names) == model.num_classes:  # type: ignore[attr-defined]
        model_config["label_names"] = names
    save_for_hf(
        model,
        str(folder),
        model_config=model_config,
        safe_serialization=True,
        data_config={"input_size": (c, h, w), "mean": mean, "std": std, "crop_pct": 1.0},
    )
    report = ExportReport(kind=BACKBONE, path=folder)
    if onnx:
        export_backbone_onnx(
            model, folder / BACKBONE_ONNX, mean, std, (c, h, w), opset=opset,
            label_names=model_config.get("label_names"),
        )  # fmt: skip
        onnx_model, _ = load_backbone(folder, runtime="onnx", device="cpu")
        report.parity = backbone_parity(model, onnx_model, mean, std, (c, h, w))
    _check_parity(report.parity, folder)
    key = "ema_top1" if weights == "ema" else "top1"
    if cfg.get("scenario") == "ssl" or not int(cfg["num_classes"]):
        key = "knn_top1"
    summary = summarize_metrics(list(metrics), key)
    nc = int(cfg["num_classes"])
    data_name = dataset_info(cfg.get("data"))[0]
    fields = {
        "title": f"{cfg['backbone']} ({cfg.get('method', 'samix')}) on "
        f"{dataset_info(cfg.get('data'))[0]}",
        "backbone": cfg["backbone"],
        "head_summary": f"classifier ({nc} classes)" if nc else "feature extractor (no head)",
        "method": cfg.get("method", "unknown"),
        "repo_id": repo_id or "ORG/NAME",
        "input_size": format_value((c, h, w)),
        "in_chans": c,
        "height": h,
        "width": w,
        "mean": format_value(mean),
        "std": format_value(std),
        "opset": opset,
        "onnx_output": "logits" if nc else "features",
        "num_params": _num_params(model),
        "classes": ", ".join(names) if names else str(nc),
        "trained_how": f"trained with **{cfg.get('method', 'unknown')}** on **{data_name}**",
        "weights_source": "EMA copy of the classifier" if weights == "ema" else "online classifier",
        "files": "",
        "recipe": recipe_table(cfg),
        "results": results_text(
            summary,
            "accuracy of these weights" + (" (k-NN on features)" if "knn" in key else ""),
            None,
        ),
        "extra_limitations": "" if onnx else "- This export has no ONNX graph.\n",
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
    fields["files"] = _files_cell(folder)
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


def _base_model(config: dict[str, Any]) -> str | None:
    """A Hub repo id the run started from (fine-tuning), when the run config records one."""
    for key in ("base_model", "backbone_provenance", "init", "pretrained", "backbone_source"):
        value = config.get(key)
        if isinstance(value, dict):
            value = value.get("repo_id")
        if isinstance(value, str) and value.count("/") == 1 and not Path(value).exists():
            return value.split("@")[0]
    return None


def export_run(
    run_dir: str | Path,
    out: str | Path,
    what: Sequence[str] = WHAT,
    *,
    opset: int = 18,
    onnx: bool = True,
    weights: str = "model",
    int8_calibration: torch.Tensor | None = None,
    int8_eval: torch.Tensor | None = None,
    repo_ids: dict[str, str] | None = None,
    force: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
) -> list[ExportReport]:
    """Export a run to ``out/generator`` and ``out/backbone``; returns one report per folder.

    A run without a mixer (vanilla, mixup, cutmix, samix-p...) exports only the backbone.
    """
    unknown = sorted(set(what) - set(WHAT))
    if unknown or not what:
        raise UserError(f"--what {','.join(what)}: choose from generator, backbone")
    if weights not in ("model", "ema"):
        raise UserError(f"--weights {weights}: choose model or ema")
    out = Path(out)
    repo_ids = repo_ids or {}
    for name in what:
        if (out / name).exists() and not force:
            raise UserError(f"{out / name}: exists; pass --force to replace it")
    run = load_run(run_dir)
    reports = []
    if "generator" in what:
        gen = build_generator(run)
        if gen is None:
            log(f"{run.path}: method {run.config.get('method')!r} has no mixer; no generator")
        else:
            stage = staging_folder(out, "generator")
            try:
                log("exporting generator ...")
                rep = write_generator_folder(
                    gen, stage, run_config=run.config, metrics=run.metrics, onnx=onnx,
                    opset=opset, repo_id=repo_ids.get("generator"),
                    int8_calibration=int8_calibration, int8_eval=int8_eval,
                )  # fmt: skip
                finalize_folder(stage, out / "generator", force)
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            rep.path = out / "generator"
            reports.append(rep)
    if "backbone" in what:
        model = build_backbone(run, weights)
        stage = staging_folder(out, "backbone")
        try:
            log("exporting backbone ...")
            rep = write_backbone_folder(
                model, stage, run_config=run.config, metrics=run.metrics, weights=weights,
                onnx=onnx, opset=opset, repo_id=repo_ids.get("backbone"),
                base_model=_base_model(run.config),
            )  # fmt: skip
            finalize_folder(stage, out / "backbone", force)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        rep.path = out / "backbone"
        reports.append(rep)
    return reports
