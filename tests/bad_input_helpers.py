"""Assertions shared by the bad-input tests: one-line errors and untouched folders."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from cli_helpers import run_cli


def tree_digest(root: Path, skip: Path | None = None) -> dict[str, str]:
    """relative path -> sha256 of every file and folder under ``root`` (``skip`` excluded)."""
    digest: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest[rel] = "link:" + str(path.readlink())
        elif path.is_file():
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[rel] = "dir"
    return digest


def assert_fails(
    args: list[object],
    capsys: pytest.CaptureFixture[str],
    root: Path,
    code: int,
    needle: str,
    out: Path | None = None,
) -> str:
    """Run ``samix-hub ARGS``: exit ``code``, exactly one stderr line ``Error: ...`` naming
    ``needle``, no traceback, and no file under ``root`` outside ``out`` changed."""
    before = tree_digest(root, skip=out)
    got, stdout, stderr = run_cli(args, capsys)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stdout + stderr, stderr
    assert got == code, (got, stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert needle in lines[0], (needle, lines[0])
    assert tree_digest(root, skip=out) == before, "a file outside --out changed"
    return lines[0]
