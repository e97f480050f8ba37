"""The run folder's names (docs/artifacts.md "Run folder"): what ``samix-hub train`` writes.

``RUN_DIR/config.json`` (kind :data:`RUN_KIND`), ``metrics.jsonl`` (one line per evaluation),
``steps.jsonl`` (loss sums between evaluations), ``curves.png``, ``checkpoints/last.pt``, and
with ``--log``: ``metrics.csv`` and ``tensorboard/``.
"""

from __future__ import annotations

from pathlib import Path

from samix_hub.format.artifact import CONFIG_NAME, RUN

__all__ = [
    "RUN_KIND",
    "RUN_FORMAT_VERSION",
    "CHECKPOINT",
    "METRICS_NAME",
    "STEPS_NAME",
    "CURVES_NAME",
    "CSV_NAME",
    "TENSORBOARD_DIR",
    "LOG_SINKS",
    "RUN_FILES",
    "is_run_folder",
]

#: ``kind`` of a run's ``config.json``.
RUN_KIND = RUN
RUN_FORMAT_VERSION = 1
CHECKPOINT = Path("checkpoints") / "last.pt"
METRICS_NAME = "metrics.jsonl"
STEPS_NAME = "steps.jsonl"
CURVES_NAME = "curves.png"
CSV_NAME = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
#: The ``--log`` sinks beside ``metrics.jsonl`` and ``curves.png``.
LOG_SINKS = ("csv", "tensorboard")
#: The files a run writes in its folder besides the checkpoint (``tensorboard/`` with --log).
RUN_FILES = (CONFIG_NAME, METRICS_NAME, STEPS_NAME, CSV_NAME, CURVES_NAME, TENSORBOARD_DIR)


def is_run_folder(path: Path) -> bool:
    """A ``samix-hub train`` run folder: its ``config.json`` and ``checkpoints/``."""
    return (path / CONFIG_NAME).is_file() and (path / CHECKPOINT.parent).is_dir()
