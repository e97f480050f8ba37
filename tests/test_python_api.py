"""The Hub-style Python API (``from_pretrained`` / ``save_pretrained`` / ``push_to_hub``), the Hub
keywords of ``load_generator`` / ``load_backbone``, the missing-extra message and timm repos that
publish pickles beside ``model.safetensors``.

The real ``huggingface_hub`` client talks to tests/fakehub.py (as in tests/test_hub.py), ONNX
graphs run in the real onnxruntime and every file is real. References are independent of the
loader under test: the generator object that was saved, the server's request log, the bytes the
server holds.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli

from samix_hub import Generator, load_backbone, load_generator
from samix_hub.errors import ArtifactError, HubError, UserError
from samix_hub.export.validate import validate_artifact
from samix_hub.hub.transfer import pull, push

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub  # noqa: E402
from generator_helpers import masks_of, new_generator  # noqa: E402

pytestmark = pytest.mark.hub
TOKEN = "hf_fakehubApiToken0123456789"
ARCH = "resnet18_cifar_w16"
CARD = "---\nlibrary_name: samix-hub\nlicense: apache-2.0\ntags: [mixup, samix]\n---\n# test\n"


@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as server:
        yield server


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def gets(hub: FakeHub, start: int, name: str) -> int:
    """How many times the server sent the file ``name`` since request number ``start``."""
    return sum(1 for m, p in hub.requests[start:] if m == "GET" and p.endswith(f"/{name}"))


def test_save_pretrained_validates_and_round_trips(tmp_path: Path) -> None:
    gen = new_generator(1)
    folder = tmp_path / "gen"
    assert gen.save_pretrained(folder, onnx=False) is None  # as ModelHubMixin.save_pretrained
    assert files_of(folder) == {"README.md", "config.json", "generator.safetensors"}
    assert validate_artifact(folder, "torch") == "samix-generator"
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "samix-generator" and config["encoder"]["out_channels"] == 64
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: samix-hub\n")
    loaded = Generator.from_pretrained(folder)
    assert isinstance(loaded, Generator)
    assert torch.equal(masks_of(loaded), masks_of(gen))
    # A second save replaces the generator; a foreign folder is never overwritten.
    other = new_generator(2)
    other.save_pretrained(folder, onnx=False)
    assert torch.equal(masks_of(Generator.from_pretrained(folder)), masks_of(other))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(UserError, match="mine: exists, is not empty and is not a generator"):
        gen.save_pretrained(tmp_path / "mine", onnx=False)
    assert files_of(tmp_path / "mine") == {"notes.txt"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "mine"]  # no staging left


def test_from_pretrained_revision_cache_and_force_download(hub: FakeHub, tmp_path: Path) -> None:
    g1, g2 = new_generator(1), new_generator(2)
    g1.save_pretrained(tmp_path / "g1", onnx=False)
    g2.save_pretrained(tmp_path / "g2", onnx=False)
    kw = dict(endpoint=hub.url, token=TOKEN)
    _, sha1 = push(tmp_path / "g1", "me/api-rev", tag="v1", **kw)
    _, sha2 = push(tmp_path / "g2", "me/api-rev", **kw)
    cache = tmp_path / "cache"

    # The keyword that used to raise "got multiple values for keyword argument 'revision'".
    gen = load_generator("me/api-rev", revision="main", cache_dir=cache, **kw)
    assert gen.source.commit == sha2 and torch.equal(masks_of(gen), masks_of(g2))
    by_tag = Generator.from_pretrained("me/api-rev", revision="v1", cache_dir=cache, **kw)
    assert by_tag.source.commit == sha1 and torch.equal(masks_of(by_tag), masks_of(g1))
    by_sha = Generator.from_pretrained(f"me/api-rev@{sha1}", revision=sha1, cache_dir=cache, **kw)
    assert by_sha.source.commit == sha1
    with pytest.raises(UserError, match="revision 'main' differs from the @v1"):
        load_generator("me/api-rev@v1", revision="main", cache_dir=cache, **kw)

    # local_files_only: served from the cache without a single request, or a clear error.
    start = len(hub.requests)
    cached = Generator.from_pretrained(
        "me/api-rev", revision="v1", cache_dir=cache, local_files_only=True
    )
    assert hub.requests[start:] == []
    assert cached.source.commit == sha1 and torch.equal(masks_of(cached), masks_of(g1))
    with pytest.raises(HubError, match="me/api-rev@main: not in the local cache"):
        Generator.from_pretrained("me/api-rev", cache_dir=tmp_path / "empty", local_files_only=True)
    with pytest.raises(UserError, match="exclude each other"):
        load_generator("me/api-rev", local_files_only=True, force_download=True, cache_dir=cache)

    # force_download fetches the weights again (once); a plain call does not.
    start = len(hub.requests)
    Generator.from_pretrained("me/api-rev", cache_dir=cache, **kw)
    assert gets(hub, start, "generator.safetensors") == 0
    start = len(hub.requests)
    forced = Generator.from_pretrained("me/api-rev", cache_dir=cache, force_download=True, **kw)
    assert gets(hub, start, "generator.safetensors") == 1
    assert forced.source.commit == sha2 and torch.equal(masks_of(forced), masks_of(g2))


def test_a_pulled_artifact_is_validated_once(hub: FakeHub, tmp_path: Path) -> None:
    """A repo id is validated by the pull (for the runtime it fetched); loading it does not
    validate again. A local folder, and a pull validated for another runtime, are validated by
    the loader. A stray pickle, which validation refuses, shows which of them validates."""
    gen = new_generator(3)
    gen.save_pretrained(tmp_path / "g", onnx=False)
    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    push(tmp_path / "g", "me/api-once", endpoint=hub.url, token=TOKEN)
    loaded = load_generator("me/api-once", **kw)
    assert torch.equal(masks_of(loaded), masks_of(gen))
    resolved = pull("me/api-once", runtime="torch", endpoint=hub.url, token=TOKEN,
                    cache_dir=tmp_path / "cache")  # fmt: skip
    assert resolved.validated == "torch"
    with pytest.raises(ArtifactError, match="generator.onnx"):  # no onnx/: the loader refuses
        load_generator(resolved, runtime="onnx")
    # the pull validated these files: the loader does not look at them again
    (resolved.path / "stray.pt").write_bytes(b"not read")
    assert torch.equal(masks_of(load_generator(resolved)), masks_of(gen))
    # a local folder is validated by the loader
    (tmp_path / "g" / "stray.pt").write_bytes(b"not read")
    with pytest.raises(ArtifactError, match="pickle"):
        load_generator(tmp_path / "g")


@pytest.mark.slow
def test_push_to_hub_then_pull_on_both_runtimes(hub: FakeHub, tmp_path: Path) -> None:
    gen = new_generator(3)
    info = gen.push_to_hub("me/api-push", tag="v1", endpoint=hub.url, token=TOKEN)
    sha = info.oid  # a CommitInfo, as ModelHubMixin.push_to_hub returns
    repo = hub.repos[("model", "me/api-push")]
    assert info == info.commit_url == f"{hub.url}/me/api-push/commit/{sha}"
    assert repo.branches["main"] == sha and repo.tags["v1"] == sha
    assert set(repo.commits[sha]) == {
        ".gitattributes",
        "README.md",
        "config.json",
        "generator.safetensors",
        "onnx/generator.onnx",
    }
    assert b"me/api-push" in repo.commits[sha]["README.md"]  # the card names the repo
    assert all(TOKEN.encode() not in data for data in repo.commits[sha].values())

    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    onnx_gen = Generator.from_pretrained("me/api-push", revision="v1", runtime="onnx", **kw)
    assert type(onnx_gen).__name__ == "OnnxGenerator" and onnx_gen.source.commit == sha
    assert files_of(onnx_gen.source.path) == {  # the weights: to check the graph against them
        "README.md", "config.json", "onnx/generator.onnx", "generator.safetensors"
    }  # fmt: skip
    torch.testing.assert_close(masks_of(onnx_gen), masks_of(gen), atol=1e-4, rtol=0)
    torch_gen = Generator.from_pretrained("me/api-push", revision="v1", **kw)
    assert torch.equal(masks_of(torch_gen), masks_of(gen))
    # The ONNX wrapper has the torch generator's call: (mask, mixed), mask == masks().
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    partner, lam = torch.tensor([2, 0, 1]), torch.tensor([0.2, 0.5, 0.9])
    o_mask, o_mixed = onnx_gen(x, partner, lam)
    with torch.no_grad():
        t_mask, t_mixed = gen(x, partner, lam)
    assert torch.equal(o_mask, onnx_gen.masks(x, partner, lam))
    torch.testing.assert_close(o_mixed, t_mixed, atol=1e-4, rtol=0)
    torch.testing.assert_close(o_mask, t_mask, atol=1e-4, rtol=0)


def test_missing_onnx_extra_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"'onnxruntime'.*pip install 'samix-hub\[onnx\]'"):
        load_generator("builtin:cifar10-small", runtime="onnx")
    with pytest.raises(UserError, match=r"pip install 'samix-hub\[onnx\]'"):
        Generator.from_pretrained("builtin:cifar10-small", runtime="onnx")
    with pytest.raises(UserError, match=r"save_pretrained\(onnx=True\).*samix-hub\[onnx\]"):
        new_generator(1).save_pretrained(tmp_path / "g")
    assert not (tmp_path / "g").exists()
    # The torch runtime needs none of it.
    assert isinstance(load_generator("builtin:cifar10-small"), Generator)
    # The CLI: one line, exit code 2, before any work.
    code, _, err = run_cli(["export", tmp_path / "run", "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "export (or --no-onnx) needs the Python package 'onnxruntime'" in err
    assert not (tmp_path / "out").exists()


def _timm_repo(folder: Path, pickle: bool, safetensors: bool) -> torch.nn.Module:
    """A timm model in timm's own Hub layout, with the formats timm publishes."""
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(5)
    model = timm.create_model(ARCH, num_classes=10).eval()
    save_for_hf(model, str(folder), safe_serialization="both" if pickle else True)
    if not safetensors:
        (folder / "model.safetensors").unlink()
    (folder / "README.md").write_text(CARD)
    return model


def _raw_upload(hub: FakeHub, folder: Path, repo_id: str) -> str:
    """Publish a folder as timm's ``push_to_hf_hub`` would: no samix-hub validation."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=repo_id).oid


def test_timm_repo_with_pickles_beside_safetensors(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _timm_repo(tmp_path / "both", pickle=True, safetensors=True)
    assert files_of(tmp_path / "both") >= {"pytorch_model.bin", "model.safetensors"}
    sha = _raw_upload(hub, tmp_path / "both", "timm/r18-both")
    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    capsys.readouterr()
    start = len(hub.requests)
    got = pull("timm/r18-both", **kw)
    err = capsys.readouterr().err
    assert got.commit == sha and got.kind == "samix-backbone"
    assert "pytorch_model.bin" not in files_of(got.path)
    assert not any(p.endswith(".bin") for _, p in hub.requests[start:])
    warnings = [line for line in err.splitlines() if "pytorch_model.bin" in line]
    assert len(warnings) == 1 and "never downloaded nor loaded" in warnings[0]

    net, config = load_backbone("timm/r18-both", revision=sha, **kw)
    assert net.source.commit == sha and config["architecture"] == ARCH
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(net(x), model(x))

    # Pickles only: still refused, and the pickle is still never downloaded.
    _timm_repo(tmp_path / "only", pickle=True, safetensors=False)
    _raw_upload(hub, tmp_path / "only", "timm/r18-pickle")
    start = len(hub.requests)
    with pytest.raises(HubError, match="pickle weights.*pytorch_model.bin.*convert them to safe"):
        pull("timm/r18-pickle", runtime="all", **kw)
    assert not any(p.endswith(".bin") for _, p in hub.requests[start:])
