"""``samix-hub demo``: the whole SAMix^P pipeline offline, on CPU, on real bundled data.

The demo only composes the library's public functions (what the commands run); it implements
none of the steps itself:

1. data: scikit-learn's bundled ``digits`` (real scans, no download) split by class into a
   *source* task (digits 0-4) and a *target* task (digits 5-9), written as two ``npz:`` specs;
2. train: online SAMix (SAMIX.md section 2) on the source task, :func:`samix_hub.engine.train`;
3. export: generator and backbone folders, safetensors + ONNX + card, with torch vs onnxruntime
   parity checks, :func:`samix_hub.export_run.export_run`;
4. publish: each folder becomes a repo ``samix-demo/...`` in a local Hugging Face Hub cache
   (:func:`publish_local`, see there why not a Hub server);
5. pull: :func:`samix_hub.sources.resolve_source` fetches the repos back by id, offline, through
   ``huggingface_hub`` (commit resolution, checksums, artifact validation: what users get);
6. mix: the pulled generator on onnxruntime writes a mixed data set of the target task and a
   preview grid, :func:`samix_hub.data.mix_writer.write_mixed`;
7. fine-tune: the pulled backbone on the target task with the frozen pulled generator
   (SAMix^P, SAMIX.md section 5) and with plain training, same budget,
   :func:`samix_hub.engine.finetune.finetune_config` + :func:`samix_hub.engine.train`.

The summary (paths, timings, accuracies, ONNX vs torch parity) is returned and written to
``OUT/summary.json``.

Deviations from the paper's recipe, forced by a budget of minutes on CPU: 16 px digits and a
narrow ResNet-18; ~130 online steps instead of ~10^5, so the EMA momentum is scaled down
(``DemoConfig.ema_momentum``); the fine-tunes also run MixUp as a second baseline.
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

from . import __version__
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


@dataclass(frozen=True)
class DemoConfig:
    """Budgets of one demo run (``FULL``: ``samix-hub demo``; ``FAST``: ``--fast``, tests)."""

    name: str = "full"
    backbone: str = "resnet18_cifar_w16"
    train_epochs: int = 12
    train_max_steps: int | None = None
    #: EMA of the online run, scaled to its ~130 steps (the paper's 0.999 -> 0.999999 is for
    #: runs of 10^5 steps: here the EMA classifier, which trains the mixer and becomes the
    #: generator's encoder, would stay at its random initialisation).
    ema_momentum: float = 0.9
    ema_end_momentum: float = 0.99
    finetune_epochs: int = 6
    #: Fine-tunes of the pulled backbone, same budget each: SAMix^P, then the baselines.
    finetune_methods: tuple[str, ...] = ("samix-p", "mixup", "vanilla")
    finetune_max_steps: int | None = None
    batch_size: int = 64
    train_lr: float = 0.1
    finetune_lr: float = 0.05
    mix_num: int | None = None  # None: one mixed image per target training image
    seed: int = 0


FULL = DemoConfig()
FAST = DemoConfig(
    name="fast",
    finetune_methods=("samix-p", "vanilla"),
    ema_momentum=0.3,  # 6 steps: an EMA horizon of ~1.4 steps
    ema_end_momentum=0.9,
    train_epochs=1,
    train_max_steps=6,
    finetune_epochs=1,
    finetune_max_steps=4,
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


@torch.no_grad()
def mask_mean_by_lam(
    gen: Any, images: torch.Tensor, seed: int, lams: tuple[float, ...] = (0.2, 0.5, 0.8)
) -> dict[str, float]:
    """Mean mask (share of image i) for several λ on real images: a trained SAMix mixer should
    give about λ (SAMIX.md section 1); short CPU runs fall well short of that."""
    g = torch.Generator().manual_seed(seed)
    partner = torch.randperm(images.shape[0], generator=g)
    return {f"{lam:.1f}": round(float(gen(images, partner, lam)[0].mean()), 3) for lam in lams}


def run_demo(
    out: str | os.PathLike[str],
    config: DemoConfig = FULL,
    *,
    quiet: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo into ``out`` (created; a previous demo output there is replaced)."""
    from .data.mix_writer import MixSettings, preview_batch, write_mixed
    from .data.specs import load_data
    from .engine import TrainConfig, train
    from .engine.finetune import finetune_config
    from .export_run import export_run
    from .loading import load_generator
    from .preview import save_preview
    from .sources import resolve_source

    out = Path(out).expanduser().absolute()
    _prepare_out(out)
    cfg = config
    timings: dict[str, float] = {}
    total_steps = 7

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

    with step(2, "train", f"train: online SAMix, {cfg.backbone}, digits 0-4"):
        run = train(
            TrainConfig(
                method="samix", data=specs["source"], backbone=cfg.backbone,
                out=str(out / "runs" / "samix-source"), epochs=cfg.train_epochs,
                max_steps=cfg.train_max_steps, lr=cfg.train_lr, seed=cfg.seed,
                ema_momentum=cfg.ema_momentum, ema_end_momentum=cfg.ema_end_momentum, **common,
            ),
            quiet=quiet,
        )  # fmt: skip
        source_metrics = _last_metrics(run)

    with step(3, "export", "export: safetensors + ONNX + model cards, parity checks"):
        reports = export_run(
            run, out / "release", repo_ids={"generator": GENERATOR_REPO, "backbone": BACKBONE_REPO}
        )
        folders = {r.kind: r.path for r in reports}
        export_parity = {k: v for r in reports for k, v in r.parity.items()}

    cache = out / "hub"
    with step(4, "publish", f"publish: local Hub cache {cache}"):
        commits = {
            "generator": publish_local(folders["samix-generator"], GENERATOR_REPO, cache),
            "backbone": publish_local(folders["samix-backbone"], BACKBONE_REPO, cache),
        }

    with step(5, "pull", f"pull: {GENERATOR_REPO} and {BACKBONE_REPO} back, offline"):
        hub = {"offline": True, "cache_dir": cache}
        gen_src = resolve_source(GENERATOR_REPO, runtime="all", **hub)
        bb_src = resolve_source(BACKBONE_REPO, runtime="torch", **hub)
        onnx_gen = load_generator(gen_src, runtime="onnx", device="cpu")
        torch_gen = load_generator(gen_src, runtime="torch", device="cpu").eval()

    with step(6, "mix", "mix: target set with the pulled generator on onnxruntime + preview"):
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
        mask_means = mask_mean_by_lam(torch_gen, images, cfg.seed)

    finetune: dict[str, Any] = {}
    with step(
        7,
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
            "method": "samix",
            "steps": source_metrics["step"],
            "top1": source_metrics.get("top1"),
            "ema_top1": source_metrics.get("ema_top1"),
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
        "mask_mean_by_lam": mask_means,
        "mix": {
            "path": str(mixed.out),
            "rows": mixed.rows,
            "runtime": "onnx",
            "providers": list(getattr(onnx_gen, "providers", [])),
            "images_per_s": round(mixed.images_per_s, 1),
            "preview": str(preview),
        },
        "finetune": finetune,
        "timings_s": timings,
    }
    atomic_write_json(out / "summary.json", summary)
    return summary
