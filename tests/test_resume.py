"""``--resume``: the typed options survive config.json, one check compares what was given again,
and a run folder written by an older version (fewer config keys) still resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from samix_hub.errors import UserError
from samix_hub.train import (
    FinetuneOptions,
    SslOptions,
    TrainConfig,
    config_from_run,
    load_checkpoint,
)
from samix_hub.train.resume import check_resumable, resume_config

TINY = ["--data", "digits", "--backbone", "resnet18_cifar_w16", "--workers", "0", "-q"]


def test_scenario_options_round_trip_through_config_json() -> None:
    """The options travel flat in config.json (as before) and come back typed."""
    ssl = TrainConfig(
        method="samix", data="digits", backbone="b", out="o", scenario="ssl",
        ssl=SslOptions(queue_len=64, temperature=0.1, shuffle_bn_splits=2),
    )  # fmt: skip
    flat = json.loads(json.dumps(ssl.to_dict()))
    assert flat["queue_len"] == 64 and flat["temperature"] == 0.1 and "ssl" not in flat
    back = config_from_run({**flat, "generator_source": None})
    assert back.ssl == ssl.ssl and back.finetune == FinetuneOptions()

    ft = TrainConfig(
        method="mixed", data="digits", backbone="b", out="o", scenario="finetune",
        finetune=FinetuneOptions(backbone_source="ORG/b", mixed="m", clean_fraction=0.5),
    )  # fmt: skip
    flat = json.loads(json.dumps(ft.to_dict()))
    assert flat["backbone_source"] == "ORG/b" and "queue_len" not in flat
    back = config_from_run({**flat, "generator_source": None})
    assert back.finetune == ft.finetune and back.ssl == SslOptions()
    # A supervised run carries neither block's keys.
    sl = TrainConfig(method="mixup", data="digits", backbone="b", out="o").to_dict()
    assert not {"queue_len", "backbone_source", "extra", "ssl", "finetune"} & set(sl)


def test_check_resumable_reads_old_configs_and_names_the_change(tmp_path: Path) -> None:
    new = {"kind": "samix-run", "lr": 0.1, "optimizer": "sgd", "teacher": None, "workers": 4}
    old = {"kind": "samix-run", "lr": 0.1, "workers": 2}  # before --optimizer / --teacher
    check_resumable(old, new, tmp_path)  # legacy values fill the gaps; workers is runtime
    with pytest.raises(UserError, match=r"cannot resume with a different lr \(0\.1 in the run"):
        check_resumable(old, {**new, "lr": 0.2}, tmp_path)


def test_given_flags_are_checked_once(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["train", "--method", "mixup", *TINY, "--batch-size", "16", "--max-steps", "2"]
    code, _, err = run_cli([*args, "--out", out], capsys)
    assert code == 0, err
    cfg = resume_config(out, {"workers": 1, "lr": 0.1, "method": "mixup"})
    assert cfg.workers == 1 and cfg.lr == 0.1 and cfg.method == "mixup"
    with pytest.raises(UserError, match=r"^--alpha 0\.5 differs from the run in .* \(1\.0\)"):
        resume_config(out, {"alpha": 0.5})
    code, _, err = run_cli(["train", "--resume", "--out", out, "--temperature", 0.3], capsys)
    assert code == 2 and "--temperature 0.3 differs from the run" in err


def test_run_from_an_older_version_resumes(tmp_path: Path, capsys) -> None:
    """A samix run whose config.json and checkpoint lack the keys later versions added."""
    out = tmp_path / "run"
    args = ["train", "--method", "samix", *TINY, "--batch-size", "16", "--epochs", "1"]
    code, _, err = run_cli([*args, "--max-steps", "2", "--out", out], capsys)
    assert code == 0, err
    newer = ("optimizer", "teacher", "calibration", "mask_variance", "mixer_lr")
    config = json.loads((out / "config.json").read_text())
    for key in newer:
        config.pop(key)
    # The reference's mixer: what a run without the mixer options had.
    config["mixer"].update(calibration="none", variance="batch")
    (out / "config.json").write_text(json.dumps(config))
    state = load_checkpoint(out)
    state["config"] = config
    state["step"] = 1  # as if it had stopped after step 1: step 2 runs again on resume
    torch.save(state, out / "checkpoints" / "last.pt")

    code, _, err = run_cli(["train", "--resume", "--out", out, "-q", "--max-steps", 3], capsys)
    assert code == 2 and "--max-steps 3 differs from the run" in err  # a changed option
    code, _, err = run_cli(["train", "--resume", "--out", out, "-q", "--workers", 0], capsys)
    assert code == 0, err
    steps = [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()]
    assert steps == [1, 2] and load_checkpoint(out)["step"] == 2
    assert json.loads((out / "config.json").read_text())["calibration"] == "none"


def test_a_samix_p_run_from_before_the_read_size_resumes_at_the_full_read(
    tmp_path: Path, capsys
) -> None:
    """A SAMix^P fine-tune whose config.json has no generator_scale read at the native size: it
    resumes at scale 1 (docs/algorithm.md "The generator's read size"), not at today's 0.25."""
    out = tmp_path / "ft"
    args = ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--data", "digits"]
    args += ["--generator", "builtin:cifar10-small", "--batch-size", "16", "--epochs", "1"]
    code, _, err = run_cli(
        [*args, "--max-steps", "2", "--workers", "0", "--out", out, "-q"], capsys
    )
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config.pop("generator_scale") == 0.25  # today's default, recorded
    (out / "config.json").write_text(json.dumps(config))
    state = load_checkpoint(out)
    state["config"] = config
    state["step"] = 1
    torch.save(state, out / "checkpoints" / "last.pt")
    assert resume_config(out, {}).generator_scale == 1.0
    code, _, err = run_cli(["finetune", "--resume", "--out", out, "-q", "--workers", 0], capsys)
    assert code == 0, err
    assert load_checkpoint(out)["step"] == 2
    code, _, err = run_cli(
        ["finetune", "--resume", "--out", out, "-q", "--generator-scale", "0.5"], capsys
    )
    assert code == 2 and "--generator-scale 0.5 differs from the run" in err
