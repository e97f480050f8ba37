"""Run the CPU presets of every benchmark, then refresh the result tables in the READMEs.

Each benchmark is its own script (``benchmarks/*.py``) writing JSON + a markdown table into
``benchmarks/results/``; this runner only launches them (one subprocess each, one CPU thread,
the budgets below) and pastes every ``results/*.md`` table, with the machine it was measured
on, between the ``<!-- results:start -->`` / ``<!-- results:end -->`` markers of
``benchmarks/README.md`` and ``README.md``. The ``demo`` preset times ``samix-hub demo``
itself (wall clock, fresh process) and writes ``results/demo.{json,md}`` and copies the demo's preview
grid to ``docs/demo_preview.png`` (the README's picture).

    python benchmarks/run_all.py                      # every CPU preset (about 1-2 h on 2 cores)
    python benchmarks/run_all.py --only demo,mix      # some of them
    python benchmarks/run_all.py --tables-only        # only refresh the READMEs from results/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
PREVIEW = REPO / "docs" / "demo_preview.png"  # the picture at the top of README.md
START, END = "<!-- results:start -->", "<!-- results:end -->"
PY = sys.executable

#: train_step.py presets: the SAMix^P read sizes, its int8 graph and the teacher recipe beside
#: the methods (docs/algorithm.md "The generator's read size").
STEP = [PY, "benchmarks/train_step.py", "--device", "cpu", "--steps", "15", "--warmup", "3"]
STEP_32 = ",".join(
    ["vanilla", "mixup", "cutmix", "automix", "samix", "samix-p@1", "samix-p@0.5", "samix-p"]
    + ["samix-p-int8", "teacher"]
)
STEP_224 = [
    "--backbone", "resnet50", "--image-size", "224", "--batch-size", "8", "--steps", "8",
    "--warmup", "2", "--methods",
    "vanilla,mixup,samix-p@1,samix-p@0.5,samix-p,samix-p-int8,teacher",
]  # fmt: skip
#: name -> (title, command, markdown table(s) it writes, relative to results/; the newest
#: existing one is shown). CPU budgets.
PRESETS: dict[str, tuple[str, list[str], tuple[str, ...]]] = {
    "demo": ("`samix-hub demo` (whole pipeline)", [], ("demo.md",)),
    "train_step": (
        "Training-step cost vs vanilla, 32 px, 1 thread (`train_step.py`)",
        [*STEP, "--threads", "1", "--methods", STEP_32, "--tag", "train_step_cpu"],
        ("train_step_cpu.md",),
    ),
    "train_step_t2": (
        "Training-step cost vs vanilla, 32 px, 2 threads (`train_step.py`)",
        [*STEP, "--threads", "2", "--methods", STEP_32, "--tag", "train_step_cpu_t2"],
        ("train_step_cpu_t2.md",),
    ),
    "train_step_224": (
        "Training-step cost vs vanilla, 224 px ResNet-50, 1 thread (`train_step.py`)",
        [*STEP, "--threads", "1", *STEP_224, "--tag", "train_step_cpu_224px"],
        ("train_step_cpu_224px.md",),
    ),
    "train_step_224_t2": (
        "Training-step cost vs vanilla, 224 px ResNet-50, 2 threads (`train_step.py`)",
        [*STEP, "--threads", "2", *STEP_224, "--tag", "train_step_cpu_224px_t2"],
        ("train_step_cpu_224px_t2.md",),
    ),
    "accuracy": (
        "Supervised top-1 at a fixed budget, CIFAR-10 subset (`accuracy.py --preset cpu`)",
        [PY, "benchmarks/accuracy.py", "--preset", "cpu", "--threads", "1"],
        ("accuracy_cpu.md",),
    ),
    "finetune": (
        "Transfer: a reused generator (SAMix^P) vs MixUp, CutMix, vanilla (`transfer.py`)",
        [PY, "benchmarks/transfer.py", "--stage", "test", "--out", "benchmarks/results"],
        ("transfer_test_100ep_lr0.05.md",),
    ),
    "ssl": (
        "Self-supervised: MoCo v2, + MixUp, + SAMix (`ssl_accuracy.py`)",
        [PY, "benchmarks/ssl_accuracy.py", "--out", "benchmarks/results/ssl"],
        ("ssl_cpu.md", "ssl.md", "ssl/results.md"),
    ),
    "generator": (
        "Generator throughput, torch vs onnxruntime (`generator_throughput.py`)",
        [
            PY,
            "benchmarks/generator_throughput.py",
            "--quantize",
            "int8",
            "--threads",
            "1",
            "--seconds",
            "3",
        ],
        ("generator_throughput.md",),
    ),  # fmt: skip
    "mix": (
        "`samix-hub mix` throughput vs its limit (`mix_throughput.py`)",
        [PY, "benchmarks/mix_throughput.py", "--device", "cpu"],
        ("mix_throughput.md",),
    ),
}


def machine() -> dict[str, Any]:
    """Where a result was measured (written beside the demo result; shown with the tables)."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_1min": load,
        "date": time.strftime("%Y-%m-%d"),
    }


def run_demo(out: Path) -> None:
    """``samix-hub demo`` in a fresh process, timed; ``results/demo.{json,md}``."""
    info = machine()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [PY, "-m", "samix_hub", "demo", "--out", f"{tmp}/demo", "--json"],
            cwd=REPO, check=True, stdout=subprocess.PIPE,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        summary = json.loads(proc.stdout)
        out.mkdir(parents=True, exist_ok=True)
        PREVIEW.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary["mix"]["preview"], PREVIEW)
    result = {"wall_s": round(wall, 1), "machine": info, "summary": summary}
    (out / "demo.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "demo.md").write_text(demo_table(result))


def demo_table(result: dict[str, Any]) -> str:
    s, t = result["summary"], result["summary"]["timings_s"]
    ft = s["finetune"]
    par = max([*s["parity"]["export"].values(), *s["parity"]["pulled_onnx_vs_torch"].values()])
    gen, masks = s["generator"], s["masks"]
    rows = [
        ("whole command (fresh process, wall clock)", f"{result['wall_s']:.0f} s", ""),
        ("1. data (digits 0-4 / 5-9)", f"{t['data']:.0f} s", ""),
        (
            f"2. train the plain classifier (teacher), {s['train']['steps']} steps",
            f"{t['train']:.0f} s",
            f"top-1 {s['train']['top1']:.1f} %, EMA {s['train']['ema_top1']:.1f} %",
        ),
        (
            f"3. train the generator against it (mixer only), {gen['steps']} steps",
            f"{t['generator']:.0f} s",
            f"spatial std {gen['mask_spatial_std']:.3f}",
        ),
        ("4. export (safetensors + ONNX + cards)", f"{t['export']:.0f} s", f"max parity {par:.1e}"),
        ("5-6. publish + pull back (offline)", f"{t['publish'] + t['pull']:.1f} s", ""),
        (
            f"7. mix {s['mix']['rows']} images (onnxruntime) + preview",
            f"{t['mix']:.1f} s",
            f"{s['mix']['images_per_s']:.0f} img/s; pulled generator: slope "
            f"{masks['mask_slope']:.3f}, spatial std {masks['mask_spatial_std']:.3f}",
        ),
    ]
    seeds = s["finetune_settings"].get("seeds", [0])
    for method, r in ft.items():
        per = ", ".join(f"{v:.1f}" for v in r.get("top1_per_seed", [r["top1"]]))
        rows.append(
            (f"8. fine-tune {method}, {r['steps']} steps x {len(seeds)} seeds",
             f"{r['seconds']:.0f} s",
             f"top-1 {r['top1']:.1f} ± {r.get('top1_std', 0.0):.1f} % ({per})")
        )  # fmt: skip
    m = result["machine"]
    lines = [
        f"`samix-hub demo` ({s['preset']} preset, torch threads "
        f"{s['machine']['torch_threads']}) on {m['cpu_count']} CPU cores ({m['cpu']}, "
        f"load average {m['load_average_1min']:.1f} at the start), {m['date']}.",
        "",
        "| step | time | result |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
    ]
    return "\n".join(lines) + "\n"


def _machine_line(md: Path) -> str:
    """What the benchmark's own JSON says about where it ran (platform, device, threads)."""
    candidates = [md.with_suffix(".json"), md.parent / (md.stem.replace("results", "") + ".json")]
    data: dict[str, Any] = {}
    for path in candidates:
        if path.is_file():
            loaded = json.loads(path.read_text())
            data = loaded if isinstance(loaded, dict) else {}  # a list of rows has no machine
            break
    flat: dict[str, Any] = {}
    for part in (data, data.get("meta") or {}, data.get("machine") or {}):
        if isinstance(part, dict):
            flat.update({k: v for k, v in part.items() if not isinstance(v, (dict, list))})
    keys = ("platform", "host", "cpu", "cpu_count", "device", "threads", "torch_threads", "torch")
    info = ", ".join(f"{k} {flat[k]}" for k in keys if flat.get(k) not in (None, ""))
    stamp = time.strftime("%Y-%m-%d", time.localtime(md.stat().st_mtime))
    return f"_Measured {stamp}" + (f"; {info}_" if info else "_")


def tables() -> str:
    """Every results table present, in preset order, with its machine line; then any others."""
    parts, shown = [], set()
    for name, (title, _, md_names) in PRESETS.items():
        found = [RESULTS / n for n in md_names if (RESULTS / n).is_file()]
        if not found:
            parts.append(f"#### {title}\n\nNot measured in this checkout yet (`--only {name}`).\n")
            continue
        md = max(found, key=lambda p: p.stat().st_mtime)
        shown.update(found)
        parts.append(f"#### {title}\n\n{_body(md)}\n\n{_machine_line(md)}\n")
    for md in sorted(set(RESULTS.rglob("*.md")) - shown):
        rel = md.relative_to(RESULTS).as_posix()
        parts.append(f"#### Other result: `{rel}`\n\n{_body(md)}\n\n{_machine_line(md)}\n")
    return "\n".join(parts)


def _body(md: Path) -> str:
    """The table file without its own top-level heading (the section heading replaces it)."""
    lines = md.read_text().strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines[0] = f"_{lines[0][2:].strip()}_"
    return "\n".join(lines)


def refresh(readme: Path, block: str) -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"{readme}: no {START} ... {END} markers; left as is", file=sys.stderr)
        return False
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{START}\n{block}\n{END}{tail}")
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(PRESETS)}")
    ap.add_argument("--skip", default="", help="comma-separated presets to skip")
    ap.add_argument("--tables-only", action="store_true", help="refresh the READMEs only")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(PRESETS)
    unknown = sorted(set(names) - set(PRESETS))
    if unknown:
        ap.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    if not args.tables_only:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for name in (n for n in names if n not in args.skip.split(",")):
            print(f"== {name}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if name == "demo":
                run_demo(RESULTS)
            else:
                subprocess.run(PRESETS[name][1], cwd=REPO, env=env, check=True)
            print(f"== {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    block = tables()
    for readme in (HERE / "README.md", REPO / "README.md"):
        if refresh(readme, block):
            print(f"refreshed {readme.relative_to(REPO)}", file=sys.stderr)


if __name__ == "__main__":
    main()
