"""The fine-tune levers of a reused generator (docs/algorithm.md "Levers of a reused generator"):
mask temperature, pairing without self-pairs, timm's ``prob`` / ``switch_prob``.

References are independent of the code under test: a bisection for the temperature's shift,
the definition of a derangement, counts of a seeded stream.
"""

from __future__ import annotations

import math

import pytest
import torch
from cli_helpers import run_cli

import samix_hub
from samix_hub.cli.finetune import PAIRING_CHOICES
from samix_hub.errors import UserError
from samix_hub.mixing import (
    PAIRINGS,
    CutMix,
    MixSwitch,
    MixUp,
    SAMix,
    build_method,
    sample_partner,
    sharpen,
)
from samix_hub.train.finetune import FinetuneScenario, finetune_config


def _masks(n: int = 16, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth masks with λ-exact means: sigmoid of upsampled random logits, shifted per image."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 1, 4, 4, generator=g) * 3
    logits = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    lam = torch.rand(n, generator=g) * 0.8 + 0.1
    shift = torch.stack([_bisect_shift(logits[i].flatten(), float(lam[i])) for i in range(n)])
    return torch.sigmoid(logits + shift.view(-1, 1, 1, 1)), lam


def _bisect_shift(logits: torch.Tensor, lam: float) -> torch.Tensor:
    """The scalar b with mean(sigmoid(logits + b)) = λ, by plain bisection in float64."""
    lo, hi = -60.0, 60.0
    x = logits.double()
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(torch.sigmoid(x + mid).mean()) < lam:
            lo = mid
        else:
            hi = mid
    return torch.tensor(0.5 * (lo + hi), dtype=torch.float32)


@pytest.mark.parametrize("temperature", [0.1, 0.25, 0.5, 2.0, 4.0])
def test_sharpen_keeps_each_mask_mean_at_lam(temperature: float) -> None:
    masks, lam = _masks()
    out = sharpen(masks, lam, temperature)
    assert out.shape == masks.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    err = (out.mean(dim=(1, 2, 3)) - lam).abs().max()
    assert float(err) <= 1e-3, float(err)


def test_sharpen_matches_an_independent_reference() -> None:
    masks, lam = _masks(n=6, seed=3)
    t = 0.5
    out = sharpen(masks, lam, t)
    for i in range(6):
        scaled = torch.logit(masks[i].double().clamp(1e-6, 1 - 1e-6)) / t
        ref = torch.sigmoid(scaled + _bisect_shift(scaled.flatten(), float(lam[i])).double())
        assert torch.allclose(out[i].double(), ref, atol=1e-4)


def test_temperature_sharpens_below_one_and_softens_above() -> None:
    masks, lam = _masks(seed=1)

    def spatial_std(m: torch.Tensor) -> float:
        return float(m.flatten(1).std(dim=1).mean())

    base = spatial_std(masks)
    assert spatial_std(sharpen(masks, lam, 0.5)) > base + 0.02
    assert spatial_std(sharpen(masks, lam, 2.0)) < base - 0.02
    assert torch.equal(sharpen(masks, lam, 1.0), masks)


def test_a_constant_mask_stays_constant() -> None:
    lam = torch.tensor([0.3, 0.7])
    flat = lam.view(-1, 1, 1, 1).expand(2, 1, 8, 8).clone()
    out = sharpen(flat, lam, 0.25)
    assert torch.allclose(out, flat, atol=1e-5)


def test_samix_with_a_real_generator_keeps_lam_under_temperature(digits) -> None:
    gen = samix_hub.load_generator("builtin:cifar10-small")
    g = torch.Generator().manual_seed(0)
    images = torch.stack([digits.train[i][0] for i in range(16)]).float() / 255
    images = torch.nn.functional.interpolate(images.expand(-1, 3, -1, -1), size=(32, 32))
    for t in (0.25, 1.0, 3.0):
        method = SAMix(gen, alpha=2.0, temperature=t, margin=0.0)
        params = method.sample_params(16, (32, 32), g)
        mask = method.mask(images, params)
        assert abs(float(mask.mean(dim=(1, 2, 3)).mean()) - float(params.lam)) <= 1e-3


def test_derangement_pairs_nobody_with_themselves() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 64, 65):
        for _ in range(20):
            p = sample_partner(n, g, "derangement")
            assert sorted(p.tolist()) == list(range(n))  # a permutation
            assert not bool((p == torch.arange(n)).any())  # without fixed points
    assert sample_partner(1, g, "derangement").tolist() == [0]


def test_permutation_pairing_is_the_reference_randperm() -> None:
    a = sample_partner(64, torch.Generator().manual_seed(5))
    b = torch.randperm(64, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    fixed = sum(
        int((sample_partner(64, torch.Generator().manual_seed(s)) == torch.arange(64)).sum())
        for s in range(200)
    )
    assert 100 < fixed < 320  # about one self-pair a batch (expected 200)


def test_pairing_choices_on_the_command_line_are_the_library_ones() -> None:
    assert tuple(PAIRING_CHOICES) == tuple(PAIRINGS)


@pytest.mark.parametrize("method", [MixUp(1.0, "derangement"), CutMix(1.0, "derangement")])
def test_baselines_take_the_pairing(method) -> None:
    images = torch.rand(8, 3, 16, 16)
    labels = torch.arange(8)
    out = method(images, labels, torch.Generator().manual_seed(1))
    assert not bool((out.label_b == labels).any())


def test_switch_prob_zero_mixing_probability_never_mixes() -> None:
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(8)
    sw = MixSwitch(MixUp(1.0), CutMix(1.0), prob=0.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        out = sw(images, labels, g)
        assert torch.equal(out.images, images) and torch.equal(out.label_b, labels)
        assert bool((out.lam == 1).all())


def test_switch_frequencies_follow_prob_and_switch_prob() -> None:
    sw = MixSwitch(MixUp(1.0), CutMix(1.0), prob=0.8, switch_prob=0.25)
    g = torch.Generator().manual_seed(0)
    counts = {"vanilla": 0, "mixup": 0, "cutmix": 0}
    n = 4000
    for _ in range(n):
        counts[sw.choose(g).name] += 1
    for name, p in (("vanilla", 0.2), ("cutmix", 0.8 * 0.25), ("mixup", 0.8 * 0.75)):
        assert abs(counts[name] / n - p) < 4 * math.sqrt(p * (1 - p) / n), counts


def test_switch_is_seeded_and_label_weights_sum_to_one() -> None:
    images, labels = torch.rand(8, 3, 16, 16), torch.arange(8)
    sw = build_method("mixup", 1.0, prob=0.7, switch_prob=0.5)
    assert isinstance(sw, MixSwitch)
    runs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        runs.append([sw(images, labels, g) for _ in range(12)])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a.images, b.images) and torch.equal(a.lam, b.lam)
        assert bool(((a.lam >= 0) & (a.lam <= 1)).all())  # weights lam and 1 - lam
        if a.mask is not None:  # CutMix: λ is the share of image a's pixels
            assert torch.allclose(a.mask.mean(dim=(1, 2, 3)), a.lam, atol=1e-6)


def test_build_method_without_levers_is_the_plain_method() -> None:
    assert type(build_method("mixup", 1.0)) is MixUp
    assert type(build_method("cutmix")) is CutMix


def test_levers_are_checked(tmp_path) -> None:
    base = dict(backbone="resnet18_cifar_w16", data="digits", out=str(tmp_path / "r"))
    with pytest.raises(UserError, match="--mask-temperature"):
        FinetuneScenario().resolve(
            finetune_config(**base, method="mixup", mask_temperature=0.5, pretrained=False)
        )
    with pytest.raises(UserError, match="--mix-prob"):
        FinetuneScenario().resolve(
            finetune_config(**base, method="vanilla", mix_prob=0.5, pretrained=False)
        )
    with pytest.raises(UserError, match="--mask-temperature must be > 0"):
        finetune_config(**base, method="samix-p", mask_temperature=0.0).validate()


def test_cli_rejects_a_bad_lever_in_one_line(tmp_path, capsys) -> None:
    args = ["finetune", "--backbone", "resnet18_cifar_w16", "--no-pretrained", "--data", "digits"]
    code, _, err = run_cli([*args, "--out", tmp_path / "r", "--pairing", "flip"], capsys)
    assert code == 2 and "--pairing" in err and "Traceback" not in err
    code, _, err = run_cli(
        [*args, "--out", tmp_path / "r", "--method", "mixup", "--mask-temperature", "0.5"], capsys
    )
    assert code != 0 and "--mask-temperature" in err and "Traceback" not in err
