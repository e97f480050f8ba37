"""Checks ``hub.py`` runs before a push and after a pull (docs/README.md "Data flow").

- :func:`check_no_token`: a folder that contains the user's Hub token is never pushed. Every
  file is scanned whatever its size, streamed in chunks that overlap by ``len(token) - 1``
  bytes, so a token across a chunk boundary is found too.
- :func:`safe_repo_path`: a repo file name must stay inside the snapshot (relative, no ``..``
  segment, no backslash); a repo listing naming anything else is refused.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ArtifactError

__all__ = ["TOKEN_SCAN_CHUNK", "file_contains", "check_no_token", "safe_repo_path"]

#: Bytes read at a time by the token scan; consecutive reads overlap by len(token) - 1 bytes.
TOKEN_SCAN_CHUNK = 8 * 1024 * 1024


def file_contains(path: Path, needle: bytes, chunk_size: int = TOKEN_SCAN_CHUNK) -> bool:
    """Stream ``path`` in chunks; the overlap catches a needle that crosses a chunk boundary."""
    keep = len(needle) - 1
    tail = b""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(max(chunk_size, 1))
            if not chunk:
                return False
            window = tail + chunk
            if needle in window:
                return True
            tail = window[-keep:] if keep else b""


def check_no_token(folder: Path, token: str | None, chunk_size: int = TOKEN_SCAN_CHUNK) -> None:
    """Refuse to publish a folder that contains the token (a leaked secret is not revocable).

    Every file is scanned whatever its size, streamed in ``chunk_size`` reads."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and file_contains(path, needle, chunk_size):
            raise ArtifactError(f"{path}: contains your Hub token; remove it before pushing")


def safe_repo_path(path: str) -> bool:
    """A repo file name that stays inside the snapshot: relative, no '..', no backslash."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts
