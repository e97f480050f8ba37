"""One writer per output folder: an OS file lock on ``FOLDER/.samix.lock``.

``train``, ``finetune`` and ``mix`` hold it for as long as they write into their folder, so a
second run into the same folder stops at once with a one-line error instead of interleaving its
files with the first one's. The lock is ``flock(2)`` on an open file: the kernel releases it
when the process ends, however it ends, so a lock file left by a killed run never blocks the
next one. The (empty but for a process id) file stays in the folder; it is hidden, and
``push`` never uploads hidden files. Without ``fcntl`` (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

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
    :class:`~samix_hub.errors.OutputError` naming the folder, without waiting.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if fcntl is None:  # pragma: no cover
        yield path
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OutputError(
            f"{folder}: in use by another samix-hub {what}{_holder(path)}; wait for it to end "
            "or choose another output folder"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    try:
        if not shared:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
