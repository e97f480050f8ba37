"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

__all__ = ["UserError", "ArtifactError", "HubError", "OutputError", "Interrupted"]


class UserError(Exception):
    """Bad input from the user (a value, a file, a folder); the message names it."""

    exit_code = 2


class ArtifactError(UserError):
    """An artifact folder that is missing files, has an unknown format or mismatched tensors."""


class HubError(UserError):
    """A Hub repo, revision or download that cannot be used."""


class OutputError(UserError):
    """An output location that cannot be used now: unwritable, full, or locked by another run."""

    exit_code = 1


class Interrupted(UserError):
    """Ctrl-C during a resumable command; the message says how to resume."""

    exit_code = 130
