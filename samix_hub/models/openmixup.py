"""Turn an openmixup AutoMix / SAMix checkpoint into a samix-hub generator folder.

The paper's reference code (openmixup's AutoMix classifier, docs/algorithm.md) keeps the EMA
encoder as ``backbone_k.*`` (mmcls ResNet names: ``conv1``, ``bn1``, ``layerK.B.convN``,
``layerK.B.bnN``, ``layerK.0.downsample.{0,1}``, the same names as timm's ResNet) and the mixer
as ``mix_block.*`` (``PixelMixBlock``, loaded by :meth:`Mixer.load_openmixup_state_dict`). The
encoder keys up to stage ``stage`` are mapped onto the timm-registered architecture; the
rest (stage 4, heads, the online ``backbone.*``) is dropped. Checkpoints are read with
``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch

from samix_hub._version import __version__
from samix_hub.errors import UserError

__all__ = ["openmixup_state", "detect_mixer", "generator_from_openmixup"]

ENCODER_PREFIXES = ("backbone_k.", "module.backbone_k.")
MIXER_PREFIXES = ("mix_block.", "module.mix_block.")


def openmixup_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The flat tensor dict of an openmixup checkpoint (``state_dict`` key or the dict itself)."""
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise UserError("checkpoint has no 'state_dict' dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                out[key[len(prefix) :]] = value
    return out


def detect_mixer(mix: dict[str, torch.Tensor]) -> tuple[str, int]:
    """(variant, input channels of the value conv) from ``PixelMixBlock`` weights.

    SAMix has a separate ``key`` conv on ``cat(f_a, f_b)``; AutoMix shares ``query`` and has a
    one-output ``value`` conv (its input has one extra channel with ``lam_concat``).
    """
    if "key.conv.weight" in mix or "key.weight" in mix:
        key = "key.conv.weight" if "key.conv.weight" in mix else "key.weight"
        return "samix", int(mix[key].shape[1]) // 2
    value = mix.get("value.conv.weight", mix.get("value.weight"))
    if value is None or ("query.conv.weight" not in mix and "query.weight" not in mix):
        raise UserError(f"mix_block weights are neither SAMix nor AutoMix (keys {sorted(mix)[:6]})")
    return "automix", int(value.shape[1])


def generator_from_openmixup(
    ckpt: dict[str, Any],
    backbone: str,
    *,
    stage: int = 3,
    input_size: tuple[int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    lam_mul_k: float | None = None,
    source: str | None = None,
) -> Any:
    """A frozen :class:`~samix_hub.models.generator.GeneratorNet` from an openmixup checkpoint.

    ``input_size``/``mean``/``std`` default to the timm architecture's ``pretrained_cfg``;
    ``lam_mul_k`` defaults to 0.25 for images <= 64 px, else λ' = λ (docs/algorithm.md "The mixer").
    """
    import timm

    from samix_hub.models.encoder import create_encoder
    from samix_hub.models.generator import GeneratorConfig, GeneratorNet
    from samix_hub.models.mixer import MixerConfig

    state = openmixup_state(ckpt)
    enc = _strip(state, ENCODER_PREFIXES)
    mix = _strip(state, MIXER_PREFIXES)
    if not enc:
        raise UserError("checkpoint has no EMA encoder weights (backbone_k.*): not AutoMix/SAMix")
    if not mix:
        raise UserError("checkpoint has no mixer weights (mix_block.*): not AutoMix/SAMix")
    variant, channels = detect_mixer(mix)
    try:
        model = timm.create_model(backbone, pretrained=False)
        pcfg = cast(dict[str, Any], model.pretrained_cfg)
    except RuntimeError as exc:
        raise UserError(f"--backbone {backbone}: unknown to timm ({exc})") from None
    size = input_size or tuple(pcfg["input_size"][1:])
    in_chans = int(enc["conv1.weight"].shape[1]) if "conv1.weight" in enc else 3
    enc_channels = create_encoder(backbone, stage=stage, in_chans=in_chans).out_channels
    if lam_mul_k is None:
        lam_mul_k = 0.25 if max(size) <= 64 else -1.0
    if variant == "samix":
        mcfg = MixerConfig(in_channels=channels, lam_mul_k=lam_mul_k)
    else:  # AutoMix with lam_concat: λ is one extra input channel of q, k and v
        lam_concat = channels == enc_channels + 1
        mcfg = MixerConfig.automix(channels - int(lam_concat), lam_concat=lam_concat)
    provenance = {
        "imported_from": "openmixup",
        "checkpoint": Path(source).name if source else None,
        "method": variant,
        "encoder_weights": "backbone_k (EMA)",
        "samix_hub_version": __version__,
    }
    meta = ckpt.get("meta")
    if isinstance(meta, dict):
        for key in ("epoch", "iter"):
            if isinstance(meta.get(key), int):
                provenance[key] = meta[key]
    try:
        gen = GeneratorNet(
            GeneratorConfig(
                backbone=backbone,
                mixer=mcfg,
                stage=stage,
                in_chans=in_chans,
                input_size=(int(size[0]), int(size[1])),
                mean=tuple(mean or pcfg["mean"]),
                std=tuple(std or pcfg["std"]),
                provenance={k: v for k, v in provenance.items() if v is not None},
            )
        )
    except ValueError as exc:
        raise UserError(f"--backbone {backbone}: {exc}") from None
    _load_encoder(gen, enc, backbone)
    try:
        gen.mixer.load_openmixup_state_dict(mix)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    return gen.freeze()


def _load_encoder(gen: Any, enc: dict[str, torch.Tensor], backbone: str) -> None:
    """mmcls ResNet names == timm ResNet names; the StageEncoder keeps them under ``net.``."""
    own = gen.encoder.net.state_dict()
    missing = sorted(k for k in own if k not in enc)
    if missing:
        raise UserError(
            f"backbone_k weights do not fit {backbone!r} up to stage {gen.config.stage}: "
            f"missing {missing[:4]}"
        )
    for key, value in own.items():
        if tuple(enc[key].shape) != tuple(value.shape):
            raise UserError(
                f"backbone_k.{key} has shape {tuple(enc[key].shape)}, {backbone!r} expects "
                f"{tuple(value.shape)} (wrong --backbone?)"
            )
    gen.encoder.net.load_state_dict({k: enc[k] for k in own}, strict=True)
