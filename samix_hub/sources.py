"""One resolver for every ``SRC`` argument: a local artifact folder or a Hub ``ORG/NAME[@REV]``."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = [
    "ResolvedSource",
    "resolve_source",
    "parse_repo_id",
    "looks_like_path",
    "builtin_names",
    "BUILTIN_PREFIX",
]

#: ``builtin:NAME`` names a generator that ships inside the package (``samix_hub/builtin/NAME``).
BUILTIN_PREFIX = "builtin:"
_BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"

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

    def provenance(self) -> dict[str, str | None]:
        if self.builtin is not None:
            from . import __version__

            return {"builtin": self.builtin, "samix_hub": __version__}
        if self.repo_id is None:
            return {"source": str(self.path)}
        return {"repo_id": self.repo_id, "revision": self.revision, "commit": self.commit}


def builtin_names() -> list[str]:
    """Names of the generators that ship inside the package (``builtin:NAME``)."""
    if not _BUILTIN_DIR.is_dir():
        return []
    return sorted(p.name for p in _BUILTIN_DIR.iterdir() if (p / "config.json").is_file())


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


def resolve_source(
    src: str | os.PathLike[str],
    runtime: str = "torch",
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    **hub_kwargs: object,
) -> ResolvedSource:
    """A local folder as is; otherwise download ``ORG/NAME[@REV]`` through :mod:`samix_hub.hub`.

    ``revision`` is the same as ``@REV`` (giving both, different, is an error);
    ``local_files_only=True`` reads the local cache only (``offline``); ``force_download=True``
    fetches the files again even when cached (docs/python_api.md "Keywords"). ``hub_kwargs``
    go to :func:`samix_hub.hub.pull` (``endpoint``, ``token``, ``offline``, ``local_dir``,
    ``repo_type``, ``cache_dir``). A local folder is returned unvalidated (the Hub keywords do
    not apply to it): the loader validates it for the runtime it needs.
    """
    text = os.fspath(src)
    if text.startswith(BUILTIN_PREFIX):
        name = text[len(BUILTIN_PREFIX) :]
        if name not in builtin_names():
            known = ", ".join(BUILTIN_PREFIX + n for n in builtin_names()) or "none installed"
            raise UserError(f"{text!r}: no such built-in generator (known: {known})")
        return ResolvedSource(path=_BUILTIN_DIR / name, builtin=name)
    path = Path(os.path.expanduser(text))
    if path.is_dir():
        return ResolvedSource(path=path)
    if path.exists():
        raise UserError(f"{path}: is a file, expected an artifact folder or ORG/NAME[@REV]")
    if looks_like_path(text):
        raise UserError(f"{path}: no such folder (and not a Hub repo id ORG/NAME[@REV])")
    repo_id, at_rev = parse_repo_id(text)
    if revision is not None and at_rev is not None and revision != at_rev:
        raise UserError(f"{text!r}: revision {revision!r} differs from the @{at_rev} in the id")
    if local_files_only and force_download:
        raise UserError("local_files_only=True and force_download=True exclude each other")
    if local_files_only:
        hub_kwargs["offline"] = True
    from . import hub  # noqa: PLC0415  (imports huggingface_hub only when needed)

    if force_download:
        from .hub_api import refresh_cache  # noqa: PLC0415

        fetch = {k: v for k, v in hub_kwargs.items() if k != "local_dir"}
        refresh_cache(repo_id, revision or at_rev, runtime, **fetch)  # type: ignore[arg-type]
    return hub.pull(repo_id, revision=revision or at_rev, runtime=runtime, **hub_kwargs)  # type: ignore[arg-type]
