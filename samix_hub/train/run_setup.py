"""Setting up a training run for the loop (:mod:`samix_hub.train.loop`): resolve the options,
load the data, build the scenario's modules, the optimizer and the schedule
(:func:`prepare_run`), then start afresh or restore the checkpoint of a resumed run
(:func:`start_or_restore`). :class:`RunState` is what the loop's phases share;
:func:`run_config_dict` is the run's ``config.json`` (docs/artifacts.md "Run folder").
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from samix_hub._version import __version__
from samix_hub.data.specs import DataSource, DataSpecError, load_data
from samix_hub.errors import UserError
from samix_hub.fileio import atomic_write_json
from samix_hub.format.artifact import CONFIG_NAME
from samix_hub.format.repo_ref import Resolve
from samix_hub.format.run import CHECKPOINT, METRICS_NAME, RUN_FORMAT_VERSION, RUN_KIND, STEPS_NAME
from samix_hub.train.checkpoint import (
    TrainingState,
    check_run_folder,
    load_checkpoint,
    read_jsonl,
    truncate_jsonl,
)
from samix_hub.train.config import TrainConfig
from samix_hub.train.distributed import DistInfo
from samix_hub.train.loader import ResumableSampler, SeededTransform, mix_seed
from samix_hub.train.optim import build_optimizer, cosine_schedule, warn_short_ema
from samix_hub.train.resume import check_resumable
from samix_hub.train.run_log import RunLog
from samix_hub.train.scenario import Scenario, StepFn, TrainModules, get_scenario

__all__ = [
    "RunState",
    "run_config_dict",
    "amp",
    "prepare_run",
    "start_or_restore",
    "last_eval",
]


def run_config_dict(
    cfg: TrainConfig, data: DataSource, scenario_keys: dict[str, Any], world: int
) -> dict[str, Any]:
    """``config.json``: the contract keys first, then every resolved option."""
    options = cfg.to_dict()
    source = options.pop("generator")
    options.pop("image_size")
    return {
        "kind": RUN_KIND,
        "format_version": RUN_FORMAT_VERSION,
        "scenario": cfg.scenario,
        "method": cfg.method,
        "backbone": cfg.backbone,
        "num_classes": data.num_classes,
        "class_names": [str(c) for c in data.class_names],
        "data": cfg.data,
        "image_size": list(data.image_size),
        "in_chans": data.channels,
        "mean": list(data.mean),
        "std": list(data.std),
        "stage": cfg.stage,
        "mixer": None,
        "generator": None,
        "generator_source": source,
        "samix_hub_version": __version__,
        "world_size": world,
        **{k: v for k, v in options.items() if k not in ("scenario", "method", "backbone")},
        **scenario_keys,
    }


def amp(device: torch.device, enabled: bool) -> tuple[Callable[[], Any], Any]:
    """Autocast factory (bf16 where supported, else fp16 with a GradScaler) on CUDA only."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


@dataclass
class RunState:
    """One run while it trains: what :func:`prepare_run` builds and the loop's phases share."""

    cfg: TrainConfig
    info: DistInfo
    scenario: Scenario[Any]
    data: DataSource
    mods: TrainModules
    state: TrainingState
    step_fn: StepFn[Any]
    train_ds: SeededTransform
    sampler: ResumableSampler
    per_epoch: int
    total: int
    run_cfg: dict[str, Any]
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]
    channels_last: bool
    show: bool
    quiet: bool
    step: int = 0
    #: loss sums and step count since the last evaluation (rebuilt from steps.jsonl on resume)
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    last_top1: float | None = None
    images_per_s: float = 0.0
    loader: DataLoader[Any] | None = None
    #: when the last checkpoint was written (time.monotonic); -inf: none yet in this process
    saved_at: float = -math.inf
    #: curves.png and the --log sinks (rank 0 only)
    log: RunLog | None = None

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.out)

    @property
    def metrics_path(self) -> Path:
        return self.run_dir / METRICS_NAME

    @property
    def steps_path(self) -> Path:
        return self.run_dir / STEPS_NAME


def prepare_run(
    cfg: TrainConfig, info: DistInfo, resume: bool, quiet: bool, sources: Resolve
) -> RunState:
    """Phase 1: options, data, modules, optimizer, schedule and the run's ``config.json``."""
    device = info.device
    scenario = get_scenario(cfg.scenario, sources)
    cfg = scenario.resolve(cfg)
    run_dir = Path(cfg.out)
    if (run_dir / CHECKPOINT).exists() and not resume:
        raise UserError(f"{run_dir}: holds a run already; pass --resume to continue it")
    check_run_folder(run_dir)
    try:
        data = load_data(cfg.data, download=cfg.download, image_size=cfg.image_size)
    except DataSpecError as exc:
        raise UserError(str(exc)) from None
    if cfg.image_size:
        data.image_size = (cfg.image_size[0], cfg.image_size[1])
    mods = scenario.build(cfg, data, device)
    channels_last = cfg.channels_last and device.type == "cuda"
    if channels_last:
        for m in (mods.model, mods.ema):
            if m is not None:
                m.to(memory_format=torch.channels_last)
    autocast, scaler = amp(device, cfg.amp)
    optimizer = scenario.make_optimizer(mods, cfg)
    if optimizer is None:
        optimizer = build_optimizer(scenario.param_groups(mods, cfg), cfg)
    train_ds = SeededTransform(data.train, scenario.train_transform(cfg, data), cfg.seed)
    sampler = ResumableSampler(train_ds, info.world, info.rank, cfg.seed)
    spe = sampler.num_samples // cfg.batch_size
    if spe == 0:
        raise UserError(
            f"{cfg.data}: {len(train_ds)} training images give less than one batch of "
            f"{cfg.batch_size} per device (lower --batch-size)"
        )
    total = cfg.epochs * spe if cfg.max_steps is None else min(cfg.epochs * spe, cfg.max_steps)
    scheduler = scenario.make_scheduler(optimizer, cfg, total, spe)
    if scheduler is None:
        scheduler = cosine_schedule(optimizer, cfg, total)
    run_cfg = run_config_dict(cfg, data, scenario.run_config(cfg, data, mods), info.world)
    warn_short_ema(cfg, total, info.is_main and not quiet)
    state = TrainingState(scenario, mods, optimizer, scheduler, scaler)
    return RunState(
        cfg, info, scenario, data, mods, state, scenario.step_fn(cfg.method), train_ds, sampler,
        spe, total, run_cfg, autocast, channels_last, info.is_main and not quiet, quiet,
    )  # fmt: skip


def start_or_restore(run: RunState, resume: bool, sinks: tuple[str, ...] = ()) -> None:
    """Phase 1b: load the checkpoint of a resumed run (same options), or start afresh; then
    the run's log (curves and ``sinks``) from what the run folder holds."""
    ckpt_path = run.run_dir / CHECKPOINT
    if resume and ckpt_path.is_file():
        saved = load_checkpoint(ckpt_path, map_location=run.info.device)
        check_resumable(saved["config"], run.run_cfg, run.run_dir)
        run.step = run.state.load_state_dict(saved)
        if run.info.is_main:
            truncate_jsonl(run.metrics_path, run.step)
            truncate_jsonl(run.steps_path, run.step)
    else:
        torch.manual_seed(mix_seed(run.cfg.seed, run.info.rank))  # dropout / drop-path only
        if run.info.is_main:
            for p in (run.metrics_path, run.steps_path):
                p.unlink(missing_ok=True)
    if run.info.is_main:
        atomic_write_json(run.run_dir / CONFIG_NAME, run.run_cfg)
        run.log = RunLog(run.run_dir, sinks, run.step)
    run.scenario.wrap(run.mods, run.info)
    done = [r for r in read_jsonl(run.steps_path) if r["step"] > last_eval(run.metrics_path)]
    for r in done:
        for k, v in r.items():
            if k.startswith("loss"):
                run.sums[k] = run.sums.get(k, 0.0) + v
    run.count = len(done)


def last_eval(metrics_path: Path) -> int:
    rows = read_jsonl(metrics_path)
    return int(rows[-1]["step"]) if rows else 0
