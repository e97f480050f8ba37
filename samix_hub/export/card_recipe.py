"""The recipe section of generator and backbone cards: the run's resolved options, what it
started from (frozen generator, teacher, base model, mixed data set), and whether it was a
smoke run cut short by ``--max-steps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from samix_hub.data.names import dataset_info
from samix_hub.export.cards import format_value, mixer_summary
from samix_hub.export.provenance import base_summary, provenance_recipe, teacher_summary

__all__ = ["smoke_run", "limitations_text", "recipe_table"]

_RECIPE_KEYS = (
    ("scenario", "scenario"),
    ("method", "method"),
    ("backbone", "backbone"),
    ("data", "data set"),
    ("image_size", "image size"),
    ("epochs", "epochs"),
    ("max_steps", "max steps"),
    ("batch_size", "batch size"),
    ("optimizer", "optimizer"),
    ("lr", "learning rate"),
    ("weight_decay", "weight decay"),
    ("alpha", "α (Beta(α, α) for λ)"),
    ("eta", "η (balanced loss)"),
    ("seed", "seed"),
    ("samix_hub_version", "samix-hub version"),
)


def smoke_run(
    run_config: dict[str, Any] | None, metrics: Sequence[dict[str, Any]] = ()
) -> str | None:
    """A sentence saying the run was cut short by ``--max-steps`` (a smoke run), or None.

    A run with ``max_steps`` whose last recorded epoch is below its planned ``epochs`` (or
    that recorded none) stopped at the step cap: its numbers are those of a short run.
    """
    cfg = run_config or {}
    cap = cfg.get("max_steps")
    if not isinstance(cap, int):
        return None
    epochs = cfg.get("epochs")
    done = [float(m["epoch"]) for m in metrics if isinstance(m.get("epoch"), (int, float))]
    if isinstance(epochs, int) and done and max(done) >= epochs:
        return None  # the cap was not reached before the planned epochs ended
    planned = f" of the {epochs} epochs planned" if isinstance(epochs, int) else ""
    return (
        f"a smoke run: training stopped at --max-steps {cap} (optimizer steps){planned}; "
        "its results are those of this short run, not of a full training"
    )


def limitations_text(onnx: bool, smoke: str | None) -> str:
    """The card's extra limitation lines: no ONNX graph, a smoke run (:func:`smoke_run`)."""
    lines = [] if onnx else ["- This export has no ONNX graph."]
    if smoke:
        lines.append(f"- This is {smoke}.")
    return "".join(line + "\n" for line in lines)


def recipe_table(
    run_config: dict[str, Any] | None,
    metrics: Sequence[dict[str, Any]] = (),
    provenance: dict[str, Any] | None = None,
) -> str:
    """A markdown table of the run's resolved options (data paths reduced to their name).

    Without a run (``save_pretrained``), the table comes from the generator's ``provenance``
    (:func:`provenance_recipe`). A run cut short by ``--max-steps`` says so instead of
    listing its planned epochs (:func:`smoke_run`).
    """
    if not run_config:
        return provenance_recipe(provenance)
    rows = []
    smoke = smoke_run(run_config, metrics)
    if smoke:
        rows.append(f"| training length | **{smoke}** |")
    for key, label in _RECIPE_KEYS:
        if run_config.get(key) is None or (smoke and key == "epochs"):
            continue
        value = dataset_info(run_config[key])[2] if key == "data" else format_value(run_config[key])
        rows.append(f"| {label} | {value} |")
    mixer = run_config.get("mixer")
    if isinstance(mixer, dict):
        rows.append(f"| mixer | {mixer_summary(mixer)} |")
    gen = run_config.get("generator")
    if isinstance(gen, dict) and gen:
        builtin = f"builtin:{gen['builtin']}" if gen.get("builtin") else None
        src = (
            gen.get("repo_id")
            or builtin
            or gen.get("source")
            or gen.get("name")
            or "a local generator"
        )
        rows.append(f"| frozen generator (SAMix^P) | {src} {gen.get('commit') or ''} |")
    teacher = run_config.get("teacher_provenance")  # mixer trained against a frozen teacher
    if isinstance(teacher, dict) and teacher:
        rows.append(
            f"| frozen teacher (the mixer trained against it) | {teacher_summary(teacher)} |"
        )
        head = run_config.get("teacher_head") or {}
        if head.get("fitted"):
            test = f", test {head['test_top1']:.2f} %" if "test_top1" in head else ""
            rows.append(
                f"| teacher head | refit on frozen features ({head.get('reason')}): "
                f"train {head['train_top1']:.2f} %{test} |"
            )
    base = run_config.get("backbone_provenance")  # fine-tune runs (samix-hub finetune)
    if isinstance(base, dict) and base:
        rows.append(f"| base model (fine-tuned from) | {base_summary(base)} |")
    mixed = run_config.get("mixed_provenance")
    if isinstance(mixed, dict) and mixed:
        rows.append(
            f"| offline mixed data set | {mixed.get('name')}: {mixed.get('rows')} images "
            f"({mixed.get('method', '?')}), + {mixed.get('clean_images', 0)} clean images |"
        )
    return "| option | value |\n|---|---|\n" + "\n".join(rows)
