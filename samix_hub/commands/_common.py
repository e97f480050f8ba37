"""Options and helpers shared by several commands."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import click

from ..data.limits import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

__all__ = [
    "ImageSize",
    "FiniteFloat",
    "parse_image_size",
    "device_option",
    "seed_option",
    "quiet_option",
    "run_options",
    "builtin_hint",
    "resume_hint",
]


def parse_image_size(value: str) -> tuple[int, int]:
    """``"S"``, ``"HxW"`` or ``"H W"`` -> (H, W): the one image-size rule of every command.

    Each side must be in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE] (``data/limits.py``); raises
    ``ValueError`` naming the value otherwise."""
    try:
        parts = [int(v) for v in value.lower().replace("x", " ").split()]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise ValueError(f"{value!r}: expected S or HxW, e.g. 32 or 32x48")
    if not all(MIN_IMAGE_SIZE <= p <= MAX_IMAGE_SIZE for p in parts):
        raise ValueError(
            f"{value!r}: each side must be in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}] pixels"
        )
    return parts[0], parts[1]


class ImageSize(click.ParamType):
    """``--image-size S|HxW`` -> (H, W), by :func:`parse_image_size`."""

    name = "S|HxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, tuple):
            return value
        try:
            return parse_image_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class FiniteFloat(click.FloatRange):
    """A float in a range that is also finite (``FloatRange`` lets ``nan`` through)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if rv is not None and not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


#: Strictly positive, finite (learning rates, temperatures, ...).
POSITIVE = FiniteFloat(min=0, min_open=True)
#: Zero or more, finite (weight decay, ...).
NON_NEGATIVE = FiniteFloat(min=0)
#: A probability or momentum in [0, 1].
UNIT = FiniteFloat(min=0, max=1)

device_option = click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where to run: auto picks CUDA when present.",
)
seed_option = click.option(
    "--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Random seed."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars or messages.")

_RUN_OPTIONS = (
    click.option(
        "--amp/--no-amp", default=True, show_default=True, help="bf16/fp16 autocast (CUDA only)."
    ),
    click.option(
        "--channels-last/--no-channels-last", default=True, show_default=True, help="CUDA."
    ),
    click.option(
        "--workers",
        type=click.IntRange(0),
        default=2,
        show_default=True,
        help="Data loader workers.",
    ),
    click.option(
        "--resume", is_flag=True, help="Continue the run in --out from its last checkpoint."
    ),
    click.option(
        "--max-steps",
        type=click.IntRange(1),
        default=None,
        help="Stop after this many steps (smoke runs).",
    ),
    click.option(
        "--eval-every",
        type=click.IntRange(0),
        default=1,
        show_default=True,
        help="Epochs; 0: never.",
    ),
    click.option(
        "--checkpoint-every",
        type=click.IntRange(0),
        default=0,
        show_default=True,
        help="Also every N steps.",
    ),
    click.option("--eval-batch-size", type=click.IntRange(1), default=256, show_default=True),
)


def run_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every training run takes (``train``, ``finetune``): AMP, layout, loader
    workers, resume, step limit, evaluation and checkpoint cadence."""
    for option in reversed(_RUN_OPTIONS):
        func = option(func)
    return func


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
