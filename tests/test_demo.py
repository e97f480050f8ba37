"""``samix-hub demo --fast`` end to end, its outputs checked independently, and the README.

The demo runs once (module fixture) through the real command line. Its outputs are checked
against references that do not come from the code under test: the artifact validators, the bytes
of the exported files, ``git hash-object`` for the published cache, the Parquet shards read back,
the PNG decoded by Pillow, the runs' own metrics files.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from samix_hub.cli.main import cli
from samix_hub.data.mixed import MixedDataset
from samix_hub.demo import BACKBONE_REPO, GENERATOR_REPO, MARKER, publish_local
from samix_hub.errors import HubError
from samix_hub.export.validate import validate_artifact
from samix_hub.hub.resolve import resolve_source
from samix_hub.mixing.preview import grid_size

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

#: ``--fast`` gives a mean per-image spatial std of 0.151 (seed 0) and 0.169 (seed 1) on these
#: images; a flat MixUp blend gives 0. The margin allows for other CPUs' arithmetic.
SPATIAL_STD_MIN = 0.05


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("demo") / "out"
    threads = torch.get_num_threads()
    try:
        result = CliRunner().invoke(cli, ["demo", "--fast", "--out", str(out), "--json"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"out": out, "summary": json.loads(result.stdout), "stderr": result.stderr}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_summary_has_the_expected_fields(demo: dict) -> None:
    s, out = demo["summary"], demo["out"]
    assert json.loads((out / "summary.json").read_text()) == s  # stdout == the file
    assert s["kind"] == "samix-demo" and s["preset"] == "fast"
    steps = ("data", "train", "generator", "export", "publish", "pull", "mix", "finetune")
    for i, key in enumerate(steps, 1):  # the summary's timings are the ones the log reported
        assert f"[{i}/8] done in {s['timings_s'][key]:.1f} s" in demo["stderr"], key
    assert set(s["timings_s"]) == {*steps, "total"}
    assert sum(s["timings_s"][k] for k in steps) <= s["timings_s"]["total"] + 0.5
    # accuracies are the runs' own last evaluations
    for run, entry in [(s["train"]["run"], s["train"]), (s["generator"]["run"], s["generator"])]:
        last = json.loads(Path(run, "metrics.jsonl").read_text().splitlines()[-1])
        assert entry["steps"] == last["step"]
        if "top1" in entry:
            assert entry["top1"] == last["top1"] and 0 <= entry["top1"] <= 100
    for entry in s["finetune"].values():  # per seed: the run's own last evaluation
        assert len(entry["runs"]) == len(entry["seeds"]) == len(entry["top1_per_seed"])
        for run, top1 in zip(entry["runs"], entry["top1_per_seed"], strict=True):
            last = json.loads(Path(run, "metrics.jsonl").read_text().splitlines()[-1])
            assert entry["steps"] == last["step"] and top1 == last["top1"]
        assert entry["top1"] == pytest.approx(sum(entry["top1_per_seed"]) / len(entry["seeds"]))
    assert s["train"]["steps"] == 22 and s["generator"]["steps"] == 44
    assert {k: v["steps"] for k, v in s["finetune"].items()} == {"samix-p": 4, "vanilla": 4}
    assert s["finetune"]["samix-p"]["alpha"] == 1.0  # the demo's choice on validation
    diff = s["finetune"]["samix-p"]["top1"] - s["finetune"]["vanilla"]["top1"]
    assert s["comparison"] == {"samix-p_minus_vanilla": round(diff, 2)}
    assert set(s["finetune_settings"]) == {
        "epochs", "max_steps", "lr", "batch_size", "choice", "seeds", "images_per_class",
        "train_images", "pretrained",
    }  # fmt: skip
    # the regime chosen on validation starts from random weights, with the pulled generator
    assert s["finetune_settings"]["pretrained"] is False
    for entry in s["finetune"].values():
        for run in entry["runs"]:
            run_cfg = json.loads(Path(run, "config.json").read_text())
            assert run_cfg["pretrained"] is False
            assert run_cfg["backbone_provenance"] == {
                "kind": "timm", "name": "resnet18_cifar_w16", "pretrained": False,
            }  # fmt: skip
    samix_cfg = json.loads(Path(s["finetune"]["samix-p"]["runs"][0], "config.json").read_text())
    assert "samix-generator-digits" in samix_cfg["generator_source"]  # the pulled generator
    assert s["finetune_settings"]["train_images"] == 5 * s["finetune_settings"]["images_per_class"]
    assert set(s["parity"]["export"]) == {"mask", "mixed", "logits"}
    assert max(s["parity"]["pulled_onnx_vs_torch"].values()) < 1e-4
    masks = s["masks"]
    assert {"mask_slope", "mask_spatial_std", "mask_lam_mae"} <= set(masks)
    assert abs(masks["mask_slope"] - 1) < 1e-3 and masks["mask_lam_mae"] < 1e-3  # λ-exact
    assert masks["mask_spatial_std"] > SPATIAL_STD_MIN
    from samix_hub.cli.demo import format_summary

    text = format_summary(s)
    assert "mask mean vs λ slope 1.000" in text and "spatial std" in text
    assert s["data"]["source_train"] + s["data"]["target_train"] == 1797 - 360
    for i in range(1, 9):
        assert f"[{i}/8]" in demo["stderr"]  # progress on stderr
    assert "warning: --ema-momentum" not in demo["stderr"]  # EMA horizon fits the budget


@torch.no_grad()
@pytest.mark.slow
def test_exported_generator_masks_follow_lambda_and_are_not_flat(demo: dict) -> None:
    """Computed here from the exported folder on real target images, not by the demo's code."""
    from samix_hub import load_generator
    from samix_hub.data.specs import load_data

    s = demo["summary"]
    target = load_data(s["data"]["target"])
    images = torch.stack([target.test[i][0] for i in range(64)]).float() / 255.0
    partner = torch.roll(torch.arange(64), 1)
    for runtime in ("torch", "onnx"):
        gen = load_generator(s["artifacts"]["generator"], runtime=runtime, device="cpu")
        stds = []
        for lam in (0.2, 0.35, 0.5, 0.65, 0.8):
            mask = gen(images, partner, lam)[0].float()
            assert mask.shape == (64, 1, 16, 16) and 0 <= mask.min() and mask.max() <= 1
            means = mask.mean(dim=(1, 2, 3))
            assert (means - lam).abs().max() < 1e-3, (runtime, lam)  # each mask's mean is λ
            stds.append(mask.flatten(1).std(1, unbiased=False).mean())
        assert float(torch.stack(stds).mean()) > SPATIAL_STD_MIN, runtime  # not a flat blend
    # the generator is the frozen classifier's stage 3 + the mixer trained against it
    run = json.loads(Path(s["generator"]["run"], "config.json").read_text())
    assert run["scenario"] == "teacher" and run["teacher"] == s["train"]["run"]
    assert run["optimizer"] == "adamw" and run["calibration"] == "exact"
    assert json.loads(Path(s["train"]["run"], "config.json").read_text())["method"] == "vanilla"


@pytest.mark.slow
def test_summary_reports_the_comparison_as_measured(demo: dict) -> None:
    """The verdict line follows the numbers of the run (no fixed claim)."""
    import copy

    from samix_hub.cli.demo import format_summary
    from samix_hub.train.paired import paired

    s = copy.deepcopy(demo["summary"])
    s["finetune"]["mixup"] = {**s["finetune"]["vanilla"], "alpha": 1.0}
    s["comparison"] = {"samix-p_minus_mixup": -2.5}
    assert "-2.5 points (one seed: too few to tell a difference from noise)" in format_summary(s)
    for ours, theirs, word in [
        ([80.0, 81.0, 82.0], [82.0, 83.5, 84.5], "behind"),  # -2.33 ± 0.17: interval below 0
        ([80.0, 84.0, 82.0], [82.0, 83.5, 84.5], "level with"),  # -1.33 ± 1.42: contains 0
        ([83.0, 84.0, 85.5], [82.0, 83.5, 84.5], "ahead of"),
    ]:
        s["comparison_paired"] = {"mixup": paired(ours, theirs)}
        text = format_summary(s)
        assert f"SAMix^P is {word} MixUp in this run" in text, text
        assert "paired over 3 seeds, 95 % interval [" in text


@pytest.mark.slow
def test_artifact_folders_are_valid(demo: dict) -> None:
    s = demo["summary"]
    assert validate_artifact(s["artifacts"]["generator"], "all") == "samix-generator"
    assert validate_artifact(s["artifacts"]["backbone"], "all") == "samix-backbone"
    assert validate_artifact(s["mix"]["path"]) == "samix-mixed-dataset"
    card = Path(s["artifacts"]["generator"], "README.md").read_text()
    assert GENERATOR_REPO in card and "library_name: samix-hub" in card


@pytest.mark.slow
def test_pulled_copies_are_the_exported_bytes(demo: dict) -> None:
    s = demo["summary"]
    for what, repo in (("generator", GENERATOR_REPO), ("backbone", BACKBONE_REPO)):
        hub = s["hub"][what]
        assert hub["repo_id"] == repo
        assert hub["commit"] == s["hub"]["published_commits"][what]
        exported, pulled = Path(s["artifacts"][what]), Path(hub["path"])
        for f in (p for p in pulled.rglob("*") if p.is_file() or p.is_symlink()):
            assert sha256(f) == sha256(exported / f.relative_to(pulled)), f
    gen_files = {p.relative_to(s["hub"]["generator"]["path"]).as_posix()
                 for p in Path(s["hub"]["generator"]["path"]).rglob("*") if not p.is_dir()}  # fmt: skip
    assert {"config.json", "generator.safetensors", "onnx/generator.onnx"} <= gen_files


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.slow
def test_published_cache_checksums_match_git(demo: dict) -> None:
    """blob ids in the tree listing = ``git hash-object``; LFS ids = sha256 of the bytes."""
    s = demo["summary"]
    exported = Path(s["artifacts"]["generator"])
    org, name = GENERATOR_REPO.split("/")
    storage = Path(s["hub"]["cache"]) / f"models--{org}--{name}"
    commit = (storage / "refs" / "main").read_text()
    tree = json.loads((storage / "trees" / f"{commit}.json").read_text())["files"]
    assert set(tree) == {p.relative_to(exported).as_posix() for p in exported.rglob("*") if p.is_file()}  # fmt: skip
    for rel, entry in tree.items():
        git = subprocess.run(
            ["git", "hash-object", str(exported / rel)], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert entry["blob_id"] == git, rel
        if rel.endswith((".safetensors", ".onnx")):
            assert entry["lfs_sha256"] == sha256(exported / rel)


@pytest.mark.slow
def test_corrupt_published_blob_is_refused_on_pull(demo: dict, tmp_path: Path) -> None:
    """The pull back really verifies: a flipped byte in a published blob is a clear error."""
    s = demo["summary"]
    cache = tmp_path / "hub"
    publish_local(s["artifacts"]["generator"], "me/gen", cache)
    assert resolve_source("me/gen", runtime="torch", offline=True, cache_dir=cache).commit
    blob = next((cache / "models--me--gen" / "snapshots").rglob("generator.safetensors")).resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(HubError, match="corrupt"):
        resolve_source("me/gen", runtime="torch", offline=True, cache_dir=cache)


@pytest.mark.slow
def test_mixed_data_set_and_preview(demo: dict) -> None:
    s = demo["summary"]
    ds = MixedDataset(s["mix"]["path"])
    assert len(ds) == s["mix"]["rows"] == 64
    lams = []
    for i in range(len(ds)):
        image, a, b, lam = ds[i]
        assert image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1
        assert 0 <= int(a) < 5 and 0 <= int(b) < 5 and 0.0 <= float(lam) <= 1.0
        lams.append(float(lam))
    assert len(set(lams)) > 10  # λ ~ Beta(2, 2) per pair, not a constant
    card = Path(s["mix"]["path"], "README.md").read_text()
    assert GENERATOR_REPO in card and s["hub"]["generator"]["commit"] in card
    with Image.open(s["mix"]["preview"]) as png:
        assert png.format == "PNG" and png.size == grid_size(8, 16, 16)


@pytest.mark.slow
def test_finetune_runs_use_the_pulled_artifacts(demo: dict) -> None:
    """SAMix^P uses the pulled generator; every run starts from the backbone's architecture
    with random weights (the regime chosen on validation, ``DemoConfig.finetune_pretrained``)."""
    s = demo["summary"]
    cfgs = {m: json.loads(Path(v["runs"][0], "config.json").read_text()) for m, v in s["finetune"].items()}  # fmt: skip
    assert cfgs["samix-p"]["method"] == "samix-p" and cfgs["vanilla"]["method"] == "vanilla"
    assert {cfg["lr"] for cfg in cfgs.values()} == {s["finetune_settings"]["lr"]}
    for cfg in cfgs.values():
        assert cfg["backbone_source"] == "resnet18_cifar_w16" and cfg["pretrained"] is False
        assert cfg["data"].startswith(s["data"]["target"].removesuffix(".npz"))  # its slice
        assert cfg["batch_size"] == s["finetune_settings"]["batch_size"]
    assert cfgs["samix-p"]["generator_source"] == s["hub"]["generator"]["path"]


@pytest.mark.slow
def test_out_folder_rules(demo: dict, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    result = CliRunner().invoke(cli, ["demo", "--fast", "--out", str(foreign)])
    assert result.exit_code != 0 and "not a samix-hub demo folder" in str(result.exception)
    assert (foreign / "keep.txt").read_text() == "user data"
    assert (demo["out"] / MARKER).is_file()  # a demo folder is marked (a re-run replaces it)


def test_help_has_examples() -> None:
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and "--fast" in result.output


# ------------------------------------------------------------------------------------ README
def _readme_commands() -> list[list[str]]:
    """Every ``samix-hub ...`` invocation in the README's bash blocks, as argument lists."""
    text = README.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s#\s.*$", "", line).strip()
            for part in re.split(r"\s*(?:&&|\|\||\||;)\s*", line):
                words = shlex.split(part, comments=True)
                while words and re.match(r"^[A-Z_]+=", words[0]):
                    words = words[1:]  # VAR=value prefixes
                if words and words[0] == "torchrun" and "samix_hub" in words:
                    words = words[words.index("samix_hub") + 1 :]
                elif words and words[0].endswith("samix-hub"):
                    words = words[1:]
                else:
                    continue
                commands.append(words)
    return commands


def test_readme_keeps_the_two_setup_commands() -> None:
    text = README.read_text()
    assert "bash .ci/setup-venv && .venv/bin/samix-hub demo" in text
    assert "bash .ci/setup-venv && .venv/bin/python -m pytest -q" in text


def test_readme_commands_parse() -> None:
    """Each README command names a real command and only options it has (no execution)."""
    commands = _readme_commands()
    used = {c[0] for c in commands if c}
    assert {"demo", "pull", "mix", "finetune", "train", "export", "push"} <= used
    for words in commands:
        if not words or words[0].startswith("-"):
            continue
        cmd = cli.get_command(click.Context(cli), words[0])
        assert cmd is not None, f"README: unknown command {words[0]!r}"
        try:
            cmd.make_context(words[0], words[1:])  # parses and converts; runs nothing
        except click.UsageError as exc:
            pytest.fail(f"README: `samix-hub {shlex.join(words)}`: {exc.format_message()}")


@pytest.mark.slow
def test_readme_python_api_runs(demo: dict, tmp_path: Path, monkeypatch) -> None:
    """The README's Python block, executed against the demo's output folder."""
    block = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)[0]
    (tmp_path / "samix-demo").symlink_to(demo["out"], target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(block, str(README), "exec"), ns)
    images, partner, mask, mixed = ns["images"], ns["partner"], ns["mask"], ns["mixed"]
    assert mask.shape == (8, 1, 16, 16) and 0 <= mask.min() and mask.max() <= 1
    # mixed = mask * x_i + (1 - mask) * x_partner(i), computed here independently
    assert torch.allclose(mixed, mask * images + (1 - mask) * images[partner], atol=1e-5)
    assert ns["logits"].shape == (8, 5)  # the backbone's head: digits 0-4
    assert 0.0 <= float(ns["lam_0"]) <= 1.0
