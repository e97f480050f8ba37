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
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from samix_hub.data.specs import DataSource
from samix_hub.errors import UserError
from samix_hub.mixing import mask_adjust
from samix_hub.mixing.losses import info_nce, mixup_info_nce, ssl_mixer_losses
from samix_hub.mixing.sampling import DEFAULT_ALPHA, sample_lam, sample_partner
from samix_hub.models.classifier import build_mixer
from samix_hub.train.config import TrainConfig, resolve_method
from samix_hub.train.distributed import DistInfo
from samix_hub.train.ema import ema_momentum, make_ema, update_ema
from samix_hub.train.knn import knn_accuracy
from samix_hub.train.loader import dataset_len, eval_loader, eval_transform, mix_seed
from samix_hub.train.moco import (
    KeyQueue,
    MoCoNet,
    TwoViews,
    build_moco,
    default_queue_len,
    gather_rows,
    shuffled_forward,
    two_view_transform,
)
from samix_hub.train.scenario import (
    Scenario,
    StepContext,
    StepFn,
    TrainModules,
    register_scenario,
    total_loss,
)

SslContext = StepContext["SslModules"]

__all__ = [
    "SSL_METHODS",
    "SslModules",
    "SelfSupScenario",
    "moco_step",
    "mixup_ssl_step",
    "samix_ssl_step",
    "rescale_far_masks",
    "build_moco",
]

SSL_METHODS = ("moco", "mixup", "samix")
#: Masks whose mean is further than this from λ are rescaled (docs/algorithm.md "Self-supervised SAMix").
MASK_TOLERANCE = 0.1
_DEFAULT_END = TrainConfig.ema_end_momentum  # the dataclass default


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


def _layout(x: torch.Tensor, ctx: SslContext) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if ctx.channels_last else x


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
                emb, feat = key.forward_with_features(_layout(chunk, ctx), cfg.stage)
                return emb.float(), feat
            return (key(_layout(chunk, ctx)).float(),)

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
            q = model(_layout(v1, ctx))
        loss_moco = info_nce(q, k2, queue, t)
        ctx.backward(loss_moco)
    out["loss_moco"] = loss_moco.detach()
    if mixed is not None:
        assert k1 is not None and partner is not None
        with ctx.autocast():
            q_mix = model(_layout(mixed, ctx))
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
        z_m = key(_layout(x_m, ctx))
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


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SelfSupScenario(Scenario[SslModules]):
    """``--scenario ssl``: MoCo v2 query/key networks, a queue, and the mixer for ``samix``."""

    name = "ssl"
    methods: tuple[str, ...] = SSL_METHODS

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        resolve_method(cfg, SSL_METHODS, DEFAULT_ALPHA, kind="ssl ")
        if cfg.min_lr is None:
            cfg.min_lr = 0.0  # MoCo v2: cosine to 0
        if cfg.ema_end_momentum == _DEFAULT_END:
            cfg.ema_end_momentum = cfg.ema_momentum  # MoCo: constant key momentum
        opts = cfg.ssl
        checks = [
            (float(opts.temperature) > 0, f"--temperature must be > 0: {opts.temperature}"),
            (int(opts.proj_dim) >= 1, f"--proj-dim must be >= 1: {opts.proj_dim}"),
            (
                opts.queue_len is None or int(opts.queue_len) >= 1,
                f"--queue-len must be >= 1: {opts.queue_len}",
            ),
            (int(opts.knn_k) >= 1, f"knn_k must be >= 1: {opts.knn_k}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        cfg.validate()
        return cfg

    def train_transform(
        self, cfg: TrainConfig, data: DataSource
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        h, w = data.image_size
        return TwoViews(two_view_transform((h, w), data.channels))

    def build(self, cfg: TrainConfig, data: DataSource, device: torch.device) -> SslModules:
        opts = cfg.ssl
        model = build_moco(
            cfg.backbone, data.mean, data.std, data.channels, int(opts.proj_dim), cfg.seed
        ).to(device)
        world = _world()
        global_batch = cfg.batch_size * world
        if opts.queue_len is None:
            opts.queue_len = default_queue_len(dataset_len(data.train), global_batch)
        if int(opts.queue_len) < global_batch:
            raise UserError(
                f"--queue-len {opts.queue_len} is shorter than one global batch "
                f"({global_batch} keys are enqueued per step)"
            )
        if opts.shuffle_bn_splits is None:
            opts.shuffle_bn_splits = 2 if world == 1 else 1
        gen = torch.Generator().manual_seed(mix_seed(cfg.seed, 0x51))
        queue = KeyQueue(int(opts.proj_dim), int(opts.queue_len), gen).to(device)
        mixer = None
        if cfg.method == "samix":
            mixer = build_mixer(
                model, data.channels, data.image_size, "samix", cfg.stage, cfg.seed, device
            )
        return SslModules(
            model=model,
            ema=make_ema(model),  # key encoder = copy of the query
            mixer=mixer,
            queue=queue,
            shuffle_bn_splits=int(opts.shuffle_bn_splits),
            dist=DistInfo(device=device),
        )

    def wrap(self, modules: SslModules, info: DistInfo) -> None:
        modules.dist = info
        super().wrap(modules, info)

    def step_fn(self, method: str) -> StepFn[SslModules]:
        steps: dict[str, StepFn[SslModules]] = {
            "moco": moco_step,
            "mixup": mixup_ssl_step,
            "samix": samix_ssl_step,
        }
        if method not in steps:
            raise ValueError(f"no ssl step function for method {method!r}")
        return steps[method]

    def run_config(self, cfg: TrainConfig, data: DataSource, mods: SslModules) -> dict[str, Any]:
        mixer = mods.mixer.config.to_dict() if mods.mixer is not None else None
        return {
            "num_classes": 0,  # an encoder without classifier head
            "class_names": [],
            "data_num_classes": data.num_classes,
            "data_class_names": [str(c) for c in data.class_names],
            "mixer": mixer,
            "generator": None,
            "embedding_dim": mods.model.embedding_dim,
            **dataclasses.asdict(cfg.ssl),
        }

    def after_step(self, mods: SslModules, step: int, total: int, cfg: TrainConfig) -> None:
        m = ema_momentum(step, total, cfg.ema_momentum, cfg.ema_end_momentum)
        update_ema(mods.ema, mods.model, m, own_buffers=True)

    def evaluate(
        self,
        mods: SslModules,
        data: DataSource,
        cfg: TrainConfig,
        info: DistInfo,
        autocast: Callable[[], contextlib.AbstractContextManager[Any]],
        channels_last: bool,
    ) -> dict[str, float]:
        """kNN monitor of the query backbone (pooled features, eval mode)."""
        if data.test is None or not data.num_classes:
            return {}
        tf = eval_transform(data.image_size)
        workers = min(cfg.workers, 2)
        train = eval_loader(data.train, tf, cfg.eval_batch_size, workers, info.rank, info.world)
        test = eval_loader(data.test, tf, cfg.eval_batch_size, workers, info.rank, info.world)
        res = knn_accuracy(
            mods.model.embed,
            train,
            test,
            data.num_classes,
            info.device,
            info,
            int(cfg.ssl.knn_k),
            float(cfg.ssl.knn_t),
            autocast,
            channels_last,
        )
        return {"knn_top1": res["knn_top1"], "knn_top5": res["knn_top5"]}

    def state_dict(self, modules: SslModules) -> dict[str, Any]:
        """Contract keys (``model`` = query backbone, ``ema`` = key backbone, ``mixer``) plus the
        projection heads and the queue."""
        state = super().state_dict(modules)
        state["neck"] = modules.model.neck.state_dict()
        state["ema_neck"] = modules.ema.neck.state_dict()
        state["queue"] = modules.queue.state_dict()
        return state

    def load_state_dict(self, modules: SslModules, state: dict[str, Any]) -> None:
        super().load_state_dict(modules, state)
        modules.model.neck.load_state_dict(state["neck"])
        modules.ema.neck.load_state_dict(state["ema_neck"])
        modules.queue.load_state_dict(state["queue"])


register_scenario("ssl", SelfSupScenario)
