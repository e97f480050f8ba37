"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

import importlib

__all__ = [
    "UserError",
    "ArtifactError",
    "NotAnArtifactError",
    "HubError",
    "RepoNotFoundError",
    "OutputError",
    "Interrupted",
    "require_extra",
    "first_line",
    "missing_extra_message",
    "ONNX_EXTRA",
    "HF_EXTRA",
    "TENSORBOARD_EXTRA",
]


class UserError(Exception):
    """Bad input from the user (a value, a file, a folder); the message names it.

    Exit codes (README "What each command guarantees"): 2 when the command line itself is wrong
    (a value out of range, a path or repo that does not exist, a folder that is not an
    artifact); 1 when the command
    line is fine but the work cannot be done (the Hub, an artifact or mixed data set that fails
    its checks, an output that is locked, full or read-only); 130 after Ctrl-C.
    """

    exit_code = 2


class ArtifactError(UserError):
    """An artifact folder that is missing files, has an unknown format or mismatched tensors."""

    exit_code = 1


class NotAnArtifactError(ArtifactError):
    """The path given is not an artifact at all (no such folder, no config): a usage error."""

    exit_code = 2


class HubError(UserError):
    """A Hub repo, revision or download that cannot be used."""

    exit_code = 1


class RepoNotFoundError(HubError):
    """The repo or revision named does not exist (or is private): a usage error."""

    exit_code = 2


class OutputError(UserError):
    """An output location that cannot be used now: unwritable, full, or locked by another run."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C during a resumable command; the message says how to resume."""

    exit_code = 130


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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
