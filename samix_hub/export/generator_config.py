"""A generator's ``config.json`` (docs/artifacts.md "samix-generator"): written from a
:class:`~samix_hub.models.generator.GeneratorNet`, read back into a checked
:class:`~samix_hub.models.generator.GeneratorConfig` (every field's rules are in
:mod:`samix_hub.export.schema`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from samix_hub.export.schema import ConfigFieldError, check_generator_config
from samix_hub.format.artifact import (
    GENERATOR,
    GENERATOR_FORMAT_VERSION,
    LAM_CONVENTION,
    LAM_CONVENTION_EXACT,
)
from samix_hub.models.generator import GeneratorConfig, GeneratorNet
from samix_hub.models.mixer import MixerConfig

__all__ = ["generator_config_dict", "generator_config_from_dict"]


def generator_config_dict(gen: GeneratorNet) -> dict[str, Any]:
    """A generator's whole ``config.json``: format fields, its config and the ``encoder`` block
    (what the encoder gives the mixer; informational, checked against the weights on load)."""
    cfg = gen.config
    data = asdict(cfg)
    data["mixer"] = cfg.mixer.to_dict()
    data["input_size"] = list(cfg.input_size)
    data["mean"] = list(cfg.mean)
    data["std"] = list(cfg.std)
    exact = cfg.mixer.calibration == "exact"
    return {
        "kind": GENERATOR,
        "format_version": GENERATOR_FORMAT_VERSION,
        "lam_convention": LAM_CONVENTION_EXACT if exact else LAM_CONVENTION,
        **data,
        "encoder": {
            "architecture": cfg.backbone,
            "stage": cfg.stage,
            "in_chans": cfg.in_chans,
            "out_channels": gen.encoder.out_channels,
            "reduction": gen.encoder.reduction,
        },
    }


def generator_config_from_dict(data: Any, source: str = "config") -> GeneratorConfig:
    """Read a generator ``config.json`` dict; every field's type and range is checked first
    (:func:`check_generator_config`); errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise ConfigFieldError(f"{source}: expected a JSON object")
    data = dict(data)
    kind = data.get("kind", GENERATOR)
    if kind != GENERATOR:
        raise ConfigFieldError(f"{source}: kind is {kind!r}, not a {GENERATOR}")
    if data.get("format_version") != GENERATOR_FORMAT_VERSION:
        raise ConfigFieldError(
            f"{source}: unknown generator format_version {data.get('format_version')!r} "
            f"(this samix-hub reads version {GENERATOR_FORMAT_VERSION})"
        )
    check_generator_config(data, source)
    for key in ("kind", "format_version", "lam_convention", "encoder"):
        data.pop(key, None)
    try:
        mixer = MixerConfig.from_dict(data.pop("mixer"))
        height, width = data.pop("input_size")
        return GeneratorConfig(
            mixer=mixer,
            input_size=(int(height), int(width)),
            mean=tuple(data.pop("mean")),
            std=tuple(data.pop("std")),
            **data,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigFieldError(f"{source}: invalid generator config: {exc}") from None
