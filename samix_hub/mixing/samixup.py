"""``SAMixUp``'s mixing: a drop-in learned mixup for existing training loops (docs/mixup.md).

:class:`GeneratorMixUp` takes a loaded generator; ``samix_hub.SAMixUp`` (:mod:`samix_hub.hub.api`)
is the same class that also takes a source to load.

``images, targets = mixup(images, labels)`` with soft targets, as timm's ``Mixup`` and
torchvision's transforms v2 ``MixUp`` / ``CutMix`` return them, with timm's ``prob``,
``switch_prob`` (classic MixUp / CutMix fallbacks), ``mode`` and ``mixup_enabled``, and
torchvision's input structures (tuple, list, dict with a ``labels_getter``). The learned mixing
is the SAMix^P path of :class:`~samix_hub.mixing.methods.SAMix` (λ ~ Beta(α, α), the 0.08
margin fallback to MixUp, optional ``mask_adjust``); the modes and pairs are
:mod:`samix_hub.mixing.dropin`. This module adds the soft targets, normalised input, the input
structures and the input checks. Also here: :meth:`GeneratorMixUp.collate` (a ``DataLoader``
``collate_fn``) and :func:`datasets_map_fn` (for ``datasets.Dataset.map(fn, batched=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from samix_hub.errors import UserError
from samix_hub.mixing.dropin import DropInParams, DropInPlan
from samix_hub.mixing.masks import LAM_MARGIN, apply_mask
from samix_hub.mixing.methods import SAMix
from samix_hub.mixing.sampling import DEFAULT_ALPHA

__all__ = [
    "GeneratorMixUp",
    "MixInputError",
    "soft_targets",
    "find_labels",
    "datasets_map_fn",
    "RANGE_TOLERANCE",
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


def _as_tensor(values: Sequence[float] | torch.Tensor | None, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0 or not torch.isfinite(t).all() or (name == "std" and (t <= 0).any()):
        raise MixInputError(f"{name}={values!r}: need finite values (std > 0), one per channel")
    return t.view(1, -1, 1, 1)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_number(name: str, value: Any, low: float, high: float, closed_high: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (value > high if closed_high else value >= high):
        bracket = "]" if closed_high else ")"
        raise MixInputError(f"{name}={value!r}: need a number in [{low:g}, {high:g}{bracket}")
    return float(value)


class GeneratorMixUp:
    """Learned mixup with a frozen SAMix^P generator, called like timm's ``Mixup`` and
    torchvision's v2 ``MixUp`` / ``CutMix`` (docs/mixup.md has the whole contract).

    ``generator``: a loaded generator (``samix_hub.load_generator``, torch or onnxruntime;
    ``samix_hub.SAMixUp`` also takes a source for it). ``mean``/``std``: give the
    normalisation of your batches when they are normalised; images are then un-normalised, mixed
    in pixel space and normalised again. Without them, images must be floats in [0, 1].

    As timm: ``prob`` (a batch, pair or element is mixed at all), ``switch_prob`` (it uses
    classic MixUp, α = ``mixup_alpha``, or CutMix, α = ``cutmix_alpha``, instead of the learned
    mask), ``mode`` (``batch``, ``pair`` or ``elem``: one λ per batch, per pair, per image),
    ``label_smoothing`` and ``mixup_enabled``. λ of the learned mask ~ Beta(α, α); draws come from
    ``rng`` (or ``seed``; None of both uses torch's global RNG).
    """

    def __init__(
        self,
        generator: Any,
        num_classes: int,
        alpha: float = DEFAULT_ALPHA["samix"],
        label_smoothing: float = 0.0,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        *,
        prob: float = 1.0,
        switch_prob: float = 0.0,
        mixup_alpha: float = DEFAULT_ALPHA["mixup"],
        cutmix_alpha: float = 0.0,
        mode: str = "batch",
        mixup_enabled: bool = True,
        labels_getter: str | Callable[[Any], Any] = "default",
        rng: torch.Generator | None = None,
        seed: int | None = None,
        per_sample: bool = False,
        margin: float = LAM_MARGIN,
        mask_adjust: float = 0.0,
        tolerance: float = RANGE_TOLERANCE,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise MixInputError(f"num_classes={num_classes!r}: need a positive integer")
        self.label_smoothing = _check_number("label_smoothing", label_smoothing, 0, 1, False)
        _check_number("margin", margin, 0, 0.5, False)
        self.tolerance = _check_number("tolerance", tolerance, 0, math.inf, False)
        if (mean is None) != (std is None):
            raise MixInputError("give both mean and std (normalised input) or neither ([0, 1])")
        if not isinstance(mixup_enabled, bool):
            raise MixInputError(f"mixup_enabled={mixup_enabled!r}: need True or False")
        if per_sample and mode != "batch":
            raise MixInputError(f"per_sample=True is mode='elem'; got mode={mode!r} as well")
        if labels_getter != "default" and not callable(labels_getter):
            raise MixInputError(f"labels_getter={labels_getter!r}: need 'default' or a callable")
        if seed is not None and rng is not None:
            raise MixInputError("give rng= or seed=, not both")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise MixInputError(f"seed={seed!r}: need an integer")
        try:
            self.method = SAMix(generator, alpha, margin=margin, mask_adjust=mask_adjust)
            self.plan = DropInPlan(
                self.method,
                "elem" if per_sample else mode,
                prob=prob,
                switch_prob=switch_prob,
                mixup_alpha=mixup_alpha,
                cutmix_alpha=cutmix_alpha,
            )
        except ValueError as exc:
            raise MixInputError(str(exc)) from None
        self.generator = generator
        self.num_classes = num_classes
        self.mean = _as_tensor(mean, "mean")
        self.std = _as_tensor(std, "std")
        self.rng = torch.Generator().manual_seed(seed) if seed is not None else rng
        #: timm's switch: False turns mixing off (targets are still soft, smoothed one-hot rows)
        self.mixup_enabled = mixup_enabled
        self.labels_getter: Callable[[Any], Any] = (
            find_labels if labels_getter == "default" else labels_getter  # type: ignore[assignment]
        )
        #: the :class:`~samix_hub.mixing.dropin.DropInParams` of the last call, for logging
        self.last_params: DropInParams | None = None

    @property
    def alpha(self) -> float:
        return self.method.alpha

    @property
    def mode(self) -> str:
        return self.plan.mode

    @property
    def prob(self) -> float:
        return self.plan.prob

    @property
    def switch_prob(self) -> float:
        return self.plan.switch_prob

    # ------------------------------------------------------------------ checks
    def _pixels(self, images: Any, normalised: bool) -> torch.Tensor:
        """Float images in [0, 1] (un-normalised when ``normalised``), or a clear error."""
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
        if normalised and self.mean is not None and self.std is not None:
            if self.mean.shape[1] not in (1, channels):
                raise MixInputError(
                    f"mean/std have {self.mean.shape[1]} values for {channels}-channel images"
                )
            x = x * self.std.to(x.device) + self.mean.to(x.device)
        if not bool(torch.isfinite(x).all()):
            raise MixInputError("images contain NaN or infinite values")
        lo_t, hi_t = torch.aminmax(x)
        lo, hi = float(lo_t), float(hi_t)
        if lo >= -self.tolerance and hi <= 1 + self.tolerance:
            return x
        where = "after un-normalising with mean/std " if normalised else ""
        if hi > 2.0 and not normalised and lo >= -self.tolerance:
            hint = "0-255 pixels? divide by 255"
        elif not normalised:
            hint = "normalised input? pass mean= and std= (the normalisation you applied)"
        else:
            hint = "are mean/std the ones your transforms applied?"
        raise MixInputError(
            f"images {where}span [{lo:.3g}, {hi:.3g}], outside [0, 1] "
            f"(tolerance {self.tolerance:g}): {hint}"
        )

    def _labels(self, labels: Any, n: int, device: torch.device) -> torch.Tensor:
        """N class indices (int64) or N x ``num_classes`` probabilities (float32)."""
        want = f"{n} integer class indices or {n} x {self.num_classes} class probabilities"
        try:
            y = torch.as_tensor(labels, device=device)
        except (TypeError, ValueError, RuntimeError):
            raise MixInputError(f"labels={_short(labels)}: need {want}") from None
        if y.dtype == torch.bool or y.is_complex() or y.dim() not in (1, 2) or y.shape[0] != n:
            raise MixInputError(f"labels: need {want}, got {y.dtype} {tuple(y.shape)}")
        if y.dim() == 2:
            return self._probabilities(y.float(), want)
        if y.is_floating_point():
            raise MixInputError(f"labels: need {want}, got {y.dtype} {tuple(y.shape)}")
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.num_classes:
            raise MixInputError(f"labels span [{lo}, {hi}], outside [0, {self.num_classes})")
        return y.long()

    def _probabilities(self, y: torch.Tensor, want: str) -> torch.Tensor:
        if y.shape[1] != self.num_classes:
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

    def _place_generator(self, device: torch.device) -> None:
        gen = self.generator
        if isinstance(gen, torch.nn.Module):
            param = next(gen.parameters(), None)
            if param is not None and param.device != device:
                gen.to(device)

    # ------------------------------------------------------------------ calls
    def mix(
        self,
        images: torch.Tensor,
        labels: Any,
        rng: torch.Generator | None = None,
        *,
        pixels: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mixed images, soft targets)``; mixed images are normalised like the input.

        Images that are not mixed (``prob``, ``mixup_enabled=False``) come back unchanged.
        ``pixels=True``: the images are in [0, 1] even though mean/std are set, and so is the
        result (``rng`` replaces the instance's RNG for this call).
        """
        normalised = self.mean is not None and not pixels
        x = self._pixels(images, normalised)
        n = int(images.shape[0])
        y = self._labels(labels, n, images.device)
        try:
            params = self.plan.sample(
                n,
                (int(images.shape[-2]), int(images.shape[-1])),
                rng if rng is not None else self.rng,
                enabled=self.mixup_enabled,
            )
        except ValueError as exc:
            raise MixInputError(str(exc)) from None
        self.last_params = params
        partner = params.partner.to(images.device)
        targets = soft_targets(
            y, self.num_classes, params.lam_rows().to(images.device), partner, self.label_smoothing
        )
        mixed_rows = params.mixed_rows().to(images.device)
        if not bool(mixed_rows.any()):
            return images, targets
        self._place_generator(images.device)
        seen = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # grayscale: RGB for the mask
        mask = self.plan.mask(seen, params)
        mixed = apply_mask(x, mask, partner)
        if normalised and self.mean is not None and self.std is not None:
            mixed = (mixed - self.mean.to(mixed.device)) / self.std.to(mixed.device)
        plain = images.as_subclass(torch.Tensor)
        out = torch.where(mixed_rows.view(-1, 1, 1, 1), mixed.to(images.dtype), plain)
        if type(images) is not torch.Tensor:  # e.g. torchvision's tv_tensors.Image
            out = out.as_subclass(type(images))
        return out, targets

    def __call__(self, *inputs: Any) -> Any:
        """``mixup(images, labels)``, ``mixup((images, labels))``, ``mixup([images, labels])``
        (further items, as ``(images, labels, ids)``, come back untouched),
        ``mixup({'image': images, 'labels': labels})`` (the same structure comes back, images
        mixed and labels replaced by soft targets), or ``mixup([(image, label), ...])``
        (samples, as a ``collate_fn``: see :meth:`collate`)."""
        if not inputs:
            raise MixInputError("call as mixup(images, labels), got no arguments")
        if len(inputs) > 1:
            return self._mix_structure(inputs, None)
        batch = inputs[0]
        if isinstance(batch, (tuple, list)) and batch and not isinstance(batch[0], torch.Tensor):
            return self.collate(batch)
        return self._mix_structure(batch, None)

    def _mix_structure(self, inputs: Any, rng: torch.Generator | None) -> Any:
        labels = self.labels_getter(inputs)
        images = _find_images(inputs, labels)
        mixed, targets = self.mix(images, labels, rng)
        out, found = _replace(inputs, {id(images): mixed, id(labels): targets})
        if found != {id(images), id(labels)}:
            raise MixInputError("labels_getter returned labels that are not an item of the input")
        return out

    def collate(self, batch: Sequence[Any]) -> Any:
        """A ``DataLoader`` ``collate_fn``: ``default_collate`` the samples, then mix.

        ``(image, label)`` samples give ``(images, targets)``; dict samples give a dict.
        In ``DataLoader`` worker processes each worker draws from its own RNG, seeded
        from ``rng``'s seed and the worker's seed (so workers do not repeat each other's λ).
        """
        from torch.utils.data import default_collate, get_worker_info

        if len(batch) == 0:
            raise MixInputError("collate: an empty batch, nothing to mix")
        collated = default_collate(list(batch))
        if isinstance(collated, list):
            collated = tuple(collated)
        info = get_worker_info()
        rng = self.rng
        if info is not None:
            base = self.rng.initial_seed() if self.rng is not None else 0
            rng = getattr(self, "_worker_rng", None)
            if rng is None:
                rng = torch.Generator().manual_seed((base * 1_000_003 + info.seed) % 2**63)
                self._worker_rng = rng
        return self._mix_structure(collated, rng)

    def __repr__(self) -> str:
        norm = "normalised input" if self.mean is not None else "input in [0, 1]"
        return (
            f"SAMixUp(alpha={self.alpha:g}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing:g}, mode={self.mode!r}, prob={self.prob:g}, "
            f"switch_prob={self.switch_prob:g}, mixup_enabled={self.mixup_enabled}, {norm})"
        )


def _find_images(inputs: Any, labels: Any) -> Any:
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


def _replace(obj: Any, new: dict[int, Any]) -> tuple[Any, set[int]]:
    """``obj`` with the items whose ``id`` is a key of ``new`` replaced (through tuples, lists
    and dicts), and the ids that were found."""
    if id(obj) in new:
        return new[id(obj)], {id(obj)}
    found: set[int] = set()
    if isinstance(obj, Mapping):
        items = {}
        for k, v in obj.items():
            items[k], f = _replace(v, new)
            found |= f
        try:
            return type(obj)(items), found  # type: ignore[call-arg]  # dict, OrderedDict, ...
        except TypeError:
            return items, found
    if isinstance(obj, (tuple, list)):
        values = []
        for v in obj:
            r, f = _replace(v, new)
            values.append(r)
            found |= f
        if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
            return type(obj)(*values), found
        return type(obj)(values), found
    return obj, found


# ---------------------------------------------------------------------------- datasets
def _image_to_chw(image: Any) -> tuple[torch.Tensor, bool]:
    """(float C x H x W tensor, whether it was pixels: a PIL image or uint8, scaled by 1/255).

    PIL images in mode ``L`` stay one channel and ``RGB`` three; other modes (``RGBA``, ``P``,
    ``CMYK``, ...) are converted to ``RGB`` (the alpha channel is dropped)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        arr = np.asarray(image)
        t = torch.from_numpy(arr.copy())
        t = t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)
        return t.float() / 255.0, True
    try:
        t = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    except (TypeError, ValueError, RuntimeError):
        raise MixInputError(
            f"image={_short(image)}: need a PIL image, an array or a tensor"
        ) from None
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3:
        raise MixInputError(f"image: need H x W, C x H x W or H x W x C, got {tuple(t.shape)}")
    if t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
        t = t.permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.float() / 255.0, True
    if not t.is_floating_point():
        raise MixInputError(f"image: dtype {t.dtype}; need uint8 pixels or floats")
    return t.float(), False


def _to_pil(image: torch.Tensor) -> Any:
    """A C x H x W image in [0, 1] as a PIL image (``L`` or ``RGB``), rounded to uint8."""
    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def datasets_map_fn(
    mixup: GeneratorMixUp,
    image_column: str = "image",
    label_column: str = "label",
    target_column: str = "soft_label",
) -> Callable[[Any], dict[str, Any]]:
    """A function for ``datasets.Dataset.map(fn, batched=True, remove_columns=[label_column])``.

    Each batch is mixed by ``mixup``. The output has the columns of ``samix-hub mix``
    (``image``, ``label_a``, ``label_b``, ``lam``: row ``i`` is worth ``lam`` of ``label_a`` and
    ``1 - lam`` of ``label_b``) plus ``target_column`` (``num_classes`` float32 values summing to
    1); ``label_column`` becomes ``label_a`` and is removed (give ``remove_columns`` too: a
    formatted data set, ``with_format(...)``, keeps it otherwise). PIL images and uint8 arrays
    are pixels and come back as PIL images (a ``datasets.Image`` column); float arrays or
    tensors are taken as ``mixup`` expects them (normalised when it has mean/std) and come back
    as float32 C x H x W arrays in the same space. A batch of one image (the last one) is mixed
    with the last image of the batch before it.
    """
    kept: dict[str, Any] = {}  # the last image and label of the previous batch

    def fn(batch: Any) -> dict[str, Any]:
        if image_column not in batch or label_column not in batch:
            raise MixInputError(
                f"batch has columns {sorted(batch)}; need {image_column!r} and {label_column!r}"
            )
        raw_labels = batch[label_column]
        if not isinstance(raw_labels, (list, tuple)) and np.ndim(raw_labels) == 0:
            raise MixInputError(
                "datasets_map_fn mixes whole batches: call Dataset.map(fn, batched=True) "
                f"(got one example, {label_column}={_short(raw_labels)})"
            )
        decoded = [_image_to_chw(img) for img in batch[image_column]]
        if any(t.shape[0] == 3 for t, _ in decoded):  # a batch mixing L and RGB: all RGB
            decoded = [(t.expand(3, -1, -1) if t.shape[0] == 1 else t, p) for t, p in decoded]
        pixels = {p for _, p in decoded}
        if len(pixels) != 1:
            raise MixInputError(
                f"{image_column}: a batch mixing pixel (uint8/PIL) and float images"
            )
        sizes = {tuple(t.shape) for t, _ in decoded}
        if len(sizes) != 1:
            raise MixInputError(f"{image_column}: images of several sizes in one batch {sizes}")
        images = torch.stack([t for t, _ in decoded])
        try:
            labels = torch.as_tensor(np.asarray(raw_labels))
        except (TypeError, ValueError, RuntimeError):
            raise MixInputError(
                f"{label_column}={_short(raw_labels)}: need class indices"
            ) from None
        n, is_pixels = images.shape[0], pixels.pop()
        x, y = images, labels
        if n == 1:
            if not kept:
                raise MixInputError(
                    "a batch of one image and no earlier batch to pair it with: nothing to mix "
                    "(a data set, or a num_proc shard, of one row?)"
                )
            if kept["image"].shape != images.shape[1:]:
                raise MixInputError(
                    f"a batch of one image of size {tuple(images.shape[1:])} cannot be paired "
                    f"with the previous batch's image of size {tuple(kept['image'].shape)}"
                )
            x = torch.cat([images, kept["image"][None]])
            y = torch.cat([labels.reshape(1), kept["label"].reshape(1).to(labels.dtype)])
        kept["image"], kept["label"] = images[-1], labels[-1]
        mixed, targets = mixup.mix(x, y, pixels=is_pixels)
        params = mixup.last_params
        assert params is not None
        lam, partner = params.lam_rows()[:n], params.partner[:n]
        if hasattr(batch, "pop"):  # an unformatted batch: removing it here drops the column
            batch.pop(label_column, None)
        out_images = [_to_pil(m) for m in mixed[:n]] if is_pixels else list(mixed[:n].numpy())
        return {
            image_column: out_images,
            "label_a": y[:n].tolist(),
            "label_b": y[partner].tolist(),
            "lam": lam.numpy().astype(np.float32),
            target_column: list(targets[:n].numpy().astype(np.float32)),
        }

    return fn
