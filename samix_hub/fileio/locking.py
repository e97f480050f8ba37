"""One writer per output folder: an OS file lock on ``FOLDER/.samix.lock``.

``train``, ``finetune`` and ``mix`` hold it for as long as they write into their folder, so a
second run into the same folder stops at once with a one-line error instead of interleaving its
files with the first one's. The lock is ``flock(2)`` on an open file: the kernel releases it
when the process ends, however it ends, so a lock file left by a killed run never blocks the
next one. The file (empty but for a process id) stays in the folder; it is hidden, and
``push`` never uploads hidden files. A folder the lock created is removed again when nothing
else was written into it (a run that failed on its options leaves no folder). Without
``fcntl`` (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "folder_lock", "is_lock_file"]

LOCK_NAME = ".samix.lock"


def is_lock_file(name: str) -> bool:
    """Whether ``name`` is one of the lock files this module creates."""
    return name.startswith(".samix") and name.endswith(".lock")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""


def _acquire(folder: Path, path: Path, what: str, shared: bool) -> int:
    """An open, locked descriptor of ``path``. A lock file removed by its last holder while
    this process waited to lock it is opened again (the inode check)."""
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            current = os.stat(path).st_ino
        except BlockingIOError:
            os.close(fd)
            raise OutputError(
                f"{folder}: in use by another samix-hub {what}{_holder(path)}; wait for it to "
                "end or choose another output folder"
            ) from None
        except FileNotFoundError:
            current = None
        except BaseException:
            os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


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
    created = not folder.exists()
    fd = _acquire(folder, path, what, shared)
    try:
        if not shared:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        if created and not shared:
            with contextlib.suppress(OSError):
                if [p.name for p in folder.iterdir()] == [name]:  # nothing was written
                    path.unlink()
                    folder.rmdir()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
