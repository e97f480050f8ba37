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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from samix_hub.errors import ArtifactError
from samix_hub.export.validate import validate_artifact

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
    tree_digest,
    truncate_file,
    weights_filled,
)
from cli_helpers import run_cli  # noqa: E402

# ---------------------------------------------------------------------------------- generator
GEN_CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    # name: (damage, needle, is a config edit)
    "nan_weights": (weights_filled("generator.safetensors", math.nan), "non-finite", False),
    "inf_tensor": (weights_filled("generator.safetensors", math.inf, "one"), "non-finite", False),
    "truncated_weights": (truncate_file("generator.safetensors"), "generator.safetensors", False),
    "stage_string": (set_field("stage", "3"), "field 'stage'", True),
    "stage_99": (set_field("stage", 99), "field 'stage'", True),
    "in_chans_zero": (set_field("in_chans", 0), "field 'in_chans'", True),
    "in_chans_bool": (set_field("in_chans", True), "field 'in_chans'", True),
    "input_size_short": (set_field("input_size", [32]), "field 'input_size'", True),
    "input_size_zero": (set_field("input_size", [0, 0]), "field 'input_size'", True),
    "input_size_text": (set_field("input_size", "32x32"), "field 'input_size'", True),
    "mean_length": (set_field("mean", [0.5, 0.5]), "field 'mean'", True),
    "std_zero": (set_field("std", [0.0, 0.2, 0.2]), "field 'std'", True),
    "std_nan": (set_field("std", [math.nan, 0.2, 0.2]), "field 'std'", True),
    "mixer_list": (set_field("mixer", []), "field 'mixer'", True),
    "mixer_reduction": (set_field("mixer.reduction", 0), "field 'mixer.reduction'", True),
    "mixer_dropout": (set_field("mixer.dropout", 1.5), "field 'mixer.dropout'", True),
    "mixer_variant": (set_field("mixer.variant", "other"), "field 'mixer.variant'", True),
    "mixer_unknown": (set_field("mixer.extra", 1), "field 'mixer.extra'", True),
    "mixer_lam_concat": (set_field("mixer.lam_concat", "yes"), "field 'mixer.lam_concat'", True),
    "mixer_channels": (set_field("mixer.in_channels", -4), "field 'mixer.in_channels'", True),
    "backbone_hf_hub": (set_field("backbone", "hf-hub:other/repo"), "field 'backbone'", True),
    "backbone_number": (set_field("backbone", 42), "field 'backbone'", True),
    "backbone_path": (set_field("backbone", "../../elsewhere"), "field 'backbone'", True),
    "unknown_field": (set_field("surprise", 1), "field 'surprise'", True),
    "provenance_list": (set_field("provenance", []), "field 'provenance'", True),
    "format_version_text": (set_field("format_version", "1"), "format_version '1'", True),
}


@pytest.mark.parametrize("case", sorted(GEN_CASES))
def test_corrupt_generator(case, tiny, tmp_path, capsys, no_network):
    """mix refuses it (one line, exit 1: the artifact fails its checks), validation refuses it, info still describes it."""
    damage, needle, is_config = GEN_CASES[case]
    gen = copy_artifact(tiny, "generator", tmp_path / "in")
    (edit_config(gen, damage) if is_config else damage(gen))
    out = tmp_path / "in" / "mixed"
    args = ["mix", "--generator", gen, "--data", "digits", "--out", out, "--runtime", "torch",
            "--num", 4, "--batch-size", 4, "-q"]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 1, needle, out=out)
    assert str(gen) in line and not out.exists()
    with pytest.raises(ArtifactError, match="config.json|generator.safetensors"):
        validate_artifact(gen, "torch")
    code, stdout, stderr = run_cli(["info", gen], capsys)  # describes, never crashes
    assert "Traceback" not in stdout + stderr, stderr
    valid = next(line for line in stdout.splitlines() if line.startswith("valid:"))
    assert code == 0 and "NO: " in valid and needle in valid, stdout
    assert not no_network


def test_nan_onnx_graph_is_refused(tmp_path, capsys, no_network):
    """A NaN generator with an ONNX graph: `mix --runtime onnx` refuses it too (no black mix)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from samix_hub.format.repo_ref import BUILTIN_DIR

    gen = Path(shutil.copytree(BUILTIN_DIR / "cifar10-small", tmp_path / "in" / "gen"))
    graph = gen / "onnx" / "generator.onnx"
    model = onnx.load(str(graph))
    first = next(t for t in model.graph.initializer if numpy_helper.to_array(t).dtype.kind == "f")
    nan = np.full_like(numpy_helper.to_array(first), np.nan)
    first.CopyFrom(numpy_helper.from_array(nan, first.name))
    onnx.save(model, str(graph))
    out = tmp_path / "in" / "mixed"
    args = ["mix", "--generator", gen, "--data", "digits", "--out", out, "--runtime", "onnx",
            "--num", 4, "--batch-size", 4, "-q"]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 1, f"initializer {first.name!r}", out=out)
    assert str(graph) in line and "non-finite" in line and not out.exists()


# ---------------------------------------------------------------------------------- backbone
BB_CASES: dict[str, tuple[Callable[[Any], None], str, bool]] = {
    "checkpoint_path": (
        set_field("model_args.checkpoint_path", "../outside.pth"),
        "field 'model_args.checkpoint_path'",
        True,
    ),
    "hf_hub_architecture": (
        set_field("architecture", "hf-hub:other/repo"),
        "field 'architecture'",
        True,
    ),
    "overlay_file": (
        set_field("model_args.pretrained_cfg_overlay", {"file": "/etc/hostname"}),
        "field 'model_args.pretrained_cfg_overlay'",
        True,
    ),
    "pretrained_true": (set_field("model_args.pretrained", True), "'model_args.pretrained'", True),
    "model_arg_url": (
        set_field("model_args.drop_path", "https://example.com/x"),
        "names a path or URL",
        True,
    ),
    "pretrained_url": (
        set_field("pretrained_cfg.url", "https://example.com/w.pth"),
        "field 'pretrained_cfg.url'",
        True,
    ),
    "pretrained_hub_id": (
        set_field("pretrained_cfg.hf_hub_id", "other/repo"),
        "field 'pretrained_cfg.hf_hub_id'",
        True,
    ),
    "input_size_short": (
        set_field("pretrained_cfg.input_size", [3, 32]),
        "field 'pretrained_cfg.input_size'",
        True,
    ),
    "input_chans_zero": (
        set_field("pretrained_cfg.input_size", [0, 32, 32]),
        "field 'pretrained_cfg.input_size'",
        True,
    ),
    "input_size_tiny": (
        set_field("pretrained_cfg.input_size", [3, 2, 2]),
        "field 'pretrained_cfg.input_size[1:]'",
        True,
    ),
    "pretrained_cfg_list": (set_field("pretrained_cfg", []), "field 'pretrained_cfg'", True),
    "pretrained_mean": (
        set_field("pretrained_cfg.mean", [0.5]),
        "field 'pretrained_cfg.mean'",
        True,
    ),
    "num_classes_text": (set_field("num_classes", "10"), "field 'num_classes'", True),
    "num_classes_negative": (set_field("num_classes", -1), "field 'num_classes'", True),
    "num_classes_huge": (set_field("num_classes", 10**7), "field 'num_classes'", True),
    "in_chans_mismatch": (set_field("model_args.in_chans", 1), "field 'model_args.in_chans'", True),
    "model_args_list": (set_field("model_args", [1]), "field 'model_args'", True),
    "unknown_architecture": (set_field("architecture", "nonet_9"), "'nonet_9'", True),
    "nan_weights": (weights_filled("model.safetensors", math.nan), "non-finite", False),
}


@pytest.mark.parametrize("case", sorted(BB_CASES))
def test_corrupt_backbone(case, tiny, tmp_path, capsys, no_network):
    """eval refuses it before building anything; nothing outside the folder is read."""
    damage, needle, is_config = BB_CASES[case]
    bb = copy_artifact(tiny, "backbone", tmp_path / "in")
    (edit_config(bb, damage) if is_config else damage(bb))
    line = assert_fails(["eval", bb, "--data", "digits"], capsys, tmp_path, 1, needle)
    assert str(bb) in line
    with pytest.raises(ArtifactError, match=needle.replace("[", r"\[")):
        validate_artifact(bb, "torch")
    code, stdout, stderr = run_cli(["info", bb, "--no-validate"], capsys)
    assert "Traceback" not in stdout + stderr and code == 0
    assert not no_network  # validation never opened a connection


@pytest.mark.parametrize(
    ("flag", "kind", "field", "value"),
    [
        ("--generator", "generator", "stage", "3"),
        ("--generator", "generator", "backbone", "hf-hub:other/repo"),
        ("--backbone", "backbone", "model_args.checkpoint_path", "/etc/hostname"),
        ("--backbone", "backbone", "pretrained_cfg.input_size", [3, 32]),
    ],
)
def test_finetune_refuses_broken_sources(flag, kind, field, value, tiny, tmp_path, capsys):
    """finetune stops before training: one line naming the file and field, no run folder."""
    src = copy_artifact(tiny, kind, tmp_path / "in")
    edit_config(src, set_field(field, value))
    out = tmp_path / "run"
    args = ["finetune", "--backbone", tiny / "backbone", "--data", "digits", "--out", out,
            "--epochs", 1, "--max-steps", 1, "--workers", 0, "-q", flag, src]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, 1, f"field {field!r}", out=out)
    assert str(src / "config.json") in line and not out.exists()


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
        truncate_file("data/train-00001-of-00002.parquet"),
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
    mixed = copy_artifact(tiny, "mixed", tmp_path / "in")
    damage(mixed)
    args = ["push", mixed, "me/mixed", "--endpoint", DEAD, "--token", TOKEN]
    assert_fails(args, capsys, tmp_path, 1, needle)
    assert not no_network  # refused before any upload


@pytest.mark.parametrize("case", ["card_count", "metadata_rows"])
def test_finetune_refuses_a_corrupt_mixed_dataset(case, tiny, tmp_path, capsys):
    """`finetune --mixed` runs the same checks as push and pull, before training."""
    damage, needle = MIXED_CASES[case]
    mixed = copy_artifact(tiny, "mixed", tmp_path / "in")
    damage(mixed)
    out = tmp_path / "run"
    args = ["finetune", "--backbone", tiny / "backbone", "--data", "digits", "--out", out,
            "--method", "mixed", "--mixed", mixed, "--epochs", 1, "--max-steps", 1,
            "--workers", 0, "-q"]  # fmt: skip
    assert_fails(args, capsys, tmp_path, 1, needle, out=out)
    assert not out.exists()


@pytest.mark.parametrize(
    ("kind", "damage", "needle"),
    [
        ("generator", weights_filled("generator.safetensors", math.nan), "non-finite"),
        ("backbone", weights_filled("model.safetensors", math.inf, "one"), "non-finite"),
        (
            "backbone",
            lambda f: edit_config(f, set_field("model_args.checkpoint_path", "/etc/hostname")),
            "field 'model_args.checkpoint_path'",
        ),
    ],
    ids=["nan_generator", "inf_backbone", "checkpoint_path"],
)
def test_broken_model_is_not_pushed(kind, damage, needle, tiny, tmp_path, capsys, no_network):
    folder = copy_artifact(tiny, kind, tmp_path / "in")
    damage(folder)
    args = ["push", folder, f"me/{kind}", "--endpoint", DEAD, "--token", TOKEN]
    assert_fails(args, capsys, tmp_path, 1, needle)
    assert not no_network  # refused before any upload


def test_intact_mixed_dataset_validates(tiny):
    assert validate_artifact(tiny / "mixed") == "samix-mixed-dataset"


# ---------------------------------------------------------------------------------- printing
def test_info_escapes_terminal_sequences(tiny, tmp_path, capsys):
    gen = copy_artifact(tiny, "generator", tmp_path / "in")
    evil = "\x1b[2J\x1b]0;owned\x07red\u202e"
    edit_config(gen, set_field("provenance.note", evil))
    code, stdout, stderr = run_cli(["info", gen], capsys)
    assert code == 0 and "Traceback" not in stderr
    assert "\x1b" not in stdout and "\x07" not in stdout and "\u202e" not in stdout
    assert "note=\\x1b[2J\\x1b]0;owned\\x07red\\u202e" in stdout
    edit_config(gen, set_field("backbone", "evil\x1b[31m\nsecond line"))
    line = assert_fails(["mix", "--generator", gen, "--data", "digits", "--out", tmp_path / "o",
                         "--runtime", "torch"], capsys, tmp_path, 1, "field 'backbone'",
                        out=tmp_path / "o")  # fmt: skip
    assert "\x1b" not in line and "\\x1b[31m\\nsecond line" in line


def test_tree_digest_sees_changes(tmp_path):
    """The helper the cases rely on notices a changed byte."""
    (tmp_path / "a").write_bytes(b"1")
    before = tree_digest(tmp_path)
    (tmp_path / "a").write_bytes(b"2")
    assert tree_digest(tmp_path) != before


@pytest.mark.parametrize(
    ("make", "code", "needle"),
    [
        (lambda root: root / "missing", 2, "no such folder"),  # the command line is wrong
        (lambda root: root, 2, "not a samix-hub artifact"),  # a folder, but no artifact
        (lambda root: None, 1, "non-finite"),  # a generator that fails its checks
    ],
)
def test_exit_code_tells_usage_from_runtime(make, code, needle, tiny, tmp_path, capsys):
    """2: the command line names something that is not an artifact; 1: the artifact is broken."""
    root = tmp_path / "in"
    root.mkdir()
    src = make(root)
    if src is None:
        src = copy_artifact(tiny, "generator", root)
        weights_filled("generator.safetensors", math.nan)(src)
    out = tmp_path / "out"
    args = ["mix", "--generator", src, "--data", "digits", "--out", out, "--runtime", "torch",
            "--num", 4, "--batch-size", 4, "-q"]  # fmt: skip
    line = assert_fails(args, capsys, tmp_path, code, needle, out=out)
    assert not out.exists(), line
