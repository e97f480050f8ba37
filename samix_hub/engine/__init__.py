"""The training engine: one loop (:mod:`.loop`), scenarios with one step function per method.

``train(TrainConfig(...))`` writes a run folder (``config.json``, ``metrics.jsonl``,
``steps.jsonl``, ``curves.png``, ``checkpoints/last.pt``; ``log=("csv", "tensorboard")`` adds
``metrics.csv`` and ``tensorboard/``); ``samix-hub train`` is its command line.
"""

from __future__ import annotations

# Each scenario module registers itself on import: "sl", "ssl", "finetune", "teacher".
from . import finetune as finetune
from . import selfsup as selfsup
from . import supervised as supervised
from . import teacher as teacher
from .checkpoint import load_checkpoint, read_run_config, save_checkpoint
from .config import SL_METHODS, FinetuneOptions, SslOptions, TrainConfig
from .ema import ema_momentum, make_ema, update_ema
from .evaluate import evaluate, topk_correct
from .loop import NonFiniteLossError, train
from .model import Classifier, Normalize, build_classifier, check_backbone
from .resume import config_from_run
from .run_reader import run_generator
from .scenario import (
    SCENARIOS,
    Scenario,
    StepContext,
    TrainModules,
    get_scenario,
    register_scenario,
)

__all__ = [
    "SL_METHODS",
    "SCENARIOS",
    "Classifier",
    "FinetuneOptions",
    "SslOptions",
    "NonFiniteLossError",
    "Normalize",
    "Scenario",
    "StepContext",
    "TrainConfig",
    "TrainModules",
    "build_classifier",
    "check_backbone",
    "config_from_run",
    "ema_momentum",
    "evaluate",
    "get_scenario",
    "load_checkpoint",
    "make_ema",
    "read_run_config",
    "register_scenario",
    "run_generator",
    "save_checkpoint",
    "topk_correct",
    "train",
    "update_ema",
]
