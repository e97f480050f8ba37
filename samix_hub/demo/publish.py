"""Publish a folder into a local Hugging Face Hub cache (the demo's offline "push")."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from samix_hub.demo.config import LFS_MIN_SIZE, LFS_SUFFIXES
from samix_hub.errors import UserError
from samix_hub.fileio import atomic_write_json, atomic_write_text

__all__ = ["publish_local"]


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def publish_local(folder: str | os.PathLike[str], repo_id: str, cache_dir: str | Path) -> str:
    """Publish ``folder`` as ``repo_id`` into a local Hugging Face Hub cache; return its commit.

    Why a cache and not a server: the Hub-compatible HTTP server of this project lives in
    ``tests/`` and does not ship in the package, and the demo must run offline from an installed
    package. A cache in huggingface_hub's documented layout (``models--ORG--NAME/`` with
    ``blobs/<etag>``, ``snapshots/<commit>/`` links, ``refs/main`` and the ``trees/<commit>.json``
    listing) is what a real ``samix-hub pull`` leaves on disk, so the pull back runs the real
    client offline: revision -> commit, listing, checksum of every file against its ETag (sha256
    for LFS files, git blob sha1 otherwise) and artifact validation. The commit id is the sha1 of
    the file listing: the same content publishes to the same commit.
    """
    src = Path(folder)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise UserError(f"{src}: nothing to publish")
    org, name = repo_id.split("/")
    storage = Path(cache_dir) / f"models--{org}--{name}"
    entries: dict[str, dict[str, Any]] = {}
    blobs: dict[str, tuple[Path, str]] = {}
    for path in files:
        rel = path.relative_to(src).as_posix()
        data = path.read_bytes()
        info: dict[str, Any] = {"size": len(data), "blob_id": _git_blob_sha1(data)}
        etag = info["blob_id"]
        if path.suffix in LFS_SUFFIXES or len(data) >= LFS_MIN_SIZE:
            etag = hashlib.sha256(data).hexdigest()
            info.update(lfs_sha256=etag, lfs_size=len(data))
        entries[rel] = info
        blobs[rel] = (path, etag)
    listing = "".join(f"{e['blob_id']} {rel}\n" for rel, e in sorted(entries.items()))
    commit = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    shutil.rmtree(snapshot, ignore_errors=True)
    for rel, (path, etag) in blobs.items():
        blob = storage / "blobs" / etag
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, blob.with_suffix(".incomplete"))
            os.replace(blob.with_suffix(".incomplete"), blob)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    atomic_write_json(storage / "trees" / f"{commit}.json", {"format_version": 1, "files": entries})
    atomic_write_text(storage / "refs" / "main", commit)
    return commit
