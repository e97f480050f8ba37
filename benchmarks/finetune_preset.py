"""Fine-tune preset (issue 9): vanilla / MixUp / CutMix / frozen-generator SAMix^P, same start.

On the CIFAR-10 subset beside the checkout (``../shared/data/cifar10_subset_4k_1k.npz``):

1. source task = classes 0-4: online SAMix (``samix-hub train --method samix``) trains a backbone
   and, with it, a generator; both are exported (``export_run``) as artifacts;
2. target task = classes 5-9 (relabelled 0-4): ``samix-hub finetune`` from that backbone with
   vanilla, MixUp, CutMix and SAMix^P (the exported generator, frozen), same epochs, batch, lr,
   for each seed;
3. reports the top-1 of each (last evaluation, mean over seeds) and the step-time ratio
   SAMix^P / vanilla from the loop's own per-step timing (``images_per_s`` in metrics.jsonl,
   data loading excluded).

Reduced CPU budgets are the default (see ``--help``); the paper's budgets are hundreds of epochs.
Writes ``finetune.json`` and ``finetune.md`` into ``--out``.

    python benchmarks/finetune_preset.py --out benchmarks/results
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

import numpy as np
import torch

import samix_hub
from samix_hub.engine import TrainConfig, train
from samix_hub.engine.finetune import finetune_config
from samix_hub.export_run import export_run

REPO = Path(__file__).resolve().parent.parent
CIFAR = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
METHODS = ("vanilla", "mixup", "cutmix", "samix-p", "samix-p+adjust")
#: Row name -> (finetune method, extra options); "+adjust": every mask rescaled to mean λ.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "samix-p+adjust": ("samix-p", {"mask_adjust": 1.0}),
}


def split_classes(src: Path, out: Path) -> dict[str, str]:
    """``source.npz`` (classes 0-4) and ``target.npz`` (5-9 as 0-4) from the CIFAR subset."""
    out.mkdir(parents=True, exist_ok=True)
    specs = {}
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    for name, lo in (("source", 0), ("target", 5)):
        part = {}
        for split in ("train", "test"):
            y = arrays[f"y_{split}"].astype(np.int64).reshape(-1)
            sel = (y >= lo) & (y < lo + 5)
            part[f"x_{split}"] = arrays[f"x_{split}"][sel]
            part[f"y_{split}"] = y[sel] - lo
        if "classes" in arrays:
            part["classes"] = arrays["classes"][lo : lo + 5]
        np.savez(out / f"{name}.npz", **part)
        specs[name] = f"npz:{out / f'{name}.npz'}"
    return specs


def read_metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def pretrain(args: argparse.Namespace, spec: str, work: Path) -> tuple[Path, Path, dict]:
    """Online SAMix on the source classes; exported backbone and generator folders."""
    run = work / "pretrain-samix"
    cfg = TrainConfig(
        method="samix", data=spec, backbone=args.backbone, out=str(run),
        epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=0.1, seed=0,
        workers=args.workers, device=args.device,
    )  # fmt: skip
    t0 = time.perf_counter()
    train(cfg, resume=(run / "checkpoints" / "last.pt").is_file(), quiet=args.quiet)
    seconds = time.perf_counter() - t0
    release = work / "release"
    if not (release / "backbone").is_dir():
        export_run(run, release, onnx=False, force=True)
    last = read_metrics(run)[-1]
    info = {"epochs": args.pretrain_epochs, "top1": last.get("top1"), "seconds": seconds}
    return release / "backbone", release / "generator", info


def finetune_all(
    args: argparse.Namespace, spec: str, backbone: Path, generator: Path, work: Path
) -> list[dict[str, Any]]:
    rows = []
    for seed in args.seeds:
        for name in METHODS:
            method, extra = VARIANTS.get(name, (name, {}))
            run = work / f"ft-{name}-s{seed}"
            cfg = finetune_config(
                str(backbone), spec, str(run), method=method,
                generator=str(generator) if method == "samix-p" else None,
                epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
                workers=args.workers, device=args.device, **extra,
            )  # fmt: skip
            t0 = time.perf_counter()
            reused = (run / "checkpoints" / "last.pt").is_file()
            train(cfg, resume=reused, quiet=args.quiet)
            metrics = read_metrics(run)
            rows.append(
                {
                    "method": name,
                    "seed": seed,
                    "reused_run": reused,
                    "top1": metrics[-1]["top1"],
                    "ema_top1": metrics[-1].get("ema_top1"),
                    "best_top1": max(m["top1"] for m in metrics),
                    "images_per_s": statistics.median(m["images_per_s"] for m in metrics),
                    "seconds": time.perf_counter() - t0,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def interleaved_step_ratio(
    args: argparse.Namespace, spec: str, backbone: Path, generator: Path, steps: int = 12
) -> dict[str, float]:
    """Median step time of SAMix^P and vanilla, timed alternately on the same batches.

    Alternating the two in one process cancels the drift of a shared machine's load, which
    separate runs (the loop's ``images_per_s``) do not. A step = the method's step function
    (mixing + forward + backward) + the optimizer step, as in the loop.
    """
    from samix_hub.data import load_data
    from samix_hub.data.transforms import train_transform
    from samix_hub.engine import StepContext
    from samix_hub.engine.finetune import FinetuneScenario

    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    parts = {}
    for method in ("vanilla", "samix-p"):
        sc = FinetuneScenario()
        cfg = sc.resolve(
            finetune_config(
                str(backbone), spec, "unused", method=method, batch_size=args.batch_size,
                generator=str(generator) if method == "samix-p" else None, amp=False,
            )
        )  # fmt: skip
        data = load_data(spec)
        data.image_size = tuple(cfg.image_size)  # type: ignore[assignment,arg-type]
        mods = sc.build(cfg, data, device)
        opt = torch.optim.SGD([p for p in mods.model.parameters() if p.requires_grad], lr=0.01)
        parts[method] = (sc.step_fn(method), mods, cfg, opt, data)
    data = parts["vanilla"][4]
    tf = train_transform(data.image_size)
    g = torch.Generator().manual_seed(0)
    times: dict[str, list[float]] = {m: [] for m in parts}
    for i in range(steps + 2):  # two warm-up rounds
        idx = torch.randint(len(data.train), (args.batch_size,), generator=g).tolist()
        items = [data.train[j] for j in idx]
        x = torch.stack([tf(im) for im, _ in items]).to(device)
        y = torch.tensor([lab for _, lab in items]).to(device)
        for method, (fn, mods, cfg, opt, _) in parts.items():
            ctx = StepContext(
                mods, cfg, device, torch.Generator().manual_seed(i), i, steps,
                lambda loss, _branch: loss.backward(),
            )  # fmt: skip
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            fn(ctx, x, y)
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                times[method].append(time.perf_counter() - t0)
    med = {m: statistics.median(t) for m, t in times.items()}
    return {
        "vanilla_s": med["vanilla"],
        "samix_p_s": med["samix-p"],
        "ratio": med["samix-p"] / med["vanilla"],
        "steps": steps,
    }


def mask_stats(generator: Path, spec: str, n: int = 64) -> list[dict[str, float]]:
    """How the generator's masks relate to λ on target test images (mean should be ≈ λ)."""
    from samix_hub.data import load_data

    gen = samix_hub.load_generator(str(generator))
    test = load_data(spec).test
    x = torch.stack([test[i][0] for i in range(n)]).float() / 255.0  # type: ignore[index]
    partner = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    out = []
    for lam in (0.2, 0.5, 0.8):
        with torch.no_grad():
            m = gen.masks(x, partner, lam)
        out.append(
            {
                "lam": lam,
                "mask_mean": float(m.mean()),
                "per_image_mean_std": float(m.mean((1, 2, 3)).std()),
                "spatial_std": float(m.std((2, 3)).mean()),
            }
        )
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for method in METHODS:
        mine = [r for r in rows if r["method"] == method]
        tops = [r["top1"] for r in mine]
        out[method] = {
            "top1_mean": statistics.mean(tops),
            "top1_std": statistics.pstdev(tops),
            "top1_per_seed": tops,
            "images_per_s": statistics.mean(r["images_per_s"] for r in mine),
        }
    out["step_time_ratio_samix_p_vs_vanilla"] = (
        out["vanilla"]["images_per_s"] / out["samix-p"]["images_per_s"]
    )
    return out


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    lines = [
        f"# Fine-tune preset ({result['backbone']}, CIFAR-10 subset classes 5-9, "
        f"{result['epochs']} epochs, seeds {result['seeds']})",
        "",
        f"Start: online SAMix on classes 0-4 for {result['pretrain']['epochs']} epochs "
        f"(source top-1 {result['pretrain']['top1']:.2f} %); its backbone and generator.",
        "",
        "| method | top-1 mean ± std (%) | per seed | images/s (train step) |",
        "|---|---|---|---|",
    ]
    for method in METHODS:
        m = s[method]
        per = ", ".join(f"{v:.2f}" for v in m["top1_per_seed"])
        lines.append(
            f"| {method} | {m['top1_mean']:.2f} ± {m['top1_std']:.2f} | {per} | "
            f"{m['images_per_s']:.1f} |"
        )
    lines += [
        "",
        f"Step-time ratio SAMix^P / vanilla: {s['step_time_ratio_samix_p_vs_vanilla']:.2f}x "
        "from the runs' own timing (separate runs, so shared-machine load drift enters);",
        f"{result['interleaved']['ratio']:.2f}x from steps timed alternately on the same "
        f"batches (median of {result['interleaved']['steps']}: SAMix^P "
        f"{1000 * result['interleaved']['samix_p_s']:.0f} ms, vanilla "
        f"{1000 * result['interleaved']['vanilla_s']:.0f} ms; device {result['device']}, "
        f"{result['threads']} torch threads).",
        "",
        "Generator masks on target test images (weight of image a; the mean should be ≈ λ):",
        "",
        "| λ | mask mean | std of per-image means | mean spatial std |",
        "|---|---|---|---|",
    ]
    for m in result["generator_masks"]:
        lines.append(
            f"| {m['lam']} | {m['mask_mean']:.3f} | {m['per_image_mean_std']:.3f} | "
            f"{m['spatial_std']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=CIFAR, help="The CIFAR-10 subset .npz.")
    p.add_argument("--backbone", default="resnet18_cifar_w16")
    p.add_argument("--pretrain-epochs", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3, help="Fine-tune epochs (every method).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--work", type=Path, default=None, help="Runs folder (default: OUT/finetune).")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def run_preset(args: argparse.Namespace) -> dict[str, Any]:
    """The whole preset (resumable: finished runs are reused); returns and writes the result."""
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: missing (the CIFAR-10 subset)")
    torch.set_num_threads(args.threads)
    work = args.work or args.out / "finetune"
    specs = split_classes(args.data, work / "data")
    backbone, generator, pre = pretrain(args, specs["source"], work)
    rows = finetune_all(args, specs["target"], backbone, generator, work)
    interleaved = interleaved_step_ratio(args, specs["target"], backbone, generator)
    masks = mask_stats(generator, specs["target"])
    result = {
        "preset": "finetune",
        "backbone": args.backbone,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seeds": args.seeds,
        "pretrain": pre,
        "runs": rows,
        "summary": summarise(rows),
        "interleaved": interleaved,
        "generator_masks": masks,
        "device": "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu",
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "samix_hub": samix_hub.__version__,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "finetune.json").write_text(json.dumps(result, indent=2))
    (args.out / "finetune.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> None:
    result = run_preset(parse(argv))
    print(markdown(result))


if __name__ == "__main__":
    main()
