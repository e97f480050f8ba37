"""One resolver for every ``SRC`` argument: a local artifact folder or a Hub ``ORG/NAME[@REV]``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["ResolvedSource", "resolve_source", "parse_repo_id"]


@dataclass
class ResolvedSource:
    """Where an artifact lies locally, and where it came from (repo and commit when from the Hub)."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None

    def provenance(self) -> dict[str, str | None]:
        if self.repo_id is None:
            return {"source": str(self.path)}
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}


def parse_repo_id(src: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (repo_id, revision)."""
    repo, _, rev = src.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(parts):
        raise UserError(f"{src!r} is neither an existing folder nor a Hub repo id ORG/NAME[@REV]")
    return repo, (rev or None)


def resolve_source(
    src: str | os.PathLike[str], runtime: str = "torch", **hub_kwargs: object
) -> ResolvedSource:
    """A local folder as is; otherwise download ``ORG/NAME[@REV]`` through :mod:`samix_hub.hub`."""
    path = Path(os.path.expanduser(str(src)))
    if path.is_dir():
        return ResolvedSource(path=path)
    if path.exists():
        raise UserError(f"{path}: is a file, expected an artifact folder or ORG/NAME[@REV]")
    repo_id, revision = parse_repo_id(str(src))
    from . import hub  # noqa: PLC0415  (optional at import time)

    return hub.pull(repo_id, revision=revision, runtime=runtime, **hub_kwargs)  # type: ignore[attr-defined]
