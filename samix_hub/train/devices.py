"""The one device rule of the package: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` -> a torch device."""

from __future__ import annotations

import torch

from samix_hub.errors import UserError

__all__ = ["resolve_device"]


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto`` -> cuda when a GPU is available, else cpu; ``cuda`` without a GPU is a
    :class:`~samix_hub.errors.UserError` naming ``option``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"{option} {name}: no GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"{option} {name!r}: not a device (auto, cpu, cuda or cuda:N)") from None
