"""The frozen SAMix^P generator: batch vs per-pair parity, save/load, frozen encoder."""

from __future__ import annotations

import json

import pytest
import torch

from samix_hub import Generator, GeneratorConfig, MixerConfig
from samix_hub.export.generator import write_generator
from samix_hub.export.load import read_generator
from samix_hub.models import create_encoder


def _generator(seed=0) -> Generator:
    torch.manual_seed(seed)
    cfg = GeneratorConfig(
        backbone="resnet18_cifar_w16", mixer=MixerConfig(in_channels=64), input_size=(32, 32)
    )
    gen = Generator(cfg)
    with torch.no_grad():  # make the mask non-trivial
        for p in gen.mixer.parameters():
            p.mul_(20)
    return gen


def test_batch_equals_per_pair_calls():
    gen = _generator()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32, generator=g)
    partner = torch.tensor([3, 4, 5, 0, 1, 2])
    lam = torch.rand(6, generator=g)
    mask, mixed = gen(x, partner, lam)
    assert mask.shape == (6, 1, 32, 32) and mixed.shape == x.shape
    assert torch.allclose(mixed, mask * x + (1 - mask) * x[partner], atol=1e-6)
    for i in range(6):
        j = int(partner[i])
        pair = torch.stack([x[i], x[j]])
        m_i, mix_i = gen(pair, torch.tensor([1, 0]), lam[i])
        assert torch.allclose(m_i[0], mask[i], atol=1e-5)
        assert torch.allclose(mix_i[0], mixed[i], atol=1e-5)


def test_encoder_runs_once_per_image():
    """docs/algorithm.md "SAMix^P": one encoder pass per image, the partner's features are
    gathered (``GeneratorNet.encoder`` is a public submodule; a forward hook sees each pass)."""
    gen = _generator()
    calls = []
    gen.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    gen(torch.rand(5, 3, 32, 32), torch.tensor([1, 2, 3, 4, 0]), 0.5)
    assert calls == [5]


def test_other_sizes_use_native_mask_upsampled():
    gen = _generator()
    x = torch.rand(2, 3, 48, 48)
    mask, mixed = gen(x, torch.tensor([1, 0]), 0.5)
    assert mask.shape == (2, 1, 48, 48)
    native = gen(
        torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False),
        torch.tensor([1, 0]),
        0.5,
    )[0]
    up = torch.nn.functional.interpolate(
        native, size=(48, 48), mode="bilinear", align_corners=False
    )
    assert torch.allclose(mask, up, atol=1e-5)


def test_save_load_round_trip(tmp_path):
    gen = _generator()
    gen.config.provenance = {"method": "samix", "seed": 0}
    write_generator(gen, tmp_path / "g")
    assert json.loads((tmp_path / "g" / "config.json").read_text())["format_version"] == 1
    loaded = read_generator(tmp_path / "g")
    x = torch.rand(4, 3, 32, 32)
    p = torch.tensor([1, 2, 3, 0])
    a, b = gen(x, p, 0.3), loaded(x, p, 0.3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert loaded.config.provenance == {"method": "samix", "seed": 0}
    assert not list((tmp_path / "g").glob("*.tmp"))


def test_bad_folders_give_clear_errors(tmp_path):
    gen = _generator()
    write_generator(gen, tmp_path / "g")
    cfg = json.loads((tmp_path / "g" / "config.json").read_text())
    cfg["format_version"] = 99
    (tmp_path / "g" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="format_version 99"):
        read_generator(tmp_path / "g")
    with pytest.raises(FileNotFoundError, match="config.json"):
        read_generator(tmp_path / "missing")
    write_generator(gen, tmp_path / "h")
    data = (tmp_path / "h" / "generator.safetensors").read_bytes()
    (tmp_path / "h" / "generator.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="generator.safetensors"):
        read_generator(tmp_path / "h")


def test_encoder_frozen_under_downstream_loss():
    gen = _generator()
    before = {k: v.clone() for k, v in gen.state_dict().items()}
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    opt = torch.optim.SGD(list(classifier.parameters()), lr=0.1)
    x = torch.rand(8, 3, 32, 32)
    gen.train()  # must stay in eval mode: BatchNorm statistics are fixed
    assert not gen.training
    _, mixed = gen(x, torch.randperm(8), 0.4)
    loss = classifier(mixed).logsumexp(1).mean()
    loss.backward()
    opt.step()
    assert all(not p.requires_grad for p in gen.parameters())
    for k, v in gen.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_mismatched_channels_rejected():
    with pytest.raises(ValueError, match="mixer expects 32 channels"):
        Generator(GeneratorConfig(backbone="resnet18_cifar_w16", mixer=MixerConfig(in_channels=32)))
    gen = _generator()
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        gen(torch.rand(2, 1, 32, 32), torch.tensor([1, 0]), 0.5)
    with pytest.raises(ValueError, match="unknown backbone"):
        create_encoder("no_such_net")


def test_saved_files_are_readable_by_others(tmp_path):
    import os
    import stat

    write_generator(_generator(), tmp_path / "g")
    umask = os.umask(0)
    os.umask(umask)
    for name in ("config.json", "generator.safetensors"):
        mode = stat.S_IMODE((tmp_path / "g" / name).stat().st_mode)
        assert mode == 0o666 & ~umask, oct(mode)
