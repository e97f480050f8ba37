"""Where an artifact lies and where it came from (:class:`ResolvedSource`), the sources that are
local (a folder, ``local-dir:FOLDER``, ``builtin:NAME``: :func:`local_source`) and Hub repo ids
(``ORG/NAME[@REV]``). :func:`samix_hub.hub.resolve.resolve_source` adds the Hub downloads; code
below the Hub takes a :data:`Resolve` from its caller (docs/README.md "Which way imports go")."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
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
    "LOCAL_DIR_PREFIX",
    "Resolve",
    "local_source",
    "resolve_local",
]

#: timm's prefix for a model folder on disk (``timm.create_model("local-dir:FOLDER")``).
LOCAL_DIR_PREFIX = "local-dir:"

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


#: ``(src, runtime) -> ResolvedSource``: turns a ``SRC`` argument into a local folder.
Resolve = Callable[[str, str], ResolvedSource]


def local_source(src: str | os.PathLike[str]) -> ResolvedSource | None:
    """``builtin:NAME``, ``local-dir:FOLDER`` or an existing folder as a :class:`ResolvedSource`
    (unvalidated: the loader validates it for the runtime it needs); None for what can only be a
    Hub repo id. A file, or a path that does not exist, is a one-line error."""
    text = os.fspath(src)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        if name not in builtin_names():
            known = ", ".join(BUILTIN_PREFIX + n for n in builtin_names()) or "none installed"
            raise UserError(f"{text!r}: no such built-in generator (known: {known})")
        return ResolvedSource(path=BUILTIN_DIR / name, builtin=name)
    if text.startswith(LOCAL_DIR_PREFIX):
        folder = Path(os.path.expanduser(text[len(LOCAL_DIR_PREFIX) :]))
        if not folder.is_dir():
            raise UserError(f"{text!r}: {folder} is not a folder (local-dir: names a folder)")
        return ResolvedSource(path=folder)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ResolvedSource(path=path)
    if path.exists():
        raise UserError(f"{path}: is a file, expected an artifact folder or ORG/NAME[@REV]")
    if looks_like_path(text):
        raise UserError(f"{path}: no such folder (and not a Hub repo id ORG/NAME[@REV])")
    return None


def resolve_local(src: str | os.PathLike[str], runtime: str = "torch") -> ResolvedSource:
    """:func:`local_source`, refusing a Hub repo id: the :data:`Resolve` of code that is given
    none (``samix_hub.hub.resolve.resolve_source`` downloads)."""
    found = local_source(src)
    if found is None:
        parse_repo_id(os.fspath(src))  # a malformed id gets its own message
        raise UserError(
            f"{os.fspath(src)!r}: a Hub repo id, and this call reads local folders only "
            "(pass sources=samix_hub.hub.resolve.resolve_source to download)"
        )
    return found
