"""SSL preset: MoCo v2, MoCo + MixUp and MoCo + SAMix at a fixed budget.

For each method: ``samix-hub train --scenario ssl`` on the CIFAR-10 subset (4k train / 1k test,
``../shared/data``), then the linear probe of the query backbone (frozen, features without
augmentation, see :mod:`samix_hub.train.linear_probe`) and the last kNN monitor value. A row for
the same network at initialisation (no training) shows what the budget buys. Step time: the
median of timed steps of each method's step function on one fixed two-view batch (after warm-up,
same device, same process, methods interleaved), and the ratio SSL SAMix / MoCo. Writes ``results.json`` and
``results.md`` under ``--out`` and prints the table.

    python benchmarks/ssl_accuracy.py                                   # CPU, small budget
    python benchmarks/ssl_accuracy.py --device cuda --backbone resnet18_cifar --epochs 200 \\
        --batch-size 256 --lr 0.06 --out bench/ssl-r18
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from samix_hub.data import load_data  # noqa: E402
from samix_hub.train import SslOptions, StepContext, TrainConfig, train  # noqa: E402
from samix_hub.train.checkpoint import load_checkpoint, read_jsonl  # noqa: E402
from samix_hub.train.distributed import DistInfo  # noqa: E402
from samix_hub.train.knn import knn_accuracy  # noqa: E402
from samix_hub.train.linear_probe import linear_probe  # noqa: E402
from samix_hub.train.loader import (  # noqa: E402
    SeededTransform,
    eval_loader,
    eval_transform,  # noqa: E402
)
from samix_hub.train.selfsup import SelfSupScenario, build_moco  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
METHODS = ("moco", "mixup", "samix")


def step_times(
    cfgs: dict[str, TrainConfig], data: Any, device: torch.device, rounds: int
) -> dict[str, float]:
    """Median seconds of one optimizer step (step function + SGD + key update) per method, on
    one fixed two-view batch. Methods are timed in interleaved rounds, so that load changes on
    a shared machine hit every method alike."""
    sc = SelfSupScenario()
    setups = {}
    for method, cfg in cfgs.items():
        cfg = sc.resolve(cfg)
        mods = sc.build(cfg, data, device)
        sc.wrap(mods, DistInfo(device=device))
        params = [p for m in mods.trainable() for p in m.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9)
        ds = SeededTransform(data.train, sc.train_transform(cfg, data), cfg.seed)
        images = torch.stack([ds[i][0] for i in range(cfg.batch_size)]).to(device)
        setups[method] = (cfg, mods, opt, images, sc.step_fn(cfg.method))
    times: dict[str, list[float]] = {m: [] for m in cfgs}
    for step in range(rounds + 2):
        for method, (cfg, mods, opt, images, step_fn) in setups.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            gen = torch.Generator().manual_seed(step)
            ctx = StepContext(mods, cfg, device, gen, step, 1000, lambda loss: loss.backward())
            step_fn(ctx, images, None)
            opt.step()
            sc.after_step(mods, step, 1000, cfg)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= 2:  # warm-up
                times[method].append(time.perf_counter() - t0)
    return {m: statistics.median(t) for m, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=f"npz:{DATA}")
    ap.add_argument("--backbone", default="resnet18_cifar_w16")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.06)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--queue-len", type=int, default=None)
    ap.add_argument("--probe-epochs", type=int, default=100)
    ap.add_argument("--timing-steps", type=int, default=10, help="timed rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=Path("bench/ssl"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = load_data(args.data)
    args.out.mkdir(parents=True, exist_ok=True)

    def config(method: str, out: Path) -> TrainConfig:
        ssl = SslOptions(queue_len=args.queue_len or None)
        return TrainConfig(
            method=method, data=args.data, backbone=args.backbone, out=str(out),
            scenario="ssl", epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, seed=args.seed, device=args.device,
            workers=args.workers, ssl=ssl,
        )  # fmt: skip

    rows: list[dict[str, Any]] = []
    init = build_moco(args.backbone, data.mean, data.std, data.channels, seed=args.seed)
    init = init.to(device)
    tf = eval_transform(data.image_size)
    knn0 = knn_accuracy(
        init.embed, eval_loader(data.train, tf, 256, args.workers),
        eval_loader(data.test, tf, 256, args.workers), data.num_classes, device,
    )  # fmt: skip
    probe0 = linear_probe(init.embed, data, device, args.probe_epochs, workers=args.workers)
    rows.append({"method": "init (no training)", "knn_top1": knn0["knn_top1"],
                 "probe_top1": probe0["top1"], "train_s": 0.0, "step_s": None})  # fmt: skip
    for method in args.methods.split(","):
        run = args.out / "runs" / method
        ckpt = run / "checkpoints" / "last.pt"
        wall = None  # a finished run in --out is reused, not retrained
        if not ckpt.is_file():
            t0 = time.perf_counter()
            train(config(method, run), quiet=False)
            wall = time.perf_counter() - t0
        metrics = read_jsonl(run / "metrics.jsonl")
        state = load_checkpoint(run)
        model = build_moco(args.backbone, data.mean, data.std, data.channels)
        model.net.load_state_dict(state["model"])
        probe = linear_probe(model.to(device).embed, data, device, args.probe_epochs,
                             workers=args.workers)  # fmt: skip
        rows.append({
            "method": f"moco+{method}" if method != "moco" else "moco",
            "knn_top1": metrics[-1]["knn_top1"] if metrics else None,
            "probe_top1": probe["top1"],
            "train_s": wall,
            "step_s": None,
            "steps": int(state["step"]),
            "final_train_loss": metrics[-1]["train_loss"] if metrics else None,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    methods = args.methods.split(",")
    timed = step_times(
        {m: config(m, args.out / "runs" / m) for m in methods}, data, device, args.timing_steps
    )
    for r in rows[1:]:
        r["step_s"] = timed[r["method"].removeprefix("moco+")]
    base = next((r["step_s"] for r in rows if r["method"] == "moco"), None)
    for r in rows:
        r["step_ratio_vs_moco"] = r["step_s"] / base if base and r["step_s"] else None
    result = {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "device": str(device),
        "host": platform.platform(),
        "torch": torch.__version__,
        "rows": rows,
    }
    (args.out / "results.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"SSL on {args.data} ({args.backbone}, {args.epochs} epochs, batch {args.batch_size}, "
        f"lr {args.lr}, seed {args.seed}, {device})",
        "",
        "| method | kNN top-1 % | linear probe top-1 % | step s | step / MoCo | train wall s |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        knn = f"{r['knn_top1']:.2f}" if r["knn_top1"] is not None else "-"
        step = f"{r['step_s']:.3f}" if r["step_s"] else "-"
        ratio = f"{r['step_ratio_vs_moco']:.2f}" if r["step_ratio_vs_moco"] else "-"
        wall = f"{r['train_s']:.0f}" if r["train_s"] is not None else "-"
        lines.append(
            f"| {r['method']} | {knn} | {r['probe_top1']:.2f} | {step} | {ratio} | {wall} |"
        )
    table = "\n".join(lines) + "\n"
    (args.out / "results.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
