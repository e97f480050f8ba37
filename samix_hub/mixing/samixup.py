"""``SAMixUp``'s mixing: a drop-in learned mixup for existing training loops (docs/mixup.md).

:class:`GeneratorMixUp` takes a loaded generator; ``samix_hub.SAMixUp`` (:mod:`samix_hub.hub.api`)
is the same class that also takes a source to load.

``images, targets = mixup(images, labels)`` with soft targets, as timm's ``Mixup`` and
torchvision's transforms v2 ``MixUp`` / ``CutMix`` return them, with timm's ``prob``,
``switch_prob`` (classic MixUp / CutMix fallbacks), ``mode`` and ``mixup_enabled``, and
torchvision's input structures (tuple, list, dict with a ``labels_getter``). The learned mixing
is the SAMix^P path of :class:`~samix_hub.mixing.methods.SAMix` (λ ~ Beta(α, α), the λ margin
fallback to MixUp, optional ``mask_adjust``); the modes and pairs are the
:class:`~samix_hub.mixing.dropin.DropInPlan`, whose ``mix`` mixes. The input structures, soft
targets and input checks are :mod:`samix_hub.mixing.mixup_inputs`; :meth:`GeneratorMixUp.collate`
is a ``DataLoader`` ``collate_fn``, and :func:`~samix_hub.mixing.datasets_map.datasets_map_fn`
(also importable from here) maps a ``datasets.Dataset`` (``map(fn, batched=True)``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from samix_hub.mixing.datasets_map import datasets_map_fn
from samix_hub.mixing.dropin import DropInParams, DropInPlan
from samix_hub.mixing.masks import LAM_MARGIN
from samix_hub.mixing.methods import SAMix
from samix_hub.mixing.mixup_inputs import (
    RANGE_TOLERANCE,
    MixInputError,
    channel_values,
    check_labels,
    check_number,
    find_images,
    find_labels,
    replace_items,
    soft_targets,
    to_pixels,
)
from samix_hub.mixing.read_size import DEFAULT_GENERATOR_SCALE, scaled_masks
from samix_hub.mixing.sampling import DEFAULT_ALPHA

__all__ = [
    "GeneratorMixUp",
    "MixInputError",
    "soft_targets",
    "find_labels",
    "datasets_map_fn",
    "RANGE_TOLERANCE",
]


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
    ``rng`` (or ``seed``; None of both uses torch's global RNG). ``generator_scale``: the
    fraction of its native size a torch generator's encoder reads the batch at (default
    :data:`~samix_hub.mixing.read_size.DEFAULT_GENERATOR_SCALE`, as ``finetune``; 1 is the
    paper's read); an onnxruntime generator reads at its native size and takes only 1.
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
        generator_scale: float | None = None,
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise MixInputError(f"num_classes={num_classes!r}: need a positive integer")
        self.label_smoothing = check_number("label_smoothing", label_smoothing, 0, 1, False)
        check_number("margin", margin, 0, 0.5, False)
        self.tolerance = check_number("tolerance", tolerance, 0, math.inf, False)
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
            if generator_scale is None and isinstance(generator, torch.nn.Module):
                generator_scale = DEFAULT_GENERATOR_SCALE
            masks = scaled_masks(generator, generator_scale)
            self.method = SAMix(masks, alpha, margin=margin, mask_adjust=mask_adjust)
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
        self.mean = channel_values(mean, "mean")
        self.std = channel_values(std, "std")
        self.rng = torch.Generator().manual_seed(seed) if seed is not None else rng
        #: timm's switch: False turns mixing off (targets are still soft, smoothed one-hot rows)
        self.mixup_enabled = mixup_enabled
        self.labels_getter: Callable[[Any], Any] = (
            find_labels if isinstance(labels_getter, str) else labels_getter  # "default"
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
        mean, std = (self.mean, self.std) if normalised else (None, None)
        x = to_pixels(images, mean, std, self.tolerance)
        n = int(images.shape[0])
        y = check_labels(labels, n, self.num_classes, images.device)
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
        _, mixed = self.plan.mix(x, params, mask_images=seen)
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
        images = find_images(inputs, labels)
        mixed, targets = self.mix(images, labels, rng)
        out, found = replace_items(inputs, {id(images): mixed, id(labels): targets})
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
