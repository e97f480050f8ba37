"""``samix-hub push`` / ``pull`` with the REAL huggingface_hub client against tests/fakehub.py.

The CLI runs in subprocesses whose environment (HF_ENDPOINT, HF_HOME, HF_TOKEN,
HF_HUB_DISABLE_XET) is set before huggingface_hub is imported, as huggingface_hub reads them at import.
In-process calls pass ``endpoint``, ``token`` and ``cache_dir`` explicitly; huggingface_hub may
already have been imported by another test module, so Xet uploads are switched off through its
``HF_HUB_DISABLE_XET`` setting (what the environment variable sets) for each test.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from samix_hub import Generator, GeneratorConfig, MixerConfig, load_generator
from samix_hub.errors import ArtifactError, HubError, UserError
from samix_hub.export.generator import write_generator
from samix_hub.export.load import read_generator
from samix_hub.hub.resolve import resolve_source
from samix_hub.hub.transfer import pull, push
from samix_hub.models.encoder import StageEncoder

sys.path.insert(0, str(Path(__file__).parent))
from fakehub import FakeHub, git_blob_oid  # noqa: E402

pytestmark = pytest.mark.hub
TOKEN = "hf_fakehubSecretToken0123456789"
CARD = "---\nlibrary_name: samix-hub\nlicense: apache-2.0\ntags: [mixup, samix]\n---\n# test\n"
ARCH = "resnet18_cifar_w16"


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub():
    with FakeHub(token=TOKEN) as server:
        yield server


def cli(env_hub: str, home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "SAMIX_"))}
    env.update(
        HF_ENDPOINT=env_hub,
        HF_HOME=str(home),
        HF_TOKEN=TOKEN,
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        **extra_env,
    )
    return subprocess.run(
        [sys.executable, "-m", "samix_hub", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_generator(folder: Path, seed: int) -> Generator:
    torch.manual_seed(seed)  # test-only initialisation of the weights
    channels = StageEncoder(ARCH, stage=3).out_channels
    gen = Generator(GeneratorConfig(ARCH, MixerConfig(in_channels=channels)))
    write_generator(gen, folder)
    (folder / "README.md").write_text(CARD)
    return gen


def make_backbone(folder: Path) -> torch.nn.Module:
    import timm
    from timm.models import save_for_hf

    torch.manual_seed(3)
    model = timm.create_model(ARCH, num_classes=10).eval()
    save_for_hf(model, str(folder), safe_serialization=True)
    (folder / "README.md").write_text(CARD)
    return model


def make_mixed_dataset(folder: Path, n: int = 6) -> dict[str, list]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
        images.append({"bytes": buf.getvalue(), "path": None})
    columns = {
        "image": images,
        "label_a": rng.integers(0, 10, n).tolist(),
        "label_b": rng.integers(0, 10, n).tolist(),
        "lam": rng.uniform(0, 1, n).astype(np.float32).tolist(),
        "index_a": list(range(n)),
        "index_b": rng.permutation(n).tolist(),
    }
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table(columns), folder / "data" / "train-00000-of-00001.parquet")
    (folder / "README.md").write_text(CARD)
    return columns


def outputs(gen: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    images = torch.rand(4, 3, 32, 32, generator=g)
    partner = torch.tensor([1, 0, 3, 2])
    with torch.no_grad():
        return gen(images, partner, torch.tensor([0.3, 0.3, 0.8, 0.8]))


def files_of(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def raw_upload(hub: FakeHub, folder: Path, repo_id: str) -> str:
    """Publish a folder WITHOUT samix-hub's validation (what a careless uploader could do)."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_folder(folder_path=folder, repo_id=repo_id).oid


# ---------------------------------------------------------------------------------- tests
def test_fakehub_blob_ids_match_git() -> None:
    from huggingface_hub.utils.sha import git_hash

    for data in (b"", b"hello\n", os.urandom(1000)):
        assert git_blob_oid(data) == git_hash(data)


@pytest.mark.slow
def test_cli_push_tag_pull_generator(hub: FakeHub, tmp_path: Path) -> None:
    gen = make_generator(tmp_path / "gen", seed=1)
    home = tmp_path / "hf"
    out = cli(hub.url, home, "push", str(tmp_path / "gen"), "me/gen-cli", "--tag", "v1")
    assert out.returncode == 0, out.stderr
    url, sha = out.stdout.split()
    assert url == f"{hub.url}/me/gen-cli/commit/{sha}"
    repo = hub.repos[("model", "me/gen-cli")]
    assert repo.branches["main"] == sha and repo.tags["v1"] == sha
    assert set(repo.commits[sha]) == {".gitattributes", *files_of(tmp_path / "gen")}

    dest = tmp_path / "pulled"
    out = cli(hub.url, home, "pull", "me/gen-cli@v1", "--dir", str(dest))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(dest)
    assert sha in out.stderr
    assert files_of(dest) == {"README.md", "config.json", "generator.safetensors"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen", "hf", "pulled"]  # no temp dirs
    for a, b in zip(outputs(gen), outputs(read_generator(dest)), strict=True):
        assert torch.equal(a, b)
    # The token is never printed nor published.
    for text in (out.stdout, out.stderr):
        assert TOKEN not in text
    assert all(TOKEN.encode() not in data for data in repo.commits[sha].values())


def test_branch_commit_sha_and_tag(hub: FakeHub, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    gen1 = make_generator(tmp_path / "g1", seed=1)
    gen2 = make_generator(tmp_path / "g2", seed=2)
    _, sha1 = push(tmp_path / "g1", "me/gen-br", tag="v1", endpoint=hub.url, token=TOKEN)
    _, sha_dev = push(tmp_path / "g2", "me/gen-br", revision="dev", endpoint=hub.url, token=TOKEN)
    _, sha3 = push(tmp_path / "g2", "me/gen-br", endpoint=hub.url, token=TOKEN)  # main moves on
    assert len({sha1, sha_dev, sha3}) == 3
    with pytest.raises(HubError, match="tag 'v1' already exists"):
        push(tmp_path / "g1", "me/gen-br", tag="v1", endpoint=hub.url, token=TOKEN)
    repo = hub.repos[("model", "me/gen-br")]
    assert repo.branches == {"main": sha3, "dev": sha_dev} and repo.tags == {"v1": sha1}

    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=cache)
    by_sha = pull("me/gen-br", revision=sha_dev, **kw)
    assert by_sha.commit == sha_dev and by_sha.path.name == sha_dev
    by_tag = pull("me/gen-br", revision="v1", **kw)
    assert by_tag.commit == sha1 and by_tag.kind == "samix-generator"
    assert pull("me/gen-br", revision="dev", **kw).commit == sha_dev
    assert pull("me/gen-br", **kw).commit == sha3
    ref1, ref2 = outputs(gen1), outputs(gen2)
    assert not torch.equal(ref1[0], ref2[0])  # the two generators differ
    for ref, got in ((ref2, by_sha), (ref1, by_tag)):
        for a, b in zip(ref, outputs(read_generator(got.path)), strict=True):
            assert torch.equal(a, b)


@pytest.mark.slow
def test_backbone_roundtrip_and_timm_hf_hub(hub: FakeHub, tmp_path: Path) -> None:
    model = make_backbone(tmp_path / "bb")
    _, sha = push(tmp_path / "bb", "me/r18", endpoint=hub.url, token=TOKEN)
    got = pull("me/r18", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    assert got.kind == "samix-backbone" and got.commit == sha
    from safetensors.torch import load_file

    state = load_file(got.path / "model.safetensors")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch, timm, samix_hub\n"
        "m = timm.create_model('hf-hub:me/r18', pretrained=True).eval()\n"
        "x = torch.load(sys.argv[1], weights_only=True)\n"
        "with torch.no_grad(): torch.save(m(x), sys.argv[2])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_TOKEN=TOKEN)
    run = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    with torch.no_grad():
        expected = model(x)
    assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), expected)


def test_mixed_dataset_roundtrip(hub: FakeHub, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    columns = make_mixed_dataset(tmp_path / "mixed")
    with pytest.raises(UserError, match="--repo-type dataset"):
        push(tmp_path / "mixed", "me/mixed", repo_type="model", endpoint=hub.url, token=TOKEN)
    _, sha = push(tmp_path / "mixed", "me/mixed", endpoint=hub.url, token=TOKEN)
    assert ("dataset", "me/mixed") in hub.repos and ("model", "me/mixed") not in hub.repos
    got = pull("me/mixed", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    assert (got.kind, got.repo_type, got.commit) == ("samix-mixed-dataset", "dataset", sha)
    table = pq.read_table(got.path / "data" / "train-00000-of-00001.parquet").to_pydict()
    assert table == columns
    from PIL import Image

    from samix_hub.data import MixedDataset

    ds = MixedDataset(got.path)
    assert len(ds) == len(columns["lam"])
    for i in (0, len(ds) - 1):
        image, label_a, label_b, lam = ds[i]
        png = np.array(Image.open(io.BytesIO(columns["image"][i]["bytes"])))
        assert torch.equal(image, torch.from_numpy(png).permute(2, 0, 1).float() / 255)
        assert (label_a, label_b) == (columns["label_a"][i], columns["label_b"][i])
        assert float(lam) == columns["lam"][i]


def test_pull_downloads_only_what_the_runtime_needs(hub: FakeHub, tmp_path: Path) -> None:
    make_generator(tmp_path / "g", seed=1)
    (tmp_path / "g" / "onnx").mkdir()
    (tmp_path / "g" / "onnx" / "generator.onnx").write_bytes(b"not fetched for torch")
    (tmp_path / "g" / "notes.txt").write_text("extra")
    raw_upload(hub, tmp_path / "g", "me/gen-rt")
    start = len(hub.requests)
    got = pull("me/gen-rt", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    assert files_of(got.path) == {"README.md", "config.json", "generator.safetensors"}
    fetched = [p for m, p in hub.requests[start:] if "/resolve/" in p and m == "GET"]
    assert sorted(p.rsplit("/", 1)[1] for p in fetched) == [
        "README.md",
        "config.json",
        "generator.safetensors",
    ]


def test_push_refuses_invalid_folders_before_uploading(hub: FakeHub, tmp_path: Path) -> None:
    start = len(hub.requests)
    gen = tmp_path / "g"
    make_generator(gen, seed=1)
    (gen / "README.md").unlink()
    with pytest.raises(ArtifactError, match="README.md"):
        push(gen, "me/bad", endpoint=hub.url, token=TOKEN)
    (gen / "README.md").write_text(CARD)
    (gen / "notes.md").write_text(f"token: {TOKEN}\n")
    with pytest.raises(UserError, match="contains your Hub token"):
        push(gen, "me/bad", endpoint=hub.url, token=TOKEN)
    (gen / "notes.md").unlink()
    torch.save({"w": torch.zeros(1)}, gen / "extra.pt")
    with pytest.raises(ArtifactError, match="pickle"):
        push(gen, "me/bad", endpoint=hub.url, token=TOKEN)
    (gen / "extra.pt").unlink()
    (gen / "generator.safetensors").write_bytes(b"truncated")
    with pytest.raises(ArtifactError, match="generator.safetensors"):
        push(gen, "me/bad", endpoint=hub.url, token=TOKEN)
    with pytest.raises(ArtifactError):
        push(tmp_path, "me/bad", endpoint=hub.url, token=TOKEN)  # not an artifact at all
    assert hub.requests[start:] == []  # nothing was sent, not even create_repo


def test_pull_failures_are_clear_and_leave_nothing(hub: FakeHub, tmp_path: Path) -> None:
    make_generator(tmp_path / "g", seed=4)
    push(tmp_path / "g", "me/gen-fail", endpoint=hub.url, token=TOKEN)
    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    dest = tmp_path / "dest"

    with pytest.raises(HubError, match="revision 'nope' not found"):
        pull("me/gen-fail", revision="nope", local_dir=dest, **kw)
    with pytest.raises(HubError, match="not authorised.*HTTP 401"):
        pull("me/gen-fail", endpoint=hub.url, token="hf_wrongToken000000000", cache_dir=dest)
    push(tmp_path / "g", "me/gen-private", private=True, endpoint=hub.url, token=TOKEN)
    with pytest.raises(HubError, match="me/gen-private: repository not found"):
        pull("me/gen-private", endpoint=hub.url, token=False, cache_dir=dest)
    assert pull("me/gen-private", **kw).kind == "samix-generator"

    hub.truncate["generator.safetensors"] = 1000
    try:
        with pytest.raises(HubError, match="incomplete or truncated"):
            pull("me/gen-fail", local_dir=dest, **kw)
    finally:
        hub.truncate.clear()
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["cache", "g"]
    resumed = pull("me/gen-fail", local_dir=dest, **kw)  # resumes with a Range request
    assert torch.equal(
        outputs(read_generator(resumed.path))[0],
        outputs(read_generator(tmp_path / "g"))[0],
    )

    assert pull("me/gen-fail", local_dir=dest, **kw).path == dest  # replaces a previous pull
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and is not a samix-hub artifact"):
        pull("me/gen-fail", local_dir=tmp_path / "busy", **kw)
    assert files_of(tmp_path / "busy") == {"notes.txt"}
    with pytest.raises(HubError, match=r"onnx/generator.onnx: missing"):
        pull("me/gen-fail", runtime="onnx", **kw)

    other = tmp_path / "cache2"
    hub.corrupt.add("generator.safetensors")
    try:
        with pytest.raises(HubError, match="corrupt download"):
            pull("me/gen-fail", endpoint=hub.url, token=TOKEN, cache_dir=other)
    finally:
        hub.corrupt.clear()
    again = pull("me/gen-fail", endpoint=hub.url, token=TOKEN, cache_dir=other)
    assert again.commit == resumed.commit  # the corrupt blob was dropped and fetched again


def test_pull_refuses_pickles_and_foreign_repos(hub: FakeHub, tmp_path: Path) -> None:
    make_generator(tmp_path / "g", seed=1)
    torch.save({"w": torch.zeros(2)}, tmp_path / "g" / "pytorch_model.bin")
    raw_upload(hub, tmp_path / "g", "me/pickled")
    start = len(hub.requests)
    with pytest.raises(HubError, match="pickle weights.*pytorch_model.bin"):
        pull("me/pickled", runtime="all", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    assert not any(p.endswith("pytorch_model.bin") for _, p in hub.requests[start:])

    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "README.md").write_text("# some other model\n")
    raw_upload(hub, tmp_path / "other", "me/other")
    with pytest.raises(HubError, match="not a samix-hub artifact"):
        pull("me/other", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")

    bad = tmp_path / "future"
    make_generator(bad, seed=1)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    raw_upload(hub, bad, "me/future")
    with pytest.raises(HubError, match="me/future@.*format_version 99"):
        pull("me/future", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")


@pytest.mark.slow
def test_offline_and_server_down(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    server = FakeHub(token=TOKEN).start()
    url = server.url
    gen = make_generator(tmp_path / "g", seed=5)
    try:
        push(tmp_path / "g", "me/gen-off", endpoint=url, token=TOKEN)
        online = pull("me/gen-off", endpoint=url, token=TOKEN, cache_dir=home / "hub")
    finally:
        server.stop()
    out = cli(url, home, "pull", "me/gen-off", "--offline")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(online.path) and online.commit in out.stderr
    dest = tmp_path / "dest"
    out = cli(url, home, "pull", "me/gen-off", "--dir", str(dest), HF_HUB_OFFLINE="1")
    assert out.returncode == 0, out.stderr
    for a, b in zip(outputs(gen), outputs(read_generator(dest)), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(HubError, match="not in the local cache, and offline mode is on"):
        pull("me/never-pulled", offline=True, cache_dir=home / "hub")

    # Server down and nothing cached: a clear error, and no half-written --dir.
    with pytest.raises(HubError, match="me/gen-off@main: cannot reach .* nothing is cached"):
        pull("me/gen-off", endpoint=url, local_dir=tmp_path / "d2", cache_dir=tmp_path / "empty")
    assert not (tmp_path / "d2").exists()


@pytest.mark.slow
def test_cli_unknown_repo(hub: FakeHub, tmp_path: Path) -> None:
    """A user error is one line on stderr, exit code 2, and --dir is not created."""
    out = cli(hub.url, tmp_path / "hf", "pull", "me/does-not-exist", "--dir", str(tmp_path / "d"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == (
        f"Error: me/does-not-exist: repository not found on {hub.url} "
        "(a private repo needs --token, HF_TOKEN or `hf auth login`)"
    )
    assert "Traceback" not in out.stderr and not (tmp_path / "d").exists()


def test_resolve_source(hub: FakeHub, tmp_path: Path) -> None:
    make_generator(tmp_path / "g", seed=1)
    assert resolve_source(tmp_path / "g").path == tmp_path / "g"
    for bad in ("./missing", "a/b/c", str(tmp_path / "nope"), "missing"):
        with pytest.raises(UserError, match="no such folder"):
            resolve_source(bad)
    with pytest.raises(UserError, match="empty revision"):
        resolve_source("me/x@")
    _, sha = push(tmp_path / "g", "me/gen-src", endpoint=hub.url, token=TOKEN)
    got = resolve_source("me/gen-src@main", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    assert got.commit == sha and got.provenance() == {
        "repo_id": "me/gen-src",
        "revision": "main",
        "commit": sha,
    }


@pytest.mark.slow
def test_onnx_generator_push_pull_load(hub: FakeHub, tmp_path: Path) -> None:
    """runtime onnx: only the graph + config + card are fetched; same outputs as torch."""
    from samix_hub.export import onnx as onnx_export

    gen = make_generator(tmp_path / "g", seed=6)
    onnx_export.export_generator_onnx(gen, tmp_path / "g" / "onnx" / "generator.onnx")
    _, sha = push(tmp_path / "g", "me/gen-onnx", endpoint=hub.url, token=TOKEN)
    kw = dict(endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "c")
    got = pull("me/gen-onnx", runtime="onnx", **kw)
    assert got.commit == sha
    # the weights come too: the graph is run against them before the pull is accepted
    assert files_of(got.path) == {
        "README.md",
        "config.json",
        "onnx/generator.onnx",
        "generator.safetensors",
    }
    onnx_gen = load_generator("me/gen-onnx", runtime="onnx", device="cpu", **kw)
    assert onnx_gen.source.commit == sha  # through the one SRC resolver
    for a, b in zip(outputs(gen), outputs(onnx_gen), strict=True):
        torch.testing.assert_close(torch.as_tensor(b), a, atol=1e-4, rtol=1e-4)
