"""Options and helpers shared by several commands."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import click

from samix_hub.format.limits import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from samix_hub.format.run import LOG_SINKS

__all__ = [
    "ImageSize",
    "FiniteFloat",
    "parse_image_size",
    "device_option",
    "seed_option",
    "generator_scale_option",
    "quiet_option",
    "quiet_third_party",
    "log_option",
    "run_options",
    "builtin_hint",
    "resume_hint",
]


def parse_image_size(value: str) -> tuple[int, int]:
    """``"S"``, ``"HxW"`` or ``"H W"`` -> (H, W): the one image-size rule of every command.

    Each side must be in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE] (``format/limits.py``); raises
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
generator_scale_option = click.option(
    "--generator-scale",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=None,
    help="samix-p: the generator's encoder reads each batch at this fraction of its native "
    "size (cheaper, coarser masks; each mask keeps mean λ; 1 = the native size) "
    "[default: 0.25]. train --teacher: the read the mixer trains at [default: 1].",
)

seed_option = click.option(
    "--seed", type=click.IntRange(0, 2**32 - 1), default=0, show_default=True, help="Random seed."
)


#: Environment switches of libraries that read them when first imported (set while a quiet
#: command runs, for a library it imports then).
_QUIET_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_VERBOSITY": "error",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "DATASETS_VERBOSITY": "error",
}
#: Loggers of libraries that log warnings through :mod:`logging` (timm's schedulers, say).
_QUIET_LOGGERS = ("timm", "huggingface_hub", "datasets", "torch", "torchvision")


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """While it is open: no progress bars, log warnings or Python warnings from the libraries
    samix-hub uses (huggingface_hub's "Fetching N files", datasets' split bars, timm's
    scheduler notes). Everything is put back on exit; a library first imported inside keeps
    the quiet settings it read from the environment then."""
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved_env = {name: os.environ.get(name) for name in _QUIET_ENV}
        stack.callback(_restore_env, saved_env)
        for name, value in _QUIET_ENV.items():
            if os.environ.get(name) is None:  # a switch the user set stays theirs
                os.environ[name] = value
        for name in _QUIET_LOGGERS:
            logger = logging.getLogger(name)
            stack.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        _quiet_hf_hub(stack)
        if "datasets" in sys.modules:  # imported already: its switches were read
            _quiet_datasets(stack)
        yield


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _quiet_library(
    stack: contextlib.ExitStack, logs: Any, utils: Any, env_switch: bool | None
) -> None:
    """A Hugging Face library's progress bars off and its logger at errors, restored by
    ``stack``; a progress-bar switch set in the environment has priority (the libraries say so)."""
    stack.callback(logs.set_verbosity, logs.get_verbosity())
    logs.set_verbosity_error()
    if not utils.are_progress_bars_disabled() and env_switch is None:
        utils.disable_progress_bars()
        stack.callback(utils.enable_progress_bars)


def _quiet_hf_hub(stack: contextlib.ExitStack) -> None:
    from huggingface_hub import constants, utils
    from huggingface_hub.utils import logging as hf_logging

    _quiet_library(stack, hf_logging, utils, constants.HF_HUB_DISABLE_PROGRESS_BARS)


def _quiet_datasets(stack: contextlib.ExitStack) -> None:
    from datasets import config, utils
    from datasets.utils import logging as ds_logging

    _quiet_library(stack, ds_logging, utils, config.HF_DATASETS_DISABLE_PROGRESS_BARS)


def _quiet_callback(ctx: click.Context, _param: click.Parameter, quiet: bool) -> bool:
    if quiet:
        ctx.with_resource(quiet_third_party())  # closed when the command returns
    return quiet


quiet_option = click.option(
    "--quiet",
    "-q",
    is_flag=True,
    callback=_quiet_callback,
    help="No progress bars, messages or library warnings.",
)


def _log_callback(
    _ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    sinks: list[str] = []
    for value in values:
        for name in (v.strip().lower() for v in value.split(",")):
            if name not in LOG_SINKS:
                raise click.BadParameter(
                    f"{name!r} is not one of {', '.join(LOG_SINKS)}", param=param
                )
            if name not in sinks:
                sinks.append(name)
    return tuple(sinks)


log_option = click.option(
    "--log",
    "log",
    multiple=True,
    metavar="SINK[,SINK]",
    callback=_log_callback,
    help="Also log each evaluation to: csv (RUN_DIR/metrics.csv), tensorboard "
    "(RUN_DIR/tensorboard/; pip install 'samix-hub[tensorboard]'). Repeatable.",
)

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
    from samix_hub.format.repo_ref import BUILTIN_PREFIX, builtin_names

    names = ", ".join(BUILTIN_PREFIX + n for n in builtin_names())
    return f"builtin:NAME (shipped, offline: {names or 'none installed'})"


@contextlib.contextmanager
def resume_hint(how: str) -> Iterator[None]:
    """Turn Ctrl-C into :class:`~samix_hub.errors.Interrupted` saying ``how`` to resume
    (exit code 130, one line)."""
    from samix_hub.errors import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(f"to resume, run: {how}") from None
