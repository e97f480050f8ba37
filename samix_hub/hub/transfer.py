"""Publish and fetch samix-hub artifacts on the Hugging Face Hub (docs/README.md "Data flow").

Everything goes through ``huggingface_hub`` (``HfApi.upload_folder`` for one-commit pushes,
``snapshot_download`` with allow patterns for pulls). ``huggingface_hub`` reads ``HF_ENDPOINT``,
``HF_HOME``, ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_XET`` when it is first imported, so it is
imported lazily here; ``endpoint=`` overrides the endpoint per call.

A pull is checked three ways before its path is returned: every downloaded file against the
checksum the Hub gave as its ETag (sha256 for LFS files, git blob sha1 otherwise: catches a
corrupt download), the repo listing (pickle weights are refused and never downloaded) and
:func:`samix_hub.export.validate.validate_artifact` (format version, expected files, tensor shapes).
Tokens are passed to ``huggingface_hub`` only: never printed, logged or written.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from samix_hub.errors import ArtifactError, HubError, UserError
from samix_hub.export.card_repo import set_card_repo_id
from samix_hub.export.cards import check_card_parses
from samix_hub.export.validate import MIXED_DATASET, PICKLE_SUFFIXES, detect_kind, validate_artifact
from samix_hub.fileio import check_writable_dir
from samix_hub.format.artifact import (
    BACKBONE,
    BACKBONE_WEIGHTS,
    CARD_NAME,
    CONFIG_NAME,
    GENERATOR_WEIGHTS,
)
from samix_hub.format.repo_ref import ResolvedSource, parse_repo_id
from samix_hub.hub.checks import check_no_links_out, check_no_token, safe_repo_path
from samix_hub.hub.errors import hub_errors, is_offline
from samix_hub.hub.local_copy import install_snapshot

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

__all__ = ["push", "push_commit", "pull", "RUNTIMES", "allow_patterns"]

RUNTIMES = ("torch", "onnx", "all")
_COMMON = [CARD_NAME, CONFIG_NAME, "data/*.parquet"]
_PATTERNS = {
    "torch": [*_COMMON, GENERATOR_WEIGHTS, BACKBONE_WEIGHTS],
    # the weights too: the graph is run against them before the pull is accepted
    "onnx": [*_COMMON, "onnx/*", GENERATOR_WEIGHTS, BACKBONE_WEIGHTS],
    "all": None,  # everything but pickles (see _IGNORE)
}
_IGNORE = [f"*{suffix}" for suffix in PICKLE_SUFFIXES]
#: The safetensors file that makes a repo with pickles usable (timm's Hub layout has both).
SAFE_BESIDE_PICKLES = BACKBONE_WEIGHTS
# Never uploaded: hidden files (temporary files of atomic writes, local caches) and pickles.
_PUSH_IGNORE = [".*", "*/.*", "*.tmp", "*.partial", *_IGNORE]
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def allow_patterns(runtime: str) -> list[str] | None:
    """Files ``pull`` downloads for ``runtime``: only what that runtime needs (None: all)."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose torch, onnx or all")
    return _PATTERNS[runtime]


# ---------------------------------------------------------------------------------- push
def push(
    folder: str | os.PathLike[str],
    repo_id: str,
    revision: str | None = None,
    tag: str | None = None,
    private: bool | None = None,
    repo_type: str | None = None,
    message: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    delete: bool = False,
    create_pr: bool = False,
) -> tuple[str, str]:
    """Validate ``folder`` and upload it to ``repo_id`` in ONE commit; return (url, sha).

    The folder must be a complete artifact (generator, backbone or mixed data set) with its
    README.md card; it is refused before anything is uploaded otherwise. The repo is created
    when needed, ``revision`` (a branch) is created from ``main`` when needed, and ``tag`` is
    created on the new commit. The push is additive: remote files the folder does not have
    (a LICENSE added on the Hub) are kept, unless ``delete`` (then the repo mirrors the folder).
    ``create_pr`` opens a pull request against ``main`` instead of committing to it; the url
    returned is then the pull request's. :func:`push_commit` is the same push returning
    huggingface_hub's ``CommitInfo``.
    """
    info = push_commit(
        folder, repo_id, revision=revision, tag=tag, private=private, repo_type=repo_type,
        message=message, endpoint=endpoint, token=token,
        delete_patterns="*" if delete else None, create_pr=create_pr,
    )  # fmt: skip
    return (info.pr_url if create_pr and info.pr_url else info.commit_url), info.oid


def _patterns(value: str | list[str] | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def push_commit(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    revision: str | None = None,
    tag: str | None = None,
    private: bool | None = None,
    repo_type: str | None = None,
    message: str | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    create_pr: bool = False,
    allow_patterns: str | list[str] | None = None,
    ignore_patterns: str | list[str] | None = None,
    delete_patterns: str | list[str] | None = None,
) -> CommitInfo:
    """:func:`push`, returning huggingface_hub's ``CommitInfo`` (``str(info)`` is the commit
    url; ``.oid``, ``.pr_url``), as ``HfApi.upload_folder`` and ``ModelHubMixin.push_to_hub``.

    ``allow_patterns`` / ``ignore_patterns`` / ``delete_patterns`` are those of
    ``upload_folder``; hidden files, temporary files and pickles are never uploaded whatever
    the patterns say. The folder is validated as a whole before anything is uploaded.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import get_token

    if create_pr and revision not in (None, "main"):
        raise UserError(f"--create-pr opens a pull request against main, not {revision!r}")
    if create_pr and tag:
        raise UserError(f"--tag {tag}: tag the commit once the pull request is merged")
    src = Path(folder)
    if not src.is_dir():
        raise UserError(f"{src}: no such folder")
    repo_id, at_rev = parse_repo_id(repo_id)
    if at_rev is not None:
        raise UserError(f"{repo_id}@{at_rev}: give the branch with --revision, not @")
    check_no_links_out(src)  # before anything reads the folder
    kind = detect_kind(src)
    runtime = "all" if kind != MIXED_DATASET and (src / "onnx").is_dir() else "torch"
    validate_artifact(src, runtime)
    if not (src / CARD_NAME).is_file():
        raise ArtifactError(f"{src / CARD_NAME}: missing (the card); run `samix-hub export`")
    expected_type = "dataset" if kind == MIXED_DATASET else "model"
    check_card_parses(src / CARD_NAME, expected_type)
    if repo_type is not None and repo_type != expected_type:
        raise UserError(f"{src} is a {kind}: push it with --repo-type {expected_type}")
    check_no_token(
        src,
        token if isinstance(token, str) else get_token() if token is None else None,
        texts={"-m": message, "--tag": tag, "--revision": revision, "repo id": repo_id},
    )
    if kind != MIXED_DATASET and runtime == "torch":
        print(
            f"warning: {src} has no onnx/ export; `pull --runtime onnx` will fail", file=sys.stderr
        )

    set_card_repo_id(src, repo_id)  # the card's snippets name this repo (export/card_repo.py)
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, revision, endpoint):
        api.create_repo(repo_id, repo_type=expected_type, private=private, exist_ok=True)
        if tag and tag in {
            t.name for t in api.list_repo_refs(repo_id, repo_type=expected_type).tags
        }:
            raise HubError(f"{repo_id}: tag {tag!r} already exists (nothing was uploaded)")
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, repo_type=expected_type, exist_ok=True)
        info = api.upload_folder(
            folder_path=src,
            repo_id=repo_id,
            repo_type=expected_type,
            revision=revision,
            commit_message=message or f"samix-hub push: {kind}",
            allow_patterns=_patterns(allow_patterns) or None,
            ignore_patterns=[*_PUSH_IGNORE, *_patterns(ignore_patterns)],
            delete_patterns=_patterns(delete_patterns) or None,
            create_pr=create_pr,
        )
        if tag:
            api.create_tag(repo_id, tag=tag, revision=info.oid, repo_type=expected_type)
    return info


# ---------------------------------------------------------------------------------- pull
def _verify_checksums(snapshot: Path) -> None:
    """Each cached file against its blob name, the ETag the Hub gave (sha256 or git sha1).

    The huggingface_hub cache stores ``snapshots/<commit>/<file>`` as a link to
    ``blobs/<etag>``; a blob whose content does not hash to its name is removed, so the next
    pull downloads it again.
    """
    for link in sorted(p for p in snapshot.rglob("*") if p.is_symlink()):
        blob = link.resolve()
        if not blob.is_file():
            continue
        expected = blob.name
        data = blob.read_bytes()
        if len(expected) == 64:
            actual = hashlib.sha256(data).hexdigest()
        elif len(expected) == 40:
            actual = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        else:
            continue
        if actual != expected:
            blob.unlink(missing_ok=True)
            link.unlink(missing_ok=True)
            rel = link.relative_to(snapshot).as_posix()
            raise HubError(
                f"{rel}: corrupt download (checksum {actual[:12]}… != {expected[:12]}…); "
                "removed from the cache, run the same command again"
            )


def _check_listing(repo_id: str, repo_type: str, commit: str, cache_dir: str | None) -> None:
    """Refuse repos with pickle weights, and repos that are not samix-hub artifacts at all.

    A repo with ``model.safetensors`` beside its pickles (timm publishes both) is accepted with
    one warning on stderr: the pickles are never downloaded (``_IGNORE``) nor loaded.
    """
    import huggingface_hub

    get_tree = getattr(huggingface_hub, "get_cached_repo_tree", None)
    if get_tree is None:  # huggingface_hub < 2.4: the folder validation below still runs
        return
    try:
        paths = [
            f.path
            for f in get_tree(repo_id, repo_type=repo_type, revision=commit, cache_dir=cache_dir)
        ]
    except Exception:  # no cached listing (older cache); validation of the folder still runs
        return
    unsafe = [p for p in paths if not safe_repo_path(p)]
    if unsafe:
        raise HubError(
            f"{repo_id}@{commit[:12]}: unsafe file name {unsafe[0]!r} points outside the "
            "repo; nothing was installed"
        )
    pickles = [p for p in paths if p.endswith(PICKLE_SUFFIXES)]
    if pickles and SAFE_BESIDE_PICKLES in paths:
        # A timm / transformers repo publishes both formats: use the safetensors file only.
        print(
            f"warning: {repo_id}@{commit[:12]}: ignoring pickle files {pickles[:3]} "
            f"(never downloaded nor loaded); using {SAFE_BESIDE_PICKLES}",
            file=sys.stderr,
        )
    elif pickles:
        raise HubError(
            f"{repo_id}@{commit[:12]}: contains pickle weights {pickles[:3]} and no "
            f"{SAFE_BESIDE_PICKLES}; samix-hub never loads pickles (nothing was downloaded): "
            "convert them to safetensors"
        )
    if CONFIG_NAME not in paths and not any(
        p.startswith("data/") and p.endswith(".parquet") for p in paths
    ):
        raise HubError(
            f"{repo_id}@{commit[:12]}: not a samix-hub artifact (no config.json, no data/*.parquet)"
        )


def _download(
    repo_id: str,
    revision: str | None,
    runtime: str,
    repo_type: str | None,
    endpoint: str | None,
    token: str | None,
    offline: bool,
    cache_dir: str | None,
) -> tuple[Path, str]:
    """snapshot_download into the cache; tries a model repo then a dataset repo when untyped."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    types = [repo_type] if repo_type else ["model", "dataset"]
    for i, kind in enumerate(types):
        with hub_errors(repo_id, revision, endpoint, offline):
            try:
                path = snapshot_download(
                    repo_id,
                    repo_type=kind,
                    revision=revision,
                    allow_patterns=allow_patterns(runtime),
                    ignore_patterns=_IGNORE,
                    endpoint=endpoint,
                    token=token,
                    local_files_only=offline,
                    cache_dir=cache_dir,
                    library_name="samix-hub",
                )
            except (RepositoryNotFoundError, LocalEntryNotFoundError):
                if i < len(types) - 1:  # not a model repo (or not cached as one): try dataset
                    continue
                raise
        return Path(path), kind
    raise AssertionError("unreachable")


def pull(
    repo_id: str,
    revision: str | None = None,
    runtime: str = "torch",
    local_dir: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    token: str | bool | None = None,
    offline: bool | None = None,
    repo_type: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> ResolvedSource:
    """Download the files ``runtime`` needs from ``repo_id`` at ``revision``, verified.

    Files go to the huggingface_hub cache (offline pulls read it); with ``local_dir`` they are
    then copied into that folder (see :func:`samix_hub.hub.local_copy.install_snapshot`: a folder with other files is refused
    unless ``force``, and no file the pull did not write is ever deleted). Returns the local
    path, the resolved commit sha and the artifact kind. ``repo_type`` None tries a model
    repo, then a dataset repo.
    """
    allow_patterns(runtime)
    if local_dir is not None:
        check_writable_dir(local_dir, "--dir")
    if repo_type not in (None, "model", "dataset"):
        raise UserError(f"unknown repo type {repo_type!r}; choose model or dataset")
    cache = str(cache_dir) if cache_dir is not None else None
    offline_mode = is_offline(offline)
    snapshot, kind_of_repo = _download(
        repo_id, revision, runtime, repo_type, endpoint, token, offline_mode, cache
    )
    commit = snapshot.name
    if not _COMMIT_RE.match(commit):
        raise HubError(f"{repo_id}: unexpected snapshot folder {snapshot}")
    _check_listing(repo_id, kind_of_repo, commit, cache)
    _verify_checksums(snapshot)
    try:
        kind = validate_artifact(snapshot, runtime)
        card = snapshot / CARD_NAME
        if kind != BACKBONE and card.is_file():  # ours; timm repos may carry any card
            check_card_parses(card, "dataset" if kind == MIXED_DATASET else "model")
    except ArtifactError as err:
        rel = str(err).replace(str(snapshot) + os.sep, "").replace(str(snapshot), ".")
        raise HubError(f"{repo_id}@{commit[:12]}: {rel}") from None
    path = (
        snapshot
        if local_dir is None
        else install_snapshot(snapshot, Path(local_dir), repo_id, force)
    )
    return ResolvedSource(
        path=path,
        repo_id=repo_id,
        revision=revision or "main",
        commit=commit,
        kind=kind,
        repo_type=kind_of_repo,
        validated=runtime,
    )
