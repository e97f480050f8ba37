"""λ-exact masks: the calibration invariant, its gradient, and the per-image variance term."""

from __future__ import annotations

import pytest
import torch

from samix_hub.mixing.masks import calibrate_logits
from samix_hub.models import Mixer, MixerConfig


def _reference_shift(logits: torch.Tensor, lam: float) -> float:
    """Independent solve: plain bisection in float64 for b with mean(sigmoid(s + b)) = λ."""
    s = logits.double().reshape(-1)
    lo, hi = -200.0, 200.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if torch.sigmoid(s + mid).mean().item() < lam:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("scale", [0.01, 1.0, 5.0, 30.0])
def test_calibrated_mean_equals_lam_over_random_logits(scale):
    g = torch.Generator().manual_seed(int(scale * 100))
    for trial in range(20):
        n = 8
        logits = torch.randn(n, 1, 16, 16, generator=g) * scale
        if trial % 3 == 0:  # near-binary masks: logits of ±30
            logits = torch.where(logits > 0, 30.0, -30.0) + 0.01 * logits
        if trial % 5 == 0:  # offset logits: raw masks far from λ
            logits = logits + 20 * (torch.rand(n, 1, 1, 1, generator=g) - 0.5)
        lam = 0.02 + 0.96 * torch.rand(n, generator=g)
        out = calibrate_logits(logits, lam)
        means = torch.sigmoid(out).mean(dim=(1, 2, 3))
        assert (means - lam).abs().max().item() <= 1e-3, (trial, means, lam)
        # A shift by one scalar per image: the spatial pattern is kept.
        diff = (out - logits).reshape(n, -1)
        assert (diff.max(1).values - diff.min(1).values).abs().max() < 1e-3


def test_calibration_matches_an_independent_bisection():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 1, 8, 8, generator=g) * 3
    lam = torch.tensor([0.05, 0.3, 0.7, 0.98])
    out = calibrate_logits(logits.double(), lam.double())
    for i in range(4):
        b = _reference_shift(logits[i], float(lam[i]))
        assert (out[i] - logits[i].double()).mean().item() == pytest.approx(b, abs=1e-6)


def test_calibration_gradcheck_tiny_case():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(2, 1, 3, 3, generator=g, dtype=torch.float64) * 2).requires_grad_()
    lam = torch.tensor([0.3, 0.6], dtype=torch.float64, requires_grad=True)

    def masks(s, lam_):
        return torch.sigmoid(calibrate_logits(s, lam_, iters=40))

    assert torch.autograd.gradcheck(masks, (logits, lam), eps=1e-6, atol=1e-5)


def test_calibrated_gradient_keeps_the_mean():
    # d mean(mask_i) / d logits = 0: the mixer can only move mass, not add it.
    logits = torch.randn(3, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64)
    mean = torch.sigmoid(calibrate_logits(logits, lam)).mean()
    (grad,) = torch.autograd.grad(mean, logits)
    assert grad.abs().max().item() < 1e-10


@pytest.mark.parametrize("variant", ["samix", "automix"])
def test_mixer_with_calibration_follows_lam(variant):
    torch.manual_seed(0)
    make = MixerConfig if variant == "samix" else MixerConfig.automix
    mixer = Mixer(make(16, calibration="exact")).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.mul_(50)  # sharp, saturated masks
    f = torch.randn(8, 16, 4, 4)
    partner = torch.roll(torch.arange(8), 1)
    lam = torch.linspace(0.02, 0.98, 8)
    mask = mixer(f, lam, partner, (32, 32))
    assert (mask.mean(dim=(1, 2, 3)) - lam).abs().max() <= 1e-3
    assert mask.min() >= 0 and mask.max() <= 1
    # gradients reach the mixer's weights through the calibration
    mixer.train()
    loss = (mixer(f, lam, partner, (32, 32)) * torch.randn(8, 1, 32, 32)).sum()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mixer.parameters())
    assert mixer.query.weight.grad.abs().sum() > 0


def test_calibration_off_is_the_reference_mixer():
    torch.manual_seed(0)
    cfg = MixerConfig(16)
    assert cfg.calibration == "none" and cfg.variance == "batch"
    assert MixerConfig.from_dict({"in_channels": 16}).calibration == "none"
    mixer = Mixer(cfg).eval()
    f = torch.randn(4, 16, 4, 4)
    partner = torch.tensor([1, 2, 3, 0])
    lam = 0.3
    torch.manual_seed(0)
    exact = Mixer(MixerConfig(16, calibration="exact")).eval()
    exact.load_state_dict(mixer.state_dict())
    raw = mixer(f, lam, partner, (16, 16))
    cal = exact(f, lam, partner, (16, 16))
    assert raw.mean().item() == pytest.approx(0.5, abs=0.02)  # untrained: about 0.5, not λ
    assert cal.mean(dim=(1, 2, 3)).sub(lam).abs().max() <= 1e-3
    with pytest.raises(ValueError, match="calibration"):
        MixerConfig(16, calibration="approx")
    with pytest.raises(ValueError, match="variance"):
        MixerConfig(16, variance="pixel")


def test_image_variance_rejects_the_per_image_constant_solution():
    # Masks constant inside each image but different between images: the batch-wide variance
    # term rewards them, the per-image term does not.
    m = torch.tensor([0.1, 0.9, 0.1, 0.9]).view(4, 1, 1, 1).expand(4, 1, 8, 8)
    mask = 1 - m
    lam = torch.tensor([0.9, 0.1, 0.9, 0.1])  # the L1 term is 0 here
    batch = Mixer(MixerConfig(16, variance="batch")).mask_loss(mask, lam)
    image = Mixer(MixerConfig(16, variance="image")).mask_loss(mask, lam)
    assert batch.item() == pytest.approx(-2 * 0.16, abs=1e-6)  # Var over the batch = 0.16
    assert image.item() == pytest.approx(0.0, abs=1e-7)
    # A sharp spatial mask with mean 0.5 in every image: per-image variance 0.25.
    half = torch.zeros(4, 1, 8, 8)
    half[..., :4] = 1
    ref = half.reshape(4, -1).var(dim=1, unbiased=False).mean()
    loss = Mixer(MixerConfig(16, variance="image")).mask_loss(half, 0.5)
    assert loss.item() == pytest.approx(-2 * ref.item(), abs=1e-6)
