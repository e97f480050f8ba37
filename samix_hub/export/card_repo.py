"""The repo id a card's usage snippets name, set when the folder is pushed (docs/artifacts.md).

Cards are written before anyone knows where they will be published: ``export`` without
``--generator-repo`` / ``--backbone-repo`` and ``mix`` write the placeholder ``ORG/NAME``.
Every samix-hub card ends with a marker ``<!-- samix-hub repo_id: ID -->``; ``push`` replaces
each whole-token occurrence of that ID by the target repo id (and the marker with it), so the
pushed card names its own repo, and a second push to another repo updates it again. Cards
without the marker (written by hand) are left as they are.
"""

from __future__ import annotations

import re
from pathlib import Path

from samix_hub.fileio import atomic_write_text
from samix_hub.format.artifact import CARD_NAME

__all__ = ["REPO_PLACEHOLDER", "repo_marker", "card_repo_id", "card_for_repo", "set_card_repo_id"]

#: What a card names before the folder is pushed.
REPO_PLACEHOLDER = "ORG/NAME"
_MARKER = re.compile(r"<!-- samix-hub repo_id: (\S+) -->")


def repo_marker(repo_id: str | None) -> str:
    """The marker line that ends a card (``repo_id`` None: the placeholder)."""
    return f"<!-- samix-hub repo_id: {repo_id or REPO_PLACEHOLDER} -->"


def card_repo_id(text: str) -> str | None:
    """The repo id a card's snippets name (from its marker), or None for a card without one."""
    found = _MARKER.search(text)
    return found.group(1) if found else None


def card_for_repo(text: str, repo_id: str) -> str:
    """``text`` with the repo id of its marker replaced by ``repo_id`` wherever it is a token."""
    current = card_repo_id(text)
    if current is None or current == repo_id:
        return text
    token = re.compile(rf"(?<![\w./-]){re.escape(current)}(?![\w/-])")
    text = _MARKER.sub(lambda _m: repo_marker(repo_id), text)
    return token.sub(lambda _m: repo_id, text)


def set_card_repo_id(folder: str | Path, repo_id: str) -> bool:
    """Rewrite ``folder/README.md`` (atomically) to name ``repo_id``; True when it changed."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return False
    text = path.read_text(encoding="utf-8")
    new = card_for_repo(text, repo_id)
    if new == text:
        return False
    atomic_write_text(path, new)
    return True
