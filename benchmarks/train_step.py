"""Training-step cost of each method relative to vanilla: time, peak memory and FLOPs.

Same backbone, batch, image size and device for every method; each step is the engine's real
step (``samix_hub.train.supervised`` step function, NaN check, SGD step, schedule, EMA update)
on synthetic batches. Methods are timed in interleaved rounds (median per method), so a change
in machine load hits all of them alike.

- time: median seconds per step, and its ratio to vanilla;
- memory: CUDA: peak allocated bytes during the steps (``torch.cuda.max_memory_allocated``);
  CPU: growth of the peak resident set over the pre-step baseline, one process per method;
- algorithmic FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one step, i.e. the
  forward/backward passes the method needs (online SAMix: clean and mixed classifier passes,
  an EMA encoder pass to stage 3, an EMA pass on the mixer's mix with its input-gradient
  backward; about 2.9x vanilla). time ratio / FLOP ratio shows the overhead beyond that.

Rows are method specs: a method of ``train`` (``vanilla``, ``mixup``, ``cutmix``, ``automix``,
``samix``, ``samix-p``: SAMix^P at its default read size), ``samix-p@S`` (SAMix^P with
``--generator-scale S``: the generator's encoder reads the batch at S times its native size;
``samix-p@1`` is the paper's read), ``samix-p-int8`` (the generator's int8 ONNX graph in
onnxruntime as the mask function of the same step; a graph reads at its native size) and ``teacher`` (the teacher
recipe, ``train --method samix --teacher``: mixer only, against the frozen backbone). The
generator is the backbone truncated after stage 3 + a λ-exact mixer, at the batch's size.

    python benchmarks/train_step.py                       # CUDA preset when a GPU is present
    python benchmarks/train_step.py --device cpu --backbone resnet18_cifar_w16 --batch-size 32
    python benchmarks/train_step.py --threads 1 --methods vanilla,mixup,samix-p@1,samix-p \\
        --tag train_step_cpu_32px_t1
    python benchmarks/train_step.py --threads 1 --backbone resnet50 --image-size 224 \\
        --batch-size 8 --methods vanilla,samix-p@1,samix-p,teacher --tag train_step_cpu_224px_t1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from samix_hub import Generator
from samix_hub.data.specs import DataSource
from samix_hub.export.generator import write_generator
from samix_hub.models import GeneratorConfig, MixerConfig
from samix_hub.train import TrainConfig, get_scenario
from samix_hub.train.distributed import DistInfo
from samix_hub.train.loop import finite_losses
from samix_hub.train.run_setup import amp
from samix_hub.train.scenario import StepContext

METHODS = ["vanilla", "mixup", "cutmix", "automix", "samix", "samix-p@1", "samix-p@0.5", "samix-p"]
METHODS += ["teacher"]
RESULTS = Path(__file__).resolve().parent / "results"


def _source(args: argparse.Namespace) -> DataSource:
    size = (args.image_size, args.image_size)
    names = [str(i) for i in range(args.num_classes)]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.201)
    return DataSource("synthetic", None, None, args.num_classes, names, 3, size, mean, std)  # type: ignore[arg-type]


def _generator_dir(args: argparse.Namespace, channels: int, folder: Path) -> Path:
    """A generator made from the backbone (stage 3 + a λ-exact mixer), native at the batch's
    size; with ``samix-p-int8`` among the rows, its fp32 and int8 ONNX graphs too."""
    cfg = GeneratorConfig(
        args.backbone,
        MixerConfig(channels, calibration="exact"),
        input_size=(args.image_size, args.image_size),
    )
    gen = Generator(cfg)
    write_generator(gen, folder)
    if any(m.endswith("-int8") for m in args.methods.split(",")):
        from samix_hub.export.int8 import quantize_generator
        from samix_hub.export.onnx import export_generator_onnx

        export_generator_onnx(gen, folder / "generator.onnx")
        calib = torch.rand(
            32, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(2)
        )
        quantize_generator(folder / "generator.onnx", folder / "generator.int8.onnx", calib)
    return folder


def _teacher_dir(args: argparse.Namespace, folder: Path) -> Path:
    """A backbone folder of the (random) backbone: the teacher of the ``teacher`` row."""
    import timm

    from samix_hub.export.backbone import write_backbone_folder

    net = timm.create_model(args.backbone, num_classes=args.num_classes).eval()
    data = _source(args)
    run_config = {
        "scenario": "sl", "method": "vanilla", "backbone": args.backbone,
        "num_classes": args.num_classes, "class_names": list(data.class_names), "in_chans": 3,
        "image_size": [args.image_size, args.image_size], "mean": list(data.mean),
        "std": list(data.std), "epochs": 1, "batch_size": args.batch_size, "seed": 0,
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    write_backbone_folder(net, folder, run_config=run_config, metrics=[], onnx=False)
    return folder


def _parse(spec: str) -> tuple[str, dict[str, Any]]:
    """A row's spec -> (``train`` method, extra TrainConfig fields)."""
    if spec == "teacher":
        return "samix", {}
    if spec.startswith("samix-p@"):
        return "samix-p", {"generator_scale": float(spec.split("@", 1)[1])}
    if spec == "samix-p-int8":
        return "samix-p", {}
    return spec, {}


class Bench:
    """One method's modules, optimizer and step, as the training loop runs them."""

    def __init__(self, spec: str, args: argparse.Namespace, gen_dir: Path) -> None:
        self.device = torch.device(args.device)
        method, extra = _parse(spec)
        if method == "samix-p":
            extra["generator"] = str(gen_dir)
        if spec == "teacher":
            self.scenario: Any = get_scenario("teacher")
            self.cfg = self.scenario.resolve(TrainConfig(
                method=method, data="synthetic", backbone=None, out="-", device=args.device,
                batch_size=args.batch_size, amp=args.amp, teacher=str(gen_dir.parent / "teacher"),
                optimizer="adamw", lr=1e-3, weight_decay=0.0,
            ))  # fmt: skip
        else:
            self.scenario = get_scenario("sl")
            self.cfg = TrainConfig(
                method=method, data="synthetic", backbone=args.backbone, out="-",
                device=args.device, batch_size=args.batch_size, amp=args.amp, **extra,
            ).resolve()  # fmt: skip
        data = _source(args)
        self.mods = self.scenario.build(self.cfg, data, self.device)
        if spec == "samix-p-int8":
            from samix_hub.export.onnx import OnnxGenerator

            frozen = self.mods.frozen
            self.ort = OnnxGenerator(
                gen_dir / "generator.int8.onnx", frozen.config, device="cpu",
                threads=torch.get_num_threads(),
            )  # fmt: skip
            self.mods.mix_method.mask_fn = self.ort.masks
        self.channels_last = self.device.type == "cuda"
        if self.channels_last:
            for m in (self.mods.model, self.mods.ema):
                if m is not None:  # the teacher recipe has no EMA copy
                    m.to(memory_format=torch.channels_last)
        self.autocast, self.scaler = amp(self.device, args.amp)
        params = [p for m in self.mods.trainable() for p in m.parameters() if p.requires_grad]
        self.opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=10_000)
        self.step_fn = self.scenario.step_fn(method)
        g = torch.Generator().manual_seed(0)
        n, s = args.batch_size, args.image_size
        self.images = torch.rand(n, 3, s, s, generator=g).to(self.device)
        self.labels = torch.randint(args.num_classes, (n,), generator=g).to(self.device)
        self.gen = torch.Generator().manual_seed(1)
        self.info = DistInfo(device=self.device)
        self.step = 0

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def run(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        ctx = StepContext(
            self.mods, self.cfg, self.device, self.gen, self.step, 10_000, self.backward,
            self.autocast, self.channels_last,
        )  # fmt: skip
        losses = self.step_fn(ctx, self.images, self.labels)
        finite_losses(losses, self.info, self.step, 0, Path("-"))  # syncs, as the loop does
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        self.scenario.after_step(self.mods, self.step, 10_000, self.cfg)
        self.step += 1

    def flops(self) -> int:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.run()
        return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def worker(args: argparse.Namespace, gen_dir: Path) -> None:
    """CPU memory: one method per process; peak RSS growth over the pre-step baseline."""
    bench = Bench(args.worker, args, gen_dir)
    base = _rss_mib()
    for _ in range(3):
        bench.run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"method": args.worker, "peak_mib": peak - base}))


def main() -> None:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--backbone", default="resnet18_cifar" if cuda else "resnet18_cifar_w16")
    p.add_argument("--batch-size", type=int, default=100 if cuda else 32)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=100)
    p.add_argument("--steps", type=int, default=30 if cuda else 8, help="timed rounds")
    p.add_argument("--warmup", type=int, default=5 if cuda else 2)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default=None, help="file name stem (default train_step_<device>)")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--gen-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    if args.worker:
        worker(args, args.gen_dir)
        return
    device = torch.device(args.device)
    tmp = Path(tempfile.mkdtemp(prefix="samix-bench-"))
    probe = Bench("vanilla", args, tmp)  # the stage-3 width, for the frozen generator
    with torch.no_grad():
        channels = probe.mods.model.eval().features(probe.images[:2], 3).shape[1]
    gen_dir = _generator_dir(args, int(channels), tmp / "generator")
    if "teacher" in methods:
        _teacher_dir(args, tmp / "teacher")
    del probe

    benches = {m: Bench(m, args, gen_dir) for m in methods}
    flops = {m: b.flops() for m, b in benches.items()}
    for _ in range(args.warmup):
        for b in benches.values():
            b.run()
    times: dict[str, list[float]] = {m: [] for m in methods}
    memory: dict[str, float] = {}
    for _ in range(args.steps):
        for m, b in benches.items():
            _sync(device)
            t0 = time.perf_counter()
            b.run()
            _sync(device)
            times[m].append(time.perf_counter() - t0)
    if device.type == "cuda":
        for m, b in benches.items():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            for _ in range(2):
                b.run()
            memory[m] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        del benches
        for m in methods:
            cmd = [
                sys.executable,
                __file__,
                *sys.argv[1:],
                "--worker",
                m,
                "--gen-dir",
                str(gen_dir),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            memory[m] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]

    base_t = statistics.median(times["vanilla"])
    rows = []
    for m in methods:
        t = statistics.median(times[m])
        row = {
            "method": m,
            "step_s": t,
            "time_ratio": t / base_t,
            "peak_mib": memory[m],
            "memory_ratio": memory[m] / memory["vanilla"],
            "gflops": flops[m] / 1e9,
            "flop_ratio": flops[m] / flops["vanilla"],
        }
        row["overhead"] = row["time_ratio"] / row["flop_ratio"]
        rows.append(row)
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "backbone": args.backbone,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "num_classes": args.num_classes,
        "amp": bool(args.amp and device.type == "cuda"),
        "steps": args.steps,
        "torch": torch.__version__,
        "memory": "peak allocated (CUDA)" if device.type == "cuda" else "peak RSS growth (CPU)",
    }
    stem = args.tag or f"train_step_{device.type}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    lines = [
        f"Training step vs vanilla: {meta['backbone']}, batch {meta['batch_size']}, "
        f"{meta['image_size']} px, {meta['num_classes']} classes, {meta['device']} "
        f"(threads {meta['threads']}, amp {meta['amp']}), median of {meta['steps']} rounds; "
        f"memory = {meta['memory']}.",
        "",
        "| method | step (ms) | time ratio | peak MiB | memory ratio | FLOP ratio | time / FLOP ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {1e3 * r['step_s']:.1f} | {r['time_ratio']:.2f} | "
            f"{r['peak_mib']:.0f} | {r['memory_ratio']:.2f} | {r['flop_ratio']:.2f} | "
            f"{r['overhead']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / f"{stem}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
