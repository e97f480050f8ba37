"""Build the generator that ships inside the package: ``samix_hub/builtin/cifar10-small``.

Reproducible and resumable. The steps are the documented CLI recipe, run as subprocesses of
``python -m samix_hub`` so the exact commands can be quoted:

1. **teacher**: a plain classifier ``resnet18_cifar_w16`` on the CIFAR-10 subset
   (``samix-hub train --method vanilla``, batch 64, lr 0.1, cosine, ``--teacher-epochs``);
2. **generator**: only the mixer, trained against that frozen teacher
   (``samix-hub train --method samix --teacher RUN --optimizer adamw --lr 0.001
   --weight-decay 0 --epochs E``; λ-exact calibration and per-image variance are the defaults);
3. **export**: ``export_run`` (safetensors + ONNX, parity-checked), generator only;
4. **measure**: ``benchmarks/mask_lambda.py:mask_statistics`` on the subset's test images;
5. **install**: config.json (statistics added under ``provenance.mask_statistics``),
   generator.safetensors, onnx/generator.onnx and README.md are assembled in a hidden staging
   folder next to ``--out``, validated, and renamed into place.

``--refresh`` skips steps 1-3: it re-exports the installed weights with the current exporter
(card, config.json, ONNX metadata), then measures and installs as above.

Finished runs in ``--work`` are reused (a run folder's name encodes its recipe); an interrupted
run is resumed. Default command (from the repository root; relative paths are taken from the current folder)::

    python export/build_builtin.py

which is the same as::

    python export/build_builtin.py --data npz:../shared/data/cifar10_subset_4k_1k.npz \\
        --work build/builtin-cifar10-small --teacher-epochs 30 --epochs 10 --seed 0 \\
        --out samix_hub/builtin/cifar10-small
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = "npz:../shared/data/cifar10_subset_4k_1k.npz"
NAME = "cifar10-small"
BACKBONE = "resnet18_cifar_w16"
#: Files of the shipped folder (nothing else is copied).
SHIPPED = ("config.json", "generator.safetensors", "onnx/generator.onnx", "README.md")


def log(msg: str) -> None:
    print(f"[build_builtin {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rows(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finished(run: Path, epochs: int) -> bool:
    """True when ``run`` evaluated its last epoch and checkpointed it."""
    rows = _rows(run)
    return (
        bool(rows)
        and int(rows[-1].get("epoch", 0)) >= epochs
        and (run / "checkpoints" / "last.pt").is_file()
    )


def shown_command(run: Path, args: list[str], epochs: int) -> str:
    """The ``samix-hub train`` command that trains ``run`` (quoted in the card)."""
    return "samix-hub train " + shlex.join([*args, "--epochs", str(epochs), "--out", str(run)])


def train(run: Path, args: list[str], epochs: int, common: list[str], env: dict[str, str]) -> str:
    """Train ``run`` with ``samix-hub train ARGS`` unless it is finished; returns the command."""
    shown = shown_command(run, args, epochs)
    if finished(run, epochs):
        log(f"reusing finished run {run}")
        return shown
    resume = ["--resume"] if (run / "checkpoints" / "last.pt").is_file() else []
    cmd = [sys.executable, "-m", "samix_hub", "train", *args, "--epochs", str(epochs)]
    cmd += ["--out", str(run), *common, *resume]
    log(("resuming " if resume else "training ") + shlex.join(cmd[3:]))
    subprocess.run(cmd, check=True, env=env)
    if not finished(run, epochs):
        raise SystemExit(f"{run}: training ended without evaluating epoch {epochs}")
    return shown


def top1(run: Path) -> float:
    rows = [r for r in _rows(run) if isinstance(r.get("top1"), (int, float))]
    if not rows:
        raise SystemExit(f"{run}: no top-1 recorded")
    return float(rows[-1]["top1"])


def measure(folder: Path, data: str, images: int) -> dict[str, Any]:
    """mask_statistics (benchmarks/mask_lambda.py) of the generator in ``folder``."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from mask_lambda import mask_statistics, test_images
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import samix_hub

    gen = samix_hub.load_generator(folder, runtime="torch")
    x = test_images(data, tuple(gen.config.input_size), images)
    stats = mask_statistics(gen, x)
    out = {k: _g(stats[k]) for k in ("slope", "spatial_std", "spread")}
    if isinstance(stats.get("lam_mae"), float):
        out["lam_mae"] = _g(stats["lam_mae"])
    return {
        **out,
        "lams": list(stats["lams"]),
        "mask_means": [_g(m) for m in stats["mask_means"]],
        "images": stats["images"],
        "data": _public_spec(data),
        "split": "test",
        "measured_with": "benchmarks/mask_lambda.py:mask_statistics (eval mode)",
    }


def _g(value: float) -> float:
    """Four significant digits (a tiny spread stays visible as e.g. 4.3e-08)."""
    return float(f"{value:.4g}")


def _rebuild_spec(spec: str) -> str:
    """``spec`` as given when relative (a checkout's layout), else without its local folders."""
    kind, _, location = spec.partition(":")
    if location and (os.path.isabs(location) or location.startswith("~")):
        return f"{kind}:{Path(location).name}"
    return spec


def _public_spec(spec: str) -> str:
    from samix_hub.data.names import dataset_info

    return dataset_info(spec)[2]


def describe_data(spec: str) -> dict[str, Any]:
    """Sizes of data set ``spec`` for the card."""
    from samix_hub.data import load_data

    src = load_data(spec)
    h, w = src.image_size
    return {
        "spec": _public_spec(spec),
        "train": len(src.train),
        "test": len(src.test),
        "classes": src.num_classes,
        "shape": f"{h} x {w}, {src.channels} channels",
    }


def card_section(
    recipe: dict[str, Any],
    stats: dict[str, Any],
    teacher_top1: float,
    rebuild: str,
    data: dict[str, Any],
) -> str:
    means = ", ".join(
        f"λ={lam}: {m:.3f}" for lam, m in zip(stats["lams"], stats["mask_means"], strict=True)
    )
    lines = [
        f"## Built-in generator `builtin:{NAME}`",
        "",
        f"This generator ships inside the `samix-hub` package: use it offline as "
        f"`builtin:{NAME}` wherever a generator SRC is accepted, e.g. "
        f"`samix-hub info builtin:{NAME}`, "
        f"`samix-hub mix --generator builtin:{NAME} --data npz:FILE --out mixed/`, "
        f"`samix-hub finetune --backbone SRC --generator builtin:{NAME} --data SPEC --out run/` "
        f'or `samix_hub.load_generator("builtin:{NAME}")`. It is small and trained on '
        f"{data['train']:,} images ({data['shape']}): a ready, real example, not a "
        "state-of-the-art generator.",
        "",
        f"**Recipe** (all on `{data['spec']}`: {data['train']:,} training and "
        f"{data['test']:,} test images, {data['classes']} classes):",
        "",
        f"1. teacher: `{recipe['teacher_command']}`; top-1 of the teacher on the "
        f"{data['test']:,} test images: **{teacher_top1:.2f} %**;",
        f"2. generator (only the mixer is trained, against the frozen teacher, whose stage-3 "
        f"encoder it keeps): `{recipe['generator_command']}` (λ-exact calibration and "
        "per-image mask variance are the defaults);",
        "3. export: `samix-hub export GENERATOR_RUN --what generator` (safetensors + ONNX, "
        "torch vs onnxruntime parity checked).",
        "",
        f"**Mask statistics** (`{stats['measured_with']}`, {stats['images']:,} test images, "
        "each paired with the next):",
        "",
        "| slope of mean mask vs λ (ideal 1) | spatial std (0 = MixUp blend, 0.5 = binary cut) "
        "| spread of per-image means |",
        "|---|---|---|",
        f"| {stats['slope']:.3f} | {stats['spatial_std']:.3f} | {stats['spread']:.3f} |",
        "",
        f"Mean mask per λ: {means}. They are also in `config.json` under "
        "`provenance.mask_statistics` (`samix-hub info` shows them).",
        "",
        f"**Rebuild** (from a checkout of samix-hub, in its root; about 25 min on 2 shared CPU cores, one torch thread): "
        f"`{rebuild}`",
        "",
    ]
    return "\n".join(lines)


def add_section(card: str, section: str) -> str:
    """Insert ``section`` before the card's "## How to use it" (after the front matter)."""
    marker = "## How to use it"
    if marker in card:
        head, tail = card.split(marker, 1)
        return f"{head}{section}\n{marker}{tail}"
    return card.rstrip("\n") + "\n\n" + section


def install(
    export_dir: Path, out: Path, stats: dict[str, Any], teacher_top1: float, section: str
) -> None:
    """Copy only the shipped files into a staging folder, validate it, rename it to ``out``."""
    from samix_hub.export.cards import validate_card
    from samix_hub.export.validate import list_files, validate_artifact
    from samix_hub.fileio import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = out.parent / f".{out.name}.old"
    try:
        for name in SHIPPED:
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(export_dir / name, stage / name)
        config = json.loads((stage / "config.json").read_text())
        config.setdefault("provenance", {})["mask_statistics"] = stats
        config["provenance"]["builtin"] = NAME
        config["provenance"]["teacher_top1"] = round(teacher_top1, 2)
        atomic_write_json(stage / "config.json", config)
        card = (stage / "README.md").read_text()
        # usage examples name the builtin; it needs no `pull` (it is installed already)
        lines = [line for line in card.splitlines() if "samix-hub pull ORG/NAME" not in line]
        # the onnxruntime snippet reads the installed folder, not a Hub download
        local = f'folder = str(samix_hub.hub.resolve.resolve_source("builtin:{NAME}").path)'
        lines = [
            "import samix_hub\n" + local if line.startswith("folder = snapshot_download(") else line
            for line in lines
            if line != "from huggingface_hub import snapshot_download"
        ]
        card = "\n".join(lines).replace("ORG/NAME", f"builtin:{NAME}") + "\n"
        (stage / "README.md").write_text(add_section(card, section))
        validate_card(stage / "README.md", "generator")
        validate_artifact(stage, "all")
        extra = sorted(set(list_files(stage)) - set(SHIPPED))
        if extra:
            raise SystemExit(f"{stage}: unexpected files {extra}")
        _parity(stage)
        stage.chmod(0o755)
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            out.rename(old)
        stage.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def refresh(installed: Path, work: Path) -> tuple[Path, float]:
    """``--refresh``: the installed weights written again by this version's exporter
    (``Generator.save_pretrained``) into ``work/refresh/generator``; returns that export folder
    and the teacher's recorded top-1."""
    from samix_hub import Generator

    config = json.loads((installed / "config.json").read_text())
    teacher_top1 = float(config.get("provenance", {}).get("teacher_top1", "nan"))
    if teacher_top1 != teacher_top1:
        raise SystemExit(f"{installed}: config.json records no provenance.teacher_top1")
    export_dir = work / "refresh"
    shutil.rmtree(export_dir, ignore_errors=True)
    log(f"re-exporting {installed} -> {export_dir}/generator (weights unchanged)")
    Generator.from_pretrained(str(installed)).save_pretrained(export_dir / "generator")
    return export_dir, teacher_top1


def _parity(folder: Path) -> None:
    import torch

    import samix_hub

    t = samix_hub.load_generator(folder, runtime="torch")
    o = samix_hub.load_generator(folder, runtime="onnx", device="cpu")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, t.config.in_chans, *t.input_size, generator=g)
    p, lam = torch.randperm(8, generator=g), torch.rand(8, generator=g)
    with torch.no_grad():
        diff = float((t.masks(x, p, lam) - o.masks(x, p, lam)).abs().max())
    if not diff <= 1e-4:
        raise SystemExit(f"{folder}: torch vs onnxruntime masks differ by {diff:.2e}")
    log(f"parity torch vs onnxruntime (mask): {diff:.2e}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="data set SPEC [%(default)s]")
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("build/builtin-cifar10-small"),
        help="run folders, reused when finished [%(default)s]",
    )
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=10, help="generator (mixer) epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "samix_hub" / "builtin" / NAME)
    ap.add_argument("--device", default="cpu", help="cpu (reproducible), cuda or auto")
    ap.add_argument("--workers", type=int, default=0, help="data loader workers")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--stat-images", type=int, default=1000, help="test images for the stats")
    ap.add_argument(
        "--refresh",
        action="store_true",
        help="no training: re-export the installed generator's weights with this version's "
        "exporter (card, config, ONNX metadata), re-measure its masks, install it again",
    )
    args = ap.parse_args(argv)

    started = time.perf_counter()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    common = ["--device", args.device, "--workers", str(args.workers), "--seed", str(args.seed)]
    common += ["--quiet"]

    teacher_run = work / f"teacher-vanilla-e{args.teacher_epochs}-s{args.seed}"
    teacher_args = ["--method", "vanilla", "--data", args.data, "--backbone", BACKBONE]
    teacher_args += ["--batch-size", "64", "--lr", "0.1"]
    gen_run = work / f"samix-teacher-t{args.teacher_epochs}-e{args.epochs}-s{args.seed}"
    gen_args = ["--method", "samix", "--teacher", str(teacher_run), "--data", args.data]
    gen_args += ["--optimizer", "adamw", "--lr", "0.001", "--weight-decay", "0"]
    if args.refresh:
        export_dir, teacher_top1 = refresh(args.out, work)
        teacher_cmd = shown_command(teacher_run, teacher_args, args.teacher_epochs)
        gen_cmd = shown_command(gen_run, gen_args, args.epochs)
    else:
        teacher_cmd = train(teacher_run, teacher_args, args.teacher_epochs, common, env)
        teacher_top1 = top1(teacher_run)
        log(f"teacher top-1 {teacher_top1:.2f} %")
        gen_cmd = train(gen_run, gen_args, args.epochs, common, env)

        from samix_hub.export.generator import export_run

        export_dir = work / f"export-t{args.teacher_epochs}-e{args.epochs}-s{args.seed}"
        log(f"exporting {gen_run} -> {export_dir}/generator")
        export_run(gen_run, export_dir, ("generator",), force=True, log=log)
    stats = measure(export_dir / "generator", args.data, args.stat_images)
    log(
        f"mask statistics: slope {stats['slope']:.3f}, spatial std {stats['spatial_std']:.3f}, "
        f"spread {stats['spread']:.3f}"
    )
    # Paths in the quoted commands are relative to --work's RUN names, never absolute.
    recipe = {
        "teacher_command": teacher_cmd.replace(str(teacher_run), "TEACHER_RUN").replace(
            args.data, _public_spec(args.data)
        ),
        "generator_command": gen_cmd.replace(str(teacher_run), "TEACHER_RUN")
        .replace(str(gen_run), "GENERATOR_RUN")
        .replace(args.data, _public_spec(args.data)),
    }
    rebuild = "python export/build_builtin.py"
    options = {
        "--data": _rebuild_spec(args.data),
        "--teacher-epochs": str(args.teacher_epochs),
        "--epochs": str(args.epochs),
        "--seed": str(args.seed),
    }
    defaults = {"--data": DEFAULT_DATA, "--teacher-epochs": "30", "--epochs": "10", "--seed": "0"}
    changed = [part for k, v in options.items() if v != defaults[k] for part in (k, v)]
    if changed:
        rebuild += " " + shlex.join(changed)
    section = card_section(recipe, stats, teacher_top1, rebuild, describe_data(args.data))
    install(export_dir / "generator", args.out, stats, teacher_top1, section)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    log(f"installed {args.out} ({size / 1e6:.2f} MB) in {time.perf_counter() - started:.0f} s")
    seconds = round(time.perf_counter() - started)
    print(
        json.dumps(
            {"out": str(args.out), "teacher_top1": teacher_top1, "seconds": seconds, **stats}
        )
    )


if __name__ == "__main__":
    main()
