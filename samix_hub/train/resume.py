"""``--resume``: the run a folder holds, and the one check that a resumed run is the same run.

A run is resumed from its ``config.json`` (:func:`resume_config`); options given again on the
command line must equal the saved ones, except :data:`RUNTIME_KEYS`, which change how a run is
computed but not what. When the loop loads the checkpoint it compares the whole new
``config.json`` with the saved one (:func:`check_resumable`). Both compare through
:func:`first_difference`, which reads a ``config.json`` written by an older version with the
values its missing options had then (:func:`~samix_hub.train.config.legacy_values`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from samix_hub.errors import UserError
from samix_hub.export.run import read_run_config
from samix_hub.train.config import TrainConfig, legacy_values

__all__ = [
    "RUNTIME_KEYS",
    "RESUME_INFO_KEYS",
    "config_from_run",
    "resume_config",
    "check_resumable",
    "first_difference",
]

#: Options that may change when a run is resumed (they do not change what is computed).
RUNTIME_KEYS = frozenset(
    {"device", "amp", "workers", "eval_every", "checkpoint_every", "eval_batch_size", "download"}
    | {"out", "channels_last"}
)
#: ``config.json`` keys that describe a run but are recomputed on resume (not options).
RESUME_INFO_KEYS = frozenset({"samix_hub_version", "teacher_head"})


def config_from_run(run: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a run folder's ``config.json`` was written from."""
    data = {**legacy_values(run), **run}
    data["generator"] = run.get("generator_source")
    data["image_size"] = tuple(run["image_size"]) if run.get("image_size") else None
    return TrainConfig.from_dict(data)


def resume_config(out: str | os.PathLike[str], given: dict[str, Any]) -> TrainConfig:
    """The configuration of the run in ``out``, with the runtime options of ``given`` applied.

    ``given`` holds the options passed again (CLI names as :class:`TrainConfig` fields; for a
    fine-tune ``backbone`` is the source it was given as). Any other option whose value differs
    from the run's is a one-line error naming the flag.
    """
    run = read_run_config(out)
    cfg = config_from_run(run)
    saved = _options(cfg)
    name = first_difference(saved, given, keys=sorted(set(given) - RUNTIME_KEYS))
    if name is not None:
        raise UserError(
            f"--{name.replace('_', '-')} {given[name]!r} differs from the run in {out} "
            f"({saved.get(name)!r}); omit it to resume, or use another --out"
        )
    for key in sorted(set(given) & RUNTIME_KEYS):
        setattr(cfg, key, given[key])
    return cfg


def check_resumable(saved: dict[str, Any], new: dict[str, Any], path: Path) -> None:
    """Refuse to continue the run in ``path`` when the new ``config.json`` differs from it."""
    saved = {**legacy_values(saved), **saved}
    new = {**legacy_values(new), **new}
    keys = sorted((set(saved) | set(new)) - RUNTIME_KEYS - RESUME_INFO_KEYS)
    k = first_difference(saved, new, keys)
    if k is not None:
        raise UserError(
            f"{path}: cannot resume with a different {k} ({saved.get(k)!r} in the run, "
            f"{new.get(k)!r} now); use another --out for a new run"
        )


def first_difference(saved: dict[str, Any], new: dict[str, Any], keys: Iterable[str]) -> str | None:
    """The first of ``keys`` whose value differs between the saved run and the new one."""
    for k in keys:
        if saved.get(k) != new.get(k) and not _same_mixer(k, saved, new):
            return k
    return None


def _options(cfg: TrainConfig) -> dict[str, Any]:
    """Every option of ``cfg`` by its CLI name (a fine-tune's ``backbone``: its source)."""
    out = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in ("ssl", "finetune")}
    out.update(cfg.scenario_options())
    if cfg.scenario == "finetune":
        out["backbone"] = cfg.finetune.backbone_source
    return out


def _same_mixer(key: str, saved: dict[str, Any], new: dict[str, Any]) -> bool:
    """Mixer configs equal once the fields an older version did not write take their defaults."""
    a, b = saved.get(key), new.get(key)
    if key != "mixer" or not isinstance(a, dict) or not isinstance(b, dict):
        return False
    from samix_hub.models import MixerConfig

    try:
        return MixerConfig.from_dict(a).to_dict() == MixerConfig.from_dict(b).to_dict()
    except (TypeError, ValueError):
        return False
