"""Mixing methods behind one interface: sample parameters, then apply them.

Modelled on torchvision's transforms v2 MixUp/CutMix (parameters sampled separately from their
application, explicit RNGs, ``rng``), returning a :class:`MixedBatch` whose labels are
``(label_a, label_b, lam)``: sample ``i`` weighs ``lam[i]``, its partner ``1 - lam[i]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from samix_hub.mixing.masks import (
    LAM_MARGIN,
    apply_mask,
    check_temperature,
    margin_fallback,
    mask_adjust,
    sharpen,
)
from samix_hub.mixing.sampling import (
    DEFAULT_ALPHA,
    box_lam,
    check_alpha,
    check_pairing,
    sample_box,
    sample_lam,
    sample_partner,
)

__all__ = [
    "MixedBatch",
    "MixParams",
    "MixMethod",
    "Vanilla",
    "MixUp",
    "CutMix",
    "SAMix",
    "MixSwitch",
    "finish_mask",
    "build_method",
]


@dataclass
class MixedBatch:
    """A mixed batch; ``lam`` has one value per sample and labels weigh ``lam`` / ``1 - lam``."""

    images: torch.Tensor
    label_a: torch.Tensor
    label_b: torch.Tensor
    lam: torch.Tensor
    mask: torch.Tensor | None = None
    partner: torch.Tensor | None = None


@dataclass
class MixParams:
    """Sampled parameters of one mixing step.

    ``lam`` is 0-d (one λ per batch, as the reference) or one value per sample (offline sets);
    ``boxes`` are CutMix boxes ``(y0, y1, x0, x1)``, one for the whole batch or one per sample;
    ``adjust`` rescales the SAMix mask to mean λ: for the batch (a bool) or per sample (a bool
    tensor).
    """

    lam: torch.Tensor
    partner: torch.Tensor
    boxes: list[tuple[int, int, int, int]] | None = None
    adjust: bool | torch.Tensor = False
    #: the method that drew these parameters, when a :class:`MixSwitch` chose among several
    method: MixMethod | None = None


class MixMethod:
    """Base class: ``sample_params``, then ``mask`` (weight of each image), then ``mix`` (the
    mask and the mixed images) or ``apply`` (with the labels).

    This is the one mixing path: training, fine-tuning, :class:`~samix_hub.SAMixUp` and
    ``samix-hub mix`` all build the mask here and mix with :func:`apply_mask` in :meth:`mix`.
    """

    name = "base"

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        raise NotImplementedError

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """The weight of each image (N x 1 x H x W); ``partner[i]`` gets ``1 - mask``."""
        raise NotImplementedError

    def mix(
        self, images: torch.Tensor, params: MixParams, mask_images: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask, mixed)``: the mask of ``mask_images`` (default ``images``; e.g. grayscale
        images repeated to RGB for a generator), then :func:`apply_mask` on ``images``."""
        mask = self.mask(images if mask_images is None else mask_images, params)
        return mask, apply_mask(images, mask, params.partner.to(images.device))

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        mask, mixed = self.mix(images, params)
        lam = _lam_vector(params.lam, mixed.shape[0], mixed.device)
        return MixedBatch(mixed, labels, labels[params.partner], lam, mask, params.partner)

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, rng: torch.Generator | None = None
    ) -> MixedBatch:
        params = self.sample_params(images.shape[0], _size(images), rng)
        params.partner = params.partner.to(images.device)
        return self.apply(images, labels, params)


def _size(images: torch.Tensor) -> tuple[int, int]:
    return int(images.shape[-2]), int(images.shape[-1])


def _lam_vector(lam: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    return lam.to(device=device, dtype=torch.float32).expand(n).clone()


def _constant_mask(images: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    n, _, h, w = images.shape
    lam_v = lam.to(images.device, images.dtype)
    return (lam_v.expand(n) if lam_v.dim() == 0 else lam_v).view(-1, 1, 1, 1).expand(n, 1, h, w)


class Vanilla(MixMethod):
    """No mixing: λ = 1, partner = self."""

    name = "vanilla"

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        return MixParams(lam=torch.tensor(1.0), partner=torch.arange(batch_size))

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        return _constant_mask(images, params.lam)

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        n = images.shape[0]
        return MixedBatch(
            images, labels, labels, _lam_vector(params.lam, n, images.device), None, params.partner
        )


class MixUp(MixMethod):
    """MixUp (Zhang et al. 2018): ``λ x + (1 - λ) x[π]``, λ ~ Beta(α, α) (CIFAR α = 1)."""

    name = "mixup"

    def __init__(self, alpha: float = DEFAULT_ALPHA["mixup"], pairing: str = "permutation") -> None:
        self.alpha = check_alpha(alpha)
        self.pairing = check_pairing(pairing)

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        lam = sample_lam(self.alpha, rng=rng)
        return MixParams(lam=lam, partner=sample_partner(batch_size, rng, self.pairing))

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """The constant λ of each sample."""
        return _constant_mask(images, params.lam)

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        out = super().apply(images, labels, params)
        out.mask = None  # a constant mask is not worth keeping
        return out


class CutMix(MixMethod):
    """CutMix (Yun et al. 2019): paste a box of side ``sqrt(1 - λ)`` from the partner.

    λ is corrected to the area actually kept after clipping (:func:`box_lam`).
    """

    name = "cutmix"

    def __init__(
        self, alpha: float = DEFAULT_ALPHA["cutmix"], pairing: str = "permutation"
    ) -> None:
        self.alpha = check_alpha(alpha)
        self.pairing = check_pairing(pairing)

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        lam = sample_lam(self.alpha, rng=rng)
        partner = sample_partner(batch_size, rng, self.pairing)
        h, w = image_size
        box = sample_box(float(lam), h, w, rng)
        return MixParams(lam=torch.tensor(box_lam(box, h, w)), partner=partner, boxes=[box])

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """1 outside the box, 0 inside (one box for the batch or one per sample)."""
        n, _, h, w = images.shape
        if not params.boxes:
            raise ValueError("cutmix needs boxes (sample_params draws them)")
        mask = torch.ones(n, 1, h, w, dtype=images.dtype, device=images.device)
        if len(params.boxes) == 1:
            y0, y1, x0, x1 = params.boxes[0]
            mask[:, :, y0:y1, x0:x1] = 0
        else:
            for i, (y0, y1, x0, x1) in enumerate(params.boxes):
                mask[i, :, y0:y1, x0:x1] = 0
        return mask


MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def finish_mask(
    mask: torch.Tensor,
    lam: float | torch.Tensor,
    adjust: bool | torch.Tensor = False,
    margin: float = LAM_MARGIN,
    temperature: float = 1.0,
) -> torch.Tensor:
    """A learned mask as SAMix uses it: ``mask_adjust`` where ``adjust`` (the batch or a per-sample
    bool tensor), the mask temperature (:func:`~samix_hub.mixing.masks.sharpen`, mean kept at
    λ), then the λ margin fallback to plain MixUp (docs/algorithm.md "SAMix^P")."""
    if isinstance(adjust, torch.Tensor):
        if bool(adjust.any()):
            flags = adjust.to(mask.device).view(-1, 1, 1, 1)
            mask = torch.where(flags, mask_adjust(mask, lam), mask)
    elif adjust:
        mask = mask_adjust(mask, lam)
    mask = sharpen(mask, lam, temperature)
    return margin_fallback(mask, lam, margin)


class SAMix(MixMethod):
    """Learned mixup with a mask function, e.g. a frozen :class:`~samix_hub.Generator` (SAMix^P).

    ``mask_fn(images, partner, lam) -> mask`` (weight of each image). λ ~ Beta(α, α) (α = 2);
    labels use the sampled λ, never the mask mean; for ``λ <= 0.08`` or ``>= 0.92`` the mask is
    the constant λ (plain MixUp); with probability ``mask_adjust`` the mask is rescaled to mean λ.
    One λ per batch, as the reference; ``per_sample=True`` draws one per image. ``temperature``
    sharpens (< 1) or softens (> 1) the mask at the same mean (docs/algorithm.md "Mask
    temperature"); ``pairing`` as :func:`~samix_hub.mixing.sampling.sample_partner`.
    A :class:`~samix_hub.Generator` expects images in [0, 1]; :class:`~samix_hub.SAMixUp` wraps
    this path with soft targets, normalised input and input checks (docs/mixup.md).
    """

    name = "samix"

    def __init__(
        self,
        mask_fn: MaskFn,
        alpha: float = DEFAULT_ALPHA["samix"],
        margin: float = LAM_MARGIN,
        mask_adjust: float = 0.0,
        per_sample: bool = False,
        temperature: float = 1.0,
        pairing: str = "permutation",
    ) -> None:
        self.mask_fn = getattr(mask_fn, "masks", mask_fn)
        self.per_sample = per_sample
        self.temperature = check_temperature(temperature)
        self.pairing = check_pairing(pairing)
        self.alpha = check_alpha(alpha)
        if not 0.0 <= mask_adjust <= 1.0:
            raise ValueError(f"mask_adjust is a probability in [0, 1], got {mask_adjust}")
        self.margin = margin
        self.mask_adjust = mask_adjust

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        lam = sample_lam(self.alpha, batch_size if self.per_sample else None, rng=rng)
        partner = sample_partner(batch_size, rng, self.pairing)
        adjust = bool(torch.rand((), generator=rng) < self.mask_adjust)
        return MixParams(lam=lam, partner=partner, adjust=adjust)

    @torch.no_grad()
    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """The mask function's mask, then :func:`finish_mask`."""
        lam = params.lam.to(images.device)
        raw = self.mask_fn(images, params.partner, lam)
        mask = torch.as_tensor(raw).to(images.device, images.dtype)
        return finish_mask(mask, lam, params.adjust, self.margin, self.temperature)


class MixSwitch(MixMethod):
    """timm's ``prob`` / ``switch_prob`` for any pair of methods, per batch.

    With probability ``1 - prob`` the batch is not mixed (λ = 1, partner = self); otherwise it is
    mixed by ``alternative`` with probability ``switch_prob`` and by ``main`` else. The choice is
    drawn from ``rng`` before the chosen method's own parameters and recorded in
    :attr:`MixParams.method`.
    """

    def __init__(
        self,
        main: MixMethod,
        alternative: MixMethod | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.0,
    ) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"mixing probability must be in [0, 1], got {prob}")
        if not 0.0 <= switch_prob <= 1.0:
            raise ValueError(f"switch probability must be in [0, 1], got {switch_prob}")
        if switch_prob > 0 and alternative is None:
            raise ValueError("switch_prob > 0 needs an alternative method")
        self.main, self.alternative = main, alternative
        self.prob, self.switch_prob = float(prob), float(switch_prob)
        self.name = main.name
        self._none = Vanilla()

    def choose(self, rng: torch.Generator | None = None) -> MixMethod:
        """The method of this batch (two uniform draws from ``rng``)."""
        u = torch.rand(2, generator=rng)
        if float(u[0]) >= self.prob:
            return self._none
        if self.alternative is not None and float(u[1]) < self.switch_prob:
            return self.alternative
        return self.main

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> MixParams:
        method = self.choose(rng)
        params = method.sample_params(batch_size, image_size, rng)
        params.method = method
        return params

    def _chosen(self, params: MixParams) -> MixMethod:
        if params.method is None:
            raise ValueError("MixSwitch parameters come from its own sample_params")
        return params.method

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        return self._chosen(params).mask(images, params)

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        return self._chosen(params).apply(images, labels, params)


def build_method(
    name: str,
    alpha: float | None = None,
    mask_fn: MaskFn | None = None,
    *,
    pairing: str = "permutation",
    prob: float = 1.0,
    switch_prob: float = 0.0,
    **kwargs: Any,
) -> MixMethod:
    """A method by name with the reference's CIFAR α (:data:`DEFAULT_ALPHA`) unless given.

    ``prob`` < 1 or ``switch_prob`` > 0 wrap it in a :class:`MixSwitch` whose alternative is
    CutMix (for MixUp and SAMix) or MixUp (for CutMix), at its own default α.
    """
    if name == "vanilla":
        return Vanilla()
    method = _build_one(name, alpha, mask_fn, pairing, **kwargs)
    if prob >= 1.0 and switch_prob <= 0.0:
        return method
    other = "mixup" if name == "cutmix" else "cutmix"
    return MixSwitch(method, _build_one(other, None, None, pairing), prob, switch_prob)


def _build_one(
    name: str, alpha: float | None, mask_fn: MaskFn | None, pairing: str, **kwargs: Any
) -> MixMethod:
    a = DEFAULT_ALPHA.get(name, 1.0) if alpha is None else alpha
    if name == "mixup":
        return MixUp(a, pairing)
    if name == "cutmix":
        return CutMix(a, pairing)
    if name in ("samix", "samix-p"):
        if mask_fn is None:
            raise ValueError("samix needs a generator (mask_fn)")
        return SAMix(mask_fn, a, pairing=pairing, **kwargs)
    raise ValueError(f"unknown mixing method {name!r} (vanilla, mixup, cutmix, samix)")
