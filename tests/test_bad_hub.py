"""Hostile or broken Hub repos and pushes: refused in one line, nothing installed or uploaded.

``pull`` runs the real huggingface_hub client against ``tests/fakehub.py``, whose repos are
filled directly (what a careless or hostile uploader could publish). The huggingface_hub cache
lives outside the hashed test folder; ``--dir`` must not appear and nothing else may change.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from samix_hub.errors import UserError
from samix_hub.hub.checks import check_no_token

sys.path.insert(0, str(Path(__file__).parent))
from bad_input_helpers import (  # noqa: E402
    DEAD,
    TOKEN,
    assert_fails,
    copy_artifact,
    edit_config,
    no_network_fixture,  # noqa: F401  (fixture no_network)
    set_field,
    tiny_fixture,  # noqa: F401  (fixture tiny)
    truncate_file,
    weights_filled,
)
from fakehub import FakeHub, Repo  # noqa: E402

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        yield server


@pytest.fixture(autouse=True)
def _hub_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Xet uploads; the huggingface_hub cache in tmp_path/cache (outside the hashed root)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))


def _publish(hub: FakeHub, repo_type: str, repo_id: str, folder: Path, extra=None) -> None:
    """Put ``folder``'s files (plus ``extra``) on the Hub as one commit, unvalidated."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
             if p.is_file()}  # fmt: skip
    files.update(extra or {})
    repo = Repo(repo_type, repo_id, private=False)
    repo.branches["main"] = repo.add_commit(files, None, "raw upload")
    hub.repos[(repo_type, repo_id)] = repo


PULL_CASES = {
    # name: (artifact, damage, extra files, repo type, needle)
    "truncated_shard": (
        "mixed",
        truncate_file("data/train-00001-of-00002.parquet"),
        None,
        "dataset",
        "data/train-00001-of-00002.parquet: unreadable Parquet shard",
    ),
    "card_count": (
        "mixed",
        lambda f: (f / "README.md").write_text(
            (f / "README.md").read_text().replace("| 8 in 2 shards", "| 80 in 2 shards")
        ),
        None,
        "dataset",
        "records 80 rows in 2 shards",
    ),
    "dotdot_name": ("generator", None, {"../../escape.txt": b"owned"}, "model", "unsafe file"),
    "nan_generator": (
        "generator",
        weights_filled("generator.safetensors", math.nan),
        None,
        "model",
        "non-finite",
    ),
    "checkpoint_path": (
        "backbone",
        lambda f: edit_config(f, set_field("model_args.checkpoint_path", "../../../x.pth")),
        None,
        "model",
        "field 'model_args.checkpoint_path'",
    ),
    "hf_hub_architecture": (
        "backbone",
        lambda f: edit_config(f, set_field("architecture", "hf-hub:other/repo")),
        None,
        "model",
        "field 'architecture'",
    ),
}


@pytest.mark.parametrize("case", sorted(PULL_CASES))
def test_pull_refuses(case, hub, tiny, tmp_path, capsys):
    """The repo is downloaded into the cache, checked and refused: --dir never appears."""
    kind, damage, extra, repo_type, needle = PULL_CASES[case]
    root = tmp_path / "root"
    folder = copy_artifact(tiny, kind, tmp_path / "src")
    if damage is not None:
        damage(folder)
    repo_id = f"me/{case.replace('_', '-')}"
    _publish(hub, repo_type, repo_id, folder, extra)
    root.mkdir()
    dest = root / "pulled"
    args = ["pull", repo_id, "--endpoint", hub.url, "--runtime", "torch", "--dir", dest, "-q"]
    line = assert_fails(args, capsys, root, 1, needle, out=dest)
    assert repo_id in line and not dest.exists()


def test_pull_lists_no_file_outside_the_snapshot(hub, tiny, tmp_path, capsys):
    """Even when --runtime filters the bad name out of the download, the listing refuses it."""
    folder = copy_artifact(tiny, "generator", tmp_path / "src")
    _publish(hub, "model", "me/dotdot-all", folder, {"onnx/../../../up.txt": b"x"})
    (tmp_path / "root").mkdir()
    dest = tmp_path / "root" / "pulled"
    args = ["pull", "me/dotdot-all", "--endpoint", hub.url, "--runtime", "all", "--dir", dest]
    # -q: huggingface_hub's "Fetching N files" bar is on stderr too without it
    assert_fails([*args, "-q"], capsys, tmp_path / "root", 1, "unsafe file", out=dest)
    assert not list(tmp_path.rglob("up.txt"))


# ---------------------------------------------------------------------------------- token scan
def test_token_in_a_large_file_is_never_pushed(tiny, tmp_path, capsys, no_network):
    """A token past 64 MiB (the old scan skipped such files) is found; nothing is uploaded."""
    mixed = copy_artifact(tiny, "mixed", tmp_path / "in")
    big = mixed / "extra" / "big.dat"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: cheap to make, 65 MiB to scan
        f.seek(65 * 1024 * 1024)
        f.write(b"..." + TOKEN.encode() + b"...")
    args = ["push", mixed, "me/mixed", "--endpoint", DEAD, "--token", TOKEN]
    assert_fails(args, capsys, tmp_path, 1, f"{big}: contains your Hub token")
    assert not no_network


@pytest.mark.parametrize("offset", [0, 5, 9, 15, 16, 31, 40])
def test_token_across_a_chunk_boundary(offset, tmp_path):
    """Reads of 16 bytes overlap by len(token) - 1: a token split by a boundary is caught."""
    token = "hf_0123456789abcdef"
    data = bytearray(b"x" * 64)
    data[offset : offset + len(token)] = token.encode()
    (tmp_path / "f.bin").write_bytes(bytes(data[:64]))
    with pytest.raises(UserError, match="contains your Hub token"):
        check_no_token(tmp_path, token, chunk_size=16)
    (tmp_path / "f.bin").write_bytes(b"x" * 64 + token.encode()[:-1])  # a prefix only
    check_no_token(tmp_path, token, chunk_size=16)
