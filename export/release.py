"""Release procedure, step 1-3: run folder -> Hub-ready folders -> validation report.

Thin wrapper over the library (the same code ``samix-hub export`` runs):

    python export/release.py RUN_DIR --out release/ [--quantize int8] [--generator-repo ORG/NAME]
        [--backbone-repo ORG/NAME]

1. ``export_run``: writes release/generator and release/backbone (atomic, parity-checked).
2. Re-validates each folder from disk as a user would get it: ``validate_artifact(..., "all")``,
   the card with huggingface_hub, a load through ``samix_hub.load_generator`` /
   ``load_backbone`` with both runtimes, and timm's own ``local-dir:`` loader for the backbone.
3. Writes ``release/release_report.md`` and ``release_report.json`` (files, sizes, sha256,
   parity, int8 fidelity, results from the card). Publishing is then ``samix-hub push``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

import samix_hub
from samix_hub.export.cards import validate_card
from samix_hub.export.generator import export_run, int8_sample_images, load_run
from samix_hub.export.info import describe
from samix_hub.export.validate import validate_artifact


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recheck(folder: Path) -> dict[str, Any]:
    """Validate a written folder from disk; returns what was checked."""
    kind = validate_artifact(folder, "all")
    validate_card(folder / "README.md", kind.split("-")[-1])
    checks: dict[str, Any] = {"kind": kind, "validate_artifact": "ok", "card": "ok"}
    g = torch.Generator().manual_seed(0)
    if kind == "samix-generator":
        t = samix_hub.load_generator(folder)
        o = samix_hub.load_generator(folder, runtime="onnx")
        x = torch.rand(8, t.config.in_chans, *t.input_size, generator=g)
        p, lam = torch.randperm(8, generator=g), torch.rand(8, generator=g)
        with torch.no_grad():
            checks["reload_mask_max_abs_diff"] = float(
                (t.masks(x, p, lam) - o.masks(x, p, lam)).abs().max()
            )
        checks["onnx_providers"] = o.providers
    else:
        import timm

        model, cfg = samix_hub.load_backbone(folder)
        timm.create_model(f"local-dir:{folder}", pretrained=True)
        checks["timm_local_dir"] = "ok"
        checks["num_classes"] = cfg["num_classes"]
    checks["files"] = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": sha256(folder / name)}
        for name in describe(folder, validate=False)["files"]
    }
    return checks


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="run folder -> Hub-ready folders -> report")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quantize", choices=["none", "int8"], default="none")
    ap.add_argument("--calibration-data", default=None)
    ap.add_argument("--weights", choices=["model", "ema"], default="model")
    ap.add_argument("--generator-repo", default=None)
    ap.add_argument("--backbone-repo", default=None)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    int8_images = evals = None
    if args.quantize == "int8":
        run = load_run(args.run_dir)
        size = tuple(run.config.get("image_size", (32, 32)))
        int8_images, evals = int8_sample_images(args.calibration_data or run.config["data"], size)
    repos = {"generator": args.generator_repo, "backbone": args.backbone_repo}
    reports = export_run(
        args.run_dir, args.out, weights=args.weights, int8_calibration=int8_images, int8_eval=evals,
        repo_ids={k: v for k, v in repos.items() if v}, force=args.force,
        log=lambda m: print(m, file=sys.stderr),
    )  # fmt: skip
    summary = []
    for rep in reports:
        entry = {**rep.to_dict(), "recheck": recheck(rep.path)}
        entry["results"] = describe(rep.path, validate=False)["results"]
        summary.append(entry)
    (args.out / "release_report.json").write_text(json.dumps(summary, indent=2))
    lines = [f"# Release report for {args.run_dir.name}", ""]
    for e in summary:
        lines += [f"## {e['kind']}: `{e['path']}`", ""]
        lines += [f"- parity (max abs, torch vs onnxruntime): {e['parity']}"]
        if e["int8"]:
            lines += [f"- int8 mask fidelity: {e['int8']}"]
        lines += [f"- results: {'; '.join(e['results']) or 'none recorded'}", "",
                  "| file | bytes | sha256 |", "|---|---|---|"]  # fmt: skip
        lines += [
            f"| {n} | {f['bytes']} | `{f['sha256'][:16]}…` |"
            for n, f in e["recheck"]["files"].items()
        ]
        lines.append("")
    (args.out / "release_report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
