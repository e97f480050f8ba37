"""Mixup parameter sampling, masks and mixing methods (``SAMixUp`` is in ``samix_hub/mixup.py``)."""

from .masks import LAM_MARGIN, apply_mask, margin_fallback, mask_adjust, sharpen
from .methods import (
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
from .sampling import (
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
