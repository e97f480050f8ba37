"""User-facing errors: the CLI prints them as one line, without a traceback."""

from __future__ import annotations

__all__ = [
    "UserError",
    "ArtifactError",
    "NotAnArtifactError",
    "HubError",
    "RepoNotFoundError",
    "OutputError",
    "Interrupted",
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
