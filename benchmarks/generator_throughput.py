"""Generator throughput (images/s): torch eager vs onnxruntime (fp32 and int8), one run.

For each setup (default: the shipped ``builtin:cifar10-small``; random-weight generators at
32 px with a CIFAR-stem ResNet-18 and at 224 px with timm's ResNet-18 and ResNet-50), a
generator (encoder to stage 3 + SAMix mixer) is exported to ONNX and timed at batch 32 on the
same real images (the CIFAR-10 subset beside the checkout, resized; random
images when it is absent). With ``--quantize int8`` the graph is also statically quantised
(calibrated on other real images) and its mask fidelity against fp32 is reported (mean and max
|Δmask|). torch is also timed reading a quarter-size copy (``--generator-scale 0.25``, the
fine-tune default; docs/algorithm.md "The generator's read size"). CUDA is timed too when torch /
onnxruntime offer it. Writes JSON and a markdown table: images/s and ms per image.

A setup is ``SIZE:BACKBONE`` (random weights: encoder timm init; mixer its N(0, 0.01) init
scaled up so the masks vary spatially like a trained mixer's) or a generator source
(``builtin:NAME``, a folder): throughput does not depend on the values, mask fidelity somewhat
does.

    python benchmarks/generator_throughput.py --quantize int8 --out benchmarks/results
    python benchmarks/generator_throughput.py --setups 224:resnet50 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import samix_hub
from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.export.int8 import quantize_generator
from samix_hub.export.onnx import OnnxGenerator, export_generator_onnx
from samix_hub.mixing.read_size import DEFAULT_GENERATOR_SCALE, encoder_size
from samix_hub.models.encoder import StageEncoder

REPO = Path(__file__).resolve().parent.parent
CIFAR = REPO.parent / "shared" / "data" / "cifar10_subset_4k_1k.npz"
SETUPS = "builtin:cifar10-small,32:resnet18_cifar,224:resnet18,224:resnet50"


def images(n: int, size: int, offset: int) -> torch.Tensor:
    if CIFAR.is_file():
        with np.load(CIFAR) as data:
            x = torch.from_numpy(data["x_test"][offset : offset + n]).permute(0, 3, 1, 2)
        x = x.float() / 255.0
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(offset))


def build(setup: str) -> Generator:
    """``SIZE:BACKBONE`` -> a random-weight generator; anything else is loaded as a source."""
    size_text, _, backbone = setup.partition(":")
    if not size_text.isdigit():
        gen = samix_hub.load_generator(setup)
        assert isinstance(gen, Generator)
        return gen
    size = int(size_text)
    k = 0.25 if size <= 64 else -1.0  # λ rescaling of small images (docs/algorithm.md)
    torch.manual_seed(0)
    channels = StageEncoder(backbone, 3).out_channels
    gen = Generator(
        GeneratorConfig(
            backbone, MixerConfig(in_channels=channels, lam_mul_k=k), input_size=(size, size)
        )
    )
    scales = {"query": 100.0, "key": 100.0, "value.conv.0.conv": 30.0, "value.conv.1": 100.0}
    with torch.no_grad():
        for name, p in gen.mixer.named_parameters():
            for prefix, scale in scales.items():
                if name.startswith(prefix):
                    p.mul_(scale)
    return gen.freeze()


def rate(fn: Any, batch: int, seconds: float, sync: Any = None) -> float:
    """Images per second: warm up twice, then repeat for at least ``seconds`` (>= 3 runs)."""
    fn()
    fn()
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        fn()
        if sync:
            sync()
        runs += 1
    return batch * runs / (time.perf_counter() - start)


def bench(setup: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    gen = build(setup)
    size = gen.input_size[0]
    quarter = encoder_size((size, size), DEFAULT_GENERATOR_SCALE)
    x = images(args.batch, size, 0)
    g = torch.Generator().manual_seed(0)
    partner = torch.randperm(args.batch, generator=g)
    lam = torch.rand(args.batch, generator=g)
    path = export_generator_onnx(gen, tmp / f"g{size}.onnx")
    res: dict[str, Any] = {
        "setup": setup, "size": size, "backbone": gen.config.backbone, "batch": args.batch,
    }  # fmt: skip
    with torch.inference_mode():
        res["torch_cpu"] = rate(lambda: gen(x, partner, lam), args.batch, args.seconds)
        res["torch_cpu_quarter"] = rate(
            lambda: gen.masks(x, partner, lam, encoder_size=quarter), args.batch, args.seconds
        )
        ref_mask = gen(x, partner, lam)[0]
    ort_gen = OnnxGenerator(path, gen.config, device="cpu", threads=args.threads)
    res["ort_cpu"] = rate(lambda: ort_gen(x, partner, lam), args.batch, args.seconds)
    res["ort_cpu_vs_torch"] = res["ort_cpu"] / res["torch_cpu"]
    res["parity_mask_max_abs"] = float((ort_gen.masks(x, partner, lam) - ref_mask).abs().max())
    if args.quantize == "int8":
        q = quantize_generator(path, tmp / f"g{size}.int8.onnx", images(256, size, 256))
        q_gen = OnnxGenerator(q, gen.config, device="cpu", threads=args.threads)
        res["ort_int8_cpu"] = rate(lambda: q_gen(x, partner, lam), args.batch, args.seconds)
        res["ort_int8_vs_torch"] = res["ort_int8_cpu"] / res["torch_cpu"]
        fp32 = ort_gen.masks(x, partner, lam)
        diff = (q_gen.masks(x, partner, lam) - fp32).abs()
        res["int8_mask_mean_abs_diff"] = float(diff.mean())
        res["int8_mask_max_abs_diff"] = float(diff.max())
    if torch.cuda.is_available():
        dev = torch.device("cuda")
        gen_c, xc, pc, lc = gen.to(dev), x.to(dev), partner.to(dev), lam.to(dev)
        with torch.inference_mode():
            res["torch_cuda"] = rate(
                lambda: gen_c(xc, pc, lc), args.batch, args.seconds, torch.cuda.synchronize
            )
        gen.cpu()
    try:
        cuda_gen = OnnxGenerator(path, gen.config, device="cuda")
        res["ort_cuda"] = rate(lambda: cuda_gen(x, partner, lam), args.batch, args.seconds)
        res["ort_cuda_providers"] = cuda_gen.providers
    except Exception as exc:  # no CUDA provider in this onnxruntime
        res["ort_cuda"] = None
        res["ort_cuda_note"] = str(exc).splitlines()[0][:120]
    return res


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| generator | native size | backbone | torch eager | onnxruntime | ratio | int8 | ratio "
        "| mean/max Δmask int8 | ms / image: torch · ORT · int8 · torch at 1/4 read "
        "| torch CUDA | ORT CUDA |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:

        def f(key: str, fmt: str = "{:.0f}", r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        fid = (
            f"{r['int8_mask_mean_abs_diff']:.4f} / {r['int8_mask_max_abs_diff']:.3f}"
            if "int8_mask_mean_abs_diff" in r
            else "-"
        )
        ms = " · ".join(
            f"{1e3 / r[k]:.2f}" if isinstance(r.get(k), (int, float)) else "-"
            for k in ("torch_cpu", "ort_cpu", "ort_int8_cpu", "torch_cpu_quarter")
        )
        name = r["setup"] if not r["setup"][0].isdigit() else "random weights"
        lines.append(
            f"| {name} | {r['size']} px | {r['backbone']} | {f('torch_cpu')} | {f('ort_cpu')} | "
            f"{f('ort_cpu_vs_torch', '{:.2f}x')} | {f('ort_int8_cpu')} | "
            f"{f('ort_int8_vs_torch', '{:.2f}x')} | {fid} | {ms} | {f('torch_cuda')} | "
            f"{f('ort_cuda')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setups", default=SETUPS, help="SIZE:BACKBONE or generator sources")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0, help="minimum timing per measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads")
    ap.add_argument("--quantize", choices=["none", "int8"], default="none")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setup in args.setups.split(","):
            print(f"measuring {setup} ...", file=sys.stderr)
            rows.append(bench(setup, args, Path(tmp)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    meta = {
        "torch": torch.__version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "images": str(CIFAR.name) if CIFAR.is_file() else "random",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generator_throughput.json").write_text(
        json.dumps({"meta": meta, "results": rows}, indent=2)
    )
    md = f"Generator throughput, images/s at batch {args.batch} ({meta})\n\n{table(rows)}\n"
    (args.out / "generator_throughput.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
