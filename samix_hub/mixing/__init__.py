"""Mixup parameter sampling, masks and mixing methods."""

from .masks import LAM_MARGIN, apply_mask, margin_fallback, mask_adjust
from .methods import (
    CutMix,
    MixedBatch,
    MixMethod,
    MixParams,
    MixUp,
    SAMix,
    Vanilla,
    build_method,
    finish_mask,
)
from .mixup import MixInputError, SAMixUp, datasets_map_fn, soft_targets
from .sampling import DEFAULT_ALPHA, box_lam, check_alpha, sample_box, sample_lam, sample_partner

__all__ = [
    "LAM_MARGIN",
    "apply_mask",
    "margin_fallback",
    "mask_adjust",
    "CutMix",
    "MixedBatch",
    "MixMethod",
    "MixParams",
    "MixUp",
    "SAMix",
    "SAMixUp",
    "MixInputError",
    "datasets_map_fn",
    "soft_targets",
    "Vanilla",
    "build_method",
    "finish_mask",
    "DEFAULT_ALPHA",
    "box_lam",
    "check_alpha",
    "sample_box",
    "sample_lam",
    "sample_partner",
]
