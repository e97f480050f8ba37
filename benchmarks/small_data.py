"""Small data is fast: training throughput of a tiny long fine-tune against a larger short one.

A fine-tune on 250 images for many epochs has 3 steps an epoch; anything the loop pays per epoch
(re-spawning loader workers, building loaders) weighs 10x more than on 2,000 images. This script
fine-tunes ``resnet18_cifar_w16`` (random init; the arithmetic is the same as a pretrained one)
with the user's defaults (``--workers 2``) on the CIFAR-10 subset beside the checkout, on
``--small`` images for ``--small-epochs`` and on ``--large`` images for ``--large-epochs``,
alternating the two ``--rounds`` times in one process, and prints images/s (training images
per second of the whole ``train`` call, evaluation switched off) and their ratio.

    python benchmarks/small_data.py                 # 250 x 100 epochs vs 2,000 x 12 epochs
    python benchmarks/small_data.py --small-epochs 25 --large-epochs 3 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import samix_hub
from samix_hub.train import train
from samix_hub.train.finetune import finetune_config

REPO = Path(__file__).resolve().parent.parent
CIFAR = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"


def subset(src: Path, out: Path, images: int) -> str:
    with np.load(src) as d:
        x, y = d["x_train"][:images], d["y_train"][:images]
        np.savez(out / f"first{images}.npz", x_train=x, y_train=y, x_test=x[:64], y_test=y[:64])
    return f"npz:{out / f'first{images}.npz'}"


def one(spec: str, epochs: int, workers: int, out: Path, batch: int = 64) -> dict[str, float]:
    cfg = finetune_config(
        "resnet18_cifar_w16", spec, str(out), method="vanilla", pretrained=False,
        epochs=epochs, batch_size=batch, workers=workers, eval_every=0, seed=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    train(cfg, quiet=True)
    seconds = time.perf_counter() - t0
    steps = len((out / "steps.jsonl").read_text().splitlines())
    return {"seconds": seconds, "steps": steps, "images_per_s": steps * batch / seconds}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--small", type=int, default=250)
    p.add_argument("--small-epochs", type=int, default=100)
    p.add_argument("--large", type=int, default=2000)
    p.add_argument("--large-epochs", type=int, default=12)
    p.add_argument("--workers", type=int, default=2, help="As given by a user (the default).")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        specs = {"small": subset(CIFAR, root, args.small), "large": subset(CIFAR, root, args.large)}
        epochs = {"small": args.small_epochs, "large": args.large_epochs}
        for r in range(args.rounds):
            for name in ("small", "large"):
                res = one(specs[name], epochs[name], args.workers, root / f"{name}-{r}")
                runs[name].append(res)
                print(json.dumps({"run": name, "round": r, **res}), flush=True)
    med = {k: statistics.median(x["images_per_s"] for x in v) for k, v in runs.items()}
    result = {
        "small": {"images": args.small, "epochs": args.small_epochs, "images_per_s": med["small"]},
        "large": {"images": args.large, "epochs": args.large_epochs, "images_per_s": med["large"]},
        "large_over_small": med["large"] / med["small"],
        "workers_given": args.workers,
        "rounds": args.rounds,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "samix_hub": samix_hub.__version__,
    }
    text = (
        f"Training throughput, resnet18_cifar_w16, batch 64, --workers {args.workers} (in-memory "
        f"npz: the loop uses none), {torch.get_num_threads()} thread(s), median of "
        f"{args.rounds} round(s):\n\n"
        "| run | images | epochs | images/s |\n|---|---|---|---|\n"
        f"| small | {args.small} | {args.small_epochs} | {med['small']:.0f} |\n"
        f"| large | {args.large} | {args.large_epochs} | {med['large']:.0f} |\n\n"
        f"large / small: {result['large_over_small']:.2f}x (goal: <= 1.2x)\n"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "small_data.json").write_text(json.dumps(result, indent=2))
    (args.out / "small_data.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
