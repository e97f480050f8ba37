"""Encoders truncated after stage k: what the SAMix mixer reads (docs/algorithm.md "The mixer")."""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn as nn

__all__ = ["StageEncoder", "create_encoder"]


class StageEncoder(nn.Module):
    """A timm backbone truncated after stage ``stage`` (ResNet: stage 3 = ``layer3``).

    Parameter names are the backbone's own under ``net.`` so weights copy over by name
    from a full classifier (:meth:`load_from_backbone`).
    """

    def __init__(self, backbone: str, stage: int = 3, in_chans: int = 3) -> None:
        super().__init__()
        if stage < 1:
            raise ValueError(f"stage must be >= 1, got {stage}")
        try:
            self.net = timm.create_model(
                backbone,
                pretrained=False,
                features_only=True,
                out_indices=(stage,),
                in_chans=in_chans,
            )
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ValueError(f"unknown backbone {backbone!r}: {exc}") from None
        info: Any = self.net.feature_info  # timm's FeatureInfo (untyped module attribute)
        self.backbone = backbone
        self.stage = stage
        self.in_chans = in_chans
        self.out_channels: int = int(info.channels()[-1])
        self.reduction: int = int(info.reduction()[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]

    @torch.no_grad()
    def load_from_backbone(self, backbone: nn.Module) -> None:
        """Copy the matching parameters and buffers of a full classifier (e.g. its EMA copy)."""
        source = backbone.state_dict()
        target = self.net.state_dict()
        missing = [k for k in target if k not in source]
        if missing:
            raise ValueError(f"backbone lacks encoder weights: {missing[:5]}...")
        for key, value in target.items():
            value.copy_(source[key])


def create_encoder(backbone: str, stage: int = 3, in_chans: int = 3) -> StageEncoder:
    """Build ``backbone`` (a timm name) truncated after ``stage``; see :class:`StageEncoder`."""
    return StageEncoder(backbone, stage=stage, in_chans=in_chans)
