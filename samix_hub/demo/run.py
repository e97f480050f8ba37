"""``run_demo``: the steps of :mod:`.steps` in order, timed, then the summary (``summary.json``)."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from samix_hub._version import __version__
from samix_hub.demo.config import BACKBONE_REPO, FINETUNE_CHOICE, FULL, GENERATOR_REPO, DemoConfig
from samix_hub.demo.steps import STEPS, DemoState, prepare_out
from samix_hub.fileio import atomic_write_json
from samix_hub.fileio.locking import folder_lock
from samix_hub.format.artifact import BACKBONE, GENERATOR
from samix_hub.train.paired import paired

__all__ = ["run_demo", "build_summary"]


def run_demo(
    out: str | os.PathLike[str],
    config: DemoConfig = FULL,
    *,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``out`` (created; a previous demo output there is replaced)."""
    state = DemoState(out=Path(out).expanduser().absolute(), cfg=config, quiet=quiet)
    # One demo per folder: the lock is held for the whole run; prepare_out keeps lock files.
    with folder_lock(state.out, "demo"):
        prepare_out(state.out)
        return _run_steps(state, log)


def _run_steps(state: DemoState, log: Callable[[str], None]) -> dict[str, Any]:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for i, (key, what, run_step) in enumerate(STEPS, 1):
        log(f"[{i}/{len(STEPS)}] {what(state)} ...")
        t0 = time.perf_counter()
        run_step(state)
        timings[key] = round(time.perf_counter() - t0, 2)
        log(f"[{i}/{len(STEPS)}] done in {timings[key]:.1f} s")
    timings["total"] = round(time.perf_counter() - start, 2)
    summary = build_summary(state, timings)
    atomic_write_json(state.out / "summary.json", summary)
    return summary


def _machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _hub(s: DemoState) -> dict[str, Any]:
    assert s.gen_src is not None and s.bb_src is not None
    return {
        "cache": str(s.cache),
        "generator": {"repo_id": GENERATOR_REPO, "commit": s.gen_src.commit, "path": str(s.gen_src.path)},
        "backbone": {"repo_id": BACKBONE_REPO, "commit": s.bb_src.commit, "path": str(s.bb_src.path)},
        "published_commits": s.commits,
    }  # fmt: skip


def _generator(s: DemoState) -> dict[str, Any]:
    gm, gc = s.gen_metrics, s.gen_config
    return {
        "run": str(s.gen_run),
        "method": "samix",
        "trained_against": "the frozen classifier of step 2",
        "teacher_weights": (gc.get("teacher_provenance") or {}).get("weights"),
        "steps": gm["step"],
        "optimizer": gc.get("optimizer"),
        "lr": gc.get("lr"),
        "calibration": gc.get("calibration"),
        "teacher_top1": gm.get("top1"),
        # the run's own statistics (source test images, as in the generator's card)
        "mask_slope": gm.get("mask_slope"),
        "mask_spatial_std": gm.get("mask_spatial_std"),
    }


def build_summary(s: DemoState, timings: dict[str, float]) -> dict[str, Any]:
    """``summary.json``: paths, timings, accuracies, mask statistics, ONNX vs torch parity."""
    assert s.mixed is not None
    cfg = s.cfg
    return {
        "kind": "samix-demo",
        "samix_hub_version": __version__,
        "preset": cfg.name,
        "config": asdict(cfg),
        "out": str(s.out),
        "machine": _machine(),
        "data": {
            "source": s.specs["source"],
            "target": s.specs["target"],
            "source_train": s.sizes["source"][0],
            "source_test": s.sizes["source"][1],
            "target_train": s.sizes["target"][0],
            "target_test": s.sizes["target"][1],
        },  # fmt: skip
        "train": {
            "run": str(s.run),
            "method": "vanilla",
            "steps": s.source_metrics["step"],
            "top1": s.source_metrics.get("top1"),
            "ema_top1": s.source_metrics.get("ema_top1"),
        },
        "generator": _generator(s),
        "artifacts": {"generator": str(s.folders[GENERATOR]), "backbone": str(s.folders[BACKBONE])},
        "hub": _hub(s),
        "parity": {"export": s.export_parity, "pulled_onnx_vs_torch": s.parity},
        "masks": {
            "generator": "pulled, torch",
            "images": "first 64 target test images",
            **{
                k: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
                for k, v in s.masks.items()
            },
        },
        "mix": {
            "path": str(s.mixed.out),
            "rows": s.mixed.rows,
            "runtime": "onnx",
            "providers": list(getattr(s.onnx_gen, "providers", [])),
            "images_per_s": round(s.mixed.images_per_s, 1),
            "preview": str(s.preview),
        },
        "finetune": s.finetune,
        "finetune_settings": {
            "epochs": cfg.finetune_epochs,
            "max_steps": cfg.finetune_max_steps,
            "lr": cfg.finetune_lr,
            "seeds": list(cfg.finetune_seeds),
            "images_per_class": cfg.finetune_images_per_class,
            "pretrained": cfg.finetune_pretrained,
            "train_images": s.finetune_images,
            "batch_size": cfg.finetune_batch_size,
            "choice": FINETUNE_CHOICE,
        },
        "comparison": _compare(s.finetune),
        "comparison_paired": _compare_paired(s.finetune),
        "timings_s": timings,
    }


def _compare(finetune: dict[str, Any]) -> dict[str, Any]:
    """SAMix^P's top-1 minus each baseline's, as measured in this run (no claim beyond it)."""
    ours = (finetune.get("samix-p") or {}).get("top1")
    return {
        f"samix-p_minus_{m}": None if ours is None or r.get("top1") is None else
        round(ours - r["top1"], 2)
        for m, r in finetune.items() if m != "samix-p"
    }  # fmt: skip


def _compare_paired(finetune: dict[str, Any]) -> dict[str, Any]:
    """SAMix^P minus each baseline seed by seed (the seeds are paired): mean, standard error,
    95 % interval, seeds ahead (:func:`samix_hub.train.paired.paired`); empty with fewer than 2 seeds."""
    ours = (finetune.get("samix-p") or {}).get("top1_per_seed") or []
    out: dict[str, Any] = {}
    for m, r in finetune.items():
        theirs = r.get("top1_per_seed") or []
        if m != "samix-p" and len(ours) >= 2 and len(theirs) == len(ours):
            out[m] = paired(ours, theirs)
    return out
