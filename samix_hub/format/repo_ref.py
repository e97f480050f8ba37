"""Where an artifact lies and where it came from (:class:`ResolvedSource`), and Hub repo ids
(``ORG/NAME[@REV]``): used by :mod:`samix_hub.hub.resolve` and :mod:`samix_hub.hub.transfer` alike."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from samix_hub._version import __version__
from samix_hub.errors import UserError
from samix_hub.format.artifact import CONFIG_NAME

__all__ = [
    "ResolvedSource",
    "parse_repo_id",
    "looks_like_path",
    "BUILTIN_PREFIX",
    "BUILTIN_DIR",
    "builtin_names",
]

#: ``builtin:NAME`` names a generator that ships inside the package (``samix_hub/builtin/NAME``).
BUILTIN_PREFIX = "builtin:"
#: Where the shipped generators lie (one folder per name, each with its ``config.json``).
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "builtin"


def builtin_names() -> list[str]:
    """Names of the generators that ship inside the package (``builtin:NAME``)."""
    if not BUILTIN_DIR.is_dir():
        return []
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / CONFIG_NAME).is_file())


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class ResolvedSource:
    """Where an artifact lies locally, and where it came from (repo and commit when from the Hub)."""

    path: Path
    repo_id: str | None = None
    revision: str | None = None
    commit: str | None = None
    kind: str | None = None  # artifact kind when known (set by a Hub pull, which validates)
    repo_type: str | None = None  # "model" or "dataset" for a Hub source
    builtin: str | None = None  # NAME of a ``builtin:NAME`` source
    #: The runtime ("torch", "onnx" or "all") a Hub pull validated these files for, so that
    #: loading them does not validate (read every tensor) a second time.
    validated: str | None = None

    def provenance(self) -> dict[str, str | None]:
        if self.builtin is not None:
            return {"builtin": self.builtin, "samix_hub": __version__}
        if self.repo_id is None:
            return {"source": str(self.path)}
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}


def looks_like_path(src: str) -> bool:
    """True when ``src`` can only be a path (``./x``, ``/x``, ``~/x``, ``a/b/c``, ``x/``)."""
    repo = src.partition("@")[0]
    return (
        src.startswith((".", "/", "~", os.sep))
        or repo.endswith(("/", os.sep))
        or repo.count("/") != 1
        or (os.altsep is not None and os.altsep in repo)
        or (os.sep != "/" and os.sep in repo)
    )


def parse_repo_id(src: str) -> tuple[str, str | None]:
    """``ORG/NAME[@REV]`` -> (repo_id, revision); a clear error for anything else."""
    repo, _, rev = src.partition("@")
    parts = repo.split("/")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts) or ".." in repo:
        raise UserError(f"{src!r} is neither an existing folder nor a Hub repo id ORG/NAME[@REV]")
    if "@" in src and not rev:
        raise UserError(f"{src!r}: empty revision after '@'")
    return repo, (rev or None)
