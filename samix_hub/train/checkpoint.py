"""Run folders: checkpoints (atomic ``torch.save``, ``weights_only=True`` loads), config, logs.

``RUN_DIR/checkpoints/last.pt`` holds ``model``, ``ema``, ``mixer`` (state dicts), ``optimizer``,
``scheduler``, ``scaler``, ``step``, ``epoch``, ``rng`` and ``config`` (the dict of
``config.json``), plus a scenario's own entries (``ssl``: ``neck``, ``ema_neck``, ``queue``).
:class:`TrainingState` writes and reads all of it (docs/artifacts.md "Run folder"). A crash
while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from samix_hub.train.scenario import Scenario, TrainModules

from samix_hub.errors import UserError
from samix_hub.export.run import load_weights_only
from samix_hub.fileio import append_line, atomic_write, atomic_write_text, remove_stale_temps
from samix_hub.fileio.guard import guard_output, loads_bounded, read_json_bounded
from samix_hub.format.artifact import CONFIG_NAME
from samix_hub.format.run import CHECKPOINT, RUN_FILES, RUN_KIND

__all__ = [
    "TrainingState",
    "save_checkpoint",
    "load_checkpoint",
    "truncate_jsonl",
    "append_jsonl",
    "check_run_folder",
    "remove_run_temps",
]


def save_checkpoint(run_dir: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` to ``RUN_DIR/checkpoints/last.pt`` atomically (temp file + rename)."""

    def write(tmp: str) -> None:
        # Through a Python file: a full disk surfaces as OSError(ENOSPC) (torch's own writer
        # would only say "unexpected pos"), which the CLI reports as one line.
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return atomic_write(Path(run_dir) / CHECKPOINT, write)


@dataclass
class TrainingState:
    """What a checkpoint saves and restores: the scenario's modules, the optimizer, the
    schedule, the AMP grad scaler and the torch RNG (the mixing RNG is reseeded every step)."""

    scenario: Scenario[Any]
    modules: TrainModules
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None

    def state_dict(self, step: int, per_epoch: int, config: dict[str, Any]) -> dict[str, Any]:
        """The checkpoint at ``step`` of a run whose ``config.json`` is ``config``."""
        return {
            **self.scenario.state_dict(self.modules),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": step,
            "epoch": step // per_epoch,
            "rng": {"torch": torch.get_rng_state(), "scheme": "per-step seeds"},
            "config": config,
        }

    def save(self, run_dir: Path, step: int, per_epoch: int, config: dict[str, Any]) -> Path:
        return save_checkpoint(run_dir, self.state_dict(step, per_epoch, config))

    def load_state_dict(self, state: dict[str, Any]) -> int:
        """Restore everything from a checkpoint (:func:`load_checkpoint`); returns its step."""
        self.scenario.load_state_dict(self.modules, state)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        return int(state["step"])


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint file (or a run folder's ``last.pt``) with ``weights_only=True``."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise UserError(f"{path}: no checkpoint there")
    state = load_weights_only(path, map_location)
    if "model" not in state or "step" not in state:
        raise UserError(f"{path}: not a samix-hub training checkpoint")
    return state


def check_run_folder(run_dir: Path) -> None:
    """Refuse to write a run into a folder whose ``config.json`` is not a run's (an exported
    generator or backbone, say): the run would overwrite it; also a mixed data set, a link, or
    a folder inside another samix-hub folder (``fileio.guard.guard_output``)."""
    path = run_dir / CONFIG_NAME
    if path.is_file():
        try:
            kind = read_json_bounded(path).get("kind")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, RecursionError):
            kind = None
        if kind != RUN_KIND:
            raise UserError(
                f"{path}: not a samix-hub run's config.json (a run would overwrite it); "
                "choose another --out"
            )
    else:  # no run wrote here: a file with a run file's name is someone else's
        for name in (*RUN_FILES, str(CHECKPOINT)):  # what a run would replace
            if name != CONFIG_NAME and (run_dir / name).exists():
                raise UserError(
                    f"{run_dir / name}: exists in a folder that holds no run (no config.json); "
                    "a run would overwrite it; choose another --out"
                )
    guard_output(run_dir, "--out", kind=RUN_KIND)
    for name in (*RUN_FILES, CHECKPOINT.parent.name):
        if (run_dir / name).is_symlink():  # a run writes these itself, never through a link
            raise UserError(
                f"{run_dir / name}: is a symbolic link; a run writes this path itself and does "
                "not follow links; remove it or choose another --out"
            )


def remove_run_temps(run_dir: Path) -> None:
    """Temporary files of atomic writes that a killed run left behind (fileio.atomic_write)."""
    remove_stale_temps(run_dir, RUN_FILES)
    remove_stale_temps(run_dir / CHECKPOINT.parent, [CHECKPOINT.name])


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a line cut short by a crash is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(loads_bounded(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Keep the records with ``step <= max_step`` (on resume: drop what the checkpoint lacks)."""
    if not path.exists():
        return
    rows = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= max_step]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    append_line(path, json.dumps(record))
