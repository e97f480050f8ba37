"""Options and helpers shared by several commands."""

from __future__ import annotations

import click
import torch

__all__ = ["device_option", "seed_option", "quiet_option", "resolve_device"]

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run: auto picks CUDA when present.",
)
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages.")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA requested but no GPU is available", param_hint="--device")
    return torch.device(name)
