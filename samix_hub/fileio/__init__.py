"""Atomic file writes (temporary file in the same folder, then ``os.replace``) and the checks
that an output location is writable before long work starts (README "What each command
guarantees")."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "folder_sha256",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "append_line",
    "remove_stale_temps",
    "check_writable_dir",
    "check_writable_file",
    "FAULT_ERRNOS",
    "fault_of",
]

_UMASK = os.umask(0)
os.umask(_UMASK)

#: Errors of the storage rather than of the input: disk full, read-only, no permission, quota,
#: and a file larger than the process may write (``ulimit -f``).
FAULT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
)
#: How Rust libraries (safetensors) report an OS error in their message.
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _name_path(exc: BaseException, path: Path) -> None:
    """Give the ``OSError`` behind a failed write (which has no file name) the path written."""
    fault = exc if isinstance(exc, OSError) else fault_of(exc)
    if fault is not None and fault.filename is None:
        fault.filename = str(path)


def atomic_write(target: str | os.PathLike[str], write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``target``.

    A crash leaves either the old file or none, never a partial one that looks complete; the
    temporary file (``.NAME.XXXX.tmp``) of a killed process is removed by the next run
    (:func:`remove_stale_temps`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; published files are world-readable
        os.replace(tmp, target)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        _name_path(exc, target)
        raise
    return target


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(target, lambda p: Path(p).write_text(text, encoding="utf-8"))


def atomic_write_json(target: str | os.PathLike[str], data: Any) -> Path:
    return atomic_write_text(target, json.dumps(data, indent=2, sort_keys=False) + "\n")


def append_line(path: Path, line: str) -> None:
    """Append one line and flush (a write error names ``path``)."""
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
    except OSError as exc:
        _name_path(exc, path)
        raise


def remove_stale_temps(folder: str | os.PathLike[str], names: Iterable[str]) -> list[Path]:
    """Remove the temporary files (``.NAME.XXXX.tmp``) that a killed :func:`atomic_write` of
    each of ``names`` left in ``folder``. Call it only while holding the folder's lock."""
    removed = []
    for name in names:
        for tmp in Path(folder).glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _unwritable(path: Path, exc: OSError, option: str) -> Exception:
    from samix_hub.errors import OutputError

    reason = exc.strerror or str(exc)
    if isinstance(exc, (NotADirectoryError, FileExistsError)):
        reason = "a part of the path is a file, not a folder"
    where = f" (given as {option})" if option else ""
    return OutputError(f"{path}: cannot write here{where}: {reason}")


def _probe(folder: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".samix-probe.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)


def check_writable_dir(folder: str | os.PathLike[str], option: str = "") -> Path:
    """Check that files can be created in ``folder`` (or, while it does not exist, in its
    nearest existing parent), before long work; nothing is left behind.

    Raises :class:`~samix_hub.errors.OutputError` (one line, naming the folder) when it cannot:
    a read-only file system, no permission, a full disk, or a file in the way.
    """
    folder = Path(folder)
    try:
        probe = folder.absolute()
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(probe))
        _probe(probe)
    except OSError as exc:
        raise _unwritable(folder, exc, option) from None
    return folder


def check_writable_file(path: str | os.PathLike[str], option: str = "") -> Path:
    """Check that the file ``path`` can be written (its folder is created if needed)."""
    path = Path(path)
    if path.is_dir():
        from samix_hub.errors import OutputError

        raise OutputError(f"{path}: is a folder, not a file (given as {option})")
    check_writable_dir(path.parent, option)
    if path.exists() and not os.access(path, os.W_OK):
        exc = PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        raise _unwritable(path, exc, option) from None
    return path


def fault_of(exc: BaseException) -> OSError | None:
    """The storage fault (:data:`FAULT_ERRNOS`) behind ``exc`` or its causes, if any; also
    one that a library reports without an ``OSError`` (safetensors' ``SafetensorError``:
    "... (os error 28)"), then as a new ``OSError`` with that errno."""
    texts = {os.strerror(e) for e in FAULT_ERRNOS}
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and (
            cur.errno in FAULT_ERRNOS or (cur.errno is None and any(t in str(cur) for t in texts))
        ):
            return cur
        found = None if isinstance(cur, OSError) else _RUST_OS_ERROR.search(str(cur))
        if found is not None and int(found.group(1)) in FAULT_ERRNOS:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        cur = cur.__cause__ or cur.__context__
    return None


def folder_sha256(folder: Path, names: list[str]) -> str:
    """sha256 over ``name sha256(file)`` lines of the named files (a folder's identity)."""
    lines = []
    for name in names:
        digest = hashlib.sha256()
        with open(folder / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        lines.append(f"{name} {digest.hexdigest()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()
