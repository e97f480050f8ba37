"""The SAMix^P generator: a frozen EMA encoder (to stage 3) + mixer + input normalisation.

docs/algorithm.md "SAMix^P": the mixer cannot run without the encoder it was trained with, so both are
published together. ``forward`` takes images in [0, 1], runs the encoder ONCE per image, gathers
the partner's features, and returns the mask (weight of each image, mean ~= λ) and the mix.
Images of another size than the native one: the mask is computed at native size and upsampled.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..fileio import atomic_write, atomic_write_json
from .encoder import StageEncoder
from .mixer import Mixer, MixerConfig

__all__ = ["Generator", "GeneratorConfig", "FORMAT_VERSION", "CONFIG_NAME", "WEIGHTS_NAME"]

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "generator.safetensors"
LAM_CONVENTION = "mask is the weight of each image; partner[i] gets 1 - mask; mean(mask) ~= lam"
#: The convention of a λ-exact generator (``mixer.calibration == "exact"``).
LAM_CONVENTION_EXACT = (
    "mask is the weight of each image; partner[i] gets 1 - mask; mean(mask[i]) == lam[i] exactly "
    "(λ-exact calibration)"
)


@dataclass
class GeneratorConfig:
    """What a generator folder's ``config.json`` holds (plus ``kind`` and format version)."""

    backbone: str
    mixer: MixerConfig
    stage: int = 3
    in_chans: int = 3
    input_size: tuple[int, int] = (32, 32)
    mean: tuple[float, ...] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, ...] = (0.2023, 0.1994, 0.201)
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mixer"] = self.mixer.to_dict()
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return {
            "kind": "samix-generator",
            "format_version": FORMAT_VERSION,
            "lam_convention": (
                LAM_CONVENTION_EXACT if self.mixer.calibration == "exact" else LAM_CONVENTION
            ),
            **data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> GeneratorConfig:
        """Read a ``config.json`` dict; every field's type and range is checked first
        (``config_fields.py:check_generator_config``), errors name ``source`` and the field."""
        from ..config_fields import check_generator_config

        if not isinstance(data, dict):
            raise ValueError(f"{source}: expected a JSON object")
        data = dict(data)
        kind = data.get("kind", "samix-generator")
        if kind != "samix-generator":
            raise ValueError(f"{source}: kind is {kind!r}, not a samix-generator")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{source}: unknown generator format_version {data.get('format_version')!r} "
                f"(this samix-hub reads version {FORMAT_VERSION})"
            )
        check_generator_config(data, source)
        for key in ("kind", "format_version", "lam_convention"):
            data.pop(key, None)
        data.pop("encoder", None)  # informational summary written by the exporter
        try:
            mixer = MixerConfig.from_dict(data.pop("mixer"))
            return cls(
                mixer=mixer,
                input_size=tuple(data.pop("input_size")),  # type: ignore[arg-type]
                mean=tuple(data.pop("mean")),
                std=tuple(data.pop("std")),
                **data,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{source}: invalid generator config: {exc}") from None


class Generator(nn.Module):
    """Frozen SAMix^P generator: ``forward(images, partner, lam) -> (mask, mixed)``."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = StageEncoder(config.backbone, stage=config.stage, in_chans=config.in_chans)
        if self.encoder.out_channels != config.mixer.in_channels:
            raise ValueError(
                f"mixer expects {config.mixer.in_channels} channels, encoder {config.backbone!r} "
                f"stage {config.stage} gives {self.encoder.out_channels}"
            )
        self.mixer = Mixer(config.mixer)
        if len(config.mean) != config.in_chans or len(config.std) != config.in_chans:
            raise ValueError("mean/std must have one value per input channel")
        self.register_buffer("mean", torch.tensor(config.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.std).view(1, -1, 1, 1), persistent=False)
        self.freeze()

    def freeze(self) -> Generator:
        """No gradients, eval mode (BatchNorm statistics and dropout fixed)."""
        for p in self.parameters():
            p.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> Generator:
        # A generator is always frozen: training mode would update BatchNorm statistics.
        return super().train(False)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.config.input_size)  # type: ignore[return-value]

    def masks(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> torch.Tensor:
        """Mask at the images' size (weight of each image)."""
        if images.dim() != 4 or images.shape[1] != self.config.in_chans:
            raise ValueError(
                f"generator expects N x {self.config.in_chans} x H x W images in [0, 1], "
                f"got shape {tuple(images.shape)}"
            )
        x = (images - self.mean) / self.std
        native = self.input_size
        # Identity when the size already is the native one (bilinear at scale 1 is exact).
        x = F.interpolate(x, size=native, mode="bilinear", align_corners=False)
        feats = self.encoder(x)
        if self.config.mixer.calibration == "exact":
            # λ-exact masks are calibrated at the images' own size, so mean(mask_i) = λ_i holds
            # at any size (the mixer upsamples its logits straight to it).
            return self.mixer(feats, lam, partner, images.shape[-2:])
        mask = self.mixer(feats, lam, partner, native)
        return F.interpolate(mask, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward(
        self, images: torch.Tensor, partner: torch.Tensor, lam: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = self.masks(images, partner, lam)
        mixed = mask * images + (1 - mask) * images[partner]
        return mask, mixed

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``generator.safetensors`` into folder ``path`` (atomically)."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(
            folder / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"format": "pt"})
        )
        atomic_write_json(folder / CONFIG_NAME, self.config.to_dict())
        return folder

    @classmethod
    def from_folder(
        cls, path: str | os.PathLike[str], device: str | torch.device = "cpu"
    ) -> Generator:
        """Load a generator folder; errors name the file that is missing or wrong."""
        folder = Path(path)
        cfg_path = folder / CONFIG_NAME
        weights = folder / WEIGHTS_NAME
        for p in (cfg_path, weights):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: missing (not a samix-hub generator folder?)")
        try:
            data = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cfg_path}: not valid JSON ({exc})") from None
        config = GeneratorConfig.from_dict(data, source=str(cfg_path))
        gen = cls(config)
        try:
            state = load_file(str(weights))
        except Exception as exc:  # safetensors raises SafetensorError / OSError
            raise ValueError(f"{weights}: unreadable safetensors file ({exc})") from None
        own = gen.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(
                f"{weights}: tensors do not match {cfg_path.name} "
                f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
            )
        for key, value in state.items():
            if value.shape != own[key].shape:
                raise ValueError(
                    f"{weights}: tensor {key!r} has shape {tuple(value.shape)}, "
                    f"config expects {tuple(own[key].shape)}"
                )
        from ..artifacts import check_finite

        check_finite(state, weights)
        gen.load_state_dict(state)
        return gen.to(device).freeze()

    # ------------------------------------------------------------- Hub-style API
    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
        token: str | bool | None = None,
        runtime: str = "torch",
        device: str | torch.device | None = None,
        int8: bool = False,
        **hub_kwargs: Any,
    ) -> Any:
        """A generator from a folder, ``builtin:NAME`` or Hub repo id (docs/python_api.md).

        The keywords are those of ``huggingface_hub``'s ``from_pretrained``; the download goes
        through :func:`samix_hub.hub.pull` (only the runtime's files, no pickles, checksums,
        validation). ``runtime="torch"`` returns a :class:`Generator`, ``runtime="onnx"`` an
        :class:`~samix_hub.onnx.OnnxGenerator` with the same call and ``masks``. ``hub_kwargs``:
        ``endpoint``, ``local_dir``, ``offline``.
        """
        from ..loading import load_generator

        return load_generator(
            repo_id_or_path, runtime=runtime, device=device, int8=int8, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only,
            force_download=force_download, token=token, **hub_kwargs,
        )  # fmt: skip

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        onnx: bool = True,
        opset: int = 18,
        repo_id: str | None = None,
    ) -> Path:
        """Write the folder ``samix-hub export`` writes: weights, config.json, card, ONNX.

        ``onnx=False`` leaves out ``onnx/generator.onnx`` (no ONNX tools needed). The folder is
        staged, checked and renamed into place; ``repo_id`` goes into the card's examples.
        """
        from ..hub_api import save_generator

        return save_generator(self, save_directory, onnx=onnx, opset=opset, repo_id=repo_id)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        revision: str | None = None,
        tag: str | None = None,
        private: bool = False,
        commit_message: str | None = None,
        token: str | bool | None = None,
        endpoint: str | None = None,
        onnx: bool = True,
        opset: int = 18,
    ) -> tuple[str, str]:
        """``save_pretrained`` into a temporary folder, then one validated commit to ``repo_id``.

        ``revision`` is the branch (created from main when needed), ``tag`` tags the new commit.
        Returns ``(commit_url, commit_sha)``; the token is only handed to huggingface_hub.
        """
        from ..hub_api import push_generator

        return push_generator(
            self, repo_id, revision=revision, tag=tag, private=private,
            commit_message=commit_message, token=token, endpoint=endpoint, onnx=onnx,
            opset=opset,
        )  # fmt: skip
