"""A training run folder -> Hub-ready ``generator/`` and ``backbone/`` folders, validated.

Reads ``RUN_DIR/config.json``, ``metrics.jsonl`` and ``checkpoints/last.pt`` (``weights_only``).
The generator is the EMA encoder truncated after stage 3 plus the mixer (docs/algorithm.md "SAMix^P");
the backbone is the timm classifier in timm's Hub layout. Each folder is written into a hidden
staging folder, checked (files, tensors, ONNX checker, torch vs onnxruntime parity, card) and
only then renamed into place, so a failed export never leaves a folder that looks complete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from samix_hub._version import __version__
from samix_hub.data.specs import load_data
from samix_hub.errors import UserError
from samix_hub.export.backbone import base_model, write_backbone_folder
from samix_hub.export.card_recipe import limitations_text, recipe_table, smoke_run
from samix_hub.export.cards import (
    dataset_info,
    format_value,
    generator_results_text,
    mixer_summary,
    render_card,
    summarize_generator_metrics,
    validate_card,
)
from samix_hub.export.common import (
    PARITY_TOL,
    ExportReport,
    check_parity,
    check_replaceable,
    copy_curves,
    files_cell,
    finalize_folder,
    staged,
    staging_folder,
)
from samix_hub.export.generator_config import generator_config_dict
from samix_hub.export.load import open_generator
from samix_hub.export.provenance import generator_origin, provenance_mask_summary
from samix_hub.export.run import Run, build_backbone, build_generator, load_run
from samix_hub.export.validate import list_files, validate_artifact
from samix_hub.fileio import atomic_write, atomic_write_json, atomic_write_text
from samix_hub.format.artifact import (
    BACKBONE,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR,
    GENERATOR_ONNX,
    GENERATOR_ONNX_INT8,
    GENERATOR_WEIGHTS,
)
from samix_hub.models.generator import GeneratorNet

__all__ = [
    "int8_sample_images",
    "Run",
    "ExportReport",
    "load_run",
    "build_generator",
    "build_backbone",
    "write_generator_folder",
    "write_backbone_folder",
    "export_run",
    "PARITY_TOL",
    "finalize_folder",
    "staging_folder",
    "write_generator",
]

WHAT = ("generator", "backbone")


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
    parity: str = "full",
    card_kwargs: dict[str, Any] | None = None,
    run_dir: Path | None = None,
) -> ExportReport:
    """Weights, config, ONNX (+ int8), parity, card, validation into ``folder`` (a staging dir).

    ``parity="full"`` checks the new graph on several batch and image sizes, ``"probe"`` on
    one batch (``save_pretrained``); the final validation runs one probe batch too.
    ``card_kwargs`` (``license``, ``model_name``) go to the card. Without ``run_config``, the
    card's recipe and mask statistics come from the generator's provenance. The run's
    ``curves.png`` (``run_dir``) is copied and shown on the card.
    """
    from samix_hub.export.cost import cost_text, generator_cost
    from samix_hub.export.int8 import quantize_generator
    from samix_hub.export.onnx import OnnxGenerator, export_generator_onnx, generator_parity

    write_generator(gen, folder)
    cfg = gen.config
    report = ExportReport(kind=GENERATOR, path=folder)
    curves_line = copy_curves(run_dir, folder)
    if onnx:
        export_generator_onnx(gen, folder / GENERATOR_ONNX, opset=opset)
        graph = OnnxGenerator(folder / GENERATOR_ONNX, cfg, device="cpu")  # validated below
        report.parity = generator_parity(gen, graph, probe=parity == "probe")
        if int8_calibration is not None:
            quantize_generator(
                folder / GENERATOR_ONNX, folder / GENERATOR_ONNX_INT8, int8_calibration
            )
            report.int8 = _int8_fidelity(
                folder, int8_eval if int8_eval is not None else int8_calibration
            )
    check_parity(report.parity, folder)
    fields = _card_fields(gen, run_config, metrics, onnx=onnx, opset=opset, repo_id=repo_id)
    fields["cost"] = cost_text(generator_cost(gen, folder if onnx else None))
    fields["results"] += curves_line
    fields["files"] = files_cell(folder)
    data_spec = (run_config or {}).get("data", cfg.provenance.get("data"))
    card_kwargs = dict(card_kwargs or {})
    text = render_card(
        "generator",
        fields,
        model_name=card_kwargs.pop("model_name", None)
        or (repo_id.split("/")[-1] if repo_id else f"samix-generator-{cfg.backbone}"),
        data_spec=data_spec,
        summary=None,
        metric_name="",
        extra_tags=("mixup-generator",),
        eval_results=None,  # mask statistics are no Hub metric: they are in the body
        **card_kwargs,
    )
    atomic_write_text(folder / CARD_NAME, text)
    validate_card(folder / CARD_NAME, "generator")
    validate_artifact(folder, "all" if onnx else "torch")
    report.files = list_files(folder)
    return report


def _card_fields(
    gen: GeneratorNet,
    run_config: dict[str, Any] | None,
    metrics: Sequence[dict[str, Any]],
    *,
    onnx: bool,
    opset: int,
    repo_id: str | None,
) -> dict[str, Any]:
    """The generator card's template fields; without ``run_config`` (``save_pretrained``) the
    recipe and mask statistics come from the generator's provenance."""
    cfg = gen.config
    prov = cfg.provenance
    own = summarize_generator_metrics(list(metrics))
    if run_config is None and own is None:
        own = provenance_mask_summary(prov)  # save_pretrained: what config.json records
    h, w = cfg.input_size
    origin, scorer = generator_origin(cfg, prov, run_config, list(metrics))
    exact = cfg.mixer.calibration == "exact"
    return {
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
        "lam_convention": generator_config_dict(gen)["lam_convention"],
        "files": "",
        "recipe": recipe_table(run_config, metrics, prov),
        "results": generator_results_text(own, scorer),
        "origin": origin,
        "mask_mean": "its mean equals λ exactly"
        if exact
        else "its mean is free (not calibrated to λ; see the measured slope)",
        "mean_limitation": "its mean equals λ (λ-exact calibration)."
        if exact
        else "its mean is not calibrated to λ: check the measured slope.",
        "extra_limitations": limitations_text(onnx, smoke_run(run_config, metrics)),
        "samix_hub_version": __version__,
    }


def _int8_fidelity(folder: Path, images: torch.Tensor) -> dict[str, float]:
    """Mean / max |mask_int8 - mask_fp32| on real images, seeded partners and λ."""

    fp32 = open_generator(folder, "onnx", device="cpu")
    int8 = open_generator(folder, "onnx", device="cpu", int8=True)
    g = torch.Generator().manual_seed(1)
    diffs = []
    for start in range(0, images.shape[0], 64):
        x = images[start : start + 64]
        partner = torch.randperm(x.shape[0], generator=g)
        lam = torch.rand(x.shape[0], generator=g)
        diffs.append((fp32.masks(x, partner, lam) - int8.masks(x, partner, lam)).abs().flatten())
    d = torch.cat(diffs)
    return {"mask_mean_abs_diff": float(d.mean()), "mask_max_abs_diff": float(d.max())}


def int8_sample_images(
    spec: str, size: tuple[int, int], count: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 quantisation samples (calibration, evaluation): ``count`` train and ``count``
    test images in [0, 1] at ``size``."""
    source = load_data(spec)

    def take(ds: Any) -> torch.Tensor:
        n = min(count, len(ds))
        x = torch.stack([ds[i][0] for i in range(n)]).float() / 255.0
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x.clamp(0, 1)

    return take(source.train), take(source.test)


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
    kinds = {"generator": GENERATOR, "backbone": BACKBONE}
    for name in what:  # before any work: never replace the run itself or a foreign file
        check_replaceable(out / name, force, kinds[name], inputs=[run_dir])
    run = load_run(run_dir)
    reports = []
    if "generator" in what:
        gen = build_generator(run)
        if gen is None:
            log(f"{run.path}: method {run.config.get('method')!r} has no mixer; no generator")
        else:
            with staged(out, "generator") as stage:
                log("exporting generator ...")
                rep = write_generator_folder(
                    gen, stage, run_config=run.config, metrics=run.metrics, onnx=onnx,
                    opset=opset, repo_id=repo_ids.get("generator"),
                    int8_calibration=int8_calibration, int8_eval=int8_eval, run_dir=run.path,
                )  # fmt: skip
                finalize_folder(stage, out / "generator", force, GENERATOR, [run_dir])
            rep.path = out / "generator"
            reports.append(rep)
    if "backbone" in what:
        model = build_backbone(run, weights)
        with staged(out, "backbone") as stage:
            log("exporting backbone ...")
            rep = write_backbone_folder(
                model, stage, run_config=run.config, metrics=run.metrics, weights=weights,
                onnx=onnx, opset=opset, repo_id=repo_ids.get("backbone"),
                base_model=base_model(run.config), run_dir=run.path,
            )  # fmt: skip
            finalize_folder(stage, out / "backbone", force, BACKBONE, [run_dir])
        rep.path = out / "backbone"
        reports.append(rep)
    return reports


def write_generator(gen: GeneratorNet, path: str | os.PathLike[str]) -> Path:
    """Write ``config.json`` and ``generator.safetensors`` into folder ``path`` (atomically)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in gen.state_dict().items()}
    atomic_write(
        folder / GENERATOR_WEIGHTS, lambda p: save_file(tensors, p, metadata={"format": "pt"})
    )
    atomic_write_json(folder / CONFIG_NAME, generator_config_dict(gen))
    return folder
