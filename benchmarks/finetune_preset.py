"""Transfer benchmark: does a frozen generator (SAMix^P) beat MixUp, CutMix and plain training?

On the CIFAR-10 subset beside the checkout (``../shared/data/cifar10_subset_4k_1k.npz``):

1. source task = classes 0-4, target task = classes 5-9 (relabelled 0-4); ``--target-images``
   keeps only the first N target training images (N/5 per class);
2. source backbone: plain training on the source classes (``samix-hub train --method vanilla``).
   It is the starting point of every fine-tune and the teacher of generator (b);
3. two generators, both λ-exact (docs/algorithm.md):
   (a) online SAMix on the source classes (``train --method samix``, its own EMA encoder);
   (b) the teacher recipe: only a mixer, trained against the frozen source backbone
       (``train --method samix --teacher RUN --optimizer adamw``);
4. ``--search REGIMES``: before the benchmark, vanilla vs MixUp (seed 0) on a validation split
   held out of the target TRAINING images (the last 20 % of each class), for each regime
   ``IMAGES:LR:EPOCHS``; the benchmark's regime should be one where MixUp beats vanilla, so that
   mixing has something to give (chosen without the test split and without SAMix^P);
5. fine-tuning on the target task from the source backbone with vanilla, MixUp, CutMix,
   SAMix^P (a) and SAMix^P (b), same epochs, batch, lr, for each seed; top-1 on the target test
   split (last epoch and the median of the last 5 evaluations, every ``--eval-every`` epochs), mean ± std over seeds;
6. mask statistics of both generators on target test images (``mask_lambda.mask_statistics``)
   and the step-time ratio SAMix^P / vanilla, timed alternately on the same batches.

Every stage reuses finished runs in ``--work``, so an interrupted benchmark resumes.
Writes ``finetune.json`` and ``finetune.md`` (and ``search.json``/``search.md``) into ``--out``.

    python benchmarks/finetune_preset.py --search 2000:0.01:15,500:0.05:40
    python benchmarks/finetune_preset.py          # the measured regime: 250 images, lr 0.05, 100 epochs
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mask_lambda import mask_statistics, test_images  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CIFAR = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
#: Row name -> (finetune method, which generator).
METHODS: dict[str, tuple[str, str | None]] = {
    "vanilla": ("vanilla", None),
    "mixup": ("mixup", None),
    "cutmix": ("cutmix", None),
    "samix-p (online generator)": ("samix-p", "online"),
    "samix-p (teacher generator)": ("samix-p", "teacher"),
}


def split_classes(src: Path, out: Path, target_images: int | None = None) -> dict[str, str]:
    """``source.npz`` (classes 0-4), ``target.npz`` (5-9 as 0-4) and ``search.npz``.

    ``target_images`` keeps the first N/5 training images of each target class. ``search.npz``
    holds the target training images only: the first 80 % of each class as its training split
    and the last 20 % as its test split (a validation split for :func:`search`).
    """
    out.mkdir(parents=True, exist_ok=True)
    with np.load(src) as data:
        arrays = {k: data[k] for k in data.files}
    parts: dict[str, dict[str, np.ndarray]] = {}
    for name, lo in (("source", 0), ("target", 5)):
        part = {}
        for split in ("train", "test"):
            y = arrays[f"y_{split}"].astype(np.int64).reshape(-1)
            sel = np.flatnonzero((y >= lo) & (y < lo + 5))
            if name == "target" and split == "train" and target_images:
                sel = np.concatenate(
                    [sel[y[sel] == c][: target_images // 5] for c in range(lo, lo + 5)]
                )
                sel.sort()
            part[f"x_{split}"] = arrays[f"x_{split}"][sel]
            part[f"y_{split}"] = y[sel] - lo
        if "classes" in arrays:
            part["classes"] = arrays["classes"][lo : lo + 5]
        parts[name] = part
    t = parts["target"]
    train_idx, val_idx = [], []
    for c in range(5):
        idx = np.flatnonzero(t["y_train"] == c)
        cut = int(round(0.8 * len(idx)))
        train_idx.append(idx[:cut])
        val_idx.append(idx[cut:])
    tr, va = np.sort(np.concatenate(train_idx)), np.sort(np.concatenate(val_idx))
    parts["search"] = {
        "x_train": t["x_train"][tr], "y_train": t["y_train"][tr],
        "x_test": t["x_train"][va], "y_test": t["y_train"][va],
        **({"classes": t["classes"]} if "classes" in t else {}),
    }  # fmt: skip
    suffix = f"-{target_images}" if target_images else ""
    specs = {}
    for name, part in parts.items():
        path = out / (f"{name}{suffix}.npz" if name != "source" else "source.npz")
        if not path.is_file():
            np.savez(path, **part)
        specs[name] = f"npz:{path}"
    return specs


def read_metrics(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _train(cfg: TrainConfig, quiet: bool) -> float:
    """Train (or resume, or reuse a finished run); seconds spent."""
    run = Path(cfg.out)
    rows = read_metrics(run) if (run / "metrics.jsonl").is_file() else []
    if rows and rows[-1]["epoch"] >= cfg.epochs:
        return 0.0
    t0 = time.perf_counter()
    train(cfg, resume=(run / "checkpoints" / "last.pt").is_file(), quiet=quiet)
    return time.perf_counter() - t0


def source_models(args: argparse.Namespace, spec: str, work: Path) -> dict[str, Any]:
    """Source backbone (vanilla), online-SAMix generator, teacher-recipe generator; exported."""
    common = dict(
        data=spec, backbone=args.backbone, batch_size=args.batch_size, seed=0,
        workers=args.workers, device=args.device,
    )  # fmt: skip
    runs = {
        "backbone": TrainConfig(
            method="vanilla", out=str(work / "source-vanilla"), epochs=args.source_epochs,
            lr=0.1, **common,
        ),
        "online": TrainConfig(
            method="samix", out=str(work / "source-samix"), epochs=args.online_epochs, lr=0.1,
            ema_momentum=0.99, ema_end_momentum=0.999, **common,
        ),
        "teacher": TrainConfig(
            method="samix", out=str(work / "source-teacher"), epochs=args.teacher_epochs,
            teacher=str(work / "source-vanilla"), optimizer="adamw", lr=args.teacher_lr,
            weight_decay=0.0, **{**common, "backbone": None},
        ),
    }  # fmt: skip
    info: dict[str, Any] = {}
    for name, cfg in runs.items():
        seconds = _train(cfg, args.quiet)
        release = work / f"release-{name}"
        if not (release / "backbone").is_dir():
            export_run(Path(cfg.out), release, onnx=False, force=True)
        last = read_metrics(Path(cfg.out))[-1]
        info[name] = {
            "run": Path(cfg.out).name,
            "epochs": cfg.epochs,
            "steps": last.get("step"),
            "top1": last.get("top1"),
            "ema_top1": last.get("ema_top1"),
            "seconds": round(seconds, 1),
            "path": release / ("backbone" if name == "backbone" else "generator"),
        }
    return info


def _finetune(
    args: argparse.Namespace, spec: str, backbone: Path, generator: Path | None, run: Path,
    method: str, seed: int, lr: float, epochs: int,
) -> dict[str, Any]:  # fmt: skip
    cfg = finetune_config(
        str(backbone), spec, str(run), method=method,
        generator=str(generator) if generator is not None else None,
        epochs=epochs, batch_size=args.batch_size, lr=lr, seed=seed,
        workers=args.workers, device=args.device, eval_every=args.eval_every,
    )  # fmt: skip
    seconds = _train(cfg, args.quiet)
    metrics = read_metrics(run)
    tops = [m["top1"] for m in metrics]
    return {
        "top1": tops[-1],
        "median_last5": float(statistics.median(tops[-5:])),
        "best_top1": max(tops),
        "images_per_s": statistics.median(m["images_per_s"] for m in metrics),
        "seconds": round(seconds, 1),
    }


def search(args: argparse.Namespace, spec: str, backbone: Path, work: Path) -> list[dict]:
    """Vanilla vs MixUp, seed 0, on the validation split, for each regime IMAGES:LR:EPOCHS."""
    rows = []
    for regime in args.search.split(","):
        images, lr, epochs = regime.split(":")
        specs = split_classes(args.data, work / "data", int(images) or None)
        row: dict[str, Any] = {"regime": regime}
        for method in ("vanilla", "mixup"):
            run = work / f"search-{images}-{lr}-{epochs}-{method}"
            r = _finetune(
                args, specs["search"], backbone, None, run, method, 0, float(lr), int(epochs)
            )
            row[method] = r["median_last5"]
            print(json.dumps({"regime": regime, "method": method, **r}), file=sys.stderr)
        row["mixup_minus_vanilla"] = row["mixup"] - row["vanilla"]
        rows.append(row)
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


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in METHODS:
        mine = [r for r in rows if r["method"] == name]
        if not mine:
            continue
        tops = [r["top1"] for r in mine]
        meds = [r["median_last5"] for r in mine]
        out[name] = {
            "top1_mean": statistics.mean(tops),
            "top1_std": statistics.pstdev(tops),
            "top1_per_seed": tops,
            "median_last5_mean": statistics.mean(meds),
            "median_last5_std": statistics.pstdev(meds),
            "images_per_s": statistics.mean(r["images_per_s"] for r in mine),
        }
    return out


def search_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Budget search: vanilla vs MixUp fine-tuning from the source backbone, seed 0, on a "
        "validation split held out of the target training images (last 20 % per class); "
        "top-1 = median of the last 5 epochs.",
        "",
        "| images : lr : epochs | vanilla (%) | MixUp (%) | MixUp − vanilla |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['regime']} | {r['vanilla']:.2f} | {r['mixup']:.2f} | "
            f"{r['mixup_minus_vanilla']:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
    s, src = result["summary"], result["source"]
    lines = [
        f"Transfer ({result['backbone']}, CIFAR-10 subset): source classes 0-4 -> target classes "
        f"5-9 with {result['target_images']} training images, {result['epochs']} epochs, lr "
        f"{result['lr']}, batch {result['batch_size']}, seeds {result['seeds']}; top-1 on the "
        "target test split.",
        "",
        f"Source backbone: plain training, {src['backbone']['epochs']} epochs, top-1 "
        f"{src['backbone']['top1']:.2f} %. Generators: (a) online SAMix, "
        f"{src['online']['epochs']} epochs ({src['online']['steps']} steps); (b) teacher recipe, "
        f"{src['teacher']['epochs']} epochs ({src['teacher']['steps']} steps, mixer only).",
        "",
        "| method | top-1 last epoch, mean ± std (%) | median of last 5, mean ± std (%) | per seed |",
        "|---|---|---|---|",
    ]
    for name, m in s.items():
        per = ", ".join(f"{v:.2f}" for v in m["top1_per_seed"])
        lines.append(
            f"| {name} | {m['top1_mean']:.2f} ± {m['top1_std']:.2f} | "
            f"{m['median_last5_mean']:.2f} ± {m['median_last5_std']:.2f} | {per} |"
        )
    it = result["interleaved"]
    lines += [
        "",
        f"Step time SAMix^P / vanilla: {it['ratio']:.2f}x (median of {it['steps']} steps timed "
        f"alternately on the same batches; device {result['device']}, {result['threads']} "
        "torch threads).",
        "",
        "Generator masks on target test images (weight of image a):",
        "",
        "| generator | mean mask at λ = 0.2 / 0.5 / 0.8 | slope | spatial std | spread |",
        "|---|---|---|---|---|",
    ]
    for name, m in result["generator_masks"].items():
        at = dict(zip(m["lams"], m["mask_means"], strict=True))
        lines.append(
            f"| {name} | {at[0.2]:.3f} / {at[0.5]:.3f} / {at[0.8]:.3f} | {m['slope']:.3f} | "
            f"{m['spatial_std']:.3f} | {m['spread']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=CIFAR, help="The CIFAR-10 subset .npz.")
    p.add_argument("--backbone", default="resnet18_cifar_w16")
    p.add_argument("--source-epochs", type=int, default=30, help="Source backbone (vanilla).")
    p.add_argument("--online-epochs", type=int, default=10, help="Online SAMix generator (a).")
    p.add_argument("--teacher-epochs", type=int, default=10, help="Teacher-recipe generator (b).")
    p.add_argument("--teacher-lr", type=float, default=1e-3, help="AdamW lr of the mixer (b).")
    p.add_argument("--target-images", type=int, default=250, help="0: all 2,000.")
    p.add_argument("--epochs", type=int, default=100, help="Fine-tune epochs (every method).")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--eval-every", type=int, default=5, help="Evaluate every N fine-tune epochs (and last)."
    )
    p.add_argument("--methods", default=",".join(METHODS), help="Comma-separated rows to run.")
    p.add_argument("--search", default=None, help="Regimes IMAGES:LR:EPOCHS,... (then stop).")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--work", type=Path, default=None, help="Runs folder (default: OUT/finetune).")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def run_preset(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark (resumable: finished runs are reused); returns and writes the result."""
    if not args.data.is_file():
        raise SystemExit(f"{args.data}: missing (the CIFAR-10 subset)")
    torch.set_num_threads(args.threads)
    work = args.work or args.out / "finetune"
    args.out.mkdir(parents=True, exist_ok=True)
    specs = split_classes(args.data, work / "data", args.target_images or None)
    if args.search:
        backbone = source_models(args, specs["source"], work)["backbone"]["path"]
        rows = search(args, specs["search"], backbone, work)
        (args.out / "search.json").write_text(json.dumps(rows, indent=2))
        (args.out / "search.md").write_text(search_markdown(rows))
        print(search_markdown(rows))
        return {"search": rows}
    source = source_models(args, specs["source"], work)
    backbone = source["backbone"]["path"]
    chosen = [m for m in args.methods.split(",") if m]
    rows = []
    for seed in args.seeds:
        for name in chosen:
            method, which = METHODS[name]
            gen = source[which]["path"] if which else None
            tag = name.replace(" ", "_").replace("(", "").replace(")", "")
            run = work / f"ft{args.target_images}-{args.lr}-{args.epochs}-{tag}-s{seed}"
            r = _finetune(
                args, specs["target"], backbone, gen, run, method, seed, args.lr, args.epochs
            )
            rows.append({"method": name, "seed": seed, **r})
            print(json.dumps(rows[-1]), file=sys.stderr)
    teacher_gen = source["teacher"]["path"]
    interleaved = interleaved_step_ratio(args, specs["target"], backbone, teacher_gen)
    masks = {}
    for which in ("online", "teacher"):
        gen = samix_hub.load_generator(str(source[which]["path"]))
        images = test_images(specs["target"], tuple(gen.config.input_size), 256)
        masks[which] = mask_statistics(gen, images)
    for info in source.values():
        info["path"] = info["path"].name
    result = {
        "preset": "transfer",
        "backbone": args.backbone,
        "target_images": args.target_images or 2000,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seeds": args.seeds,
        "source": source,
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
    (args.out / "finetune.json").write_text(json.dumps(result, indent=2))
    (args.out / "finetune.md").write_text(markdown(result))
    return result


def main(argv: list[str] | None = None) -> None:
    result = run_preset(parse(argv))
    if "summary" in result:
        print(markdown(result))


if __name__ == "__main__":
    main()
