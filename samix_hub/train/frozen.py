"""The batch mixing of MixUp, CutMix and SAMix^P, with SAMix^P's frozen generator.

docs/algorithm.md "SAMix^P: the frozen generator": a published generator, frozen, makes the masks. ``--scenario sl``
and ``--scenario finetune`` both build theirs with :func:`build_batch_mixing`: the generator
``--generator SRC`` names (found through the run's :data:`~samix_hub.format.repo_ref.Resolve`,
read by the one loader), checked against the data's channels, with where it came from. A
fine-tune also takes the levers of docs/algorithm.md "Levers of a reused generator" (mask
temperature, mix/switch probability, pairing) and records a provenance fit for a published
artifact (no local path).
"""

from __future__ import annotations

from typing import Any

import torch

from samix_hub.data.specs import DataSource
from samix_hub.errors import UserError
from samix_hub.export.load import open_generator
from samix_hub.export.provenance import frozen_generator_provenance
from samix_hub.format.repo_ref import Resolve, resolve_local
from samix_hub.mixing import build_method, read_size
from samix_hub.mixing.methods import MaskFn
from samix_hub.models.generator import MaskGenerator
from samix_hub.train.config import TrainConfig
from samix_hub.train.scenario import ClassifierModules

__all__ = [
    "BATCH_MIXING",
    "build_batch_mixing",
    "load_frozen_generator",
    "scaled_masks",
]

#: Methods that mix the batch with a :class:`~samix_hub.mixing.MixMethod` (no trained mixer).
BATCH_MIXING = ("mixup", "cutmix", "samix-p")


def load_frozen_generator(
    src: str, device: torch.device, sources: Resolve = resolve_local
) -> tuple[MaskGenerator, dict[str, Any]]:
    """The frozen generator ``--generator SRC`` names (``sources`` finds its folder, the one
    loader reads it; a generator freezes itself when built) and its provenance."""
    resolved = sources(src, "torch")
    try:
        gen = open_generator(resolved, runtime="torch", device=device)
    except ValueError as exc:
        raise UserError(f"--generator {src}: {exc}") from None
    return gen, resolved.provenance()


def build_batch_mixing(
    mods: ClassifierModules,
    cfg: TrainConfig,
    data: DataSource,
    device: torch.device,
    sources: Resolve,
    *,
    finetune: bool,
) -> None:
    """Fill ``mods.frozen``, ``mods.generator_provenance`` (SAMix^P) and ``mods.mix_method``
    (every method of :data:`BATCH_MIXING`); nothing for other methods.

    ``finetune``: the levers apply and the provenance is the publishable one
    (:func:`~samix_hub.export.provenance.frozen_generator_provenance`); else the resolver's
    own record.
    """
    m = cfg.method
    if m == "samix-p":
        gen, prov = load_frozen_generator(cfg.generator or "", device, sources)
        chans = int(gen.config.in_chans)
        if chans != data.channels:
            raise UserError(
                f"--generator {cfg.generator} takes {chans}-channel images, "
                f"{cfg.data} has {data.channels}-channel images"
            )
        mods.frozen = gen
        mods.generator_provenance = (
            frozen_generator_provenance(cfg.generator or "", prov) if finetune else prov
        )
    if m not in BATCH_MIXING:
        return
    kwargs: dict[str, Any] = {}
    if m == "samix-p":
        kwargs = {"mask_adjust": cfg.mask_adjust, "margin": cfg.lam_margin}
        if finetune:
            kwargs["temperature"] = cfg.mask_temperature
    if finetune:
        kwargs.update(pairing=cfg.pairing, prob=cfg.mix_prob, switch_prob=cfg.switch_prob)
    mask_fn = scaled_masks(mods.frozen, cfg.generator_scale) if mods.frozen else None
    mods.mix_method = build_method(m, cfg.alpha, mask_fn=mask_fn, **kwargs)


def scaled_masks(gen: MaskGenerator, scale: float | None) -> MaskFn:
    """``gen.masks`` reading at ``scale`` times the native size
    (:func:`samix_hub.mixing.read_size.scaled_masks`), with the option's name in its error."""
    try:
        return read_size.scaled_masks(gen, scale)
    except ValueError as exc:
        raise UserError(f"--generator-scale: {exc}") from None
