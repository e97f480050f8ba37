"""The training loop: one short, explicit loop for every scenario and method (nanoGPT style).

:func:`train` reads top to bottom in four phases, one screen each:

1. Set-up (:mod:`samix_hub.train.run_setup`): resolve the options, load the data, build the
   scenario's modules, the optimizer and the schedule; then start the run or load its
   checkpoint (after :func:`~samix_hub.train.resume.check_resumable`).
2. :func:`_train_epoch`: per step, seed this step's mixing generator from ``(seed, rank,
   step)``, run the method's step function (it runs its own backward passes), check every loss
   component is finite (all-reduced over ranks, before the optimizer touches the weights), step
   the optimizer and the schedule (:func:`_train_step`), then the scenario's EMA update;
   append to ``steps.jsonl``.
3. :func:`_evaluate_and_log`: the scenario's evaluation, appended to ``metrics.jsonl``; then
   ``curves.png`` and the ``--log`` sinks (:mod:`samix_hub.train.run_log`).
4. :func:`_checkpoint`: :class:`~samix_hub.train.checkpoint.TrainingState` into ``last.pt``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from samix_hub.errors import UserError
from samix_hub.fileio import check_writable_dir
from samix_hub.fileio.locking import folder_lock
from samix_hub.format.repo_ref import Resolve, resolve_local
from samix_hub.format.run import CHECKPOINT
from samix_hub.train.checkpoint import (
    TrainingState,
    append_jsonl,
    check_run_folder,
    remove_run_temps,
)
from samix_hub.train.config import TrainConfig
from samix_hub.train.distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_buffers,
    init_distributed,
    resolve_device,
    shutdown,
)
from samix_hub.train.loader import mix_seed, train_loader
from samix_hub.train.run_log import check_sinks
from samix_hub.train.run_setup import RunState, prepare_run, start_or_restore
from samix_hub.train.scenario import EvalContext, StepContext

__all__ = ["train", "NonFiniteLossError", "finite_losses"]


class NonFiniteLossError(UserError):
    """A NaN/Inf loss: the run stops before the optimizer step; the last checkpoint is kept."""


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
    run = prepare_run(cfg, info, resume, quiet, sources)
    start_or_restore(run, resume, sinks)
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


def _train_epoch(run: RunState) -> None:
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
    run: RunState, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, epoch: int
) -> tuple[dict[str, float], float]:
    """One optimizer step; returns the loss components (averaged over ranks) and its lr."""
    run.state.optimizer.zero_grad(set_to_none=True)
    ctx = StepContext(
        run.mods, run.cfg, run.info.device, gen, run.step, run.total,
        _optimizer_backward(run.state), run.autocast, run.channels_last,
    )  # fmt: skip
    losses = run.step_fn(ctx, images, labels)
    values = finite_losses(losses, run.info, run.step, epoch, run.run_dir / CHECKPOINT)
    lr = _optimizer_step(run.state)
    run.scenario.after_step(run.mods, run.step, run.total, run.cfg)
    return values, lr


def _evaluate_and_log(run: RunState, epochs_done: int) -> None:
    """Phase 3: evaluate, average the training losses since the last evaluation, log."""
    mods, info = run.mods, run.info
    record: dict[str, Any] = {"epoch": epochs_done, "step": run.step}
    broadcast_buffers([mods.model, mods.ema, mods.mixer], info)
    ev = EvalContext(run.data, run.cfg, info, run.autocast, run.channels_last)
    record.update(run.scenario.evaluate(mods, ev))
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


def _checkpoint(run: RunState) -> None:
    """Phase 4: the training state at this step into ``last.pt`` (rank 0 writes)."""
    if run.info.is_main:
        run.state.save(run.run_dir, run.step, run.per_epoch, run.run_cfg)
    run.saved_at = time.monotonic()


def _optimizer_backward(state: TrainingState) -> Callable[[torch.Tensor], None]:
    """The ``ctx.backward`` of a step: ``loss.backward()``, scaled under an fp16 GradScaler."""
    scaler = state.scaler

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    return backward


def _optimizer_step(state: TrainingState) -> float:
    """Step the optimizer (through the GradScaler under fp16) and the schedule; returns the
    learning rate the step used."""
    if state.scaler is not None:
        state.scaler.step(state.optimizer)
        state.scaler.update()
    else:
        state.optimizer.step()
    lr = float(state.scheduler.get_last_lr()[0])
    state.scheduler.step()
    return lr


def finite_losses(
    losses: dict[str, torch.Tensor], info: DistInfo, step: int, epoch: int, ckpt: Path
) -> dict[str, float]:
    """Loss components averaged over ranks; a NaN/Inf anywhere stops every rank with one error."""
    keys = list(losses)
    vec = torch.stack([losses[k].detach().float().reshape(()) for k in keys])
    vec = all_reduce_sum(vec, info) / info.world
    values = dict(zip(keys, vec.tolist(), strict=True))
    bad = [k for k, v in values.items() if not math.isfinite(v) and k != "loss"]
    bad = bad or [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        shown = ", ".join(f"{k}={values[k]}" for k in keys)
        kept = (
            f"last good checkpoint kept: {ckpt}" if ckpt.exists() else "no checkpoint written yet"
        )
        raise NonFiniteLossError(
            f"non-finite loss at step {step + 1} (epoch {epoch + 1}) in {bad[0]} ({shown}); "
            f"{kept}. Lower --lr or check the data"
        )
    return values


def _summary(record: dict[str, Any]) -> str:
    parts = [f"epoch {record['epoch']} step {record['step']}"]
    for key in ("train_loss", "top1", "top5", "ema_top1", "ema_top5"):
        if key in record:
            parts.append(
                f"{key} {record[key]:.3f}" if "loss" in key else f"{key} {record[key]:.2f}"
            )
    return "  ".join(parts)
