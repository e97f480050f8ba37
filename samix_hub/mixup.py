"""``SAMixUp``: a drop-in learned mixup for existing training loops (docs/mixup.md).

``images, targets = mixup(images, labels)`` with soft targets, as timm's ``Mixup`` and
torchvision's transforms v2 ``MixUp`` / ``CutMix`` return them. The mixing itself is the SAMix^P
path of :class:`~samix_hub.mixing.methods.SAMix` (λ ~ Beta(α, α), the 0.08 margin fallback to
MixUp, optional ``mask_adjust``); this module adds the soft targets, normalised input and the
input checks. Also here: :meth:`SAMixUp.collate` (a ``DataLoader`` ``collate_fn``) and
:func:`datasets_map_fn` (a function for ``datasets.Dataset.map(fn, batched=True)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .errors import UserError
from .mixing.masks import LAM_MARGIN, apply_mask
from .mixing.methods import SAMix
from .mixing.sampling import DEFAULT_ALPHA

__all__ = ["SAMixUp", "MixInputError", "soft_targets", "datasets_map_fn", "RANGE_TOLERANCE"]

#: How far pixel values may stray outside [0, 1] (after un-normalising) before a batch is refused.
RANGE_TOLERANCE = 1e-2


class MixInputError(UserError, ValueError):
    """A batch that the generator cannot mix correctly (range, dtype, shape or labels)."""


def soft_targets(
    labels: torch.Tensor,
    num_classes: int,
    lam: torch.Tensor,
    partner: torch.Tensor,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """``lam * y + (1 - lam) * y[partner]`` with timm's label smoothing of ``y``.

    As ``timm.data.mixup.mixup_target``: off value ``s / C``, on value ``1 - s + s / C``; rows
    sum to 1. ``lam`` is one value per sample (or a 0-d tensor).
    """
    off = label_smoothing / num_classes
    y = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    y.scatter_(1, labels.long().view(-1, 1), 1.0 - label_smoothing + off)
    lam_v = torch.as_tensor(lam, dtype=y.dtype, device=y.device).reshape(-1, 1)
    return lam_v * y + (1 - lam_v) * y[partner.to(y.device)]


def _as_tensor(values: Sequence[float] | torch.Tensor | None, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    t = torch.as_tensor(values, dtype=torch.float32).flatten()
    if t.numel() == 0 or not torch.isfinite(t).all() or (name == "std" and (t <= 0).any()):
        raise MixInputError(f"{name}={values!r}: need finite values (std > 0), one per channel")
    return t.view(1, -1, 1, 1)


class SAMixUp:
    """Learned mixup with a frozen SAMix^P generator, called like timm's ``Mixup``.

    ``generator``: a loaded generator (``samix_hub.load_generator``, torch or onnxruntime) or a
    source for it (``builtin:NAME``, a folder, ``ORG/NAME[@REV]``). ``mean``/``std``: give the
    normalisation of your batches when they are normalised; images are then un-normalised, mixed
    in pixel space and normalised again. Without them, images must be floats in [0, 1]. A batch
    outside [0, 1] (beyond ``tolerance``, after un-normalising) raises :class:`MixInputError`.

    λ ~ Beta(α, α), one per batch (``per_sample=True``: one per image), drawn from ``rng``
    (a ``torch.Generator``; None uses torch's global RNG). Targets use the sampled λ;
    the generator's mask has mean λ when it is λ-exact (``calibration: "exact"``).
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
        rng: torch.Generator | None = None,
        per_sample: bool = False,
        margin: float = LAM_MARGIN,
        mask_adjust: float = 0.0,
        tolerance: float = RANGE_TOLERANCE,
    ) -> None:
        if isinstance(generator, (str, os.PathLike)):
            from .artifact.load import load_generator

            generator = load_generator(generator)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise MixInputError(f"num_classes={num_classes!r}: need a positive integer")
        if not 0.0 <= label_smoothing < 1.0:
            raise MixInputError(f"label_smoothing={label_smoothing!r}: need a value in [0, 1)")
        if (mean is None) != (std is None):
            raise MixInputError("give both mean and std (normalised input) or neither ([0, 1])")
        try:
            self.method = SAMix(
                generator, alpha, margin=margin, mask_adjust=mask_adjust, per_sample=per_sample
            )
        except ValueError as exc:
            raise MixInputError(str(exc)) from None
        self.generator = generator
        self.num_classes = num_classes
        self.label_smoothing = float(label_smoothing)
        self.mean = _as_tensor(mean, "mean")
        self.std = _as_tensor(std, "std")
        self.rng = rng
        self.tolerance = float(tolerance)
        self.last_params: Any = None  # the MixParams of the last call (λ, partner), for logging

    @property
    def alpha(self) -> float:
        return self.method.alpha

    # ------------------------------------------------------------------ checks
    def _pixels(self, images: torch.Tensor, normalised: bool) -> torch.Tensor:
        """Float images in [0, 1] (un-normalised when ``normalised``), or a clear error."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise MixInputError(f"images: need an N x C x H x W tensor, got {shape}")
        if not images.is_floating_point():
            raise MixInputError(
                f"images: dtype {images.dtype}; convert to float in [0, 1] first "
                "(e.g. transforms.v2.ToDtype(torch.float32, scale=True))"
            )
        x = images.float()
        if normalised and self.mean is not None and self.std is not None:
            if self.mean.shape[1] not in (1, x.shape[1]):
                raise MixInputError(
                    f"mean/std have {self.mean.shape[1]} values for {x.shape[1]}-channel images"
                )
            x = x * self.std.to(x.device) + self.mean.to(x.device)
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
        y = torch.as_tensor(labels, device=device)
        if y.dim() != 1 or y.shape[0] != n or y.is_floating_point() or y.dtype == torch.bool:
            raise MixInputError(
                f"labels: need {n} integer class indices, got {y.dtype} {tuple(y.shape)}"
            )
        if n and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise MixInputError(
                f"labels span [{int(y.min())}, {int(y.max())}], outside [0, {self.num_classes})"
            )
        return y.long()

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

        ``pixels=True``: the images are in [0, 1] even though mean/std are set, and so is the
        result (``rng`` replaces the instance's RNG for this call).
        """
        normalised = self.mean is not None and not pixels
        x = self._pixels(images, normalised)
        y = self._labels(labels, images.shape[0], images.device)
        self._place_generator(images.device)
        params = self.method.sample_params(
            images.shape[0],
            (int(images.shape[-2]), int(images.shape[-1])),
            rng if rng is not None else self.rng,
        )
        params.partner = params.partner.to(images.device)
        mask = self.method.mask(x, params)
        mixed = apply_mask(x, mask, params.partner)
        if normalised and self.mean is not None and self.std is not None:
            mixed = (mixed - self.mean.to(mixed.device)) / self.std.to(mixed.device)
        lam = params.lam.to(images.device, torch.float32).expand(images.shape[0])
        self.last_params = params
        targets = soft_targets(y, self.num_classes, lam, params.partner, self.label_smoothing)
        return mixed.to(images.dtype), targets

    def __call__(self, *inputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``mixup(images, labels)``, ``mixup((images, labels))`` (a collated batch) or
        ``mixup([(image, label), ...])`` (samples, as a ``collate_fn``: see :meth:`collate`)."""
        if len(inputs) == 1 and isinstance(inputs[0], (tuple, list)):
            batch = inputs[0]
            first = batch[0] if len(batch) else None
            if len(batch) == 2 and isinstance(first, torch.Tensor) and first.dim() == 4:
                inputs = tuple(batch)
            else:
                return self.collate(batch)
        if len(inputs) != 2:
            raise MixInputError(f"call as mixup(images, labels), got {len(inputs)} arguments")
        return self.mix(inputs[0], inputs[1])

    def collate(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """A ``DataLoader`` ``collate_fn``: ``default_collate`` a list of (image, label), then mix.

        In ``DataLoader`` worker processes each worker draws from its own RNG, seeded
        from ``rng``'s seed and the worker's seed (so workers do not repeat each other's λ).
        """
        from torch.utils.data import default_collate, get_worker_info

        images, labels = default_collate(list(batch))
        info = get_worker_info()
        rng = self.rng
        if info is not None:
            base = self.rng.initial_seed() if self.rng is not None else 0
            rng = getattr(self, "_worker_rng", None)
            if rng is None:
                rng = torch.Generator().manual_seed((base * 1_000_003 + info.seed) % 2**63)
                self._worker_rng = rng
        return self.mix(images, labels, rng)

    def __repr__(self) -> str:
        norm = "normalised input" if self.mean is not None else "input in [0, 1]"
        return (
            f"SAMixUp(alpha={self.alpha:g}, num_classes={self.num_classes}, "
            f"label_smoothing={self.label_smoothing:g}, {norm})"
        )


def _image_to_chw(image: Any) -> tuple[torch.Tensor, bool]:
    """(float C x H x W tensor, whether it was uint8 pixels scaled by 1/255) of a PIL image, an
    HWC/CHW array or a tensor."""
    from PIL import Image

    is_pil = isinstance(image, Image.Image)
    t = image if isinstance(image, torch.Tensor) else torch.from_numpy(np.array(image))
    if t.dim() == 2:
        t = t.unsqueeze(0 if not is_pil else -1)
    channels_last = t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4)
    if t.dim() == 3 and (is_pil or channels_last):
        t = t.permute(2, 0, 1)
    if t.dtype == torch.uint8:
        return t.float() / 255.0, True
    return t.float(), False


def datasets_map_fn(
    mixup: SAMixUp,
    image_column: str = "image",
    label_column: str = "label",
    target_column: str = "soft_label",
) -> Callable[[dict[str, list[Any]]], dict[str, Any]]:
    """A function for ``datasets.Dataset.map(fn, batched=True)``: each batch mixed by ``mixup``.

    Images of one size per batch become float32 C x H x W arrays. PIL images and uint8 arrays
    are pixels (scaled by 1/255) and stay in [0, 1]; float arrays or tensors are taken as
    ``mixup`` expects them (normalised when it has mean/std) and come back the same way.
    ``target_column`` gets the soft targets (``num_classes`` float32 values summing to 1);
    the other columns are kept.
    """

    def fn(batch: dict[str, list[Any]]) -> dict[str, Any]:
        if image_column not in batch or label_column not in batch:
            raise MixInputError(
                f"batch has columns {sorted(batch)}; need {image_column!r} and {label_column!r}"
            )
        decoded = [_image_to_chw(img) for img in batch[image_column]]
        images = [t for t, _ in decoded]
        sizes = {tuple(t.shape) for t in images}
        if len(sizes) != 1:
            raise MixInputError(f"{image_column}: images of several sizes in one batch {sizes}")
        pixels = all(scaled for _, scaled in decoded)
        labels = torch.as_tensor(batch[label_column])
        mixed, targets = mixup.mix(torch.stack(images), labels, pixels=pixels)
        out = dict(batch)
        out[image_column] = list(mixed.numpy().astype(np.float32))
        out[target_column] = list(targets.numpy().astype(np.float32))
        return out

    return fn
