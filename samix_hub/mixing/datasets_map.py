"""``SAMixUp`` over a Hugging Face data set: :func:`datasets_map_fn` for
``datasets.Dataset.map(fn, batched=True)`` (docs/mixup.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from samix_hub.mixing.dropin import DropInParams
from samix_hub.mixing.mixup_inputs import MixInputError, short_repr

__all__ = ["BatchMixUp", "datasets_map_fn", "image_to_chw", "to_pil"]


class BatchMixUp(Protocol):
    """What :func:`datasets_map_fn` uses of a :class:`~samix_hub.mixing.samixup.GeneratorMixUp`."""

    last_params: DropInParams | None

    def mix(
        self,
        images: torch.Tensor,
        labels: Any,
        rng: torch.Generator | None = None,
        *,
        pixels: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def image_to_chw(image: Any) -> tuple[torch.Tensor, bool]:
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
            f"image={short_repr(image)}: need a PIL image, an array or a tensor"
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


def to_pil(image: torch.Tensor) -> Any:
    """A C x H x W image in [0, 1] as a PIL image (``L`` or ``RGB``), rounded to uint8."""
    from PIL import Image

    arr = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


def datasets_map_fn(
    mixup: BatchMixUp,
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
                f"(got one example, {label_column}={short_repr(raw_labels)})"
            )
        images, is_pixels = _decode_images(batch[image_column], image_column)
        try:
            labels = torch.as_tensor(np.asarray(raw_labels))
        except (TypeError, ValueError, RuntimeError):
            raise MixInputError(
                f"{label_column}={short_repr(raw_labels)}: need class indices"
            ) from None
        n = images.shape[0]
        x, y = _with_previous(images, labels, kept) if n == 1 else (images, labels)
        kept["image"], kept["label"] = images[-1], labels[-1]
        mixed, targets = mixup.mix(x, y, pixels=is_pixels)
        params = mixup.last_params
        assert params is not None
        lam, partner = params.lam_rows()[:n], params.partner[:n]
        if hasattr(batch, "pop"):  # an unformatted batch: removing it here drops the column
            batch.pop(label_column, None)
        out_images = [to_pil(m) for m in mixed[:n]] if is_pixels else list(mixed[:n].numpy())
        return {
            image_column: out_images,
            "label_a": y[:n].tolist(),
            "label_b": y[partner].tolist(),
            "lam": lam.numpy().astype(np.float32),
            target_column: list(targets[:n].numpy().astype(np.float32)),
        }

    return fn


def _decode_images(column: Any, image_column: str) -> tuple[torch.Tensor, bool]:
    """A batch's images as one N x C x H x W float tensor, and whether they were pixels."""
    decoded = [image_to_chw(img) for img in column]
    if any(t.shape[0] == 3 for t, _ in decoded):  # a batch mixing L and RGB: all RGB
        decoded = [(t.expand(3, -1, -1) if t.shape[0] == 1 else t, p) for t, p in decoded]
    pixels = {p for _, p in decoded}
    if len(pixels) != 1:
        raise MixInputError(f"{image_column}: a batch mixing pixel (uint8/PIL) and float images")
    sizes = {tuple(t.shape) for t, _ in decoded}
    if len(sizes) != 1:
        raise MixInputError(f"{image_column}: images of several sizes in one batch {sizes}")
    return torch.stack([t for t, _ in decoded]), pixels.pop()


def _with_previous(
    images: torch.Tensor, labels: torch.Tensor, kept: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of one image and its label with the previous batch's last image and label."""
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
    return x, y
