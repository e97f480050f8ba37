"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

__all__ = ["UserError", "ArtifactError", "HubError"]


class UserError(Exception):
    """Bad input from the user (a value, a file, a folder); the message names it."""

    exit_code = 2


class ArtifactError(UserError):
    """An artifact folder that is missing files, has an unknown format or mismatched tensors."""


class HubError(UserError):
    """A Hub repo, revision or download that cannot be used."""
