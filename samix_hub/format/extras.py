"""Optional dependencies: a missing one is a one-line error naming the extra to install."""

from __future__ import annotations

import importlib

from samix_hub.errors import UserError

__all__ = [
    "require_extra",
    "missing_extra_message",
    "ONNX_EXTRA",
    "HF_EXTRA",
    "TENSORBOARD_EXTRA",
]

#: The extras of pyproject.toml ``[project.optional-dependencies]``: the ONNX tools, the
#: ``datasets`` package (``--data hf:NAME``) and TensorBoard logging (``--log tensorboard``).
ONNX_EXTRA = "onnx"
HF_EXTRA = "hf"
TENSORBOARD_EXTRA = "tensorboard"


def missing_extra_message(name: str, extra: str, what: str) -> str:
    """``what`` needs the package ``name``, installed by the extra ``extra``: one line."""
    hint = " (or 'samix-hub[gpu]' for CUDA)" if extra == ONNX_EXTRA else ""
    return (
        f"{what} needs the Python package {name!r}, which is not installed: "
        f"pip install 'samix-hub[{extra}]'{hint}"
    )


def require_extra(modules: tuple[str, ...], extra: str, what: str) -> None:
    """Import ``modules``; a missing one is a :class:`UserError` naming the extra to install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise UserError(missing_extra_message(name, extra, what)) from None
