"""The output folder of ``mix``: who owns it, what a fresh run may clear, and its lock.

``mix`` writes only into an empty folder or one that carries its marker, the state file
``.samix-mix.json`` (docs/artifacts.md "The mixed data set"). The marker records the settings
of the run that wrote the folder, and so the files it wrote: ``README.md`` and the shards
``data/train-NNNNN-of-TTTTT.parquet`` of its shard count. ``--no-resume`` removes those files
and nothing else; files of the user's in the folder are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from samix_hub.errors import UserError
from samix_hub.fileio import atomic_write_json, remove_stale_temps
from samix_hub.fileio.guard import read_json_bounded
from samix_hub.fileio.locking import folder_lock, is_lock_file
from samix_hub.format.artifact import CARD_NAME
from samix_hub.format.mixed import DATA_DIR, FORMAT_VERSION, STATE_NAME, num_shards, shard_name

__all__ = ["check_mix_out", "mix_lock", "prepare_out"]


def _ignored(name: str) -> bool:
    """Files that do not make a folder non-empty: locks, and temporary files of our own."""
    return is_lock_file(name) or (
        name.endswith(".tmp") and name.startswith((f"{STATE_NAME}.", ".samix-probe."))
    )


def _first_file(folder: Path) -> Path | None:
    """A file (or link) in ``folder`` or below that is not ours to ignore; None when none."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if not _ignored(name):
                return Path(root) / name
    return None


def check_mix_out(out: str | os.PathLike[str]) -> None:
    """Refuse an ``--out`` that is neither empty (or absent) nor marked as a ``mix`` output."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_symlink():
        raise UserError(
            f"{out}: is a symbolic link (given as --out); samix-hub does not write through a "
            "link it did not create; give the real path"
        )
    for name in (STATE_NAME, CARD_NAME, DATA_DIR):  # what mix writes or clears
        if (out / name).is_symlink():
            raise UserError(
                f"{out / name}: is a symbolic link; `mix` writes and clears this path itself and "
                "does not follow links; remove it or choose another --out"
            )
    if (out / STATE_NAME).is_file() or not out.exists():
        return
    found = _first_file(out)
    if found is not None:
        raise UserError(
            f"{out}: not empty and not a `mix` output (no {STATE_NAME}; it holds "
            f"{found.relative_to(out)}); choose an empty or new --out"
        )


@contextlib.contextmanager
def mix_lock(out: Path, rank: int, world_size: int) -> Iterator[None]:
    """One ``mix`` job per folder. A single process holds the folder lock exclusively; the
    ranks of a ``torchrun`` job share it and each holds its own per-rank lock."""
    with contextlib.ExitStack() as stack:
        if world_size <= 1:
            stack.enter_context(folder_lock(out, "mix"))
        else:
            stack.enter_context(folder_lock(out, "mix", shared=True))
            stack.enter_context(
                folder_lock(out, f"mix (rank {rank})", name=f".samix.rank{rank}.lock")
            )
        yield


def _marked_settings(state_path: Path) -> dict[str, Any] | None:
    """The settings the marker records; None when it is missing, {} when unreadable."""
    if not state_path.is_file():
        return None
    try:
        settings = read_json_bounded(state_path).get("settings")
    except (json.JSONDecodeError, OSError, AttributeError):
        return {}
    return settings if isinstance(settings, dict) else {}


def _marked_total(settings: dict[str, Any]) -> int | None:
    try:
        return num_shards(int(settings["num"]), int(settings["shard_size"]))
    except (KeyError, TypeError, ValueError):
        return None


def prepare_out(
    out: Path, settings: dict[str, Any], total: int, resume: bool, rank: int, mine: range
) -> None:
    """Check the marker against ``settings`` (resume) or clear what it says a previous run
    wrote (``resume=False``), remove temporary files of a killed run, write the marker.

    Call it while holding :func:`mix_lock`.
    """
    check_mix_out(out)
    data = out / DATA_DIR
    state_path = out / STATE_NAME
    old = _marked_settings(state_path)
    if resume and old is not None:
        diff = sorted(k for k in settings if old.get(k) != settings[k])
        if diff:
            raise UserError(
                f"{out}: holds a mixed data set made with other settings ({', '.join(diff)}); "
                "pass --no-resume to replace it or choose another --out"
            )
    elif not resume and old is not None:
        old_total = _marked_total(old)
        if old_total is None:
            raise UserError(
                f"{state_path}: unreadable, so the files of the previous run are unknown; "
                "remove them yourself or choose another --out"
            )
        for i in range(old_total):  # only what the marker says we wrote
            if (old_total != total and rank == 0) or (old_total == total and i in mine):
                (data / shard_name(i, old_total)).unlink(missing_ok=True)
        if rank == 0:
            (out / CARD_NAME).unlink(missing_ok=True)
    for i in mine:  # temporary files of a killed run
        remove_stale_temps(data, [shard_name(i, total)])
    if len(mine) == total:  # one process: no other rank writes the card or the marker now
        remove_stale_temps(out, [CARD_NAME, STATE_NAME])
    state = {"kind": "samix-mix-state", "format_version": FORMAT_VERSION, "settings": settings}
    atomic_write_json(state_path, state)
    data.mkdir(parents=True, exist_ok=True)
