"""How closely a generator's masks follow λ: mean mask (share of image i) per λ, on real images.

A trained SAMix mixer gives mean(mask) ~= λ (SAMIX.md section 1; the L1 term of the mask
regulariser keeps it within ±0.1). Short CPU runs fall well short; this script measures it, for
an exported generator folder (eval mode, as users run it) or a training run (both modes).

    python benchmarks/mask_lambda.py samix-demo/release/generator --data digits
    python benchmarks/mask_lambda.py runs/digits-samix --data digits --train-mode
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from samix_hub.data import eval_transform, load_data

LAMS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9)


def _generator(src: Path) -> torch.nn.Module:
    if (src / "checkpoints").is_dir():
        from samix_hub.engine import run_generator

        return run_generator(src)
    from samix_hub import load_generator

    return load_generator(str(src), runtime="torch")


@torch.no_grad()
def mask_means(gen: torch.nn.Module, images: torch.Tensor, seed: int) -> dict[float, float]:
    partner = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    return {lam: float(gen(images, partner, lam)[0].mean()) for lam in LAMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="generator folder or RUN_DIR")
    parser.add_argument("--data", default="digits", help="data set SPEC (test split is used)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-mode", action="store_true", help="also BatchNorm batch statistics")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    gen = _generator(args.src)
    data = load_data(args.data)
    test = data.split("test")
    tf = eval_transform(tuple(gen.config.input_size))
    n = min(args.images, len(test))
    images = torch.stack([tf(test[i][0]) for i in range(n)])
    rows = {"eval": mask_means(gen, images, args.seed)}
    if args.train_mode:
        torch.nn.Module.train(gen, True)  # Generator.train() pins eval mode; bypass it here
        rows["train"] = mask_means(gen, images, args.seed)
    slope = {k: (v[0.8] - v[0.2]) / 0.6 for k, v in rows.items()}
    print(f"mean mask by λ on {n} {args.data} test images ({args.src})")
    print("| mode | " + " | ".join(f"λ={lam}" for lam in LAMS) + " | slope (ideal 1) |")
    print("|---" * (len(LAMS) + 2) + "|")
    for mode, means in rows.items():
        cells = " | ".join(f"{means[lam]:.3f}" for lam in LAMS)
        print(f"| {mode} | {cells} | {slope[mode]:.2f} |")
    if args.json:
        payload = {m: {str(k): v for k, v in r.items()} for m, r in rows.items()}
        args.json.write_text(json.dumps({"src": str(args.src), "means": payload, "slope": slope}))


if __name__ == "__main__":
    main()
