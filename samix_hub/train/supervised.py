"""Supervised scenario: one step function per method (docs/algorithm.md: "Online supervised SAMix", "SAMix^P", "Baselines").

- ``vanilla``: cross-entropy.
- ``mixup`` / ``cutmix``: mixup cross-entropy on the mixed batch (λ ~ Beta(1, 1) / Beta(0.2, 0.2)).
- ``samix`` (online SAMix, docs/algorithm.md "Online supervised SAMix") and ``automix`` (the same loop with the AutoMix mixer and
  plain mixup CE for the mixer, docs/algorithm.md "The mixer").
- ``samix-p``: a frozen generator mixes the batch (docs/algorithm.md "SAMix^P: the frozen generator"); ``--clean-loss`` adds the clean CE.

Deviation from the reference (openmixup ``AutoMixup``): it trains two linear heads on the shared
backbone (``head_one`` for the clean CE and ``head_mix`` for the mixup CE; the EMA copy of
``head_mix`` scores the mixer). Here the classifier is one timm model with one head, which is what
a published backbone is; both losses train that head and its EMA scores the mixer.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F

from samix_hub.data.specs import DataSource
from samix_hub.mixing import apply_mask, finish_mask
from samix_hub.mixing.losses import mixer_losses, mixup_cross_entropy
from samix_hub.mixing.sampling import sample_lam, sample_partner
from samix_hub.models.classifier import build_classifier, build_mixer
from samix_hub.train.config import SL_METHODS, TrainConfig
from samix_hub.train.ema import ema_momentum, make_ema, update_ema
from samix_hub.train.evaluate import evaluate_on_test, mixer_statistics
from samix_hub.train.frozen import BATCH_MIXING, build_batch_mixing
from samix_hub.train.scenario import (
    ClassifierModules,
    EvalContext,
    Scenario,
    StepContext,
    StepFn,
    register_scenario,
    to_layout,
    total_loss,
)

__all__ = [
    "SupervisedScenario",
    "vanilla_step",
    "mix_step",
    "online_samix_step",
    "sl_step_fn",
    "update_classifier_ema",
    "evaluate_classifier",
]


def vanilla_step(
    ctx: StepContext[ClassifierModules], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    with ctx.autocast():
        logits = ctx.modules.call("model")(images)
    loss = F.cross_entropy(logits.float(), labels)
    ctx.backward(loss)
    return {"loss": loss.detach()}


def mix_step(
    ctx: StepContext[ClassifierModules], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """MixUp, CutMix and SAMix^P: mix (no grad), then mixup CE on the mixed batch only.

    ``--clean-loss`` (SAMix^P) adds the clean-batch CE of the online recipe (docs/algorithm.md "SAMix^P: the frozen generator").
    """
    method = ctx.modules.mix_method
    if method is None:
        raise RuntimeError(f"{ctx.cfg.method}: no mixing method built")
    mixed = method(images, labels, rng=ctx.rng)
    model = ctx.modules.call("model")
    clean = ctx.cfg.clean_loss and ctx.cfg.method == "samix-p"
    out: dict[str, torch.Tensor] = {}
    with ctx.no_sync("model") if clean else contextlib.nullcontext():
        with ctx.autocast():
            logits = model(to_layout(mixed.images, ctx))
        loss_mix = mixup_cross_entropy(logits, mixed.label_a, mixed.label_b, mixed.lam)
        ctx.backward(loss_mix)
    out["loss_mix"] = loss_mix.detach()
    total = out["loss_mix"]
    if clean:
        with ctx.autocast():
            logits = model(images)
        loss_clean = F.cross_entropy(logits.float(), labels)
        ctx.backward(loss_clean)
        out["loss_clean"] = loss_clean.detach()
        total = total + out["loss_clean"]
    return {"loss": total, **out}


def online_samix_step(
    ctx: StepContext[ClassifierModules], images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One online SAMix / AutoMix step (docs/algorithm.md "Online supervised SAMix", openmixup ``AutoMixup``).

    1. λ_m, λ_c ~ Beta(α, α), two permutations π_m, π_c (explicit generator).
    2. f = stage-3 features of the EMA classifier (no grad; it stays in train mode, as the
       reference's ``backbone_k``, so BatchNorm uses batch statistics).
    3. mask_m = mixer(f, λ_m, π_m) with grad; mask_c = mixer(f, λ_c, π_c) without, then optional
       mask_adjust (probability ``--mask-adjust``) and the λ margin fallback.
    4. Mixer loss: the mixed batch through the frozen EMA classifier, η-balanced loss (AutoMix:
       mixup CE) with ``(y, y[π_m], λ_m)`` + 0.1 x mask regulariser; only the mixer gets grads.
    5. Classifier loss: mixup CE on the batch mixed with mask_c + CE on the clean batch.
    The three backward passes run one after another (see :mod:`samix_hub.train.scenario`).
    """
    cfg, mods, g = ctx.cfg, ctx.modules, ctx.rng
    mixer_raw, ema = mods.require_mixer(), mods.require_ema()
    n, size = images.shape[0], tuple(images.shape[-2:])
    dev = images.device
    lam_m = float(sample_lam(ctx.alpha, rng=g))
    lam_c = float(sample_lam(ctx.alpha, rng=g))
    pi_m = sample_partner(n, g).to(dev)
    pi_c = sample_partner(n, g).to(dev)
    adjust = bool(torch.rand((), generator=g) < cfg.mask_adjust)

    with torch.no_grad(), ctx.autocast():
        feats = ema.features(images, cfg.stage)
        mask_c = mixer_raw(feats, lam_c, pi_c, size).float()
    mask_c = finish_mask(mask_c, lam_c, adjust, cfg.lam_margin)

    # Mixer branch: grads reach the mixer only (EMA parameters do not require grad).
    with ctx.autocast():
        mask_m = mods.call("mixer")(feats, lam_m, pi_m, size).float()
        logits_m = ema(to_layout(apply_mask(images, mask_m, pi_m), ctx))
    loss_mixer, loss_mask = mixer_losses(
        logits_m, mask_m, labels, labels[pi_m], lam_m, mixer_raw.config,
        eta=cfg.eta, weight=cfg.mask_loss_weight,
    )  # fmt: skip
    ctx.backward(loss_mixer + loss_mask)
    del logits_m, mask_m

    model = mods.call("model")
    with ctx.no_sync("model"):
        with ctx.autocast():
            logits = model(to_layout(apply_mask(images, mask_c, pi_c), ctx))
        loss_mix = mixup_cross_entropy(logits, labels, labels[pi_c], lam_c)
        ctx.backward(loss_mix)
    with ctx.autocast():
        logits = model(images)
    loss_clean = F.cross_entropy(logits.float(), labels)
    ctx.backward(loss_clean)
    parts = {
        "loss_mix": loss_mix.detach(),
        "loss_clean": loss_clean.detach(),
        "loss_mixer": loss_mixer.detach(),
        "loss_mask": loss_mask.detach(),
    }
    return {"loss": total_loss(parts), **parts}


class SupervisedScenario(Scenario[ClassifierModules]):
    """``--scenario sl``: a timm classifier (+ EMA and mixer for AutoMix/SAMix)."""

    name = "sl"
    methods: tuple[str, ...] = SL_METHODS

    def build(self, cfg: TrainConfig, data: DataSource, device: torch.device) -> ClassifierModules:
        model = build_classifier(
            cfg.backbone, data.num_classes, data.mean, data.std, data.channels, seed=cfg.seed
        ).to(device)
        # Every method tracks an EMA copy (evaluated as ema_top1); SAMix/AutoMix also use it.
        mods = ClassifierModules(model=model, ema=make_ema(model))
        m = cfg.method
        if m in ("automix", "samix"):
            mods.mixer = build_mixer(
                model, data.channels, data.image_size, m, cfg.stage, cfg.seed, device,
                calibration=cfg.calibration, variance=cfg.mask_variance,
            )  # fmt: skip
        build_batch_mixing(mods, cfg, data, device, self.sources, finetune=False)
        return mods

    def param_groups(self, mods: ClassifierModules, cfg: TrainConfig) -> list[dict[str, Any]]:
        """The mixer at ``--mixer-lr`` when it differs from ``--lr`` (openmixup's ImageNet
        recipes give the mixer its own schedule; docs/algorithm.md "Online supervised SAMix"), else one group."""
        if mods.mixer is None or cfg.mixer_lr is None or cfg.mixer_lr == cfg.lr:
            return super().param_groups(mods, cfg)
        mixer = [p for p in mods.mixer.parameters() if p.requires_grad]
        model = [p for p in mods.model.parameters() if p.requires_grad]
        groups = [{"params": model, "lr": cfg.lr}, {"params": mixer, "lr": cfg.mixer_lr}]
        return [g for g in groups if g["params"]]

    def step_fn(self, method: str) -> StepFn[ClassifierModules]:
        return sl_step_fn(method)

    def run_config(
        self, cfg: TrainConfig, data: DataSource, mods: ClassifierModules
    ) -> dict[str, Any]:
        mixer = mods.mixer.config.to_dict() if mods.mixer is not None else None
        return {
            "num_classes": data.num_classes,
            "mixer": mixer,
            "generator": mods.generator_provenance,
        }

    def after_step(self, mods: ClassifierModules, step: int, total: int, cfg: TrainConfig) -> None:
        update_classifier_ema(mods, step, total, cfg)

    def evaluate(self, mods: ClassifierModules, ev: EvalContext) -> dict[str, float]:
        return evaluate_classifier(mods, ev)


def sl_step_fn(method: str) -> StepFn[ClassifierModules]:
    """The step function of an ``sl`` method (also a fine-tune's, but for ``mixed``)."""
    if method == "vanilla":
        return vanilla_step
    if method in BATCH_MIXING:
        return mix_step
    if method in ("automix", "samix"):
        return online_samix_step
    raise ValueError(f"no step function for method {method!r}")


def update_classifier_ema(mods: ClassifierModules, step: int, total: int, cfg: TrainConfig) -> None:
    """The EMA copy follows the classifier (AutoMix/SAMix: with its own BatchNorm buffers)."""
    if mods.ema is None:
        return
    m = ema_momentum(step, total, cfg.ema_momentum, cfg.ema_end_momentum)
    update_ema(mods.ema, mods.model, m, own_buffers=cfg.method in ("automix", "samix"))


def evaluate_classifier(mods: ClassifierModules, ev: EvalContext) -> dict[str, float]:
    """Top-1/top-5 and test loss of the classifier and its EMA copy (``ema_`` keys), and the
    mixer's mask statistics when the run trains one."""
    data, cfg, info = ev.data, ev.cfg, ev.info
    if data.test is None:
        return {}
    metrics: dict[str, float] = {}
    for prefix, module in (("", mods.model), ("ema_", mods.ema)):
        if module is None:
            continue
        res = evaluate_on_test(module, ev)
        metrics.update({f"{prefix}{k}": v for k, v in res.items() if k != "test_images"})
        metrics["test_images"] = res["test_images"]
    if mods.mixer is not None:  # the generator's own statistics, as it will be exported
        metrics.update(mixer_statistics(mods, data, cfg.stage, info.device, mods.ema))
    return metrics


register_scenario("sl", SupervisedScenario)
