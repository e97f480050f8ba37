"""``samix-hub demo``: train, export, publish, pull, mix and fine-tune, offline, in minutes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import click

from samix_hub.cli.options import quiet_option

__all__ = ["command", "format_summary"]

LABELS = {
    "samix-p": "SAMix^P (frozen generator)",
    "mixup": "MixUp",
    "cutmix": "CutMix",
    "vanilla": "plain (vanilla)",
}


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("samix-demo"),
    show_default=True,
    help="Output folder (a previous demo output there is replaced).",
)
@click.option("--fast", is_flag=True, help="Tiny budgets (smoke test, under a minute).")
@click.option(
    "--threads",
    type=click.IntRange(0),
    default=1,
    show_default=True,
    help="torch CPU threads (0: torch's default). One is fastest for these tiny models.",
)
@click.option(
    "--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Random seed."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def command(out: Path, fast: bool, threads: int, seed: int, as_json: bool, quiet: bool) -> None:
    """The whole pipeline on real bundled data, offline, on CPU, in a few minutes.

    \b
    1. splits scikit-learn's bundled handwritten digits (real scans, no download) into a
       source task (digits 0-4) and a target task (digits 5-9);
    2. trains a plain classifier on the source task (samix-hub train --method vanilla);
    3. trains a SAMix mixer alone against that frozen classifier, the teacher (samix-hub
       train --method samix --teacher RUN_DIR --optimizer adamw --lr 0.001 --weight-decay 0);
    4. exports the generator and the classifier (the backbone): safetensors + ONNX + model
       cards (samix-hub export);
    5. publishes both as repos samix-demo/... into a local Hub cache (OUT/hub);
    6. pulls them back by repo id, offline, through the resolver every SRC argument uses;
    7. mixes the target set with the pulled generator on onnxruntime, draws a preview grid
       (samix-hub mix) and measures its masks (slope against λ, spatial std);
    8. trains the backbone's architecture on 50 images of the target task, from random
       weights, with the frozen pulled generator (SAMix^P), MixUp, CutMix and plain training,
       same budget, 3 seeds each (samix-hub finetune --no-pretrained): a regime where mixing
       pays off, chosen on a validation split;
    then prints a summary (paths, timings, mask statistics, accuracies, ONNX vs torch parity) on
    stdout and writes it to OUT/summary.json. Progress goes to stderr.

    \b
    Examples:
      samix-hub demo                              # about 2-3 minutes on 2 CPU cores
      samix-hub demo --fast --out /tmp/demo       # smoke test, under a minute
      samix-hub demo --json | jq .finetune        # the summary as JSON
      HF_HUB_CACHE=samix-demo/hub samix-hub pull samix-demo/samix-generator-digits --offline
    """
    import dataclasses

    import torch

    from samix_hub.demo import FAST, FULL, run_demo
    from samix_hub.fileio import check_writable_dir

    check_writable_dir(out, "--out")
    if threads:
        torch.set_num_threads(threads)
    config = dataclasses.replace(FAST if fast else FULL, seed=seed)
    log = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    summary = run_demo(out, config, quiet=quiet, log=log)
    click.echo(json.dumps(summary, indent=2) if as_json else format_summary(summary))


def format_summary(s: dict[str, Any]) -> str:
    """The human summary printed by ``samix-hub demo`` (stdout)."""

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v:.1f} %"

    def alpha(method: str, r: dict[str, Any]) -> str:
        return "" if method == "vanilla" or r.get("alpha") is None else f"α {r['alpha']:g}"

    t, ft, par, gen, masks = s["timings_s"], s["finetune"], s["parity"], s["generator"], s["masks"]
    first = next(iter(ft.values()), {"steps": 0})
    worst_export = max(par["export"].values()) if par["export"] else float("nan")
    settings = s["finetune_settings"]
    lines = [
        f"samix-hub demo ({s['preset']}) finished in {t['total']:.0f} s -> {s['out']}",
        "",
        f"  data        {s['data']['source_train']} + {s['data']['target_train']} training images "
        "(digits 0-4 -> 5-9, scikit-learn)",
        f"  train       plain classifier, {s['train']['steps']} steps: top-1 "
        f"{pct(s['train']['top1'])}, EMA {pct(s['train']['ema_top1'])} (digits 0-4)   "
        f"{t['train']:.0f} s",
        f"  generator   SAMix mixer alone against the frozen classifier ({gen['teacher_weights']} "
        f"weights), {gen['steps']} steps, {gen['optimizer']} lr {gen['lr']:g}   "
        f"{t['generator']:.0f} s",
        f"  export      {s['artifacts']['generator']}",
        f"              {s['artifacts']['backbone']}          {t['export']:.0f} s",
        f"  publish     {s['hub']['cache']}",
        f"  pull        {s['hub']['generator']['repo_id']}@{s['hub']['generator']['commit'][:12]}",
        f"              {s['hub']['backbone']['repo_id']}@{s['hub']['backbone']['commit'][:12]}",
        f"  parity      ONNX vs torch: export max {worst_export:.1e}; pulled generator on real "
        f"images mask {par['pulled_onnx_vs_torch']['mask']:.1e}, "
        f"mixed {par['pulled_onnx_vs_torch']['mixed']:.1e}",
        f"  mix         {s['mix']['rows']} images, onnxruntime, {s['mix']['images_per_s']:.0f} img/s"
        f" -> {s['mix']['path']}",
        f"  preview     {s['mix']['preview']}",
        f"  masks       pulled generator, {masks['images']}: mask mean vs λ slope "
        f"{masks['mask_slope']:.3f}",
        f"              (1 = masks follow λ), mean per-image spatial std "
        f"{masks['mask_spatial_std']:.3f} (0 = flat MixUp blend, ~0.5 = binary cut)",
        f"  fine-tune   {settings['train_images']} images of digits 5-9 from "
        f"{'the pulled backbone' if settings.get('pretrained', True) else 'random weights'}, "
        f"{first['steps']} steps each ({settings['epochs']} epochs), lr {settings['lr']:g}, "
        f"seeds {', '.join(str(x) for x in settings['seeds'])}:",
        *[
            f"              {LABELS.get(m, m):<27}{alpha(m, r):<8} top-1 {pct(r['top1'])} "
            f"± {r.get('top1_std', 0.0):.1f}   "
            f"({', '.join(f'{v:.1f}' for v in r.get('top1_per_seed', [r['top1']]))})   "
            f"{r['seconds']:.0f} s"
            for m, r in ft.items()
        ],
        *_comparison_lines(s),
        f"  summary     {Path(s['out']) / 'summary.json'}",
        "",
        "Next: samix-hub info " + s["artifacts"]["generator"],
        "      samix-hub mix --generator " + s["artifacts"]["generator"] + " --data digits "
        "--out mixed/ --preview grid.png",
    ]
    return "\n".join(lines)


def _comparison_lines(s: dict[str, Any]) -> list[str]:
    """What this run measured about SAMix^P vs the baselines, and how much that can say."""
    from samix_hub.train.paired import verdict  # imports torch: not at ``--help`` time

    diff = s["comparison"].get("samix-p_minus_mixup")
    pair = (s.get("comparison_paired") or {}).get("mixup")
    lines = []
    if pair is not None:  # a verdict only where the seeds can tell the two apart
        lo, hi = pair["ci95"]
        lines.append(
            f"              SAMix^P - MixUp: {pair['mean']:+.1f} ± {pair['se']:.1f} points "
            f"(paired over {pair['n']} seeds, 95 % interval [{lo:+.1f}, {hi:+.1f}], "
            f"{pair['ahead']} of {pair['n']} ahead): SAMix^P is {verdict(pair)} MixUp in this run"
        )
    elif diff is not None:
        lines.append(
            f"              SAMix^P - MixUp: {diff:+.1f} points (one seed: too few to tell a "
            "difference from noise)"
        )
    n = s["data"]["target_test"]
    seeds = len(s["finetune_settings"]["seeds"])
    note = (
        f"({seeds} seed{'s' if seeds > 1 else ''}, {n} test images: one image is {100 / n:.2f} "
        f"points; {s['finetune_settings']['choice']})"
    )
    lines += textwrap.wrap(note, 96, initial_indent=" " * 14, subsequent_indent=" " * 15)
    return lines
