"""Export a run folder (RUN_DIR contract) to generator/backbone folders and load them back."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner

import samix_hub
from samix_hub import Generator, GeneratorConfig, Mixer, MixerConfig
from samix_hub.cli.main import cli
from samix_hub.errors import UserError
from samix_hub.export.generator import export_run
from samix_hub.export.run import load_weights_only
from samix_hub.export.validate import validate_artifact

sys.path.insert(0, str(Path(__file__).parent))
from conftest import CIFAR_SUBSET  # noqa: E402

ARCH = "resnet18_cifar_w16"
MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.22)
CLASSES = [f"class{i}" for i in range(10)]


def sharpen(mixer: Mixer) -> Mixer:
    """Scale the N(0, 0.01) init so masks vary in space like a trained mixer's (std ~0.1)."""
    scales = {"query": 100.0, "key": 100.0, "value.conv.0.conv": 30.0, "value.conv.1": 100.0}
    with torch.no_grad():
        for name, p in mixer.named_parameters():
            for prefix, scale in scales.items():
                if name.startswith(prefix):
                    p.mul_(scale)
    return mixer


def make_run(
    root: Path, method: str = "samix", seed: int = 0, size: int = 32, metrics: bool = True
) -> Path:
    """A run folder as ``samix-hub train`` writes it: config.json, metrics.jsonl, last.pt."""
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, num_classes=10)
    ema = timm.create_model(ARCH, num_classes=10)
    with torch.no_grad():  # distinct EMA weights and non-trivial BatchNorm statistics
        for p in ema.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for name, buf in ema.named_buffers():
            if name.endswith("running_var"):
                buf.uniform_(0.9, 1.1)
    mixer_cfg = MixerConfig(in_channels=64) if method == "samix" else None
    mixer_state = None
    if mixer_cfg is not None:
        torch.manual_seed(seed)  # seed 0: mask mean ~0.4, spatial std ~0.1
        mixer_state = sharpen(Mixer(mixer_cfg)).state_dict()
    config = {
        "kind": "samix-run",
        "format_version": 1,
        "scenario": "sl",
        "method": method,
        "backbone": ARCH,
        "num_classes": 10,
        "class_names": CLASSES,
        "data": "npz:/home/someone/private/cifar10_subset_4k_1k.npz",
        "image_size": [size, size],
        "in_chans": 3,
        "mean": list(MEAN),
        "std": list(STD),
        "epochs": 3,
        "batch_size": 16,
        "lr": 0.1,
        "weight_decay": 1e-4,
        "alpha": 2.0,
        "eta": 0.5,
        "seed": seed,
        "mixer": mixer_cfg.to_dict() if mixer_cfg else None,
        "stage": 3,
        "samix_hub_version": samix_hub.__version__,
        "generator": None,
    }
    run = root / f"run-{method}-{seed}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config))
    rows = [
        {"epoch": e, "step": 10 * e, "top1": t1, "top5": t5, "ema_top1": et, "ema_top5": 90.0,
         "train_loss": 2.0 - 0.1 * e}
        for e, t1, t5, et in [(1, 30.5, 80.25, 28.0), (2, 41.0, 85.5, 39.5), (3, 39.75, 88.0, 44.25)]
    ]  # fmt: skip
    if method == "samix":  # the generator's own statistics (mixing/statistics.py: mask_statistics)
        rows[-1].update(mask_slope=0.875, mask_spatial_std=0.125, mask_lam_mae=0.0625)
    if metrics:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.save(
        {
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "mixer": mixer_state,
            "optimizer": {},
            "scheduler": {},
            "step": 30,
            "epoch": 3,
            "config": config,
        },
        run / "checkpoints" / "last.pt",
    )
    return run


def reference_generator(run: Path, weights: str = "ema") -> Generator:
    """The generator built by hand from the checkpoint: encoder keys under ``net.``, mixer as is."""
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    cfg = ckpt["config"]
    gen = Generator(
        GeneratorConfig(
            backbone=cfg["backbone"],
            mixer=MixerConfig.from_dict(cfg["mixer"]),
            input_size=tuple(cfg["image_size"]),
            mean=tuple(cfg["mean"]),
            std=tuple(cfg["std"]),
        )
    )
    own = gen.state_dict()
    state = {k: ckpt[weights][k[len("encoder.net.") :]] for k in own if k.startswith("encoder.")}
    state.update({f"mixer.{k}": v for k, v in ckpt["mixer"].items()})
    gen.load_state_dict(state, strict=True)
    return gen.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    """One full export through the CLI (with int8 when the real CIFAR subset is present)."""
    root = tmp_path_factory.mktemp("export")
    run = make_run(root)
    args = ["export", str(run), "--out", str(root / "out"), "--json", "-q",
            "--generator-repo", "me/gen", "--backbone-repo", "me/bb"]  # fmt: skip
    if CIFAR_SUBSET.is_file():
        args += ["--quantize", "int8", "--calibration-data", f"npz:{CIFAR_SUBSET}"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return run, root / "out", json.loads(res.stdout)


def _batch(n: int, h: int, w: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(n, 3, h, w, generator=g),
        torch.randperm(n, generator=g),
        torch.rand(n, generator=g),
    )


def test_generator_round_trip_torch_and_onnx(exported):
    run, out, _ = exported
    ref = reference_generator(run)
    torch_gen = samix_hub.load_generator(out / "generator")
    onnx_gen = samix_hub.load_generator(out / "generator", runtime="onnx")
    assert onnx_gen.providers[-1] == "CPUExecutionProvider"
    for n, h, w in [(1, 32, 32), (6, 32, 32), (3, 48, 40), (2, 16, 24)]:
        x, partner, lam = _batch(n, h, w, seed=n)
        with torch.no_grad():
            r_mask, r_mixed = ref(x, partner, lam)
            t_mask, t_mixed = torch_gen(x, partner, lam)
        o_mask, o_mixed = onnx_gen(x, partner, lam)
        assert torch.equal(t_mask, r_mask) and torch.equal(t_mixed, r_mixed)
        assert (o_mask - r_mask).abs().max() <= 1e-4
        assert (o_mixed - r_mixed).abs().max() <= 1e-4
        # the mixed images follow the λ convention: mask is the weight of image i
        assert torch.allclose(o_mixed, o_mask * x + (1 - o_mask) * x[partner], atol=1e-5)
    # the masks are not trivial (else parity would prove little)
    assert r_mask.std() > 1e-3
    # the encoder comes from the EMA weights, not from the online model
    other = reference_generator(run, "model")
    x, partner, lam = _batch(4, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(other(x, partner, lam)[0], torch_gen(x, partner, lam)[0])


def test_generator_config_and_provenance(exported):
    _, out, _ = exported
    cfg = json.loads((out / "generator" / "config.json").read_text())
    assert cfg["kind"] == "samix-generator" and cfg["format_version"] == 1
    assert cfg["encoder"] == {
        "architecture": ARCH, "stage": 3, "in_chans": 3, "out_channels": 64, "reduction": 4
    }  # fmt: skip
    assert cfg["input_size"] == [32, 32] and cfg["mean"] == list(MEAN) and cfg["std"] == list(STD)
    prov = cfg["provenance"]
    assert prov["method"] == "samix" and prov["epochs"] == 3 and prov["seed"] == 0
    assert prov["encoder_weights"] == "ema"
    # local paths never reach published files
    for name in ("config.json", "README.md"):
        assert "/home/someone" not in (out / "generator" / name).read_text()
        assert "/home/someone" not in (out / "backbone" / name).read_text()


def test_backbone_loads_through_timm(exported):
    run, out, _ = exported
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    folder = out / "backbone"
    model = timm.create_model(
        ARCH,
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors")),
        num_classes=10,
    )
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    local = timm.create_model(f"local-dir:{folder}", pretrained=True)
    assert tuple(local.pretrained_cfg["mean"]) == MEAN and tuple(local.pretrained_cfg["std"]) == STD
    assert tuple(local.pretrained_cfg["input_size"]) == (3, 32, 32)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == ARCH and cfg["num_classes"] == 10
    assert cfg["label_names"] == CLASSES
    # ONNX takes [0, 1] images and normalises inside: same logits as timm on normalised input
    onnx_model, _ = samix_hub.load_backbone(folder, runtime="onnx")
    x = torch.rand(5, 3, 40, 32, generator=torch.Generator().manual_seed(3))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = local.eval()((x - mean) / std)
    assert (onnx_model(x) - expected).abs().max() <= 1e-3
    torch_model, config = samix_hub.load_backbone(folder)
    with torch.no_grad():
        assert torch.equal(torch_model((x - mean) / std), expected)
    assert config["samix_hub"]["weights"] == "model"


def test_run_without_mixer_exports_backbone_only(tmp_path):
    run = make_run(tmp_path, method="mixup", metrics=False)
    messages: list[str] = []
    reports = export_run(run, tmp_path / "out", onnx=False, log=messages.append)
    assert [r.kind for r in reports] == ["samix-backbone"]
    assert not (tmp_path / "out" / "generator").exists()
    assert any("no mixer" in m for m in messages)
    card = (tmp_path / "out" / "backbone" / "README.md").read_text()
    assert "model-index" not in card and "No evaluation was recorded" in card
    assert validate_artifact(tmp_path / "out" / "backbone", "torch") == "samix-backbone"


def test_failed_export_leaves_no_complete_folder(tmp_path):
    run = make_run(tmp_path)
    with pytest.raises(UserError, match="opset"):
        export_run(run, tmp_path / "out", what=["generator"], opset=12)
    assert list((tmp_path / "out").iterdir()) == []  # no generator/, no staging leftovers
    export_run(run, tmp_path / "out", what=["backbone"], onnx=False)
    with pytest.raises(UserError, match="exists; pass --force"):
        export_run(run, tmp_path / "out", what=["backbone"], onnx=False)
    export_run(run, tmp_path / "out", what=["backbone"], onnx=False, weights="ema", force=True)
    cfg = json.loads((tmp_path / "out" / "backbone" / "config.json").read_text())
    assert cfg["samix_hub"]["weights"] == "ema"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["backbone"]


def test_checkpoint_needing_unpickling_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": Path("x")}, path)  # a non-tensor class: needs unpickling
    with pytest.raises(UserError, match="weights_only=True"):
        load_weights_only(path)


def test_export_cli_json(tmp_path):
    run = make_run(tmp_path)
    res = CliRunner().invoke(
        cli, ["export", str(run), "--out", str(tmp_path / "o"), "--no-onnx", "--json"]
    )
    assert res.exit_code == 0, res.output
    reports = json.loads(res.stdout)
    assert [r["kind"] for r in reports] == ["samix-generator", "samix-backbone"]
    gen_files = reports[0]["files"]
    assert (
        gen_files["generator.safetensors"]
        == (tmp_path / "o/generator/generator.safetensors").stat().st_size
    )
    res = CliRunner().invoke(cli, ["export", str(run), "--out", str(tmp_path / "o"), "--what", "x"])
    assert res.exit_code != 0 and "--what x" in str(res.exception) + res.output


def test_export_report_and_int8_fidelity(exported):
    _, out, reports = exported
    assert [r["kind"] for r in reports] == ["samix-generator", "samix-backbone"]
    gen_report, bb_report = reports
    assert gen_report["files"]["generator.safetensors"] == (
        (out / "generator" / "generator.safetensors").stat().st_size
    )
    assert 0 <= gen_report["parity"]["mask"] <= 1e-4 and 0 <= gen_report["parity"]["mixed"] <= 1e-4
    assert 0 <= bb_report["parity"]["logits"] <= 1e-3
    if not CIFAR_SUBSET.is_file():
        pytest.skip("int8 calibration needs ../shared/data/cifar10_subset_4k_1k.npz")
    assert "onnx/generator.int8.onnx" in gen_report["files"]
    fid = gen_report["int8"]
    assert 0 <= fid["mask_mean_abs_diff"] <= fid["mask_max_abs_diff"] <= 1
    assert fid["mask_mean_abs_diff"] <= 0.05
    int8 = samix_hub.load_generator(out / "generator", runtime="onnx", int8=True)
    fp32 = samix_hub.load_generator(out / "generator", runtime="onnx")
    x, partner, lam = _batch(4, 32, 32)
    mask, mixed = int8(x, partner, lam)
    # only convolutions are quantised: the mixing itself is exact float32
    assert torch.allclose(mixed, mask * x + (1 - mask) * x[partner], atol=1e-5)
    diff = (mask - fp32(x, partner, lam)[0]).abs()
    assert 0 < diff.max() < 0.5  # quantised, yet close


def openmixup_checkpoint(gen: Generator) -> dict:
    """A checkpoint with the key names of the reference openmixup code (README "import-openmixup")."""
    state = {}
    ema = gen.encoder.net.state_dict()
    for key, value in ema.items():
        state[f"backbone_k.{key}"] = value.clone()
        state[f"backbone.{key}"] = value + 1  # the online encoder: must be ignored
    state["backbone_k.layer4.0.conv1.weight"] = torch.zeros(128, 64, 3, 3)  # dropped: stage 4
    rename = {"query.weight": "query.conv.weight", "query.bias": "query.conv.bias",
              "key.weight": "key.conv.weight", "key.bias": "key.conv.bias"}  # fmt: skip
    for key, value in gen.mixer.state_dict().items():
        state[f"mix_block.{rename.get(key, key)}"] = value.clone()
    state["head_mix.fc.weight"] = torch.zeros(10, 128)
    return {"meta": {"epoch": 800, "iter": 400000, "config": "text"}, "state_dict": state}


def test_import_openmixup(tmp_path):
    gen = reference_generator(make_run(tmp_path))
    torch.save(openmixup_checkpoint(gen), tmp_path / "samix.pth")
    res = CliRunner().invoke(
        cli,
        ["import-openmixup", str(tmp_path / "samix.pth"), "--backbone", ARCH, "--out",
         str(tmp_path / "gen"), "--mean", ",".join(map(str, MEAN)), "--std",
         ",".join(map(str, STD)), "--data-name", "cifar10", "--no-onnx", "-q"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    loaded = samix_hub.load_generator(tmp_path / "gen")
    assert loaded.config.provenance["imported_from"] == "openmixup"
    assert loaded.config.provenance["epoch"] == 800
    x, partner, lam = _batch(5, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x, partner, lam)[0], gen(x, partner, lam)[0])
    # a checkpoint that needs arbitrary unpickling is refused with a clear message
    torch.save({"state_dict": {}, "meta": {"path": Path("x")}}, tmp_path / "evil.pth")
    res = CliRunner().invoke(
        cli,
        [
            "import-openmixup",
            str(tmp_path / "evil.pth"),
            "--backbone",
            ARCH,
            "--out",
            str(tmp_path / "g2"),
        ],
    )
    assert res.exit_code != 0 and "weights_only=True" in str(res.exception)
    # the wrong architecture is named
    res = CliRunner().invoke(
        cli,
        ["import-openmixup", str(tmp_path / "samix.pth"), "--backbone", "resnet18_cifar_w32",
         "--out", str(tmp_path / "g3"), "--no-onnx"],
    )  # fmt: skip
    assert res.exit_code != 0 and not (tmp_path / "g3").exists()


def test_train_then_export_then_load(tmp_path):
    """``samix-hub train`` (a few steps on the bundled digits) -> export -> load both artifacts."""
    runner = CliRunner()
    args = ["train", "--method", "samix", "--data", "digits", "--backbone", ARCH,
            "--epochs", "1", "--batch-size", "16", "--max-steps", "2", "--eval-every", "0",
            "--device", "cpu", "--workers", "0", "--out", str(tmp_path / "run"), "-q"]  # fmt: skip
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        cli, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "rel"), "--no-onnx", "-q"]
    )
    assert res.exit_code == 0, res.output
    gen = samix_hub.load_generator(tmp_path / "rel" / "generator")
    model, config = samix_hub.load_backbone(tmp_path / "rel" / "backbone")
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    for key, value in gen.encoder.net.state_dict().items():
        assert torch.equal(value, ckpt["ema"][key]), key
    for key, value in gen.mixer.state_dict().items():
        assert torch.equal(value, ckpt["mixer"][key]), key
    for key, value in model.state_dict().items():
        assert torch.equal(value, ckpt["model"][key]), key
    assert tuple(gen.input_size) == tuple(ckpt["config"]["image_size"])
    assert config["pretrained_cfg"]["mean"] == ckpt["config"]["mean"]
    x = torch.rand(4, gen.config.in_chans, *gen.input_size)
    mask, mixed = gen(x, torch.tensor([1, 2, 3, 0]), 0.5)
    assert torch.allclose(mixed, mask * x + (1 - mask) * x[[1, 2, 3, 0]], atol=1e-6)
