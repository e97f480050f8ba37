"""timm's ``Mixup`` modes for :class:`~samix_hub.SAMixUp`: who is mixed, how, with whom (docs/mixup.md).

timm's ``Mixup`` draws, per batch, per pair or per element (``mode``), whether to mix at all
(``prob``) and which method; here the methods are the learned mask (:class:`SAMix`) and, with
probability ``switch_prob``, classic :class:`MixUp` or :class:`CutMix`. This module draws those
choices and builds one mask per image from the methods' own ``mask``; :class:`DropInPlan` is
itself a :class:`~samix_hub.mixing.methods.MixMethod`, so its ``mix`` is the one mixing path.

Pairs are fixed, as timm's and torchvision's: ``batch`` and ``elem`` modes pair image ``i``
with ``i - 1`` (torchvision's ``roll``), ``pair`` mode pairs ``i`` with ``N - 1 - i`` (timm's
``flip``), so no image meets itself unless the batch has one image. Shuffle the data (a
``DataLoader`` with ``shuffle=True``) to get random pairs. Training keeps the random pairings of
:func:`~samix_hub.mixing.sampling.sample_partner`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from samix_hub.mixing.methods import CutMix, MixMethod, MixParams, MixUp, SAMix
from samix_hub.mixing.sampling import box_lam, sample_box, sample_lam

__all__ = ["MODES", "KINDS", "DropInParams", "DropInPlan", "roll_partner", "flip_partner"]

#: timm's modes: one choice and λ per batch, per pair (``i``, ``N - 1 - i``) or per element.
MODES = ("batch", "pair", "elem")
#: what happened to an image: not mixed, the learned mask, classic MixUp, classic CutMix.
KINDS = ("none", "samix", "mixup", "cutmix")

Box = tuple[int, int, int, int]
_NO_BOX: Box = (0, 0, 0, 0)


def roll_partner(n: int) -> torch.Tensor:
    """Image ``i`` is mixed with image ``i - 1`` (torchvision's ``roll(1, 0)``)."""
    return torch.arange(n).roll(1)


def flip_partner(n: int) -> torch.Tensor:
    """Image ``i`` is mixed with image ``N - 1 - i`` (timm's ``flip(0)``)."""
    return torch.arange(n).flip(0)


@dataclass
class DropInParams(MixParams):
    """The draws of one call: per image what was done, with whom and at which λ.

    ``lam`` is 0-d in ``batch`` mode and one value per image otherwise; it is 1 for an image
    that is not mixed. ``partner[i]`` is ``i`` itself for an image that is not mixed. ``kinds``
    are the :data:`KINDS` per image; ``boxes`` are CutMix boxes ``(y0, y1, x0, x1)`` per image
    (empty where not CutMix); ``adjust`` the ``mask_adjust`` flag per image (a bool tensor).
    """

    kinds: list[str] = field(default_factory=list)

    def lam_rows(self) -> torch.Tensor:
        """λ of each image (N float32 values)."""
        return self.lam.float().expand(self.partner.shape[0]).clone()

    def mixed_rows(self) -> torch.Tensor:
        """Whether each image was mixed (N bools)."""
        return torch.tensor([k != "none" for k in self.kinds], dtype=torch.bool)


def _check_probability(name: str, value: float) -> float:
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name}={value!r}: need a probability in [0, 1]")
    return float(value)


def _check_fallback_alpha(name: str, value: float) -> float:
    if not _is_number(value) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name}={value!r}: need a finite number >= 0 (0 turns it off)")
    return float(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class DropInPlan(MixMethod):
    """Draws :class:`DropInParams` and builds the mask of each image (a :class:`MixMethod`).

    ``learned`` is the SAMix^P method (its α, margin and ``mask_adjust``); ``prob`` is the
    probability that a unit (batch, pair or element) is mixed at all; ``switch_prob`` the
    probability that a mixed unit uses classic MixUp (``mixup_alpha`` > 0) or CutMix
    (``cutmix_alpha`` > 0) instead, with even odds when both are on.
    """

    name = "samixup"

    def __init__(
        self,
        learned: SAMix,
        mode: str = "batch",
        prob: float = 1.0,
        switch_prob: float = 0.0,
        mixup_alpha: float = 1.0,
        cutmix_alpha: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r}: need one of {', '.join(MODES)}")
        self.learned = learned
        self.mode = mode
        self.prob = _check_probability("prob", prob)
        self.switch_prob = _check_probability("switch_prob", switch_prob)
        self.mixup_alpha = _check_fallback_alpha("mixup_alpha", mixup_alpha)
        self.cutmix_alpha = _check_fallback_alpha("cutmix_alpha", cutmix_alpha)
        if self.switch_prob > 0 and self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError(
                f"switch_prob={switch_prob!r} needs mixup_alpha > 0 or cutmix_alpha > 0"
            )
        self.mixup = MixUp(self.mixup_alpha) if self.mixup_alpha > 0 else None
        self.cutmix = CutMix(self.cutmix_alpha) if self.cutmix_alpha > 0 else None

    def _units(self, n: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(number of draws, the draw of each image, the partners)."""
        if self.mode == "batch":
            return 1, torch.zeros(n, dtype=torch.long), roll_partner(n)
        if self.mode == "pair":
            if n % 2:
                raise ValueError(
                    f"mode='pair' needs an even batch size, got {n} "
                    "(use drop_last=True in the DataLoader, or mode='elem')"
                )
            i = torch.arange(n)
            return n // 2, torch.minimum(i, n - 1 - i), flip_partner(n)
        return n, torch.arange(n), roll_partner(n)

    def sample_params(
        self, batch_size: int, image_size: tuple[int, int], rng: torch.Generator | None = None
    ) -> DropInParams:
        """:meth:`sample` with mixing enabled."""
        return self.sample(batch_size, image_size, rng)

    def sample(
        self,
        n: int,
        image_size: tuple[int, int],
        rng: torch.Generator | None = None,
        enabled: bool = True,
    ) -> DropInParams:
        """The draws for ``n`` images of ``image_size`` (H, W), from ``rng`` only."""
        if not enabled:  # timm's mixup_enabled=False: no mixing, no draws
            return self._unmixed(n)
        units, unit_of, partner = self._units(n)
        if n == 1:  # nobody to mix with
            return self._unmixed(n)
        u = torch.rand(units, 3, generator=rng)
        adjust_u = torch.rand(units, generator=rng)
        lam = sample_lam(self.learned.alpha, units, rng).double()
        kinds = ["samix"] * units
        boxes = [_NO_BOX] * units
        if self.switch_prob > 0:
            lam_mixup = sample_lam(self.mixup_alpha or 1.0, units, rng).double()
            lam_cutmix = sample_lam(self.cutmix_alpha or 1.0, units, rng).double()
            h, w = image_size
            for k in range(units):
                if float(u[k, 1]) >= self.switch_prob:
                    continue
                both = self.mixup is not None and self.cutmix is not None
                use_cutmix = self.mixup is None or (both and float(u[k, 2]) < 0.5)
                if use_cutmix:
                    boxes[k] = sample_box(float(lam_cutmix[k]), h, w, rng)
                    kinds[k], lam[k] = "cutmix", box_lam(boxes[k], h, w)
                else:
                    kinds[k], lam[k] = "mixup", lam_mixup[k]
        for k in range(units):
            if float(u[k, 0]) >= self.prob:
                kinds[k], lam[k], boxes[k] = "none", 1.0, _NO_BOX
        row_kinds = [kinds[int(k)] for k in unit_of]
        mixed = torch.tensor([k != "none" for k in row_kinds], dtype=torch.bool)
        lam_t = lam.float()
        return DropInParams(
            lam=lam_t[0] if self.mode == "batch" else lam_t[unit_of],
            partner=torch.where(mixed, partner, torch.arange(n)),
            boxes=[boxes[int(k)] for k in unit_of],
            adjust=(adjust_u < self.learned.mask_adjust)[unit_of],
            kinds=row_kinds,
        )

    def _unmixed(self, n: int) -> DropInParams:
        lam = torch.tensor(1.0) if self.mode == "batch" else torch.ones(n)
        return DropInParams(
            lam=lam,
            partner=torch.arange(n),
            boxes=[_NO_BOX] * n,
            adjust=torch.zeros(n, dtype=torch.bool),
            kinds=["none"] * n,
        )

    def mask(self, images: torch.Tensor, params: MixParams) -> torch.Tensor:
        """The weight of each image (N x 1 x H x W): ones where not mixed, else its method's
        mask. ``images`` are what the learned generator sees (3 channels in [0, 1])."""
        if not isinstance(params, DropInParams):
            raise TypeError("DropInPlan.mask takes the DropInParams of its own sample")
        n, _, h, w = images.shape
        device = images.device
        mask = torch.ones(n, 1, h, w, dtype=images.dtype, device=device)
        partner = params.partner.to(device)
        lam_rows = params.lam_rows()

        def rows(kind: str) -> torch.Tensor:
            return torch.tensor([k == kind for k in params.kinds], device=device).view(-1, 1, 1, 1)

        if "samix" in params.kinds:
            batch_mode = params.lam.dim() == 0
            flags = torch.as_tensor(params.adjust)
            adjust: bool | torch.Tensor = bool(flags[0]) if batch_mode else flags
            learned_params = MixParams(lam=params.lam, partner=partner, adjust=adjust)
            mask = torch.where(rows("samix"), self.learned.mask(images, learned_params), mask)
        if "mixup" in params.kinds and self.mixup is not None:
            mixup_params = MixParams(lam=lam_rows, partner=partner)
            mask = torch.where(rows("mixup"), self.mixup.mask(images, mixup_params), mask)
        if "cutmix" in params.kinds and self.cutmix is not None:
            cut_params = MixParams(lam=lam_rows, partner=partner, boxes=params.boxes)
            mask = torch.where(rows("cutmix"), self.cutmix.mask(images, cut_params), mask)
        return mask
