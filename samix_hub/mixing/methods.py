"""Mixing methods behind one interface: sample parameters, then apply them.

Modelled on torchvision's transforms v2 MixUp/CutMix (parameters sampled separately from their
application, explicit generators), returning a :class:`MixedBatch` whose labels are
``(label_a, label_b, lam)``: sample ``i`` weighs ``lam[i]``, its partner ``1 - lam[i]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .masks import LAM_MARGIN, apply_mask, margin_fallback, mask_adjust
from .sampling import check_alpha, sample_box, sample_lam, sample_partner

__all__ = [
    "MixedBatch",
    "MixParams",
    "MixMethod",
    "Vanilla",
    "MixUp",
    "CutMix",
    "SAMix",
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
    """Sampled parameters of one mixing step."""

    lam: torch.Tensor  # 0-d: one λ per batch, as the reference
    partner: torch.Tensor
    box: tuple[int, int, int, int] | None = None
    adjust: bool = False


class MixMethod:
    """Base class: ``sample_params`` then ``apply``; ``__call__`` does both."""

    name = "base"

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], generator: torch.Generator | None = None
    ) -> MixParams:
        raise NotImplementedError

    def apply(self, images: torch.Tensor, labels: torch.Tensor, params: MixParams) -> MixedBatch:
        raise NotImplementedError

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> MixedBatch:
        params = self.sample_params(images.shape[0], tuple(images.shape[-2:]), generator)
        params.partner = params.partner.to(images.device)
        return self.apply(images, labels, params)


def _lam_vector(lam: torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    return lam.to(device=device, dtype=torch.float32).expand(n).clone()


def _mixed_batch(
    mixed: torch.Tensor, labels: torch.Tensor, params: MixParams, mask: torch.Tensor | None
) -> MixedBatch:
    """Labels ``(y, y[partner])`` weighted by the sampled λ, one value per sample."""
    lam = _lam_vector(params.lam, mixed.shape[0], mixed.device)
    return MixedBatch(mixed, labels, labels[params.partner], lam, mask, params.partner)


class Vanilla(MixMethod):
    """No mixing: λ = 1, partner = self."""

    name = "vanilla"

    def sample_params(self, batch_size, image_size, generator=None) -> MixParams:  # type: ignore[override]
        return MixParams(lam=torch.tensor(1.0), partner=torch.arange(batch_size))

    def apply(self, images, labels, params) -> MixedBatch:  # type: ignore[override]
        n = images.shape[0]
        return MixedBatch(
            images, labels, labels, _lam_vector(params.lam, n, images.device), None, params.partner
        )


class MixUp(MixMethod):
    """MixUp (Zhang et al. 2018): ``λ x + (1 - λ) x[π]``, λ ~ Beta(α, α) (CIFAR α = 1)."""

    name = "mixup"

    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = check_alpha(alpha)

    def sample_params(self, batch_size, image_size, generator=None) -> MixParams:  # type: ignore[override]
        lam = sample_lam(self.alpha, generator=generator)
        return MixParams(lam=lam, partner=sample_partner(batch_size, generator))

    def apply(self, images, labels, params) -> MixedBatch:  # type: ignore[override]
        lam = params.lam.to(images.device, images.dtype)
        mixed = lam * images + (1 - lam) * images[params.partner]
        return _mixed_batch(mixed, labels, params, None)


class CutMix(MixMethod):
    """CutMix (Yun et al. 2019): paste a box of side ``sqrt(1 - λ)`` from the partner.

    λ is corrected to the area actually kept after clipping: ``1 - box area / image area``.
    """

    name = "cutmix"

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = check_alpha(alpha)

    def sample_params(self, batch_size, image_size, generator=None) -> MixParams:  # type: ignore[override]
        lam = sample_lam(self.alpha, generator=generator)
        partner = sample_partner(batch_size, generator)
        h, w = image_size
        box = sample_box(float(lam), h, w, generator)
        y0, y1, x0, x1 = box
        corrected = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return MixParams(lam=torch.tensor(corrected), partner=partner, box=box)

    def apply(self, images, labels, params) -> MixedBatch:  # type: ignore[override]
        n, _, h, w = images.shape
        assert params.box is not None
        y0, y1, x0, x1 = params.box
        mask = torch.ones(n, 1, h, w, dtype=images.dtype, device=images.device)
        mask[:, :, y0:y1, x0:x1] = 0
        mixed = apply_mask(images, mask, params.partner)
        return _mixed_batch(mixed, labels, params, mask)


MaskFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class SAMix(MixMethod):
    """Learned mixup with a mask function, e.g. a frozen :class:`~samix_hub.Generator` (SAMix^P).

    ``mask_fn(images, partner, lam) -> mask`` (weight of each image). λ ~ Beta(α, α) (α = 2);
    labels use the sampled λ, never the mask mean; for ``λ <= 0.08`` or ``>= 0.92`` the mask is
    the constant λ (plain MixUp); with probability ``mask_adjust`` the mask is rescaled to mean λ.
    One λ per batch, as the reference; ``per_sample=True`` draws one per image.
    A :class:`~samix_hub.Generator` expects images in [0, 1]; :class:`~samix_hub.SAMixUp` wraps
    this path with soft targets, normalised input and input checks (docs/mixup.md).
    """

    name = "samix"

    def __init__(
        self,
        mask_fn: MaskFn,
        alpha: float = 2.0,
        margin: float = LAM_MARGIN,
        mask_adjust: float = 0.0,
        per_sample: bool = False,
    ) -> None:
        self.mask_fn = getattr(mask_fn, "masks", mask_fn)
        self.per_sample = per_sample
        self.alpha = check_alpha(alpha)
        if not 0.0 <= mask_adjust <= 1.0:
            raise ValueError(f"mask_adjust is a probability in [0, 1], got {mask_adjust}")
        self.margin = margin
        self.mask_adjust = mask_adjust

    def sample_params(self, batch_size, image_size, generator=None) -> MixParams:  # type: ignore[override]
        lam = sample_lam(self.alpha, batch_size if self.per_sample else None, generator=generator)
        partner = sample_partner(batch_size, generator)
        adjust = bool(torch.rand((), generator=generator) < self.mask_adjust)
        return MixParams(lam=lam, partner=partner, adjust=adjust)

    @torch.no_grad()
    def masks(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        lam = params.lam.to(images.device)
        mask = self.mask_fn(images, params.partner, lam).to(images.dtype)
        if params.adjust:
            mask = mask_adjust(mask, lam)
        return margin_fallback(mask, lam, self.margin)

    def apply(self, images, labels, params) -> MixedBatch:  # type: ignore[override]
        mask = self.masks(images, params)
        mixed = apply_mask(images, mask, params.partner)
        return _mixed_batch(mixed, labels, params, mask)


def build_method(
    name: str, alpha: float | None = None, mask_fn: MaskFn | None = None, **kwargs: float
) -> MixMethod:
    """A method by name with the reference's CIFAR α unless given."""
    if name == "vanilla":
        return Vanilla()
    if name == "mixup":
        return MixUp(1.0 if alpha is None else alpha)
    if name == "cutmix":
        return CutMix(0.2 if alpha is None else alpha)
    if name in ("samix", "samix-p"):
        if mask_fn is None:
            raise ValueError("samix needs a generator (mask_fn)")
        return SAMix(mask_fn, 2.0 if alpha is None else alpha, **kwargs)
    raise ValueError(f"unknown mixing method {name!r} (vanilla, mixup, cutmix, samix)")
