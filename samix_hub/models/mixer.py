"""The SAMix mixer (mask generator) and its AutoMix predecessor (docs/algorithm.md "The mixer").

Convention: :meth:`Mixer.forward` returns ``mask``, the weight of each sample ``i``; its partner
``partner[i]`` gets ``1 - mask``. The reference's ``m`` (weight of the partner) is ``1 - mask``.
The mixed image is ``mask * x + (1 - mask) * x[partner]`` and ``mask.mean() ~= lam``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.format.artifact import CALIBRATION_MODES
from samix_hub.mixing.losses import mask_regulariser
from samix_hub.mixing.masks import as_lam_tensor, calibrate_logits, rescale_lam

__all__ = [
    "MixerConfig",
    "Mixer",
    "VARIANCE_MODES",
]

#: ``variance`` values of the mask regulariser: "batch" (the reference) or "image" (per image).
VARIANCE_MODES = ("batch", "image")


@dataclass
class MixerConfig:
    """Hyper-parameters of the mixer; JSON-serialisable (``asdict``)."""

    in_channels: int
    variant: Literal["samix", "automix"] = "samix"
    reduction: int = 2
    #: λ rescaling k (SAMix: 0.25 for images <= 64 px); negative disables it (ImageNet: λ' = λ).
    lam_mul_k: float = 0.25
    #: dropout after the value network (0 on small images, 0.1 on ImageNet).
    dropout: float = 0.0
    #: upsampling of the mask logits (SAMix: bilinear; AutoMix: nearest).
    upsample: Literal["bilinear", "nearest"] = "bilinear"
    #: AutoMix on ImageNet: λ as an extra constant channel of the q/k/v inputs.
    lam_concat: bool = False
    #: margin δ of the L1 term of the mask regulariser.
    mask_loss_margin: float = 0.1
    #: "exact": shift each image's mask logits so that mean(mask_i) = λ_i exactly (a deviation
    #: from the paper, docs/algorithm.md); "none": the reference mixer. A config without the
    #: field (artifacts written before it existed) means "none".
    calibration: str = "none"
    #: variance term of the mask regulariser: "batch" (the reference: over the whole batch) or
    #: "image" (mean of each image's spatial variance; no per-image-constant degenerate optimum).
    variance: str = "batch"

    def __post_init__(self) -> None:
        if self.variant not in ("samix", "automix"):
            raise ValueError(f"variant must be 'samix' or 'automix', got {self.variant!r}")
        if self.in_channels < 1 or self.reduction < 1:
            raise ValueError("in_channels and reduction must be positive")
        if self.upsample not in ("bilinear", "nearest"):
            raise ValueError(f"upsample must be 'bilinear' or 'nearest', got {self.upsample!r}")
        if self.lam_concat and self.variant != "automix":
            raise ValueError("lam_concat is an AutoMix option")
        if self.calibration not in CALIBRATION_MODES:
            raise ValueError(
                f"calibration must be one of {CALIBRATION_MODES}, got {self.calibration!r}"
            )
        if self.variance not in VARIANCE_MODES:
            raise ValueError(f"variance must be one of {VARIANCE_MODES}, got {self.variance!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MixerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown mixer config keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def automix(cls, in_channels: int, **kwargs: Any) -> MixerConfig:
        """AutoMix defaults: nearest upsampling, no λ encoding on CIFAR (docs/algorithm.md "The mixer" note)."""
        kwargs.setdefault("upsample", "nearest")
        kwargs.setdefault("lam_mul_k", -1.0)
        return cls(in_channels=in_channels, variant="automix", **kwargs)


def _normal_init(module: nn.Module, std: float = 0.01) -> None:
    """openmixup ``init_weights``: convs N(0, std), bias 0; BatchNorm weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class _ConvBlock(nn.Module):
    """A bias-free 1x1 conv, optionally followed by BatchNorm (key names as openmixup ConvModule)."""

    def __init__(self, cin: int, cout: int, norm: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(cout) if norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x


class _ValueNet(nn.Module):
    """SAMix value network: 1x1 conv (C -> C/2) -> BN -> ELU -> 1x1 conv (C/2 -> 1) -> dropout."""

    def __init__(self, channels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.ModuleList(
            [_ConvBlock(channels, hidden, True), _ConvBlock(hidden, 1, False)]
        )
        self.act = nn.ELU()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv[1](self.act(self.conv[0](x))))


class Mixer(nn.Module):
    """Pixel-wise mixer ``PixelMixBlock`` of SAMix (default) or AutoMix (``variant="automix"``)."""

    def __init__(self, config: MixerConfig) -> None:
        super().__init__()
        self.config = config
        c = config.in_channels
        inter = max(c // config.reduction, 1)
        self.inter_channels = inter
        self.key: nn.Conv2d | None
        self.value: nn.Module
        if config.variant == "samix":
            # q and k: separate 1x1 convs (with bias) on cat(f_a, f_b).
            self.query = nn.Conv2d(2 * c, inter, kernel_size=1)
            self.key = nn.Conv2d(2 * c, inter, kernel_size=1)
            self.value = _ValueNet(c, inter, config.dropout)
        else:
            # AutoMix: one shared 1x1 conv for q and k, applied to each sample; plain 1x1 value conv.
            cin = c + 1 if config.lam_concat else c
            self.query = nn.Conv2d(cin, inter, kernel_size=1)
            self.key = None
            self.value = nn.Conv2d(cin, 1, kernel_size=1)
        _normal_init(self)

    def forward(
        self,
        features: torch.Tensor,
        lam: float | torch.Tensor,
        partner: torch.Tensor,
        size: tuple[int, int] | torch.Size,
    ) -> torch.Tensor:
        """Mask (N x 1 x H x W, ``size``) = weight of sample ``i``; ``partner[i]`` gets ``1 - mask``."""
        n, _, h, w = features.shape
        lam_t = as_lam_tensor(lam, n, features.device).view(n, 1, 1, 1).to(features.dtype)
        f_a = features
        f_b = features[partner]
        cfg = self.config
        if cfg.variant == "samix":
            lam_r = rescale_lam(lam_t, cfg.lam_mul_k)
            f_a = f_a * (1 + lam_r)
            f_b = f_b * (1 + (1 - lam_r))
            v = self.value(f_b)
            qk_in = torch.cat([f_a, f_b], dim=1)
            q = self.query(qk_in)
            assert self.key is not None  # SAMix has its own key conv
            k = self.key(qk_in)
        else:
            if cfg.lam_concat:
                f_a = torch.cat([f_a, lam_t.expand(n, 1, h, w)], dim=1)
                f_b = torch.cat([f_b, (1 - lam_t).expand(n, 1, h, w)], dim=1)
            v = self.value(f_b)
            q = self.query(f_a)
            k = self.query(f_b)
        # Attention in fp32: P = softmax(q^T k / sqrt(C/2)) over the h*w tokens.
        q = q.float().flatten(2).transpose(1, 2)  # N, hw, c'
        k = k.float().flatten(2)  # N, c', hw
        attn = torch.softmax(torch.bmm(q, k) / math.sqrt(self.inter_channels), dim=-1)
        logits = torch.bmm(attn, v.float().flatten(2).transpose(1, 2))  # N, hw, 1
        logits = logits.transpose(1, 2).reshape(n, 1, h, w)
        if cfg.upsample == "bilinear":
            logits = F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        else:
            logits = F.interpolate(logits, size=tuple(size), mode="nearest")
        if cfg.calibration == "exact":
            # λ-exact masks (deviation, docs/algorithm.md): 1 - sigmoid(l) = sigmoid(-l).
            return torch.sigmoid(calibrate_logits(-logits, lam_t.float().reshape(n)))
        partner_weight = torch.sigmoid(logits)  # the reference's m
        return 1 - partner_weight

    def mask_loss(self, mask: torch.Tensor, lam: float | torch.Tensor) -> torch.Tensor:
        """This mixer's mask regulariser (:func:`samix_hub.mixing.losses.mask_regulariser`)."""
        cfg = self.config
        return mask_regulariser(
            mask, lam, margin=cfg.mask_loss_margin, variant=cfg.variant, variance=cfg.variance
        )

    def load_openmixup_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a reference ``PixelMixBlock`` state dict (keys with or without ``mix_block.``).

        SAMix keys: ``query.conv.{weight,bias}``, ``key.conv.{weight,bias}``,
        ``value.conv.0.conv.weight``, ``value.conv.0.bn.*``, ``value.conv.1.conv.weight``.
        AutoMix keys: ``query.conv.{weight,bias}``, ``value.{weight,bias}``. ``query.weight``
        (a bare ``nn.Conv2d`` in later openmixup versions) is accepted too.
        """
        prefix = "mix_block."
        items = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state_dict.items()}
        mapped: dict[str, torch.Tensor] = {}
        for key, value in items.items():
            new = key
            for head in ("query", "key"):
                if key.startswith(f"{head}.conv."):
                    new = f"{head}." + key[len(f"{head}.conv.") :]
            if self.config.variant == "automix" and key.startswith("value.conv."):
                new = "value." + key[len("value.conv.") :]
            mapped[new] = value
        own = self.state_dict()
        missing = sorted(set(own) - set(mapped))
        unexpected = sorted(set(mapped) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"not a {self.config.variant} PixelMixBlock state dict: "
                f"missing {missing[:6]}, unexpected {unexpected[:6]}"
            )
        for key, value in mapped.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise ValueError(
                    f"openmixup weight {key!r} has shape {tuple(value.shape)}, "
                    f"this mixer expects {tuple(own[key].shape)}"
                )
        self.load_state_dict(mapped, strict=True)
