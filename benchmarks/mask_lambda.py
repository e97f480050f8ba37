"""How well a generator's masks follow λ and how sharp they are, on real test images.

For each λ on a grid it computes the generator's masks (weight of image i) for pairs of test
images (each with the next one) and reports:

- ``slope``: least-squares slope of the mean mask against λ over λ in [0.2, 0.8] (ideal 1: the
  mask gives each image the share its label says);
- ``spatial_std``: mean over images of the per-image spatial standard deviation of the mask
  (0 = a constant blend like MixUp; about 0.5 = a binary cut);
- ``spread``: standard deviation of the per-image mean masks at one λ, averaged over λ (0 when
  every image gets exactly its λ; large when the masks' amounts vary at random).

``SRC`` is a generator folder, a Hub repo id, ``builtin:NAME`` or a training RUN_DIR (online
SAMix or a teacher-trained run). Generators are used as users run them: eval mode, no margin
fallback. See docs/algorithm.md (λ-exact calibration) for why the slope is 1 by construction
for calibrated generators; spatial_std is then the figure that tells a learned mask from MixUp.

    python benchmarks/mask_lambda.py builtin:cifar10-small --data npz:../shared/data/cifar10_subset_4k_1k.npz
    python benchmarks/mask_lambda.py runs/digits-samix --data digits --train-mode --json out.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from samix_hub.data import load_data
from samix_hub.mixing.statistics import STAT_LAMS, generator_mask_statistics
from samix_hub.train.loader import eval_transform

__all__ = ["LAMS", "mask_statistics", "load_any_generator"]

LAMS = STAT_LAMS


def load_any_generator(src: str) -> torch.nn.Module:
    """A generator folder / repo id / ``builtin:NAME``, or the generator of a RUN_DIR."""
    path = Path(src)
    if (path / "checkpoints").is_dir():
        from samix_hub.train import run_generator

        return run_generator(path)
    from samix_hub import load_generator

    return load_generator(src, runtime="torch")


def mask_statistics(
    gen: Any, images: torch.Tensor, lams: tuple[float, ...] = LAMS
) -> dict[str, Any]:
    """The library's statistics (:mod:`samix_hub.mixing.statistics`) under this script's names."""
    stats = generator_mask_statistics(gen, images, lams)
    return {
        "lams": list(lams),
        "mask_means": stats["mask_means"],
        "slope": stats["mask_slope"],
        "spatial_std": stats["mask_spatial_std"],
        "spread": stats["mask_spread"],
        "lam_mae": stats["mask_lam_mae"],
        "images": images.shape[0],
    }


def test_images(spec: str, size: tuple[int, int], count: int) -> torch.Tensor:
    """The first ``count`` test images of data set ``spec``, in [0, 1] at ``size``."""
    test = load_data(spec).split("test")
    tf = eval_transform(size)
    n = min(count, len(test))
    return torch.stack([tf(test[i][0]) for i in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="generator folder, ORG/NAME, builtin:NAME or RUN_DIR")
    parser.add_argument("--data", default="digits", help="data set SPEC (test split is used)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--train-mode", action="store_true", help="also BatchNorm batch statistics")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()

    gen = load_any_generator(args.src)
    images = test_images(args.data, tuple(gen.config.input_size), args.images)
    rows = {"eval": mask_statistics(gen, images)}
    if args.train_mode:
        torch.nn.Module.train(gen, True)  # Generator.train() pins eval mode; bypass it here
        rows["train"] = mask_statistics(gen, images)
    calibration = gen.config.mixer.calibration
    print(f"masks of {args.src} (calibration {calibration}) on {len(images)} {args.data} images")
    head = " | ".join(f"λ={lam}" for lam in LAMS)
    print(f"| mode | {head} | slope (ideal 1) | spatial std | spread |")
    print("|---" * (len(LAMS) + 4) + "|")
    for mode, r in rows.items():
        cells = " | ".join(f"{m:.3f}" for m in r["mask_means"])
        print(
            f"| {mode} | {cells} | {r['slope']:.3f} | {r['spatial_std']:.3f} | {r['spread']:.3f} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"src": args.src, "calibration": calibration, **rows}))


if __name__ == "__main__":
    main()
