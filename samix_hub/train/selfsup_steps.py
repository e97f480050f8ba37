"""The step functions of ``--scenario ssl`` (:mod:`samix_hub.train.selfsup`): MoCo v2, MoCo +
MixUp, MoCo + SAMix (docs/algorithm.md "Self-supervised SAMix"; openmixup
``models/selfsup/moco_samix.py``), and the modules they read (:class:`SslModules`).

Every step takes two MoCo v2 views ``v1, v2`` of each image (:func:`.moco.two_view_transform`).
Keys ``k1, k2`` come from the momentum key encoder with shuffle-BN, L2-normalised; the queue
holds the negatives; ``T`` is the temperature.

- ``moco``: ``InfoNCE(q(v1), k2, queue)``; ``k2`` is enqueued (MoCo v2, asymmetric loss).
- ``mixup``: + mixup InfoNCE of ``x = λ v1 + (1 - λ) v2[π]``, λ ~ Beta(1, 1): its query is pulled
  to ``k2`` (sample i's other view) with weight λ and to ``k1[π]`` (π(i)'s other view) with
  weight 1 - λ, against the queue.
- ``samix``: the same pairs mixed by the learned mixer. The mixer reads the key encoder's stage-3
  features of both views (from the same pass that gives the keys). Mixer branch: ``x_m`` (mask
  with grad, λ_m, π_m) through the frozen key encoder, η-balanced SSL loss (local: 2-way contrast
  between ``k2`` and ``k1[π]``; global: InfoNCE of each against the queue) + 0.1 x the mask
  regulariser (:func:`samix_hub.mixing.losses.ssl_mixer_losses`); only the mixer gets
  gradients. Backbone branch: MoCo InfoNCE + mixup InfoNCE on ``x_c`` mixed with the detached
  mask (λ_c, π_c); masks whose mean is further than 0.1 from λ_c are rescaled to mean λ_c.

The mixer takes one feature tensor and a partner index; to pair view 1 of i with view 2 of π(i)
it runs on ``cat(f(v1), f(v2))`` with partners ``n + π`` (first half) and ``π⁻¹`` (second half)
and the first half of its masks is used (the mixer's BatchNorm sees both views).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samix_hub.mixing import mask_adjust
from samix_hub.mixing.losses import info_nce, mixup_info_nce, ssl_mixer_losses
from samix_hub.mixing.sampling import sample_lam, sample_partner
from samix_hub.train.distributed import DistInfo
from samix_hub.train.loader import mix_seed
from samix_hub.train.moco import KeyQueue, MoCoNet, gather_rows, shuffled_forward
from samix_hub.train.scenario import StepContext, TrainModules, to_layout, total_loss

__all__ = [
    "SslModules",
    "MASK_TOLERANCE",
    "moco_step",
    "mixup_ssl_step",
    "samix_ssl_step",
    "rescale_far_masks",
]

SslContext = StepContext["SslModules"]

#: Masks whose mean is further than this from λ are rescaled (docs/algorithm.md "Self-supervised SAMix").
MASK_TOLERANCE = 0.1


@dataclass(kw_only=True)
class SslModules(TrainModules):
    """MoCo v2: the query network ``model``, the key network ``ema`` (its momentum copy), the
    queue of negative keys, the shuffle-BN chunk count, the ranks (``dist``) and, for
    ``samix``, the mixer."""

    model: MoCoNet
    ema: MoCoNet
    queue: KeyQueue
    shuffle_bn_splits: int
    dist: DistInfo


def rescale_far_masks(
    mask: torch.Tensor, lam: float | torch.Tensor, tol: float = MASK_TOLERANCE
) -> torch.Tensor:
    """Masks whose mean is more than ``tol`` from λ are rescaled to mean λ; others are kept."""
    lam_v = torch.as_tensor(lam, dtype=mask.dtype, device=mask.device).reshape(-1, 1, 1, 1)
    far = (mask.mean(dim=(1, 2, 3), keepdim=True) - lam_v).abs() > tol
    return torch.where(far, mask_adjust(mask, lam), mask)


def _views(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if images.dim() != 5 or images.shape[1] != 2:
        raise ValueError(f"ssl steps take N x 2 x C x H x W view pairs, got {tuple(images.shape)}")
    return images[:, 0].contiguous(), images[:, 1].contiguous()


def _keys(
    ctx: SslContext, x: torch.Tensor, call: int, features: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """L2-normalised keys of ``x`` (and stage features) from the key encoder, with shuffle-BN."""
    mods, cfg = ctx.modules, ctx.cfg
    key, info = mods.ema, mods.dist
    # Same permutation on every rank: seeded by (seed, step, call), not by rank.
    gen = torch.Generator().manual_seed(mix_seed(cfg.seed, ctx.step, 0xB5, call))

    def encode(chunk: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with ctx.autocast():
            if features:
                emb, feat = key.forward_with_features(to_layout(chunk, ctx), cfg.stage)
                return emb.float(), feat
            return (key(to_layout(chunk, ctx)).float(),)

    outs = shuffled_forward(encode, x, gen, info, mods.shuffle_bn_splits)
    return F.normalize(outs[0], dim=1), (outs[1] if features else None)


def _enqueue(ctx: SslContext, keys: torch.Tensor) -> None:
    ctx.modules.queue.push(gather_rows(keys, ctx.modules.dist))


def _queue(ctx: SslContext) -> torch.Tensor:
    return ctx.modules.queue.keys.clone()  # snapshot: negatives before this step's push


def _query_losses(
    ctx: SslContext,
    v1: torch.Tensor,
    mixed: torch.Tensor | None,
    k1: torch.Tensor | None,
    k2: torch.Tensor,
    queue: torch.Tensor,
    lam: float,
    partner: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Backbone losses: MoCo InfoNCE on ``v1`` (+ mixup InfoNCE on ``mixed``), each backward."""
    t = float(ctx.cfg.ssl.temperature)
    model = ctx.modules.call("model")
    out: dict[str, torch.Tensor] = {}
    with ctx.no_sync("model") if mixed is not None else contextlib.nullcontext():
        with ctx.autocast():
            q = model(to_layout(v1, ctx))
        loss_moco = info_nce(q, k2, queue, t)
        ctx.backward(loss_moco)
    out["loss_moco"] = loss_moco.detach()
    if mixed is not None:
        assert k1 is not None and partner is not None
        with ctx.autocast():
            q_mix = model(to_layout(mixed, ctx))
        loss_mix = mixup_info_nce(q_mix, k2, k1[partner], queue, lam, t)
        ctx.backward(loss_mix)
        out["loss_mix"] = loss_mix.detach()
    return out


def moco_step(
    ctx: SslContext, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MoCo v2: ``InfoNCE(q(v1), k(v2))`` against the queue, then enqueue ``k(v2)``."""
    v1, v2 = _views(images)
    k2, _ = _keys(ctx, v2, 2)
    out = _query_losses(ctx, v1, None, None, k2, _queue(ctx), 1.0, None)
    _enqueue(ctx, k2)
    return {"loss": out["loss_moco"], **out}


def mixup_ssl_step(
    ctx: SslContext, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MoCo + MixUp: MoCo InfoNCE + mixup InfoNCE of ``λ v1 + (1 - λ) v2[π]``."""
    v1, v2 = _views(images)
    g = ctx.rng
    lam = float(sample_lam(ctx.alpha, rng=g))
    pi = sample_partner(v1.shape[0], g).to(v1.device)
    k1, _ = _keys(ctx, v1, 1)
    k2, _ = _keys(ctx, v2, 2)
    mixed = lam * v1 + (1 - lam) * v2[pi]
    out = _query_losses(ctx, v1, mixed, k1, k2, _queue(ctx), lam, pi)
    _enqueue(ctx, k2)
    return {"loss": out["loss_moco"] + out["loss_mix"], **out}


def _pair_partner(pi: torch.Tensor) -> torch.Tensor:
    """Partners in ``cat(f(v1), f(v2))``: row i (view 1 of i) <-> row n + π(i) (view 2 of π(i))."""
    n = pi.shape[0]
    return torch.cat([pi + n, torch.argsort(pi)])


def samix_ssl_step(
    ctx: SslContext, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MoCo + SAMix, label-free (docs/algorithm.md "Self-supervised SAMix"); see the module docstring."""
    cfg, mods, g = ctx.cfg, ctx.modules, ctx.rng
    mixer_raw, key = mods.require_mixer(), mods.ema
    t = float(cfg.ssl.temperature)
    v1, v2 = _views(images)
    n, size, dev = v1.shape[0], tuple(v1.shape[-2:]), v1.device
    lam_m = float(sample_lam(ctx.alpha, rng=g))
    lam_c = float(sample_lam(ctx.alpha, rng=g))
    pi_m = sample_partner(n, g).to(dev)
    pi_c = sample_partner(n, g).to(dev)
    queue = _queue(ctx)
    k1, f1 = _keys(ctx, v1, 1, features=True)
    k2, f2 = _keys(ctx, v2, 2, features=True)
    assert f1 is not None and f2 is not None
    feats = torch.cat([f1, f2])

    with torch.no_grad(), ctx.autocast():
        mask_c = mixer_raw(feats, lam_c, _pair_partner(pi_c), size)[:n].float()
    mask_c = rescale_far_masks(mask_c, lam_c)

    # Mixer branch: through the frozen key encoder (no parameter of it requires grad).
    with ctx.autocast():
        mask_m = mods.call("mixer")(feats, lam_m, _pair_partner(pi_m), size)[:n].float()
        x_m = mask_m * v1 + (1 - mask_m) * v2[pi_m]
        z_m = key(to_layout(x_m, ctx))
    loss_mixer, loss_mask = ssl_mixer_losses(
        z_m, k2, k1[pi_m], queue, mask_m, lam_m, mixer_raw.config,
        eta=cfg.eta, weight=cfg.mask_loss_weight, temperature=t,
    )  # fmt: skip
    ctx.backward(loss_mixer + loss_mask)
    del z_m, x_m, mask_m

    mixed = mask_c * v1 + (1 - mask_c) * v2[pi_c]
    out = _query_losses(ctx, v1, mixed, k1, k2, queue, lam_c, pi_c)
    _enqueue(ctx, k2)
    parts = {**out, "loss_mixer": loss_mixer.detach(), "loss_mask": loss_mask.detach()}
    return {"loss": total_loss(parts), **parts}
