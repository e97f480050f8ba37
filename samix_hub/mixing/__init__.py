"""Mixup parameter sampling, masks and mixing methods (``SAMixUp``: :mod:`samix_hub.mixing.samixup`)."""

from samix_hub.mixing.masks import LAM_MARGIN, apply_mask, margin_fallback, mask_adjust, sharpen
from samix_hub.mixing.methods import (
    CutMix,
    MixedBatch,
    MixMethod,
    MixParams,
    MixSwitch,
    MixUp,
    SAMix,
    Vanilla,
    build_method,
    finish_mask,
)
from samix_hub.mixing.sampling import (
    DEFAULT_ALPHA,
    PAIRINGS,
    box_lam,
    check_alpha,
    sample_box,
    sample_lam,
    sample_partner,
)

__all__ = [
    "LAM_MARGIN",
    "apply_mask",
    "margin_fallback",
    "mask_adjust",
    "sharpen",
    "CutMix",
    "MixedBatch",
    "MixMethod",
    "MixParams",
    "MixSwitch",
    "MixUp",
    "SAMix",
    "Vanilla",
    "build_method",
    "finish_mask",
    "DEFAULT_ALPHA",
    "PAIRINGS",
    "box_lam",
    "check_alpha",
    "sample_box",
    "sample_lam",
    "sample_partner",
]
