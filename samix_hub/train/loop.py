"""The training loop: one short, explicit loop for every scenario and method (nanoGPT style).

:func:`train` reads top to bottom in four phases, one screen each:

1. :func:`_prepare`: resolve the options, load the data, build the scenario's modules, the
   optimizer and the schedule; then :func:`_start_or_restore` either starts the run or loads
   its checkpoint (after :func:`~samix_hub.train.resume.check_resumable`).
2. :func:`_train_epoch`: per step, seed this step's mixing generator from ``(seed, rank,
   step)``, run the method's step function (it runs its own backward passes), check every loss
   component is finite (all-reduced over ranks, before the optimizer touches the weights), step
   the optimizer and the schedule (:mod:`samix_hub.train.step`), then the scenario's EMA
   update; append to ``steps.jsonl``.
3. :func:`_evaluate_and_log`: the scenario's evaluation, appended to ``metrics.jsonl``; then
   ``curves.png`` and the ``--log`` sinks (:mod:`samix_hub.train.run_log`).
4. :func:`_checkpoint`: :class:`~samix_hub.train.checkpoint.TrainingState` into ``last.pt``.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from samix_hub._version import __version__
from samix_hub.data.specs import DataSource, DataSpecError, load_data
from samix_hub.errors import UserError
from samix_hub.fileio import atomic_write_json, check_writable_dir
from samix_hub.fileio.locking import folder_lock
from samix_hub.format.repo_ref import Resolve, resolve_local
from samix_hub.format.run import CHECKPOINT, METRICS_NAME, RUN_FORMAT_VERSION, RUN_KIND, STEPS_NAME
from samix_hub.train.checkpoint import (
    TrainingState,
    append_jsonl,
    check_run_folder,
    load_checkpoint,
    read_jsonl,
    remove_run_temps,
    truncate_jsonl,
)
from samix_hub.train.config import TrainConfig
from samix_hub.train.distributed import (
    DistInfo,
    broadcast_buffers,
    init_distributed,
    resolve_device,
    shutdown,
)
from samix_hub.train.loader import ResumableSampler, SeededTransform, mix_seed, train_loader
from samix_hub.train.optim import build_optimizer, cosine_schedule, warn_short_ema
from samix_hub.train.resume import check_resumable
from samix_hub.train.run_log import RunLog, check_sinks
from samix_hub.train.scenario import Scenario, StepContext, StepFn, TrainModules, get_scenario
from samix_hub.train.step import (
    NonFiniteLossError,
    amp,
    finite_losses,
    optimizer_backward,
    optimizer_step,
)

__all__ = ["train", "NonFiniteLossError", "run_config_dict"]


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


#: End-of-epoch checkpoints are written at most this often (and always after the last step), so
#: that many short epochs (small data sets) do not spend their time writing ``last.pt``; an
#: interrupted run loses at most this much work. ``--checkpoint-every N`` adds step checkpoints.
EPOCH_CHECKPOINT_SECONDS = 30.0


def train(
    cfg: TrainConfig,
    resume: bool = False,
    quiet: bool = False,
    log: Sequence[str] = (),
    sources: Resolve = resolve_local,
) -> Path:
    """Run (or resume) a training run into ``cfg.out``; returns the run folder.

    Each evaluation is appended to ``metrics.jsonl`` and drawn in ``curves.png``; ``log`` adds
    sinks: ``"csv"`` (``metrics.csv``) and ``"tensorboard"`` (``tensorboard/``). The run
    folder is checked for writing first and locked for the whole run (rank 0 holds
    :func:`samix_hub.fileio.locking.folder_lock`): a second run into the same folder is refused.
    ``sources`` finds the folders of ``cfg``'s generator, backbone and teacher SRC (local ones
    by default; ``samix_hub.hub.resolve.resolve_source`` also downloads Hub repos).
    """
    sinks = check_sinks(log)
    info = init_distributed(resolve_device(cfg.device))
    try:
        if not info.is_main:
            return _train(cfg, info, resume, quiet, sinks, sources)
        check_writable_dir(cfg.out, "--out")
        check_run_folder(Path(cfg.out))  # again under the lock, in _prepare
        with folder_lock(cfg.out, f"{cfg.scenario} run"):
            remove_run_temps(Path(cfg.out))
            return _train(cfg, info, resume, quiet, sinks, sources)
    finally:
        shutdown(info)


def _train(
    cfg: TrainConfig,
    info: DistInfo,
    resume: bool,
    quiet: bool,
    sinks: tuple[str, ...],
    sources: Resolve,
) -> Path:
    run = _prepare(cfg, info, resume, quiet, sources)
    _start_or_restore(run, resume, sinks)
    try:
        while run.step < run.total:
            _train_epoch(run)
            epochs_done = math.ceil(run.step / run.per_epoch)
            if cfg.eval_every and (epochs_done % cfg.eval_every == 0 or run.step >= run.total):
                _evaluate_and_log(run, epochs_done)
            if run.step >= run.total or time.monotonic() - run.saved_at >= EPOCH_CHECKPOINT_SECONDS:
                _checkpoint(run)
    finally:
        if run.log is not None:
            run.log.close()
    return run.run_dir


@dataclass
class _Run:
    """One run while it trains: what :func:`_prepare` builds and the phases share."""

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


def _prepare(cfg: TrainConfig, info: DistInfo, resume: bool, quiet: bool, sources: Resolve) -> _Run:
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
    return _Run(
        cfg, info, scenario, data, mods, state, scenario.step_fn(cfg.method), train_ds, sampler,
        spe, total, run_cfg, autocast, channels_last, info.is_main and not quiet, quiet,
    )  # fmt: skip


def _start_or_restore(run: _Run, resume: bool, sinks: tuple[str, ...] = ()) -> None:
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
        atomic_write_json(run.run_dir / "config.json", run.run_cfg)
        run.log = RunLog(run.run_dir, sinks, run.step)
    run.scenario.wrap(run.mods, run.info)
    done = [r for r in read_jsonl(run.steps_path) if r["step"] > _last_eval(run.metrics_path)]
    for r in done:
        for k, v in r.items():
            if k.startswith("loss"):
                run.sums[k] = run.sums.get(k, 0.0) + v
    run.count = len(done)


def _train_epoch(run: _Run) -> None:
    """Phase 2: the steps of one epoch (from where a resumed run stopped), to its end or the
    run's last step; a mid-epoch checkpoint every ``--checkpoint-every`` steps."""
    cfg, info, device = run.cfg, run.info, run.info.device
    epoch, offset = divmod(run.step, run.per_epoch)
    run.sampler.set_epoch(epoch)
    run.sampler.set_start(offset * cfg.batch_size)  # it hands out (epoch, index) pairs
    if run.loader is None:  # one loader per run: its workers (if any) persist across epochs
        run.loader = train_loader(
            run.train_ds, cfg.batch_size, run.sampler, cfg.workers, device.type == "cuda"
        )
    loader = run.loader
    bar = tqdm(
        total=min(run.per_epoch, run.total - epoch * run.per_epoch),
        initial=offset,
        desc=f"epoch {epoch + 1}/{math.ceil(run.total / run.per_epoch)}",
        unit="step",
        disable=not run.show,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    )
    gen = torch.Generator()
    for images, labels in loader:
        t0 = time.perf_counter()
        gen.manual_seed(mix_seed(cfg.seed, info.rank, run.step, 0x5A))
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        values, lr = _train_step(run, images, labels, gen, epoch)
        run.step += 1
        for k, v in values.items():
            run.sums[k] = run.sums.get(k, 0.0) + v
        run.count += 1
        rate = cfg.batch_size * info.world / max(time.perf_counter() - t0, 1e-9)
        run.images_per_s = rate if run.images_per_s == 0 else 0.9 * run.images_per_s + 0.1 * rate
        if info.is_main:
            append_jsonl(run.steps_path, {"step": run.step, "epoch": epoch + 1, "lr": lr, **values})
            if run.log is not None:
                run.log.step(run.step, values["loss"], lr)
        post = {"loss": f"{values['loss']:.3f}", "img/s": f"{run.images_per_s:.0f}"}
        if run.last_top1 is not None:
            post["top1"] = f"{run.last_top1:.1f}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)
        every = cfg.checkpoint_every
        if every and run.step % every == 0 and run.step % run.per_epoch and run.step < run.total:
            _checkpoint(run)
        if run.step >= run.total:
            break
    bar.close()


def _train_step(
    run: _Run, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, epoch: int
) -> tuple[dict[str, float], float]:
    """One optimizer step; returns the loss components (averaged over ranks) and its lr."""
    run.state.optimizer.zero_grad(set_to_none=True)
    ctx = StepContext(
        run.mods, run.cfg, run.info.device, gen, run.step, run.total,
        optimizer_backward(run.state), run.autocast, run.channels_last,
    )  # fmt: skip
    losses = run.step_fn(ctx, images, labels)
    values = finite_losses(losses, run.info, run.step, epoch, run.run_dir / CHECKPOINT)
    lr = optimizer_step(run.state)
    run.scenario.after_step(run.mods, run.step, run.total, run.cfg)
    return values, lr


def _evaluate_and_log(run: _Run, epochs_done: int) -> None:
    """Phase 3: evaluate, average the training losses since the last evaluation, log."""
    mods, info = run.mods, run.info
    record: dict[str, Any] = {"epoch": epochs_done, "step": run.step}
    broadcast_buffers([mods.model, mods.ema, mods.mixer], info)
    record.update(
        run.scenario.evaluate(mods, run.data, run.cfg, info, run.autocast, run.channels_last)
    )
    count = max(run.count, 1)
    record["train_loss"] = run.sums.get("loss", 0.0) / count
    for k, v in run.sums.items():
        if k != "loss":
            record[f"train_{k}"] = v / count
    record["lr"] = run.state.scheduler.get_last_lr()[0]
    record["images_per_s"] = run.images_per_s
    run.sums, run.count = {}, 0
    run.last_top1 = record.get("top1")
    if info.is_main:
        append_jsonl(run.metrics_path, record)
        if run.log is not None:
            run.log.evaluation(record)
        if not run.quiet:
            tqdm.write(_summary(record), file=sys.stderr)


def _checkpoint(run: _Run) -> None:
    """Phase 4: the training state at this step into ``last.pt`` (rank 0 writes)."""
    if run.info.is_main:
        run.state.save(run.run_dir, run.step, run.per_epoch, run.run_cfg)
    run.saved_at = time.monotonic()


def _last_eval(metrics_path: Path) -> int:
    rows = read_jsonl(metrics_path)
    return int(rows[-1]["step"]) if rows else 0


def _summary(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']} step {record['step']}"]
    for key in ("train_loss", "top1", "top5", "ema_top1", "ema_top5"):
        if key in record:
            parts.append(
                f"{key} {record[key]:.3f}" if "loss" in key else f"{key} {record[key]:.2f}"
            )
    return "  ".join(parts)
