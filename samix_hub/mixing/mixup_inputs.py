"""``SAMixUp``'s inputs: the input structures, soft targets and input checks (docs/mixup.md).

torchvision's input structures (tuple, list, dict with a ``labels_getter``) are taken apart by
:func:`find_labels` and :func:`find_images` and put back by :func:`replace_items`;
:func:`soft_targets` are timm's ``mixup_target``; :func:`to_pixels` and :func:`check_labels`
refuse a batch that cannot be mixed correctly with a one-line :class:`MixInputError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from samix_hub.errors import UserError

__all__ = [
    "MixInputError",
    "RANGE_TOLERANCE",
    "PROB_TOLERANCE",
    "IMAGE_KEYS",
    "soft_targets",
    "find_labels",
    "find_images",
    "replace_items",
    "channel_values",
    "short_repr",
    "check_number",
    "to_pixels",
    "check_labels",
]

#: How far pixel values may stray outside [0, 1] (after un-normalising) before a batch is refused.
RANGE_TOLERANCE = 1e-2
#: How far a row of probability labels (N x num_classes) may sum away from 1.
PROB_TOLERANCE = 1e-3
#: Dictionary keys taken as the images when a dict holds several 4-D tensors.
IMAGE_KEYS = ("image", "images", "img", "pixel_values")


class MixInputError(UserError, ValueError):
    """A batch or setting that SAMixUp cannot use correctly (range, dtype, shape or labels)."""


def soft_targets(
    labels: torch.Tensor,
    num_classes: int,
    lam: torch.Tensor,
    partner: torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``lam * y + (1 - lam) * y[partner]`` with timm's label smoothing of ``y``.

    As ``timm.data.mixup.mixup_target``: off value ``s / C``, on value ``1 - s + s / C``; rows
    sum to 1. ``labels`` are class indices, or N x C class probabilities (smoothed as
    ``y (1 - s) + s / C``, the same values for a one-hot row). ``lam`` is one value per sample
    (or a 0-d tensor).
    """
    off = label_smoothing / num_classes
    if labels.dim() == 2:
        y = labels.float() * (1.0 - label_smoothing) + off
    else:
        y = torch.full((labels.shape[0], num_classes), off, device=labels.device)
        y.scatter_(1, labels.long().view(-1, 1), 1.0 - label_smoothing + off)
    lam_v = torch.as_tensor(lam, dtype=y.dtype, device=y.device).reshape(-1, 1)
    return lam_v * y + (1 - lam_v) * y[partner.to(y.device)]


def find_labels(inputs: Any) -> Any:
    """torchvision's default ``labels_getter``: the second item of a tuple or list (or in it a
    dict), or in a dict the key ``labels`` (any case), else the first key containing ``label``."""
    if isinstance(inputs, (tuple, list)):
        if len(inputs) < 2:
            raise MixInputError(
                f"need (images, labels, ...), got a {type(inputs).__name__} of {len(inputs)} items"
            )
        inputs = inputs[1]
        if not isinstance(inputs, Mapping):
            return inputs
    if not isinstance(inputs, Mapping):
        raise MixInputError(
            f"got a {type(inputs).__name__}: call mixup(images, labels), mixup((images, labels)) "
            "or mixup({'image': images, 'labels': labels})"
        )
    keys = [k for k in inputs if isinstance(k, str)]
    key = next((k for k in keys if k.lower() == "labels"), None)
    key = key or next((k for k in keys if "label" in k.lower()), None)
    if key is None:
        raise MixInputError(
            f"no labels among the keys {list(inputs)}: name one 'labels' or pass labels_getter="
        )
    return inputs[key]


def channel_values(values: Sequence[float] | torch.Tensor | None, name: str) -> torch.Tensor | None:
    """``mean`` or ``std`` (``name``) as a 1 x C x 1 x 1 float32 tensor, or None."""
    if values is None:
        return None
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0 or not torch.isfinite(t).all() or (name == "std" and (t <= 0).any()):
        raise MixInputError(f"{name}={values!r}: need finite values (std > 0), one per channel")
    return t.view(1, -1, 1, 1)


def short_repr(value: Any) -> str:
    """``repr(value)`` cut to 60 characters, for error messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_number(name: str, value: Any, low: float, high: float, closed_high: bool) -> float:
    """``value`` as a float in ``[low, high)`` (``[low, high]`` when ``closed_high``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value > high if closed_high else value >= high):
        bracket = "]" if closed_high else ")"
        raise MixInputError(f"{name}={value!r}: need a number in [{low:g}, {high:g}{bracket}")
    return float(value)


def find_images(inputs: Any, labels: Any) -> Any:
    """The images of an input structure: the first item of a tuple or list; in a dict the one
    4-D tensor (or the one under ``image``/``images``/``img``/``pixel_values``)."""
    if isinstance(inputs, (tuple, list)):
        if not inputs:
            raise MixInputError("need (images, labels), got an empty sequence")
        return inputs[0]
    if isinstance(inputs, Mapping):
        named = [k for k in inputs if isinstance(k, str) and k.lower() in IMAGE_KEYS]
        tensors = [
            k
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor) and v.dim() == 4 and v is not labels
        ]
        if len(named) == 1 and inputs[named[0]] is not labels:
            return inputs[named[0]]
        if len(tensors) == 1:
            return inputs[tensors[0]]
        raise MixInputError(
            f"dict with keys {list(inputs)}: need exactly one N x C x H x W image tensor "
            f"(or a key named one of {', '.join(IMAGE_KEYS)}), found {len(tensors)}"
        )
    raise MixInputError(f"need (images, labels) or a dict, got {type(inputs).__name__}")


def replace_items(obj: Any, new: dict[int, Any]) -> tuple[Any, set[int]]:
    """``obj`` with the items whose ``id`` is a key of ``new`` replaced (through tuples, lists
    and dicts), and the ids that were found."""
    if id(obj) in new:
        return new[id(obj)], {id(obj)}
    found: set[int] = set()
    if isinstance(obj, Mapping):
        items = {}
        for k, v in obj.items():
            items[k], f = replace_items(v, new)
            found |= f
        try:
            mapping_type: Callable[[dict[Any, Any]], Any] = type(obj)  # dict, OrderedDict, ...
            return mapping_type(items), found
        except TypeError:
            return items, found
    if isinstance(obj, (tuple, list)):
        values = []
        for v in obj:
            r, f = replace_items(v, new)
            values.append(r)
            found |= f
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*values), found
        return type(obj)(values), found
    return obj, found


def to_pixels(
    images: Any,
    mean: torch.Tensor | None = None,
    std: torch.Tensor | None = None,
    tolerance: float = RANGE_TOLERANCE,
) -> torch.Tensor:
    """Float images in [0, 1] (un-normalised with ``mean``/``std`` when given, as
    :func:`channel_values` makes them), or a clear error naming what is wrong."""
    normalised = mean is not None and std is not None
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise MixInputError(f"images: need an N x C x H x W tensor, got {shape}")
    if images.shape[0] == 0:
        raise MixInputError("images: an empty batch (N = 0), nothing to mix")
    channels = int(images.shape[1])
    if channels == 4:
        raise MixInputError(
            "images: 4 channels (RGBA?); drop the alpha channel first (images[:, :3], "
            "or PIL's image.convert('RGB'))"
        )
    if channels not in (1, 3):
        raise MixInputError(f"images: {channels} channels; need 3 (RGB) or 1 (grayscale)")
    if not images.is_floating_point():
        raise MixInputError(
            f"images: dtype {images.dtype}; convert to float in [0, 1] first "
            "(e.g. transforms.v2.ToDtype(torch.float32, scale=True))"
        )
    x = images.float()
    if mean is not None and std is not None:
        if mean.shape[1] not in (1, channels):
            raise MixInputError(
                f"mean/std have {mean.shape[1]} values for {channels}-channel images"
            )
        x = x * std.to(x.device) + mean.to(x.device)
    if not bool(torch.isfinite(x).all()):
        raise MixInputError("images contain NaN or infinite values")
    lo_t, hi_t = torch.aminmax(x)
    lo, hi = float(lo_t), float(hi_t)
    if lo >= -tolerance and hi <= 1 + tolerance:
        return x
    where = "after un-normalising with mean/std " if normalised else ""
    if hi > 2.0 and not normalised and lo >= -tolerance:
        hint = "0-255 pixels? divide by 255"
    elif not normalised:
        hint = "normalised input? pass mean= and std= (the normalisation you applied)"
    else:
        hint = "are mean/std the ones your transforms applied?"
    raise MixInputError(
        f"images {where}span [{lo:.3g}, {hi:.3g}], outside [0, 1] (tolerance {tolerance:g}): {hint}"
    )


def check_labels(labels: Any, n: int, num_classes: int, device: torch.device) -> torch.Tensor:
    """N class indices (int64) or N x ``num_classes`` probabilities (float32), or a clear error."""
    want = f"{n} integer class indices or {n} x {num_classes} class probabilities"
    try:
        y = torch.as_tensor(labels, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise MixInputError(f"labels={short_repr(labels)}: need {want}") from None
    if y.dtype == torch.bool or y.is_complex() or y.dim() not in (1, 2) or y.shape[0] != n:
        raise MixInputError(f"labels: need {want}, got {y.dtype} {tuple(y.shape)}")
    if y.dim() == 2:
        return _probabilities(y.float(), num_classes, want)
    if y.is_floating_point():
        raise MixInputError(f"labels: need {want}, got {y.dtype} {tuple(y.shape)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise MixInputError(f"labels span [{lo}, {hi}], outside [0, {num_classes})")
    return y.long()


def _probabilities(y: torch.Tensor, num_classes: int, want: str) -> torch.Tensor:
    if y.shape[1] != num_classes:
        raise MixInputError(f"labels: need {want}, got {tuple(y.shape)}")
    if not bool(torch.isfinite(y).all()) or float(y.min()) < 0:
        raise MixInputError("labels: class probabilities must be finite and >= 0")
    sums = y.sum(1)
    bad = (sums - 1).abs() > PROB_TOLERANCE
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise MixInputError(
            f"labels: class probabilities must sum to 1, row {row} sums to {float(sums[row]):g}"
        )
    return y
