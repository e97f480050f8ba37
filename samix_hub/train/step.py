"""One optimizer step of the loop (:mod:`samix_hub.train.loop`): mixed precision, the
backward passes a step function runs, the finite-loss check and the optimizer/schedule step.

A step function computes its losses and calls ``ctx.backward(loss)`` once per branch
(:mod:`samix_hub.train.scenario`); :func:`optimizer_backward` is that callable (loss scaling
under fp16). :func:`finite_losses` averages the returned components over ranks and stops every
rank with one :class:`NonFiniteLossError` before the optimizer touches the weights;
:func:`optimizer_step` then steps the optimizer and the schedule.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from samix_hub.errors import UserError
from samix_hub.train.checkpoint import TrainingState
from samix_hub.train.distributed import DistInfo, all_reduce_sum

__all__ = ["NonFiniteLossError", "amp", "optimizer_backward", "finite_losses", "optimizer_step"]


class NonFiniteLossError(UserError):
    """A NaN/Inf loss: the run stops before the optimizer step; the last checkpoint is kept."""


def amp(device: torch.device, enabled: bool) -> tuple[Callable[[], Any], Any]:
    """Autocast factory (bf16 where supported, else fp16 with a GradScaler) on CUDA only."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def optimizer_backward(state: TrainingState) -> Callable[[torch.Tensor], None]:
    """The ``ctx.backward`` of a step: ``loss.backward()``, scaled under an fp16 GradScaler."""
    scaler = state.scaler

    def backward(loss: torch.Tensor) -> None:
        (scaler.scale(loss) if scaler is not None else loss).backward()

    return backward


def optimizer_step(state: TrainingState) -> float:
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
