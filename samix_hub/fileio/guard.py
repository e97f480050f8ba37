"""The one write guard: what every output location of a command (``--out``, ``--dir``,
``--preview``, a lock, a folder replaced by ``--force``) is checked against before anything is
written or deleted (README "What each command guarantees").

A command writes only

- to a path that is not a symbolic link (a link it did not create may point anywhere);
- to a path that is neither one of the command's inputs nor inside one, and, when it replaces
  or clears a folder, to a folder that holds none of its inputs;
- to a path that is not inside another samix-hub folder (a run, a generator or backbone
  artifact, a mixed data set): those are published or resumed as a whole;
- over a file only when it wrote that file (``ours``), and into a folder of ``--force`` only
  when every file there is one it would write itself (``replaceable_files``).

Every refusal is a :class:`~samix_hub.errors.UserError` (exit code 2: the output given is the
wrong place; nothing was written) naming the path and what is in the way. JSON read here is
bounded in size and nesting (:func:`loads_bounded`, used by every reader of a samix-hub JSON
file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from samix_hub.errors import UserError
from samix_hub.format.artifact import BACKBONE, CONFIG_NAME, GENERATOR, MIXED_STATE_NAME, RUN

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_BYTES",
    "check_json_depth",
    "loads_bounded",
    "read_json_bounded",
    "folder_kind",
    "guard_output",
    "foreign_files",
]

#: Deepest nesting of ``[`` / ``{`` accepted in a JSON file (Python's parser recurses).
MAX_JSON_DEPTH = 64
#: Largest config file read (a config is a few kB).
MAX_JSON_BYTES = 16 << 20

_KIND_NAMES = {
    RUN: "training run",
    GENERATOR: "generator artifact",
    BACKBONE: "backbone artifact",
    "mixed": "mixed data set",
}


def check_json_depth(text: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` before it is parsed (a deep
    document makes ``json.loads`` raise ``RecursionError``). Brackets in strings are skipped.
    Raises ``json.JSONDecodeError``, so every caller's handler of bad JSON applies."""
    depth = 0
    in_string = escaped = False
    for pos, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise json.JSONDecodeError(
                    f"nested deeper than {MAX_JSON_DEPTH} levels", text[: pos + 1], pos
                )
        elif ch in "]}":
            depth -= 1


def loads_bounded(text: str | bytes) -> Any:
    """``json.loads`` of at most :data:`MAX_JSON_BYTES` and :data:`MAX_JSON_DEPTH` levels;
    anything else raises ``json.JSONDecodeError`` (never ``RecursionError``)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if len(text) > MAX_JSON_BYTES:
        raise json.JSONDecodeError(f"larger than {MAX_JSON_BYTES} bytes", "", 0)
    check_json_depth(text)
    return json.loads(text)


def read_json_bounded(path: str | os.PathLike[str]) -> Any:
    """:func:`loads_bounded` of a file, whose size is checked before it is read."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise json.JSONDecodeError(f"{size} bytes, larger than any samix-hub JSON file", "", 0)
    return loads_bounded(path.read_text(encoding="utf-8"))


def _config_kind(folder: Path) -> str | None:
    path = folder / CONFIG_NAME
    try:
        if not path.is_file():  # read only: a Hub snapshot's files are links to blobs
            return None
        cfg = read_json_bounded(path)
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    kind = cfg.get("kind")
    if kind in (RUN, GENERATOR):
        return str(kind)
    if "architecture" in cfg:  # a timm config, as export/validate.py:detect_kind reads it
        return BACKBONE
    return None


def folder_kind(folder: str | os.PathLike[str]) -> str | None:
    """What samix-hub folder ``folder`` is: ``samix-run``, ``samix-generator``,
    ``samix-backbone``, ``"mixed"`` (a ``mix`` output, by its marker), or None."""
    folder = Path(folder)
    try:
        if not folder.is_dir():
            return None
        if (folder / MIXED_STATE_NAME).is_file():
            return "mixed"
    except OSError:
        return None
    return _config_kind(folder)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return Path(os.path.abspath(path))


def guard_output(
    path: str | os.PathLike[str],
    option: str,
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    replaces: bool = False,
    kind: str | None = None,
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """Check an output location before anything is written there; returns it, absolute.

    ``inputs``: the command's input files and folders (the output may be none of them, nor
    inside one; with ``replaces`` it may not hold one either, since the folder is replaced or
    cleared). ``kind``: the samix-hub folder kind the command writes (``folder_kind``); the
    output may be a folder of that kind, never one of another kind, and is never inside
    another samix-hub folder. ``ours``: for a file output, whether an existing file there is
    one this command wrote (and so may be overwritten); without it an existing file is
    refused.
    """
    given = Path(path).expanduser()
    where = f" (given as {option})" if option else ""
    target = Path(os.path.abspath(given))
    if target.is_symlink():
        raise UserError(
            f"{target}: is a symbolic link{where}; samix-hub does not write through a link it "
            "did not create; give the real path"
        )
    real = _resolved(target)
    for inp in inputs:
        source = _resolved(Path(os.path.abspath(Path(inp).expanduser())))
        if real == source or source in real.parents:
            raise UserError(
                f"{target}: is {'' if real == source else 'inside '}the input {inp}{where}; "
                "choose an output outside the command's inputs"
            )
        if replaces and real in source.parents:
            raise UserError(
                f"{target}: holds the input {inp}{where}, and would be replaced; choose "
                "another output"
            )
    for parent in real.parents:
        found = folder_kind(parent)
        if found is not None:
            raise UserError(
                f"{target}: inside the {_KIND_NAMES[found]} folder {parent}{where}; "
                "choose a path outside it"
            )
    if target.is_dir():
        found = folder_kind(target)
        if found is not None and found != kind:
            raise UserError(
                f"{target}: is a {_KIND_NAMES[found]} folder{where}; choose another output"
            )
    elif target.exists() or target.is_symlink():
        if ours is None or not ours(target):
            raise UserError(
                f"{target}: exists and is not a file this command wrote{where}; remove it "
                "yourself or choose another path"
            )
    return target


def foreign_files(folder: Path, allowed: Iterable[str]) -> list[str]:
    """Paths (relative, POSIX) in ``folder`` that are not in ``allowed``: links, and files
    another program wrote. Lock files of samix-hub are not counted."""
    from samix_hub.fileio.locking import is_lock_file

    allowed = set(allowed)
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        here = Path(root)
        for name in sorted(dirs):
            if (here / name).is_symlink():
                found.append((here / name).relative_to(folder).as_posix())
        for name in sorted(files):
            rel = (here / name).relative_to(folder).as_posix()
            if (here / name).is_symlink() or (rel not in allowed and not is_lock_file(name)):
                found.append(rel)
    return found
