"""Fixed-budget accuracy of vanilla, MixUp, CutMix, AutoMix and SAMix (same engine, same budget).

Presets:
- ``cpu``: the CIFAR-10 subset in ../shared/data (4,000 train / 1,000 test images), a narrow
  ResNet-18 (``resnet18_cifar_w16``), the same epochs, batch and seeds for every method.
- ``cuda``: the CIFAR-100 ResNet-18 200-epoch row of the paper (reference top-1:
  vanilla 76.42, MixUp 78.52, CutMix 79.45, AutoMix 80.12, SAMix 81.21), given the full data set
  (``--data cifar100:DIR``) and a GPU.

Reports the top-1 of the last epoch and the median over the last ``min(10, epochs)`` evaluations
(the reference's statistic), per seed and as mean over seeds; writes JSON and a markdown table.

    python benchmarks/accuracy.py --preset cpu --epochs 15 --seeds 0,1
    python benchmarks/accuracy.py --preset cpu --methods samix,samix-reference   # λ-exact or not
    python benchmarks/accuracy.py --preset cuda --data cifar100:~/data
    python benchmarks/accuracy.py --preset finetune [transfer.py options]

``--preset finetune`` runs ``benchmarks/transfer.py``: fine-tuning from one
backbone with vanilla, MixUp, CutMix and a frozen SAMix^P generator (its own protocol).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from samix_hub.train import TrainConfig, train

ROOT = Path(__file__).resolve().parent
SUBSET = ROOT.parent.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
METHODS = ["vanilla", "mixup", "cutmix", "automix", "samix"]
#: Extra rows: name -> (method, TrainConfig options). ``samix`` itself runs with this project's
#: defaults (λ-exact masks, per-image variance; docs/algorithm.md); ``samix-reference`` is the
#: reference mixer (no calibration, batch-wide variance), to measure what the deviation changes.
VARIANTS: dict[str, tuple[str, dict]] = {
    "samix-reference": ("samix", {"calibration": "none", "mask_variance": "batch"}),
    "automix-reference": ("automix", {"calibration": "none", "mask_variance": "batch"}),
}
PRESETS = {
    "cpu": dict(
        data=f"npz:{SUBSET}", backbone="resnet18_cifar_w16", epochs=15, batch_size=100,
        device="cpu", workers=0, seeds="0,1",
    ),
    "cuda": dict(
        data=None, backbone="resnet18_cifar", epochs=200, batch_size=100, device="cuda",
        workers=4, seeds="0,1",
    ),
}  # fmt: skip


def main() -> None:
    if sys.argv[1:3] == ["--preset", "finetune"]:  # the transfer benchmark, in transfer.py
        from transfer import main as finetune_main  # beside this script

        finetune_main(sys.argv[3:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    for key in ("data", "backbone", "device", "seeds"):
        p.add_argument(f"--{key}", default=None)
    for key in ("epochs", "batch_size", "workers", "max_steps"):
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=None)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--runs", type=Path, default=Path(tempfile.gettempdir()) / "samix-accuracy")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    opts = dict(PRESETS[args.preset])
    for key in ("data", "backbone", "device", "seeds", "epochs", "batch_size", "workers"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
    if not opts["data"]:
        p.error("--data is required for the cuda preset (e.g. cifar100:~/data)")
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in str(opts.pop("seeds")).split(",")]
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        per_seed = []
        for seed in seeds:
            out = args.runs / f"{args.preset}-{method}-s{seed}"
            base, extra = VARIANTS.get(method, (method, {}))
            cfg = TrainConfig(
                method=base, out=str(out), seed=seed, max_steps=args.max_steps, **opts, **extra
            )
            t0 = time.time()
            train(cfg, resume=True, quiet=True)
            rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            last = rows[-min(10, len(rows)) :]
            per_seed.append(
                {
                    "seed": seed,
                    "top1": rows[-1]["top1"],
                    "median_last": statistics.median(r["top1"] for r in last),
                    "ema_top1": rows[-1].get("ema_top1"),
                    "minutes": (time.time() - t0) / 60,
                }
            )
            print(method, per_seed[-1], flush=True)
        results[method] = {
            "seeds": per_seed,
            "mean_top1": statistics.mean(s["top1"] for s in per_seed),
            "mean_median_last": statistics.mean(s["median_last"] for s in per_seed),
        }
        _write(args, opts, seeds, results)


def _write(args: argparse.Namespace, opts: dict, seeds: list[int], results: dict) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"accuracy_{args.preset}"
    meta = {**opts, "seeds": seeds, "max_steps": args.max_steps, "torch": torch.__version__}
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    lines = [
        f"Top-1 (%) on {opts['data']}, {opts['backbone']}, {opts['epochs']} epochs, batch "
        f"{opts['batch_size']}, seeds {seeds}"
        + (f", max {args.max_steps} steps" if args.max_steps else ""),
        "",
        "| method | top-1 last epoch (per seed) | mean | median of last 10 evals (mean) |",
        "|---|---|---|---|",
    ]
    for method, r in results.items():
        per = " / ".join(f"{s['top1']:.2f}" for s in r["seeds"])
        lines.append(f"| {method} | {per} | {r['mean_top1']:.2f} | {r['mean_median_last']:.2f} |")
    text = "\n".join(lines) + "\n"
    (args.out / f"{stem}.md").write_text(text)
    print(text, flush=True)


if __name__ == "__main__":
    main()
