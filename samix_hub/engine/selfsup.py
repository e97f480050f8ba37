"""Self-supervised scenario (``--scenario ssl``): MoCo v2, MoCo + MixUp, MoCo + SAMix (docs/algorithm.md "Self-supervised SAMix"; openmixup ``models/selfsup/moco_samix.py``). Labels are never used for training; the
kNN monitor (:mod:`.knn`) uses them to evaluate.

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
  regulariser; only the mixer gets gradients. Backbone branch: MoCo InfoNCE + mixup InfoNCE on
  ``x_c`` mixed with the detached mask (λ_c, π_c); masks whose mean is further than 0.1 from
  λ_c are rescaled to mean λ_c.

Deviations and choices, documented here:
- The mixer takes one feature tensor and a partner index; to pair view 1 of i with view 2 of
  π(i) it runs on ``cat(f(v1), f(v2))`` with partners ``n + π`` (first half) and ``π⁻¹`` (second
  half) and the first half of its masks is used (the mixer's BatchNorm sees both views).
- Key momentum is MoCo's constant 0.999: ``--ema-end-momentum`` defaults to ``--ema-momentum``
  for ssl (give a larger end value for the engine's cosine schedule).
- The λ margin fallback of supervised SAMix (0.08) is not applied (section 3 names only the
  0.1 rescaling).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..data.specs import DataSource
from ..data.transforms import eval_transform
from ..errors import UserError
from ..losses import info_nce, mixup_info_nce, ssl_eta_balanced_loss
from ..mixing import mask_adjust
from ..mixing.sampling import DEFAULT_ALPHA, sample_lam, sample_partner
from ..models import Mixer
from .config import TrainConfig, resolve_method
from .distributed import DistInfo
from .ema import ema_momentum, make_ema, update_ema
from .knn import knn_accuracy
from .loader import eval_loader, mix_seed
from .moco import (
    KeyQueue,
    MoCoNet,
    TwoViews,
    default_queue_len,
    gather_rows,
    shuffled_forward,
    two_view_transform,
)
from .model import build_mixer, check_backbone
from .scenario import Scenario, StepContext, StepFn, TrainModules, register_scenario

__all__ = [
    "SSL_METHODS",
    "SSL_OPTIONS",
    "SelfSupScenario",
    "moco_step",
    "mixup_ssl_step",
    "samix_ssl_step",
    "rescale_far_masks",
    "build_moco",
]

SSL_METHODS = ("moco", "mixup", "samix")
#: Options of the ssl scenario (``TrainConfig.extra``) and their defaults; ``queue_len`` and
#: ``shuffle_bn_splits`` None: sized for the data set / 2 chunks in one process, 1 per rank.
SSL_OPTIONS: dict[str, Any] = {
    "queue_len": None,
    "temperature": 0.2,
    "proj_dim": 128,
    "shuffle_bn_splits": None,
    "knn_k": 200,
    "knn_t": 0.1,
}
#: Masks whose mean is further than this from λ are rescaled (docs/algorithm.md "Self-supervised SAMix").
MASK_TOLERANCE = 0.1
_DEFAULT_END = next(
    f.default for f in dataclasses.fields(TrainConfig) if f.name == "ema_end_momentum"
)


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


def _layout(x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if ctx.channels_last else x


def _keys(
    ctx: StepContext, x: torch.Tensor, call: int, features: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """L2-normalised keys of ``x`` (and stage features) from the key encoder, with shuffle-BN."""
    mods, cfg = ctx.modules, ctx.cfg
    key: MoCoNet = mods.ema  # type: ignore[assignment]
    info: DistInfo = mods.extra["dist"]
    # Same permutation on every rank: seeded by (seed, step, call), not by rank.
    gen = torch.Generator().manual_seed(mix_seed(cfg.seed, ctx.step, 0xB5, call))

    def encode(chunk: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with ctx.autocast():
            if features:
                emb, feat = key.forward_with_features(_layout(chunk, ctx), cfg.stage)
                return emb.float(), feat
            return (key(_layout(chunk, ctx)).float(),)

    outs = shuffled_forward(encode, x, gen, info, mods.extra["shuffle_bn_splits"])
    return F.normalize(outs[0], dim=1), (outs[1] if features else None)


def _enqueue(ctx: StepContext, keys: torch.Tensor) -> None:
    ctx.modules.extra["queue"].push(gather_rows(keys, ctx.modules.extra["dist"]))


def _queue(ctx: StepContext) -> torch.Tensor:
    return ctx.modules.extra["queue"].keys.clone()  # snapshot: negatives before this step's push


def _query_losses(
    ctx: StepContext,
    v1: torch.Tensor,
    mixed: torch.Tensor | None,
    k1: torch.Tensor | None,
    k2: torch.Tensor,
    queue: torch.Tensor,
    lam: float,
    partner: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    """Backbone losses: MoCo InfoNCE on ``v1`` (+ mixup InfoNCE on ``mixed``), each backward."""
    t = float(ctx.cfg.extra["temperature"])
    model = ctx.modules.call("model")
    out: dict[str, torch.Tensor] = {}
    with ctx.no_sync("model") if mixed is not None else contextlib.nullcontext():
        with ctx.autocast():
            q = model(_layout(v1, ctx))
        loss_moco = info_nce(q, k2, queue, t)
        ctx.backward(loss_moco, "model")
    out["loss_moco"] = loss_moco.detach()
    if mixed is not None:
        assert k1 is not None and partner is not None
        with ctx.autocast():
            q_mix = model(_layout(mixed, ctx))
        loss_mix = mixup_info_nce(q_mix, k2, k1[partner], queue, lam, t)
        ctx.backward(loss_mix, "model")
        out["loss_mix"] = loss_mix.detach()
    return out


def moco_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """MoCo v2: ``InfoNCE(q(v1), k(v2))`` against the queue, then enqueue ``k(v2)``."""
    v1, v2 = _views(images)
    k2, _ = _keys(ctx, v2, 2)
    out = _query_losses(ctx, v1, None, None, k2, _queue(ctx), 1.0, None)
    _enqueue(ctx, k2)
    return {"loss": out["loss_moco"], **out}


def mixup_ssl_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """MoCo + MixUp: MoCo InfoNCE + mixup InfoNCE of ``λ v1 + (1 - λ) v2[π]``."""
    v1, v2 = _views(images)
    g = ctx.rng
    lam = float(sample_lam(ctx.cfg.alpha, rng=g))  # type: ignore[arg-type]
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


def samix_ssl_step(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """MoCo + SAMix, label-free (docs/algorithm.md "Self-supervised SAMix"); see the module docstring."""
    cfg, mods, g = ctx.cfg, ctx.modules, ctx.rng
    mixer_raw: Mixer = mods.mixer  # type: ignore[assignment]
    key: MoCoNet = mods.ema  # type: ignore[assignment]
    t = float(cfg.extra["temperature"])
    v1, v2 = _views(images)
    n, size, dev = v1.shape[0], tuple(v1.shape[-2:]), v1.device
    lam_m = float(sample_lam(cfg.alpha, rng=g))  # type: ignore[arg-type]
    lam_c = float(sample_lam(cfg.alpha, rng=g))  # type: ignore[arg-type]
    pi_m = sample_partner(n, g).to(dev)
    pi_c = sample_partner(n, g).to(dev)
    queue = _queue(ctx)
    k1, f1 = _keys(ctx, v1, 1, features=True)
    k2, f2 = _keys(ctx, v2, 2, features=True)
    feats = torch.cat([f1, f2])  # type: ignore[list-item]

    with torch.no_grad(), ctx.autocast():
        mask_c = mixer_raw(feats, lam_c, _pair_partner(pi_c), size)[:n].float()
    mask_c = rescale_far_masks(mask_c, lam_c)

    # Mixer branch: through the frozen key encoder (no parameter of it requires grad).
    with ctx.autocast():
        mask_m = mods.call("mixer")(feats, lam_m, _pair_partner(pi_m), size)[:n].float()
        x_m = mask_m * v1 + (1 - mask_m) * v2[pi_m]
        z_m = key(_layout(x_m, ctx))
    loss_mixer = ssl_eta_balanced_loss(z_m, k2, k1[pi_m], queue, lam_m, cfg.eta, t)
    loss_mask = cfg.mask_loss_weight * mixer_raw.mask_loss(mask_m, lam_m)
    ctx.backward(loss_mixer + loss_mask, "mixer")
    del z_m, x_m, mask_m

    mixed = mask_c * v1 + (1 - mask_c) * v2[pi_c]
    out = _query_losses(ctx, v1, mixed, k1, k2, queue, lam_c, pi_c)
    _enqueue(ctx, k2)
    parts = {**out, "loss_mixer": loss_mixer.detach(), "loss_mask": loss_mask.detach()}
    return {"loss": sum(parts.values()), **parts}  # type: ignore[dict-item]


def build_moco(
    backbone: str,
    mean: Any,
    std: Any,
    in_chans: int,
    proj_dim: int = 128,
    seed: int | None = None,
) -> MoCoNet:
    """A freshly initialised query network (timm backbone without head + projection MLP)."""
    check_backbone(backbone)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=in_chans)
        if not hasattr(net, "forward_intermediates"):
            raise UserError(f"backbone {backbone!r}: timm model without forward_intermediates")
        return MoCoNet(net, mean, std, proj_dim)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SelfSupScenario(Scenario):
    """``--scenario ssl``: MoCo v2 query/key networks, a queue, and the mixer for ``samix``."""

    name = "ssl"
    methods = SSL_METHODS

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        resolve_method(cfg, SSL_METHODS, DEFAULT_ALPHA, kind="ssl ")
        if cfg.min_lr is None:
            cfg.min_lr = 0.0  # MoCo v2: cosine to 0
        if cfg.ema_end_momentum == _DEFAULT_END:
            cfg.ema_end_momentum = cfg.ema_momentum  # MoCo: constant key momentum
        extra = {**SSL_OPTIONS, **{k: v for k, v in cfg.extra.items() if v is not None}}
        checks = [
            (float(extra["temperature"]) > 0, f"--temperature must be > 0: {extra['temperature']}"),
            (int(extra["proj_dim"]) >= 1, f"--proj-dim must be >= 1: {extra['proj_dim']}"),
            (
                extra["queue_len"] is None or int(extra["queue_len"]) >= 1,
                f"--queue-len must be >= 1: {extra['queue_len']}",
            ),
            (int(extra["knn_k"]) >= 1, f"knn_k must be >= 1: {extra['knn_k']}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        cfg.extra = extra
        cfg.validate()
        return cfg

    def train_transform(self, cfg: TrainConfig, data: DataSource) -> Callable:
        return TwoViews(two_view_transform(tuple(data.image_size), data.channels))  # type: ignore[arg-type]

    def build(self, cfg: TrainConfig, data: DataSource, device: torch.device) -> TrainModules:
        extra = cfg.extra
        model = build_moco(
            cfg.backbone, data.mean, data.std, data.channels, int(extra["proj_dim"]), cfg.seed
        ).to(device)
        mods = TrainModules(model=model, ema=make_ema(model))  # key encoder = copy of the query
        world = _world()
        global_batch = cfg.batch_size * world
        if extra["queue_len"] is None:
            extra["queue_len"] = default_queue_len(len(data.train), global_batch)  # type: ignore[arg-type]
        if int(extra["queue_len"]) < global_batch:
            raise UserError(
                f"--queue-len {extra['queue_len']} is shorter than one global batch "
                f"({global_batch} keys are enqueued per step)"
            )
        if extra["shuffle_bn_splits"] is None:
            extra["shuffle_bn_splits"] = 2 if world == 1 else 1
        gen = torch.Generator().manual_seed(mix_seed(cfg.seed, 0x51))
        queue = KeyQueue(int(extra["proj_dim"]), int(extra["queue_len"]), gen).to(device)
        mods.extra.update(
            queue=queue,
            shuffle_bn_splits=int(extra["shuffle_bn_splits"]),
            dist=DistInfo(device=device),
        )
        if cfg.method == "samix":
            mods.mixer = build_mixer(
                model, data.channels, data.image_size, "samix", cfg.stage, cfg.seed, device
            )
        return mods

    def wrap(self, modules: TrainModules, info: DistInfo) -> None:
        modules.extra["dist"] = info
        super().wrap(modules, info)

    def step_fn(self, method: str) -> StepFn:
        steps = {"moco": moco_step, "mixup": mixup_ssl_step, "samix": samix_ssl_step}
        if method not in steps:
            raise ValueError(f"no ssl step function for method {method!r}")
        return steps[method]

    def run_config(self, cfg: TrainConfig, data: DataSource, mods: TrainModules) -> dict:
        mixer = mods.mixer.config.to_dict() if mods.mixer is not None else None  # type: ignore[union-attr]
        return {
            "num_classes": 0,  # an encoder without classifier head
            "class_names": [],
            "data_num_classes": data.num_classes,
            "data_class_names": [str(c) for c in data.class_names],
            "mixer": mixer,
            "generator": None,
            "embedding_dim": int(mods.model.net.num_features),  # type: ignore[arg-type]
            **{k: cfg.extra[k] for k in SSL_OPTIONS},
        }

    def after_step(self, mods: TrainModules, step: int, total: int, cfg: TrainConfig) -> None:
        m = ema_momentum(step, total, cfg.ema_momentum, cfg.ema_end_momentum)
        update_ema(mods.ema, mods.model, m, own_buffers=True)  # type: ignore[arg-type]

    def evaluate(self, mods, data, cfg, info, autocast, channels_last) -> dict[str, float]:  # type: ignore[override]
        """kNN monitor of the query backbone (pooled features, eval mode)."""
        if data.test is None or not data.num_classes:
            return {}
        tf = eval_transform(data.image_size)
        workers = min(cfg.workers, 2)
        train = eval_loader(data.train, tf, cfg.eval_batch_size, workers, info.rank, info.world)
        test = eval_loader(data.test, tf, cfg.eval_batch_size, workers, info.rank, info.world)
        model: MoCoNet = mods.model  # type: ignore[assignment]
        res = knn_accuracy(
            model.embed,
            train,
            test,
            data.num_classes,
            info.device,
            info,
            int(cfg.extra["knn_k"]),
            float(cfg.extra["knn_t"]),
            autocast,
            channels_last,
        )
        return {"knn_top1": res["knn_top1"], "knn_top5": res["knn_top5"]}

    def state_dict(self, modules: TrainModules) -> dict[str, Any]:
        """Contract keys (``model`` = query backbone, ``ema`` = key backbone, ``mixer``) plus the
        projection heads and the queue."""
        state = super().state_dict(modules)
        state["neck"] = modules.model.neck.state_dict()  # type: ignore[union-attr]
        state["ema_neck"] = modules.ema.neck.state_dict()  # type: ignore[union-attr]
        state["queue"] = modules.extra["queue"].state_dict()
        return state

    def load_state_dict(self, modules: TrainModules, state: dict[str, Any]) -> None:
        super().load_state_dict(modules, state)
        modules.model.neck.load_state_dict(state["neck"])  # type: ignore[union-attr]
        modules.ema.neck.load_state_dict(state["ema_neck"])  # type: ignore[union-attr]
        modules.extra["queue"].load_state_dict(state["queue"])


register_scenario("ssl", SelfSupScenario)
