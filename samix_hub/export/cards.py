"""Model cards for generator and backbone folders (docs/artifacts.md).

Templates are ``samix_hub/card_templates/*.md`` (package data, so they work from a wheel; the
repository's ``model_cards/`` links to them). The YAML front matter is built with
huggingface_hub's :class:`~huggingface_hub.ModelCardData` / :class:`~huggingface_hub.EvalResult`
and the body with :class:`string.Template`. Every number in a card comes from the run's
``metrics.jsonl``; nothing is invented: without measurements the card says so and carries no
``model-index``. ``model-index`` holds only results on a named data set (a Hub id when there is
one, else the published spec such as ``digits``; never "unrecorded"), with the Hub's metric ids
(``accuracy``; top-5 is ``accuracy`` with ``metric_config: top-5``). A generator's mask
statistics are no Hub metric: they are in its card's body and its provenance (``measured``).
A card ends with the repo-id marker of ``export/card_repo.py`` (``push`` puts the target repo id
in), and names no local path. The recipe section is :mod:`samix_hub.export.card_recipe`'s; what
a card says about provenance is :mod:`samix_hub.export.provenance`'s.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import string
from importlib import resources
from pathlib import Path
from typing import Any

from samix_hub.data.names import dataset_info
from samix_hub.errors import ArtifactError

__all__ = [
    "LIBRARY_NAME",
    "CARD_LIBRARY",
    "TAGS",
    "PAPER",
    "load_template",
    "dataset_info",
    "summarize_metrics",
    "summarize_generator_metrics",
    "render_card",
    "validate_card",
    "check_card_parses",
    "format_value",
    "mixer_summary",
    "results_text",
]

LIBRARY_NAME = "samix-hub"
#: The ``library_name`` of each card kind: a backbone is a timm model (loaded with
#: ``timm.create_model("hf-hub:...")``), so its card says ``timm`` as timm's own cards do.
CARD_LIBRARY = {"generator": LIBRARY_NAME, "backbone": "timm"}
TAGS = ("mixup", "samix", "data-augmentation")
PAPER = "arxiv:2111.15454"
_TASK = "image-classification"


def load_template(kind: str) -> string.Template:
    """The body template of ``kind`` (``generator`` or ``backbone``)."""
    try:
        text = resources.files("samix_hub").joinpath("card_templates", f"{kind}.md").read_text()
    except FileNotFoundError:
        raise ArtifactError(f"no model card template for {kind!r}") from None
    return string.Template(text)


def summarize_metrics(metrics: list[dict[str, Any]], key: str = "top1") -> dict[str, Any] | None:
    """Measured accuracy for ``key`` (``top1``, ``ema_top1``, ``knn_top1``): last, best, median.

    The paper reports the median top-1 of the last 10 epochs (arXiv 2111.15454); the card gives
    that median over the last (up to) 10 evaluations beside the last value.
    """
    rows = [m for m in metrics if isinstance(m.get(key), (int, float))]
    if not rows:
        return None
    values = [float(m[key]) for m in rows]
    last = rows[-1]
    out: dict[str, Any] = {
        "key": key,
        "last": values[-1],
        "best": max(values),
        "median_last": statistics.median(values[-10:]),
        "window": min(10, len(values)),
        "evaluations": len(values),
        "epoch": last.get("epoch"),
        "step": last.get("step"),
    }
    top5_key = key.replace("top1", "top5")
    if top5_key != key and isinstance(last.get(top5_key), (int, float)):
        out["last_top5"] = float(last[top5_key])
    return out


#: A generator's own measurements (``metrics.jsonl``; a fixed test batch, λ in 0.2..0.8), as
#: (key, model-index metric name, what it means). The classifier's accuracy belongs to the
#: backbone card, never to a generator's model-index.
GENERATOR_METRICS = (
    ("mask_slope", "Mask mean vs λ, least-squares slope", "1 when mask means follow λ"),
    ("mask_spatial_std", "Mask spatial std", "mean per-image spatial std; 0 for flat blends"),
    ("mask_lam_mae", "Mask mean error vs λ (mean absolute)", "0 when each mask's mean is its λ"),
)


def summarize_generator_metrics(metrics: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The generator's own statistics at the last evaluation that measured them (or None)."""
    keys = [k for k, _, _ in GENERATOR_METRICS]
    rows = [m for m in metrics if any(isinstance(m.get(k), (int, float)) for k in keys)]
    if not rows:
        return None
    last = rows[-1]
    values = {k: float(last[k]) for k in keys if isinstance(last.get(k), (int, float))}
    return {"values": values, "epoch": last.get("epoch"), "step": last.get("step")}


def generator_results_text(summary: dict[str, Any] | None, scorer: str) -> str:
    """The card's results section of a generator: its mask statistics, then who scored it."""
    if summary is None:
        lines = ["No mask statistics were recorded for this run."]
    else:
        if summary.get("measured_on"):
            lams = f", λ in {summary['lams']}" if summary.get("lams") else ""
            where = f"on {summary['measured_on']}{lams} (recorded in config.json)"
        else:
            where = (
                f"on a fixed test batch, λ in 0.2..0.8 (epoch {summary.get('epoch')}, step "
                f"{summary.get('step')})"
            )
        lines = [
            f"Mask statistics of this generator {where}:",
            "",
            "| metric | value | meaning |",
            "|---|---|---|",
        ]
        for key, label, meaning in GENERATOR_METRICS:
            if key in summary["values"]:
                lines.append(f"| {label} | {summary['values'][key]:.4f} | {meaning} |")
    return "\n".join([*lines, "", scorer])


def format_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(format_value(x) for x in v) + ")"
    return str(v)


def mixer_summary(mixer: dict[str, Any]) -> str:
    k = mixer.get("lam_mul_k", -1)
    lam = f"λ encoding k={k}" if isinstance(k, (int, float)) and k >= 0 else "no λ encoding"
    exact = mixer.get("calibration", "none") == "exact"
    calibration = ", λ-exact masks (mean = λ)" if exact else ""
    return (
        f"{mixer.get('variant', 'samix')} mixer, {mixer.get('in_channels')} input channels, "
        f"{mixer.get('upsample', 'bilinear')} upsampling, {lam}{calibration}"
    )


def results_text(summary: dict[str, Any] | None, what: str, ema: dict[str, Any] | None) -> str:
    if summary is None:
        return "No evaluation was recorded for this run, so no accuracy is reported."
    lines = [
        f"Evaluated on the test split during training ({summary['evaluations']} evaluations); "
        f"{what}:",
        "",
        "| metric | value |",
        "|---|---|",
        f"| top-1 at the last evaluation (epoch {summary['epoch']}, step {summary['step']}) "
        f"| {summary['last']:.2f} % |",
    ]
    if "last_top5" in summary:
        lines.append(f"| top-5 at the last evaluation | {summary['last_top5']:.2f} % |")
    lines.append(
        f"| median top-1 of the last {summary['window']} evaluations | "
        f"{summary['median_last']:.2f} % |"
    )
    lines.append(f"| best top-1 | {summary['best']:.2f} % |")
    if ema is not None:
        lines.append(f"| EMA classifier, top-1 at the last evaluation | {ema['last']:.2f} % |")
    return "\n".join(lines)


def _eval_results(
    summary: dict[str, Any] | None, dataset_name: str, hub_id: str | None, metric_name: str
) -> list[Any]:
    """Top-1 (and top-5) accuracy on a named data set; nothing for an unrecorded one."""
    from huggingface_hub import EvalResult

    if summary is None or dataset_name == dataset_info(None)[0]:
        return []
    values = [("top-1", summary["last"], metric_name)]
    if "last_top5" in summary:
        values.append(("top-5", summary["last_top5"], metric_name.replace("Top-1", "Top-5")))
    return [
        EvalResult(
            task_type=_TASK,
            dataset_type=hub_id or dataset_name,  # the Hub id, else the published spec
            dataset_name=dataset_name,
            dataset_split="test",
            metric_type="accuracy",  # the Hub's metric id; top-k in metric_config
            metric_config=config,
            metric_value=round(value, 4),
            metric_name=name,
        )
        for config, value, name in values
    ]


def render_card(
    kind: str,
    fields: dict[str, Any],
    *,
    model_name: str,
    data_spec: str | None,
    summary: dict[str, Any] | None,
    metric_name: str,
    base_model: str | None = None,
    license: str = "apache-2.0",
    extra_tags: tuple[str, ...] = (),
    eval_results: list[Any] | None = None,
) -> str:
    """Front matter (ModelCardData) + the ``kind`` template filled with ``fields``.

    ``summary`` (from :func:`summarize_metrics`) feeds ``model-index``; None means no results.
    ``eval_results`` replaces what ``summary`` would give. ``fields["repo_id"]`` (None: the
    placeholder) is the repo id of the closing marker (``export/card_repo.py``).
    """
    from huggingface_hub import ModelCardData

    from samix_hub.export.card_repo import repo_marker

    name, hub_id, spec = dataset_info(data_spec)
    results = (
        eval_results
        if eval_results is not None
        else _eval_results(summary, name, hub_id or spec, metric_name)
    )
    data = ModelCardData(
        library_name=CARD_LIBRARY.get(kind, LIBRARY_NAME),
        license=license,
        tags=[*TAGS, *([LIBRARY_NAME] if kind == "backbone" else []), *extra_tags, PAPER],
        datasets=[hub_id] if hub_id else None,
        base_model=base_model,
        model_name=model_name,
        pipeline_tag=_TASK if kind == "backbone" else None,
        eval_results=results or None,
    )
    body = load_template(kind).substitute({"dataset": name, **_defaults(kind, fields, name)})
    marker = repo_marker(fields.get("repo_id"))
    return f"---\n{data.to_yaml()}\n---\n\n{body}\n{marker}\n"


def _defaults(kind: str, fields: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Template fields derived from older ones when a caller does not give them."""
    out = dict(fields)
    if kind == "backbone" and "method" in out:
        out.setdefault("trained_how", f"trained with **{out['method']}** on **{dataset}**")
    if kind == "generator" and "backbone" in out and "stage" in out:
        out.setdefault(
            "origin",
            f"the EMA encoder of a `{out['backbone']}` truncated after stage {out['stage']} plus "
            f"the SAMix mixer, trained with **{out.get('method', 'samix')}** on **{dataset}**",
        )
        out.setdefault("mask_mean", "its mean is free (not calibrated to λ)")
        out.setdefault("mean_limitation", "its mean is not calibrated to λ.")
    return out


#: Absolute local paths a published card must not contain (home, temp and mount folders).
_LOCAL_PATH = re.compile(
    r"(?<![\w.:/~-])/(?:home|Users|tmp|root|mnt|srv|work|private|var/folders)/[^\s`'\")]*"
    r"|(?<![\w])[A-Za-z]:\\[^\s`'\")]*"
)


def check_card_parses(path: Path, repo_type: str = "model") -> None:
    """What ``push`` requires of any card (users edit theirs): YAML front matter that
    huggingface_hub's card tooling parses into a non-empty mapping, and a non-empty body."""
    from huggingface_hub import DatasetCard, ModelCard

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: unreadable card ({exc})") from None
    if not text.startswith("---"):
        raise ArtifactError(f"{path}: no YAML front matter (the Hub's metadata); re-export")
    cls = DatasetCard if repo_type == "dataset" else ModelCard
    try:
        card = cls(text, ignore_metadata_errors=False)
    except Exception as exc:  # yaml's errors, ValueError
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"{path}: front matter does not parse ({first})") from None
    if not card.data.to_dict():
        raise ArtifactError(f"{path}: empty front matter (no license, tags or library)")
    if not card.text.strip():
        raise ArtifactError(f"{path}: the card has no text below its front matter")


def validate_card(source: str | os.PathLike[str], kind: str | None = None) -> Any:
    """Parse a card with huggingface_hub and check the front matter samix-hub promises.

    Returns the :class:`~huggingface_hub.ModelCard`; raises ArtifactError naming the problem.
    """
    from huggingface_hub import ModelCard

    path = Path(source) if not str(source).lstrip().startswith("---") else None
    label = str(path) if path else "model card"
    if path is not None and not path.is_file():
        raise ArtifactError(f"{path}: missing")
    text = path.read_text(encoding="utf-8") if path else str(source)
    if not text.startswith("---"):
        raise ArtifactError(f"{label}: no YAML front matter")
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as exc:
        raise ArtifactError(f"{label}: front matter does not parse ({exc})") from None
    meta = card.data.to_dict()
    libraries = [CARD_LIBRARY[kind]] if kind in CARD_LIBRARY else sorted(set(CARD_LIBRARY.values()))
    if meta.get("library_name") not in libraries:
        raise ArtifactError(
            f"{label}: library_name is {meta.get('library_name')!r}, not {' or '.join(libraries)}"
        )
    missing = [t for t in TAGS if t not in (meta.get("tags") or [])]
    if missing:
        raise ArtifactError(f"{label}: tags lack {missing}")
    if not meta.get("license"):
        raise ArtifactError(f"{label}: no license")
    for res in card.data.eval_results or []:
        if not isinstance(res.metric_value, (int, float)) or not math.isfinite(res.metric_value):
            raise ArtifactError(f"{label}: model-index value {res.metric_value!r} is not a number")
        percent = "accuracy" in str(res.metric_type)
        if percent and not 0 <= res.metric_value <= 100:
            raise ArtifactError(f"{label}: model-index value {res.metric_value!r} is not a percent")
    leak = _LOCAL_PATH.search(text)
    if leak:
        raise ArtifactError(f"{label}: names a local path ({leak.group(0)!r})")
    if "arXiv:2111.15454" not in card.text:
        raise ArtifactError(f"{label}: body lacks the paper citation")
    usage = {"generator": "load_generator", "backbone": "create_model"}.get(kind or "")
    if usage and usage not in card.text:
        raise ArtifactError(f"{label}: no {kind} usage section ({usage})")
    return card
