"""The demo's eight steps, one function each, over one :class:`DemoState` (docs/README.md
"Data flow"): each step reads what the earlier ones left in the state and adds its own results.
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from samix_hub.data.specs import ArrayDataset, load_data
from samix_hub.demo.config import BACKBONE_REPO, GENERATOR_REPO, MARKER, DemoConfig
from samix_hub.demo.publish import publish_local
from samix_hub.errors import UserError
from samix_hub.export.generator import export_run
from samix_hub.export.mixed_writer import MixResult, MixSettings, preview_batch, write_mixed
from samix_hub.fileio.locking import is_lock_file
from samix_hub.format.artifact import BACKBONE, GENERATOR
from samix_hub.format.repo_ref import ResolvedSource
from samix_hub.format.run import METRICS_NAME
from samix_hub.hub.api import load_generator
from samix_hub.hub.resolve import resolve_source
from samix_hub.mixing.preview import save_preview
from samix_hub.mixing.statistics import generator_mask_statistics
from samix_hub.models.generator import MaskGenerator
from samix_hub.train import TrainConfig, read_run_config, train
from samix_hub.train.finetune import finetune_config
from samix_hub.train.loader import dataset_len

__all__ = ["DemoState", "STEPS", "prepare_out", "split_target"]


@dataclass
class DemoState:
    """What the steps share: the inputs, then each step's results (filled in step order)."""

    out: Path
    cfg: DemoConfig
    quiet: bool
    specs: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    run: Path = Path()
    source_metrics: dict[str, Any] = field(default_factory=dict)
    gen_run: Path = Path()
    gen_metrics: dict[str, Any] = field(default_factory=dict)
    gen_config: dict[str, Any] = field(default_factory=dict)
    folders: dict[str, Path] = field(default_factory=dict)
    export_parity: dict[str, float] = field(default_factory=dict)
    commits: dict[str, str] = field(default_factory=dict)
    gen_src: ResolvedSource | None = None
    bb_src: ResolvedSource | None = None
    onnx_gen: MaskGenerator | None = None
    torch_gen: MaskGenerator | None = None
    mixed: MixResult | None = None
    preview: Path = Path()
    parity: dict[str, float] = field(default_factory=dict)
    masks: dict[str, Any] = field(default_factory=dict)
    finetune: dict[str, Any] = field(default_factory=dict)
    finetune_images: int = 0

    @property
    def cache(self) -> Path:
        return self.out / "hub"

    @property
    def common(self) -> dict[str, Any]:
        return {"batch_size": self.cfg.batch_size, "workers": 0, "eval_batch_size": 512}


def _split_digits(folder: Path) -> dict[str, str]:
    """digits 0-4 (source) and 5-9 (target, relabelled 0-4, named "5".."9") as ``npz:`` specs."""
    digits = load_data("digits")
    folder.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name, first in (("source", 0), ("target", 5)):
        arrays: dict[str, np.ndarray] = {"classes": np.array([str(first + i) for i in range(5)])}
        for split, ds in (("train", digits.train), ("test", digits.test)):
            assert isinstance(ds, ArrayDataset)  # the bundled digits are in memory
            keep = (ds.labels >= first) & (ds.labels < first + 5)
            arrays[f"x_{split}"] = ds.images[keep]
            arrays[f"y_{split}"] = ds.labels[keep] - first
        path = folder / f"digits-{first}-{first + 4}.npz"
        np.savez(
            path,
            classes=arrays["classes"],
            x_train=arrays["x_train"],
            y_train=arrays["y_train"],
            x_test=arrays["x_test"],
            y_test=arrays["y_test"],
        )
        specs[name] = f"npz:{path}"
    return specs


def split_target(
    target_npz: Path, folder: Path, per_class: int | None, val_per_class: int = 40,
    split: str = "test",
) -> str:  # fmt: skip
    """The demo's fine-tune data: the first ``per_class`` training images of each class (all but
    the validation ones when None) as the training split, and as the test split either the real
    test split (``split="test"``) or the validation split: the last ``val_per_class`` training
    images of each class (``split="val"``, for choosing the regime). An ``npz:`` spec."""
    if split not in ("test", "val"):
        raise ValueError(f"split must be test or val, got {split!r}")
    with np.load(target_npz) as d:
        arrays = {k: d[k] for k in d.files}
    y = arrays["y_train"].astype(np.int64)
    train_idx, val_idx = [], []
    for c in np.unique(y):
        own = np.flatnonzero(y == c)
        pool, val = own[:-val_per_class], own[-val_per_class:]
        if per_class is not None and per_class > len(pool):
            raise UserError(f"{target_npz}: class {c} has {len(pool)} images, not {per_class}")
        train_idx.append(pool[:per_class])
        val_idx.append(val)
    tr, va = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))
    out = {**arrays, "x_train": arrays["x_train"][tr], "y_train": y[tr]}
    if split == "val":
        out["x_test"], out["y_test"] = arrays["x_train"][va], y[va]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{target_npz.stem}-{per_class or 'all'}-per-class-{split}.npz"
    np.savez(path, **out)
    return f"npz:{path}"


def _last_metrics(run: Path) -> dict[str, Any]:
    lines = (run / METRICS_NAME).read_text().splitlines()
    if not lines:
        raise UserError(f"{run}: the run wrote no evaluation")
    return json.loads(lines[-1])


def prepare_out(out: Path) -> None:
    """Create ``out``; replace a previous demo's output, refuse any other non-empty folder.

    The folder's lock files stay (the running demo holds one), everything else of a previous
    demo is removed; links are removed, never followed.
    """
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    entries = [p for p in out.iterdir() if not is_lock_file(p.name)] if out.is_dir() else []
    if entries:
        if not (out / MARKER).is_file():
            raise UserError(
                f"{out}: not empty and not a samix-hub demo folder; choose another --out"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("samix-hub demo output; `samix-hub demo` may replace it\n")


@torch.no_grad()
def _parity(torch_gen: Any, onnx_gen: Any, images: torch.Tensor, seed: int) -> dict[str, float]:
    """Max |torch - onnxruntime| of mask and mixed image on real images (the pulled copies)."""
    g = torch.Generator().manual_seed(seed)
    partner = torch.randperm(images.shape[0], generator=g)
    lam = torch.rand(images.shape[0], generator=g)
    t_mask, t_mixed = torch_gen(images, partner, lam)
    o_mask, o_mixed = onnx_gen(images, partner, lam)
    return {
        "mask": float((t_mask - o_mask).abs().max()),
        "mixed": float((t_mixed - o_mixed).abs().max()),
    }


def step_data(s: DemoState) -> None:
    """1. digits 0-4 and 5-9 as two ``npz:`` specs."""
    s.specs = _split_digits(s.out / "data")
    for key, spec in s.specs.items():
        source = load_data(spec)
        assert source.test is not None
        s.sizes[key] = (dataset_len(source.train), dataset_len(source.test))


def step_train(s: DemoState) -> None:
    """2. the plain classifier on digits 0-4 (teacher and published backbone)."""
    cfg = s.cfg
    s.run = train(
        TrainConfig(
            method="vanilla", data=s.specs["source"], backbone=cfg.backbone,
            out=str(s.out / "runs" / "classifier-source"), epochs=cfg.train_epochs,
            max_steps=cfg.train_max_steps, lr=cfg.train_lr, seed=cfg.seed,
            ema_momentum=cfg.ema_momentum, ema_end_momentum=cfg.ema_end_momentum, **s.common,
        ),
        quiet=s.quiet,
    )  # fmt: skip
    s.source_metrics = _last_metrics(s.run)


def step_generator(s: DemoState) -> None:
    """3. the SAMix mixer alone against the frozen classifier (the teacher recipe)."""
    cfg = s.cfg
    s.gen_run = train(
        TrainConfig(
            method="samix", data=s.specs["source"], backbone="", scenario="teacher",
            teacher=str(s.run), out=str(s.out / "runs" / "generator-source"),
            epochs=cfg.generator_epochs, max_steps=cfg.generator_max_steps,
            optimizer=cfg.generator_optimizer, lr=cfg.generator_lr, weight_decay=0.0,
            seed=cfg.seed, **s.common,
        ),
        quiet=s.quiet,
    )  # fmt: skip
    s.gen_metrics = _last_metrics(s.gen_run)
    s.gen_config = read_run_config(s.gen_run)


def step_export(s: DemoState) -> None:
    """4. generator and backbone folders with ONNX, cards and parity checks."""
    reports = export_run(
        s.gen_run,
        s.out / "release",
        repo_ids={"generator": GENERATOR_REPO, "backbone": BACKBONE_REPO},
    )
    s.folders = {r.kind: r.path for r in reports}
    s.export_parity = {k: v for r in reports for k, v in r.parity.items()}


def step_publish(s: DemoState) -> None:
    """5. each folder as a repo in a local Hub cache."""
    s.commits = {
        "generator": publish_local(s.folders[GENERATOR], GENERATOR_REPO, s.cache),
        "backbone": publish_local(s.folders[BACKBONE], BACKBONE_REPO, s.cache),
    }


def step_pull(s: DemoState) -> None:
    """6. both repos back by id, offline, through huggingface_hub; both generator runtimes."""
    s.gen_src = resolve_source(GENERATOR_REPO, runtime="all", offline=True, cache_dir=s.cache)
    s.bb_src = resolve_source(BACKBONE_REPO, runtime="torch", offline=True, cache_dir=s.cache)
    s.onnx_gen = load_generator(s.gen_src, runtime="onnx", device="cpu")
    s.torch_gen = load_generator(s.gen_src, runtime="torch", device="cpu")


def step_mix(s: DemoState) -> None:
    """7. the target set mixed on onnxruntime, a preview, parity and mask statistics."""
    assert s.gen_src is not None and s.onnx_gen is not None and s.torch_gen is not None
    cfg = s.cfg
    target = load_data(s.specs["target"])
    settings = MixSettings(
        data=s.specs["target"], split="train", source_size=dataset_len(target.train),
        class_names=[str(c) for c in target.class_names], method="samix", alpha=2.0,
        num=cfg.mix_num or dataset_len(target.train), seed=cfg.seed, batch_size=cfg.batch_size,
        shard_size=1000, image_size=target.image_size,
        generator=s.gen_src.provenance(), runtime="onnx",
    )  # fmt: skip
    s.mixed = write_mixed(
        s.out / "mixed", target.train, settings, s.onnx_gen, workers=0, progress=not s.quiet
    )
    s.preview = save_preview(
        s.out / "preview.png", *preview_batch(target.train, settings, s.onnx_gen)
    )
    test = target.test
    assert test is not None  # an npz: spec with test arrays
    images = torch.stack([test[i][0] for i in range(64)]).float() / 255.0
    s.parity = _parity(s.torch_gen, s.onnx_gen, images, cfg.seed)
    s.masks = generator_mask_statistics(s.torch_gen, images)  # the library's one definition


def step_finetune(s: DemoState) -> None:
    """8. a slice of digits 5-9 learnt by the backbone's architecture (from random weights, or
    from the pulled backbone with ``finetune_pretrained``), every method over the same seeds and
    budget; per method the per-seed top-1, its mean and std."""
    assert s.gen_src is not None and s.bb_src is not None
    cfg = s.cfg
    target = Path(s.specs["target"].removeprefix("npz:"))
    spec = split_target(
        target, s.out / "data", cfg.finetune_images_per_class, cfg.finetune_val_per_class
    )
    s.finetune_images = dataset_len(load_data(spec).train)
    for method in cfg.finetune_methods:
        t0 = time.perf_counter()
        runs, tops, steps = [], [], 0
        for seed in cfg.finetune_seeds:
            ft_run = train(
                finetune_config(
                    str(s.bb_src.path) if cfg.finetune_pretrained else cfg.backbone, spec,
                    str(s.out / "runs" / f"finetune-{method}-s{seed}"), method=method,
                    generator=str(s.gen_src.path) if method == "samix-p" else None,
                    epochs=cfg.finetune_epochs, max_steps=cfg.finetune_max_steps,
                    lr=cfg.finetune_lr, seed=seed, eval_every=cfg.finetune_epochs,
                    alpha=cfg.finetune_samix_alpha if method == "samix-p" else None,
                    pretrained=cfg.finetune_pretrained,
                    **{**s.common, "batch_size": cfg.finetune_batch_size},
                ),
                quiet=s.quiet,
            )  # fmt: skip
            m = _last_metrics(ft_run)
            runs.append(str(ft_run))
            tops.append(float(m["top1"]))
            steps = int(m["step"])
        s.finetune[method] = {
            "runs": runs,
            "seeds": list(cfg.finetune_seeds),
            "steps": steps,
            "alpha": read_run_config(runs[0]).get("alpha"),
            "top1_per_seed": tops,
            "top1": statistics.mean(tops),
            "top1_std": statistics.stdev(tops) if len(tops) > 1 else 0.0,
            "seconds": round(time.perf_counter() - t0, 2),
        }


def _start(cfg: DemoConfig) -> str:
    """Where step 8's runs start: the pulled backbone or random weights."""
    return "the pulled backbone" if cfg.finetune_pretrained else "random weights"


#: (timing key, what the log line says, step) in order.
STEPS = (
    ("data", lambda s: "data: scikit-learn digits (bundled, no download), 0-4 -> 5-9", step_data),
    (
        "train",
        lambda s: f"train: plain classifier (the teacher), {s.cfg.backbone}, digits 0-4",
        step_train,
    ),
    (
        "generator",
        lambda s: "generator: SAMix mixer alone against the frozen classifier",
        step_generator,
    ),
    ("export", lambda s: "export: safetensors + ONNX + model cards, parity checks", step_export),
    ("publish", lambda s: f"publish: local Hub cache {s.cache}", step_publish),
    ("pull", lambda s: f"pull: {GENERATOR_REPO} and {BACKBONE_REPO} back, offline", step_pull),
    (
        "mix",
        lambda s: "mix: target set with the pulled generator on onnxruntime + preview",
        step_mix,
    ),
    (
        "finetune",
        lambda s: (
            f"fine-tune on digits 5-9 from {_start(s.cfg)}: " + ", ".join(s.cfg.finetune_methods)
        ),
        step_finetune,
    ),
)
