"""Options and helpers shared by several commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click
import torch

__all__ = [
    "device_option",
    "seed_option",
    "quiet_option",
    "run_options",
    "resolve_device",
    "builtin_hint",
    "resume_hint",
]

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run: auto picks CUDA when present.",
)
seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages.")

_RUN_OPTIONS = (
    click.option(
        "--amp/--no-amp", default=True, show_default=True, help="bf16/fp16 autocast (CUDA only)."
    ),
    click.option(
        "--channels-last/--no-channels-last", default=True, show_default=True, help="CUDA."
    ),
    click.option("--workers", type=int, default=2, show_default=True, help="Data loader workers."),
    click.option(
        "--resume", is_flag=True, help="Continue the run in --out from its last checkpoint."
    ),
    click.option(
        "--max-steps", type=int, default=None, help="Stop after this many steps (smoke runs)."
    ),
    click.option("--eval-every", type=int, default=1, show_default=True, help="Epochs; 0: never."),
    click.option(
        "--checkpoint-every", type=int, default=0, show_default=True, help="Also every N steps."
    ),
    click.option("--eval-batch-size", type=int, default=256, show_default=True),
)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every training run takes (``train``, ``finetune``): AMP, layout, loader
    workers, resume, step limit, evaluation and checkpoint cadence."""
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; ``cuda`` without a GPU is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("CUDA requested but no GPU is available", param_hint="--device")
    return torch.device(name)


def builtin_hint() -> str:
    """``"builtin:NAME (shipped, offline: builtin:a, builtin:b)"`` for a generator option's help."""
    from ..sources import BUILTIN_PREFIX, builtin_names

    names = ", ".join(BUILTIN_PREFIX + n for n in builtin_names())
    return f"builtin:NAME (shipped, offline: {names or 'none installed'})"


@contextlib.contextmanager
def resume_hint(how: str) -> Iterator[None]:
    """Turn Ctrl-C into :class:`~samix_hub.errors.Interrupted` saying ``how`` to resume
    (exit code 130, one line)."""
    from ..errors import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"to resume, run: {how}") from None
