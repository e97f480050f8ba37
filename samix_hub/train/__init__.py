"""The training engine: one loop (:mod:`.loop`), scenarios with one step function per method.

``train(TrainConfig(...))`` writes a run folder (``config.json``, ``metrics.jsonl``,
``steps.jsonl``, ``curves.png``, ``checkpoints/last.pt``; ``log=("csv", "tensorboard")`` adds
``metrics.csv`` and ``tensorboard/``); ``samix-hub train`` is its command line.
"""

from __future__ import annotations

from samix_hub.export.run import read_run_config, run_generator
from samix_hub.models.classifier import Classifier, Normalize, build_classifier, check_backbone

# Each scenario module registers itself on import: "sl", "ssl", "finetune", "teacher".
from samix_hub.train import finetune, selfsup, supervised, teacher  # noqa: F401
from samix_hub.train.checkpoint import load_checkpoint, save_checkpoint
from samix_hub.train.config import SL_METHODS, FinetuneOptions, SslOptions, TrainConfig
from samix_hub.train.ema import ema_momentum, make_ema, update_ema
from samix_hub.train.evaluate import evaluate, topk_correct
from samix_hub.train.loop import NonFiniteLossError, train
from samix_hub.train.resume import config_from_run
from samix_hub.train.scenario import (
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
