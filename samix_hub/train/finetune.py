"""Fine-tuning pretrained backbones: SAMix^P with a frozen generator, offline mixed data, baselines.

docs/algorithm.md "SAMix^P": a published generator makes learned mixup cheap on a new data set. Each step
(``samix-p``): λ ~ Beta(α, α) (α = 2), a permutation, ONE generator pass for the mask (the frozen
generator, eval mode, no gradients, same device; at another image size than its native one it
computes the mask at native size and upsamples it), the 0.08 λ margin fallback, optional
mask_adjust, then mixup CE with labels ``(y, y[π], λ)`` on the mixed batch only (``--clean-loss``
adds the clean CE of the online recipe). ``vanilla`` / ``mixup`` / ``cutmix`` are the baselines of
docs/algorithm.md "Baselines" at the same budget; ``mixed`` trains on an offline set from ``samix-hub mix``.

This is a scenario of the one training loop (:mod:`samix_hub.train.loop`), registered as
``"finetune"``: the loop gives evaluation every epoch, ``metrics.jsonl``, progress, atomic
checkpoints, ``--resume``, torchrun DDP and AMP on CUDA; what differs from ``--scenario sl`` is
only the model (a pretrained backbone with a new head, its input size and normalisation) and,
for ``mixed``, the training set.

Deviations: the offline ``mixed`` images get the training augmentation (crop + flip) after mixing,
while online methods augment before mixing; the λ label is kept as written (a reflect-pad crop
moves at most 1/8 of the image). ``--freeze-backbone`` (linear probe) keeps the backbone's
BatchNorm statistics frozen (eval mode) and trains only the classifier.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import Dataset

from samix_hub.data.specs import DataSource
from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.validate import validate_artifact
from samix_hub.mixing.losses import mixup_cross_entropy
from samix_hub.mixing.sampling import check_alpha
from samix_hub.models.classifier import Classifier
from samix_hub.train.config import (
    DEFAULT_ALPHA,
    FinetuneOptions,
    TrainConfig,
    fill_generator_scale,
)
from samix_hub.train.ema import make_ema
from samix_hub.train.finetune_optim import (
    OPT_DEFAULTS,
    check_warmup,
    create_optimizer,
    create_scheduler,
)
from samix_hub.train.frozen import build_batch_mixing
from samix_hub.train.pretrained import PretrainedBackbone, load_pretrained_backbone
from samix_hub.train.scenario import (
    ClassifierModules,
    EvalContext,
    Scenario,
    StepContext,
    StepFn,
    modules_as,
    register_scenario,
    to_layout,
)
from samix_hub.train.supervised import evaluate_classifier, sl_step_fn, update_classifier_ema

__all__ = [
    "FT_METHODS",
    "FinetuneModules",
    "FinetuneScenario",
    "ProbeClassifier",
    "MixedTrainSet",
    "finetune_config",
    "mixed_step",
]

FT_METHODS = ("vanilla", "mixup", "cutmix", "samix-p", "mixed")
#: Fine-tuning defaults that differ from ``samix-hub train`` (a pretrained start: lower lr).
FT_DEFAULTS: dict[str, Any] = {"epochs": 30, "batch_size": 64, "lr": 0.01}


def finetune_config(
    backbone: str,
    data: str,
    out: str,
    *,
    method: str | None = None,
    generator: str | None = None,
    mixed: str | None = None,
    pretrained: bool = True,
    freeze_backbone: bool = False,
    clean_fraction: float = 0.0,
    warmup_epochs: int = 0,
    **options: Any,
) -> TrainConfig:
    """The :class:`TrainConfig` of a fine-tune run; ``samix_hub.train.train(cfg)`` runs it.

    ``method`` defaults to ``samix-p`` with ``generator``, ``mixed`` with ``mixed``, else
    ``vanilla``. ``options`` are any other :class:`TrainConfig` fields (epochs, lr, ...);
    ``lr`` and ``weight_decay`` left out (or None) take the defaults of ``optimizer``
    (:data:`~samix_hub.train.finetune_optim.OPT_DEFAULTS`). ``warmup_epochs`` > 0: a linear
    warm-up, then the cosine (timm's scheduler, :mod:`samix_hub.train.finetune_optim`).
    """
    if generator and mixed:
        raise UserError("--generator and --mixed exclude each other (online or offline mixing)")
    if method is None:
        method = "samix-p" if generator else "mixed" if mixed else "vanilla"
    ft = FinetuneOptions(
        backbone_source=backbone,
        pretrained=bool(pretrained),
        freeze_backbone=bool(freeze_backbone),
        mixed=str(mixed) if mixed else None,
        clean_fraction=float(clean_fraction),
        warmup_epochs=warmup_epochs,
    )
    defaults = {**FT_DEFAULTS, **OPT_DEFAULTS.get(options.get("optimizer") or "sgd", {})}
    given = {k: v for k, v in options.items() if not (v is None and k in defaults)}
    kwargs = {**defaults, **given}
    return TrainConfig(
        method=method, data=data, backbone=backbone, out=str(out), scenario="finetune",
        generator=generator, finetune=ft, **kwargs,
    )  # fmt: skip


class ProbeClassifier(Classifier):
    """Linear probe: only the classifier trains; the backbone stays in eval mode (frozen BN)."""

    def __init__(self, net: nn.Module, mean: Any, std: Any) -> None:
        super().__init__(net, mean, std)
        head = _classifier_head(net)
        head_params = {id(p) for p in head.parameters()}
        for p in net.parameters():
            p.requires_grad_(id(p) in head_params)

    def train(self, mode: bool = True) -> ProbeClassifier:
        super().train(mode)
        self.net.train(False)
        _classifier_head(self.net).train(mode)
        return self


def _classifier_head(net: nn.Module) -> nn.Module:
    """timm's ``get_classifier()`` of ``net``."""
    get_classifier = getattr(net, "get_classifier", None)
    if not callable(get_classifier):
        raise TypeError(f"{type(net).__name__} has no get_classifier() (not a timm model)")
    head = get_classifier()
    assert isinstance(head, nn.Module)
    return head


@dataclass(kw_only=True)
class FinetuneModules(ClassifierModules):
    """A fine-tune: the classifier (pretrained backbone + new head), its EMA, the SAMix^P
    generator or the mixed set's provenance, and the normalisation it trains with."""

    normalisation: tuple[list[float], list[float]] = ([], [])
    mixed_provenance: dict[str, Any] | None = None


class MixedTrainSet(Dataset):
    """An offline mixed set, optionally interleaved with clean images, as ``(image, packed)``.

    ``packed`` is float64 ``[label_a, label_b, λ]`` (one tensor, so the loop's collation and
    ``.to(device)`` work unchanged); a clean image is ``[y, y, 1]``. ``num_clean`` clean images
    follow the mixed rows, drawn without repeats (while the split lasts) from a permutation
    seeded by ``seed``; the loop's sampler shuffles both together each epoch.
    """

    def __init__(self, mixed: Any, clean: Any, num_clean: int, seed: int) -> None:
        self.mixed = mixed
        self.clean = clean
        self.num_mixed = len(mixed)
        order = torch.empty(0, dtype=torch.long)
        if num_clean > 0 and clean is not None:
            n = len(clean)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            order = perm[torch.arange(num_clean) % n]
        self.clean_index = order

    def __len__(self) -> int:
        return self.num_mixed + len(self.clean_index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < self.num_mixed:
            image, a, b, lam = self.mixed[index]
            return image, torch.tensor([a, b, lam], dtype=torch.float64)
        image, y = self.clean[int(self.clean_index[index - self.num_mixed])]
        return image, torch.tensor([y, y, 1.0], dtype=torch.float64)


def mixed_step(
    ctx: StepContext[ClassifierModules], images: torch.Tensor, packed: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Offline mixed data: ``λ CE(z, a) + (1 - λ) CE(z, b)`` with the λ written in the set."""
    label_a, label_b = packed[:, 0].long(), packed[:, 1].long()
    lam = packed[:, 2].float()
    with ctx.autocast():
        logits = ctx.modules.call("model")(to_layout(images, ctx))
    loss = mixup_cross_entropy(logits, label_a, label_b, lam)
    ctx.backward(loss)
    return {"loss": loss.detach()}


def _mixed_provenance(root: Path, rows: int) -> dict[str, Any]:
    """What the mixed set records about itself (``samix-hub mix`` state file), no local paths."""
    from samix_hub.format.mixed import STATE_NAME

    prov: dict[str, Any] = {"name": root.resolve().name, "rows": rows}
    try:
        settings = json.loads((root / STATE_NAME).read_text()).get("settings", {})
    except (OSError, json.JSONDecodeError):
        settings = {}
    for key in ("method", "alpha", "seed", "generator"):
        if settings.get(key) is not None:
            prov[key] = settings[key]
    if settings.get("data"):
        from samix_hub.data.names import dataset_info

        prov["data"] = dataset_info(settings["data"])[2]
    return prov


class FinetuneScenario(Scenario[ClassifierModules]):
    """``scenario="finetune"``: a pretrained backbone with a new head (see the module docstring)."""

    name = "finetune"
    methods = FT_METHODS

    def __init__(self) -> None:
        self.backbone: PretrainedBackbone | None = None

    def resolve(self, cfg: TrainConfig) -> TrainConfig:
        ex = cfg.finetune
        if cfg.method not in FT_METHODS:
            raise UserError(f"unknown fine-tune method {cfg.method!r} (one of {FT_METHODS})")
        if cfg.method == "mixed" and not ex.mixed:
            raise UserError("method 'mixed' needs --mixed DIR (a set written by samix-hub mix)")
        if cfg.method != "mixed" and ex.mixed:
            raise UserError(f"--mixed DIR trains on the offline set; drop --method {cfg.method}")
        if not 0.0 <= float(ex.clean_fraction) < 1.0:
            raise UserError(f"--clean-fraction must be in [0, 1), got {ex.clean_fraction}")
        if ex.clean_fraction and cfg.method != "mixed":
            raise UserError("--clean-fraction interleaves clean images with --mixed data only")
        if cfg.mask_temperature != 1.0 and cfg.method != "samix-p":
            raise UserError("--mask-temperature shapes a generator's masks: --method samix-p only")
        levers = cfg.mix_prob != 1.0 or cfg.switch_prob != 0.0 or cfg.pairing != "permutation"
        if levers and cfg.method not in ("mixup", "cutmix", "samix-p"):
            raise UserError(
                f"--mix-prob, --switch-prob and --pairing mix batches; --method {cfg.method} "
                "does not (use mixup, cutmix or samix-p)"
            )
        if cfg.method != "mixed":
            if cfg.alpha is None:
                cfg.alpha = DEFAULT_ALPHA[cfg.method]
            try:
                check_alpha(cfg.alpha)
            except ValueError as exc:
                raise UserError(f"invalid --alpha: {exc}") from None
        if cfg.min_lr is None:
            cfg.min_lr = 0.0
        fill_generator_scale(cfg)
        cfg.validate()
        ex.warmup_epochs = check_warmup(cfg, ex.warmup_epochs)
        src = ex.backbone_source or cfg.backbone
        ex.backbone_source = src
        self.backbone = load_pretrained_backbone(
            src, pretrained=ex.pretrained, seed=cfg.seed, sources=self.sources
        )
        cfg.backbone = self.backbone.architecture
        if cfg.image_size is None:
            cfg.image_size = self.backbone.input_size
        fixed = self.backbone.fixed_input_size()
        if fixed is not None and tuple(cfg.image_size) != fixed:
            h, w = fixed
            raise UserError(
                f"--image-size {cfg.image_size[0]}x{cfg.image_size[1]}: --backbone {src} takes "
                f"{h}x{w} images only (a fixed-size patch embedding); use --image-size {h}x{w}"
            )
        return cfg

    def build(self, cfg: TrainConfig, data: DataSource, device: torch.device) -> FinetuneModules:
        bb = self.backbone
        if bb is None:
            raise RuntimeError("FinetuneScenario.build before resolve")
        src = str(cfg.finetune.backbone_source)
        if bb.in_chans != data.channels:
            if bb.kind in ("artifact", "run"):
                raise UserError(
                    f"--backbone {src} takes {bb.in_chans}-channel images, "
                    f"{cfg.data} has {data.channels}-channel images"
                )
            bb = self.backbone = load_pretrained_backbone(
                src,
                pretrained=cfg.finetune.pretrained,
                in_chans=data.channels,
                seed=cfg.seed,
                sources=self.sources,
            )
        mean, std = bb.normalisation(data.channels)
        net = bb.with_head(data.num_classes, cfg.seed)
        wrapper = ProbeClassifier if cfg.finetune.freeze_backbone else Classifier
        model = wrapper(net, mean, std).to(device).train()
        mods = FinetuneModules(
            model=model, ema=make_ema(model), normalisation=(list(mean), list(std))
        )
        build_batch_mixing(mods, cfg, data, device, self.sources, finetune=True)
        if cfg.method == "mixed":
            self._use_mixed(cfg, data, mods)
        return mods

    def _use_mixed(self, cfg: TrainConfig, data: DataSource, mods: FinetuneModules) -> None:
        """Swap ``data.train`` (which the loop augments and samples) for the mixed set."""
        from samix_hub.data.mixed import MixedDataset

        root = Path(str(cfg.finetune.mixed)).expanduser()
        try:
            mixed = MixedDataset(root)
        except FileNotFoundError as exc:
            raise UserError(f"--mixed {root}: {exc}") from None
        except ValueError as exc:  # a mixed data set that fails its checks
            raise ArtifactError(f"--mixed {root}: {exc}") from None
        # The same checks as push and pull: every shard read, row counts against the card.
        validate_artifact(root)
        if mixed.num_classes != data.num_classes:
            raise UserError(
                f"--mixed {root}: {mixed.num_classes} classes, {cfg.data} has "
                f"{data.num_classes}; mix the same data set you fine-tune on"
            )
        chans = int(mixed[0][0].shape[0])
        if chans != data.channels:
            raise UserError(
                f"--mixed {root}: {chans}-channel images, {cfg.data} has {data.channels}"
            )
        frac = float(cfg.finetune.clean_fraction)
        num_clean = round(frac * len(mixed) / (1.0 - frac)) if frac else 0
        data.train = MixedTrainSet(mixed, data.train, num_clean, cfg.seed)
        prov = _mixed_provenance(root, len(mixed))
        prov["clean_images"] = num_clean
        mods.mixed_provenance = prov
        mods.generator_provenance = prov.get("generator")

    def make_optimizer(self, modules: ClassifierModules, cfg: TrainConfig) -> Any:
        return create_optimizer(modules.model, cfg)

    def make_scheduler(
        self, optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int, per_epoch: int
    ) -> Any:
        return create_scheduler(optimizer, cfg, total, per_epoch)

    def step_fn(self, method: str) -> StepFn[ClassifierModules]:
        return mixed_step if method == "mixed" else sl_step_fn(method)

    def after_step(self, mods: ClassifierModules, step: int, total: int, cfg: TrainConfig) -> None:
        update_classifier_ema(mods, step, total, cfg)

    def evaluate(self, mods: ClassifierModules, ev: EvalContext) -> dict[str, float]:
        return evaluate_classifier(mods, ev)

    def run_config(
        self, cfg: TrainConfig, data: DataSource, mods: ClassifierModules
    ) -> dict[str, Any]:
        bb = self.backbone
        assert bb is not None
        own = modules_as(mods, FinetuneModules)
        return {
            "num_classes": data.num_classes,
            "mixer": None,
            "generator": mods.generator_provenance,
            **bb.run_config(own.normalisation, data.channels),
            "backbone_provenance": bb.provenance,
            "mixed_provenance": own.mixed_provenance,
        }


register_scenario("finetune", FinetuneScenario)
