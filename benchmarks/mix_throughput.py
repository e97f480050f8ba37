"""Throughput of ``samix-hub mix`` against its limit, on the CIFAR-10 subset.

In one run, on one device: images/s of

- the generator alone (batched, images already in memory, no I/O), torch and onnxruntime;
- ``mix`` with plain MixUp (the I/O pipeline: gather, mixing, PNG encoding, Parquet writing);
- ``mix`` with the SAMix generator on torch and on onnxruntime.

The limit of ``mix`` is the slower of "generator alone" and "MixUp mix"; the target is
``mix >= 0.8 x limit``. The generator is a full-width CIFAR ResNet-18 (stage 3) + SAMix mixer at
32 px with random weights (throughput does not depend on the weights). Writes JSON and a
markdown table (``--out``), prints the table on stdout.

    python benchmarks/mix_throughput.py                       # CPU
    python benchmarks/mix_throughput.py --device cuda --num 20000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from samix_hub import Generator, GeneratorConfig, MixerConfig  # noqa: E402
from samix_hub.data import load_data  # noqa: E402
from samix_hub.export.generator import write_generator  # noqa: E402
from samix_hub.export.load import read_generator  # noqa: E402
from samix_hub.export.mixed_writer import MixSettings, write_mixed  # noqa: E402
from samix_hub.mixing.sampling import DEFAULT_ALPHA  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"


def make_generator(folder: Path, with_onnx: bool) -> Path:
    cfg = GeneratorConfig(backbone="resnet18_cifar", mixer=MixerConfig(in_channels=256))
    torch.manual_seed(0)
    gen = Generator(cfg)
    write_generator(gen, folder)
    if with_onnx:
        from samix_hub.export.onnx import export_generator_onnx

        export_generator_onnx(gen, folder / "onnx" / "generator.onnx")
    return folder


def generator_alone(gen: Any, images: torch.Tensor, batch: int, device: torch.device) -> float:
    """Images/s of ``gen(images, partner, lam)`` over all images, batched, no I/O."""
    rng = torch.Generator().manual_seed(0)
    x = images.to(device).float() / 255

    def run(chunk: torch.Tensor) -> None:
        n = chunk.shape[0]
        partner = torch.randperm(n, generator=rng).to(device)
        lam = torch.rand(n, generator=rng).to(device)
        with torch.inference_mode():
            mask, _ = gen(chunk, partner, lam)
        if device.type == "cuda":
            torch.cuda.synchronize()
        del mask

    run(x[:batch])  # warm-up
    start = time.perf_counter()
    for lo in range(0, len(x), batch):
        run(x[lo : lo + batch])
    return len(x) / (time.perf_counter() - start)


def mix_rate(
    out: Path, dataset: Any, settings: MixSettings, gen: Any, device: torch.device, workers: int
) -> float:
    """Images/s of the whole ``mix`` pipeline, written afresh into ``out``."""
    result = write_mixed(
        out, dataset, settings, gen, device=device, workers=workers, resume=False, progress=False
    )
    assert result.complete and result.rows == settings.num, result
    return result.images_per_s


def best(repeat: int, fn: Any, *args: Any) -> float:
    return max(fn(*args) for _ in range(max(1, repeat)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=f"npz:{DATA}")
    ap.add_argument("--num", type=int, default=2000, help="mixed images per SAMix measurement")
    ap.add_argument("--mixup-num", type=int, default=20000, help="mixed images for MixUp")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--runtimes", default="onnx,torch")
    ap.add_argument("--repeat", type=int, default=1, help="best of N runs per measurement")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder")
    args = ap.parse_args()
    if args.data == f"npz:{DATA}" and not DATA.is_file():
        sys.exit(f"{DATA}: missing (the CIFAR-10 subset lives in ../shared/data)")
    device = torch.device(args.device)
    source = load_data(args.data)
    dataset = source.train
    images = torch.from_numpy(dataset.images).permute(0, 3, 1, 2).contiguous()
    runtimes = [r for r in args.runtimes.split(",") if r]
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        folder = make_generator(tmp_path / "generator", with_onnx="onnx" in runtimes)

        def settings(method: str, num: int, runtime: str | None) -> MixSettings:
            return MixSettings(
                data=args.data,
                split="train",
                source_size=len(dataset),
                class_names=list(source.class_names),
                method=method,
                alpha=DEFAULT_ALPHA[method],
                num=num,
                seed=0,
                batch_size=args.batch_size,
                shard_size=1000,
                image_size=tuple(source.image_size),
                runtime=runtime,
            )

        rows["mix mixup (I/O pipeline)"] = best(
            args.repeat,
            mix_rate,
            tmp_path / "mixup",
            dataset,
            settings("mixup", args.mixup_num, None),
            None,
            device,
            args.workers,
        )
        for runtime in runtimes:
            if runtime == "onnx":
                from samix_hub import load_generator

                gen = load_generator(str(folder), runtime="onnx", device=device.type)
                run_device = torch.device("cpu")
            else:
                gen = read_generator(folder, device=device)
                run_device = device
            rows[f"generator alone ({runtime})"] = best(
                args.repeat, generator_alone, gen, images[: args.num], args.batch_size, run_device
            )
            rows[f"mix samix ({runtime})"] = best(
                args.repeat,
                mix_rate,
                tmp_path / runtime,
                dataset,
                settings("samix", args.num, runtime),
                gen,
                run_device,
                args.workers,
            )
    report: dict[str, Any] = {
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
        "generator": "resnet18_cifar stage 3 + SAMix mixer, 32 px",
        "batch_size": args.batch_size,
        "workers": args.workers,
        "images_per_s": rows,
        "ratios": {},
    }
    io_rate = rows["mix mixup (I/O pipeline)"]
    for runtime in runtimes:
        limit = min(rows[f"generator alone ({runtime})"], io_rate)
        report["ratios"][runtime] = rows[f"mix samix ({runtime})"] / limit
    lines = [
        f"| measurement ({args.device}, {os.cpu_count()} CPU cores) | images/s |",
        "|---|---|",
        *[f"| {k} | {v:,.0f} |" for k, v in rows.items()],
        *[f"| mix / limit ({rt}; target >= 0.8) | {r:.2f} |" for rt, r in report["ratios"].items()],
    ]
    table = "\n".join(lines)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mix_throughput.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "mix_throughput.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
