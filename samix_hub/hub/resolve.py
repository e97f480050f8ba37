"""One resolver for every ``SRC`` argument: a local artifact folder or a Hub ``ORG/NAME[@REV]``."""

from __future__ import annotations

import os
from typing import Any

from samix_hub.errors import UserError
from samix_hub.format.artifact import PICKLE_SUFFIXES
from samix_hub.format.repo_ref import ResolvedSource, local_source, parse_repo_id
from samix_hub.hub.errors import hub_errors, is_offline
from samix_hub.hub.transfer import allow_patterns, pull

__all__ = ["resolve_source", "refresh_cache"]


def resolve_source(
    src: str | os.PathLike[str],
    runtime: str = "torch",
    *,
    revision: str | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
    **hub_kwargs: Any,
) -> ResolvedSource:
    """A local folder as is (also as timm writes it, ``local-dir:FOLDER``); otherwise download
    ``ORG/NAME[@REV]`` through :mod:`samix_hub.hub.transfer`.

    ``revision`` is the same as ``@REV`` (giving both, different, is an error);
    ``local_files_only=True`` reads the local cache only (``offline``); ``force_download=True``
    fetches the files again even when cached (docs/python_api.md "Keywords"). ``hub_kwargs``
    go to :func:`samix_hub.hub.transfer.pull` (``endpoint``, ``token``, ``offline``, ``local_dir``,
    ``repo_type``, ``cache_dir``). A local folder is returned unvalidated (the Hub keywords do
    not apply to it): the loader validates it for the runtime it needs.
    """
    text = os.fspath(src)
    local = local_source(text)
    if local is not None:
        return local
    repo_id, at_rev = parse_repo_id(text)
    if revision is not None and at_rev is not None and revision != at_rev:
        raise UserError(f"{text!r}: revision {revision!r} differs from the @{at_rev} in the id")
    if local_files_only and force_download:
        raise UserError("local_files_only=True and force_download=True exclude each other")
    if local_files_only:
        hub_kwargs["offline"] = True
    if force_download:
        fetch = {k: v for k, v in hub_kwargs.items() if k != "local_dir"}
        refresh_cache(repo_id, revision or at_rev, runtime, **fetch)
    return pull(repo_id, revision=revision or at_rev, runtime=runtime, **hub_kwargs)


def refresh_cache(
    repo_id: str,
    revision: str | None,
    runtime: str,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    repo_type: str | None = None,
    offline: bool | None = None,
) -> None:
    """``force_download=True``: fetch the files ``runtime`` needs again into the cache.

    Same allow patterns as a pull and pickles are never fetched; the pull that follows then
    checks the listing, the checksums and the folder as always (and copies to ``local_dir``).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import RepositoryNotFoundError

    if is_offline(offline):
        raise UserError(f"{repo_id}: force_download=True needs the network, but offline mode is on")
    types = [repo_type] if repo_type else ["model", "dataset"]
    for i, kind in enumerate(types):
        with hub_errors(repo_id, revision, endpoint):
            try:
                snapshot_download(
                    repo_id,
                    repo_type=kind,
                    revision=revision,
                    allow_patterns=allow_patterns(runtime),
                    ignore_patterns=[f"*{suffix}" for suffix in PICKLE_SUFFIXES],
                    endpoint=endpoint,
                    token=token,
                    cache_dir=str(cache_dir) if cache_dir is not None else None,
                    force_download=True,
                    library_name="samix-hub",
                )
            except RepositoryNotFoundError:
                if i < len(types) - 1:  # not a model repo: try a dataset repo
                    continue
                raise
        return
