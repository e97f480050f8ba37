"""Generator provenance: the one place that says where a generator came from.

Two records, both in docs/artifacts.md:

- a generator *source*, as a mixed data set records it (:func:`generator_source_provenance`)
  or a fine-tune run does (:func:`frozen_generator_provenance`): Hub repo and commit, a
  builtin name, or a local folder's name and sha256, never its path;
- the training run a generator's own ``config.json`` records (``provenance``), which its card
  reads (:func:`provenance_recipe`, :func:`provenance_mask_summary`, :func:`generator_origin`).

Teachers and fine-tune bases are described here too (:func:`teacher_summary`,
:func:`base_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from samix_hub.data.names import dataset_info
from samix_hub.export.cards import format_value, summarize_metrics
from samix_hub.fileio import folder_sha256
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.format.artifact import CONFIG_NAME, GENERATOR_WEIGHTS
from samix_hub.format.repo_ref import ResolvedSource
from samix_hub.format.run import RUN_KIND
from samix_hub.models.generator import GeneratorConfig

__all__ = [
    "generator_source_provenance",
    "frozen_generator_provenance",
    "teacher_summary",
    "base_summary",
    "provenance_recipe",
    "provenance_mask_summary",
    "generator_origin",
]


def generator_source_provenance(resolved: ResolvedSource, files: Sequence[str]) -> dict[str, Any]:
    """Where the generator ``resolved`` came from, as a mixed data set records it: the Hub repo,
    revision and commit; a builtin's name and version with the sha256 of ``files``; or a local
    folder's name (no path) with the sha256 of ``files``."""
    if resolved.repo_id is not None:
        return dict(resolved.provenance())
    sha256 = folder_sha256(resolved.path, list(files))
    if resolved.builtin is not None:  # shipped in the package: named and versioned, no path
        return {**resolved.provenance(), "sha256": sha256}
    return {"name": resolved.path.resolve().name, "sha256": sha256}


def frozen_generator_provenance(src: str, prov: dict[str, Any]) -> dict[str, Any]:
    """The frozen generator (``--generator SRC``) as a fine-tune run records it: ``prov`` (from
    :meth:`~samix_hub.format.repo_ref.ResolvedSource.provenance`) for a Hub or builtin
    generator; a folder's name, the sha256 of its weights and the data set it was trained on
    (no local path) for a local one."""
    if prov.get("repo_id") or prov.get("builtin"):
        return dict(prov)
    folder = Path(str(prov.get("source") or src)).expanduser()
    out: dict[str, Any] = {"source": folder.resolve().name}
    if (folder / GENERATOR_WEIGHTS).is_file():
        out["sha256"] = folder_sha256(folder, [CONFIG_NAME, GENERATOR_WEIGHTS])
    try:
        config = read_json_bounded(folder / CONFIG_NAME)
    except (OSError, ValueError):  # no config, or not JSON
        config = {}
    trained = config.get("provenance") if isinstance(config, dict) else None
    if isinstance(trained, dict) and trained.get("data"):
        out["trained_on"] = trained["data"]
    return out


def teacher_summary(prov: dict[str, Any]) -> str:
    """A teacher's source for a card: the SRC given, Hub repo + commit, or a run/folder name."""
    if prov.get("repo_id"):
        commit = f" (commit {prov['commit']})" if prov.get("commit") else ""
        return f"`{prov.get('src') or prov['repo_id']}`{commit}"
    if prov.get("kind") in ("timm", "hf-hub"):
        return f"`{prov.get('src') or prov.get('name') or prov.get('repo_id')}` (timm weights)"
    what = "training run" if prov.get("kind") == RUN_KIND else "backbone folder"
    sha = f" (sha256 {str(prov['sha256'])[:12]})" if prov.get("sha256") else ""
    return f"local {what} `{prov.get('source')}`{sha}"


def base_summary(prov: dict[str, Any]) -> str:
    """Where a fine-tuned backbone started: Hub repo and commit, timm weights, or a folder."""
    if prov.get("repo_id"):
        commit = f" (commit {prov['commit']})" if prov.get("commit") else ""
        return f"{prov['repo_id']}{commit}"
    if prov.get("kind") == "timm":
        weights = prov.get("hf_hub_id") or ("pretrained" if prov.get("pretrained") else None)
        return f"timm `{prov.get('name')}`, " + (f"weights {weights}" if weights else "random init")
    sha = f" (sha256 {str(prov['sha256'])[:12]})" if prov.get("sha256") else ""
    return f"local backbone `{prov.get('source')}`{sha}"


#: Provenance fields a generator's ``config.json`` records about its training run, as labelled
#: in the card's recipe (``export/run.py:build_generator``).
_PROVENANCE_KEYS = (
    ("scenario", "scenario"),
    ("method", "method"),
    ("data", "data set"),
    ("num_classes", "classes"),
    ("epochs", "epochs"),
    ("max_steps", "max steps"),
    ("step", "optimizer steps done"),
    ("seed", "seed"),
    ("encoder_weights", "encoder weights"),
    ("trained_against", "mixer trained against"),
    ("trained_with", "trained with samix-hub"),
)


def provenance_recipe(provenance: dict[str, Any] | None) -> str:
    """The recipe table of a generator saved without its run (``save_pretrained``): the
    training run its ``config.json`` provenance records, or a sentence when there is none."""
    prov = provenance if isinstance(provenance, dict) else {}
    rows = []
    for key, label in _PROVENANCE_KEYS:
        value = prov.get(key)
        if value is None or isinstance(value, (dict, list)):
            continue
        shown = dataset_info(str(value))[2] if key == "data" else format_value(value)
        rows.append(f"| {label} | {shown} |")
    teacher = prov.get("teacher")
    if isinstance(teacher, dict) and teacher:
        rows.append(f"| frozen teacher | {teacher_summary(teacher)} |")
    if prov.get("builtin"):
        rows.append(f"| shipped as | `builtin:{prov['builtin']}` |")
    if not rows:
        return "No training run recorded (imported weights); see the provenance in config.json."
    return (
        "The training run recorded in `config.json` (`provenance`):\n\n"
        "| option | value |\n|---|---|\n" + "\n".join(rows)
    )


def provenance_mask_summary(provenance: dict[str, Any] | None) -> dict[str, Any] | None:
    """A generator's mask statistics from its ``config.json`` provenance, in the form of
    :func:`summarize_generator_metrics`: the run's own (``measured``), else those measured
    after training (``mask_statistics``, as ``benchmarks/mask_lambda.py`` records them)."""
    prov = provenance if isinstance(provenance, dict) else {}
    measured = prov.get("measured")
    if isinstance(measured, dict) and isinstance(measured.get("values"), dict):
        return measured
    stats = prov.get("mask_statistics")
    if not isinstance(stats, dict):
        return None
    names = {"mask_slope": "slope", "mask_spatial_std": "spatial_std", "mask_lam_mae": "lam_mae"}
    values = {
        key: float(stats[name])
        for key, name in names.items()
        if isinstance(stats.get(name), (int, float))
    }
    if not values:
        return None
    where = f"{stats['images']} {stats.get('split', 'test')} images" if stats.get("images") else ""
    data = f" of {dataset_info(str(stats['data']))[2]}" if stats.get("data") else ""
    lams = [x for x in stats.get("lams") or [] if isinstance(x, (int, float))]
    span = f"{min(lams):g}..{max(lams):g}" if lams else None
    return {"values": values, "measured_on": (where + data).strip() or None, "lams": span}


def generator_origin(
    cfg: GeneratorConfig,
    prov: dict[str, Any],
    run_config: dict[str, Any] | None,
    metrics: list[dict[str, Any]],
) -> tuple[str, str]:
    """The card's description of the encoder and mixer, and of the classifier that scored it.

    The classifier's accuracy is stated in the body only: it is the backbone card's result.
    """
    data = dataset_info(prov.get("data"))[0]
    summary = summarize_metrics(metrics, "top1")
    acc = f" (top-1 {summary['last']:.2f} % on the test split)" if summary else ""
    teacher = prov.get("teacher")
    if isinstance(teacher, dict):
        who = teacher_summary(teacher)
        origin = (
            f"the encoder of a frozen, already trained `{cfg.backbone}` classifier (the teacher, "
            f"{who}) truncated after stage {cfg.stage}, plus a {cfg.mixer.variant} mixer "
            f"**trained against a frozen teacher** on **{data}**; only the mixer was trained"
        )
        scorer = f"The mixer was trained against the frozen teacher {who}{acc}."
        head = (run_config or {}).get("teacher_head") or {}
        if head.get("fitted"):
            scorer += f" Its head was refit on frozen features for this data ({head['reason']})."
        return origin, scorer + " The teacher is exported as the backbone; see its card."
    weights = "EMA encoder" if prov.get("encoder_weights") == "ema" else "encoder"
    origin = (
        f"the {weights} of a `{cfg.backbone}` truncated after stage {cfg.stage} plus the "
        f"{cfg.mixer.variant} mixer, trained with **{prov.get('method', 'samix')}** on **{data}**"
    )
    if summary is None:
        return origin, "The classifier trained jointly with it recorded no evaluation."
    return origin, (
        f"The classifier trained jointly with this generator scored top-1 {summary['last']:.2f} % "
        "on the test split (a result of the backbone card, not of this generator)."
    )
