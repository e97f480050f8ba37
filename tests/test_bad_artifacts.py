"""Corrupt and hostile artifacts: refused in one line, never loaded, never published.

The artifacts are real tiny exports (``test_export.make_run`` + ``export_run``) and a real
``mix`` output, then damaged by rewriting ``config.json``, the safetensors weights or a shard.
Each case asserts the exit code, one ``Error:`` line naming the file and field, no traceback
and no change to the test's folder outside ``--out``. Backbone and generator validation runs
with sockets disabled: it reads only the artifact's own files.
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from samix_hub.artifacts import validate_artifact
from samix_hub.cli import main
from samix_hub.errors import ArtifactError, UserError
from samix_hub.export_run import export_run

sys.path.insert(0, str(Path(__file__).parent))
from bad_input_helpers import assert_fails, tree_digest  # noqa: E402
from cli_helpers import run_cli  # noqa: E402
from test_export import make_run  # noqa: E402

TOKEN = "hf_badInputsSecretToken0123456789"
DEAD = "http://127.0.0.1:9"  # never contacted: every case fails before the network


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
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


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every socket connection attempt is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


def _copy(tiny: Path, kind: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(tiny / kind, root / kind))


def _edit_config(folder: Path, change: Callable[[dict[str, Any]], None]) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    change(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set a dotted config field (``mixer.dropout``)."""

    def change(cfg: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = cfg
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return change


def _weights(name: str, value: float, keys: str = "all") -> Callable[[Path], None]:
    """Fill every tensor (or only the first) of a safetensors file with ``value``."""

    def damage(folder: Path) -> None:
        state = load_file(str(folder / name))
        for i, key in enumerate(sorted(state)):
            if state[key].is_floating_point() and (keys == "all" or i == 0):
                state[key] = torch.full_like(state[key], value)
        save_file(state, str(folder / name), metadata={"format": "pt"})

    return damage


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])

    return damage


# ---------------------------------------------------------------------------------- generator
GEN_CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    # name: (damage, needle, is a config edit)
    "nan_weights": (_weights("generator.safetensors", math.nan), "non-finite", False),
    "inf_tensor": (_weights("generator.safetensors", math.inf, "one"), "non-finite", False),
    "truncated_weights": (_truncate("generator.safetensors"), "generator.safetensors", False),
    "stage_string": (_set("stage", "3"), "field 'stage'", True),
    "stage_99": (_set("stage", 99), "field 'stage'", True),
    "in_chans_zero": (_set("in_chans", 0), "field 'in_chans'", True),
    "in_chans_bool": (_set("in_chans", True), "field 'in_chans'", True),
    "input_size_short": (_set("input_size", [32]), "field 'input_size'", True),
    "input_size_zero": (_set("input_size", [0, 0]), "field 'input_size'", True),
    "input_size_text": (_set("input_size", "32x32"), "field 'input_size'", True),
    "mean_length": (_set("mean", [0.5, 0.5]), "field 'mean'", True),
    "std_zero": (_set("std", [0.0, 0.2, 0.2]), "field 'std'", True),
    "std_nan": (_set("std", [math.nan, 0.2, 0.2]), "field 'std'", True),
    "mixer_list": (_set("mixer", []), "field 'mixer'", True),
    "mixer_reduction": (_set("mixer.reduction", 0), "field 'mixer.reduction'", True),
    "mixer_dropout": (_set("mixer.dropout", 1.5), "field 'mixer.dropout'", True),
    "mixer_variant": (_set("mixer.variant", "other"), "field 'mixer.variant'", True),
    "mixer_unknown": (_set("mixer.extra", 1), "field 'mixer.extra'", True),
    "mixer_lam_concat": (_set("mixer.lam_concat", "yes"), "field 'mixer.lam_concat'", True),
    "mixer_channels": (_set("mixer.in_channels", -4), "field 'mixer.in_channels'", True),
    "backbone_hf_hub": (_set("backbone", "hf-hub:other/repo"), "field 'backbone'", True),
    "backbone_number": (_set("backbone", 42), "field 'backbone'", True),
    "backbone_path": (_set("backbone", "../../elsewhere"), "field 'backbone'", True),
    "unknown_field": (_set("surprise", 1), "field 'surprise'", True),
    "provenance_list": (_set("provenance", []), "field 'provenance'", True),
    "format_version_text": (_set("format_version", "1"), "format_version '1'", True),
}


@pytest.mark.parametrize("case", sorted(GEN_CASES))
def test_corrupt_generator(case, tiny, tmp_path, capsys, no_network):
    """mix refuses it (one line, exit 2), validation refuses it, info still describes it."""
    damage, needle, is_config = GEN_CASES[case]
    gen = _copy(tiny, "generator", tmp_path / "in")
    (_edit_config(gen, damage) if is_config else damage(gen))
    out = tmp_path / "in" / "mixed"
    args = ["mix", "--generator", gen, "--data", "digits", "--out", out, "--runtime", "torch",
            "--num", 4, "--batch-size", 4, "-q"]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 2, needle, out=out)
    assert str(gen) in line and not out.exists()
    with pytest.raises(ArtifactError, match="config.json|generator.safetensors"):
        validate_artifact(gen, "torch")
    code, stdout, stderr = run_cli(["info", gen], capsys)  # describes, never crashes
    assert "Traceback" not in stdout + stderr, stderr
    valid = next(line for line in stdout.splitlines() if line.startswith("valid:"))
    assert code == 0 and "NO: " in valid and needle in valid, stdout
    assert not no_network


# ---------------------------------------------------------------------------------- backbone
BB_CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    "checkpoint_path": (
        _set("model_args.checkpoint_path", "../outside.pth"),
        "field 'model_args.checkpoint_path'",
        True,
    ),
    "hf_hub_architecture": (
        _set("architecture", "hf-hub:other/repo"),
        "field 'architecture'",
        True,
    ),
    "overlay_file": (
        _set("model_args.pretrained_cfg_overlay", {"file": "/etc/hostname"}),
        "field 'model_args.pretrained_cfg_overlay'",
        True,
    ),
    "pretrained_true": (_set("model_args.pretrained", True), "'model_args.pretrained'", True),
    "model_arg_url": (
        _set("model_args.drop_path", "https://example.com/x"),
        "names a path or URL",
        True,
    ),
    "pretrained_url": (
        _set("pretrained_cfg.url", "https://example.com/w.pth"),
        "field 'pretrained_cfg.url'",
        True,
    ),
    "pretrained_hub_id": (
        _set("pretrained_cfg.hf_hub_id", "other/repo"),
        "field 'pretrained_cfg.hf_hub_id'",
        True,
    ),
    "input_size_short": (
        _set("pretrained_cfg.input_size", [3, 32]),
        "field 'pretrained_cfg.input_size'",
        True,
    ),
    "input_chans_zero": (
        _set("pretrained_cfg.input_size", [0, 32, 32]),
        "field 'pretrained_cfg.input_size'",
        True,
    ),
    "input_size_tiny": (
        _set("pretrained_cfg.input_size", [3, 2, 2]),
        "field 'pretrained_cfg.input_size[1:]'",
        True,
    ),
    "pretrained_cfg_list": (_set("pretrained_cfg", []), "field 'pretrained_cfg'", True),
    "pretrained_mean": (
        _set("pretrained_cfg.mean", [0.5]),
        "field 'pretrained_cfg.mean'",
        True,
    ),
    "num_classes_text": (_set("num_classes", "10"), "field 'num_classes'", True),
    "num_classes_negative": (_set("num_classes", -1), "field 'num_classes'", True),
    "num_classes_huge": (_set("num_classes", 10**7), "field 'num_classes'", True),
    "in_chans_mismatch": (_set("model_args.in_chans", 1), "field 'model_args.in_chans'", True),
    "model_args_list": (_set("model_args", [1]), "field 'model_args'", True),
    "unknown_architecture": (_set("architecture", "nonet_9"), "'nonet_9'", True),
    "nan_weights": (_weights("model.safetensors", math.nan), "non-finite", False),
}


@pytest.mark.parametrize("case", sorted(BB_CASES))
def test_corrupt_backbone(case, tiny, tmp_path, capsys, no_network):
    """eval refuses it before building anything; nothing outside the folder is read."""
    damage, needle, is_config = BB_CASES[case]
    bb = _copy(tiny, "backbone", tmp_path / "in")
    (_edit_config(bb, damage) if is_config else damage(bb))
    line = assert_fails(["eval", bb, "--data", "digits"], capsys, tmp_path, 2, needle)
    assert str(bb) in line
    with pytest.raises(ArtifactError, match=needle.replace("[", r"\[")):
        validate_artifact(bb, "torch")
    code, stdout, stderr = run_cli(["info", bb, "--no-validate"], capsys)
    assert "Traceback" not in stdout + stderr and code == 0
    assert not no_network  # validation never opened a connection


# ---------------------------------------------------------------------------------- mixed data
def _rewrite_rows(folder: Path) -> None:
    """Shard 0 keeps its rows but its samix metadata claims one more."""
    import pyarrow.parquet as pq

    shard = folder / "data" / "train-00000-of-00002.parquet"
    table = pq.read_table(shard)
    meta = dict(table.schema.metadata)
    info = json.loads(meta[b"samix"])
    info["rows"] += 1
    meta[b"samix"] = json.dumps(info).encode()
    pq.write_table(table.replace_schema_metadata(meta), shard)


def _card_count(folder: Path) -> None:
    card = folder / "README.md"
    text = card.read_text()
    assert "| mixed images | 8 in 2 shards" in text
    card.write_text(
        text.replace("| mixed images | 8 in 2 shards", "| mixed images | 9 in 2 shards")
    )


MIXED_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated_shard": (
        _truncate("data/train-00001-of-00002.parquet"),
        "train-00001-of-00002.parquet: unreadable Parquet shard",
    ),
    "garbage_shard": (
        lambda f: (f / "data/train-00000-of-00002.parquet").write_bytes(b"garbage" * 40),
        "train-00000-of-00002.parquet: unreadable Parquet shard",
    ),
    "missing_shard": (
        lambda f: (f / "data/train-00001-of-00002.parquet").unlink(),
        "shards [1] of 2 missing",
    ),
    "card_count": (_card_count, "records 9 rows in 2 shards, the shards hold 8 rows"),
    "metadata_rows": (_rewrite_rows, "holds 4 rows, its metadata records 5"),
    "bad_shard_name": (
        lambda f: shutil.copy(f / "data/train-00000-of-00002.parquet", f / "data/x.parquet"),
        "x.parquet: shard name is not",
    ),
}


@pytest.mark.parametrize("case", sorted(MIXED_CASES))
def test_corrupt_mixed_dataset_is_not_pushed(case, tiny, tmp_path, capsys, no_network):
    damage, needle = MIXED_CASES[case]
    mixed = _copy(tiny, "mixed", tmp_path / "in")
    damage(mixed)
    args = ["push", mixed, "me/mixed", "--endpoint", DEAD, "--token", TOKEN]
    assert_fails(args, capsys, tmp_path, 2, needle)
    assert not no_network  # refused before any upload


def test_intact_mixed_dataset_validates(tiny):
    assert validate_artifact(tiny / "mixed") == "samix-mixed-dataset"


# ---------------------------------------------------------------------------------- token scan
def test_token_in_a_large_file_is_never_pushed(tiny, tmp_path, capsys, no_network):
    """A token past 64 MiB (the old scan skipped such files) is found; nothing is uploaded."""
    mixed = _copy(tiny, "mixed", tmp_path / "in")
    big = mixed / "extra" / "big.dat"
    big.parent.mkdir()
    with open(big, "wb") as f:  # sparse: cheap to make, 65 MiB to scan
        f.seek(65 * 1024 * 1024)
        f.write(b"..." + TOKEN.encode() + b"...")
    args = ["push", mixed, "me/mixed", "--endpoint", DEAD, "--token", TOKEN]
    assert_fails(args, capsys, tmp_path, 2, f"{big}: contains your Hub token")
    assert not no_network


@pytest.mark.parametrize("offset", [0, 5, 9, 15, 16, 31, 40])
def test_token_across_a_chunk_boundary(offset, tmp_path):
    """Reads of 16 bytes overlap by len(token) - 1: a token split by a boundary is caught."""
    from samix_hub.hub_checks import check_no_token

    token = "hf_0123456789abcdef"
    data = bytearray(b"x" * 64)
    data[offset : offset + len(token)] = token.encode()
    (tmp_path / "f.bin").write_bytes(bytes(data[:64]))
    with pytest.raises(UserError, match="contains your Hub token"):
        check_no_token(tmp_path, token, chunk_size=16)
    (tmp_path / "f.bin").write_bytes(b"x" * 64 + token.encode()[:-1])  # a prefix only
    check_no_token(tmp_path, token, chunk_size=16)


# ---------------------------------------------------------------------------------- printing
def test_info_escapes_terminal_sequences(tiny, tmp_path, capsys):
    gen = _copy(tiny, "generator", tmp_path / "in")
    evil = "\x1b[2J\x1b]0;owned\x07red\u202e"
    _edit_config(gen, _set("provenance.note", evil))
    code, stdout, stderr = run_cli(["info", gen], capsys)
    assert code == 0 and "Traceback" not in stderr
    assert "\x1b" not in stdout and "\x07" not in stdout and "\u202e" not in stdout
    assert "note=\\x1b[2J\\x1b]0;owned\\x07red\\u202e" in stdout
    _edit_config(gen, _set("backbone", "evil\x1b[31m\nsecond line"))
    line = assert_fails(["mix", "--generator", gen, "--data", "digits", "--out", tmp_path / "o",
                         "--runtime", "torch"], capsys, tmp_path, 2, "field 'backbone'",
                        out=tmp_path / "o")  # fmt: skip
    assert "\x1b" not in line and "\\x1b[31m\\nsecond line" in line


def test_tree_digest_sees_changes(tmp_path):
    """The helper the cases rely on notices a changed byte."""
    (tmp_path / "a").write_bytes(b"1")
    before = tree_digest(tmp_path)
    (tmp_path / "a").write_bytes(b"2")
    assert tree_digest(tmp_path) != before
