"""Checks ``hub/transfer.py`` runs before a push and after a pull (docs/README.md "Data flow").

- :func:`check_no_token`: a folder that contains the user's Hub token is never pushed. Every
  file is scanned whatever its size, streamed in chunks that overlap by ``len(token) - 1``
  bytes, so a token across a chunk boundary is found too. Whitespace is dropped before the
  search, so a token split by line breaks, spaces or tabs is found as well; file names and
  the texts of the push (commit message, branch and tag names) are scanned the same way.
- :func:`check_no_links_out`: a link in the folder that points outside it is never followed
  (the upload would publish the file it points to).
- :func:`safe_repo_path`: a repo file name must stay inside the snapshot (relative, no ``..``
  segment, no backslash); a repo listing naming anything else is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

from samix_hub.errors import ArtifactError

__all__ = [
    "TOKEN_SCAN_CHUNK",
    "file_contains",
    "check_no_token",
    "check_no_links_out",
    "safe_repo_path",
]

#: Bytes read at a time by the token scan; consecutive reads overlap by len(token) - 1 bytes.
TOKEN_SCAN_CHUNK = 8 * 1024 * 1024


_WHITESPACE = b" \t\r\n\v\f"


def _squeeze(data: bytes) -> bytes:
    """``data`` without ASCII whitespace (a token has none; a split one is joined again)."""
    return data.translate(None, _WHITESPACE)


def file_contains(path: Path, needle: bytes, chunk_size: int = TOKEN_SCAN_CHUNK) -> bool:
    """Stream ``path`` in chunks, whitespace dropped; the overlap catches a needle that
    crosses a chunk boundary."""
    keep = len(needle) - 1
    tail = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(max(chunk_size, 1))
            if not chunk:
                return False
            window = tail + _squeeze(chunk)
            if needle in window:
                return True
            tail = window[-keep:] if keep else b""


def check_no_token(
    folder: Path,
    token: str | None,
    chunk_size: int = TOKEN_SCAN_CHUNK,
    texts: dict[str, str | None] | None = None,
) -> None:
    """Refuse to publish a folder that contains the token (a leaked secret is not revocable).

    Every file is scanned whatever its size, streamed in ``chunk_size`` reads, and so is
    every file name; ``texts`` (option name -> value: ``-m``, ``--tag``, ``--revision``) are
    scanned too. A token split by whitespace or line breaks is found."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for option, text in (texts or {}).items():
        if text and needle in _squeeze(text.encode("utf-8", "replace")):
            raise ArtifactError(f"{option}: contains your Hub token; it would be published")
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if needle in _squeeze(rel.encode("utf-8", "surrogateescape")):
            raise ArtifactError(
                f"{folder}: a file name contains your Hub token; rename it before pushing"
            )
        if path.is_file() and file_contains(path, needle, chunk_size):
            raise ArtifactError(f"{path}: contains your Hub token; remove it before pushing")


def check_no_links_out(folder: Path) -> None:
    """Refuse a folder holding a symbolic link that resolves outside it (or nowhere)."""
    root = folder.resolve()
    for here, dirs, files in os.walk(folder):
        for name in sorted(dirs) + sorted(files):
            path = Path(here) / name
            if not path.is_symlink():
                continue
            try:
                target = path.resolve(strict=True)
            except (OSError, RuntimeError):
                raise ArtifactError(f"{path}: a broken symbolic link; remove it") from None
            if target != root and root not in target.parents:
                raise ArtifactError(
                    f"{path}: a symbolic link to a file outside {folder}; push never follows "
                    "it (the file would be published); copy the file in or remove the link"
                )


def safe_repo_path(path: str) -> bool:
    """A repo file name that stays inside the snapshot: relative, no '..', no backslash."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts
