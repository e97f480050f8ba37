"""Choose the demo's fine-tune regime on a validation split (never on the demo's test split).

``samix-hub demo`` fine-tunes the pulled backbone on digits 5-9 with SAMix^P, MixUp, CutMix and
plain training. Its regime (target images per class, epochs, lr) should be one where mixing pays
off at all (MixUp > vanilla). This script takes the artifacts of a finished demo run
(``--demo DIR``: ``DIR/release/{backbone,generator}``), carves a validation split out of the
target TRAINING images exactly as the demo does (:func:`samix_hub.demo.steps.split_target`: the
last ``VAL_PER_CLASS`` images of each class), and fine-tunes every method on the first K images
of each class for each regime ``K:EPOCHS:LR``, with the validation seeds (never the demo's own
seeds 0-2), evaluated on the validation split. It prints and writes the table; the regime is
then set in ``samix_hub/demo/config.py``.

    samix-hub demo --out /tmp/demo
    python benchmarks/demo_regime.py --demo /tmp/demo --regimes 10:80:0.05,20:27:0.05
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from samix_hub.demo.config import FULL
from samix_hub.demo.steps import split_target
from samix_hub.train import train
from samix_hub.train.finetune import finetune_config

REPO = Path(__file__).resolve().parent.parent
VAL_SEEDS = (100, 101, 102)
METHODS = ("vanilla", "mixup", "cutmix", "samix-p")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    demo = args.demo.resolve()
    backbone, generator = demo / "release" / "backbone", demo / "release" / "generator"
    target = demo / "data" / "digits-5-9.npz"
    for p in (backbone, generator, target):
        if not p.exists():
            raise SystemExit(f"{p}: missing; run `samix-hub demo --out {demo}` first")
    options = json.loads(args.options)
    # {"pretrained": false}: the same architecture from random weights
    start = str(backbone) if options.get("pretrained", True) else FULL.backbone
    rows = []
    for regime in args.regimes.split(","):
        per_class, epochs, lr = regime.split(":")
        spec = split_target(target, args.work / "data", int(per_class), split="val")
        for seed in VAL_SEEDS:
            for method in args.methods.split(","):
                tag = f"-{args.tag}" if args.tag else ""
                out = args.work / f"k{per_class}-e{epochs}-lr{lr}-{method}{tag}-s{seed}"
                metrics = out / "metrics.jsonl"
                t0 = time.perf_counter()
                if not metrics.is_file():
                    cfg = finetune_config(
                        start, spec, str(out), method=method,
                        generator=str(generator) if method == "samix-p" else None,
                        epochs=int(epochs), lr=float(lr), seed=seed,
                        batch_size=FULL.finetune_batch_size, workers=0, eval_batch_size=512,
                        eval_every=int(epochs), **options,
                    )  # fmt: skip
                    train(cfg, quiet=True)
                last = json.loads(metrics.read_text().splitlines()[-1])
                row = {
                    "regime": regime, "method": method + tag, "seed": seed, "top1": last["top1"],
                    "steps": last["step"], "seconds": round(time.perf_counter() - t0, 1),
                }  # fmt: skip
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def _diff(tops: dict[str, list[float]], a: str, b: str) -> str:
    if not tops.get(a) or not tops.get(b):
        return "-"
    return f"{statistics.mean(tops[a]) - statistics.mean(tops[b]):+.1f}"


def table(rows: list[dict[str, Any]]) -> str:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        "Demo fine-tune regime on a validation split of the digits 5-9 training images "
        f"(last {FULL.finetune_val_per_class} per class), seeds {list(VAL_SEEDS)}; top-1 % at "
        "the last epoch, mean ± std.",
        "",
        "| images/class : epochs : lr | " + " | ".join(methods) + " | MixUp − vanilla "
        "| SAMix^P − MixUp |",
        "|---|" + "---|" * (len(methods) + 2),
    ]
    for regime in dict.fromkeys(r["regime"] for r in rows):
        tops = {
            m: [r["top1"] for r in rows if r["regime"] == regime and r["method"] == m]
            for m in methods
        }
        cells = [
            f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}" if len(v) > 1 else "-"
            for v in tops.values()
        ]
        lines.append(
            f"| {regime} | " + " | ".join(cells) + f" | {_diff(tops, 'mixup', 'vanilla')} | "
            f"{_diff(tops, 'samix-p', 'mixup')} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--demo", type=Path, required=True, help="A finished demo's --out folder.")
    p.add_argument("--regimes", default="10:80:0.05,20:27:0.05,40:13:0.05")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--options", default="{}", help="JSON of extra fine-tune options.")
    p.add_argument("--tag", default="", help="Name of these options in run names and rows.")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "demo_regime")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args)
    text = table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"demo_regime-{args.tag}" if args.tag else "demo_regime"
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
