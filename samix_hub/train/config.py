"""The resolved configuration of a training run (what ``RUN_DIR/config.json`` holds).

Defaults follow the reference CIFAR recipe (docs/algorithm.md: "Online supervised SAMix" and "Baselines"; openmixup CIFAR configs):
SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 100 per device, cosine to 0.05 for
AutoMix/SAMix (mixer and backbone share the schedule) and to 0 for the baselines; α = 2 for
AutoMix/SAMix/SAMix^P, 1 for MixUp, 0.2 for CutMix; η = 0.5; mask regulariser weight 0.1;
λ margin 0.08; EMA momentum 0.999 -> 0.999999.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from samix_hub.errors import UserError
from samix_hub.format.artifact import CALIBRATION_MODES
from samix_hub.mixing.losses import check_eta
from samix_hub.mixing.masks import LAM_MARGIN
from samix_hub.mixing.read_size import DEFAULT_GENERATOR_SCALE
from samix_hub.mixing.sampling import DEFAULT_ALPHA, PAIRINGS, check_alpha

__all__ = [
    "TrainConfig",
    "SslOptions",
    "FinetuneOptions",
    "SL_METHODS",
    "DEFAULT_ALPHA",
    "resolve_method",
    "resolve_mixer_options",
    "legacy_values",
    "fill_generator_scale",
    "LEGACY_DEFAULTS",
    "MASK_VARIANCES",
    "OPTIMIZERS",
]

SL_METHODS = ("vanilla", "mixup", "cutmix", "automix", "samix", "samix-p")
#: Methods whose cosine schedule ends at half the base lr (0.1 -> 0.05 in the reference).
LEARNED_MIXERS = ("automix", "samix")
#: The mask regulariser's variance: per-image spatial or batch-wide (the reference);
#: docs/algorithm.md "Mask regulariser".
MASK_VARIANCES = ("image", "batch")
OPTIMIZERS = ("sgd", "adamw")
#: What a ``config.json`` written before an option existed meant by its absence (for --resume).
LEGACY_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "teacher": None,
    "mask_temperature": 1.0,
    "mix_prob": 1.0,
    "switch_prob": 0.0,
    "pairing": "permutation",
}


@dataclass
class SslOptions:
    """Options of ``--scenario ssl`` (docs/algorithm.md "Self-supervised SAMix").

    ``queue_len`` and ``shuffle_bn_splits`` None: sized for the data set / 2 chunks in one
    process, 1 per rank (filled when the scenario builds its modules).
    """

    queue_len: int | None = None
    temperature: float = 0.2
    proj_dim: int = 128
    shuffle_bn_splits: int | None = None
    knn_k: int = 200
    knn_t: float = 0.1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SslOptions:
        """The options among ``data``'s keys (a ``config.json`` or CLI values); None: default."""
        return cls(**_known(cls, data))


@dataclass
class FinetuneOptions:
    """Options of ``scenario="finetune"`` (:func:`samix_hub.train.finetune.finetune_config`)."""

    backbone_source: str | None = None
    pretrained: bool = True
    freeze_backbone: bool = False
    mixed: str | None = None
    clean_fraction: float = 0.0
    warmup_epochs: int = 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneOptions:
        """The options among ``data``'s keys (a ``config.json`` or CLI values); None: default."""
        return cls(**_known(cls, data))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names and v is not None}


@dataclass
class TrainConfig:
    """Options of ``samix-hub train``; :meth:`resolve` fills method-dependent defaults."""

    method: str
    data: str
    backbone: str
    out: str
    scenario: str = "sl"
    epochs: int = 200
    batch_size: int = 100
    lr: float = 0.1
    min_lr: float | None = None
    #: learning rate of the mixer (online automix/samix); None: the same as ``lr``.
    mixer_lr: float | None = None
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    alpha: float | None = None
    eta: float = 0.5
    mask_adjust: float = 0.0
    mask_loss_weight: float = 0.1
    lam_margin: float = LAM_MARGIN
    #: fine-tune levers (docs/algorithm.md "Levers of a reused generator"): the SAMix^P mask
    #: temperature (< 1 sharper, mean kept at λ), timm's ``prob`` / ``switch_prob`` (switching to
    #: CutMix, or to MixUp for CutMix) and the pairing of images (mixing.sampling.PAIRINGS).
    mask_temperature: float = 1.0
    mix_prob: float = 1.0
    switch_prob: float = 0.0
    pairing: str = "permutation"
    #: SAMix^P: fraction of the generator's native size its encoder reads the batch at; None:
    #: :data:`DEFAULT_GENERATOR_SCALE` (filled in when the config is resolved). A teacher run
    #: (``--teacher``): the read its mixer trains at (None: the full size).
    generator_scale: float | None = None
    ema_momentum: float = 0.999
    ema_end_momentum: float = 0.999999
    stage: int = 3
    generator: str | None = None
    #: a frozen, trained classifier the mixer is trained against (``scenario="teacher"``).
    teacher: str | None = None
    #: mixer options (automix/samix): "exact" | "none"; "image" | "batch" (resolved per method).
    calibration: str | None = None
    mask_variance: str | None = None
    clean_loss: bool = False
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    workers: int = 2
    max_steps: int | None = None
    eval_every: int = 1
    checkpoint_every: int = 0
    eval_batch_size: int = 256
    download: bool = False
    image_size: tuple[int, int] | None = None
    #: options of one scenario: read only by ``ssl`` / ``finetune`` (config.json has its keys)
    ssl: SslOptions = field(default_factory=SslOptions)
    finetune: FinetuneOptions = field(default_factory=FinetuneOptions)

    def __post_init__(self) -> None:
        # A teacher means the frozen-teacher scenario (train/teacher.py), as ``train --teacher``.
        if self.teacher and self.scenario == "sl":
            self.scenario = "teacher"

    def resolve(self) -> TrainConfig:
        """Fill per-method defaults and validate every value (one clear error per mistake)."""
        if self.scenario != "sl":
            return self  # other scenarios validate their own options
        resolve_method(self, SL_METHODS, DEFAULT_ALPHA)
        fill_generator_scale(self)
        if self.min_lr is None:
            self.min_lr = 0.5 * self.lr if self.method in LEARNED_MIXERS else 0.0
        resolve_mixer_options(self, self.method in LEARNED_MIXERS)
        self.validate()
        return self

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (
                self.batch_size >= 2,
                f"--batch-size must be >= 2 (mixup pairs), got {self.batch_size}",
            ),
            (_finite(self.lr) and self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.mask_adjust <= 1, f"--mask-adjust is a probability, got {self.mask_adjust}"),
            (
                0 <= self.ema_momentum <= self.ema_end_momentum <= 1,
                f"--ema-momentum must satisfy 0 <= {self.ema_momentum} <= "
                f"end {self.ema_end_momentum} <= 1",
            ),
            (0 <= self.lam_margin < 0.5, f"λ margin must be in [0, 0.5), got {self.lam_margin}"),
            (
                _finite(self.mask_temperature) and self.mask_temperature > 0,
                f"--mask-temperature must be > 0, got {self.mask_temperature}",
            ),
            (0 <= self.mix_prob <= 1, f"--mix-prob is a probability, got {self.mix_prob}"),
            (
                0 <= self.switch_prob <= 1,
                f"--switch-prob is a probability, got {self.switch_prob}",
            ),
            (
                self.pairing in PAIRINGS,
                f"--pairing must be one of {', '.join(PAIRINGS)}, got {self.pairing!r}",
            ),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be >= 1"),
            (self.eval_every >= 0, "--eval-every must be >= 0"),
            (self.checkpoint_every >= 0, "--checkpoint-every must be >= 0"),
            (self.workers >= 0, "--workers must be >= 0"),
            (
                self.eval_batch_size >= 1,
                f"--eval-batch-size must be >= 1, got {self.eval_batch_size}",
            ),
            (
                self.optimizer in OPTIMIZERS,
                f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
            ),
            (
                self.mixer_lr is None or (_finite(self.mixer_lr) and self.mixer_lr > 0),
                f"--mixer-lr must be > 0, got {self.mixer_lr}",
            ),
            (
                self.calibration in (None, *CALIBRATION_MODES),
                f"--calibration must be one of {', '.join(sorted(CALIBRATION_MODES))}, "
                f"got {self.calibration!r}",
            ),
            (
                self.mask_variance in (None, *MASK_VARIANCES),
                f"--mask-variance must be one of {', '.join(MASK_VARIANCES)}, "
                f"got {self.mask_variance!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.method == "samix-p" and not self.generator:
            raise UserError("--method samix-p needs --generator SRC (a generator folder or repo)")
        if self.method != "samix-p" and self.generator:
            raise UserError(f"--generator is only used by --method samix-p, not {self.method}")
        scale = self.generator_scale
        if scale is not None and self.method != "samix-p" and self.scenario != "teacher":
            raise UserError(
                f"--generator-scale is an option of samix-p and of teacher runs, not of "
                f"{self.method}"
            )
        if scale is not None and not (_finite(scale) and 0 < scale <= 1):
            raise UserError(f"--generator-scale must be in (0, 1], got {scale}")
        if self.teacher and self.scenario != "teacher":
            raise UserError(f"--teacher trains a supervised mixer, not --scenario {self.scenario}")
        if self.scenario in ("ssl", "finetune"):
            _reject_mixer_options(self, f"is not available with --scenario {self.scenario}")

    def scenario_options(self) -> dict[str, Any]:
        """The options of this run's scenario, flat (as ``config.json`` holds them)."""
        if self.scenario == "ssl":
            return asdict(self.ssl)
        if self.scenario == "finetune":
            return asdict(self.finetune)
        return {}

    def to_dict(self) -> dict[str, Any]:
        """Every option, flat: the common ones, then the scenario's (:meth:`scenario_options`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        del data["ssl"], data["finetune"]
        data["image_size"] = list(self.image_size) if self.image_size else None
        return {**data, **self.scenario_options()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)} - {"ssl", "finetune"}
        kwargs = {k: v for k, v in data.items() if k in known}
        if kwargs.get("image_size") is not None:
            kwargs["image_size"] = tuple(kwargs["image_size"])
        scenario = data.get("scenario")
        if scenario == "ssl":
            kwargs["ssl"] = SslOptions.from_dict(data)
        if scenario == "finetune":
            kwargs["finetune"] = FinetuneOptions.from_dict(data)
        return cls(**kwargs)


def resolve_method(
    cfg: TrainConfig, methods: tuple[str, ...], default_alpha: dict[str, float], kind: str = ""
) -> None:
    """Check ``cfg.method`` is one of ``methods``, fill its default α, validate α and η."""
    if cfg.method not in methods:
        raise UserError(f"unknown {kind}method {cfg.method!r} (one of {', '.join(methods)})")
    if cfg.alpha is None:
        cfg.alpha = default_alpha[cfg.method]
    try:
        check_alpha(cfg.alpha)
        check_eta(cfg.eta)
    except ValueError as exc:
        raise UserError(f"invalid --alpha/--eta: {exc}") from None


def resolve_mixer_options(cfg: TrainConfig, learned: bool) -> None:
    """Mixer defaults for new runs with a learned mixer: λ-exact masks, per-image variance.

    Both are this project's deviations from the reference (docs/algorithm.md "Deviations"); MixerConfig's own
    defaults ("none", "batch") keep older artifacts as they were. Other methods reject them.
    """
    if learned:
        cfg.calibration = cfg.calibration or "exact"
        cfg.mask_variance = cfg.mask_variance or "image"
        cfg.mixer_lr = cfg.mixer_lr if cfg.mixer_lr is not None else cfg.lr
        return
    _reject_mixer_options(cfg, f"applies to --method automix/samix, not {cfg.method}")


def _reject_mixer_options(cfg: TrainConfig, why: str) -> None:
    """A one-line error for the first learned-mixer option set where none is used."""
    for name in ("calibration", "mask_variance", "mixer_lr"):
        if getattr(cfg, name) is not None:
            raise UserError(f"--{name.replace('_', '-')} {why}")


def fill_generator_scale(cfg: TrainConfig) -> None:
    """A SAMix^P run without ``--generator-scale`` gets :data:`DEFAULT_GENERATOR_SCALE`, so its
    ``config.json`` says what it ran with."""
    if cfg.method == "samix-p" and cfg.generator_scale is None:
        cfg.generator_scale = DEFAULT_GENERATOR_SCALE


def legacy_values(run: dict[str, Any]) -> dict[str, Any]:
    """What the options a run's ``config.json`` lacks meant when it was written (older versions).

    A run with a mixer from before the mixer options had the reference's mixer (no calibration,
    batch-wide variance) and one learning rate; every run had SGD and no teacher, every
    fine-tune no warm-up.
    """
    out = {k: v for k, v in LEGACY_DEFAULTS.items() if k not in run}
    if "generator_scale" not in run:  # SAMix^P read images at the generator's native size
        out["generator_scale"] = 1.0 if run.get("method") == "samix-p" else None
    if run.get("scenario") == "finetune" and "warmup_epochs" not in run:
        out["warmup_epochs"] = 0  # fine-tunes before --warmup-epochs had none
    mixer = run.get("mixer")
    if isinstance(mixer, dict) and run.get("scenario") != "ssl":
        legacy = {
            "calibration": mixer.get("calibration", "none"),
            "mask_variance": mixer.get("variance", "batch"),
            "mixer_lr": run.get("lr"),
        }
        out.update({k: v for k, v in legacy.items() if k not in run})
    return out


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
