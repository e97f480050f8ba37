"""Model cards: measured results only, front matter that huggingface_hub parses, clear errors."""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest
from huggingface_hub import ModelCard, metadata_load

from samix_hub.errors import ArtifactError
from samix_hub.export.cards import (
    dataset_info,
    load_template,
    render_card,
    summarize_metrics,
    validate_card,
)

REPO = Path(__file__).resolve().parent.parent


def measured_metrics(n: int) -> list[dict]:
    # deterministic, non-monotone accuracies
    return [
        {"epoch": e, "step": 100 * e, "top1": 50 + (e * 37 % 11) * 1.5, "top5": 90 + e % 3,
         "ema_top1": 49 + (e * 13 % 7)}
        for e in range(1, n + 1)
    ]  # fmt: skip


def test_summary_matches_an_independent_computation():
    rows = measured_metrics(14)
    top1 = [r["top1"] for r in rows]
    s = summarize_metrics(rows + [{"epoch": 15, "train_loss": 1.0}], "top1")  # no top1: skipped
    assert s["last"] == top1[-1] and s["best"] == max(top1)
    assert s["median_last"] == statistics.median(top1[-10:]) and s["window"] == 10
    assert s["evaluations"] == 14 and s["epoch"] == 14 and s["last_top5"] == rows[-1]["top5"]
    assert summarize_metrics(rows, "ema_top1")["last"] == rows[-1]["ema_top1"]
    assert summarize_metrics([], "top1") is None
    assert summarize_metrics(rows, "knn_top1") is None


def card_fields(**extra: object) -> dict:
    base = dict(
        title="t", backbone="resnet18_cifar_w16", head_summary="classifier (10 classes)",
        method="samix", repo_id="me/bb", input_size="(3, 32, 32)", in_chans=3, height=32,
        width=32, mean="(0.5)", std="(0.2)", opset=18, onnx_output="logits", num_params="1 M",
        classes="10", weights_source="online classifier", files="`config.json`", recipe="r",
        results="res", extra_limitations="", samix_hub_version="0.1.0",
    )  # fmt: skip
    base.update(extra)
    return base


def test_card_front_matter_carries_measured_results(tmp_path):
    rows = measured_metrics(12)
    summary = summarize_metrics(rows, "top1")
    text = render_card(
        "backbone", card_fields(), model_name="bb", data_spec="cifar10:/data/private/c10",
        summary=summary, metric_name="Top-1", base_model="me/pretrained",
    )  # fmt: skip
    path = tmp_path / "README.md"
    path.write_text(text)
    card = validate_card(path, "backbone")
    meta = metadata_load(path)
    assert meta["library_name"] == "timm" and meta["license"] == "apache-2.0"  # a timm model
    assert {"mixup", "samix", "data-augmentation", "samix-hub"} <= set(meta["tags"])
    assert meta["datasets"] == ["uoft-cs/cifar10"] and meta["base_model"] == "me/pretrained"
    values = {r.metric_config: r.metric_value for r in card.data.eval_results}
    assert values == {"top-1": rows[-1]["top1"], "top-5": rows[-1]["top5"]}
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy"}  # a Hub metric id
    assert all(r.dataset_type == "uoft-cs/cifar10" for r in card.data.eval_results)
    assert "/data/private" not in text
    assert 'timm.create_model("hf-hub:me/bb", pretrained=True)' in text


def test_card_without_measurements_has_no_model_index():
    text = render_card(
        "backbone", card_fields(), model_name="bb", data_spec="npz:/x/y.npz", summary=None,
        metric_name="Top-1",
    )  # fmt: skip
    card = ModelCard(text)
    assert not card.data.eval_results and "model-index" not in text
    assert "datasets" not in card.data.to_dict()  # a local file is no Hub data set


def test_bad_cards_are_refused(tmp_path):
    good = render_card(
        "backbone", card_fields(), model_name="bb", data_spec="digits", summary=None,
        metric_name="Top-1",
    )  # fmt: skip
    validate_card(good, "backbone")
    (tmp_path / "plain.md").write_text("# a card without front matter\n")
    with pytest.raises(ArtifactError, match="no YAML front matter"):
        validate_card(tmp_path / "plain.md")
    with pytest.raises(ArtifactError, match="library_name is 'samix-hub', not timm"):
        validate_card(good.replace("library_name: timm", "library_name: samix-hub"), "backbone")
    with pytest.raises(ArtifactError, match="library_name is 'keras'"):
        validate_card(good.replace("library_name: timm", "library_name: keras"))
    with pytest.raises(ArtifactError, match="tags lack"):
        validate_card(good.replace("- samix\n", ""))
    with pytest.raises(ArtifactError, match="does not parse"):
        validate_card(good.replace("license: apache-2.0", "license: [unclosed"))
    with pytest.raises(ArtifactError, match="missing"):
        validate_card(tmp_path / "nope.md")
    with pytest.raises(KeyError):  # a template field nobody filled fails loudly
        render_card("backbone", {}, model_name="bb", data_spec=None, summary=None,
                    metric_name="Top-1")  # fmt: skip


def test_dataset_names_never_leak_paths():
    assert dataset_info("cifar100:/home/u/data") == ("CIFAR-100", "uoft-cs/cifar100", "cifar100")
    assert dataset_info("hf:org/set") == ("org/set", "org/set", "hf:org/set")
    assert dataset_info("hf:/home/u/my_set") == ("local data (hf)", None, "hf:local")
    assert dataset_info("/home/u/x/pets.npz") == ("npz:pets.npz", None, "npz:pets.npz")
    assert dataset_info("folder:/srv/me/pets/") == ("folder:pets", None, "folder:pets")
    assert dataset_info("digits")[1] is None
    assert dataset_info(None)[2] == "unknown"


def test_templates_ship_in_the_package_and_model_cards_links_them():
    for kind in ("generator", "backbone"):
        packaged = load_template(kind).template
        assert "arXiv:2111.15454" in packaged and "$repo_id" in packaged
        linked = REPO / "model_cards" / f"{kind}.md"
        assert linked.read_text() == packaged
        assert os.path.realpath(linked).endswith(f"samix_hub/card_templates/{kind}.md")
