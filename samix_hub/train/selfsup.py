"""Self-supervised scenario (``--scenario ssl``): MoCo v2, MoCo + MixUp, MoCo + SAMix
(docs/algorithm.md "Self-supervised SAMix"). Labels are never used for training; the kNN monitor
(:mod:`.knn`) uses them to evaluate. What one step does: :mod:`.selfsup_steps`.

Deviations and choices, documented here:
- Key momentum is MoCo's constant 0.999: ``--ema-end-momentum`` defaults to ``--ema-momentum``
  for ssl (give a larger end value for the engine's cosine schedule).
- The λ margin fallback of supervised SAMix (0.08) is not applied (docs/algorithm.md
  "Self-supervised SAMix" names only the 0.1 rescaling).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from samix_hub.data.specs import DataSource
from samix_hub.errors import UserError
from samix_hub.mixing.sampling import DEFAULT_ALPHA
from samix_hub.models.classifier import build_mixer
from samix_hub.train.config import TrainConfig, resolve_method
from samix_hub.train.distributed import DistInfo
from samix_hub.train.ema import ema_momentum, make_ema, update_ema
from samix_hub.train.knn import knn_accuracy
from samix_hub.train.loader import dataset_len, eval_loader, eval_transform, mix_seed
from samix_hub.train.moco import (
    KeyQueue,
    TwoViews,
    build_moco,
    default_queue_len,
    two_view_transform,
)
from samix_hub.train.scenario import EvalContext, Scenario, StepFn, register_scenario
from samix_hub.train.selfsup_steps import (
    SslModules,
    mixup_ssl_step,
    moco_step,
    samix_ssl_step,
)

__all__ = [
    "SSL_METHODS",
    "SslModules",
    "SelfSupScenario",
    "build_moco",
]

SSL_METHODS = ("moco", "mixup", "samix")
_DEFAULT_END = TrainConfig.ema_end_momentum  # the dataclass default


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

    def evaluate(self, mods: SslModules, ev: EvalContext) -> dict[str, float]:
        """kNN monitor of the query backbone (pooled features, eval mode)."""
        data, cfg, info = ev.data, ev.cfg, ev.info
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
            ev.autocast,
            ev.channels_last,
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
