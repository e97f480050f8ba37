"""Optional dependencies: a missing one is a one-line error naming the extra to install."""

from __future__ import annotations

import importlib

from .errors import UserError

__all__ = ["require_extra", "ONNX_EXTRA"]

#: The extra that installs the ONNX tools (pyproject.toml ``[project.optional-dependencies]``).
ONNX_EXTRA = "onnx"


def require_extra(modules: tuple[str, ...], extra: str, what: str) -> None:
    """Import ``modules``; a missing one is a :class:`UserError` naming the extra to install."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            hint = " (or 'samix-hub[gpu]' for CUDA)" if extra == ONNX_EXTRA else ""
            raise UserError(
                f"{what} needs the Python package {name!r}, which is not installed: "
                f"pip install 'samix-hub[{extra}]'{hint}"
            ) from None
