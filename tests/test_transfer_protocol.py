"""The transfer benchmark's protocol (benchmarks/transfer.py) and what it relies on in the engine:
validation never overlaps test, paired seeds see the same data, the statistics are right, the
per-task (adapted) generator recipe works end to end, small in-memory data needs no workers.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.utils.data.dataloader as torch_dataloader
from cli_helpers import run_cli

import samix_hub
from samix_hub.data import load_data
from samix_hub.export.generator import export_run
from samix_hub.train import TrainConfig, train
from samix_hub.train.finetune import FinetuneScenario, finetune_config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import transfer  # noqa: E402

ARCH = "resnet18_cifar_w16"


@pytest.mark.parametrize("task", ["a", "b"])
@pytest.mark.parametrize("images", [100, 250, 500])
def test_validation_split_never_overlaps_training_or_test(cifar_subset: Path, task, images) -> None:
    with np.load(cifar_subset) as d:
        y_train, y_test = d["y_train"], d["y_test"]
    idx = transfer.split_indices(y_train, y_test, task, images)
    s_lo, t_lo = transfer.TASKS[task]
    assert len(idx["train"]) == images and len(idx["val"]) == 5 * transfer.VAL_PER_CLASS
    assert not set(idx["train"]) & set(idx["val"])  # both index the training array
    # the test split indexes the other array (the CIFAR test batch): disjoint images by source
    assert set(y_test[idx["test"]]) == set(range(t_lo, t_lo + 5))
    assert set(y_train[idx["train"]]) == set(y_train[idx["val"]]) == set(range(t_lo, t_lo + 5))
    assert set(y_train[idx["source_train"]]) == set(range(s_lo, s_lo + 5))
    # a smaller regime's images are a subset of a larger one's (the same pool, first N/5)
    bigger = transfer.split_indices(y_train, y_test, task, 1000)
    assert set(idx["train"]) <= set(bigger["train"])
    assert not set(bigger["train"]) & set(idx["val"])


def test_written_splits_hold_what_the_indices_say(cifar_subset: Path, tmp_path: Path) -> None:
    paths = transfer.make_splits(cifar_subset, tmp_path, "a", 100)
    with np.load(cifar_subset) as d:
        x_train, x_test = d["x_train"], d["x_test"]
        idx = transfer.split_indices(d["y_train"], d["y_test"], "a", 100)
    with np.load(paths["val"]) as v, np.load(paths["test"]) as t:
        assert np.array_equal(v["x_train"], x_train[idx["train"]])
        assert np.array_equal(v["x_test"], x_train[idx["val"]])
        assert np.array_equal(t["x_train"], v["x_train"])
        assert np.array_equal(t["x_test"], x_test[idx["test"]])
        assert set(v["y_train"].tolist()) == set(range(5))
        # no validation image is byte-identical to a training or test image
        seen = {im.tobytes() for im in t["x_train"]} | {im.tobytes() for im in t["x_test"]}
        assert not any(im.tobytes() in seen for im in v["x_test"])


def test_paired_statistics_against_a_hand_computation() -> None:
    ours, theirs = [72.0, 74.0, 71.0, 75.0], [71.0, 72.0, 71.5, 73.0]
    p = transfer.paired(ours, theirs)
    d = [1.0, 2.0, -0.5, 2.0]
    se = statistics.stdev(d) / 2
    assert p["mean"] == pytest.approx(1.125) and p["se"] == pytest.approx(se)
    assert p["ci95"][0] == pytest.approx(1.125 - 3.182446 * se, abs=1e-4)  # t(0.975, 3)
    assert p["ahead"] == 3 and p["n"] == 4
    with pytest.raises(ValueError):
        transfer.paired([1.0], [2.0])


def test_summary_pairs_by_seed_not_by_order() -> None:
    rows = [
        {"task": "a", "images": 250, "variant": v, "seed": s, "top1": t, "median_last5": t}
        for v, s, t in [
            ("mixup", 1, 70.0), ("mixup", 0, 60.0), ("samix-p", 0, 61.0), ("samix-p", 1, 72.0),
        ]
    ]  # fmt: skip
    table = transfer.summarise(rows)["a-250"]
    assert table["paired"]["samix-p - mixup"]["top1"]["mean"] == pytest.approx(1.5)


@pytest.fixture(scope="module")
def digit_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits 0-4 (source) and 5-9 (target, relabelled 0-4) as npz files with class names."""
    folder = tmp_path_factory.mktemp("tp")
    digits = load_data("digits")
    for name, keep in (("source", range(5)), ("target", range(5, 10))):
        arrays: dict[str, np.ndarray] = {}
        for split, ds in (("train", digits.train), ("test", digits.test)):
            sel = np.isin(ds.labels, list(keep))  # type: ignore[union-attr]
            arrays[f"x_{split}"] = ds.images[sel]  # type: ignore[union-attr]
            arrays[f"y_{split}"] = ds.labels[sel] - keep.start  # type: ignore[union-attr]
        arrays["classes"] = np.array([f"digit {k}" for k in keep])
        np.savez(folder / f"{name}.npz", **arrays)
    return folder


def _record_batches(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, list[int]]]:
    """Record (image bytes, labels) of every training step of a fine-tune (what the loop hands
    the scenario's step function)."""
    seen: list[tuple[bytes, list[int]]] = []
    original = FinetuneScenario.step_fn

    def step_fn(self: FinetuneScenario, method: str):  # type: ignore[no-untyped-def]
        inner = original(self, method)

        def step(ctx, images, labels):  # type: ignore[no-untyped-def]
            seen.append((images.numpy().tobytes(), labels.tolist()))
            return inner(ctx, images, labels)

        return step

    monkeypatch.setattr(FinetuneScenario, "step_fn", step_fn)
    return seen


def test_paired_seeds_give_two_methods_the_same_data(
    digit_tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams = {}
    for method in ("vanilla", "mixup", "cutmix"):
        seen = _record_batches(monkeypatch)
        cfg = finetune_config(
            ARCH, f"npz:{digit_tasks / 'target.npz'}", str(tmp_path / method), method=method,
            pretrained=False, epochs=2, max_steps=6, batch_size=32, seed=4, workers=0,
            eval_every=0,
        )  # fmt: skip
        train(cfg, quiet=True)
        streams[method] = list(seen)
        monkeypatch.undo()
    assert len(streams["vanilla"]) == 6
    assert streams["vanilla"] == streams["mixup"] == streams["cutmix"]
    # another seed is another stream (the check above can fail)
    seen = _record_batches(monkeypatch)
    cfg = finetune_config(
        ARCH, f"npz:{digit_tasks / 'target.npz'}", str(tmp_path / "other"), method="vanilla",
        pretrained=False, epochs=2, max_steps=6, batch_size=32, seed=5, workers=0, eval_every=0,
    )  # fmt: skip
    train(cfg, quiet=True)
    assert seen != streams["vanilla"]


def test_an_in_memory_fine_tune_starts_no_worker_process(
    digit_tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_workers(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a DataLoader worker process was started")

    monkeypatch.setattr(torch_dataloader._MultiProcessingDataLoaderIter, "__init__", no_workers)
    cfg = finetune_config(
        ARCH, f"npz:{digit_tasks / 'target.npz'}", str(tmp_path / "r"), method="mixup",
        pretrained=False, epochs=2, batch_size=64, seed=0, workers=2,
    )  # fmt: skip
    train(cfg, quiet=True)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_workers_of_a_decoded_on_the_fly_set_persist_across_epochs(
    digit_tasks: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of PNGs is decoded by workers: one set of workers for the whole run, and the
    augmentation still follows the epoch (the same images as without workers)."""
    from PIL import Image

    with np.load(digit_tasks / "target.npz") as d:
        x, y = d["x_train"][:80], d["y_train"][:80]
    for split in ("train", "val"):
        for i, (im, label) in enumerate(zip(x, y, strict=True)):
            folder = tmp_path / "png" / split / f"c{label}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(im.squeeze()).save(folder / f"{i}.png")
    starts = []
    original = torch_dataloader._MultiProcessingDataLoaderIter.__init__

    def count(self, loader):  # type: ignore[no-untyped-def]
        starts.append(loader.num_workers)
        original(self, loader)

    monkeypatch.setattr(torch_dataloader._MultiProcessingDataLoaderIter, "__init__", count)
    streams = {}
    for workers in (0, 1):
        seen = _record_batches(monkeypatch)
        monkeypatch.setattr(torch_dataloader._MultiProcessingDataLoaderIter, "__init__", count)
        cfg = finetune_config(
            ARCH, f"folder:{tmp_path / 'png'}", str(tmp_path / f"w{workers}"), method="vanilla",
            pretrained=False, epochs=3, batch_size=32, seed=0, workers=workers, eval_every=0,
        )  # fmt: skip
        train(cfg, quiet=True)
        streams[workers] = list(seen)
        monkeypatch.undo()
    assert starts == [1]  # three epochs, one start of the training loader's workers
    assert len(streams[0]) == 6 and streams[0] == streams[1]


def test_adapted_generator_recipe_end_to_end(digit_tasks: Path, tmp_path: Path, capsys) -> None:
    """The per-task generator (README "A generator for your own task"): a teacher-trained mixer
    on the target images against the source backbone, exported, then SAMix^P with it."""
    source = TrainConfig(
        method="vanilla", data=f"npz:{digit_tasks / 'source.npz'}", backbone=ARCH,
        out=str(tmp_path / "src"), epochs=1, lr=0.1, batch_size=32, workers=0, eval_every=0,
    )  # fmt: skip
    export_run(train(source, quiet=True), tmp_path / "rel", what=("backbone",), onnx=False)
    backbone = tmp_path / "rel" / "backbone"
    target = f"npz:{digit_tasks / 'target.npz'}"
    code, out, err = run_cli(
        ["train", "--method", "samix", "--teacher", backbone, "--data", target,
         "--epochs", "1", "--max-steps", "4", "--batch-size", "32", "--workers", "0",
         "--out", tmp_path / "adapt", "-q"], capsys,
    )  # fmt: skip
    assert code == 0, err
    run_cfg = json.loads((tmp_path / "adapt" / "config.json").read_text())
    assert run_cfg["teacher_head"]["fitted"] is True  # the target's classes are not the source's
    code, _, err = run_cli(
        ["export", tmp_path / "adapt", "--out", tmp_path / "gen", "--what", "generator",
         "--no-onnx", "-q"], capsys,
    )  # fmt: skip
    assert code == 0, err
    gen_dir = tmp_path / "gen" / "generator"
    gen = samix_hub.load_generator(str(gen_dir))
    images = torch.rand(8, 3, 16, 16)
    lam = torch.linspace(0.2, 0.8, 8)
    mask = gen.masks(images, torch.roll(torch.arange(8), 1), lam)
    assert torch.allclose(mask.mean(dim=(1, 2, 3)), lam, atol=1e-3)
    code, out, err = run_cli(
        ["finetune", "--backbone", backbone, "--generator", gen_dir, "--data", target,
         "--epochs", "1", "--max-steps", "3", "--batch-size", "32", "--mask-temperature", "0.5",
         "--out", tmp_path / "ft", "-q"], capsys,
    )  # fmt: skip
    assert code == 0, err
    ft = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert ft["method"] == "samix-p" and ft["mask_temperature"] == 0.5
    assert ft["generator"]["source"] == "generator" and "sha256" in ft["generator"]


def test_demo_validation_split_is_carved_from_training_images_only(
    digit_tasks: Path, tmp_path: Path
) -> None:
    from samix_hub.demo.steps import split_target

    target = digit_tasks / "target.npz"
    val = Path(split_target(target, tmp_path, 20, 40, split="val").removeprefix("npz:"))
    test = Path(split_target(target, tmp_path, 20, 40, split="test").removeprefix("npz:"))
    with np.load(target) as t, np.load(val) as v, np.load(test) as te:
        assert np.array_equal(v["x_train"], te["x_train"])  # the same training images
        assert np.array_equal(te["x_test"], t["x_test"])  # the demo's report: the test split
        assert len(v["x_train"]) == 100 and len(v["x_test"]) == 200
        rows = {im.tobytes(): i for i, im in enumerate(t["x_train"])}
        train_rows = {rows[im.tobytes()] for im in v["x_train"]}
        val_rows = {rows[im.tobytes()] for im in v["x_test"]}  # validation = training images
        assert not train_rows & val_rows
        test_bytes = {im.tobytes() for im in t["x_test"]}
        assert not any(im.tobytes() in test_bytes for im in v["x_test"])
        for c in range(5):  # the last 40 of each class
            own = np.flatnonzero(t["y_train"] == c)
            assert set(own[-40:]) <= val_rows and not set(own[-40:]) & train_rows


def test_the_choice_rule_needs_every_cell_and_prefers_the_default_on_ties() -> None:
    def row(variant: str, task: str, seed: int, top1: float) -> dict:
        return {"variant": variant, "task": task, "seed": seed, "top1": top1, "images": 250}

    rows = [row("mixup", t, s, 90.0) for t in "ab" for s in (1, 2)]
    rows += [row("samix-p", t, s, 70.0) for t in "ab" for s in (1, 2)]
    rows += [row("samix-p-t0.5", t, s, 70.0) for t in "ab" for s in (1, 2)]
    rows += [row("samix-p-t2", "a", 1, 99.0)]  # not run everywhere: not eligible
    pick = transfer.choose(rows)
    assert pick["chosen"] == "samix-p" and "samix-p-t2" not in pick["means"]
    rows[-2]["top1"] = 70.5  # one better cell breaks the tie
    assert transfer.choose(rows)["chosen"] == "samix-p-t0.5"


def test_augmentation_is_a_function_of_seed_epoch_and_index() -> None:
    """The loop's per-image augmentation, against a reference seeded by torch.manual_seed."""
    from samix_hub.train.loader import SeededTransform, mix_seed, train_transform

    digits = load_data("digits")
    tf = train_transform(digits.image_size)
    ds = SeededTransform(digits.train, tf, seed=3)
    before = torch.get_rng_state()
    for i in range(12):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix_seed(3, 2, i))
            ref = tf(digits.train[i][0])
        assert torch.equal(ds[(2, i)][0], ref)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left as it was
    assert not torch.equal(ds[(2, 0)][0], ds[(3, 0)][0])  # another epoch, another crop


def test_verdict_only_where_the_interval_excludes_zero() -> None:
    from samix_hub.train.paired import paired, verdict

    assert verdict(paired([2.0, 2.2, 1.9], [1.0, 1.1, 1.0])) == "ahead of"
    assert verdict(paired([1.0, 1.1, 1.0], [2.0, 2.2, 1.9])) == "behind"
    assert verdict(paired([1.0, 3.0, 2.0], [2.0, 2.0, 2.0])) == "level with"  # mean 0
    assert verdict(paired([1.0, 5.0], [0.0, 0.0])) == "level with"  # +3 ± 2: t(1) interval
