"""The SAMix^P generator: a frozen EMA encoder (to stage 3) + mixer + input normalisation.

docs/algorithm.md "SAMix^P": the mixer cannot run without the encoder it was trained with, so both are
published together. ``forward`` takes images in [0, 1], runs the encoder ONCE per image, gathers
the partner's features, and returns the mask (weight of each image, mean ~= λ) and the mix.
Images of another size than the native one: the encoder reads them resized to the native size
(or to ``encoder_size``, docs/algorithm.md "The generator's read size") and the mask is
upsampled to the images' size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn as nn
import torch.nn.functional as F

from samix_hub.mixing.masks import apply_mask
from samix_hub.models.encoder import StageEncoder
from samix_hub.models.mixer import Mixer, MixerConfig

__all__ = ["GeneratorNet", "GeneratorConfig", "MaskGenerator"]


@runtime_checkable
class MaskGenerator(Protocol):
    """What every loaded generator offers, whatever its runtime (torch :class:`GeneratorNet`,
    onnxruntime ``OnnxGenerator``): ``masks`` and the call ``gen(images, partner, lam)``.

    ``images`` are N x C x H x W in [0, 1], ``partner`` a permutation index, ``lam`` a float or one
    value per image; the mask is the weight of each image (docs/artifacts.md "Generator").
    """

    config: GeneratorConfig

    def masks(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> torch.Tensor: ...

    def __call__(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class GeneratorConfig:
    """What a generator folder's ``config.json`` holds, without its format fields (``kind``,
    ``format_version``, ``lam_convention``, ``encoder``: :mod:`samix_hub.export.schema` adds and checks them)."""

    backbone: str
    mixer: MixerConfig
    stage: int = 3
    in_chans: int = 3
    input_size: tuple[int, int] = (32, 32)
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, ...] = (0.2023, 0.1994, 0.201)
    provenance: dict[str, Any] = field(default_factory=dict)


class GeneratorNet(nn.Module):
    """Frozen SAMix^P generator network: ``forward(images, partner, lam) -> (mask, mixed)``.

    The public class is ``samix_hub.Generator`` (this network with the Hub methods,
    :mod:`samix_hub.hub.api`); code below the Hub builds and loads this one."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = StageEncoder(config.backbone, stage=config.stage, in_chans=config.in_chans)
        if self.encoder.out_channels != config.mixer.in_channels:
            raise ValueError(
                f"mixer expects {config.mixer.in_channels} channels, encoder {config.backbone!r} "
                f"stage {config.stage} gives {self.encoder.out_channels}"
            )
        self.mixer = Mixer(config.mixer)
        if len(config.mean) != config.in_chans or len(config.std) != config.in_chans:
            raise ValueError("mean/std must have one value per input channel")
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        self.freeze()

    def freeze(self) -> GeneratorNet:
        """No gradients, eval mode (BatchNorm statistics and dropout fixed)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> GeneratorNet:
        # A generator is always frozen: training mode would update BatchNorm statistics.
        return super().train(False)

    @property
    def input_size(self) -> tuple[int, int]:
        height, width = self.config.input_size
        return int(height), int(width)

    def masks(
        self,
        images: torch.Tensor,
        partner: torch.Tensor,
        lam: float | torch.Tensor,
        *,
        encoder_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Mask at the images' size (weight of each image).

        ``encoder_size``: the size the encoder reads the batch at (default: the native size).
        A smaller one makes the pass cheaper (about quadratically) and the mask coarser; a
        λ-exact mask is still calibrated at the images' size (docs/algorithm.md "The
        generator's read size").
        """
        if images.dim() != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(
                f"generator expects N x {self.config.in_chans} x H x W images in [0, 1], "
                f"got shape {tuple(images.shape)}"
            )
        x = (images - self.mean) / self.std
        native = self.input_size if encoder_size is None else encoder_size
        # Identity when the size already is the native one (bilinear at scale 1 is exact); at
        # half the size it is the mean of each 2 x 2 block.
        x = F.interpolate(x, size=native, mode="bilinear", align_corners=False)
        feats = self.encoder(x)
        if self.config.mixer.calibration == "exact":
            # λ-exact masks are calibrated at the images' own size, so mean(mask_i) = λ_i holds
            # at any size (the mixer upsamples its logits straight to it).
            return self.mixer(feats, lam, partner, images.shape[-2:])
        mask = self.mixer(feats, lam, partner, native)
        return F.interpolate(mask, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.masks(images, partner, lam)
        return mask, apply_mask(images, mask, partner)
