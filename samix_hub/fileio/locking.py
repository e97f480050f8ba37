"""One writer per output folder: an OS record lock on ``FOLDER/.samix.lock``.

``train``, ``finetune``, ``mix`` and ``demo`` hold it for as long as they write into their
folder, so a second run into the same folder stops at once with a one-line error instead of
interleaving its files with the first one's. The lock is a POSIX record lock (``fcntl``
``F_SETLK`` through ``fcntl.lockf``) on an open file. The kernel releases it when the process
ends, however it ends, and a forked child (a DataLoader worker) does not inherit it, so a lock
file left by a killed run never blocks the next one, even while the killed run's workers are
still exiting. The file (empty but for a process id) stays in the folder; it is hidden, and
``push`` never uploads hidden files. A folder the lock created is removed again when nothing
else was written into it (a run that failed on its options leaves no folder). Without
``fcntl`` (Windows) no lock is taken.

A record lock belongs to the process, not to the open file: a second lock of the same file
by the same process would succeed, and closing any descriptor of the file drops the process's
lock. This module therefore keeps one descriptor per locked file and process, and refuses a
second exclusive lock of a file this process already holds. A lock file that is a symbolic
link, a hard link or not a regular file is refused (it is opened with ``O_NOFOLLOW``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from samix_hub.errors import OutputError, UserError

if sys.platform == "win32":  # pragma: no cover - not on POSIX
    fcntl = None
else:
    import fcntl

__all__ = ["LOCK_NAME", "folder_lock", "is_lock_file"]

LOCK_NAME = ".samix.lock"

#: (st_dev, st_ino) -> [descriptor, holders, shared] of the lock files this process holds.
_HELD: dict[tuple[int, int], list[int]] = {}
_HELD_GUARD = threading.Lock()


def is_lock_file(name: str) -> bool:
    """Whether ``name`` is one of the lock files this module creates."""
    return name.startswith(".samix") and name.endswith(".lock")


def _holder(path: Path) -> str:
    """The process id written in a lock file another process holds (read with its own
    descriptor: this process holds no lock on that file, so closing it drops nothing)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        pid = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)
    return f" (process {pid})" if pid.isdigit() else ""


def _in_use(folder: Path, what: str, holder: str) -> OutputError:
    return OutputError(
        f"{folder}: in use by another samix-hub {what}{holder}; wait for it to end or choose "
        "another output folder"
    )


def _open_lock_file(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or path.is_symlink():
            raise UserError(
                f"{path}: the lock file is a symbolic link; samix-hub does not write through a "
                "link it did not create; remove it"
            ) from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "a hard link" if stat.S_ISREG(info.st_mode) else "not a regular file"
        raise UserError(f"{path}: the lock file is {what}; remove it")
    return fd


def _acquire(folder: Path, path: Path, what: str, shared: bool) -> tuple[tuple[int, int], bool]:
    """Lock ``path``; returns its key in :data:`_HELD` and whether this call opened it. A lock
    file removed by its last holder while this process locked it is opened again (the inode
    check)."""
    assert fcntl is not None
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(path)
        info = os.fstat(fd)
        key = (info.st_dev, info.st_ino)
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is not None:  # this process holds it already: never a second descriptor
                os.close(fd)
                if not (shared and held[2]):
                    raise _in_use(folder, what, f" (process {os.getpid()})")
                held[1] += 1
                return key, False
        try:
            fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            current = os.stat(path, follow_symlinks=False).st_ino
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                raise _in_use(folder, what, _holder(path)) from None
            if exc.errno != errno.ENOENT:
                raise
            continue
        except BaseException:
            os.close(fd)
            raise
        if current == info.st_ino:
            with _HELD_GUARD:
                _HELD[key] = [fd, 1, int(shared)]
            return key, True
        os.close(fd)


def _release(key: tuple[int, int]) -> None:
    with _HELD_GUARD:
        held = _HELD[key]
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
    os.close(held[0])  # closing drops the record lock


@contextlib.contextmanager
def folder_lock(
    folder: str | os.PathLike[str],
    what: str = "run",
    *,
    shared: bool = False,
    name: str = LOCK_NAME,
) -> Iterator[Path]:
    """Hold the lock of ``folder`` (created if needed) for the ``with`` block.

    ``shared`` takes a shared lock (the ranks of one ``torchrun`` job; each also holds its own
    exclusive per-rank lock); otherwise it is exclusive. A held lock raises
    :class:`~samix_hub.errors.OutputError` naming the folder, without waiting. A folder that
    this call created and in which nothing else was written is removed again on exit.
    """
    folder = Path(folder)
    path = folder / name
    if fcntl is None:  # pragma: no cover
        folder.mkdir(parents=True, exist_ok=True)
        yield path
        return
    if folder.is_symlink():
        raise UserError(
            f"{folder}: is a symbolic link; samix-hub does not write through a link it did not "
            "create; give the real path"
        )
    created = not folder.exists()
    key, opened = _acquire(folder, path, what, shared)
    try:
        if opened and not shared:
            with contextlib.suppress(OSError):
                fd = _HELD[key][0]
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        if created and not shared:
            with contextlib.suppress(OSError):
                if [p.name for p in folder.iterdir()] == [name]:  # nothing was written
                    path.unlink()
                    folder.rmdir()
        _release(key)
