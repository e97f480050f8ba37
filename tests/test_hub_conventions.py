"""``samix_hub.Generator`` follows huggingface_hub's ``ModelHubMixin`` (keyword names, defaults,
return values), the two loaders share one positional order, cards name no local data and state
what the generator's config records, and exported backbone cards are timm cards about their own
weights only.

The reference signatures are read from the installed ``huggingface_hub``; pushes go through the
real client to tests/fakehub.py; every artifact is written and read for real.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import CommitInfo, DatasetCard, ModelCard, ModelHubMixin

import samix_hub
from samix_hub import Generator, GeneratorConfig, MixerConfig, load_backbone, load_generator
from samix_hub.errors import UserError
from samix_hub.export.mixed_card import render_card as render_mixed_card
from samix_hub.export.validate import validate_artifact
from samix_hub.hub.save import PUSH_KEYWORDS

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub  # noqa: E402
from generator_helpers import masks_of, new_generator  # noqa: E402

pytestmark = pytest.mark.hub
TOKEN = "hf_fakehubConventions0123456789"
ARCH = "resnet18_cifar_w16"


@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as server:
        yield server


# ------------------------------------------------------------------------- mixin signatures
@pytest.mark.parametrize("name", ["from_pretrained", "save_pretrained", "push_to_hub"])
def test_methods_take_the_mixins_keywords_with_its_defaults(name: str) -> None:
    """Every parameter of ``ModelHubMixin.<name>`` exists here, of the same kind and with the
    same default; the first positional one has the mixin's name."""
    ours = inspect.signature(getattr(Generator, name)).parameters
    theirs = inspect.signature(getattr(ModelHubMixin, name)).parameters
    for pname, param in theirs.items():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values()), name
            continue
        assert pname in ours, f"{name} lacks {pname}"
        assert ours[pname].kind == param.kind, (name, pname)
        assert ours[pname].default == param.default, (name, pname)
    positional = [p for p in theirs if theirs[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert [p for p in ours if ours[p].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD][
        : len(positional)
    ] == positional


def test_save_pretrained_pushes_with_every_push_keyword() -> None:
    """``save_pretrained(push_to_hub=True, **kw)`` takes exactly the push keywords of
    ``push_to_hub`` (those that do not shape the folder)."""
    ours = set(inspect.signature(Generator.push_to_hub).parameters)
    folder_keywords = {"self", "repo_id", "config", "model_card_kwargs", "onnx", "opset"}
    assert ours - folder_keywords == PUSH_KEYWORDS


def test_loaders_share_one_positional_order(tmp_path: Path) -> None:
    gen_params = list(inspect.signature(load_generator).parameters)
    bb_params = list(inspect.signature(load_backbone).parameters)
    assert gen_params[:3] == bb_params[:3] == ["src", "runtime", "device"]
    assert list(inspect.signature(samix_hub.load_generator).parameters)[:3] == gen_params[:3]
    net = timm.create_model(ARCH, num_classes=10).eval()
    timm.models.save_for_hf(net, str(tmp_path / "bb"), safe_serialization=True)
    a, _ = samix_hub.load_backbone(tmp_path / "bb", "torch", "cpu")  # the new order
    b, _ = samix_hub.load_backbone(tmp_path / "bb", "cpu")  # the older (src, device)
    c, _ = samix_hub.load_backbone(tmp_path / "bb", "cpu", "torch")  # (src, device, runtime)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a(x), b(x)) and torch.equal(a(x), c(x))
    with pytest.raises(UserError, match="unknown runtime 'tensorflow'"):
        samix_hub.load_backbone(tmp_path / "bb", "tensorflow")


def test_a_bad_runtime_is_refused_before_a_hub_id_is_resolved(tmp_path: Path) -> None:
    """No download (here: an unreachable endpoint) is attempted for a runtime that cannot load."""
    dead = {"endpoint": "http://127.0.0.1:9", "cache_dir": tmp_path / "c"}
    with pytest.raises(UserError, match="unknown runtime 'tensorflow'"):
        samix_hub.load_generator("me/gen", "tensorflow", **dead)
    with pytest.raises(UserError, match="unknown runtime 'tensorflow'"):
        samix_hub.load_backbone("me/bb", "tensorflow", **dead)
    assert not (tmp_path / "c").exists()


def test_code_below_the_hub_reads_local_sources_only() -> None:
    """The default resolver of the training engine names the resolver that downloads."""
    from samix_hub.format.repo_ref import resolve_local

    assert resolve_local("builtin:cifar10-small").builtin == "cifar10-small"
    with pytest.raises(UserError, match="a Hub repo id.*sources=samix_hub.hub.resolve"):
        resolve_local("me/gen@main")
    with pytest.raises(UserError, match="empty revision"):
        resolve_local("me/gen@")


# ------------------------------------------------------------------- save / push / from
def test_save_pretrained_returns_none_and_checks_config(tmp_path: Path) -> None:
    gen = new_generator(1)
    assert gen.save_pretrained(tmp_path / "a", onnx=False) is None
    # its own config (object or config.json dict) is accepted; another one is refused
    assert gen.save_pretrained(tmp_path / "b", config=gen.config, onnx=False) is None
    on_disk = json.loads((tmp_path / "b" / "config.json").read_text())
    assert gen.save_pretrained(tmp_path / "c", config=on_disk, onnx=False) is None
    other = GeneratorConfig(ARCH, MixerConfig(in_channels=64, lam_mul_k=0.5))
    with pytest.raises(UserError, match="config: differs from this generator's own config"):
        gen.save_pretrained(tmp_path / "d", config=other, onnx=False)
    with pytest.raises(UserError, match="push keywords apply with push_to_hub=True only"):
        gen.save_pretrained(tmp_path / "d", onnx=False, branch="dev")
    with pytest.raises(UserError, match=r"push_to_hub=True\) needs repo_id"):
        gen.save_pretrained(tmp_path / "d", onnx=False, push_to_hub=True)
    with pytest.raises(UserError, match=r"model_card_kwargs: unknown key\(s\) \['colour'\]"):
        gen.save_pretrained(tmp_path / "d", onnx=False, model_card_kwargs={"colour": "red"})
    assert not (tmp_path / "d").exists()
    # model_card_kwargs reach the card
    gen.save_pretrained(
        tmp_path / "e", onnx=False, model_card_kwargs={"license": "mit", "model_name": "my-gen"}
    )
    meta = ModelCard((tmp_path / "e" / "README.md").read_text()).data.to_dict()
    assert meta["license"] == "mit" and meta["model_name"] == "my-gen"
    assert torch.equal(masks_of(Generator.from_pretrained(tmp_path / "a")), masks_of(gen))


def test_push_to_hub_returns_the_commit_info(hub: FakeHub, tmp_path: Path) -> None:
    gen = new_generator(2)
    kw = dict(endpoint=hub.url, token=TOKEN, onnx=False)
    info = gen.push_to_hub("me/conv", **kw)
    repo = hub.repos[("model", "me/conv")]
    assert isinstance(info, CommitInfo) and isinstance(info, str)
    assert info == info.commit_url == f"{hub.url}/me/conv/commit/{info.oid}"
    assert repo.branches["main"] == info.oid
    assert repo.messages[info.oid] == "Push model using huggingface_hub."  # the mixin's

    # branch (created from main), commit_message, and a file the folder lacks kept or deleted
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.upload_file(path_or_fileobj=b"notes", path_in_repo="NOTES.md", repo_id="me/conv")
    dev = new_generator(6).push_to_hub("me/conv", branch="dev", commit_message="dev weights", **kw)
    assert repo.branches["dev"] == dev.oid and repo.messages[dev.oid] == "dev weights"
    assert "NOTES.md" in repo.commits[dev.oid]  # additive by default
    cleaned = gen.push_to_hub("me/conv", delete_patterns=["NOTES.md"], **kw)
    assert "NOTES.md" not in repo.commits[cleaned.oid]
    # allow_patterns: only the card is uploaded (the weights stay as they were)
    card_only = new_generator(3).push_to_hub("me/conv", allow_patterns=["README.md"], **kw)
    assert (
        repo.commits[card_only.oid]["generator.safetensors"]
        == (repo.commits[cleaned.oid]["generator.safetensors"])
    )
    # create_pr: the pull request's url, main unchanged
    head = repo.branches["main"]
    pr = new_generator(4).push_to_hub("me/conv", create_pr=True, **kw)
    assert pr.pr_url is not None and "/discussions/" in pr.pr_url
    assert repo.branches["main"] == head
    # each pushed generator loads back as the one that was pushed
    kw_load = dict(token=TOKEN, endpoint=hub.url, cache_dir=tmp_path / "c")
    loaded = Generator.from_pretrained("me/conv", revision="dev", **kw_load)
    assert torch.equal(masks_of(loaded), masks_of(new_generator(6)))
    loaded = Generator.from_pretrained("me/conv", revision=cleaned.oid, **kw_load)
    assert torch.equal(masks_of(loaded), masks_of(gen))


def test_save_pretrained_push_to_hub_pushes_the_folder_it_wrote(
    hub: FakeHub, tmp_path: Path
) -> None:
    gen = new_generator(5)
    folder = tmp_path / "gen"
    info = gen.save_pretrained(
        folder, onnx=False, push_to_hub=True, repo_id="me/saved", token=TOKEN,
        endpoint=hub.url, commit_message="first",
    )  # fmt: skip
    assert isinstance(info, CommitInfo)
    remote = hub.repos[("model", "me/saved")].commits[info.oid]
    for name in ("config.json", "generator.safetensors", "README.md"):
        assert remote[name] == (folder / name).read_bytes(), name
    assert b'load_generator("me/saved"' in remote["README.md"]


# -------------------------------------------------------------------------------- cards
def test_save_pretrained_of_the_builtin_keeps_its_provenance(tmp_path: Path) -> None:
    gen = Generator.from_pretrained("builtin:cifar10-small")
    gen.save_pretrained(tmp_path / "g", onnx=False)
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    prov = config["provenance"]
    card = (tmp_path / "g" / "README.md").read_text()
    assert "No training run recorded" not in card and "No mask statistics" not in card
    assert "The training run recorded in `config.json`" in card
    assert f"| optimizer steps done | {prov['step']} |" in card
    assert f"| epochs | {prov['epochs']} |" in card
    assert "| shipped as | `builtin:cifar10-small` |" in card
    stats = prov["mask_statistics"]
    assert f"| Mask mean vs λ, least-squares slope | {stats['slope']:.4f} |" in card
    assert f"| Mask spatial std | {stats['spatial_std']:.4f} |" in card
    assert f"on {stats['images']} test images" in card and "λ in 0.2..0.8" in card
    assert validate_artifact(tmp_path / "g", "torch") == "samix-generator"


def _mixed_settings(data: str) -> dict:
    return {
        "data": data, "split": "train", "source_size": 10, "class_names": ["cat", "dog"],
        "method": "mixup", "alpha": 1.0, "num": 8, "seed": 0, "batch_size": 4,
        "shard_size": 8, "image_size": [16, 16], "image_format": "png",
    }  # fmt: skip


@pytest.mark.parametrize(
    "spec, name, hub_id",
    [
        ("cifar10:{root}/secret-place/c10", "CIFAR-10", "uoft-cs/cifar10"),
        ("cifar100:{root}/secret-place/c100", "CIFAR-100", "uoft-cs/cifar100"),
        ("fashion-mnist:{root}/secret-place/fm", "Fashion-MNIST", "zalando-datasets/fashion_mnist"),
        ("folder:{root}/secret-place/pets/", "local data (folder)", None),
        ("folder:secret-place/pets", "local data (folder)", None),
        ("npz:{root}/secret-place/pets.npz", "local data (npz)", None),
        ("{root}/secret-place/pets.npz", "local data (npz)", None),
        ("hf:{root}/secret-place/pets", "local data (hf)", None),
        ("hf:./secret-place/pets", "local data (hf)", None),
        ("hf:secret-place/pets", "local data (hf)", None),  # an existing relative folder
        ("hf:~/secret-place/pets", "local data (hf)", None),
        ("hf:some-org/pets-set", "some-org/pets-set", "some-org/pets-set"),
        ("digits", "digits (scikit-learn handwritten digits)", None),
    ],
)
def test_mixed_cards_name_no_local_data(
    spec: str, name: str, hub_id: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "secret-place" / "pets").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    data = spec.format(root=tmp_path)
    root = data.partition(":")[2] if ":" in data else data  # where the loader reads
    error = f"{root.rstrip('/')}/train/dog/3.png: cannot identify image file"
    text = render_mixed_card(_mixed_settings(data), {"rows": 6, "skipped": 1, "shards": 1}, [error])
    meta = DatasetCard(text).data.to_dict()
    assert str(tmp_path) not in text and "secret-place" not in text
    assert meta["pretty_name"] == f"mixup mixed {name} (train)"
    assert meta.get("source_datasets") == ([hub_id] if hub_id else None)
    assert f"on {name} (train split)" in text
    if name.startswith("local data"):
        assert "pets" not in text  # not even the folder's or file's name
        assert "- train/dog/3.png: cannot identify image file" in text


# ------------------------------------------------------------------ exported backbones
def test_exported_backbone_card_is_a_timm_card_about_its_own_run(tmp_path: Path) -> None:
    """A backbone fine-tuned from timm's ``resnet18.a1_in1k`` for 2 steps of a planned 30
    epochs: the card is a timm card, says it is a smoke run and carries nothing of the
    pretrained config it started from (its paper, origin, Hub id)."""
    from huggingface_hub import metadata_load

    from samix_hub.export.backbone import write_backbone_folder

    torch.manual_seed(0)
    model = timm.create_model("resnet18.a1_in1k", pretrained=False, num_classes=2).eval()
    assert model.pretrained_cfg["paper_ids"] == "arXiv:2110.00476"  # what it inherits
    run_config = {
        "scenario": "finetune", "method": "mixup", "backbone": "resnet18", "num_classes": 2,
        "class_names": ["cat", "dog"], "data": "folder:/home/someone/pets", "in_chans": 3,
        "image_size": [64, 64], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "epochs": 30, "max_steps": 2, "batch_size": 8, "seed": 0,
    }  # fmt: skip
    metrics = [{"epoch": 1, "step": 2, "top1": 50.0}]
    folder = tmp_path / "bb"
    folder.mkdir()
    write_backbone_folder(model, folder, run_config=run_config, metrics=metrics, onnx=False)
    meta = metadata_load(folder / "README.md")
    assert meta["library_name"] == "timm" and "samix-hub" in meta["tags"]
    card = (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    pcfg = config["pretrained_cfg"]
    for key in ("paper_ids", "origin_url", "hf_hub_id", "url"):
        assert key not in pcfg, key
    assert "2110.00476" not in card and "2110.00476" not in json.dumps(config)
    assert "a smoke run: training stopped at --max-steps 2" in card
    assert "| epochs | 30 |" not in card and "of the 30 epochs planned" in card
    assert "- This is a smoke run" in card  # in the limitations too
    prov = config["samix_hub"]["provenance"]
    assert prov["smoke_run"] is True and prov["max_steps"] == 2
    net, _ = samix_hub.load_backbone(folder)  # still a timm model timm can build
    assert net.pretrained_cfg["input_size"] == (3, 64, 64)
    # a run that reached its planned epochs is no smoke run
    full = write_card_of({**run_config, "epochs": 1}, metrics, model, tmp_path / "full")
    assert "smoke run" not in full and "| epochs | 1 |" in full


def write_card_of(run_config: dict, metrics: list, model: torch.nn.Module, folder: Path) -> str:
    from samix_hub.export.backbone import write_backbone_folder

    folder.mkdir()
    write_backbone_folder(model, folder, run_config=run_config, metrics=metrics, onnx=False)
    return (folder / "README.md").read_text()


def test_a_smoke_generator_export_says_so(tmp_path: Path) -> None:
    from samix_hub.export.generator import write_generator_folder

    gen = new_generator(8)
    run_config = {
        "scenario": "sl", "method": "samix", "backbone": ARCH, "data": "digits",
        "epochs": 30, "max_steps": 3, "seed": 0,
    }  # fmt: skip
    folder = tmp_path / "g"
    folder.mkdir()
    write_generator_folder(gen, folder, run_config=run_config, metrics=[], onnx=False)
    card = (folder / "README.md").read_text()
    assert "a smoke run: training stopped at --max-steps 3 (optimizer steps) of the 30" in card
    assert "| epochs | 30 |" not in card and "- This is a smoke run" in card
