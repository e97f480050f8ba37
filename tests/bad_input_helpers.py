"""Shared by the bad-input tests: one-line error assertions, folder digests, the tiny real
artifacts (``tiny``) and the ways to damage them, and a ``no_network`` fixture."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from cli_helpers import run_cli
from safetensors.torch import load_file, save_file
from test_export import make_run

from samix_hub.cli.main import main
from samix_hub.export.generator import export_run

TOKEN = "hf_badInputsSecretToken0123456789"
DEAD = "http://127.0.0.1:9"  # never contacted: every case fails before the network


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


@pytest.fixture(scope="module", name="tiny")
def tiny_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """generator/, backbone/ (exported from a tiny run) and mixed/ (2 shards of 4 rows)."""
    root = tmp_path_factory.mktemp("tiny")
    export_run(make_run(root), root / "out", onnx=False)
    args = ["mix", "--method", "mixup", "--data", "digits", "--num", 8, "--shard-size", 4,
            "--batch-size", 4, "--workers", 0, "--out", root / "out" / "mixed", "-q"]  # fmt: skip
    try:
        main([str(a) for a in args])
    except SystemExit as exc:  # module fixtures cannot use capsys: the exit code tells
        assert not exc.code, exc.code
    return root / "out"


@pytest.fixture(name="no_network")
def no_network_fixture(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connection attempt is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def copy_artifact(tiny: Path, kind: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(tiny / kind, root / kind))


def edit_config(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def set_field(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted config field (``mixer.dropout``)."""

    def change(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def weights_filled(name: str, value: float, keys: str = "all") -> Callable[[Path], None]:
    """Fill every tensor (or only the first) of a safetensors file with ``value``."""

    def damage(folder: Path) -> None:
        state = load_file(str(folder / name))
        for i, key in enumerate(sorted(state)):
            if state[key].is_floating_point() and (keys == "all" or i == 0):
                state[key] = torch.full_like(state[key], value)
        save_file(state, str(folder / name), metadata={"format": "pt"})

    return damage


def truncate_file(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage
