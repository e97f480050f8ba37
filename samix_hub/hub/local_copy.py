"""``pull --dir``: copy a verified Hub snapshot into a local folder without losing files.

A folder is "the same artifact" when every file in it is byte-identical to the file at the same
path in a cached snapshot of the repo (what an earlier pull wrote). Such a folder, or an empty
one, is replaced atomically; any other is refused unless ``force``, which adds the artifact's
files and deletes only files of an earlier pull (README "What each command guarantees").
"""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

from samix_hub.errors import UserError
from samix_hub.fileio import atomic_write
from samix_hub.fileio.guard import folder_kind, guard_output

__all__ = ["install_snapshot"]


def _classify(target: Path, snapshot: Path, all_: bool) -> tuple[list[Path], list[Path]]:
    """Split the files in ``target`` into those a pull of this repo put there (byte-identical
    to the same path in a cached snapshot of the repo) and everything else; without ``all_``
    it stops at the first other file."""
    snapshots = [p for p in snapshot.parent.iterdir() if p.is_dir()]
    ours: list[Path] = []
    foreign: list[Path] = []
    for root, dirs, files in os.walk(target):
        dirs.sort()
        links = [
            d for d in dirs if (Path(root) / d).is_symlink()
        ]  # never ours: a pull writes files
        for name in sorted(files) + links:
            path = Path(root) / name
            rel = path.relative_to(target)
            same = not path.is_symlink() and any(
                (s / rel).is_file() and filecmp.cmp(path, s / rel, shallow=False) for s in snapshots
            )
            (ours if same else foreign).append(rel)
            if foreign and not all_:
                return ours, foreign
    return ours, foreign


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dst, lambda tmp: shutil.copyfile(src.resolve(), tmp))


def install_snapshot(snapshot: Path, target: Path, repo_id: str, force: bool = False) -> Path:
    """Copy a verified snapshot to ``target``.

    An empty (or absent) folder, or one holding only files of an earlier pull of this repo, is
    replaced atomically: temp folder beside it, then rename. Any other non-empty folder is
    refused, unless ``force``: then the artifact's files are written into it one by one
    (atomically), files of an earlier pull of this repo that the artifact no longer has are
    removed, and every other file is kept.
    """
    target = target.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UserError(f"{target}: exists and is not a folder")
    guard_output(target, "--dir", kind=folder_kind(snapshot))
    ours, foreign = _classify(target, snapshot, force) if target.is_dir() else ([], [])
    if foreign and not force:
        raise UserError(
            f"{target}: exists, is not empty and is not a samix-hub artifact pulled from "
            f"{repo_id} (it holds {foreign[0]}); choose another --dir, or pass --force to add "
            "the artifact's files (other files are kept)"
        )
    new = sorted(p.relative_to(snapshot) for p in snapshot.rglob("*") if p.is_file())
    if foreign:  # --force: never delete a file this repo did not provide
        for rel in new:  # nor write through a link in the folder
            for part in [*reversed((target / rel).parents), target / rel]:
                if part.is_symlink() and target in part.parents:
                    raise UserError(
                        f"{part}: is a symbolic link in --dir; a pull does not write through "
                        "a link it did not create; remove it"
                    )
        for rel in new:
            _copy_atomic(snapshot / rel, target / rel)
        for rel in set(ours) - set(new):
            (target / rel).unlink(missing_ok=True)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    old = None
    try:
        for rel in new:
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile((snapshot / rel).resolve(), dst)
        if target.exists():
            old = target.with_name(f".{target.name}.{os.getpid()}.old")
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not target.exists():
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
