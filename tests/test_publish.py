"""Self-describing ONNX graphs and cards a Hub maintainer accepts.

Real onnxruntime sessions read the graphs' ``metadata_props``; huggingface_hub's own card
classes (``ModelCard``, ``DatasetCard``, ``model_index_to_eval_results``) parse the cards; the
generator card's onnxruntime snippet is copied out of the card and executed; pushes go through
the real huggingface_hub client to tests/fakehub.py.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from cli_helpers import run_cli
from huggingface_hub import DatasetCard, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

import samix_hub
from samix_hub.errors import ArtifactError, UserError
from samix_hub.export.card_repo import card_for_repo, card_repo_id
from samix_hub.export.generator import export_run
from samix_hub.export.mixed_card import render_card as render_mixed_card
from samix_hub.export.mixed_card import size_category
from samix_hub.export.onnx_metadata import read_metadata, write_metadata

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub  # noqa: E402
from test_export import CLASSES, MEAN, STD, make_run  # noqa: E402

TOKEN = "hf_fakehubPublishToken0123456789"
PRIVATE = "/home/someone/private"  # the run's data path (make_run): must never be published


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run on a named Hub data set (CIFAR-10 at a private path), exported without repo ids."""
    root = tmp_path_factory.mktemp("publish")
    run = make_run(root)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"] = f"cifar10:{PRIVATE}/c10"
    (run / "config.json").write_text(json.dumps(cfg))
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    ckpt["config"] = cfg
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    export_run(run, root / "out")
    return root / "out"


def _cards(release: Path) -> dict[str, str]:
    return {k: (release / k / "README.md").read_text() for k in ("generator", "backbone")}


# ------------------------------------------------------------------------------ ONNX metadata
def test_both_graphs_carry_their_conventions(release: Path) -> None:
    gen_cfg = json.loads((release / "generator" / "config.json").read_text())
    sess = ort.InferenceSession(str(release / "generator" / "onnx" / "generator.onnx"))
    raw = sess.get_modelmeta().custom_metadata_map  # what a plain onnxruntime user sees
    assert raw["samix_hub.input_range"] == "[0.0, 1.0]"
    assert raw["samix_hub.normalised_inside"] == "true"
    assert raw["samix_hub.samix_hub_version"] == samix_hub.__version__
    assert "partner[i] indexes this batch" in raw["samix_hub.mask_convention"]
    gen = read_metadata(release / "generator" / "onnx" / "generator.onnx")
    assert gen["mean"] == gen_cfg["mean"] and gen["std"] == gen_cfg["std"]
    assert gen["calibration"] == gen_cfg["mixer"]["calibration"] == "none"
    assert gen["input_size"] == [32, 32] and gen["kind"] == "samix-generator"
    assert "sampled lam" in gen["lam_convention"]
    bb = read_metadata(release / "backbone" / "onnx" / "model.onnx")
    assert bb["label_names"] == CLASSES and bb["normalised_inside"] is True
    assert bb["mean"] == pytest.approx(list(MEAN)) and bb["std"] == pytest.approx(list(STD))
    assert bb["input_size"] == [3, 32, 32] and bb["output"] == "logits"


def test_onnx_wrappers_refuse_inputs_outside_the_recorded_range(release: Path) -> None:
    model, config = samix_hub.load_backbone(release / "backbone", runtime="onnx", device="cpu")
    assert model.label_names == CLASSES and model.metadata["input_range"] == [0.0, 1.0]
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    normalised = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with pytest.raises(UserError, match="normalised input.*normalises inside"):
        model(normalised)  # timm-normalised input: refused, not silently misclassified
    torch_model, _ = samix_hub.load_backbone(release / "backbone")
    with torch.no_grad():
        assert (model(x) - torch_model(normalised)).abs().max() < 1e-3
    gen = samix_hub.load_generator(release / "generator", runtime="onnx", device="cpu")
    partner, lam = torch.tensor([1, 2, 3, 0]), torch.full((4,), 0.6)
    with pytest.raises(UserError, match="divide by 255"):
        gen(x * 255, partner, lam)  # would run and give wrong masks
    mask, _ = gen(x, partner, lam)
    assert 0 <= float(mask.min()) and float(mask.max()) <= 1


def test_metadata_that_contradicts_config_is_refused(release: Path, tmp_path: Path) -> None:
    folder = tmp_path / "generator"
    shutil.copytree(release / "generator", folder)
    graph = folder / "onnx" / "generator.onnx"
    write_metadata(graph, {**read_metadata(graph), "mean": [0.0, 0.0, 0.0]})
    with pytest.raises(ArtifactError, match=r"samix_hub\.mean .* differs from config.json"):
        samix_hub.load_generator(folder, runtime="onnx", device="cpu")


# ------------------------------------------------------------------------------ cards
def test_generator_card_onnxruntime_snippet_runs(release: Path) -> None:
    card = _cards(release)["generator"]
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    (snippet,) = [b for b in blocks if "onnxruntime" in b]
    assert "partner[i] indexes this batch" in snippet and "ORG/NAME" in snippet
    folder = str(release / "generator")
    code, n = re.subn(r"^folder = .*$", f"folder = {folder!r}", snippet, flags=re.M)
    assert n == 1
    ns: dict = {}
    exec(compile(code, "generator card", "exec"), ns)
    images, partner, mask, mixed = ns["images"], ns["partner"], ns["mask"], ns["mixed"]
    assert mask.shape == (8, 1, 32, 32) and mask.dtype == np.float32
    assert 0 <= mask.min() and mask.max() <= 1
    assert np.allclose(mixed, mask * images + (1 - mask) * images[partner], atol=1e-5)
    for text in (
        "`partner[i]` is an index **into this batch**",
        "0-255 or normalised input runs but gives wrong masks",
    ):
        assert text in card


def test_model_cards_pass_huggingface_hub_tooling(release: Path) -> None:
    cards = _cards(release)
    for kind, text in cards.items():
        assert PRIVATE not in text and "/home/" not in text
        samix_hub.export.cards.validate_card(text, kind)
        assert card_repo_id(text) == "ORG/NAME"  # not pushed yet: the placeholder
    gen = ModelCard(cards["generator"])
    assert not gen.data.eval_results  # mask statistics are no Hub metric: body only
    assert "Mask mean vs λ" in cards["generator"]
    bb = ModelCard(cards["backbone"])
    name, results = model_index_to_eval_results(bb.data.to_dict()["model-index"])
    assert {(r.metric_type, r.metric_config, r.metric_value) for r in results} == {
        ("accuracy", "top-1", 39.75),
        ("accuracy", "top-5", 88.0),
    }  # fmt: skip  (the last row of make_run's metrics: export's default weights, "model")
    assert {r.dataset_type for r in results} == {"uoft-cs/cifar10"}


def test_local_paths_in_a_card_are_refused(release: Path) -> None:
    text = _cards(release)["backbone"]
    with pytest.raises(ArtifactError, match="local path"):
        samix_hub.export.cards.validate_card(text + "\nfrom /home/me/data/c10\n", "backbone")


def test_push_puts_the_repo_id_into_the_cards(release: Path, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants, hf_hub_download

    from samix_hub.hub.transfer import push

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    for kind in ("generator", "backbone"):
        shutil.copytree(release / kind, tmp_path / kind)
    with FakeHub(token=TOKEN) as hub:
        kw = {"endpoint": hub.url, "token": TOKEN}
        push(tmp_path / "generator", "me/gen", **kw)
        push(tmp_path / "backbone", "me/bb", **kw)
        got = hf_hub_download("me/gen", "README.md", cache_dir=tmp_path / "c", **kw)
        gen_card = Path(got).read_text()
        bb_card = Path(hf_hub_download("me/bb", "README.md", cache_dir=tmp_path / "c", **kw))
        bb_card = bb_card.read_text()
        push(tmp_path / "generator", "me/gen2", **kw)  # the same folder to another repo
        again = Path(hf_hub_download("me/gen2", "README.md", cache_dir=tmp_path / "c", **kw))
        again_card = again.read_text()
    assert "ORG/NAME" not in gen_card and 'snapshot_download("me/gen"' in gen_card
    assert "samix-hub pull me/gen " in gen_card and card_repo_id(gen_card) == "me/gen"
    assert 'timm.create_model("hf-hub:me/bb", pretrained=True)' in bb_card
    assert "ORG/BACKBONE" in gen_card  # other placeholders are not the card's own id
    assert "me/gen2" in again_card and not re.search(r"me/gen(?!2)", again_card)
    # the local folder mirrors the repo: its card names the last repo it was pushed to
    assert (tmp_path / "generator" / "README.md").read_text() == again_card
    ModelCard(again_card)  # still parses


def test_card_for_repo_leaves_hand_written_cards_alone() -> None:
    text = "---\nlicense: mit\n---\n# mine: ORG/NAME\n"
    assert card_for_repo(text, "me/x") == text


# ------------------------------------------------------------------------------ data set card
def _npz(path: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.arange(n) % 2, x_test=x, y_test=np.arange(n) % 2)
    return path


def test_mixed_dataset_card(tmp_path: Path, capsys, monkeypatch) -> None:
    from huggingface_hub import constants, hf_hub_download

    from samix_hub.hub.transfer import push

    (tmp_path / "secret-place").mkdir()
    src = _npz(tmp_path / "secret-place" / "pets.npz", 12)
    out = tmp_path / "mixed"
    args = ["mix", "--method", "mixup", "--data", f"npz:{src}", "--num", 20, "--out", out, "-q"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    text = (out / "README.md").read_text()
    assert str(tmp_path) not in text and "secret-place" not in text and "THIS_FOLDER" not in text
    assert "pets" not in text and "local data (npz)" in text and '"data": "npz:local"' in text
    meta = DatasetCard(text).data.to_dict()
    assert meta["license"] == "other" and meta["license_name"] == "source-data-license"
    assert meta["size_categories"] == ["n<1K"] and "source_datasets" not in meta
    assert meta["configs"][0]["data_files"][0]["path"] == "data/train-*"
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with FakeHub(token=TOKEN) as hub:
        kw = {"endpoint": hub.url, "token": TOKEN}
        push(out, "me/mixed", **kw)
        got = hf_hub_download(
            "me/mixed", "README.md", repo_type="dataset", cache_dir=tmp_path / "c", **kw
        )
    pushed = Path(got).read_text()
    assert 'load_dataset("me/mixed", split="train")' in pushed and "ORG/NAME" not in pushed
    assert 'snapshot_download("me/mixed", repo_type="dataset")' in pushed


def test_mixed_card_names_a_hub_source_and_its_size() -> None:
    settings = {
        "data": "cifar10:/home/someone/data", "split": "train", "source_size": 50000,
        "class_names": ["a", "b"], "method": "mixup", "alpha": 1.0, "num": 12000, "seed": 0,
        "batch_size": 64, "shard_size": 5000, "image_size": [32, 32], "image_format": "png",
    }  # fmt: skip
    text = render_mixed_card(settings, {"rows": 12000, "skipped": 0, "shards": 3}, [])
    meta = DatasetCard(text).data.to_dict()
    assert meta["source_datasets"] == ["uoft-cs/cifar10"]
    assert meta["size_categories"] == ["10K<n<100K"]
    assert "/home/someone" not in text and '"data": "cifar10"' in text
    assert [size_category(n) for n in (999, 1000, 10**6)] == ["n<1K", "1K<n<10K", "1M<n<10M"]


def test_results_on_an_unrecorded_data_set_stay_out_of_model_index() -> None:
    from test_cards import card_fields, measured_metrics

    from samix_hub.export.cards import render_card, summarize_metrics

    summary = summarize_metrics(measured_metrics(3), "top1")
    text = render_card(
        "backbone", card_fields(), model_name="bb", data_spec=None, summary=summary,
        metric_name="Top-1",
    )  # fmt: skip
    assert "model-index" not in text
    assert not ModelCard(text).data.eval_results
    named = render_card(
        "backbone", card_fields(), model_name="bb", data_spec="digits", summary=summary,
        metric_name="Top-1",
    )  # fmt: skip
    (result, *_) = ModelCard(named).data.eval_results
    assert (result.dataset_type, result.metric_type) == ("digits", "accuracy")


def test_skipped_image_errors_name_no_local_path() -> None:
    from samix_hub.export.mixed_card import public_error

    settings = {
        "data": "folder:/home/someone/pets", "split": "train", "source_size": 10,
        "class_names": ["cat", "dog"], "method": "mixup", "alpha": 1.0, "num": 8, "seed": 0,
        "batch_size": 4, "shard_size": 8, "image_size": [16, 16], "image_format": "png",
    }  # fmt: skip
    error = "/home/someone/pets/train/dog/3.png: cannot identify image file"
    text = render_mixed_card(settings, {"rows": 6, "skipped": 2, "shards": 1}, [error])
    assert "- train/dog/3.png: cannot identify image file" in text  # relative to the root
    assert "/home/" not in text and "pets" not in text
    assert public_error("cannot read /srv/x/y.png", "digits") == "cannot read y.png"


def test_int8_graph_keeps_the_metadata(release: Path, tmp_path: Path) -> None:
    from samix_hub.export.int8 import quantize_generator

    src = release / "generator" / "onnx" / "generator.onnx"
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    dst = quantize_generator(src, tmp_path / "generator.int8.onnx", images, batch_size=4)
    meta = read_metadata(dst)
    assert meta["quantized"] == "int8"
    assert {k: v for k, v in meta.items() if k != "quantized"} == read_metadata(src)


def test_generator_card_states_its_cost_per_image(release: Path) -> None:
    card = _cards(release)["generator"]
    section = card.split("## Cost", 1)[1].split("\n## ", 1)[0]
    assert "GFLOPs per image" in section and "--generator-scale 0.5" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "ms" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["torch", "onnxruntime"]  # no int8 graph
    assert all(float(r.split("|")[2]) > 0 for r in rows)
