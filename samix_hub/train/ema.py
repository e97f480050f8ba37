"""The EMA ("momentum") classifier of online SAMix and its momentum schedule (docs/algorithm.md "Online supervised SAMix").

Reference (openmixup ``AutoMixup.momentum_update`` + ``CosineScheduleHook(end_momentum=0.999999,
adjust_scope=[0.1, 1.0], warming_up="constant")``): momentum ``m0`` (0.999) for the first 10 % of
the iterations, then ``m = m_end - (m_end - m0) * (cos(pi * t / T) + 1) / 2`` (``t`` counts from the
start of training, as the hook does, so the schedule resumes at its 10 % value rather than at m0).
Only parameters are averaged, as the reference does: with ``own_buffers`` the EMA copy keeps the
BatchNorm statistics of its own forward passes (online SAMix/AutoMix run it in train mode);
otherwise (baselines, where the copy never runs in train mode) buffers are averaged too.
"""

from __future__ import annotations

import copy
import math
from typing import TypeVar

import torch
import torch.nn as nn

ModuleT = TypeVar("ModuleT", bound=nn.Module)

__all__ = ["ema_momentum", "make_ema", "update_ema"]


def ema_momentum(
    step: int, total: int, base: float = 0.999, end: float = 0.999999, warm: float = 0.1
) -> float:
    """Momentum used after optimizer step ``step`` (0-based) of ``total``."""
    if not 0.0 <= base <= end <= 1.0:
        raise ValueError(f"need 0 <= base ({base}) <= end ({end}) <= 1")
    total = max(int(total), 1)
    if step < int(total * warm):
        return base
    return end - (end - base) * (math.cos(math.pi * min(step, total) / total) + 1) / 2


def make_ema(model: ModuleT) -> ModuleT:
    """A frozen deep copy: no parameter requires grad (it only moves by :func:`update_ema`)."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, momentum: float, own_buffers: bool) -> None:
    """``ema = m * ema + (1 - m) * model`` for parameters (and float buffers unless ``own_buffers``)."""
    e_params: list[torch.Tensor] = [p for p in ema.parameters()]
    m_params: list[torch.Tensor] = [p.detach() for p in model.parameters()]
    if len(e_params) != len(m_params):
        raise ValueError("EMA copy and model have different parameters")
    torch._foreach_lerp_(e_params, m_params, 1.0 - momentum)
    if own_buffers:
        return
    for b_e, b_m in zip(ema.buffers(), model.buffers(), strict=True):
        if b_e.dtype.is_floating_point:
            b_e.lerp_(b_m, 1.0 - momentum)
        else:
            b_e.copy_(b_m)
