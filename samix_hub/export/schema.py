"""Type and range checks of every field of an artifact's ``config.json`` (docs/artifacts.md).

One place for the rules: :func:`check_generator_config` (the generator folder) and
:func:`check_backbone_config` (the timm backbone folder). Each mistake is one
:class:`ConfigFieldError` naming the file and the field. The checks also keep validation and
loading inside the artifact: a backbone config that names another file, a URL, another Hub
repo (``hf-hub:``) or pretrained weights is refused, so nothing is read from outside the folder
and nothing is downloaded (docs/artifacts.md "Common rules").

The image-size and class-count limits here are the same ones the CLI applies
(``format/limits.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from samix_hub.errors import ArtifactError
from samix_hub.format.artifact import (
    CALIBRATION_MODES,
)
from samix_hub.format.limits import (
    MAX_CHANNELS,
    MAX_CLASSES,
    MAX_IMAGE_SIZE,
    MAX_STAGE,
    MIN_IMAGE_SIZE,
)

__all__ = [
    "ConfigFieldError",
    "MIN_IMAGE_SIZE",
    "MAX_IMAGE_SIZE",
    "MAX_CHANNELS",
    "MAX_CLASSES",
    "check_generator_config",
    "check_backbone_config",
    "check_image_size",
]

_TIMM_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
#: ``model_args`` keys that make timm read a file, a URL or pretrained weights.
_FORBIDDEN_MODEL_ARGS = {
    "checkpoint_path",
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "cache_dir",
    "features_only",
}
#: ``pretrained_cfg`` keys that point timm at weights elsewhere (ignored when empty).
_FORBIDDEN_PRETRAINED = ("url", "file", "hf_hub_id", "hf_hub_filename", "state_dict")


class ConfigFieldError(ArtifactError, ValueError):
    """A config.json field of the wrong type or range; the message names the file and field."""


def _fail(source: str, field: str, why: str) -> ConfigFieldError:
    return ConfigFieldError(f"{source}: field {field!r} {why}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _int(
    data: Mapping[str, Any], key: str, source: str, lo: int, hi: int, prefix: str = ""
) -> None:
    value = data[key]
    if not _is_int(value) or not lo <= value <= hi:
        raise _fail(source, prefix + key, f"must be an integer in [{lo}, {hi}], got {value!r}")


def _number(
    data: Mapping[str, Any],
    key: str,
    source: str,
    lo: float = -math.inf,
    hi: float = math.inf,
    prefix: str = "",
) -> None:
    value = data[key]
    if not _is_number(value) or not lo <= value <= hi:
        raise _fail(source, prefix + key, f"must be a finite number in [{lo}, {hi}], got {value!r}")


def _choice(
    data: Mapping[str, Any], key: str, source: str, choices: tuple[str, ...], prefix: str = ""
) -> None:
    if data[key] not in choices or not isinstance(data[key], str):
        raise _fail(source, prefix + key, f"must be one of {list(choices)}, got {data[key]!r}")


def _object(data: Mapping[str, Any], key: str, source: str) -> None:
    if not isinstance(data[key], dict):
        raise _fail(source, key, f"must be an object, got {type(data[key]).__name__}")


def check_image_size(value: Any, source: str, field: str) -> tuple[int, int]:
    """``[H, W]`` of two integers in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE]."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(_is_int(v) and MIN_IMAGE_SIZE <= v <= MAX_IMAGE_SIZE for v in value)
    ):
        raise _fail(
            source,
            field,
            f"must be [H, W], integers in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {value!r}",
        )
    return int(value[0]), int(value[1])


def _timm_name(value: Any, source: str, field: str) -> None:
    """A registered-style timm name: no ``hf-hub:`` / ``local-dir:`` prefix, no path, no URL."""
    if not isinstance(value, str) or not _TIMM_NAME.match(value):
        raise _fail(
            source,
            field,
            f"must be a timm architecture name (no hf-hub:, path or URL), got {value!r}",
        )


def _norm(data: Mapping[str, Any], key: str, source: str, chans: int, prefix: str = "") -> None:
    value = data[key]
    positive = key == "std"
    ok = (
        isinstance(value, (list, tuple))
        and len(value) == chans
        and all(_is_number(v) and (v > 0 if positive else True) for v in value)
    )
    if not ok:
        what = "positive finite numbers" if positive else "finite numbers"
        raise _fail(
            source, prefix + key, f"must be {chans} {what} (one per channel), got {value!r}"
        )


_MIXER_FIELDS: dict[str, Any] = {
    "in_channels": ("int", 1, 1 << 16),
    "variant": ("choice", ("samix", "automix")),
    "reduction": ("int", 1, 1 << 16),
    "lam_mul_k": ("number", -math.inf, 1e6),
    "dropout": ("number", 0.0, 0.999),
    "upsample": ("choice", ("bilinear", "nearest")),
    "lam_concat": ("bool",),
    "mask_loss_margin": ("number", 0.0, 1.0),
    "calibration": ("choice", CALIBRATION_MODES),
    "variance": ("choice", ("batch", "image")),
}


def _check_mixer(mixer: Any, source: str) -> None:
    if not isinstance(mixer, dict):
        raise _fail(source, "mixer", f"must be an object, got {type(mixer).__name__}")
    unknown = sorted(set(mixer) - set(_MIXER_FIELDS))
    if unknown:
        raise _fail(source, f"mixer.{unknown[0]}", "is not a mixer field")
    if "in_channels" not in mixer:
        raise _fail(source, "mixer.in_channels", "is missing")
    for key, rule in _MIXER_FIELDS.items():
        if key not in mixer:
            continue
        if rule[0] == "int":
            _int(mixer, key, source, rule[1], rule[2], prefix="mixer.")
        elif rule[0] == "number":
            _number(mixer, key, source, rule[1], rule[2], prefix="mixer.")
        elif rule[0] == "choice":
            _choice(mixer, key, source, rule[1], prefix="mixer.")
        elif not isinstance(mixer[key], bool):
            raise _fail(source, f"mixer.{key}", f"must be true or false, got {mixer[key]!r}")


#: Generator config fields besides ``mixer``: required or optional, and their rule.
_GENERATOR_FIELDS = (
    "kind",
    "format_version",
    "lam_convention",
    "backbone",
    "mixer",
    "stage",
    "in_chans",
    "input_size",
    "mean",
    "std",
    "provenance",
    "encoder",
)


def check_generator_config(data: Mapping[str, Any], source: str) -> None:
    """Every field of a generator ``config.json`` (docs/artifacts.md "config.json")."""
    unknown = sorted(set(data) - set(_GENERATOR_FIELDS))
    if unknown:
        raise _fail(source, unknown[0], "is not a generator config field")
    for key in ("backbone", "mixer", "input_size", "mean", "std"):
        if key not in data:
            raise _fail(source, key, "is missing")
    if "lam_convention" in data and not isinstance(data["lam_convention"], str):
        raise _fail(source, "lam_convention", "must be a string")
    _timm_name(data["backbone"], source, "backbone")
    if "stage" in data:
        _int(data, "stage", source, 1, MAX_STAGE)
    chans = 3
    if "in_chans" in data:
        _int(data, "in_chans", source, 1, MAX_CHANNELS)
        chans = int(data["in_chans"])
    check_image_size(data["input_size"], source, "input_size")
    _norm(data, "mean", source, chans)
    _norm(data, "std", source, chans)
    for key in ("provenance", "encoder"):
        if key in data:
            _object(data, key, source)
    if "encoder" in data:
        _check_encoder_block(data, source)
    _check_mixer(data["mixer"], source)


#: The fields of the informational ``encoder`` block (``generator_config_dict``).
_ENCODER_FIELDS = ("architecture", "stage", "in_chans", "out_channels", "reduction")


def _check_encoder_block(data: Mapping[str, Any], source: str) -> None:
    """The ``encoder`` block repeats the config; it may not name anything else (another
    architecture, a Hub repo, a path or a URL), and has no other fields."""
    block = data["encoder"]
    unknown = sorted(set(block) - set(_ENCODER_FIELDS))
    if unknown:
        raise _fail(source, f"encoder.{unknown[0]}", "is not an encoder field")
    if "architecture" in block:
        _timm_name(block["architecture"], source, "encoder.architecture")
        if block["architecture"] != data["backbone"]:
            raise _fail(
                source,
                "encoder.architecture",
                f"is {block['architecture']!r}, but backbone is {data['backbone']!r}",
            )
    for key, default in (("stage", 3), ("in_chans", 3)):
        if key in block:
            want = data.get(key, default)
            if want is not None and block[key] != want:
                raise _fail(source, f"encoder.{key}", f"is {block[key]!r}, config says {want!r}")
    for key in ("out_channels", "reduction"):
        if key in block:
            _int(block, key, source, 1, 1 << 20, prefix="encoder.")


def _refers_outside(value: Any) -> bool:
    """True for a string (or a container holding one) that names a path or a URL."""
    if isinstance(value, str):
        return "/" in value or "\\" in value or ":" in value or value.startswith(("~", "."))
    if isinstance(value, dict):
        return any(_refers_outside(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_refers_outside(v) for v in value)
    return False


def _check_model_args(args: Any, source: str) -> None:
    if not isinstance(args, dict):
        raise _fail(source, "model_args", f"must be an object, got {type(args).__name__}")
    for key, value in args.items():
        field = f"model_args.{key}"
        if key in _FORBIDDEN_MODEL_ARGS:
            raise _fail(
                source,
                field,
                "would make timm load weights or files from outside the artifact; remove it",
            )
        if _refers_outside(value):
            raise _fail(source, field, f"names a path or URL ({value!r}); remove it")
    if "num_classes" in args:
        _int(args, "num_classes", source, 0, MAX_CLASSES, prefix="model_args.")
    if "in_chans" in args:
        _int(args, "in_chans", source, 1, MAX_CHANNELS, prefix="model_args.")


def _check_pretrained_cfg(pcfg: Any, source: str) -> int:
    """The ``pretrained_cfg`` object; returns its channel count (3 when absent)."""
    if not isinstance(pcfg, dict):
        raise _fail(source, "pretrained_cfg", f"must be an object, got {type(pcfg).__name__}")
    p = "pretrained_cfg."
    for key in _FORBIDDEN_PRETRAINED:
        if pcfg.get(key):
            raise _fail(source, p + key, "points at weights outside the artifact; remove it")
    if pcfg.get("custom_load"):
        raise _fail(source, p + "custom_load", "must be false (custom loaders read other files)")
    chans = 3
    if "input_size" in pcfg:
        size = pcfg["input_size"]
        if not isinstance(size, (list, tuple)) or len(size) != 3:
            raise _fail(source, p + "input_size", f"must be [C, H, W], got {size!r}")
        if not _is_int(size[0]) or not 1 <= size[0] <= MAX_CHANNELS:
            raise _fail(
                source, p + "input_size", f"channels must be in [1, {MAX_CHANNELS}], got {size!r}"
            )
        chans = int(size[0])
        check_image_size(list(size[1:]), source, p + "input_size[1:]")
    for key in ("mean", "std"):
        if key in pcfg:
            _norm(pcfg, key, source, chans, prefix=p)
    if "num_classes" in pcfg:
        _int(pcfg, "num_classes", source, 0, MAX_CLASSES, prefix=p)
    if "crop_pct" in pcfg:
        _number(pcfg, "crop_pct", source, 0.01, 10.0, prefix=p)
    for key in ("interpolation", "crop_mode", "tag", "license", "first_conv", "classifier"):
        if key in pcfg and not isinstance(pcfg[key], (str, list, type(None))):
            raise _fail(source, p + key, f"must be a string, got {pcfg[key]!r}")
    return chans


def check_backbone_config(cfg: Mapping[str, Any], source: str) -> int:
    """Every field samix-hub reads from a timm backbone ``config.json``; returns ``in_chans``.

    Refuses anything that would make timm read outside the folder or use the network:
    ``hf-hub:`` / ``local-dir:`` architectures, ``model_args`` naming files, URLs or
    ``pretrained``, and ``pretrained_cfg`` entries with a url, file or Hub id.
    """
    for key in ("architecture", "num_classes"):
        if key not in cfg:
            raise _fail(source, key, "is missing")
    _timm_name(cfg["architecture"], source, "architecture")
    _int(cfg, "num_classes", source, 0, MAX_CLASSES)
    if "num_features" in cfg:
        _int(cfg, "num_features", source, 1, 1 << 20)
    if "global_pool" in cfg and not isinstance(cfg["global_pool"], str):
        raise _fail(source, "global_pool", f"must be a string, got {cfg['global_pool']!r}")
    if cfg.get("label_names") is not None:
        names = cfg["label_names"]
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise _fail(source, "label_names", "must be a list of strings")
    if "model_args" in cfg and cfg["model_args"] is not None:
        _check_model_args(cfg["model_args"], source)
    chans = _check_pretrained_cfg(cfg.get("pretrained_cfg", {}), source)
    if "samix_hub" in cfg and cfg["samix_hub"] is not None:
        _object(cfg, "samix_hub", source)
        meta = cfg["samix_hub"]
        for key in ("onnx", "provenance"):
            if key in meta and not isinstance(meta[key], dict):
                raise _fail(source, f"samix_hub.{key}", "must be an object")
        for key in ("kind", "weights"):
            if key in meta and not isinstance(meta[key], str):
                raise _fail(source, f"samix_hub.{key}", f"must be a string, got {meta[key]!r}")
    args = cfg.get("model_args") or {}
    sized = isinstance(cfg.get("pretrained_cfg"), dict) and "input_size" in cfg["pretrained_cfg"]
    if sized and "in_chans" in args and args["in_chans"] != chans:
        raise _fail(
            source,
            "model_args.in_chans",
            f"is {args['in_chans']}, pretrained_cfg.input_size says {chans} channels",
        )
    return chans
